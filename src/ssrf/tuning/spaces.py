"""Search spaces: a TOML file mapping `section.option` to a distribution, checked against a base config.

    "train.lr" = {low = 1e-4, high = 1e-2, log = true}     # a float, log-uniform
    "model_options.dropout" = {low = 0.0, high = 0.6}      # a float, uniform
    "model_options.blocks" = {low = 1, high = 3}           # an integer (the option's type decides)
    "model_options.heads" = {low = 1, high = 4, step = 1}  # integers with a step
    "model_options.d" = {choices = [32, 64, 128]}          # one of these values

Sections as TOML tables work too (`[train]` then `lr = {...}`). Whether a range is of floats or integers
follows the option's own type (`model_options.d` is an integer, `train.lr` a float): the file need not say.
Only the `train` and `model_options` sections can be searched: the data is prepared once for the whole
study and `eval` defines the objective; `train.seed`, `train.metric` and the options that say how a run
executes (device, precision, checkpoints, time budget) stay as the base config has them.

The shipped spaces (`spaces/<family>.toml`) are per model family; an option a family's file names that the
chosen model lacks (`model_options.heads` for GRU4Rec) is left out. In a file of your own (`--space`) every
key must be an option of the model.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ssrf.core import DataError
from ssrf.models import REGISTRY, check_options
from ssrf.pipeline import COUNT_FIELDS, RunConfig
from ssrf.training.loop import TrainConfig

SECTIONS = ("train", "model_options")  # what a space may search
FIXED_TRAIN = {  # train options a search keeps as the base config has them
    "seed": "every trial trains with the base config's seed, so trials differ only by their parameters",
    "metric": "it is the objective",
    "device": "it says where a run executes, not what it learns",
    "precision": "it says how a run executes, not what it learns",
    "checkpoint_every": "it says how a run executes, not what it learns",
    "max_seconds": "it says how a run executes, not what it learns",
}
REFERENCE_MODELS = ("random", "pop", "repeat")  # nothing to learn, so nothing to tune
CTR_MODELS = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint")
SPEC_KEYS = {"low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Dimension:
    """One searched option: `key` is `section.option`; a range (`low`..`high`, integers when `kind` is
    "int") or `choices`."""

    key: str
    kind: str  # float, int or choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        scale = ", log scale" if self.log else ""
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.kind} in [{self.low}, {self.high}]{scale}{step}"

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this option (Optuna's suggest_* under the key's name)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    source: str  # the file it came from (for messages and the report)

    def to_dict(self) -> dict[str, Any]:
        return {d.key: d.to_dict() for d in self.dimensions}

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]


def family(model: str) -> str:
    """The shipped space a model gets: `ctr` for the paper's CTR baselines, `sequence` for the rest."""
    if model in REFERENCE_MODELS:
        raise DataError(f"model {model!r} is a reference row (nothing to learn): nothing to tune")
    return "ctr" if model in CTR_MODELS else "sequence"


def default_space_path(model: str) -> Path:
    return Path(str(resources.files("ssrf.tuning") / "spaces" / f"{family(model)}.toml"))


def load_space(path: str | Path | None, base: RunConfig) -> Space:
    """The space in `path` (default: the shipped one of `base.model`'s family), every key and value checked
    against `base`: a `DataError` naming the file and the key."""
    shipped = path is None
    file = default_space_path(base.model) if path is None else Path(path)
    source = f"spaces/{file.name}" if shipped else str(file)
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise DataError("no such search-space file", path=file) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"cannot read the search space: {exc}", path=file) from None
    return parse_space(raw, base, source, skip_missing=shipped)


