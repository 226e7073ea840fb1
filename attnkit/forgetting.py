"""Linear attention that forgets: decays and gates (RetNet, GLA, Mamba-2's scalar decay) and the delta rule.

Plain causal linear attention keeps one state per head, ``S_t = S_{t-1} + k_t^T v_t``
(d_k x d_v, row vectors, "key-major": ``o_t = q_t S_t``), that only ever adds. The forms here
let it forget, each as three computations of one recurrence:

* **decayed / gated linear attention**: ``S_t = diag(alpha_t) S_{t-1} + k_t^T v_t``.
  The decay is given by its logarithm ``g_t = log alpha_t <= 0``:
  RetNet (Sun et al. 2023, eq. 6) a fixed ``g = log gamma`` per head (:func:`retnet_log_decay`);
  a data-dependent scalar per head and step (Mamba-2's ``a_t I``, Dao & Gu 2024; GLA's scalar
  variant), ``g`` of shape (B, H, N); GLA's per-key-channel gate (Yang et al. 2024, eq. 3),
  ``g`` of shape (B, H, N, d_k).
* **the delta rule** (Schlag et al. 2021; DeltaNet, Yang et al. 2024):
  ``S_t = (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t``: one gradient step on
  ``1/2 ||k_t S - v_t||^2``, which replaces the value stored under ``k_t`` instead of adding to it;
  with a gate (Gated DeltaNet, Yang, Kautz & Hatamizadeh 2025)
  ``S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t``, ``alpha_t`` a scalar per head.

Each comes as ``*_explicit`` (the N x N form: the decay-weighted mask, and for the delta rule the
triangular system ``U = (I + tril(diag(beta) (K K^T * Gamma), -1))^-1 diag(beta) V``,
``O = (Q K^T * Gamma) U``), ``*_step`` (one token: state in, state out), ``*_recurrent`` (the
steps in a loop) and ``*_chunked`` (chunks of C tokens: an explicit C x C block inside the chunk,
the state across chunks; the delta rule's chunk solves its C x C triangular system, the WY/UT
form of DeltaNet). ``Gamma_ij = alpha_{j+1} ... alpha_i`` (i >= j, 1 on the diagonal, 0 above).

Shapes: q, k (B, H, N, d_k), v (B, H, N, d_v), beta (B, H, N), state (B, H, d_k, d_v).
Queries are scaled by ``scale`` (default ``d_k ** -0.5``), as RetNet, GLA and DeltaNet do. No
denominator: these forms normalise the output instead (the modules here: RMSNorm per head).
The delta rule is stable when ``||k_t|| = 1`` and ``0 <= beta_t <= 2`` (then ``I - beta k^T k``
has eigenvalues in [-1, 1]): DeltaNet L2-normalises q and k (:func:`l2_normalize`).

Numerics: decays are handled as sums of ``g`` over segments, never as the exponential of a
positive number. Inside a chunk the sums start again at the chunk's first token, and every factor
applied is ``exp(g_{j+1} + ... + g_i)`` with ``i >= j`` (at most 1), so ``g`` down to -20 per step
over any length gives no overflow or NaN, only weights that underflow to 0 below 1e-38. Each
segment is summed on its own (Mamba-2's "segsum"), not as the difference of two cumulative sums:
at N = 4096, g down to -20, the float32 chunked gated delta rule is then 1.5e-7 from float64 (the
difference of cumulative sums within a 64-token chunk, as Qwen3-Next's reference does, gave 1.5e-5). Half-precision inputs (float16, bfloat16) are computed in float32, as production
kernels keep gates and state in float32; the output comes back in the input's dtype, the state in
float32 (float64 for float64).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit import validate

__all__ = [
    "GATES", "retnet_log_decay", "l2_normalize",
    "gated_linear_attention_explicit", "gated_linear_attention_step",
    "gated_linear_attention_recurrent", "gated_linear_attention_chunked",
    "delta_rule_explicit", "delta_rule_step", "delta_rule_recurrent", "delta_rule_chunked",
    "GatedLinearAttention", "DeltaNet",
]

CHANNEL_CHUNK = 16  # the longest chunk a per-channel gate is computed in (see gated_linear_attention_chunked)
GATES = ("fixed", "scalar", "channel")  # RetNet's fixed decay; a scalar gate per head; GLA's per-channel gate


# ---------------------------------------------------------------------------------------------
# checks and shared pieces
# ---------------------------------------------------------------------------------------------


def _acc(dtype: torch.dtype) -> torch.dtype:
    """The dtype the forms compute and keep the state in: float64 stays, anything else -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_qkv(q, k, v, step: bool = False):
    """q, k (B, H, N, d_k) and v (B, H, N, d_v); for a step (B, H, d_k), (B, H, d_v)."""
    nd, sfx = (3, "_t") if step else (4, "")
    want = "(B, H, d)" if step else "(B, H, N, d)"
    for name, x in (("q" + sfx, q), ("k" + sfx, k), ("v" + sfx, v)):
        validate.tensor(name, x, nd, f"{nd}-d {want}")
    validate.same_dtype_device(**{"q" + sfx: q, "k" + sfx: k, "v" + sfx: v})
    if k.shape != q.shape:
        raise ValueError(f"k{sfx} has shape {validate.shape_str(k)}, expected q{sfx}'s shape {validate.shape_str(q)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"v{sfx} has shape {validate.shape_str(v)}, expected {tuple(q.shape[:-1]) + ('d_v',)} "
                         f"(q{sfx}'s leading dims {tuple(q.shape[:-1])})")


