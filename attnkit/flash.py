"""Flash-attention tiling (chapter 07): exact attention without the N x N matrix.

Attention is softmax(S) V with S = scale * Q K^T (+ ALiBi bias). FlashAttention computes it one
``block_q x block_k`` tile of S at a time, keeping per query row a running max ``m``, a running
sum ``l`` of exponentials and a (rescaled) accumulator of the weighted values, so that no more
than one tile of scores ever exists.

- Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness",
  Algorithm 1 (forward, outer loop over K/V blocks, output kept normalised), Theorem 2 (IO counts).
- Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
  Algorithm 1 (forward, outer loop over Q blocks, normalisation deferred to the end, log-sum-exp
  saved) and Algorithm 2 (backward that recomputes P from Q, K and the log-sum-exp).
- Milakov & Gimelshein 2018, "Online normalizer calculation for softmax" (the running max/sum).
- Press et al. 2022, "Train Short, Test Long" (ALiBi).

Everything here is plain PyTorch: a Python loop over tiles. It is exact and memory-lean, but much
slower than a fused kernel, which keeps each tile in on-chip SRAM and runs the loop on the GPU.
"""

from __future__ import annotations

import math

import torch

from attnkit import validate
from attnkit.core import _check_inputs
from attnkit.memory import measure_peak_bytes  # noqa: F401  (the one meter, re-exported: chapter 07 meets it here)
from attnkit.softmax import OnlineSoftmaxState, merge_partials, normalize, softmax_state

__all__ = [
    "flash_attention",
    "tile_scores",
    "online_update",
    "causal_tile_kind",
    "tile_schedule",
    "trace_row",
    "io_standard",
    "io_flash",
    "sram_block_sizes",
    "measure_peak_bytes",
]

LOOP_ORDERS = ("v1", "v2")


# ----------------------------------------------------------------------------------------------
# Small pure pieces: one tile of scores, one online-softmax step, one merge.
# ----------------------------------------------------------------------------------------------


def causal_tile_kind(q_start: int, q_end: int, k_start: int, k_end: int) -> str:
    """Where the tile rows [q_start, q_end) x cols [k_start, k_end) lies w.r.t. the causal mask.

    Query i may see key j when j <= i (top-left aligned, as ``torch``'s ``is_causal``).
    ``"skip"``: every j > i (the tile is entirely above the diagonal: no work at all);
    ``"full"``: every j <= i (no masking needed); ``"partial"``: the diagonal crosses it.
    """
    for name, start, end in (("q", q_start, q_end), ("k", k_start, k_end)):
        validate.int_at_least(f"{name}_start", start, 0)
        validate.int_at_least(f"{name}_end", end, 1)
        if end <= start:
            raise ValueError(f"{name}_end must be > {name}_start (a tile of at least one row), "
                             f"got {name}_start={start}, {name}_end={end}")
    return _tile_kind(q_start, q_end, k_start, k_end)


def _tile_kind(q_start: int, q_end: int, k_start: int, k_end: int) -> str:
    if k_start > q_end - 1:  # smallest key exceeds the largest query
        return "skip"
    if k_end - 1 <= q_start:  # largest key is at most the smallest query
        return "full"
    return "partial"


def tile_scores(
    q_blk: torch.Tensor,  # (..., Bq, D)
    k_blk: torch.Tensor,  # (..., Bk, D)
    scale: float,
    q_start: int = 0,
    k_start: int = 0,
    is_causal: bool = False,
    alibi: torch.Tensor | None = None,  # slopes shaped to broadcast as (..., 1, 1)
) -> torch.Tensor:
    """One tile of scores S_ij = scale * q_i . k_j - slope * |i - j|, -inf where j > i if causal."""
    _check_tile(q_blk=q_blk, k_blk=k_blk)
    if q_blk.shape[-1] != k_blk.shape[-1]:
        raise ValueError(f"k_blk has shape {tuple(k_blk.shape)}, expected the last dim of q_blk {tuple(q_blk.shape)}")
    validate.real_number("scale", scale)
    validate.int_at_least("q_start", q_start, 0)
    validate.int_at_least("k_start", k_start, 0)
    return _tile_scores(q_blk, k_blk, scale, q_start, k_start, is_causal, alibi)


