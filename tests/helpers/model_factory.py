"""Tiny models and a hand-made batch shared by the model tests (on the path via pyproject pythonpath)."""

from __future__ import annotations

import torch

from ssrf.dataset.batches import SeqBatch
from ssrf.models import build

COUNTS = dict(n_items=30, n_users=5, n_behaviors=4, field_sizes=(7, 4), field_widths=(2, 1))


def make(name: str, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build(name, {**COUNTS, "max_len": 8, **opts})
    g = torch.Generator().manual_seed(1)
    if hasattr(m, "set_item_fields"):
        m.set_item_fields(
            [torch.randint(0, 7, (31, 2), generator=g), torch.randint(1, 4, (31, 1), generator=g)]
        )
    return m.eval()


def batch() -> SeqBatch:
    items = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 9, 10]])
    beh = torch.where(items > 0, torch.tensor([[1, 2, 3, 4, 1, 2, 3, 4]]).expand(3, 8), 0)
    return SeqBatch(user=torch.tensor([1, 2, 3]), items=items, behaviors=beh)
