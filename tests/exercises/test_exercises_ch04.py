"""Chapter 04 checkers: each passes its reference solution and attnkit's own function, fails
typical wrong answers with a hint, says "not done yet" for the stub, and never raises."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import attnkit.exercises as X
from attnkit.exercises import ch04
from attnkit.i18n import set_language
from attnkit.mha import MultiHeadAttention, merge_heads, mha_param_count, split_heads
from helpers import run, without_forbid


def _stub(*args, **kwargs):
    raise NotImplementedError


# ---- the solutions agree with oracles --------------------------------------------------------


def test_solutions_agree_with_attnkit_and_torch():
    x = torch.randn(2, 5, 12)
    assert torch.equal(ch04.solution_split_heads(x, 3), split_heads(x, 3))
    h = torch.randn(2, 3, 5, 4)
    assert torch.equal(ch04.solution_merge_heads(h), merge_heads(h))
    m = nn.MultiheadAttention(12, 3, bias=False, batch_first=True)
    wq, wk, wv = m.in_proj_weight.chunk(3)
    with torch.no_grad():
        ref = m(x, x, x, need_weights=False)[0]
        got = ch04.solution_mha(x, wq, wk, wv, m.out_proj.weight, 3)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    for e, h, bias in ((8, 2, True), (512, 8, False)):
        n = sum(p.numel() for p in nn.MultiheadAttention(e, h, bias=bias).parameters())
        assert ch04.solution_count_params(e, h, bias=bias) == n == mha_param_count(e, h, bias=bias)


# ---- each checker: passes solution and library, fails wrong answers --------------------------


def test_split_heads_passes(capsys):
    ok, out = run(ch04.check_split_heads, ch04.solution_split_heads, capsys)
    assert ok and "all 3 cases pass" in out
    # the library function handed in as the answer is refused; it agrees with the solution
    ok, out = run(ch04.check_split_heads, split_heads, capsys)
    assert not ok and "split_heads" in out
    x = torch.randn(2, 3, 8)
    assert torch.equal(split_heads(x, 4), ch04.solution_split_heads(x, 4))


@pytest.mark.parametrize("wrong", [
    lambda x, h: x.view(x.shape[0], h, x.shape[1], x.shape[2] // h),  # right shape, wrong values
    lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),  # interleaved
    lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h),  # forgot the transpose
])
def test_split_heads_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch04.check_split_heads, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_merge_heads_passes(capsys):
    ok, out = run(ch04.check_merge_heads, ch04.solution_merge_heads, capsys)
    assert ok and "all 3 cases pass" in out
    ok, out = run(ch04.check_merge_heads, merge_heads, capsys)
    assert not ok and "merge_heads" in out
    x = torch.randn(2, 4, 3, 2)
    assert torch.equal(merge_heads(x), ch04.solution_merge_heads(x))


@pytest.mark.parametrize("wrong", [
    lambda x: x.reshape(x.shape[0], x.shape[2], -1),  # no transpose: mixes positions
    lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1),  # view on non-contiguous: raises
    lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),  # interleaves heads
])
def test_merge_heads_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch04.check_merge_heads, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_mha_passes_including_attnkit_module(capsys, monkeypatch):
    def via_module(x, wq, wk, wv, wo, h):
        m = MultiHeadAttention(x.shape[-1], h, bias=False)
        with torch.no_grad():
            for lin, w in ((m.q_proj, wq), (m.k_proj, wk), (m.v_proj, wv), (m.out_proj, wo)):
                lin.weight.copy_(w)
            return m(x)[0]

    ok, out = run(ch04.check_mha, via_module, capsys)
    assert not ok and X.OUTCOMES["ch04.ex3"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    for fn in (ch04.solution_mha, via_module):
        ok, out = run(ch04.check_mha, fn, capsys)
        assert ok and "all 3 cases pass" in out


# the wrong answers split and merge with their own helpers (attnkit's are refused)
def _mha_scaled_by(x, wq, wk, wv, wo, h, scale_dim):
    q, k, v = (ch04.solution_split_heads(x @ w.T, h) for w in (wq, wk, wv))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(scale_dim(x, q)), dim=-1)
    return ch04.solution_merge_heads(w @ v) @ wo.T


@pytest.mark.parametrize("wrong", [
    lambda x, wq, wk, wv, wo, h: _mha_scaled_by(x, wq, wk, wv, wo, h, lambda x, q: x.shape[-1]),  # sqrt(E)
    lambda x, wq, wk, wv, wo, h: ch04.solution_merge_heads(torch.softmax(
        ch04.solution_split_heads(x @ wq.T, h) @ ch04.solution_split_heads(x @ wk.T, h).transpose(-2, -1)
        / math.sqrt(x.shape[-1] // h), dim=-1) @ ch04.solution_split_heads(x @ wv.T, h)),  # forgot W_O
    lambda x, wq, wk, wv, wo, h: torch.softmax(
        (x @ wq.T) @ (x @ wk.T).transpose(-2, -1) / math.sqrt(x.shape[-1] // h), dim=-1)
        @ (x @ wv.T) @ wo.T,  # one big head
])
def test_mha_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch04.check_mha, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_count_params_passes(capsys, monkeypatch):
    ok, _ = run(ch04.check_count_params, lambda e, h, bias=True: mha_param_count(e, h, bias=bias), capsys)
    assert not ok and X.OUTCOMES["ch04.ex4"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    for fn in (ch04.solution_count_params, lambda e, h, bias=True: mha_param_count(e, h, bias=bias)):
        ok, out = run(ch04.check_count_params, fn, capsys)
        assert ok and "all 3 cases pass" in out


@pytest.mark.parametrize("wrong", [
    lambda e, h, bias=True: 4 * e * e,  # forgot the biases
    lambda e, h, bias=True: 3 * e * e + (3 * e if bias else 0),  # forgot W_O
    lambda e, h, bias=True: 4 * e * e * h + (4 * e if bias else 0),  # one E x E matrix per head
])
def test_count_params_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch04.check_count_params, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


# ---- stubs and language --------------------------------------------------------------------


@pytest.mark.parametrize("check", [ch04.check_split_heads, ch04.check_merge_heads, ch04.check_mha,
                                   ch04.check_count_params])
def test_stub_says_not_done_yet_and_never_raises(check, capsys):
    ok, out = run(check, _stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(check, "not a function", capsys)
    assert not ok and "expected a function" in out
    ok, out = run(check, lambda *a, **k: 1 / 0, capsys)
    assert not ok and "ZeroDivisionError" in out


def test_feedback_in_chinese(capsys):
    set_language("zh")
    ok, out = run(ch04.check_split_heads, lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), capsys)
    assert not ok and "练习 1 · 拆分头" in out and "提示" in out
    ok, out = run(ch04.check_count_params, ch04.solution_count_params, capsys)
    assert ok and "全部通过" in out


# ---- question 1: what twice the heads change -------------------------------------------------


def test_q1_answer_is_what_the_formulas_give(capsys):
    from attnkit.mha import mha_activation_bytes, mha_flops
    # the answer (c) is what attnkit's counts say: same parameters and FLOPs, twice the weights
    assert mha_param_count(512, 8) == mha_param_count(512, 16)
    assert mha_flops(512, 8, seq_len=64) == mha_flops(512, 16, seq_len=64)
    assert mha_activation_bytes(512, 16, seq_len=64)["weights"] == 2 * mha_activation_bytes(512, 8, seq_len=64)["weights"]
    ok, out = run(ch04.check_q1, None, capsys)
    assert not ok and "not answered yet" in out
    ok, out = run(ch04.check_q1, "a", capsys)
    assert not ok and "❌" in out and "d_k = E / h" in out          # the nudge, not the answer
    ok, out = run(ch04.check_q1, "b", capsys)                       # second wrong answer: not the answer
    assert not ok and "c) neither parameters nor FLOPs" not in out and "4E²" not in out
    ok, out = run(X.show_answer, "ch04.q1", capsys)                # asked for: the answer and why
    assert "c) neither parameters nor FLOPs" in out and "4E²" in out
    ok, out = run(ch04.check_q1, "C", capsys)
    assert ok and "✅" in out and "4E²" in out
    ok, out = run(ch04.check_q1, "e", capsys)                       # not one of the choices: they are listed
    assert not ok and "a) the parameters double" in out


def test_q1_in_chinese(capsys):
    set_language("zh")
    ok, out = run(ch04.check_q1, "c", capsys)
    assert ok and "问题 1 · 头数翻倍" in out and "4E²" in out


# ---- stretch: nn.MultiheadAttention from its packed weights, masks included ------------------


def _torch_module(x, in_w, in_b, out_w, out_b, h):
    m = nn.MultiheadAttention(x.shape[-1], h, batch_first=True)
    with torch.no_grad():
        m.in_proj_weight.copy_(in_w)
        m.in_proj_bias.copy_(in_b)
        m.out_proj.weight.copy_(out_w)
        m.out_proj.bias.copy_(out_b)
    return m.eval()


def test_torch_mha_solution_equals_nn_multiheadattention(capsys):
    cases = ch04.torch_mha_cases()
    assert {type(c.kwargs.get("attn_mask")) for c in cases} >= {type(None), torch.Tensor}
    assert any("key_padding_mask" in c.kwargs for c in cases)
    assert any(c.kwargs.get("attn_mask") is not None and c.kwargs["attn_mask"].is_floating_point() for c in cases)
    for case in cases:
        x = case.args[0]
        m = _torch_module(*case.args)
        with torch.no_grad():
            ref_out, ref_w = m(x, x, x, need_weights=True, **case.kwargs)   # the oracle
        out, w = ch04.solution_torch_mha(*case.args, **case.kwargs)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    ok, out = run(ch04.check_torch_mha, ch04.solution_torch_mha, capsys)
    assert ok and "all 4 cases pass" in out


def _sdpa_polarity(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
    """The typical mistake: boolean masks read as True = attend (SDPA's and attnkit's convention)."""
    def flip(m):
        return ~m if m is not None and m.dtype == torch.bool else m

    return ch04.solution_torch_mha(x, in_w, in_b, out_w, out_b, h, flip(attn_mask), flip(key_padding_mask))


def _per_head_weights(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
    out, _ = ch04.solution_torch_mha(x, in_w, in_b, out_w, out_b, h, attn_mask, key_padding_mask)
    E = x.shape[-1]
    q, k = (split_heads(p, h) for p in (x @ in_w.T + in_b).split(E, -1)[:2])
    s = q @ k.transpose(-2, -1) / math.sqrt(E // h)
    if attn_mask is not None:
        s = s.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
    if key_padding_mask is not None:
        s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return out, torch.softmax(s, -1)                                  # (B, H, L, S): not averaged


def _scaled_by_width(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
    """Scores divided by sqrt(E) instead of sqrt(d_k): the same as queries shrunk by sqrt(h)."""
    E = x.shape[-1]
    shrink = torch.ones(3 * E)
    shrink[:E] = 1 / math.sqrt(h)                                     # the query rows of W_in and b_in
    return ch04.solution_torch_mha(x, in_w * shrink[:, None], in_b * shrink, out_w, out_b, h,
                                   attn_mask, key_padding_mask)


def _no_padding(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
    return ch04.solution_torch_mha(x, in_w, in_b, out_w, out_b, h, attn_mask)


def _no_bias(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
    return ch04.solution_torch_mha(x, in_w, torch.zeros_like(in_b), out_w, torch.zeros_like(out_b), h,
                                   attn_mask, key_padding_mask)


@pytest.mark.parametrize("wrong", [_sdpa_polarity, _per_head_weights, _scaled_by_width, _no_padding, _no_bias])
def test_torch_mha_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch04.check_torch_mha, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_torch_mha_staged_hints(capsys):
    run(ch04.check_torch_mha, _sdpa_polarity, capsys)
    ok, out = run(ch04.check_torch_mha, _sdpa_polarity, capsys)       # the same case again: stronger
    assert not ok and "True = forbidden" in out and "w.mean(dim=1)" not in out
    X.show_hint("ch04.ex5")
    assert "w.mean(dim=1)" in capsys.readouterr().out               # the formula only on request


def test_torch_mha_forbids_the_builtins(capsys):
    def via_torch(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
        return _torch_module(x, in_w, in_b, out_w, out_b, h)(x, x, x, attn_mask=attn_mask,
                                                               key_padding_mask=key_padding_mask)

    def via_attnkit(x, in_w, in_b, out_w, out_b, h, attn_mask=None, key_padding_mask=None):
        ours = MultiHeadAttention.from_torch(_torch_module(x, in_w, in_b, out_w, out_b, h))
        keep = None if key_padding_mask is None else ~key_padding_mask
        mask = attn_mask if attn_mask is None or attn_mask.is_floating_point() else ~attn_mask
        out, w = ours(x, attn_mask=mask, key_padding_mask=keep, need_weights=True)
        return out, w.mean(1)

    for fn in (via_torch, via_attnkit):
        ok, out = run(ch04.check_torch_mha, fn, capsys)
        assert not ok and "the built-in this exercise asks you to write yourself" in out


def test_torch_mha_stub_and_chinese(capsys):
    ok, out = run(ch04.check_torch_mha, _stub, capsys)
    assert not ok and "not done yet" in out
    set_language("zh")
    ok, out = run(ch04.check_torch_mha, _sdpa_polarity, capsys)
    assert not ok and "挑战题" in out and "提示" in out


def test_mha_refuses_section_3_copied_with_attnkits_split_and_merge(capsys):
    def copied(x, wq, wk, wv, wo, h):                                 # section 3's mha_batched, no biases
        q, k, v = (split_heads(x @ W.T, h) for W in (wq, wk, wv))
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return merge_heads(torch.softmax(s, -1) @ v) @ wo.T

    ok, out = run(ch04.check_mha, copied, capsys)
    assert not ok and "attnkit.mha.split_heads" in out

    def own_helpers(x, wq, wk, wv, wo, h):                            # the learner's own split and merge
        q, k, v = (ch04.solution_split_heads(x @ W.T, h) for W in (wq, wk, wv))
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return ch04.solution_merge_heads(torch.softmax(s, -1) @ v) @ wo.T

    ok, out = run(ch04.check_mha, own_helpers, capsys)
    assert ok and "✅" in out
