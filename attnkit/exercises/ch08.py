"""Chapter 08's exercises: the checkers, their cases and their reference solutions.

Chapter 08 exercises: the fixed pattern's mask, the receptive field after L layers, the memory
of a window, two questions, and a stretch exercise (a sliding window in O(N·w) memory, measured)."""

from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode

from attnkit.exercises import (
    Case,
    Measured,
    Result,
    _Unmeasured,
    check_answer,
    compare_tensors,
    drawn,
    run_checks,
)
from attnkit.i18n import register, t

register({
    # exercise 1: the fixed pattern
    "ch08.ex1.title": {"en": "Exercise 1 · the Sparse Transformer's fixed pattern",
                       "zh": "练习 1 · Sparse Transformer 的 fixed 模式"},
    "ch08.ex1.hint1": {"en": "Two sets, joined: the query's own block of l positions, and the last c positions of "
                             "every block. Both only up to the query itself (causal).",
                       "zh": "两个集合取并集：查询所在的那一块（l 个位置），以及每一块的最后 c 个位置。"
                             "两者都只到查询自己为止（因果）。"},
    "ch08.ex1.hint2": {"en": "Build index grids i = arange(n)[:, None], j = arange(n)[None, :]. Same block: "
                             "i // l == j // l. Summary: j % l >= l - c (the last c of a block, so l - c .. l - 1).",
                       "zh": "先建下标网格 i = arange(n)[:, None]，j = arange(n)[None, :]。同一块：i // l == j // l；"
                             "摘要位置：j % l >= l - c（一块的最后 c 个，即 l - c .. l - 1）。"},
    "ch08.ex1.hint3": {"en": "((i // l == j // l) | (j % l >= l - c)) & (j <= i)",
                       "zh": "((i // l == j // l) | (j % l >= l - c)) & (j <= i)"},
    "ch08.case.fixed": {"en": "n = {n}, l = {l}, c = {c}", "zh": "n = {n}，l = {l}，c = {c}"},
    # exercise 2: receptive field
    "ch08.ex2.title": {"en": "Exercise 2 · which tokens reach the last token after L layers?",
                       "zh": "练习 2 · 经过 L 层后，哪些词元能影响最后一个词元？"},
    "ch08.ex2.hint1": {"en": "Start from the last token alone. One layer adds every key that a token already in "
                             "the set attends to (row mask[i] lists what query i sees), and nothing is ever lost "
                             "(the residual stream).",
                       "zh": "从只含最后一个词元的集合出发。每经过一层，就把集合中每个词元所关注的键都加进来"
                             "（第 i 行 mask[i] 列出查询 i 能看到的键）；已经在集合里的不会丢失（残差连接）。"},
    "ch08.ex2.hint2": {"en": "Keep a bool vector r (n,). A key k joins when mask[j, k] for some j with r[j]: that is "
                             "(r as a row) @ mask > 0, not mask @ r (that would follow the arrows backwards).",
                       "zh": "维护一个布尔向量 r（长度 n）。若存在 r[j] 为真且 mask[j, k] 为真的 j，键 k 就加入："
                             "这是 (把 r 当作行向量) @ mask > 0，而不是 mask @ r（那是逆着箭头走）。"},
    "ch08.ex2.hint3": {"en": "`r = zeros(n, bool); r[-1] = True`; repeat L times: `r = r | ((r.float() @ mask.float()) > 0)`",
        "zh": "`r = zeros(n, bool); r[-1] = True`；重复 L 次：`r = r | ((r.float() @ mask.float()) > 0)`"},
    "ch08.case.reach": {"en": "{what}, n = {n}, {layers} layers", "zh": "{what}，n = {n}，{layers} 层"},
    "ch08.case.causal_window": {"en": "causal window of 4", "zh": "长度为 4 的因果窗口"},
    "ch08.case.strided": {"en": "strided, l = 4", "zh": "strided，l = 4"},
    "ch08.case.blocks": {"en": "separate blocks (never connected)", "zh": "互不相连的分块"},
    "ch08.case.previous": {"en": "only the previous token (not itself)", "zh": "只看前一个词元（不含自己）"},
    # exercise 3: memory of a window
    "ch08.ex3.title": {"en": "Exercise 3 · the memory of a causal sliding window",
                       "zh": "练习 3 · 因果滑动窗口要占多少内存"},
    "ch08.ex3.hint1": {"en": "Count the (query, key) pairs row by row: a query sees the `window` most recent keys, "
                             "itself included, but the first queries have fewer keys before them.",
                       "zh": "逐行数出（查询, 键）对：每个查询看到最近的 `window` 个键（包括它自己），"
                             "但开头的几个查询前面没有那么多键。"},
    "ch08.ex3.hint2": {"en": "Row i holds min(i + 1, window) scores. Multiply the total by heads and by the bytes "
                             "of one score. Check n < window too.",
                       "zh": "第 i 行有 min(i + 1, window) 个分数。总数再乘以头数和每个分数的字节数。"
                             "也要考虑 n < window 的情况。"},
    "ch08.ex3.hint3": {"en": "sum(min(i + 1, window) for i in range(n)) * heads * dtype_bytes",
                       "zh": "sum(min(i + 1, window) for i in range(n)) * heads * dtype_bytes"},
    "ch08.case.bytes": {"en": "n = {n}, window = {w}, {h} heads, {b} bytes",
                        "zh": "n = {n}，window = {w}，{h} 个头，每个 {b} 字节"},
    # questions
    "ch08.q1.title": {"en": "Question 1 · how many layers until the last token sees token 0?",
                      "zh": "问题 1 · 要多少层，最后一个词元才能看到词元 0？"},
    "ch08.q1.why": {"en": "Each layer lets information travel window - 1 = 7 positions further back (a query sees "
                          "itself and the 7 before it). From position 63 to 0 is 63 steps: ceil(63 / 7) = 9 layers.",
                    "zh": "每经过一层，信息最多再往前传 window - 1 = 7 个位置（一个查询看到它自己和前面 7 个）。"
                          "从位置 63 到位置 0 共 63 步：ceil(63 / 7) = 9 层。"},
    "ch08.q1.nudge": {"en": "How far back does one layer reach? The query itself is one of the 8 keys.",
                      "zh": "一层最多能往前够到多远？别忘了查询自己也是 8 个键之一。"},
    "ch08.q2.title": {"en": "Question 2 · which layer can find every token's furthest vector?",
                      "zh": "问题 2 · 哪一种单层注意力能为每个词元找到离它最远的向量？"},
    "ch08.q2.a": {"en": "a sliding window of 64 keys", "zh": "64 个键的滑动窗口"},
    "ch08.q2.b": {"en": "BigBird: window + global + random blocks", "zh": "BigBird：窗口 + 全局块 + 随机块"},
    "ch08.q2.c": {"en": "full attention", "zh": "全注意力"},
    "ch08.q2.why": {"en": "The furthest vector can be any of the n tokens, so one layer must be able to look at all "
                          "of them: only full attention can. A sparse layer finds it only when the pattern happens "
                          "to keep that pair, so its accuracy is about the fraction of pairs it keeps (BigBird, "
                          "Proposition 1: a sparse layer needs many layers for this task).",
                    "zh": "最远的向量可能是 n 个词元中的任何一个，所以单层注意力必须能看到所有词元：只有全注意力做得到。"
                          "稀疏的一层只有在模式恰好保留了那一对时才能找到它，所以准确率约等于它保留的配对比例"
                          "（BigBird 命题 1：稀疏注意力做这个任务需要很多层）。"},
    "ch08.q2.nudge": {"en": "Where can the furthest vector be? Which pattern is sure to see that position?",
                      "zh": "最远的向量可能在哪里？哪一种模式一定能看到那个位置？"},
    # stretch
    "ch08.ex4.title": {"en": "Stretch · a causal sliding window in O(N·w) memory",
                       "zh": "挑战题 · 只用 O(N·w) 内存的因果滑动窗口注意力"},
    "ch08.ex4.hint1": {"en": "An N x N mask or score matrix is exactly what you cannot afford. Take the queries a "
                             "chunk at a time; which keys can a chunk of queries see at all?",
                       "zh": "N × N 的掩码或分数矩阵正是你负担不起的。把查询分块处理：一块查询最多能看到哪些键？"},
    "ch08.ex4.hint2": {"en": "Queries s .. e - 1 see keys max(0, s - window + 1) .. e - 1: a contiguous slice. "
                             "Score the chunk against that slice, mask pairs with i - j >= window or j > i, softmax, "
                             "times the values.",
                       "zh": "查询 s .. e - 1 看到的键是 max(0, s - window + 1) .. e - 1：一段连续的切片。"
                             "用这一段键给这一块查询打分，屏蔽 i - j >= window 或 j > i 的配对，做 softmax，再乘以值。"},
    "ch08.ex4.hint3": {"en": "`for s in range(0, N, C): e = min(N, s + C); a = max(0, s - window + 1); sc = q[s:e] @ k[a:e].T / sqrt(d); i, j = arange(s, e)[:, None], arange(a, e)[None]; sc[(i - j >= window) | (j > i)] = -inf; out[s:e] = softmax(sc, -1) @ v[a:e]`",
        "zh": "`for s in range(0, N, C): e = min(N, s + C); a = max(0, s - window + 1); sc = q[s:e] @ k[a:e].T / sqrt(d); i, j = arange(s, e)[:, None], arange(a, e)[None]; sc[(i - j >= window) | (j > i)] = -inf; out[s:e] = softmax(sc, -1) @ v[a:e]`"},
    "ch08.ex4.too_big": {"en": "your function held {got:.2f} MiB at once; the N x N matrix alone is {nn:.1f} MiB: "
                               "expected below {limit:.2f} MiB",
                         "zh": "你的函数同时占用了 {got:.2f} MiB；单是 N × N 矩阵就有 {nn:.1f} MiB：应低于 {limit:.2f} MiB"},
    "ch08.case.win_short": {"en": "N = 13, window = 4 (ragged)", "zh": "N = 13，window = 4（最后一块不满）"},
    "ch08.case.win_one": {"en": "window = 1 (each token sees only itself)", "zh": "window = 1（每个词元只看到自己）"},
    "ch08.case.win_long": {"en": "N = 2048, d = 8, window = 32: memory is measured",
                           "zh": "N = 2048，d = 8，window = 32：测量内存"},
})


