"""REPORT.md's "Provenance" section (command, plan settings, versions, machine, data, wall times, the calls
that wrote the folder, the file list) and provenance.json (every run's config as a base and its changes).

CSVs: runs.csv (the rows of `runs_table`: every run with its test metrics) and wall_times.csv (the rows of
`wall_times_table`).
"""

from __future__ import annotations

import json
from typing import Any

from ssrf.reports.reproduction.context import ReportContext, RunRow, plural
from ssrf.reports.tables import markdown
from ssrf.reports.tables import model_name as name

CALLS = "calls.jsonl"  # the ledger of calls that `ssrf.reproduce` keeps in the report folder


def runs_table(ctx: ReportContext) -> list[dict[str, Any]]:
    """Every run once: its parts, its settings and the test metrics of its results.json."""
    parts: dict[str, list[str]] = {}
    first: dict[str, RunRow] = {}
    for r in ctx.runs:
        parts.setdefault(r.run_id, []).append(r.part)
        first.setdefault(r.run_id, r)
    out = []
    for rid, r in first.items():
        res = r.result
        out.append(
            {
                "run": rid,
                "parts": ";".join(dict.fromkeys(parts[rid])),
                "dataset": r.dataset,
                "model": r.model,
                "seed": r.seed,
                "weight": r.weight,
                "loss": res["loss"],
                "epochs_run": res["epochs_run"],
                "best_epoch": res["best_epoch"],
                "stopped_early": res["stopped_early"],
                "train_seconds": res["train_seconds"],
                "test_eval_seconds": res["test_eval_seconds"],
                **{f"test_{k}": v for k, v in res["test"].items()},
            }
        )
    return out


def wall_times_table(ctx: ReportContext) -> list[dict[str, Any]]:
    """Per part: wall seconds over all calls and in this call, and the compute seconds its runs recorded."""
    return [
        {
            "part": k,
            "wall_seconds_all_calls": _all_calls_wall(ctx.provenance).get(k, 0.0),
            "wall_seconds_this_call": ctx.provenance["part_wall_seconds"].get(k, 0.0),
            "compute_seconds_recorded_in_runs": _recorded_seconds(ctx).get(k, 0.0),
        }
        for k in dict.fromkeys([*ctx.provenance["part_wall_seconds"], *_recorded_seconds(ctx)])
    ]


def provenance_json(ctx: ReportContext) -> str:
    """provenance.json: the report's provenance, the plan's settings, the first run's config and every run's
    changes to it."""
    base, deltas = config_deltas(ctx.configs)
    return json.dumps(
        {**ctx.provenance, "plan_settings": ctx.plan, "base_config": base, "run_config_changes": deltas},
        indent=1,
        default=str,
    )


def section(ctx: ReportContext, csv_names: list[str], png_names: list[str]) -> list[str]:
    """The section's markdown lines; `csv_names` and `png_names` are the files written beside REPORT.md."""
    p, prov = ctx.plan, ctx.provenance
    seeds = ", ".join(map(str, p["seeds"]))
    weights = ", ".join(f"{w:g}" for w in p["weights"])
    v, m = prov["versions"], prov["machine"]
    lines = [
        "## Provenance",
        "",
        f"- Command: `{prov['command']}`",
        f"- Plan `{prov['plan']}` (budget {prov['budget_minutes']:g} min, estimated "
        f"{prov['estimated_minutes']} min from per-epoch times measured on this machine); settings: "
        f"seeds {seeds}; epochs {p['epochs']}, patience {p['patience']}; loss weights {weights}; Table II "
        f"models {', '.join(name(x) for x in p['models'])}; Beauty models "
        f"{', '.join(name(x) for x in p['beauty_models'])}, {plural(p['beauty_epochs'], 'epoch')}"
        + (f", {p['beauty_sample_users']}-user sample" if p.get("beauty_sample_users") else "")
        + ".",
        "- Every run's full config (`[train]`, `[eval]`, `[data]`; model options at their defaults) is in "
        "`provenance.json` (`base_config`, and per run `run_config_changes`) and in its run folder's "
        "`config.json`; runs are named `<dataset>-<model>-s<seed>-<hash of data key and config>` under "
        f"`{prov['runs_dir']}` beside this report when it was written (they hold model weights, so copies "
        "of the report leave them out; the same command recreates them); [runs.csv](runs.csv) lists every "
        "run with its test metrics.",
        f"- Versions: Python {v['python']}, ssrf {v['ssrf']}, torch {v['torch']}, numpy {v['numpy']}, "
        f"polars {v['polars']}, matplotlib {v['matplotlib']}.",
        f"- Machine: {m['platform']} ({m['processor']}), {m['cpus']} CPUs, torch threads "
        f"{m['torch_threads']} (OMP_NUM_THREADS={m['OMP_NUM_THREADS']}), GPU {m['cuda']}. "
        + _load_text(prov.get("calls", []), int(m["torch_threads"])),
        "- Data: "
        + "; ".join(
            f"{k}: {', '.join(d.files)} (prepared `{d.meta['key']}`)" for k, d in ctx.datasets.items()
        ),
        "",
        markdown(
            ["part", "wall s (all calls)", "wall s (this call)", "training + test s recorded in its runs"],
            [
                [
                    k,
                    f"{_all_calls_wall(prov).get(k, 0.0):.1f}",
                    f"{prov['part_wall_seconds'].get(k, 0.0):.1f}",
                    f"{_recorded_seconds(ctx).get(k, 0.0):.1f}",
                ]
                for k in dict.fromkeys([*prov["part_wall_seconds"], *_recorded_seconds(ctx)])
            ],
        ),
        "",
        f"Total wall time of this call: {prov['wall_seconds']:.1f} s. A part's runs that an earlier part "
        "already trained count under the earlier part; reused runs (from an earlier call) cost no wall time "
        "here but keep their recorded seconds.",
        "",
        *_calls_markdown(prov.get("calls", [])),
        "Files: " + ", ".join(f"[{n}]({n})" for n in [*csv_names, *png_names, "provenance.json", CALLS]),
        "",
    ]
    return lines


