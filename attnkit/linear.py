"""Linear-time attention (chapter 09): kernels, random features, low rank, landmarks, cos re-weighting.

Softmax attention is ``out_i = sum_j sim(q_i, k_j) v_j / sum_j sim(q_i, k_j)`` with
``sim(q, k) = exp(q.k / sqrt(d))``. Every method here replaces ``sim`` or the N x N matrix so that
the cost grows linearly in N:

- :func:`linear_attention` -- ``sim(q, k) = phi(q).phi(k)`` and associativity:
  ``phi(Q) (phi(K)^T V)`` (Katharopoulos et al. 2020, eqs. 4-6; causal by prefix sums, eqs. 9-12),
  with its RNN form :func:`linear_attention_step` / :func:`linear_attention_chunk` (eqs. 16-20).
- :func:`efficient_attention` -- softmax over the features of q, softmax over the sequence of k
  (Shen et al. 2021, eq. 3).
- :func:`performer_attention` -- FAVOR+ random features of the softmax kernel
  (Choromanski et al. 2021, Lemma 1, section 2.4 orthogonal features, the trigonometric map eq. 7).
- :func:`linformer_attention` -- project keys and values to k rows (Wang et al. 2020, eq. 7).
- :func:`nystrom_attention` -- landmarks and a Moore-Penrose pseudo-inverse
  (Xiong et al. 2021, eqs. 11-14).
- :func:`cosformer_attention` -- ReLU features re-weighted by ``cos(pi/2 (i - j) / M)``
  (Qin et al. 2022, eqs. 9-12), in linear time through ``cos(a - b) = cos a cos b + sin a sin b``.

Shapes are ``(B, H, N, D)`` inside (any leading batch dims work), ``(B, N, embed_dim)`` at the
modules (batch-first). Boolean masks follow attnkit: **True = a real token / may attend**.

The denominator ``phi(q_i) . sum_j phi(k_j)`` is floored at ``eps`` (``max(den, eps)``): a row
whose features are all zero (ReLU features, or every key padded) gives zeros, never NaN.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from attnkit import validate

__all__ = [
    "elu_feature_map", "relu_feature_map", "softmax_feature_map", "taylor_feature_map", "FEATURE_MAPS", "get_feature_map",
    "linear_attention", "linear_attention_quadratic", "LinearAttentionState",
    "linear_attention_step", "linear_attention_chunk", "efficient_attention",
    "iid_random_features", "orthogonal_random_features", "favor_features", "performer_attention",
    "softmax_kernel", "linformer_attention", "segment_means", "iterative_pinv",
    "nystrom_attention", "cosformer_weights", "cosformer_attention", "softmax_attention",
    "attention_cost", "LinearAttention", "EfficientAttention", "PerformerAttention",
    "LinformerAttention", "NystromAttention", "CosFormerAttention", "METHODS",
]


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------


def _shape(x) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def _check_qkv(q, k, v, same_len: bool = False):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{name} must have shape (..., seq, dim), got {_shape(x)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    validate.same_dtype_device(q=q, k=k, v=v)
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k has shape {_shape(k)}: its last dim must equal q's head dim "
                         f"{q.shape[-1]} (q has shape {_shape(q)})")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v has shape {_shape(v)}: its seq dim must equal k's seq dim "
                         f"{k.shape[-2]} (k has shape {_shape(k)})")
    if same_len and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs as many queries as keys: q has shape {_shape(q)}, "
                         f"k has shape {_shape(k)}")


def _check_positive(name: str, value, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    validate.int_at_least(name, value, minimum)  # the one size rule: TypeError for 2.5 or True, else ValueError


def _check_eps(eps) -> float:
    return validate.real_number("eps", eps, 0.0, low_open=True)


def _key_mask(key_padding_mask, k) -> torch.Tensor | None:
    """(..., S) bool, True = real key -> (..., S, 1) float multiplier, or None."""
    if key_padding_mask is None:
        return None
    if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be a bool tensor (True = real token), got "
                        f"{type(key_padding_mask).__name__ if not isinstance(key_padding_mask, torch.Tensor) else key_padding_mask.dtype}")
    try:
        torch.broadcast_shapes(key_padding_mask.shape, k.shape[:-1])
        if key_padding_mask.shape[-1] != k.shape[-2]:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(f"key_padding_mask has shape {_shape(key_padding_mask)}, expected a shape "
                         f"broadcastable to (..., S) = {tuple(k.shape[:-1])}") from None
    return key_padding_mask[..., None].to(k.dtype)


def _float32_if_half(*xs):
    """float16 / bfloat16 tensors as float32, others as they are: the methods whose exponents or
    pseudo-inverses need float32's range compute in it and return the input's dtype (as SDPA does)."""
    return tuple(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in xs)


# ---------------------------------------------------------------------------------------------
# feature maps and the kernelised attention (Katharopoulos et al. 2020)
# ---------------------------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020, eq. 7): positive, gradient never zero."""
    validate.tensor("x", x)
    return F.elu(x) + 1.0


def relu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = max(x, 0): non-negative, but a token with no positive feature gets zero weight."""
    validate.tensor("x", x)
    return F.relu(x)


def softmax_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = softmax over the features of each token (a per-token map, used for q and k alike).
    Shen et al.'s efficient attention takes the keys' softmax over the *sequence* instead:
    :func:`efficient_attention`."""
    validate.tensor("x", x)
    return torch.softmax(x, dim=-1)


def taylor_feature_map(x: torch.Tensor) -> torch.Tensor:
    """Based's map (Arora et al. 2024, section 4): the 2nd-order Taylor expansion of exp.

    x (..., d) -> (..., 1 + d + d^2): ``[1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))]``, so that
    ``phi(q) . phi(k) = 1 + s + s^2 / 2`` with ``s = q . k / sqrt(d)``: exp(s) to second order,
    positive for every s. d^2 features: Based applies it to a small projection (d = 16: 273).
    """
    validate.tensor("x", x)
    d = x.shape[-1]
    x2 = (x[..., :, None] * x[..., None, :]).flatten(-2)  # (..., d * d)
    return torch.cat([torch.ones_like(x[..., :1]), x / d ** 0.25, x2 / (2 ** 0.5 * d ** 0.5)], dim=-1)


FEATURE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu+1": elu_feature_map,
    "relu": relu_feature_map,
    "softmax": softmax_feature_map,
    "taylor": taylor_feature_map,
}


