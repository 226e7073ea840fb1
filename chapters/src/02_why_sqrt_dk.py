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
# # 02 · Why divide by $\sqrt{d_k}$?
#
# **What you will learn**
# - why the dot product of two random vectors grows with their length, measured on 100,000 samples and matched to a closed form, with error bars;
# - what large scores do to the softmax: it saturates, and its gradient vanishes — seen with a slider;
# - when dividing by $\sqrt{d_k}$ is not enough (entries whose variance is not 1) and what models do about it (temperature, QK-norm);
# - what the scaling costs, and the mistakes people make with it.
#
# **You need** chapter 01 (scaled dot-product attention). Basic probability helps: mean, variance, independence.

# %% [markdown] tags=["lang-zh"]
# # 02 · 为什么要除以 $\sqrt{d_k}$？
#
# **本章内容**
# - 为什么两个随机向量的点积会随维度增大而变大：用 100,000 个样本实测，并与闭式表达式对照，附误差棒；
# - 分数过大时 softmax 会怎样：它会饱和，梯度随之消失——拖动滑块就能看到；
# - 什么时候只除以 $\sqrt{d_k}$ 还不够（分量的方差不是 1），以及模型的应对办法（温度、QK 归一化）；
# - 缩放的开销，以及使用它时常见的错误。
#
# **预备知识**：第 1 章（缩放点积注意力）。了解一点概率知识会有帮助：均值、方差、独立性。

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch02  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import experiments as E
from attnkit.core import scaled_dot_product_attention
from attnkit.numbers import bound
from attnkit.viz import format_table
from attnkit.widgets.scaling import scaling_explorer

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. Intuition: a sum of $d_k$ random terms
#
# A score is a dot product, $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$: a sum of $d_k$ terms. If the
# terms are random with mean 0, they partly cancel, but not completely — the sum wanders further
# from 0 the more terms it has. Draw five random pairs $(q, k)$ with standard normal entries at
# three widths and look at the size of $q \cdot k$:

# %% [markdown] tags=["lang-zh"]
# ## 1. 直觉：$d_k$ 个随机项之和
#
# 分数就是点积，$q \cdot k = \sum_{i=1}^{d_k} q_i k_i$：它是 $d_k$ 项之和。如果这些项是均值为 0 的随机数，它们会部分抵消，但不会完全抵消——项数越多，和离 0 就越远。下面取三种维度，各随机抽取五对 $(q, k)$（分量服从标准正态分布），看看 $q \cdot k$ 有多大：

# %%
torch.manual_seed(0)
for d in (4, 64, 1024):
    q, k = torch.randn(5, d), torch.randn(5, d)  # 5 pairs, entries N(0, 1)
    print(f"d_k = {d:>4}: q·k = {[round(x, 1) for x in (q * k).sum(-1).tolist()]}")

# %% [markdown] tags=["lang-en"]
# With 4 entries the scores stay near $\pm 1$; with 1024 they reach $73.9$ and $-46.5$. Fed to a
# softmax, scores that far apart make one weight almost 1 and the rest almost 0. To see how the sum
# grows, follow five pairs one coordinate at a time: the running sum $q_1k_1 + \dots + q_jk_j$ after
# $j$ coordinates, for $j = 1$ to 1024:

# %% [markdown] tags=["lang-zh"]
# 只有 4 个分量时，分数基本在 $\pm 1$ 附近；有 1024 个分量时，分数达到了 $73.9$ 和 $-46.5$。把相差这么大的分数送进 softmax，会让一个权重几乎为 1，其余几乎为 0。为了看清这个和是怎样变大的，我们跟踪五对向量，一个坐标一个坐标地累加：前 $j$ 个坐标的累加和 $q_1k_1 + \dots + q_jk_j$，$j$ 从 1 到 1024：

# %% alt="ch02.alt.partial_sums"
from attnkit.widgets.scaling import partial_sums, plot_partial_sums

plot_partial_sums(d_k=1024, pairs=5, seed=0);
print(t("ch02.nb.walk_end", v=[round(x, 1) for x in partial_sums(1024, 5, seed=0)[:, -1].tolist()],
        r=math.sqrt(1024)))

# %% [markdown] tags=["lang-en"]
# Each running sum is a random walk: every step $q_jk_j$ is as likely to push it up as down, so the
# steps partly cancel, but not completely. The walks drift apart, and the grey bands, $\pm\sqrt{j}$ and
# $\pm 2\sqrt{j}$, keep up with them: after 1024 coordinates they stand between $-54.0$ and $48.7$, within
# twice $\sqrt{1024} = 32$. The spread grows like the *square root* of the number of terms. Now the
# same in formulas.
#
# **The math** (Vaswani et al. 2017, §3.2.1, footnote 4). Let the entries $q_i, k_i$ be independent
# with mean 0 and variance $\sigma^2$. Each product has mean $E[q_i]E[k_i] = 0$ and variance
# $E[q_i^2]\,E[k_i^2] = \sigma^4$, and variances of independent terms add up:
#
# $$\mathrm{Var}(q \cdot k) = \sum_{i=1}^{d_k} \mathrm{Var}(q_i k_i) = d_k\,\sigma^4,
# \qquad \mathrm{Var}\!\left(\frac{q \cdot k}{\sqrt{d_k}}\right) = \frac{d_k\,\sigma^4}{d_k} = \sigma^4.$$
#
# For unit-variance entries ($\sigma = 1$) the scaled score has variance exactly 1, whatever $d_k$ is.
# That is the whole reason for $\sqrt{d_k}$: it is the standard deviation of the unscaled score.