def _check_gate(name: str, g, q, channel_ok: bool):
    """g: log decays <= 0, shape q.shape[:-1] (a scalar per head and step) or q.shape (per key channel)."""
    shapes = [tuple(q.shape[:-1])] + ([tuple(q.shape)] if channel_ok else [])
    validate.tensor(name, g, (q.dim() - 1, q.dim()), " or ".join(str(s) for s in shapes))
    if tuple(g.shape) not in shapes:
        raise ValueError(f"{name} has shape {validate.shape_str(g)}, expected "
                         f"{' or '.join(str(s) for s in shapes)} (log decays{', per key channel' if channel_ok else ''})")
    _gate_dtype(name, g, q)
    if not torch.isfinite(g).all() or (g > 0).any():
        raise ValueError(f"{name} must hold log decays: finite numbers <= 0 (alpha = exp({name}) in (0, 1]), "
                         f"got values in [{g.min().item():g}, {g.max().item():g}]")
    return g


def _gate_dtype(name: str, x, q) -> None:
    """A gate or write strength on q's device, in q's dtype or (for 16-bit q) float32, which keeps its digits."""
    if x.device != q.device:
        raise ValueError(f"{name} is on {x.device} but q is on {q.device}; expected one device for all")
    allowed = [q.dtype] + ([torch.float32] if q.dtype in (torch.float16, torch.bfloat16) else [])
    if x.dtype not in allowed:
        raise TypeError(f"{name} has dtype {x.dtype} but q has {q.dtype}; expected {' or '.join(map(str, allowed))}")


def _check_beta(name: str, beta, q):
    validate.tensor(name, beta, q.dim() - 1, f"{tuple(q.shape[:-1])}")
    if tuple(beta.shape) != tuple(q.shape[:-1]):
        raise ValueError(f"{name} has shape {validate.shape_str(beta)}, expected {tuple(q.shape[:-1])} "
                         "(one write strength per head and token)")
    _gate_dtype(name, beta, q)
    if not torch.isfinite(beta).all():
        raise ValueError(f"{name} must be finite, got a NaN or inf")
    return beta


def _scale(scale, d: int) -> float:
    return d ** -0.5 if scale is None else validate.real_number("scale", scale, 0.0, low_open=True)


