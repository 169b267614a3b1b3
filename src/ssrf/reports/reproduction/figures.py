"""REPORT.md's figure sections: "Figures 2 and 3" (Pre@10 and Rec@10 against the loss weight of the strongest
behaviour) and "Figures 4 and 5" (the ablations SSRF-UC and SSRF-O, with their table).

PNGs: fig2_pre10_vs_weight.png, fig3_rec10_vs_weight.png, fig4_ablation_relaimpr.png, fig5_ablation_rec10.png,
drawn by `ssrf.reports.figures`. CSVs: fig2_3_loss_weight.csv (the rows of `sweep_table`) and
fig4_5_ablation.csv (the rows of `context.seed_table(ctx, "ablation")`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssrf.reports import figures as plots
from ssrf.reports.reproduction.context import ReportContext, models_in, pm
from ssrf.reports.tables import markdown


def sweep_table(ctx: ReportContext) -> list[dict[str, Any]]:
    out = []
    for ds in ctx.temporal():
        for r in sorted(
            ctx.rows("sweep", ds),
            key=lambda r: (models_in(ctx.rows("sweep", ds)).index(r.model), r.weight or 0),
        ):
            t = r.result["test"]
            out.append(
                {
                    "dataset": ds,
                    "behaviour": ctx.datasets[ds].strongest,
                    "model": r.model,
                    "weight": r.weight,
                    "seed": r.seed,
                    "pre@10": t["pre@10"],
                    "rec@10": t["rec@10"],
                    "auc": t["auc"],
                    "run": r.run_id,
                }
            )
    return out


def write_pngs(
    out: Path, ctx: ReportContext, sw: list[dict[str, Any]], abl: list[dict[str, Any]]
) -> list[str]:
    """Draw figures 2-5 from the sweep and ablation rows, save them into `out`; return their file names."""
    temporal = ctx.temporal()
    titles = {k: ctx.datasets[k].title for k in temporal}
    behaviours = {k: ctx.datasets[k].strongest or "" for k in temporal}
    pngs = {
        "fig2_pre10_vs_weight.png": plots.metric_vs_weight(
            sw,
            "pre@10",
            "Pre@10 (share of the top 10 in the test period)",
            titles,
            behaviours,
            "Figure 2. Precision of the top-10 list vs the loss weight of the strongest behaviour",
        ),
        "fig3_rec10_vs_weight.png": plots.metric_vs_weight(
            sw,
            "rec@10",
            "Rec@10 (share of the test items in the top 10)",
            titles,
            behaviours,
            "Figure 3. Recall of the top-10 list vs the loss weight of the strongest behaviour",
        ),
        "fig4_ablation_relaimpr.png": plots.ablation_bars(
            abl,
            "rela_impr",
            "RelaImpr over FM (%, eq. 15)",
            titles,
            100.0,
            "Figure 4. Ablations: relative AUC improvement over FM",
            "; 0% = FM, -100% = random (AUC 0.5)",
        ),
        "fig5_ablation_rec10.png": plots.ablation_bars(
            abl,
            "rec@10",
            "Rec@10 (share of the test items in the top 10)",
            titles,
            1.0,
            "Figure 5. Ablations: recall of the top-10 list",
        ),
    }
    for fname, fig in pngs.items():
        plots.save(fig, out / fname)
    return list(pngs)


def section(ctx: ReportContext, abl: list[dict[str, Any]]) -> list[str]:
    """The markdown lines of both figure sections (figures 2-3, then 4-5), from the ablation rows."""
    p = ctx.plan
    # figures 2-3
    weights = ", ".join(f"{w:g}" for w in p["weights"])
    lines = [
        "## Figures 2 and 3: Pre@10 and Rec@10 against the loss weight",
        "",
        f"The loss weight of the strongest behaviour (Taobao: buy; Retailrocket: transaction; Diginetica: "
        f"purchase) at {weights}, every other behaviour at 1; one run per point (seed {p['seeds'][0]}). "
        "Pre@10 = |test items ∩ top 10| / 10 and Rec@10 = |test items ∩ top 10| / |test items| (eq. 16-17), "
        "averaged over test users, ranking every item.",
        "",
        "![Figure 2](fig2_pre10_vs_weight.png)",
        "",
        "![Figure 3](fig3_rec10_vs_weight.png)",
        "",
        "CSV: [fig2_3_loss_weight.csv](fig2_3_loss_weight.csv).",
        "",
    ]
    # figures 4-5
    lines += [
        "## Figures 4 and 5: ablations",
        "",
        "SSRF-UC drops the context (attention tokens carry the item alone); SSRF-O drops the pairwise "
        "encoding (the CNN sees the plain L x d matrix). Beside them the 2x2 of the output layer (untied, "
        "as published, or tied to the input tables) and the loss (bce with 3 negatives, as published, or "
        "full-softmax ce): SSRF is untied + bce, SSRF best is tied + ce. Same loss weights and seeds as "
        "Table II; each ablation runs at the learning rate selected for its parent (SSRF-UC, SSRF-O and "
        "tied + bce: SSRF's; untied + ce: SSRF best's). Error bars: one standard deviation over seeds.",
        "",
        "![Figure 4](fig4_ablation_relaimpr.png)",
        "",
        "![Figure 5](fig5_ablation_rec10.png)",
        "",
        markdown(
            ["dataset", "model", "AUC", "RelaImpr", "Rec@10", "epochs run (per seed)"],
            [
                [
                    r["dataset"],
                    ctx.name(r["model"]),
                    pm(r["auc_mean"], r["auc_std"]),
                    pm(r["rela_impr_mean"], r["rela_impr_std"], pct=True),
                    pm(r["rec@10_mean"], r["rec@10_std"]),
                    r["epochs_run"],
                ]
                for r in abl
            ],
        ),
        "",
        "CSV: [fig4_5_ablation.csv](fig4_5_ablation.csv).",
        "",
    ]
    return lines
