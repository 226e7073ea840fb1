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
# - the formula $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$, its shapes, and a version you write in five lines;
# - masks: causal, padding, boolean vs additive, and the two *opposite* boolean conventions in PyTorch;
# - what attention costs in FLOPs and memory, measured on this machine;
# - the pitfalls that give silently wrong results.
#
# **You need** Python, PyTorch tensors and matrix multiplication. No earlier chapter.
#
# Run the cells from top to bottom (*Run → Run All Cells*). Sliders appear in section 5.

# %% [markdown] tags=["lang-zh"]
# # 01 · 缩放点积注意力
#
# **本章内容**
# - 注意力为什么要用*查询*（query）、*键*（key）和*值*（value）——用实验来说明，而不是直接下结论；
# - 公式 $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$ 及其中各个张量的形状，以及一个你自己用五行代码就能写出的实现；
# - 掩码：因果掩码、填充掩码、布尔掩码与加性掩码，以及 PyTorch 中两种*相反*的布尔约定；
# - 注意力在浮点运算次数（FLOPs）和内存上的开销，并在本机上实测；
# - 那些不报错却悄悄算错的常见陷阱。
#
# **预备知识**：Python、PyTorch 张量和矩阵乘法，不需要读过前面的章节。
#
# 请从上到下依次运行各个单元格（*Run → Run All Cells*，中文界面为“运行 → 运行所有单元格”）。第 5 节有可以拖动的滑块。

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
# ## 1. Why queries, keys and values?
#
# Think of a dictionary lookup made soft. Every position in a sequence asks a question — its
# **query** $q_i$. Every position also advertises what it can be found by — its **key** $k_j$ —
# and what it hands over when found — its **value** $v_j$. Position $i$'s answer is an average
# of all values, weighted by how well its query matches each key:
#
# $$\text{out}_i = \sum_j w_{ij}\, v_j, \qquad w_{ij} = \mathrm{softmax}_j(q_i \cdot k_j).$$
#
# Why not something simpler, such as a learned matrix $A$ that says once and for all how much
# position $i$ reads from position $j$? Because *which* position holds the useful information
# depends on the content of the sequence. Here is a task that makes this concrete. A sequence
# holds 8 random vectors $x_1,\dots,x_8$; the answer at position $i$ is the vector $x_j$ that
# best matches a fixed transform of $x_i$ (namely $j^* = \arg\max_j (R x_i)\cdot x_j$ for a
# fixed random orthogonal matrix $R$). We train two models on the same batches:
#
# - a **fixed** mixing matrix: $\text{out} = \mathrm{softmax}(A)\,x$, one learned weight per pair of positions;
# - **attention**: $\text{out} = \mathrm{softmax}\big(xW_Q (xW_K)^\top\big)\, xW_V$, weights computed from the content.

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么需要查询、键和值？
#
# 可以把注意力看成一次“软化”的字典查找。序列中的每个位置都提出一个问题——它的**查询** $q_i$；
# 每个位置也都亮出一张“名片”，说明别人可以凭什么找到它——它的**键** $k_j$；
# 被找到之后交出来的内容，则是它的**值** $v_j$。位置 $i$ 的输出是所有值的加权平均，
# 权重取决于它的查询和每个键匹配得有多好：
#
# $$\text{out}_i = \sum_j w_{ij}\, v_j, \qquad w_{ij} = \mathrm{softmax}_j(q_i \cdot k_j).$$
#
# 为什么不用更简单的办法，比如学一个固定的矩阵 $A$，一劳永逸地规定位置 $i$ 从位置 $j$ 读取多少？
# 因为有用的信息*在哪个位置*，取决于序列本身的内容。下面用一个具体的任务来说明：
# 序列里有 8 个随机向量 $x_1,\dots,x_8$，位置 $i$ 的正确答案是与 $x_i$ 的某个固定变换最匹配的那个 $x_j$
# （即 $j^* = \arg\max_j (R x_i)\cdot x_j$，$R$ 是一个固定的随机正交矩阵）。我们在同样的数据批次上训练两个模型：
#
# - **固定矩阵**：$\text{out} = \mathrm{softmax}(A)\,x$，每一对位置学一个权重；
# - **注意力**：$\text{out} = \mathrm{softmax}\big(xW_Q (xW_K)^\top\big)\, xW_V$，权重由内容计算出来。

