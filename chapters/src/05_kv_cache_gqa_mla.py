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
# # 05 · The KV cache, GQA, MQA and MLA — memory you can see
#
# **What you will learn**
# - what a language model caches while it generates, why decoding is limited by memory and not
#   by arithmetic, and how big the cache of a real model is;
# - multi-head, grouped-query and multi-query attention (MHA, GQA, MQA) as one family that
#   differs only in how many key/value heads the query heads share;
# - DeepSeek-V2's multi-head latent attention (MLA): keys and values rebuilt from a small latent,
#   a separate rotary key, and the "absorption" trick that lets the heads attend to the latent itself;
# - how to decode with a cache so that the result equals the full forward pass, and the mask
#   mistake that breaks it.
#
# **You need** chapter 01 (attention and masks) and chapter 04 (multi-head attention). Section 4
# uses RoPE, which chapter 06 explains; here you only need to know that it rotates queries and
# keys by an angle that depends on their position.

# %% [markdown] tags=["lang-zh"]
# # 05 · KV 缓存、GQA、MQA 与 MLA——看得见的内存
#
# **本章内容**
# - 语言模型在生成时缓存了什么，为什么解码速度受限于内存带宽而不是算力，一个真实模型的缓存有多大；
# - 多头注意力（MHA）、分组查询注意力（GQA）和多查询注意力（MQA）其实是同一个家族，区别只在于这些查询头共享多少个键值头；
# - DeepSeek-V2 的多头潜在注意力（MLA）：键和值由一个很小的潜在向量还原出来，另有一个单独的、带旋转位置编码（RoPE）的键，
#   再通过“吸收”技巧让各个头直接对潜在向量做注意力；
# - 如何用缓存解码并得到与完整前向计算完全相同的结果，以及会破坏这一点的掩码错误。
#
# **预备知识**：第 1 章（注意力与掩码）和第 4 章（多头注意力）。第 4 节会用到 RoPE，
# 第 6 章才详细讲解；这里只需知道它把查询和键旋转一个随位置而变的角度。

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch05  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.core import causal_mask
from attnkit.core import scaled_dot_product_attention as plain_attention
from attnkit.gqa import (
    GroupedQueryAttention,
    KVCache,
    MultiHeadLatentAttention,
    compare_cache_sizes,
    grouped_query_attention,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    repeat_kv,
)

torch.manual_seed(0)
print("torch", torch.__version__.split("+")[0])

# %% [markdown] tags=["lang-en"]
# ## 1. What a decoder caches
#
# A language model writes one token at a time. To produce token $t+1$ it runs the network on
# token $t$: in every layer the new token's query attends over the keys and values of **all**
# tokens so far. With a causal mask, the keys and values of earlier tokens never change when a
# later token arrives — so there is no need to compute them again. The **KV cache** keeps them:
# at each step the layer computes the new token's $q, k, v$, appends $k$ and $v$ to the cache
# and attends over the whole cache.
#
# The result must be *exactly* what the full causal forward pass gives on the whole sequence.
# Let us check with attnkit's `GroupedQueryAttention` set up as plain multi-head attention
# (8 heads, 8 key/value heads) and a `KVCache`, feeding 10 tokens one by one:

# %% [markdown] tags=["lang-zh"]
# ## 1. 解码器缓存了什么
#
# 语言模型一次写出一个词元（token）。为了生成第 $t+1$ 个词元，它把第 $t$ 个词元送进网络：在每一层，
# 新词元的查询要对目前为止**所有**词元的键和值做注意力。在因果掩码下，后面的词元到来时，前面词元的键和值不会改变——
# 所以没有必要重新计算。**KV 缓存**把它们保存下来：每一步，这一层只计算新词元的 $q, k, v$，
# 把 $k$ 和 $v$ 追加到缓存末尾，再对整个缓存做注意力。
#
# 结果必须与对整个序列做完整因果前向计算*完全*相同。下面用 attnkit 的 `GroupedQueryAttention`
# （设成普通多头注意力：8 个头、8 个键值头）和一个 `KVCache` 验证一下，把 10 个词元逐个送进去：

# %%
torch.manual_seed(0)
layer = GroupedQueryAttention(embed_dim=64, num_heads=8, num_kv_heads=8).eval()
x = torch.randn(1, 10, 64)                                  # (B, T, E): 10 tokens

with torch.no_grad():
    full, _ = layer(x, is_causal=True)                      # all 10 tokens at once
    cache, steps = KVCache(), []
    for i in range(10):                                     # one token at a time
        out, _ = layer(x[:, i:i + 1], is_causal=True, kv_cache=cache)
        steps.append(out)
        if i in (0, 4, 9):
            print(t("ch05.after_token", i=i, k=tuple(cache.k.shape), v=tuple(cache.v.shape)))
