"""`ssrf reproduce`: the paper's experimental section (III) on the real samples, as one resumable job that
writes a report.

    from ssrf.reproduce import reproduce
    summary = reproduce("reports/reproduction", budget_minutes=60)
    print(summary.report)                                 # reports/reproduction/REPORT.md

Parts, in the order they run (a run several parts need is trained once):
- table1    prepare every dataset (Table I, dropped rows by reason); nothing is trained.
- table2    the paper's models (its seven CTR baselines, those in the registry, and SSRF) on every temporal
            dataset, the paper's loss weights (strongest behaviour 10, others 1), over `plan.seeds`.
- ablation  SSRF, SSRF-UC, SSRF-O, same settings and seeds (figures 4-5).
- sweep     the Table II models at every loss weight of the strongest behaviour, first seed (figures 2-3).
- beauty    Amazon Beauty, leave-one-out, full ranking, a small epoch budget (the standard benchmark).

Runs are content-addressed: the folder `<runs>/<dataset>-<model>-s<seed>-<hash>` is named by a hash of the
prepared dataset's key (itself a hash of the input files and the preparation options), the model and the
whole run config (seed included). A folder with `results.json` is reused as it is; a folder without it is
an interrupted run, continued with `resume`. So running the same command again continues where it stopped.

The plan (epochs, seeds, loss weights, which models run on Beauty) follows from `budget_minutes` through a
cost model of seconds per epoch measured on this project's 2-core machine (`COST`); `quick` is the smoke
plan (about 5 minutes): every section of the report, but too few epochs and seeds to conclude anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ssrf import pipeline
from ssrf.core import DataError
from ssrf.dataset.artifacts import Prepared
from ssrf.dataset.prepare import PrepareConfig
from ssrf.evaluation.evaluate import EvalConfig
from ssrf.models import REGISTRY
from ssrf.reports import reproduction as R
from ssrf.reproduce.datasets import DatasetSpec, dataset_specs, default_data_root
from ssrf.training.loop import TrainConfig

log = logging.getLogger(__name__)

PAPER_MODELS = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint", "ssrf")  # Table II, in order
ABLATIONS = ("ssrf", "ssrf-uc", "ssrf-o")
SEQUENTIAL = ("pop", "gru4rec", "caser", "cosrec", "sasrec", "fdsa", "ssrf", "ssrf-uc", "ssrf-o")
PAPER_WEIGHT = 10.0  # the paper's 3.4: loss weights 1:1:10, the strongest behaviour weighted 10
PARTS = ("table1", "table2", "ablation", "sweep", "beauty")


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, kw_only=True)
class Plan:
    name: str  # quick, small, default, full
    datasets: tuple[str, ...] = ("taobao", "retailrocket", "diginetica")  # temporal datasets
    seeds: tuple[int, ...] = (0, 1, 2)  # Table II and the ablations (mean +- std over these)
    epochs: int = 10  # most epochs of a temporal run (early stopping on validation AUC)
    patience: int = 3  # validations without improvement before a run stops
    weights: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0)  # loss weights of the strongest behaviour
    models: tuple[str, ...] = PAPER_MODELS  # Table II (those missing from the registry are skipped)
    sweep_models: tuple[str, ...] = PAPER_MODELS  # lines of figures 2-3
    beauty_models: tuple[str, ...] = SEQUENTIAL  # the standard benchmark's rows
    beauty_epochs: int = 1  # epochs of every Beauty run
    beauty_sample_users: int | None = None  # quick plan: a user sample of Beauty
    loss: str = "bce"  # the paper's eq. 13 (3 sampled negatives)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Seconds per epoch (training + the validation pass) and seconds of the final test evaluation of one run,
# measured on this project's 2-core machine with one thread while other jobs kept the 1-minute load at 4-5:
# the slowest run of each (dataset, model) in a full reproduction (plan `default` of the first version,
# 197 runs). Beauty's DCN, NFM, Wide&Deep, AutoInt and DIN: 15 training steps and one batch of 512 users
# scored, extrapolated (their full-ranking evaluation is most of the cost).
COST: dict[str, dict[str, tuple[float, float]]] = {
    "taobao": {
        "fm": (0.9, 0.4),
        "wide_deep": (0.7, 0.7),
        "nfm": (0.8, 0.8),
        "deepfm": (0.8, 1.2),
        "dcn": (1.4, 1.4),
        "din": (2.9, 1.9),
        "autoint": (2.1, 1.4),
        "ssrf": (4.6, 0.7),
        "ssrf-uc": (4.5, 0.6),
        "ssrf-o": (2.8, 0.5),
    },
    "retailrocket": {"*": (0.15, 0.02), "ssrf": (0.8, 0.03), "ssrf-uc": (0.6, 0.02), "ssrf-o": (0.5, 0.02)},
    "diginetica": {
        "*": (0.25, 0.07),
        "din": (0.7, 0.14),
        "autoint": (0.8, 0.13),
        "ssrf": (2.0, 0.04),
        "ssrf-uc": (1.7, 0.03),
        "ssrf-o": (1.4, 0.03),
    },
    "beauty": {
        "pop": (5.3, 5.1),
        "gru4rec": (10.6, 6.1),
        "caser": (20.1, 10.7),
        "cosrec": (65.2, 12.2),
        "sasrec": (14.3, 11.3),
        "fdsa": (17.7, 10.9),
        "ssrf": (61.8, 9.6),
        "ssrf-uc": (46.0, 12.0),
        "ssrf-o": (40.6, 13.9),
        "fm": (14.6, 9.9),
        "deepfm": (62.7, 50.9),
        "dcn": (85.0, 75.0),
        "nfm": (115.0, 105.0),
        "wide_deep": (130.0, 120.0),
        "autoint": (200.0, 190.0),
        "din": (400.0, 390.0),
    },
}


EPOCH_SHARE = 0.75  # of the seconds at the epoch cap that runs used (early stopping): 0.747 in the 186
# temporal runs of that reproduction
BEAUTY_USERS = 22363


def run_cost(spec: RunSpec) -> float:
    """Estimated seconds of one run: `EPOCH_SHARE` of its epoch cap (early stopping), at the measured cost
    per epoch; a model not measured costs as the dataset's slowest."""
    table = COST.get(spec.dataset, {})
    per_epoch, test = table.get(spec.model) or table.get("*") or max(table.values(), default=(5.0, 1.0))
    epochs = spec.epochs * EPOCH_SHARE if spec.epochs > 2 else spec.epochs
    return (per_epoch * epochs + test) * spec.cost_scale + 0.5  # + building the sequences and the model


