"""Chapter 10's exercises: the checkers, their cases and their reference solutions.

Chapter 10 exercises: the LoRA forward, merging an update, counting trainable parameters, two
questions, and a stretch exercise (compress a trained rank-r update to rank k, Eckart-Young)."""

from __future__ import annotations

import torch

from attnkit.exercises import Case, check_answer, compare_tensors, drawn, run_checks
from attnkit.i18n import register, t
from attnkit.lora import LoRASelfAttention, count_parameters, mark_only_lora_as_trainable

register({
    # exercise 1: the forward
    "ch10.ex1.title": {"en": "Exercise 1 · the LoRA forward", "zh": "练习 1 · LoRA 的前向计算"},
    "ch10.ex1.hint1": {"en": "Two paths added together: the frozen layer (W and b, as nn.Linear) and the low-rank "
                             "path through A, then B, multiplied by a scale that depends on alpha and r.",
                       "zh": "两条路径相加：冻结的原层（W 和 b，和 nn.Linear 一样），以及先经过 A、再经过 B 的低秩路径，"
                             "后者还要乘以一个由 alpha 和 r 决定的缩放系数。"},
    "ch10.ex1.hint2": {"en": "x is (..., in) and W is (out, in), so the base path is x @ W.T + b. A is (r, in) and "
                             "B is (out, r): x @ A.T is (..., r). The scale is alpha / r, not r / alpha and not 1.",
                       "zh": "x 的形状是 (..., in)，W 是 (out, in)，所以原层路径是 x @ W.T + b。A 是 (r, in)，"
                             "B 是 (out, r)：x @ A.T 的形状是 (..., r)。缩放系数是 alpha / r，不是 r / alpha，也不是 1。"},
    "ch10.ex1.hint3": {"en": "x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T",
                       "zh": "x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T"},
    "ch10.case.fwd": {"en": "x {x}, W (out {o}, in {i}), r = {r}, alpha = {a}",
                      "zh": "x {x}，W（out {o}，in {i}），r = {r}，alpha = {a}"},
    # exercise 2: merge
    "ch10.ex2.title": {"en": "Exercise 2 · merge the update into the weight", "zh": "练习 2 · 把更新合并进权重"},
    "ch10.ex2.hint1": {"en": "The merged layer must give, for every x, what the LoRA layer gives: one matrix of the "
                             "shape of W that contains both paths.",
                       "zh": "合并后的层对任意 x 都要给出与 LoRA 层相同的结果：一个与 W 形状相同、把两条路径都包含进去的矩阵。"},
    "ch10.ex2.hint2": {"en": "(x @ A.T) @ B.T = x @ (B @ A).T, so the update of W (out, in) is a product of B (out, r) "
                             "and A (r, in) in that order, times the same scale as in the forward.",
                       "zh": "(x @ A.T) @ B.T = x @ (B @ A).T，所以 W（out, in）的更新是 B（out, r）与 A（r, in）按这个顺序的乘积，"
                             "再乘以与前向计算相同的缩放系数。"},
    "ch10.ex2.hint3": {"en": "W + (alpha / r) * B @ A", "zh": "W + (alpha / r) * B @ A"},
    "ch10.case.merge": {"en": "W (out {o}, in {i}), r = {r}, alpha = {a}", "zh": "W（out {o}，in {i}），r = {r}，alpha = {a}"},
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
    "ch10.q2.title": {"en": "Question 2 · the cost of a merged adapter", "zh": "问题 2 · 合并后的适配器要多少计算"},
    "ch10.q2.nudge": {"en": "After merging, what is left of A and B in the forward pass?",
                      "zh": "合并之后，前向计算里还剩下 A 和 B 的什么？"},
    "ch10.q2.why": {"en": "W' = W + s B A has the shape of W: the merged layer is an ordinary linear layer, so it "
                          "costs exactly the base layer's in * out multiply-adds per token, 0 more. (Unmerged, the "
                          "update costs r * (in + out) more.)",
                    "zh": "W' = W + s B A 与 W 形状相同：合并后的层就是一个普通的线性层，每个词元的乘加次数与原层完全一样"
                          "（in * out 次），多出 0 次。（不合并时，更新要多花 r * (in + out) 次。）"},
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
                             "对乘积 B @ A（out, in）做 SVD，而不是只对 A 做，再把 U S Vh 分给两个新的因子。"},
    "ch10.ex4.hint3": {"en": "U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False); return Vh[:k], U[:, :k] * S[:k]",
                       "zh": "U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False)；返回 Vh[:k], U[:, :k] * S[:k]"},
    "ch10.case.compress": {"en": "rank {r} -> {k}, B (out {o}, r), A (r, in {i})",
                           "zh": "秩 {r} -> {k}，B（out {o}, r），A（r, in {i}）"},
    "ch10.why.product": {"en": "B2 @ A2 differs from the best rank-{k} approximation by up to {diff:.3g}",
                         "zh": "B2 @ A2 与最佳秩 {k} 近似最多相差 {diff:.3g}"},
})


# ---- reference solutions (kept out of the notebook) ----

