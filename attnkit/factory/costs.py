"""Cost formulas of one attention layer: parameters, memory by mode (forward, training, decode) and attended pairs.

Memory is counted in MB = 2**20 bytes throughout (what ``torch.cuda.max_memory_allocated() / 2**20``
reports).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attnkit import gqa as _gqa
from attnkit import linear as _linear
from attnkit import mha as _mha
from attnkit import sparse as _sparse
from attnkit.factory.config import (
    LINEAR,
    NAMES,
    NO_CAUSAL,
    SOFTMAX_DENSE,
    SPARSE,
    AttentionConfig,
    _pattern,
    _positive_int,
)

MB = 2 ** 20

def param_count(cfg: AttentionConfig) -> int:
    """Parameters of ``create_attention(cfg)``, from the chapters' formulas (a test counts them)."""
    r = cfg.resolved
    k, E, H, Dh = cfg.attention_type, cfg.d_model, cfg.n_heads, r.head_dim
    if k in ("full", "flash", "lora") or k in SPARSE or k in LINEAR:
        n = _mha.mha_param_count(E, H)  # 4 E^2 + 4 E (q, k, v, out with biases)
        if k == "lora":
            n += sum(cfg.lora_r * (E + E) for _ in cfg.lora_targets)  # A (r, in) + B (out, r) each
        if k == "linformer":
            if cfg.max_seq_len is None:
                raise ValueError("linformer needs max_seq_len, got None")
            n += 2 * cfg.max_seq_len * r.proj_k  # E and F (shared by the heads)
        return n
    if k in ("gqa", "mqa"):  # no bias: q (E, E), k and v (E, g Dh), o (E, E)
        return 2 * E * E + 2 * E * r.num_kv_heads * Dh
    # mla: W^UQ, W^QR, W^DKV, RMSNorm(d_c), W^KR, W^UK, W^UV, W^O (no bias)
    dc, dr = r.kv_lora_rank, r.qk_rope_head_dim
    return E * H * Dh + E * H * dr + E * dc + dc + E * dr + dc * H * Dh + dc * H * Dh + H * Dh * E


MODES = ("forward", "training", "decode")


def _score_elements(cfg: AttentionConfig, N: int) -> int:
    """Elements of the mechanism's own term per (batch, head), from the chapters' cost formulas.

    Materialised softmax (full, gqa, mqa, mla, lora): N^2 scores. flash: one 64 x 64 tile plus
    the running max and sum (2N). Sparse: the attended pairs (``attnkit.sparse.pattern_pairs``,
    N * w for a window). Linear family: ``attnkit.linear.attention_cost(...)["extra_bytes"]``
    (features of q and k plus the d x d state, or N x k, or N x m landmarks), in elements.
    """
    k = cfg.attention_type
    if k in SOFTMAX_DENSE:
        return N * N
    if k == "flash":
        return 64 * 64 + 2 * N
    if k in ("local", "strided") and not (k == "strided" and not cfg.causal):
        args = {key: v for key, v in _pattern(cfg).items() if key != "pattern"}
        return _sparse.pattern_pairs(_pattern(cfg)["pattern"], N, cfg.causal, **args)
    if k in SPARSE:
        return sparse_pairs(cfg, N)
    r = cfg.resolved
    m = {"performer": r.nb_features, "linformer": r.proj_k, "nystrom": r.num_landmarks}.get(k)
    return _linear.attention_cost(k, N, cfg.resolved.head_dim, m=m, bytes_per=1)["extra_bytes"]


