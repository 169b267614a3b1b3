#!/usr/bin/env bash
# Installs ssrf into ./.venv: torch first (a pinned CPU-friendly build), then the package.
#   bash install.sh          # the package and its runtime dependencies
#   bash install.sh --dev    # plus the test and lint tools
# GPU users: SSRF_TORCH='torch==2.13.0' SSRF_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$python" -m venv .venv; fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ -n "${SSRF_TORCH_INDEX_URL:-}" ]; then
  "${pip[@]}" "${SSRF_TORCH:-torch==2.13.0}" --index-url "$SSRF_TORCH_INDEX_URL"
else
  "${pip[@]}" "${SSRF_TORCH:-torch==2.13.0}"
fi
"${pip[@]}" -e ".${extras}"
