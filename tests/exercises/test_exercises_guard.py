"""The checker's guard: forbidden computations caught by what runs, reference solutions
and copies of them told plainly, stubs told from other errors, feedback that names where, hints
chosen by diagnosis, question spellings, the checkers as data. Both languages where text shows."""

import functools
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import attnkit
import attnkit.flash
from attnkit import exercises as X
from attnkit import i18n
from attnkit.exercises import Case, ch01, check_answer, run_checks

REFUSE_SOLUTIONS = True  # see tests/exercises/conftest.py


def _qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(3, 4, generator=g) for _ in range(3))


def mine(q, k, v):  # an honest answer, written here
    s = (q @ k.mT) * q.shape[-1] ** -0.5
    e = (s - s.max(-1, keepdim=True).values).exp()
    return (e / e.sum(-1, keepdim=True)) @ v


def _reference(q, k, v):  # attention with one token per row: chapter 01's exercise 1 transposed
    return ch01.solution_attention(q.mT, k.mT, v.mT).mT


def _check(fn, forbid, ex="t.g1", **kw):
    return run_checks(fn, _reference, [Case(_qkv(1), label="a"), Case(_qkv(2), label="b")],
                      "T", hints=["N1", "N2", "N3"], exercise=ex, forbid=forbid, **kw)


SDPA = ("torch.nn.functional.scaled_dot_product_attention",)
SOFTMAX = ("torch.softmax",)


def by_default(q, k, v, _f=F.scaled_dot_product_attention):
    return _f(q, k, v)


def _closure():
    f = attnkit.flash.flash_attention

    def inner(q, k, v):
        return f(q[None, None], k[None, None], v[None, None])[0, 0]
    return inner


CHEATS_SDPA = {
    "default argument": by_default,
    "closure over attnkit.flash": _closure(),
    "functools.partial": functools.partial(F.scaled_dot_product_attention, dropout_p=0.0),
    "torch.ops.aten": lambda q, k, v: torch.ops.aten.scaled_dot_product_attention(q, k, v),
    "torch.ops.aten overload": lambda q, k, v: torch.ops.aten.scaled_dot_product_attention.default(q, k, v),
    "attnkit.core": lambda q, k, v: attnkit.core.scaled_dot_product_attention(q, k, v),
    "nn.MultiheadAttention": lambda q, k, v: torch.nn.MultiheadAttention(4, 1)(q, k, v)[0],
}


@pytest.mark.parametrize("name", list(CHEATS_SDPA))
def test_every_path_to_sdpa_is_refused(name, capsys):
    assert _check(CHEATS_SDPA[name], SDPA) is False
    assert X.OUTCOMES["t.g1"]["status"] == "forbidden", capsys.readouterr().out
    assert F.scaled_dot_product_attention(*_qkv()).shape == (3, 4)  # nothing left patched


CHEATS_SOFTMAX = {
    "tensor method": lambda q, k, v: (q @ k.mT / 2).softmax(-1) @ v,
    "torch.special": lambda q, k, v: torch.special.softmax(q @ k.mT / 2, -1) @ v,
    "F.softmax": lambda q, k, v: F.softmax(q @ k.mT / 2, dim=-1) @ v,
    "log_softmax then exp": lambda q, k, v: (q @ k.mT / 2).log_softmax(-1).exp() @ v,
    "torch.ops.aten._softmax": lambda q, k, v: torch.ops.aten._softmax(q @ k.mT / 2, -1, False) @ v,
    "partial": lambda q, k, v: functools.partial(torch.softmax, dim=-1)(q @ k.mT / 2) @ v,
    "nn.Softmax": lambda q, k, v: torch.nn.Softmax(-1)(q @ k.mT / 2) @ v,
}


@pytest.mark.parametrize("name", list(CHEATS_SOFTMAX))
def test_every_spelling_of_softmax_is_refused_where_softmax_is_the_task(name, capsys):
    assert _check(CHEATS_SOFTMAX[name], SOFTMAX, ex="t.g2") is False
    out = capsys.readouterr().out
    assert X.OUTCOMES["t.g2"]["status"] == "forbidden" and "torch.softmax" in out


def test_softmax_is_fine_where_it_is_not_the_task(capsys):
    honest = lambda q, k, v: torch.softmax(q @ k.mT / 2, -1) @ v  # noqa: E731
    assert _check(honest, SDPA, ex="t.g3") is True, capsys.readouterr().out
    assert _check(mine, SDPA + SOFTMAX, ex="t.g3") is True


