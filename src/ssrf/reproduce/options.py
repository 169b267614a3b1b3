"""`ssrf reproduce`'s options as plain values: which datasets, which files, how many users to sample, which
plan. The command line parses its strings with these; a notebook passes the same arguments."""

from __future__ import annotations

import dataclasses

from ssrf.core import DataError
from ssrf.reproduce import QUICK, Plan, candidate_plans, estimate_seconds
from ssrf.reproduce.datasets import DatasetSpec, dataset_specs

ALL_DATASETS = ("taobao", "retailrocket", "diginetica", "beauty")


def list_option(values: list[str] | None) -> list[str]:
    """A repeatable option whose values may also be comma lists: ["a,b", "c"] -> ["a", "b", "c"]."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def sample_sizes(spec: str | None, no_sample: bool, given: list[str]) -> dict[str, int | None]:
    """--sample-users KEY=N[,KEY=N] and --no-sample -> {dataset: users or None} for the datasets given by
    files (those not named keep their default, the paper's Table I)."""
    if no_sample:
        if spec:
            raise DataError("give --sample-users or --no-sample, not both")
        return dict.fromkeys(given)
    sizes: dict[str, int | None] = {}
    for part in list_option([spec] if spec else None):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip().replace("_", "")
        if not sep or not key:
            raise DataError(f"--sample-users expects dataset=N pairs separated by commas, got {part!r}")
        if value.lower() in ("all", "none", "0"):
            sizes[key] = None
        elif value.isdigit():
            sizes[key] = int(value)
        else:
            raise DataError(f"--sample-users {key}: expected a number of users (or all), got {value!r}")
    return sizes


def selected_datasets(datasets: str | None) -> list[str]:
    chosen = list_option([datasets] if datasets else None) or list(ALL_DATASETS)
    bad = [d for d in chosen if d not in ALL_DATASETS]
    if bad:
        raise DataError(
            f"unknown dataset(s) in --datasets: {', '.join(bad)}; choose from {', '.join(ALL_DATASETS)}"
        )
    return [d for d in ALL_DATASETS if d in chosen]


def reproduction_specs(
    taobao: list[str] | None = None,
    retailrocket: list[str] | None = None,
    diginetica: list[str] | None = None,
    sample_users: str | None = None,
    no_sample: bool = False,
    beauty_sample_users: int | None = None,
) -> dict[str, DatasetSpec] | None:
    """The dataset specs of `ssrf reproduce` from its file options: None when no file is given (the shared
    samples, as `reproduce` picks them itself)."""
    files = {
        k: list_option(v)
        for k, v in (("taobao", taobao), ("retailrocket", retailrocket), ("diginetica", diginetica))
        if v
    }
    sizes = sample_sizes(sample_users, no_sample, list(files))
    if not files and not sizes:
        return None
    return dataset_specs(beauty_sample_users, files=files, sample_users=sizes)


def pick_plan(budget: float, quick: bool, chosen: list[str], name: str | None = None) -> Plan:
    """The plan `reproduce` would pick (or the one `name`d), restricted to the chosen datasets (and picked
    again for them)."""

    temporal = tuple(d for d in chosen if d != "beauty")
    if not temporal:
        raise DataError("--datasets: the report needs at least one of taobao, retailrocket, diginetica")

    def restrict(plan: Plan) -> Plan:
        beauty = {} if "beauty" in chosen else {"beauty_models": (), "beauty_sample_users": None}
        return dataclasses.replace(plan, datasets=temporal, **beauty)

    if quick:
        return restrict(QUICK)
    if name is not None:
        named = {p.name: p for p in (*candidate_plans(), QUICK)}
        if name not in named:
            raise DataError(f"--plan must be one of {', '.join(named)}, got {name!r}")
        return restrict(named[name])
    plans = [restrict(p) for p in candidate_plans()]
    return next((p for p in plans if estimate_seconds(p) <= 0.85 * budget * 60), plans[-1])


def plan_keys(plan: Plan) -> list[str]:
    """The datasets a plan prepares: its temporal datasets, and Beauty when it trains on it."""
    return [*plan.datasets, *(["beauty"] if plan.beauty_models else [])]
