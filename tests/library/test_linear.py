"""attnkit.linear against explicit quadratic forms, PyTorch's SDPA, closed forms and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnkit.linear as L

f64 = torch.float64


def _qkv(*shape, S=None, Dv=None, seed=0, scale=1.0, dtype=f64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    *batch, N, D = shape
    S = N if S is None else S
    Dv = D if Dv is None else Dv
    mk = lambda *s: (torch.randn(*s, generator=g, dtype=dtype) * scale).requires_grad_(requires_grad)  # noqa: E731
    return mk(*batch, N, D), mk(*batch, S, D), mk(*batch, S, Dv)


def _kernel_attention(A, v, causal, eps=1e-6):
    """Explicit form: out = A v / max(A 1, eps) with A the (..., L, S) kernel matrix."""
    if causal:
        A = A * torch.ones(A.shape[-2:], dtype=A.dtype).tril()
    return (A @ v) / A.sum(-1, keepdim=True).clamp_min(eps)


# ------------------------------------------------------------------ linear attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("fm", ["elu+1", "relu", "softmax", "taylor", lambda x: x * x])
def test_linear_attention_equals_its_explicit_kernel_matrix(fm, causal):
    q, k, v = _qkv(2, 3, 29, 8, Dv=5)
    phi = L.get_feature_map(fm)
    A = phi(q) @ phi(k).transpose(-2, -1)  # built from the definition, eq. 4
    out = L.linear_attention(q, k, v, fm, causal=causal, chunk_size=6)
    torch.testing.assert_close(out, _kernel_attention(A, v, causal))
    torch.testing.assert_close(out, L.linear_attention_quadratic(q, k, v, fm, causal=causal))
    if fm == "softmax":
        torch.testing.assert_close(phi(q), torch.softmax(q, -1))


def test_taylor_features_give_the_second_order_expansion_of_exp():
    q, k = torch.randn(5, 16, dtype=f64), torch.randn(7, 16, dtype=f64)
    s = q @ k.T / 16 ** 0.5
    phi_q, phi_k = L.taylor_feature_map(q), L.taylor_feature_map(k)
    assert phi_q.shape == (5, 1 + 16 + 16 * 16)
    torch.testing.assert_close(phi_q @ phi_k.T, 1 + s + s * s / 2)  # closed form: exp(s) to 2nd order
    assert (phi_q @ phi_k.T > 0).all()  # 1 + s + s^2/2 = ((s + 1)^2 + 1) / 2 > 0


def test_elu_plus_one_is_elu_plus_one():
    x = torch.linspace(-3, 3, 13, dtype=f64)
    torch.testing.assert_close(L.elu_feature_map(x), torch.where(x > 0, x + 1, torch.exp(x)))
    assert (L.elu_feature_map(torch.randn(1000)) > 0).all()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 6), dv=st.integers(1, 5), chunk=st.integers(1, 17),
       heads=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_causal_chunked_equals_quadratic_over_shapes(n, d, dv, chunk, heads, seed):
    q, k, v = _qkv(heads, n, d, Dv=dv, seed=seed)
    out = L.linear_attention(q, k, v, causal=True, chunk_size=chunk)
    torch.testing.assert_close(out, L.linear_attention_quadratic(q, k, v, causal=True))


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6), seed=st.integers(0, 10**6))
def test_recurrent_over_any_chunking_equals_parallel(sizes, seed):
    n = sum(sizes)
    q, k, v = _qkv(2, 2, n, 4, Dv=3, seed=seed)
    state, outs, i = None, [], 0
    for c in sizes:
        o, state = L.linear_attention_chunk(state, q[..., i:i + c, :], k[..., i:i + c, :], v[..., i:i + c, :])
        outs.append(o)
        i += c
    torch.testing.assert_close(torch.cat(outs, -2), L.linear_attention(q, k, v, causal=True))
    # the state is the prefix sums of eqs. 16-17, nothing more
    phi_k = L.elu_feature_map(k)
    torch.testing.assert_close(state.s * torch.exp(state.c)[..., None, None], phi_k.transpose(-2, -1) @ v)
    torch.testing.assert_close(state.z * torch.exp(state.c)[..., None], phi_k.sum(-2))


def test_rnn_step_token_by_token_equals_parallel_and_state_is_fixed_size():
    q, k, v = _qkv(1, 2, 23, 6)
    state, outs, sizes = None, [], set()
    for i in range(23):
        o, state = L.linear_attention_step(state, q[..., i, :], k[..., i, :], v[..., i, :])
        outs.append(o)
        sizes.add(state.nbytes())
    torch.testing.assert_close(torch.stack(outs, -2), L.linear_attention(q, k, v, causal=True))
    assert sizes == {(2 * 6 * 6 + 2 * 6 + 2) * 8}  # s (H, M, Dv), z (H, M), c (H), float64


def test_zero_features_give_zeros_not_nan():
    q, k, v = _qkv(1, 4, 3)
    out = L.linear_attention(-q.abs() - 1, k, v, "relu")  # relu(q) = 0: nothing attended
    assert torch.equal(out, torch.zeros_like(out))
    none = torch.zeros(1, 4, dtype=torch.bool)
    for f in (lambda: L.linear_attention(q, k, v, key_padding_mask=none),
              lambda: L.linear_attention(q, k, v, causal=True, key_padding_mask=none),
              lambda: L.efficient_attention(q, k, v, key_padding_mask=none),
              lambda: L.performer_attention(q, k, v, nb_features=8, key_padding_mask=none),
              lambda: L.performer_attention(q, k, v, nb_features=8, causal=True, key_padding_mask=none),
              lambda: L.cosformer_attention(q, k, v, key_padding_mask=none)):
        out = f()
        assert not torch.isnan(out).any() and torch.equal(out, torch.zeros_like(out))


def test_key_padding_equals_dropping_the_keys():
    q, k, v = _qkv(2, 10, 4)
    keep = torch.arange(10) < 7
    for f in (L.linear_attention, L.efficient_attention, L.cosformer_attention,
              lambda *a, **kw: L.performer_attention(*a, nb_features=16, **kw)):
        kw = {"max_len": 10} if f is L.cosformer_attention else {}
        torch.testing.assert_close(f(q, k, v, key_padding_mask=keep, **kw), f(q, k[:, :7], v[:, :7], **kw))


def test_efficient_attention_equals_its_definition():
    q, k, v = _qkv(2, 11, 5, S=13, Dv=3)
    A = torch.softmax(q, -1) @ torch.softmax(k, -2).transpose(-2, -1)  # (L, S), explicit
    torch.testing.assert_close(L.efficient_attention(q, k, v), A @ v)
    assert torch.allclose(torch.softmax(k, -2).sum(-2), torch.ones(2, 5, dtype=f64))  # over the keys


# ------------------------------------------------------------------ Performer


def test_orthogonal_features_are_orthogonal_blocks_with_chi_norms():
    d, m = 8, 20
    w = L.orthogonal_random_features(m, d, seed=3, dtype=f64)
    assert w.shape == (m, d)
    for b in range(0, m, d):
        u = w[b:b + d] / w[b:b + d].norm(dim=1, keepdim=True)
        torch.testing.assert_close(u @ u.T, torch.eye(u.shape[0], dtype=f64))
    # chi(d) norms: E|w| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2)
    norms = torch.cat([L.orthogonal_random_features(64, d, seed=s, dtype=f64).norm(dim=1) for s in range(20)])
    chi_mean = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    assert abs(norms.mean().item() - chi_mean) < 0.03
    assert torch.equal(w, L.orthogonal_random_features(m, d, seed=3, dtype=f64))


def _lemma2_mse(x, y, m, kind):
    """Lemma 2 of Choromanski et al. 2021 (iid features): the estimators' mean squared errors."""
    sm = math.exp(float(x @ y))
    if kind == "positive":
        s = float((x + y) @ (x + y))
        return math.exp(s) * sm ** 2 * (1 - math.exp(-s)) / m
    dxy = float((x - y) @ (x - y))
    return math.exp(float((x + y) @ (x + y))) / sm ** 2 * (1 - math.exp(-dxy)) ** 2 / (2 * m)


