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
# # 01 · Scaled dot-product attention
#
# **What you will learn**
# - why attention uses *queries*, *keys* and *values* — shown by an experiment, not asserted;
# - how a token's vector becomes its query, key and value, with one query worked by hand and a picture of the data flow;
# - the formula $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$, its shapes, and a version you write in five lines;
# - masks: causal, padding, boolean vs additive, and a query that may attend to nothing;
# - what attention costs in FLOPs and memory, measured on this machine;
# - the pitfalls that give silently wrong results.
#
# **You need** Python, PyTorch tensors and matrix multiplication. No earlier chapter.
#
# Run the cells from top to bottom (*Run → Run All Cells*). Sliders appear in section 6.

# %% [markdown] tags=["lang-zh"]
# # 01 · 缩放点积注意力
#
# **本章内容**
# - 注意力为什么要用*查询*（query）、*键*（key）和*值*（value）——用实验来说明，而不是直接下结论；
# - 词元的向量怎样变成它的查询、键和值：手算一个查询，再看一张数据流向图；
# - 公式 $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$ 及其中各个张量的形状，以及一个你自己用五行代码就能写出的实现；
# - 掩码：因果掩码、填充掩码、布尔掩码与加性掩码，以及无处可看的查询；
# - 注意力在浮点运算次数（FLOPs）和内存上的开销，并在本机上实测；
# - 那些不报错却悄悄算错的常见陷阱。
#
# **预备知识**：Python、PyTorch 张量和矩阵乘法，不需要读过前面的章节。
#
# 请从上到下依次运行各个单元格（*Run → Run All Cells*，中文界面为“运行 → 运行所有单元格”）。第 6 节有可以拖动的滑块。

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch01  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.core import causal_mask, padding_mask, scaled_dot_product_attention

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. Queries, keys and values: from $x$ to $q$, $k$, $v$
#
# Think of a dictionary lookup made soft. Every position in a sequence asks a question — its
# **query** $q_i$. Every position also advertises what it can be found by — its **key** $k_j$ —
# and what it hands over when found — its **value** $v_j$. Position $i$'s answer is an average
# of all values, weighted by how well its query matches each key:
#
# $$\text{out}_i = \sum_j w_{ij}\, v_j, \qquad w_{ij} = \mathrm{softmax}_j(q_i \cdot k_j) = \frac{e^{q_i \cdot k_j}}{\sum_{j'} e^{q_i \cdot k_{j'}}}.$$
#
# The softmax turns one query's scores into weights that are positive and sum to 1 (chapter 03 is
# about it). Where do the queries, keys and values come from? From the tokens themselves: each token
# is a row vector $x_i$, and three learned matrices give $q_i = x_i W_Q$, $k_i = x_i W_K$,
# $v_i = x_i W_V$, the same three for every position. In PyTorch each is an `nn.Linear` without bias.
# Here they are on a 4-token sentence, each token a vector of $d_{\text{model}} = 8$ numbers, projected
# to $d_k = d_v = 4$. The embeddings and the projections are random (seeded), not trained: the numbers
# show the mechanics, not meaning. `nn.Linear` stores its matrix as (out, in) and computes
# `x @ weight.T`, so its `weight` is $W_Q^\top$:

# %% [markdown] tags=["lang-zh"]
# ## 1. 查询、键和值：从 $x$ 到 $q$、$k$、$v$
#
# 可以把注意力看成一次“软化”的字典查找。序列中的每个位置都提出一个问题——它的**查询** $q_i$；每个位置也都亮出一张“名片”，说明别人可以凭什么找到它——它的**键** $k_j$；被找到之后交出来的内容，则是它的**值** $v_j$。位置 $i$ 的输出是所有值的加权平均，权重取决于它的查询和每个键匹配得有多好：
#
# $$\text{out}_i = \sum_j w_{ij}\, v_j, \qquad w_{ij} = \mathrm{softmax}_j(q_i \cdot k_j) = \frac{e^{q_i \cdot k_j}}{\sum_{j'} e^{q_i \cdot k_{j'}}}.$$
#
# softmax 把一个查询的各个分数变成权重：每个权重都是正数，加起来等于 1（第 3 章专门讲它）。查询、键和值是从哪里来的？来自词元本身：每个词元是一个行向量 $x_i$，三个学出来的矩阵给出 $q_i = x_i W_Q$、$k_i = x_i W_K$、$v_i = x_i W_V$，每个位置用的都是同样这三个矩阵。在 PyTorch 里，每个矩阵就是一个不带偏置的 `nn.Linear`。
#
# 下面把它们用在一个 4 个词元的句子上：每个词元是 $d_{\text{model}} = 8$ 个数的向量，投影到 $d_k = d_v = 4$ 维。嵌入和投影都是随机的（固定了种子），没有经过训练：这些数字展示的是计算过程，不代表语义。`nn.Linear` 按（输出，输入）的形状存放矩阵，计算的是 `x @ weight.T`，所以它的 `weight` 是 $W_Q^\top$：

# %%
from torch import nn

sentence = t("ch01.qkv_sentence").split()             # 4 tokens
torch.manual_seed(0)
x = torch.randn(len(sentence), 8)                     # (n=4, d_model=8): one vector per token
to_q, to_k, to_v = (nn.Linear(8, 4, bias=False) for _ in range(3))
with torch.no_grad():
    q, k, v = to_q(x), to_k(x), to_v(x)               # (4, 4) each: row i belongs to token i
print(t("ch01.shape_line", name="x", shape=tuple(x.shape)))
print(t("ch01.shape_line", name="to_q.weight", shape=tuple(to_q.weight.shape)))
for name, m in (("q", q), ("k", k), ("v", v)):
    print(t("ch01.shape_line", name=name, shape=tuple(m.shape)))

