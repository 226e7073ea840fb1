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
# # 07 · Flash attention: exact attention without the N × N matrix
#
# **What you will learn**
# - why attention on a GPU is limited by *moving bytes*, not by arithmetic;
# - how chapter 03's online softmax extends to a weighted sum of values, so attention can be
#   computed one **tile** of scores at a time — exactly, not approximately;
# - the two loop orders (FlashAttention-1: outer loop over keys/values; FlashAttention-2: outer
#   loop over queries), and how a causal mask lets whole tiles be skipped;
# - measured on this machine: peak memory that grows linearly in $N$ instead of quadratically,
#   and an honest look at the time of a Python tiling loop;
# - the backward pass that recomputes tiles instead of storing the attention weights.
#
# **You need** chapter 01 (scaled dot-product attention, causal masks) and chapter 03 (the
# online softmax: a running max and a running sum).

# %% [markdown] tags=["lang-zh"]
# # 07 · FlashAttention：不构造 N × N 矩阵的精确注意力
#
# **本章内容**
# - 为什么在 GPU 上，注意力的瓶颈是*搬运数据*，而不是算术运算；
# - 第 3 章的在线 softmax 如何推广到对值的加权求和，从而可以一次只算一个**分块**的分数——结果是精确的，而不是近似；
# - 两种循环顺序（FlashAttention-1：外层循环遍历键和值；FlashAttention-2：外层循环遍历查询），以及因果掩码如何让整个分块直接跳过；
# - 在本机上实测：内存峰值随 $N$ 线性增长，而不是平方增长；同时如实看一看 Python 分块循环要花多少时间；
# - 反向传播：不保存注意力权重，而是重新计算各个分块。
#
# **预备知识**：第 1 章（缩放点积注意力、因果掩码）和第 3 章（在线 softmax：当前最大值与当前累加和）。

# %%
import math

import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch07  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import viz
from attnkit.core import scaled_dot_product_attention
from attnkit.flash import flash_attention, io_flash, io_standard, measure_peak_bytes
from attnkit.schematics import flash as flash_schematics
from attnkit.softmax import online_softmax
from attnkit.timing import one_thread, round_robin_medians
from attnkit.widgets import flash as wf

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: small tile operations gain nothing from more, and timings repeat
print(t("ch07.versions", torch=torch.__version__.split("+")[0], n=torch.get_num_threads()))

# %% [markdown] tags=["lang-en"]
# ## 1. Why attention is memory-bound
#
# A GPU has two kinds of memory. **HBM** (high-bandwidth memory) is large — 40–80 GB on an
# NVIDIA A100 — but every byte of it travels over a bus of 1.5–2.0 TB/s. **SRAM**, on the chip
# next to the arithmetic units, is tiny — 192 KB per streaming multiprocessor, 108 of them — but
# about ten times faster (≈ 19 TB/s; these figures are from the FlashAttention paper, §2.1).
# Meanwhile the tensor cores can do 312 TFLOP/s of half-precision matrix multiplication
# (FlashAttention-2 paper, §3.1).
#
# An operation cannot finish before its arithmetic is done (its FLOPs divided by the peak FLOP/s),
# nor before its bytes have moved (its bytes divided by the bandwidth): the longer of the two sets
# its time. So an operation is **memory-bound** when it does fewer FLOPs per byte it moves than the
# ratio (peak FLOP/s) / (bandwidth) — and then faster arithmetic does not help. Standard attention
# runs three steps, each reading its input from HBM and writing its result back:
# $S = QK^\top$, $P = \mathrm{softmax}(S)$, $O = PV$. Let us count FLOPs and bytes for one head
# with $N = 4096$ and $d = 64$ in float16 (2 bytes an element; the softmax costs about 5 FLOPs
# an element: max, subtract, exp, sum, divide):

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么注意力受限于内存带宽
#
# GPU 上有两种内存。**HBM**（高带宽内存）容量大——NVIDIA A100 上有 40–80 GB——但其中的每个字节都要经过带宽为 1.5–2.0 TB/s 的总线。**SRAM** 就在芯片上，紧挨着运算单元，容量很小——每个流式多处理器（SM）只有 192 KB，一共 108 个——速度却快约十倍（约 19 TB/s；以上数字取自 FlashAttention 论文 §2.1）。与此同时，张量核心的半精度矩阵乘法算力可达 312 TFLOP/s（FlashAttention-2 论文 §3.1）。
#
# 一个操作既不可能在算术运算做完之前结束（浮点运算次数除以峰值算力），也不可能在数据搬完之前结束（字节数除以带宽）：两者中较长的那个决定了它的耗时。因此，如果一个操作每搬运一个字节所做的浮点运算少于“峰值算力 / 带宽”这个比值，它就是**受限于内存带宽**（memory-bound）的——这时算得再快也无济于事。标准注意力分三步，每一步都从 HBM 读入输入，再把结果写回 HBM：$S = QK^\top$、$P = \mathrm{softmax}(S)$、$O = PV$。下面以单个头、$N = 4096$、$d = 64$、float16 为例（每个元素 2 字节；softmax 每个元素约需 5 次浮点运算：求最大值、相减、exp、求和、相除），统计各步的浮点运算次数和搬运的字节数：

# %%
PEAK_FLOPS = 312e12   # A100, float16 tensor cores (FLOP/s)
HBM_BW = 1.5e12       # A100 40 GB, HBM bandwidth (bytes/s)
N, d, BYTES = 4096, 64, 2

steps = {  # name: (FLOPs, elements read + written in HBM)
    "S = QKᵀ": (2 * N * N * d, 2 * N * d + N * N),
    "P = softmax(S)": (5 * N * N, 2 * N * N),
    "O = PV": (2 * N * N * d, N * N + 2 * N * d),
}
rows = []
for name, (flops, elems) in steps.items():
    t_compute, t_memory = flops / PEAK_FLOPS, elems * BYTES / HBM_BW
    bound = t("ch07.bound.memory") if t_memory > t_compute else t("ch07.bound.compute")
    rows.append([name, f"{flops:.2e}", f"{elems * BYTES:.2e}", f"{flops / (elems * BYTES):.1f}",
                 f"{t_compute * 1e6:.1f}", f"{t_memory * 1e6:.1f}", bound])
print(viz.format_table([t("ch07.col.step"), t("ch07.col.flops"), t("ch07.col.bytes"),
                        t("ch07.col.intensity"), t("ch07.col.t_compute"), t("ch07.col.t_memory"),
                        t("ch07.col.bound")], rows))
print(t("ch07.ridge", r=PEAK_FLOPS / HBM_BW))

# %% [markdown] tags=["lang-en"]
# All three steps sit below the ridge point of 208 FLOPs per byte, and the softmax is far below
# it (1.2 FLOPs per byte): in this model the GPU spends most of its time waiting for the
# $N \times N$ matrices $S$ and $P$ to travel to HBM and back. FlashAttention's idea (Dao et al.
# 2022) is to never write them: load a block of $Q$ and a block of $K, V$ into SRAM, compute that
# tile of scores, fold it into the output, and move on. The only obstacle is the softmax, which
# needs a whole row before it can normalise — and chapter 03 already removed that obstacle.
#
# The picture shows one step of that loop (in FlashAttention-2's order, section 2): a block of
# queries $Q_i$ sits on chip while the blocks $K_j, V_j$ stream past it. Each step makes a small
# tile of scores on chip, and updates three things kept per row of $Q_i$: the running max $m$, the
# running sum $\ell$ and an accumulator of the output. Only $O_i$ is written back, once.