def solution_lora_forward(x, W, b, A, B, alpha, r):
    """W x + b + (alpha / r) B A x for x (..., in), W (out, in), A (r, in), B (out, r)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W.T).reshape(*x.shape[:-1], -1) \
        + (alpha / r) * torch.einsum("or,ri,...i->...o", B, A, x)


def solution_merge(W, A, B, alpha, r):
    """The merged weight W' = W + (alpha / r) B A (out, in)."""
    return torch.addmm(W, B, A, alpha=alpha / r)


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
    return Vh[:k], U[:, :k] * S[:k]



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch10.mistake.ex1.alpha': {"en": "you scaled B A x by alpha; the scale is alpha / r, so changing r does not change the update's size.", "zh": '你把 B A x 乘以了 alpha；缩放应为 alpha / r，这样改变 r 不会改变更新的大小。'},
    'ch10.mistake.ex1.no_bias': {"en": 'you left out the bias b of the frozen layer.', "zh": '你漏掉了冻结层的偏置 b。'},
    'ch10.mistake.ex2.alpha': {"en": 'you added alpha · B A; the scale is alpha / r.', "zh": '你加上的是 alpha · B A；缩放应为 alpha / r。'},
    'ch10.mistake.ex2.r_over_alpha': {"en": 'your scale is upside down: alpha / r, not r / alpha.', "zh": '你的缩放写反了：应为 alpha / r，而不是 r / alpha。'},
})


MISTAKES = {
    "ch10.ex1": (
        (lambda x, W, b, A, B, alpha, r: solution_lora_forward(x, W, b, A, B, alpha * r, r), lambda: t('ch10.mistake.ex1.alpha')),
        (lambda x, W, b, A, B, alpha, r: solution_lora_forward(x, W, b * 0, A, B, alpha, r), lambda: t('ch10.mistake.ex1.no_bias')),
    ),
    "ch10.ex2": (
        (lambda W, A, B, alpha, r: solution_merge(W, A, B, alpha * r, r), lambda: t('ch10.mistake.ex2.alpha')),
        (lambda W, A, B, alpha, r: solution_merge(W, A, B, r * r / alpha, r), lambda: t('ch10.mistake.ex2.r_over_alpha')),
    ),
}


# ---- cases ----

def _pair_case(seed, x_shape, out_f, in_f, r, alpha):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*x_shape, in_f, generator=g, dtype=torch.float64)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
    b = torch.randn(out_f, generator=g, dtype=torch.float64)
    A = torch.randn(r, in_f, generator=g, dtype=torch.float64)
    B = torch.randn(out_f, r, generator=g, dtype=torch.float64)
    return x, W, b, A, B, alpha, r


FWD_CASES = [((3,), 5, 7, 2, 4), ((2, 4), 6, 3, 1, 16), ((4,), 8, 8, 4, 2)]


def check_lora_forward(fn) -> bool:
    cases = []
    for i, (xs, o, n_in, r, a) in enumerate(FWD_CASES):
        cases.append(Case(_pair_case(i, xs, o, n_in, r, a),
                          label=t("ch10.case.fwd", x=(*xs, n_in), o=o, i=n_in, r=r, a=a)))
    return run_checks(fn, solution_lora_forward, cases, t("ch10.ex1.title"), exercise="ch10.ex1", mistakes=MISTAKES["ch10.ex1"],
                      hints=[t("ch10.ex1.hint1"), t("ch10.ex1.hint2"), t("ch10.ex1.hint3")],
                      compare=compare_tensors, forbid=("attnkit.lora.lora_linear", "attnkit.lora.LoRALinear",
                                                              "attnkit.lora.lora_delta", "attnkit.lora.merge_weight"))


MERGE_CASES = [(5, 7, 2, 4), (3, 9, 1, 16), (6, 6, 3, 2)]


def check_merge(fn) -> bool:
    cases = []
    for i, (o, n_in, r, a) in enumerate(MERGE_CASES):
        _, W, _, A, B, alpha, r = _pair_case(10 + i, (1,), o, n_in, r, a)
        cases.append(Case((W, A, B, alpha, r), label=t("ch10.case.merge", o=o, i=n_in, r=r, a=a)))
    return run_checks(fn, solution_merge, cases, t("ch10.ex2.title"), exercise="ch10.ex2", mistakes=MISTAKES["ch10.ex2"],
                      hints=[t("ch10.ex2.hint1"), t("ch10.ex2.hint2"), t("ch10.ex2.hint3")],
                      compare=compare_tensors,
                      forbid=("attnkit.lora.merge_weight", "attnkit.lora.lora_delta", "attnkit.lora.LoRALinear",
                              "attnkit.lora.unmerge_weight"))


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
                      hints=[t("ch10.ex3.hint1"), t("ch10.ex3.hint2"), t("ch10.ex3.hint3")],
                      compare=_int_compare, forbid=("attnkit.lora.count_parameters",
                                                        "attnkit.lora.lora_param_count", "attnkit.lora.LoRASelfAttention"))


def check_q1(answer) -> bool:
    choices = {c: t(f"ch10.q1.{c}") for c in "abcd"}
    return check_answer(answer, "c", exercise="ch10.q1", title=t("ch10.q1.title"), explanation=t("ch10.q1.why"),
                        nudge=t("ch10.q1.nudge"), choices=choices)


def check_q2(answer) -> bool:
    return check_answer(answer, 0, exercise="ch10.q2", title=t("ch10.q2.title"), explanation=t("ch10.q2.why"),
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

    return run_checks(fn, solution_compress, cases, t("ch10.ex4.title"), exercise="ch10.ex4",
                      hints=[t("ch10.ex4.hint1"), t("ch10.ex4.hint2"), t("ch10.ex4.hint3")], compare=compare)
