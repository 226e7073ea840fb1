"""Chapter 07's exercises: the checkers, their cases and their reference solutions.

Chapter 07 exercises: merge two partial tile results, the causal tile-skip test, an IO count; a
predict-first question (how many causal tiles are computed), and a stretch exercise (the tiled
backward pass, in O(N) extra memory, measured)."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import (
    Case,
    Measured,
    Result,
    check_answer,
    compare_tensors,
    drawn,
    run_checks,
)
from attnkit.i18n import register, t

register({
    "ch07.ex1.title": {"en": "Exercise 1 · merge two partial tile results",
                       "zh": "练习 1 · 合并两个分块的部分结果"},
    "ch07.ex1.nudge": {"en": "Each partial result was normalised against its own maximum. Before you combine them, put both on the same scale. Does the case with scores near 1000 overflow?",
        "zh": "每个部分结果都是相对自己的最大值归一化的。合并之前，先把两者换算到同一个基准上。分数接近 1000 的用例溢出了吗？"},
    "ch07.ex1.stronger": {"en": "Take the larger maximum m; weight each part by exp(its m − m) times its l; the new l is the sum of the weights and the new o the weighted average of o1 and o2.",
        "zh": "取较大的最大值 m；每部分的权重是 exp(自己的 m − m) 乘以自己的 l；新的 l 是两个权重之和，新的 o 是 o1、o2 的加权平均。"},
    "ch07.ex1.formula": {"en": "`m = max(m1, m2)`; each part's mass on the new scale is `w = exp(m_part - m) * l_part`; then `l = w1 + w2` and `o = (w1 * o1 + w2 * o2) / l` (with `w[:, None]` for o). Never compute `exp(m)` itself.",
        "zh": "`m = max(m1, m2)`；每部分换算到新最大值下的权重为 `w = exp(m_part - m) * l_part`；然后 `l = w1 + w2`，`o = (w1 * o1 + w2 * o2) / l`（与 o 相乘时用 `w[:, None]`）。不要直接计算 `exp(m)`。"},
    "ch07.ex2.title": {"en": "Exercise 2 · which tiles can a causal mask skip?",
                       "zh": "练习 2 · 因果掩码可以跳过哪些分块？"},
    "ch07.ex2.nudge": {"en": "A query sees a key only when the key is not after it. Which corner of the tile is the most likely to be visible? Mind that the ends are excluded.",
        "zh": "查询只能看到不在它之后的键。分块的哪个角最有可能被看到？注意 q_end 和 k_end 本身不在分块内。"},
    "ch07.ex2.stronger": {"en": "Compare the tile's smallest key with its largest query (q_end - 1): the whole tile is skipped when even that key is after that query.",
        "zh": "比较分块中最小的键和最大的查询（q_end - 1）：如果连这个键都在这个查询之后，整块就可以跳过。"},
    "ch07.ex2.formula": {"en": "Rows are q_start .. q_end - 1 and columns k_start .. k_end - 1 (end excluded). The tile is skipped "
                            "when even its smallest key is after its largest query: k_start > q_end - 1.",
                      "zh": "行是 q_start .. q_end - 1，列是 k_start .. k_end - 1（不含 end）。当分块中最小的键"
                            "也在最大的查询之后时整块跳过：k_start > q_end - 1。"},
    "ch07.ex3.title": {"en": "Exercise 3 · slow-memory traffic of the tiled forward",
                       "zh": "练习 3 · 分块前向计算的慢速内存访存量"},
    "ch07.ex3.nudge": {"en": "Find the block sizes first: how many keys (rows of K and V) fit in the on-chip memory M? Then count how often each of Q, K, V, O is read or written.",
        "zh": "先求分块大小：片上内存 M 里能放下多少个键（K、V 的多少行）？再数一数 Q、K、V、O 各被读写了多少次。"},
    "ch07.ex3.stronger": {"en": "B_c comes from M and d (four blocks of d numbers share M), T_c is the number of key/value blocks; K and V are read once, while Q, O and the row statistics are read and written once per key/value block. Use integer ceilings.",
        "zh": "B_c 由 M 和 d 决定（四个 d 维的块共享 M），T_c 是键/值块的个数；K、V 只读一次，而 Q、O 和每行的统计量每个键/值块都要读写一次。用整数向上取整。"},
    "ch07.ex3.formula": {"en": "B_c = ceil(M / (4 d)) and T_c = ceil(N / B_c) (use integer ceilings: -(-a // b)); "
                            "then 2 N d + T_c (3 N d + 4 N). Not the Theta formula: the exact count.",
                      "zh": "B_c = ceil(M / (4 d))，T_c = ceil(N / B_c)（用整数向上取整：-(-a // b)）；"
                            "结果是 2 N d + T_c (3 N d + 4 N)。要的是精确计数，不是 Theta 量级公式。"},
    # question 1 (predict first)
    "ch07.q1.title": {"en": "Question 1 · how many tiles does a causal loop compute?",
                      "zh": "问题 1 · 因果掩码下，分块循环要计算多少个分块？"},
    "ch07.q1.nudge": {"en": "Number the query blocks and the key blocks 0 .. 7. Which key blocks does query block i "
                            "need at all?",
                      "zh": "把查询块和键块都编号为 0 .. 7。第 i 个查询块到底需要哪些键块？"},
    "ch07.q1.why": {"en": "Query block i needs key blocks 0 .. i: i + 1 tiles. Over i = 0 .. 7 that is "
                          "1 + 2 + ... + 8 = 36 of the 64 tiles (T(T + 1)/2 with T = 8). The 28 above the "
                          "diagonal are skipped; of the 36 computed, the 8 on the diagonal need the mask. "
                          "As T grows the computed share tends to one half: the causal FLOPs halve.",
                    "zh": "第 i 个查询块需要第 0 .. i 个键块，共 i + 1 个分块。对 i = 0 .. 7 求和："
                          "1 + 2 + ... + 8 = 36，即 64 个分块中要算 36 个（T = 8 时的 T(T + 1)/2）。"
                          "对角线以上的 28 个分块被跳过；算出的 36 个里，对角线上的 8 个要带掩码。"
                          "T 越大，要算的比例越接近一半：因果注意力的浮点运算次数减半。"},
    # stretch: the tiled backward pass
    "ch07.ex4.title": {"en": "Stretch · the tiled backward pass, never an N × N matrix",
                       "zh": "挑战题 · 分块的反向传播，绝不构造 N × N 矩阵"},
    "ch07.ex4.nudge": {"en": "Which tensors does a tile's gradient need? P of the tile can be recomputed from q, k and "
                             "lse alone; the one row statistic you still need comes from dO and O. Check the "
                             "small case first.",
                       "zh": "一个分块的梯度需要哪些张量？这个分块的 P 只用 q、k 和 lse 就能重新算出来；"
                             "还需要的那个逐行统计量可以由 dO 和 O 得到。先让小用例通过。"},
    "ch07.ex4.stronger": {"en": "Compute D = rowsum(dO ∘ O) once. Then for every tile (block i of queries, block j "
                                "of keys): P = exp(q_i k_jᵀ/√d − lse_i), dV_j += Pᵀ dO_i, dS = P ∘ (dO_i V_jᵀ − D_i), "
                                "and dQ_i, dK_j from dS with the 1/√d of the scores. Appendix B derives it.",
                          "zh": "先算一次 D = rowsum(dO ∘ O)。然后对每个分块（第 i 个查询块、第 j 个键块）："
                                "P = exp(q_i k_jᵀ/√d − lse_i)，dV_j += Pᵀ dO_i，dS = P ∘ (dO_i V_jᵀ − D_i)，"
                                "再由 dS 得到 dQ_i、dK_j，别忘了分数里的 1/√d。附录 B 给出了推导。"},
    "ch07.ex4.formula": {"en": "`D = (do * o).sum(-1)`. For each key block j and query block i: `p = exp(q[i] @ k[j].T * c - lse[i, None])` with `c = 1/sqrt(d)`; `dv[j] += p.T @ do[i]; ds = p * (do[i] @ v[j].T - D[i, None]); dq[i] += c * ds @ k[j]; dk[j] += c * ds.T @ q[i]`",
        "zh": "`D = (do * o).sum(-1)`。对每个键块 j 和查询块 i：`p = exp(q[i] @ k[j].T * c - lse[i, None])`，其中 `c = 1/sqrt(d)`；`dv[j] += p.T @ do[i]; ds = p * (do[i] @ v[j].T - D[i, None]); dq[i] += c * ds @ k[j]; dk[j] += c * ds.T @ q[i]`"},
    "ch07.ex4.too_big": {"en": "your function held {got:.2f} MiB at once; the N × N matrix alone is {nn:.1f} MiB: "
                               "expected below {limit:.2f} MiB",
                         "zh": "你的函数同时占用了 {got:.2f} MiB；单是 N × N 矩阵就有 {nn:.1f} MiB：应低于 {limit:.2f} MiB"},
    "ch07.ex4.not_three": {"en": "expected a tuple (dq, dk, dv), got {what}", "zh": "应当返回元组 (dq, dk, dv)，实际得到 {what}"},
    "ch07.case.bwd_small": {"en": "N = 8, d = 4, blocks of 4", "zh": "N = 8，d = 4，分块大小 4"},
    "ch07.case.bwd_ragged": {"en": "N = 13, d = 8, blocks of 5 (ragged)", "zh": "N = 13，d = 8，分块大小 5（最后一块不满）"},
    "ch07.case.bwd_long": {"en": "N = {n}, d = 8, blocks of 128: memory is measured",
                           "zh": "N = {n}，d = 8，分块大小 128：测量内存"},
    "ch07.case.halves": {"en": "8 keys split 4 + 4", "zh": "8 个键分成 4 + 4"},
    "ch07.case.uneven": {"en": "9 keys split 2 + 7, 3 queries", "zh": "9 个键分成 2 + 7，3 个查询"},
    "ch07.case.large": {"en": "scores around 1000 (exp overflows)", "zh": "分数在 1000 左右（exp 会溢出）"},
    "ch07.case.tile": {"en": "rows {qs}..{qe_1}, columns {ks}..{ke_1}",
                       "zh": "行 {qs}..{qe_1}，列 {ks}..{ke_1}"},
    "ch07.case.io": {"en": "N = {N}, d = {d}, M = {M}", "zh": "N = {N}，d = {d}，M = {M}"},
})


# ---- reference solutions (kept out of the notebooks) ----

def solution_merge(m1, l1, o1, m2, l2, o2):
    """(m, l, o) over the union of two disjoint key sets; m, l (L,), o (L, Dv) normalised."""
    m = torch.maximum(m1, m2)
    w1 = torch.exp(m1 - m) * l1  # (L,) each part's mass, rebased to the common max
    w2 = torch.exp(m2 - m) * l2
    l = w1 + w2
    o = (w1[:, None] * o1 + w2[:, None] * o2) / l[:, None]  # (L, Dv)
    return m, l, o


def solution_tile_skipped(q_start, q_end, k_start, k_end):
    """True when every key of the tile lies after every query: j > i for all pairs."""
    return k_start > q_end - 1  # even the smallest key comes after the largest query


def solution_io_flash(N, d, M):
    """Element reads + writes of slow memory by FlashAttention's Algorithm 1 (outer loop over K/V)."""
    b_c = -(-M // (4 * d))  # keys (rows of K and V) per block: four d-wide blocks share M
    t_c = -(-N // b_c)  # key/value blocks (passes)
    return 2 * N * d + t_c * (3 * N * d + 4 * N)  # K, V once; Q, O, l, m per key/value block


def solution_flash_backward(q, k, v, o, lse, do, block):
    """dq, dk, dv of softmax(q kᵀ/√d) v for one head, tile by tile (FlashAttention-2, Algorithm 2).

    q, k, v, o, do (N, d); lse (N,) the log-sum-exp of each row of the scaled scores.
    """
    c = 1.0 / math.sqrt(q.shape[-1])
    D = (do * o).sum(dim=-1)  # (N,) rowsum(dO ∘ O) = rowsum(P ∘ dP)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j in range(0, k.shape[0], block):  # a block of keys and values stays on chip
        kj, vj = k[j:j + block], v[j:j + block]  # (Bk, d)
        for i in range(0, q.shape[0], block):  # every block of queries streams past it
            qi, doi = q[i:i + block], do[i:i + block]  # (Bq, d)
            p = torch.exp(qi @ kj.T * c - lse[i:i + block, None])  # (Bq, Bk) recomputed, never stored
            dv[j:j + block] += p.T @ doi
            ds = p * (doi @ vj.T - D[i:i + block, None])  # the softmax backward, tile-sized
            dq[i:i + block] += c * ds @ kj
            dk[j:j + block] += c * ds.T @ qi
    return dq, dk, dv


def _partial(s, v):
    """The normalised partial result (m, l, o) of score columns s (L, n) over values v (n, Dv)."""
    m = s.amax(dim=-1)
    p = torch.exp(s - m[:, None])
    l = p.sum(dim=-1)
    return m, l, (p @ v) / l[:, None]


def _merge_case(seed, L, n, split, scale):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(L, n, generator=g, dtype=torch.float64) * scale
    if scale > 100:
        s = s + 1000.0
    v = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return (*_partial(s[:, :split], v[:split]), *_partial(s[:, split:], v[split:]))



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch07.mistake.ex1.unnormalised': {"en": 'your o is not renormalised: divide the weighted sum of o1 and o2 by the merged l.', "zh": '你的 o 没有重新归一化：要把 o1、o2 的加权和除以合并后的 l。'},
    'ch07.mistake.ex1.plain_average': {"en": 'you averaged o1 and o2 equally; each part weighs by its mass exp(m_part − m) · l_part.', "zh": '你把 o1 和 o2 等权平均了；每部分的权重应是它的质量 exp(m_part − m) · l_part。'},
    'ch07.mistake.ex3.no_stats': {"en": 'you counted Q and O per key/value block but not the row statistics: each pass also reads and writes l and m, 4 N numbers.', "zh": '你按每个键/值块计入了 Q 和 O，却漏了每行的统计量：每一趟还要读写 l 和 m，共 4 N 个数。'},
    'ch07.mistake.ex3.theta': {"en": 'that is the Theta(N² d² / M) order of growth, not the count: find B_c and T_c and count each read and write.', "zh": '这是 Theta(N² d² / M) 的增长量级，不是精确计数：先求出 B_c 和 T_c，再逐项数读写次数。'},
    'ch07.mistake.ex3.kv_every_pass': {"en": 'K and V are read once in all (each key/value block once, in the outer loop), not once per pass.', "zh": 'K 和 V 总共只读一次（外层循环里每个键/值块读一次），不是每一趟都读。'},
    'ch07.mistake.ex4.no_D': {"en": 'your dq and dk miss the row term D = rowsum(dO ∘ O): the softmax backward is dS = P ∘ (dP − D), not P ∘ dP.', "zh": '你的 dq、dk 少了逐行项 D = rowsum(dO ∘ O)：softmax 的反向是 dS = P ∘ (dP − D)，而不是 P ∘ dP。'},
    'ch07.mistake.ex4.no_scale': {"en": 'your dq and dk miss the 1/sqrt(d) of the scores: S = q kᵀ / sqrt(d), so dq = dS k / sqrt(d) and dk = dSᵀ q / sqrt(d).', "zh": '你的 dq、dk 少了分数里的 1/sqrt(d)：S = q kᵀ / sqrt(d)，所以 dq = dS k / sqrt(d)，dk = dSᵀ q / sqrt(d)。'},
    'ch07.mistake.ex2.partly_masked': {"en": "you skip a tile as soon as some of its pairs are masked; a tile that the diagonal cuts through still has visible pairs and must be computed (with the mask). Skip only a tile with no visible pair.",
                                       "zh": "只要分块里有一部分配对被屏蔽，你就跳过了它；被对角线穿过的分块里仍有能看到的配对，必须计算（带上掩码）。只有一个可见配对都没有的分块才能跳过。"},
    'ch07.mistake.ex2.off_by_one': {"en": 'off by one: the tile is skipped when its first key k_start is after the last query q_end − 1, that is k_start >= q_end.', "zh": '差了一：当 tile 的第一个键 k_start 在最后一个查询 q_end − 1 之后，也就是 k_start >= q_end 时，才跳过。'},
})