# %% [markdown] tags=["lang-en"]
# Now one query by hand: token 1's. Three steps: its score with every key,
# $s_j = q_1 \cdot k_j / \sqrt{d_k}$ (here $\sqrt{4} = 2$); the weights $w = \mathrm{softmax}(s)$;
# and the output $\sum_j w_j v_j$, each value vector scaled by its weight and the four added up.

# %% [markdown] tags=["lang-zh"]
# 现在手算一个查询：词元 1 的查询。分三步：先算它与每个键的分数 $s_j = q_1 \cdot k_j / \sqrt{d_k}$（这里 $\sqrt{4} = 2$）；再算权重 $w = \mathrm{softmax}(s)$；最后得到输出 $\sum_j w_j v_j$，即每个值向量乘以自己的权重，再把四个加起来。

# %%
i = 1
s = q[i] @ k.T / math.sqrt(4)                          # (4,): step 1, one score per key
w = torch.exp(s) / torch.exp(s).sum()                  # (4,): step 2, softmax by its definition
terms = w[:, None] * v                                 # (4, 4): step 3, row j is w_j v_j ...
out_i = terms.sum(dim=0)                               # (4,): ... and their sum is the output
print(t("ch01.hand_query", tok=sentence[i], v=q[i].numpy().round(2)))
print(viz.format_table([t("ch01.col.key"), t("ch01.col.score"), t("ch01.col.weight"), t("ch01.col.term")],
                       [[f"{j}: {tok}", f"{s[j]:.2f}", f"{w[j]:.3f}", terms[j].numpy().round(2) + 0.0]
                        for j, tok in enumerate(sentence)], left=(0,)))  # the keys' labels line up on the left
