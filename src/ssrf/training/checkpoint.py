"""Resume state: model + optimizer tensors in safetensors, counters in JSON, both written atomically; the
counters record the tensors' BLAKE2b digest, and a state whose tensors do not match it is refused.

Randomness is a pure function of (seed, epoch, step) in the loop, so no RNG state needs saving."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ssrf.core import DataError, atomic_write_text
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import load_checked, save_tensors, weights_digest

STATE, COUNTERS = "state.safetensors", "state.json"


def save_resume(
    directory: Path, model: SequentialRecommender, optimizer: torch.optim.Optimizer, counters: dict
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    save_tensors(tensors, directory / STATE)
    meta = {
        **counters,
        "param_groups": opt["param_groups"],
        "state_blake2b": weights_digest(directory / STATE),
    }
    atomic_write_text(directory / COUNTERS, json.dumps(meta))


def load_resume(
    directory: Path, model: SequentialRecommender, optimizer: torch.optim.Optimizer
) -> dict | None:
    """Restore model and optimizer in place; return the counters, or None when there is nothing to resume."""
    if not (directory / COUNTERS).is_file():
        return None
    try:
        counters = json.loads((directory / COUNTERS).read_text())
        expected = counters.pop("state_blake2b")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise DataError(
            f"unreadable resume state ({exc}); delete the folder to start over", path=directory
        ) from None
    tensors = load_checked(directory / STATE, expected)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": counters.pop("param_groups")})
    return counters
