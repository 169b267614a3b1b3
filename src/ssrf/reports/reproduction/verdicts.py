"""REPORT.md's verdicts: the opening (title, plan and "Summary" of the verdicts) and "The paper's claims
against our numbers" (each claim judged per temporal dataset, with the caveats).

A claim holds, fails or is unclear per dataset by `context.compare`'s seed-noise rule; `Claim.decide` turns
those outcomes into the verdict. CSV: claims.csv (the rows of `claims_table`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ssrf.reports import reference as ref
from ssrf.reports.reproduction.context import (
    BASE,
    ReportContext,
    compare,
    mean_std,
    models_in,
    plural,
    seed_rela,
    seed_values,
)
from ssrf.reports.tables import markdown
from ssrf.reports.tables import model_name as name

PAPER_BASELINES = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint")  # the paper's claims are
# against these; the reference rows and our own SSRF variants are not its baselines
CLAIMED_GAIN = ref.PAPER_CLAIMED_AUC_GAIN  # the paper's "at least 23.249%" over the best baseline


@dataclass
class Claim:
    claim: str
    paper: str
    ours: list[str] = field(default_factory=list)  # one line per dataset
    outcomes: list[str] = field(default_factory=list)  # holds / fails / unclear per dataset
    verdict: str = "not tested"

    def decide(self) -> None:
        if not self.outcomes:
            self.verdict = "not tested"
        elif all(o == "holds" for o in self.outcomes):
            self.verdict = "supported"
        elif all(o == "fails" for o in self.outcomes):
            self.verdict = "not supported"
        else:
            self.verdict = "mixed"


def claims(ctx: ReportContext) -> list[Claim]:
    """The paper's claims, each judged per temporal dataset from our numbers (see REPORT.md for the rules)."""
    beats = Claim(
        "SSRF beats every baseline (Table II, AUC)",
        "SSRF has the best AUC of all eight models on both datasets (0.880 and 0.912).",
    )
    gain = Claim(
        "SSRF's AUC is at least 23.2% above the best baseline's",
        "+23.249% (0.880 against AutoInt's 0.714 on Alibaba).",
    )
    figs = Claim(
        "SSRF has the best Pre@10 and Rec@10 at every loss weight (figures 2-3)",
        "SSRF's precision and recall are clearly above every baseline across loss weights.",
    )
    context = Claim(
        "Context information helps (SSRF against SSRF-UC, figures 4-5)",
        "SSRF performs better than SSRF-UC in RelaImpr and Rec@10.",
    )
    pairwise = Claim(
        "Pairwise encoding helps (SSRF against SSRF-O, figures 4-5)",
        "SSRF is clearly better than SSRF-O in RelaImpr and Rec@10.",
    )
    for ds in ctx.temporal():
        rows = ctx.rows("table2", ds)
        ssrf = [r for r in rows if r.model == "ssrf"]
        baselines = [m for m in models_in(rows) if m in PAPER_BASELINES]
        if ssrf and baselines:
            auc = seed_values(ssrf, "auc")
            cmp = {m: compare(auc, seed_values([r for r in rows if r.model == m], "auc")) for m in baselines}
            best_m = max(
                baselines, key=lambda m: mean_std(seed_values([r for r in rows if r.model == m], "auc"))[0]
            )
            best = mean_std(seed_values([r for r in rows if r.model == best_m], "auc"))[0]
            mine = mean_std(auc)[0]
            worse = [name(m) for m, c in cmp.items() if c == "worse"]
            ties = [name(m) for m, c in cmp.items() if c == "tie"]
            beats.outcomes.append(
                "holds" if all(c == "better" for c in cmp.values()) else "fails" if worse else "unclear"
            )
            beats.ours.append(
                f"{ds}: SSRF AUC {mine:.4f}; best baseline {name(best_m)} {best:.4f}"
                + (f"; clearly above SSRF: {', '.join(worse)}" if worse else "")
                + (f"; within seed noise: {', '.join(ties)}" if ties else "")
            )
            g = mine / best - 1.0
            gain.outcomes.append("holds" if g >= CLAIMED_GAIN else "fails")
            gain.ours.append(f"{ds}: {g * 100:+.1f}% (SSRF {mine:.4f} / {name(best_m)} {best:.4f} - 1)")
        sweep = ctx.rows("sweep", ds)
        weights = sorted({r.weight for r in sweep if r.weight is not None})
        if any(r.model == "ssrf" for r in sweep) and len(models_in(sweep)) > 1:
            wins, cells = 0, 0
            for w in weights:
                at = {r.model: r.result["test"] for r in sweep if r.weight == w}
                if "ssrf" not in at:
                    continue
                for metric in ("pre@10", "rec@10"):
                    cells += 1
                    wins += all(at["ssrf"][metric] > v[metric] for m, v in at.items() if m in PAPER_BASELINES)
            figs.outcomes.append("holds" if wins == cells else "fails" if wins == 0 else "unclear")
            figs.ours.append(f"{ds}: SSRF best in {wins} of {cells} (weight, metric) cells")
        abl = ctx.rows("ablation", ds)
        base = [r for r in ctx.rows("table2", ds) if r.model == BASE]
        by = {m: [r for r in abl if r.model == m] for m in models_in(abl)}
        for claim, other in ((context, "ssrf-uc"), (pairwise, "ssrf-o")):
            if "ssrf" not in by or other not in by:
                continue
            results = []
            if base:
                results.append(
                    (
                        "RelaImpr",
                        compare(seed_rela(by["ssrf"], base), seed_rela(by[other], base)),
                        mean_std(seed_rela(by["ssrf"], base))[0],
                        mean_std(seed_rela(by[other], base))[0],
                        True,
                    )
                )
            results.append(
                (
                    "Rec@10",
                    compare(seed_values(by["ssrf"], "rec@10"), seed_values(by[other], "rec@10")),
                    mean_std(seed_values(by["ssrf"], "rec@10"))[0],
                    mean_std(seed_values(by[other], "rec@10"))[0],
                    False,
                )
            )
            better = sum(c == "better" for _, c, *_ in results)
            claim.outcomes.append(
                "holds" if better == len(results) else "fails" if better == 0 else "unclear"
            )
            claim.ours.append(
                f"{ds}: "
                + "; ".join(
                    f"{metric} SSRF {a * 100:.1f}% vs {name(other)} {b * 100:.1f}% ({c})"
                    if pct
                    else f"{metric} SSRF {a:.4f} vs {name(other)} {b:.4f} ({c})"
                    for metric, c, a, b, pct in results
                )
            )
    out = [beats, gain, figs, context, pairwise]
    for c in out:
        c.decide()
    return out


