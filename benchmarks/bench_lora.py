"""LoRA on this CPU: merged and unmerged LoRALinear against the base nn.Linear, and the chapter
10 explorer's redraw.

    .venv/bin/python benchmarks/bench_lora.py [--repeats N] [--dim D] [--tokens T] [--rank R] [--threads T]

Forward only, torch.inference_mode(), one thread by default. The three layers compute from
weights of the same shape (the merged layer's W already holds W + (alpha/r) B A); they run
round-robin, one call each per round, and the median of the rounds is reported. Bar (DESIGN.md
section 7): merged LoRA within 1.05x of the base layer at d = 1024, where the matmul dominates.
The unmerged overhead at r = 8 is printed next to its share of the FLOPs, and a second base
layer timed alongside shows the noise floor of the run (on a loaded machine it can exceed 5%).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from timing import round_robin_medians
from torch import nn

from attnkit.lora import LoRALinear


def run(dim: int, tokens: int, rank: int, repeats: int) -> dict:
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
        impls = {"base nn.Linear": lambda: base(x), "base again (A/A)": lambda: again(x),
                 f"LoRA unmerged (r={rank})": lambda: unmerged(x), "LoRA merged": lambda: merged(x)}
        return round_robin_medians(impls, repeats)


def explorer_redraw_ms(repeats: int) -> dict:
    """Median wall time of one redraw of chapter 10's explorer (a short experiment: the picture
    costs the same whatever the numbers), next to chapter 07's explorer in the same process."""
    import matplotlib

    matplotlib.use("Agg")
    from attnkit.lora import run_budget_experiment
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
    med = run(args.dim, args.tokens, args.rank, args.repeats)
    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} thread(s); "
          f"d={args.dim}, tokens={args.tokens}, r={args.rank}; median of {args.repeats}")
    print(f"  {'layer':<24}{'median ms':>12}{'/ base':>10}")
    base = med["base nn.Linear"]
    for name, s in med.items():
        print(f"  {name:<24}{1e3 * s:>12.3f}{s / base:>10.3f}")
    merged = med["LoRA merged"] / base
    unmerged = med[f"LoRA unmerged (r={args.rank})"] / base
    share = 2 * args.rank * 2 * args.dim / (2 * args.dim * args.dim)
    noise = med["base again (A/A)"] / base
    print(f"\nmerged / base = {merged:.3f}x (bar 1.05x): {'PASS' if merged <= 1.05 else 'FAIL'}; "
          f"the same layer timed twice gives {noise:.3f}x on this run (noise floor)")
    print(f"unmerged / base = {unmerged:.3f}x at r = {args.rank} "
          f"(the update adds {share:.2%} to the base layer's FLOPs)")
    print(f"\nexplorer redraw, median of {args.repeats}:")
    for name, ms in explorer_redraw_ms(args.repeats).items():
        print(f"  {name:<32}{ms:>8.1f} ms")


if __name__ == "__main__":
    main()
