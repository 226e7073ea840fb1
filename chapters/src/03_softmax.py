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
# # 03 · Softmax
#
# **What you will learn**
# - why attention turns scores into weights with a softmax, worked through on the scores $[2.3, 9.1, 0.5]$;
# - how to compute it without overflow in float32, float16 and bfloat16, and the log-sum-exp trick;
# - masked softmax: $-\infty$ entries, a row with every entry masked, and why $-10^9$ (and, in appendix A, `finfo.min`) misbehave;
# - temperature, with a slider, and its limit, the argmax;
# - the **online softmax**: one streaming pass with a running max and a running sum, and how two partial results merge — the idea behind flash attention (chapter 07);
# - the softmax Jacobian $\mathrm{diag}(p) - pp^\top$, checked against autograd.
#
# **You need** chapter 01 (attention) and chapter 02 (why scores are scaled).

# %% [markdown] tags=["lang-zh"]
# # 03 · Softmax
#
# **本章内容**
# - 注意力为什么用 softmax 把分数变成权重，并以分数 $[2.3, 9.1, 0.5]$ 为例逐步演算；
# - 如何在 float32、float16 和 bfloat16 下计算 softmax 而不溢出，以及 log-sum-exp 技巧；
# - 带掩码的 softmax：$-\infty$ 元素、全被屏蔽的行，以及为什么 $-10^9$（还有附录 A 中的 `finfo.min`）会出问题；
# - 温度（可以拖动滑块），以及它的极限——argmax；
# - **在线 softmax**：一次流式遍历，维护当前最大值和当前累加和，以及如何合并两个部分结果——这正是 FlashAttention（第 7 章）背后的思想；
# - softmax 的雅可比矩阵 $\mathrm{diag}(p) - pp^\top$，并与自动求导的结果对照。
#
# **预备知识**：第 1 章（注意力）和第 2 章（为什么要缩放分数）。

# %%
import math

import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch03  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import experiments as E
from attnkit import softmax as S
from attnkit.viz import format_table
from attnkit.widgets.softmax import temperature_explorer

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. Why softmax?
#
# Attention needs, for each query, weights over the keys that are **non-negative and sum to 1**,
# so that the output is a weighted *average* of the values. The softmax does exactly this:
#
# $$\mathrm{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}} .$$
#
# The exponential makes every weight positive and turns *differences* of scores into *ratios* of
# weights: a score higher by 1 means a weight $e \approx 2.72$ times larger. Our scores $[2.3, 9.1, 0.5]$,
# with the formula as written, in two lines, then checked against attnkit and PyTorch:

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么用 softmax？
#
# 对每个查询，注意力要给各个键分配权重，这些权重**非负且和为 1**，这样输出才是值的加权*平均*。softmax 恰好做到这一点：
#
# $$\mathrm{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}} .$$
#
# 指数函数让每个权重都为正，并把分数之间的*差*变成权重之间的*比*：分数高 1，权重就大 $e \approx 2.72$ 倍。下面直接按公式、用两行代码计算分数 $[2.3, 9.1, 0.5]$ 的 softmax，再与 attnkit 和 PyTorch 对照：

# %%
def my_softmax(x):
    e = torch.exp(x)                            # the formula as written (section 2 finds its flaw)
    return e / e.sum(dim=-1, keepdim=True)      # normalise: rows sum to 1


scores = torch.tensor([2.3, 9.1, 0.5], dtype=torch.float64)
p = my_softmax(scores)
print("scores :", scores.tolist())
print("exp    :", [round(v, 2) for v in torch.exp(scores).tolist()])
print("softmax:", [round(v, 5) for v in p.tolist()], " sum =", round(p.sum().item(), 6))
print(t("ch03.matches_attnkit", ok=torch.allclose(p, S.softmax(scores))))
print(t("ch03.matches_torch", ok=torch.allclose(p, torch.softmax(scores, dim=-1))))

# %% [markdown] tags=["lang-en"]
# $e^{9.1} = 8955.29$ dwarfs $e^{2.3} = 9.97$ and $e^{0.5} = 1.65$, so the second position takes 0.9987
# of the attention and the others 0.00111 and 0.00018. The ranking is kept, but the softmax is far
# more decisive than the scores look: a gap of 6.8 already means almost all the weight.
#
# Why not simply take the largest score (an argmax, a *hard* attention)? Because it has no gradient:
# a small change of the scores does not change which one is largest, so nothing tells the model how
# to improve them. The softmax is a smooth version of the argmax: every score gets a gradient. And
# its output is a weighted average, so it always lies between the smallest and the largest value —
# bounded, whatever the scores:

# %% [markdown] tags=["lang-zh"]
# $e^{9.1} = 8955.29$ 远大于 $e^{2.3} = 9.97$ 和 $e^{0.5} = 1.65$，因此第二个位置拿走了 0.9987 的注意力，另外两个只分到 0.00111 和 0.00018。排序保持不变，但 softmax 比分数本身看起来要“果断”得多：分数相差 6.8，就已经拿走了几乎全部权重。
#
# 为什么不直接取分数最大的那个（argmax，也就是*硬*注意力）？因为它没有梯度：分数稍微变化，最大的那个并不会改变，模型也就得不到任何关于如何改进分数的信号。softmax 是 argmax 的平滑版本：每个分数都能得到梯度。而且它的输出是值的加权平均，无论分数是多少，结果总是介于最小的值和最大的值之间——是有界的：

# %%
x = scores.clone().requires_grad_(True)
v = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)  # one value per position
out = (S.softmax(x) * v).sum()  # a weighted average of the values
out.backward()
print(t("ch03.soft_out", out=out.item(), g=[round(g, 5) for g in x.grad.tolist()]))
hard = F.one_hot(scores.argmax(), 3).float()  # argmax picks one position
print(t("ch03.hard_out", out=(hard * v).sum().item(), rg=hard.requires_grad))
print(t("ch03.bounded", lo=v.min().item(), out=out.item(), hi=v.max().item()))

