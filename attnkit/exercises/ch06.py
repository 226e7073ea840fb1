"""Chapter 06's exercises: the checkers, their cases and their reference solutions.

Chapter 06 exercises: rotate a pair by hand, apply (half-split) RoPE to a head, ALiBi slopes, NTK base;
a predict-first question (the score of a rotated pair), and a stretch exercise (port interleaved
weights to half-split code by permuting rows)."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, check_answer, compare_tensors, drawn, run_checks
from attnkit.i18n import register, t

register({
    "ch06.ex1.title": {"en": "Exercise 1 · rotate one channel pair", "zh": "练习 1 · 旋转一对通道"},
    "ch06.ex1.nudge": {"en": "Rotate (1, 0) by a quarter turn by hand: where should it land? Does yours go counter-clockwise?",
        "zh": "手算一下把 (1, 0) 旋转四分之一圈：它应当落在哪里？你的旋转是逆时针的吗？"},
    "ch06.ex1.stronger": {"en": "A turn by a keeps lengths: (1, 0) lands on (cos a, sin a) and (0, 1) on (−sin a, cos a). The point (x, y) is x times the first plus y times the second, returned as a tuple of its two coordinates.",
        "zh": "旋转 a 不改变长度：(1, 0) 转到 (cos a, sin a)，(0, 1) 转到 (−sin a, cos a)。点 (x, y) 就是 x 乘第一个加上 y 乘第二个；把它的两个坐标作为元组返回。"},
    "ch06.ex1.formula": {"en": "A counter-clockwise rotation by angle a: x' = x cos a − y sin a, y' = x sin a + y cos a. Return the tuple (x', y').",
                      "zh": "逆时针旋转角度 a：x' = x cos a − y sin a，y' = x sin a + y cos a。返回元组 (x', y')。"},
    "ch06.ex2.title": {"en": "Exercise 2 · apply half-split RoPE to one head",
                       "zh": "练习 2 · 对一个头应用前后两半配对的 RoPE"},
    "ch06.ex2.nudge": {"en": "Which two channels form a pair in the half-split layout: neighbours (0, 1), or channels d/2 apart?",
        "zh": "前后两半配对的布局中，哪两个通道组成一对：相邻的 (0, 1)，还是相隔 d/2 的两个通道？"},
    "ch06.ex2.stronger": {"en": "Cut x into its first and second halves a and b; pair i is (a_i, b_i), rotated by the angle whose cos and sin are in column i of row m. Rotate as in exercise 1 and put the halves back side by side.",
        "zh": "把 x 切成前后两半 a 和 b；第 i 对是 (a_i, b_i)，旋转角的 cos、sin 在第 m 行第 i 列。像练习 1 那样旋转，再把两半拼回去。"},
    "ch06.ex2.formula": {"en": "Half-split (GPT-NeoX / LLaMA): pair i is channels (i, i + d/2), so a = x[:, :d//2], b = x[:, d//2:]. Row m of cos/sin holds cos(m θ_i), sin(m θ_i). Rotate each pair as in exercise 1 and put the halves back side by side: torch.cat((a', b'), dim=-1).",
                      "zh": "前后两半配对（GPT-NeoX / LLaMA）：第 i 对是通道 (i, i + d/2)，即 a = x[:, :d//2]，b = x[:, d//2:]。cos/sin 的第 m 行是 cos(m θ_i)、sin(m θ_i)。像练习 1 那样旋转每一对，再把两半拼回去：torch.cat((a', b'), dim=-1)。"},
    "ch06.ex3.title": {"en": "Exercise 3 · ALiBi slopes for any number of heads",
                       "zh": "练习 3 · 任意头数的 ALiBi 斜率"},
    "ch06.ex3.nudge": {"en": "Do 8 heads already pass? Then look at the head counts that are not a power of two: where do the extra slopes come from?",
        "zh": "8 个头的情况通过了吗？如果通过了，再看不是 2 的幂的头数：多出来的斜率从哪里来？"},
    "ch06.ex3.stronger": {"en": "For a power of two n the slopes form a geometric sequence starting at 2^(−8/n). For other counts start from the largest power of two below, then take every other slope of the sequence for twice as many heads.",
        "zh": "当 n 是 2 的幂时，斜率是从 2^(−8/n) 开始的等比数列。其他头数先取不超过它的最大 2 的幂，再从头数加倍时的斜率序列中隔一个取一个。"},
    "ch06.ex3.formula": {"en": "For n a power of two: m_h = 2^(−8(h+1)/n), h = 0..n−1. Otherwise take n = the largest power of two below num_heads, its n slopes, then every other slope (the 1st, 3rd, 5th, ...) of the 2n-head sequence until you have num_heads. Return a float tensor (num_heads,).",
                      "zh": "当 n 是 2 的幂时：m_h = 2^(−8(h+1)/n)，h = 0..n−1。否则取不超过 num_heads 的最大 2 的幂 n，先用它的 n 个斜率，再从 2n 个头的斜率序列中隔一个取一个（第 1、3、5…… 个），直到凑够 num_heads 个。返回形状为 (num_heads,) 的浮点张量。"},
    "ch06.ex4.title": {"en": "Exercise 4 · the NTK-aware base", "zh": "练习 4 · NTK 感知缩放的底数"},
    "ch06.ex4.nudge": {"en": "Which frequency must be divided by exactly s, and which must stay the same? Write the lowest frequency as a power of the base.",
        "zh": "哪个频率必须恰好除以 s，哪个必须保持不变？把最低频率写成底数的幂。"},
    "ch06.ex4.stronger": {"en": "The lowest frequency is b^(−(d−2)/d). Choose the new base b' so that b'^(−(d−2)/d) = b^(−(d−2)/d) / s, and solve for b'.",
        "zh": "最低频率是 b^(−(d−2)/d)。选新底数 b'，使 b'^(−(d−2)/d) = b^(−(d−2)/d) / s，再解出 b'。"},
    "ch06.ex4.formula": {"en": "b' = b · s^(d / (d − 2)): the lowest frequency b^(−(d−2)/d) is then divided by exactly s, the highest (θ_0 = 1) stays.",
                      "zh": "b' = b · s^(d / (d − 2))：这样最低频率 b^(−(d−2)/d) 恰好除以 s，而最高频率 θ_0 = 1 保持不变。"},
    "ch06.case.quarter": {"en": "(1, 0) by π/2", "zh": "(1, 0) 旋转 π/2"},
    "ch06.case.generic": {"en": "({x}, {y}) by {a} rad", "zh": "({x}, {y}) 旋转 {a} 弧度"},
    "ch06.case.head": {"en": "{L} positions, head_dim {d}", "zh": "{L} 个位置，头维度 {d}"},
    "ch06.case.heads": {"en": "{h} heads", "zh": "{h} 个头"},
    "ch06.case.ntk": {"en": "base {b:g}, head_dim {d}, s = {s:g}", "zh": "底数 {b:g}，头维度 {d}，s = {s:g}"},
    # question 1 (predict first)
    "ch06.q1.title": {"en": "Question 1 · the score of one rotated pair", "zh": "问题 1 · 旋转后的一对通道的分数"},
    "ch06.q1.nudge": {"en": "Each arrow turns 30° per position. Where do the query and the key point, "
                            "and what is the angle between them?",
                      "zh": "位置每增加 1，箭头就多转 30°。查询和键分别指向哪里？它们之间的夹角是多少？"},
    "ch06.q1.why": {"en": "The query turns by 7θ = 210°, the key by 3θ = 90°: the angle between them is "
                          "(7 − 3)θ = 120°. Two unit arrows have the dot product cos(angle) = cos 120° = −0.5. "
                          "Only m − n = 4 entered: at positions 107 and 103 the score is −0.5 too.",
                    "zh": "查询转过 7θ = 210°，键转过 3θ = 90°，二者夹角为 (7 − 3)θ = 120°。"
                          "两个单位向量的点积就是夹角的余弦：cos 120° = −0.5。"
                          "起作用的只有 m − n = 4：放在位置 107 和 103 上，分数同样是 −0.5。"},
    # stretch: port weights between the two pairings
    "ch06.ex5.title": {"en": "Stretch · port interleaved weights to half-split code",
                       "zh": "挑战题 · 把相邻交错配对的权重移植到前后两半配对的代码"},
    "ch06.ex5.nudge": {"en": "Take one head with d = 8. In the half-split code, pair 0 is channels (0, 4). Which two "
                             "rows of the interleaved weight made pair 0? So which old row must land in place 4?",
                       "zh": "取一个 d = 8 的头。在前后两半配对的代码里，第 0 对是通道 (0, 4)。"
                             "在相邻交错配对的权重里，第 0 对来自哪两行？那么第 4 个位置应当放原来的哪一行？"},
    "ch06.ex5.stronger": {"en": "Inside a head, place j < d/2 takes old row 2j and place d/2 + j takes old row 2j + 1. "
                                "Do it for every head on its own: head h owns rows h·d .. h·d + d − 1. Mind the "
                                "direction: the new row at a place, not where an old row goes.",
                          "zh": "在一个头内部，第 j 个位置（j < d/2）放原来的第 2j 行，第 d/2 + j 个位置放原来的第 2j + 1 行。"
                                "每个头各自处理：第 h 个头占第 h·d .. h·d + d − 1 行。注意方向："
                                "要的是每个位置上的新行，而不是旧行去了哪里。"},
    "ch06.ex5.formula": {"en": "`order = [0, 2, 4, ..., d - 2, 1, 3, ..., d - 1]`; `index` is the concatenation over heads h of `h * d + order`: the result is `weight[index]` (the same for a 1-D bias).",
        "zh": "`order = [0, 2, 4, ..., d - 2, 1, 3, ..., d - 1]`；`index` 由各个头的 `h * d + order` 依次拼接而成；结果是 `weight[index]`（一维的偏置也一样）。"},
    "ch06.case.rows": {"en": "{h} head(s) of {d} channels, weight {shape}", "zh": "{h} 个头，每个 {d} 个通道，权重形状 {shape}"},
    "ch06.why_tensor": {"en": "could not read the answer as a 1-D float tensor: {err}",
                        "zh": "无法把结果读成一维浮点张量：{err}"},
})


# ---- reference solutions (kept out of the notebooks) ----


def solution_rotate_pair(x: float, y: float, angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)  # RoFormer eq. 13
    return (x * c - y * s, x * s + y * c)


def solution_apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (L, d), cos/sin (L, d/2): half-split pairs (i, i + d/2) rotated by m * theta_i."""
    a, b = x.chunk(2, dim=-1)  # (L, d/2) each
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (L, d)


