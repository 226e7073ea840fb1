"""attnkit.gqa against oracles: F.scaled_dot_product_attention (with an explicit repeat of the kv
heads), nn.MultiheadAttention, chapter 04's MultiHeadAttention, a per-head loop written from
DeepSeek-V2's equations, autograd/gradcheck, and closed-form cache sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnkit.gqa import (
    GroupedQueryAttention,
    KVCache,
    MultiHeadLatentAttention,
    compare_cache_sizes,
    grouped_query_attention,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    kv_cache_elements_per_token,
    kv_head_index,
    make_decode_model,
    mean_pool_kv_heads,
    measure_decode_step,
    measure_decode_steps,
    repeat_kv,
)

TOL = dict(atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- repeat_kv and the head map


def test_repeat_kv_equals_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    for n in (1, 2, 4):
        assert torch.equal(repeat_kv(x, n), torch.repeat_interleave(x, n, dim=1))


def test_kv_head_index_is_llama_grouping():
    assert kv_head_index(8, 2) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert kv_head_index(4, 4) == [0, 1, 2, 3]  # MHA
    assert kv_head_index(4, 1) == [0, 0, 0, 0]  # MQA
    x = torch.randn(1, 2, 3, 4)
    r = repeat_kv(x, 4)
    for i, g in enumerate(kv_head_index(8, 2)):
        assert torch.equal(r[:, i], x[:, g])


@pytest.mark.parametrize("H,Hkv", [(6, 4), (4, 0), (3, 2)])
def test_kv_head_index_rejects_non_divisors(H, Hkv):
    with pytest.raises(ValueError, match="num_kv_heads"):
        kv_head_index(H, Hkv)


# ---------------------------------------------------------------- the functional form


def _loop_oracle(q, k, v, mask=None, scale=None):
    """Per query head, float64, explicit softmax: head i reads kv head i // G."""
    H, Hkv = q.shape[1], k.shape[1]
    G = H // Hkv
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if mask is not None:
        mask = mask.expand(q.shape[0], H, q.shape[2], k.shape[2])  # (B, H, L, S)
    outs = []
    for i in range(H):
        s = q[:, i].double() @ k[:, i // G].double().transpose(-1, -2) * scale  # (B, L, S)
        if mask is not None:
            s = s.masked_fill(~mask[:, i], float("-inf"))
        w = torch.softmax(s, dim=-1).nan_to_num(0.0)  # fully masked row -> zeros
        outs.append(w @ v[:, i // G].double())
    return torch.stack(outs, dim=1)  # (B, H, L, Dv)


def test_gqa_function_equals_loop_and_sdpa_enable_gqa():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 7, 16), torch.randn(2, 2, 7, 12)
    out = grouped_query_attention(q, k, v)
    assert torch.allclose(out.double(), _loop_oracle(q, k, v), **TOL)
    ref = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert torch.allclose(out, ref, **TOL)
    # the teaching path (repeat_kv + attnkit.core) agrees and its weights are distributions
    out2, w = grouped_query_attention(q, k, v, return_weights=True)
    assert torch.allclose(out2, out, **TOL)
    assert w.shape == (2, 8, 5, 7)
    assert torch.allclose(w.sum(-1), torch.ones(2, 8, 5), **TOL)


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 2), Hkv=st.integers(1, 3), G=st.integers(1, 3), L=st.integers(1, 6),
    S=st.integers(1, 6), D=st.sampled_from([2, 4, 8]), Dv=st.sampled_from([3, 4]),
    mask_kind=st.sampled_from(["none", "bool", "float", "causal", "bool_dead_row"]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_gqa_function_property(B, Hkv, G, L, S, D, Dv, mask_kind, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    H = Hkv * G
    q = torch.randn(B, H, L, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, S, Dv, generator=g).to(dtype)
    mask, causal = None, False
    if mask_kind in ("bool", "bool_dead_row"):
        mask = torch.rand(B, 1, L, S, generator=g) > 0.3
        if mask_kind == "bool_dead_row":
            mask[:, :, 0] = False
    elif mask_kind == "float":
        mask = torch.randn(L, S, generator=g).to(dtype)
    elif mask_kind == "causal":
        causal = True
    out = grouped_query_attention(q, k, v, attn_mask=mask, is_causal=causal)
    assert out.shape == (B, H, L, Dv) and out.dtype == dtype
    assert not torch.isnan(out).any()
    # oracle: torch's SDPA on explicitly repeated kv heads (no enable_gqa)
    kr, vr = torch.repeat_interleave(k, G, dim=1), torch.repeat_interleave(v, G, dim=1)
    ref = F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask, is_causal=causal)
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else TOL
    assert torch.allclose(out.float(), ref.float(), **tol)
    if mask_kind == "bool_dead_row":
        assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))
    if dtype != torch.bfloat16:
        if mask_kind in ("bool", "bool_dead_row"):
            assert torch.allclose(out.double(), _loop_oracle(q, k, v, mask), **TOL)
        out_w, _ = grouped_query_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           return_weights=True)
        assert torch.allclose(out_w, out, **TOL)


