"""The course's built notebooks, which handouts copy and grading compares submissions with.

The built notebooks (``chapters/en/NN_slug.ipynb``, ``chapters/zh/NN_slug.ipynb``) are not part
of the attnkit wheel: they are the course, several megabytes of executed notebooks, and a teacher
hands out and grades chapters from a checkout of it. They are found, in this order, in the folder
given with ``--chapters DIR``, in the folder named by the environment variable
``ATTNKIT_CHAPTERS``, or in the ``chapters/`` folder next to the attnkit package (a checkout,
or ``pip install -e .`` of one).

From a built notebook the grader takes the list of its exercises (every check cell's outcome
record, in order: see :data:`attnkit.exercises.OUTCOME_MIME`), the name of each exercise's check
function (to tell a deleted check cell from one that raised), the source of every code cell (to
tell what a learner changed) and the cells tagged ``grade-skip`` (what grading may skip while
unchanged).
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import attnkit
from attnkit.exercises import OUTCOME_MIME
from attnkit.i18n import LANGUAGES, register, t

SKIP_TAG = "grade-skip"
ENV = "ATTNKIT_CHAPTERS"

register({
    "classroom.err.no_chapters": {
        "en": "the course's built chapters were not found in {where} (expected folders en/ and zh/ "
              "with NN_*.ipynb): pass --chapters DIR, the chapters/ folder of a checkout of the course",
        "zh": "在 {where} 没有找到课程已构建的各章（应有 en/ 和 zh/ 两个文件夹，内含 NN_*.ipynb）："
              "请用 --chapters DIR 指定课程仓库里的 chapters/ 文件夹"},
    "classroom.err.no_chapter": {
        "en": "chapter {chapter} is not in {where}: expected one of {known}",
        "zh": "{where} 里没有第 {chapter} 章：可选的有 {known}"},
    "classroom.err.no_records": {
        "en": "{path} holds no exercise outcome records: rebuild it (python tools/build.py {chapter})",
        "zh": "{path} 里没有练习结果记录：请重新构建它（python tools/build.py {chapter}）"},
})


class ClassroomError(ValueError):
    """A command's input cannot be used (the message says which, what it got, what was expected)."""


def chapters_dir(given: str | Path | None = None) -> Path:
    """The folder holding ``en/`` and ``zh/`` with the built notebooks (see the module doc)."""
    candidates = [Path(given)] if given else (
        [Path(os.environ[ENV])] if os.environ.get(ENV) else [Path(attnkit.__file__).resolve().parents[1] / "chapters"])
    root = candidates[0]
    if not any((root / lang).glob("[0-9][0-9]_*.ipynb") for lang in LANGUAGES if (root / lang).is_dir()):
        raise ClassroomError(t("classroom.err.no_chapters", where=root))
    return root


def known_chapters(root: Path) -> list[str]:
    """The chapter ids ("08") with a built notebook in some language."""
    return sorted({p.name[:2] for lang in LANGUAGES for p in (root / lang).glob("[0-9][0-9]_*.ipynb")})


def chapter_id(text: str) -> str | None:
    """"08", "8", "08_sparse_attention" or "08_sparse_attention.ipynb" -> "08"; else None."""
    m = re.fullmatch(r"(\d{1,2})(?:_[\w-]*)?(?:\.ipynb)?", str(text).strip())
    return f"{int(m.group(1)):02d}" if m else None


def built_path(chapter: str, lang: str, root: Path) -> Path:
    """The built notebook of ``chapter`` ("08") in ``lang``."""
    cid = chapter_id(chapter)
    found = sorted((root / lang).glob(f"{cid}_*.ipynb")) if cid else []
    if not found:
        raise ClassroomError(t("classroom.err.no_chapter", chapter=chapter, where=root / lang,
                               known=", ".join(known_chapters(root)) or "-"))
    return found[0]


@dataclass
class Original:
    """What grading needs from one built notebook."""

    chapter: str
    lang: str
    path: Path
    exercises: list[str] = field(default_factory=list)    # in the order of the notebook
    checks: dict[str, str] = field(default_factory=dict)   # exercise id -> its check function
    sources: set[str] = field(default_factory=set)         # every code cell's source
    skip: set[str] = field(default_factory=set)            # sources of the grade-skip cells
    check_cells: dict[str, str] = field(default_factory=dict)  # check function -> the statements calling it


def check_calls(source: str) -> list[str]:
    """The ``check_*`` functions a cell calls, in the order of the source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return re.findall(r"\b(check_\w+)\s*\(", source)
    calls = [(n.lineno, n.col_offset, n.func.id) for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")]
    return [name for *_, name in sorted(calls)]


def split_checks(source: str) -> tuple[str, str]:
    """(the cell's other statements, its top-level statements that call a ``check_*`` function)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, ""
    lines = source.splitlines()
    rest, checks = [], []
    for node in tree.body:
        text = "\n".join(lines[node.lineno - 1:node.end_lineno])
        (checks if check_calls(text) else rest).append(text)
    return "\n".join(rest), "\n".join(checks)


def records(cell) -> list[dict]:
    """The outcome records a code cell's outputs carry, in order."""
    return [dict(o["data"][OUTCOME_MIME]) for o in cell.get("outputs", [])
            if o.get("output_type") == "display_data" and OUTCOME_MIME in o.get("data", {})]


def load_original(chapter: str, lang: str, root: Path) -> Original:
    import nbformat

    path = built_path(chapter, lang, root)
    nb = nbformat.read(path, as_version=4)
    orig = Original(chapter=chapter_id(chapter), lang=lang, path=path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        orig.sources.add(cell.source)
        if SKIP_TAG in cell.metadata.get("tags", []):
            orig.skip.add(cell.source)
        found = [r["exercise"] for r in records(cell)]
        for ex, fn in zip(found, check_calls(cell.source), strict=False):
            orig.checks[ex] = fn
            orig.check_cells.setdefault(fn, split_checks(cell.source)[1])
        orig.exercises += [ex for ex in found if ex not in orig.exercises]
    if not orig.exercises:
        raise ClassroomError(t("classroom.err.no_records", path=path, chapter=orig.chapter))
    return orig