@pytest.mark.parametrize("kind", ["positive", "trig"])
def test_favor_features_are_unbiased_with_the_lemma2_variance(kind):
    g = torch.Generator().manual_seed(0)
    d, m, draws = 4, 8, 3000
    x, y = torch.randn(d, generator=g, dtype=f64), torch.randn(d, generator=g, dtype=f64)
    x, y = 0.6 * x / x.norm(), 0.6 * y / y.norm()
    w = torch.randn(draws, m, d, generator=g, dtype=f64)  # iid features, one set per draw
    est = torch.stack([(L.favor_features(x[None], wi, kind) @ L.favor_features(y[None], wi, kind).T)[0, 0]
                       for wi in w])
    exact = math.exp(float(x @ y))
    mse = ((est - exact) ** 2).mean().item()
    theory = _lemma2_mse(x, y, m, kind)
    assert abs(est.mean().item() - exact) < 4 * math.sqrt(theory / draws)  # unbiased (Lemma 1)
    assert abs(mse / theory - 1) < 0.15


def test_favor_positive_is_positive_and_stabilised_is_proportional():
    x = torch.randn(5, 4, dtype=f64) * 3
    w = L.iid_random_features(16, 4, seed=1, dtype=f64)
    p, s = L.favor_features(x, w), L.favor_features(x, w, stabilise=True)
    assert (p > 0).all() and (s <= 1 / 4 + 1e-12).all()
    torch.testing.assert_close(p / s, (p / s)[:, :1].expand_as(p))  # one factor per token


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["positive", "trig"])
def test_performer_equals_its_explicit_random_feature_kernel(kind, causal):
    q, k, v = _qkv(2, 2, 21, 8, Dv=3, scale=0.5)  # small inputs: the trig denominators stay positive
    w = L.orthogonal_random_features(32, 8, seed=5, dtype=f64)
    s = 8 ** -0.25
    A = L.favor_features(q * s, w, kind) @ L.favor_features(k * s, w, kind).transpose(-2, -1)
    assert (A.sum(-1) > 1e-3).all()
    out = L.performer_attention(q, k, v, w, kind=kind, causal=causal, chunk_size=5)
    torch.testing.assert_close(out, _kernel_attention(A, v, causal))


