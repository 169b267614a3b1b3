"""Batches as torch tensors: what models take. Built from `Sequences` with vectorised NumPy gathers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ssrf.dataset.sequences import Sequences


@dataclass(frozen=True)
class SeqBatch:
    """A batch of left-padded interaction sequences (0 = padding everywhere)."""

    user: torch.Tensor  # [B] long
    items: torch.Tensor  # [B, L] long: input items, oldest first, the last column the most recent
    behaviors: torch.Tensor  # [B, L] long: behaviour of each input event
    targets: torch.Tensor | None = None  # [B, L] long: the item that follows each input position (0 = none)
    target_behaviors: torch.Tensor | None = None  # [B, L] long: the behaviour of that next event

    def to(self, device: torch.device | str) -> SeqBatch:
        move = {
            k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in self.__dict__.items()
        }
        return replace(self, **move)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def trimmed(self) -> SeqBatch:
        """Drop leading columns that are padding in every row (models see absolute positions from the
        right, so this changes no score)."""
        real = (self.items != 0).any(dim=0)
        if not bool(real.any()):
            return self
        first = int(real.float().argmax())
        if first == 0:
            return self
        cut = {
            k: (v[:, first:] if isinstance(v, torch.Tensor) and v.dim() == 2 else v)
            for k, v in self.__dict__.items()
        }
        return replace(self, **cut)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))


def train_batch(seqs: Sequences, chunks: np.ndarray, n: int) -> SeqBatch:
    """`chunks` [B, 3] (user, start, end): inputs are events start..end-2, targets start+1..end-1."""
    user, start, end = chunks[:, 0], chunks[:, 1], chunks[:, 2]
    idx = seqs.window(start, end, n + 1)  # [B, n + 1]
    items = seqs.gather(idx, seqs.items)
    behaviors = seqs.gather(idx, seqs.behaviors)
    inputs = idx[:, :-1]
    has_input = inputs >= 0
    return SeqBatch(
        user=_t(user),
        items=_t(items[:, :-1]),
        behaviors=_t(behaviors[:, :-1]),
        targets=_t(np.where(has_input, items[:, 1:], 0)),
        target_behaviors=_t(np.where(has_input, behaviors[:, 1:], 0)),
    )


def input_batch(seqs: Sequences, users: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int) -> SeqBatch:
    """The last n events of [start, end) for each user: the input for predicting what comes at `end`."""
    idx = seqs.window(starts, ends, n)
    return SeqBatch(
        user=_t(users), items=_t(seqs.gather(idx, seqs.items)), behaviors=_t(seqs.gather(idx, seqs.behaviors))
    )


def bucket_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of examples of similar length (less padding), in a shuffled order."""
    noise = rng.random(len(lengths))
    order = np.lexsort((noise, lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def item_mask(rows: list[np.ndarray], width: int, device: torch.device) -> torch.Tensor:
    """[B, width] bool with True at each row's listed columns."""
    out = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    if rows:
        r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
        c = np.concatenate(rows)
        out[torch.from_numpy(r).to(device), torch.from_numpy(c.astype(np.int64)).to(device)] = True
    return out
