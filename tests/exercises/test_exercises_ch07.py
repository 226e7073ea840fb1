"""Chapter 07 checkers: each passes its reference solution (checked itself against an oracle)
and fails typical wrong answers, with feedback in both languages, never raising."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.exercises import ch07
from attnkit.flash import io_standard
from attnkit.i18n import set_language
from helpers import run

# ---------------------------------------------------------------- exercise 1: merge


def test_merge_solution_passes_and_equals_softmax_over_all_keys(capsys):
    ok, out = run(ch07.check_merge, ch07.solution_merge, capsys)
    assert ok and "all 3 cases pass" in out
    g = torch.Generator().manual_seed(0)
    s, v = torch.randn(5, 10, generator=g, dtype=torch.float64), torch.randn(10, 2, generator=g, dtype=torch.float64)
    m, l, o = ch07.solution_merge(*ch07._partial(s[:, :3], v[:3]), *ch07._partial(s[:, 3:], v[3:]))
    torch.testing.assert_close(o, torch.softmax(s, -1) @ v)
    torch.testing.assert_close(m + torch.log(l), torch.logsumexp(s, -1))


def _no_rescale(m1, l1, o1, m2, l2, o2):  # forgets that l1, l2 are on different scales
    l = l1 + l2
    return torch.maximum(m1, m2), l, (l1[:, None] * o1 + l2[:, None] * o2) / l[:, None]


def _average(m1, l1, o1, m2, l2, o2):  # averages the two outputs
    return torch.maximum(m1, m2), l1 + l2, (o1 + o2) / 2


def _raw_exp(m1, l1, o1, m2, l2, o2):  # right idea, but exp(m) overflows for large scores
    w1, w2 = torch.exp(m1) * l1, torch.exp(m2) * l2
    m = torch.maximum(m1, m2)
    return m, (w1 + w2) * torch.exp(-m), (w1[:, None] * o1 + w2[:, None] * o2) / (w1 + w2)[:, None]


@pytest.mark.parametrize("wrong", [_no_rescale, _average, _raw_exp])
def test_merge_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch07.check_merge, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_raw_exp_fails_only_on_the_overflow_case(capsys):
    ok, out = run(ch07.check_merge, _raw_exp, capsys)
    assert not ok and "case 3 of 3" in out and "1000" in out


# ---------------------------------------------------------------- exercise 2: tile skipping


def test_tile_skip_solution_passes_and_matches_brute_force(capsys):
    ok, out = run(ch07.check_tile_skipped, ch07.solution_tile_skipped, capsys)
    assert ok and f"all {len(ch07.TILE_CASES)} cases pass" in out
    for qs, qe, ks, ke in ch07.TILE_CASES:
        brute = all(j > i for i in range(qs, qe) for j in range(ks, ke))
        assert ch07.solution_tile_skipped(qs, qe, ks, ke) == brute
    assert {ch07.solution_tile_skipped(*c) for c in ch07.TILE_CASES} == {True, False}


@pytest.mark.parametrize("wrong", [
    lambda qs, qe, ks, ke: ks > qs,  # compares with the first query, not the last
    lambda qs, qe, ks, ke: ks > qe,  # off by one: q_end is excluded
    lambda qs, qe, ks, ke: ke > qe,  # looks at the wrong corner
    lambda qs, qe, ks, ke: ks >= qs + 1 and ke > qe,
])
def test_tile_skip_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch07.check_tile_skipped, wrong, capsys)
    assert not ok and "❌" in out


def test_tile_skip_non_bool_is_reported(capsys):
    ok, out = run(ch07.check_tile_skipped, lambda *a: "yes", capsys)
    assert not ok and "bool" in out


# ---------------------------------------------------------------- exercise 3: IO count


def _count_by_hand(N, d, M):
    bc = math.ceil(M / (4 * d))
    tc = math.ceil(N / bc)
    return 2 * N * d + tc * (3 * N * d + 4 * N)


def test_io_solution_passes_and_matches_hand_count(capsys):
    ok, out = run(ch07.check_io_flash, ch07.solution_io_flash, capsys)
    assert ok and "all 4 cases pass" in out
    for N, d, M in ch07.IO_CASES:
        assert ch07.solution_io_flash(N, d, M) == _count_by_hand(N, d, M)


@pytest.mark.parametrize("wrong", [
    lambda N, d, M: N * N * d * d / M,  # the Theta formula, not the count
    lambda N, d, M: io_standard(N, d)["total"],  # standard attention
    lambda N, d, M: 2 * N * d + (N // (M // (4 * d))) * (3 * N * d + 4 * N),  # floors instead of ceilings
    lambda N, d, M: 2 * N * d + math.ceil(N / math.ceil(M / (4 * d))) * 3 * N * d,  # forgets l and m
])
def test_io_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch07.check_io_flash, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- stubs, errors, Chinese


@pytest.mark.parametrize("check", [ch07.check_merge, ch07.check_tile_skipped, ch07.check_io_flash])
def test_stub_says_not_done_and_errors_never_raise(check, capsys):
    def stub(*args):
        raise NotImplementedError

    ok, out = run(check, stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(check, lambda *a: 1 / 0, capsys)
    assert not ok and "ZeroDivisionError" in out


def test_chinese_feedback(capsys):
    set_language("zh")
    ok, out = run(ch07.check_merge, _average, capsys)
    assert not ok and "练习 1" in out and "提示" in out
    ok, out = run(ch07.check_io_flash, ch07.solution_io_flash, capsys)
    assert ok and "全部通过" in out


# ---------------------------------------------------------------- question 1: causal tiles computed

import attnkit.exercises as X  # noqa: E402
from attnkit.flash import tile_schedule  # noqa: E402


def test_q1_expected_answer_is_the_tiles_attnkit_computes():
    """The oracle: attnkit's causal tile schedule for N = 1024 in tiles of 128 computes 36 tiles."""
    steps, skipped = tile_schedule(1024, 1024, 128, 128, is_causal=True)
    assert len(steps) + len(skipped) == 64 and len(steps) == 36


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_q1_right_and_wrong_answers(lang, capsys):
    set_language(lang)
    X._WRONG.pop("ch07.q1", None)
    assert ch07.check_q1(36) and X.OUTCOMES["ch07.q1"]["status"] == "passed"
    out = capsys.readouterr().out
    assert "28" in out and (("why" in out) if lang == "en" else ("原因" in out))
    # typical wrong answers: half of the tiles (32), the diagonal forgotten (28)
    assert not ch07.check_q1(32)
    first = capsys.readouterr().out
    assert X.OUTCOMES["ch07.q1"]["status"] == "failed" and "36" not in first
    assert not ch07.check_q1(28)
    assert "36" not in capsys.readouterr().out  # wrong answers never reveal it
    X.show_answer("ch07.q1")
    assert "36" in capsys.readouterr().out  # asked for: the answer and why
    assert ch07.check_q1(None) is False and X.OUTCOMES["ch07.q1"]["status"] == "todo"