def candidate_plans() -> list[Plan]:
    """From the richest to the poorest; `plan_for` takes the first that fits the budget."""
    return [
        Plan(name="full", epochs=20, beauty_epochs=2, beauty_models=(*SEQUENTIAL, *PAPER_MODELS[:-1])),
        Plan(name="large", epochs=20, beauty_models=(*SEQUENTIAL, "fm", "deepfm", "dcn")),
        Plan(name="default", epochs=15, beauty_models=(*SEQUENTIAL, "fm", "deepfm", "dcn")),
        Plan(
            name="reduced",
            epochs=10,
            weights=(1.0, 5.0, 10.0, 20.0),
            beauty_models=(*SEQUENTIAL, "fm", "deepfm"),
        ),
        Plan(
            name="small",
            epochs=5,
            weights=(1.0, 10.0, 20.0),
            beauty_models=("pop", "gru4rec", "sasrec", "ssrf", "fm"),
        ),
    ]


QUICK = Plan(
    name="quick",
    seeds=(0, 1),
    epochs=1,
    patience=1,
    weights=(1.0, 10.0),
    beauty_models=("pop", "sasrec", "ssrf", "fm"),
    beauty_sample_users=1000,
)


def plan_for(budget_minutes: float, quick: bool = False) -> Plan:
    """The richest candidate plan whose estimated time is at most 85% of the budget (a margin for load)."""
    if quick:
        return QUICK
    plans = candidate_plans()
    for plan in plans:
        if estimate_seconds(plan) <= 0.85 * budget_minutes * 60:
            return plan
    return plans[-1]


def estimate_seconds(plan: Plan) -> float:
    return sum(run_cost(r) for r in unique_runs(build_runs(plan)))


