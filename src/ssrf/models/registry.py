"""Model bundles on disk: `model.safetensors` (weights and buffers) + `model.json` (name and config).

No pickle anywhere: loading a bundle runs no code from the file. `model.json` records a BLAKE2b digest of the
weights, so a weights file changed after saving (corrupted or tampered with) fails to load, and so does a
bundle without a digest (nothing would tell a damaged file from a good one). Weights that are not finite
(NaN, inf) are refused too: such a model would only ever serve NaN scores. The serving side needs only this
module."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssrf.core import DataError, atomic_write_text
from ssrf.models import build
from ssrf.models.base import SequentialRecommender

WEIGHTS, CONFIG = "model.safetensors", "model.json"


def model_config(model: SequentialRecommender) -> dict:
    return dataclasses.asdict(model.cfg)  # type: ignore[attr-defined]


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def weights_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def save_model(directory: Path, name: str, model: SequentialRecommender) -> None:
    """Write the bundle atomically (weights first, then the config that points at them)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(dict(model.state_dict()), directory / WEIGHTS)
    meta = {
        "model_name": name,
        "model_config": model_config(model),
        "weights_blake2b": weights_digest(directory / WEIGHTS),
    }
    atomic_write_text(directory / CONFIG, json.dumps(meta, indent=2))


def load_checked(path: Path, expected: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose BLAKE2b digest is `expected` (a `DataError` otherwise)."""
    try:
        if weights_digest(path) != expected:
            raise DataError(
                "the file differs from the digest recorded when it was saved (it was corrupted or changed)",
                path=path,
            )
        return load_file(str(path), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"unreadable tensors: {exc}", path=path) from None


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[str, SequentialRecommender]:
    """Rebuild a model from its bundle; a truncated, tampered or mismatched bundle is a clear error."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG).read_text())
        name, config = meta["model_name"], meta["model_config"]
        expected = meta["weights_blake2b"]
    except KeyError as exc:
        what = "weights_blake2b (the weights' digest)" if exc.args == ("weights_blake2b",) else exc
        raise DataError(f"model config lacks {what}", path=directory / CONFIG) from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"unreadable model config: {exc}", path=directory / CONFIG) from None
    if not isinstance(expected, str):
        raise DataError("weights_blake2b must be a hex digest", path=directory / CONFIG)
    try:
        model = build(name, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"invalid model config: {exc}", path=directory / CONFIG) from None
    state = load_checked(directory / WEIGHTS, expected, device)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DataError(f"non-finite weights (NaN or inf) in {', '.join(bad[:3])}", path=directory / WEIGHTS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise DataError(
            f"weights do not match the config: {' '.join(first)}", path=directory / WEIGHTS
        ) from None
    return name, model.to(device)
