"""NFM (He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics", SIGIR 2017):
y(x) = w_0 + sum_i w_i x_i + f(x) (eq. 1), f(x) = h^T MLP(f_BI(V_x)) (eq. 2-5), with the bi-interaction
pooling f_BI(V_x) = sum_{i<j} x_i v_i * x_j v_j = 1/2 [(sum_i x_i v_i)^2 - sum_i (x_i v_i)^2] (eq. 3-4),
dropout on f_BI and on each hidden layer.

Framing (see `fields`): the features are the example's fields. Full ranking: over query fields q and candidate
fields c, f_BI = f_BI(q) + f_BI(c) + (sum q) * (sum c), the first part per position, the second per item, the
third an element-wise product per pair, so no pair rebuilds its fields. Departure: no batch normalisation on
f_BI (the paper's optional BN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender
from ssrf.models.ctr.layers import MLP, bi_interaction


@dataclass(frozen=True, kw_only=True)
class NFMConfig(CtrConfig):
    hidden: tuple[int, ...] = (64,)  # hidden layers above f_BI (the paper's best: one layer)
    dropout: float = 0.2  # dropout on f_BI and after each hidden layer


class NFM(CtrRecommender):
    def __init__(self, cfg: NFMConfig) -> None:
        super().__init__(cfg, first_order=True)
        self.w0 = nn.Parameter(torch.zeros(()))
        self.drop = nn.Dropout(cfg.dropout)
        self.mlp = MLP(cfg.d, cfg.hidden, cfg.dropout)
        self.h = nn.Linear(self.mlp.width, 1, bias=False)  # the prediction layer
        self.pair_width = max(cfg.d, *cfg.hidden)
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        assert self.first_order is not None
        v = self.query_fields(self.emb, user, history)  # [T, Fq, D]
        w = self.query_fields(self.first_order, user, history).sum((1, 2))[:, None]  # [T, 1]
        return torch.cat((v.sum(1), bi_interaction(v), w), dim=1)  # [T, 2D + 1]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        assert self.first_order is not None
        first_order, d = self.first_order, self.cfg.d
        sum_q, bi_q, w_q = h[:, None, :d], h[:, None, d : 2 * d], h[:, d * 2 :]  # [T, 1, D] x 2, [T, 1]

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            v = self.item_fields(self.emb, ids)  # [., C, Fi, D]
            w_c = self.item_fields(first_order, ids).sum((-2, -1))  # [., C]
            f_bi = bi_q + bi_interaction(v) + sum_q * v.sum(-2)  # [T, C, D]
            f = self.h(self.mlp(self.drop(f_bi))).squeeze(-1)  # [T, C]
            return self.w0 + w_q + w_c + f

        return self.score_items(items, pair_scores, rows=len(h))
