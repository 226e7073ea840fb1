"""Chapter 01's checkers accept the solutions, reject typical wrong answers, and never raise."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import i18n
from attnkit.exercises import ch01


# exercise 1: one token per column, q (..., d_k, L), k (..., d_k, S), v (..., d_v, S) -> (..., d_v, L)
def no_scale(q, k, v):
    return v @ torch.softmax(q.mT @ k, dim=-1).mT


def wrong_dim(q, k, v):
    return v @ torch.softmax(q.mT @ k / math.sqrt(q.shape[-2]), dim=-2).mT


def scale_by_d(q, k, v):
    return v @ torch.softmax(q.mT @ k / q.shape[-2], dim=-1).mT


def chapter_cell(q, k, v):  # section 4's attention, retyped: one token per row
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def fill_minus_1e9(q, k, v, mask):
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, -1e9)
    return torch.softmax(s, dim=-1) @ v


def inverted(q, k, v, mask):
    return ch01.solution_masked_attention(q, k, v, ~mask)


def nan_rows(q, k, v, mask):
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


CHECKS = [
    (ch01.check_attention, ch01.solution_attention, [no_scale, wrong_dim, scale_by_d, chapter_cell]),
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
    assert "expected:" in out and "got:" in out and "values differ" in out and "first at index (0, " in out
    assert "tensor of shape (5, 3)" in out  # the expected answer by shape, never its values


def test_exercise_1_is_not_the_chapter_cell_retyped(capsys):
    assert ch01.check_attention(chapter_cell) is False
    out = capsys.readouterr().out
    assert "❌" in out and ("RuntimeError" in out or "shape" in out)


def test_exercise_1_in_rows_is_the_same_attention_as_the_chapters():
    """The oracle: the column answer, transposed, is PyTorch's SDPA on the rows."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 5)
    got = ch01.solution_attention(q.mT, k.mT, v.mT).mT
    assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v), atol=1e-6)


# ---- the question: two equal keys as T -> 0 ----

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_question_right_and_wrong_answers(lang, capsys):
    from attnkit.exercises import OUTCOMES

    i18n.set_language(lang)
    try:
        why, nudge = i18n.t("ch01.q1.why"), i18n.t("ch01.q1.nudge")
        assert ch01.check_q1(None) is False and OUTCOMES["ch01.q1"]["status"] == "todo"
        capsys.readouterr()
        assert ch01.check_q1(1.0) is False  # one-hot: the tie forgotten
        first = capsys.readouterr().out
        assert nudge in first and why not in first  # predict first: no answer yet
        assert ch01.check_q1(1 / 3) is False
        second = capsys.readouterr().out
        assert why not in second and 'show_answer("ch01.q1")' in second  # wrong answers never reveal it
        from attnkit.exercises import show_answer
        show_answer("ch01.q1")
        asked = capsys.readouterr().out
        assert why in asked and "0.5" in asked  # asked for: the answer and why
        assert ch01.check_q1(0.5) is True and ch01.check_q1(0.505) is True
        assert why in capsys.readouterr().out
    finally:
        i18n.set_language("en")


def test_question_answer_is_what_attention_computes():
    from attnkit.core import scaled_dot_product_attention

    # a row whose largest score is held by two equal keys: its largest weight as T -> 0
    q = torch.tensor([[1.0, 0.5]])
    k = torch.tensor([[2.0, 1.0], [0.0, 1.0], [2.0, 1.0], [1.0, -1.0]])
    for temp, close in ((1.0, False), (0.01, True)):
        _, w = scaled_dot_product_attention(q, k, torch.eye(4), scale=1 / temp, return_weights=True)
        assert (abs(w.max().item() - 0.5) < 1e-3) == close
        assert w[0, 0] == w[0, 2]


# ---- the stretch exercise: a self-attention module trained on section 1's task ----

class TiedQueriesKeys(torch.nn.Module):  # one matrix for queries and keys: cannot express R
    def __init__(self, d):
        super().__init__()
        self.qk, self.v = torch.nn.Linear(d, d, bias=False), torch.nn.Linear(d, d, bias=False)

    def forward(self, x):
        q = self.qk(x)
        return torch.softmax(q @ q.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-1) @ self.v(x)


class PositionMixing(torch.nn.Module):  # a fixed mixing matrix per position pair (section 1's baseline)
    def __init__(self, d):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(16, 16))

    def forward(self, x):
        n = x.shape[1]
        return torch.softmax(self.logits[:n, :n], dim=-1) @ x


