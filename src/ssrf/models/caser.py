"""Caser (Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence Embedding",
WSDM 2018): the last L items as an L x d "image", read by horizontal filters (h x d, one set per height
h = 1..L, ReLU, max-pooled over time: union-level patterns) and vertical filters (L x 1: weighted sums of the
rows, point-level patterns), then z = ReLU(W1 [o ; o'] + b1), and y = W2 [z ; P_u] + b2 with
W2 in R^{|I| x 2d}, not tied to the input table (eq. 1-7, as in the authors' caser_pytorch).

Departure: every position t of a sequence is scored in one pass, its window being items t-L+1..t
(left-padded with the zero padding embedding), and the trainer's loss and targets are used in place of the
paper's T next items with one negative each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.layers.embeddings import ItemOutput
from ssrf.models.layers.sequence import last_position, per_position, recent_windows


@dataclass(frozen=True, kw_only=True)
class CaserConfig:
    n_items: int  # catalogue size |I| (ids 1..n_items; 0 is padding)
    n_users: int  # number of users (ids 1..n_users)
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused (item ids only)
    field_widths: tuple[int, ...] = ()  # unused
    d: int = 64  # embedding size (the paper: 50)
    window: int = 5  # L: recent items each position reads
    n_h: int = 16  # horizontal filters per height h = 1..L
    n_v: int = 4  # vertical filters
    dropout: float = 0.5  # dropout on the concatenated convolution outputs
    max_len: int = 50  # events per training chunk (each position reads its own last `window` items)


class CaserConv(nn.Module):
    """E [T, L, D] -> z [T, D]: horizontal and vertical convolutions, dropout, fully connected + ReLU."""

    def __init__(self, cfg: CaserConfig) -> None:
        super().__init__()
        self.horizontal_convs = nn.ModuleList(
            nn.Conv2d(1, cfg.n_h, (h, cfg.d)) for h in range(1, cfg.window + 1)
        )
        self.vertical_conv = nn.Conv2d(1, cfg.n_v, (cfg.window, 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.n_h * cfg.window + cfg.n_v * cfg.d, cfg.d)  # W1

    def horizontal(self, e: torch.Tensor) -> torch.Tensor:  # e: [T, L, D]
        x = e[:, None]  # [T, 1, L, D]
        pooled = [F.relu(conv(x).squeeze(3)).amax(dim=2) for conv in self.horizontal_convs]  # L x [T, n_h]
        return torch.cat(pooled, dim=1)  # o: [T, n_h * L]

    def vertical(self, e: torch.Tensor) -> torch.Tensor:  # e: [T, L, D]
        return self.vertical_conv(e[:, None]).flatten(1)  # o': [T, n_v * D] (no activation, as the authors)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        o = self.drop(torch.cat((self.vertical(e), self.horizontal(e)), dim=1))
        return F.relu(self.fc(o))  # z: [T, D]


class Caser(SequentialRecommender):
    def __init__(self, cfg: CaserConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.user_emb = nn.Embedding(cfg.n_users + 1, cfg.d)
        self.conv = CaserConv(cfg)
        self.out = ItemOutput(cfg.n_items, 2 * cfg.d)  # W2, b2 (untied)
        for emb in (self.item_emb, self.user_emb):
            nn.init.normal_(emb.weight, std=cfg.d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        positions = last_position(batch.items) if positions is None else positions
        windows = recent_windows(batch.items, positions, self.cfg.window)  # [T, L]
        z = self.conv(self.item_emb(windows))  # [T, D]
        return torch.cat((z, self.user_emb(per_position(batch.user, positions))), dim=-1)  # [T, 2D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(h, items)  # [T, N + 1] or [T, C]