# %% [markdown] tags=["lang-en"]
# The softmax output $-1.9957$ is almost the argmax output $-2$, yet every score receives a gradient
# ($[0.00333, -0.00425, 0.00092]$), while the one-hot argmax is not even connected to the graph.
#
# **Predict first (question 1).** Add 100 to each of the scores, $[102.3, 109.1, 100.5]$. What
# happens to the softmax? a) the largest weight moves closer to 1; b) nothing: the same weights;
# c) the weights become nearly uniform, the gaps being small next to 100; d) it overflows and gives
# NaN. Answer with a letter; section 2 uses the answer.

# %% [markdown] tags=["lang-zh"]
# softmax 的输出 $-1.9957$ 几乎等于 argmax 的输出 $-2$，但每个分数都得到了梯度（$[0.00333, -0.00425, 0.00092]$），而独热的 argmax 根本没有连在计算图上。
#
# **问题 1（先预测）**：给每个分数都加上 100，得到 $[102.3, 109.1, 100.5]$。softmax 会怎样？a) 最大权重更接近 1；b) 什么都不变，权重完全相同；c) 权重变得几乎均匀，因为与 100 相比分数之间的差距很小；d) 溢出，得到 NaN。用字母作答；第 2 节要用到这个答案。

# %%
from attnkit.exercises.ch03 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# ## 2. Numerical stability
#
# The formula as written overflows: $e^{x}$ becomes $\infty$ once it exceeds the largest finite
# number of the dtype, and then $\infty/\infty$ gives NaN. The fix costs nothing, because the softmax
# does not change when the same number is subtracted from every score:
#
# $$\frac{e^{x_i}}{\sum_j e^{x_j}} = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j ,$$
#
# and with $m$ the maximum every exponent is $\le 0$, every term $\le 1$, and the sum is at least 1.
# (That is question 1's answer, b: $e^{x_i + c} = e^c e^{x_i}$, and the factor $e^c$ cancels.)
# The cell below prints where $e^{x}$ overflows in each dtype, then runs section 1's `my_softmax`,
# the formula as written, next to attnkit's stable `softmax`:

# %% [markdown] tags=["lang-zh"]
# ## 2. 数值稳定性
#
# 直接按公式计算会溢出：$e^{x}$ 一旦超过该数据类型能表示的最大有限值就变成 $\infty$，于是 $\infty/\infty$ 得到 NaN。解决办法不花任何代价，因为给每个分数减去同一个数，softmax 不变：
#
# $$\frac{e^{x_i}}{\sum_j e^{x_j}} = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j ,$$
#
# 取 $m$ 为最大值时，每个指数都 $\le 0$，每一项都 $\le 1$，而和至少为 1。（这就是问题 1 的答案 b：$e^{x_i + c} = e^c e^{x_i}$，因子 $e^c$ 被约掉了。）下面的单元格先打印每种数据类型下 $e^{x}$ 从哪里开始溢出，再把第 1 节直接按公式写的 `my_softmax` 与 attnkit 稳定的 `softmax` 放在一起比较：

# %%
cases = [(torch.float32, [1000.0, 1001.0, 999.0]), (torch.float16, [20.0, 10.0, 0.0]), (torch.bfloat16, [100.0, 90.0, 0.0])]
for dtype, _ in cases:
    fmax = torch.finfo(dtype).max  # the largest finite number: exp(x) overflows for x > log(fmax)
    print(t("ch03.overflow", dtype=str(dtype).replace("torch.", ""), fmax=fmax, x=math.log(fmax)))
rows = []
for dtype, vals in cases:
    xs = torch.tensor(vals, dtype=dtype)
    rows.append([str(dtype).replace("torch.", ""), str(vals), str(torch.exp(xs)[0].item()),
                 str([round(v, 4) for v in my_softmax(xs).float().tolist()]),
                 str([round(v, 4) for v in S.softmax(xs).float().tolist()])])
print(format_table(["dtype", "x", "exp(x[0])", t("ch03.col.naive"), t("ch03.col.stable")], rows))

# %% [markdown] tags=["lang-en"]
# $e^{x}$ overflows for $x > 88.72$ in float32 (largest finite number about $3.4\times10^{38}$), for
# $x > 11.09$ in float16 (largest finite number 65504), and for $x > 88.72$ in bfloat16 (about $3.4\times10^{38}$ too).
# Every naive row has a NaN; every stable row is correct (attnkit computes float16 and bfloat16 in
# float32 and casts back, as PyTorch does on CPU). The same trick gives the **log-sum-exp**,
# $\log\sum_j e^{x_j} = m + \log\sum_j e^{x_j - m}$, which appears in cross-entropy losses, in
# `log_softmax`, and in chapter 07. It also avoids a second trap: $\log(\mathrm{softmax})$ of a very
# small probability underflows to $-\infty$, while $x - \mathrm{logsumexp}(x)$ stays exact:

# %% [markdown] tags=["lang-zh"]
# 在 float32 中 $x > 88.72$ 时 $e^{x}$ 溢出（最大有限值约为 $3.4\times10^{38}$），在 float16 中 $x > 11.09$ 时就溢出（最大值为 65504），在 bfloat16 中同样是 $x > 88.72$ 时溢出（最大值也约为 $3.4\times10^{38}$）。朴素实现的每一行都出现了 NaN，稳定实现的每一行都正确（attnkit 和 CPU 上的 PyTorch 一样，把 float16 和 bfloat16 转成 float32 计算后再转回去）。同样的技巧可以得到 **log-sum-exp**：$\log\sum_j e^{x_j} = m + \log\sum_j e^{x_j - m}$，它出现在交叉熵损失、`log_softmax` 以及第 7 章中。它还能避开第二个陷阱：对很小的概率先算 softmax 再取对数，$\log(\mathrm{softmax})$ 会下溢成 $-\infty$，而 $x - \mathrm{logsumexp}(x)$ 保持精确：

