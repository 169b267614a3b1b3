"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence; an item's score is the
dot product of the sequence representation with its (shared) input embedding.

As in the authors' code: pre-LayerNorm blocks with a final LayerNorm, learned positions, embeddings scaled
by sqrt(d), dropout on the embeddings and inside the blocks. `pre_ln=False` is RecBole's variant instead:
LayerNorm on the summed embeddings (no sqrt(d) scaling), post-LayerNorm blocks, no final LayerNorm.
The loss is the trainer's choice (the paper used bce with one negative; full-softmax ce gives today's
stronger published numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import TiedItemScores
from ssrf.models.layers.attention import SelfAttentionBlock, causal_mask


@dataclass(frozen=True, kw_only=True)
class SASRecConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (SASRec has no user embedding); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused (SASRec sees item ids only)
    field_widths: tuple[int, ...] = ()  # unused
    d: int = 64  # hidden size
    max_len: int = 50  # n: items in the input sequence
    blocks: int = 2  # self-attention blocks
    heads: int = 1  # attention heads
    dropout: float = (
        0.5  # dropout on embeddings, attention and feed-forward (0.5 for sparse data like Beauty)
    )
    ffn: int = 0  # feed-forward inner width (0: d, as in the paper; RecBole's inner_size defaults to 4d)
    pre_ln: bool = True  # True: the authors' pre-LN blocks; False: RecBole's embedding LN + post-LN blocks


class SASRec(TiedItemScores):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(cfg.d, cfg.heads, cfg.dropout, pre_ln=cfg.pre_ln, ffn=cfg.ffn)
            for _ in range(cfg.blocks)
        )
        self.final_ln = nn.LayerNorm(cfg.d) if cfg.pre_ln else nn.Identity()
        self.emb_ln = nn.Identity() if cfg.pre_ln else nn.LayerNorm(cfg.d)
        self.scale = cfg.d**0.5 if cfg.pre_ln else 1.0
        nn.init.normal_(self.item_emb.weight, std=cfg.d**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=cfg.d**-0.5 * self.scale)  # as large as a scaled item row
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        items = batch.items
        length = items.shape[1]
        pos = torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=items.device)  # right-aligned
        x = self.drop(self.emb_ln(self.item_emb(items) * self.scale + self.pos_emb(pos)))  # [B, L, D]
        x = x * (items != 0)[..., None]
        mask = causal_mask(items)
        for block in self.blocks:
            x = block(x, mask)
        x = self.final_ln(x)
        return x[:, -1] if positions is None else x[positions]  # [B, D] or [T, D]
