"""Grading a class from the outcome records that its returned notebooks' check cells publish.

Grade a class: execute each returned notebook on a copy, in a fresh kernel, and read the
outcome records its check cells publish (:data:`attnkit.exercises.OUTCOME_MIME`).

Never parses the feedback's prose, never writes to a submission (it is read once, as bytes, and
executed in memory, in a kernel whose working folder is a temporary one). Each notebook gets a
time limit of its own: when it is up, the kernel is killed and the cells run so far count.

Statuses of an exercise: ``passed``, ``failed`` (the checker's first failing case), ``forbidden``
(it calls the built-in it should write), ``solution`` (a reference solution of
``attnkit.exercises`` ran inside the learner's function), ``todo`` (the stub still raises
NotImplementedError: not attempted), ``error`` (the learner's function or the check cell raised,
or the kernel died), ``missing`` (no cell calls the exercise's check function: deleted or
renamed), ``timeout`` (the notebook ran out of time before the check gave its outcome).

Skipping: a code cell whose source equals a cell of the chapter's built notebook tagged
``grade-skip`` (widgets and timings that no later cell needs; see tools/build.py) is not run;
every cell a learner added or changed is. ``skip=False`` runs every cell.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attnkit.classroom.originals import (
    ClassroomError,
    Original,
    chapter_id,
    chapters_dir,
    check_calls,
    load_original,
    records,
)
from attnkit.i18n import LANGUAGES, register, t

register({
    "classroom.problem.unreadable": {"en": "cannot be read ({err})", "zh": "无法读取（{err}）"},
    "classroom.problem.broken_json": {"en": "broken notebook file: not valid JSON ({err})",
                                      "zh": "笔记本文件已损坏：不是有效的 JSON（{err}）"},
    "classroom.problem.not_notebook": {"en": "not a Jupyter notebook ({err})",
                                       "zh": "不是 Jupyter 笔记本（{err}）"},
    "classroom.problem.unknown_chapter": {
        "en": "not a notebook of this course: its metadata names no chapter (expected a copy made by handout)",
        "zh": "不是本课程的笔记本：元数据里没有章节号（应当是 handout 发出的副本）"},
    "classroom.problem.other_chapter": {"en": "a notebook of chapter {got}, not of chapter {want}: not graded",
                                        "zh": "这是第 {got} 章的笔记本，不是第 {want} 章的：未评分"},
    "classroom.problem.no_original": {"en": "{err}", "zh": "{err}"},
    "classroom.problem.crash": {"en": "grading this notebook failed: {err}", "zh": "评分这个笔记本时出错：{err}"},
    "classroom.note.other_lang": {"en": "notebook in {got}, the class's is {want} (graded)",
                                  "zh": "笔记本语言是{got}，班上其他人用的是{want}（已评分）"},
    "classroom.note.timeout": {"en": "stopped after the time limit of {seconds} s (an endless loop?)",
                               "zh": "超过 {seconds} 秒的时间限制，已停止（是不是死循环？）"},
    "classroom.note.kernel_died": {"en": "the kernel died ({err})", "zh": "Jupyter kernel 崩溃了（{err}）"},
    "classroom.note.kernel_failed": {"en": "the kernel could not run the notebook ({err})",
                                     "zh": "Jupyter kernel 无法运行这个笔记本（{err}）"},
    "classroom.note.solution_import": {
        "en": "uses attnkit's reference solutions instead of writing its own: {names}",
        "zh": "直接用了 attnkit 的参考答案，而不是自己写的：{names}"},
    "classroom.err.bad_chapter": {"en": "--chapter: expected a chapter number such as 08, got {got}",
                                  "zh": "--chapter：应为章节号，例如 08，实际是 {got}"},
    "classroom.fb.no_record": {"en": "the cell calling {check} ran but gave no outcome",
                               "zh": "调用 {check} 的单元格运行了，但没有给出结果"},
})

STATUSES = ("passed", "failed", "forbidden", "solution", "todo", "error", "missing", "timeout")

# Run first in every graded kernel: the network is refused (loopback excepted), so a notebook
# cannot download anything while it is graded. The kernel's own sockets are ZMQ's, not Python's.
PRELUDE = """\
import socket as _socket
def _attnkit_offline(connect):
    def guarded(self, address, *args, **kwargs):
        if self.family in (_socket.AF_INET, _socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError("grading runs offline: no network access")
        return connect(self, address, *args, **kwargs)
    return guarded
_socket.socket.connect = _attnkit_offline(_socket.socket.connect)
_socket.socket.connect_ex = _attnkit_offline(_socket.socket.connect_ex)
del _socket, _attnkit_offline
"""


@dataclass
class Result:
    """One learner's notebook: an outcome per exercise, or the problem that kept it ungraded."""

    learner: str
    path: str
    chapter: str | None = None
    lang: str | None = None
    outcomes: dict[str, dict] = field(default_factory=dict)  # exercise -> status, case, label, feedback
    problem: tuple[str, dict] | None = None                  # (i18n key, its fields): not graded
    notes: list[tuple[str, dict]] = field(default_factory=list)
    skipped: int = 0                                          # cells not run (grade-skip, unchanged)

    @property
    def passed(self) -> int:
        return sum(o["status"] == "passed" for o in self.outcomes.values())


@dataclass
class Graded:
    """A graded class: its chapter and language, its exercises (columns) and one result a learner."""

    chapter: str | None
    lang: str | None
    exercises: list[str]
    results: list[Result]
    others: list[str] = field(default_factory=list)  # files in the folders that are not notebooks
    skip: bool = True


def collect(paths: list[str | Path]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(learner label, file) for each submission, and the other files found in the folders.

    A file given by name is a submission whatever its type; in a folder, every ``*.ipynb``
    (outside hidden folders and .ipynb_checkpoints) is one, labelled by its path in the folder
    (by its whole path where two labels would be the same).
    """
    found, others = [], []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if not f.is_file() or any(part.startswith(".") for part in rel.parts) or \
                        ".ipynb_checkpoints" in rel.parts:
                    continue
                if f.suffix == ".ipynb":
                    found.append((rel.with_suffix("").as_posix(), f))
                else:
                    others.append(str(f))
        else:
            found.append((p.stem if p.suffix == ".ipynb" else p.name, p))
    return found, others


def read(label: str, path: Path):
    """(notebook or None, Result with chapter and language, or with the problem found)."""
    import nbformat

    res = Result(learner=label, path=str(path))
    try:
        data = path.read_bytes()
    except OSError as err:
        res.problem = ("classroom.problem.unreadable", {"err": f"{type(err).__name__}: {err}"})
        return None, res
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        key = "broken_json" if path.suffix == ".ipynb" else "not_notebook"
        res.problem = (f"classroom.problem.{key}", {"err": str(err)[:200]})
        return None, res
    if not isinstance(obj, dict) or not isinstance(obj.get("cells"), list):
        res.problem = ("classroom.problem.not_notebook", {"err": f"JSON {type(obj).__name__} without cells"})
        return None, res
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        for cell in nb.cells:
            cell.cell_type, cell.source  # noqa: B018  (every cell has both)
    except Exception as err:  # noqa: BLE001  a malformed notebook is reported, never raised
        res.problem = ("classroom.problem.not_notebook", {"err": f"{type(err).__name__}: {err}"[:200]})
        return None, res
    meta = nb.metadata.get("attnkit", {}) if isinstance(nb.metadata.get("attnkit"), dict) else {}
    res.chapter = (chapter_id(meta.get("chapter", "")) or chapter_id(Path(str(meta.get("source", ""))).stem)
                   or (chapter_id(path.name.split("_")[0]) if re.match(r"\d\d_", path.name) else None))
    res.lang = meta.get("lang") if meta.get("lang") in LANGUAGES else None
    if res.lang is None:
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        m = re.search(r"set_language\(\s*[\"'](\w+)[\"']", code[0]) if code else None
        res.lang = m.group(1) if m and m.group(1) in LANGUAGES else None
    if res.chapter is None:
        res.problem = ("classroom.problem.unknown_chapter", {})
    return nb, res


def solution_refs(source: str) -> set[str]:
    """The reference solutions a cell names: imported from attnkit.exercises, or reached by name."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"\bsolution_\w+", source)) if "attnkit.exercises" in source else set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnkit.exercises"):
            names |= {a.name for a in node.names if a.name.startswith("solution") or a.name == "*"}
        elif isinstance(node, ast.Attribute) and node.attr.startswith("solution_"):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "solution_" in node.value:
            names |= set(re.findall(r"solution_\w+", node.value))
    return names


def _kill(client) -> None:
    """Kill the kernel process of ``client`` (a signal: safe from another thread)."""
    process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
    if process is not None:
        process.kill()


def run(nb, original: Original, timeout: float, skip: bool, threads: int):
    """Execute a copy of ``nb``: (executed copy, cells skipped, timed out, what stopped it early).

    The notebook runs in a thread of its own; if it has not finished after ``timeout`` seconds,
    its kernel is killed (an endless loop stops there) and the cells run so far are kept.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    work = copy.deepcopy(nb)
    skipped = 0
    for cell in work.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if skip and cell.source in original.skip:
                cell.source, skipped = "", skipped + 1
    work.cells.insert(0, nbformat.v4.new_code_cell(PRELUDE))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    if skip:
        env["MPLBACKEND"] = "agg"  # figures are not drawn into the copy: nothing reads them
    stopped: list = []
    with tempfile.TemporaryDirectory(prefix="attnkit-grade-") as tmp:
        # the kernel's own log stays quiet (its "TCP without encryption" warning, once a
        # notebook, drowned the progress lines); what a learner's code raises is in the outputs
        client = NotebookClient(work, timeout=None, kernel_name="python3", allow_errors=True,
                                shutdown_kernel="immediate", record_timing=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                resources={"metadata": {"path": tmp}})

        def execute():
            try:
                client.execute(env=env)
            except DeadKernelError as err:
                stopped.append(("classroom.note.kernel_died", {"err": str(err)[:200]}))
            except Exception as err:  # noqa: BLE001  a kernel that cannot start, say: reported
                stopped.append(("classroom.note.kernel_failed", {"err": f"{type(err).__name__}: {err}"[:200]}))

        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        worker.join(timeout)
        timed_out = worker.is_alive()
        if timed_out:
            _kill(client)
            worker.join(60)
    work.cells.pop(0)
    return work, skipped, timed_out, None if timed_out or not stopped else stopped[0]


def _error_text(cell) -> str:
    return "\n".join(f"{o.get('ename')}: {o.get('evalue')}" for o in cell.get("outputs", [])
                     if o.get("output_type") == "error")


def outcomes(executed, original: Original, timed_out: bool, stopped) -> dict[str, dict]:
    """The outcome of each of the chapter's exercises in an executed notebook."""
    code = [c for c in executed.cells if c.cell_type == "code"]
    found: dict[str, dict] = {}
    for cell in code:
        for rec in records(cell):
            found[rec.get("exercise")] = rec  # the last check of an exercise counts
    out = {}
    for ex in original.exercises:
        rec = found.get(ex)
        if rec is not None:
            status = "solution" if rec.get("solution") else rec.get("status")
            out[ex] = {"status": status if status in STATUSES else "error", "case": rec.get("case"),
                       "label": rec.get("label"), "feedback": str(rec.get("feedback", ""))}
            continue
        fn = original.checks.get(ex)
        cells = [c for c in code if fn and fn in check_calls(c.source)]
        text = "\n".join(filter(None, map(_error_text, cells)))
        if not cells:
            status = "missing"
        elif timed_out and not text:
            status = "timeout"
        else:
            status = "error"
            text = text or (stopped[1].get("err", "") if stopped else t("classroom.fb.no_record", check=fn))
        out[ex] = {"status": status, "case": None, "label": None, "feedback": text}
    return out


def grade_one(nb, res: Result, original: Original, timeout: float, skip: bool, threads: int) -> Result:
    changed = [c.source for c in nb.cells if c.cell_type == "code" and c.source not in original.sources]
    names = sorted(set().union(*map(solution_refs, changed))) if changed else []
    if names:
        res.notes.append(("classroom.note.solution_import", {"names": ", ".join(names)}))
    executed, res.skipped, timed_out, stopped = run(nb, original, timeout, skip, threads)
    res.outcomes = outcomes(executed, original, timed_out, stopped)
    if timed_out:
        res.notes.append(("classroom.note.timeout", {"seconds": int(timeout)}))
    if stopped:
        res.notes.append(stopped)
    return res


def grade(paths: list[str | Path], chapter: str | None = None, timeout: float = 120.0, skip: bool = True,
          jobs: int | None = None, chapters: str | Path | None = None,
          progress: Callable[[int, int, Result], None] | None = None) -> Graded:
    """Grade every submission under ``paths``; never raises for a bad submission (see the doc)."""
    if chapter is not None and chapter_id(chapter) is None:
        raise ClassroomError(t("classroom.err.bad_chapter", got=repr(chapter)))
    root = chapters_dir(chapters)
    files, others = collect(paths)
    seen = Counter(label for label, _ in files)
    files = [(label if seen[label] == 1 else str(path.with_suffix("")), path) for label, path in files]
    read_in = [read(label, path) for label, path in files]
    known = [r for _, r in read_in if r.problem is None]
    want = chapter_id(chapter) if chapter else (Counter(r.chapter for r in known).most_common(1) or [(None,)])[0][0]
    langs = Counter(r.lang for r in known if r.chapter == want and r.lang)
    lang = sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if langs else None
    originals: dict[str, Original] = {}
    todo = []
    for nb, res in read_in:
        if res.problem is not None:
            continue
        if res.chapter != want:
            res.problem = ("classroom.problem.other_chapter", {"got": int(res.chapter), "want": int(want)})
            continue
        nb_lang = res.lang or lang or "en"
        if res.lang and lang and res.lang != lang:
            res.notes.append(("classroom.note.other_lang", {"got": res.lang, "want": lang}))
        try:
            if nb_lang not in originals:
                originals[nb_lang] = load_original(want, nb_lang, root)
        except ClassroomError as err:
            res.problem = ("classroom.problem.no_original", {"err": str(err)})
            continue
        todo.append((nb, res, originals[nb_lang]))
    exercises = next(iter(originals.values())).exercises if originals else []
    if lang in originals:
        exercises = originals[lang].exercises
    jobs = max(1, jobs or min(2, os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    results = [res for _, res in read_in]
    done, lock, n = [0], threading.Lock(), len(results)

    def report(res):
        with lock:
            done[0] += 1
            if progress:
                progress(done[0], n, res)

    for res in results:
        if res.problem is not None:
            report(res)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(grade_one, nb, res, orig, timeout, skip, threads): res for nb, res, orig in todo}
        for fut in as_completed(futures):
            res = futures[fut]
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001  one notebook never stops the class
                res.problem = ("classroom.problem.crash", {"err": f"{type(err).__name__}: {err}"[:200]})
            report(res)
    return Graded(chapter=want, lang=lang, exercises=exercises, results=results, others=others,
                  skip=skip)