@pytest.mark.parametrize("causal", [False, True])
def test_performer_with_many_features_approaches_softmax(causal):
    q, k, v = _qkv(1, 64, 8, scale=0.5)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = L.performer_attention(q, k, v, nb_features=1024, seed=1, causal=causal)
    rel = ((out - ref).norm() / ref.norm()).item()
    few = L.performer_attention(q, k, v, nb_features=8, seed=1, causal=causal)
    assert rel < 0.05 and rel < ((few - ref).norm() / ref.norm()).item()


def _performer_global_stabiliser(q, k, v, w, eps=1e-4):
    """The common causal implementation: key max over *every* position, and eps added to the features."""
    s = q.shape[-1] ** -0.25
    lq, lk = (x * s @ w.T - (x * s).pow(2).sum(-1, keepdim=True) / 2 for x in (q, k))
    fq = torch.exp(lq - lq.amax(-1, keepdim=True)) + eps
    fk = torch.exp(lk - lk.amax()) + eps  # the max sees the future
    return _kernel_attention(fq @ fk.transpose(-2, -1), v, causal=True)


def test_performer_causal_never_lets_a_future_key_change_the_past():
    # float64: a key later in the same chunk rescales that chunk's keys (exactly), so in float32
    # the earlier rows move by rounding (~1e-5 relative); in float64 that is ~1e-15
    q, k, v = _qkv(1, 2, 40, 8)
    w = L.orthogonal_random_features(16, 8, seed=2, dtype=f64)
    k2 = k.clone()
    k2[..., -1, :] = w[w.norm(dim=1).argmax()] * 8 ** 0.25  # edit the last key: the largest exponent of all
    for kind in ("positive", "trig"):
        a = L.performer_attention(q, k, v, w, kind=kind, causal=True, chunk_size=16)
        b = L.performer_attention(q, k2, v, w, kind=kind, causal=True, chunk_size=16)
        rel = ((a - b)[..., :-1, :].abs() / a[..., :-1, :].abs().clamp_min(1e-30)).max().item()
        assert rel <= 1e-12
        assert not torch.equal(a[..., -1, :], b[..., -1, :])
    # the test can fail: the common global stabiliser plus eps moves every earlier row
    a, b = _performer_global_stabiliser(q, k, v, w), _performer_global_stabiliser(q, k2, v, w)
    assert ((a - b)[..., :-1, :].abs() / a[..., :-1, :].abs()).max().item() > 1e-2