# %%
from attnkit.toy import plot_fixed_vs_qkv, train_fixed_vs_qkv

result = train_fixed_vs_qkv(n=8, d=16, steps=150, seed=0)
for name in ("zero", "fixed", "qkv"):
    print(t("ch01.test_mse", name=t("toy." + name), v=result[name]))
_ = plot_fixed_vs_qkv(result)

# %% [markdown] tags=["lang-en"]
# The fixed matrix can do little better than predicting zero (test error 0.960 against 1.088):
# the best it can learn is a position-based average, and no position is the right one on
# average. Attention, whose weights come from comparing contents, brings the error down to
# 0.169 after the same 150 steps. Queries and keys decide *where to look*; values decide
# *what to take*. Keeping the three apart lets a token be found by one property (its key) and
# contribute another (its value).

# %% [markdown] tags=["lang-zh"]
# 固定矩阵只比“始终预测 0”略好一点（测试误差 0.960，后者为 1.088）：它最多只能学到按位置的平均，
# 而正确答案落在哪个位置是随机的，平均而言没有哪个位置更可能是答案。注意力的权重来自内容之间的比较，
# 同样训练 150 步后误差降到 0.169。查询和键决定*往哪里看*，值决定*取走什么*。
# 把三者分开，一个词元（token）就可以凭一种属性（键）被找到，而贡献的是另一种信息（值）。

# %% [markdown] tags=["lang-en"]
# ## 2. The formula
#
# Stack the queries, keys and values of a sequence as matrices. Vaswani et al. (2017, eq. 1):
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
# the queries come from another one. Batches and heads are extra leading dimensions. Why divide
# by $\sqrt{d_k}$ is the whole of chapter 02; for now, a tiny example you can check by hand:
# three tokens with 2-dimensional keys and one-hot values, so the output *is* the weights.

# %% [markdown] tags=["lang-zh"]
# ## 2. 公式
#
# 把一个序列的查询、键和值分别按行堆成矩阵。Vaswani 等人（2017，式 1）给出：
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
# 自注意力中 $Q$、$K$、$V$ 来自同一个序列（$L = S$）；交叉注意力中查询来自另一个序列。
# 批次和头只是额外的前导维度。为什么要除以 $\sqrt{d_k}$，留到第 2 章专门讨论；这里先看一个可以手算的小例子：
# 三个词元，键是二维的，值是独热向量，因此输出*恰好就是*注意力权重。

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
# 词元 0 与自己和词元 2 匹配得最好（分数都是 0.707），与词元 1 完全不匹配（0.000），
# 因此它的权重是 0.401、0.198 和 0.401。词元 2 是 $[1, 1]$，与所有词元都匹配，其中与自己最匹配（分数 1.414）。

# %% [markdown] tags=["lang-en"]
# ## 3. From scratch, then checked against PyTorch
#
# The whole mechanism in five lines. A boolean `mask` is `True` where a query may attend,
# the convention of `torch.nn.functional.scaled_dot_product_attention` (SDPA):

# %% [markdown] tags=["lang-zh"]
# ## 3. 从零实现，再与 PyTorch 对照
#
# 整个机制只需五行。布尔 `mask` 中 `True` 表示查询可以关注该位置，
# 这与 `torch.nn.functional.scaled_dot_product_attention`（SDPA）的约定一致：

# %%
def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))      # masked: weight exactly 0
    weights = torch.softmax(scores, dim=-1)                     # each row sums to 1
    return weights @ v                                          # (..., L, d_v)


