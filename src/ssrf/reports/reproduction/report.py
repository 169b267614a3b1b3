"""REPORT.md as a whole: `write_report` computes every section's tables, writes their CSVs and the figures'
PNGs, assembles the sections in the report's order and writes REPORT.md and provenance.json.

The order of REPORT.md: the opening and "Summary" (`verdicts.summary`), "Datasets (Table I)" (`datasets`),
"Table II" (`table2`), "Figures 2 and 3" and "Figures 4 and 5" (`figures`), "Amazon Beauty" (`beauty`),
"The paper's claims" (`verdicts.section`), "Provenance" (`provenance`).
"""

from __future__ import annotations

from pathlib import Path

from ssrf.core import atomic_write_text
from ssrf.reports.reproduction import beauty, datasets, figures, provenance, table2, verdicts
from ssrf.reports.reproduction.context import ReportContext, seed_table, write_csv


def write_report(out: Path, ctx: ReportContext) -> Path:
    """Write REPORT.md, its CSVs and PNGs into `out`; return the REPORT.md path."""
    out.mkdir(parents=True, exist_ok=True)
    t1, dropped = datasets.table1(ctx)
    t2 = seed_table(ctx, "table2")
    abl = seed_table(ctx, "ablation")
    sw = figures.sweep_table(ctx)
    bt = beauty.beauty_table(ctx)
    claims = verdicts.claims(ctx)
    runs = provenance.runs_table(ctx)
    csvs = {
        "table1_datasets.csv": t1,
        "table1_dropped_rows.csv": dropped,
        "table2_auc.csv": t2,
        "fig2_3_loss_weight.csv": sw,
        "fig4_5_ablation.csv": abl,
        "beauty.csv": bt,
        "claims.csv": verdicts.claims_table(claims),
        "runs.csv": runs,
        "wall_times.csv": provenance.wall_times_table(ctx),
    }
    for fname, rows in csvs.items():
        write_csv(out / fname, rows)
    pngs = figures.write_pngs(out, ctx, sw, abl)
    lines = [
        *verdicts.summary(ctx, claims),
        *datasets.section(ctx, t1, dropped),
        *table2.section(ctx, t2),
        *figures.section(ctx, abl),
        *beauty.section(ctx, bt),
        *verdicts.section(ctx, claims),
        *provenance.section(ctx, list(csvs), pngs),
    ]
    atomic_write_text(out / "REPORT.md", "\n".join(lines))
    atomic_write_text(out / "provenance.json", provenance.provenance_json(ctx))
    return out / "REPORT.md"