def get_feature_map(feature_map) -> Callable[[torch.Tensor], torch.Tensor]:
    """A feature map by name (``"elu+1"``, ``"relu"``, ``"softmax"``, ``"taylor"``) or a callable (applied per token)."""
    if callable(feature_map):
        return feature_map
    if feature_map in FEATURE_MAPS:
        return FEATURE_MAPS[feature_map]
    raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a callable, got {feature_map!r}")


def _normalise(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    """num (..., L, Dv) / max(den, eps) (..., L): the floored denominator of eq. 6."""
    return num / den.clamp_min(eps)[..., None]


def _noncausal(phi_q, phi_k, v, eps):
    """eq. 6: phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(K_j)); phi_q (..., L, M), phi_k (..., S, M)."""
    kv = phi_k.transpose(-2, -1) @ v  # (..., M, Dv): sum_j phi(k_j) v_j^T
    z = phi_k.sum(dim=-2)  # (..., M): sum_j phi(k_j)
    den = (phi_q * z[..., None, :]).sum(-1)  # (..., L)
    return _normalise(phi_q @ kv, den, eps)


class LinearAttentionState(NamedTuple):
    """The recurrent state of causal linear attention (eqs. 16-20), for ``(..., M)`` features.

    ``s`` (..., M, Dv) = sum_{j <= i} phi(k_j) v_j^T  and  ``z`` (..., M) = sum_{j <= i} phi(k_j),
    both stored at the scale ``exp(-c)``: the true sums are ``s * exp(c)``, ``z * exp(c)``.
    ``c`` (...) is -inf before the first key and 0 after it (the Performer's causal mode keeps its
    own per-feature scales: :func:`performer_attention`). The state has the same size however long
    the sequence is: M * (Dv + 1) numbers per head.
    """

    s: torch.Tensor
    z: torch.Tensor
    c: torch.Tensor

    @classmethod
    def zeros(cls, batch_shape, m: int, dv: int, dtype=torch.float32, device=None) -> "LinearAttentionState":
        batch_shape = tuple(batch_shape)
        for i, size in enumerate(batch_shape):
            _check_positive(f"batch_shape[{i}]", size, minimum=0)
        _check_positive("m", m)
        _check_positive("dv", dv)
        return cls(torch.zeros(*batch_shape, m, dv, dtype=dtype, device=device),
                   torch.zeros(*batch_shape, m, dtype=dtype, device=device),
                   torch.full(batch_shape, -math.inf, dtype=dtype, device=device))

    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() for x in self)


def _chunk_update(state: LinearAttentionState, phi_q, phi_k, v, eps):
    """Causal attention of one chunk of C tokens given the state of every token before it.

    phi_q (..., C, M); phi_k (..., C, M). Returns (out (..., C, Dv), new state): query i of the
    chunk sees the state and the chunk's keys j <= i (a C x C block).
    """
    C = phi_q.shape[-2]
    r = torch.exp(state.c)  # (...): the state's sums at scale 1 (0 for the empty state, c = -inf)
    s0, z0 = r[..., None, None] * state.s, r[..., None] * state.z  # (..., M, Dv), (..., M)
    allowed = torch.ones(C, C, dtype=torch.bool, device=phi_q.device).tril()
    w = (phi_q @ phi_k.transpose(-2, -1)).masked_fill(~allowed, 0.0)  # (..., C, C): j <= i
    num = w @ v + phi_q @ s0  # (..., C, Dv)
    den = w.sum(-1) + (phi_q * z0[..., None, :]).sum(-1)  # (..., C)
    s = s0 + phi_k.transpose(-2, -1) @ v  # (..., M, Dv)
    z = z0 + phi_k.sum(-2)  # (..., M)
    c = state.c if C == 0 else torch.zeros_like(state.c)
    return _normalise(num, den, eps), LinearAttentionState(s, z, c)


def _causal(phi_q, phi_k, v, eps, chunk_size):
    """eqs. 9-12, computed chunk by chunk: O(N C M + N M Dv) time, never an N x N matrix."""
    state = LinearAttentionState.zeros(phi_q.shape[:-2], phi_q.shape[-1], v.shape[-1], phi_q.dtype, phi_q.device)
    outs = []
    for i in range(0, phi_q.shape[-2], chunk_size):
        sl = slice(i, i + chunk_size)
        o, state = _chunk_update(state, phi_q[..., sl, :], phi_k[..., sl, :], v[..., sl, :], eps)
        outs.append(o)
    if not outs:
        return v.new_zeros(*phi_q.shape[:-1], v.shape[-1])
    return torch.cat(outs, dim=-2)


def linear_attention(
    q: torch.Tensor,  # (..., L, D)
    k: torch.Tensor,  # (..., S, D)
    v: torch.Tensor,  # (..., S, Dv)
    feature_map="elu+1",
    causal: bool = False,
    eps: float = 1e-6,
    key_padding_mask: torch.Tensor | None = None,  # (..., S) bool, True = real token
    chunk_size: int = 64,
) -> torch.Tensor:  # (..., L, Dv)
    """Kernelised attention ``phi(q_i) sum_j phi(k_j) v_j^T / max(phi(q_i) . sum_j phi(k_j), eps)``.

    Non-causal: eqs. 4-6 of Katharopoulos et al. 2020, ``phi(Q) (phi(K)^T V)``: O(N M Dv).
    Causal (L == S): the sums run over j <= i (eqs. 9-12), computed chunk by chunk
    (``chunk_size`` tokens: a C x C block inside the chunk, the recurrent state across chunks).
    ``eps`` floors the denominator, so rows with all-zero features give zeros.
    """
    _check_qkv(q, k, v, same_len=causal)
    eps = _check_eps(eps)
    _check_positive("chunk_size", chunk_size)
    phi = get_feature_map(feature_map)
    phi_q, phi_k = phi(q), phi(k)  # (..., L, M), (..., S, M)
    km = _key_mask(key_padding_mask, k)
    if km is not None:
        phi_k = phi_k * km  # a padded key adds nothing to any sum
    if causal:
        return _causal(phi_q, phi_k, v, eps, chunk_size)
    return _noncausal(phi_q, phi_k, v, eps)


def linear_attention_quadratic(q, k, v, feature_map="elu+1", causal=False, eps=1e-6):
    """The same attention from its N x N kernel matrix ``A_ij = phi(q_i).phi(k_j)`` (eq. 4): an oracle."""
    _check_qkv(q, k, v, same_len=causal)
    eps = _check_eps(eps)
    phi = get_feature_map(feature_map)
    a = phi(q) @ phi(k).transpose(-2, -1)  # (..., L, S)
    if causal:
        a = a.masked_fill(~torch.ones(a.shape[-2:], dtype=torch.bool, device=a.device).tril(), 0.0)
    return _normalise(a @ v, a.sum(-1), eps)