def claims_table(verdicts: list[Claim]) -> list[dict[str, Any]]:
    """One CSV row per claim: the paper's statement, ours per dataset, the verdict."""
    return [
        {"claim": c.claim, "paper": c.paper, "ours": " | ".join(c.ours), "verdict": c.verdict}
        for c in verdicts
    ]


def summary(ctx: ReportContext, verdicts: list[Claim]) -> list[str]:
    """The report's opening lines: title, the plan in a paragraph, the "Summary" table of verdicts and the
    models left out."""
    p, prov = ctx.plan, ctx.provenance
    seeds = ", ".join(map(str, p["seeds"]))
    temporal = ctx.temporal()
    lines: list[str] = ["# Reproducing SSRF (Yu & Tian): the paper's experiments on real data", ""]
    if prov.get("quick"):
        lines += [
            f"> **Quick plan (smoke test).** At most {plural(p['epochs'], 'epoch')} per run and "
            f"{plural(len(p['seeds']), 'seed')}: the numbers below exercise the pipeline and the report, "
            "and support no conclusion about the paper.",
            "",
        ]
    lrs = ", ".join(f"{x:g}" for x in p.get("lrs", ()))
    lines += [
        f"Plan `{prov['plan']}`: temporal datasets {', '.join(temporal)} under the leak-free temporal "
        "protocol (k-core, vocabularies and context from the training period only; later events on users "
        "or items the training period does not know dropped and counted in Table I); seeds "
        f"{seeds}; every trained model of Table II tuned on the learning-rate grid {lrs or 'of one rate'} "
        "(first seed, validation AUC; test never read for it), every run to early stopping (patience "
        f"{p['patience']}; {plural(p['epochs'], 'epoch')} is a ceiling, and the report counts the runs "
        f"that reached it); loss `{p['loss']}` (the paper's eq. 13, 3 sampled negatives) with the paper's "
        "loss weights (strongest behaviour 10, the others 1) unless a figure sweeps them, except SSRF best "
        "(full-softmax ce, tied output); reference rows: random, popularity by training counts, and the "
        "repeat rule (the user's own items, most recent first, then popularity); Beauty "
        f"{plural(p['beauty_epochs'], 'epoch')} per model. {len({r.run_id for r in ctx.runs})} runs, "
        f"trained in {_wall_text(prov)}. Exactly what ran: [Provenance](#provenance).",
        "",
    ]
    lines += _against_the_rules(ctx)
    lines += [
        "## Summary",
        "",
        markdown(
            ["claim of the paper", "datasets: holds / unclear / fails", "verdict from our numbers"],
            [
                [
                    c.claim,
                    " / ".join(str(c.outcomes.count(o)) for o in ("holds", "unclear", "fails")),
                    f"**{c.verdict}**",
                ]
                for c in verdicts
            ],
        ),
        "",
    ]
    if ctx.missing_models:
        lines += [
            "Models of the paper not in this project's registry when this ran (left out of every table): "
            + ", ".join(name(m) for m in ctx.missing_models)
            + ".",
            "",
        ]
    return lines


