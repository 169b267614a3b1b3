"""What a tuning writes at the end: the best configuration as a preset TOML, TUNE.md and Optuna's plots."""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssrf.core import atomic_write_text
from ssrf.pipeline import RunConfig
from ssrf.reports.tables import markdown

HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importances.png"
TEST_METRICS = ("auc", "mrr", "hr@10", "ndcg@10", "rec@10", "pre@10")  # the retrain table's columns


# ------------------------------------------------------------------------------------------------ TOML


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def config_toml(cfg: RunConfig, header: Sequence[str] = ()) -> str:
    """`cfg` as a run-config TOML (what `ssrf train --config` and `RunConfig.from_toml` read): every option
    written out, so the file does not depend on the presets of the version that reads it. `header`: comment
    lines on top."""
    raw = cfg.to_dict()
    lines = [f"# {h}" for h in header]
    lines += [f"model = {_toml_value(raw['model'])}"]
    for section in ("data", "model_options", "train", "eval"):
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in raw[section].items() if v is not None]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ plots


def write_plots(study: Any, out: Path, target: str = "Objective Value") -> dict[str, str]:
    """Optuna's optimisation history and parameter importances as PNGs in `out`: {file name: "" when
    written, else why not}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    notes: dict[str, str] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def importances(
        study: Any, target_name: str
    ) -> Any:  # PED-ANOVA, Optuna 5's default (fANOVA needs sklearn)
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return ovm.plot_param_importances(study, evaluator=evaluator, target_name=target_name)

    plots = {HISTORY_PNG: (ovm.plot_optimization_history, 1), IMPORTANCE_PNG: (importances, 2)}
    for name, (plot, needed) in plots.items():
        (out / name).unlink(missing_ok=True)  # a plot of an earlier call must not pass for this one's
        if len(complete) < needed:
            notes[name] = (
                f"needs at least {needed} complete trial{'s' * (needed > 1)} ({len(complete)} so far)"
            )
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning, matplotlib's layout notes
                ax = plot(study, target_name=target)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(8, 4.5)
                fig.tight_layout()
                fig.savefig(out / name, dpi=110)
                plt.close(fig)
            notes[name] = ""
        except (
            ImportError,
            ValueError,
            RuntimeError,
            ZeroDivisionError,
            optuna.exceptions.OptunaError,
        ) as exc:
            plt.close("all")
            notes[name] = f"not drawn: {exc}"
    return notes


# ------------------------------------------------------------------------------------------------ TUNE.md


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def params_text(params: dict[str, Any]) -> str:
    """`train.lr=0.001, model_options.d=64`: a trial's parameters on one line."""
    return ", ".join(f"{k}={_param(v)}" for k, v in params.items())


def trial_rows(trials: Sequence[Any], keys: Sequence[str], metric: str) -> list[list[Any]]:
    rows = []
    for t in trials:
        a = t.user_attrs
        state = t.state.name.lower()
        if a.get("interrupted"):
            state = "failed (interrupted)"
        best = a.get("best_valid")
        rows.append(
            [
                t.number,
                state,
                "" if best is None else f"{best:.4f}",
                a.get("epochs", ""),
                a.get("best_epoch", ""),
                a.get("stopped", ""),
                "" if a.get("seconds") is None else f"{a['seconds']:.1f}",
                *(_param(t.params[k]) if k in t.params else "" for k in keys),
            ]
        )
    return rows


def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def retrain_table(results: Sequence[dict[str, Any]], metric: str) -> str:
    tests = [r["test"] for r in results]
    cols = [m for m in dict.fromkeys((metric, *TEST_METRICS)) if all(m in t for t in tests)]
    rows = [
        [
            r["seed"],
            r["best_valid"].get(f"valid_{metric}", float("nan")),
            r["epochs_run"],
            *(r["test"][m] for m in cols),
        ]
        for r in results
    ]
    rows.append(
        [
            "mean ± std",
            _mean_std([r["best_valid"].get(f"valid_{metric}", float("nan")) for r in results]),
            "",
            *(_mean_std([t[m] for t in tests]) for m in cols),
        ]
    )
    return markdown(["seed", f"valid {metric}", "epochs", *(f"test {m}" for m in cols)], rows)