def solution_alibi_slopes(num_heads: int) -> torch.Tensor:
    def geometric(n):  # Press et al. 2022, sec. 3
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    n = 2 ** int(math.log2(num_heads))
    slopes = geometric(n) + geometric(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float32)


def solution_ntk_base(base: float, head_dim: int, scale: float) -> float:
    return base * scale ** (head_dim / (head_dim - 2))


def solution_permute_for_half_split(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """weight (H·d, ...) of W_Q or W_K (or its bias) trained with interleaved RoPE -> rows for half-split code."""
    head_dim = weight.shape[0] // num_heads
    order = torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))  # (d,) old row per new place
    index = (torch.arange(num_heads)[:, None] * head_dim + order).flatten()  # (H·d,) the same inside each head
    return weight[index]



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch06.mistake.ex1.clockwise': {"en": 'you rotated clockwise: a positive angle turns (1, 0) towards (0, 1).', "zh": '你按顺时针旋转了：正角度应把 (1, 0) 转向 (0, 1)。'},
    'ch06.mistake.ex1.overwritten': {"en": "your y' was computed from the new x' instead of the original x: compute both coordinates from the (x, y) you were given.",
                                     "zh": "你算 y' 时用的是已经更新过的 x'，而不是原来的 x：两个坐标都要用传进来的 (x, y) 来算。"},
    'ch06.mistake.ex2.interleaved': {"en": 'you rotated neighbouring pairs (0, 1), (2, 3), ...; this layout pairs i with i + d/2 (the two halves).', "zh": '你旋转的是相邻的一对 (0, 1)、(2, 3)……；这里的布局是把 i 与 i + d/2 配对（前后两半）。'},
    'ch06.mistake.ex2.sign': {"en": 'your rotation goes the other way: the first half becomes a·cos − b·sin, the second a·sin + b·cos.', "zh": '你的旋转方向反了：前半部分应为 a·cos − b·sin，后半部分为 a·sin + b·cos。'},
    'ch06.mistake.ex3.plain_geometric': {"en": 'you used 2^(−8(h+1)/n) for every head count; when n is not a power of 2 the paper takes the slopes of the nearest smaller power of 2, then every other slope of twice that.', "zh": '你对任何头数都用了 2^(−8(h+1)/n)；当 n 不是 2 的幂时，论文先取不超过 n 的最大 2 的幂对应的斜率，再从两倍头数的斜率中隔一个取一个补足。'},
    'ch06.mistake.ex3.repeated': {"en": "for a head count that is not a power of two, your extra slopes repeat slopes you already have: from the sequence for twice as many heads, take the ones the first sequence does not contain.",
                                  "zh": "头数不是 2 的幂时，你补上的斜率与已有的斜率重复了：在两倍头数的序列里，要取的是前一个序列中没有的那些。"},
    'ch06.mistake.ex3.from_one': {"en": "your first slope is 1 (2^0): the exponents are off by one. Even the first head's slope is below 1, and the last head's is 2^(−8) = 1/256.",
                                  "zh": "你的第一个斜率是 1，也就是 2^0：指数差了一。第一个头的斜率就已经小于 1，最后一个头的斜率是 2^(−8) = 1/256。"},
    'ch06.mistake.ex4.no_exponent': {"en": 'you multiplied the base by the scale; NTK scaling raises the scale to d / (d − 2) so the lowest frequency is stretched by exactly the scale.', "zh": '你把基数直接乘以了缩放倍数；NTK 缩放要把倍数取 d / (d − 2) 次方，使最低频率恰好拉长该倍数。'},
    'ch06.mistake.ex4.inverse_exponent': {"en": 'your exponent is upside down: it is d / (d − 2), slightly above 1.', "zh": '你的指数写反了：应为 d / (d − 2)，略大于 1。'},
    'ch06.mistake.ex5.across_heads': {"en": "you permuted all the rows as if they were one head (every even row of the matrix, then every odd one): each head's rows stay in its own block of d rows, and the reordering is done inside each block.",
                                      "zh": "你把所有行当成一个头来置换了（先取整个矩阵的偶数行，再取奇数行）：每个头的行要留在它自己的 d 行里，重排在每个头内部各做一遍。"},
    'ch06.mistake.ex5.inverse': {"en": 'you applied the inverse permutation (half-split to interleaved): the new row k takes old row order[k], evens first then odds.', "zh": '你用了逆置换（从前后两半到交错）：新的第 k 行应取旧的第 order[k] 行，先偶数行再奇数行。'},
})

