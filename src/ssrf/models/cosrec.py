"""CosRec (Yan et al., "CosRec: 2D Convolutional Neural Networks for Sequential Recommendation", CIKM 2019):
the last L items pairwise-encoded into a 2d-channel L x L grid X[a, b] = [e_a ; e_b], read by a 2-D CNN
(1x1, 3x3, 1x1, 3x3 convolutions with batch norm and ReLU, then a fully connected layer with dropout), the
result concatenated with the user embedding and scored by y = W2 [T ; P_u] + b2, W2 in R^{|I| x 2d}, not
tied to the input table.

The CNN is SSRF's CNN branch (`ssrf.models.layers.conv.PairwiseCNN`), so this model is SSRF without its
self-attention branch and fusion layer. Departure, as for Caser: every position t is scored in one pass, its
window being items t-L+1..t (left-padded), with the trainer's loss and targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.layers.conv import PairwiseCNN
from ssrf.models.layers.embeddings import ItemOutput
from ssrf.models.layers.sequence import last_position, per_position, recent_windows


@dataclass(frozen=True, kw_only=True)
class CosRecConfig:
    n_items: int  # catalogue size |I| (ids 1..n_items; 0 is padding)
    n_users: int  # number of users (ids 1..n_users)
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused (item ids only)
    field_widths: tuple[int, ...] = ()  # unused
    d: int = 64  # embedding size (the paper: 50)
    window: int = 5  # L: recent items in the pairwise-encoded window
    conv_channels: tuple[int, int] = (128, 256)  # channels of the 1x1/3x3 pairs
    fc_dropout: float = 0.5  # dropout after the CNN's fully connected layer
    max_len: int = 50  # events per training chunk (each position reads its own last `window` items)


class CosRec(SequentialRecommender):
    def __init__(self, cfg: CosRecConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.user_emb = nn.Embedding(cfg.n_users + 1, cfg.d)
        self.cnn = PairwiseCNN(cfg.d, cfg.window, cfg.conv_channels, cfg.fc_dropout)
        self.out = ItemOutput(cfg.n_items, 2 * cfg.d)  # W2, b2 (untied)
        for emb in (self.item_emb, self.user_emb):
            nn.init.normal_(emb.weight, std=emb.embedding_dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for m in self.cnn.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        positions = last_position(batch.items) if positions is None else positions
        windows = recent_windows(batch.items, positions, self.cfg.window)  # [T, L]
        t = self.cnn(self.item_emb(windows))  # [T, D]
        return torch.cat((t, self.user_emb(per_position(batch.user, positions))), dim=-1)  # [T, 2D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(h, items)  # [T, N + 1] or [T, C]