def test_a_forbidden_call_whose_error_is_swallowed_is_still_refused(capsys):
    def sneaky(q, k, v):
        try:
            return F.scaled_dot_product_attention(q, k, v)
        except Exception:
            return mine(q, k, v)
    assert _check(sneaky, SDPA, ex="t.g4") is False
    assert X.OUTCOMES["t.g4"]["status"] == "forbidden"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_handing_in_a_reference_solution_is_told_and_does_not_pass(lang, capsys):
    i18n.set_language(lang)
    assert ch01.check_attention(ch01.solution_attention) is False
    out = capsys.readouterr().out
    assert "solution_attention" in out and "✅" not in out
    assert ("reference solution" in out) if lang == "en" else ("参考答案" in out)
    rec = X.OUTCOMES["ch01.ex1"]
    assert rec["status"] == "solution" and rec["solution"] is True
    wrapped = lambda q, k, v: ch01.solution_attention(q, k, v)  # noqa: E731
    assert ch01.check_attention(wrapped) is False and X.OUTCOMES["ch01.ex1"]["status"] == "solution"


def test_the_stretch_reference_class_is_told_too(capsys):
    assert ch01.check_self_attention(ch01.SolutionSelfAttention) is False
    out = capsys.readouterr().out
    assert X.OUTCOMES["ch01.ex4"]["status"] == "solution" and "SolutionSelfAttention" in out


def test_solution_source_run_under_another_name_is_recognised(capsys):
    src = inspect.getsource(ch01.solution_masked_attention).replace("solution_masked_attention", "my_masked")
    scope = {"torch": torch, "math": math}
    exec(src, scope)
    assert ch01.check_masked_attention(scope["my_masked"]) is False
    out = capsys.readouterr().out
    assert X.OUTCOMES["ch01.ex3"]["status"] == "solution" and "copy" in out
    # a class copied the same way
    src = inspect.getsource(ch01.SolutionSelfAttention).replace("SolutionSelfAttention", "Mine")
    scope = {"torch": torch, "math": math, "nn": torch.nn}
    exec(src, scope)
    assert ch01.check_self_attention(scope["Mine"]) is False
    assert X.OUTCOMES["ch01.ex4"]["status"] == "solution"


def causal_mask(n):  # written here, and compiled to the very bytecode of the solution's one line
    return torch.ones(n, n).tril().bool()


def test_a_one_line_formula_written_independently_is_not_accused(capsys):
    from attnkit.exercises import _fingerprint

    assert _fingerprint(causal_mask.__code__) == _fingerprint(ch01.solution_causal_mask.__code__)
    assert ch01.check_causal_mask(causal_mask) is True, capsys.readouterr().out


def test_a_stub_is_a_stub_only_on_the_learners_own_line(capsys):
    def stub(q, k, v):
        raise NotImplementedError

    def deeper(q, k, v):
        return q.to_sparse().matrix_exp()  # raises NotImplementedError inside torch

    assert _check(stub, SDPA, ex="t.g5") is False and X.OUTCOMES["t.g5"]["status"] == "todo"
    assert _check(deeper, SDPA, ex="t.g5") is False
    out = capsys.readouterr().out.split("⏳")[-1]
    assert X.OUTCOMES["t.g5"]["status"] == "error" and "NotImplementedError" in out
    assert "q.to_sparse().matrix_exp()" in out  # the learner's line, named


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_feedback_names_where_and_never_shows_the_expected_values(lang, capsys):
    i18n.set_language(lang)

    def off(q, k, v):
        out = mine(q, k, v)
        out[1, 2] += 1
        return out
    assert _check(off, SDPA, ex="t.g6") is False
    out = capsys.readouterr().out
    assert "(1, 2)" in out and "1 " in out
    expected = _reference(*_qkv(1))
    assert f"{expected[0, 0].item():.4g}" not in out  # no other expected entry shown

    def mask(n):
        m = causal_mask(n)
        if n > 1:
            m[0, 1] = True
        return m
    assert ch01.check_causal_mask(mask) is False
    out = capsys.readouterr().out
    assert "(0, 1)" in out and "True" in out and "tolerance" not in out and "允许误差" not in out


def test_a_tuple_part_is_named():
    why = X.compare_tensors((torch.zeros(2), torch.ones(3)), (torch.zeros(2), torch.zeros(3)), names=("out", "s"))
    assert "part 2 of 2" in why and "(s)" in why and "(0,)" in why


def test_a_diagnosed_mistake_gets_its_own_hint(capsys):
    no_scale = lambda q, k, v: torch.softmax(q @ k.mT, -1) @ v  # noqa: E731
    mistakes = [(lambda q, k, v: torch.softmax(q @ k.mT, -1) @ v, "DIAG-NO-SCALE")]
    assert _check(no_scale, (), ex="t.g7", mistakes=mistakes) is False
    out = capsys.readouterr().out
    assert "DIAG-NO-SCALE" in out and "N1" not in out
    assert _check(lambda q, k, v: v, (), ex="t.g7", mistakes=mistakes) is False
    assert "N1" in capsys.readouterr().out  # no known mistake: the staged hint


