"""attnkit.sparse against oracles: every mask builder against its set written out from the
definition (Python loops over i, j), every computation against dense masked attention
(attnkit.core and torch SDPA with the mask), gradients against autograd through the dense path
and gradcheck, costs against the mask's count, reachability against boolean matrix powers,
FlexAttention's own create_mask / flex_attention against the attnkit masks."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import sparse as sp
from attnkit.core import scaled_dot_product_attention as core_sdpa

SETTINGS = settings(max_examples=25, deadline=None)


def from_sets(n, S):
    """The (n, n) mask whose row i is the set S(i)."""
    m = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in S(i):
            m[i, j] = True
    return m


# ---------------------------------------------------------------- builders = their sets


@SETTINGS
@given(n=st.integers(1, 40), half=st.integers(1, 8), dilation=st.integers(1, 4), causal=st.booleans())
def test_sliding_window_is_its_set(n, half, dilation, causal):
    w = 2 * half
    if causal:
        S = lambda i: [j for j in range(n) if 0 <= i - j < dilation * w and (i - j) % dilation == 0]  # noqa: E731
    else:
        S = lambda i: [j for j in range(n) if abs(i - j) <= dilation * half and (i - j) % dilation == 0]  # noqa: E731
    assert torch.equal(sp.sliding_window_mask(n, w, causal, dilation), from_sets(n, S))


def test_sliding_window_counts_match_the_references():
    # not causal: window + 1 keys (HF Longformer 2 * (w/2) + 1); causal: the w most recent keys
    m = sp.sliding_window_mask(64, 8)
    assert int(m[32].sum()) == 9
    c = sp.sliding_window_mask(64, 8, causal=True)
    assert int(c[32].sum()) == 8 and c[32, 25] and not c[32, 24]
    assert sp.sliding_window_mask(64, 5, causal=True)[40].sum() == 5  # odd windows are fine when causal


@SETTINGS
@given(n=st.integers(1, 40), l=st.integers(1, 9), causal=st.booleans())
def test_strided_heads_are_their_sets(n, l, causal):
    if causal:
        A1 = lambda i: range(max(0, i - l), i + 1)  # noqa: E731
        A2 = lambda i: [j for j in range(i + 1) if (i - j) % l == 0]  # noqa: E731
    else:
        A1 = lambda i: [j for j in range(n) if abs(i - j) <= l]  # noqa: E731
        A2 = lambda i: [j for j in range(n) if (i - j) % l == 0]  # noqa: E731
    a1, a2 = from_sets(n, A1), from_sets(n, A2)
    assert torch.equal(sp.strided_mask(n, l, causal, head=1), a1)
    assert torch.equal(sp.strided_mask(n, l, causal, head=2), a2)
    assert torch.equal(sp.strided_mask(n, l, causal), a1 | a2)


@SETTINGS
@given(n=st.integers(1, 40), l=st.integers(1, 9), c=st.integers(1, 9), causal=st.booleans())
def test_fixed_heads_are_their_sets(n, l, c, causal):
    c = min(c, l)
    up = (lambda i: range(i + 1)) if causal else (lambda i: range(n))
    A1 = lambda i: [j for j in up(i) if j // l == i // l]  # noqa: E731
    A2 = lambda i: [j for j in up(i) if l - c <= j % l <= l - 1]  # noqa: E731
    a1, a2 = from_sets(n, A1), from_sets(n, A2)
    assert torch.equal(sp.fixed_mask(n, l, c, causal, head=1), a1)
    assert torch.equal(sp.fixed_mask(n, l, c, causal, head=2), a2)
    assert torch.equal(sp.fixed_mask(n, l, c, causal), a1 | a2)


@SETTINGS
@given(nq=st.integers(1, 6), nk=st.integers(1, 6), b=st.integers(1, 5), cut=st.integers(0, 4), seed=st.integers(0, 99))
def test_block_sparse_mask_expands_the_layout(nq, nk, b, cut, seed):
    layout = torch.rand(nq, nk, generator=torch.Generator().manual_seed(seed)) < 0.5
    L, S = max(1, nq * b - min(cut, b - 1)), max(1, nk * b - min(cut, b - 1))  # ragged last blocks
    want = torch.zeros(L, S, dtype=torch.bool)
    for i in range(L):
        for j in range(S):
            want[i, j] = bool(layout[i // b, j // b])
    assert torch.equal(sp.block_sparse_mask(layout, b, L, S), want)


@SETTINGS
@given(n=st.integers(1, 40), half=st.integers(1, 5), data=st.data(), causal=st.booleans())
def test_longformer_is_window_plus_symmetric_globals(n, half, data, causal):
    G = set(data.draw(st.lists(st.integers(0, n - 1), max_size=4)))
    w = 2 * half
    win = (lambda i, j: 0 <= i - j < w) if causal else (lambda i, j: abs(i - j) <= half)
    S = lambda i: [j for j in range(n) if (win(i, j) or i in G or j in G) and (j <= i or not causal)]  # noqa: E731
    assert torch.equal(sp.longformer_mask(n, w, sorted(G), causal), from_sets(n, S))


@SETTINGS
@given(nb=st.integers(1, 14), w=st.sampled_from([1, 3, 5]), g=st.sampled_from([0, 2, 4]), r=st.integers(0, 4),
       seed=st.integers(0, 5))
def test_bigbird_layout_structure(nb, w, g, r, seed):
    lay = sp.bigbird_layout(nb, w, g, r, seed)
    glob = [b for b in range(nb) if b < g // 2 or b >= nb - g // 2]
    for row in range(nb):
        if row in glob:
            assert lay[row].all()
            continue
        base = {c for c in range(nb) if abs(row - c) <= w // 2} | set(glob)
        assert all(lay[row, c] for c in base)
        extra = [c for c in range(nb) if lay[row, c] and c not in base]
        assert len(extra) == min(r, nb - len(base))  # r random blocks drawn from the rest
    for c in glob:
        assert lay[:, c].all()
    assert torch.equal(lay, sp.bigbird_layout(nb, w, g, r, seed))  # reproducible


def test_bigbird_seed_changes_random_blocks_and_mask_expands_layout():
    a, b = sp.bigbird_layout(16, seed=0), sp.bigbird_layout(16, seed=1)
    assert not torch.equal(a, b) and a.sum() == b.sum()
    m = sp.bigbird_mask(61, 4, seed=3)  # ragged: 16 blocks, the last of 1 token
    lay = sp.bigbird_layout(16, seed=3)
    assert torch.equal(m, lay.repeat_interleave(4, 0).repeat_interleave(4, 1)[:61, :61])
    assert sp.bigbird_full_attention_length(64, 3) == 704


@pytest.mark.parametrize("call, match", [
    (lambda: sp.sliding_window_mask(10, 3), "window must be even"),
    (lambda: sp.sliding_window_mask(10, 0), "window must be an int >= 1, got 0"),
    (lambda: sp.sliding_window_mask(10, 2.0), "window must be an int"),
    (lambda: sp.fixed_mask(10, 4, 5), "summary must be <= block"),
    (lambda: sp.strided_mask(10, 3, head=3), "head must be None, 1 or 2"),
    (lambda: sp.block_sparse_mask(torch.ones(2, 2), 4, 9, 8), r"layout has shape \(2, 2\), expected \(3, 2\)"),
    (lambda: sp.longformer_mask(10, 4, [10]), r"global_idx must lie in \[0, 10\)"),
    (lambda: sp.bigbird_layout(8, num_window_blocks=2), "num_window_blocks must be odd"),
    (lambda: sp.bigbird_layout(8, num_global_blocks=3), "num_global_blocks must be even"),
    (lambda: sp.pattern_mask("diagonal", 8), "pattern must be one of"),
    (lambda: sp.pattern_mask("sliding_window", 8, window=2, stride=3), "unexpected arguments"),
    (lambda: sp.receptive_field(torch.ones(3, 4, dtype=torch.bool), 2), "square bool"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---------------------------------------------------------------- computations = dense masked attention


def qkv(shape, dtype, seed, grad=False):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g, dtype=dtype).requires_grad_(grad) for _ in range(3))


def assert_equals_dense(fn, mask, shape, dtype, seed, key_mask=None):
    """fn(q, k, v) equals attnkit.core under `mask` (and torch SDPA on rows that see a key), grads too."""
    q, k, v = qkv(shape, dtype, seed, grad=True)
    full = mask if key_mask is None else mask & key_mask[..., None, :]
    ref = core_sdpa(q, k, v, attn_mask=full)
    out = fn(q, k, v)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(out, ref, **tol)
    alive = full.expand(*shape[:-1], shape[-2]).any(-1)
    torch_ref = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
    torch.testing.assert_close(out[alive], torch_ref[alive], **tol)
    if not alive.all():
        assert (out[~alive] == 0).all()
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), g)
    want = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(got, want, strict=True):
        assert not torch.isnan(a).any()
        torch.testing.assert_close(a, b, **tol)


DTYPES = st.sampled_from([torch.float32, torch.float64])


@SETTINGS
@given(n=st.integers(1, 45), half=st.integers(1, 6), dilation=st.integers(1, 3), causal=st.booleans(),
       chunk=st.integers(1, 20), dtype=DTYPES, seed=st.integers(0, 999))
def test_sliding_window_attention_equals_dense(n, half, dilation, causal, chunk, dtype, seed):
    w = 2 * half
    mask = sp.sliding_window_mask(n, w, causal, dilation)
    assert_equals_dense(lambda q, k, v: sp.sliding_window_attention(q, k, v, w, causal, dilation, chunk=chunk),
                        mask, (2, 2, n, 4), dtype, seed)


@SETTINGS
@given(n=st.integers(2, 30), half=st.integers(1, 4), causal=st.booleans(), seed=st.integers(0, 999))
def test_sliding_window_with_key_mask_and_fully_masked_rows(n, half, causal, seed):
    g = torch.Generator().manual_seed(seed)
    key_mask = torch.rand(2, 1, n, generator=g) < 0.4  # some rows see no key at all
    mask = sp.sliding_window_mask(n, 2 * half, causal)
    assert_equals_dense(lambda q, k, v: sp.sliding_window_attention(q, k, v, 2 * half, causal, key_mask=key_mask),
                        mask, (2, 1, n, 3), torch.float64, seed, key_mask=key_mask)


@SETTINGS
@given(nq=st.integers(1, 5), nk=st.integers(1, 5), b=st.integers(1, 6), seed=st.integers(0, 999), dtype=DTYPES,
       causal=st.booleans())
def test_block_sparse_attention_equals_dense(nq, nk, b, seed, dtype, causal):
    g = torch.Generator().manual_seed(seed)
    L, S = nq * b - int(torch.randint(0, b, (1,), generator=g)), nk * b - int(torch.randint(0, b, (1,), generator=g))
    layout = torch.rand(nq, nk, generator=g) < 0.5  # empty block rows give zero rows
    layout[0, -1] = True  # at least one kept block (an empty layout gives zeros, with no graph)
    mod = (lambda i, j: j <= i) if causal else None
    mask = sp.block_sparse_mask(layout, b, L, S)
    if causal:
        mask = mask & torch.ones(L, S, dtype=torch.bool).tril()
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, L, 4, generator=gen, dtype=dtype, requires_grad=True)
    k = torch.randn(2, S, 4, generator=gen, dtype=dtype, requires_grad=True)
    v = torch.randn(2, S, 3, generator=gen, dtype=dtype, requires_grad=True)
    out = sp.block_sparse_attention(q, k, v, layout, b, mod)
    ref = core_sdpa(q, k, v, attn_mask=mask)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(out, ref, **tol)
    gr = torch.randn_like(out)
    for a, c in zip(torch.autograd.grad(out, (q, k, v), gr), torch.autograd.grad(ref, (q, k, v), gr), strict=True):
        torch.testing.assert_close(a, c, **tol)


@SETTINGS
@given(n=st.integers(1, 40), half=st.integers(1, 4), dilation=st.integers(1, 2), causal=st.booleans(), data=st.data(),
       dtype=DTYPES)
def test_longformer_attention_equals_dense(n, half, dilation, causal, data, dtype):
    G = sorted(set(data.draw(st.lists(st.integers(0, n - 1), max_size=3))))
    mask = sp.longformer_mask(n, 2 * half, G, causal, dilation)
    assert_equals_dense(lambda q, k, v: sp.longformer_attention(q, k, v, 2 * half, G, causal, dilation),
                        mask, (1, 2, n, 4), dtype, data.draw(st.integers(0, 999)))


@SETTINGS
@given(n=st.integers(1, 60), b=st.integers(2, 6), r=st.integers(0, 3), seed=st.integers(0, 9), causal=st.booleans(),
       dtype=DTYPES)
def test_bigbird_attention_equals_dense(n, b, r, seed, causal, dtype):
    mask = sp.bigbird_mask(n, b, num_random_blocks=r, seed=seed)
    if causal:
        mask = mask & torch.ones(n, n, dtype=torch.bool).tril()
    assert_equals_dense(lambda q, k, v: sp.bigbird_attention(q, k, v, b, num_random_blocks=r, seed=seed, causal=causal),
                        mask, (1, 2, n, 4), dtype, seed)


@pytest.mark.parametrize("pattern, args", [("strided", dict(stride=5)), ("fixed", dict(block=6, summary=2)),
                                           ("strided", dict(stride=4)), ("fixed", dict(block=5, summary=1))])
@pytest.mark.parametrize("n, causal", [(23, True), (30, False)])
def test_strided_and_fixed_by_name_equal_dense(pattern, args, n, causal):
    mask = sp.pattern_mask(pattern, n, causal, **args)
    assert torch.equal(mask, (sp.strided_mask(n, args["stride"], causal) if pattern == "strided"
                              else sp.fixed_mask(n, args["block"], args["summary"], causal)))
    assert_equals_dense(lambda q, k, v: sp.sparse_attention(q, k, v, pattern, causal, **args), mask, (2, 2, n, 4),
                        torch.float64, n)


def test_gradcheck_float64():
    q, k, v = qkv((1, 1, 11, 3), torch.float64, 0, grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: sp.sliding_window_attention(a, b, c, 4, True, 2, chunk=3), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: sp.longformer_attention(a, b, c, 2, [0, 7]), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: sp.bigbird_attention(a, b, c, 3, num_random_blocks=1), (q, k, v))


def test_computation_input_errors():
    q = torch.randn(1, 8, 4)
    with pytest.raises(ValueError, match="self-attention"):
        sp.sliding_window_attention(q, torch.randn(1, 9, 4), torch.randn(1, 9, 4), 2)
    with pytest.raises(TypeError, match="key_mask must be a bool"):
        sp.sliding_window_attention(q, q, q, 2, key_mask=torch.ones(1, 8))
    with pytest.raises(ValueError, match="key_mask has shape"):
        sp.sliding_window_attention(q, q, q, 2, key_mask=torch.ones(1, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="dtype"):
        sp.sliding_window_attention(q, q.double(), q, 2)


def test_window_memory_is_linear_in_n():
    """Peak extra bytes (attnkit.flash.measure_peak_bytes) of the chunked window: about 2x per
    doubling of N and far below the dense math path, which holds (N, N) scores."""
    from attnkit.flash import measure_peak_bytes

    peaks, dense = [], []
    for n in (512, 1024, 2048):
        q, k, v = qkv((1, 1, n, 32), torch.float32, 0)
        mask = sp.sliding_window_mask(n, 32, causal=True)
        peaks.append(measure_peak_bytes(sp.sliding_window_attention, q, k, v, 32, True)[1])
        dense.append(measure_peak_bytes(core_sdpa, q, k, v, attn_mask=mask)[1])
    assert 1.6 < peaks[1] / peaks[0] < 2.2 and 1.7 < peaks[2] / peaks[1] < 2.2
    assert dense[2] > 40 * peaks[2]
    assert dense[2] >= 2048 * 2048 * 4  # the dense path holds at least one (N, N) float32 matrix


# ---------------------------------------------------------------- the module


@pytest.mark.parametrize("pattern, args", [
    ("sliding_window", dict(window=4)), ("sliding_window", dict(window=4, dilation=2)),
    ("strided", dict(stride=4)), ("fixed", dict(block=4, summary=1)),
    ("block_sparse", dict(layout=torch.eye(5, dtype=torch.bool) | torch.eye(5, dtype=torch.bool).roll(1, 0), block=4)),
    ("longformer", dict(window=4, global_idx=[0])), ("bigbird", dict(block=4, num_random_blocks=1)),
])
@pytest.mark.parametrize("is_causal", [False, True])
def test_module_equals_torch_multihead_attention_with_the_mask(pattern, args, is_causal):
    torch.manual_seed(0)
    n, E, H = 18, 16, 4
    m = sp.SparseAttention(E, H, pattern=pattern, **args).double()
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(m.qkv.weight)
        ref.in_proj_bias.copy_(m.qkv.bias)
        ref.out_proj.weight.copy_(m.out_proj.weight)
        ref.out_proj.bias.copy_(m.out_proj.bias)
    x = torch.randn(2, n, E, dtype=torch.float64)
    pad = torch.zeros(2, n, dtype=torch.bool)
    pad[1, -3:] = True  # padding at the end of the second sequence
    allowed = sp.pattern_mask(pattern, n, is_causal, **args)
    assert allowed.diagonal().all()  # every pattern here keeps the diagonal (torch gives NaN on empty rows)
    want, _ = ref(x, x, x, attn_mask=~allowed, key_padding_mask=pad, need_weights=False)
    got = m(x, key_padding_mask=~pad, is_causal=is_causal)  # attnkit: True = real token
    torch.testing.assert_close(got[0], want[0])
    # second sequence: rows that see a real key; a row whose visible keys are all padding gets
    # zeros before out_proj (torch: NaN)
    visible = (allowed & ~pad[1][None, :]).any(-1)
    torch.testing.assert_close(got[1][visible], want[1][visible])
    torch.testing.assert_close(got[1][~visible], m.out_proj.bias.expand(int((~visible).sum()), E))
    extra = torch.ones(n, n, dtype=torch.bool).tril(2)  # an attn_mask takes the dense path
    want2, _ = ref(x, x, x, attn_mask=~(allowed & extra), need_weights=False)
    torch.testing.assert_close(m(x, attn_mask=extra, is_causal=is_causal), want2)


def test_module_accepts_global_tokens_beyond_64():
    m = sp.SparseAttention(8, 2, pattern="longformer", window=4, global_idx=[100])
    x = torch.randn(1, 120, 8)
    assert m(x).shape == (1, 120, 8)


def test_module_errors():
    with pytest.raises(ValueError, match="must divide embed_dim"):
        sp.SparseAttention(10, 3, window=2)
    with pytest.raises(ValueError, match="pattern must be one of"):
        sp.SparseAttention(8, 2, pattern="random")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, 8\)"):
        sp.SparseAttention(8, 2, window=2)(torch.randn(2, 5, 6))


# ---------------------------------------------------------------- costs, reachability, the furthest vector


@SETTINGS
@given(n=st.integers(1, 70), a=st.integers(1, 9), b=st.integers(1, 9), d=st.integers(1, 3), causal=st.booleans())
def test_pattern_pairs_equal_the_mask_count(n, a, b, d, causal):
    cases = [("sliding_window", dict(window=2 * a, dilation=d)), ("strided", dict(stride=a)),
             ("fixed", dict(block=a, summary=min(a, b))),
             ("bigbird", dict(block=a, num_random_blocks=b % 3)), ("longformer", dict(window=2 * a, global_idx=[0])),
             ("longformer", dict(window=2 * a, global_idx=sorted({n - 1, (a * b) % n, b % n}))),
             ("block_sparse", dict(block=a, layout=torch.rand(-(-n // a), -(-n // a),
                                                              generator=torch.Generator().manual_seed(b)) < 0.5))]
    for pattern, args in cases:
        assert sp.pattern_pairs(pattern, n, causal, **args) == int(sp.pattern_mask(pattern, n, causal, **args).sum())


def test_window_pairs_closed_form():
    # not causal, n > w/2: n (w + 1) - (w/2)(w/2 + 1); causal, n >= w: n w - w (w - 1) / 2
    for n, w in ((100, 8), (1000, 256), (37, 6)):
        h = w // 2
        assert sp.pattern_pairs("sliding_window", n, window=w) == n * (w + 1) - h * (h + 1)
        assert sp.pattern_pairs("sliding_window", n, True, window=w) == n * w - w * (w - 1) // 2


def test_attention_cost_formulas():
    c = sp.attention_cost(pairs=1000, n=100, head_dim=64, heads=2, batch=3, dtype_bytes=2)
    assert c == {"pairs": 1000, "flops": 4 * 1000 * 64 * 6, "score_bytes": 1000 * 6 * 2, "io_bytes": 4 * 100 * 64 * 6 * 2}
    with pytest.raises(ValueError, match="pairs must be an int >= 0, got -1"):
        sp.attention_cost(-1, 10, 4)


def _reach_oracle(mask, layers, query):
    step = (mask | torch.eye(mask.shape[0], dtype=torch.bool)).long()
    power = torch.linalg.matrix_power(step, layers) > 0  # paths of length `layers` with stays allowed
    return int(power[query].sum())


@SETTINGS
@given(n=st.integers(2, 30), seed=st.integers(0, 999), layers=st.integers(1, 5))
def test_receptive_field_is_reachability(n, seed, layers):
    mask = torch.rand(n, n, generator=torch.Generator().manual_seed(seed)) < 0.1
    sizes = sp.receptive_field(mask, layers, query=n - 1)
    assert sizes.tolist() == [_reach_oracle(mask, l, n - 1) for l in range(1, layers + 1)]
    first = sp.layers_to_connect(mask, 0, n - 1, max_layers=layers)
    hits = [l for l in range(1, layers + 1) if (torch.linalg.matrix_power((mask | torch.eye(n, dtype=torch.bool)).long(), l) > 0)[n - 1, 0]]
    assert first == (hits[0] if hits else None)


def test_layers_to_connect_causal_window_closed_form():
    # each layer reaches w - 1 positions further back: ceil((n - 1) / (w - 1)) layers
    for n, w in ((64, 8), (100, 5), (33, 32)):
        assert sp.layers_to_connect(sp.sliding_window_mask(n, w, True)) == math.ceil((n - 1) / (w - 1))
    blocks = sp.block_sparse_mask(torch.eye(4, dtype=torch.bool), 4)  # disconnected blocks: never
    assert sp.layers_to_connect(blocks) is None


def test_furthest_vector_accuracy_tracks_pairs_kept():
    full = sp.furthest_vector_accuracy(None)
    assert full > 0.9
    for mask in (sp.sliding_window_mask(256, 8), sp.sliding_window_mask(256, 64), sp.bigbird_mask(256, 8)):
        acc, kept = sp.furthest_vector_accuracy(mask), mask.double().mean().item()
        assert acc < 0.5 and abs(acc - kept) < 0.1


# ---------------------------------------------------------------- FlexAttention


FLEX_CASES = [("sliding_window", dict(window=8), False), ("sliding_window", dict(window=6, dilation=2), True),
              ("strided", dict(stride=5), True), ("fixed", dict(block=6, summary=2), False),
              ("block_sparse", dict(layout=torch.rand(6, 6, generator=torch.Generator().manual_seed(0)) < 0.4, block=8), True),
              ("longformer", dict(window=4, global_idx=[0, 17]), False), ("bigbird", dict(block=8), False)]


@pytest.mark.parametrize("pattern, args, causal", FLEX_CASES)
def test_flex_mask_mod_equals_the_attnkit_mask(pattern, args, causal):
    from torch.nn.attention.flex_attention import create_mask

    n = 45
    if pattern == "block_sparse":
        n = 48
    mod = sp.flex_mask_mod(pattern, n, causal, **args)
    dense = create_mask(mod, None, None, n, n, device="cpu")[0, 0]  # FlexAttention's own vmap over (i, j)
    mask = sp.pattern_mask(pattern, n, causal, **args)
    assert torch.equal(dense, mask)
    # its BlockMask keeps exactly the 16 x 16 blocks that hold a True pair (ragged last block)
    blocks = sp.flex_block_mask(pattern, n, causal, block_size=16, **args).to_dense()[0, 0].bool()
    nb = -(-n // 16)
    padded = torch.zeros(nb * 16, nb * 16, dtype=torch.bool)
    padded[:n, :n] = mask
    assert torch.equal(blocks, padded.view(nb, 16, nb, 16).any(dim=(1, 3)))


def test_flex_block_mask_and_eager_flex_attention_equal_attnkit():
    from torch.nn.attention.flex_attention import flex_attention

    n, block = 64, 16
    mask = sp.sliding_window_mask(n, 16, causal=True)
    bm = sp.flex_block_mask("sliding_window", n, True, block_size=block, window=16)
    blocks = bm.to_dense()[0, 0]  # (nb, nb) block level
    want = mask.view(n // block, block, n // block, block).any(dim=(1, 3))
    assert torch.equal(blocks.bool(), want)
    q, k, v = qkv((1, 2, n, 8), torch.float32, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # eager flex warns that it is unfused
        out = flex_attention(q, k, v, block_mask=bm)
    torch.testing.assert_close(out, core_sdpa(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out, sp.sliding_window_attention(q, k, v, 16, True), atol=1e-5, rtol=1e-4)


def test_module_takes_an_odd_window_for_a_causal_forward_and_refuses_it_without():
    # an odd window is a valid causal window ({j : i - w < j <= i}); only a non-causal forward,
    # where the window must split evenly around the query, refuses it, naming the window
    torch.manual_seed(0)
    m = sp.SparseAttention(16, 2, pattern="sliding_window", window=5)
    x = torch.randn(2, 12, 16)
    q, k, v = m.qkv(x).view(2, 12, 3, 2, 8).permute(2, 0, 3, 1, 4)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=sp.sliding_window_mask(12, 5, causal=True))
    assert torch.allclose(m(x, is_causal=True), m.out_proj(ref.transpose(1, 2).reshape(2, 12, 16)), atol=1e-6)
    with pytest.raises(ValueError, match="window must be even"):
        m(x)
    with pytest.raises(ValueError, match="window"):
        sp.SparseAttention(16, 2, pattern="sliding_window", window=0)


@pytest.mark.parametrize("pattern, args", [("sliding_window", dict(window=4)), ("longformer", dict(window=4, global_idx=[0])),
                                           ("fixed", dict(block=4, summary=1))])
def test_key_padding_mask_means_real_token_in_the_module_as_in_the_functions(pattern, args):
    """One mask, one meaning: the module's key_padding_mask (True = real token) gives what
    sparse_attention gives with the same mask as key_mask, and what dense SDPA gives with the
    pattern's mask and the padding removed as keys."""
    torch.manual_seed(0)
    n, E, H = 12, 8, 2
    m = sp.SparseAttention(E, H, pattern=pattern, **args).double()
    x = torch.randn(2, n, E, dtype=torch.float64)
    real = torch.ones(2, n, dtype=torch.bool)
    real[1, -5:] = False  # five padding tokens at the end of the second sequence
    q, k, v = m.qkv(x).view(2, n, 3, H, E // H).permute(2, 0, 3, 1, 4)  # (B, H, N, D)
    functional = sp.sparse_attention(q, k, v, pattern, key_mask=real[:, None, :], **args)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=sp.pattern_mask(pattern, n, **args) & real[:, None, None, :])
    out = m(x, key_padding_mask=real)
    torch.testing.assert_close(functional, dense)
    torch.testing.assert_close(out, m.out_proj(functional.transpose(1, 2).reshape(2, n, E)))
    assert not torch.allclose(out, m(x, key_padding_mask=~real))  # the opposite mask is a different answer
