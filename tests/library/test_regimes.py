"""Every attention function of attnkit.linear, attnkit.sparse and attnkit.lora, and every mechanism
of the factory, over input regimes, against an exact reference computed in float64.

Regimes: q, k entries of standard deviation 0.1, 1, 3 and 10; N = 0, 1 and 13 (a prime, and a
multiple of none of the blocks, windows (4) and chunks (8) used here); float16, bfloat16, float32,
float64. The inputs are drawn in float64 and rounded to the dtype; the reference sees the rounded
values in float64, so every difference is the mechanism's own arithmetic.

References: the explicit O(N^2) form (the kernel matrix, FAVOR+ in log space, the cosFormer
weights), SDPA's math written out with the pattern's mask, or the same math in float64 (Nystrom,
whose iteration has no closed form; the factory's modules, run in float64 with the same weights).

Tolerance: in half precision, 4x the error of the same-dtype torch operation on the same inputs
(SDPA for the functions; the factory's ``full`` module, same projections, for the factory's
mechanisms) plus 2 units in the last place of the output. In float32 and float64 SDPA is exact to
the dtype's rounding of its own scores; the mechanisms whose exponents are larger (FAVOR+'s
|x|^2 / 2, Linformer's projected keys) carry eps x (1 + their size) of rounding, so the slack is
8 eps (1 + E) with E = max|q| max|k| / sqrt(d), the largest exponent any of them can take.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import attnkit.linear as L
import attnkit.lora as LO
import attnkit.sparse as S
from attnkit.factory import AttentionConfig, AttentionFactory

f64 = torch.float64
SCALES = (0.1, 1.0, 3.0, 10.0)
LENGTHS = (1, 13)  # N = 0 is checked on its own
DTYPES = (torch.float16, torch.bfloat16, torch.float32, f64)
D = 8  # head size
M = 17  # random features


def _qkv(n: int, scale: float, dtype, seed: int = 0):
    """q, k (1, 2, n, D) of standard deviation ``scale``, v of 1, rounded to dtype."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 2, n, D, generator=g, dtype=f64) for _ in range(3))
    return (q * scale).to(dtype), (k * scale).to(dtype), v.to(dtype)


def _tolerance(dtype, torch_err: float, ref: torch.Tensor, v: torch.Tensor, exponent: float) -> float:
    fi = torch.finfo(dtype)
    size = max(ref.abs().max().item(), v.abs().max().item())
    if dtype.itemsize == 2:
        return 4 * torch_err + 2 * fi.eps * size
    return 4 * torch_err + 8 * fi.eps * (1 + exponent) * size


# ---------------------------------------------------------------- references, from the definitions


def _masked_softmax_ref(allowed):
    """softmax(q k^T / sqrt(d)) v over the keys ``allowed(n)`` (n, n) marks; a row with none gives 0."""
    def ref(q, k, v):
        s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        return torch.softmax(s.masked_fill(~allowed(q.shape[-2]), -math.inf), -1).nan_to_num(0.0) @ v
    return ref


