"""The checker machinery: staged hints, forbidden built-ins, questions, outcomes; both languages."""

import pytest
import torch
import torch.nn.functional as F

from attnkit import exercises as ex
from attnkit import i18n
from attnkit.exercises import Case, check_answer, run_checks, show_hint

HINTS = ["NUDGE-ONE", "STRONGER-TWO", "FORMULA-THREE"]
REFUSE_SOLUTIONS = True  # see tests/exercises/conftest.py


def double(x):
    return 2 * x


def cases():
    return [Case((torch.tensor([1.0, 2.0]),), label="a"), Case((torch.tensor([3.0]),), label="b")]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_hints_are_staged_and_the_formula_comes_only_on_request(lang, capsys):
    i18n.set_language(lang)
    wrong = lambda x: 3 * x  # noqa: E731
    assert run_checks(wrong, double, cases(), "T", hints=HINTS, exercise="t.ex1") is False
    first = capsys.readouterr().out
    assert "NUDGE-ONE" in first and "STRONGER-TWO" not in first and "FORMULA-THREE" not in first
    assert run_checks(wrong, double, cases(), "T", hints=HINTS, exercise="t.ex1") is False
    second = capsys.readouterr().out
    assert "STRONGER-TWO" in second and "FORMULA-THREE" not in second
    assert 'show_hint("t.ex1")' in second
    for _ in range(3):  # failing again never prints the formula by itself
        run_checks(wrong, double, cases(), "T", hints=HINTS, exercise="t.ex1")
        assert "FORMULA-THREE" not in capsys.readouterr().out
    show_hint("t.ex1")
    shown = capsys.readouterr().out
    assert all(h in shown for h in HINTS)
    show_hint("t.ex1", level=1)
    shown = capsys.readouterr().out
    assert "NUDGE-ONE" in shown and "STRONGER-TWO" not in shown
    assert ex.t("ex.hint", what="x") != ex.t("ex.hint", lang="en" if lang == "zh" else "zh", what="x")


def test_another_failing_case_does_not_reset_the_hint_to_the_nudge(capsys):
    fails_a = lambda x: 3 * x  # noqa: E731
    fails_b = lambda x: 2 * x if x.numel() == 2 else x  # noqa: E731
    run_checks(fails_a, double, cases(), "T", hints=HINTS, exercise="t.ex2")
    capsys.readouterr()
    run_checks(fails_b, double, cases(), "T", hints=HINTS, exercise="t.ex2")
    out = capsys.readouterr().out
    assert "case 2 of 2" in out and "STRONGER-TWO" in out and "NUDGE-ONE" not in out


def test_passing_resets_the_stage_and_records_the_outcome(capsys):
    run_checks(lambda x: 3 * x, double, cases(), "T", hints=HINTS, exercise="t.ex3")
    assert ex.OUTCOMES["t.ex3"]["status"] == "failed" and ex.OUTCOMES["t.ex3"]["case"] == 1
    assert run_checks(double, double, cases(), "T", hints=HINTS, exercise="t.ex3") is True
    assert ex.OUTCOMES["t.ex3"]["status"] == "passed"
    assert "✅" in ex.OUTCOMES["t.ex3"]["feedback"]
    run_checks(lambda x: 3 * x, double, cases(), "T", hints=HINTS, exercise="t.ex3")
    assert "NUDGE-ONE" in capsys.readouterr().out.split("✅")[-1]


def test_stub_is_todo(capsys):
    def stub(x):
        raise NotImplementedError
    assert run_checks(stub, double, cases(), "T", hints=HINTS, exercise="t.ex4") is False
    assert "⏳" in capsys.readouterr().out and ex.OUTCOMES["t.ex4"]["status"] == "todo"


def sdpa_solution(q, k, v):
    w = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return w @ v


def test_calling_the_forbidden_builtin_fails_with_its_name(capsys):
    g = torch.Generator().manual_seed(0)
    case = [Case(tuple(torch.randn(3, 4, generator=g) for _ in range(3)), label="x")]
    forbid = ("torch.nn.functional.scaled_dot_product_attention",)
    assert run_checks(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), sdpa_solution, case,
                      "T", hints=HINTS, exercise="t.ex5", forbid=forbid) is False
    out = capsys.readouterr().out
    assert "torch.nn.functional.scaled_dot_product_attention" in out
    assert ex.OUTCOMES["t.ex5"]["status"] == "forbidden"
    # the built-in is restored afterwards, and a from-scratch solution passes
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention
    assert run_checks(sdpa_solution, sdpa_solution, case, "T", hints=HINTS, exercise="t.ex5",
                      forbid=forbid) is True


sdpa_by_name = F.scaled_dot_product_attention  # as `from ... import scaled_dot_product_attention`


def learner_imported_by_name(q, k, v):
    return sdpa_by_name(q, k, v)


def test_a_name_imported_from_the_module_is_caught_too(capsys):
    g = torch.Generator().manual_seed(1)
    case = [Case(tuple(torch.randn(2, 4, generator=g) for _ in range(3)), label="x")]
    assert run_checks(learner_imported_by_name, sdpa_solution, case, "T", hints=HINTS,
                      forbid=("torch.nn.functional.scaled_dot_product_attention",)) is False
    assert "calls torch.nn.functional.scaled_dot_product_attention" in capsys.readouterr().out
    assert sdpa_by_name is F.scaled_dot_product_attention


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_number_question(lang, capsys):
    i18n.set_language(lang)
    kw = dict(expected=64.0, exercise="t.q1", title="Q", explanation="WHY-64", nudge="NUDGE-Q", tol=0.01)
    assert check_answer(None, **kw) is False
    assert "⏳" in capsys.readouterr().out
    assert check_answer(10, **kw) is False
    out = capsys.readouterr().out
    assert "NUDGE-Q" in out and "WHY-64" not in out and "64" not in out.replace("10", "")
    assert check_answer(12, **kw) is False
    out = capsys.readouterr().out
    assert "WHY-64" not in out and 'show_answer("t.q1")' in out  # wrong answers never reveal it
    ex.show_answer("t.q1")
    out = capsys.readouterr().out
    assert "WHY-64" in out and "64" in out  # asked for: the answer and why
    assert check_answer(64.3, **kw) is True
    out = capsys.readouterr().out
    assert "✅" in out and "WHY-64" in out
    assert check_answer("not a number", **kw) is False
    assert ex.OUTCOMES["t.q1"]["status"] == "failed"


def test_choice_question(capsys):
    kw = dict(expected="b", exercise="t.q2", title="Q", explanation="WHY-B", nudge="N",
              choices={"a": "rows", "b": "columns"})
    assert check_answer("z", **kw) is False
    assert "a) rows" in capsys.readouterr().out
    assert check_answer("A", **kw) is False
    assert "WHY-B" not in capsys.readouterr().out
    assert check_answer(" B ", **kw) is True
    assert "WHY-B" in capsys.readouterr().out and ex.OUTCOMES["t.q2"]["status"] == "passed"


def test_handing_in_the_forbidden_builtin_itself_fails(capsys):
    g = torch.Generator().manual_seed(2)
    case = [Case(tuple(torch.randn(2, 4, generator=g) for _ in range(3)), label="x")]
    assert run_checks(F.scaled_dot_product_attention, sdpa_solution, case, "T", hints=HINTS,
                      exercise="t.ex6", forbid=("torch.nn.functional.scaled_dot_product_attention",)) is False
    assert ex.OUTCOMES["t.ex6"]["status"] == "forbidden"