# ------------------------------------------------------------------------------------------------ runs


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    part: str  # which part of the report asked for it first
    dataset: str  # DatasetSpec.key
    model: str
    seed: int
    weight: float | None  # loss weight of the strongest behaviour (None: one behaviour)
    epochs: int
    patience: int
    loss: str
    cost_scale: float = 1.0  # share of the measured cost (a user sample of Beauty costs less)

    def identity(self) -> tuple[str, str, int, float | None, int, int, str]:
        return (self.dataset, self.model, self.seed, self.weight, self.epochs, self.patience, self.loss)


def build_runs(plan: Plan, available: Sequence[str] | None = None) -> list[RunSpec]:
    """Every (part, run) the plan asks for, in execution order; models missing from `available` dropped."""
    have = set(REGISTRY if available is None else available)
    runs: list[RunSpec] = []

    def add(part: str, ds: str, model: str, seed: int, weight: float | None, epochs: int) -> None:
        scale = 1.0
        if ds == "beauty" and plan.beauty_sample_users:
            scale = min(1.0, plan.beauty_sample_users / BEAUTY_USERS)
        if model in have:
            runs.append(
                RunSpec(
                    part=part,
                    dataset=ds,
                    model=model,
                    seed=seed,
                    weight=weight,
                    epochs=epochs,
                    patience=plan.patience,
                    loss=plan.loss,
                    cost_scale=scale,
                )
            )

    for ds in plan.datasets:
        for model in plan.models:
            for seed in plan.seeds:
                add("table2", ds, model, seed, PAPER_WEIGHT, plan.epochs)
    for ds in plan.datasets:
        for model in ABLATIONS:
            for seed in plan.seeds:
                add("ablation", ds, model, seed, PAPER_WEIGHT, plan.epochs)
    for ds in plan.datasets:
        for model in plan.sweep_models:
            for w in plan.weights:
                add("sweep", ds, model, plan.seeds[0], w, plan.epochs)
    for model in plan.beauty_models:
        add("beauty", "beauty", model, plan.seeds[0], None, plan.beauty_epochs)
    return runs


def unique_runs(runs: Sequence[RunSpec]) -> list[RunSpec]:
    seen: set[tuple] = set()
    out = []
    for r in runs:
        if r.identity() not in seen:
            seen.add(r.identity())
            out.append(r)
    return out


def behavior_weights(
    data: Prepared, strongest: str | None, weight: float | None
) -> tuple[tuple[str, float], ...]:
    """The strongest behaviour at `weight`, every other behaviour at 1 (the paper's 1:1:10 at weight 10)."""
    if strongest is None or weight is None:
        return ()
    behaviours = list(data.vocabs["behavior"].raw[1:])
    if strongest not in behaviours:
        raise DataError(f"behaviour {strongest!r} not in this dataset ({', '.join(behaviours)})")
    return tuple((b, weight if b == strongest else 1.0) for b in behaviours)


def run_config(spec: RunSpec, ds: DatasetSpec, data: Prepared) -> pipeline.RunConfig:
    temporal = ds.prepare.split == "temporal"
    return pipeline.RunConfig(
        model=spec.model,
        data=ds.prepare,
        train=TrainConfig(
            loss=spec.loss,
            epochs=spec.epochs,
            patience=spec.patience,
            seed=spec.seed,
            metric="auc" if temporal else "ndcg@10",  # Table II is AUC; Beauty's standard is NDCG@10
            behavior_weights=behavior_weights(data, ds.strongest, spec.weight),
        ),
        eval=EvalConfig(),
    )


