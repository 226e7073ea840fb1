"""The grader's own comparison of each exercise's function, outside the learner's reach.

The function is taken from the learner's notebook, run in the learner's kernel on cases the
grader sends, and its values compared in the grader's process.

:func:`plan` reads the chapter's checkers through :func:`attnkit.exercises.registry`: for each
exercise, the cases (the visible ones, the one drawn from the teacher's seed, which the check cell
in the kernel also runs, and one more drawn from ``seed + 1`` that no cell of the notebook sees),
the expected values (computed once per run, in the grader) and how the learner's function is
called. :func:`probe_cell` is the cell placed right after each restored check cell: it calls the
learner's function (the name the handout's check cell passes) on those cases and sends back only
values (:mod:`attnkit.classroom.values`). :func:`verdict` compares them with the registry's own
comparison; :func:`combine` joins that verdict with the check cell's outcome:

- passed only when the check cell and the grader's comparison both say so;
- the check cell passed but the grader's comparison fails a case that the check cell ran too:
  ``tampered`` (something in the kernel changed what the check decided), with both as evidence;
- the check cell passed but the case only the grader drew fails: ``failed`` (an answer that fits
  the cases it was shown, such as outputs hard-coded for them);
- no values came back: ``error``.

What the learner's process alone can measure is marked: a memory peak (``Measured``) and a
result computed there by the exercise's own wrapper (the models ch01's and ch11's stretch exercises train).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from attnkit.classroom.values import LIMIT, VALUES_MIME, Opaque, ValueFormatError, decode, encode
from attnkit.i18n import register, t

META = "attnkit_grader"  # cell metadata key of the grader's own cells (stripped from learners' cells)
_QUIET = threading.Lock()  # a question judged with its checker's printing swallowed

register({
    "classroom.fb.disagree": {
        "en": "the check cell said passed, but the grader's own comparison of case {case} ({label}) says: {why}",
        "zh": "检查单元格显示通过，但评分程序自己比较第 {case} 个用例（{label}）的结果是：{why}"},
    "classroom.fb.extra_failed": {
        "en": "the check cell's cases pass, but a case drawn by the grader (seed {seed}) fails: {label}: {why}",
        "zh": "检查单元格的用例都通过了，但评分程序另抽的用例（种子 {seed}）未通过：{label}：{why}"},
    "classroom.fb.no_values": {
        "en": "the check cell said passed, but no values for the grader's own cases came back from the kernel",
        "zh": "检查单元格显示通过，但 kernel 没有交回评分程序自己那些用例的结果"},
    "classroom.fb.raised": {"en": "raised {err}", "zh": "抛出了异常：{err}"},
    "classroom.fb.wrong_answer": {"en": "the answer {got} is not it", "zh": "答案 {got} 不对"},
    "classroom.fb.bad_values": {"en": "values that are not in the grader's format ({err})",
                                "zh": "交回的值不符合评分程序的格式（{err}）"},
})


@dataclass
class Spec:
    """One exercise as the grader checks it."""

    exercise: Any                 # attnkit.exercises.Exercise
    how: str                      # "call", "measured", "prepared", "value" (see values.answer)
    cases: list = field(default_factory=list)
    shared: int = 0               # the first ``shared`` cases are the check cell's own
    expected: list = field(default_factory=list)
    payload: str = ""             # the cases, encoded


def _how(ex) -> str | None:
    if ex.question:
        return "value"
    from attnkit.exercises import Measured

    def marker(*args, **kwargs):
        return None

    try:
        prepared = ex.prepare(marker)
    except Exception:  # noqa: BLE001  a checker that does not wrap a function
        return None
    if prepared is marker:
        return "call"
    return "measured" if isinstance(prepared, Measured) else "prepared"


def plan(chapter: str, seed: int) -> tuple[dict[str, Spec], str | None]:
    """({exercise id: Spec}, why not: an error text where the registry cannot be read)."""
    from attnkit.exercises import registry

    try:
        reg = registry((f"ch{chapter}",))
    except Exception as err:  # noqa: BLE001  a checker being edited: the check cells still decide
        return {}, f"{type(err).__name__}: {err}"[:300]
    out = {}
    for ex_id, ex in reg.items():
        how = _how(ex)
        if how is None:
            continue
        spec = Spec(ex, how)
        if how != "value":
            spec.cases = ex.cases(seed)
            spec.shared = len(spec.cases)
            if how != "prepared":  # a trained model per case: the check cell's cases are enough
                spec.cases += ex.cases(seed + 1)[len(ex.visible):]
            try:
                spec.expected = [ex.expected(c) for c in spec.cases]
            except Exception as err:  # noqa: BLE001
                return {}, f"{ex_id}: {type(err).__name__}: {err}"[:300]
            spec.payload = json.dumps(encode([(c.args, c.kwargs) for c in spec.cases]))
        out[ex_id] = spec
    return out, None


def argument(statements: str, check: str) -> str | None:
    """The source of the first argument the handout's check statements pass to ``check``."""
    try:
        tree = ast.parse(statements)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == check and node.args:
            return ast.get_source_segment(statements, node.args[0])
    return None


