"""Chapter 01's exercises: the checkers, their cases and their reference solutions.

Chapter 01 exercises: attention from scratch, a causal mask, masked attention, a question on
ties, and a stretch exercise (a self-attention module trained on section 1's lookup task)."""

from __future__ import annotations

import importlib
import math
from functools import lru_cache

import torch
from torch import nn

from attnkit.exercises import Case, check_answer, drawn, run_checks
from attnkit.i18n import register, t
from attnkit.timing import one_thread
from attnkit.toy import lookup_batch

register({
    "ch01.ex1.title": {"en": "Exercise 1 · attention with one token per column",
                       "zh": "练习 1 · 每个词元占一列的注意力"},
    "ch01.ex1.nudge": {"en": "Here a token is a column: which axis of q, k and v counts the tokens, and which the features? The scores must be an (L, S) table, and each query's weights over the keys must sum to 1.",
        "zh": "这里每个词元占一列：q、k、v 的哪一维数的是词元，哪一维是特征？分数应当是一张 (L, S) 的表，每个查询对所有键的权重之和必须为 1。"},
    "ch01.ex1.stronger": {"en": "Scores: the features are the second-to-last axis, so contract over it: q transposed times k gives (L, S). Divide by sqrt(d_k), with d_k = q.shape[-2]; softmax over the keys (the last axis of the scores); the output column of query i is the values' columns weighted by row i of the weights.",
        "zh": "分数：特征在倒数第二维，所以要在这一维上求和：q 的转置乘以 k，得到 (L, S)。再除以 sqrt(d_k)，其中 d_k = q.shape[-2]；沿键的方向（分数的最后一维）做 softmax；查询 i 的输出列，是用权重第 i 行对值的各列加权求和。"},
    "ch01.ex1.formula": {"en": "`w = softmax(q.transpose(-2, -1) @ k / sqrt(q.shape[-2]), dim=-1)` gives the (..., L, S) weights; then `return v @ w.transpose(-2, -1)`, of shape (..., d_v, L).",
                      "zh": "`w = softmax(q.transpose(-2, -1) @ k / sqrt(q.shape[-2]), dim=-1)` 得到形状为 (..., L, S) 的权重；然后 `return v @ w.transpose(-2, -1)`，形状为 (..., d_v, L)。"},
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
                      "zh": "在 mask 为 False 的位置把分数填入 -inf（True 表示可以关注），再做 softmax；所有键都被屏蔽的行应当得到全零权重——不是 NaN，也不是填入 -1e9 时得到的均匀平均。"},
    "ch01.case.small": {"en": "3 queries, 4 keys, d_k = 2, d_v = 5 (q: (2, 3), k: (2, 4), v: (5, 4))",
                          "zh": "3 个查询、4 个键，d_k = 2，d_v = 5（q：(2, 3)，k：(2, 4)，v：(5, 4)）"},
    "ch01.case.batched": {"en": "two leading dimensions (2, 2), 5 positions, d_k = 8",
                          "zh": "两个前导维度 (2, 2)，5 个位置，d_k = 8"},
    "ch01.case.large_dk": {"en": "d_k = 64, where the scale matters", "zh": "d_k = 64，缩放的影响很明显"},
    "ch01.case.n": {"en": "n = {n}", "zh": "n = {n}"},
    "ch01.case.causal": {"en": "a causal mask", "zh": "因果掩码"},
    "ch01.case.padding": {"en": "padding: the last 2 keys masked", "zh": "填充：最后 2 个键被屏蔽"},
    "ch01.case.full_row": {"en": "a query whose keys are all masked", "zh": "某个查询的所有键都被屏蔽"},
    # the question
    "ch01.q1.title": {"en": "Question 1 · two equal keys as T → 0",
                      "zh": "问题 1 · 两个相同的键，T → 0"},
    "ch01.q1.nudge": {"en": "As T shrinks, every key whose score is below the row's largest gets a weight that goes to 0. "
                            "How many keys hold the largest score here, and how do they split the total of 1?",
                      "zh": "T 越小，分数低于该行最大值的键，权重都趋于 0。这里有几个键并列最大分数？它们怎样分掉总和 1？"},
    "ch01.q1.why": {"en": "Equal keys give equal scores, so the softmax gives them equal weights at every temperature. "
                          "As T → 0 every other weight goes to 0 and the two share the whole row: 0.5 each, never one-hot. "
                          "The next cell shows it: at T = 0.05, a row whose best key is a word that occurs twice stays near 0.5.",
                    "zh": "相同的键得到相同的分数，所以无论温度多少，softmax 给它们的权重都相等。"
                          "T → 0 时其余权重都趋于 0，这两个键平分整行：各得 0.5，永远不会变成独热分布。"
                          "下一个单元格可以看到：T = 0.05 时，最佳键是重复出现的词的那一行，最大权重停在 0.5 附近。"},
    # the stretch exercise
    "ch01.ex4.title": {"en": "Stretch exercise · a self-attention module that learns the lookup",
                       "zh": "挑战题 · 学会按内容查找的自注意力模块"},
    "ch01.ex4.nudge": {"en": "The mixing weights must come from the content of x, one row per position: compare what each "
                             "position looks for with what every position is, and normalise each row.",
                       "zh": "混合权重必须由 x 的内容算出来，每个位置一行：把每个位置要找的东西与每个位置本身作比较，再对每一行归一化。"},
    "ch01.ex4.stronger": {"en": "Three nn.Linear(d, d) layers give q, k and v from x. Do not share one between queries and keys: "
                                "in this task what position i looks for (R x_i) is not what it is (x_i). Softmax over the keys.",
                          "zh": "用三个 nn.Linear(d, d) 从 x 得到 q、k、v。查询和键不能共用同一个：在这个任务里，"
                                "位置 i 要找的东西（R x_i）并不是它自己（x_i）。softmax 沿键的方向计算。"},
    "ch01.ex4.formula": {"en": "In `__init__`: `self.q, self.k, self.v = (nn.Linear(d, d) for _ in range(3))`. In `forward(x)`: "
                               "`q, k, v = self.q(x), self.k(x), self.v(x)`, then "
                               "`w = softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1)` and `return w @ v`.",
                         "zh": "在 `__init__` 中：`self.q, self.k, self.v = (nn.Linear(d, d) for _ in range(3))`。在 `forward(x)` 中："
                               "`q, k, v = self.q(x), self.k(x), self.v(x)`，然后 "
                               "`w = softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1)`，最后 `return w @ v`。"},
    "ch01.ex4.case": {"en": "{n} positions, d = {d}, seed {seed}: {steps} training steps",
                      "zh": "{n} 个位置，d = {d}，种子 {seed}：训练 {steps} 步"},
    "ch01.ex4.too_high": {"en": "test MSE {got:.3f} after training: it must be below {limit} (the reference module reaches "
                                "{ref:.3f}; always answering zero gives about {zero:.2f})",
                          "zh": "训练后的测试均方误差为 {got:.3f}：需要低于 {limit}（参考模块能达到 {ref:.3f}；始终输出零的误差约为 {zero:.2f}）"},
    "ch01.ex4.not_module": {"en": "MySelfAttention(d) must build a torch.nn.Module with parameters to train, got {got}",
                            "zh": "MySelfAttention(d) 应当构造一个带可训练参数的 torch.nn.Module，实际得到的是 {got}"},
    "ch01.ex4.shape": {"en": "forward(x) must return a tensor of x's shape {exp}, got {got}",
                       "zh": "forward(x) 应当返回与 x 形状相同的张量 {exp}，实际得到的是 {got}"},
    # diagnosed mistakes: the hint shown when the result equals the mistake's
    "ch01.mistake.no_scale": {"en": "your result is attention without the 1/sqrt(d_k) scale: divide the scores by the square root of d_k (the feature axis) before the softmax.",
                               "zh": "你的结果是没有 1/sqrt(d_k) 缩放的注意力：在 softmax 之前把分数除以 d_k（特征那一维的长度）的平方根。"},
    "ch01.mistake.scale_by_d": {"en": "you divided the scores by d_k; the scale is its square root.",
                                 "zh": "你把分数除以了 d_k；应当除以它的平方根。"},
    "ch01.mistake.wrong_dim": {"en": "your softmax normalises over the queries: each query's weights over the keys must sum to 1, so normalise along the keys' axis of the scores.",
                                "zh": "你的 softmax 沿查询方向归一化：每个查询对所有键的权重之和应为 1，所以要沿分数中键所在的那一维归一化。"},
    "ch01.mistake.rows_out": {"en": "your output has one token per row, (..., L, d_v); here every token is a column: return (..., d_v, L).",
                               "zh": "你的输出每个词元占一行，形状是 (..., L, d_v)；这里每个词元占一列：应当返回 (..., d_v, L)。"},
    "ch01.mistake.local": {"en": "the trained module's output at a position does not change when the other positions change: nothing mixes positions. Attention weights every position's value by how well its key matches this position's query.",
                            "zh": "训练后的模块在某个位置的输出，不随其他位置的输入而变：没有任何东西在位置之间混合。注意力要按每个位置的键与本位置的查询匹配得多好，对各位置的值加权。"},
    "ch01.mistake.same_rows": {"en": "the trained module gives every position the same output: its weights do not depend on the query. Compute each row of weights from that position's own query.",
                                "zh": "训练后的模块给每个位置的输出都一样：它的权重与查询无关。每一行权重都要由该位置自己的查询算出。"},
    "ch01.mistake.unnormalised": {"en": "feed the module n copies of one vector, then 2n copies: its output changes, so a query's weights do not sum to 1 over the keys (with weights that sum to 1, any number of equal values averages to that value). Normalise each row with a softmax over the keys.",
                                   "zh": "先把同一个向量复制 n 份输入模块，再复制 2n 份：输出变了，说明每个查询对所有键的权重之和不是 1（权重之和为 1 时，任意多个相同的值加权平均后仍是这个值）。要沿键的方向对每一行做 softmax 归一化。"},
    "ch01.mistake.no_diagonal": {"en": "your mask hides the diagonal: a query may see its own key (j <= i, not j < i).",
                                  "zh": "你的掩码把对角线也屏蔽了：查询可以看到自己位置的键（j <= i，而不是 j < i）。"},
    "ch01.mistake.upper": {"en": "your mask is the upper triangle: query i may see keys j <= i, the past, not the future.",
                            "zh": "你的掩码是上三角：查询 i 只能看到 j <= i 的键，也就是过去，而不是未来。"},
    "ch01.mistake.inverted": {"en": "you hid the keys where the mask is True: here True means attend, False means hide.",
                               "zh": "你把 mask 为 True 的键屏蔽了：这里 True 表示可以关注，False 才表示屏蔽。"},
    "ch01.mistake.big_negative": {"en": "a fully masked row gets the uniform average of the values: that is what filling with -1e9 gives. Give such rows zero weights.",
                                   "zh": "所有键都被屏蔽的行得到了值的均匀平均：这是填入 -1e9 的结果。应让这样的行权重全为零。"},
})


