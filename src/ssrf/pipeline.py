"""The composition root: raw files -> prepared data -> model -> training -> evaluation -> run folder.

A notebook user calls these functions exactly as the CLI does:

    from ssrf import pipeline
    data = pipeline.prepare(["UserBehavior.csv"], "taobao")
    result = pipeline.train(data, RunConfig(model="ssrf"), out="runs/first")
    print(result["test"])
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import platform
import shutil
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ssrf import __version__
from ssrf.core import DataError, atomic_write_text, seed_everything
from ssrf.dataset import snapshot
from ssrf.dataset.artifacts import Prepared, prepare_dataset
from ssrf.dataset.prepare import PrepareConfig
from ssrf.dataset.sequences import Sequences
from ssrf.evaluation.evaluate import EvalConfig, evaluate
from ssrf.io import GenericMapping, read
from ssrf.models import REGISTRY, build, check_options, config_fields
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import load_model
from ssrf.training import distributed, tracking
from ssrf.training.loop import TrainConfig, fit, resolve_device

DEMO_FORMAT = "taobao"
COUNT_FIELDS = {"n_items", "n_users", "n_behaviors", "field_sizes", "field_widths"}


def demo_data_path() -> Path:
    """The embedded Taobao UserBehavior subset (research use only; see ssrf/data/PROVENANCE.md)."""
    return Path(str(resources.files("ssrf") / "data" / "taobao_demo.csv.gz"))


def prepare(
    paths: Sequence[str | Path],
    fmt: str,
    cfg: PrepareConfig | None = None,
    *,
    mapping: GenericMapping | None = None,
    root: str | Path | None = None,
    force: bool = False,
) -> Prepared:
    """Read raw files (or open a prepared folder) and return the prepared dataset, cached on disk.
    Under torchrun rank 0 builds the cache and the other ranks then read it."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Prepared.load(paths[0])
    with distributed.main_first(distributed.setup()):
        log = read(fmt, paths, mapping)
        return prepare_dataset(log, cfg or PrepareConfig(), None if root is None else Path(root), force=force)


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One run: which model, with which options, trained and evaluated how; TOML sections mirror fields."""

    model: str = "ssrf"  # a name in ssrf.models.REGISTRY
    data: PrepareConfig = field(default_factory=PrepareConfig)  # how raw files are prepared
    model_options: dict[str, Any] = field(default_factory=dict)  # the model config's fields (d, window, ...)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        """Every option is checked here, before any work: each section's types and ranges (in its own
        config), the model's options (`check_options`), and the relations between sections."""
        if not isinstance(self.model, str) or self.model not in REGISTRY:
            raise DataError(f"model = {self.model!r}: unknown; choose one of {', '.join(REGISTRY)}")
        bad = set(self.model_options) - (config_fields(self.model) - COUNT_FIELDS)
        if bad:
            raise DataError(f"unknown model option(s) for {self.model}: {', '.join(sorted(bad))}")
        check_options(self.model, self.model_options)
        metric, _, k = self.train.metric.partition("@")
        if k and int(k) not in self.eval.ks:
            raise DataError(
                f"train.metric = {self.train.metric!r}: cut-off {k} not in eval.ks {list(self.eval.ks)}"
            )
        if metric == "auc" and not self.eval.auc:
            raise DataError("train.metric = 'auc' needs eval.auc = true")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        sections = {"data": PrepareConfig, "train": TrainConfig, "eval": EvalConfig}
        unknown = set(raw) - {"model", "model_options", *sections}
        if unknown:
            raise DataError(f"unknown key(s) {', '.join(sorted(unknown))}", path=source)
        kwargs: dict[str, Any] = {
            "model": raw.get("model", "ssrf"),
            "model_options": dict(raw.get("model_options", {})),
        }
        for name, cls_ in sections.items():
            table = dict(raw.get(name, {}))
            known = {f.name for f in fields(cls_)}
            bad = set(table) - known
            if bad:
                raise DataError(f"unknown key(s) in [{name}]: {', '.join(sorted(bad))}", path=source)
            if name == "train" and isinstance(table.get("behavior_weights"), dict):
                table["behavior_weights"] = tuple(table["behavior_weights"].items())
            table = {
                k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                for k, v in table.items()
            }
            try:
                kwargs[name] = cls_(**table)
            except (TypeError, ValueError) as exc:
                raise DataError(_in_section(exc, name), path=source) from None
        try:
            return cls(**kwargs)
        except DataError as exc:
            raise DataError(str(exc), path=source) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"cannot read config: {exc}", path=path) from None
        return cls.from_dict(raw, str(path))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["train"]["behavior_weights"] = dict(self.train.behavior_weights)
        return out

    def override(self, assignments: Sequence[str]) -> RunConfig:
        """Apply `section.key=value` overrides (values parsed as TOML, bare words as strings)."""
        raw = self.to_dict()
        for a in assignments:
            key, sep, value = a.partition("=")
            section, dot, name = key.strip().partition(".")
            if not sep or not dot:
                raise DataError(f"--set expects section.key=value, got {a!r}")
            try:
                parsed = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                parsed = value
            if section not in raw or not isinstance(raw[section], dict):
                raise DataError(f"--set: unknown section {section!r}")
            raw[section][name] = parsed
        return RunConfig.from_dict(raw, "--set")


