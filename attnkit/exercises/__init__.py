"""A small checker for notebook exercises, with feedback in the learner's language.

A chapter's exercise module (``attnkit.exercises.ch01`` ...) holds the reference solutions and
one ``check_...(your_fn)`` per exercise, built on :func:`run_checks`. A checker runs the
learner's function on a list of :class:`Case` s (the visible ones, then one drawn from the case
seed), compares with the solution, and prints either a success line or the first failing case
(its inputs, where the result differs, and a hint). It never raises: a learner's exception is
reported with the learner's line, not propagated. It returns True or False.

Forbidden calls are caught by what runs, not by name. ``forbid=(dotted names...)`` lists the
ready-made functions the exercise asks the learner to write. While the learner's function runs, a
``TorchFunctionMode`` watches every torch function and aten operator called (a tensor method,
``torch.special``, ``torch.ops.aten``, ``functools.partial`` of one: all the same call) and a
profile hook watches the Python code that runs (attnkit's functions and classes reached through
an alias, a default argument or a closure). :data:`FAMILIES` widens a name to every spelling of
the same computation (``torch.softmax`` is also ``Tensor.softmax``, ``torch.special.softmax``,
``F.softmax``, ``log_softmax``; SDPA is also ``torch.ops.aten`` 's and attnkit's flash one).

Reference solutions (``solution_*`` functions and ``Solution*`` classes of the chapter modules):
running one inside the learner's function is told plainly and does not pass (status
``solution``); so is code whose compiled form is a solution's (source read with
``inspect.getsource`` and run under another name) when that is evidence: code without a source
file (``exec``), or a body of several lines. A short formula written independently can compile to
the solution's very bytecode, so it is never flagged on its own.

A stub is a stub only when ``NotImplementedError`` is raised by the learner's own code; any other
exception is reported as what it is, with the learner's line. A measurement that cannot measure
something (the memory meter and a higher-order op such as ``flex_attention``) says so, checks the
values without it, and leaves the process as it found it.

Hints: ``mistakes=[(wrong_fn, hint), ...]`` diagnose common mistakes (the learner's result equals
``wrong_fn``'s on the failing case: that mistake's hint is shown). Otherwise the staged hints
``hints=[nudge, stronger, formula]`` climb one level per failed check of the exercise (whatever
case failed); the last (the formula) is printed only on request, ``show_hint("ch01.ex1")``.

:func:`check_answer` checks a predicted number or a choice (``c``, ``C``, ``c)``, ``c) text``, the
choice's text in either language, full-width letters all accepted). The answer and its explanation
appear after a right answer or on request (:func:`show_answer`), never by exhausting choices.

Every check records its outcome in :data:`OUTCOMES` (exercise id -> status, case, label,
feedback, solution) and publishes the same record next to the text it shows. In a notebook the
feedback is one ``display_data`` output: its ``text/plain`` is the feedback (what the learner
reads, what nbval compares) and its :data:`OUTCOME_MIME` entry the record, so a grader reads every
check's outcome from the executed notebook without parsing prose (``python -m attnkit.classroom
grade``). Outside a notebook the feedback is printed.

The checkers as data: :func:`registry` returns ``{exercise id: Exercise}`` (cases from a seed,
the learner-side wrapper, the solution, the comparison, the diagnosis, the forbidden names), so a
grader can run a learner's function in one process and compare in another. The drawn case comes
from :func:`set_case_seed` or the environment variable ``ATTNKIT_CASE_SEED`` (a teacher's seed),
else a fresh seed each check; it never changes the text of a passing check.
"""

from __future__ import annotations

import copy
import dis
import functools
import importlib
import inspect
import linecache
import os
import random
import re
import sys
import sysconfig
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

from attnkit.i18n import catalog, get_language, register, t

__all__ = ["Case", "Measured", "run_checks", "check_answer", "show_hint", "show_answer", "compare_tensors",
           "describe", "OUTCOMES", "OUTCOME_MIME", "FAMILIES", "Exercise", "registry", "set_case_seed",
           "case_seed", "drawn"]

# the MIME type of the outcome record in a check's display_data output (a JSON object)
OUTCOME_MIME = "application/vnd.attnkit.outcome+json"

