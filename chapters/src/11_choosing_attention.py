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
# # 11 · Choosing an attention: a factory, a selector, a profiler and a recall race
#
# **What you will learn**
# - one interface for every mechanism of chapters 04-10 and for linear attentions with
#   forgetting: `AttentionFactory` builds each one by name, and each takes $(B, N, d)$ and
#   returns $(B, N, d)$;
# - the selector: the memory formulas of the earlier chapters turned into a choice for a
#   scenario and a budget — and where a formula and a measurement disagree;
# - the profiler: latency, peak memory and tokens per second, measured the same way for every
#   mechanism, live for two of them and from a benchmark file for all of them up to $N = 8192$;
# - a race on *multi-query associative recall* (MQAR, Arora et al. 2023): the same tiny language
#   model with softmax, windowed and linear attention, a Based-style hybrid and linear attentions
#   with forgetting, and what the size of the state a layer keeps has to do with how much it can
#   recall — read from a benchmark's data, at a length where that size differs.
#
# **You need** chapters 04 (multi-head attention), 05 (the KV cache), 07 (flash attention),
# 08 (sparse attention) and 09 (linear attention and its recurrent state); chapter 10 for the
# `lora` entry of the factory.

# %% [markdown] tags=["lang-zh"]
# # 11 · 如何选择注意力：工厂、选择器、性能分析器和一场召回比赛
#
# **本章内容**
# - 第 4–10 章的所有机制，加上几种带遗忘的线性注意力，共用一个接口：`AttentionFactory` 按名字构建其中任意一种，每一种都接收 $(B, N, d)$、返回 $(B, N, d)$；
# - 选择器：把前几章的内存公式变成“给定场景和预算该选哪一种”的决定——以及公式与实测在哪里对不上；
# - 性能分析器：用同一种方法为每种机制测量延迟、内存峰值和每秒处理的词元数；其中两种现场测量，全部机制到 $N = 8192$ 的结果来自一个基准测试文件；
# - 一场*多查询关联召回*（MQAR，Arora 等，2023）比赛：同一个小语言模型，分别用 softmax 注意力、窗口注意力、线性注意力、一种 Based 式的混合结构和几种带遗忘的线性注意力；在状态大小确有差别的长度上，从基准测试的数据读出每层保存的状态大小与它能召回多少有什么关系。
#
# **预备知识**：第 4 章（多头注意力）、第 5 章（KV 缓存）、第 7 章（FlashAttention）、第 8 章（稀疏注意力）和第 9 章（线性注意力及其状态）；工厂里的 `lora` 一项用到第 10 章。

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from attnkit.i18n import set_language, t

set_language("en")

import attnkit
import attnkit.text.ch11  # noqa: F401  (the sentences this chapter prints)
from attnkit import mqar, viz
from attnkit.factory import (AttentionConfig, AttentionFactory, AttentionProfiler, AttentionSelector,
                             TransformerBlock, param_count)
from attnkit.linear import LinearAttention
from attnkit.timing import one_thread
from attnkit.widgets import factory as wf

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: the race and the timings repeat from run to run
BENCH = Path(attnkit.__file__).resolve().parents[1] / "figures" / "bench_factory.json"
DATA = json.loads(BENCH.read_text())  # written by benchmarks/bench_factory.py (section 3 says how)
print(t("ch11.versions", torch=torch.__version__.split("+")[0], n=torch.get_num_threads()))

# %% [markdown] tags=["lang-en"]
# ## 1. One interface for every mechanism
#
# Each chapter built its mechanism with the signature its paper suggested:
# `MultiHeadAttention(query, key, value, ...)` returns a pair, `SparseAttention` takes its
# pattern's arguments and an `is_causal` flag, the linear modules refuse an arbitrary mask. To *compare*
# mechanisms, a model must be able to swap one for another without touching anything else. That
# is all a factory is: an `AttentionConfig` (a validated dataclass: the type, the width, the
# heads and the options of each mechanism) and one function that builds the chapter's module
# and wraps it in the same forward,
#
# $$\texttt{attn}(x,\ \texttt{attn\_mask}=\texttt{None},\ \texttt{key\_padding\_mask}=\texttt{None}) \in \mathbb{R}^{B \times N \times d}, \qquad x \in \mathbb{R}^{B \times N \times d}.$$
#
# Every name, the chapter module behind it, its parameters counted on the module and by the
# formula of its chapter, and the shape it returns. The names from `retnet` on (`retnet`,
# `gated_linear`, `gla`, `deltanet`, `gated_deltanet`; `attnkit.forgetting`) are linear attentions
# with forgetting, which shrink the state by a decay or a gate before each write and exist only in
# causal form; chapter 09 will cover forgetting in a section still to come. Three names run the same
# softmax attention: `full` is chapter 04's module, which calls torch's fused kernel
# (`scaled_dot_product_attention`: it never holds the $N \times N$ weights); `math` runs it through
# chapter 01's path, which keeps them; `flash` through chapter 07's tiled kernel, written in Python
# for teaching, so it is several times slower than the fused `full` (section 3 prints how much).

# %% [markdown] tags=["lang-zh"]
# ## 1. 所有机制共用一个接口
#
# 每一章都按各自论文的写法给机制定了签名：`MultiHeadAttention(query, key, value, ...)` 返回一对结果，`SparseAttention` 接收模式自己的参数和一个 `is_causal` 标志，线性注意力的模块不接受任意掩码。要*比较*不同机制，模型就得能把一种换成另一种，而别处一行都不用改。工厂做的就是这件事：一个 `AttentionConfig`（经过校验的 dataclass：类型、宽度、头数以及每种机制自己的选项），再加一个函数——它构建该章的模块，并套上同一个前向接口：
#
# $$\texttt{attn}(x,\ \texttt{attn\_mask}=\texttt{None},\ \texttt{key\_padding\_mask}=\texttt{None}) \in \mathbb{R}^{B \times N \times d}, \qquad x \in \mathbb{R}^{B \times N \times d}.$$
#
# 下表列出每个名字、它背后的章节模块、在模块上数出的参数个数和按该章公式算出的参数个数，以及输出的形状。从 `retnet` 起的几个名字（`retnet`、`gated_linear`、`gla`、`deltanet`、`gated_deltanet`，见 `attnkit.forgetting`）是带遗忘的线性注意力：每次写入之前先用衰减或门控把状态缩小，而且只有因果形式；遗忘将在第 9 章后续新增的一节中讲解。有三个名字算的是同一种 softmax 注意力：`full` 是第 4 章的模块，调用 torch 的融合算子（`scaled_dot_product_attention`，从不保存 $N \times N$ 的权重）；`math` 走第 1 章的路径，会保存这些权重；`flash` 走第 7 章的分块算法。后者为了教学用 Python 写成，所以比融合的 `full` 慢好几倍（第 3 节打印出慢多少）。

# %%
x = torch.randn(2, 64, 64)                                   # (B, N, d): two sequences of 64 tokens, width 64
rows, same = [], True
for name in AttentionFactory.available():
    opts = {"max_seq_len": 64} if name in ("linformer", "cosformer") else {}
    cfg = AttentionConfig(attention_type=name, d_model=64, n_heads=4, window_size=16, block_size=16, **opts)
    attn = AttentionFactory.create_attention(cfg)
    out = attn(x)
    counted = sum({p.data_ptr(): p.numel() for p in attn.parameters()}.values())  # LoRA's wrappers share the base weights
    same = same and out.shape == x.shape and counted == param_count(cfg)
    rows.append([name, type(attn.inner).__name__, f"{counted:,}", f"{param_count(cfg):,}", tuple(out.shape)])
print(viz.format_table([t("ch11.col.name"), t("ch11.col.module"), t("ch11.col.params"), t("ch11.col.formula"),
                        t("ch11.col.shape")], rows))
print(t("ch11.all_same", n=len(rows), ok=same))
print(t("ch11.aliases", names=t("ch11.sep").join(f"{a} = {b}" for a, b in (("mha", "full"), ("sliding", "local"),
                                                                     ("sparse", "block_sparse")))))

# %% [markdown] tags=["lang-en"]
# The factory computes nothing itself: it builds the module of the chapter, with weights drawn
# from `config.seed`, and passes the arguments through. So the `linear` entry *is* chapter 09's
# `LinearAttention`: copy its weights into a fresh one and the outputs agree to $10^{-6}$. The causal
# version of every mechanism comes from `causal=True` (Linformer and Nyströmformer have none:
# their projections and landmarks mix future tokens into every position, and the config says
# so when asked; the linear attentions with forgetting have only the causal one, their default).

# %% [markdown] tags=["lang-zh"]
# 工厂本身不做任何计算：它构建该章的模块（权重由 `config.seed` 决定），再把参数原样传进去。所以 `linear` 这一项*就是*第 9 章的 `LinearAttention`：把它的权重复制到一个新建的同类模块里，两者的输出相差不到 $10^{-6}$。每种机制的因果版本都由 `causal=True` 得到。Linformer 和 Nyströmformer 没有因果版本：它们的投影和地标点会把未来的词元混进每个位置，要求因果时配置会报错并说明原因（见下面的输出）。带遗忘的线性注意力则只有因果版本，默认就是因果的。

# %%
cfg = AttentionConfig(attention_type="linear", d_model=64, n_heads=4, causal=True)
attn = AttentionFactory.create_attention(cfg)
chapter09 = LinearAttention(64, 4, feature_map="elu+1", causal=True)
chapter09.load_state_dict(attn.inner.state_dict())
print(t("ch11.eq_chapter", name="linear", module="attnkit.linear.LinearAttention",
        ok=torch.allclose(attn(x), chapter09(x), atol=1e-6)))
try:
    AttentionConfig(attention_type="nystrom", causal=True)
except ValueError:  # the library's message is English; the chapter says it in the reader's language
    print(t("ch11.no_causal", name="nystrom"))

