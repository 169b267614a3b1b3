"""Shared constants, the project's error type and seeding. Imports nothing from ssrf."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import typing
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic

PAD_ID = 0  # index 0 of every vocabulary is padding


class DataError(ValueError):
    """Bad input: the message names the file and, where it applies, the line and column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f" (column {column})"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column


# Field types with bounds for the typed configs (`check_config` enforces them; plain dataclasses otherwise)
PositiveInt = Annotated[int, pydantic.Field(ge=1)]
NonNegativeInt = Annotated[int, pydantic.Field(ge=0)]
PositiveFloat = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]


@functools.cache
def _checker(cls: type) -> type[pydantic.BaseModel]:
    """A strict pydantic model with the dataclass's fields: types as annotated, no coercion ("0.1" is not a
    number, true is not an integer), bounds from `Annotated`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return pydantic.create_model(
        f"{cls.__name__}Check",
        __config__=pydantic.ConfigDict(strict=True, arbitrary_types_allowed=True),
        **{f.name: (hints[f.name], ...) for f in dataclasses.fields(cls)},
    )


def check_config(cfg: Any, section: str = "") -> None:
    """Check a config dataclass's values against its field types and bounds; a `DataError` naming the first
    bad field (as `section.field`), its value and what is allowed."""
    try:
        _checker(type(cfg))(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(x) for x in err["loc"][:1])
        where = f"{section}.{name}" if section else name
        raise DataError(f"{where} = {_show(err['input'])}: {_reason(err)}") from None


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)


def _reason(err: Any) -> str:
    """pydantic's message, lower-cased and said of the option, with the reason for a non-finite number."""
    msg = str(err["msg"])
    if err["type"] == "finite_number":
        return "must be a finite number"
    msg = msg.replace("Input should be", "must be")
    return msg[0].lower() + msg[1:]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
