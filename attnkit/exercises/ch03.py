"""Chapter 03's exercises: the checkers, their cases and their reference solutions.

Chapter 03 exercises: a stable softmax, a masked softmax, merging online-softmax states,
the softmax Jacobian, a predict-first question (what adding a constant to every score does) and a
stretch exercise (the backward pass of log-softmax: stable, in O(n) memory per row)."""

from __future__ import annotations

import torch

from attnkit import softmax as S
from attnkit.exercises import Case, Measured, check_answer, compare_tensors, run_checks
from attnkit.i18n import register, t

register(
    {
        # question
        "ch03.q1.title": {"en": "Question 1 · add 100 to every score", "zh": "问题 1 · 每个分数都加上 100"},
        "ch03.q1.a": {"en": "the largest weight moves closer to 1", "zh": "最大权重更接近 1"},
        "ch03.q1.b": {"en": "nothing: the same weights", "zh": "什么都不变：权重完全相同"},
        "ch03.q1.c": {"en": "the weights become nearly uniform: the gaps are small next to 100",
                      "zh": "权重变得几乎均匀：与 100 相比，分数之间的差距很小"},
        "ch03.q1.d": {"en": "it overflows and gives NaN", "zh": "溢出，得到 NaN"},
        "ch03.q1.why": {"en": "e^(x_i + 100) = e^100 · e^(x_i): the same factor e^100 multiplies every term of the "
                              "numerator and of the sum, and cancels. Only differences of scores matter (a gap of 1 is "
                              "a ratio e of weights, whatever the scores are). In float64 e^109.1 is still finite; "
                              "section 2 uses this invariance to subtract the maximum so that nothing ever overflows.",
                        "zh": "e^(x_i + 100) = e^100 · e^(x_i)：分子和分母里的每一项都乘上了同一个因子 e^100，它被约掉了。"
                              "只有分数之间的差才起作用（差 1 就意味着权重之比为 e，不论分数本身是多少）。"
                              "在 float64 下 e^109.1 仍是有限数；第 2 节正是利用这种不变性减去最大值，让计算永远不会溢出。"},
        "ch03.q1.nudge": {"en": "Write e^(x_i + 100) as a product. What happens to a factor that every term of a ratio shares?",
                          "zh": "把 e^(x_i + 100) 写成乘积。分子分母每一项都有的公共因子会怎样？"},
        # stretch
        "ch03.ex5.title": {"en": "Stretch · the backward pass of log-softmax, stable and without the Jacobian",
                           "zh": "挑战题 · log-softmax 的反向传播：数值稳定，且不构造雅可比矩阵"},
        "ch03.ex5.nudge": {"en": "Write y_i = x_i - logsumexp(x). How does y_i change when x_j changes? Then add up the "
                                 "upstream gradients g_i with those weights.",
                           "zh": "把 y_i 写成 x_i - logsumexp(x)。x_j 变化时 y_i 怎样变化？再用这些系数把上游梯度 g_i 加起来。"},
        "ch03.ex5.stronger": {"en": "dy_i/dx_j = δ_ij - p_j with p = softmax(x): the sum over i splits into g_j and p_j times "
                                    "the sum of g over the row. No n × n matrix is needed, and p must come from a stable softmax.",
                              "zh": "dy_i/dx_j = δ_ij - p_j，其中 p = softmax(x)：对 i 的求和分成两部分，g_j，以及 p_j 乘以这一行 g 的总和。"
                                    "不需要任何 n × n 矩阵，而 p 必须用数值稳定的 softmax 算。"},
        "ch03.ex5.formula": {"en": "dx = g - softmax(x) * g.sum(-1, keepdim=True), with softmax(x) = exp(x - max) / sum "
                                   "(or exp(x - logsumexp(x))) over the last dim.",
                             "zh": "dx = g - softmax(x) * g.sum(-1, keepdim=True)，其中 softmax(x) = exp(x - max) / sum"
                                   "（或 exp(x - logsumexp(x))），都沿最后一维计算。"},
        "ch03.ex5.too_big": {"en": "your function's peak memory is {got:.1f} MiB; the rows' n × n Jacobians alone would be "
                                   "{jac:.1f} MiB, and the limit is {limit:.1f} MiB: compute it without building a matrix",
                             "zh": "你的函数内存峰值为 {got:.1f} MiB；单是这几行的 n × n 雅可比矩阵就要 {jac:.1f} MiB，"
                                   "上限是 {limit:.1f} MiB：请不构造矩阵来计算"},
        "ch03.case.lsm_small": {"en": "3 rows of 5 scores, float64", "zh": "3 行、每行 5 个分数，float64"},
        "ch03.case.lsm_huge": {"en": "scores near ±1000, float32", "zh": "接近 ±1000 的分数，float32"},
        "ch03.case.lsm_long": {"en": "{r} rows of {n} scores, float32 (memory measured)",
                               "zh": "{r} 行、每行 {n} 个分数，float32（测量内存）"},
        "ch03.ex1.title": {
            "en": "Exercise 1 · a numerically stable softmax",
            "zh": "练习 1 · 数值稳定的 softmax",
        },
        "ch03.ex1.nudge": {"en": "What does exp do with a score of 1000 in float32? Which shift of the scores leaves the softmax unchanged?",
            "zh": "float32 下 exp(1000) 会变成什么？给分数整体减去什么值，softmax 的结果不变？"},
        "ch03.ex1.stronger": {"en": "Subtract each row's maximum before exp (so every exponent is <= 0), then divide by the row's sum, over the last dim.",
            "zh": "取 exp 之前先减去每行的最大值（这样所有指数都 <= 0），再沿最后一维除以每行的和。"},
        "ch03.ex1.formula": {
            "en": "Subtract the row maximum (x.amax(dim=-1, keepdim=True)) before exp: every exponent is then <= 0 and nothing overflows. Normalise over the last dim.",
            "zh": "在取 exp 之前减去每行的最大值（x.amax(dim=-1, keepdim=True)）：这样所有指数都 <= 0，不会溢出。沿最后一维归一化。",
        },
        "ch03.ex2.title": {"en": "Exercise 2 · masked softmax", "zh": "练习 2 · 带掩码的 softmax"},
        "ch03.ex2.nudge": {"en": "Look at the row whose entries are all masked: what does your function return there, and what should it be?",
            "zh": "看那一行全被屏蔽的输入：你的函数在这里返回了什么？应当是什么？"},
        "ch03.ex2.stronger": {"en": "Fill the masked entries with -inf (True = keep) and take the softmax; then find the rows with nothing kept and set them to zero instead of NaN.",
            "zh": "把被屏蔽的位置填入 -inf（True 表示保留）后做 softmax；再找出一个位置都没保留的行，把它们置零，而不是留下 NaN。"},
        "ch03.ex2.formula": {
            "en": "Fill x where mask is False with -inf (True = keep), then softmax. A row with every entry masked must give zeros: find those rows with (~mask).all(-1, keepdim=True) and zero them, instead of the NaN of -inf - (-inf) or the uniform row that -1e9 gives.",
            "zh": "把 mask 为 False 的位置填入 -inf（True 表示保留），再做 softmax。全被屏蔽的行必须输出全零：用 (~mask).all(-1, keepdim=True) 找出这些行并置零，不能输出 -inf - (-inf) 产生的 NaN，也不能是填入 -1e9 得到的均匀分布。",
        },
        "ch03.ex3.title": {
            "en": "Exercise 3 · merge two online-softmax states",
            "zh": "练习 3 · 合并两个在线 softmax 状态",
        },
        "ch03.ex3.nudge": {"en": "Both parts' sums l were computed relative to their own maximum. What must you do to them before adding? And what happens when a part is empty (m = -inf)?",
            "zh": "两部分的和 l 都是相对各自的最大值算出来的。相加之前要对它们做什么？某一部分为空（m = -inf）时又会怎样？"},
        "ch03.ex3.stronger": {"en": "The new maximum is the larger of the two; rescale each l by exp(its m − new m) and add. Guard the case where both m are -inf, where that difference is NaN.",
            "zh": "新的最大值取两者中较大的那个；每个 l 乘以 exp(自己的 m − 新的 m) 后相加。两个 m 都是 -inf 时这个差是 NaN，要单独处理。"},
        "ch03.ex3.formula": {
            "en": "`m = max(m_a, m_b); l = l_a·exp(m_a − m) + l_b·exp(m_b − m)`. An empty part has m = -inf and l = 0: when both are empty, m is -inf and exp(-inf − (-inf)) is NaN, so subtract a safe m (0 where m is -inf).",
            "zh": "`m = max(m_a, m_b); l = l_a·exp(m_a − m) + l_b·exp(m_b − m)`。空的部分 m = -inf、l = 0；两部分都为空时 m 是 -inf，exp(-inf − (-inf)) 会得到 NaN，所以要减去一个安全的 m（m 为 -inf 的位置用 0 代替）。",
        },
        "ch03.ex4.title": {
            "en": "Exercise 4 · the softmax Jacobian",
            "zh": "练习 4 · softmax 的雅可比矩阵",
        },
        "ch03.ex4.nudge": {"en": "Differentiate p_i with respect to x_j in two cases: i = j and i ≠ j. What shape should the result have for a batch?",
            "zh": "分 i = j 和 i ≠ j 两种情况，求 p_i 对 x_j 的导数。对一个批次，结果应当是什么形状？"},
        "ch03.ex4.stronger": {"en": "The diagonal holds p_i (1 − p_i), the off-diagonal entries −p_i p_j: a diagonal matrix of p minus the outer product of p with itself, shape (..., n, n).",
            "zh": "对角线上是 p_i (1 − p_i)，非对角线上是 −p_i p_j：即以 p 为对角线的矩阵减去 p 与自身的外积，形状为 (..., n, n)。"},
        "ch03.ex4.formula": {
            "en": "∂p_i/∂x_j = p_i (δ_ij − p_j): torch.diag_embed(p) − p.unsqueeze(-1) * p.unsqueeze(-2), shape (..., n, n).",
            "zh": "∂p_i/∂x_j = p_i (δ_ij − p_j)：torch.diag_embed(p) − p.unsqueeze(-1) * p.unsqueeze(-2)，形状为 (..., n, n)。",
        },
        "ch03.case.example": {"en": "the scores [2.3, 9.1, 0.5]", "zh": "分数 [2.3, 9.1, 0.5]"},
        "ch03.case.batch": {"en": "a batch of 4 rows", "zh": "一个批次，共 4 行"},
        "ch03.case.huge32": {
            "en": "scores near 1000 (float32)",
            "zh": "接近 1000 的分数（float32）",
        },
        "ch03.case.huge16": {
            "en": "scores up to 20 in float16 (exp(20) overflows)",
            "zh": "float16 中最大为 20 的分数（exp(20) 溢出）",
        },
        "ch03.case.padding": {
            "en": "padding: the last 2 entries masked",
            "zh": "填充：最后 2 个位置被屏蔽",
        },
        "ch03.case.causal": {"en": "a causal mask", "zh": "因果掩码"},
        "ch03.case.full_row": {"en": "a row with every entry masked", "zh": "全被屏蔽的行"},
        "ch03.case.finite": {"en": "two non-empty parts", "zh": "两个非空的部分"},
        "ch03.case.one_empty": {
            "en": "one part empty (m = -inf, l = 0)",
            "zh": "有一部分为空（m = -inf，l = 0）",
        },
        "ch03.case.both_empty": {"en": "both parts empty", "zh": "两部分都为空"},
        "ch03.case.row": {"en": "one row of {n}", "zh": "一行，共 {n} 个元素"},
        "ch03.case.one_hot": {"en": "a one-hot row (saturated)", "zh": "独热的一行（饱和）"},
        "ch03.case.batched_p": {"en": "a batch (2, 3, 5)", "zh": "一个批次，形状为 (2, 3, 5)"},
    }
)