def _state(state, q, v, name: str = "initial_state") -> torch.Tensor:
    """The state (B, H, d_k, d_v) in the compute dtype; zeros for None."""
    shape = (*q.shape[:-2], q.shape[-1], v.shape[-1]) if q.dim() == 4 else (*q.shape, v.shape[-1])
    acc = _acc(q.dtype)
    if state is None:
        return torch.zeros(shape, dtype=acc, device=q.device)
    validate.tensor(name, state, len(shape), f"{len(shape)}-d (B, H, d_k, d_v)")
    if tuple(state.shape) != shape:
        raise ValueError(f"{name} has shape {validate.shape_str(state)}, expected (B, H, d_k, d_v) = {shape}")
    if state.device != q.device:
        raise ValueError(f"{name} is on {state.device} but q is on {q.device}; expected one device for all")
    return state.to(acc)


def _segsum(g: torch.Tensor) -> torch.Tensor:
    """g (..., N) -> (..., N, N): [i, j] = g_{j+1} + ... + g_i for i >= j (0 on the diagonal), -inf above.

    Each segment is summed on its own (a cumulative sum of the masked copies, as Mamba-2's
    ``segsum``), not as the difference of two long cumulative sums, which loses digits at large N.
    """
    n = g.shape[-1]
    x = g[..., None].expand(*g.shape, n)  # (..., N, N): x[i, j] = g_i
    below = torch.ones(n, n, dtype=torch.bool, device=g.device).tril(-1)
    seg = x.masked_fill(~below, 0.0).cumsum(dim=-2)  # [i, j] = sum_{j < s <= i} g_s
    return seg.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=g.device).tril(), -math.inf)


def _suffix(g: torch.Tensor) -> torch.Tensor:
    """g (B, H, c, ...) -> (B, H, c, ...): [j] = g_{j+1} + ... + g_c, each summed directly (no difference of two sums)."""
    rest = g[:, :, 1:].flip(2).cumsum(dim=2).flip(2)
    return torch.cat([rest, torch.zeros_like(g[:, :, :1])], dim=2)


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim (as fla and Qwen3-Next's ``l2norm``): unit keys for the delta rule."""
    validate.tensor("x", x)
    eps = validate.real_number("eps", eps, 0.0, low_open=True)
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


def retnet_log_decay(num_heads: int, dtype=torch.float32) -> torch.Tensor:
    """RetNet's fixed decays (Sun et al. 2023, section 3.1): log(1 - 2^(-5 - h)), h = 0 .. H-1, shape (H,).

    Head 0 forgets fastest (gamma = 0.96875, a memory of about 1 / (1 - gamma) = 32 tokens), the
    last slowest. Broadcast to (B, H, N) to use as ``g``.
    """
    h = validate.int_at_least("num_heads", num_heads, 1)
    return torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(h, dtype=torch.float64))).to(dtype)


# ---------------------------------------------------------------------------------------------
# decayed / gated linear attention: S_t = diag(alpha_t) S_{t-1} + k_t^T v_t, o_t = q_t S_t
# ---------------------------------------------------------------------------------------------


def gated_linear_attention_explicit(q, k, v, g, scale: float | None = None) -> torch.Tensor:
    """The N x N form: ``o_i = sum_{j <= i} (q_i . (k_j * exp(G_ij))) v_j`` (B, H, N, d_v).

    ``G_ij = g_{j+1} + ... + g_i`` (per key channel when g is (B, H, N, d_k)): RetNet's eq. 5
    (``(Q K^T * D) V``, ``D_ij = gamma^(i - j)``), GLA's eq. 4 in log space. O(N^2) memory: an oracle.
    """
    _check_qkv(q, k, v)
    _check_gate("g", g, q, channel_ok=True)
    s, acc, out_dtype = _scale(scale, q.shape[-1]), _acc(q.dtype), v.dtype
    q, k, v, g = (x.to(acc) for x in (q, k, v, g))
    if g.dim() == q.dim() - 1:  # a scalar per head and step
        w = (q @ k.transpose(-2, -1)) * _segsum(g).exp()  # (B, H, N, N)
    else:  # (B, H, N, N, d_k): the decay of each key channel between j and i
        seg = _segsum(g.transpose(-2, -1)).permute(0, 1, 3, 4, 2)
        w = torch.einsum("bhid,bhjd,bhijd->bhij", q, k, seg.exp())
    return ((w * s) @ v).to(out_dtype)