# the built-ins that compute what exercises 1 and 3 ask for
FORBID_SDPA = ("torch.nn.functional.scaled_dot_product_attention", "attnkit.core.scaled_dot_product_attention")
# ... and the attention modules, for the stretch exercise
FORBID_MODULES = FORBID_SDPA + ("torch.nn.MultiheadAttention", "attnkit.mha.MultiHeadAttention")

# the stretch exercise: section 1's task, trained as section 1 trains it (Adam, lr 0.03, batch 64)
STRETCH_STEPS = 150
STRETCH_LIMIT = 0.35  # test MSE to beat; predicting zero scores about 1.09, the fixed matrix about 0.96
STRETCH_CASES = ((8, 16, 0), (10, 12, 1))  # (positions n, width d, seed)


def _qkv(seed, *shape_q, s=None):
    g = torch.Generator().manual_seed(seed)
    *batch, n, d = shape_q
    s = n if s is None else s
    return (torch.randn(*batch, n, d, generator=g), torch.randn(*batch, s, d, generator=g),
            torch.randn(*batch, s, d, generator=g))


# ---- reference solutions (kept out of the notebooks) ----

def solution_attention(q, k, v):
    """Attention with one token per column: q (..., d_k, L), k (..., d_k, S), v (..., d_v, S)."""
    scores = q.transpose(-2, -1) @ k / math.sqrt(q.shape[-2])  # (..., L, S)
    return v @ torch.softmax(scores, dim=-1).transpose(-2, -1)  # (..., d_v, L)


