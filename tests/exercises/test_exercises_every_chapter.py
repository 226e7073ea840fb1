"""Every chapter has at least one conceptual question and one stretch exercise, and its notebook
runs their checkers: found from the exercise modules themselves, so a new chapter
without them fails here."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from attnkit.i18n import catalog

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "chapters" / "src").glob("[0-9][0-9]_*.py"))


def _checkers(nn: str) -> dict[str, str]:
    """check function name -> the kind of check it runs ('question' or the exercise id)."""
    tree = ast.parse((ROOT / "attnkit" / "exercises" / f"ch{nn}.py").read_text())
    kinds = {}
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("check_")):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_answer":
                kinds[fn.name] = "question"
            for kw in getattr(node, "keywords", []):
                if kw.arg == "exercise" and isinstance(kw.value, ast.Constant):
                    kinds.setdefault(fn.name, kw.value.value)
    return kinds


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_chapter_has_a_question_and_a_stretch_exercise_that_its_notebook_checks(src):
    nn = src.stem[:2]
    importlib.import_module(f"attnkit.exercises.ch{nn}")  # registers its texts
    texts = catalog()
    called = set(re.findall(r"\b(check_\w+)\(", src.read_text()))
    kinds = {name: kind for name, kind in _checkers(nn).items() if name in called}
    assert "question" in kinds.values(), f"chapter {nn} calls no check_answer question"
    stretch = [kind for kind in kinds.values()
               if kind != "question" and "stretch" in texts.get(f"{kind}.title", {}).get("en", "").lower()]
    assert stretch, f"chapter {nn} checks no exercise titled 'stretch'"
    for ex in stretch:
        assert "挑战题" in texts[f"{ex}.title"]["zh"], ex
