"""The training loop: a plain function. Optimiser, early stopping, checkpoints and resume live here;
evaluation is a callable passed in."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ssrf.core import DataError, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, check_config
from ssrf.dataset.batches import SeqBatch, bucket_order, train_batch
from ssrf.dataset.sequences import Sequences
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import save_model
from ssrf.training import distributed, losses
from ssrf.training.checkpoint import load_resume, save_resume

log = logging.getLogger(__name__)


PRECISIONS = ("auto", "fp32", "bf16")
METRIC = re.compile(r"auc|mrr|(hr|ndcg|pre|rec)@[1-9][0-9]*")  # validation metrics `evaluate` reports
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?|mps")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    loss: str = (
        "bce"  # bce (eq. 13, sampled negatives), ce (full softmax) or sampled-softmax (log-Q corrected)
    )
    negatives: PositiveInt = 3  # bce: uniformly sampled negatives per target (the paper's N)
    sampled_negatives: PositiveInt = (
        1024  # sampled-softmax: negatives shared by a batch, drawn by popularity^0.75
    )
    behavior_weights: tuple[tuple[str, float], ...] = ()  # weight of a positive term by behaviour, default 1
    neg_weight: NonNegativeFloat = 1.0  # weight of the negative terms (bce)
    epochs: PositiveInt = 20  # maximum epochs
    batch_size: PositiveInt = 128  # sequences (chunks of up to n + 1 events) per step
    lr: PositiveFloat = 1e-3  # Adam learning rate
    weight_decay: NonNegativeFloat = 0.0  # Adam weight decay (L2)
    patience: PositiveInt = 3  # stop after this many validations without improvement
    metric: str = "ndcg@10"  # validation metric for early stopping and the best checkpoint
    max_seconds: NonNegativeFloat = (
        0.0  # wall-clock budget: no epoch after the first starts past it (0: no budget)
    )
    checkpoint_every: NonNegativeInt = 200  # steps between resume checkpoints (0: only at epoch ends)
    seed: NonNegativeInt = 0  # all randomness (init, batches, negatives, dropout) derives from it
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:1, ...
    max_len: PositiveInt = 50  # n: events in a training chunk's input (set from the model)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on a CPU), fp32, or bf16 (autocast anywhere)

    def __post_init__(self) -> None:
        check_config(self, "train")
        if self.loss not in losses.LOSSES:
            raise ValueError(f"train.loss = {self.loss!r}: must be one of {', '.join(losses.LOSSES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision = {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        if not METRIC.fullmatch(self.metric):
            raise ValueError(
                f"train.metric = {self.metric!r}: expected auc, mrr, or hr, ndcg, pre, rec with a cut-off "
                "(e.g. ndcg@10)"
            )
        if not DEVICE.fullmatch(self.device):
            raise ValueError(f"train.device = {self.device!r}: expected auto, cpu, cuda or cuda:N")
        for name, weight in self.behavior_weights:
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"train.behavior_weights: {name} = {weight}: must be a finite number >= 0")


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    stopped_early: bool = False
    stopped_by_budget: bool = False
    trained: bool = True  # False: the model has nothing to train (a reference rule), validated once as it is


def check_device(name: str) -> None:
    """A `DataError` unless `name` is a device this machine has (`auto` always is)."""
    if not DEVICE.fullmatch(name):
        raise DataError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DataError(
                f"device {name!r}: no CUDA device on this machine (torch {torch.__version__}, {build}); "
                "use cpu or auto"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DataError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DataError("device 'mps': not available on this machine; use cpu or auto")


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when present (this rank's GPU under torchrun), else the CPU."""
    check_device(name)
    return distributed.setup().device(name)


