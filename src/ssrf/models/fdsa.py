"""FDSA (Zhang et al., "Feature-level Deeper Self-Attention Network for Sequential Recommendation",
IJCAI 2019): two causal self-attention stacks run side by side, one over the item sequence (item embedding
+ position) and one over the items' features (feature vector + position). Each item's feature vector is a
vanilla attention over its feature fields, alpha = softmax(W_f A + b_f) (eq. 1-2). The two outputs at the
current position are concatenated and fused, O_sf = W [O_s ; O_f] + b, and an item j scores O_sf . N_j with
the input item table N (eq. 11-12).

The features are the item's context fields (item -> field buffers filled by `set_item_fields`, as in SSRF);
a multi-valued field is mean-pooled before the attention over fields. Departure: the loss is the trainer's
choice. As in RecBole, the inputs of each stack pass through LayerNorm and dropout; the blocks are post-LN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.layers.attention import SelfAttentionBlock, causal_mask
from ssrf.models.layers.embeddings import ItemFields, init_weights


@dataclass(frozen=True, kw_only=True)
class FDSAConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (FDSA has no user embedding); kept so every model is built the same way
    n_behaviors: int = 1  # unused (features are the item's, not the event's)
    field_sizes: tuple[int, ...] = ()  # vocabulary size (padding included) of each item context field
    field_widths: tuple[int, ...] = ()  # most values one item has in each field (multi-valued: mean-pooled)
    d: int = 64  # hidden size of both streams
    max_len: int = 50  # items in the input sequence
    blocks: int = 2  # self-attention blocks in each stream
    heads: int = 1  # attention heads
    dropout: float = 0.5  # dropout on the stream inputs, attention and feed-forward


class Stream(nn.Module):
    """Tokens [B, L, D] (position already added) -> causal self-attention outputs [B, L, D]."""

    def __init__(self, cfg: FDSAConfig) -> None:
        super().__init__()
        self.ln, self.drop = nn.LayerNorm(cfg.d), nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(cfg.d, cfg.heads, cfg.dropout, pre_ln=False) for _ in range(cfg.blocks)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.ln(x))
        for block in self.blocks:
            x = block(x, mask)
        return x


class FDSA(SequentialRecommender):
    def __init__(self, cfg: FDSAConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        d = cfg.d
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.fields = ItemFields(cfg.n_items, cfg.field_sizes, cfg.field_widths, d)
        self.field_attn = nn.Linear(d, 1)  # W_f, b_f: vanilla attention over an item's fields
        self.pos_emb = nn.Embedding(cfg.max_len, d)  # shared by both streams
        self.item_stream, self.feature_stream = Stream(cfg), Stream(cfg)
        self.fuse = nn.Linear(2 * d, d)  # W, b
        self.apply(init_weights)

    def set_item_fields(self, tables: list[torch.Tensor]) -> None:
        """Install the item -> field-id tables ([N + 1, K] each, 0-padded)."""
        self.fields.set_tables(tables)

    def features(self, items: torch.Tensor) -> torch.Tensor:
        """Each item's feature vector: attention over its (mean-pooled) field embeddings. [..., D]"""
        if not self.cfg.field_sizes:
            return torch.zeros(
                *items.shape, self.cfg.d, device=items.device, dtype=self.item_emb.weight.dtype
            )
        a = self.fields.pooled(items)  # [..., F, D]
        alpha = self.field_attn(a).softmax(dim=-2)  # [..., F, 1]
        return (alpha * a).sum(-2)  # [..., D]

    def streams(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """O_s and O_f at every position: two [B, L, D], position t computed from positions <= t only."""
        items = batch.items
        length = items.shape[1]
        pos = self.pos_emb(torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=items.device))
        mask = causal_mask(items)
        o_s = self.item_stream(self.item_emb(items) + pos, mask)
        o_f = self.feature_stream(self.features(items) + pos, mask)
        return o_s, o_f

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        o_s, o_f = self.streams(batch)
        o = torch.cat((o_s, o_f), dim=-1)  # [B, L, 2D]
        o = o[:, -1] if positions is None else o[positions]  # [B, 2D] or [T, 2D]
        return self.fuse(o)  # O_sf: [., D]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return h @ self.item_emb.weight.T  # [T, N + 1]
        return (h[:, None, :] * self.item_emb(items)).sum(-1)  # [T, C]
