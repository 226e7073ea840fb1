# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["lang-en"]
# # 09 · Linear attention: kernels, random features, low rank — and what they cost in accuracy
#
# **What you will learn**
# - the associativity trick $(\phi(Q)\phi(K)^\top)V = \phi(Q)(\phi(K)^\top V)$ that turns an
#   $N \times N$ computation into one that grows linearly in $N$, timed on both sides;
# - why causal linear attention *is* an RNN with a fixed-size state — and what that state must
#   forget;
# - random features (the Performer): the softmax kernel as an average, Lemma 2's error formulas
#   measured by Monte Carlo, and an explorer of where positive and trigonometric features fail;
# - low rank (Linformer), landmarks (Nyströmformer) and the cos re-weighting of cosFormer;
# - measured on this machine: the sequence length where each method overtakes PyTorch's SDPA;
# - the pitfalls: overflow in half precision, a vanishing denominator, a causal mode that peeks,
#   random features redrawn between training and evaluation;
# - linear attention that forgets: decays and gates (RetNet, GLA, Mamba-2) and the delta rule
#   (DeltaNet, Gated DeltaNet), their implicit attention matrices, and how the delta rule
#   overwrites a stale association.
#
# **You need** chapter 01 (attention, masks), chapter 03 (the online softmax: a running max) and
# chapter 05 (the KV cache). Chapter 07's memory measurement is reused.

# %% [markdown] tags=["lang-zh"]
# # 09 · 线性注意力：核函数、随机特征、低秩——以及它们在精度上的代价
#
# **本章内容**
# - 结合律技巧 $(\phi(Q)\phi(K)^\top)V = \phi(Q)(\phi(K)^\top V)$：把 $N \times N$ 的计算变成随 $N$ 线性增长的计算，并对等式两边分别计时；
# - 为什么因果线性注意力*就是*一个状态大小固定的 RNN——以及这个状态不得不遗忘什么；
# - 随机特征（Performer）：把 softmax 核写成一个期望，用蒙特卡洛方法验证引理 2 的误差公式，并用交互控件看清正随机特征和三角函数特征各在哪里失效；
# - 低秩（Linformer）、地标点（Nyströmformer）以及 cosFormer 的余弦重加权；
# - 在本机上实测：每种方法从多长的序列开始比 PyTorch 的 SDPA 更快；
# - 常见陷阱：半精度下的溢出、趋于零的分母、偷看未来的因果模式、训练和评估之间重新抽取随机特征；
# - 会遗忘的线性注意力：衰减与门控（RetNet、GLA、Mamba-2）和 delta 规则（DeltaNet、Gated DeltaNet）；它们的隐式注意力矩阵；delta 规则如何覆盖一个过时的关联。
#
# **预备知识**：第 1 章（注意力、掩码）、第 3 章（在线 softmax：当前最大值）和第 5 章（KV 缓存）。本章还会沿用第 7 章的内存测量方法。

# %%
import math

import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch09  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import linear as L
from attnkit import viz
from attnkit.flash import measure_peak_bytes
from attnkit.numbers import bound, max_rel_diff
from attnkit.timing import one_thread, round_robin_medians, round_robin_times
from attnkit.widgets import linear as wl

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: timings repeat, and results never depend on threading
print(t("ch09.versions", torch=torch.__version__.split("+")[0], n=torch.get_num_threads()))

# %% [markdown] tags=["lang-en"]
# ## 1. The associativity trick
#
# Softmax attention gives query $i$ the output
# $o_i = \sum_j \mathrm{sim}(q_i, k_j)\, v_j \big/ \sum_j \mathrm{sim}(q_i, k_j)$ with
# $\mathrm{sim}(q, k) = \exp(q^\top k / \sqrt d)$. The exponential ties $q_i$ and $k_j$ together:
# every pair $(i, j)$ must be computed, $N^2$ of them. Katharopoulos et al. (2020, eqs. 4–6)
# replace $\mathrm{sim}$ by a *kernel* $\phi(q)^\top \phi(k)$ with a feature map $\phi$ whose
# values are positive, for instance $\phi(x) = \mathrm{elu}(x) + 1$ (their eq. 7, chosen over
# ReLU because its gradient is never zero). Then $q_i$ leaves the sum:
#
# $$o_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}{\phi(q_i)^\top \sum_j \phi(k_j)}.$$
#
# The two sums do not depend on $i$: compute them once, a $d \times d_v$ matrix and a
# $d$-vector, and every query costs $O(d\,d_v)$. In matrix form this is associativity,
# $(\phi(Q)\phi(K)^\top)V = \phi(Q)(\phi(K)^\top V)$: the left side builds $N \times N$, the right
# side $d \times d_v$. A few lines, checked three ways: against the explicit $N \times N$ kernel
# matrix, against attnkit, and against PyTorch's SDPA — with all queries zero and the float mask
# $\log A$, SDPA computes $\mathrm{softmax}(\log A)$, which is $A$ divided by its row sums, exactly
# our normalisation:

# %% [markdown] tags=["lang-zh"]
# ## 1. 结合律技巧
#
# softmax 注意力给查询 $i$ 的输出是
# $o_i = \sum_j \mathrm{sim}(q_i, k_j)\, v_j \big/ \sum_j \mathrm{sim}(q_i, k_j)$，其中
# $\mathrm{sim}(q, k) = \exp(q^\top k / \sqrt d)$。指数函数把 $q_i$ 和 $k_j$ 捆在了一起：每一对 $(i, j)$ 都得算一遍，一共 $N^2$ 对。Katharopoulos 等（2020，式 4–6）把 $\mathrm{sim}$ 换成一个*核函数* $\phi(q)^\top \phi(k)$。特征映射 $\phi$ 的取值为正，例如 $\phi(x) = \mathrm{elu}(x) + 1$（论文式 7）；选它而不选 ReLU，是因为它的梯度永远不为零。这样 $q_i$ 就可以提到求和号外面：
#
# $$o_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}{\phi(q_i)^\top \sum_j \phi(k_j)}.$$
#
# 这两个和与 $i$ 无关：只需算一次，得到一个 $d \times d_v$ 的矩阵和一个 $d$ 维向量，之后每个查询只要 $O(d\,d_v)$ 的计算量。写成矩阵形式，这就是结合律 $(\phi(Q)\phi(K)^\top)V = \phi(Q)(\phi(K)^\top V)$。左边要构造 $N \times N$ 的矩阵，右边只有 $d \times d_v$。下面用几行代码实现它，并从三个角度验证：与显式构造的 $N \times N$ 核矩阵比较、与 attnkit 比较、与 PyTorch 的 SDPA 比较。第三项的原理是：把所有查询设为零、把 $\log A$ 作为浮点掩码传入时，SDPA 算的是 $\mathrm{softmax}(\log A)$，也就是 $A$ 除以各行之和；这正好是我们的归一化：

# %%
def phi(x):  # elu(x) + 1 > 0 (Katharopoulos et al., eq. 7)
    return F.elu(x) + 1


def linear_attention_scratch(q, k, v):  # q (N, d), k (S, d), v (S, dv)
    kv = phi(k).T @ v  # (d, dv): sum_j phi(k_j) v_j^T, once for all queries
    z = phi(k).sum(0)  # (d,):    sum_j phi(k_j)
    return (phi(q) @ kv) / (phi(q) @ z)[:, None]  # (N, dv)


