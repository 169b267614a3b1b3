"""`ssrf reproduce` on the real samples in ../shared/data: the report has every section, every CSV and PNG,
its numbers are the run folders' results.json, and a second call trains nothing.

The fast test runs a reduced plan (the two small temporal samples, two models, one epoch, a Beauty user
sample); the `slow` one runs the CLI's `--quick` plan (about 4-5 minutes on the 2-core machine).
`reproduce --out DIR` writes nothing outside DIR; and the suite's own guard against tests that write into
the checkout (tests/conftest.py) fails a run that does."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssrf.cli import app
from ssrf.evaluation.metrics import rela_impr
from ssrf.reproduce import Plan, reproduce

SECTIONS = (
    "## Summary",
    "## Datasets (Table I)",
    "## Table II: AUC and RelaImpr",
    "## Figures 2 and 3",
    "## Figures 4 and 5: ablations",
    "## The standard benchmark: Amazon Beauty",
    "## The paper's claims against our numbers",
    "## Provenance",
)
CSVS = (
    "table1_datasets.csv",
    "table1_dropped_rows.csv",
    "table2_auc.csv",
    "fig2_3_loss_weight.csv",
    "fig4_5_ablation.csv",
    "beauty.csv",
    "claims.csv",
    "runs.csv",
    "wall_times.csv",
)
PNGS = (
    "fig2_pre10_vs_weight.png",
    "fig3_rec10_vs_weight.png",
    "fig4_ablation_relaimpr.png",
    "fig5_ablation_rec10.png",
)
REDUCED = Plan(
    name="test",
    datasets=("retailrocket", "diginetica"),
    seeds=(0, 1),
    epochs=1,
    patience=1,
    weights=(1.0, 10.0),
    lrs=(1e-3, 3e-3),
    models=("random", "pop", "repeat", "fm", "ssrf"),
    ablations=("ssrf-uc",),
    sweep_models=("fm", "ssrf"),
    beauty_models=("pop",),
    beauty_sample_users=1000,
)

ONE = Plan(  # one dataset, one seed, one epoch: FM and the ablation part's SSRF, SSRF-O and SSRF best
    name="one",
    datasets=("retailrocket",),
    seeds=(0,),
    epochs=1,
    patience=1,
    weights=(10.0,),
    lrs=(1e-3,),
    models=("fm",),
    ablations=("ssrf-o",),  # with SSRF and SSRF best, which the ablation part always has
    sweep_models=("fm",),
    beauty_models=(),
    legacy=False,
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def results(runs: Path, run_ids: str) -> list[dict]:
    return [json.loads((runs / rid / "results.json").read_text()) for rid in run_ids.split(";")]


def check_report(out: Path, runs: Path) -> None:
    report = (out / "REPORT.md").read_text()
    for section in SECTIONS:
        assert section in report, section
    for name in (*CSVS, *PNGS):
        assert (out / name).stat().st_size > 0, name
        assert f"]({name})" in report, f"{name} is not linked from REPORT.md"
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert "![" in report and f"({name})" in report
    for name in CSVS:
        assert read_csv(out / name), f"{name} has no rows"
    for verdict in read_csv(out / "claims.csv"):
        assert verdict["verdict"] in ("supported", "not supported", "mixed", "not tested")

    # every run's metrics in runs.csv are its results.json's
    for row in read_csv(out / "runs.csv"):
        res = json.loads((runs / row["run"] / "results.json").read_text())
        for key, value in res["test"].items():
            cell = float(row[f"test_{key}"] or "nan")  # a metric no user defines is an empty cell
            assert cell == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), (row["run"], key)
        assert int(row["epochs_run"]) == res["epochs_run"]

    # Table II and the ablations: mean and std over the listed runs; RelaImpr against FM of the same seed
    t2 = read_csv(out / "table2_auc.csv")
    fm = {
        r["dataset"]: {x["seed"]: x["test"]["auc"] for x in results(runs, r["runs"])}
        for r in t2
        if r["model"] == "fm"
    }
    for name in ("table2_auc.csv", "fig4_5_ablation.csv"):
        for row in read_csv(out / name):
            res = results(runs, row["runs"])
            aucs = [x["test"]["auc"] for x in res]
            assert float(row["auc_mean"]) == pytest.approx(statistics.mean(aucs), rel=1e-12)
            if len(aucs) > 1:
                assert float(row["auc_std"]) == pytest.approx(statistics.stdev(aucs), rel=1e-9)
            recs = [x["test"]["rec@10"] for x in res]
            assert float(row["rec@10_mean"]) == pytest.approx(statistics.mean(recs), rel=1e-12, abs=1e-15)
            rel = [rela_impr(x["test"]["auc"], fm[row["dataset"]][x["seed"]]) for x in res]
            assert float(row["rela_impr_mean"]) == pytest.approx(statistics.mean(rel), rel=1e-9, abs=1e-12)
            if name == "table2_auc.csv" and row["model"] == "fm":
                assert float(row["rela_impr_mean"]) == 0.0

    # figures 2-3 and Beauty: one run per row
    for row in read_csv(out / "fig2_3_loss_weight.csv"):
        res = json.loads((runs / row["run"] / "results.json").read_text())
        assert float(row["pre@10"]) == res["test"]["pre@10"] and float(row["rec@10"]) == res["test"]["rec@10"]
        weights = dict(
            json.loads((runs / row["run"] / "config.json").read_text())["train"]["behavior_weights"]
        )
        assert weights[row["behaviour"]] == float(row["weight"])
    for row in read_csv(out / "beauty.csv"):
        if row["run"]:
            res = json.loads((runs / row["run"] / "results.json").read_text())
            assert res["protocol"] == "loo"
            assert float(row["hr@10"]) == res["test"]["hr@10"]
            assert float(row["ndcg@10"]) == res["test"]["ndcg@10"]
        else:  # published numbers beside ours are labelled as such
            assert row["published_hr@10"]


def run_folders(runs: Path) -> dict[str, float]:
    return {p.name: (p / "results.json").stat().st_mtime for p in runs.iterdir()}


def test_reduced_plan_report_and_reuse(tmp_path, shared_data):
    out, cache = tmp_path / "report", tmp_path / "cache"
    first = reproduce(out, plan=REDUCED, data_root=shared_data, cache_dir=cache, progress=False)
    runs = out / "runs"
    assert first.trained > 0 and first.reused == 0
    check_report(out, runs)
    report = (out / "REPORT.md").read_text()
    assert "No item categories" in report  # the Retailrocket sample's limitation is stated
    assert "GPU sweep" in report and "published" in report  # reference numbers are labelled
    # reference rows, repeat/novel columns, the selected learning rates, the old protocol beside the new
    assert "| Repeat rule |" in report and "| Random |" in report and "AUC repeat / novel" in report
    assert "models above the repeat rule's AUC" in report
    assert "the old protocol's artefact" in report and "AUC (leak-free)" in report
    t2 = {(r["dataset"], r["model"]): r for r in read_csv(out / "table2_auc.csv")}
    assert float(t2[("retailrocket", "fm")]["lr"]) in REDUCED.lrs  # chosen on validation from the grid
    assert t2[("retailrocket", "repeat")]["stopped_by_cap"] == "0"  # a rule trains nothing
    before = run_folders(runs)
    assert len(before) == first.trained

    second = reproduce(out, plan=REDUCED, data_root=shared_data, cache_dir=cache, progress=False)
    assert second.trained == 0 and second.reused == first.trained
    assert run_folders(runs) == before  # no new folder, no results.json rewritten
    check_report(out, runs)
    assert len((out / "calls.jsonl").read_text().splitlines()) == 2


def test_interrupted_reproduction_is_continued(tmp_path, shared_data):
    """A call stopped after two runs is recorded as interrupted; the next call trains only the rest, and a
    run folder without results.json (a run stopped mid-way) is resumed in place, not duplicated."""
    out, cache = tmp_path / "report", tmp_path / "cache"
    kw = {"plan": ONE, "data_root": shared_data, "cache_dir": cache, "progress": False}
    seen: list[str] = []

    def stop_after_two(run_id: str, trained: bool) -> None:
        seen.append(run_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce(out, on_run=stop_after_two, **kw)
    calls = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert [(c["completed"], c["runs_trained"]) for c in calls] == [(False, 2)]
    assert not (out / "REPORT.md").exists()

    again = reproduce(out, **kw)  # fm + SSRF, SSRF-O and SSRF best
    assert (again.trained, again.reused) == (2, 2)
    victim = out / "runs" / seen[0]
    (victim / "results.json").unlink()
    third = reproduce(out, **kw)
    assert (third.trained, third.reused) == (1, 3)
    assert (victim / "results.json").exists()
    assert len(list((out / "runs").iterdir())) == 4
    calls = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert [c["completed"] for c in calls] == [False, True, True]
    assert "(interrupted)" in (out / "REPORT.md").read_text()


def test_cli_writes_only_under_out(tmp_path, shared_data, monkeypatch):
    """`ssrf reproduce --out DIR` without --cache-dir: the prepared datasets go to DIR/data beside DIR/runs,
    nothing to the working directory (they went to data/processed there). The smallest plan: the repeat
    rule and the ablation part's two SSRF runs on the Retailrocket sample, one epoch."""
    plan = dataclasses.replace(ONE, name="tiny", models=("repeat",), ablations=(), sweep_models=())
    monkeypatch.setattr("ssrf.reproduce.plan_for", lambda *args, **kwargs: plan)
    monkeypatch.delenv("SSRF_DATA_DIR", raising=False)  # the default a user has (the suite sets it)
    cwd, out = tmp_path / "cwd", tmp_path / "report"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["reproduce", "--out", str(out), "--data-root", str(shared_data)])
    assert result.exit_code == 0, result.output
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["data", "runs"]
    prepared = [p.name for p in (out / "data").iterdir()]
    assert len(prepared) == 1 and prepared[0].startswith("retailrocket-")
    assert (out / "data" / prepared[0] / "meta.json").is_file()
    assert len(list((out / "runs").iterdir())) == 3  # repeat, SSRF, SSRF best
    assert (out / "REPORT.md").is_file()


