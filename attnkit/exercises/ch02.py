"""Chapter 02's exercises: the checkers, their cases and their reference solutions.

Chapter 02 exercises: the variance of a dot product, the scale that fixes it, saturation, a
predict-first question (how the spread of the scores grows with d_k) and a stretch exercise (the
variance of q·k when the entries have non-zero means and different spreads)."""

from __future__ import annotations

import math

from attnkit import experiments as E
from attnkit.exercises import Case, check_answer, drawn, run_checks
from attnkit.i18n import register, t

register(
    {
        "ch02.ex1.title": {"en": "Exercise 1 · the variance of q·k", "zh": "练习 1 · q·k 的方差"},
        "ch02.ex1.nudge": {"en": "Write q·k as a sum over the d_k coordinates. What is the variance of one term, and how do variances of independent terms combine?",
            "zh": "把 q·k 写成 d_k 个坐标上的求和。其中一项的方差是多少？相互独立的项，方差怎样合在一起？"},
        "ch02.ex1.stronger": {"en": "One product q_i k_i of two independent zero-mean numbers has variance std² · std²; there are d_k such terms, and their variances add.",
            "zh": "两个相互独立、均值为 0 的数之积 q_i k_i，方差为 std² · std²；一共有 d_k 项，它们的方差相加。"},
        "ch02.ex1.formula": {
            "en": "q·k = Σ_i q_i k_i is a sum of d_k independent products. Var(q_i k_i) = E[q_i²] E[k_i²] = std² · std² when the means are 0, and variances of independent terms add up.",
            "zh": "q·k = Σ_i q_i k_i 是 d_k 个相互独立的乘积之和。均值为 0 时 Var(q_i k_i) = E[q_i²] E[k_i²] = std² · std²，而相互独立的项，方差可以直接相加。",
        },
        "ch02.ex2.title": {
            "en": "Exercise 2 · the scale that gives unit variance",
            "zh": "练习 2 · 让方差变为 1 的缩放系数",
        },
        "ch02.ex2.nudge": {"en": "Multiplying a random number by c multiplies its variance by what? Use your answer to exercise 1.",
            "zh": "一个随机数乘以 c，它的方差会乘以多少？用上练习 1 的答案。"},
        "ch02.ex2.stronger": {"en": "Set c² times the variance of exercise 1 equal to 1 and take the positive root. With std = 1 you should find a familiar scale.",
            "zh": "令 c² 乘以练习 1 的方差等于 1，取正根。std = 1 时，你应当得到一个熟悉的缩放系数。"},
        "ch02.ex2.formula": {
            "en": "Var(c · q·k) = c² · Var(q·k). Solve c² · d_k · std⁴ = 1 for c > 0. With std = 1 it is the familiar 1/√d_k.",
            "zh": "Var(c · q·k) = c² · Var(q·k)。解方程 c² · d_k · std⁴ = 1（取 c > 0）。std = 1 时，答案就是熟悉的 1/√d_k。",
        },
        "ch02.ex3.title": {
            "en": "Exercise 3 · the d_k at which the unscaled softmax saturates",
            "zh": "练习 3 · 不缩放的 softmax 从哪个 d_k 开始饱和",
        },
        "ch02.ex3.nudge": {"en": "Try the d_k values in increasing order: which is the first whose largest weight reaches the threshold? Do you use the unscaled scores?",
            "zh": "按从小到大的顺序试各个 d_k：哪个 d_k 的最大权重第一次达到阈值？你用的是不缩放的分数吗？"},
        "ch02.ex3.stronger": {"en": "Use the chapter's saturation(...) with scaled=False, n_rows=256, seed=0 and read its 'max_weight'; return None when no d_k in DK_CHOICES reaches the threshold.",
            "zh": "用本章的 saturation(...)，参数为 scaled=False、n_rows=256、seed=0，读取其中的 'max_weight'；如果 DK_CHOICES 中没有任何 d_k 达到阈值，返回 None。"},
        "ch02.ex3.formula": {"en": "Loop over d_k in DK_CHOICES (in increasing order) and return the first one whose `saturation(d_k, seq_len, n_rows=256, scaled=False, seed=0)['max_weight']` is >= threshold, or None if none is.",
        "zh": "按从小到大的顺序遍历 DK_CHOICES 中的 d_k，返回第一个满足 `saturation(d_k, seq_len, n_rows=256, scaled=False, seed=0)['max_weight']` >= threshold 的 d_k；如果都不满足，返回 None。"},
        # question
        "ch02.q1.title": {"en": "Question 1 · how much wider the unscaled scores spread when d_k goes from 64 to 256",
                          "zh": "问题 1 · d_k 从 64 变成 256 时，未缩放分数的分布变宽几倍"},
        "ch02.q1.why": {"en": "Var(q·k) = d_k grows 4 times, so the standard deviation, the typical size of a score, "
                              "grows √4 = 2 times: from 8 to 16. The spread grows like √d_k, which is why the scale is "
                              "1/√d_k and not 1/d_k (section 6 shows what 1/d_k does).",
                        "zh": "Var(q·k) = d_k 变成 4 倍，所以标准差（分数的典型大小）变成 √4 = 2 倍：从 8 变成 16。"
                              "分布的宽度按 √d_k 增长，所以缩放系数是 1/√d_k 而不是 1/d_k（第 6 节演示了除以 d_k 会怎样）。"},
        "ch02.q1.nudge": {"en": "The variance grows like d_k. The spread (the standard deviation) is its square root.",
                          "zh": "方差按 d_k 增长，而分布的宽度（标准差）是方差的平方根。"},
        # stretch
        "ch02.ex4.title": {"en": "Stretch · the variance of q·k when the entries have non-zero means",
                           "zh": "挑战题 · 分量均值不为 0 时 q·k 的方差"},
        "ch02.ex4.nudge": {"en": "Still a sum of d_k independent products, so variances still add. But with a mean, "
                                 "Var(q_i k_i) is no longer E[q_i²] E[k_i²]: what is subtracted?",
                           "zh": "它仍然是 d_k 个相互独立的乘积之和，方差仍然可以相加。但有了均值，Var(q_i k_i) 就不再等于"
                                 " E[q_i²] E[k_i²]：还要减去什么？"},
        "ch02.ex4.stronger": {"en": "Var(X) = E[X²] - E[X]². For X = q_i k_i with q_i, k_i independent, E[X²] = E[q_i²] E[k_i²] "
                                    "and E[X] = mean_q · mean_k; and E[q_i²] = std_q² + mean_q².",
                              "zh": "Var(X) = E[X²] - E[X]²。对 X = q_i k_i（q_i 与 k_i 相互独立），E[X²] = E[q_i²] E[k_i²]，"
                                    "E[X] = mean_q · mean_k；而 E[q_i²] = std_q² + mean_q²。"},
        "ch02.ex4.formula": {"en": "Var(q·k) = d_k · ((std_q² + mean_q²)(std_k² + mean_k²) - mean_q² mean_k²) "
                                   "= d_k · (std_q² std_k² + std_q² mean_k² + mean_q² std_k²).",
                             "zh": "Var(q·k) = d_k · ((std_q² + mean_q²)(std_k² + mean_k²) - mean_q² mean_k²) "
                                   "= d_k · (std_q² std_k² + std_q² mean_k² + mean_q² std_k²)。"},
        "ch02.case.means": {"en": "d_k = {d}, q: mean {mq}, std {sq}; k: mean {mk}, std {sk}",
                            "zh": "d_k = {d}，q：均值 {mq}，标准差 {sq}；k：均值 {mk}，标准差 {sk}"},
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


def solution_score_variance(d_k, mean_q, std_q, mean_k, std_k):
    second_q, second_k = std_q**2 + mean_q**2, std_k**2 + mean_k**2   # E[q_i²], E[k_i²]
    return d_k * (second_q * second_k - (mean_q * mean_k) ** 2)        # d_k · (E[X²] - E[X]²), X = q_i k_i



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch02.mistake.ex1.std2': {"en": 'you used the variance of one factor (std²); each product q_i k_i has variance std² · std² = std⁴.', "zh": '你用了单个因子的方差（std²）；每个乘积 q_i k_i 的方差是 std² · std² = std⁴。'},
    'ch02.mistake.ex1.one_term': {"en": 'that is the variance of one product; the dot product sums d_k of them, and their variances add.', "zh": '这是一个乘积的方差；点积是 d_k 个乘积之和，它们的方差相加。'},
    'ch02.mistake.ex2.no_std': {"en": 'you left out std: the scale must undo std² as well as sqrt(d_k).', "zh": '你漏掉了 std：缩放因子既要抵消 sqrt(d_k)，也要抵消 std²。'},
    'ch02.mistake.ex2.variance': {"en": 'you divided by the variance d_k std⁴; a scale c multiplies the variance by c², so c is one over its square root.', "zh": '你除以的是方差 d_k std⁴；缩放因子 c 会让方差乘以 c²，所以 c 应是方差平方根的倒数。'},
    'ch02.mistake.ex3.scaled': {"en": 'you measured the scaled scores: divided by sqrt(d_k) they keep unit variance and never saturate. The exercise asks about the unscaled ones (scaled=False).', "zh": '你测的是缩放后的分数：除以 sqrt(d_k) 后方差保持为 1，永远不会饱和。练习问的是不缩放的分数（scaled=False）。'},
    'ch02.mistake.ex3.one_early': {"en": 'you returned the last d_k whose largest weight is still below the threshold; the answer is the next one, the first that reaches it.', "zh": '你返回的是最大权重仍低于阈值的最后一个 d_k；答案是下一个，即第一个达到阈值的 d_k。'},
    'ch02.mistake.ex3.weight': {"en": 'you returned the largest weight itself; the answer is the d_k at which it first reaches the threshold.', "zh": '你返回的是最大权重本身；答案是它第一次达到阈值时的 d_k。'},
    'ch02.mistake.ex4.no_means': {"en": 'you left out the means: with a non-zero mean, E[q_i²] = std² + mean², not std².', "zh": '你忽略了均值：均值不为零时，E[q_i²] = std² + mean²，而不是 std²。'},
    'ch02.mistake.ex4.no_square_mean': {"en": 'you gave d_k E[X²]; the variance is E[X²] − E[X]², with E[X] = mean_q · mean_k.', "zh": '你算的是 d_k E[X²]；方差是 E[X²] − E[X]²，其中 E[X] = mean_q · mean_k。'},
})


