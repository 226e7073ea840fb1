"""Grading a class from the outcome records that its returned notebooks' check cells publish.

Grade a class: execute each returned notebook on a copy, in a fresh kernel in a sandbox of its
own (:mod:`attnkit.classroom.isolation`), its check statements restored from the handout
(:func:`restore`), and read the outcome records those restored cells publish
(:data:`attnkit.exercises.OUTCOME_MIME`); a record any other cell displays is ignored.

Never parses the feedback's prose, never writes to a submission (it is read once, as bytes, and
executed in memory, in a kernel whose working folder is a temporary one; its sha256 is checked
again after the run). Each notebook gets a time limit of its own: when it is up, the kernel is
killed and the cells run so far count. A learner's changed cells are scanned for code that
reaches for the grading itself (:func:`attnkit.classroom.safety.tampering`): their passes become
``tampered`` (not credited), with the lines as evidence.

Statuses of an exercise: ``passed``, ``failed`` (the checker's first failing case), ``forbidden``
(it calls the built-in it should write), ``solution`` (a reference solution of
``attnkit.exercises`` ran inside the learner's function), ``todo`` (the stub still raises
NotImplementedError: not attempted), ``error`` (the learner's function or the check cell raised,
or the kernel died), ``missing`` (no cell calls the exercise's check function: deleted or
renamed), ``timeout`` (the notebook ran out of time before the check gave its outcome),
``tampered`` (passed, but not credited: see above).

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
import secrets
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attnkit.classroom import crosscheck, isolation, safety
from attnkit.classroom.originals import (
    ClassroomError,
    Original,
    chapter_id,
    chapters_dir,
    check_calls,
    load_original,
    records,
    split_checks,
)
from attnkit.i18n import LANGUAGES, register, t

register({
    "classroom.note.disagree": {
        "en": "the check cell and the grader's own comparison disagree on {exercises}: not credited (tampering evidence)",
        "zh": "检查单元格和评分程序自己的比较在 {exercises} 上结论不同：不计分（篡改的证据）"},
    "classroom.note.no_crosscheck": {
        "en": "the grader's own comparison is not available for this chapter ({err}): the check cells alone decide",
        "zh": "这一章无法使用评分程序自己的比较（{err}）：只按检查单元格的结果评分"},
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
    "classroom.err.bad_seed": {"en": "--seed: expected a whole number from 0 to 2**31 - 1, got {got}",
                               "zh": "--seed：应为 0 到 2**31 - 1 之间的整数，实际是 {got}"},
    "classroom.err.bad_chapter": {"en": "--chapter: expected a chapter number such as 08, got {got}",
                                  "zh": "--chapter：应为章节号，例如 08，实际是 {got}"},
    "classroom.note.restored": {"en": "check cell(s) changed by the learner, restored from the handout before running: {cells}",
                                "zh": "学员改动过的检查单元格已在运行前按发出的版本恢复：{cells}"},
    "classroom.note.tampered": {
        "en": "passes not credited: code that reaches for the grading itself (checkers, comparisons, records, "
              "other processes or files): {evidence}",
        "zh": "通过的题不计分：代码试图干预评分本身（检查函数、比较、结果记录、其他进程或文件）：{evidence}"},
    "classroom.note.submission_changed": {"en": "the submission file changed during the run (graded: the copy read before)",
                                          "zh": "评分过程中这份作业文件被改动了（按运行前读入的副本评分）"},
    "classroom.note.course_changed": {"en": "the installed course changed during the run: {files}; regrade",
                                      "zh": "评分过程中已安装的课程代码被改动了：{files}；请重新评分"},
    "classroom.note.feedback_cut": {"en": "[cut at 64 KiB]", "zh": "［超过 64 KiB，已截断］"},
    "classroom.note.limits": {"en": "the kernel hit a limit (memory {memory} MiB, CPU time {cpu} s)?",
                              "zh": "kernel 可能触到了限制（内存 {memory} MiB，CPU 时间 {cpu} 秒）？"},
    "classroom.fb.no_record": {"en": "the cell calling {check} ran but gave no outcome",
                               "zh": "调用 {check} 的单元格运行了，但没有给出结果"},
})

STATUSES = ("passed", "failed", "forbidden", "solution", "todo", "error", "missing", "timeout", "tampered")
CASES = "@ATTNKIT_CASES@/"  # in a probe cell: the folder run() writes the cases into
MEMORY = 8 << 30  # RLIMIT_AS of a kernel, bytes (torch maps about 2 GiB of address space at import)

# Run first in every graded kernel: the network is refused (loopback excepted), so a notebook
# cannot download anything while it is graded. The kernel's own sockets are ZMQ's, not Python's.
PRELUDE = """\
import socket as _socket
def _attnkit_offline(connect, _socket=_socket):  # the closure keeps the module: the name is deleted below
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
    sha256: str = ""                                          # of the submission's bytes, as graded
    isolation: str = ""                                       # the sandbox it ran in (isolation.label)

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
    folders: list[Path] = field(default_factory=list)  # the submissions' folders: never written into
    audit: dict = field(default_factory=dict)          # versions and hashes: what a regrade must match


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
                    found.append((safety.shown(rel.with_suffix("").as_posix()), f))
                else:
                    others.append(safety.shown(str(f)))
        else:
            found.append((safety.shown(p.stem if p.suffix == ".ipynb" else p.name), p))
    return found, others