# %%
x = torch.tensor([1000.0, 1001.0, 999.0])
print("softmax(x) == softmax(x - 1000):", torch.allclose(S.softmax(x), S.softmax(x - 1000)))
print(t("ch03.lse_naive", v=torch.log(torch.exp(x).sum()).item()))
print(t("ch03.lse_stable", v=S.logsumexp(x).item(), w=torch.logsumexp(x, -1).item()))
y = torch.tensor([0.0, -200.0])
print("log(softmax(y))     :", torch.log(S.softmax(y)).tolist())
print("y - logsumexp(y)    :", (y - S.logsumexp(y)).tolist(), " torch.log_softmax:", torch.log_softmax(y, -1).tolist())

# %% [markdown] tags=["lang-en"]
# The stable log-sum-exp of $[1000, 1001, 999]$ is 1001.4076, where the naive one is $\infty$; and
# $\log p$ for a probability of $e^{-200}$ is $-200$, not $-\infty$.
#
# ## 3. Masked softmax
#
# A mask removes entries before the softmax by setting their scores to $-\infty$: $e^{-\infty} = 0$,
# so a masked entry gets weight exactly 0 and the rest renormalise. One case needs a definition: a
# row where *every* entry is masked (a padding query, say). Its softmax is $0/0$. PyTorch's
# `torch.softmax` returns NaN there, which then spreads through the network; PyTorch's attention
# (SDPA) and attnkit return zeros — the query attends to nothing:

# %% [markdown] tags=["lang-zh"]
# $[1000, 1001, 999]$ 的稳定 log-sum-exp 是 1001.4076，而朴素算法得到 $\infty$；概率为 $e^{-200}$ 时，$\log p$ 是 $-200$，而不是 $-\infty$。
#
# ## 3. 带掩码的 softmax
#
# 掩码在 softmax 之前把要去掉的分数设为 $-\infty$：$e^{-\infty} = 0$，所以被屏蔽的元素权重恰好为 0，其余元素重新归一化。有一种情况需要专门定义：一行中*所有*元素都被屏蔽，即全被屏蔽的行（比如填充位置上的查询）。它的 softmax 是 $0/0$。PyTorch 的 `torch.softmax` 在这里返回 NaN，NaN 随后会扩散到整个网络；PyTorch 的注意力（SDPA）和 attnkit 则返回零——这个查询什么也不关注：

# %%
NEG_INF = float("-inf")
x = torch.tensor([[2.3, 9.1, 0.5, 4.0],
                  [2.3, 9.1, 0.5, 4.0]], dtype=torch.float64)
keep = torch.tensor([[True, False, True, True],      # key 1 masked
                     [False, False, False, False]])  # every key masked
masked = x.masked_fill(~keep, NEG_INF)
print("torch.softmax  :", torch.softmax(masked, -1).numpy().round(4).tolist())
print("attnkit softmax:", S.softmax(masked).numpy().round(4).tolist())
eye = torch.eye(4, dtype=torch.float64)
print("PyTorch SDPA   :", F.scaled_dot_product_attention(x, eye, eye, attn_mask=keep, scale=1.0).numpy().round(4).tolist())

# %% [markdown] tags=["lang-en"]
# **Why not $-10^9$ instead of $-\infty$?** Many code bases fill masked scores with a large finite
# number. It works for rows that keep at least one entry, but a fully masked row becomes a *uniform*
# average over entries that were all supposed to be hidden. And in float16, $-10^9$ does not exist:
# `masked_fill` refuses it, and a cast turns it into $-\infty$:

# %% [markdown] tags=["lang-zh"]
# **为什么不用 $-10^9$ 代替 $-\infty$？** 很多代码库在被屏蔽的分数处填入一个很大的有限负数。只要一行中至少保留一个元素，这样做没有问题；但遇到全被屏蔽的行，结果变成了对这些本该全部隐藏的元素取*均匀*平均。而且 float16 根本表示不了 $-10^9$：`masked_fill` 会拒绝它，强制转换则会把它变成 $-\infty$：

# %%
print(t("ch03.fill_1e9", v=S.softmax(x.masked_fill(~keep, -1e9)).numpy().round(4).tolist()))
try:
    x.half().masked_fill(~keep, -1e9)
except RuntimeError as err:
    print("float16 masked_fill(-1e9):", err)
print(t("ch03.half", v=torch.tensor(-1e9).half().item()))

# %% [markdown] tags=["lang-en"]
# The fully masked row gets 0.25 on each of its four hidden entries. (Appendix A shows the subtler
# trap of `torch.finfo(dtype).min`, the other common stand-in for $-\infty$.)

# %% [markdown] tags=["lang-zh"]
# 全被屏蔽的那一行，四个本该隐藏的元素各分到 0.25。（附录 A 还演示了另一个常见的 $-\infty$ 替代品 `torch.finfo(dtype).min` 更隐蔽的陷阱。）

# %% [markdown] tags=["lang-en"]
# ## 4. Temperature
#
# Dividing the scores by a **temperature** $T > 0$ before the softmax, $\mathrm{softmax}(x/T)$, sharpens
# ($T < 1$) or flattens ($T > 1$) the distribution without changing its ranking. As $T \to 0$ it tends
# to the argmax (one-hot, or split evenly among tied maxima; `softmax(x, temperature=0)` returns this
# limit), and as $T \to \infty$ to the uniform distribution. The **entropy** $H(p) = -\sum_i p_i \log p_i$
# measures how spread the weights are: 0 for one-hot, $\log n$ for uniform.

