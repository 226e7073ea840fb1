"""Positional encodings for attention (chapter 06): RoPE and its relatives.

Rotary position embedding (RoPE, Su et al. 2021, "RoFormer", arXiv:2104.09864) rotates each pair
of channels of a query or key by an angle proportional to its position:

    theta_i = base^(-2i/d),  i = 0 .. d/2 - 1                              (RoFormer eq. 15)
    [x'_a]   [cos(m theta_i)  -sin(m theta_i)] [x_a]
    [x'_b] = [sin(m theta_i)   cos(m theta_i)] [x_b]                       (RoFormer eq. 13-14)

so that <R_m q, R_n k> = <q, R_{n-m} k> depends only on the offset n - m (RoFormer eq. 16).

Two ways to pair the channels are in use, and both are here:

* interleaved (RoFormer, GPT-J, Meta's original LLaMA code): pair i is channels (2i, 2i + 1);
* half-split (GPT-NeoX, HF LLaMA ``rotate_half``): pair i is channels (i, i + d/2).

They differ only by a fixed permutation of channels (``interleaved_to_half_split``), so a model
trained in one convention runs in the other after permuting the rows of W_q and W_k
(``permute_qk_weight``).

Also here: RoPE scaling for longer contexts (position interpolation, NTK-aware, YaRN), the
sinusoidal absolute encoding (Vaswani et al. 2017, sec. 3.5), ALiBi (Press et al. 2022) and
xPos (Sun et al. 2022), and ``StandardAttentionWithRoPE``, multi-head attention with RoPE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import attnkit.core
from attnkit import validate

__all__ = [
    "rope_inv_freq",
    "rope_angles",
    "generate_rope_embeddings",
    "rope_embeddings_from_inv_freq",
    "rotate_pair",
    "apply_rope",
    "interleaved_to_half_split",
    "half_split_to_interleaved",
    "permute_qk_weight",
    "rope_relative_scores",
    "rope_decay_bound",
    "rope_pair_trajectory",
    "rope_score_curve",
    "linear_scaled_inv_freq",
    "ntk_scaled_base",
    "ntk_scaled_inv_freq",
    "yarn_ramp",
    "yarn_correction_dim",
    "yarn_correction_range",
    "yarn_inv_freq",
    "yarn_attention_factor",
    "scaled_rope_embeddings",
    "sinusoidal_position_encoding",
    "alibi_slopes",
    "alibi_bias",
    "xpos_scale",
    "apply_xpos",
    "StandardAttentionWithRoPE",
]


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_head_dim(head_dim, name: str = "head_dim") -> None:
    validate.int_at_least(name, head_dim)
    if head_dim % 2:
        raise ValueError(
            f"{name} must be a positive even number (RoPE rotates pairs of channels), got {head_dim}"
        )


def _check_any_tensor(name: str, x) -> None:
    """A tensor of any dtype (a reorder of channels needs no floating point)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _check_positive(value, name: str) -> float:
    return validate.real_number(name, value, 0.0, low_open=True)


def _check_nonneg_int(value, name: str) -> int:
    return validate.int_at_least(name, value, 0)


def _check_vector(name: str, x) -> torch.Tensor:
    return validate.tensor(name, x, 1, "1-D")


# --------------------------------------------------------------------------------------------
# Frequencies, angles, cos/sin tables
# --------------------------------------------------------------------------------------------


