"""The rolling-buffer KV cache of a causal window, with attention sinks (attnkit.gqa.cache).

Oracle: PyTorch's SDPA with the mask written out element by element from its set,
S(i) = {j <= i : i - j < window} ∪ {j <= i : j < sink}."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit import gqa


def set_mask(n, window, sink):
    """The set, element by element (no attnkit code)."""
    m = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(i + 1):
            m[i, j] = (i - j < window) or (j < sink)
    return m


def qkv(n, dtype, d=8, dv=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, n, d, generator=g, dtype=dtype), torch.randn(2, 3, n, d, generator=g, dtype=dtype),
            torch.randn(2, 3, n, dv, generator=g, dtype=dtype))


@pytest.mark.parametrize("n", [0, 1, 2, 13, 37])
@pytest.mark.parametrize(("window", "sink"), [(1, 0), (3, 0), (8, 0), (5, 1), (5, 4), (64, 0), (4, 64)])
def test_the_mask_is_its_set(n, window, sink):
    assert torch.equal(gqa.sink_window_mask(n, window, sink), set_mask(n, window, sink))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 13, 37])
@pytest.mark.parametrize(("window", "sink"), [(1, 0), (4, 0), (7, 0), (4, 2), (7, 4), (50, 0), (3, 50)])
def test_decoding_through_the_rolling_cache_equals_masked_full_attention(dtype, n, window, sink):
    q, k, v = qkv(n, dtype)
    out, cache = gqa.rolling_decode(q, k, v, window, sink)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=set_mask(n, window, sink))
    assert out.shape == (2, 3, n, 6) and out.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out, ref, atol=tol, rtol=0), (out - ref).abs().max()
    assert cache.seen == n


def test_without_a_window_limit_it_is_causal_attention():
    q, k, v = qkv(29, torch.float64)
    out, _ = gqa.rolling_decode(q, k, v, window=29)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-12)


@pytest.mark.parametrize(("window", "sink"), [(5, 0), (5, 3)])
def test_the_cache_holds_exactly_the_last_querys_keys_and_its_memory_does_not_grow(window, sink):
    n = 41
    _, k, v = qkv(n, torch.float32)
    cache = gqa.RollingKVCache(window, sink)
    sizes = []
    for t in range(n):
        kc, vc = cache.update(k[..., t:t + 1, :], v[..., t:t + 1, :])
        held = sorted(cache.positions.tolist())
        assert held == [j for j in range(t + 1) if t - j < window or j < sink]
        for slot, p in enumerate(cache.positions.tolist()):  # each slot holds that position's key and value
            assert torch.equal(kc[..., slot, :], k[..., p, :]) and torch.equal(vc[..., slot, :], v[..., p, :])
        sizes.append(cache.nbytes)
    assert set(sizes) == {(window + sink) * 2 * 3 * (8 + 6) * 4}  # O(sink + window), not O(t)
    grown = gqa.KVCache()
    grown.update(k, v)
    assert grown.nbytes == n * 2 * 3 * (8 + 6) * 4 > cache.nbytes


def test_mistrals_slot_rule():
    cache = gqa.RollingKVCache(4)
    assert [cache.slot(p) for p in range(10)] == [p % 4 for p in range(10)]
    cache = gqa.RollingKVCache(4, sink=2)
    assert [cache.slot(p) for p in range(10)] == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]


def test_writing_several_positions_at_once_equals_one_at_a_time():
    _, k, v = qkv(23, torch.float64)
    one, many = gqa.RollingKVCache(6, 2), gqa.RollingKVCache(6, 2)
    for t in range(23):
        a = one.update(k[..., t:t + 1, :], v[..., t:t + 1, :])
    many.update(k[..., :10, :], v[..., :10, :])
    b = many.update(k[..., 10:, :], v[..., 10:, :])
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(one.positions, many.positions)


def test_bad_input_names_the_argument():
    q, k, v = qkv(5, torch.float32)
    with pytest.raises(ValueError, match="window"):
        gqa.RollingKVCache(0)
    with pytest.raises(ValueError, match="sink"):
        gqa.RollingKVCache(4, sink=-1)
    with pytest.raises(TypeError, match="window"):
        gqa.RollingKVCache(2.5)
    with pytest.raises(ValueError, match="window"):
        gqa.sink_window_mask(5, 0)
    with pytest.raises(ValueError, match="sink"):
        gqa.sink_window_mask(5, 2, sink=-1)
    with pytest.raises(ValueError, match="k"):
        gqa.rolling_decode(q, k[..., :4, :], v[..., :4, :], 2)
    with pytest.raises(TypeError, match="k"):
        gqa.rolling_decode(q, k.double(), v, 2)
    with pytest.raises(ValueError, match="scale"):
        gqa.rolling_decode(q, k, v, 2, scale=float("nan"))
    cache = gqa.RollingKVCache(3)
    with pytest.raises(ValueError, match="v_new"):
        cache.update(k[..., :2, :], v[..., :3, :])
    cache.update(k[..., :1, :], v[..., :1, :])
    with pytest.raises(ValueError, match="k_new"):
        cache.update(k[:1, ..., :1, :], v[:1, ..., :1, :])
    with pytest.raises(TypeError, match="k_new"):
        cache.update(k[..., :1, :].double(), v[..., :1, :].double())
    with pytest.raises(TypeError, match="k_new"):
        cache.update([1.0], v)
