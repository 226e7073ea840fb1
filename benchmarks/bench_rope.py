"""attnkit's StandardAttentionWithRoPE against the same attention written in plain PyTorch.

    .venv/bin/python benchmarks/bench_rope.py [--repeats N] [--batch B] [--seq L]

Forward only, eval mode, torch.inference_mode(), return_attn=False. Every implementation uses the
module's own weights and computes the same output (checked before timing):

* "plain PyTorch, complex RoPE": q/k/v projections, interleaved RoPE as complex multiplication by
  precomputed e^{i m theta} (Meta's LLaMA code), F.scaled_dot_product_attention, out projection.
  This is the equivalent of attnkit's module (same pairing of channels): the bar.
* "plain PyTorch, rotate_half RoPE": the HF LLaMA formulation (half-split, on permuted weights).
* "no RoPE": the same attention without any position encoding, to show what RoPE costs.

They run round-robin, one call each per round, so load from other processes hits all alike; the
median of the rounds is reported. Bar: attnkit within 1.10x of the
equivalent plain PyTorch.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import round_robin_medians

from attnkit.rope import StandardAttentionWithRoPE, generate_rope_embeddings, permute_qk_weight


def heads(x, H):
    return x.unflatten(-1, (H, -1)).transpose(1, 2)  # (B, H, L, Dh)


def plain_complex(m, x, freqs_cis, mask):
    """Interleaved RoPE as in Meta's LLaMA: pairs as complex numbers times e^{i m theta}."""
    H = m.num_heads
    q, k, v = heads(m.q_proj(x), H), heads(m.k_proj(x), H), heads(m.v_proj(x), H)

    def rot(t):
        tc = torch.view_as_complex(t.float().reshape(*t.shape[:-1], -1, 2))  # (B, H, L, Dh/2)
        return torch.view_as_real(tc * freqs_cis).flatten(-2).type_as(t)

    o = F.scaled_dot_product_attention(rot(q), rot(k), v, attn_mask=mask)
    return m.out_proj(o.transpose(1, 2).flatten(2))


def plain_rotate_half(m, wq, bq, wk, bk, x, cos2, sin2, mask):
    """HF LLaMA: x * cos + rotate_half(x) * sin, on q/k weights permuted to the half-split layout."""
    H = m.num_heads

    def rotate_half(t):
        a, b = t.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    q, k = heads(F.linear(x, wq, bq), H), heads(F.linear(x, wk, bk), H)
    v = heads(m.v_proj(x), H)
    q, k = q * cos2 + rotate_half(q) * sin2, k * cos2 + rotate_half(k) * sin2
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return m.out_proj(o.transpose(1, 2).flatten(2))


def no_rope(m, x, mask):
    H = m.num_heads
    q, k, v = heads(m.q_proj(x), H), heads(m.k_proj(x), H), heads(m.v_proj(x), H)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return m.out_proj(o.transpose(1, 2).flatten(2))


def run(batch, seq, embed, num_heads, causal, repeats, warmup=1):
    torch.manual_seed(0)
    m = StandardAttentionWithRoPE(embed, num_heads).eval()
    x = torch.randn(batch, seq, embed)
    cos, sin = generate_rope_embeddings(seq, embed // num_heads)
    freqs_cis = torch.complex(cos, sin)  # (L, Dh/2)
    cos2, sin2 = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)  # (L, Dh)
    wq, wk = permute_qk_weight(m.q_proj.weight, num_heads), permute_qk_weight(m.k_proj.weight, num_heads)
    bq, bk = permute_qk_weight(m.q_proj.bias, num_heads), permute_qk_weight(m.k_proj.bias, num_heads)
    mask = torch.ones(seq, seq, dtype=torch.bool).tril() if causal else None
    impls = {
        "attnkit StandardAttentionWithRoPE": lambda: m(x, x, x, rope_embeddings=(cos, sin), attn_mask=mask),
        "plain PyTorch, complex RoPE": lambda: plain_complex(m, x, freqs_cis, mask),
        "plain PyTorch, rotate_half RoPE": lambda: plain_rotate_half(m, wq, bq, wk, bk, x, cos2, sin2, mask),
        "no RoPE (same attention)": lambda: no_rope(m, x, mask),
    }
    with torch.inference_mode():
        ref = impls["attnkit StandardAttentionWithRoPE"]()
        for name, f in impls.items():  # same answer, or the timing means nothing
            if name.startswith("plain"):
                torch.testing.assert_close(f(), ref, atol=1e-4, rtol=1e-4)
        return round_robin_medians(impls, repeats, warmup)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"B={args.batch} L={args.seq} E={args.embed} H={args.heads}; median of {args.repeats}")
    worst = 0.0
    for causal in (False, True):
        med = run(args.batch, args.seq, args.embed, args.heads, causal, args.repeats)
        ours = med["attnkit StandardAttentionWithRoPE"]
        ratio = ours / med["plain PyTorch, complex RoPE"]
        worst = max(worst, ratio)
        print(f"\ncausal={causal}")
        print(f"  {'implementation':<36}{'median ms':>10}{'attnkit / it':>14}")
        for name, s in med.items():
            print(f"  {name:<36}{s * 1e3:>10.2f}{ours / s:>14.3f}")
    print(f"\nworst ratio attnkit / equivalent plain PyTorch (complex RoPE): {worst:.3f} "
          f"(bar 1.10: {'met' if worst <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
