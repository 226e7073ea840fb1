"""Tests for attnkit.rope against independent oracles.

Oracles: an explicit block-diagonal rotation matrix R_m (RoFormer eq. 15), complex multiplication
(Meta's LLaMA ``torch.polar`` form), HF LLaMA's ``rotate_half``, torch's fused SDPA and autograd.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.rope import (
    StandardAttentionWithRoPE,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_xpos,
    generate_rope_embeddings,
    half_split_to_interleaved,
    interleaved_to_half_split,
    linear_scaled_inv_freq,
    ntk_scaled_base,
    ntk_scaled_inv_freq,
    permute_qk_weight,
    rope_decay_bound,
    rope_inv_freq,
    rope_relative_scores,
    rotate_pair,
    scaled_rope_embeddings,
    sinusoidal_position_encoding,
    xpos_scale,
    yarn_attention_factor,
    yarn_correction_range,
    yarn_inv_freq,
    yarn_ramp,
)

SETTINGS = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- oracles written independently


def rotation_matrix(m: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """RoFormer eq. 15: block-diagonal R_m with 2x2 blocks on channels (2i, 2i+1), float64."""
    R = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        th = m * base ** (-2 * i / d)
        c, s = math.cos(th), math.sin(th)
        R[2 * i, 2 * i], R[2 * i, 2 * i + 1] = c, -s
        R[2 * i + 1, 2 * i], R[2 * i + 1, 2 * i + 1] = s, c
    return R


def rope_complex(x: torch.Tensor, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """Meta LLaMA style: view pairs (2i, 2i+1) as complex numbers and multiply by e^{i m theta}."""
    L, d = x.shape[-2], x.shape[-1]
    theta = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    m = torch.arange(offset, offset + L, dtype=torch.float64)
    rot = torch.polar(torch.ones(L, d // 2, dtype=torch.float64), torch.outer(m, theta))
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)


def rotate_half(x):
    """HF LLaMA's helper."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_hf(x, cos, sin):
    """HF LLaMA's apply_rotary_pos_emb with cos/sin duplicated to the full width."""
    c, s = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
    return x * c + rotate_half(x) * s


# ---------------------------------------------------------------- tables


def test_generate_rope_embeddings_shapes_and_values():
    cos, sin = generate_rope_embeddings(7, 16)
    assert cos.shape == sin.shape == (7, 8) and cos.dtype == torch.float32
    m = torch.arange(7.0, dtype=torch.float64)[:, None]
    theta = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    torch.testing.assert_close(cos.double(), torch.cos(m * theta), atol=1e-7, rtol=0)
    torch.testing.assert_close(sin.double(), torch.sin(m * theta), atol=1e-7, rtol=0)
    assert torch.all(cos[0] == 1) and torch.all(sin[0] == 0)


def test_generate_rope_embeddings_base_and_large_positions_are_accurate():
    # angles in float64: position 100000 at theta_0 = 1 must be cos(100000) to float32 precision
    cos, sin = generate_rope_embeddings(100001, 8, base=500.0)
    assert abs(cos[100000, 0].item() - math.cos(100000.0)) < 1e-6
    assert abs(sin[100000, 3].item() - math.sin(100000.0 * 500.0 ** (-6 / 8))) < 1e-6


@pytest.mark.parametrize("bad", [7, 0, -4])
def test_odd_or_nonpositive_head_dim_raises(bad):
    with pytest.raises(ValueError, match="head_dim"):
        generate_rope_embeddings(4, bad)


def test_non_int_head_dim_raises_type_error():
    with pytest.raises(TypeError, match="head_dim"):
        generate_rope_embeddings(4, 8.0)


# ---------------------------------------------------------------- apply_rope