register({
    "ex.pass": {"en": "✅ {title}: all {n} cases pass. Well done!",
                "zh": "✅ {title}：{n} 个测试用例全部通过，做得好！"},
    "ex.todo": {"en": "⏳ {title}: not done yet — replace `raise NotImplementedError` with your code and run this cell again.",
                "zh": "⏳ {title}：还没有完成——把 `raise NotImplementedError` 换成你的代码，然后重新运行这个单元格。"},
    "ex.fail": {"en": "❌ {title}: case {i} of {n} fails ({label}).",
                "zh": "❌ {title}：共 {n} 个用例，第 {i} 个（{label}）未通过。"},
    "ex.drawn": {"en": "a case drawn from seed {seed}, like case {like}: {label}",
                 "zh": "由种子 {seed} 抽取的用例，与第 {like} 个相似：{label}"},
    "ex.fail_drawn": {"en": "❌ {title}: the visible cases pass, but {label} fails.",
                      "zh": "❌ {title}：可见的用例都通过了，但{label}未通过。"},
    "ex.drawn_new": {"en": "a case drawn from seed {seed}: {label}", "zh": "由种子 {seed} 抽取的用例：{label}"},
    "ex.raised_drawn": {"en": "❌ {title}: the visible cases pass, but {label} raised {err}",
                        "zh": "❌ {title}：可见的用例都通过了，但{label}抛出了异常：{err}"},
    "ex.raised": {"en": "❌ {title}: case {i} of {n} ({label}) raised {err}",
                  "zh": "❌ {title}：共 {n} 个用例，第 {i} 个（{label}）抛出了异常：{err}"},
    "ex.where": {"en": "   where:    line {line} of your code: {code}",
                 "zh": "   位置：    你的代码第 {line} 行：{code}"},
    "ex.inputs": {"en": "   inputs:   {what}", "zh": "   输入：    {what}"},
    "ex.expected": {"en": "   expected: {what}", "zh": "   期望结果：{what}"},
    "ex.got": {"en": "   got:      {what}", "zh": "   你的结果：{what}"},
    "ex.why": {"en": "   problem:  {what}", "zh": "   错在：    {what}"},
    "ex.hint": {"en": "   hint:     {what}", "zh": "   提示：    {what}"},
    "ex.not_callable": {"en": "❌ {title}: expected a function, got {what}.",
                        "zh": "❌ {title}：需要传入一个函数，实际得到的是 {what}。"},
    "ex.why_type": {"en": "expected a {exp}, got a {got}", "zh": "应当返回 {exp}，实际返回了 {got}"},
    "ex.why_shape": {"en": "shape {got} instead of {exp}", "zh": "形状是 {got}，应为 {exp}"},
    "ex.why_dtype": {"en": "dtype {got} instead of {exp}", "zh": "数据类型是 {got}，应为 {exp}"},
    "ex.why_nan": {"en": "the result contains NaN at index {at} where the expected one does not",
                   "zh": "结果在下标 {at} 处出现了 NaN，而期望结果中没有"},
    "ex.why_values": {"en": "{k} of {n} values differ (tolerance {tol:.1g}); first at index {at}: {got} instead of {exp}",
                      "zh": "{n} 个数值中有 {k} 个不对（允许误差 {tol:.1g}）；第一个在下标 {at}：得到 {got}，应为 {exp}"},
    "ex.why_bools": {"en": "{k} of {n} entries differ; first at index {at}: {got} instead of {exp}",
                     "zh": "{n} 个元素中有 {k} 个不对；第一个在下标 {at}：得到 {got}，应为 {exp}"},
    "ex.why_part": {"en": "in part {i} of {n} of the result{name}: {why}",
                    "zh": "结果的第 {i} 部分（共 {n} 部分{name}）：{why}"},
    "ex.why_value": {"en": "{got} instead of {exp}", "zh": "得到 {got}，应为 {exp}"},
    "ex.more": {"en": "   more:     show_hint(\"{ex}\") prints every hint, the full formula last.",
                "zh": "   更多：    运行 show_hint(\"{ex}\") 可以看到全部提示，最后一条是完整公式。"},
    "ex.forbidden": {"en": "❌ {title}: your function calls {name}, the built-in this exercise asks you to write yourself. Compute it from the formula instead.",
                     "zh": "❌ {title}：你的函数调用了 {name}，而这道练习要你自己实现它。请按公式一步步计算。"},
    "ex.solution": {"en": "🚩 {title}: your function runs the course's reference solution ({name}). That is the answer key, not your work: it does not count as passed. Write your own and run this cell again.",
                    "zh": "🚩 {title}：你的函数运行的是课程的参考答案（{name}）。那是答案，不是你的作业：不算通过。请自己写出来，再运行这个单元格。"},
    "ex.copied": {"en": "🚩 {title}: your function is a copy of the course's reference solution ({name}), compiled to the same code. A copy does not count as passed. Write your own and run this cell again.",
                  "zh": "🚩 {title}：你的函数是课程参考答案（{name}）的副本，编译出的代码完全相同。副本不算通过。请自己写出来，再运行这个单元格。"},
    "ex.unmeasured": {"en": "   note:     this memory check cannot measure {what}; the values were checked, the memory was not.",
                      "zh": "   说明：    这项内存检查无法测量 {what}；数值已检查，内存没有检查。"},
    "ex.hints_title": {"en": "Hints for {ex}:", "zh": "{ex} 的提示："},
    "ex.hints_none": {"en": "No hints for {ex} yet: run its check cell first (known: {known}).",
                      "zh": "还没有 {ex} 的提示：请先运行它的检查单元格（已有：{known}）。"},
    "q.todo": {"en": "⏳ {title}: not answered yet — replace `None` with your answer and run this cell again.",
               "zh": "⏳ {title}：还没有作答——把 `None` 换成你的答案，然后重新运行这个单元格。"},
    "q.pass": {"en": "✅ {title}: {answer} is right.", "zh": "✅ {title}：{answer}，回答正确。"},
    "q.fail": {"en": "❌ {title}: {answer} is not it.", "zh": "❌ {title}：你的答案是 {answer}，不对。"},
    "ex.tensor_of_shape": {"en": "tensor of shape {shape}, {dtype}", "zh": "形状为 {shape} 的张量（{dtype}）"},
    "q.reveal": {"en": "   answer:   {expected}", "zh": "   答案：    {expected}"},
    "q.why": {"en": "   why:      {what}", "zh": "   原因：    {what}"},
    "q.choice_sep": {"en": "; ", "zh": "；"},
    "q.choices": {"en": "   choose one of: {choices}", "zh": "   请从这些选项中选一个：{choices}"},
    "q.ask": {"en": "   answer:   when you want it: from attnkit.exercises import show_answer; show_answer(\"{ex}\")",
              "zh": "   答案：    想看答案和原因时，运行 from attnkit.exercises import show_answer; show_answer(\"{ex}\")"},
    "q.none": {"en": "No answer for {ex} yet: run its check cell first (known: {known}).",
               "zh": "还没有 {ex} 的答案：请先运行它的检查单元格（已有：{known}）。"},
    "q.not_number": {"en": "❌ {title}: expected a number, got {what}.",
                     "zh": "❌ {title}：需要一个数字，实际得到的是 {what}。"},
})