def linear_attention_step(state: LinearAttentionState | None, q_t, k_t, v_t, feature_map="elu+1",
                          eps: float = 1e-6):
    """One step of the RNN form (eqs. 16-20): q_t, k_t (..., D), v_t (..., Dv) -> (out_t, state).

    ``s_i = s_{i-1} + phi(k_i) v_i^T``, ``z_i = z_{i-1} + phi(k_i)``,
    ``out_i = phi(q_i)^T s_i / max(phi(q_i)^T z_i, eps)``. ``state=None`` starts from zeros.
    """
    for name, x in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        validate.tensor(name, x)
        if x.dim() < 1 or x.shape[:-1] != q_t.shape[:-1]:
            raise ValueError(f"{name} has shape {_shape(x)}, expected (..., dim) with q_t's batch dims "
                             f"{tuple(q_t.shape[:-1])}")
    validate.same_dtype_device(q_t=q_t, k_t=k_t, v_t=v_t)
    if k_t.shape[-1] != q_t.shape[-1]:
        raise ValueError(f"k_t has shape {_shape(k_t)}, expected q_t's dim {q_t.shape[-1]}")
    out, state = linear_attention_chunk(state, q_t[..., None, :], k_t[..., None, :], v_t[..., None, :],
                                        feature_map, eps)
    return out[..., 0, :], state


def linear_attention_chunk(state: LinearAttentionState | None, q, k, v, feature_map="elu+1",
                           eps: float = 1e-6):
    """Causal linear attention of a chunk q, k (..., C, D), v (..., C, Dv) after ``state``.

    Returns ``(out (..., C, Dv), new_state)``. Feeding a sequence chunk by chunk, in any chunking,
    gives the same outputs as ``linear_attention(..., causal=True)`` on the whole of it.
    """
    _check_qkv(q, k, v, same_len=True)
    eps = _check_eps(eps)
    phi = get_feature_map(feature_map)
    phi_q, phi_k = phi(q), phi(k)
    if state is None:
        state = LinearAttentionState.zeros(q.shape[:-2], phi_q.shape[-1], v.shape[-1], q.dtype, q.device)
    if not isinstance(state, LinearAttentionState):
        raise TypeError(f"state must be a LinearAttentionState or None, got {type(state).__name__}")
    if state.s.shape != (*phi_q.shape[:-2], phi_q.shape[-1], v.shape[-1]):
        raise ValueError(f"state.s has shape {_shape(state.s)}, expected (..., M, Dv) = "
                         f"{(*phi_q.shape[:-2], phi_q.shape[-1], v.shape[-1])}")
    return _chunk_update(state, phi_q, phi_k, v, eps)


def efficient_attention(q, k, v, key_padding_mask=None):
    """Shen et al. 2021 (eq. 3): ``softmax_features(Q) (softmax_sequence(K)^T V)``.

    The key map is a softmax over the *sequence* (each feature's weights over the keys sum to 1),
    so it is not a per-token feature map, and there is no causal form. (..., L, Dv).
    """
    _check_qkv(q, k, v)
    km = _key_mask(key_padding_mask, k)
    kk = k if km is None else k.masked_fill(km == 0, -math.inf)
    rho_q = torch.softmax(q, dim=-1)  # (..., L, D): over the features of each query
    rho_k = torch.softmax(kk, dim=-2)  # (..., S, D): over the keys, per feature
    rho_k = torch.nan_to_num(rho_k, nan=0.0)  # every key padded: nothing to attend to
    return rho_q @ (rho_k.transpose(-2, -1) @ v)  # (..., L, Dv)


def softmax_attention(q, k, v, causal: bool = False, scale: float | None = None):
    """Plain softmax attention with the N x N matrix (the 'math path'): the reference of this chapter."""
    _check_qkv(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else validate.real_number("scale", scale)
    s = (q @ k.transpose(-2, -1)) * scale  # (..., L, S)
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril(), -math.inf)
    return torch.softmax(s, dim=-1) @ v


# ---------------------------------------------------------------------------------------------
# Performer / FAVOR+ (Choromanski et al. 2021)
# ---------------------------------------------------------------------------------------------


