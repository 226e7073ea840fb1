"""Chapter 01's checkers accept the solutions, reject typical wrong answers, and never raise."""

import math

import pytest
import torch

from attnkit import i18n
from attnkit.exercises import ch01


def no_scale(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def wrong_dim(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v


def scale_by_d(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1) @ v


def fill_minus_1e9(q, k, v, mask):
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, -1e9)
    return torch.softmax(s, dim=-1) @ v


def inverted(q, k, v, mask):
    return ch01.solution_masked_attention(q, k, v, ~mask)


def nan_rows(q, k, v, mask):
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


CHECKS = [
    (ch01.check_attention, ch01.solution_attention, [no_scale, wrong_dim, scale_by_d]),
    (ch01.check_causal_mask, ch01.solution_causal_mask,
     [lambda n: torch.ones(n, n).triu().bool(), lambda n: torch.ones(n, n).tril(-1).bool(),
      lambda n: torch.ones(n, n).tril()]),  # float, not bool: passes values but is 0/1 floats
    (ch01.check_masked_attention, ch01.solution_masked_attention, [fill_minus_1e9, inverted, nan_rows]),
]


@pytest.mark.parametrize("check,solution,wrong", CHECKS, ids=lambda x: getattr(x, "__name__", ""))
def test_checker_accepts_the_solution_and_rejects_wrong_answers(check, solution, wrong, capsys):
    assert check(solution) is True
    assert "✅" in capsys.readouterr().out
    for fn in wrong[:2]:
        assert check(fn) is False
        out = capsys.readouterr().out
        assert "❌" in out and "hint" in out


def test_float_mask_is_rejected_with_a_dtype_message(capsys):
    assert ch01.check_causal_mask(lambda n: torch.ones(n, n).tril()) is False
    assert "dtype" in capsys.readouterr().out


def test_stub_exception_and_non_callable_never_raise(capsys):
    def stub(q, k, v):
        raise NotImplementedError

    def crashes(q, k, v):
        return q @ k  # wrong inner dimensions

    assert ch01.check_attention(stub) is False
    assert "not done yet" in capsys.readouterr().out
    assert ch01.check_attention(crashes) is False
    assert "RuntimeError" in capsys.readouterr().out
    assert ch01.check_attention(None) is False
    assert "expected a function" in capsys.readouterr().out


def test_feedback_follows_the_language(capsys):
    i18n.set_language("zh")
    try:
        ch01.check_attention(no_scale)
        out = capsys.readouterr().out
        assert "未通过" in out and "提示" in out and "期望结果" in out
        ch01.check_attention(ch01.solution_attention)
        assert "全部通过" in capsys.readouterr().out
    finally:
        i18n.set_language("en")


def test_failure_names_the_case_and_shows_expected_and_got(capsys):
    ch01.check_attention(no_scale)
    out = capsys.readouterr().out
    assert "case 1 of 3" in out  # no_scale already differs on the smallest case
    assert "expected:" in out and "got:" in out and "values differ by up to" in out