# %% [markdown] tags=["lang-zh"]
# 三个步骤都低于每字节 208 次浮点运算这个临界点（ridge point），softmax 更是远远低于它，每字节只有 1.2 次。按这个模型，GPU 大部分时间都在等待：等 $N \times N$ 的矩阵 $S$ 和 $P$ 写入 HBM，再等它们被读回来。FlashAttention（Dao 等，2022）的思路是根本不把它们写入 HBM：把 $Q$ 的一块和 $K$、$V$ 的一块装入 SRAM，算出这一分块的分数，把它并入输出，然后处理下一块。唯一的障碍是 softmax：它要看到整行才能归一化——而第 3 章已经扫清了这个障碍。
#
# 下图画的是这个循环中的一步（按 FlashAttention-2 的顺序，见第 2 节）：一块查询 $Q_i$ 留在芯片上，$K_j, V_j$ 各块依次从旁边流过。每一步都在芯片上算出一小块分数，并更新 $Q_i$ 每一行各自保存的三样东西：当前最大值 $m$、当前累加和 $\ell$，以及输出的累加器。写回 HBM 的只有 $O_i$，而且只写一次。

# %% alt="ch07.alt.tiles"
_ = flash_schematics.tiles_figure(n_blocks=4, q_block=1, k_block=2)

# %% [markdown] tags=["lang-en"]
# ## 2. From the online softmax to tiled attention
#
# Chapter 03 computed a softmax in one streaming pass, keeping only a running max $m$ and a
# running sum $\ell = \sum_j e^{x_j - m}$; when a new chunk raises the max to $m'$, the old sum
# is rescaled by $e^{m - m'}$:

# %% [markdown] tags=["lang-zh"]
# ## 2. 从在线 softmax 到分块注意力
#
# 第 3 章只用一次流式遍历就算出了 softmax，只需维护当前最大值 $m$ 和当前累加和 $\ell = \sum_j e^{x_j - m}$；当新的一段把最大值抬高到 $m'$ 时，旧的累加和要乘以 $e^{m - m'}$，换算到新的最大值上：

# %%
x = torch.randn(3, 10) * 4
print(t("ch07.online_eq", ok=torch.allclose(online_softmax(x, chunk_size=3), torch.softmax(x, -1), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# Attention needs $o_i = \sum_j \mathrm{softmax}_j(s_{ij})\, v_j$, a softmax-weighted sum of
# values. Keep, for every query row, an *unnormalised* accumulator $a = \sum_j e^{s_j - m} v_j$
# next to $m$ and $\ell$. By hand first: one query row, six keys in two tiles of three, and each
# value a single number. Tile 1 sets $m$, $\ell$ and $a$; tile 2 brings a larger score, so what
# tile 1 left is rescaled to the new max before tile 2 is added:

# %% [markdown] tags=["lang-zh"]
# 注意力要计算的是 $o_i = \sum_j \mathrm{softmax}_j(s_{ij})\, v_j$，即用 softmax 权重对值加权求和。为此，对每个查询行，在 $m$ 和 $\ell$ 之外再维护一个*未归一化*的累加器 $a = \sum_j e^{s_j - m} v_j$。先手算一遍：一个查询行，六个键分成两个分块、每块三个，每个值只是一个数。第 1 个分块确定 $m$、$\ell$ 和 $a$；第 2 个分块带来了更大的分数，所以先把第 1 个分块留下的结果换算到新的最大值上，再加上第 2 个分块：

# %%
s_row = torch.tensor([1.0, 3.0, 0.0, 5.0, 2.0, 4.0])        # one query's scores: tile 1, then tile 2
v_row = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])  # each key's value, one number each
m_run, l_run, a_run = -math.inf, 0.0, 0.0                   # running max, sum, accumulator
for tile, cols in enumerate((slice(0, 3), slice(3, 6)), start=1):
    m_new = max(m_run, s_row[cols].max().item())
    rescale = math.exp(m_run - m_new)                        # 0 for the first tile: nothing to rescale
    p = torch.exp(s_row[cols] - m_new)
    l_run = rescale * l_run + p.sum().item()
    a_run = rescale * a_run + (p @ v_row[cols]).item()
    m_run = m_new
    print(t("ch07.by_hand", tile=tile, m=m_run, r=rescale, l=l_run, a=a_run))
print(t("ch07.by_hand_out", tiled=a_run / l_run, exact=(torch.softmax(s_row, 0) @ v_row).item()))

# %% [markdown] tags=["lang-en"]
# Tile 2 raised the max from 3 to 5, so tile 1's sum and accumulator were multiplied by
# $e^{3 - 5} = 0.135$ before tile 2's terms were added; the ratio $a / \ell$ is then the exact
# softmax-weighted value. The same holds for every row and every tile (FlashAttention-2,
# Algorithm 1): a new tile of scores $S^{(t)}$ with its values $V^{(t)}$ updates
#
# $$m' = \max\big(m,\ \mathrm{rowmax}(S^{(t)})\big), \qquad P = e^{S^{(t)} - m'},$$
# $$\ell' = e^{m - m'}\,\ell + \mathrm{rowsum}(P), \qquad a' = e^{m - m'}\,a + P\,V^{(t)},$$
#
# and after the last tile $o = a / \ell$. The same rescaling factor $e^{m - m'}$ fixes both the
# sum and the accumulator, because both were computed relative to the old max. Here it is in a
# few lines: an outer loop over blocks of queries, an inner loop over blocks of keys and values.

# %% [markdown] tags=["lang-zh"]
# 第 2 个分块把最大值从 3 抬高到 5，所以第 1 个分块的累加和与累加器先乘以 $e^{3 - 5} = 0.135$，再加上第 2 个分块的各项；这时 $a / \ell$ 恰好就是精确的 softmax 加权值。对每一行、每个分块都是如此（FlashAttention-2，算法 1）：每来一个新的分数分块 $S^{(t)}$ 及其对应的值 $V^{(t)}$，就按下式更新：
#
# $$m' = \max\big(m,\ \mathrm{rowmax}(S^{(t)})\big), \qquad P = e^{S^{(t)} - m'},$$
# $$\ell' = e^{m - m'}\,\ell + \mathrm{rowsum}(P), \qquad a' = e^{m - m'}\,a + P\,V^{(t)},$$
#
# 处理完最后一个分块后，$o = a / \ell$。同一个缩放因子 $e^{m - m'}$ 同时修正了累加和与累加器，因为两者都是相对于旧的最大值算出来的。下面用几行代码实现它：外层循环遍历查询的各块，内层循环遍历键和值的各块。

# %%
def tiled_attention(q, k, v, block=4):
    L, S = q.shape[0], k.shape[0]
    out = torch.empty(L, v.shape[1])
    for i in range(0, L, block):                            # one block of queries at a time
        qi = q[i:i + block] / math.sqrt(q.shape[1])          # (Bq, d)
        m = torch.full((qi.shape[0], 1), -math.inf)         # running max         (Bq, 1)
        l = torch.zeros(qi.shape[0], 1)                     # running sum of exp (Bq, 1)
        acc = torch.zeros(qi.shape[0], v.shape[1])          # unnormalised output (Bq, dv)
        for j in range(0, S, block):                        # stream over blocks of keys/values
            s = qi @ k[j:j + block].T                       # one tile of scores (Bq, Bk)
            m_new = torch.maximum(m, s.max(dim=1, keepdim=True).values)
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)                    # rescales what was accumulated
            l = alpha * l + p.sum(dim=1, keepdim=True)
            acc = alpha * acc + p @ v[j:j + block]
            m = m_new
        out[i:i + block] = acc / l                          # normalise once, at the end
    return out