def _first_dk(threshold, seq_len, scaled=False, shift=0, weight=False):
    """A wrong reading of exercise 3: scaled scores, the d_k one step early, or the weight itself."""
    for i, d_k in enumerate(DK_CHOICES):
        w = E.saturation(d_k, seq_len, n_rows=256, scaled=scaled, seed=0)["max_weight"]
        if w >= threshold:
            return w if weight else DK_CHOICES[max(i + shift, 0)]
    return None


MISTAKES = {
    "ch02.ex3": (
        (lambda th, n: _first_dk(th, n, scaled=True), lambda: t('ch02.mistake.ex3.scaled')),
        (lambda th, n: _first_dk(th, n, shift=-1), lambda: t('ch02.mistake.ex3.one_early')),
        (lambda th, n: _first_dk(th, n, weight=True), lambda: t('ch02.mistake.ex3.weight')),
    ),
    "ch02.ex1": (
        (lambda d_k, std: d_k * std**2, lambda: t('ch02.mistake.ex1.std2')),
        (lambda d_k, std: std**4, lambda: t('ch02.mistake.ex1.one_term')),
    ),
    "ch02.ex2": (
        (lambda d_k, std: 1.0 / math.sqrt(d_k), lambda: t('ch02.mistake.ex2.no_std')),
        (lambda d_k, std: 1.0 / (d_k * std**4), lambda: t('ch02.mistake.ex2.variance')),
    ),
    "ch02.ex4": (
        (lambda d_k, mq, sq, mk, sk: d_k * sq**2 * sk**2, lambda: t('ch02.mistake.ex4.no_means')),
        (lambda d_k, mq, sq, mk, sk: d_k * (sq**2 + mq**2) * (sk**2 + mk**2), lambda: t('ch02.mistake.ex4.no_square_mean')),
    ),
}


