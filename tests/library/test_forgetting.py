"""attnkit.forgetting against oracles.

Each chunked form against the recurrence (the definition, one token at a time) and the explicit
N x N form, in float64 to 1e-12, over lengths 0, 1, 7, 64, 129 and chunk sizes 1, 16, 64; float32
and bfloat16 against the float64 recurrence (bfloat16 within a small multiple of the error of a
torch bfloat16 matmul doing the same sum); no NaN or overflow at N = 4096 with log decays down to
-20 per step; gradients by gradcheck in float64; the gated delta rule against the plain-PyTorch
functions of Qwen3-Next in ``transformers``; the delta rule's overwrite against its closed form;
the modules against the functions on their own projections, and padding against the sequence
without it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.models.qwen3_next.modeling_qwen3_next import (
    torch_chunk_gated_delta_rule,
    torch_recurrent_gated_delta_rule,
)

from attnkit import forgetting as Fg

B, H, DK, DV = 2, 2, 6, 5


@pytest.fixture(autouse=True)
def one_thread():
    """Every tensor here is tiny: one thread, so that idle OpenMP threads do not spin on a loaded machine
    (measured on 2 shared cores: the channel gradcheck took 12.3 s with two threads, 0.7 s with one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
MECHS = ("retnet", "scalar", "channel", "delta", "gated_delta")


def rand(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def inputs(mech, n, seed=0, dtype=torch.float64, low=-1.0):
    """q, k, v and the mechanism's extra arguments (g, beta), in float64 then cast to ``dtype``."""
    q, k, v = rand(B, H, n, DK, seed=seed), rand(B, H, n, DK, seed=seed + 1), rand(B, H, n, DV, seed=seed + 2)
    u = torch.rand(B, H, n, DK, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)
    extra = {}
    if mech == "retnet":
        extra["g"] = Fg.retnet_log_decay(H, torch.float64)[None, :, None].expand(B, H, n)
    elif mech == "scalar":
        extra["g"] = low * u[..., 0]
    elif mech == "channel":
        extra["g"] = low * u
    else:  # the delta rule wants unit keys (DeltaNet L2-normalises q and k)
        q, k = Fg.l2_normalize(q), Fg.l2_normalize(k)
        extra["beta"] = u[..., 1]
        if mech == "gated_delta":
            extra["g"] = low * u[..., 0]
    cast = {key: val.to(dtype) for key, val in extra.items()}
    return q.to(dtype), k.to(dtype), v.to(dtype), cast


def run(mech, form, q, k, v, extra, **kw):
    if mech in ("delta", "gated_delta"):
        fn = {"explicit": Fg.delta_rule_explicit, "recurrent": Fg.delta_rule_recurrent,
              "chunked": Fg.delta_rule_chunked}[form]
        return fn(q, k, v, extra["beta"], extra.get("g"), **kw)
    fn = {"explicit": Fg.gated_linear_attention_explicit, "recurrent": Fg.gated_linear_attention_recurrent,
          "chunked": Fg.gated_linear_attention_chunked}[form]
    return fn(q, k, v, extra["g"], **kw)


# ---------------------------------------------------------------- the three forms agree (float64)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 129])
@pytest.mark.parametrize("mech", MECHS)
def test_chunked_equals_recurrent_and_explicit_in_float64(mech, n):
    q, k, v, extra = inputs(mech, n)
    want, state = run(mech, "recurrent", q, k, v, extra)
    assert want.shape == (B, H, n, DV) and state.shape == (B, H, DK, DV)
    explicit = run(mech, "explicit", q, k, v, extra)
    torch.testing.assert_close(explicit, want, atol=1e-12, rtol=0)
    for c in (1, 16, 64):
        out, s = run(mech, "chunked", q, k, v, extra, chunk_size=c)
        torch.testing.assert_close(out, want, atol=1e-12, rtol=0)
        torch.testing.assert_close(s, state, atol=1e-12, rtol=0)
    if n > 1:  # the test can fail: the output depends on the inputs
        assert want.abs().max() > 0.1


@pytest.mark.parametrize("mech", MECHS)
def test_state_carries_across_calls(mech):
    q, k, v, extra = inputs(mech, 50)
    whole, s_whole = run(mech, "chunked", q, k, v, extra, chunk_size=16)
    part = lambda x, sl: x[:, :, sl]  # noqa: E731
    first = {key: part(x, slice(0, 23)) for key, x in extra.items()}
    second = {key: part(x, slice(23, None)) for key, x in extra.items()}
    _, s = run(mech, "chunked", part(q, slice(0, 23)), part(k, slice(0, 23)), part(v, slice(0, 23)), first,
               chunk_size=8)
    rest, s2 = run(mech, "recurrent", part(q, slice(23, None)), part(k, slice(23, None)), part(v, slice(23, None)),
                   second, initial_state=s)
    torch.testing.assert_close(rest, whole[:, :, 23:], atol=1e-12, rtol=0)
    torch.testing.assert_close(s2, s_whole, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mech", MECHS)
def test_step_by_step_equals_the_chunked_form(mech):
    q, k, v, extra = inputs(mech, 6)
    want, s_want = run(mech, "chunked", q, k, v, extra, chunk_size=4)
    s = None
    for t in range(6):
        at = {a: x[:, :, t] for a, x in extra.items()}
        if mech in ("delta", "gated_delta"):
            o, s = Fg.delta_rule_step(s, q[:, :, t], k[:, :, t], v[:, :, t], at["beta"], at.get("g"))
        else:
            o, s = Fg.gated_linear_attention_step(s, q[:, :, t], k[:, :, t], v[:, :, t], at["g"])
        torch.testing.assert_close(o, want[:, :, t], atol=1e-12, rtol=0)
    torch.testing.assert_close(s, s_want, atol=1e-12, rtol=0)


def test_retnet_explicit_is_the_decay_mask_of_its_paper():
    # RetNet eq. 5: (Q K^T * D) V with D_nm = gamma^(n - m), n >= m, per head
    q, k, v, extra = inputs("retnet", 9)
    gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=torch.float64))
    n = torch.arange(9, dtype=torch.float64)
    d = (gamma[:, None, None] ** (n[:, None] - n[None, :]).clamp_min(0)) * torch.ones(9, 9).tril()
    want = ((q @ k.transpose(-2, -1)) * DK ** -0.5 * d) @ v
    torch.testing.assert_close(Fg.gated_linear_attention_explicit(q, k, v, extra["g"]), want, atol=1e-13, rtol=0)


def test_delta_rule_overwrites_a_stale_association_and_the_additive_state_does_not():
    # unit key k written with v1, then with v2 (beta = 1): the delta rule reads back v2 exactly,
    # the plain additive state (g = 0) reads v1 + v2
    k = rand(1, 1, 1, DK, seed=4)
    k = (k / k.norm()).expand(1, 1, 2, DK)  # exactly unit length
    v = rand(1, 1, 2, DV, seed=5)
    q = k * DK ** 0.5  # undo the 1/sqrt(d_k) scale: o_t = k S_t
    _, s = Fg.delta_rule_chunked(q, k, v, torch.ones(1, 1, 2, dtype=torch.float64))
    torch.testing.assert_close(k[0, 0, :1] @ s[0, 0], v[0, 0, 1:], atol=1e-14, rtol=0)
    _, s_add = Fg.gated_linear_attention_chunked(q, k, v, torch.zeros(1, 1, 2, dtype=torch.float64))
    torch.testing.assert_close(k[0, 0, :1] @ s_add[0, 0], v[0, 0, :1] + v[0, 0, 1:], atol=1e-14, rtol=0)


# ---------------------------------------------------------------- float32, bfloat16, strong decays


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("mech", MECHS)
def test_float32_and_bfloat16_against_the_float64_recurrence(mech):
    q, k, v, extra = inputs(mech, 129)
    want = run(mech, "recurrent", q, k, v, extra)[0]
    for form in ("chunked", "recurrent", "explicit"):
        kw = {"chunk_size": 16} if form == "chunked" else {}
        out = run(mech, form, q.float(), k.float(), v.float(), {a: x.float() for a, x in extra.items()}, **kw)
        out = out[0] if isinstance(out, tuple) else out
        assert out.dtype == torch.float32 and rel(out, want) < 1e-5, (form, rel(out, want))
    bf = [x.bfloat16() for x in (q, k, v)]
    bextra = {a: x.bfloat16() for a, x in extra.items()}
    want_bf = run(mech, "recurrent", *(x.double() for x in bf), {a: x.double() for a, x in bextra.items()})[0]
    # the same kind of sum by a torch bfloat16 matmul: the causal mask times v, against float64
    mask = torch.ones(129, 129).tril().bfloat16() / 16
    op_err = rel(mask @ bf[2], mask.double() @ bf[2].double())
    for form in ("chunked", "recurrent", "explicit"):
        out = run(mech, form, *bf, bextra, **({"chunk_size": 16} if form == "chunked" else {}))
        out = out[0] if isinstance(out, tuple) else out
        assert out.dtype == torch.bfloat16 and rel(out, want_bf) <= 2 * op_err, (form, out.dtype, rel(out, want_bf), op_err)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mech", ["scalar", "channel", "gated_delta"])
def test_no_overflow_at_4096_tokens_with_log_decays_down_to_minus_20(mech, dtype):
    q, k, v, extra = inputs(mech, 4096, low=-20.0)
    extra["g"][..., ::5] = 0.0  # runs of no decay between the strong ones
    out, s = run(mech, "chunked", q.to(dtype), k.to(dtype), v.to(dtype), {a: x.to(dtype) for a, x in extra.items()},
                 chunk_size=64)
    assert torch.isfinite(out).all() and torch.isfinite(s).all()
    want, s64 = recurrence_4096(mech)  # the 4096 steps in float64, one at a time
    tol = 1e-6 if dtype == torch.float32 else 2e-2  # bfloat16: mostly the rounding of the inputs
    assert rel(out, want) < tol and rel(s, s64) < tol, (rel(out, want), rel(s, s64))


_REC: dict = {}


def recurrence_4096(mech):
    if mech not in _REC:
        q, k, v, extra = inputs(mech, 4096, low=-20.0)
        extra["g"][..., ::5] = 0.0
        _REC[mech] = run(mech, "recurrent", q, k, v, extra)
    return _REC[mech]


@pytest.mark.parametrize("mech", ["scalar", "channel", "gated_delta"])
def test_gradients_stay_finite_under_strong_decays(mech):
    q, k, v, extra = inputs(mech, 300, low=-20.0)
    leaves = [x.float().requires_grad_(True) for x in (q, k, v)]
    g = extra["g"].float().requires_grad_(True)
    out = run(mech, "chunked", *leaves, {**{a: x.float() for a, x in extra.items()}, "g": g}, chunk_size=64)[0]
    out.square().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (*leaves, g))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("mech", MECHS)
