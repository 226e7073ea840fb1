"""attnkit.flash against PyTorch's scaled_dot_product_attention, autograd and closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import attnkit.flash as flash
from attnkit.core import scaled_dot_product_attention as plain_attention  # builds the N x N matrix
from attnkit.flash import (
    causal_tile_kind,
    flash_attention,
    io_flash,
    io_standard,
    measure_peak_bytes,
    online_update,
    sram_block_sizes,
    tile_schedule,
    trace_row,
)

ORDERS = ["v1", "v2"]


def _qkv(shape_q, S, Dv=None, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    *batch, L, D = shape_q
    Dv = D if Dv is None else Dv
    mk = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    return mk(*batch, L, D), mk(*batch, S, D), mk(*batch, S, Dv)


def _alibi_mask(slopes, L, S, is_causal, dtype):
    """The explicit ALiBi bias -slope * |i - j| (plus -inf above the diagonal when causal)."""
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    bias = -slopes[..., None, None].to(dtype) * (i - j).abs().to(dtype)  # (..., H, L, S)
    if is_causal:
        bias = bias.masked_fill(j > i, float("-inf"))
    return bias


# ---------------------------------------------------------------------------------- forward


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 2),
    H=st.integers(1, 3),
    L=st.integers(1, 40),
    S=st.integers(1, 40),
    D=st.integers(1, 12),
    Dv=st.integers(1, 12),
    block_q=st.integers(1, 17),
    block_k=st.integers(1, 17),
    is_causal=st.booleans(),
    loop_order=st.sampled_from(ORDERS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_forward_equals_sdpa(B, H, L, S, D, Dv, block_q, block_k, is_causal, loop_order, dtype, seed):
    q, k, v = _qkv((B, H, L, D), S, Dv, dtype=dtype, seed=seed)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    out = flash_attention(q, k, v, is_causal, block_q, block_k, loop_order=loop_order)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("loop_order", ORDERS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("slope_shape", ["heads", "batch_heads"])
def test_alibi_equals_explicit_bias(loop_order, is_causal, slope_shape):
    B, H, L, S = 2, 3, 23, 19
    q, k, v = _qkv((B, H, L, 8), S, 6, seed=3)
    slopes = torch.tensor([0.5, 0.125, 2.0 ** -5])
    if slope_shape == "batch_heads":
        slopes = torch.stack([slopes, 2 * slopes])  # (B, H)
    mask = _alibi_mask(slopes, L, S, is_causal, torch.float32)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = flash_attention(q, k, v, is_causal, 5, 7, alibi_slopes=slopes, loop_order=loop_order)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=is_causal))


def test_alibi_agrees_with_chapter_06_bias_for_self_attention():
    from attnkit.rope import alibi_bias, alibi_slopes

    q, k, v = _qkv((2, 4, 20, 8), 20, seed=4)
    for is_causal in (False, True):
        mask = alibi_bias(4, 20)  # (H, N, N), -m_h |i - j| when q_len == k_len
        if is_causal:
            mask = mask.masked_fill(torch.ones(20, 20, dtype=torch.bool).triu(1), float("-inf"))
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = flash_attention(q, k, v, is_causal, 8, 6, alibi_slopes=alibi_slopes(4))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loop_order", ORDERS)
def test_scale_and_returned_logsumexp(loop_order):
    q, k, v = _qkv((2, 2, 13, 4), 11, seed=5)
    scale = 0.37
    out, lse = flash_attention(q, k, v, True, 4, 3, scale=scale, loop_order=loop_order, return_lse=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    scores = (q @ k.transpose(-2, -1) * scale).masked_fill(
        torch.ones(13, 11, dtype=torch.bool).triu(1), float("-inf")
    )
    assert lse.shape == (2, 2, 13)
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-5, rtol=1e-5)


def test_batch_broadcast_and_unbatched_inputs():
    q, _, _ = _qkv((2, 4, 9, 8), 1, seed=7)
    _, k, v = _qkv((1, 4, 1, 8), 12, seed=8)  # k, v shared over the batch
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(flash_attention(q, k, v, block_q=4, block_k=5), ref, atol=1e-5, rtol=1e-5)
    q2, k2, v2 = _qkv((9, 8), 12, seed=9)  # plain (L, D) matrices
    ref2 = F.scaled_dot_product_attention(q2, k2, v2, is_causal=True)
    torch.testing.assert_close(flash_attention(q2, k2, v2, True, 2, 3), ref2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_dtype(dtype):
    q, k, v = _qkv((1, 2, 17, 8), 17, seed=11)
    out = flash_attention(q.to(dtype), k.to(dtype), v.to(dtype), True, 8, 4)
    ref = F.scaled_dot_product_attention(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(), is_causal=True)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)


def test_large_scores_stay_finite():
    # exp(1000) overflows: only a max-subtracting (online) softmax gives the right answer.
    q, k, v = _qkv((1, 1, 8, 4), 9, seed=12)
    out = flash_attention(q * 300, k * 300, v, block_q=3, block_k=2)
    ref = F.scaled_dot_product_attention(q.double() * 300, k.double() * 300, v.double()).float()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_empty_key_set_gives_zeros():
    q = torch.randn(2, 5, 4)
    k, v = torch.randn(2, 0, 4), torch.randn(2, 0, 3)
    out, lse = flash_attention(q, k, v, block_q=2, block_k=2, return_lse=True)
    assert out.shape == (2, 5, 3) and torch.equal(out, torch.zeros(2, 5, 3))
    assert torch.isneginf(lse).all()


# ---------------------------------------------------------------------------------- backward


@pytest.mark.parametrize("loop_order", ORDERS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("use_alibi", [False, True])
def test_gradients_equal_autograd_through_plain_attention(loop_order, is_causal, use_alibi):
    B, H, L, S = 2, 2, 21, 18
    q, k, v = _qkv((B, H, L, 8), S, 5, seed=13, requires_grad=True)
    slopes = torch.tensor([0.25, 0.0625]) if use_alibi else None
    mask = _alibi_mask(slopes, L, S, is_causal, torch.float32) if use_alibi else None
    g = torch.randn(B, H, L, 5, generator=torch.Generator().manual_seed(14))

    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and not use_alibi)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    out = flash_attention(q, k, v, is_causal, 6, 4, alibi_slopes=slopes, loop_order=loop_order)
    grads = torch.autograd.grad(out, (q, k, v), g)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    L=st.integers(1, 20),
    S=st.integers(1, 20),
    block_q=st.integers(1, 9),
    block_k=st.integers(1, 9),
    is_causal=st.booleans(),
    loop_order=st.sampled_from(ORDERS),
    seed=st.integers(0, 2**16),
)
def test_gradients_property(L, S, block_q, block_k, is_causal, loop_order, seed):
    q, k, v = _qkv((2, L, 4), S, 3, dtype=torch.float64, seed=seed, requires_grad=True)
    g = torch.randn(2, L, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=is_causal), (q, k, v), g)
    out = flash_attention(q, k, v, is_causal, block_q, block_k, loop_order=loop_order)
    for got, want in zip(torch.autograd.grad(out, (q, k, v), g), ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("loop_order", ORDERS)
@pytest.mark.parametrize("is_causal", [False, True])
def test_gradcheck_float64(loop_order, is_causal):
    q, k, v = _qkv((1, 2, 5, 3), 4, 2, dtype=torch.float64, seed=15, requires_grad=True)
    slopes = torch.tensor([0.5, 0.25], dtype=torch.float64)

    def fn(q, k, v):
        return flash_attention(q, k, v, is_causal, 2, 3, alibi_slopes=slopes, loop_order=loop_order)

    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_backward_saves_no_score_matrix():
    # What autograd keeps for the backward: q, k, v, out and the log-sum-exp, all O(N d).
    L = S = 64
    q, k, v = _qkv((1, 1, L, 4), S, seed=16, requires_grad=True)
    out = flash_attention(q, k, v, block_q=8, block_k=8)
    saved = out.grad_fn.saved_tensors
    assert saved and all(t.numel() <= L * 4 for t in saved)
    assert max(t.numel() for t in saved) < L * S


# ---------------------------------------------------------------------------------- memory


class _LargestOutput(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("loop_order", ORDERS)
def test_no_op_creates_more_than_a_tile_of_scores(loop_order):
    N, D, bq, bk = 128, 8, 8, 16
    q, k, v = _qkv((1, 1, N, D), N, seed=17, requires_grad=True)
    with _LargestOutput() as fwd:
        out = flash_attention(q, k, v, True, bq, bk, loop_order=loop_order)
    with _LargestOutput() as bwd:
        out.sum().backward()
    bound = max(N * D, bq * bk)  # the O(N d) inputs/outputs, or one tile
    assert fwd.largest <= bound and bwd.largest <= bound
    with _LargestOutput() as plain:
        plain_attention(q, k, v, is_causal=True)
    assert plain.largest >= N * N  # the mode does see an N x N matrix when one is built


def test_tiled_peak_memory_grows_linearly():
    peaks_flash, peaks_plain = [], []
    for N in (256, 512):
        q, k, v = _qkv((1, 1, N, 16), N, seed=18)
        peaks_flash.append(measure_peak_bytes(flash_attention, q, k, v, block_q=32, block_k=32)[1])
        peaks_plain.append(measure_peak_bytes(plain_attention, q, k, v)[1])
    assert peaks_flash[1] / peaks_flash[0] < 2.3  # ~2x: linear
    assert peaks_plain[1] / peaks_plain[0] > 3.5  # ~4x: quadratic
    assert peaks_flash[1] < peaks_plain[1] / 4


# ---------------------------------------------------------------------------------- pieces


def test_online_update_over_tiles_equals_softmax():
    g = torch.Generator().manual_seed(19)
    s, v = torch.randn(3, 10, generator=g) * 5, torch.randn(10, 4, generator=g)
    m, l, acc = torch.full((3,), float("-inf")), torch.zeros(3), torch.zeros(3, 4)
    for a in range(0, 10, 3):
        m, l, acc = online_update(m, l, acc, s[:, a : a + 3], v[a : a + 3])
    torch.testing.assert_close(m, s.amax(-1))
    torch.testing.assert_close(l, torch.exp(s - s.amax(-1, keepdim=True)).sum(-1))
    torch.testing.assert_close(acc / l[:, None], torch.softmax(s, -1) @ v)


def test_causal_tile_kind_matches_brute_force():
    for qs in range(0, 7):
        for qe in range(qs + 1, 9):
            for ks in range(0, 7):
                for ke in range(ks + 1, 9):
                    seen = [j <= i for i in range(qs, qe) for j in range(ks, ke)]
                    want = "skip" if not any(seen) else "full" if all(seen) else "partial"
                    assert causal_tile_kind(qs, qe, ks, ke) == want, (qs, qe, ks, ke)


@pytest.mark.parametrize("L,S,bq,bk", [(10, 10, 3, 4), (16, 16, 4, 4), (7, 12, 5, 2)])
def test_tile_schedule_orders_and_skips(L, S, bq, bk):
    v1, skip1 = tile_schedule(L, S, bq, bk, True, "v1")
    v2, skip2 = tile_schedule(L, S, bq, bk, True, "v2")
    nq, nk = math.ceil(L / bq), math.ceil(S / bk)
    assert sorted((s["qi"], s["kj"]) for s in v1) == sorted((s["qi"], s["kj"]) for s in v2)
    assert sorted(skip1) == sorted(skip2)
    assert len(v1) + len(skip1) == nq * nk
    # v2 runs row of tiles after row of tiles, v1 column after column
    assert [s["qi"] for s in v2] == sorted(s["qi"] for s in v2)
    assert [s["kj"] for s in v1] == sorted(s["kj"] for s in v1)
    full, none = tile_schedule(L, S, bq, bk, False)
    assert len(full) == nq * nk and none == []


def test_forward_computes_only_scheduled_tiles(monkeypatch):
    calls = []
    real = flash._tile_scores

    def counting(q_blk, k_blk, scale, q_start=0, k_start=0, *a, **kw):
        calls.append((q_start, k_start))
        return real(q_blk, k_blk, scale, q_start, k_start, *a, **kw)

    monkeypatch.setattr(flash, "_tile_scores", counting)
    q, k, v = _qkv((1, 1, 16, 4), 16, seed=22)
    flash_attention(q, k, v, True, 4, 4)
    # 4 x 4 tiles, 6 strictly above the diagonal are skipped
    assert len(calls) == 10
    assert all(ks <= qs for qs, ks in calls)


@pytest.mark.parametrize("is_causal", [False, True])
def test_trace_row_ends_at_the_attention_output(is_causal):
    q, k, v = _qkv((12, 4), 12, 3, seed=23)
    row = 7
    trace = trace_row(q, k, v, row, block_k=5, is_causal=is_causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)[row]
    torch.testing.assert_close(trace[-1]["out"], ref)
    scores = (q[row] @ k.T) / 2.0
    for step in trace:
        seen = min(step["k"][1], row + 1) if is_causal else step["k"][1]
        assert step["m"] == pytest.approx(scores[:seen].max().item(), rel=1e-6)
    assert len(trace) == (2 if is_causal else 3)


# ---------------------------------------------------------------------------------- IO model


def test_io_standard_closed_form():
    assert io_standard(4, 2) == {"reads": 3 * 8 + 2 * 16, "writes": 8 + 2 * 16, "total": 4 * 8 + 4 * 16}
    big = [io_standard(N, 64)["total"] for N in (4096, 8192)]
    assert 3.9 < big[1] / big[0] < 4.0  # Theta(N^2) once N >> d


def test_sram_block_sizes():
    assert sram_block_sizes(4096, 16) == (16, 64)
    assert sram_block_sizes(1000, 64) == (4, 4)


def test_io_flash_counts():
    # N=8, d=2, B_r=2, B_c=4: T_c = 2 K/V blocks
    r = io_flash(8, 2, block_q=2, block_k=4, loop_order="v1")
    assert r["reads"] == 2 * 16 + 2 * (2 * 16 + 16) and r["writes"] == 2 * (16 + 16)
    r2 = io_flash(8, 2, block_q=2, block_k=4, loop_order="v2")
    assert r2["reads"] == 16 + 4 * 32 and r2["writes"] == 16 + 8
    assert io_flash(8, 2, M=32) == io_flash(8, 2, block_q=2, block_k=4)


def test_io_flash_follows_theorem_2():
    d = 64
    ratios = []
    for N in (1024, 4096, 16384):
        # Theorem 2's regime d <= M <= N d (here M <= N d / 4: at least 4 K/V blocks)
        for M in [M for M in (2**12, 2**14, 2**16, 2**18) if M <= N * d // 4]:
            ratios.append(io_flash(N, d, M=M)["total"] / (N * N * d * d / M))
            if M >= 4 * d * d:  # enough on-chip memory: tiling moves fewer bytes
                assert io_flash(N, d, M=M)["total"] < io_standard(N, d)["total"]
    assert len(ratios) == 9 and max(ratios) / min(ratios) < 1.1  # Theta(N^2 d^2 / M)
    # more on-chip memory, fewer passes
    totals = [io_flash(4096, d, M=M)["total"] for M in (2**14, 2**15, 2**16)]
    assert totals[0] > totals[1] > totals[2]


# ---------------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    q, k, v = _qkv((1, 2, 8, 4), 8)
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, k, v, block_q=0)
    with pytest.raises(TypeError, match="block_k"):
        flash_attention(q, k, v, block_k=2.5)
    with pytest.raises(ValueError, match="loop_order"):
        flash_attention(q, k, v, loop_order="v3")
    with pytest.raises(ValueError, match="k has shape"):
        flash_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="v has shape"):
        flash_attention(q, k, v[..., :5, :])
    with pytest.raises(TypeError, match="dtype"):
        flash_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        flash_attention(q.tolist(), k, v)
    with pytest.raises(ValueError, match=r"alibi_slopes has shape \(3,\)"):
        flash_attention(q, k, v, alibi_slopes=torch.ones(3))
    with pytest.raises(TypeError, match="alibi_slopes"):
        flash_attention(q, k, v, alibi_slopes=[0.5, 0.25])
    with pytest.raises(ValueError, match="row"):
        trace_row(q[0, 0], k[0, 0], v[0, 0], row=8, block_k=2)
    with pytest.raises(ValueError, match="M"):
        io_flash(16, 4)
    with pytest.raises(ValueError, match="N"):
        io_standard(0, 4)