def read(label: str, path: Path):
    """(notebook or None, Result with chapter and language, or with the problem found)."""
    import nbformat

    res = Result(learner=label, path=safety.shown(str(path)))
    try:
        data = path.read_bytes()
    except OSError as err:
        res.problem = ("classroom.problem.unreadable", {"err": safety.shown(f"{type(err).__name__}: {err}")})
        return None, res
    res.sha256 = safety.digest(data)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        key = "broken_json" if path.suffix == ".ipynb" else "not_notebook"
        res.problem = (f"classroom.problem.{key}", {"err": str(err)[:200]})
        return None, res
    if not isinstance(obj, dict) or not isinstance(obj.get("cells", obj.get("worksheets")), list):
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


def restore(nb, original: Original, probes: dict | None = None) -> tuple[object, list[int]]:
    """A copy of ``nb`` whose check statements are the handout's, each in a cell of its own.

    Every code cell that calls one of the chapter's check functions is split in two: the
    learner's other statements, then a cell holding the built notebook's statements that call
    those check functions (only such cells' records count: :func:`outcomes`), then, for each
    exercise in ``probes`` ({exercise: crosscheck.Spec}) checked there, the grader's probe cell
    (:func:`attnkit.classroom.crosscheck.probe_cell`; its cases file is written by :func:`run`).
    (copy, the numbers of the learner's code cells whose check statements differed, counting from 1).
    """
    import nbformat

    work = copy.deepcopy(nb)
    by_check = {fn: [ex for ex, f in original.checks.items() if f == fn] for fn in original.check_cells}
    cells, restored, k = [], [], 0
    for cell in work.cells:
        cell.metadata.pop(crosscheck.META, None)  # only the grader's own cells carry it
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        k += 1
        fns = [fn for fn in dict.fromkeys(check_calls(cell.source)) if fn in original.check_cells]
        if not fns:
            cells.append(cell)
            continue
        rest, mine = split_checks(cell.source)
        theirs = "\n".join(dict.fromkeys(original.check_cells[fn] for fn in fns))
        if mine != theirs:
            restored.append(k)
        cell.source = rest
        cells += [cell, nbformat.v4.new_code_cell(theirs)]
        for fn in fns:
            arg = crosscheck.argument(original.check_cells[fn], fn)
            for ex in by_check.get(fn, []):
                if probes and ex in probes and arg:
                    cells.append(crosscheck.probe_cell(ex, arg, probes[ex].how, CASES + ex + ".json"))
    work.cells = cells
    return work, restored


def _kernel_manager(wrap, **kwargs):
    """An AsyncKernelManager (what NotebookClient makes by default) whose kernel command is
    ``wrap(command)``: the sandbox around the kernel."""
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return wrap(super().format_kernel_cmd(extra_arguments))

    return SandboxedKernelManager(**kwargs)