def _check_tile(**tensors) -> None:
    """Each a floating-point tensor of at least 2 dims (..., rows, dim), all of one dtype and device."""
    for name, x in tensors.items():
        validate.tensor(name, x)
        if x.dim() < 2:
            raise ValueError(f"{name} must have shape (..., rows, dim), got {tuple(x.shape)}")
    validate.same_dtype_device(**tensors)


def _tile_scores(q_blk, k_blk, scale, q_start=0, k_start=0, is_causal=False, alibi=None):
    s = (q_blk @ k_blk.transpose(-2, -1)) * scale  # (..., Bq, Bk)
    if alibi is not None or is_causal:
        i = torch.arange(q_start, q_start + q_blk.shape[-2], device=s.device)[:, None]  # (Bq, 1)
        j = torch.arange(k_start, k_start + k_blk.shape[-2], device=s.device)[None, :]  # (1, Bk)
        if alibi is not None:
            s = s - alibi * (i - j).abs().to(s.dtype)  # ALiBi bias, (..., Bq, Bk)
        if is_causal:
            s = s.masked_fill(j > i, float("-inf"))
    return s


def _safe(m: torch.Tensor) -> torch.Tensor:
    """The running max with -inf replaced by 0, so exp(x - m) is 0 (not NaN) for empty rows."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def online_update(
    m: torch.Tensor,  # (..., Bq)      running max of the scores seen so far
    l: torch.Tensor,  # (..., Bq)      running sum of exp(score - m)
    acc: torch.Tensor,  # (..., Bq, Dv)  running sum of exp(score - m) * v, NOT normalised
    s: torch.Tensor,  # (..., Bq, Bk)  a new tile of scores
    v_blk: torch.Tensor,  # (..., Bk, Dv)  the values of that tile
):
    """One step of the online softmax extended to a weighted sum (FlashAttention-2, Alg. 1, l. 8-10).

        m' = max(m, rowmax(S))
        P  = exp(S - m')
        l' = exp(m - m') l + rowsum(P)
        A' = exp(m - m') A + P V
    At the end, out = A / l and the log-sum-exp of the row is m + log(l).
    """
    _check_tile(acc=acc, s=s, v_blk=v_blk)
    validate.tensor("m", m)
    validate.tensor("l", l)
    validate.same_dtype_device(acc=acc, m=m, l=l)
    if tuple(m.shape) != tuple(s.shape[:-1]) or tuple(l.shape) != tuple(s.shape[:-1]):
        raise ValueError(f"m {tuple(m.shape)} and l {tuple(l.shape)} must have the rows' shape s.shape[:-1] = "
                         f"{tuple(s.shape[:-1])}")
    if v_blk.shape[-2] != s.shape[-1]:
        raise ValueError(f"v_blk has shape {tuple(v_blk.shape)}: expected {s.shape[-1]} rows, one per column of s")
    if acc.shape[:-1] != s.shape[:-1] or acc.shape[-1] != v_blk.shape[-1]:
        raise ValueError(f"acc has shape {tuple(acc.shape)}, expected (..., Bq, Dv) = "
                         f"{(*s.shape[:-1], v_blk.shape[-1])}")
    return _online_update(m, l, acc, s, v_blk)


def _online_update(m, l, acc, s, v_blk):
    m_new = torch.maximum(m, s.amax(dim=-1))  # (..., Bq)
    ms = _safe(m_new)
    p = torch.exp(s - ms[..., None])  # (..., Bq, Bk)
    alpha = torch.exp(m - ms)  # (..., Bq), rescales what was accumulated under the old max
    l_new = alpha * l + p.sum(dim=-1)
    acc_new = alpha[..., None] * acc + p @ v_blk  # (..., Bq, Dv)
    return m_new, l_new, acc_new


# ----------------------------------------------------------------------------------------------
# The tiled forward, in both loop orders, and the recomputing backward.
# ----------------------------------------------------------------------------------------------


def _forward_v2(q, k, v, scale, is_causal, block_q, block_k, alibi):
    """FlashAttention-2 order: outer loop over Q blocks, normalise once at the end."""
    L, S = q.shape[-2], k.shape[-2]
    out = q.new_zeros(*q.shape[:-1], v.shape[-1])  # (..., L, Dv)
    lse = q.new_full(q.shape[:-1], float("-inf"))  # (..., L)
    for qs in range(0, L, block_q):
        qe = min(qs + block_q, L)
        qb = q[..., qs:qe, :]  # (..., Bq, D)
        m = q.new_full(qb.shape[:-1], float("-inf"))  # (..., Bq)
        l = q.new_zeros(qb.shape[:-1])  # (..., Bq)
        acc = q.new_zeros(*qb.shape[:-1], v.shape[-1])  # (..., Bq, Dv)
        for ks in range(0, S, block_k):
            ke = min(ks + block_k, S)
            kind = _tile_kind(qs, qe, ks, ke) if is_causal else "full"
            if kind == "skip":
                break  # every later K block lies further right: all skipped too
            s = _tile_scores(qb, k[..., ks:ke, :], scale, qs, ks, kind == "partial", alibi)
            m, l, acc = _online_update(m, l, acc, s, v[..., ks:ke, :])
        out[..., qs:qe, :] = acc / torch.where(l > 0, l, torch.ones_like(l))[..., None]
        lse[..., qs:qe] = _safe(m) + torch.log(l)  # -inf for a row with no keys
    return out, lse


def _forward_v1(q, k, v, scale, is_causal, block_q, block_k, alibi):
    """FlashAttention-1 order: outer loop over K/V blocks; O, l, m live in 'slow memory'.

    Each tile is a normalised partial result (its own softmax times V, and its (m, l) state),
    merged into the running one with chapter 03's ``merge_partials`` (FlashAttention, Alg. 1,
    lines 10-12).
    """
    L, S = q.shape[-2], k.shape[-2]
    out = q.new_zeros(*q.shape[:-1], v.shape[-1])  # (..., L, Dv), kept normalised
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))  # (..., L, 1)
    l = q.new_zeros((*q.shape[:-1], 1))  # (..., L, 1)
    for ks in range(0, S, block_k):
        ke = min(ks + block_k, S)
        kb, vb = k[..., ks:ke, :], v[..., ks:ke, :]  # (..., Bk, D), (..., Bk, Dv)
        for qs in range(0, L, block_q):
            qe = min(qs + block_q, L)
            kind = _tile_kind(qs, qe, ks, ke) if is_causal else "full"
            if kind == "skip":
                continue
            s = _tile_scores(q[..., qs:qe, :], kb, scale, qs, ks, kind == "partial", alibi)
            tile = softmax_state(s)  # (m~, l~), each (..., Bq, 1)
            o_tile = normalize(s, tile) @ vb  # (..., Bq, Dv): softmax within the tile, times V
            running = OnlineSoftmaxState(m[..., qs:qe, :], l[..., qs:qe, :])
            o_new, merged = merge_partials(out[..., qs:qe, :], running, o_tile, tile)
            out[..., qs:qe, :], m[..., qs:qe, :], l[..., qs:qe, :] = o_new, merged.m, merged.l
    lse = (_safe(m) + torch.log(l))[..., 0]  # (..., L)
    return out, lse


def _backward(q, k, v, out, lse, dout, scale, is_causal, block_q, block_k, alibi):
    """FlashAttention-2, Algorithm 2: recompute P tile by tile from Q, K and the log-sum-exp.

        D_i = rowsum(dO_i * O_i)                 (eq. in Alg. 2, line 4)
        P_ij = exp(S_ij - LSE_i)
        dV_j += P_ij^T dO_i,   dP_ij = dO_i V_j^T,   dS_ij = P_ij * (dP_ij - D_i)
        dQ_i += scale dS_ij K_j,   dK_j += scale dS_ij^T Q_i
    """
    L, S = q.shape[-2], k.shape[-2]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    delta = (dout * out).sum(dim=-1)  # (..., L)
    lse_safe = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)
    for ks in range(0, S, block_k):  # outer loop over K/V blocks: dK_j, dV_j stay "on chip"
        ke = min(ks + block_k, S)
        kb, vb = k[..., ks:ke, :], v[..., ks:ke, :]
        dkb, dvb = torch.zeros_like(kb), torch.zeros_like(vb)
        for qs in range(0, L, block_q):
            qe = min(qs + block_q, L)
            kind = _tile_kind(qs, qe, ks, ke) if is_causal else "full"
            if kind == "skip":
                continue
            qb, dob = q[..., qs:qe, :], dout[..., qs:qe, :]
            s = _tile_scores(qb, kb, scale, qs, ks, kind == "partial", alibi)  # (..., Bq, Bk)
            p = torch.exp(s - lse_safe[..., qs:qe, None])  # (..., Bq, Bk)
            dvb = dvb + p.transpose(-2, -1) @ dob  # (..., Bk, Dv)
            dp = dob @ vb.transpose(-2, -1)  # (..., Bq, Bk)
            ds = p * (dp - delta[..., qs:qe, None])  # (..., Bq, Bk)
            dq[..., qs:qe, :] += scale * (ds @ kb)
            dkb = dkb + scale * (ds.transpose(-2, -1) @ qb)
        dk[..., ks:ke, :] = dkb
        dv[..., ks:ke, :] = dvb
    return dq, dk, dv


class _FlashAttentionFn(torch.autograd.Function):
    """Tiled forward; backward recomputes tiles, saving only q, k, v, out and the log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v, scale, is_causal, block_q, block_k, alibi, loop_order):
        fwd = _forward_v1 if loop_order == "v1" else _forward_v2
        out, lse = fwd(q, k, v, scale, is_causal, block_q, block_k, alibi)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.cfg = (scale, is_causal, block_q, block_k, alibi)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, out, lse, dout, *ctx.cfg)
        return dq, dk, dv, None, None, None, None, None, None