# ---- reference solutions (kept out of the notebooks) ----

def solution_fixed_mask(n, l, c):
    """(n, n) bool: {j <= i : floor(j / l) = floor(i / l)} ∪ {j <= i : j mod l >= l - c}."""
    rows = torch.arange(n).view(n, 1).expand(n, n)
    cols = rows.T
    same_block = torch.div(rows, l, rounding_mode="floor") == torch.div(cols, l, rounding_mode="floor")
    summary = torch.remainder(cols, l) >= l - c
    return (same_block | summary) & (cols <= rows)


def solution_reach(mask, layers):
    """(n,) bool: the tokens whose information reaches the last token after ``layers`` layers."""
    n = mask.shape[0]
    reach = torch.arange(n) == n - 1
    for _ in range(layers):
        reach = reach | mask[reach].any(dim=0)  # every key some token of the set attends to
    return reach


def solution_window_bytes(n, window, heads, dtype_bytes):
    """Bytes of the scores a causal sliding window keeps: sum_i min(i + 1, w) * heads * bytes."""
    full = max(0, n - window) * window  # rows that see a whole window
    ramp = min(n, window) * (min(n, window) + 1) // 2  # the first rows: 1, 2, ..., min(n, w)
    return (full + ramp) * heads * dtype_bytes