def _in_section(exc: Exception, section: str) -> str:
    """An option error's message, naming `section` unless it already does."""
    text = str(exc)
    return text if text.startswith(f"{section}.") else f"[{section}] {text}"


FAMILIES = {"ssrf-uc": "ssrf", "ssrf-o": "ssrf"}  # the ablations share their parent's preset


def preset(model: str = "ssrf", *, paper: bool = False) -> RunConfig:
    """The shipped default for `model` (src/ssrf/presets/<model>.toml, the best settings we measured), or,
    with `paper`, SSRF's published configuration (presets/paper.toml). A model without a preset gets the
    RunConfig defaults."""
    if model not in REGISTRY:
        raise DataError(f"model = {model!r}: unknown; choose one of {', '.join(REGISTRY)}")
    if paper and FAMILIES.get(model, model) != "ssrf":
        raise DataError(f"--paper is SSRF's published configuration; {model} is not an SSRF model")
    name = "paper" if paper else FAMILIES.get(model, model)
    path = resources.files("ssrf") / "presets" / f"{name}.toml"
    if not path.is_file():
        return RunConfig(model=model)
    cfg = RunConfig.from_dict(tomllib.loads(path.read_text()), f"presets/{name}.toml")
    return dataclasses.replace(cfg, model=model)


def keep_known_behaviors(cfg: RunConfig, data: Prepared) -> tuple[RunConfig, list[str]]:
    """`cfg` without behaviour weights for behaviours `data` does not have (a preset's weights name Taobao's),
    and the names dropped."""
    known = set(data.vocabs["behavior"].raw[1:])
    weights = cfg.train.behavior_weights
    dropped = [b for b, _ in weights if b not in known]
    kept = tuple((b, w) for b, w in weights if b in known)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, behavior_weights=kept)), dropped


def parse_behavior_weights(spec: str) -> tuple[tuple[str, float], ...]:
    """'pv=1,buy=10' -> (("pv", 1.0), ("buy", 10.0))."""
    out = []
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            raise DataError(f"--behavior-weights expects name=number pairs, got {part!r}") from None
        if not sep:
            raise DataError(f"--behavior-weights expects name=number pairs, got {part!r}")
    return tuple(out)


# ------------------------------------------------------------------------------------------------ train


def model_counts(seqs: Sequences) -> dict[str, Any]:
    return {
        "n_items": seqs.n_items,
        "n_users": seqs.n_users,
        "n_behaviors": seqs.n_behaviors,
        "field_sizes": seqs.field_sizes,
        "field_widths": tuple(t.shape[1] for t in seqs.item_fields),
    }


def build_model(name: str, options: dict[str, Any], seqs: Sequences) -> SequentialRecommender:
    model = build(name, {**options, **model_counts(seqs)})
    if hasattr(model, "set_item_fields"):
        model.set_item_fields([torch.from_numpy(t) for t in seqs.item_fields])
    if hasattr(model, "set_item_counts"):  # popularity from the training period only (no valid/test event)
        model.set_item_counts(torch.from_numpy(seqs.train_counts()))
    return model


