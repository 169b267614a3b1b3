"""benchmarks/beauty_sweep.py --report: the zoo table made again from the runs' logs, seeds aggregated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "epochs_run", "seconds_per_epoch", "best_epoch")


def _log(path: Path, hr10: float, epochs: int) -> None:
    figures = {k: {"mean": 0.5, "std": 0.0} for k in (*KEYS, "train_seconds", "test_eval_seconds")}
    figures |= {"hr@10": {"mean": hr10, "std": 0.0}, "epochs_run": {"mean": epochs, "std": 0.0}}
    path.write_text("epoch lines\n" + json.dumps(figures) + "\n")


def _report(out: Path, only: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "beauty_sweep.py"), "--report", "--only", only, *extra]
    return subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=60)


def test_report_aggregates_a_configurations_seeds_and_nothing_else(tmp_path):
    _log(tmp_path / "fm-bce#s0.log", 0.02, 10)
    _log(tmp_path / "fm-bce#s1.log", 0.04, 12)
    _log(tmp_path / "deepfm-bce#s0.log", 0.9, 99)  # another configuration whose name ends the same way
    result = _report(tmp_path, "fm-bce")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fm-bce |"))
    assert "0.0300 ± 0.0141" in row  # mean and sample std of 0.02 and 0.04
    assert "| 10, 12 |" in row
    summary = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert set(summary) == {"fm-bce"} and summary["fm-bce"]["seeds"] == 2
    assert abs(summary["fm-bce"]["hr@10"] - 0.03) < 1e-12


def test_report_names_a_failed_run_and_refuses_an_empty_folder(tmp_path):
    (tmp_path / "fm-bce#s0.log").write_text("Traceback\nValueError: boom\n")
    failed = _report(tmp_path, "fm-bce")
    assert "| fm-bce | failed:" in failed.stdout and "boom" in failed.stdout
    empty = _report(tmp_path, "nfm-bce")
    assert empty.returncode != 0 and "no logs of nfm-bce" in empty.stderr
    bad = _report(tmp_path, "fm-bce", "--seeds", "1,x")
    assert bad.returncode == 2 and "--seeds '1,x'" in bad.stderr
