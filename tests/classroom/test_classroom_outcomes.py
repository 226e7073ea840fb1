"""What grading stands on: the checkers' machine-readable outcome next to their
feedback, the reference-solution detection, the build's notebook metadata and grade-skip tags."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
import torch

import attnkit.exercises as ex
from attnkit.classroom.grading import solution_refs
from attnkit.classroom.originals import records
from attnkit.exercises import OUTCOME_MIME, Case, Measured, run_checks
from attnkit.exercises.ch09 import check_positive_features, solution_positive_features

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build  # noqa: E402

QUICK = ("08", "09", "10")  # the chapters this issue rebuilt; the others follow at their next build


@pytest.mark.parametrize("chapter", QUICK)
@pytest.mark.parametrize("lang", build.LANGS)
def test_every_check_cell_shows_its_feedback_and_carries_the_same_record(chapter, lang):
    src = build.sources([chapter])[0]
    nb = nbformat.read(build.target(src, lang), as_version=4)
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if out.output_type == "display_data" and OUTCOME_MIME in out.data:
                rec = out.data[OUTCOME_MIME]
                assert out.data["text/plain"] == rec["feedback"]  # what the learner reads, and nbval compares
                assert set(rec) == {"exercise", "status", "case", "label", "feedback", "solution"}
                found.append((rec["exercise"], rec["status"], rec["solution"]))
        # no feedback left as plain printed text next to a record
        assert not (records(cell) and any(o.output_type == "stream" and "⏳" in o.text for o in cell.outputs))
    exercises = [e for e, *_ in found]
    assert len(exercises) == len(set(exercises)) >= 5 and all(e.startswith(f"ch{chapter}.") for e in exercises)
    assert all(status == "todo" and not sol for _, status, sol in found)  # the stubs, as committed


def test_outside_a_notebook_the_feedback_is_printed_and_recorded(capsys):
    run_checks(lambda x: x + 1, lambda x: x + 1, [Case((torch.ones(2),), label="one")], title="T",
               exercise="t.cls1")
    assert "✅ T" in capsys.readouterr().out
    assert ex.OUTCOMES["t.cls1"] == {"exercise": "t.cls1", "status": "passed", "case": None, "label": None,
                                     "feedback": ex.OUTCOMES["t.cls1"]["feedback"], "solution": False}
    run_checks(lambda x: x, lambda x: x + 1, [Case((torch.ones(2),), label="two")], title="T", exercise="t.cls2")
    assert ex.OUTCOMES["t.cls2"]["status"] == "failed"
    assert (ex.OUTCOMES["t.cls2"]["case"], ex.OUTCOMES["t.cls2"]["label"]) == (1, "two")


def _own_positive_features(x, w):  # chapter 09's exercise 2: features of the Gaussian kernel
    return torch.exp(x @ w.T - (x * x).sum(1, keepdim=True)) / w.shape[0] ** 0.5


def test_a_reference_solution_is_flagged_however_it_is_handed_in(capsys):
    import attnkit.exercises.ch09 as E

    handed = {
        "itself": solution_positive_features,
        "wrapped": lambda x, w: E.solution_positive_features(x, w),
        "by name": lambda x, w: getattr(E, "solution_" + "positive_features")(x, w),
    }
    for how, fn in handed.items():  # told plainly, and it does not count as passed
        assert not check_positive_features(fn), how
        assert ex.OUTCOMES["ch09.ex2"]["solution"] is True, how
        assert ex.OUTCOMES["ch09.ex2"]["status"] == "solution", how
    assert check_positive_features(_own_positive_features)
    assert ex.OUTCOMES["ch09.ex2"]["solution"] is False
    assert sys.getprofile() is None  # the watch is removed after each call
    # a memory-checked exercise passes Measured(...) wrappers: the solution inside one is seen too
    run_checks(Measured(solution_positive_features), Measured(solution_positive_features),
               [Case(E._feature_case(0, 4, 3, 5))], title="M", exercise="t.cls3",
               compare=lambda got, exp: ex.compare_tensors(got[0], exp[0]))
    assert ex.OUTCOMES["t.cls3"]["solution"] is True and ex.OUTCOMES["t.cls3"]["status"] == "solution"
    capsys.readouterr()


def test_the_grader_sees_reference_solutions_named_in_a_cell():
    assert solution_refs("from attnkit.exercises.ch09 import solution_step as my_step") == {"solution_step"}
    assert solution_refs("from attnkit.exercises.ch09 import *") == {"*"}
    assert solution_refs("import attnkit.exercises.ch09 as E\nf = E.solution_landmarks") == {"solution_landmarks"}
    assert solution_refs("f = getattr(E, 'solution_landmarks')") == {"solution_landmarks"}
    assert solution_refs("from attnkit.exercises.ch09 import check_step\n_ = check_step(my_step)") == set()
    assert solution_refs("def my_step(s):\n    return s  # my own solution\n") == set()


@pytest.mark.parametrize("src", build.sources(), ids=lambda p: p.stem)
def test_built_notebooks_carry_their_chapter_and_language(src):
    for lang in build.LANGS:
        meta = nbformat.read(build.target(src, lang), as_version=4).metadata.get("attnkit", {})
        assert (meta.get("chapter"), meta.get("lang")) == (src.stem[:2], lang), \
            f"{build.target(src, lang).name}: rebuild it (python tools/build.py {src.stem[:2]})"
        assert build.split(src, lang).metadata["attnkit"]["chapter"] == src.stem[:2]


def _nb(*sources, tags=None):
    nb = nbformat.v4.new_notebook()
    for i, s in enumerate(sources):
        c = nbformat.v4.new_code_cell(s)
        if tags and tags.get(i):
            c.metadata["tags"] = tags[i]
        nb.cells.append(c)
    return nb


def test_the_build_tags_grade_skip_only_cells_no_later_cell_needs():
    ign = ["nbval-ignore-output"]
    nb = _nb("import torch", "ms = {n: n for n in range(3)}\nx = 1", "print([n for n in range(2)])",
             "y = 2", "def f(y):\n    return y", "print(f(3))", "names = [1]\nz = 3", "print(names)",
             tags={1: ign, 3: ign, 6: ign})
    build.mark_grade_skip(nb.cells, "t")
    skip = [i for i, c in enumerate(nb.cells) if build.SKIP_TAG in c.metadata.get("tags", [])]
    # 1: n only in comprehensions later; 3: y is f's argument later, not the global; 6: names is read later
    assert skip == [1, 3]
    assert build.needed_later([c.source for c in nb.cells], 6) == {"names"}
    # rebinding before reading frees the name; reading it on the line that rebinds it does not
    assert build.needed_later(["m = 1", "m = 2\nprint(m)"], 0) == set()
    assert build.needed_later(["m = 1", "m = m + 1"], 0) == {"m"}
    bad = _nb("a = 1", "print(a)", tags={0: [build.SKIP_TAG]})
    with pytest.raises(build.SourceError, match=r"tagged grade-skip but later cells need .*\['a'\]"):
        build.mark_grade_skip(bad.cells, "t.py")


@pytest.mark.parametrize("chapter", QUICK)
def test_grade_skip_cells_of_the_built_notebooks_are_widgets_and_timings(chapter):
    src = build.sources([chapter])[0]
    nb = nbformat.read(build.target(src, "en"), as_version=4)
    skip = [c for c in nb.cells if build.SKIP_TAG in c.metadata.get("tags", [])]
    assert skip and all("nbval-ignore-output" in c.metadata["tags"] for c in skip)