# ---- checkers ----

_DK_STD = ((64, 1.0), (16, 2.0), (8, 0.5), (1, 3.0))


def _draw_dk_std(seed):
    return drawn(seed, lambda r: (lambda d, s: Case((d, s), label=t("ch02.case.dk_std", d=d, s=s)))(
        2 ** r.randint(0, 10), round(r.uniform(0.3, 3.0), 2)))


def _draw_means(seed):
    def make(r):
        c = (2 ** r.randint(2, 7), *(round(r.uniform(-2.0, 2.0), 1) if i % 2 == 0 else round(r.uniform(0.2, 2.5), 1)
                                      for i in range(4)))
        return Case(c, label=t("ch02.case.means", d=c[0], mq=c[1], sq=c[2], mk=c[3], sk=c[4]))
    return drawn(seed, make)


def check_dot_variance(fn) -> bool:
    cases = [Case((d, s), label=t("ch02.case.dk_std", d=d, s=s)) for d, s in _DK_STD]
    return run_checks(fn, solution_dot_variance, cases, t("ch02.ex1.title"),
                      hints=[t("ch02.ex1.nudge"), t("ch02.ex1.stronger"), t("ch02.ex1.formula")],
                      exercise="ch02.ex1", draw=_draw_dk_std, mistakes=MISTAKES["ch02.ex1"])