class Objective(nn.Module):
    """The training loss as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: SequentialRecommender, cfg: TrainConfig, log_q: torch.Tensor | None) -> None:
        super().__init__()
        self.model, self.cfg, self.log_q = model, cfg, log_q

    def forward(
        self,
        batch: SeqBatch,
        positions: torch.Tensor,
        targets: torch.Tensor,
        pos_w: torch.Tensor,
        negatives: torch.Tensor | None,
    ) -> torch.Tensor:
        h = self.model.hidden(batch, positions)
        if self.cfg.loss == "bce":
            assert negatives is not None
            loss = losses.bce_with_negatives(self.model, h, targets, pos_w, self.cfg.neg_weight, negatives)
        elif self.cfg.loss == "ce":
            loss = losses.full_softmax_ce(self.model, h, targets, pos_w)
        else:
            assert negatives is not None and self.log_q is not None
            loss = losses.sampled_softmax(self.model, h, targets, pos_w, negatives, self.log_q)
        extra = self.model.auxiliary_loss(batch, positions, h, targets)
        return loss if extra is None else loss + extra


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast for the forward (products and convolutions in bf16, losses in fp32), or none."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _step_seed(seed: int, epoch: int, step: int) -> int:
    return (seed * 1_000_003 + epoch * 100_003 + step) % (2**63 - 1)


def fit(
    model: SequentialRecommender,
    seqs: Sequences,
    cfg: TrainConfig,
    run_dir: Path,
    behavior_names: list[str],
    validate: Callable[[SequentialRecommender], dict[str, float]],
    model_name: str,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> History:
    """Train with early stopping on `validate(model)[cfg.metric]`; keep the best weights in run_dir/best.

    Resumes from run_dir/resume when it holds a state. `on_step(epoch, step)` runs after every step;
    `on_epoch(row)` after every epoch's validation, with the row metrics.jsonl gets (on every rank; trackers
    and tuning's pruning use it, and may raise to stop the run).
    Under torchrun each rank trains on its share of every global batch (see `distributed`); rank 0 writes.
    A model without trainable parameters is not trained: see `keep_as_is`."""
    dist = distributed.setup()
    device = dist.device(cfg.device)
    model.to(device)
    if not any(p.requires_grad for p in model.parameters()):
        return keep_as_is(model, cfg, run_dir, validate, model_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = dict(cfg.behavior_weights)
    unknown = set(weights) - set(behavior_names)
    if unknown:
        raise ValueError(
            f"unknown behaviour(s) in behaviour weights: {', '.join(sorted(unknown))}; "
            f"this dataset has {', '.join(behavior_names)}"
        )
    bw = torch.tensor([0.0] + [float(weights.get(b, 1.0)) for b in behavior_names], device=device)
    chunks = seqs.train_chunks(cfg.max_len)
    lengths = chunks[:, 2] - chunks[:, 1]
    log_q = _log_q(seqs, device) if cfg.loss == "sampled-softmax" else None
    q_cpu = log_q.exp().cpu() if log_q is not None else None
    history, start_epoch, start_step = History(), 0, 0
    resume_dir, metrics_path = run_dir / "resume", run_dir / "metrics.jsonl"
    counters = load_resume(resume_dir, model, optimizer)
    if counters is not None:
        start_epoch, start_step = counters["epoch"], counters["step"]
        history = History(counters["epochs"], counters["best_epoch"], counters["best_score"], False)
        log.info("resuming at epoch %d, step %d", start_epoch + 1, start_step)
    objective: nn.Module = Objective(model, cfg, log_q)
    if dist.active:  # unused parameters (a disabled branch) are allowed
        ids = [device.index] if device.type == "cuda" else None
        objective = DistributedDataParallel(objective, device_ids=ids, find_unused_parameters=True)
    amp = autocast(cfg.precision, device)
    spent = sum(e["train_seconds"] + e["eval_seconds"] for e in history.epochs)  # earlier epochs (resume)
    began = time.perf_counter() - spent
    for epoch in range(start_epoch, cfg.epochs):
        if len(history.epochs) - 1 - history.best_epoch >= cfg.patience and history.best_epoch >= 0:
            history.stopped_early = True
            break
        if cfg.max_seconds and history.epochs and time.perf_counter() - began >= cfg.max_seconds:
            history.stopped_by_budget = True
            break
        order = bucket_order(lengths, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
        model.train()
        t0, seen, total = time.perf_counter(), 0, 0.0
        if start_step:  # the epoch's time before the interruption counts toward its throughput
            t0 -= counters.get("partial_seconds", 0.0)  # type: ignore[union-attr]
        if start_step and dist.is_main:  # the saved partial sums are over every rank
            total, seen = counters["partial_loss"], counters["partial_targets"]  # type: ignore[index]
        bar = tqdm(
            total=len(order),
            initial=start_step,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=None if dist.is_main else True,
            unit="batch",
        )
        for step in range(start_step, len(order)):
            torch.manual_seed(_step_seed(cfg.seed, epoch, step))  # dropout masks
            gen = torch.Generator().manual_seed(_step_seed(cfg.seed, epoch, step) + 1)  # negatives
            rows, real = dist.shard(order[step])
            batch = train_batch(seqs, chunks[rows], cfg.max_len).trimmed().to(device)
            positions = batch.targets != 0
            targets = batch.targets[positions]
            pos_w = bw[batch.target_behaviors[positions]]
            if cfg.loss == "bce":
                negatives = losses.sample_negatives(targets, seqs.n_items, cfg.negatives, gen)
            elif cfg.loss == "sampled-softmax":
                assert q_cpu is not None
                negatives = torch.multinomial(  # drawn on the CPU, where the seeded generator lives
                    q_cpu, cfg.sampled_negatives, replacement=True, generator=gen
                ).to(device)
            else:
                negatives = None
            # each rank's mean loss, scaled so DDP's average over ranks is the global batch's mean
            local = len(targets) if real else 0
            scale = local * dist.world / dist.sum([float(local)])[0] if dist.active else 1.0
            with amp:
                loss = objective(batch, positions, targets, pos_w, negatives)
            optimizer.zero_grad(set_to_none=True)
            (loss * scale).backward()
            optimizer.step()
            total += float(loss.detach()) * local
            seen += local
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}", targets_s=f"{seen / max(elapsed, 1e-9):.0f}")
            bar.update()
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < len(order):
                part_loss, part_seen = dist.sum([total, float(seen)])
                if dist.is_main:
                    state = _counters(history, epoch, done, part_loss, int(part_seen))
                    state["partial_seconds"] = time.perf_counter() - t0
                    save_resume(resume_dir, model, optimizer, state)
            if on_step is not None:
                on_step(epoch, done)
        bar.close()
        total, seen = dist.sum([total, float(seen)])  # every rank's share of the epoch
        seen = int(seen)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        scores = validate(model)
        row = {
            "epoch": epoch + 1,
            "loss": total / max(seen, 1),
            "targets": seen,
            "train_seconds": round(train_s, 3),
            "targets_per_second": round(seen / max(train_s, 1e-9), 1),
            "eval_seconds": round(time.perf_counter() - t1, 3),
            **{f"valid_{k}": v for k, v in scores.items()},
        }
        history.epochs.append(row)
        if on_epoch is not None:
            on_epoch(row)
        improved = scores[cfg.metric] > history.best_score  # the same on every rank (metrics are reduced)
        if improved:
            history.best_score, history.best_epoch = scores[cfg.metric], len(history.epochs) - 1
        start_step = 0
        if not dist.is_main:
            continue
        if improved:
            save_model(run_dir / "best", model_name, model)
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        log.info(
            "epoch %d: loss %.4f, %s %.4f (%.0f targets/s)",
            epoch + 1,
            row["loss"],
            cfg.metric,
            scores[cfg.metric],
            row["targets_per_second"],
        )
        save_resume(resume_dir, model, optimizer, _counters(history, epoch + 1, 0, 0.0, 0))
    dist.barrier()  # rank 0's files are complete before any rank reads them
    return history


def keep_as_is(
    model: SequentialRecommender,
    cfg: TrainConfig,
    run_dir: Path,
    validate: Callable[[SequentialRecommender], dict[str, float]],
    model_name: str,
) -> History:
    """A model with nothing to train (random, pop, repeat): validate it once and record that as epoch 1 (the
    row a trained epoch writes, with loss NaN, no targets and no training time); it is the best model."""
    t0 = time.perf_counter()
    scores = validate(model)
    row = {
        "epoch": 1,
        "loss": math.nan,
        "targets": 0,
        "train_seconds": 0.0,
        "targets_per_second": 0.0,
        "eval_seconds": round(time.perf_counter() - t0, 3),
        **{f"valid_{k}": v for k, v in scores.items()},
    }
    history = History(epochs=[row], best_epoch=0, best_score=scores[cfg.metric], trained=False)
    dist = distributed.setup()
    if dist.is_main:
        save_model(run_dir / "best", model_name, model)
        with open(run_dir / "metrics.jsonl", "w") as fh:
            fh.write(json.dumps(row) + "\n")
        log.info("no trainable parameters: validated once, %s %.4f", cfg.metric, scores[cfg.metric])
    dist.barrier()
    return history


def _counters(history: History, epoch: int, step: int, total: float, seen: int) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "partial_loss": total,
        "partial_targets": seen,
        "epochs": history.epochs,
        "best_epoch": history.best_epoch,
        "best_score": history.best_score,
    }


def _log_q(seqs: Sequences, device: torch.device) -> torch.Tensor:
    """log Q(item) of the sampled-softmax proposal: training popularity^0.75 (padding never drawn)."""
    counts = seqs.train_counts().astype(np.float64)
    q = (counts + 1.0) ** 0.75
    q[0] = 0.0
    q /= q.sum()
    with np.errstate(divide="ignore"):
        return torch.tensor(np.log(q), dtype=torch.float32, device=device)
