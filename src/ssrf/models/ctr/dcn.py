"""DCN (Wang et al., "Deep & Cross Network for Ad Click Predictions", ADKDD 2017): the stacked embeddings
x_0 (eq. 1) feed a cross network, x_{l+1} = x_0 x_l^T w_l + b_l + x_l (eq. 3), and in parallel a deep
network, h_{l+1} = ReLU(W_l h_l + b_l) (eq. 4); the combination layer reads both,
p = sigmoid([x_L1 ; h_L2]^T w_logits) (eq. 5).

Framing (see `fields`): x_0 = [query fields ; candidate fields]. Full ranking: by induction each cross layer's
output is x_l = alpha_l x_0 + beta_l, with beta_l = sum_{k<l} b_k a constant and the scalar
alpha_{l+1} = alpha_l (1 + x_0 . w_l) + beta_l . w_l; every x_0 . w splits into a query part and a candidate
part, so the cross network costs a few scalars per pair. `CrossNetwork.forward` is eq. 3 layer by layer (the
tests hold the two equal); the deep network's first layer splits as in the other models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender
from ssrf.models.ctr.layers import MLP


@dataclass(frozen=True, kw_only=True)
class DCNConfig(CtrConfig):
    cross_layers: int = 3  # L1: cross layers
    hidden: tuple[int, ...] = (64, 32)  # hidden layers of the deep network (L2 of them)
    dropout: float = 0.2  # dropout after each hidden layer


class CrossNetwork(nn.Module):
    """L cross layers over x_0 [..., W], each with a weight w_l and a bias b_l in R^W."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(layers, width) * width**-0.5)  # w_l
        self.b = nn.Parameter(torch.zeros(layers, width))  # b_l

    def forward(self, x0: torch.Tensor) -> torch.Tensor:  # eq. 3: x_0 [..., W] -> x_L [..., W]
        x = x0
        for w, b in zip(self.w, self.b, strict=True):
            x = x0 * (x @ w)[..., None] + b + x
        return x

    def closed_form(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_L [...] and beta_L [W] (x_L = alpha_L x_0 + beta_L) from s [..., L], s_l = x_0 . w_l."""
        alpha = torch.ones_like(s[..., 0])
        beta = torch.zeros_like(self.b[0])
        for layer in range(self.w.shape[0]):
            alpha = alpha * (1 + s[..., layer]) + beta @ self.w[layer]
            beta = beta + self.b[layer]
        return alpha, beta


class DCN(CtrRecommender):
    def __init__(self, cfg: DCNConfig) -> None:
        super().__init__(cfg)
        fi = 1 + len(cfg.field_sizes)
        self.q_width, self.c_width = (1 + fi) * cfg.d, fi * cfg.d
        width = self.q_width + self.c_width
        self.cross = CrossNetwork(width, cfg.cross_layers)
        self.mlp = MLP(width, cfg.hidden, cfg.dropout)
        self.logits = nn.Linear(width + self.mlp.width, 1)  # w_logits (and a bias)
        self.pair_width = max(*cfg.hidden, cfg.cross_layers + 1)
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.query_fields(self.emb, user, history).flatten(1)  # x_0's query part: [T, Fq * D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        w_x, w_h = self.logits.weight[0].split((self.q_width + self.c_width, self.mlp.width))
        dots = torch.cat((self.cross.w, w_x[None]), dim=0).T  # x_0 . w_l for each l, then x_0 . w_x
        dots_q, dots_c = dots.split((self.q_width, self.c_width))
        s_q = (h @ dots_q)[:, None]  # [T, 1, L + 1]
        deep_w_q, deep_w_c = self.mlp.split(self.q_width, self.c_width)
        deep_q = (h @ deep_w_q.T)[:, None]  # [T, 1, H]

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            x0_c = self.item_fields(self.emb, ids).flatten(-2)  # [., C, Fi * D]
            s = s_q + x0_c @ dots_c  # [T, C, L + 1]
            alpha, beta = self.cross.closed_form(s[..., :-1])
            cross = alpha * s[..., -1] + beta @ w_x  # x_L . w_x
            deep = self.mlp.rest(deep_q + x0_c @ deep_w_c.T + self.mlp.first.bias) @ w_h  # h_L2 . w_h
            return cross + deep + self.logits.bias

        return self.score_items(items, pair_scores, rows=len(h))