def default_run_dir(model: str, data: Prepared, seed: int) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{data.meta['key']}-s{seed}-{stamp}"


def train(
    data: Prepared,
    cfg: RunConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    on_step=None,
    on_epoch=None,
    test: bool = True,
    track: str | None = None,
    track_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train `cfg.model` on `data`, select on validation, evaluate test once; return results.json.
    `test=False` never reads the test split (results.json's `test` is null): for searches over
    configurations, which must choose on validation alone. `track` ("tensorboard" or "mlflow") also logs
    the configuration, every epoch's metrics and the test metrics there (see ssrf.training.tracking; a
    `DataError` at once when its package is missing), in the folder `track_dir`: TensorBoard's event
    files (default `<run>/tensorboard`), MLflow's SQLite store `mlflow.db` (default in the run folder;
    MLFLOW_TRACKING_URI, when set, names the store instead). The run folder gets curves.png.

    Under torchrun every rank calls this with the same arguments; rank 0 alone writes the run folder."""
    tracking.check_tracker(track)
    dist = distributed.setup()
    run_dir = Path(out) if out is not None else default_run_dir(cfg.model, data, cfg.train.seed)
    run_dir = Path(str(dist.broadcast(str(run_dir))))  # rank 0's time stamp
    check_run_folder(run_dir, data, resume)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    seqs = Sequences.build(data)
    protocol = data.meta["split"]
    if cfg.train.metric not in cfg.eval.metric_names(protocol):
        choices = ", ".join(cfg.eval.metric_names(protocol))
        raise DataError(
            f"train.metric = {cfg.train.metric!r}: not reported under {protocol}; choose {choices}"
        )
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.model_options, seqs)
    max_len = model.cfg.max_len  # type: ignore[attr-defined]
    if cfg.train.max_len not in (max_len, TrainConfig().max_len):
        raise DataError(
            f"train.max_len = {cfg.train.max_len}: the input length is the model's; set "
            f"model_options.max_len instead (this model reads {max_len})"
        )
    behaviors = list(data.vocabs["behavior"].raw[1:])
    unknown = sorted({b for b, _ in cfg.train.behavior_weights} - set(behaviors))
    if unknown:
        raise DataError(
            f"train.behavior_weights: unknown behaviour(s) {', '.join(unknown)}; this dataset has "
            f"{', '.join(behaviors)}"
        )
    train_cfg = dataclasses.replace(cfg.train, max_len=max_len)
    device = resolve_device(train_cfg.device)
    created = not run_dir.exists()
    try:
        if dist.is_main:
            start_run_folder(run_dir, cfg, data, dist.world)
        tracker = _open_tracker(track, track_dir, run_dir, cfg, data, test) if dist.is_main else None
        with tracker or contextlib.nullcontext():
            hooks = [h for h in (on_epoch, tracker.epoch if tracker else None) if h is not None]
            result = _train(data, seqs, cfg, train_cfg, model, run_dir, device, on_step, _each(hooks), test)
            if tracker is not None:
                tracker.finish(result)
        return result
    except BaseException:
        if created and dist.is_main and not _holds_progress(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed start leaves nothing behind
        raise


# what a run folder holds before it trains (a tracker's store is opened before the first epoch)
RUN_FILES = {"config.json", "vocab.json", snapshot.FOLDER, *tracking.STORES}


def _open_tracker(
    track: str | None,
    track_dir: str | Path | None,
    run_dir: Path,
    cfg: RunConfig,
    data: Prepared,
    test: bool,
) -> tracking.Tracker | None:
    names = cfg.eval.metric_names(data.meta["split"])
    metrics = [f"valid/{n}" for n in names] + ([f"test/{n}" for n in names] if test else [])
    params = {**cfg.to_dict(), "dataset": data.meta["key"], "protocol": data.meta["split"]}
    return tracking.open_tracker(track, run_dir, params, metrics, track_dir)


def _each(hooks: list) -> Any:
    """One on_epoch hook calling each of `hooks` in turn (None for none)."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def on_epoch(row: dict[str, Any]) -> None:
        for hook in hooks:
            hook(row)

    return on_epoch


