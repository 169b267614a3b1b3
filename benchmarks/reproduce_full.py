"""`ssrf reproduce` on full-size files: the paper's user sampling at 10M+ rows, timed and measured.

    python benchmarks/reproduce_full.py                          # Taobao 10M rows, Retailrocket 3M + 3M
    python benchmarks/reproduce_full.py --rows 30_000_000 --rr-events 0   # Taobao only, 30M rows
    python benchmarks/reproduce_full.py --rows 0 --rr-events 2_756_101 --rr-props 20_275_902  # real RR size

1. Generates files in the real formats, in a temporary folder outside the repository (deleted afterwards):
   - Taobao `UserBehavior.csv` (no header: user,item,category,behavior,unix seconds in the 2017-11-25..12-03
     window, China time) with the generator of benchmarks/prepare_scale.py: ~100 events per user
     (gamma), Zipf-Mandelbrot items, the real behaviour mix, 0.02% out-of-window and 0.1% duplicate rows;
   - Retailrocket `events.csv` (`timestamp,visitorid,event,itemid,transactionid`, ms, 2015-05-03..09-18)
     with heavy-tailed visitor activity (1 + floor(0.8 x Lomax(1.5)) events: 70% of visitors with one
     event, 14% with two, as the shared real sample of 5,000 visitors: 69.9%, 14.7%, mean 1.88; 0.51
     visitors per event as the real file), Zipf-Mandelbrot items, the real mix (view 96.7%, addtocart 2.5%,
     transaction 0.8%, each transaction with its id); `item_properties_part1.csv` and `_part2.csv`
     (`timestamp,itemid,property,value`, weekly snapshots in ms) with a `categoryid` row for every item (10%
     of items change category at a later snapshot), `available` rows and other numeric properties with
     the real file's value shapes (`n552.000 639502`); `category_tree.csv` (`categoryid,parentid`, 1,669
     categories, 25 roots).
   Each generator runs in its own process: a measured child's peak RSS would otherwise include this
   process's RSS at fork time (see `_generate`).
2. Runs `ssrf reproduce --parts table1 --datasets KEY --KEY FILES --cache-dir DIR` (prepare only: cleaning,
   the seeded user sample, k-core, the temporal split) as a subprocess, with the paper's sample (Table I:
   21,960 Taobao users, 6,040 Retailrocket visitors) and again with `--no-sample`; wall time, CPU time and
   peak RSS are the kernel's figures for that one child (`os.wait4`). A watchdog kills a child whose RSS
   passes --max-rss-gb.
3. In one more subprocess per dataset, times the steps in-process: reading + cleaning (for Retailrocket
   this includes the as-of join of `categoryid` onto the events) and the sampling step (the temporal
   cuts, which sort every timestamp, then `prepare.sample_users`), each with its peak RSS (VmHWM, reset
   before the step through /proc/self/clear_refs).
4. Prints a table and ends with exactly one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_scale import _ssrf_command, _zipf_cdf, run_measured
from prepare_scale import generate as generate_taobao

RR_START, RR_END = 1430622000, 1442545200  # 2015-05-03 03:00 .. 2015-09-18 03:00 UTC, as the real events
RR_EVENTS = ("view", "addtocart", "transaction")
RR_MIX = (0.967, 0.025, 0.008)  # the real events.csv: 2,664,312 / 69,332 / 22,457 of 2,756,101
RR_VISITORS_PER_EVENT = 0.51  # the real file: 1,407,580 visitors for 2,756,101 events
RR_ITEMS_PER_EVENT = 0.085  # 235,061 items in the events
RR_ITEM_ZIPF = (0.9, 10.0)
RR_PROP_ITEMS = 1.5  # items with properties per item with events (the real file: 417,053 vs 235,061)
RR_CATEGORIES = 1669  # the real category_tree.csv
RR_ROOTS = 25
RR_CATEGORY_ZIPF = (1.0, 5.0)
RR_CHANGE = 0.1  # share of items whose categoryid changes at a later snapshot
RR_SNAPSHOTS = 1431226800 + 7 * 86400 * np.arange(19)  # Sundays 2015-05-10 .. 2015-09-13, 03:00 UTC
RR_PROPERTIES = 1100  # other properties, named by number as in the real file
CHUNK = 2_000_000


def _write(frame: pl.DataFrame, fh, header: bool) -> None:
    frame.write_csv(fh, include_header=header)


def generate_retailrocket(folder: Path, events: int, props: int, seed: int) -> dict[str, Path]:
    """events.csv, item_properties_part1.csv, item_properties_part2.csv, category_tree.csv in `folder`."""
    rng = np.random.default_rng(seed)
    # the category tree: 25 roots, each other category under an earlier one (depth stays small)
    cat_ids = rng.choice(np.arange(0, 1700), RR_CATEGORIES, replace=False)
    parents = np.full(RR_CATEGORIES, -1)
    for i in range(RR_ROOTS, RR_CATEGORIES):
        parents[i] = rng.integers(0, max(RR_ROOTS, i // 4))
    tree = folder / "category_tree.csv"
    pl.DataFrame(
        {
            "categoryid": cat_ids,
            "parentid": pl.Series([None if p < 0 else int(cat_ids[p]) for p in parents], dtype=pl.Int64),
        }
    ).write_csv(tree)
    has_child = np.zeros(RR_CATEGORIES, dtype=bool)
    has_child[parents[parents >= 0]] = True
    leaves = cat_ids[~has_child]

    n_items = max(10, int(events * RR_ITEMS_PER_EVENT))
    n_prop_items = int(n_items * RR_PROP_ITEMS)
    item_ids = rng.choice(np.arange(1, max(466_868, n_prop_items * 2)), n_prop_items, replace=False)
    item_cdf = _zipf_cdf(n_items, *RR_ITEM_ZIPF)  # events touch the first n_items of them
    item_cat = leaves[np.searchsorted(_zipf_cdf(leaves.size, *RR_CATEGORY_ZIPF), rng.random(n_prop_items))]

    # visitors: 1 + floor(0.8 * Lomax(1.5)) events each (P(1) = 0.70, mean about 2, a long tail)
    n_visitors = max(1, int(events * RR_VISITORS_PER_EVENT))
    counts = np.minimum(1 + np.floor(0.8 * rng.pareto(1.5, n_visitors)).astype(np.int64), 8000)
    counts = counts[: int(np.searchsorted(np.cumsum(counts), events)) + 1]
    counts[-1] -= int(counts.sum()) - events
    visitor_ids = rng.choice(np.arange(0, 1_407_580 * 2), counts.size, replace=False)
    ends = np.cumsum(counts)
    out = folder / "events.csv"
    next_tid, start_v = 0, 0
    span = RR_END - RR_START
    with open(out, "wb") as fh:
        while start_v < counts.size:
            first = ends[start_v - 1] if start_v else 0
            stop_v = max(start_v + 1, int(np.searchsorted(ends, first + CHUNK, side="right")))
            c = counts[start_v:stop_v]
            n = int(c.sum())
            v = np.repeat(np.arange(start_v, stop_v), c)
            # a visitor's events cluster after a start time (exponential, mean 2 days), wrapped in the span
            t0 = rng.integers(0, span, stop_v - start_v)
            ts_s = RR_START + (t0[v - start_v] + rng.exponential(2 * 86400, n).astype(np.int64)) % span
            ts_ms = ts_s * 1000 + rng.integers(0, 1000, n)
            kind = rng.choice(3, n, p=RR_MIX)
            tid = np.full(n, -1)
            buy = kind == 2
            tid[buy] = next_tid + np.arange(int(buy.sum()))
            next_tid += int(buy.sum())
            frame = pl.DataFrame(
                {
                    "timestamp": ts_ms,
                    "visitorid": visitor_ids[v],
                    "event": pl.Series(kind).replace_strict(
                        dict(enumerate(RR_EVENTS)), return_dtype=pl.String
                    ),
                    "itemid": item_ids[np.searchsorted(item_cdf, rng.random(n))],
                    "transactionid": pl.Series(tid).replace(-1, None),
                }
            )
            _write(frame, fh, header=start_v == 0)
            start_v = stop_v

    # item properties: categoryid at an item's first snapshot (and a later change for some), `available`,
    # then other properties up to `props` rows; shuffled, split in two parts as the real files
    first_snap = rng.integers(0, RR_SNAPSHOTS.size, n_prop_items)
    cat_rows = pl.DataFrame(
        {
            "timestamp": RR_SNAPSHOTS[first_snap] * 1000,
            "itemid": item_ids,
            "property": "categoryid",
            "value": item_cat.astype(str),
        }
    )
    changed = np.flatnonzero(rng.random(n_prop_items) < RR_CHANGE)
    later = np.minimum(first_snap[changed] + rng.integers(1, 8, changed.size), RR_SNAPSHOTS.size - 1)
    change_rows = pl.DataFrame(
        {
            "timestamp": RR_SNAPSHOTS[later] * 1000,
            "itemid": item_ids[changed],
            "property": "categoryid",
            "value": leaves[rng.integers(0, leaves.size, changed.size)].astype(str),
        }
    )
    avail = rng.integers(0, n_prop_items, max(0, props // 10))
    avail_rows = pl.DataFrame(
        {
            "timestamp": RR_SNAPSHOTS[rng.integers(0, RR_SNAPSHOTS.size, avail.size)] * 1000,
            "itemid": item_ids[avail],
            "property": "available",
            "value": rng.integers(0, 2, avail.size).astype(str),
        }
    )
    n_other = max(0, props - cat_rows.height - change_rows.height - avail_rows.height)
    other_items = rng.integers(0, n_prop_items, n_other)
    prop_no = np.searchsorted(_zipf_cdf(RR_PROPERTIES, 1.0, 2.0), rng.random(n_other))
    a, b = rng.integers(1, 1000, n_other), rng.integers(1, 1_000_000, n_other)
    other_rows = pl.DataFrame(
        {
            "timestamp": RR_SNAPSHOTS[rng.integers(0, RR_SNAPSHOTS.size, n_other)] * 1000,
            "itemid": item_ids[other_items],
            "property": pl.Series(prop_no).cast(pl.String),
            "value": pl.select(
                pl.concat_str(
                    [
                        pl.lit("n"),
                        pl.lit(pl.Series(a)).cast(pl.String),
                        pl.lit(".000 "),
                        pl.lit(pl.Series(b)).cast(pl.String),
                    ]
                )
            ).to_series(),
        }
    )
    allp = pl.concat([cat_rows, change_rows, avail_rows, other_rows]).sample(
        fraction=1.0, shuffle=True, seed=seed
    )
    half = int(allp.height * 0.54)  # the real part1 has 10,999,999 of 20,275,902 rows
    p1, p2 = folder / "item_properties_part1.csv", folder / "item_properties_part2.csv"
    allp.slice(0, half).write_csv(p1)
    allp.slice(half).write_csv(p2)
    return {"events": out, "part1": p1, "part2": p2, "tree": tree}


# ------------------------------------------------------------------------------------------ measuring


def _status(field: str) -> int:
    """VmRSS / VmHWM of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return -1


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def step_timing(key: str, files: list[str], n: int | None) -> None:
    """In-process: read + clean, then the sampling step alone, as `prepare_dataset` runs them; prints one
    JSON line."""
    from ssrf.dataset import prepare as P
    from ssrf.io import read
    from ssrf.io.schema import TS
    from ssrf.reproduce.datasets import dataset_specs

    spec = dataset_specs(files={key: files}, sample_users={key: n})[key]
    cfg = spec.prepare
    base = _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    events, _ = P.clean(read(spec.fmt, files), cfg)
    clean_s, clean_peak, after_clean = time.perf_counter() - t0, _status("VmHWM"), _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    kwargs = {}
    if "before" in inspect.signature(P.sample_users).parameters and hasattr(P, "temporal_cuts"):
        kwargs["before"] = P.temporal_cuts(events.get_column(TS), cfg)[0]  # the training period's end
    sampled = P.sample_users(events, cfg.sample_users, cfg.seed, **kwargs)
    sample_s, sample_peak = time.perf_counter() - t0, _status("VmHWM")
    print(
        json.dumps(
            {
                "rows_clean": events.height,
                "rows_sampled": sampled.height,
                "clean_s": round(clean_s, 2),
                "clean_peak_mib": clean_peak,
                "rss_before_clean_mib": base,
                "rss_after_clean_mib": after_clean,
                "sample_s": round(sample_s, 3),
                "sample_peak_mib": sample_peak,
                "sample_extra_mib": sample_peak - after_clean,
                "sample_among_training_users": "before" in kwargs,
            }
        )
    )