def gated_linear_attention_step(state, q_t, k_t, v_t, g_t, scale: float | None = None):
    """One token: ``S = diag(exp(g_t)) S + k_t^T v_t``; ``o_t = scale q_t S``.

    q_t, k_t (B, H, d_k), v_t (B, H, d_v), g_t (B, H) or (B, H, d_k); ``state`` (B, H, d_k, d_v) or
    None (zeros). Returns ``(o_t (B, H, d_v), state)``.
    """
    _check_qkv(q_t, k_t, v_t, step=True)
    _check_gate("g_t", g_t, q_t, channel_ok=True)
    o, S = _gla_step(_state(state, q_t, v_t, "state"), q_t, k_t, v_t, g_t, _scale(scale, q_t.shape[-1]))
    return o.to(v_t.dtype), S


def _gla_step(S, q_t, k_t, v_t, g_t, s):  # the step without the checks; S in the compute dtype
    q, k, v, g = (x.to(S.dtype) for x in (q_t, k_t, v_t, g_t))
    a = g.exp()[..., None, None] if g.dim() == q.dim() - 1 else g.exp()[..., None]  # (B, H, 1, 1) or (B, H, d_k, 1)
    S = a * S + k[..., :, None] * v[..., None, :]
    return (q[..., None, :] @ S)[..., 0, :] * s, S  # o_t (B, H, d_v)


def gated_linear_attention_recurrent(q, k, v, g, scale: float | None = None, initial_state=None):
    """:func:`gated_linear_attention_step` over the N tokens: ``(o (B, H, N, d_v), final state)``."""
    _check_qkv(q, k, v)
    _check_gate("g", g, q, channel_ok=True)
    S, s = _state(initial_state, q, v), _scale(scale, q.shape[-1])
    outs = []
    for t in range(q.shape[-2]):
        o, S = _gla_step(S, q[..., t, :], k[..., t, :], v[..., t, :], g[:, :, t], s)
        outs.append(o)
    return (torch.stack(outs, dim=-2).to(v.dtype) if outs else v.new_zeros(v.shape)), S


