"""A small checker for notebook exercises, with feedback in the learner's language.

A chapter's exercise module (``attnkit.exercises.ch01`` ...) holds the reference solutions and
one ``check_...(your_fn)`` per exercise, built on :func:`run_checks`. A checker runs the
learner's function on a list of :class:`Case` s, compares with the solution, and prints either
a success line or the first failing case (its inputs, expected vs got, and a hint). It never
raises: a learner's exception is reported, not propagated. It returns True or False.

Hints are staged. ``hints=[nudge, stronger, formula]``: the first failure prints what is wrong
and the nudge; the same case failing again prints the stronger hint; the last hint (the formula,
the answer) is printed only when the learner asks for it with ``show_hint("ch01.ex1")``.
``forbid=("torch.nn.functional.scaled_dot_product_attention",)`` fails a function that calls the
built-in the exercise asks the learner to write.

:func:`check_answer` checks a predict-first or conceptual question (a number or a choice) and
shows the explanation once it is answered (right, or wrong twice).

Every check records its outcome in :data:`OUTCOMES` (exercise id -> status, case, label,
feedback, solution) and publishes the same record next to the text it shows. In a notebook the
feedback is one ``display_data`` output: its ``text/plain`` is the feedback (what the learner
reads, what nbval compares) and its :data:`OUTCOME_MIME` entry the record (JupyterLab has no
renderer for that type and shows the text), so a grader reads every check's outcome from the
executed notebook without parsing prose (``python -m attnkit.classroom grade``). Outside a
notebook the feedback is printed. ``solution`` is True when the learner's function ran one of
attnkit's reference solutions (imported, wrapped or handed in) while it was checked.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from attnkit.i18n import register, t

__all__ = ["Case", "Measured", "run_checks", "check_answer", "show_hint", "compare_tensors", "describe",
           "OUTCOMES", "OUTCOME_MIME"]

# the MIME type of the outcome record in a check's display_data output (a JSON object)
OUTCOME_MIME = "application/vnd.attnkit.outcome+json"

register({
    "ex.pass": {"en": "✅ {title}: all {n} cases pass. Well done!",
                "zh": "✅ {title}：{n} 个测试用例全部通过，做得好！"},
    "ex.todo": {"en": "⏳ {title}: not done yet — replace `raise NotImplementedError` with your code and run this cell again.",
                "zh": "⏳ {title}：还没有完成——把 `raise NotImplementedError` 换成你的代码，然后重新运行这个单元格。"},
    "ex.fail": {"en": "❌ {title}: case {i} of {n} fails ({label}).",
                "zh": "❌ {title}：共 {n} 个用例，第 {i} 个（{label}）未通过。"},
    "ex.raised": {"en": "❌ {title}: case {i} of {n} ({label}) raised {err}",
                  "zh": "❌ {title}：共 {n} 个用例，第 {i} 个（{label}）抛出了异常：{err}"},
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
    "ex.why_nan": {"en": "the result contains NaN where the expected one does not",
                   "zh": "结果里出现了 NaN，而期望结果中没有"},
    "ex.why_values": {"en": "values differ by up to {diff:.3g} (tolerance {tol:.1g})",
                      "zh": "数值最多相差 {diff:.3g}（允许误差 {tol:.1g}）"},
    "ex.why_value": {"en": "{got} instead of {exp}", "zh": "得到 {got}，应为 {exp}"},
    "ex.more": {"en": "   more:     show_hint(\"{ex}\") prints every hint, the full formula last.",
                "zh": "   更多：    运行 show_hint(\"{ex}\") 可以看到全部提示，最后一条是完整公式。"},
    "ex.forbidden": {"en": "❌ {title}: your function calls {name}, the built-in this exercise asks you to write yourself. Compute it from the formula instead.",
                     "zh": "❌ {title}：你的函数调用了 {name}，而这道练习要你自己实现它。请按公式一步步计算。"},
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
    "q.choices": {"en": "   choose one of: {choices}", "zh": "   请从这些选项中选一个：{choices}"},
    "q.not_number": {"en": "❌ {title}: expected a number, got {what}.",
                     "zh": "❌ {title}：需要一个数字，实际得到的是 {what}。"},
})

# exercise id -> its hints (in the language of the last check), the state of staged hints, and
# the outcome of the last check of every exercise (read by graders; never parsed from prose).
_HINTS: dict[str, list[str]] = {}
_STAGE: dict[str, tuple[int, int]] = {}   # exercise id -> (failing case, hint level shown)
_WRONG: dict[str, int] = {}               # question id -> wrong answers so far
OUTCOMES: dict[str, dict] = {}


@dataclass
class Case:
    """One call of the learner's function: ``fn(*args, **kwargs)``; ``label`` says what it tests."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


