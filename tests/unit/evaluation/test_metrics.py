"""Metrics against values worked out by hand (CONVENTIONS.md 13); the fast AUC against a naive pair loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from ssrf.evaluation.metrics import (
    auc,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision_recall_at_k,
    rela_impr,
    target_ranks,
)

INF = math.inf
NAN = math.nan


def f64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- target_ranks


def test_target_ranks_by_hand_with_ties() -> None:
    # one row, columns 0..4:       0    1    2    3    4
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5, 0.2]] * 4)
    target = torch.tensor([3, 2, 0, 1])
    # target 3 (0.5): other columns >= 0.5 -> {1} (the tie counts against it)    -> rank 1
    # target 2 (0.3): {1, 3}                                                     -> rank 2
    # target 0 (0.1): {1, 2, 3, 4}                                               -> rank 4
    # target 1 (0.5): {3}                                                        -> rank 1
    ranks = target_ranks(scores, target)
    assert ranks.dtype == torch.long
    assert ranks.tolist() == [1, 2, 4, 1]


def test_target_ranks_constant_scores_is_worst_rank() -> None:
    # C = 5 equal scores: the 4 other columns all tie with the target -> rank C - 1 = 4, whatever the target
    scores = torch.zeros(5, 5)
    assert target_ranks(scores, torch.arange(5)).tolist() == [4, 4, 4, 4, 4]


def test_target_ranks_masked_columns_do_not_count() -> None:
    # columns: 0 (masked), 1 = 0.2 (target), 2 = 0.9, 3 = 0.2 (tie), 4 (masked)
    # other columns >= 0.2: {2, 3} -> rank 2; the two -inf columns never count
    scores = torch.tensor([[-INF, 0.2, 0.9, 0.2, -INF]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [2]
    # a +inf target (e.g. a forced item) beats every finite column: rank 0
    assert target_ranks(torch.tensor([[1.0, INF, 2.0]]), torch.tensor([1])).tolist() == [0]


@pytest.mark.parametrize("bad", [-INF, NAN])
def test_target_ranks_rejects_masked_or_nan_target(bad: float) -> None:
    scores = torch.tensor([[0.3, bad, 0.1], [0.3, 0.2, 0.1]])
    with pytest.raises(ValueError, match="target"):
        target_ranks(scores, torch.tensor([1, 1]))


@pytest.mark.parametrize(
    "target",
    [torch.tensor([3]), torch.tensor([-1]), torch.tensor([1, 1]), torch.tensor([1], dtype=torch.int32)],
)
def test_target_ranks_rejects_bad_target(target: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="target"):
        target_ranks(torch.tensor([[0.3, 0.2, 0.1]]), target)


# ---------------------------------------------------------------- HR / NDCG / MRR


def test_hr_ndcg_mrr_by_hand() -> None:
    ranks = torch.tensor([0, 1, 2, 9, 10])
    # HR@10: rank < 10 -> 1, 1, 1, 1, 0
    assert_close(hit_rate_at_k(ranks, 10), f64([1.0, 1.0, 1.0, 1.0, 0.0]))
    # NDCG@10 = 1/log2(rank + 2): 1/log2(2) = 1, 1/log2(3) = 0.63093, 1/log2(4) = 0.5,
    # 1/log2(11) = 0.28906, and 0 for rank 10 (outside the top 10)
    assert_close(ndcg_at_k(ranks, 10), f64([1.0, 0.6309297535714575, 0.5, 0.2890648263178879, 0.0]))
    # MRR = 1/(rank + 1): 1, 1/2, 1/3, 1/10, 1/11
    assert_close(mrr(ranks), f64([1.0, 0.5, 1 / 3, 0.1, 1 / 11]))
    # k = 1: only rank 0 counts
    assert_close(hit_rate_at_k(ranks, 1), f64([1.0, 0.0, 0.0, 0.0, 0.0]))
    assert_close(ndcg_at_k(ranks, 1), f64([1.0, 0.0, 0.0, 0.0, 0.0]))


def test_rank_metrics_from_target_ranks_end_to_end() -> None:
    # scores 0.1 0.5 0.3 0.5 0.2, target column 3 (0.5) ties with column 1 -> pessimistic rank 1
    # HR@1 = 0, HR@2 = 1, NDCG@2 = 1/log2(3), MRR = 1/2
    ranks = target_ranks(torch.tensor([[0.1, 0.5, 0.3, 0.5, 0.2]]), torch.tensor([3]))
    assert_close(hit_rate_at_k(ranks, 1), f64([0.0]))
    assert_close(hit_rate_at_k(ranks, 2), f64([1.0]))
    assert_close(ndcg_at_k(ranks, 2), f64([1 / math.log2(3)]))
    assert_close(mrr(ranks), f64([0.5]))


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_rank_metrics_reject_bad_k(k: object) -> None:
    ranks = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="k"):
        hit_rate_at_k(ranks, k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k"):
        ndcg_at_k(ranks, k)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Pre@K / Rec@K


def test_precision_recall_by_hand() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],
            [0.9, 0.8, 0.7, 0.6, 0.5],
            [0.1, 0.2, 0.3, 0.4, 0.5],
        ]
    )
    relevant = torch.tensor(
        [
            [False, True, False, True, True],  # L_t = {1, 3, 4}
            [False, False, False, False, False],  # no relevant item -> NaN, NaN
            [True, False, False, False, False],  # L_t = {0}, which is ranked last
        ]
    )
    # k = 2: row 0 L_r = {0, 1}, |L_t ∩ L_r| = |{1}| = 1 -> Pre = 1/2, Rec = 1/3
    #        row 2 L_r = {4, 3}, no hit -> Pre = 0, Rec = 0
    pre, rec = precision_recall_at_k(scores, relevant, 2)
    assert_close(pre, f64([0.5, NAN, 0.0]), equal_nan=True)
    assert_close(rec, f64([1 / 3, NAN, 0.0]), equal_nan=True)
    # k = 4: row 0 L_r = {0, 1, 2, 3}, hits {1, 3} -> Pre = 2/4, Rec = 2/3
    #        row 2 L_r = {4, 3, 2, 1}, no hit -> 0, 0
    pre, rec = precision_recall_at_k(scores, relevant, 4)
    assert_close(pre, f64([0.5, NAN, 0.0]), equal_nan=True)
    assert_close(rec, f64([2 / 3, NAN, 0.0]), equal_nan=True)
    # k = 5 = C: everything is recommended -> Pre = |L_t| / 5, Rec = 1
    pre, rec = precision_recall_at_k(scores, relevant, 5)
    assert_close(pre, f64([3 / 5, NAN, 1 / 5]), equal_nan=True)
    assert_close(rec, f64([1.0, NAN, 1.0]), equal_nan=True)


def test_precision_recall_masked_columns_are_not_recommended() -> None:
    # columns 0 and 1 are masked (-inf); L_t = {1, 2}; k = 2 -> L_r = {3, 2}: one hit (2)
    # Pre = 1/2, Rec = 1/2 (the masked relevant column 1 still counts in |L_t|)
    scores = torch.tensor([[-INF, -INF, 0.4, 0.6]])
    relevant = torch.tensor([[False, True, True, False]])
    pre, rec = precision_recall_at_k(scores, relevant, 2)
    assert_close(pre, f64([0.5]))
    assert_close(rec, f64([0.5]))


def test_precision_recall_rejects_bad_input() -> None:
    scores = torch.tensor([[0.3, 0.2, 0.1]])
    relevant = torch.tensor([[True, False, False]])
    with pytest.raises(ValueError, match="k"):
        precision_recall_at_k(scores, relevant, 4)
    with pytest.raises(ValueError, match="k"):
        precision_recall_at_k(scores, relevant, 0)
    with pytest.raises(ValueError, match="relevant"):
        precision_recall_at_k(scores, relevant.long(), 1)
    with pytest.raises(ValueError, match="relevant"):
        precision_recall_at_k(scores, relevant[:, :2], 1)


# ---------------------------------------------------------------- AUC


def test_auc_by_hand_with_ties() -> None:
    # columns:                 0     1     2     3     4     5
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.3, 0.1, 0.7]] * 3)
    positive = torch.tensor(
        [
            [True, True, False, False, False, False],  # P = {0.9, 0.5}
            [False] * 6,  # no positive -> NaN
            [True, True, True, True, True, True],  # no negative -> NaN
        ]
    )
    negative = torch.tensor(
        [
            [False, False, True, True, True, False],  # N = {0.5, 0.3, 0.1}; column 5 (0.7) is in neither
            [False, False, True, True, True, False],
            [False] * 6,
        ]
    )
    # row 0: 0.9 beats 0.5, 0.3, 0.1                 -> 3
    #        0.5 ties 0.5 (1/2), beats 0.3, 0.1      -> 2.5
    #        (5.5) / (2 * 3 pairs) = 11/12 = 0.91667 (the strict delta of eq. 14 would give 5/6)
    out = auc(scores, positive, negative)
    assert out.dtype == torch.float64
    assert_close(out, f64([11 / 12, NAN, NAN]), equal_nan=True)


def test_auc_infinite_scores() -> None:
    # positives {inf, 0.0}, negatives {-inf, inf}:
    # inf vs -inf win 1, inf vs inf tie 1/2, 0 vs -inf win 1, 0 vs inf loss 0 -> 2.5 / 4 = 0.625
    scores = torch.tensor([[INF, -INF, 0.0, INF]])
    positive = torch.tensor([[True, False, True, False]])
    negative = torch.tensor([[False, True, False, True]])
    assert_close(auc(scores, positive, negative), f64([0.625]))


def test_auc_perfect_reversed_and_constant() -> None:
    scores = torch.arange(10, dtype=torch.float32).repeat(2, 1)  # 0, 1, ..., 9
    high = torch.arange(10) >= 7
    low = torch.arange(10) < 3
    positive = torch.stack([high, low])
    negative = torch.stack([low, high])
    # row 0: every positive (7, 8, 9) above every negative (0, 1, 2) -> 1; row 1 the reverse -> 0
    assert_close(auc(scores, positive, negative), f64([1.0, 0.0]))
    # constant scores: every pair is a tie -> 1/2
    assert_close(auc(torch.zeros(2, 10), positive, negative), f64([0.5, 0.5]))


def naive_auc(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    out = []
    for s, p, n in zip(scores.tolist(), positive.tolist(), negative.tolist(), strict=True):
        pos = [x for x, m in zip(s, p, strict=True) if m]
        neg = [x for x, m in zip(s, n, strict=True) if m]
        if not pos or not neg:
            out.append(NAN)
            continue
        total = 0.0
        for si in pos:
            for sj in neg:
                total += 1.0 if si > sj else 0.5 if si == sj else 0.0
        out.append(total / (len(pos) * len(neg)))
    return f64(out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_auc_matches_naive_pair_loop(seed: int, decimals: int | None) -> None:
    g = torch.Generator().manual_seed(seed)
    b, c = 12, 40
    scores = torch.randn(b, c, generator=g)
    if decimals is not None:  # heavy ties: ~30 (decimals=1) or ~7 (decimals=0) distinct values per row
        scores = scores.round(decimals=decimals)
    kind = torch.randint(0, 3, (b, c), generator=g)  # 0 positive, 1 negative, 2 neither
    positive, negative = kind == 0, kind == 1
    positive[0] = False  # a row with no positive
    negative[1] = False  # a row with no negative
    if seed % 2:
        scores[positive & (torch.rand(b, c, generator=g) < 0.1)] = INF
        scores[negative & (torch.rand(b, c, generator=g) < 0.1)] = -INF
        scores[~(positive | negative)] = NAN  # columns in neither mask are ignored, even NaN
    assert_close(auc(scores, positive, negative), naive_auc(scores, positive, negative), equal_nan=True)


def test_auc_rejects_bad_input() -> None:
    scores = torch.tensor([[0.3, 0.2, 0.1]])
    positive = torch.tensor([[True, False, False]])
    negative = torch.tensor([[False, True, True]])
    with pytest.raises(ValueError, match="both positive and negative"):
        auc(scores, positive, positive | negative)
    with pytest.raises(ValueError, match="NaN"):
        auc(torch.tensor([[0.3, NAN, 0.1]]), positive, negative)
    with pytest.raises(ValueError, match="negative"):
        auc(scores, positive, negative.long())
    with pytest.raises(ValueError, match="scores"):
        auc(scores[0], positive[0], negative[0])


# ---------------------------------------------------------------- RelaImpr


def test_rela_impr_by_hand() -> None:
    # (0.8 - 0.5) / (0.7 - 0.5) - 1 = 0.3 / 0.2 - 1 = 0.5
    assert rela_impr(0.8, 0.7) == pytest.approx(0.5)
    # the base model against itself: 0 (not the non-zero value the paper prints for FM)
    assert rela_impr(0.7, 0.7) == 0.0
    # a model at random (0.5): -1
    assert rela_impr(0.5, 0.7) == pytest.approx(-1.0)


def test_rela_impr_rejects_random_base() -> None:
    with pytest.raises(ValueError, match=r"0\.5"):
        rela_impr(0.8, 0.5)


# ---------------------------------------------------------------- CUDA parity


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 500, generator=g).round(decimals=1)
    kind = torch.randint(0, 3, scores.shape, generator=g)
    positive, negative = kind == 0, kind == 1
    target = torch.randint(0, 500, (64,), generator=g)
    cuda = torch.device("cuda")
    auc_cuda = auc(scores.to(cuda), positive.to(cuda), negative.to(cuda))
    assert_close(auc_cuda.cpu(), auc(scores, positive, negative))
    ranks = target_ranks(scores, target)
    ranks_cuda = target_ranks(scores.to(cuda), target.to(cuda))
    assert torch.equal(ranks_cuda.cpu(), ranks)
    assert_close(ndcg_at_k(ranks_cuda, 10).cpu(), ndcg_at_k(ranks, 10))
    pre, rec = precision_recall_at_k(scores.to(cuda), positive.to(cuda), 10)
    assert pre.device.type == "cuda"
    assert_close(rec.cpu() * positive.sum(1) / 10, pre.cpu())