NEG_INF = float("-inf")


# ---- reference solutions (kept out of the notebooks) ----


def solution_stable_softmax(x):
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))  # every exponent <= 0: no overflow
    return e / e.sum(dim=-1, keepdim=True)


def solution_masked_softmax(x, mask):
    x = x.masked_fill(~mask, NEG_INF)
    m = x.amax(dim=-1, keepdim=True)
    e = torch.exp(x - torch.where(torch.isneginf(m), 0.0, m))  # an all -inf row: exp(-inf) = 0
    s = e.sum(dim=-1, keepdim=True)
    return e / torch.where(s > 0, s, 1.0)  # an all -inf row gives zeros, not 0/0


def solution_merge_states(m_a, l_a, m_b, l_b):
    m = torch.maximum(m_a, m_b)
    safe = torch.where(torch.isneginf(m), 0.0, m)  # both parts empty: exp(-inf - 0) = 0, not NaN
    return m, l_a * torch.exp(m_a - safe) + l_b * torch.exp(m_b - safe)


def solution_softmax_jacobian(p):
    # J[..., i, j] = p_i (delta_ij - p_j) = diag(p) - p p^T, for every row of the batch
    outer = p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., n, n)
    return torch.diag_embed(p) - outer


def solution_log_softmax_backward(x, grad):
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))                # exponents <= 0: no overflow
    p = e / e.sum(dim=-1, keepdim=True)                            # softmax(x), (..., n)
    return grad - p * grad.sum(dim=-1, keepdim=True)               # g_j - p_j Σ_i g_i, no n × n matrix



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch03.mistake.ex5.no_sum': {"en": "you subtracted p_j g_j; the log-softmax backward subtracts p_j times the sum of all g_i.",
                                "zh": "你减去的是 p_j g_j；log-softmax 的反向传播要减去 p_j 乘以所有 g_i 之和。"},
    'ch03.mistake.ex5.softmax_vjp': {"en": "that is the backward of softmax, not of log-softmax: here the gradient is g − p · Σ g.",
                                     "zh": "这是 softmax 的反向传播，不是 log-softmax 的：这里的梯度是 g − p · Σ g。"},
    'ch03.mistake.ex1.no_shift': {"en": "your result overflows on large scores: in float32, exp of a score near 1000 is already inf, and inf / inf is NaN. Shift each row's scores by an amount that leaves the softmax unchanged and keeps exp finite.",
                                  "zh": "分数很大时你的结果溢出了：float32 下，接近 1000 的分数取 exp 就已经是 inf，而 inf / inf 是 NaN。给每行分数整体平移一个量，让 softmax 不变，exp 也不会溢出。"},
    'ch03.mistake.ex1.dim0': {"en": 'your result is normalised over the first axis; each row (the last axis) must sum to 1.', "zh": '你的结果沿第一维归一化了；应当让每一行（最后一维）之和为 1。'},
    'ch03.mistake.ex2.inverted': {"en": 'you hid the entries where the mask is True: here True means keep.', "zh": '你把 mask 为 True 的位置屏蔽了：这里 True 表示保留。'},
    'ch03.mistake.ex2.big_negative': {"en": 'a fully masked row came out uniform: that is what filling with -1e9 gives. It must be all zeros.', "zh": '全被屏蔽的行得到了均匀分布：这是填入 -1e9 的结果。它应当全为零。'},
    'ch03.mistake.ex3.no_rescale': {"en": 'you added l_a and l_b as they are; each was summed against its own maximum, so rescale it by exp(m_part − m) first.', "zh": '你直接把 l_a 和 l_b 相加了；它们各自是相对自己的最大值求和的，要先乘以 exp(m_part − m) 换算到共同的最大值。'},
    'ch03.mistake.ex3.sign': {"en": 'the rescaling factor is exp(m_part − m), at most 1; yours is its inverse.', "zh": '换算因子是 exp(m_part − m)，不超过 1；你用的是它的倒数。'},
    'ch03.mistake.ex4.diag_only': {"en": 'you kept only diag(p); every off-diagonal entry is −p_i p_j, and the diagonal is p_i − p_i².', "zh": '你只保留了 diag(p)；非对角元是 −p_i p_j，对角元是 p_i − p_i²。'},
    'ch03.mistake.ex4.outer_only': {"en": 'you kept only −p pᵀ; the diagonal also gets + p_i (the δ_ij term).', "zh": '你只保留了 −p pᵀ；对角线上还要加上 p_i（δ_ij 那一项）。'},
})