def test_performer_projection_is_reproducible_and_passable():
    q, k, v = _qkv(1, 12, 4)
    w = L.orthogonal_random_features(10, 4, seed=7, dtype=f64)
    torch.testing.assert_close(L.performer_attention(q, k, v, nb_features=10, seed=7), L.performer_attention(q, k, v, w))
    assert not torch.allclose(L.performer_attention(q, k, v, nb_features=10, seed=8), L.performer_attention(q, k, v, w))


def test_performer_large_inputs_do_not_overflow():
    q, k, v = _qkv(1, 30, 8, scale=30.0, dtype=torch.float32)
    for causal in (False, True):
        out = L.performer_attention(q, k, v, nb_features=32, causal=causal)
        assert torch.isfinite(out).all()


def _favor_exact(q, k, v, w, causal):
    """FAVOR+ from its definition in float64 and log space (Lemma 1's features, no stabiliser, no
    eps): log A_ij = logsumexp_f (lq_if + lk_jf), out = softmax_j(log A) v. Also returns the
    largest |exponent|: a float computation of the features carries eps * |exponent| of rounding."""
    q, k, v, w = (t.to(f64) for t in (q, k, v, w))
    x, y = q * q.shape[-1] ** -0.25, k * k.shape[-1] ** -0.25
    lq = x @ w.T - (x * x).sum(-1, keepdim=True) / 2  # (..., L, m)
    lk = y @ w.T - (y * y).sum(-1, keepdim=True) / 2  # (..., S, m)
    log_a = torch.logsumexp(lq[..., :, None, :] + lk[..., None, :, :], dim=-1)  # (..., L, S)
    if causal:
        log_a = log_a.masked_fill(~torch.ones(log_a.shape[-2:], dtype=torch.bool).tril(), -math.inf)
    return torch.softmax(log_a, -1) @ v, max(lq.abs().max().item(), lk.abs().max().item())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("std", [0.1, 1.0, 2.0, 3.0, 10.0])
def test_performer_is_exact_favor_at_every_input_scale(std, dtype, causal):
    # before the fix the *rescaled* denominator was floored at eps = 1e-6: at std 3 (causal) and
    # std 10 the output was off by 1.2 to 3.3 from FAVOR+ with the same features, in either dtype
    q, k, v = _qkv(1, 2, 37, 16, seed=1, dtype=dtype)
    q, k = q * std, k * std
    w = L.orthogonal_random_features(45, 16, seed=0, dtype=f64)  # ceil(16 ln 16) features
    ref, biggest = _favor_exact(q, k, v, w, causal)
    out = L.performer_attention(q, k, v, w.to(dtype), causal=causal, chunk_size=8)
    err = (out.to(f64) - ref).abs().max().item()
    assert out.dtype == dtype and err <= 4 * torch.finfo(dtype).eps * (1 + biggest), (err, biggest)


# ------------------------------------------------------------------ Linformer


def test_linformer_equals_sdpa_on_projected_keys_and_identity_gives_softmax():
    q, k, v = _qkv(2, 3, 20, 8)
    E, Fm = torch.randn(20, 6, dtype=f64), torch.randn(20, 6, dtype=f64)
    ref = F.scaled_dot_product_attention(q, E.T @ k, Fm.T @ v)
    torch.testing.assert_close(L.linformer_attention(q, k, v, E, Fm), ref)
    eye = torch.eye(20, dtype=f64)
    torch.testing.assert_close(L.linformer_attention(q, k, v, eye, eye), F.scaled_dot_product_attention(q, k, v))
    Eh = torch.randn(3, 20, 6, dtype=f64)  # one projection per head
    torch.testing.assert_close(L.linformer_attention(q, k, v, Eh, Eh),
                               F.scaled_dot_product_attention(q, Eh.transpose(-2, -1) @ k, Eh.transpose(-2, -1) @ v))


