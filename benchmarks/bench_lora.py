"""LoRA on this CPU: merged and unmerged LoRALinear against the base nn.Linear, and the chapter
10 explorer's redraw.

    .venv/bin/python benchmarks/bench_lora.py [--repeats N] [--dim D] [--tokens T] [--rank R] [--threads T]

Forward only, torch.inference_mode(), one thread by default. The layers compute from weights of
the same shape (the merged layer's W already holds W + (alpha/r) B A); they run round-robin, one
call each per round, and the median of the rounds is reported, as wall time and as the CPU time
of the calling thread (on a shared machine the wall clock also counts the time the thread waits
for a core; the CPU time still counts page faults; with more than one thread only the wall time
is judged). Bar: merged LoRA within
1.05x of the base layer at d = 1024, where the matmul dominates; a second base layer timed in the
same round robin shows the noise floor of the run (the A/A line).

The merged layer is timed in a round robin of its own with the two base layers, the unmerged layer
in another with a base layer. Together in one round, the unmerged layer frees three (tokens, dim)
temporaries per call; when the allocator hands their pages back to the system, the next call of
the round pays about 512 page faults for its 2 MiB output. Timed right after the unmerged layer,
the merged one measured 1.068x-1.091x the base layer in CPU time in 2 of 6 runs (0.98x-1.02x in the
others): the 7 % of an earlier run of this benchmark, an artefact of the order, not of the layer.
The unmerged overhead at r = 8 is printed next to its share of the FLOPs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from timing import round_robin_medians
from torch import nn

from attnkit.lora import LoRALinear


def _timed(impls: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Round-robin medians of each zero-argument callable: {"wall": s, "cpu": s} (thread CPU time)."""
    cpu: dict[str, list[float]] = {name: [] for name in impls}

    def with_cpu_time(name, f):
        def call():
            t0 = time.thread_time()
            f()
            cpu[name].append(time.thread_time() - t0)
        return call

    wall = round_robin_medians({name: with_cpu_time(name, f) for name, f in impls.items()}, repeats, warmup=1)
    return {name: {"wall": wall[name], "cpu": statistics.median(cpu[name][1:])} for name in impls}  # [1:]: warm-up


def run(dim: int, tokens: int, rank: int, repeats: int) -> tuple[dict, dict]:
    """Two round robins: (base, A/A, merged) and (base, unmerged); see the module doc for why."""
    torch.manual_seed(0)
    base = nn.Linear(dim, dim)
    again = nn.Linear(dim, dim)  # a second base layer: the A/A noise floor of this run
    unmerged = LoRALinear.from_linear(nn.Linear(dim, dim), r=rank)
    merged = LoRALinear.from_linear(nn.Linear(dim, dim), r=rank)
    with torch.no_grad():
        for m in (unmerged, merged):
            m.lora_B.normal_()  # a trained-looking update, so nothing is zero
    x = torch.randn(tokens, dim)
    with torch.inference_mode():
        reference = merged(x)
        merged.merge()
        torch.testing.assert_close(merged(x), reference, rtol=1e-4, atol=1e-3)  # same function, merged
        merged_run = _timed({"base nn.Linear": lambda: base(x), "base again (A/A)": lambda: again(x),
                             "LoRA merged": lambda: merged(x)}, repeats)
        unmerged_run = _timed({"base nn.Linear": lambda: base(x),
                               f"LoRA unmerged (r={rank})": lambda: unmerged(x)}, repeats)
    return merged_run, unmerged_run


def explorer_redraw_ms(repeats: int) -> dict:
    """Median wall time of one redraw of chapter 10's explorer (a short experiment: the picture
    costs the same whatever the numbers), next to chapter 07's explorer in the same process."""
    import matplotlib

    matplotlib.use("Agg")
    from attnkit.experiments.lora import run_budget_experiment
    from attnkit.widgets import flash as wf
    from attnkit.widgets import lora as wl

    ex = run_budget_experiment(steps=20)
    lora_ex, flash_ex = wl.lora_explorer(ex), wf.flash_explorer()
    times = {"chapter 10 (LoRA runs)": [], "chapter 07 (flash, for scale)": []}
    ranks = sorted({k[1] for k in ex["runs"]})
    for i in range(repeats):
        t0 = time.perf_counter()
        lora_ex.controls["rank"].value = ranks[(i + 1) % len(ranks)]
        times["chapter 10 (LoRA runs)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        flash_ex.controls["step"].value = 1 + (i + 1) % 9
        times["chapter 07 (flash, for scale)"].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    merged_run, unmerged_run = run(args.dim, args.tokens, args.rank, args.repeats)
    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} thread(s); "
          f"d={args.dim}, tokens={args.tokens}, r={args.rank}; median of {args.repeats}")
    print(f"  {'layer':<24}{'wall ms':>10}{'/ base':>8}{'CPU ms':>10}{'/ base':>8}")
    ratio = {}
    for med in (merged_run, unmerged_run):
        base = med["base nn.Linear"]
        for name, t in med.items():
            ratio[name] = {c: t[c] / base[c] for c in ("wall", "cpu")}
            print(f"  {name:<24}{1e3 * t['wall']:>10.3f}{ratio[name]['wall']:>8.3f}"
                  f"{1e3 * t['cpu']:>10.3f}{ratio[name]['cpu']:>8.3f}")
    merged, noise = ratio["LoRA merged"], ratio["base again (A/A)"]
    unmerged = ratio[f"LoRA unmerged (r={args.rank})"]
    share = 2 * args.rank * 2 * args.dim / (2 * args.dim * args.dim)
    judge = "cpu" if torch.get_num_threads() == 1 else "wall"  # one thread's CPU time misses the others'
    print(f"\nmerged / base = {merged['cpu']:.3f}x CPU, {merged['wall']:.3f}x wall (bar 1.05x, {judge}): "
          f"{'PASS' if merged[judge] <= 1.05 else 'FAIL'}; the same layer timed twice (A/A): "
          f"{noise['cpu']:.3f}x CPU, {noise['wall']:.3f}x wall (noise floor of this run)")
    print(f"unmerged / base = {unmerged['cpu']:.3f}x CPU, {unmerged['wall']:.3f}x wall at r = {args.rank} "
          f"(the update adds {share:.2%} to the base layer's FLOPs)")
    print(f"\nexplorer redraw, median of {args.repeats}:")
    for name, ms in explorer_redraw_ms(args.repeats).items():
        print(f"  {name:<32}{ms:>8.1f} ms")


if __name__ == "__main__":
    main()