def solution_window_attention(q, k, v, window):
    """Causal sliding-window attention of q, k (N, d), v (N, dv), 32 queries at a time."""
    n, d = q.shape
    out = q.new_empty(n, v.shape[1])
    for s in range(0, n, 32):
        e = min(n, s + 32)
        a = max(0, s - window + 1)  # the first key any of these queries can see
        scores = (q[s:e] @ k[a:e].T) / math.sqrt(d)  # (C, C + w - 1)
        gap = torch.arange(s, e)[:, None] - torch.arange(a, e)[None, :]  # i - j
        scores = scores.masked_fill((gap < 0) | (gap >= window), float("-inf"))
        out[s:e] = torch.softmax(scores, dim=-1) @ v[a:e]
    return out



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch08.mistake.ex1.not_causal': {"en": 'your mask lets tokens see the future: keep only j <= i.', "zh": '你的掩码让 token 看到了未来：只保留 j <= i。'},
    'ch08.mistake.ex1.summary_first': {"en": 'your summary columns are the first c of each block; they are the last c (j mod l >= l − c).', "zh": '你把每块的前 c 列当成了汇总列；应当是后 c 列（j mod l >= l − c）。'},
    'ch08.mistake.ex2.one_layer': {"en": 'you took one step whatever the number of layers: each layer widens the set once more.', "zh": '不管层数多少你只走了一步：每一层都要把集合再扩大一次。'},
    'ch08.mistake.ex2.transposed': {"en": 'you followed the mask the wrong way: the last token reads from the keys its row attends to (mask[i, j]: i reads j).', "zh": '你沿掩码的反方向走了：最后一个 token 从它那一行关注的键读取信息（mask[i, j]：i 读取 j）。'},
    'ch08.mistake.ex3.no_ramp': {"en": 'you counted every row as a full window; the first rows see fewer keys (1, 2, ..., w).', "zh": '你把每一行都按完整窗口计数了；开头几行看到的键更少（1, 2, ..., w）。'},
    'ch08.mistake.ex3.short_sequence': {"en": "your count is wrong when the sequence is shorter than the window: then no row sees a whole window, and a formula with n − window counts a negative number of full rows.",
                                        "zh": "序列比窗口短时你的计数错了：这时没有哪一行能看到完整的窗口，而含有 n − window 的公式会数出负数个完整的行。"},
    'ch08.mistake.ex4.both_sides': {"en": 'your window looks both ways; it is causal: keys j with 0 <= i − j < window.', "zh": '你的窗口看向两边；它应当是因果的：只看 0 <= i − j < window 的键 j。'},
    'ch08.mistake.ex4.off_by_one': {"en": 'your window keeps window + 1 keys: the query itself counts, so i − j < window.', "zh": '你的窗口保留了 window + 1 个键：查询自己也算一个，所以是 i − j < window。'},
})

