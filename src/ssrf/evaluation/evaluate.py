"""Evaluation under the two protocols of SSRF_MODEL.md, batched over users, ranking every item.

- `loo` (leave-one-out, the S3-Rec protocol): each user's held-out event is ranked against all items;
  HR@K, NDCG@K, MRR, and AUC (eq. 14 with the one held-out item as the positive).
- `temporal` (the paper's): L_t = the distinct items of the user's period after the cut, L_r = top-K of a
  ranking over all items; Pre@K, Rec@K (eq. 16-17), NDCG@K over the set, and AUC (eq. 14, exact over every
  item the user never touched).
Sampled candidates (the target against N items the user never touched, drawn uniformly) are used only
when `candidates` is set. Items already in the user's history are masked from the ranking when
`mask_history` is set (the evaluated items themselves never are); the flag is recorded in every result.
Only one batch of users x items scores is ever in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssrf.dataset.batches import input_batch, item_mask
from ssrf.dataset.sequences import TEST, VALID, Sequences
from ssrf.evaluation import metrics as M
from ssrf.models.base import SequentialRecommender
from ssrf.training import distributed

SPLIT_IDS = {"valid": VALID, "test": TEST}


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20)  # cut-offs of the top-K metrics
    mask_history: bool | None = None  # mask items seen before the evaluated period; None: on for loo only
    batch_size: int = 512  # users scored at once (fewer when the catalogue is large, see max_scores)
    max_scores: int = 2**25  # bound on users x items scores held at once (float32: 128 MiB), so memory
    # stays bounded for catalogues of millions of items
    auc: bool = True  # compute the paper's AUC (exact over all never-touched items)
    candidates: int = 0  # 0: rank against every item; N > 0: against N sampled never-touched items only
    seed: int = 0  # seed of the sampled candidates and of the validation sample
    valid_users: int = 0  # > 0: validate (early stopping) on a fixed random sample of this many users;
    # the test split always uses every user

    def masking(self, protocol: str) -> bool:
        return self.mask_history if self.mask_history is not None else protocol == "loo"


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
    names = (["auc"] if cfg.auc else []) + (
        [f"{m}@{k}" for k in cfg.ks for m in ("hr", "ndcg")] + ["mrr"]
        if protocol == "loo"
        else [f"{m}@{k}" for k in cfg.ks for m in ("pre", "rec", "ndcg")]
    )
    sums: dict[str, float] = dict.fromkeys(names, 0.0)
    counts: dict[str, int] = dict.fromkeys(names, 0)

    def add(name: str, values: torch.Tensor) -> None:
        ok = ~torch.isnan(values)
        sums[name] = sums.get(name, 0.0) + float(values[ok].sum())
        counts[name] = counts.get(name, 0) + int(ok.sum())

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
        if cfg.auc:
            touched = item_mask(seqs.all_items(u), width, scores.device)
            negative = ~touched
            negative[:, 0] = False
            add("auc", M.auc(scores, relevant, negative))
        if mask_history:
            seen = item_mask(seqs.items_before(u, e), width, scores.device) & ~relevant
            scores = scores.masked_fill(seen, float("-inf"))
        if cfg.candidates:
            keep = sample_candidates(seqs.all_items(u), width, cfg.candidates, gen, scores.device) | relevant
            scores = scores.masked_fill(~keep, float("-inf"))
        if protocol == "loo":
            target = torch.from_numpy(seqs.items[e]).to(scores.device)
            ranks = M.target_ranks(scores, target)
            for k in cfg.ks:
                add(f"hr@{k}", M.hit_rate_at_k(ranks, k))
                add(f"ndcg@{k}", M.ndcg_at_k(ranks, k))
            add("mrr", M.mrr(ranks))
        else:
            for k in cfg.ks:
                pre, rec = M.precision_recall_at_k(scores, relevant, k)
                add(f"pre@{k}", pre)
                add(f"rec@{k}", rec)
                add(f"ndcg@{k}", set_ndcg_at_k(scores, relevant, k))
    if dist.active:
        reduced = dist.sum([sums[k] for k in names] + [float(counts[k]) for k in names])
        sums = dict(zip(names, reduced[: len(names)], strict=True))
        counts = {k: int(v) for k, v in zip(names, reduced[len(names) :], strict=True)}
    out = {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}
    out["users"] = float(n_users)
    if cfg.candidates:
        out["candidates"] = float(cfg.candidates)
    return out