@SETTINGS
@given(L=st.integers(1, 9), half=st.integers(1, 8), offset=st.integers(0, 20), seed=st.integers(0, 10_000))
def test_interleaved_equals_rotation_matrix_and_complex_form(L, half, offset, seed):
    d = 2 * half
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, L, d, dtype=torch.float64, generator=g)
    cos, sin = generate_rope_embeddings(offset + L, d, dtype=torch.float64)
    got = apply_rope(x, cos, sin, interleaved=True, offset=offset)
    want = torch.stack([x[:, t] @ rotation_matrix(offset + t, d).T for t in range(L)], dim=1)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got, rope_complex(x, offset=offset))


@SETTINGS
@given(L=st.integers(1, 9), half=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_half_split_equals_hf_rotate_half(L, half, seed):
    d = 2 * half
    x = torch.randn(3, 2, L, d, generator=torch.Generator().manual_seed(seed))
    cos, sin = generate_rope_embeddings(L, d)
    torch.testing.assert_close(apply_rope(x, cos, sin, interleaved=False), rope_hf(x, cos, sin))


@SETTINGS
@given(d=st.sampled_from([2, 4, 8, 32]), m=st.integers(0, 300), n=st.integers(0, 300),
       shift=st.integers(-200, 200), interleaved=st.booleans(), seed=st.integers(0, 10_000))
def test_score_depends_only_on_relative_position(d, m, n, shift, interleaved, seed):
    """<R_m q, R_n k> == <R_{m+s} q, R_{n+s} k>, and equals the closed form in r = m - n."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, d, dtype=torch.float64, generator=g)
    shift = max(shift, -min(m, n))
    cos, sin = generate_rope_embeddings(max(m, n) + abs(shift) + 1, d, dtype=torch.float64)

    def score(a, b):
        qa = apply_rope(q[None], cos, sin, interleaved, offset=a)[0]
        kb = apply_rope(k[None], cos, sin, interleaved, offset=b)[0]
        return (qa @ kb).item()

    s0 = score(m, n)
    assert s0 == pytest.approx(score(m + shift, n + shift), abs=1e-9)
    if interleaved:
        assert s0 == pytest.approx(rope_relative_scores(q, k, [m - n])[0].item(), abs=1e-9)


def test_odd_strides_and_half_precision_take_the_other_paths():
    cos, sin = generate_rope_embeddings(5, 8, dtype=torch.float64)
    base = torch.randn(2, 5, 9, dtype=torch.float64)
    x = base[..., 1:9]  # odd storage offset: no complex view possible
    want = torch.stack([x[:, t] @ rotation_matrix(t, 8).T for t in range(5)], dim=1)
    torch.testing.assert_close(apply_rope(x, cos, sin), want)
    for dt in (torch.bfloat16, torch.float16):
        got = apply_rope(x.to(dt), cos.float(), sin.float())
        assert got.dtype == dt
        torch.testing.assert_close(got.double(), want, atol=3e-2, rtol=3e-2)


def test_rope_preserves_norm_and_position_zero_is_identity():
    x = torch.randn(2, 4, 10, 16, dtype=torch.float64)
    cos, sin = generate_rope_embeddings(10, 16, dtype=torch.float64)
    for inter in (True, False):
        y = apply_rope(x, cos, sin, interleaved=inter)
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
        torch.testing.assert_close(y[..., 0, :], x[..., 0, :])


def test_offset_decoding_equals_full_sequence():
    x = torch.randn(2, 3, 12, 8)
    cos, sin = generate_rope_embeddings(12, 8)
    for inter in (True, False):
        full = apply_rope(x, cos, sin, interleaved=inter)
        steps = torch.cat([apply_rope(x[..., t:t + 1, :], cos, sin, inter, offset=t) for t in range(12)], dim=-2)
        torch.testing.assert_close(steps, full)
        torch.testing.assert_close(apply_rope(x[..., 5:, :], cos, sin, inter, offset=5), full[..., 5:, :])


def test_short_tables_raise_instead_of_repeating_rows():
    x = torch.randn(1, 10, 8)
    cos, sin = generate_rope_embeddings(6, 8)
    with pytest.raises(ValueError, match="cover 6 positions.*seq_len 10"):
        apply_rope(x, cos, sin)
    cos, sin = generate_rope_embeddings(10, 8)
    with pytest.raises(ValueError, match="offset 1"):
        apply_rope(x, cos, sin, offset=1)


def test_apply_rope_bad_inputs():
    cos, sin = generate_rope_embeddings(4, 8)
    with pytest.raises(ValueError, match=r"head_dim.*\(1, 4, 7\)"):
        apply_rope(torch.randn(1, 4, 7), cos, sin)
    with pytest.raises(ValueError, match=r"\(\*, 3\)"):
        apply_rope(torch.randn(1, 4, 6), cos, sin)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        apply_rope([[1.0, 2.0]], cos, sin)
    with pytest.raises(TypeError, match="floating"):
        apply_rope(torch.ones(1, 4, 8, dtype=torch.long), cos, sin)
    with pytest.raises(ValueError, match="offset"):
        apply_rope(torch.randn(1, 2, 8), cos, sin, offset=-1)
    with pytest.raises(ValueError, match="sin has shape"):
        apply_rope(torch.randn(1, 2, 8), cos, sin[:, :2])


def test_apply_rope_gradcheck():
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    cos, sin = generate_rope_embeddings(7, 6, dtype=torch.float64)
    for inter in (True, False):
        assert torch.autograd.gradcheck(lambda t, inter=inter: apply_rope(t, cos, sin, inter, offset=2), (x,))


def test_rotate_pair_matches_complex_multiplication():
    for x, y, a in [(1.0, 0.0, math.pi / 2), (0.3, -2.0, 1.234), (2.0, 1.0, -0.5)]:
        z = complex(x, y) * complex(math.cos(a), math.sin(a))
        assert rotate_pair(x, y, a) == pytest.approx((z.real, z.imag))


# ---------------------------------------------------------------- interleaved <-> half-split


def test_permutation_maps_interleaved_to_half_split():
    x = torch.randn(3, 2, 9, 12, dtype=torch.float64)
    cos, sin = generate_rope_embeddings(9, 12, dtype=torch.float64)
    P = interleaved_to_half_split
    torch.testing.assert_close(P(apply_rope(x, cos, sin, True)), apply_rope(P(x), cos, sin, False))
    torch.testing.assert_close(half_split_to_interleaved(P(x)), x)
    assert P(torch.arange(6.0)).tolist() == [0, 2, 4, 1, 3, 5]


def test_permuted_weights_give_same_scores():
    torch.manual_seed(0)
    H, d, D, L = 3, 8, 24, 7
    wq, wk = torch.randn(H * d, D, dtype=torch.float64), torch.randn(H * d, D, dtype=torch.float64)
    x = torch.randn(L, D, dtype=torch.float64)
    cos, sin = generate_rope_embeddings(L, d, dtype=torch.float64)

    def scores(wq, wk, inter):
        q = apply_rope((x @ wq.T).unflatten(-1, (H, d)).transpose(0, 1), cos, sin, inter)
        k = apply_rope((x @ wk.T).unflatten(-1, (H, d)).transpose(0, 1), cos, sin, inter)
        return q @ k.transpose(-1, -2)  # (H, L, L)

    ref = scores(wq, wk, True)
    pq, pk = permute_qk_weight(wq, H), permute_qk_weight(wk, H)
    torch.testing.assert_close(scores(pq, pk, False), ref)
    torch.testing.assert_close(permute_qk_weight(pq, H, to="interleaved"), wq)
    # without the permutation the conventions disagree
    assert not torch.allclose(scores(wq, wk, False), ref)


# ---------------------------------------------------------------- the attention module


def reference_attention(mod, query, key, value, mask=None, q_offset=0, k_offset=0):
    """Float64 oracle: explicit rotation matrices and a written-out softmax, with mod's weights."""
    H, d = mod.num_heads, mod.head_dim
    lin = lambda x, layer: x.double() @ layer.weight.double().T + layer.bias.double()  # noqa: E731

    def heads(x):
        return x.unflatten(-1, (H, d)).transpose(1, 2)  # (B, H, N, d)

    def rotate(x, off):
        R = torch.stack([rotation_matrix(off + t, d) for t in range(x.shape[-2])])  # (N, d, d)
        return torch.einsum("nij,bhnj->bhni", R, x)

    q = rotate(heads(lin(query, mod.q_proj)), q_offset)
    k = rotate(heads(lin(key, mod.k_proj)), k_offset)
    v = heads(lin(value, mod.v_proj))
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        s = s + mask.double() if mask.is_floating_point() else s.masked_fill(~mask, float("-inf"))
    w = torch.softmax(s, dim=-1)
    out = w @ v
    return lin(out.transpose(1, 2).flatten(2), mod.out_proj), w


def make(embed_dim=32, num_heads=4, seed=0, **kw):
    torch.manual_seed(seed)
    return StandardAttentionWithRoPE(embed_dim, num_heads, **kw).eval()


def test_module_self_attention_matches_oracle_and_fused_path():
    mod = make()
    x = torch.randn(2, 9, 32)
    cos, sin = generate_rope_embeddings(9, 8)
    out = mod(x, x, x, rope_embeddings=(cos, sin))
    out2, w = mod(x, x, x, rope_embeddings=(cos, sin), return_attn=True)
    ref, ref_w = reference_attention(mod, x, x, x)
    assert out.shape == (2, 9, 32) and w.shape == (2, 4, 9, 9)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))


