"""Training and evaluation speed on Amazon Beauty (leave-one-out): for each model, training targets per
second (one target = one predicted next item), seconds per epoch, seconds to evaluate every test user over
all items, and peak memory. Each model runs in its own process, so its peak RSS is its own.

    .venv/bin/python benchmarks/train_speed.py                      # every sequential model, CE, 1 epoch
    .venv/bin/python benchmarks/train_speed.py --models ssrf,sasrec --epochs 2 --device cuda
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_speed.py --models sasrec,ssrf --precisions fp32,bf16
    .venv/bin/python benchmarks/train_speed.py --config configs/ssrf-beauty.toml --models ssrf
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_speed.py --models sasrec,ssrf --precisions fp32,bf16 \
        --peer /work/recbole-env/bin/python     # RecBole's SASRec first, in its own environment, and ratios

Ends with one JSON line: {model: {targets_per_second, seconds_per_epoch, eval_seconds, peak_rss_mb, ...}}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"
MODELS = (
    "ssrf",
    "ssrf-uc",
    "ssrf-o",
    "sasrec",
    "fdsa",
    "caser",
    "cosrec",
    "gru4rec",
    "dif_sr",
    "bsarec",
)  # (pop trains nothing: counts)


def worker(args: argparse.Namespace) -> None:
    import torch

    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig

    data = pipeline.prepare([args.data], "s3rec", PrepareConfig(split="loo"))
    sets = [
        f'train.loss="{args.loss}"',
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        f'train.device="{args.device}"',
        "train.patience=1000",
        "eval.auc=false",
        f'train.precision="{args.precisions}"',
        *args.sets,
    ]
    base = pipeline.RunConfig.from_toml(args.config) if args.config else pipeline.RunConfig()
    cfg = dataclasses.replace(base, model=args.worker).override(sets)
    with tempfile.TemporaryDirectory() as tmp:
        result = pipeline.train(data, cfg, Path(tmp) / "run")
        epochs = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = epochs[1:] if len(epochs) > 1 else epochs  # the first epoch carries start-up (CUDA, caches)
    cuda = torch.cuda.is_available() and result["device"].startswith("cuda")
    out = {
        "model": args.worker,
        "precision": args.precisions,
        "device": result["device"],
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "threads": torch.get_num_threads(),
        "targets_per_epoch": epochs[0]["targets"],
        "targets_per_second": statistics.median(e["targets_per_second"] for e in epochs),
        "seconds_per_epoch": statistics.median(e["train_seconds"] for e in epochs),
        "valid_eval_seconds": statistics.median(e["eval_seconds"] for e in epochs),
        "test_eval_seconds": result["test_eval_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "test_ndcg@10": result["test"]["ndcg@10"],
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--loss", default="ce")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--precisions", default="auto", help="comma-separated train.precision values, each model runs in each"
    )
    ap.add_argument("--config", type=Path, default=None, help="a TOML preset (--models replaces its model)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a config override, as in ssrf")
    ap.add_argument("--data", type=Path, default=BEAUTY)
    ap.add_argument(
        "--peer",
        type=Path,
        default=None,
        help="the python of RecBole's own environment (see recbole_peer.py): runs RecBole's SASRec first, on "
        "the same data, batch and epochs, and adds each model's ratio of targets/s to it",
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    rows = {}
    peer = run_peer(args) if args.peer else None
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            cmd = [sys.executable, __file__, "--worker", model, "--loss", args.loss]
            cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
            cmd += ["--device", args.device, "--data", str(args.data)]
            cmd += ["--precisions", precision, *(f"--set={s}" for s in args.sets)]
            cmd += ["--config", str(args.config)] if args.config else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            name = model if precision == "auto" else f"{model} ({precision})"
            if proc.returncode != 0:
                print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    first = next(iter(rows.values()), None)
    where = f"{first['device']} ({first['gpu'] or str(first['threads']) + ' threads'})" if first else "?"
    print(f"\nBeauty, loss {args.loss}, batch {args.batch_size}, {args.epochs} epoch(s), {where}")
    print("| model | targets/s | s/epoch | valid eval s | test eval s | peak RSS MB | GPU MB | x RecBole |")
    print("|---|---|---|---|---|---|---|---|")
    if peer is not None:
        print(
            f"| RecBole SASRec (peer) | {peer['targets_per_second']:.0f} | {peer['seconds_per_epoch']:.1f} | "
            f"{peer['eval_seconds']:.1f} | - | - | - | 1 |"
        )
    for m, r in rows.items():
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        ratio = r["targets_per_second"] / peer["targets_per_second"] if peer else None
        r["x_recbole"] = ratio
        times = f"{r['valid_eval_seconds']:.1f} | {r['test_eval_seconds']:.1f}"
        print(
            f"| {m} | {r['targets_per_second']:.0f} | {r['seconds_per_epoch']:.1f} | {times} | "
            f"{r['peak_rss_mb']:.0f} | {gpu} | {f'{ratio:.1f}x' if ratio is not None else '-'} |"
        )
    print(json.dumps({"benchmark": "train_speed", "loss": args.loss, "peer": peer, "results": rows}))


def run_peer(args: argparse.Namespace) -> dict | None:
    """RecBole's SASRec through recbole_peer.py in RecBole's own interpreter; its JSON line (or None)."""
    threads = os.environ.get("OMP_NUM_THREADS", "0")
    cmd = [str(args.peer), str(Path(__file__).with_name("recbole_peer.py")), "--data", str(args.data)]
    cmd += ["--epochs", str(args.epochs), "--max-seconds", "1e9", "--threads", threads]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"the RecBole peer failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    peer = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"RecBole peer: {peer['targets_per_second']} targets/s", file=sys.stderr, flush=True)
    return peer


if __name__ == "__main__":
    main()
