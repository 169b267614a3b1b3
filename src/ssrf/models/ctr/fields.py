"""What the seven CTR models share: the fields of a next-item example, their embeddings, and scoring
candidates or the whole catalogue in bounded memory.

An example is position t of a user's sequence and a candidate item. Its fields, each one d-wide embedding:
- query side: the user; the history, i.e. the last n items up to and including t (a multi-valued field,
  mean-pooled over its real items); and per item context field, the history's values (each item's values
  mean-pooled, then the items' vectors mean-pooled). Position t never sees an item after t.
- candidate side: the item; and per context field, the item's values (mean-pooled when multi-valued).
History and candidate share the item table and each context field's table, as DIN shares its goods
embeddings; a model with first-order weights keeps a second, 1-wide set of the same tables.

`hidden` gathers the query side once per position; `output` scores candidates given as ids [T, C], or ids
[1, C] shared by every row (`output_shared`), or every item: the catalogue in chunks of ids [1, C]. A model
writes its pair scores so that both shapes broadcast, and splits each linear map over the concatenated
fields into a query part and a candidate part (W [q ; c] = W_q q + W_c c), so a candidate's part is computed
once per chunk, not once per row; a chunk's per-pair tensors stay within `PAIR_BUDGET` elements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.layers.embeddings import init_weights
from ssrf.models.layers.sequence import last_position, per_position, recent_windows

PAIR_BUDGET = 1 << 20  # elements of the per-pair tensors of one chunk of items (4 MB) ...
MIN_CHUNK = 64  # ... unless that leaves fewer items than this (matrix products need some width)
GRAD_BUDGET = 1 << 28  # per-pair elements a full-catalogue loss may keep for the backward pass (1 GB)


@dataclass(frozen=True, kw_only=True)
class CtrConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int  # number of users (ids 1..n_users)
    n_behaviors: int = 1  # unused (the fields are the user's and the items')
    field_sizes: tuple[int, ...] = ()  # vocabulary size (padding included) of each item context field
    field_widths: tuple[int, ...] = ()  # most values one item has in each field (multi-valued: mean-pooled)
    d: int = 64  # embedding size of every field
    history: int = 10  # n: the most recent items (up to and including position t) in the history fields
    max_len: int = 50  # events per training chunk (each position reads only its own last `history` items)


def pooled(emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """[..., W]: the mean of the rows of the non-zero ids [..., K] (zero when there are none)."""
    n = (ids != 0).sum(-1, keepdim=True).clamp(min=1)
    return emb(ids).sum(-2) / n


def pair_dot(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[T, C]: q [T, D] . c [T, C, D] per row, or against a chunk [1, C, D] shared by every row (one GEMM)."""
    if c.shape[0] == 1:
        return q @ c[0].T
    return torch.einsum("td,tcd->tc", q, c)


class FieldTables(nn.Module):
    """One `width`-wide table per kind of feature: users, items, and each item context field."""

    def __init__(self, cfg: CtrConfig, width: int) -> None:
        super().__init__()
        self.user = nn.Embedding(cfg.n_users + 1, width)
        self.item = nn.Embedding(cfg.n_items + 1, width, padding_idx=0)
        self.context = nn.ModuleList(nn.Embedding(s, width, padding_idx=0) for s in cfg.field_sizes)