def probe_cell(exercise: str, arg: str, how: str, cases_path: str):
    """The grader's cell after a restored check cell (its metadata marks it as the grader's)."""
    import nbformat

    payload = f"open({cases_path!r}).read()" if how != "value" else "''"
    source = ("from attnkit.classroom.values import answer as _attnkit_answer\n"
              f"_attnkit_answer({exercise!r}, lambda: ({arg}), {payload}, {how!r})")
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata[META] = {"probe": exercise}
    return cell


def record(cell) -> dict | None:
    """The last values record of a probe cell's outputs."""
    found = [o["data"][VALUES_MIME] for o in cell.get("outputs", [])
             if o.get("output_type") == "display_data" and VALUES_MIME in o.get("data", {})]
    if not found:
        return None
    size = len(json.dumps(found[-1]))
    return found[-1] if size <= LIMIT else {"error": f"a record of {size} bytes (at most {LIMIT})"}


def _judge_question(ex, value) -> bool:
    with _QUIET, contextlib.redirect_stdout(io.StringIO()):
        return ex.check(value) is True


def verdict(spec: Spec, rec: dict | None) -> tuple[str, int | None, str | None, str]:
    """(state: "passed" "failed" "error" "none", case number from 1, its label, why) of the grader's
    own comparison of the values in ``rec``."""
    if not isinstance(rec, dict):
        return "none", None, None, ""
    if rec.get("error"):
        return "error", None, None, t("classroom.fb.raised", err=str(rec["error"])[:2000])
    try:
        if spec.how == "value":
            value = decode(rec.get("value"))
            if isinstance(value, Opaque) or not _judge_question(spec.exercise, value):
                return "failed", None, None, t("classroom.fb.wrong_answer", got=repr(value)[:200])
            return "passed", None, None, ""
        results = rec.get("results")
        if not isinstance(results, list) or len(results) != len(spec.cases):
            raise ValueFormatError(f"{len(results) if isinstance(results, list) else 'no'} results "
                                   f"for {len(spec.cases)} cases")
        for i, (res, case, exp) in enumerate(zip(results, spec.cases, spec.expected, strict=True), start=1):
            if not isinstance(res, dict):
                raise ValueFormatError("a result that is not an object")
            if "ok" not in res:
                return "error", i, case.label, t("classroom.fb.raised", err=str(res.get("error"))[:2000])
            got = decode(res["ok"])
            try:
                why = spec.exercise.compare(got, exp)
            except Exception as err:  # noqa: BLE001  a value the comparison cannot read
                why = f"{type(err).__name__}: {err}"[:500]
            if why:
                return "failed", i, case.label, str(why)
    except (ValueFormatError, ValueError, TypeError, KeyError, RecursionError) as err:
        return "error", None, None, t("classroom.fb.bad_values", err=str(err)[:300])
    return "passed", None, None, ""


def combine(out: dict, spec: Spec, rec: dict | None, seed: int) -> bool:
    """Join the grader's verdict into the check cell's outcome ``out`` (changed in place); True
    where they disagree on a case both ran (tampering evidence)."""
    if spec.how in ("measured", "prepared"):
        out["inside"] = spec.how if spec.how == "prepared" else "memory"
    state, case, label, why = verdict(spec, rec)
    out["grader"] = state
    if out["status"] != "passed" or state == "passed":
        return False
    if state == "none":
        out.update(status="error", feedback=t("classroom.fb.no_values"))
        return False
    if case is not None and case > spec.shared:
        out.update(status="failed", case=case, label=label,
                   feedback=t("classroom.fb.extra_failed", seed=seed + 1, label=label, why=why))
        return False
    out.update(status="tampered", case=case, label=label,
               feedback=t("classroom.fb.disagree", case=case or "-", label=label or "-", why=why))
    return True