def _merge_unnormalised(m1, l1, o1, m2, l2, o2):
    m = torch.maximum(m1, m2)
    w1, w2 = torch.exp(m1 - m) * l1, torch.exp(m2 - m) * l2
    return m, w1 + w2, w1[:, None] * o1 + w2[:, None] * o2


def _io(N, d, M, stats=True, kv_per_pass=False):
    b_c = -(-M // (4 * d))
    t_c = -(-N // b_c)
    return (t_c if kv_per_pass else 1) * 2 * N * d + t_c * (3 * N * d + (4 * N if stats else 0))


def _backward(q, k, v, o, lse, do, block, with_D=True, scaled=True):
    """The tiled backward with one of two mistakes (still tile-sized): no D term, or no 1/sqrt(d) on dS."""
    c = 1.0 / math.sqrt(q.shape[-1])
    D = (do * o).sum(dim=-1) if with_D else torch.zeros(q.shape[0], dtype=q.dtype)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j in range(0, k.shape[0], block):
        kj, vj = k[j:j + block], v[j:j + block]
        for i in range(0, q.shape[0], block):
            qi, doi = q[i:i + block], do[i:i + block]
            p = torch.exp(qi @ kj.T * c - lse[i:i + block, None])
            dv[j:j + block] += p.T @ doi
            ds = p * (doi @ vj.T - D[i:i + block, None]) * (c if scaled else 1.0)
            dq[i:i + block] += ds @ kj
            dk[j:j + block] += ds.T @ qi
    return Result(((dq, dk, dv), 0))


MISTAKES = {
    "ch07.ex3": (
        (lambda N, d, M: _io(N, d, M, stats=False), lambda: t('ch07.mistake.ex3.no_stats')),
        (lambda N, d, M: N * N * d * d / M, lambda: t('ch07.mistake.ex3.theta')),
        (lambda N, d, M: _io(N, d, M, kv_per_pass=True), lambda: t('ch07.mistake.ex3.kv_every_pass')),
    ),
    "ch07.ex4": (
        (lambda *a: _backward(*a, with_D=False), lambda: t('ch07.mistake.ex4.no_D')),
        (lambda *a: _backward(*a, scaled=False), lambda: t('ch07.mistake.ex4.no_scale')),
    ),
    "ch07.ex1": (
        (lambda m1, l1, o1, m2, l2, o2: _merge_unnormalised(m1, l1, o1, m2, l2, o2), lambda: t('ch07.mistake.ex1.unnormalised')),
        (lambda m1, l1, o1, m2, l2, o2: (torch.maximum(m1, m2), solution_merge(m1, l1, o1, m2, l2, o2)[1], (o1 + o2) / 2), lambda: t('ch07.mistake.ex1.plain_average')),
    ),
    "ch07.ex2": (
        (lambda qs, qe, ks, ke: ks > qe, lambda: t('ch07.mistake.ex2.off_by_one')),
        (lambda qs, qe, ks, ke: ke - 1 > qs, lambda: t('ch07.mistake.ex2.partly_masked')),
    ),
}


# ---- checkers ----

def check_merge(fn) -> bool:
    cases = [Case(_merge_case(1, 4, 8, 4, 1.0), label=t("ch07.case.halves")),
             Case(_merge_case(2, 3, 9, 2, 3.0), label=t("ch07.case.uneven")),
             Case(_merge_case(3, 2, 6, 3, 200.0), label=t("ch07.case.large"))]
    return run_checks(fn, solution_merge, cases, t("ch07.ex1.title"),
                      hints=[t("ch07.ex1.nudge"), t("ch07.ex1.stronger"), t("ch07.ex1.formula")],
                      exercise="ch07.ex1", mistakes=MISTAKES["ch07.ex1"],
                      forbid=("attnkit.softmax.merge", "attnkit.softmax.merge_partials", "attnkit.flash.online_update",
                              "attnkit.flash._online_update", "attnkit.softmax.update"))


TILE_CASES = [(0, 4, 0, 4), (0, 4, 4, 8), (4, 8, 0, 4), (0, 4, 3, 7), (8, 12, 4, 8),
              (0, 3, 3, 6), (5, 7, 6, 9), (5, 7, 7, 9), (10, 13, 12, 16)]


def check_tile_skipped(fn) -> bool:
    cases = [Case(c, label=t("ch07.case.tile", qs=c[0], qe_1=c[1] - 1, ks=c[2], ke_1=c[3] - 1))
             for c in TILE_CASES]

    def compare(got, expected):
        if not isinstance(got, (bool, torch.Tensor)) and type(got).__name__ != "bool_":
            return t("ex.why_type", exp="bool", got=type(got).__name__)
        return None if bool(got) == expected else t("ex.why_value", got=bool(got), exp=expected)

    return run_checks(fn, solution_tile_skipped, cases, t("ch07.ex2.title"),
                      hints=[t("ch07.ex2.nudge"), t("ch07.ex2.stronger"), t("ch07.ex2.formula")],
                      exercise="ch07.ex2",
                      draw=lambda seed: drawn(seed, lambda r: (lambda qs, ks: Case(
                          (qs, qs + 4, ks, ks + 4), label=t("ch07.case.tile", qs=qs, qe_1=qs + 3, ks=ks, ke_1=ks + 3)))(
                          r.randint(0, 12), r.randint(0, 16))), mistakes=MISTAKES["ch07.ex2"],
                      forbid=("attnkit.flash.causal_tile_kind", "attnkit.flash._tile_kind",
                              "attnkit.flash.tile_schedule"),
                      compare=compare)


IO_CASES = [(1024, 64, 65536), (4096, 64, 100_000), (1000, 32, 20_000), (16384, 128, 131_072)]


def check_io_flash(fn) -> bool:
    cases = [Case(c, label=t("ch07.case.io", N=c[0], d=c[1], M=c[2])) for c in IO_CASES]

    def compare(got, expected):
        try:
            ok = float(got) == float(expected)
        except (TypeError, ValueError):
            return t("ex.why_type", exp="int", got=type(got).__name__)
        return None if ok else t("ex.why_value", got=got, exp=expected)

    return run_checks(fn, solution_io_flash, cases, t("ch07.ex3.title"),
                      hints=[t("ch07.ex3.nudge"), t("ch07.ex3.stronger"), t("ch07.ex3.formula")],
                      exercise="ch07.ex3",
                      draw=lambda seed: drawn(seed, lambda r: (lambda N, d, M: Case((N, d, M), label=t(
                          "ch07.case.io", N=N, d=d, M=M)))(r.choice((512, 2000, 8192)), r.choice((32, 64, 128)),
                                                           r.choice((50_000, 100_000, 200_000)))),
                      forbid=("attnkit.flash.io_flash", "attnkit.flash.io_standard"),
                      compare=compare, mistakes=MISTAKES["ch07.ex3"])


def check_q1(answer) -> bool:
    """Predict first: N = 1024, tiles of 128 x 128, causal: how many of the 64 tiles are computed?"""
    return check_answer(answer, 36, exercise="ch07.q1", title=t("ch07.q1.title"),
                        explanation=t("ch07.q1.why"), nudge=t("ch07.q1.nudge"))


BWD_LONG = 1024


def _backward_case(seed, n, d, block, dtype):
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(n, d, generator=g, dtype=dtype) for _ in range(4))
    s = q @ k.T / math.sqrt(d)  # (n, n), built here by the checker only, outside the measured call
    lse = torch.logsumexp(s, dim=-1)  # (n,)
    o = torch.softmax(s, dim=-1) @ v
    return (q, k, v, o, lse, do, block)


def check_flash_backward(fn) -> bool:
    cases = [Case(_backward_case(1, 8, 4, 4, torch.float64), label=t("ch07.case.bwd_small")),
             Case(_backward_case(2, 13, 8, 5, torch.float64), label=t("ch07.case.bwd_ragged")),
             Case(_backward_case(3, BWD_LONG, 8, 128, torch.float32), label=t("ch07.case.bwd_long", n=BWD_LONG))]
    nn_bytes = BWD_LONG * BWD_LONG * 4

    def compare(got, expected):
        result, peak = got
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            return t("ch07.ex4.not_three", what=type(result).__name__)
        why = compare_tensors(tuple(result), expected[0], atol=1e-4, rtol=1e-4)
        if why:
            return why
        if result[0].shape[0] == BWD_LONG and peak > nn_bytes / 4:  # a quarter of one N x N matrix
            return t("ch07.ex4.too_big", got=peak / 2**20, nn=nn_bytes / 2**20, limit=nn_bytes / 4 / 2**20)
        return None

    forbid = ("torch.autograd.grad", "torch.autograd.backward", "attnkit.flash.flash_attention",  # every path: FAMILIES
              "attnkit.flash._backward", "torch.nn.functional.scaled_dot_product_attention")
    title, hints = t("ch07.ex4.title"), [t("ch07.ex4.nudge"), t("ch07.ex4.stronger"), t("ch07.ex4.formula")]
    if not callable(fn):
        return run_checks(fn, solution_flash_backward, cases, title, exercise="ch07.ex4", hints=hints)
    return run_checks(Measured(fn), Measured(solution_flash_backward), cases, title, exercise="ch07.ex4",
                      compare=compare, hints=hints, forbid=forbid, mistakes=MISTAKES["ch07.ex4"])
