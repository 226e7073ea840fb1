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
# # 04 · Multi-head attention
#
# **What you will learn**
# - why one attention is not enough, and what several *heads* buy;
# - splitting and merging heads: two reshapes, no loop;
# - six ways to write multi-head attention — a loop over heads, batched heads, one packed
#   projection, `einsum`, PyTorch's fused `scaled_dot_product_attention`, `nn.MultiheadAttention` —
#   all proven equal (and timed on this machine in appendix A);
# - the encoder sub-layer of the Transformer (residual + LayerNorm around attention);
# - heads that specialise, in a tiny model you train here in a few seconds;
# - the parameters and FLOPs of a real-sized layer, and the pitfalls.
#
# **You need** chapter 01 (scaled dot-product attention and its masks; section 7 here shows
# `nn.MultiheadAttention`'s opposite mask convention, which chapter 01 only names).

# %% [markdown] tags=["lang-zh"]
# # 04 · 多头注意力
#
# **本章内容**
# - 为什么一个注意力不够用，多个*头*（head）能带来什么；
# - 拆分与合并头：两次变形（reshape），不需要循环；
# - 多头注意力的六种写法——逐头循环、批量计算所有头、一次打包投影、`einsum`、PyTorch 的融合算子
#   `scaled_dot_product_attention`、`nn.MultiheadAttention`——逐一证明结果相同（附录 A 在本机上为它们计时）；
# - Transformer 编码器的子层（注意力外面套上残差连接和 LayerNorm）；
# - 会“分工”的头：在本章里花几秒钟训练一个小模型，看各个头怎样分工；
# - 一个真实规模的层的参数量和浮点运算次数（FLOPs），以及常见陷阱。
#
# **预备知识**：第 1 章（缩放点积注意力及其掩码；第 1 章只提到 `nn.MultiheadAttention` 相反的掩码约定，本章第 7 节会实际演示）。

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch04  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.core import causal_mask
from attnkit.mha import (MultiHeadAttention, merge_heads, mha_activation_bytes, mha_flops,
                         mha_param_count, split_heads)
from attnkit.timing import one_thread, round_robin_medians

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. Why several heads?
#
# One row of attention weights is *one* probability distribution over the keys, so one
# attention computes *one* weighted average per query. Suppose a word needs two things at once:
# the word just before it (to know the phrase it is in) and the first word of the sentence (to
# know the topic). A single softmax row can put weight on both, but then it returns their
# *blend*, and the more it looks at one the less it sees of the other. Here is that trade-off
# with 5 keys, when the query matches the keys at positions 0 and 3 equally well:

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么要多个头？
#
# 注意力权重的每一行都是键上的*一个*概率分布，所以一个注意力对每个查询只能算出*一个*加权平均。假设一个词同时需要两样东西：紧挨在它前面的词（好知道自己处在哪个短语里）和句子的第一个词（好知道话题是什么）。一行 softmax 可以同时把权重分给这两处，但返回的只是二者的*混合*，而且看这边越多，看那边就越少。下面用 5 个键演示这种取舍，其中查询与位置 0 和位置 3 的键匹配得一样好：

# %%
values = torch.eye(5)                                  # one-hot values: the output *is* the weights
scores = torch.tensor([4.0, 0.0, 0.0, 4.0, 0.0])        # query matches keys 0 and 3 equally
one_head = torch.softmax(scores, dim=-1) @ values
print(t("ch04.one_head"), one_head.numpy().round(3))
head_a = torch.softmax(torch.tensor([8.0, 0, 0, 0, 0]), dim=-1) @ values   # a head that looks at 0
head_b = torch.softmax(torch.tensor([0, 0, 0, 8.0, 0]), dim=-1) @ values   # a head that looks at 3
print(t("ch04.head_a"), head_a.numpy().round(3))
print(t("ch04.head_b"), head_b.numpy().round(3))

# %% [markdown] tags=["lang-en"]
# The single head returns 0.487 of key 0 mixed with 0.487 of key 3: the two pieces of
# information are averaged into one vector and cannot be told apart afterwards. Two heads each
# return one key almost pure (0.999), side by side in separate output slots. That is the whole
# idea of multi-head attention (Vaswani et al. 2017, §3.2.2): run $h$ attentions in parallel, each
# in its own smaller subspace, and concatenate the results. As a picture, for the sizes of
# section 3 (width $E = 16$, 4 heads), with the shape of every tensor (batch $B$, length $L$):

# %% [markdown] tags=["lang-zh"]
# 单个头返回的是键 0 和键 3 各占 0.487 的混合：两条信息被平均成了一个向量，之后再也分不开。两个头则各取回一个键，几乎不掺别的（0.999），并排放在输出中各自的位置上。这就是多头注意力的全部思想（Vaswani 等，2017，§3.2.2）：并行地运行 $h$ 个注意力，每个都在自己更小的子空间里计算，再把结果拼接起来。画成图就是下面这样（用第 3 节的尺寸：宽度 $E = 16$，4 个头），图中标出了每个张量的形状（批次 $B$，长度 $L$）：

# %% alt="ch04.alt.schematic"
from attnkit.schematics.heads import multi_head_schematic

multi_head_schematic(num_heads=4, embed_dim=16);

# %% [markdown] tags=["lang-en"]
# Follow one colour from left to right. Step 1 is chapter 01's three projections, at full width.
# Step 2 gives head $i$ its own slice of $d_k = E/h$ features of $Q$, $K$ and $V$ (section 2 shows
# it is only a reshape). In step 3 each head runs chapter 01's attention on its slice alone, with
# its own weights; no head sees another head's features. Step 4 puts the $h$ outputs side by side,
# back to width $E$, and step 5, $W^O$, is the only place where the heads' results are mixed. In
# the paper's notation (where the inputs $Q, K, V$ are all $x$ in self-attention):
#
# $$\mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\,W^O,
# \qquad \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q,\; K W_i^K,\; V W_i^V).$$
#
# With model width $E$ and $h$ heads, each head works in $d_k = d_v = E/h$ dimensions
# ($W_i^Q, W_i^K, W_i^V$ are $E \times E/h$), so the $h$ heads together cost about as much as one
# full-width head. $W^O$ ($E \times E$) mixes the heads' outputs back together.

# %% [markdown] tags=["lang-zh"]
# 沿着一种颜色从左往右看。第 1 步就是第 1 章的三个投影，宽度不变。第 2 步让第 $i$ 个头分到 $Q$、$K$、$V$ 中属于它的
# $d_k = E/h$ 个特征（第 2 节会说明这只是一次变形）。第 3 步，每个头只在自己那一份特征上做第 1 章的注意力，权重也各用各的；哪个头都看不到别的头的特征。第 4 步把 $h$ 个头的输出并排放好，宽度回到 $E$；第 5 步的 $W^O$ 是唯一把各个头的结果混合起来的地方。用论文的记号写出来（在自注意力中，输入 $Q, K, V$ 都是 $x$）：
#
# $$\mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\,W^O,
# \qquad \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q,\; K W_i^K,\; V W_i^V).$$
#
# 设模型宽度为 $E$、头数为 $h$，每个头在 $d_k = d_v = E/h$ 维中计算（$W_i^Q, W_i^K, W_i^V$ 是 $E \times E/h$ 的矩阵），所以 $h$ 个头加起来的开销与一个全宽度的头差不多。$W^O$（$E \times E$）再把各个头的输出混合到一起。