q, k, v = torch.randn(10, 8), torch.randn(13, 8), torch.randn(13, 5)  # ragged: 10 and 13 are not multiples of 4
ours = tiled_attention(q, k, v)
print(t("ch07.matches_sdpa", ok=torch.allclose(ours, F.scaled_dot_product_attention(q, k, v), atol=1e-6)))
print(t("ch07.matches_flash", ok=torch.allclose(ours, flash_attention(q, k, v, block_q=4, block_k=4), atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# `attnkit.flash.flash_attention(q, k, v, is_causal, block_q, block_k, scale, alibi_slopes,
# loop_order, return_lse)` is the same algorithm for tensors of shape `(batch, heads, N, d)`,
# with both loop orders, causal masking that skips tiles, ALiBi biases, any block sizes, and the
# per-row log-sum-exp $m + \log \ell$ that the backward pass needs. The tests compare it with
# PyTorch's SDPA over random shapes and block sizes. A few of those comparisons:

# %% [markdown] tags=["lang-zh"]
# `attnkit.flash.flash_attention(q, k, v, is_causal, block_q, block_k, scale, alibi_slopes,
# loop_order, return_lse)` 是同一个算法，处理的是形状为 `(batch, heads, N, d)` 的张量。它支持两种循环顺序、能跳过分块的因果掩码、ALiBi 偏置和任意分块大小，还提供反向传播所需的每行 log-sum-exp $m + \log \ell$。测试在随机的形状和分块大小上把它与 PyTorch 的 SDPA 逐一比对。下面是其中几项比较：

# %%
qb, kb, vb = torch.randn(2, 4, 50, 16), torch.randn(2, 4, 50, 16), torch.randn(2, 4, 50, 16)  # (B, H, N, d)
for order in ("v1", "v2"):
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(qb, kb, vb, is_causal=causal)
        out = flash_attention(qb, kb, vb, is_causal=causal, block_q=16, block_k=12, loop_order=order)
        print(t("ch07.loop_order", order=order, causal=causal, ok=torch.allclose(out, ref, atol=1e-5)))
slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])  # ALiBi: bias -slope_h * |i - j| per head
i, j = torch.arange(50)[:, None], torch.arange(50)[None, :]
bias = -slopes[:, None, None] * (i - j).abs()        # (H, N, N), built only for this check
print(t("ch07.alibi",
        ok=torch.allclose(flash_attention(qb, kb, vb, alibi_slopes=slopes, block_q=16, block_k=16),
                          F.scaled_dot_product_attention(qb, kb, vb, attn_mask=bias), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **Two loop orders.** FlashAttention-1 (Algorithm 1) puts the *keys and values* in the outer
# loop: it loads a block $K_j, V_j$ once, then visits every block of queries, reading and writing
# that block's output, $m$ and $\ell$ from HBM each time, and keeps the output normalised after
# every tile (each tile is merged as a partial result, the way chapter 03 merges two parts).
# FlashAttention-2 swaps the loops: a block of queries stays on chip while all key/value blocks
# stream past, the output is normalised once at the end, and different query blocks are
# independent — which is what lets a GPU run them in parallel.
#
# **Causal tiles.** With a causal mask, query $i$ sees key $j$ only when $j \le i$. A tile whose
# every key comes after every one of its queries is entirely masked: it is skipped, not computed
# (exercise 2 asks for the test on the tile's bounds). Tiles on the diagonal are computed with the
# mask; tiles below it need no mask at all.
#
# **Question 1 (predict first).** $N = 1024$ queries and keys, tiles of $128 \times 128$, so
# $8 \times 8 = 64$ tiles, and a causal mask. How many of the 64 tiles does the loop compute?
# Answer before you step through the explorer below.

# %% [markdown] tags=["lang-zh"]
# **两种循环顺序。** FlashAttention-1（算法 1）把*键和值*放在外层循环：一块 $K_j, V_j$ 只装入一次，然后遍历所有查询块。每遇到一个查询块，都要从 HBM 读出它的输出以及 $m$ 和 $\ell$，算完再写回；每处理完一个分块，输出都保持归一化（每个分块作为一个部分结果合并进来，就像第 3 章合并两部分那样）。FlashAttention-2 交换了两层循环：一块查询留在芯片上，所有键/值块依次流过，输出只在最后归一化一次；而且不同的查询块彼此独立——GPU 正是靠这一点把它们并行执行。
#
# **因果掩码下的分块。** 有因果掩码时，只有当 $j \le i$ 时查询 $i$ 才能看到键 $j$。如果一个分块里的每个键都在它的每个查询之后，整块就都被屏蔽了：直接跳过，根本不计算（练习 2 会请你根据分块的边界写出这个判断）。对角线上的分块要带着掩码计算；对角线以下的分块则完全不需要掩码。
#
# **问题 1（先预测）**：查询和键都是 $N = 1024$ 个，分块大小为 $128 \times 128$，共 $8 \times 8 = 64$ 个分块，并使用因果掩码。循环要计算这 64 个分块中的多少个？先回答，再去下面的交互控件里一步步看。

# %%
from attnkit.exercises.ch07 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# ## 3. Explore: step through the loop
#
# The explorer runs the tiled loop on 16 queries and 16 keys in tiles of 4 × 4. Move **step**
# to advance one tile: blue tiles are done (their scores are drawn), the orange frame is the
# current tile, grey tiles are still to come and white ones are skipped by the causal mask.
# Switch the **loop order** to see FlashAttention-1 walk down columns and FlashAttention-2 along
# rows. The middle panel follows one **query row** (dashed): its running max $m$ and sum $\ell$
# after each key/value tile it has seen; the right panel compares its output so far with the
# exact attention output. (On GitHub, the static figure below shows the explorer as it opens: step 9
# of the causal FlashAttention-2 loop, tracing row 15.)

# %% [markdown] tags=["lang-zh"]
# ## 3. 动手探索：逐步执行循环
#
# 下面的交互控件在 16 个查询、16 个键上运行分块循环，分块大小为 4 × 4。拖动**步骤**滑块，每次前进一个分块：蓝色分块已经算完（画出了其中的分数），橙色框是当前分块，灰色分块尚未计算，白色分块被因果掩码跳过。切换**循环顺序**，可以看到 FlashAttention-1 沿着列向下走、FlashAttention-2 沿着行向右走。中间的图跟踪一个**查询行**（虚线框），画出它每处理完一个键/值分块后的当前最大值 $m$ 与累加和 $\ell$；右边的图把它目前的输出与精确的注意力输出相比较。（在 GitHub 上，下面的静态图是交互控件打开时的样子：因果掩码、FlashAttention-2 顺序下的第 9 步，跟踪第 15 行。）

# %% tags=["nbval-ignore-output"] alt="ch07.alt.explorer"
explorer = wf.flash_explorer()
display(explorer.widget)
explorer.static();

# %% [markdown] tags=["lang-en"]
# The numbers behind the panels come from the pure function `flash_step_state`. For the last
# row (causal, FlashAttention-2 order), each new key/value tile raises the max and adds to the
# sum, and the output reaches the exact value when the row's last tile is done:

# %% [markdown] tags=["lang-zh"]
# 这些图背后的数据来自纯函数 `flash_step_state`。以最后一行为例（因果掩码，FlashAttention-2 的循环顺序），每来一个新的键/值分块，最大值都被抬高，累加和也随之增大；处理完这一行的最后一个分块时，输出恰好等于精确值：

# %%
for step in (7, 8, 9, 10):
    st = wf.flash_step_state(step, "v2", is_causal=True, row=15)
    gap = (st["out"] - st["exact"]).abs().max().item()
    print(t("ch07.step_state", step=step, m=st["m"][-1], l=st["l"][-1], gap=gap))

# %% [markdown] tags=["lang-en"]
# ## 4. What it costs, measured
#
# **FLOPs** do not change: every unmasked score is still computed once, $4N^2d$ FLOPs for the
# two matrix products (about half of that with a causal mask, now that masked tiles are skipped).
# **Memory** does: plain attention holds $N \times N$ scores and weights; the tiled forward holds
# $q, k, v$, the output, $m$, $\ell$ — all $O(Nd)$ — and one $B_q \times B_k$ tile.
#
# We measure the peak *extra* memory of one call with `measure_peak_bytes` (`attnkit.memory`, the
# one meter every chapter uses): through `torch.profiler`, torch's allocator reports every
# allocation and free during the call, scratch space inside an operation included, and the
# running sum at its largest is the peak. (Python's `tracemalloc` does not see torch's memory.)
# One head, $d = 64$, tiles of 256 × 256:

# %% [markdown] tags=["lang-zh"]
# ## 4. 开销：实测
#
# **浮点运算次数**不变：每个未被屏蔽的分数仍然恰好计算一次，两次矩阵乘法共 $4N^2d$ 次浮点运算（有因果掩码时，由于被屏蔽的分块直接跳过，只需一半左右）。**内存**则不同：普通注意力要保存 $N \times N$ 的分数和注意力权重；分块的前向计算只保存 $q$、$k$、$v$、输出、$m$、$\ell$——都是 $O(Nd)$——再加上一个 $B_q \times B_k$ 的分块。
#
# 我们用 `measure_peak_bytes`（`attnkit.memory`，各章都用这一个测量工具）测量一次调用的*额外*内存峰值：借助 `torch.profiler`，torch 的内存分配器报告调用期间的每一次分配和释放，包括运算内部的临时内存，累计值的最大处就是峰值。（Python 的 `tracemalloc` 看不到 torch 分配的内存。）单个头，$d = 64$，分块大小 256 × 256：

# %% alt="ch07.alt.peak"
ns, plain_peaks, tiled_peaks = (256, 512, 1024, 2048), [], []
for n in ns:
    qn, kn, vn = torch.randn(1, 1, n, 64), torch.randn(1, 1, n, 64), torch.randn(1, 1, n, 64)
    plain_peaks.append(measure_peak_bytes(scaled_dot_product_attention, qn, kn, vn)[1])
    tiled_peaks.append(measure_peak_bytes(flash_attention, qn, kn, vn, block_q=256, block_k=256)[1])
print(viz.format_table([t("ch07.col.n"), t("ch07.col.plain_mib"), t("ch07.col.tiled_mib"), t("ch07.col.ratio")],
                       [[n, f"{p / 2**20:.2f}", f"{f / 2**20:.2f}", f"{f / p:.3f}"]
                        for n, p, f in zip(ns, plain_peaks, tiled_peaks, strict=True)]))
wf.memory_figure(ns, plain_peaks, tiled_peaks, d=64);

# %% [markdown] tags=["lang-en"]
# Each doubling of $N$ multiplies the plain peak by 4 (the $N \times N$ matrices), while the tiled
# peak grows far more slowly: at $N = 2048$ it needs 0.028 of the plain peak. At $N = 256$ a
# single 256 × 256 tile is the whole matrix, so tiling saves nothing there (1.173); beyond the
# tile size, what grows is the output and the per-row log-sum-exp, linearly, $O(Nd)$ (the inputs
# were made before the call and are not counted). The benchmark `benchmarks/bench_flash.py`
# goes on to longer sequences.
#
# **Time** is another story. The next cell times the three versions on this CPU. PyTorch's SDPA
# is a fused C++ kernel (on CPU it is itself a tiled, flash-style kernel); attnkit's plain version
# runs section 1's three steps as whole-matrix PyTorch operations; the tiled version is a *Python*
# loop that launches a handful of
# small operations per tile. All six (three versions, two lengths) are timed in turn on one thread,
# median of 3 each; the line under the table compares them from this run's numbers. The timings
# vary from run to run and machine to machine, so this cell's output is not checked:

# %% [markdown] tags=["lang-zh"]
# $N$ 每翻一倍，普通实现的峰值就变成 4 倍（$N \times N$ 的矩阵），而分块实现的峰值增长得慢得多：在 $N = 2048$ 时只需要普通实现峰值的 0.028。在 $N = 256$ 时，一个 256 × 256 的分块就是整个矩阵，分块毫无节省（1.173）；一旦 $N$ 超过分块大小，增长的只是输出和每行的 log-sum-exp，呈线性，即 $O(Nd)$（输入在调用之前就已创建，不计在内）。基准脚本 `benchmarks/bench_flash.py` 还会测到更长的序列。
#
# **时间**则是另一回事。下一个单元格在本机 CPU 上为三个版本计时。PyTorch 的 SDPA 是融合的 C++ 算子（在 CPU 上它本身就是一个分块的、flash 风格的算子）；attnkit 的普通实现用整矩阵的 PyTorch 运算完成第 1 节的三个步骤；分块实现则是一个 *Python* 循环，每个分块都要启动好几个小运算。六种情况（三个版本、两种长度）在单线程上轮流计时，各取 3 次的中位数；表格下面那一行根据本次运行的实测数字对它们作比较。计时结果因运行、因机器而异，所以测试不比对这个单元格的输出：

# %% tags=["nbval-ignore-output"]
calls = {}
for n in (512, 1024):
    qn, kn, vn = torch.randn(1, 1, n, 64), torch.randn(1, 1, n, 64), torch.randn(1, 1, n, 64)
    calls[n, "sdpa"] = lambda q=qn, k=kn, v=vn: F.scaled_dot_product_attention(q, k, v)
    calls[n, "plain"] = lambda q=qn, k=kn, v=vn: scaled_dot_product_attention(q, k, v)
    calls[n, "tiled"] = lambda q=qn, k=kn, v=vn: flash_attention(q, k, v, False, 128, 128)
with one_thread():
    ms = {key: 1e3 * sec for key, sec in round_robin_medians(calls, repeats=3).items()}
print(viz.format_table([t("ch07.col.n"), t("ch07.col.sdpa_ms"), t("ch07.col.plain_ms"), t("ch07.col.tiled_ms")],
                       [[n, *[f"{ms[n, v]:.1f}" for v in ("sdpa", "plain", "tiled")]] for n in (512, 1024)]))
print(t("ch07.tiled_vs_sdpa", a=ms[512, "tiled"] / ms[512, "sdpa"], b=ms[1024, "tiled"] / ms[1024, "sdpa"]))

# %% [markdown] tags=["lang-en"]
# On this run the tiled Python loop took the multiples printed under the table of the time of
# PyTorch's fused kernel. The gap is not a flaw of the algorithm: every
# tile pays Python's and PyTorch's per-operation overhead, and each small operation reads and
# writes its result in main memory — exactly the traffic the algorithm exists to avoid. A real
# FlashAttention kernel (CUDA or Triton) runs the whole loop inside *one* kernel: a tile of
# $Q$, $K$, $V$ is loaded into SRAM and registers once, the scores, exponentials, running max,
# sum and accumulator never leave the chip, and only the final output and the log-sum-exp are
# written to HBM. That is how, on a GPU, it runs faster than standard attention while doing the same
# FLOPs: the FlashAttention paper reports a 7.6× faster attention computation for GPT-2 on an
# A100 (Figure 1) and 3× faster end-to-end GPT-2 training (abstract). How much slow-memory traffic
# tiling saves depends on the size of the on-chip memory; appendix A counts it.

# %% [markdown] tags=["lang-zh"]
# 在本次运行中，Python 分块循环的耗时是 PyTorch 融合算子的若干倍（倍数见表格下面那一行）。这个差距不是算法本身的问题：每个分块都要承担 Python 和 PyTorch 每次运算的固定开销，而且每个小运算都要把结果写到主存、再读回来——这恰恰是该算法要省掉的访存量。真正的 FlashAttention 算子（用 CUDA 或 Triton 编写）在*同一个*算子内跑完整个循环。$Q$、$K$、$V$ 的一个分块只装入 SRAM 和寄存器一次；分数、指数、当前最大值、累加和与累加器都不离开芯片；只有最终输出和 log-sum-exp 写回 HBM。正因如此，在 GPU 上它做的浮点运算一样多，却比标准注意力更快。FlashAttention 论文报告：在 A100 上，GPT-2 的注意力计算快了 7.6 倍（图 1），GPT-2 端到端训练快了 3 倍（摘要）。分块能省下多少慢速内存的访存量，取决于片上内存有多大；附录 A 对此做了统计。

# %% [markdown] tags=["lang-en"]
# ## 5. The backward pass: recompute instead of store
#
# Backpropagating through $O = PV$ with $P = \mathrm{softmax}(S)$ needs $P$. Autograd would
# store it — $N \times N$ again. FlashAttention-2's backward (Algorithm 2) instead stores only
# $Q, K, V, O$ and the per-row log-sum-exp $L_i = m_i + \log \ell_i$, and recomputes each tile of
# $P$ exactly when it is needed: $P_{ij} = \exp(S_{ij} - L_i)$ — no max, no sum, one
# exponential. From that tile of $P$, each tile adds its share to $dQ$, $dK$ and $dV$ (the
# formulas, and where they come from, are in appendix B; the stretch exercise asks you to write
# this backward pass).
#
# Recomputing costs one more $QK^\top$ product, but on a GPU reading $P$ back from HBM would cost
# more time than computing it again on chip. Here is what attnkit's `torch.autograd.Function`
# saves, and the check that its gradients equal autograd's through PyTorch's SDPA:

# %% [markdown] tags=["lang-zh"]
# ## 5. 反向传播：重新计算，而不是保存
#
# 对 $O = PV$（其中 $P = \mathrm{softmax}(S)$）做反向传播需要用到 $P$。自动求导会把它保存下来——又是 $N \times N$。FlashAttention-2 的反向传播（算法 2）则只保存 $Q, K, V, O$ 和每行的 log-sum-exp $L_i = m_i + \log \ell_i$，到需要时再重新计算 $P$ 的每个分块：$P_{ij} = \exp(S_{ij} - L_i)$。这样不必再求最大值和累加和，只要一次指数运算。有了 $P$ 的这个分块，每个分块就能把自己的那一份加到 $dQ$、$dK$ 和 $dV$ 上（公式及其来历见附录 B；挑战题会请你写出这个反向传播）。
#
# 重新计算要多做一次 $QK^\top$ 乘法，但在 GPU 上，从 HBM 把 $P$ 读回来比在芯片上再算一遍还要慢。下面列出 attnkit 的 `torch.autograd.Function` 保存了哪些张量，并验证它的梯度与自动求导经过 PyTorch SDPA 得到的梯度相等：

# %%
n = 512
qg, kg, vg = (torch.randn(1, 2, n, 64, requires_grad=True) for _ in range(3))
out = flash_attention(qg, kg, vg, is_causal=True, block_q=64, block_k=64)
for name, saved in zip(("q", "k", "v", "out", "lse"), out.grad_fn.saved_tensors, strict=True):
    print(t("ch07.saved", name=name, shape=tuple(saved.shape)))
print(t("ch07.stored_p", shape=(1, 2, n, n)))
g = torch.randn_like(out)
grads = torch.autograd.grad(out, (qg, kg, vg), g)
ref = torch.autograd.grad(F.scaled_dot_product_attention(qg, kg, vg, is_causal=True), (qg, kg, vg), g)
print(t("ch07.grads_equal", ok=all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, ref, strict=True))))

# %% [markdown] tags=["lang-en"]
# ## 6. Pitfalls
#
# **No running max.** Skipping the max and summing $e^{s}$ directly works for small scores, but
# $e^{s}$ overflows float32 once a score is large enough (the cell below prints the threshold) —
# then the output is NaN. Scaled-up queries (a missing $1/\sqrt d$, a low temperature) get there
# easily:

# %% [markdown] tags=["lang-zh"]
# ## 6. 常见陷阱
#
# **不维护当前最大值。** 不减最大值、直接累加 $e^{s}$，在分数较小时没有问题；但分数一旦足够大（下面的单元格会打印出这个阈值），$e^{s}$ 就会超出 float32 的范围——输出变成 NaN。查询被放大时（漏掉了 $1/\sqrt d$，或者温度太低）很容易走到这一步：

# %%
def tiled_no_max(q, k, v, block=4):
    l = torch.zeros(q.shape[0], 1)
    acc = torch.zeros(q.shape[0], v.shape[1])
    for j in range(0, k.shape[0], block):
        p = torch.exp(q @ k[j:j + block].T / math.sqrt(q.shape[1]))  # no max subtracted
        l, acc = l + p.sum(dim=1, keepdim=True), acc + p @ v[j:j + block]
    return acc / l


print(t("ch07.exp_overflow", x=math.log(torch.finfo(torch.float32).max)))
qs, ks, vs = torch.randn(6, 8), torch.randn(12, 8), torch.randn(12, 4)
for factor in (1, 100):
    naive = tiled_no_max(qs * factor, ks, vs)
    exact = F.scaled_dot_product_attention(qs * factor, ks, vs)
    print(t("ch07.no_max", factor=factor, nan=torch.isnan(naive).any().item(),
            ok=torch.allclose(tiled_attention(qs * factor, ks, vs), exact, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **Forgetting to rescale.** When a tile raises the max, what was accumulated under the old max
# must be multiplied by $e^{m - m'}$ — the sum *and* the accumulator. Rescaling only the sum
# gives no error and wrong numbers:

# %% [markdown] tags=["lang-zh"]
# **忘记重新缩放。** 某个分块抬高了最大值时，在旧最大值下累积的结果必须乘以 $e^{m - m'}$——累加和*与*累加器都要乘。只缩放累加和不会报错，但算出的数是错的：

# %%
def tiled_forgets_acc(q, k, v, block=4):
    m = torch.full((q.shape[0], 1), -math.inf)
    l, acc = torch.zeros(q.shape[0], 1), torch.zeros(q.shape[0], v.shape[1])
    for j in range(0, k.shape[0], block):
        s = q @ k[j:j + block].T / math.sqrt(q.shape[1])
        m_new = torch.maximum(m, s.max(dim=1, keepdim=True).values)
        p = torch.exp(s - m_new)
        l = torch.exp(m - m_new) * l + p.sum(dim=1, keepdim=True)
        acc = acc + p @ v[j:j + block]  # BUG: acc is not multiplied by exp(m - m_new)
        m = m_new
    return acc / l


err = (tiled_forgets_acc(qs, ks, vs) - F.scaled_dot_product_attention(qs, ks, vs)).abs().max()
print(t("ch07.no_rescale", err=err.item()))

# %% [markdown] tags=["lang-en"]
# **Causal alignment when $L \neq S$.** Like PyTorch's `is_causal`, `flash_attention` aligns the
# causal mask to the top-left corner: query $i$ sees keys $0..i$. When decoding with a KV cache,
# the new queries are the *last* positions, so passing `is_causal=True` hides almost every cached
# key. For one new query, pass `is_causal=False`: it may see all the keys.

# %% [markdown] tags=["lang-zh"]
# **$L \neq S$ 时因果掩码的对齐。** 与 PyTorch 的 `is_causal` 一样，`flash_attention` 把因果掩码对齐到左上角：查询 $i$ 能看到键 $0..i$。使用 KV 缓存解码时，新的查询位于序列的*最后*，这时传入 `is_causal=True` 会把几乎所有缓存的键都屏蔽掉。只有一个新查询时，应传入 `is_causal=False`：它可以看到所有的键。

# %%
qd, kd, vd = torch.randn(1, 1, 9, 16), torch.randn(1, 1, 9, 16), torch.randn(1, 1, 9, 16)
full = flash_attention(qd, kd, vd, is_causal=True, block_q=4, block_k=4)  # all 9 positions
last = qd[:, :, -1:]                                                       # decoding the 9th position
for causal in (True, False):
    print(t("ch07.last_row", causal=causal,
            ok=torch.allclose(flash_attention(last, kd, vd, is_causal=causal, block_q=4, block_k=4), full[:, :, -1:],
                              atol=1e-6)))

# %% [markdown] tags=["lang-en"]
# ## 7. Exercises
#
# **Exercise 1.** Two parts of the keys have been processed separately. Part 1 gives, for each
# of $L$ query rows, its max score `m1` `(L,)`, its sum `l1` `(L,)` of $e^{s - m_1}$, and its
# *normalised* output `o1` `(L, d_v)` (the softmax over part 1's keys times their values); part 2
# gives `m2, l2, o2`. Return `(m, l, o)` for all the keys together. (One case has scores around
# 1000.)

# %% [markdown] tags=["lang-zh"]
# ## 7. 练习
#
# **练习 1**：键被分成两部分，分别处理过了。对 $L$ 个查询行中的每一行，第 1 部分给出三样东西：最大分数 `m1` `(L,)`、$e^{s - m_1}$ 之和 `l1` `(L,)`，以及*已归一化*的输出 `o1` `(L, d_v)`（即在第 1 部分的键上做 softmax，再乘以对应的值）。第 2 部分同样给出 `m2, l2, o2`。返回在全部键上的 `(m, l, o)`。（有一个用例的分数在 1000 左右。）

# %%
from attnkit.exercises.ch07 import check_io_flash, check_merge, check_tile_skipped


def my_merge(m1, l1, o1, m2, l2, o2):
    # your code here
    raise NotImplementedError


check_merge(my_merge);

# %% [markdown] tags=["lang-en"]
# **Exercise 2.** A tile covers query rows `q_start .. q_end - 1` and key columns
# `k_start .. k_end - 1`. Return `True` when a causal mask (query $i$ sees key $j$ only when
# $j \le i$) hides every pair of the tile, so the tile can be skipped.

# %% [markdown] tags=["lang-zh"]
# **练习 2**：一个分块覆盖查询行 `q_start .. q_end - 1` 和键列 `k_start .. k_end - 1`。如果因果掩码（只有当 $j \le i$ 时查询 $i$ 才能看到键 $j$）把这个分块中的每一对查询和键都屏蔽了，也就是整块可以跳过，就返回 `True`。

# %%
def my_tile_skipped(q_start, q_end, k_start, k_end):
    # your code here
    raise NotImplementedError


check_tile_skipped(my_tile_skipped);

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** Count the elements FlashAttention-1 reads and writes in slow memory for
# sequence length `N`, head dimension `d` and on-chip memory `M` (in elements), with the model of
# appendix A: key/value blocks of $B_c = \lceil M / 4d \rceil$ rows, $T_c = \lceil N / B_c \rceil$
# passes; $K$ and $V$ are read once; each pass reads $Q$, reads and writes $O$, and reads and
# writes $m$ and $\ell$ (one number per row each). Return an integer.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：序列长度为 `N`、头维度为 `d`、片上内存为 `M`（以元素个数计）。按附录 A 的模型，计算 FlashAttention-1 在慢速内存中读写的元素总数。键/值块有 $B_c = \lceil M / 4d \rceil$ 行，要扫描 $T_c = \lceil N / B_c \rceil$ 遍；$K$ 和 $V$ 只读一次；每一遍都要读 $Q$、读写 $O$，并读写 $m$ 和 $\ell$（每行各一个数）。返回一个整数。

# %%
def my_io_flash(N, d, M):
    # your code here
    raise NotImplementedError


check_io_flash(my_io_flash);

# %% [markdown] tags=["lang-en"]
# **Stretch: the tiled backward pass.** Write `my_flash_backward(q, k, v, o, lse, do, block)` for one
# head without a mask: `q, k, v` are the inputs `(N, d)`, `o` the output `(N, d)`, `lse` `(N,)` the
# log-sum-exp of each row of the scaled scores $QK^\top/\sqrt d$, `do` the gradient of the output
# `(N, d)`. Return `(dq, dk, dv)`, computed in tiles of `block` rows, never an $N \times N$ matrix:
# the checker measures your function's peak memory at $N = 1024$. Section 5 and appendix B have
# what you need; autograd is off limits.

# %% [markdown] tags=["lang-zh"]
# **挑战题：分块的反向传播。** 写出 `my_flash_backward(q, k, v, o, lse, do, block)`，处理一个不带掩码的头：`q, k, v` 是输入 `(N, d)`，`o` 是输出 `(N, d)`，`lse` `(N,)` 是缩放后的分数 $QK^\top/\sqrt d$ 每一行的 log-sum-exp，`do` 是输出的梯度 `(N, d)`。返回 `(dq, dk, dv)`：按 `block` 行一块分块计算，绝不构造 $N \times N$ 矩阵——检查器会在 $N = 1024$ 时测量你的函数的内存峰值。需要的内容都在第 5 节和附录 B 里；不许使用自动求导。

# %%
from attnkit.exercises.ch07 import check_flash_backward


def my_flash_backward(q, k, v, o, lse, do, block):
    # your code here
    raise NotImplementedError


_ = check_flash_backward(my_flash_backward)

# %% [markdown] tags=["lang-en"]
# ## 8. Summary
#
# - Standard attention is memory-bound on a GPU: its $N \times N$ scores and weights travel to
#   slow memory and back, with very few FLOPs per byte (section 1).
# - The online softmax extends to a weighted sum: keep a running max $m$, sum $\ell$ and an
#   unnormalised accumulator, rescale the sum and the accumulator by $e^{m - m'}$ when the max
#   grows, divide at the end.
#   The result is *exact* attention, computed one tile at a time (section 2).
# - FlashAttention-1 loops over key/value blocks outside, FlashAttention-2 over query blocks
#   (normalising once, parallel over query blocks); a causal mask skips every tile whose first key
#   comes after its last query (`k_start > q_end - 1`, exercise 2).
# - Memory falls from $O(N^2)$ to $O(N)$ extra — measured here; HBM traffic falls from
#   $\Theta(Nd + N^2)$ to $\Theta(N^2d^2/M)$ when $d^2$ is well below $M$, as on real GPUs
#   (appendix A); FLOPs stay the same. A Python loop is slow; a fused kernel keeps the tiles on chip
#   and is fast.
# - The backward pass stores $O$ and the log-sum-exp, not $P$, and recomputes $P$ tile by tile.
#
# **Next:** chapter 08 — sparse attention, which computes fewer scores instead of the same ones
# more cleverly.
#
# ## References
# - T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré, *FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness*, NeurIPS 2022 — §2.1 (GPU memory hierarchy), Algorithm 0 (standard attention), Algorithm 1 (tiled forward), Theorem 2 (IO complexity), §3.1 (recomputation).
# - T. Dao, *FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning*, arXiv:2307.08691, 2023 (ICLR 2024) — §3.1 (A100 matmul throughput), §3.1.1 (forward with deferred normalisation, Algorithm 1), §3.1.2 (backward, Algorithm 2), §3.2 (parallelism over query blocks).
# - M. Milakov, N. Gimelshein, *Online normalizer calculation for softmax*, 2018 — Algorithm 3 (the running max and sum).
# - M. N. Rabe, C. Staats, *Self-attention Does Not Need O(n²) Memory*, 2021 — the memory argument for chunked attention.
# - O. Press, N. A. Smith, M. Lewis, *Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation* (ALiBi), ICLR 2022 — §3.

# %% [markdown] tags=["lang-zh"]
# ## 8. 小结
#
# - 在 GPU 上，标准注意力受限于内存带宽：$N \times N$ 的分数和注意力权重要写入慢速内存再读回来，每搬运一个字节只做极少的浮点运算（第 1 节）。
# - 在线 softmax 可以推广到加权求和：维护当前最大值 $m$、累加和 $\ell$ 以及一个未归一化的累加器；最大值变大时，把累加和与累加器都乘以 $e^{m - m'}$，最后再相除。结果是*精确*的注意力，只是一次算一个分块（第 2 节）。
# - FlashAttention-1 的外层循环遍历键/值块，FlashAttention-2 的外层循环遍历查询块（只归一化一次，并可在查询块之间并行）；因果掩码会跳过第一个键就在最后一个查询之后的分块（`k_start > q_end - 1`，练习 2）。
# - 额外内存从 $O(N^2)$ 降到 $O(N)$——本章已实测；当 $d^2$ 远小于 $M$ 时（实际 GPU 正是如此，见附录 A），HBM 访存量从 $\Theta(Nd + N^2)$ 降到 $\Theta(N^2d^2/M)$；浮点运算次数不变。Python 循环很慢；融合算子把分块留在芯片上，所以很快。
# - 反向传播保存 $O$ 和 log-sum-exp，而不是 $P$，并逐个分块重新计算 $P$。
#
# **下一章**：第 8 章——稀疏注意力：它不是更巧妙地计算同样的分数，而是干脆少算一些分数。
#
# ## 参考文献
# - T. Dao、D. Y. Fu、S. Ermon、A. Rudra、C. Ré，*FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness*，NeurIPS 2022——§2.1（GPU 内存层次）、算法 0（标准注意力）、算法 1（分块前向计算）、定理 2（IO 复杂度）、§3.1（重新计算）。
# - T. Dao，*FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning*，arXiv:2307.08691，2023（ICLR 2024）——§3.1（A100 的矩阵乘法算力）、§3.1.1（延迟归一化的前向计算，算法 1）、§3.1.2（反向传播，算法 2）、§3.2（在查询块之间并行）。
# - M. Milakov、N. Gimelshein，*Online normalizer calculation for softmax*，2018——算法 3（当前最大值与累加和）。
# - M. N. Rabe、C. Staats，*Self-attention Does Not Need O(n²) Memory*，2021——分段（chunk）计算注意力的内存论证。
# - O. Press、N. A. Smith、M. Lewis，*Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation*（ALiBi），ICLR 2022——§3。

# %% [markdown] tags=["lang-en"]
# ## Appendix A. The IO model: how much slow-memory traffic tiling saves
#
# The FlashAttention paper (Theorem 2) counts the elements read and written in HBM. Standard
# attention moves $\Theta(Nd + N^2)$: our count is $4Nd + 4N^2$ (read $Q, K$, write $S$; read $S$,
# write $P$; read $P, V$, write $O$). With an on-chip memory of $M$ elements, FlashAttention-1
# (keys and values in the outer loop) uses key/value blocks of $B_c = \lceil M/4d \rceil$ rows, so
# that four blocks of $d$ numbers per row fit in $M$. It reads $K$ and $V$ once, and makes
# $T_c = \lceil N / B_c \rceil$ passes over the queries: in each pass it reads $Q$, reads and
# writes $O$, and reads and writes the row statistics $m$ and $\ell$. In total that is
# $\Theta(N^2 d^2 / M)$ elements (exercise 3 asks for the exact count). For $d = 64$ and $N = 4096$:

# %% [markdown] tags=["lang-zh"]
# ## 附录 A. IO 模型：分块能省下多少慢速内存的访存量
#
# FlashAttention 论文（定理 2）统计在 HBM 中读写的元素个数。标准注意力搬运 $\Theta(Nd + N^2)$ 个元素：按我们的计数是 $4Nd + 4N^2$（读 $Q, K$、写 $S$；读 $S$、写 $P$；读 $P, V$、写 $O$）。若片上内存能放 $M$ 个元素，FlashAttention-1（外层循环遍历键和值）使用 $B_c = \lceil M/4d \rceil$ 行的键/值块，使四个每行有 $d$ 个数的块能一起放进 $M$。它只读一次 $K$ 和 $V$，但要对查询扫描 $T_c = \lceil N / B_c \rceil$ 遍：每一遍都要读 $Q$、读写 $O$，并读写每行的统计量 $m$ 和 $\ell$。总数是 $\Theta(N^2 d^2 / M)$ 个元素（练习 3 请你算出精确的个数）。取 $d = 64$、$N = 4096$：

# %% alt="ch07.alt.io"
rows = []
for M in (2**12, 2**14, 2**16, 2**18):
    std, tiled = io_standard(4096, 64)["total"], io_flash(4096, 64, M=M)["total"]
    rows.append([f"{M:,}", f"{std:.3e}", f"{tiled:.3e}", f"{tiled / std:.3f}"])
print(viz.format_table([t("ch07.col.m"), t("ch07.col.io_std"), t("ch07.col.io_flash"), t("ch07.col.io_ratio")], rows))
print(t("ch07.block_keys", bc=math.ceil(4096 / (4 * 64))))
print(t("ch07.sram_elements", e=192 * 1024 // 2))
wf.io_figure([2**k for k in range(9, 16)], 64, (2**14, 2**16, 2**18));

# %% [markdown] tags=["lang-en"]
# With very little on-chip memory ($M = 4{,}096$ elements, a block of only 16 keys) tiling moves
# *more* data than standard attention: it re-reads $Q$ and $O$ too many times. From
# $M = 16{,}384$ on it moves less, and every 4× more SRAM cuts the traffic by about 4×. An A100
# SM's 192 KB hold 98,304 float16 elements, so real kernels sit in the favourable regime.
# On the plot, the standard curve has slope 2 (quadratic), and so do the tiled ones once $N$ is
# large enough to need several key/value blocks — tiling does not change the $N^2$ growth, it
# divides the traffic by a factor proportional to $M/d^2$ (by our count, roughly $M/3d^2$).

# %% [markdown] tags=["lang-zh"]
# 片上内存很小时（$M = 4{,}096$ 个元素，一块只有 16 个键），分块反而比标准注意力搬运*更多*数据：它对 $Q$ 和 $O$ 重复读取的次数太多了。从 $M = 16{,}384$ 起，分块搬运的数据更少，而且 SRAM 每增大到 4 倍，访存量就大约减少到 1/4。A100 每个 SM 的 192 KB 能放 98,304 个 float16 元素，所以实际的算子处在有利的区间。图中标准注意力的曲线斜率为 2（平方增长）；当 $N$ 大到需要多个键/值块时，分块的曲线斜率也是 2——分块并没有改变随 $N^2$ 增长的趋势，而是把访存量除以一个与 $M/d^2$ 成正比的因子（按我们的计数大约是 $M/3d^2$）。

# %% [markdown] tags=["lang-en"]
# ## Appendix B. The backward pass, tile by tile
#
# Take one tile: query block $i$, key/value block $j$, with $P = \exp(S - L_i)$ recomputed as in
# section 5 and $S = Q_i K_j^\top / \sqrt d$. Walk back from the output.
#
# - $O_i = \sum_j P V_j$, so the tile adds $P^\top dO_i$ to $dV_j$, and the gradient reaching $P$ is
#   $dP = dO_i V_j^\top$.
# - The softmax backward (chapter 03's Jacobian) is $dS = P \circ (dP - \mathrm{rowsum}(P \circ dP))$,
#   where the row sum runs over *all* keys of the row, not just this tile's. It needs no second pass:
#   $\mathrm{rowsum}(P \circ dP) = \sum_j P_{ij}\, dO_i \cdot v_j = dO_i \cdot O_i$. So
#   $D_i = \mathrm{rowsum}(dO_i \circ O_i)$ is computed once, from $dO$ and the stored $O$.
# - $S = Q K^\top / \sqrt d$ gives the last two.
#
# $$dV_j \mathrel{+}= P^\top dO_i, \quad dP = dO_i V_j^\top, \quad dS = P \circ (dP - D_i), \quad
# dQ_i \mathrel{+}= \tfrac{1}{\sqrt d}\, dS\, K_j, \quad dK_j \mathrel{+}= \tfrac{1}{\sqrt d}\, dS^\top Q_i.$$
#
# The identity behind $D_i$, checked on one small block:

# %% [markdown] tags=["lang-zh"]
# ## 附录 B. 逐个分块的反向传播
#
# 取一个分块：第 $i$ 个查询块、第 $j$ 个键/值块，$P = \exp(S - L_i)$ 像第 5 节那样重新算出，$S = Q_i K_j^\top / \sqrt d$。从输出往回推。
#
# - $O_i = \sum_j P V_j$，所以这个分块给 $dV_j$ 加上 $P^\top dO_i$，传到 $P$ 的梯度是 $dP = dO_i V_j^\top$。
# - softmax 的反向传播（第 3 章的雅可比矩阵）是 $dS = P \circ (dP - \mathrm{rowsum}(P \circ dP))$，其中的行和要对这一行的*全部*键求，而不只是这个分块的键。但这不需要再扫一遍：$\mathrm{rowsum}(P \circ dP) = \sum_j P_{ij}\, dO_i \cdot v_j = dO_i \cdot O_i$。所以 $D_i = \mathrm{rowsum}(dO_i \circ O_i)$ 只需由 $dO$ 和保存下来的 $O$ 算一次。
# - 由 $S = Q K^\top / \sqrt d$ 得到最后两项.$$dV_j \mathrel{+}= P^\top dO_i, \quad dP = dO_i V_j^\top, \quad dS = P \circ (dP - D_i), \quad
# dQ_i \mathrel{+}= \tfrac{1}{\sqrt d}\, dS\, K_j, \quad dK_j \mathrel{+}= \tfrac{1}{\sqrt d}\, dS^\top Q_i.$$
#
# 在一个小块上验证 $D_i$ 背后的恒等式：

# %%
torch.manual_seed(7)
s7, v7, do7 = torch.randn(4, 6), torch.randn(6, 3), torch.randn(4, 3)   # scores, values, dO of one block
p7 = torch.softmax(s7, dim=-1)
o7 = p7 @ v7
print(t("ch07.d_identity", ok=torch.allclose((p7 * (do7 @ v7.T)).sum(-1), (do7 * o7).sum(-1), atol=1e-6)))
