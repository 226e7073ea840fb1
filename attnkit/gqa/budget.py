"""Cache bytes per token of MHA, GQA, MQA and MLA, what fits beside the weights, and the bandwidth bound of decoding.

    MHA  (Vaswani et al. 2017)        2 * n_h * d_h       elements per token per layer
    GQA  (Ainslie et al. 2023)        2 * n_g * d_h       elements   (n_g kv heads, 1 <= n_g <= n_h)
    MQA  (Shazeer 2019)               2 * d_h             elements   (GQA with n_g = 1)
    MLA  (DeepSeek-AI 2024, V2 s2.1)  d_c + d_h^R         elements   (a latent and one rotary key)
"""

from __future__ import annotations

import torch

from attnkit.gqa._checks import _check_positive_int, _check_positive_number, _itemsize
from attnkit.gqa.grouped import kv_head_index

KINDS = ("mha", "gqa", "mqa", "mla")


def kv_cache_elements_per_token(kind: str, num_heads: int | None = None, head_dim: int | None = None,
                                num_kv_heads: int | None = None, kv_lora_rank: int | None = None,
                                qk_rope_head_dim: int | None = None) -> int:
    """Cached elements per token per layer (DeepSeek-V2, Table 1):

    mha 2 n_h d_h · gqa 2 n_g d_h · mqa 2 d_h · mla d_c + d_h^R.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def need(**kw):
        for name, value in kw.items():
            if value is None:
                raise ValueError(f"kind={kind!r} needs {name}, got None")
            _check_positive_int(name, value)

    if kind == "mha":
        need(num_heads=num_heads, head_dim=head_dim)
        return 2 * num_heads * head_dim
    if kind == "gqa":
        need(num_kv_heads=num_kv_heads, head_dim=head_dim)
        if num_heads is not None:
            kv_head_index(num_heads, num_kv_heads)
        return 2 * num_kv_heads * head_dim
    if kind == "mqa":
        need(head_dim=head_dim)
        return 2 * head_dim
    need(kv_lora_rank=kv_lora_rank, qk_rope_head_dim=qk_rope_head_dim)
    return kv_lora_rank + qk_rope_head_dim


def kv_cache_bytes_per_token(kind: str, num_heads: int | None = None, head_dim: int | None = None,
                             num_kv_heads: int | None = None, kv_lora_rank: int | None = None,
                             qk_rope_head_dim: int | None = None, num_layers: int = 1,
                             dtype: torch.dtype | int = torch.float32) -> int:
    """Bytes of KV cache per token: elements per token per layer x num_layers x bytes per element.

    ``dtype`` is a torch dtype (``torch.bfloat16`` -> 2 bytes) or a number of bytes.
    Multiply by context length and batch size for a whole cache.
    """
    _check_positive_int("num_layers", num_layers)
    elems = kv_cache_elements_per_token(kind, num_heads=num_heads, head_dim=head_dim,
                                        num_kv_heads=num_kv_heads, kv_lora_rank=kv_lora_rank,
                                        qk_rope_head_dim=qk_rope_head_dim)
    return elems * num_layers * _itemsize(dtype)


def kv_cache_bytes(kind: str, seq_len: int, batch_size: int = 1, **kw) -> int:
    """Bytes of a whole KV cache: ``kv_cache_bytes_per_token(kind, **kw) * seq_len * batch_size``."""
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("batch_size", batch_size)
    return kv_cache_bytes_per_token(kind, **kw) * seq_len * batch_size


def compare_cache_sizes(num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int,
                        seq_len: int, dtype: torch.dtype | int = torch.bfloat16,
                        kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None,
                        batch_size: int = 1) -> dict[str, int]:
    """Cache bytes of MHA, GQA (``num_kv_heads`` groups), MQA and MLA for one model shape.

    MLA defaults to DeepSeek-V2's proportions: d_c = 4 d_h and d_h^R = d_h / 2 (section 2.1.4).
    """
    kv_lora_rank = 4 * head_dim if kv_lora_rank is None else kv_lora_rank
    qk_rope_head_dim = max(head_dim // 2, 1) if qk_rope_head_dim is None else qk_rope_head_dim
    common = dict(num_layers=num_layers, dtype=dtype)
    return {
        "mha": kv_cache_bytes("mha", seq_len, batch_size, num_heads=num_heads, head_dim=head_dim, **common),
        "gqa": kv_cache_bytes("gqa", seq_len, batch_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                              head_dim=head_dim, **common),
        "mqa": kv_cache_bytes("mqa", seq_len, batch_size, head_dim=head_dim, **common),
        "mla": kv_cache_bytes("mla", seq_len, batch_size, kv_lora_rank=kv_lora_rank,
                              qk_rope_head_dim=qk_rope_head_dim, **common),
    }


def weights_bytes(num_params: int, dtype: torch.dtype | int = torch.bfloat16) -> int:
    """Bytes of a model's weights: parameters x bytes per parameter."""
    _check_positive_int("num_params", num_params)
    return num_params * _itemsize(dtype)