# %% [markdown] tags=["lang-en"]
# ## 2. Splitting and merging heads are reshapes
#
# Stack the $h$ matrices $W_i^Q$ side by side and you get one $E \times E$ matrix: a single
# `nn.Linear(E, E)` computes the queries of *all* heads at once, head $i$ owning features
# $i\,d_k$ to $(i+1)\,d_k - 1$. Splitting heads is then a `view` that cuts the last dimension into
# $(h, d_k)$ and a `transpose` that moves the heads in front of the positions:
# `(B, L, E) → (B, L, h, d_k) → (B, h, L, d_k)`. Merging is the reverse. No data is copied by the
# split, and no loop over heads is needed.

# %% [markdown] tags=["lang-zh"]
# ## 2. 拆分与合并头只是变形
#
# 把 $h$ 个 $W_i^Q$ 并排拼起来，就得到一个 $E \times E$ 的矩阵：一个 `nn.Linear(E, E)` 就能一次算出*所有*头的查询，第 $i$ 个头负责第 $i\,d_k$ 到第 $(i+1)\,d_k - 1$ 个特征。于是拆分头就是：先用 `view` 把最后一维切成 $(h, d_k)$，再用 `transpose` 把头的维度挪到位置维度之前：`(B, L, E) → (B, L, h, d_k) → (B, h, L, d_k)`。合并则反过来做。拆分不复制任何数据，也不需要对头做循环。

# %% alt="ch04.alt.split"
from attnkit.widgets.heads import plot_split_heads

x = torch.arange(2 * 4 * 8.0).view(2, 4, 8)        # (B=2, L=4, E=8)
heads = split_heads(x, num_heads=2)                 # (B, H=2, L, Dh=4)
print(t("ch04.split", a=tuple(x.shape), b=tuple(heads.shape)))
print(t("ch04.head1_pos0", v=heads[0, 1, 0].tolist()))
print("merge(split(x)) == x:", torch.equal(merge_heads(heads), x))
plot_split_heads(seq_len=4, embed_dim=8, num_heads=2);

# %% [markdown] tags=["lang-en"]
# ## 3. Six implementations, one answer
#
# Each function below computes the same thing from the weights of one `nn.MultiheadAttention`
# (which stores $W^Q, W^K, W^V$ packed as one `in_proj_weight` of shape $(3E, E)$). Read them
# top to bottom: each is a small step from the one before. The first two are the picture of
# section 1 written out: a Python loop over the heads, then all heads at once as one more batch
# dimension, `(B, h, L, d_k)`:

# %% [markdown] tags=["lang-zh"]
# ## 3. 六种实现，同一个答案
#
# 下面每个函数都用同一个 `nn.MultiheadAttention` 的权重计算同一件事（它把 $W^Q, W^K, W^V$ 打包成一个形状为
# $(3E, E)$ 的 `in_proj_weight`）。请从上往下读：每一种都只比前一种多走了一小步。前两种就是把第 1 节的图写成代码：先用 Python 循环逐个头计算，再把所有头当作多出来的一个批次维度 `(B, h, L, d_k)`，一次算完：

# %%
def unpack(m):
    """W_Q, W_K, W_V (E, E), their biases, W_O, b_O of an nn.MultiheadAttention."""
    Wq, Wk, Wv = m.in_proj_weight.chunk(3)
    bq, bk, bv = m.in_proj_bias.chunk(3)
    return Wq, Wk, Wv, bq, bk, bv, m.out_proj.weight, m.out_proj.bias


def mha_loop(x, m, causal=False):                       # 1. one head at a time
    Wq, Wk, Wv, bq, bk, bv, Wo, bo = unpack(m)
    L, H, Dh = x.shape[1], m.num_heads, m.head_dim
    heads = []
    for h in range(H):
        r = slice(h * Dh, (h + 1) * Dh)                 # head h's rows of W_Q, W_K, W_V
        q, k, v = x @ Wq[r].T + bq[r], x @ Wk[r].T + bk[r], x @ Wv[r].T + bv[r]  # (B, L, Dh)
        s = q @ k.transpose(-2, -1) / math.sqrt(Dh)     # (B, L, L)
        if causal:
            s = s.masked_fill(~causal_mask(L), float("-inf"))
        heads.append(torch.softmax(s, dim=-1) @ v)      # (B, L, Dh)
    return torch.cat(heads, dim=-1) @ Wo.T + bo         # Concat(head_1..head_H) W_O


def mha_batched(x, m, causal=False):                    # 2. all heads in one batched matmul
    Wq, Wk, Wv, bq, bk, bv, Wo, bo = unpack(m)
    L, H, Dh = x.shape[1], m.num_heads, m.head_dim
    q, k, v = (split_heads(x @ W.T + b, H) for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))  # (B, H, L, Dh)
    s = q @ k.transpose(-2, -1) / math.sqrt(Dh)         # (B, H, L, L)
    if causal:
        s = s.masked_fill(~causal_mask(L), float("-inf"))
    return merge_heads(torch.softmax(s, dim=-1) @ v) @ Wo.T + bo


# %% [markdown] tags=["lang-en"]
# The next two change only how the products are written. Stacking $W^Q, W^K, W^V$ gives one
# $(3E, E)$ matrix, so one matrix product makes $Q$, $K$ and $V$ together (`nn.MultiheadAttention`'s
# `in_proj_weight` is exactly this stack); `einsum` names every index instead, so that splitting and
# merging the heads become part of the products:

# %% [markdown] tags=["lang-zh"]
# 接下来两种只改变乘法的写法。把 $W^Q, W^K, W^V$ 叠起来就是一个 $(3E, E)$ 的矩阵，一次矩阵乘法就同时得到 $Q$、$K$、$V$（`nn.MultiheadAttention` 的 `in_proj_weight` 正是这样叠起来的）。`einsum` 则给每个下标起名字，拆分和合并头都成了乘法的一部分：

