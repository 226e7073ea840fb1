"""Chapters 02 and 03's experiments as pure, seeded functions: dot-product variance, saturation, temperature.

Every function takes a ``seed`` and draws from its own ``torch.Generator``, so it never
touches (or depends on) the global random state: same arguments, same numbers.

Chapter 02: why divide by sqrt(d_k) (Vaswani et al. 2017, sec. 3.2.1, footnote 4).
If the entries of q and k are independent with mean 0 and variance sigma^2, then

    Var(q . k) = sum_i Var(q_i k_i) = d_k sigma^4,     Var(q . k / sqrt(d_k)) = sigma^4.

Large scores saturate the softmax (one weight near 1, the others near 0), and the softmax
Jacobian diag(p) - p p^T then vanishes: gradients stop flowing. Dividing by sqrt(d_k) keeps
the scores at unit variance whatever d_k is, as long as sigma = 1. When sigma != 1 the
fix breaks; QK-norm (normalise q and k before the dot product; Dehghani et al. 2023, "Scaling
Vision Transformers to 22 Billion Parameters", sec. 2.1) and a temperature restore control.

Chapter 03: entropy of attention rows and the effect of temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from attnkit.softmax import softmax, softmax_jacobian_norm

__all__ = [
    "sample_qk",
    "dot_products",
    "dot_product_variance",
    "dot_product_variance_theory",
    "dot_product_variance_se",
    "variance_sweep",
    "dot_product_histogram",
    "normal_pdf",
    "attention_rows",
    "entropy",
    "row_stats",
    "saturation",
    "saturation_sweep",
    "dk_snapshot",
    "temperature_sweep",
    "temperature_snapshot",
]

_CHUNK = 8192  # samples drawn per step, so memory stays small for large d_k


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not ok or math.isinf(value) or math.isnan(value):
        raise ValueError(
            f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}"
        )
    return value


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the last dim, no affine, no eps: each row gets mean 0 and norm sqrt(d)."""
    x = x - x.mean(-1, keepdim=True)
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


def _scale(d_k: int, scaled: bool, temperature: float) -> float:
    return (1.0 / math.sqrt(d_k) if scaled else 1.0) / temperature


def sample_qk(
    d_k: int, n: int, *, std: float = 1.0, qk_norm: bool = False, seed: int = 0, dtype=torch.float64
):
    """``n`` independent pairs (q, k), each (n, d_k), entries N(0, std^2); optionally QK-normed.

    QK-norm here is a LayerNorm without affine parameters applied to q and to k (as in
    ViT-22B), which gives every vector mean 0 and norm sqrt(d_k), whatever ``std`` was.
    """
    d_k = _check_int("d_k", d_k, 2 if qk_norm else 1)
    n = _check_int("n", n, 1)
    std = _check_positive("std", std)
    g = torch.Generator().manual_seed(seed)
    q = std * torch.randn(n, d_k, generator=g, dtype=dtype)  # (n, d_k)
    k = std * torch.randn(n, d_k, generator=g, dtype=dtype)  # (n, d_k)
    if qk_norm:
        q, k = _layer_norm(q), _layer_norm(k)
    return q, k