# %% [markdown] tags=["lang-zh"]
# ## 4. 温度
#
# 在 softmax 之前把分数除以**温度** $T > 0$，即 $\mathrm{softmax}(x/T)$，可以让分布变得更尖锐（$T < 1$）或更平坦（$T > 1$），而不改变排序。当 $T \to 0$ 时，它趋于 argmax（独热分布；若有多个并列最大值，则在它们之间平分；`softmax(x, temperature=0)` 返回的就是这个极限），当 $T \to \infty$ 时趋于均匀分布。**熵** $H(p) = -\sum_i p_i \log p_i$ 衡量权重的分散程度：独热分布为 0，均匀分布为 $\log n$。

# %%
rows = []
for T in (0.0, 0.25, 1.0, 4.0, 100.0):
    p = S.softmax(scores, temperature=T)
    rows.append([T, str([round(v, 4) for v in p.tolist()]), f"{E.entropy(p).item():.4f}", f"{p.max().item():.4f}"])
print(format_table(["T", "softmax(x / T)", t("ch03.col.entropy"), t("ch03.col.max")], rows))
print(f"log 3 = {math.log(3):.4f}")

# %% [markdown] tags=["lang-en"]
# At $T = 4$ the largest weight drops from 0.9987 to 0.7697 and the entropy rises from 0.0104 to 0.6935;
# at $T = 100$ the entropy, 1.0979, is close to its maximum $\log 3 = 1.0986$. (Chapter 02's scale
# $1/\sqrt{d_k}$ is a temperature $T = \sqrt{d_k}$ chosen so that the scores have unit variance.)
#
# The explorer below does the same over eight scores: move the temperature (logarithmic, 0.01 to 100)
# and watch the bars, the argmax limit (red outline) and the point on the entropy curve. (Where widgets
# do not run, on GitHub for instance, the figure below shows the starting setting, $T = 1$.)

# %% [markdown] tags=["lang-zh"]
# $T = 4$ 时，最大权重从 0.9987 降到 0.7697，熵从 0.0104 升到 0.6935；$T = 100$ 时熵为 1.0979，接近最大值 $\log 3 = 1.0986$。（第 2 章的缩放系数 $1/\sqrt{d_k}$ 其实就是温度 $T = \sqrt{d_k}$，它的取值让分数的方差为 1。）
#
# 下面的交互控件对八个分数做同样的事：拖动温度滑块（对数刻度，从 0.01 到 100），观察柱状图、argmax 极限（红色边框）以及熵曲线上的当前点。（在 GitHub 等无法运行交互控件的地方，下面的静态图画的是初始设置 $T = 1$。）

# %% tags=["nbval-ignore-output"] alt="ch03.alt.explorer"
explorer = temperature_explorer(temperature=1.0)
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# ## 5. Online softmax
#
# The stable softmax reads a row three times: once for the max, once for the sum of exponentials,
# once to normalise. Milakov & Gimelshein (2018) noticed that the max and the sum can be computed
# **together, in one pass**, keeping two numbers: the running max $m$ and the running sum
# $\ell = \sum_{j \text{ seen}} e^{x_j - m}$. When a new entry $x$ arrives:
#
# $$m' = \max(m, x), \qquad \ell' = \ell\, e^{m - m'} + e^{x - m'} .$$
#
# The factor $e^{m - m'}$ re-bases the old sum to the new max (it is 1 when the max does not change).
# At the end, $p_i = e^{x_i - m}/\ell$. Traced on our scores:

# %% [markdown] tags=["lang-zh"]
# ## 5. 在线 softmax
#
# 稳定的 softmax 要把一行数据读三遍：一遍求最大值，一遍求指数和，一遍做归一化。Milakov 和 Gimelshein（2018）注意到，最大值和指数和可以**在一次遍历中同时**算出，只需维护两个数：当前最大值 $m$ 和当前累加和 $\ell = \sum_{j \text{ 已读}} e^{x_j - m}$。每读到一个新元素 $x$：
#
# $$m' = \max(m, x), \qquad \ell' = \ell\, e^{m - m'} + e^{x - m'} .$$
#
# 因子 $e^{m - m'}$ 把旧的累加和换算到新的最大值上（最大值不变时它等于 1）。最后 $p_i = e^{x_i - m}/\ell$。用我们的分数逐步跟踪：

# %%
def online_softmax_trace(x):
    m, l = float("-inf"), 0.0  # running max, running sum of exp(x_j - m)
    for j, xj in enumerate(x.tolist()):
        m_new = max(m, xj)
        l = l * math.exp(m - m_new) + math.exp(xj - m_new)  # rescale the old sum, add the new term
        m = m_new
        print(t("ch03.trace", j=j, xj=xj, m=m, l=l))
    return torch.exp(x - m) / l  # second pass: normalise


p_online = online_softmax_trace(scores)
print(t("ch03.equals_softmax", ok=torch.allclose(p_online, S.softmax(scores))))

# %% [markdown] tags=["lang-en"]
# When $9.1$ arrives, the old sum 1 (which was $e^{2.3 - 2.3}$) is rescaled by $e^{2.3 - 9.1}$ and the
# new term $e^{0}$ added, giving 1.001114; after $0.5$ the sum is 1.001298, and the weight of 9.1 is $e^{0}/1.001298 = 0.9987$.
#
# The same update works for **chunks** instead of single entries, and, more generally, any two
# partial results $(m_a, \ell_a)$ and $(m_b, \ell_b)$ over disjoint parts of a row merge into the
# result over their union:
#
# $$m = \max(m_a, m_b), \qquad \ell = \ell_a e^{m_a - m} + \ell_b e^{m_b - m} .$$
#
# This merge is associative and commutative, with $(m, \ell) = (-\infty, 0)$ (an empty part) as its
# neutral element, so any chunking in any order gives the same answer.
# The picture below follows a row of 8 scores in chunks of 3: each chunk's own state, then the
# running state after each merge (the numbers are computed, not typed). attnkit's `online_softmax`
# takes any chunking; `softmax_state` computes the $(m, \ell)$ of a chunk and `merge` combines two:

# %% [markdown] tags=["lang-zh"]
# 读到 $9.1$ 时，旧的累加和 1（即 $e^{2.3 - 2.3}$）乘以 $e^{2.3 - 9.1}$ 重新换算，再加上新的一项 $e^{0}$，得到 1.001114；读完 $0.5$ 后累加和为 1.001298，于是 9.1 的权重为 $e^{0}/1.001298 = 0.9987$。
#
# 同样的更新也适用于**分块**而不仅是单个元素。更一般地，一行中两个不相交片段的部分结果 $(m_a, \ell_a)$ 和 $(m_b, \ell_b)$，可以合并成它们并集上的结果：
#
# $$m = \max(m_a, m_b), \qquad \ell = \ell_a e^{m_a - m} + \ell_b e^{m_b - m} .$$
#
# 这个合并满足结合律和交换律，$(m, \ell) = (-\infty, 0)$（空的部分）是它的单位元，因此无论怎样分块、按什么顺序合并，结果都相同。下图把一行 8 个分数按每块 3 个处理：先是每一块自己的状态，再是每次合并后的当前状态（图中的数字是算出来的，不是手写的）。attnkit 的 `online_softmax` 接受任意分块方式；`softmax_state` 计算一个分块的 $(m, \ell)$，`merge` 把两个状态合并：

# %% alt="ch03.alt.online"
from attnkit.schematics.online_softmax import online_softmax_schematic

online_softmax_schematic([2.3, 9.1, 0.5, 4.0, 7.5, 1.0, 9.6, 3.2], chunk_size=3);

# %%
torch.manual_seed(0)
row = torch.randn(4, 1000) * 5
for chunks in (1, 7, [100, 400, 500], [999, 1]):
    same = torch.allclose(S.online_softmax(row, chunk_size=chunks), torch.softmax(row, -1), atol=1e-7)
    print(t("ch03.chunks", c=str(chunks), ok=same))
a, b = S.softmax_state(row[:, :300]), S.softmax_state(row[:, 300:])
both = S.merge(a, b)
print(t("ch03.merge_whole", l=torch.allclose(both.l, S.softmax_state(row).l), m=torch.equal(both.m, S.softmax_state(row).m)))
print(t("ch03.lse_from_state", ok=torch.allclose(both.logsumexp(), torch.logsumexp(row, -1, keepdim=True))))

# %% [markdown] tags=["lang-en"]
# The same merge works for attention's *outputs*, not only for the sums: appendix B merges two
# blocks of keys into exactly SDPA's output, the idea chapter 07 builds flash attention on.

# %% [markdown] tags=["lang-zh"]
# 同样的合并不仅适用于累加和，也适用于注意力的*输出*：附录 B 把两块键的结果合并，得到与 SDPA 完全相同的输出，第 7 章的 FlashAttention 正是建立在这个想法之上。

# %% [markdown] tags=["lang-en"]
# ## 6. The softmax Jacobian
#
# Differentiate $p_i = e^{x_i}/\sum_k e^{x_k}$ with the quotient rule: for $j = i$,
# $\partial p_i/\partial x_i = p_i - p_i^2$; for $j \ne i$, $\partial p_i/\partial x_j = -p_i p_j$. Together:
#
# $$J_{ij} = \frac{\partial p_i}{\partial x_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - p\,p^\top .$$
#
# $J$ is symmetric; its rows sum to 0 (adding a constant to every score changes nothing); and it
# vanishes when $p$ is one-hot, which is chapter 02's saturation. `softmax_jacobian` builds it, and
# `softmax_jacobian_norm` gives $\|J\|_F$ from a closed form without building it:

# %% [markdown] tags=["lang-zh"]
# ## 6. softmax 的雅可比矩阵
#
# 用商的求导法则对 $p_i = e^{x_i}/\sum_k e^{x_k}$ 求导：当 $j = i$ 时，$\partial p_i/\partial x_i = p_i - p_i^2$；当 $j \ne i$ 时，$\partial p_i/\partial x_j = -p_i p_j$。合起来就是：
#
# $$J_{ij} = \frac{\partial p_i}{\partial x_j} = p_i(\delta_{ij} - p_j), \qquad J = \mathrm{diag}(p) - p\,p^\top .$$
#
# $J$ 是对称矩阵；每行之和为 0（给所有分数加上同一个常数，结果不变）；当 $p$ 为独热分布时它变为零，这就是第 2 章里的饱和。`softmax_jacobian` 构造这个矩阵，`softmax_jacobian_norm` 则不构造矩阵，直接用闭式表达式给出 $\|J\|_F$：

# %%
x = torch.tensor([0.5, 2.0, -1.0, 1.0], dtype=torch.float64)
p = S.softmax(x)
J = S.softmax_jacobian(p)
J_autograd = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), x)
print("p =", p.numpy().round(4).tolist())
print("diag(p) - p p^T =\n", J.numpy().round(4))
print(t("ch03.eq_autograd", ok=torch.allclose(J, J_autograd)))
print(t("ch03.sym_rows", sym=torch.allclose(J, J.T), rows=torch.allclose(J.sum(-1), torch.zeros(4, dtype=torch.float64))))
print(t("ch03.jnorm", a=S.softmax_jacobian_norm(p).item(), b=torch.linalg.matrix_norm(J_autograd).item()))
for T in (1.0, 0.1):
    pT = S.softmax(x, temperature=T)
    print(t("ch03.temp_jnorm", T=T, w=pT.max().item(), j=S.softmax_jacobian_norm(pT).item()))