def sparse_pairs(cfg: AttentionConfig, N: int) -> int:
    """Attended pairs of the patterns that ``attnkit.sparse.pattern_pairs`` counts from the
    predicate (O(N^2)), counted here per row or per block (a test checks that both agree).

    Block patterns (block_sparse: the block-diagonal layout; bigbird: ``bigbird_layout``), block
    sizes s_r (the last may be short): not causal s^T layout s; causal, the kept blocks below the
    diagonal whole and the diagonal ones s_r (s_r + 1) / 2.
    Longformer with G = the first g tokens: a global query sees all N keys (causal: i + 1);
    another sees its window W(i) plus the globals outside it, max(0, min(g, i - w/2)) not causal,
    max(0, min(g, i - w + 1)) causal.
    Strided, not causal: |A1| + |A2| - |A1 ∩ A2| with A1 = {|i - j| <= l} and
    A2 = {j ≡ i mod l}: A1 ∩ A2 = {i - l, i, i + l} within [0, N).
    """
    i = torch.arange(N)
    if cfg.attention_type in ("block_sparse", "bigbird"):
        b = cfg.resolved.block_size
        nb = math.ceil(N / b)
        layout = (torch.eye(nb, dtype=torch.bool) if cfg.attention_type == "block_sparse" else
                  _sparse.bigbird_layout(nb, num_random_blocks=cfg.num_random_blocks, seed=cfg.seed))
        sizes = torch.clamp(N - torch.arange(nb) * b, max=b)  # (nb,)
        if not cfg.causal:
            return int(sizes @ layout.long() @ sizes)
        below = int(sizes @ torch.tril(layout, -1).long() @ sizes)
        return below + int((layout.diagonal().long() * sizes * (sizes + 1) // 2).sum())
    if cfg.attention_type == "strided":
        s = cfg.resolved.stride
        a1 = torch.clamp(i + s, max=N - 1) - torch.clamp(i - s, min=0) + 1
        a2 = (N - 1 - i % s) // s + 1
        both = 1 + (i - s >= 0).long() + (i + s < N).long()
        return int((a1 + a2 - both).sum())
    w, g = cfg.resolved.window_size, min(cfg.num_global_tokens, N)
    if cfg.causal:
        win, outside, glob = torch.clamp(i + 1, max=w), torch.clamp(torch.clamp(i - w + 1, min=0), max=g), i + 1
    else:
        h = w // 2
        win = torch.clamp(i + h, max=N - 1) - torch.clamp(i - h, min=0) + 1
        outside, glob = torch.clamp(torch.clamp(i - h, min=0), max=g), torch.full_like(i, N)
    return int(torch.where(i < g, glob, win + outside).sum())


def _io_elements(cfg: AttentionConfig, N: int) -> int:
    """Per batch element: q, k, v, the merged heads and the output, (N, width) each."""
    E, k, r = cfg.d_model, cfg.attention_type, cfg.resolved
    if k == "mla":
        H, Dh, dr, dc = cfg.n_heads, r.head_dim, r.qk_rope_head_dim, r.kv_lora_rank
        return N * (2 * H * (Dh + dr) + 2 * H * Dh + (dc + dr) + E)
    kv = r.num_kv_heads * r.head_dim
    return N * (E + 2 * kv + E + E)


def _cache_tokens(cfg: AttentionConfig, N: int) -> int:
    """Tokens a decoder must keep to produce token N (its KV cache length)."""
    k = cfg.attention_type
    if k == "local":
        return min(N, cfg.resolved.window_size)
    if k == "longformer":
        return min(N, cfg.resolved.window_size + cfg.num_global_tokens)
    if k == "block_sparse":
        return min(N, cfg.resolved.block_size)
    if k == "strided":
        return min(N, cfg.resolved.stride + math.ceil(N / cfg.resolved.stride))
    return N


def memory_breakdown(cfg: AttentionConfig, seq_len: int, batch_size: int = 1, dtype_bytes: int = 4,
                     mode: str = "forward") -> dict:
    """Bytes of one layer at ``seq_len``, by the cost formulas of the earlier chapters.

    mode "forward": parameters + activations (q, k, v, context, output) + the mechanism's own
    term (``_score_elements``: N^2 per head for materialised softmax, a tile for flash, the
    attended pairs for sparse patterns, features and state for linear attention).
    "training": the same, with parameters counted four times (weights, gradients, AdamW's two
    moments; the forward's tensors are what the backward keeps).
    "decode": parameters + the KV cache (``attnkit.gqa.kv_cache_bytes_per_token``) of the tokens
    a decoder keeps (all N; a window's w; a block's b) or, for causal linear attention, its
    recurrent state (d x d per head); plus one query's scores over the cache.
    Returns a dict of bytes: params, activations, scores, kv_cache, total.
    """
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"cfg must be an AttentionConfig, got {type(cfg).__name__}")
    _positive_int("seq_len", seq_len, allow_none=False)
    _positive_int("batch_size", batch_size, allow_none=False)
    _positive_int("dtype_bytes", dtype_bytes, allow_none=False)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    k, N, B, b, H = cfg.attention_type, seq_len, batch_size, dtype_bytes, cfg.n_heads
    if k == "linformer" and cfg.max_seq_len is None:
        cfg = dataclasses.replace(cfg, max_seq_len=N)
    params = param_count(cfg) * b * (4 if mode == "training" else 1)
    out = {"params": params, "activations": 0, "scores": 0, "kv_cache": 0}
    if mode == "decode":
        if k in NO_CAUSAL:
            raise ValueError(f"{k} cannot decode token by token (no causal form), expected one of "
                             f"{[n for n in NAMES if n not in NO_CAUSAL]}")
        if k in LINEAR:  # the recurrent state, constant in N
            m = {"performer": cfg.resolved.nb_features}.get(k)
            state = _linear.attention_cost(k, N, cfg.resolved.head_dim, m=m, bytes_per=b)["state_bytes"]
            out["kv_cache"] = B * H * state
        else:
            kind = {"gqa": "gqa", "mqa": "mqa", "mla": "mla"}.get(k, "mha")
            r = cfg.resolved
            per_token = _gqa.kv_cache_bytes_per_token(kind, num_heads=H, head_dim=r.head_dim,
                                                      num_kv_heads=r.num_kv_heads, kv_lora_rank=r.kv_lora_rank,
                                                      qk_rope_head_dim=r.qk_rope_head_dim, dtype=b)
            tokens = _cache_tokens(cfg, N)
            out["kv_cache"] = per_token * tokens * B
            out["scores"] = B * H * tokens * b
        out["activations"] = _io_elements(cfg, 1) * B * b
    else:
        out["activations"] = _io_elements(cfg, N) * B * b
        out["scores"] = _score_elements(cfg, N) * B * H * b
    out["total"] = sum(out.values())
    return out
