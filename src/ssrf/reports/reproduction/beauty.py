"""REPORT.md's "The standard benchmark: Amazon Beauty" section: this run's leave-one-out, full-ranking
metrics per model, the GPU sweep's and the published numbers beside (labelled as such), and the models
left out of this budget.

CSV: beauty.csv (the rows of `beauty_table`).
"""

from __future__ import annotations

import math
from typing import Any

from ssrf.reports import reference as ref
from ssrf.reports.reproduction.context import ReportContext, fmt, plural
from ssrf.reports.tables import MODEL_NAMES, markdown
from ssrf.reports.tables import model_name as name


def beauty_table(ctx: ReportContext) -> list[dict[str, Any]]:
    out = []
    for r in ctx.rows("beauty"):
        t, res = r.result["test"], r.result
        sweep = ref.GPU_SWEEP_BEAUTY.get(r.model)
        pub = ref.PUBLISHED_BEAUTY.get(r.model)
        out.append(
            {
                "model": r.model,
                "epochs_run": res["epochs_run"],
                "hr@10": t["hr@10"],
                "ndcg@10": t["ndcg@10"],
                "hr@20": t["hr@20"],
                "ndcg@20": t["ndcg@20"],
                "mrr": t["mrr"],
                "auc": t.get("auc", math.nan),
                "seconds_per_epoch": res["seconds_per_epoch"],
                "test_eval_seconds": res["test_eval_seconds"],
                "gpu_sweep_config": sweep[0] if sweep else "",
                "gpu_sweep_hr@10": sweep[1] if sweep else math.nan,
                "gpu_sweep_ndcg@10": sweep[2] if sweep else math.nan,
                "gpu_sweep_epochs": sweep[3] if sweep else "",
                "published_hr@10": pub[0] if pub else math.nan,
                "published_ndcg@10": pub[1] if pub else math.nan,
                "run": r.run_id,
            }
        )
    for model, (hr, ndcg) in ref.PUBLISHED_BEAUTY.items():
        if model not in MODEL_NAMES:  # published models outside this project's zoo
            out.append({"model": model, "published_hr@10": hr, "published_ndcg@10": ndcg, "run": ""})
    return out


def section(ctx: ReportContext, beauty: list[dict[str, Any]]) -> list[str]:
    """The section's markdown lines, from `beauty_table`'s rows."""
    p = ctx.plan
    b = ctx.datasets.get("beauty")
    lines = [
        "## The standard benchmark: Amazon Beauty (leave-one-out, full ranking)",
        "",
        f"**This run** trained every model for {plural(p['beauty_epochs'], 'epoch')} only (the CPU budget: a "
        "converged Beauty run of one model takes about an hour on this machine), seed "
        f"{p['seeds'][0]}, loss `{p['loss']}`; test: each user's last item ranked against all "
        f"{b.meta['stats']['items'] if b else '?'} items, earlier items masked. These numbers are far from "
        "converged. Beside them, clearly not from this run: **GPU sweep** = this project's one-seed runs on "
        "an NVIDIA H200 with 300 s of training each (docs/benchmarks.md, round 1; the configuration is "
        "named: `-bce` is this run's loss, `-ce` full softmax); **published** = numbers reported in the "
        "literature under the same protocol, as recorded in docs/benchmarks.md.",
        "",
    ]
    brows = []
    for r in beauty:
        ours = r.get("epochs_run") is not None
        brows.append(
            [
                name(r["model"]) if ours else f"{r['model']} (published only)",
                r.get("epochs_run", "—"),
                fmt(r.get("hr@10", math.nan)),
                fmt(r.get("ndcg@10", math.nan)),
                fmt(r.get("hr@20", math.nan)),
                fmt(r.get("mrr", math.nan)),
                fmt(r.get("seconds_per_epoch", math.nan), 1),
                f"{r['gpu_sweep_config']}: {r['gpu_sweep_hr@10']:.4f} / {r['gpu_sweep_ndcg@10']:.4f}"
                if r.get("gpu_sweep_config")
                else "—",
                f"{r['published_hr@10']:.4f} / {r['published_ndcg@10']:.4f}"
                if not math.isnan(r.get("published_hr@10", math.nan))
                else "—",
            ]
        )
    lines += [
        markdown(
            [
                "model",
                "epochs (this run)",
                "HR@10 (this run)",
                "NDCG@10 (this run)",
                "HR@20 (this run)",
                "MRR (this run)",
                "training s/epoch (this run)",
                "GPU sweep: HR@10 / NDCG@10",
                "published: HR@10 / NDCG@10",
            ],
            brows,
        ),
        "",
    ]
    if ctx.beauty_skipped:
        lines += [
            "Not run on Beauty within this budget (in brackets: the estimated minutes of one run on this "
            "machine, from measured per-epoch and evaluation times): "
            + ", ".join(f"{name(m)} ({mins:.1f})" for m, mins in ctx.beauty_skipped.items())
            + ". Most of a CTR model's cost here is the full-ranking evaluation, which scores every (user, "
            "item) pair through the model's interaction layers, twice per run (validation and test). A "
            "larger `--budget` includes them.",
            "",
        ]
    lines += ["CSV: [beauty.csv](beauty.csv).", ""]
    return lines