def test_gqa_function_gradcheck():
    torch.manual_seed(0)
    q = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 1, 3, 5) > 0.3
    mask[..., 0] = True
    assert torch.autograd.gradcheck(lambda a, b, c: grouped_query_attention(a, b, c, attn_mask=mask),
                                    (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: grouped_query_attention(a, b, c, attn_mask=mask, return_weights=True)[0],
        (q, k, v))


@pytest.mark.parametrize("bad,match", [
    (dict(q=torch.randn(1, 3, 2, 4)), "must divide"),
    (dict(k=torch.randn(1, 2, 5, 3)), "head dim"),
    (dict(v=torch.randn(1, 2, 4, 4)), "positions"),
    (dict(q=torch.randn(3, 2, 4)), r"\(B, H, L, D\)"),
    (dict(attn_mask=torch.ones(3, 3, dtype=torch.bool)), "attn_mask"),
])
def test_gqa_function_errors(bad, match):
    args = dict(q=torch.randn(1, 4, 2, 4), k=torch.randn(1, 2, 5, 4), v=torch.randn(1, 2, 5, 4))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        grouped_query_attention(**args)
    with pytest.raises(TypeError, match="dtype"):
        grouped_query_attention(torch.randn(1, 4, 2, 4), torch.randn(1, 2, 5, 4).double(),
                                torch.randn(1, 2, 5, 4))


# ---------------------------------------------------------------- the module


def _torch_mha_from_gqa(gqa: GroupedQueryAttention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention whose k/v heads are the GQA kv heads repeated per group."""
    E, H, Hkv, D = gqa.embed_dim, gqa.num_heads, gqa.num_kv_heads, gqa.head_dim
    bias = gqa.q_proj.bias is not None
    mha = nn.MultiheadAttention(E, H, bias=bias, batch_first=True)

    def rep(w):  # (Hkv*D, ...) -> (H*D, ...)
        return w.reshape(Hkv, D, *w.shape[1:]).repeat_interleave(H // Hkv, dim=0).reshape(H * D, *w.shape[1:])

    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([gqa.q_proj.weight, rep(gqa.k_proj.weight),
                                            rep(gqa.v_proj.weight)]))
        mha.out_proj.weight.copy_(gqa.o_proj.weight)
        if bias:
            mha.in_proj_bias.copy_(torch.cat([gqa.q_proj.bias, rep(gqa.k_proj.bias),
                                              rep(gqa.v_proj.bias)]))
            mha.out_proj.bias.copy_(gqa.o_proj.bias)
    return mha


@pytest.mark.parametrize("H,Hkv,bias", [(4, 4, False), (8, 2, True), (4, 1, False), (6, 3, True)])
def test_gqa_module_equals_torch_mha_with_repeated_kv(H, Hkv, bias):
    torch.manual_seed(0)
    E = 8 * H
    gqa = GroupedQueryAttention(E, H, Hkv, bias=bias)
    if bias:
        for p in (gqa.q_proj.bias, gqa.k_proj.bias, gqa.v_proj.bias, gqa.o_proj.bias):
            nn.init.normal_(p)
    mha = _torch_mha_from_gqa(gqa)
    x = torch.randn(2, 6, E)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = masked
    ref, ref_w = mha(x, x, x, attn_mask=causal, need_weights=True, average_attn_weights=False)
    out, w = gqa(x, is_causal=True, need_weights=True)
    assert torch.allclose(out, ref, **TOL)
    assert torch.allclose(w, ref_w, **TOL)
    out2, none = gqa(x, is_causal=True)
    assert none is None and torch.allclose(out2, ref, **TOL)


def test_gqa_equals_chapter04_mha_after_copying_weights():
    from attnkit.mha import MultiHeadAttention

    torch.manual_seed(1)
    mha = MultiHeadAttention(32, 4, bias=True)
    for p in mha.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 5, 32)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    ref, _ = mha(x, attn_mask=causal)
    # by hand ...
    gqa = GroupedQueryAttention(32, 4, 4, bias=True)
    with torch.no_grad():
        for a, b in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"),
                     ("o_proj", "out_proj")):
            getattr(gqa, a).weight.copy_(getattr(mha, b).weight)
            getattr(gqa, a).bias.copy_(getattr(mha, b).bias)
    out, _ = gqa(x, is_causal=True)
    assert torch.allclose(out, ref, **TOL)
    # ... and with from_mha (no pooling when num_kv_heads == num_heads)
    out2, _ = GroupedQueryAttention.from_mha(mha)(x, is_causal=True)
    assert torch.allclose(out2, ref, **TOL)
    assert not torch.allclose(out2, GroupedQueryAttention(32, 4, 4)(x, is_causal=True)[0], atol=1e-3)


def test_from_torch_mha_mean_pools_kv_heads():
    torch.manual_seed(2)
    E, H, Hkv = 32, 8, 2
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    nn.init.normal_(mha.in_proj_bias)
    gqa = GroupedQueryAttention.from_mha(mha, num_kv_heads=Hkv)
    x = torch.randn(2, 5, E)
    # The pooled key of kv head g is the mean of the MHA keys of query heads in group g.
    k_mha = F.linear(x, *[t.split(E)[1] for t in (mha.in_proj_weight, mha.in_proj_bias)])
    k_mha = k_mha.view(2, 5, H, E // H)  # (B, L, H, D)
    expected = k_mha.view(2, 5, Hkv, H // Hkv, E // H).mean(3).reshape(2, 5, -1)
    assert torch.allclose(gqa.k_proj(x), expected, **TOL)
    # pooling exact copies is lossless: make the MHA's kv heads equal within each group
    with torch.no_grad():
        for sl in (slice(E, 2 * E), slice(2 * E, 3 * E)):
            w = mha.in_proj_weight[sl].view(Hkv, H // Hkv, E // H, E)
            w.copy_(w[:, :1].expand_as(w).clone())
            b = mha.in_proj_bias[sl].view(Hkv, H // Hkv, E // H)
            b.copy_(b[:, :1].expand_as(b).clone())
    gqa = GroupedQueryAttention.from_mha(mha, num_kv_heads=Hkv)
    ref, _ = mha(x, x, x, need_weights=False)
    assert torch.allclose(gqa(x)[0], ref, **TOL)


def test_mean_pool_kv_heads_closed_form():
    w = torch.arange(4 * 2 * 3, dtype=torch.float64).view(4 * 2, 3)  # 4 heads of d_h = 2
    pooled = mean_pool_kv_heads(w, num_heads=4, num_kv_heads=2)
    assert torch.equal(pooled[:2], (w[0:2] + w[2:4]) / 2)
    assert torch.equal(pooled[2:], (w[4:6] + w[6:8]) / 2)
    assert torch.equal(mean_pool_kv_heads(w, 4, 4), w)
    with pytest.raises(ValueError, match="num_heads"):
        mean_pool_kv_heads(torch.randn(7, 3), 4, 2)


def _decode(model, x, chunks, cache=None, **kw):
    """Feed x through model in chunks of the given sizes, with a cache; concat the outputs."""
    cache, outs, t = cache if cache is not None else KVCache(), [], 0
    for n in chunks:
        out = model(x[:, t:t + n], is_causal=True, kv_cache=cache, **kw)
        outs.append(out[0] if isinstance(out, tuple) else out)
        t += n
    assert t == x.shape[1] and cache.seq_len == t
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("H,Hkv", [(4, 4), (4, 2), (4, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 1, 2], [7]])
def test_cached_decoding_equals_full_forward_gqa(H, Hkv, chunks):
    torch.manual_seed(3)
    model = GroupedQueryAttention(32, H, Hkv, bias=True)
    x = torch.randn(2, 7, 32)
    full, _ = model(x, is_causal=True)
    dec, cache = _decode(model, x, chunks)
    assert torch.allclose(dec, full, **TOL)
    assert cache.k.shape == (2, Hkv, 7, 32 // H)


@pytest.mark.parametrize("H,Hkv", [(4, 4), (4, 1)])
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 1, 2]])
def test_preallocated_cache_decodes_like_the_full_forward_and_writes_in_place(H, Hkv, chunks):
    torch.manual_seed(13)
    model = GroupedQueryAttention(32, H, Hkv)
    x = torch.randn(2, 7, 32)
    full, _ = model(x, is_causal=True)
    cache = KVCache(max_len=9)
    dec, cache = _decode(model, x, chunks, cache=cache)
    assert torch.allclose(dec, full, **TOL)
    storage = cache.k.untyped_storage().data_ptr()
    assert cache.nbytes == 2 * 2 * Hkv * 9 * (32 // H) * 4  # all 9 positions reserved, k and v
    # decode again from position 5: the same storage, the same answer as the full forward
    cache.crop(5)
    again, _ = model(x[:, 5:], is_causal=True, kv_cache=cache)
    assert torch.allclose(again, full[:, 5:], **TOL)
    assert cache.k.untyped_storage().data_ptr() == storage and cache.seq_len == 7
    with pytest.raises(ValueError, match="max_len=9"):
        model(torch.randn(2, 3, 32), is_causal=True, kv_cache=cache)
    with pytest.raises(ValueError, match="crop"):
        cache.crop(8)
    with pytest.raises(ValueError, match="max_len"):
        KVCache(max_len=0)


def test_preallocated_cache_for_mla_absorbed_and_naive():
    torch.manual_seed(14)
    model = make_decode_model("mla", embed_dim=64, num_heads=4, num_kv_heads=4)
    x = torch.randn(1, 6, 64)
    full = model(x, is_causal=True)[0]
    for absorb in (True, False):
        cache = KVCache(max_len=6)
        dec, _ = _decode(model, x, [2, 1, 3], cache=cache, absorb=absorb)
        assert torch.allclose(dec, full, **TOL) and cache.seq_len == 6


def test_decode_chunk_mask_is_aligned_to_the_end():
    """A chunk of 3 new queries after 4 cached keys: query i sees keys 0 .. 4 + i (not 0 .. i)."""
    torch.manual_seed(4)
    model = GroupedQueryAttention(16, 2, 1)
    x = torch.randn(1, 7, 16)
    cache = KVCache()
    model(x[:, :4], is_causal=True, kv_cache=cache)
    _, w = model(x[:, 4:], is_causal=True, kv_cache=cache, need_weights=True)  # (1, 2, 3, 7)
    visible = w[0, 0] > 0
    expected = torch.arange(7)[None, :] <= (4 + torch.arange(3))[:, None]
    assert torch.equal(visible, expected)


def test_cached_decoding_with_padding_mask():
    torch.manual_seed(5)
    model = GroupedQueryAttention(16, 4, 2)
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[True] * 5, [False, True, True, True, True]])  # left padding in row 1
    full, _ = model(x, attn_mask=keep[:, None, None, :], is_causal=True)
    cache, outs = KVCache(), []
    for t in range(5):
        outs.append(model(x[:, t:t + 1], attn_mask=keep[:, None, None, :t + 1], is_causal=True,
                          kv_cache=cache)[0])
    dec = torch.cat(outs, 1)
    assert not torch.isnan(dec).any()
    assert torch.allclose(dec, full, **TOL)


def test_gqa_module_errors():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        GroupedQueryAttention(32, 4, 3)
    with pytest.raises(ValueError, match="embed_dim=30"):
        GroupedQueryAttention(30, 4, 2)
    with pytest.raises(ValueError, match=r"embed_dim=32"):
        GroupedQueryAttention(32, 4, 2)(torch.randn(2, 3, 16))
    with pytest.raises(TypeError, match="num_heads"):
        GroupedQueryAttention(32, 4.0, 2)
    with pytest.raises(TypeError, match="float64"):
        GroupedQueryAttention(32, 4, 2)(torch.randn(2, 3, 32, dtype=torch.float64))


def test_gqa_module_gradients_match_torch_mha():
    torch.manual_seed(6)
    gqa = GroupedQueryAttention(16, 4, 2).double()
    mha = _torch_mha_from_gqa(gqa).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    gqa(x, is_causal=True)[0].square().sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    mha(x, x, x, attn_mask=causal, need_weights=False)[0].square().sum().backward()
    assert torch.allclose(g1, x.grad, atol=1e-10)


# ---------------------------------------------------------------- the cache


def test_kv_cache_update_and_errors():
    c = KVCache()
    assert c.seq_len == 0 and c.nbytes == 0 and c.k is None
    k, v = c.update(torch.ones(1, 2, 3, 4), torch.zeros(1, 2, 3, 5))
    k, v = c.update(2 * torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 5))
    assert len(c) == 4 and k.shape == (1, 2, 4, 4) and v.shape == (1, 2, 4, 5)
    assert torch.equal(k[:, :, 3], 2 * torch.ones(1, 2, 4)) and torch.equal(v[:, :, :3], torch.zeros(1, 2, 3, 5))
    with pytest.raises(ValueError, match="shape"):
        c.update(torch.ones(1, 3, 1, 4), torch.ones(1, 3, 1, 5))
    with pytest.raises(ValueError, match="positions"):
        c.update(torch.ones(1, 2, 2, 4), torch.ones(1, 2, 1, 5))
    with pytest.raises(TypeError, match="dtype|float64"):
        c.update(torch.ones(1, 2, 1, 4).double(), torch.ones(1, 2, 1, 5).double())
    with pytest.raises(ValueError, match="holds 2"):
        c.update(torch.ones(1, 2, 1, 4))
    c.reset()
    assert c.seq_len == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind,H,Hkv", [("mha", 8, 8), ("gqa", 8, 2), ("mqa", 8, 1)])
def test_measured_cache_bytes_equal_formula_gqa(kind, H, Hkv, dtype):
    torch.manual_seed(7)
    B, T, E = 2, 9, 64
    model = GroupedQueryAttention(E, H, Hkv, dtype=dtype)
    x = torch.randn(B, T, E, dtype=dtype)
    with torch.no_grad():
        _, cache = _decode(model, x, [4] + [1] * 5)
    per_token = kv_cache_bytes_per_token(kind, num_heads=H, head_dim=E // H, num_kv_heads=Hkv,
                                         dtype=dtype)
    assert cache.nbytes == per_token * B * T
    assert cache.nbytes == sum(t.numel() * t.element_size() for t in cache.tensors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_measured_cache_bytes_equal_formula_mla(dtype):
    torch.manual_seed(8)
    B, T = 2, 6
    model = MultiHeadLatentAttention(64, 4, kv_lora_rank=24, qk_nope_head_dim=16,
                                     qk_rope_head_dim=8, v_head_dim=12, dtype=dtype)
    x = torch.randn(B, T, 64, dtype=dtype)
    with torch.no_grad():
        _, cache = _decode(model, x, [2, 1, 1, 1, 1], absorb=True)
    per_token = kv_cache_bytes_per_token("mla", kv_lora_rank=24, qk_rope_head_dim=8, dtype=dtype)
    assert cache.nbytes == per_token * B * T
    assert [tuple(t.shape) for t in cache.tensors] == [(B, T, 24 + 8)]  # [latent ; rotary key]


def test_cache_formula_closed_forms():
    # LLaMA-2-7B (32 layers, 32 heads of 128, fp16): 2 * 32 * 128 * 32 * 2 B = 512 KiB per token
    assert kv_cache_bytes_per_token("mha", num_heads=32, head_dim=128, num_layers=32,
                                    dtype=torch.float16) == 512 * 1024
    # GQA-8 is 4x smaller, MQA 32x
    assert kv_cache_bytes_per_token("gqa", num_heads=32, head_dim=128, num_kv_heads=8,
                                    num_layers=32, dtype=2) == 128 * 1024
    assert kv_cache_bytes_per_token("mqa", head_dim=128, num_layers=32, dtype=2) == 16 * 1024
    # DeepSeek-V2 Table 1: MLA caches (d_c + d_h^R) l = 4.5 d_h l with d_c = 4 d_h, d_h^R = d_h / 2
    assert kv_cache_elements_per_token("mla", kv_lora_rank=512, qk_rope_head_dim=64) == 4.5 * 128
    # GQA with n_g == n_h is MHA, with n_g == 1 is MQA
    assert kv_cache_elements_per_token("gqa", num_kv_heads=32, head_dim=64) == \
        kv_cache_elements_per_token("mha", num_heads=32, head_dim=64)
    assert kv_cache_elements_per_token("gqa", num_kv_heads=1, head_dim=64) == \
        kv_cache_elements_per_token("mqa", head_dim=64)


def test_cache_formula_errors():
    with pytest.raises(ValueError, match="kind"):
        kv_cache_bytes_per_token("mlp", num_heads=2, head_dim=2)
    with pytest.raises(ValueError, match="num_kv_heads"):
        kv_cache_bytes_per_token("gqa", head_dim=2)
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        kv_cache_bytes_per_token("gqa", num_heads=8, num_kv_heads=3, head_dim=2)
    with pytest.raises(TypeError, match="dtype"):
        kv_cache_bytes_per_token("mqa", head_dim=2, dtype="bf16")
    with pytest.raises(ValueError, match="num_layers"):
        kv_cache_bytes_per_token("mqa", head_dim=2, num_layers=0)


# ---------------------------------------------------------------- multi-head latent attention

MLA_CONFIGS = [
    dict(embed_dim=48, num_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
         v_head_dim=6, q_lora_rank=None),
    dict(embed_dim=64, num_heads=2, kv_lora_rank=12, qk_nope_head_dim=16, qk_rope_head_dim=8,
         v_head_dim=16, q_lora_rank=24),
]


def _mla(cfg, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    m = MultiHeadLatentAttention(**cfg, dtype=dtype)
    with torch.no_grad():  # non-trivial norm gains, so forgetting a norm would show
        for mod in m.modules():
            if isinstance(mod, nn.RMSNorm):
                mod.weight.uniform_(0.5, 1.5)
    return m


def _rope_interleaved_by_hand(x, base=10000.0):
    """RoFormer eq. 13, float64: rotate pairs (2i, 2i+1) of x (..., L, d) by angle m * base^(-2i/d)."""
    L, d = x.shape[-2], x.shape[-1]
    m = torch.arange(L, dtype=torch.float64)[:, None]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = m * theta  # (L, d/2)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * ang.cos() - b * ang.sin()
    out[..., 1::2] = a * ang.sin() + b * ang.cos()
    return out


def _mla_oracle(m: MultiHeadLatentAttention, x):
    """DeepSeek-V2 eqs 9-19 token by token and head by head, float64, causal."""
    x = x.double()
    P = {n: p.detach().double() for n, p in m.named_parameters()}

    def lin(name, h):
        y = h @ P[f"{name}.weight"].T
        return y + P[f"{name}.bias"] if f"{name}.bias" in P else y

    def rms(name, h, eps):
        return h / torch.sqrt(h.square().mean(-1, keepdim=True) + eps) * P[f"{name}.weight"]

    B, L, _ = x.shape
    H, dn, dr, dv = m.num_heads, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim
    c_kv = rms("kv_norm", lin("w_dkv", x), m.kv_norm.eps)  # (9)
    k_c = lin("w_uk", c_kv).view(B, L, H, dn)  # (10)
    v_c = lin("w_uv", c_kv).view(B, L, H, dv)  # (11)
    c_q = rms("q_norm", lin("w_dq", x), m.q_norm.eps) if m.q_lora_rank else x  # (12)
    q_c = lin("w_uq", c_q).view(B, L, H, dn)  # (13)
    q_r = _rope_interleaved_by_hand(lin("w_qr", c_q).view(B, L, H, dr).transpose(1, 2))  # (14)
    k_r = _rope_interleaved_by_hand(lin("w_kr", x))  # (15) (B, L, dr)
    out = torch.zeros(B, L, H, dv, dtype=torch.float64)
    for b in range(B):
        for t in range(L):
            for i in range(H):
                q = torch.cat([q_c[b, t, i], q_r[b, i, t]])  # (16)
                k = torch.cat([k_c[b, : t + 1, i], k_r[b, : t + 1]], dim=-1)  # (17) (t+1, dn+dr)
                w = torch.softmax(k @ q / math.sqrt(dn + dr), dim=0)  # (18)
                out[b, t, i] = w @ v_c[b, : t + 1, i]
    return lin("w_o", out.reshape(B, L, H * dv))  # (19)


@pytest.mark.parametrize("cfg", MLA_CONFIGS)
def test_mla_equals_equations_oracle(cfg):
    m = _mla(cfg)
    x = torch.randn(2, 5, cfg["embed_dim"])
    ref = _mla_oracle(m, x)
    for absorb in (False, True):
        out = m(x, is_causal=True, absorb=absorb)
        assert torch.allclose(out.double(), ref, **TOL)


@pytest.mark.parametrize("cfg", MLA_CONFIGS)
def test_mla_naive_equals_absorbed(cfg):
    m = _mla(cfg, seed=1)
    x = torch.randn(2, 9, cfg["embed_dim"])
    mask = torch.rand(2, 1, 9, 9) > 0.2
    for kw in (dict(), dict(is_causal=True), dict(attn_mask=mask), dict(attn_mask=mask, is_causal=True)):
        a = m(x, **kw)
        b = m(x, absorb=True, **kw)
        assert (a - b).abs().max() < 1e-5, kw


def test_mla_naive_and_absorbed_gradients_agree():
    m = _mla(MLA_CONFIGS[1], seed=2).double()
    x = torch.randn(2, 5, 64, dtype=torch.float64)
    grads = []
    for absorb in (False, True):
        m.zero_grad()
        m(x, is_causal=True, absorb=absorb).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-9), n


@pytest.mark.parametrize("absorb", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 6, [2, 3, 1]])
def test_mla_cached_decoding_equals_full_forward(absorb, chunks):
    m = _mla(MLA_CONFIGS[1], seed=3)
    x = torch.randn(2, 6, 64)
    full = m(x, is_causal=True)
    dec, cache = _decode(m, x, chunks, absorb=absorb)
    assert torch.allclose(dec, full, **TOL)


def test_mla_rope_key_is_shared_and_position_dependent():
    """The cached rotary key is one vector per token (not per head), and it is rotated by position:
    the same token at two positions gives different k^R but the same norm."""
    m = _mla(MLA_CONFIGS[0], seed=4)
    tok = torch.randn(1, 1, 48)
    x = tok.expand(1, 3, 48)
    cache = KVCache()
    m(x, is_causal=True, kv_cache=cache)
    (kv,) = cache.tensors
    c_kv, k_r = kv[..., :16], kv[..., 16:]
    assert kv.shape == (1, 3, 16 + 4)
    assert torch.allclose(c_kv[:, 0], c_kv[:, 2])  # the latent carries no position
    assert not torch.allclose(k_r[:, 0], k_r[:, 2])
    assert torch.allclose(k_r.norm(dim=-1), k_r[:, :1].norm(dim=-1).expand(1, 3))


def test_mla_errors():
    cfg = dict(MLA_CONFIGS[0])
    with pytest.raises(ValueError, match="qk_rope_head_dim"):
        MultiHeadLatentAttention(**{**cfg, "qk_rope_head_dim": 5})
    with pytest.raises(ValueError, match="kv_lora_rank"):
        MultiHeadLatentAttention(**{**cfg, "kv_lora_rank": 0})
    with pytest.raises(ValueError, match="embed_dim=48"):
        MultiHeadLatentAttention(**cfg)(torch.randn(1, 2, 40))
    with pytest.raises(TypeError, match="bfloat16"):
        MultiHeadLatentAttention(**cfg)(torch.randn(1, 2, 48, dtype=torch.bfloat16))
    for absorb in (False, True):
        with pytest.raises(ValueError, match="attn_mask"):
            MultiHeadLatentAttention(**cfg)(torch.randn(1, 2, 48), attn_mask=torch.ones(3, 3, dtype=torch.bool),
                                            absorb=absorb)


# ---------------------------------------------------------------- chapter helpers


def test_compare_cache_sizes_closed_form():
    sizes = compare_cache_sizes(32, 8, 128, 32, 32768, dtype=torch.bfloat16)
    assert sizes == {"mha": 16 * 2**30, "gqa": 4 * 2**30, "mqa": 2**29,
                     "mla": (512 + 64) * 32 * 32768 * 2}
    assert kv_cache_bytes("mha", 10, 3, num_heads=2, head_dim=4) == 2 * 2 * 4 * 4 * 10 * 3


@pytest.mark.parametrize("kind", ["mha", "gqa", "mqa", "mla"])
def test_measure_decode_step_reports_measured_bytes(kind):
    model = make_decode_model(kind, embed_dim=64, num_heads=4, num_kv_heads=2)
    r = measure_decode_step(model, context_len=16, batch_size=2, repeats=1)
    kw = dict(num_heads=4, head_dim=16, num_kv_heads=2, kv_lora_rank=64, qk_rope_head_dim=8)
    assert r["tokens"] == 17 and r["ms"] > 0
    assert r["cache_bytes"] == kv_cache_bytes(kind, 17, 2, **kw)


@settings(max_examples=15, deadline=None)
@given(H_and_kv=st.sampled_from([(4, 4), (4, 2), (4, 1), (6, 3)]), T=st.integers(1, 9),
       cuts=st.lists(st.integers(1, 4), min_size=1, max_size=9), B=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_cached_decoding_any_chunking_property(H_and_kv, T, cuts, B, seed):
    """Whatever the chunk sizes, decoding with the cache equals the full causal forward."""
    torch.manual_seed(seed)
    H, Hkv = H_and_kv
    chunks, left = [], T
    for c in cuts:
        if left == 0:
            break
        chunks.append(min(c, left))
        left -= chunks[-1]
    if left:
        chunks.append(left)
    model = GroupedQueryAttention(8 * H, H, Hkv, bias=True).eval()
    x = torch.randn(B, T, 8 * H)
    with torch.no_grad():
        full, _ = model(x, is_causal=True)
        dec, _ = _decode(model, x, chunks)
    assert torch.allclose(dec, full, **TOL)


def test_decode_steps_are_timed_round_robin_on_one_thread(monkeypatch):
    """Every (variant, S) step goes to one call of the shared helper, run on a single thread."""
    from attnkit import timing

    seen = []
    real = timing.round_robin_medians

    def spy(impls, repeats, warmup=1):
        seen.append((sorted(impls), torch.get_num_threads(), repeats))
        return real(impls, repeats, warmup)

    monkeypatch.setattr(timing, "round_robin_medians", spy)
    models = {k: make_decode_model(k, embed_dim=64, num_heads=4, num_kv_heads=2) for k in ("mha", "mla")}
    runs = measure_decode_steps({"mha": (models["mha"], True), "mla": (models["mla"], True),
                                 "mla_naive": (models["mla"], False)}, [8, 16], repeats=2)
    assert seen == [(sorted((n, s) for n in ("mha", "mla", "mla_naive") for s in (8, 16)), 1, 2)]
    assert [r["tokens"] for r in runs["mla_naive"]] == [9, 17] and all(r["ms"] > 0 for r in runs["mha"])
    kw = dict(num_heads=4, head_dim=16, num_kv_heads=2, kv_lora_rank=64, qk_rope_head_dim=8)
    assert [r["cache_bytes"] for r in runs["mha"]] == [kv_cache_bytes("mha", n, 1, **kw) for n in (9, 17)]


# ---------------------------------------------------------------- memory budget and bandwidth bound


def test_max_batch_and_context_closed_forms():
    from attnkit.gqa import max_batch_size, max_context_length, weights_bytes

    w = weights_bytes(7 * 10**9, torch.float16)
    assert w == 14 * 10**9 and weights_bytes(10, 4) == 40 and weights_bytes(3, torch.float32) == 12
    per_seq = 2 * 32 * 8 * 128 * 32768 * 2  # GQA-8, 32 layers, 32k tokens, fp16: 4 GiB
    M = 80 * 2**30
    assert max_batch_size(M, w, per_seq) == (M - w) // per_seq == 16
    assert max_batch_size(M, M, per_seq) == 0 and max_batch_size(M, 2 * M, per_seq) == 0
    assert max_batch_size(100, 0, 10) == 10 and max_batch_size(109, 0, 10) == 10
    per_token = per_seq // 32768
    assert max_context_length(M, w, per_token) == (M - w) // per_token
    assert max_context_length(M, w, per_token, batch_size=4) == (M - w) // (4 * per_token)
    # what fits really fits, one more does not
    b = max_batch_size(M, w, per_seq)
    assert w + b * per_seq <= M < w + (b + 1) * per_seq


def test_tokens_per_s_bound_counts_the_batch():
    from attnkit.gqa import decode_tokens_per_s_bound

    bw, W, C = 3.35e12, 14 * 10**9, 2 * 10**9
    assert decode_tokens_per_s_bound(bw, W, C) == pytest.approx(bw / (W + C))
    # batch B: the weights are read once per step, every cache once, B tokens come out
    for B in (1, 2, 8, 64):
        assert decode_tokens_per_s_bound(bw, W, C, B) == pytest.approx(B * bw / (W + B * C))
    # more sequences: more tokens in all, fewer for each; the total tends to bw / C
    totals = [decode_tokens_per_s_bound(bw, W, C, B) for B in (1, 2, 4, 8, 1024)]
    assert totals == sorted(totals) and totals[-1] < bw / C
    assert decode_tokens_per_s_bound(bw, W, 0, 5) == pytest.approx(5 * bw / W)


def test_memory_budget_agrees_with_its_parts():
    from attnkit.gqa import memory_budget

    M = 80 * 2**30
    for kind in ("mha", "gqa", "mqa", "mla"):
        r = memory_budget(kind, 7 * 10**9, M, 32768, 32, 32, 8, 128, dtype=torch.float16,
                          bandwidth_bytes_per_s=2e12)
        per_token = kv_cache_bytes_per_token(kind, num_heads=32, num_kv_heads=8, head_dim=128,
                                             kv_lora_rank=512, qk_rope_head_dim=64, num_layers=32,
                                             dtype=torch.float16)
        assert r["cache_bytes_per_token"] == per_token
        assert r["cache_bytes_per_sequence"] == per_token * 32768
        assert r["max_batch"] == (M - 14 * 10**9) // (per_token * 32768)
        assert r["max_context"] == (M - 14 * 10**9) // per_token
        assert r["tokens_per_s_batch1"] == pytest.approx(2e12 / (14e9 + per_token * 32768))
        B = r["max_batch"]
        assert r["tokens_per_s_max_batch"] == pytest.approx(B * 2e12 / (14e9 + B * per_token * 32768))
        assert r["tokens_per_s_per_sequence"] == pytest.approx(r["tokens_per_s_max_batch"] / B)
    assert memory_budget("mha", 7 * 10**9, M, 32768, 32, 32, 32, 128, dtype=torch.float16)["max_batch"] == 4
    none = memory_budget("mha", 70 * 10**9, M, 32768, 80, 64, 8, 128, dtype=torch.float16)
    assert none["max_batch"] == 0 and none["max_context"] == 0 and none["tokens_per_s_max_batch"] == 0.0


def test_memory_budget_errors_name_the_argument():
    from attnkit.gqa import decode_tokens_per_s_bound, max_batch_size, memory_budget, weights_bytes

    with pytest.raises(ValueError, match="num_params"):
        weights_bytes(0)
    with pytest.raises(TypeError, match="dtype"):
        weights_bytes(10, "fp16")
    with pytest.raises(ValueError, match="cache_bytes_per_sequence"):
        max_batch_size(100, 10, 0)
    with pytest.raises(ValueError, match="weights_bytes"):
        max_batch_size(100, -1, 10)
    with pytest.raises(ValueError, match="bandwidth"):
        decode_tokens_per_s_bound(0, 10, 10)
    with pytest.raises(ValueError, match="batch_size"):
        decode_tokens_per_s_bound(1e9, 10, 10, 0)
    with pytest.raises(ValueError, match="kind"):
        memory_budget("xla", 10**9, 2**34, 1024, 2, 4, 2, 64)
    with pytest.raises(ValueError, match="context"):
        memory_budget("mha", 10**9, 2**34, 0, 2, 4, 2, 64)


# ---------------------------------------------------------------- the tiny decoder, end to end


def _tiny(num_kv_heads=2, seed=0, **kw):
    from attnkit.gqa import TinyDecoder

    torch.manual_seed(seed)
    return TinyDecoder(vocab_size=32, embed_dim=32, num_heads=4, num_kv_heads=num_kv_heads, **kw).eval()


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_cached_logits_equal_the_full_forward(num_kv_heads):
    m = _tiny(num_kv_heads)
    tokens = torch.randint(0, 32, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = m(tokens)  # (B, L, V)
        caches = m.new_cache()
        parts = [m(tokens[:, :4], caches)]
        assert [c.seq_len for c in caches] == [4, 4]
        parts += [m(tokens[:, i:i + 1], caches) for i in range(4, 9)]
    assert torch.allclose(torch.cat(parts, 1), full, **TOL)
    # and against a loop that runs the whole prefix each time, taking the last position
    with torch.no_grad():
        last = torch.stack([m(tokens[:, :i + 1])[:, -1] for i in range(9)], 1)
    assert torch.allclose(last, full, **TOL)


@pytest.mark.parametrize("num_kv_heads,batch,max_len", [(4, 1, None), (2, 3, None), (1, 2, 40)])
def test_greedy_generate_with_and_without_cache_give_the_same_tokens(num_kv_heads, batch, max_len):
    from attnkit.gqa import greedy_generate

    m = _tiny(num_kv_heads)
    prompt = torch.randint(0, 32, (batch, 5), generator=torch.Generator().manual_seed(2))
    caches = m.new_cache(max_len)
    with_cache = greedy_generate(m, prompt, 20, caches=caches)
    without = greedy_generate(m, prompt, 20, use_cache=False)
    assert with_cache.shape == (batch, 25) and torch.equal(with_cache[:, :5], prompt)
    assert torch.equal(with_cache, without)
    assert [c.seq_len for c in caches] == [24, 24]  # the last token is not fed back
    # each new token is the argmax of the model's logits at the previous position
    with torch.no_grad():
        logits = m(with_cache[:, :-1])
    assert torch.equal(logits[:, 4:].argmax(-1), with_cache[:, 5:])
    assert torch.equal(greedy_generate(m, prompt, 0), prompt)


def test_positions_continue_after_the_cache_and_a_reset_starts_again():
    from attnkit.gqa import greedy_generate

    m = _tiny()
    caches = m.new_cache()
    assert m.positions(3, caches).tolist() == [0, 1, 2]
    a = torch.randint(0, 32, (1, 6), generator=torch.Generator().manual_seed(3))
    b = torch.randint(0, 32, (1, 6), generator=torch.Generator().manual_seed(4))
    out_a = greedy_generate(m, a, 8, caches=caches)
    assert m.positions(1, caches).tolist() == [13] and caches[0].seq_len == 13
    with torch.no_grad():  # the wrong offset (position 0 for the new token) changes the logits
        right = m(out_a[:, -1:], _copy_caches(caches))
        wrong = m(out_a[:, -1:], _copy_caches(caches), positions=torch.tensor([0]))
        full = m(out_a)[:, -1:]
    assert torch.allclose(right, full, **TOL) and not torch.allclose(wrong, full, **TOL)
    # a second prompt on the same caches continues the first sequence (the 13 cached tokens: the
    # last generated one was never fed back); after crop(0) it is fresh
    stale = greedy_generate(m, b, 8, caches=caches)
    assert torch.equal(stale, greedy_generate(m, torch.cat([out_a[:, :13], b], 1), 8, use_cache=False)[:, 13:])
    assert not torch.equal(stale, greedy_generate(m, b, 8, use_cache=False))
    for c in caches:
        c.crop(0)
    assert torch.equal(greedy_generate(m, b, 8, caches=caches), greedy_generate(m, b, 8, use_cache=False))


def _copy_caches(caches):
    out = []
    for c in caches:
        n = KVCache()
        n.tensors = tuple(x.clone() for x in c.tensors)
        out.append(n)
    return out


def test_tiny_decoder_errors_name_the_argument():
    from attnkit.gqa import greedy_generate

    m = _tiny(max_len=8)
    with pytest.raises(TypeError, match="tokens"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="tokens"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="caches"):
        m(torch.zeros(1, 3, dtype=torch.long), [KVCache()])
    with pytest.raises(ValueError, match="positions"):
        m(torch.zeros(1, 3, dtype=torch.long), positions=torch.arange(2))
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(m, torch.zeros(1, 2, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="use_cache"):
        greedy_generate(m, torch.zeros(1, 2, dtype=torch.long), 2, use_cache=False, caches=m.new_cache())
    with pytest.raises(ValueError, match="prompt"):
        greedy_generate(m, torch.zeros(1, 0, dtype=torch.long), 2)


@pytest.mark.parametrize("L,S", [(1, 1), (1, 6), (3, 7), (4, 4), (2, 9)])
def test_the_decode_mask_is_torchs_causal_lower_right(L, S):
    """The bottom-right mask the layers build for new queries after a cache (chapter 05 section 1)
    is PyTorch's ``causal_lower_right``; ``is_causal=True`` is the top-left ``causal_upper_left``."""
    from torch.nn.attention.bias import causal_lower_right, causal_upper_left

    from attnkit.core import causal_mask

    g = torch.Generator().manual_seed(L * 10 + S)
    q, k, v = (torch.randn(1, 2, n, 8, generator=g) for n in (L, S, S))
    ours = grouped_query_attention(q, k, v, attn_mask=causal_mask(L, S, offset=S - L))
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(L, S)), **TOL)
    top_left = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_upper_left(L, S))
    assert torch.allclose(grouped_query_attention(q, k, v, is_causal=True), top_left, **TOL)
    if L < S:  # the two corners differ only when queries are fewer than keys
        assert not torch.allclose(ours, top_left, **TOL)
