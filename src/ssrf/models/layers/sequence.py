"""Indexing helpers for models that score positions of a left-padded sequence (SSRF, Caser, CosRec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def last_position(items: torch.Tensor) -> torch.Tensor:
    """[B, L] bool selecting the last (most recent) column of each row."""
    positions = torch.zeros_like(items, dtype=torch.bool)
    positions[:, -1] = True
    return positions


def recent_windows(items: torch.Tensor, positions: torch.Tensor, size: int) -> torch.Tensor:
    """[T, size]: for each selected position t, items t-size+1..t (left-padded with 0)."""
    return F.pad(items, (size - 1, 0)).unfold(1, size, 1)[positions]


def per_position(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[T]: a per-row value (such as the user id, [B]) repeated for each selected position of its row."""
    return values[:, None].expand(positions.shape)[positions]