# %%
def mha_packed(x, m, causal=False):                     # 3. one (3E, E) projection for Q, K, V
    B, L, E = x.shape
    qkv = x @ m.in_proj_weight.T + m.in_proj_bias       # (B, L, 3E)
    q, k, v = qkv.view(B, L, 3, m.num_heads, m.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
    s = q @ k.transpose(-2, -1) / math.sqrt(m.head_dim)
    if causal:
        s = s.masked_fill(~causal_mask(L), float("-inf"))
    return merge_heads(torch.softmax(s, dim=-1) @ v) @ m.out_proj.weight.T + m.out_proj.bias


def mha_einsum(x, m, causal=False):                     # 4. every product named by its indices
    Wq, Wk, Wv, bq, bk, bv, Wo, bo = unpack(m)
    E, H, Dh = x.shape[2], m.num_heads, m.head_dim
    q, k, v = (torch.einsum("ble,hde->bhld", x, W.view(H, Dh, E)) + b.view(H, 1, Dh)
               for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))                 # (B, H, L, Dh)
    s = torch.einsum("bhld,bhmd->bhlm", q, k) / math.sqrt(Dh)              # (B, H, L, L)
    if causal:
        s = s.masked_fill(~causal_mask(x.shape[1]), float("-inf"))
    o = torch.einsum("bhlm,bhmd->bhld", torch.softmax(s, dim=-1), v)      # (B, H, L, Dh)
    return torch.einsum("bhld,ehd->ble", o, Wo.view(E, H, Dh)) + bo       # merge and W_O at once


# %% [markdown] tags=["lang-en"]
# The last two are PyTorch's own: its fused attention kernel inside our packed projection, and
# `nn.MultiheadAttention` itself (note its mask: `True` means *forbidden*, section 7):

# %% [markdown] tags=["lang-zh"]
# 最后两种是 PyTorch 自己的：在我们的打包投影里调用它的融合注意力算子，以及 `nn.MultiheadAttention` 本身（注意它的掩码：`True` 表示*禁止*，见第 7 节）：

# %%
def mha_sdpa(x, m, causal=False):                       # 5. PyTorch's fused attention kernel
    B, L, E = x.shape
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)
    q, k, v = qkv.view(B, L, 3, m.num_heads, m.head_dim).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)       # never stores (L, L) weights
    return F.linear(merge_heads(o), m.out_proj.weight, m.out_proj.bias)


def mha_torch(x, m, causal=False):                      # 6. nn.MultiheadAttention itself
    forbid = ~causal_mask(x.shape[1]) if causal else None  # its bool masks: True = forbidden
    return m(x, x, x, attn_mask=forbid, is_causal=causal, need_weights=False)[0]


# %% [markdown] tags=["lang-en"]
# attnkit's `MultiHeadAttention` is the batched version as a module: four `nn.Linear`s
# (`q_proj`, `k_proj`, `v_proj`, `out_proj`), split and merge as above, and
# `F.scaled_dot_product_attention` inside (or attnkit's plain attention when you ask for the
# weights). `MultiHeadAttention.from_torch(m)` copies the weights of an `nn.MultiheadAttention`
# (and `to_torch()` goes the other way). Now the proof that all seven agree, causal, on a small
# random input:

# %% [markdown] tags=["lang-zh"]
# attnkit 的 `MultiHeadAttention` 就是写成模块的批量版本：它有四个 `nn.Linear`（`q_proj`、`k_proj`、`v_proj`、`out_proj`），按上面的方式拆分和合并头。计算注意力时调用 `F.scaled_dot_product_attention`；需要返回注意力权重时，则改用 attnkit 的朴素实现。`MultiHeadAttention.from_torch(m)` 会复制一个 `nn.MultiheadAttention` 的权重（`to_torch()` 则反过来）。下面在一个小的随机输入上（带因果掩码）证明这七种实现结果一致：

# %%
torch.manual_seed(0)
m = nn.MultiheadAttention(embed_dim=16, num_heads=4, batch_first=True)
ours = MultiHeadAttention.from_torch(m)


def mha_attnkit(x, m, causal=False):                    # 7. attnkit, weights copied from m
    return ours(x, is_causal=causal)[0]


implementations = {"loop": mha_loop, "batched": mha_batched, "packed": mha_packed, "einsum": mha_einsum,
                   "sdpa": mha_sdpa, "torch": mha_torch, "attnkit": mha_attnkit}
names = {key: t(f"ch04.impl.{key}") for key in implementations}  # what the tables print
x = torch.randn(2, 6, 16)                                # (B, L, E)
with torch.no_grad():
    reference = mha_torch(x, m, causal=True)
    outs = {key: f(x, m, causal=True) for key, f in implementations.items()}
print(viz.format_table([t("ch04.col.impl"), t("ch04.col.shape"), "allclose"],
                       [[names[key], tuple(out.shape), torch.allclose(out, reference, atol=1e-6)]
                        for key, out in outs.items()]))

# %% [markdown] tags=["lang-en"]
# `nn.MultiheadAttention` can also return the weights, but by default it *averages them over
# the heads*. attnkit returns them per head, `(B, H, L, S)`; their mean over the heads is exactly
# PyTorch's:

# %% [markdown] tags=["lang-zh"]
# `nn.MultiheadAttention` 也能返回注意力权重，但默认会*在各个头之间取平均*。attnkit 按头返回，形状为 `(B, H, L, S)`；它们在头维度上的平均值与 PyTorch 的结果完全一致：

# %%
with torch.no_grad():
    _, w_torch = m(x, x, x, need_weights=True)           # (B, L, S): averaged over heads
    _, w_ours = ours(x, need_weights=True)               # (B, H, L, S)
