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
#   mistake that breaks it; a tiny model that generates the same tokens with and without a cache;
# - how many sequences fit in a GPU's memory beside the weights, and how many tokens per second
#   its memory bandwidth allows at most.
#
# **You need** chapter 01 (attention and masks) and chapter 04 (multi-head attention). Section 5
# uses RoPE, which chapter 06 explains; here you only need to know that it rotates queries and
# keys by an angle that depends on their position.

# %% [markdown] tags=["lang-zh"]
# # 05 · KV 缓存、GQA、MQA 与 MLA——看得见的内存
#
# **本章内容**
# - 语言模型在生成时缓存了什么，为什么解码速度受限于内存带宽而不是算力，一个真实模型的缓存有多大；
# - 多头注意力（MHA）、分组查询注意力（GQA）和多查询注意力（MQA）其实是同一个家族，区别只在于这些查询头共享多少个键值头；
# - DeepSeek-V2 的多头潜在注意力（MLA）：键和值由一个很小的潜在向量还原出来，另有一个单独的、带旋转位置编码（RoPE）的键；再通过“吸收”技巧让各个头直接对潜在向量做注意力；
# - 如何用缓存解码并得到与完整前向计算完全相同的结果，以及会破坏这一点的掩码错误；一个小模型用缓存和不用缓存生成出完全相同的词元；
# - 在权重之外，显存里还能放下多少条序列，显存带宽最多允许每秒生成多少个词元。
#
# **预备知识**：第 1 章（注意力与掩码）和第 4 章（多头注意力）。第 5 节会用到 RoPE，第 6 章才详细讲解；这里只需知道它把查询和键旋转一个随位置而变的角度。

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch05  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.numbers import within
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
from attnkit.schematics.kvcache import decode_step_figure

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
# and attends over the whole cache. The picture shows step $t = 4$: grey is read from the cache (the
# earlier keys and values) or was handled at earlier steps (the earlier tokens); orange is computed at
# this step.

# %% [markdown] tags=["lang-zh"]
# ## 1. 解码器缓存了什么
#
# 语言模型一次写出一个词元（token）。为了生成第 $t+1$ 个词元，它把第 $t$ 个词元送进网络：在每一层，新词元的查询要对目前为止**所有**词元的键和值做注意力。在因果掩码下，后面的词元到来时，前面词元的键和值不会改变——所以没有必要重新计算。**KV 缓存**把它们保存下来：每一步，这一层只计算新词元的 $q, k, v$，把 $k$ 和 $v$ 追加到缓存末尾，再对整个缓存做注意力。下图是第 $t = 4$ 步：灰色是从缓存读取的（之前的键和值），或在之前的步骤已经处理过的（之前的词元）；橙色是这一步新算出来的。

# %% alt="ch05.alt.decode_step"
_ = decode_step_figure(4)

# %% [markdown] tags=["lang-en"]
# The result must be *exactly* what the full causal forward pass gives on the whole sequence.
# Let us check with attnkit's `GroupedQueryAttention` set up as plain multi-head attention
# (8 heads, 8 key/value heads) and a `KVCache`, feeding 10 tokens one by one:

# %% [markdown] tags=["lang-zh"]
# 结果必须与对整个序列做完整因果前向计算*完全*相同。下面用 attnkit 的 `GroupedQueryAttention`（设成普通多头注意力：8 个头、8 个键值头）和一个 `KVCache` 验证一下，把 10 个词元逐个送进去：

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
# 缓存每一步增加一个位置，键的形状是 $(B, H_{kv}, T, d_h)$，值也一样。如果没有缓存，第 $t$ 步要把前面 $t$ 个词元重新投影一遍：生成 $T$ 个词元需要 $T(T+1)/2$ 次键值投影，而不是 $T$ 次——以 1000 个词元为例：