def dot_products(
    d_k: int,
    n_samples: int = 100_000,
    *,
    scaled: bool = False,
    std: float = 1.0,
    qk_norm: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """``n_samples`` independent scores s = (q . k) * scale / temperature, float64, shape (n_samples,).

    scale = 1/sqrt(d_k) if ``scaled`` else 1; q, k as in ``sample_qk``.
    """
    d_k = _check_int("d_k", d_k, 2 if qk_norm else 1)
    n_samples = _check_int("n_samples", n_samples, 2)
    temperature = _check_positive("temperature", temperature)
    c = _scale(d_k, scaled, temperature)
    out = []
    for i, start in enumerate(range(0, n_samples, _CHUNK)):
        n = min(_CHUNK, n_samples - start)
        # float32 draws are 3x faster; their rounding (~1e-7 relative) is far below sampling error
        q, k = sample_qk(
            d_k, n, std=std, qk_norm=qk_norm, seed=seed * 1_000_003 + i, dtype=torch.float32
        )
        out.append(torch.einsum("nd,nd->n", q, k).double() * c)  # (n,) one dot product per pair
    return torch.cat(out)


def dot_product_variance(d_k: int, n_samples: int = 100_000, **kwargs) -> float:
    """The sample variance (unbiased) of ``dot_products(d_k, n_samples, **kwargs)``."""
    return float(dot_products(d_k, n_samples, **kwargs).var(unbiased=True))


def _moments(d_k: int, scaled: bool, std: float, qk_norm: bool, temperature: float):
    """(variance, fourth central moment) of one score; its mean is 0."""
    c2 = (1.0 / d_k if scaled else 1.0) / temperature**2  # the squared scale, exactly
    if qk_norm:
        # q, k lie on a sphere of radius sqrt(d) in the (d-1)-dim subspace orthogonal to (1,...,1),
        # uniformly (a projected isotropic Gaussian), so q . k = d cos(theta) with, for m = d - 1,
        # E cos^2 = 1/m and E cos^4 = 3 / (m (m + 2)).
        m = d_k - 1
        return c2 * d_k**2 / m, c2**2 * d_k**4 * 3.0 / (m * (m + 2))
    # q . k = sum of d iid products y = q_i k_i, with E y^2 = std^4 and E y^4 = 9 std^8
    # (E z^4 = 3 for z ~ N(0,1)); the 4th cumulant of y is 6 std^8, so for the sum
    # mu_4 = d * 6 std^8 + 3 (d std^4)^2.
    s4 = std**4
    return c2 * d_k * s4, c2**2 * s4**2 * (6 * d_k + 3 * d_k**2)


def dot_product_variance_theory(
    d_k: int,
    *,
    scaled: bool = False,
    std: float = 1.0,
    qk_norm: bool = False,
    temperature: float = 1.0,
) -> float:
    """The closed form of Var(score): d_k std^4 (scaled: std^4), divided by temperature^2.

    With ``qk_norm`` it no longer depends on std: d_k^2 / (d_k - 1) (scaled: d_k / (d_k - 1)).
    """
    d_k = _check_int("d_k", d_k, 2 if qk_norm else 1)
    std = _check_positive("std", std)
    temperature = _check_positive("temperature", temperature)
    return _moments(d_k, scaled, std, qk_norm, temperature)[0]


def dot_product_variance_se(
    d_k: int,
    n_samples: int,
    *,
    scaled: bool = False,
    std: float = 1.0,
    qk_norm: bool = False,
    temperature: float = 1.0,
) -> float:
    """Standard error of the unbiased sample variance of ``n_samples`` scores.

    Var(s^2) = mu_4 / n - sigma^4 (n - 3) / (n (n - 1))  (exact for iid samples), with the
    closed-form moments of the score's distribution. For d_k = 64, n = 100,000: about 0.29
    unscaled (around 64) and 0.0046 scaled (around 1).
    """
    d_k = _check_int("d_k", d_k, 2 if qk_norm else 1)
    n = _check_int("n_samples", n_samples, 2)
    std = _check_positive("std", std)
    temperature = _check_positive("temperature", temperature)
    var, mu4 = _moments(d_k, scaled, std, qk_norm, temperature)
    return math.sqrt(mu4 / n - var**2 * (n - 3) / (n * (n - 1)))


def variance_sweep(d_ks: Sequence[int], n_samples: int = 20_000, **kwargs) -> dict:
    """Measured and theoretical Var(score) for each d_k: dict of lists d_k, measured, theory, se."""
    d_ks = [_check_int("d_ks[i]", d, 1) for d in d_ks]
    opts = {k: v for k, v in kwargs.items() if k != "seed"}
    return {
        "d_k": d_ks,
        "measured": [dot_product_variance(d, n_samples, **kwargs) for d in d_ks],
        "theory": [dot_product_variance_theory(d, **opts) for d in d_ks],
        "se": [dot_product_variance_se(d, n_samples, **opts) for d in d_ks],
    }


def normal_pdf(x: torch.Tensor, var: float) -> torch.Tensor:
    """The N(0, var) density at x."""
    return torch.exp(-0.5 * x * x / var) / math.sqrt(2 * math.pi * var)


def dot_product_histogram(d_k: int, n_samples: int = 20_000, bins: int = 60, **kwargs) -> dict:
    """A density histogram of the scores with the theoretical normal density beside it.

    Returns ``edges`` (bins + 1,), ``density`` (bins,), ``centers`` (bins,), ``pdf`` (bins,) the
    N(0, theory) density at the centers (the CLT limit), ``var`` measured and ``theory``.
    The range is +-4 theoretical standard deviations.
    """
    bins = _check_int("bins", bins, 1)
    s = dot_products(d_k, n_samples, **kwargs)
    opts = {k: v for k, v in kwargs.items() if k != "seed"}
    theory = dot_product_variance_theory(d_k, **opts)
    half = 4 * math.sqrt(theory)
    edges = torch.linspace(-half, half, bins + 1, dtype=torch.float64)
    counts = torch.histc(s, bins=bins, min=-half, max=half)
    density = counts / (n_samples * (edges[1] - edges[0]))
    centers = 0.5 * (edges[1:] + edges[:-1])
    return {
        "edges": edges,
        "density": density,
        "centers": centers,
        "pdf": normal_pdf(centers, theory),
        "var": float(s.var()),
        "theory": theory,
    }


def attention_rows(
    d_k: int,
    seq_len: int = 16,
    n_rows: int = 512,
    *,
    scaled: bool = True,
    std: float = 1.0,
    qk_norm: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """Softmax rows of random attention: ``n_rows`` queries, each against its own ``seq_len``
    random keys; returns weights (n_rows, seq_len), float64.

    Draws q (n_rows, 1, d_k), then k (n_rows, seq_len, d_k), float32 N(0, std^2) from
    ``torch.Generator().manual_seed(seed)``; scores are computed in float64."""
    seq_len = _check_int("seq_len", seq_len, 1)
    n_rows = _check_int("n_rows", n_rows, 1)
    d_k = _check_int("d_k", d_k, 2 if qk_norm else 1)
    std = _check_positive("std", std)
    temperature = _check_positive("temperature", temperature)
    g = torch.Generator().manual_seed(seed)
    q = std * torch.randn(n_rows, 1, d_k, generator=g)  # (n_rows, 1, d_k)
    k = std * torch.randn(n_rows, seq_len, d_k, generator=g)  # (n_rows, seq_len, d_k)
    if qk_norm:
        q, k = _layer_norm(q), _layer_norm(k)
    scores = (q * k).sum(-1).double() * _scale(d_k, scaled, temperature)  # (n_rows, seq_len)
    return softmax(scores, dim=-1)


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy -sum p log p (nats) along ``dim``, with 0 log 0 = 0.

    0 for a one-hot row, log n for a uniform row over n entries.
    """
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        raise TypeError(f"p must be a floating-point torch.Tensor, got {type(p).__name__}")
    plogp = torch.where(
        p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)
    )
    return 0.0 - plogp.sum(dim)  # 0.0 - x, not -x: a one-hot row gives 0.0, not -0.0


def row_stats(p: torch.Tensor) -> dict:
    """Averages over rows of p (..., n): largest weight, entropy (nats), Jacobian Frobenius norm."""
    return {
        "max_weight": float(p.amax(-1).mean()),
        "entropy": float(entropy(p).mean()),
        "jacobian_norm": float(softmax_jacobian_norm(p).mean()),
    }


def saturation(d_k: int, seq_len: int = 16, n_rows: int = 512, **kwargs) -> dict:
    """``row_stats`` of ``attention_rows(d_k, seq_len, n_rows, **kwargs)``."""
    return row_stats(attention_rows(d_k, seq_len, n_rows, **kwargs))


def saturation_sweep(d_ks: Sequence[int], seq_len: int = 16, n_rows: int = 512, **kwargs) -> dict:
    """``saturation`` for each d_k: dict of lists d_k, max_weight, entropy, jacobian_norm."""
    rows = [saturation(d, seq_len, n_rows, **kwargs) for d in d_ks]
    out = {"d_k": list(d_ks)}
    for key in ("max_weight", "entropy", "jacobian_norm"):
        out[key] = [r[key] for r in rows]
    return out


def dk_snapshot(
    d_k: int,
    scaled: bool,
    *,
    n_samples: int = 20_000,
    seq_len: int = 16,
    n_rows: int = 512,
    bins: int = 60,
    seed: int = 0,
) -> dict:
    """Everything the d_k explorer draws: the score histogram (``dot_product_histogram``), one
    example softmax ``row`` (seq_len,), its ``max_weight`` and ``jacobian_norm``, and the
    averages over ``n_rows`` rows (``mean_max_weight``, ``mean_jacobian_norm``)."""
    hist = dot_product_histogram(d_k, n_samples, bins, scaled=scaled, seed=seed)
    rows = attention_rows(d_k, seq_len, n_rows, scaled=scaled, seed=seed)  # (n_rows, seq_len)
    stats = row_stats(rows)
    row = rows[0]
    return {
        **hist,
        "d_k": d_k,
        "scaled": scaled,
        "row": row,
        "max_weight": float(row.max()),
        "jacobian_norm": float(softmax_jacobian_norm(row)),
        "mean_max_weight": stats["max_weight"],
        "mean_jacobian_norm": stats["jacobian_norm"],
    }


def temperature_sweep(scores: torch.Tensor, temperatures: Sequence[float]) -> dict:
    """softmax(scores / T) for each T: dict of lists temperature, probs, entropy, max_weight,
    jacobian_norm (Jacobian of softmax at its input scores / T)."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(
            f"scores must be a 1-D tensor (n,), got {tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}"
        )
    out = {"temperature": [], "probs": [], "entropy": [], "max_weight": [], "jacobian_norm": []}
    for T in temperatures:
        p = softmax(scores.double(), temperature=_check_positive("temperature", T, allow_zero=True))
        out["temperature"].append(float(T))
        out["probs"].append(p)
        out["entropy"].append(float(entropy(p)))
        out["max_weight"].append(float(p.max()))
        out["jacobian_norm"].append(float(softmax_jacobian_norm(p)))
    return out


def temperature_snapshot(scores: torch.Tensor, temperature: float) -> dict:
    """What the temperature explorer draws for one T: ``probs``, ``entropy`` (nats),
    ``max_entropy`` = log n, ``max_weight``, ``argmax`` and the T -> 0 limit ``hard``."""
    sweep = temperature_sweep(scores, [temperature])
    finite = int((~torch.isneginf(scores)).sum())
    return {
        "temperature": float(temperature),
        "probs": sweep["probs"][0],
        "entropy": sweep["entropy"][0],
        "max_entropy": math.log(finite) if finite else 0.0,
        "max_weight": sweep["max_weight"][0],
        "argmax": int(scores.argmax()),
        "hard": softmax(scores.double(), temperature=0.0),
    }