def _interleaved_rope(x, cos, sin):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def _inverse_permute(weight, num_heads):
    d = weight.shape[0] // num_heads
    order = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))
    inverse = torch.argsort(order)
    return weight[(torch.arange(num_heads)[:, None] * d + inverse).flatten()]


def _overwritten(x, y, a):
    """The rotation with x overwritten before y is computed from it."""
    x = x * math.cos(a) - y * math.sin(a)
    y = x * math.sin(a) + y * math.cos(a)
    return (x, y)


def _alibi(num_heads, first=1, pick=0):
    """ALiBi slopes with a mistake: exponents -8 (h + first) / n (first = 0: off by one), and the extra
    slopes picked from the 2n sequence starting at index pick (pick = 1: the n sequence's slopes again)."""
    def geometric(n):
        return [2.0 ** (-8.0 * (h + first) / n) for h in range(n)]
    n = 2 ** int(math.log2(num_heads))
    return torch.tensor(geometric(n) + geometric(2 * n)[pick::2][: num_heads - n])


MISTAKES = {
    "ch06.ex1": (
        (lambda x, y, a: (x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)), lambda: t('ch06.mistake.ex1.clockwise')),
        (_overwritten, lambda: t('ch06.mistake.ex1.overwritten')),
    ),
    "ch06.ex2": (
        (lambda x, cos, sin: _interleaved_rope(x, cos, sin), lambda: t('ch06.mistake.ex2.interleaved')),
        (lambda x, cos, sin: solution_apply_rope(x, cos, -sin), lambda: t('ch06.mistake.ex2.sign')),
    ),
    "ch06.ex3": (
        (lambda n: torch.tensor([2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]), lambda: t('ch06.mistake.ex3.plain_geometric')),
        (lambda n: _alibi(n, pick=1), lambda: t('ch06.mistake.ex3.repeated')),
        (lambda n: _alibi(n, first=0), lambda: t('ch06.mistake.ex3.from_one')),
    ),
    "ch06.ex4": (
        (lambda base, d, s: base * s, lambda: t('ch06.mistake.ex4.no_exponent')),
        (lambda base, d, s: base * s ** ((d - 2) / d), lambda: t('ch06.mistake.ex4.inverse_exponent')),
    ),
    "ch06.ex5": (
        (lambda w, h: _inverse_permute(w, h), lambda: t('ch06.mistake.ex5.inverse')),
        (lambda w, h: w[torch.cat((torch.arange(0, w.shape[0], 2), torch.arange(1, w.shape[0], 2)))],
         lambda: t('ch06.mistake.ex5.across_heads')),
    ),
}