def write_report(
    out: Path,
    *,
    study: Any,
    info: dict[str, Any],
    keys: Sequence[str],
    retrains: Sequence[dict[str, Any]],
    plots: dict[str, str],
) -> Path:
    """TUNE.md in `out`. `info`: model, dataset, metric, command, space (key -> description), base (the base
    config's dict), settings (sampler, pruner, jobs ...), wall_seconds, best_toml."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    metric = info["metric"]
    states: dict[str, int] = {}
    for t in trials:
        name = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        states[name] = states.get(name, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    lines = [
        f"# Tuning {info['model']} on {info['dataset']}",
        "",
        f"Command: `{info['command']}`",
        "",
        f"The objective is each run's best validation {metric} (maximised); test metrics are never read "
        "during the search (every trial trains with `test=False`). Each trial is a run to early stopping in "
        "`trials/<number>`; a trial whose best validation "
        f"{metric} so far falls below the median of the complete trials' best up to the same epoch is "
        "pruned.",
        "",
        f"- trials: {len(trials)} ({counts}); wall time of this call {info['wall_seconds'] / 60:.1f} min",
        *(f"- {k}: {v}" for k, v in info["settings"].items()),
        "",
        "## Search space",
        "",
        markdown(
            ["option", "distribution", "base value"],
            [[k, d, _param(info["base_values"][k])] for k, d in info["space"].items()],
        ),
        "",
    ]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    lines += ["## Best trial", ""]
    if complete:
        best = max(complete, key=lambda t: t.value)
        a = best.user_attrs
        lines += [
            f"Trial {best.number}: validation {metric} {best.value:.4f} at epoch {a.get('best_epoch')} of "
            f"{a.get('epochs')} (stopped by {a.get('stopped')}).",
            "",
            markdown(["option", "value"], [[k, _param(v)] for k, v in best.params.items()]),
            "",
            f"Its whole configuration: [{info['best_toml']}]({info['best_toml']}) (`ssrf train --config "
            f"{info['best_toml_path']} --data ...`).",
            "",
        ]
    else:
        lines += ["No trial completed yet.", ""]
    if retrains:
        lines += [
            f"## The best configuration retrained with {len(retrains)} seed{'s' * (len(retrains) > 1)}",
            "",
            "The choice was made on validation alone; these runs then read the test split once each "
            "(`retrain/`).",
            "",
            retrain_table(retrains, metric),
            "",
        ]
    lines += [
        "## Trials",
        "",
        "State: complete (ran to early stopping or the epoch cap), pruned (stopped by the pruner), failed "
        "(an error, or interrupted by a kill: such a trial is retried under a new number).",
        "",
        markdown(
            [
                "trial",
                "state",
                f"best valid {metric}",
                "epochs",
                "best epoch",
                "stopped by",
                "seconds",
                *keys,
            ],
            trial_rows(trials, keys, metric),
        ),
        "",
    ]
    errors = [(t.number, t.user_attrs["error"]) for t in trials if t.user_attrs.get("error")]
    if errors:
        lines += ["Failed trials:", "", *(f"- trial {n}: {e}" for n, e in errors), ""]
    lines += ["## Plots", ""]
    for name, title in ((HISTORY_PNG, "Optimisation history"), (IMPORTANCE_PNG, "Parameter importances")):
        note = plots.get(name, "not drawn")
        lines += [f"![{title}]({name})" if not note else f"{title}: {note}.", ""]
    if not plots.get(IMPORTANCE_PNG):
        n = len(complete)
        lines += [
            f"The importances are Optuna's default estimate from the {n} complete trials (pruned and failed "
            "ones have no objective value)" + (": with so few, a rough indication only." if n < 20 else "."),
            "",
        ]
    lines += [
        "## Provenance",
        "",
        f"- study: `{info['storage']}` (Optuna journal storage), name `{info['study_name']}`; running the "
        "same command again continues it (`--trials` counts every finished trial of the study)",
        f"- base configuration: the preset of {info['model']} with the command's --set overrides",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}",
        "",
    ]
    path = out / "TUNE.md"
    atomic_write_text(path, "\n".join(lines))
    return path
