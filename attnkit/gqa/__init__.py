"""Attention that caches less per token (chapter 05): the KV cache, MHA / GQA / MQA, MLA and the cache budget.

Decoding one token at a time, a transformer re-reads every cached key and value of every layer
at every step, so the size of that cache sets how fast (and how long) it can generate. The
mechanisms differ only in what they cache per token and per layer:

    MHA  (Vaswani et al. 2017)        2 * n_h * d_h       elements
    GQA  (Ainslie et al. 2023)        2 * n_g * d_h       elements   (n_g kv heads, 1 <= n_g <= n_h)
    MQA  (Shazeer 2019)               2 * d_h             elements   (GQA with n_g = 1)
    MLA  (DeepSeek-AI 2024, V2 s2.1)  d_c + d_h^R         elements   (a latent and one rotary key)

Modules: ``cache`` (KVCache; RollingKVCache, rolling_decode and sink_window_mask: a causal
window's rolling buffer with attention sinks), ``grouped`` (repeat_kv, grouped_query_attention,
GroupedQueryAttention), ``latent`` (MultiHeadLatentAttention), ``budget`` (cache bytes, memory
budgets, the bandwidth bound). This package re-exports their public names.

Chapter 05's experiments (``TinyDecoder``, ``greedy_generate``, ``make_decode_model``,
``decode_step``, ``measure_decode_step(s)``) live in ``attnkit.experiments.decode``; the old paths
``attnkit.gqa.TinyDecoder``, ... still work, forwarded on first use (PEP 562).
"""

from __future__ import annotations

from attnkit.gqa.budget import (
    KINDS,
    compare_cache_sizes,
    decode_tokens_per_s_bound,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    kv_cache_elements_per_token,
    max_batch_size,
    max_context_length,
    memory_budget,
    weights_bytes,
)
from attnkit.gqa.cache import KVCache, RollingKVCache, rolling_decode, sink_window_mask
from attnkit.gqa.grouped import (
    GroupedQueryAttention,
    grouped_query_attention,
    kv_head_index,
    mean_pool_kv_heads,
    repeat_kv,
)
from attnkit.gqa.latent import MultiHeadLatentAttention

__all__ = [
    "KVCache",
    "RollingKVCache",
    "rolling_decode",
    "sink_window_mask",
    "repeat_kv",
    "kv_head_index",
    "grouped_query_attention",
    "mean_pool_kv_heads",
    "GroupedQueryAttention",
    "MultiHeadLatentAttention",
    "kv_cache_elements_per_token",
    "kv_cache_bytes_per_token",
    "kv_cache_bytes",
    "compare_cache_sizes",
    "KINDS",
    "weights_bytes",
    "max_batch_size",
    "max_context_length",
    "decode_tokens_per_s_bound",
    "memory_budget",
]

# Old paths of chapter 05's experiments, now in attnkit.experiments.decode (a layer above).
_FORWARDS = {name: "attnkit.experiments.decode" for name in (
    "TinyDecoder", "greedy_generate", "make_decode_model", "decode_step", "measure_decode_step",
    "measure_decode_steps")}


def __getattr__(name: str):
    """Forward the old ``attnkit.gqa.<experiment>`` paths to ``attnkit.experiments.decode``."""
    if name in _FORWARDS:
        import importlib

        return getattr(importlib.import_module(_FORWARDS[name]), name)
    raise AttributeError(f"module 'attnkit.gqa' has no attribute {name!r}")