def max_batch_size(memory_bytes: int, weights_bytes: int, cache_bytes_per_sequence: int) -> int:
    """The most sequences whose caches fit beside the weights: floor((M - W) / C), 0 if none.

    ``cache_bytes_per_sequence`` is one sequence's cache at its full context, all layers
    (``kv_cache_bytes(kind, seq_len, **shape)``). Activations and fragmentation are ignored, so
    this is an upper bound.
    """
    _check_positive_int("memory_bytes", memory_bytes)
    _check_positive_int("cache_bytes_per_sequence", cache_bytes_per_sequence)
    _check_positive_int("weights_bytes", weights_bytes, 0)
    return max(memory_bytes - weights_bytes, 0) // cache_bytes_per_sequence


def max_context_length(memory_bytes: int, weights_bytes: int, cache_bytes_per_token: int,
                       batch_size: int = 1) -> int:
    """The longest context of ``batch_size`` sequences that fits: floor((M - W) / (B x c)).

    ``cache_bytes_per_token`` covers all layers (``kv_cache_bytes_per_token(..., num_layers=...)``).
    """
    _check_positive_int("cache_bytes_per_token", cache_bytes_per_token)
    _check_positive_int("batch_size", batch_size)
    return max_batch_size(memory_bytes, weights_bytes, cache_bytes_per_token * batch_size)


def decode_tokens_per_s_bound(bandwidth_bytes_per_s: float, weights_bytes: int,
                              cache_bytes_per_sequence: int, batch_size: int = 1) -> float:
    """Upper bound on the tokens per second of memory-bound decoding, all sequences together.

    A decode step reads every weight once (shared by the batch) and every sequence's cache once,
    and produces one token per sequence:

        tokens/s <= B x bandwidth / (W + B x C).

    Divide by ``batch_size`` for the tokens per second each sequence sees.
    """
    _check_positive_number("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("weights_bytes", weights_bytes, 0)
    _check_positive_int("cache_bytes_per_sequence", cache_bytes_per_sequence, 0)
    read = weights_bytes + batch_size * cache_bytes_per_sequence
    if read == 0:
        raise ValueError("weights_bytes and cache_bytes_per_sequence are both 0: nothing is read")
    return batch_size * bandwidth_bytes_per_s / read


def memory_budget(kind: str, num_params: int, memory_bytes: int, context: int,
                  num_layers: int, num_heads: int, num_kv_heads: int, head_dim: int,
                  dtype: torch.dtype | int = torch.bfloat16, bandwidth_bytes_per_s: float = 3.35e12,
                  kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None) -> dict:
    """What fits beside a model's weights, and how fast it can decode at best.

    One dtype for weights and cache. ``kind`` is mha/gqa/mqa/mla (MLA defaults to d_c = 4 d_h,
    d_h^R = d_h / 2). Returns ``weights_bytes``, ``cache_bytes_per_token`` (all layers),
    ``cache_bytes_per_sequence`` (at ``context``), ``max_batch`` (at ``context``),
    ``max_context`` (batch 1), and the tokens/s bounds ``tokens_per_s_batch1`` and, at
    ``max_batch`` (when it is >= 1), ``tokens_per_s_max_batch`` (all sequences) and
    ``tokens_per_s_per_sequence`` (each one); both are 0.0 when nothing fits.
    """
    kv_lora_rank = 4 * head_dim if kv_lora_rank is None else kv_lora_rank
    qk_rope_head_dim = max(head_dim // 2, 1) if qk_rope_head_dim is None else qk_rope_head_dim
    _check_positive_int("context", context)
    w = weights_bytes(num_params, dtype)
    per_token = kv_cache_bytes_per_token(kind, num_heads=num_heads, head_dim=head_dim,
                                         num_kv_heads=num_kv_heads, kv_lora_rank=kv_lora_rank,
                                         qk_rope_head_dim=qk_rope_head_dim, num_layers=num_layers,
                                         dtype=dtype)
    per_seq = per_token * context
    b = max_batch_size(memory_bytes, w, per_seq)
    both = decode_tokens_per_s_bound(bandwidth_bytes_per_s, w, per_seq, b) if b else 0.0
    return {"weights_bytes": w, "cache_bytes_per_token": per_token, "cache_bytes_per_sequence": per_seq,
            "max_batch": b, "max_context": max_context_length(memory_bytes, w, per_token),
            "tokens_per_s_batch1": decode_tokens_per_s_bound(bandwidth_bytes_per_s, w, per_seq, 1),
            "tokens_per_s_max_batch": both, "tokens_per_s_per_sequence": both / b if b else 0.0}
