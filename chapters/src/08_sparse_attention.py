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
# # 08 · Sparse attention: fewer scores, computed without the N × N matrix
#
# **What you will learn**
# - why the $N^2$ scores are worth avoiding, and where attention weight tends to sit;
# - the classic patterns, each stated as a *set* of keys per query: the sliding window (plain and
#   dilated), the Sparse Transformer's strided and fixed patterns, Longformer's window plus global
#   tokens, BigBird's blocks (window + global + random);
# - how far information travels through several sparse layers (graph reachability), in an explorer;
# - how to compute a pattern *without* building an $N \times N$ matrix, exactly equal to dense
#   masked attention — and what PyTorch's FlexAttention does with the same patterns;
# - measured: memory and time of the dense path vs the sliding window as $N$ grows;
# - what sparsity costs: a task that one layer of full attention solves, and that a sparse pattern
#   needs many layers for, global tokens included (BigBird, Proposition 1);
# - what production systems do with windows: the rolling-buffer KV cache and attention sinks (both
#   built here and checked against full attention), local and global layers interleaved, and
#   sparsity chosen by content;
# - the pitfalls: three meanings of "window size", an off-by-one, padding and global tokens,
#   BigBird on short inputs.
#
# **You need** chapter 1 (masks, dense attention and its quadratic cost) and chapter 7 (why the
# $N \times N$ matrix is what costs memory; computing attention a chunk at a time).

# %% [markdown] tags=["lang-zh"]
# # 08 · 稀疏注意力：少算一些分数，而且不构造 N × N 矩阵
#
# **本章内容**
# - 为什么值得避开那 $N^2$ 个分数，以及注意力权重通常集中在哪里；
# - 几种经典模式，每一种都写成“每个查询对应的键的*集合*”：滑动窗口（普通的和空洞的）、Sparse Transformer 的 strided 与 fixed 模式、Longformer 的窗口加全局词元、BigBird 的分块（窗口 + 全局 + 随机）；
# - 信息经过多层稀疏注意力能传多远（图的可达性），用一个交互控件来观察；
# - 如何*不构造* $N \times N$ 矩阵就算出一种模式，结果与稠密的带掩码注意力完全一致——以及 PyTorch 的 FlexAttention 如何处理同样的模式；
# - 实测：随着 $N$ 增大，稠密路径与滑动窗口的内存和时间；
# - 稀疏的代价：一个任务，一层全注意力就能解决，稀疏模式却需要很多层，加上全局词元也一样（BigBird，命题 1）；
# - 生产系统怎样使用窗口：滚动缓冲区式的 KV 缓存和注意力汇聚点（attention sink，两者都在本章实现，并与全注意力比对）、局部层与全局层交替，以及按内容选择的稀疏；
# - 常见陷阱：“窗口大小”的三种含义、差一错误、填充与全局词元、BigBird 在短输入上的表现。
#
# **预备知识**：第 1 章（掩码、稠密注意力及其平方级开销）和第 7 章（为什么占内存的是 $N \times N$ 矩阵；一次只算一段的注意力）。

# %%
import math
import warnings

import torch
import torch.nn.functional as F

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch08  # noqa: F401  (registers the texts only this chapter prints)
from attnkit import sparse as sp
from attnkit import viz
from attnkit.core import scaled_dot_product_attention
from attnkit.flash import measure_peak_bytes
from attnkit.timing import one_thread, round_robin_medians
from attnkit.widgets import sparse as ws

torch.manual_seed(0)
torch.set_num_threads(1)  # results and timings that do not depend on threading
print(t("ch08.versions", torch=torch.__version__.split("+")[0], n=torch.get_num_threads()))

# %% [markdown] tags=["lang-en"]
# ## 1. Why sparse attention
#
# Dense attention scores every query against every key: $N^2$ scores per head. Chapter 1 measured
# how that grows; here is what the score matrix alone needs in float32 for one head, next to a
# sliding window that keeps 256 keys per query:

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么要用稀疏注意力
#
# 稠密注意力让每个查询都和每个键打分：每个头 $N^2$ 个分数。第 1 章实测过它如何增长；下面是单个头、float32 下仅分数矩阵就需要的内存，旁边是每个查询只保留 256 个键的滑动窗口：

# %%
rows = []
for n in (1024, 4096, 16384, 131072):
    dense, window = n * n * 4, n * 256 * 4  # bytes of float32 scores
    rows.append([f"{n:,}", f"{dense / 2**20:,.0f}", f"{window / 2**20:,.0f}", f"{dense / window:,.0f}"])
print(viz.format_table([t("ch08.col.n"), t("ch08.col.dense_mib"), t("ch08.col.window_mib"), t("ch08.col.ratio")], rows))

# %% [markdown] tags=["lang-en"]
# At 131,072 tokens the dense score matrix of a single head takes 65,536 MiB (64 GiB); the
# window's takes 128 MiB, and it grows linearly. Dropping scores is only sensible if the weight they would carry is small.
# Trained models often put most of a row's weight near the diagonal — the Sparse Transformer paper
# (Child et al. 2019, Figure 2) shows learned heads that are local, or strided. The reason is that
# neighbouring tokens tend to be similar. A small experiment makes that concrete. Queries and keys
# are the same vectors, and each token is hidden from itself (its own key would win trivially). For
# vectors that drift slowly along the sequence (each one 0.9 times the previous plus fresh noise,
# normalised), attention puts most of its weight in a narrow band around the diagonal; for
# independent random vectors the band gets only about its share of the keys. (The vectors have
# length 1, so every score $q \cdot k$ lies in $[-1, 1]$; the usual $1/\sqrt{d} = 1/\sqrt{32}$ would
# leave every row almost uniform. The cell uses `scale=8.0` instead: a sharper softmax, like the
# one a trained model gets from longer queries and keys.)

# %% [markdown] tags=["lang-zh"]
# 在 131,072 个词元时，单个头的稠密分数矩阵就要 65,536 MiB（64 GiB）；窗口版本只要 128 MiB，而且是线性增长。只有当被丢掉的分数本来就只分得很少的权重时，丢掉它们才说得过去。训练好的模型往往把一行的大部分权重放在对角线附近——Sparse Transformer 论文（Child 等，2019，图 2）展示了学到的注意力头：有的是局部的，有的是跨步（strided）的。原因在于相邻的词元往往彼此相似。一个玩具实验可以把这一点说清楚。查询和键用同一组向量，并且让每个词元看不到它自己（否则它自己的键总会胜出，没有意义）。如果向量沿着序列缓慢漂移（每个向量等于前一个的 0.9 倍再加上新的噪声，然后归一化），注意力的大部分权重都落在对角线附近的一条窄带里；而对相互独立的随机向量，窄带分到的权重大致只等于它占全部键的比例。（这些向量的长度都是 1，所以每个分数 $q \cdot k$ 都在 $[-1, 1]$ 之内；若用通常的 $1/\sqrt{d} = 1/\sqrt{32}$，每一行的权重几乎是均匀的。所以这个单元格改用 `scale=8.0`：softmax 更尖锐，就像训练好的模型靠更长的查询和键得到的那样。）

# %%
n, d, h = 256, 32, 8
g = torch.Generator().manual_seed(0)
iid = F.normalize(torch.randn(n, d, generator=g), dim=-1)
noise = torch.randn(n, d, generator=g)
drift = [noise[0]]
for step in noise[1:]:
    drift.append(0.9 * drift[-1] + math.sqrt(1 - 0.9**2) * step)  # each vector close to the previous one
smooth = F.normalize(torch.stack(drift), dim=-1)  # (n, d)
not_self = ~torch.eye(n, dtype=torch.bool)
band = sp.sliding_window_mask(n, 2 * h) & not_self  # 0 < |i - j| <= h
for key, x in (("ch08.mass.iid", iid), ("ch08.mass.smooth", smooth)):
    # unit vectors: scores in [-1, 1]; scale 8.0 sharpens the softmax (1 / sqrt(32) would leave it nearly flat)
    _, w = scaled_dot_product_attention(x, x, x, attn_mask=not_self, scale=8.0, return_weights=True)  # (n, n)
    print(t("ch08.mass", what=t(key), h=h, share=(w * band).sum(-1).mean().item(),
            band=band.double().mean().item()))

# %% [markdown] tags=["lang-en"]
# This is an illustration, not a proof: which pairs matter depends on the data and the trained
# weights, and a pattern that drops the one key a query needed is simply wrong for that query
# (section 6 builds such a case). Sparse patterns are a bet that most pairs can be skipped, made
# once, before training.

# %% [markdown] tags=["lang-zh"]
# 这只是示意，不是证明：哪些配对重要，取决于数据和训练出来的权重；如果某个模式恰好丢掉了查询需要的那个键，对这个查询来说结果就是错的（第 6 节会构造这样的例子）。稀疏模式是一种押注：在训练之前就一次性认定，大多数配对可以跳过。

# %% [markdown] tags=["lang-en"]
# ## 2. The patterns, as sets
#
# A pattern says, for each query $i$, the set $S(i)$ of keys it may attend to; as a boolean
# $N \times N$ mask (True = may attend, as in chapter 1), row $i$ is $S(i)$.
#
# - **Sliding window** (Longformer, Beltagy et al. 2020, §3.1): not causal,
#   $S(i) = \{j : |i - j| \le w/2\}$, so $w + 1$ keys with the query itself; causal,
#   $S(i) = \{j : i - w < j \le i\}$, the $w$ most recent keys. **Dilated** by $\delta$ (Longformer
#   writes $d$; here $d$ is the head size): the same number of keys, $\delta$ apart:
#   $\{j : |i - j| \le \delta\,w/2,\ \delta \mid i - j\}$.
# - **Strided** (Sparse Transformer, Child et al. 2019, §4.3), two heads with stride $l$:
#   $A^{(1)}_i = \{j : \max(0, i - l) \le j \le i\}$ and $A^{(2)}_i = \{j \le i : (i - j) \bmod l = 0\}$.
# - **Fixed** (same section): $A^{(1)}_i = \{j \le i : \lfloor j/l \rfloor = \lfloor i/l \rfloor\}$ (the
#   query's block) and $A^{(2)}_i = \{j \le i : j \bmod l \ge l - c\}$ (the last $c$ "summary"
#   positions of every block). The paper writes the second range up to $l$; since $j \bmod l \le l - 1$,
#   it holds $c$ positions.
# - **Longformer**: the window plus global tokens $G$, symmetric: a global token attends to every
#   token and every token attends to it.
# - **BigBird** (Zaheer et al. 2020, §2 and appendix D): blocks of $b$ tokens; each block row sees
#   3 window blocks, the global blocks (the first and the last) and $r$ random blocks.
#
# The mask of the window is two lines of index arithmetic:

