"""FM (Rendle, "Factorization Machines", ICDM 2010): y(x) = w_0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
(eq. 1), the pairwise part computed in O(kn) as 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]
(lemma 3.1).

Framing (see `fields`): the features are the example's fields, a multi-valued field entering as the mean of
its values' vectors, so the pairs are pairs of fields. Full ranking: with q the query fields and c the
candidate's, the pairwise sum splits into pairs within q, pairs within c, and <sum q, sum c>; the first is
computed once per position, the second once per item, and every item scores with one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender, pair_dot
from ssrf.models.ctr.layers import bi_interaction


@dataclass(frozen=True, kw_only=True)
class FMConfig(CtrConfig):
    pass


class FM(CtrRecommender):
    def __init__(self, cfg: FMConfig) -> None:
        super().__init__(cfg, first_order=True)
        self.w0 = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        assert self.first_order is not None
        v = self.query_fields(self.emb, user, history)  # [T, Fq, D]
        w = self.query_fields(self.first_order, user, history).sum((1, 2))  # [T]
        within = w + bi_interaction(v).sum(-1)  # first-order terms and pairs of the query side: [T]
        return torch.cat((v.sum(1), within[:, None]), dim=1)  # [T, D + 1]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        assert self.first_order is not None
        first_order = self.first_order
        sum_q, within_q = h[:, :-1], h[:, -1:]  # [T, D], [T, 1]

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            v = self.item_fields(self.emb, ids)  # [., C, Fi, D]
            within_c = self.item_fields(first_order, ids).sum((-2, -1)) + bi_interaction(v).sum(-1)
            return self.w0 + within_q + within_c + pair_dot(sum_q, v.sum(-2))  # [T, C]

        return self.score_items(items, pair_scores, rows=len(h))