# %% [markdown] tags=["lang-zh"]
# 每条累加和都是一次随机游走：每一步 $q_jk_j$ 往上推和往下推的可能性一样大，所以各步会部分抵消，但不会完全抵消。几条游走渐渐分开，而灰色带 $\pm\sqrt{j}$ 和 $\pm 2\sqrt{j}$ 跟着它们一起变宽：累加完 1024 个坐标后，它们落在 $-54.0$ 到 $48.7$ 之间，都在 $\sqrt{1024} = 32$ 的两倍以内。分布的宽度按项数的*平方根*增长。下面用公式把这件事写出来。
#
# **数学推导**（Vaswani 等，2017，§3.2.1，脚注 4）。设各分量 $q_i, k_i$ 相互独立，均值为 0，方差为 $\sigma^2$。每个乘积的均值为 $E[q_i]E[k_i] = 0$，方差为 $E[q_i^2]\,E[k_i^2] = \sigma^4$；而相互独立的项，方差可以直接相加：
#
# $$\mathrm{Var}(q \cdot k) = \sum_{i=1}^{d_k} \mathrm{Var}(q_i k_i) = d_k\,\sigma^4,
# \qquad \mathrm{Var}\!\left(\frac{q \cdot k}{\sqrt{d_k}}\right) = \frac{d_k\,\sigma^4}{d_k} = \sigma^4.$$
#
# 当分量方差为 1（$\sigma = 1$）时，无论 $d_k$ 是多少，缩放后分数的方差都恰好是 1。这就是除以 $\sqrt{d_k}$ 的全部理由：$\sqrt{d_k}$ 正是未缩放分数的标准差。

# %% [markdown] tags=["lang-en"]
# ## 2. Measure it, from scratch
#
# 100,000 independent pairs with $d_k = 64$, in four lines:

# %% [markdown] tags=["lang-zh"]
# ## 2. 从零开始实测
#
# 取 $d_k = 64$，抽取 100,000 对相互独立的向量，只需四行：

# %%
torch.manual_seed(0)
d_k, n = 64, 100_000
q, k = torch.randn(n, d_k), torch.randn(n, d_k)  # n independent pairs, entries N(0, 1)
dots = (q * k).sum(-1)  # (n,) one q·k per pair
print(f"Var(q·k)        = {dots.var():.2f}    " + t("ch02.nb.theory", v=f"d_k = {d_k}"))
print(f"Var(q·k / √d_k) = {(dots / math.sqrt(d_k)).var():.4f}  " + t("ch02.nb.theory", v=1))

# %% [markdown] tags=["lang-en"]
# About 64 and about 1. But how close is "about"? A sample variance is itself random: draw other
# pairs and you get another number. Its typical error, the *standard error* (SE), shrinks like
# $1/\sqrt{n}$; for these scores it is $\sqrt{(2d_k^2 + 6d_k)/n}$ (appendix A derives it).
# `attnkit.experiments` runs the same experiment as a pure, seeded function and gives the closed
# form and its standard error beside it. A measurement within two or three standard errors of the
# theory agrees with it:

# %% [markdown] tags=["lang-zh"]
# 大约是 64 和 1。可“大约”到底有多接近？样本方差本身也是随机的：换一批向量，就会得到另一个数。它的典型误差叫*标准误差*（SE），按 $1/\sqrt{n}$ 缩小；对这里的分数，它等于 $\sqrt{(2d_k^2 + 6d_k)/n}$（推导见附录 A）。`attnkit.experiments` 把同一个实验写成了带随机种子的纯函数，并同时给出闭式表达式算出的理论值及其标准误差。实测值与理论值相差在两三个标准误差以内，就说明二者吻合：

# %%
for scaled in (False, True):
    v = E.dot_product_variance(64, 100_000, scaled=scaled, seed=0)
    th = E.dot_product_variance_theory(64, scaled=scaled)
    se = E.dot_product_variance_se(64, 100_000, scaled=scaled)
    print(t("ch02.nb.se_row", scaled=str(scaled), v=v, th=th, se=se, z=abs(v - th) / se))

# %% [markdown] tags=["lang-en"]
# Both measurements lie 1.2 standard errors from the theory (the same random draws, divided by
# $\sqrt{64} = 8$, so the same relative error). The standard error is 0.2928 around 64 and
# 0.0046 around 1.
#
# The scale is what PyTorch's `scaled_dot_product_attention` uses by default: `scale=None`
# means $1/\sqrt{d_k}$, with $d_k$ = `q.shape[-1]`. Our formula, attnkit's and PyTorch's agree:

# %% [markdown] tags=["lang-zh"]
# 两次测量都与理论值相差 1.2 个标准误差（用的是同一批随机数，只是除以了 $\sqrt{64} = 8$，所以相对误差相同）。在 64 附近，标准误差是 0.2928；在 1 附近是 0.0046。
#
# PyTorch 的 `scaled_dot_product_attention` 默认用的就是这个缩放系数：`scale=None` 表示 $1/\sqrt{d_k}$，其中 $d_k$ = `q.shape[-1]`。我们的公式、attnkit 和 PyTorch 三者结果一致：

