"""Losses against values worked out by hand, with a stub model whose item scores are fixed numbers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssrf.models.base import SequentialRecommender
from ssrf.training import losses


def reference_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The padded full-softmax CE from PyTorch's own ops: column 0 set to -inf, then cross_entropy."""
    logits = torch.cat((torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]), dim=1)
    return (weights * F.cross_entropy(logits, targets, reduction="none")).sum() / weights.numel()


class FixedScores(SequentialRecommender):
    """output(h, items) = table[items] (h only sets the number of rows)."""

    def __init__(self, table: list[float]) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table))
        self.n_items = len(table) - 1

    def output(self, h, items=None):
        if items is None:
            return self.table.expand(h.shape[0], -1)
        return self.table[items]


def test_bce_with_negatives_by_hand():
    # item 1 scores 1.0 (the target), items 2 and 3 score 0.0 (negatives)
    m = FixedScores([0.0, 1.0, 0.0, 0.0])
    h = torch.zeros(1, 4)
    loss = losses.bce_with_negatives(
        m, h, torch.tensor([1]), torch.tensor([2.0]), 0.5, torch.tensor([[2, 3]])
    )
    # 2 * -log(sigmoid(1)) + 0.5 * 2 * -log(1 - sigmoid(0)) = 2 * 0.313262 + 0.5 * 2 * 0.693147
    expected = 2 * math.log1p(math.exp(-1.0)) + 0.5 * 2 * math.log(2.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_full_softmax_ce_by_hand():
    # three real items with equal scores: -log(1/3); the padding column never counts, whatever its score
    m = FixedScores([100.0, 0.5, 0.5, 0.5])
    loss = losses.full_softmax_ce(m, torch.zeros(2, 4), torch.tensor([1, 3]), torch.tensor([1.0, 1.0]))
    assert math.isclose(loss.item(), math.log(3.0), rel_tol=1e-6)


def test_behaviour_weights_scale_each_target():
    m = FixedScores([0.0, 2.0, 0.0, -1.0])
    h, targets, neg = torch.zeros(2, 4), torch.tensor([1, 3]), torch.tensor([[2], [2]])
    one = losses.bce_with_negatives(m, h, targets, torch.tensor([1.0, 1.0]), 1.0, neg)
    ten = losses.bce_with_negatives(m, h, targets, torch.tensor([1.0, 10.0]), 1.0, neg)
    # only the second target's positive term is scaled: difference = 9 * -log(sigmoid(-1)) / 2 targets
    assert math.isclose((ten - one).item(), 9 * math.log1p(math.exp(1.0)) / 2, rel_tol=1e-5)


def test_sampled_softmax_by_hand_with_log_q():
    # target 1 (score 1), negatives 2 and 3 (score 0), Q uniform over 3 items: the correction cancels
    m = FixedScores([0.0, 1.0, 0.0, 0.0])
    log_q = torch.log(torch.tensor([1e-9, 1 / 3, 1 / 3, 1 / 3]))
    loss = losses.sampled_softmax(
        m, torch.zeros(1, 4), torch.tensor([1]), torch.tensor([1.0]), torch.tensor([2, 3, 1]), log_q
    )
    # the accidental hit (negative 1 == target) is masked: -log(e / (e + 1 + 1))
    assert math.isclose(loss.item(), -math.log(math.e / (math.e + 2)), rel_tol=1e-6)
    # with a skewed Q: corrected logits are 1 - log 0.2 (target) and 0 - log 0.7 (negative 2)
    skew = torch.log(torch.tensor([1e-9, 0.2, 0.7, 0.1]))
    loss = losses.sampled_softmax(
        m, torch.zeros(1, 4), torch.tensor([1]), torch.tensor([1.0]), torch.tensor([2]), skew
    )
    expected = math.log1p(math.exp((0 - math.log(0.7)) - (1 - math.log(0.2))))  # = 0.09996
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_negatives_are_in_range_and_never_the_target():
    targets = torch.randint(1, 6, (5000,), generator=torch.Generator().manual_seed(0))
    neg = losses.sample_negatives(targets, 5, 4, torch.Generator().manual_seed(1))
    assert neg.shape == (5000, 4)
    assert int(neg.min()) >= 1 and int(neg.max()) <= 5
    assert not (neg == targets[:, None]).any()


def test_fused_ce_equals_pytorch_ce_in_value_and_gradient():
    """The fused loss (softmax minus one-hot in one backward pass) against log_softmax + nll_loss."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(7, 40, generator=g, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.randint(1, 40, (7,), generator=g)
    targets[0] = targets[1]  # two rows on the same item
    weights = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    fused = losses._PaddedSoftmaxCE.apply(logits, targets, weights)
    (grad_fused,) = torch.autograd.grad(fused * 1.7, logits)
    ref = reference_ce(logits, targets, weights)
    (grad_ref,) = torch.autograd.grad(ref * 1.7, logits)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(grad_fused, grad_ref)
    assert (grad_fused[:, 0] == 0).all()  # the padding column gets no gradient
    assert torch.autograd.gradcheck(
        lambda x: losses._PaddedSoftmaxCE.apply(x, targets, weights), (logits.detach().requires_grad_(),)
    )


def test_fused_ce_is_stable_for_large_logits():
    logits = torch.tensor([[0.0, 1000.0, 990.0, -1000.0]], requires_grad=True)
    loss = losses._PaddedSoftmaxCE.apply(logits, torch.tensor([2]), torch.ones(1))
    loss.backward()
    assert math.isfinite(loss.item()) and abs(loss.item() - (10.0 + math.log1p(math.exp(-10.0)))) < 1e-4
    assert torch.isfinite(logits.grad).all()


def test_fused_ce_where_the_padding_column_dominates_or_the_target_underflows():
    logits = torch.tensor(
        [[50.0, 1.0, 2.0, 3.0], [0.0, 200.0, -200.0, 1.0], [3.0, 0.5, 0.2, 0.1]], dtype=torch.float64
    ).requires_grad_()
    targets, weights = torch.tensor([2, 2, 1]), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    fused = losses._PaddedSoftmaxCE.apply(logits, targets, weights)
    (grad_fused,) = torch.autograd.grad(fused, logits)
    ref = reference_ce(logits, targets, weights)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(grad_fused, grad_ref)


def test_fused_ce_on_bf16_logits_matches_fp32_within_bf16_rounding():
    """Under bf16 autocast the logits arrive in bf16: the probabilities and the gradient stay in bf16 (no
    casts of the [T, N] matrix) while the loss is fp32 and within bf16 rounding of the fp32 loss."""
    g = torch.Generator().manual_seed(1)
    logits32 = torch.randn(64, 300, generator=g) * 2
    logits32[:3, 0] = 40.0  # rows where the padding column dominates take the exact path
    targets = torch.randint(1, 300, (64,), generator=g)
    weights = torch.rand(64, generator=g) + 0.5
    logits16 = logits32.bfloat16()
    a = logits16.float().requires_grad_()  # the same inputs, computed in fp32
    b = logits16.clone().requires_grad_()
    loss32 = losses._PaddedSoftmaxCE.apply(a, targets, weights)
    loss16 = losses._PaddedSoftmaxCE.apply(b, targets, weights)
    loss32.backward()
    loss16.backward()
    assert loss16.dtype == torch.float32 and b.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss16, loss32, rtol=5e-3, atol=0)
    torch.testing.assert_close(b.grad.float(), a.grad, rtol=2e-2, atol=2e-6)
    assert (b.grad[:, 0] == 0).all()
    # each row's gradient sums to zero (softmax minus one-hot), up to bf16 rounding
    assert b.grad.float().sum(1).abs().max() < 2e-4 * weights.max() / len(weights) * 300
