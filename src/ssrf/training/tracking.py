"""Experiment trackers for `ssrf train --track`: TensorBoard or MLflow, each an optional extra
(`pip install 'ssrf[tensorboard]'`, `'ssrf[mlflow]'`), imported only when asked for.

A tracker gets the run's configuration once (TensorBoard's hparams, MLflow's params), every epoch's
metrics.jsonl row (`epoch`), and the final test metrics and summary (`finish`). Scalars are named
`train/loss`, `train/targets_per_second`, `train/seconds`, `valid/<metric>` and `test/<metric>` with the
epoch as the step (`ndcg@10` as in metrics.jsonl; MLflow, which forbids `@` in names, gets `ndcg_at_10`).
Where they go, by default inside the run folder: TensorBoard's event files in `<run>/tensorboard/`
(`tensorboard --logdir runs` shows every run), MLflow's store in the SQLite file `<run>/mlflow.db` (MLflow 3
refuses its old file store `mlruns/` by default) unless MLFLOW_TRACKING_URI names another store, say
`sqlite:///runs/mlflow.db` to gather runs in one experiment ($MLFLOW_EXPERIMENT_NAME, default "ssrf").
The pipeline opens a tracker on rank 0 only."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ssrf.core import DataError

TRACKERS = {"tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow"}  # name -> module it imports
STORES = ("tensorboard", "mlflow.db")  # what they write in a run folder by default


def check_tracker(name: str | None) -> None:
    """A `DataError` unless `name` is None or a tracker whose package imports here (call it before any
    work, so a missing package fails the command at once rather than after preparing data)."""
    if name is None:
        return
    if name not in TRACKERS:
        raise DataError(f"--track {name!r}: choose {' or '.join(TRACKERS)}")
    modules = [TRACKERS[name]]
    if name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI"):
        modules += ["sqlalchemy", "alembic"]  # MLflow's SQLite store, the default
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        raise DataError(
            f"--track {name} needs the {name} package: pip install 'ssrf[{name}]' ({exc})"
        ) from None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """{"train": {"lr": 0.001}} -> {"train.lr": 0.001}; lists and other values as JSON text, None as
    "none" (hparams and params take scalars only)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        elif value is None:
            out[name] = "none"
        else:
            out[name] = json.dumps(value)
    return out


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl row's scalars by tracker name (non-finite values, such as the loss of a model that
    was not trained, left out)."""
    names = {
        "loss": "train/loss",
        "targets_per_second": "train/targets_per_second",
        "train_seconds": "train/seconds",
    }
    out = {names[k]: row[k] for k in names if k in row}
    out.update({f"valid/{k.removeprefix('valid_')}": v for k, v in row.items() if k.startswith("valid_")})
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(v)}


class Tracker:
    """What a tracker does; a context manager that closes it (an MLflow run ends FAILED on an error)."""

    def epoch(self, row: dict[str, Any]) -> None:
        self.scalars(epoch_scalars(row), int(row["epoch"]))

    def finish(self, result: dict[str, Any]) -> None:
        """The run's results.json: test metrics (when read) at the best epoch, and a few summaries."""
        step = int(result["best_epoch"])
        values = {f"test/{k}": v for k, v in (result.get("test") or {}).items()}
        values.update(
            {f"best/valid_{k}": v for k, v in result["best_valid"].items() if k.startswith("valid_")}
        )
        values["best/epoch"] = result["best_epoch"]
        values["summary/parameters"] = result["parameters"]
        values["summary/train_seconds"] = result["train_seconds"]
        finite = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
        self.scalars(finite, step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self, failed: bool = False) -> None:
        raise NotImplementedError

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close(failed=kind is not None)


class TensorBoardTracker(Tracker):
    """Event files in `folder`: hparams (the configuration, with the metric tags they are compared on) and
    one scalar per tag and epoch."""

    def __init__(self, folder: Path, params: dict[str, Any], metrics: list[str]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(folder))
        experiment, start, end = hparams(flatten(params), dict.fromkeys(metrics, 0.0))
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)  # type: ignore[union-attr]

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run (named after the run folder) in the experiment $MLFLOW_EXPERIMENT_NAME (default
    "ssrf") of the store $MLFLOW_TRACKING_URI, else of the SQLite store `database`."""

    def __init__(self, database: Path, params: dict[str, Any], run_name: str) -> None:
        import mlflow
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{database.resolve()}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ssrf"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        flat = [Param(_mlflow_name(k), str(v)) for k, v in flatten(params).items()]
        for i in range(0, len(flat), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=flat[i : i + 100])

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_name(k), v, now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _mlflow_name(name: str) -> str:
    return name.replace("@", "_at_")


def open_tracker(
    name: str | None,
    run_dir: Path,
    params: dict[str, Any],
    metrics: list[str],
    folder: str | Path | None = None,
) -> Tracker | None:
    """The tracker `name` for the run in `run_dir` (None for None), writing in `folder`: TensorBoard's event
    files (default `<run_dir>/tensorboard`) or MLflow's SQLite store `<folder>/mlflow.db` (default folder
    `run_dir`; unused when MLFLOW_TRACKING_URI is set). `params` is the run's configuration (nested dicts are
    flattened to `section.key`), `metrics` the scalar tags runs are compared on (TensorBoard's hparams)."""
    if name is None:
        return None
    check_tracker(name)
    if name == "tensorboard":
        return TensorBoardTracker(
            Path(folder) if folder is not None else run_dir / "tensorboard", params, metrics
        )
    where = Path(folder) if folder is not None else run_dir
    where.mkdir(parents=True, exist_ok=True)
    return MLflowTracker(where / "mlflow.db", params, run_dir.name)