torch.manual_seed(0)
q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)  # (B, H, N, d)
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
# `attnkit.core.scaled_dot_product_attention` 做的是同样的计算，写法同样直白，内部也不调用 PyTorch 的融合算子。
# 区别在于它把边界情况都处理好了：检查形状；支持布尔掩码、加性掩码和 `is_causal`；半精度输入用 float32 计算；
# 所有键都被屏蔽的查询输出零。它还可以返回注意力权重（`return_weights=True`）。
# 项目的测试套件会在随机的形状、掩码和数据类型上把它与 PyTorch 的函数逐一比对。

# %% [markdown] tags=["lang-en"]
# ## 4. Masks
#
# A mask removes some (query, key) pairs before the softmax. Two are everywhere:
#
# - **causal**: in a language model, token $i$ must not see tokens after it, so query $i$ may
#   attend to key $j$ only when $j \le i$;
# - **padding**: a batch holds sequences of different lengths, padded to the same length; no
#   query may attend to a padding position.

# %% [markdown] tags=["lang-zh"]
# ## 4. 掩码
#
# 掩码在 softmax 之前去掉一部分查询–键配对。最常见的有两种：
#
# - **因果掩码**：在语言模型中，词元 $i$ 不能看到它之后的词元，所以只有当 $j \le i$ 时查询 $i$ 才能关注键 $j$；
# - **填充掩码**：一个批次中的序列长短不一，要填充到相同长度；任何查询都不应关注填充位置。

# %%
from attnkit.widgets.attention import sentence_tokens

tokens = sentence_tokens()[:6]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
viz.mask_picture(causal_mask(6), tokens, tokens, ax=axes[0], title="causal_mask(6)")
pad = padding_mask([4], 6)                      # (B=1, 6): the last 2 positions are padding
viz.mask_picture(pad.expand(6, 6), tokens, tokens, ax=axes[1], title="padding_mask([4], 6)")
fig.tight_layout()
print(padding_mask([4, 6], 6))

# %% [markdown] tags=["lang-en"]
# **Boolean or additive.** A boolean mask says *whether* a pair counts; an additive (float) mask
# is added to the scores — $0$ keeps a pair, $-\infty$ removes it, and any other number biases
# it (chapter 06's ALiBi is such a bias). The two give the same result:

# %% [markdown] tags=["lang-zh"]
# **布尔掩码还是加性掩码。** 布尔掩码说明某个配对*是否*参与计算；加性（浮点）掩码则直接加到分数上——
# $0$ 表示保留，$-\infty$ 表示去掉，其他数值则是一种偏置（第 6 章的 ALiBi 就是这样的偏置）。两者结果相同：

