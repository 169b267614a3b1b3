"""Reference rules for the tables and figures: a random ranking (the floor) and a repeat rule (the user's own
items again, the bar a sequence model has to clear where people re-buy). With `pop` (models/pop.py) they are
the rows that involve no learning. Neither has a parameter: `fit` validates such a model once and keeps it as
it is (training/loop.py), so it goes through the same evaluation and run folder as every other model.

- `random`: the score of item i for user u is a pseudo-random number in [0, 1), a hash of (u, i, seed): the
  same in every batch, on every device and in every run, and unrelated to the data (AUC about 0.5). The
  hash is a 32-bit integer finaliser in the style of MurmurHash3's fmix32 (xor-shift, multiply, modulo 2^32),
  applied to the user and then to (user's hash + item), so neighbouring ids get unrelated scores and every
  user gets a different order. (A linear congruential step such as MINSTD alone would not do: for one user
  the scores of items i, i + 1, ... would be an arithmetic progression modulo its prime.)
- `repeat`: the items of the user's input window first, the most recent first, then every other item by
  training popularity, as `pop` ranks them. A history item scores 2^20 - age, where age is 0 for the latest
  event and one more per event further back (an item seen twice counts at its latest occurrence); any other
  item scores log1p(count) / (log1p(max count) + 1), in [0, 1), so below every history item. Items with equal
  counts tie (equal scores; the evaluator ranks a target pessimistically among its ties). The history is the
  last `max_len` events, hence a long default. Under `mask_history` (on for leave-one-out) the evaluator
  removes the history from the ranking and `repeat` reduces to `pop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.models.pop import ItemCounts

# helpers

MASK = 2**32 - 1  # arithmetic modulo 2^32, in int64: a product of a value below 2^32 and a constant below
# 2^31 stays below 2^63, so nothing overflows
RECENT = 2.0**20  # score of the latest history item; exact in float32 for any age below 2^20


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of [0, 2^32) that scatters neighbouring values (int64 in, int64 out)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & MASK
    return x ^ (x >> 16)


def uniform_hash(user: torch.Tensor, item: torch.Tensor, seed: int) -> torch.Tensor:
    """A number in [0, 1) for each (user, item) pair (int64 tensors that broadcast), a function of the pair
    and the seed alone; float32 with 24 random bits."""
    key = mix32((user + seed * 0x61C88647) & MASK)
    x = mix32((key + item) & MASK)
    return (x >> 8).float() / 2**24


# classes


@dataclass(frozen=True, kw_only=True)
class RandomConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused (the user id is hashed as it is); kept so every model is built the same way
    n_behaviors: int = 1  # unused
    field_sizes: tuple[int, ...] = ()  # unused
    field_widths: tuple[int, ...] = ()  # unused
    max_len: int = 50  # events per input window (the history itself is ignored)
    seed: int = 0  # another seed, another random ranking


class Random(SequentialRecommender):
    reads_history = False  # it reads the user id, never the sequence

    def __init__(self, cfg: RandomConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        """[T, 1] int64: the user id is the whole representation."""
        if positions is None:
            return batch.user[:, None]
        return batch.user[:, None].expand_as(batch.items)[positions][:, None]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            items = torch.arange(self.n_items + 1, device=h.device)[None, :]  # [1, N + 1]
        return uniform_hash(h, items, self.cfg.seed)  # [T, N + 1] or [T, C]


@dataclass(frozen=True, kw_only=True)
class RepeatConfig:
    n_items: int  # catalogue size (ids 1..n_items; 0 is padding)
    n_users: int = 0  # unused; kept so every model is built the same way
    n_behaviors: int = 1  # unused (every behaviour counts as an occurrence)
    field_sizes: tuple[int, ...] = ()  # unused
    field_widths: tuple[int, ...] = ()  # unused
    max_len: int = 200  # events of history read (the input window), long enough to cover most users


class Repeat(SequentialRecommender):
    def __init__(self, cfg: RepeatConfig) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, cfg.n_items
        self.popularity = ItemCounts(cfg.n_items)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """counts [N + 1]: training-period events of each item."""
        self.popularity.fill(counts)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        """[T, L] int64: the items up to and including each chosen position, left-padded so that the
        position's own item is in the last column."""
        if positions is None:
            return batch.items
        rows, cols = positions.nonzero(as_tuple=True)  # row-major, as the contract orders positions
        length = batch.items.shape[1]
        window = cols[:, None] - (length - 1) + torch.arange(length, device=cols.device)  # [T, L] columns
        return torch.where(window >= 0, batch.items[rows[:, None], window.clamp(min=0)], 0)

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        pop = self.popularity.log1p()
        pop = pop / (pop.max() + 1)  # [N + 1] in [0, 1)
        age = torch.arange(h.shape[1] - 1, -1, -1, device=h.device)  # [L]: 0 for the latest column
        recency = torch.where(h != 0, RECENT - age, 0.0).to(pop.dtype)  # [T, L]; padding scores 0 at column 0
        scores = pop.expand(h.shape[0], -1).scatter_reduce(1, h, recency, "amax")  # [T, N + 1]
        return scores if items is None else scores.gather(1, items)  # [T, C]