# exercise id -> its hints (in the language of the last check), the state of staged hints, and
# the outcome of the last check of every exercise (read by graders; never parsed from prose).
_HINTS: dict[str, list[str]] = {}
_STAGE: dict[str, tuple[int, int]] = {}   # exercise id -> (failing case, hint level shown)
_WRONG: dict[str, int] = {}               # question id -> wrong answers so far
_ANSWERS: dict[str, tuple[str, str]] = {}  # question id -> (the answer shown, why)
OUTCOMES: dict[str, dict] = {}


@dataclass
class Case:
    """One call of the learner's function: ``fn(*args, **kwargs)``; ``label`` says what it tests."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


# ---- the case seed: fresh by default, the teacher's when grading ----

_SEED: dict[str, int | None] = {"seed": None}


def set_case_seed(seed: int | None) -> None:
    """Fix the seed of the drawn cases (a teacher grading), or ``None`` for a fresh one per check."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    _SEED["seed"] = seed


def case_seed() -> tuple[int, bool]:
    """``(seed, fixed)``: set_case_seed's, else ATTNKIT_CASE_SEED's, else a fresh one (not fixed)."""
    if _SEED["seed"] is not None:
        return _SEED["seed"], True
    env = os.environ.get("ATTNKIT_CASE_SEED", "").strip()
    if env:
        try:
            return int(env), True
        except ValueError:
            raise ValueError(f"ATTNKIT_CASE_SEED must be an integer, got {env!r}") from None
    return int.from_bytes(os.urandom(4), "little") % 1_000_000, False