# %%
T = 1000
print(t("ch05.projections", a=T * (T + 1) // 2, b=T, r=(T + 1) / 2))

# %% [markdown] tags=["lang-en"]
# **A block of new tokens: which keys each query sees.** A prompt is fed in one go (the
# *prefill*), and some decoders feed several new tokens at once (chunked prefill, speculative
# decoding). Then $L$ queries arrive while $S - L$ tokens are already cached: the queries are the
# *last* $L$ of $S$ positions. New query $i$ sits at position $S - L + i$ and may see keys
# $0 \dots S - L + i$. That is the causal mask of the whole $S \times S$ sequence cut to its last
# $L$ rows: aligned to the **bottom-right** corner. PyTorch's `is_causal=True` aligns the mask to
# the **top-left** corner instead (query $i$ sees keys $0 \dots i$), and attnkit's
# `scaled_dot_product_attention`, which follows PyTorch's semantics, does the same.
# `causal_mask(L, S)` builds the top-left mask, `causal_mask(L, S, offset=S - L)` the bottom-right
# one (PyTorch builds the same mask with `torch.nn.attention.bias.causal_lower_right`; a test of
# attnkit checks that they agree). For 3 new queries after 4 cached tokens, with attnkit's
# attention and with PyTorch's, compared with the last 3 rows of the full causal pass over all 7:

# %% [markdown] tags=["lang-zh"]
# **一次来一批新词元：每个查询能看到哪些键。** 提示词是一次性送入的（*预填充*，prefill），有些解码器还会一次送入好几个新词元（分块预填充、投机解码）。这时已缓存 $S - L$ 个词元，又来了 $L$ 个查询：它们是 $S$ 个位置中的*最后* $L$ 个。第 $i$ 个新查询位于位置 $S - L + i$，可以看到键 $0 \dots S - L + i$。这正是整个 $S \times S$ 序列的因果掩码的最后 $L$ 行：对齐到**右下角**。而 PyTorch 的 `is_causal=True` 把掩码对齐到**左上角**（查询 $i$ 只能看到键 $0 \dots i$），attnkit 的 `scaled_dot_product_attention` 沿用 PyTorch 的语义，也是如此。`causal_mask(L, S)` 构造左上角对齐的掩码，`causal_mask(L, S, offset=S - L)` 构造右下角对齐的掩码（PyTorch 用 `torch.nn.attention.bias.causal_lower_right` 构造同样的掩码，attnkit 的一个测试检查两者一致）。以已缓存 4 个词元、再来 3 个新查询为例，分别用 attnkit 和 PyTorch 的注意力计算，与对全部 7 个词元做完整因果计算的最后 3 行对照：

# %%
L, S = 3, 7
print(t("ch05.mask_top_left", m=causal_mask(L, S).int()))
print(t("ch05.mask_bottom_right", m=causal_mask(L, S, offset=S - L).int()))
torch.manual_seed(0)
q, k, v = torch.randn(1, 1, S, 8), torch.randn(1, 1, S, 8), torch.randn(1, 1, S, 8)   # (B, H, S, d)
last_rows = F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, :, S - L:]      # (B, H, L, d)
q_new = q[:, :, S - L:]                                                                # the 3 new queries
torch_top_left = F.scaled_dot_product_attention(q_new, k, v, is_causal=True)
print(t("ch05.attnkit_like_torch",
        ok=torch.allclose(plain_attention(q_new, k, v, is_causal=True), torch_top_left, atol=1e-6)))
bottom_right = causal_mask(L, S, offset=S - L)
for name, out in (("SDPA, is_causal=True", torch_top_left),
                  ("attnkit, causal_mask(3, 7, offset=4)", plain_attention(q_new, k, v, attn_mask=bottom_right)),
                  ("SDPA, causal_mask(3, 7, offset=4)", F.scaled_dot_product_attention(q_new, k, v, attn_mask=bottom_right))):
    print(t("ch05.block_equal", name=name, ok=torch.allclose(out, last_rows, atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# Only the bottom-right mask reproduces the full pass. With a single new token ($L = 1$) its one
# row allows every key, so one-token decoding needs no mask at all; a block of new tokens needs
# it. `GroupedQueryAttention` and `MultiHeadLatentAttention` build it themselves when given a
# cache and `is_causal=True`; section 8 shows the mistake on a real layer. The two alignments, side
# by side (row $i$ is new query $i$, filled squares are the keys it may see):

# %% [markdown] tags=["lang-zh"]
# 只有右下角对齐的掩码能复现完整计算的结果。只来 1 个新词元（$L = 1$）时，掩码只有一行，而且所有键都可见，所以逐个词元解码根本不需要掩码；一次来一批新词元时就必须用它。给定缓存并设 `is_causal=True` 时，`GroupedQueryAttention` 和 `MultiHeadLatentAttention` 会自己构造这个掩码；第 8 节在一个真实的层上演示这个错误。下图把两种对齐方式并排画出（第 $i$ 行是第 $i$ 个新查询，实心方格是它能看到的键）：

# %% alt="ch05.alt.causal_alignment"
from attnkit.schematics.kvcache import causal_alignment_figure, gqa_heads_figure, mla_flow_figure

_ = causal_alignment_figure(L=3, S=7)

# %% [markdown] tags=["lang-en"]
# ## 2. Why decoding is memory-bound
#
# At a decode step, one query per head meets $S$ cached positions. Per layer, with $n_h$ query
# heads, $n_g$ key/value heads of size $d_h$ ($n_g = n_h$ in chapter 04's multi-head attention;
# section 3 shows how several query heads can share one key/value head, so that $n_g < n_h$):
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
# 解码的每一步，每个头只有一个查询，要面对 $S$ 个已缓存的位置。设每层有 $n_h$ 个查询头、$n_g$ 个键值头，头维度为 $d_h$（第 4 章的多头注意力里 $n_g = n_h$；第 3 节会讲几个查询头怎样共享一个键值头，从而 $n_g < n_h$）：
#
# - 计算量：$q\cdot k$ 加上对值的加权求和，每个头、每个位置的浮点运算次数（FLOPs）为 $2 d_h + 2 d_h$，合计 $4 n_h d_h S$；
# - 访存量：整个缓存都要读一遍，共 $2 n_g d_h S$ 个数。
#
# 所以每读 1 字节只能喂给 $\frac{4 n_h d_h S}{2 n_g d_h S \cdot \text{字节数}} = \frac{2 n_h}{n_g\cdot\text{字节数}}$
# 次浮点运算。对 bfloat16 下的 MHA（$n_g = n_h$，每个数 2 字节），这个比值只有**每字节 1 次**。而加速器从内存读 1 字节的时间里能做几百次浮点运算，所以解码时运算单元大部分时间都在等缓存从内存里流进来：一步解码的耗时基本等于*读完缓存*（和权重）的时间。共享键值头能把这个比值提高 $n_h/n_g$ 倍。以 32 个头的模型为例：

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
# sequences fit in memory at once.
#
# **The size of the cache.** For each of the $n_\ell$ layers, each of the $B$ sequences and each
# of their $S$ tokens, the cache holds a key and a value vector of $d_h$ numbers for each of the
# $n_g$ kv heads, at $b$ bytes per number:
#
# $$\text{cache bytes} = 2 \cdot n_\ell \cdot n_g \cdot d_h \cdot S \cdot B \cdot b ,$$
#
# with $n_g = n_h$ for MHA and $n_g = 1$ for MQA. MLA (section 5) caches $d_c + d_h^R$ numbers per
# token and layer instead of $2 n_g d_h$: $n_\ell (d_c + d_h^R) S B b$. Here is the formula for a
# 32-layer model 4096 wide (32 heads of 128) at a 32k-token context in bfloat16, batch 1 (MLA with
# DeepSeek-V2's proportions, $d_c = 512$, $d_h^R = 64$):

# %% [markdown] tags=["lang-zh"]
# 即使是 MQA 的每字节 32 次，也远低于 H100 规格表给出的约 295 次，所以解码仍然受限于内存带宽，缓存的大小决定了速度；它也决定了显存里能同时放下多少条序列。
#
# **缓存的大小。** 对 $n_\ell$ 层中的每一层、批次中 $B$ 条序列的每一条、每条序列的 $S$ 个词元，缓存都要为 $n_g$ 个键值头各存一个键向量和一个值向量。每个向量有 $d_h$ 个数，每个数占 $b$ 字节：
#
# $$\text{缓存字节数} = 2 \cdot n_\ell \cdot n_g \cdot d_h \cdot S \cdot B \cdot b ,$$
#
# 其中 MHA 的 $n_g = n_h$，MQA 的 $n_g = 1$。MLA（第 5 节）每个词元、每层缓存的是 $d_c + d_h^R$ 个数，而不是 $2 n_g d_h$ 个；总共 $n_\ell (d_c + d_h^R) S B b$ 字节。下面用这个公式计算一个模型的缓存大小：32 层、宽度 4096（32 个 128 维的头），32k 词元上下文，bfloat16，批次大小为 1。MLA 采用 DeepSeek-V2 的比例，$d_c = 512$，$d_h^R = 64$：

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
# (section 5).

# %% [markdown] tags=["lang-zh"]
# 多头注意力为一条 32k 词元的序列就要 16 GiB——比一个 70 亿参数模型在 bfloat16 下的全部权重（13.0 GiB）还多。8 个键值组把它降到 4 GiB，只用 1 个键值头降到 0.5 GiB，而 MLA 降到 1.125 GiB，同时 32 个查询头仍然各自拥有自己的键和值（第 5 节）。

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
# 保留 $n_h$ 个查询头，但键和值只用 $n_g$ 个头（$n_g$ 整除 $n_h$）。每 $G = n_h / n_g$ 个相邻的查询头组成一组，共享一个键值头：**第 $i$ 个查询头读取第 $\lfloor i / G \rfloor$ 个键值头**。Ainslie 等（2023）并没有规定顺序，只要求同一组的头共享一个键值头；$\lfloor i / G \rfloor$ 是 Hugging Face 的 LLaMA（`repeat_kv`）和 PyTorch 的 `enable_gqa` 采用的约定，按这种方式训练的检查点也都依赖它。注意 G 有两种含义：这里（与上述代码一样）$G$ 指每组的*大小*，即每个键值头对应几个查询头；论文里的 GQA-G 指的却是组的*个数* $n_g$。所以本章表格中的 GQA-2 有 $n_g = 2$ 个键值头，$G = 4$。$n_g = n_h$ 就是 MHA，$n_g = 1$ 就是 MQA(Shazeer, 2019)，介于两者之间的就是 GQA。只有键和值的投影变小了（从 $d \times n_h d_h$ 变成 $d \times n_g d_h$），缓存也随之变小。
#
# 从零实现时，最简单的办法是把每个键值头*重复* $G$ 次（Hugging Face 的 LLaMA 用 `repeat_kv` 就是这么做的），然后做普通的注意力。传入 `enable_gqa=True` 时，PyTorch 的 SDPA 直接接受这 $n_g$ 个键值头（它作为参考实现的数学路径同样是先重复；CUDA 上的 FlashAttention 算子则直接读取各个键值头，不做复制）：

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
# The first line is the map in numbers: with 8 query heads and 2 kv heads ($G = 4$), heads 0-3 read
# kv head 0 and heads 4-7 read kv head 1. In a picture:

# %% [markdown] tags=["lang-zh"]
# 第一行用数字给出了这个对应关系：8 个查询头、2 个键值头（$G = 4$）时，第 0–3 个查询头读第 0 个键值头，第 4–7 个读第 1 个。画成图就是：

# %% alt="ch05.alt.gqa_heads"
_ = gqa_heads_figure(num_heads=8, num_kv_heads=2)

# %% [markdown] tags=["lang-en"]
# `attnkit.gqa.GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)` is the layer, with
# LLaMA's projection names (`q_proj`, `k_proj`, `v_proj`, `o_proj`). Same width, same number of
# query heads; the three members of the family differ in their parameters and cache:

# %% [markdown] tags=["lang-zh"]
# `attnkit.gqa.GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)` 就是这样一层，投影的命名沿用 LLaMA（`q_proj`、`k_proj`、`v_proj`、`o_proj`）。宽度相同、查询头数相同，这个家族的三个成员只在参数量和缓存上不同：

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
# Decoding with the cache works the same for every member of the family (how an MHA checkpoint
# is turned into a GQA one is in appendix A at the end of the chapter):

# %% [markdown] tags=["lang-zh"]
# 用缓存解码对这个家族的每个成员都一样成立（如何把 MHA 检查点转换成 GQA，见本章末尾的附录 A）：

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
# ## 4. End to end: a tiny model generates with and without the cache
#
# One layer is not a language model. `attnkit.gqa.TinyDecoder` is a small one: a token embedding
# plus a learned position embedding, two decoder blocks (causal `GroupedQueryAttention` with 4
# query heads and 2 kv heads, then an MLP), and an output head over a 64-token vocabulary. Its
# weights are random (seeded, **untrained**), so the tokens it writes mean nothing; what matters
# is that `greedy_generate(model, prompt, n, use_cache=...)` writes the *same* tokens both ways.
# With `use_cache=False` every step runs the whole sequence through the model; with
# `use_cache=True` the prompt runs once (the prefill) and then each step feeds only the newest
# token, over one `KVCache` per layer:

# %% [markdown] tags=["lang-zh"]
# ## 4. 端到端：一个小模型用缓存和不用缓存生成词元
#
# 单独一层还不是语言模型。`attnkit.gqa.TinyDecoder` 是一个很小的语言模型：词元嵌入加上可学习的位置嵌入，两个解码器块（因果 `GroupedQueryAttention`，4 个查询头、2 个键值头，然后是一个 MLP），最后是一个读出层，对应一个有 64 个词元的词表。它的权重是随机的（固定了种子，**没有训练过**），所以它写出的词元没有任何意义；要看的是 `greedy_generate(model, prompt, n, use_cache=...)` 两种方式写出的词元*完全相同*。`use_cache=False` 时每一步都把整个序列重新送进模型；`use_cache=True` 时提示词只算一次（预填充），之后每一步只送入最新的一个词元，每一层各用一个 `KVCache`：

# %%
from attnkit.gqa import TinyDecoder, greedy_generate

torch.manual_seed(0)
model = TinyDecoder(vocab_size=64, embed_dim=64, num_heads=4, num_kv_heads=2, num_layers=2).eval()
prompt = torch.tensor([[5, 17, 42, 8, 23, 4]])                       # (B, P): a 6-token prompt
cached = greedy_generate(model, prompt, 20)                          # use_cache=True
recomputed = greedy_generate(model, prompt, 20, use_cache=False)
print(t("ch05.gen_tokens", v=cached[0, 6:].tolist()))
print(t("ch05.gen_same", ok=torch.equal(cached, recomputed)))

# %% [markdown] tags=["lang-en"]
# **The position offset.** The model adds a position embedding to each token, so a token fed on
# its own must be told *where* it is: when the caches hold $t$ tokens, the new token is at
# position $t$, not 0. `TinyDecoder` takes the offset from the cache (`model.positions(1,
# caches)`); the RoPE models of chapter 06 rotate by the same offset. Feed the prompt, then three
# tokens one by one, and then the next token once more with the offset forgotten:

# %% [markdown] tags=["lang-zh"]
# **位置偏移。** 模型给每个词元加上位置嵌入，所以单独送入的词元必须知道自己*在哪里*：缓存中已有 $t$ 个词元时，新词元的位置是 $t$，而不是 0。`TinyDecoder` 从缓存中取得这个偏移（`model.positions(1, caches)`）；第 6 章的 RoPE 模型也按同样的偏移做旋转。先送入提示词，再逐个送入 3 个词元，最后把下一个词元再送一次，但忘掉偏移：

# %%
caches = model.new_cache()
with torch.no_grad():
    model(prompt, caches)                                            # prefill: positions 0 .. 5
    for i in range(6, 9):                                            # then one token at a time
        print(t("ch05.gen_position", n=caches[0].seq_len, pos=model.positions(1, caches).tolist()))
        model(cached[:, i:i + 1], caches)
    full = model(cached[:, :10])[:, -1]                              # token 9, whole sequence at once
    right = model(cached[:, 9:10], caches)[:, -1]                    # position 9, from the cache
    for c in caches:
        c.crop(9)                                                    # undo that step
    wrong = model(cached[:, 9:10], caches, positions=torch.tensor([0]))[:, -1]
print(t("ch05.gen_offset", right=torch.allclose(right, full, atol=1e-5), wrong=torch.allclose(wrong, full, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **A new prompt needs an empty cache.** The caches still hold the first sequence. Generating
# from a second prompt on top of them continues the first sequence instead of starting a new
# one; `crop(0)` on every layer's cache (or `model.new_cache()`) starts afresh:

# %% [markdown] tags=["lang-zh"]
# **新的提示词需要空的缓存。** 缓存里还留着第一条序列。在它上面接着用第二个提示词生成，等于在续写第一条序列，而不是开始一条新序列；对每一层的缓存调用 `crop(0)`（或者用 `model.new_cache()`）才会重新开始：

# %%
second = torch.tensor([[30, 31, 9, 2]])
alone = greedy_generate(model, second, 8, use_cache=False)
stale = greedy_generate(model, second, 8, caches=caches)             # the caches still hold the first sequence
for c in caches:
    c.crop(0)                                                        # reset
fresh = greedy_generate(model, second, 8, caches=caches)
print(t("ch05.gen_stale", ok=torch.equal(stale, alone)))
print(t("ch05.gen_reset", ok=torch.equal(fresh, alone)))

# %% [markdown] tags=["lang-en"]
# How fast? Both ways generate 64 tokens after the prompt here, timed in turn on one thread
# (median of 3). Without the cache, step $t$ runs all $t$ tokens through both layers again; with
# it, one. At this toy size each call of the model costs mostly a fixed overhead, so the lines
# printed under the timing say what this run measured, on this machine:

# %% [markdown] tags=["lang-zh"]
# 有多快？这里两种方式都在提示词之后生成 64 个词元，在单个线程上轮流计时（取 3 次的中位数）。不用缓存时，第 $t$ 步要把全部 $t$ 个词元重新送过两层；用缓存时只送 1 个。在这么小的模型上，每次调用模型的耗时大部分是固定开销，所以计时下面打印的几行只说明本次运行在这台机器上测到了什么：

# %% tags=["nbval-ignore-output"]
from attnkit.timing import one_thread, round_robin_medians

n_new = 64
with one_thread():
    sec = round_robin_medians({"cache": lambda: greedy_generate(model, prompt, n_new),
                               "no_cache": lambda: greedy_generate(model, prompt, n_new, use_cache=False)},
                              repeats=3)
tps = {k: n_new / v for k, v in sec.items()}
print(t("ch05.gen_speed", a=tps["cache"], b=tps["no_cache"]))
print(t("ch05.gen_faster" if tps["cache"] > tps["no_cache"] else "ch05.gen_slower",
        r=max(tps.values()) / min(tps.values())))

# %% [markdown] tags=["lang-en"]
# ## 5. MLA: compress the keys and values into a latent
#
# *An advanced section.* MLA follows its paper closely and uses RoPE, the rotary position encoding
# of chapter 06: read chapter 06 first, or skim this section now and come back after it. The rest
# of this chapter needs only one fact from here: MLA caches $d_c + d_h^R$ numbers per token and layer.
#
# GQA saves memory by giving several query heads the *same* keys and values. DeepSeek-V2's
# multi-head latent attention (DeepSeek-AI 2024, §2.1) keeps a different key and value per head
# but makes them all linear functions of one small vector per token, the latent $c^{KV}_t$ of
# dimension $d_c \ll n_h d_h$. Only the latent is cached (eqs 9–11):
#
# $$c_t^{KV} = W^{DKV} h_t,\qquad k_t^C = W^{UK} c_t^{KV},\qquad v_t^C = W^{UV} c_t^{KV}.$$
#
# The superscripts say what each matrix does. **D** is a *down*-projection, from the model width
# $d$ down to the latent ($W^{DKV}$: $d \to d_c$; $W^{DQ}$: $d \to d_c'$ for the queries). **U** is
# an *up*-projection, from a latent up to all the heads ($W^{UK}$, $W^{UV}$ from $c^{KV}$; $W^{UQ}$
# from $c^Q$). **R** marks the small *RoPE* part that is rotated by position ($W^{KR}$, $W^{QR}$,
# below), and **C** the *compressed* part rebuilt from the latent ($k^C$, $v^C$, $q^C$). attnkit's
# `MultiHeadLatentAttention` uses the argument names of DeepSeek's released code; here they are
# beside the paper's symbols, with the sizes of this chapter's small layer and of DeepSeek-V2
# (§3.1.2), and then each weight with its shape (a `Linear` stores $W \in \mathbb{R}^{\text{out} \times \text{in}}$ as the paper writes it):

# %% [markdown] tags=["lang-zh"]
# ## 5. MLA：把键和值压缩进一个潜在向量
#
# *这是进阶内容。* 这一节基本按论文的写法讲 MLA，而且要用到第 6 章的旋转位置编码 RoPE：可以先读第 6 章，也可以现在先浏览一遍，读完第 6 章再回来。本章后面只用到这里的一个结论：MLA 每个词元、每层缓存 $d_c + d_h^R$ 个数。
#
# GQA 省内存的办法是让几个查询头使用*相同*的键和值。DeepSeek-V2 的多头潜在注意力（MLA，DeepSeek-AI 2024，§2.1）则让每个头仍有各自不同的键和值，但它们都是同一个很小的向量的线性函数。这个向量就是每个词元的潜在向量 $c^{KV}_t$，维度 $d_c \ll n_h d_h$。缓存中只保存这个潜在向量（式 9–11）：
#
# $$c_t^{KV} = W^{DKV} h_t,\qquad k_t^C = W^{UK} c_t^{KV},\qquad v_t^C = W^{UV} c_t^{KV}.$$
#
# 上标说明了每个矩阵的作用。**D** 是*下投影*（down-projection），把模型宽度 $d$ 压到潜在向量的维度（$W^{DKV}$：$d \to d_c$；查询用的 $W^{DQ}$：$d \to d_c'$）。**U** 是*上投影*（up-projection），从潜在向量还原到所有的头（$W^{UK}$、$W^{UV}$ 从 $c^{KV}$ 出发，$W^{UQ}$ 从 $c^Q$ 出发）。**R** 表示按位置旋转的那一小部分 *RoPE* 分量（$W^{KR}$、$W^{QR}$，见下文）；**C** 表示由潜在向量还原出来的*压缩*部分（$k^C$、$v^C$、$q^C$）。attnkit 的 `MultiHeadLatentAttention` 沿用 DeepSeek 开源代码中的参数名；下表把它们与论文的符号对应起来，并列出本章小模型和 DeepSeek-V2（§3.1.2）的取值；再下一张表列出每个权重及其形状（`Linear` 存储的 $W \in \mathbb{R}^{\text{输出} \times \text{输入}}$ 与论文的写法一致）：

# %%
torch.manual_seed(0)
mla = MultiHeadLatentAttention(embed_dim=64, num_heads=4, kv_lora_rank=16, qk_nope_head_dim=16,
                               qk_rope_head_dim=8, v_head_dim=16, q_lora_rank=32).eval()
deepseek_v2 = dict(embed_dim=5120, num_heads=128, kv_lora_rank=512, q_lora_rank=1536,
                   qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)       # §3.1.2
sizes = [("embed_dim", "d"), ("num_heads", "n_h"), ("kv_lora_rank", "d_c"), ("q_lora_rank", "d_c'"),
         ("qk_nope_head_dim", "d_h"), ("qk_rope_head_dim", "d_h^R"), ("v_head_dim", "d_h (v)")]
print(viz.format_table([t("ch05.col.code"), t("ch05.col.paper"), t("ch05.col.meaning"), t("ch05.col.here"), "DeepSeek-V2"],
                       [[name, sym, t("ch05.mla." + name), getattr(mla, name), deepseek_v2[name]] for name, sym in sizes]))
weights = [("w_dkv", "W^DKV"), ("w_uk", "W^UK"), ("w_uv", "W^UV"), ("w_kr", "W^KR"),
           ("w_dq", "W^DQ"), ("w_uq", "W^UQ"), ("w_qr", "W^QR"), ("w_o", "W^O")]
print(viz.format_table([t("ch05.col.code"), t("ch05.col.paper"), t("ch05.col.meaning"), t("ch05.col.shape")],
                       [[name, sym, t("ch05.mla." + name), str(tuple(getattr(mla, name).weight.shape))]
                        for name, sym in weights]))

# %% [markdown] tags=["lang-en"]
# The keys and values of one token, as a data flow: the cache holds only the orange boxes, and each
# head's key and value are rebuilt from them.

# %% [markdown] tags=["lang-zh"]
# 一个词元的键和值，画成数据流就是下图：缓存里只有橙色的两格，每个头的键和值都由它们还原出来。

# %% alt="ch05.alt.mla_flow"
_ = mla_flow_figure()

# %% [markdown] tags=["lang-en"]
# DeepSeek-V2 gives values the same head size as the keys' compressed part ($d_h$); the code
# names it separately (`v_head_dim`), and both are 16 here. The keys' compressed part
# (`qk_nope_head_dim`, "no positional embedding") is the part without RoPE.
#
# **Absorption.** For head $i$ the score is $q_{t,i}^\top k_{j,i}^C = q_{t,i}^\top W^{UK}_i c_j^{KV} = (W^{UK\top}_i q_{t,i})^\top c_j^{KV}$:
# absorb $W^{UK}_i$ into the query and every head attends directly over the cached latents, which
# are then shared by all heads like MQA's single kv head. Likewise
# $\sum_j w_j W^{UV}_i c_j = W^{UV}_i \sum_j w_j c_j$: apply $W^{UV}_i$ *after* the attention.

# %% [markdown] tags=["lang-zh"]
# DeepSeek-V2 让值的头维度与键的压缩部分相同（都是 $d_h$）；代码里单独用 `v_head_dim` 表示，这里两者都是 16。键的压缩部分（`qk_nope_head_dim`，nope 即“没有位置编码”）就是不带 RoPE 的那一部分。
#
# **吸收。** 第 $i$ 个头的分数是 $q_{t,i}^\top k_{j,i}^C = q_{t,i}^\top W^{UK}_i c_j^{KV} = (W^{UK\top}_i q_{t,i})^\top c_j^{KV}$。把 $W^{UK}_i$ 吸收进查询，每个头就能直接对缓存的潜在向量做注意力。这些潜在向量被所有头共享，就像 MQA 唯一的那个键值头。同样，$\sum_j w_j W^{UV}_i c_j = W^{UV}_i \sum_j w_j c_j$：在注意力*之后*再乘 $W^{UV}_i$。

# %% [markdown] tags=["lang-en"]
# **Why RoPE needs its own key.** First, three facts about 2-D rotations. The matrix
# $R(\alpha) = \begin{pmatrix}\cos\alpha & -\sin\alpha\\ \sin\alpha & \cos\alpha\end{pmatrix}$ turns a
# vector by the angle $\alpha$. Turning by $\alpha$ and then by $\beta$ turns by $\alpha + \beta$:
# $R(\beta)R(\alpha) = R(\alpha + \beta)$. And turning back is the transpose: $R(\alpha)^\top = R(-\alpha)$.
# RoPE (chapter 06) turns the query and the key at position $m$ by $R_m = R(m\theta)$ (one angle per
# pair of channels), so a query at $i$ and a key at $j$ meet through
# $R_i^\top R_j = R(-i\theta)R(j\theta) = R_{j-i}$: the score depends only on the distance.
#
# Now put RoPE on the key rebuilt from the latent: $q^\top R_i^\top R_j W^{UK} c_j = q^\top R_{j-i} W^{UK} c_j$.
# The matrix between the query and the latent depends on the distance $j - i$, so no single
# matrix can be absorbed into the query.
# MLA therefore adds a small **decoupled** rotary part (eqs 14–17): each head gets a rotary query
# $q_{t,i}^R$, and a single rotary key $k_t^R = \mathrm{RoPE}(W^{KR} h_t)$ of size $d_h^R$ is
# shared by all heads and cached next to the latent. Queries may also be compressed through a
# latent $c^Q_t$ of dimension $d_c'$ (eqs 12–13), and the scores are scaled by $1/\sqrt{d_h + d_h^R}$ (eq 18):
#
# $$q_{t,i} = [q_{t,i}^C; q_{t,i}^R],\quad k_{j,i} = [k_{j,i}^C; k_j^R],\quad
#   o_{t,i} = \sum_j \mathrm{softmax}_j\Big(\tfrac{q_{t,i}^\top k_{j,i}}{\sqrt{d_h + d_h^R}}\Big) v_{j,i}^C .$$
#
# Cache per token and layer: $d_c + d_h^R$ numbers, against $2 n_h d_h$ for MHA. The three rotation
# facts, checked on random angles:

# %% [markdown] tags=["lang-zh"]
# **为什么 RoPE 需要单独的键。** 先看二维旋转的三个事实。矩阵
# $R(\alpha) = \begin{pmatrix}\cos\alpha & -\sin\alpha\\ \sin\alpha & \cos\alpha\end{pmatrix}$ 把一个向量转过角度 $\alpha$。先转 $\alpha$ 再转 $\beta$，等于一共转 $\alpha + \beta$：$R(\beta)R(\alpha) = R(\alpha + \beta)$。转回去就是取转置：$R(\alpha)^\top = R(-\alpha)$。RoPE（第 6 章）把位置 $m$ 上的查询和键都转过 $R_m = R(m\theta)$（每一对通道各有一个角度）。所以位置 $i$ 的查询和位置 $j$ 的键之间隔着 $R_i^\top R_j = R(-i\theta)R(j\theta) = R_{j-i}$：分数只取决于两者的距离。
#
# 现在把 RoPE 加在由潜在向量还原出的键上：$q^\top R_i^\top R_j W^{UK} c_j = q^\top R_{j-i} W^{UK} c_j$。查询和潜在向量之间的矩阵依赖于距离 $j - i$，不存在一个固定的矩阵可以吸收进查询。所以 MLA 另外加了一小部分**解耦**的旋转分量（式 14–17）。每个头有一个旋转查询 $q_{t,i}^R$，而旋转键 $k_t^R = \mathrm{RoPE}(W^{KR} h_t)$（维度 $d_h^R$）只有一个；它被所有头共享，和潜在向量一起缓存。查询也可以先压缩成维度为 $d_c'$ 的潜在向量 $c^Q_t$（式 12–13）；分数除以 $\sqrt{d_h + d_h^R}$（式 18）：
#
# $$q_{t,i} = [q_{t,i}^C; q_{t,i}^R],\quad k_{j,i} = [k_{j,i}^C; k_j^R],\quad
#   o_{t,i} = \sum_j \mathrm{softmax}_j\Big(\tfrac{q_{t,i}^\top k_{j,i}}{\sqrt{d_h + d_h^R}}\Big) v_{j,i}^C .$$
#
# 每个词元、每层的缓存：$d_c + d_h^R$ 个数，而 MHA 是 $2 n_h d_h$ 个。用随机角度验证上面三个旋转的事实：

# %%
def rotation(angle):                                          # R(angle), 2 x 2
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


torch.manual_seed(0)
a, b, theta = torch.rand(3, dtype=torch.float64).tolist()
i_pos, j_pos = 3, 7
print(t("ch05.rot_compose", ok=torch.allclose(rotation(b) @ rotation(a), rotation(a + b))))
print(t("ch05.rot_transpose", ok=torch.allclose(rotation(a).T, rotation(-a))))
print(t("ch05.rot_relative", i=i_pos, j=j_pos, d=j_pos - i_pos,
        ok=torch.allclose(rotation(i_pos * theta).T @ rotation(j_pos * theta), rotation((j_pos - i_pos) * theta))))

# %% [markdown] tags=["lang-en"]
# First the obstacle, measured. Put RoPE on the key rebuilt from the latent and try to absorb
# $W^{UK}$ into the (rotated) query: the absorbed scores miss the key's rotation and differ from
# the true ones, except for the key at position 0, whose rotation is the identity:

# %% [markdown] tags=["lang-zh"]
# 先实际看一下这个障碍。把 RoPE 加在由潜在向量还原出的键上，再试着把 $W^{UK}$ 吸收进（已旋转的）查询：吸收后的分数缺少键的旋转，与真实分数不同——只有位置 0 上的键例外，因为它的旋转是恒等变换：

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
# Now attnkit's `MultiHeadLatentAttention`, the small layer of the tables above. It has two inference paths over the
# same cache: `absorb=False` rebuilds every head's keys and values from the cached latents
# (eqs 10–11, 17), `absorb=True` absorbs $W^{UK}$ into the query and applies $W^{UV}$ after the attention.
# They agree, also when decoding with the cache, and the cache holds exactly $d_c + d_h^R$
# numbers per token:

# %% [markdown] tags=["lang-zh"]
# 下面是 attnkit 的 `MultiHeadLatentAttention`，也就是上面表格里的那个小层。它在同一个缓存上有两条推理路径：`absorb=False` 从缓存的潜在向量还原出每个头的键和值（式 10–11、17），`absorb=True` 把 $W^{UK}$ 吸收进查询、在注意力之后再乘 $W^{UV}$。两条路径结果一致，用缓存解码时也一致，而且缓存中每个词元恰好保存 $d_c + d_h^R$ 个数：

# %%
torch.manual_seed(0)
x = torch.randn(2, 7, 64)                                    # mla: the small layer of the tables above
with torch.no_grad():
    naive = mla(x, is_causal=True)
    absorbed = mla(x, is_causal=True, absorb=True)
    print(t("ch05.naive_vs_absorbed", bound=within(naive, absorbed, 1e-5)))
    for absorb in (False, True):
        cache = KVCache()
        outs = [mla(x[:, :3], is_causal=True, kv_cache=cache, absorb=absorb)]
        outs += [mla(x[:, i:i + 1], is_causal=True, kv_cache=cache, absorb=absorb) for i in range(3, 7)]
        print(t("ch05.row_cached_eq_full", label=f"absorb={absorb}", ok=torch.allclose(torch.cat(outs, 1), naive, atol=1e-5)))
per_token = kv_cache_bytes_per_token("mla", kv_lora_rank=16, qk_rope_head_dim=8, dtype=torch.float32)
print(t("ch05.mla_cache", shape=tuple(cache.tensors[0].shape), dc=16, dr=8))
print(t("ch05.mla_bytes", m=cache.nbytes, f=per_token, tot=per_token * 14))

# %% [markdown] tags=["lang-en"]
# **Every tensor of one decode step, with its shape.** One new token for each of 2 sequences
# after 6 cached ones ($B = 2$, $L = 1$, $S = 7$), through the small layer, path by path. The
# cell runs the layer's own projections; RoPE turns $q^R$ and $k^R$ without changing their shape,
# so it is left out here. The naive path rebuilds $n_h$ keys and values of every cached token;
# the absorbed path never does: its largest tensors are the cache itself and a query of the
# latent's size per head.

# %% [markdown] tags=["lang-zh"]
# **一步解码中的每个张量及其形状。** 2 条序列各已缓存 6 个词元，再各来 1 个新词元（$B = 2$，$L = 1$，$S = 7$），按路径逐个列出经过这个小层的张量。这个单元格调用的是这一层自己的投影；RoPE 只旋转 $q^R$ 和 $k^R$，不改变形状，所以这里省略了。朴素路径要为每个缓存的词元还原出 $n_h$ 个键和值；吸收路径从不这样做：它最大的张量就是缓存本身，以及每个头一个与潜在向量同样大小的查询。

# %%
B, H, dn, dr, dv, dc = 2, mla.num_heads, mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim, mla.kv_lora_rank
with torch.no_grad():
    cache = KVCache()
    mla(x[:, :6], is_causal=True, kv_cache=cache)                      # 6 cached tokens
    h = x[:, 6:7]                                                      # (B, 1, d): the new token
    c_q = mla.q_norm(mla.w_dq(h))                                      # eq 12
    q_c = mla.w_uq(c_q).view(B, 1, H, dn).transpose(1, 2)              # eq 13
    q_r = mla.w_qr(c_q).view(B, 1, H, dr).transpose(1, 2)              # eq 14 (before RoPE)
    row = torch.cat([mla.kv_norm(mla.w_dkv(h)), mla.w_kr(h)], dim=-1)  # eqs 9, 15: what is cached
    (kv,) = cache.update(row)                                          # (B, S, d_c + d_h^R)
    c_kv, k_r = kv[..., :dc], kv[..., dc:]
    k_c = mla.w_uk(c_kv).view(B, 7, H, dn).transpose(1, 2)             # naive: eq 10
    v_c = mla.w_uv(c_kv).view(B, 7, H, dv).transpose(1, 2)             # naive: eq 11
    q_naive, k_naive = torch.cat([q_c, q_r], -1), torch.cat([k_c, k_r[:, None].expand(B, H, 7, dr)], -1)
    q_lat = torch.einsum("bhld,hdc->bhlc", q_c, mla.w_uk.weight.view(H, dn, dc))   # absorbed: W^UK in q
    o_naive = grouped_query_attention(q_naive, k_naive, v_c, scale=mla.scale)        # eq 18
    q_abs = torch.cat([q_lat, q_r], -1)
    o_lat = grouped_query_attention(q_abs, kv[:, None], kv[:, None], scale=mla.scale)[..., :dc]
    o_abs = torch.einsum("bhlc,hvc->bhlv", o_lat, mla.w_uv.weight.view(H, dv, dc))  # W^UV after
    u = mla.w_o(o_abs.transpose(1, 2).reshape(B, 1, H * dv))                      # eq 19
rows = [("both", "h_t", h), ("both", "c_t^Q", c_q), ("both", "q_t^C", q_c), ("both", "q_t^R", q_r),
        ("both", "[c^KV; k^R]", kv), ("naive", "k^C", k_c), ("naive", "v^C", v_c),
        ("naive", "q = [q^C; q^R]", q_naive), ("naive", "k = [k^C; k^R]", k_naive), ("naive", "o", o_naive),
        ("absorbed", "W^UK^T q^C", q_lat), ("absorbed", "[W^UK^T q^C; q^R]", q_abs),
        ("absorbed", "sum_j w_j c_j", o_lat), ("absorbed", "o = W^UV (...)", o_abs), ("both", "u_t = W^O [o]", u)]
print(viz.format_table([t("ch05.col.path"), t("ch05.col.paper"), t("ch05.col.shape")],
                       [[t("ch05.path." + p), sym, str(tuple(v.shape))] for p, sym, v in rows]))

# %% [markdown] tags=["lang-en"]
# ## 6. Explore: what fits in a GPU, and how fast it can decode
#
# The tables above give the cache of one sequence. A server asks the question the other way
# round: on this GPU, how many sequences can this model decode at once, and how fast? Two
# formulas answer it from the bytes alone. They leave out activations and memory fragmentation,
# so both are upper bounds.
#
# **What fits.** The weights of a model with $P$ parameters take $W = P \cdot b$ bytes. What is
# left of the GPU's memory $M$ holds the caches. With $C$ bytes of cache per sequence (section 2's
# formula at the context $S$, batch 1), the largest batch and, for one sequence, the longest context are
#
# $$B_{\max} = \left\lfloor \frac{M - W}{C} \right\rfloor, \qquad
#   S_{\max} = \left\lfloor \frac{M - W}{C / S} \right\rfloor .$$
#
# **How fast at most.** Decoding is memory-bound (section 2): a step reads every weight once — the
# whole batch shares them — and every sequence's cache once, and writes one token per sequence.
# With a memory bandwidth of $\mathrm{BW}$ bytes per second, a batch of $B$ sequences gets
#
# $$\text{tokens/s} \le \frac{B \cdot \mathrm{BW}}{W + B \cdot C}\ \text{ in all},\qquad
#   \frac{\mathrm{BW}}{W + B \cdot C}\ \text{ for each sequence}.$$
#
# A larger batch gives more tokens per second in all (one read of the weights serves more
# tokens) and fewer to each sequence, and the total never passes $\mathrm{BW} / C$.
# `attnkit.gqa.max_batch_size`, `max_context_length` and `decode_tokens_per_s_bound` are these
# formulas, and `memory_budget` applies them to a model. Here is the explorer's starting point, a
# 7B model in bfloat16 with LLaMA-2-7B's attention shape (32 layers, 32 heads of 128) at 32k
# tokens per sequence, on an 80 GiB GPU with the H100 SXM's 3.35 TB/s:

# %% [markdown] tags=["lang-zh"]
# ## 6. 动手探索：一块 GPU 能放下多少，解码能有多快
#
# 上面的表格给出的是一条序列的缓存。部署时问的是反过来的问题：在这块 GPU 上，这个模型能同时解码多少条序列，速度能有多快？两个只看字节数的公式就能回答。它们没有算激活值和显存碎片，所以都是上限。
#
# **能放下多少。** 参数量为 $P$ 的模型，权重占 $W = P \cdot b$ 字节。显存 $M$ 剩下的部分用来放缓存。设每条序列的缓存为 $C$ 字节（即第 2 节的公式在上下文长度 $S$、批次大小 1 时的值），最大批次大小，以及单条序列时的最长上下文分别是
#
# $$B_{\max} = \left\lfloor \frac{M - W}{C} \right\rfloor, \qquad
#   S_{\max} = \left\lfloor \frac{M - W}{C / S} \right\rfloor .$$
#
# **最快能有多快。** 解码受限于内存带宽（第 2 节）：每一步把全部权重读一遍（整个批次共用），再把每条序列的缓存各读一遍，然后为每条序列写出一个词元。设显存带宽为每秒 $\mathrm{BW}$ 字节，$B$ 条序列的批次能得到
#
# $$\text{每秒词元数} \le \frac{B \cdot \mathrm{BW}}{W + B \cdot C}\ （\text{合计}），\qquad
#   \frac{\mathrm{BW}}{W + B \cdot C}\ （\text{每条序列}）.$$
#
# 批次越大，合计每秒的词元越多（读一遍权重能服务更多词元），分到每条序列的越少；合计永远超不过 $\mathrm{BW} / C$。`attnkit.gqa.max_batch_size`、`max_context_length` 和 `decode_tokens_per_s_bound` 就是这几个公式，`memory_budget` 把它们用到一个模型上。下面是交互控件的初始状态。模型是一个 bfloat16 的 7B 模型，注意力的形状与 LLaMA-2-7B 相同（32 层，32 个 128 维的头），每条序列 32k 个词元。GPU 有 80 GiB 显存，带宽与 H100 SXM 相同，为 3.35 TB/s：

# %%
from attnkit.gqa import memory_budget

budget = {kind: memory_budget(kind, num_params=7 * 10**9, memory_bytes=80 * 2**30, context=32768, num_layers=32,
                              num_heads=32, num_kv_heads=8, head_dim=128, dtype=torch.bfloat16,
                              bandwidth_bytes_per_s=3.35e12) for kind in ("mha", "gqa", "mqa", "mla")}
print(t("ch05.weights_gib", w=budget["mha"]["weights_bytes"] / 2**30))
print(viz.format_table(
    [t("ch05.col.kind"), t("ch05.col.per_seq"), t("ch05.col.max_batch"), t("ch05.col.max_context"),
     t("ch05.col.tps1"), t("ch05.col.tps_all"), t("ch05.col.tps_each")],
    [[names[k], f"{r['cache_bytes_per_sequence'] / 2**30:.3f}", r["max_batch"], f"{r['max_context']:,}",
      f"{r['tokens_per_s_batch1']:.0f}", f"{r['tokens_per_s_max_batch']:.0f}", f"{r['tokens_per_s_per_sequence']:.1f}"]
     for k, r in budget.items()]))

# %% [markdown] tags=["lang-en"]
# **Predict first (question 1).** The same 7B model decodes a single sequence of 1,000 tokens
# (batch 1). You replace its multi-head attention by GQA with 8 kv heads. How many times as fast
# can a decode step get, at most? Write a number (1.5 would mean one and a half times as fast),
# run the cell; then check your reasoning with the explorer (context 1024).

# %% [markdown] tags=["lang-zh"]
# **问题 1（先预测）**：还是这个 7B 模型，只解码一条 1,000 个词元的序列（批次大小 1）。把它的多头注意力换成 8 个键值头的 GQA，一步解码最多能快到原来的多少倍？写下一个数（1.5 表示快到 1.5 倍），运行单元格；然后用交互控件（上下文取 1024）检验你的推理。

# %%
from attnkit.exercises.ch05 import check_q1

my_answer = None                                             # a number: how many times as fast
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# Move the sliders: the model's size and dtype (weights and cache alike), the GPU's memory and
# bandwidth, the attention's shape (layers, query heads, kv heads, head size), the attention type
# and the context. On the left, the GPU's memory for each attention type: the weights (grey),
# then the caches of the largest batch that fits; beside each bar, that batch and the longest
# context a single sequence may have. On the right, the tokens/s bound of the chosen type as the
# batch grows up to the largest that fits (solid: all sequences together; dashed: each one; the
# panel stops at a batch of 4096). MLA uses DeepSeek-V2's proportions $d_c = 4 d_h$,
# $d_h^R = d_h/2$. (On GitHub, the static figure below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# 拖动滑块：模型的参数量和数据类型（权重和缓存用同一种数据类型）、GPU 的显存和带宽、注意力的形状（层数、查询头数、键值头数、头维度）、注意力类型以及上下文长度。左图是每种注意力类型下显存的分配：先是权重（灰色），然后是能放下的最大批次的缓存；每个条形旁边写着这个批次大小，以及单条序列时的最长上下文。右图是所选注意力类型的每秒词元数上限随批次增大的变化，一直画到能放下的最大批次（实线：所有序列合计；虚线：每条序列；横轴最多到批次 4096）。MLA 采用 DeepSeek-V2 的比例 $d_c = 4 d_h$、$d_h^R = d_h/2$。（在 GitHub 上，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"] alt="ch05.alt.explorer"
from attnkit.widgets.kvcache import kv_cache_explorer

explorer = kv_cache_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The explorer computes its bars with the same function: its largest batch for each type at the
# start, and with the kv-heads slider moved to 2:

# %% [markdown] tags=["lang-zh"]
# 交互控件画条形用的是同一个函数：初始状态下每种类型的最大批次，以及把键值头数滑块拖到 2 之后的结果：

# %%
from attnkit.widgets.kvcache import kv_cache_explorer_data

print({k: r["max_batch"] for k, r in explorer.data["budget"].items()})
two = kv_cache_explorer_data(num_params=7 * 10**9, dtype="bfloat16", memory_gib=80, bandwidth_tb_s=3.35, num_layers=32,
                             num_heads=32, num_kv_heads=2, head_dim=128, attention="gqa", context=32768)
print({k: r["max_batch"] for k, r in two["budget"].items()})

# %% [markdown] tags=["lang-en"]
# ## 7. What it costs, measured
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
# (Appendix B counts the absorbed path's FLOPs.)
# The absorbed path does *more* arithmetic per cached byte than MHA — which is what a
# memory-bound step wants. The naive path rebuilds every key and value at every step, which is
# why inference uses the absorbed one. Measured on this machine: one layer 512 wide with 8 heads
# of 64 (GQA with 2 kv heads; MLA with $d_c = 256$, $d_h^R = 32$), one new token after $S$ cached
# ones, float32, every variant and length timed in turn on one CPU thread (slower, but much less
# disturbed by other programs), median of 3.
# First the bytes the caches really hold after the step, against the formula:

# %% [markdown] tags=["lang-zh"]
# ## 7. 开销：实测
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
# （吸收路径的浮点运算次数怎么数，见附录 B。）吸收路径每读 1 字节缓存做的运算比 MHA *更多*——这正是受限于内存带宽的解码步骤所需要的。朴素路径每一步都要重建所有的键和值，所以推理时用的是吸收路径。下面在本机上实测：一层宽度 512、8 个 64 维的头（GQA 用 2 个键值头；MLA 取 $d_c = 256$、$d_h^R = 32$），在已缓存 $S$ 个词元之后再解码 1 个新词元，float32；所有变体和长度在单个 CPU 线程上轮流计时（更慢，但受其他程序的干扰小得多），各取 3 次的中位数。先看解码之后缓存实际占用的字节数，与公式对照：

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
# The measured bytes equal the formula. Mind the last column: MLA's cache here is 0.281 of MHA's,
# *more* than GQA-2's 0.250, while in section 2 it was only 0.0703 of MHA's. The settings differ.
# MLA's cache does not depend on the number of heads: $d_c + d_h^R$ with DeepSeek-V2's
# proportions $d_c = 4 d_h$, $d_h^R = d_h / 2$ is $4.5\,d_h$ per token and layer, of which the
# decoupled RoPE key is $0.5\,d_h$. MHA's is $2 n_h d_h$, so MLA / MHA $= 4.5 / (2 n_h) = 2.25 / n_h$,
# while GQA / MHA $= n_g / n_h$. With 8 heads (this layer) that is $2.25 / 8$, just above GQA-2's
# $2 / 8$; with section 2's 32 heads it is $2.25 / 32$, far below GQA-8's $8 / 32$. In other words,
# with these proportions MLA caches as much as GQA with 2.25 kv heads, however many query heads
# there are: less than GQA-$n_g$ for $n_g \ge 3$, more than GQA-2. Of those 2.25, the latent is 2
# and the decoupled RoPE key 0.25. Against MHA it saves more the more heads there are (8 here, 32
# in section 2). From the formula, in both settings:

# %% [markdown] tags=["lang-zh"]
# 实测字节数与公式相等。注意最后一列：这里 MLA 的缓存是 MHA 的 0.281，比 GQA-2 的 0.250 还*大*；而在第 2 节它只有 MHA 的 0.0703。两处的设置不同。MLA 的缓存与头数无关。按 DeepSeek-V2 的比例
# $d_c = 4 d_h$、$d_h^R = d_h / 2$，$d_c + d_h^R$ 就是每个词元、每层 $4.5\,d_h$ 个数，其中解耦的 RoPE 键占 $0.5\,d_h$。MHA 是 $2 n_h d_h$，所以 MLA / MHA $= 4.5 / (2 n_h) = 2.25 / n_h$，而 GQA / MHA $= n_g / n_h$。8 个头时（这一层）就是 $2.25 / 8$，略高于 GQA-2 的 $2 / 8$；第 2 节有 32 个头，就是 $2.25 / 32$，远低于 GQA-8 的 $8 / 32$。换句话说，按这样的比例，不管有多少个查询头，MLA 的缓存都相当于有 2.25 个键值头的 GQA：比 $n_g \ge 3$ 的 GQA-$n_g$ 小，比 GQA-2 大。这 2.25 个里，潜在向量占 2 个，解耦的 RoPE 键占 0.25 个。与 MHA 相比，头数越多，MLA 省得越多（这里是 8 个头，第 2 节是 32 个）。用公式算出两种设置下的比值：

# %%
rows = []
for where, n_h_, d_h_, n_g_, d_c_, d_r_ in ((t("ch05.setting.here"), 8, 64, 2, 256, 32),
                                            (t("ch05.setting.sec2"), 32, 128, 8, 512, 64)):
    mha_ = kv_cache_bytes_per_token("mha", num_heads=n_h_, head_dim=d_h_)
    rows.append([where, n_h_, f"{kv_cache_bytes_per_token('gqa', num_kv_heads=n_g_, head_dim=d_h_) / mha_:.4f} (n_g = {n_g_})",
                 f"{kv_cache_bytes_per_token('mla', kv_lora_rank=d_c_, qk_rope_head_dim=d_r_) / mha_:.4f}",
                 f"{d_r_ / (2 * n_h_ * d_h_):.4f}"])
print(viz.format_table([t("ch05.col.setting"), "n_h", t("ch05.col.gqa_vs_mha"), t("ch05.col.mla_vs_mha"),
                        t("ch05.col.rope_share")], rows))

# %% [markdown] tags=["lang-en"]
# And the time of one decode step (the numbers change from run to run and machine to machine, so
# this cell is not checked by the tests; the lines under the table, printed from this run's
# numbers, order the variants by time at each $S$):

# %% [markdown] tags=["lang-zh"]
# 再看一步解码的耗时（数字每次运行、每台机器都会不同，所以测试不检查这个单元格的输出；表格下面的几行根据本次运行的实测数字，按耗时给出每个 $S$ 下各变体的排序）：

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
# 要看的是：每一步读取的缓存字节数随 $S$ 增长，MHA 增长得最快，MQA 最慢（见第一张表）；MLA 的朴素路径每一步还要重建所有的键和值。在 GPU 上，解码受限于内存带宽，单步耗时跟着读取的字节数走。在 CPU 上，这个顺序会被一步解码中的其他开销（投影计算、扩充缓存时的复制）以及同时占用 CPU 核心的其他程序打乱：表格下面的几行给出本次运行的结果，重新运行时，耗时相近的变体可能换位。基准测试脚本 `benchmarks/bench_gqa.py` 用更多次重复测量了同样的解码步骤。

# %% [markdown] tags=["lang-en"]
# ## 8. Pitfalls
#
# **A causal mask aligned to the wrong corner**, on a real layer. Section 1 showed that $L$ new
# queries after $S - L$ cached tokens need the bottom-right mask, and that `is_causal=True` gives
# the top-left one, which is right only when nothing is cached. Feed a 4-token prompt to a GQA
# layer, then 3 tokens at once through its own projections and cache, and compare each mask with
# the full forward pass:

# %% [markdown] tags=["lang-zh"]
# ## 8. 常见陷阱
#
# **因果掩码对齐到了错误的角**，这次在一个真实的层上。第 1 节说明了：已缓存 $S - L$ 个词元之后的 $L$ 个新查询需要右下角对齐的掩码，而 `is_causal=True` 给出的是左上角对齐的掩码，只有缓存为空时才正确。先给一个 GQA 层送入 4 个词元的提示词（prompt），再用它自己的投影和缓存一次送入 3 个词元，把每种掩码的结果与完整前向计算对照：

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
# **用 `repeat` 代替 `repeat_interleave`。** `k.repeat(1, G, 1, 1)` 把键值头平铺成 0, 1, 0, 1, …，而不是 0, 0, 1, 1, …：第 $i$ 个查询头读到的是第 $i \bmod n_g$ 个键值头，而不是第 $\lfloor i/G \rfloor$ 个。不会报错，只是变成了另一个模型——按 LLaMA 方式训练的检查点会算出一堆无意义的结果：

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
# **只算了键或值中的一个，或者忘了乘层数。** 缓存大小常按“每个词元、每一层”给出；因子 2（键和值）和层数是最常被漏掉的两个因子。以第 2 节的 32 层模型、32k 词元为例：

# %%
one_layer_k_only = 32 * 128 * 32768 * 2
print(t("ch05.k_only", a=one_layer_k_only / 2**30,
        b=kv_cache_bytes("mha", 32768, num_heads=32, head_dim=128, num_layers=32, dtype=torch.bfloat16) / 2**30))

# %% [markdown] tags=["lang-en"]
# ## 9. Exercises
#
# **Exercise 1.** Section 3's `my_repeat_kv` takes the heads on axis 1, `(B, n_g, S, d)`. A
# projection's output is split into heads before that transpose, as `(B, S, n_g, d)`, the layout
# FlashAttention's interface takes too. Write `repeat_kv` for that layout: from `(B, S, n_g, d)`
# return `(B, S, n_g * n_rep, d)` where head `i` of the result is kv head `i // n_rep`.

# %% [markdown] tags=["lang-zh"]
# ## 9. 练习
#
# **练习 1**：第 3 节的 `my_repeat_kv` 中头在第 1 维，形状为 `(B, n_g, S, d)`。而投影的输出在转置之前就按头拆开了，形状是 `(B, S, n_g, d)`，FlashAttention 的接口接受的也是这种布局。请为这种布局实现 `repeat_kv`：输入 `(B, S, n_g, d)`，返回 `(B, S, n_g * n_rep, d)`，结果中的第 `i` 个头是第 `i // n_rep` 个键值头。

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
# **练习 2**：计算一个 GQA 模型的 KV 缓存占多少字节：`your_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element)`。

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
# **练习 3**：带缓存的一步解码。`q_new`、`k_new`、`v_new` 的形状是 `(B, H, L, d)`，对应 `L` 个新词元；`k_cache`、`v_cache` 的形状是 `(B, H, P, d)`，对应它们之前的 `P` 个词元（`P` 可以为 0）。先追加到缓存，再用对齐到末尾的因果掩码做注意力，返回 `(out, k_all, v_all)`。

# %%
def your_decode_step(q_new, k_new, v_new, k_cache, v_cache):
    # your code here
    raise NotImplementedError


check_decode_step(your_decode_step);

# %% [markdown] tags=["lang-en"]
# **Exercise 4 (stretch).** How many sequences fit in a GPU beside the weights? Write
# `your_max_sequences(memory_bytes, num_params, bytes_per_element, num_layers, num_kv_heads,
# head_dim, seq_len)`: the largest number of sequences of `seq_len` tokens whose KV caches fit in
# `memory_bytes` once the weights are loaded (weights and cache in the same dtype; no
# activations), as an int. The checker tries several models, among them the case this exercise
# was written for: an 80 GiB GPU beside a 7B model in fp16 with 32 layers and 32 heads of 128, at
# 32k tokens, once with MHA (32 kv heads) and once with GQA (8 kv heads). Do not call attnkit's
# `max_batch_size` or `memory_budget` (section 6): build it from the formulas.

# %% [markdown] tags=["lang-zh"]
# **练习 4（挑战题）**：权重旁边还能放下多少条序列？实现
# `your_max_sequences(memory_bytes, num_params, bytes_per_element, num_layers, num_kv_heads, head_dim, seq_len)`：装进权重之后，`memory_bytes` 字节的显存还能放下多少条 `seq_len` 个词元的序列的 KV 缓存（权重和缓存的数据类型相同，不算激活值），返回一个整数。检查器会试好几个模型，其中就有这道题要回答的那个例子。设一块 80 GiB 的 GPU 上放一个 fp16 的 7B 模型（32 层、32 个 128 维的头），上下文 32k 词元，分别用 MHA（32 个键值头）和 GQA（8 个键值头）。不要调用 attnkit 的 `max_batch_size` 或 `memory_budget`（第 6 节）：请从公式出发自己写。

# %%
from attnkit.exercises.ch05 import check_max_sequences


def your_max_sequences(memory_bytes, num_params, bytes_per_element, num_layers, num_kv_heads, head_dim, seq_len):
    # your code here
    raise NotImplementedError


check_max_sequences(your_max_sequences);

# %% [markdown] tags=["lang-en"]
# ## 10. Summary
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
# - A model generates the same tokens with and without the cache, provided each new token gets its
#   position (the cache's length) and a new sequence starts from an empty cache (`crop(0)`).
# - Beside weights of $W$ bytes, a memory of $M$ bytes holds $\lfloor (M - W) / C \rfloor$
#   sequences of $C$ cache bytes each, and a batch of $B$ decodes at most
#   $B\,\mathrm{BW} / (W + B C)$ tokens per second: the weights are read once per step, every
#   cache once.
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
# ## 10. 小结
#
# - 解码时要反复用到之前每个词元的键和值：这就是 **KV 缓存**。用缓存解码必须等于完整的因果前向计算，为此因果掩码要对齐到键的*末尾*。
# - 在 bfloat16 下，MHA 每读 1 字节缓存只做约 1 次浮点运算：解码受限于内存带宽，缓存字节数决定了速度和批次大小。
# - **MHA → GQA → MQA**：$n_h$ 个查询头共享 $n_g$ 个键值头（第 $i$ 个查询头读取第 $\lfloor i/G \rfloor$ 个键值头）；每个词元、每层缓存 $2 n_g d_h$ 个数。$n_g = n_h$ 的 GQA 就是 MHA。
# - **MLA** 只缓存一个潜在向量和一个旋转键，共 $d_c + d_h^R$ 个数；各个头的键和值由上投影得到，而上投影可以吸收进查询和输出。RoPE 放在单独的键上，因为查询和潜在向量之间的旋转会阻碍吸收。
# - 只要每个新词元拿到自己的位置（即缓存的长度），并且新序列从空缓存开始（`crop(0)`），模型用缓存和不用缓存生成的词元就完全相同。
# - 在 $W$ 字节的权重之外，$M$ 字节的显存能放下 $\lfloor (M - W) / C \rfloor$ 条各占 $C$ 字节缓存的序列；$B$ 条序列的批次每秒最多解码 $B\,\mathrm{BW} / (W + B C)$ 个词元：每一步把权重读一遍，每条序列的缓存也各读一遍。
#
# **下一章**：第 6 章——RoPE 及其他位置编码。
#
# ## 参考文献
# - N. Shazeer，*Fast Transformer Decoding: One Write-Head is All You Need*，2019（arXiv 1911.02150）——§2–3（MQA、增量解码及其内存带宽）。
# - J. Ainslie 等，*GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints*，EMNLP 2023（arXiv 2305.13245）——§2.1（平均池化后追加训练），§2.2（分组查询注意力）。
# - DeepSeek-AI，*DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model*，2024（arXiv 2405.04434）——§2.1.2 式 (9)–(13)（键值低秩联合压缩、吸收），§2.1.3 式 (14)–(19)（解耦 RoPE），表 1（每个词元的 KV 缓存）。
# - R. Pope 等，*Efficiently Scaling Transformer Inference*，MLSys 2023（arXiv 2211.05102）——§2–3（解码时 KV 缓存的内存开销）。
# - Hugging Face Transformers，`modeling_llama.py`（`repeat_kv`）；PyTorch 文档，`scaled_dot_product_attention`（`enable_gqa`）。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. Turning an MHA checkpoint into GQA
#
# Ainslie et al. (2023, §2.1–2.2) build each kv head of a
# GQA model as the *mean* of the key (and value) projection heads of its group, then continue
# training ("uptraining") for about 5% of the original pre-training steps. `from_mha(mha,
# num_kv_heads)` does the pooling. Without the uptraining the pooled layer is only an
# approximation; on a layer with random weights, whose heads have nothing in common, it is a poor one:

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. 把 MHA 检查点转换成 GQA
#
# Ainslie 等（2023，§2.1–2.2）把每组中各个头的键（和值）投影取*平均*，作为 GQA 模型的一个键值头。然后再继续训练（“追加训练”，uptraining），步数大约是原预训练的 5%。`from_mha(mha, num_kv_heads)` 完成平均池化这一步。不做追加训练时，池化后的层只是一个近似；对于权重随机、各个头之间毫无共性的层，这个近似很差：

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

# %% [markdown] tags=["lang-zh"]
# 保留全部 8 个键值头时完全复现原层（误差 0.000）；池化成 4、2、1 个头时，相对误差分别是 0.792、0.908 和 0.966，这段差距正要靠追加训练来弥补。训练好的模型中，同一组的头有更多共性；论文比较了几种转换方法（追加训练成 MQA），发现平均池化优于只保留第一个头或随机初始化键值头。

# %% [markdown] tags=["lang-en"]
# ## Appendix B. The absorbed path's FLOPs, counted
#
# On the absorbed path each head scores the $d_c + d_h^R$ numbers of every cached row and then, as
# attnkit's code does, averages the whole row $[c; k^R]$ as the value and drops the last $d_h^R$
# output channels (so that queries, keys and values share one head size, which PyTorch's fused CPU
# kernel needs): $2(d_c + d_h^R) + 2(d_c + d_h^R)$ FLOPs per head and cached token. Over $n_h$ heads
# and $S$ cached tokens that is the $n_h (4 d_c + 4 d_h^R) S$ of section 7's table. A kernel that
# averages $c$ alone does $n_h (4 d_c + 2 d_h^R) S$.

# %% [markdown] tags=["lang-zh"]
# ## 附录 B. 吸收路径的浮点运算次数
#
# 在吸收路径上，每个头先用每一行缓存的 $d_c + d_h^R$ 个数算分数。attnkit 的代码接着把整行 $[c; k^R]$ 当作值做加权平均，再丢掉输出的最后 $d_h^R$ 个通道：这样查询、键和值的头维度相同，而 PyTorch 在 CPU 上的融合算子要求如此。于是每个头、每个缓存词元需要 $2(d_c + d_h^R) + 2(d_c + d_h^R)$ 次浮点运算。乘上 $n_h$ 个头和 $S$ 个缓存词元，就是第 7 节表格中的 $n_h (4 d_c + 4 d_h^R) S$。只用 $c$ 做加权平均的算子则是 $n_h (4 d_c + 2 d_h^R) S$。
