"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016):
P(Y = 1 | x) = sigmoid(w_wide^T [x, phi(x)] + w_deep^T a^(l_f) + b) (eq. 3), trained jointly. The wide part is
a linear model over the raw sparse features x and their cross-product transformations phi(x) (eq. 1); the
deep part a feed-forward network (ReLU) over the features' embeddings (eq. 2).

Framing (see `fields`): x are the example's features (user, history items and values, candidate item and
values; a multi-valued field weighs each value by its share in the mean). phi crosses, per item context
field, each history value a with each candidate value b (the paper's "AND(user_installed_app=netflix,
impression_app=pandora)" with categories), one weight per (a, b): an S x S table per field (`cross=False`
drops it; item x item crosses would need N x N). Full ranking: the history's values fix a row of cross
weights per position, P = mean_a W[a, :], which the candidates' values index; the network's first layer
splits into a query part and a candidate part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender
from ssrf.models.ctr.layers import MLP


@dataclass(frozen=True, kw_only=True)
class WideDeepConfig(CtrConfig):
    hidden: tuple[int, ...] = (64, 32)  # hidden layers of the deep part
    dropout: float = 0.2  # dropout after each hidden layer
    cross: bool = True  # wide cross-products of history and candidate values, per context field


class WideDeep(CtrRecommender):
    def __init__(self, cfg: WideDeepConfig) -> None:
        super().__init__(cfg, first_order=True)
        fi = 1 + len(cfg.field_sizes)
        self.q_width, self.c_width = (1 + fi) * cfg.d, fi * cfg.d
        sizes = cfg.field_sizes if cfg.cross else ()
        self.cross = nn.ModuleList(nn.Embedding(s, s) for s in sizes)  # W[a, b] for values a, b of a field
        self.mlp = MLP(self.q_width + self.c_width, cfg.hidden, cfg.dropout)
        self.out = nn.Linear(self.mlp.width, 1)  # w_deep, b
        self.pair_width = max(*cfg.hidden, sum(cfg.field_widths))
        self.reset_parameters()
        for table in self.cross:
            nn.init.zeros_(table.weight)

    def cross_rows(self, history: torch.Tensor) -> list[torch.Tensor]:
        """Per crossed field, [T, S]: the mean over the history's values a of the cross weights W[a, :]."""
        real_items = (history != 0)[..., None]  # [T, n, 1]
        rows = []
        for i, table in enumerate(self.cross):
            dtype = table.weight.dtype
            item_share = real_items.to(dtype) / real_items.sum(1, keepdim=True).clamp(min=1)
            ids = getattr(self, f"item_field_{i}")[history]  # [T, n, K]
            real = (ids != 0).to(dtype)
            share = item_share * real / real.sum(-1, keepdim=True).clamp(min=1)  # each value's weight
            rows.append(
                F.embedding_bag(ids.flatten(1), table.weight, per_sample_weights=share.flatten(1), mode="sum")
            )
        return rows

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        assert self.first_order is not None
        e = self.query_fields(self.emb, user, history).flatten(1)  # [T, Fq * D]
        w = self.query_fields(self.first_order, user, history).sum((1, 2))  # [T]
        return torch.cat((e, w[:, None], *self.cross_rows(history)), dim=1)  # [T, Fq * D + 1 + sum S]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        assert self.first_order is not None
        first_order = self.first_order
        e_q, w_q = h[:, : self.q_width], h[:, self.q_width : self.q_width + 1]  # [T, Fq * D], [T, 1]
        cross_rows = h[:, self.q_width + 1 :].split([t.num_embeddings for t in self.cross], dim=1)
        row = torch.arange(len(h), device=h.device)[:, None, None]
        w_deep_q, w_deep_c = self.mlp.split(self.q_width, self.c_width)
        deep_q = (e_q @ w_deep_q.T)[:, None]  # [T, 1, H]

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            wide = w_q + self.item_fields(first_order, ids).sum((-2, -1))  # w^T x: [T, C]
            for i, p in enumerate(cross_rows):
                values = getattr(self, f"item_field_{i}")[ids]  # [., C, K]
                real = (values != 0).to(p.dtype)
                wide = wide + (p[row, values] * real).sum(-1) / real.sum(-1).clamp(min=1)  # w^T phi(x)
            deep_c = self.item_fields(self.emb, ids).flatten(-2) @ w_deep_c.T + self.mlp.first.bias
            return wide + self.out(self.mlp.rest(deep_q + deep_c)).squeeze(-1)

        return self.score_items(items, pair_scores, rows=len(h))
