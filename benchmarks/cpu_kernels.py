"""The kernels behind a training step on this CPU, fp32 against bf16, at Beauty's shapes (batch 256 sequences:
about 1,200 targets, 12,102 items, d = 64; SSRF's CNN on a 5 x 5 grid with 128 and 256 channels). Medians of
--repeat timed calls after one warm-up, one thread by default.

    .venv/bin/python benchmarks/cpu_kernels.py

Ends with one JSON line of the figures (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1188)
    ap.add_argument("--items", type=int, default=12102)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t, n, r = args.targets, args.items, args.repeat
    rows: dict[str, dict[str, float]] = {}

    def add(name: str, fp32: Callable[[], object], bf16: Callable[[], object]) -> None:
        rows[name] = {"fp32": timed(fp32, r), "bf16": timed(bf16, r)}

    h, w = torch.randn(t, 64), torch.randn(n, 64)
    hb, wb = h.bfloat16(), w.bfloat16()
    add("logits product [T, 64] x [64, N]", lambda: h @ w.T, lambda: hb @ wb.T)
    x, xb = h @ w.T, hb @ wb.T
    add("softmax over [T, N]", lambda: torch.softmax(x, 1), lambda: torch.softmax(xb, 1))
    c, cb = torch.rand(t), torch.rand(t).bfloat16()
    add("row scaling of [T, N] (same dtypes)", lambda: x * c[:, None], lambda: xb * cb[:, None])
    add("row scaling of [T, N], bf16 x fp32 (mixed)", lambda: x * c[:, None], lambda: xb * c[:, None])
    add("cast of [T, N] to fp32", lambda: x.clone(), lambda: xb.float())

    def conv_pair(c_in: int, c_out: int, size: int, as_product: bool) -> None:
        conv = nn.Conv2d(c_in, c_out, 3)
        batch = t + 40  # SSRF's batches carry about as many targets

        def step(dtype: torch.dtype) -> Callable[[], object]:
            layer = nn.Conv2d(c_in, c_out, 3).to(dtype)
            layer.load_state_dict(conv.state_dict())
            inp = torch.randn(batch, c_in, size, size, dtype=dtype, requires_grad=True)

            def run() -> object:
                if as_product:  # the kernel covers the whole input: one product per sequence
                    y = F.linear(inp.flatten(1), layer.weight.flatten(1), layer.bias)
                else:
                    y = layer(inp)
                return torch.autograd.grad(y.sum(), (inp, layer.weight))

            return run

        how = "as one product" if as_product else "mkldnn convolution"
        add(
            f"3x3 conv {c_in}->{c_out} on {size}x{size}, fwd+bwd, {how}",
            step(torch.float32),
            step(torch.bfloat16),
        )

    conv_pair(128, 128, 5, False)
    conv_pair(256, 256, 3, False)
    conv_pair(256, 256, 3, True)

    print(f"one call, median of {r}, {args.threads} thread(s), T = {t}, N = {n}")
    print("| kernel | fp32 ms | bf16 ms | fp32 / bf16 |")
    print("|---|---|---|---|")
    for name, v in rows.items():
        print(f"| {name} | {v['fp32']:.1f} | {v['bf16']:.1f} | {v['fp32'] / v['bf16']:.1f}x |")
    print(json.dumps({"benchmark": "cpu_kernels", "threads": args.threads, "ms": rows}))


if __name__ == "__main__":
    main()