def _m(value):
    return value, 0


def _p(x):
    return torch.softmax(x.double(), dim=-1).to(x.dtype)


MISTAKES = {
    "ch03.ex5": (
        (lambda x, g: _m(g - _p(x) * g), lambda: t("ch03.mistake.ex5.no_sum")),
        (lambda x, g: _m(_p(x) * (g - (_p(x) * g).sum(-1, keepdim=True))), lambda: t("ch03.mistake.ex5.softmax_vjp")),
    ),
    "ch03.ex1": (
        (lambda x: (lambda e: e / e.sum(dim=0, keepdim=True))(torch.exp(x - x.amax(dim=0, keepdim=True))), lambda: t('ch03.mistake.ex1.dim0')),
        (lambda x: torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True), lambda: t('ch03.mistake.ex1.no_shift')),
    ),
    "ch03.ex2": (
        (lambda x, mask: solution_masked_softmax(x, ~mask), lambda: t('ch03.mistake.ex2.inverted')),
        (lambda x, mask: torch.softmax(x.masked_fill(~mask, -1e9), dim=-1), lambda: t('ch03.mistake.ex2.big_negative')),
    ),
    "ch03.ex3": (
        (lambda m_a, l_a, m_b, l_b: (torch.maximum(m_a, m_b), l_a + l_b), lambda: t('ch03.mistake.ex3.no_rescale')),
        (lambda m_a, l_a, m_b, l_b: (torch.maximum(m_a, m_b), l_a * torch.exp(torch.maximum(m_a, m_b) - m_a) + l_b * torch.exp(torch.maximum(m_a, m_b) - m_b)), lambda: t('ch03.mistake.ex3.sign')),
    ),
    "ch03.ex4": (
        (lambda p: torch.diag_embed(p), lambda: t('ch03.mistake.ex4.diag_only')),
        (lambda p: -(p.unsqueeze(-1) * p.unsqueeze(-2)), lambda: t('ch03.mistake.ex4.outer_only')),
    ),
}


