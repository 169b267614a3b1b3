"""The pairwise-encoding CNN of CosRec (Yan et al., CIKM 2019), SSRF's CNN branch (the paper's 2.2).

X[a, b] = [e_a ; e_b] over the L x L grid of a window's item pairs, four convolutions (1x1, 3x3, 1x1, 3x3)
with batch norm and ReLU, a fully connected layer with dropout. `pairwise=False` is SSRF-O's 1-D variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PairwiseCNN(nn.Module):
    """X [B, 2d, L, L] -> T [B, d] (or, with pairwise=False, X [B, d, L] -> T)."""

    def __init__(
        self, d: int, window: int, channels: tuple[int, int], fc_dropout: float, pairwise: bool = True
    ) -> None:
        super().__init__()
        c1, c2 = channels
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if pairwise else (nn.Conv1d, nn.BatchNorm1d)
        size, layers = window, []
        for c_in, c_out, k in (
            (2 * d if pairwise else d, c1, 1),
            (c1, c1, 3),
            (c1, c2, 1),
            (c2, c2, 3),
        ):
            # paper: 3x3 without padding shrinks the grid (5 -> 3 -> 1); pad once it would vanish, or for 1-D
            pad = 0 if (k == 1 or (pairwise and size >= 3)) else 1
            size = size - k + 1 + 2 * pad
            layers += [conv(c_in, c_out, k, padding=pad), norm(c_out), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if pairwise else nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Sequential(nn.Linear(c2, d), nn.ReLU(), nn.Dropout(fc_dropout))
        self.pairwise = pairwise

    def grid(self, e: torch.Tensor) -> torch.Tensor:
        """The pairwise encoding X [B, 2D, L, L], X[:, :, a, b] = [e_a ; e_b] (built explicitly)."""
        b, length, d = e.shape
        x = e.transpose(1, 2)  # [B, D, L]
        return torch.cat(
            (x[:, :, :, None].expand(b, d, length, length), x[:, :, None, :].expand(b, d, length, length)),
            dim=1,
        )

    def first_layer(self, e: torch.Tensor) -> torch.Tensor:
        """The first (1x1) convolution over X without building X: W [e_a ; e_b] = W_1 e_a + W_2 e_b, so each
        item is projected once (2 L products instead of L^2) and the L x L grid is a broadcast sum."""
        conv = self.convs[0]
        d = e.shape[2]
        w = conv.weight.flatten(1)  # [C1, 2D]
        rows = e @ w[:, :d].T  # [B, L, C1]: W_1 e_a
        cols = e @ w[:, d:].T  # W_2 e_b
        y = rows[:, :, None, :] + (cols + conv.bias.to(cols.dtype))[:, None, :, :]  # [B, L, L, C1]
        return y.permute(0, 3, 1, 2)  # [B, C1, L, L]

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # e: [B, L, D]
        # SSRF-O: [B, D, L] through 1-D convolutions
        x, rest = (self.first_layer(e), self.convs[1:]) if self.pairwise else (e.transpose(1, 2), self.convs)
        for layer in rest:
            x = _as_linear(layer, x) if isinstance(layer, nn.Conv1d | nn.Conv2d) else layer(x)
        return self.fc(self.pool(x).flatten(1))  # [B, D]


def _as_linear(conv: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A convolution whose kernel covers its whole unpadded input (the last 3x3 on the 3x3 grid) is one
    product per sequence, [B, C * k * k] x [C * k * k, C_out]: the same numbers as the convolution, and on
    this project's CPU 1.8x (fp32) and 5.8x (bf16) faster forward and backward than mkldnn's convolution
    for this shape (benchmarks/cpu_kernels.py)."""
    covers = tuple(x.shape[2:]) == tuple(conv.kernel_size) and all(p == 0 for p in conv.padding)  # type: ignore[union-attr]
    if not covers:
        return conv(x)
    y = F.linear(x.flatten(1), conv.weight.flatten(1), conv.bias)  # [B, C_out]
    return y.reshape(*y.shape, *([1] * (x.dim() - 2)))