# %% [markdown] tags=["lang-zh"]
# ## 2. 把模式写成集合
#
# 一种模式规定：对每个查询 $i$，它可以关注的键构成集合 $S(i)$；写成 $N \times N$ 的布尔掩码时（True 表示可以关注，与第 1 章相同），第 $i$ 行就是 $S(i)$。
#
# - **滑动窗口**（Longformer，Beltagy 等，2020，§3.1）。非因果时 $S(i) = \{j : |i - j| \le w/2\}$，连同查询自己共 $w + 1$ 个键；因果时 $S(i) = \{j : i - w < j \le i\}$，即最近的 $w$ 个键。**空洞**（dilated）窗口间隔为 $\delta$（Longformer 写作 $d$，本章的 $d$ 指头的维度）。键的个数不变，但彼此相隔 $\delta$：$\{j : |i - j| \le \delta\,w/2,\ \delta \mid i - j\}$。
# - **Strided**（Sparse Transformer，Child 等，2019，§4.3）：两个头，步长为 $l$：$A^{(1)}_i = \{j : \max(0, i - l) \le j \le i\}$，$A^{(2)}_i = \{j \le i : (i - j) \bmod l = 0\}$。
# - **Fixed**（同一节）：$A^{(1)}_i = \{j \le i : \lfloor j/l \rfloor = \lfloor i/l \rfloor\}$（查询所在的块），$A^{(2)}_i = \{j \le i : j \bmod l \ge l - c\}$（每一块最后 $c$ 个“摘要”位置）。论文把第二个范围写到 $l$ 为止；由于 $j \bmod l \le l - 1$，它实际只含 $c$ 个位置。
# - **Longformer**：窗口加上全局词元 $G$，而且是对称的：全局词元关注所有词元，所有词元也都关注它。
# - **BigBird**（Zaheer 等，2020，§2 与附录 D）：以 $b$ 个词元为一块；每一行块看到 3 个窗口块、全局块（第一块和最后一块）以及 $r$ 个随机块。
#
# 窗口的掩码只需两行下标运算：

