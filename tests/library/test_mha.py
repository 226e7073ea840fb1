"""attnkit.mha against torch.nn.MultiheadAttention, F.scaled_dot_product_attention, autograd,
torch's FLOP counter and closed forms."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attnkit.core import causal_mask, padding_mask
from attnkit.mha import (
    MultiHeadAttention,
    build_attention_mask,
    merge_heads,
    mha_activation_bytes,
    mha_counts,
    mha_flops,
    mha_param_count,
    multi_head_attention,
    split_heads,
)

ATOL = 1e-5


def _torch_call(m, q, k, v, **kw):
    """Call nn.MultiheadAttention with batch-first tensors whatever its batch_first is."""
    if not m.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    out, w = m(q, k, v, **kw)
    if not m.batch_first:
        out = out.transpose(0, 1)
    return out, w


def _randomise_biases(m):
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_()
    return m


# ---- from_torch across configurations --------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dims", [(None, None, 7), (5, 3, 9), (6, 6, 4)])  # (kdim, vdim, S)
@pytest.mark.parametrize("need_weights", [False, True])
def test_from_torch_equal_outputs(batch_first, bias, dims, need_weights):
    torch.manual_seed(0)
    kdim, vdim, S = dims
    E, H, B, L = 12, 3, 2, 6
    m = _randomise_biases(
        nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
    ).eval()
    a = MultiHeadAttention.from_torch(m)
    q = torch.randn(B, L, E)
    k = torch.randn(B, S, kdim or E)
    v = torch.randn(B, S, vdim or E)
    ref, ref_w = _torch_call(m, q, k, v, need_weights=True)
    out, w = a(q, k, v, need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    if need_weights:
        assert w.shape == (B, H, L, S)
        torch.testing.assert_close(w.mean(dim=1), ref_w, atol=ATOL, rtol=0)
    else:
        assert w is None


def test_from_torch_self_attention_and_parameter_layout():
    torch.manual_seed(1)
    m = _randomise_biases(nn.MultiheadAttention(16, 4, batch_first=True)).eval()
    a = MultiHeadAttention.from_torch(m)
    E = 16
    torch.testing.assert_close(a.k_proj.weight, m.in_proj_weight[E : 2 * E])
    torch.testing.assert_close(a.v_proj.bias, m.in_proj_bias[2 * E :])
    assert a.q_proj.weight.data_ptr() != m.in_proj_weight.data_ptr()  # copied, not shared
    x = torch.randn(3, 10, E)
    torch.testing.assert_close(a(x)[0], m(x, x, x, need_weights=False)[0], atol=ATOL, rtol=0)


def test_per_head_weights_equal_torch_unaveraged():
    torch.manual_seed(2)
    m = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    a = MultiHeadAttention.from_torch(m)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    _, ref_w = m(q, kv, kv, need_weights=True, average_attn_weights=False)  # (B, H, L, S)
    _, w = a(q, kv, need_weights=True)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"kdim": 5, "vdim": 3}])
def test_to_torch_round_trip(kw):
    torch.manual_seed(12)
    a = _randomise_biases(MultiHeadAttention(12, 3, **kw))
    m = a.to_torch()
    assert isinstance(m, nn.MultiheadAttention) and m.batch_first
    q = torch.randn(2, 4, 12)
    k, v = torch.randn(2, 6, kw.get("kdim", 12)), torch.randn(2, 6, kw.get("vdim", 12))
    with torch.no_grad():
        torch.testing.assert_close(m(q, k, v, need_weights=False)[0], a(q, k, v)[0], atol=ATOL, rtol=0)
    back = MultiHeadAttention.from_torch(m)
    for (n1, p1), (n2, p2) in zip(a.state_dict().items(), back.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("need_weights", [False, True])
def test_half_precision_close_to_float32(dtype, need_weights):
    torch.manual_seed(13)
    a = MultiHeadAttention(16, 4)
    x = torch.randn(2, 7, 16)
    ref = a(x, is_causal=True)[0]
    out, w = a.to(dtype)(x.to(dtype), is_causal=True, need_weights=need_weights)
    assert out.dtype == dtype and not torch.isnan(out).any()
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    if need_weights:
        assert w.dtype == dtype


def test_from_torch_rejects_unsupported():
    with pytest.raises(TypeError, match="nn.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_from_torch_keeps_dtype_and_dropout():
    m = nn.MultiheadAttention(8, 2, dropout=0.25, dtype=torch.float64)
    a = MultiHeadAttention.from_torch(m)
    assert a.q_proj.weight.dtype == torch.float64 and a.dropout == 0.25
    assert a.training == m.training


# ---- masks, both conventions -----------------------------------------------------------------


def _pair(seed=3, E=16, H=4):
    torch.manual_seed(seed)
    m = _randomise_biases(nn.MultiheadAttention(E, H, batch_first=True)).eval()
    return m, MultiHeadAttention.from_torch(m)


@pytest.mark.parametrize("need_weights", [False, True])
def test_bool_attn_mask_2d_and_3d_inverted_convention(need_weights):
    m, a = _pair()
    B, L, S, H = 2, 5, 7, 4
    q, kv = torch.randn(B, L, 16), torch.randn(B, S, 16)
    blocked = torch.rand(L, S) < 0.4
    blocked[:, 0] = False  # no fully masked row (torch gives NaN there)
    ref = m(q, kv, kv, attn_mask=blocked, need_weights=False)[0]
    out = a(q, kv, attn_mask=~blocked, need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    blocked3 = torch.rand(B * H, L, S) < 0.4
    blocked3[..., 0] = False
    ref3 = m(q, kv, kv, attn_mask=blocked3, need_weights=False)[0]
    out3 = a(q, kv, attn_mask=~blocked3, need_weights=need_weights)[0]
    torch.testing.assert_close(out3, ref3, atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_key_padding_mask_and_float_masks(need_weights):
    m, a = _pair(4)
    B, L, S = 3, 4, 6
    q, kv = torch.randn(B, L, 16), torch.randn(B, S, 16)
    real = padding_mask(torch.tensor([6, 2, 4]), S)  # True = real token (attnkit)
    ref = m(q, kv, kv, key_padding_mask=~real, need_weights=False)[0]
    out = a(q, kv, key_padding_mask=real, need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    # float masks are added in both conventions
    fmask = torch.randn(L, S)
    fkpm = torch.randn(B, S)
    ref = m(q, kv, kv, attn_mask=fmask, key_padding_mask=fkpm, need_weights=False)[0]
    out = a(q, kv, attn_mask=fmask, key_padding_mask=fkpm, need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    # bool attn_mask together with a bool key_padding_mask
    blocked = ~causal_mask(L, S)
    ref = m(q, kv, kv, attn_mask=blocked, key_padding_mask=~real, need_weights=False)[0]
    out = a(q, kv, attn_mask=~blocked, key_padding_mask=real, need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("L,S", [(6, 6), (4, 7)])
def test_is_causal_matches_explicit_mask(need_weights, L, S):
    m, a = _pair(5)
    q, kv = torch.randn(2, L, 16), torch.randn(2, S, 16)
    blocked = ~causal_mask(L, S)  # top-left aligned, as torch's is_causal
    ref = m(q, kv, kv, attn_mask=blocked, need_weights=False)[0]
    out, w = a(q, kv, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    if need_weights:
        assert torch.all(w.masked_select(blocked) == 0)
    # is_causal combined with a padding mask
    real = padding_mask(torch.tensor([S, S - 2]), S)
    ref = m(q, kv, kv, attn_mask=blocked, key_padding_mask=~real, need_weights=False)[0]
    out = a(q, kv, key_padding_mask=real, is_causal=True, need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_row_gives_bias_not_nan(need_weights):
    m, a = _pair(6)
    x = torch.randn(1, 4, 16)
    allowed = torch.ones(4, 4, dtype=torch.bool)
    allowed[2] = False  # query 2 sees no key
    out, w = a(x, attn_mask=allowed, need_weights=need_weights)
    assert not torch.isnan(out).any()
    # the row attends to nothing: context 0, so the output is out_proj's bias exactly
    torch.testing.assert_close(out[0, 2], a.out_proj.bias, atol=0, rtol=0)
    if need_weights:
        assert torch.all(w[0, :, 2] == 0)
    ref = a(x, attn_mask=torch.where(allowed, 0.0, float("-inf")), need_weights=need_weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_build_attention_mask_combines_and_broadcasts():
    allowed = causal_mask(3, 3)
    real = torch.tensor([[True, True, False]])
    m = build_attention_mask(1, 2, 3, 3, attn_mask=allowed, key_padding_mask=real)
    assert m.dtype == torch.bool and m.shape == (1, 1, 3, 3)
    expected = allowed & real[:, None, :]
    assert torch.equal(m[0, 0], expected[0])
    assert build_attention_mask(1, 2, 3, 3) is None
    f = build_attention_mask(1, 2, 3, 3, attn_mask=allowed, key_padding_mask=torch.zeros(1, 3))
    assert f.dtype == torch.float32 and torch.equal(torch.isneginf(f[0, 0]), ~allowed)


# ---- the two paths, split/merge, autograd ---------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3),
    L=st.integers(1, 6),
    S=st.integers(1, 6),
    H=st.sampled_from([1, 2, 4]),
    Dh=st.integers(1, 4),
    causal=st.booleans(),
    mask_kind=st.sampled_from(["none", "bool", "float", "padding"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 1000),
)
def test_fused_path_equals_plain_path_and_torch(B, L, S, H, Dh, causal, mask_kind, dtype, seed):
    torch.manual_seed(seed)
    E = H * Dh
    m = _randomise_biases(nn.MultiheadAttention(E, H, batch_first=True, dtype=dtype)).eval()
    a = MultiHeadAttention.from_torch(m)
    q, kv = torch.randn(B, L, E, dtype=dtype), torch.randn(B, S, E, dtype=dtype)
    attn_mask = kpm = None
    if mask_kind == "bool":
        attn_mask = torch.rand(L, S) < 0.7
    elif mask_kind == "float":
        attn_mask = torch.randn(B * H, L, S, dtype=dtype)
    elif mask_kind == "padding":
        kpm = torch.rand(B, S) < 0.7
    fused, _ = a(q, kv, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=causal)
    plain, w = a(q, kv, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=causal, need_weights=True)
    assert not torch.isnan(fused).any() and not torch.isnan(plain).any()
    torch.testing.assert_close(fused, plain, atol=ATOL, rtol=0)
    # against torch, on rows where torch is defined (torch may give NaN on fully masked rows)
    t_mask = None if attn_mask is None else (~attn_mask if attn_mask.dtype == torch.bool else attn_mask)
    if causal:
        blocked = ~causal_mask(L, S)
        if t_mask is None:
            t_mask = blocked
        elif t_mask.dtype == torch.bool:
            t_mask = t_mask | blocked
        else:
            t_mask = t_mask.masked_fill(blocked, float("-inf"))
    ref, _ = m(q, kv, kv, attn_mask=t_mask, key_padding_mask=None if kpm is None else ~kpm,
               need_weights=False)
    alive = w.sum(-1).amax(1) > 0  # (B, L): rows with at least one key
    torch.testing.assert_close(fused[alive], ref[alive], atol=ATOL, rtol=0)


def test_self_attention_defaults_key_and_value_to_query():
    torch.manual_seed(7)
    a = _randomise_biases(MultiHeadAttention(12, 3))
    x, y = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    torch.testing.assert_close(a(x)[0], a(x, x.clone(), x.clone())[0], atol=0, rtol=0)
    torch.testing.assert_close(a(x, y)[0], a(x, y, y.clone())[0], atol=0, rtol=0)  # value = key
    assert not torch.allclose(a(x, y)[0], a(x)[0])


def test_split_merge_heads_are_inverse_and_slice_features():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    for i in range(3):
        assert torch.equal(h[:, i], x[..., 4 * i : 4 * (i + 1)])
    assert torch.equal(merge_heads(h), x)


def test_equals_loop_over_heads_closed_form():
    """Concat_i softmax(Q W_i^Q (K W_i^K)^T / sqrt(d_k)) V W_i^V, then W^O: eq. of sec. 3.2.2."""
    torch.manual_seed(8)
    E, H = 12, 3
    Dh = E // H
    a = _randomise_biases(MultiHeadAttention(E, H))
    x = torch.randn(2, 6, E)
    heads = []
    for i in range(H):
        sl = slice(i * Dh, (i + 1) * Dh)
        qi = x @ a.q_proj.weight[sl].T + a.q_proj.bias[sl]
        ki = x @ a.k_proj.weight[sl].T + a.k_proj.bias[sl]
        vi = x @ a.v_proj.weight[sl].T + a.v_proj.bias[sl]
        heads.append(torch.softmax(qi @ ki.transpose(-1, -2) / Dh**0.5, dim=-1) @ vi)
    ref = torch.cat(heads, dim=-1) @ a.out_proj.weight.T + a.out_proj.bias
    torch.testing.assert_close(a(x)[0], ref, atol=ATOL, rtol=0)


def test_gradients_equal_torch():
    torch.manual_seed(9)
    m = _randomise_biases(nn.MultiheadAttention(8, 2, batch_first=True))
    a = MultiHeadAttention.from_torch(m)
    x1 = torch.randn(2, 5, 8, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    m(x1, x1, x1, attn_mask=~causal_mask(5), need_weights=False)[0].square().sum().backward()
    a(x2, is_causal=True)[0].square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.q_proj.weight.grad, m.in_proj_weight.grad[:8], atol=ATOL, rtol=0)
    torch.testing.assert_close(a.out_proj.bias.grad, m.out_proj.bias.grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_gradcheck_float64(need_weights):
    torch.manual_seed(10)
    E, H = 4, 2
    q = torch.randn(1, 3, E, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(1, 4, E, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(E, E, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    bias = torch.randn(E, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, True]])

    def f(q, kv, wq, wk, wv, wo, b):
        return multi_head_attention(q, kv, kv, H, wq, wk, wv, wo, q_bias=b, k_bias=b, v_bias=b,
                                    out_bias=b, attn_mask=mask, need_weights=need_weights)[0]

    assert torch.autograd.gradcheck(f, (q, kv, *ws, bias))


def test_dropout_only_in_training():
    torch.manual_seed(11)
    a = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    a.eval()
    ref = a(x)[0]
    b = MultiHeadAttention(8, 2)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(ref, b(x)[0], atol=0, rtol=0)
    a.train()
    torch.manual_seed(0)
    assert not torch.allclose(a(x)[0], ref)
    _, w = a(x, need_weights=True)
    assert ((w == 0).float().mean() > 0.2).item()  # about half the weights dropped


def test_state_dict_names_are_documented():
    a = MultiHeadAttention(8, 2, kdim=3, vdim=5)
    assert set(a.state_dict()) == {
        f"{p}_proj.{t}" for p in ("q", "k", "v", "out") for t in ("weight", "bias")
    }
    assert a.k_proj.weight.shape == (8, 3) and a.v_proj.weight.shape == (8, 5)
    assert (a.embed_dim, a.num_heads, a.head_dim) == (8, 2, 4)
    nb = MultiHeadAttention(8, 2, bias=False)
    assert all(getattr(nb, f"{p}_proj").bias is None for p in ("q", "k", "v", "out"))


# ---- errors ----------------------------------------------------------------------------------


def test_error_messages_name_the_argument_and_shapes():
    with pytest.raises(ValueError, match=r"embed_dim=10 must be divisible by num_heads=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="num_heads must be an int >= 1, got 0"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.5)
    a = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query has shape \(2, 3, 7\), expected last dim 8"):
        a(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match=r"query must have shape \(batch, seq, 8\).*got \(3, 8\)"):
        a(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"key has batch size 3 .*expected 2"):
        a(torch.randn(2, 3, 8), torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match=r"key has shape \(2, 4, 8\) and value \(2, 5, 8\)"):
        a(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))
    with pytest.raises(TypeError, match="key has dtype torch.float64"):
        a(torch.randn(2, 3, 8), torch.randn(2, 4, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="query must be a torch.Tensor"):
        a([[1.0] * 8])
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 5\), expected \(L, S\) = \(3, 4\)"):
        a(torch.randn(2, 3, 8), torch.randn(2, 4, 8), attn_mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(2, 1, 3, 5\)"):
        a(torch.randn(2, 3, 8), torch.randn(2, 4, 8), attn_mask=torch.ones(2, 1, 3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or floating point"):
        a(torch.randn(2, 3, 8), attn_mask=torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(2, 3\), expected \(B, S\) = \(2, 4\)"):
        a(torch.randn(2, 3, 8), torch.randn(2, 4, 8), key_padding_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x has embed_dim 10 .*num_heads=4"):
        split_heads(torch.randn(1, 2, 10), 4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, heads, seq, head_dim\)"):
        merge_heads(torch.randn(2, 3, 4))


# ---- counting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("E,H,bias,kdim,vdim", [(16, 4, True, None, None), (12, 3, False, 5, 7), (64, 8, True, 32, None)])
def test_param_count_equals_modules(E, H, bias, kdim, vdim):
    a = MultiHeadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim)
    m = nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim)
    n = mha_param_count(E, H, bias=bias, kdim=kdim, vdim=vdim)
    assert n == sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("L,S,kdim,vdim", [(6, 6, None, None), (5, 9, 4, 10)])
def test_flops_equal_torch_flop_counter(L, S, kdim, vdim):
    E, H, B = 12, 3, 2
    a = MultiHeadAttention(E, H, kdim=kdim, vdim=vdim)
    q, k, v = torch.randn(B, L, E), torch.randn(B, S, kdim or E), torch.randn(B, S, vdim or E)
    with FlopCounterMode(display=False) as fc:
        a(q, k, v, need_weights=True)  # the plain path: every matmul visible to the counter
    assert mha_flops(E, H, L, B, kv_len=S, kdim=kdim, vdim=vdim)["total"] == fc.get_total_flops()


def test_activation_bytes_equal_measured_tensors():
    E, H, B, L, S = 12, 3, 2, 5, 7
    a = MultiHeadAttention(E, H)
    q, kv = torch.randn(B, L, E), torch.randn(B, S, E)
    qp, kp, vp = a.q_proj(q), a.k_proj(kv), a.v_proj(kv)  # the three projections
    ctx = merge_heads(split_heads(qp, H))  # merged heads, the input of out_proj
    out, w = a(q, kv, need_weights=True)
    got = mha_activation_bytes(E, H, L, B, kv_len=S)
    assert got["qkv"] == sum(t.numel() * t.element_size() for t in (qp, kp, vp))
    assert got["weights"] == w.numel() * w.element_size()
    assert got["context"] == ctx.numel() * ctx.element_size()
    assert got["output"] == out.numel() * out.element_size()
    assert got["total"] == sum(v for k, v in got.items() if k != "total")
    assert mha_activation_bytes(E, H, L, B, kv_len=S, bytes_per_element=2)["total"] * 2 == got["total"]


def test_counts_closed_form_for_a_real_sized_layer():
    c = mha_counts(4096, 32, seq_len=2048, batch=1)
    assert c["params"] == 4 * 4096 * 4096 + 4 * 4096
    assert c["flops"] == 8 * 2048 * 4096**2 + 4 * 2048**2 * 4096
    assert c["head_dim"] == 128
    assert mha_activation_bytes(4096, 32, 2048)["weights"] == 4 * 32 * 2048 * 2048


def test_sdpa_is_used_without_weights(monkeypatch):
    calls = []
    orig = F.scaled_dot_product_attention

    def spy(*args, **kw):
        calls.append(1)
        return orig(*args, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    a = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    a(x)
    assert calls == [1]
    a(x, need_weights=True)
    assert calls == [1]
