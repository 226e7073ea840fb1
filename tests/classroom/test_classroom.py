"""The classroom: a small class built from chapter 09's own notebooks, graded once
(module fixture) and read by several tests; handouts; the report in both languages.

The class: solved (the reference solutions' source written into the stub cells, renamed, not
imported), half solved (one wrong), untouched, a deleted check cell, an endless loop, a kernel
that dies, one importing the reference solutions, a Chinese notebook in an English class, a
notebook of chapter 08, a broken file and a file that is not a notebook.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import os
import re
import shutil
import sys
import types
from pathlib import Path

import nbformat
import pytest

from attnkit.classroom import csv_rows, grade, handout, html_report
from attnkit.classroom.__main__ import main
from attnkit.classroom.originals import ClassroomError, built_path, chapters_dir, load_original
from attnkit.i18n import set_language

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "09"
TIMEOUT = int(os.environ.get("ATTNKIT_GRADE_TIMEOUT", "45"))  # per notebook: a chapter-09 notebook takes about 8 s on a quiet machine


# ---- making submissions from the built notebooks ----

def built(chapter=CHAPTER, lang="en"):
    return nbformat.read(built_path(chapter, lang, chapters_dir()), as_version=4)


def _check_cells(nb, chapter=CHAPTER, lang="en"):
    """exercise id -> (index of the cell that calls its check, the name it passes to the check)."""
    orig = load_original(chapter, lang, chapters_dir())
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
                for ex, fn in orig.checks.items():
                    if node.func.id == fn and isinstance(node.args[0], ast.Name):
                        found[ex] = (i, node.args[0].id)
    return found


def _module(chapter=CHAPTER):
    return importlib.import_module(f"attnkit.exercises.ch{chapter}")


def _checker_call(check_fn):
    """The run_checks / check_answer call inside a checker: (its solution's name, expected answer)."""
    for node in ast.walk(ast.parse(inspect.getsource(check_fn))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_checks":
            return next(n.id for n in ast.walk(node.args[1])
                        if isinstance(n, ast.Name) and n.id.startswith("solution")), None
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_answer":
            return None, ast.literal_eval(node.args[1])
    raise AssertionError(f"no run_checks/check_answer call in {check_fn.__name__}")


def solution_source(name: str, as_name: str, chapter=CHAPTER) -> str:
    """The source of reference solution ``name`` renamed ``as_name``, with the module-level helpers
    and imports it needs, so it runs in a notebook without importing attnkit.exercises."""
    mod = _module(chapter)
    imports, helpers, seen = [], [], set()

    def need(fn):
        for node in ast.walk(ast.parse(inspect.getsource(fn))):
            if isinstance(node, ast.Name) and node.id not in seen and node.id in vars(mod):
                seen.add(node.id)
                value = vars(mod)[node.id]
                if isinstance(value, types.ModuleType):
                    imports.append(f"import {value.__name__} as {node.id}")
                elif inspect.isfunction(value) and value.__module__ == mod.__name__ and value is not fn:
                    need(value)
                    helpers.append(inspect.getsource(value))

    fn = vars(mod)[name]
    need(fn)
    own = re.sub(rf"\bdef {name}\(", f"def {as_name}(", inspect.getsource(fn), count=1)
    return "\n".join(imports) + "\n\n" + "\n\n".join(helpers + [own])


def honest_source(ex: str, as_name: str) -> str:
    """An honest answer to exercise ``ex`` (tests/exercises/honest_answers.py, written independently
    of the reference solution, which the checker now tells apart from a copy) renamed ``as_name``,
    with the helpers and imports it needs."""
    if str(ROOT / "tests" / "exercises") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / "exercises"))
    import honest_answers as H

    fn = H.HONEST[ex]
    helpers, seen = [], set()

    def need(f):
        for node in ast.walk(ast.parse(inspect.getsource(f))):
            if isinstance(node, ast.Name) and node.id not in seen and inspect.isfunction(vars(H).get(node.id)) \
                    and vars(H)[node.id] is not f:
                seen.add(node.id)
                need(vars(H)[node.id])
                helpers.append(inspect.getsource(vars(H)[node.id]))

    need(fn)
    own = re.sub(rf"\bdef {fn.__name__}\(", f"def {as_name}(", inspect.getsource(fn), count=1)
    imports = "import math\n\nimport torch\nimport torch.nn.functional as F\n"
    return imports + "\n\n" + "\n\n".join(helpers + [own])


