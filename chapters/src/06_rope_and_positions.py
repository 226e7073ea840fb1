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
# # 06 · RoPE and the other positional encodings
#
# **What you will learn**
# - why attention, left alone, cannot tell "dog bites man" from "man bites dog" — shown by running it;
# - absolute positions (sinusoidal and learned), and why a *relative* position is what attention wants;
# - rotary position embedding (RoPE): each pair of channels is rotated by an angle proportional to its
#   position, so that $q_m \cdot k_n$ depends only on $m - n$ — the proof, then a numeric check;
# - the two channel pairings in use (RoFormer's interleaved and GPT-NeoX/LLaMA's half-split), and the
#   permutation that turns one into the other;
# - ALiBi (a bias per head instead of a rotation) and xPos (RoPE with a decay);
# - what happens beyond the trained length, and what position interpolation, NTK-aware scaling and
#   YaRN change;
# - what RoPE costs (no parameters; measured time) and the pitfalls that give wrong angles.
#
# **You need** chapter 01 (scaled dot-product attention, masks) and chapter 04 (multi-head
# attention: projections, heads, shapes `(B, H, N, d)`).

# %% [markdown] tags=["lang-zh"]
# # 06 · RoPE 与其他位置编码
#
# **本章内容**
# - 为什么单靠注意力分不清“狗咬人”和“人咬狗”——直接运行给你看；
# - 绝对位置编码（正弦编码与可学习编码），以及为什么注意力真正需要的是*相对*位置；
# - 旋转位置编码（RoPE）：把每一对通道按与位置成正比的角度旋转，使 $q_m \cdot k_n$ 只依赖于 $m - n$——先证明，再数值验证；
# - 实际使用中的两种通道配对方式（RoFormer 的相邻交错配对，GPT-NeoX/LLaMA 的前后两半配对），以及把一种变成另一种的置换；
# - ALiBi（给每个头的分数加偏置，而不是旋转）和 xPos（带衰减的 RoPE）；
# - 超出训练长度时会发生什么，位置插值（PI）、NTK 感知缩放和 YaRN 又分别改变了什么；
# - RoPE 的开销（没有参数；实测耗时）以及会导致角度出错的常见陷阱。
#
# **预备知识**：第 1 章（缩放点积注意力、掩码）和第 4 章（多头注意力：投影、头、形状 `(B, H, N, d)`）。

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch06  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.core import scaled_dot_product_attention
from attnkit.rope import (
    StandardAttentionWithRoPE,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_xpos,
    generate_rope_embeddings,
    interleaved_to_half_split,
    permute_qk_weight,
    rope_angles,
    rope_inv_freq,
    rope_relative_scores,
    rope_score_curve,
    rotate_pair,
    sinusoidal_position_encoding,
    yarn_correction_range,
    yarn_inv_freq,
)
from attnkit.schematics import rope as rope_schematics
from attnkit.timing import one_thread, round_robin_medians
from attnkit.widgets import rope as rope_widgets

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. Attention does not know the order of its inputs
#
# Shuffle the tokens of a sequence and run attention again: every output is still there, only
# shuffled the same way. Softmax-weighted averages do not care where a key sits, only what it
# contains. Without extra information, "dog bites man" and "man bites dog" are the same bag of
# tokens.

# %% [markdown] tags=["lang-zh"]
# ## 1. 注意力并不知道输入的顺序
#
# 把一个序列中的词元（token）打乱顺序，再算一遍注意力：每个输出都还在，只是按同样的方式被打乱了。softmax 加权平均只关心键的内容，不关心键在哪个位置。没有额外的信息，“狗咬人”和“人咬狗”就只是同一组词元，分不出先后。