def _causal(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def _kernel_ref(phi, causal, eps=1e-6):
    """Katharopoulos et al. eq. 4: A = phi(Q) phi(K)^T, out = A V / max(A 1, eps)."""
    def ref(q, k, v):
        a = phi(q) @ phi(k).transpose(-2, -1)
        if causal:
            a = a * _causal(a.shape[-1])
        return a @ v / a.sum(-1, keepdim=True).clamp_min(eps)
    return ref


def _favor_ref(w, causal):
    """FAVOR+ (positive features) in log space: log A_ij = logsumexp_f(lq_if + lk_jf)."""
    def ref(q, k, v):
        x, y = q * q.shape[-1] ** -0.25, k * k.shape[-1] ** -0.25
        lq = x @ w.T - (x * x).sum(-1, keepdim=True) / 2
        lk = y @ w.T - (y * y).sum(-1, keepdim=True) / 2
        la = torch.logsumexp(lq[..., :, None, :] + lk[..., None, :, :], -1)
        if causal:
            la = la.masked_fill(~_causal(la.shape[-1]), -math.inf)
        return torch.softmax(la, -1) @ v
    return ref


def _cosformer_ref(causal, max_len=None):
    """Qin et al. eq. 9: A_ij = relu(q_i).relu(k_j) cos(pi/2 (i - j) / M), out = A V / max(A 1, eps)."""
    def ref(q, k, v):
        n = q.shape[-2]
        i = torch.arange(1, n + 1, dtype=f64)
        a = (F.relu(q) @ F.relu(k).transpose(-2, -1)) * torch.cos(math.pi / 2 * (i[:, None] - i) / (max_len or n))
        if causal:
            a = a * _causal(n)
        return a @ v / a.sum(-1, keepdim=True).clamp_min(1e-6)
    return ref


def _global_ref(causal, b):
    """The global heads of LoRASelfAttention; causal: K_ij = sum_f softmax(q_i)_f d^-1/2 exp(k_jf) in log space."""
    def ref(q, k, v):
        n, d = q.shape[-2], q.shape[-1]
        if not causal:
            return (q.softmax(-1) * d ** -0.5) @ (k.softmax(-2).transpose(-2, -1) @ v)
        lk = torch.logsumexp((torch.log_softmax(q, -1) - 0.5 * math.log(d))[..., :, None, :] + k[..., None, :, :], -1)
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        lk = lk.masked_fill(~((j <= i) if b == 1 else (j < b * (i // b))), -math.inf)
        top = lk.amax(-1, keepdim=True).clamp_min(-1e300)  # a row with no key: 0 / eps
        w = torch.exp(lk - top)
        return w @ v / torch.maximum(w.sum(-1, keepdim=True), 1e-3 * torch.exp(-top))
    return ref


def _layout(n):
    """A block-lower-triangular layout of blocks of 4 for n tokens."""
    return torch.ones(-(-n // 4), -(-n // 4), dtype=torch.bool).tril()


PATTERNS = {"sliding_window": {"window": 4}, "strided": {"stride": 4}, "fixed": {"block": 4, "summary": 1},
            "longformer": {"window": 4, "global_idx": (0,)},
            "bigbird": {"block": 4, "num_window_blocks": 3, "num_global_blocks": 2, "num_random_blocks": 1},
            "block_sparse": {"block": 4}}


def _pattern_args(pattern, n):
    return {**PATTERNS[pattern], "layout": _layout(n)} if pattern == "block_sparse" else PATTERNS[pattern]


def _functions(dtype) -> dict:
    """name -> (f(q, k, v), its reference on float64 inputs); parameters rounded to dtype first."""
    g = torch.Generator().manual_seed(7)
    w = L.orthogonal_random_features(M, D, seed=3, dtype=f64).to(dtype)
    E, F_ = ((torch.randn(13, 5, generator=g, dtype=f64) / math.sqrt(5)).to(dtype) for _ in range(2))
    fns = {
        "linear.efficient_attention": (L.efficient_attention,
                                       lambda q, k, v: q.softmax(-1) @ (k.softmax(-2).transpose(-2, -1) @ v)),
        "linear.linformer_attention": (
            lambda q, k, v: L.linformer_attention(q, k, v, E[:q.shape[-2]], F_[:q.shape[-2]]),
            lambda q, k, v: _masked_softmax_ref(lambda n: torch.ones(n, 5, dtype=torch.bool))(
                q, E[:q.shape[-2]].to(f64).T @ k, F_[:q.shape[-2]].to(f64).T @ v)),
        "linear.nystrom_attention": (  # the same math in float64 (iterative pseudo-inverse, 6 steps)
            lambda q, k, v: L.nystrom_attention(q, k, v, min(4, q.shape[-2]) or 4),
            lambda q, k, v: L.nystrom_attention(q, k, v, min(4, q.shape[-2]) or 4)),
    }
    for causal in (False, True):
        c = " causal" if causal else ""
        mask = _causal if causal else (lambda n: torch.ones(n, n, dtype=torch.bool))
        fns["linear.softmax_attention" + c] = (lambda q, k, v, c=causal: L.softmax_attention(q, k, v, causal=c),
                                               _masked_softmax_ref(mask))
        fns["linear.linear_attention" + c] = (
            lambda q, k, v, c=causal: L.linear_attention(q, k, v, causal=c, chunk_size=8),
            _kernel_ref(L.elu_feature_map, causal))
        fns["linear.performer_attention" + c] = (
            lambda q, k, v, c=causal: L.performer_attention(q, k, v, w, causal=c, chunk_size=8),
            _favor_ref(w.to(f64), causal))
        fns["linear.cosformer_attention" + c] = (
            lambda q, k, v, c=causal: L.cosformer_attention(q, k, v, causal=c, max_len=16 if c else None, chunk_size=8),
            _cosformer_ref(causal, 16 if causal else None))
        fns["lora.local_bucket_attention" + c] = (
            lambda q, k, v, c=causal: LO.local_bucket_attention(q, k, v, 4, c),
            _masked_softmax_ref(lambda n, c=causal: LO.visible_keys(n, "local", c, window=4)))
        for b in (1, 4) if causal else (1,):
            fns[f"lora.global_linear_attention{c} b={b}"] = (
                lambda q, k, v, c=causal, b=b: LO.global_linear_attention(q, k, v, c, b), _global_ref(causal, b))
        for pattern in PATTERNS:
            fns[f"sparse.{pattern}{c}"] = (
                lambda q, k, v, p=pattern, c=causal: S.sparse_attention(q, k, v, p, c, **_pattern_args(p, q.shape[-2])),
                _masked_softmax_ref(lambda n, p=pattern, c=causal: S.pattern_mask(p, n, c, **_pattern_args(p, n))))
    return fns


FUNCTIONS = sorted(_functions(f64))


def _sdpa_error(q, k, v) -> float:
    """The error of torch's SDPA in the inputs' dtype, against SDPA on the same values in float64."""
    out = F.scaled_dot_product_attention(q, k, v).to(f64)
    return (out - F.scaled_dot_product_attention(q.to(f64), k.to(f64), v.to(f64))).abs().max().item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_match_their_reference_in_every_regime(name, dtype):
    fn, ref = _functions(dtype)[name]
    bad = []
    for scale in SCALES:
        for n in LENGTHS:
            q, k, v = _qkv(n, scale, dtype)
            q64, k64, v64 = (t.to(f64) for t in (q, k, v))
            out, want = fn(q, k, v), ref(q64, k64, v64)
            err = (out.to(f64) - want).abs().max().item()
            exponent = (q64.norm(dim=-1).max() * k64.norm(dim=-1).max()).item() / math.sqrt(D)
            tol = _tolerance(dtype, _sdpa_error(q, k, v), want, v64, exponent)
            if out.dtype != dtype or out.shape != want.shape or not err <= tol:
                bad.append(f"std {scale}, N {n}: error {err:.2e} > {tol:.2e} ({out.dtype}, {tuple(out.shape)})")
    assert not bad, bad


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_give_an_empty_output_at_n_0(name):
    fn, _ = _functions(torch.float32)[name]
    q, k, v = _qkv(0, 1.0, torch.float32)
    if name.startswith("sparse.longformer"):  # global_idx = (0,) names a token N = 0 does not have
        with pytest.raises(ValueError, match=r"global_idx must lie in \[0, 0\), got \[0\]"):
            fn(q, k, v)
        return
    assert fn(q, k, v).shape == (1, 2, 0, D)


# ---------------------------------------------------------------- the factory's mechanisms

OPTIONS = {"local": {"window_size": 4}, "longformer": {"window_size": 4}, "block_sparse": {"block_size": 4},
           "bigbird": {"block_size": 4, "num_random_blocks": 1}, "strided": {"stride": 4},
           "performer": {"nb_features": M}, "linformer": {"max_seq_len": 16, "proj_k": 5},
           "nystrom": {"num_landmarks": 4}, "cosformer": {"max_seq_len": 16}}


def _module(name: str, causal: bool):
    cfg = AttentionConfig(attention_type=name, d_model=16, n_heads=2, causal=causal, chunk_size=8,
                          **OPTIONS.get(name, {}))
    return AttentionFactory.create_attention(cfg).eval()


def _factory_cases():
    cases = []
    for name in AttentionFactory.available():
        for causal in (False, True):
            try:
                _module(name, causal)
            except ValueError as e:  # linformer, nystrom: no causal form; the recurrences: no other
                assert "is not possible" in str(e), e
                continue
            cases.append((name, causal))
    return cases


FACTORY = _factory_cases()


@pytest.mark.parametrize("name, causal", FACTORY, ids=[f"{n}{' causal' if c else ''}" for n, c in FACTORY])
def test_factory_mechanisms_match_themselves_in_float64_in_every_regime(name, causal):
    module, full = _module(name, causal), _module("full", causal)
    module64, full64 = copy.deepcopy(module).double(), copy.deepcopy(full).double()
    bad = []
    for dtype in DTYPES:
        mod, ful = copy.deepcopy(module).to(dtype), copy.deepcopy(full).to(dtype)
        for scale in SCALES:
            for n in (0, *LENGTHS):
                x = (torch.randn(1, n, 16, generator=torch.Generator().manual_seed(1), dtype=f64) * scale).to(dtype)
                if n == 0 and name == "longformer":  # its global token, the first, is not there at N = 0
                    with pytest.raises(ValueError, match=r"global_idx must lie in \[0, 0\), got \[0\]"):
                        mod(x)
                    continue
                with torch.no_grad():
                    out, want = mod(x), module64(x.to(f64))
                    full_err = (ful(x).to(f64) - full64(x.to(f64))).abs().max().item() if n else 0.0
                err = (out.to(f64) - want).abs().max().item() if n else 0.0
                tol = _tolerance(dtype, full_err, want, x.to(f64), 0.0) if n else 0.0
                if out.dtype != dtype or out.shape != (1, n, 16) or not err <= tol:
                    bad.append(f"{dtype}, std {scale}, N {n}: error {err:.2e} > {tol:.2e} ({out.dtype}, "
                               f"{tuple(out.shape)})")
    assert not bad, bad
