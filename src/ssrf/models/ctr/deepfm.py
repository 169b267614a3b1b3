"""DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction", IJCAI
2017): y = sigmoid(y_FM + y_DNN) (eq. 1). The FM component is <w, x> + sum_{i<j} <V_i, V_j> x_i x_j
(eq. 2); the deep component is a feed-forward network over the same field embeddings,
a^(0) = [e_1, ..., e_m] (eq. 3-4), with the output layer y_DNN = W^(H+1) a^(H) + b^(H+1) (eq. 5): the two
share the embedding layer.

Framing (see `fields`). Full ranking: the FM part splits as in `fm` (pairs within the query side, within the
candidate side, and <sum q, sum c>); the network's first layer splits into a query part and a candidate
part, so a pair costs one addition before the first activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender, pair_dot
from ssrf.models.ctr.layers import MLP, bi_interaction


@dataclass(frozen=True, kw_only=True)
class DeepFMConfig(CtrConfig):
    hidden: tuple[int, ...] = (64, 32)  # hidden layers of the deep component
    dropout: float = 0.2  # dropout after each hidden layer


class DeepFM(CtrRecommender):
    def __init__(self, cfg: DeepFMConfig) -> None:
        super().__init__(cfg, first_order=True)
        fi = 1 + len(cfg.field_sizes)  # candidate fields; the query side has 1 + fi
        self.q_width, self.c_width = (1 + fi) * cfg.d, fi * cfg.d
        self.mlp = MLP(self.q_width + self.c_width, cfg.hidden, cfg.dropout)
        self.out = nn.Linear(self.mlp.width, 1)  # W^(H+1), b^(H+1)
        self.pair_width = max(cfg.hidden)
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        assert self.first_order is not None
        v = self.query_fields(self.emb, user, history)  # [T, Fq, D]
        w = self.query_fields(self.first_order, user, history).sum((1, 2))  # [T]
        within = w + bi_interaction(v).sum(-1)  # FM terms of the query side alone
        return torch.cat((v.flatten(1), within[:, None]), dim=1)  # [T, Fq * D + 1]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        assert self.first_order is not None
        first_order, d = self.first_order, self.cfg.d
        e_q, within_q = h[:, : self.q_width], h[:, self.q_width :]  # [T, Fq * D], [T, 1]
        sum_q = e_q.view(len(h), -1, d).sum(1)  # [T, D]
        w_q, w_c = self.mlp.split(self.q_width, self.c_width)
        deep_q = (e_q @ w_q.T)[:, None]  # the first layer's query part: [T, 1, H]

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            v = self.item_fields(self.emb, ids)  # [., C, Fi, D]
            within_c = self.item_fields(first_order, ids).sum((-2, -1)) + bi_interaction(v).sum(-1)
            y_fm = within_q + within_c + pair_dot(sum_q, v.sum(-2))  # [T, C]
            deep_c = v.flatten(-2) @ w_c.T + self.mlp.first.bias  # [., C, H]
            y_dnn = self.out(self.mlp.rest(deep_q + deep_c)).squeeze(-1)  # [T, C]
            return y_fm + y_dnn

        return self.score_items(items, pair_scores, rows=len(h))
