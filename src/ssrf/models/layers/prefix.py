"""Causality by construction for models whose encoder is not causal (BSARec's Fourier filter mixes every
position): each selected position gets its own input, the prefix that ends there, and is read off that
input's last column. This is how such models are trained by their authors (every prefix of a sequence is a
sample, predicted from its last position), and it meets the contract of `SequentialRecommender.hidden`
(a position never sees later ones) whatever the encoder does within a prefix.

It costs one encoder pass per selected position instead of one per sequence, so the prefixes run in chunks
of at most `max_tokens` positions; under autograd each chunk is checkpointed (its activations recomputed in
the backward), so memory stays bounded by one chunk rather than growing with the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from ssrf.dataset.batches import SeqBatch
from ssrf.models.layers.sequence import per_position, recent_windows

MAX_TOKENS = 1 << 17  # prefix positions per chunk: [P, L, 64] fp32 activations of ~32 MiB each


def prefixes(batch: SeqBatch, positions: torch.Tensor, length: int) -> SeqBatch:
    """For every True (b, t) of `positions` [B, L], in row-major order: items[b, :t + 1] and its behaviours
    right-aligned in `length` columns (the last `length` of them; left-padded with 0), and the user b."""
    return SeqBatch(
        user=per_position(batch.user, positions),
        items=recent_windows(batch.items, positions, length),
        behaviors=recent_windows(batch.behaviors, positions, length),
    )


def last_of_prefixes(
    encode_last: Callable[[SeqBatch], torch.Tensor],
    batch: SeqBatch,
    positions: torch.Tensor,
    length: int,
    max_tokens: int = MAX_TOKENS,
) -> torch.Tensor:
    """[T, D]: `encode_last` ([P, length] prefixes -> [P, D] representations at their last column) of the
    prefix ending at each True entry of `positions` [B, L], row-major: `SequentialRecommender.hidden` of a
    model that encodes whole inputs at once."""
    inputs = prefixes(batch, positions, length)
    if not len(inputs):  # nothing selected: [0, D] from one padding row (MKL's FFT rejects an empty batch)
        pad = torch.zeros(1, length, dtype=torch.long, device=batch.items.device)
        return encode_last(SeqBatch(user=pad[:, 0], items=pad, behaviors=pad))[:0]
    rows = max(1, max_tokens // length)
    if len(inputs) <= rows:
        return encode_last(inputs)
    out = []
    for start in range(0, len(inputs), rows):
        part = SeqBatch(
            user=inputs.user[start : start + rows],
            items=inputs.items[start : start + rows],
            behaviors=inputs.behaviors[start : start + rows],
        )
        if torch.is_grad_enabled():  # the dropout masks are replayed in the recomputation
            out.append(checkpoint(encode_last, part, use_reentrant=False))
        else:
            out.append(encode_last(part))
    return torch.cat(out)