def test_module_cross_attention_and_masks():
    mod = make(embed_dim=24, num_heads=2)
    q, kv = torch.randn(3, 5, 24), torch.randn(3, 11, 24)
    cos, sin = generate_rope_embeddings(11, 12)
    keep = torch.rand(3, 11) > 0.3
    keep[:, 0] = True
    add = torch.zeros(3, 1, 1, 11).masked_fill(~keep[:, None, None, :], float("-inf"))
    for mask in (None, add, keep[:, None, None, :], torch.randn(1, 2, 5, 11)):
        out, w = mod(q, kv, kv, rope_embeddings=(cos, sin), attn_mask=mask, return_attn=True)
        fused = mod(q, kv, kv, rope_embeddings=(cos, sin), attn_mask=mask)
        ref, ref_w = reference_attention(mod, q, kv, kv, mask)
        assert out.shape == (3, 5, 24) and w.shape == (3, 2, 5, 11)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fused.double(), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-4)
    out, w = mod(q, kv, kv, rope_embeddings=(cos, sin), attn_mask=add, return_attn=True)
    assert torch.all(w[~keep[:, None, None, :].expand_as(w)] == 0)


@settings(max_examples=25, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([2, 4, 8]), nq=st.integers(1, 6),
       nk=st.integers(1, 7), batch=st.integers(1, 2), mask_kind=st.sampled_from(["none", "bool", "float"]),
       q_offset=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_module_property_against_oracle(heads, head_dim, nq, nk, batch, mask_kind, q_offset, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    D = heads * head_dim
    mod = StandardAttentionWithRoPE(D, heads).eval()
    q, kv = torch.randn(batch, nq, D, generator=g), torch.randn(batch, nk, D, generator=g)
    cos, sin = generate_rope_embeddings(max(nq + q_offset, nk), head_dim)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(batch, 1, nq, nk, generator=g) > 0.3
        mask[..., 0] = True  # every query keeps a key: the oracle's softmax stays defined
    elif mask_kind == "float":
        mask = torch.randn(1, heads, nq, nk, generator=g)
    with torch.no_grad():
        fused = mod(q, kv, kv, (cos, sin), attn_mask=mask, q_offset=q_offset)
        out, w = mod(q, kv, kv, (cos, sin), attn_mask=mask, return_attn=True, q_offset=q_offset)
        ref, ref_w = reference_attention(mod, q, kv, kv, mask, q_offset=q_offset)
    assert fused.shape == out.shape == (batch, nq, D) and w.shape == (batch, heads, nq, nk)
    torch.testing.assert_close(fused.double(), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-4)


def test_module_fully_masked_row_gives_zeros_not_nan():
    mod = make(embed_dim=16, num_heads=2)
    x = torch.randn(1, 4, 16)
    cos, sin = generate_rope_embeddings(4, 8)
    mask = torch.zeros(4, 4)
    mask[2] = float("-inf")
    for ret in (False, True):
        res = mod(x, x, x, rope_embeddings=(cos, sin), attn_mask=mask, return_attn=ret)
        out = res[0] if ret else res
        assert not torch.isnan(out).any()
        torch.testing.assert_close(out[0, 2], mod.out_proj.bias)  # zero attention output, then bias
        if ret:
            assert torch.all(res[1][:, :, 2] == 0)


def test_module_decoding_with_offsets_equals_full_causal_forward():
    mod = make()
    x = torch.randn(2, 10, 32)
    cos, sin = generate_rope_embeddings(10, 8)
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    full = mod(x, x, x, rope_embeddings=(cos, sin), attn_mask=causal)
    steps = [mod(x[:, t:t + 1], x[:, :t + 1], x[:, :t + 1], rope_embeddings=(cos, sin), q_offset=t)
             for t in range(10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_module_common_shift_of_positions_changes_nothing():
    mod = make()
    x = torch.randn(1, 6, 32)
    cos, sin = generate_rope_embeddings(40, 8)
    a = mod(x, x, x, rope_embeddings=(cos, sin))
    b = mod(x, x, x, rope_embeddings=(cos, sin), q_offset=31, k_offset=31)
    c = mod(x, x, x, rope_embeddings=(cos, sin), q_offset=3, k_offset=0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)


def test_module_dropout_only_in_training():
    mod = make(dropout=0.5)
    x = torch.randn(2, 8, 32)
    cos, sin = generate_rope_embeddings(8, 8)
    torch.testing.assert_close(mod(x, x, x, (cos, sin)), mod(x, x, x, (cos, sin)))
    mod.train()
    torch.manual_seed(1)
    a = mod(x, x, x, (cos, sin))
    torch.manual_seed(2)
    assert not torch.allclose(a, mod(x, x, x, (cos, sin)))


def test_module_gradcheck():
    mod = make(embed_dim=8, num_heads=2).double()
    x = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    cos, sin = generate_rope_embeddings(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: mod(t, t, t, (cos, sin)), (x,))
    assert torch.autograd.gradcheck(lambda t: mod(t, t, t, (cos, sin), return_attn=True)[0], (x,))


def test_module_errors():
    with pytest.raises(ValueError, match="divisible"):
        StandardAttentionWithRoPE(30, 4)
    with pytest.raises(ValueError, match="head_dim.*12 // 4"):
        StandardAttentionWithRoPE(12, 4)
    mod = make()
    x = torch.randn(2, 9, 32)
    cos, sin = generate_rope_embeddings(5, 8)
    with pytest.raises(ValueError, match="cover 5 positions"):
        mod(x, x, x, rope_embeddings=(cos, sin))
    cos, sin = generate_rope_embeddings(9, 8)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 9, 9\)"):
        mod(x, x, x, rope_embeddings=(cos, sin), attn_mask=torch.zeros(3, 9, 9))
    with pytest.raises(ValueError, match=r"query must have shape \(B, N, embed_dim=32\)"):
        mod(torch.randn(2, 9, 16), x, x, rope_embeddings=(cos, sin))
    with pytest.raises(ValueError, match="share"):
        mod(x, x, x[:, :4], rope_embeddings=(cos, sin))
    with pytest.raises(TypeError, match="rope_embeddings"):
        mod(x, x, x, rope_embeddings=cos)
    with pytest.raises(TypeError, match="key has dtype torch.float64"):
        mod(x, x.double(), x, rope_embeddings=(cos, sin))


def test_tables_on_another_device_raise():
    cos, sin = generate_rope_embeddings(4, 8, device="meta")
    assert cos.device.type == "meta" and cos.shape == (4, 4)
    with pytest.raises(ValueError, match="meta"):
        apply_rope(torch.randn(1, 4, 8), cos, sin)


def test_scaled_tables_equal_plain_tables_with_the_new_frequencies():
    d, s = 32, 4.0
    cos_ntk, sin_ntk = scaled_rope_embeddings(20, d, method="ntk", scale=s)
    cos_ref, sin_ref = generate_rope_embeddings(20, d, base=ntk_scaled_base(10000.0, d, s))
    assert torch.equal(cos_ntk, cos_ref) and torch.equal(sin_ntk, sin_ref)
    cos_pi, _ = scaled_rope_embeddings(20, d, method="linear", scale=s)
    m = torch.arange(20, dtype=torch.float64)[:, None] / s  # PI: positions divided by s
    torch.testing.assert_close(cos_pi.double(), torch.cos(m * rope_inv_freq(d)), atol=1e-7, rtol=0)


# ---------------------------------------------------------------- scaling


def test_position_interpolation_maps_long_positions_into_trained_range():
    s, d = 4.0, 16
    theta = rope_inv_freq(d)
    torch.testing.assert_close(linear_scaled_inv_freq(theta, s), theta / s)
    cos_pi, sin_pi = scaled_rope_embeddings(64, d, method="linear", scale=s)
    cos, sin = generate_rope_embeddings(16, d)
    # PI at position 4m equals plain RoPE at position m
    torch.testing.assert_close(cos_pi[::4], cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin_pi[::4], sin, atol=1e-6, rtol=0)


def test_ntk_base_closed_form():
    d, s, b = 64, 8.0, 10000.0
    assert ntk_scaled_base(b, d, s) == pytest.approx(b * s ** (64 / 62))
    theta, ntk = rope_inv_freq(d, b), ntk_scaled_inv_freq(d, b, s)
    assert ntk[0].item() == 1.0  # highest frequency kept (extrapolated)
    assert ntk[-1].item() == pytest.approx(theta[-1].item() / s, rel=1e-12)  # lowest interpolated by s
    assert torch.all(ntk <= theta) and torch.all(ntk >= theta / s - 1e-15)


def test_yarn_paper_frequencies_follow_the_papers_ramp_in_r():
    d, b, s, L = 64, 10000.0, 16.0, 2048
    theta = rope_inv_freq(d, b)
    y = yarn_inv_freq(d, b, s, L, alpha=1.0, beta=32.0, ramp="paper")
    r = L * theta / (2 * math.pi)  # rotations within the trained length
    hi, lo = r > 32, r < 1
    assert hi.any() and lo.any() and (~hi & ~lo).any()
    torch.testing.assert_close(y[hi], theta[hi])
    torch.testing.assert_close(y[lo], theta[lo] / s)
    mid = ~hi & ~lo
    g = (r[mid] - 1) / 31
    torch.testing.assert_close(y[mid], (1 - g) * theta[mid] / s + g * theta[mid])
    assert yarn_ramp(torch.tensor([0.5, 1.0, 16.5, 32.0, 40.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    torch.testing.assert_close(yarn_inv_freq(d, b, 1.0, L, ramp="paper"), theta)  # s = 1: plain RoPE
    torch.testing.assert_close(yarn_inv_freq(d, b, 1.0, L), theta)


def _yarn_reference_by_hand(dim, base, factor, original_max, beta_fast=32, beta_slow=1, truncate=True):
    """The YaRN reference code's inv_freq (jquesnelle/yarn; transformers' rope_type 'yarn'),
    rewritten here from its definition in plain Python floats, one pair at a time."""
    def correction_dim(rotations):  # pair index whose frequency turns `rotations` times in L
        return dim * math.log(original_max / (rotations * 2 * math.pi)) / (2 * math.log(base))
    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    out = []
    for i in range(dim // 2):
        freq = base ** (-(2 * i) / dim)
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: keep (extrapolate), 1: divide by factor
        out.append(freq / factor * ramp + freq * (1 - ramp))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("dim, base, factor, original_max", [
    (64, 10000.0, 4.0, 2048), (128, 10000.0, 16.0, 4096), (128, 1e6, 4.0, 32768), (64, 500000.0, 8.0, 8192),
    (16, 10000.0, 2.0, 64)])
def test_yarn_default_is_the_reference_codes_ramp_in_the_pair_index(dim, base, factor, original_max):
    ours = yarn_inv_freq(dim, base, factor, original_max)
    torch.testing.assert_close(ours, _yarn_reference_by_hand(dim, base, factor, original_max), rtol=1e-12, atol=0)
    fractional = yarn_inv_freq(dim, base, factor, original_max, truncate=False)
    torch.testing.assert_close(fractional, _yarn_reference_by_hand(dim, base, factor, original_max, truncate=False),
                               rtol=1e-12, atol=0)
    cos, _ = scaled_rope_embeddings(3, dim, base, method="yarn", scale=factor, original_max_position=original_max,
                                    dtype=torch.float64)
    torch.testing.assert_close(cos[1], torch.cos(ours) * yarn_attention_factor(factor))
    # and transformers' own ROPE_INIT_FUNCTIONS["yarn"] (a pinned test-only reference package,
    # installed by the set-up: a missing transformers fails here, never skips)
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    config = LlamaConfig(hidden_size=dim * 4, num_attention_heads=4, max_position_embeddings=original_max * 4,
                         rope_parameters={"rope_type": "yarn", "rope_theta": base, "factor": factor,
                                          "original_max_position_embeddings": original_max})
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    torch.testing.assert_close(ours.float(), inv_freq, rtol=1e-6, atol=0)
    assert attention_factor == pytest.approx(yarn_attention_factor(factor))


def test_the_papers_ramp_differs_from_the_reference_code_between_the_correction_dims():
    """Worked numbers: head_dim 64, base 1e4, factor 4, L 2048, beta 32 / alpha 1."""
    ref = yarn_inv_freq(64, 10000.0, 4.0, 2048)
    paper = yarn_inv_freq(64, 10000.0, 4.0, 2048, ramp="paper")
    gap = (paper / ref - 1).abs()
    assert yarn_correction_range(64, 10000.0, 2048) == (8, 21)
    assert torch.equal(gap[:9], torch.zeros(9)) and gap[21:].max() < 1e-15  # same outside the ramp
    assert 0.13 < gap[9:21].min() and gap[9:21].max() < 0.45
    with pytest.raises(ValueError, match=r"ramp must be one of \['reference', 'paper'\]"):
        yarn_inv_freq(64, 10000.0, 4.0, 2048, ramp="linear")


def test_yarn_attention_factor_and_tables():
    assert yarn_attention_factor(1.0) == 1.0 and yarn_attention_factor(0.5) == 1.0
    assert yarn_attention_factor(16.0) == pytest.approx(0.1 * math.log(16.0) + 1)
    cos, sin = scaled_rope_embeddings(10, 16, method="yarn", scale=16.0, original_max_position=64)
    torch.testing.assert_close(cos ** 2 + sin ** 2, torch.full((10, 8), yarn_attention_factor(16.0) ** 2))
    with pytest.raises(ValueError, match="original_max_position"):
        scaled_rope_embeddings(10, 16, method="yarn", scale=2.0)
    with pytest.raises(ValueError, match="method"):
        scaled_rope_embeddings(10, 16, method="dynamic")
    with pytest.raises(ValueError, match="scale"):
        scaled_rope_embeddings(10, 16, method="linear", scale=0.0)
    c0, s0 = scaled_rope_embeddings(10, 16)
    c1, s1 = generate_rope_embeddings(10, 16)
    assert torch.equal(c0, c1) and torch.equal(s0, s1)


# ---------------------------------------------------------------- sinusoidal, decay, ALiBi, xPos


def test_sinusoidal_closed_form_and_relative_rotation():
    pe = sinusoidal_position_encoding(50, 16).double()
    m = torch.arange(50.0, dtype=torch.float64)[:, None]
    div = 10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    torch.testing.assert_close(pe[:, 0::2], torch.sin(m / div), atol=1e-7, rtol=0)
    torch.testing.assert_close(pe[:, 1::2], torch.cos(m / div), atol=1e-7, rtol=0)
    # Vaswani sec. 3.5: PE[m + k] is a linear function of PE[m] (a rotation per pair)
    k = 7
    pairs = pe.unflatten(-1, (8, 2))  # (L, 8, [sin, cos])
    ang = k / div
    sin_mk = pairs[:-k, :, 0] * torch.cos(ang) + pairs[:-k, :, 1] * torch.sin(ang)
    torch.testing.assert_close(sin_mk, pairs[k:, :, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="d_model"):
        sinusoidal_position_encoding(4, 5)


def test_decay_bound_closed_form_and_decay():
    d = 64
    b = rope_decay_bound([0, 10, 100, 1000], d)
    assert b[0].item() == pytest.approx((d // 2 + 1) / 2)  # |S_j| = j at r = 0
    assert b[0] > b[1] > b[2] > b[3]


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]
    torch.testing.assert_close(alibi_slopes(16), torch.tensor([2.0 ** (-k / 2) for k in range(1, 17)]))
    # 12 heads: the 8-head slopes, then slopes 1, 3, 5, 7 (1-based) of the 16-head sequence
    want12 = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(want12))
    assert alibi_slopes(1).tolist() == [2.0 ** -8]
    assert len(alibi_slopes(5)) == 5 and len(set(alibi_slopes(24).tolist())) == 24
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias(4, 5)
    m = alibi_slopes(4)
    assert bias.shape == (4, 5, 5)
    for h in range(4):
        for i in range(5):
            for j in range(i + 1):
                assert bias[h, i, j].item() == pytest.approx(-m[h].item() * (i - j))
    # queries are the last positions when k_len > q_len (decoding)
    torch.testing.assert_close(alibi_bias(4, 2, 5), bias[:, 3:, :])
    # as an additive mask it equals torch's SDPA with that float mask
    q, k, v = torch.randn(3, 1, 4, 5, 8).unbind(0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    mask = bias.masked_fill(~causal, float("-inf"))
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + mask, -1) @ v
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), ref)


def test_xpos_scale_formula_and_relative_property():
    d = 16
    zeta = (torch.arange(0, d, 2, dtype=torch.float64) + 0.4 * d) / (1.4 * d)  # torchscale's form
    torch.testing.assert_close(xpos_scale(5, d, offset=3, dtype=torch.float64),
                               zeta[None] ** (torch.arange(3, 8, dtype=torch.float64)[:, None] / 512))
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, d, dtype=torch.float64)
    cos, sin = generate_rope_embeddings(400, d, dtype=torch.float64)

    def score(m, n):
        qq, kk = apply_xpos(q, k, cos, sin, q_offset=m, k_offset=n, scale_base=64.0)
        return (qq[0] @ kk[0]).item()

    assert score(30, 10) == pytest.approx(score(330, 310), rel=1e-9)
    # closed form: pair i of the RoPE score times zeta_i^((m - n)/B)
    z = ((torch.arange(0, d, 2, dtype=torch.float64) + 0.4 * d) / (1.4 * d)) ** (20 / 64.0)
    theta = rope_inv_freq(d)
    qa, qb, ka, kb = q[0, 0::2], q[0, 1::2], k[0, 0::2], k[0, 1::2]
    pair = (qa * ka + qb * kb) * torch.cos(20 * theta) + (qa * kb - qb * ka) * torch.sin(20 * theta)
    assert score(30, 10) == pytest.approx((z * pair).sum().item(), rel=1e-9)