def config_deltas(configs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The first run's config, and for every run the `section.key` values where its config differs."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "behavior_weights":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    if not configs:
        return {}, {}
    base = next(iter(configs.values()))
    fb = flat(base)
    deltas = {
        rid: {k: v for k, v in flat(cfg).items() if k not in fb or fb[k] != v} for rid, cfg in configs.items()
    }
    return base, deltas


def _load_text(calls: list[dict[str, Any]], threads: int) -> str:
    working = [c for c in calls if c["runs_trained"]]
    if not working:
        return ""
    loads = [x for c in working for x in (c["load_1m_at_start"], c["load_1m_at_end"]) if x is not None]
    text = "1-minute load average while training: " + ", ".join(
        f"{c['load_1m_at_start']} at the start and {c['load_1m_at_end']} at the end" for c in working
    )
    if loads and max(loads) > threads + 0.5:
        text += " (other jobs shared the 2 cores, so the wall times are upper bounds for an idle machine)"
    return text + "."


def _all_calls_wall(prov: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in prov.get("calls", []):
        for k, v in c["part_wall_seconds"].items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def _calls_markdown(calls: list[dict[str, Any]]) -> list[str]:
    """Every call of `ssrf reproduce` that trained runs into this report folder (an interrupted one
    included); calls that only rewrote the report are counted."""
    if not calls:
        return []
    total = sum(float(c["wall_seconds"]) for c in calls)
    shown = [c for c in calls if c["runs_trained"] or not c["completed"]] or calls[-1:]
    rewrites = len(calls) - len(shown)
    return [
        "Calls that trained runs into this report folder (a later call reuses what an earlier one trained; "
        f"wall time over all calls {total / 60:.1f} min):",
        "",
        markdown(
            [
                "started (UTC)",
                "command",
                "plan",
                "completed",
                "runs trained",
                "runs reused",
                "wall min",
                "load at start / end",
                "OMP_NUM_THREADS",
            ],
            [
                [
                    c["started"],
                    f"`{c['command']}`",
                    c["plan"],
                    "yes" if c["completed"] else "no (interrupted)",
                    c["runs_trained"],
                    c["runs_reused"],
                    f"{float(c['wall_seconds']) / 60:.1f}",
                    f"{c['load_1m_at_start']} / {c['load_1m_at_end']}",
                    c["OMP_NUM_THREADS"],
                ]
                for c in shown
            ],
        ),
        "",
        *(
            [
                f"{plural(rewrites, 'later call')} trained nothing and only rewrote the report "
                f"(`{CALLS}` lists all).",
                "",
            ]
            if rewrites
            else []
        ),
    ]


def _recorded_seconds(ctx: ReportContext) -> dict[str, float]:
    """Training + test seconds recorded in the run folders, per part (a run shared by parts counted once,
    under the first part that asked for it)."""
    seen: set[str] = set()
    out: dict[str, float] = {}
    for r in ctx.runs:
        if r.run_id in seen:
            continue
        seen.add(r.run_id)
        secs = float(r.result["train_seconds"]) + float(r.result["test_eval_seconds"])
        out[r.part] = round(out.get(r.part, 0.0) + secs, 1)
    return out