def solution_causal_mask(n):
    return torch.ones(n, n).tril().bool()  # (n, n), True = attend


def solution_masked_attention(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    dead = (~mask).all(dim=-1, keepdim=True)  # rows with no key to attend
    w = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return w @ v


class SolutionSelfAttention(nn.Module):
    """Self-attention with separate query, key and value projections: (B, n, d) -> (B, n, d)."""

    def __init__(self, d: int):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(d, d, bias=False) for _ in range(3))

    def forward(self, x):
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)  # (B, n, d) each
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-1)  # (B, n, n)
        return w @ v


def train_on_lookup(module_cls, n: int, d: int, seed: int, steps: int = STRETCH_STEPS, batch: int = 64,
                    lr: float = 0.03, test_batch: int = 500) -> float:
    """Build ``module_cls(d)`` under ``seed``, train it with Adam on section 1's lookup task
    (attnkit.toy.lookup_batch) and return its mean squared error on a held-out seeded batch."""
    with torch.random.fork_rng(), one_thread():
        torch.manual_seed(seed)
        model = module_cls(d)
        if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
            raise TypeError(t("ch01.ex4.not_module", got=type(model).__name__))
        g, rot = _lookup_task(d, seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            x, y = lookup_batch(g, batch, n, d, rot)  # (B, n, d) each
            out = model(x)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(t("ch01.ex4.shape", exp=tuple(x.shape), got=got))
            loss = (out - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, y = _held_out(n, d, seed, rot, test_batch)
        with torch.no_grad():
            fit = _Fit((model(x) - y).pow(2).mean().item())
            fit.symptoms = _symptoms(model, x[:8])
        return fit


class _Fit(float):
    """A trained module's test error, with the symptoms its behaviour shows (see _symptoms)."""

    symptoms: frozenset = frozenset()


def _symptoms(model, x) -> frozenset:
    """What the trained module does wrong, seen from outside: "local" (a position's output does
    not change when the others do: no mixing), "same_rows" (every position gets one output: the
    weights ignore the query), "unnormalised" (n copies of one vector and 2n copies give different
    outputs; weights that sum to 1 over the keys average equal values to the same value). x: (B, n, d)."""
    out = model(x)  # (B, n, d)
    if not isinstance(out, torch.Tensor) or not torch.isfinite(out).all():
        return frozenset()
    found = set()
    others = x.clone()
    others[:, 1:] = x[:, 1:].flip(0) + 1.0  # every position but the first changed
    if torch.allclose(model(others)[:, 0], out[:, 0], rtol=1e-4, atol=1e-5):
        found.add("local")
    if torch.allclose(out, out[:, :1].expand_as(out), rtol=1e-4, atol=1e-5):
        found.add("same_rows")
    same = x[:, :1].expand_as(x).contiguous()  # (B, n, d): position 0's vector everywhere
    once, twice = model(same)[:, 0], model(torch.cat([same, same], dim=1))[:, 0]
    if not torch.allclose(once, twice, rtol=1e-3, atol=1e-4):
        found.add("unnormalised")
    return frozenset(found)


def _lookup_task(d: int, seed: int):
    """The generator of a case's training batches and its R, (d, d) orthogonal."""
    g = torch.Generator().manual_seed(seed)
    return g, torch.linalg.qr(torch.randn(d, d, generator=g))[0]


def _held_out(n: int, d: int, seed: int, rot: torch.Tensor, size: int = 500):
    return lookup_batch(torch.Generator().manual_seed(seed + 1000), size, n, d, rot)


@lru_cache(maxsize=None)
def solution_lookup_mse(n: int, d: int, seed: int) -> float:
    """The reference module's test error on a case (deterministic: computed once)."""
    return train_on_lookup(SolutionSelfAttention, n, d, seed)


class _Symptom(str):
    """The result a named mistake stands for: the learner's result shows it or not."""


class _Mistake:
    """A named wrong module: ``_Mistake(n, d, seed)`` is its symptom (for the diagnosis);
    ``as_learner`` is the module itself, as a learner would hand it in."""

    def __init__(self, symptom: str, module_cls):
        self.symptom, self.as_learner = _Symptom(symptom), module_cls

    def __call__(self, n, d, seed):
        return self.symptom


class _PositionWise(nn.Module):  # no attention: each position on its own
    def __init__(self, d):
        super().__init__()
        self.v = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return self.v(x)


class _MeanOfValues(nn.Module):  # weights that ignore the query: every row the same average
    def __init__(self, d):
        super().__init__()
        self.v = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return self.v(x).mean(dim=1, keepdim=True).expand_as(x)


class _NoSoftmax(nn.Module):  # scores used as weights, never normalised
    def __init__(self, d):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))

    def forward(self, x):
        return (self.q(x) @ self.k(x).transpose(-2, -1) / math.sqrt(x.shape[-1])) @ self.v(x)


