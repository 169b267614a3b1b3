"""The reproduction report's figures and a run's training curves (matplotlib, Agg backend): pure functions
of table rows -> Figure, and `save`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ssrf.reports.tables import model_name

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">")


def _style(model: str, i: int) -> dict[str, Any]:
    if model == "ssrf":
        return {"color": "black", "marker": "*", "linewidth": 2.6, "markersize": 10, "zorder": 5}
    return {
        "color": plt.get_cmap("tab10")(i % 10),
        "marker": MARKERS[i % len(MARKERS)],
        "linewidth": 1.4,
        "markersize": 5,
        "linestyle": ("-", "--", ":", "-.")[i % 4],
    }


def metric_vs_weight(
    rows: Sequence[dict[str, Any]],
    metric: str,
    ylabel: str,
    titles: dict[str, str],
    behaviours: dict[str, str],
    title: str,
) -> Figure:
    """One panel per dataset: `metric` against the loss weight, one line per model (figures 2-3)."""
    datasets = list(titles)
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5.2 * max(len(datasets), 1) + 1.8, 4.4))
    axes = list(axes) if len(datasets) > 1 else [axes]
    models = list(dict.fromkeys(r["model"] for r in rows))
    weights = sorted({float(r["weight"]) for r in rows if r["weight"] is not None})
    for ax, ds in zip(axes, datasets, strict=False):
        for i, model in enumerate(models):
            pts = sorted(
                (float(r["weight"]), float(r[metric]))
                for r in rows
                if r["dataset"] == ds and r["model"] == model
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), label=model_name(model), **_style(model, i))
        ax.set_xscale("log")
        ax.set_xticks(weights)
        ax.set_xticklabels([f"{w:g}" for w in weights])
        ax.minorticks_off()
        ax.set_xlabel(f"loss weight of '{behaviours.get(ds, '')}' (others 1; unitless)")
        ax.set_ylabel(ylabel)
        ax.set_title(titles[ds], fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center right", title="model", frameon=False)
    fig.suptitle(
        f"{title}\n(test users of the temporal 70/30 split, ranking every item; one seed per point)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
    return fig


def ablation_bars(
    rows: Sequence[dict[str, Any]],
    metric: str,
    ylabel: str,
    titles: dict[str, str],
    scale: float,
    title: str,
    note: str = "",
) -> Figure:
    """Grouped bars: datasets on the x axis, one bar per model (SSRF, SSRF-UC, SSRF-O), error bar = std."""
    datasets = list(titles)
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.6 * max(len(datasets), 1) + 2.5, 4.4))
    width = 0.8 / max(len(models), 1)
    colors = {"ssrf": "black", "ssrf-uc": "tab:orange", "ssrf-o": "tab:blue"}
    seeds = max((int(r["seeds"]) for r in rows), default=0)
    for j, model in enumerate(models):
        xs, ys, errs = [], [], []
        for i, ds in enumerate(datasets):
            row = next((r for r in rows if r["dataset"] == ds and r["model"] == model), None)
            if row is None or math.isnan(float(row[f"{metric}_mean"])):
                continue
            std = float(row[f"{metric}_std"])
            xs.append(i + (j - (len(models) - 1) / 2) * width)
            ys.append(float(row[f"{metric}_mean"]) * scale)
            errs.append(0.0 if math.isnan(std) else std * scale)
        bars = ax.bar(
            xs,
            ys,
            width,
            yerr=errs,
            capsize=4,
            error_kw={"ecolor": "0.55", "elinewidth": 1.6},
            label=model_name(model),
            color=colors.get(model, f"C{j}"),
            edgecolor="black",
            linewidth=0.5,
        )
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([titles[d] for d in datasets], fontsize=8)
    ax.set_xlabel("dataset (temporal 70/30 split)")
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)
    if all(float(r[f"{metric}_mean"]) >= 0 for r in rows if not math.isnan(float(r[f"{metric}_mean"]))):
        ax.set_ylim(bottom=0)  # a share cannot be negative: clip the error bars at 0
    ax.legend(title="model", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(
        f"{title}\n(mean ± std over {seeds} seed{'s' if seeds != 1 else ''}; test users, every item "
        f"ranked{note})",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def training_curves(rows: Sequence[dict[str, Any]], metric: str, title: str) -> Figure:
    """A run's curves from its metrics.jsonl rows: the training loss (left) and the validation `metric`
    (right, `valid_<metric>` in the rows) per epoch, the best epoch (the first with the highest metric, as
    training selects it) marked on both."""
    epochs = [int(r["epoch"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    score = [float(r[f"valid_{metric}"]) for r in rows]
    ranked = [(s, -e) for s, e in zip(score, epochs, strict=True) if not math.isnan(s)]
    best = -max(ranked)[1] if ranked else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, values, label in ((left, loss, "training loss (mean per target)"), (right, score, metric)):
        ax.plot(epochs, values, color="black", marker="o", markersize=4, linewidth=1.6)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if best is not None:
            ax.axvline(best, color="tab:red", linestyle="--", linewidth=1)
    right.set_title(f"validation {metric} per epoch", fontsize=10)
    if best is not None:
        right.plot(best, score[epochs.index(best)], "*", color="tab:red", markersize=14, zorder=5)
        right.set_title(
            f"validation {metric} per epoch\n(best: epoch {best}, {score[epochs.index(best)]:.4g}; dashed)",
            fontsize=10,
        )
    if all(math.isnan(v) for v in loss):
        left.text(
            0.5, 0.5, "not trained\n(nothing to learn)", ha="center", va="center", transform=left.transAxes
        )
    left.set_title("training loss per epoch", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