def _holds_progress(run_dir: Path) -> bool:
    """Whether the run folder holds anything worth keeping: a model, a resume state or results."""
    return any((run_dir / name).exists() for name in ("best", "resume", "results.json"))


def check_out(out: str | Path | None, resume: bool = False) -> None:
    """The checks of a run folder that need no data (the CLI runs them before preparing any)."""
    if out is None:
        return
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise DataError("--out names a file, not a folder", path=run_dir)
    if resume or not run_dir.is_dir():
        return
    started = {p.name for p in run_dir.iterdir()} - RUN_FILES
    if started or _holds_progress(run_dir):
        raise DataError("run folder exists and is not empty (use --resume to continue it)", path=run_dir)


def check_run_folder(run_dir: Path, data: Prepared, resume: bool) -> None:
    """A `DataError` unless `run_dir` can be (re)used: absent, empty, or (with resume) a run on the same data.
    A folder holding only what a failed start wrote (no model, no resume state) may be reused."""
    check_out(run_dir, resume)
    if not resume or not (run_dir / "config.json").exists():
        return
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        dataset = saved["dataset"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot resume: unreadable config.json ({exc})", path=run_dir) from None
    if dataset != data.meta["key"]:
        raise DataError(
            f"cannot resume: the run was trained on {dataset}, not {data.meta['key']}", path=run_dir
        )


def start_run_folder(run_dir: Path, cfg: RunConfig, data: Prepared, processes: int) -> None:
    """config.json and the run's own copy of its dataset (see ssrf.dataset.snapshot)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files = snapshot.store(data, run_dir)
    config = {
        **cfg.to_dict(),
        "dataset": data.meta["key"],
        "data_files": files,
        "data_source": str(data.path.resolve()),  # where it was prepared (informative; never read back)
        "protocol": data.meta["split"],
        "processes": processes,
    }
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2))


def _train(
    data: Prepared,
    seqs: Sequences,
    cfg: RunConfig,
    train_cfg: TrainConfig,
    model: SequentialRecommender,
    run_dir: Path,
    device: torch.device,
    on_step=None,
    on_epoch=None,
    read_test: bool = True,
) -> dict[str, Any]:
    dist = distributed.setup()
    protocol, max_len = data.meta["split"], train_cfg.max_len
    t0 = time.perf_counter()

    def validate(m: SequentialRecommender) -> dict[str, float]:
        return evaluate(m, seqs, "valid", protocol, cfg.eval, max_len, device)

    history = fit(
        model,
        seqs,
        train_cfg,
        run_dir,
        list(data.vocabs["behavior"].raw[1:]),
        validate,
        cfg.model,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    train_s = time.perf_counter() - t0
    _, best = load_model(run_dir / "best", device)
    t1 = time.perf_counter()
    test = evaluate(best, seqs, "test", protocol, cfg.eval, max_len, device) if read_test else None
    result = {
        "model": cfg.model,
        "dataset": data.meta["key"],
        "format": data.meta["format"],
        "protocol": protocol,
        "mask_history": cfg.eval.masking(protocol),
        "seed": cfg.train.seed,
        "loss": cfg.train.loss,
        "test": test,
        "best_epoch": history.best_epoch + 1,
        "best_valid": history.epochs[history.best_epoch],
        "epochs_run": len(history.epochs),
        "stopped_early": history.stopped_early,
        "stopped_by_budget": history.stopped_by_budget,
        "trained": history.trained,  # False: a reference row (nothing to learn), validated once
        "train_seconds": round(train_s, 2),
        "test_eval_seconds": round(time.perf_counter() - t1, 2),
        "seconds_per_epoch": round(
            sum(e["train_seconds"] for e in history.epochs) / max(len(history.epochs), 1), 2
        ),
        "parameters": sum(p.numel() for p in best.parameters()),
        "device": str(device),
        "versions": {"ssrf": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "processes": dist.world,
        "process_group": dist.backend,  # nccl, gloo, or None (a single process without a group)
    }
    if dist.is_main:
        atomic_write_text(run_dir / "results.json", json.dumps(result, indent=2))
        write_curves(run_dir)
    return {**result, "run_dir": str(run_dir)}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows, one per epoch (a row repeated by a resume: its last), in epoch order; a
    `DataError` naming the file and line when a line is not a JSON object with an integer epoch."""
    rows: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read metrics: {exc}", path=path) from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"malformed metrics row: {exc}", path=path, line=i) from None
        numbers = isinstance(row, dict) and all(
            isinstance(v, int | float) for k, v in row.items() if k == "loss" or k.startswith("valid_")
        )
        if not numbers or not isinstance(row.get("epoch"), int) or "loss" not in row:
            raise DataError(
                "malformed metrics row: expected an object with an integer epoch and numeric loss and "
                "valid_* metrics",
                path=path,
                line=i,
            )
        rows[row["epoch"]] = row
    return [rows[k] for k in sorted(rows)]


def write_curves(run_dir: str | Path) -> Path | None:
    """Draw `<run_dir>/curves.png` from its metrics.jsonl: the training loss and the validation metric per
    epoch, best epoch marked (the metric is config.json's train.metric, the first validation metric when
    that is unknown). Idempotent; None, writing nothing, when the run has no metrics.jsonl or no epoch yet.
    A `DataError` naming the file when metrics.jsonl is malformed."""
    from ssrf.reports import figures  # matplotlib, only when drawing

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    if not rows:
        return None
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        metric, model = str(saved["train"]["metric"]), str(saved["model"])
    except (OSError, ValueError, KeyError, TypeError):
        metric, model = "", ""
    found = [k.removeprefix("valid_") for k in rows[0] if k.startswith("valid_")]
    metric = metric if metric in found else found[0] if found else ""
    if not metric or any(f"valid_{metric}" not in row for row in rows):
        raise DataError(
            f"malformed metrics rows: valid_{metric or '<metric>'} missing", path=run_dir / "metrics.jsonl"
        )
    title = f"{model} ({run_dir.name})" if model else run_dir.name
    fig = figures.training_curves(rows, metric, title)
    path = run_dir / "curves.png"
    figures.save(fig, path)
    return path


def rela_impr_against(result: dict[str, Any], base_run: str | Path, split: str = "test") -> float:
    """Eq. 15: RelaImpr of `result`'s AUC over the AUC of the base run (the paper's base is FM)."""
    from ssrf.evaluation.metrics import rela_impr

    try:
        base = json.loads((Path(base_run) / "results.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"not a finished run folder: {exc}", path=base_run) from None
    if base["dataset"] != result["dataset"] or base["protocol"] != result["protocol"]:
        raise DataError("the base run was trained on other data or another protocol", path=base_run)
    return rela_impr(result[split]["auc"], base["test"]["auc"])


def evaluate_run(
    run_dir: str | Path, split: str = "test", device: str = "auto", overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Re-evaluate a run's best model on its dataset (`overrides` such as "eval.candidates=99")."""
    run_dir = Path(run_dir)
    saved = snapshot.read_config(run_dir)
    cfg = RunConfig.from_dict({k: saved[k] for k in ("model", "model_options", "data", "train", "eval")})
    cfg = cfg.override(overrides) if overrides else cfg
    if split not in ("valid", "test"):
        raise DataError(f"split = {split!r}: choose test or valid")
    data = snapshot.load(run_dir, saved)
    seqs = Sequences.build(data)
    dev = resolve_device(device)
    _, model = load_model(run_dir / "best", dev)
    metrics = evaluate(model, seqs, split, saved["protocol"], cfg.eval, model.cfg.max_len, dev)  # type: ignore[attr-defined]
    return {
        "model": cfg.model,
        "dataset": saved["dataset"],
        "protocol": saved["protocol"],
        "split": split,
        "mask_history": cfg.eval.masking(saved["protocol"]),
        split: metrics,
    }
