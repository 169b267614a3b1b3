"""What every section of REPORT.md reads: the report's inputs and the statistics and formatting they share.

`RunRow`, `DatasetInfo` and `ReportContext` are the finished runs and prepared datasets a report is written
from; `mean_std`, `compare` (the seed-noise rule of every verdict) and `pm` turn seeds into numbers and text;
`seed_table` is the per-model mean ± std over seeds behind Table II and the ablations (figures 4-5);
`write_csv` writes every table's CSV beside REPORT.md. Writes no section itself.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssrf.evaluation.metrics import rela_impr
from ssrf.reports import reference as ref
from ssrf.reports.tables import model_name

BASE = "fm"  # the paper's RelaImpr base
REPEAT = "repeat"  # the reference rule a model must beat to show it learned more than repetition
KIND_METRICS = ("repeat_share", "auc_repeat", "auc_novel", "rec@10_repeat", "rec@10_novel")


@dataclass(frozen=True, kw_only=True)
class RunRow:
    run_id: str  # folder name under the runs directory
    part: str  # table2, ablation, sweep, beauty
    dataset: str
    model: str
    seed: int
    weight: float | None  # loss weight of the strongest behaviour
    result: dict[str, Any]  # the run's results.json
    lr: float | None = None  # the learning rate it trained with (part "tune": one point of the grid)


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    key: str
    title: str
    files: list[str]
    fmt: str
    paper: str | None
    strongest: str | None
    note: str
    meta: dict[str, Any]  # the prepared folder's meta.json


@dataclass(frozen=True, kw_only=True)
class ReportContext:
    plan: dict[str, Any]
    datasets: dict[str, DatasetInfo]
    runs: list[RunRow]
    configs: dict[str, dict[str, Any]]  # run id -> its RunConfig as a dict
    missing_models: list[str]
    provenance: dict[str, Any]
    beauty_skipped: dict[str, float] = field(default_factory=dict)  # model -> estimated minutes of a run
    labels: dict[str, str] = field(default_factory=dict)  # variant -> its row label ("SSRF (paper ...)")
    selected_lrs: dict[str, float] = field(default_factory=dict)  # "dataset/variant" -> selected rate

    def temporal(self) -> list[str]:
        """The temporal datasets under the leak-free protocol (the old protocol's are `legacy`)."""
        return [
            k
            for k, d in self.datasets.items()
            if d.meta["split"] == "temporal" and d.meta.get("fit_on", "train") == "train"
        ]

    def legacy(self) -> list[str]:
        return [
            k
            for k, d in self.datasets.items()
            if d.meta.get("fit_on") == "all" and d.meta["split"] == "temporal"
        ]

    def name(self, model: str) -> str:
        return self.labels.get(model) or model_name(model)

    def rows(self, part: str, dataset: str | None = None) -> list[RunRow]:
        return [r for r in self.runs if r.part == part and (dataset is None or r.dataset == dataset)]


# ------------------------------------------------------------------------------------------------ stats


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value; NaN mean for none)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    return mean, statistics.stdev(vals) if len(vals) > 1 else math.nan


def compare(a: Sequence[float], b: Sequence[float]) -> str:
    """'better' / 'worse' when the means differ by more than the larger standard deviation over seeds
    (with one seed each: by more than nothing), else 'tie'."""
    ma, sa = mean_std(a)
    mb, sb = mean_std(b)
    margin = max(0.0 if math.isnan(sa) else sa, 0.0 if math.isnan(sb) else sb)
    if ma - mb > margin:
        return "better"
    if mb - ma > margin:
        return "worse"
    return "tie"


def pm(mean: float, std: float, pct: bool = False, digits: int = 4) -> str:
    if math.isnan(mean):
        return "n/a"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    d = 1 if pct else digits
    text = f"{mean * scale:.{d}f}{unit}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{d}f}{unit}"


def seed_values(rows: Sequence[RunRow], metric: str) -> list[float]:
    """One test metric per run, in seed order (NaN where a run did not record it)."""
    return [float(r.result["test"].get(metric, math.nan)) for r in sorted(rows, key=lambda r: r.seed)]


def seed_rela(rows: Sequence[RunRow], base: Sequence[RunRow]) -> list[float]:
    """RelaImpr of each seed's run against the base model's run of the same seed."""
    by_seed = {r.seed: float(r.result["test"]["auc"]) for r in base}
    return [
        rela_impr(float(r.result["test"]["auc"]), by_seed[r.seed])
        for r in sorted(rows, key=lambda r: r.seed)
        if r.seed in by_seed
    ]


def models_in(rows: Sequence[RunRow]) -> list[str]:
    """The models of `rows`, in the order they first appear."""
    return list(dict.fromkeys(r.model for r in rows))


def seed_table(ctx: ReportContext, part: str) -> list[dict[str, Any]]:
    """Table II (part "table2") or the ablations ("ablation"): per dataset and model, mean ± std over seeds
    of AUC, RelaImpr against FM of the same seed, Pre@10 and Rec@10; the paper's values beside."""
    out = []
    for ds in ctx.temporal():
        rows = ctx.rows(part, ds)
        base = [r for r in ctx.rows("table2", ds) if r.model == BASE]
        for model in models_in(rows):
            mine = [r for r in rows if r.model == model]
            auc, rel = seed_values(mine, "auc"), seed_rela(mine, base) if base else []
            paper_col = ctx.datasets[ds].paper
            paper = ref.PAPER_TABLE_II.get(model, {}).get(paper_col or "", (math.nan, math.nan))
            row: dict[str, Any] = {"dataset": ds, "model": model, "seeds": len(mine)}
            row["lr"] = mine[0].lr
            for metric, vals in (
                ("auc", auc),
                ("rela_impr", rel),
                ("pre@10", seed_values(mine, "pre@10")),
                ("rec@10", seed_values(mine, "rec@10")),
                *((m, seed_values(mine, m)) for m in KIND_METRICS),
            ):
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(vals)
            row["stopped_by_patience"] = sum(bool(r.result.get("stopped_early")) for r in mine)
            row["stopped_by_cap"] = sum(
                r.result.get("trained", True) and not r.result.get("stopped_early") for r in mine
            )
            row["epochs_run"] = ";".join(str(r.result["epochs_run"]) for r in mine)
            row["best_epoch"] = ";".join(str(r.result["best_epoch"]) for r in mine)
            if part == "table2":
                row["paper_auc"], row["paper_rela_impr"] = paper
            row["runs"] = ";".join(r.run_id for r in sorted(mine, key=lambda r: r.seed))
            out.append(row)
    return out


# ------------------------------------------------------------------------------------------------ output


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Floats at full precision (repr), NaN as an empty cell."""
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return "" if math.isnan(v) else repr(v)
        return "" if v is None else v

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: cell(row.get(k)) for k in columns} for row in rows)
    tmp.replace(path)


def fmt(v: Any, digits: int = 4) -> str:
    """A float at `digits` decimals ('—' for NaN), anything else as text."""
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def plural(count: int, word: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{count} {word}{'' if count == 1 else 's'}"
