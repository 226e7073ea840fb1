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


@pytest.fixture(autouse=True)
def english():
    set_language("en")
    yield
    set_language("en")


def run(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


def _stub(*args, **kwargs):
    raise NotImplementedError


def without_forbid(monkeypatch):
    """Checkers forbid attnkit's own function; lift the trap to test that it agrees."""
    monkeypatch.setattr(X, "_call_forbidding", lambda fn, forbid, args, kwargs: fn(*args, **kwargs))


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


def _mha_scaled_by(x, wq, wk, wv, wo, h, scale_dim):
    q, k, v = (split_heads(x @ w.T, h) for w in (wq, wk, wv))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(scale_dim(x, q)), dim=-1)
    return merge_heads(w @ v) @ wo.T


@pytest.mark.parametrize("wrong", [
    lambda x, wq, wk, wv, wo, h: _mha_scaled_by(x, wq, wk, wv, wo, h, lambda x, q: x.shape[-1]),  # sqrt(E)
    lambda x, wq, wk, wv, wo, h: merge_heads(torch.softmax(
        split_heads(x @ wq.T, h) @ split_heads(x @ wk.T, h).transpose(-2, -1)
        / math.sqrt(x.shape[-1] // h), dim=-1) @ split_heads(x @ wv.T, h)),  # forgot W_O
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
