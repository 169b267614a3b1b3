"""Data-parallel training on PyTorch's engine (torch.distributed + DistributedDataParallel).

Launched by `torchrun --nproc-per-node N -m ssrf train ...` (or `ssrf train --nproc N`, which calls torchrun):
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and `setup` joins the process group, NCCL on GPUs and gloo on
CPUs. Without those variables everything here is a no-op for a single process, so the same code runs on a
laptop. Each global batch is split across ranks (`shard`); gradients are averaged by DDP, with each rank's
loss scaled so the result equals the single-process gradient of the same global batch; evaluation shards
users and sums metrics across ranks; only rank 0 writes files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    grouped: bool = False  # a process group is joined (torchrun with WORLD_SIZE > 1, or SSRF_DIST_FORCE=1)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.grouped

    @property
    def backend(self) -> str | None:
        """nccl or gloo while in a process group, else None."""
        return _backend() or None

    def device(self, name: str) -> torch.device:
        """The device of this rank: `auto` is cuda:<local rank> when CUDA is present, else the CPU."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank if self.active else 0)
        return device

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the CPU for gloo, on the rank's GPU for NCCL)."""
        if not self.active:
            return list(values)
        device = torch.device("cuda", self.local_rank) if _backend() == "nccl" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, obj: object) -> object:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, bool]:
        """This rank's share of a global batch (every world-th row), and whether it is real: a rank left
        without rows gets the batch's first row to run on, to be weighted 0 (every rank must step)."""
        if not self.active:
            return rows, True
        mine = rows[self.rank :: self.world]
        return (mine, True) if len(mine) else (rows[:1], False)


def _backend() -> str:
    return str(torch_dist.get_backend()) if torch_dist.is_initialized() else ""


def setup() -> Dist:
    """Join the process group when launched by torchrun (idempotent); the single-process Dist otherwise.

    A single process under torchrun joins a group of one only with SSRF_DIST_FORCE=1: the whole DDP path
    (NCCL on a GPU) then runs on a machine with one GPU, as a check of the multi-GPU code."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    forced = os.environ.get("SSRF_DIST_FORCE", "") == "1" and "RANK" in os.environ
    if world <= 1 and not forced:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        cuda = torch.cuda.is_available() and os.environ.get("SSRF_DIST_BACKEND", "") != "gloo"
        if cuda:
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, grouped=True)


def shutdown() -> None:
    """Leave the process group, once every rank is done with collectives (a successful run's end). Without
    it, Gloo's worker threads can outlive the interpreter and abort the process at exit ("terminate called
    without an active exception", intermittently). Not called on an error path, where other ranks may still
    wait in a collective and destroying the group could hang."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


@contextmanager
def main_first(dist: Dist) -> Iterator[None]:
    """Rank 0 runs the body first (say, to build a cache), then the others (which find it built)."""
    if not dist.is_main:
        dist.barrier()
    try:
        yield
    finally:  # also when rank 0 fails: the others then run the body and fail the same way
        if dist.is_main:
            dist.barrier()


def pick_threads(requested: int | None = None) -> tuple[int, str]:
    """PyTorch's intra-op threads for this process, and why: `requested` when given, else $OMP_NUM_THREADS
    when set (torchrun sets it to 1 per process), else the cores not busy now: the cores this process may use
    minus the other runnable tasks (Linux: the median of five samples of /proc/loadavg's running count over
    0.2 s; elsewhere the 1-minute load average, which still counts a job that ended a minute ago), at least 1.
    PyTorch's own default, every core, runs 1.4x slower beside one busy core of two (docs/benchmarks.md,
    "Threads")."""
    if requested is not None:
        return requested, "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy, what = _busy()
    free = max(1, min(cores, round(cores - busy)))
    return free, f"{cores} cores, {what} {busy:g}"


def _busy() -> tuple[float, str]:
    """Other tasks running now, and what measured it."""
    try:
        samples = []
        for i in range(5):
            with open("/proc/loadavg") as fh:  # "0.38 0.86 1.10 2/345 1234": 2 runnable, this one included
                samples.append(int(fh.read().split()[3].split("/")[0]) - 1)
            if i < 4:
                time.sleep(0.05)
        return float(sorted(samples)[2]), "other running tasks"
    except (OSError, ValueError, IndexError):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return round(load, 1), "load"