# %% [markdown] tags=["lang-en"]
# At $T = 1$ the largest weight is 0.609460 and $\|J\|_F = 0.394120$; at $T = 0.1$ the largest weight is
# 0.999954 and $\|J\|_F$ has fallen to 0.000091: a sharp softmax passes almost no gradient.
#
# ## 7. What it costs
#
# A softmax over an $L \times S$ score matrix costs about $5LS$ FLOPs (max, subtract, exp, sum,
# divide) and, more importantly, reads and writes the whole matrix several times: the three-pass
# version reads it 3 times and writes it once; the online version reads it twice. On a GPU the
# softmax is limited by this memory traffic rather than by arithmetic, and this traffic is what flash
# attention saves: it never writes the score matrix to GPU memory at all.
# Measured here on a $1024 \times 1024$ matrix (the four timed in turn on one thread, median of 20 each; attnkit's and the online versions
# are plain PyTorch code, written for reading, not speed):

# %% [markdown] tags=["lang-zh"]
# 在 $T = 1$ 时，最大权重为 0.609460，$\|J\|_F = 0.394120$；在 $T = 0.1$ 时，最大权重为 0.999954，$\|J\|_F$ 已降到 0.000091：尖锐的 softmax 几乎传不回梯度。
#
# ## 7. 开销
#
# 对 $L \times S$ 的分数矩阵做 softmax，大约需要 $5LS$ 次浮点运算（求最大值、相减、取指数、求和、相除）；更重要的是，它要把整个矩阵读写好几遍：三遍式的实现读 3 遍、写 1 遍，在线版本只读 2 遍。在 GPU 上，限制 softmax 速度的是这些访存，而不是计算；FlashAttention 省下的也正是这部分访存量：它根本不把分数矩阵写入显存。下面在本机上对 $1024 \times 1024$ 的矩阵实测（四种实现在单线程上轮流计时，各取 20 次的中位数；attnkit 的实现和在线版本都是为了便于阅读而写的普通 PyTorch 代码，并不追求速度）：

# %% tags=["nbval-ignore-output"]
from attnkit.timing import one_thread, round_robin_medians

big = torch.randn(1024, 1024)
impls = {"torch.softmax": lambda: torch.softmax(big, -1), "attnkit softmax": lambda: S.softmax(big),
         "my_softmax": lambda: my_softmax(big),
         t("ch03.impl.online", n=128): lambda: S.online_softmax(big, chunk_size=128)}
with one_thread():
    medians = round_robin_medians(impls, repeats=20)
print(format_table([t("ch03.col.impl"), t("ch03.col.ms")],
                   [[name, f"{sec * 1e3:.3f}"] for name, sec in medians.items()]))

# %% [markdown] tags=["lang-en"]
# ## 8. Exercises
#
# Each checker runs your function on several cases and tells you the first that fails, with the
# expected and the actual result and a hint.
#
# **Exercise 1.** Fix section 1's `my_softmax`: a numerically stable softmax over the last
# dimension. It must not overflow for scores near 1000 in float32 or near 20 in float16. PyTorch's
# and attnkit's softmax are refused.

# %% [markdown] tags=["lang-zh"]
# ## 8. 练习
#
# 每个检查器都会在若干用例上运行你的函数，并指出第一个未通过的用例，给出期望结果、你的结果和一条提示。
#
# **练习 1**：修好第 1 节的 `my_softmax`：实现沿最后一维的数值稳定的 softmax。在 float32 中分数接近 1000、在 float16 中分数接近 20 时都不能溢出。PyTorch 和 attnkit 的 softmax 都不能用。

# %%
from attnkit.exercises.ch03 import check_masked_softmax, check_merge_states, check_softmax_jacobian, check_stable_softmax


def my_stable_softmax(x):
    # your code here
    raise NotImplementedError


_ = check_stable_softmax(my_stable_softmax)

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** A masked softmax over the last dimension: `mask` is boolean with the shape of `x`,
# True where an entry is kept. A row with every entry masked must give zeros (not NaN, not uniform).

# %% [markdown] tags=["lang-zh"]
# **练习 2**：实现沿最后一维的带掩码 softmax。`mask` 是与 `x` 形状相同的布尔张量，True 表示保留该元素。全被屏蔽的行必须输出全零（不能是 NaN，也不能是均匀分布）。

# %%
def my_masked_softmax(x, mask):
    # your code here
    raise NotImplementedError