def test_gradcheck_chunked_and_explicit(mech):
    q, k, v, extra = inputs(mech, 5, seed=7)
    if mech == "retnet":
        extra["g"] = extra["g"].clone()
    args = [x[:1, :1].clone().requires_grad_(True) for x in (q, k, v)]
    names = sorted(extra)
    ex = [extra[a][:1, :1].clone().requires_grad_(True) for a in names]

    def f(form, **kw):
        return lambda *xs: run(mech, form, *xs[:3], dict(zip(names, xs[3:], strict=True)), **kw)

    assert torch.autograd.gradcheck(lambda *xs: f("chunked", chunk_size=2)(*xs)[0], (*args, *ex))
    assert torch.autograd.gradcheck(f("explicit"), (*args, *ex))


# ---------------------------------------------------------------- Qwen3-Next's plain-PyTorch gated delta rule


@pytest.mark.parametrize("gated", [False, True])
def test_gated_delta_rule_equals_qwen3_next_reference(gated):
    n = 77
    q, k, v = rand(B, n, H, DK, seed=1).float(), rand(B, n, H, DK, seed=2).float(), rand(B, n, H, DV, seed=3).float()
    beta = torch.sigmoid(rand(B, n, H, seed=4)).float()
    g = -F.softplus(rand(B, n, H, seed=5)).float() if gated else torch.zeros(B, n, H)
    s0 = rand(B, H, DK, DV, seed=6).float() * 0.1
    # Qwen3-Next: (B, N, H, d) layout, l2-normalises q and k in the kernel, scales q by d_k^-1/2
    want, s_want = torch_chunk_gated_delta_rule(q, k, v, g=g, beta=beta, chunk_size=16, initial_state=s0,
                                                output_final_state=True, use_qk_l2norm_in_kernel=True)
    rec, s_rec = torch_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=s0,
                                                  output_final_state=True, use_qk_l2norm_in_kernel=True)
    ours = lambda x: x.transpose(1, 2)  # noqa: E731  (B, N, H, d) -> (B, H, N, d)
    args = (Fg.l2_normalize(ours(q)), Fg.l2_normalize(ours(k)), ours(v), ours(beta), ours(g) if gated else None)
    for c in (1, 16, 64):
        out, s = Fg.delta_rule_chunked(*args, chunk_size=c, initial_state=s0)
        for w, sw in ((want, s_want), (rec, s_rec)):
            torch.testing.assert_close(out, ours(w), atol=1e-5, rtol=0)
            torch.testing.assert_close(s, sw, atol=1e-5, rtol=0)
    assert out.abs().max() > 0.1


