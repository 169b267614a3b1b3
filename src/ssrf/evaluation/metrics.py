"""Ranking metrics as pure functions on torch tensors (paper 3.2; SSRF_MODEL.md "Evaluation protocols").

Every function takes the batch (users) dimension first and returns one value per user, on the input's device;
the caller averages (skipping NaN, which marks a user the metric is undefined for). Floating results are
float64. Columns the caller wants out of a ranking are set to -inf in `scores` beforehand.

- leave-one-out protocol: `target_ranks` -> `hit_rate_at_k`, `ndcg_at_k`, `mrr`;
- the paper's protocol: `precision_recall_at_k` (eq. 16-17), `auc` (eq. 14), `rela_impr` (eq. 15).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "auc",
    "hit_rate_at_k",
    "mrr",
    "ndcg_at_k",
    "precision_recall_at_k",
    "rela_impr",
    "target_ranks",
]


def _check_scores(scores: Tensor) -> None:
    if scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating [B, C] tensor, got {scores.dtype} {tuple(scores.shape)}")


def _check_mask(name: str, mask: Tensor, scores: Tensor) -> None:
    if mask.dtype != torch.bool or mask.shape != scores.shape:
        raise ValueError(
            f"{name} must be a bool tensor of shape {tuple(scores.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """0-based rank of each row's target column, pessimistic on ties.

    rank_b = |{c != target_b : scores[b, c] >= scores[b, target_b]}|, so a row of equal scores gives
    rank C - 1 (never 0) and -inf (masked) columns never count against a finite target.

    Args:
        scores: [B, C] floating scores; masked columns already set to -inf.
        target: [B] long column indices.

    Returns:
        [B] long ranks in [0, C - 1].

    Raises:
        ValueError: on bad shapes/dtypes, a target out of [0, C), or a target whose score is -inf or NaN
            (a masked target is the caller's bug).
    """
    _check_scores(scores)
    if target.shape != scores.shape[:1] or target.dtype != torch.long:
        raise ValueError(
            f"target must be a long tensor of shape ({scores.shape[0]},), "
            f"got {target.dtype} {tuple(target.shape)}"
        )
    if target.numel() and bool(((target < 0) | (target >= scores.shape[1])).any()):
        raise ValueError(f"target column out of range [0, {scores.shape[1]})")
    t = scores.gather(1, target.unsqueeze(1))  # [B, 1]
    if bool((torch.isnan(t) | (t == float("-inf"))).any()):
        raise ValueError("a target's score is -inf or NaN: the target must not be masked")
    return (scores >= t).sum(dim=1) - 1  # minus the target itself


def hit_rate_at_k(ranks: Tensor, k: int) -> Tensor:
    """HR@K per user: 1.0 if rank < k else 0.0 (a single relevant item)."""
    _check_k(k)
    return (ranks < k).to(torch.float64)


def ndcg_at_k(ranks: Tensor, k: int) -> Tensor:
    """NDCG@K per user with a single relevant item: 1 / log2(rank + 2) if rank < k else 0 (IDCG = 1)."""
    _check_k(k)
    gain = 1.0 / torch.log2(ranks.to(torch.float64) + 2.0)
    return torch.where(ranks < k, gain, torch.zeros_like(gain))


def mrr(ranks: Tensor) -> Tensor:
    """Reciprocal rank per user: 1 / (rank + 1) (averaged by the caller into MRR)."""
    return 1.0 / (ranks.to(torch.float64) + 1.0)


def precision_recall_at_k(scores: Tensor, relevant: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Pre@K and Rec@K per user (paper eq. 16-17, denominators as SSRF_MODEL.md reads them).

    L_r = the k top-scored columns (torch.topk; order among equal scores is topk's), L_t = relevant columns:
    Pre@K = |L_t ∩ L_r| / k and Rec@K = |L_t ∩ L_r| / |L_t|. Both are NaN for a row with no relevant column.

    Args:
        scores: [B, C] floating scores; masked columns already set to -inf.
        relevant: [B, C] bool, True for the columns in L_t.
        k: list length, 1 <= k <= C.

    Returns:
        (precision, recall), each [B] float64.
    """
    _check_scores(scores)
    _check_mask("relevant", relevant, scores)
    _check_k(k)
    if k > scores.shape[1]:
        raise ValueError(f"k={k} exceeds the number of columns {scores.shape[1]}")
    top = scores.topk(k, dim=1).indices  # [B, k]
    hits = relevant.gather(1, top).sum(dim=1).to(torch.float64)
    n_rel = relevant.sum(dim=1).to(torch.float64)
    nan = torch.full_like(hits, math.nan)
    precision = torch.where(n_rel > 0, hits / k, nan)
    recall = torch.where(n_rel > 0, hits / n_rel.clamp(min=1.0), nan)
    return precision, recall


def auc(scores: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
    """Per-user AUC (paper eq. 14), exact over all (positive, negative) pairs.

    AUC_u = (1 / (P N)) * sum_{i positive, j negative} [ 1(s_i > s_j) + 1/2 * 1(s_i == s_j) ].
    The paper's delta(s_i > s_j) is strict; counting a tie as 1/2 (so a constant-score model scores 0.5,
    not 0) is the one place this differs from eq. 14. Computed by comparing each row's positives with all its
    columns in chunks of positives (at most ~16M comparisons at once): linear in C, no sort.
    Columns in neither mask are ignored.

    Args:
        scores: [B, C] floating scores (no NaN in the positive or negative columns).
        positive: [B, C] bool, the test items (i in E(u)).
        negative: [B, C] bool, items the user never touched (j in E(u)); disjoint from `positive`.

    Returns:
        [B] float64; NaN for a row with no positive or no negative.
    """
    _check_scores(scores)
    _check_mask("positive", positive, scores)
    _check_mask("negative", negative, scores)
    if bool((positive & negative).any()):
        raise ValueError("a column is both positive and negative")
    if bool((torch.isnan(scores) & (positive | negative)).any()):
        raise ValueError("NaN score in a positive or negative column")
    n_neg = negative.sum(dim=1)  # [B]
    n_pos = positive.sum(dim=1)
    width = max(int(n_pos.max()), 1) if n_pos.numel() else 1
    # the positives' scores, gathered to [B, P] (P = most positives in a row; padding never counts)
    order = positive.to(torch.int8).topk(width, dim=1).indices  # positives first (then any filler)
    pos_scores = scores.gather(1, order)  # [B, P]
    pos_real = positive.gather(1, order)  # [B, P]
    neg_scores = torch.where(negative, scores, torch.full_like(scores, math.nan))  # NaN never compares
    half_wins = torch.zeros(scores.shape[0], dtype=torch.float64, device=scores.device)
    step = max(1, (1 << 24) // max(scores.numel(), 1))  # bound the [B, p, C] comparison to ~16M cells
    for lo in range(0, width, step):
        p = pos_scores[:, lo : lo + step, None]  # [B, p, 1]
        wins = (neg_scores[:, None, :] < p).sum(-1) * 2 + (neg_scores[:, None, :] == p).sum(-1)  # [B, p]
        half_wins += torch.where(pos_real[:, lo : lo + step], wins, 0).sum(1).to(torch.float64)
    pairs = (n_pos * n_neg).to(torch.float64)
    out = half_wins / (2.0 * pairs.clamp(min=1.0))
    return torch.where(pairs > 0, out, torch.full_like(out, math.nan))


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr (paper eq. 15): (auc_model - 0.5) / (auc_base - 0.5) - 1; 0 for the base model itself."""
    if auc_base == 0.5:
        raise ValueError("auc_base is 0.5 (random): RelaImpr is undefined")
    return (auc_model - 0.5) / (auc_base - 0.5) - 1.0