def iid_random_features(m: int, d: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """(m, d) rows w_i ~ N(0, I_d), independent."""
    _check_positive("m", m)
    _check_positive("d", d)
    _check_positive("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=g, dtype=torch.float64).to(dtype)


def orthogonal_random_features(m: int, d: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """(m, d) orthogonal random features (section 2.4): blocks of d exactly orthogonal rows.

    Each block is the Q of a QR of a Gaussian d x d matrix (sign-corrected, so it is Haar
    distributed); every row is then given the norm of an independent Gaussian d-vector (chi(d)
    distributed), so each row is marginally N(0, I_d) like an iid feature. The last block is cut
    to the m - d * floor(m / d) rows still needed.
    """
    _check_positive("m", m)
    _check_positive("d", d)
    _check_positive("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-m // d)):
        a = torch.randn(d, d, generator=g, dtype=torch.float64)
        qm, r = torch.linalg.qr(a)
        qm = qm * torch.sign(torch.diagonal(r))[None, :]  # Haar: fix the signs of the QR
        blocks.append(qm.T)  # rows are orthonormal
    w = torch.cat(blocks, dim=0)[:m]  # (m, d)
    norms = torch.randn(m, d, generator=g, dtype=torch.float64).norm(dim=1)  # chi(d)
    return (w * norms[:, None]).to(dtype)


def _check_projection(projection, d):
    validate.tensor("projection", projection, 2, "(m, d)")
    if projection.shape[1] != d:
        raise ValueError(f"projection has shape {_shape(projection)}, expected (m, d) with d = {d}")


def _favor_log(x, projection, kind):
    """log-magnitude and sign part of the features: phi = m^-1/2 exp(log) * sign_part."""
    m = projection.shape[0]
    wx = x @ projection.to(x.dtype).T  # (..., N, m)
    sq = (x * x).sum(-1, keepdim=True) / 2  # (..., N, 1): |x|^2 / 2
    if kind == "positive":  # Lemma 1: exp(w.x - |x|^2 / 2)
        return wx - sq, None, m
    if kind == "trig":  # exp(|x|^2 / 2) (cos(w.x), sin(w.x))
        return sq.expand(*wx.shape[:-1], 2 * m), torch.cat([torch.cos(wx), torch.sin(wx)], -1), m
    raise ValueError(f"kind must be 'positive' or 'trig', got {kind!r}")


def favor_features(x: torch.Tensor, projection: torch.Tensor, kind: str = "positive",
                   stabilise: bool = False) -> torch.Tensor:
    """Random features with E[phi(x).phi(y)] = exp(x.y) (the softmax kernel SM(x, y)).

    positive (Lemma 1): ``phi(x) = m^-1/2 exp(w_i.x - |x|^2 / 2)``, m features, always > 0;
    trig: ``phi(x) = m^-1/2 exp(|x|^2 / 2) (cos(w_i.x), sin(w_i.x))``, 2m features.
    x (..., N, d) (already scaled by d^-1/4 for attention), projection (m, d) -> (..., N, m or 2m).
    ``stabilise=True`` subtracts each token's largest exponent (the max-subtraction stabiliser):
    the features are then only proportional to phi, by a per-token factor that cancels for queries.
    """
    validate.tensor("x", x)
    _check_projection(projection, x.shape[-1])
    validate.same_dtype_device(x=x, projection=projection)
    logp, sign, m = _favor_log(x, projection, kind)
    if stabilise:
        logp = logp - logp.amax(dim=-1, keepdim=True)
    phi = torch.exp(logp) / math.sqrt(m)
    return phi if sign is None else phi * sign


def softmax_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SM(x, y) = exp(x . y) for x (..., N, d), y (..., S, d) -> (..., N, S)."""
    for name, t in (("x", x), ("y", y)):
        validate.tensor(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., N, d), got {_shape(t)}")
    validate.same_dtype_device(x=x, y=y)
    if y.shape[-1] != x.shape[-1]:
        raise ValueError(f"y has shape {_shape(y)}, expected the last dim of x {_shape(x)}")
    return torch.exp(x @ y.transpose(-2, -1))


def _log_kernel_causal(lq, lk, v, sign_q=None, sign_k=None, chunk_size: int = 64, blind_spot: bool = False):
    """Causal attention with the kernel ``A_ij = sum_f sign_q_if sign_k_jf exp(lq_if + lk_jf)``, exact
    at every scale (FAVOR+ here, the global heads of ``attnkit.lora``).

    lq (..., N, F), lk (..., N, F): log |features| of queries and keys (-inf for a padded key);
    sign_q, sign_k (..., N, F) or None (positive features). Returns ``num`` (..., N, Dv), ``den``
    (..., N) and ``t`` (..., N): the true sums ``sum_j A_ij v_j`` and ``sum_j A_ij`` over the keys
    query i sees are ``num * exp(t)`` and ``den * exp(t)``. Query i sees the keys j <= i, or with
    ``blind_spot`` only the keys of earlier chunks of ``chunk_size`` tokens.

    t_i is the log of query i's largest term ``max_{f, j seen} lq_if + lk_jf``, so that term is
    exactly 1 (a row that sees no key gets num = den = 0). The state keeps, per feature f,
    ``s_f = sum_j exp(lk_jf - c_f) v_j`` and ``z_f = sum_j exp(lk_jf - c_f)``, c_f the largest
    exponent of feature f over the keys so far. Inside a chunk the keys are scaled by the chunk's
    last running max a_f (a later key of the chunk may raise it; exact, only rounding differs);
    the query factor ``exp(lq_if + a_f - t_i)`` then exceeds 1, and where it could overflow the
    chunk is halved (a chunk of one token never needs it).
    """
    n_tok, nf, dv = lq.shape[-2], lq.shape[-1], v.shape[-1]
    batch = lq.shape[:-2]
    limit = 0.5 * math.log(torch.finfo(lq.dtype).max)  # the query factor stays below exp(limit)
    s = v.new_zeros(*batch, nf, dv)  # (..., F, Dv) at scale exp(-c_f) per feature
    z = v.new_zeros(*batch, nf)  # (..., F)
    c = lq.new_full((*batch, nf), -math.inf)  # (..., F): no key yet
    nums, dens, ts, i, size = [], [], [], 0, chunk_size
    while i < n_tok:
        n = min(size, n_tok - i)
        sl = slice(i, i + n)
        lq_c, lk_c = lq[..., sl, :], lk[..., sl, :]  # (..., n, F)
        with torch.no_grad():  # the scales cancel: constants for autograd
            run = torch.maximum(torch.cummax(lk_c, dim=-2).values, c[..., None, :])  # (..., n, F): max_{j<=i}
            a = run[..., -1, :]  # (..., F): the chunk's last running max
            a0 = torch.where(torch.isinf(a), torch.zeros_like(a), a)  # no key on f: its keys are all zero
            seen = c[..., None, :] if blind_spot else run  # (..., n, F)
            t = (lq_c + seen).amax(-1)  # (..., n): log of each query's largest term (-inf: it sees no key)
            t = torch.where(torch.isinf(t), (lq_c + a0[..., None, :]).amax(-1), t)  # no key seen: any scale
        e = lq_c + a[..., None, :] - t[..., None]  # (..., n, F): log of the query factor inside the chunk
        if not blind_spot and n > 1 and e.amax().item() > limit:
            size = max(1, n // 2)  # a key later in this chunk dwarfs the earlier ones: smaller chunks
            continue
        fq_state = torch.exp(lq_c + c[..., None, :] - t[..., None])  # (..., n, F) <= 1 (0 where no key yet)
        fk = torch.exp(lk_c - a0[..., None, :])  # (..., n, F) <= 1
        if sign_q is not None:
            fq_state, fk = fq_state * sign_q[..., sl, :], fk * sign_k[..., sl, :]
        num = fq_state @ s  # (..., n, Dv): the keys of earlier chunks
        den = (fq_state * z[..., None, :]).sum(-1)  # (..., n)
        if not blind_spot:  # and the keys j <= i of this chunk
            fq = torch.exp(e) if sign_q is None else torch.exp(e) * sign_q[..., sl, :]  # (..., n, F)
            allowed = torch.ones(n, n, dtype=torch.bool, device=lq.device).tril()
            w = (fq @ fk.transpose(-2, -1)).masked_fill(~allowed, 0.0)  # (..., n, n): j <= i only
            num, den = num + w @ v[..., sl, :], den + w.sum(-1)
        nums.append(num)
        dens.append(den)
        ts.append(t)
        r = torch.where(torch.isinf(c), torch.zeros_like(c), torch.exp(c - a0))  # (..., F) <= 1: old scale -> a
        s = r[..., None] * s + fk.transpose(-2, -1) @ v[..., sl, :]
        z = r * z + fk.sum(-2)
        c, i, size = a, i + n, chunk_size
    if not nums:
        return v.new_zeros(*lq.shape[:-1], dv), lq.new_zeros(lq.shape[:-1]), lq.new_zeros(lq.shape[:-1])
    return torch.cat(nums, dim=-2), torch.cat(dens, dim=-1), torch.cat(ts, dim=-1)


def performer_attention(
    q: torch.Tensor,  # (..., L, D)
    k: torch.Tensor,  # (..., S, D)
    v: torch.Tensor,  # (..., S, Dv)
    projection: torch.Tensor | None = None,  # (m, D)
    nb_features: int | None = None,
    kind: str = "positive",
    causal: bool = False,
    seed: int = 0,
    eps: float = 1e-6,
    key_padding_mask: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:  # (..., L, Dv)
    """FAVOR+: softmax attention with exp(q.k / sqrt(D)) estimated by random features.

    q, k are scaled by D^-1/4 so phi(q').phi(k') estimates exp(q.k / sqrt(D)). ``projection``
    (m, D) can be passed in (reproducible, comparable with other code); otherwise
    ``orthogonal_random_features(nb_features or ceil(D log D), D, seed)`` is drawn.

    Stabilisers (exact at every input scale: they cancel between numerator and denominator): the
    features live in log space until each query is scaled by its own largest term
    ``exp(max_{f, j} lq_if + lk_jf)`` over the keys it may see (all keys when not causal, keys at
    or before it when causal, so a future key never changes an earlier output); each key feature
    is scaled by that feature's largest key exponent. The largest term of every denominator is
    then exactly 1: ``eps`` floors it only for a row that sees no key, or where the trig map's
    terms cancel (they can make it zero or negative). No eps is added to the features. Half
    precision inputs are computed in float32 and the output is returned in their dtype.
    """
    _check_qkv(q, k, v, same_len=causal)
    eps = _check_eps(eps)
    _check_positive("chunk_size", chunk_size)
    d = q.shape[-1]
    if projection is None:
        _check_positive("nb_features", nb_features, allow_none=True)
        m = nb_features or max(1, math.ceil(d * math.log(max(d, 2))))
        projection = orthogonal_random_features(m, d, seed, dtype=q.dtype).to(q.device)
    _check_projection(projection, d)
    out_dtype = v.dtype
    q, k, v = _float32_if_half(q, k, v)  # exponents of |x|^2 / 2 need float32's range
    scale = d ** -0.25
    lq, sign_q, _ = _favor_log(q * scale, projection, kind)  # (..., L, F); m^-1/2 cancels
    lk, sign_k, _ = _favor_log(k * scale, projection, kind)  # (..., S, F)
    km = _key_mask(key_padding_mask, k)
    if km is not None:
        lk = lk.masked_fill(km == 0, -math.inf)  # a padded key: feature exp(-inf) = 0
    if causal:
        num, den, _ = _log_kernel_causal(lq, lk, v, sign_q, sign_k, chunk_size)
        return _normalise(num, den, eps).to(out_dtype)
    if lk.shape[-2] == 0:  # no key at all: every row sees nothing
        return v.new_zeros(*q.shape[:-1], v.shape[-1]).to(out_dtype)
    a = lk.amax(dim=-2, keepdim=True).detach()  # (..., 1, F): each feature's largest key exponent
    a0 = torch.where(torch.isinf(a), torch.zeros_like(a), a)  # every key padded: all features zero
    t = (lq + a).amax(dim=-1, keepdim=True).detach()  # (..., L, 1): log of each query's largest term
    t = torch.where(torch.isinf(t), torch.zeros_like(t), t)
    phi_q = torch.exp(lq + a - t)  # (..., L, F) <= 1
    phi_k = torch.exp(lk - a0)  # (..., S, F) <= 1
    if sign_q is not None:
        phi_q, phi_k = phi_q * sign_q, phi_k * sign_k
    return _noncausal(phi_q, phi_k, v, eps).to(out_dtype)


# ---------------------------------------------------------------------------------------------
# Linformer (Wang et al. 2020)
# ---------------------------------------------------------------------------------------------


def linformer_attention(q, k, v, E, F_, scale=None, key_padding_mask=None):
    """eq. 7: ``softmax(Q (E^T K)^T / sqrt(D)) (F^T V)``, E and F of shape (..., N, k).

    (The paper writes E_i, F_i as k x n matrices applied on the left; ours are their transposes,
    (N, k), as stored by most code.) A (N, k) projection is shared by every head and batch
    element; (H, N, k) gives each head its own. The N x k scores are the only quadratic-looking
    matrix: linear in N for a fixed k. Padded keys are zeroed before the projection.
    """
    _check_qkv(q, k, v)
    for name, P in (("E", E), ("F_", F_)):
        validate.tensor(name, P)
        if P.dim() < 2:
            raise ValueError(f"{name} must have shape (..., N, k), got {_shape(P)}")
        if P.device != k.device:
            raise ValueError(f"{name} is on {P.device}, expected k's device {k.device}")
        if P.shape[-2] != k.shape[-2]:
            raise ValueError(f"{name} has shape {_shape(P)}, expected (..., N, k) with N = {k.shape[-2]} "
                             "(the number of keys)")
    if E.shape[-1] != F_.shape[-1]:
        raise ValueError(f"E has shape {_shape(E)} and F has shape {_shape(F_)}: expected the same k")
    km = _key_mask(key_padding_mask, k)
    out_dtype = v.dtype
    q, k, v = _float32_if_half(q, k, v)  # sums of N products: half precision loses the scores
    if km is not None:
        k, v = k * km, v * km
    k_proj = E.transpose(-2, -1).to(k.dtype) @ k  # (..., k, D)
    v_proj = F_.transpose(-2, -1).to(v.dtype) @ v  # (..., k, Dv)
    return softmax_attention(q, k_proj, v_proj, scale=scale).to(out_dtype)


# ---------------------------------------------------------------------------------------------
# Nystromformer (Xiong et al. 2021)
# ---------------------------------------------------------------------------------------------


def segment_means(x: torch.Tensor, num_landmarks: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Landmarks: the means of ``num_landmarks`` consecutive segments of x (..., N, D) -> (..., m, D).

    When m divides N every segment has l = N / m tokens (the paper, section 3.3). Otherwise the
    sequence is padded at the end with zero rows up to m * l, l = ceil(N / m), and each mean is
    taken over the segment's real tokens only (padding is not counted, so it does not pull the
    last mean towards zero). If a whole segment would be padding (m * l - N >= l), no landmark
    can be made there: ValueError. ``mask`` (..., N) bool (True = real token) leaves padded
    tokens out of the means too (a segment with no real token then gets the zero vector).
    """
    validate.tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., N, D), got {_shape(x)}")
    _check_positive("num_landmarks", num_landmarks)
    n = x.shape[-2]
    if num_landmarks > n:
        raise ValueError(f"num_landmarks must be <= the sequence length N = {n}, got {num_landmarks}")
    seg = -(-n // num_landmarks)  # ceil(N / m) tokens per segment
    pad = seg * num_landmarks - n
    if pad >= seg:
        raise ValueError(f"num_landmarks = {num_landmarks} with N = {n}: segments of ceil(N / m) = {seg} tokens "
                         f"leave {pad // seg} segment(s) of padding only; expected m with m * ceil(N / m) - N "
                         f"< ceil(N / m) (e.g. a divisor of N)")
    real = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device) if mask is None else mask.to(x.dtype).expand(x.shape[:-1])
    xs = F.pad(x * real[..., None], (0, 0, 0, pad))  # (..., m * seg, D)
    cnt = F.pad(real, (0, pad))  # (..., m * seg)
    sums = xs.unflatten(-2, (num_landmarks, seg)).sum(-2)  # (..., m, D)
    counts = cnt.unflatten(-1, (num_landmarks, seg)).sum(-1)  # (..., m)
    return sums / counts.clamp_min(1.0)[..., None]


def iterative_pinv(a: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of a (..., m, m) by the iteration of Xiong et al. 2021, eq. 14.

    ``Z_0 = A^T / (||A||_1 ||A||_inf)`` with ``||A||_1`` the largest column sum of |A| and
    ``||A||_inf`` the largest row sum, both taken **per matrix** (over its own m x m entries;
    the official code takes one max over the whole batch and all heads, so one head's result
    depends on the others), then ``Z <- 1/4 Z (13 I - A Z (15 I - A Z (7 I - A Z)))``.
    """
    _check_positive("iterations", iterations, minimum=0)
    validate.tensor("a", a)
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"a must be square matrices (..., m, m), got {_shape(a)}")
    m = a.shape[-1]
    eye = torch.eye(m, dtype=a.dtype, device=a.device)
    col = a.abs().sum(-2).amax(-1)  # (...,): ||A||_1
    row = a.abs().sum(-1).amax(-1)  # (...,): ||A||_inf
    norm = col * row  # (...,): 0 only for the zero matrix, whose pseudo-inverse is 0
    z = a.transpose(-2, -1) / torch.where(norm == 0, torch.ones_like(norm), norm)[..., None, None]
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom_attention(q, k, v, num_landmarks: int, pinv_iterations: int = 6, exact_pinv: bool = False,
                      scale: float | None = None, key_padding_mask=None, return_parts: bool = False):
    """``softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V`` (eq. 13): O(N m) memory.

    Q~, K~ (..., m, D) are the segment means of Q and K (:func:`segment_means`). The pseudo-inverse
    is :func:`iterative_pinv` (``pinv_iterations`` steps) or, with ``exact_pinv=True``,
    ``torch.linalg.pinv``. With m = N and the exact pinv (or enough iterations) it equals softmax
    attention: the three kernels are then the same matrix A, and A pinv(A) A = A.
    """
    _check_qkv(q, k, v)
    _check_positive("pinv_iterations", pinv_iterations, minimum=0)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"nystrom_attention is self-attention: q has shape {_shape(q)}, k has shape {_shape(k)}")
    scale = q.shape[-1] ** -0.5 if scale is None else validate.real_number("scale", scale)
    km = None if key_padding_mask is None else key_padding_mask
    _key_mask(km, k)
    _check_positive("num_landmarks", num_landmarks)
    if q.shape[-2] == 0:  # no token: no landmark either, and nothing to output
        out = v.new_zeros(*q.shape[:-1], v.shape[-1])
        return (out, {}) if return_parts else out
    out_dtype = v.dtype
    q, k, v = _float32_if_half(q, k, v)  # the pseudo-inverse iteration needs float32's precision
    ql, kl = segment_means(q, num_landmarks, km), segment_means(k, num_landmarks, km)  # (..., m, D)
    f = torch.softmax((q @ kl.transpose(-2, -1)) * scale, -1)  # (..., N, m)
    a = torch.softmax((ql @ kl.transpose(-2, -1)) * scale, -1)  # (..., m, m)
    sb = (ql @ k.transpose(-2, -1)) * scale  # (..., m, N)
    if km is not None:
        sb = sb.masked_fill(~km[..., None, :], -math.inf)
    b = torch.nan_to_num(torch.softmax(sb, -1), nan=0.0)
    z = torch.linalg.pinv(a) if exact_pinv else iterative_pinv(a, pinv_iterations)
    out = (f @ (z @ (b @ v))).to(out_dtype)  # (..., N, Dv), never an N x N matrix
    return (out, {"F": f, "A": a, "B": b, "pinv": z}) if return_parts else out


# ---------------------------------------------------------------------------------------------
# cosFormer (Qin et al. 2022)
# ---------------------------------------------------------------------------------------------


def cosformer_weights(n_q: int, n_k: int, M: int, offset_q: int = 0) -> torch.Tensor:
    """The (n_q, n_k) re-weighting cos(pi/2 (i - j) / M), positions i, j from 1 (as the official code)."""
    _check_positive("M", M)
    _check_positive("n_q", n_q, minimum=0)
    _check_positive("n_k", n_k, minimum=0)
    _check_positive("offset_q", offset_q, minimum=0)
    i = torch.arange(1, n_q + 1, dtype=torch.float64)[:, None] + offset_q
    j = torch.arange(1, n_k + 1, dtype=torch.float64)[None, :]
    return torch.cos(math.pi / 2 * (i - j) / M)


def _cos_features(x, M, dtype):
    """ReLU(x) split into (ReLU(x) cos(pi i / 2M), ReLU(x) sin(pi i / 2M)), i = 1..N: (..., N, 2D)."""
    n = x.shape[-2]
    ang = (math.pi / 2 * torch.arange(1, n + 1, dtype=torch.float64, device=x.device) / M).to(dtype)
    r = F.relu(x)
    return torch.cat([r * torch.cos(ang)[:, None], r * torch.sin(ang)[:, None]], dim=-1)


def cosformer_attention(q, k, v, causal: bool = False, max_len: int | None = None, eps: float = 1e-6,
                        key_padding_mask=None, chunk_size: int = 64):
    """``sum_j ReLU(q_i).ReLU(k_j) cos(pi/2 (i - j)/M) v_j / sum_j (same)``, in O(N D Dv).

    ``cos(a - b) = cos a cos b + sin a sin b`` turns the re-weighting into features of 2D numbers
    per token (eqs. 10-12). Not causal: M = max(N_q, N_k) (the official code's choice). Causal:
    M = ``max_len``, fixed beforehand, so an output never depends on how long the sequence gets;
    positions must not exceed it (|i - j| < M keeps every cosine positive).
    """
    _check_qkv(q, k, v, same_len=causal)
    eps = _check_eps(eps)
    _check_positive("chunk_size", chunk_size)
    if causal:
        if max_len is None:
            raise ValueError("causal cosFormer needs max_len (the fixed M of cos(pi/2 (i - j) / M)), got None")
        _check_positive("max_len", max_len)
        if q.shape[-2] > max_len:
            raise ValueError(f"sequence length {q.shape[-2]} exceeds max_len = {max_len}")
        M = max_len
    else:
        M = max(q.shape[-2], k.shape[-2], 1) if max_len is None else max_len  # N = 0: any M, no weight
        _check_positive("max_len", M)
    phi_q, phi_k = _cos_features(q, M, q.dtype), _cos_features(k, M, k.dtype)  # (..., N, 2D)
    km = _key_mask(key_padding_mask, k)
    if km is not None:
        phi_k = phi_k * km
    if causal:
        return _causal(phi_q, phi_k, v, eps, chunk_size)
    return _noncausal(phi_q, phi_k, v, eps)


# ---------------------------------------------------------------------------------------------
# costs as formulas
# ---------------------------------------------------------------------------------------------


def attention_cost(method: str, N: int, d: int, dv: int | None = None, m: int | None = None,
                   bytes_per: int = 4) -> dict:
    """Forward multiply-add FLOPs (2 per multiply-add) and the largest extra tensor, one head.

    ``m``: feature count (performer), projected length k (linformer) or landmarks (nystrom).
    Returns ``{"flops": ..., "extra_bytes": ..., "state_bytes": ...}`` (``state_bytes``: the
    recurrent state of a causal method, None where there is none).
    """
    _check_positive("N", N, minimum=0)
    _check_positive("d", d)
    _check_positive("dv", dv, allow_none=True)
    _check_positive("m", m, allow_none=True)
    _check_positive("bytes_per", bytes_per)
    dv = d if dv is None else dv
    if method == "softmax":
        return {"flops": 2 * N * N * d + 2 * N * N * dv, "extra_bytes": N * N * bytes_per, "state_bytes": None}
    if method in ("linear", "efficient", "cosformer"):
        f = 2 * d if method == "cosformer" else d
        return {"flops": 2 * N * f * dv * 2 + 2 * N * f * 2, "extra_bytes": (f * dv + 2 * N * f) * bytes_per,
                "state_bytes": None if method == "efficient" else f * (dv + 1) * bytes_per}
    if method == "performer":
        if m is None:
            raise ValueError("performer cost needs m (the number of random features), got None")
        return {"flops": 2 * 2 * N * m * d + 2 * N * m * dv * 2 + 2 * N * m * 2,
                "extra_bytes": (m * dv + 2 * N * m) * bytes_per, "state_bytes": m * (dv + 1) * bytes_per}
    if method == "linformer":
        if m is None:
            raise ValueError("linformer cost needs m (the projected length k), got None")
        return {"flops": 2 * N * m * (d + dv) + 2 * N * m * d + 2 * N * m * dv,
                "extra_bytes": N * m * bytes_per, "state_bytes": None}
    if method == "nystrom":
        if m is None:
            raise ValueError("nystrom cost needs m (the number of landmarks), got None")
        return {"flops": 2 * N * m * d * 2 + 2 * m * m * d + 6 * 4 * 2 * m ** 3 + 2 * m * N * dv + 2 * m * m * dv
                + 2 * N * m * dv, "extra_bytes": 2 * N * m * bytes_per, "state_bytes": None}
    raise ValueError(f"method must be one of softmax, linear, efficient, performer, linformer, nystrom, "
                     f"cosformer, got {method!r}")


# ---------------------------------------------------------------------------------------------
# modules: (B, N, embed_dim) -> (B, N, embed_dim), one per method
# ---------------------------------------------------------------------------------------------


class _Base(nn.Module):
    """Shared projections: q, k, v and out, each ``nn.Linear(embed_dim, embed_dim)``.

    ``forward(x, attn_mask=None, key_padding_mask=None) -> Tensor`` on (B, N, embed_dim).
    ``attn_mask`` must be None: these methods are causal or not by construction (``causal=``),
    no arbitrary (N, N) mask fits in linear time. ``key_padding_mask`` (B, N) bool, True = real.
    """

    supports_causal = False

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True):
        super().__init__()
        _check_positive("embed_dim", embed_dim)
        _check_positive("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim = {embed_dim} must be divisible by num_heads = {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim, bias=bias)
                                                                for _ in range(4))

    def _split(self, x):  # (B, N, E) -> (B, H, N, Dh)
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _check(self, x, attn_mask, key_padding_mask):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x has shape {_shape(x)}, expected (batch, seq, {self.embed_dim}) (batch_first)")
        if attn_mask is not None:
            raise ValueError(f"{type(self).__name__} takes no attn_mask (got shape "
                             f"{_shape(attn_mask) if isinstance(attn_mask, torch.Tensor) else type(attn_mask).__name__}): "
                             "it is causal or not by construction (causal=...), expected None")
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
                raise TypeError("key_padding_mask must be a bool tensor (True = real token)")
            if tuple(key_padding_mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"key_padding_mask has shape {_shape(key_padding_mask)}, expected (B, N) = "
                                 f"{tuple(x.shape[:2])}")
            return key_padding_mask[:, None, :]  # (B, 1, N)
        return None

    def attend(self, q, k, v, key_padding_mask):  # (B, H, N, Dh) -> (B, H, N, Dh)
        raise NotImplementedError

    def forward(self, x, attn_mask=None, key_padding_mask=None):
        kpm = self._check(x, attn_mask, key_padding_mask)
        validate.module_accepts(self, "x", x)
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        o = self.attend(q, k, v, kpm)  # (B, H, N, Dh)
        return self.out_proj(o.transpose(1, 2).flatten(-2))  # (B, N, E)


class LinearAttention(_Base):
    """Katharopoulos et al. 2020 on (B, N, embed_dim); ``causal=True`` is an RNN (``recurrent``)."""

    supports_causal = True

    def __init__(self, embed_dim, num_heads, feature_map="elu+1", causal=False, eps=1e-6, bias=True,
                 chunk_size=64):
        super().__init__(embed_dim, num_heads, bias)
        get_feature_map(feature_map)
        _check_positive("chunk_size", chunk_size)
        self.feature_map, self.causal, self.eps, self.chunk_size = feature_map, causal, _check_eps(eps), chunk_size

    def attend(self, q, k, v, kpm):
        return linear_attention(q, k, v, self.feature_map, self.causal, self.eps, kpm, self.chunk_size)

    def recurrent(self, x, state: LinearAttentionState | None = None):
        """Causal attention of x (B, T, E) after ``state``: ``(out (B, T, E), new state)``.

        The state (``s`` (B, H, Dh, Dh), ``z`` (B, H, Dh)) is all the model remembers of the past:
        chapter 11's recall probe reads it.
        """
        self._check(x, None, None)
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        o, state = linear_attention_chunk(state, q, k, v, self.feature_map, self.eps)
        return self.out_proj(o.transpose(1, 2).flatten(-2)), state


class EfficientAttention(_Base):
    """Shen et al. 2021 on (B, N, embed_dim); not causal."""

    def attend(self, q, k, v, kpm):
        return efficient_attention(q, k, v, kpm)


class PerformerAttention(_Base):
    """FAVOR+ on (B, N, embed_dim). The projection is a buffer drawn once from ``seed``: it is the
    same in training and evaluation (redrawing it changes the model); ``redraw(seed)`` on purpose."""

    supports_causal = True

    def __init__(self, embed_dim, num_heads, nb_features=None, kind="positive", causal=False, seed=0,
                 eps=1e-6, bias=True):
        super().__init__(embed_dim, num_heads, bias)
        if kind not in ("positive", "trig"):
            raise ValueError(f"kind must be 'positive' or 'trig', got {kind!r}")
        d = self.head_dim
        _check_positive("nb_features", nb_features, allow_none=True)  # 0 used to mean the default silently
        _check_positive("seed", seed, minimum=0)
        self.nb_features = nb_features or max(1, math.ceil(d * math.log(max(d, 2))))
        self.kind, self.causal, self.eps = kind, causal, _check_eps(eps)
        self.register_buffer("projection", orthogonal_random_features(self.nb_features, d, seed))

    def redraw(self, seed: int) -> None:
        self.projection.copy_(orthogonal_random_features(self.nb_features, self.head_dim, seed))

    def attend(self, q, k, v, kpm):
        return performer_attention(q, k, v, self.projection, kind=self.kind, causal=self.causal, eps=self.eps,
                                   key_padding_mask=kpm)


class LinformerAttention(_Base):
    """Wang et al. 2020 on (B, N, embed_dim), N <= seq_len (the first N rows of E, F are used).

    ``share``: ``"none"`` -- each head its own E_i, F_i (H, seq_len, k); ``"headwise"`` -- one E,
    one F for all heads; ``"kv"`` -- one matrix for E and F, for all heads (section 4, sharing).
    Layerwise sharing: pass the same ``nn.Parameter`` as ``shared=`` to several layers.
    """

    def __init__(self, embed_dim, num_heads, seq_len, k=64, share="headwise", shared=None, bias=True):
        super().__init__(embed_dim, num_heads, bias)
        _check_positive("seq_len", seq_len)
        _check_positive("k", k)
        if share not in ("none", "headwise", "kv"):
            raise ValueError(f"share must be 'none', 'headwise' or 'kv', got {share!r}")
        self.seq_len, self.k, self.share = seq_len, k, share
        shape = (num_heads, seq_len, k) if share == "none" else (seq_len, k)

        def new():
            return nn.Parameter(torch.randn(*shape) / math.sqrt(k))

        if shared is not None:
            if tuple(shared.shape) != shape:
                raise ValueError(f"shared has shape {_shape(shared)}, expected {shape}")
            self.E = shared
        else:
            self.E = new()
        self.F = self.E if share == "kv" else new()

    def attend(self, q, k, v, kpm):
        n = k.shape[-2]
        if n > self.seq_len:
            raise ValueError(f"sequence length {n} exceeds seq_len = {self.seq_len}")
        E, F_ = self.E[..., :n, :], self.F[..., :n, :]
        return linformer_attention(q, k, v, E, F_, key_padding_mask=kpm)


class NystromAttention(_Base):
    """Xiong et al. 2021 on (B, N, embed_dim). ``residual_conv_kernel``: the official code adds a
    depthwise convolution of V (kernel 33) to the output; off (None) by default, here only on request."""

    def __init__(self, embed_dim, num_heads, num_landmarks=32, pinv_iterations=6, exact_pinv=False,
                 residual_conv_kernel=None, bias=True):
        super().__init__(embed_dim, num_heads, bias)
        _check_positive("num_landmarks", num_landmarks)
        _check_positive("pinv_iterations", pinv_iterations, minimum=0)
        self.num_landmarks, self.pinv_iterations, self.exact_pinv = num_landmarks, pinv_iterations, exact_pinv
        self.conv = None
        if residual_conv_kernel is not None:
            _check_positive("residual_conv_kernel", residual_conv_kernel)
            self.conv = nn.Conv2d(num_heads, num_heads, (residual_conv_kernel, 1),
                                  padding=(residual_conv_kernel // 2, 0), groups=num_heads, bias=False)

    def attend(self, q, k, v, kpm):
        n = k.shape[-2]
        m = min(self.num_landmarks, max(n, 1))  # N = 0: nystrom_attention gives the empty output
        while n and -(-n // m) * m - n >= -(-n // m):  # the largest m <= num_landmarks with no empty segment
            m -= 1
        out = nystrom_attention(q, k, v, m, self.pinv_iterations, self.exact_pinv, key_padding_mask=kpm)
        if self.conv is not None:
            out = out + self.conv(v)
        return out


class CosFormerAttention(_Base):
    """Qin et al. 2022 on (B, N, embed_dim); causal needs ``max_len`` (the fixed M)."""

    supports_causal = True

    def __init__(self, embed_dim, num_heads, causal=False, max_len=None, eps=1e-6, bias=True):
        super().__init__(embed_dim, num_heads, bias)
        if causal and max_len is None:
            raise ValueError("causal CosFormerAttention needs max_len, got None")
        _check_positive("max_len", max_len, allow_none=True)  # 0 used to fail only at the first forward
        self.causal, self.max_len, self.eps = causal, max_len, _check_eps(eps)

    def attend(self, q, k, v, kpm):
        return cosformer_attention(q, k, v, self.causal, self.max_len, self.eps, kpm)


METHODS: dict[str, type[_Base]] = {
    "linear": LinearAttention,
    "efficient": EfficientAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
    "nystrom": NystromAttention,
    "cosformer": CosFormerAttention,
}