def rope_inv_freq(head_dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i = 0 .. d/2 - 1 (RoFormer eq. 15), float64, shape (d/2,)."""
    _check_head_dim(head_dim)
    _check_positive(base, "base")
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=device)  # (d/2,)
    return base ** (-2.0 * i / head_dim)  # (d/2,)


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """m * theta_i for every position m and frequency theta_i: (P,) x (d/2,) -> (P, d/2), float64."""
    for name, x in (("positions", positions), ("inv_freq", inv_freq)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a 1-D torch.Tensor, got {type(x).__name__}")
        if x.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {_shape(x)}")
    if positions.device != inv_freq.device:
        raise ValueError(f"inv_freq is on {inv_freq.device}, expected positions's device {positions.device}")
    return positions.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]


def rope_embeddings_from_inv_freq(
    seq_len: int, inv_freq: torch.Tensor, attention_factor: float = 1.0, device=None,
    dtype: torch.dtype = torch.float32,
):
    """(cos, sin) tables of shape (seq_len, d/2) for positions 0 .. seq_len - 1 and any frequencies.

    Angles are computed in float64 (m * theta loses digits in float32 for large m) and the
    tables are cast to ``dtype``. ``attention_factor`` multiplies both tables (YaRN's
    sqrt(1/t): applied to q and k it multiplies every score by 1/t).
    """
    _check_nonneg_int(seq_len, "seq_len")
    _check_positive(attention_factor, "attention_factor")
    _check_vector("inv_freq", inv_freq)
    device = inv_freq.device if device is None else device
    pos = torch.arange(seq_len, dtype=torch.float64, device=device)  # (L,)
    ang = rope_angles(pos, inv_freq.to(device))  # (L, d/2)
    cos = (torch.cos(ang) * attention_factor).to(dtype)
    sin = (torch.sin(ang) * attention_factor).to(dtype)
    return cos, sin


def generate_rope_embeddings(seq_len: int, head_dim: int, base: float = 10000.0, device=None,
                             dtype: torch.dtype = torch.float32):
    """(cos, sin), each (seq_len, head_dim // 2): cos(m theta_i) and sin(m theta_i)."""
    _check_nonneg_int(seq_len, "seq_len")
    inv_freq = rope_inv_freq(head_dim, base, device=device)  # (d/2,)
    return rope_embeddings_from_inv_freq(seq_len, inv_freq, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Applying the rotation
# --------------------------------------------------------------------------------------------


def rotate_pair(x: float, y: float, angle: float) -> tuple[float, float]:
    """Rotate the 2-D point (x, y) counter-clockwise by ``angle`` radians (RoFormer eq. 13)."""
    x, y, angle = (validate.real_number(n, v) for n, v in (("x", x), ("y", y), ("angle", angle)))
    c, s = math.cos(angle), math.sin(angle)
    return x * c - y * s, x * s + y * c


def _check_tables(x, cos, sin, offset, name="x", offset_name="offset"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., seq_len, head_dim), got {_shape(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    _check_head_dim(x.shape[-1], name=f"x's last dim (head_dim; x has shape {_shape(x)})")
    for table, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{table} must be a torch.Tensor, got {type(t).__name__}")
    validate.same_dtype_device(cos=cos, sin=sin)
    if cos.shape != sin.shape:
        raise ValueError(f"cos has shape {_shape(cos)} but sin has shape {_shape(sin)}; they must match")
    half = x.shape[-1] // 2
    if cos.dim() != 2 or cos.shape[-1] != half:
        raise ValueError(
            f"cos and sin must have shape (num_positions, head_dim // 2) = (*, {half}) for x with "
            f"shape {_shape(x)}, got {_shape(cos)}"
        )
    _check_nonneg_int(offset, offset_name)
    need = offset + x.shape[-2]
    if cos.shape[0] < need:
        raise ValueError(
            f"cos/sin cover {cos.shape[0]} positions, but x has seq_len {x.shape[-2]} at offset "
            f"{offset}, which needs positions 0 .. {need - 1} ({need} rows); generate the tables "
            f"with seq_len >= {need}"
        )
    if cos.device != x.device:
        raise ValueError(f"cos/sin are on {cos.device}, expected {name}'s device {x.device}")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = True,
               offset: int = 0) -> torch.Tensor:
    """Rotate each channel pair of ``x`` (..., L, d) by the angle of its position (RoFormer eq. 34).

    Token t of x sits at position ``offset + t`` (decoding with a KV cache: the new token's
    position is the number of cached tokens). ``interleaved=True`` pairs channels (2i, 2i + 1)
    as RoFormer; ``False`` pairs (i, i + d/2) as GPT-NeoX / HF LLaMA. cos/sin: (>= offset + L, d/2).
    """
    _check_tables(x, cos, sin, offset)
    L = x.shape[-2]
    return _rotate(x, cos[offset:offset + L], sin[offset:offset + L], interleaved)


def _rotate(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """The rotation itself, no checks: x (..., d), c and s broadcastable to (..., d/2)."""
    c, s = c.to(x.dtype), s.to(x.dtype)
    if interleaved:
        if x.dtype in (torch.float32, torch.float64):
            # RoFormer eq. 12: pair (a, b) as a + ib, rotated by multiplying with e^{i m theta}.
            # One complex multiply, no copies of a and b: the fast path (as in Meta's LLaMA).
            try:
                xc = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # (..., d/2), complex
            except RuntimeError:  # strides that a complex view cannot have: copy once
                xc = torch.view_as_complex(x.contiguous().unflatten(-1, (-1, 2)))
            return torch.view_as_real(xc * torch.complex(c, s)).flatten(-2)  # (..., d)
        x2 = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
        a, b = x2[..., 0], x2[..., 1]  # (..., d/2) each
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)  # (..., d)
    a, b = x.chunk(2, dim=-1)  # (..., d/2) each: pair i is (i, i + d/2)
    return torch.cat((a * c - b * s, a * s + b * c), dim=-1)  # (..., d)


def interleaved_to_half_split(x: torch.Tensor) -> torch.Tensor:
    """Reorder channels (x0, x1, x2, x3, ...) -> (x0, x2, ..., x1, x3, ...) along the last dim.

    The pair (2i, 2i+1) of the interleaved layout becomes the pair (i, i + d/2) of the half-split
    layout, so ``apply_rope(P x, interleaved=False) == P apply_rope(x, interleaved=True)``.
    A reorder: any dtype (chapter 06 reorders channel indices, ``torch.arange(8)``).
    """
    _check_any_tensor("x", x)
    _check_head_dim(x.shape[-1], name=f"the last dim of x with shape {_shape(x)}")
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


def half_split_to_interleaved(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``interleaved_to_half_split``."""
    _check_any_tensor("x", x)
    _check_head_dim(x.shape[-1], name=f"the last dim of x with shape {_shape(x)}")
    a, b = x.chunk(2, dim=-1)  # (..., d/2) each
    return torch.stack((a, b), dim=-1).flatten(-2)


def permute_qk_weight(weight: torch.Tensor, num_heads: int, to: str = "half_split") -> torch.Tensor:
    """Permute the output rows of a q or k projection weight (H * d, in) inside every head.

    ``to="half_split"`` turns a model trained with interleaved RoPE into one that gives the same
    scores with half-split RoPE (what HF's LLaMA conversion script does); ``to="interleaved"``
    undoes it. A bias (H * d,) can be permuted the same way.
    """
    validate.choice("to", to, ("half_split", "interleaved"))
    validate.tensor("weight", weight)
    validate.int_at_least("num_heads", num_heads)
    if weight.dim() not in (1, 2) or weight.shape[0] % num_heads:
        raise ValueError(
            f"weight must have shape (num_heads * head_dim, in_features) or (num_heads * head_dim,) "
            f"with num_heads={num_heads}, got {_shape(weight)}"
        )
    w = weight.unflatten(0, (num_heads, -1)).movedim(1, -1)  # (H, [in], d)
    w = interleaved_to_half_split(w) if to == "half_split" else half_split_to_interleaved(w)
    return w.movedim(-1, 1).flatten(0, 1)  # (H * d, [in])


# --------------------------------------------------------------------------------------------
# Relative position and long-range decay
# --------------------------------------------------------------------------------------------


def rope_relative_scores(q: torch.Tensor, k: torch.Tensor, distances, base: float = 10000.0,
                         inv_freq: torch.Tensor | None = None) -> torch.Tensor:
    """<R_m q, R_n k> as a function of the distance r = m - n, for q, k of shape (d,).

    By RoFormer eq. 16 it equals sum_i Re[(q_a + i q_b)(k_a - i k_b) e^{i r theta_i}] over the
    interleaved pairs: a closed form, with no positions beyond r needed. Returns (len(distances),).
    """
    _check_vector("q", q)
    _check_vector("k", k)
    _check_head_dim(q.shape[0], name=f"q's length (head_dim; q has shape {_shape(q)})")
    if q.shape != k.shape:
        raise ValueError(f"q and k must be 1-D of the same shape (head_dim,), got {_shape(q)} and {_shape(k)}")
    d = q.shape[0]
    inv_freq = rope_inv_freq(d, base, device=q.device) if inv_freq is None else inv_freq.to(q.device)
    r = torch.as_tensor(distances, dtype=torch.float64, device=q.device)  # (R,)
    ang = r[:, None] * inv_freq.to(torch.float64)[None, :]  # (R, d/2)
    qa, qb = q.double()[0::2], q.double()[1::2]  # (d/2,)
    ka, kb = k.double()[0::2], k.double()[1::2]
    dot = qa * ka + qb * kb  # the pair's dot product: the cos term
    cross = qa * kb - qb * ka  # the pair's 2-D cross product: the sin term
    return (dot * torch.cos(ang) + cross * torch.sin(ang)).sum(-1)  # (R,)


def rope_decay_bound(distances, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """RoFormer's long-term decay (sec. 3.4.3): (1 / (d/2)) * sum_{j=1}^{d/2} |S_j|,
    with S_j = sum_{k=0}^{j-1} e^{i r theta_k}. Bounds |<R_m q, R_n k>| / max|h_i - h_{i+1}|
    up to a constant factor; it shrinks with the distance r. Returns (len(distances),), float64.
    """
    theta = rope_inv_freq(head_dim, base)  # (d/2,)
    r = _distances(distances)  # (R,)
    ang = r[:, None] * theta[None, :]  # (R, d/2)
    re, im = torch.cos(ang).cumsum(-1), torch.sin(ang).cumsum(-1)  # S_j for j = 1 .. d/2
    return torch.sqrt(re ** 2 + im ** 2).mean(-1)  # (R,)


def _distances(distances) -> torch.Tensor:
    try:
        return torch.as_tensor(distances, dtype=torch.float64).flatten()
    except (TypeError, ValueError):
        raise TypeError(f"distances must be numbers (a list or a tensor), got {distances!r}") from None


def rope_pair_trajectory(x: float, y: float, theta: float, positions) -> torch.Tensor:
    """Where one channel pair (x, y) goes at each position m: rotated by m * theta. (P, 2), float64."""
    x, y, theta = (validate.real_number(n, v) for n, v in (("x", x), ("y", y), ("theta", theta)))
    m = torch.as_tensor(positions, dtype=torch.float64)  # (P,)
    c, s = torch.cos(m * theta), torch.sin(m * theta)
    return torch.stack((x * c - y * s, x * s + y * c), dim=-1)  # (P, 2)


def rope_score_curve(distances, head_dim: int, base: float = 10000.0,
                     inv_freq: torch.Tensor | None = None) -> torch.Tensor:
    """The score of q = k = (1, ..., 1) at distance r, divided by its value at r = 0:
    (1 / (d/2)) sum_i cos(r theta_i). The usual picture of RoPE's long-range decay. (R,), float64."""
    theta = rope_inv_freq(head_dim, base) if inv_freq is None else inv_freq.to(torch.float64)
    r = torch.as_tensor(distances, dtype=torch.float64)  # (R,)
    return torch.cos(r[:, None] * theta[None, :]).mean(-1)  # (R,)


# --------------------------------------------------------------------------------------------
# RoPE scaling for longer contexts: each is a function of the frequencies
# --------------------------------------------------------------------------------------------


def linear_scaled_inv_freq(inv_freq: torch.Tensor, scale: float) -> torch.Tensor:
    """Position interpolation (Chen et al. 2023, arXiv:2306.15595, sec. 2.3):
    f'(x, m) = f(x, m L / L'), i.e. every position is divided by s = L'/L, which is the same as
    dividing every frequency theta_i by s."""
    _check_vector("inv_freq", inv_freq)
    _check_positive(scale, "scale")
    return inv_freq / scale


def ntk_scaled_base(base: float, head_dim: int, scale: float) -> float:
    """NTK-aware scaled RoPE (bloc97, 2023; YaRN paper sec. 3.1): b' = b * s^(d / (d - 2)).

    Chosen so the lowest frequency theta_{d/2-1} = b^(-(d-2)/d) is divided by exactly s (it is
    interpolated) while the highest, theta_0 = 1, is untouched (it is extrapolated)."""
    _check_head_dim(head_dim)
    _check_positive(base, "base")
    _check_positive(scale, "scale")
    if head_dim < 4:
        raise ValueError(f"head_dim must be >= 4 for NTK-aware scaling (d / (d - 2)), got {head_dim}")
    return base * scale ** (head_dim / (head_dim - 2))


def ntk_scaled_inv_freq(head_dim: int, base: float, scale: float, device=None) -> torch.Tensor:
    """theta'_i = b'^(-2i/d) with the NTK-aware base b' = b s^(d/(d-2)); float64, (d/2,)."""
    return rope_inv_freq(head_dim, ntk_scaled_base(base, head_dim, scale), device=device)


def yarn_ramp(r: torch.Tensor, alpha: float = 1.0, beta: float = 32.0) -> torch.Tensor:
    """The paper's ramp gamma(r) (Peng et al. 2023, arXiv:2309.00071, sec. 3.2, "NTK-by-parts"):
    0 if r < alpha, 1 if r > beta, (r - alpha) / (beta - alpha) in between, r = L / lambda."""
    validate.tensor("r", r)
    _check_ramp(alpha, beta)
    return ((r - alpha) / (beta - alpha)).clamp(0.0, 1.0)


def _check_ramp(alpha, beta) -> None:
    validate.real_number("alpha", alpha)
    validate.real_number("beta", beta)
    if not beta > alpha:
        raise ValueError(f"beta must be > alpha, got alpha={alpha}, beta={beta}")


def yarn_correction_dim(rotations: float, head_dim: int, base: float, original_max_position: int) -> float:
    """The (fractional) pair index i at which pair i turns ``rotations`` times within L positions.

    Solves L theta_i / (2 pi) = rotations for theta_i = base^(-2i/d):
    i = d ln(L / (2 pi rotations)) / (2 ln base)."""
    _check_head_dim(head_dim)
    validate.int_at_least("original_max_position", original_max_position)
    _check_positive(rotations, "rotations")
    validate.real_number("base", base, 1.0, low_open=True)
    return head_dim * math.log(original_max_position / (rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_correction_range(head_dim: int, base: float, original_max_position: int, alpha: float = 1.0,
                          beta: float = 32.0, truncate: bool = True) -> tuple[float, float]:
    """(low, high): the pair indices between which the YaRN reference code ramps.

    low is where a pair turns beta times within L (rounded down), high where it turns alpha times
    (rounded up); ``truncate=False`` keeps them fractional. Clipped to [0, d - 1] as in the
    reference code (jquesnelle/yarn, and transformers' ``rope_type: yarn``)."""
    _check_ramp(alpha, beta)
    low = yarn_correction_dim(beta, head_dim, base, original_max_position)
    high = yarn_correction_dim(alpha, head_dim, base, original_max_position)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, head_dim - 1)


def yarn_inv_freq(head_dim: int, base: float, scale: float, original_max_position: int,
                  alpha: float = 1.0, beta: float = 32.0, device=None, ramp: str = "reference",
                  truncate: bool = True) -> torch.Tensor:
    """YaRN / NTK-by-parts frequencies (Peng et al. 2023, sec. 3.2), float64, (d/2,):

        h(theta_i) = (1 - gamma_i) theta_i / s + gamma_i theta_i

    Pairs that turn many times within the trained length L keep their frequency (gamma = 1,
    extrapolation); pairs that turn less than once are interpolated like PI (gamma = 0); a linear
    ramp in between. alpha = 1, beta = 32 are the paper's values for LLaMA (transformers'
    ``beta_slow``, ``beta_fast``). Two ramps exist:

    - ``ramp="reference"`` (default): what the YaRN authors' code, transformers'
      ``rope_type: yarn``, vLLM and released YaRN checkpoints compute: gamma falls linearly in the
      pair index i, from 1 at ``low`` to 0 at ``high`` (``yarn_correction_range``).
    - ``ramp="paper"``: the paper's formula, gamma = yarn_ramp(r_i) linear in r_i = L / lambda_i,
      lambda_i = 2 pi / theta_i. Since r_i falls exponentially in i, the two differ in between.
    """
    _check_positive(scale, "scale")
    validate.int_at_least("original_max_position", original_max_position)
    validate.choice("ramp", ramp, ("reference", "paper"))
    theta = rope_inv_freq(head_dim, base, device=device)  # (d/2,)
    if ramp == "paper":
        r = original_max_position * theta / (2 * math.pi)  # L / lambda_i, (d/2,)
        gamma = yarn_ramp(r, alpha, beta)  # (d/2,)
    elif ramp == "reference":
        low, high = yarn_correction_range(head_dim, base, original_max_position, alpha, beta, truncate)
        if low == high:
            high += 0.001  # as the reference code: no division by zero
        i = torch.arange(head_dim // 2, dtype=torch.float64, device=device)
        gamma = 1 - ((i - low) / (high - low)).clamp(0.0, 1.0)  # (d/2,)
    else:
        raise ValueError(f"ramp must be 'reference' or 'paper', got {ramp!r}")
    return (1 - gamma) * theta / scale + gamma * theta


def yarn_attention_factor(scale: float) -> float:
    """YaRN's temperature (Peng et al. 2023, sec. 3.4): sqrt(1/t) = 0.1 ln(s) + 1 for s > 1, else 1.

    Multiply cos and sin by it: the scores q.k then get the factor 1/t."""
    _check_positive(scale, "scale")
    return 0.1 * math.log(scale) + 1.0 if scale > 1 else 1.0


def scaled_rope_embeddings(seq_len: int, head_dim: int, base: float = 10000.0, method: str = "none",
                           scale: float = 1.0, original_max_position: int | None = None,
                           alpha: float = 1.0, beta: float = 32.0, device=None,
                           dtype: torch.dtype = torch.float32, ramp: str = "reference"):
    """(cos, sin), each (seq_len, d/2), for ``method`` in 'none', 'linear' (PI), 'ntk', 'yarn'.

    'yarn' needs ``original_max_position`` (the trained context length L) and multiplies the
    tables by ``yarn_attention_factor(scale)``; ``ramp`` chooses YaRN's ramp (``yarn_inv_freq``)."""
    theta = rope_inv_freq(head_dim, base, device=device)
    factor = 1.0
    if method == "none":
        inv_freq = theta
    elif method == "linear":
        inv_freq = linear_scaled_inv_freq(theta, scale)
    elif method == "ntk":
        inv_freq = ntk_scaled_inv_freq(head_dim, base, scale, device=device)
    elif method == "yarn":
        if original_max_position is None:
            raise ValueError("method='yarn' needs original_max_position (the trained context length), got None")
        inv_freq = yarn_inv_freq(head_dim, base, scale, original_max_position, alpha, beta, device=device,
                                 ramp=ramp)
        factor = yarn_attention_factor(scale)
    else:
        raise ValueError(f"method must be one of 'none', 'linear', 'ntk', 'yarn', got {method!r}")
    return rope_embeddings_from_inv_freq(seq_len, inv_freq, attention_factor=factor, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Sinusoidal absolute encoding, ALiBi, xPos
# --------------------------------------------------------------------------------------------


def sinusoidal_position_encoding(seq_len: int, d_model: int, base: float = 10000.0, device=None,
                                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Vaswani et al. 2017, sec. 3.5: PE[m, 2i] = sin(m / base^(2i/d)), PE[m, 2i+1] = cos(...).

    Shape (seq_len, d_model); added to the token embeddings before the first layer."""
    _check_nonneg_int(seq_len, "seq_len")
    _check_head_dim(d_model, name="d_model")
    ang = rope_angles(torch.arange(seq_len, device=device), rope_inv_freq(d_model, base, device=device))
    return torch.stack((torch.sin(ang), torch.cos(ang)), dim=-1).flatten(-2).to(dtype)  # (L, d)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al. 2022, arXiv:2108.12409, sec. 3), float32, (num_heads,).

    For n a power of two: the geometric sequence starting at 2^(-8/n) with that same ratio
    (8 heads: 1/2, 1/4, ..., 1/256). Otherwise, with n the largest power of two below num_heads:
    the n slopes for n heads, then every other slope of the 2n-head sequence (its odd terms),
    as many as needed -- the rule of the paper's reference code."""
    validate.int_at_least("num_heads", num_heads)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    n = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(n)
    if n < num_heads:
        slopes += power_of_two(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes, q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """ALiBi's bias, added to the scores: -m_h * |i + (k_len - q_len) - j|, shape (H, q_len, k_len).

    ``slopes`` is a head count or a (H,) tensor of slopes. Queries are the last q_len of k_len
    positions (as in decoding and in FlashAttention's alibi); under a causal mask this is the
    paper's bias -m (i - j) (Press et al. 2022, fig. 3)."""
    if isinstance(slopes, int) and not isinstance(slopes, bool):
        slopes = alibi_slopes(slopes)
    if not isinstance(slopes, torch.Tensor):
        raise TypeError(f"slopes must be an int head count or a 1-D tensor (num_heads,), got {slopes!r}")
    _check_vector("slopes", slopes)
    _check_nonneg_int(q_len, "q_len")
    k_len = q_len if k_len is None else k_len
    _check_nonneg_int(k_len, "k_len")
    device = slopes.device if device is None else device
    i = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)  # (Lq, 1) query positions
    j = torch.arange(k_len, device=device)[None, :]  # (1, Lk) key positions
    dist = (i - j).abs().to(slopes.dtype)  # (Lq, Lk)
    return -slopes.to(device)[:, None, None] * dist  # (H, Lq, Lk)


def xpos_scale(seq_len: int, head_dim: int, gamma: float = 0.4, scale_base: float = 512.0,
               offset: int = 0, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """xPos (Sun et al. 2022, arXiv:2212.10554, sec. 3.2): zeta_i = (2i/d + gamma) / (1 + gamma),
    and the query at position n is scaled by zeta_i^(n / scale_base) on pair i (the key by the
    inverse), so a score gets zeta^((n - m)/scale_base): it decays with distance. (L, d/2)."""
    _check_head_dim(head_dim)
    _check_nonneg_int(seq_len, "seq_len")
    _check_nonneg_int(offset, "offset")
    validate.real_number("gamma", gamma, 0.0, low_open=True)
    _check_positive(scale_base, "scale_base")
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=device)  # (d/2,)
    zeta = (2 * i / head_dim + gamma) / (1 + gamma)  # (d/2,)
    n = torch.arange(offset, offset + seq_len, dtype=torch.float64, device=device)  # (L,)
    return (zeta[None, :] ** (n[:, None] / scale_base)).to(dtype)  # (L, d/2)


def apply_xpos(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               gamma: float = 0.4, scale_base: float = 512.0, interleaved: bool = True,
               q_offset: int = 0, k_offset: int = 0):
    """xPos: RoPE whose rotation of pair i is scaled by zeta_i^(n/B) on queries and
    zeta_i^(-m/B) on keys. q (..., Lq, d), k (..., Lk, d) -> rotated and scaled (q, k).

    For long sequences, choose offsets near the middle of the range (as torchscale does) to keep
    zeta^(+-n/B) inside float range; scores are unchanged by a common shift of both offsets."""
    _check_tables(q, cos, sin, q_offset, "q", "q_offset")
    _check_tables(k, cos, sin, k_offset, "k", "k_offset")
    validate.same_dtype_device(q=q, k=k)
    d = q.shape[-1]
    sq = xpos_scale(q.shape[-2], d, gamma, scale_base, q_offset, device=q.device, dtype=torch.float64)
    sk = xpos_scale(k.shape[-2], d, gamma, scale_base, k_offset, device=k.device, dtype=torch.float64)
    cq, snq = cos[q_offset:q_offset + q.shape[-2]], sin[q_offset:q_offset + q.shape[-2]]
    ck, snk = cos[k_offset:k_offset + k.shape[-2]], sin[k_offset:k_offset + k.shape[-2]]
    q_rot = apply_rope(q, (cq * sq).to(cos.dtype), (snq * sq).to(cos.dtype), interleaved)
    k_rot = apply_rope(k, (ck / sk).to(cos.dtype), (snk / sk).to(cos.dtype), interleaved)
    return q_rot, k_rot


# --------------------------------------------------------------------------------------------
# The attention module
# --------------------------------------------------------------------------------------------


class StandardAttentionWithRoPE(nn.Module):
    """Multi-head attention with RoPE on queries and keys; inputs and outputs (B, N, D).

    forward(query (B, Nq, D), key (B, Nk, D), value (B, Nk, D), rope_embeddings=(cos, sin),
    attn_mask=None, return_attn=False) -> out (B, Nq, D), or (out, weights (B, H, Nq, Nk)).

    ``attn_mask`` broadcasts to (B, H, Nq, Nk): a float mask is added to the scores (-inf
    blocks), a bool mask is True where a query may attend. Query t sits at position
    ``q_offset + t`` and key t at ``k_offset + t`` (for decoding: q_offset = number of cached
    tokens). Without ``return_attn`` it runs torch's fused ``scaled_dot_product_attention``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 interleaved: bool = True):
        super().__init__()
        validate.int_at_least("embed_dim", embed_dim)
        validate.int_at_least("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        _check_head_dim(embed_dim // num_heads, name=f"head_dim = embed_dim // num_heads = "
                                                     f"{embed_dim} // {num_heads}")
        validate.probability("dropout", dropout)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout, self.interleaved = dropout, interleaved
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, query, key, value, rope_embeddings, attn_mask=None, return_attn: bool = False,
                q_offset: int = 0, k_offset: int = 0):
        for name, x in (("query", query), ("key", key), ("value", value)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() != 3 or x.shape[-1] != self.embed_dim:
                raise ValueError(f"{name} must have shape (B, N, embed_dim={self.embed_dim}), got {_shape(x)}")
            validate.module_accepts(self, name, x)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(
                f"key {_shape(key)} and value {_shape(value)} must share (B, Nk), and query "
                f"{_shape(query)} the batch size B"
            )
        if not (isinstance(rope_embeddings, (tuple, list)) and len(rope_embeddings) == 2):
            raise TypeError("rope_embeddings must be a (cos, sin) pair from generate_rope_embeddings")
        cos, sin = rope_embeddings
        B, Nq, _ = query.shape
        Nk = key.shape[1]
        _check_nonneg_int(q_offset, "q_offset")
        _check_nonneg_int(k_offset, "k_offset")
        q = apply_rope(self._heads(self.q_proj(query)), cos, sin, self.interleaved, q_offset)  # (B, H, Nq, Dh)
        k = apply_rope(self._heads(self.k_proj(key)), cos, sin, self.interleaved, k_offset)  # (B, H, Nk, Dh)
        v = self._heads(self.v_proj(value))  # (B, H, Nk, Dh)
        if attn_mask is not None:
            validate.attention_mask("attn_mask", attn_mask, (B, self.num_heads, Nq, Nk), q.device, "(B, H, Nq, Nk)")
            if attn_mask.is_floating_point():
                attn_mask = attn_mask.to(q.dtype)
        p = self.dropout if self.training else 0.0
        if return_attn:
            out, weights = attnkit.core.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, return_weights=True)  # (B, H, Nq, Dh)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).flatten(2))  # (B, Nq, D)
        return (out, weights) if return_attn else out
