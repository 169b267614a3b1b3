"""SSRF: Self-focus Sequence Recommendation model for Fusion context information (Yu & Tian), as read in
shared/design/SSRF_MODEL.md.

Two parallel branches over a user's history, fused with a user embedding:
- CNN branch (the paper's 2.2, after CosRec): the last L items, pairwise-encoded into a 2d-channel L x L grid
  X[a, b] = [e_a ; e_b], four convolutions (1x1, 3x3, 1x1, 3x3) with batch norm and ReLU, then a fully
  connected layer with dropout: T in R^d.
- Self-attention branch (2.3): tokens [item ; context] + position over the last n interactions, p post-LN
  blocks of causal multi-head attention and a feed-forward layer (eq. 1-10); O_f = the current position's
  output, 2d wide.
- Fusion (2.4): O_cf = W [T ; O_f] + b, W in R^{3d x d}; y = W' [O_cf ; P_u] + b', W' in R^{|I| x 2d}
  (eq. 11-12): one output row and bias per item, not tied to the input table.

Ablations (3.7): `use_context=False` is SSRF-UC (tokens carry the item alone, d wide, W in R^{2d x d});
`pairwise=False` is SSRF-O (the CNN sees the plain L x d matrix, 1-D convolutions).
Departures, each an option beside the default: `pre_ln` (pre-LayerNorm blocks), `tie_output` (W' built
from the input item table and the item's context fields, so an item's output row shares what its input row
learns), `use_user=False` (no user embedding: P_u = 0), `user_dropout` (dropout on P_u),
`cnn_input_dropout` (dropout on the item embeddings the CNN sees, as the attention tokens have), `ffn` (the
feed-forward's inner width; SASRec's best on Beauty is 256 for 64-wide tokens), and
`use_cnn=False` (a diagnostic, not a model of the paper: the attention branch alone, T dropped from the
fusion). Every position of a sequence is scored in one pass: attention is causal and the CNN window of
position t ends at t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.layers.attention import SelfAttentionBlock, causal_mask
from ssrf.models.layers.conv import PairwiseCNN
from ssrf.models.layers.embeddings import ItemFields, ItemOutput, init_weights
from ssrf.models.layers.sequence import last_position, per_position, recent_windows


@dataclass(frozen=True, kw_only=True)
class SSRFConfig:
    n_items: int  # catalogue size |I| (ids 1..n_items; 0 is padding)
    n_users: int  # number of users (ids 1..n_users)
    n_behaviors: int = 1  # behaviour types (ids 1..n_behaviors)
    field_sizes: tuple[int, ...] = ()  # vocabulary size (padding included) of each item context field
    field_widths: tuple[int, ...] = ()  # most values one item has in each field (multi-valued: mean-pooled)
    d: int = 64  # embedding size (the paper's n_h)
    window: int = 5  # L: recent items in the pairwise-encoded CNN window
    max_len: int = 50  # n: interactions in the context sequence
    blocks: int = 2  # p: self-attention blocks
    heads: int = 2  # nh: attention heads
    conv_channels: tuple[int, int] = (128, 256)  # channels of the 1x1/3x3 pairs
    fc_dropout: float = 0.5  # dropout after the CNN's fully connected layer
    dropout: float = 0.2  # dropout on attention tokens, attention weights and feed-forward outputs
    use_context: bool = True  # False: SSRF-UC (no context information)
    pairwise: bool = True  # False: SSRF-O (no pairwise encoding)
    pre_ln: bool = False  # beyond the paper: pre-LayerNorm attention blocks
    tie_output: bool = False  # beyond the paper: W'_i = [E_I(i) ; i's context-field embedding], no free table
    use_user: bool = True  # False (beyond the paper): P_u = 0, the sequence alone scores the items
    user_dropout: float = 0.0  # beyond the paper: dropout on P_u
    cnn_input_dropout: float = 0.0  # beyond the paper: dropout on the CNN window's item embeddings
    ffn: int = 0  # beyond the paper: the feed-forward's inner width (0: the token width, as in the paper)
    use_cnn: bool = True  # False: diagnostic only (no CNN branch; W in R^{2d x d}); not an SSRF variant


class SSRF(SequentialRecommender):
    def __init__(self, cfg: SSRFConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        d = cfg.d
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.user_emb = nn.Embedding(cfg.n_users + 1, d)  # P_u
        width = 2 * d if cfg.use_context else d
        if cfg.use_context:
            self.behavior_emb = nn.Embedding(cfg.n_behaviors + 1, d, padding_idx=0)
            self.fields = ItemFields(cfg.n_items, cfg.field_sizes, cfg.field_widths, d)
        self.pos_emb = nn.Embedding(cfg.max_len, width)
        self.token_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(width, cfg.heads, cfg.dropout, cfg.pre_ln, ffn=cfg.ffn)
            for _ in range(cfg.blocks)
        )
        self.final_ln = nn.LayerNorm(width) if cfg.pre_ln else nn.Identity()
        cnn = PairwiseCNN(d, cfg.window, cfg.conv_channels, cfg.fc_dropout, cfg.pairwise)
        self.cnn = cnn if cfg.use_cnn else None
        self.cnn_drop, self.user_drop = nn.Dropout(cfg.cnn_input_dropout), nn.Dropout(cfg.user_dropout)
        self.fuse = nn.Linear((d if cfg.use_cnn else 0) + width, d)  # W in R^{3d x d} (2d x d for SSRF-UC)
        self.out = ItemOutput(cfg.n_items, 2 * d, free_rows=not cfg.tie_output)  # W', b'
        self.apply(init_weights)
        nn.init.zeros_(self.out.bias.weight)

    def set_item_fields(self, tables: list[torch.Tensor]) -> None:
        """Install the item -> context-id tables ([N + 1, K] each, 0-padded)."""
        if self.cfg.use_context:
            self.fields.set_tables(tables)

    def item_context(self, items: torch.Tensor) -> torch.Tensor:
        """The sum over context fields of each item's field embedding (multi-valued fields mean-pooled)."""
        if not self.cfg.use_context:
            return torch.zeros(
                *items.shape, self.cfg.d, device=items.device, dtype=self.item_emb.weight.dtype
            )
        return self.fields(items)  # [..., D]

    def context(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """c_i of each event: its item's context fields plus its behaviour type."""
        return self.behavior_emb(behaviors) + self.item_context(items)  # [B, L, D]

    def output_table(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """W' rows ([N + 1, 2D], or [..., 2D] for `items`)."""
        if self.out.rows is not None:
            return self.out.rows.weight if items is None else self.out.rows(items)
        ids = torch.arange(self.n_items + 1, device=self.item_emb.weight.device) if items is None else items
        return torch.cat((self.item_emb(ids), self.item_context(ids)), dim=-1)

    def attention(self, batch: SeqBatch) -> torch.Tensor:
        """O_f at every position: [B, L, W], position t computed from positions <= t only."""
        items = batch.items
        length = items.shape[1]
        tok = self.item_emb(items)
        if self.cfg.use_context:
            tok = torch.cat((tok, self.context(items, batch.behaviors)), dim=-1)  # [B, L, 2D]
        pos = torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=items.device)  # right-aligned
        x = self.token_drop(tok + self.pos_emb(pos))
        mask = causal_mask(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_ln(x)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        positions = last_position(batch.items) if positions is None else positions
        o_f = self.attention(batch)[positions]  # [T, W]
        if self.cnn is not None:
            window = self.item_emb(recent_windows(batch.items, positions, self.cfg.window))  # [T, L, D]
            t = self.cnn(self.cnn_drop(window))  # [T, D]
            o_f = torch.cat((t, o_f), dim=-1)
        o_cf = self.fuse(o_f)  # eq. 11
        if self.cfg.use_user:
            p_u = self.user_drop(self.user_emb(per_position(batch.user, positions)))
        else:
            p_u = torch.zeros_like(o_cf)  # P_u = 0
        return torch.cat((o_cf, p_u), dim=-1)  # [T, 2D]

    def scoring(self, h: torch.Tensor, items: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, W' rows) as eq. 12 uses them. Without a user embedding P_u = 0, so the rows' second half
        never contributes: both are cut to their first D columns, which halves the scoring product and, for
        tied rows, skips the items' context embeddings. Exact, not an approximation."""
        if self.cfg.use_user:
            return h, self.output_table(items)
        d = self.cfg.d
        if self.out.rows is not None:
            rows = self.out.rows.weight if items is None else self.out.rows(items)
            return h[:, :d], rows[..., :d]
        ids = torch.arange(self.n_items + 1, device=h.device) if items is None else items
        return h[:, :d], self.item_emb(ids)

    def output_shared(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h, rows = self.scoring(h, items)
        return h @ rows.T + self.out.bias(items).T  # [T, C]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        h, rows = self.scoring(h, items)
        return self.out(h, items, rows)  # eq. 12: [T, N + 1] or [T, C]
