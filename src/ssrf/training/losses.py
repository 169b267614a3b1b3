"""Losses as pure functions of a model's representations and item scores. No model branches on these."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssrf.models.base import SequentialRecommender

LOSSES = ("bce", "ce", "sampled-softmax")


def sample_negatives(
    targets: torch.Tensor, n_items: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """[T, count] uniform item ids in 1..n_items, none equal to its row's target (a hit is shifted by one)."""
    neg = torch.randint(1, n_items + 1, (targets.shape[0], count), generator=generator, device="cpu")
    neg = neg.to(targets.device)
    hit = neg == targets[:, None]
    return torch.where(hit, neg % n_items + 1, neg)


def bce_with_negatives(
    model: SequentialRecommender,
    h: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor,
    neg_weight: float,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """Eq. 13: -log s(y_target) - sum_j log(1 - s(y_j)) over sampled negatives j, the positive term weighted
    by its behaviour and the negative terms by `neg_weight`; averaged over targets."""
    items = torch.cat((targets[:, None], negatives), dim=1)  # [T, 1 + N]
    logits = model.output(h, items).float()
    pos = F.softplus(-logits[:, 0])  # -log sigmoid
    neg = F.softplus(logits[:, 1:]).sum(-1)  # -log(1 - sigmoid)
    return (pos_weight * pos + neg_weight * neg).sum() / pos_weight.numel()


class _PaddedSoftmaxCE(torch.autograd.Function):
    """Weighted mean over rows of -log softmax(logits[:, 1:])[target - 1]: cross-entropy over every item,
    the padding column 0 excluded.

    Each pass over the [T, N + 1] logits costs as much as a matrix product here (memory-bound), so this makes
    two: a softmax over the whole row (contiguous, one kernel), renormalised without column 0 by the row
    scale 1 / (1 - p_0), and a backward that writes (p * scale - one-hot) once. PyTorch's log_softmax +
    nll_loss, after a copy that drops column 0, makes about six. Rows where the renormalisation would lose
    precision (p_0 > 1/2) or the target's probability underflows are recomputed exactly.

    Under bf16 autocast the logits come in bf16 and the probabilities and the gradient stay in bf16 (one
    bf16 pass costs a quarter of an fp32 one here; the softmax still accumulates in fp32); the row scales,
    the target's probability and the loss are fp32. A cast to fp32 and back would cost two more passes."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits, dim=1)  # [T, N + 1], in the logits' dtype (fp32 or bf16: see below)
        acc = torch.promote_types(p.dtype, torch.float32)  # fp32 for bf16 logits, else their own dtype
        p0 = p[:, 0].to(acc)
        scale = 1.0 / (1.0 - p0)
        bad = p0 > 0.5
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(1)
            p[rows, 0] = 0.0
            p[rows, 1:] = torch.softmax(logits[rows, 1:].to(acc), dim=1).to(p.dtype)
            scale[rows] = 1.0
        p_target = p.gather(1, targets[:, None]).squeeze(1).to(acc) * scale
        nll = -torch.log(p_target)
        tiny = p_target < 1e-30
        if bool(tiny.any()):
            rows = tiny.nonzero().squeeze(1)
            row_logits = logits[rows].to(acc)
            picked = row_logits.gather(1, targets[rows, None]).squeeze(1)
            nll[rows] = torch.logsumexp(row_logits[:, 1:], dim=1) - picked
        ctx.save_for_backward(p, scale, targets, weights)
        return (weights * nll).sum() / weights.numel()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        p, scale, targets, weights = ctx.saved_tensors
        coef = weights * (grad_out / weights.numel())  # [T]
        grad = p * (coef * scale).to(p.dtype)[:, None]  # softmax without column 0, weighted
        grad[:, 0] = 0.0
        rows = torch.arange(len(targets), device=grad.device)
        grad[rows, targets] -= coef.to(p.dtype)  # one target per row (scatter_add_ copies a bf16 grad twice)
        return grad, None, None


def full_softmax_ce(
    model: SequentialRecommender, h: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy over every item (padding excluded), weighted by the target's behaviour."""
    logits = model.output(h)  # bf16 under bf16 autocast: the softmax and its gradient stay in bf16
    weights = pos_weight.to(torch.promote_types(logits.dtype, torch.float32))
    return _PaddedSoftmaxCE.apply(logits, targets, weights)


def sampled_softmax(
    model: SequentialRecommender,
    h: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """Softmax over the target and negatives shared by the batch, drawn from a proposal Q, with the logQ
    correction (logit - log Q(item)); a negative equal to a row's target is masked out."""
    pos = model.output(h, targets[:, None]).float()[:, 0] - log_q[targets]  # [T]
    neg = model.output_shared(h, negatives).float() - log_q[negatives][None, :]
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))  # [T, S]
    logits = torch.cat((pos[:, None], neg), dim=1)
    loss = -F.log_softmax(logits, dim=1)[:, 0]
    return (pos_weight * loss).sum() / pos_weight.numel()
