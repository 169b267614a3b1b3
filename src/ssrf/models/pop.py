"""Pop: every user gets the same ranking, by a learned per-item popularity score.

The classic non-personalised baseline. Here the popularity is not counted but learned: one scalar per item
(`item_emb`, width 1, zero at the start), trained by the same losses as the sequence models, so under full
softmax ce it tends to the log frequency of each item as a target (up to a constant). The representation
of every history is the constant 1, so a score is that scalar and reads nothing of the user or their
sequence (`reads_history = False`; the zoo tests skip the check that a position's own item matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender


@dataclass(frozen=True, kw_only=True)
class PopConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (no personalisation); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused
    field_widths: tuple[int, ...] = ()  # unused
    max_len: int = 50  # events per training chunk (each one is a target; the history itself is ignored)


class Pop(SequentialRecommender):
    reads_history = False

    def __init__(self, cfg: PopConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)  # the learned popularity b_i
        nn.init.zeros_(self.item_emb.weight)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        t = batch.items.shape[0] if positions is None else int(positions.sum())
        return torch.ones(t, 1, device=batch.items.device, dtype=self.item_emb.weight.dtype)  # [T, 1]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return h @ self.item_emb.weight.T  # [T, N + 1]: b_i for every row
        return h * self.item_emb(items).squeeze(-1)  # [T, C]
