"""Amazon Beauty (S3-Rec preprocessing), leave-one-out, full ranking, history masked: HR@K and NDCG@K,
mean +- std over seeds, with training and per-epoch time. Ends with one JSON line of the figures.

    .venv/bin/python benchmarks/beauty.py --model ssrf --seeds 3
    .venv/bin/python benchmarks/beauty.py --model ssrf --loss ce --seeds 3 --set model_options.dropout=0.3
    .venv/bin/python benchmarks/beauty.py --config configs/ssrf-beauty.toml --seeds 3   # the best found
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"
PUBLISHED = {  # HR@10, NDCG@10 on exactly this data and protocol
    "SASRec (S3-Rec paper)": (0.0605, 0.0318),
    "FDSA": (0.0407, 0.0208),
    "S3-Rec": (0.0647, 0.0327),
    "DIF-SR": (0.0890, 0.0440),
    "BSARec": (0.1008, 0.0611),
}
KEYS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the config's model, else ssrf")
    ap.add_argument("--config", type=Path, default=None, help="a run config (TOML) to start from")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--loss", default=None, help="bce (the paper's default), ce or sampled-softmax")
    ap.add_argument("--epochs", type=int, default=50, help="without --config (else the config's)")
    ap.add_argument("--patience", type=int, default=5, help="without --config (else the config's)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value overrides")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "beauty")
    ap.add_argument("--data", type=Path, default=BEAUTY)
    args = ap.parse_args()

    data = pipeline.prepare([args.data], "s3rec", PrepareConfig(split="loo"))
    runs = []
    base = pipeline.RunConfig.from_toml(args.config) if args.config else pipeline.RunConfig(model="ssrf")
    if args.model:
        base = dataclasses.replace(base, model=args.model)
    args.model = base.model
    args.loss = args.loss or (base.train.loss if args.config else "bce")
    steps = [] if args.config else [f"train.epochs={args.epochs}", f"train.patience={args.patience}"]
    for seed in range(args.seeds):
        cfg = base.override([f'train.loss="{args.loss}"', *steps, f"train.seed={seed}", *args.sets])
        sets = ([args.config.stem] if args.config else []) + args.sets
        tag = "-".join([args.model, args.loss, *[s.replace("=", "_").replace('"', "") for s in sets]])
        if len(tag) > 150:  # a folder name must stay under the file system's 255 bytes
            tag = f"{tag[:130]}-{hashlib.blake2b(tag.encode(), digest_size=6).hexdigest()}"
        out = args.out / f"{tag}-s{seed}-{int(time.time())}"
        result = pipeline.train(data, cfg, out)
        runs.append(result)
        print(
            f"seed {seed}: "
            + ", ".join(f"{k} {result['test'][k]:.4f}" for k in KEYS)
            + f"; {result['train_seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def agg(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    figures = {k: agg([r["test"][k] for r in runs]) for k in KEYS}
    figures["train_seconds"] = agg([r["train_seconds"] for r in runs])
    figures["seconds_per_epoch"] = agg([r["seconds_per_epoch"] for r in runs])
    figures["test_eval_seconds"] = agg([r["test_eval_seconds"] for r in runs])
    figures["epochs_run"] = agg([float(r["epochs_run"]) for r in runs])
    figures["best_epoch"] = agg([float(r["best_epoch"]) for r in runs])
    print(
        f"\n{args.model} ({args.loss}) on Beauty, leave-one-out, full ranking, history masked, "
        f"{args.seeds} seeds, {int(runs[0]['test']['users'])} test users"
    )
    print("| model | " + " | ".join(KEYS) + " | train s | s/epoch | eval s |")
    print("|---|" + "---|" * (len(KEYS) + 3))
    cells = [f"{figures[k]['mean']:.4f} ± {figures[k]['std']:.4f}" for k in KEYS]
    times = [f"{figures[k]['mean']:.1f}" for k in ("train_seconds", "seconds_per_epoch", "test_eval_seconds")]
    print(f"| {args.model} ({args.loss}) | " + " | ".join(cells) + " | " + " | ".join(times) + " |")
    for name, (hr, ndcg) in PUBLISHED.items():
        print(f"| {name} (published) | | {hr:.4f} | | | {ndcg:.4f} | | | | | |")
    print(
        json.dumps(
            {
                "benchmark": "beauty",
                "model": args.model,
                "loss": args.loss,
                "config": str(args.config) if args.config else None,
                "sets": args.sets,
                "seeds": args.seeds,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