# ---------------------------------------------------------------- modules


E, NH = 24, 3


def module_inputs(n=21, seed=0):
    return torch.randn(2, n, E, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["fixed", "scalar", "channel", "delta", "gated_delta"])
def test_module_equals_the_explicit_form_on_its_own_projections(kind):
    torch.manual_seed(0)
    m = Fg.DeltaNet(E, NH, gated=kind == "gated_delta", chunk_size=8) if "delta" in kind \
        else Fg.GatedLinearAttention(E, NH, gate=kind, chunk_size=8)
    x = module_inputs()
    split = lambda t: t.unflatten(-1, (NH, -1)).transpose(1, 2)  # noqa: E731
    q, k, v = split(m.q_proj(x)), split(m.k_proj(x)), split(m.v_proj(x))
    if "delta" in kind:
        q, k = Fg.l2_normalize(F.silu(q)), Fg.l2_normalize(F.silu(k))
        beta = torch.sigmoid(m.beta_proj(x)).transpose(1, 2)
        g = (-m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias)).transpose(1, 2) if m.gated else None
        o = Fg.delta_rule_explicit(q, k, v, beta, g)
    else:
        o = Fg.gated_linear_attention_explicit(q, k, v, m.log_gate(x))
        if kind == "fixed":
            torch.testing.assert_close(m.log_gate(x)[0, :, 0].double(), torch.log(1 - 2.0 ** (-5 - torch.arange(NH, dtype=torch.float64))))
    o = o.transpose(1, 2)
    want = m.out_proj((o * torch.rsqrt(o.square().mean(-1, keepdim=True) + 1e-5) * m.norm.weight).flatten(-2))
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["fixed", "scalar", "channel", "delta", "gated_delta"])
def test_padded_tokens_change_nothing_and_left_padding_equals_no_padding(kind):
    torch.manual_seed(0)
    m = Fg.DeltaNet(E, NH, gated=kind == "gated_delta", chunk_size=4) if "delta" in kind \
        else Fg.GatedLinearAttention(E, NH, gate=kind, chunk_size=4)
    x = module_inputs(n=15)
    pad = torch.ones(2, 15, dtype=torch.bool)
    pad[1, :6] = False  # the second sequence is left-padded by 6
    pad[0, 9] = False   # the first has a hole
    with torch.no_grad():
        y = m(x, key_padding_mask=pad)
        torch.testing.assert_close(y[1:, 6:], m(x[1:, 6:]), atol=1e-5, rtol=0)
        keep = torch.tensor([i for i in range(15) if i != 9])
        torch.testing.assert_close(y[:1, keep], m(x[:1, keep]), atol=1e-5, rtol=0)
        assert (m(x)[1:, 6:] - y[1:, 6:]).abs().max() > 1e-3  # without the mask the padding is seen