def _check_block(name: str, value) -> int:
    return validate.int_at_least(name, value)


def _alibi_slopes(alibi_slopes, batch_shape, device) -> torch.Tensor | None:
    """Shape (H,) or (B, H) slopes as a tensor that broadcasts against (..., H, Bq, Bk)."""
    if alibi_slopes is None:
        return None
    if not isinstance(alibi_slopes, torch.Tensor):
        raise TypeError(f"alibi_slopes must be a torch.Tensor, got {type(alibi_slopes).__name__}")
    if alibi_slopes.dim() not in (1, 2):
        raise ValueError(
            f"alibi_slopes must have shape (heads,) or (batch, heads), got {tuple(alibi_slopes.shape)}"
        )
    tail = tuple(batch_shape[-alibi_slopes.dim():]) if len(batch_shape) >= alibi_slopes.dim() else None
    if tail != tuple(alibi_slopes.shape):
        raise ValueError(
            f"alibi_slopes has shape {tuple(alibi_slopes.shape)}, expected the trailing batch dims "
            f"of q, k, v, i.e. (heads,) = {tuple(batch_shape[-1:])} or (batch, heads) = "
            f"{tuple(batch_shape[-2:])}"
        )
    if alibi_slopes.device != device:
        raise ValueError(f"alibi_slopes is on {alibi_slopes.device}, expected q's device {device}")
    return alibi_slopes.detach()[..., None, None]  # (..., H, 1, 1)


