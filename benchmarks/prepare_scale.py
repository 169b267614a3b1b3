"""Data preparation at scale: `ssrf data prepare` on a synthetic Taobao UserBehavior file.

    python benchmarks/prepare_scale.py                      # 10M rows
    python benchmarks/prepare_scale.py --rows 100_000_000   # full Taobao size

1. Generates (NumPy, in chunks written by Polars) a UserBehavior-format CSV with no header:
   user_id,item_id,category_id,behavior,unix seconds. It is skewed like the real file: about 100 events per
   user (gamma-distributed, as in the real sample), Zipf-Mandelbrot item popularity, items mapped to a few
   thousand categories (themselves Zipf-popular), the real behaviour mix (pv 89.7%, cart 5.4%, fav 2.7%,
   buy 2.1%), a daily cycle in China time, rows sorted by user then time; plus a small share of dirty rows:
   out-of-window timestamps and exact duplicates. Generation time is reported separately.
2. Runs `ssrf data prepare FILE --format taobao --cache-dir DIR` as a subprocess and measures its wall time
   and peak RSS (`os.wait4` rusage of that one child).
3. Prints a table and ends with exactly one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

WINDOW = (1511539200, 1512316800)  # 2017-11-25 00:00 .. 2017-12-03 24:00, China time (UTC+8)
BEHAVIORS = ("pv", "fav", "cart", "buy")
BEHAVIOR_MIX = (0.897, 0.027, 0.055, 0.021)  # the embedded real sample's shares, in BEHAVIORS order
EVENTS_PER_USER = 100.0
USER_SHAPE = 1.3  # gamma shape of events per user (real sample: mean ~100, sd ~90, median ~74)
ITEM_UNIVERSE = 0.05  # candidate items per row (the real file: 4.16M items for 100M rows)
ITEM_ZIPF = (1.0, 200.0)  # weight of rank r: (r + q) ** -a
CATEGORIES = 5000
CATEGORY_ZIPF = (1.0, 10.0)
OUT_OF_WINDOW = 0.0002  # share of rows with a timestamp outside the window
DUPLICATES = 0.001  # share of rows that exactly repeat the row before
CHUNK_ROWS = 2_000_000
# events per day and per hour (China time) relative to the mean, as in the embedded real sample
# (src/ssrf/data/taobao_demo.csv.gz): busier evenings, and a busier last weekend (Dec 2-3)
DAY_WEIGHTS = np.array([0.9, 0.94, 0.88, 0.94, 0.95, 0.93, 1.03, 1.23, 1.19])
HOUR_WEIGHTS = np.array(
    [
        *(0.8, 0.36, 0.19, 0.1, 0.14, 0.19, 0.38, 0.63, 0.76, 0.97, 1.11, 1.09),
        *(0.97, 1.22, 1.22, 1.33, 1.27, 1.09, 1.13, 1.55, 1.87, 2.12, 2.02, 1.47),
    ]
)


def _zipf_cdf(n: int, a: float, q: float) -> np.ndarray:
    w = (np.arange(1, n + 1, dtype=np.float64) + q) ** -a
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def generate(path: Path, rows: int, seed: int) -> dict[str, int]:
    """Write `rows` lines to `path`; returns how many dirty rows of each kind were planted."""
    rng = np.random.default_rng(seed)
    n_dup = int(rows * DUPLICATES)
    base = rows - n_dup  # rows before the duplicates are inserted
    n_users = max(1, round(base / EVENTS_PER_USER))
    g = rng.gamma(USER_SHAPE, EVENTS_PER_USER / USER_SHAPE, n_users)
    counts = 1 + rng.multinomial(base - n_users, g / g.sum())
    user_ids = np.sort(rng.choice(np.arange(1, int(n_users * 1.03) + 2), n_users, replace=False))

    n_items = max(10, int(rows * ITEM_UNIVERSE))
    item_cdf = _zipf_cdf(n_items, *ITEM_ZIPF)
    item_ids = rng.choice(np.arange(1, max(5_163_071, int(n_items * 1.25))), n_items, replace=False)
    cat_ids = rng.choice(np.arange(1, 5_162_430), CATEGORIES, replace=False)
    item_cat = cat_ids[np.searchsorted(_zipf_cdf(CATEGORIES, *CATEGORY_ZIPF), rng.random(n_items))]

    day_p = DAY_WEIGHTS / DAY_WEIGHTS.sum()
    hour_p = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
    enum = pl.Enum(BEHAVIORS)
    planted = {"duplicate": 0, "out_of_window": 0}
    ends = np.cumsum(counts)
    with open(path, "wb") as fh:
        start_user = 0
        while start_user < n_users:
            first_row = ends[start_user - 1] if start_user else 0
            stop_user = int(np.searchsorted(ends, first_row + CHUNK_ROWS, side="right"))
            stop_user = max(stop_user, start_user + 1)
            c = counts[start_user:stop_user]
            n = int(c.sum())
            u_idx = np.repeat(np.arange(start_user, stop_user), c)
            item = np.searchsorted(item_cdf, rng.random(n))
            beh = rng.choice(4, n, p=BEHAVIOR_MIX).astype(np.uint8)
            ts = (
                WINDOW[0]
                + rng.choice(len(day_p), n, p=day_p) * 86400
                + rng.choice(24, n, p=hour_p) * 3600
                + rng.integers(0, 3600, n)
            )
            order = np.lexsort((ts, u_idx))
            u_idx, item, beh, ts = u_idx[order], item[order], beh[order], ts[order]
            bad = np.flatnonzero(rng.random(n) < OUT_OF_WINDOW)
            # before the window (a few days early, or 1970-ish junk) or after it
            early = rng.random(bad.size) < 0.5
            ts[bad] = np.where(
                early,
                WINDOW[0] - rng.integers(1, 5 * 86400, bad.size),
                WINDOW[1] + rng.integers(0, 30 * 86400, bad.size),
            )
            ts[bad[rng.random(bad.size) < 0.1]] = rng.integers(0, 10**6, 1)[0]
            planted["out_of_window"] += int(bad.size)
            # exact duplicates, right after their original (the share of all rows written in this chunk)
            k = n_dup * n // base if stop_user < n_users else n_dup - planted["duplicate"]
            take = np.sort(np.concatenate([np.arange(n), rng.integers(0, n, k)]))
            planted["duplicate"] += k
            frame = pl.DataFrame(
                {
                    "u": user_ids[u_idx[take]],
                    "i": item_ids[item[take]],
                    "c": item_cat[item[take]],
                    "b": pl.Series(beh[take]).replace_strict(dict(enumerate(BEHAVIORS)), return_dtype=enum),
                    "t": ts[take],
                }
            )
            frame.write_csv(fh, include_header=False)
            start_user = stop_user
    return planted


def run_prepare(
    ssrf: list[str], csv: Path, cache: Path, log: Path, max_rss_gb: float
) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (GB) of one `ssrf data prepare` subprocess, and
    its stdout (see `run_measured`)."""
    cmd = [*ssrf, "data", "prepare", str(csv), "--format", "taobao", "--cache-dir", str(cache)]
    got = run_measured(cmd, log, max_rss_gb)
    return got["wall_s"], got["cpu_s"], got["peak_rss_mib"] / 1024, got["stdout"].strip()