# %% [markdown] tags=["lang-en"]
# A model is then a stack of blocks, one config per layer. `TransformerBlock(config)` is a
# pre-norm residual block (an optional short causal convolution before the mixer, as in the
# Zoology models of section 4; an optional MLP after it), and nothing stops the layers from
# differing — the mixed stack of the README of the *Attention Mechanisms Library* (vistart), whose
# config, factory, selector and profiler this chapter follows (its README's examples run against
# `attnkit.factory`: `tests/library/test_factory_seed_examples.py`): window attention at the bottom,
# block-sparse in the middle, full attention on top. Its `block_sparse` is *block-diagonal*: a token
# attends only to the tokens of its own block, so no information crosses from one block to another,
# however many such layers are stacked (the second line below follows the gradient through four):

# %% [markdown] tags=["lang-zh"]
# 这样，一个模型就是一叠块，每层一个配置。`TransformerBlock(config)` 是先归一化的残差块（混合层之前可以加一个短的因果卷积，与第 4 节 Zoology 的模型一样；之后可以加一个 MLP），而且各层完全可以不同。下面是 *Attention Mechanisms Library*（vistart）的 README 里的混合结构：底层用窗口注意力，中间用分块稀疏注意力，顶层用全注意力。本章的配置、工厂、选择器和性能分析器都沿用这个库的接口（它 README 中的示例可以直接在 `attnkit.factory` 上运行，见 `tests/library/test_factory_seed_examples.py`）。这里的 `block_sparse` 是*块对角*的：一个词元只关注自己所在块里的词元，所以无论叠多少层，信息都不会从一个块传到另一个块（下面第二行输出沿着梯度穿过四层来验证）：

# %%
configs = [AttentionConfig(attention_type="local", d_model=64, n_heads=4, window_size=16),
           AttentionConfig(attention_type="block_sparse", d_model=64, n_heads=4, block_size=16),
           AttentionConfig(attention_type="full", d_model=64, n_heads=4)]
h = x
for block in [TransformerBlock(c) for c in configs]:
    h = block(h)
print(t("ch11.mixed", kinds=" → ".join(c.attention_type for c in configs), shape=tuple(h.shape)))
xg = x[:1].clone().requires_grad_(True)                     # (1, 64, 64)
h = xg
for i in range(4):                                          # four block_sparse layers, blocks of 16
    h = TransformerBlock(AttentionConfig(attention_type="block_sparse", d_model=64, n_heads=4, block_size=16,
                                         seed=i))(h)