def flash_attention(
    q: torch.Tensor,  # (..., L, D), e.g. (B, H, L, D)
    k: torch.Tensor,  # (..., S, D)
    v: torch.Tensor,  # (..., S, Dv)
    is_causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
    scale: float | None = None,
    alibi_slopes: torch.Tensor | None = None,  # (H,) or (B, H)
    loop_order: str = "v2",
    return_lse: bool = False,
):
    """Exact attention softmax(scale q k^T - slope |i - j|) v, computed tile by tile.

    Equal to ``torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
    scale=scale)`` (plus the ALiBi bias ``-slope_h * |i - j|`` when ``alibi_slopes`` is given),
    but no more than one ``block_q x block_k`` tile of scores exists at a time, so extra memory
    is O(L) instead of O(L * S). ``loop_order="v1"`` runs FlashAttention-1's order (outer loop
    over K/V blocks, output renormalised after every tile), ``"v2"`` FlashAttention-2's (outer
    loop over Q blocks, one normalisation at the end). With ``is_causal`` (key j visible to
    query i when j <= i), tiles entirely above the diagonal are skipped, not computed.

    Gradients flow through a tiled backward that recomputes the tiles from q, k, v and the saved
    log-sum-exp (FlashAttention-2, Alg. 2); ALiBi slopes are treated as constants.
    Positions are top-left aligned, like ``is_causal``: query i sits at position i, so the ALiBi
    distance is |i - j|. For L == S this is ``attnkit.rope.alibi_bias``; for L != S that function
    (and the flash-attn library) align the queries to the *end* of the keys instead.
    Returns ``out`` (..., L, Dv), or ``(out, lse)`` with the per-row log-sum-exp (..., L) in
    float32 (or float64 for float64 inputs) when ``return_lse=True``.
    """
    _check_inputs(q, k, v, None)
    block_q, block_k = _check_block("block_q", block_q), _check_block("block_k", block_k)
    if loop_order not in LOOP_ORDERS:
        raise ValueError(f"loop_order must be one of {LOOP_ORDERS}, got {loop_order!r}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else validate.real_number("scale", scale)
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    alibi = _alibi_slopes(alibi_slopes, batch, q.device)
    # Half precision is computed in float32 (as torch does on CPU), then cast back.
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    qc = q.to(compute).expand(*batch, *q.shape[-2:])  # (..., L, D)
    kc = k.to(compute).expand(*batch, *k.shape[-2:])  # (..., S, D)
    vc = v.to(compute).expand(*batch, *v.shape[-2:])  # (..., S, Dv)
    if alibi is not None:
        alibi = alibi.to(compute)
    out, lse = _FlashAttentionFn.apply(
        qc, kc, vc, float(scale), bool(is_causal), block_q, block_k, alibi, loop_order
    )
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------
# The step-through: which tiles are visited in which order, and one query row's running state.
# ----------------------------------------------------------------------------------------------


def tile_schedule(L: int, S: int, block_q: int, block_k: int, is_causal=False, loop_order="v2"):
    """The tiles in the order the loop visits them, and the ones the causal mask skips.

    Returns ``(steps, skipped)``: ``steps`` is a list of dicts with keys ``qi``, ``kj`` (tile
    indices), ``q`` = (q_start, q_end), ``k`` = (k_start, k_end) and ``kind`` ("full"/"partial");
    ``skipped`` lists the (qi, kj) of tiles never computed.
    """
    block_q, block_k = _check_block("block_q", block_q), _check_block("block_k", block_k)
    validate.int_at_least("L", L, 0)
    validate.int_at_least("S", S, 0)
    validate.choice("loop_order", loop_order, LOOP_ORDERS)
    nq, nk = -(-L // block_q), -(-S // block_k)
    pairs = [(a, b) for a in range(nq) for b in range(nk)]
    if loop_order == "v1":
        pairs = [(a, b) for b in range(nk) for a in range(nq)]
    steps, skipped = [], []
    for qi, kj in pairs:
        qr = (qi * block_q, min((qi + 1) * block_q, L))
        kr = (kj * block_k, min((kj + 1) * block_k, S))
        kind = _tile_kind(*qr, *kr) if is_causal else "full"
        if kind == "skip":
            skipped.append((qi, kj))
        else:
            steps.append({"qi": qi, "kj": kj, "q": qr, "k": kr, "kind": kind})
    return steps, skipped


def trace_row(q, k, v, row: int, block_k: int, is_causal=False, scale=None):
    """The running (max, sum, output) of one query row after each K/V tile that touches it.

    q (L, D), k (S, D), v (S, Dv). Returns a list of dicts (``k`` range, ``m``, ``l``, ``out``:
    the normalised output so far, a (Dv,) tensor). The last ``out`` equals the attention output.
    """
    _check_tile(q=q, k=k, v=v)
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 2:
            raise ValueError(f"trace_row takes 2-D q (L, D), k (S, D), v (S, Dv); {name} has shape {tuple(x.shape)}")
    _check_inputs(q, k, v, None)
    validate.int_at_least("row", row, 0)
    if not row < q.shape[0]:
        raise ValueError(f"row must lie in [0, {q.shape[0]}), got {row}")
    block_k = _check_block("block_k", block_k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else validate.real_number("scale", scale)
    qr = q[row : row + 1]  # (1, D)
    m = torch.full((1,), float("-inf"), dtype=q.dtype)
    l = torch.zeros(1, dtype=q.dtype)
    acc = torch.zeros(1, v.shape[-1], dtype=q.dtype)
    trace = []
    for ks in range(0, k.shape[0], block_k):
        ke = min(ks + block_k, k.shape[0])
        if is_causal and ks > row:
            break
        s = _tile_scores(qr, k[ks:ke], scale, row, ks, is_causal)  # (1, Bk)
        m, l, acc = _online_update(m, l, acc, s, v[ks:ke])
        trace.append({"k": (ks, ke), "m": float(m[0]), "l": float(l[0]), "out": (acc / l[:, None])[0]})
    return trace


# ----------------------------------------------------------------------------------------------
# The IO model: element reads + writes of slow memory (HBM), FlashAttention paper, Theorem 2.
# ----------------------------------------------------------------------------------------------


def _check_pos(**kw):
    for name, value in kw.items():
        validate.int_at_least(name, value)


def io_standard(N: int, d: int) -> dict:
    """Slow-memory traffic of standard attention (FlashAttention, Algorithm 0), in elements.

    Read Q, K (2Nd), write S (N^2); read S, write P (2N^2); read P, V (N^2 + Nd), write O (Nd).
    Total 4Nd + 4N^2 = Theta(Nd + N^2).
    """
    _check_pos(N=N, d=d)
    reads = 2 * N * d + N * N + N * N + N * d
    writes = N * N + N * N + N * d
    return {"reads": reads, "writes": writes, "total": reads + writes}


def sram_block_sizes(M: int, d: int) -> tuple[int, int]:
    """FlashAttention's block sizes for on-chip memory of M elements: (B_r, B_c) with
    B_c = ceil(M / 4d) and B_r = min(B_c, d) (Algorithm 1, line 1)."""
    _check_pos(M=M, d=d)
    bc = -(-M // (4 * d))
    return min(bc, d), bc


def io_flash(N: int, d: int, M: int | None = None, block_q: int | None = None,
             block_k: int | None = None, loop_order: str = "v1") -> dict:
    """Slow-memory traffic of the tiled forward, in elements (FlashAttention, Theorem 2).

    Block sizes come from ``sram_block_sizes(M, d)`` unless given. With T_c = ceil(N / B_c) and
    T_r = ceil(N / B_r):
    - "v1" (outer loop over K/V): read K, V once (2Nd); for each of the T_c K/V blocks read all
      of Q, O, l, m and write O, l, m back: T_c (3Nd + 4N). Total Theta(N^2 d^2 / M).
    - "v2" (outer loop over Q): read Q once (Nd); for each of the T_r Q blocks read all of K, V
      (2Nd); write O and the log-sum-exp once (Nd + N).
    """
    if loop_order not in LOOP_ORDERS:
        raise ValueError(f"loop_order must be one of {LOOP_ORDERS}, got {loop_order!r}")
    _check_pos(N=N, d=d)
    if block_q is None or block_k is None:
        if M is None:
            raise ValueError("io_flash needs M (on-chip memory, in elements) or both block sizes")
        br, bc = sram_block_sizes(M, d)
        block_q = br if block_q is None else block_q
        block_k = bc if block_k is None else block_k
    _check_pos(block_q=block_q, block_k=block_k)
    tc, tr = -(-N // block_k), -(-N // block_q)
    if loop_order == "v1":
        reads = 2 * N * d + tc * (2 * N * d + 2 * N)
        writes = tc * (N * d + 2 * N)
    else:
        reads = N * d + tr * 2 * N * d
        writes = N * d + N
    return {"reads": reads, "writes": writes, "total": reads + writes}