# ---------------------------------------------------------------- stretch: the tiled backward


def _autograd(q, k, v, o, lse, do, block):
    """The oracle: autograd through PyTorch's SDPA."""
    q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return torch.autograd.grad(out, (q, k, v), do)


@pytest.mark.parametrize(("n", "d", "block"), [(8, 4, 4), (13, 8, 5), (40, 16, 7)])
def test_backward_solution_equals_autograd(n, d, block):
    args = ch07._backward_case(5, n, d, block, torch.float64)
    for got, ref in zip(ch07.solution_flash_backward(*args), _autograd(*args), strict=True):
        assert torch.allclose(got, ref, atol=1e-10)


def test_backward_solution_passes_and_autograd_is_forbidden(capsys):
    ok, out = run(ch07.check_flash_backward, ch07.solution_flash_backward, capsys)
    assert ok and "all 3 cases pass" in out
    ok, out = run(ch07.check_flash_backward, _autograd, capsys)
    assert not ok and X.OUTCOMES["ch07.ex4"]["status"] == "forbidden" and "scaled_dot_product_attention" in out

    def with_backward(q, k, v, o, lse, do, block):  # .backward() is refused too
        q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
        (torch.nn.functional.scaled_dot_product_attention(q, k, v) * do).sum().backward()
        return q.grad, k.grad, v.grad

    ok, _ = run(ch07.check_flash_backward, with_backward, capsys)
    assert not ok and X.OUTCOMES["ch07.ex4"]["status"] == "forbidden"


def _dense(q, k, v, o, lse, do, block):  # right numbers, but the whole N x N matrix
    c = 1 / math.sqrt(q.shape[1])
    p = torch.exp(q @ k.T * c - lse[:, None])
    ds = p * (do @ v.T - (do * o).sum(-1)[:, None])
    return c * ds @ k, c * ds.T @ q, p.T @ do


def _no_d(q, k, v, o, lse, do, block):  # the softmax backward without its row term D
    c = 1 / math.sqrt(q.shape[1])
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j in range(0, len(k), block):
        for i in range(0, len(q), block):
            p = torch.exp(q[i:i + block] @ k[j:j + block].T * c - lse[i:i + block, None])
            dv[j:j + block] += p.T @ do[i:i + block]
            ds = p * (do[i:i + block] @ v[j:j + block].T)
            dq[i:i + block] += c * ds @ k[j:j + block]
            dk[j:j + block] += c * ds.T @ q[i:i + block]
    return dq, dk, dv


def _no_scale(q, k, v, o, lse, do, block):  # forgets the 1/sqrt(d) in dq and dk
    dq, dk, dv = ch07.solution_flash_backward(q, k, v, o, lse, do, block)
    return dq * math.sqrt(q.shape[1]), dk * math.sqrt(q.shape[1]), dv


def _tile_softmax(q, k, v, o, lse, do, block):  # normalises each tile on its own instead of using lse
    lse_tiles = torch.cat([torch.logsumexp(q[i:i + block] @ k[:block].T / math.sqrt(q.shape[1]), -1)
                           for i in range(0, len(q), block)])
    return ch07.solution_flash_backward(q, k, v, o, lse_tiles, do, block)


@pytest.mark.parametrize("wrong", [_dense, _no_d, _no_scale, _tile_softmax])
def test_backward_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch07.check_flash_backward, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out
    if wrong is _dense:  # its numbers are right: only the memory gives it away
        assert X.OUTCOMES["ch07.ex4"]["case"] == 3 and "MiB" in out


def test_backward_stub_is_todo_and_a_wrong_tuple_fails():
    # (its staged hints, in both languages: tests/exercises/test_exercises_staged_hints_ch01_ch07.py)
    def stub(*args):
        raise NotImplementedError

    assert not ch07.check_flash_backward(stub) and X.OUTCOMES["ch07.ex4"]["status"] == "todo"
    assert not ch07.check_flash_backward(lambda *a: (1, 2)) and X.OUTCOMES["ch07.ex4"]["status"] == "failed"
