"""Chapter 01 exercises: attention from scratch, a causal mask, masked attention."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, run_checks
from attnkit.i18n import register, t

register({
    "ch01.ex1.title": {"en": "Exercise 1 · scaled dot-product attention",
                       "zh": "练习 1 · 缩放点积注意力"},
    "ch01.ex1.nudge": {"en": "Which axis should the softmax normalise over? Each row of weights (one query) must sum to 1; and look at how big the scores get when d_k is large.",
        "zh": "softmax 应当沿哪一维归一化？每个查询对应的一行权重之和必须为 1；再看看 d_k 较大时分数会变得多大。"},
    "ch01.ex1.stronger": {"en": "Three steps: scores between every query and every key (a matrix product with k transposed), divide them by the square root of the head dimension, softmax over the keys, then weight the values.",
        "zh": "分三步：先算每个查询与每个键的分数（与转置后的 k 做矩阵乘法），除以头维度的平方根，沿键的方向做 softmax，最后用这些权重对值加权求和。"},
    "ch01.ex1.formula": {"en": "softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1) @ v — d_k is q.shape[-1], and softmax runs over the keys (the last dim).",
                      "zh": "softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1) @ v —— d_k 是 q.shape[-1]，softmax 沿键的方向（最后一维）计算。"},
    "ch01.ex2.title": {"en": "Exercise 2 · causal mask", "zh": "练习 2 · 因果掩码"},
    "ch01.ex2.nudge": {"en": "Write out the 3 × 3 mask by hand: may query 0 see key 0? key 1? Does your diagonal match?",
        "zh": "先手写一个 3 × 3 的掩码：查询 0 能看到键 0 吗？键 1 呢？你的对角线对吗？"},
    "ch01.ex2.stronger": {"en": "Query i may see key j exactly when j <= i: the lower triangle, diagonal included, as a bool tensor (True = attend).",
        "zh": "当且仅当 j <= i 时查询 i 可以看到键 j：也就是包含对角线的下三角，返回布尔张量（True 表示可以关注）。"},
    "ch01.ex2.formula": {"en": "A bool (n, n) tensor, True where query i may attend to key j, that is j <= i: torch.tril of a matrix of ones, including the diagonal.",
                      "zh": "返回 (n, n) 的布尔张量，查询 i 可以关注键 j（即 j <= i）的位置为 True：对全 1 矩阵取 torch.tril，对角线也要保留。"},
    "ch01.ex3.title": {"en": "Exercise 3 · attention with a boolean mask",
                       "zh": "练习 3 · 带布尔掩码的注意力"},
    "ch01.ex3.nudge": {"en": "What does True mean in the mask: attend or hide? And what should a query output when every one of its keys is masked?",
        "zh": "掩码里的 True 表示可以关注还是屏蔽？如果某个查询的所有键都被屏蔽，它应当输出什么？"},
    "ch01.ex3.stronger": {"en": "Hide the masked scores with -inf before the softmax. A fully masked row gives NaN that way: find such rows and give them zero weights instead.",
        "zh": "在 softmax 之前把被屏蔽的分数填入 -inf。这样全被屏蔽的行会得到 NaN：要找出这些行，让它们的权重全为零。"},
    "ch01.ex3.formula": {"en": "Fill scores where mask is False with -inf (True = attend), apply softmax, then give rows whose keys are all masked zero weights — not NaN, and not the uniform average that -1e9 gives.",
                      "zh": "把 mask 为 False 的分数填成 -inf（True 表示可以关注），再做 softmax；所有键都被屏蔽的行应当得到全零权重，而不是 NaN（用 -1e9 填充则会变成均匀平均，同样不对）。"},
    "ch01.case.small": {"en": "3 queries, 4 keys, d_k = 2", "zh": "3 个查询、4 个键，d_k = 2"},
    "ch01.case.batched": {"en": "batch of 2, 2 heads, 5 positions, d_k = 8", "zh": "批次大小 2，2 个头，5 个位置，d_k = 8"},
    "ch01.case.large_dk": {"en": "d_k = 64, where the scale matters", "zh": "d_k = 64，缩放的影响很明显"},
    "ch01.case.n": {"en": "n = {n}", "zh": "n = {n}"},
    "ch01.case.causal": {"en": "a causal mask", "zh": "因果掩码"},
    "ch01.case.padding": {"en": "padding: the last 2 keys masked", "zh": "填充：最后 2 个键被屏蔽"},
    "ch01.case.full_row": {"en": "a query whose keys are all masked", "zh": "某个查询的所有键都被屏蔽"},
})


# the built-ins that compute what exercises 1 and 3 ask for
FORBID_SDPA = ("torch.nn.functional.scaled_dot_product_attention", "attnkit.core.scaled_dot_product_attention")


def _qkv(seed, *shape_q, s=None):
    g = torch.Generator().manual_seed(seed)
    *batch, n, d = shape_q
    s = n if s is None else s
    return (torch.randn(*batch, n, d, generator=g), torch.randn(*batch, s, d, generator=g),
            torch.randn(*batch, s, d, generator=g))


# ---- reference solutions (kept out of the notebooks) ----

def solution_attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, S)
    return torch.softmax(scores, dim=-1) @ v  # (..., L, Dv)


def solution_causal_mask(n):
    return torch.ones(n, n).tril().bool()  # (n, n), True = attend


def solution_masked_attention(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    dead = (~mask).all(dim=-1, keepdim=True)  # rows with no key to attend
    w = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return w @ v


# ---- checkers ----

def check_attention(fn) -> bool:
    cases = [Case(_qkv(1, 3, 2, s=4), label=t("ch01.case.small")),
             Case(_qkv(2, 2, 2, 5, 8), label=t("ch01.case.batched")),
             Case(_qkv(3, 4, 64), label=t("ch01.case.large_dk"))]
    return run_checks(fn, solution_attention, cases, t("ch01.ex1.title"),
                      hints=[t("ch01.ex1.nudge"), t("ch01.ex1.stronger"), t("ch01.ex1.formula")],
                      exercise="ch01.ex1",
                      forbid=FORBID_SDPA)


def check_causal_mask(fn) -> bool:
    cases = [Case((n,), label=t("ch01.case.n", n=n)) for n in (1, 4, 7)]
    return run_checks(fn, solution_causal_mask, cases, t("ch01.ex2.title"),
                      hints=[t("ch01.ex2.nudge"), t("ch01.ex2.stronger"), t("ch01.ex2.formula")],
                      exercise="ch01.ex2",
                      forbid=("attnkit.core.causal_mask",))


def check_masked_attention(fn) -> bool:
    q, k, v = _qkv(4, 5, 4)
    causal = solution_causal_mask(5)
    padding = torch.tensor([True, True, True, False, False]).expand(5, 5)
    full_row = causal.clone()
    full_row[2] = False
    cases = [Case((q, k, v, causal), label=t("ch01.case.causal")),
             Case((q, k, v, padding), label=t("ch01.case.padding")),
             Case((q, k, v, full_row), label=t("ch01.case.full_row"))]
    return run_checks(fn, solution_masked_attention, cases, t("ch01.ex3.title"),
                      hints=[t("ch01.ex3.nudge"), t("ch01.ex3.stronger"), t("ch01.ex3.formula")],
                      exercise="ch01.ex3",
                      forbid=FORBID_SDPA)