print(t("ch05.cached_eq_full", ok=torch.allclose(torch.cat(steps, 1), full, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# The cache grows by one position per step, shape $(B, H_{kv}, T, d_h)$ for keys and the same for
# values. Without it, step $t$ would project all $t$ previous tokens again: generating $T$ tokens
# would cost $T(T+1)/2$ key/value projections instead of $T$ — for 1000 tokens:

# %% [markdown] tags=["lang-zh"]
# 缓存每一步增加一个位置，键的形状是 $(B, H_{kv}, T, d_h)$，值也一样。如果没有缓存，第 $t$ 步要把前面 $t$ 个词元重新投影一遍：
# 生成 $T$ 个词元需要 $T(T+1)/2$ 次键值投影，而不是 $T$ 次——以 1000 个词元为例：

# %%
T = 1000
print(t("ch05.projections", a=T * (T + 1) // 2, b=T, r=(T + 1) / 2))

# %% [markdown] tags=["lang-en"]
# ## 2. Why decoding is memory-bound
#
# At a decode step, one query per head meets $S$ cached positions. Per layer, with $n_h$ query
# heads, $n_g$ key/value heads of size $d_h$:
#
# - arithmetic: $q\cdot k$ and the weighted sum of values, $2 d_h + 2 d_h$ FLOPs per head and
#   position: $4 n_h d_h S$ FLOPs;
# - memory: the whole cache is read, $2 n_g d_h S$ numbers.
#
# So each byte read feeds only $\frac{4 n_h d_h S}{2 n_g d_h S \cdot \text{bytes}} = \frac{2 n_h}{n_g\cdot\text{bytes}}$
# FLOPs. For MHA in bfloat16 ($n_g = n_h$, 2 bytes) that is **1 FLOP per byte**. An accelerator
# does hundreds of FLOPs in the time it reads one byte from memory, so during decoding the
# arithmetic units mostly wait for the cache to stream in: the step takes as long as *reading
# the cache* (and the weights) takes. Sharing key/value heads raises the ratio by $n_h/n_g$.
# For a 32-head model:

# %% [markdown] tags=["lang-zh"]
# ## 2. 为什么解码受限于内存带宽
#
# 解码的每一步，每个头只有一个查询，要面对 $S$ 个已缓存的位置。设每层有 $n_h$ 个查询头、$n_g$ 个键值头，头维度为 $d_h$：
#
# - 计算量：$q\cdot k$ 加上对值的加权求和，每个头、每个位置的浮点运算次数（FLOPs）为 $2 d_h + 2 d_h$，合计 $4 n_h d_h S$；
# - 内存访问：整个缓存都要读一遍，共 $2 n_g d_h S$ 个数。
#
# 所以每读 1 字节只能喂给 $\frac{4 n_h d_h S}{2 n_g d_h S \cdot \text{字节数}} = \frac{2 n_h}{n_g\cdot\text{字节数}}$
# 次浮点运算。对 bfloat16 下的 MHA（$n_g = n_h$，每个数 2 字节），这个比值只有**每字节 1 次**。
# 而加速器从内存读 1 字节的时间里能做几百次浮点运算，所以解码时运算单元大部分时间都在等缓存从内存里流进来：
# 一步解码的耗时基本等于*读完缓存*（和权重）的时间。共享键值头能把这个比值提高 $n_h/n_g$ 倍。以 32 个头的模型为例：

# %%
n_h, d_h, nbytes = 32, 128, 2                                # bfloat16
rows = []
for label, n_g in ((t("ch05.kind.mha"), 32), (t("ch05.kind.gqa", g=8), 8), (t("ch05.kind.mqa"), 1)):
    rows.append([label, n_g, f"{4 * n_h * d_h / (2 * n_g * d_h * nbytes):.0f}"])
print(viz.format_table([t("ch05.col.kind"), t("ch05.col.kv_heads"), t("ch05.col.intensity")], rows))
print(t("ch05.h100", r=989e12 / 3.35e12))

# %% [markdown] tags=["lang-en"]
# Even MQA's 32 FLOPs per byte is far below the roughly 295 the H100's spec sheet allows, so
# decoding stays memory-bound, and the size of the cache sets the speed. It also sets how many
# sequences fit in memory at once. Here is the cache of a 32-layer model 4096 wide (32 heads of
# 128) at a 32k-token context in bfloat16, batch 1 (MLA with DeepSeek-V2's proportions,
# $d_c = 512$, $d_h^R = 64$; section 4):

# %% [markdown] tags=["lang-zh"]
# 即使是 MQA 的每字节 32 次，也远低于 H100 规格表给出的约 295 次，所以解码仍然受限于内存带宽，缓存的大小决定了速度；
# 它也决定了显存里能同时放下多少条序列。下面是一个 32 层、宽度 4096（32 个 128 维的头）的模型在 32k 词元上下文、
# bfloat16、批次大小为 1 时的缓存大小（MLA 采用 DeepSeek-V2 的比例，$d_c = 512$，$d_h^R = 64$；见第 4 节）：

# %%
sizes = compare_cache_sizes(num_heads=32, num_kv_heads=8, head_dim=128, num_layers=32, seq_len=32768,
                            dtype=torch.bfloat16, kv_lora_rank=512, qk_rope_head_dim=64)
names = {"mha": t("ch05.kind.mha"), "gqa": t("ch05.kind.gqa", g=8), "mqa": t("ch05.kind.mqa"), "mla": t("ch05.kind.mla")}
print(viz.format_table(
    [t("ch05.col.kind"), t("ch05.col.per_token"), t("ch05.col.total"), t("ch05.col.vs_mha")],
    [[names[k], f"{b // 32768:,}", f"{b / 2**30:.3f} GiB", f"{b / sizes['mha']:.4f}"] for k, b in sizes.items()]))
print(t("ch05.weights_7b", g=7e9 * 2 / 2**30))

# %% [markdown] tags=["lang-en"]
# Multi-head attention needs 16 GiB for a single 32k-token sequence — more than the weights of
# a 7B-parameter model in bfloat16 (13.0 GiB). Eight kv groups cut it to 4 GiB, one kv head to
# 0.5 GiB, and MLA to 1.125 GiB while keeping 32 full query heads with their own keys and values
# (section 4).

# %% [markdown] tags=["lang-zh"]
# 多头注意力为一条 32k 词元的序列就要 16 GiB——比一个 70 亿参数模型在 bfloat16 下的全部权重（13.0 GiB）还多。
# 8 个键值组把它降到 4 GiB，只用 1 个键值头降到 0.5 GiB，而 MLA 降到 1.125 GiB，
# 同时 32 个查询头仍然各自拥有自己的键和值（第 4 节）。

# %% [markdown] tags=["lang-en"]
# ## 3. MHA → GQA → MQA: one family
#
# Keep $n_h$ query heads but give the keys and values only $n_g$ heads, $n_g$ dividing $n_h$.
# Each group of $G = n_h / n_g$ consecutive query heads shares one kv head: **query head $i$
# reads kv head $\lfloor i / G \rfloor$**. Ainslie et al. (2023) fix no order, only that the heads
# of a group share one kv head; $\lfloor i / G \rfloor$ is the convention of Hugging Face's LLaMA
# (`repeat_kv`) and of PyTorch's `enable_gqa`, so checkpoints trained that way expect it. Mind the
# two meanings of G: here, as in that code, $G$ is the group *size* (query heads per kv head), while
# the paper's GQA-G names the *number* of groups, $n_g$ — so the GQA-2 in this chapter's tables has
# $n_g = 2$ kv heads and $G = 4$. $n_g = n_h$ is MHA, $n_g = 1$ is MQA (Shazeer 2019), anything between is GQA. Only the key and value projections shrink, from
# $d \times n_h d_h$ to $d \times n_g d_h$, and the cache with them.
#
# From scratch, the easiest way is to *repeat* each kv head $G$ times, as Hugging Face's LLaMA
# does with `repeat_kv`, and then run ordinary attention. Given `enable_gqa=True`, PyTorch's SDPA
# takes the $n_g$ kv heads as they are (its reference math path repeats them the same way; its
# FlashAttention kernel on CUDA reads each kv head without copying it):

# %% [markdown] tags=["lang-zh"]
# ## 3. MHA → GQA → MQA：同一个家族
#
# 保留 $n_h$ 个查询头，但键和值只用 $n_g$ 个头（$n_g$ 整除 $n_h$）。每 $G = n_h / n_g$ 个相邻的查询头组成一组，
# 共享一个键值头：**第 $i$ 个查询头读取第 $\lfloor i / G \rfloor$ 个键值头**。Ainslie 等（2023）并没有规定顺序，
# 只要求同一组的头共享一个键值头；$\lfloor i / G \rfloor$ 是 Hugging Face 的 LLaMA（`repeat_kv`）和 PyTorch 的 `enable_gqa` 采用的约定，
# 按这种方式训练的检查点也都依赖它。注意 G 有两种含义：这里（与上述代码一样）$G$ 指每组的*大小*，即每个键值头对应几个查询头；
# 论文里的 GQA-G 指的却是组的*个数* $n_g$。所以本章表格中的 GQA-2 有 $n_g = 2$ 个键值头，$G = 4$。
# $n_g = n_h$ 就是 MHA，$n_g = 1$ 就是 MQA（Shazeer，2019），介于两者之间的就是 GQA。
# 只有键和值的投影变小了（从 $d \times n_h d_h$ 变成 $d \times n_g d_h$），缓存也随之变小。
#
# 从零实现时，最简单的办法是把每个键值头*重复* $G$ 次（Hugging Face 的 LLaMA 用 `repeat_kv` 就是这么做的），
# 然后做普通的注意力。传入 `enable_gqa=True` 时，PyTorch 的 SDPA 直接接受这 $n_g$ 个键值头（它作为参考的 math 路径同样是先重复；
# CUDA 上的 FlashAttention 算子则直接读取各个键值头，不做复制）：

# %%
def my_repeat_kv(x, n_rep):                                  # (B, n_g, S, d) -> (B, n_g * n_rep, S, d)
    B, n_g, S, d = x.shape
    return x[:, :, None].expand(B, n_g, n_rep, S, d).reshape(B, n_g * n_rep, S, d)


def my_gqa(q, k, v, mask=None):                              # q (B, n_h, L, d); k, v (B, n_g, S, d)
    G = q.shape[1] // k.shape[1]
    return plain_attention(q, my_repeat_kv(k, G), my_repeat_kv(v, G), attn_mask=mask)


torch.manual_seed(0)
q, k, v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)
ours = my_gqa(q, k, v, causal_mask(5))
print(t("ch05.head_map", v=[int(my_repeat_kv(torch.arange(2.0).view(1, 2, 1, 1), 4)[0, i]) for i in range(8)]))
print(t("ch05.matches_attnkit", ok=torch.allclose(ours, grouped_query_attention(q, k, v, is_causal=True), atol=1e-6)))
print(t("ch05.matches_torch",
        ok=torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# `attnkit.gqa.GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)` is the layer, with
# LLaMA's projection names (`q_proj`, `k_proj`, `v_proj`, `o_proj`). Same width, same number of
# query heads; the three members of the family differ in their parameters and cache:

# %% [markdown] tags=["lang-zh"]
# `attnkit.gqa.GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)` 就是这样一层，投影的命名沿用 LLaMA
# （`q_proj`、`k_proj`、`v_proj`、`o_proj`）。宽度相同、查询头数相同，这个家族的三个成员只在参数量和缓存上不同：

# %%
torch.manual_seed(0)
x = torch.randn(1, 6, 64)
rows = []
for label, n_g in ((t("ch05.kind.mha"), 8), (t("ch05.kind.gqa", g=2), 2), (t("ch05.kind.mqa"), 1)):
    m = GroupedQueryAttention(64, 8, n_g).eval()
    c = KVCache()
    with torch.no_grad():
        m(x, is_causal=True, kv_cache=c)
    rows.append([label, n_g, sum(p.numel() for p in m.parameters()), str(tuple(c.k.shape)), c.nbytes])
print(viz.format_table([t("ch05.col.kind"), t("ch05.col.kv_heads"), t("ch05.col.params"),
                        t("ch05.col.cache_shape"), t("ch05.col.measured")], rows))

# %% [markdown] tags=["lang-en"]
# With `num_kv_heads == num_heads` the layer *is* chapter 04's multi-head attention. Copy the
# weights of an `attnkit.mha.MultiHeadAttention` into it (`from_mha` does that) and the outputs agree:

# %% [markdown] tags=["lang-zh"]
# 当 `num_kv_heads == num_heads` 时，这一层*就是*第 4 章的多头注意力。把一个 `attnkit.mha.MultiHeadAttention`
# 的权重复制过来（`from_mha` 就做这件事），两者的输出完全一致：

# %%
from attnkit.mha import MultiHeadAttention

torch.manual_seed(0)
mha = MultiHeadAttention(64, 8)
as_gqa = GroupedQueryAttention.from_mha(mha)
with torch.no_grad():
    print(t("ch05.gqa_is_mha",
            ok=torch.allclose(as_gqa(x, is_causal=True)[0], mha(x, attn_mask=causal_mask(6))[0], atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# **Turning an MHA checkpoint into GQA.** Ainslie et al. (2023, §2.1–2.2) build each kv head of a
# GQA model as the *mean* of the key (and value) projection heads of its group, then continue
# training ("uptraining") for about 5% of the original pre-training steps. `from_mha(mha,
# num_kv_heads)` does the pooling. Without the uptraining the pooled layer is only an
# approximation; on a layer with random weights, whose heads have nothing in common, it is a poor one:

# %% [markdown] tags=["lang-zh"]
# **把 MHA 检查点转换成 GQA。** Ainslie 等（2023，§2.1–2.2）把每组中各个头的键（和值）投影取*平均*，作为 GQA 模型的一个键值头。
# 然后再继续训练（“追加训练”，uptraining），步数大约是原预训练的 5%。`from_mha(mha, num_kv_heads)` 完成平均池化这一步。
# 不做追加训练时，池化后的层只是一个近似；对于权重随机、各个头之间毫无共性的层，这个近似很差：

# %%
torch.manual_seed(0)
tmha = nn.MultiheadAttention(64, 8, batch_first=True)
xb = torch.randn(4, 16, 64)
with torch.no_grad():
    ref, _ = tmha(xb, xb, xb, need_weights=False)
    rows = []
    for n_g in (8, 4, 2, 1):
        out, _ = GroupedQueryAttention.from_mha(tmha, num_kv_heads=n_g)(xb)
        rows.append([n_g, f"{((out - ref).norm() / ref.norm()).item():.3f}"])
print(viz.format_table([t("ch05.col.kv_heads"), t("ch05.col.rel_err")], rows))

# %% [markdown] tags=["lang-en"]
# Keeping all 8 kv heads reproduces the layer exactly (error 0.000); pooling to 4, 2 and 1 heads
# gives relative errors of 0.792, 0.908 and 0.966: that gap is what the uptraining has to close.
# In a trained model the heads of a group have more in common, and the paper's comparison of
# conversion methods (uptraining to MQA) finds mean pooling better than keeping the first head or
# initialising the kv head at random.
#
# Decoding with the cache works the same for every member of the family:

# %% [markdown] tags=["lang-zh"]
# 保留全部 8 个键值头时完全复现原层（误差 0.000）；池化成 4、2、1 个头时，相对误差分别是 0.792、0.908 和 0.966，
# 这段差距正要靠追加训练来弥补。训练好的模型中，同一组的头有更多共性；论文比较了几种转换方法（追加训练成 MQA），
# 发现平均池化优于只保留第一个头或随机初始化键值头。
#
# 用缓存解码对这个家族的每个成员都一样成立：

# %%
torch.manual_seed(0)
x = torch.randn(2, 7, 64)
for label, n_g in ((t("ch05.kind.mha"), 8), (t("ch05.kind.gqa", g=2), 2), (t("ch05.kind.mqa"), 1)):
    m = GroupedQueryAttention(64, 8, n_g).eval()
    with torch.no_grad():
        full, _ = m(x, is_causal=True)
        cache = KVCache()
        first, _ = m(x[:, :3], is_causal=True, kv_cache=cache)          # a 3-token prompt
        rest = [m(x[:, i:i + 1], is_causal=True, kv_cache=cache)[0] for i in range(3, 7)]
    print(t("ch05.row_cached_eq_full", label=f"{label:>6}", ok=torch.allclose(torch.cat([first, *rest], 1), full, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# ## 4. MLA: compress the keys and values into a latent
#
# GQA saves memory by giving several query heads the *same* keys and values. DeepSeek-V2's
# multi-head latent attention (DeepSeek-AI 2024, §2.1) keeps a different key and value per head
# but makes them all linear functions of one small vector per token, the latent $c^{KV}_t$ of
# dimension $d_c \ll n_h d_h$. Only the latent is cached (eqs 9–11):
#
# $$c_t^{KV} = W^{DKV} h_t,\qquad k_t^C = W^{UK} c_t^{KV},\qquad v_t^C = W^{UV} c_t^{KV}.$$
#
# **Absorption.** For head $i$ the score is $q_{t,i}^\top k_{j,i}^C = q_{t,i}^\top W^{UK}_i c_j^{KV} = (W^{UK\top}_i q_{t,i})^\top c_j^{KV}$:
# fold $W^{UK}_i$ into the query and every head attends directly over the cached latents, which
# are then shared by all heads like MQA's single kv head. Likewise
# $\sum_j w_j W^{UV}_i c_j = W^{UV}_i \sum_j w_j c_j$: apply $W^{UV}_i$ *after* the attention.
#
# **Why RoPE needs its own key.** With RoPE the key at position $j$ is rotated by $R_j$:
# $q^\top R_i^\top R_j W^{UK} c_j = q^\top R_{j-i} W^{UK} c_j$. The matrix between the query and
# the latent now depends on the distance $j - i$, so no single matrix can be folded into the query.
# MLA therefore adds a small **decoupled** rotary part (eqs 14–17): each head gets a rotary query
# $q_{t,i}^R$, and a single rotary key $k_t^R = \mathrm{RoPE}(W^{KR} h_t)$ of size $d_h^R$ is
# shared by all heads and cached next to the latent. Queries may also be compressed through a
# latent $c^Q_t$ of dimension $d_c'$ (eqs 12–13), and the scores are scaled by $1/\sqrt{d_h + d_h^R}$ (eq 18):
#
# $$q_{t,i} = [q_{t,i}^C; q_{t,i}^R],\quad k_{j,i} = [k_{j,i}^C; k_j^R],\quad
#   o_{t,i} = \sum_j \mathrm{softmax}_j\Big(\tfrac{q_{t,i}^\top k_{j,i}}{\sqrt{d_h + d_h^R}}\Big) v_{j,i}^C .$$
#
# Cache per token and layer: $d_c + d_h^R$ numbers, against $2 n_h d_h$ for MHA.

# %% [markdown] tags=["lang-zh"]
# ## 4. MLA：把键和值压缩进一个潜在向量
#
# GQA 省内存的办法是让几个查询头使用*相同*的键和值。DeepSeek-V2 的多头潜在注意力（MLA，DeepSeek-AI 2024，§2.1）
# 则让每个头仍有各自不同的键和值，但它们都是同一个很小的向量的线性函数。
# 这个向量就是每个词元的潜在向量 $c^{KV}_t$，维度 $d_c \ll n_h d_h$。
# 缓存中只保存这个潜在向量（式 9–11）：
#
# $$c_t^{KV} = W^{DKV} h_t,\qquad k_t^C = W^{UK} c_t^{KV},\qquad v_t^C = W^{UV} c_t^{KV}.$$
#
# **吸收。** 第 $i$ 个头的分数是 $q_{t,i}^\top k_{j,i}^C = q_{t,i}^\top W^{UK}_i c_j^{KV} = (W^{UK\top}_i q_{t,i})^\top c_j^{KV}$：
# 把 $W^{UK}_i$ 吸收进查询，每个头就能直接对缓存的潜在向量做注意力，这些潜在向量被所有头共享，就像 MQA 唯一的那个键值头。
# 同样，$\sum_j w_j W^{UV}_i c_j = W^{UV}_i \sum_j w_j c_j$：在注意力*之后*再乘 $W^{UV}_i$。
#
# **为什么 RoPE 需要单独的键。** 加上 RoPE 后，位置 $j$ 的键要旋转 $R_j$：
# $q^\top R_i^\top R_j W^{UK} c_j = q^\top R_{j-i} W^{UK} c_j$。查询和潜在向量之间的矩阵依赖于距离 $j - i$，
# 不存在一个固定的矩阵可以吸收进查询。所以 MLA 另外加了一小部分**解耦**的旋转分量（式 14–17）：每个头有一个旋转查询 $q_{t,i}^R$，
# 而旋转键 $k_t^R = \mathrm{RoPE}(W^{KR} h_t)$（维度 $d_h^R$）只有一个，被所有头共享，和潜在向量一起缓存。
# 查询也可以先压缩成维度为 $d_c'$ 的潜在向量 $c^Q_t$（式 12–13）；分数除以 $\sqrt{d_h + d_h^R}$（式 18）：
#
# $$q_{t,i} = [q_{t,i}^C; q_{t,i}^R],\quad k_{j,i} = [k_{j,i}^C; k_j^R],\quad
#   o_{t,i} = \sum_j \mathrm{softmax}_j\Big(\tfrac{q_{t,i}^\top k_{j,i}}{\sqrt{d_h + d_h^R}}\Big) v_{j,i}^C .$$
#
# 每个词元、每层的缓存：$d_c + d_h^R$ 个数，而 MHA 是 $2 n_h d_h$ 个。

# %% [markdown] tags=["lang-en"]
# First the obstacle, measured. Put RoPE on the key rebuilt from the latent and try to absorb
# $W^{UK}$ into the (rotated) query: the absorbed scores miss the key's rotation and differ from
# the true ones, except for the key at position 0, whose rotation is the identity:

# %% [markdown] tags=["lang-zh"]
# 先实际看一下这个障碍。把 RoPE 加在由潜在向量还原出的键上，再试着把 $W^{UK}$ 吸收进（已旋转的）查询：
# 吸收后的分数缺少键的旋转，与真实分数不同——只有位置 0 上的键例外，因为它的旋转是恒等变换：

# %%
from attnkit.rope import apply_rope, generate_rope_embeddings

torch.manual_seed(0)
d_c, d = 16, 8
W_uk = torch.randn(d, d_c) / math.sqrt(d_c)                 # (d_h, d_c)
c = torch.randn(6, d_c)                                      # latents of 6 tokens
q_c = torch.randn(1, d)                                      # the query of token 5
cos, sin = generate_rope_embeddings(6, d)
k_rot = apply_rope(c @ W_uk.T, cos, sin)                     # RoPE on the rebuilt keys (6, d)
q_rot = apply_rope(q_c, cos, sin, offset=5)                  # the query at position 5
true_scores = (q_rot @ k_rot.T)[0]
absorbed = ((q_rot @ W_uk) @ c.T)[0]                         # W_uk folded into the query
print(t("ch05.true_scores", v=true_scores.numpy().round(3)))
print(t("ch05.absorbed_scores", v=absorbed.numpy().round(3)))

# %% [markdown] tags=["lang-en"]
# Now attnkit's `MultiHeadLatentAttention`, a small one. It has two inference paths over the
# same cache: `absorb=False` rebuilds every head's keys and values from the cached latents
# (eqs 10–11, 17), `absorb=True` folds $W^{UK}$ into the query and $W^{UV}$ after the attention.
# They agree, also when decoding with the cache, and the cache holds exactly $d_c + d_h^R$
# numbers per token:

# %% [markdown] tags=["lang-zh"]
# 下面是 attnkit 的 `MultiHeadLatentAttention`，用一个小模型。它在同一个缓存上有两条推理路径：
# `absorb=False` 从缓存的潜在向量还原出每个头的键和值（式 10–11、17），`absorb=True` 把 $W^{UK}$ 吸收进查询、
# 在注意力之后再乘 $W^{UV}$。两条路径结果一致，用缓存解码时也一致，而且缓存中每个词元恰好保存 $d_c + d_h^R$ 个数：

# %%
torch.manual_seed(0)
mla = MultiHeadLatentAttention(embed_dim=64, num_heads=4, kv_lora_rank=16, qk_nope_head_dim=16,
                               qk_rope_head_dim=8, v_head_dim=16, q_lora_rank=32).eval()
x = torch.randn(2, 7, 64)
with torch.no_grad():
    naive = mla(x, is_causal=True)
    absorbed = mla(x, is_causal=True, absorb=True)
    print(t("ch05.naive_vs_absorbed", ok=(naive - absorbed).abs().max().item() < 1e-5))
    for absorb in (False, True):
        cache = KVCache()
        outs = [mla(x[:, :3], is_causal=True, kv_cache=cache, absorb=absorb)]
        outs += [mla(x[:, i:i + 1], is_causal=True, kv_cache=cache, absorb=absorb) for i in range(3, 7)]
        print(t("ch05.row_cached_eq_full", label=f"absorb={absorb}", ok=torch.allclose(torch.cat(outs, 1), naive, atol=1e-5)))
per_token = kv_cache_bytes_per_token("mla", kv_lora_rank=16, qk_rope_head_dim=8, dtype=torch.float32)
print(t("ch05.mla_cache", shape=tuple(cache.tensors[0].shape), dc=16, dr=8))
print(t("ch05.mla_bytes", m=cache.nbytes, f=per_token, tot=per_token * 14))

# %% [markdown] tags=["lang-en"]
# ## 5. Explore: who shares what, and what it weighs
#
# Move the sliders: the number of query heads and of kv heads (GQA), the head size, the number
# of layers, the context length and the dtype. On the left, each query head is linked to the kv
# head it reads; on the right, the cache of one sequence for MHA, GQA, MQA and MLA (with
# DeepSeek-V2's proportions $d_c = 4 d_h$, $d_h^R = d_h/2$). The numbers come from
# `attnkit.gqa.compare_cache_sizes`. (On GitHub, the static figure below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# ## 5. 动手探索：谁和谁共享，要占多少内存
#
# 拖动滑块：查询头数和键值头数（GQA）、头维度、层数、上下文长度以及数据类型。左图把每个查询头和它读取的键值头连起来；
# 右图是一条序列在 MHA、GQA、MQA 和 MLA 下的缓存大小（MLA 采用 DeepSeek-V2 的比例 $d_c = 4 d_h$、$d_h^R = d_h/2$）。
# 这些数字来自 `attnkit.gqa.compare_cache_sizes`。（在 GitHub 上，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"]
from attnkit.widgets.kvcache import kv_cache_explorer

explorer = kv_cache_explorer()
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# The explorer's cache sizes for its starting model, in GiB, and the same model with 2 kv heads
# (what the explorer shows when you move the kv-heads slider to 2):

# %% [markdown] tags=["lang-zh"]
# 交互控件初始模型的缓存大小（单位 GiB），以及同一模型只用 2 个键值头时的缓存大小（也就是把键值头数滑块拖到 2 时显示的结果）：

# %%
from attnkit.widgets.kvcache import kv_cache_explorer_data

print({k: round(b / 2**30, 3) for k, b in explorer.data["bytes"].items()})
two = kv_cache_explorer_data(num_heads=32, num_kv_heads=2, head_dim=128, num_layers=32, context=32768, dtype="bfloat16")
print({k: round(b / 2**30, 3) for k, b in two["bytes"].items()})

# %% [markdown] tags=["lang-en"]
# ## 6. What it costs, measured
#
# Per layer and decode step, with $S$ cached tokens (bytes per number $b$):
#
# | | cache read | attention FLOPs |
# |---|---|---|
# | MHA | $2 n_h d_h S\, b$ | $4 n_h d_h S$ |
# | GQA | $2 n_g d_h S\, b$ | $4 n_h d_h S$ |
# | MQA | $2 d_h S\, b$ | $4 n_h d_h S$ |
# | MLA, absorbed | $(d_c + d_h^R) S\, b$ | $n_h (4 d_c + 4 d_h^R) S$ |
# | MLA, naive | $(d_c + d_h^R) S\, b$ | $+\,2 d_c\, n_h (d_h + d_h^v) S$ to rebuild K and V |
#
# On the absorbed path each head scores the $d_c + d_h^R$ numbers of every cached row and then, as
# attnkit's code does, averages the whole row $[c; k^R]$ as the value and drops the last $d_h^R$
# output channels (so that queries, keys and values share one head size, which PyTorch's fused CPU
# kernel needs): $2(d_c + d_h^R) + 2(d_c + d_h^R)$ FLOPs per head and cached token. A kernel that
# averages $c$ alone does $n_h (4 d_c + 2 d_h^R) S$.
#
# The absorbed path does *more* arithmetic per cached byte than MHA — which is what a
# memory-bound step wants. The naive path rebuilds every key and value at every step, which is
# why inference uses the absorbed one. Measured on this machine: one layer 512 wide with 8 heads
# of 64 (GQA with 2 kv heads; MLA with $d_c = 256$, $d_h^R = 32$), one new token after $S$ cached
# ones, float32, every variant and length timed in turn on one CPU thread (slower, but much less
# disturbed by other programs), median of 3.
# First the bytes the caches really hold after the step, against the formula:

# %% [markdown] tags=["lang-zh"]
# ## 6. 开销：实测
#
# 每层、每步解码，已缓存 $S$ 个词元（每个数占 $b$ 字节）时：
#
# | | 读取的缓存 | 注意力的浮点运算次数 |
# |---|---|---|
# | MHA | $2 n_h d_h S\, b$ | $4 n_h d_h S$ |
# | GQA | $2 n_g d_h S\, b$ | $4 n_h d_h S$ |
# | MQA | $2 d_h S\, b$ | $4 n_h d_h S$ |
# | MLA，吸收路径 | $(d_c + d_h^R) S\, b$ | $n_h (4 d_c + 4 d_h^R) S$ |
# | MLA，朴素路径 | $(d_c + d_h^R) S\, b$ | 另加还原 K、V 的 $2 d_c\, n_h (d_h + d_h^v) S$ |
#
# 在吸收路径上，每个头先用每一行缓存的 $d_c + d_h^R$ 个数算分数。attnkit 的代码接着把整行 $[c; k^R]$ 当作值做加权平均，
# 再丢掉输出的最后 $d_h^R$ 个通道：这样查询、键和值的头维度相同，而 PyTorch 在 CPU 上的融合算子要求如此。
# 于是每个头、每个缓存词元需要 $2(d_c + d_h^R) + 2(d_c + d_h^R)$ 次浮点运算。只用 $c$ 做加权平均的算子则是 $n_h (4 d_c + 2 d_h^R) S$。
#
# 吸收路径每读 1 字节缓存做的运算比 MHA *更多*——这正是受限于内存带宽的解码步骤所需要的。朴素路径每一步都要重建所有的键和值，
# 所以推理时用的是吸收路径。下面在本机上实测：一层宽度 512、8 个 64 维的头（GQA 用 2 个键值头；MLA 取 $d_c = 256$、$d_h^R = 32$），
# 在已缓存 $S$ 个词元之后再解码 1 个新词元，float32；所有变体和长度在单个 CPU 线程上轮流计时（更慢，但受其他程序的干扰小得多），各取 3 次的中位数。
# 先看解码之后缓存实际占用的字节数，与公式对照：

# %%
from attnkit.gqa import make_decode_model, measure_decode_steps

contexts = (256, 1024, 4096)
models = {k: make_decode_model(k, embed_dim=512, num_heads=8, num_kv_heads=2) for k in ("mha", "gqa", "mqa", "mla")}
shape = dict(num_heads=8, head_dim=64, num_kv_heads=2, kv_lora_rank=256, qk_rope_head_dim=32, dtype=torch.float32)
labels = {"mha": t("ch05.kind.mha"), "gqa": t("ch05.kind.gqa", g=2), "mqa": t("ch05.kind.mqa"),
          "mla": t("ch05.kind.mla_absorbed"), "mla_naive": t("ch05.kind.mla_naive")}
runs = measure_decode_steps({name: (models[name[:3]], name == "mla") for name in labels}, contexts,
                            repeats=3)                       # timed now, round-robin; printed below
rows = []
for kind in ("mha", "gqa", "mqa", "mla"):
    measured = [r["cache_bytes"] for r in runs[kind]]
    formula = [kv_cache_bytes(kind, S + 1, **shape) for S in contexts]
    rows.append([t("ch05.kind." + kind, g=2), *[f"{m / 2**20:.2f} MiB" for m in measured], measured == formula,
                 f"{formula[0] / kv_cache_bytes('mha', contexts[0] + 1, **shape):.3f}"])
print(viz.format_table([t("ch05.col.kind"), *[f"S = {S}" for S in contexts],
                        f"{t('ch05.col.measured')} == {t('ch05.col.formula')}",
                        t("ch05.col.vs_mha")], rows))

# %% [markdown] tags=["lang-en"]
# And the time of one decode step (the numbers change from run to run and machine to machine, so
# this cell is not checked by the tests; the lines under the table, printed from this run's
# numbers, order the variants by time at each $S$):

# %% [markdown] tags=["lang-zh"]
# 再看一步解码的耗时（数字每次运行、每台机器都会不同，所以测试不检查这个单元格的输出；
# 表格下面的几行根据本次运行的实测数字，按耗时给出每个 $S$ 下各变体的排序）：

# %% tags=["nbval-ignore-output"]
rows = [[label, *[f"{r['ms']:.2f}" for r in runs[name]]] for name, label in labels.items()]
print(t("ch05.col.ms"))
print(viz.format_table([t("ch05.col.kind"), *[f"S = {S}" for S in contexts]], rows))
for i, S in enumerate(contexts):
    order = sorted(labels, key=lambda name: runs[name][i]["ms"])
    print(t("ch05.order", S=S, order=" < ".join(labels[name] for name in order)))

# %% [markdown] tags=["lang-en"]
# What to look for: the bytes a step reads grow with $S$, fastest for MHA and slowest for MQA
# (the first table), and MLA's naive path also rebuilds every key and value at every step. On
# a GPU, where decoding is memory-bound, the step time follows those bytes. On a CPU the order is
# blurred by everything else a step does (the projections, the copy that grows the cache) and by
# other programs sharing the cores: the lines under the table say what this run found, and a rerun
# may order close variants differently. The benchmark `benchmarks/bench_gqa.py` measures the same
# steps with more repeats.

# %% [markdown] tags=["lang-zh"]
# 要看的是：每一步读取的缓存字节数随 $S$ 增长，MHA 增长得最快，MQA 最慢（见第一张表）；
# MLA 的朴素路径每一步还要重建所有的键和值。在 GPU 上，解码受限于内存带宽，单步耗时跟着读取的字节数走。
# 在 CPU 上，这个顺序会被一步解码中的其他开销（投影计算、扩充缓存时的复制）以及同时占用 CPU 核心的其他程序打乱：
# 表格下面的几行给出本次运行的结果，重新运行时，耗时相近的变体可能换位。
# 基准测试脚本 `benchmarks/bench_gqa.py` 用更多次重复测量了同样的解码步骤。

# %% [markdown] tags=["lang-en"]
# ## 7. Pitfalls
#
# **A causal mask aligned to the wrong corner.** When $L$ new tokens arrive after $S - L$ cached
# ones, new query $i$ sits at position $S - L + i$ and may see keys $0 \dots S - L + i$. PyTorch's
# `is_causal=True` aligns the mask to the top-left corner instead (query $i$ sees keys
# $0 \dots i$), which is right only when nothing is cached. Feed a 4-token prompt, then 3 tokens
# at once, and compare with the full forward pass:

# %% [markdown] tags=["lang-zh"]
# ## 7. 常见陷阱
#
# **因果掩码对齐到了错误的角。** 当已缓存 $S - L$ 个词元、又来了 $L$ 个新词元时，第 $i$ 个新查询位于位置 $S - L + i$，
# 可以看到键 $0 \dots S - L + i$。而 PyTorch 的 `is_causal=True` 把掩码对齐到左上角（查询 $i$ 只能看到键 $0 \dots i$），
# 只有在缓存为空时才正确。先送入 4 个词元的提示词（prompt），再一次送入 3 个词元，与完整前向计算对照：

# %%
torch.manual_seed(0)
m = GroupedQueryAttention(64, 8, 2).eval()
x = torch.randn(1, 7, 64)
with torch.no_grad():
    full, _ = m(x, is_causal=True)
    cache = KVCache()
    m(x[:, :4], is_causal=True, kv_cache=cache)
    q_new = m.q_proj(x[:, 4:]).view(1, 3, 8, 8).transpose(1, 2)                  # (B, H, 3, d_h)
    k_all, v_all = cache.update(m.k_proj(x[:, 4:]).view(1, 3, 2, 8).transpose(1, 2),
                                m.v_proj(x[:, 4:]).view(1, 3, 2, 8).transpose(1, 2))
    for name, corner, kw in (("is_causal=True", t("ch05.corner.top_left"), dict(is_causal=True)),
                             ("causal_mask(3, 7, offset=4)", t("ch05.corner.end"),
                              dict(attn_mask=causal_mask(3, 7, offset=4)))):
        o = grouped_query_attention(q_new, k_all, v_all, **kw).transpose(1, 2).reshape(1, 3, 64)
        print(t("ch05.mask_equal", name=name, corner=corner, ok=torch.allclose(m.o_proj(o), full[:, 4:], atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# `GroupedQueryAttention` and `MultiHeadLatentAttention` build the bottom-right mask themselves
# when given a cache and `is_causal=True`.
#
# **`repeat` instead of `repeat_interleave`.** `k.repeat(1, G, 1, 1)` tiles the kv heads as
# 0, 1, 0, 1, … instead of 0, 0, 1, 1, …: query head $i$ then reads kv head $i \bmod n_g$, not
# $\lfloor i/G \rfloor$. No error, just a different model — and a checkpoint trained the LLaMA way
# computes garbage:

# %% [markdown] tags=["lang-zh"]
# 给定缓存并设 `is_causal=True` 时，`GroupedQueryAttention` 和 `MultiHeadLatentAttention` 会自己构造对齐到右下角的掩码。
#
# **用 `repeat` 代替 `repeat_interleave`。** `k.repeat(1, G, 1, 1)` 把键值头平铺成 0, 1, 0, 1, …，而不是 0, 0, 1, 1, …：
# 第 $i$ 个查询头读到的是第 $i \bmod n_g$ 个键值头，而不是第 $\lfloor i/G \rfloor$ 个。不会报错，只是变成了另一个模型——
# 按 LLaMA 方式训练的检查点会算出一堆无意义的结果：

# %%
torch.manual_seed(0)
q, k, v = torch.randn(1, 8, 5, 16), torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16)
ref = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
print("repeat_kv (0,0,0,0,1,1,1,1)   == enable_gqa:",
      torch.allclose(F.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4)), ref, atol=1e-6))
print("tensor.repeat (0,1,0,1,...)   == enable_gqa:",
      torch.allclose(F.scaled_dot_product_attention(q, k.repeat(1, 4, 1, 1), v.repeat(1, 4, 1, 1)), ref, atol=1e-6))

# %% [markdown] tags=["lang-en"]
# **A number of kv heads that does not divide the number of query heads** has no grouping;
# attnkit says so instead of guessing:

# %% [markdown] tags=["lang-zh"]
# **键值头数不能整除查询头数**时无法分组；attnkit 会直接报错说明，而不是去猜：

# %%
try:
    GroupedQueryAttention(64, 8, 3)
except ValueError as err:
    print(f"ValueError: {err}")

# %% [markdown] tags=["lang-en"]
# **Counting one of K and V, or forgetting the layers.** Cache sizes are quoted per token *and*
# per layer; the factor 2 (keys and values) and the number of layers are the two factors most
# often dropped. For the 32-layer model of section 2 at 32k tokens:

# %% [markdown] tags=["lang-zh"]
# **只算了键或值中的一个，或者忘了乘层数。** 缓存大小常按“每个词元、每一层”给出；因子 2（键和值）和层数是最常被漏掉的两个因子。
# 以第 2 节的 32 层模型、32k 词元为例：

# %%
one_layer_k_only = 32 * 128 * 32768 * 2
print(t("ch05.k_only", a=one_layer_k_only / 2**30,
        b=kv_cache_bytes("mha", 32768, num_heads=32, head_dim=128, num_layers=32, dtype=torch.bfloat16) / 2**30))

# %% [markdown] tags=["lang-en"]
# ## 8. Exercises
#
# **Exercise 1.** Write `repeat_kv`: from `(B, n_g, S, d)` return `(B, n_g * n_rep, S, d)` where
# head `i` of the result is kv head `i // n_rep`.

# %% [markdown] tags=["lang-zh"]
# ## 8. 练习
#
# **练习 1**：实现 `repeat_kv`：输入形状 `(B, n_g, S, d)`，返回 `(B, n_g * n_rep, S, d)`，
# 结果中的第 `i` 个头是第 `i // n_rep` 个键值头。

# %%
from attnkit.exercises.ch05 import check_decode_step, check_kv_cache_bytes, check_repeat_kv


def your_repeat_kv(x, n_rep):
    # your code here
    raise NotImplementedError


check_repeat_kv(your_repeat_kv);

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** The size in bytes of a GQA model's KV cache:
# `your_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element)`.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：计算一个 GQA 模型的 KV 缓存占多少字节：
# `your_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element)`。

# %%
def your_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element):
    # your code here
    raise NotImplementedError


check_kv_cache_bytes(your_kv_cache_bytes);

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** One decode step with a cache. `q_new`, `k_new`, `v_new` are `(B, H, L, d)` for
# `L` new tokens; `k_cache`, `v_cache` are `(B, H, P, d)` for the `P` tokens before them (`P`
# may be 0). Append, attend with a causal mask aligned to the end, and return
# `(out, k_all, v_all)`.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：带缓存的一步解码。`q_new`、`k_new`、`v_new` 的形状是 `(B, H, L, d)`，对应 `L` 个新词元；
# `k_cache`、`v_cache` 的形状是 `(B, H, P, d)`，对应它们之前的 `P` 个词元（`P` 可以为 0）。
# 先追加到缓存，再用对齐到末尾的因果掩码做注意力，返回 `(out, k_all, v_all)`。

# %%
def your_decode_step(q_new, k_new, v_new, k_cache, v_cache):
    # your code here
    raise NotImplementedError


check_decode_step(your_decode_step);

# %% [markdown] tags=["lang-en"]
# ## 9. Summary
#
# - Decoding reuses every earlier token's keys and values: the **KV cache**. Cached decoding must
#   equal the full causal forward, which needs a causal mask aligned to the *end* of the keys.
# - A decode step does about 1 FLOP per byte of MHA cache it reads in bfloat16: it is
#   memory-bound, so cache bytes set the speed and the batch size.
# - **MHA → GQA → MQA**: $n_h$ query heads share $n_g$ kv heads (query head $i$ reads kv head
#   $\lfloor i/G \rfloor$); cache $2 n_g d_h$ numbers per token and layer. GQA with $n_g = n_h$ is MHA.
# - **MLA** caches a latent and one rotary key, $d_c + d_h^R$ numbers, and keeps per-head keys and
#   values through up-projections that can be absorbed into the query and the output. RoPE sits on
#   a separate key, because rotation between query and latent would block the absorption.
#
# **Next:** chapter 06 — RoPE and other positional encodings.
#
# ## References
# - N. Shazeer, *Fast Transformer Decoding: One Write-Head is All You Need*, 2019 (arXiv 1911.02150) — §2–3 (MQA, incremental decoding and its memory bandwidth).
# - J. Ainslie et al., *GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints*, EMNLP 2023 (arXiv 2305.13245) — §2.1 (uptraining by mean pooling), §2.2 (grouped-query attention).
# - DeepSeek-AI, *DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model*, 2024 (arXiv 2405.04434) — §2.1.2 eqs (9)–(13) (low-rank key-value joint compression, absorption), §2.1.3 eqs (14)–(19) (decoupled RoPE), Table 1 (KV cache per token).
# - R. Pope et al., *Efficiently Scaling Transformer Inference*, MLSys 2023 (arXiv 2211.05102) — §2–3 (the memory cost of the KV cache during decoding).
# - Hugging Face Transformers, `modeling_llama.py` (`repeat_kv`); PyTorch documentation, `scaled_dot_product_attention` (`enable_gqa`).

# %% [markdown] tags=["lang-zh"]
# ## 9. 小结
#
# - 解码时要反复用到之前每个词元的键和值：这就是 **KV 缓存**。用缓存解码必须等于完整的因果前向计算，
#   为此因果掩码要对齐到键的*末尾*。
# - 在 bfloat16 下，MHA 每读 1 字节缓存只做约 1 次浮点运算：解码受限于内存带宽，缓存字节数决定了速度和批次大小。
# - **MHA → GQA → MQA**：$n_h$ 个查询头共享 $n_g$ 个键值头（第 $i$ 个查询头读取第 $\lfloor i/G \rfloor$ 个键值头）；
#   每个词元、每层缓存 $2 n_g d_h$ 个数。$n_g = n_h$ 的 GQA 就是 MHA。
# - **MLA** 只缓存一个潜在向量和一个旋转键，共 $d_c + d_h^R$ 个数；各个头的键和值由上投影得到，而上投影可以吸收进查询和输出。
#   RoPE 放在单独的键上，因为查询和潜在向量之间的旋转会阻碍吸收。
#
# **下一章**：第 6 章——RoPE 及其他位置编码。
#
# ## 参考文献
# - N. Shazeer，*Fast Transformer Decoding: One Write-Head is All You Need*，2019（arXiv 1911.02150）——§2–3（MQA、增量解码及其内存带宽）。
# - J. Ainslie 等，*GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints*，EMNLP 2023（arXiv 2305.13245）——§2.1（平均池化后追加训练），§2.2（分组查询注意力）。
# - DeepSeek-AI，*DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model*，2024（arXiv 2405.04434）——§2.1.2 式 (9)–(13)（键值低秩联合压缩、吸收），§2.1.3 式 (14)–(19)（解耦 RoPE），表 1（每个词元的 KV 缓存）。
# - R. Pope 等，*Efficiently Scaling Transformer Inference*，MLSys 2023（arXiv 2211.05102）——§2–3（解码时 KV 缓存的内存开销）。
# - Hugging Face Transformers，`modeling_llama.py`（`repeat_kv`）；PyTorch 文档，`scaled_dot_product_attention`（`enable_gqa`）。