# %%
additive = torch.zeros(6, 6).masked_fill(~cm, float("-inf"))
print(additive)
print(t("ch01.bool_eq_additive",
        ok=torch.allclose(scaled_dot_product_attention(q, k, v, attn_mask=cm),
                          scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **Two opposite boolean conventions.** This is the most common mask bug in PyTorch code.
# SDPA's boolean `attn_mask` is `True` where attention is *allowed*. `nn.MultiheadAttention`'s
# boolean `attn_mask` and `key_padding_mask` are `True` where attention is *forbidden*. Let us
# run both on the same weights. We rebuild `nn.MultiheadAttention`'s computation from its own
# projection weights with SDPA, then pass each the causal mask:

# %% [markdown] tags=["lang-zh"]
# **两种相反的布尔约定。** 这是 PyTorch 代码里最常见的掩码错误。SDPA 的布尔 `attn_mask` 中 `True` 表示*允许*关注；
# 而 `nn.MultiheadAttention` 的布尔 `attn_mask` 和 `key_padding_mask` 中 `True` 表示*禁止*关注。
# 我们用同一组权重把两者都跑一遍：先用 `nn.MultiheadAttention` 自身的投影权重配合 SDPA 重新实现它的计算，
# 再给两者分别传入因果掩码：

# %%
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(embed_dim=8, num_heads=1, batch_first=True)
x = torch.randn(1, 6, 8)                                   # (B, N, D)
wq, wk, wv = mha.in_proj_weight.chunk(3)                    # (D, D) each
bq, bk, bv = mha.in_proj_bias.chunk(3)
rebuilt = mha.out_proj(F.scaled_dot_product_attention(x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv,
                                                        attn_mask=cm))  # SDPA: True = attend
with torch.no_grad():
    right, _ = mha(x, x, x, attn_mask=~cm)                  # nn.MultiheadAttention: True = forbid
    wrong, _ = mha(x, x, x, attn_mask=cm)                   # the same mask passed unchanged
print("nn.MultiheadAttention(attn_mask=~cm) == SDPA(attn_mask=cm):", torch.allclose(right, rebuilt, atol=1e-6))
print("nn.MultiheadAttention(attn_mask= cm) == SDPA(attn_mask=cm):", torch.allclose(wrong, rebuilt, atol=1e-6))

# %% [markdown] tags=["lang-en"]
# Passing the same boolean mask to both silently computes two different things — no error, just
# wrong numbers (here, a model that sees only the future and not itself). Rule: **negate a
# boolean mask when you move it between SDPA and `nn.MultiheadAttention`** (attnkit follows SDPA).
#
# **A query with nothing to attend to.** If every key of a row is masked, the softmax of a row
# of $-\infty$ is $0/0$. Our five-line version returns NaN, which then spreads through the whole
# network. PyTorch's SDPA (in the version this course pins, 2.13) and attnkit define the output of
# such a row as zeros:

# %% [markdown] tags=["lang-zh"]
# 把同一个布尔掩码原样传给两者，会悄无声息地算出两种不同的结果——不报错，只是数值错了
# （在这里，模型只能看到未来，连自己都看不到）。规则是：**在 SDPA 和 `nn.MultiheadAttention` 之间传递布尔掩码时要取反**
# （attnkit 遵循 SDPA 的约定）。
#
# **无处可看的查询。** 如果某一行的所有键都被屏蔽，对一行 $-\infty$ 做 softmax 就成了 $0/0$。
# 我们的五行实现会返回 NaN，而 NaN 会在整个网络中扩散。PyTorch 的 SDPA（本课程固定使用的 2.13 版）和 attnkit
# 把这样一行的输出定义为零：

# %%
dead = cm.clone()
dead[2] = False                                             # query 2 may attend to nothing
print(t("ch01.row2_scratch", v=attention(q, k, v, dead)[0, 0, 2, :4].tolist()))
print(t("ch01.row2_attnkit", v=scaled_dot_product_attention(q, k, v, attn_mask=dead)[0, 0, 2, :4].tolist()))
print(t("ch01.row2_sdpa", v=F.scaled_dot_product_attention(q, k, v, attn_mask=dead)[0, 0, 2, :4].tolist()))

# %% [markdown] tags=["lang-en"]
# **Causal with fewer queries than keys.** When $L \ne S$, PyTorch's `is_causal=True` aligns the
# mask to the *top-left* corner: query $i$ sees keys $0..i$. When decoding with a cache (chapter
# 05), the $L$ new queries are the *last* $L$ positions, so the mask must be aligned to the
# bottom-right instead: `causal_mask(L, S, offset=S - L)`.

# %% [markdown] tags=["lang-zh"]
# **查询比键少时的因果掩码。** 当 $L \ne S$ 时，PyTorch 的 `is_causal=True` 把掩码对齐到*左上角*：
# 查询 $i$ 能看到键 $0..i$。而使用 KV 缓存逐步解码时（第 5 章），$L$ 个新查询是序列中*最后*的 $L$ 个位置，
# 掩码应当对齐到右下角：`causal_mask(L, S, offset=S - L)`。

# %%
print(t("ch01.top_left", m=causal_mask(2, 5).int()))
print(t("ch01.bottom_right", m=causal_mask(2, 5, offset=3).int()))
q2 = torch.randn(1, 1, 2, 8)
print(t("ch01.is_causal_top_left",
        ok=torch.allclose(F.scaled_dot_product_attention(q2, k[:1, :1, :5], v[:1, :1, :5], is_causal=True),
                          scaled_dot_product_attention(q2, k[:1, :1, :5], v[:1, :1, :5], attn_mask=causal_mask(2, 5)),
                          atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# ## 5. Explore: temperature and masks
#
# The explorer below runs attention over the tokens of a short sentence (random but fixed
# embeddings and projections; equal tokens get equal embeddings). Move the **temperature**: the
# scores are divided by $\sqrt{d_k}\cdot T$, so a low temperature sharpens each row towards its
# largest score and a high one flattens it towards a uniform average. Switch the **mask** and
# watch whole regions of the heatmap go to zero; pick a **query token** to see its output vector,
# the weighted average of the values. (On GitHub, where widgets do not run, the static figure
# below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# ## 5. 动手探索：温度与掩码
#
# 下面的交互控件对一个短句中的词元做注意力计算（嵌入和投影是随机的，但固定不变；相同的词元得到相同的嵌入）。
# 拖动**温度**滑块：分数会除以 $\sqrt{d_k}\cdot T$，温度越低，每一行的权重越集中到分数最大的键上；温度越高，权重越趋于均匀。
# 切换**掩码**，可以看到热力图中整片区域变成零；选择一个**查询词元**，可以看到它的输出向量，
# 也就是各个值的加权平均。（在 GitHub 上交互控件无法运行，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"]
from attnkit.widgets.attention import attention_explorer

explorer = attention_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The numbers behind the picture come from a pure function, `explorer_attention`, which the
# tests check against attnkit's attention. As the temperature falls, the largest weight of a row
# grows towards 1. When two keys are equal — the same word twice — they tie, and the row splits
# its weight evenly between them instead of becoming one-hot:

# %% [markdown] tags=["lang-zh"]
# 图背后的数据来自一个纯函数 `explorer_attention`，测试会把它与 attnkit 的注意力实现对照。
# 温度越低，每一行的最大权重越接近 1。如果有两个键完全相同（同一个词出现两次），它们的分数相等，
# 这一行的权重会在二者之间平分，而不会变成独热分布：

# %%
from attnkit.widgets.attention import explorer_attention

tokens = sentence_tokens()
for temp in (5.0, 1.0, 0.2, 0.05):
    w, _ = explorer_attention(tokens, temperature=temp)
    top = w.max(dim=-1).values  # (n,): the largest weight of each row
    print(t("ch01.peak_per_row", temp=temp, v=[round(x, 2) for x in top.tolist()]))

# %% [markdown] tags=["lang-en"]
# ## 6. What it costs
#
# For $L$ queries, $S$ keys, key width $d_k$ and value width $d_v$ (one head), counting a
# multiply-add as 2 FLOPs:
#
# - $QK^\top$: $2LSd_k$ FLOPs; weights $\times V$: $2LSd_v$ FLOPs — **quadratic in sequence length**;
# - the scores and the weights are $L \times S$ matrices: $4LS$ bytes each in float32, per head
#   and per batch element — **quadratic memory**.
#
# Measured here for one head, $d_k = d_v = 64$ (the bytes are those of the weight matrix that
# attnkit really allocated; the sizes are timed in turn on one thread, median of 3):

# %% [markdown] tags=["lang-zh"]
# ## 6. 开销
#
# 设有 $L$ 个查询、$S$ 个键，键的维度为 $d_k$，值的维度为 $d_v$（单个头），一次乘加记作 2 次浮点运算：
#
# - $QK^\top$：$2LSd_k$ FLOPs；权重乘以 $V$：$2LSd_v$ FLOPs——**与序列长度成平方关系**；
# - 分数和注意力权重都是 $L \times S$ 的矩阵：float32 下各占 $4LS$ 字节，每个头、每个样本各一份——**内存也是平方级的**。
#
# 下面在本机上实测单个头、$d_k = d_v = 64$ 的情况（字节数取自 attnkit 实际分配的权重矩阵；各个长度在单线程上轮流计时，取 3 次的中位数）：

# %% tags=["nbval-ignore-output"]
from attnkit.toy import measure_attention_cost

rows = measure_attention_cost(ns=(256, 512, 1024, 2048), d=64, repeats=3)
print(viz.format_table([t("ch01.col.n"), t("ch01.col.flops"), t("ch01.col.bytes"), t("ch01.col.ms")],
                       [[r["n"], f"{r['flops']:.2e}", f"{r['score_bytes'] / 2**20:.2f} MiB", f"{r['ms']:.1f}"]
                        for r in rows]))

# %% [markdown] tags=["lang-en"]
# Each doubling of $N$ multiplies FLOPs and memory by 4. For a 32k-token context, the weights of
# *one* head of *one* layer would need:

# %% [markdown] tags=["lang-zh"]
# $N$ 每翻一倍，FLOPs 和内存都变为原来的 4 倍。对于 32k 个词元的上下文，仅*一层*中*一个*头的注意力权重就需要：

# %%
n = 32 * 1024
print(f"{n} x {n} float32 = {n * n * 4 / 2**30:.0f} GiB")

# %% [markdown] tags=["lang-en"]
# That 4 GiB is why long-context models never store the full matrix: chapter 07 (FlashAttention)
# computes the same output, up to rounding, block by block, without ever holding it.

# %% [markdown] tags=["lang-zh"]
# 正因为需要 4 GiB，长上下文模型从不保存完整的矩阵：第 7 章（FlashAttention）分块计算，
# 得到（除舍入误差外）相同的结果，却始终不必存下整个矩阵。

# %% [markdown] tags=["lang-en"]
# ## 7. Pitfalls
#
# **Forgetting $\sqrt{d_k}$.** With $d_k = 512$ and unit-variance entries, unscaled scores have a
# standard deviation of about $\sqrt{512} \approx 22.6$; the softmax saturates to one-hot and its
# gradients vanish (chapter 02 measures this):

# %% [markdown] tags=["lang-zh"]
# ## 7. 常见陷阱
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
# **用 $-10^9$ 代替 $-\infty$。** 很多代码库用一个很大的负数填充被屏蔽的分数。对于全被屏蔽的行，这会得到所有值（包括本该隐藏的那些）
# 的*均匀平均*，而不是零；而且 $-10^9$ 在 float16 中根本无法表示（会变成 $-\infty$）：

# %%
big_negative = torch.zeros(6, 6).masked_fill(~dead, -1e9)
print(t("ch01.fill_row2", v=scaled_dot_product_attention(q, k, v, attn_mask=big_negative)[0, 0, 2, :4]))
print(t("ch01.mean_values", v=v[0, 0].mean(0)[:4]))
print(t("ch01.half", v=torch.tensor(-1e9).half().item()))

# %% [markdown] tags=["lang-en"]
# **Mismatched shapes and dtypes.** attnkit refuses them with a message that names the argument,
# what it got and what it expected, instead of broadcasting into a silently wrong result:

# %% [markdown] tags=["lang-zh"]
# **形状或数据类型不匹配。** attnkit 会拒绝这样的输入，报错信息中写明是哪个参数、得到了什么、期望的是什么，
# 而不是靠广播悄悄算出错误的结果：

# %%
for bad in (dict(k=torch.randn(2, 4, 6, 7)), dict(v=torch.randn(2, 4, 5, 8)), dict(k=k.double())):
    args = dict(q=q, k=k, v=v) | bad
    try:
        scaled_dot_product_attention(**args)
    except (ValueError, TypeError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown] tags=["lang-en"]
# ## 8. Exercises
#
# Each exercise has a stub to fill in and a checker that runs your function on several cases and
# tells you the first one that fails, with the expected and the actual result and a hint.
#
# **Exercise 1.** Write scaled dot-product attention for inputs of shape `(..., L, d)`,
# `(..., S, d)`, `(..., S, d_v)`, without a mask.

# %% [markdown] tags=["lang-zh"]
# ## 8. 练习
#
# 每个练习都有一个待补全的函数框架和一个检查器。检查器会在若干用例上运行你的函数，
# 并指出第一个未通过的用例，给出期望结果、你的结果和一条提示。
#
# **练习 1**：实现缩放点积注意力，输入形状为 `(..., L, d)`、`(..., S, d)`、`(..., S, d_v)`，不带掩码。

# %%
from attnkit.exercises.ch01 import check_attention, check_causal_mask, check_masked_attention


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
# **练习 3**：实现带布尔掩码（`True` 表示可以关注）的注意力，掩码形状为 `(L, S)`。
# 所有键都被屏蔽的查询，输出必须是零，而不是 NaN。

# %%
def my_masked_attention(q, k, v, mask):
    # your code here
    raise NotImplementedError


_ = check_masked_attention(my_masked_attention)

# %% [markdown] tags=["lang-en"]
# ## 9. Summary
#
# - Attention computes each output as a weighted average of **values**; the weights come from
#   comparing a **query** with every **key**, so *where to look* follows the content — a fixed
#   mixing matrix cannot do that (section 1).
# - $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$: scores $(L, S)$, weights whose rows sum to 1, output $(L, d_v)$.
# - Masks remove pairs before the softmax. SDPA's boolean masks mean *allowed*,
#   `nn.MultiheadAttention`'s mean *forbidden*. A fully masked row gives zeros.
# - Cost: $O(LSd)$ FLOPs and $O(LS)$ memory per head — quadratic in sequence length.
#
# **Next:** chapter 02 — why divide by $\sqrt{d_k}$, as an experiment you can move.
#
# ## References
# - A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 — §3.2.1, eq. (1) (scaled dot-product attention).
# - D. Bahdanau, K. Cho, Y. Bengio, *Neural Machine Translation by Jointly Learning to Align and Translate*, ICLR 2015 — §3.1 (attention as a soft alignment).
# - M.-T. Luong, H. Pham, C. D. Manning, *Effective Approaches to Attention-based Neural Machine Translation*, EMNLP 2015 — §3.1 (dot-product scores).
# - PyTorch documentation, `torch.nn.functional.scaled_dot_product_attention` and `torch.nn.MultiheadAttention` (mask conventions).

# %% [markdown] tags=["lang-zh"]
# ## 9. 小结
#
# - 注意力的每个输出都是**值**的加权平均；权重来自**查询**与每个**键**的比较，因此*往哪里看*由内容决定——
#   固定的混合矩阵做不到这一点（第 1 节）。
# - $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$：分数形状为 $(L, S)$，权重每行之和为 1，输出形状为 $(L, d_v)$。
# - 掩码在 softmax 之前去掉部分配对。SDPA 的布尔掩码表示*允许*，`nn.MultiheadAttention` 的表示*禁止*。
#   全被屏蔽的行输出零。
# - 开销：每个头 $O(LSd)$ 次浮点运算、$O(LS)$ 的内存——都与序列长度成平方关系。
#
# **下一章**：第 2 章——为什么要除以 $\sqrt{d_k}$，用一个可以拖动滑块的实验来回答。
#
# ## 参考文献
# - A. Vaswani 等，*Attention Is All You Need*，NeurIPS 2017——§3.2.1，式 (1)（缩放点积注意力）。
# - D. Bahdanau、K. Cho、Y. Bengio，*Neural Machine Translation by Jointly Learning to Align and Translate*，ICLR 2015——§3.1（把注意力看作软对齐）。
# - M.-T. Luong、H. Pham、C. D. Manning，*Effective Approaches to Attention-based Neural Machine Translation*，EMNLP 2015——§3.1（点积分数）。
# - PyTorch 文档：`torch.nn.functional.scaled_dot_product_attention` 与 `torch.nn.MultiheadAttention`（掩码约定）。