def check_unit_variance_scale(fn) -> bool:
    cases = [Case((d, s), label=t("ch02.case.dk_std", d=d, s=s)) for d, s in _DK_STD]
    return run_checks(
        fn, solution_unit_variance_scale, cases, t("ch02.ex2.title"),
        hints=[t("ch02.ex2.nudge"), t("ch02.ex2.stronger"), t("ch02.ex2.formula")],
        exercise="ch02.ex2", draw=_draw_dk_std, mistakes=MISTAKES["ch02.ex2"],
    )


def check_first_saturated_dk(fn) -> bool:
    cases = [
        Case((th, n), label=t("ch02.case.threshold", th=th, n=n))
        for th, n in ((0.5, 16), (0.8, 4), (0.9, 16), (0.99, 16))
    ]
    return run_checks(
        fn, solution_first_saturated_dk, cases, t("ch02.ex3.title"),
        draw=lambda seed: drawn(seed, lambda r: (lambda th, n: Case((th, n), label=t("ch02.case.threshold", th=th, n=n)))(
            round(r.uniform(0.5, 0.95), 2), r.choice((4, 16)))),
        hints=[t("ch02.ex3.nudge"), t("ch02.ex3.stronger"), t("ch02.ex3.formula")],
        exercise="ch02.ex3", mistakes=MISTAKES["ch02.ex3"],
    )


def check_q1(answer) -> bool:
    return check_answer(answer, 2.0, exercise="ch02.q1", title=t("ch02.q1.title"), explanation=t("ch02.q1.why"),
                        nudge=t("ch02.q1.nudge"), tol=0.01)


SCORE_VARIANCE_CASES = ((64, 0.0, 1.0, 0.0, 1.0), (64, 0.0, 1.0, 1.0, 1.0), (16, 0.5, 2.0, -1.0, 0.5),
                        (8, 1.0, 0.5, 2.0, 1.5), (32, 0.0, 0.5, 3.0, 0.0))


def check_score_variance(fn) -> bool:
    cases = [Case(c, label=t("ch02.case.means", d=c[0], mq=c[1], sq=c[2], mk=c[3], sk=c[4]))
             for c in SCORE_VARIANCE_CASES]
    return run_checks(fn, solution_score_variance, cases, t("ch02.ex4.title"),
                      hints=[t("ch02.ex4.nudge"), t("ch02.ex4.stronger"), t("ch02.ex4.formula")],
                      exercise="ch02.ex4", draw=_draw_means, mistakes=MISTAKES["ch02.ex4"],
                      forbid=("attnkit.experiments.scaling.dot_product_variance", "attnkit.experiments.scaling.dot_products",
                              "attnkit.experiments.scaling.dot_product_variance_theory"))
