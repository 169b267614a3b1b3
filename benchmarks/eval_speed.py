"""Time full-ranking evaluation of a trained run (all test users x all items), median of repeats.

.venv/bin/python benchmarks/eval_speed.py --run runs/beauty/<run> --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ssrf import pipeline
from ssrf.dataset import snapshot
from ssrf.dataset.sequences import Sequences
from ssrf.evaluation.evaluate import evaluate
from ssrf.models.registry import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    cfg = pipeline.RunConfig.from_dict(
        {k: config[k] for k in ("model", "model_options", "data", "train", "eval")}
    )
    data = snapshot.load(args.run, config)
    seqs = Sequences.build(data)
    name, model = load_model(args.run / "best")
    times, result = [], {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = evaluate(model, seqs, args.split, config["protocol"], cfg.eval, model.cfg.max_len)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    users, items = int(result["users"]), seqs.n_items
    median = statistics.median(times)
    print(
        "| model | users | items | threads | median s | runs (s) | users/s |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {name} | {users} | {items} | {torch.get_num_threads()} | {median:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in times)} | {users / median:.0f} |"
    )
    print(
        json.dumps(
            {
                "benchmark": "eval_speed",
                "model": name,
                "users": users,
                "items": items,
                "threads": torch.get_num_threads(),
                "median_s": round(median, 3),
                "runs_s": [round(t, 3) for t in times],
                "auc": result.get("auc"),
            }
        )
    )


if __name__ == "__main__":
    main()