def test_bad_input_names_the_argument():
    q, k, v, extra = inputs("gated_delta", 8, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"g must hold log decays.*<= 0"):
        Fg.delta_rule_chunked(q, k, v, extra["beta"], -extra["g"] + 0.1)
    with pytest.raises(ValueError, match=r"beta has shape"):
        Fg.delta_rule_chunked(q, k, v, extra["beta"][..., :4])
    with pytest.raises(ValueError, match=r"chunk_size must be an int >= 1, got 0"):
        Fg.gated_linear_attention_chunked(q, k, v, extra["g"], chunk_size=0)
    with pytest.raises(ValueError, match=r"g has shape .* per key channel"):
        Fg.gated_linear_attention_chunked(q, k, v, extra["g"][..., :4])
    with pytest.raises(ValueError, match=r"g has shape \(2, 2, 8, 6\), expected \(2, 2, 8\)"):  # no per-channel gate
        Fg.delta_rule_explicit(q, k, v, extra["beta"], extra["g"][..., None].expand_as(q))
    with pytest.raises(TypeError, match=r"k has dtype torch.float64"):
        Fg.delta_rule_recurrent(q, k.double(), v, extra["beta"])
    with pytest.raises(ValueError, match=r"initial_state has shape"):
        Fg.delta_rule_chunked(q, k, v, extra["beta"], initial_state=torch.zeros(B, H, DK, DK + 1))
    with pytest.raises(ValueError, match=r"attn_mask"):
        Fg.DeltaNet(E, NH)(module_inputs(), attn_mask=torch.ones(21, 21, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"gate must be one of"):
        Fg.GatedLinearAttention(E, NH, gate="vector")
    with pytest.raises(TypeError, match=r"x has dtype torch.float64"):
        Fg.GatedLinearAttention(E, NH)(module_inputs().double())