@pytest.mark.slow
def test_quick_cli(tmp_path, shared_data):
    runner = CliRunner()
    out = tmp_path / "report"
    args = ["reproduce", "--quick", "--out", str(out), "--data-root", str(shared_data)]
    args += ["--cache-dir", str(tmp_path / "cache")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    check_report(out, out / "runs")
    report = (out / "REPORT.md").read_text()
    assert "Quick plan (smoke test)" in report
    before = run_folders(out / "runs")
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert " 0 runs trained" in second.output
    assert run_folders(out / "runs") == before
    assert not math.isnan(float(read_csv(out / "table2_auc.csv")[0]["auc_mean"]))


# ------------------------------------------------------------------- the suite's checkout guard

DIRTYING = """
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_prepares_into_the_default_root():  # the safety net: SSRF_DATA_DIR is outside the checkout
    root = Path(os.environ["SSRF_DATA_DIR"])
    assert REPO not in root.resolve().parents
    (root / "taobao-0123").mkdir()


def test_writes_into_the_checkout():
    (REPO / "data" / "processed" / "x").mkdir(parents=True)  # an ignored folder, as data/ is
    (REPO / "data" / "processed" / "x" / "meta.json").write_text("{}")
    (REPO / "data" / "old.txt").write_text("rewritten")  # an ignored file that was there
    (REPO / "report.md").write_text("#")  # untracked
    (REPO / "notes.txt").write_text("more")  # untracked already: someone's work, left alone
"""


def _inner_run(repo: Path, test: str) -> subprocess.CompletedProcess[str]:
    """pytest in `repo` with this suite's conftest and the one test file `test`."""
    (repo / "tests").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), repo / "tests" / "conftest.py")
    (repo / "tests" / "test_inner.py").write_text(test)
    env = {k: v for k, v in os.environ.items() if k not in ("SSRF_CHECKOUT_GUARD", "PYTEST_ADDOPTS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # (faster: the inner runs need no plugin)
    basetemp = repo.with_name(repo.name + "-tmp")  # not the outer run's temporary root
    cmd = [sys.executable, "-m", "pytest", "-q", "--basetemp", str(basetemp), "tests"]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("git") is None, reason="the guard needs git")
def test_the_checkout_guard_fails_a_run_that_writes_into_the_checkout(tmp_path):
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    subprocess.run(["git", "init", "-q", str(dirty)], check=True)
    (dirty / ".gitignore").write_text("/data/\n")
    (dirty / "data").mkdir()
    (dirty / "data" / "old.txt").write_text("old")
    (dirty / "notes.txt").write_text("mine")
    done = _inner_run(dirty, DIRTYING)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed" in done.stdout and "the suite wrote into the checkout" in done.stdout
    found = {line.split()[-1]: line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert found == {"data/processed/x/meta.json": "new", "data/old.txt": "changed", "report.md": "new"}

    clean = tmp_path / "clean"  # the same checkout, written only where it may (caches, SSRF_DATA_DIR)
    clean.mkdir()
    subprocess.run(["git", "init", "-q", str(clean)], check=True)
    done = _inner_run(clean, DIRTYING.split("def test_writes_into_the_checkout")[0])
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(clean.rglob(".pytest_cache"))  # an allowed cache

    no_git = tmp_path / "no-git"  # not a checkout: no guard
    no_git.mkdir()
    (no_git / "data").mkdir()
    (no_git / "data" / "old.txt").write_text("old")
    done = _inner_run(no_git, DIRTYING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the suite wrote into the checkout" not in done.stdout
