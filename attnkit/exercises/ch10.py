"""Chapter 10's exercises: the checkers, their cases and their reference solutions.

Chapter 10 exercises: find and fix a colleague's adapter switch (``colleague_switch_adapter``, the
buggy helper the learner calls), load an adapter under another alpha and rsLoRA's scale, count
trainable parameters, two predict-first questions (asked in sections 2 and 6, before the text that
answers them), and a stretch exercise (compress a trained rank-r update to rank k, Eckart-Young)."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, check_answer, compare_tensors, drawn, run_checks
from attnkit.i18n import register, t
from attnkit.lora import LoRASelfAttention, count_parameters, mark_only_lora_as_trainable

register({
    # exercise 1: find and fix (switching adapters on a merged weight)
    "ch10.ex1.title": {"en": "Exercise 1 · fix the adapter switch", "zh": "练习 1 · 修好切换适配器的函数"},
    "ch10.ex1.hint1": {"en": "Write down what each adapter added to W when it was merged (section 2), then compare "
                             "each term of colleague_switch_adapter with it: its scale and its shape.",
                       "zh": "先写出每个适配器合并时给 W 加上了什么（第 2 节），再把 colleague_switch_adapter 的每一项"
                             "与之对照：缩放系数对不对，形状对不对。"},
    "ch10.ex1.hint2": {"en": "Two bugs. Each adapter carries its own scale alpha / r (section 9: the scale is part of the "
                             "adapter), so the old one comes out with alpha0 / r0. And A0.T @ B0.T is the transpose of "
                             "B0 @ A0: a square W hides it, a W that is not square does not.",
                       "zh": "有两处错误。每个适配器都有自己的缩放系数 alpha / r（第 9 节：缩放系数是适配器的一部分），"
                             "所以拿掉旧适配器时要用 alpha0 / r0。另外，A0.T @ B0.T 是 B0 @ A0 的转置："
                             "W 是方阵时看不出来，不是方阵时就会暴露。"},
    "ch10.ex1.hint3": {"en": "W_merged - (alpha0 / r0) * B0 @ A0 + (alpha1 / r1) * B1 @ A1",
                       "zh": "W_merged - (alpha0 / r0) * B0 @ A0 + (alpha1 / r1) * B1 @ A1"},
    "ch10.case.switch": {"en": "W (out {o}, in {i}), old adapter r = {r0}, alpha = {a0}; new adapter r = {r1}, alpha = {a1}",
                         "zh": "W (out {o}, in {i})，旧适配器 r = {r0}，alpha = {a0}；新适配器 r = {r1}，alpha = {a1}"},
    # exercise 2: a changed setting (another alpha, rsLoRA)
    "ch10.ex2.title": {"en": "Exercise 2 · load an adapter under another alpha and scaling",
                       "zh": "练习 2 · 在另一个 alpha 和缩放方式下加载适配器"},
    "ch10.ex2.hint1": {"en": "The served layer adds scale2 * B2 A x and yours added scale * B A x, with the same A. "
                             "What must B2 be for the two to be equal for every x?",
                       "zh": "部署的层加上的是 scale2 * B2 A x，你的层加上的是 scale * B A x，A 相同。"
                             "B2 取什么，才能对任意 x 两者都相等？"},
    "ch10.ex2.hint2": {"en": "Your scale is alpha / r. The served scale is new_alpha / r, or new_alpha / sqrt(r) "
                             "with use_rslora. B2 is B times the ratio of the two: yours over the served one.",
                       "zh": "你的缩放系数是 alpha / r；部署的缩放系数是 new_alpha / r，use_rslora 时是 new_alpha / sqrt(r)。"
                             "B2 等于 B 乘以两者之比：你的除以部署的。"},
    "ch10.ex2.hint3": {"en": "B * (alpha / r) / (new_alpha / (math.sqrt(r) if use_rslora else r))",
                       "zh": "B * (alpha / r) / (new_alpha / (math.sqrt(r) if use_rslora else r))"},
    "ch10.case.rescale": {"en": "B (out {o}, r = {r}), alpha = {a} -> lora_alpha = {na}, use_rslora = {rs}",
                          "zh": "B (out {o}, r = {r})，alpha = {a} -> lora_alpha = {na}，use_rslora = {rs}"},
    # exercise 3: counting
    "ch10.ex3.title": {"en": "Exercise 3 · how many parameters train?", "zh": "练习 3 · 有多少参数参与训练？"},
    "ch10.ex3.hint1": {"en": "Only A and B of the projections in enable_lora train, plus biases as `bias` says. "
                             "Each letter counts once. Which projections have a bias at all?",
                       "zh": "只有 enable_lora 里那些投影的 A 和 B 参与训练，再按 `bias` 的规定加上偏置。"
                             "每个字母只算一次。哪些投影本来就有偏置？"},
    "ch10.ex3.hint2": {"en": "q, k, v map dim -> heads * dim_head and o maps heads * dim_head -> dim; a pair costs "
                             "r * (in + out). Only to_out has a bias (dim numbers): 'all' counts it always, "
                             "'lora_only' only when 'o' is adapted, 'none' never.",
                       "zh": "q、k、v 把 dim 映射到 heads * dim_head，o 把 heads * dim_head 映射回 dim；一对 A、B 有 "
                             "r * (in + out) 个参数。只有 to_out 有偏置（dim 个数）：'all' 总要算上它，'lora_only' 只在 "
                             "'o' 被适配时算，'none' 从不算。"},
    "ch10.ex3.hint3": {"en": "len(set(enable_lora)) * r * (dim + heads * dim_head) + (dim if bias == 'all' or "
                             "(bias == 'lora_only' and 'o' in enable_lora) else 0)",
                       "zh": "len(set(enable_lora)) * r * (dim + heads * dim_head) + (dim if bias == 'all' or "
                             "(bias == 'lora_only' and 'o' in enable_lora) else 0)"},
    "ch10.case.count": {"en": "dim {dim}, {heads} heads of {dh}, r = {r}, enable_lora = {en}, bias = {bias}",
                        "zh": "dim {dim}，{heads} 个头、每头 {dh} 维，r = {r}，enable_lora = {en}，bias = {bias}"},
    # questions
    "ch10.q1.title": {"en": "Question 1 · the first step", "zh": "问题 1 · 第一步"},
    "ch10.q1.a": {"en": "both A and B", "zh": "A 和 B 都有"},
    "ch10.q1.b": {"en": "only A", "zh": "只有 A"},
    "ch10.q1.c": {"en": "only B", "zh": "只有 B"},
    "ch10.q1.d": {"en": "neither", "zh": "都没有"},
    "ch10.q1.nudge": {"en": "Write the update as s B (A x) and differentiate with respect to each factor while B = 0.",
                      "zh": "把更新写成 s B (A x)，在 B = 0 时分别对两个因子求导。"},
    "ch10.q1.why": {"en": "dL/dB = s g (A x)^T is non-zero because A is random; dL/dA = s B^T g x^T is zero because "
                          "B = 0. After one step B is non-zero and A starts to move too.",
                    "zh": "dL/dB = s g (A x)^T 不为零，因为 A 是随机的；dL/dA = s B^T g x^T 为零，因为 B = 0。"
                          "走完一步后 B 不再为零，A 也就开始更新了。"},
    "ch10.q2.title": {"en": "Question 2 · the cost of an unmerged adapter", "zh": "问题 2 · 未合并的适配器要多少计算"},
    "ch10.q2.nudge": {"en": "Follow one token through the adapter path: x A^T, then (x A^T) B^T. How many multiply-adds "
                            "does each product take?",
                      "zh": "跟着一个词元走一遍适配器这条路径：先 x A^T，再 (x A^T) B^T。每次乘法各要多少次乘加？"},
    "ch10.q2.why": {"en": "x A^T takes r * in = 65,536 multiply-adds and (x A^T) B^T r * out = 65,536: 131,072 in all, "
                          "0.8% of the base layer's in * out = 16,777,216. Merged, the adapter costs nothing extra.",
                    "zh": "x A^T 要 r * in = 65,536 次乘加，(x A^T) B^T 要 r * out = 65,536 次：共 131,072 次，"
                          "是原层 in * out = 16,777,216 次的 0.8%。合并之后，适配器不再多花任何计算。"},
    # stretch
    "ch10.ex4.title": {"en": "Stretch exercise · compress a trained update to rank k",
                       "zh": "挑战题 · 把训练好的更新压缩到秩 k"},
    "ch10.ex4.hint1": {"en": "Truncating A and B (keeping k rows of A and k columns of B) is not the best you can "
                             "do: the directions of a trained pair are not sorted by importance. Which factorisation "
                             "sorts them?",
                       "zh": "直接截断 A 和 B（保留 A 的 k 行、B 的 k 列）并不是最好的做法：训练出的 A、B 的各个方向并没有按"
                             "重要性排序。哪种分解会把它们排好序？"},
    "ch10.ex4.hint2": {"en": "Eckart-Young: the best rank-k approximation of a matrix in the Frobenius norm keeps its "
                             "k largest singular values. Take the SVD of the product B @ A (out, in), not of A alone, "
                             "and split U S Vh between the two new factors.",
                       "zh": "Eckart–Young 定理：在 Frobenius 范数下，一个矩阵的最佳秩 k 近似保留它最大的 k 个奇异值。"
                             "对乘积 B @ A(out, in)做 SVD，而不是只对 A 做，再把 U S Vh 分给两个新的因子。"},
    "ch10.ex4.hint3": {"en": "`U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False); return Vh[:k], U[:, :k] * S[:k]`",
                       "zh": "`U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False); return Vh[:k], U[:, :k] * S[:k]`"},
    "ch10.case.compress": {"en": "rank {r} -> {k}, B (out {o}, r), A (r, in {i})",
                           "zh": "秩 {r} -> {k}，B (out {o}, r)，A (r, in {i})"},
    "ch10.why.product": {"en": "B2 @ A2 differs from the best rank-{k} approximation by up to {diff:.3g}",
                         "zh": "B2 @ A2 与最佳秩 {k} 近似最多相差 {diff:.3g}"},
})


# ---- the helper exercise 1 hands out (buggy on purpose: the learner finds and fixes it) ----

def colleague_switch_adapter(W_merged, old, new):  # old, new: (A, B, alpha, r)
    A0, B0, alpha0, r0 = old
    A1, B1, alpha1, r1 = new
    s = alpha1 / r1                                       # the scale of the adapter
    return W_merged - s * (A0.T @ B0.T) + s * (B1 @ A1)   # take the old one out, put the new one in


# ---- reference solutions (kept out of the notebook) ----

def solution_switch(W_merged, old, new):
    """W_merged (out, in) with the old adapter's update taken out and the new one's merged in."""
    (A0, B0, a0, r0), (A1, B1, a1, r1) = old, new
    return torch.addmm(torch.addmm(W_merged, B0, A0, alpha=-a0 / r0), B1, A1, alpha=a1 / r1)


def solution_rescale(B, alpha, r, new_alpha, use_rslora):
    """B2 with (new_alpha / r, or new_alpha / sqrt(r) with rsLoRA) * B2 A == (alpha / r) * B A."""
    served = new_alpha / math.sqrt(r) if use_rslora else new_alpha / r
    return B * ((alpha / r) / served)


def solution_count(dim, heads, dim_head, r, enable_lora, bias):
    """Trainable parameters of LoRASelfAttention after mark_only_lora_as_trainable(bias=bias)."""
    adapted = set(enable_lora)
    pairs = len(adapted) * r * (dim + heads * dim_head)  # every projection is dim <-> heads * dim_head
    out_bias = dim if bias == "all" or (bias == "lora_only" and "o" in adapted) else 0
    return pairs + out_bias


def count_by_building(dim, heads, dim_head, r, enable_lora, bias) -> int:
    """The same number, measured: build the layer, mark it, count (the oracle for the tests)."""
    layer = LoRASelfAttention(dim, heads, r=r, enable_lora=enable_lora, dim_head=dim_head)
    return count_parameters(mark_only_lora_as_trainable(layer, bias=bias))[0]


def solution_compress(A, B, k):
    """(A2 (k, in), B2 (out, k)) with B2 @ A2 the best rank-k approximation of B @ A."""
    U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False)  # (out, m), (m,), (m, in)
    return Vh[:k].contiguous(), U[:, :k] * S[:k]



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    "ch10.mistake.ex1.unchanged": {"en": "your weight is what colleague_switch_adapter gives: both of its bugs are still there.",
                                   "zh": "你得到的权重与 colleague_switch_adapter 的一样：它的两处错误都还在。"},
    "ch10.mistake.ex1.one_scale": {"en": "the old adapter still comes out with the new adapter's scale; each adapter has "
                                         "its own alpha / r.",
                                   "zh": "拿掉旧适配器时用的仍是新适配器的缩放系数；每个适配器都有自己的 alpha / r。"},
    "ch10.mistake.ex1.transposed": {"en": "the old update is still transposed (A0.T @ B0.T is (B0 @ A0).T); on a square W "
                                          "nothing warns you.",
                                    "zh": "旧适配器的更新仍是转置的（A0.T @ B0.T 就是 (B0 @ A0).T）；W 是方阵时不会有任何报错。"},
    "ch10.mistake.ex1.alpha": {"en": "you scaled the updates by alpha; the scale is alpha / r.",
                               "zh": "你把更新乘以了 alpha；缩放系数应为 alpha / r。"},
    "ch10.mistake.ex2.upside_down": {"en": "your ratio is upside down: B2 = B * (your scale) / (the served scale).",
                                     "zh": "你的比值写反了：B2 = B * （你的缩放系数）/（部署的缩放系数）。"},
    "ch10.mistake.ex2.no_rslora": {"en": "with use_rslora the served scale is new_alpha / sqrt(r), not new_alpha / r.",
                                   "zh": "use_rslora 时，部署的缩放系数是 new_alpha / sqrt(r)，不是 new_alpha / r。"},
    "ch10.mistake.ex2.unchanged": {"en": "you handed B over unchanged: the scale is not stored in A and B, and the served "
                                         "layer multiplies by its own.",
                                   "zh": "你把 B 原样交了出去：缩放系数并不存在 A 和 B 里，部署的层会乘上它自己的缩放系数。"},
    "ch10.mistake.ex3.twice": {"en": "a letter named twice in enable_lora is still one adapted projection: count it once.",
                               "zh": "enable_lora 里重复出现的字母仍然只对应一个被适配的投影：只算一次。"},
    "ch10.mistake.ex3.lora_only": {"en": "'lora_only' trains only the biases of adapted layers: to_out's bias counts only "
                                         "when 'o' is adapted.",
                                   "zh": "'lora_only' 只训练被适配的层的偏置：只有 'o' 被适配时，to_out 的偏置才算在内。"},
    "ch10.mistake.ex3.a_only": {"en": "you counted A only; B (out, r) trains too, so a pair is r * (in + out).",
                                "zh": "你只算了 A；B(out, r)也参与训练，所以一对是 r * (in + out)。"},
    "ch10.mistake.ex4.truncated": {"en": "you kept k rows of A and k columns of B: a trained pair's directions are not "
                                         "sorted, so this is not the best rank-k product.",
                                   "zh": "你保留了 A 的 k 行和 B 的 k 列：训练出的一对矩阵的方向没有排序，这不是最佳的秩 k 乘积。"},
    "ch10.mistake.ex4.svd_of_a": {"en": "you took the SVD of A alone; B weights A's directions, so take the SVD of B @ A.",
                                  "zh": "你只对 A 做了 SVD；B 会给 A 的各个方向加权，所以要对 B @ A 做 SVD。"},
    "ch10.mistake.ex4.smallest": {"en": "you kept the k smallest singular values; Eckart-Young keeps the k largest.",
                                  "zh": "你保留的是最小的 k 个奇异值；Eckart–Young 定理保留的是最大的 k 个。"},
})


def _one_scale(W, old, new):
    (A0, B0, _, _), (A1, B1, a1, r1) = old, new
    return W - (a1 / r1) * B0 @ A0 + (a1 / r1) * B1 @ A1


def _transposed(W, old, new):
    (A0, B0, a0, r0), (A1, B1, a1, r1) = old, new
    return W - (a0 / r0) * (A0.T @ B0.T) + (a1 / r1) * B1 @ A1


def _alpha_only(W, old, new):
    (A0, B0, a0, _), (A1, B1, a1, _) = old, new
    return W - a0 * B0 @ A0 + a1 * B1 @ A1


def _svd_of_a(A, B, k):
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)  # the best rank-k A, then B unchanged
    return Vh[:k], B @ (U[:, :k] * S[:k])


def _smallest(A, B, k):
    U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False)
    m = min(A.shape[0], *S.shape)
    return Vh[m - k:m], U[:, m - k:m] * S[m - k:m]


MISTAKES = {
    "ch10.ex1": (
        (colleague_switch_adapter, lambda: t("ch10.mistake.ex1.unchanged")),
        (_one_scale, lambda: t("ch10.mistake.ex1.one_scale")),
        (_transposed, lambda: t("ch10.mistake.ex1.transposed")),
        (_alpha_only, lambda: t("ch10.mistake.ex1.alpha")),
    ),
    "ch10.ex2": (
        (lambda B, alpha, r, na, rs: B * (na / (math.sqrt(r) if rs else r)) / (alpha / r),
         lambda: t("ch10.mistake.ex2.upside_down")),
        (lambda B, alpha, r, na, rs: B * (alpha / r) / (na / r), lambda: t("ch10.mistake.ex2.no_rslora")),
        (lambda B, alpha, r, na, rs: B.clone(), lambda: t("ch10.mistake.ex2.unchanged")),
    ),
    "ch10.ex3": (
        (lambda dim, heads, dh, r, en, bias: solution_count(dim, heads, dh, r, list(en), bias)
         + (len(en) - len(set(en))) * r * (dim + heads * dh), lambda: t("ch10.mistake.ex3.twice")),
        (lambda dim, heads, dh, r, en, bias: solution_count(dim, heads, dh, r, en, "all" if bias == "lora_only" else bias),
         lambda: t("ch10.mistake.ex3.lora_only")),
        (lambda dim, heads, dh, r, en, bias: solution_count(dim, heads, dh, r, en, bias)
         - len(set(en)) * r * heads * dh, lambda: t("ch10.mistake.ex3.a_only")),
    ),
    "ch10.ex4": (
        (lambda A, B, k: (A[:k], B[:, :k]), lambda: t("ch10.mistake.ex4.truncated")),
        (_svd_of_a, lambda: t("ch10.mistake.ex4.svd_of_a")),
        (_smallest, lambda: t("ch10.mistake.ex4.smallest")),
    ),
}


# ---- cases ----

def _adapter(g, out_f, in_f, r, alpha):
    return (torch.randn(r, in_f, generator=g, dtype=torch.float64),
            torch.randn(out_f, r, generator=g, dtype=torch.float64), alpha, r)


def _switch_case(seed, out_f, in_f, old, new):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
    old, new = _adapter(g, out_f, in_f, *old), _adapter(g, out_f, in_f, *new)
    return Case((W, old, new), label=t("ch10.case.switch", o=out_f, i=in_f, r0=old[3], a0=old[2], r1=new[3], a1=new[2]))


# square projections first (where the colleague's code runs), then one that is not square
SWITCH_CASES = [(6, 6, (2, 4), (4, 16)), (8, 8, (4, 4), (1, 2)), (4, 8, (2, 8), (2, 2))]


def _draw_switch(seed):
    def make(rng):
        d = rng.choice((5, 6, 8))
        r0, r1 = rng.choice((1, 2, 4)), rng.choice((1, 2, 4))
        a0, a1 = rng.choice((1, 4, 8)), rng.choice((2, 16, 32))
        return _switch_case(1000 + seed, d, d, (r0, a0), (r1, a1))
    return drawn(seed, make)


def check_switch(fn) -> bool:
    cases = [_switch_case(30 + i, o, n_in, old, new) for i, (o, n_in, old, new) in enumerate(SWITCH_CASES)]
    return run_checks(fn, solution_switch, cases, t("ch10.ex1.title"), exercise="ch10.ex1", mistakes=MISTAKES["ch10.ex1"],
                      hints=[t("ch10.ex1.hint1"), t("ch10.ex1.hint2"), t("ch10.ex1.hint3")], draw=_draw_switch,
                      compare=compare_tensors,
                      forbid=("attnkit.lora.merge_weight", "attnkit.lora.unmerge_weight", "attnkit.lora.lora_delta",
                              "attnkit.lora.LoRALinear", "attnkit.lora.lora_linear"))


def _rescale_case(seed, out_f, r, alpha, new_alpha, rslora):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(out_f, r, generator=g, dtype=torch.float64)
    return Case((B, alpha, r, new_alpha, rslora),
                label=t("ch10.case.rescale", o=out_f, r=r, a=alpha, na=new_alpha, rs=rslora))


RESCALE_CASES = [(6, 4, 16, 8, True), (5, 8, 8, 32, False), (4, 16, 32, 16, True)]


def _draw_rescale(seed):
    def make(rng):
        return _rescale_case(2000 + seed, rng.choice((3, 5, 7)), rng.choice((2, 4, 9)), rng.choice((4, 8, 16)),
                             rng.choice((2, 32, 64)), rng.choice((True, False)))
    return drawn(seed, make)


def check_rescale(fn) -> bool:
    cases = [_rescale_case(40 + i, *c) for i, c in enumerate(RESCALE_CASES)]
    return run_checks(fn, solution_rescale, cases, t("ch10.ex2.title"), exercise="ch10.ex2", mistakes=MISTAKES["ch10.ex2"],
                      hints=[t("ch10.ex2.hint1"), t("ch10.ex2.hint2"), t("ch10.ex2.hint3")], draw=_draw_rescale,
                      compare=compare_tensors,
                      forbid=("attnkit.lora.lora_scaling", "attnkit.lora.LoRALinear"))


COUNT_CASES = [(64, 4, 16, 8, ("q", "v"), "none"), (48, 2, 32, 4, ("q", "k", "v", "o"), "none"),
               (32, 4, 4, 2, ("v", "o"), "lora_only"), (32, 4, 4, 2, ("q", "v"), "lora_only"),
               (16, 2, 8, 1, ("q", "q", "k"), "all")]


def _int_compare(got, expected):
    if isinstance(got, bool) or not isinstance(got, (int, float)) and not hasattr(got, "item"):
        return t("ex.why_type", exp="int", got=type(got).__name__)
    value = got.item() if hasattr(got, "item") else got
    return None if value == expected else t("ex.why_value", got=value, exp=expected)


def _draw_count(seed):
    def make(r):
        c = (r.choice((16, 32, 64)), r.choice((1, 2, 4)), r.choice((4, 8, 16)), r.choice((1, 2, 4, 8)),
             tuple(r.sample("qkvo", r.randint(1, 4))), r.choice(("none", "all", "lora_only")))
        return Case(c, label=t("ch10.case.count", dim=c[0], heads=c[1], dh=c[2], r=c[3], en=list(c[4]), bias=c[5]))
    return drawn(seed, make)


def check_count(fn) -> bool:
    cases = [Case(c, label=t("ch10.case.count", dim=c[0], heads=c[1], dh=c[2], r=c[3], en=list(c[4]), bias=c[5]))
             for c in COUNT_CASES]
    return run_checks(fn, solution_count, cases, t("ch10.ex3.title"), exercise="ch10.ex3", draw=_draw_count,
                      mistakes=MISTAKES["ch10.ex3"],
                      hints=[t("ch10.ex3.hint1"), t("ch10.ex3.hint2"), t("ch10.ex3.hint3")],
                      compare=_int_compare, forbid=("attnkit.lora.count_parameters",
                                                        "attnkit.lora.lora_param_count", "attnkit.lora.LoRASelfAttention"))


def check_q1(answer) -> bool:
    choices = {c: t(f"ch10.q1.{c}") for c in "abcd"}
    return check_answer(answer, "c", exercise="ch10.q1", title=t("ch10.q1.title"), explanation=t("ch10.q1.why"),
                        nudge=t("ch10.q1.nudge"), choices=choices)


def check_q2(answer) -> bool:
    return check_answer(answer, 16 * (4096 + 4096), tol=0.01, exercise="ch10.q2", title=t("ch10.q2.title"), explanation=t("ch10.q2.why"),
                        nudge=t("ch10.q2.nudge"))


def _compress_case(seed, out_f, in_f, r, k):
    g = torch.Generator().manual_seed(seed)
    # a trained-looking pair: B A has a spread of singular values, A's rows are not sorted by them
    A = torch.randn(r, in_f, generator=g, dtype=torch.float64)
    B = torch.randn(out_f, r, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, r, dtype=torch.float64)
    return A, B, k


COMPRESS_CASES = [(12, 10, 4, 2), (8, 16, 6, 1), (20, 20, 8, 5)]


def check_compress(fn) -> bool:
    cases = [Case(_compress_case(20 + i, o, n_in, r, k), label=t("ch10.case.compress", r=r, k=k, o=o, i=n_in))
             for i, (o, n_in, r, k) in enumerate(COMPRESS_CASES)]

    def compare(got, expected):  # any factorisation of the best product is right
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(isinstance(x, torch.Tensor) for x in got):
            return t("ex.why_type", exp="(A2, B2)", got=type(got).__name__)
        (A2, B2), (Ae, Be) = got, expected
        if A2.shape != Ae.shape or B2.shape != Be.shape:
            return t("ex.why_shape", got=(tuple(A2.shape), tuple(B2.shape)), exp=(tuple(Ae.shape), tuple(Be.shape)))
        diff = (B2.double() @ A2.double() - Be @ Ae).abs().max().item()
        return None if diff <= 1e-6 * max(1.0, (Be @ Ae).abs().max().item()) else \
            t("ch10.why.product", k=Ae.shape[0], diff=diff)

    return run_checks(fn, solution_compress, cases, t("ch10.ex4.title"), exercise="ch10.ex4", mistakes=MISTAKES["ch10.ex4"],
                      hints=[t("ch10.ex4.hint1"), t("ch10.ex4.hint2"), t("ch10.ex4.hint3")], compare=compare)
