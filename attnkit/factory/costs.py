"""Cost formulas of one attention layer: parameters, memory by mode (forward, training, decode) and attended pairs.

Memory is counted in MB = 2**20 bytes throughout (what ``torch.cuda.max_memory_allocated() / 2**20``
reports).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attnkit import forgetting as _forgetting
from attnkit import gqa as _gqa
from attnkit import linear as _linear
from attnkit import mha as _mha
from attnkit import sparse as _sparse
from attnkit.factory.config import (
    FORGETTING,
    LINEAR,
    NAMES,
    NO_CAUSAL,
    SPARSE,
    AttentionConfig,
    _pattern,
    _positive_int,
)

MB = 2 ** 20

# Dense softmax, by what its code holds per (batch, head) (measured with torch.profiler's allocator
# events, tests/library/test_factory.py): torch's fused SDPA kernel (full, gqa, mqa, lora) keeps no
# N x N matrix, only a log-sum-exp per query row; attnkit.core's plain path (math) holds the scores,
# their masked copy and the weights at once; MLA's naive path (queries and keys longer than the
# values, which the fused CPU kernel refuses) falls back to torch's math path: scores and weights.
FUSED = ("full", "gqa", "mqa", "lora")
N_BY_N = {"math": 3, "mla": 2}  # N x N arrays held at once per head

def _check_cfg(cfg) -> None:
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"cfg must be an AttentionConfig, got {type(cfg).__name__}")


def param_count(cfg: AttentionConfig) -> int:
    """Parameters of ``create_attention(cfg)``, from the chapters' formulas (a test counts them)."""
    _check_cfg(cfg)
    r = cfg.resolved
    k, E, H, Dh = cfg.attention_type, cfg.d_model, cfg.n_heads, r.head_dim
    if k in ("full", "math", "flash", "lora") or k in SPARSE or k in LINEAR:
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
    if k in FORGETTING:  # q, k, v, out with biases, RMSNorm(Dh), and the gate or write-strength projections
        extra = {"retnet": 0,  # the decays are a buffer
                 "gated_linear": E * H + H,  # scalar gate per head: Linear(E, H)
                 "gla": E * 16 + 16 * E + E,  # per-channel gate: Linear(E, 16, no bias), Linear(16, E)
                 "deltanet": E * H + H,  # beta: Linear(E, H)
                 "gated_deltanet": E * H + H + E * H + 2 * H}[k]  # beta, a (no bias), A_log, dt_bias
        return _mha.mha_param_count(E, H) + Dh + extra
    # mla: W^UQ, W^QR, W^DKV, RMSNorm(d_c), W^KR, W^UK, W^UV, W^O (no bias)
    dc, dr = r.kv_lora_rank, r.qk_rope_head_dim
    return E * H * Dh + E * H * dr + E * dc + dc + E * dr + dc * H * Dh + dc * H * Dh + H * Dh * E


MODES = ("forward", "training", "decode")


def _score_elements(cfg: AttentionConfig, N: int) -> int:
    """Elements of the mechanism's own term per (batch, head), from the chapters' cost formulas.

    Fused softmax (full, gqa, mqa, lora: torch's SDPA kernel): the log-sum-exp of each query row,
    N. The materialising paths: math 3 N^2 (scores, their masked copy, the weights), mla 2 N^2
    (``N_BY_N``). flash: one 64 x 64 tile plus the running max and sum (2N). Sparse: the attended
    pairs (``attnkit.sparse.pattern_pairs``, N * w for a window). Linear family:
    ``attnkit.linear.attention_cost(...)["extra_bytes"]`` (features of q and k plus the d x d state,
    or N x k, or N x m landmarks), in elements. The recurrences of ``attnkit.forgetting``, chunked
    in c = chunk_size tokens: a c x c block per chunk and a d_h x d_h state at each chunk's edge;
    gla (a decay per key channel) holds its log decays, N x d_h, one c' x c' x d_h block of pair
    decays and its exponential (c' = min(c, 16): its chunks are cut to 16), and one d_h x d_h state.
    """
    k = cfg.attention_type
    if k in FUSED:
        return N
    if k in N_BY_N:
        return N_BY_N[k] * N * N
    if k == "flash":
        return 64 * 64 + 2 * N
    if k in SPARSE:
        return sparse_pairs(cfg, N)
    r = cfg.resolved
    if k == "gla":  # the loop holds one chunk's block at a time (measured: 48.4 MB at N = 8192, d 256, 4 heads)
        c, d = min(cfg.chunk_size, _forgetting.CHANNEL_CHUNK, N), r.head_dim
        return N * d + 2 * c * c * d + d * d
    if k in FORGETTING:  # the chunked forms: a c x c block per chunk and a d x d state per chunk edge
        c, d = min(cfg.chunk_size, N), r.head_dim
        return N * c + math.ceil(N / cfg.chunk_size) * d * d
    m = {"performer": r.nb_features, "linformer": r.proj_k, "nystrom": r.num_landmarks}.get(k)
    return _linear.attention_cost(k, N, cfg.resolved.head_dim, m=m, bytes_per=1)["extra_bytes"]


def sparse_pairs(cfg: AttentionConfig, N: int) -> int:
    """Attended (query, key) pairs of a sparse config at length N: ``attnkit.sparse.pattern_pairs``
    of the config's pattern (block_sparse: the block-diagonal layout for N; longformer: the first
    ``num_global_tokens`` tokens, at most N, global)."""
    _check_cfg(cfg)
    if cfg.attention_type not in SPARSE:
        raise ValueError(f"cfg must be a sparse config ({list(SPARSE)}), got attention_type {cfg.attention_type!r}")
    _sparse._int("N", N, 0)
    args = _pattern(cfg)
    pattern = args.pop("pattern")
    if pattern == "block_sparse":
        args["layout"] = torch.eye(math.ceil(N / args["block"]), dtype=torch.bool)
    if pattern == "longformer":
        args["global_idx"] = tuple(range(min(cfg.num_global_tokens, N)))
    return _sparse.pattern_pairs(pattern, N, cfg.causal, **args)


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
    # strided: every key (a later query needs its own residue class mod the stride, and each class
    # is written by every stride-th token), so an autoregressive strided decoder keeps all N
    return N


def memory_breakdown(cfg: AttentionConfig, seq_len: int, batch_size: int = 1, dtype_bytes: int = 4,
                     mode: str = "forward") -> dict:
    """Bytes of one layer at ``seq_len``, by the cost formulas of the earlier chapters.

    mode "forward": parameters + activations (q, k, v, context, output) + the mechanism's own
    term (``_score_elements``: N per head for the fused kernel, N^2 arrays for the materialising
    paths, a tile for flash, the
    attended pairs for sparse patterns, features and state for linear attention).
    "training": the same, with parameters counted four times (weights, gradients, AdamW's two
    moments; the forward's tensors are what the backward keeps).
    "decode": parameters + the KV cache (``attnkit.gqa.kv_cache_bytes_per_token``) of the tokens
    a decoder keeps (all N, strided too; a window's w; a block's b) or, for causal linear attention, its
    recurrent state (d x d per head; the recurrences of ``attnkit.forgetting``: d_k x d_v, no
    normaliser); plus one query's scores over the cache.
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
        if k in FORGETTING:  # the state S, d_k x d_v per head, and no normaliser z
            out["kv_cache"] = B * H * cfg.resolved.head_dim ** 2 * b
        elif k in LINEAR:  # the recurrent state, constant in N
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