def _flatten(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """`{"train.lr": spec}` and `{"train": {"lr": spec}}` alike -> {"train.lr": spec}."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if "." in key:
            flat[key] = value
        elif isinstance(value, dict) and value and not (set(value) & SPEC_KEYS):
            flat.update({f"{key}.{name}": spec for name, spec in value.items()})
        else:
            raise DataError(f"key {key!r}: expected section.option (e.g. train.lr)", path=source)
    return flat


def option_value(base: RunConfig, key: str) -> Any:
    """The base config's value of `section.option` (a model option it leaves out: the model's default)."""
    section, _, option = key.partition(".")
    if section == "train":
        return getattr(base.train, option)
    return getattr(check_options(base.model, base.model_options), option)


def _known(base: RunConfig, section: str) -> set[str]:
    if section == "train":
        return {f.name for f in fields(TrainConfig)}
    return {f.name for f in fields(REGISTRY[base.model][1])} - COUNT_FIELDS - set(REGISTRY[base.model][2])


def parse_space(raw: dict[str, Any], base: RunConfig, source: str, *, skip_missing: bool = False) -> Space:
    """Check and normalise a parsed space file (see the module's doc)."""
    if not isinstance(raw, dict) or not raw:
        raise DataError("the search space is empty: give at least one section.option = {...}", path=source)
    dims = []
    for key, spec in _flatten(raw, source).items():
        section, _, option = key.partition(".")
        where = f"{source}: {key}"
        if section not in SECTIONS:
            why = (
                "the data is prepared once for the whole study"
                if section == "data"
                else "it defines the objective"
                if section == "eval"
                else f"unknown section; choose {' or '.join(SECTIONS)}"
            )
            raise DataError(f"{where}: cannot be searched ({why})")
        if section == "train" and option in FIXED_TRAIN:
            raise DataError(f"{where}: cannot be searched ({FIXED_TRAIN[option]})")
        if option not in _known(base, section):
            if skip_missing:  # a shipped family space names options some of its models lack
                continue
            what = "a train option" if section == "train" else f"an option of model {base.model}"
            raise DataError(f"{where}: not {what}")
        dims.append(_dimension(key, spec, option_value(base, key), where))
    if not dims:
        raise DataError(f"no option of model {base.model} to search", path=source)
    space = Space(tuple(dims), source)
    for dim in space.dimensions:  # every value the space can give is one the config accepts
        values = dim.choices if dim.kind == "choice" else (dim.low, dim.high)
        for value in values:
            try:
                apply_params(base, {dim.key: value})
            except DataError as exc:
                raise DataError(f"{source}: {dim.key} = {value!r} is not a valid value: {exc}") from None
    return space


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension(key: str, spec: Any, current: Any, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise DataError(
            f"{where}: expected a table such as {{low = 1e-4, high = 1e-2}} or {{choices = [...]}}"
        )
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use low, high, log, step, choices"
        )
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            raise DataError(f"{where}: choices go alone (not with {', '.join(sorted(extra))})")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise DataError(f"{where}: choices must be a non-empty list")
        bad = next((c for c in choices if not isinstance(c, bool | int | float | str)), None)
        if bad is not None:
            raise DataError(f"{where}: choice {bad!r} is not a number, a string or true/false")
        if isinstance(current, float):  # integers given for a float option are floats
            choices = [float(c) if _number(c) else c for c in choices]
        if len(set(map(repr, choices))) < len(choices):
            raise DataError(f"{where}: choices repeat a value")
        return Dimension(key, "choice", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise DataError(f"{where}: give low and high (or choices)")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if isinstance(current, bool) or not _number(current):
        raise DataError(f"{where}: a range needs a numeric option (it is {current!r}); give choices instead")
    if not _number(low) or not _number(high) or not math.isfinite(low) or not math.isfinite(high):
        raise DataError(f"{where}: low and high must be finite numbers, got {low!r} and {high!r}")
    if not isinstance(log, bool):
        raise DataError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise DataError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise DataError(f"{where}: a log scale needs low > 0, got {low}")
    if step is not None:
        if not _number(step) or not step > 0:
            raise DataError(f"{where}: step must be a positive number, got {step!r}")
        if log:
            raise DataError(f"{where}: give step or log = true, not both")
    if isinstance(current, int):
        bad = next((v for v in (low, high, step) if v is not None and not isinstance(v, int)), None)
        if bad is not None:
            raise DataError(f"{where}: an integer option: low, high and step must be integers, got {bad!r}")
        return Dimension(key, "int", low, high, log, step)
    step = None if step is None else float(step)
    if step is not None and not math.isclose((high - low) / step, round((high - low) / step)):
        raise DataError(f"{where}: high - low ({high - low:g}) is not a multiple of step {step:g}")
    return Dimension(key, "float", float(low), float(high), log, step)


def apply_params(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """`base` with each `section.option` of `params` set (checked as any config is)."""
    raw = base.to_dict()
    for key, value in params.items():
        section, _, option = key.partition(".")
        raw[section][option] = value
    return RunConfig.from_dict(raw, "the trial's parameters")