# ------------------------------------------------------------------ Nystromformer


def test_segment_means_with_and_without_padding():
    x = torch.arange(20, dtype=f64).reshape(10, 2)
    torch.testing.assert_close(L.segment_means(x, 5), x.reshape(5, 2, 2).mean(1))
    got = L.segment_means(x, 4)  # ceil(10/4) = 3: segments of 3, 3, 3 and the last real token alone
    torch.testing.assert_close(got, torch.stack([x[0:3].mean(0), x[3:6].mean(0), x[6:9].mean(0), x[9]]))
    with pytest.raises(ValueError, match="num_landmarks = 4 with N = 9"):
        L.segment_means(x[:9], 4)  # segments of 3: the fourth would be all padding
    with pytest.raises(ValueError, match="num_landmarks must be <= the sequence length N = 10, got 11"):
        L.segment_means(x, 11)


def test_iterative_pinv_starts_as_the_paper_says_and_converges():
    a = torch.softmax(torch.randn(3, 6, 6, dtype=f64), -1)
    z0 = L.iterative_pinv(a, 0)
    for i in range(3):
        norm1, norminf = a[i].abs().sum(0).max(), a[i].abs().sum(1).max()  # per matrix
        torch.testing.assert_close(z0[i], a[i].T / (norm1 * norminf))
    torch.testing.assert_close(L.iterative_pinv(a, 40), torch.linalg.pinv(a))
    err6 = (L.iterative_pinv(a, 6) - torch.linalg.pinv(a)).abs().max()
    err2 = (L.iterative_pinv(a, 2) - torch.linalg.pinv(a)).abs().max()
    assert err6 < err2


def test_iterative_pinv_of_a_zero_matrix_is_zero():
    # before the fix Z_0 = A^T / (||A||_1 ||A||_inf) was 0 / 0: all NaN
    a = torch.softmax(torch.randn(3, 4, 4, dtype=f64), -1)
    a[1] = 0.0  # one zero matrix in the batch leaves the others alone
    z = L.iterative_pinv(a, 6)
    assert torch.equal(z[1], torch.zeros(4, 4, dtype=f64)) and torch.equal(torch.linalg.pinv(a[1]), z[1])
    torch.testing.assert_close(z[[0, 2]], L.iterative_pinv(a[[0, 2]], 6))


@pytest.mark.parametrize("M", [0, -3])
def test_cosformer_weights_refuse_a_non_positive_M(M):
    # before the fix M = 0 gave cos(inf) = NaN weights without a word
    with pytest.raises(ValueError, match=f"M must be .*got {M}"):
        L.cosformer_weights(5, 5, M)
    torch.testing.assert_close(L.cosformer_weights(2, 3, 4), torch.tensor(
        [[math.cos(math.pi / 8 * (i - j)) for j in range(3)] for i in range(2)], dtype=f64))


@pytest.mark.parametrize("n", [16, 21])
def test_nystrom_with_n_landmarks_equals_softmax(n):
    q, k, v = _qkv(2, 2, n, 8)
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(L.nystrom_attention(q, k, v, n, exact_pinv=True), ref)
    torch.testing.assert_close(L.nystrom_attention(q, k, v, n, pinv_iterations=40), ref)


def test_nystrom_equals_its_three_explicit_kernels():
    q, k, v = _qkv(1, 24, 4)
    s = 0.5
    ql, kl = q.reshape(1, 6, 4, 4).mean(2), k.reshape(1, 6, 4, 4).mean(2)  # landmarks by hand
    f = torch.softmax(q @ kl.transpose(-2, -1) * s, -1)
    a = torch.softmax(ql @ kl.transpose(-2, -1) * s, -1)
    b = torch.softmax(ql @ k.transpose(-2, -1) * s, -1)
    torch.testing.assert_close(L.nystrom_attention(q, k, v, 6, exact_pinv=True), f @ torch.linalg.pinv(a) @ b @ v)