# ---- checkers ----


def _tables(L: int, d: int, base: float = 10000.0):
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * theta  # (L, d/2)
    return torch.cos(ang).float(), torch.sin(ang).float()


def check_rotate_pair(fn) -> bool:
    cases = [Case((1.0, 0.0, math.pi / 2), label=t("ch06.case.quarter"))]
    for x, y, a in [(0.6, -0.8, 0.3), (2.0, 1.0, 2.5), (-1.5, 0.25, -1.0)]:
        cases.append(Case((x, y, a), label=t("ch06.case.generic", x=x, y=y, a=a)))
    return run_checks(fn, solution_rotate_pair, cases, t("ch06.ex1.title"),
                      hints=[t("ch06.ex1.nudge"), t("ch06.ex1.stronger"), t("ch06.ex1.formula")],
                      exercise="ch06.ex1",
                      draw=lambda seed: drawn(seed, lambda r: (lambda x, y, a: Case((x, y, a), label=t(
                          "ch06.case.generic", x=x, y=y, a=a)))(*(round(r.uniform(-3.0, 3.0), 2) for _ in range(3)))), mistakes=MISTAKES["ch06.ex1"],
                      forbid=("attnkit.rope.rotate_pair", "attnkit.rope.rope_pair_trajectory"))


def check_apply_rope(fn) -> bool:
    g = torch.Generator().manual_seed(6)
    cases = []
    for L, d in [(3, 2), (5, 8), (16, 32)]:
        cos, sin = _tables(L, d)
        cases.append(Case((torch.randn(L, d, generator=g), cos, sin), label=t("ch06.case.head", L=L, d=d)))
    return run_checks(fn, solution_apply_rope, cases, t("ch06.ex2.title"),
                      hints=[t("ch06.ex2.nudge"), t("ch06.ex2.stronger"), t("ch06.ex2.formula")],
                      exercise="ch06.ex2", mistakes=MISTAKES["ch06.ex2"],
                      forbid=("attnkit.rope.apply_rope", "attnkit.rope._rotate", "attnkit.rope.apply_xpos",
                              "attnkit.rope.StandardAttentionWithRoPE"))


