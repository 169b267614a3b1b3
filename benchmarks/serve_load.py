"""Load test of `ssrf serve` on loopback: a model trained on Amazon Beauty (12,101 items), N requests from C
concurrent clients (asyncio, one keep-alive connection each), bounded in count and in time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py                 # 10,000 requests, 50 clients
    .venv/bin/python benchmarks/serve_load.py --run runs/beauty/<run> --requests 2000

Without --run it trains SASRec for ONE epoch (full-softmax ce) on Beauty into runs/serve_load/ the first
time, and reuses it after: the point is serving speed, not accuracy. Requests: `--history-share` of them
are for a new user (a history of 5 random items, with behaviour and timestamp), the rest for a random known
user; k = 10. The server runs in its own process (`ssrf serve --no-access-log`); the clients share the
machine with it. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from ssrf.dataset import snapshot

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"
JSON = {"content-type": "application/json"}
TARGETS = {"errors": 0, "p99_ms": 50.0, "requests_per_s": 300.0}


def train_run(out: Path, model: str, epochs: int) -> Path:
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig

    if (out / "results.json").is_file():
        print(f"reusing {out}", file=sys.stderr)
        return out
    data = pipeline.prepare([BEAUTY], "s3rec", PrepareConfig(split="loo"))
    cfg = pipeline.RunConfig(model=model).override(
        ['train.loss="ce"', f"train.epochs={epochs}", "eval.auc=false"]
    )
    print(f"training {model} for {epochs} epoch(s) on Beauty into {out}", file=sys.stderr)
    pipeline.train(data, cfg, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run: Path, port: int, workers: int, threads: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ssrf", "serve", "--run", str(run), "--port", str(port)]
    return launch([*cmd, "--workers", str(workers), "--no-access-log", *extra], port, threads)


def launch(cmd: list[str], port: int, threads: int) -> subprocess.Popen:
    """Start a server process (OMP_NUM_THREADS=threads) and wait until it answers GET /healthz on port."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not answer /healthz within 120 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its living descendants (uvicorn workers), Linux /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except OSError:
        pass
    return total


def make_bodies(run: Path, n: int, history_share: float, seed: int) -> list[dict]:
    vocab = snapshot.load(run, snapshot.read_config(run)).vocabs
    users, items, behaviors = (list(vocab[k].raw[1:]) for k in ("user", "item", "behavior"))
    rng = random.Random(seed)
    bodies = []
    for _ in range(n):
        if rng.random() < history_share:
            history = [
                {"item": rng.choice(items), "behavior": rng.choice(behaviors), "timestamp": t}
                for t in range(5)
            ]
            bodies.append({"history": history, "k": 10})
        else:
            bodies.append({"user_id": rng.choice(users), "k": 10})
    return bodies


class RawClient:
    """One keep-alive HTTP/1.1 connection, written by hand: the load generator shares the machine with the
    server, and httpx spends more CPU per request than the server does (see --client httpx)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = None
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("response without Content-Length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def load(
    port: int, bodies: list[dict], clients: int, time_limit: float, kind: str
) -> tuple[list[float], list[str], float]:
    """Each client sends the next body as soon as its previous answer came back, until none are left or
    `time_limit` seconds have passed. A request is an error unless it gets 200 with k items."""
    latencies: list[float] = []
    errors: list[str] = []
    encoded = iter([(json.dumps(b).encode(), b["k"]) for b in bodies])
    t_start = time.perf_counter()
    deadline = t_start + time_limit

    async def one(send) -> None:
        for body, k in encoded:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                status, data = await asyncio.wait_for(send(body), 30)
                if status != 200 or len(json.loads(data)["items"]) != k:
                    errors.append(f"{status}: {data[:200]!r}")
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError, httpx.HTTPError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)

    if kind == "httpx":
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as session:

            async def send_httpx(body: bytes) -> tuple[int, bytes]:
                res = await session.post("/v1/recommend", content=body, headers=JSON)
                return res.status_code, res.content

            await asyncio.gather(*(one(send_httpx) for _ in range(clients)))
    else:
        raw = [RawClient("127.0.0.1", port) for _ in range(clients)]
        await asyncio.gather(*(one(lambda b, c=c: c.post("/v1/recommend", b)) for c in raw))
        for c in raw:
            await c.close()
    return latencies, errors, time.perf_counter() - t_start


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a trained run (default: train or reuse runs/serve_load/...)")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--time-limit", type=float, default=300.0, help="stop sending after this many seconds")
    ap.add_argument("--warmup", type=int, default=500, help="requests sent (and not counted) first")
    ap.add_argument("--history-share", type=float, default=0.2, help="share of new-user (history) requests")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    ap.add_argument(
        "--serve-args",
        default="",
        help="more options of `ssrf serve`, e.g. '--user-cache-mb 0 --no-rank-thread'",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw", help="the load generator's client")
    args = ap.parse_args()

    run = args.run or train_run(
        ROOT / "runs" / "serve_load" / f"{args.model}-e{args.epochs}", args.model, args.epochs
    )
    model = json.loads((run / "best" / "model.json").read_text())
    port = free_port()
    load_before = os.getloadavg()[0]
    server = start_server(run, port, args.workers, args.threads, shlex.split(args.serve_args))
    try:
        bodies = make_bodies(run, args.warmup + args.requests, args.history_share, args.seed)
        asyncio.run(load(port, bodies[: args.warmup], args.clients, args.time_limit, args.client))
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        latencies, errors, seconds = asyncio.run(
            load(port, bodies[args.warmup :], args.clients, args.time_limit, args.client)
        )
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = [x * 1000 for x in latencies]
    out = {
        "benchmark": "serve_load",
        "model": model["model_name"],
        "epochs_trained": args.epochs if args.run is None else None,
        "items": model["model_config"]["n_items"],
        "requests": len(latencies),
        "clients": args.clients,
        "client": args.client,
        "history_share": args.history_share,
        "server_workers": args.workers,
        "server_threads": args.threads,
        "serve_args": args.serve_args,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "errors": len(errors),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(len(latencies), 1), 3),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(len(latencies), 1), 3),
        "load_before": round(load_before, 2),
        "cpus": os.cpu_count(),
    }
    out["targets_met"] = (
        out["errors"] <= TARGETS["errors"]
        and out["p99_ms"] <= TARGETS["p99_ms"]
        and out["requests_per_s"] >= TARGETS["requests_per_s"]
    )
    note = "one epoch, for serving speed only" if args.run is None else f"run {run}"
    print(
        f"model {out['model']} on Beauty ({out['items']} items; {note}); "
        f"load average before: {load_before:.2f}"
    )
    print(
        "| requests | clients | s | requests/s | p50 ms | p95 ms | p99 ms | max ms | errors |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {out['requests']} | {args.clients} | {out['seconds']} | {out['requests_per_s']} | "
        f"{out['p50_ms']} | {out['p95_ms']} | {out['p99_ms']} | {out['max_ms']} | {out['errors']} |"
    )
    print(
        f"CPU per request: server {out['server_cpu_ms_per_request']} ms, "
        f"load generator {out['client_cpu_ms_per_request']} ms"
    )
    print(
        f"targets (0 errors, p99 <= 50 ms, >= 300 requests/s): {'met' if out['targets_met'] else 'NOT met'}"
    )
    for e in errors[:5]:
        print("error:", e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