def _artifacts(stdout: str) -> Path:
    lines = [x for x in stdout.splitlines() if x.startswith("artifacts: ")]
    if len(lines) != 1:
        sys.exit(f"expected one prepared folder in the output, got:\n{stdout[-2000:]}")
    return Path(lines[0].removeprefix("artifacts: "))


def measure(key: str, files: list[Path], cache: Path, work: Path, args, gen_s: float) -> list[dict]:
    ssrf = _ssrf_command()
    file_args = [f"--{key}", ",".join(map(str, files))]
    rows = []
    for label, extra in (("paper sample", []), ("no sample", ["--no-sample"])):
        cmd = [*ssrf, "reproduce", "--parts", "table1", "--datasets", key, *file_args, *extra]
        res = run_measured(
            [*cmd, "--cache-dir", str(cache)], work / f"{key}-{label[:2]}.log", args.max_rss_gb
        )
        meta = json.loads((_artifacts(res["stdout"]) / "meta.json").read_text())
        shutil.rmtree(cache, ignore_errors=True)
        s, d = meta["stats"], meta["dropped"]
        rows.append(
            {
                "dataset": key,
                "run": label,
                "sample_users": meta["options"]["sample_users"],
                "rows": meta["rows_read"],
                "files_mib": round(sum(f.stat().st_size for f in files) / 2**20),
                "gen_s": round(gen_s, 1),
                "wall_s": res["wall_s"],
                "cpu_s": res["cpu_s"],
                "peak_rss_mib": res["peak_rss_mib"],
                "users": s["users"],
                "items": s["items"],
                "events": s["events"],
                "categories": s["categories"],
                "test_users": meta["split_info"]["test_users"],
                "sampled_out": d.get("sampled_out", 0),
                "k_core": d.get("k_core", 0),
                "unseen": d.get("unseen_user", 0) + d.get("unseen_item", 0),
            }
        )
    n = rows[0]["sample_users"]
    cmd = [sys.executable, __file__, "--step", key, "0" if n is None else str(n), *map(str, files)]
    step = run_measured(cmd, work / f"{key}-step.log", args.max_rss_gb)
    rows[0]["steps"] = json.loads(step["stdout"].strip().splitlines()[-1])
    return rows


