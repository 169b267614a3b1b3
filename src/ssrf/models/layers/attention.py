"""Transformer pieces shared by SSRF's self-attention branch and SASRec."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(items: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool, True = may attend: earlier-or-same real positions; a padding row attends to itself
    (so no row is all-masked)."""
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=items.device)
    return ((causal & (items != 0)[:, None, :]) | eye)[:, None]


class SelfAttentionBlock(nn.Module):
    """Eq. 4-8: multi-head attention, residual + LayerNorm, feed-forward (ReLU), residual + LayerNorm."""

    def __init__(self, width: int, heads: int, dropout: float, pre_ln: bool, ffn: int = 0) -> None:
        super().__init__()
        ffn = ffn or width  # the feed-forward's inner width (the paper's: the model width)
        self.heads, self.dropout, self.pre_ln = heads, dropout, pre_ln
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)  # W^O
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, width))
        self.drop = nn.Dropout(dropout)

    def attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, w = x.shape
        q, k, v = (
            self.qkv(x).view(b, length, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        )  # [B,H,L,D/H]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, length, w)))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:  # x: [B, L, W], mask: [B, 1, L, L]
        if self.pre_ln:
            x = x + self.attend(self.ln1(x), mask)
            return x + self.drop(self.ffn(self.ln2(x)))
        x = self.ln1(x + self.attend(x, mask))  # eq. 6
        return self.ln2(x + self.drop(self.ffn(x)))  # eq. 7-8
