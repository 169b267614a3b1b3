"""REPORT.md's "Table II: AUC and RelaImpr" section: per temporal dataset and model, our AUC, RelaImpr
against FM and Rec@10 (mean ± std over seeds, from `context.seed_table`), the paper's printed values beside.

CSV: table2_auc.csv (the rows of `seed_table(ctx, "table2")`).
"""

from __future__ import annotations

import math
from typing import Any

from ssrf.reports.reproduction.context import ReportContext, fmt, pm
from ssrf.reports.tables import markdown
from ssrf.reports.tables import model_name as name


def section(ctx: ReportContext, t2: list[dict[str, Any]]) -> list[str]:
    """The section's markdown lines, from the Table II rows."""
    p = ctx.plan
    seeds = ", ".join(map(str, p["seeds"]))
    n_seeds = len(p["seeds"])
    lines = [
        "## Table II: AUC and RelaImpr (temporal 70/30 protocol)",
        "",
        f"Ours: test AUC (eq. 14, exact over every item the user never touched) and RelaImpr (eq. 15, "
        f"against FM's AUC of the same seed), mean ± std over {n_seeds} seeds ({seeds}); Rec@10 beside. "
        "The last two columns are **the paper's printed values** (Alibaba for Taobao), not ours; "
        "the paper's RelaImpr of FM is not 0 although FM is the base, so its RelaImpr column is not "
        "eq. 15 as defined. Bold: the best mean AUC of ours per dataset.",
        "",
    ]
    rows = []
    for ds in ctx.temporal():
        block = [r for r in t2 if r["dataset"] == ds]
        best = max((r["auc_mean"] for r in block), default=math.nan)
        for r in block:
            auc = pm(r["auc_mean"], r["auc_std"])
            rows.append(
                [
                    ds,
                    name(r["model"]),
                    f"**{auc}**" if r["auc_mean"] == best else auc,
                    pm(r["rela_impr_mean"], r["rela_impr_std"], pct=True),
                    pm(r["rec@10_mean"], r["rec@10_std"]),
                    r["epochs_run"],
                    fmt(r["paper_auc"], 3),
                    "—" if math.isnan(r["paper_rela_impr"]) else f"{r['paper_rela_impr'] * 100:.2f}%",
                ]
            )
    lines += [
        markdown(
            [
                "dataset",
                "model",
                "AUC (ours)",
                "RelaImpr (ours)",
                "Rec@10 (ours)",
                "epochs run (per seed)",
                "AUC (paper)",
                "RelaImpr (paper)",
            ],
            rows,
        ),
        "",
        "CSV: [table2_auc.csv](table2_auc.csv) (with Pre@10, the run folders and best epochs).",
        "",
    ]
    return lines