def _generate(argv: list[str]) -> dict:
    """Generate the files in a child process. A child's peak RSS (`ru_maxrss`) is at least its parent's
    RSS when it was forked (Linux keeps the larger of the pre-exec and the new high-water marks), so
    this process must stay small: generating in-process made every measured run report the generator's
    3.2 GB instead of its own peak."""
    out = subprocess.run(
        [sys.executable, __file__, "--generate", *argv], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--step":
        key, n, *files = sys.argv[2:]
        step_timing(key, files, int(n) or None)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        kind, folder, *nums = sys.argv[2:]
        t0 = time.perf_counter()
        if kind == "taobao":
            planted = generate_taobao(Path(folder) / "UserBehavior.csv", int(nums[0]), int(nums[1]))
        else:
            generate_retailrocket(Path(folder), int(nums[0]), int(nums[1]), int(nums[2]))
            planted = {}
        print(json.dumps({"gen_s": round(time.perf_counter() - t0, 1), "planted": planted}))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    num = lambda s: int(s.replace("_", ""))  # noqa: E731
    ap.add_argument("--rows", type=num, default=10_000_000, help="Taobao rows (0: skip Taobao)")
    ap.add_argument("--rr-events", type=num, default=3_000_000, help="Retailrocket events (0: skip it)")
    ap.add_argument("--rr-props", type=num, default=3_000_000, help="Retailrocket item_properties rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="default: a new folder under $TMPDIR")
    ap.add_argument("--max-rss-gb", type=float, default=16.0, help="kill a child whose RSS passes this")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ssrf-reproduce-full-", dir=args.workdir))
    if Path.cwd().resolve() in work.resolve().parents:
        sys.exit(f"{work} is inside the working directory; give --workdir outside the repository")
    cache = work / "prepared"
    load = os.getloadavg()[0]
    rows: list[dict] = []
    try:
        if args.rows:
            gen = _generate(["taobao", str(work), str(args.rows), str(args.seed)])
            csv = work / "UserBehavior.csv"
            print(f"generated {csv} ({args.rows:,} rows) in {gen['gen_s']} s ({gen['planted']})", flush=True)
            rows += measure("taobao", [csv], cache, work, args, gen["gen_s"])
            csv.unlink()
        if args.rr_events:
            gen = _generate(
                ["retailrocket", str(work), str(args.rr_events), str(args.rr_props), str(args.seed)]
            )
            print(f"generated Retailrocket files in {gen['gen_s']} s", flush=True)
            names = (
                "events.csv",
                "item_properties_part1.csv",
                "item_properties_part2.csv",
                "category_tree.csv",
            )
            rows += measure("retailrocket", [work / n for n in names], cache, work, args, gen["gen_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = [
        ("dataset", "dataset"),
        ("run", "run"),
        ("rows", "rows read"),
        ("files_mib", "files MiB"),
        ("gen_s", "generate s"),
        ("wall_s", "prepare+sample s"),
        ("cpu_s", "CPU s"),
        ("peak_rss_mib", "peak RSS MiB"),
        ("users", "users"),
        ("items", "items"),
        ("events", "events"),
        ("test_users", "test users"),
    ]
    print("\n| " + " | ".join(h for _, h in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k, _ in cols) + " |")
    print("\nsteps in-process (paper sample):")
    for r in rows:
        if "steps" in r:
            print(f"  {r['dataset']}: {r['steps']}")
    print(
        json.dumps(
            {
                "load_1m_before": round(load, 2),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                "cpus": os.cpu_count(),
                "parent_rss_mib": _status("VmHWM"),  # bounds every child's peak from below (see _generate)
                "runs": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
