"""Blocks two or more CTR models share: the fully connected tower and the FM pairwise identity."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def bi_interaction(v: torch.Tensor) -> torch.Tensor:
    """[..., D]: sum_{i<j} v_i * v_j over the fields v [..., F, D] in O(FD), as
    1/2 [(sum_i v_i)^2 - sum_i v_i^2] (FM's lemma 3.1 before the sum over D; NFM's bi-interaction)."""
    return 0.5 * (v.sum(-2).square() - v.square().sum(-2))


class MLP(nn.Module):
    """Fully connected layers, each Linear -> activation -> dropout: forward(x) = rest(first(x)).

    A model whose input is a concatenation [q ; c] of a query part and a candidate part splits the first
    layer, W [q ; c] + b = W_q q + (W_c c + b): each part is multiplied once (per row, per item) and a pair
    costs one addition, rest(q_part [T, 1, H] + c_part [., C, H])."""

    def __init__(
        self, width: int, hidden: tuple[int, ...], dropout: float, activation: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.first = nn.Linear(width, hidden[0])
        layers: list[nn.Module] = [activation(), nn.Dropout(dropout)]
        for a, b in itertools.pairwise(hidden):
            layers += [nn.Linear(a, b), activation(), nn.Dropout(dropout)]
        self.rest = nn.Sequential(*layers)
        self.width = hidden[-1]  # of the output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(x))

    def split(self, *widths: int) -> tuple[torch.Tensor, ...]:
        """The first layer's weight cut into the blocks W_i that multiply the input parts of these widths."""
        return self.first.weight.split(widths, dim=1)
