"""DIF-SR (Xie, Zhou & Kim, "Decoupled Side Information Fusion for Sequential Recommendation", SIGIR 2022):
side information enters the attention, not the input. The input of the self-attention stack is the item
embedding alone; inside every attention layer each source computes its own attention scores from its own
embedding, and the scores are fused before the softmax (the paper's DIF attention):

    item:       Q_I K_I^T,   Q_I = R W_Q^I,  K_I = R W_K^I    (R: the layer's input, from the item embeddings)
    attribute:  Q_j K_j^T,   Q_j = E_j W_Q^j, K_j = E_j W_K^j  (E_j: attribute j's embeddings, width attr_d)
    position:   Q_P K_P^T,   Q_P = P W_Q^P,  K_P = P W_K^P    (P: the position embeddings)
    att = softmax(F(item, attr_1 .. attr_m, position) / sqrt(d / heads)),   output = att (R W_V)

with the fusion F a sum, a linear layer over the concatenated score rows ("concat") or a gate, a softmax
over the sources of an MLP of each score row ("gate"). Values come from the items only, so side information
shapes where a position looks but not what it reads. Attribute embeddings are narrower than the items'
(attr_d), and E_j, P stay the same in every layer while R evolves. On top of the final representation h,
auxiliary attribute predictors (one linear layer per attribute, sigmoid over its vocabulary) predict the
TARGET item's attributes, a multi-label BCE weighted by lambda (`attr_loss_weight`) that `auxiliary_loss`
returns for the trainer to add to the next-item loss. An item scores h . M_item (the input item table).

As in the authors' code (github.com/AIM-SE/DIF-SR, recbole/model/sequential_recommender/sasrecd.py and
DIFMultiHeadAttention in recbole/model/layers.py, built on RecBole): post-LayerNorm blocks (eps 1e-12) with
a GELU feed-forward, LayerNorm and dropout on the item embeddings (no position added to the input), weights
~ N(0, 0.02), multi-valued attributes sum-pooled, the attribute loss the mean over the real attribute ids
(the padding column excluded). Departures, each forced by this project's contract or chosen for clarity:
- causal training on every position of left-padded sequences, positions counted from the right (RecBole
  trains on the last position of right-padded prefixes, positions from the left);
- "concat" and "gate" mix a whole score row, so before them the scores of keys a position may not see
  (later positions, padding) are set to 0, and a row shorter than max_len is zero-padded on the left: a
  position's representation then depends on earlier positions only, and trimming left padding changes
  nothing. In the authors' setting the masked keys are padding, whose raw scores were mixed in as they were;
- one attribute width `attr_d` and one weight lambda for every attribute (theirs: a list of each);
- the attribute tables are learned, as in the paper. The authors' RecBole fork keeps them in a plain dict
  (RecBole issue #1128), so there they stay at their N(0, 1) initialisation (the trainable-parameter count
  in their Beauty log leaves them out); they start from N(0, 1) here too. Their loss_type BPR has no
  attribute loss; here it is added whatever the trainer's loss.
Defaults are the authors' Amazon Beauty configuration (configs/Amazon_Beauty.yaml in their repository).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssrf.core import DataError, NonNegativeFloat
from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import TiedItemScores
from ssrf.models.layers.attention import causal_mask
from ssrf.models.layers.embeddings import ItemFields

LN_EPS = 1e-12  # layer_norm_eps (authors)
INIT_STD = 0.02  # initializer_range (authors)


@dataclass(frozen=True, kw_only=True)
class DIFSRConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (DIF-SR has no user embedding); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # vocabulary size (padding included) of each item attribute field
    field_widths: tuple[int, ...] = ()  # most values one item has in each field (multi-valued: pooled)
    d: int = 256  # hidden_size: item embeddings and the attention stack (Beauty: 256)
    attr_d: int = 64  # attribute_hidden_size: each attribute's embedding width (Beauty: [64])
    max_len: int = 50  # MAX_ITEM_LIST_LENGTH (Beauty: 50)
    blocks: int = 4  # n_layers (Beauty: 4)
    heads: int = 8  # n_heads (Beauty: 8); d and attr_d are split over them
    ffn: int = 256  # inner_size, the feed-forward's inner width (Beauty: 256; 0: d)
    dropout: float = 0.5  # hidden_dropout_prob: embeddings, attention output, feed-forward (Beauty: 0.5)
    attn_dropout: float = 0.3  # attn_dropout_prob: on the attention weights (Beauty: 0.3)
    fusion: Literal["sum", "concat", "gate"] = "gate"  # fusion_type (Beauty: gate)
    attr_loss_weight: NonNegativeFloat = 10.0  # lambda, lamdas (Beauty: [10]); 0: no attribute loss
    pooling: Literal["sum", "mean"] = "sum"  # pooling_mode of a multi-valued attribute (Beauty: sum)

    def __post_init__(self) -> None:
        d, heads = self.attr_d, self.heads
        if isinstance(d, int) and isinstance(heads, int) and heads > 0 and d % heads:
            raise DataError(
                f"model_options.attr_d = {d} with heads = {heads}: attr_d must be divisible by heads"
            )


class DecoupledAttention(nn.Module):
    """Multi-head DIF attention with the residual and LayerNorm after it: x [B, L, d] -> [B, L, d]."""

    def __init__(self, cfg: DIFSRConfig) -> None:
        super().__init__()
        d, n_fields, n = cfg.d, len(cfg.field_sizes), cfg.max_len
        self.heads, self.fusion, self.max_len = cfg.heads, cfg.fusion, n
        self.item_qkv = nn.Linear(d, 3 * d)  # W_Q^I, W_K^I, W_V^I
        self.pos_qk = nn.Linear(d, 2 * d)  # W_Q^P, W_K^P
        self.attr_qk = nn.ModuleList(nn.Linear(cfg.attr_d, 2 * cfg.attr_d) for _ in range(n_fields))
        sources = n_fields + 2  # the attributes, the item, the position (the authors' order)
        if cfg.fusion == "concat":  # each score row of every source, side by side -> one row
            self.fuse = nn.Linear(sources * n, n)
        elif cfg.fusion == "gate":  # energy of a source's score row; softmax over the sources
            self.gate = nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, 1))
        self.attn_drop = nn.Dropout(cfg.attn_dropout)
        self.proj = nn.Linear(d, d)  # W^O
        self.drop = nn.Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(d, eps=LN_EPS)

    def split(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """[..., L, parts * w] -> `parts` tensors [..., H, L, w / H]."""
        *lead, length, width = x.shape
        x = x.view(*lead, length, parts, self.heads, width // (parts * self.heads))
        return x.movedim(-3, 0).transpose(-3, -2).unbind(0)

    def scores(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        attrs: list[torch.Tensor],
        pos: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """The fused attention scores over sqrt(d / heads), before the mask and softmax: [B, H, L, L].
        q, k [B, H, L, d/H] the items' queries and keys, attrs a [B, L, attr_d] per attribute, pos [L, d]
        the position embeddings, mask [B, 1, L, L] (True: may attend)."""
        q_p, k_p = self.split(self.pos_qk(pos), 2)  # [H, L, d/H]: the same for every sequence
        item = q @ k.transpose(-1, -2)  # [B, H, L, L]
        position = q_p @ k_p.transpose(-1, -2)  # [H, L, L]
        attributes = []
        for qk, a in zip(self.attr_qk, attrs, strict=True):
            q_a, k_a = self.split(qk(a), 2)  # [B, H, L, attr_d/H]
            attributes.append(q_a @ k_a.transpose(-1, -2))  # [B, H, L, L]
        if self.fusion == "sum":
            fused = item + position
            for a in attributes:
                fused = fused + a
        else:
            s = torch.stack([*attributes, item, position.expand_as(item)], dim=-2)  # [B, H, L, S, L]
            s = s * mask[..., None, :]  # the scores of keys a position may not see: 0
            length = s.shape[-1]
            rows = F.pad(s, (self.max_len - length, 0))  # each row at its absolute (right-aligned) keys
            if self.fusion == "concat":
                fused = self.fuse(rows.flatten(-2))[..., -length:]
            else:
                weights = self.gate(rows).softmax(dim=-2)  # [B, H, L, S, 1]: a weight per source
                fused = (weights * s).sum(-2)
        return fused / (q.shape[-1] ** 0.5)

    def forward(
        self, x: torch.Tensor, attrs: list[torch.Tensor], pos: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.split(self.item_qkv(x), 3)  # [B, H, L, d/H]; the values: the items' only
        att = self.scores(q, k, attrs, pos, mask).masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (self.attn_drop(att) @ v).transpose(1, 2).reshape(b, length, d)
        return self.ln(x + self.drop(self.proj(y)))


class DIFBlock(nn.Module):
    """DIF attention, then the point-wise feed-forward (GELU), each with residual + LayerNorm (post-LN)."""

    def __init__(self, cfg: DIFSRConfig) -> None:
        super().__init__()
        self.attention = DecoupledAttention(cfg)
        inner = cfg.ffn or cfg.d
        self.ffn = nn.Sequential(nn.Linear(cfg.d, inner), nn.GELU(), nn.Linear(inner, cfg.d))
        self.drop = nn.Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(cfg.d, eps=LN_EPS)

    def forward(
        self, x: torch.Tensor, attrs: list[torch.Tensor], pos: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = self.attention(x, attrs, pos, mask)
        return self.ln(x + self.drop(self.ffn(x)))


class DIFSR(TiedItemScores):
    def __init__(self, cfg: DIFSRConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)  # M_item, also the output
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d)
        self.fields = ItemFields(cfg.n_items, cfg.field_sizes, cfg.field_widths, cfg.attr_d)  # E_j
        self.emb_ln, self.drop = nn.LayerNorm(cfg.d, eps=LN_EPS), nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DIFBlock(cfg) for _ in range(cfg.blocks))
        self.predictors = nn.ModuleList(nn.Linear(cfg.d, size) for size in cfg.field_sizes)  # attribute heads
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=INIT_STD)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for emb in self.fields.embs:
            nn.init.normal_(emb.weight)  # N(0, 1), as the authors' attribute tables start
        with torch.no_grad():
            for emb in (self.item_emb, *self.fields.embs):
                emb.weight[0].zero_()

    def set_item_fields(self, tables: list[torch.Tensor]) -> None:
        """Install the item -> attribute-id tables ([N + 1, K] each, 0-padded)."""
        self.fields.set_tables(tables)

    def attributes(self, items: torch.Tensor) -> list[torch.Tensor]:
        """E_j for each attribute j: [..., attr_d] per item, a multi-valued attribute sum- or mean-pooled."""
        out = []
        for i, emb in enumerate(self.fields.embs):
            ids = getattr(self.fields, f"item_field_{i}")[items]  # [..., K]
            e = emb(ids).sum(-2)  # the padding id embeds to 0
            if self.cfg.pooling == "mean":
                e = e / (ids != 0).sum(-1, keepdim=True).clamp(min=1)
            out.append(e)
        return out

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        items = batch.items
        length = items.shape[1]
        pos = self.pos_emb(torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=items.device))
        attrs = self.attributes(items)
        mask = causal_mask(items)
        x = self.drop(self.emb_ln(self.item_emb(items)))  # R^(0): the item embeddings alone
        for block in self.blocks:
            x = block(x, attrs, pos, mask)
        return x[:, -1] if positions is None else x[positions]  # [B, d] or [T, d]

    def attribute_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Unweighted sum over attributes of the multi-label BCE of predicting the target items' attribute
        ids from h [T, d]: the mean over rows and real ids (column 0, padding, left out)."""
        total = h.new_zeros((), dtype=torch.float32)
        for i, predictor in enumerate(self.predictors):
            logits = predictor(h).float()  # [T, |A_j|]
            ids = getattr(self.fields, f"item_field_{i}")[targets]  # [T, K]
            labels = torch.zeros_like(logits).scatter_(1, ids, 1.0)  # multi-hot of the target's attributes
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            total = total + bce[:, 1:].mean()
        return total

    def auxiliary_loss(
        self, batch: SeqBatch, positions: torch.Tensor, h: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        if not self.predictors or self.cfg.attr_loss_weight == 0:
            return None
        return self.cfg.attr_loss_weight * self.attribute_loss(h, targets)