def test_nystrom_ignores_padded_keys():
    q, k, v = _qkv(1, 12, 4)
    keep = torch.arange(12) < 9
    k2, v2 = k.clone(), v.clone()
    k2[:, 9:], v2[:, 9:] = 100.0, -100.0
    a = L.nystrom_attention(q, k, v, 4, key_padding_mask=keep)
    b = L.nystrom_attention(q, k2, v2, 4, key_padding_mask=keep)
    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------ cosFormer


@pytest.mark.parametrize("causal", [False, True])
def test_cosformer_equals_its_explicit_quadratic_form(causal):
    q, k, v = _qkv(2, 2, 27, 6, Dv=4)
    M = 30 if causal else 27
    i, j = torch.arange(1, 28, dtype=f64)[:, None], torch.arange(1, 28, dtype=f64)[None, :]
    A = (F.relu(q) @ F.relu(k).transpose(-2, -1)) * torch.cos(math.pi / 2 * (i - j) / M)
    out = L.cosformer_attention(q, k, v, causal=causal, max_len=30 if causal else None, chunk_size=4)
    torch.testing.assert_close(out, _kernel_attention(A, v, causal))


def test_cosformer_causal_output_does_not_depend_on_the_future_length():
    q, k, v = _qkv(1, 40, 4)
    full = L.cosformer_attention(q, k, v, causal=True, max_len=64)
    part = L.cosformer_attention(q[:, :25], k[:, :25], v[:, :25], causal=True, max_len=64)
    torch.testing.assert_close(full[:, :25], part)
    with pytest.raises(ValueError, match="max_len"):
        L.cosformer_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="sequence length 40 exceeds max_len = 30"):
        L.cosformer_attention(q, k, v, causal=True, max_len=30)


# ------------------------------------------------------------------ gradients


def test_gradients_float64_gradcheck():
    q, k, v = _qkv(1, 5, 2, requires_grad=True)
    w = L.orthogonal_random_features(4, 2, seed=0, dtype=f64)
    E = torch.randn(5, 3, dtype=f64)
    fns = [lambda q, k, v: L.linear_attention(q, k, v, causal=True, chunk_size=3),
           lambda q, k, v: L.linear_attention(q, k, v),
           lambda q, k, v: L.performer_attention(q, k, v, w, causal=True, chunk_size=3),
           lambda q, k, v: L.performer_attention(q, k, v, w),
           lambda q, k, v: L.cosformer_attention(q, k, v, causal=True, max_len=6, chunk_size=3),
           lambda q, k, v: L.nystrom_attention(q, k, v, 5, pinv_iterations=3),
           lambda q, k, v: L.linformer_attention(q, k, v, E, E),
           L.efficient_attention]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (q, k, v), fast_mode=True)


def test_chunked_causal_gradients_equal_the_quadratic_forms():
    q, k, v = _qkv(2, 19, 4, requires_grad=True)
    g = torch.randn(2, 19, 4, dtype=f64)
    a = torch.autograd.grad(L.linear_attention(q, k, v, causal=True, chunk_size=4), (q, k, v), g)
    b = torch.autograd.grad(L.linear_attention_quadratic(q, k, v, causal=True), (q, k, v), g)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


# ------------------------------------------------------------------ modules and costs


def _module(name, **kw):
    extra = {"linformer": {"seq_len": 16, "k": 8}, "nystrom": {"num_landmarks": 4}}.get(name, {})
    torch.manual_seed(0)
    return L.METHODS[name](16, 2, **{**extra, **kw}).double()


