"""Per-user, time-ordered event arrays and the examples cut from them (NumPy; no Polars past `build`).

Training examples are chunks of a user's training events: a chunk of length l <= n + 1 gives l - 1 inputs
and l - 1 targets (token t predicts token t + 1), so every training position is a target exactly once and
no target sees itself or anything after it. Chunks are cut from the end of the sequence and overlap by one
event. Evaluation examples end just before the evaluated period: their input is the last n events before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssrf.core import PAD_ID
from ssrf.dataset.artifacts import Prepared
from ssrf.dataset.prepare import TEST, TRAIN, VALID


@dataclass(frozen=True)
class Sequences:
    """All events, grouped by user (CSR) and ordered by time within a user."""

    ptr: np.ndarray  # [U + 2] int64: events of user u are ptr[u]:ptr[u + 1] (user 0 = padding, empty)
    items: np.ndarray  # [E] int64
    behaviors: np.ndarray  # [E] int64
    split: np.ndarray  # [E] int8
    item_fields: tuple[np.ndarray, ...]  # per context field, [N + 1, K] int64 (0-padded)
    n_users: int
    n_items: int
    n_behaviors: int
    field_sizes: tuple[int, ...]  # vocabulary size of each context field, padding included

    @classmethod
    def build(cls, data: Prepared) -> Sequences:
        ev = data.events  # sorted by user, time
        users = ev.get_column("user").to_numpy()
        counts = np.bincount(users, minlength=data.n_users + 1)
        ptr = np.zeros(data.n_users + 2, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        fields = []
        for f in data.fields:
            lists = data.items.sort("item").get_column(f).to_list()
            width = max(1, max((len(x) for x in lists), default=1))
            table = np.zeros((data.n_items + 1, width), dtype=np.int64)
            for i, ids in enumerate(lists, start=1):
                table[i, : len(ids)] = ids
            fields.append(table)
        return cls(
            ptr=ptr,
            items=ev.get_column("item").to_numpy().astype(np.int64),
            behaviors=ev.get_column("behavior").to_numpy().astype(np.int64),
            split=ev.get_column("split").to_numpy().astype(np.int8),
            item_fields=tuple(fields),
            n_users=data.n_users,
            n_items=data.n_items,
            n_behaviors=len(data.vocabs["behavior"]) - 1,
            field_sizes=tuple(len(data.vocabs[f"field:{f}"]) for f in data.fields),
        )

    def user_of(self, index: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ptr, index, side="right") - 1

    def train_chunks(self, n: int, until: int = TRAIN) -> np.ndarray:
        """[M, 3] (user, start, end) chunks over each user's events with split <= `until`, <= n + 1 long."""
        keep = self.split <= until
        out = []
        for u in range(1, self.n_users + 1):
            lo, hi = int(self.ptr[u]), int(self.ptr[u + 1])
            hi = lo + int(keep[lo:hi].sum())  # splits are time-ordered within a user
            end = hi
            while end - lo >= 2:
                start = max(lo, end - n - 1)
                out.append((u, start, end))
                end = start + 1
        return np.asarray(out, dtype=np.int64).reshape(-1, 3)

    def window(self, start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
        """[B, length] flat event indices of the last `length` events of [start, end), -1 = padding (left)."""
        idx = end[:, None] - length + np.arange(length)[None, :]
        return np.where(idx >= start[:, None], idx, -1)

    def gather(self, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, values[np.maximum(idx, 0)], PAD_ID)

    def eval_users(self, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Users evaluated on `split` (VALID or TEST), the end of their input (first event of that period)
        and the start of their events. The input is everything before the period, under both protocols
        (under leave-one-out the period is one event)."""
        n_rows = self.n_users + 1
        first = np.full(n_rows, -1, dtype=np.int64)
        pos = np.flatnonzero(self.split == split)
        uniq, at = np.unique(self.user_of(pos), return_index=True)  # pos is sorted: first occurrence wins
        first[uniq] = pos[at]
        u = np.flatnonzero((first >= 0) & (first > self.ptr[:n_rows]))  # needs an earlier event as input
        return u, first[u], self.ptr[u]

    def period_items(self, users: np.ndarray, split: int) -> list[np.ndarray]:
        """The distinct items of each user's `split` period."""
        out = []
        for u in users:
            lo, hi = self.ptr[u], self.ptr[u + 1]
            s = self.split[lo:hi]
            out.append(np.unique(self.items[lo:hi][s == split]))
        return out

    def items_before(self, users: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
        return [np.unique(self.items[self.ptr[u] : e]) for u, e in zip(users, ends, strict=True)]

    def train_counts(self) -> np.ndarray:
        """[N + 1] int64: training-period events of each item (no validation or test event counted)."""
        return np.bincount(self.items[self.split == TRAIN], minlength=self.n_items + 1)

    def items_through(self, users: np.ndarray, split: int) -> list[np.ndarray]:
        """The distinct items of each user's events up to and including the `split` period (validation
        never sees the test period's items)."""
        out = []
        for u in users:
            lo, hi = self.ptr[u], self.ptr[u + 1]
            out.append(np.unique(self.items[lo:hi][self.split[lo:hi] <= split]))
        return out


__all__ = ["TEST", "TRAIN", "VALID", "Sequences"]
