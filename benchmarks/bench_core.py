"""Foundation benchmarks, printed as ratios from one run (never asserted in the test suite).

    .venv/bin/python benchmarks/bench_core.py

1. attnkit.core.scaled_dot_product_attention (the plain, readable version) vs PyTorch's SDPA.
2. `import attnkit` time beyond `import torch` (bar: under 0.5 s).
3. Median redraw time of an explorer drawing a 64 x 64 heatmap (bar: under 100 ms).
"""

import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from attnkit.core import scaled_dot_product_attention


def median_time(fn, repeats=7):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_sdpa():
    print("1. attention forward, float32, causal (median of 7)")
    print(f"{'B, H, N, d':>18}  {'attnkit ms':>10}  {'torch ms':>9}  {'ratio':>6}")
    g = torch.Generator().manual_seed(0)
    for b, h, n, d in [(1, 8, 256, 64), (4, 12, 512, 64), (2, 12, 1024, 64)]:
        q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
        ours = median_time(lambda q=q, k=k, v=v: scaled_dot_product_attention(q, k, v, is_causal=True))
        ref = median_time(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        print(f"{str((b, h, n, d)):>18}  {ours * 1e3:10.2f}  {ref * 1e3:9.2f}  {ours / ref:6.2f}x")
    print("   (the plain version materialises the N x N weights; PyTorch's fused CPU kernel does not)")


def bench_import():
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "import attnkit, attnkit.core; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    runs = [tuple(map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())) for _ in range(5)]
    torch_s = statistics.median(r[0] for r in runs)
    extra = statistics.median(r[1] for r in runs)
    print(f"2. import torch {torch_s:.2f} s; import attnkit beyond torch {extra:.3f} s (bar 0.5 s)")


def bench_redraw():
    from attnkit.widgets.attention import attention_explorer

    tokens = [f"t{i}" for i in range(64)]
    e = attention_explorer(tokens)
    temps = iter([0.5, 1.0] * 20)
    t = median_time(lambda: setattr(e.controls["temperature"], "value", next(temps)), repeats=15)
    print(f"3. explorer redraw, 64 x 64 heatmap: median {t * 1e3:.0f} ms (bar 100 ms)")


if __name__ == "__main__":
    torch.manual_seed(0)
    bench_sdpa()
    bench_import()
    bench_redraw()
