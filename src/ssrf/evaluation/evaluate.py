"""Evaluation under the two protocols of SSRF_MODEL.md, batched over users, ranking every item.

- `loo` (leave-one-out, the S3-Rec protocol): each user's held-out event is ranked against all items;
  HR@K, NDCG@K, MRR, and AUC (eq. 14 with the one held-out item as the positive).
- `temporal` (the paper's): L_t = the distinct items of the user's period after the cut, L_r = top-K of a
  ranking over all items; Pre@K, Rec@K (eq. 16-17), NDCG@K over the set, and AUC (eq. 14, exact over every
  item the user never touched).
Sampled candidates (the target against N items the user never touched, drawn uniformly) are used only
when `candidates` is set. With `mask_history` every item of the user's history (the events before the
evaluated period) is removed from the ranking, whether or not it is also a target: the mask never looks at
the labels, so a repeated target counts as a miss. The flag is recorded in every result.

Repeat and novel positives: a positive the user already had before the evaluated period is a repeat, any
other a novel one. Every metric is also reported on each kind alone (`<metric>_repeat`, `<metric>_novel`,
over the users with at least one positive of that kind; the ranking is the same), with `repeat_share`, the
share of all (user, positive item) pairs that are repeats. "Touched" items (never negatives of the AUC,
never sampled as candidates) are the user's items up to the end of the evaluated period, so validation
never looks into the test period.
Only one batch of users x items scores is ever in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssrf.core import DataError, NonNegativeInt, PositiveInt, check_config
from ssrf.dataset.batches import input_batch, item_mask
from ssrf.dataset.sequences import TEST, VALID, Sequences
from ssrf.evaluation import metrics as M
from ssrf.models.base import SequentialRecommender
from ssrf.training import distributed

SPLIT_IDS = {"valid": VALID, "test": TEST}
KINDS = ("repeat", "novel")  # positives the user had before the evaluated period, and the others


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    ks: tuple[PositiveInt, ...] = (5, 10, 20)  # cut-offs of the top-K metrics
    mask_history: bool | None = None  # mask items seen before the evaluated period; None: on for loo only
    batch_size: PositiveInt = 512  # users scored at once (fewer when the catalogue is large, see max_scores)
    max_scores: PositiveInt = (
        2**25
    )  # bound on users x items scores held at once (float32: 128 MiB), so memory
    # stays bounded for catalogues of millions of items
    auc: bool = True  # compute the paper's AUC (exact over all never-touched items)
    candidates: NonNegativeInt = (
        0  # 0: rank against every item; N > 0: against N sampled never-touched items only
    )
    seed: NonNegativeInt = 0  # seed of the sampled candidates and of the validation sample
    valid_users: NonNegativeInt = (
        0  # > 0: validate (early stopping) on a fixed random sample of this many users;
    )
    # the test split always uses every user

    def __post_init__(self) -> None:
        check_config(self, "eval")
        if not self.ks:
            raise DataError("eval.ks = []: give at least one cut-off")

    def masking(self, protocol: str) -> bool:
        return self.mask_history if self.mask_history is not None else protocol == "loo"

    def metric_names(self, protocol: str) -> list[str]:
        """The metrics `evaluate` reports under `protocol` (before their repeat/novel variants)."""
        return (["auc"] if self.auc else []) + (
            [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg")] + ["mrr"]
            if protocol == "loo"
            else [f"{m}@{k}" for k in self.ks for m in ("pre", "rec", "ndcg")]
        )


def sample_candidates(
    touched: list[np.ndarray], width: int, count: int, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """[B, width] bool: `count` distinct items per row drawn uniformly from those the row never touched."""
    keys = torch.rand(len(touched), width, generator=gen).to(device)
    keys = keys.masked_fill(item_mask(touched, width, device), float("inf"))
    keys[:, 0] = float("inf")
    pick = keys.topk(min(count, width - 1), dim=1, largest=False).indices
    out = torch.zeros(len(touched), width, dtype=torch.bool, device=device)
    out.scatter_(1, pick, True)
    return out & torch.isfinite(keys)


def set_ndcg_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@K with binary relevance over a set of relevant items: DCG / ideal DCG (NaN without relevant)."""
    top = scores.topk(k, dim=1).indices
    gains = relevant.gather(1, top).float()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=scores.device, dtype=torch.float32))
    dcg = (gains * discount).sum(1)
    n_rel = relevant.sum(1).clamp(max=k)
    ideal = torch.cumsum(discount, 0)[(n_rel - 1).clamp(min=0)]
    return torch.where(n_rel > 0, dcg / ideal, torch.full_like(dcg, float("nan")))