q, k, v = torch.randn(10, 8), torch.randn(12, 8), torch.randn(12, 5)
ours = linear_attention_scratch(q, k, v)
A = phi(q) @ phi(k).T  # the (N, S) kernel matrix, built here only to check
print(t("ch09.eq_quadratic", ok=torch.allclose(ours, (A @ v) / A.sum(1, keepdim=True), atol=1e-6)))
print(t("ch09.eq_attnkit", ok=torch.allclose(ours, L.linear_attention(q, k, v), atol=1e-6)))
sdpa = F.scaled_dot_product_attention(torch.zeros_like(q), k, v, attn_mask=A.log())
print(t("ch09.eq_sdpa", ok=torch.allclose(ours, sdpa, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# The two sides of the associativity give the same numbers (up to float32 rounding) at very
# different costs: $2N^2 d_v + 2N^2 d$ FLOPs on the left, $4 N d\, d_v$ on the right. Here is the
# check at $N = 1024$, $d = d_v = 64$, then both sides timed on one thread (this cell's output is
# not compared by the tests: timings vary):

# %% [markdown] tags=["lang-zh"]
# 结合律两边算出的数相同（只差 float32 的舍入误差），代价却大不一样：左边要 $2N^2 d_v + 2N^2 d$ 次浮点运算，右边只要 $4 N d\, d_v$ 次。下面先在 $N = 1024$、$d = d_v = 64$ 时验证两边相等，再在单线程下分别计时（计时结果每次都不同，测试不比对这个单元格的输出）：

# %%
d = 64
pq, pk, vv = phi(torch.randn(1024, d)), phi(torch.randn(1024, d)), torch.randn(1024, d)
left, right = (pq @ pk.T) @ vv, pq @ (pk.T @ vv)
print(t("ch09.assoc_equal", rel=bound(((left - right).norm() / left.norm()).item(), 1e-5)))

# %% tags=["nbval-ignore-output"]
rows = []
with one_thread():
    for n in (256, 1024, 4096):
        pq, pk, vv = phi(torch.randn(n, d)), phi(torch.randn(n, d)), torch.randn(n, d)
        med = round_robin_medians({"left": lambda: (pq @ pk.T) @ vv, "right": lambda: pq @ (pk.T @ vv)},
                                  repeats=5)
        rows.append([n, f"{med['left'] * 1e3:.2f}", f"{med['right'] * 1e3:.3f}", f"{med['left'] / med['right']:.1f}"])
        faster = t("ch09.right_side") if med["right"] < med["left"] else t("ch09.left_side")
        last = t("ch09.assoc_conclusion", n=n, side=faster, x=max(med["left"], med["right"]) / min(med["left"], med["right"]))
print(viz.format_table([t("ch09.col.n"), t("ch09.col.left_ms"), t("ch09.col.right_ms"), t("ch09.col.ratio")], rows))
print(last)

# %% [markdown] tags=["lang-en"]
# From one row to the next $N$ grows 4×, so the work on the left grows 16× ($N^2$) and on the
# right 4× ($N$); the table shows how closely the measured times follow on this machine. The price of the trick is the kernel itself: $\phi(q)^\top\phi(k)$
# is *not* $\exp(q^\top k/\sqrt d)$, so this is a different attention, not an approximation of the
# softmax — its weights are flatter, and the rest of the chapter is about what that costs and how
# random features, low rank and landmarks try to get the softmax back.

# %% [markdown] tags=["lang-zh"]
# 从一行到下一行，$N$ 变成 4 倍，于是左边的计算量变成 16 倍（$N^2$），右边变成 4 倍（$N$）；表中可以看到本机实测的时间在多大程度上符合这一点。这个技巧的代价在于核函数本身。$\phi(q)^\top\phi(k)$ *并不是* $\exp(q^\top k/\sqrt d)$，所以这是另一种注意力，而不是 softmax 的近似：它的权重更平坦。本章余下的部分就是讨论这要付出什么代价，以及随机特征、低秩和地标点如何设法把 softmax 找回来。

# %% [markdown] tags=["lang-en"]
# ## 2. Causal linear attention is an RNN
#
# With a causal mask, query $i$ sums only over $j \le i$ (Katharopoulos et al., eqs. 9–12):
#
# $$S_i = \sum_{j \le i} \phi(k_j) v_j^\top, \qquad Z_i = \sum_{j \le i} \phi(k_j), \qquad
# o_i = \frac{\phi(q_i)^\top S_i}{\phi(q_i)^\top Z_i}.$$
#
# $S_i$ and $Z_i$ are prefix sums, and a prefix sum is a recurrence:
# $S_i = S_{i-1} + \phi(k_i) v_i^\top$, $Z_i = Z_{i-1} + \phi(k_i)$ (eqs. 16–20). So causal linear
# attention is an RNN whose hidden state is $(S, Z)$: $d \times d_v + d$ numbers, whatever the
# length of the sequence. The prefix sums in three lines with `cumsum` (this version holds an
# $N \times d \times d_v$ tensor; attnkit computes the same thing chunk by chunk), compared with
# the explicit lower-triangular kernel, attnkit, SDPA with the mask $\log A$, and the RNN run one
# token at a time with `linear_attention_step`:

# %% [markdown] tags=["lang-zh"]
# ## 2. 因果线性注意力就是 RNN
#
# 有因果掩码时，查询 $i$ 只对 $j \le i$ 求和（Katharopoulos 等，式 9–12）：
#
# $$S_i = \sum_{j \le i} \phi(k_j) v_j^\top, \qquad Z_i = \sum_{j \le i} \phi(k_j), \qquad
# o_i = \frac{\phi(q_i)^\top S_i}{\phi(q_i)^\top Z_i}.$$
#
# $S_i$ 和 $Z_i$ 是前缀和，而前缀和就是一个递推。递推式为 $S_i = S_{i-1} + \phi(k_i) v_i^\top$，$Z_i = Z_{i-1} + \phi(k_i)$（式 16–20）。所以因果线性注意力就是一个 RNN，它的隐藏状态是 $(S, Z)$：共 $d \times d_v + d$ 个数，与序列长度无关。下面用 `cumsum` 三行写出前缀和（这个版本要存一个 $N \times d \times d_v$ 的张量；attnkit 逐段计算同样的结果），然后与显式的下三角核矩阵、attnkit、传入掩码 $\log A$ 的 SDPA 比较，再用 `linear_attention_step` 逐个词元运行这个 RNN，与之比较：

# %%
q, k, v = torch.randn(16, 8), torch.randn(16, 8), torch.randn(16, 4)
S = torch.cumsum(phi(k)[:, :, None] * v[:, None, :], dim=0)  # (N, d, dv): S_i, eq. 10
Z = torch.cumsum(phi(k), dim=0)  # (N, d): Z_i, eq. 11
prefix = torch.einsum("nd,nde->ne", phi(q), S) / (phi(q) * Z).sum(1, keepdim=True)  # (N, dv)

A = torch.tril(phi(q) @ phi(k).T)  # the explicit causal kernel matrix
print(t("ch09.eq_quadratic", ok=torch.allclose(prefix, (A @ v) / A.sum(1, keepdim=True), atol=1e-5)))
print(t("ch09.eq_attnkit", ok=torch.allclose(prefix, L.linear_attention(q, k, v, causal=True), atol=1e-5)))
print(t("ch09.eq_sdpa", ok=torch.allclose(prefix, F.scaled_dot_product_attention(torch.zeros_like(q), k, v,
                                                                                 attn_mask=A.log()), atol=1e-5)))
state, outs = None, []
for i in range(16):  # the RNN: one token in, one output out, the state carried along
    o, state = L.linear_attention_step(state, q[i], k[i], v[i])
    outs.append(o)
print(t("ch09.eq_rnn", ok=torch.allclose(torch.stack(outs), prefix, atol=1e-5)))
print(t("ch09.state", s=tuple(state.s.shape), z=tuple(state.z.shape), n=state.s.numel() + state.z.numel()))

# %% [markdown] tags=["lang-en"]
# Any split of the sequence into chunks gives the same result: `linear_attention_chunk` takes a
# state and a chunk, returns the chunk's outputs and the new state. This is how
# `linear_attention(..., causal=True)` runs (a small lower-triangular block inside each chunk,
# the state across chunks), and how a model would decode one token at a time:

# %% [markdown] tags=["lang-zh"]
# 把序列按任意方式分段，结果都一样：`linear_attention_chunk` 接收一个状态和一段词元，返回这一段的输出和新状态。`linear_attention(..., causal=True)` 就是这样运行的（每段内部算一个小的下三角块，段与段之间传递状态），模型逐个词元解码时也是这样：

# %%
state, outs, start = None, [], 0
for size in (5, 1, 7, 3):  # 16 tokens in uneven chunks
    o, state = L.linear_attention_chunk(state, q[start:start + size], k[start:start + size], v[start:start + size])
    outs.append(o)
    start += size
print(t("ch09.eq_chunks", ok=torch.allclose(torch.cat(outs), prefix, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **What a fixed-size state cannot do.** Softmax attention's KV cache keeps every key and value
# (chapter 05): $2d$ numbers more per token, and any of them can be found again. The linear
# state is a sum of outer products $\sum_j k_j v_j^\top$ — a *superposition*. Reading it with a
# stored key $k_i$ gives $v_i (k_i^\top k_i) + \sum_{j \ne i} v_j (k_j^\top k_i)$: the wanted value
# plus crosstalk from every other pair. In $d$ dimensions at most $d$ keys are orthogonal, so once
# more than $d$ pairs are stored, the crosstalk must grow. A probe: store $n$ random pairs with unit
# keys in $d = 16$ dimensions, read each back with its key, and measure the cosine between what is
# read and what was stored (linear attention with $\phi$ = identity, the cleanest case; softmax
# attention with a sharp softmax over the stored keys):

# %% [markdown] tags=["lang-zh"]
# **固定大小的状态做不到什么。** softmax 注意力的 KV 缓存保留了每一个键和值（第 5 章）：每多一个词元就多存 $2d$ 个数，而且其中任何一个都能再找回来。线性注意力的状态则是外积之和 $\sum_j k_j v_j^\top$——一种*叠加*。用存进去的某个键 $k_i$ 去读它，得到的是 $v_i (k_i^\top k_i) + \sum_{j \ne i} v_j (k_j^\top k_i)$。也就是想要的值，再加上其他所有键值对带来的串扰。在 $d$ 维空间里最多只有 $d$ 个相互正交的键，所以一旦存入的键值对超过 $d$ 个，串扰必然增大。做一个探测实验：在 $d = 16$ 维中存入 $n$ 个随机键值对（键为单位向量），再用每个键把值读出来。我们测量读出的值与存入的值之间的余弦相似度（线性注意力取 $\phi$ 为恒等映射，这是最干净的情形；softmax 注意力则对存下的键做一个很尖锐的 softmax）：

# %% alt="ch09.alt.recall"
pairs = (4, 8, 16, 32, 64, 128)
probe = [wl.recall_probe(n, d=16) for n in pairs]
print(viz.format_table([t("ch09.col.pairs"), t("ch09.col.recall_linear"), t("ch09.col.recall_softmax"),
                        t("ch09.col.state_numbers"), t("ch09.col.cache_numbers")],
                       [[n, f"{p['linear']:.3f}", f"{p['softmax']:.3f}", p["state_numbers"], p["cache_numbers"]]
                        for n, p in zip(pairs, probe, strict=True)]))
_ = wl.recall_figure(pairs, [p["linear"] for p in probe], [p["softmax"] for p in probe], d=16)

# %% [markdown] tags=["lang-en"]
# Softmax attention recalls every pair, because its cache grows with them; the linear state stays
# at 256 numbers and its recall falls as pairs are added — already below 1 with 4 pairs (random
# keys are not orthogonal), and far lower past $d = 16$. It has to forget (section 10 shows how). This is the
# recall/state-size trade-off that *Zoology* and *Based* (Arora et al. 2023, 2024) measure on
# associative-recall tasks, and chapter 11 trains small models on one
# (`attnkit.linear.LinearAttention(..., causal=True).recurrent` exposes the state for that probe).

# %% [markdown] tags=["lang-zh"]
# softmax 注意力能记住每一个键值对，因为它的缓存随之增长；线性注意力的状态始终是 256 个数，存入的键值对越多，召回越差——只存 4 对时就已经低于 1（随机的键并不正交），超过 $d = 16$ 之后更是低得多。它不得不遗忘（第 10 节讲怎样遗忘）。这正是 *Zoology* 和 *Based*（Arora 等，2023、2024）在关联召回任务上测量的“召回能力与状态大小”的权衡；第 11 章会在这样的任务上训练小模型（`attnkit.linear.LinearAttention(..., causal=True).recurrent` 为此暴露了这个状态）。

# %% [markdown] tags=["lang-en"]
# ## 3. Random features: the Performer
#
# Can a feature map reproduce the softmax kernel $\mathrm{SM}(x, y) = \exp(x^\top y)$ itself?
# Not exactly with finitely many features, but *on average*. Choromanski et al. (2021, Lemma 1):
# for $w \sim \mathcal N(0, I_d)$,
#
# $$\exp(x^\top y) = \mathbb E_w\!\left[e^{w^\top x - \|x\|^2/2}\, e^{w^\top y - \|y\|^2/2}\right],$$
#
# and two lines prove it. For any vector $u$, $\mathbb E_w[e^{w^\top u}] = e^{\|u\|^2/2}$ (the
# Gaussian's moment generating function, one coordinate at a time). With $u = x + y$:
# $\mathbb E_w[e^{w^\top x} e^{w^\top y}] = e^{\|x + y\|^2/2} = e^{\|x\|^2/2}\, e^{x^\top y}\, e^{\|y\|^2/2}$;
# divide both sides by the two outer factors. So with $m$ random rows $w_1 \dots w_m$, the **positive random features**
# $\phi^+(x) = m^{-1/2}\big(e^{w_i^\top x - \|x\|^2/2}\big)_{i=1}^m$ give
# $\phi^+(x)^\top\phi^+(y) \approx \exp(x^\top y)$. The older **trigonometric** features
# $\phi^{\mathrm{trig}}(x) = m^{-1/2} e^{\|x\|^2/2} (\cos w_i^\top x, \sin w_i^\top x)$ — Rahimi and
# Recht's (2007) random Fourier features of the Gaussian kernel, times $e^{\|x\|^2/2}$, which RFA
# (Peng et al. 2021) also uses — estimate the same kernel. For attention, $x = q/d^{1/4}$, $y = k/d^{1/4}$. The estimates are unbiased; their
# errors differ (Lemma 2, iid features):
#
# $$\mathrm{MSE}^+ = \tfrac{1}{m}\, e^{\|x+y\|^2}\,\mathrm{SM}^2(x,y)\,\big(1 - e^{-\|x+y\|^2}\big),
# \qquad \mathrm{MSE}^{\mathrm{trig}} = \tfrac{1}{2m}\, e^{\|x+y\|^2}\,\mathrm{SM}^{-2}(x,y)\,\big(1 - e^{-\|x-y\|^2}\big)^2.$$
#
# The positive estimator's error carries $\mathrm{SM}^2$: it is small exactly where the kernel is
# small, as most attention weights are. The trig estimator's carries $\mathrm{SM}^{-2}$. And
# **orthogonal** random features — blocks of exactly orthogonal rows with Gaussian-like lengths
# (section 2.4) — lower the error further (Theorem 2). Positive features, orthogonal rows and the
# associativity trick of section 1 together are the Performer's **FAVOR+** (Fast Attention Via
# positive Orthogonal Random features).
#
# Measured over 4000 independent draws of $m = 16$ features in $d = 16$, for three pairs of length
# 1 at different angles, each with its Monte Carlo standard error (the standard deviation of the
# 4000 squared errors over $\sqrt{4000}$, as in chapter 02). Orthogonal and iid features are
# compared on matched draws: each orthogonal projection is made from the same Gaussian numbers as
# its iid twin (rows orthogonalised, their lengths kept), so their difference is measured draw by
# draw, with its own standard error:

# %% [markdown] tags=["lang-zh"]
# ## 3. 随机特征：Performer
#
# 能不能用一个特征映射把 softmax 核 $\mathrm{SM}(x, y) = \exp(x^\top y)$ 本身复现出来？用有限个特征做不到精确复现，但可以做到*期望意义下*相等。Choromanski 等（2021，引理 1）：对 $w \sim \mathcal N(0, I_d)$,$$\exp(x^\top y) = \mathbb E_w\!\left[e^{w^\top x - \|x\|^2/2}\, e^{w^\top y - \|y\|^2/2}\right],$$
#
# 证明只要两行。对任意向量 $u$，$\mathbb E_w[e^{w^\top u}] = e^{\|u\|^2/2}$（高斯分布的矩母函数，逐个坐标相乘即得）。取 $u = x + y$：$\mathbb E_w[e^{w^\top x} e^{w^\top y}] = e^{\|x + y\|^2/2} = e^{\|x\|^2/2}\, e^{x^\top y}\, e^{\|y\|^2/2}$；两边同除以外侧的两个因子即可。所以我们取 $m$ 个随机行 $w_1 \dots w_m$。由它们得到的**正随机特征**是 $\phi^+(x) = m^{-1/2}\big(e^{w_i^\top x - \|x\|^2/2}\big)_{i=1}^m$；它满足 $\phi^+(x)^\top\phi^+(y) \approx \exp(x^\top y)$。更早的**三角函数特征** $\phi^{\mathrm{trig}}(x) = m^{-1/2} e^{\|x\|^2/2} (\cos w_i^\top x, \sin w_i^\top x)$ 估计的是同一个核。它是 Rahimi 和 Recht（2007）为高斯核构造的随机傅里叶特征再乘以 $e^{\|x\|^2/2}$，RFA（Peng 等，2021）用的也是它。用于注意力时，$x = q/d^{1/4}$，$y = k/d^{1/4}$。两种估计都是无偏的，误差却不同（引理 2，独立同分布的特征）：
#
# $$\mathrm{MSE}^+ = \tfrac{1}{m}\, e^{\|x+y\|^2}\,\mathrm{SM}^2(x,y)\,\big(1 - e^{-\|x+y\|^2}\big),
# \qquad \mathrm{MSE}^{\mathrm{trig}} = \tfrac{1}{2m}\, e^{\|x+y\|^2}\,\mathrm{SM}^{-2}(x,y)\,\big(1 - e^{-\|x-y\|^2}\big)^2.$$
#
# 正随机特征的误差带有因子 $\mathrm{SM}^2$：恰好在核函数值小的地方误差也小，而注意力权重大多都很小。三角函数特征的误差带的却是 $\mathrm{SM}^{-2}$。**正交随机特征**——由若干块严格正交的行组成，行的长度与高斯向量同分布（第 2.4 节）——还能进一步降低误差（定理 2）。正随机特征、正交的行，再加上第 1 节的结合律技巧，合起来就是 Performer 的 **FAVOR+**。这个名字是 Fast Attention Via positive Orthogonal Random features 的缩写，意为基于正交正随机特征的快速注意力。
#
# 下面在 $d = 16$ 中取 $m = 16$ 个特征，独立抽取 4000 次，对三对长度为 1、夹角不同的向量测量均方误差。每个值都附上蒙特卡洛标准误差，即 4000 个平方误差的标准差除以 $\sqrt{4000}$，与第 2 章相同。正交特征与独立同分布特征在配对的抽样上比较：每个正交投影都由它的独立同分布孪生投影的同一批高斯数构成（把行正交化，保留行的长度），所以两者之差逐次抽样地测量，也有自己的标准误差：

# %%
def mse_text(e, se=None):  # four decimals below 10, two above, or as many as the standard error's two digits need
    places = 4 if e < 10 else 2
    if se is None:
        return f"{e:.{places}f}"
    places = max(places, 1 - math.floor(math.log10(se)))
    return f"{e:.{places}f} ± {se:.{places}f}"


w_iid, w_ort = wl.matched_projections(16, 16, draws=4000)  # (4000, 16, 16) each: matched twins
rows, verdicts = [], []
for cos in (-0.9, 0.0, 0.9):
    x, y = wl.pair_at_angle(16, 1.0, cos)
    pos, trig, ort = (wl.kernel_squared_errors(x, y, w_, kind)
                      for w_, kind in ((w_iid, "positive"), (w_iid, "trig"), (w_ort, "positive")))
    (p, p_se), (tr, tr_se), (o, o_se), (dif, dif_se) = (wl.mean_and_se(e) for e in (pos, trig, ort, pos - ort))
    p_th, tr_th = wl.lemma2_mse(x, y, 16, "positive"), wl.lemma2_mse(x, y, 16, "trig")
    rows.append([f"{cos:+.1f}", f"{math.exp(float(x @ y)):.3f}", mse_text(p, p_se), mse_text(p_th),
                 mse_text(tr, tr_se), mse_text(tr_th), mse_text(o, o_se), mse_text(dif, dif_se)])
    verdicts.append(t("ch09.mc_row", cos=f"{cos:+.1f}", zp=abs(p - p_th) / p_se, zt=abs(tr - tr_th) / tr_se, zo=dif / dif_se))
print(viz.format_table([t("ch09.col.cos"), t("ch09.col.sm"), t("ch09.col.pos_mc"), t("ch09.col.pos_th"),
                        t("ch09.col.trig_mc"), t("ch09.col.trig_th"), t("ch09.col.ort_mc"),
                        t("ch09.col.iid_minus_ort")], rows))
print("\n".join(verdicts))

# %% [markdown] tags=["lang-en"]
# Every measured column agrees with Lemma 2 within two standard errors (the lines under the
# table). The standard errors also say how much each number is worth. Where $\|x + y\|$ is large
# (the last row) the positive estimator's errors are heavy-tailed — rare draws with huge values
# carry most of the mean — and even 4000 draws pin its MSE down only to within about half of its
# value. The comparison the lemma makes is clear beyond the errors: where the kernel is small (the
# first row, nearly opposite vectors) the positive features are far more accurate than the trig
# ones, and where it is large (the last row) the trig features win. Orthogonal against iid on the
# same draws: the orthogonal features are lower by more than three standard errors only in the
# first row; in the other two the difference is within two standard errors of zero, so these draws
# cannot tell the two apart there (Theorem 2 proves the orthogonal error lower; measuring that
# needs far more draws where the tails are heavy).
# How the error falls with $m$ ($1/m$, a line of slope −1 on log–log axes), at
# $\|x\| = \|y\| = 0.5$ and a right angle, where the tails are light:

# %% [markdown] tags=["lang-zh"]
# 每一列实测值都与引理 2 相差不到两个标准误差（见表下各行）。标准误差也说明了每个数值有多可靠。在 $\|x + y\|$ 较大的地方（最后一行），正随机特征估计的误差是重尾的：少数取值极大的抽样贡献了均值的大部分。即使抽样 4000 次，它的均方误差也只能确定到自身大约一半的精度。引理所做的比较远远超出误差范围：核函数值小的地方（第一行，两个向量几乎反向），正随机特征比三角函数特征准确得多；核函数值大的地方（最后一行），三角函数特征更好。在同一批抽样上比较正交与独立同分布特征：只有第一行里正交特征的误差低出三个标准误差以上；另外两行的差值与零相差不到两个标准误差，这些抽样在那里分不出两者。（定理 2 证明了正交特征的误差更低；要在尾部很重的地方测出这一点，需要多得多的抽样。）下面看误差如何随 $m$ 下降（按 $1/m$ 下降，在双对数坐标中是一条斜率为 −1 的直线），取 $\|x\| = \|y\| = 0.5$、两者垂直，这时误差的尾部很轻：

# %% alt="ch09.alt.lemma2"
ms = (4, 8, 16, 32, 64)
x, y = wl.pair_at_angle(16, 0.5, 0.0)
labels = {k_: t(f"ch09.kind.{k_}") for k_ in ("positive", "trig", "orthogonal")}
measured = {labels["positive"]: [wl.lemma2_monte_carlo(x, y, m, "positive", draws=200) for m in ms],
            labels["trig"]: [wl.lemma2_monte_carlo(x, y, m, "trig", draws=200) for m in ms],
            labels["orthogonal"]: [wl.lemma2_monte_carlo(x, y, m, "positive", orthogonal=True, draws=200) for m in ms]}
theory = {labels["positive"]: [wl.lemma2_mse(x, y, m, "positive") for m in ms],
          labels["trig"]: [wl.lemma2_mse(x, y, m, "trig") for m in ms]}
print(t("ch09.mse_ratio", a=measured[labels["positive"]][0] / measured[labels["positive"]][-1], m0=ms[0], m1=ms[-1]))
_ = wl.lemma2_figure(ms, measured, theory, r=0.5)

# %% [markdown] tags=["lang-en"]
# ## 4. Explore: random-feature attention against the exact softmax
#
# The explorer takes 64 queries and keys in $d = 16$ (entries drawn once, then multiplied by the
# **input scale**), computes the exact softmax attention weights, and the Performer's estimate:
# $A_{ij} = \phi(q_i)^\top\phi(k_j)$ divided by its row sums. Move the **number of features**, the
# **feature map** and the **scale**, and toggle **orthogonal** features; the right panel is the
# absolute error and its title the relative error of the whole matrix. The features are drawn once
# for each setting and reused, so the pictures only change when you change a control. (On GitHub,
# the static figure below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# ## 4. 动手探索：随机特征注意力与精确 softmax 的对比
#
# 这个交互控件取 $d = 16$ 维中的 64 个查询和键（元素只抽取一次，再乘以**输入尺度**）。它算出精确的 softmax 注意力权重，以及 Performer 的估计：$A_{ij} = \phi(q_i)^\top\phi(k_j)$ 除以各行之和。拖动**特征数**、切换**特征映射**、调节**输入尺度**，并勾选或取消**正交随机特征**；右边的图是绝对误差，标题里是整个矩阵的相对误差。每组设置下的随机特征只抽取一次、之后重复使用，所以只有改变控件时图才会变。（在 GitHub 上，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"] alt="ch09.alt.explorer"
explorer = wl.rf_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The same computation, printed for a few settings (orthogonal features):

# %% [markdown] tags=["lang-zh"]
# 同样的计算，对几组设置打印出来（正交随机特征）：

# %%
rows = []
DRAWS = 8  # independent draws of the features for the same q, k: a mean and its standard error
for scale in (0.5, 1.0):
    for kind in ("positive", "trig"):
        cells = []
        for m in (16, 256, 4096):
            mean, se = wl.mean_and_se(torch.tensor([wl.rf_attention(m, kind, scale, feature_seed=1 + i)["rel"]
                                                    for i in range(DRAWS)]))
            cells.append(f"{mean:.3f} ± {se:.3f}" if mean < 10 else "> 10")  # above 10 only says "fell apart"
        rows.append([f"{scale:.1f}", t(f"ch09.kind.{kind}")] + cells)
print(t("ch09.rf_draws", n=DRAWS))
print(viz.format_table([t("ch09.col.scale"), t("ch09.col.kind"), "m = 16", "m = 256", "m = 4096"], rows))

# %% [markdown] tags=["lang-en"]
# Each entry is a mean over 8 draws of the features with its standard error, so a difference
# much larger than the errors is real, not one lucky draw. At input scale 0.5 both maps improve
# with more features and the trig map is the more accurate:
# the scores are small, the kernel values are close to 1, the regime where Lemma 2 favours it. At
# scale 1.0 the trig estimate falls apart with 16 or 256 features — its row sums can come close
# to zero or turn negative, and dividing by them blows the error up — while the positive estimate
# stays a weighted average (every feature is positive) but needs far more features; even at 4096
# neither is close: its variance grows like
# $e^{\|x+y\|^2}$ and $\|x\|^2$ grows with the square of the scale. This is why FAVOR+ uses
# positive orthogonal features, and why the Performer works best when queries and keys are kept
# small.
#
# `attnkit.linear.performer_attention(q, k, v, projection=None, nb_features=..., kind=..., causal=...)`
# does the same on `(B, H, N, d)` tensors; the projection can be passed in (reproducible,
# comparable with other code) or is drawn from `seed`. It equals the attention of its explicit
# random-feature kernel, and approaches softmax attention as $m$ grows:

# %% [markdown] tags=["lang-zh"]
# 表中每一项都是 8 次特征抽样的均值及其标准误差，所以远大于误差的差别是真实的，而不是某一次运气好的抽样。输入尺度为 0.5 时，两种映射都随特征数增加而变好，而且三角函数特征更准：分数很小，核函数值接近 1，正是引理 2 中对它有利的区间。尺度为 1.0 时，用 16 或 256 个特征的三角函数特征估计崩溃了——它的行和可能接近零甚至变成负数，除以这样的数会让误差爆炸；正随机特征的估计仍然是一个加权平均（每个特征都为正），但需要多得多的特征；即使用 4096 个特征，两者都还差得远：它的方差按 $e^{\|x+y\|^2}$ 增长，而 $\|x\|^2$ 随尺度的平方增长。这就是为什么 FAVOR+ 使用正交的正随机特征，也是为什么查询和键保持较小时 Performer 效果最好。
#
# `attnkit.linear.performer_attention(q, k, v, projection=None, nb_features=..., kind=..., causal=...)`
# 在形状为 `(B, H, N, d)` 的张量上做同样的计算；投影矩阵可以从外部传入（结果可复现，也便于与其他代码比较），否则按 `seed` 抽取。它等于由显式随机特征核矩阵算出的注意力，并且随着 $m$ 增大而趋近 softmax 注意力：

# %%
qp, kp, vp = (0.5 * torch.randn(1, 2, 128, 16, dtype=torch.float64) for _ in range(3))
w = L.orthogonal_random_features(64, 16, seed=1, dtype=torch.float64)
fq, fk = L.favor_features(qp / 16 ** 0.25, w), L.favor_features(kp / 16 ** 0.25, w)
Ap = fq @ fk.transpose(-2, -1)  # the explicit (N, N) random-feature kernel
print(t("ch09.eq_quadratic", ok=torch.allclose(L.performer_attention(qp, kp, vp, w), (Ap @ vp) / Ap.sum(-1, keepdim=True))))
ref = F.scaled_dot_product_attention(qp, kp, vp)
for m in (16, 256, 4096):
    out = L.performer_attention(qp, kp, vp, nb_features=m, seed=1)
    print(t("ch09.performer_error", m=m, err=((out - ref).norm() / ref.norm()).item()))

# %% [markdown] tags=["lang-en"]
# ## 5. Low rank: Linformer
#
# > **Singular values, rank and the pseudo-inverse, in brief.** Every real $n \times p$ matrix can
# > be written $A = U \Sigma V^\top$, its singular value decomposition: $U$ and $V$ have orthonormal
# > columns and $\Sigma$ is diagonal, holding the **singular values** $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$.
# > So $A$ is a sum of pieces $\sigma_i u_i v_i^\top$, one per non-zero singular value; their
# > number is the **rank** of $A$, the number of independent rows (or columns). When the first few
# > $\sigma_i$ carry most of their sum, keeping only those pieces gives a close **low-rank**
# > approximation (the closest of that rank, by the Eckart–Young theorem). The **Moore–Penrose
# > pseudo-inverse** $A^+ = V \Sigma^+ U^\top$ inverts the non-zero singular values and leaves the
# > zeros at zero: every matrix has one, square or not, singular or not; it is $A^{-1}$ when $A$ is
# > invertible, and always $A A^+ A = A$. Section 6 needs it for a matrix that may be nearly
# > singular. A rank-1 matrix $u v^\top$, every row a multiple of $v$:

# %% [markdown] tags=["lang-zh"]
# ## 5. 低秩：Linformer
#
# > **奇异值、秩与伪逆，简要说明。** 任何 $n \times p$ 的实矩阵都可以写成 $A = U \Sigma V^\top$，即它的奇异值分解。其中 $U$ 和 $V$ 的列是标准正交的，$\Sigma$ 是对角矩阵，对角线上是**奇异值** $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$。于是 $A$ 是若干个 $\sigma_i u_i v_i^\top$ 之和，每个非零奇异值对应一项；项数就是 $A$ 的**秩**，即线性无关的行（或列）的个数。如果前几个 $\sigma_i$ 占了奇异值之和的大部分，只保留这几项就得到一个很接近的**低秩**近似（由 Eckart–Young 定理，它是该秩下最接近的）。**Moore–Penrose 伪逆** $A^+ = V \Sigma^+ U^\top$ 把非零奇异值取倒数、零仍然保持为零：每个矩阵都有伪逆，无论是不是方阵、是否奇异；$A$ 可逆时它就是 $A^{-1}$，并且总有 $A A^+ A = A$。第 6 节要对一个可能接近奇异的矩阵用到它。下面是一个秩为 1 的矩阵 $u v^\top$，每一行都是 $v$ 的倍数：

# %%
u, v_ = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64), torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
A1 = torch.outer(u, v_)  # (3, 3): row i is u_i v^T
print(t("ch09.svd_box", sv=", ".join(f"{x:.3f}" for x in torch.linalg.svdvals(A1)), r=int(torch.linalg.matrix_rank(A1)),
        ok=torch.allclose(A1 @ torch.linalg.pinv(A1) @ A1, A1)))

# %% [markdown] tags=["lang-en"]
# One non-zero singular value, $\|u\|\,\|v\|$; the other two are zero, and the pseudo-inverse still
# exists where the inverse does not.
#
# Wang et al. (2020) observe that trained attention matrices are close to low rank: a few
# singular values carry most of their spectrum (their Figure 1). If so, the $N$ keys and values
# can be projected down to $k \ll N$ rows with matrices $E, F$ (eq. 7):
#
# $$\mathrm{head} = \mathrm{softmax}\!\left(\frac{Q (E^\top K)^\top}{\sqrt d}\right) F^\top V,
# \qquad E, F \in \mathbb R^{N \times k},$$
#
# an $N \times k$ score matrix instead of $N \times N$. (The paper writes $E_i K$ and $F_i V$, so
# its $E_i, F_i$ are $k \times n$; attnkit stores their transposes, $N \times k$.) How low-rank is
# a softmax attention matrix that nobody trained? The share of the singular values' sum carried by
# the largest 128 of 512, and by the largest 65, for random $q, k$ with $d = 64$ at three input
# scales:

# %% [markdown] tags=["lang-zh"]
# 只有一个非零奇异值，等于 $\|u\|\,\|v\|$；另外两个为零。逆矩阵不存在，伪逆仍然存在。
#
# Wang 等（2020）观察到，训练好的注意力矩阵接近低秩：少数几个奇异值就占了谱的大部分（论文图 1）。如果是这样，就可以用矩阵 $E, F$ 把 $N$ 个键和值投影成 $k \ll N$ 行（式 7）：
#
# $$\mathrm{head} = \mathrm{softmax}\!\left(\frac{Q (E^\top K)^\top}{\sqrt d}\right) F^\top V,
# \qquad E, F \in \mathbb R^{N \times k},$$
#
# 分数矩阵只有 $N \times k$，而不是 $N \times N$。（论文写的是 $E_i K$ 和 $F_i V$，所以论文中的 $E_i, F_i$ 是 $k \times n$ 的；attnkit 存的是它们的转置，即 $N \times k$。）那么，一个没有经过训练的 softmax 注意力矩阵有多接近低秩？对 $d = 64$ 的随机 $q, k$，在三种输入尺度下，看 512 个奇异值中最大的 128 个、以及最大的 65 个占奇异值之和的比例：

# %% alt="ch09.alt.spectrum"
spectra = {s: wl.attention_spectrum(512, 64, s) for s in (0.5, 1.0, 3.0)}
for s, c in spectra.items():
    print(t("ch09.spectrum", s=s, share=c[127].item(), half=int((c < 0.5).sum()) + 1))
for s, c in spectra.items():  # the knee: 1 + d = 65 singular values, then a slow climb
    print(t("ch09.spectrum_knee", s=s, k=65, share=c[64].item(), more=(c[129] - c[64]).item()))
_ = wl.spectrum_figure(spectra, 512)

# %% [markdown] tags=["lang-en"]
# Random attention is *not* very low-rank — the sharper the softmax (larger scale), the flatter
# the spectrum. The curves bend at $65 = 1 + d$ singular values, sharply at scale 0.5 (the next 65
# add little): the score matrix $QK^\top/\sqrt d$ has rank at most $d = 64$, and for small scores
# $e^s \approx 1 + s$, so the attention matrix is close to (a matrix of ones plus the scores)
# divided by its row sums, of rank at most $1 + d$. The singular values past the knee come from
# $s^2/2, s^3/6, \dots$; they grow with the scale, and the knee fades into a flatter curve.
#
# What the paper proves is something else. **Theorem 1** (self-attention is low rank): for the
# attention matrix $P$ and any column $w$ of $V$, some $\tilde P$ of rank $\Theta(\log n)$ has
# $\|\tilde P w - P w\| < \epsilon \|P w\|$ with high probability. The proof takes
# $\tilde P = P R^\top R$, $R$ a $k \times n$ Johnson–Lindenstrauss projection with
# $\mathcal N(0, 1/k)$ entries: it holds for every attention matrix, trained or not, one vector at a
# time, with a rank that grows like $\log(n)/\epsilon^2$ — and $\tilde P$ is built from $P$ itself,
# so it saves no work. **Theorem 2** (linear self-attention): for
# $k = \min\{\Theta(9 d \log d/\epsilon^2), 5\Theta(\log n/\epsilon^2)\}$ there are projections
# $E_i, F_i$ with which each row of $\mathrm{softmax}(w E_i^\top) F_i V$ is within
# $\epsilon\,\|\mathrm{softmax}(w)\|\,\|V\|$ of $\mathrm{softmax}(w) V$, with high probability. Its
# proof draws them at random: $E_i = \delta R$ and $F_i = e^{-\delta} R$, with $R$ a $k \times n$
# matrix of i.i.d. $\mathcal N(0, 1/k)$ entries and $\delta$ a small constant.
#
# **In practice** Linformer learns $E$ and $F$ with the rest of the model (shared between heads,
# between keys and values, or between layers), and the paper names pooling or a strided
# convolution as other projections. The demo below is neither the theorem's construction nor a
# trained projection: its random $E = F$ has $\mathcal N(0, 1/k)$ entries but no $\delta$, is one
# matrix for keys and values alike, and $k = 128$ is far below the theorem's $k$ for a small
# $\epsilon$. It shows what an arbitrary random projection does to a softmax over mixed keys. A
# fixed projection that matches the inputs — averaging 4 neighbouring tokens, the pooling the
# paper mentions, on inputs that vary slowly along the sequence — does much better:

# %% [markdown] tags=["lang-zh"]
# 随机的注意力矩阵*并不*怎么低秩——softmax 越尖锐（尺度越大），谱越平坦。曲线在 $65 = 1 + d$ 个奇异值处拐弯，尺度为 0.5 时拐得很明显（接下来的 65 个只再增加一点）。原因是：分数矩阵 $QK^\top/\sqrt d$ 的秩至多为 $d = 64$；而分数较小时 $e^s \approx 1 + s$，所以注意力矩阵接近于（全 1 矩阵加上分数矩阵）再除以各行之和，其秩至多为 $1 + d$。拐点之后的奇异值来自 $s^2/2, s^3/6, \dots$ 这些项；它们随尺度增大而变大，拐点也就淡化成一条更平坦的曲线。
#
# 论文证明的是另一回事。**定理 1**（自注意力是低秩的）：对注意力矩阵 $P$ 和 $V$ 的任意一列 $w$，存在秩为 $\Theta(\log n)$ 的 $\tilde P$；以很高的概率，它满足 $\|\tilde P w - P w\| < \epsilon \|P w\|$。证明取 $\tilde P = P R^\top R$。其中 $R$ 是 $k \times n$ 的 Johnson–Lindenstrauss 投影，元素服从 $\mathcal N(0, 1/k)$。这对每个注意力矩阵都成立（不论训练与否），但一次只针对一个向量，秩按 $\log(n)/\epsilon^2$ 增长；而且 $\tilde P$ 是由 $P$ 本身构造的，所以省不下任何计算。**定理 2**（线性自注意力）：取 $k = \min\{\Theta(9 d \log d/\epsilon^2), 5\Theta(\log n/\epsilon^2)\}$，存在投影 $E_i, F_i$；用它们算出 $\mathrm{softmax}(w E_i^\top) F_i V$；以很高的概率，它的每一行与 $\mathrm{softmax}(w) V$ 相差不超过 $\epsilon\,\|\mathrm{softmax}(w)\|\,\|V\|$。它的证明随机地构造投影：$E_i = \delta R$，$F_i = e^{-\delta} R$。其中 $R$ 是元素独立服从 $\mathcal N(0, 1/k)$ 的 $k \times n$ 矩阵，$\delta$ 是一个小常数。
#
# **实践中**，Linformer 让 $E$ 和 $F$ 与模型的其余部分一起学习（可以在头之间、键和值之间或层之间共享），论文还提到可以用池化或带步长的卷积作为投影。下面的演示既不是定理中的构造，也不是训练出来的投影。其中随机的 $E = F$ 元素服从 $\mathcal N(0, 1/k)$，但没有 $\delta$，键和值共用同一个矩阵；而且对较小的 $\epsilon$ 而言，$k = 128$ 远小于定理要求的 $k$。它展示的是一个任意的随机投影对混合后的键做 softmax 会怎样。一个与输入相匹配的固定投影——把相邻的 4 个词元取平均，也就是论文提到的池化，输入则沿序列缓慢变化——效果要好得多：

# %%
n, kk = 512, 128
qs, ks, vs = wl.smooth_qkv(n, 32)
qr, kr, vr = wl.noise_qkv(n, 32)
g = torch.Generator().manual_seed(0)
E_random = torch.randn(n, kk, generator=g, dtype=torch.float64) / math.sqrt(kk)
E_pool = torch.zeros(n, kk, dtype=torch.float64)
E_pool[torch.arange(n), torch.arange(n) // (n // kk)] = kk / n  # mean of 4 neighbours


def rel_error(out, ref):
    return ((out - ref).norm() / ref.norm()).item()


for name, (qq, kq, vq) in ((t("ch09.inputs.noise"), (qr, kr, vr)), (t("ch09.inputs.smooth"), (qs, ks, vs))):
    ref = L.softmax_attention(qq, kq, vq)
    print(t("ch09.linformer_error", inputs=name,
            random=rel_error(L.linformer_attention(qq, kq, vq, E_random, E_random), ref),
            pool=rel_error(L.linformer_attention(qq, kq, vq, E_pool, E_pool), ref)))

# %% [markdown] tags=["lang-en"]
# The module `attnkit.linear.LinformerAttention(embed_dim, num_heads, seq_len, k, share=...)`
# holds learned $E, F$: one pair per head (`share="none"`), one pair for all heads
# (`"headwise"`), or one matrix for both keys and values (`"kv"`); passing the same parameter to
# several layers shares it layer-wise (the paper's section 4). It cannot be causal: every
# projected row mixes all positions, future ones included.

# %% [markdown] tags=["lang-zh"]
# 模块 `attnkit.linear.LinformerAttention(embed_dim, num_heads, seq_len, k, share=...)` 保存学到的 $E, F$：可以每个头一对（`share="none"`）、所有头共用一对（`"headwise"`），或者键和值共用同一个矩阵（`"kv"`）；把同一个参数传给多个层，就实现了跨层共享（论文第 4 节）。它不能做因果注意力：投影后的每一行都混合了所有位置，包括未来的位置。

# %% [markdown] tags=["lang-en"]
# ## 6. Landmarks: Nyströmformer
#
# The Nyström method approximates a large matrix from a few of its rows and columns. Xiong et al.
# (2021) pick $m$ **landmarks**: $\tilde Q, \tilde K$ are the means of $m$ consecutive segments of
# the queries and keys (section 3.3), and (eq. 13)
#
# $$\mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt d}\right) V \approx
# \underbrace{\mathrm{softmax}\!\left(\tfrac{Q\tilde K^\top}{\sqrt d}\right)}_{N \times m}
# \underbrace{\mathrm{softmax}\!\left(\tfrac{\tilde Q\tilde K^\top}{\sqrt d}\right)^{+}}_{m \times m}
# \underbrace{\mathrm{softmax}\!\left(\tfrac{\tilde Q K^\top}{\sqrt d}\right)}_{m \times N} V.$$
#
# The Moore–Penrose pseudo-inverse $A^+$ of the middle matrix is computed by an iteration that
# needs only matrix products (eq. 14, from Razavi et al. 2014): $Z_0 = A^\top / (\|A\|_1 \|A\|_\infty)$, then
# $Z \leftarrow \tfrac14 Z\,(13I - AZ(15I - AZ(7I - AZ)))$, six times. $\|A\|_1$ is the largest
# column sum and $\|A\|_\infty$ the largest row sum, both taken over *that* matrix; the official
# code takes one maximum over the whole batch and all heads, which makes each head's result depend
# on the others — attnkit takes it per matrix. When $m$ does not divide $N$, attnkit pads the end
# with zero rows, and each mean is taken over the segment's real tokens only (a segment that would
# hold only padding is refused).
#
# With $m = N$ every token is its own landmark, the three matrices are the same $A$, and
# $A A^+ A = A$: the exact softmax attention. The iteration gets there only with enough steps:

# %% [markdown] tags=["lang-zh"]
# ## 6. 地标点：Nyströmformer
#
# Nyström 方法用一个大矩阵的少数几行几列来近似它。Xiong 等（2021）选取 $m$ 个**地标点**。$\tilde Q, \tilde K$ 是把查询和键分成 $m$ 个连续分段后各段的均值（第 3.3 节），并且（式 13）
#
# $$\mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt d}\right) V \approx
# \underbrace{\mathrm{softmax}\!\left(\tfrac{Q\tilde K^\top}{\sqrt d}\right)}_{N \times m}
# \underbrace{\mathrm{softmax}\!\left(\tfrac{\tilde Q\tilde K^\top}{\sqrt d}\right)^{+}}_{m \times m}
# \underbrace{\mathrm{softmax}\!\left(\tfrac{\tilde Q K^\top}{\sqrt d}\right)}_{m \times N} V.$$
#
# 中间矩阵的 Moore–Penrose 伪逆 $A^+$ 用一个只需矩阵乘法的迭代来计算（式 14，出自 Razavi 等，2014）。初值为 $Z_0 = A^\top / (\|A\|_1 \|A\|_\infty)$；然后按 $Z \leftarrow \tfrac14 Z\,(13I - AZ(15I - AZ(7I - AZ)))$ 迭代六次。$\|A\|_1$ 是最大的列和，$\|A\|_\infty$ 是最大的行和，两者都只在*这一个*矩阵上取；官方代码对整个批次和所有头取同一个最大值，于是每个头的结果都依赖于其他头——attnkit 对每个矩阵分别取。当 $m$ 不能整除 $N$ 时，attnkit 在序列末尾补零行，每个均值只对分段中真实的词元求平均（如果某一段全是补上的零，就报错拒绝）。
#
# 当 $m = N$ 时，每个词元都是自己的地标点，三个矩阵都是同一个 $A$，而 $A A^+ A = A$：这就是精确的 softmax 注意力。迭代法则要迭代足够多次才能做到：

# %%
qn, kn, vn = torch.randn(64, 16, dtype=torch.float64), torch.randn(64, 16, dtype=torch.float64), torch.randn(64, 8, dtype=torch.float64)
ref = F.scaled_dot_product_attention(qn, kn, vn)
print(t("ch09.nystrom_full", how=t("ch09.exact_pinv"),
        err=bound(rel_error(L.nystrom_attention(qn, kn, vn, 64, exact_pinv=True), ref), 1e-12)))
print(t("ch09.nystrom_full", how=t("ch09.iterations", n=6),
        err=f"{rel_error(L.nystrom_attention(qn, kn, vn, 64, pinv_iterations=6), ref):.3f}"))
print(t("ch09.nystrom_full", how=t("ch09.iterations", n=20),
        err=bound(rel_error(L.nystrom_attention(qn, kn, vn, 64, pinv_iterations=20), ref), 1e-12)))

# %% [markdown] tags=["lang-en"]
# With fewer landmarks, the approximation is only as good as the landmarks are representative.
# On inputs that vary slowly along the sequence, neighbouring tokens are alike and a segment mean
# stands for its segment; on i.i.d. noise a segment mean stands for nothing. The relative error
# of the output for $N = 256$, $d = 32$, with the exact pseudo-inverse and with six iterations:

# %% [markdown] tags=["lang-zh"]
# 地标点更少时，近似的好坏取决于地标点有多大的代表性。在沿序列缓慢变化的输入上，相邻的词元彼此相似，一个分段的均值足以代表这一段；在独立同分布的噪声上，分段均值什么也代表不了。取 $N = 256$、$d = 32$，分别用精确伪逆和迭代六次，输出的相对误差如下：

# %% alt="ch09.alt.nystrom"
ms = (4, 8, 16, 32, 64)
qs, ks, vs = wl.smooth_qkv(256, 32)
qr, kr, vr = wl.noise_qkv(256, 32)
curves = {}
for inputs, (qq, kq, vq) in (("smooth", (qs, ks, vs)), ("noise", (qr, kr, vr))):
    for pinv, its in (("exact_pinv", None), ("iter_pinv", 6)):
        label = t("ch09.fig.curve", inputs=t(f"ch09.fig.{inputs}"), pinv=t(f"ch09.fig.{pinv}", n=6) if its else t("ch09.fig.exact_pinv"))
        curves[label] = wl.nystrom_errors(qq, kq, vq, ms, its)
print(viz.format_table([t("ch09.col.curve")] + [f"m = {m}" for m in ms],  # two decimals from 1 up, one from 10 up
                       [[label] + [f"{e:.1f}" if e >= 10 else f"{e:.2f}" if e >= 1 else f"{e:.4f}" for e in errs]
                        for label, errs in curves.items()]))
_ = wl.nystrom_figure(ms, curves, 256)

# %% [markdown] tags=["lang-en"]
# On smooth inputs, the exact pseudo-inverse drives the error down fast once there are enough
# landmarks, while six iterations level off: the iteration has not converged, and its remaining
# error sets a floor. With very few landmarks the exact pseudo-inverse of a nearly singular
# $m \times m$ matrix amplifies every small error, and there the iteration — which never gets far
# from its well-scaled start — is the safer of the two. On noise, no number of landmarks below $N$
# helps much, and the exact pseudo-inverse makes things worse. Nyströmformer's official code also
# adds a depthwise convolution of $V$ to the output, a residual that hides part of this error;
# attnkit offers it as an option (`NystromAttention(..., residual_conv_kernel=33)`), off by default,
# so what you measure is the approximation itself.

# %% [markdown] tags=["lang-zh"]
# 在平滑输入上，一旦地标点足够多，精确伪逆会让误差迅速下降，而迭代六次的误差则趋于平稳：迭代还没有收敛，剩下的误差构成了一个下限。地标点非常少时，对一个接近奇异的 $m \times m$ 矩阵求精确伪逆，会把每个小误差都放大；这时迭代法——它永远不会离尺度良好的初始值太远——反而是两者中更稳妥的。在噪声输入上，只要地标点少于 $N$，再多也帮不了多少，精确伪逆还会让结果更糟。Nyströmformer 的官方代码还会在输出上加一个对 $V$ 的逐通道（depthwise）卷积，这个残差项掩盖了一部分误差；attnkit 把它作为可选项提供（`NystromAttention(..., residual_conv_kernel=33)`），默认关闭，这样你测到的就是近似本身的误差。

# %% [markdown] tags=["lang-en"]
# ## 7. cosFormer and efficient attention
#
# cosFormer (Qin et al. 2022) keeps ReLU features and adds a locality bias: pairs far apart count
# less, through $\mathrm{sim}(q_i, k_j) = \mathrm{ReLU}(q_i)^\top\mathrm{ReLU}(k_j)\,\cos\!\big(\tfrac{\pi}{2}\tfrac{i-j}{M}\big)$.
# That looks like it needs every pair $(i, j)$ again, but $\cos(a - b) = \cos a\cos b + \sin a \sin b$
# splits it into two linear attentions, with features $\mathrm{ReLU}(x_i)\cos\tfrac{\pi i}{2M}$ and
# $\mathrm{ReLU}(x_i)\sin\tfrac{\pi i}{2M}$ (eqs. 10–12). Positions run from 1, as in the official
# code. Without a mask $M = \max(N_q, N_k)$. With a causal mask $M$ must be fixed in advance
# (`max_len`): if $M$ grew with the sequence, the weight between two early tokens would change
# when a later token arrives. Checked against the explicit $N \times N$ form, then the causal claim
# as a dependence: new values for the later tokens leave the earlier outputs exactly as they were,
# and the gradient of the earlier outputs with respect to the later tokens is exactly zero:

# %% [markdown] tags=["lang-zh"]
# ## 7. cosFormer 与高效注意力
#
# cosFormer（Qin 等，2022）沿用 ReLU 特征，再加上一个局部性偏置：相距越远的两个位置权重越小，即
# $\mathrm{sim}(q_i, k_j) = \mathrm{ReLU}(q_i)^\top\mathrm{ReLU}(k_j)\,\cos\!\big(\tfrac{\pi}{2}\tfrac{i-j}{M}\big)$。这看起来又需要逐对计算 $(i, j)$，但 $\cos(a - b) = \cos a\cos b + \sin a \sin b$ 把它拆成了两个线性注意力。第一个的特征是 $\mathrm{ReLU}(x_i)\cos\tfrac{\pi i}{2M}$；第二个的特征是 $\mathrm{ReLU}(x_i)\sin\tfrac{\pi i}{2M}$（式 10–12）。与官方代码一样，位置从 1 开始编号。没有掩码时 $M = \max(N_q, N_k)$。有因果掩码时 $M$ 必须事先固定（`max_len`）：如果 $M$ 随序列变长，那么一个较晚的词元到来时，两个较早词元之间的权重就会改变。下面先与显式的 $N \times N$ 形式比较，再把因果性当作依赖关系来检查：给后面的词元换上新的值，前面的输出一位不变；前面的输出对后面词元的梯度恰好为零：

# %%
qc, kc, vc = torch.randn(1, 40, 8), torch.randn(1, 40, 8), torch.randn(1, 40, 4)
for causal in (False, True):
    M = 64 if causal else 40
    Ac = (F.relu(qc) @ F.relu(kc).transpose(-2, -1)) * L.cosformer_weights(40, 40, M).float()
    if causal:
        Ac = Ac.tril()
    out = L.cosformer_attention(qc, kc, vc, causal=causal, max_len=64 if causal else None)
    print(t("ch09.cos_explicit", causal=causal, ok=torch.allclose(out, (Ac @ vc) / Ac.sum(-1, keepdim=True), atol=1e-5)))
qc2, kc2, vc2 = (torch.cat([x[:, :25], torch.randn_like(x[:, 25:])], dim=1) for x in (qc, kc, vc))  # new last 15
first = L.cosformer_attention(qc, kc, vc, causal=True, max_len=64)[:, :25]
later = [x.clone().requires_grad_() for x in (qc, kc, vc)]
L.cosformer_attention(*later, causal=True, max_len=64)[:, :25].sum().backward()
print(t("ch09.cos_prefix", ok=torch.equal(first, L.cosformer_attention(qc2, kc2, vc2, causal=True, max_len=64)[:, :25]),
        grad=all(bool((x.grad[:, 25:] == 0).all()) for x in later)))

# %% [markdown] tags=["lang-en"]
# Shen et al.'s **efficient attention** (2021) is another linear form:
# $\mathrm{softmax}_{\text{features}}(Q)\,\big(\mathrm{softmax}_{\text{sequence}}(K)^\top V\big)$.
# Its key map is a softmax *over the sequence*, so it is not a per-token feature map (adding a
# token changes every key's weights) and it has no causal form; attnkit gives it its own function:

# %% [markdown] tags=["lang-zh"]
# Shen 等（2021）提出的**高效注意力**（efficient attention）是另一种线性形式。公式为 $\mathrm{softmax}_{\text{特征}}(Q)\,\big(\mathrm{softmax}_{\text{序列}}(K)^\top V\big)$。它对键的映射是*沿序列*做 softmax，所以不是逐词元的特征映射（多一个词元，所有键的权重都会变），也没有因果形式；attnkit 为它单独提供了一个函数：

# %%
explicit = torch.softmax(qc, -1) @ torch.softmax(kc, -2).transpose(-2, -1)  # (N, N), for checking only
print(t("ch09.eq_quadratic", ok=torch.allclose(L.efficient_attention(qc, kc, vc), explicit @ vc, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# ## 8. What it costs, measured
#
# For one head of width $d$ and $N$ tokens (multiply-adds counted as 2 FLOPs): softmax attention
# needs $4N^2 d$ FLOPs and an $N \times N$ score matrix. Kernel linear attention needs about
# $4Nd^2$ and a $d \times d$ state; the Performer about $4Nmd + 4Nmd$ for $m$ features; Linformer
# about $8Nkd$ and an $N \times k$ matrix; Nyströmformer about $8Nmd$ plus $O(m^3)$ for the
# pseudo-inverse and two $N \times m$ matrices; cosFormer is linear attention with $2d$ features.
# `attnkit.linear.attention_cost` has the formulas; at $N = 4096$, $d = 64$:

# %% [markdown] tags=["lang-zh"]
# ## 8. 开销：实测
#
# 对宽度为 $d$ 的单个头、$N$ 个词元（一次乘加算 2 次浮点运算）：softmax 注意力需要 $4N^2 d$ 次浮点运算和一个 $N \times N$ 的分数矩阵。核函数线性注意力大约需要 $4Nd^2$ 次和一个 $d \times d$ 的状态；有 $m$ 个特征的 Performer 大约需要 $4Nmd + 4Nmd$ 次；Linformer 大约需要 $8Nkd$ 次和一个 $N \times k$ 的矩阵；Nyströmformer 大约需要 $8Nmd$ 次，外加伪逆的 $O(m^3)$ 和两个 $N \times m$ 的矩阵；cosFormer 则是特征数为 $2d$ 的线性注意力。`attnkit.linear.attention_cost` 给出了这些公式；取 $N = 4096$、$d = 64$：

# %%
N_COST, D_COST = 4096, 64
PARAMS = {"softmax": None, "linear": None, "performer": 256, "linformer": 256, "nystrom": 64, "cosformer": None}
rows = []
for method, m in PARAMS.items():
    c = L.attention_cost(method, N_COST, D_COST, m=m)
    rows.append([t(f"ch09.method.{method}"), "-" if m is None else m, f"{c['flops'] / 1e9:.3f}",
                 f"{c['extra_bytes'] / 2**20:.2f}", "-" if c["state_bytes"] is None else f"{c['state_bytes'] / 2**10:.1f}"])
print(viz.format_table([t("ch09.col.method"), "m / k", t("ch09.col.gflops"), t("ch09.col.extra_mib"),
                        t("ch09.col.state_kib")], rows))

# %% [markdown] tags=["lang-en"]
# FLOPs are not time. The next cell times every method against PyTorch's fused SDPA for one head
# of width 64, not causal, at $N$ = 256, 1024 and 4096 (one thread, round-robin, medians), plus
# the causal pair: chunked causal linear attention against SDPA with `is_causal=True`. A
# crossover is printed only with a margin that load does not flip: the first measured $N$ from
# which on the method's *slowest* round beats SDPA's *fastest*, with both medians and their ranges
# beside it. A comparison of medians alone can move from the longest measured $N$ to the shortest
# when the machine is busy; with this rule a busy machine prints "no length" rather than a wrong one. Run it on your machine
# and it may move. (The benchmark `benchmarks/bench_linear.py` goes to 16k tokens.)

# %% [markdown] tags=["lang-zh"]
# 浮点运算次数并不等于时间。下一个单元格在 $N$ = 256、1024 和 4096 时，把每种方法与 PyTorch 的融合 SDPA 对比计时。计时用宽度为 64 的单个头，不带因果掩码，单线程、轮流计时、取中位数。另外再比较一对因果版本：分段计算的因果线性注意力与 `is_causal=True` 的 SDPA。交叉点只在负载改变不了结论时才打印：从某个实测的 $N$ 起，该方法*最慢*的一轮也比 SDPA *最快*的一轮快，旁边给出两者的中位数和范围。只比较中位数的话，机器繁忙时交叉点可能从实测的最长的 $N$ 移到最短的 $N$；按这条规则，繁忙的机器会打印“找不到这样的长度”，而不是一个错的长度。在你的机器上运行，它可能会变。（基准脚本 `benchmarks/bench_linear.py` 会测到 16k 个词元。）

# %%
def methods(n, d=64):
    """name -> a function of (q, k, v) for one head (1, 1, n, d); Linformer gets fixed E, F."""
    E = torch.randn(n, min(256, n)) / 16
    w = L.orthogonal_random_features(256, d, seed=0)
    return {
        "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        "softmax": lambda q, k, v: L.softmax_attention(q, k, v),
        "linear": lambda q, k, v: L.linear_attention(q, k, v),
        "performer": lambda q, k, v: L.performer_attention(q, k, v, w),
        "linformer": lambda q, k, v: L.linformer_attention(q, k, v, E, E),
        "nystrom": lambda q, k, v: L.nystrom_attention(q, k, v, 64),
        "cosformer": lambda q, k, v: L.cosformer_attention(q, k, v),
        "sdpa_causal": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "linear_causal": lambda q, k, v: L.linear_attention(q, k, v, causal=True),
    }


NS = (256, 1024, 4096)
inputs = {n: tuple(torch.randn(1, 1, n, 64) for _ in range(3)) for n in NS}

# %% tags=["nbval-ignore-output"] alt="ch09.alt.times"
times, runs = {}, {}
with one_thread():
    for n in NS:
        fns = methods(n)
        rounds = round_robin_times({name: (lambda f=f: f(*inputs[n])) for name, f in fns.items()}, repeats=3)
        runs[n] = {name: sorted(s * 1e3 for s in ts) for name, ts in rounds.items()}  # ms, fastest first
        times[n] = {name: ts[len(ts) // 2] for name, ts in runs[n].items()}  # the median
names = list(methods(256))
print(viz.format_table([t("ch09.col.method")] + [t("ch09.col.n_ms", n=n) for n in NS],
                       [[t(f"ch09.method.{name}")] + [f"{times[n][name]:.2f}" for n in NS] for name in names]))
for name in names:
    if name in ("sdpa", "sdpa_causal"):
        continue
    base = "sdpa_causal" if name.endswith("_causal") else "sdpa"
    clear = [runs[n][name][-1] < runs[n][base][0] for n in NS]  # its slowest round beats SDPA's fastest
    first = next((n for i, n in enumerate(NS) if all(clear[i:])), None)  # and so at every longer N
    if first is None:
        print(t("ch09.no_crossover_spread", method=t(f"ch09.method.{name}"), n=NS[-1]))
        continue
    a, b = runs[first][name], runs[first][base]
    print(t("ch09.crossover_spread", method=t(f"ch09.method.{name}"), n=first, a=times[first][name], a0=a[0],
            a1=a[-1], b=times[first][base], b0=b[0], b1=b[-1]))
_ = wl.time_figure(NS, {t(f"ch09.method.{name}"): [times[n][name] for n in NS] for name in names}, d=64)

# %% [markdown] tags=["lang-en"]
# Memory is measured the same way for every method, with chapter 07's `measure_peak_bytes`: the
# largest running sum of the bytes torch's allocator hands out and takes back during the call.
# The softmax row is the math path (`softmax_attention`, which builds the $N \times N$ matrix).
# These numbers do not depend on the machine, so the tests compare them:

# %% [markdown] tags=["lang-zh"]
# 内存对每种方法都用同样的方式测量，即第 7 章的 `measure_peak_bytes`：调用期间 torch 的内存分配器分配与释放的字节数，其累计值的最大处。softmax 这一行测的是数学路径（`softmax_attention`，它会构造 $N \times N$ 的矩阵）。这些数字与机器无关，所以测试会比对它们：

# %%
rows = []
for name in names:
    if name in ("sdpa", "sdpa_causal"):
        continue
    peaks = [measure_peak_bytes(methods(n)[name], *inputs[n])[1] / 2**20 for n in NS]
    rows.append([t(f"ch09.method.{name}")] + [f"{p:.2f}" for p in peaks] + [f"{peaks[-1] / peaks[-2]:.1f}"])
print(viz.format_table([t("ch09.col.method")] + [t("ch09.col.n_mib", n=n) for n in NS] + [t("ch09.col.growth")], rows))

# %% [markdown] tags=["lang-en"]
# The last column is the growth from $N = 1024$ to $4096$: about 16× for the math path (the
# $N \times N$ matrix), about 4× — linear — for the others.

# %% [markdown] tags=["lang-zh"]
# 最后一列是从 $N = 1024$ 到 $4096$ 的增长倍数：数学路径约为 16 倍（$N \times N$ 的矩阵），其余方法约为 4 倍——线性增长。

# %% [markdown] tags=["lang-en"]
# ## 9. Pitfalls
#
# **Exponential features in half precision.** float16's range is small: $e^x$ overflows to
# `inf` for quite moderate $x$, and is rounded to zero for moderately negative $x$ (the
# thresholds are printed below). The trig map multiplies by $e^{\|x\|^2/2}$: with queries a few
# times larger than unit variance it overflows, and `inf / inf` is NaN. The positive map
# $e^{w^\top x - \|x\|^2/2}$ can *underflow* in every feature of a token, and then the
# denominator is $0$. The max-subtraction stabiliser subtracts a largest exponent before `exp`,
# which keeps the positive features in $(0, 1]$. (The trig features, their common factor
# $e^{\|x\|^2/2}$ set aside, are cosines and sines, in $[-1, 1]$ anyway: what overflows is that
# factor, and the same rule applies to it.) Here each token subtracts its own maximum
# (`stabilise=True`), which is right for these tokens *as queries*:

# %% [markdown] tags=["lang-zh"]
# ## 9. 常见陷阱
#
# **半精度下的指数特征。** float16 的表示范围很小：$x$ 并不算大时 $e^x$ 就会溢出成 `inf`，$x$ 是不太大的负数时 $e^x$ 就会被舍入为零（阈值见下面的输出）。三角函数特征映射要乘以 $e^{\|x\|^2/2}$：查询比单位方差大几倍时，它就会溢出，而 `inf / inf` 是 NaN。正随机特征 $e^{w^\top x - \|x\|^2/2}$ 则可能让某个词元的所有特征都*下溢*为零，这时分母就是 $0$。减最大值的稳定化技巧在取 `exp` 之前减去一个最大的指数，让正随机特征落在 $(0, 1]$ 之内。（三角函数特征撇开公共因子 $e^{\|x\|^2/2}$ 之后就是余弦和正弦，本来就在 $[-1, 1]$ 之内：会溢出的是这个因子，对它适用同样的规则。）这里每个词元减去自己的最大值（`stabilise=True`），把这些词元*当作查询*时这样做是对的：

# %%
fi = torch.finfo(torch.float16)
print(t("ch09.half_limits", big=fi.max, over=math.log(fi.max), under=math.log(fi.tiny), zero=math.log(2.0**-25)))
wh = L.orthogonal_random_features(64, 64, seed=0).half()
xh = (4 * torch.randn(8, 64) / 64 ** 0.25).half()  # queries of standard deviation 4, scaled by d^-1/4
for kind in ("trig", "positive"):
    raw = L.favor_features(xh, wh, kind)
    a = raw @ raw.T
    row = a / a.sum(-1, keepdim=True)
    stab = L.favor_features(xh, wh, kind, stabilise=True)
    print(t("ch09.half_nan", kind=t(f"ch09.kind.{kind}"), inf=raw.isinf().any().item(),
            zero_rows=int((raw == 0).all(-1).sum()), nan=row.isnan().any().item(),
            stab_ok=bool(torch.isfinite(stab).all() and (stab.abs().amax(-1) > 0).all())))

# %% [markdown] tags=["lang-en"]
# A per-token factor cancels only for queries. Query $i$'s factor $e^{-c_i}$ multiplies row $i$ of
# the kernel matrix, numerator and denominator alike, and the row's normalisation removes it. Key
# $j$'s factor multiplies column $j$: it changes the weight of key $j$ against every other key, in
# every row. Keys need one maximum shared by every key a query sees — all the keys, or in causal
# mode the keys up to the query (the running maximum of the next pitfall but one); attnkit's
# `performer_attention` never takes a maximum per key. Measured in float64 on 8 queries and 8 keys
# of standard deviation 4, against the weights computed without any stabiliser:

# %% [markdown] tags=["lang-zh"]
# 逐词元的因子只对查询才会约掉。查询 $i$ 的因子 $e^{-c_i}$ 乘在核矩阵的第 $i$ 行上，分子分母同时乘，行的归一化会把它消去。键 $j$ 的因子乘在第 $j$ 列上：它改变了键 $j$ 相对于其他所有键的权重，而且每一行都受影响。键需要一个由查询看到的所有键共用的最大值——不带掩码时取所有键，因果模式下取查询及之前的键（即下下个陷阱中的当前最大值）；attnkit 的 `performer_attention` 从不对单个键取最大值。下面在 float64 下用 8 个查询和 8 个标准差为 4 的键测量，与完全不做稳定化算出的权重比较：

# %%
gd = torch.Generator().manual_seed(9)
wd = L.orthogonal_random_features(64, 64, seed=0, dtype=torch.float64)
qd, kd = (4 * torch.randn(8, 64, generator=gd, dtype=torch.float64) / 64 ** 0.25 for _ in range(2))


def weights(fq, fk):  # (8, m) features of queries and keys -> (8, 8) attention weights
    a = fq @ fk.T
    return a / a.sum(-1, keepdim=True)


plain = weights(L.favor_features(qd, wd), L.favor_features(kd, wd))  # no stabiliser at all
fq_own, fk = L.favor_features(qd, wd, stabilise=True), L.favor_features(kd, wd)
for who, fk_ in (("queries", fk), ("keys", L.favor_features(kd, wd, stabilise=True)), ("shared", fk / fk.max())):
    moved = (weights(fq_own, fk_) - plain).abs().max().item()
    print(t("ch09.stab", who=t(f"ch09.stab.{who}"), x=f"{moved:.2f}" if who == "keys" else bound(moved, 1e-12)))

# %% [markdown] tags=["lang-en"]
# **A denominator near zero.** With ReLU features a query with no positive entry has
# $\phi(q) = 0$: numerator and denominator are both 0. With trig features the denominator can be
# any sign. attnkit floors the denominator at `eps` (`max(den, eps)`, default $10^{-6}$), so an
# all-zero row gives zeros, never NaN; adding `eps` instead (as some code does) would give the
# same here but changes every row slightly:

# %% [markdown] tags=["lang-zh"]
# **趋于零的分母。** 用 ReLU 特征时，一个没有正分量的查询满足 $\phi(q) = 0$：分子和分母都是 0。用三角函数特征时，分母可正可负。attnkit 把分母的下限设为 `eps`（`max(den, eps)`，默认 $10^{-6}$），于是全零的行得到的是零，而不是 NaN；如果改成把 `eps` 加到分母上（有些代码这样做），这里结果相同，但每一行都会被轻微改变：

# %%
qz, kz, vz = torch.randn(4, 8), torch.randn(6, 8), torch.randn(6, 3)
qz[0] = -qz[0].abs() - 0.1  # a query with no positive entry: relu(q_0) = 0
num, den = F.relu(qz) @ (F.relu(kz).T @ vz), F.relu(qz) @ F.relu(kz).sum(0)
print(t("ch09.zero_den", den=den[0].item(), naive=(num / den[:, None])[0].isnan().any().item(),
        floored=L.linear_attention(qz, kz, vz, "relu")[0].tolist()))

# %% [markdown] tags=["lang-en"]
# **A causal mode that peeks at the future.** The Performer stabiliser for keys is usually one
# maximum over *all* positions, and some code adds a small `eps` to every feature. Both are
# harmless without a mask. With a causal mask they are not: the maximum now depends on later keys,
# and with `eps` inside, rescaling the features changes their ratio to `eps` — so changing the
# *last* key changes *every* output. attnkit's causal mode uses only keys at or before each query: a
# running maximum, with the prefix sums rescaled whenever it grows (chapter 03's online softmax
# once more). Changing the last key, then measuring the largest change of the earlier rows
# relative to their largest value, against a tolerance of $10^{-5}$, far above float32 rounding
# (within a chunk the keys share one scale, which a later key of the chunk may raise; it cancels
# between numerator and denominator, so it reaches an earlier row only through rounding):

# %% [markdown] tags=["lang-zh"]
# **偷看未来的因果模式。** Performer 对键的稳定化通常是在*所有*位置上取一个最大值，有些代码还给每个特征加一个小的 `eps`。没有掩码时这两者都无害。有因果掩码时就不是了：最大值现在取决于后面的键；而特征里带着 `eps` 时，重新缩放特征会改变它们与 `eps` 的比例——于是改变*最后一个*键，会改变*每一个*输出。attnkit 的因果模式只用每个查询当前及之前的键：维护一个当前最大值，每当它变大时就重新缩放前缀和（又是第 3 章的在线 softmax）。同一段内的键共用一个缩放因子，段中较晚的键可能把它调大；这个因子在分子和分母中相互抵消，所以较晚的键只能通过舍入误差影响较早的行。下面改变最后一个键，测量前面各行的最大变化（相对于它们的最大值），并与远大于 float32 舍入误差的容差 $10^{-5}$ 比较：

# %%
qf, kf, vf = torch.randn(1, 1, 48, 16), torch.randn(1, 1, 48, 16), torch.randn(1, 1, 48, 8)
wf = L.orthogonal_random_features(32, 16, seed=3)
kf2 = kf.clone()
kf2[..., -1, :] = wf[wf.norm(dim=1).argmax()] * 16 ** 0.25  # a new last key with the largest exponent of all


def global_stabiliser(q, k, v, w, eps=1e-4):  # the common causal implementation, written out
    s = q.shape[-1] ** -0.25
    lq, lk = ((x * s) @ w.T - (x * s).pow(2).sum(-1, keepdim=True) / 2 for x in (q, k))
    fq, fk = torch.exp(lq - lq.amax(-1, keepdim=True)) + eps, torch.exp(lk - lk.amax()) + eps  # max over all keys
    a = torch.tril(fq @ fk.transpose(-2, -1))
    return (a @ v) / a.sum(-1, keepdim=True)


def change(f):  # max |a - b| / max |a| over the rows before the last
    a, b = f(qf, kf, vf, wf), f(qf, kf2, vf, wf)
    return max_rel_diff(b[..., :-1, :], a[..., :-1, :])


print(t("ch09.peek", name=t("ch09.peek_global"), x=bound(change(global_stabiliser), 1e-5)))
print(t("ch09.peek", name=t("ch09.peek_running"),
        x=bound(change(lambda q, k, v, w: L.performer_attention(q, k, v, w, causal=True)), 1e-5)))

# %% [markdown] tags=["lang-en"]
# **Redrawing random features between training and evaluation.** The random projection is part
# of the model: a layer trained with one draw computes a different function with another. Some
# implementations redraw the features every few steps of training (as a regulariser); whatever is
# done in training, evaluation must use the projection the weights were trained with, and a
# checkpoint must save it. `PerformerAttention` keeps it in a buffer (saved in the state dict,
# identical in `train()` and `eval()`), and redraws only when asked:

# %% [markdown] tags=["lang-zh"]
# **训练和评估之间重新抽取随机特征。** 随机投影是模型的一部分：用一组抽样训练出来的层，换一组抽样就成了另一个函数。有些实现在训练中每隔几步重新抽取特征（作为一种正则化）；不管训练时怎么做，评估时都必须使用与权重配套的那个投影，检查点也必须保存它。`PerformerAttention` 把它放在一个 buffer 里（会存进 state dict，`train()` 和 `eval()` 下完全相同），只有明确要求时才重新抽取：

# %%
torch.manual_seed(0)
layer = L.PerformerAttention(32, 2, nb_features=16)
xl = torch.randn(1, 20, 32)
before = layer.train()(xl)
print(t("ch09.redraw_eval", ok=torch.equal(layer.eval()(xl), before), saved="projection" in layer.state_dict()))
layer.redraw(seed=1)
print(t("ch09.redraw_change", x=((layer(xl) - before).norm() / before.norm()).item()))

# %% [markdown] tags=["lang-en"]
# ## 10. Linear attention that forgets
#
# Section 2's state only ever adds: $S_t = S_{t-1} + k_t^\top v_t$. Since 2023 the linear
# attentions that are trained at scale change that update in one of two ways. Either they shrink
# the old state before each write: a *decay*, fixed, or computed from the token, which is a
# *gate*. Or they write only what the state gets wrong: the *delta rule*. Row vectors, the state
# $S$ is $d_k \times d_v$ and $o_t = q_t S_t$:
#
# | rule (where) | update |
# |---|---|
# | plain (section 2) | $S_t = S_{t-1} + k_t^\top v_t$ |
# | fixed decay (RetNet) | $S_t = \gamma\, S_{t-1} + k_t^\top v_t$ |
# | gate (Mamba-2, GLA) | $S_t = \alpha_t S_{t-1} + k_t^\top v_t$ |
# | delta rule (DeltaNet) | $S_t = S_{t-1} + \beta_t\, k_t^\top (v_t - k_t S_{t-1})$ |
# | Gated DeltaNet | $S_t = \alpha_t (I - \beta_t k_t^\top k_t) S_{t-1} + \beta_t\, k_t^\top v_t$ |
#
# RetNet (Sun et al. 2023, eq. 6) fixes one $\gamma < 1$ per head. Mamba-2's
# $\alpha_t \in (0, 1)$ is one scalar per head computed from token $t$; GLA has one per key
# channel, $\mathrm{diag}(\alpha_t)$. Schlag et al. (2021) brought the delta rule into linear attention;
# DeltaNet and Gated DeltaNet build on it. They also drop section 1's denominator and normalise each head's
# output instead; Qin et al. (2022) trace unstable training to the denominator.
# `attnkit.forgetting` holds each rule in four forms: explicit $N \times N$, one step, recurrent,
# chunked. The factory of chapter 11 builds them by name: `retnet`, `gated_linear`, `gla`,
# `deltanet`, `gated_deltanet`.
#
# **Why the plain state saturates.** Read the state with the key $k_t$ of the newest pair: you
# get $v_t (k_t k_t^\top)$, plus $\sum_{j<t} (k_t k_j^\top)\, v_j$, crosstalk from *every* older
# pair, and nothing ever leaves the sum. Below, $T$ random pairs with unit keys in $d = 16$ are
# written one per token, as a layer writes them while it reads. Then the newest pair and the one
# written 8 tokens before it are read back with their keys: the cosine between what is read and
# what was written, averaged over 32 trials. Three cases: no forgetting, a fixed decay
# $\gamma = 0.9$, and the delta rule ($\beta = 1$):

# %% [markdown] tags=["lang-zh"]
# ## 10. 会遗忘的线性注意力
#
# 第 2 节的状态只会往里加：$S_t = S_{t-1} + k_t^\top v_t$。2023 年以来，大规模训练的线性注意力用两种办法之一改写了这个更新。一种是每次写入之前先把旧状态缩小，即*衰减*；衰减可以是固定的，也可以由当前词元算出来，这就是*门控*。另一种是只写入状态还没存对的那部分，即 *delta 规则*。这里用行向量，状态 $S$ 是 $d_k \times d_v$ 的，$o_t = q_t S_t$：
#
# | 规则（出处） | 更新 |
# |---|---|
# | 不遗忘（第 2 节） | $S_t = S_{t-1} + k_t^\top v_t$ |
# | 固定衰减（RetNet） | $S_t = \gamma\, S_{t-1} + k_t^\top v_t$ |
# | 门控（Mamba-2、GLA） | $S_t = \alpha_t S_{t-1} + k_t^\top v_t$ |
# | delta 规则（DeltaNet） | $S_t = S_{t-1} + \beta_t\, k_t^\top (v_t - k_t S_{t-1})$ |
# | Gated DeltaNet | $S_t = \alpha_t (I - \beta_t k_t^\top k_t) S_{t-1} + \beta_t\, k_t^\top v_t$ |
#
# RetNet（Sun 等，2023，式 6）每个头固定一个 $\gamma < 1$。Mamba-2 的 $\alpha_t \in (0, 1)$ 是每个头一个标量，由词元 $t$ 算出；GLA 则每个键通道一个，即 $\mathrm{diag}(\alpha_t)$。Schlag 等（2021）把 delta 规则引入线性注意力，DeltaNet 和 Gated DeltaNet 都以此为基础。它们还去掉了第 1 节的分母，改为对每个头的输出做归一化；Qin 等（2022）指出，训练不稳定的根源在分母。`attnkit.forgetting` 为每条规则提供四种形式：显式 $N \times N$、单步、递推、分段。第 11 章的工厂按名字构造它们：`retnet`、`gated_linear`、`gla`、`deltanet`、`gated_deltanet`。
#
# **不遗忘的状态为什么会饱和。** 用最新一对的键 $k_t$ 去读状态，得到 $v_t (k_t k_t^\top)$；此外还有 $\sum_{j<t} (k_t k_j^\top)\, v_j$，这是*每一个*更早的键值对带来的串扰，而且没有任何东西会离开这个和。下面在 $d = 16$ 维中写入 $T$ 个随机键值对，键为单位向量，每个词元写一对，就像一层网络边读边写那样。然后用各自的键读回最新的一对和往前第 8 对，计算读出的值与写入的值之间的余弦相似度，取 32 次试验的平均。三种情形：不遗忘、固定衰减 $\gamma = 0.9$、delta 规则（$\beta = 1$）：

# %%
from attnkit import forgetting as FG


def stream_and_read(n, d=16, trials=32, seed=0):  # n pairs written one per token, then read back
    g = torch.Generator().manual_seed(seed)
    k = FG.l2_normalize(torch.randn(trials, 1, n, d, generator=g, dtype=torch.float64))  # (trials, 1, n, d)
    v = torch.randn(trials, 1, n, d, generator=g, dtype=torch.float64)
    keep = torch.zeros(trials, 1, n, dtype=torch.float64)  # log decay 0: nothing is forgotten
    states = {"plain": FG.gated_linear_attention_chunked(k, k, v, keep, scale=1.0)[1],
              "decay": FG.gated_linear_attention_chunked(k, k, v, keep + math.log(0.9), scale=1.0)[1],
              "delta": FG.delta_rule_chunked(k, k, v, keep + 1.0, scale=1.0)[1]}  # (trials, 1, d, d) each
    row = [n]
    for S in states.values():
        for back in (0, 8):  # the newest pair, and the one written 8 tokens before it
            read = (k[:, :, n - 1 - back, None, :] @ S)[:, :, 0]  # (trials, 1, d)
            row.append(f"{F.cosine_similarity(read, v[:, :, n - 1 - back], dim=-1).mean().item():.2f}")
    return row + [f"{states['plain'].flatten(-2).norm(dim=-1).mean().item():.0f}"]


print(viz.format_table([t("ch09.col.written")] + [t("ch09.col.rule_read", rule=t(f"ch09.rule.{r}"), which=t(f"ch09.which.{w}"))
                                                  for r in ("plain", "decay", "delta") for w in ("newest", "back")]
                       + [t("ch09.col.plain_norm")], [stream_and_read(n) for n in (16, 64, 256, 1024)]))

# %% [markdown] tags=["lang-en"]
# Without forgetting, even the pair just written is read worse and worse: its recall falls from
# 0.74 at $T = 16$ to 0.17 at $T = 1024$. Meanwhile the state's norm grows like $\sqrt{T}$ (16 to
# 126): the state is saturated with everything it ever saw. A decay weights the pair written $j$
# tokens ago by $\gamma^j$, so the crosstalk becomes a geometric sum that stops growing. Recall of
# the newest pair is 0.90 at every $T$. The price is the past: 8 tokens back a pair is weighted
# $0.9^8$ and reads at 0.58 to 0.63. The delta rule reads the newest pair exactly (1.00), because
# its write made $k_t S_t = v_t$; older pairs lose what later keys overwrote.
#
# **What a decay does to the weights.** Unroll the gated recurrence:
#
# $$o_i = q_i S_i = \sum_{j \le i} (q_i k_j^\top)\, \big(\alpha_{j+1} \cdots \alpha_i\big)\, v_j.$$
#
# These are the plain weights $q_i k_j^\top$ times a decay factor. For RetNet it is
# $\gamma^{\,i-j}$, its eq. 5, $(QK^\top \odot D)V$. For Mamba-2 and GLA it is the product of the
# gates in between, which Mamba-2 calls a "1-semiseparable" mask. The delta rule has an implicit
# matrix too, but not a mask: each write subtracts what the state already returns for its key.
# So the tokens' values are mixed through (Yang et al. 2024, DeltaNet)
#
# $$U = (I + \mathrm{tril}(\mathrm{diag}(\beta) K K^\top, -1))^{-1} \mathrm{diag}(\beta) V, \qquad O = \mathrm{tril}(QK^\top)\, U.$$
#
# To see any rule's matrix, feed it $V = I_N$: the output is the matrix. Here 16 tokens have
# positive unit keys and queries. The fixed decay is $\gamma = 0.8$; the gate is computed from
# random "tokens" and closes ($\alpha = 0.05$) at token 9; the delta rule has $\beta = 0.5$. Two
# of them are checked against the formulas:

# %% [markdown] tags=["lang-zh"]
# 不遗忘时，连刚刚写入的那一对都读得越来越差：它的召回从 $T = 16$ 时的 0.74 降到 $T = 1024$ 时的 0.17。与此同时，状态的范数按 $\sqrt{T}$ 增长（从 16 到 126）：状态被它见过的一切塞满了。衰减让 $j$ 个词元之前写入的那一对乘上 $\gamma^j$，于是串扰成了一个不再增长的几何级数。无论 $T$ 多大，最新一对的召回都是 0.90。代价是过去：往前第 8 对被乘上 $0.9^8$，读出的召回只有 0.58 到 0.63。delta 规则读回最新一对是精确的（1.00），因为它的写入保证了 $k_t S_t = v_t$；更早的键值对则会失去被后来的键覆盖的部分。
#
# **衰减对权重做了什么。** 把门控递推展开：
#
# $$o_i = q_i S_i = \sum_{j \le i} (q_i k_j^\top)\, \big(\alpha_{j+1} \cdots \alpha_i\big)\, v_j.$$
#
# 这就是不遗忘时的权重 $q_i k_j^\top$ 乘上一个衰减因子。RetNet 的因子是 $\gamma^{\,i-j}$，即论文式 5 的 $(QK^\top \odot D)V$。Mamba-2 和 GLA 的因子是两者之间各个门控值的乘积，Mamba-2 称之为“1-半可分”掩码。delta 规则也有一个隐式矩阵，但它不是掩码：每次写入都要减去状态对这个键已经给出的值。于是各词元的值经过下式混在一起（Yang 等，2024，DeltaNet）：
#
# $$U = (I + \mathrm{tril}(\mathrm{diag}(\beta) K K^\top, -1))^{-1} \mathrm{diag}(\beta) V, \qquad O = \mathrm{tril}(QK^\top)\, U.$$
#
# 想看任何一条规则的矩阵，只要喂给它 $V = I_N$：输出就是这个矩阵。下面取 16 个词元，键和查询都是分量为正的单位向量。固定衰减取 $\gamma = 0.8$；门控由随机的“词元”算出，并在第 9 个词元处关上（$\alpha = 0.05$）；delta 规则取 $\beta = 0.5$。其中两个与公式核对：

# %% alt="ch09.alt.forgetting"
import matplotlib.pyplot as plt

N = 16
g = torch.Generator().manual_seed(1)
q, k = (FG.l2_normalize(F.elu(torch.randn(1, 1, N, 8, generator=g, dtype=torch.float64)) + 1) for _ in range(2))
eye = torch.eye(N, dtype=torch.float64)[None, None]  # V = I: the output is the implicit matrix
keep = torch.zeros(1, 1, N, dtype=torch.float64)
gate = F.logsigmoid(1.5 * torch.randn(1, 1, N, generator=g, dtype=torch.float64) + 2.5)  # log alpha_t, one per token
gate[..., 9] = math.log(0.05)  # token 9 closes the gate
W = {"plain": FG.gated_linear_attention_explicit(q, k, eye, keep, scale=1.0)[0, 0],
     "retnet": FG.gated_linear_attention_explicit(q, k, eye, keep + math.log(0.8), scale=1.0)[0, 0],
     "gate": FG.gated_linear_attention_explicit(q, k, eye, gate, scale=1.0)[0, 0],
     "delta": FG.delta_rule_explicit(q, k, eye, keep + 0.5, scale=1.0)[0, 0]}  # (N, N) each

qk, kk, i = (q @ k.mT)[0, 0], (k @ k.mT)[0, 0], torch.arange(N)
D = torch.where(i[:, None] >= i[None, :], 0.8 ** (i[:, None] - i[None, :]).double(), 0.0)
print(t("ch09.eq_decay_mask", ok=torch.allclose(W["retnet"], qk * D)))
mix = torch.linalg.inv(torch.eye(N, dtype=torch.float64) + (0.5 * kk).tril(-1)) * 0.5
print(t("ch09.eq_delta_closed", ok=torch.allclose(W["delta"], qk.tril() @ mix)))
for name, w in W.items():
    last = w[-1].abs()
    print(t("ch09.recent_share", rule=t(f"ch09.rule.{name}"), share=(last[-8:].sum() / last.sum()).item(),
            low=w.min().item() + 0.0))
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
for ax, (name, w) in zip(axes, W.items(), strict=True):
    im = ax.imshow(w, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(t(f"ch09.rule.{name}"), fontsize=10)
    ax.set_xlabel(t("viz.key"))
axes[0].set_ylabel(t("viz.query"))
fig.colorbar(im, ax=list(axes), fraction=0.02, label=t("viz.weight"))
_ = fig.suptitle(t("ch09.fig.implicit"))

# %% [markdown] tags=["lang-en"]
# Without forgetting, every earlier token keeps its full weight for ever: the last query puts only
# 0.48 of its weight on its 8 newest tokens. RetNet's decay fades the weights with distance, the
# same way for every token (0.86). That is a window of about $1/(1-\gamma)$ tokens that no input
# can widen. A gate fades at a rate the token chooses, and a closed gate cuts everything before it
# (0.99). The delta rule's forgetting comes from the keys: a new key erases the part of each older
# pair it overlaps. So where keys overlap the weights fall with distance (0.72), and some turn
# negative (down to -0.13).
#
# **What the delta rule writes.** The update is one step of gradient descent, step size $\beta_t$,
# on the read-out error $\tfrac12 \lVert k_t S - v_t \rVert^2$. Its gradient is
# $k_t^\top (k_t S - v_t)$: this is Widrow and Hoff's delta rule, the LMS rule of adaptive filters. So the state stores the *correction* $\beta_t (v_t - k_t S_{t-1})$, not the
# value itself. With $\lVert k_t \rVert = 1$ and $\beta_t = 1$, $I - k_t^\top k_t$ is a
# projection. It removes whatever the state held along $k_t$: erase, then write. Predict before
# you run the demo below.

# %% [markdown] tags=["lang-zh"]
# 不遗忘时，每个更早的词元都永远保留全部权重：最后一个查询只把 0.48 的权重放在最近的 8 个词元上。RetNet 的衰减让权重随距离变淡，对每个词元都一样（0.86）。这相当于一个约 $1/(1-\gamma)$ 个词元的窗口，任何输入都无法把它撑大。门控按词元自己选择的速度衰减，门一关就切断之前的一切（0.99）。delta 规则的遗忘来自键：新的键会擦除每个旧键值对中与它重叠的部分。所以键有重叠时，权重随距离变小（0.72），有些还变成了负数（最小为 -0.13）。
#
# **delta 规则写入了什么。** 这个更新是对读出误差 $\tfrac12 \lVert k_t S - v_t \rVert^2$ 做一步梯度下降，步长为 $\beta_t$。误差的梯度是 $k_t^\top (k_t S - v_t)$：这就是 Widrow 和 Hoff 的 delta 规则，也就是自适应滤波中的 LMS 规则。所以状态里存的是*修正量* $\beta_t (v_t - k_t S_{t-1})$，而不是值本身。当 $\lVert k_t \rVert = 1$、$\beta_t = 1$ 时，$I - k_t^\top k_t$ 是一个投影。它去掉状态在 $k_t$ 方向上存的一切：先擦除，再写入。运行下面的演示之前，先预测一下。

# %% [markdown] tags=["lang-en"]
# **Question 3 (predict first).** A unit key $k$ stores $v_1$, then the same key stores $v_2$
# ($\beta = 1$, no decay). Reading the state with $k$, what do plain linear attention and the delta
# rule return? a) plain: $v_2$, delta rule: $v_2$; b) plain: $v_1 + v_2$, delta rule: $v_2$;
# c) plain: $v_1 + v_2$, delta rule: $v_2 - v_1$; d) plain: $(v_1 + v_2)/2$, delta rule:
# $v_1 + v_2$. Replace `None` with your answer.

# %% [markdown] tags=["lang-zh"]
# **问题 3（先预测）**：单位向量键 $k$ 先存入 $v_1$，然后同一个键再存入 $v_2$（$\beta = 1$，不衰减）。用 $k$ 读状态时，不遗忘的线性注意力和 delta 规则各返回什么？a）不遗忘：$v_2$，delta 规则：$v_2$；b）不遗忘：$v_1 + v_2$，delta 规则：$v_2$；c）不遗忘：$v_1 + v_2$，delta 规则：$v_2 - v_1$；d）不遗忘：$(v_1 + v_2)/2$，delta 规则：$v_1 + v_2$。把 `None` 换成你的答案。

# %%
from attnkit.exercises.ch09 import check_q3

my_answer = None
_ = check_q3(my_answer)

# %% [markdown] tags=["lang-en"]
# The demo: three tokens write $(k', w)$, then $(k, v_1)$, then $(k, v_2)$, with $k = (0.6, 0.8, 0)$
# and $k' = (0, 0, 1)$ orthogonal to it. Each final state is read with $k$ and with $k'$; the
# second write to $k$ is read off as the change of the state along $k$:

# %% [markdown] tags=["lang-zh"]
# 演示：三个词元依次写入 $(k', w)$、$(k, v_1)$、$(k, v_2)$，其中 $k = (0.6, 0.8, 0)$，$k' = (0, 0, 1)$ 与它正交。最后的状态分别用 $k$ 和 $k'$ 读出；第二次对 $k$ 的写入，则读成状态沿 $k$ 方向的变化：

# %%
kq, kw = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
v1, v2, w = (torch.tensor(x, dtype=torch.float64) for x in ([1.0, 0.0, 2.0], [0.0, 3.0, -1.0], [5.0, 5.0, 5.0]))
keys, vals = torch.stack([kw, kq, kq])[None, None], torch.stack([w, v1, v2])[None, None]  # (1, 1, 3, 3)
ones = torch.ones(1, 1, 3, dtype=torch.float64)


def shown(x):  # a short vector, rounded (and -0.0 shown as 0.0)
    return [round(float(e), 2) + 0.0 for e in x]


for name, run in (("plain", lambda n: FG.gated_linear_attention_recurrent(keys[..., :n, :], keys[..., :n, :],
                                                                           vals[..., :n, :], 0 * ones[..., :n])[1]),
                  ("delta", lambda n: FG.delta_rule_recurrent(keys[..., :n, :], keys[..., :n, :], vals[..., :n, :],
                                                              ones[..., :n])[1])):
    before, after = run(2)[0, 0], run(3)[0, 0]  # the state (3, 3) before and after the second write to k
    print(t("ch09.overwrite_read", rule=t(f"ch09.rule.{name}"), a=shown(kq @ after), b=shown(kw @ after)))
    print(t("ch09.overwrite_added", rule=t(f"ch09.rule.{name}"), u=shown(kq @ (after - before))))

# %% [markdown] tags=["lang-en"]
# Plain linear attention returns the mix $v_1 + v_2$, and no later read can take it apart; the
# delta rule wrote the correction $v_2 - v_1$ and returns $v_2$. Both leave the value under the
# orthogonal key $k'$ untouched. With keys that are not orthogonal the erase also takes away the
# overlapping part of older pairs, the negative weights of the picture above; $\beta_t < 1$ and a
# gate decide how much.
#
# **The recurrent and the chunked forms agree.** As in section 2, each rule runs one token at a
# time (decoding) or in chunks of $C$ tokens. Inside a chunk it is a $C \times C$ block with the
# decay factors applied; for the delta rule, a $C \times C$ triangular solve, the "WY" form of
# Yang et al. (2024). Across chunks the state is carried. Every exponent in attnkit's chunked
# form is a sum of log decays over one segment, so nothing overflows, even at $\log \alpha = -20$
# per token. Below, each rule of the factory in float32 against its explicit form in float64
# ($N = 200$, 2 heads):

# %% [markdown] tags=["lang-zh"]
# 不遗忘的线性注意力返回混合结果 $v_1 + v_2$，之后再怎么读也拆不开；delta 规则写入的是修正量 $v_2 - v_1$，读出的是 $v_2$。两者都没有动正交键 $k'$ 下的值。键不正交时，擦除也会拿走旧键值对中重叠的那部分，也就是上图中那些负权重；擦掉多少，由 $\beta_t < 1$ 和门控决定。
#
# **递推形式与分段形式一致。** 和第 2 节一样，每条规则既可以逐个词元运行（解码），也可以按每段 $C$ 个词元运行。段内是一个乘上了衰减因子的 $C \times C$ 块；delta 规则则要解一个 $C \times C$ 的三角方程组，即 Yang 等（2024）的“WY”形式。段与段之间传递状态。attnkit 的分段形式里，每个指数都是某一段上对数衰减的和，所以不会溢出。即使每个词元的 $\log \alpha = -20$ 也是如此。下面用 float32 计算工厂中的每条规则，与 float64 的显式形式比较（$N = 200$，2 个头）：

# %%
g = torch.Generator().manual_seed(2)
q, k, v = (torch.randn(1, 2, 200, 16, generator=g, dtype=torch.float64) for _ in range(3))
qn, kn = FG.l2_normalize(q), FG.l2_normalize(k)  # unit keys and queries for the delta rule
beta = torch.sigmoid(torch.randn(1, 2, 200, generator=g, dtype=torch.float64))
scalar = F.logsigmoid(torch.randn(1, 2, 200, generator=g, dtype=torch.float64) + 3)  # one log gate per head and token
channel = F.logsigmoid(torch.randn(1, 2, 200, 16, generator=g, dtype=torch.float64) + 3)  # one per key channel
fixed = FG.retnet_log_decay(2, torch.float64)[None, :, None].expand(1, 2, 200)
GLA = (FG.gated_linear_attention_explicit, FG.gated_linear_attention_recurrent, FG.gated_linear_attention_chunked)
DELTA = (FG.delta_rule_explicit, FG.delta_rule_recurrent, FG.delta_rule_chunked)
rows = []
for name, (explicit, recurrent, chunked), args in (("retnet", GLA, (q, k, v, fixed)), ("gated_linear", GLA, (q, k, v, scalar)),
                                                  ("gla", GLA, (q, k, v, channel)), ("deltanet", DELTA, (qn, kn, v, beta)),
                                                  ("gated_deltanet", DELTA, (qn, kn, v, beta, scalar))):
    ref, low = explicit(*args), tuple(a.float() for a in args)
    rows.append([name, bound(max_rel_diff(recurrent(*low)[0], ref), 1e-5),
                 bound(max_rel_diff(chunked(*low, chunk_size=16)[0], ref), 1e-5)])
print(viz.format_table([t("ch09.col.rule"), t("ch09.col.rec_vs_explicit"), t("ch09.col.chunk_vs_explicit")], rows))

q, k, v = (torch.randn(1, 1, 4096, 16, generator=g) for _ in range(3))
steep = (-20 * torch.rand(1, 1, 4096, generator=g), torch.sigmoid(torch.randn(1, 1, 4096, generator=g)))
o32 = FG.delta_rule_chunked(FG.l2_normalize(q), FG.l2_normalize(k), v, steep[1], steep[0])[0]
o64 = FG.delta_rule_chunked(*(x.double() for x in (FG.l2_normalize(q), FG.l2_normalize(k), v, steep[1], steep[0])))[0]
print(t("ch09.forget_stress", ok=bool(torch.isfinite(o32).all()), rel=bound(max_rel_diff(o32, o64), 1e-5)))

# %% [markdown] tags=["lang-en"]
# **Where they are used.** RetNet's fixed decay and GLA's gates were trained as language models of
# up to a few billion parameters (Sun et al. 2023; Yang et al. 2024). Mamba-2's scalar decay runs
# in hybrids such as NVIDIA's Nemotron-H. Gated DeltaNet fills three of every four layers of
# Qwen3-Next, with full attention in the fourth (its configuration in `transformers`).

# %% [markdown] tags=["lang-zh"]
# **它们用在哪里。** RetNet 的固定衰减和 GLA 的门控都训练过参数量最多几十亿的语言模型（Sun 等，2023；Yang 等，2024）。Mamba-2 的标量衰减用在 NVIDIA Nemotron-H 这样的混合结构中。Qwen3-Next 每四层中有三层是 Gated DeltaNet，第四层是全注意力（见 `transformers` 中它的配置）。

# %% [markdown] tags=["lang-en"]
# ## 11. Exercises
#
# **Exercise 1.** The RNN step. With $\phi(x) = \mathrm{elu}(x) + 1$, write one step of section
# 2's recurrence: given the state `s` `(M, Dv)` and `z` `(M,)` of the tokens before, and the
# current `q_t`, `k_t` `(D,)`, `v_t` `(Dv,)`, return `(out_t, s_new, z_new)`. Here `D` is the
# width of a query or key, `Dv` of a value, and `M` the number of features $\phi$ produces, the
# length of $\phi(k_t)$: $M = D$ for elu + 1, which maps each entry to one feature ($m$ or $2m$
# for the random features of section 3). Floor the denominator at `1e-6`. Do not call
# `attnkit.linear`.

# %% [markdown] tags=["lang-zh"]
# ## 11. 练习
#
# **练习 1**：RNN 的一步。取 $\phi(x) = \mathrm{elu}(x) + 1$，写出第 2 节递推的一步：给定此前各词元的状态 `s` `(M, Dv)` 和 `z` `(M,)`，以及当前的 `q_t`、`k_t` `(D,)`、`v_t` `(Dv,)`，返回 `(out_t, s_new, z_new)`。这里 `D` 是查询或键的宽度，`Dv` 是值的宽度，`M` 是 $\phi$ 输出的特征个数，即 $\phi(k_t)$ 的长度。elu + 1 把每个分量映射成一个特征，所以 $M = D$；第 3 节的随机特征则是 $m$ 或 $2m$ 个。分母的下限取 `1e-6`。不要调用 `attnkit.linear`。

# %%
from attnkit.exercises import show_hint
from attnkit.exercises.ch09 import (
    check_causal_linear,
    check_landmarks,
    check_positive_features,
    check_q1,
    check_q2,
    check_step,
)


def my_step(s, z, q_t, k_t, v_t):
    # your code here
    raise NotImplementedError


_ = check_step(my_step)

# %% [markdown] tags=["lang-en"]
# Stuck after two tries? `show_hint("ch09.ex1")` prints every hint, the last one the formula.
#
# **Exercise 2.** Lemma 1 for another kernel. Random features estimate other kernels too (Rahimi
# and Recht built the trigonometric ones for this one). Derive positive random features for the
# Gaussian kernel $\exp(-\|x - y\|^2/2)$: features of the form
# $\phi(x)_i = m^{-1/2} e^{w_i^\top x - c(x)}$, $w_i \sim \mathcal N(0, I_d)$, with
# $\mathbb E[\phi(x)^\top\phi(y)] = \exp(-\|x - y\|^2/2)$. Find $c(x)$ on paper (section 3's two-line
# derivation of Lemma 1 is the tool), then, for `x` `(N, d)` and random rows `w` `(m, d)`, return
# the `(N, m)` features. Do not call `attnkit.linear`.

# %% [markdown] tags=["lang-zh"]
# 试了两次还没做出来？`show_hint("ch09.ex1")` 会打印全部提示，最后一条就是公式。
#
# **练习 2**：换一个核的引理 1。随机特征也能估计别的核（Rahimi 和 Recht 的三角函数特征就是为这个核构造的）。请推导高斯核 $\exp(-\|x - y\|^2/2)$ 的正随机特征。特征的形式为 $\phi(x)_i = m^{-1/2} e^{w_i^\top x - c(x)}$，其中 $w_i \sim \mathcal N(0, I_d)$；要求 $\mathbb E[\phi(x)^\top\phi(y)] = \exp(-\|x - y\|^2/2)$。先在纸上求出 $c(x)$（第 3 节对引理 1 的两行推导就是工具），再对 `x` `(N, d)` 和随机行 `w` `(m, d)` 返回 `(N, m)` 的特征。不要调用 `attnkit.linear`。

# %%
def my_positive_features(x, w):
    # your code here
    raise NotImplementedError


_ = check_positive_features(my_positive_features)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Landmarks. Return the `m` Nyström landmarks of `x` `(N, d)`: the means of
# consecutive segments of $\lceil N/m \rceil$ rows, the last segment possibly shorter (its mean is
# over its real rows only). Shape `(m, d)`.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：地标点。返回 `x` `(N, d)` 的 `m` 个 Nyström 地标点：把 `x` 分成若干连续的段，每段 $\lceil N/m \rceil$ 行，最后一段可能较短（只对其中真实存在的行求平均）。形状为 `(m, d)`。

# %%
def my_landmarks(x, m):
    # your code here
    raise NotImplementedError


_ = check_landmarks(my_landmarks)

# %% [markdown] tags=["lang-en"]
# **Question 1 (predict first).** A causal Performer head — section 2's recurrence with the positive random
# features of section 3, $m = 256$ of them, and $d = d_v = 64$ — has read 1,000,000 tokens. How
# many numbers do its $S$ and $Z$ hold together? Replace `None` with your answer.

# %% [markdown] tags=["lang-zh"]
# **问题 1（先预测）**：一个因果 Performer 头已经读了 1,000,000 个词元。它用第 2 节的递推，配上第 3 节的 $m = 256$ 个正随机特征，且 $d = d_v = 64$。它的 $S$ 和 $Z$ 一共有多少个数？把 `None` 换成你的答案。

# %%
my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# **Question 2.** Most entries of an attention matrix are small. For small values of the kernel
# $\mathrm{SM}(x, y)$, which estimator has the smaller mean squared error? Answer `"a"`, `"b"` or
# `"c"`: a) trigonometric features, b) positive features, c) they are equally good.

# %% [markdown] tags=["lang-zh"]
# **问题 2（先预测）**：注意力矩阵的大多数元素都很小。当核函数值 $\mathrm{SM}(x, y)$ 很小时，哪种估计的均方误差更小？回答 `"a"`、`"b"` 或 `"c"`：a）三角函数特征，b）正随机特征，c）两者一样好。

# %%
my_answer = None
_ = check_q2(my_answer)

# %% [markdown] tags=["lang-en"]
# **Exercise 4 (one step of the gated delta rule).** Write one token's update of section 10's gated
# delta rule. Given the state `S` `(Dk, Dv)`, a unit key `k_t` `(Dk,)`, a value `v_t` `(Dv,)`, the
# write strength `beta_t` and the decay `alpha_t` (two floats), return the new state `(Dk, Dv)`.
# With `alpha_t = 1` it is DeltaNet's step. Do not call `attnkit.forgetting`.

# %% [markdown] tags=["lang-zh"]
# **练习 4**：门控 delta 规则的一步。写出第 10 节门控 delta 规则对一个词元的更新。给定状态 `S` `(Dk, Dv)`、单位向量键 `k_t` `(Dk,)`、值 `v_t` `(Dv,)`、写入强度 `beta_t` 和衰减 `alpha_t`（两个浮点数），返回新的状态 `(Dk, Dv)`。`alpha_t = 1` 时就是 DeltaNet 的一步。不要调用 `attnkit.forgetting`。

# %%
from attnkit.exercises.ch09 import check_gated_delta_step


def my_gated_delta_step(S, k_t, v_t, beta_t, alpha_t):
    # your code here
    raise NotImplementedError


_ = check_gated_delta_step(my_gated_delta_step)

# %% [markdown] tags=["lang-en"]
# **Stretch exercise.** Write causal linear attention ($\phi = \mathrm{elu} + 1$) for `q`, `k`
# `(N, d)` and `v` `(N, dv)` that never holds an $N \times N$ matrix: process `chunk` tokens at a
# time, with the state of everything before the chunk. The checker runs it on $N = 2048$,
# $d = d_v = 32$, chunk $C = 64$ and *measures* its peak memory, which must stay below
# $2 \times 4\,\text{bytes} \times (N(d + d_v) + C(C + d\,d_v))$ (1.5 MiB): a state kept for
# every token, $N \times d \times d_v$, is 8 MiB by itself.

# %% [markdown] tags=["lang-zh"]
# **挑战题**：写一个因果线性注意力（$\phi = \mathrm{elu} + 1$），输入 `q`、`k` `(N, d)` 和 `v` `(N, dv)`，全程不持有 $N \times N$ 的矩阵。做法是一次处理 `chunk` 个词元，并带着此前所有词元的状态。检查器会在 $N = 2048$、$d = d_v = 32$、段长 $C = 64$ 上运行它，并*测量*其内存峰值。峰值必须低于 $2 \times 4\,\text{字节} \times (N(d + d_v) + C(C + d\,d_v))$（1.5 MiB）；如果为每个词元各保存一份状态（$N \times d \times d_v$），单这一项就有 8 MiB。

# %%
def my_causal_linear(q, k, v, chunk):
    # your code here
    raise NotImplementedError


_ = check_causal_linear(my_causal_linear)

# %% [markdown] tags=["lang-en"]
# ## 12. Summary
#
# - A kernel $\phi(q)^\top\phi(k)$ in place of $\exp(q^\top k/\sqrt d)$ lets associativity compute
#   $\phi(Q)(\phi(K)^\top V)$: time and memory linear in $N$ — but a different, flatter attention
#   (section 1).
# - Causal linear attention is an RNN with a $d \times d_v$ state; any chunking gives the same
#   outputs. The fixed state superposes what it stores and must forget once it holds more pairs
#   than it has dimensions (section 2).
# - The Performer estimates the softmax kernel itself with random features. Positive features are
#   accurate where the kernel is small, trig features where it is large; orthogonal features lower
#   the error (Theorem 2; on 4000 matched draws the difference stands out only where the tails are
#   light); large inputs need very many features (sections 3–4).
# - Linformer's theorems bound the error of random projections of a rank that grows with
#   $\log n/\epsilon^2$; in practice its projections are learned, and an arbitrary random one fails; Nyströmformer
#   needs representative landmarks, and its iterative pseudo-inverse trades a floor on the error
#   for stability; cosFormer adds a locality bias in linear time (sections 5–7).
# - Measured here, each method's crossover with SDPA and the memory of every math path (section 8);
#   the pitfalls — half-precision exponentials, zero denominators, causal stabilisers that peek,
#   redrawn features — are real and easy to hit (section 9).
# - A linear attention that forgets shrinks its state before each write: a fixed decay (RetNet) or
#   a gate computed from the token (GLA, Mamba-2) multiplies the plain weights by decay factors.
#   The delta rule writes the error $v_t - k_t S$, so a stale association is replaced instead of
#   summed. Recurrent and chunked forms agree for each (section 10).
#
# **Next:** chapter 10 — LoRA on attention. Chapter 11 builds every method here by name
# (`attnkit.linear.METHODS`) and trains small models with each.
#
# ## References
# - A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, *Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention*, ICML 2020 — eqs. 4–6 (linearised attention), eq. 7 (elu + 1), eqs. 9–12 (causal masking), eqs. 16–20 (the RNN form).
# - K. Choromanski et al., *Rethinking Attention with Performers*, ICLR 2021 — Lemma 1 (positive random features), Lemma 2 (MSE of the positive and trigonometric estimators), section 2.4 and Theorem 2 (orthogonal random features), section 2.6 (causal prefix sums).
# - A. Rahimi, B. Recht, *Random Features for Large-Scale Kernel Machines*, NeurIPS 2007 — random Fourier (trigonometric) features of the Gaussian kernel.
# - H. Peng, N. Pappas, D. Yogatama, R. Schwartz, N. A. Smith, L. Kong, *Random Feature Attention*, ICLR 2021 — trigonometric random features for the softmax kernel, with gating.
# - S. Wang, B. Z. Li, M. Khabsa, H. Fang, H. Ma, *Linformer: Self-Attention with Linear Complexity*, 2020 — Figure 1 (spectrum), eq. 7 (projections E, F), section 4 (parameter sharing).
# - Y. Xiong et al., *Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention*, AAAI 2021 — section 3.3 (segment-mean landmarks), eq. 13 (the approximation), eq. 14 (iterative pseudo-inverse).
# - M. K. Razavi, A. Kerayechian, M. Gachpazan, S. Shateyi, *A New Iterative Method for Finding Approximate Inverses of Complex Matrices*, Abstract and Applied Analysis 2014 — the iteration of Nyströmformer's eq. 14.
# - Z. Qin et al., *cosFormer: Rethinking Softmax in Attention*, ICLR 2022 — eqs. 9–12 (ReLU features and the cos re-weighting decomposed).
# - Z. Shen, M. Zhang, H. Zhao, S. Yi, H. Li, *Efficient Attention: Attention with Linear Complexities*, WACV 2021 — eq. 3.
# - S. Arora et al., *Zoology: Measuring and Improving Recall in Efficient Language Models*, 2023; S. Arora et al., *Simple linear attention language models balance the recall-throughput tradeoff* (Based), 2024 — recall against state size.
# - Y. Sun et al., *Retentive Network: A Successor to Transformer for Large Language Models*, 2023 — eq. 5 (the parallel form $(QK^\top \odot D)V$), eq. 6 (the recurrent form), eq. 7 (the chunkwise form).
# - S. Yang, B. Wang, Y. Shen, R. Panda, Y. Kim, *Gated Linear Attention Transformers with Hardware-Efficient Training*, ICML 2024 — eq. 3 (the gated recurrence), eq. 4 (its parallel form).
# - T. Dao, A. Gu, *Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality* (Mamba-2), ICML 2024 — the scalar decay per head and its 1-semiseparable mask.
# - I. Schlag, K. Irie, J. Schmidhuber, *Linear Transformers Are Secretly Fast Weight Programmers*, ICML 2021 — the delta rule as the update of a fast weight memory.
# - S. Yang, B. Wang, Y. Zhang, Y. Shen, Y. Kim, *Parallelizing Linear Transformers with the Delta Rule over Sequence Length* (DeltaNet), NeurIPS 2024 — the chunkwise (WY) form.
# - S. Yang, J. Kautz, A. Hatamizadeh, *Gated Delta Networks: Improving Mamba2 with Delta Rule*, ICLR 2025 — the gated delta rule (its section 3.3 chunk formula prints the causal mask where the decay matrix belongs).
# - Z. Qin et al., *The Devil in Linear Transformer*, EMNLP 2022 — the denominator's unbounded gradients; a normalisation instead.
# - Qwen team, *Qwen3-Next* (2025; `Qwen3NextConfig` in `transformers`: Gated DeltaNet in three of every four layers); NVIDIA, *Nemotron-H: A Family of Accurate and Efficient Hybrid Mamba-Transformer Models*, 2025.

# %% [markdown] tags=["lang-zh"]
# ## 12. 小结
#
# - 把 $\exp(q^\top k/\sqrt d)$ 换成核函数 $\phi(q)^\top\phi(k)$；这样就能借助结合律计算 $\phi(Q)(\phi(K)^\top V)$，时间和内存随 $N$ 线性增长，但这是另一种更平坦的注意力（第 1 节）。
# - 因果线性注意力是一个状态为 $d \times d_v$ 的 RNN；任意分段方式得到的输出都相同。固定大小的状态把存入的内容叠加在一起，一旦存入的键值对多于它的维数，就不得不遗忘（第 2 节）。
# - Performer 用随机特征估计 softmax 核本身。正随机特征在核函数值小的地方准确，三角函数特征在核函数值大的地方准确；正交随机特征能降低误差（定理 2；在 4000 次配对抽样上，只有尾部较轻的地方差别才明显）；输入较大时需要非常多的特征（第 3–4 节）。
# - Linformer 的定理给出了随机投影的误差界，投影的秩随 $\log n/\epsilon^2$ 增长；实践中它的投影是学出来的，任意一个随机投影则不行；Nyströmformer 需要有代表性的地标点，它的迭代伪逆以误差存在下限为代价换取稳定性；cosFormer 在线性时间内加入了局部性偏置（第 5–7 节）。
# - 在本机上实测了每种方法与 SDPA 的交叉点，以及每条数学路径的内存（第 8 节）；各种陷阱——半精度指数、为零的分母、偷看未来的因果稳定化、重新抽取的特征——都真实存在，而且很容易踩到（第 9 节）。
# - 会遗忘的线性注意力在每次写入之前先缩小状态：固定衰减（RetNet）或由词元算出的门控（GLA、Mamba-2）把不遗忘时的权重乘上衰减因子。delta 规则写入的是误差 $v_t - k_t S$，所以过时的关联会被替换，而不是被累加。每条规则的递推形式与分段形式都一致（第 10 节）。
#
# **下一章**：第 10 章——注意力上的 LoRA。第 11 章会按名字构造本章的每一种方法（`attnkit.linear.METHODS`），并分别训练小模型。
#
# ## 参考文献
# - A. Katharopoulos、A. Vyas、N. Pappas、F. Fleuret，*Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention*，ICML 2020——式 4–6（线性化的注意力）、式 7（elu + 1）、式 9–12（因果掩码）、式 16–20（RNN 形式）。
# - K. Choromanski 等，*Rethinking Attention with Performers*，ICLR 2021——引理 1（正随机特征）、引理 2（正随机特征与三角函数特征估计量的均方误差）、第 2.4 节与定理 2（正交随机特征）、第 2.6 节（因果前缀和）。
# - A. Rahimi、B. Recht，*Random Features for Large-Scale Kernel Machines*，NeurIPS 2007——高斯核的随机傅里叶特征，即三角函数特征。
# - H. Peng、N. Pappas、D. Yogatama、R. Schwartz、N. A. Smith、L. Kong，*Random Feature Attention*，ICLR 2021——用于 softmax 核的三角函数特征，带门控。
# - S. Wang、B. Z. Li、M. Khabsa、H. Fang、H. Ma，*Linformer: Self-Attention with Linear Complexity*，2020——图 1（奇异值谱）、式 7（投影 E、F）、第 4 节（参数共享）。
# - Y. Xiong 等，*Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention*，AAAI 2021——第 3.3 节（分段均值地标点）、式 13（近似公式）、式 14（迭代伪逆）。
# - M. K. Razavi、A. Kerayechian、M. Gachpazan、S. Shateyi，*A New Iterative Method for Finding Approximate Inverses of Complex Matrices*，Abstract and Applied Analysis 2014——Nyströmformer 式 14 所用的迭代。
# - Z. Qin 等，*cosFormer: Rethinking Softmax in Attention*，ICLR 2022——式 9–12（ReLU 特征与余弦重加权的分解）。
# - Z. Shen、M. Zhang、H. Zhao、S. Yi、H. Li，*Efficient Attention: Attention with Linear Complexities*，WACV 2021——式 3。
# - S. Arora 等，*Zoology: Measuring and Improving Recall in Efficient Language Models*，2023；S. Arora 等，*Simple linear attention language models balance the recall-throughput tradeoff*（Based），2024——召回能力与状态大小的关系。
# - Y. Sun 等，*Retentive Network: A Successor to Transformer for Large Language Models*，2023——式 5（并行形式 $(QK^\top \odot D)V$）、式 6（递推形式）、式 7（分段形式）。
# - S. Yang、B. Wang、Y. Shen、R. Panda、Y. Kim，*Gated Linear Attention Transformers with Hardware-Efficient Training*，ICML 2024——式 3（门控递推）、式 4（它的并行形式）。
# - T. Dao、A. Gu，*Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality*（Mamba-2），ICML 2024——每个头一个标量衰减，及其 1-半可分掩码。
# - I. Schlag、K. Irie、J. Schmidhuber，*Linear Transformers Are Secretly Fast Weight Programmers*，ICML 2021——把 delta 规则作为快速权重记忆的更新。
# - S. Yang、B. Wang、Y. Zhang、Y. Shen、Y. Kim，*Parallelizing Linear Transformers with the Delta Rule over Sequence Length*（DeltaNet），NeurIPS 2024——分段（WY）形式。
# - S. Yang、J. Kautz、A. Hatamizadeh，*Gated Delta Networks: Improving Mamba2 with Delta Rule*，ICLR 2025——门控 delta 规则（其第 3.3 节的分段公式在该用衰减矩阵的地方印成了因果掩码）。
# - Z. Qin 等，*The Devil in Linear Transformer*，EMNLP 2022——分母带来无界的梯度；改用归一化。
# - Qwen 团队，*Qwen3-Next*（2025；`transformers` 中的 `Qwen3NextConfig`：每四层中有三层是 Gated DeltaNet）；NVIDIA，*Nemotron-H: A Family of Accurate and Efficient Hybrid Mamba-Transformer Models*，2025。