def _fixed(n, l, c, causal=True, first=False):
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    summary = (j % l < c) if first else (j % l >= l - c)
    mask = (i // l == j // l) | summary
    return mask & (j <= i) if causal else mask


def _window(q, k, v, w, causal=True):
    i, j = torch.arange(q.shape[0])[:, None], torch.arange(k.shape[0])[None, :]
    keep = ((i - j >= 0) & (i - j < w)) if causal else ((i - j).abs() < w)
    scores = (q @ k.T / math.sqrt(q.shape[1])).masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _m(value):
    return value, 0


MISTAKES = {
    "ch08.ex1": (
        (lambda n, l, c: _fixed(n, l, c, causal=False), lambda: t('ch08.mistake.ex1.not_causal')),
        (lambda n, l, c: _fixed(n, l, c, first=True), lambda: t('ch08.mistake.ex1.summary_first')),
    ),
    "ch08.ex2": (
        (lambda mask, layers: solution_reach(mask, 1), lambda: t('ch08.mistake.ex2.one_layer')),
        (lambda mask, layers: solution_reach(mask.T, layers), lambda: t('ch08.mistake.ex2.transposed')),
    ),
    "ch08.ex3": (
        (lambda n, w, h, b: n * w * h * b, lambda: t('ch08.mistake.ex3.no_ramp')),
        (lambda n, w, h, b: ((n - w) * w + w * (w + 1) // 2) * h * b, lambda: t('ch08.mistake.ex3.short_sequence')),
    ),
    "ch08.ex4": (
        (lambda q, k, v, w: _m(_window(q, k, v, w, causal=False)), lambda: t('ch08.mistake.ex4.both_sides')),
        (lambda q, k, v, w: _m(_window(q, k, v, w + 1)), lambda: t('ch08.mistake.ex4.off_by_one')),
    ),
}


# ---- checkers ----

FIXED_CASES = [(8, 4, 1), (10, 4, 2), (12, 3, 3), (7, 5, 1)]
FORBID_MASKS = ("attnkit.sparse.fixed_mask", "attnkit.sparse.pattern_mask", "attnkit.sparse.pattern_predicate",
                "attnkit.sparse.strided_mask", "attnkit.sparse.layout_from_predicate", "attnkit.sparse._fixed_preds")


def _bool_compare(got, expected):
    if not isinstance(got, torch.Tensor):
        return t("ex.why_type", exp="torch.Tensor (bool)", got=type(got).__name__)
    if got.dtype != torch.bool:
        return t("ex.why_dtype", got=got.dtype, exp=torch.bool)
    return compare_tensors(got, expected)


def check_fixed_mask(fn) -> bool:
    cases = [Case(c, label=t("ch08.case.fixed", n=c[0], l=c[1], c=c[2])) for c in FIXED_CASES]
    return run_checks(fn, solution_fixed_mask, cases, t("ch08.ex1.title"), exercise="ch08.ex1",
                      draw=lambda seed: drawn(seed, lambda r: (lambda n, l: (lambda c: Case((n, l, c), label=t(
                          "ch08.case.fixed", n=n, l=l, c=c)))(r.randint(1, l)))(r.randint(5, 16), r.randint(2, 6))), mistakes=MISTAKES["ch08.ex1"],
                      hints=[t("ch08.ex1.hint1"), t("ch08.ex1.hint2"), t("ch08.ex1.hint3")],
                      compare=_bool_compare, forbid=FORBID_MASKS)


def _reach_cases():
    n = 16
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    window = (i - j >= 0) & (i - j < 4)
    strided = ((i - j >= 0) & (i - j <= 4)) | ((j <= i) & ((i - j) % 4 == 0))
    blocks = (i // 4) == (j // 4)
    previous = j == i - 1  # no diagonal: only the residual stream keeps what a token had
    return [Case((window, 2), label=t("ch08.case.reach", what=t("ch08.case.causal_window"), n=n, layers=2)),
            Case((window, 5), label=t("ch08.case.reach", what=t("ch08.case.causal_window"), n=n, layers=5)),
            Case((strided, 2), label=t("ch08.case.reach", what=t("ch08.case.strided"), n=n, layers=2)),
            Case((blocks, 3), label=t("ch08.case.reach", what=t("ch08.case.blocks"), n=n, layers=3)),
            Case((previous, 3), label=t("ch08.case.reach", what=t("ch08.case.previous"), n=n, layers=3))]


def _draw_reach(seed):
    def make(r):
        n = r.randint(8, 14)
        g = torch.Generator().manual_seed(seed)
        mask = (torch.rand(n, n, generator=g) < 0.3).tril() | torch.eye(n, dtype=torch.bool)
        layers = r.randint(1, 4)
        return Case((mask, layers), label=t("ch08.case.reach", what=t("ch08.case.blocks"), n=n, layers=layers))
    return drawn(seed, make)


def check_reach(fn) -> bool:
    return run_checks(fn, solution_reach, _reach_cases(), t("ch08.ex2.title"), exercise="ch08.ex2", draw=_draw_reach, mistakes=MISTAKES["ch08.ex2"],
                      hints=[t("ch08.ex2.hint1"), t("ch08.ex2.hint2"), t("ch08.ex2.hint3")],
                      compare=_bool_compare,
                      forbid=("attnkit.sparse.receptive_field", "attnkit.sparse.layers_to_connect"))


BYTES_CASES = [(1024, 256, 4, 4), (100, 8, 1, 2), (5, 8, 2, 4), (4096, 128, 12, 2)]


def check_window_bytes(fn) -> bool:
    cases = [Case(c, label=t("ch08.case.bytes", n=c[0], w=c[1], h=c[2], b=c[3])) for c in BYTES_CASES]

    def compare(got, expected):
        try:
            ok = float(got) == float(expected)
        except (TypeError, ValueError):
            return t("ex.why_type", exp="int", got=type(got).__name__)
        return None if ok else t("ex.why_value", got=got, exp=expected)

    return run_checks(fn, solution_window_bytes, cases, t("ch08.ex3.title"), exercise="ch08.ex3",
                      draw=lambda seed: drawn(seed, lambda r: (lambda c: Case(c, label=t(
                          "ch08.case.bytes", n=c[0], w=c[1], h=c[2], b=c[3])))(
                          (r.randint(3, 5000), r.randint(2, 300), r.randint(1, 16), r.choice((1, 2, 4))))), mistakes=MISTAKES["ch08.ex3"],
                      hints=[t("ch08.ex3.hint1"), t("ch08.ex3.hint2"), t("ch08.ex3.hint3")],
                      compare=compare, forbid=("attnkit.sparse.pattern_pairs", "attnkit.sparse.attention_cost"))


def check_q1(answer) -> bool:
    return check_answer(answer, 9, exercise="ch08.q1", title=t("ch08.q1.title"),
                        explanation=t("ch08.q1.why"), nudge=t("ch08.q1.nudge"))


def check_q2(answer) -> bool:
    return check_answer(answer, "c", exercise="ch08.q2", title=t("ch08.q2.title"), explanation=t("ch08.q2.why"),
                        nudge=t("ch08.q2.nudge"), choices={c: t(f"ch08.q2.{c}") for c in "abc"})


LONG_N = 2048


class _SeesFlex(TorchFunctionMode):
    """Notes whether ``flex_attention`` ran (its higher-order op passes through torch function modes)."""

    def __init__(self):
        super().__init__()
        self.seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen = self.seen or getattr(func, "__name__", "") == "flex_attention"
        return func(*args, **(kwargs or {}))


class _WindowMeasured(Measured):
    """``Measured``, except around ``flex_attention``: uncompiled (as here, on CPU) it is a reference
    that materialises the N x N scores, while the compiled kernel the chapter describes does not,
    and this check cannot measure the compiled one. So its peak is reported as not measured (the
    values are still checked) instead of failing a correct answer on memory."""

    def __call__(self, *args):
        sees = _SeesFlex()
        with sees:
            value, peak = super().__call__(*args)
        if sees.seen and not isinstance(peak, _Unmeasured):
            peak = _Unmeasured(0)
            peak.what = "flex_attention"
        return Result((value, peak))


def check_window_attention(fn) -> bool:
    g = torch.Generator().manual_seed(8)
    short = tuple(torch.randn(13, 3, generator=g) for _ in range(3)) + (4,)
    one = tuple(torch.randn(6, 2, generator=g) for _ in range(3)) + (1,)
    long = tuple(torch.randn(LONG_N, 8, generator=g) for _ in range(3)) + (32,)
    cases = [Case(short, label=t("ch08.case.win_short")), Case(one, label=t("ch08.case.win_one")),
             Case(long, label=t("ch08.case.win_long"))]
    nn_bytes = LONG_N * LONG_N * 4

    def compare(got, expected):
        why = compare_tensors(got[0], expected[0], atol=1e-5)
        if why:
            return why
        if got[1] > nn_bytes / 8:  # an eighth of the N x N matrix: far above O(N·w)
            return t("ch08.ex4.too_big", got=got[1] / 2**20, nn=nn_bytes / 2**20, limit=nn_bytes / 8 / 2**20)
        return None

    forbid = ("attnkit.sparse.sliding_window_attention", "attnkit.sparse.sparse_attention",
              "attnkit.sparse.longformer_attention", "attnkit.sparse.block_sparse_attention",
              "attnkit.sparse.bigbird_attention", "attnkit.sparse.SparseAttention", "attnkit.sparse._attend",
              "attnkit.flash.flash_attention", "attnkit.lora.local_bucket_attention")
    if not callable(fn):
        return run_checks(fn, solution_window_attention, cases, t("ch08.ex4.title"), exercise="ch08.ex4", mistakes=MISTAKES["ch08.ex4"])
    return run_checks(_WindowMeasured(fn), _WindowMeasured(solution_window_attention), cases, t("ch08.ex4.title"),
                      exercise="ch08.ex4", mistakes=MISTAKES["ch08.ex4"], compare=compare,
                      hints=[t("ch08.ex4.hint1"), t("ch08.ex4.hint2"), t("ch08.ex4.hint3")], forbid=forbid)