class Measured:
    """``Measured(fn)(*args) -> (fn(*args), peak bytes)``, for exercises that check memory too.

    Pass ``Measured(learner_fn)`` and ``Measured(solution)`` to :func:`run_checks` with a
    ``compare`` that looks at both parts. The peak is attnkit.flash's op-by-op allocation count.
    It keeps ``fn``'s globals, so ``forbid`` still sees names imported into the learner's notebook.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.__globals__ = getattr(fn, "__globals__", {})

    def __call__(self, *args):
        from attnkit.flash import measure_peak_bytes

        return measure_peak_bytes(self.fn, *args)


def describe(x: Any, limit: int = 12) -> str:
    """A short, readable summary: small tensors in full (4 decimals), big ones by shape."""
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
    return repr(x)


def compare_tensors(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when ``got`` matches ``expected``, else a sentence (current language) saying why not."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return t("ex.why_type", exp="torch.Tensor", got=type(got).__name__)
        if got.shape != expected.shape:
            return t("ex.why_shape", got=tuple(got.shape), exp=tuple(expected.shape))
        if got.dtype != expected.dtype and got.dtype.is_floating_point != expected.dtype.is_floating_point:
            return t("ex.why_dtype", got=got.dtype, exp=expected.dtype)
        g, e = got.detach().double(), expected.detach().double()
        if torch.isnan(g).any() and not torch.isnan(e).any():
            return t("ex.why_nan")
        if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
            diff = (g - e).abs().nan_to_num(float("inf")).max().item()
            return t("ex.why_values", diff=diff, tol=atol)
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return t("ex.why_type", exp=f"{type(expected).__name__} of {len(expected)}", got=describe(got))
        for g, e in zip(got, expected, strict=True):
            why = compare_tensors(g, e, atol, rtol)
            if why:
                return why
        return None
    if isinstance(expected, float) or isinstance(got, float):
        try:
            ok = abs(float(got) - float(expected)) <= atol + rtol * abs(float(expected))
        except (TypeError, ValueError):
            ok = False
        return None if ok else t("ex.why_value", got=describe(got), exp=describe(expected))
    return None if got == expected else t("ex.why_value", got=describe(got), exp=describe(expected))


def _record(exercise: str, status: str, lines: list[str], case: int | None = None,
            label: str | None = None, solution: bool = False) -> None:
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


def _solution_codes() -> set:
    """The code objects of every reference solution (``solution_*`` in attnkit.exercises.chNN)."""
    codes = set()
    for name, mod in list(sys.modules.items()):
        if mod is None or not name.startswith(__name__ + ".ch"):
            continue
        for attr, value in list(vars(mod).items()):
            if attr.startswith("solution"):
                code = getattr(value, "__code__", None)
                if code is not None:
                    codes.add(code)
    return codes


class _Watch:
    """Calls the learner's function and notes whether a reference solution's code ran in it."""

    def __init__(self):
        self.codes = _solution_codes()
        self.seen = False

    def call(self, fn: Callable, *args, **kwargs):
        if not self.codes or self.seen:
            return fn(*args, **kwargs)
        previous = sys.getprofile()

        def profile(frame, event, arg):
            if event == "call" and frame.f_code in self.codes:
                self.seen = True
            if previous is not None:
                previous(frame, event, arg)

        sys.setprofile(profile)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.setprofile(previous)


def _staged_hint(exercise: str, case: int, hints: list[str]) -> list[str]:
    """The hint for this failure: one level stronger each time the same case fails again."""
    if not hints:
        return []
    auto = hints[:-1] if len(hints) >= 2 else hints   # the last of two or more: on request only
    last_case, last_level = _STAGE.get(exercise, (None, -1))
    level = min(last_level + 1, len(auto) - 1) if last_case == case else 0
    _STAGE[exercise] = (case, level)
    lines = [t("ex.hint", what=auto[level])]
    if len(hints) >= 2 and level == len(auto) - 1:
        lines.append(t("ex.more", ex=exercise))
    return lines


class _Forbidden(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _call_forbidding(fn: Callable, forbid: tuple[str, ...], args, kwargs):
    """Call ``fn``; raise _Forbidden if it reaches any of the dotted names in ``forbid``."""
    undo = []

    def trap(name):
        def refuse(*_a, **_k):
            raise _Forbidden(name)
        return refuse

    try:
        for dotted in forbid:
            mod_name, attr = dotted.rsplit(".", 1)
            mod = importlib.import_module(mod_name)
            orig = getattr(mod, attr)
            if fn is orig:  # the built-in itself handed in as the answer
                raise _Forbidden(dotted)
            undo.append((mod, attr, orig))
            setattr(mod, attr, trap(dotted))
            # also a name bound by `from module import attr` in the learner's namespace
            scope = getattr(fn, "__globals__", {})
            for gname, value in list(scope.items()):
                if value is orig:
                    undo.append((scope, gname, orig))
                    scope[gname] = trap(dotted)
        return fn(*args, **kwargs)
    finally:
        for where, name, orig in reversed(undo):
            if isinstance(where, dict):
                where[name] = orig
            else:
                setattr(where, name, orig)


def run_checks(fn: Callable, solution: Callable, cases: list[Case], title: str,
               hint: str | None = None, *, hints: list[str] | tuple[str, ...] | None = None,
               exercise: str | None = None,
               compare: Callable[[Any, Any], str | None] = compare_tensors,
               forbid: tuple[str, ...] = ()) -> bool:
    """Run ``fn`` and ``solution`` on every case; print feedback; return whether all pass.

    ``hints`` go from a nudge to the full formula (see the module doc); a single ``hint`` is
    the one-stage form. ``exercise`` names the exercise for :func:`show_hint` and
    :data:`OUTCOMES` (the title by default).
    """
    ex = exercise or title
    hints = list(hints) if hints is not None else ([hint] if hint else [])
    _HINTS[ex] = hints
    watch = _Watch()

    def record(status, lines, case=None, label=None):
        _record(ex, status, lines, case=case, label=label, solution=watch.seen)

    try:
        if not callable(fn):
            record("error", [t("ex.not_callable", title=title, what=type(fn).__name__)])
            return False
        n = len(cases)
        for i, case in enumerate(cases, start=1):
            expected = solution(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            try:
                got = watch.call(_call_forbidding, fn, tuple(forbid), copy.deepcopy(case.args),
                                 copy.deepcopy(case.kwargs))
            except NotImplementedError:
                record("todo", [t("ex.todo", title=title)])
                return False
            except _Forbidden as err:
                record("forbidden", [t("ex.forbidden", title=title, name=err.name)], case=i, label=case.label)
                return False
            except Exception as err:  # the learner's bug is reported, never raised
                lines = [t("ex.raised", title=title, i=i, n=n, label=case.label,
                           err=f"{type(err).__name__}: {err}"),
                         t("ex.inputs", what=describe(case.args))]
                record("error", lines + _staged_hint(ex, i, hints), case=i, label=case.label)
                return False
            why = compare(got, expected)
            if why:
                lines = [t("ex.fail", title=title, i=i, n=n, label=case.label),
                         t("ex.inputs", what=describe(case.args)),
                         t("ex.expected", what=describe(expected)),
                         t("ex.got", what=describe(got)),
                         t("ex.why", what=why)]
                record("failed", lines + _staged_hint(ex, i, hints), case=i, label=case.label)
                return False
        _STAGE.pop(ex, None)
        record("passed", [t("ex.pass", title=title, n=n)])
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


def check_answer(answer: Any, expected: Any, exercise: str, title: str, explanation: str,
                 nudge: str = "", tol: float = 0.0, choices: dict[str, str] | None = None) -> bool:
    """Check a predicted number (relative tolerance ``tol``) or a choice letter of ``choices``.

    ``None`` (or ``...``) is "not answered yet". A right answer shows the explanation; a wrong
    one the nudge, and after two wrong answers the expected answer and the explanation.
    """
    try:
        if answer is None or answer is Ellipsis:
            _record(exercise, "todo", [t("q.todo", title=title)])
            return False
        if choices is not None:
            letter = str(answer).strip().lower()
            if letter not in choices:
                listing = ", ".join(f"{k}) {v}" for k, v in choices.items())
                _record(exercise, "failed", [t("q.fail", title=title, answer=describe(answer)),
                                             t("q.choices", choices=listing)])
                return False
            ok = letter == str(expected).lower()
            shown, shown_expected = f"{letter}) {choices[letter]}", f"{expected}) {choices[expected]}"
        else:
            if isinstance(answer, bool) or not isinstance(answer, (int, float)):
                try:
                    answer = float(answer.item() if hasattr(answer, "item") else answer)
                except (TypeError, ValueError):
                    _record(exercise, "failed", [t("q.not_number", title=title, what=describe(answer))])
                    return False
            ok = abs(float(answer) - float(expected)) <= tol * abs(float(expected)) + 1e-12
            shown, shown_expected = describe(answer), describe(expected)
        if ok:
            _WRONG.pop(exercise, None)
            _record(exercise, "passed", [t("q.pass", title=title, answer=shown),
                                         t("q.why", what=explanation)])
            return True
        _WRONG[exercise] = _WRONG.get(exercise, 0) + 1
        lines = [t("q.fail", title=title, answer=shown)]
        if _WRONG[exercise] >= 2:
            lines += [t("q.reveal", expected=shown_expected), t("q.why", what=explanation)]
        elif nudge:
            lines.append(t("ex.hint", what=nudge))
        _record(exercise, "failed", lines)
        return False
    except Exception as err:  # never raise into the notebook
        _record(exercise, "error", [f"❌ {title}: {type(err).__name__}: {err}"])
        return False
