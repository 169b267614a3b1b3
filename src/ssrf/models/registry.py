"""Model bundles on disk: `model.safetensors` (weights and buffers) + `model.json` (name and config).

No pickle anywhere: loading a bundle runs no code from the file. `model.json` records a BLAKE2b digest of the
weights, so a weights file changed after saving (corrupted or tampered with) fails to load; bundles written
before the digest existed load without that check. The serving side needs only this module."""

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


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[str, SequentialRecommender]:
    """Rebuild a model from its bundle; a truncated, tampered or mismatched bundle is a clear error."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG).read_text())
        name, config = meta["model_name"], meta["model_config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable model config: {exc}", path=directory / CONFIG) from None
    try:
        model = build(name, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"invalid model config: {exc}", path=directory / CONFIG) from None
    expected = meta.get("weights_blake2b")
    try:
        if expected is not None and weights_digest(directory / WEIGHTS) != expected:
            raise DataError(
                "weights differ from the digest recorded in model.json when they were saved "
                "(the file was corrupted or changed)",
                path=directory / WEIGHTS,
            )
        state = load_file(str(directory / WEIGHTS), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"unreadable weights: {exc}", path=directory / WEIGHTS) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise DataError(
            f"weights do not match the config: {' '.join(first)}", path=directory / WEIGHTS
        ) from None
    return name, model.to(device)
