"""The composition root: raw files -> prepared data -> model -> training -> evaluation -> run folder.

A notebook user calls these functions exactly as the CLI does:

    from ssrf import pipeline
    data = pipeline.prepare(["UserBehavior.csv"], "taobao")
    result = pipeline.train(data, RunConfig(model="ssrf"), out="runs/first")
    print(result["test"])
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ssrf import __version__
from ssrf.core import DataError, atomic_write_bytes, atomic_write_text, seed_everything
from ssrf.dataset.artifacts import Prepared, prepare_dataset
from ssrf.dataset.prepare import PrepareConfig
from ssrf.dataset.sequences import Sequences
from ssrf.evaluation.evaluate import EvalConfig, evaluate
from ssrf.io import GenericMapping, read
from ssrf.models import REGISTRY, build, config_fields
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import load_model
from ssrf.training import distributed
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
        if self.model not in REGISTRY:
            raise DataError(f"unknown model {self.model!r}; choose one of {', '.join(REGISTRY)}")
        bad = set(self.model_options) - (config_fields(self.model) - COUNT_FIELDS)
        if bad:
            raise DataError(f"unknown model option(s) for {self.model}: {', '.join(sorted(bad))}")

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
                raise DataError(f"[{name}]: {exc}", path=source) from None
        return cls(**kwargs)

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
    data: Prepared, cfg: RunConfig, out: str | Path | None = None, *, resume: bool = False, on_step=None
) -> dict[str, Any]:
    """Train `cfg.model` on `data`, select on validation, evaluate test once; return results.json.

    Under torchrun every rank calls this with the same arguments; rank 0 alone writes the run folder."""
    dist = distributed.setup()
    run_dir = Path(out) if out is not None else default_run_dir(cfg.model, data, cfg.train.seed)
    run_dir = Path(str(dist.broadcast(str(run_dir))))  # rank 0's time stamp
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise DataError("run folder exists and is not empty (use --resume to continue it)", path=run_dir)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    seqs = Sequences.build(data)
    protocol = data.meta["split"]
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.model_options, seqs)
    max_len = model.cfg.max_len  # type: ignore[attr-defined]
    train_cfg = dataclasses.replace(cfg.train, max_len=max_len)
    device = resolve_device(train_cfg.device)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            run_dir / "config.json",
            json.dumps(
                {
                    **cfg.to_dict(),
                    "data_path": str(data.path.resolve()),
                    "dataset": data.meta["key"],
                    "protocol": protocol,
                    "processes": dist.world,
                },
                indent=2,
            ),
        )
        atomic_write_bytes(run_dir / "vocab.json", (data.path / "vocab.json").read_bytes())
    t0 = time.perf_counter()

    def validate(m: SequentialRecommender) -> dict[str, float]:
        return evaluate(m, seqs, "valid", protocol, cfg.eval, max_len, device)

    if cfg.train.metric.split("@")[0] not in ("hr", "ndcg", "mrr", "pre", "rec", "auc"):
        raise DataError(f"unknown validation metric {cfg.train.metric!r}")
    history = fit(
        model,
        seqs,
        train_cfg,
        run_dir,
        list(data.vocabs["behavior"].raw[1:]),
        validate,
        cfg.model,
        on_step=on_step,
    )
    train_s = time.perf_counter() - t0
    _, best = load_model(run_dir / "best", device)
    t1 = time.perf_counter()
    test = evaluate(best, seqs, "test", protocol, cfg.eval, max_len, device)
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
    return result


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
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except OSError as exc:
        raise DataError(f"not a run folder: {exc}", path=run_dir) from None
    cfg = RunConfig.from_dict({k: saved[k] for k in ("model", "model_options", "data", "train", "eval")})
    cfg = cfg.override(overrides) if overrides else cfg
    data = Prepared.load(saved["data_path"])
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