# ---- checkers ----


def _randn(seed, *shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def check_stable_softmax(fn) -> bool:
    cases = [
        Case((torch.tensor([2.3, 9.1, 0.5]),), label=t("ch03.case.example")),
        Case((_randn(1, 4, 6, scale=3.0),), label=t("ch03.case.batch")),
        Case(
            (torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, 0.0, 1000.0]]),),
            label=t("ch03.case.huge32"),
        ),
        Case(
            (torch.tensor([20.0, 10.0, 0.0, 19.5], dtype=torch.float16),),
            label=t("ch03.case.huge16"),
        ),
    ]
    return run_checks(fn, solution_stable_softmax, cases, t("ch03.ex1.title"),
                      hints=[t("ch03.ex1.nudge"), t("ch03.ex1.stronger"), t("ch03.ex1.formula")],
                      exercise="ch03.ex1", mistakes=MISTAKES["ch03.ex1"],
                      forbid=("attnkit.softmax.softmax", "attnkit.softmax.online_softmax",
                              "torch.softmax", "torch.nn.functional.softmax"))


def check_masked_softmax(fn) -> bool:
    x = _randn(2, 4, 5, scale=2.0)
    padding = torch.tensor([True, True, True, False, False]).expand(4, 5)
    causal = torch.ones(4, 5, dtype=torch.bool).tril()
    full_row = causal.clone()
    full_row[1] = False
    cases = [
        Case((x, padding), label=t("ch03.case.padding")),
        Case((x, causal), label=t("ch03.case.causal")),
        Case((x, full_row), label=t("ch03.case.full_row")),
    ]
    return run_checks(fn, solution_masked_softmax, cases, t("ch03.ex2.title"),
                      hints=[t("ch03.ex2.nudge"), t("ch03.ex2.stronger"), t("ch03.ex2.formula")],
                      exercise="ch03.ex2", mistakes=MISTAKES["ch03.ex2"],
                      forbid=("attnkit.softmax.softmax",))


