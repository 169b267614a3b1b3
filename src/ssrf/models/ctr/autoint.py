"""AutoInt (Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
CIKM 2019): each field's embedding e_m attends to all fields, per head h with
alpha_mk = softmax_k(<W_Q e_m, W_K e_k>) (eq. 5-6), e~_m = concat_h sum_k alpha_mk W_V e_k (eq. 7-8), and a
residual connection e^Res_m = ReLU(e~_m + W_Res e_m) (eq. 9); interacting layers stack, and the output is
y = w^T [e^Res_1 ; ... ; e^Res_M] + b (eq. 10).

Framing (see `fields`): the fields are the query fields and the candidate's. Full ranking: the first layer's
projections are per field, so they run once per row (query fields) and once per item (candidate fields);
a pair then costs its attention logits across the two sides, the softmax and the mixing of values, laid out
[field, head, size, C, T] so that every per-pair operation runs over long contiguous rows. Later layers see
each pair's own fields and cost a full layer per pair: the paper stacks 3 layers of 2 heads of size 32, here
one by default so that ranking the catalogue stays within minutes (`layers` adds more). A head is d / H
wide, so the concatenated heads are as wide as an embedding (the paper: d = 16, d' = 32; here 64 and 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender


@dataclass(frozen=True, kw_only=True)
class AutoIntConfig(CtrConfig):
    layers: int = 1  # interacting layers (the paper: 3)
    heads: int = 2  # attention heads per layer, each d / heads wide (the paper: 2 heads of d' = 32)


class InteractingLayer(nn.Module):
    """Eq. 5-9 over fields [..., M, W] -> [..., M, H * d']; `sides` is the same layer for pairs of a query
    side and a candidate side."""

    def __init__(self, width: int, heads: int, size: int) -> None:
        super().__init__()
        self.heads, self.size = heads, size
        self.qkv = nn.Linear(width, 3 * heads * size, bias=False)  # W_Q, W_K, W_V of every head
        self.res = nn.Linear(width, heads * size, bias=False)  # W_Res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, m, _ = x.shape
        q, k, v = self.qkv(x).view(*lead, m, 3, self.heads, self.size).unbind(-3)  # [..., M, H, d']
        alpha = torch.einsum("...mhd,...khd->...hmk", q, k).softmax(-1)
        e = torch.einsum("...hmk,...khd->...mhd", alpha, v).flatten(-2)  # heads concatenated
        return torch.relu(e + self.res(x))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Fields x [T', C, F, W] -> W_Q x, W_K x, W_V x, W_Res x, each [F, H, d', C, T']."""
        p = torch.cat((self.qkv(x), self.res(x)), dim=-1).view(*x.shape[:3], 4, self.heads, self.size)
        return tuple(t.contiguous() for t in p.permute(3, 2, 4, 5, 1, 0))  # contiguous: so are the outputs

    def sides(self, q_side: tuple[torch.Tensor, ...], c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer over each pair's fields [q ; c] for the query fields' projections q_side (`project` of
        [T, 1, Fq, W]) and candidate fields c [T', C, Fi, W] (T' = T, or 1 for a chunk shared by every row):
        the outputs of the query fields [Fq, H, d', C, T] and of the candidate fields [Fi, H, d', C, T]."""
        t, chunk = q_side[0].shape[-1], c.shape[1]
        c_side = self.project(c)  # (Q, K, V, R) of each side
        values = [*q_side[2].unbind(0), *c_side[2].unbind(0)]  # W_V e_k: M x [H, d', C', T']
        out = []
        for queries, residual in ((q_side[0], q_side[3]), (c_side[0], c_side[3])):  # fields m of one side
            logits = [  # <W_Q e_m, W_K e_k> for k on either side: [F_k, F_m, H, C, T]
                torch.einsum("mhdct,khdct->kmhct", queries, keys).expand(-1, -1, -1, chunk, t)
                for keys in (q_side[1], c_side[1])
            ]
            alpha = torch.cat(logits, dim=0).softmax(dim=0)[:, :, :, None]  # [M, F_m, H, 1, C, T]
            e = torch.addcmul(residual, alpha[0], values[0])  # W_Res e_m + sum_k alpha_mk W_V e_k
            for a, v in zip(alpha[1:], values[1:], strict=True):
                e.addcmul_(a, v)
            out.append(e.relu_())
        return out[0], out[1]


class AutoInt(CtrRecommender):
    def __init__(self, cfg: AutoIntConfig) -> None:
        super().__init__(cfg)
        if cfg.d % cfg.heads:
            raise ValueError(f"d ({cfg.d}) must be a multiple of heads ({cfg.heads})")
        self.interacting = nn.ModuleList(
            InteractingLayer(cfg.d, cfg.heads, cfg.d // cfg.heads) for _ in range(cfg.layers)
        )
        fields = 2 * (1 + len(cfg.field_sizes)) + 1  # M: the query side's Fq = 1 + Fi, and Fi
        self.out = nn.Linear(fields * cfg.d, 1)  # w, b
        self.pair_width = fields * cfg.d
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.query_fields(self.emb, user, history).flatten(1)  # [T, Fq * D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        first, *rest = self.interacting
        q_side = first.project(h.view(len(h), 1, -1, self.cfg.d))  # the query fields' Q, K, V, R, once
        w_q, w_c = self.out.weight[0].split((h.shape[1], self.out.in_features - h.shape[1]))  # per side

        def pair_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [T, C] or [1, C]
            e_q, e_c = first.sides(q_side, self.item_fields(self.emb, ids))  # [F, H, d', C, T] each
            if not rest:  # w^T [e_1 ; ... ; e_M] straight from the layout
                y = w_q @ e_q.flatten(0, 2).flatten(1) + w_c @ e_c.flatten(0, 2).flatten(1)  # [C * T]
                return y.view(e_q.shape[-2:]).T + self.out.bias  # [T, C]
            x = torch.cat((e_q, e_c)).permute(4, 3, 0, 1, 2).flatten(-2)  # [T, C, M, H * d']
            for layer in rest:
                x = layer(x)
            return self.out(x.flatten(-2)).squeeze(-1)

        return self.score_items(items, pair_scores, rows=len(h))
