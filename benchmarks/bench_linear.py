"""attnkit.linear's methods against PyTorch's SDPA on this CPU, from one run: time, peak memory, crossover.

    .venv/bin/python benchmarks/bench_linear.py [--max-n 16384] [--heads 4] [--dim 64] [--mem-limit-gb 8]

Batch 1, ``--heads`` heads of width ``--dim``, float32, forward only, one thread, inference mode.
For each N = 256, 512, ..., max-n every method runs round-robin with SDPA (one call each per
round; the median of the rounds is reported), and its peak memory is measured the same way for
all, by ``attnkit.memory.measure_peak_bytes`` (the largest running sum of what torch's allocator
hands out and takes back during the call). The memory of softmax attention is that of the math
path (``softmax_attention``, which builds the N x N matrix); the math path is skipped where its N x N matrices would exceed
``--mem-limit-gb`` (at N = 16384 with 4 heads: 8 GiB, the default limit, so it is skipped there). The crossover of a method is the first measured N from which it is faster
than SDPA (causal methods against SDPA with is_causal=True) at every longer measured N.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timing import one_thread, round_robin_medians

import attnkit.linear as L
from attnkit.memory import measure_peak_bytes

MiB = 2**20


def methods(n: int, d: int) -> dict:
    """name -> (causal?, fn(q, k, v)). Fixed random projections stand in for learned ones."""
    g = torch.Generator().manual_seed(0)
    E = torch.randn(n, 256, generator=g) / 16  # Linformer k = 256
    w = L.orthogonal_random_features(256, d, seed=0)  # Performer m = 256
    return {
        "sdpa": (False, lambda q, k, v: F.scaled_dot_product_attention(q, k, v)),
        "softmax_math": (False, lambda q, k, v: L.softmax_attention(q, k, v)),
        "linear": (False, lambda q, k, v: L.linear_attention(q, k, v)),
        "efficient": (False, lambda q, k, v: L.efficient_attention(q, k, v)),
        "performer": (False, lambda q, k, v: L.performer_attention(q, k, v, w)),
        "linformer": (False, lambda q, k, v: L.linformer_attention(q, k, v, E, E)),
        "nystrom": (False, lambda q, k, v: L.nystrom_attention(q, k, v, 64)),
        "cosformer": (False, lambda q, k, v: L.cosformer_attention(q, k, v)),
        "sdpa_causal": (True, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
        "linear_causal": (True, lambda q, k, v: L.linear_attention(q, k, v, causal=True)),
        "performer_causal": (True, lambda q, k, v: L.performer_attention(q, k, v, w, causal=True)),
        "cosformer_causal": (True, lambda q, k, v: L.cosformer_attention(q, k, v, causal=True, max_len=n)),
    }


def math_path_bytes(n: int, heads: int) -> int:
    """The math path holds the scores and the softmax weights: two (H, N, N) float32 matrices."""
    return 2 * heads * n * n * 4


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-n", type=int, default=16384)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--mem-limit-gb", type=float, default=8.0)
    args = p.parse_args(argv)
    ns = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384) if n <= args.max_n]
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, batch 1, {args.heads} heads of {args.dim}, float32 forward, one thread")
    times: dict[int, dict[str, float]] = {}
    peaks: dict[int, dict[str, float | None]] = {}
    names = list(methods(256, args.dim))
    with one_thread(), torch.inference_mode():
        for n in ns:
            g = torch.Generator().manual_seed(n)
            q, k, v = (torch.randn(1, args.heads, n, args.dim, generator=g) for _ in range(3))
            fns = methods(n, args.dim)
            skip = math_path_bytes(n, args.heads) >= args.mem_limit_gb * 2**30
            if skip:
                print(f"N = {n}: math path skipped, its two N x N matrices would take "
                      f"{math_path_bytes(n, args.heads) / 2**30:.1f} GiB >= {args.mem_limit_gb:g} GiB (measured peak is above that)")
                fns.pop("softmax_math")
            repeats = 5 if n <= 2048 else 3
            med = round_robin_medians({name: (lambda f=f, a=(q, k, v): f(*a)) for name, (_, f) in fns.items()},
                                      repeats=repeats)
            times[n] = {name: s * 1e3 for name, s in med.items()}
            peaks[n] = {name: measure_peak_bytes(f, q, k, v)[1] / MiB for name, (_, f) in fns.items()}
            print(f"N = {n:>5} measured ({repeats} rounds), {time.perf_counter() - t_start:.0f} s so far", flush=True)

    def table(title, values, fmt):
        print(f"\n{title}")
        print(f"{'method':<18}" + "".join(f"{n:>11}" for n in ns))
        for name in names:
            cells = [values[n].get(name) for n in ns]
            print(f"{name:<18}" + "".join(f"{'-':>11}" if c is None else f"{c:>11{fmt}}" for c in cells))

    table("time per call (ms, median)", times, ".2f")
    table("peak memory measured op by op (MiB); sdpa: the fused kernel hides its scratch, only its output shows",
          peaks, ".2f")

    print("\ncrossover against SDPA (first measured N from which the method is faster at every longer N)")
    for name in names:
        if name in ("sdpa", "sdpa_causal"):
            continue
        base = "sdpa_causal" if name.endswith("_causal") else "sdpa"
        measured = [n for n in ns if name in times[n]]
        faster = [times[n][name] < times[n][base] for n in measured]
        cross = next((n for i, n in enumerate(measured) if all(faster[i:])), None)
        ratio = times[measured[-1]][base] / times[measured[-1]][name]
        at_end = f"at N = {measured[-1]}: {ratio:.2f}x the speed of {base}"
        if cross is None:
            print(f"  {name:<18} never faster from some N on, up to N = {measured[-1]} ({at_end})")
        else:
            print(f"  {name:<18} from N = {cross} ({at_end})")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