def _compare_slopes(got, expected) -> str | None:
    try:
        got = torch.as_tensor(got, dtype=torch.float32).flatten() if not isinstance(got, torch.Tensor) else got
    except Exception as err:  # a learner's odd answer is reported, not raised
        return t("ch06.why_tensor", err=f"{type(err).__name__}: {err}")
    return compare_tensors(got.float() if got.is_floating_point() else got, expected, atol=1e-6, rtol=1e-5)


def check_alibi_slopes(fn) -> bool:
    cases = [Case((h,), label=t("ch06.case.heads", h=h)) for h in (8, 12, 4, 6)]
    return run_checks(fn, solution_alibi_slopes, cases, t("ch06.ex3.title"),
                      hints=[t("ch06.ex3.nudge"), t("ch06.ex3.stronger"), t("ch06.ex3.formula")],
                      exercise="ch06.ex3",
                      draw=lambda seed: drawn(seed, lambda r: (lambda h: Case((h,), label=t("ch06.case.heads", h=h)))(
                          r.choice((2, 3, 5, 10, 16, 20, 24)))), mistakes=MISTAKES["ch06.ex3"],
                      forbid=("attnkit.rope.alibi_slopes", "attnkit.rope.alibi_bias", "attnkit.flash._alibi_slopes"),
                      compare=_compare_slopes)


