"""attnkit.softmax against torch.softmax / torch.logsumexp, and the chapter 02/03 explorers' redraws.

    .venv/bin/python benchmarks/bench_softmax.py [--repeats N] [--rows R] [--cols C] [--threads T]

attnkit's softmax is teaching code (plain PyTorch ops: max, subtract, exp, sum, divide, plus the
checks for NaN/+inf and fully masked rows), so it is expected to be a few times slower than
torch's fused kernel; the online softmax loops over chunks in Python. Every implementation is
checked against torch first; they run round-robin, one call each per round, so load from other
processes hits all of them alike, and the median of the rounds is reported as a ratio to torch.
The explorers' redraw (compute + render to PNG) is reported as a median in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnkit import softmax as S


def median_ms(fns: dict, repeats: int) -> dict:
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_softmax(rows: int, cols: int, repeats: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(rows, cols) * 5
    x[:, ::7] = float("-inf")  # some masked entries, as in attention
    ref = torch.softmax(x, -1)
    impls = {
        "torch.softmax": lambda: torch.softmax(x, -1),
        "attnkit softmax": lambda: S.softmax(x),
        "attnkit online_softmax, chunk 128": lambda: S.online_softmax(x, chunk_size=128),
        "attnkit naive_softmax (unsafe)": lambda: S.naive_softmax(x),
    }
    for name, f in impls.items():
        torch.testing.assert_close(f(), ref, msg=lambda m, name=name: f"{name}: {m}")
    with torch.inference_mode():
        ms = median_ms(impls, repeats)
    base = ms["torch.softmax"]
    print(f"softmax over ({rows}, {cols}) float32, median of {repeats}:")
    for name, t in ms.items():
        print(f"  {name:<36} {t:9.3f} ms   {t / base:6.2f}x torch")

    lse = {
        "torch.logsumexp": lambda: torch.logsumexp(x, -1),
        "attnkit logsumexp": lambda: S.logsumexp(x),
    }
    torch.testing.assert_close(lse["attnkit logsumexp"](), lse["torch.logsumexp"]())
    with torch.inference_mode():
        ms = median_ms(lse, repeats)
    print(f"logsumexp: attnkit {ms['attnkit logsumexp'] / ms['torch.logsumexp']:.2f}x torch")


def bench_explorers(repeats: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from attnkit.widgets.scaling import scaling_explorer
    from attnkit.widgets.softmax import temperature_explorer

    e = scaling_explorer(d_k=64)
    values = [16, 256, 64, 1024]
    ts = []
    for i in range(repeats):
        t0 = time.perf_counter()
        e.controls["d_k"].value = values[i % len(values)]
        ts.append((time.perf_counter() - t0) * 1e3)
    print(f"chapter 02 explorer (d_k slider): median redraw {statistics.median(ts):.0f} ms")

    f = temperature_explorer()
    temps = [0.1, 1.0, 10.0, 0.5]
    ts = []
    for i in range(repeats):
        t0 = time.perf_counter()
        f.controls["temperature"].value = temps[i % len(temps)]
        ts.append((time.perf_counter() - t0) * 1e3)
    print(f"chapter 03 explorer (temperature slider): median redraw {statistics.median(ts):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-explorers", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_softmax(args.rows, args.cols, args.repeats)
    if not args.no_explorers:
        bench_explorers(max(5, args.repeats // 5))


if __name__ == "__main__":
    main()
