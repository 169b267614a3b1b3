"""CosRec (Yan et al., "CosRec: 2D Convolutional Neural Networks for Sequential Recommendation", CIKM 2019):
the last L items pairwise-encoded into a 2d-channel L x L grid X[a, b] = [e_a ; e_b], read by a 2-D CNN
(1x1, 3x3, 1x1, 3x3 convolutions with batch norm and ReLU, then a fully connected layer with dropout), the
result concatenated with the user embedding and scored by y = W2 [T ; P_u] + b2, W2 in R^{|I| x 2d}, not
tied to the input table.

The CNN is SSRF's CNN branch (`ssrf.models.ssrf.PairwiseCNN`), so this model is SSRF without its
self-attention branch and fusion layer. Departure, as for Caser: every position t is scored in one pass, its
window being items t-L+1..t (left-padded), with the trainer's loss and targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.ssrf import PairwiseCNN, SSRFConfig


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

    def cnn_config(self) -> SSRFConfig:
        """The same CNN options in the form PairwiseCNN takes."""
        return SSRFConfig(
            n_items=self.n_items,
            n_users=self.n_users,
            d=self.d,
            window=self.window,
            conv_channels=self.conv_channels,
            fc_dropout=self.fc_dropout,
        )


class CosRec(SequentialRecommender):
    def __init__(self, cfg: CosRecConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.user_emb = nn.Embedding(cfg.n_users + 1, cfg.d)
        self.cnn = PairwiseCNN(cfg.cnn_config())
        self.out = nn.Embedding(cfg.n_items + 1, 2 * cfg.d)  # W2
        self.out_bias = nn.Embedding(cfg.n_items + 1, 1)  # b2
        for emb in (self.item_emb, self.user_emb, self.out):
            nn.init.normal_(emb.weight, std=emb.embedding_dim**-0.5)
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for m in self.cnn.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        items = batch.items
        b, length = items.shape
        if positions is None:
            positions = torch.zeros_like(items, dtype=torch.bool)
            positions[:, -1] = True
        # the window of position t: items t-L+1..t (left-padded)
        windows = F.pad(items, (self.cfg.window - 1, 0)).unfold(1, self.cfg.window, 1)[positions]  # [T, L]
        t = self.cnn(self.item_emb(windows))  # [T, D]
        users = batch.user[:, None].expand(b, length)[positions]
        return torch.cat((t, self.user_emb(users)), dim=-1)  # [T, 2D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return h @ self.out.weight.T + self.out_bias.weight.T  # [T, N + 1]
        return (h[:, None, :] * self.out(items)).sum(-1) + self.out_bias(items).squeeze(-1)  # [T, C]