@pytest.mark.parametrize("name", sorted(L.METHODS))
def test_modules_are_thin_wrappers_of_the_functions(name):
    m = _module(name)
    x = torch.randn(3, 16, 16, dtype=f64)
    out = m(x)
    assert out.shape == (3, 16, 16)
    q, k, v = (m._split(p(x)) for p in (m.q_proj, m.k_proj, m.v_proj))
    funcs = {"linear": lambda: L.linear_attention(q, k, v),
             "efficient": lambda: L.efficient_attention(q, k, v),
             "performer": lambda: L.performer_attention(q, k, v, m.projection),
             "linformer": lambda: L.linformer_attention(q, k, v, m.E, m.F),
             "nystrom": lambda: L.nystrom_attention(q, k, v, 4),
             "cosformer": lambda: L.cosformer_attention(q, k, v)}
    ref = m.out_proj(funcs[name]().transpose(1, 2).flatten(-2))
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="attn_mask"):
        m(x, attn_mask=torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(3, 15\), expected \(B, N\) = \(3, 16\)"):
        m(x, key_padding_mask=torch.ones(3, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x has shape \(3, 16, 8\), expected \(batch, seq, 16\)"):
        m(x[..., :8])


def test_causal_linear_module_recurrent_equals_forward():
    m = _module("linear", causal=True)
    x = torch.randn(2, 12, 16, dtype=f64)
    full = m(x)
    a, state = m.recurrent(x[:, :5])
    b, state = m.recurrent(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    assert state.s.shape == (2, 2, 8, 8) and state.z.shape == (2, 2, 8)


def test_performer_module_keeps_its_projection_until_redrawn():
    m = _module("performer", causal=True)
    x = torch.randn(1, 10, 16, dtype=f64)
    a = m.train()(x)
    torch.testing.assert_close(m.eval()(x), a)
    m.redraw(seed=1)
    assert not torch.allclose(m(x), a)


def test_linformer_sharing_options():
    m = _module("linformer", share="kv")
    assert m.F is m.E and m.E.shape == (16, 8)
    assert _module("linformer", share="none").E.shape == (2, 16, 8)
    shared = torch.nn.Parameter(torch.randn(16, 8))
    a, b = L.LinformerAttention(16, 2, 16, 8, shared=shared), L.LinformerAttention(16, 2, 16, 8, shared=shared)
    assert a.E is b.E is shared  # layerwise sharing


def test_nystrom_residual_conv_is_off_by_default():
    assert _module("nystrom").conv is None
    m = _module("nystrom", residual_conv_kernel=5)
    assert m.conv is not None and m(torch.randn(1, 16, 16, dtype=f64)).shape == (1, 16, 16)


def test_costs_grow_as_their_formulas_say():
    for method, m in (("linear", None), ("performer", 64), ("linformer", 64), ("nystrom", 32), ("cosformer", None)):
        a, b = L.attention_cost(method, 1024, 64, m=m), L.attention_cost(method, 2048, 64, m=m)
        assert b["flops"] < 2.01 * a["flops"]
    a, b = L.attention_cost("softmax", 1024, 64), L.attention_cost("softmax", 2048, 64)
    assert b["flops"] == 4 * a["flops"] and a["extra_bytes"] == 1024 * 1024 * 4
    assert L.attention_cost("linear", 10**6, 64)["state_bytes"] == 64 * 65 * 4


def test_errors_name_the_argument():
    q, k, v = _qkv(1, 5, 4)
    with pytest.raises(ValueError, match="feature_map must be one of"):
        L.linear_attention(q, k, v, "tanh")
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got 0.0"):
        L.linear_attention(q, k, v, eps=0)
    with pytest.raises(ValueError, match=r"k has shape \(1, 5, 3\)"):
        L.linear_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="causal attention needs as many queries as keys"):
        L.linear_attention(q[:, :3], k, v, causal=True)
    with pytest.raises(TypeError, match="k has dtype torch.float32"):
        L.linear_attention(q, k.float(), v)
    with pytest.raises(ValueError, match=r"projection has shape \(6, 3\), expected \(m, d\) with d = 4"):
        L.performer_attention(q, k, v, torch.randn(6, 3, dtype=f64))
    with pytest.raises(ValueError, match="kind must be 'positive' or 'trig', got 'cos'"):
        L.performer_attention(q, k, v, nb_features=4, kind="cos")
    with pytest.raises(ValueError, match=r"E has shape \(6, 2\), expected \(..., N, k\) with N = 5"):
        L.linformer_attention(q, k, v, torch.randn(6, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="embed_dim = 10 must be divisible by num_heads = 3"):
        L.LinearAttention(10, 3)
    with pytest.raises(ValueError, match=r"state.s has shape"):
        L.linear_attention_chunk(L.LinearAttentionState.zeros((1,), 3, 4, f64), q, k, v)
    with pytest.raises(TypeError, match="key_padding_mask must be a bool tensor"):
        L.linear_attention(q, k, v, key_padding_mask=torch.ones(1, 5))