def run_id(spec: RunSpec, cfg: pipeline.RunConfig, data: Prepared) -> str:
    """`<dataset>-<model>-s<seed>-<hash>`: the hash covers the prepared data's key and the whole config."""
    payload = json.dumps({"data": data.meta["key"], "config": cfg.to_dict()}, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    return f"{spec.dataset}-{spec.model}-s{spec.seed}-{digest}"


# ------------------------------------------------------------------------------------------------ reproduce


@dataclass
class Summary:
    out: Path
    report: Path
    plan: Plan
    trained: int = 0  # runs trained by this call
    reused: int = 0  # runs found finished in the run folders
    wall_seconds: float = 0.0
    missing_models: list[str] = field(default_factory=list)  # the paper's models not in the registry


def reproduce(
    out: str | Path,
    budget_minutes: float = 60.0,
    quick: bool = False,
    *,
    plan: Plan | None = None,
    runs_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    specs: dict[str, DatasetSpec] | None = None,
    command: str | None = None,
    progress: bool = True,
    on_run: Callable[[str, bool], None] | None = None,
) -> Summary:
    """Run the plan (`plan`, else the one `budget_minutes`/`quick` choose), reusing finished runs, and write
    `<out>/REPORT.md` with its CSVs and PNGs. `on_run(run_id, trained)` is called after each run.
    `specs` replaces the shared samples' dataset specs (the user's own full files, see `datasets`)."""
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out = Path(out)
    runs_root = Path(runs_dir) if runs_dir is not None else out / "runs"
    root = Path(data_root) if data_root is not None else default_data_root()
    plan = plan or plan_for(budget_minutes, quick)
    specs = specs or dataset_specs(plan.beauty_sample_users)
    out.mkdir(parents=True, exist_ok=True)
    runs_root.mkdir(parents=True, exist_ok=True)
    missing = [m for m in dict.fromkeys((*plan.models, *ABLATIONS)) if m not in REGISTRY]
    load_start = _load()

    # table1: prepare every dataset the plan uses
    t0 = time.perf_counter()
    prepared: dict[str, Prepared] = {}
    needed = [*plan.datasets, *(["beauty"] if plan.beauty_models else [])]
    for key in needed:
        ds = specs[key]
        files = [root / f for f in ds.files]
        prepared[key] = pipeline.prepare(files, ds.fmt, ds.prepare, root=cache_dir)
    part_wall = {"table1": time.perf_counter() - t0}

    runs = build_runs(plan)
    todo = unique_runs(runs)
    ids: dict[tuple, str] = {}
    configs: dict[str, pipeline.RunConfig] = {}
    for r in todo:
        cfg = run_config(r, specs[r.dataset], prepared[r.dataset])
        rid = run_id(r, cfg, prepared[r.dataset])
        ids[r.identity()] = rid
        configs[rid] = cfg
    pending = [r for r in todo if not (runs_root / ids[r.identity()] / "results.json").exists()]
    total = sum(run_cost(r) for r in pending)
    summary = Summary(out=out, report=out / "REPORT.md", plan=plan, missing_models=missing)
    bar = tqdm(
        total=round(total),
        unit="est-s",
        disable=not progress or None,
        desc="reproduce",
        bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed} elapsed, ~{remaining} left]",
        position=0,
        dynamic_ncols=True,
    )
    results: dict[str, dict[str, Any]] = {}
    est_done, spent, n_done = 0.0, 0.0, 0
    completed = False
    try:
        for r in todo:
            rid = ids[r.identity()]
            run_dir = runs_root / rid
            where = f"{r.part} | {r.dataset} | {r.model} | seed {r.seed}" + (
                f" | weight {r.weight:g}" if r.weight is not None and r.part == "sweep" else ""
            )
            bar.set_description_str(where)
            t = time.perf_counter()
            trained = not (run_dir / "results.json").exists()
            if trained:
                resume = run_dir.exists() and any(run_dir.iterdir())
                pipeline.train(prepared[r.dataset], configs[rid], run_dir, resume=resume)
                shutil.rmtree(run_dir / "resume", ignore_errors=True)  # finished: 3/4 of the folder's bytes
                summary.trained += 1
                bar.update(round(run_cost(r)))
            else:
                summary.reused += 1
            results[rid] = json.loads((run_dir / "results.json").read_text())
            took = time.perf_counter() - t
            part_wall[r.part] = part_wall.get(r.part, 0.0) + took
            if trained:  # time left: the estimate of what is left, scaled by how far off it was so far
                n_done, est_done, spent = n_done + 1, est_done + run_cost(r), spent + took
                left = (total - est_done) * spent / max(est_done, 1e-9) / 60
                log.info(
                    "[%d/%d, ~%.0f min left] %s: %s (%.1f s)",
                    n_done,
                    len(pending),
                    left,
                    where,
                    _brief(results[rid]),
                    took,
                )
            if on_run is not None:
                on_run(rid, trained)
        completed = True
    finally:
        bar.close()
        if not completed:  # an interrupted call is recorded too: the next call continues it
            summary.wall_seconds = time.perf_counter() - t_start
            _record_call(out, command, plan, budget_minutes, summary, part_wall, load_start, started, False)

    rows = [
        R.RunRow(
            run_id=ids[r.identity()],
            part=r.part,
            dataset=r.dataset,
            model=r.model,
            seed=r.seed,
            weight=r.weight,
            result=results[ids[r.identity()]],
        )
        for r in runs
    ]
    summary.wall_seconds = time.perf_counter() - t_start
    _record_call(out, command, plan, budget_minutes, summary, part_wall, load_start, started, True)
    beauty_probe = RunSpec(
        part="beauty",
        dataset="beauty",
        model="pop",
        seed=plan.seeds[0],
        weight=None,
        epochs=plan.beauty_epochs,
        patience=plan.patience,
        loss=plan.loss,
        cost_scale=min(1.0, (plan.beauty_sample_users or BEAUTY_USERS) / BEAUTY_USERS),
    )
    context = R.ReportContext(
        plan=plan.to_dict(),
        datasets={
            k: R.DatasetInfo(
                key=k,
                title=specs[k].title,
                files=[str(root / f) for f in specs[k].files],
                fmt=specs[k].fmt,
                paper=specs[k].paper,
                strongest=specs[k].strongest,
                note=specs[k].note,
                meta=prepared[k].meta,
            )
            for k in needed
        },
        runs=rows,
        configs={rid: configs[rid].to_dict() for rid in configs},
        missing_models=missing,
        beauty_skipped={
            m: run_cost(dataclasses.replace(beauty_probe, model=m)) / 60
            for m in (*SEQUENTIAL, *PAPER_MODELS)
            if m in REGISTRY and m not in plan.beauty_models
        },
        provenance=_provenance(
            command, plan, budget_minutes, quick, summary, part_wall, load_start, runs_root, out
        ),
    )
    R.write_report(out, context)
    return summary


