"""Chapters 02 and 03 exercises: each checker passes its solution, reports a stub as not done,
and fails typical wrong answers, with feedback in the current language; it never raises."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attnkit.exercises as X
from attnkit import experiments as E
from attnkit.exercises import ch02, ch03
from attnkit.i18n import set_language


def stub(*args):
    raise NotImplementedError


# --- chapter 02 ----------------------------------------------------------------------------


def test_dot_variance_solution_is_the_measured_variance():
    # the reference solution itself agrees with a measurement (within 5 standard errors)
    for d, s in ((16, 2.0), (8, 0.5)):
        measured = E.dot_product_variance(d, 20_000, std=s, seed=0)
        assert abs(measured - ch02.solution_dot_variance(d, s)) < 5 * E.dot_product_variance_se(
            d, 20_000, std=s
        )


def test_unit_variance_scale_solution_gives_unit_variance():
    d, s = 16, 2.0
    c = ch02.solution_unit_variance_scale(d, s)
    scores = E.dot_products(d, 20_000, std=s, seed=1) * c
    assert abs(float(scores.var()) - 1.0) < 5 * E.dot_product_variance_se(d, 20_000, scaled=True)


@pytest.mark.parametrize(
    "check, solution, wrongs",
    [
        (
            ch02.check_dot_variance,
            ch02.solution_dot_variance,
            [lambda d, s: d * s**2, lambda d, s: float(d), lambda d, s: math.sqrt(d) * s**4],
        ),
        (
            ch02.check_unit_variance_scale,
            ch02.solution_unit_variance_scale,
            [
                lambda d, s: 1 / math.sqrt(d),
                lambda d, s: 1 / (math.sqrt(d) * s),
                lambda d, s: 1 / d,
            ],
        ),
    ],
)
def test_ch02_closed_form_checkers(check, solution, wrongs, capsys):
    assert check(solution) is True
    assert "✅" in capsys.readouterr().out
    assert check(stub) is False
    assert "not done yet" in capsys.readouterr().out
    for wrong in wrongs:
        assert check(wrong) is False
        out = capsys.readouterr().out
        assert "❌" in out and "expected" in out and "hint" in out


def test_first_saturated_dk_checker(capsys):
    assert ch02.check_first_saturated_dk(ch02.solution_first_saturated_dk) is True
    # the answers are the d_k where the measured mean largest weight first reaches the threshold
    assert ch02.solution_first_saturated_dk(0.9, 16) == 256
    assert E.saturation(128, 16, n_rows=256, scaled=False, seed=0)["max_weight"] < 0.9
    assert E.saturation(256, 16, n_rows=256, scaled=False, seed=0)["max_weight"] >= 0.9
    capsys.readouterr()

    def scaled(threshold, seq_len):  # forgot scaled=False: never saturates
        for d in ch02.DK_CHOICES:
            if E.saturation(d, seq_len, n_rows=256, scaled=True, seed=0)["max_weight"] >= threshold:
                return d
        return None

    def last_below(threshold, seq_len):  # off by one step
        prev = None
        for d in ch02.DK_CHOICES:
            if (
                E.saturation(d, seq_len, n_rows=256, scaled=False, seed=0)["max_weight"]
                >= threshold
            ):
                return prev
            prev = d
        return prev

    for wrong in (scaled, last_below):
        assert ch02.check_first_saturated_dk(wrong) is False
        assert "❌" in capsys.readouterr().out


# --- chapter 03 ----------------------------------------------------------------------------


def test_stable_softmax_checker(capsys):
    assert ch03.check_stable_softmax(ch03.solution_stable_softmax) is True
    # torch's is stable too, but it is the built-in the exercise asks for: refused
    assert ch03.check_stable_softmax(lambda x: torch.softmax(x, -1)) is False
    assert "torch.softmax" in capsys.readouterr().out
    assert ch03.check_stable_softmax(lambda x: F.softmax(x, -1)) is False
    assert "torch.nn.functional.softmax" in capsys.readouterr().out
    assert ch03.check_stable_softmax(stub) is False
    wrongs = [
        lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True),  # naive: overflows
        lambda x: torch.softmax(x, 0),  # wrong dim
        lambda x: (
            torch.exp(x - x.amin(-1, keepdim=True))
            / torch.exp(x - x.amin(-1, keepdim=True)).sum(-1, keepdim=True)
        ),
    ]
    for wrong in wrongs:
        capsys.readouterr()
        assert ch03.check_stable_softmax(wrong) is False
        assert "❌" in capsys.readouterr().out
    # the naive one is reported as NaN, in words
    ch03.check_stable_softmax(wrongs[0])
    assert "NaN" in capsys.readouterr().out


def test_masked_softmax_checker(capsys):
    assert ch03.check_masked_softmax(ch03.solution_masked_softmax) is True
    # the solution equals PyTorch attention's weights, fully masked rows included
    x = torch.randn(4, 5)
    mask = torch.ones(4, 5, dtype=torch.bool).tril()
    mask[1] = False
    eye = torch.eye(5)
    sdpa = torch.nn.functional.scaled_dot_product_attention(x, eye, eye, attn_mask=mask, scale=1.0)
    torch.testing.assert_close(ch03.solution_masked_softmax(x, mask), sdpa)
    wrongs = [
        lambda x, m: torch.softmax(x.masked_fill(~m, float("-inf")), -1),  # NaN on a dead row
        lambda x, m: torch.softmax(x.masked_fill(~m, -1e9), -1),  # uniform on a dead row
        lambda x, m: torch.softmax(x, -1),  # ignores the mask
        lambda x, m: torch.softmax(x.masked_fill(m, float("-inf")), -1).nan_to_num(0.0),  # inverted
    ]
    for wrong in wrongs:
        capsys.readouterr()
        assert ch03.check_masked_softmax(wrong) is False
        assert "❌" in capsys.readouterr().out


def test_merge_states_checker(capsys):
    assert ch03.check_merge_states(ch03.solution_merge_states) is True

    def no_rescale(ma, la, mb, lb):
        return torch.maximum(ma, mb), la + lb

    def nan_on_empty(ma, la, mb, lb):
        m = torch.maximum(ma, mb)
        return m, la * torch.exp(ma - m) + lb * torch.exp(mb - m)

    def wrong_direction(ma, la, mb, lb):
        m = torch.maximum(ma, mb)
        safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        return m, la * torch.exp(safe - ma).nan_to_num(0) + lb * torch.exp(safe - mb).nan_to_num(0)

    for wrong in (no_rescale, nan_on_empty, wrong_direction, stub):
        capsys.readouterr()
        assert ch03.check_merge_states(wrong) is False
        assert "❌" in capsys.readouterr().out or wrong is stub


def test_softmax_jacobian_checker(capsys):
    assert ch03.check_softmax_jacobian(ch03.solution_softmax_jacobian) is True
    # the solution is autograd's Jacobian
    x = torch.randn(4, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), x)
    torch.testing.assert_close(ch03.solution_softmax_jacobian(torch.softmax(x, -1)), J)
    wrongs = [
        lambda p: torch.diag_embed(p),
        lambda p: torch.diag_embed(p) - p.unsqueeze(-2) * p.unsqueeze(-2),
        lambda p: p.unsqueeze(-1) * p.unsqueeze(-2) - torch.diag_embed(p),  # sign flipped
    ]
    for wrong in wrongs:
        capsys.readouterr()
        assert ch03.check_softmax_jacobian(wrong) is False
        assert "❌" in capsys.readouterr().out


def test_feedback_in_chinese(capsys):
    set_language("zh")
    assert (
        ch03.check_masked_softmax(lambda x, m: torch.softmax(x.masked_fill(~m, -1e9), -1)) is False
    )
    out = capsys.readouterr().out
    assert "全被屏蔽的行" in out and "提示" in out
    assert ch02.check_dot_variance(stub) is False
    assert "还没有完成" in capsys.readouterr().out


def test_checkers_never_raise(capsys):
    for check in (ch02.check_dot_variance, ch03.check_stable_softmax, ch03.check_merge_states):
        assert check(42) is False
        assert check(lambda *a: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


# --- chapter 02: question 1 and the stretch exercise ------------------------------------------


def test_ch02_q1_answer_is_the_measured_growth_of_the_spread(capsys):
    # the answer, 2, is what a measurement gives: the std of q·k at d_k = 256 over that at 64
    ratio = float(E.dot_products(256, 20_000, seed=0).std() / E.dot_products(64, 20_000, seed=0).std())
    assert abs(ratio - 2.0) < 0.05
    assert ch02.check_q1(None) is False and "not answered yet" in capsys.readouterr().out
    assert ch02.check_q1(4) is False                               # the variance's factor, not the spread's
    out = capsys.readouterr().out
    assert "❌" in out and "square root" in out and "√4 = 2" not in out
    assert ch02.check_q1(16) is False                              # second wrong answer: not the answer
    out = capsys.readouterr().out
    assert "√4 = 2" not in out and 'show_answer("ch02.q1")' in out
    X.show_answer("ch02.q1")
    out = capsys.readouterr().out
    assert "√4 = 2" in out and "answer:   2" in out
    assert ch02.check_q1(2) is True and "✅" in capsys.readouterr().out


def _sampled_score_variance(d, mq, sq, mk, sk, n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = mq + sq * torch.randn(n, d, generator=g, dtype=torch.float64)
    k = mk + sk * torch.randn(n, d, generator=g, dtype=torch.float64)
    return float((q * k).sum(-1).var())


@pytest.mark.parametrize("case", ch02.SCORE_VARIANCE_CASES)
def test_score_variance_solution_is_the_sampled_variance(case):
    want = ch02.solution_score_variance(*case)
    got = _sampled_score_variance(*case)
    # the sample variance's standard error is at most a few percent of the variance here
    assert abs(got - want) <= 0.03 * want + 1e-9
    if case[1] == case[3] == 0.0:                                  # zero means: chapter 02's d_k std_q² std_k²
        assert want == pytest.approx(case[0] * case[2] ** 2 * case[4] ** 2)


@pytest.mark.parametrize("wrong", [
    lambda d, mq, sq, mk, sk: d * sq**2 * sk**2,                              # the means forgotten
    lambda d, mq, sq, mk, sk: d * (sq**2 + mq**2) * (sk**2 + mk**2),          # E[X²], not Var(X)
    lambda d, mq, sq, mk, sk: d * (sq**2 * sk**2 + mq**2 * mk**2),            # the wrong cross terms
    lambda d, mq, sq, mk, sk: _sampled_score_variance(d, mq, sq, mk, sk, n=20_000),  # a sample, not the formula
])
def test_score_variance_wrong_answers_fail(wrong, capsys):
    assert ch02.check_score_variance(wrong) is False
    out = capsys.readouterr().out
    assert "❌" in out and "expected" in out and "hint" in out


def test_score_variance_checker_stages_forbid_and_chinese(capsys, monkeypatch):
    monkeypatch.setitem(ch02.MISTAKES, "ch02.ex4", ())  # the staged hints, not the diagnosis (tested elsewhere)
    assert ch02.check_score_variance(ch02.solution_score_variance) is True
    assert "all 5 cases pass" in capsys.readouterr().out
    assert ch02.check_score_variance(stub) is False and "not done yet" in capsys.readouterr().out
    wrong = lambda d, mq, sq, mk, sk: d * sq**2 * sk**2  # noqa: E731
    ch02.check_score_variance(wrong)
    first = capsys.readouterr().out
    ch02.check_score_variance(wrong)
    second = capsys.readouterr().out
    assert "E[X²] - E[X]²" in second and "E[X²] - E[X]²" not in first and "std_q² mean_k²" not in second
    from attnkit.exercises import show_hint
    show_hint("ch02.ex4")
    assert "std_q² mean_k²" in capsys.readouterr().out          # the formula only on request

    def calls_the_library(d, mq, sq, mk, sk):
        return E.dot_product_variance(d, 1000, std=sq, seed=0)

    assert ch02.check_score_variance(calls_the_library) is False
    assert "attnkit.experiments.scaling.dot_product_variance" in capsys.readouterr().out
    set_language("zh")
    assert ch02.check_score_variance(wrong) is False
    assert "挑战题" in capsys.readouterr().out
    assert ch02.check_q1(2) is True and "问题 1" in capsys.readouterr().out


# --- chapter 03: question 1 and the stretch exercise ------------------------------------------


def test_ch03_q1_answer_is_what_the_softmax_does(capsys):
    x = torch.tensor([2.3, 9.1, 0.5], dtype=torch.float64)
    torch.testing.assert_close(torch.softmax(x + 100, -1), torch.softmax(x, -1))   # b) nothing changes
    assert ch03.check_q1(None) is False and "not answered yet" in capsys.readouterr().out
    assert ch03.check_q1("d") is False
    out = capsys.readouterr().out
    assert "❌" in out and "as a product" in out and "e^100" not in out   # the nudge, not the answer
    assert ch03.check_q1("a") is False                               # second wrong: not the answer
    out = capsys.readouterr().out
    assert "b) nothing: the same weights" not in out and "e^100" not in out
    X.show_answer("ch03.q1")
    out = capsys.readouterr().out
    assert "b) nothing: the same weights" in out and "e^100" in out
    assert ch03.check_q1(" B ") is True and "✅" in capsys.readouterr().out


def _autograd_lsm_backward(x, g):
    xx = x.detach().clone().requires_grad_(True)
    torch.log_softmax(xx, -1).backward(g)
    return xx.grad


def test_log_softmax_backward_solution_equals_autograd(capsys):
    for case in ch03.log_softmax_backward_cases():
        x, g = case.args
        torch.testing.assert_close(ch03.solution_log_softmax_backward(x, g), _autograd_lsm_backward(x, g),
                                   atol=1e-5, rtol=1e-5)
    assert any(c.args[0].abs().max() >= 1000 for c in ch03.log_softmax_backward_cases())  # the overflow case
    assert ch03.check_log_softmax_backward(ch03.solution_log_softmax_backward) is True
    assert "all 3 cases pass" in capsys.readouterr().out


def _lsm_no_sum(x, g):                      # g - p g: the sum over the row forgotten
    return g - torch.softmax(x, -1) * g


def _lsm_naive_exp(x, g):                   # the softmax as written: overflows near 1000
    p = torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)
    return g - p * g.sum(-1, keepdim=True)


def _lsm_softmax_backward(x, g):            # softmax's backward instead of log-softmax's
    p = torch.softmax(x, -1)
    return p * (g - (p * g).sum(-1, keepdim=True))


def _lsm_jacobian(x, g):                    # right numbers, but builds the (..., n, n) Jacobian
    p = torch.softmax(x, -1)
    jac = torch.eye(x.shape[-1], dtype=x.dtype) - p.unsqueeze(-2)   # J[i, j] = δ_ij - p_j
    return (g.unsqueeze(-1) * jac).sum(-2)


@pytest.mark.parametrize("wrong", [_lsm_no_sum, _lsm_naive_exp, _lsm_softmax_backward, _lsm_jacobian])
def test_log_softmax_backward_wrong_answers_fail(wrong, capsys):
    assert ch03.check_log_softmax_backward(wrong) is False
    out = capsys.readouterr().out
    assert "❌" in out and "hint" in out


def test_log_softmax_backward_jacobian_fails_on_memory_only(capsys):
    x, g = ch03.log_softmax_backward_cases()[2].args
    torch.testing.assert_close(_lsm_jacobian(x, g), ch03.solution_log_softmax_backward(x, g), atol=1e-5, rtol=1e-4)
    assert ch03.check_log_softmax_backward(_lsm_jacobian) is False
    assert "peak memory" in capsys.readouterr().out


def test_log_softmax_backward_stages_forbid_stub_and_chinese(capsys, monkeypatch):
    monkeypatch.setitem(ch03.MISTAKES, "ch03.ex5", ())  # the staged hints, not the diagnosis (tested elsewhere)
    assert ch03.check_log_softmax_backward(stub) is False and "not done yet" in capsys.readouterr().out
    assert ch03.check_log_softmax_backward(_autograd_lsm_backward) is False
    assert "torch.autograd.backward" in capsys.readouterr().out

    def via_grad(x, g):
        xx = x.detach().clone().requires_grad_(True)
        return torch.autograd.grad(torch.log_softmax(xx, -1), xx, g)[0]

    assert ch03.check_log_softmax_backward(via_grad) is False
    assert "torch.autograd.grad" in capsys.readouterr().out
    ch03.check_log_softmax_backward(_lsm_no_sum)
    capsys.readouterr()
    ch03.check_log_softmax_backward(_lsm_no_sum)
    out = capsys.readouterr().out
    assert "δ_ij - p_j" in out and "g.sum(-1, keepdim=True)" not in out   # the stronger hint, not the formula
    from attnkit.exercises import show_hint
    show_hint("ch03.ex5")
    assert "g.sum(-1, keepdim=True)" in capsys.readouterr().out
    set_language("zh")
    assert ch03.check_log_softmax_backward(_lsm_naive_exp) is False
    assert "挑战题" in capsys.readouterr().out
    assert ch03.check_q1("b") is True and "问题 1" in capsys.readouterr().out