def check_merge_states(fn) -> bool:
    def state(x):
        s = S.softmax_state(x)
        return s.m, s.l

    a, b = _randn(3, 3, 4, scale=5.0), _randn(4, 3, 6, scale=5.0)
    empty = torch.full((3, 1), NEG_INF), torch.zeros(3, 1)
    cases = [
        Case((*state(a), *state(b)), label=t("ch03.case.finite")),
        Case((*state(a), *empty), label=t("ch03.case.one_empty")),
        Case((*empty, *empty), label=t("ch03.case.both_empty")),
    ]
    return run_checks(fn, solution_merge_states, cases, t("ch03.ex3.title"),
                      hints=[t("ch03.ex3.nudge"), t("ch03.ex3.stronger"), t("ch03.ex3.formula")],
                      exercise="ch03.ex3", mistakes=MISTAKES["ch03.ex3"],
                      forbid=("attnkit.softmax.merge", "attnkit.softmax.merge_partials", "attnkit.softmax.update",
                              "attnkit.flash.online_update", "attnkit.softmax.logsumexp"))


def check_softmax_jacobian(fn) -> bool:
    cases = [
        Case((torch.softmax(_randn(5, 4), -1),), label=t("ch03.case.row", n=4)),
        Case((torch.tensor([0.0, 1.0, 0.0]),), label=t("ch03.case.one_hot")),
        Case((torch.softmax(_randn(6, 2, 3, 5), -1),), label=t("ch03.case.batched_p")),
    ]
    return run_checks(fn, solution_softmax_jacobian, cases, t("ch03.ex4.title"),
                      hints=[t("ch03.ex4.nudge"), t("ch03.ex4.stronger"), t("ch03.ex4.formula")],
                      exercise="ch03.ex4", mistakes=MISTAKES["ch03.ex4"],
                      forbid=("attnkit.softmax.softmax_jacobian", "attnkit.softmax.softmax_jacobian_norm",
                              "torch.autograd.grad"))


