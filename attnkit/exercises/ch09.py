"""Chapter 09's exercises: the checkers, their cases and their reference solutions.

Chapter 09 exercises: the RNN step, positive random features derived for the Gaussian kernel
(Lemma 1 in a changed setting), landmarks, two questions,
and a stretch exercise (causal linear attention in linear memory, checked by measuring it)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnkit.exercises import Case, Measured, check_answer, compare_tensors, run_checks
from attnkit.i18n import register, t

register({
    # exercise 1: the RNN step
    "ch09.ex1.title": {"en": "Exercise 1 · one step of causal linear attention as an RNN",
                       "zh": "练习 1 · 把因果线性注意力写成 RNN：走一步"},
    "ch09.ex1.hint1": {"en": "The state must already contain the current token when the output is read: "
                             "update first, then read.",
                       "zh": "读出输出时，状态里必须已经包含当前这个词元：先更新状态，再读出。"},
    "ch09.ex1.hint2": {"en": "phi(x) = elu(x) + 1 for both q_t and k_t. s gains the outer product phi(k_t) v_t^T "
                             "(shape (M, Dv)), z gains phi(k_t); the output divides phi(q_t) s by phi(q_t) . z.",
                       "zh": "q_t 和 k_t 都用 phi(x) = elu(x) + 1。s 加上外积 phi(k_t) v_t^T（形状 (M, Dv)），"
                             "z 加上 phi(k_t)；输出是 phi(q_t) s 除以 phi(q_t) · z。"},
    "ch09.ex1.hint3": {"en": "`s = s + torch.outer(phi(k_t), v_t); z = z + phi(k_t); out = (phi(q_t) @ s) / max(phi(q_t) @ z, 1e-6); return out, s, z`.",
        "zh": "`s = s + torch.outer(phi(k_t), v_t); z = z + phi(k_t); out = (phi(q_t) @ s) / max(phi(q_t) @ z, 1e-6); return out, s, z`。"},
    "ch09.case.first": {"en": "the first token (empty state)", "zh": "第一个词元（状态为空）"},
    "ch09.case.later": {"en": "the token at index {i} (from 0): the state holds the {i} tokens before it",
                        "zh": "下标为 {i} 的词元（从 0 数起）：状态里是它之前的 {i} 个词元"},
    "ch09.case.wide": {"en": "d = 3, dv = 5 (not square)", "zh": "d = 3，dv = 5（不是方阵）"},
    # exercise 2: positive random features for another kernel (derived, not retyped)
    "ch09.ex2.title": {"en": "Exercise 2 · positive random features for the Gaussian kernel",
                       "zh": "练习 2 · 高斯核的正随机特征"},
    "ch09.ex2.hint1": {"en": "Write |x - y|^2 out: exp(-|x - y|^2 / 2) is exp(x . y) times one factor that depends "
                             "on x only and one that depends on y only.",
                       "zh": "把 |x - y|^2 展开：exp(-|x - y|^2 / 2) 等于 exp(x · y) 乘以一个只依赖 x 的因子和一个只依赖 y 的因子。"},
    "ch09.ex2.hint2": {"en": "Lemma 1 already gives exp(x . y) as an average of phi(x) . phi(y). Multiply each "
                             "feature of x by the factor that belongs to x (and likewise for y): what is c(x) then?",
                       "zh": "引理 1 已经把 exp(x · y) 写成了 phi(x) · phi(y) 的平均。把 x 的每个特征乘以属于 x 的那个因子"
                             "（y 同理）：这时 c(x) 是多少？"},
    "ch09.ex2.hint3": {"en": "c(x) = |x|^2 / 2 + |x|^2 / 2 = |x|^2: torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True)) "
                             "/ math.sqrt(w.shape[0])",
                       "zh": "c(x) = |x|^2 / 2 + |x|^2 / 2 = |x|^2: torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True)) "
                             "/ math.sqrt(w.shape[0])"},
    "ch09.case.small": {"en": "N = 3, d = 2, m = 4", "zh": "N = 3，d = 2，m = 4"},
    "ch09.case.more": {"en": "N = 5, d = 4, m = 7 (m not a multiple of d)", "zh": "N = 5，d = 4，m = 7（m 不是 d 的倍数）"},
    "ch09.case.long": {"en": "inputs of norm 2 (|x|^2 matters)", "zh": "范数为 2 的输入（|x|^2 的作用变大）"},
    # exercise 3: landmarks
    "ch09.ex3.title": {"en": "Exercise 3 · Nyström landmarks: segment means", "zh": "练习 3 · Nyström 地标点：分段均值"},
    "ch09.ex3.hint1": {"en": "Landmark i averages a *contiguous* segment of rows; when m does not divide N, the last "
                             "segment is shorter, and only its real rows count.",
                       "zh": "第 i 个地标点是一段*连续*行的平均；m 不能整除 N 时，最后一段较短，只对其中真实存在的行求平均。"},
    "ch09.ex3.hint2": {"en": "Segments have l = ceil(N / m) rows: rows i*l .. min((i+1)*l, N) - 1. Averaging zero "
                             "padding would pull the last landmark towards 0.",
                       "zh": "每段 l = ceil(N / m) 行：第 i 段是第 i*l 行到第 min((i+1)*l, N) - 1 行。"
                             "如果把补上的零也平均进去，最后一个地标点会被拉向 0。"},
    "ch09.ex3.hint3": {"en": "l = -(-N // m); torch.stack([x[i * l:(i + 1) * l].mean(0) for i in range(m)])",
                       "zh": "l = -(-N // m); torch.stack([x[i * l:(i + 1) * l].mean(0) for i in range(m)])"},
    "ch09.case.divides": {"en": "N = 12, m = 4 (m divides N)", "zh": "N = 12，m = 4（m 整除 N）"},
    "ch09.case.pad": {"en": "N = 10, m = 4 (segments of 3, the last has 1 row)",
                      "zh": "N = 10，m = 4（每段 3 行，最后一段只有 1 行）"},
    "ch09.case.m_eq_n": {"en": "m = N: every token is a landmark", "zh": "m = N：每个词元都是地标点"},
    # questions
    "ch09.q1.title": {"en": "Question 1 · the state of a causal Performer", "zh": "问题 1 · 因果 Performer 的状态"},
    "ch09.q1.why": {"en": "The state is built from phi(k), and phi(k) has M = m = 256 entries here, not d: s is "
                          "M x Dv = 256 x 64 = 16384 numbers and z is M = 256, so 16640 per head, whether the "
                          "sequence has 10 tokens or a million (with elu + 1, M = d = 64 gives 4160). A KV cache "
                          "holds 2 x 64 numbers per token and passes 16640 at token 131.",
                    "zh": "状态由 phi(k) 累加而成，而这里 phi(k) 有 M = m = 256 个分量，不是 d 个："
                          "s 是 M × Dv = 256 × 64 = 16384 个数，z 是 M = 256 个数，每个头共 16640 个数，"
                          "无论序列有 10 个词元还是一百万个（用 elu + 1 时 M = d = 64，是 4160 个）。"
                          "KV 缓存每个词元存 2 × 64 个数，到第 131 个词元就超过了 16640。"},
    "ch09.q1.nudge": {"en": "The state sums phi(k_j) v_j^T and phi(k_j): how many entries does phi(k) have with "
                            "m = 256 positive random features? Does the length of the sequence appear?",
                      "zh": "状态累加的是 phi(k_j) v_j^T 和 phi(k_j)：有 m = 256 个正随机特征时，phi(k) 有多少个分量？"
                            "序列长度出现在里面吗？"},
    "ch09.q2.title": {"en": "Question 2 · which random features for small kernel values?",
                      "zh": "问题 2 · 核函数值很小时，用哪种随机特征？"},
    "ch09.q2.a": {"en": "trigonometric features (cos, sin)", "zh": "三角函数特征（cos、sin）"},
    "ch09.q2.b": {"en": "positive features (exp)", "zh": "正随机特征（exp）"},
    "ch09.q2.c": {"en": "they are equally good", "zh": "两者一样好"},
    "ch09.q2.why": {"en": "Lemma 2: the positive estimator's MSE carries a factor SM(x, y)^2, so it vanishes as the "
                          "kernel value goes to 0; the trig estimator's carries SM(x, y)^-2 and explodes. Small "
                          "attention weights are most of an attention matrix, so FAVOR+ uses positive features.",
                    "zh": "引理 2：正随机特征估计量的均方误差带有因子 SM(x, y)^2，核函数值趋于 0 时它也趋于 0；"
                          "三角函数特征估计量的均方误差带有 SM(x, y)^-2，会爆炸。注意力矩阵里大部分是很小的权重，"
                          "所以 FAVOR+ 用正随机特征。"},
    "ch09.q2.nudge": {"en": "Look at the MSE formulas of Lemma 2 (section 3): which one has SM(x, y) in the "
                            "numerator, which in the denominator?",
                      "zh": "看第 3 节引理 2 的均方误差公式：哪一个的 SM(x, y) 在分子上，哪一个在分母上？"},
    # stretch
    "ch09.ex4.title": {"en": "Stretch · causal linear attention in linear memory",
                       "zh": "挑战题 · 只用线性内存的因果线性注意力"},
    "ch09.ex4.hint1": {"en": "An N x N mask is exactly what you cannot afford. Walk the sequence in chunks and carry "
                             "the state (s, z) of everything before the chunk.",
                       "zh": "N × N 的掩码正是你负担不起的。把序列分段处理，并带着此前所有词元的状态 (s, z) 往下走。"},
    "ch09.ex4.hint2": {"en": "Inside a chunk of C tokens, a C x C lower-triangular block of phi(q) phi(k)^T is "
                             "cheap; across chunks, add phi(q) s and phi(q) . z, then update s, z with the chunk.",
                       "zh": "在一段 C 个词元内部，phi(q) phi(k)^T 的 C × C 下三角块很便宜；"
                             "跨段的部分加上 phi(q) s 和 phi(q) · z，然后用这一段更新 s、z。"},
    "ch09.ex4.hint3": {"en": "For each chunk: `a = (pq @ pk.T).tril(); num = a @ vc + pq @ s; den = a.sum(-1) + pq @ z; out = num / den.clamp_min(1e-6)[:, None]; s += pk.T @ vc; z += pk.sum(0)`",
        "zh": "对每一段：`a = (pq @ pk.T).tril(); num = a @ vc + pq @ s; den = a.sum(-1) + pq @ z; out = num / den.clamp_min(1e-6)[:, None]; s += pk.T @ vc; z += pk.sum(0)`"},
    "ch09.case.short": {"en": "N = 9, chunk 4 (ragged end)", "zh": "N = 9，段长 4（最后一段不满）"},
    "ch09.case.one": {"en": "chunk 1 (a plain RNN)", "zh": "段长 1（就是普通的 RNN）"},
    "ch09.case.long_mem": {"en": "N = 2048, d = dv = 32, chunk 64: memory is measured",
                           "zh": "N = 2048，d = dv = 32，段长 64：测量内存"},
    "ch09.ex4.over_bound": {"en": "your function held {got:.2f} MiB at once; the bound is 2 × 4 bytes × (N(d + dv) + C(C + d·dv)) "
                                  "= {limit:.2f} MiB here (a running state per token, N × d × dv, alone is {per_token:.2f} MiB)",
                            "zh": "你的函数同时占用了 {got:.2f} MiB；这里的上限是 2 × 4 字节 × (N(d + dv) + C(C + d·dv)) "
                                  "= {limit:.2f} MiB（每个词元保存一份状态，即 N × d × dv，单这一项就有 {per_token:.2f} MiB）"},
})


def _phi(x):
    return F.elu(x) + 1.0


# ---- reference solutions (kept out of the notebooks) ----

def solution_step(s, z, q_t, k_t, v_t):
    """s (M, Dv), z (M,), q_t, k_t (D,), v_t (Dv,) -> (out_t (Dv,), s', z') (eqs. 18-20)."""
    pk = _phi(k_t)
    s = s + pk[:, None] * v_t[None, :]  # (M, Dv): the state now includes token t
    z = z + pk  # (M,)
    pq = _phi(q_t)
    return (pq @ s) / torch.clamp(pq @ z, min=1e-6), s, z


def solution_positive_features(x, w):
    """x (N, d), w (m, d) -> (N, m): m^-1/2 exp(w_i . x - |x|^2), whose products average to the
    Gaussian kernel exp(-|x - y|^2 / 2) = exp(-|x|^2 / 2) exp(x . y) exp(-|y|^2 / 2) (Lemma 1's
    features times each token's own factor exp(-|x|^2 / 2))."""
    sq = (x ** 2).sum(dim=1, keepdim=True)  # (N, 1): |x|^2 / 2 from Lemma 1, |x|^2 / 2 from the kernel
    return torch.exp(torch.einsum("nd,md->nm", x, w) - sq) * w.shape[0] ** -0.5


def solution_landmarks(x, m):
    """x (N, d) -> (m, d): means of m contiguous segments of ceil(N/m) rows (the last may be shorter)."""
    n = x.shape[0]
    seg = math.ceil(n / m)
    starts = range(0, n, seg)
    return torch.stack([x[a:min(a + seg, n)].sum(0) / (min(a + seg, n) - a) for a in starts])


def solution_causal_linear(q, k, v, chunk):
    """Causal elu+1 linear attention of q, k (N, d), v (N, dv), ``chunk`` tokens at a time."""
    s = q.new_zeros(q.shape[1], v.shape[1])
    z = q.new_zeros(q.shape[1])
    outs = []
    for a in range(0, q.shape[0], chunk):
        pq, pk, vc = _phi(q[a:a + chunk]), _phi(k[a:a + chunk]), v[a:a + chunk]
        w = torch.tril(pq @ pk.T)  # (C, C) inside the chunk
        den = w.sum(1) + pq @ z
        outs.append((w @ vc + pq @ s) / den.clamp_min(1e-6)[:, None])
        s, z = s + pk.T @ vc, z + pk.sum(0)
    return torch.cat(outs)


# ---- cases ----

def _g(seed):
    return torch.Generator().manual_seed(seed)


def _step_case(seed, before, d=4, dv=4):
    g = _g(seed)
    q, k, v = (torch.randn(before + 1, n, generator=g, dtype=torch.float64) for n in (d, d, dv))
    pk = _phi(k[:before])
    s, z = pk.T @ v[:before], pk.sum(0)  # the state of the tokens before, from its definition
    return (s, z, q[before], k[before], v[before])


def _feature_case(seed, n, d, m, scale=1.0):
    g = _g(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = scale * x / x.norm(dim=1, keepdim=True) if scale != 1.0 else 0.5 * x
    return (x, torch.randn(m, d, generator=g, dtype=torch.float64))


def _rows(n, d, seed):
    return torch.randn(n, d, generator=_g(seed), dtype=torch.float64)



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch09.mistake.ex3.last_short': {"en": "you divided the last segment by ceil(N/m) too; it may hold fewer rows: divide each sum by its own number of rows.",
                                    "zh": "你把最后一段也除以了 ceil(N/m)；最后一段的行数可能更少：每段的和要除以它自己的行数。"},
    'ch09.mistake.ex1.no_phi': {"en": 'you used q and k as they are: the state and the normaliser take φ(k) = elu(k) + 1, and the read φ(q).', "zh": '你直接用了 q 和 k：状态和归一化项要用 φ(k) = elu(k) + 1，读取时用 φ(q)。'},
    'ch09.mistake.ex1.read_first': {"en": 'you read before writing: token t must see itself, so update s and z with token t first, then read.', "zh": '你先读后写了：token t 要能看到它自己，所以先用 token t 更新 s 和 z，再读取。'},
    'ch09.mistake.ex1.transposed': {"en": 'your update is transposed: s (M, Dv) grows by the outer product φ(k) vᵀ, rows indexed by features.', "zh": '你的更新转置了：s (M, Dv) 加上外积 φ(k) vᵀ，行对应特征。'},
    'ch09.mistake.ex2.no_norm': {"en": 'you left out the m^(−1/2) in front: the average over m features needs it.', "zh": '你漏掉了前面的 m^(−1/2)：对 m 个特征取平均需要它。'},
    'ch09.mistake.ex2.lemma1': {"en": "that is Lemma 1's map unchanged (c(x) = |x|²/2): its products average to the softmax kernel exp(x · y), not to exp(−|x − y|²/2). Expand |x − y|² and see which factor is still missing.", "zh": '这是原封不动的引理 1 特征映射（c(x) = |x|²/2）：它的乘积平均起来是 softmax 核 exp(x · y)，而不是 exp(−|x − y|²/2)。把 |x − y|² 展开，看看还缺哪个因子。'},
    'ch09.mistake.ex2.sign': {"en": "your c(x) is 0: the kernel's factor exp(−|x|²/2) multiplies Lemma 1's features, it does not cancel their exp(−|x|²/2). Check its sign.", "zh": '你的 c(x) 是 0：核函数的因子 exp(−|x|²/2) 要乘到引理 1 的特征上，而不是抵消掉特征里的 exp(−|x|²/2)。检查一下它的符号。'},
    'ch09.mistake.ex3.floor': {"en": 'your segments have floor(N/m) rows; they have ceil(N/m), the last one possibly shorter.', "zh": '你的每段有 floor(N/m) 行；应当是 ceil(N/m) 行，最后一段可以短一些。'},
    'ch09.mistake.ex4.not_causal': {"en": 'your output lets each token see later ones: the sums must run over j <= i only.', "zh": '你的输出让每个 token 看到了后面的 token：求和只能对 j <= i。'},
    'ch09.mistake.ex4.no_phi': {"en": 'you used q and k as they are: take φ(x) = elu(x) + 1 of both first.', "zh": '你直接用了 q 和 k：先对两者取 φ(x) = elu(x) + 1。'},
})