class CtrRecommender(SequentialRecommender):
    """A CTR model over (user, recent history, candidate) fields. Subclasses define `query` (what `hidden`
    keeps of the query side, [T, W]) and `output`, which scores pairs through `score_items` (or `catalogue`)
    so that every item is scored in chunks."""

    cfg: CtrConfig
    pair_width: int = 1  # elements a (row, candidate) pair holds in the widest per-pair tensors (chunk sizes)

    def __init__(self, cfg: CtrConfig, first_order: bool = False) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.emb = FieldTables(cfg, cfg.d)
        self.first_order = FieldTables(cfg, 1) if first_order else None  # w_i of each feature
        for i, k in enumerate(cfg.field_widths):  # item -> context ids, filled by set_item_fields
            self.register_buffer(f"item_field_{i}", torch.zeros(cfg.n_items + 1, k, dtype=torch.long))

    def reset_parameters(self) -> None:
        """Embeddings ~ N(0, 1/width) with zero padding rows, linear layers Xavier; first-order weights 0."""
        self.apply(init_weights)
        if self.first_order is not None:
            for p in self.first_order.parameters():
                nn.init.zeros_(p)

    @property
    def item_emb(self) -> nn.Embedding:  # the name every model of the zoo gives its item table
        return self.emb.item

    @property
    def user_emb(self) -> nn.Embedding:
        return self.emb.user

    def set_item_fields(self, tables: Sequence[torch.Tensor]) -> None:
        """Install the item -> context-id tables ([N + 1, K] each, 0-padded)."""
        for i, t in enumerate(tables):
            getattr(self, f"item_field_{i}").copy_(t)

    def item_fields(self, tables: FieldTables, items: torch.Tensor) -> torch.Tensor:
        """[..., Fi, W]: an item's own field and its context fields (Fi = 1 + number of context fields)."""
        out = [tables.item(items)]
        for i, emb in enumerate(tables.context):
            out.append(pooled(emb, getattr(self, f"item_field_{i}")[items]))
        return torch.stack(out, dim=-2)

    def query_fields(self, tables: FieldTables, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[T, Fq, W]: the user, then the history's item field and context fields mean-pooled over its real
        items (Fq = 1 + Fi)."""
        real = (history != 0)[..., None, None]  # [T, n, 1, 1]
        fields = self.item_fields(tables, history) * real  # [T, n, Fi, W]
        pooled_history = fields.sum(1) / real.sum(1).clamp(min=1)  # [T, Fi, W]
        return torch.cat((tables.user(user)[:, None], pooled_history), dim=1)

    def query(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[T, W]: what the model keeps of the query side for the users [T] and histories [T, n]."""
        raise NotImplementedError

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        positions = last_position(batch.items) if positions is None else positions
        history = recent_windows(batch.items, positions, self.cfg.history)  # [T, n], ending at t
        return self.query(per_position(batch.user, positions), history)

    def output_shared(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[T, C] scores of candidates `items` [C] shared by every row: the catalogue's path over them."""
        return self.output(h, items[None])

    def score_items(
        self, items: torch.Tensor | None, pair_scores: Callable[[torch.Tensor], torch.Tensor], rows: int
    ) -> torch.Tensor:
        """pair_scores for candidates [T, C]; every item [T, N + 1] when None, or candidates shared by every
        row [1, C], go through `catalogue`."""
        if items is not None and (items.shape[0] > 1 or rows == 1):
            return pair_scores(items)
        return self.catalogue(rows * self.pair_width, pair_scores, items)

    def catalogue(
        self,
        per_item: int,
        pair_scores: Callable[[torch.Tensor], torch.Tensor],
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[T, C]: pair_scores(chunk [1, C']) -> [T, C'] over ids [1, C] shared by every row (by default every
        item, [1, N + 1]), in chunks of items whose per-pair tensors hold `per_item` elements for each item
        (PAIR_BUDGET in all, at least MIN_CHUNK items)."""
        if ids is None:
            ids = torch.arange(self.n_items + 1, device=self.emb.item.weight.device)[None]
        elements = per_item * ids.shape[1]
        if torch.is_grad_enabled() and elements > GRAD_BUDGET:
            raise ValueError(
                f"{type(self).__name__} scores each (position, item) pair through its own layers: a loss "
                f"over {ids.shape[1]} items per position would keep about {elements * 4 / 2**30:.0f} GB for "
                f'the backward pass; train it with loss="bce" (a few sampled negatives)'
            )
        if torch.is_grad_enabled():  # the backward pass keeps every chunk anyway: one is fastest
            return pair_scores(ids)
        chunk = max(MIN_CHUNK, PAIR_BUDGET // max(1, per_item))
        return torch.cat([pair_scores(ids[:, lo : lo + chunk]) for lo in range(0, ids.shape[1], chunk)], 1)
