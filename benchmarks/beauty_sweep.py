"""Many Beauty configurations at once: one `benchmarks/beauty.py` process per configuration (one seed each,
one CPU thread each), each under a wall-clock budget, then one table of their test figures. For a machine
with many cores or a GPU; on this 2-core machine run two at a time.

    .venv/bin/python benchmarks/beauty_sweep.py --parallel 2 --max-seconds 3600 --only sasrec-ce,ssrf-ce-tie
    python3 benchmarks/beauty_sweep.py --parallel 14 --max-seconds 400 --out $OUT/sweep   # GPU machine

Ends with one JSON line: {config: {hr@10, ndcg@10, epochs_run, best_epoch, ...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "beauty.py"

# name -> (model, loss, overrides)
CONFIGS: dict[str, tuple[str, str, list[str]]] = {
    "sasrec-ce": ("sasrec", "ce", []),
    "sasrec-ce-d02": ("sasrec", "ce", ["model_options.dropout=0.2"]),
    "sasrec-ce-postln": ("sasrec", "ce", ["model_options.pre_ln=false"]),
    "sasrec-bce": ("sasrec", "bce", ["train.negatives=1"]),
    "ssrf-bce": ("ssrf", "bce", []),
    "ssrf-ce-tie": ("ssrf", "ce", ["model_options.tie_output=true"]),
    "ssrf-ce-tie-d05": ("ssrf", "ce", ["model_options.tie_output=true", "model_options.dropout=0.5"]),
    "ssrf-ce-tie-d05-nouser": (
        "ssrf",
        "ce",
        ["model_options.tie_output=true", "model_options.dropout=0.5", "model_options.use_user=false"],
    ),
    "ssrf-ce-tie-preln-d05": (
        "ssrf",
        "ce",
        ["model_options.tie_output=true", "model_options.dropout=0.5", "model_options.pre_ln=true"],
    ),
    "ssrf-ce-free-d05": ("ssrf", "ce", ["model_options.dropout=0.5"]),
    "ssrf-uc-ce-tie-d05": ("ssrf-uc", "ce", ["model_options.tie_output=true", "model_options.dropout=0.5"]),
    "ssrf-o-ce-tie-d05": ("ssrf-o", "ce", ["model_options.tie_output=true", "model_options.dropout=0.5"]),
    "fdsa-ce": ("fdsa", "ce", []),
    "caser-bce": ("caser", "bce", []),
    "gru4rec-ce": ("gru4rec", "ce", []),
    "cosrec-ce": ("cosrec", "ce", []),
}
# Round 2: SSRF (ce, tied output, dropout 0.2) overfits by epoch 15-20 while its attention branch is still
# learning, so these vary its regularisation; and SASRec / FDSA at a higher learning rate.
TIE = ["model_options.tie_output=true"]
for _name, _sets in {
    "wd1e-6": ["train.weight_decay=1e-6"],
    "wd1e-5": ["train.weight_decay=1e-5"],
    "wd1e-4": ["train.weight_decay=1e-4"],
    "nouser": ["model_options.use_user=false"],
    "nouser-wd1e-5": ["model_options.use_user=false", "train.weight_decay=1e-5"],
    "cnn32": ["model_options.conv_channels=[32, 64]"],
    "window3": ["model_options.window=3"],
    "lr2e-3": ["train.lr=2e-3"],
    "lr2e-3-wd1e-5": ["train.lr=2e-3", "train.weight_decay=1e-5"],
    "preln": ["model_options.pre_ln=true"],
    "fcdrop08": ["model_options.fc_dropout=0.8"],
}.items():
    CONFIGS[f"ssrf-ce-tie-{_name}"] = ("ssrf", "ce", TIE + _sets)
CONFIGS["ssrf-ce-free"] = ("ssrf", "ce", [])
CONFIGS["ssrf-uc-ce-tie"] = ("ssrf-uc", "ce", TIE)
CONFIGS["ssrf-o-ce-tie"] = ("ssrf-o", "ce", TIE)
CONFIGS["sasrec-ce-lr2e-3"] = ("sasrec", "ce", ["train.lr=2e-3"])
CONFIGS["fdsa-ce-lr2e-3"] = ("fdsa", "ce", ["train.lr=2e-3"])
ROUND2 = [n for n in CONFIGS if n.startswith("ssrf-ce-tie-") and "d05" not in n] + [
    "ssrf-ce-free", "ssrf-uc-ce-tie", "ssrf-o-ce-tie", "sasrec-ce-lr2e-3", "fdsa-ce-lr2e-3"
]  # fmt: skip
# Round 3: round 2's three helpful changes together (the CNN branch's fc dropout 0.8, no user embedding,
# weight decay 1e-4), then one more change at a time; the attention branch alone as a diagnostic; SASRec
# over 3 seeds.
FC8 = ["model_options.fc_dropout=0.8"]
NOUSER, WD4 = ["model_options.use_user=false"], ["train.weight_decay=1e-4"]
ROUND3: list[str] = []
for _name, _sets in {
    "tie-fcdrop08-nouser": TIE + FC8 + NOUSER,
    "tie-fcdrop08-nouser-wd1e-4": TIE + FC8 + NOUSER + WD4,
    "tie-fcdrop08-nouser-lr2e-3": TIE + FC8 + NOUSER + ["train.lr=2e-3"],
    "tie-fcdrop08-nouser-wd1e-4-lr2e-3": TIE + FC8 + NOUSER + WD4 + ["train.lr=2e-3"],
    "tie-fcdrop09-nouser-wd1e-4": [*TIE, "model_options.fc_dropout=0.9", *NOUSER, *WD4],
    "tie-fcdrop08-nouser-wd1e-4-cnnin02": TIE + FC8 + NOUSER + WD4 + ["model_options.cnn_input_dropout=0.2"],
    "tie-fcdrop08-nouser-wd1e-4-cnnin05-d05": TIE
    + FC8
    + NOUSER
    + WD4
    + ["model_options.cnn_input_dropout=0.5", "model_options.dropout=0.5"],
    "tie-fcdrop08-nouser-wd1e-4-d05": TIE + FC8 + NOUSER + WD4 + ["model_options.dropout=0.5"],
    "tie-fcdrop08-nouser-wd1e-4-b64": TIE + FC8 + NOUSER + WD4 + ["train.batch_size=64"],
    "free-fcdrop08-nouser-wd1e-4": FC8 + NOUSER + WD4,
    "tie-fcdrop08-wd1e-4": TIE + FC8 + WD4,
    "tie-fcdrop08-userdrop05-wd1e-4": TIE + FC8 + WD4 + ["model_options.user_dropout=0.5"],
    "tie-nocnn-nouser-diagnostic": TIE + NOUSER + ["model_options.use_cnn=false"],
}.items():
    CONFIGS[f"ssrf-ce-{_name}"] = ("ssrf", "ce", _sets)
    ROUND3.append(f"ssrf-ce-{_name}")
for _seed in (0, 1, 2):
    CONFIGS[f"sasrec-ce-lr2e-3-s{_seed}"] = ("sasrec", "ce", ["train.lr=2e-3", f"train.seed={_seed}"])
    ROUND3.append(f"sasrec-ce-lr2e-3-s{_seed}")
# Round 4: round 3's best (heavy dropout on both branches' inputs, no user embedding) over 3 seeds, at lr 2e-3
# (it was still improving when round 3's budget ended), and one change at a time on top of it.
BEST = [*TIE, *FC8, *NOUSER, *WD4, "model_options.cnn_input_dropout=0.5", "model_options.dropout=0.5"]
CONFIGS["ssrf-ce-best"] = ("ssrf", "ce", BEST)
ROUND4: list[str] = []
for _name, _sets in {
    "best-lr2e-3-s0": ["train.lr=2e-3"],
    "best-lr2e-3-s1": ["train.lr=2e-3", "train.seed=1"],
    "best-lr2e-3-s2": ["train.lr=2e-3", "train.seed=2"],
    "best-s1": ["train.seed=1"],
    "best-s2": ["train.seed=2"],
    "best-lr2e-3-user": ["train.lr=2e-3", "model_options.use_user=true"],
    "best-lr2e-3-free": ["train.lr=2e-3", "model_options.tie_output=false"],
    "best-lr2e-3-preln": ["train.lr=2e-3", "model_options.pre_ln=true"],
}.items():
    CONFIGS[f"ssrf-ce-{_name}"] = ("ssrf", "ce", BEST + _sets)
    ROUND4.append(f"ssrf-ce-{_name}")
# The zoo: every registered model once, each with the best settings found for it on Beauty (the paper's
# seven CTR models with bce and sampled negatives, as their papers train them; they validate on 2,000 users,
# since their full ranking is slow on a CPU; test is always every user). Meant for --seeds 3.
CONFIGS["pop"] = ("pop", "bce", ["model_options.learned=true"])  # the zoo row: learned, not counted
CONFIGS["sasrec-ce-ffn256"] = ("sasrec", "ce", ["model_options.ffn=256"])
CONFIGS["ssrf-ce-best-lr2e-3"] = ("ssrf", "ce", [*BEST, "train.lr=2e-3"])
CONFIGS["ssrf-uc-ce-best-lr2e-3"] = ("ssrf-uc", "ce", [*BEST, "train.lr=2e-3"])
CONFIGS["ssrf-o-ce-best-lr2e-3"] = ("ssrf-o", "ce", [*BEST, "train.lr=2e-3"])
CTR = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint")
for _m in CTR:
    CONFIGS[f"{_m}-bce"] = (_m, "bce", ["eval.valid_users=2000"])
ZOO = [
    "pop", "gru4rec-ce", "caser-bce", "cosrec-ce", "fdsa-ce-lr2e-3", "sasrec-ce-ffn256",
    "ssrf-bce", "ssrf-ce-best-lr2e-3", "ssrf-uc-ce-best-lr2e-3", "ssrf-o-ce-best-lr2e-3",
    *[f"{m}-bce" for m in CTR],
]  # fmt: skip
ROUNDS = {"round2": ROUND2, "round3": ROUND3, "round4": ROUND4, "zoo": ZOO, "ctr": [f"{m}-bce" for m in CTR]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="per configuration")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--only",
        default="",
        help="configuration names (a,b,...), or a round (round2, round3, round4, zoo, ctr); default all",
    )
    ap.add_argument(
        "--seeds",
        default="1",
        help="N: seeds 0..N-1 of every configuration; or a list (1,2) to add seeds to an earlier run",
    )
    ap.add_argument(
        "--set", dest="sets", action="append", default=[], help="an override for every configuration (last)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "beauty_sweep")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument(
        "--report",
        action="store_true",
        help="train nothing: make the table from the logs in --out (every seed's <config>#s<seed>.log)",
    )
    args = ap.parse_args()

    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    if args.only in ROUNDS:
        names = ROUNDS[args.only]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s): {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    try:
        listed = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds {args.seeds!r}: a count (3) or a list of seeds (1,2)")
    seeds = listed if "," in args.seeds else list(range(listed[0] if listed else 1))
    if args.report:
        done = {
            log.stem: _result(log, 0)
            for name in names
            for log in sorted(args.out.glob(f"{name}*.log"))
            if log.stem == name or log.stem.startswith(f"{name}#s")
        }
        if not done:
            sys.exit(f"no logs of {', '.join(names)} in {args.out}")
        _table(names, done, args.max_seconds)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    from beauty import BEAUTY  # the same default data as beauty.py
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig

    pipeline.prepare([args.data or BEAUTY], "s3rec", PrepareConfig(split="loo"))  # once, before the workers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    jobs = [f"{n}#s{seed}" if seeds != [0] else n for n in names for seed in seeds]
    pending, running, done = list(jobs), {}, {}
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.parallel:
            job = pending.pop(0)
            name, _, seed = job.partition("#s")
            model, loss, sets = CONFIGS[name]
            cmd = [
                sys.executable, str(BENCH), "--model", model, "--loss", loss, "--seeds", "1",
                "--epochs", str(args.epochs), "--patience", str(args.patience),
                "--out", str(args.out / "runs"),
                "--set", f"train.max_seconds={args.max_seconds}",
                "--set", f"train.batch_size={args.batch_size}",
                "--set", "eval.auc=false",
            ]  # fmt: skip
            for s in [*sets, *args.sets, *([f"train.seed={seed}"] if seed else [])]:
                cmd += ["--set", s]
            if args.data is not None:
                cmd += ["--data", str(args.data)]
            log = open(args.out / f"{job}.log", "w")  # noqa: SIM115 (closed when the process ends)
            running[job] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(2)
        for job, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[job]
                done[job] = _result(args.out / f"{job}.log", proc.returncode)
                elapsed = time.perf_counter() - t0
                print(f"[{elapsed:.0f} s] {job} finished (rc {proc.returncode})", flush=True)
    _table(names, done, args.max_seconds)


def _result(log: Path, returncode: int) -> dict:
    """A run's figures: the last line of its log (beauty.py's JSON), or the error it ended with."""
    lines = log.read_text().strip().splitlines()
    try:
        return json.loads(lines[-1]) if returncode == 0 else {"error": lines[-3:]}
    except (json.JSONDecodeError, IndexError):
        return {"error": lines[-3:]}


def _table(names: list[str], done: dict[str, dict], max_seconds: float) -> None:
    """One row per configuration over its seeds (mean ± std), then the JSON line."""
    keys = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")
    print("\n| configuration | " + " | ".join(keys) + " | epochs | s/epoch | train s | test eval s |")
    print("|---|" + "---|" * (len(keys) + 4))
    summary = {}
    for name in names:
        runs = [r for j, r in done.items() if j.partition("#s")[0] == name]
        failed = [r["error"] for r in runs if "error" in r]
        if failed:
            print(f"| {name} | failed: {failed[0]} |")
            summary[name] = {"error": failed}
            continue

        def agg(key: str, runs: list[dict] = runs) -> tuple[float, float]:
            values = [r[key]["mean"] for r in runs]
            return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

        figures = {k: agg(k) for k in (*keys, "epochs_run", "seconds_per_epoch", "best_epoch")}
        figures |= {k: agg(k) for k in ("train_seconds", "test_eval_seconds")}
        summary[name] = (
            {k: m for k, (m, _) in figures.items()}
            | {f"{k}_std": sd for k, (_, sd) in figures.items() if k in keys}
            | {"seeds": len(runs)}
        )
        pm = (lambda m, sd: f"{m:.4f} ± {sd:.4f}") if len(runs) > 1 else (lambda m, sd: f"{m:.4f}")
        cells = " | ".join(pm(*figures[k]) for k in keys)
        epochs = ", ".join(str(int(r["epochs_run"]["mean"])) for r in runs)
        times = f"{figures['seconds_per_epoch'][0]:.1f} | {figures['train_seconds'][0]:.0f} | "
        print(f"| {name} | {cells} | {epochs} | {times}{figures['test_eval_seconds'][0]:.1f} |")
    print(json.dumps({"benchmark": "beauty_sweep", "max_seconds": max_seconds, "results": summary}))


if __name__ == "__main__":
    main()