class SoftmaxOverQueries(ch01.SolutionSelfAttention):  # each key's column sums to 1
    def forward(self, x):
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-2) @ v


class CallsSDPA(ch01.SolutionSelfAttention):
    def forward(self, x):
        return F.scaled_dot_product_attention(self.to_q(x), self.to_k(x), self.to_v(x))


class BuildsMultiheadAttention(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(d, 1, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x)[0]


class ReturnsWeights(ch01.SolutionSelfAttention):
    def forward(self, x):
        q, k = self.to_q(x), self.to_k(x)
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # (B, n, n), not (B, n, d)



def test_stretch_reference_learns_the_task_and_the_wrong_modules_do_not():
    for n, d, seed in ch01.STRETCH_CASES:
        ref = ch01.solution_lookup_mse(n, d, seed)
        assert ref < 0.5 * ch01.STRETCH_LIMIT
        assert ch01.train_on_lookup(ch01.SolutionSelfAttention, n, d, seed) == ref  # seeded: repeatable
    n, d, seed = ch01.STRETCH_CASES[0]
    for wrong in (TiedQueriesKeys, PositionMixing, SoftmaxOverQueries):
        assert ch01.train_on_lookup(wrong, n, d, seed) > 1.5 * ch01.STRETCH_LIMIT


def test_stretch_checker_passes_the_solution_and_fails_wrong_modules(capsys):
    from attnkit.exercises import OUTCOMES

    assert ch01.check_self_attention(ch01.SolutionSelfAttention) is True
    assert "✅" in capsys.readouterr().out
    for wrong in (TiedQueriesKeys, PositionMixing, SoftmaxOverQueries):
        assert ch01.check_self_attention(wrong) is False
        out = capsys.readouterr().out
        assert OUTCOMES["ch01.ex4"]["status"] == "failed" and OUTCOMES["ch01.ex4"]["case"] == 1
        assert f"must be below {ch01.STRETCH_LIMIT}" in out and "hint" in out


def test_stretch_checker_refuses_the_built_ins(capsys):
    from attnkit.exercises import OUTCOMES

    for cheat, name in ((CallsSDPA, "torch.nn.functional.scaled_dot_product_attention"),
                        (BuildsMultiheadAttention, "torch.nn.MultiheadAttention"),
                        (torch.nn.MultiheadAttention, "torch.nn.MultiheadAttention")):
        assert ch01.check_self_attention(cheat) is False
        assert OUTCOMES["ch01.ex4"]["status"] == "forbidden"
        assert name in capsys.readouterr().out


def test_stretch_checker_reports_a_wrong_shape_a_stub_and_a_non_module(capsys):
    from attnkit.exercises import OUTCOMES

    assert ch01.check_self_attention(ReturnsWeights) is False
    assert "forward(x) must return a tensor of x's shape (64, 8, 16), got (64, 8, 8)" in capsys.readouterr().out

    class Stub(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            raise NotImplementedError

    assert ch01.check_self_attention(Stub) is False
    assert "not done yet" in capsys.readouterr().out
    assert ch01.check_self_attention(lambda d: "a string") is False
    assert "must build a torch.nn.Module" in capsys.readouterr().out
    assert ch01.check_self_attention(None) is False and OUTCOMES["ch01.ex4"]["status"] == "error"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_stretch_hints_are_staged(lang, capsys):
    import attnkit.exercises as X

    i18n.set_language(lang)
    try:
        nudge, stronger, formula = (i18n.t(f"ch01.ex4.{h}") for h in ("nudge", "stronger", "formula"))
        X._STAGE.pop("ch01.ex4", None)
        assert ch01.check_self_attention(PositionMixing) is False
        first = capsys.readouterr().out
        assert nudge in first and stronger not in first and formula not in first
        assert ch01.check_self_attention(TiedQueriesKeys) is False  # the same case fails again
        second = capsys.readouterr().out
        assert stronger in second and formula not in second and 'show_hint("ch01.ex4")' in second
        X.show_hint("ch01.ex4")
        assert formula in capsys.readouterr().out
        assert ch01.check_self_attention(ch01.SolutionSelfAttention) is True
        assert ("全部通过" if lang == "zh" else "all 2 cases pass") in capsys.readouterr().out
    finally:
        i18n.set_language("en")
