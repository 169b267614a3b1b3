"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016): a GRU
reads the item sequence and its state at each step scores the next item.

Departures, as in most later re-implementations (RecBole's among them): the input is a learned item
embedding rather than a one-hot vector, with dropout on it; the GRU state is projected to d and scored by
dot product with the same (tied) embedding table rather than a separate output layer; training runs on
users' histories in the trainer's chunks with the trainer's loss rather than session-parallel mini-batches
with BPR/TOP1. Padding never touches the state: each row's left padding is moved to the right before the GRU
(which is causal, so trailing padding cannot reach earlier steps) and the outputs are moved back, so a
position's state is the GRU run from h_0 = 0 over the real items up to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender


@dataclass(frozen=True, kw_only=True)
class GRU4RecConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (GRU4Rec has no user embedding); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused (item ids only)
    field_widths: tuple[int, ...] = ()  # unused
    d: int = 64  # item embedding size (also the size of the scored representation)
    hidden_size: int = 100  # GRU state size (the paper: 100)
    layers: int = 1  # stacked GRU layers (the paper: 1)
    max_len: int = 50  # items in the input sequence
    dropout: float = 0.25  # dropout on the input embeddings (and between GRU layers when layers > 1)


def rotate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Row b of x [B, L, ...] rolled left by shift[b]: out[b, j] = x[b, (j + shift[b]) mod L]."""
    length = x.shape[1]
    idx = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length  # [B, L]
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class GRU4Rec(SequentialRecommender):
    def __init__(self, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(
            cfg.d,
            cfg.hidden_size,
            cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.proj = nn.Linear(cfg.hidden_size, cfg.d)
        nn.init.normal_(self.item_emb.weight, std=cfg.d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def states(self, items: torch.Tensor) -> torch.Tensor:
        """GRU state after each real item: [B, L, H], zero at padding (the state before any item)."""
        length = items.shape[1]
        real = items != 0
        pad = length - real.sum(1)  # [B] leading padding of each row
        x = rotate(self.drop(self.item_emb(items)), pad)  # [B, L, D], real items first
        out, _ = self.gru(x)  # [B, L, H]: step j sees steps <= j only
        return rotate(out, -pad % length) * real[..., None]  # [B, L, H], back to right-aligned

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        s = self.states(batch.items)
        s = s[:, -1] if positions is None else s[positions]  # [B, H] or [T, H]
        return self.proj(s)  # [., D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return h @ self.item_emb.weight.T  # [T, N + 1]
        return (h[:, None, :] * self.item_emb(items)).sum(-1)  # [T, C]