h[0, -1].sum().backward()                                   # which inputs reach the last token's output?
seen = (xg.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
print(t("ch11.block_reach", last=63, lo=seen[0], hi=seen[-1], n=len(seen)))

# %% [markdown] tags=["lang-en"]
# ## 2. The selector: a choice from the cost formulas
#
# Which mechanism should a model use? It depends on what has to fit. The earlier chapters gave
# the memory of one layer as formulas; `AttentionSelector.memory_mb(config, N)` adds them up,
# in bytes of float32 over $2^{20}$ (MB), for batch 1:
#
# $$M_\text{forward} = 4\big(\underbrace{P}_\text{parameters} + \underbrace{5 N d}_{q,\,k,\,v,\ \text{heads},\ \text{output}} + H \cdot S(N)\big),$$
#
# where $S(N)$ is the mechanism's own term per head, what its code holds: for `full` (and `gqa`,
# `mqa`, `lora`), whose fused kernel works through the keys in blocks with an online softmax as
# chapter 07 did by hand, only a log-sum-exp per query row, $N$; for `math`, chapter 01's path,
# $3N^2$ (the scores, their masked copy and the weights are alive at once); for `flash`, one
# $64 \times 64$ tile and the running max and sum $2N$ (chapter 07); for a sparse pattern the
# attended pairs ($\approx N w$ for a window, chapter 08); for linear attention the features and
# the $d_h \times d_h$ state (chapter 09). A training step counts the parameters four times
# (weights, gradients, AdamW's two moments); decoding one token keeps the KV cache (chapter 05) or,
# for linear attention, its fixed-size state. For that library's default layer (width 512,
# 8 heads):

# %% [markdown] tags=["lang-zh"]
# ## 2. 选择器：由开销公式做出选择
#
# 模型该用哪种机制？取决于什么必须放得进内存。前几章给出了单层内存的公式；`AttentionSelector.memory_mb(config, N)`
# 把它们加起来，按 float32 计字节、再除以 $2^{20}$（MB），批次大小为 1：
#
# $$M_\text{forward} = 4\big(\underbrace{P}_\text{参数} + \underbrace{5 N d}_{q,\,k,\,v,\ \text{各头},\ \text{输出}} + H \cdot S(N)\big),$$
#
# 其中 $S(N)$ 是每个头上该机制自己的那一项，也就是它的代码实际保存的东西。`full`（以及 `gqa`、`mqa`、`lora`）调用融合算子，它像第 7 章手写的那样用在线 softmax 一块一块地处理键，每个查询行只保存一个 log-sum-exp，共 $N$ 个数。`math` 走第 1 章的路径，要 $3N^2$ 个数：分数、分数加掩码后的副本和权重同时存在。`flash` 是一个 $64 \times 64$ 的分块加上流式的最大值与和 $2N$（第 7 章）。稀疏模式是被关注的配对数（窗口约为 $N w$，第 8 章）。线性注意力是特征加上 $d_h \times d_h$ 的状态（第 9 章）。训练一步时参数要算四遍（权重、梯度、AdamW 的两个矩估计）；解码一个词元时要保存 KV 缓存（第 5 章），线性注意力则只保存固定大小的状态。以那个库的默认层（宽度 512，8 个头）为例：

# %%
names = ["full", "math", "flash", "gqa", "local", "bigbird", "linear", "performer"]
lengths = [1024, 4096, 16384, 65536]
rows = []
for name in names:
    cfg = AttentionConfig(attention_type=name)                 # d_model 512, 8 heads (the defaults)
    rows.append([name] + [f"{AttentionSelector.memory_mb(cfg, n):,.1f}" for n in lengths])
print(t("ch11.mem_title"))
print(viz.format_table([t("ch11.col.name")] + [f"N = {n:,}" for n in lengths], rows))
grow = {k: AttentionSelector.memory_mb(AttentionConfig(attention_type=k), 65536)
        / AttentionSelector.memory_mb(AttentionConfig(attention_type=k), 16384) for k in ("math", "full", "linear")}
print(t("ch11.growth", **grow))

# %% [markdown] tags=["lang-en"]
# The quadratic term decides: four times the length is about sixteen times the memory for the
# materialising path `math` and about four times for everything else, the fused `full` included
# (printed above). The selector
# turns these numbers into a choice. A scenario fixes which memory counts and an order of
# preference (`attnkit.factory.SCENARIOS`): *training* and *long_context* take the first
# candidate that fits, exact attention before sparse before linear; *inference* takes the least
# compressed KV cache that fits; *memory_limited* takes the least memory. Nothing is looked up:
# each line below is computed from the formulas at that length, and the skipped candidates are
# printed with what they would need.

# %% [markdown] tags=["lang-zh"]
# 起决定作用的是平方项：长度变为四倍时，显式构造权重的 `math` 内存约变为十六倍，其余机制约变为四倍，融合的 `full` 也是如此（见上面的输出）。选择器把这些数字变成选择。一个场景规定了计算哪种内存以及偏好的顺序（`attnkit.factory.SCENARIOS`）：*training*（训练）和 *long_context*（长上下文）取第一个放得下的候选，精确注意力优先，其次稀疏，最后线性；*inference*（推理）取放得下的、KV 缓存压缩得最少的；*memory_limited*（内存受限）取内存最少的。这里没有查表：下面每一行都是在该长度上由公式算出来的，被跳过的候选也打印出它们需要多少内存。

# %%
for scenario, n, budget in [("training", 2048, 2000), ("training", 16384, 2000), ("inference", 32768, 100),
                            ("inference", 131072, 100), ("long_context", 65536, 1000), ("memory_limited", 8192, 200)]:
    choice = AttentionSelector.select_for_scenario(scenario, seq_len=n, memory_constraint=budget)
    before = []
    for cand, mb in AttentionSelector.candidates(scenario, n):
        if cand.attention_type == choice.attention_type:
            break
        if mb > budget:
            before.append(f"{cand.attention_type} {mb:,.0f} MB")
    print(t("ch11.choice", scenario=scenario, n=n, budget=budget, choice=choice.attention_type, mb=choice.memory_mb))
    if before:
        print(t("ch11.skipped", what=t("ch11.sep").join(before)))
print(t("ch11.math_need", n=16384, math=AttentionSelector.memory_mb(AttentionConfig(attention_type="math"), 16384,
                                                                    mode="training")))
gqa_r, mla_r = AttentionConfig(attention_type="gqa").resolved, AttentionConfig(attention_type="mla").resolved
print(t("ch11.mla_vs_gqa", kv=gqa_r.num_kv_heads, dh=gqa_r.head_dim, gqa=2 * gqa_r.num_kv_heads * gqa_r.head_dim,
        dc=mla_r.kv_lora_rank, dr=mla_r.qk_rope_head_dim, mla=mla_r.kv_lora_rank + mla_r.qk_rope_head_dim))
per_token = attnkit.gqa.kv_cache_bytes_per_token  # bytes per token and layer; dtype=1: numbers
print(t("ch11.mla_deepseek", mla=per_token("mla", num_heads=128, head_dim=128, kv_lora_rank=512, qk_rope_head_dim=64,
                                           dtype=1), mha=per_token("mha", num_heads=128, head_dim=128, dtype=1)))
try:
    AttentionSelector.select_for_scenario("memory_limited", seq_len=8192, memory_constraint=50)
except ValueError:  # the library's message is English: the same facts, computed, in the reader's language
    least, mb = min(AttentionSelector.candidates("memory_limited", 8192), key=lambda cm: cm[1])
    print(t("ch11.no_fit", budget=50, n=8192, need=mb, name=least.attention_type))

# %% [markdown] tags=["lang-en"]
# Read the choices from the numbers: full attention fits the training budget at both lengths,
# because the fused kernel it runs holds no $N^2$ matrix; the materialising path would need many
# times the budget at $N = 16384$ (the line after the choices), which is why `math` and the
# Python-tiled `flash` are no candidates of the ordered rules. For inference the KV cache
# decides: at 32k tokens the full cache is over 100 MB and grouped queries (chapter 05) bring it
# under; at 128k only one shared kv head does. MLA, sold in chapter 05 as the smallest cache, needs
# more than GQA here: at these defaults its latent ($d_c = 4 d_h$) plus the shared RoPE key is
# larger than GQA's two kv heads (the line after that). MLA's cache wins when the heads are many
# and the latent small against them, as in DeepSeek-V2 (the next line). When no candidate fits, the
# selector says what the
# smallest one would need instead of returning something that does not fit. Each config it
# returns carries this reason as `.reason` and its formula memory as `.memory_mb`.
#
# These are *formulas*. Whether the memory really is what they say is a measurement — the next
# section.

# %% [markdown] tags=["lang-zh"]
# 从数字来读这些选择：两个长度下全注意力都放得进训练预算，因为它调用的融合算子不保存任何 $N^2$ 矩阵。显式构造权重的路径在 $N = 16384$ 时需要好几倍的预算（各选择之后的那一行），所以按顺序选取的规则里没有 `math`，也没有用 Python 分块的 `flash`。推理时由 KV 缓存决定：32k 个词元时完整的缓存超过 100 MB，分组查询（第 5 章）把它压到预算以内；到 128k 时，只有所有头共享一个键值头才放得下。第 5 章说 MLA 的缓存最小，这里它却比 GQA 大。在这组默认设置下，它的潜在向量（$d_c = 4 d_h$）加上共享的 RoPE 键，比 GQA 的两个键值头还长（再下一行）。头很多、潜在向量相对很小时，MLA 的缓存才占优，DeepSeek-V2 就是这样（见其后一行）。没有候选放得下时，选择器会说明最小的那个需要多少，而不是返回一个放不下的配置。它返回的每个配置都带着这条理由（`.reason`）和公式算出的内存（`.memory_mb`）。
#
# 这些都是*公式*。内存是否真如公式所说，要靠测量——这是下一节的内容。

# %% [markdown] tags=["lang-en"]
# ## 3. The profiler: measured, the same way for every mechanism
#
# `AttentionProfiler.profile_many(names, batch_size, seq_len, num_iterations)` builds each
# mechanism, times one forward call of each in turn (round-robin, after warm-up rounds, on one
# thread, with `attnkit.timing`), and then measures each call's peak memory with
# `torch.profiler`: the allocator reports every allocation and free, scratch space inside a
# fused kernel included, and the running sum at its largest is the peak. It returns the mean and
# spread of the latency, the peak in MB, tokens per second $= B N / \text{latency}$, and the
# selector's formula for the same call. Two mechanisms at $N = 512$, live:

# %% [markdown] tags=["lang-zh"]
# ## 3. 性能分析器：实测，而且对每种机制用同一种方法
#
# `AttentionProfiler.profile_many(names, batch_size, seq_len, num_iterations)` 构建每种机制，轮流为每种机制计时一次前向调用（轮流计时，先预热，单线程，用 `attnkit.timing`）。然后用 `torch.profiler` 测量每次调用的内存峰值：内存分配器会报告每一次分配和释放，包括融合算子内部的临时内存，累计值的最大处就是峰值。它返回延迟的均值和波动、以 MB 计的峰值、每秒词元数 $= B N / \text{延迟}$，以及选择器对同一次调用的公式估计。下面现场测量两种机制，$N = 512$：

# %% tags=["nbval-ignore-output"]
with one_thread():
    live = AttentionProfiler.profile_many(["full", "linear"], batch_size=1, seq_len=512, num_iterations=7,
                                          d_model=256, n_heads=4)
print(t("ch11.profile_settings", n=512, d=256, h=4, it=7))
print(viz.format_table([t("ch11.col.name"), t("ch11.col.median"), t("ch11.col.quartiles"), t("ch11.col.peak"),
                        t("ch11.col.formula_mb"), t("ch11.col.tps")],
                       [[k, f"{p['median_latency_ms']:.2f}", f"{p['q1_latency_ms']:.2f}-{p['q3_latency_ms']:.2f}",
                         f"{p['memory_mb']:.2f}", f"{p['formula_mb']:.2f}", f"{p['tokens_per_s']:,.0f}"]
                        for k, p in live.items()]))
fast, slow = sorted(live, key=lambda k: live[k]["median_latency_ms"])
apart = live[fast]["q3_latency_ms"] < live[slow]["q1_latency_ms"]  # the middle halves of the rounds do not overlap
print(t("ch11.live_verdict", fast=fast, slow=slow, x=live[slow]["median_latency_ms"] / live[fast]["median_latency_ms"],
        apart=apart))

# %% [markdown] tags=["lang-en"]
# The printed verdict comes from this run's numbers, with their spread: the quartiles of the
# rounds (a quarter of them were faster than the first number, a quarter slower than the second).
# Where the two ranges overlap, a rerun may order them differently. A reliable picture needs more
# lengths and more repeats than
# a notebook cell can afford, so `benchmarks/bench_factory.py` profiles every mechanism at
# $N = 512, 1024, \dots, 8192$ and writes the results, with the command and the machine, to
# `figures/bench_factory.json`. The table below is that file (`skipped` where the script left a
# mechanism out, with its reason stored in the file). Mechanisms added to the factory later are
# profiled in a run of their own (`--mechanisms ... --resume`), which keeps the other rows and the
# stamp of the run that measured them; the first lines say which run timed which mechanisms.
# Latencies from different runs (another machine, another load) are not comparable: compare a
# mechanism's latency only with those of its own run, and only beyond the spread printed beside it
# (± half the interquartile range of the rounds, in % of the median; for a run that stored no
# quartiles, the standard deviation in % of the mean). The script refuses to profile when the load
# average at the start is above 1.0, unless told `--force`; the first lines print the load each run
# started at. Peak memory does not depend on the load.

# %% [markdown] tags=["lang-zh"]
# 上面打印的结论来自这一次运行的数字，旁边是它们的波动：各轮计时的四分位数（四分之一的轮次比第一个数快，四分之一比第二个数慢）。两个范围有重叠时，重跑一次顺序可能就变了。要得到可靠的图景，需要更多的长度和更多次重复，这超出了一个笔记本单元格能承受的时间。所以 `benchmarks/bench_factory.py` 在 $N = 512, 1024, \dots, 8192$ 上为每种机制做性能分析，并把结果连同运行命令和机器信息写入 `figures/bench_factory.json`。下表就是这个文件的内容（`skipped` 表示脚本跳过了该机制，原因记录在文件里）。后来加入工厂的机制单独跑一次性能分析（`--mechanisms ... --resume`），这次运行保留其他机制的结果，以及测出这些结果的那次运行的信息；开头几行说明哪次运行测了哪些机制。不同运行的延迟（机器不同、负载不同）不能相互比较：一种机制的延迟只应与同一次运行里的其他机制比，而且差别要大于旁边打印的波动才算数。波动是各轮计时四分位距的一半，以中位数的百分比表示；没有保存四分位数的运行，用标准差占均值的百分比。开始时平均负载高于 1.0，脚本就拒绝做性能分析，除非加上 `--force`；开头几行打印了每次运行开始时的负载。内存峰值与负载无关。

# %%
prof = DATA["profile"]
by = {(r["attention_type"], r["seq_len"]): r for r in prof["rows"]}
kinds = list(dict.fromkeys(r["attention_type"] for r in prof["rows"]))
lens = prof["lengths"]
run_of = {k: st for st in prof.get("kept_from", []) for k in st["mechanisms"]}  # mechanism -> the run that timed it
run_of |= {k: prof for k in kinds if k not in run_of}                             # the rest: this file's last run
for st in reversed([prof] + prof.get("kept_from", [])):                           # the oldest run first
    if names := t("ch11.sep").join(k for k in kinds if run_of[k] is st):
        print(t("ch11.made_by_rows", names=names, command=st["command"], cpu=st["machine"]["cpu"],
                cores=st["machine"]["cores"], torch=st["machine"]["torch"], date=st["date"],
                load=st["machine"]["loadavg_at_start"]))
print(t("ch11.profile_file_settings", **{k: prof["settings"][k] for k in ("batch_size", "d_model", "n_heads",
                                                                          "iterations")}))


def spread(r):  # ± half the interquartile range of the rounds, % of the median (no quartiles stored: std, % of mean)
    if "q1_latency_ms" in r:
        return 50 * (r["q3_latency_ms"] - r["q1_latency_ms"]) / r["median_latency_ms"]
    return 100 * r["std_latency_ms"] / r["avg_latency_ms"]


def ms(r):  # a latency as the chapter prints it: the median in ms, and its spread
    return f"{r['median_latency_ms']:.1f} ±{spread(r):.0f}%"


def cell(name, n, show):
    r = by.get((name, n))
    return t("ch11.skipped_cell") if r is None or "skipped" in r else show(r)


for show, title in ((ms, "ch11.tab_latency"), (lambda r: f"{r['memory_mb']:.1f}", "ch11.tab_memory"),
                    (lambda r: f"{r['tokens_per_s']:,.0f}", "ch11.tab_tps")):
    print(t(title))
    print(viz.format_table([t("ch11.col.name")] + [f"{n:,}" for n in lens],
                           [[k] + [cell(k, n, show) for n in lens] for k in kinds]))

# %% alt="ch11.alt.profile"
fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
for i, k in enumerate(kinds):
    pts = [(n, by[(k, n)]) for n in lens if (k, n) in by and "skipped" not in by[(k, n)]]
    # eight colour-blind-safe colours, then the same eight dashed, dotted; and a marker of its own per colour,
    # so no two lines share colour and style, and no two share marker and style (told apart without colour)
    style = viz.line_style(i) | {"marker": "osD^v<>P"[i % 8]}
    ax_t.plot([n for n, _ in pts], [r["median_latency_ms"] for _, r in pts], ms=3.5, label=k, **style)
    ax_m.plot([n for n, _ in pts], [r["memory_mb"] for _, r in pts], ms=3.5, label=k, **style)
for ax, ylabel in ((ax_t, "ch11.plot_latency"), (ax_m, "ch11.plot_memory")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(t("ch11.plot_n"))
    ax.set_ylabel(t(ylabel))
    ax.grid(alpha=0.3)
ax_m.legend(fontsize=6.5, ncol=3, loc="upper left")
ax_t.set_title(t("ch11.plot_profile_title"), fontsize=10)
ax_m.set_title(t("ch11.plot_memory_title"), fontsize=10)
fig.tight_layout()

# %% [markdown] tags=["lang-en"]
# Now set the measured peak beside the selector's formula for the same call (computed now, from
# the formulas of section 2). Where the two disagree by more than a factor of two at the longest
# length both were measured, a line says which way:

# %% [markdown] tags=["lang-zh"]
# 现在把实测峰值与选择器对同一次调用的公式估计（按第 2 节的公式现算）放在一起。在两者都测到的最长长度上，凡是相差超过两倍的，下面都会另起一行指出是哪个方向：

# %%
n_top = max(n for n in lens if all((k, n) in by and "skipped" not in by[(k, n)] for k in ("full", "flash", "linear")))
rows, off = [], []


def formula_now(k, n):  # the selector's forward formula for the file's call, without the parameters (MB)
    s = prof["settings"]
    cfg = AttentionConfig(attention_type=k, d_model=s["d_model"], n_heads=s["n_heads"],
                          causal=k in attnkit.factory.CAUSAL_ONLY,
                          **({"max_seq_len": n} if k in ("linformer", "cosformer") else {}))
    b = attnkit.factory.memory_breakdown(cfg, n, s["batch_size"])
    return (b["total"] - b["params"]) / 2**20


for k in kinds:
    r = by.get((k, n_top))
    if r is None or "skipped" in r:
        continue
    f = formula_now(k, n_top)
    ratio = r["memory_mb"] / f
    rows.append([k, f"{f:,.1f}", f"{r['memory_mb']:,.1f}", f"{ratio:.2f}"])
    if ratio > 2 or ratio < 0.5:
        off.append((k, ratio))
print(t("ch11.formula_vs_measured", n=n_top))
print(viz.format_table([t("ch11.col.name"), t("ch11.col.formula_mb"), t("ch11.col.peak"), t("ch11.col.ratio")], rows))
for k, ratio in off:
    print(t("ch11.off_high" if ratio > 1 else "ch11.off_low", name=k, x=ratio if ratio > 1 else 1 / ratio))
if not off:
    print(t("ch11.off_none"))
full, flash = by[("full", n_top)], by[("flash", n_top)]
print(t("ch11.full_vs_flash", n=n_top, full_mb=full["memory_mb"], full_f=formula_now("full", n_top),
        flash_mb=flash["memory_mb"], x=flash["median_latency_ms"] / full["median_latency_ms"], s_full=spread(full),
        s_flash=spread(flash)))

# %% [markdown] tags=["lang-en"]
# The softmax mechanisms that call PyTorch's fused `scaled_dot_product_attention` (full, gqa,
# mqa, lora) are where a cost model is easiest to get wrong. Counting the $N^2$ scores of every
# head, what chapter 01's path holds, puts full attention's formula many times above its measured
# peak at long lengths, and a selector built on it prefers the Python-tiled `flash`, which is
# slower (the last printed line) and no smaller. The fused kernel on this CPU works through the
# keys in blocks with an online softmax, as chapter 07 did by hand: its scratch space (which the
# profiler does see) is a few blocks, not an $N \times N$ matrix. So the selector costs `full` as
# that kernel and the materialising path as its own entry, `math`. Where the code holds more than
# a simple count, the formula must follow the code. MLA's naive path gives queries and keys a
# longer head ($d_h + d_h^R$) than values ($d_h$); PyTorch's fused CPU kernel needs one head size,
# so the call falls back to torch's math path, which holds the scores *and* the softmax weights:
# two $N \times N$ matrices per head, both counted. `gla` goes through its chunks in a loop and
# holds one chunk's $c \times c \times d_h$ block of decays at a time ($c = 16$), not every
# chunk's at once.
# A selector is only as good as its cost model; check it against a profile of the code you will run.

# %% [markdown] tags=["lang-zh"]
# 调用 PyTorch 融合算子 `scaled_dot_product_attention` 的那几种 softmax 机制（full、gqa、mqa、lora），是开销模型最容易出错的地方。如果像第 1 章的路径那样为每个头计入 $N^2$ 个分数，长序列上全注意力的公式就会比实测峰值高出好多倍；以此为依据的选择器会偏向用 Python 分块实现的 `flash`，而它更慢（见最后一行输出），内存也不更小。这台 CPU 上的融合算子像第 7 章手写的那样，用在线 softmax 一块一块地处理键。它的临时内存（性能分析器是看得到的）只有几个分块，而不是一个 $N \times N$ 的矩阵。所以选择器按这个融合算子来估计 `full`，而把显式构造权重的路径单列为 `math`。代码保存的东西不止一个简单计数时，公式就得照着代码来算。MLA 的朴素路径里，查询和键每个头的长度是 $d_h + d_h^R$，而值的头只有 $d_h$。PyTorch 的 CPU 融合算子要求这两个长度相同，于是这次调用退回到 torch 的数学路径。这条路径同时保存分数*和* softmax 权重：每个头两个 $N \times N$ 矩阵，公式把两个都计入了。`gla` 在循环里逐段处理，同一时刻只保存一段的 $c \times c \times d_h$ 衰减块（$c = 16$），而不是所有段的衰减块。选择器的好坏取决于它的开销模型；请用你真正要运行的代码的实测结果来核对它。

# %% [markdown] tags=["lang-en"]
# ## 4. The race: multi-query associative recall
#
# Memory and speed are half of the choice; the other half is what a mechanism can *do*. Arora
# et al. (2023, "Zoology", §3) trained gated-convolution models (H3, Hyena, RWKV) and attention on
# the Pile and found that most of the gap in perplexity between them comes from one skill,
# **recall**: using a token seen earlier in the context. That finding is about those models;
# whether it holds for every efficient alternative is what tasks like theirs let one test. They
# distilled the skill into a synthetic task, multi-query associative recall (MQAR):
#
# - a sequence starts with $K$ key–value pairs, $k_1 v_1 k_2 v_2 \dots k_K v_K$: keys from the
#   first half of the vocabulary, values from the second, distinct within a sequence;
# - then each key appears once more, at a later position (the gaps drawn with probability
#   $\propto g^{a-1}$, $a = 0.01$: short gaps are more likely, as repeated phrases in text are), with
#   a filler token 0 everywhere else;
# - at each repeated key the model must predict the value that followed it; the loss and the
#   accuracy count only those $K$ positions (target $-100$, `cross_entropy`'s `ignore_index`,
#   everywhere else).
#
# A small batch from `attnkit.mqar.mqar_batch` (`·` marks an ignored target):

# %% [markdown] tags=["lang-zh"]
# ## 4. 比赛：多查询关联召回
#
# 内存和速度只是选择的一半，另一半是一种机制*能做到什么*。Arora 等（2023，“Zoology”，§3）在 Pile 上训练了门控卷积模型（H3、Hyena、RWKV）和注意力模型。他们发现，两者困惑度的差距主要来自一种能力——**召回**：利用上下文中更早出现过的词元。这个结论说的是这几种模型；它对其他高效替代方案是否同样成立，正要靠他们那样的任务来检验。他们把这种能力提炼成一个合成任务，多查询关联召回（MQAR）：
#
# - 序列以 $K$ 个键值对开头，$k_1 v_1 k_2 v_2 \dots k_K v_K$：键取自词表的前一半，值取自后一半，同一序列内互不相同；
# - 之后每个键在更靠后的位置再出现一次（间隔按 $\propto g^{a-1}$、$a = 0.01$ 的概率抽取：间隔短的更常见，就像文本中重复出现的短语），其余位置都是占位词元 0；
# - 在每个重复出现的键上，模型要预测当初紧跟在它后面的那个值；损失和准确率只统计这 $K$ 个位置（其余位置的目标为 $-100$，即 `cross_entropy` 的 `ignore_index`）。
#
# 下面是 `attnkit.mqar.mqar_batch` 生成的一个小批次（`·` 表示被忽略的目标）：

# %%
inputs, targets = mqar.mqar_batch(batch=2, vocab_size=16, seq_len=16, num_pairs=3, seed=0)
print(t("ch11.batch_settings", v=16, l=16, k=3))
for b in range(2):
    print(t("ch11.row_inputs") + " ".join(f"{v:>2}" for v in inputs[b].tolist()))
    print(t("ch11.row_targets") + " ".join(" ·" if v == mqar.IGNORE_INDEX else f"{v:>2}" for v in targets[b].tolist()))
print(t("ch11.chance", v=16, p=mqar.chance_accuracy(16)))

# %% [markdown] tags=["lang-en"]
# The model is `TinyLM`: a token embedding and a learned position embedding, two blocks, each a
# short causal convolution followed by the mixer and no MLP, as in Zoology's experiments, and a
# linear read-out. The convolution lets a layer see the previous few tokens directly, so the
# mixer's job is only the long-range look-up. `attnkit.mqar.train_mqar` trains it with AdamW on
# fresh seeded batches, one thread, and scores the query positions of a held-out batch.
#
# The live race: softmax and linear attention (elu+1), one head, at length 32. At this size the
# two keep about the same state — a layer's KV cache holds $2Ld$ numbers, the linear state
# $d(d + 1)$; the cell prints both — so this race cannot show a state that fills up. What it
# tests is how each mechanism uses about the same memory (linear attention's positive feature
# map makes the stored pairs interfere: section 5 measures that with no training at all) and
# whether each learns within the training budget. The benchmark script trained the same two
# models with the same seed. A training run repeats its verdict on any CPU but not its last
# digits (a different processor rounds differently, and a few hundred steps amplify that), so
# the cell prints whether each mechanism solves the task (recall $\ge 0.9$), beside the file's
# recall:

# %% [markdown] tags=["lang-zh"]
# 模型是 `TinyLM`：一个词元嵌入加一个可学习的位置嵌入，两个块，每块是一个短的因果卷积加上混合层、没有 MLP（与 Zoology 的实验相同），最后一个线性读出层。卷积让每层直接看到前面几个词元，于是混合层只需负责远距离的查找。`attnkit.mqar.train_mqar` 用 AdamW 在每步新生成的、带种子的批次上训练它（单线程），并在一个留出批次的查询位置上评分。
#
# 现场比赛：softmax 注意力和线性注意力（elu+1），单个头，长度 32。在这个规模上两者保存的状态差不多大：一层的 KV 缓存有 $2Ld$ 个数，线性状态有 $d(d + 1)$ 个数，下面的单元格把两者都打印出来。所以这场比赛显示不出状态被填满。它检验的是：状态差不多大时，每种机制把它用得怎样（线性注意力的正特征映射让存下的键值对互相干扰，第 5 节不经任何训练就测出了这一点），以及每种机制能否在训练预算内学会。基准测试脚本用同一个种子训练过同样的两个模型。一次训练的结论在任何 CPU 上都能重现，最后几位数字却不能：不同的处理器舍入方式不同，几百步训练会把这点差别放大。所以单元格只打印每种机制是否解决了任务（召回率 $\ge 0.9$），旁边是文件中的召回率：

# %%
race = DATA["race"]
settings, summary_rows = race["settings"], race["summary"]
live = settings["live"]
live_task = {k: v for k, v in live.items() if k != "mechanisms"}
print(t("ch11.race_settings", **live_task))
layer = {name: AttentionConfig(attention_type=settings["mechanisms"][name], d_model=live["width"], n_heads=1,
                               causal=True) for name in live["mechanisms"]}
numbers = {name: mqar.decode_state_bytes(cfg, live["seq_len"]) // 4 for name, cfg in layer.items()}  # float32
print(t("ch11.live_states", l=live["seq_len"], d=live["width"], kv=numbers["softmax"], lin=numbers["linear"],
        x=numbers["softmax"] / numbers["linear"]))
live_race = {name: mqar.train_mqar(settings["mechanisms"][name], seed=0, **live_task) for name in live["mechanisms"]}
file_acc = {r["mechanism"]: r["accuracy"] for r in race["live_runs"]}
for name, r in live_race.items():  # the verdict, not the digits: the last digits of a training run follow the CPU
    print(t("ch11.race_row", name=name, ok=r["accuracy"] >= 0.9, state=r["state_bytes"], file=file_acc[name],
            file_ok=file_acc[name] >= 0.9))
print(t("ch11.chance", v=live["vocab_size"], p=settings["live_chance"]))

# %% alt="ch11.alt.race"
fig, ax = plt.subplots(figsize=(6, 3.3))
for name, r in live_race.items():
    ax.plot(r["losses"], label=name, lw=1)
ax.set_xlabel(t("ch11.plot_step"))
ax.set_ylabel(t("ch11.plot_loss"))
ax.set_title(t("ch11.plot_race_title", l=live["seq_len"], w=live["width"], k=live["num_pairs"]), fontsize=10)
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown] tags=["lang-en"]
# A state that fills up needs a length at which the KV cache is several times the fixed state,
# and one setting with one seed is an anecdote. The benchmark (`benchmarks/bench_factory.py`,
# about an hour on two cores: too long for a notebook) trains at length 128 in a vocabulary of 64:
# widths 32 and 64 with 8 pairs, and width 32 with 16 pairs, for which softmax needed more steps to
# learn the task; three seeds per setting, every mechanism for the same number of steps at a
# setting. Besides softmax, a causal window and linear attention, it runs:
#
# - the hybrid as Based (Arora et al. 2024) builds it: a window layer under a linear layer whose
#   queries and keys, in heads of 16 dimensions, go through the Taylor feature map
#   $\phi(x) = [1,\ x / d^{1/4},\ \mathrm{vec}(x x^\top) / (\sqrt 2 \sqrt d)]$, so that
#   $\phi(q) \cdot \phi(k) = 1 + s + s^2/2$ with $s = q \cdot k / \sqrt d$: $e^s$ to second order
#   (`attnkit.linear.taylor_feature_map`); every model of the sweep has Based's short convolutions
#   of kernel 3. Based's window is 64 tokens at a training length of 2,048, and its models also
#   have gated convolutions and MLPs; here the window is 16 tokens (an eighth of the length) and
#   there is no MLP;
# - four linear attentions with forgetting (`attnkit.forgetting`): RetNet's fixed decay, GLA's
#   per-channel gate, the delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet).
#
# Each cell: the median recall over the seeds, in brackets the lowest and the highest, and the
# bytes of state the model keeps to predict the next token at that length (both layers and their
# convolutions, `attnkit.mqar.decode_state_bytes`):

# %% [markdown] tags=["lang-zh"]
# 要让状态被填满，需要一个 KV 缓存是固定状态好几倍的长度；而且一组设置、一个种子只能算个例。基准测试（`benchmarks/bench_factory.py`，在两个核上约一小时，笔记本里跑不起）在长度 128、词表 64 上训练：宽度 32 和 64 各用 8 个键值对，宽度 32 再用 16 个键值对（softmax 要多训练一些步数才学会这个任务）。每组设置三个种子，同一组设置里每种机制训练同样的步数。除了 softmax、因果窗口和线性注意力，它还训练：
#
# - 按 Based（Arora 等，2024）的做法搭建的混合结构：窗口层在下，线性层在上；线性层的查询和键分成 16 维的头，经过泰勒特征映射 $\phi(x) = [1,\ x / d^{1/4},\ \mathrm{vec}(x x^\top) / (\sqrt 2 \sqrt d)]$，于是 $\phi(q) \cdot \phi(k) = 1 + s + s^2/2$，其中 $s = q \cdot k / \sqrt d$，即 $e^s$ 的二阶展开（`attnkit.linear.taylor_feature_map`）。扫描中的每个模型都带有 Based 的核大小为 3 的短卷积。Based 的窗口是 64 个词元，训练长度为 2,048，模型里还有门控卷积和 MLP；这里的窗口是 16 个词元（长度的八分之一），没有 MLP；
# - 四种带遗忘的线性注意力（`attnkit.forgetting`）：RetNet 的固定衰减、GLA 的逐通道门控、delta 规则（DeltaNet）和带门控的 delta 规则（Gated DeltaNet）。
#
# 每格是各种子召回率的中位数，括号里是最低值和最高值，后面是模型在这个长度上为预测下一个词元而保存的状态字节数（两层及其卷积，`attnkit.mqar.decode_state_bytes`）：

# %%
print(t("ch11.made_by_race", command=race["command"], cpu=race["machine"]["cpu"], cores=race["machine"]["cores"],
        torch=race["machine"]["torch"], date=race["date"], load=race["machine"]["loadavg_at_start"],
        end=race["machine"]["loadavg_at_end"], minutes=race["seconds"] / 60,
        trained=sum(r["seconds"] for r in race["runs"] + race["live_runs"]) / 60,
        kept=t("ch11.sep").join(f"`{c}`" for c in race.get("kept_from", [])) or "—", **settings["budget"]))
task = settings["task"]
seeds = sorted({r["seed"] for r in race["runs"]})
print(t("ch11.sweep_settings", seeds=t("ch11.sep").join(map(str, seeds)), **task))
points = [tuple(p[:3]) for p in settings["points"]]                     # (length, width, pairs)
steps = {tuple(p[:3]): p[3] for p in settings["points"]}
for L, d, K in points:
    kv, lin = (mqar.decode_state_bytes(AttentionConfig(attention_type=kind, d_model=d, n_heads=task["n_heads"],
                                                       causal=True), L) // 4 for kind in ("full", "linear"))
    print(t("ch11.sweep_states", l=L, d=d, k=K, steps=steps[(L, d, K)], kv=kv, lin=lin, x=kv / lin))
summary = {(s["mechanism"], s["seq_len"], s["width"], s["num_pairs"]): s for s in summary_rows}
mechanisms = list(settings["mechanisms"])
print(viz.format_table(
    [t("ch11.col.name")] + [h for L, d, K in points for h in (t("ch11.col.point", l=L, w=d, k=K), t("ch11.col.bytes"))],
    [[m] + [c for p in points for c in (f"{summary[(m, *p)]['median']:.2f} [{summary[(m, *p)]['min']:.2f}, "
                                       f"{summary[(m, *p)]['max']:.2f}]", f"{summary[(m, *p)]['state_bytes']:,}")]
     for m in mechanisms]))
print(t("ch11.chance", v=task["vocab_size"], p=settings["chance"]))

# %% alt="ch11.alt.sweep"
fig, axes = plt.subplots(1, len(points), figsize=(4.6 * len(points), 4), sharey=True)
for ax, (L, d, K) in zip(axes, points, strict=True):
    for i, m in enumerate(mechanisms):
        s = summary[(m, L, d, K)]
        style = viz.line_style(i)
        x = s["state_bytes"] * 1.05 ** (i - (len(mechanisms) - 1) / 2)  # equal states side by side, not on top
        ax.errorbar([x], [s["median"]], yerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
                    marker="o", ms=6, capsize=4, color=style["color"], label=m, ls="none")
    ax.axhline(settings["chance"], color="0.6", ls="--", lw=1)
    ax.axhline(settings["solved"], color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_title(t("ch11.plot_state_title", l=L, w=d, k=K), fontsize=10)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
axes[0].set_ylabel(t("ch11.plot_acc"))
fig.supxlabel(t("ch11.plot_state"), fontsize=10)
axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()

# %% [markdown] tags=["lang-en"]
# What the file says, printed from its numbers (a mechanism "solves" a setting when its median
# over the seeds reaches 0.9; where softmax itself does not, the budget did not train even the
# mechanism that keeps everything, and no trade-off is drawn there):

# %% [markdown] tags=["lang-zh"]
# 文件里的数字说明了什么，由代码直接算出并打印（一种机制“解决”了某组设置，是指它在各种子上召回率的中位数达到 0.9；如果连 softmax 都达不到，说明训练预算连保存一切的机制都没训练出来，这组设置就不画权衡）：

# %%
SOLVED = settings["solved"]
forgetting = ("retnet", "gla", "deltanet", "gated_deltanet")
for p in points:
    L, d, K = p
    soft = summary[("softmax", *p)]
    ratio = {m: summary[(m, *p)]["state_bytes"] / soft["state_bytes"] for m in mechanisms}
    best = max(mechanisms, key=lambda m: summary[(m, *p)]["median"])
    print(t("ch11.best", l=L, w=d, k=K, name=best, med=summary[(best, *p)]["median"]))
    if soft["median"] < SOLVED:
        print(t("ch11.no_tradeoff", l=L, w=d, med=soft["median"], lo=soft["min"], hi=soft["max"]))
        continue
    solvers = sorted((m for m in mechanisms if summary[(m, *p)]["median"] >= SOLVED), key=ratio.get)
    print(t("ch11.solvers", names=t("ch11.sep").join(f"{m} ({ratio[m]:.2f}x)" for m in solvers)))
    fail = [m for m in mechanisms if m not in solvers]
    print(t("ch11.fail", names=t("ch11.sep").join(f"{m} {summary[(m, *p)]['median']:.3f} ({ratio[m]:.2f}x)" for m in fail)
            or "—"))
    b, lin = summary[("based", *p)], summary[("linear", *p)]
    print(t("ch11.hybrid", med=b["median"], lo=b["min"], hi=b["max"], x=ratio["based"], lin=lin["median"],
            xl=ratio["linear"], soft=soft["median"],
            vs=t("ch11.word.above" if b["median"] > lin["median"] else
                 "ch11.word.below" if b["median"] < lin["median"] else "ch11.word.level")))
    print(t("ch11.forgetting", names=t("ch11.sep").join(f"{m} {summary[(m, *p)]['median']:.2f} "
                                              f"[{summary[(m, *p)]['min']:.2f}, {summary[(m, *p)]['max']:.2f}]"
                                              for m in forgetting), x=ratio["retnet"]))
for m in mechanisms:  # who solves which width at which length
    solved = [f"L = {L}, d = {d}, K = {K}" for L, d, K in points if summary[(m, L, d, K)]["median"] >= SOLVED]
    print(t("ch11.solves_where", name=m, where="; ".join(solved) or t("ch11.nowhere")))

# %% [markdown] tags=["lang-en"]
# **Question 1** (predict first, before section 5 works it out). A causal window of $w$ lets a
# query attend to the $w - 1$ tokens before it; a short causal convolution of kernel $c$ mixes each
# token with the $c - 1$ before it. The model has two blocks, each a convolution and then a window
# layer. With $w = 16$ and $c = 3$, how many positions back can the second block's output at a
# query reach, at most? Replace `None` with a number.

# %% [markdown] tags=["lang-zh"]
# **问题 1（先预测）**：在第 5 节推导之前先预测。长度为 $w$ 的因果窗口让一个查询关注它前面的 $w - 1$ 个词元；核大小为 $c$ 的短因果卷积把每个词元与它前面的 $c - 1$ 个词元混合。模型有两个块，每块先是一个卷积，再是一个窗口层。$w = 16$、$c = 3$ 时，第二个块在查询位置上的输出最远能往回看多少个位置？把 `None` 换成一个数。

# %%
from attnkit.exercises.ch11 import check_q1

my_answer = None  # a number
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# ## 5. Why: what each layer keeps
#
# To answer a query at position $i$, a causal layer can use only what it kept from positions
# $\le i$. Softmax attention keeps everything: its KV cache holds the keys and values of all
# earlier tokens, $2Nd$ numbers per layer, growing with the context (chapter 05). Causal linear
# attention keeps $S_i = \sum_{j \le i} \phi(k_j) v_j^\top$ and $z_i = \sum_{j \le i} \phi(k_j)$,
# $d_h (d_h + 1)$ numbers per head however long the context is (chapter 09, eqs. 16-20 of
# Katharopoulos et al.). A window of $w$ keeps the last $w$ keys and values and forgets the rest.
#
# A fixed-size $S$ is a superposition of all the pairs written into it. Reading key $k_i$ back
# gives $S^\top \phi(k_i) = \sum_j (\phi(k_j) \cdot \phi(k_i))\, v_j$: the right value, plus every
# other value weighted by how much its key overlaps with $k_i$. Orthogonal keys do not overlap, but
# a $d$-dimensional space has only $d$ of them. Without any training, with random keys, how
# often does the read-out point to the right value among the $K$ stored ones?
# (`attnkit.mqar.memory_recall`: identity features, elu+1 features with the normaliser, and a
# softmax read of the same pairs, for comparison.)

# %% [markdown] tags=["lang-zh"]
# ## 5. 原因：每一层保存了什么
#
# 要回答位置 $i$ 上的查询，因果层只能用它从位置 $\le i$ 保存下来的东西。softmax 注意力保存一切：KV 缓存存着之前所有词元的键和值，每层 $2Nd$ 个数，随上下文增长（第 5 章）。因果线性注意力保存 $S_i = \sum_{j \le i} \phi(k_j) v_j^\top$ 和 $z_i = \sum_{j \le i} \phi(k_j)$，无论上下文多长，每个头都是 $d_h (d_h + 1)$ 个数（第 9 章，Katharopoulos 等的式 16–20）。长度为 $w$ 的窗口保存最近 $w$ 个键和值，其余的全部忘掉。
#
# 固定大小的 $S$ 是写入它的所有键值对的叠加。用键 $k_i$ 读出，得到 $S^\top \phi(k_i) = \sum_j (\phi(k_j) \cdot \phi(k_i))\, v_j$：正确的值，再加上其他所有的值，权重是它们的键与 $k_i$ 的重叠程度。正交的键互不重叠，但 $d$ 维空间里只有 $d$ 个这样的键。不经任何训练、用随机的键，读出结果有多大比例指向存下的 $K$ 个值中正确的那一个？（`attnkit.mqar.memory_recall`：恒等特征、带归一化的 elu+1 特征，以及对同样的键值对做 softmax 读出作为对照。）

# %%
ks = [2, 4, 8, 16, 32, 64]
rows = []
for d in (16, 64):
    for memory, fmap, label in (("linear", "identity", "ch11.mem_identity"), ("linear", "elu+1", "ch11.mem_elu"),
                                ("softmax", "identity", "ch11.mem_softmax")):
        rows.append([d, t(label)] + [f"{mqar.memory_recall(k, d, memory=memory, feature_map=fmap):.2f}" for k in ks])
print(t("ch11.memory_title"))
print(viz.format_table([t("ch11.col.dim"), t("ch11.col.memory")] + [f"K = {k}" for k in ks], rows))
print(t("ch11.orthogonal", d=16, acc=mqar.memory_recall(16, 16, keys="orthogonal")))

# %% [markdown] tags=["lang-en"]
# The fixed state fills up: with identity features it reads back nearly everything while $K$ is
# well below $d$ and mixes values up as $K$ approaches $d$; positive features (elu+1, where every
# $\phi(k_i) \cdot \phi(k_j) > 0$) mix them up much sooner. The softmax read of the same pairs
# stays near 1, because the cache keeps each pair separately and the softmax sharpens the best
# match. A trained model does better than random keys — it learns keys that overlap less — but
# it cannot beat the arithmetic of the state: with one head of width $d$, each linear layer of
# the race keeps $d(d + 1)$ numbers in all, shared by every token written into it, the filler
# tokens included, so widening the model is what gives the pairs room. Whether the trained models
# of the sweep hit this limit, and at which width, is what section 4's lines say.
#
# The window fails for a simpler reason: it forgets. A causal window of $w$ lets a query attend
# to the $w - 1$ tokens before it, so one attention step can copy a value only from that close.
# With the convolutions (kernel $c$) and two layers, information can travel at most
# $2(w + c - 2)$ positions, but only if the first layer learns to carry every pair forward for the
# second one to find. In the held-out batch of the sweep, the share of queries whose value lies
# within one window, and within that two-layer reach, and the window model's recall at each width
# beside what answering exactly the first share and guessing the rest would give:

# %% [markdown] tags=["lang-zh"]
# 固定大小的状态会被填满：用恒等特征时，只要 $K$ 远小于 $d$，几乎所有值都能读回来；$K$ 接近 $d$ 时，值就开始混在一起；用正特征（elu+1，任意两个 $\phi(k_i) \cdot \phi(k_j) > 0$）时，混淆来得早得多。对同样的键值对做 softmax 读出，准确率始终接近 1，因为缓存把每一对分开保存，softmax 又会突出最匹配的那一个。训练过的模型比随机的键做得好——它会学到彼此重叠更少的键——但它赢不过状态大小这笔账。单个头、宽度为 $d$ 时，比赛中每个线性层总共只保存 $d(d + 1)$ 个数，写入它的所有词元（包括占位词元）都挤在这些数里。所以要加宽模型，才能给键值对腾出空间。扫描中训练出来的模型是否碰到了这个极限、在哪个宽度上碰到，要看第 4 节打印的那几行。
#
# 窗口失败的原因更简单：它会遗忘。长度为 $w$ 的因果窗口让一个查询只能关注它前面的 $w - 1$ 个词元，所以一步注意力只能从这么近的地方复制值。加上卷积（核大小 $c$）和两层，信息最多能传递 $2(w + c - 2)$ 个位置，但前提是第一层学会把每个键值对往后传，好让第二层找到。在扫描的留出批次里，值落在一个窗口之内、以及落在这个两层视野之内的查询所占的比例；再列出窗口模型在每个宽度上的召回率，旁边是“恰好答对前一部分、其余全靠猜”所能达到的水平：

# %%
w, c = task["window_size"], task["conv_kernel"]
reach = 2 * (w + c - 2)
for L, k in sorted({(L, K) for L, _, K in points}):
    xs, ys = mqar.mqar_batch(256, task["vocab_size"], L, k, seed=10**6)                 # the held-out batch of seed 0
    q = torch.nonzero(ys != mqar.IGNORE_INDEX)                                          # (queries, 2): row, position
    value_pos = torch.stack([(xs[b, : 2 * k:2] == xs[b, p]).nonzero()[0, 0] * 2 + 1 for b, p in q.tolist()])
    gap = q[:, 1] - value_pos                                                           # tokens back to the value
    one = (gap <= w - 1).double().mean().item()
    ceiling = one + (1 - one) * settings["chance"]
    print(t("ch11.reach", l=L, w=w, c=c, reach=reach, k=k, one=one, two=(gap <= reach).double().mean().item(),
            ceiling=ceiling))
    for L2, d, K in points:
        if (L2, K) == (L, k):
            acc = summary[("window", L, d, K)]["median"]
            print(t("ch11.reach_model", d=d, acc=acc, ceiling=ceiling,
                    vs=t("ch11.word.above" if acc > ceiling else "ch11.word.below" if acc < ceiling else "ch11.word.level")))

# %% [markdown] tags=["lang-en"]
# A window model above that level learned to pass pairs on from layer to layer; one below it did
# not even answer every query whose value lies within its window, and a wider model does not
# bring the values closer. Recall against the state a
# model keeps is the trade-off Based (Arora et al. 2024, §3) plots, and section 4's figure draws
# it from the sweep: softmax buys its recall with a state that grows with the context; the window
# and the linear attentions, with forgetting or without, keep a state that does not grow; which
# of them recall at which state size, and where the hybrid lands, are the lines printed under
# that figure. The selector's memory formulas and that plot are two views of the same choice.

# %% [markdown] tags=["lang-zh"]
# 窗口模型的召回率高于这个水平，说明它学会了把键值对一层层往后传；低于这个水平，说明它连值就在窗口之内的查询都没有全部答对。模型再宽，也不会让值离得更近。“召回率—模型所保存的状态大小”正是 Based（Arora 等，2024，§3）画出的那种权衡，第 4 节的图用扫描数据把它画了出来：softmax 用随上下文增长的状态换来召回能力；窗口和线性注意力（不论带不带遗忘）保存的状态不随上下文增长；它们当中哪些在多大的状态下能召回、混合结构落在哪里，就是那张图下面打印的几行。选择器的内存公式和那张图，是同一个选择的两种视角。

# %% [markdown] tags=["lang-en"]
# ## 6. Explorer: what fits in a budget
#
# Pick a sequence length, a memory budget, and which memory counts (a forward pass, a training
# step, decoding one token). Each bar is one mechanism's memory by the selector's formula (one
# layer of that library's default size); green fits, grey does not, and the red line is the
# budget. Decoding shows the KV cache at work: at long lengths the windows and the linear state
# stay flat while full attention's cache grows. So does the strided pattern's: in an
# autoregressive decoder each later query attends to its own residue class modulo the stride, and
# every class keeps being written, so no key can ever be dropped (a test checks it on the mask).

# %% [markdown] tags=["lang-zh"]
# ## 6. 交互控件：预算里放得下什么
#
# 选择序列长度、内存预算，以及计算哪种内存（一次前向计算、一次训练步、解码一个词元）。每根横条是一种机制按选择器公式算出的内存（一层，那个库的默认大小）；绿色表示放得下，灰色表示放不下，红线是预算。切换到解码时可以看到 KV 缓存的作用：序列很长时，窗口和线性注意力的状态保持不变，而全注意力的缓存不断增长。跨步模式的缓存也在增长。自回归解码时，后面的每个查询都要关注与自己模 stride 同余的那一类位置，而每一类都不断有新词元写入。所以任何一个键都不能丢（一个测试在掩码上检查了这一点）。

# %% tags=["nbval-ignore-output"] alt="ch11.alt.explorer"
explorer = wf.factory_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The numbers behind the picture, for three settings:

# %% [markdown] tags=["lang-zh"]
# 图背后的数字，取三组设置：

# %%
for n, budget, mode in ((8192, 200, "forward"), (131072, 100, "decode"), (4096, 50, "training")):
    data = wf.budget_table(n, budget, mode)
    print(t("ch11.fit_line", n=n, budget=budget, mode=t(f"factory.w.mode.{mode}"), k=len(data["fit"]),
            names=t("ch11.sep").join(data["fit"]) or "—"))

# %% [markdown] tags=["lang-en"]
# ## 7. Pitfalls
#
# **One seed is not a result.** Small models on synthetic tasks learn in sudden jumps, and
# whether the jump comes within the training budget depends on the seed. The widest spread in the
# sweep:

# %% [markdown] tags=["lang-zh"]
# ## 7. 常见陷阱
#
# **一个种子不算结论。** 小模型在合成任务上的学习是突然跃升的，跃升会不会在训练预算之内出现，取决于种子。扫描实验中波动最大的几处：

# %%
widest = sorted(summary_rows, key=lambda s: s["min"] - s["max"])[:3]
for s in widest:
    print(t("ch11.spread", name=s["mechanism"], l=s["seq_len"], w=s["width"], k=s["num_pairs"], lo=s["min"],
            hi=s["max"], n=len(s["seeds"])))

# %% [markdown] tags=["lang-en"]
# A single run at any of these points could have told either story. Compare mechanisms by the
# median *and* the spread over seeds, as the table of section 4 does.
#
# **A short profile says little about a long one.** The ranking by latency changes with the
# length: a quadratic cost is small at short lengths and dominates at long ones. From the
# benchmark file, the fastest three at the shortest and at the longest length by the median, each
# with its spread, and where full attention ranks, among the mechanisms timed in the same run as
# full attention (section 3: runs do not compare). `block_sparse` is left out: block-diagonal, it
# never lets a token see another block (section 1), so it does not compute what the others do. The
# line says whether neighbours in the ranking are closer than their spreads, where a rerun may
# swap them:

# %% [markdown] tags=["lang-zh"]
# 在这些设置中的任何一处，只跑一次都可能得出完全相反的结论。比较机制时要看多个种子的中位数*和*波动，就像第 4 节的表格那样。
#
# **短序列上的性能分析说明不了长序列。** 按延迟的排名会随长度改变：平方级的开销在短序列上不起眼，在长序列上却占了大头。从基准测试文件中按中位数取最短和最长长度下最快的三种（每种都附上波动），以及全注意力排在第几；只在与全注意力同一次运行中测出的机制里排名（第 3 节说过，不同运行之间不能比较）。`block_sparse` 不参与排名：它是块对角的，词元永远看不到别的块（第 1 节），算的不是其他机制算的东西。输出还会说明排名相邻的两种是否比各自的波动还接近，那样重跑时可能互换位置：

# %%
for n in (lens[0], lens[-1]):
    done = [k for k in kinds if (k, n) in by and "skipped" not in by[(k, n)] and run_of[k] is run_of["full"]
            and k != "block_sparse"]                          # block-diagonal: not the same computation
    ranked = sorted(done, key=lambda k: by[(k, n)]["median_latency_ms"])
    close = [f"{a}/{b}" for a, b in zip(ranked[:3], ranked[1:4], strict=False)  # gap within the larger spread
             if by[(b, n)]["median_latency_ms"] / by[(a, n)]["median_latency_ms"] - 1
             < max(spread(by[(a, n)]), spread(by[(b, n)])) / 100]
    print(t("ch11.fastest", n=n, names=t("ch11.sep").join(f"{k} ({ms(by[(k, n)])})" for k in ranked[:3]),
            m=len(done), r=ranked.index("full") + 1, full=ms(by[("full", n)]),
            close=t("ch11.sep").join(close) if close else t("ch11.none_close")))

# %% [markdown] tags=["lang-en"]
# ## 8. Exercises
#
# Each check prints what is wrong and a hint: the one for your mistake when the checker recognises
# it, otherwise a nudge that grows stronger at the next failure; `show_hint("ch11.ex1")` (and so on)
# prints every hint, the full answer last. Question 1 was asked in section 4, before section 5
# answers it.
#
# **Exercise 1.** Build MQAR sequences from their random draws. Given `keys` and `values`, both
# (B, K) long tensors (row $b$ holds the $K$ pairs of sequence $b$), `slots` (B, K) (key $i$ is
# queried at query slot `slots[b, i]`, slot 0 being the first position after the pairs, slots two
# tokens apart) and `seq_len`, return `(inputs, targets)`, both (B, seq_len) long tensors, laid out
# as in section 4: pairs first, filler 0 elsewhere, targets $-100$ except at the queries.
# (`attnkit.mqar.mqar_batch` is off limits.)

# %% [markdown] tags=["lang-zh"]
# ## 8. 练习
#
# 每个检查都会指出哪里不对并给出提示：检查器认出了你的错误，就给出针对这个错误的提示，否则给出一般性的提示，下次失败时更具体。问题 1 已在第 4 节末尾提出，在第 5 节解答之前。运行 `show_hint("ch11.ex1")`（其余练习类推）可以看到全部提示，最后一条是完整答案。
#
# **练习 1**：由随机抽取的结果构造 MQAR 序列。给定 `keys` 和 `values`，两者都是 (B, K) 的整数张量（第 $b$ 行是第 $b$ 个序列的 $K$ 个键值对），`slots` 形状为 (B, K)（第 $i$ 个键在查询槽位 `slots[b, i]` 上被查询；槽位 0 是键值对之后的第一个位置，相邻槽位相隔两个词元），以及 `seq_len`；返回 `(inputs, targets)`，两者都是 (B, seq_len) 的整数张量，布局与第 4 节相同：键值对在前，其余位置填入 0，目标除查询位置外都是 $-100$。（不要调用 `attnkit.mqar.mqar_batch`。）

# %%
from attnkit.exercises import show_hint  # noqa: F401  (show_hint("ch11.ex1") prints every hint)
from attnkit.exercises.ch11 import check_max_len, check_mqar_layout, check_pick, check_recaller


def my_mqar_layout(keys, values, slots, seq_len):
    # your code here
    raise NotImplementedError


_ = check_mqar_layout(my_mqar_layout)

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** A selector rule. Up to which length does the materialising path (`math`) fit?
# Return the largest integer $N$ for which its forward memory of section 2,
# $4\,(P + 5 N d + 3 H N^2)$ bytes with $P = 4d^2 + 4d$, is at most `budget_mb` MB
# ($1\ \text{MB} = 2^{20}$ bytes); 0 if not even $N = 1$ fits.
# (`attnkit.factory.memory_breakdown`, and so `AttentionSelector.memory_mb`, is off limits.)

# %% [markdown] tags=["lang-zh"]
# **练习 2**：一条选择规则。显式构造权重的路径（`math`）最长能用到多长的序列？返回满足下面条件的最大整数 $N$。条件是：第 2 节中它的前向内存 $4\,(P + 5 N d + 3 H N^2)$ 字节（其中 $P = 4d^2 + 4d$）不超过 `budget_mb` MB（$1\ \text{MB} = 2^{20}$ 字节）；如果连 $N = 1$ 都放不下，返回 0。（不要调用 `attnkit.factory.memory_breakdown`，因而也不能用 `AttentionSelector.memory_mb`。）

# %%
def my_max_len(budget_mb, d_model, n_heads):
    # your code here
    raise NotImplementedError


_ = check_max_len(my_max_len)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Reading a profile. `profiles` maps a mechanism's name to a dict with
# `avg_latency_ms`, `memory_mb` (measured), `formula_mb`, `batch_size` and `seq_len` — the
# profiles may come from runs at different batch sizes and lengths. Return the name with the
# most tokens per second among those whose *measured* memory is at most `budget_mb`, or `None`
# if none is.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：读懂性能分析结果。`profiles` 把机制的名字映射到一个字典，其中有 `avg_latency_ms`、`memory_mb`（实测值）、`formula_mb`、`batch_size` 和 `seq_len`——这些结果可能来自不同批次大小和长度的运行。在*实测*内存不超过 `budget_mb` 的机制中，返回每秒处理词元数最多的那个名字；如果一个都没有，返回 `None`。

# %%
def my_pick(profiles, budget_mb):
    # your code here
    raise NotImplementedError


_ = check_pick(my_pick)

# %% [markdown] tags=["lang-en"]
# **Stretch exercise.** Win the race without a growing cache. Return a trained `TinyLM` for the
# live race's task (vocabulary 32, length 32, 8 pairs) whose layers all keep a state that does not
# grow with the length — window, linear, Performer or cosFormer attention, in any mix and width,
# as long as the windows and convolutions together do not reach the whole sequence — and that
# recalls at least 90 % of the queries of the checker's held-out batches (a fixed one, and one
# drawn afresh at each check). (Section 5 says what limits a fixed state;
# `attnkit.mqar.train_mqar(...)["model"]` is allowed.)

# %% [markdown] tags=["lang-zh"]
# **挑战题**：不用增长的缓存赢下比赛。为现场比赛的任务（词表 32，长度 32，8 个键值对）返回一个训练好的 `TinyLM`。它的每一层所保存的状态都不随长度增长——窗口、线性、Performer 或 cosFormer 注意力，可任意组合、任意宽度，只是窗口和卷积合起来不能覆盖整个序列。它还要在检查器的留出批次上至少召回 90% 的查询：一个批次是固定的，另一个每次检查时重新抽取。（第 5 节说明了固定状态受什么限制；可以用 `attnkit.mqar.train_mqar(...)["model"]`。）

# %%
def my_recaller():
    # your code here: train and return a TinyLM
    raise NotImplementedError


_ = check_recaller(my_recaller)

# %% [markdown] tags=["lang-en"]
# ## 9. Summary
#
# - A factory puts every mechanism behind one config and one forward; the modules are the
#   chapters' own, so a swap changes the mechanism and nothing else (section 1).
# - The selector turns the chapters' cost formulas into a choice per scenario and budget, and
#   says why; a formula is a model of the code, and the profiler checks it: full attention is
#   costed as the fused kernel the factory runs, which never holds the $N^2$ scores, and the
#   materialising path that does is its own entry, `math`; the Python-tiled `flash` teaches the
#   idea but is slower than the fused `full` (sections 2, 3). Timings are compared by
#   their medians and only beyond their spread (sections 3, 7).
# - On multi-query associative recall, the live race at length 32 compares softmax and linear
#   attention at about the same state: it shows the feature map's interference and the training,
#   not the state's size. The trade-off between recall and state size comes from the sweep at
#   length 128, where the KV cache is several times the linear state; who solves which width,
#   where the Based-style hybrid and the linear attentions with forgetting land, is printed from
#   its data (section 4). What a layer keeps is the reason: a KV cache that grows, a fixed state
#   shared by every pair (decayed or overwritten in the forms with forgetting), or a window that
#   forgets (section 5). Small models learn in jumps: compare by the median and the spread over
#   seeds (section 7).
# - Choosing an attention is choosing a point on two trade-offs at once: memory and speed at your
#   length (the selector, the profiler, the explorer) and recall against state size (the race).
#
# ## References
# - S. Arora, S. Eyuboglu, A. Timalsina, I. Johnson, M. Poli, J. Zou, A. Rudra, C. Ré, *Zoology: Measuring and Improving Recall in Efficient Language Models*, 2023 (arXiv:2312.04927) — §3 (associative recall and the MQAR task), Figure 2 (MQAR accuracy against model width), the short convolution of its models.
# - S. Arora, S. Eyuboglu, M. Zhang, A. Timalsina, S. Alberti, D. Zinsley, J. Zou, A. Rudra, C. Ré, *Simple linear attention language models balance the recall-throughput tradeoff* (Based), ICML 2024 (arXiv:2402.18668) — §3 (the trade-off between recall and recurrent state size), the window + linear hybrid.
# - A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, *Transformers are RNNs*, ICML 2020 — eqs. 16-20 (the recurrent state of causal linear attention, chapter 09).
# - I. Schlag, K. Irie, J. Schmidhuber, *Linear Transformers Are Secretly Fast Weight Programmers*, ICML 2021 — the capacity of a $d$-dimensional outer-product memory (at most $d$ orthogonal keys).
# - Z. Qin et al., *cosFormer: Rethinking Softmax in Attention*, ICLR 2022; I. Beltagy, M. Peters, A. Cohan, *Longformer*, 2020 (§3.1, the window); T. Dao et al., *FlashAttention*, NeurIPS 2022 (why the fused kernel needs no $N \times N$ matrix; chapter 07); J. Ainslie et al., *GQA*, EMNLP 2023 (chapter 05).

# %% [markdown] tags=["lang-zh"]
# ## 9. 小结
#
# - 工厂把每种机制都放到同一个配置和同一个前向接口后面；模块就是各章自己的模块，所以替换只改变机制本身，别的都不变（第 1 节）。
# - 选择器把各章的开销公式变成针对场景和预算的选择，并说明理由；公式只是代码的一个模型，要用性能分析器来核对。全注意力按工厂实际运行的融合算子来估计，它从不保存 $N^2$ 个分数；保存这些分数的显式路径单列为 `math`。用 Python 分块的 `flash` 用来讲清思路，但比融合的 `full` 慢（第 2、3 节）。比较计时要看中位数，而且差别要超出波动才算数（第 3、7 节）。
# - 在多查询关联召回上，长度 32 的现场比赛在状态差不多大的条件下比较 softmax 和线性注意力：它显示的是特征映射的干扰和训练，而不是状态的大小。召回能力与状态大小之间的权衡来自长度 128 的扫描，那里的 KV 缓存是线性状态的好几倍；谁在哪个宽度上解决了任务、Based 式的混合结构和带遗忘的线性注意力落在哪里，都由数据打印出来（第 4 节）。原因在于每层保存了什么：不断增长的 KV 缓存，所有键值对共用的固定状态（带遗忘的形式会衰减或覆盖它），或者会遗忘的窗口（第 5 节）。小模型的学习是跳跃式的：比较时要看各种子的中位数和波动（第 7 节）。
# - 选择注意力，就是同时在两种权衡上选一个点：在你的序列长度下的内存与速度（选择器、性能分析器、交互控件），以及召回能力与状态大小（比赛）。
#
# ## 参考文献
# - S. Arora、S. Eyuboglu、A. Timalsina、I. Johnson、M. Poli、J. Zou、A. Rudra、C. Ré，*Zoology: Measuring and Improving Recall in Efficient Language Models*，2023（arXiv:2312.04927）——§3（关联召回与 MQAR 任务）、图 2（MQAR 准确率与模型宽度的关系），以及其模型中的短卷积。
# - S. Arora、S. Eyuboglu、M. Zhang、A. Timalsina、S. Alberti、D. Zinsley、J. Zou、A. Rudra、C. Ré，*Simple linear attention language models balance the recall-throughput tradeoff*（Based），ICML 2024（arXiv:2402.18668）——§3（召回能力与状态大小之间的权衡）、窗口 + 线性的混合结构。
# - A. Katharopoulos、A. Vyas、N. Pappas、F. Fleuret，*Transformers are RNNs*，ICML 2020——式 16–20（因果线性注意力的状态，第 9 章）。
# - I. Schlag、K. Irie、J. Schmidhuber，*Linear Transformers Are Secretly Fast Weight Programmers*，ICML 2021——$d$ 维外积记忆的容量（最多 $d$ 个正交的键）。
# - Z. Qin 等，*cosFormer: Rethinking Softmax in Attention*，ICLR 2022；I. Beltagy、M. Peters、A. Cohan，*Longformer*，2020（§3.1，窗口）；T. Dao 等，*FlashAttention*，NeurIPS 2022（融合算子为什么不需要 $N \times N$ 矩阵；第 7 章）；J. Ainslie 等，*GQA*，EMNLP 2023（第 5 章）。