def gated_linear_attention_chunked(q, k, v, g, chunk_size: int = 64, scale: float | None = None,
                                   initial_state=None):
    """Chunks of C = ``chunk_size`` tokens: ``(o (B, H, N, d_v), final state)``, O(N C d + N d_k d_v).

    With ``b_i`` the cumulative log decay from the chunk's start to token i and ``S`` the state
    before the chunk: ``o_i = q_i (exp(b_i) S) + sum_{j <= i in the chunk} (q_i . k_j exp(b_i - b_j)) v_j``
    and ``S <- exp(b_C) S + sum_j (k_j exp(b_C - b_j))^T v_j``; every exponent is <= 0, and
    ``b_i - b_j``, ``b_C - b_j`` are summed over their own segments.
    The last chunk may be shorter; N = 0 returns the initial state.

    A per-channel gate's block is c x c x d_k numbers (each pair's decay differs per key channel),
    so its chunks are cut to at most ``CHANNEL_CHUNK`` = 16 tokens (GLA's secondary chunks are
    16 too): the result is the same, the work c^2 d_k per chunk 16x smaller than at c = 64
    (training the race's 2-layer model at N = 128, d = 64, batch 32 took 2.1 s a step with
    c = 64, 0.1 s with 16).
    """
    _check_qkv(q, k, v)
    _check_gate("g", g, q, channel_ok=True)
    C = validate.int_at_least("chunk_size", chunk_size, 1)
    s, S = _scale(scale, q.shape[-1]), _state(initial_state, q, v)
    acc, channel = S.dtype, g.dim() == q.dim()
    if channel:
        C = min(C, CHANNEL_CHUNK)
    outs = []
    for i in range(0, q.shape[-2], C):
        qc, kc, vc, gc = (x[:, :, i:i + C].to(acc) for x in (q, k, v, g))
        qc = qc * s
        b = gc.cumsum(dim=2)  # (B, H, c) or (B, H, c, d_k): log decay from the chunk's start to i, <= 0
        tail = _suffix(gc)  # log decay from j to the chunk's end, <= 0
        if channel:  # per key channel: the c x c block in log space, (B, H, c, c, d_k)
            seg = _segsum(gc.transpose(-2, -1)).permute(0, 1, 3, 4, 2)
            w = torch.einsum("bhid,bhjd,bhijd->bhij", qc, kc, seg.exp())
            o = w @ vc + (qc * b.exp()) @ S
            S = b[:, :, -1, :, None].exp() * S + (kc * tail.exp()).transpose(-2, -1) @ vc
        else:
            w = (qc @ kc.transpose(-2, -1)) * _segsum(gc).exp()  # (B, H, c, c)
            o = w @ vc + (qc * b.exp()[..., None]) @ S
            S = b[:, :, -1, None, None].exp() * S + (kc * tail.exp()[..., None]).transpose(-2, -1) @ vc
        outs.append(o)
    return (torch.cat(outs, dim=2).to(v.dtype) if outs else v.new_zeros(v.shape)), S


# ---------------------------------------------------------------------------------------------
# the delta rule: S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t
# ---------------------------------------------------------------------------------------------


def delta_rule_explicit(q, k, v, beta, g=None, scale: float | None = None) -> torch.Tensor:
    """The N x N form (B, H, N, d_v): ``U = (I + tril(diag(beta) (K K^T * Gamma), -1))^-1 diag(beta) V``,
    ``O = (scale Q K^T * Gamma) U``; ``Gamma`` from ``g`` (None: no gate, Gamma = the causal mask).

    ``u_t = beta_t (v_t - k_t alpha_t S_{t-1})`` is what token t writes, ``S_t = sum_{j <= t} Gamma_tj k_j^T u_j``.
    """
    _check_qkv(q, k, v)
    _check_beta("beta", beta, q)
    if g is not None:
        _check_gate("g", g, q, channel_ok=False)
    s, acc, out_dtype = _scale(scale, q.shape[-1]), _acc(q.dtype), v.dtype
    q, k, v, beta = (x.to(acc) for x in (q, k, v, beta))
    n = q.shape[-2]
    gamma = _segsum(g.to(acc)).exp() if g is not None else \
        torch.ones(n, n, dtype=acc, device=q.device).tril().expand(*q.shape[:-2], n, n)
    a = torch.eye(n, dtype=acc, device=q.device) + (beta[..., None] * (k @ k.transpose(-2, -1)) * gamma).tril(-1)
    u = torch.linalg.solve_triangular(a, beta[..., None] * v, upper=False, unitriangular=True)  # (B, H, N, d_v)
    return (((q @ k.transpose(-2, -1)) * gamma * s) @ u).to(out_dtype)