STRETCH_MISTAKES = (
    (_Mistake("local", _PositionWise), lambda: t("ch01.mistake.local")),
    (_Mistake("same_rows", _MeanOfValues), lambda: t("ch01.mistake.same_rows")),
    (_Mistake("unnormalised", _NoSoftmax), lambda: t("ch01.mistake.unnormalised")),
)


class _Trained:
    """``_Trained(cls)(n, d, seed)`` -> the test error of ``cls`` trained on the lookup task. It
    keeps the globals of the learner's methods, so ``forbid`` also sees names imported there."""

    def __init__(self, module_cls):
        self.module_cls = module_cls
        method = getattr(module_cls, "forward", None) or getattr(module_cls, "__init__", None)
        self.__globals__ = getattr(method, "__globals__", {})

    def __call__(self, n, d, seed):
        return train_on_lookup(self.module_cls, n, d, seed)


# ---- typical mistakes, for the diagnosis ----

def _attn(q, k, v, scale, dim=-1):  # one token per column, as exercise 1 asks
    return v @ torch.softmax(q.transpose(-2, -1) @ k * scale, dim=dim).transpose(-2, -1)


ATTENTION_MISTAKES = (
    (lambda q, k, v: _attn(q, k, v, 1.0), lambda: t("ch01.mistake.no_scale")),
    (lambda q, k, v: _attn(q, k, v, 1 / q.shape[-2]), lambda: t("ch01.mistake.scale_by_d")),
    (lambda q, k, v: _attn(q, k, v, q.shape[-2] ** -0.5, dim=-2), lambda: t("ch01.mistake.wrong_dim")),
    (lambda q, k, v: _attn(q, k, v, q.shape[-2] ** -0.5).transpose(-2, -1), lambda: t("ch01.mistake.rows_out")),
)
MASK_MISTAKES = (
    (lambda n: torch.ones(n, n).tril(-1).bool(), lambda: t("ch01.mistake.no_diagonal")),
    (lambda n: torch.ones(n, n).triu().bool(), lambda: t("ch01.mistake.upper")),
)