def _step(s, z, q, k, v, phi=_phi, read_first=False, transposed=False):
    pk, pq = phi(k), phi(q)
    new_s = s + (v[:, None] * pk[None, :] if transposed else pk[:, None] * v[None, :])  # (M, Dv)
    read = s if read_first else new_s
    out = (pq @ read) / torch.clamp(pq @ (z if read_first else z + pk), min=1e-6)
    return out, new_s, z + pk


def _gauss_features(x, w, c):  # m^-1/2 exp(w_i . x - c |x|^2): c = 1 is right, 1/2 is Lemma 1's map
    return torch.exp(x @ w.T - c * (x * x).sum(-1, keepdim=True)) / math.sqrt(w.shape[0])


def _segments(x, m, seg):
    seg = max(seg, 1)
    return torch.stack([x[a:a + seg].mean(0) for a in range(0, seg * m, seg)])


def _global_linear(q, k, v):
    pq, pk = _phi(q), _phi(k)
    return (pq @ (pk.T @ v)) / (pq @ pk.sum(0)).clamp_min(1e-6)[:, None]


def _causal_linear_phi(q, k, v, phi):
    w = torch.tril(phi(q) @ phi(k).T)
    return (w @ v) / w.sum(1).clamp_min(1e-6)[:, None]


def _m(value):
    return value, 0