def drawn_like(case: Case, seed: int) -> Case:
    """A case like ``case`` whose floating tensors hold the same values in another order
    (drawn from ``seed``): a valid input wherever the visible one is (probabilities stay
    probabilities, masks and integers stay as they are), so an answer hard-coded for the
    visible inputs fails it."""
    g = torch.Generator().manual_seed(seed)

    def shuffle(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 1:
            perm = torch.randperm(x.numel(), generator=g)
            return x.detach().flatten()[perm].view_as(x).clone()
        if isinstance(x, (tuple, list)):
            return type(x)(shuffle(v) for v in x)
        return x

    return Case(shuffle(case.args), {k: shuffle(v) for k, v in case.kwargs.items()}, case.label)


def drawn(seed: int, make: Callable[[random.Random], Case]) -> list[Case]:
    """``draw=lambda seed: drawn(seed, lambda rng: Case(...))``: one case made from a
    ``random.Random(seed)``, labelled as drawn from ``seed``."""
    case = make(random.Random(seed))
    case.label = t("ex.drawn_new", seed=seed, label=case.label)
    return [case]


class Result(tuple):
    """``(value, peak bytes)`` from :class:`Measured`; described by its value alone."""


class _Unmeasured(int):
    """A peak the meter could not measure (reads as 0 so value checks still run)."""

    what = ""


class Measured:
    """``Measured(fn)(*args) -> (fn(*args), peak bytes)``, for exercises that check memory too.

    Pass ``Measured(learner_fn)`` and ``Measured(solution)`` to :func:`run_checks` with a
    ``compare`` that looks at both parts. The peak is attnkit.flash's op-by-op allocation count.
    When the meter cannot run what ``fn`` calls (a higher-order op such as flex_attention under
    its dispatch mode), the values are computed without it, the peak reads as unmeasured and the
    check says so; dynamo is reset so the op works again in the next cell.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.__wrapped__ = fn
        self.__globals__ = getattr(fn, "__globals__", {})

    def __call__(self, *args):
        from attnkit.flash import measure_peak_bytes

        try:
            value, peak = measure_peak_bytes(self.fn, *args)
        except Exception as err:
            found = re.search(r"HigherOrderOperator (\w+)", str(err))
            if found is None:
                raise
            _reset_dynamo()
            peak = _Unmeasured(0)
            peak.what = found.group(1)
            value = self.fn(*args)
        return Result((value, peak))


def _reset_dynamo() -> None:
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()


# ---- describing and comparing ----

def describe(x: Any, limit: int = 12) -> str:
    """A short, readable summary: small tensors in full (4 decimals), big ones by shape."""
    if isinstance(x, Result):
        return describe(x[0], limit)
    if isinstance(x, torch.Tensor):
        if x.numel() <= limit:
            vals = [round(v, 4) if isinstance(v, float) else v for v in x.flatten().tolist()]
            return f"tensor{tuple(x.shape)} {x.dtype} {vals}"
        return t("ex.tensor_of_shape", shape=tuple(x.shape), dtype=x.dtype)
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe(v, limit) for v in x)
        return f"({inner})" if isinstance(x, tuple) else f"[{inner}]"
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (torch.nn.Module, type)) or callable(x):
        return getattr(x, "__name__", type(x).__name__)
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_answer(x: Any) -> str:
    """An expected answer without its values: a tensor by shape (the failing entries go in the
    problem line), a tuple part by part; numbers as they are."""
    if isinstance(x, Result):
        return _describe_answer(x[0])
    if isinstance(x, torch.Tensor):
        return t("ex.tensor_of_shape", shape=tuple(x.shape), dtype=x.dtype)
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_describe_answer(v) for v in x)
        return f"({inner})" if isinstance(x, tuple) else f"[{inner}]"
    return describe(x)


def _index(flat: int, shape) -> str:
    at = []
    for size in reversed(tuple(shape)):
        at.append(flat % size)
        flat //= size
    return str(tuple(reversed(at)))


def _entry(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def compare_tensors(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4,
                    names: tuple[str, ...] | None = None) -> str | None:
    """None when ``got`` matches ``expected``, else a sentence (current language) saying why not:
    the first differing index, and for a tuple which part (``names`` name the parts). A bool
    tensor is compared as bools, exactly."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return t("ex.why_type", exp="torch.Tensor", got=type(got).__name__)
        if got.shape != expected.shape:
            return t("ex.why_shape", got=tuple(got.shape), exp=tuple(expected.shape))
        if expected.dtype == torch.bool:
            if got.dtype != torch.bool:
                return t("ex.why_dtype", got=got.dtype, exp=expected.dtype)
            bad = (got != expected).flatten()
            if bad.any():
                first = int(bad.nonzero()[0])
                return t("ex.why_bools", k=int(bad.sum()), n=bad.numel(), at=_index(first, got.shape),
                         got=bool(got.flatten()[first]), exp=bool(expected.flatten()[first]))
            return None
        if got.dtype != expected.dtype and got.dtype.is_floating_point != expected.dtype.is_floating_point:
            return t("ex.why_dtype", got=got.dtype, exp=expected.dtype)
        g, e = got.detach().double().flatten(), expected.detach().double().flatten()
        nan = torch.isnan(g) & ~torch.isnan(e)
        if nan.any():
            return t("ex.why_nan", at=_index(int(nan.nonzero()[0]), got.shape))
        close = torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
        if not close.all():
            first = int((~close).nonzero()[0])
            return t("ex.why_values", k=int((~close).sum()), n=close.numel(), tol=atol,
                     at=_index(first, got.shape), got=_entry(g[first].item()), exp=_entry(e[first].item()))
        return None
    if isinstance(expected, (tuple, list)) and not isinstance(expected, Result):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return t("ex.why_type", exp=f"{type(expected).__name__} of {len(expected)}", got=describe(got))
        for i, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
            why = compare_tensors(g, e, atol, rtol)
            if why:
                name = f" ({names[i - 1]})" if names and i <= len(names) else ""
                if get_language() == "zh" and name:
                    name = f"，即 {names[i - 1]}"
                return t("ex.why_part", i=i, n=len(expected), name=name, why=why)
        return None
    if isinstance(expected, float) or isinstance(got, float):
        try:
            ok = abs(float(got) - float(expected)) <= atol + rtol * abs(float(expected))
        except (TypeError, ValueError):
            ok = False
        return None if ok else t("ex.why_value", got=describe(got), exp=describe(expected))
    return None if got == expected else t("ex.why_value", got=describe(got), exp=describe(expected))


# ---- outcomes ----

_QUESTION_COLON = re.compile(r"([?？])[:：]")  # a title that ends in a question mark takes no colon


def _record(exercise: str, status: str, lines: list[str], case: int | None = None,
            label: str | None = None, solution: bool = False) -> None:
    lines = [_QUESTION_COLON.sub(r"\1", line) for line in lines]  # "Which ...?: " reads "Which ...? "
    record = {"exercise": exercise, "status": status, "case": case, "label": label,
              "feedback": "\n".join(lines), "solution": solution}
    OUTCOMES[exercise] = record
    _publish(record["feedback"], record)


def _publish(text: str, record: dict) -> None:
    """Show ``text``; in IPython, as one display_data output that also carries ``record``."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        print(text)
        return
    from IPython.display import display

    display({"text/plain": text, OUTCOME_MIME: copy.deepcopy(record)}, raw=True)


# ---- what runs: library code, the learner's code, reference solutions ----

def _library_dirs() -> tuple[str, ...]:
    dirs = {str(Path(torch.__file__).parent), str(Path(__file__).resolve().parents[1])}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return tuple(sorted(dirs))


_LIBRARY = _library_dirs()


@functools.lru_cache(maxsize=None)  # the profile hook asks for every call: resolving paths each time cost minutes
def _is_learner_file(filename: str) -> bool:
    """Code the learner wrote (a notebook cell, a script, exec'd text): not torch, attnkit or
    the standard library."""
    if filename.startswith("<frozen"):
        return False
    try:
        resolved = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    except (OSError, ValueError):
        resolved = filename
    return not resolved.startswith(_LIBRARY) and not filename.startswith(_LIBRARY)


def _codes_of(obj: Any) -> set:
    """The code objects a function, method or class runs (decorators unwrapped, nested code too)."""
    codes = set()
    if isinstance(obj, type):
        for value in vars(obj).values():
            codes |= _codes_of(value.__func__ if isinstance(value, (staticmethod, classmethod)) else value)
        return codes
    try:
        obj = inspect.unwrap(obj)
    except ValueError:
        pass
    code = getattr(obj, "__code__", None)
    if code is not None:
        stack = [code]
        while stack:
            c = stack.pop()
            codes.add(c)
            stack += [k for k in c.co_consts if inspect.iscode(k)]
    return codes


def _solutions() -> dict:
    """code object -> dotted name, for every reference solution (``solution*`` functions and
    ``Solution*`` classes of the loaded attnkit.exercises.chNN modules)."""
    found = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or not name.startswith(__name__ + ".ch"):
            continue
        for attr, value in list(vars(mod).items()):
            if attr.startswith(("solution", "Solution")) and getattr(value, "__module__", None) == name:
                for code in _codes_of(value):
                    found[code] = f"{name}.{attr}"
    return found


_NOISE = {"CACHE", "PRECALL", "PUSH_NULL", "RESUME", "NOP", "EXTENDED_ARG", "COPY_FREE_VARS", "MAKE_CELL"}
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)


def _fingerprint(code) -> tuple:
    """What a code object computes, without its name, file or line numbers: its instructions
    (with what they name, jumps without their offsets; a method load the same however the
    compiler spelled it, which depends on how the module imported the name) and constants."""
    ops = []
    for ins in dis.get_instructions(code):
        if ins.opname in _NOISE:
            continue
        name = "LOAD_ATTR" if ins.opname == "LOAD_METHOD" else ins.opname
        arg = None if ins.opcode in _JUMPS else (
            _fingerprint(ins.argval) if inspect.iscode(ins.argval) else repr(ins.argval))
        ops.append((name, arg))
    return (tuple(ops), code.co_argcount, code.co_kwonlyargcount)


def _is_evidence(code) -> bool:
    """A match is evidence of copying when the code has no source to show (run from a string,
    as ``exec(inspect.getsource(...))`` does) or is a body of four lines or more: a short formula
    typed in a cell can be written independently."""
    size = sum(1 for _ in dis.get_instructions(code))
    lines = {line for *_, line in code.co_lines() if line is not None}
    if not linecache.getlines(code.co_filename):  # exec'd text: nobody types a formula into a string
        return size >= 3
    return len(lines) >= 4 and size >= 40


# ---- forbidding by what runs ----

# A forbidden name stands for every spelling of its computation: torch names the
# TorchFunctionMode sees (an operator's name without its overload), and attnkit's or torch's
# Python functions that compute the same (their code is watched).
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "torch.softmax": {
        "ops": ("softmax", "special_softmax", "_softmax", "_safe_softmax", "log_softmax", "special_log_softmax",
                "_log_softmax", "softmin"),
        "python": ("attnkit.softmax.softmax", "attnkit.softmax.online_softmax"),
    },
    "torch.nn.functional.scaled_dot_product_attention": {
        "ops": ("scaled_dot_product_attention", "_scaled_dot_product_attention_math",
                "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
                "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                "_scaled_dot_product_fused_attention_overrideable", "_fused_sdp_choice",
                "multi_head_attention_forward", "_native_multi_head_attention"),
        "python": ("attnkit.core.scaled_dot_product_attention", "attnkit.flash.flash_attention",
                   "attnkit.flash._backward", "attnkit.mha.multi_head_attention",
                   "torch.nn.attention.flex_attention.flex_attention", "torch.nn.MultiheadAttention",
                   "attnkit.mha.MultiHeadAttention"),
    },
    "torch.nn.functional.multi_head_attention_forward": {
        "ops": ("multi_head_attention_forward", "_native_multi_head_attention", "scaled_dot_product_attention",
                "_scaled_dot_product_flash_attention_for_cpu"),
        "python": ("torch.nn.MultiheadAttention", "attnkit.mha.MultiHeadAttention", "attnkit.mha.multi_head_attention"),
    },
    "torch.autograd.grad": {
        "ops": ("_log_softmax_backward_data", "_softmax_backward_data"),
        "python": ("torch.autograd.grad", "torch.autograd.backward", "torch.autograd.functional.vjp",
                   "torch.autograd.functional.jacobian", "torch.func.vjp", "torch.func.grad", "torch.func.jacrev"),
    },
}


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0]


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            return None
    return None


@dataclass
class _Rules:
    ops: dict          # torch op name -> the forbidden name shown
    codes: dict        # code object -> the forbidden name shown
    objects: dict      # id of a forbidden object handed in as it is -> name


@functools.lru_cache(maxsize=None)
def _rules(forbid: tuple[str, ...]) -> _Rules:
    rules = _Rules({}, {}, {})
    for shown in forbid:
        family = FAMILIES.get(shown, {})
        for op in family.get("ops", ()):
            rules.ops.setdefault(op, shown)
        for dotted in (shown, *family.get("python", ())):
            obj = _resolve(dotted)
            if obj is None:
                continue
            rules.objects.setdefault(id(obj), dotted)
            codes = _codes_of(obj)
            if codes:
                for code in codes:
                    rules.codes.setdefault(code, dotted)
            elif callable(obj):  # a builtin or an operator: seen by the function mode
                rules.ops.setdefault(_op_name(obj), shown)
    return rules


class _Forbidden(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Guard(TorchFunctionMode):
    """While active: refuses forbidden torch functions and operators (raises), notes forbidden
    Python code, reference solutions and the learner's code objects that run (profile hook)."""

    def __init__(self, rules: _Rules, solutions: dict):
        super().__init__()
        self.rules, self.solutions = rules, solutions
        self.forbidden: str | None = None
        self.solution: str | None = None
        self.learner: set = set()
        self._previous = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = self.rules.ops.get(_op_name(func))
        if name is not None:
            self.forbidden = self.forbidden or name
            raise _Forbidden(self.forbidden)
        return func(*args, **(kwargs or {}))

    def _profile(self, frame, event, arg):
        if self._previous is not None:
            self._previous(frame, event, arg)
        if event == "call":
            code = frame.f_code
            if code not in self.learner and _is_learner_file(code.co_filename):
                self.learner.add(code)
            sol = self.solutions.get(code)
            if sol is not None and self.solution is None:
                self.solution = sol
                raise _Forbidden(sol)  # stop here (an error in a profile hook also unsets it)
            name = self.rules.codes.get(code)
            if name is not None and self.forbidden is None:
                self.forbidden = name
                raise _Forbidden(name)

    def __enter__(self):
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            sys.setprofile(self._previous)


_GUARD: dict[str, _Guard | None] = {"now": None}


def _trap_names(fn: Callable, forbid: tuple[str, ...]) -> list:
    """Replace each forbidden *function* named in ``forbid`` (in its module and in the learner's
    globals) by a trap, so that even a call with the wrong arguments, which never starts the
    function's code, is refused. Returns what to put back. Classes are left alone (torch's
    isinstance checks need them); the guard sees their code run."""
    undo = []

    def trap(name):
        def refuse(*_a, **_k):
            guard = _GUARD["now"]
            if guard is not None and guard.forbidden is None:
                guard.forbidden = name  # refused even if the learner's code swallows the error
            raise _Forbidden(name)
        return refuse

    scope = getattr(fn, "__globals__", {})
    for dotted in forbid:
        mod_name, _, attr = dotted.rpartition(".")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        orig = getattr(mod, attr, None)
        if orig is None or isinstance(orig, type) or not (inspect.isfunction(orig) or inspect.isbuiltin(orig)):
            continue
        for name, where in list(sys.modules.items()):  # the module and every attnkit module re-exporting it
            if where is mod or (name.startswith("attnkit") and where is not None):
                for key, value in list(vars(where).items()):
                    if value is orig:
                        undo.append((where, key, orig))
                        setattr(where, key, trap(dotted))
        for gname, value in list(scope.items()):
            if value is orig:
                undo.append((scope, gname, orig))
                scope[gname] = trap(dotted)
    return undo


def _call_forbidding(fn: Callable, forbid: tuple[str, ...], args, kwargs):
    """Call ``fn`` under the guard of the running check; raise _Forbidden if a forbidden
    computation ran in it (the trap tests lift by replacing this function)."""
    guard = _GUARD["now"] or _Guard(_rules(forbid), {})
    target = getattr(fn, "__wrapped__", fn)
    if id(target) in guard.rules.objects:  # the built-in itself handed in as the answer
        raise _Forbidden(guard.rules.objects[id(target)])
    error, undo = None, _trap_names(fn, forbid)
    try:
        with guard:
            try:
                result = fn(*args, **kwargs)
            except _Forbidden:
                raise
            except BaseException as err:  # a forbidden call that fails later still is forbidden
                error = err
    finally:
        for where, name, orig in reversed(undo):
            if isinstance(where, dict):
                where[name] = orig
            else:
                setattr(where, name, orig)
    if guard.solution is not None or guard.forbidden is not None:
        raise _Forbidden(guard.forbidden or guard.solution)
    if error is not None:
        raise error
    return result


def _copied(learner: set, solutions: dict) -> str | None:
    """The solution whose compiled code one of the learner's code objects repeats, as evidence."""
    if not learner:
        return None
    prints = {}
    for code, name in solutions.items():
        prints.setdefault(_fingerprint(code), name)
    for code in learner:
        name = prints.get(_fingerprint(code))
        if name is not None and _is_evidence(code):
            return name
    return None


# ---- where the learner's code failed ----

def _learner_line(err: BaseException) -> tuple[int, str] | None:
    """(line number, source) of the last traceback frame in the learner's code."""
    found = None
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_learner_file(code.co_filename) and code.co_filename != __file__:
            found = (tb.tb_lineno, linecache.getline(code.co_filename, tb.tb_lineno).strip())
        tb = tb.tb_next
    return found


def _raised_by_learner(err: BaseException) -> bool:
    """True when the innermost frame of the traceback is the learner's code (their stub line)."""
    tb, last = err.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and _is_learner_file(last.tb_frame.f_code.co_filename)


# ---- hints ----

def _staged_hint(exercise: str, case: int, hints: list[str]) -> list[str]:
    """The hint for this failure: one level stronger each time the exercise fails again (any case)."""
    if not hints:
        return []
    auto = hints[:-1] if len(hints) >= 2 else hints   # the last of two or more: on request only
    _, last_level = _STAGE.get(exercise, (None, -1))
    level = min(last_level + 1, len(auto) - 1)
    _STAGE[exercise] = (case, level)
    lines = [t("ex.hint", what=auto[level])]
    if len(hints) >= 2 and level == len(auto) - 1:
        lines.append(t("ex.more", ex=exercise))
    return lines


def _diagnose(mistakes, case: Case, got: Any, compare: Callable) -> str | None:
    """The hint of the first listed mistake whose result the learner's equals on this case."""
    for wrong, hint in mistakes or ():
        try:
            their = wrong(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            if compare(got, their) is None:
                return hint() if callable(hint) else hint
        except Exception:  # a mistake that does not apply to this case
            continue
    return None


# ---- the checker ----

class _Captured(Exception):
    """Raised by run_checks while :func:`registry` reads a checker's spec."""

    def __init__(self, spec: dict):
        super().__init__(spec.get("exercise"))
        self.spec = spec


_CAPTURE = {"on": False}
# the test suite's switch to check a checker against its own solution (never set in a notebook)
_ALLOW_SOLUTIONS = {"on": False}


def _cases_with_drawn(cases: list[Case], draw: Callable[[int], list[Case]] | None, seed: int) -> list[Case]:
    if draw is not None:
        return list(draw(seed))
    for i, case in enumerate(cases, start=1):
        d = drawn_like(case, seed)
        if any(isinstance(a, torch.Tensor) and a.is_floating_point() and a.numel() > 1 for a in case.args):
            d.label = t("ex.drawn", seed=seed, like=i, label=case.label)
            return [d]
    return []


def run_checks(fn: Callable, solution: Callable, cases: list[Case], title: str,
               hint: str | None = None, *, hints: list[str] | tuple[str, ...] | None = None,
               exercise: str | None = None,
               compare: Callable[[Any, Any], str | None] = compare_tensors,
               forbid: tuple[str, ...] = (),
               mistakes: list | tuple = (),
               draw: Callable[[int], list[Case]] | None = None) -> bool:
    """Run ``fn`` and ``solution`` on every case (the visible ones, then the drawn ones); print
    feedback; return whether all pass.

    ``hints`` go from a nudge to the full formula (see the module doc); a single ``hint`` is the
    one-stage form. ``exercise`` names the exercise for :func:`show_hint` and :data:`OUTCOMES` (the
    title by default). ``mistakes`` are ``(wrong_fn, hint)`` pairs for diagnosis; ``draw(seed)``
    gives the drawn cases (by default the first visible case with tensors, its values shuffled).
    """
    ex = exercise or title
    if _CAPTURE["on"]:
        raise _Captured(dict(exercise=ex, fn=fn, solution=solution, cases=cases, title=title, compare=compare,
                             forbid=tuple(forbid), mistakes=tuple(mistakes), draw=draw,
                             hints=list(hints) if hints is not None else ([hint] if hint else [])))
    hints = list(hints) if hints is not None else ([hint] if hint else [])
    _HINTS[ex] = hints
    solutions = {} if _ALLOW_SOLUTIONS["on"] else _solutions()
    flagged = {"solution": None}

    def record(status, lines, case=None, label=None):
        _record(ex, status, lines, case=case, label=label, solution=flagged["solution"] is not None)

    try:
        if not callable(fn):
            record("error", [t("ex.not_callable", title=title, what=type(fn).__name__)])
            return False
        n = len(cases)
        seed, _ = case_seed()
        everything = list(cases) + _cases_with_drawn(cases, draw, seed)
        notes = []
        for i, case in enumerate(everything, start=1):
            expected = solution(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            guard = _Guard(_rules(tuple(forbid)), solutions)
            _GUARD["now"] = guard
            try:
                got = _call_forbidding(fn, tuple(forbid), copy.deepcopy(case.args), copy.deepcopy(case.kwargs))
            except _Forbidden as err:
                if guard.solution:
                    flagged["solution"] = guard.solution
                    record("solution", [t("ex.solution", title=title, name=guard.solution)], case=i, label=case.label)
                    return False
                record("forbidden", [t("ex.forbidden", title=title, name=err.name)], case=i, label=case.label)
                return False
            except Exception as err:  # the learner's bug is reported, never raised
                if guard.solution:
                    flagged["solution"] = guard.solution
                    record("solution", [t("ex.solution", title=title, name=guard.solution)], case=i, label=case.label)
                    return False
                if isinstance(err, NotImplementedError) and _raised_by_learner(err):
                    record("todo", [t("ex.todo", title=title)])
                    return False
                text = str(err) if len(str(err)) <= 4000 else str(err)[:3997] + "..."  # the learner's own message
                lines = [t("ex.raised", title=title, i=i, n=n, label=case.label, err=f"{type(err).__name__}: {text}")
                         if i <= n else t("ex.raised_drawn", title=title, label=case.label,
                                           err=f"{type(err).__name__}: {text}")]
                where = _learner_line(err)
                if where:
                    lines.append(t("ex.where", line=where[0], code=where[1] or "?"))
                lines.append(t("ex.inputs", what=describe(case.args)))
                record("error", lines + _staged_hint(ex, i, hints), case=i, label=case.label)
                return False
            finally:
                _GUARD["now"] = None
            copied = None if guard.solution else _copied(guard.learner, solutions)
            if guard.solution or copied:
                flagged["solution"] = guard.solution or copied
                key = "ex.solution" if guard.solution else "ex.copied"
                record("solution", [t(key, title=title, name=flagged["solution"])], case=i, label=case.label)
                return False
            if isinstance(got, Result) and isinstance(got[1], _Unmeasured):
                notes = [t("ex.unmeasured", what=got[1].what)]
            why = compare(got, expected)
            if why:
                lines = [t("ex.fail", title=title, i=i, n=n, label=case.label) if i <= n else
                         t("ex.fail_drawn", title=title, label=case.label),
                         t("ex.inputs", what=describe(case.args)),
                         t("ex.expected", what=_describe_answer(expected)),
                         t("ex.got", what=_describe_answer(got)),  # a near miss shows the answer
                         t("ex.why", what=why)] + notes
                found = _diagnose(mistakes, case, got, compare)
                if found:
                    lines.append(t("ex.hint", what=found))
                else:
                    lines += _staged_hint(ex, i, hints)
                record("failed", lines, case=i, label=case.label)
                return False
        _STAGE.pop(ex, None)
        record("passed", [t("ex.pass", title=title, n=n)] + notes)
        return True
    except Exception as err:  # a checker must never raise into the notebook
        record("error", [f"❌ {title}: {type(err).__name__}: {err}"])
        return False


def show_hint(exercise: str, level: int | None = None) -> None:
    """Print the hints of ``exercise`` (after its check ran once), up to ``level`` (all)."""
    hints = _HINTS.get(exercise)
    if not hints:
        print(t("ex.hints_none", ex=exercise, known=", ".join(sorted(_HINTS)) or "-"))
        return
    print(t("ex.hints_title", ex=exercise))
    for k, h in enumerate(hints[:level], start=1):
        print(f"  {k}. {h}")


# ---- questions ----

def _plain(text: str) -> str:
    """Lower case, full-width folded (NFKC), spaces squeezed, outer punctuation dropped."""
    text = unicodedata.normalize("NFKC", str(text)).strip().lower()
    text = re.sub(r"\s+", " ", text)
    return text.strip(" .。,，;；:：!！?？'\"“”‘’")


def _choice_letter(answer: Any, choices: dict[str, str]) -> str | None:
    """The choice ``answer`` names: its letter however spelled (``c``, ``C``, ``c)``, ``(c)``,
    ``（c）``, ``Ｃ``, ``c) text``) or its text in either language."""
    plain = _plain(answer)
    letters = {k.lower(): k for k in choices}
    bare = plain.strip("()[]（）【】")
    if bare in letters:
        return letters[bare]
    found = re.match(r"^[(\[]?([a-z])[)\].:]\s*(.*)$", plain)
    if found and found.group(1) in letters:
        letter = letters[found.group(1)]
        rest = found.group(2)
        if not rest or _same_text(rest, choices[letter]):
            return letter
    for letter, text in choices.items():
        if _same_text(plain, text):
            return letter
    return None


def _same_text(plain: str, text: str) -> bool:
    """``plain`` is the choice's ``text`` in the current language or in the other one."""
    versions = {_plain(text)}
    for texts in catalog().values():
        if text in texts.values():
            versions |= {_plain(v) for v in texts.values()}
    return _plain(plain) in versions


def check_answer(answer: Any, expected: Any, exercise: str, title: str, explanation: str,
                 nudge: str = "", tol: float = 0.0, choices: dict[str, str] | None = None) -> bool:
    """Check a predicted number (relative tolerance ``tol``) or a choice of ``choices``.

    ``None`` (or ``...``) is "not answered yet". A right answer shows the explanation; a wrong
    one the nudge and how to ask for the answer (:func:`show_answer`); the answer is never shown
    because choices ran out.
    """
    if _CAPTURE["on"]:
        raise _Captured(dict(exercise=exercise, question=True, expected=expected, choices=choices, tol=tol,
                             title=title))
    try:
        if choices is not None:
            _ANSWERS[exercise] = (f"{expected}) {choices[expected]}", explanation)
        else:
            _ANSWERS[exercise] = (describe(expected), explanation)
        if answer is None or answer is Ellipsis:
            _record(exercise, "todo", [t("q.todo", title=title)])
            return False
        if choices is not None:
            letter = _choice_letter(answer, choices)
            if letter is None:
                listing = t("q.choice_sep").join(f"{k}) {v}" for k, v in choices.items())
                _record(exercise, "failed", [t("q.fail", title=title, answer=describe(answer)),
                                             t("q.choices", choices=listing)])
                return False
            ok = letter == str(expected).lower()
            shown = f"{letter}) {choices[letter]}"
        else:
            if isinstance(answer, bool) or not isinstance(answer, (int, float)):
                try:
                    answer = float(answer.item() if hasattr(answer, "item") else answer)
                except (TypeError, ValueError):
                    _record(exercise, "failed", [t("q.not_number", title=title, what=describe(answer))])
                    return False
            ok = abs(float(answer) - float(expected)) <= tol * abs(float(expected)) + 1e-12
            shown = describe(answer)
        if ok:
            _WRONG.pop(exercise, None)
            _record(exercise, "passed", [t("q.pass", title=title, answer=shown),
                                         t("q.why", what=explanation)])
            return True
        _WRONG[exercise] = _WRONG.get(exercise, 0) + 1
        lines = [t("q.fail", title=title, answer=shown)]
        if nudge:
            lines.append(t("ex.hint", what=nudge))
        if _WRONG[exercise] >= 2:
            lines.append(t("q.ask", ex=exercise))
        _record(exercise, "failed", lines)
        return False
    except Exception as err:  # never raise into the notebook
        _record(exercise, "error", [f"❌ {title}: {type(err).__name__}: {err}"])
        return False


def show_answer(exercise: str) -> None:
    """Print a question's answer and why (after its check cell ran once)."""
    if exercise not in _ANSWERS:
        print(t("q.none", ex=exercise, known=", ".join(sorted(_ANSWERS)) or "-"))
        return
    shown, why = _ANSWERS[exercise]
    print(t("q.reveal", expected=shown))
    print(t("q.why", what=why))


# ---- the checkers as data ----

@dataclass
class Exercise:
    """One exercise's checker as data (see :func:`registry`).

    - ``cases(seed)``: the visible cases then the drawn ones (``seed`` None: the case seed);
    - ``prepare(fn)``: what to call on the learner's side (the learner's function wrapped as
      the checker wraps it, e.g. :class:`Measured`); ``prepare(fn)(*case.args, **case.kwargs)``;
    - ``expected(case)``: the reference result; ``compare(got, expected)``: None or why not;
    - ``diagnose(case, got)``: the hint of the mistake found, or None;
    - ``solution``: the reference; ``forbid``: the forbidden names; ``check(fn)``: the checker.
    Questions have ``question=True``, ``expected_answer`` and ``choices``, and no cases.
    """

    id: str
    check: Callable
    title: str = ""
    solution: Callable | None = None
    compare: Callable | None = None
    forbid: tuple = ()
    mistakes: tuple = ()
    visible: list = field(default_factory=list)
    draw: Callable | None = None
    question: bool = False
    expected_answer: Any = None
    choices: dict | None = None

    def cases(self, seed: int | None = None) -> list[Case]:
        seed = case_seed()[0] if seed is None else seed
        return list(self.visible) + _cases_with_drawn(self.visible, self.draw, seed)

    def prepare(self, fn: Callable) -> Callable:
        return _capture(self.check, fn)["fn"]

    def expected(self, case: Case) -> Any:
        return self.solution(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))

    def diagnose(self, case: Case, got: Any) -> str | None:
        return _diagnose(self.mistakes, case, got, self.compare)


def _capture(check: Callable, fn: Any) -> dict:
    _CAPTURE["on"] = True
    try:
        check(fn)
    except _Captured as c:
        return c.spec
    finally:
        _CAPTURE["on"] = False
    raise RuntimeError(f"{check.__name__} did not call run_checks or check_answer")


def registry(chapters: tuple[str, ...] | None = None) -> dict[str, Exercise]:
    """``{exercise id: Exercise}`` for every checker of attnkit.exercises.ch01 ... (or of
    ``chapters``, e.g. ``("ch08",)``), read from the checkers themselves."""
    names = chapters or tuple(f"ch{n:02d}" for n in range(1, 100)
                              if (Path(__file__).parent / f"ch{n:02d}.py").exists())
    out = {}

    def probe(*args, **kwargs):
        raise NotImplementedError

    for chapter in names:
        mod = importlib.import_module(f"{__name__}.{chapter}")
        for attr, check in vars(mod).items():
            if not attr.startswith("check_") or not callable(check) or getattr(check, "__module__", "") != mod.__name__:
                continue
            spec = _capture(check, probe)
            if spec.get("question"):
                out[spec["exercise"]] = Exercise(spec["exercise"], check, spec["title"], question=True,
                                                 expected_answer=spec["expected"], choices=spec["choices"])
                continue
            if not spec["cases"]:  # a checker that returns early without a callable: ask again
                spec = _capture(check, probe)
            out[spec["exercise"]] = Exercise(spec["exercise"], check, spec["title"], spec["solution"],
                                             spec["compare"], spec["forbid"], spec["mistakes"], spec["cases"],
                                             spec["draw"])
    return out
