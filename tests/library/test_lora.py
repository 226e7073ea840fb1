"""attnkit.lora against oracles: the closed form h = W x + b + (alpha/r) B A x written out, an
explicit merged matrix W + (alpha/r) B A, autograd and gradcheck (float64), attnkit.core's
masked softmax attention, and from-the-definition loops for every head kind of LoRASelfAttention
(local buckets, global linear heads, causal or not, blind spot 1 or > 1, masks, ragged N)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnkit import lora as L
from attnkit.core import scaled_dot_product_attention
from attnkit.experiments import lora as XL


def _randomise_lora(module: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Give every LoRA B a non-zero value (B = 0 would hide a wrong update)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, L.LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g, dtype=m.lora_B.dtype) * scale)


# ---------------------------------------------------------------- LoRALinear


@pytest.mark.parametrize("use_rslora", [False, True])
def test_lora_linear_equals_closed_form_and_explicit_matrix(use_rslora):
    torch.manual_seed(0)
    layer = L.LoRALinear(12, 7, r=3, lora_alpha=6, use_rslora=use_rslora, dtype=torch.float64)
    _randomise_lora(layer)
    x = torch.randn(5, 4, 12, dtype=torch.float64)
    s = 6 / math.sqrt(3) if use_rslora else 6 / 3
    assert layer.scaling == pytest.approx(s)
    W, b, A, B = layer.weight, layer.bias, layer.lora_A, layer.lora_B
    closed = torch.einsum("noi,...i->...no", W[None], x)[..., 0, :] + b  # W x + b
    closed = closed + s * torch.einsum("or,ri,...i->...o", B, A, x)  # + s B A x
    explicit = x @ (W + s * B @ A).T + b  # one merged matrix
    out = layer(x)
    torch.testing.assert_close(out, closed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, explicit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(L.lora_linear(x, W, b, A, B, s), explicit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.delta_weight(), s * B @ A)


def test_init_b_zero_a_kaiming_and_from_linear_starts_equal_and_shares_weights():
    torch.manual_seed(1)
    base = nn.Linear(64, 10)
    layer = L.LoRALinear.from_linear(base, r=4, lora_alpha=8)
    assert torch.equal(layer.lora_B, torch.zeros(10, 4))
    bound = 1 / math.sqrt(64)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound
    x = torch.randn(3, 64)
    assert torch.equal(layer(x), base(x))  # the update starts at exactly zero
    assert layer.weight.data_ptr() == base.weight.data_ptr()  # wrapped, not copied
    assert not layer.weight.requires_grad and not layer.bias.requires_grad


def test_merge_unmerge_round_trip_and_idempotent():
    torch.manual_seed(2)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-14)):
        layer = L.LoRALinear(16, 24, r=4, lora_alpha=16, dtype=dtype)
        _randomise_lora(layer)
        W0 = layer.weight.clone()
        x = torch.randn(6, 16, dtype=dtype)
        y = layer(x)
        layer.merge()
        merged = layer.weight.clone()
        torch.testing.assert_close(merged, W0 + layer.scaling * layer.lora_B @ layer.lora_A)
        torch.testing.assert_close(layer(x), y, rtol=tol * 10, atol=tol * 10)
        layer.merge()  # merging twice must not add the update twice
        assert torch.equal(layer.weight, merged) and layer.merged
        layer.unmerge()
        assert (layer.weight - W0).abs().max() <= tol * W0.abs().max()
        restored = layer.weight.clone()
        layer.unmerge()
        assert torch.equal(layer.weight, restored) and not layer.merged
        torch.testing.assert_close(layer(x), y, rtol=tol * 10, atol=tol * 10)


def test_gradients_only_reach_a_and_b():
    torch.manual_seed(3)
    layer = L.LoRALinear(8, 5, r=2)
    x = torch.randn(4, 8, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert torch.equal(layer.lora_A.grad, torch.zeros(2, 8))  # B = 0: dL/dA = s B^T g x^T = 0
    assert layer.lora_B.grad.abs().sum() > 0  # ... but B learns from the first step
    _randomise_lora(layer)
    layer.lora_A.grad = layer.lora_B.grad = None
    layer(x).pow(2).sum().backward()
    assert layer.lora_A.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() > 0
    # autograd's gradient for A equals the closed form s B^T (dL/dh) x^T
    h = layer(x)
    g = 2 * h.detach()
    torch.testing.assert_close(layer.lora_A.grad, layer.scaling * layer.lora_B.T.detach() @ g.T @ x.detach(),
                               rtol=1e-5, atol=1e-6)


def test_a_and_b_zero_never_move():
    torch.manual_seed(4)
    layer = L.LoRALinear(8, 5, r=2)
    with torch.no_grad():
        layer.lora_A.zero_()
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=0.1)
    for _ in range(5):
        loss = (layer(torch.randn(4, 8)) - 1).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(layer.lora_A, torch.zeros(2, 8)) and torch.equal(layer.lora_B, torch.zeros(5, 2))


def test_gradcheck_float64():
    torch.manual_seed(5)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    W = torch.randn(4, 6, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    A = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    B = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, A, B: L.lora_linear(x, W, b, A, B, 1.5), (x, A, B))


def test_lora_dropout_acts_on_the_update_only():
    torch.manual_seed(6)
    layer = L.LoRALinear(32, 8, r=4, lora_dropout=0.5)
    _randomise_lora(layer)
    x = torch.randn(10, 32)
    base = F.linear(x, layer.weight, layer.bias)
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)  # dropout in training
    layer.eval()
    torch.testing.assert_close(layer(x), base + x @ layer.delta_weight().T)
    layer.lora_B.data.zero_()
    layer.train()
    assert torch.equal(layer(x), base)  # the base path never sees dropout


def test_from_weight_fan_in_fan_out():
    torch.manual_seed(7)
    w_conv1d = torch.randn(6, 4)  # GPT-2 Conv1D layout (in=6, out=4): y = x @ w
    layer = L.LoRALinear.from_weight(w_conv1d, torch.zeros(4), r=2, fan_in_fan_out=True)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ w_conv1d)
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., 4\), got \(3, 6\)"):
        L.LoRALinear.from_weight(w_conv1d, r=2)(x)  # (6, 4) read as (out=6, in=4)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="r must be an int >= 1, got 0"):
        L.LoRALinear(4, 4, r=0)
    with pytest.raises(TypeError, match="r must be an int"):
        L.LoRALinear(4, 4, r=2.0)
    with pytest.raises(ValueError, match="lora_alpha must be a finite number > 0, got -1.0"):
        L.lora_scaling(4, -1)
    with pytest.raises(ValueError, match=r"lora_dropout must be a finite number >= 0 and < 1, got 1.5"):
        L.LoRALinear(4, 4, lora_dropout=1.5)
    with pytest.raises(ValueError, match=r"B \(out, r\) and A \(r, in\) must share r"):
        L.lora_delta(torch.zeros(2, 5), torch.zeros(3, 4), 1.0)
    with pytest.raises(ValueError, match=r"A must be \(r, 6\)"):
        L.merge_weight(torch.zeros(3, 6), torch.zeros(2, 5), torch.zeros(3, 2), 1.0)
    with pytest.raises(TypeError, match="linear must be a torch.nn.Linear, got Conv1d"):
        L.LoRALinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match=r"bias must be \(4,\)"):
        L.LoRALinear.from_weight(torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but LoRALinear's weights are torch.float32"):
        L.LoRALinear(4, 4)(torch.zeros(2, 4, dtype=torch.float64))


# ---------------------------------------------------------------- model helpers


def _tiny_model():
    torch.manual_seed(8)
    return nn.Sequential(L.LoRALinear(6, 5, r=2), nn.ReLU(), nn.Linear(5, 3), L.LoRALinear(3, 2, r=1, bias=False))


@pytest.mark.parametrize("bias, trainable", [
    ("none", {"0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B"}),
    ("all", {"0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B", "0.bias", "2.bias"}),
    ("lora_only", {"0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B", "0.bias"}),
])
def test_mark_only_lora_as_trainable_and_state_dict(bias, trainable):
    model = L.mark_only_lora_as_trainable(_tiny_model(), bias=bias)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    assert set(L.lora_state_dict(model, bias=bias)) == trainable
    n_trainable, n_total = L.count_parameters(model)
    by_hand = {"0.lora_A": 12, "0.lora_B": 10, "3.lora_A": 3, "3.lora_B": 2, "0.bias": 5, "2.bias": 3}
    assert n_trainable == sum(by_hand[n] for n in trainable)
    assert n_total == sum(p.numel() for p in model.parameters()) == 30 + 5 + 12 + 10 + 15 + 3 + 6 + 3 + 2
    with pytest.raises(ValueError, match="bias must be 'none', 'all' or 'lora_only', got 'some'"):
        L.mark_only_lora_as_trainable(model, bias="some")


def test_lora_state_dict_round_trip():
    src, dst = _tiny_model(), _tiny_model()
    _randomise_lora(src, seed=1)
    missing, unexpected = dst.load_state_dict(L.lora_state_dict(src), strict=False)
    assert not unexpected and all("lora_" not in k for k in missing)
    x = torch.randn(4, 6)
    torch.testing.assert_close(dst(x), src(x))


def test_param_count_formula():
    assert L.lora_param_count(4096, 4096, 8) == 65536
    layer = L.LoRALinear(30, 11, r=5)
    assert L.lora_param_count(30, 11, 5) == layer.lora_A.numel() + layer.lora_B.numel()


def test_subspace_similarity():
    torch.manual_seed(9)
    A = torch.randn(8, 50, dtype=torch.float64)
    table = L.subspace_similarity(A, A)
    torch.testing.assert_close(torch.diagonal(table), torch.ones(8, dtype=torch.float64))
    # from the definition: top-i right-singular vectors as columns, ||U1^T U2||_F^2 / min(i, j)
    A2 = torch.randn(4, 50, dtype=torch.float64)
    U1 = torch.linalg.svd(A, full_matrices=False)[2].T
    U2 = torch.linalg.svd(A2, full_matrices=False)[2].T
    for i, j in ((1, 1), (3, 2), (8, 4)):
        expected = (U1[:, :i].T @ U2[:, :j]).pow(2).sum() / min(i, j)
        assert L.subspace_similarity(A, A2, i, j).item() == pytest.approx(expected.item(), rel=1e-10)
    E = torch.eye(50, dtype=torch.float64)
    assert L.subspace_similarity(E[:3], E[3:6]).abs().max() < 1e-12  # orthogonal subspaces
    with pytest.raises(ValueError, match=r"i and j must lie in 1\.\.8 and 1\.\.4, got i=9, j=1"):
        L.subspace_similarity(A, A2, 9, 1)


# ---------------------------------------------------------------- the head kinds, from the definitions


def _visible_by_loops(n, kind, causal, window, b):
    vis = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if kind == "local":
                ok = j // window in ((i // window) - 1, i // window) or (not causal and j // window == i // window + 1)
                vis[i, j] = ok and (j <= i or not causal)
            elif not causal:
                vis[i, j] = True
            else:
                vis[i, j] = j <= i if b == 1 else j < b * (i // b)
    return vis


def _local_reference(q, k, v, window, causal, mask):
    n = q.shape[2]
    allowed = _visible_by_loops(n, "local", causal, window, 1)[None, None]  # (1, 1, N, N)
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    return scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # fully masked rows: zeros


def _global_reference(q, k, v, causal, b, mask):
    n, d = q.shape[2], q.shape[3]
    phi = q.softmax(dim=-1) * d ** -0.5
    keep = torch.ones(q.shape[0], n, dtype=torch.bool) if mask is None else mask
    if not causal:
        ks = k.masked_fill(~keep[:, None, :, None], float("-inf"))
        w = torch.softmax(ks, dim=-2).nan_to_num(0.0)  # softmax over the sequence, per feature
        return torch.einsum("bhid,bhjd,bhje->bhie", phi, w, v)  # sum_j (phi_i . w_j) v_j
    allowed = _visible_by_loops(n, "global", True, 1, b)[None, None] & keep[:, None, None, :]
    K = torch.einsum("bhid,bhjd->bhij", phi, torch.exp(k)) * allowed  # (B, H, N, N)
    return (K @ v) / K.sum(-1, keepdim=True).clamp_min(1e-3)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 23), window=st.integers(1, 7), causal=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 10_000))
def test_local_heads_equal_the_definition(n, window, causal, masked, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, n, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, n, generator=g) > 0.3 if masked else None
    out = L.local_bucket_attention(q, k, v, window, causal, mask)
    assert out.shape == (2, 2, n, 4)
    torch.testing.assert_close(out, _local_reference(q, k, v, window, causal, mask), rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 23), b=st.integers(1, 6), causal=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 10_000))
def test_global_heads_equal_the_definition(n, b, causal, masked, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, n, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, n, generator=g) > 0.3 if masked else None
    out = L.global_linear_attention(q, k, v, causal, b, mask)
    assert out.shape == (2, 2, n, 4)
    torch.testing.assert_close(out, _global_reference(q, k, v, causal, b, mask), rtol=1e-10, atol=1e-12)


def _global_causal_log_space(q, k, v, b, mask):
    """Causal global heads from the definition in float64, K_ij = sum_f phi(q_i)_f exp(k_jf) summed
    in log space (so no exp(k) overflows), the denominator floored at eps = 1e-3 as the module does."""
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    n, d = q.shape[2], q.shape[3]
    log_phi = torch.log_softmax(q, dim=-1) - 0.5 * math.log(d)
    log_k = torch.logsumexp(log_phi[..., :, None, :] + k[..., None, :, :], dim=-1)  # (B, H, N, N)
    allowed = _visible_by_loops(n, "global", True, 1, b)[None, None] & mask[:, None, None, :]
    log_k = log_k.masked_fill(~allowed, -math.inf)
    top = log_k.amax(-1, keepdim=True).clamp_min(-1e300)  # (B, H, N, 1): a row with no key keeps 0 / eps
    w = torch.exp(log_k - top)
    return (w @ v) / torch.maximum(w.sum(-1, keepdim=True), 1e-3 * torch.exp(-top))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shift", [-20.0, 0.0, 12.0, 89.0, 300.0])
def test_causal_global_heads_stay_exact_for_large_keys(shift, dtype):
    # before the fix exp(k) was taken without subtracting a maximum: all NaN once keys reach about
    # 89 in float32 and 12 in float16 (NaN at shift 12 in float16, 89 and 300 in float32 here)
    g = torch.Generator().manual_seed(3)
    q, v = (torch.randn(2, 2, 13, 8, generator=g) for _ in range(2))
    k = torch.randn(2, 2, 13, 8, generator=g) + shift
    mask = torch.rand(2, 13, generator=g) > 0.2
    q, k, v = (t.to(dtype) for t in (q, k, v))
    for b in (1, 4):
        out = L.global_linear_attention(q, k, v, causal=True, blindspot_size=b, key_mask=mask)
        ref = _global_causal_log_space(q, k, v, b, mask)
        err = (out.to(torch.float64) - ref).abs().max().item()
        # the inputs are exact in dtype; the error is rounding: of the exponents (|k| up to ~300), and
        # in half precision (computed in float32) of the output, down to its smallest subnormal step
        fi = torch.finfo(dtype)
        tol = 8 * fi.eps * (1 + k.abs().max().item()) if dtype.itemsize > 2 \
            else 2 * fi.eps * ref.abs().max().item() + fi.smallest_normal * fi.eps
        assert out.dtype == dtype and err <= tol, (b, err, tol)


def test_blind_spot_first_bucket_is_zero_and_no_key_gives_zero():
    torch.manual_seed(10)
    q, k, v = (torch.randn(1, 1, 10, 4) for _ in range(3))
    out = L.global_linear_attention(q, k, v, causal=True, blindspot_size=4)
    assert torch.equal(out[..., :4, :], torch.zeros(1, 1, 4, 4)) and out[..., 4:, :].abs().min() > 0
    none = torch.zeros(1, 10, dtype=torch.bool)
    for causal in (False, True):
        assert torch.equal(L.global_linear_attention(q, k, v, causal, 1, none), torch.zeros(1, 1, 10, 4))
        assert torch.equal(L.local_bucket_attention(q, k, v, 3, causal, none), torch.zeros(1, 1, 10, 4))


@pytest.mark.parametrize("kind, causal, b", [("local", False, 1), ("local", True, 1), ("global", False, 1),
                                             ("global", True, 1), ("global", True, 4)])
def test_visible_keys_is_what_the_outputs_depend_on(kind, causal, b):
    """Autograd: output row i depends on value j exactly where visible_keys says so."""
    n = 12
    torch.manual_seed(11)
    q, k = torch.randn(1, 1, n, 4, dtype=torch.float64), torch.randn(1, 1, n, 4, dtype=torch.float64)
    v = torch.randn(1, 1, n, 4, dtype=torch.float64)

    def f(v):
        if kind == "local":
            return L.local_bucket_attention(q, k, v, 3, causal)[0, 0].sum(-1)
        return L.global_linear_attention(q, k, v, causal, b)[0, 0].sum(-1)

    jac = torch.autograd.functional.jacobian(f, v)[:, 0, 0, :, :].abs().sum(-1)  # (n, n)
    expected = L.visible_keys(n, kind, causal, window=3, blindspot_size=b)
    assert torch.equal(jac > 0, expected)
    assert torch.equal(expected, _visible_by_loops(n, kind, causal, 3, b))


# ---------------------------------------------------------------- LoRASelfAttention


def _reference_layer(layer: L.LoRASelfAttention, x, mask):
    """The whole layer from the definitions: explicit merged weights, each head by its kind."""
    def w(m):
        return m.weight + (m.scaling * m.lora_B @ m.lora_A if isinstance(m, L.LoRALinear) else 0)

    H, Dh, nl = layer.heads, layer.dim_head, layer.n_local_attn_heads
    split = lambda t: t.reshape(*t.shape[:2], H, Dh).transpose(1, 2)  # noqa: E731
    q, k, v = split(x @ w(layer.to_q).T), split(x @ w(layer.to_k).T), split(x @ w(layer.to_v).T)
    outs = []
    if nl:
        outs.append(_local_reference(q[:, :nl], k[:, :nl], v[:, :nl], layer.local_attn_window_size,
                                     layer.causal, mask))
    if nl < H:
        outs.append(_global_reference(q[:, nl:], k[:, nl:], v[:, nl:], layer.causal, layer.blindspot_size, mask))
    h = torch.cat(outs, 1).transpose(1, 2).reshape(x.shape[0], x.shape[1], H * Dh)
    return h @ w(layer.to_out).T + layer.to_out.bias


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), heads=st.integers(1, 3), data=st.data())
def test_layer_equals_the_definition(n, heads, data):
    n_local = data.draw(st.integers(0, heads))
    causal, masked = data.draw(st.booleans()), data.draw(st.booleans())
    blindspot = data.draw(st.sampled_from([None, 1, 2, 5]))
    window = data.draw(st.integers(1, 6))
    enable = data.draw(st.sets(st.sampled_from(L.PROJECTIONS)))
    seed = data.draw(st.integers(0, 1000))
    torch.manual_seed(seed)
    layer = L.LoRASelfAttention(12, heads, r=2, lora_alpha=4, enable_lora=sorted(enable), causal=causal, dim_head=4,
                                blindspot_size=blindspot, n_local_attn_heads=n_local, local_attn_window_size=window,
                                attn_dropout=0.0, dropout=0.0).double()
    _randomise_lora(layer, seed)
    x = torch.randn(2, n, 12, dtype=torch.float64)
    mask = torch.rand(2, n) > 0.3 if masked else None
    out = layer(x, mask)
    assert out.shape == (2, n, 12)
    ref = _reference_layer(layer, x, mask)
    real = slice(None) if mask is None else mask  # outputs at padded positions are unspecified
    torch.testing.assert_close(out[real], ref[real], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("causal", [False, True])
def test_b_zero_equals_the_layer_without_lora_and_merge_changes_nothing(causal):
    torch.manual_seed(12)
    kw = dict(dim=16, heads=4, dim_head=4, causal=causal, blindspot_size=3, n_local_attn_heads=2,
              local_attn_window_size=4, attn_dropout=0.0, dropout=0.0)
    lora = L.LoRASelfAttention(r=4, lora_alpha=8, **kw)
    plain = L.LoRASelfAttention(enable_lora=(), **kw)
    missing, unexpected = plain.load_state_dict(lora.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == sorted(
        f"to_{p}.lora_{m}" for p in ("q", "k", "v", "out") for m in "AB")
    x = torch.randn(3, 11, 16)
    assert torch.equal(lora(x), plain(x))
    _randomise_lora(lora)
    y = lora(x)
    lora.merge()
    torch.testing.assert_close(lora(x), y, rtol=1e-5, atol=1e-6)
    assert all(m.merged for m in lora.lora_layers().values())


@pytest.mark.parametrize("causal", [False, True])
def test_all_local_heads_with_one_bucket_are_plain_attention(causal):
    torch.manual_seed(13)
    layer = L.LoRASelfAttention(16, 4, enable_lora=(), causal=causal, dim_head=4, n_local_attn_heads=4,
                                local_attn_window_size=32, attn_dropout=0.0, dropout=0.0)
    x = torch.randn(2, 20, 16)
    split = lambda t: t.reshape(2, 20, 4, 4).transpose(1, 2)  # noqa: E731
    h = F.scaled_dot_product_attention(split(layer.to_q(x)), split(layer.to_k(x)), split(layer.to_v(x)),
                                       is_causal=causal)
    torch.testing.assert_close(layer(x), layer.to_out(h.transpose(1, 2).reshape(2, 20, 16)), rtol=1e-5, atol=1e-6)


def test_dropouts_and_trainable_parameters():
    torch.manual_seed(14)
    layer = L.LoRASelfAttention(8, 2, r=2, enable_lora="qv", dim_head=4, n_local_attn_heads=0,
                                attn_dropout=0.5, dropout=0.0)
    x = torch.randn(1, 6, 8)
    layer.train()
    assert torch.equal(layer(x), layer(x))  # attn_dropout acts on the local heads only: none here
    L.mark_only_lora_as_trainable(layer)
    assert L.count_parameters(layer)[0] == 2 * L.lora_param_count(8, 8, 2)
    assert set(layer.lora_layers()) == {"q", "v"}
    layer.dropout.p = 0.5
    assert not torch.equal(layer(x), layer(x))


def test_layer_errors():
    with pytest.raises(ValueError, match="blindspot_size must be an int >= 1, got 0"):
        L.LoRASelfAttention(8, 2, blindspot_size=0)
    with pytest.raises(ValueError, match=r"enable_lora must contain only \('q', 'k', 'v', 'o'\), got \['x'\]"):
        L.LoRASelfAttention(8, 2, enable_lora=["q", "x"])
    with pytest.raises(ValueError, match=r"n_local_attn_heads must be an int in \[0, heads=2\], got 3"):
        L.LoRASelfAttention(8, 2, n_local_attn_heads=3)
    layer = L.LoRASelfAttention(8, 2, dim_head=4)
    with pytest.raises(ValueError, match=r"x must be \(B, N, dim=8\), got \(2, 5, 6\)"):
        layer(torch.zeros(2, 5, 6))
    with pytest.raises(TypeError, match="x has dtype torch.float16 but LoRASelfAttention's weights are torch.float32"):
        layer(torch.zeros(2, 5, 8, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"input_mask must be a bool tensor \(True = real token\), got dtype torch.int64"):
        layer(torch.zeros(2, 5, 8), torch.ones(2, 5, dtype=torch.long))


# ---------------------------------------------------------------- the experiment (attnkit.experiments.lora)


def _run_through_modules(base, teacher, config, A0, steps, seed=0, batch=32, seq=16, lr=1e-2):
    """The same fine-tuning written with LoRASelfAttention / LoRALinear and one optimiser per run."""
    placement, r, alpha = config
    student = L.LoRASelfAttention(32, 4, r=r, lora_alpha=alpha, enable_lora=placement, dim_head=8,
                                  n_local_attn_heads=4, local_attn_window_size=seq, attn_dropout=0.0, dropout=0.0)
    names = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out"}
    with torch.no_grad():
        for p, name in names.items():
            getattr(student, name).weight.copy_(base[p])
        student.to_out.bias.copy_(base["o_bias"])
        for p, m in student.lora_layers().items():
            m.lora_A.copy_(A0[p])
    L.mark_only_lora_as_trainable(student)
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    x_eval, xs = XL._batches(seed, steps, batch, seq, 32)
    y_eval = XL.attention_forward(x_eval, teacher, 4)
    losses = [F.mse_loss(student(x_eval), y_eval).item()]
    for x in xs:
        loss = F.mse_loss(student(x), XL.attention_forward(x, teacher, 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(F.mse_loss(student(x_eval), y_eval).item())
    return losses


def test_batched_runs_equal_separate_module_runs():
    base, teacher, true_delta = XL.make_teacher_student()
    configs = [(("q", "v"), 2, 16), (L.PROJECTIONS, 1, 4), (("v",), 4, 64)]
    runs = XL.train_lora_runs(base, teacher, configs, steps=5, eval_every=1, batch=8)
    for cfg, res in zip(configs, runs, strict=True):
        ref = _run_through_modules(base, teacher, cfg, res["A0"], steps=5, batch=8)
        assert res["losses"] == pytest.approx(ref, rel=1e-4)
        assert set(res["delta"]) == set(cfg[0]) and res["trainable"] == len(cfg[0]) * cfg[1] * 64
    # the teacher's updates have the ranks and relative sizes asked for
    for p, (rank, size) in XL.DEFAULT_DELTAS.items():
        assert torch.linalg.matrix_rank(true_delta[p]).item() == rank
        assert (true_delta[p].norm() / base[p].norm()).item() == pytest.approx(size, rel=1e-5)
        torch.testing.assert_close(teacher[p], base[p] + true_delta[p])


def test_training_closes_the_gap():
    base, teacher, _ = XL.make_teacher_student()
    full = XL.train_full(base, teacher, steps=30, batch=8)
    runs = XL.train_lora_runs(base, teacher, [(L.PROJECTIONS, 8, 16), (("q",), 1, 16)], steps=30, batch=8)
    assert full["recovered"] > 0.6 and runs[0]["recovered"] > 0.6
    assert 0 < runs[1]["recovered"] < runs[0]["recovered"]
    assert full["losses"][0] == pytest.approx(runs[0]["losses"][0])  # the same starting gap