def _fill_attention(q, k, v, hide, fill):
    scores = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).masked_fill(hide, fill)
    return torch.softmax(scores, dim=-1) @ v


MASKED_MISTAKES = (
    (lambda q, k, v, mask: solution_masked_attention(q, k, v, ~mask), lambda: t("ch01.mistake.inverted")),
    (lambda q, k, v, mask: _fill_attention(q, k, v, ~mask, -1e9), lambda: t("ch01.mistake.big_negative")),
)


# ---- checkers ----

def check_attention(fn) -> bool:
    g = torch.Generator().manual_seed(1)
    small = (torch.randn(2, 3, generator=g), torch.randn(2, 4, generator=g), torch.randn(5, 4, generator=g))
    cases = [Case(small, label=t("ch01.case.small")),  # one token per column: (d, L), (d, S), (d_v, S)
             Case(tuple(x.transpose(-2, -1).contiguous() for x in _qkv(2, 2, 2, 5, 8)), label=t("ch01.case.batched")),
             Case(tuple(x.transpose(-2, -1).contiguous() for x in _qkv(3, 4, 64)), label=t("ch01.case.large_dk"))]
    return run_checks(fn, solution_attention, cases, t("ch01.ex1.title"),
                      hints=[t("ch01.ex1.nudge"), t("ch01.ex1.stronger"), t("ch01.ex1.formula")],
                      exercise="ch01.ex1", mistakes=ATTENTION_MISTAKES,
                      forbid=FORBID_SDPA)