_ = check_masked_softmax(my_masked_softmax)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Merge two online-softmax states: given $(m_a, \ell_a)$ and $(m_b, \ell_b)$ (tensors of
# shape `(rows, 1)`), return the tuple `(m, l)` of their union. An empty part has $m = -\infty$, $\ell = 0$.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：合并两个在线 softmax 状态：给定 $(m_a, \ell_a)$ 和 $(m_b, \ell_b)$（形状为 `(rows, 1)` 的张量），返回它们并集的元组 `(m, l)`。空的部分满足 $m = -\infty$，$\ell = 0$。

# %%
def my_merge_states(m_a, l_a, m_b, l_b):
    # your code here
    raise NotImplementedError


_ = check_merge_states(my_merge_states)

# %% [markdown] tags=["lang-en"]
# **Exercise 4.** The softmax Jacobian: given softmax outputs `p` of shape `(..., n)`, return
# $\mathrm{diag}(p) - pp^\top$ of shape `(..., n, n)`.

# %% [markdown] tags=["lang-zh"]
# **练习 4**：softmax 的雅可比矩阵。给定形状为 `(..., n)` 的 softmax 输出 `p`，返回形状为 `(..., n, n)` 的 $\mathrm{diag}(p) - pp^\top$。

# %%
def my_softmax_jacobian(p):
    # your code here
    raise NotImplementedError


_ = check_softmax_jacobian(my_softmax_jacobian)

# %% [markdown] tags=["lang-en"]
# **Stretch: the backward pass of log-softmax.** Cross-entropy losses go through
# $y = \mathrm{log\_softmax}(x) = x - \mathrm{logsumexp}(x)$. Given the scores `x` `(..., n)` and the
# gradient `grad` $= \partial L/\partial y$ that arrives from the loss, return $\partial L/\partial x$,
# `(..., n)`. Two conditions: it must be stable for scores near $\pm 1000$ in float32, and it must not
# build an $n \times n$ Jacobian (the checker measures your function's peak memory on rows of 2048
# scores). Autograd (`backward`, `torch.autograd.grad`, ...) is refused: derive it, starting from
# section 6's Jacobian.

# %% [markdown] tags=["lang-zh"]
# **挑战题：log-softmax 的反向传播。** 交叉熵损失要经过 $y = \mathrm{log\_softmax}(x) = x - \mathrm{logsumexp}(x)$。给定形状为 `(..., n)` 的分数 `x`，以及从损失传回来的梯度 `grad` $= \partial L/\partial y$，返回形状同为 `(..., n)` 的 $\partial L/\partial x$。有两个条件：对 float32 中接近 $\pm 1000$ 的分数必须数值稳定；不能构造 $n \times n$ 的雅可比矩阵（检查器会在每行 2048 个分数上测量你的函数的内存峰值）。自动求导（`backward`、`torch.autograd.grad` 等）不能用：从第 6 节的雅可比矩阵出发，自己推导。

# %%
from attnkit.exercises.ch03 import check_log_softmax_backward


def my_log_softmax_backward(x, grad):
    # your code here
    raise NotImplementedError


_ = check_log_softmax_backward(my_log_softmax_backward)

# %% [markdown] tags=["lang-en"]
# ## 9. Summary
#
# - The softmax turns scores into non-negative weights that sum to 1; it is a smooth argmax, so
#   every score gets a gradient, and attention's output stays a bounded weighted average.
# - Subtract the row maximum before `exp`: no overflow in any dtype. The same trick gives the
#   log-sum-exp and `log_softmax`.
# - Only differences of scores matter (question 1), so subtracting the maximum changes nothing.
# - Mask with $-\infty$ (from a boolean mask), and define a fully masked row as zeros; $-10^9$ and
#   `finfo.min` give uniform weights over hidden entries (section 3, appendix A).
# - Temperature sharpens or flattens the weights; $T \to 0$ is the argmax, $T \to \infty$ uniform.
# - The online softmax keeps a running $(m, \ell)$ and merges partial results; with the outputs
#   merged the same way, attention can be computed block by block (chapter 07).
# - $J = \mathrm{diag}(p) - pp^\top$ vanishes as the softmax saturates.
#
# **Next:** chapter 04 — multi-head attention.
#
# ## References
# - J. S. Bridle, *Probabilistic Interpretation of Feedforward Classification Network Outputs*, 1990 (the name "softmax").
# - I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, MIT Press 2016 — §4.1 (overflow, underflow and the stable softmax), §6.2.2.3 (softmax units).
# - M. Milakov, N. Gimelshein, *Online normalizer calculation for softmax*, arXiv:1805.02867, 2018 — Algorithm 3 (the running max and sum).
# - T. Dao et al., *FlashAttention*, NeurIPS 2022 — §3.1; T. Dao, *FlashAttention-2*, ICLR 2024 — §3.1 (merging partial softmax results).
# - G. Hinton, O. Vinyals, J. Dean, *Distilling the Knowledge in a Neural Network*, 2015 — §2 (softmax temperature).
# - PyTorch documentation, `torch.nn.functional.scaled_dot_product_attention` (fully masked rows).

# %% [markdown] tags=["lang-zh"]
# ## 9. 小结
#
# - softmax 把分数变成非负且和为 1 的权重；它是平滑的 argmax，每个分数都能得到梯度，注意力的输出也始终是有界的加权平均。
# - 在取 `exp` 之前减去每行的最大值：任何数据类型下都不会溢出。同样的技巧给出 log-sum-exp 和 `log_softmax`。
# - 只有分数之间的差才起作用（问题 1），所以减去最大值不改变结果。
# - 用 $-\infty$ 做掩码（由布尔掩码生成），并把全被屏蔽的行的输出定义为零；$-10^9$ 和 `finfo.min` 会把权重均匀分给本该隐藏的元素（第 3 节、附录 A）。
# - 温度让权重变尖锐或变平坦；$T \to 0$ 时是 argmax，$T \to \infty$ 时是均匀分布。
# - 在线 softmax 维护当前的 $(m, \ell)$ 并合并部分结果；把输出也按同样方式合并，注意力就可以逐块计算（第 7 章）。
# - 当 softmax 饱和时，$J = \mathrm{diag}(p) - pp^\top$ 趋于零。
#
# **下一章**：第 4 章——多头注意力。
#
# ## 参考文献
# - J. S. Bridle，*Probabilistic Interpretation of Feedforward Classification Network Outputs*，1990（“softmax”这一名称的由来）。
# - I. Goodfellow、Y. Bengio、A. Courville，*Deep Learning*，MIT Press 2016——§4.1（上溢、下溢与稳定的 softmax），§6.2.2.3（softmax 单元）。
# - M. Milakov、N. Gimelshein，*Online normalizer calculation for softmax*，arXiv:1805.02867，2018——算法 3（当前最大值与累加和）。
# - T. Dao 等，*FlashAttention*，NeurIPS 2022——§3.1；T. Dao，*FlashAttention-2*，ICLR 2024——§3.1（合并 softmax 的部分结果）。
# - G. Hinton、O. Vinyals、J. Dean，*Distilling the Knowledge in a Neural Network*，2015——§2（softmax 温度）。
# - PyTorch 文档：`torch.nn.functional.scaled_dot_product_attention`（全被屏蔽的行）。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. Why not `torch.finfo(dtype).min`?
#
# Some libraries fill masked scores with the most negative finite number instead of $-\infty$
# (−65504 in float16). Add two such masks — a causal mask and a padding mask — and a score that both
# mask is $-65504 - 65504$, beyond the range of float16: it overflows to $-\infty$. Worse, a score
# masked once becomes −65504 whatever it was, since float16 cannot hold the small difference, so the
# differences between masked scores vanish. Below, query 0 may see only key 0 (causal), and keys 0 and
# 1 are padding: nothing is left to attend to, key 1 is masked twice, and yet the softmax hands out the weight:

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. 为什么不用 `torch.finfo(dtype).min`？
#
# 有些库不用 $-\infty$，而是在被屏蔽的分数处填入最小的有限负数（float16 中是 −65504）。把两个这样的掩码相加——比如因果掩码加填充掩码——同时被两个掩码屏蔽的分数等于 $-65504 - 65504$，超出了 float16 的范围，于是溢出成 $-\infty$。更糟的是，只被屏蔽一次的分数无论原来是多少，都会变成 −65504：float16 存不下这点微小的差别，被屏蔽的分数之间的差别就此消失。下面的例子中，查询 0 只能看到键 0（因果掩码），而键 0 和键 1 都是填充：已经没有任何可以关注的位置，键 1 被屏蔽了两次，softmax 却仍然分出了权重：

# %%
lo = torch.finfo(torch.float16).min
s = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16)
causal = torch.tensor([0.0, lo, lo], dtype=torch.float16)   # query 0 may see key 0 only
padding = torch.tensor([lo, lo, 0.0], dtype=torch.float16)   # keys 0 and 1 are padding
print("finfo(float16).min:", lo)
print(t("ch03.both_masks", v=(s + causal + padding).tolist()))
print(t("ch03.fp16_softmax", v=[round(w, 4) for w in torch.softmax(s + causal + padding, -1).tolist()]))
bool_keep = torch.tensor([True, False, False]) & torch.tensor([False, False, True])
print(t("ch03.bool_mask", v=S.softmax(s.float().masked_fill(~bool_keep, NEG_INF)).tolist()))

