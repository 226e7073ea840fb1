"""No exercise's reference solution is a cell of its chapter retyped.

Each ``solution_*`` function of ``attnkit/exercises/chNN.py`` is compared, statement by statement
(as syntax trees, so comments, blank lines and formatting do not matter), with every block of
statements in chapter NN's code cells, at the top level of a cell and inside the functions a cell
defines. A solution whose body (two statements or more, its docstring aside) equals a contiguous
run of statements there is a copy: the exercise would test typing, not understanding.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "chapters" / "src").glob("[0-9][0-9]_*.py"))


def _body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return body


def _dump(stmts: list[ast.stmt]) -> tuple[str, ...]:
    return tuple(ast.dump(s, annotate_fields=False) for s in stmts)


def _blocks(tree: ast.AST):
    """Every list of statements in a cell: its top level and each function body in it."""
    yield list(getattr(tree, "body", []))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield _body(node)


def _contains(block: tuple[str, ...], part: tuple[str, ...]) -> bool:
    n = len(part)
    return any(block[i:i + n] == part for i in range(len(block) - n + 1))


def _values(tree: ast.AST) -> set[str]:
    """Every value a cell assigns, returns or evaluates (for one-line solutions)."""
    return {ast.dump(n.value, annotate_fields=False) for n in ast.walk(tree)
            if isinstance(n, (ast.Assign, ast.AnnAssign, ast.Return, ast.Expr)) and n.value is not None}


def chapter_values(src: Path) -> set[str]:
    out: set[str] = set()
    for cell in jupytext.read(src).cells:
        if cell.cell_type == "code":
            try:
                out |= _values(ast.parse(textwrap.dedent(cell.source)))
            except SyntaxError:
                continue
    return out


def chapter_blocks(src: Path) -> list[tuple[str, ...]]:
    nb = jupytext.read(src)
    blocks = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(textwrap.dedent(cell.source))
        except SyntaxError:  # IPython magics: not Python, never a solution
            continue
        blocks += [_dump(b) for b in _blocks(tree)]
    return blocks


def solutions(chapter: str):
    try:
        mod = importlib.import_module(f"attnkit.exercises.ch{chapter}")
    except ModuleNotFoundError:
        return []
    tree = ast.parse(inspect.getsource(mod))
    return [(f.name, _dump(_body(f)), _body(f)) for f in tree.body
            if isinstance(f, ast.FunctionDef) and f.name.startswith("solution")]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_no_solution_is_a_chapter_cell_retyped(src):
    chapter = src.name[:2]
    sols = solutions(chapter)
    assert sols or chapter == "11", f"chapter {chapter} has no solutions to compare"
    blocks = chapter_blocks(src)
    values = chapter_values(src)
    copies = [name for name, body, _ in sols if len(body) >= 2 and any(_contains(b, body) for b in blocks)]
    # a one-line solution: its returned expression computed by a cell is a copy too
    copies += [name for name, body, stmts in sols if len(body) == 1 and isinstance(stmts[0], ast.Return)
               and stmts[0].value is not None
               and ast.dump(stmts[0].value, annotate_fields=False) in values]
    assert not copies, f"chapter {chapter}: these solutions repeat a chapter cell: {copies}"


def test_the_comparison_finds_a_copy():
    """It can fail: a solution pasted into a cell, reformatted and commented, is found."""
    sol = ast.parse("def solution_x(q, k):\n    s = q @ k.T\n    return s.softmax(-1)\n").body[0]
    cell = ast.parse("import torch\n\ndef mine(q, k):\n    s = q @ k.T   # scores\n\n    return s.softmax(-1)\n")
    assert any(_contains(_dump(b), _dump(_body(sol))) for b in _blocks(cell))
    other = ast.parse("def mine(q, k):\n    s = q @ k.T\n    return s.softmax(-2)\n")
    assert not any(_contains(_dump(b), _dump(_body(sol))) for b in _blocks(other))