def check_causal_mask(fn) -> bool:
    cases = [Case((n,), label=t("ch01.case.n", n=n)) for n in (1, 4, 7)]
    return run_checks(fn, solution_causal_mask, cases, t("ch01.ex2.title"),
                      hints=[t("ch01.ex2.nudge"), t("ch01.ex2.stronger"), t("ch01.ex2.formula")],
                      exercise="ch01.ex2", mistakes=MASK_MISTAKES,
                      draw=lambda seed: drawn(seed, lambda r: (lambda n: Case((n,), label=t("ch01.case.n", n=n)))(
                          r.randint(2, 12))),
                      forbid=("attnkit.core.causal_mask", "attnkit.sparse.sliding_window_mask"))


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
                      exercise="ch01.ex3", mistakes=MASKED_MISTAKES,
                      forbid=FORBID_SDPA)


def check_q1(answer) -> bool:
    return check_answer(answer, 0.5, exercise="ch01.q1", title=t("ch01.q1.title"),
                        explanation=t("ch01.q1.why"), nudge=t("ch01.q1.nudge"), tol=0.02)


def check_self_attention(module_cls) -> bool:
    """Train the learner's ``module_cls(d)`` on section 1's task; pass below STRETCH_LIMIT."""
    n, d, seed = STRETCH_CASES[0]
    zero = _held_out(n, d, seed, _lookup_task(d, seed)[1])[1].pow(2).mean().item()  # MSE of answering 0

    def compare(got, expected):
        if isinstance(expected, _Symptom):  # the diagnosis: does the learner's module show it?
            return None if expected in getattr(got, "symptoms", ()) else expected
        if not isinstance(got, float) or not math.isfinite(got) or got >= STRETCH_LIMIT:
            return t("ch01.ex4.too_high", got=float(got), limit=STRETCH_LIMIT, ref=expected, zero=zero)
        return None

    # a class is trained through _Trained; a built-in handed in as it is, or no class, goes to
    # run_checks unwrapped (which reports it as forbidden, or as not a function)
    builtins = [getattr(importlib.import_module(m), a) for m, a in (n.rsplit(".", 1) for n in FORBID_MODULES)]
    plain = not callable(module_cls) or any(module_cls is b for b in builtins)
    def case(n, d, seed):
        return Case((n, d, seed), label=t("ch01.ex4.case", n=n, d=d, seed=seed, steps=STRETCH_STEPS))

    cases = [case(*c) for c in STRETCH_CASES]
    return run_checks(module_cls if plain else _Trained(module_cls), solution_lookup_mse, cases, t("ch01.ex4.title"),
                      hints=[t("ch01.ex4.nudge"), t("ch01.ex4.stronger"), t("ch01.ex4.formula")],
                      exercise="ch01.ex4", compare=compare, forbid=FORBID_MODULES, mistakes=STRETCH_MISTAKES,
                      draw=lambda s: drawn(s, lambda r: case(r.randint(6, 10), r.randint(12, 16), r.randint(0, 10**6))))