MISTAKES = {
    "ch09.ex1": (
        (lambda s, z, q, k, v: _step(s, z, q, k, v, phi=lambda x: x), lambda: t('ch09.mistake.ex1.no_phi')),
        (lambda s, z, q, k, v: _step(s, z, q, k, v, read_first=True), lambda: t('ch09.mistake.ex1.read_first')),
        (lambda s, z, q, k, v: _step(s, z, q, k, v, transposed=True), lambda: t('ch09.mistake.ex1.transposed')),
    ),
    "ch09.ex2": (
        (lambda x, w: _gauss_features(x, w, 1.0) * w.shape[0] ** 0.5, lambda: t('ch09.mistake.ex2.no_norm')),
        (lambda x, w: _gauss_features(x, w, 0.5), lambda: t('ch09.mistake.ex2.lemma1')),
        (lambda x, w: _gauss_features(x, w, 0.0), lambda: t('ch09.mistake.ex2.sign')),
    ),
    "ch09.ex3": (
        (lambda x, m: torch.stack([x[a:a + math.ceil(x.shape[0] / m)].sum(0) / math.ceil(x.shape[0] / m)
                                   for a in range(0, x.shape[0], math.ceil(x.shape[0] / m))]),
         lambda: t("ch09.mistake.ex3.last_short")),
        (lambda x, m: _segments(x, m, x.shape[0] // m), lambda: t('ch09.mistake.ex3.floor')),
    ),
    "ch09.ex4": (
        (lambda q, k, v, c: _m(_global_linear(q, k, v)), lambda: t('ch09.mistake.ex4.not_causal')),
        (lambda q, k, v, c: _m(_causal_linear_phi(q, k, v, lambda x: x)), lambda: t('ch09.mistake.ex4.no_phi')),
    ),
}


# ---- checkers ----

FORBID_STEP = ("attnkit.linear.linear_attention_step", "attnkit.linear.linear_attention_chunk",
               "attnkit.linear.linear_attention", "attnkit.linear.LinearAttention", "attnkit.linear.LinearAttentionState",
               "attnkit.linear._causal", "attnkit.linear._chunk_update", "attnkit.lora.global_linear_attention")


def check_step(fn) -> bool:
    cases = [Case(_step_case(1, 0), label=t("ch09.case.first")),
             Case(_step_case(2, 5), label=t("ch09.case.later", i=5)),
             Case(_step_case(3, 7, d=3, dv=5), label=t("ch09.case.wide"))]
    return run_checks(fn, solution_step, cases, t("ch09.ex1.title"), exercise="ch09.ex1", mistakes=MISTAKES["ch09.ex1"],
                      hints=[t("ch09.ex1.hint1"), t("ch09.ex1.hint2"), t("ch09.ex1.hint3")],
                      compare=compare_tensors, forbid=FORBID_STEP)


def check_positive_features(fn) -> bool:
    cases = [Case(_feature_case(4, 3, 2, 4), label=t("ch09.case.small")),
             Case(_feature_case(5, 5, 4, 7), label=t("ch09.case.more")),
             Case(_feature_case(6, 4, 3, 6, scale=2.0), label=t("ch09.case.long"))]
    return run_checks(fn, solution_positive_features, cases, t("ch09.ex2.title"), exercise="ch09.ex2", mistakes=MISTAKES["ch09.ex2"],
                      hints=[t("ch09.ex2.hint1"), t("ch09.ex2.hint2"), t("ch09.ex2.hint3")],
                      forbid=("attnkit.linear.favor_features", "attnkit.linear._favor_log",
                              "attnkit.linear.softmax_kernel", "attnkit.linear.PerformerAttention",
                              "attnkit.linear.performer_attention"))


def check_landmarks(fn) -> bool:
    cases = [Case((_rows(12, 3, 7), 4), label=t("ch09.case.divides")),
             Case((_rows(10, 2, 8), 4), label=t("ch09.case.pad")),
             Case((_rows(5, 2, 9), 5), label=t("ch09.case.m_eq_n"))]
    return run_checks(fn, solution_landmarks, cases, t("ch09.ex3.title"), exercise="ch09.ex3", mistakes=MISTAKES["ch09.ex3"],
                      hints=[t("ch09.ex3.hint1"), t("ch09.ex3.hint2"), t("ch09.ex3.hint3")],
                      forbid=("attnkit.linear.segment_means", "attnkit.linear.NystromAttention",
                              "attnkit.linear.nystrom_attention"))


def check_q1(answer) -> bool:
    return check_answer(answer, 16640, exercise="ch09.q1", title=t("ch09.q1.title"),
                        explanation=t("ch09.q1.why"), nudge=t("ch09.q1.nudge"))


def check_q2(answer) -> bool:
    return check_answer(answer, "b", exercise="ch09.q2", title=t("ch09.q2.title"), explanation=t("ch09.q2.why"),
                        nudge=t("ch09.q2.nudge"),
                        choices={c: t(f"ch09.q2.{c}") for c in "abc"})


LONG_N, LONG_D = 2048, 32


def memory_bound(n: int, d: int, dv: int, chunk: int) -> int:
    """Bytes a chunked causal linear attention may hold at once: twice the float32 size of the
    inputs' order N(d + dv) plus one chunk's C x C block and a d x dv state. For the long case
    (N 2048, d = dv = 32, C 64) it is 1.5 MiB; one state per token (N x d x dv) is 8 MiB, and the
    chapter's cumsum cell holds two of them (16 MiB, measured), as much as the N x N matrix."""
    return 2 * 4 * (n * (d + dv) + chunk * (chunk + d * dv))


def check_causal_linear(fn) -> bool:
    g = _g(10)
    short = tuple(torch.randn(9, 3, generator=g) for _ in range(3)) + (4,)
    one = tuple(torch.randn(6, 2, generator=g) for _ in range(3)) + (1,)
    long = tuple(torch.randn(LONG_N, LONG_D, generator=g) for _ in range(3)) + (64,)
    cases = [Case(short, label=t("ch09.case.short")), Case(one, label=t("ch09.case.one")),
             Case(long, label=t("ch09.case.long_mem"))]

    def compare(got, expected):
        why = compare_tensors(got[0], expected[0], atol=1e-4)
        if why:
            return why
        n, d, dv, c = expected[0].shape[0], LONG_D, LONG_D, 64
        if n == LONG_N and got[1] > memory_bound(n, d, dv, c):
            return t("ch09.ex4.over_bound", got=got[1] / 2**20, limit=memory_bound(n, d, dv, c) / 2**20,
                     per_token=4 * n * d * dv / 2**20)
        return None

    if not callable(fn):
        return run_checks(fn, solution_causal_linear, cases, t("ch09.ex4.title"), exercise="ch09.ex4", mistakes=MISTAKES["ch09.ex4"])
    return run_checks(Measured(fn), Measured(solution_causal_linear), cases, t("ch09.ex4.title"),
                      exercise="ch09.ex4", mistakes=MISTAKES["ch09.ex4"], compare=compare,
                      hints=[t("ch09.ex4.hint1"), t("ch09.ex4.hint2"), t("ch09.ex4.hint3")],
                      forbid=FORBID_STEP + ("attnkit.linear.linear_attention_quadratic", "attnkit.linear._log_kernel_causal"))


# ---- section 10: forgetting. Exercise 4 (id ch09.ex5, the stretch keeps ch09.ex4) and question 3 ----

register({
    "ch09.ex5.title": {"en": "Exercise 4 · one step of the gated delta rule",
                       "zh": "练习 4 · 门控 delta 规则的一步"},
    "ch09.ex5.hint1": {"en": "Three moves, in this order: shrink the old state by alpha_t; read what it now returns "
                             "for k_t; write beta_t times the difference between v_t and that read, under k_t.",
                       "zh": "三步，顺序如下：先把旧状态乘以 alpha_t 缩小；再读出它现在对 k_t 给出的值；"
                             "最后在 k_t 下写入 beta_t 乘以 v_t 与这个读出值之差。"},
    "ch09.ex5.hint2": {"en": "Row vectors, key-major: the read is k_t @ S (shape (Dv,)); a write under k_t is an outer "
                             "product with k_t on the rows, shape (Dk, Dv).",
                       "zh": "行向量、键在前：读出是 k_t @ S（形状 (Dv,)）；在 k_t 下写入是一个外积，"
                             "k_t 对应行，形状为 (Dk, Dv)。"},
    "ch09.ex5.hint3": {"en": "`S = alpha_t * S; err = v_t - k_t @ S; return S + beta_t * torch.outer(k_t, err)`",
                       "zh": "`S = alpha_t * S; err = v_t - k_t @ S; return S + beta_t * torch.outer(k_t, err)`"},
    "ch09.case.delta_empty": {"en": "an empty state (S = 0): only the write, Dk = 4, Dv = 3",
                              "zh": "空状态（S = 0）：只有写入，Dk = 4，Dv = 3"},
    "ch09.case.delta_stale": {"en": "beta = 1, alpha = 1 (DeltaNet): S already stores a stale value under k_t",
                              "zh": "beta = 1，alpha = 1（DeltaNet）：S 在 k_t 下已存着一个过时的值"},
    "ch09.case.delta_full": {"en": "a full state, Dk = 5, Dv = 2, beta = 0.7, alpha = 0.8",
                             "zh": "存满内容的状态，Dk = 5，Dv = 2，beta = 0.7，alpha = 0.8"},
    "ch09.case.delta_drawn": {"en": "Dk = {dk}, Dv = {dv}, beta = {beta:.2f}, alpha = {alpha:.2f}",
                              "zh": "Dk = {dk}，Dv = {dv}，beta = {beta:.2f}，alpha = {alpha:.2f}"},
    "ch09.mistake.ex5.error_before_decay": {
        "en": "you read the error from the state before its decay: Gated DeltaNet decays first, so the error is "
              "v_t - k_t (alpha_t S), and the erase removes only what is left after the decay.",
        "zh": "你在衰减之前就从状态中读出了误差：门控 DeltaNet 先衰减，所以误差是 v_t - k_t (alpha_t S)，"
              "擦除的只是衰减之后剩下的内容。"},
    "ch09.mistake.ex5.decay_after_write": {
        "en": "you decayed after writing, so the new token's own write shrinks by alpha_t too: decay the old "
              "state first, then write.",
        "zh": "你在写入之后才衰减，于是新词元自己写入的内容也被乘上了 alpha_t：应当先衰减旧状态，再写入。"},
    "ch09.mistake.ex5.no_erase": {
        "en": "you only added beta_t k_t^T v_t (gated linear attention): the delta rule writes the error "
              "v_t - k_t S, so what S already stores under k_t is replaced, not added to.",
        "zh": "你只加上了 beta_t k_t^T v_t（这是门控线性注意力）：delta 规则写入的是误差 v_t - k_t S，"
              "所以 S 在 k_t 下已存的内容会被替换，而不是被累加。"},
    "ch09.mistake.ex5.sign": {
        "en": "the sign of your correction is flipped: k_t S - v_t is the gradient of 1/2 |k_t S - v_t|^2; "
              "a gradient step subtracts it, so add beta_t k_t^T (v_t - k_t S).",
        "zh": "你的修正项符号反了：k_t S - v_t 是 1/2 |k_t S - v_t|^2 的梯度；梯度下降的一步要减去它，"
              "所以应当加上 beta_t k_t^T (v_t - k_t S)。"},
    "ch09.q3.title": {"en": "Question 3 · write v1, then v2, under the same key",
                      "zh": "问题 3 · 在同一个键下先写 v1、再写 v2"},
    "ch09.q3.a": {"en": "plain: v2; delta rule: v2", "zh": "不遗忘：v2；delta 规则：v2"},
    "ch09.q3.b": {"en": "plain: v1 + v2; delta rule: v2", "zh": "不遗忘：v1 + v2；delta 规则：v2"},
    "ch09.q3.c": {"en": "plain: v1 + v2; delta rule: v2 - v1", "zh": "不遗忘：v1 + v2；delta 规则：v2 - v1"},
    "ch09.q3.d": {"en": "plain: (v1 + v2) / 2; delta rule: v1 + v2", "zh": "不遗忘：(v1 + v2) / 2；delta 规则：v1 + v2"},
    "ch09.q3.why": {"en": "Plain linear attention adds k^T v1, then k^T v2: with |k| = 1 the read k S is v1 + v2, a mix "
                          "no later read can take apart. The delta rule's second write is beta (v2 - k S) = v2 - v1 "
                          "(beta = 1): a correction, after which k S = v2. v2 - v1 is what it writes, not what it "
                          "returns.",
                    "zh": "不遗忘的线性注意力先加上 k^T v1，再加上 k^T v2：|k| = 1 时读出 k S = v1 + v2，"
                          "这个混合之后再也拆不开。delta 规则的第二次写入是 beta (v2 - k S) = v2 - v1（beta = 1）："
                          "这是一个修正，之后 k S = v2。v2 - v1 是它写入的内容，不是它读出的结果。"},
    "ch09.q3.nudge": {"en": "Start from S = 0 and apply each rule twice with |k| = 1 and beta = 1; after each write, "
                            "compute what k S returns.",
                      "zh": "从 S = 0 出发，取 |k| = 1、beta = 1，把每条规则各用两次；每次写入之后算一算 k S 读出什么。"},
})


def solution_gated_delta_step(S, k_t, v_t, beta_t, alpha_t):
    """S (Dk, Dv), k_t (Dk,), v_t (Dv,), floats beta_t, alpha_t -> the new state (Dk, Dv):
    S_t = alpha_t (I - beta_t k_t^T k_t) S + beta_t k_t^T v_t (Gated DeltaNet; DeltaNet when alpha_t = 1)."""
    S = alpha_t * S  # the gate acts first
    err = v_t - k_t @ S  # (Dv,): what the decayed state gets wrong about v_t under k_t
    return S + beta_t * torch.outer(k_t, err)


def _delta_case(seed, dk, dv, beta, alpha, empty=False, stale=False):
    g = _g(seed)
    k = torch.randn(dk, generator=g, dtype=torch.float64)
    k = k / k.norm()  # a unit key, as DeltaNet's L2-normalised keys
    v = torch.randn(dv, generator=g, dtype=torch.float64)
    S = torch.randn(dk, dv, generator=g, dtype=torch.float64)
    if empty:
        S = torch.zeros(dk, dv, dtype=torch.float64)
    if stale:  # the state already holds another value under k
        S = 0.3 * S + torch.outer(k, torch.randn(dv, generator=g, dtype=torch.float64))
    return (S, k, v, beta, alpha)


def _delta_drawn(seed):
    rng = torch.Generator().manual_seed(seed)
    dk, dv = (int(x) for x in torch.randint(2, 7, (2,), generator=rng))
    beta, alpha = 0.2 + 0.8 * torch.rand(1, generator=rng).item(), 0.5 + 0.5 * torch.rand(1, generator=rng).item()
    case = Case(_delta_case(seed, dk, dv, beta, alpha),
                label=t("ch09.case.delta_drawn", dk=dk, dv=dv, beta=beta, alpha=alpha))
    case.label = t("ex.drawn_new", seed=seed, label=case.label)
    return [case]


MISTAKES["ch09.ex5"] = (
    (lambda S, k, v, b, a: a * S + b * torch.outer(k, v - k @ S), lambda: t("ch09.mistake.ex5.error_before_decay")),
    (lambda S, k, v, b, a: a * (S + b * torch.outer(k, v - k @ S)), lambda: t("ch09.mistake.ex5.decay_after_write")),
    (lambda S, k, v, b, a: a * S + b * torch.outer(k, v), lambda: t("ch09.mistake.ex5.no_erase")),
    (lambda S, k, v, b, a: a * S + b * torch.outer(k, k @ (a * S) - v), lambda: t("ch09.mistake.ex5.sign")),
)

FORBID_DELTA = ("attnkit.forgetting.delta_rule_step", "attnkit.forgetting._delta_step",
                "attnkit.forgetting.delta_rule_recurrent", "attnkit.forgetting.delta_rule_chunked",
                "attnkit.forgetting.delta_rule_explicit", "attnkit.forgetting.DeltaNet",
                "attnkit.forgetting.gated_linear_attention_step", "attnkit.forgetting._gla_step",
                "attnkit.forgetting.gated_linear_attention_recurrent",
                "attnkit.forgetting.gated_linear_attention_chunked",
                "attnkit.forgetting.gated_linear_attention_explicit", "attnkit.forgetting.GatedLinearAttention")


def check_gated_delta_step(fn) -> bool:
    cases = [Case(_delta_case(11, 4, 3, 0.5, 0.9, empty=True), label=t("ch09.case.delta_empty")),
             Case(_delta_case(12, 4, 4, 1.0, 1.0, stale=True), label=t("ch09.case.delta_stale")),
             Case(_delta_case(13, 5, 2, 0.7, 0.8), label=t("ch09.case.delta_full"))]
    return run_checks(fn, solution_gated_delta_step, cases, t("ch09.ex5.title"), exercise="ch09.ex5",
                      mistakes=MISTAKES["ch09.ex5"], draw=_delta_drawn,
                      hints=[t("ch09.ex5.hint1"), t("ch09.ex5.hint2"), t("ch09.ex5.hint3")],
                      forbid=FORBID_DELTA)


def check_q3(answer) -> bool:
    return check_answer(answer, "b", exercise="ch09.q3", title=t("ch09.q3.title"), explanation=t("ch09.q3.why"),
                        nudge=t("ch09.q3.nudge"), choices={c: t(f"ch09.q3.{c}") for c in "abcd"})
