"""Chapter 07 checkers: each passes its reference solution (checked itself against an oracle)
and fails typical wrong answers, with feedback in both languages, never raising."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.exercises import ch07
from attnkit.flash import io_standard
from attnkit.i18n import set_language


@pytest.fixture(autouse=True)
def english():
    set_language("en")
    yield
    set_language("en")


def run(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


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