print(t("ch04.per_head", a=tuple(w_ours.shape), b=tuple(w_torch.shape)))
print(t("ch04.mean_eq", ok=torch.allclose(w_ours.mean(dim=1), w_torch, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# Equal outputs, but not equal speeds: appendix A, at the end of the chapter, times the seven on a
# GPT-2-sized layer and explains what separates them.

# %% [markdown] tags=["lang-zh"]
# 结果相同，速度却未必相同：本章末尾的附录 A 在一个 GPT-2 规模的层上为这七种实现计时，并解释它们的差别从何而来。

# %% [markdown] tags=["lang-en"]
# ## 4. The encoder sub-layer
#
# In the Transformer, attention never appears alone. Each sub-layer is wrapped in a residual
# connection followed by layer normalisation, $\mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$
# (Vaswani et al. 2017, §3.1), and an encoder layer is two such sub-layers: multi-head
# self-attention, then a position-wise feed-forward network. Three pieces that are new here, each
# one line of the class below: the *residual* `x + MHA(x)` adds the attention's output to its input,
# so a layer only has to learn a correction; `nn.LayerNorm` rescales each position's vector to mean 0
# and variance 1 (then applies a learned gain and bias); the *feed-forward network* is two
# `nn.Linear` with a ReLU between them, applied to every position on its own (attention is the only
# place where positions exchange information). Built from attnkit's module, the layer equals
# PyTorch's `nn.TransformerEncoderLayer` once the weights are copied:

# %% [markdown] tags=["lang-zh"]
# ## 4. 编码器子层
#
# 在 Transformer 中，注意力从不单独出现。每个子层外面都套着一个残差连接，后面再接层归一化（LayerNorm），即 $\mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$（Vaswani 等，2017，§3.1）。一个编码器层由两个这样的子层组成：先是多头自注意力，然后是逐位置的前馈网络。这里有三样新东西，在下面的类里各占一行：*残差连接* `x + MHA(x)`
# 把注意力的输出加回到它的输入上，于是一层只需要学一个修正量。`nn.LayerNorm` 把每个位置的向量缩放成均值 0、方差 1（再乘上可学习的增益、加上偏置）。*前馈网络*是中间夹一个 ReLU 的两个 `nn.Linear`，对每个位置单独作用（各位置之间只在注意力里交换信息）。用 attnkit 的模块搭出来，复制权重之后，这一层与 PyTorch 的 `nn.TransformerEncoderLayer` 结果一致：

# %%
class EncoderLayer(nn.Module):
    """Post-LN encoder layer: x = LN(x + MHA(x)); x = LN(x + FFN(x))  (Vaswani et al. 2017, §3.1)."""

    def __init__(self, d_model, num_heads, d_ff):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, x, key_padding_mask=None):        # key_padding_mask: True = real token
        x = self.norm1(x + self.attn(x, key_padding_mask=key_padding_mask)[0])
        return self.norm2(x + self.ff(x))


torch.manual_seed(0)
ref_layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
layer = EncoderLayer(16, 4, 32)
layer.attn = MultiHeadAttention.from_torch(ref_layer.self_attn)
layer.ff[0].load_state_dict(ref_layer.linear1.state_dict())
layer.ff[2].load_state_dict(ref_layer.linear2.state_dict())
layer.norm1.load_state_dict(ref_layer.norm1.state_dict())
layer.norm2.load_state_dict(ref_layer.norm2.state_dict())
with torch.no_grad():
    print(t("ch04.encoder_eq", ok=torch.allclose(layer(x), ref_layer(x), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# ## 5. Explore: heads that specialise
#
# Section 1 argued that heads let a position gather several things at once. Let us watch it
# happen. The task: a "sentence" of 10 random words from a vocabulary of 16; at every position the
# model must name three words at once: the **previous** word, the word **two back**, and the
# **first** word of the sentence. The model is as small as it gets: word and position embeddings,
# two causal layers of `MultiHeadAttention` with 4 heads each (residual, pre-LayerNorm, no
# feed-forward), and three linear read-outs. Training is seeded and takes a few seconds:

# %% [markdown] tags=["lang-zh"]
# ## 5. 动手探索：会分工的头
#
# 第 1 节说，多个头让一个位置可以同时收集几样信息。现在亲眼看看。任务是：一个“句子”由词表（16 个词）中随机抽取的 10 个词组成；在每个位置上，模型都要同时说出三个词：**前一个词**、**往前第二个词**（与当前位置隔一个词），以及句子的**第一个词**。模型小到不能再小：词嵌入加位置嵌入，两层带因果掩码的 `MultiHeadAttention`，每层 4 个头（残差连接、前置 LayerNorm、没有前馈网络），最后是三个线性读出层。训练固定了随机种子，只需几秒钟：

# %%
from attnkit.widgets.heads import example_sentences, head_roles, head_weights, train_recall_model

model, info = train_recall_model(steps=100, seed=0)
print(t("ch04.loss", a=info["loss"][0], b=info["loss"][-1]))
for role, acc in info["accuracy"].items():
    print(f"{t('heads.role.' + role)}: {acc:.1%}")

# %% [markdown] tags=["lang-en"]
# It solves the task (100% on fresh sentences for all three read-outs). Now, for each head, the
# average weight a query puts on the previous word, the word two back, the first word and itself:

# %% [markdown] tags=["lang-zh"]
# 模型解决了这个任务（在新句子上，三个读出层的准确率都是 100%）。下面统计每个头：查询平均把多少权重放在前一个词、往前第二个词、第一个词以及自身上：

# %%
sentence = example_sentences()[0]
weights = head_weights(model, sentence)                  # (layers, H, L, L)
roles = head_roles(weights)
print(viz.format_table(
    [t("ch04.col.layer"), t("ch04.col.head"), t("ch04.col.prev"), t("ch04.col.prev2"),
     t("ch04.col.first"), t("ch04.col.self"), t("ch04.col.role")],
    [[layer + 1, h, f"{r['prev']:.2f}", f"{r['prev2']:.2f}", f"{r['first']:.2f}", f"{r['self']:.2f}",
      t("heads.role." + r["role"])] for layer, rs in enumerate(roles) for h, r in enumerate(rs)]))

# %% [markdown] tags=["lang-en"]
# Nobody told the heads what to do, yet in layer 1 head 0 became a first-word head (1.00 of its
# weight on position 0), head 2 a previous-word head (1.00) and head 1 a two-back head (0.90);
# layer 2 has heads of the same three kinds. Pick a layer, a head and a sentence below: the grid
# shows every head of a layer, a single head shows one heatmap. (Where widgets do not run, on
# GitHub for instance, the figure below shows the starting choice: layer 1, all heads, the first
# sentence.)

# %% [markdown] tags=["lang-zh"]
# 没有人告诉这些头该做什么，可它们自己分了工。在第 1 层中，第 0 个头成了“第一个词”头（平均 1.00 的权重落在位置 0 上），第 2 个头成了“前一个词”头（1.00），第 1 个头成了“往前第二个词”头（0.90）。第 2 层里也出现了这三类头。在下面选择层、头和句子：选“所有头”时显示该层每个头的网格，选单个头时显示一张热力图。（在 GitHub 等无法运行交互控件的地方，下面的静态图画的是初始选择：第 1 层、所有头、第一个句子。）

# %% tags=["nbval-ignore-output"] alt="ch04.alt.explorer"
from attnkit.widgets.heads import heads_explorer

explorer = heads_explorer(model)
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# ## 6. What it costs
#
# **Predict first (question 1).** Keep the width $E$ and double the number of heads, so each head
# gets half as many features. Which is true? a) the parameters double; b) the FLOPs of the scores
# $QK^\top$ double; c) neither parameters nor FLOPs change, but the attention weights held in memory
# double; d) nothing changes at all, the heads being only a reshape. Answer with a letter, then read on.

# %% [markdown] tags=["lang-zh"]
# ## 6. 开销
#
# **问题 1（先预测）**：宽度 $E$ 不变，把头数翻倍，每个头分到的特征就少了一半。下面哪一项正确？a) 参数量翻倍；b) 分数 $QK^\top$ 的 FLOPs 翻倍；c) 参数量和 FLOPs 都不变，但要存在内存里的注意力权重翻倍；d) 什么都不变，因为头只是一次变形。先用字母作答，再往下读。

# %%
from attnkit.exercises.ch04 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# For one layer with width $E$, $h$ heads, $L$ queries, $S$ keys, batch $B$ (a multiply-add = 2 FLOPs):
#
# | part | parameters | forward FLOPs |
# |---|---|---|
# | $W^Q, W^K, W^V, W^O$ | $4E^2$ (+ $4E$ biases) | $2B(2L + 2S)E^2$ |
# | scores $QK^\top$, all heads | — | $2BLSE$ |
# | weights $\times V$, all heads | — | $2BLSE$ |
#
# The number of heads changes neither count: $h$ heads of width $E/h$ do the work of one head of
# width $E$. Heads do change memory: the attention weights are $B \cdot h \cdot L \cdot S$ numbers,
# one $L \times S$ matrix *per head*, unless a fused kernel avoids storing them. For a
# LLaMA-7B-sized layer ($E = 4096$, 32 heads) and a 4096-token sequence:

# %% [markdown] tags=["lang-zh"]
# 对宽度为 $E$、有 $h$ 个头、$L$ 个查询、$S$ 个键、批次为 $B$ 的一层（一次乘加记作 2 次浮点运算）：
#
# | 部分 | 参数量 | 前向 FLOPs |
# |---|---|---|
# | $W^Q, W^K, W^V, W^O$ | $4E^2$（另加 $4E$ 个偏置） | $2B(2L + 2S)E^2$ |
# | 所有头的分数 $QK^\top$ | — | $2BLSE$ |
# | 所有头的权重乘以 $V$ | — | $2BLSE$ |
#
# 头数既不影响参数量，也不影响 FLOPs：$h$ 个宽度为 $E/h$ 的头，计算量与一个宽度为 $E$ 的头相同。但头数会影响内存：注意力权重共有 $B \cdot h \cdot L \cdot S$ 个数，*每个头*一个 $L \times S$ 矩阵（除非融合算子避免保存它们）。对一个 LLaMA-7B 规模的层（$E = 4096$，32 个头）和长度为 4096 的序列：

# %%
E, H, L = 4096, 32, 4096
params = mha_param_count(E, H, bias=False)
real = sum(p.numel() for p in MultiHeadAttention(E, H, bias=False, device="meta").parameters())
flops = mha_flops(E, H, seq_len=L)
act = mha_activation_bytes(E, H, seq_len=L, bytes_per_element=2)     # bfloat16
print(t("ch04.params", f=params, m=real, ok=params == real))
print(t("ch04.flops", p=flops["projections"] / 1e12, s=flops["scores"] / 1e12,
        w=flops["weighted_sum"] / 1e12, tot=flops["total"] / 1e12))
print(t("ch04.act", w=act["weights"] / 2**30, qkv=act["qkv"] / 2**20))
act2 = mha_activation_bytes(E, 2 * H, seq_len=L, bytes_per_element=2)  # twice the heads, same width
print(t("ch04.twice_heads", h=2 * H, h0=H, p=mha_param_count(E, 2 * H, bias=False) == params,
        f=mha_flops(E, 2 * H, seq_len=L)["total"] == flops["total"], w=act2["weights"] / 2**30,
        w0=act["weights"] / 2**30))

# %% [markdown] tags=["lang-en"]
# 67,108,864 parameters per attention layer (LLaMA has no biases), and 0.82 TFLOP for one
# 4096-token sequence: 0.55 T in the projections and 0.14 T each for the scores and weights × V.
# At this length $L = S = E$, so the two attention terms ($4LSE$ together) are already half of
# the projections' $8LE^2$; every doubling of $L$ doubles the projections but quadruples the
# attention. Storing every head's weights would take 1.0 GiB per
# layer in bfloat16, against 96 MiB for Q, K and V: the quadratic term is the one that hurts, and
# the reason fused kernels (chapter 07) never materialise it. With 64 heads instead of 32 (the last
# line), parameters and FLOPs stay the same and the weights grow to 2.0 GiB: question 1's answer.
# (The module above lives on PyTorch's `meta` device: shapes only, no memory, so counting a
# 7B-sized layer costs nothing.)

# %% [markdown] tags=["lang-zh"]
# 每个注意力层有 67,108,864 个参数（LLaMA 不用偏置）；处理一条 4096 个词元（token）的序列需要 0.82 TFLOP：投影占 0.55 T，分数和权重乘以 $V$ 各占 0.14 T。在这个长度上 $L = S = E$，注意力的两项（合计 $4LSE$）已经是投影项 $8LE^2$ 的一半；$L$ 每翻一倍，投影的开销翻一倍，注意力的开销却变成四倍。如果保存每个头的注意力权重，在 bfloat16 下每层要 1.0 GiB，而 Q、K、V 一共只要 96 MiB。真正要命的是这个平方项，这也是融合算子（第 7 章）从不把它完整写出来的原因。把 32 个头换成 64 个（最后一行），参数量和 FLOPs 都不变，注意力权重却涨到 2.0 GiB：这就是问题 1 的答案。（上面的模块放在 PyTorch 的 `meta` 设备上：只有形状、不占内存，所以数一个 7B 规模的层几乎没有开销。）

# %% [markdown] tags=["lang-en"]
# ## 7. Pitfalls
#
# **`view` where `transpose` is needed.** `x.view(B, H, L, Dh)` has exactly the shape of the
# split heads, runs without error and is wrong: it cuts the flat memory into heads, so "head 0"
# gets the first positions' features instead of the first features of every position.

# %% [markdown] tags=["lang-zh"]
# ## 7. 常见陷阱
#
# **该用 `transpose` 的地方用了 `view`。** `x.view(B, H, L, Dh)` 的形状与拆分后的头完全一样，运行也不报错，但结果是错的。它按内存顺序把数据切成几段，于是“第 0 个头”拿到的是前几个位置的特征，而不是每个位置的前几个特征。

# %%
x = torch.randn(2, 6, 16)
B, L, E = x.shape
right = split_heads(x, 4)
wrong = x.view(B, 4, L, E // 4)
print(t("ch04.same", shape=right.shape == wrong.shape, values=torch.equal(right, wrong)))

# %% [markdown] tags=["lang-en"]
# **Boolean masks mean opposite things.** This is the most common mask bug in PyTorch code.
# attnkit (like SDPA) reads `True` as *may attend*; `nn.MultiheadAttention` reads `True` as
# *forbidden*, for `attn_mask` and `key_padding_mask` alike. One `(L, S)` mask serves every head:
# it broadcasts over the batch and the heads of the `(B, h, L, S)` scores. Let us rebuild
# `nn.MultiheadAttention`'s computation from its own packed weights once more, handing SDPA a causal
# mask *tensor* this time, and give `nn.MultiheadAttention` the same mask, once inverted and once as it is:

# %% [markdown] tags=["lang-zh"]
# **布尔掩码的含义相反。** 这是 PyTorch 代码里最常见的掩码错误。attnkit（与 SDPA 一样）把 `True` 理解为*可以关注*；`nn.MultiheadAttention` 则把 `True` 理解为*禁止*，`attn_mask` 和 `key_padding_mask` 都是如此。一个 `(L, S)` 的掩码供所有头共用：它在 `(B, h, L, S)` 的分数上沿批次和头两个维度广播。我们再用 `nn.MultiheadAttention` 自己的打包权重重建一次它的计算，这次交给 SDPA 的是一个因果掩码*张量*。再把同一个掩码交给 `nn.MultiheadAttention`，一次取反，一次原样传入：

# %%
cm = causal_mask(6)                                      # (L, S): True = may attend (SDPA, attnkit)
qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)      # (B, L, 3E)
q, k, v = (split_heads(part, m.num_heads) for part in qkv.chunk(3, dim=-1))  # 3 x (B, H, L, Dh)
rebuilt = F.linear(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=cm)),  # cm: every head
                   m.out_proj.weight, m.out_proj.bias)
with torch.no_grad():
    right = m(x, x, x, attn_mask=~cm, need_weights=False)[0]            # nn.MultiheadAttention: True = forbidden
    wrong, w_wrong = m(x, x, x, attn_mask=cm, average_attn_weights=False)  # the same mask, passed unchanged
print(t("ch04.mha_inverted", ok=torch.allclose(right, rebuilt, atol=1e-6)))
print(t("ch04.mha_unchanged", ok=torch.allclose(wrong, rebuilt, atol=1e-6)))
print(t("ch04.wrong_row0", v=[round(w, 2) for w in w_wrong[0, 0, 0].tolist()]))
print(t("ch04.wrong_last", ok=bool(wrong[:, -1].isnan().all())))

# %% [markdown] tags=["lang-en"]
# Passing the same boolean mask to both computes two different things without any error. With the
# mask unchanged, `nn.MultiheadAttention` forbids exactly what SDPA allows: query 0 of head 0 puts
# all its weight on keys 1 to 5, the future, and none on itself; the last query may see nothing at
# all, and its output is NaN in every sequence — in a deeper network, that NaN would spread to every
# later position. Rule: **negate a boolean mask when you move it between SDPA (or attnkit) and
# `nn.MultiheadAttention`**. The same holds for a padding mask, `(B, S)`, which hides the same keys
# from every head and every query: pass it unchanged and the results differ, invert it for PyTorch
# and they agree. (Float masks are added to the scores in both.)

# %% [markdown] tags=["lang-zh"]
# 把同一个布尔掩码原样传给两者，会不报错地算出两种不同的结果。掩码不取反时，`nn.MultiheadAttention` 禁止的恰好是 SDPA 允许的：第 0 个头中，查询 0 把全部权重放在键 1 到 5（也就是未来）上，自己一点都没有。最后一个查询什么都看不到，每条序列中它的输出都是 NaN——在更深的网络里，这个 NaN 会扩散到后面的每个位置。规则是：**在 SDPA（或 attnkit）和 `nn.MultiheadAttention` 之间传递布尔掩码时要取反**。填充掩码 `(B, S)` 也一样，它对每个头、每个查询隐藏同样的键：原样传入，结果不同；传给 PyTorch 时取反，两者就一致了。（浮点掩码在两边都是加到分数上。）

# %%
from attnkit.core import padding_mask

ours = MultiHeadAttention.from_torch(m)
real_tokens = padding_mask([6, 4], 6)                   # (B, S): True = real token
with torch.no_grad():
    a = ours(x, key_padding_mask=real_tokens)[0]
    same = m(x, x, x, key_padding_mask=real_tokens, need_weights=False)[0]
    inverted = m(x, x, x, key_padding_mask=~real_tokens, need_weights=False)[0]
print(t("ch04.mask_same", ok=torch.allclose(a, same, atol=1e-6)))
print(t("ch04.mask_inv", ok=torch.allclose(a, inverted, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **Averaged weights hide the heads.** Called with `need_weights=True` (the default),
# `nn.MultiheadAttention` returns the *mean* over heads unless you pass
# `average_attn_weights=False`. In the trained model's first layer, three of the four heads put
# nearly all of a query's weight on one position (section 5's table). Compare the largest weight
# of a row, head by head and for the average:

# %% [markdown] tags=["lang-zh"]
# **平均后的权重会掩盖各个头。** 以 `need_weights=True`（默认值）调用 `nn.MultiheadAttention` 时，它返回的是各头的*平均值*，除非传入 `average_attn_weights=False`。在训练好的模型的第 1 层中，四个头里有三个几乎把查询的全部权重都放在一个位置上（见第 5 节的表）。下面比较每一行的最大权重：逐个头看，以及对各头取平均后再看：

# %%
w1 = weights[0]                                          # layer 1: (H, L, L)
print(t("ch04.peak_heads", v=[round(v, 2) for v in w1.amax(-1)[:, 3:].mean(-1).tolist()]))
print(t("ch04.peak_mean", v=w1.mean(0).amax(-1)[3:].mean().item()))

# %% [markdown] tags=["lang-en"]
# Three heads reach 1.0, 0.9 and 1.0, yet the average of the heads peaks at only 0.37 per row:
# it looks as if no head did anything sharp. Look at heads one by one.

# %% [markdown] tags=["lang-zh"]
# 三个头的最大权重分别达到 1.0、0.9 和 1.0，而对各头取平均后，每行的最大权重只有 0.37：看上去好像没有哪个头关注得很集中。所以要逐个头地看。

# %% [markdown] tags=["lang-en"]
# **A width the heads do not divide.** Each head gets $E/h$ features, so $h$ must divide $E$;
# attnkit says so instead of rounding silently, and an input of the wrong width gets an error
# naming the width expected:

# %% [markdown] tags=["lang-zh"]
# **头数不能整除宽度。** 每个头分到 $E/h$ 个特征，因此 $h$ 必须整除 $E$；attnkit 会明确报错，而不是悄悄取整。输入的宽度不对时，报错信息也会写明应有的宽度：

# %%
for bad in (lambda: MultiHeadAttention(100, 12), lambda: ours(torch.randn(2, 6, 15))):
    try:
        bad()
    except ValueError as err:
        print(f"ValueError: {err}")

# %% [markdown] tags=["lang-en"]
# ## 8. Exercises
#
# Each exercise has a stub to fill in and a checker that runs your function on several cases and
# tells you the first one that fails, with the expected and the actual result and a hint.
#
# **Exercise 1.** Split heads: `(B, L, E)` → `(B, H, L, E // H)`, head `h` getting features
# `h * E // H` to `(h + 1) * E // H - 1` of every position.

# %% [markdown] tags=["lang-zh"]
# ## 8. 练习
#
# 每个练习都有一个待补全的函数框架和一个检查器。检查器会在若干用例上运行你的函数，并指出第一个未通过的用例，给出期望结果、你的结果和一条提示。
#
# **练习 1**：拆分头：`(B, L, E)` → `(B, H, L, E // H)`，第 `h` 个头拿到每个位置的第 `h * E // H` 到第 `(h + 1) * E // H - 1` 个特征。

# %%
from attnkit.exercises.ch04 import check_count_params, check_merge_heads, check_mha, check_split_heads, check_torch_mha


def my_split_heads(x, num_heads):
    # your code here
    raise NotImplementedError


check_split_heads(my_split_heads);

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** Merge heads: the inverse, `(B, H, L, Dh)` → `(B, L, H * Dh)`.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：合并头：拆分的逆运算，`(B, H, L, Dh)` → `(B, L, H * Dh)`。

# %%
def my_merge_heads(x):
    # your code here
    raise NotImplementedError


check_merge_heads(my_merge_heads);

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Multi-head self-attention from given weights, without biases or mask:
# `x` is `(B, L, E)`, `w_q, w_k, w_v, w_o` are `(E, E)` (as in `nn.Linear`: `y = x @ w.T`).
# Split and merge with your own functions of exercises 1 and 2: attnkit's `split_heads` and
# `merge_heads` are refused here, like the attention functions.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：用给定的权重实现多头自注意力，不带偏置和掩码：`x` 的形状是 `(B, L, E)`，`w_q, w_k, w_v, w_o` 都是 `(E, E)`（与 `nn.Linear` 相同：`y = x @ w.T`）。拆分和合并头请用你在练习 1 和练习 2 中写的函数：这里和注意力函数一样，attnkit 的 `split_heads` 和 `merge_heads` 都不能用。

# %%
def my_mha(x, w_q, w_k, w_v, w_o, num_heads):
    # your code here
    raise NotImplementedError


check_mha(my_mha);

# %% [markdown] tags=["lang-en"]
# **Exercise 4.** The number of parameters of one multi-head attention layer of width
# `embed_dim` with `num_heads` heads, with or without biases.

# %% [markdown] tags=["lang-zh"]
# **练习 4**：宽度为 `embed_dim`、有 `num_heads` 个头的一层多头注意力有多少个参数（分带偏置和不带偏置两种情况）。

# %%
def my_count_params(embed_dim, num_heads, bias=True):
    # your code here
    raise NotImplementedError


check_count_params(my_count_params);

# %% [markdown] tags=["lang-en"]
# **Stretch: `nn.MultiheadAttention` from its packed weights, masks included.** Write
# `my_torch_mha(x, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads, attn_mask=None,
# key_padding_mask=None)` that returns what `m(x, x, x, attn_mask=attn_mask,
# key_padding_mask=key_padding_mask)` returns for an `nn.MultiheadAttention` `m` with these weights:
# the output `(B, L, E)` and its weights `(B, L, S)`. `in_proj_weight` is the `(3E, E)` stack of
# $W^Q, W^K, W^V$; the masks follow *PyTorch's* conventions (a boolean `attn_mask` `(L, S)` and
# `key_padding_mask` `(B, S)` are `True` where attention is forbidden; a float `attn_mask` is
# added to the scores). The checker tries no mask, a causal mask, causal plus padding, and a float
# bias. Write the attention yourself: SDPA, attnkit's attention and PyTorch's
# `multi_head_attention_forward` are refused.

# %% [markdown] tags=["lang-zh"]
# **挑战题：用打包的权重复现 `nn.MultiheadAttention`，连同掩码。** 写出
# `my_torch_mha(x, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads, attn_mask=None, key_padding_mask=None)`，对一个用这些权重的 `nn.MultiheadAttention` `m`，它要返回与 `m(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask)` 相同的东西：输出 `(B, L, E)` 和它的权重 `(B, L, S)`。`in_proj_weight` 是 $W^Q, W^K, W^V$ 叠成的 `(3E, E)` 矩阵；掩码遵循 *PyTorch* 的约定：布尔 `attn_mask` `(L, S)` 和 `key_padding_mask` `(B, S)` 中 `True` 表示禁止关注，浮点 `attn_mask` 直接加到分数上。检查器会依次试：无掩码、因果掩码、因果掩码加填充掩码、浮点偏置。注意力要自己写：SDPA、attnkit 的注意力和 PyTorch 的
# `multi_head_attention_forward` 都不能用。

# %%
def my_torch_mha(x, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads,
                 attn_mask=None, key_padding_mask=None):
    # your code here
    raise NotImplementedError


_ = check_torch_mha(my_torch_mha)

# %% [markdown] tags=["lang-en"]
# ## 9. Summary
#
# - One softmax row is one weighted average; $h$ heads give each position $h$ separate averages,
#   each in an $E/h$-dimensional subspace, concatenated and mixed by $W^O$ (section 1).
# - Heads are a reshape: `(B, L, E) → (B, L, h, d_k) → (B, h, L, d_k)`; no loop, and the split copies nothing (section 2).
# - Loop, batched, packed, `einsum`, fused SDPA and `nn.MultiheadAttention` compute the same
#   thing; the fused kernel never stores the $(L, L)$ weights, and with `is_causal=True` it skips the
#   masked half, which it cannot do when handed a causal mask tensor (section 3, appendix A).
# - An encoder layer is $\mathrm{LayerNorm}(x + \mathrm{MHA}(x))$ then the same around a feed-forward network (section 4).
# - Trained on a task that needs several positions at once, heads specialise by themselves (section 5).
# - $4E^2$ parameters and $O(LE^2 + L^2E)$ FLOPs whatever $h$; the weights take $h L^2$ memory per sequence (section 6).
# - One `(L, S)` mask serves every head; `nn.MultiheadAttention`'s boolean masks mean *forbidden*,
#   SDPA's and attnkit's *may attend*: negate when you move a mask between them (section 7).
#
# **Next:** chapter 05 — shrinking the KV cache by sharing keys and values between heads (GQA, MQA)
# or compressing them into a small latent vector (MLA).
#
# ## References
# - A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 — §3.2.2 (multi-head attention,
#   the MultiHead equation), §3.1 (residual + LayerNorm around every sub-layer).
# - E. Voita et al., *Analyzing Multi-Head Self-Attention: Specialized Heads Do the Heavy Lifting,
#   the Rest Can Be Pruned*, ACL 2019 — positional heads attending to neighbouring tokens.
# - K. Clark et al., *What Does BERT Look At? An Analysis of BERT's Attention*, BlackboxNLP 2019 —
#   heads that attend to the previous token or to special tokens.
# - P. Michel, O. Levy, G. Neubig, *Are Sixteen Heads Really Better than One?*, NeurIPS 2019.
# - PyTorch documentation: `torch.nn.MultiheadAttention`, `torch.nn.functional.scaled_dot_product_attention`,
#   `torch.nn.TransformerEncoderLayer`; A. Karpathy, nanoGPT, `CausalSelfAttention`.

# %% [markdown] tags=["lang-zh"]
# ## 9. 小结
#
# - 一行 softmax 只是一个加权平均；$h$ 个头让每个位置得到 $h$ 个独立的平均，各自位于一个 $E/h$ 维的子空间，拼接后再由 $W^O$ 混合（第 1 节）。
# - 头只是一次变形：`(B, L, E) → (B, L, h, d_k) → (B, h, L, d_k)`；不需要循环，拆分时也不复制任何数据（第 2 节）。
# - 循环、批量、打包投影、`einsum`、融合 SDPA 和 `nn.MultiheadAttention` 算的是同一个东西；融合算子从不保存 $(L, L)$ 的权重，有了 `is_causal=True` 还会跳过被屏蔽的那一半，传入因果掩码张量则做不到这一点（第 3 节、附录 A）。
# - 编码器层就是 $\mathrm{LayerNorm}(x + \mathrm{MHA}(x))$，再在前馈网络外面套上同样的结构（第 4 节）。
# - 在需要同时关注多个位置的任务上训练，各个头会自发地分工（第 5 节）。
# - 不论 $h$ 是多少，参数量都是 $4E^2$，FLOPs 都是 $O(LE^2 + L^2E)$；而每条序列的注意力权重要占 $h L^2$ 个数的内存（第 6 节）。
# - 一个 `(L, S)` 掩码供所有头共用；`nn.MultiheadAttention` 的布尔掩码表示*禁止*，SDPA 和 attnkit 的表示*可以关注*：在它们之间传递掩码时要取反（第 7 节）。
#
# **下一章**：第 5 章——让多个头共享键和值（GQA、MQA），或把它们压缩成一个低维的潜在向量（MLA），从而缩小 KV 缓存。
#
# ## 参考文献
# - A. Vaswani 等，*Attention Is All You Need*，NeurIPS 2017——§3.2.2（多头注意力，MultiHead 公式），§3.1（每个子层外面的残差连接与 LayerNorm）。
# - E. Voita 等，*Analyzing Multi-Head Self-Attention: Specialized Heads Do the Heavy Lifting, the Rest Can Be Pruned*，ACL 2019——关注相邻词元的位置头。
# - K. Clark 等，*What Does BERT Look At? An Analysis of BERT's Attention*，BlackboxNLP 2019——关注前一个词元或特殊词元的头。
# - P. Michel、O. Levy、G. Neubig，*Are Sixteen Heads Really Better than One?*，NeurIPS 2019。
# - PyTorch 文档：`torch.nn.MultiheadAttention`、`torch.nn.functional.scaled_dot_product_attention`、`torch.nn.TransformerEncoderLayer`；A. Karpathy，nanoGPT，`CausalSelfAttention`。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. Timing the seven implementations
#
# Equal outputs, different speeds. The table times the seven on one causal
# self-attention of batch 2, length 1024, width 768, 12 heads (a GPT-2-small layer), forward only,
# taken in turn on one thread, median of 3 runs each, each relative to the fused SDPA version. Your
# numbers will differ; `python benchmarks/bench_mha.py` measures batch 8 with more repeats.

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. 七种实现的计时
#
# 结果相同，速度却不同。下表对这七种实现计时，算的是一次带因果掩码的自注意力：批次 2、序列长度 1024、宽度 768、12 个头（相当于 GPT-2 small 的一层），只算前向。七种实现在单线程上轮流运行，各取 3 次的中位数，并给出相对融合 SDPA 版本的倍数。你的机器上数字会不同；`python benchmarks/bench_mha.py` 用批次 8 和更多次重复来测量。

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
big = nn.MultiheadAttention(768, 12, batch_first=True).eval()
ours = MultiHeadAttention.from_torch(big).eval()
xb = torch.randn(2, 1024, 768)                           # (B, L, E): a GPT-2-small layer, batch 2
with torch.inference_mode(), one_thread():            # round-robin: load hits every one alike
    ms = {key: 1e3 * sec for key, sec in round_robin_medians(
        {key: (lambda f=f: f(xb, big, causal=True)) for key, f in implementations.items()},
        repeats=3, warmup=0).items()}
print(viz.format_table([t("ch04.col.impl"), t("ch04.col.ms"), t("ch04.col.vs_sdpa")],
                       [[names[key], f"{ms[key]:.1f}", f"{ms[key] / ms['sdpa']:.2f}x"] for key in implementations]))
B, H, L = xb.shape[0], big.num_heads, xb.shape[1]
print(t("ch04.held_at_once", loop=B * L * L * 4 / 2**20, all=B * H * L * L * 4 / 2**20))
print(t("ch04.vs_loop", batched=ms["batched"] / ms["loop"], einsum=ms["einsum"] / ms["loop"]))

# %% [markdown] tags=["lang-en"]
# How to read it: the four $E \times E$ projections are the same in every version, so what
# separates the rows is how the attention itself is done; gaps of a few percent are run-to-run
# noise, and close rows may swap when you run the cell again. The loop, batched, packed and einsum
# versions do the same arithmetic. The last three hold the $(L, L)$ weights of every head and every
# sequence at once, the loop only one head's (the first line under the table prints both sizes);
# whether that costs time depends on how the CPU's matrix library handles each shape. The einsum
# version holds as much as the batched one, so where their times differ (the second line prints
# both against the loop, from this run's numbers), memory alone does not explain the gap. The fused kernel never writes the $(L, L)$ weights to memory, and with
# `is_causal=True` it skips the blocks above the diagonal of a causal matrix. In inference mode
# `nn.MultiheadAttention` takes its own "fast path" (`torch._native_multi_head_attention`), which
# on CPU computes the full $(L, L)$ scores and a masked softmax: the causal mask reaches it as a
# *tensor*, to it just an arbitrary mask. attnkit passes `is_causal=True` to the kernel instead of
# building a mask. These differences grow with $L$, since the attention part grows as $L^2$
# (section 6). (The cell also rebinds `ours` to a copy of this big layer.)

# %% [markdown] tags=["lang-zh"]
# 怎么看这张表：四个 $E \times E$ 的投影在每种写法里都一样，所以拉开各行差距的是注意力本身的算法；几个百分点的差距只是运行之间的波动，再运行一次，相近的几行也许会互换位置。循环、批量、打包和 einsum 这四个版本的计算量完全相同。后三个版本要同时存下所有头、所有序列的 $(L, L)$ 权重矩阵，循环版本每次只存一个头的（表格下面第一行打印了两者的大小）；这会不会多花时间，取决于 CPU 的矩阵运算库如何处理各种形状。einsum 版本存下的权重和批量版本一样多，所以只要二者耗时不同（第二行根据本次运行的实测数字，打印了二者相对循环版本的倍数），差距就不能只用内存来解释。融合算子从不把 $(L, L)$ 的权重矩阵写入内存，而且有了 `is_causal=True`，它会跳过因果矩阵对角线上方的分块。在推理模式下，`nn.MultiheadAttention` 会走它自己的“快速路径”（`torch._native_multi_head_attention`）。在 CPU 上，这条路径会算出完整的 $(L, L)$ 分数，再做带掩码的 softmax：因果掩码是以*张量*形式传进去的，在它看来只是一个任意的掩码。attnkit 则直接把 `is_causal=True` 交给算子，而不是构造一个掩码。这些差别随 $L$ 增大而变大，因为注意力部分按 $L^2$ 增长（第 6 节）。（这个单元格还把 `ours` 换成了这个大层的副本。）
