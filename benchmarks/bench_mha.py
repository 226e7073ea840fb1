"""attnkit's MultiHeadAttention against torch.nn.MultiheadAttention and bare SDPA, on this CPU.

    .venv/bin/python benchmarks/bench_mha.py [--repeats N] [--batch B] [--seq L] [--threads T]

Forward only, eval mode, torch.inference_mode(), need_weights=False. The three implementations
compute the same thing (input projections, attention, output projection) from the same weights;
they run round-robin, one call each per round, so load from other processes hits all of them
alike, and the median of the rounds is reported. Bar: attnkit within
1.10x of nn.MultiheadAttention.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timing import round_robin_medians
from torch import nn

from attnkit.mha import MultiHeadAttention


def bare_sdpa(m: nn.MultiheadAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Packed QKV projection + F.scaled_dot_product_attention + output projection."""
    B, L, E = x.shape
    H = m.num_heads
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)  # (B, L, 3E)
    q, k, v = qkv.view(B, L, 3, H, E // H).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, L, Dh)
    return m.out_proj(o.transpose(1, 2).reshape(B, L, E))  # (B, L, E)


def run(batch: int, seq: int, embed: int, heads: int, causal: bool, repeats: int, warmup: int = 1):
    torch.manual_seed(0)
    m = nn.MultiheadAttention(embed, heads, batch_first=True).eval()
    a = MultiHeadAttention.from_torch(m).eval()
    x = torch.randn(batch, seq, embed)
    blocked = ~torch.ones(seq, seq, dtype=torch.bool).tril() if causal else None  # torch: True = masked
    impls = {
        "nn.MultiheadAttention": lambda: m(x, x, x, attn_mask=blocked, is_causal=causal, need_weights=False)[0],
        "SDPA (bare)": lambda: bare_sdpa(m, x, causal),
        "attnkit MHA": lambda: a(x, is_causal=causal)[0],
    }
    with torch.inference_mode():
        ref = impls["nn.MultiheadAttention"]()
        for f in impls.values():  # same answer, or the timing means nothing
            torch.testing.assert_close(f(), ref, atol=1e-4, rtol=1e-4)
        return round_robin_medians(impls, repeats, warmup)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--embed", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"B={args.batch} L={args.seq} E={args.embed} H={args.heads}; median of {args.repeats}")
    worst = 0.0
    for causal in (True, False):
        med = run(args.batch, args.seq, args.embed, args.heads, causal, args.repeats)
        ours = med["attnkit MHA"]
        r_torch = ours / med["nn.MultiheadAttention"]
        r_sdpa = ours / med["SDPA (bare)"]
        worst = max(worst, r_torch)
        print(f"\ncausal={causal}")
        print(f"  {'implementation':<24}{'median ms':>12}")
        for name, s in med.items():
            print(f"  {name:<24}{1e3 * s:>12.1f}")
        print(f"  attnkit / nn.MultiheadAttention = {r_torch:.3f}x")
        print(f"  attnkit / SDPA (bare)           = {r_sdpa:.3f}x")
    verdict = "PASS" if worst <= 1.10 else "FAIL"
    print(f"\nworst attnkit / nn.MultiheadAttention = {worst:.3f}x (bar 1.10x): {verdict}")
    print(f"\nchapter 04 explorer redraw, median of {args.repeats}:")
    for view, ms in explorer_redraw_ms(args.repeats).items():
        print(f"  {view:<28}{ms:>8.1f} ms")


def explorer_redraw_ms(repeats: int) -> dict:
    """Median wall time of one redraw of chapter 04's heads explorer (untrained model: the
    drawing cost does not depend on the weights), for the all-heads grid and one head."""
    import matplotlib

    matplotlib.use("Agg")
    from attnkit.widgets.heads import TinyAttentionModel, heads_explorer

    torch.manual_seed(0)
    ex = heads_explorer(TinyAttentionModel().eval())
    out = {}
    for view, head in (("all heads (4 heatmaps)", -1), ("one head (1 heatmap)", 0)):
        ex.controls["head"].value = head
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ex.controls["sentence"].value = (ex.controls["sentence"].value + 1) % 3  # one redraw
            ts.append(time.perf_counter() - t0)
        out[view] = 1e3 * statistics.median(ts)
    return out


if __name__ == "__main__":
    main()