# %%
torch.manual_seed(0)
x = torch.randn(5, 8)                        # 5 tokens, width 8
perm = torch.tensor([3, 0, 4, 1, 2])         # a shuffle
out = scaled_dot_product_attention(x, x, x)
out_shuffled = scaled_dot_product_attention(x[perm], x[perm], x[perm])
print(t("ch06.shuffled", ok=torch.allclose(out_shuffled, out[perm], atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# ## 2. Absolute positions: sinusoidal and learned
#
# The Transformer (Vaswani et al. 2017, §3.5) *adds* a vector $p_m$ to the embedding of the token
# at position $m$:
#
# $$p_{m,2i} = \sin(m\,\theta_i), \qquad p_{m,2i+1} = \cos(m\,\theta_i), \qquad \theta_i = 10000^{-2i/d}.$$
#
# Each pair of dimensions is a clock hand turning at its own speed $\theta_i$: fast in the first
# dimensions, very slow in the last ones (the picture below). Going from position $m$ to $m + k$
# turns every hand by $k\theta_i$, a fixed rotation — the authors' reason for choosing it. Let us
# check that claim, with the angle-addition rule $\sin(a + b) = \sin a \cos b + \cos a \sin b$:

# %% [markdown] tags=["lang-zh"]
# ## 2. 绝对位置：正弦编码与可学习编码
#
# Transformer（Vaswani 等，2017，§3.5）把一个向量 $p_m$ *加*到位置 $m$ 上词元的嵌入里：
#
# $$p_{m,2i} = \sin(m\,\theta_i), \qquad p_{m,2i+1} = \cos(m\,\theta_i), \qquad \theta_i = 10000^{-2i/d}.$$
#
# 每一对维度就像一根以自己的速度 $\theta_i$ 转动的表针：前面的维度转得快，后面的维度转得很慢（见下图）。从位置 $m$ 走到 $m + k$，每根表针都转过 $k\theta_i$，这是一个固定的旋转——这正是作者选择它的理由。我们用两角和公式 $\sin(a + b) = \sin a \cos b + \cos a \sin b$ 来验证一下：

# %% alt="ch06.alt.sinusoidal"
rope_widgets.sinusoidal_figure(64, 64)
pe = sinusoidal_position_encoding(64, 64).double()   # (positions, dims)
theta = rope_inv_freq(64)                              # (32,) one speed per pair of dims
k = 5
s, c = pe[:, 0::2], pe[:, 1::2]                        # sin and cos of m * theta_i
turned = s * torch.cos(k * theta) + c * torch.sin(k * theta)   # sin((m + k) theta_i)
print(t("ch06.fixed_rotation", ok=torch.allclose(turned[:-k], s[k:], atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# A **learned** absolute encoding (BERT, GPT-2) is a table with one trained vector per position.
# It can be anything, but it only has rows for the positions it was trained on:

# %% [markdown] tags=["lang-zh"]
# **可学习的**绝对位置编码（BERT、GPT-2）是一张表，每个位置一个训练出来的向量。它可以学成任何样子，但只有训练过的那些位置才有对应的行：

# %%
table = torch.nn.Embedding(16, 8)          # positions 0..15, as if trained on 16 tokens
try:
    table(torch.tensor([20]))
except IndexError as err:
    print("IndexError:", err)

# %% [markdown] tags=["lang-en"]
# Both kinds are added to the input, so a score $(x_m + p_m) W_Q W_K^\top (x_n + p_n)^\top$ mixes
# content with the *absolute* positions $m$ and $n$. But what a language model mostly needs is
# *how far apart* two tokens are: "the word two places back" means the same thing at position 10
# and at position 1000. That is what RoPE builds in.

# %% [markdown] tags=["lang-zh"]
# 这两种编码都是加到输入上的，因此分数 $(x_m + p_m) W_Q W_K^\top (x_n + p_n)^\top$ 把内容和*绝对*位置 $m$、$n$ 混在了一起。但语言模型最需要知道的其实是两个词元*相隔多远*：“往前数第二个词”在位置 10 和位置 1000 上含义相同。RoPE 正是把这一点直接内置到了注意力里。

# %% [markdown] tags=["lang-en"]
# ## 3. RoPE: rotate each pair of channels
#
# RoPE (Su et al. 2021, "RoFormer") does not add anything. It takes the query and the key *after*
# their projections, cuts each into pairs of channels, and turns every pair like a clock hand, by an
# angle proportional to the token's position.
#
# Start with the smallest case, a single pair ($d = 2$): a query and a key are two arrows in the
# plane. RoPE turns the query at position $m$ by the angle $m\theta$ and the key at position $n$ by
# $n\theta$. Turning both arrows changes the angle between them by $(m - n)\theta$ and by nothing
# else, and the dot product of two arrows depends only on their lengths and on the angle between
# them. So the score can depend on the two positions only through $m - n$. The picture, drawn for
# $\theta = 30°$ and $q = k = (1, 0)$ before the rotation:

# %% [markdown] tags=["lang-zh"]
# ## 3. RoPE：把每一对通道旋转一下
#
# RoPE（Su 等，2021，“RoFormer”）并不往输入里加东西。它在投影*之后*拿到查询和键，把它们切成一对一对的通道，再像拨动表针一样把每一对旋转一个角度，这个角度与词元的位置成正比。
#
# 先看最小的情形：只有一对通道（$d = 2$）。这时查询和键就是平面上的两个箭头。RoPE 把位置 $m$ 上的查询转过角度 $m\theta$，把位置 $n$ 上的键转过 $n\theta$。两个箭头都转了之后，它们之间的夹角只改变了 $(m - n)\theta$，别的什么都没变；而两个箭头的点积只取决于它们的长度和夹角。所以分数对两个位置的依赖只能通过 $m - n$ 体现。下图取 $\theta = 30°$，旋转前 $q = k = (1, 0)$：

# %% alt="ch06.alt.rotation"
_ = rope_schematics.rotation_figure(theta=math.pi / 6, positions=(0, 1, 2, 3), pairs=((3, 1), (6, 4)))

# %% [markdown] tags=["lang-en"]
# **Question 1 (predict first).** Same pair, same $\theta = 30°$, $q = k = (1, 0)$ before RoPE. Now the
# query sits at position 7 and the key at position 3. What is the score $q' \cdot k'$ after RoPE?
# Write your prediction before running the cell after this one.

# %% [markdown] tags=["lang-zh"]
# **问题 1（先预测）**：还是这一对通道，$\theta = 30°$，旋转前 $q = k = (1, 0)$。现在查询在位置 7，键在位置 3。RoPE 之后的分数 $q' \cdot k'$ 是多少？先写下你的预测，再运行后面那个单元格。

# %%
from attnkit.exercises.ch06 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# The two pairs of positions of the picture, and one more 2 apart far away, computed with
# `attnkit.rope.rotate_pair` (a 2-D rotation; exercise 1 asks you to write it):

# %% [markdown] tags=["lang-zh"]
# 用 `attnkit.rope.rotate_pair`（一个二维旋转，练习 1 会请你自己写）算一算图中的两组位置，再加一组相隔 2、但位置很远的：

# %%
angle = math.pi / 6                                          # one pair, turning 30 degrees per position
for m, n in [(3, 1), (6, 4), (103, 101)]:
    qm, kn = rotate_pair(1.0, 0.0, m * angle), rotate_pair(1.0, 0.0, n * angle)   # q at m, k at n
    print(t("ch06.pair_score", m=m, n=n, diff=m - n, score=qm[0] * kn[0] + qm[1] * kn[1]))

# %% [markdown] tags=["lang-en"]
# All three give 0.500 = cos 60°. A real head has $d$ channels, that is $d/2$ pairs, and RoPE turns
# pair $i$ at its own speed $\theta_i$, fast for the first pairs and slow for the last (the clock
# hands of section 2). Pair $i$ is channels $(2i, 2i+1)$, and at position $m$:
#
# $$\begin{pmatrix} q'_{2i} \\ q'_{2i+1} \end{pmatrix} =
#   \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i \end{pmatrix}
#   \begin{pmatrix} q_{2i} \\ q_{2i+1} \end{pmatrix},
#   \qquad \theta_i = \text{base}^{-2i/d} \quad (\text{RoFormer eqs. 13–15}).$$
#
# A score is a sum over the pairs of each pair's dot product; each depends on $m - n$ only, so the
# sum does too. The same in matrices: write $R_m$ for the whole block-diagonal rotation. Rotations
# compose and undo each other: $R_m^\top = R_{-m}$ and $R_{-m} R_n = R_{n-m}$. Hence
#
# $$(R_m q)^\top (R_n k) = q^\top R_m^\top R_n\, k = q^\top R_{n-m}\, k \qquad (\text{RoFormer eq. 16}).$$
#
# In complex numbers it is one line: a pair $(a, b)$ is $a + ib$, rotating is multiplying by
# $e^{im\theta}$, and
# $\mathrm{Re}[\,q e^{im\theta}\,\overline{k e^{in\theta}}\,] = \mathrm{Re}[\,q \bar k\, e^{i(m-n)\theta}\,]$.
#
# From scratch, in a few lines, checked against attnkit and against PyTorch's complex numbers:

# %% [markdown] tags=["lang-zh"]
# 三组的结果都是 0.500 = cos 60°。真实的头有 $d$ 个通道，也就是 $d/2$ 对；RoPE 让第 $i$ 对以自己的速度 $\theta_i$ 旋转：前面的几对转得快，后面的几对转得慢（就是第 2 节里那些表针）。第 $i$ 对是通道 $(2i, 2i+1)$，在位置 $m$ 上：
#
# $$\begin{pmatrix} q'_{2i} \\ q'_{2i+1} \end{pmatrix} =
#   \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i \end{pmatrix}
#   \begin{pmatrix} q_{2i} \\ q_{2i+1} \end{pmatrix},
#   \qquad \theta_i = \text{base}^{-2i/d} \quad (\text{RoFormer 式 13–15}).$$
#
# 分数是各对通道点积之和；每一项都只依赖于 $m - n$，所以总和也一样。用矩阵来写：把整个分块对角的旋转矩阵记作 $R_m$。旋转可以叠加，也可以相互抵消：$R_m^\top = R_{-m}$，$R_{-m} R_n = R_{n-m}$。于是
#
# $$(R_m q)^\top (R_n k) = q^\top R_m^\top R_n\, k = q^\top R_{n-m}\, k \qquad (\text{RoFormer 式 16}).$$
#
# 用复数写只需一行：把一对通道 $(a, b)$ 看成 $a + ib$，旋转就是乘以 $e^{im\theta}$，而
# $\mathrm{Re}[\,q e^{im\theta}\,\overline{k e^{in\theta}}\,] = \mathrm{Re}[\,q \bar k\, e^{i(m-n)\theta}\,]$。
#
# 下面从零写出它，只需几行，再与 attnkit 以及 PyTorch 的复数运算对照：

# %%
def my_rope(x, base=10000.0):
    L, d = x.shape[-2:]
    theta = base ** (-torch.arange(0, d, 2) / d)        # (d/2,): one speed per pair
    angle = torch.arange(L)[:, None] * theta             # (L, d/2): m * theta_i
    a, b = x[..., 0::2], x[..., 1::2]                    # pair i = channels (2i, 2i+1)
    return torch.stack((a * angle.cos() - b * angle.sin(),
                        a * angle.sin() + b * angle.cos()), dim=-1).flatten(-2)   # (..., L, d)


torch.manual_seed(0)
x = torch.randn(2, 4, 10, 16)                            # (B, H, L, d)
cos, sin = generate_rope_embeddings(10, 16)              # each (10, 8)
ours = my_rope(x)
print(t("ch06.matches_apply_rope", ok=torch.allclose(ours, apply_rope(x, cos, sin), atol=1e-5)))
xc = torch.view_as_complex(x.unflatten(-1, (8, 2)))      # pairs as complex numbers
turn = torch.polar(torch.ones(10, 8), torch.arange(10.0)[:, None] * 10000.0 ** (-torch.arange(0, 16, 2) / 16))
print(t("ch06.matches_complex", ok=torch.allclose(ours, torch.view_as_real(xc * turn).flatten(-2), atol=1e-5)))
print(t("ch06.lengths", ok=torch.allclose(ours.norm(dim=-1), x.norm(dim=-1), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# Now the property itself. One query and one key, placed at many pairs of positions:

# %% [markdown] tags=["lang-zh"]
# 再来验证这条性质本身。取一个查询和一个键，把它们放在许多不同的位置对上：

# %%
torch.manual_seed(1)
q, k = torch.randn(2, 64, dtype=torch.float64)
cos64, sin64 = generate_rope_embeddings(1200, 64, dtype=torch.float64)


def rope_score(m, n):
    qm = apply_rope(q[None], cos64, sin64, offset=m)[0]   # the query at position m
    kn = apply_rope(k[None], cos64, sin64, offset=n)[0]   # the key at position n
    return (qm @ kn).item()


for m, n in [(3, 1), (10, 8), (1000, 998), (8, 10)]:
    print(t("ch06.score_at", m=m, n=n, diff=m - n, score=rope_score(m, n)))
print(t("ch06.closed_form", score=rope_relative_scores(q, k, [2])[0].item()))

# %% [markdown] tags=["lang-en"]
# The first three pairs are 2 apart and give the same score, to every printed digit; the closed
# form (RoFormer eq. 16, computed from the distance alone) agrees. The fourth pair is $-2$ apart and
# gives another score: RoPE knows *direction* as well as distance. The test suite checks this
# property for random vectors, widths and offsets.

# %% [markdown] tags=["lang-zh"]
# 前三对位置都相隔 2，打印出的分数每一位都相同；只用距离算出的闭式表达式（RoFormer 式 16）也与之一致。第四对相隔 $-2$，分数就不同了：RoPE 不仅知道距离，还知道*方向*。attnkit 的测试会用随机向量、随机宽度和随机偏移检查这条性质。

# %% [markdown] tags=["lang-en"]
# ## 4. Explore: a pair turning, and the score against distance
#
# Move the **position**: the red arrow is the pair $(1, 0)$ rotated to position $m$ (the dots are the
# earlier positions). Move the **pair**: pair 0 turns by one radian per position ($\theta_0 = 1$), the
# last pairs by a tiny fraction of that — the middle panel shows every pair's speed $\theta_i$ on a
# log scale.
# Pick a **base**: it sets how slow the slowest pair is. The right panel is the score of
# $q = k = (1, \dots, 1)$ placed $m - n$ apart, divided by its value at distance 0: it falls as the
# two tokens move apart, the *long-term decay* of RoFormer §3.4.3, faster for a small base.

# %% [markdown] tags=["lang-zh"]
# ## 4. 动手探索：旋转的通道对，以及分数随距离的变化
#
# 拖动**位置**滑块：红色箭头是取值为 $(1, 0)$ 的一对通道旋转到位置 $m$ 后的样子（小圆点是之前各个位置）。拖动**通道对**滑块：第 0 对每个位置转 1 弧度（$\theta_0 = 1$），最后几对只转其中极小的一部分——中间的图以对数刻度画出了每一对的速度 $\theta_i$。选择**底数**：它决定最慢的一对有多慢。右图是 $q = k = (1, \dots, 1)$ 相隔 $m - n$ 时的分数，除以距离为 0 时的值：两个词元离得越远，分数越低，这就是 RoFormer §3.4.3 所说的*远程衰减*；底数越小，衰减越快。

# %% tags=["nbval-ignore-output"] alt="ch06.alt.explorer"
explorer = rope_widgets.rope_explorer()
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# The curves come from `attnkit.rope.rope_score_curve`, a pure function the tests check against a
# real rotated dot product. A few of their values:

# %% [markdown] tags=["lang-zh"]
# 这些曲线来自纯函数 `attnkit.rope.rope_score_curve`，测试会把它与真正旋转后的点积对照。下面是其中几个数值：

# %%
distances = [0, 1, 4, 16, 64, 256]
print(f"{t('ch06.col.distance'):>12}" + "".join(f"{r:>8}" for r in distances))
for base in (100.0, 10000.0, 500000.0):
    print(f"{t('rope.w.base_label', b=base):>12}" + "".join(f"{v:8.3f}" for v in rope_score_curve(distances, 64, base).tolist()))

# %% [markdown] tags=["lang-en"]
# At distance 256 the relative score is −0.058 with base 100, 0.354 with base 10000 and 0.571 with
# base 500000. The decay is a tendency, not a rule (the curves wiggle), and a trained model can
# still attend far away by choosing its queries and keys — but it is a useful default bias towards
# nearby tokens. A larger base keeps the curve higher far away, one reason LLaMA 3 uses base 500000
# for its longer contexts.

# %% [markdown] tags=["lang-zh"]
# 在距离 256 处，底数为 100 时相对分数是 −0.058，底数为 10000 时是 0.354，底数为 500000 时是 0.571。衰减只是一种趋势，并非铁律（曲线会上下起伏），训练好的模型仍然可以通过选择查询和键去关注很远的位置——但它提供了一个有用的默认偏好：更关注附近的词元。底数越大，远处的曲线越高，这也是 LLaMA 3 为了支持更长的上下文而采用底数 500000 的原因之一。

# %% [markdown] tags=["lang-en"]
# ## 5. Interleaved or half-split: the same thing, permuted
#
# Two conventions pair the channels differently:
#
# - **interleaved** (RoFormer, GPT-J, Meta's original LLaMA code): pair $i$ is channels $(2i, 2i+1)$;
# - **half-split** (GPT-NeoX, Hugging Face LLaMA's `rotate_half`): pair $i$ is channels $(i, i + d/2)$.
#
# Reordering channels $(0, 1, 2, 3, \dots) \to (0, 2, 4, \dots, 1, 3, 5, \dots)$ turns one pairing into
# the other. In the picture each colour is one pair, for one head of $d = 8$: the pairs stay the
# same, only the places of their channels change. The number in each box is the channel's *old*
# index, its place in the interleaved order: the bottom row shows which old channel sits at each
# new place (the stretch exercise of section 11 builds this very map).

# %% [markdown] tags=["lang-zh"]
# ## 5. 交错配对还是前后两半配对：同一回事，差一个置换
#
# 两种约定对通道的配对方式不同：
#
# - **相邻交错配对**（RoFormer、GPT-J、Meta 最初的 LLaMA 代码）：第 $i$ 对是通道 $(2i, 2i+1)$；
# - **前后两半配对**（GPT-NeoX、Hugging Face LLaMA 的 `rotate_half`）：第 $i$ 对是通道 $(i, i + d/2)$。
#
# 把通道顺序 $(0, 1, 2, 3, \dots)$ 重排为 $(0, 2, 4, \dots, 1, 3, 5, \dots)$，就能把一种配对变成另一种。下图画的是 $d = 8$ 的一个头，每种颜色是一对通道：通道对还是那几对，变的只是各个通道所在的位置。每个方框里的数字是通道的*原编号*，即它在交错顺序中的位置：下面一行显示每个新位置上放的是哪个原通道（第 11 节的挑战题要构造的正是这个映射）。

# %% alt="ch06.alt.pairing"
_ = rope_schematics.pairing_figure(8)

# %% [markdown] tags=["lang-en"]
# Since the channels of $q$ and $k$ come out of $W_Q$ and $W_K$, permuting the *rows* of those weights
# (inside each head) makes a model trained in one convention give the same scores in the other —
# this is what Hugging Face's LLaMA conversion script does (the stretch exercise of section 11 asks
# you to write that permutation). Run it:

# %% [markdown] tags=["lang-zh"]
# $q$ 和 $k$ 的通道来自 $W_Q$ 和 $W_K$。所以只要在每个头内部置换这两个权重矩阵的*行*，用一种约定训练的模型换成另一种约定后，就能得到完全相同的分数——Hugging Face 的 LLaMA 权重转换脚本正是这样做的（第 11 节的挑战题会请你自己写出这个置换）。运行看看：

# %%
print(t("ch06.channel_order", order=interleaved_to_half_split(torch.arange(8)).tolist()))
torch.manual_seed(0)
inter = StandardAttentionWithRoPE(64, 4).eval()                      # interleaved (RoFormer)
half = StandardAttentionWithRoPE(64, 4, interleaved=False).eval()    # half-split (GPT-NeoX / LLaMA)
half.load_state_dict(inter.state_dict())
x = torch.randn(2, 12, 64)                                            # (B, N, D)
rope16 = generate_rope_embeddings(12, 16)
with torch.no_grad():
    gap = (inter(x, x, x, rope16) - half(x, x, x, rope16)).abs().max().item()
    print(t("ch06.other_convention", gap=gap))
    for name in ("q_proj", "k_proj"):
        layer = getattr(half, name)
        layer.weight.copy_(permute_qk_weight(layer.weight, num_heads=4))
        layer.bias.copy_(permute_qk_weight(layer.bias, num_heads=4))
    print(t("ch06.permuted", ok=torch.allclose(inter(x, x, x, rope16), half(x, x, x, rope16), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# Loading weights trained in one convention into code written for the other runs without an error
# and gives wrong outputs. When you port a checkpoint, check which pairing it was trained with.
#
# ## 6. RoPE in a multi-head attention module
#
# `StandardAttentionWithRoPE(embed_dim, num_heads)` is chapter 04's multi-head attention with RoPE
# applied to the queries and keys of every head, after the projections and before the scores.
# Inputs and outputs are `(B, N, D)`; `return_attn=True` also returns the weights `(B, H, Nq, Nk)`.
# Without it, the module calls PyTorch's fused `scaled_dot_product_attention`.
#
# When decoding token by token with a KV cache (chapter 05), the new token is at position $t$, not
# 0: pass `q_offset=t`. Then generating one token at a time gives exactly the full forward pass:

# %% [markdown] tags=["lang-zh"]
# 把按一种约定训练的权重加载进按另一种约定写的代码，程序不会报错，输出却是错的。移植模型权重时，一定要确认它训练时用的是哪种配对。
#
# ## 6. 多头注意力模块中的 RoPE
#
# `StandardAttentionWithRoPE(embed_dim, num_heads)` 就是第 4 章的多头注意力，只是在投影之后、计算分数之前，对每个头的查询和键应用了 RoPE。输入和输出的形状都是 `(B, N, D)`；`return_attn=True` 时还会返回形状为 `(B, H, Nq, Nk)` 的注意力权重。不返回权重时，模块调用 PyTorch 的融合算子 `scaled_dot_product_attention`。
#
# 用 KV 缓存逐个词元解码时（第 5 章），新词元位于位置 $t$，而不是 0：要传入 `q_offset=t`。这样一次生成一个词元，结果与完整的前向计算完全一致：

# %%
torch.manual_seed(0)
attn = StandardAttentionWithRoPE(embed_dim=64, num_heads=4).eval()
x = torch.randn(2, 10, 64)                                    # (B, N, D)
rope10 = generate_rope_embeddings(10, 16)                     # head_dim = 64 / 4 = 16
causal = torch.ones(10, 10, dtype=torch.bool).tril()          # True = may attend
with torch.no_grad():
    out, w = attn(x, x, x, rope_embeddings=rope10, attn_mask=causal, return_attn=True)
    print(t("ch06.out_weights", out=tuple(out.shape), w=tuple(w.shape)))
    steps = [attn(x[:, s:s + 1], x[:, :s + 1], x[:, :s + 1], rope_embeddings=rope10, q_offset=s)
             for s in range(10)]                               # one new token at a time
    print(t("ch06.token_by_token", ok=torch.allclose(torch.cat(steps, dim=1), out, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# ## 7. ALiBi and xPos
#
# **ALiBi** (Press et al. 2022) rotates nothing. It adds a bias to the scores of head $h$:
# $-m_h\,(i - j)$ for query $i$ and key $j \le i$, a penalty growing linearly with distance. The
# slopes $m_h$ form a geometric sequence: for $n$ heads (a power of two) it starts at
# $2^{-8/n}$ with that same ratio, so 8 heads get $1/2, 1/4, \dots, 1/256$. For other head counts
# the authors' reference code takes the slopes of the largest power of two below, then the 1st,
# 3rd, 5th, ... slopes of the next power of two (those that fall between the slopes already taken),
# as many as are still missing. For 12 heads: the 8 slopes of 8 heads, then the 1st, 3rd, 5th and
# 7th of the 16 slopes of 16 heads:

# %% [markdown] tags=["lang-zh"]
# ## 7. ALiBi 与 xPos
#
# **ALiBi**（Press 等，2022）不做任何旋转。它给第 $h$ 个头的分数加上一个偏置：对查询 $i$ 和键 $j \le i$ 加 $-m_h\,(i - j)$，这个惩罚随距离线性增长。斜率 $m_h$ 构成等比数列：对于 $n$ 个头（$n$ 为 2 的幂），首项为 $2^{-8/n}$，公比也是 $2^{-8/n}$，所以 8 个头的斜率是 $1/2, 1/4, \dots, 1/256$。头数不是 2 的幂时，作者的参考代码先取小于头数的最大 2 的幂对应的斜率，再从下一个 2 的幂对应的斜率序列中取第 1、3、5……个（正好落在已取斜率之间的那些），直到补足头数。以 12 个头为例：先取 8 个头的 8 个斜率，再取 16 个头的 16 个斜率中的第 1、3、5、7 个：

# %% alt="ch06.alt.alibi"
for h in (8, 12):
    print(t("ch06.heads", h=h, slopes="  ".join(f"1/{1 / m:.3g}" for m in alibi_slopes(h).tolist())))
fig = rope_widgets.alibi_figure(8, 16)   # shown below the cell

# %% [markdown] tags=["lang-en"]
# Each heatmap is $e^{-m_h (i-j)}$, the factor by which the bias multiplies an unnormalised weight:
# head 0 looks at its neighbours only, head 7 at almost the whole past. The bias is just an additive
# mask (chapter 01), so PyTorch's fused attention runs it unchanged:

# %% [markdown] tags=["lang-zh"]
# 每张热力图画的是 $e^{-m_h (i-j)}$，也就是偏置乘到未归一化权重上的因子：第 0 个头只看近邻，第 7 个头几乎能看到全部历史。这个偏置就是一个加性掩码（第 1 章），因此 PyTorch 的融合注意力可以直接使用它：

# %%
torch.manual_seed(0)
q, k, v = torch.randn(3, 1, 8, 16, 32).unbind(0)           # (B, H=8, L=16, d=32) each
bias = alibi_bias(8, 16)                                     # (H, L, L): -m_h * |i - j|
mask = bias.masked_fill(~torch.ones(16, 16, dtype=torch.bool).tril(), float("-inf"))
print(t("ch06.alibi_sdpa",
        ok=torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                          scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **xPos** (Sun et al. 2022) keeps RoPE's rotation and adds a decay: pair $i$ of the query at
# position $m$ is scaled by $\zeta_i^{m/B}$ and of the key at position $n$ by $\zeta_i^{-n/B}$, with
# $\zeta_i = (2i/d + \gamma)/(1 + \gamma) < 1$ ($\gamma = 0.4$, $B = 512$). A score then carries
# $\zeta_i^{(m-n)/B}$: still relative, and decaying faster than RoPE's:

# %% [markdown] tags=["lang-zh"]
# **xPos**（Sun 等，2022）保留了 RoPE 的旋转，再加上衰减：位置 $m$ 上查询的第 $i$ 对通道乘以 $\zeta_i^{m/B}$，位置 $n$ 上键的第 $i$ 对通道乘以 $\zeta_i^{-n/B}$，其中 $\zeta_i = (2i/d + \gamma)/(1 + \gamma) < 1$（$\gamma = 0.4$，$B = 512$）。于是分数带上因子 $\zeta_i^{(m-n)/B}$：仍然只依赖相对位置，而且比 RoPE 衰减得更快：

# %%
ones = torch.ones(1, 64, dtype=torch.float64)
print(f"{t('ch06.col.distance'):>10}{t('ch06.col.rope'):>8}{t('ch06.col.xpos'):>8}")
for r in (0, 64, 256, 1024):
    qx, kx = apply_xpos(ones, ones, cos64, sin64, q_offset=r, k_offset=0)
    print(f"{r:>10}{rope_score_curve([r], 64)[0].item():8.3f}{(qx[0] @ kx[0]).item() / 64:8.3f}")
torch.manual_seed(2)
q1, k1 = torch.randn(2, 1, 64, dtype=torch.float64)
qa, ka = apply_xpos(q1, k1, cos64, sin64, q_offset=30, k_offset=10)     # m = 30, n = 10
qb, kb = apply_xpos(q1, k1, cos64, sin64, q_offset=530, k_offset=510)   # m = 530, n = 510
print(t("ch06.xpos_relative", ok=torch.allclose(qa @ ka.T, qb @ kb.T)))

# %% [markdown] tags=["lang-en"]
# ## 8. Longer contexts: beyond the trained length
#
# Say a model was trained on $L = 256$ positions (real models: 2k–8k) with $d = 64$ and base 10000,
# and we want to run it on $sL$ with $s = 4$. The fast pairs turned many times during training and
# have seen every angle; the slow pairs have not completed even one turn:

# %% [markdown] tags=["lang-zh"]
# ## 8. 更长的上下文：超出训练长度之后
#
# 假设一个模型在 $L = 256$ 个位置上训练（真实模型一般是 2k–8k），$d = 64$，底数为 10000，现在想在 $sL$（$s = 4$）的长度上使用它。快的通道对在训练中已经转了很多圈，见过所有角度；慢的通道对却连一圈都没转完：

# %%
L, d, s = 256, 64, 4
theta = rope_inv_freq(d)
turns = L * theta / (2 * math.pi)                      # turns of each pair within the trained length
print(t("ch06.slow_pairs", L=L, n=(turns < 1).sum().item(), total=d // 2))
print(t("ch06.slowest_turns", a=turns[-1].item(), L=L, b=s * turns[-1].item(), sL=s * L))

# %% [markdown] tags=["lang-en"]
# For those 19 pairs, positions beyond 256 produce angles the model never saw, and its scores
# become unreliable. Three fixes change the frequencies $\theta_i$ (and nothing else):
#
# - **position interpolation** (PI, Chen et al. 2023, §2.3): divide every position by $s$, that is
#   $\theta'_i = \theta_i / s$. Every angle stays in the trained range, but neighbouring tokens are
#   now $s$ times harder to tell apart.
# - **NTK-aware scaling** (bloc97 2023; YaRN paper §3.1): raise the base $b$ to a new base $b'$,
#   chosen so that the fastest pair ($\theta_0 = 1$, whatever the base) is unchanged and the slowest
#   is divided by exactly $s$; those in between are divided by less. With $\theta_i = b^{-2i/d}$
#   (section 3), the slowest pair, $i = d/2 - 1$, turns at $\theta_{d/2-1} = b^{-(d-2)/d}$.
#   Exercise 4 asks you to find $b'$.
# - **YaRN** (Peng et al. 2023, §3.2–3.4): with $r_i = L\theta_i / 2\pi$ the number of turns in the
#   trained length, keep $\theta_i$ where $r_i > \beta = 32$ (the pair has seen every angle), divide
#   by $s$ where $r_i < \alpha = 1$ (like PI), and ramp between the two. It also multiplies the
#   scores by $1/t$ with $\sqrt{1/t} = 0.1 \ln s + 1$, a temperature the authors fitted because it
#   lowered perplexity on long documents. (The paper and its reference code ramp differently;
#   appendix A at the end of the chapter shows by how much.)

# %% [markdown] tags=["lang-zh"]
# 对这 19 对通道来说，超过位置 256 后出现的角度都是模型从未见过的，它给出的分数也就不再可靠。有三种修正办法，它们都只改变频率 $\theta_i$（其他什么都不变）：
#
# - **位置插值**（PI，Chen 等，2023，§2.3）：把每个位置除以 $s$，也就是 $\theta'_i = \theta_i / s$。所有角度都落在训练见过的范围内，但相邻词元之间的差别缩小为原来的 $1/s$，更难区分了。
# - **NTK 感知缩放**（bloc97，2023；YaRN 论文 §3.1）：把底数 $b$ 提高到一个新底数 $b'$。选 $b'$ 的标准是：最快的一对（不论底数是多少，都有 $\theta_0 = 1$）保持不变，最慢的一对恰好除以 $s$；中间的各对除以比 $s$ 小的数。由 $\theta_i = b^{-2i/d}$（第 3 节），最慢的一对 $i = d/2 - 1$ 的频率是 $\theta_{d/2-1} = b^{-(d-2)/d}$。练习 4 会请你求出 $b'$。
# - **YaRN**（Peng 等，2023，§3.2–3.4）：记 $r_i = L\theta_i / 2\pi$ 为第 $i$ 对在训练长度内转过的圈数。当 $r_i > \beta = 32$ 时保持 $\theta_i$ 不变（这一对已经见过所有角度），当 $r_i < \alpha = 1$ 时像 PI 一样除以 $s$，两者之间逐渐过渡。它还把分数乘以 $1/t$，其中 $\sqrt{1/t} = 0.1 \ln s + 1$，这个温度是作者拟合出来的，因为它能降低长文档上的困惑度（perplexity）。（论文和作者的参考代码过渡的方式不同，本章末尾的附录 A 给出两者相差多少。）

# %%
rows = []
for method in ("none", "linear", "ntk", "yarn"):
    new, factor = rope_widgets.scaled_frequencies(method, s, d, trained=L)
    ratio = new / theta
    rows.append([t("rope.w.method." + method), f"{ratio[0].item():.3f}", f"{ratio[16].item():.3f}",
                 f"{ratio[-1].item():.3f}", f"{s * ratio[-1].item():.2f}", f"{factor ** 2:.3f}"])
print(viz.format_table([t("ch06.col.method"), t("ch06.col.pair_ratio", i=0), t("ch06.col.pair_ratio", i=16),
                        t("ch06.col.pair_ratio", i=31), t("ch06.col.slowest"), t("ch06.col.factor")], rows))
root = 0.1 * math.log(s) + 1                            # YaRN's sqrt(1/t)
print(t("ch06.yarn_factor", s=s, root=root, factor=root**2))

# %% [markdown] tags=["lang-en"]
# Read the table row by row. Plain RoPE lets the slowest pair reach 4.00 times the largest angle it
# saw in training. PI brings it back to 1.00, but slows the fastest pair to 0.250 of its speed too.
# NTK keeps the fastest pair (1.000) and interpolates the slowest exactly (1.00), with pair 16 in
# between (0.489). YaRN keeps the fast pairs as they are, interpolates the slow ones like PI, and multiplies
# the scores by 1.296, its $1/t$ at $s = 4$ (last line: $\sqrt{1/t} = 0.1 \ln 4 + 1 = 1.139$, squared). Try every method and scale in the explorer: the left panel is
# $\theta'_i/\theta_i$ for every pair, the right one the score against distance out to $sL$.

# %% [markdown] tags=["lang-zh"]
# 逐行来看这张表。原始 RoPE 让最慢的一对转到训练中见过的最大角度的 4.00 倍。PI 把它拉回到 1.00，却把最快的一对也减慢到原来的 0.250。NTK 保持最快的一对不变（1.000），同时把最慢的一对恰好插值回来（1.00），第 16 对介于两者之间（0.489）。YaRN 保持快的各对不变，像 PI 一样对慢的各对做插值，并把分数乘以 1.296，即 $s = 4$ 时的 $1/t$（最后一行：$\sqrt{1/t} = 0.1 \ln 4 + 1 = 1.139$，再平方）。在下面的交互控件里试一试每种方法和缩放因子：左图是每一对的 $\theta'_i/\theta_i$，右图是直到 $sL$ 的分数随距离的变化。

# %% tags=["nbval-ignore-output"] alt="ch06.alt.scaling"
scaling = rope_widgets.rope_scaling_explorer(method="yarn", scale=4)
display(scaling.widget)
scaling.static();

# %% [markdown] tags=["lang-en"]
# Which works best is an empirical question answered by fine-tuning on long documents: the papers
# report that PI needs some fine-tuning, NTK-aware scaling works reasonably without any, and YaRN
# reaches the longest contexts with the least fine-tuning. What this chapter shows is *what each one
# does to the frequencies*; all three are plain functions in `attnkit.rope`
# (`linear_scaled_inv_freq`, `ntk_scaled_inv_freq`, `yarn_inv_freq`, `scaled_rope_embeddings`).

# %% [markdown] tags=["lang-zh"]
# 哪种方法效果最好，只能靠在长文档上微调后的实验来回答：论文报告 PI 需要一定的微调，NTK 感知缩放不微调也能工作得不错，而 YaRN 能以最少的微调达到最长的上下文。本章展示的是*每种方法对频率做了什么*；三者都是 `attnkit.rope` 中的普通函数：`linear_scaled_inv_freq`、`ntk_scaled_inv_freq`、`yarn_inv_freq` 和 `scaled_rope_embeddings`。

# %% [markdown] tags=["lang-en"]
# ## 9. What it costs
#
# RoPE has **no parameters**: the rotation is fixed by the position. Compare the module with
# `nn.MultiheadAttention` of the same size:

# %% [markdown] tags=["lang-zh"]
# ## 9. 开销
#
# RoPE **没有任何参数**：旋转完全由位置决定。把这个模块和同样大小的 `nn.MultiheadAttention` 比一比：

# %%
count = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
print("nn.MultiheadAttention(256, 4):    ", count(torch.nn.MultiheadAttention(256, 4)))
print("StandardAttentionWithRoPE(256, 4):", count(StandardAttentionWithRoPE(256, 4)))
D = 256
for N in (256, 1024, 8192):
    rope_flops, rest = 6 * N * D, 8 * N * D**2 + 4 * N**2 * D
    print(t("ch06.rope_share", N=N, share=rope_flops / (rope_flops + rest)))

# %% [markdown] tags=["lang-en"]
# Same count. In FLOPs, rotating a pair is 4 multiplications and 2 additions, so RoPE on $q$ and $k$
# costs $6ND$ per sequence against $8ND^2$ for the four projections and $4N^2D$ for the attention
# itself: 0.195% of the total at $N = 256$, less for longer sequences. The cos/sin tables are
# $N \times d/2$ numbers each, shared by all heads and layers. Measured on this machine ($D = 256$,
# 4 heads, one sequence; all six timed in turn on one thread, median of 5 each):

# %% [markdown] tags=["lang-zh"]
# 参数量相同。再看浮点运算次数：旋转一对通道需要 4 次乘法和 2 次加法，所以对 $q$ 和 $k$ 应用 RoPE，每个序列共需 $6ND$ 次运算。相比之下，四个投影需要 $8ND^2$ 次，注意力本身需要 $4N^2D$ 次。在 $N = 256$ 时，RoPE 只占总量的 0.195%，序列越长占比越小。cos/sin 表各有 $N \times d/2$ 个数，由所有头和所有层共享。在本机上实测（$D = 256$，4 个头，一条序列；六种情况在单线程上轮流计时，各取 5 次的中位数）：

# %% tags=["nbval-ignore-output"]
def without_rope(m, x):   # the same module's attention, no rotation
    heads = lambda y: y.unflatten(-1, (m.num_heads, -1)).transpose(1, 2)   # noqa: E731
    o = F.scaled_dot_product_attention(heads(m.q_proj(x)), heads(m.k_proj(x)), heads(m.v_proj(x)))
    return m.out_proj(o.transpose(1, 2).flatten(2))


torch.manual_seed(0)
m = StandardAttentionWithRoPE(256, 4).eval()
calls = {}
for n in (256, 512, 1024):
    x, tables = torch.randn(1, n, 256), generate_rope_embeddings(n, 64)
    calls[n, "with"] = lambda x=x, tables=tables: m(x, x, x, tables)
    calls[n, "without"] = lambda x=x: without_rope(m, x)
with torch.inference_mode(), one_thread():
    ms = {key: 1e3 * sec for key, sec in round_robin_medians(calls, repeats=5).items()}
overhead = {n: ms[n, "with"] / ms[n, "without"] - 1 for n in (256, 512, 1024)}
print(viz.format_table([t("ch06.col.n"), t("ch06.col.with_rope"), t("ch06.col.without"), t("ch06.col.overhead")],
                       [[n, f"{ms[n, 'with']:.2f}", f"{ms[n, 'without']:.2f}", f"{overhead[n]:+.0%}"] for n in overhead]))
print(t("ch06.overhead_trend", a=overhead[256], b=overhead[1024],
        trend=t("ch06.trend.down" if overhead[1024] < overhead[256] else "ch06.trend.up")))

# %% [markdown] tags=["lang-en"]
# The two columns differ only by the rotation of $q$ and $k$. In FLOPs its share falls as $N$ grows
# (the attention is quadratic, RoPE linear: the shares printed above). Time need not follow the
# FLOPs: the rotation is a handful of small element-wise passes over $q$ and $k$, each limited by
# memory and by the cost of launching an operation, which a FLOP count ignores, so at these sizes the
# overhead in time can be much larger than the FLOP share, and it moves from run to run on a shared
# machine. The line under the table says, from this run's numbers, which way it went between
# $N = 256$ and $N = 1024$. `benchmarks/bench_rope.py` compares the module with the same attention
# written in plain PyTorch (the bar: within 1.10×).
#
# ## 10. Pitfalls
#
# **Tables shorter than the sequence.** Some implementations quietly repeat the last row of cos/sin
# when the sequence is longer than the tables: every extra position then gets the *same* angle as
# the last one, and the model cannot tell them apart. attnkit refuses, saying what it needs:

# %% [markdown] tags=["lang-zh"]
# 两列的差别只在于对 $q$ 和 $k$ 的旋转。按浮点运算次数算，它的占比随 $N$ 增大而减小（注意力是平方级的，RoPE 是线性的，占比见上面的输出）。但耗时不一定跟着浮点运算次数走：旋转由几次对 $q$ 和 $k$ 的小规模逐元素运算组成，每一次都受限于内存带宽和启动一次运算的开销，而这些是浮点运算次数反映不出来的。所以在这样的规模下，耗时上的额外开销可能远大于浮点运算的占比，而且在共用的机器上每次运行都会变化。表格下面那一行根据本次运行的实测数字，说明从 $N = 256$ 到 $N = 1024$ 开销是变大还是变小。`benchmarks/bench_rope.py` 会把这个模块与用纯 PyTorch 写的同样的注意力作比较（标准：耗时不超过其 1.10 倍）。
#
# ## 10. 常见陷阱
#
# **cos/sin 表比序列短。** 有些实现在序列比表长时会悄悄重复 cos/sin 的最后一行：于是多出来的每个位置都得到与最后一个位置*相同*的角度，模型再也分不清它们。attnkit 会拒绝这样做，并说明它需要什么：

# %%
cos8, sin8 = generate_rope_embeddings(8, 16)
try:
    apply_rope(torch.randn(1, 12, 16), cos8, sin8)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] tags=["lang-en"]
# **An odd head dimension.** RoPE rotates *pairs* of channels, so the head dimension must be even:

# %% [markdown] tags=["lang-zh"]
# **头维度是奇数。** RoPE 旋转的是*成对*的通道，所以头维度必须是偶数：

# %%
try:
    StandardAttentionWithRoPE(embed_dim=36, num_heads=4)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] tags=["lang-en"]
# **Forgetting the offset when decoding.** A new token at position 9 rotated as if it were at
# position 0 gets the wrong relative distance to every cached key — no error, wrong output:

# %% [markdown] tags=["lang-zh"]
# **解码时忘记位置偏移。** 位置 9 上的新词元如果被当作位置 0 来旋转，它与每个缓存的键之间的相对距离都是错的——不报错，但输出是错的：

# %%
x10 = torch.randn(1, 10, 64)
with torch.no_grad():
    right = attn(x10, x10, x10, rope_embeddings=rope10, attn_mask=causal)[:, 9:]   # last row of the full pass
    wrong = attn(x10[:, 9:], x10, x10, rope_embeddings=rope10)              # q_offset forgotten
    fixed = attn(x10[:, 9:], x10, x10, rope_embeddings=rope10, q_offset=9)
print(t("ch06.without_offset", ok=torch.allclose(wrong, right, atol=1e-5)))
print(t("ch06.with_offset", ok=torch.allclose(fixed, right, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **Angles in float32.** For long contexts, $m\theta_i$ is a large number, and float32 keeps only
# about 7 significant digits, so the angle $m\theta_i$ computed in float32 is off by an error that
# grows with the position $m$. What matters for pair $i$ is that error measured against its own
# step $\theta_i$, the angle it turns from one position to the next. attnkit computes angles in
# float64 (`rope_angles`) and only then casts the cos/sin tables; below, the float32 angles against
# those, pair by pair:

# %% [markdown] tags=["lang-zh"]
# **用 float32 计算角度。** 上下文很长时，$m\theta_i$ 是个很大的数，而 float32 只有大约 7 位有效数字，所以用 float32 算出的角度 $m\theta_i$ 带有误差，误差随位置 $m$ 增大。对第 $i$ 对来说，要拿这个误差和它自己的步长 $\theta_i$（从一个位置到下一个位置转过的角度）相比。attnkit 先用 float64 计算角度（`rope_angles`），再把 cos/sin 表转换成目标精度；下面逐对比较 float32 算出的角度与 float64 的结果：

# %%
inv_freq = rope_inv_freq(64)                                     # the steps theta_i, float64
rows = []
for pos in (100_000, 1_000_000, 10_000_000):
    angle64 = rope_angles(torch.tensor([pos]), inv_freq)[0]      # what attnkit does: float64
    angle32 = torch.tensor(float(pos)) * inv_freq.float()        # the same in float32
    err = (angle32.double() - angle64).abs()                     # (32,) radians, one per pair
    in_steps = err / inv_freq                                    # (32,) the error in units of the pair's own step
    worst = int(err.argmax())
    rows.append([f"{pos:,}", f"{err[worst].item():.4f}", worst, f"{inv_freq[worst].item():.4f}",
                 f"{in_steps.max().item():.3f}", f"{(torch.cos(angle32).double() - torch.cos(angle64)).abs().max().item():.4f}"])
print(viz.format_table([t("ch06.col.position"), t("ch06.col.angle_err"), t("ch06.col.pair"), t("ch06.col.step"),
                        t("ch06.col.err_steps"), t("ch06.col.cos_err")], rows))

# %% [markdown] tags=["lang-en"]
# At position 1,000,000 the largest error, 0.0218 rad, belongs to pair 1, a fast pair whose step
# is 0.7499 rad: measured against its own step, no pair is off by more than 0.108 of a step, so
# neighbouring positions stay apart. What degrades is the rotation itself: the cos and sin of the
# fast pairs are off by up to 0.0161, and the error grows with the position. At 10,000,000 it
# reaches 0.706 of a step, and neighbouring positions begin to merge. Angles in float64 avoid both.
#
# ## 11. Exercises
#
# **Exercise 1.** Rotate the 2-D point $(x, y)$ counter-clockwise by `angle` radians; return the
# tuple `(x', y')`.

# %% [markdown] tags=["lang-zh"]
# 在位置 1,000,000 处，最大的误差 0.0218 弧度出现在第 1 对上，这是一对快的通道，步长为 0.7499 弧度。拿各自的步长来衡量，没有哪一对的误差超过步长的 0.108，所以相邻位置仍然分得开。真正变差的是旋转本身：快的通道对的 cos 和 sin 最多偏差 0.0161，而且误差随位置增大。到位置 10,000,000 时，误差达到步长的 0.706，相邻位置开始混在一起。用 float64 计算角度，这两个问题都不会出现。
#
# ## 11. 练习
#
# **练习 1**：把二维点 $(x, y)$ 逆时针旋转 `angle` 弧度，返回元组 `(x', y')`。

# %%
from attnkit.exercises.ch06 import check_alibi_slopes, check_apply_rope, check_ntk_base, check_rotate_pair


def my_rotate_pair(x, y, angle):
    # your code here
    raise NotImplementedError


_ = check_rotate_pair(my_rotate_pair)

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** Apply RoPE to one head `x` of shape `(L, d)` in the **half-split** convention
# (GPT-NeoX / LLaMA: pair $i$ is channels $(i, i + d/2)$). `cos` and `sin` have shape `(L, d/2)`;
# row $m$ holds $\cos m\theta_i$ and $\sin m\theta_i$.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：按**前后两半配对**的约定（GPT-NeoX / LLaMA：第 $i$ 对是通道 $(i, i + d/2)$），对形状为 `(L, d)` 的一个头 `x` 应用 RoPE。`cos` 和 `sin` 的形状为 `(L, d/2)`，第 $m$ 行分别是 $\cos m\theta_i$ 和 $\sin m\theta_i$。

# %%
def my_apply_rope(x, cos, sin):
    # your code here
    raise NotImplementedError


_ = check_apply_rope(my_apply_rope)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Return the ALiBi slopes for `num_heads` heads, as a float tensor of shape
# `(num_heads,)`, following the rule of section 7 (the checker tries 8, 12, 4 and 6 heads).

# %% [markdown] tags=["lang-zh"]
# **练习 3**：按第 7 节的规则返回 `num_heads` 个头的 ALiBi 斜率，结果是形状为 `(num_heads,)` 的浮点张量（检查器会测试 8、12、4 和 6 个头）。

# %%
def my_alibi_slopes(num_heads):
    # your code here
    raise NotImplementedError


_ = check_alibi_slopes(my_alibi_slopes)

# %% [markdown] tags=["lang-en"]
# **Exercise 4.** Return the NTK-aware base $b'$ for base `base`, head dimension `head_dim` and
# scale factor `scale`: the base for which $\theta_0$ stays 1 and the slowest pair's
# $\theta_{d/2-1} = b^{-(d-2)/d}$ is divided by exactly `scale` (section 8), $d$ being `head_dim`.

# %% [markdown] tags=["lang-zh"]
# **练习 4**：给定底数 `base`、头维度 `head_dim` 和缩放因子 `scale`，返回 NTK 感知缩放后的底数 $b'$：在这个底数下，$\theta_0$ 仍然是 1，而最慢一对的 $\theta_{d/2-1} = b^{-(d-2)/d}$ 恰好除以 `scale`（第 8 节），其中 $d$ 即 `head_dim`。

# %%
def my_ntk_base(base, head_dim, scale):
    # your code here
    raise NotImplementedError


_ = check_ntk_base(my_ntk_base)

# %% [markdown] tags=["lang-en"]
# **Stretch: port a checkpoint.** A model was trained with interleaved RoPE; you must run it with
# half-split code (section 5). Write `my_permute_for_half_split(weight, num_heads)`: `weight` is
# $W_Q$ or $W_K$ of shape `(num_heads * head_dim, in_features)`, or its bias `(num_heads * head_dim,)`;
# return it with its rows reordered so that the half-split code gives the scores the trained model
# gave. Mind the direction of the permutation and the heads; the picture of section 5 helps.

# %% [markdown] tags=["lang-zh"]
# **挑战题：移植检查点。** 一个模型是用相邻交错配对的 RoPE 训练的，你却要用前后两半配对的代码运行它（第 5 节）。写出 `my_permute_for_half_split(weight, num_heads)`：`weight` 是形状为 `(num_heads * head_dim, in_features)` 的 $W_Q$ 或 $W_K$，或者形状为 `(num_heads * head_dim,)` 的偏置；返回把各行重新排序后的结果，使前后两半配对的代码算出的分数与训练好的模型相同。注意置换的方向，也别忘了多个头；第 5 节的图会有帮助。

# %%
from attnkit.exercises.ch06 import check_permute_for_half_split


def my_permute_for_half_split(weight, num_heads):
    # your code here
    raise NotImplementedError


_ = check_permute_for_half_split(my_permute_for_half_split)

# %% [markdown] tags=["lang-en"]
# ## 12. Summary
#
# - Attention alone is blind to order (section 1). Absolute encodings add a position vector to the
#   input; a learned table stops at its last trained position.
# - RoPE rotates each channel pair of $q$ and $k$ by $m\theta_i$, $\theta_i = \text{base}^{-2i/d}$; the
#   score then depends only on $m - n$ (proof and check in section 3), with a tendency to decay with
#   distance (section 4). It adds no parameters, and a share of the FLOPs that falls as $N$ grows;
#   its share of the time is measured, not assumed (section 9).
# - Interleaved and half-split RoPE are the same up to a permutation of the rows of $W_Q, W_K$.
# - ALiBi adds $-m_h (i - j)$ to the scores, with geometric slopes; xPos multiplies RoPE by a decay.
# - Beyond the trained length, slow pairs meet unseen angles. PI divides all frequencies by $s$,
#   NTK-aware scaling raises the base, YaRN interpolates only the slow pairs and rescales the scores
#   (attnkit ramps as YaRN's reference code and transformers do; the paper's ramp is an option).
# - When decoding, rotate the new token at its true position (`q_offset`), compute angles in float64,
#   and never reuse the last row of a short table.
#
# **Next:** chapter 07 — flash attention: the same attention, computed tile by tile.
#
# ## References
# - J. Su et al., *RoFormer: Enhanced Transformer with Rotary Position Embedding*, arXiv:2104.09864 — §3.2, eqs. (13)–(16) (RoPE and the relative property), §3.4.3 (long-term decay).
# - A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 — §3.5 (sinusoidal encoding).
# - O. Press, N. A. Smith, M. Lewis, *Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation* (ALiBi), ICLR 2022 — §3 (bias and slopes).
# - Y. Sun et al., *A Length-Extrapolatable Transformer* (xPos), arXiv:2212.10554 — §3.
# - S. Chen et al., *Extending Context Window of Large Language Models via Positional Interpolation*, arXiv:2306.15595 — §2.3.
# - bloc97, *NTK-Aware Scaled RoPE allows LLaMA models to have extended (8k+) context size without any fine-tuning*, r/LocalLLaMA, 2023.
# - B. Peng et al., *YaRN: Efficient Context Window Extension of Large Language Models*, arXiv:2309.00071 — §3.1 (NTK-aware), §3.2 (NTK-by-parts ramp), §3.4 (temperature $\sqrt{1/t} = 0.1\ln s + 1$).
# - S. Black et al., *GPT-NeoX-20B*, 2022, and Hugging Face `transformers`, `modeling_llama.py` (`rotate_half`; the half-split convention).

# %% [markdown] tags=["lang-zh"]
# ## 12. 小结
#
# - 单靠注意力看不到顺序（第 1 节）。绝对位置编码把位置向量加到输入上；可学习的位置表到最后一个训练过的位置就没有了。
# - RoPE 把 $q$ 和 $k$ 的每一对通道旋转 $m\theta_i$，$\theta_i = \text{base}^{-2i/d}$；于是分数只依赖于 $m - n$（第 3 节给出证明与验证），并且有随距离衰减的趋势（第 4 节）。它不增加参数，占浮点运算次数的比例随 $N$ 增大而减小；它占多少耗时，要实测，不能想当然（第 9 节）。
# - 相邻交错配对与前后两半配对的 RoPE 只相差对 $W_Q$、$W_K$ 各行的一次置换。
# - ALiBi 给分数加上 $-m_h (i - j)$，斜率构成等比数列；xPos 在 RoPE 上再乘一个衰减。
# - 超出训练长度后，慢的通道对会遇到没见过的角度。PI 把所有频率除以 $s$，NTK 感知缩放提高底数，YaRN 只对慢的通道对插值，并重新缩放分数。attnkit 的过渡方式与 YaRN 参考代码和 transformers 一致，论文的过渡方式可作为选项。
# - 解码时要按新词元的真实位置旋转（`q_offset`），用 float64 计算角度，绝不要重复使用短表的最后一行。
#
# **下一章**：第 7 章——FlashAttention：同样的注意力，逐块计算。
#
# ## 参考文献
# - J. Su 等，*RoFormer: Enhanced Transformer with Rotary Position Embedding*，arXiv:2104.09864——§3.2，式 (13)–(16)（RoPE 及其相对位置性质），§3.4.3（远程衰减）。
# - A. Vaswani 等，*Attention Is All You Need*，NeurIPS 2017——§3.5（正弦位置编码）。
# - O. Press、N. A. Smith、M. Lewis，*Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation*（ALiBi），ICLR 2022——§3（偏置与斜率）。
# - Y. Sun 等，*A Length-Extrapolatable Transformer*（xPos），arXiv:2212.10554——§3。
# - S. Chen 等，*Extending Context Window of Large Language Models via Positional Interpolation*，arXiv:2306.15595——§2.3。
# - bloc97，*NTK-Aware Scaled RoPE allows LLaMA models to have extended (8k+) context size without any fine-tuning*，r/LocalLLaMA，2023。
# - B. Peng 等，*YaRN: Efficient Context Window Extension of Large Language Models*，arXiv:2309.00071——§3.1（NTK 感知缩放），§3.2（NTK-by-parts 过渡函数），§3.4（温度 $\sqrt{1/t} = 0.1\ln s + 1$）。
# - S. Black 等，*GPT-NeoX-20B*，2022；Hugging Face `transformers` 的 `modeling_llama.py`（`rotate_half`，前后两半配对的约定）。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. YaRN's two ramps
#
# Section 8 said that YaRN keeps the pairs that turn more than $\beta$ times within the trained
# length $L$, interpolates those that turn less than $\alpha$ times, and ramps in between. The paper
# (§3.2) ramps linearly in the number of turns $r_i$: $\theta'_i = (1-\gamma_i)\,\theta_i/s + \gamma_i\,\theta_i$
# with $\gamma_i = (r_i - \alpha)/(\beta - \alpha)$ clipped to $[0, 1]$. The authors' reference code —
# and with it transformers' `rope_type: yarn`, vLLM and every released YaRN checkpoint — ramps
# linearly in the *pair index* $i$ instead, from the pair that turns $\beta$ times within $L$ (index
# rounded down) to the one that turns $\alpha$ times (rounded up). attnkit's `yarn_inv_freq`
# computes the reference code's ramp by default, so it reproduces those models, and the paper's
# with `ramp="paper"`.
#
# Since $r_i$ falls geometrically with $i$, a ramp linear in $i$ is linear in $\log r_i$, while the
# paper's is linear in $r_i$. For a LLaMA-like head ($d = 64$, base 10000, $L = 2048$, $s = 4$,
# $\beta = 32$, $\alpha = 1$):

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. YaRN 的两种过渡方式
#
# 第 8 节说过：YaRN 保持在训练长度 $L$ 内转了 $\beta$ 圈以上的通道对不变，对转不满 $\alpha$ 圈的通道对做插值，中间逐渐过渡。论文（§3.2）的过渡对圈数 $r_i$ 线性：$\theta'_i = (1-\gamma_i)\,\theta_i/s + \gamma_i\,\theta_i$，其中 $\gamma_i = (r_i - \alpha)/(\beta - \alpha)$，并截断到 $[0, 1]$。作者的参考代码却是按*通道对的序号* $i$ 线性过渡的：从在 $L$ 内转 $\beta$ 圈的那一对（序号向下取整）过渡到转 $\alpha$ 圈的那一对（序号向上取整）。transformers 的 `rope_type: yarn`、vLLM 以及所有已发布的 YaRN 检查点都沿用了这种做法。attnkit 的 `yarn_inv_freq` 默认按参考代码计算，因此能复现这些模型；传入 `ramp="paper"` 则按论文的公式计算。
#
# $r_i$ 随 $i$ 按几何级数减小，所以对 $i$ 线性的过渡相当于对 $\log r_i$ 线性，而论文的过渡对 $r_i$ 线性。以一个类似 LLaMA 的头为例（$d = 64$，底数 10000，$L = 2048$，$s = 4$，$\beta = 32$，$\alpha = 1$）：

# %%
ref = yarn_inv_freq(64, 10000.0, 4.0, 2048)                 # the reference code's ramp (the default)
paper = yarn_inv_freq(64, 10000.0, 4.0, 2048, ramp="paper")  # the paper's ramp
plain = rope_inv_freq(64)
low, high = yarn_correction_range(64, 10000.0, 2048)
print(t("ch06.yarn_range", low=low, high=high))
pairs = list(range(6, 24, 2))
print(viz.format_table([t("ch06.col.pair"), *[str(i) for i in pairs]], [
    [t("ch06.col.ref_ratio"), *[f"{(ref / plain)[i].item():.3f}" for i in pairs]],
    [t("ch06.col.paper_ratio"), *[f"{(paper / plain)[i].item():.3f}" for i in pairs]],
    [t("ch06.col.gap"), *[f"{(paper / ref - 1)[i].item():+.0%}" for i in pairs]]]))
gap = (paper / ref - 1).abs()
print(t("ch06.yarn_gap", lo=gap[low + 1:high].min().item(), hi=gap.max().item(), i=int(gap.argmax())))

# %% [markdown] tags=["lang-en"]
# A model trained with YaRN learned the reference code's frequencies; run it with the paper's and
# the pairs inside the ramp turn at other speeds than it was trained with. That is why attnkit's
# default is the reference code's ramp, checked in `tests/library/test_rope.py` against transformers'
# algorithm.

# %% [markdown] tags=["lang-zh"]
# 用 YaRN 训练出来的模型学到的是参考代码的频率；如果改用论文的公式运行它，过渡段里的通道对就会以不同于训练时的速度旋转。所以 attnkit 默认采用参考代码的过渡方式，`tests/library/test_rope.py` 会把它与 transformers 的算法逐一对照。