def delta_rule_step(state, q_t, k_t, v_t, beta_t, g_t=None, scale: float | None = None):
    """One token: ``S = exp(g_t) S``; ``S = S + beta_t k_t^T (v_t - k_t S)``; ``o_t = scale q_t S``.

    q_t, k_t (B, H, d_k), v_t (B, H, d_v), beta_t and g_t (B, H) (g_t None: no gate); ``state``
    (B, H, d_k, d_v) or None (zeros). Returns ``(o_t (B, H, d_v), state)``.
    """
    _check_qkv(q_t, k_t, v_t, step=True)
    _check_beta("beta_t", beta_t, q_t)
    if g_t is not None:
        _check_gate("g_t", g_t, q_t, channel_ok=False)
    o, S = _delta_step(_state(state, q_t, v_t, "state"), q_t, k_t, v_t, beta_t, g_t, _scale(scale, q_t.shape[-1]))
    return o.to(v_t.dtype), S


def _delta_step(S, q_t, k_t, v_t, beta_t, g_t, s):  # the step without the checks; S in the compute dtype
    q, k, v, beta = (x.to(S.dtype) for x in (q_t, k_t, v_t, beta_t))
    if g_t is not None:
        S = g_t.to(S.dtype).exp()[..., None, None] * S
    err = v - (k[..., None, :] @ S)[..., 0, :]  # (B, H, d_v): what the state gets wrong about v under k
    S = S + beta[..., None, None] * k[..., :, None] * err[..., None, :]
    return (q[..., None, :] @ S)[..., 0, :] * s, S


def delta_rule_recurrent(q, k, v, beta, g=None, scale: float | None = None, initial_state=None):
    """:func:`delta_rule_step` over the N tokens: ``(o (B, H, N, d_v), final state)``."""
    _check_qkv(q, k, v)
    _check_beta("beta", beta, q)
    if g is not None:
        _check_gate("g", g, q, channel_ok=False)
    S, s = _state(initial_state, q, v), _scale(scale, q.shape[-1])
    outs = []
    for t in range(q.shape[-2]):
        o, S = _delta_step(S, q[..., t, :], k[..., t, :], v[..., t, :], beta[..., t],
                           None if g is None else g[..., t], s)
        outs.append(o)
    return (torch.stack(outs, dim=-2).to(v.dtype) if outs else v.new_zeros(v.shape)), S


def delta_rule_chunked(q, k, v, beta, g=None, chunk_size: int = 64, scale: float | None = None,
                       initial_state=None):
    """Chunks of C tokens, the WY/UT form: ``(o (B, H, N, d_v), final state)``.

    Per chunk, with ``b`` the cumulative log decay from its start, ``Gamma_ij = exp(b_i - b_j)``
    (i >= j) and ``S`` the state before it: ``A = I + tril(diag(beta) (K K^T * Gamma), -1)``,
    ``W = A^-1 diag(beta exp(b)) K``, ``U = A^-1 diag(beta) V - W S`` (what each token writes),
    ``O = exp(b) Q S + (Q K^T * Gamma) U``, ``S <- exp(b_C) S + (K exp(b_C - b))^T U``.
    (Gated DeltaNet's section 3.3 prints the causal mask M where Gamma belongs.)
    """
    _check_qkv(q, k, v)
    _check_beta("beta", beta, q)
    if g is not None:
        _check_gate("g", g, q, channel_ok=False)
    C = validate.int_at_least("chunk_size", chunk_size, 1)
    s, S = _scale(scale, q.shape[-1]), _state(initial_state, q, v)
    acc = S.dtype
    outs = []
    for i in range(0, q.shape[-2], C):
        qc, kc, vc, bc = (x[:, :, i:i + C].to(acc) for x in (q, k, v, beta))
        c = qc.shape[2]
        gc = g[:, :, i:i + C].to(acc) if g is not None else qc.new_zeros(qc.shape[:-1])  # (B, H, c)
        b, gamma = gc.cumsum(dim=2), _segsum(gc).exp()  # log decay from the chunk's start; (B, H, c, c)
        a = torch.eye(c, dtype=acc, device=q.device) + (bc[..., None] * (kc @ kc.transpose(-2, -1)) * gamma).tril(-1)
        rhs = torch.cat([bc[..., None] * vc, (bc * b.exp())[..., None] * kc], dim=-1)  # (B, H, c, d_v + d_k)
        sol = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)
        u = sol[..., :vc.shape[-1]] - sol[..., vc.shape[-1]:] @ S  # (B, H, c, d_v)
        o = (qc * b.exp()[..., None]) @ S + ((qc @ kc.transpose(-2, -1)) * gamma) @ u
        S = b[:, :, -1, None, None].exp() * S + (kc * _suffix(gc).exp()[..., None]).transpose(-2, -1) @ u
        outs.append(o * s)
    return (torch.cat(outs, dim=2).to(v.dtype) if outs else v.new_zeros(v.shape)), S