def test_answers_hard_coded_for_the_visible_cases_fail_the_drawn_one(capsys):
    table = {tuple(_qkv(s)[0].flatten().tolist()): _reference(*_qkv(s)) for s in (1, 2)}
    lookup = lambda q, k, v: table[tuple(q.flatten().tolist())]  # noqa: E731
    X.set_case_seed(7)
    try:
        assert _check(lookup, (), ex="t.g8") is False
        out = capsys.readouterr().out
        assert "seed 7" in out and "visible cases pass" in out
        assert _check(mine, (), ex="t.g8") is True
        assert "all 2 cases pass" in capsys.readouterr().out  # the drawn case does not change the text
    finally:
        X.set_case_seed(None)


def test_the_case_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATTNKIT_CASE_SEED", "1234")
    assert X.case_seed() == (1234, True)
    monkeypatch.delenv("ATTNKIT_CASE_SEED")
    assert X.case_seed()[1] is False
    with pytest.raises(ValueError, match="seed"):
        X.set_case_seed(-1)


@pytest.mark.parametrize("spelling", ["b", "B", "b)", "(b)", "（b）", "Ｂ", "b) columns", "columns", " B. "])
def test_every_reasonable_spelling_of_a_choice_is_accepted(spelling, capsys):
    kw = dict(expected="b", exercise="t.q9", title="Q", explanation="WHY-B", choices={"a": "rows", "b": "columns"})
    assert check_answer(spelling, **kw) is True, capsys.readouterr().out


def test_a_choice_in_the_other_language_is_accepted(capsys):
    ch03 = X.ch03 if hasattr(X, "ch03") else __import__("attnkit.exercises.ch03", fromlist=["x"])
    zh_text = i18n.t("ch03.q1.b", lang="zh")
    assert ch03.check_q1(zh_text) is True, capsys.readouterr().out
    assert ch03.check_q1("b) " + i18n.t("ch03.q1.b", lang="en")) is True


def test_three_choices_never_reveal_the_answer_by_elimination(capsys):
    kw = dict(expected="c", exercise="t.q10", title="Q", explanation="WHY-C",
              choices={"a": "one", "b": "two", "c": "three"})
    assert check_answer("a", **kw) is False and check_answer("b", **kw) is False
    out = capsys.readouterr().out
    assert "WHY-C" not in out and "c) three" not in out


def test_registry_exposes_every_checker_as_data():
    reg = X.registry()
    assert {"ch01.ex1", "ch01.q1", "ch09.ex4", "ch11.ex4"} <= set(reg)
    ex1 = reg["ch01.ex1"]
    cases = ex1.cases(seed=3)
    assert len(cases) == 4 and "seed 3" in cases[-1].label  # three visible, one drawn
    assert torch.equal(ex1.cases(seed=3)[-1].args[0], cases[-1].args[0])  # the same seed, the same case
    def columns(fn):  # exercise 1 has one token per column
        return lambda q, k, v: fn(q.mT, k.mT, v.mT).mT

    for case in cases:  # run on one side, compare on the other
        assert ex1.compare(ex1.prepare(columns(mine))(*case.args), ex1.expected(case)) is None
    no_scale = columns(lambda q, k, v: torch.softmax(q @ k.mT, -1) @ v)
    assert ex1.diagnose(cases[2], no_scale(*cases[2].args)) is not None
    assert "torch.nn.functional.scaled_dot_product_attention" in ex1.forbid
    assert reg["ch01.q1"].question and reg["ch01.q1"].expected_answer == 0.5


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_memory_check_that_cannot_measure_says_so_and_resets_dynamo(lang, monkeypatch, capsys):
    """The meter refusing a higher-order op (as flex_attention under a dispatch mode did): the values
    are checked without it, the feedback says memory was not measured, dynamo is reset."""
    i18n.set_language(lang)

    def meter_refuses(fn, *args):
        raise NotImplementedError("There was no rule registered for HigherOrderOperator flex_attention and mode")
    resets = []
    monkeypatch.setattr(attnkit.flash, "measure_peak_bytes", meter_refuses)
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    measured = X.Measured(mine)
    assert run_checks(measured, X.Measured(_reference), [Case(_qkv(1), label="a")], "T", exercise="t.g9",
                      compare=lambda got, exp: X.compare_tensors(got[0], exp[0])) is True
    out = capsys.readouterr().out
    assert "flex_attention" in out and X.OUTCOMES["t.g9"]["status"] == "passed" and resets
    assert ("cannot measure" in out) if lang == "en" else ("无法测量" in out)