def section(ctx: ReportContext, verdicts: list[Claim]) -> list[str]:
    """The claims section's markdown lines: the rule, each claim with the paper's and our numbers, the
    caveats."""
    p = ctx.plan
    lines = [
        "## The paper's claims against our numbers",
        "",
        "Per temporal dataset a claim holds, fails or is unclear; the verdict is **supported** when it holds "
        "on every dataset, **not supported** when it fails on every one, **mixed** otherwise. A comparison "
        "of two models counts as better or worse only when their means differ by more than the larger "
        "standard deviation over seeds; otherwise it is within seed noise (a tie, which does not "
        "support a claim that one is better).",
        "",
    ]
    for c in verdicts:
        lines += [f"### {c.claim}: **{c.verdict}**", "", f"- Paper: {c.paper}"]
        lines += [f"- Ours, {o}" for o in c.ours] or ["- Ours: not run in this plan."]
        lines += [""]
    users = ", ".join(
        f"{k} {ctx.datasets[k].meta['split_info'].get('test_users', 0)}" for k in ctx.temporal()
    )
    lines += [
        "Caveats that apply to every verdict: the samples are far smaller than the paper's (Table I); "
        f"Retailrocket has no category context here; test users per dataset: {users} (a dataset with "
        f"fewer than {FEW_USERS} cannot separate models: its verdicts are noise). "
        + _still_improving(ctx, p["epochs"]),
        "",
    ]
    return lines


FEW_USERS = 30  # test users below which a dataset's comparisons are called noise


def _against_the_rules(ctx: ReportContext) -> list[str]:
    """Not a claim of the paper, but the first question about any model here: does it beat the repeat
    rule, and is the dataset large enough to tell?"""
    out = []
    for ds in ctx.temporal():
        rows = ctx.rows("table2", ds)
        by = {m: seed_values([r for r in rows if r.model == m], "auc") for m in models_in(rows)}
        if "repeat" not in by:
            continue
        rep = mean_std(by["repeat"])[0]
        above = [m for m in by if m != "repeat" and mean_std(by[m])[0] > rep]
        users = ctx.datasets[ds].meta["split_info"].get("test_users", 0)
        share = mean_std(seed_values([r for r in rows if r.model == "repeat"], "repeat_share"))[0]
        out.append(
            f"- {ds} ({users} test users{', too few to separate models' if users < FEW_USERS else ''}; "
            f"{share:.0%} of test positives are repeats): the repeat rule's AUC {rep:.4f}; above it: "
            + (", ".join(ctx.name(m) for m in above) if above else "no model")
            + "."
        )
    if not out:
        return []
    return [
        "Against the reference rows (Table II): a model that does not beat the repeat rule has learned "
        "nothing a rule of thumb does not know.",
        "",
        *out,
        "",
    ]


def _still_improving(ctx: ReportContext, cap: int) -> str:
    """How many temporal runs ended at the epoch cap with their best epoch last (still improving)."""
    seen, total, capped = set(), {}, {}
    for r in ctx.runs:
        if r.run_id in seen or r.part == "beauty":
            continue
        seen.add(r.run_id)
        family = "SSRF and its ablations" if r.model.startswith("ssrf") else "the baselines"
        total[family] = total.get(family, 0) + 1
        res = r.result
        if res["epochs_run"] >= cap and res["best_epoch"] == res["epochs_run"]:
            capped[family] = capped.get(family, 0) + 1
    parts = [f"{capped.get(f, 0)} of {n} runs of {f}" for f, n in total.items()]
    return (
        "Still improving when the cap stopped them (best epoch = last epoch = cap): "
        + "; ".join(parts)
        + ". More epochs would move those numbers, not the others."
    )


def _wall_text(prov: dict[str, Any]) -> str:
    """'41.2 min of wall time (one call)' or '... over 3 calls', from the calls that wrote the folder."""
    calls = prov.get("calls") or [
        {"wall_seconds": prov["wall_seconds"], "runs_trained": prov["runs_trained"]}
    ]
    working = [c for c in calls if c["runs_trained"]]
    total = sum(float(c["wall_seconds"]) for c in calls)
    n = len(working) or 1
    return f"{total / 60:.1f} min of wall time ({'one call' if n == 1 else f'{n} calls that trained runs'})"
