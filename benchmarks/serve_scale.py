"""Top-10 retrieval at catalogue scale: exact scoring (torch matmul + topk over every item) against FAISS
indexes (`ssrf.serving.index`), single-user requests, on generated catalogues of 100k, 1M and 2.4M items.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_scale.py                  # 100k, 1M, 2.4M
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_scale.py --sizes 100000 --queries 200

What is measured, per catalogue size: the latency of one request (one user, top-10, 20 history items masked)
through `ExactIndex.search` and `FaissIndex.search`, the very code `Predictor` runs for such a request
after the model's forward pass (which costs the same with either index and is left out); p50 and p99 over
the queries after a warm-up, req/s = 1 / mean latency (one thread, one request at a time); recall@10 of each
FAISS setting against the exact top-10 of the same queries, with the same masks; index build time and the
index's memory (its vectors, links, lists; `faiss_bytes`) and the process's RSS growth while building.

The catalogue is generated, not trained (the cost of scoring depends only on the shape, but an ANN index's
recall depends on the geometry, so the geometry is modelled on a trained model): item rows are d = 64 wide
plus the bias column. Items come in topics of 50 (Gaussian topic centres; an item is its centre plus
Gaussian noise of the same variance), with directions normalised and lengths log-normal (sigma 0.2, p5/p95
about 0.72/1.39 of the median; the trained Beauty SSRF's rows spread 0.90/1.10) and a bias ~ N(0, 0.05^2).
A user's query is the sum of three random items plus a little of one topic centre and noise, scaled to
length 10 (the trained model's median query length is 11). With these settings the 10th best score of a
query at 12,101 items stands 4.28 standard deviations above the mean score (median over queries), as it
does (4.20) for the trained SSRF on Beauty's 12,101 items and its users: neither easier nor harder for an
index than the trained model (its rows are nearly isotropic too: 16 of 128 principal components hold 15%
of the variance).

Settings (see `IndexSettings`): HNSW, M = 32, ef_construction = 80, searched with ef_search 128, 256, 512
and 1024 (one graph); IVF with nlist = 4 sqrt(N) cells, nprobe = 10% and 30% of them (one index: on rows this
isotropic IVF needs a large share of the cells). Every index searches the inner product directly
(METRIC_INNER_PRODUCT): the L2 reduction (`mips="l2"`) gave far lower recall for HNSW, on these rows and
on the trained ones. The faiss-hnsw preset's ef_search grows with the catalogue as these figures ask
(`auto_ef_search`: 256 at 100k, 512 at 1M, 1024 at 2.4M items).

Pin one thread (the machine is shared): OMP_NUM_THREADS=1 for torch, and the script sets FAISS's own
(`faiss.omp_set_num_threads(1)`). Prints a table, writes a log-log plot of latency against catalogue size
(docs/img/serve_scale.png), and ends with one JSON line. The issue's bar: FAISS p99 <= 20 ms at 2.4M items
with recall@10 >= 0.98.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssrf.serving.index import ExactIndex, FaissIndex, IndexSettings

ROOT = Path(__file__).resolve().parents[1]
BAR = {"items": 2_400_000, "p99_ms": 20.0, "recall": 0.98}
K, SEEN = 10, 20  # top-k of a request; history items masked per request
TOPIC, SPREAD, BIAS, QUERY_NORM, CENTRE = 50, 0.2, 0.05, 10.0, 0.15


def catalogue(n: int, d: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """rows [n, d + 1] ([w_i ; b_i] of item i at row i - 1), queries [Q, d + 1] ([q ; 1]) and each query's
    masked items (ids 1..n): its three source items and 17 random ones."""
    rng = np.random.default_rng(seed)
    topics = max(1, n // TOPIC)
    centres = rng.standard_normal((topics, d), dtype=np.float32)
    rows = np.empty((n, d + 1), dtype=np.float32)
    for lo in range(0, n, 1 << 18):  # in blocks: no full-size temporaries
        hi = min(n, lo + (1 << 18))
        x = centres[rng.integers(0, topics, hi - lo)] + rng.standard_normal((hi - lo, d), dtype=np.float32)
        x *= (rng.lognormal(0.0, SPREAD, hi - lo) / np.linalg.norm(x, axis=1)).astype(np.float32)[:, None]
        rows[lo:hi, :d] = x
        rows[lo:hi, d] = rng.normal(0.0, BIAS, hi - lo)
    source = rng.integers(0, n, (queries, 3))
    q = rows[source, :d].sum(1) / np.sqrt(3)
    q += CENTRE * 8 / np.sqrt(d) * centres[rng.integers(0, topics, queries)]
    q += rng.standard_normal((queries, d), dtype=np.float32) / np.sqrt(d)
    q *= QUERY_NORM / np.linalg.norm(q, axis=1, keepdims=True)
    q = np.ascontiguousarray(np.concatenate((q, np.ones((queries, 1), np.float32)), axis=1), dtype=np.float32)
    masks = [np.concatenate((source[i] + 1, rng.integers(1, n + 1, SEEN - 3))) for i in range(queries)]
    return rows, q, masks


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(index, q: np.ndarray, masks: list[np.ndarray], warmup: int) -> tuple[list[float], np.ndarray]:
    """Latency of each single-query search (s) and the items found [Q, K]."""
    for i in range(min(warmup, len(q))):
        index.search(q[i : i + 1], K, masks[i : i + 1])
    lat, items = [], np.empty((len(q), K), dtype=np.int64)
    for i in range(len(q)):
        start = time.perf_counter()
        hits = index.search(q[i : i + 1], K, masks[i : i + 1])
        lat.append(time.perf_counter() - start)
        items[i] = hits.items[0]
    return lat, items


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    shares = [len(set(f[f > 0]) & set(t[t > 0])) / (t > 0).sum() for f, t in zip(found, truth, strict=True)]
    return float(np.mean(shares))


def summary(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return {
        "p50_ms": round(float(np.median(a)), 3),
        "p99_ms": round(float(np.quantile(a, 0.99)), 3),
        "req_per_s": round(1e3 / float(a.mean()), 1),
    }


def configs(n: int, args) -> list[tuple[IndexSettings, str, list[int]]]:
    """(build settings, the search-time knob, its values): one index each, searched at several settings."""
    nlist = int(4 * math.sqrt(n))
    hnsw = IndexSettings("hnsw", m=args.m, ef_construction=args.ef_construction, mips="ip", threads=1)
    ivf = IndexSettings("ivf", nlist=nlist, mips="ip", threads=1)
    out = []
    if "hnsw" in args.kinds:
        out.append((hnsw, "ef_search", args.ef_search))
    if "ivf" in args.kinds:
        out.append((ivf, "nprobe", [max(1, round(nlist * f)) for f in args.probe_fractions]))
    return out


def series(r: dict) -> str:
    """A row's line in the plot, the same at every size: "exact", "hnsw ef_search=512", "ivf nprobe=10%"."""
    name = r["index"]
    if name.startswith("hnsw"):
        return "hnsw ef_search=" + name.split("ef_search=")[1].split(",")[0].rstrip(")")
    if name.startswith("ivf"):
        nlist = int(name.split("nlist=")[1].split(",")[0])
        nprobe = int(name.split("nprobe=")[1].split(",")[0].rstrip(")"))
        return f"ivf nprobe={round(100 * nprobe / nlist)}%"
    return name


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for name in dict.fromkeys(series(r) for r in results):
        rs = sorted((r for r in results if series(r) == name), key=lambda r: r["items"])
        x = [r["items"] for r in rs]
        recall = min(r["recall_at_10"] for r in rs)
        label = name if name == "exact" else f"{name} (recall@10 >= {recall:.3f})"
        (line,) = ax.plot(x, [r["p50_ms"] for r in rs], "o-" if name == "exact" else "s-", label=label)
        ax.plot(x, [r["p99_ms"] for r in rs], ":", color=line.get_color(), marker=".")
    ax.axhline(BAR["p99_ms"], color="grey", lw=0.8, ls="--", label="20 ms (p99 bar)")
    ax.set(xscale="log", yscale="log", xlabel="catalogue size (items)", ylabel="latency per request (ms)")
    ax.set_title(
        "single-user top-10, d = 64 + bias, one thread: p50 (solid) and p99 (dotted)\n"
        "HNSW m=32, ef_construction=80; IVF nlist = 4 sqrt(N)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,2400000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--kinds", default="hnsw,ivf")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", default="128,256,512,1024")
    ap.add_argument("--probe-fractions", default="0.1,0.3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "serve_scale.png"))
    ap.add_argument("--replot", metavar="OUT", help="only draw the plot from a run's output (its JSON line)")
    args = ap.parse_args()
    if args.replot:
        last = Path(args.replot).read_text().strip().splitlines()[-1]
        plot(json.loads(last)["results"], Path(args.plot))
        return
    args.ef_search = [int(x) for x in args.ef_search.split(",")]
    args.probe_fractions = [float(x) for x in args.probe_fractions.split(",")]
    import faiss

    faiss.omp_set_num_threads(1)
    threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()}
    print(f"threads: {threads}, faiss {faiss.__version__} (1 thread)", file=sys.stderr)
    results: list[dict] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        start = time.perf_counter()
        load = os.getloadavg()[0]
        rows, q, masks = catalogue(n, args.dim, args.queries, args.seed)
        print(f"\n{n:,} items: generated in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
        exact = ExactIndex(rows)
        lat, truth = timed(exact, q, masks, args.warmup)
        row = {"items": n, "index": "exact", **summary(lat), "recall_at_10": 1.0, "build_s": 0.0}
        row.update(memory_mb=round(exact.memory_bytes / 2**20, 1), load=load)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        for base, knob, values in configs(n, args):
            gc.collect()
            before = rss()
            index = FaissIndex(rows, base)
            grown = rss() - before
            print(f"  built {base.describe()} in {index.build_s:.1f}s", file=sys.stderr, flush=True)
            for v in values:
                index.settings = dataclasses.replace(base, **{knob: v})
                index._tune(faiss)
                lat, found = timed(index, q, masks, args.warmup)
                row = {
                    "items": n,
                    "index": index.settings.describe().replace("faiss-", "").replace(", mips=ip", ""),
                    **summary(lat),
                    "recall_at_10": round(recall(found, truth), 4),
                    "build_s": round(index.build_s, 1),
                    "memory_mb": round(index.memory_bytes / 2**20, 1),
                    "rss_growth_mb": round(grown / 2**20, 1),
                    "load": os.getloadavg()[0],  # the machine's 1-minute load average (2 cores, shared)
                }
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            del index
        del rows, exact
    header = f"{'items':>9}  {'index':<44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'recall':>7}"
    header += f" {'build s':>8} {'MB':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['items']:>9,}  {r['index']:<44} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['req_per_s']:>8.0f} {r['recall_at_10']:>7.4f} {r['build_s']:>8.1f} {r['memory_mb']:>7.0f}"
        )
    top = [r for r in results if r["items"] == BAR["items"] and r["index"] != "exact"]
    passing = [r for r in top if r["p99_ms"] <= BAR["p99_ms"] and r["recall_at_10"] >= BAR["recall"]]
    met = bool(passing)
    verdict = "not met" if top else "not measured"
    if met:
        verdict = "met by " + "; ".join(r["index"] for r in passing)
    bar = f"{BAR['items']:,} items (p99 <= {BAR['p99_ms']} ms, recall@10 >= {BAR['recall']})"
    print(f"\nbar at {bar}: {verdict}")
    plot(results, Path(args.plot))
    print(f"plot: {args.plot}", file=sys.stderr)
    print(json.dumps({"threads": threads, "bar": BAR, "bar_met": met if top else None, "results": results}))


if __name__ == "__main__":
    main()
