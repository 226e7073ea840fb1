"""attnkit.core against torch.nn.functional.scaled_dot_product_attention, autograd and closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.core import causal_mask, padding_mask, scaled_dot_product_attention

TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 2e-2}


def rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@settings(max_examples=40, deadline=None)
@given(batch=st.lists(st.integers(1, 3), min_size=0, max_size=2), L=st.integers(1, 9),
       S=st.integers(1, 9), E=st.integers(1, 12), Ev=st.integers(1, 12),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
       mask_kind=st.sampled_from(["none", "bool", "float", "causal", "bool+causal", "bool_bcast"]),
       seed=st.integers(0, 10_000))
def test_matches_torch_sdpa(batch, L, S, E, Ev, dtype, mask_kind, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, L, E, generator=g).to(dtype)
    k = torch.randn(*batch, S, E, generator=g).to(dtype)
    v = torch.randn(*batch, S, Ev, generator=g).to(dtype)
    kwargs = {}
    if mask_kind in ("bool", "bool+causal"):
        kwargs["attn_mask"] = torch.rand(*batch, L, S, generator=g) > 0.3
    if mask_kind == "bool_bcast":  # (1, S) broadcast over batch and queries
        kwargs["attn_mask"] = torch.rand(1, S, generator=g) > 0.3
    if mask_kind == "float":
        kwargs["attn_mask"] = torch.randn(L, S, generator=g).to(dtype)
    if mask_kind in ("causal", "bool+causal"):
        kwargs["is_causal"] = True
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    if mask_kind == "bool+causal":  # torch's math path refuses both for non-4-D inputs: combine by hand
        kwargs = {"attn_mask": kwargs["attn_mask"] & torch.ones(L, S, dtype=torch.bool).tril()}
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert not torch.isnan(ours).any()
    torch.testing.assert_close(ours.float(), ref.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("L,S", [(3, 7), (7, 3), (1, 5), (5, 5)])
def test_is_causal_aligned_top_left_like_torch(L, S):
    q, k, v = rand(2, L, 8), rand(2, S, 8, seed=1), rand(2, S, 4, seed=2)
    ours, w = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    allowed = torch.ones(L, S, dtype=torch.bool).tril()  # PyTorch's documented reference
    assert (w[:, ~allowed] == 0).all()


def test_mask_and_causal_combine_like_torch():
    q, k, v = rand(1, 2, 5, 4), rand(1, 2, 5, 4, seed=1), rand(1, 2, 5, 4, seed=2)
    m = rand(5, 5, seed=3) > 0
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_gives_zeros_like_torch(dtype, kind):
    q, k, v = rand(1, 4, 8, dtype=dtype), rand(1, 6, 8, dtype=dtype, seed=1), rand(1, 6, 3, dtype=dtype, seed=2)
    allowed = torch.ones(4, 6, dtype=torch.bool)
    allowed[1] = False
    mask = allowed if kind == "bool" else torch.zeros(4, 6, dtype=dtype).masked_fill(~allowed, float("-inf"))
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[0, 1], torch.zeros(3, dtype=dtype))
    assert torch.equal(w[0, 1], torch.zeros(6, dtype=dtype))
    torch.testing.assert_close(out.float(), ref.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_weights_are_the_softmax_of_the_scaled_scores():
    q, k, v = rand(2, 3, 5, 16), rand(2, 3, 7, 16, seed=1), rand(2, 3, 7, 4, seed=2)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True, scale=0.3)
    expected = torch.softmax(q @ k.transpose(-2, -1) * 0.3, dim=-1)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_default_scale_is_one_over_sqrt_dk():
    q, k, v = rand(4, 64), rand(6, 64, seed=1), rand(6, 2, seed=2)
    _, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    torch.testing.assert_close(w, torch.softmax(q @ k.T / math.sqrt(64), dim=-1))


def test_gradients_match_autograd_through_torch_and_gradcheck():
    q, k, v = (rand(1, 2, 4, 3, dtype=torch.float64, seed=s).requires_grad_() for s in range(3))
    mask = torch.tensor([[1, 1, 0, 1]] * 4, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, attn_mask=mask),
                                    (q, k, v))
    ours = torch.autograd.grad(scaled_dot_product_attention(q, k, v, is_causal=True).sum(), (q, k, v))
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True).sum(), (q, k, v))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_dropout_zero_is_deterministic_and_dropout_is_unbiased():
    q, k, v = rand(1, 8, 4), rand(1, 8, 4, seed=1), rand(1, 8, 4, seed=2)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, dropout_p=0.0),
                               scaled_dot_product_attention(q, k, v))
    torch.manual_seed(0)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.25, return_weights=True)
    dropped = (w == 0).float().mean().item()
    assert 0.1 < dropped < 0.4  # 64 weights, p = 0.25: a fraction outside this is a 1-in-1000 event
    # 4000 independent draws at once: a batch of copies gets a dropout mask each
    many = [x.expand(4000, 8, 4) for x in (q, k, v)]
    outs = scaled_dot_product_attention(*many, dropout_p=0.25)  # (4000, 8, 4)
    assert not torch.equal(outs[0], outs[1])  # the draws differ
    torch.testing.assert_close(outs.mean(0), scaled_dot_product_attention(q, k, v)[0], atol=0.05, rtol=0)


def test_causal_mask_and_padding_mask():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(2, 5), torch.ones(2, 5, dtype=torch.bool).tril())
    # bottom-right alignment for decoding: the 2 new queries are positions 3 and 4 of 5 keys
    assert torch.equal(causal_mask(2, 5, offset=3), torch.ones(5, 5, dtype=torch.bool).tril()[3:])
    pm = padding_mask([2, 4, 0], 4)
    assert pm.tolist() == [[True, True, False, False], [True] * 4, [False] * 4]
    # nn.MultiheadAttention's key_padding_mask is the negation (True = ignore)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    x = rand(3, 4, 8)
    lengths = [2, 4, 3]
    ref, _ = mha(x, x, x, key_padding_mask=~padding_mask(lengths, 4))
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)

    def heads(t):
        return t.view(3, 4, 2, 4).transpose(1, 2)

    o = scaled_dot_product_attention(heads(x @ wq.T + bq), heads(x @ wk.T + bk), heads(x @ wv.T + bv),
                                     attn_mask=padding_mask(lengths, 4)[:, None, None, :])
    torch.testing.assert_close(mha.out_proj(o.transpose(1, 2).reshape(3, 4, 8)), ref)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=torch.randn(5, 7)), r"k has shape \(5, 7\).*last dim must equal q's head dim 8"),
    (dict(v=torch.randn(4, 8)), r"v has shape \(4, 8\).*seq dim must equal k's seq dim 5"),
    (dict(k=torch.randn(5, 8).double()), r"k has dtype torch.float64, expected q's dtype torch.float32"),
    (dict(q=torch.randn(8)), r"q must have shape \(\.\.\., seq, dim\), got \(8\)"),
    (dict(attn_mask=torch.ones(3, 4, dtype=torch.bool)), r"attn_mask has shape \(3, 4\).*\(3, 5\)"),
    (dict(attn_mask=torch.ones(3, 5, dtype=torch.int64)), r"attn_mask must be bool or floating point"),
    (dict(dropout_p=1.0), r"dropout_p must be a finite number >= 0 and < 1, got 1.0"),
    (dict(q=torch.randn(2, 3, 8), k=torch.randn(3, 5, 8), v=torch.randn(3, 5, 8)), r"batch dims .* do not broadcast"),
    (dict(q=torch.ones(3, 8, dtype=torch.int64)), r"dtype"),
])
def test_clear_errors(kwargs, match):
    args = dict(q=torch.randn(3, 8), k=torch.randn(5, 8), v=torch.randn(5, 8)) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        scaled_dot_product_attention(**args)


def test_padding_mask_errors():
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, max_len=3\], got \[4\]"):
        padding_mask([4], 3)
    with pytest.raises(ValueError, match=r"lengths must be 1-D"):
        padding_mask([[1]], 3)