# %% [markdown] tags=["lang-en"]
# Key 1, masked twice, overflowed to $-\infty$ and gets weight 0.0; keys 0 and 2, masked once, both
# became −65504 and get 0.5 each, where every weight should be 0. Combining boolean masks
# (True = attend) with `&` and filling $-\infty$ once, as attnkit and SDPA do, has neither problem.

# %% [markdown] tags=["lang-zh"]
# 被屏蔽两次的键 1 溢出成了 $-\infty$，权重为 0.0；只被屏蔽一次的键 0 和键 2 都变成了 −65504，各得 0.5，而所有权重本应都是 0。像 attnkit 和 SDPA 那样，用 `&` 组合布尔掩码（True 表示可以关注），只填一次 $-\infty$，这两个问题就都不会出现。

# %% [markdown] tags=["lang-en"]
# ## Appendix B. The step to flash attention
#
# Attention does not need the weights themselves, only
# $o = \sum_j p_j v_j$. Split the keys into blocks; for each block compute its output $o_b$
# (normalised within the block) and its state $(m_b, \ell_b)$. Two blocks combine as
#
# $$o = \frac{\ell_a e^{m_a - m}\, o_a + \ell_b e^{m_b - m}\, o_b}{\ell}, \qquad (m, \ell) = \mathrm{merge}\big((m_a, \ell_a), (m_b, \ell_b)\big),$$
#
# so the full $L \times S$ weight matrix never has to exist at once (`attnkit.softmax.merge_partials`;
# FlashAttention-2, Dao 2023, §3.1). Chapter 07 builds flash attention on exactly this:

# %% [markdown] tags=["lang-zh"]
# ## 附录 B. 通往 FlashAttention 的一步
#
# 注意力其实不需要权重本身，只需要 $o = \sum_j p_j v_j$。把键分成若干块；对每一块计算它的输出 $o_b$（在块内归一化）和它的状态 $(m_b, \ell_b)$。两块的结果这样合并：
#
# $$o = \frac{\ell_a e^{m_a - m}\, o_a + \ell_b e^{m_b - m}\, o_b}{\ell}, \qquad (m, \ell) = \mathrm{merge}\big((m_a, \ell_a), (m_b, \ell_b)\big),$$
#
# 因此完整的 $L \times S$ 权重矩阵从不需要一次性全部存在（`attnkit.softmax.merge_partials`；FlashAttention-2，Dao 2023，§3.1）。第 7 章正是在此基础上构建 FlashAttention：

# %%
torch.manual_seed(0)
q, k, v = torch.randn(2, 4, 8, 16), torch.randn(2, 4, 32, 16), torch.randn(2, 4, 32, 16)  # (B, H, L|S, d)
s = q @ k.transpose(-2, -1) / math.sqrt(16)  # (B, H, 8, 32)
parts = []
for block in (slice(0, 20), slice(20, 32)):  # two blocks of keys, never the whole row at once
    sb = s[..., block]
    parts.append((S.softmax(sb) @ v[..., block, :], S.softmax_state(sb)))
o, state = S.merge_partials(parts[0][0], parts[0][1], parts[1][0], parts[1][1])
print(t("ch03.two_blocks", ok=torch.allclose(o, F.scaled_dot_product_attention(q, k, v), atol=1e-6)))
