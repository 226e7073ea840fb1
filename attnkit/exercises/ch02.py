"""Chapter 02 exercises: the variance of a dot product, the scale that fixes it, saturation."""

from __future__ import annotations

import math

from attnkit import experiments as E
from attnkit.exercises import Case, run_checks
from attnkit.i18n import register, t

register(
    {
        "ch02.ex1.title": {"en": "Exercise 1 · the variance of q·k", "zh": "练习 1 · q·k 的方差"},
        "ch02.ex1.hint": {
            "en": "q·k = Σ_i q_i k_i is a sum of d_k independent products. Var(q_i k_i) = E[q_i²] E[k_i²] = std² · std² when the means are 0, and variances of independent terms add up.",
            "zh": "q·k = Σ_i q_i k_i 是 d_k 个相互独立的乘积之和。均值为 0 时 Var(q_i k_i) = E[q_i²] E[k_i²] = std² · std²，而相互独立的项，方差可以直接相加。",
        },
        "ch02.ex2.title": {
            "en": "Exercise 2 · the scale that gives unit variance",
            "zh": "练习 2 · 让方差变为 1 的缩放系数",
        },
        "ch02.ex2.hint": {
            "en": "Var(c · q·k) = c² · Var(q·k). Solve c² · d_k · std⁴ = 1 for c > 0. With std = 1 it is the familiar 1/√d_k.",
            "zh": "Var(c · q·k) = c² · Var(q·k)。解方程 c² · d_k · std⁴ = 1（取 c > 0）。std = 1 时，答案就是熟悉的 1/√d_k。",
        },
        "ch02.ex3.title": {
            "en": "Exercise 3 · the d_k at which the unscaled softmax saturates",
            "zh": "练习 3 · 不缩放的 softmax 从哪个 d_k 开始饱和",
        },
        "ch02.ex3.hint": {
            "en": "Loop over d_k in DK_CHOICES (in increasing order) and return the first one whose saturation(d_k, seq_len, n_rows=256, scaled=False, seed=0)['max_weight'] is >= threshold; return None if none is.",
            "zh": "按从小到大的顺序遍历 DK_CHOICES 中的 d_k，返回第一个满足 saturation(d_k, seq_len, n_rows=256, scaled=False, seed=0)['max_weight'] >= threshold 的 d_k；如果都不满足，返回 None。",
        },
        "ch02.case.dk_std": {"en": "d_k = {d}, std = {s}", "zh": "d_k = {d}，std = {s}"},
        "ch02.case.threshold": {"en": "threshold {th}, {n} keys", "zh": "阈值 {th}，{n} 个键"},
    }
)

DK_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


# ---- reference solutions (kept out of the notebooks) ----


def solution_dot_variance(d_k, std):
    return d_k * std**4  # sum of d_k independent products, each of variance std^2 * std^2


def solution_unit_variance_scale(d_k, std):
    return 1.0 / (math.sqrt(d_k) * std**2)  # c^2 d_k std^4 = 1


def solution_first_saturated_dk(threshold, seq_len):
    for d_k in DK_CHOICES:
        if E.saturation(d_k, seq_len, n_rows=256, scaled=False, seed=0)["max_weight"] >= threshold:
            return d_k
    return None


# ---- checkers ----

_DK_STD = ((64, 1.0), (16, 2.0), (8, 0.5), (1, 3.0))


def check_dot_variance(fn) -> bool:
    cases = [Case((d, s), label=t("ch02.case.dk_std", d=d, s=s)) for d, s in _DK_STD]
    return run_checks(fn, solution_dot_variance, cases, t("ch02.ex1.title"), t("ch02.ex1.hint"))


def check_unit_variance_scale(fn) -> bool:
    cases = [Case((d, s), label=t("ch02.case.dk_std", d=d, s=s)) for d, s in _DK_STD]
    return run_checks(
        fn, solution_unit_variance_scale, cases, t("ch02.ex2.title"), t("ch02.ex2.hint")
    )


def check_first_saturated_dk(fn) -> bool:
    cases = [
        Case((th, n), label=t("ch02.case.threshold", th=th, n=n))
        for th, n in ((0.5, 16), (0.8, 4), (0.9, 16), (0.99, 16))
    ]
    return run_checks(
        fn, solution_first_saturated_dk, cases, t("ch02.ex3.title"), t("ch02.ex3.hint")
    )