def check_q1(answer) -> bool:
    return check_answer(answer, "b", exercise="ch03.q1", title=t("ch03.q1.title"), explanation=t("ch03.q1.why"),
                        nudge=t("ch03.q1.nudge"), choices={c: t(f"ch03.q1.{c}") for c in "abcd"})


LONG_ROWS, LONG_N = 4, 2048


def log_softmax_backward_cases() -> list[Case]:
    small = (_randn(7, 3, 5, scale=2.0).double(), _randn(8, 3, 5).double())
    huge = (torch.tensor([[1000.0, 1001.0, 999.0, 990.0], [-1000.0, 0.0, 1000.0, 500.0]]), _randn(9, 2, 4))
    long = (_randn(10, LONG_ROWS, LONG_N, scale=3.0), _randn(11, LONG_ROWS, LONG_N))
    return [Case(small, label=t("ch03.case.lsm_small")), Case(huge, label=t("ch03.case.lsm_huge")),
            Case(long, label=t("ch03.case.lsm_long", r=LONG_ROWS, n=LONG_N))]


def check_log_softmax_backward(fn) -> bool:
    jac = LONG_ROWS * LONG_N * LONG_N * 4          # the float32 Jacobians of the long case's rows

    def compare(got, expected):
        why = compare_tensors(got[0], expected[0], atol=1e-4)    # float32 rounding near ±1000
        if why:
            return why
        if got[1] > jac / 16:                      # far above O(rows · n), far below the Jacobian
            return t("ch03.ex5.too_big", got=got[1] / 2**20, jac=jac / 2**20, limit=jac / 16 / 2**20)
        return None

    hints = [t("ch03.ex5.nudge"), t("ch03.ex5.stronger"), t("ch03.ex5.formula")]
    forbid = ("torch.autograd.grad", "torch.autograd.backward", "torch.autograd.functional.vjp",  # every path: FAMILIES
              "torch.autograd.functional.jacobian", "torch._log_softmax_backward_data",
              "attnkit.softmax.softmax_jacobian")
    if not callable(fn):
        return run_checks(fn, solution_log_softmax_backward, [], t("ch03.ex5.title"), hints=hints,
                          exercise="ch03.ex5")
    return run_checks(Measured(fn), Measured(solution_log_softmax_backward), log_softmax_backward_cases(),
                      t("ch03.ex5.title"), hints=hints, exercise="ch03.ex5", compare=compare, forbid=forbid,
                      mistakes=MISTAKES["ch03.ex5"])
