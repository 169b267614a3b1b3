"""BSARec (Shin et al., "An Attentive Inductive Bias for Sequential Recommendation beyond the
Self-Attention", AAAI 2024): each layer mixes an inductive-bias branch in the frequency domain with
self-attention, then a feed-forward network; an item's score is the dot product of the last position's
representation with the item's (shared) input embedding.

- Embedding: E = Dropout(LayerNorm(item + position)), over a fixed-length input of `max_len` items.
- Beyond self-attention (the "inductive bias"): X -> rFFT along the sequence; the lowest c frequencies are
  the low-pass part LFC(X), the rest the high-pass HFC(X) = X - LFC(X); the filtered sequence
  LFC(X) + beta * HFC(X), with a learned per-dimension beta = sqrt_beta^2, goes through dropout,
  residual and LayerNorm.
- Self-attention: causal multi-head attention, dropout, residual and LayerNorm.
- The layer's output alpha * (inductive bias) + (1 - alpha) * (self-attention), then the feed-forward
  network (GELU, dropout, residual and LayerNorm).

The Fourier filter is not causal: every position sees the whole input. As in the authors' training, where
every prefix of a user's sequence is a sample predicted from its last position, `hidden` at chosen positions
encodes the prefix ending at each of them (`layers.prefix`), so a target never sees itself or what follows.
The FFT always runs over `max_len` positions (inputs are left-padded to it, as the authors' are), so a
representation does not depend on how much padding a batch carries.

Details as in the authors' code (github.com/yehjin-shin/BSARec, src/model/bsarec.py and _modules.py):
`c` keeps c // 2 + 1 rFFT bins (the DC term and the c // 2 lowest frequencies: c bins of the full
spectrum for odd c), the FFT is orthonormal, LayerNorm eps is 1e-12, weights are N(0, 0.02) with zero
biases, sqrt_beta starts N(0, 1), padding positions carry their position embedding, and a padding row of
the attention attends to every position (their additive mask puts -10000 on all of such a row's keys).
Departures: the padding item's embedding is zero (theirs is a fixed random row), and the loss is the
trainer's choice (theirs is full-softmax ce). The samples are the trainer's: a target at position t of a
training chunk sees the chunk's items up to t, where theirs sees its last `max_len` items (the same for a
user with at most max_len + 1 training events, most of Beauty's); they train only on each user's last
`max_len` targets, the first of them predicted from an empty input, and the trainer on every target after
the first event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import TiedItemScores
from ssrf.models.layers.prefix import last_of_prefixes

Fraction = Annotated[float, pydantic.Field(ge=0, le=1, allow_inf_nan=False)]


@dataclass(frozen=True, kw_only=True)
class BSARecConfig:
    """Defaults: the authors' Beauty run (their README example and src/output/BSARec_Beauty_best.log: c 5,
    alpha 0.7, 1 head, over their defaults in src/utils.py; 878,208 parameters as there). It trained with
    Adam at lr 0.0005 on batches of 256 prefixes: train settings (`train.lr`), not options of the model."""

    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (BSARec has no user embedding); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused (BSARec sees item ids only)
    field_widths: tuple[int, ...] = ()  # unused
    d: int = 64  # hidden_size
    max_len: int = 50  # max_seq_length: items in the input, and the FFT's length
    blocks: int = 2  # num_hidden_layers
    heads: int = 1  # num_attention_heads (Beauty: 1; their default 2)
    dropout: float = 0.5  # hidden_dropout_prob: embeddings, filter, attention output, feed-forward
    attn_dropout: float = 0.5  # attention_probs_dropout_prob: on the attention weights
    ffn: int = 0  # feed-forward inner width (0: 4d, their fixed inner_size)
    c: int = 5  # frequency cut-off: the low-pass part keeps c // 2 + 1 rFFT bins (Beauty: 5; default 3)
    alpha: Fraction = 0.7  # weight of the inductive bias against self-attention (Beauty: 0.7; default 0.9)


def layer_norm(d: int) -> nn.LayerNorm:
    return nn.LayerNorm(d, eps=1e-12)  # the authors' TF-style LayerNorm


class FrequencyFilter(nn.Module):
    """The inductive bias: LFC(X) + beta * HFC(X) along the sequence, then dropout, residual, LayerNorm."""

    def __init__(self, d: int, c: int, dropout: float) -> None:
        super().__init__()
        self.bins = c // 2 + 1  # rFFT bins of the low-pass part
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, d))
        self.drop, self.ln = nn.Dropout(dropout), layer_norm(d)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(LFC(x), HFC(x)) of x [B, L, D]: the lowest frequencies along L, and the rest (they sum to x)."""
        spectrum = torch.fft.rfft(x.float(), dim=1, norm="ortho")  # fp32: cuFFT has no bf16
        low = torch.fft.irfft(spectrum[:, : self.bins], n=x.shape[1], dim=1, norm="ortho")  # rest zeroed
        return low, x - low

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.split(x)
        return low + self.sqrt_beta**2 * high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x + self.drop(self.filtered(x)))


class SelfAttention(nn.Module):
    """Multi-head attention over earlier real positions, then dropout, residual and LayerNorm."""

    def __init__(self, d: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.drop, self.ln = nn.Dropout(dropout), layer_norm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [B, L, D], mask [B, 1, L, L]
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, H, L, D / H]
        return self.ln(x + self.drop(self.proj(y.transpose(1, 2).reshape(b, length, d))))


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool, True = may attend: a real position sees the real positions up to itself; a
    padding position sees every position (the authors' mask masks all of its keys alike, which is none)."""
    length = items.shape[1]
    real = items != 0
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    return ((causal & real[:, None, :]) | ~real[:, :, None])[:, None]


class BSARecLayer(nn.Module):
    """alpha * inductive bias + (1 - alpha) * self-attention, then the feed-forward network."""

    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.alpha = cfg.alpha
        self.filter = FrequencyFilter(cfg.d, cfg.c, cfg.dropout)
        self.attention = SelfAttention(cfg.d, cfg.heads, cfg.dropout, cfg.attn_dropout)
        inner = cfg.ffn or 4 * cfg.d
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d, inner), nn.GELU(), nn.Linear(inner, cfg.d), nn.Dropout(cfg.dropout)
        )
        self.ln = layer_norm(cfg.d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.alpha * self.filter(x) + (1 - self.alpha) * self.attention(x, mask)
        return self.ln(h + self.ffn(h))


class BSARec(TiedItemScores):
    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d)
        self.emb_ln, self.drop = layer_norm(cfg.d), nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(BSARecLayer(cfg) for _ in range(cfg.blocks))
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode_last(self, batch: SeqBatch) -> torch.Tensor:
        """[B, D]: the representation at the last column of each (left-padded) input, run over max_len."""
        n, length = self.cfg.max_len, batch.items.shape[1]
        items = F.pad(batch.items, (n - length, 0)) if length < n else batch.items[:, -n:]  # [B, n]
        x = self.drop(self.emb_ln(self.item_emb(items) + self.pos_emb.weight))  # [B, n, D]
        mask = attention_mask(items)
        for layer in self.layers:
            x = layer(x, mask)
        return x[:, -1]

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            return self.encode_last(batch)  # [B, D]
        return last_of_prefixes(self.encode_last, batch, positions, self.cfg.max_len)  # [T, D]
