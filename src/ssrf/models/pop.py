"""Pop: every user gets the same ranking, by how often each item occurs in the training period.

The classic non-personalised baseline, and a reference row rather than a model: nothing is learned. The
score of item i is log1p(count_i), where count_i is the number of training-period events of i (validation
and test events never counted). The counts live in a buffer, zeros until `set_item_counts` fills it (the
pipeline does so from the training split), so a checkpoint alone rebuilds the ranking. The representation
of every history is the constant 1, so a score reads nothing of the user or their sequence
(`reads_history = False`; the zoo tests skip the check that a position's own item matters).

`learned = True` keeps the earlier variant: one scalar per item, zero at the start, trained by the same
losses as the sequence models (under full softmax ce it tends to the log frequency of each target, up to a
constant). The zoo table in docs/benchmarks.md was measured with that variant.
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
    max_len: int = 50  # events per input window (the history itself is ignored)
    learned: bool = False  # False: log1p(training count); True: a learned per-item scalar


class ItemCounts(nn.Module):
    """The training-period event count of every item: a buffer [N + 1] (index 0, padding, stays 0), zeros
    until `fill`, restored by `load_state_dict`. Shared by `pop` and `repeat`."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(n_items + 1))

    def fill(self, counts: torch.Tensor) -> None:
        if counts.shape != self.counts.shape:
            raise ValueError(f"expected {tuple(self.counts.shape)} item counts, got {tuple(counts.shape)}")
        self.counts.copy_(counts.to(self.counts))
        self.counts[0] = 0

    def log1p(self) -> torch.Tensor:  # [N + 1]
        return self.counts.log1p()


class Pop(SequentialRecommender):
    reads_history = False

    def __init__(self, cfg: PopConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.popularity = ItemCounts(cfg.n_items)
        self.item_emb = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0) if cfg.learned else None
        if self.item_emb is not None:
            nn.init.zeros_(self.item_emb.weight)  # the learned popularity b_i

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """counts [N + 1]: training-period events of each item."""
        self.popularity.fill(counts)

    def item_scores(self) -> torch.Tensor:  # [N + 1]
        if self.item_emb is not None:
            return self.item_emb.weight[:, 0]
        return self.popularity.log1p()

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        t = batch.items.shape[0] if positions is None else int(positions.sum())
        return torch.ones(t, 1, device=batch.items.device, dtype=self.popularity.counts.dtype)  # [T, 1]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        s = self.item_scores()
        if items is None:
            return h * s[None, :]  # [T, N + 1]: the same row for every history
        return h * s[items]  # [T, C]
