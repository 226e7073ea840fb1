"""Hints chosen by diagnosis: every exercise's named mistakes, handed in as a learner's
answer, get that mistake's hint (not the staged nudge), in both languages; and each mistake is a
real wrong answer (its result differs from the solution's on some visible case)."""

import pytest

from attnkit import exercises as X
from attnkit.i18n import set_language

REGISTRY = X.registry()
MISTAKES = [(ex_id, i) for ex_id, ex in sorted(REGISTRY.items()) for i in range(len(ex.mistakes))]


def _as_learner(ex, wrong):
    """A mistake as a learner would write it: for a measured exercise, the value alone; a trained
    module's mistake (chapter 01's stretch) is handed in as its class."""
    if hasattr(wrong, "as_learner"):
        return wrong.as_learner
    if isinstance(ex.prepare(wrong), X.Measured):
        return lambda *a, **k: wrong(*a, **k)[0]
    return wrong


def test_every_code_exercise_with_cases_diagnoses_some_mistakes():
    without = [ex_id for ex_id, ex in REGISTRY.items()
               if not ex.question and not ex.mistakes]
    assert not without, f"exercises without diagnosed mistakes: {without}"
    two = [ex_id for ex_id, ex in REGISTRY.items() if ex.mistakes and len(ex.mistakes) < 2]
    assert not two, f"exercises with a single diagnosed mistake: {two}"


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("ex_id", "i"), MISTAKES, ids=[f"{e}-{i}" for e, i in MISTAKES])
def test_a_named_mistake_gets_its_hint(ex_id, i, lang, capsys):
    set_language(lang)
    ex = REGISTRY[ex_id]
    wrong, hint = ex.mistakes[i]
    X._STAGE.pop(ex_id, None)
    X.set_case_seed(0)
    try:
        assert ex.check(_as_learner(ex, wrong)) is False
    finally:
        X.set_case_seed(None)
    out = capsys.readouterr().out
    assert X.OUTCOMES[ex_id]["status"] == "failed", out
    assert hint() in out, out