def run(nb, original: Original, timeout: float, skip: bool, threads: int, hide_from=(), memory: int = MEMORY,
        probes: dict | None = None, seed: int | None = None, uid: int | None = None):
    """Execute a copy of ``nb`` in a sandbox (:mod:`attnkit.classroom.isolation`): (executed copy,
    cells skipped, timed out, what stopped it early, the isolation's label).

    The notebook runs in a thread of its own; if it has not finished after ``timeout`` seconds,
    its kernel is killed (an endless loop stops there) and the cells run so far are kept. Its
    check cells must already be the handout's (:func:`restore`). ``probes``: the grader's cases
    ({exercise: crosscheck.Spec}), written where the probe cells read them; ``seed``: the kernel's
    case seed (ATTNKIT_CASE_SEED); ``uid``: the unprivileged user the kernel runs as (root only).
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
    mode, prefix = isolation.probe()
    if mode == "none":  # an accident guard only: the learner's own code can undo it
        work.cells.insert(0, nbformat.v4.new_code_cell(PRELUDE))
    marker = secrets.token_hex(16)
    stopped: list = []
    with tempfile.TemporaryDirectory(prefix="attnkit-grade-") as tmp:
        private = Path(tmp).resolve()
        os.chmod(private, 0o711 if uid is not None else 0o700)  # the kernel's user enters, lists nothing
        env = isolation.environment(private / "home", marker, threads)
        if seed is not None:
            env["ATTNKIT_CASE_SEED"] = str(seed)
        cases = private / "cases"
        cases.mkdir(mode=0o755)
        for ex, spec in (probes or {}).items():
            (cases / f"{ex}.json").write_text(spec.payload)
        for cell in work.cells:
            if crosscheck.META in cell.metadata:
                cell.source = cell.source.replace(CASES, str(cases) + "/")
        if skip:
            env["MPLBACKEND"] = "agg"  # figures are not drawn into the copy: nothing reads them
        (private / "work").mkdir()
        (private / "rt").mkdir(mode=0o700)
        hide = isolation.hidden(list(hide_from), private) if mode != "none" else []
        cpu = int(timeout * max(1, threads)) + 30

        def wrap(cmd):
            return isolation.command(cmd, mode, prefix, marker, private, hide, memory, cpu, uid)

        km = _kernel_manager(wrap, kernel_name="python3", transport="ipc", ip=str(private / "rt" / "k"),
                             connection_file=str(private / "rt" / "kernel.json"))
        # the kernel's own log stays quiet (its "TCP without encryption" warning, once a
        # notebook, drowned the progress lines); what a learner's code raises is in the outputs
        client = NotebookClient(work, km=km, timeout=None, kernel_name="python3", allow_errors=True,
                                shutdown_kernel="immediate", record_timing=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                resources={"metadata": {"path": str(private / "work")}})

        def execute():
            try:
                client.execute(env=env)
            except DeadKernelError as err:
                stopped.append(("classroom.note.kernel_died", {"err": str(err)[:200]}))
            except Exception as err:  # noqa: BLE001  a kernel that cannot start, say: reported
                log = private / "kernel.log"
                tail = log.read_text(errors="replace")[-300:] if log.exists() else ""
                stopped.append(("classroom.note.kernel_failed", {"err": f"{type(err).__name__}: {err} {tail}"[:500]}))

        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        worker.join(timeout)
        timed_out = worker.is_alive()
        if timed_out:
            _kill(client)
            worker.join(60)
        isolation.sweep(marker)  # what outlived the supervisor (only possible when not isolated)
    if mode == "none":
        work.cells.pop(0)
    return work, skipped, timed_out, None if timed_out or not stopped else stopped[0], isolation.label(mode, uid=uid)


def _error_text(cell) -> str:
    return "\n".join(f"{o.get('ename')}: {o.get('evalue')}" for o in cell.get("outputs", [])
                     if o.get("output_type") == "error")


def outcomes(executed, original: Original, timed_out: bool, stopped, probes: dict | None = None,
             seed: int = 0) -> tuple[dict[str, dict], list[str]]:
    """The outcome of each of the chapter's exercises in an executed notebook, each joined with
    the grader's own comparison of ``probes`` (:func:`attnkit.classroom.crosscheck.combine`);
    and the exercises on which the two disagree."""
    code = [c for c in executed.cells if c.cell_type == "code"]
    sent = {}
    for cell in code:
        probe = cell.metadata.get(crosscheck.META, {}).get("probe")
        if probe:
            sent[probe] = crosscheck.record(cell)
    checks = set(original.check_cells.values())
    found: dict[str, dict] = {}
    for cell in code:
        if cell.source not in checks:
            continue  # a record displayed by any other cell is the learner's, not the checker's
        for rec in records(cell):
            found[rec.get("exercise")] = rec  # the last check of an exercise counts
    out = {}
    for ex in original.exercises:
        rec = found.get(ex)
        if rec is not None:
            status = "solution" if rec.get("solution") else rec.get("status")
            out[ex] = {"status": status if status in STATUSES else "error", "case": rec.get("case"),
                       "label": rec.get("label"), "feedback": _cap(str(rec.get("feedback", "")))}
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
        out[ex] = {"status": status, "case": None, "label": None, "feedback": _cap(text)}
    disagree = [ex for ex in out if probes and ex in probes and crosscheck.combine(out[ex], probes[ex], sent.get(ex), seed)]
    return out, disagree


def _cap(text: str) -> str:
    cut = safety.FEEDBACK_CAP
    return text if len(text) <= cut else text[:cut] + "\n" + t("classroom.note.feedback_cut")


def grade_one(nb, res: Result, original: Original, timeout: float, skip: bool, threads: int,
              hide_from=(), memory: int = MEMORY, keep: Path | None = None, probes: dict | None = None,
              seed: int | None = None, uids=None) -> Result:
    codes = [c.source for c in nb.cells if c.cell_type == "code"]
    changed = [c for c in codes if c not in original.sources]
    names = sorted(set().union(*map(solution_refs, changed))) if changed else []
    if names:
        res.notes.append(("classroom.note.solution_import", {"names": ", ".join(names)}))
    work, restored = restore(nb, original, probes)
    if restored:
        res.notes.append(("classroom.note.restored", {"cells": ", ".join(map(str, restored))}))
    evidence = [f"[{k}] {line}" for k, src in enumerate(codes, 1) if src not in original.sources
                and k not in restored for line in safety.tampering(src)]
    uid = uids.get() if uids is not None else None
    try:
        executed, res.skipped, timed_out, stopped, res.isolation = run(work, original, timeout, skip, threads,
                                                                       hide_from, memory, probes, seed, uid)
    finally:
        if uid is not None:
            uids.put(uid)
    res.outcomes, disagree = outcomes(executed, original, timed_out, stopped, probes, seed or 0)
    if disagree:
        res.notes.append(("classroom.note.disagree", {"exercises": ", ".join(disagree)}))
    if keep is not None:  # the audit trail: the executed copy, as graded
        import nbformat

        name = re.sub(r"[^\w.-]+", "_", res.learner)[:80] + f"_{res.sha256[:12]}.ipynb"
        safety.write_atomically(keep / name, nbformat.writes(executed).encode("utf-8"))
    if evidence:
        res.notes.append(("classroom.note.tampered", {"evidence": "; ".join(evidence)[:2000]}))
        for out in res.outcomes.values():
            if out["status"] == "passed":
                out["status"] = "tampered"
    if timed_out:
        res.notes.append(("classroom.note.timeout", {"seconds": int(timeout)}))
    if stopped:
        res.notes.append(stopped)
        if stopped[0] == "classroom.note.kernel_died":
            res.notes.append(("classroom.note.limits", {"memory": memory >> 20, "cpu": int(timeout * threads) + 30}))
    return res


def grade(paths: list[str | Path], chapter: str | None = None, timeout: float = 120.0, skip: bool = True,
          jobs: int | None = None, chapters: str | Path | None = None,
          progress: Callable[[int, int, Result], None] | None = None, memory: int = MEMORY,
          keep: str | Path | None = None, seed: int | None = None) -> Graded:
    """Grade every submission under ``paths``; never raises for a bad submission (see the doc).
    ``keep``: a folder (created; not inside a submissions folder) for each executed notebook.
    ``seed``: the drawn cases' seed (a fresh one by default; the audit line records it, and a
    regrade with it draws the same cases)."""
    import torch

    course = safety.course_digest()
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
    if keep is not None:
        keep = Path(keep)
        why = safety.refuse_target(keep, sorted({p.resolve().parent for _, p in files}))
        if why:
            raise ClassroomError(f"keep: {keep}: {why}")
        keep.mkdir(parents=True, exist_ok=True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 31):
        raise ClassroomError(t("classroom.err.bad_seed", got=repr(seed)))
    seed = secrets.randbelow(1_000_000) if seed is None else seed
    probes, why_not = crosscheck.plan(want, seed) if todo else ({}, None)
    if why_not:
        for _, res, _ in todo:
            res.notes.append(("classroom.note.no_crosscheck", {"err": why_not}))
    jobs = max(1, jobs or min(2, os.cpu_count() or 1))
    uids = isolation.uid_pool(jobs)
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
        futures = {pool.submit(grade_one, nb, res, orig, timeout, skip, threads, [p for _, p in files], memory,
                               keep, probes, seed, uids): res for nb, res, orig in todo}
        for fut in as_completed(futures):
            res = futures[fut]
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001  one notebook never stops the class
                res.problem = ("classroom.problem.crash", {"err": f"{type(err).__name__}: {err}"[:200]})
            report(res)
    for (_, path), res in zip(files, results, strict=True):
        try:
            same = res.sha256 == "" or safety.digest(path.read_bytes()) == res.sha256
        except OSError:
            same = False
        if not same:
            res.notes.append(("classroom.note.submission_changed", {}))
    after = safety.course_digest()
    changed = sorted(k for k in set(course) | set(after) if course.get(k) != after.get(k))
    if changed:
        for res in results:
            res.notes.append(("classroom.note.course_changed", {"files": ", ".join(changed)}))
    folders = sorted({p.resolve() for p in map(Path, paths) if p.is_dir()} | {p.resolve().parent for _, p in files})
    audit = {"attnkit": safety.digest("".join(f"{k}={v}\n" for k, v in sorted(course.items())).encode()),
             "torch": torch.__version__, "isolation": isolation.label(isolation.probe()[0], uid=f"{isolation.UID_BASE}+" if uids else None),
             "memory": memory, "timeout": timeout, "seed": seed}
    return Graded(chapter=want, lang=lang, exercises=exercises, results=results, others=others,
                  skip=skip, folders=folders, audit=audit)
