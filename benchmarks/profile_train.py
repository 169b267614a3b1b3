"""Where a training step's time goes: the real training loop (`ssrf.training.fit`) on Amazon Beauty, stopped
after --steps steps, under torch.profiler. Prints the operators with the most self CPU time, the measured
targets per second over the profiled steps (after --warmup unprofiled ones), and one JSON line.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_train.py --model sasrec --loss ce
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_train.py --config configs/ssrf-beauty.toml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig
from ssrf.training import loop

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"


class Stop(Exception):
    """Raised from the step callback to leave the training loop."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the config's model, else sasrec")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--loss", default=None, help="default: the config's loss, else ce")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--data", type=Path, default=BEAUTY)
    args = ap.parse_args()

    data = pipeline.prepare([args.data], "s3rec", PrepareConfig(split="loo"))
    cfg = pipeline.RunConfig.from_toml(args.config) if args.config else pipeline.RunConfig(model="sasrec")
    model = args.model or cfg.model
    loss = args.loss or (cfg.train.loss if args.config else "ce")
    sets = [f'train.loss="{loss}"', f"train.batch_size={args.batch_size}", "train.checkpoint_every=0"]
    cfg = dataclasses.replace(cfg.override([*sets, 'train.device="cpu"', *args.sets]), model=model)

    marks: list[float] = []
    counted = {"on": False, "targets": 0}
    prof = profile(activities=[ProfilerActivity.CPU])
    draw = loop.train_batch

    def counting_batch(*a, **kw):  # the loop's own batches, counted while the profiler runs
        b = draw(*a, **kw)
        if counted["on"]:
            counted["targets"] += int((b.targets != 0).sum())
        return b

    def on_step(epoch: int, step: int) -> None:
        if step == args.warmup:
            prof.start()
            counted["on"] = True
            marks.append(time.perf_counter())
        if step == args.warmup + args.steps:
            marks.append(time.perf_counter())
            prof.stop()
            raise Stop

    loop.train_batch = counting_batch
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pipeline.train(data, cfg, Path(tmp) / "run", on_step=on_step)
        except Stop:
            pass
        finally:
            loop.train_batch = draw
    t0, t1 = marks
    n = counted["targets"]
    rate = n / (t1 - t0)
    per_step = n / args.steps
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
    print(table)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]
    shares = {e.key: round(e.self_cpu_time_total / total, 4) for e in top}
    print(
        f"{model} ({loss}), batch {args.batch_size}, {torch.get_num_threads()} thread(s): "
        f"{args.steps} steps in {t1 - t0:.2f} s, {rate:.0f} targets/s ({per_step:.0f} targets per step)"
    )
    print(
        json.dumps(
            {
                "benchmark": "profile_train",
                "model": model,
                "loss": loss,
                "threads": torch.get_num_threads(),
                "steps": args.steps,
                "seconds": round(t1 - t0, 3),
                "targets_per_second": round(rate, 1),
                "self_cpu_share": shares,
            }
        )
    )


if __name__ == "__main__":
    main()
