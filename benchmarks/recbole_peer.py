"""The peer for benchmarks/train_speed.py: RecBole's SASRec on Amazon Beauty, in RecBole's own environment
(RecBole is not a dependency of ssrf). Same data, leave-one-out, full ranking; hidden size 64, 2 blocks,
1 head, feed-forward width 64 (as ssrf's SASRec), sequence length 50, dropout 0.5, full-softmax CE, batch 256.

    python3 -m venv /work/recbole-env
    /work/recbole-env/bin/pip install torch==2.13.0 "numpy<2" recbole==1.2.1
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=1 \
        /work/recbole-env/bin/python benchmarks/recbole_peer.py --max-seconds 900 --threads 1

Trains epoch by epoch until --epochs or the wall-clock budget (no epoch starts after it), validating after
each (NDCG@10, HR@10 over all items, history masked as RecBole does). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"


def write_atomic_files(src: Path, folder: Path) -> int:
    """Beauty.txt ("user item item ...", time-ordered) -> RecBole's Beauty.inter; the position is the time."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(src) as fin, open(folder / "Beauty.inter", "w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in fin:
            user, *items = line.split()
            for t, item in enumerate(items):
                out.write(f"{user}\t{item}\t{t}\n")
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BEAUTY)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="recbole-"))
    rows = write_atomic_files(args.data, tmp / "Beauty")
    cfg = {
        "data_path": str(tmp),
        "checkpoint_dir": str(tmp / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50,
        "hidden_size": 64,
        "inner_size": 64,
        "n_layers": 2,
        "n_heads": 1,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "learning_rate": 0.001,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "use_gpu": False,
        "device": "cpu",
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "log_wandb": False,
        "worker": 0,
    }
    config = Config(model="SASRec", dataset="Beauty", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    targets = len(train_data._dataset)
    epochs, began = [], time.perf_counter()
    for epoch in range(args.epochs):
        if epochs and time.perf_counter() - began >= args.max_seconds:
            break
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.perf_counter()
        result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        t2 = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            "loss": float(loss),
            "train_seconds": round(t1 - t0, 2),
            "targets_per_second": round(targets / (t1 - t0), 1),
            "eval_seconds": round(t2 - t1, 2),
            "valid_ndcg@10": float(result["ndcg@10"]),
            "valid_hr@10": float(result["hit@10"]),
            "elapsed": round(t2 - began, 1),
        }
        epochs.append(row)
        print(json.dumps(row), flush=True)
    best = max(epochs, key=lambda r: r["valid_ndcg@10"])
    version = __import__("recbole").__version__
    print(f"\nRecBole {version} SASRec on Beauty: {rows} interactions, {targets} targets")
    print("| epochs | s/epoch (median) | targets/s (median) | eval s | best valid NDCG@10 | at s |")
    print("|---|---|---|---|---|---|")
    med = sorted(r["train_seconds"] for r in epochs)[len(epochs) // 2]
    tps = sorted(r["targets_per_second"] for r in epochs)[len(epochs) // 2]
    ev = sorted(r["eval_seconds"] for r in epochs)[len(epochs) // 2]
    print(f"| {len(epochs)} | {med} | {tps} | {ev} | {best['valid_ndcg@10']:.4f} | {best['elapsed']} |")
    print(
        json.dumps(
            {
                "benchmark": "recbole_peer",
                "threads": torch.get_num_threads(),
                "targets_per_epoch": targets,
                "seconds_per_epoch": med,
                "targets_per_second": tps,
                "eval_seconds": ev,
                "best_valid_ndcg@10": best["valid_ndcg@10"],
                "best_valid_hr@10": best["valid_hr@10"],
                "epochs": epochs,
            }
        )
    )


if __name__ == "__main__":
    main()
