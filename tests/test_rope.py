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
        assert torch.autograd.gradcheck(lambda t: apply_rope(t, cos, sin, inter, offset=2), (x,))


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
