"""The effect of PyTorch's thread count on `ssrf demo`, alone and beside a job that holds one core.

    .venv/bin/python benchmarks/threads.py [--repeats 3] [--epochs 10]

For each condition (alone / one core busy) and each thread choice (every core, which is PyTorch's default;
one thread; `auto`, ssrf's default: the cores not busy by the load average) it runs `ssrf demo` in a fresh
process and reads the training seconds from results.json; the busy core is a spinning Python process
started before the demo. Prints a table of medians and ends with one JSON line."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SSRF = [sys.executable, "-m", "ssrf"]


def spin(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        pass


def demo_seconds(threads: str, epochs: int, tmp: Path, cache: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp)) / "run"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the choice is --threads' alone
    extra = [] if threads == "auto" else ["--threads", threads]
    cmd = [*SSRF, "demo", "--epochs", str(epochs), "--out", str(out), "--cache-dir", str(cache), *extra]
    subprocess.run(cmd, check=True, env=env, capture_output=True, cwd=tmp)
    return json.loads((out / "results.json").read_text())["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    choices = [str(cores), "1", "auto"]
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "cache"
        demo_seconds("1", 1, tmp, cache)  # prepares the data once, outside the timings
        for condition in ("alone", "one core busy"):
            stop = multiprocessing.Event()
            spinner = multiprocessing.Process(target=spin, args=(stop,)) if condition != "alone" else None
            if spinner is not None:
                spinner.start()
                time.sleep(65)  # let the 1-minute load average see the busy core, as `auto` reads it
            try:
                for choice in choices:
                    times = [demo_seconds(choice, args.epochs, tmp, cache) for _ in range(args.repeats)]
                    rows.setdefault(condition, {})[choice] = statistics.median(times)
            finally:
                stop.set()
                if spinner is not None:
                    spinner.join()
            time.sleep(0 if spinner is None else 65)  # the load average settles before the next condition
    label = {str(cores): f"{cores} (PyTorch's default)", "1": "1", "auto": "auto (ssrf's default)"}
    print(f"\n`ssrf demo --epochs {args.epochs}` training seconds, median of {args.repeats}, {cores} cores\n")
    print("| threads | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for choice in choices:
        print(f"| {label[choice]} | " + " | ".join(f"{rows[c][choice]:.1f}" for c in rows) + " |")
    print(json.dumps({"benchmark": "threads", "cores": cores, "epochs": args.epochs, "train_seconds": rows}))


if __name__ == "__main__":
    main()
