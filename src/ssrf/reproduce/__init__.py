"""`ssrf reproduce`: the paper's experimental section (III) on the real samples, as one resumable job that
writes a report.

    from ssrf.reproduce import reproduce
    summary = reproduce("reports/reproduction", budget_minutes=60)
    print(summary.report)                                 # reports/reproduction/REPORT.md

Parts, in the order they run (a run several parts need is trained once):
- table1    prepare every dataset (Table I, dropped rows by reason); nothing is trained. Temporal datasets
            use the leak-free split (k-core and vocabularies from the training period only).
- tune      the learning-rate grid (`plan.lrs`): every trained Table II row on the first seed, each run to
            early stopping on validation AUC; the rate with the best validation AUC is kept. Ablations
            inherit their parent's rate. Test metrics play no part in it.
- table2    the reference rows (random, popularity, the repeat rule), the paper's seven CTR baselines, SSRF
            as published (untied output, bce with 3 negatives) and SSRF as we train it best (tied, full
            softmax), the paper's loss weights (strongest behaviour 10, others 1), over `plan.seeds`.
- ablation  the 2x2 of tied/untied x bce/ce, SSRF-UC and SSRF-O, same settings and seeds (figures 4-5).
- sweep     the Table II rows at every loss weight of the strongest behaviour, first seed (figures 2-3).
- legacy    the reference rows under the old protocol (k-core over the whole log), to show its artefact.
- beauty    Amazon Beauty, leave-one-out, full ranking, a small epoch budget (the standard benchmark).

Runs are content-addressed: the folder `<runs>/<dataset>-<model>-s<seed>-<hash>` is named by a hash of the
prepared dataset's key (itself a hash of the input files and the preparation options), the model and the
whole run config (seed and learning rate included). A folder with `results.json` is reused as it is; a
folder without it is an interrupted run, continued with `resume`. So running the same command again
continues where it stopped. Everything is written under `out`: the runs in `<out>/runs`, the prepared
datasets in `<out>/data` (unless `runs_dir` or `cache_dir` say otherwise).

Runs stop by patience (`plan.epochs` is a cap far above where they stop; the report counts the runs that
reached it). The plan (grid, loss weights, which models run on Beauty) follows from `budget_minutes`
through a cost model of seconds per epoch measured on this project's 2-core machine (`COST`); `quick` is
the smoke plan (a few minutes): every section of the report, but a 2-epoch cap and too few seeds to
conclude anything.
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
from ssrf.evaluation.evaluate import EvalConfig
from ssrf.models import REGISTRY
from ssrf.reports import reproduction as R
from ssrf.reproduce.datasets import DatasetSpec, dataset_specs, default_data_root
from ssrf.training.loop import TrainConfig

log = logging.getLogger(__name__)

CTR_MODELS = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint")  # the paper's baselines
REFERENCES = ("random", "pop", "repeat")  # reference rows: chance, training popularity, the repeat rule
PAPER_MODELS = (*CTR_MODELS, "ssrf")  # Table II as printed, in order
TABLE2 = (*REFERENCES, *CTR_MODELS, "ssrf", "ssrf-best")  # our Table II
ABLATIONS = ("ssrf", "ssrf-uc", "ssrf-o")  # figures 4-5
SEQUENTIAL = ("pop", "gru4rec", "caser", "cosrec", "sasrec", "fdsa", "ssrf", "ssrf-uc", "ssrf-o")
PAPER_WEIGHT = 10.0  # the paper's 3.4: loss weights 1:1:10, the strongest behaviour weighted 10
PARTS = ("table1", "tune", "table2", "ablation", "sweep", "beauty", "legacy")


@dataclass(frozen=True)
class Variant:
    """A row of the report: a registered model with options and a loss. `parent`: the variant whose
    selected learning rate it inherits (the ablations), instead of a tuning of its own."""

    model: str
    options: tuple[tuple[str, Any], ...] = ()
    loss: str | None = None  # None: the plan's loss (the paper's bce)
    parent: str | None = None
    label: str = ""


VARIANTS: dict[str, Variant] = {
    "ssrf": Variant("ssrf", label="SSRF (paper: untied, bce)"),
    "ssrf-best": Variant("ssrf", (("tie_output", True),), "ce", label="SSRF (best: tied, ce)"),
    "ssrf-tied-bce": Variant("ssrf", (("tie_output", True),), "bce", "ssrf", "SSRF tied, bce"),
    "ssrf-untied-ce": Variant("ssrf", (), "ce", "ssrf-best", "SSRF untied, ce"),
    "ssrf-uc": Variant("ssrf-uc", parent="ssrf", label="SSRF-UC"),
    "ssrf-o": Variant("ssrf-o", parent="ssrf", label="SSRF-O"),
}
SSRF_2X2 = ("ssrf", "ssrf-tied-bce", "ssrf-untied-ce", "ssrf-best")  # tied/untied x bce/ce


def variant(name: str) -> Variant:
    return VARIANTS.get(name) or Variant(name)


def trains(name: str) -> bool:
    """False for the reference rows: nothing to learn, so nothing to tune."""
    return variant(name).model not in REFERENCES


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, kw_only=True)
class Plan:
    name: str  # quick, small, default, full
    datasets: tuple[str, ...] = ("taobao", "retailrocket", "diginetica")  # temporal datasets
    seeds: tuple[int, ...] = (0, 1, 2)  # Table II and the ablations (mean +- std over these)
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # the tuning grid: every trained row of Table II runs each
    # on the first seed, to early stopping, and keeps the one with the best validation metric
    epochs: int = 200  # a cap far above where runs stop: patience ends them (the report counts which)
    patience: int = 5  # validations without improvement before a run stops
    weights: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0)  # loss weights of the strongest behaviour
    models: tuple[str, ...] = TABLE2  # Table II (those missing from the registry are skipped)
    ablations: tuple[str, ...] = (*SSRF_2X2[1:3], "ssrf-uc", "ssrf-o")  # at their parent's lr
    sweep_models: tuple[str, ...] = TABLE2  # lines of figures 2-3
    beauty_models: tuple[str, ...] = SEQUENTIAL  # the standard benchmark's rows
    beauty_epochs: int = 1  # epochs of every Beauty run
    beauty_sample_users: int | None = None  # quick plan: a user sample of Beauty
    loss: str = "bce"  # the paper's eq. 13 (3 sampled negatives)
    legacy: bool = True  # the reference rows also under the old protocol (k-core over the whole log)

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


BEAUTY_USERS = 22363


EXPECTED_EPOCHS = 25  # epochs a temporal run takes before patience stops it (a planning guess)


def run_cost(spec: RunSpec) -> float:
    """Estimated seconds of one run at the measured cost per epoch (a model not measured costs as the
    dataset's slowest); a reference row trains nothing and costs one evaluation."""
    table = COST.get(spec.dataset.removesuffix(LEGACY), {})
    model = variant(spec.model).model
    per_epoch, test = table.get(model) or table.get("*") or max(table.values(), default=(5.0, 1.0))
    if not trains(spec.model):
        return test * 2 + 0.5
    epochs = min(spec.epochs, EXPECTED_EPOCHS)
    return (per_epoch * epochs + test) * spec.cost_scale + 0.5  # + building the sequences and the model


def candidate_plans() -> list[Plan]:
    """From the richest to the poorest; `plan_for` takes the first that fits the budget."""
    return [
        Plan(
            name="full",
            lrs=(1e-4, 3e-4, 1e-3, 3e-3),
            weights=(1.0, 2.0, 5.0, 10.0, 20.0),
            beauty_epochs=2,
            beauty_models=(*SEQUENTIAL, *CTR_MODELS),
        ),
        Plan(name="default", beauty_models=("pop", "repeat", "sasrec", "ssrf")),
        Plan(name="small", lrs=(1e-3, 3e-3), weights=(1.0, 10.0), beauty_models=("pop", "repeat")),
    ]


QUICK = Plan(  # a smoke test of every section: a 2-epoch cap, too short to conclude anything
    name="quick",
    seeds=(0, 1),
    lrs=(1e-3,),
    epochs=2,
    patience=1,
    weights=(1.0, 10.0),
    models=(*REFERENCES, "fm", "deepfm", "ssrf", "ssrf-best"),
    ablations=("ssrf-uc", "ssrf-o"),
    sweep_models=("pop", "fm", "ssrf"),
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


def estimate_seconds(plan: Plan, jobs: int = 1) -> float:
    runs = [*build_tuning(plan), *build_runs(plan, {})]
    return sum(run_cost(r) for r in unique_runs(runs)) / max(jobs, 1)


# ------------------------------------------------------------------------------------------------ runs


LEGACY = "@old"  # dataset key suffix of the old protocol's preparation (k-core over the whole log)


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    part: str  # which part of the report asked for it first
    dataset: str  # DatasetSpec.key
    model: str  # a variant name (VARIANTS) or a registered model
    seed: int
    weight: float | None  # loss weight of the strongest behaviour (None: one behaviour)
    epochs: int
    patience: int
    loss: str
    lr: float = 1e-3
    cost_scale: float = 1.0  # share of the measured cost (a user sample of Beauty costs less)

    def identity(self) -> tuple:
        return (
            self.dataset,
            self.model,
            self.seed,
            self.weight,
            self.epochs,
            self.patience,
            self.loss,
            self.lr,
        )


def _spec(plan: Plan, part: str, ds: str, name: str, seed: int, weight: float | None, lr: float) -> RunSpec:
    scale = 1.0
    if ds == "beauty" and plan.beauty_sample_users:
        scale = min(1.0, plan.beauty_sample_users / BEAUTY_USERS)
    epochs = plan.beauty_epochs if ds == "beauty" else plan.epochs
    return RunSpec(
        part=part,
        dataset=ds,
        model=name,
        seed=seed,
        weight=weight,
        epochs=epochs,
        patience=plan.patience,
        loss=variant(name).loss or plan.loss,
        lr=lr,
        cost_scale=scale,
    )


def _available(plan_models: Sequence[str], available: Sequence[str] | None) -> list[str]:
    have = set(REGISTRY if available is None else available)
    return [m for m in plan_models if variant(m).model in have]


def build_tuning(plan: Plan, available: Sequence[str] | None = None) -> list[RunSpec]:
    """The learning-rate grid: every trained Table II row at each rate, first seed, the paper's weights."""
    return [
        _spec(plan, "tune", ds, m, plan.seeds[0], PAPER_WEIGHT, lr)
        for ds in plan.datasets
        for m in _available(plan.models, available)
        if trains(m) and variant(m).parent is None
        for lr in plan.lrs
    ]


def select_lrs(
    plan: Plan, results: dict[tuple, dict[str, Any]], metric: str = "auc"
) -> dict[tuple[str, str], float]:
    """(dataset, variant) -> the grid's learning rate with the best validation `metric` (ties: the first
    rate of the grid). `results` maps a run's identity to its results.json; test is never read."""
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for r in build_tuning(plan):
        res = results.get(r.identity())
        if res is None:
            continue
        score = res["best_valid"].get(f"valid_{metric}", float("-inf"))
        key = (r.dataset, r.model)
        if key not in best or score > best[key][0]:
            best[key] = (score, r.lr)
    return {k: lr for k, (_, lr) in best.items()}


def build_runs(
    plan: Plan, chosen: dict[tuple[str, str], float], available: Sequence[str] | None = None
) -> list[RunSpec]:
    """Every (part, run) after tuning, in execution order: each row at its selected learning rate (an
    ablation at its parent's; the first of the grid when none was selected)."""

    def lr(ds: str, name: str) -> float:
        v = variant(name)
        return chosen.get((ds, v.parent or name), plan.lrs[0])

    runs: list[RunSpec] = []
    for ds in plan.datasets:
        for m in _available(plan.models, available):
            runs += [_spec(plan, "table2", ds, m, seed, PAPER_WEIGHT, lr(ds, m)) for seed in plan.seeds]
    for ds in plan.datasets:
        for m in _available(dict.fromkeys(("ssrf", *plan.ablations, "ssrf-best")), available):
            runs += [_spec(plan, "ablation", ds, m, seed, PAPER_WEIGHT, lr(ds, m)) for seed in plan.seeds]
    for ds in plan.datasets:
        for m in _available(plan.sweep_models, available):
            runs += [_spec(plan, "sweep", ds, m, plan.seeds[0], w, lr(ds, m)) for w in plan.weights]
    if plan.legacy:
        for ds in plan.datasets:
            for m in _available(REFERENCES, available):
                runs += [_spec(plan, "legacy", ds + LEGACY, m, plan.seeds[0], PAPER_WEIGHT, plan.lrs[0])]
    for m in _available(plan.beauty_models, available):  # (no tuning: the default rate)
        runs.append(_spec(plan, "beauty", "beauty", m, plan.seeds[0], None, TrainConfig().lr))
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
    v = variant(spec.model)
    options = dict(v.options)
    if v.model == "random":  # another seed, another ranking (the other reference rows have no randomness)
        options["seed"] = spec.seed
    return pipeline.RunConfig(
        model=v.model,
        model_options=options,
        data=ds.prepare,
        train=TrainConfig(
            loss=spec.loss,
            epochs=spec.epochs,
            patience=spec.patience,
            seed=spec.seed,
            lr=spec.lr,
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
    budget_minutes: float = 240.0,
    quick: bool = False,
    *,
    plan: Plan | None = None,
    runs_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    specs: dict[str, DatasetSpec] | None = None,
    jobs: int = 1,
    command: str | None = None,
    progress: bool = True,
    on_run: Callable[[str, bool], None] | None = None,
) -> Summary:
    """Run the plan (`plan`, else the one `budget_minutes`/`quick` choose), reusing finished runs, and write
    `<out>/REPORT.md` with its CSVs and PNGs. `on_run(run_id, trained)` is called after each run.
    Runs go to `runs_dir` (default `<out>/runs`), prepared datasets to `cache_dir` (default `<out>/data`):
    nothing is written outside `out` unless asked.
    `specs` replaces the shared samples' dataset specs (the user's own full files, see `datasets`);
    `jobs` > 1 trains that many runs at once, each in its own process with one thread.

    Two phases: the learning-rate grid on the first seed (validation only), then every run of the report
    at the selected rates. Test metrics are written by every run but read only to make the report."""
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out = Path(out)
    runs_root = Path(runs_dir) if runs_dir is not None else out / "runs"
    root = Path(data_root) if data_root is not None else default_data_root()
    cache = Path(cache_dir) if cache_dir is not None else out / "data"  # not data/processed in the cwd
    plan = plan or plan_for(budget_minutes, quick)
    specs = dict(specs or dataset_specs(plan.beauty_sample_users))
    if plan.legacy:
        specs.update({k + LEGACY: _legacy(specs[k]) for k in plan.datasets})
    out.mkdir(parents=True, exist_ok=True)
    runs_root.mkdir(parents=True, exist_ok=True)
    missing = [m for m in dict.fromkeys((*plan.models, *ABLATIONS)) if variant(m).model not in REGISTRY]
    load_start = _load()

    t0 = time.perf_counter()  # table1: prepare every dataset the plan uses
    needed = [
        *plan.datasets,
        *([k + LEGACY for k in plan.datasets] if plan.legacy else []),
        *(["beauty"] if plan.beauty_models else []),
    ]
    prepared = {
        k: pipeline.prepare([root / f for f in specs[k].files], specs[k].fmt, specs[k].prepare, root=cache)
        for k in needed
    }
    summary = Summary(out=out, report=out / "REPORT.md", plan=plan, missing_models=missing)
    runner = _Runner(specs, prepared, runs_root, summary, jobs, progress, on_run)
    runner.part_wall["table1"] = time.perf_counter() - t0
    completed = False
    try:
        tuning = build_tuning(plan)
        runner.run(tuning)
        chosen = select_lrs(plan, {r.identity(): runner.result(r) for r in tuning})
        runs = build_runs(plan, chosen)
        runner.run(runs)
        completed = True
    finally:
        summary.wall_seconds = time.perf_counter() - t_start
        _record_call(
            out, command, plan, budget_minutes, summary, runner.part_wall, load_start, started, completed
        )
    rows = [
        R.RunRow(
            run_id=runner.ids[r.identity()],
            part=r.part,
            dataset=r.dataset,
            model=r.model,
            seed=r.seed,
            weight=r.weight,
            result=runner.result(r),
            lr=r.lr,
        )
        for r in [*tuning, *runs]
    ]
    beauty_probe = _spec(plan, "beauty", "beauty", "pop", plan.seeds[0], None, TrainConfig().lr)
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
        configs={rid: cfg.to_dict() for rid, cfg in runner.configs.items()},
        missing_models=missing,
        beauty_skipped={
            m: run_cost(dataclasses.replace(beauty_probe, model=m)) / 60
            for m in (*SEQUENTIAL, *PAPER_MODELS)
            if m in REGISTRY and m not in plan.beauty_models
        },
        provenance=_provenance(
            command, plan, budget_minutes, quick, summary, runner.part_wall, load_start, runs_root, out
        ),
        labels={k: v.label for k, v in VARIANTS.items() if v.label},
        selected_lrs={f"{ds}/{m}": lr for (ds, m), lr in chosen.items()},
    )
    R.write_report(out, context)
    return summary


def _legacy(spec: DatasetSpec) -> DatasetSpec:
    """The same dataset under the old protocol: k-core and vocabularies over the whole log."""
    return dataclasses.replace(
        spec,
        key=spec.key + LEGACY,
        title=spec.title + ", old protocol",
        prepare=dataclasses.replace(spec.prepare, fit_on="all"),
    )


def _train_in_process(data_path: str, config: dict[str, Any], run_dir: str, resume: bool) -> None:
    """One run in a worker process (`jobs` > 1), one thread, as `_Runner` would train it in place."""
    import torch

    torch.set_num_threads(1)
    logging.getLogger("ssrf").setLevel(logging.WARNING)
    cfg = pipeline.RunConfig.from_dict(config)
    pipeline.train(Prepared.load(data_path), cfg, run_dir, resume=resume)
    shutil.rmtree(Path(run_dir) / "resume", ignore_errors=True)


class _Runner:
    """Trains the runs a phase asks for (reusing finished run folders), one by one or `jobs` at a time."""

    def __init__(
        self,
        specs: dict[str, DatasetSpec],
        prepared: dict[str, Prepared],
        runs_root: Path,
        summary: Summary,
        jobs: int,
        progress: bool,
        on_run: Callable[[str, bool], None] | None,
    ) -> None:
        self.specs, self.prepared, self.runs_root, self.summary = specs, prepared, runs_root, summary
        self.jobs, self.progress, self.on_run = max(1, jobs), progress, on_run
        self.ids: dict[tuple, str] = {}
        self.configs: dict[str, pipeline.RunConfig] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.part_wall: dict[str, float] = {}

    def result(self, r: RunSpec) -> dict[str, Any]:
        return self.results[self.ids[r.identity()]]

    def _register(self, r: RunSpec) -> str:
        if r.identity() not in self.ids:
            data = self.prepared[r.dataset]
            cfg = run_config(r, self.specs[r.dataset], data)
            rid = run_id(r, cfg, data)
            self.ids[r.identity()], self.configs[rid] = rid, cfg
        return self.ids[r.identity()]

    def run(self, runs: Sequence[RunSpec]) -> None:
        todo = [r for r in unique_runs(runs) if self._register(r) not in self.results]
        pending = [r for r in todo if not (self.runs_root / self.ids[r.identity()] / "results.json").exists()]
        for r in todo:
            if r not in pending:
                self._finish(r, trained=False, took=0.0)
        bar = tqdm(
            total=round(sum(run_cost(r) for r in pending)),
            unit="est-s",
            disable=not self.progress or None,
            desc="reproduce",
            bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed} elapsed, ~{remaining} left]",
            dynamic_ncols=True,
        )
        try:
            if self.jobs == 1:
                for r in pending:
                    bar.set_description_str(_where(r))
                    t = time.perf_counter()
                    rid = self.ids[r.identity()]
                    run_dir = self.runs_root / rid
                    resume = run_dir.exists() and any(run_dir.iterdir())
                    pipeline.train(self.prepared[r.dataset], self.configs[rid], run_dir, resume=resume)
                    shutil.rmtree(run_dir / "resume", ignore_errors=True)  # finished: most of its bytes
                    self._finish(r, trained=True, took=time.perf_counter() - t)
                    bar.update(round(run_cost(r)))
            else:
                self._run_parallel(pending, bar)
        finally:
            bar.close()

    def _run_parallel(self, pending: list[RunSpec], bar: tqdm) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("spawn")) as pool:
            started = {}
            for r in pending:  # in the plan's order: tables first, figures last
                rid = self.ids[r.identity()]
                run_dir = self.runs_root / rid
                resume = run_dir.exists() and any(run_dir.iterdir())
                config = self.configs[rid].to_dict()
                future = pool.submit(
                    _train_in_process, str(self.prepared[r.dataset].path), config, str(run_dir), resume
                )
                started[future] = (r, time.perf_counter())
            for future in as_completed(started):
                future.result()  # a failed run stops the reproduction, as it does with one job
                r, t = started[future]
                self._finish(r, trained=True, took=time.perf_counter() - t)
                bar.update(round(run_cost(r)))

    def _finish(self, r: RunSpec, trained: bool, took: float) -> None:
        rid = self.ids[r.identity()]
        self.results[rid] = json.loads((self.runs_root / rid / "results.json").read_text())
        self.part_wall[r.part] = self.part_wall.get(r.part, 0.0) + took
        if trained:
            self.summary.trained += 1
            log.info("%s: %s (%.1f s)", _where(r), _brief(self.results[rid]), took)
        else:
            self.summary.reused += 1
        if self.on_run is not None:
            self.on_run(rid, trained)


def _where(r: RunSpec) -> str:
    extra = f" | weight {r.weight:g}" if r.weight is not None and r.part == "sweep" else ""
    return f"{r.part} | {r.dataset} | {r.model} | seed {r.seed} | lr {r.lr:g}{extra}"


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