# ---------------------------------------------------------------------------------------------
# modules: (B, N, embed_dim) -> (B, N, embed_dim), causal by construction
# ---------------------------------------------------------------------------------------------


class _Recurrent(nn.Module):
    """Shared parts: q, k, v, out projections (``nn.Linear(embed_dim, embed_dim)``), an RMSNorm per
    head on the output (no denominator, as RetNet's GroupNorm and GLA's norm), ``chunk_size``.

    ``forward(x (B, N, E), attn_mask=None, key_padding_mask=None) -> (B, N, E)``: causal by
    construction, so ``attn_mask`` must be None. ``key_padding_mask`` (B, N) bool, True = real
    token: a padded token neither decays nor writes the state, so every real token's output is
    what it would be with the padding removed (left padding included).
    """

    def __init__(self, embed_dim: int, num_heads: int, chunk_size: int = 64, bias: bool = True):
        super().__init__()
        validate.int_at_least("embed_dim", embed_dim, 1)
        validate.int_at_least("num_heads", num_heads, 1)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads = {num_heads} must divide embed_dim = {embed_dim}")
        self.chunk_size = validate.int_at_least("chunk_size", chunk_size, 1)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim, bias=bias)
                                                                for _ in range(4))
        self.norm = nn.RMSNorm(self.head_dim, eps=1e-5)

    def _split(self, x):  # (B, N, E) -> (B, H, N, Dh)
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _check(self, x, attn_mask, key_padding_mask):
        """The padding mask as (B, 1, N) float (1 = real), or None."""
        validate.tensor("x", x, 3, f"3-d (batch, seq, {self.embed_dim}) (batch_first)")
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"x has shape {validate.shape_str(x)}, expected (batch, seq, {self.embed_dim}) (batch_first)")
        validate.module_accepts(self, "x", x)
        if attn_mask is not None:
            raise ValueError(f"{type(self).__name__} takes no attn_mask (got {validate.shape_str(attn_mask)}): "
                             "it is causal by construction, expected None")
        if key_padding_mask is None:
            return None
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError(f"key_padding_mask must be a bool tensor (True = real token), got "
                            f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)}")
        if tuple(key_padding_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"key_padding_mask has shape {validate.shape_str(key_padding_mask)}, expected "
                             f"(B, N) = {tuple(x.shape[:2])}")
        return key_padding_mask[:, None, :].to(x.dtype)

    def mix(self, x, q, k, v, real):  # (B, H, N, Dh) -> (B, H, N, Dh)
        raise NotImplementedError

    def forward(self, x, attn_mask=None, key_padding_mask=None):
        real = self._check(x, attn_mask, key_padding_mask)
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        o = self.norm(self.mix(x, q, k, v, real).transpose(1, 2))  # (B, N, H, Dh)
        return self.out_proj(o.flatten(-2))  # (B, N, E)