def check_ntk_base(fn) -> bool:
    cases = [Case((b, d, s), label=t("ch06.case.ntk", b=b, d=d, s=s))
             for b, d, s in [(10000.0, 128, 4.0), (10000.0, 64, 8.0), (500000.0, 128, 2.0)]]
    return run_checks(fn, solution_ntk_base, cases, t("ch06.ex4.title"),
                      hints=[t("ch06.ex4.nudge"), t("ch06.ex4.stronger"), t("ch06.ex4.formula")],
                      exercise="ch06.ex4",
                      draw=lambda seed: drawn(seed, lambda r: (lambda b, d, s: Case((b, d, s), label=t(
                          "ch06.case.ntk", b=b, d=d, s=s)))(r.choice((10000.0, 500000.0)), r.choice((32, 64, 128)),
                                                            float(r.choice((2, 4, 8, 16))))), mistakes=MISTAKES["ch06.ex4"],
                      forbid=("attnkit.rope.ntk_scaled_base", "attnkit.rope.ntk_scaled_inv_freq",
                              "attnkit.rope.scaled_rope_embeddings"),
                      compare=lambda got, exp: compare_tensors(got, exp, atol=0.0, rtol=1e-6))


def check_q1(answer) -> bool:
    """Predict first: q = k = (1, 0), theta = pi/6, query at 7, key at 3: the score after RoPE."""
    return check_answer(answer, math.cos(4 * math.pi / 6), exercise="ch06.q1", title=t("ch06.q1.title"),
                        explanation=t("ch06.q1.why"), nudge=t("ch06.q1.nudge"), tol=0.02)


def check_permute_for_half_split(fn) -> bool:
    g = torch.Generator().manual_seed(66)
    first = torch.arange(24.0).reshape(8, 3)  # one head of 8: row r holds 3r, 3r + 1, 3r + 2
    weights = [(first, 1), (torch.randn(32, 16, generator=g), 4), (torch.randn(32, generator=g), 4),
               (torch.randn(32, 24, generator=g), 2)]
    cases = [Case((w, h), label=t("ch06.case.rows", h=h, d=w.shape[0] // h, shape=tuple(w.shape)))
             for w, h in weights]
    return run_checks(fn, solution_permute_for_half_split, cases, t("ch06.ex5.title"),
                      hints=[t("ch06.ex5.nudge"), t("ch06.ex5.stronger"), t("ch06.ex5.formula")],
                      exercise="ch06.ex5", mistakes=MISTAKES["ch06.ex5"],
                      forbid=("attnkit.rope.permute_qk_weight", "attnkit.rope.interleaved_to_half_split",
                              "attnkit.rope.half_split_to_interleaved"),
                      compare=lambda got, exp: compare_tensors(got, exp, atol=0.0, rtol=0.0))