# %%
torch.manual_seed(0)
qh, kh, vh = torch.randn(2, 4, 10, 64), torch.randn(2, 4, 10, 64), torch.randn(2, 4, 10, 64)  # (B, H, N, d_k)
ours = torch.softmax(qh @ kh.transpose(-2, -1) / math.sqrt(64), dim=-1) @ vh
print(t("ch02.nb.match_sdpa", arg="scale=None", ok=torch.allclose(ours, F.scaled_dot_product_attention(qh, kh, vh), atol=1e-6)))
print(t("ch02.nb.match_sdpa", arg="scale=1/8", ok=torch.allclose(ours, F.scaled_dot_product_attention(qh, kh, vh, scale=1 / 8), atol=1e-6)))
print(t("ch02.nb.match_attnkit", ok=torch.allclose(ours, scaled_dot_product_attention(qh, kh, vh), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **Predict first (question 1).** Make $d_k$ four times larger, from 64 to 256. By what factor does
# the typical size of an unscaled score (its standard deviation) grow? Write a number, then run the
# sweep below to check.

# %% [markdown] tags=["lang-zh"]
# **问题 1（先预测）**：把 $d_k$ 变成 4 倍，从 64 变成 256。未缩放分数的典型大小（它的标准差）会变成几倍？先写下一个数，再运行下面的扫描来验证。

# %%
from attnkit.exercises.ch02 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# **Sweep $d_k$.** The closed form says the unscaled variance is a straight line of slope 1 on a
# log-log plot, and the scaled one is flat at 1. Measured with 10,000 samples per point:

# %% [markdown] tags=["lang-zh"]
# **扫描 $d_k$。** 按照闭式表达式，在双对数坐标下，未缩放的方差是一条斜率为 1 的直线，缩放后的方差则稳定在 1。每个点用 10,000 个样本实测：

# %% alt="ch02.alt.variance"
d_ks = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
un = E.variance_sweep(d_ks, 10_000, scaled=False, seed=0)
sc = E.variance_sweep(d_ks, 10_000, scaled=True, seed=0)
print(format_table(["d_k", "Var(q·k)", "Var(q·k/√d_k)"],
                   [[d, f"{a:.2f}", f"{b:.3f}"] for d, a, b in zip(d_ks, un["measured"], sc["measured"])]))

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(d_ks, un["theory"], "k-", lw=1, label=t("ch02.theory_dk"))
ax.errorbar(d_ks, un["measured"], yerr=[3 * s for s in un["se"]], fmt="o", ms=4, label=t("ch02.measured_unscaled"))
ax.plot(d_ks, sc["theory"], "k--", lw=1, label=t("ch02.theory_one"))
ax.errorbar(d_ks, sc["measured"], yerr=[3 * s for s in sc["se"]], fmt="s", ms=4, label=t("ch02.measured_scaled"))
ax.set_xscale("log", base=2)
ax.set_yscale("log", base=2)
ax.set_xlabel("d_k")
ax.set_ylabel(t("ch02.var_axis"))
ax.set_title(t("ch02.sweep_title"), fontsize=10)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown] tags=["lang-en"]
# Every point lies on its line (the error bars are $\pm 3$ standard errors): 515.75 against 512 at
# $d_k = 512$, and between 0.991 and 1.029 for the scaled scores at every $d_k$. From $d_k = 64$ to 256
# the variance goes from 64.00 to 257.35, about 4 times, so the spread about $\sqrt{4} = 2$ times:
# question 1's answer.

# %% [markdown] tags=["lang-zh"]
# 每个点都落在对应的线上（误差棒为 $\pm 3$ 个标准误差）：$d_k = 512$ 时实测 515.75，理论 512；缩放后的方差在所有 $d_k$ 下都在 0.991 到 1.029 之间。从 $d_k = 64$ 到 256，方差从 64.00 变成 257.35，约为 4 倍，所以分布的宽度约为 $\sqrt{4} = 2$ 倍：这就是问题 1 的答案。

# %% [markdown] tags=["lang-en"]
# ## 3. Explore: saturation and vanishing gradients
#
# Why should we care that scores are large? Because of what the softmax does with them. Take one
# query and 16 random keys, unscaled, at $d_k = 4$ and at $d_k = 1024$, and nudge the second-largest
# score up by 0.5, as one training step might:

# %% [markdown] tags=["lang-zh"]
# ## 3. 动手探索：饱和与梯度消失
#
# 分数大一些，为什么就成了问题？关键在于 softmax 如何处理它们。取一个查询和 16 个随机键，不缩放，分别在 $d_k = 4$ 和 $d_k = 1024$ 下，把第二大的分数调高 0.5（就像训练中的一步更新那样）：

# %%
torch.manual_seed(0)
for d in (4, 1024):
    query, keys = torch.randn(d), torch.randn(16, d)
    row = keys @ query                                   # (16,) unscaled scores of one query
    p = torch.softmax(row, dim=-1)
    nudged = torch.softmax(row + 0.5 * F.one_hot(row.argsort()[-2], 16), dim=-1)
    dp = (nudged - p).abs().sum().item()                 # the total change of the weights
    print(t("ch02.nb.nudge", d=d, w=p.max().item(), dp=dp, bound=bound(dp, 1e-9)))

# %% [markdown] tags=["lang-en"]
# At $d_k = 4$ the nudge moves the weights by 0.22; at $d_k = 1024$ the row is one-hot (largest
# weight 1.000) and the same nudge moves them by 0.00, less than $10^{-9}$ in total: nothing. A gradient is exactly
# this sensitivity, so almost no gradient reaches the scores, and the queries and keys stop
# learning. Chapter 03 derives the sensitivity in general, the softmax's Jacobian
#
# $$\frac{\partial p_i}{\partial s_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - p\,p^\top ,$$
#
# whose entries are all near 0 when one weight is near 1 and the others near 0; its size
# $\|J\|_F$ (the root of the sum of its squared entries) measures how much gradient gets through.
#
# The explorer below draws, for the chosen $d_k$: the histogram of 5,000 scores with the normal
# density of the closed-form variance; one softmax row over 16 random keys with its largest weight
# and $\|J\|_F$; and the mean $\|J\|_F$ over 128 rows against $d_k$, scaled and unscaled. Move the
# $d_k$ slider with the toggle on *unscaled*, and watch the row turn one-hot and $\|J\|_F$ fall.
# Switch to *scaled*: the histogram keeps its shape and the gradient stays. (Where widgets do not
# run, on GitHub for instance, the figure below shows the starting setting: $d_k = 256$, unscaled.)

# %% [markdown] tags=["lang-zh"]
# $d_k = 4$ 时，这次调整让权重总共变化 0.22；$d_k = 1024$ 时这一行已是独热分布（最大权重 1.000），同样的调整让权重总共只变化 0.00，不到 $10^{-9}$，等于没变。梯度衡量的正是这种敏感程度，所以几乎没有梯度能传回分数，查询和键也就学不动了。第 3 章会推导一般情形下的敏感程度，即 softmax 的雅可比矩阵
#
# $$\frac{\partial p_i}{\partial s_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - p\,p^\top ,$$
#
# 当一个权重接近 1、其余接近 0 时，它的每个元素都接近 0；它的大小 $\|J\|_F$（各元素平方和的平方根）衡量能有多少梯度传过去。
#
# 下面的交互控件针对所选的 $d_k$ 画出三幅图：5,000 个分数的直方图，以及按闭式表达式算出的方差画出的正态密度曲线；16 个随机键上的一行 softmax，标出最大权重和 $\|J\|_F$；以及 128 行的平均 $\|J\|_F$ 随 $d_k$ 的变化（缩放与不缩放两条曲线）。在“不缩放”状态下拖动 $d_k$ 滑块，可以看到这一行变成独热分布，$\|J\|_F$ 随之下降；切换到“缩放”，直方图的形状保持不变，梯度也保留了下来。（在 GitHub 等无法运行交互控件的地方，下面的静态图画的是初始设置：$d_k = 256$，不缩放。）

# %% tags=["nbval-ignore-output"] alt="ch02.alt.explorer"
explorer = scaling_explorer(d_k=256)
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# The same numbers as a table, each averaged over 512 rows of 16 keys
# (`attnkit.experiments.saturation_sweep`). Entropy is in nats; a uniform row over 16 keys has
# entropy $\log 16$ (printed below the table), a one-hot row 0.

# %% [markdown] tags=["lang-zh"]
# 下表给出同样的数据，每项都是 512 行（每行 16 个键）的平均值（`attnkit.experiments.saturation_sweep`）。熵的单位是奈特（nat）；16 个键上均匀分布的熵为 $\log 16$（数值打印在表格下方），独热分布的熵为 0。

# %%
d_ks = [4, 16, 64, 256, 1024]
rows = []
for scaled in (False, True):
    s = E.saturation_sweep(d_ks, seq_len=16, n_rows=512, scaled=scaled, seed=0)
    for i, d in enumerate(d_ks):
        rows.append([t("scaling.scaled" if scaled else "scaling.unscaled"), d,
                     f"{s['max_weight'][i]:.3f}", f"{s['entropy'][i]:.3f}", f"{s['jacobian_norm'][i]:.3f}"])
print(format_table([t("ch02.col.mode"), "d_k", t("ch02.col.max_w"), t("ch02.col.entropy"), t("ch02.col.jac")], rows))
print(f"log 16 = {math.log(16):.3f}")

# %% [markdown] tags=["lang-en"]
# Unscaled, the mean largest weight climbs from 0.429 at $d_k = 4$ to 0.966 at $d_k = 1024$, and
# the mean $\|J\|_F$ falls from 0.323 to 0.048 — almost seven times less gradient. Scaled, all three
# columns barely move: a largest weight near 0.25, an entropy near 2.36 and $\|J\|_F$ near 0.30 for
# every $d_k$. Real models use $d_k$ = 64 or 128 per head, and already at $d_k = 64$ the unscaled
# softmax has a mean largest weight of 0.832 and a mean $\|J\|_F$ of 0.187, against 0.305 scaled.

# %% [markdown] tags=["lang-zh"]
# 不缩放时，平均最大权重从 $d_k = 4$ 时的 0.429 升到 $d_k = 1024$ 时的 0.966，平均 $\|J\|_F$ 则从 0.323 降到 0.048——梯度只剩约七分之一。缩放后，三列数据几乎不变：对所有 $d_k$，最大权重都在 0.25 左右，熵在 2.36 左右，$\|J\|_F$ 在 0.30 左右。实际模型中每个头的 $d_k$ 是 64 或 128；而在 $d_k = 64$ 时，不缩放的 softmax 平均最大权重就已达到 0.832，平均 $\|J\|_F$ 只有 0.187，缩放后则是 0.305。

# %% [markdown] tags=["lang-en"]
# ## 4. When $\sqrt{d_k}$ is not enough
#
# The derivation assumed unit-variance entries. Nothing in a network guarantees that: a different
# initialisation, a layer without normalisation, or weights that grow during training all change
# $\sigma$. Since the scaled variance is $\sigma^4$, a factor 2 in $\sigma$ is a factor 16 in the
# variance of the scores. Two fixes are in use:
#
# - **Temperature**: divide the scores by an extra $\tau$. With $\tau = \sigma^2$ the variance is
#   back to 1; since $\sigma$ is not known in advance and changes during training, $\tau$ is sometimes learned instead.
# - **QK-norm**: normalise each head's queries and keys right before the dot product, so that their
#   size no longer depends on $\sigma$ (appendix B lists how real models do it). What is measured below
#   is a LayerNorm without its learned gain: afterwards every vector has mean 0 and norm $\sqrt{d_k}$,
#   whatever $\sigma$ was, so $q\cdot k = d_k \cos\theta$ and, for random directions in the $d_k - 1$
#   dimensions that a zero mean leaves, $\mathrm{Var}(q\cdot k/\sqrt{d_k}) = d_k/(d_k-1)$.
#
# Each measured at $d_k = 64$ with 10,000 samples, next to the mean largest weight of a 16-key row:

# %% [markdown] tags=["lang-zh"]
# ## 4. 只除以 $\sqrt{d_k}$ 还不够的时候
#
# 上面的推导假设各分量的方差为 1。但网络里没有任何机制保证这一点：换一种初始化方式、某一层没有归一化、或者训练中权重逐渐变大，都会改变 $\sigma$。由于缩放后的方差是 $\sigma^4$，$\sigma$ 变成 2 倍，分数的方差就变成 16 倍。常用的补救办法有两种：
#
# - **温度**：把分数再除以一个 $\tau$。取 $\tau = \sigma^2$ 时方差恢复为 1；由于 $\sigma$ 事先未知，且会在训练中变化，有时也把 $\tau$ 设为可学习的参数。
# - **QK 归一化**：在点积之前，先对每个头的查询和键做归一化，让它们的大小不再取决于 $\sigma$（实际模型的做法见附录 B）。下面实测的是不带可学习增益的 LayerNorm：归一化后，无论 $\sigma$ 是多少，每个向量的均值都为 0、范数都为 $\sqrt{d_k}$，因此 $q\cdot k = d_k \cos\theta$。均值为 0 去掉了一个自由度，若方向在剩下的 $d_k - 1$ 维中随机分布，则 $\mathrm{Var}(q\cdot k/\sqrt{d_k}) = d_k/(d_k-1)$。
#
# 下面在 $d_k = 64$ 时用 10,000 个样本逐一实测，并给出 16 个键的一行 softmax 的平均最大权重：

# %%
rows = []
for std in (0.5, 1.0, 2.0, 4.0):
    plain = E.dot_product_variance(64, 10_000, scaled=True, std=std, seed=0)
    normed = E.dot_product_variance(64, 10_000, scaled=True, std=std, qk_norm=True, seed=0)
    tempered = E.dot_product_variance(64, 10_000, scaled=True, std=std, temperature=std**2, seed=0)
    top_plain = E.saturation(64, 16, 256, scaled=True, std=std, seed=0)["max_weight"]
    top_normed = E.saturation(64, 16, 256, scaled=True, std=std, qk_norm=True, seed=0)["max_weight"]
    rows.append([std, f"{std**4:g}", f"{plain:.3g}", f"{top_plain:.3f}", f"{normed:.3f}", f"{top_normed:.3f}", f"{tempered:.3f}"])
print(format_table([t("ch02.col.std"), t("ch02.col.theory"), t("ch02.col.plain"), t("ch02.col.max_w"),
                    t("ch02.col.qknorm"), t("ch02.col.max_w"), t("ch02.col.temp")], rows))
print(t("ch02.nb.qknorm_theory", v=E.dot_product_variance_theory(64, scaled=True, qk_norm=True)))

# %% [markdown] tags=["lang-en"]
# With $\sigma = 0.5$ the scaled scores have variance 0.0625 and the softmax is nearly uniform (largest
# weight 0.095, barely above $1/16$): attention cannot focus. With $\sigma = 4$ the variance is 256,
# as if scores of $d_k = 256$ had not been scaled at all, and the softmax saturates (0.927; the unscaled
# table of section 3 gives 0.914 at $d_k = 256$). QK-norm gives 1.018 (theory $d_k/(d_k-1) = 1.016$)
# and the same rows (largest weight 0.244) for every $\sigma$; the temperature $\tau = \sigma^2$ gives
# 1.000 for every $\sigma$. (The digits repeat exactly down each of those two columns because the
# same random draws are used for each $\sigma$, and both fixes cancel $\sigma$ exactly.)
# Large models (ViT-22B, OLMo 2, Gemma 3) use QK-norm precisely because attention scores that grow
# during training destabilise the training (Dehghani et al. 2023; Wortsman et al. 2024).

# %% [markdown] tags=["lang-zh"]
# $\sigma = 0.5$ 时，缩放后分数的方差只有 0.0625，softmax 几乎是均匀分布（最大权重 0.095，只比 $1/16$ 略大）：注意力无法聚焦。$\sigma = 4$ 时方差达到 256，相当于 $d_k = 256$ 的分数完全没有缩放，softmax 随之饱和（0.927；第 3 节中不缩放的表格在 $d_k = 256$ 时为 0.914）。QK 归一化对所有 $\sigma$ 都给出 1.018（理论值 $d_k/(d_k-1) = 1.016$）和相同的 softmax 行（最大权重 0.244）；温度 $\tau = \sigma^2$ 对所有 $\sigma$ 都给出 1.000。（这两列各自从上到下的数字完全相同，是因为每个 $\sigma$ 用的是同一批随机数，而这两种办法都把 $\sigma$ 精确地抵消掉了。）大模型（ViT-22B、OLMo 2、Gemma 3）采用 QK 归一化，正是因为训练中不断变大的注意力分数会让训练不稳定（Dehghani 等，2023；Wortsman 等，2024）。

# %% [markdown] tags=["lang-en"]
# ## 5. What it costs
#
# Scaling the $(L, S)$ score matrix costs $LS$ multiplications, next to the $2LSd_k$ FLOPs of
# $QK^\top$ — a fraction $1/(2d_k)$, under 1% for $d_k = 64$. Since $(cQ)K^\top = c\,(QK^\top)$, the
# scale can also be folded into the $(L, d_k)$ queries: $Ld_k$ multiplications instead of $LS$
# (PyTorch's math backend scales $Q$ and $K$, each by the square root of the scale; FlashAttention
# folds the scale into the exponent of its softmax). Fewer multiplications need not mean less time.
# Scaling the scores is one extra pass over the whole $(L, S)$ matrix in memory: few FLOPs next to
# the matrix product's, but not necessarily little time, since the pass reads and writes $LS$
# numbers while the product reads only $2Ld_k$ (for $d_k = 64$ it computes much and moves little).
# How much the pass adds, and which variant wins, depends on the machine and on what else it is
# running; the lines under the table print what this run measured.
# Measured for $L = S = 1024$, $d_k = 64$, the three variants timed in turn on one thread (median of
# 20 each); the lines under the table, printed from these numbers, say what this run found:

# %% [markdown] tags=["lang-zh"]
# ## 5. 开销
#
# 对 $(L, S)$ 的分数矩阵做缩放需要 $LS$ 次乘法，而 $QK^\top$ 需要 $2LSd_k$ 次浮点运算——只占 $1/(2d_k)$，$d_k = 64$ 时不到 1%。由于 $(cQ)K^\top = c\,(QK^\top)$，也可以把缩放系数并入 $(L, d_k)$ 的查询，乘法次数从 $LS$ 降到 $Ld_k$（PyTorch 的 math 后端把 $Q$ 和 $K$ 各乘以缩放系数的平方根；FlashAttention 则把缩放系数并入 softmax 的指数运算）。不过乘法少不等于耗时少。缩放分数就是把整个 $(L, S)$ 矩阵在内存中多扫一遍：浮点运算次数比矩阵乘法少得多，耗时却未必少，因为这一遍要读写 $LS$ 个数，而矩阵乘法只需读入 $2Ld_k$ 个数（$d_k = 64$ 时它算得多、搬得少）。多扫这一遍要多花多少时间、哪种做法更快，取决于机器本身和它同时在运行的其他任务；表格下面几行打印的是本次运行的实测结果。下面实测 $L = S = 1024$、$d_k = 64$ 的情况：三种做法在单线程上轮流计时，各取 20 次的中位数；表格下面几行根据这些实测数字，说明本次运行的结果：

# %% tags=["nbval-ignore-output"]
from attnkit.timing import one_thread, round_robin_medians

torch.manual_seed(0)
qc, kc = torch.randn(1024, 64), torch.randn(1024, 64)
c = 1 / math.sqrt(64)
with one_thread():
    ms = {name: s * 1e3 for name, s in round_robin_medians(
        {"none": lambda: qc @ kc.T, "scores": lambda: (qc @ kc.T) * c, "query": lambda: (qc * c) @ kc.T},
        repeats=20).items()}
print(format_table([t("ch02.col.where"), t("ch02.col.ms")],
                   [[t(f"ch02.where.{name}"), f"{ms[name]:.3f}"] for name in ("none", "scores", "query")]))
for name in ("scores", "query"):  # what the extra pass adds to the product alone, on this run
    print(t("ch02.nb.overhead", where=t(f"ch02.where.{name}"), p=100 * (ms[name] / ms["none"] - 1)))
fast, slow = sorted(("scores", "query"), key=ms.get)
print(t("ch02.nb.faster", fast=t(f"ch02.where.{fast}"), slow=t(f"ch02.where.{slow}"), r=ms[slow] / ms[fast]))
print(t("ch02.nb.same_scores", ok=torch.allclose((qc @ kc.T) * c, (qc * c) @ kc.T, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# ## 6. Pitfalls
#
# **Dividing by $d_k$ instead of $\sqrt{d_k}$.** Then $\mathrm{Var} = 1/d_k$, and the softmax
# becomes nearly uniform: every query averages everything. At $d_k = 64$:

# %% [markdown] tags=["lang-zh"]
# ## 6. 常见陷阱
#
# **除以 $d_k$ 而不是 $\sqrt{d_k}$。** 这样方差变成 $1/d_k$，softmax 几乎变成均匀分布：每个查询都对所有位置取平均。在 $d_k = 64$ 时：

# %%
right = E.saturation(64, 16, 512, scaled=True, seed=0)
wrong = E.saturation(64, 16, 512, scaled=True, temperature=math.sqrt(64), seed=0)  # q·k / √d_k / √d_k = q·k / d_k
print(t("ch02.nb.div_stats", div="/ √d_k", w=right["max_weight"], h=right["entropy"]))
print(t("ch02.nb.div_stats", div="/ d_k ", w=wrong["max_weight"], h=wrong["entropy"])
      + t("ch02.nb.uniform", p=1 / 16, h=math.log(16)))

# %% [markdown] tags=["lang-en"]
# **Scaling twice.** `F.scaled_dot_product_attention` already divides by $\sqrt{d_k}$. If you scale
# the queries yourself (say, to fold the scale into a projection), pass `scale=1.0`, or you divide twice:

# %% [markdown] tags=["lang-zh"]
# **缩放了两次。** `F.scaled_dot_product_attention` 本身已经除以了 $\sqrt{d_k}$。如果你自己先缩放了查询（比如把缩放系数并入投影矩阵），就要传入 `scale=1.0`，否则就除了两次：

# %%
q_scaled = qh / math.sqrt(64)
print(t("ch02.nb.twice_default", ok=torch.allclose(F.scaled_dot_product_attention(q_scaled, kh, vh), ours, atol=1e-6)))
print(t("ch02.nb.twice_one", ok=torch.allclose(F.scaled_dot_product_attention(q_scaled, kh, vh, scale=1.0), ours, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **$d_k$ is the head dimension, not the model width.** With 8 heads on a 512-wide model each head
# has $d_k = 64$; dividing by $\sqrt{512}$ leaves a variance of $64/512$:

# %% [markdown] tags=["lang-zh"]
# **$d_k$ 是头维度，不是模型宽度。** 宽度为 512 的模型有 8 个头时，每个头的 $d_k = 64$；若除以 $\sqrt{512}$，方差只剩 $64/512$：

# %%
head_dots = E.dot_products(64, 20_000, seed=0)  # q·k with d_k = 64, unscaled
print(f"Var(q·k / √64)  = {(head_dots / math.sqrt(64)).var():.3f}")
print(f"Var(q·k / √512) = {(head_dots / math.sqrt(512)).var():.3f}   (64 / 512 = {64 / 512:.3f})")

# %% [markdown] tags=["lang-en"]
# ## 7. Exercises
#
# Each checker runs your function on several cases and tells you the first that fails, with the
# expected and the actual result and a hint.
#
# **Exercise 1.** Return the closed-form variance of $q\cdot k$ when $q, k \in \mathbb{R}^{d_k}$ have
# independent entries with mean 0 and standard deviation `std`.

# %% [markdown] tags=["lang-zh"]
# ## 7. 练习
#
# 每个检查器都会在若干用例上运行你的函数，并指出第一个未通过的用例，给出期望结果、你的结果和一条提示。
#
# **练习 1**：设 $q, k \in \mathbb{R}^{d_k}$ 的各分量相互独立，均值为 0，标准差为 `std`。用闭式表达式算出并返回 $q\cdot k$ 的方差。

# %%
from attnkit.exercises.ch02 import check_dot_variance, check_first_saturated_dk, check_unit_variance_scale


def my_dot_variance(d_k, std):
    # your code here
    raise NotImplementedError


_ = check_dot_variance(my_dot_variance)

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** Return the scale $c > 0$ such that $c\,(q\cdot k)$ has variance 1, for the same
# $q, k$ as in exercise 1.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：对于与练习 1 相同的 $q, k$，返回使 $c\,(q\cdot k)$ 方差为 1 的缩放系数 $c > 0$。

# %%
def my_unit_variance_scale(d_k, std):
    # your code here
    raise NotImplementedError


_ = check_unit_variance_scale(my_unit_variance_scale)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** With `attnkit.experiments.saturation`, find the smallest $d_k$ in
# `DK_CHOICES = (1, 2, 4, ..., 1024)` at which the *unscaled* softmax's largest weight reaches
# `threshold` on average, for rows of `seq_len` keys (use `n_rows=256, seed=0`). Return `None` if no
# $d_k$ does.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：用 `attnkit.experiments.saturation`（参数 `n_rows=256, seed=0`），在 `DK_CHOICES = (1, 2, 4, ..., 1024)` 中找出最小的 $d_k$，使每行有 `seq_len` 个键时，*不缩放*的 softmax 的平均最大权重达到 `threshold`。如果没有这样的 $d_k$，返回 `None`。

# %%
from attnkit.exercises.ch02 import DK_CHOICES


def my_first_saturated_dk(threshold, seq_len):
    # your code here
    raise NotImplementedError


_ = check_first_saturated_dk(my_first_saturated_dk)

# %% [markdown] tags=["lang-en"]
# **Stretch: when the entries have a mean.** Section 1 assumed entries of mean 0. Keys often have
# a mean (after a ReLU, or a bias shared by all of them), and queries and keys need not have the
# same spread. Return the variance of $q\cdot k$ when the $d_k$ entries are independent, those of
# $q$ with mean `mean_q` and standard deviation `std_q`, those of $k$ with `mean_k` and `std_k`.
# Derive it first; then, before you run the checker, test your formula against a sampled variance
# (`torch.randn`) in this cell. `attnkit.experiments`' variance functions are refused.

# %% [markdown] tags=["lang-zh"]
# **挑战题：分量有均值的时候。** 第 1 节假设各分量的均值为 0。而键常常带有均值（比如经过 ReLU 之后，或所有键共用一个偏置），查询和键的分布宽度也不一定相同。设 $d_k$ 个分量相互独立，$q$ 的分量均值为 `mean_q`、标准差为 `std_q`，$k$ 的分量均值为 `mean_k`、标准差为 `std_k`，返回 $q\cdot k$ 的方差。先推导；运行检查器之前，在这个单元格里用抽样（`torch.randn`）算出的方差验证你的公式。`attnkit.experiments` 里的方差函数不能用。

# %%
from attnkit.exercises.ch02 import check_score_variance


def my_score_variance(d_k, mean_q, std_q, mean_k, std_k):
    # your code here
    raise NotImplementedError


_ = check_score_variance(my_score_variance)

# %% [markdown] tags=["lang-en"]
# ## 8. Summary
#
# - A dot product of $d_k$ independent unit-variance entries has variance $d_k$ (measured: 64.353
#   for $d_k = 64$, 1.2 standard errors from the theory); divided by $\sqrt{d_k}$ it has variance 1.
# - Large scores saturate the softmax: the largest weight goes to 1 and the Jacobian
#   $\mathrm{diag}(p) - pp^\top$ goes to 0, so gradients vanish. Scaling keeps the softmax in its
#   useful range for every $d_k$.
# - The spread of the scores grows like $\sqrt{d_k}$ (question 1); a saturated row does not move when its
#   scores move, which is why its gradient vanishes.
# - The fix assumes unit-variance entries. When they are not, a temperature or QK-norm restores control.
# - The scale is almost free ($LS$ or $Ld_k$ multiplications); apply it once, with $d_k$ the head dimension.
#
# **Next:** chapter 03 — the softmax itself: why it is used, how to compute it without overflow, masks,
# temperature, and the online softmax behind FlashAttention.
#
# ## References
# - A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 — §3.2.1, eq. (1) and footnote 4 (the variance argument).
# - A. Henry et al., *Query-Key Normalization for Transformers*, Findings of EMNLP 2020 (QK-norm).
# - M. Dehghani et al., *Scaling Vision Transformers to 22 Billion Parameters*, ICML 2023 — §2 (QK normalization against diverging attention logits).
# - M. Wortsman et al., *Small-scale proxies for large-scale Transformer training instabilities*, ICLR 2024 — attention logit growth and qk-layernorm.

# %% [markdown] tags=["lang-zh"]
# ## 8. 小结
#
# - $d_k$ 个相互独立、方差为 1 的分量，其点积的方差为 $d_k$（实测：$d_k = 64$ 时为 64.353，与理论相差 1.2 个标准误差）；除以 $\sqrt{d_k}$ 后方差为 1。
# - 分数过大会让 softmax 饱和：最大权重趋于 1，雅可比矩阵 $\mathrm{diag}(p) - pp^\top$ 趋于 0，梯度随之消失。缩放让 softmax 在任何 $d_k$ 下都保持在有效的工作区间。
# - 分数分布的宽度按 $\sqrt{d_k}$ 增长（问题 1）；饱和的一行在分数变化时纹丝不动，所以梯度会消失。
# - 这个办法假设分量方差为 1；不满足时，可以用温度或 QK 归一化重新控制分数的尺度。
# - 缩放几乎不花代价（$LS$ 或 $Ld_k$ 次乘法）；只缩放一次，并且 $d_k$ 要用头维度。
#
# **下一章**：第 3 章——softmax 本身：为什么用它、如何计算才不会溢出、掩码、温度，以及 FlashAttention 背后的在线 softmax。
#
# ## 参考文献
# - A. Vaswani 等，*Attention Is All You Need*，NeurIPS 2017——§3.2.1，式 (1) 及脚注 4（方差论证）。
# - A. Henry 等，*Query-Key Normalization for Transformers*，Findings of EMNLP 2020（QK 归一化）。
# - M. Dehghani 等，*Scaling Vision Transformers to 22 Billion Parameters*，ICML 2023——§2（用 QK 归一化防止注意力 logits 发散）。
# - M. Wortsman 等，*Small-scale proxies for large-scale Transformer training instabilities*，ICLR 2024——注意力 logits 增长与 qk-layernorm。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. The standard error of a sample variance
#
# For $n$ independent samples of a score $X$ with mean 0, the sample variance has standard error
# $\mathrm{SE} \approx \sqrt{(E[X^4] - \mathrm{Var}(X)^2)/n}$: the variance of $X^2$, divided by $n$.
# For $X = q\cdot k$, a sum of $d_k$ products of standard normals, expanding $X^4$ and keeping the
# terms whose expectation is not 0 gives $E[(q\cdot k)^4] = 3d_k^2 + 6d_k$ (each product $q_ik_i$
# has $E[(q_ik_i)^2] = 1$ and $E[(q_ik_i)^4] = 3 \cdot 3 = 9$), so
#
# $$\mathrm{SE} \approx \sqrt{\frac{3d_k^2 + 6d_k - d_k^2}{n}} = \sqrt{\frac{2d_k^2 + 6d_k}{n}}.$$
#
# The fourth moment, measured on section 2's 100,000 pairs:

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. 样本方差的标准误差
#
# 对均值为 0 的分数 $X$ 取 $n$ 个独立样本，样本方差的标准误差约为 $\mathrm{SE} \approx \sqrt{(E[X^4] - \mathrm{Var}(X)^2)/n}$，也就是 $X^2$ 的方差除以 $n$ 再开方。对 $X = q\cdot k$（$d_k$ 个标准正态变量之积的和），把 $X^4$ 展开，只保留期望不为 0 的项，得到 $E[(q\cdot k)^4] = 3d_k^2 + 6d_k$（每个乘积 $q_ik_i$ 满足 $E[(q_ik_i)^2] = 1$，$E[(q_ik_i)^4] = 3 \cdot 3 = 9$），因此
#
# $$\mathrm{SE} \approx \sqrt{\frac{3d_k^2 + 6d_k - d_k^2}{n}} = \sqrt{\frac{2d_k^2 + 6d_k}{n}}.$$
#
# 在第 2 节的 100,000 对向量上实测这个四阶矩：

# %%
fourth = (dots.double() ** 4).mean().item()
print(t("ch02.nb.fourth_moment", n=n, m=round(fourth, -1), th=3 * d_k**2 + 6 * d_k))  # to the nearest 10

# %% [markdown] tags=["lang-en"]
# 12530 against 12672: close, though not as close as the variances of section 2, because a fourth
# moment is much noisier to measure than a variance.

# %% [markdown] tags=["lang-zh"]
# 实测 12530，理论 12672：相当接近，但不如第 2 节的方差那么接近，因为四阶矩比方差难测得多，噪声大得多。

# %% [markdown] tags=["lang-en"]
# ## Appendix B. QK-norm in real models
#
# Henry et al. (2020) divide each query and key by its L2 norm and learn the scale; ViT-22B applies a
# LayerNorm over each head's query and key (Dehghani et al. 2023, §2); Gemma 3 and Qwen3 apply an
# RMSNorm per head, over the head dimension, while OLMo 2 applies one RMSNorm to the whole flattened
# query and key projections before splitting them into heads (`Olmo2RMSNorm(num_attention_heads *
# head_dim)` in Hugging Face transformers). Section 4 measures the per-head kind.

# %% [markdown] tags=["lang-zh"]
# ## 附录 B. 实际模型中的 QK 归一化
#
# Henry 等（2020）用 L2 范数归一化查询和键，并学习缩放系数；ViT-22B 对每个头的查询和键做 LayerNorm（Dehghani 等，2023，§2）；Gemma 3 和 Qwen3 对每个头沿头维度做 RMSNorm；OLMo 2 则不分头：在拆分头之前，对整个展平的查询投影和键投影各做一次 RMSNorm，即 Hugging Face transformers 中的 `Olmo2RMSNorm(num_attention_heads * head_dim)`。第 4 节实测的是按头归一化。