class GatedLinearAttention(_Recurrent):
    """Decayed / gated linear attention on (B, N, embed_dim), chunked (``gated_linear_attention_chunked``).

    ``gate="fixed"``: RetNet's decay per head (:func:`retnet_log_decay`);
    ``"scalar"``: ``g = logsigmoid(x W_g + b_g) / 16`` per head and token (a data-dependent
    scalar decay, as Mamba-2's and GLA's scalar variant; the 1/16 is GLA's normaliser, so decays
    start near exp(-0.69 / 16) = 0.96); ``"channel"``: GLA's per-key-channel gate, the same
    through a rank-16 projection (E -> 16 -> E). Without GLA's output gate and short convolution
    (the factory's ``conv_kernel`` adds the latter).
    """

    def __init__(self, embed_dim, num_heads, gate: str = "fixed", chunk_size: int = 64, bias: bool = True):
        super().__init__(embed_dim, num_heads, chunk_size, bias)
        self.gate = validate.choice("gate", gate, GATES)
        if gate == "scalar":
            self.gate_proj = nn.Linear(embed_dim, num_heads)
        elif gate == "channel":
            self.gate_proj = nn.Sequential(nn.Linear(embed_dim, 16, bias=False), nn.Linear(16, embed_dim))

    def log_gate(self, x):  # (B, N, E) -> (B, H, N) or (B, H, N, Dh): log decays <= 0, float32 for 16-bit x
        acc = _acc(x.dtype)
        if self.gate == "fixed":  # from the formula, never a buffer a .to(bfloat16) would round
            return retnet_log_decay(self.num_heads, acc).to(x.device)[None, :, None].expand(x.shape[0], -1, x.shape[1])
        g = F.logsigmoid(self.gate_proj(x).to(acc)) / 16
        return g.transpose(1, 2) if self.gate == "scalar" else self._split(g)

    def mix(self, x, q, k, v, real):
        g = self.log_gate(x)
        if real is not None:  # a padded token: no write (k = 0), no decay (g = 0)
            k = k * real[..., None]
            g = g * (real if g.dim() == 3 else real[..., None])
        return gated_linear_attention_chunked(q, k, v, g, self.chunk_size)[0]


class DeltaNet(_Recurrent):
    """The delta rule on (B, N, embed_dim), chunked (``delta_rule_chunked``); ``gated=True``: Gated DeltaNet.

    As DeltaNet's layer: q, k through SiLU and L2 normalisation (unit keys keep the state
    bounded), ``beta = sigmoid(x W_beta)`` per head; the gate, as Gated DeltaNet's (Mamba-2's
    parametrisation), ``g = -exp(A_log) softplus(x W_a + dt_bias)``. Without the short
    convolutions on q, k, v (the factory's ``conv_kernel`` adds one before the mixer).
    """

    def __init__(self, embed_dim, num_heads, gated: bool = False, chunk_size: int = 64, bias: bool = True):
        super().__init__(embed_dim, num_heads, chunk_size, bias)
        self.gated = validate.flag("gated", gated)
        self.beta_proj = nn.Linear(embed_dim, num_heads)
        if gated:
            self.a_proj = nn.Linear(embed_dim, num_heads, bias=False)
            self.A_log = nn.Parameter(torch.empty(num_heads).uniform_(1, 16).log())
            dt = torch.exp(torch.empty(num_heads).uniform_(math.log(1e-3), math.log(0.1))).clamp_min(1e-4)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt

    def mix(self, x, q, k, v, real):
        q, k = l2_normalize(F.silu(q)), l2_normalize(F.silu(k))
        acc = _acc(x.dtype)  # gates in float32 for 16-bit x
        beta = torch.sigmoid(self.beta_proj(x).to(acc)).transpose(1, 2)  # (B, H, N)
        g = None
        if self.gated:
            g = (-self.A_log.to(acc).exp() * F.softplus((self.a_proj(x) + self.dt_bias).to(acc))).transpose(1, 2)
        if real is not None:  # a padded token: no write (beta = 0), no decay (g = 0)
            beta = beta * real
            g = None if g is None else g * real
        return delta_rule_chunked(q, k, v, beta, g, self.chunk_size)[0]
