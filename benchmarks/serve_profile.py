"""Where a request's time goes in `ssrf serve` on Amazon Beauty: each step of the request path timed
in-process, and the server's CPU per request over loopback for two floors (uvicorn alone, FastAPI with one
bare route) beside the full service, all one process with one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_profile.py     # serve_load.py's run (trained once)
    .venv/bin/python benchmarks/serve_profile.py --run runs/beauty/<run> --requests 5000

1. In-process, microseconds per request (the median of 5 timings of many calls):
   parse    the JSON body parsed and validated in one pass (pydantic-core): a known user, a new history
   resolve  raw ids to indices, the stored history looked up
   rank     per query, batches of 1..50 (80% known users, 20% 5-event histories, as serve_load sends),
            with and without the user cache (`--user-cache-mb`)
   answer   the response built and encoded (orjson)
2. Over loopback (serve_load.py's client: C keep-alive clients in a closed loop): requests/s and the server's
   CPU per request (user + system, from /proc) for
   uvicorn  a bare ASGI app answering a fixed body (uvloop + httptools): the HTTP server and the kernel
   fastapi  FastAPI with one route that reads the body and answers a fixed one: the framework's floor
   ssrf     `ssrf serve` on the run (one worker)
Prints the tables and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # the load generator, the bodies, the run

SERVERS = ("uvicorn", "fastapi", "ssrf")
FIXED = (
    b'{"user_id":"x","items":['
    + b",".join([b'{"item":"B000000000","score":1.2345678,"category":"c"}'] * 10)
    + b'],"warnings":[]}'
)


def floor_app(kind: str):
    """The floor servers of part 2: a bare ASGI app, or FastAPI with one route; both answer FIXED."""
    if kind == "uvicorn":

        async def app(scope, receive, send) -> None:
            if scope["type"] != "http":
                return
            while (await receive()).get("more_body"):
                pass
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(FIXED)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": FIXED})

        return app
    from fastapi import FastAPI, Request, Response

    api = FastAPI()

    @api.post("/v1/recommend")
    async def recommend(request: Request) -> Response:
        await request.body()
        return Response(FIXED, media_type="application/json")

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return api


def per_call_us(fn, calls: int) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return 1e6 * float(np.median(times))


def in_process(run: Path, bodies: list[dict]) -> dict[str, float]:
    import torch

    from ssrf.serving.app import ServeSettings, json_response, request_models
    from ssrf.serving.predictor import Predictor

    torch.set_num_threads(1)
    request, _ = request_models(ServeSettings())
    cached = Predictor.load(run, user_cache_mb=512)
    plain = Predictor.load(run)
    raw = [json.dumps(b).encode() for b in bodies]
    known = next(r for r, b in zip(raw, bodies, strict=True) if "user_id" in b)
    history = next(r for r, b in zip(raw, bodies, strict=True) if "history" in b)
    out = {
        "parse_known_us": per_call_us(lambda: request.model_validate_json(known), 2000),
        "parse_history_us": per_call_us(lambda: request.model_validate_json(history), 2000),
    }
    reqs = [request.model_validate_json(r) for r in raw]
    out["resolve_us"] = per_call_us(lambda: [cached.resolve(r.query()) for r in reqs[:100]], 20) / 100
    resolved = [cached.resolve(r.query()) for r in reqs]
    for batch in (1, 10, 25, 50):
        chunks = [resolved[i : i + batch] for i in range(0, 400, batch)]
        for name, p in (("cache", cached), ("nocache", plain)):
            it = iter(chunks * 1000)
            out[f"rank_b{batch}_{name}_us"] = per_call_us(lambda p=p, it=it: p.rank(next(it)), 40) / batch
    recs = cached.rank(resolved[:1])[0]

    def answer() -> None:
        items = [{"item": x.item, "score": x.score, "category": x.category} for x in recs]
        json_response({"user_id": "x", "items": items, "warnings": []})

    out["answer_us"] = per_call_us(answer, 5000)
    return {k: round(v, 1) for k, v in out.items()}


def over_loopback(kind: str, run: Path, bodies: list[dict], clients: int, warmup: int) -> dict[str, float]:
    port = serve_load.free_port()
    if kind == "ssrf":
        cmd = [
            sys.executable,
            "-m",
            "ssrf",
            "serve",
            "--run",
            str(run),
            "--port",
            str(port),
            "--no-access-log",
        ]
    else:
        cmd = [sys.executable, __file__, "--floor", kind, "--port", str(port)]
    server = serve_load.launch(cmd, port, threads=1)
    try:
        asyncio.run(serve_load.load(port, bodies[:warmup], clients, 300, "raw"))
        cpu = serve_load.cpu_seconds(server.pid)
        latencies, errors, seconds = asyncio.run(serve_load.load(port, bodies[warmup:], clients, 300, "raw"))
        cpu = serve_load.cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        server.wait(timeout=30)
    if errors and kind == "ssrf":
        raise SystemExit(f"{len(errors)} errors, e.g. {errors[0]}")
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "server_cpu_us": round(1e6 * cpu / len(latencies), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", type=Path, help="a trained run (default: serve_load.py's, trained the first time)"
    )
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--floor", choices=("uvicorn", "fastapi"), help=argparse.SUPPRESS)  # a floor server
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor:
        import uvicorn

        uvicorn.run(floor_app(args.floor), port=args.port, access_log=False, log_level="warning")
        return

    run = args.run or serve_load.train_run(serve_load.ROOT / "runs" / "serve_load" / "sasrec-e1", "sasrec", 1)
    load_before = os.getloadavg()[0]
    bodies = serve_load.make_bodies(run, args.warmup + args.requests, 0.2, 0)
    steps = in_process(run, bodies)
    print(f"1. in-process, one thread, microseconds per request (load average before: {load_before:.2f})")
    print("| step | us |\n|---|---:|")
    for name, value in steps.items():
        print(f"| {name.removesuffix('_us')} | {value} |")
    servers = {kind: over_loopback(kind, run, bodies, args.clients, args.warmup) for kind in SERVERS}
    print(f"\n2. over loopback, {args.clients} clients, {args.requests} requests, one server process")
    print("| server | requests/s | p99 ms | server CPU us/request |\n|---|---:|---:|---:|")
    for kind, row in servers.items():
        print(f"| {kind} | {row['requests_per_s']} | {row['p99_ms']} | {row['server_cpu_us']} |")
    print(
        json.dumps(
            {
                "benchmark": "serve_profile",
                "run": str(run),
                "in_process_us": steps,
                "servers": servers,
                "load_before": round(load_before, 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
