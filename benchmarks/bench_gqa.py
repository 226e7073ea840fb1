"""Chapter 05 benchmark: decode-step time and KV-cache bytes of GQA, MQA and MLA relative to MHA,
and attnkit's production paths against the equivalent computation written directly in PyTorch.

    .venv/bin/python benchmarks/bench_gqa.py [--threads N] [--repeats R] [--contexts 512 2048 8192]

attnkit's production decoding path reserves the cache once (``KVCache(max_len)``) and writes each
new token in place; the ``*_cat`` rows are attnkit with the exact-size cache (``KVCache()``, one
``torch.cat`` per step, like the PyTorch baseline, a Hugging Face ``DynamicCache``-style cat).
The cache bytes are the exact-size cache's, compared with the formula.

Everything is printed as ratios from one run. Timings are medians per call over ``repeats``
round-robin samples (attnkit.timing), each sample a loop of calls lasting about 20 ms, so that
the attnkit and PyTorch versions see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timing import round_robin_medians

from attnkit.gqa import (
    GroupedQueryAttention,
    KVCache,
    MultiHeadLatentAttention,
    kv_cache_bytes,
    make_decode_model,
)

E, H, KV = 512, 8, 2  # width, query heads, GQA kv heads
D = E // H


def torch_gqa_step(m: GroupedQueryAttention, x, k_past, v_past):
    """The same decode step in plain PyTorch, on the same nn.Linear projections: an HF-style cat
    cache and SDPA with enable_gqa, no checks."""
    B = x.shape[0]
    q = m.q_proj(x).view(B, 1, m.num_heads, m.head_dim).transpose(1, 2)
    k = m.k_proj(x).view(B, 1, m.num_kv_heads, m.head_dim).transpose(1, 2)
    v = m.v_proj(x).view(B, 1, m.num_kv_heads, m.head_dim).transpose(1, 2)
    k, v = torch.cat([k_past, k], dim=2), torch.cat([v_past, v], dim=2)
    o = F.scaled_dot_product_attention(q, k, v, enable_gqa=m.num_kv_heads != m.num_heads)
    return m.o_proj(o.transpose(1, 2).reshape(B, 1, -1)), (k, v)


def torch_gqa_prefill(m: GroupedQueryAttention, x):
    B, L, _ = x.shape
    q = m.q_proj(x).view(B, L, m.num_heads, m.head_dim).transpose(1, 2)
    k = m.k_proj(x).view(B, L, m.num_kv_heads, m.head_dim).transpose(1, 2)
    v = m.v_proj(x).view(B, L, m.num_kv_heads, m.head_dim).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=m.num_kv_heads != m.num_heads)
    return m.o_proj(o.transpose(1, 2).reshape(B, L, -1))


def per_call_medians(fns: dict, repeats: int, min_sample_s: float = 0.02) -> dict:
    """Median seconds per call of each callable, timed round-robin (attnkit.timing).

    A decode step takes a fraction of a millisecond, where one call's time is mostly timer and
    cache noise: each sample runs a callable enough times in a row to last about
    ``min_sample_s`` (the count is fixed per callable from a first calibration), and the
    samples of all callables are interleaved."""
    counts = {}
    for name, f in fns.items():
        f()
        t0 = time.perf_counter()
        f()
        counts[name] = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-6)))

    def loop(f, n):
        def run():
            for _ in range(n):
                f()
        return run

    med = round_robin_medians({name: loop(f, counts[name]) for name, f in fns.items()}, repeats)
    return {name: med[name] / counts[name] for name in fns}


@torch.no_grad()
def decode_table(contexts, repeats: int):
    g = torch.Generator().manual_seed(0)
    models = {k: make_decode_model(k, embed_dim=E, num_heads=H, num_kv_heads=KV) for k in ("mha", "gqa", "mqa", "mla")}
    x = torch.randn(1, 1, E, generator=g)
    shape = dict(num_heads=H, head_dim=D, num_kv_heads=KV, kv_lora_rank=4 * D, qk_rope_head_dim=D // 2,
                 dtype=torch.float32)
    rows = []
    for S in contexts:
        fns, bytes_measured = {}, {}
        for kind, m in models.items():
            if isinstance(m, MultiHeadLatentAttention):
                past = (torch.randn(1, S, m.kv_lora_rank + m.qk_rope_head_dim, generator=g),)
            else:
                past = (torch.randn(1, m.num_kv_heads, S, D, generator=g),
                        torch.randn(1, m.num_kv_heads, S, D, generator=g))

            def step_cat(m=m, past=past, **kw):  # KVCache(): exact-size tensors, one cat per step
                cache = KVCache()
                cache.tensors = past
                m(x, is_causal=True, kv_cache=cache, **kw)
                return cache

            # the production path: storage reserved once (KVCache(max_len)), the new token written
            # in place; crop(S) goes back to the same S cached positions before every step
            static = KVCache(max_len=S + 1)
            static.update(*past)

            def step(m=m, cache=static, S=S, **kw):
                cache.crop(S)
                m(x, is_causal=True, kv_cache=cache, **kw)
                return cache

            if kind == "mla":
                fns["mla"] = lambda step=step: step(absorb=True)
                fns["mla_naive"] = lambda step=step: step(absorb=False)
                fns["mla_cat"] = lambda step=step_cat: step(absorb=True)
            else:
                fns[kind] = step
                fns[kind + "_cat"] = step_cat
                own = tuple(p.clone() for p in past)  # its own memory: no shared warm cache lines
                fns[kind + "_torch"] = lambda m=m, own=own: torch_gqa_step(m, x, *own)
            bytes_measured[kind] = (step_cat(absorb=True) if kind == "mla" else step_cat()).nbytes
        best = per_call_medians(fns, repeats)
        for kind in ("mha", "mha_cat", "gqa", "gqa_cat", "mqa", "mqa_cat", "mla", "mla_cat", "mla_naive"):
            base = kind.split("_")[0]
            formula = kv_cache_bytes(base, S + 1, **shape)
            ref = base + "_torch"
            vs_torch = best[kind] / best[ref] if ref in best else float("nan")
            rows.append([S, kind, best[kind] * 1e3, best[kind] / best["mha"], vs_torch,
                         bytes_measured[base], bytes_measured[base] / bytes_measured["mha"],
                         bytes_measured[base] == formula])
    return rows


@torch.no_grad()
def prefill_ratios(L: int, repeats: int):
    x = torch.randn(1, L, E, generator=torch.Generator().manual_seed(1))
    out = {}
    for kind in ("mha", "gqa", "mqa"):
        m = make_decode_model(kind, embed_dim=E, num_heads=H, num_kv_heads=KV)
        best = per_call_medians({"attnkit": lambda m=m: m(x, is_causal=True),
                                    "torch": lambda m=m: torch_gqa_prefill(m, x)}, repeats)
        out[kind] = best["attnkit"] / best["torch"]
    return out


def widget_redraw_ms(n: int = 9) -> float:
    import matplotlib

    matplotlib.use("Agg")
    from attnkit.widgets.kvcache import kv_cache_explorer

    e = kv_cache_explorer()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        e.controls["num_heads"].value = (16, 32, 64)[i % 3]
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--prefill", type=int, default=1024)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one layer E={E}, {H} heads of {D}; "
          f"GQA {KV} kv heads; MLA d_c={4 * D}, d_h^R={D // 2}; float32, batch 1")
    print("\nDecode step: one new token after S cached ones (median per call of", args.repeats, "round-robin samples)")
    hdr = f"{'S':>6} {'kind':>10} {'ms':>8} {'time/MHA':>9} {'attnkit/torch':>14} {'cache B':>10} {'bytes/MHA':>10} {'==formula':>10}"
    print(hdr)
    print("-" * len(hdr))
    for S, kind, ms, rel, vs_t, nb, rel_b, ok in decode_table(args.contexts, args.repeats):
        vs = "-" if vs_t != vs_t else f"{vs_t:.2f}x"
        print(f"{S:>6} {kind:>10} {ms:>8.3f} {rel:>8.2f}x {vs:>14} {nb:>10} {rel_b:>9.3f}x {ok!s:>10}")
    print(f"\nPrefill (causal self-attention, L={args.prefill}): attnkit / PyTorch time")
    for kind, r in prefill_ratios(args.prefill, max(3, args.repeats // 3)).items():
        print(f"  {kind:>4}: {r:.2f}x")
    print(f"\nKV-cache explorer redraw (median of 9): {widget_redraw_ms():.0f} ms")


if __name__ == "__main__":
    main()