def _brief(result: dict[str, Any]) -> str:
    test = result["test"]
    keys = [k for k in ("auc", "pre@10", "rec@10", "hr@10", "ndcg@10") if k in test]
    return ", ".join(f"{k} {test[k]:.4f}" for k in keys)


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


CALLS = "calls.jsonl"  # in the report folder: one line per call of `reproduce` that wrote there


def _record_call(
    out: Path,
    command: str | None,
    plan: Plan,
    budget_minutes: float,
    summary: Summary,
    part_wall: dict[str, float],
    load_start: float | None,
    started: str,
    completed: bool,
) -> None:
    """Append this call to `<out>/calls.jsonl`, so a report continued over several calls shows them all."""
    record = {
        "started": started,
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "plan": plan.name,
        "budget_minutes": budget_minutes,
        "completed": completed,
        "runs_trained": summary.trained,
        "runs_reused": summary.reused,
        "wall_seconds": round(summary.wall_seconds, 1),
        "part_wall_seconds": {k: round(v, 1) for k, v in part_wall.items()},
        "load_1m_at_start": None if load_start is None else round(load_start, 2),
        "load_1m_at_end": None if _load() is None else round(_load() or 0.0, 2),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    with open(out / CALLS, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _calls(out: Path) -> list[dict[str, Any]]:
    path = out / CALLS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _provenance(
    command: str | None,
    plan: Plan,
    budget_minutes: float,
    quick: bool,
    summary: Summary,
    part_wall: dict[str, float],
    load_start: float | None,
    runs_root: Path,
    out: Path,
) -> dict[str, Any]:
    import torch

    return {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "plan": plan.name,
        "budget_minutes": budget_minutes,
        "quick": quick,
        "estimated_minutes": round(estimate_seconds(plan) / 60, 1),
        "runs_trained": summary.trained,
        "runs_reused": summary.reused,
        "wall_seconds": round(summary.wall_seconds, 1),
        "part_wall_seconds": {k: round(v, 1) for k, v in part_wall.items()},
        "runs_dir": _relative(runs_root, out),
        "calls": _calls(out),
        "versions": {
            "python": platform.python_version(),
            **{p: _version(p) for p in ("ssrf", "torch", "numpy", "polars", "matplotlib")},
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "load_1m_at_start": None if load_start is None else round(load_start, 2),
            "load_1m_at_end": None if _load() is None else round(_load() or 0.0, 2),
        },
    }


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
