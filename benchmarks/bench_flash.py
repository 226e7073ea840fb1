"""Benchmark attnkit.flash against plain attention and PyTorch, from one run.

Prints, for one head of width 64 (float32, CPU):
1. peak extra memory of plain attention (attnkit.core, which builds the N x N matrix) vs the
   tiled forward, as N grows, measured by attnkit.memory.measure_peak_bytes (the largest running
   sum of what torch's allocator hands out and takes back during the call); the tiled peak grows
   linearly, and at N=4096 it must be below a quarter of the plain one;
2. the same for forward + backward;
3. accuracy: forward and gradients against torch.nn.functional.scaled_dot_product_attention;
4. time, as ratios to PyTorch's fused SDPA (a Python loop over tiles is much slower than a kernel).

Run: .venv/bin/python benchmarks/bench_flash.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from attnkit.core import scaled_dot_product_attention as plain_attention
from attnkit.flash import flash_attention
from attnkit.memory import measure_peak_bytes

D = 64
BLOCK = 256


def qkv(n, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 1, n, D, generator=g).requires_grad_(requires_grad) for _ in range(3)]


def fwd_bwd(attn):
    def run(q, k, v):
        out = attn(q, k, v)
        out.sum().backward()
        return out

    return run


def timeit(fn, *args, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    torch.manual_seed(0)
    flash = lambda q, k, v: flash_attention(q, k, v, block_q=BLOCK, block_k=BLOCK)  # noqa: E731
    MiB = 2**20

    print(f"1. Peak extra memory of the forward, one head, d={D}, blocks {BLOCK}x{BLOCK} (MiB)")
    print(f"{'N':>6} {'plain':>10} {'tiled':>10} {'tiled/plain':>12} {'tiled/N (KiB)':>14}")
    last = None
    for n in (512, 1024, 2048, 4096):
        q, k, v = qkv(n)
        _, p_plain = measure_peak_bytes(plain_attention, q, k, v)
        _, p_flash = measure_peak_bytes(flash, q, k, v)
        print(f"{n:>6} {p_plain / MiB:>10.2f} {p_flash / MiB:>10.2f} {p_flash / p_plain:>12.4f} "
              f"{p_flash / n / 1024:>14.3f}")
        last = (p_plain, p_flash)
    ok = last[1] < last[0] / 4
    print(f"   N=4096: tiled peak is {last[1] / last[0]:.4f} of plain -> "
          f"{'below' if ok else 'NOT below'} a quarter")

    print("\n2. Peak extra memory of forward + backward (MiB)")
    print(f"{'N':>6} {'plain':>10} {'tiled':>10} {'tiled/plain':>12}")
    for n in (1024, 4096):
        _, p_plain = measure_peak_bytes(fwd_bwd(plain_attention), *qkv(n, True))
        _, p_flash = measure_peak_bytes(fwd_bwd(flash), *qkv(n, True))
        print(f"{n:>6} {p_plain / MiB:>10.2f} {p_flash / MiB:>10.2f} {p_flash / p_plain:>12.4f}")

    print("\n3. Accuracy against F.scaled_dot_product_attention, N=1024, float32 (max abs difference)")
    for order in ("v1", "v2"):
        for causal in (False, True):
            q, k, v = qkv(1024, True, seed=1)
            g = torch.randn(1, 1, 1024, D)
            ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            ref_grads = torch.autograd.grad(ref, (q, k, v), g)
            out = flash_attention(q, k, v, causal, 128, 128, loop_order=order)
            grads = torch.autograd.grad(out, (q, k, v), g)
            err_out = (out - ref).abs().max().item()
            err_grad = max((a - b).abs().max().item() for a, b in zip(grads, ref_grads, strict=True))
            print(f"   {order} causal={causal!s:<5}: output {err_out:.2e}, gradients {err_grad:.2e}")

    print(f"\n4. Forward time, ratio to PyTorch's fused SDPA (threads: {torch.get_num_threads()})")
    print(f"{'N':>6} {'SDPA ms':>9} {'plain/SDPA':>11} {'tiled/SDPA':>11}")
    for n in (1024, 2048):
        q, k, v = qkv(n)
        t_ref = timeit(F.scaled_dot_product_attention, q, k, v)
        t_plain = timeit(plain_attention, q, k, v)
        t_flash = timeit(flash, q, k, v)
        print(f"{n:>6} {t_ref * 1e3:>9.2f} {t_plain / t_ref:>11.2f} {t_flash / t_ref:>11.2f}")


if __name__ == "__main__":
    main()
