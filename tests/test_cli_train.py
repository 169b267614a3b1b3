"""`ssrf train`, `ssrf evaluate` and `ssrf demo` end to end through the CLI, on the embedded real data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app

runner = CliRunner()
SMALL = [
    "--set",
    "model_options.d=16",
    "--set",
    "model_options.max_len=10",
    "--set",
    "model_options.conv_channels=[16, 16]",
    "--set",
    "train.batch_size=64",
]


def train(tmp_path, out, *extra):
    """`ssrf train` on the embedded data, prepared into tmp_path/cache, writing the run to `out`."""
    demo = str(pipeline.demo_data_path())
    args = [
        "train",
        "--data",
        demo,
        "--format",
        "taobao",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    return runner.invoke(app, [*args, *extra])


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    res = train(tmp_path, out, "--epochs", "2", "--behavior-weights", "buy=10", *SMALL)
    assert res.exit_code == 0, res.output
    assert "rec@10" in res.output and "auc" in res.output
    result = json.loads((out / "results.json").read_text())
    assert result["protocol"] == "temporal" and result["mask_history"] is False
    assert (out / "best" / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["behavior_weights"] == {"buy": 10.0}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == result["epochs_run"]
    again = runner.invoke(app, ["evaluate", "--run", str(out)])
    assert again.exit_code == 0, again.output
    assert f"{result['test']['rec@10']:.4f}" in again.output  # the same model gives the same numbers
    # a second train into the same folder without --resume is refused
    refused = train(tmp_path, out, *SMALL)
    assert refused.exit_code == 2 and "--resume" in refused.output


def test_bad_options_exit_2(tmp_path):
    for extra in (
        ["--set", "train.epoch=3"],
        ["--model", "nope"],
        ["--loss", "hinge"],
        ["--behavior-weights", "buy"],
    ):
        res = train(tmp_path, tmp_path / "x", *extra)
        assert res.exit_code == 2, (extra, res.output)
        assert "error:" in res.output
    res = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_demo_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["demo", "--epochs", "1", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert "actions per user" in res.output and "auc" in res.output


def test_evaluate_with_sampled_candidates_and_rela_impr(tmp_path):
    runs = {}
    for name in ("ssrf", "ssrf-uc"):
        out = tmp_path / name
        res = train(tmp_path, out, "--epochs", "1", "--model", name, *SMALL)
        assert res.exit_code == 0, res.output
        runs[name] = json.loads((out / "results.json").read_text())
    res = runner.invoke(
        app, ["evaluate", "--run", str(tmp_path / "ssrf"), "--base-run", str(tmp_path / "ssrf-uc")]
    )
    assert res.exit_code == 0, res.output
    expected = (runs["ssrf"]["test"]["auc"] - 0.5) / (runs["ssrf-uc"]["test"]["auc"] - 0.5) - 1  # eq. 15
    assert f"{expected:.4f}" in res.output
    # ranking against 20 sampled candidates is easier than against all ~2,000 items
    sampled = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "ssrf"), "--set", "eval.candidates=20"])
    assert sampled.exit_code == 0, sampled.output
    assert "candidates" in sampled.output
