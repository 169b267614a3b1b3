"""DIN (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018): the user's
behaviours are pooled with weights that depend on the candidate ad, v_U(A) = sum_j a(e_j, v_A) e_j (eq. 3),
where the activation unit a is a small network over the behaviour, the ad and their interaction, and the
weights are not normalised by a softmax (so their sum keeps the intensity of the user's interest).
v_U(A) is concatenated with the user profile and the ad embedding and read by an MLP with PReLU (Fig. 2).

Framing (see `fields`): a behaviour is one of the last n items up to t and its goods embedding the
concatenation of its item and context-field embeddings (the paper: goods, shop and category ids); the ad is
the candidate, embedded the same way; the profile is the user embedding. The activation unit reads
[e_j ; v_A ; e_j - v_A ; e_j * v_A] (the authors' code; the paper's figure draws an out product), a
hidden layer of 36 PReLU units and a linear output; padded behaviours get weight 0.
Full ranking: a(e_j, v_A) depends only on the two goods, so each distinct behaviour of a batch of users
meets each candidate once; the MLP's first layer splits into its user, interest and candidate parts,
W_v v_U = sum_j a_j (W_v e_j). Departures: PReLU, not Dice; no mini-batch aware regularisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ssrf.models.ctr.fields import CtrConfig, CtrRecommender
from ssrf.models.ctr.layers import MLP


@dataclass(frozen=True, kw_only=True)
class DINConfig(CtrConfig):
    attention: int = 36  # hidden units of the activation unit (the paper's Fig. 2)
    hidden: tuple[int, ...] = (64, 32)  # hidden layers of the MLP over [profile ; v_U ; ad] (paper: 200, 80)
    dropout: float = 0.0  # dropout after each hidden layer (the paper regularises otherwise)


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of x [R, E] (gathered, so gradients flow) and each row's index among them."""
    distinct, inverse = torch.unique(x.detach(), dim=0, return_inverse=True)
    rows = torch.arange(len(x), device=x.device)
    first = torch.full((len(distinct),), len(x), device=x.device)
    return x[first.scatter_reduce_(0, inverse, rows, "amin")], inverse


class ActivationUnit(nn.Module):
    """a(e, v) = w^T PReLU(W [e ; v ; e - v ; e * v] + b) + b' for a behaviour e and an ad v. W is applied
    block by block, W [e ; v ; e - v ; e * v] = (W_e + W_diff) e + (W_v - W_diff) v + W_prod (e * v), so only
    the last block is computed per pair."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.width = width
        self.hidden = nn.Linear(4 * width, hidden)
        self.act = nn.PReLU()
        self.out = nn.Linear(hidden, 1)

    def blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w_e, w_v, w_diff, w_prod = self.hidden.weight.split(self.width, dim=1)
        return w_e + w_diff, w_v - w_diff, w_prod

    def forward(self, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """a for behaviours e [..., E] and ads v [..., E] that broadcast together: [...]."""
        w_e, w_v, w_prod = self.blocks()
        pre = e @ w_e.T + (v @ w_v.T + self.hidden.bias) + (e * v) @ w_prod.T
        return self.out(self.act(pre)).squeeze(-1)

    def against(self, e: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """a(e_r, v) for fixed behaviours e [R, E], as a function of ads v [C, E] -> [R, C]: W_prod (e * v) is
        (W_prod * e) v, one matrix product for a chunk of ads."""
        w_e, w_v, w_prod = self.blocks()
        e_part = (e @ w_e.T + self.hidden.bias).T[:, :, None]  # [A, R, 1]
        e_prod = (w_prod[:, None, :] * e).flatten(0, 1)  # W_prod * e: [A * R, E]

        def scores(v: torch.Tensor) -> torch.Tensor:
            pre = (e_prod @ v.T).view(-1, len(e), len(v))  # [A, R, C]
            pre += e_part
            pre += (v @ w_v.T).T[:, None]
            a = self.out.weight[0] @ self.act(pre).flatten(1)  # [R * C]
            return a.view(len(e), len(v)) + self.out.bias

        return scores


class DIN(CtrRecommender):
    def __init__(self, cfg: DINConfig) -> None:
        super().__init__(cfg)
        self.goods = (1 + len(cfg.field_sizes)) * cfg.d  # E: a goods embedding's width
        self.unit = ActivationUnit(self.goods, cfg.attention)
        self.mlp = MLP(cfg.d + 2 * self.goods, cfg.hidden, cfg.dropout, activation=nn.PReLU)
        self.out = nn.Linear(self.mlp.width, 1)
        self.reset_parameters()

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        goods = self.item_fields(self.emb, history).flatten(-2)  # behaviours e_j: [T, n, E]
        real = (history != 0).to(goods.dtype)  # [T, n]
        return torch.cat((self.emb.user(user), real, goods.flatten(1)), dim=1)  # [T, D + n + n * E]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        d, n = self.cfg.d, self.cfg.history
        profile, real, goods = h[:, :d], h[:, d : d + n], h[:, d + n :].view(len(h), n, self.goods)
        w_u, w_v, w_a = self.mlp.split(d, self.goods, self.goods)
        profile_part = (profile @ w_u.T)[:, None]  # [T, 1, H]
        interest_part = goods @ w_v.T  # W_v e_j: [T, n, H]

        def scores(a: torch.Tensor, ad: torch.Tensor) -> torch.Tensor:  # a(e_j, v_A) [T, n, C], v_A [., C, E]
            a = a * real[..., None]  # padded behaviours weigh nothing
            pre = profile_part + a.transpose(1, 2) @ interest_part + (ad @ w_a.T + self.mlp.first.bias)
            return self.out(self.mlp.rest(pre)).squeeze(-1)  # [T, C]

        if items is not None and (items.shape[0] > 1 or len(h) == 1):  # candidates of each row
            ad = self.item_fields(self.emb, items).flatten(-2)  # v_A: [T, C, E]
            return scores(self.unit(goods[:, :, None], ad[:, None]), ad)
        distinct, inverse = distinct_rows(goods.flatten(0, 1))  # [R, E], [T * n]
        attend = self.unit.against(distinct)  # each distinct behaviour meets each item once

        def chunk_scores(ids: torch.Tensor) -> torch.Tensor:  # ids [1, C], shared by every row
            ad = self.item_fields(self.emb, ids).flatten(-2)  # [1, C, E]
            return scores(attend(ad[0])[inverse].view(len(h), n, -1), ad)

        per_item = len(distinct) * self.cfg.attention + len(h) * (n + max(self.cfg.hidden))
        return self.catalogue(per_item, chunk_scores, items)
