"""REPORT.md's "Datasets (Table I)" section: the prepared datasets' statistics after cleaning (the paper's
Table I, ours beside the paper's as printed), the rows dropped by reason, and a note per dataset.

CSVs: table1_datasets.csv and table1_dropped_rows.csv (the rows of `table1`).
"""

from __future__ import annotations

from typing import Any

from ssrf.reports import reference as ref
from ssrf.reports.reproduction.context import ReportContext
from ssrf.reports.tables import markdown


def table1(ctx: ReportContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dataset statistics after cleaning (the paper's Table I) and dropped rows by reason."""
    stats, dropped = [], []
    for key, d in ctx.datasets.items():
        m, s = d.meta, d.meta["stats"]
        si = m["split_info"]
        stats.append(
            {
                "dataset": key,
                "title": d.title,
                "protocol": m["split"],
                "users": s["users"],
                "items": s["items"],
                "actions_per_user": s["actions_per_user"],
                "actions_per_item": s["actions_per_item"],
                "events": s["events"],
                "context_fields": "; ".join(f"{k} ({v})" for k, v in s["context_fields"].items()) or "none",
                "behaviours": "; ".join(f"{k} {v}" for k, v in s["behavior_mix"].items()),
                "min_user_events": m["options"]["min_user_events"],
                "min_item_events": m["options"]["min_item_events"],
                "train_events": si["train_events"],
                "valid_events": si["valid_events"],
                "test_events": si["test_events"],
                "test_users": si["test_users"],
                "prepared_key": m["key"],
            }
        )
        dropped.append({"dataset": key, "rows_read": m["rows_read"], **m["dropped"], "kept": s["events"]})
    return stats, dropped


def section(ctx: ReportContext, t1: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> list[str]:
    """The section's markdown lines, from `table1`'s two tables."""
    lines = ["## Datasets (Table I)", ""]
    lines += [
        "After cleaning and k-core filtering, under the protocol each part uses (`temporal`: the paper's "
        "global time cut, 70% of events before it train (the last 10% of them validate), 30% after it test; "
        "`loo`: leave-one-out). Test users are the users with events on both sides of the cut.",
        "",
        markdown(
            [
                "dataset",
                "protocol",
                "users",
                "items",
                "actions/user",
                "actions/item",
                "events",
                "context",
                "k-core (user, item)",
                "test users",
            ],
            [
                [
                    r["title"],
                    r["protocol"],
                    r["users"],
                    r["items"],
                    f"{r['actions_per_user']:.1f}",
                    f"{r['actions_per_item']:.1f}",
                    r["events"],
                    r["context_fields"],
                    f"{r['min_user_events']}, {r['min_item_events']}",
                    r["test_users"],
                ]
                for r in t1
            ],
        ),
        "",
        "The paper's Table I, as printed (its samples of 85,000 and 31,000 records; its Retailrocket row "
        "implies about 1,000,000 actions, more than the 31,000 records it says it sampled):",
        "",
        markdown(
            ["dataset (paper)", "users", "items", "actions/user", "actions/item"],
            [[k, u, i, f"{apu:.1f}", f"{api:.1f}"] for k, (u, i, apu, api) in ref.PAPER_TABLE_I.items()],
        ),
        "",
        "Rows dropped, by reason (`k_core`: users or items below the k-core thresholds):",
        "",
    ]
    reasons = [k for k in dropped[0] if k not in ("dataset", "rows_read", "kept")] if dropped else []
    lines += [
        markdown(
            ["dataset", "rows read", *reasons, "kept"],
            [[r["dataset"], r["rows_read"], *[r[k] for k in reasons], r["kept"]] for r in dropped],
        ),
        "",
    ]
    for k, d in ctx.datasets.items():
        if d.meta.get("fit_on") == "all" and d.meta["split"] == "temporal":  # the same data, old protocol
            lines += [f"- **{d.title}** (`{k}`): as above, with k-core and vocabularies over the whole log."]
            continue
        lines += [f"- **{d.title}** (`{k}`, format `{d.fmt}`): {d.note}"]
    lines += [""]
    return lines