# %%
def window_mask(n, w, causal=False):
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]  # (n, 1), (1, n)
    return ((i - j >= 0) & (i - j < w)) if causal else ((i - j).abs() <= w // 2)


for causal in (False, True):
    print(t("ch08.same_mask", causal=causal,
            ok=torch.equal(window_mask(50, 8, causal), sp.sliding_window_mask(50, 8, causal))))

# %% [markdown] tags=["lang-en"]
# `attnkit.sparse` has a builder for each pattern; its docstring states the set, and the tests
# compare each builder with its set written out element by element. Here they are on 32 tokens,
# with the keys of one query and the density (the fraction of the $N^2$ pairs kept):

# %% [markdown] tags=["lang-zh"]
# `attnkit.sparse` 为每种模式都提供了构造函数；文档字符串写明了对应的集合，测试则把每个构造函数与逐个元素写出的集合进行比对。下面是它们在 32 个词元上的样子，并列出某个查询的键和密度（保留下来的配对占全部 $N^2$ 个配对的比例）：

# %% alt="ch08.alt.patterns"
N0, I0 = 32, 20
patterns = {
    t("ch08.p.window", w=8): sp.sliding_window_mask(N0, 8),
    t("ch08.p.dilated", w=8, d=2): sp.sliding_window_mask(N0, 8, dilation=2),
    t("ch08.p.strided", l=6): sp.strided_mask(N0, 6),
    t("ch08.p.fixed", l=8, c=2): sp.fixed_mask(N0, 8, 2),
    t("ch08.p.longformer", w=4, g="{0, 16}"): sp.longformer_mask(N0, 4, [0, 16]),
    t("ch08.p.bigbird", b=4, r=1): sp.bigbird_mask(N0, 4, num_random_blocks=1, seed=0),
}
print(viz.format_table([t("ch08.col.pattern"), t("ch08.col.row_keys", i=I0), t("ch08.col.density")],
                       [[name, " ".join(map(str, m[I0].nonzero().flatten().tolist())), f"{m.double().mean():.3f}"]
                        for name, m in patterns.items()]))
_ = ws.pattern_gallery(patterns)

# %% [markdown] tags=["lang-en"]
# **Where the references disagree by one key.** "Window $w$" is not one thing. Hugging Face
# Longformer's `attention_window = w` keeps $w/2$ keys on each side plus the query: $w + 1$.
# `transformers`' causal sliding-window masks today keep the $w$ most recent keys, the query
# included. Mistral's original reference code kept $\{j : i - w \le j \le i\}$, one more:

# %% [markdown] tags=["lang-zh"]
# **各参考实现在哪里差了一个键。** “窗口 $w$”并不是同一个东西。Hugging Face Longformer 的 `attention_window = w`
# 在每一侧保留 $w/2$ 个键，再加上查询自己：共 $w + 1$ 个。`transformers` 如今的因果滑动窗口掩码保留最近的 $w$ 个键（包括查询自己）。Mistral 最初的参考代码保留 $\{j : i - w \le j \le i\}$，又多一个：

# %%
w, i = 8, 20
j = torch.arange(40)
mistral = (i - j >= 0) & (i - j <= w)  # Mistral's original band: w + 1 keys
for who, k in ((t("ch08.ref.longformer", w=w), int(sp.sliding_window_mask(40, w)[i].sum())),
               (t("ch08.ref.transformers", w=w), int(sp.sliding_window_mask(40, w, causal=True)[i].sum())),
               (t("ch08.ref.mistral", w=w), int(mistral.sum()))):
    print(t("ch08.keys_ref", who=who, i=i, k=k))

# %% [markdown] tags=["lang-en"]
# ## 3. Explore: the mask, its density, and how far information travels
#
# One sparse layer lets query $i$ see only $S(i)$. But layers stack: after two layers, token $i$
# has seen what the tokens in $S(i)$ saw in the layer before. With the residual stream, the set of
# tokens that can influence the last token grows like graph reachability:
# $R_0 = \{N - 1\}$, $R_{l+1} = R_l \cup \{k : k \in S(j) \text{ for some } j \in R_l\}$.
# `sp.receptive_field(mask, layers)` computes $|R_1|, \dots, |R_L|$ with one vector–matrix product
# per layer, and `sp.layers_to_connect(mask)` the first $l$ with token 0 in $R_l$.
#
# **Predict first.** A causal window of $w = 8$ keys on $N = 64$ tokens: how many layers until the
# last token's output depends on token 0? Write your number, then run the cell.

# %% [markdown] tags=["lang-zh"]
# ## 3. 动手探索：掩码、密度，以及信息能传多远
#
# 一层稀疏注意力只让查询 $i$ 看到 $S(i)$。但层是叠起来的：经过两层后，词元 $i$ 还看到了 $S(i)$ 中各词元在上一层看到的东西。加上残差连接，能影响最后一个词元的词元集合就像图的可达集合一样增长：$R_0 = \{N - 1\}$，$R_{l+1} = R_l \cup \{k : \text{存在 } j \in R_l \text{ 使得 } k \in S(j)\}$。`sp.receptive_field(mask, layers)` 每层只做一次向量与矩阵的乘法，算出 $|R_1|, \dots, |R_L|$；`sp.layers_to_connect(mask)` 给出词元 0 第一次进入 $R_l$ 时的 $l$。
#
# **先预测。** 在 $N = 64$ 个词元上用 $w = 8$ 个键的因果窗口：要经过多少层，最后一个词元的输出才依赖于词元 0？先写下你的答案，再运行这个单元格。

# %%
from attnkit.exercises.ch08 import check_q1

my_answer = None
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# Now the explorer. Choose a **pattern**, **N**, the **window** (it is also the stride of
# *strided*, the block of *fixed* and of *BigBird*), the **dilation**, the number of **globals**
# (Longformer: the first tokens; BigBird: blocks at each end), the **random blocks** of BigBird and
# **causal**. Left: the mask and its density; right: the fraction of the $N$ tokens that reach the
# last token after 1 to 12 layers, with a dashed line where token 0 is reached. The line under the
# figure lists the settings, and which of them the chosen pattern ignores. (On GitHub, the static
# figure below shows the starting state.)

# %% [markdown] tags=["lang-zh"]
# 下面是交互控件。选择**模式**、**N**、**窗口**（它同时也是 strided 的步长、fixed 和 BigBird 的块大小）、**空洞间隔**、**全局数**（Longformer：开头的几个词元；BigBird：两端各几个块）、BigBird 的**随机块数**以及是否**因果**。左图是掩码及其密度；右图是经过 1 到 12 层后，能影响最后一个词元的词元占 $N$ 的比例，虚线标出到达词元 0 的层数。图下方的一行列出当前设置，并注明所选模式不使用其中哪几项。（在 GitHub 上，下面的静态图展示的是初始状态。）

# %% tags=["nbval-ignore-output"] alt="ch08.alt.explorer"
explorer = ws.sparse_explorer()
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The numbers behind the right panel, for a few patterns on 256 tokens. Dilation multiplies the
# reach per layer by $\delta$ (Longformer's receptive field of $l \cdot d \cdot w$ over $l$ layers, §3.1,
# where $d$ is the dilation):

# %% [markdown] tags=["lang-zh"]
# 下面是右图背后的数字，取 256 个词元上的几种模式。空洞把每层的传播距离乘以 $\delta$（Longformer §3.1：$l$ 层的感受野为 $l \cdot d \cdot w$，其中 $d$ 是空洞间隔）：

# %%
n = 256
cases = {
    t("ch08.p.causal_window", w=8): sp.sliding_window_mask(n, 8, causal=True),
    t("ch08.p.window", w=8): sp.sliding_window_mask(n, 8),
    t("ch08.p.dilated", w=8, d=4): sp.sliding_window_mask(n, 8, dilation=4),
    t("ch08.p.strided", l=16): sp.strided_mask(n, 16),
    t("ch08.p.longformer", w=8, g="{0}"): sp.longformer_mask(n, 8, [0]),
    t("ch08.p.bigbird", b=8, r=0): sp.bigbird_mask(n, 8, num_global_blocks=0, num_random_blocks=0),
}
print(viz.format_table([t("ch08.col.pattern"), t("ch08.col.density"), t("ch08.col.layers")],
                       [[name, f"{m.double().mean():.3f}", sp.layers_to_connect(m) or t("ch08.never")]
                        for name, m in cases.items()]))

# %% [markdown] tags=["lang-en"]
# A window moves information a fixed distance per layer — $w - 1$ positions back for the causal
# window, $w/2$ for the symmetric one — so the number of layers grows like $N / w$. A dilated window
# *alone* never connects the first and the last token here: it only links tokens whose distance is a
# multiple of $\delta$, and $N - 1$ is not. That is why Longformer mixes heads with and without dilation
# (§3.1). The strided pattern's second head connects any two tokens within two layers, and so does
# a global token (one layer here, where token 0 is itself the global token). BigBird without its
# global and random blocks is just a window of blocks.

# %% [markdown] tags=["lang-zh"]
# 窗口每层把信息传过固定的距离——因果窗口往前 $w - 1$ 个位置，对称窗口 $w/2$ 个——所以所需层数随 $N / w$ 增长。*单独*一个空洞窗口在这里永远连不通第一个和最后一个词元：它只连接距离为 $\delta$ 的倍数的词元，而 $N - 1$ 不是 $\delta$ 的倍数。这就是 Longformer 把带空洞和不带空洞的头混合使用的原因（§3.1）。strided 模式的第二个头两层之内就能连通任意两个词元，全局词元也一样（这里只要一层，因为词元 0 本身就是全局词元）。去掉全局块和随机块的 BigBird 只是一个由分块组成的窗口。

# %% [markdown] tags=["lang-en"]
# ## 4. Computing a pattern without the N × N matrix
#
# Masking a dense score matrix gives the right answer but saves nothing: the $N \times N$ scores
# are still built. `attnkit.sparse` computes each pattern from the keys it keeps:
#
# - `sliding_window_attention` takes the queries a **chunk** of $C$ at a time. A
#   chunk's queries $s .. e-1$ can only see keys $s - w + 1 .. e - 1$ (causal) or
#   $s - w/2 .. e - 1 + w/2$: a contiguous slice. It scores the chunk against that slice
#   ($C \times (C + w - 1)$ scores, causal), masks the pairs outside the band, and writes the chunk's
#   output. Memory: $O(N d)$ for the output plus one chunk, for any $N$. Dilation $\delta$ splits the
#   sequence into the $\delta$ residue classes $i \bmod \delta$, on each of which the dilated window is a
#   plain window.
# - `block_sparse_attention` gathers, for each query block, the key blocks its layout keeps, as
#   FlexAttention's `BlockMask` does; an optional `mask_mod(i, j)` masks pairs inside kept blocks.
# - `longformer_attention` = the window (without the global keys) merged with attention over the
#   global keys through their log-sum-exps (chapter 7's merge of two partial results), plus full
#   rows for the global queries; `bigbird_attention` = `block_sparse_attention` of its layout.
#
# One chunk of the causal window, drawn: queries 32 to 47 of 64 tokens, $w = 12$. They can see
# keys 21 to 47 and no others, so the computation scores only the rectangle; inside it, the pairs
# outside the band are masked. The stretch exercise at the end of the chapter is this computation.

# %% [markdown] tags=["lang-zh"]
# ## 4. 不构造 N × N 矩阵来计算一种模式
#
# 给稠密的分数矩阵加掩码，答案是对的，但什么也没省下：$N \times N$ 的分数照样要构造出来。`attnkit.sparse` 只用保留下来的键来计算每一种模式：
#
# - `sliding_window_attention` 一次取一**段**查询，每段 $C$ 个。一段查询 $s .. e-1$ 能看到的键只有
#   $s - w + 1 .. e - 1$（因果）或 $s - w/2 .. e - 1 + w/2$：一段连续的切片。它只用这段键给这段查询打分（因果时 $C \times (C + w - 1)$ 个分数），屏蔽带外的配对，再写出这一段的输出。内存：输出的 $O(N d)$ 再加上一段的分数，$N$ 可以任意。空洞 $\delta$ 把序列按余数 $i \bmod \delta$ 分成 $\delta$ 类，在每一类上，空洞窗口就是普通窗口。
# - `block_sparse_attention` 对每个查询块，只收集布局中保留的那些键块，和 FlexAttention 的 `BlockMask` 做法一样；可选的 `mask_mod(i, j)` 再屏蔽保留块内部的配对。
# - `longformer_attention` = 窗口部分（不含全局键）与全局键上的注意力，通过两者的 log-sum-exp 合并（即第 7 章合并两个部分结果的方法），再加上全局查询的完整行；`bigbird_attention` = 按其布局调用 `block_sparse_attention`。
#
# 下面画出因果窗口的一段：64 个词元中的查询 32 到 47，$w = 12$。它们能看到的只有键 21 到 47，所以计算只给这个矩形打分；矩形里落在带外的配对被屏蔽。本章最后的挑战题就是这个计算。

# %% alt="ch08.alt.chunk"
_ = ws.chunk_picture(n=64, window=12, chunk=16, start=32)

# %% [markdown] tags=["lang-en"]
# Each equals dense masked attention — attnkit's and PyTorch's — on a ragged length:

# %% [markdown] tags=["lang-zh"]
# 在一个不规整的长度上，每一种都与稠密的带掩码注意力（attnkit 的和 PyTorch 的）一致：

# %%
n = 203  # not a multiple of any block or chunk
q, k, v = (torch.randn(1, 2, n, 16) for _ in range(3))  # (B, H, N, d)
computations = [
    (t("ch08.p.window", w=16), lambda: sp.sliding_window_attention(q, k, v, 16), sp.sliding_window_mask(n, 16)),
    (t("ch08.p.causal_window", w=16), lambda: sp.sliding_window_attention(q, k, v, 16, causal=True),
     sp.sliding_window_mask(n, 16, causal=True)),
    (t("ch08.p.dilated", w=8, d=3), lambda: sp.sliding_window_attention(q, k, v, 8, dilation=3),
     sp.sliding_window_mask(n, 8, dilation=3)),
    (t("ch08.p.strided", l=16), lambda: sp.sparse_attention(q, k, v, "strided", causal=True, stride=16),
     sp.strided_mask(n, 16)),
    (t("ch08.p.fixed", l=16, c=4), lambda: sp.sparse_attention(q, k, v, "fixed", causal=True, block=16, summary=4),
     sp.fixed_mask(n, 16, 4)),
    (t("ch08.p.longformer", w=16, g="{0, 100}"), lambda: sp.longformer_attention(q, k, v, 16, [0, 100]),
     sp.longformer_mask(n, 16, [0, 100])),
    (t("ch08.p.bigbird", b=16, r=2), lambda: sp.bigbird_attention(q, k, v, 16, num_random_blocks=2),
     sp.bigbird_mask(n, 16, num_random_blocks=2)),
]
for name, compute, mask in computations:
    out = compute()
    print(t("ch08.exact", what=name,
            a=torch.allclose(out, scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5),
            b=torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# Gradients flow through autograd, and equal those of the dense path. `SparseAttention` wraps any
# pattern by name as a multi-head module, batch-first, the way chapter 11 builds them:

# %% [markdown] tags=["lang-zh"]
# 梯度通过自动求导得到，并且与稠密路径的梯度一致。`SparseAttention` 把任意一种模式按名字包装成多头模块（批次维在前），第 11 章就是这样构造它们的：

# %%
qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
mask = sp.sliding_window_mask(n, 16, causal=True)
grads = torch.autograd.grad(sp.sliding_window_attention(qg, kg, vg, 16, causal=True).sum(), (qg, kg, vg))
ref = torch.autograd.grad(scaled_dot_product_attention(qg, kg, vg, attn_mask=mask).sum(), (qg, kg, vg))
print(t("ch08.grads", ok=all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, ref, strict=True))))

layer = sp.SparseAttention(64, 4, pattern="longformer", window=16, global_idx=[0])
x = torch.randn(2, n, 64)  # (B, N, E)
with torch.no_grad():
    out = layer(x)
    qh, kh, vh = layer.qkv(x).view(2, n, 3, 4, 16).permute(2, 0, 3, 1, 4)  # (B, H, N, d) each
    dense = scaled_dot_product_attention(qh, kh, vh, attn_mask=sp.longformer_mask(n, 16, [0]))
    dense = layer.out_proj(dense.transpose(1, 2).reshape(2, n, 64))
print(t("ch08.module", p="longformer", shape=tuple(out.shape), ok=torch.allclose(out, dense, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# **What production code uses: FlexAttention.** PyTorch's `torch.nn.attention.flex_attention`
# takes a `mask_mod(b, h, q_idx, kv_idx) -> bool`, the same predicate as our sets, and a
# `BlockMask` built from it by `create_block_mask`, which records which $128 \times 128$ (here
# $64 \times 64$) blocks hold any True pair, so that fully masked blocks are skipped, and which of
# those are *full* (every pair True): a full block is computed without calling `mask_mod` at all;
# only the partial blocks apply it, pair by pair. Compiled
# with `torch.compile`, it generates one fused kernel per pattern; eager mode (below, on CPU) is a
# reference implementation that materialises the scores, fine for a small check.
# `sp.flex_mask_mod(pattern, n, **args)` gives every attnkit pattern as a `mask_mod` (the tests
# check each against its attnkit mask with FlexAttention's own `create_mask`), and
# `sp.flex_block_mask` its `BlockMask`:

# %% [markdown] tags=["lang-zh"]
# **生产代码用什么：FlexAttention。** PyTorch 的 `torch.nn.attention.flex_attention` 接受一个
# `mask_mod(b, h, q_idx, kv_idx) -> bool`——它和我们的集合是同一个判定函数——以及由 `create_block_mask` 从它构造的 `BlockMask`。`BlockMask` 记录哪些 $128 \times 128$（这里取 $64 \times 64$）的分块中至少有一个 True 配对，从而跳过被整块屏蔽的分块；它还记录其中哪些是*满*块（所有配对都是 True）：满块在计算时根本不调用 `mask_mod`，只有部分保留的分块才逐个配对地应用它。用 `torch.compile` 编译后，它会为每种模式生成一个融合算子；eager 模式（下面在 CPU 上运行）是一个会构造完整分数的参考实现，拿来做小规模检查正合适。`sp.flex_mask_mod(pattern, n, **args)` 把 attnkit 的每一种模式都变成一个 `mask_mod`（测试用 FlexAttention 自己的 `create_mask`
# 把每一个都与 attnkit 的掩码逐一比对），`sp.flex_block_mask` 则给出它的 `BlockMask`：

# %%
from torch.nn.attention.flex_attention import flex_attention

n, b = 256, 64
block_mask = sp.flex_block_mask("sliding_window", n, causal=True, block_size=b, window=128)
kept = int(block_mask.to_dense().sum())  # partial and full blocks
print(t("ch08.flex_blocks", kept=kept, total=(n // b) ** 2, b=b, full=int(block_mask.full_kv_num_blocks.sum())))
qf, kf, vf = (torch.randn(1, 2, n, 16) for _ in range(3))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # eager flex_attention warns that it is not fused
    out = flex_attention(qf, kf, vf, block_mask=block_mask)
print(t("ch08.flex_equal", ok=torch.allclose(out, sp.sliding_window_attention(qf, kf, vf, 128, causal=True), atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# `benchmarks/bench_sparse.py` times the *compiled* `flex_attention` beside attnkit's computation
# and dense masked SDPA (compiling takes tens of seconds on this CPU, too long for a notebook).

# %% [markdown] tags=["lang-zh"]
# `benchmarks/bench_sparse.py` 会为*编译后*的 `flex_attention` 计时，并与 attnkit 的计算和稠密的带掩码 SDPA 放在一起比较（在这台 CPU 上编译要几十秒，放在笔记本里太久了）。

# %% [markdown] tags=["lang-en"]
# ## 5. What it costs
#
# **Formulas.** For a pattern that keeps $P$ (query, key) pairs per head, attention costs
# $4Pd$ FLOPs (a multiply-add per pair and channel for $q \cdot k$, another for $p \cdot v$). A path
# that materialises the scores (the math path, eager FlexAttention) holds $P$ of them, and a
# training forward on that path keeps them for the backward pass; a fused or tiled kernel
# (chapter 7) keeps one log-sum-exp per query instead and recomputes the scores in the backward.
# Dense is $P = N^2$, or $N(N+1)/2$ causal; a causal window keeps $P = Nw - w(w-1)/2$. Compare a
# pattern with the dense attention of its own kind: the share column divides a causal pattern's
# pairs by causal dense's, a non-causal one's by $N^2$. `sp.pattern_pairs` counts $P$ from each
# pattern's per-row formula (no mask built) and `sp.attention_cost` turns it into FLOPs and bytes.
# One head, $N = 4096$, $d = 64$, float32:

# %% [markdown] tags=["lang-zh"]
# ## 5. 开销
#
# **公式。** 如果一种模式在每个头上保留 $P$ 个（查询, 键）配对，注意力的开销是 $4Pd$ 次浮点运算。每个配对、每个通道要做两次乘加：$q \cdot k$ 一次，$p \cdot v$ 一次。会构造分数的路径（数学路径、eager 模式的 FlexAttention）要保存 $P$ 个分数，训练时走这条路径的前向计算还要为反向传播留下它们；融合或分块的算子（第 7 章）则只为每个查询保存一个 log-sum-exp，反向时重新计算分数。稠密注意力 $P = N^2$，因果时为 $N(N+1)/2$；因果窗口 $P = Nw - w(w-1)/2$。比较时要与同一类稠密注意力比：占比一列把因果模式的配对数除以因果稠密注意力的配对数，把非因果模式的除以 $N^2$。`sp.pattern_pairs` 按每种模式逐行的公式数出 $P$（不构造掩码），`sp.attention_cost` 再把它换算成浮点运算次数和字节数。单个头，$N = 4096$，$d = 64$，float32：

# %%
n, dh = 4096, 64
dense = {True: n * (n + 1) // 2, False: n * n}  # causal dense keeps j <= i
budget = [(t("ch08.p.dense_causal"), True, dense[True]),
          (t("ch08.p.causal_window", w=256), True, sp.pattern_pairs("sliding_window", n, True, window=256)),
          (t("ch08.p.strided", l=64), True, sp.pattern_pairs("strided", n, True, stride=64)),
          (t("ch08.p.fixed", l=64, c=8), True, sp.pattern_pairs("fixed", n, True, block=64, summary=8)),
          (t("ch08.p.dense"), False, dense[False]),
          (t("ch08.p.dilated", w=256, d=2), False, sp.pattern_pairs("sliding_window", n, window=256, dilation=2)),
          (t("ch08.p.longformer", w=256, g="{0}"), False, sp.pattern_pairs("longformer", n, window=256, global_idx=[0])),
          (t("ch08.p.bigbird", b=64, r=3), False, sp.pattern_pairs("bigbird", n, block=64))]
rows = []
for name, causal, pairs in budget:
    cost = sp.attention_cost(pairs, n, dh)
    rows.append([name, t("ch08.yes" if causal else "ch08.no"), f"{pairs:,}", f"{pairs / dense[causal]:.3f}",
                 f"{cost['flops'] / 1e9:.2f}", f"{cost['score_bytes'] / 2**20:.1f}"])
print(viz.format_table([t("ch08.col.pattern"), t("ch08.col.causal"), t("ch08.col.pairs"), t("ch08.col.share"),
                        t("ch08.col.gflops"), t("ch08.col.score_mib")], rows))

# %% [markdown] tags=["lang-en"]
# The strided pattern keeps the fewest pairs of the table at this $N$, but its second head touches
# every $l$-th key, so a block-sparse computation of it visits every block below the diagonal: pairs
# saved are not always blocks saved, and on hardware it is blocks that count.
#
# **Measured: memory.** "Dense" below is the *math path*: `attnkit.core` with the boolean mask,
# which materialises the $(N, N)$ scores and weights. We measure the peak extra bytes of one forward
# call with chapter 7's `measure_peak_bytes` (torch's allocator, read through `torch.profiler`: the
# largest running sum of the bytes allocated and freed during the call), the same way for both;
# one head of 64 dimensions, causal window $w = 256$. (We report the time of PyTorch's fused CPU
# kernel for `F.scaled_dot_product_attention` below; chapter 11's profiler measures its memory
# with the same meter.)

# %% [markdown] tags=["lang-zh"]
# 在这个 $N$ 下，表中 strided 模式保留的配对最少；但它的第二个头每隔 $l$ 个键就要碰一个，所以用分块稀疏的方式计算它时，对角线以下的每一个分块都要访问：省下的配对不一定是省下的分块，而在硬件上，起作用的是分块。
#
# **实测：内存。** 下面的“稠密”指的是*数学路径*：带布尔掩码的 `attnkit.core`，它会构造出 $(N, N)$ 的分数和权重。我们用第 7 章的 `measure_peak_bytes`（通过 `torch.profiler` 读取 torch 的内存分配器：调用期间分配与释放的字节数，其累计值的最大处）测量一次前向调用的额外内存峰值，两者用同一种方法测量；单个头，64 维，因果窗口 $w = 256$。（下面报告 PyTorch 为 `F.scaled_dot_product_attention` 提供的 CPU 融合算子的时间；第 11 章的性能分析器用同一个测量工具测它的内存。）

# %%
ns, dense_peak, window_peak = (1024, 2048, 4096), [], []
for n in ns:
    qn, kn, vn = (torch.randn(1, 1, n, 64) for _ in range(3))
    mask = sp.sliding_window_mask(n, 256, causal=True)
    dense_peak.append(measure_peak_bytes(scaled_dot_product_attention, qn, kn, vn, attn_mask=mask)[1])
    window_peak.append(measure_peak_bytes(sp.sliding_window_attention, qn, kn, vn, 256, True)[1])
def growth(peaks):  # the factor from each N to the next
    return ["-"] + [f"{y / x:.2f}x" for x, y in zip(peaks, peaks[1:], strict=False)]


print(viz.format_table([t("ch08.col.n"), t("ch08.col.dense_peak"), t("ch08.col.dense_growth"), t("ch08.col.window_peak"),
                        t("ch08.col.growth")],
                       [[n, f"{a / 2**20:.2f}", ga, f"{b / 2**20:.2f}", gb] for n, a, ga, b, gb in
                        zip(ns, dense_peak, growth(dense_peak), window_peak, growth(window_peak), strict=True)]))
print(t("ch08.mem_ratio", n=ns[-1], r=dense_peak[-1] / window_peak[-1]))

# %% [markdown] tags=["lang-en"]
# The dense path's peak grows by the factor in its growth column, 4× per doubling of $N$ — it holds
# $N \times N$ matrices — while the window's grows by the factors printed in the last column,
# approaching 2× as the $O(Nd)$ output outweighs the one chunk of scores. `benchmarks/bench_sparse.py` continues to $N = 8192$.
#
# **Measured: time.** The same three sizes, timed round-robin on one thread (median of 3):
# the dense math path, PyTorch's fused SDPA with the boolean mask (it still scores every pair),
# and the sliding window. Timings vary from run to run, so this cell's output is not checked; the
# line under the table compares the measured numbers of this run:

# %% [markdown] tags=["lang-zh"]
# 稠密路径的峰值按它那一列增长倍数所示，$N$ 每翻一倍就变成 4 倍——它要保存 $N \times N$ 的矩阵；而窗口的峰值按最后一列打印的倍数增长，随着 $O(Nd)$ 的输出逐渐超过那一段分数，倍数趋近于 2。`benchmarks/bench_sparse.py` 会一直测到 $N = 8192$。
#
# **实测：时间。** 同样三种长度，在单线程上轮流计时（取 3 次的中位数）：稠密数学路径、带布尔掩码的 PyTorch 融合 SDPA（它仍然给每个配对打分），以及滑动窗口。计时结果每次运行都不一样，所以测试不比对这个单元格的输出；表格下面那一行比较的是本次运行实测的数字：

# %% tags=["nbval-ignore-output"]
calls = {}
for n in ns:
    qn, kn, vn = (torch.randn(1, 1, n, 64) for _ in range(3))
    mask = sp.sliding_window_mask(n, 256, causal=True)
    calls[n, "dense"] = lambda q=qn, k=kn, v=vn, m=mask: scaled_dot_product_attention(q, k, v, attn_mask=m)
    calls[n, "sdpa"] = lambda q=qn, k=kn, v=vn, m=mask: F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    calls[n, "window"] = lambda q=qn, k=kn, v=vn: sp.sliding_window_attention(q, k, v, 256, True)
with one_thread():
    ms = {key: 1e3 * sec for key, sec in round_robin_medians(calls, repeats=3).items()}
print(viz.format_table([t("ch08.col.n"), t("ch08.col.dense_ms"), t("ch08.col.sdpa_ms"), t("ch08.col.window_ms")],
                       [[n, *[f"{ms[n, c]:.1f}" for c in ("dense", "sdpa", "window")]] for n in ns]))
wn, sn = ms[ns[-1], "window"], ms[ns[-1], "sdpa"]
verdict = "ch08.verdict.window" if wn < sn else "ch08.verdict.sdpa"
print(t("ch08.faster", n=ns[-1], w=wn, s=sn, verdict=t(verdict, r=max(wn, sn) / min(wn, sn))))

# %% [markdown] tags=["lang-en"]
# The window does about $w/N$ of the dense FLOPs but pays Python's per-chunk overhead, so which
# wins at small $N$ depends on the machine; the line above says what happened here. As $N$ grows,
# the dense cost grows like $N^2$ and the window's like $N$.

# %% [markdown] tags=["lang-zh"]
# 滑动窗口的浮点运算次数大约只有稠密注意力的 $w/N$，但每一段都要付出 Python 的固定开销，所以在 $N$ 较小时谁更快取决于机器；上面那一行说明了本次运行的情况。随着 $N$ 增大，稠密的开销按 $N^2$ 增长，窗口的开销按 $N$ 增长。

# %% [markdown] tags=["lang-en"]
# ## 6. What sparsity costs: the furthest vector
#
# BigBird's paper proves a limit (Zaheer et al. 2020, §3.4, Proposition 1): a task that one layer
# of full attention solves, while any sparse attention graph with $\tilde O(n)$ edges — global tokens
# included — needs $\tilde\Omega(n^{1-o(1)})$ layers for it, assuming the Orthogonal Vectors Conjecture
# (a standard hardness assumption of fine-grained complexity). Their example: given $n$
# unit vectors $u_1, \dots, u_n$, find for each $u_i$ the furthest one, $\arg\max_j \|u_i - u_j\|$
# $= \arg\min_j u_i \cdot u_j$. One attention layer with queries $-u$, keys and values $u$ and a
# large scale (50) puts almost all the weight on the key most opposed to $u_i$, so its output *is*
# that vector — if the pattern lets query $i$ see it. No training: the layer is built by hand.
# We decode each output to the nearest $u_j$ and count how often it is the true furthest vector,
# for $n = 256$, $d = 16$. The last column is section 3's reach, for every pair of tokens: the fewest
# layers after which every token's output depends on every token.

# %% [markdown] tags=["lang-zh"]
# ## 6. 稀疏的代价：最远向量
#
# BigBird 论文证明了一个局限（Zaheer 等，2020，§3.4，命题 1）：有一个任务，一层全注意力就能解决；而任何只有 $\tilde O(n)$ 条边的稀疏注意力图（包括带全局词元的）都需要 $\tilde\Omega(n^{1-o(1)})$ 层。这个结论以正交向量猜想（Orthogonal Vectors Conjecture，细粒度复杂度中的一个标准困难性假设）为前提。他们的例子是：给定 $n$ 个单位向量 $u_1, \dots, u_n$，为每个 $u_i$ 找出离它最远的那个。也就是求 $\arg\max_j \|u_i - u_j\|$
# $= \arg\min_j u_i \cdot u_j$。用一层注意力，查询取 $-u$、键和值取 $u$，再乘上一个很大的缩放系数（50）。这样几乎全部权重都会落在与 $u_i$ 方向最相反的那个键上，于是输出*就是*那个向量——前提是模式允许查询 $i$ 看到它。不需要训练：这一层是手工构造的。我们把每个输出还原成离它最近的 $u_j$，统计它恰好是真正最远向量的比例，取 $n = 256$、$d = 16$。最后一列是第 3 节的视野，但对所有词元对而言：经过多少层，每个词元的输出才依赖于每一个词元。

# %%
def layers_for_every_pair(m, most=8):  # every token in the receptive field of every query
    if m is None:
        return "1"
    sizes = torch.stack([sp.receptive_field(m, most, query=i) for i in range(m.shape[0])])  # (n, most)
    done = (sizes == m.shape[0]).all(0).nonzero().flatten()
    return str(int(done[0]) + 1) if len(done) else f"> {most}"


n = 256
tasks = [(t("ch08.p.dense"), None),
         (t("ch08.p.window", w=8), sp.sliding_window_mask(n, 8)),
         (t("ch08.p.window", w=64), sp.sliding_window_mask(n, 64)),
         (t("ch08.p.longformer", w=8, g="{0, 128}"), sp.longformer_mask(n, 8, [0, 128])),
         (t("ch08.p.bigbird", b=8, r=3), sp.bigbird_mask(n, 8, num_random_blocks=3))]
print(viz.format_table([t("ch08.col.pattern"), t("ch08.col.kept"), t("ch08.col.accuracy"), t("ch08.col.all_pairs")],
                       [[name, f"{1.0 if m is None else m.double().mean().item():.3f}",
                         f"{sp.furthest_vector_accuracy(m, n=n):.3f}", layers_for_every_pair(m)] for name, m in tasks]))

# %% [markdown] tags=["lang-en"]
# Full attention solves the task (not perfectly: with a finite scale, when the two most opposed keys
# are nearly tied in score, a few outputs blur). Every sparse pattern answers correctly about as
# often as it happens to keep the right pair: the accuracy column tracks the column of pairs kept.
# That is all this one-layer experiment shows: a pair missing from the mask cannot be found in one
# layer. Proposition 1 says more, and the last column shows why reach is not the obstacle: the
# Longformer and BigBird patterns connect every token to every other within two layers, yet with
# $\tilde O(n)$ pairs per layer, global tokens and all, the task needs close to $n$ layers. (An
# intuition, not the proof, which reduces the Orthogonal Vectors problem to the task: a global token
# gathers from every token but hands one vector back to all of them, while each query needs its own
# answer.)
#
# What sparse patterns do keep is expressiveness: BigBird's Theorem 1 (§3.2) shows sparse
# transformers are universal approximators of continuous sequence-to-sequence functions when the
# pattern contains a *star* — a global token that attends to every token and that every token attends
# to. It is a theorem about such patterns, not about sparse patterns in general; Yun et al. (2020)
# give general conditions under which $O(n)$ connections per layer suffice (each token attends to
# itself, the patterns chain all tokens together, a fixed number of layers connects every pair).
# Theory and experiment agree on the price: a sparse model may need far more depth than a dense one.

# %% [markdown] tags=["lang-zh"]
# 全注意力能解决这个任务（并不完美：缩放系数是有限的，当方向最相反的两个键的*分数*几乎相同时，少数输出会被混在一起）。每一种稀疏模式答对的比例，大致就等于它碰巧保留了正确配对的比例：准确率一列与保留配对比例一列基本吻合。这个单层实验能说明的只有这一点：掩码里没有的配对，一层之内找不到。命题 1 说得更多，而最后一列说明视野并不是障碍：Longformer 和 BigBird 的模式两层之内就能连通任意一对词元。可是每层只有 $\tilde O(n)$ 个配对时，即使加上全局词元，这个任务也需要接近 $n$ 层。（这只是直观解释，不是证明；证明是把正交向量问题归约到这个任务上。直观地说，全局词元能从所有词元收集信息，却只能把一个向量交还给所有词元，而每个查询需要的答案各不相同。）
#
# 稀疏模式保住的是表达能力。BigBird 的定理 1（§3.2）证明：只要模式中包含一个*星*（star），稀疏 Transformer 就是连续序列到序列函数的通用近似器。星就是一个关注所有词元、也被所有词元关注的全局词元。这是关于这类模式的定理，并不是所有稀疏模式都有的性质。Yun 等（2020）给出了更一般的条件：在这些条件下，每层 $O(n)$ 个连接就够了（每个词元关注它自己，各层的模式把所有词元串起来，固定层数之内任意两个词元都能连通）。理论和实验说的是同一个代价：稀疏模型可能需要比稠密模型深得多。

# %% [markdown] tags=["lang-en"]
# ## 7. What production systems do with windows
#
# **The decode-time payoff: a rolling buffer.** A causal window of $w$ keys means that once a model
# has generated token $t$, no later query will ever look at a key older than $t - w + 1$. So the KV
# cache of chapter 5 needs only $w$ slots: Mistral 7B (Jiang et al. 2023, §2, "Rolling Buffer
# Cache") writes position $t$ into slot $t \bmod w$, over the position $w$ steps before it. Its
# memory is $O(w)$ instead of $O(N)$. `attnkit.gqa.RollingKVCache` is that buffer, and
# `gqa.rolling_decode` decodes through it one token at a time: query $t$ attends to whatever the
# cache holds once $k_t, v_t$ are written. That equals the sliding window over the whole sequence.
# On 211 tokens (a prime, so the buffer wraps at no round number), $w = 16$:

# %% [markdown] tags=["lang-zh"]
# ## 7. 生产系统怎样使用窗口
#
# **解码时的收益：滚动缓冲区。** 因果窗口只有 $w$ 个键，这意味着模型生成词元 $t$ 之后，以后的任何查询都不会再看比 $t - w + 1$ 更早的键。所以第 5 章的 KV 缓存只需要 $w$ 个槽位。Mistral 7B 的滚动缓冲区缓存就是这样（Jiang 等，2023，§2）：位置 $t$ 写进槽位 $t \bmod w$，覆盖掉 $w$ 步之前的那个位置。它的内存是 $O(w)$，而不是 $O(N)$。`attnkit.gqa.RollingKVCache` 就是这个缓冲区，`gqa.rolling_decode` 通过它逐个词元地解码：写入 $k_t, v_t$ 之后，查询 $t$ 关注缓存里现有的全部内容。这与在整个序列上做滑动窗口注意力完全一样。下面取 211 个词元（一个质数，所以缓冲区不会在整数位置回绕），$w = 16$：

# %%
from attnkit import gqa
from attnkit.numbers import rounded, within

n, w = 211, 16  # 211 is prime: the buffer wraps at no round number
g = torch.Generator().manual_seed(1)
q, k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(3))  # (B, H, N, d)
out, cache = gqa.rolling_decode(q, k, v, w)  # token by token, through w slots
band = sp.sliding_window_mask(n, w, causal=True)
print(t("ch08.roll_equal", n=n, slots=cache.slots,
        a=within(out, F.scaled_dot_product_attention(q, k, v, attn_mask=band), 1e-5),
        b=within(out, sp.sliding_window_attention(q, k, v, w, causal=True), 1e-5)))
print(t("ch08.roll_slots", last=cache.slots - 1, pos=", ".join(map(str, cache.positions.tolist()))))

# %% [markdown] tags=["lang-en"]
# After the last token the 16 slots hold positions 195 to 210, out of order: slot 0 holds 208,
# since $208 \bmod 16 = 0$. Attention does not care about the order of its keys, as long as each key
# already carries its position (RoPE is applied before a key is cached). The memory, for one layer
# with 2 heads of 64 channels in float32, against chapter 5's growing `KVCache`:

# %% [markdown] tags=["lang-zh"]
# 最后一个词元之后，16 个槽位存的是位置 195 到 210，但顺序是乱的：槽位 0 存的是 208，因为 $208 \bmod 16 = 0$。注意力并不在乎键的顺序，只要每个键已经带上了自己的位置（RoPE 在键写入缓存之前就已施加）。下面是内存：一层、2 个 64 维的头、float32，与第 5 章不断增长的 `KVCache` 对比：

# %%
rows = []
for n in (1024, 4096, 16384):
    kn, vn = torch.randn(1, 2, n, 64), torch.randn(1, 2, n, 64)  # (B, H, N, d)
    grown, rolling = gqa.KVCache(), gqa.RollingKVCache(256, sink=4)
    grown.update(kn, vn)
    rolling.update(kn, vn)
    rows.append([f"{n:,}", f"{grown.nbytes / 2**20:.2f}", f"{rolling.nbytes / 2**20:.2f}"])
print(viz.format_table([t("ch08.col.n"), t("ch08.col.kv_grown"), t("ch08.col.kv_rolling")], rows))

# %% [markdown] tags=["lang-en"]
# **Attention sinks.** StreamingLLM (Xiao et al. 2024) found that a window alone breaks down as soon
# as the *first* tokens leave the cache. Trained language models put a large share of every row's
# weight on the first few tokens, whatever those tokens say: the softmax must put its weight
# somewhere, and they serve as the place to park it. Evict them, and every row is renormalised over
# the window alone: the outputs change. Keeping the first $s$ tokens for good (they kept 4) plus a
# recent window kept their models stable over millions of tokens. `RollingKVCache(window, sink=s)`
# keeps slots $0..s-1$ for those tokens; decoding through it equals attention with the mask
# $\{j \le i : i - j < w\} \cup \{j \le i : j < s\}$ (`gqa.sink_window_mask`). A toy with a planted
# sink: token 0's key is one every query agrees with (a trained model learns such a key; here it is
# built by hand), 256 tokens, $w = 16$:

# %% [markdown] tags=["lang-zh"]
# **注意力汇聚点（attention sink）。** StreamingLLM（Xiao 等，2024）发现，只用窗口时，一旦*最前面*的几个词元被移出缓存，模型就会崩溃。训练好的语言模型会把每一行相当大的一部分权重放在最前面的几个词元上，而不管这些词元说的是什么：softmax 的权重总要放在某个地方，这几个词元就成了停放权重的地方。把它们移出缓存，每一行就只在窗口内重新归一化，输出随之改变。永久保留最前面的 $s$ 个词元（他们保留 4 个）再加上最近的窗口，他们的模型在数百万个词元上都保持稳定。`RollingKVCache(window, sink=s)` 把槽位 $0..s-1$ 留给这些词元；通过它解码，等于用掩码 $\{j \le i : i - j < w\} \cup \{j \le i : j < s\}$（`gqa.sink_window_mask`）做注意力。下面是一个人为放入汇聚点的玩具实验：词元 0 的键是每个查询都认同的方向（训练好的模型会学出这样的键，这里是手工构造的），256 个词元，$w = 16$：

# %%
n, d, w = 256, 16, 16
g = torch.Generator().manual_seed(2)
c = F.normalize(torch.randn(d, generator=g), dim=0)  # one direction every query leans towards
qs = 0.5 * torch.randn(1, 1, n, d, generator=g) + 4.0 * c  # (B, H, N, d)
ks = 0.5 * torch.randn(1, 1, n, d, generator=g)
ks[..., 0, :] = 8.0 * c  # token 0: a key every query agrees with, a planted sink
vs = torch.randn(1, 1, n, d, generator=g)
full, weights = scaled_dot_product_attention(qs, ks, vs, is_causal=True, return_weights=True)
late = slice(w, None)  # the queries whose window no longer holds token 0
print(t("ch08.sink_weight", share=rounded(weights[..., late, 0].mean(), 1), w=w))
for s in (0, 4):
    out, cache = gqa.rolling_decode(qs, ks, vs, w, sink=s)
    exact = within(out, F.scaled_dot_product_attention(qs, ks, vs, attn_mask=gqa.sink_window_mask(n, w, s)), 1e-5)
    print(t("ch08.sink_row", w=w, s=s, slots=cache.slots, exact=exact,
            diff=rounded((out - full)[..., late, :].abs().mean(), 2)))

# %% [markdown] tags=["lang-en"]
# Both caches compute exactly what their masks say; what differs is how far that is from full
# attention. Without the sink, the queries past the first window lose the key that held most of
# their weight, and their outputs move far from full attention's; with 4 sink slots they stay close.
# Only the weight that full attention gave to the evicted middle tokens is lost.
#
# **Local and global layers, interleaved.** A model need not use the window in every layer. GPT-3
# (Brown et al. 2020, §2.1) alternates dense layers with locally banded sparse ones. Mistral 7B uses
# the window in all 32 layers and relies on depth for reach (section 3). Gemma 2 alternates local and
# global layers one to one; Gemma 3 uses five local layers for every global one, with a window of
# 1,024 tokens and a much longer context. A global layer's cache grows with $N$,
# a local layer's stops at $w$, so the ratio sets the KV cache:

# %% [markdown] tags=["lang-zh"]
# 两种缓存算出来的都正好是各自掩码所规定的结果；不同的是它们离全注意力有多远。没有汇聚点时，第一个窗口之后的查询失去了承载它们大部分权重的那个键，输出与全注意力相差很远；有 4 个汇聚点槽位时，输出与全注意力很接近。丢掉的只是全注意力分给那些被移出的中间词元的权重。
#
# **局部层与全局层交替。** 模型不必在每一层都用窗口。GPT-3（Brown 等，2020，§2.1）让稠密层与局部带状的稀疏层交替出现。Mistral 7B 在全部 32 层都用窗口，靠深度获得视野（第 3 节）。Gemma 2 让局部层与全局层一比一交替；Gemma 3 每一个全局层配五个局部层，窗口为 1,024 个词元，上下文也长得多。全局层的缓存随 $N$ 增长，局部层的缓存到 $w$ 就不再增长，所以这个比例决定了 KV 缓存的大小：

# %%
designs = [("Mistral 7B", 32, 0, 4096, 32768), ("Gemma 2", 1, 1, 4096, 8192), ("Gemma 3", 5, 1, 1024, 131072)]
rows = []
for name, local, glob, win, ctx in designs:
    share = (local * min(win, ctx) + glob * ctx) / ((local + glob) * ctx)  # a local layer caches min(w, N) tokens
    rows.append([name, f"{local} : {glob}", f"{win:,}", f"{ctx:,}", f"{share:.3f}"])
print(viz.format_table([t("ch08.col.design"), t("ch08.col.local_global"), t("ch08.col.window"), t("ch08.col.context"),
                        t("ch08.col.kv_share")], rows))
print(t("ch08.mistral_span", layers=32, w=4096, span=32 * 4096))

# %% [markdown] tags=["lang-en"]
# **Sparsity chosen by content.** Every pattern so far is fixed before the data arrives. Other
# methods pick the keys from the data:
#
# - **Reformer** (Kitaev et al. 2020): queries and keys share one projection; an angular
#   locality-sensitive hash puts them in buckets, the sequence is sorted by bucket and cut into
#   chunks, and each chunk attends within itself and the previous chunk; several hash rounds;
#   $O(N \log N)$.
# - **Routing Transformer** (Roy et al. 2021): online k-means clusters queries and keys, and each
#   query attends within its cluster; $O(N^{1.5} d)$.
# - **MoBA** (Lu et al. 2025): keys in blocks; a query scores each block by $q \cdot \mathrm{mean}(K_{\text{block}})$
#   and attends to its top $k$ blocks, always including its own (causally) and never a future one. It
#   adds no parameters, but a model needs continued training to use it.
# - **NSA** (Yuan et al. 2025): three branches per query — attention over compressed blocks, over the
#   top-$n$ blocks that the compressed branch scores highest (one choice shared by a GQA group), and a
#   sliding window — mixed by learned gates and trained from the start.
# - **DeepSeek Sparse Attention** (DeepSeek-V3.2-Exp, 2025): a small "lightning indexer" scores every
#   earlier token, $I_{t,s} = \sum_h w_{t,h}\, \mathrm{ReLU}(q_{t,h} \cdot k_s)$, and MLA (chapter 5) attends only
#   to the 2,048 top-scoring ones.
#
# Each is section 4's `block_sparse_attention` (or a gather of single keys) with a layout computed
# from the data, per query or per query block; the selection must be cheap, and it is trained with
# the model, or the model is trained to live with it.

# %% [markdown] tags=["lang-zh"]
# **按内容选择的稀疏。** 到目前为止的每一种模式，都是在数据到来之前就固定好的。另一些方法根据数据来挑选键：
#
# - **Reformer**（Kitaev 等，2020）：查询和键共用一个投影；角度局部敏感哈希把它们分进各个桶，序列按桶排序后切成段，每一段只在自己和前一段之内做注意力；做几轮哈希；$O(N \log N)$。
# - **Routing Transformer**（Roy 等，2021）：用在线 k-means 给查询和键聚类，每个查询只在自己的簇内做注意力；$O(N^{1.5} d)$。
# - **MoBA**（Lu 等，2025）：把键分块；查询用 $q \cdot \mathrm{mean}(K_{\text{block}})$ 给每个块打分，只关注得分最高的 $k$ 个块。其中总包括它自己所在的块（因果地），从不包括未来的块。它不增加参数，但模型需要继续训练才能用好它。
# - **NSA**（Yuan 等，2025）：每个查询有三个分支，即对压缩块的注意力、对压缩分支打分最高的 $n$ 个块的注意力、一个滑动窗口。一个 GQA 组共用一次选择；三个分支由学到的门控混合，并且从头开始训练。
# - **DeepSeek 稀疏注意力**（DeepSeek-V3.2-Exp，2025）：一个小型的“闪电索引器”（lightning indexer）给之前的每个词元打分。分数是 $I_{t,s} = \sum_h w_{t,h}\, \mathrm{ReLU}(q_{t,h} \cdot k_s)$。MLA（第 5 章）只关注得分最高的 2,048 个。
#
# 每一种都是第 4 节的 `block_sparse_attention`（或逐个键的收集），只是布局由数据算出来，按查询或按查询块；选择本身必须便宜，而且要么与模型一起训练，要么让模型训练得适应它。

# %% [markdown] tags=["lang-en"]
# ## 8. Pitfalls
#
# **Three meanings of "window size".** Longformer's $w$ counts both sides ($w + 1$ keys);
# `local-attention`'s `window_size` $w$ is a *bucket* size: a query sees its own bucket up to itself
# and the whole previous bucket, so between $w + 1$ and $2w$ keys depending on where it sits;
# Mistral's original code kept $w + 1$ and `transformers` today keeps $w$. The same
# `window=4`, four queries in a row:

# %% [markdown] tags=["lang-zh"]
# ## 8. 常见陷阱
#
# **“窗口大小”的三种含义。** Longformer 的 $w$ 把两侧都算进去（$w + 1$ 个键）；`local-attention` 的 `window_size` $w$ 是*桶*的大小：一个查询看到自己所在的桶（到它自己为止）和前一个完整的桶，所以视位置不同，能看到 $w + 1$ 到 $2w$ 个键；Mistral 最初的代码保留 $w + 1$ 个，`transformers` 如今保留 $w$ 个。同样是 `window=4`，连续四个查询：

# %%
w, a, b = 4, 12, 15
i, j = torch.arange(a, b + 1)[:, None], torch.arange(32)[None, :]
bucketed = (j // w >= i // w - 1) & (j <= i)  # local-attention: own bucket (causal) + the previous one
for who, keys in ((t("ch08.ref.longformer", w=w), sp.sliding_window_mask(32, w)[a:b + 1].sum(-1)),
                  (t("ch08.local_attention", w=w), bucketed.sum(-1)),
                  (t("ch08.ref.mistral", w=w), ((i - j >= 0) & (i - j <= w)).sum(-1)),
                  (t("ch08.ref.transformers", w=w), sp.sliding_window_mask(32, w, causal=True)[a:b + 1].sum(-1))):
    print(t("ch08.keys_range", who=who, a=a, b=b, ks=", ".join(map(str, keys.tolist()))))

# %% [markdown] tags=["lang-en"]
# **An off-by-one in the causal band.** Writing the band as $0 \le i - j \le w$ instead of
# $0 \le i - j < w$ keeps one key too many per row. Nothing fails; the outputs are just different:

# %% [markdown] tags=["lang-zh"]
# **因果带的差一错误。** 把带写成 $0 \le i - j \le w$ 而不是 $0 \le i - j < w$，每行就多保留一个键。不会报错，只是输出不一样了：

# %%
n, w = 64, 8
i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
wrong_band = (i - j >= 0) & (i - j <= w)
qb, kb, vb = (torch.randn(n, 16) for _ in range(3))
diff = (scaled_dot_product_attention(qb, kb, vb, attn_mask=wrong_band)
        - sp.sliding_window_attention(qb, kb, vb, w, causal=True)).abs().max()
print(t("ch08.off_by_one", a=int(wrong_band[n - 1].sum()), b=int(sp.sliding_window_mask(n, w, True)[n - 1].sum()),
        d=diff.item()))

# %% [markdown] tags=["lang-en"]
# **Padding and global tokens.** A global token attends to *every* position — padding included.
# In a padded batch, its output then depends on whatever the padding embeddings hold, unless the
# padding is masked as keys (`key_mask`, or `key_padding_mask` in `SparseAttention`). Below, a
# sequence of 40 real tokens padded to 64, with token 0 global: we change the padding's contents
# and see whether token 0's output moves:

# %% [markdown] tags=["lang-zh"]
# **填充与全局词元。** 全局词元关注*所有*位置——包括填充位置。在一个带填充的批次里，除非把填充位置作为键屏蔽掉（`key_mask`，在 `SparseAttention` 中是 `key_padding_mask`），它的输出就会取决于填充位置的嵌入里恰好是什么。下面是一个有 40 个真实词元、填充到 64 的序列，词元 0 是全局词元：我们改变填充位置的内容，看词元 0 的输出是否变化：

# %%
n, real = 64, 40
qp, kp, vp = (torch.randn(1, n, 16) for _ in range(3))
kp2, vp2 = kp.clone(), vp.clone()
kp2[:, real:], vp2[:, real:] = torch.randn(1, n - real, 16), torch.randn(1, n - real, 16)  # other padding
keep = (torch.arange(n) < real)[None, :]  # (1, N) True = real token
moved = [not torch.allclose(sp.longformer_attention(qp, kp, vp, 8, [0], key_mask=km)[:, 0],
                            sp.longformer_attention(qp, kp2, vp2, 8, [0], key_mask=km)[:, 0], atol=1e-6)
         for km in (None, keep)]
print(t("ch08.pad_global", a=moved[0], b=moved[1]))

# %% [markdown] tags=["lang-en"]
# **BigBird on short inputs.** With blocks of $b = 64$, 3 window blocks, 2 global blocks and
# $r = 3$ random blocks, a block row sees up to 8 blocks. On a short input that is nearly every
# block, and the pattern is dense in all but name. Hugging Face's BigBird therefore switches to full
# attention when $N \le (5 + 2r)\,b$:

# %% [markdown] tags=["lang-zh"]
# **BigBird 在短输入上。** 取块大小 $b = 64$、3 个窗口块、2 个全局块和 $r = 3$ 个随机块时，一行块最多看到 8 个块。在短输入上，这几乎就是全部的块，这种模式除了名字之外就是稠密的。所以 Hugging Face 的 BigBird 在 $N \le (5 + 2r)\,b$ 时改用全注意力：

# %%
limit = sp.bigbird_full_attention_length(64, 3)
print(t("ch08.bigbird_limit", m=limit))
for n in (512, 704, 1024, 4096):
    print(t("ch08.bigbird_short", b=64, r=3, n=n, nb=math.ceil(n / 64), dens=sp.bigbird_mask(n, 64).double().mean().item(),
            full=n <= limit))

# %% [markdown] tags=["lang-en"]
# ## 9. Exercises
#
# **Exercise 1 (the fixed pattern).** Write the Sparse Transformer's fixed pattern, causal, as a
# boolean `(n, n)` mask: $A^{(1)} \cup A^{(2)}$ with block $l$ and $c$ summary positions
# (section 2). Do not call `sp.fixed_mask`.

# %% [markdown] tags=["lang-zh"]
# ## 9. 练习
#
# **练习 1（fixed 模式）**：把 Sparse Transformer 的因果 fixed 模式写成 `(n, n)` 的布尔掩码：块大小为 $l$、摘要位置为 $c$ 个时的 $A^{(1)} \cup A^{(2)}$（见第 2 节）。不要调用 `sp.fixed_mask`。

# %%
from attnkit.exercises import show_hint
from attnkit.exercises.ch08 import check_fixed_mask, check_q2, check_reach, check_window_attention, check_window_bytes


def my_fixed_mask(n, l, c):
    # your code here
    raise NotImplementedError


_ = check_fixed_mask(my_fixed_mask)

# %% [markdown] tags=["lang-en"]
# Stuck after two tries? `show_hint("ch08.ex1")` prints every hint, the last one the formula.
#
# **Exercise 2 (the receptive field).** Given a boolean `(n, n)` mask (row $i$ = the keys query
# $i$ sees) and a number of layers $L$, return a boolean `(n,)` vector: which tokens can influence
# the *last* token's output after $L$ layers, with the residual stream (section 3's $R_L$).

# %% [markdown] tags=["lang-zh"]
# 试了两次还没做出来？`show_hint("ch08.ex1")` 会打印全部提示，最后一条就是公式。
#
# **练习 2（感受野）**：给定一个 `(n, n)` 的布尔掩码（第 $i$ 行是查询 $i$ 能看到的键）和层数 $L$，返回一个形状为 `(n,)` 的布尔向量：经过 $L$ 层后（含残差连接），哪些词元能影响*最后一个*词元的输出（即第 3 节的 $R_L$）。

# %%
def my_reach(mask, layers):
    # your code here
    raise NotImplementedError


_ = check_reach(my_reach)

# %% [markdown] tags=["lang-en"]
# **Exercise 3 (the memory of a window).** How many bytes do the scores of a causal sliding
# window take, for `n` tokens, `window` keys, `heads` heads and `dtype_bytes` bytes per score?
# Return an integer (mind the first rows, and `n < window`).

# %% [markdown] tags=["lang-zh"]
# **练习 3（窗口的内存）**：`n` 个词元、`window` 个键、`heads` 个头、每个分数 `dtype_bytes` 字节时，因果滑动窗口的分数要占多少字节？返回一个整数（注意开头的几行，以及 `n < window` 的情况）。

# %%
def my_window_bytes(n, window, heads, dtype_bytes):
    # your code here
    raise NotImplementedError


_ = check_window_bytes(my_window_bytes)

# %% [markdown] tags=["lang-en"]
# **Question 2.** Which *one* attention layer can find every token's furthest vector (section 6)?
# Answer with a letter: a) a sliding window of 64 keys, b) BigBird (window + global + random
# blocks), c) full attention.

# %% [markdown] tags=["lang-zh"]
# **问题 2（先预测）**：哪一种*单层*注意力能为每个词元找到离它最远的向量（第 6 节）？用字母作答：a) 64 个键的滑动窗口，b) BigBird（窗口 + 全局块 + 随机块），c) 全注意力。

# %%
my_answer = None
_ = check_q2(my_answer)

# %% [markdown] tags=["lang-en"]
# **Stretch: a causal sliding window in O(N·w) memory.** Write `my_window_attention(q, k, v,
# window)` for `q, k` `(N, d)` and `v` `(N, dv)`: causal sliding-window attention (the `window`
# most recent keys, the query included), equal to dense masked attention — but without ever
# building an $N \times N$ mask or score matrix. The checker measures your function's peak memory
# on $N = 2048$ and fails it above an eighth of one $N \times N$ float32 matrix. Do not call
# `attnkit.sparse`'s window functions.

# %% [markdown] tags=["lang-zh"]
# **挑战题：只用 O(N·w) 内存的因果滑动窗口注意力。** 写出 `my_window_attention(q, k, v, window)`，其中 `q, k` 为 `(N, d)`，`v` 为 `(N, dv)`：因果滑动窗口注意力（最近的 `window` 个键，包括查询自己），结果要与稠密的带掩码注意力一致——但自始至终不能构造 $N \times N$ 的掩码或分数矩阵。检查器会在 $N = 2048$ 上测量你的函数的内存峰值，超过一个 $N \times N$ float32 矩阵的八分之一就判为不通过。不要调用 `attnkit.sparse` 的窗口函数。

# %%
def my_window_attention(q, k, v, window):
    # your code here
    raise NotImplementedError


_ = check_window_attention(my_window_attention)

# %% [markdown] tags=["lang-en"]
# ## 10. Summary
#
# - Dense attention holds $N^2$ scores per head; a sparse pattern keeps a set $S(i)$ of keys per
#   query, written once as a predicate $(i, j) \mapsto$ bool — the same function gives the mask,
#   the computation's key slices and FlexAttention's `mask_mod` (sections 2, 4).
# - The references disagree on "window $w$" by one key ($w$ vs $w + 1$), and `local-attention`
#   means a bucket; state the set (sections 2, 8).
# - Stacked sparse layers reach further: a window moves information a fixed distance per layer
#   ($w - 1$ causal, $w/2$ symmetric), dilation $\delta$ times further, a global token connects every
#   pair of tokens within two layers (section 3).
# - The chunked window is exact and needs $O(N d)$ memory plus one chunk; block-sparse computes only
#   kept blocks; Longformer merges a window and its global keys through log-sum-exps (sections 4, 5).
# - Sparsity has a price in depth: one full-attention layer finds every furthest vector, one sparse
#   layer only as often as it keeps the pair, and BigBird's Proposition 1 says a sparse graph with
#   $\tilde O(n)$ edges, global tokens included, needs close to $n$ layers for it (under the Orthogonal
#   Vectors Conjecture), although it connects every pair within two. Universal approximation
#   (BigBird's Theorem 1) holds for patterns that contain a star, a global token (section 6).
# - At decode time a causal window needs a cache of $w$ slots, written at $t \bmod w$, which equals the
#   window over the whole sequence; a few sink tokens kept for good hold the weight trained models
#   park on the first tokens; production models interleave local and global layers, and newer ones
#   choose the keys by content (section 7).
#
# **Next:** chapter 9 — linear attention, which keeps every pair but never forms the scores.
#
# ## References
# - R. Child, S. Gray, A. Radford, I. Sutskever, *Generating Long Sequences with Sparse Transformers*, arXiv:1904.10509, 2019 — §4.3 (strided and fixed factorised patterns), Figure 2 (learned attention patterns).
# - I. Beltagy, M. E. Peters, A. Cohan, *Longformer: The Long-Document Transformer*, arXiv:2004.05150, 2020 — §3.1 (sliding window, dilated window, global attention).
# - M. Zaheer et al., *Big Bird: Transformers for Longer Sequences*, NeurIPS 2020 — §2 (random, window and global attention), §3 (universal approximation, Turing completeness), §3.4 and Proposition 1 (the furthest-vector task), appendix D (the blocked implementation).
# - A. Q. Jiang et al., *Mistral 7B*, arXiv:2310.06825, 2023 — §2 (sliding window attention, rolling buffer cache).
# - C. Yun, Y.-W. Chang, S. Bhojanapalli, A. S. Rawat, S. J. Reddi, S. Kumar, *O(n) Connections are Expressive Enough: Universal Approximability of Sparse Transformers*, NeurIPS 2020.
# - G. Xiao, Y. Tian, B. Chen, S. Han, M. Lewis, *Efficient Streaming Language Models with Attention Sinks* (StreamingLLM), ICLR 2024.
# - T. B. Brown et al., *Language Models are Few-Shot Learners* (GPT-3), NeurIPS 2020 — §2.1 (alternating dense and locally banded sparse layers).
# - Gemma Team, *Gemma 2: Improving Open Language Models at a Practical Size*, arXiv:2408.00118, 2024; *Gemma 3 Technical Report*, arXiv:2503.19786, 2025 — local and global layers.
# - N. Kitaev, Ł. Kaiser, A. Levskaya, *Reformer: The Efficient Transformer*, ICLR 2020 — LSH attention.
# - A. Roy, M. Saffar, A. Vaswani, D. Grangier, *Efficient Content-Based Sparse Attention with Routing Transformers*, TACL 2021.
# - E. Lu et al., *MoBA: Mixture of Block Attention for Long-Context LLMs*, Moonshot AI, 2025.
# - J. Yuan et al., *Native Sparse Attention: Hardware-Aligned and Natively Trainable Sparse Attention*, arXiv:2502.11089, 2025.
# - DeepSeek-AI, *DeepSeek-V3.2-Exp: Boosting Long-Context Efficiency with DeepSeek Sparse Attention*, 2025 — the lightning indexer.
# - J. Dong, B. Feng, D. Guessous, Y. Liang, H. He, *Flex Attention: A Programming Model for Generating Optimized Attention Kernels*, arXiv:2412.05496, 2024 — `mask_mod` and `BlockMask`.

# %% [markdown] tags=["lang-zh"]
# ## 10. 小结
#
# - 稠密注意力在每个头上要保存 $N^2$ 个分数；稀疏模式为每个查询保留一个键的集合 $S(i)$，只需写一次判定函数 $(i, j) \mapsto$ bool——同一个函数既给出掩码，也给出计算时要取的键切片，还能当作 FlexAttention 的 `mask_mod`（第 2、4 节）。
# - 各参考实现对“窗口 $w$”的理解差一个键（$w$ 与 $w + 1$），而 `local-attention` 说的是桶；要把集合写清楚（第 2、8 节）。
# - 叠起来的稀疏层能传得更远：窗口每层把信息传过固定的距离（因果 $w - 1$，对称 $w/2$）。空洞传得远 $\delta$ 倍，全局词元两层之内连通任意一对词元（第 3 节）。
# - 分块计算的滑动窗口是精确的，只需 $O(N d)$ 的内存再加一段分数；分块稀疏只计算保留的分块；Longformer 通过 log-sum-exp 把窗口与全局键合并（第 4、5 节）。
# - 稀疏的代价是深度：一层全注意力能找到每一个最远向量，一层稀疏注意力找到的比例只等于它恰好保留那一对的比例；BigBird 的命题 1 说，只有 $\tilde O(n)$ 条边的稀疏图（包括带全局词元的）做这个任务需要接近 $n$ 层（以正交向量猜想为前提）。尽管如此，它两层之内就能连通任意一对词元。通用近似（BigBird 的定理 1）只对包含星（即全局词元）的模式成立（第 6 节）。
# - 解码时，因果窗口只需要 $w$ 个槽位的缓存，在 $t \bmod w$ 处写入，结果与在整个序列上做滑动窗口完全一样；永久保留几个汇聚点词元，就能留住训练好的模型停放在最前面词元上的权重；生产模型让局部层与全局层交替，较新的模型按内容选择键（第 7 节）。
#
# **下一章**：第 9 章——线性注意力：它保留所有配对，却从不构造分数。
#
# ## 参考文献
# - R. Child、S. Gray、A. Radford、I. Sutskever，*Generating Long Sequences with Sparse Transformers*，arXiv:1904.10509，2019——§4.3（strided 与 fixed 分解模式）、图 2（学到的注意力模式）。
# - I. Beltagy、M. E. Peters、A. Cohan，*Longformer: The Long-Document Transformer*，arXiv:2004.05150，2020——§3.1（滑动窗口、空洞窗口、全局注意力）。
# - M. Zaheer 等，*Big Bird: Transformers for Longer Sequences*，NeurIPS 2020——§2（随机、窗口与全局注意力）、§3（通用近似、图灵完备）、§3.4 与命题 1（最远向量任务）、附录 D（分块实现）。
# - A. Q. Jiang 等，*Mistral 7B*，arXiv:2310.06825，2023——§2（滑动窗口注意力、滚动缓冲区缓存）。
# - C. Yun、Y.-W. Chang、S. Bhojanapalli、A. S. Rawat、S. J. Reddi、S. Kumar，*O(n) Connections are Expressive Enough: Universal Approximability of Sparse Transformers*，NeurIPS 2020。
# - G. Xiao、Y. Tian、B. Chen、S. Han、M. Lewis，*Efficient Streaming Language Models with Attention Sinks*（StreamingLLM），ICLR 2024。
# - T. B. Brown 等，*Language Models are Few-Shot Learners*（GPT-3），NeurIPS 2020——§2.1（稠密层与局部带状稀疏层交替）。
# - Gemma Team，*Gemma 2: Improving Open Language Models at a Practical Size*，arXiv:2408.00118，2024；*Gemma 3 Technical Report*，arXiv:2503.19786，2025——局部层与全局层。
# - N. Kitaev、Ł. Kaiser、A. Levskaya，*Reformer: The Efficient Transformer*，ICLR 2020——LSH 注意力。
# - A. Roy、M. Saffar、A. Vaswani、D. Grangier，*Efficient Content-Based Sparse Attention with Routing Transformers*，TACL 2021。
# - E. Lu 等，*MoBA: Mixture of Block Attention for Long-Context LLMs*，Moonshot AI，2025。
# - J. Yuan 等，*Native Sparse Attention: Hardware-Aligned and Natively Trainable Sparse Attention*，arXiv:2502.11089，2025。
# - DeepSeek-AI，*DeepSeek-V3.2-Exp: Boosting Long-Context Efficiency with DeepSeek Sparse Attention*，2025——闪电索引器。
# - J. Dong、B. Feng、D. Guessous、Y. Liang、H. He，*Flex Attention: A Programming Model for Generating Optimized Attention Kernels*，arXiv:2412.05496，2024——`mask_mod` 与 `BlockMask`。
