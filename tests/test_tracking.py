"""Experiment tracking (`pipeline.train(track=...)`, ssrf.training.tracking) and the training curves every run
folder gets (curves.png, `pipeline.write_curves`), on short real runs over the embedded Taobao sample."""

from __future__ import annotations

import json
import math
import sys

import pytest
from matplotlib import image

from ssrf import pipeline
from ssrf.core import DataError
from ssrf.dataset.prepare import PrepareConfig
from ssrf.pipeline import RunConfig
from ssrf.training import tracking

SMALL = {"d": 16, "max_len": 12, "conv_channels": [16, 32], "blocks": 1}
PNG = b"\x89PNG\r\n\x1a\n"


def config(epochs: int = 2) -> RunConfig:
    train = {"epochs": epochs, "batch_size": 16, "checkpoint_every": 0, "patience": 5}
    return RunConfig.from_dict({"model": "ssrf", "model_options": SMALL, "train": train})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    return pipeline.prepare([pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=80), root=root)


@pytest.fixture(scope="module")
def tracked(sample, tmp_path_factory):
    """A two-epoch run logged to TensorBoard, with a caller's own on_epoch hook beside the tracker's."""
    seen: list[dict] = []
    run = tmp_path_factory.mktemp("tracked") / "run"
    result = pipeline.train(sample, config(), run, track="tensorboard", on_epoch=seen.append)
    return run, result, seen


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_gets_each_epoch_the_test_metrics_and_the_config(tracked):
    from tensorboard.backend.event_processing import event_accumulator

    run, result, seen = tracked
    assert [r["epoch"] for r in seen] == [1, 2]  # the caller's hook still runs
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/targets_per_second", "valid/ndcg@10", "test/ndcg@10"} <= scalars
    epochs = rows(run)
    for tag, key in (("train/loss", "loss"), ("valid/ndcg@10", "valid_ndcg@10")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[key] for r in epochs], rel=1e-6)
    (test,) = acc.Scalars("test/ndcg@10")
    assert test.step == result["best_epoch"]
    assert test.value == pytest.approx(result["test"]["ndcg@10"], rel=1e-6)
    finite = {f"test/{k}" for k, v in result["test"].items() if math.isfinite(v)}  # NaN: no such target
    assert finite and finite <= scalars
    hparams = acc.PluginTagToContent("hparams")
    start = next(v for k, v in hparams.items() if "session_start" in k)
    assert b"train.lr" in start and b"model_options.d" in start


def test_curves_png_in_the_run_folder(tracked):
    run, _, _ = tracked
    png = run / "curves.png"
    data = png.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000
    height, width, _ = image.imread(png).shape
    assert width > height > 100
    assert not list(run.glob(".*tmp*"))  # the temporary file was renamed into place


def test_write_curves_is_idempotent_and_quiet_without_metrics(tracked, tmp_path):
    run, _, _ = tracked
    before = (run / "curves.png").stat().st_size
    assert pipeline.write_curves(run) == run / "curves.png"
    assert abs((run / "curves.png").stat().st_size - before) < 100
    assert pipeline.write_curves(tmp_path) is None  # an older or unfinished run: nothing to draw
    assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize(
    "text",
    [
        '{"epoch": 1, "loss": 0.5, "valid_ndcg@10": 0.1}\n{"epoch": 2, "loss": \n',
        '{"epoch": "1", "loss": 1}\n',
        '{"epoch": 1, "loss": 1, "valid_mrr": 0.1}\n{"epoch": 2, "loss": 1}\n',
    ],
)
def test_write_curves_names_a_malformed_metrics_file(tmp_path, text):
    (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.raises(DataError, match=r"metrics\.jsonl"):
        pipeline.write_curves(tmp_path)
    assert not (tmp_path / "curves.png").exists()


def test_no_tracker_by_default(sample, tmp_path):
    pipeline.train(sample, config(epochs=1), tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert "curves.png" in names
    assert not names & set(tracking.STORES)


def test_a_missing_tracker_package_fails_before_any_work(sample, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="choose tensorboard or mlflow"):
        tracking.check_tracker("wandb")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    message = r"--track tensorboard needs the tensorboard package: pip install 'ssrf\[tensorboard\]'"
    with pytest.raises(DataError, match=message):
        tracking.check_tracker("tensorboard")
    with pytest.raises(DataError, match=message):
        pipeline.train(sample, config(), tmp_path / "run", track="tensorboard")
    assert not (tmp_path / "run").exists()
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(DataError, match=r"pip install 'ssrf\[mlflow\]'"):
        tracking.check_tracker("mlflow")
    tracking.check_tracker(None)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_mlflow_run_in_the_run_folder(sample, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run = tmp_path / "run"
    result = pipeline.train(sample, config(), run, track="mlflow", test=False)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("ssrf").experiment_id])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run"
    assert float(logged.data.params["train.lr"]) == pytest.approx(1e-3)
    history = client.get_metric_history(logged.info.run_id, "valid/ndcg_at_10")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    assert not any(k.startswith("test/") for k in logged.data.metrics)  # test=False never reads test
    assert result["test"] is None


def test_the_cli_tracks_and_evaluate_draws_missing_curves(sample, tmp_path):
    from typer.testing import CliRunner

    from ssrf.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--data", str(sample.path), "--out", str(out), "--epochs", "1", "--track", "tensorboard"]
    res = runner.invoke(app, [*args, "--set", "model_options.d=16", "--set", "model_options.max_len=12"])
    assert res.exit_code == 0, res.output
    assert any((out / "tensorboard").iterdir())
    (out / "curves.png").unlink()  # a run from before curves.png existed
    res = runner.invoke(app, ["evaluate", "--run", str(out)])
    assert res.exit_code == 0 and f"training curves: {out / 'curves.png'}" in res.output, res.output
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(
        app, ["train", "--data", str(sample.path), "--out", str(tmp_path / "r2"), "--track", "wandb"]
    )
    assert bad.exit_code == 2 and "wandb" in bad.output and not (tmp_path / "r2").exists()
