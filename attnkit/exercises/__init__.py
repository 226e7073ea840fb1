"""A small checker for notebook exercises, with feedback in the learner's language.

A chapter's exercise module (``attnkit.exercises.ch01`` ...) holds the reference solutions and
one ``check_...(your_fn)`` per exercise, built on :func:`run_checks`. A checker runs the
learner's function on a list of :class:`Case` s, compares with the solution, and prints either
a success line or the first failing case (its inputs, expected vs got, and a hint). It never
raises: a learner's exception is reported, not propagated. It returns True or False.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from attnkit.i18n import register, t

__all__ = ["Case", "run_checks", "compare_tensors", "describe"]

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
    "ex.why": {"en": "   problem:  {what}", "zh": "   问题：    {what}"},
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
})


@dataclass
class Case:
    """One call of the learner's function: ``fn(*args, **kwargs)``; ``label`` says what it tests."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


def describe(x: Any, limit: int = 12) -> str:
    """A short, readable summary: small tensors in full (4 decimals), big ones by shape."""
    if isinstance(x, torch.Tensor):
        if x.numel() <= limit:
            vals = [round(v, 4) if isinstance(v, float) else v for v in x.flatten().tolist()]
            return f"tensor{tuple(x.shape)} {x.dtype} {vals}"
        return f"tensor of shape {tuple(x.shape)}, {x.dtype}"
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


def run_checks(fn: Callable, solution: Callable, cases: list[Case], title: str, hint: str,
               compare: Callable[[Any, Any], str | None] = compare_tensors) -> bool:
    """Run ``fn`` and ``solution`` on every case; print feedback; return whether all pass."""
    try:
        if not callable(fn):
            print(t("ex.not_callable", title=title, what=type(fn).__name__))
            return False
        n = len(cases)
        for i, case in enumerate(cases, start=1):
            expected = solution(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            try:
                got = fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            except NotImplementedError:
                print(t("ex.todo", title=title))
                return False
            except Exception as err:  # the learner's bug is reported, never raised
                print(t("ex.raised", title=title, i=i, n=n, label=case.label,
                        err=f"{type(err).__name__}: {err}"))
                print(t("ex.inputs", what=describe(case.args)))
                print(t("ex.hint", what=hint))
                return False
            why = compare(got, expected)
            if why:
                print(t("ex.fail", title=title, i=i, n=n, label=case.label))
                print(t("ex.inputs", what=describe(case.args)))
                print(t("ex.expected", what=describe(expected)))
                print(t("ex.got", what=describe(got)))
                print(t("ex.why", what=why))
                print(t("ex.hint", what=hint))
                return False
        print(t("ex.pass", title=title, n=n))
        return True
    except Exception as err:  # a checker must never raise into the notebook
        print(f"❌ {title}: {type(err).__name__}: {err}")
        return False
