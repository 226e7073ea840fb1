"""attnkit.softmax against PyTorch: torch.softmax, torch.logsumexp, scaled_dot_product_attention
(for masked rows), and autograd (for the Jacobian)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.softmax import (
    OnlineSoftmaxState,
    logsumexp,
    merge,
    merge_partials,
    naive_softmax,
    normalize,
    online_softmax,
    softmax,
    softmax_jacobian,
    softmax_jacobian_norm,
    softmax_state,
    update,
)

NEG_INF = float("-inf")
SETTINGS = settings(max_examples=40, deadline=None)


def sdpa_weights(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(x + mask) computed by PyTorch's attention: with k = v = I and scale 1, q k^T = x
    and the output is the weight matrix itself. x (..., L, n), mask bool (..., L, n)."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype)
    return F.scaled_dot_product_attention(x, eye, eye, attn_mask=mask, scale=1.0)


# --- softmax -------------------------------------------------------------------------------


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    dim_seed=st.integers(0, 100),
    temperature=st.floats(0.05, 20.0),
    spread=st.floats(0.1, 100.0),
    seed=st.integers(0, 2**16),
)
def test_softmax_equals_torch(shape, dim_seed, temperature, spread, seed):
    x = (
        torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        * spread
    )
    dim = dim_seed % len(shape) - len(shape) * (dim_seed % 2)  # negative and positive dims
    got = softmax(x, dim=dim, temperature=temperature)
    torch.testing.assert_close(got, torch.softmax(x / temperature, dim=dim), rtol=1e-12, atol=1e-12)
    assert got.dtype == x.dtype and got.shape == x.shape


@SETTINGS
@given(
    rows=st.integers(1, 5),
    n=st.integers(1, 8),
    p_mask=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_masked_softmax_equals_sdpa_including_fully_masked_rows(rows, n, p_mask, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=g, dtype=torch.float64)
    keep = torch.rand(rows, n, generator=g) >= p_mask  # True = attend
    keep[0] = False  # always at least one fully masked row
    got = softmax(x.masked_fill(~keep, NEG_INF))
    torch.testing.assert_close(got, sdpa_weights(x, keep), rtol=1e-12, atol=1e-12)
    assert torch.equal(got[0], torch.zeros(n, dtype=torch.float64))
    assert not got.isnan().any()


def test_fully_masked_row_has_zero_weights_and_finite_gradient():
    x = torch.tensor(
        [[NEG_INF, NEG_INF, NEG_INF], [1.0, NEG_INF, 2.0]], dtype=torch.float64, requires_grad=True
    )
    p = softmax(x)
    assert torch.equal(p[0].detach(), torch.zeros(3, dtype=torch.float64))
    (p * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[0], torch.zeros(3, dtype=torch.float64))


def test_gradcheck_float64_with_temperature_and_mask():
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[1, 2] = NEG_INF
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=-1, temperature=0.7), (x,))
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=0), (x,))


def test_the_worked_example_of_chapter_03():
    x = torch.tensor([2.3, 9.1, 0.5], dtype=torch.float64)
    expected = torch.exp(x) / torch.exp(x).sum()  # closed form, no overflow at this size
    torch.testing.assert_close(softmax(x), expected)
    assert softmax(x).argmax() == 1 and 0.99 < float(softmax(x)[1]) < 0.999


@pytest.mark.parametrize(
    "dtype, big",
    [
        (torch.float32, 1e30),
        (torch.float32, 3e38),
        (torch.float16, 6e4),
        (torch.bfloat16, 3e38),
        (torch.float64, 1e300),
    ],
)
def test_stable_for_huge_inputs(dtype, big):
    x = torch.tensor([[big, big / 2, -big, 0.0], [big, big, NEG_INF, big / 4]], dtype=dtype)
    got = softmax(x)
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    # the oracle: the exact answer of the shifted row, in float64
    x64 = x.double()
    expected = torch.softmax(x64 - x64.amax(-1, keepdim=True), dim=-1)
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-3)
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    torch.testing.assert_close(got, torch.softmax(x.to(compute), -1).to(dtype))
    # the naive version really does overflow on these inputs (so this test can fail)
    assert naive_softmax(x).isnan().any()


@SETTINGS
@given(
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    rows=st.integers(1, 4),
    n=st.integers(1, 30),
    log_spread=st.floats(-1.0, 4.5),
    p_mask=st.floats(0.0, 0.7),
    seed=st.integers(0, 2**16),
)
def test_low_precision_softmax_and_online_softmax_equal_torch(
    dtype, rows, n, log_spread, p_mask, seed
):
    """Over dtypes, magnitudes up to ~3e4 (float16 overflows exp beyond 11) and masks, attnkit's
    softmax and online softmax equal torch.softmax computed in float32 and cast back."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, n, generator=g) * 10**log_spread).to(dtype)
    keep = torch.rand(rows, n, generator=g) >= p_mask
    keep[:, 0] |= torch.rand(rows, generator=g) < 0.8  # most rows keep something, some none
    x = x.masked_fill(~keep, NEG_INF)
    live = keep.any(-1, keepdim=True)
    expected = (
        torch.softmax(x.float().masked_fill(~live, 0.0), -1).masked_fill(~live, 0.0).to(dtype)
    )
    torch.testing.assert_close(softmax(x), expected)  # the default tolerances of each dtype
    got = online_softmax(x, chunk_size=max(1, n // 3))
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=1e-3)


def test_half_precision_is_computed_in_float32():
    x = torch.randn(4, 300, generator=torch.Generator().manual_seed(1)) * 5
    for dtype in (torch.float16, torch.bfloat16):
        got = softmax(x.to(dtype), temperature=0.01)  # x / T overflows float16 if done in float16
        expected = torch.softmax(x.to(dtype).float() / 0.01, -1).to(dtype)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_temperature_zero_is_the_argmax_limit():
    x = torch.tensor(
        [[0.3, 2.0, -1.0, 1.9], [1.0, 5.0, 5.0, NEG_INF], [NEG_INF] * 4], dtype=torch.float64
    )
    hard = softmax(x, temperature=0.0)
    expected = torch.tensor([[0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0]], dtype=torch.float64)
    assert torch.equal(hard, expected)
    # and it is the limit of small temperatures (ties split evenly)
    torch.testing.assert_close(softmax(x[:2], temperature=1e-3), expected[:2], atol=1e-12, rtol=0)


def test_temperature_large_tends_to_uniform_over_unmasked():
    x = torch.tensor([1.0, 5.0, NEG_INF, -2.0], dtype=torch.float64)
    got = softmax(x, temperature=1e6)
    torch.testing.assert_close(
        got, torch.tensor([1 / 3, 1 / 3, 0, 1 / 3], dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_empty_dim():
    assert softmax(torch.empty(2, 0)).shape == (2, 0)
    assert online_softmax(torch.empty(2, 0)).shape == (2, 0)
    assert torch.equal(logsumexp(torch.empty(2, 0)), torch.logsumexp(torch.empty(2, 0), -1))


# --- logsumexp -----------------------------------------------------------------------------


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    spread=st.floats(0.1, 1e4),
    keepdim=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_logsumexp_equals_torch(shape, spread, keepdim, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * spread
    x[torch.rand(*shape, generator=g) < 0.3] = NEG_INF  # some masked entries, maybe whole rows
    torch.testing.assert_close(
        logsumexp(x, dim=0, keepdim=keepdim), torch.logsumexp(x, 0, keepdim=keepdim)
    )
    torch.testing.assert_close(
        logsumexp(x, dim=-1, keepdim=keepdim), torch.logsumexp(x, -1, keepdim=keepdim)
    )


def test_logsumexp_huge_float32():
    x = torch.tensor([1e30, 1e30, 0.0])
    got = logsumexp(x)
    assert torch.isfinite(got)
    assert math.isclose(float(got), 1e30 + math.log(2), rel_tol=1e-6)


# --- online softmax ------------------------------------------------------------------------


@st.composite
def chunked_rows(draw):
    n = draw(st.integers(1, 40))
    sizes = []
    left = n
    while left:
        s = draw(st.integers(1, left))
        sizes.append(s)
        left -= s
    rows = draw(st.integers(1, 4))
    return rows, n, sizes


@SETTINGS
@given(chunked_rows(), st.floats(0.1, 1e3), st.floats(0.0, 0.9), st.integers(0, 2**16))
def test_online_softmax_equals_softmax_for_random_chunkings(spec, spread, p_mask, seed):
    rows, n, sizes = spec
    g = torch.Generator().manual_seed(seed)
    finite = torch.randn(rows, n, generator=g, dtype=torch.float64) * spread
    keep = torch.rand(rows, n, generator=g) >= p_mask
    x = finite.masked_fill(~keep, NEG_INF)
    out, state = online_softmax(x, chunk_size=sizes, return_state=True)
    torch.testing.assert_close(
        out, sdpa_weights(finite, keep), rtol=1e-10, atol=1e-12
    )  # torch's answer
    torch.testing.assert_close(state.logsumexp(), torch.logsumexp(x, -1, keepdim=True))
    # an int chunk size, and chunking along another dim, agree as well
    torch.testing.assert_close(
        online_softmax(x, chunk_size=sizes[0]), softmax(x), rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(
        online_softmax(x.T, dim=0, chunk_size=sizes), softmax(x.T, dim=0), rtol=1e-10, atol=1e-12
    )


def test_online_softmax_element_by_element_float32_huge():
    x = torch.tensor([[3e38, -3e38, 1e38, 3e38], [NEG_INF] * 4])
    out = online_softmax(x)  # chunk_size=1: the paper's algorithm, one element at a time
    torch.testing.assert_close(out, torch.tensor([[0.5, 0, 0, 0.5], [0, 0, 0, 0]]))


def test_online_softmax_gradient_equals_softmax_gradient():
    x = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (online_softmax(x1, chunk_size=3) * w).sum().backward()
    (torch.softmax(x2, -1) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def _random_state(seed, shape=(3, 1), p_dead=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape[0], 5, generator=g, dtype=torch.float64) * 10
    x[torch.rand(shape[0], 1, generator=g).expand(-1, 5) < p_dead] = NEG_INF
    return x, softmax_state(x)


def _assert_state_close(a, b):
    torch.testing.assert_close(a.m, b.m)
    torch.testing.assert_close(a.l, b.l)


@SETTINGS
@given(st.integers(0, 2**16), st.integers(0, 2**16), st.integers(0, 2**16))
def test_merge_is_the_state_of_the_union_and_associative_commutative(s1, s2, s3):
    (xa, a), (xb, b), (xc, c) = _random_state(s1), _random_state(s2), _random_state(s3)
    # merged state == the state of the concatenated row, computed in one go
    _assert_state_close(merge(a, b), softmax_state(torch.cat([xa, xb], -1)))
    torch.testing.assert_close(
        merge(a, b).logsumexp(), torch.logsumexp(torch.cat([xa, xb], -1), -1, keepdim=True)
    )
    _assert_state_close(merge(merge(a, b), c), merge(a, merge(b, c)))
    _assert_state_close(merge(merge(a, b), c), softmax_state(torch.cat([xa, xb, xc], -1)))
    _assert_state_close(merge(a, b), merge(b, a))
    e = OnlineSoftmaxState.identity((3, 1), dtype=torch.float64)
    _assert_state_close(merge(e, a), a)
    _assert_state_close(update(a, xb), merge(a, b))


def test_merge_of_dead_states_is_dead_not_nan():
    e = OnlineSoftmaxState.identity((2, 1))
    s = merge(e, e)
    assert torch.isneginf(s.m).all() and torch.equal(s.l, torch.zeros(2, 1))
    x = torch.full((2, 3), NEG_INF)
    assert torch.equal(normalize(x, s), torch.zeros(2, 3))


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        merge(OnlineSoftmaxState.identity((2, 1)), OnlineSoftmaxState.identity((3, 1)))


@SETTINGS
@given(st.integers(1, 12), st.integers(0, 2**16), st.booleans())
def test_merge_partials_equals_attention_over_all_keys(split, seed, mask_part_b):
    g = torch.Generator().manual_seed(seed)
    B, H, L, S, D = 2, 2, 4, 13, 8
    q = torch.randn(B, H, L, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, S, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, S, D, generator=g, dtype=torch.float64)
    keep = torch.ones(L, S, dtype=torch.bool)
    if mask_part_b:
        keep[1, split:] = False  # query 1 sees nothing in part b
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, L, S)
    scores = scores.masked_fill(~keep, NEG_INF)
    parts = []
    for sl in (slice(0, split), slice(split, S)):
        s = scores[..., sl]
        parts.append((softmax(s) @ v[..., sl, :], softmax_state(s)))  # (B, H, L, D), (B, H, L, 1)
    o, state = merge_partials(parts[0][0], parts[0][1], parts[1][0], parts[1][1])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(o, expected)
    torch.testing.assert_close(state.logsumexp(), torch.logsumexp(scores, -1, keepdim=True))


def test_merge_partials_both_empty_gives_zeros():
    e = OnlineSoftmaxState.identity((2, 1))
    o, s = merge_partials(torch.zeros(2, 4), e, torch.zeros(2, 4), e)
    assert torch.equal(o, torch.zeros(2, 4)) and torch.equal(s.l, torch.zeros(2, 1))


# --- Jacobian ------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 9), st.floats(0.1, 30.0), st.integers(0, 2**16))
def test_softmax_jacobian_equals_autograd(n, spread, seed):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * spread
    J_auto = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), x)  # (n, n)
    J = softmax_jacobian(torch.softmax(x, -1))
    torch.testing.assert_close(J, J_auto, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(
        softmax_jacobian_norm(torch.softmax(x, -1)),
        torch.linalg.matrix_norm(J_auto),
        rtol=1e-8,
        atol=1e-12,
    )


def test_softmax_jacobian_batched_and_saturated():
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    p = torch.softmax(x, -1)
    J = softmax_jacobian(p)  # (2, 3, 6, 6)
    for i in range(2):
        for j in range(3):
            J_auto = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), x[i, j])
            torch.testing.assert_close(J[i, j], J_auto)
    torch.testing.assert_close(softmax_jacobian_norm(p), torch.linalg.matrix_norm(J))
    # a one-hot row: no gradient at all; a uniform row over n: ||J||_F^2 = (n - 1) / n^2 ... closed form
    assert float(softmax_jacobian_norm(torch.tensor([0.0, 1.0, 0.0]))) == 0.0
    n = 6
    u = torch.full((n,), 1 / n, dtype=torch.float64)
    assert math.isclose(float(softmax_jacobian_norm(u)), math.sqrt((n - 1) / n**2), rel_tol=1e-12)


def test_jacobian_norm_keeps_precision_near_saturation():
    """Near one-hot, sum p^2 - 2 sum p^3 + (sum p^2)^2 cancels to noise in float32; the
    closed form used must still match the float64 autograd Jacobian's norm."""
    for gap in (8.0, 15.0, 30.0):
        x = torch.tensor([gap, 0.0, -1.0, 0.5], dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), x)
        want = torch.linalg.matrix_norm(J)
        got = softmax_jacobian_norm(torch.softmax(x.float(), -1))
        assert math.isclose(float(got), float(want), rel_tol=1e-4), (gap, float(got), float(want))


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: softmax([1.0, 2.0]), TypeError, "x must be a torch.Tensor, got list"),
        (lambda: softmax(torch.tensor([1, 2])), TypeError, "floating-point.*int64"),
        (
            lambda: softmax(torch.zeros(2, 3), dim=2),
            ValueError,
            r"dim must be in \[-2, 1\].*\(2, 3\), got 2",
        ),
        (
            lambda: softmax(torch.zeros(3), temperature=-1.0),
            ValueError,
            "temperature must be a finite number >= 0, got -1.0",
        ),
        (
            lambda: softmax(torch.zeros(3), temperature="hot"),
            TypeError,
            "temperature must be a real number, got str",
        ),
        (lambda: softmax(torch.tensor([1.0, float("nan")])), ValueError, "1 NaN or \\+inf"),
        (lambda: softmax(torch.tensor([1.0, float("inf")])), ValueError, "NaN or \\+inf"),
        (lambda: logsumexp(torch.tensor(1.0)), ValueError, "at least 1 dimension"),
        (
            lambda: online_softmax(torch.zeros(2, 5), chunk_size=0),
            ValueError,
            "chunk_size must be an int >= 1, got 0",
        ),
        (
            lambda: online_softmax(torch.zeros(2, 5), chunk_size=[2, 2]),
            ValueError,
            r"summing to x.shape\[1\] = 5, got \[2, 2\]",
        ),
        (lambda: softmax_jacobian(torch.tensor([1, 0])), TypeError, "p must be a floating-point"),
        (
            lambda: merge_partials(
                torch.zeros(2, 4),
                OnlineSoftmaxState.identity((2, 1)),
                torch.zeros(2, 3),
                OnlineSoftmaxState.identity((2, 1)),
            ),
            ValueError,
            r"o_a and o_b must have the same shape, got \(2, 4\) and \(2, 3\)",
        ),
        (
            lambda: merge_partials(
                torch.zeros(2, 4),
                OnlineSoftmaxState.identity((3, 1)),
                torch.zeros(2, 4),
                OnlineSoftmaxState.identity((3, 1)),
            ),
            ValueError,
            r"m must have shape \(2, 1\).*got \(3, 1\)",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