def run_measured(cmd: list[str], log: Path, max_rss_gb: float) -> dict:
    """Wall s, CPU s and peak RSS (MiB) of one subprocess, and its stdout; exits if it fails.

    The peak is the kernel's (`os.wait4` rusage of that one child). A watchdog kills the child if its RSS
    passes `max_rss_gb`: a run too big for the machine then fails alone, without the OOM killer."""
    print("$ " + " ".join(cmd), flush=True)
    stop, tripped = threading.Event(), threading.Event()
    with open(log, "wb") as err, tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)

        def watch() -> None:
            page = os.sysconf("SC_PAGE_SIZE")
            while not stop.is_set():
                try:
                    with open(f"/proc/{proc.pid}/statm") as fh:
                        rss = int(fh.read().split()[1]) * page / 1024**3
                except (OSError, IndexError, ValueError):
                    return
                if rss > max_rss_gb:
                    tripped.set()
                    proc.kill()
                    return
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        out.seek(0)
        stdout = out.read().decode()
    code = os.waitstatus_to_exitcode(status)
    rss_mib = usage.ru_maxrss / 1024  # KiB on Linux
    if code != 0:
        why = f"killed at RSS > {max_rss_gb} GB" if tripped.is_set() else f"exit {code}"
        sys.exit(f"{log.read_text()[-3000:]}\n{cmd[0]} failed ({why}, {wall:.0f} s, peak {rss_mib:.0f} MiB)")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(rss_mib),
        "stdout": stdout,
    }


def _ssrf_command() -> list[str]:
    beside = Path(sys.executable).with_name("ssrf")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ssrf")
    return [found] if found else [sys.executable, "-m", "ssrf.cli"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ssrf-scale"))
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the CSV and the prepared folder; a later --keep run reuses the CSV",
    )
    ap.add_argument(
        "--max-rss-gb", type=float, default=20.0, help="kill `ssrf data prepare` if its RSS passes this"
    )
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    csv = args.workdir / f"taobao_{args.rows}_s{args.seed}.csv"
    cache = args.workdir / f"prepared_{args.rows}_s{args.seed}"
    gen_s: float | None = None
    if csv.exists() and args.keep:
        print(f"reusing {csv}", flush=True)
    else:
        t0 = time.perf_counter()
        planted = generate(csv, args.rows, args.seed)
        gen_s = time.perf_counter() - t0
        print(f"generated {csv} in {gen_s:.1f} s (planted {planted})", flush=True)
    csv_gb = csv.stat().st_size / 1e9
    shutil.rmtree(cache, ignore_errors=True)
    try:
        load = os.getloadavg()[0]  # other work on the machine slows the wall time down; say how much
        wall, cpu, rss, folder = run_prepare(
            _ssrf_command(), csv, cache, args.workdir / "prepare.log", args.max_rss_gb
        )
        meta = json.loads((Path(folder) / "meta.json").read_text())
    finally:
        if not args.keep:
            csv.unlink(missing_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
    figures = {
        "rows": meta["rows_read"],
        "wall_s": round(wall, 2),
        "rows_per_s": round(meta["rows_read"] / wall),
        "peak_rss_gb": round(rss, 3),
        "cpu_s": round(cpu, 1),
        "load_1m_before": round(load, 2),
        "gen_s": None if gen_s is None else round(gen_s, 1),
        "csv_gb": round(csv_gb, 2),
        "events": meta["stats"]["events"],
        "users": meta["stats"]["users"],
        "items": meta["stats"]["items"],
        "dropped": meta["dropped"],
    }
    if figures["rows"] != args.rows:
        sys.exit(f"prepare read {figures['rows']} rows, expected {args.rows}")
    flat = {k: v for k, v in figures.items() if k != "dropped"}
    flat |= {f"dropped.{r}": n for r, n in figures["dropped"].items()}
    print(f"\n{'figure':<24} {'value':>16}")
    for k, v in flat.items():
        print(f"{k:<24} {v:>16,}" if isinstance(v, int | float) else f"{k:<24} {v!s:>16}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
