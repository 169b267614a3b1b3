"""Project-wide rules: the import layers, lint, and a light `import ssrf`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin folder


def _run(*cmd: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    result = _run(BIN / "lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_ruff_passes():
    result = _run(BIN / "ruff", "check", "src", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_ssrf_is_light():
    code = "import ssrf, sys; assert 'torch' not in sys.modules and 'polars' not in sys.modules"
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