def _ranks_masked_last(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`metrics.target_ranks`, where a masked (-inf) target ranks last (C): a miss at every cut-off."""
    masked = scores.gather(1, target[:, None]).squeeze(1) == float("-inf")
    if not bool(masked.any()):
        return M.target_ranks(scores, target)
    rows = torch.arange(len(target), device=scores.device)
    lifted = scores.clone()
    lifted[rows[masked], target[masked]] = 0.0  # any finite score: these rows' ranks are replaced below
    return torch.where(masked, scores.shape[1], M.target_ranks(lifted, target))


def _with_kinds(
    values: torch.Tensor, rows: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(values, {kind: values on that kind's rows, NaN elsewhere}) for one-target (leave-one-out) metrics."""
    nan = torch.full_like(values, float("nan"))
    return values, {k: torch.where(r, values, nan) for k, r in rows.items()}


@torch.inference_mode()
def evaluate(
    model: SequentialRecommender,
    seqs: Sequences,
    split: str,
    protocol: str,
    cfg: EvalConfig,
    max_len: int,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean metrics over the users evaluated on `split` ("valid" or "test")."""
    sid = SPLIT_IDS[split]
    users, ends, starts = seqs.eval_users(sid)
    if split == "valid" and 0 < cfg.valid_users < len(users):  # the same users at every validation
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(users), cfg.valid_users, replace=False))
        users, ends, starts = users[keep], ends[keep], starts[keep]
    by_length = np.argsort(np.minimum(ends - starts, max_len), kind="stable")  # batches of similar length
    users, ends, starts = users[by_length], ends[by_length], starts[by_length]  # trim to little padding
    n_users = len(users)
    dist = distributed.setup()  # under torchrun each rank evaluates every world-th user; sums are reduced
    users, ends, starts = (a[dist.rank :: dist.world] for a in (users, ends, starts))
    mask_history = cfg.masking(protocol)
    model.eval()
    base = cfg.metric_names(protocol)
    names = [*base, "repeat_share", *(f"{m}_{kind}" for kind in KINDS for m in base)]
    sums: dict[str, float] = dict.fromkeys(names, 0.0)
    counts: dict[str, int] = dict.fromkeys(names, 0)

    def add(name: str, values: torch.Tensor, kinds: dict[str, torch.Tensor]) -> None:
        """Per-user values of `name`, and of each kind's variant over the rows `kinds[kind]` computed."""
        for key, v in ((name, values), *((f"{name}_{k}", rows) for k, rows in kinds.items())):
            ok = ~torch.isnan(v)
            sums[key] += float(v[ok].sum())
            counts[key] += int(ok.sum())

    width = seqs.n_items + 1
    step = max(1, min(cfg.batch_size, cfg.max_scores // width))
    gen = torch.Generator().manual_seed(cfg.seed)
    for lo in range(0, len(users), step):
        u, e, s = users[lo : lo + step], ends[lo : lo + step], starts[lo : lo + step]
        batch = input_batch(seqs, u, s, e, max_len).trimmed().to(device)
        scores = model.score(batch).float()  # [B, N + 1]
        scores[:, 0] = float("-inf")
        relevant_rows = [seqs.items[[i]] for i in e] if protocol == "loo" else seqs.period_items(u, sid)
        relevant = item_mask(relevant_rows, width, scores.device)
        history = item_mask(seqs.items_before(u, e), width, scores.device)
        positives = {"repeat": relevant & history, "novel": relevant & ~history}
        sums["repeat_share"] += float(positives["repeat"].sum())
        counts["repeat_share"] += int(relevant.sum())
        touched = seqs.items_through(u, sid) if cfg.auc or cfg.candidates else []
        if cfg.auc:
            negative = ~item_mask(touched, width, scores.device)
            negative[:, 0] = False
            add(
                "auc",
                M.auc(scores, relevant, negative),
                {k: M.auc(scores, p, negative) for k, p in positives.items()},
            )
        if mask_history:  # label-independent: a history item is masked even when it is a target
            scores = scores.masked_fill(history, float("-inf"))
        if cfg.candidates:
            keep = sample_candidates(touched, width, cfg.candidates, gen, scores.device) | relevant
            scores = scores.masked_fill(~keep, float("-inf"))
        if protocol == "loo":
            target = torch.from_numpy(seqs.items[e]).to(scores.device)
            ranks = _ranks_masked_last(scores, target)
            is_kind = {k: p.any(1) for k, p in positives.items()}  # [B]: the target is of that kind
            for k in cfg.ks:
                add(f"hr@{k}", *_with_kinds(M.hit_rate_at_k(ranks, k), is_kind))
                add(f"ndcg@{k}", *_with_kinds(M.ndcg_at_k(ranks, k), is_kind))
            add("mrr", *_with_kinds(M.mrr(ranks), is_kind))
        else:
            for k in cfg.ks:
                pre, rec = M.precision_recall_at_k(scores, relevant, k)
                by_kind = {kind: M.precision_recall_at_k(scores, p, k) for kind, p in positives.items()}
                add(f"pre@{k}", pre, {kind: v[0] for kind, v in by_kind.items()})
                add(f"rec@{k}", rec, {kind: v[1] for kind, v in by_kind.items()})
                ndcg = {kind: set_ndcg_at_k(scores, p, k) for kind, p in positives.items()}
                add(f"ndcg@{k}", set_ndcg_at_k(scores, relevant, k), ndcg)
    if dist.active:
        reduced = dist.sum([sums[k] for k in names] + [float(counts[k]) for k in names])
        sums = dict(zip(names, reduced[: len(names)], strict=True))
        counts = {k: int(v) for k, v in zip(names, reduced[len(names) :], strict=True)}
    out = {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}
    out["users"] = float(n_users)
    if cfg.candidates:
        out["candidates"] = float(cfg.candidates)
    return out