def _replace_def(source: str, fn_name: str, new: str) -> str:
    """``source`` with the top-level ``def fn_name`` replaced by ``new``."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == fn_name)
    lines = source.split("\n")
    return "\n".join(lines[:node.lineno - 1] + new.rstrip("\n").split("\n") + lines[node.end_lineno:])


def answer(nb, ex, how, chapter=CHAPTER, lang="en"):
    """Write an answer into exercise ``ex``: "solve", "wrong", "loop" or "import" (the solution)."""
    index, arg = _check_cells(nb, chapter, lang)[ex]
    cell = nb.cells[index]
    check = getattr(_module(chapter), load_original(chapter, lang, chapters_dir()).checks[ex])
    solution, expected = _checker_call(check)
    if solution is None:  # a question: my_answer = None
        value = expected if how == "solve" else ("z" if isinstance(expected, str) else -12345)
        cell.source = cell.source.replace(f"{arg} = None", f"{arg} = {value!r}", 1)
        return
    stub = next(c for c in nb.cells if c.cell_type == "code" and f"def {arg}(" in c.source)
    params = next(n for n in ast.parse(stub.source).body if isinstance(n, ast.FunctionDef) and n.name == arg)
    head = f"def {arg}({ast.unparse(params.args)}):\n"
    new = {"solve": lambda: honest_source(ex, arg),
           "wrong": lambda: head + "    return None\n",
           "loop": lambda: head + "    import time\n\n    while True:  # sleeps, so the test does not also burn a core\n        time.sleep(0.05)\n",
           "import": lambda: f"from attnkit.exercises.ch{chapter} import {solution} as {arg}\n"}[how]()
    stub.source = _replace_def(stub.source, arg, new)


def write(nb, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


def make_class(folder: Path) -> dict[str, dict]:
    """Write the class into ``folder``; return learner -> {exercise: expected status} (or a problem)."""
    folder.mkdir(parents=True, exist_ok=True)
    exercises = load_original(CHAPTER, "en", chapters_dir()).exercises
    expect = {}

    nb = built()
    for ex in exercises:
        answer(nb, ex, "solve")
    write(nb, folder / "solved.ipynb")
    expect["solved"] = dict.fromkeys(exercises, "passed")
    solved_bytes = (folder / "solved.ipynb").read_bytes()

    nb = built()
    code_ex = [ex for ex in exercises if ".ex" in ex]
    answer(nb, code_ex[0], "solve")
    answer(nb, code_ex[1], "wrong")
    q = next(ex for ex in exercises if ".q" in ex)
    answer(nb, q, "solve")
    skip = load_original(CHAPTER, "en", chapters_dir()).skip
    next(c for c in nb.cells if c.cell_type == "code" and c.source in skip).source += "\nprint('mine')"
    write(nb, folder / "half.ipynb")
    expect["half"] = {ex: {code_ex[0]: "passed", code_ex[1]: "failed", q: "passed"}.get(ex, "todo")
                      for ex in exercises}

    handout([CHAPTER], "en", folder / "handed_out", say=lambda _: None)  # what a learner gets
    shutil.move(folder / "handed_out" / built_path(CHAPTER, "en", chapters_dir()).name, folder / "untouched.ipynb")
    shutil.rmtree(folder / "handed_out")
    expect["untouched"] = dict.fromkeys(exercises, "todo")

    nb = built()
    for ex in exercises:
        answer(nb, ex, "solve")
    gone = code_ex[2]
    del nb.cells[_check_cells(nb)[gone][0]]
    write(nb, folder / "deleted_check.ipynb")
    expect["deleted_check"] = {ex: "missing" if ex == gone else "passed" for ex in exercises}

    nb = built()
    answer(nb, code_ex[1], "loop")
    write(nb, folder / "endless_loop.ipynb")
    at = exercises.index(code_ex[1])
    expect["endless_loop"] = {ex: "todo" if exercises.index(ex) < at else "timeout" for ex in exercises}

    nb = built()
    answer(nb, code_ex[0], "solve")
    died_at = _check_cells(nb)[code_ex[0]][0] + 1
    nb.cells.insert(died_at, nbformat.v4.new_code_cell("import os\nos._exit(3)"))
    write(nb, folder / "kernel_dies.ipynb")
    first = exercises.index(code_ex[0])
    expect["kernel_dies"] = {ex: ("passed" if ex == code_ex[0] else "todo") if exercises.index(ex) <= first
                             else "error" for ex in exercises}

    nb = built()
    answer(nb, code_ex[0], "import")
    stub = next(c for c in nb.cells if c.cell_type == "code" and f"def {_check_cells(nb)[code_ex[1]][1]}(" in c.source)
    arg = _check_cells(nb)[code_ex[1]][1]
    solution = _checker_call(getattr(_module(), load_original(CHAPTER, "en", chapters_dir()).checks[code_ex[1]]))[0]
    params = next(n for n in ast.parse(stub.source).body if isinstance(n, ast.FunctionDef) and n.name == arg)
    stub.source = _replace_def(stub.source, arg, f"import attnkit.exercises.ch{CHAPTER} as E\n\n\n"
                                                 f"def {arg}({ast.unparse(params.args)}):\n"
                                                 f"    return E.{solution}({ast.unparse(params.args)})\n")
    write(nb, folder / "imports_solution.ipynb")
    expect["imports_solution"] = {ex: "solution" if ex in code_ex[:2] else "todo" for ex in exercises}

    write(built(lang="zh"), folder / "chinese.ipynb")
    expect["chinese"] = dict.fromkeys(exercises, "todo")

    write(built("08"), folder / "other_chapter.ipynb")
    expect["other_chapter"] = "classroom.problem.other_chapter"

    (folder / "broken.ipynb").write_bytes(solved_bytes[: len(solved_bytes) // 2])
    expect["broken"] = "classroom.problem.broken_json"
    (folder / "notes.txt").write_text("my answers are in my head\n")
    return expect


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("returned")
    expect = make_class(folder)
    essay = folder.parent / "essay.docx"
    essay.write_bytes(b"PK\x03\x04 not a notebook")
    before = snapshot(folder.parent)
    lines = []
    g = grade([folder, essay], timeout=TIMEOUT, jobs=2, progress=lambda k, n, r: lines.append((k, n, r.learner)))
    expect["essay.docx"] = "classroom.problem.not_notebook"
    return {"graded": g, "expect": expect, "before": before, "folder": folder, "progress": lines}


# ---- the graded class ----

def table(g):
    return {r.learner: r.problem[0] if r.problem else {ex: o["status"] for ex, o in r.outcomes.items()}
            for r in g.results}


def test_the_report_table_is_what_each_learner_should_get(graded_class):
    g = graded_class["graded"]
    assert g.chapter == CHAPTER and g.lang == "en"
    assert g.exercises == load_original(CHAPTER, "en", chapters_dir()).exercises
    assert table(g) == graded_class["expect"]


def test_the_submissions_are_never_modified(graded_class):
    folder = graded_class["folder"]
    assert snapshot(folder.parent) == graded_class["before"]


def test_failures_carry_the_first_failing_case_and_the_feedback_the_learner_saw(graded_class):
    res = {r.learner: r for r in graded_class["graded"].results}
    failed = next(o for o in res["half"].outcomes.values() if o["status"] == "failed")
    assert failed["case"] == 1 and failed["label"] and "❌" in failed["feedback"]
    died = [o for o in res["kernel_dies"].outcomes.values() if o["status"] == "error"]
    assert died and any(k == "classroom.note.kernel_died" for k, _ in res["kernel_dies"].notes)
    assert any(k == "classroom.note.timeout" for k, _ in res["endless_loop"].notes)
    notes = dict(res["imports_solution"].notes)
    assert "solution_" in notes["classroom.note.solution_import"]["names"]
    assert dict(res["chinese"].notes)["classroom.note.other_lang"] == {"got": "zh", "want": "en"}
    assert res["other_chapter"].problem[1] == {"got": 8, "want": int(CHAPTER)}
    assert graded_class["graded"].others == [str(graded_class["folder"] / "notes.txt")]


def test_progress_is_reported_for_every_submission(graded_class):
    lines = graded_class["progress"]
    n = len(graded_class["graded"].results)
    assert [k for k, _, _ in lines] == list(range(1, n + 1)) and all(m == n for _, m, _ in lines)
    assert sorted(name for *_, name in lines) == sorted(r.learner for r in graded_class["graded"].results)


def test_grade_skip_cells_were_skipped_and_skipping_changes_no_outcome(graded_class):
    g = graded_class["graded"]
    res = {r.learner: r for r in g.results}
    skip = load_original(CHAPTER, "en", chapters_dir()).skip
    assert skip and res["solved"].skipped == len(skip)
    assert res["half"].skipped == len(skip) - 1  # the grade-skip cell this learner changed ran
    folder = graded_class["folder"]
    names = ["solved", "half"]  # half changed a grade-skip cell
    full = grade([folder / f"{n}.ipynb" for n in names], timeout=TIMEOUT, skip=False, jobs=2)
    assert all(r.skipped == 0 for r in full.results)
    assert {r.learner: r.outcomes for r in full.results} == {n: res[n].outcomes for n in names}


def _statuses_in_html(text: str) -> dict[str, list[str]]:
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", text, flags=re.S):
        name = re.search(r'<td title="[^"]*">([^<]*)</td>', row)
        if name:
            rows[name.group(1)] = re.findall(r'data-status="(\w+)"', row)
    return rows


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_html_report_in_both_languages_opens_offline(graded_class, lang):
    g = graded_class["graded"]
    text = html_report(g, lang)
    assert not re.search(r"<script|<link|<img|@import|url\(|src=|href=", text, flags=re.I)
    assert [u for u in re.findall(r"https?://[^\s\"'<>]+", text) if u != "http://www.w3.org/2000/svg"] == []
    expect = graded_class["expect"]
    graded = {name: list(v.values()) for name, v in expect.items() if isinstance(v, dict)}
    assert _statuses_in_html(text) == graded
    assert text.count("<details>") == sum(s in ("failed", "forbidden", "error", "solution") and bool(o["feedback"])
                                          for r in g.results for s, o in ((o["status"], o) for o in r.outcomes.values()))
    bars = re.findall(r'class="bar" data-exercise="([^"]+)" x="\d+" y="\d+" width="([\d.]+)"', text)
    solved = {ex: sum(isinstance(v, dict) and v[ex] == "passed" for v in expect.values()) for ex in g.exercises}
    n = len(graded)
    assert [(ex, round(float(w) / 320 * n)) for ex, w in bars] == list(solved.items())
    chinese = re.search(r"[\u4e00-\u9fff]", text)
    assert (chinese is not None) == (lang == "zh")
    assert ("第 9 章" in text) == (lang == "zh")
    assert "第 08 章" not in text and "chapter 08" not in text  # chapter numbers without a leading zero
    assert {"en": "notebook in Chinese, the class&#x27;s is English", "zh": "笔记本语言是中文，班上其他人用的是英文"}[lang] in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_csv_has_one_row_per_learner_and_a_column_per_exercise(graded_class, lang):
    g = graded_class["graded"]
    rows = csv_rows(g, lang)
    assert rows[0][4:4 + len(g.exercises)] == g.exercises and len(rows) == len(g.results) + 1
    by_name = {row[0]: row for row in rows[1:]}
    from attnkit.classroom.report import status_label
    for name, want in graded_class["expect"].items():
        if isinstance(want, dict):
            assert by_name[name][4:4 + len(want)] == [status_label(s, lang) for s in want.values()]
            assert by_name[name][4 + len(want)] == str(list(want.values()).count("passed"))


def test_the_command_line_grades_and_writes_both_files(graded_class, tmp_path, capsys):
    folder = graded_class["folder"]
    out, sheet = tmp_path / "report.html", tmp_path / "report.csv"
    # two quick submissions: a broken file and a notebook of another chapter (no kernel needed)
    assert main(["grade", str(folder / "broken.ipynb"), str(folder / "other_chapter.ipynb"), "--chapter", "9",
                 "--out", str(out), "--csv", str(sheet), "--lang", "zh"]) == 0
    printed = capsys.readouterr().out
    assert "1 / 2" in printed and "2 / 2" in printed and "共 2 份作业" in printed
    assert "不是有效的 JSON" in out.read_text(encoding="utf-8") and sheet.read_bytes().startswith(b"\xef\xbb\xbf")
    assert main(["grade", str(folder), "--out", str(out), "--chapter", "eight"]) == 2
    assert "--chapter" in capsys.readouterr().err
    before = (folder / "broken.ipynb").read_bytes()
    assert main(["grade", str(folder / "broken.ipynb"), "--out", str(folder / "broken.ipynb")]) == 2
    assert "--out" in capsys.readouterr().err and (folder / "broken.ipynb").read_bytes() == before


def test_learners_who_return_files_of_the_same_name_stay_apart(tmp_path):
    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "09_linear_attention.ipynb").write_text('{"cells": [')
    g = grade([tmp_path / "alice", tmp_path / "bob"])
    assert {r.learner: r.problem[0] for r in g.results} == {
        str(tmp_path / who / "09_linear_attention"): "classroom.problem.broken_json" for who in ("alice", "bob")}
    assert table(grade([tmp_path])) == {f"{who}/09_linear_attention": "classroom.problem.broken_json"
                                        for who in ("alice", "bob")}


def test_the_grader_says_where_it_looked_for_the_chapters(tmp_path):
    with pytest.raises(ClassroomError, match="--chapters DIR"):
        grade([tmp_path], chapters=tmp_path / "nowhere")


# ---- handouts ----

def test_handout_writes_cleared_learner_copies_and_a_readme_in_their_language(tmp_path, capsys):
    set_language("en")  # the messages' language; the notebooks and README are in --lang
    out = tmp_path / "handout"
    assert main(["handout", "08", "9", "--lang", "zh", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["08_sparse_attention.ipynb", "09_linear_attention.ipynb", "README.md"]
    for name in names[:2]:
        nb = nbformat.read(out / name, as_version=4)
        assert nb.metadata["attnkit"]["lang"] == "zh" and nb.metadata["attnkit"]["chapter"] == name[:2]
        assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
        assert [c.source for c in nb.cells] == [c.source for c in built(name[:2], "zh").cells]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "09_linear_attention.ipynb" in readme and "练习" in readme and "Exercise" not in readme
    # a learner starts working; handing out again keeps their work and says so
    mine = out / "09_linear_attention.ipynb"
    nb = nbformat.read(mine, as_version=4)
    nb.cells[-1].source += "\n# my notes"
    nbformat.write(nb, mine)
    edited = mine.read_bytes()
    capsys.readouterr()
    assert main(["handout", "08", "09", "--lang", "zh", "--out", str(out)]) == 1
    said = capsys.readouterr()
    assert mine.read_bytes() == edited and f"kept {mine}" in said.out and "1 file(s) kept" in said.err
    assert "08_sparse_attention.ipynb" in said.out  # unchanged: left as it is


def test_handout_rejects_an_unknown_chapter_or_language(tmp_path):
    set_language("en")
    with pytest.raises(ClassroomError, match=r"CHAPTER: expected a chapter number such as 08 \(known: 01, .*got '42'"):
        handout(["42"], "en", tmp_path)
    with pytest.raises(ClassroomError, match="--lang: expected one of en, zh, got 'fr'"):
        handout(["08"], "fr", tmp_path)
    assert list(tmp_path.iterdir()) == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