print(t("ch01.hand_sum", v=out_i.numpy().round(2) + 0.0, total=w.sum()))  # + 0.0: no "-0."
full = torch.softmax(q @ k.T / math.sqrt(4), dim=-1) @ v    # every query at once: (4, 4)
print(t("ch01.hand_matches", i=i, ok=torch.allclose(out_i, full[i], atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# The token with the largest score gets the largest weight, but the others keep some: the output
# is a blend of all four value vectors, not a copy of one. All queries go through the same three
# steps at once: a matrix product for the scores, a softmax over each row, a matrix product with
# $V$. The picture shows the whole layer with the shape of every tensor:

# %% [markdown] tags=["lang-zh"]
# 分数最大的词元得到最大的权重，但其余词元也保留了一部分：输出是四个值向量的混合，而不是其中某一个的拷贝。所有查询同时走这三步：一次矩阵乘法得到分数，对每一行做 softmax，再与 $V$ 做一次矩阵乘法。下图画出了整层的计算，并标出每个张量的形状：

# %% alt="ch01.alt.qkv"
from attnkit.schematics.qkv import qkv_schematic

_ = qkv_schematic(n=len(sentence), d_model=8, d_k=4, d_v=4)

# %% [markdown] tags=["lang-en"]
# ## 2. Why queries, keys and values?
#
# Why not something simpler, such as a learned table $A$ of one number per pair of positions that
# says once and for all how much position $i$ reads from position $j$? Because *which* position
# holds the useful information depends on the content of the sequence. Here is a task that makes
# this concrete. A sequence holds 8 random vectors $x_1,\dots,x_8$ of 16 numbers each. The answer at
# position $i$ is the vector $x_j$ that best matches a fixed transform of $x_i$: the $x_j$ with the
# largest dot product $(R x_i)\cdot x_j$, where $R$ is a fixed random rotation (an orthogonal matrix:
# it turns a vector without changing its length). We train four models on the same batches:
#
# - a **fixed** mixing table: $\text{out} = \mathrm{softmax}(A)\,x$, where row $i$ of $\mathrm{softmax}(A)$
#   holds the weights position $i$ gives every position, whatever the sequence holds;
# - **attention**, as in section 1: $\text{out} = \mathrm{softmax}\big(xW_Q (xW_K)^\top\big)\, xW_V$, weights computed from the content;
# - attention with one matrix in two roles, started from the same matrices as attention: **queries = keys**
#   ($W_Q = W_K$) and **keys = values** ($W_K = W_V$).
#
# The first line printed answers a question about the task itself: without $R$ (no rotation), how
# often is the best match of $x_i$ the vector $x_i$ itself?

# %% [markdown] tags=["lang-zh"]
# ## 2. 为什么需要查询、键和值？
#
# 为什么不用更简单的办法，比如学一张表 $A$，每一对位置一个数，一劳永逸地规定位置 $i$ 从位置 $j$ 读取多少？因为有用的信息*在哪个位置*，取决于序列本身的内容。
#
# 下面用一个具体的任务来说明。序列里有 8 个随机向量 $x_1,\dots,x_8$，每个有 16 个数。位置 $i$ 的正确答案，是与 $x_i$ 的某个固定变换最匹配的那个 $x_j$：也就是与 $R x_i$ 点积 $(R x_i)\cdot x_j$ 最大的 $x_j$，其中 $R$ 是一个固定的随机旋转（正交矩阵：它转动向量，但不改变向量的长度）。我们在同样的数据批次上训练四个模型：
#
# - **固定矩阵**：$\text{out} = \mathrm{softmax}(A)\,x$，$\mathrm{softmax}(A)$ 的第 $i$ 行是位置 $i$ 分给各个位置的权重，与序列内容无关；
# - **注意力**，即第 1 节的公式：$\text{out} = \mathrm{softmax}\big(xW_Q (xW_K)^\top\big)\, xW_V$，权重由内容计算出来；
# - 一个矩阵身兼两职的注意力，初始矩阵与上面的注意力相同：**查询 = 键**（$W_Q = W_K$）和**键 = 值**（$W_K = W_V$）。
#
# 打印的第一行回答的是任务本身的一个问题：如果没有 $R$（不做旋转），$x_i$ 的最佳匹配有多大比例就是 $x_i$ 自己？

# %% alt="ch01.alt.fixed_vs_qkv"
from attnkit.toy import plot_fixed_vs_qkv, self_match_fraction, train_fixed_vs_qkv

print(t("ch01.self_match", v=self_match_fraction(n=8, d=16, seed=0)))
result = train_fixed_vs_qkv(n=8, d=16, steps=150, seed=0)
for name in ("zero", "fixed", "qkv", "tied_qk", "tied_kv"):
    print(t("ch01.test_mse", name=t("toy." + name), v=result[name]))
_ = plot_fixed_vs_qkv(result)

# %% [markdown] tags=["lang-en"]
# The fixed matrix can do little better than predicting zero (test error 0.96 against 1.09):
# the best it can learn is a position-based average, and no position is the right one on
# average. Attention, whose weights come from comparing contents, brings the error down to
# 0.17 after the same 150 steps. Queries and keys decide *where to look*; values decide
# *what to take*.
#
# **Why $R$ is in the task.** Without it, the best match of $x_i$ is $x_i$ itself at 99.6% of the
# positions (first line): the task would be "copy your own vector", and a query equal to the key
# would do. $R$ makes what position $i$ looks for, $R x_i$, differ from what it is, $x_i$. The two
# tied models measure what that asks of the projections:
#
# - **queries = keys** stays at 0.98, no better than the fixed matrix. With one matrix $W$ the score
#   $x_i W W^\top x_j^\top$ is symmetric in $i$ and $j$, and a vector's score with itself,
#   $\lVert x_i W \rVert^2$, beats its score with any key $x_j W$ of no larger norm (Cauchy–Schwarz):
#   it cannot express a rotation $R$.
# - **keys = values** reaches 0.17, level with three separate matrices (0.17). Only the product
#   $W_Q W_K^\top$ enters the scores, so the query matrix can make up for whatever matrix the keys
#   share with the values, and this task hands over the found vector itself.
#
# So what this experiment shows is that queries must be computed apart from keys: where to look is
# not what is there. It does not show that values need a matrix of their own; on this task they do not.

# %% [markdown] tags=["lang-zh"]
# 固定矩阵只比“始终预测 0”略好一点（测试误差 0.96，后者为 1.09）：它最多只能学到按位置的平均，而正确答案落在哪个位置是随机的，平均而言没有哪个位置更可能是答案。注意力的权重来自内容之间的比较，同样训练 150 步后误差降到 0.17。查询和键决定*往哪里看*，值决定*取走什么*。
#
# **任务里为什么要有 $R$。** 如果没有 $R$，在 99.6% 的位置上 $x_i$ 的最佳匹配就是 $x_i$ 自己（第一行）：任务就成了“抄下自己的向量”，让查询等于键就够了。有了 $R$，位置 $i$ 要找的东西 $R x_i$ 就不再是它本身 $x_i$。两个共用矩阵的模型正好可以测出，这对各个投影提出了什么要求：
#
# - **查询 = 键**：误差停在 0.98，并不比固定矩阵好。只用一个矩阵 $W$ 时，分数 $x_i W W^\top x_j^\top$ 对 $i$ 和 $j$ 是对称的；而且由柯西–施瓦茨不等式，向量与自己的分数 $\lVert x_i W \rVert^2$ 总不低于它与任何范数不大于它的键 $x_j W$ 的分数。这样的分数表示不了旋转 $R$。
# - **键 = 值**：误差降到 0.17，与三个独立矩阵（0.17）不相上下。进入分数的只有乘积 $W_Q W_K^\top$，所以无论键和值共用的是什么矩阵，查询矩阵都能把它补回来；而这个任务要交出的正是找到的那个向量本身。
#
# 所以这个实验说明的是：查询必须和键分开计算——往哪里看，不等于那里有什么。它并没有说明值必须有自己的矩阵；在这个任务上并不需要。

# %% [markdown] tags=["lang-en"]
# ## 3. The formula
#
# Stack the queries, keys and values of a sequence as matrices, one row per token as in section 1.
# Vaswani et al. (2017, eq. 1):
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V$$
#
# | tensor | shape | meaning |
# |---|---|---|
# | $Q$ | $(L, d_k)$ | one query per output position |
# | $K$ | $(S, d_k)$ | one key per input position |
# | $V$ | $(S, d_v)$ | one value per input position |
# | $QK^\top/\sqrt{d_k}$ | $(L, S)$ | the **scores**: how well query $i$ matches key $j$ |
# | softmax over the last dim | $(L, S)$ | the **attention weights**: each row sums to 1 |
# | output | $(L, d_v)$ | a weighted average of values per query |
#
# In self-attention $Q$, $K$ and $V$ come from the same sequence ($L = S$); in cross-attention
# the queries come from another one. A batch of sequences is an extra leading dimension (chapter
# 04 adds heads as another). Why divide
# by $\sqrt{d_k}$ is the whole of chapter 02; for now, a tiny example you can check by hand:
# three tokens with 2-dimensional keys and one-hot values, so the output *is* the weights.

# %% [markdown] tags=["lang-zh"]
# ## 3. 公式
#
# 像第 1 节那样，把一个序列的查询、键和值分别按行堆成矩阵，每个词元一行。Vaswani 等（2017，式 1）给出：
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V$$
#
# | 张量 | 形状 | 含义 |
# |---|---|---|
# | $Q$ | $(L, d_k)$ | 每个输出位置一个查询 |
# | $K$ | $(S, d_k)$ | 每个输入位置一个键 |
# | $V$ | $(S, d_v)$ | 每个输入位置一个值 |
# | $QK^\top/\sqrt{d_k}$ | $(L, S)$ | **分数**：查询 $i$ 与键 $j$ 的匹配程度 |
# | 沿最后一维做 softmax | $(L, S)$ | **注意力权重**：每一行之和为 1 |
# | 输出 | $(L, d_v)$ | 每个查询得到的值的加权平均 |
#
# 自注意力中 $Q$、$K$、$V$ 来自同一个序列（$L = S$）；交叉注意力中查询来自另一个序列。一批序列只是多出一个前导维度（第 4 章的多头又是一个）。为什么要除以 $\sqrt{d_k}$，留到第 2 章专门讨论；这里先看一个可以手算的小例子：三个词元，键是二维的，值是独热向量，因此输出*恰好就是*注意力权重。

# %%
q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (L=3, d_k=2)
k = q.clone()                                              # (S=3, d_k=2): self-attention
v = torch.eye(3)                                           # (S=3, d_v=3): one-hot values
scores = q @ k.T / math.sqrt(2)
weights = torch.softmax(scores, dim=-1)
print("scores =\n", scores.numpy().round(3))
print("weights =\n", weights.numpy().round(3))
print(t("ch01.row_sums", v=weights.sum(-1).numpy().round(3)))
print("output == weights:", torch.allclose(weights @ v, weights))

# %% [markdown] tags=["lang-en"]
# Token 0 matches itself and token 2 best (score 0.707 each) and token 1 not at all (0.000),
# so its weights are 0.401, 0.198 and 0.401. Token 2, $[1, 1]$, matches everything, and itself
# most (score 1.414).

# %% [markdown] tags=["lang-zh"]
# 词元 0 与自己和词元 2 匹配得最好（分数都是 0.707），与词元 1 完全不匹配（0.000），因此它的权重是 0.401、0.198 和 0.401。词元 2 是 $[1, 1]$，与所有词元都匹配，其中与自己最匹配（分数 1.414）。

# %% [markdown] tags=["lang-en"]
# ## 4. From scratch, then checked against PyTorch
#
# The whole mechanism in five lines. A boolean `mask` is `True` where a query may attend,
# the convention of `torch.nn.functional.scaled_dot_product_attention` (SDPA):

# %% [markdown] tags=["lang-zh"]
# ## 4. 从零实现，再与 PyTorch 对照
#
# 整个机制只需五行。布尔 `mask` 中 `True` 表示查询可以关注该位置，这与 `torch.nn.functional.scaled_dot_product_attention`（SDPA）的约定一致：

# %%
def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))      # masked: weight exactly 0
    weights = torch.softmax(scores, dim=-1)                     # each row sums to 1
    return weights @ v                                          # (..., L, d_v)


torch.manual_seed(0)
q, k, v = torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)  # (B, N, d)
ours = attention(q, k, v)
print(t("ch01.matches_attnkit", ok=torch.allclose(ours, scaled_dot_product_attention(q, k, v), atol=1e-6)))
print(t("ch01.matches_torch", ok=torch.allclose(ours, F.scaled_dot_product_attention(q, k, v), atol=1e-6)))
cm = causal_mask(6)
print(t("ch01.causal_matches_torch",
        ok=torch.allclose(attention(q, k, v, cm), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# `attnkit.core.scaled_dot_product_attention` is this same computation, written plainly (no
# call to PyTorch's fused kernel inside), with the edge cases handled: it checks shapes, takes
# boolean or additive masks and `is_causal`, computes half precision in float32, gives zeros
# for a query whose keys are all masked, and can return the weights (`return_weights=True`).
# The test suite compares it with PyTorch's function over random shapes, masks and dtypes.

# %% [markdown] tags=["lang-zh"]
# `attnkit.core.scaled_dot_product_attention` 做的是同样的计算，写法同样直白，内部也不调用 PyTorch 的融合算子。区别在于它把边界情况都处理好了：检查形状；支持布尔掩码、加性掩码和 `is_causal`；半精度输入用 float32 计算；所有键都被屏蔽的查询输出零。它还可以返回注意力权重（`return_weights=True`）。项目的测试套件会在随机的形状、掩码和数据类型上把它与 PyTorch 的函数逐一比对。

# %% [markdown] tags=["lang-en"]
# ## 5. Masks
#
# A mask removes some (query, key) pairs before the softmax. Two are everywhere:
#
# - **causal**: in a language model, token $i$ must not see tokens after it, so query $i$ may
#   attend to key $j$ only when $j \le i$;
# - **padding**: a batch holds sequences of different lengths, padded to the same length; no
#   query may attend to a padding position.

# %% [markdown] tags=["lang-zh"]
# ## 5. 掩码
#
# 掩码在 softmax 之前去掉一部分查询–键配对。最常见的有两种：
#
# - **因果掩码**：在语言模型中，词元 $i$ 不能看到它之后的词元，所以只有当 $j \le i$ 时查询 $i$ 才能关注键 $j$；
# - **填充掩码**：一个批次中的序列长短不一，要填充到相同长度；任何查询都不应关注填充位置。

# %% alt="ch01.alt.masks"
from attnkit.widgets.attention import mask_legend, sentence_tokens

tokens = sentence_tokens()[:6]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
viz.mask_picture(causal_mask(6), tokens, tokens, ax=axes[0], title="causal_mask(6)")
pad = padding_mask([4], 6)                      # (B=1, 6): the last 2 positions are padding
viz.mask_picture(pad.expand(6, 6), tokens, tokens, ax=axes[1], title="padding_mask([4], 6)")
mask_legend(axes[1])                            # filled: attend; empty: masked
fig.tight_layout()
print(padding_mask([4, 6], 6))

# %% [markdown] tags=["lang-en"]
# **Boolean or additive.** A boolean mask says *whether* a pair counts; an additive (float) mask
# is added to the scores — $0$ keeps a pair, $-\infty$ removes it, and any other number biases
# it (chapter 06's ALiBi is such a bias). The two give the same result:

# %% [markdown] tags=["lang-zh"]
# **布尔掩码还是加性掩码。** 布尔掩码说明某个配对*是否*参与计算；加性（浮点）掩码则直接加到分数上——$0$ 表示保留，$-\infty$ 表示去掉，其他数值则是一种偏置（第 6 章的 ALiBi 就是这样的偏置）。两者结果相同：

# %%
additive = torch.zeros(6, 6).masked_fill(~cm, float("-inf"))
print(additive)
print(t("ch01.bool_eq_additive",
        ok=torch.allclose(scaled_dot_product_attention(q, k, v, attn_mask=cm),
                          scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **A second, opposite convention.** SDPA's boolean `attn_mask` is `True` where attention is
# *allowed*; `nn.MultiheadAttention`'s boolean masks are `True` where it is *forbidden*. Chapter 04
# shows what passing one to the other unchanged does: no error, just wrong numbers. attnkit follows
# SDPA.
#
# **A query with nothing to attend to.** If every key of a row is masked, the softmax of a row
# of $-\infty$ is $0/0$. Our five-line version returns NaN, which then spreads through the whole
# network. PyTorch's SDPA (in the version this course pins, 2.13) and attnkit define the output of
# such a row as zeros:

# %% [markdown] tags=["lang-zh"]
# **另一种相反的约定。** SDPA 的布尔 `attn_mask` 中 `True` 表示*允许*关注；`nn.MultiheadAttention` 的布尔掩码中
# `True` 却表示*禁止*关注。第 4 章会演示把一种掩码原样传给另一方会怎样：不报错，只是数值错了。attnkit 遵循 SDPA 的约定。
#
# **无处可看的查询。** 如果某一行的所有键都被屏蔽，对一行 $-\infty$ 做 softmax 就成了 $0/0$。我们的五行实现会返回 NaN，而 NaN 会在整个网络中扩散。PyTorch 的 SDPA（本课程固定使用的 2.13 版）和 attnkit
# 把这样一行的输出定义为零：

# %%
dead = cm.clone()
dead[2] = False                                             # query 2 may attend to nothing
print(t("ch01.row2_scratch", v=attention(q, k, v, dead)[0, 2, :4].tolist()))
print(t("ch01.row2_attnkit", v=scaled_dot_product_attention(q, k, v, attn_mask=dead)[0, 2, :4].tolist()))
print(t("ch01.row2_sdpa", v=F.scaled_dot_product_attention(q, k, v, attn_mask=dead)[0, 2, :4].tolist()))

# %% [markdown] tags=["lang-en"]
# **Fewer queries than keys.** When $L \ne S$, PyTorch's `is_causal=True` aligns the causal mask
# to the *top-left* corner. Chapter 05 shows why decoding with a KV cache needs it aligned to the
# bottom-right instead.

# %% [markdown] tags=["lang-zh"]
# **查询比键少的时候。** 当 $L \ne S$ 时，PyTorch 的 `is_causal=True` 把因果掩码对齐到*左上角*。第 5 章会说明，为什么使用 KV 缓存解码时要把它对齐到右下角。

# %% [markdown] tags=["lang-en"]
# ## 6. Explore: temperature and masks
#
# The explorer below runs attention over the tokens of a short sentence. Its embeddings and its
# three projections are random and **untrained** (seeded, so they stay the same; equal tokens get
# equal embeddings): which word attends to which means nothing about language here, it only shows
# the mechanism. A trained model's weights would look different.
#
# - Move the **temperature** $T$: the scores are divided by $\sqrt{d_k}\cdot T$,
#   so a low temperature sharpens each row towards its largest score and a high one flattens it
#   towards a uniform average.
# - Tick **no $\sqrt{d_k}$** to divide by $T$ alone, the first pitfall of section 8: the same as
#   dividing the temperature by $\sqrt{d_k}$, so every row sharpens.
# - Switch the **mask**: masked pairs turn grey (weight exactly 0) and each row's weight moves to the
#   keys that are left.
# - Pick a **query token** (the red row). On the right, each value vector $v_j$ is drawn scaled by
#   that row's weight $w_j$ (the bars beside it), and below, their sum: the query's output. A key
#   with weight near 0 contributes a faded row; at a low temperature one row carries the whole output.
#
# (On GitHub, where widgets do not run, the static figure below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# ## 6. 动手探索：温度与掩码
#
# 下面的交互控件对一个短句中的词元做注意力计算。它的嵌入和三个投影都是随机的，**没有经过训练**（固定了种子，所以每次都一样；相同的词元得到相同的嵌入）：哪个词关注哪个词，在这里与语言毫无关系，只是用来展示计算机制。训练过的模型，权重会是另一番样子。
#
# - 拖动**温度** $T$：分数会除以 $\sqrt{d_k}\cdot T$，温度越低，每一行的权重越集中到分数最大的键上；温度越高，权重越趋于均匀。
# - 勾选**不除以 $\sqrt{d_k}$**，分数就只除以 $T$，也就是第 8 节的第一个陷阱：这相当于把温度再除以 $\sqrt{d_k}$，每一行都变得更尖锐。
# - 切换**掩码**：被屏蔽的配对变成灰色（权重恰好为 0），每一行的权重转移到剩下的键上。
# - 选择一个**查询词元**（红线所在的行）。右侧画出每个值向量 $v_j$ 乘以这一行的权重 $w_j$（旁边的条形）之后的样子，下方是它们的和，也就是这个查询的输出。权重接近 0 的键只留下很淡的一行；温度很低时，一行就决定了整个输出。
#
# （在 GitHub 上交互控件无法运行，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"] alt="ch01.alt.explorer"
from attnkit.widgets.attention import attention_explorer

explorer = attention_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The numbers behind the picture come from a pure function, `explorer_attention`, which the
# tests check against PyTorch's attention. As the temperature falls, the largest weight of a row
# grows towards 1. But the sentence has a word twice, and equal tokens have equal keys.
#
# **Predict first (question 1).** A row's largest score is held by two equal keys. As $T \to 0$,
# what does that row's largest weight approach? Write a number, then run the cell below it.

# %% [markdown] tags=["lang-zh"]
# 图背后的数据来自一个纯函数 `explorer_attention`，测试会把它与 PyTorch 的注意力实现对照。温度越低，每一行的最大权重越接近 1。不过这个句子里有一个词出现了两次，而相同的词元有相同的键。
#
# **问题 1（先预测）**：某一行的最大分数由两个相同的键并列取得。当 $T \to 0$ 时，这一行的最大权重趋于多少？先写下一个数，再运行下面的单元格。

# %%
from attnkit.exercises.ch01 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %%
from attnkit.widgets.attention import explorer_attention

tokens = sentence_tokens()
for temp in (5.0, 1.0, 0.2, 0.05):
    w, _ = explorer_attention(tokens, temperature=temp)
    top = w.max(dim=-1).values  # (n,): the largest weight of each row
    print(t("ch01.peak_per_row", temp=temp, v=[round(x, 2) for x in top.tolist()]))

# %% [markdown] tags=["lang-en"]
# At $T = 0.05$ most rows are at or near 1, but a row whose best key is the repeated word stays at
# 0.5 or just below: the two tied keys split the weight evenly at every temperature, so such a row
# never becomes one-hot. The rows just below 1 (0.97, 0.98) are different: their two best keys are
# different words with close scores, and a still lower temperature takes them to 1.

# %% [markdown] tags=["lang-zh"]
# $T = 0.05$ 时，大多数行的最大权重等于或接近 1，但最佳键是那个重复词的行停在 0.5 或略低于 0.5：两个并列的键在任何温度下都平分权重，所以这样的一行永远不会变成独热分布。其他明显低于 1 的几行（0.68、0.76）则不同：它们的两个最佳键是不同的词，分数很接近，温度再低一些，它们也会趋于 1。

# %% [markdown] tags=["lang-en"]
# ## 7. What it costs
#
# For $L$ queries, $S$ keys, key width $d_k$ and value width $d_v$ (one sequence), counting a
# multiply-add as 2 FLOPs:
#
# - $QK^\top$: $2LSd_k$ FLOPs; weights $\times V$: $2LSd_v$ FLOPs — **quadratic in sequence length**;
# - the scores and the weights are $L \times S$ matrices: $4LS$ bytes each in float32, per
#   sequence of the batch (and, from chapter 04 on, per head) — **quadratic memory**.
#
# Measured here for one sequence, $d_k = d_v = 64$ (the bytes are those of the weight matrix that
# attnkit really allocated; the sizes are timed in turn on one thread, median of 3):

# %% [markdown] tags=["lang-zh"]
# ## 7. 开销
#
# 设有 $L$ 个查询、$S$ 个键，键的维度为 $d_k$，值的维度为 $d_v$（单个序列），一次乘加记作 2 次浮点运算：
#
# - $QK^\top$：$2LSd_k$ FLOPs；权重乘以 $V$：$2LSd_v$ FLOPs——**与序列长度成平方关系**；
# - 分数和注意力权重都是 $L \times S$ 的矩阵：float32 下各占 $4LS$ 字节，批次中每个序列各一份（从第 4 章起，每个头也各一份）——**内存也是平方级的**。
#
# 下面在本机上实测单个序列、$d_k = d_v = 64$ 的情况（字节数取自 attnkit 实际分配的权重矩阵；各个长度在单线程上轮流计时，取 3 次的中位数）：

# %% tags=["nbval-ignore-output"]
from attnkit.toy import measure_attention_cost

rows = measure_attention_cost(ns=(256, 512, 1024, 2048), d=64, repeats=3)
print(viz.format_table([t("ch01.col.n"), t("ch01.col.flops"), t("ch01.col.bytes"), t("ch01.col.ms")],
                       [[r["n"], f"{r['flops']:.2e}", f"{r['score_bytes'] / 2**20:.2f} MiB", f"{r['ms']:.1f}"]
                        for r in rows]))

# %% [markdown] tags=["lang-en"]
# Each doubling of $N$ multiplies FLOPs and memory by 4. For a 32k-token context, the weights of
# *one* attention of *one* layer would need:

# %% [markdown] tags=["lang-zh"]
# $N$ 每翻一倍，FLOPs 和内存都变为原来的 4 倍。对于 32k 个词元的上下文，仅*一层*中*一次*注意力的权重就需要：

# %%
n = 32 * 1024
print(f"{n} x {n} float32 = {n * n * 4 / 2**30:.0f} GiB")

# %% [markdown] tags=["lang-en"]
# That 4 GiB is why long-context models never store the full matrix: chapter 07 (FlashAttention)
# computes the same output, up to rounding, block by block, without ever holding it.

# %% [markdown] tags=["lang-zh"]
# 正因为需要 4 GiB，长上下文模型从不保存完整的矩阵：第 7 章（FlashAttention）分块计算，得到（除舍入误差外）相同的结果，却始终不必存下整个矩阵。

# %% [markdown] tags=["lang-en"]
# ## 8. Pitfalls
#
# **Forgetting $\sqrt{d_k}$.** With $d_k = 512$ and unit-variance entries, unscaled scores have a
# standard deviation of about $\sqrt{512} \approx 22.6$; the softmax saturates to one-hot and its
# gradients vanish (chapter 02 measures this):

# %% [markdown] tags=["lang-zh"]
# ## 8. 常见陷阱
#
# **忘记除以 $\sqrt{d_k}$。** 当 $d_k = 512$ 且 q、k 的各分量方差为 1 时，未缩放分数的标准差约为
# $\sqrt{512} \approx 22.6$，softmax 饱和，接近独热分布，梯度随之消失（第 2 章会实测这一点）：

# %%
torch.manual_seed(0)
qa, ka = torch.randn(64, 512), torch.randn(64, 512)
for label, s in (("scaled", 1 / math.sqrt(512)), ("unscaled", 1.0)):
    w = torch.softmax(qa @ ka.T * s, dim=-1)
    print(t("ch01.scale_stats", label=t("ch01." + label), std=(qa @ ka.T * s).std().item(),
            peak=w.max(-1).values.mean().item()))

# %% [markdown] tags=["lang-en"]
# **Softmax over the wrong dimension.** `softmax(scores, dim=-2)` raises no error, but then each
# *key's* column sums to 1 instead of each query's row:

# %% [markdown] tags=["lang-zh"]
# **softmax 的维度写错。** `softmax(scores, dim=-2)` 不会报错，但这样归一化的是每个*键*所在的列，而不是每个查询所在的行：

# %%
s = torch.randn(3, 3)
print(t("ch01.row_sums_dim", dim=-1, v=torch.softmax(s, dim=-1).sum(-1).numpy().round(3)))
print(t("ch01.row_sums_dim", dim=-2, v=torch.softmax(s, dim=-2).sum(-1).numpy().round(3)))

# %% [markdown] tags=["lang-en"]
# **$-10^9$ instead of $-\infty$.** Many code bases fill masked scores with a large negative
# number. For a fully masked row that gives a *uniform average* of all values, including the
# ones that were supposed to be hidden, instead of zeros; and $-10^9$ is not even representable
# in float16 (it becomes $-\infty$):

# %% [markdown] tags=["lang-zh"]
# **用 $-10^9$ 代替 $-\infty$。** 很多代码库在被屏蔽的分数处填入一个很大的负数。对于全被屏蔽的行，这会得到所有值（包括本该隐藏的那些）的*均匀平均*，而不是零；而且 $-10^9$ 在 float16 中根本无法表示（会变成 $-\infty$）：

# %%
big_negative = torch.zeros(6, 6).masked_fill(~dead, -1e9)
print(t("ch01.fill_row2", v=scaled_dot_product_attention(q, k, v, attn_mask=big_negative)[0, 2, :4]))
print(t("ch01.mean_values", v=v[0].mean(0)[:4]))
print(t("ch01.half", v=torch.tensor(-1e9).half().item()))

# %% [markdown] tags=["lang-en"]
# **Mismatched shapes and dtypes.** attnkit refuses them with a message that names the argument,
# what it got and what it expected, instead of broadcasting into a silently wrong result:

# %% [markdown] tags=["lang-zh"]
# **形状或数据类型不匹配。** attnkit 会拒绝这样的输入，报错信息中写明是哪个参数、得到了什么、期望的是什么，而不是靠广播悄悄算出错误的结果：

# %%
for bad in (dict(k=torch.randn(2, 6, 7)), dict(v=torch.randn(2, 5, 8)), dict(k=k.double())):
    args = dict(q=q, k=k, v=v) | bad
    try:
        scaled_dot_product_attention(**args)
    except (ValueError, TypeError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown] tags=["lang-en"]
# ## 9. Exercises
#
# Each exercise has a stub to fill in and a checker that runs your function on several cases and
# tells you the first one that fails, with the expected and the actual result and a hint. The same
# case failing again gives a stronger hint; `show_hint("ch01.ex1")` prints every hint of exercise 1,
# the formula last. Functions that would do the work for you (PyTorch's SDPA, attnkit's) are refused.
#
# **Exercise 1.** This chapter writes each token as a *row*. Many papers write it as a *column*
# (Phuong and Hutter's *Formal Algorithms for Transformers* does). Write scaled dot-product
# attention for that layout, without a mask: `q` of shape `(..., d_k, L)`, `k` of shape
# `(..., d_k, S)`, `v` of shape `(..., d_v, S)`; return `(..., d_v, L)`, whose column `i` is the
# output of query `i`. Before you write it, work out which axis holds the tokens in each tensor,
# and over which axis of the scores the softmax runs.

# %% [markdown] tags=["lang-zh"]
# ## 9. 练习
#
# 每个练习都有一个待补全的函数框架和一个检查器。检查器会在若干用例上运行你的函数，并指出第一个未通过的用例，给出期望结果、你的结果和一条提示。同一个用例再次未通过时，提示会更具体；`show_hint("ch01.ex1")` 会打印练习 1 的全部提示，最后一条是公式。直接替你完成计算的函数（PyTorch 的 SDPA、attnkit 的实现）会被拒绝。
#
# **练习 1**：本章把每个词元写成一*行*，很多论文则把它写成一*列*（例如 Phuong 和 Hutter 的 *Formal Algorithms for Transformers*）。请按这种写法实现不带掩码的缩放点积注意力：`q` 的形状为 `(..., d_k, L)`，`k` 为 `(..., d_k, S)`，`v` 为 `(..., d_v, S)`；返回 `(..., d_v, L)`，其中第 `i` 列是查询 `i` 的输出。动手之前，先想清楚每个张量里哪一维是词元，softmax 应当沿分数的哪一维计算。

# %%
from attnkit.exercises import show_hint  # noqa: F401  (show_hint("ch01.ex1") after two tries)
from attnkit.exercises.ch01 import check_attention, check_causal_mask, check_masked_attention, check_self_attention


def my_attention(q, k, v):
    # your code here
    raise NotImplementedError


_ = check_attention(my_attention)

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** Return the causal mask for `n` positions: a boolean `(n, n)` tensor, `True`
# where query `i` may attend to key `j`.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：返回 `n` 个位置的因果掩码：形状为 `(n, n)` 的布尔张量，查询 `i` 可以关注键 `j` 的位置为 `True`。

# %%
def my_causal_mask(n):
    # your code here
    raise NotImplementedError


_ = check_causal_mask(my_causal_mask)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Attention with a boolean mask (`True` = attend) of shape `(L, S)`. A query
# whose keys are all masked must get an output of zeros, not NaN.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：实现带布尔掩码（`True` 表示可以关注）的注意力，掩码形状为 `(L, S)`。所有键都被屏蔽的查询，输出必须是零，而不是 NaN。

# %%
def my_masked_attention(q, k, v, mask):
    # your code here
    raise NotImplementedError


_ = check_masked_attention(my_masked_attention)

# %% [markdown] tags=["lang-en"]
# **Stretch exercise: a self-attention module that learns section 2's task.** Write
# `MySelfAttention(d)`, a `torch.nn.Module` whose `forward(x)` maps `(B, n, d)` to `(B, n, d)` with
# attention over the `n` positions. The checker builds it under a fixed seed, trains it with Adam
# (learning rate 0.03) for 150 steps on batches of section 2's lookup task, and passes it when its
# mean squared error on a held-out batch is below 0.35, on two tasks of different sizes. It takes a
# few seconds, and then once more on a task drawn at random, so that only a module that learns
# passes. `F.scaled_dot_product_attention`, `nn.MultiheadAttention` and attnkit's versions are
# refused: write the attention yourself (section 2 tells you which matrices must not be shared).

# %% [markdown] tags=["lang-zh"]
# **挑战题：学会第 2 节任务的自注意力模块。** 写一个 `torch.nn.Module` 的子类 `MySelfAttention(d)`，它的 `forward(x)` 在 `n` 个位置上做注意力，把 `(B, n, d)` 映射为 `(B, n, d)`。检查器会在固定的种子下构造它，用 Adam（学习率 0.03）在第 2 节的按内容查找任务上训练 150 步；在两个规模不同的任务上，留出批次的均方误差都低于 0.35 才算通过。检查要花几秒钟，之后还会在一个随机抽取的任务上再检查一次，所以只有真正学会的模块才能通过。`F.scaled_dot_product_attention`、`nn.MultiheadAttention` 以及 attnkit 的对应实现都会被拒绝：注意力要自己写（哪些矩阵不能共用，第 2 节已经告诉你了）。

# %%
class MySelfAttention(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        # your code here
        raise NotImplementedError

    def forward(self, x):  # x: (B, n, d) -> (B, n, d)
        raise NotImplementedError


_ = check_self_attention(MySelfAttention)

# %% [markdown] tags=["lang-en"]
# ## 10. Summary
#
# - Attention computes each output as a weighted average of **values**; the weights come from
#   comparing a **query** with every **key**, so *where to look* follows the content — a fixed
#   mixing matrix cannot do that. On section 2's task queries must be computed apart from keys;
#   keys tied to values lose nothing there.
# - $q$, $k$, $v$ are three linear maps of the same $x$; one query is scores, a softmax and a
#   weighted sum of value vectors (section 1).
# - $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$: scores $(L, S)$, weights whose rows sum to 1, output $(L, d_v)$.
# - Masks remove pairs before the softmax; SDPA's boolean masks mean *allowed*. A fully masked row
#   gives zeros. Chapter 04 shows `nn.MultiheadAttention`'s opposite convention, chapter 05 the
#   causal mask when there are fewer queries than keys.
# - Cost: $O(LSd)$ FLOPs and $O(LS)$ memory per sequence — quadratic in sequence length.
#
# **Next:** chapter 02 — why divide by $\sqrt{d_k}$, as an experiment you can move.
#
# ## References
# - A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 — §3.2.1, eq. (1) (scaled dot-product attention).
# - D. Bahdanau, K. Cho, Y. Bengio, *Neural Machine Translation by Jointly Learning to Align and Translate*, ICLR 2015 — §3.1 (attention as a soft alignment).
# - M.-T. Luong, H. Pham, C. D. Manning, *Effective Approaches to Attention-based Neural Machine Translation*, EMNLP 2015 — §3.1 (dot-product scores).
# - PyTorch documentation, `torch.nn.functional.scaled_dot_product_attention` and `torch.nn.MultiheadAttention` (mask conventions).
# - M. Phuong, M. Hutter, *Formal Algorithms for Transformers*, arXiv:2207.09238, 2022 — Algorithm 4 (attention with one token per column, as in exercise 1).

# %% [markdown] tags=["lang-zh"]
# ## 10. 小结
#
# - 注意力的每个输出都是**值**的加权平均；权重来自**查询**与每个**键**的比较，因此*往哪里看*由内容决定——固定的混合矩阵做不到这一点。在第 2 节的任务上，查询必须和键分开计算；键和值共用矩阵则没有损失。
# - $q$、$k$、$v$ 是同一个 $x$ 的三个线性映射；一个查询的计算就是分数、softmax，再对值向量加权求和（第 1 节）。
# - $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$：分数形状为 $(L, S)$，权重每行之和为 1，输出形状为 $(L, d_v)$。
# - 掩码在 softmax 之前去掉部分配对；SDPA 的布尔掩码表示*允许*。全被屏蔽的行输出零。第 4 章会讲 `nn.MultiheadAttention` 相反的约定，第 5 章会讲查询比键少时的因果掩码。
# - 开销：每个序列 $O(LSd)$ 次浮点运算、$O(LS)$ 的内存——都与序列长度成平方关系。
#
# **下一章**：第 2 章——为什么要除以 $\sqrt{d_k}$，用一个可以拖动滑块的实验来回答。
#
# ## 参考文献
# - A. Vaswani 等，*Attention Is All You Need*，NeurIPS 2017——§3.2.1，式 (1)（缩放点积注意力）。
# - D. Bahdanau、K. Cho、Y. Bengio，*Neural Machine Translation by Jointly Learning to Align and Translate*，ICLR 2015——§3.1（把注意力看作软对齐）。
# - M.-T. Luong、H. Pham、C. D. Manning，*Effective Approaches to Attention-based Neural Machine Translation*，EMNLP 2015——§3.1（点积分数）。
# - PyTorch 文档：`torch.nn.functional.scaled_dot_product_attention` 与 `torch.nn.MultiheadAttention`（掩码约定）。
# - M. Phuong、M. Hutter，*Formal Algorithms for Transformers*，arXiv:2207.09238，2022——算法 4（每个词元占一列的注意力，即练习 1 的写法）。
