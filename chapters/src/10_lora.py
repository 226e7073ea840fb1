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
# # 10 · LoRA on attention: low-rank updates you can see
#
# **What you will learn**
# - why fine-tuning every weight of a large model is wasteful, and how few parameters a low-rank
#   update needs (counted for a 7B-sized model);
# - the LoRA update $h = Wx + b + \frac{\alpha}{r} BAx$: why $B$ starts at zero and $A$ does not,
#   what $\alpha / r$ is for, and how merging makes inference cost nothing extra;
# - an experiment you can rerun in seconds: a teacher attention layer that differs from the
#   student by low-rank updates of $W_q, W_k, W_v, W_o$; at equal parameter budgets, where should
#   the rank go? — compared honestly with Hu et al. (2021);
# - `LoRASelfAttention`, the attention layer of this chapter's small language model: local softmax
#   heads, global linear heads and a causal blind spot, with LoRA on any of its projections;
# - one end-to-end fine-tune: a small character-level language model pretrained on this course's
#   English prose, adapted with LoRA to Python source code, measured before and after;
# - what lies beyond LoRA on attention: all linear layers (QLoRA), DoRA, AdaLoRA's budget
#   allocation, and serving many adapters unmerged (S-LoRA, Punica);
# - the pitfalls: forgetting $\alpha$, merging twice, merging in half precision, dropout at merge
#   time, a transposed base weight.
#
# **You need** chapter 04 (the projections $W_q, W_k, W_v, W_o$ of multi-head attention) and
# chapter 09 (linear attention, for the global heads of section 5). Singular values are explained
# where they are first used (section 3).

# %% [markdown] tags=["lang-zh"]
# # 10 · 注意力上的 LoRA：看得见的低秩更新
#
# **本章内容**
# - 为什么微调大模型的全部权重很浪费，以及低秩更新只需要多少参数（以 7B 规模的模型为例来数）；
# - LoRA 的更新 $h = Wx + b + \frac{\alpha}{r} BAx$：为什么 $B$ 从零开始而 $A$ 不是，$\alpha / r$ 有什么用；以及合并之后推理为什么一点额外开销都没有；
# - 一个几秒钟就能重跑的实验：教师注意力层与学生注意力层的 $W_q, W_k, W_v, W_o$ 之间相差若干低秩更新；在相同的参数预算下，秩应该放在哪里？——并如实地与 Hu 等（2021）的结果对照；
# - `LoRASelfAttention`，也就是本章小语言模型的注意力层：由局部 softmax 头、全局线性注意力头和因果盲区组成，可以在任意投影上加 LoRA；
# - 一次端到端的微调：一个在本课程英文正文上预训练的字符级小语言模型，用 LoRA 适配到 Python 源代码上，并测量微调前后的效果；
# - 只在注意力上加 LoRA 之外还有什么：所有线性层（QLoRA）、DoRA、AdaLoRA 的预算分配，以及不合并、同时服务多个适配器（S-LoRA、Punica）；
# - 常见陷阱：漏掉 $\alpha$、重复合并、在半精度下合并、合并时的 dropout、转置存放的原权重。
#
# **预备知识**：第 4 章（多头注意力的投影 $W_q, W_k, W_v, W_o$）和第 9 章（线性注意力，第 5 节的全局头会用到）。奇异值在第一次用到的地方（第 3 节）讲解。

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.i18n import set_language, t

set_language("en")

import attnkit.text.ch10  # noqa: F401  (the sentences this chapter prints)
from attnkit import lora as L
from attnkit import viz
from attnkit.numbers import max_rel_diff, within
from attnkit.timing import one_thread, round_robin_medians
from attnkit.widgets import lora as wl

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: the experiment and the timings repeat from run to run
print(t("ch10.versions", torch=torch.__version__.split("+")[0], n=torch.get_num_threads()))

# %% [markdown] tags=["lang-en"]
# ## 1. Why low rank
#
# Fine-tuning changes a pretrained weight $W_0$ into $W_0 + \Delta W$. Full fine-tuning learns
# every entry of $\Delta W$ — and stores a full copy of the model, plus optimizer state, per task.
# Hu et al. (2021, §4.1) build on the observation (Aghajanyan et al. 2020) that pretrained models
# adapt well within a small subspace, and hypothesise that the *update* has a low "intrinsic
# rank". So they write it as a product,
#
# $$\Delta W = \frac{\alpha}{r} B A, \qquad B \in \mathbb{R}^{d_\text{out} \times r},\ A \in \mathbb{R}^{r \times d_\text{in}},\ r \ll \min(d_\text{in}, d_\text{out}),$$
#
# and train only $A$ and $B$: $r(d_\text{in} + d_\text{out})$ numbers instead of
# $d_\text{in} d_\text{out}$. For a model of the size of LLaMA-7B (width 4096, 32 layers, four
# $4096 \times 4096$ attention projections per layer):

# %% [markdown] tags=["lang-zh"]
# ## 1. 为什么用低秩
#
# 微调把预训练权重 $W_0$ 变成 $W_0 + \Delta W$。全量微调要学出 $\Delta W$ 的每一个元素——每个任务还要保存一整份模型和优化器状态。Hu 等（2021，§4.1）基于这样一个观察（Aghajanyan 等，2020）：预训练模型在一个很小的子空间里就能很好地适配新任务；他们进而假设，*更新量*本身的“内在秩”也很低。于是把它写成一个乘积：
#
# $$\Delta W = \frac{\alpha}{r} B A, \qquad B \in \mathbb{R}^{d_\text{out} \times r},\ A \in \mathbb{R}^{r \times d_\text{in}},\ r \ll \min(d_\text{in}, d_\text{out}),$$
#
# 只训练 $A$ 和 $B$：参数个数是 $r(d_\text{in} + d_\text{out})$，而不是 $d_\text{in} d_\text{out}$。以 LLaMA-7B 这种规模的模型为例（宽度 4096，32 层，每层有四个 $4096 \times 4096$ 的注意力投影）：

# %%
d, n_layers = 4096, 32                       # a 7B-sized model (LLaMA-7B: width 4096, 32 layers)
full_proj, full_layer = d * d, 4 * d * d     # W_q, W_k, W_v, W_o are d x d each
rows = []
for r in (1, 2, 4, 8, 16, 32, 64):
    per_proj = L.lora_param_count(d, d, r)   # r (d_in + d_out)
    rows.append([r, f"{per_proj:,}", f"{2 * per_proj:,}", f"{4 * n_layers * per_proj:,}",
                 f"{4 * n_layers * per_proj / (n_layers * full_layer):.3%}"])
print(viz.format_table([t("ch10.col.r"), t("ch10.col.per_proj"), t("ch10.col.qv_layer"), t("ch10.col.all_model"),
                        t("ch10.col.fraction")], rows))
print(t("ch10.full_counts", p=full_proj, l=full_layer, m=n_layers * full_layer))
print(t("ch10.gpt3_budget", n=96 * L.lora_param_count(12288, 12288, 8)))

# %% [markdown] tags=["lang-en"]
# Even at $r = 64$ on all four projections of all 32 layers, LoRA trains 3.125% of the
# attention weights; at $r = 8$ it is 0.391%, about 8.4 million numbers instead of 2.1 billion.
# The last line is the budget of Hu et al.'s Table 5: $r = 8$ on one projection type of GPT-3's
# 96 layers is 18,874,368 parameters, the "18M" we will meet in section 3.
#
# ## 2. The update, from scratch
#
# The adapted layer computes
#
# $$h = W x + b + \frac{\alpha}{r}\, B A x .$$
#
# $W$ and $b$ are frozen. $B$ starts at **zero**, so at the first step the adapted layer is
# *exactly* the pretrained one and the update grows from nothing. $A$ starts **random** — Hu et
# al. use a Gaussian; loralib and peft use Kaiming-uniform, the initialisation `nn.Linear` gives
# its own weight (entries within $\pm 1/\sqrt{d_\text{in}}$), so $Ax$ has a scale that does not
# grow with $d_\text{in}$; `attnkit.lora` does the same. In code the update is two thin
# matrix products, $x A^\top$ then $(\cdot) B^\top$, never the $d_\text{out} \times d_\text{in}$
# matrix $BA$:

# %% [markdown] tags=["lang-zh"]
# 即使在全部 32 层的四个投影上都用 $r = 64$，LoRA 训练的也只占注意力权重的 3.125%；$r = 8$ 时只占 0.391%，大约 840 万个数，而全部注意力权重有 21 亿个。最后一行是 Hu 等表 5 的参数预算：在 GPT-3 的 96 层里、每层一种投影上用 $r = 8$，共 18,874,368 个参数，也就是第 3 节会遇到的“18M”。
#
# ## 2. 从零实现这个更新
#
# 加了 LoRA 的层计算
#
# $$h = W x + b + \frac{\alpha}{r}\, B A x.$$
#
# $W$ 和 $b$ 被冻结。$B$ 初始化为**零**，所以第一步时，加了 LoRA 的层与预训练的层*完全*相同，更新量从零开始增长。$A$ 则**随机**初始化——Hu 等用的是高斯分布；loralib 和 peft 用 Kaiming 均匀分布，也就是 `nn.Linear` 初始化自身权重的方式（元素落在 $\pm 1/\sqrt{d_\text{in}}$ 之内）。这样 $Ax$ 的尺度不会随 $d_\text{in}$ 增大；`attnkit.lora` 也这样做。在代码里，更新是两次“细长”的矩阵乘法：先 $x A^\top$，再乘 $B^\top$；从不构造 $d_\text{out} \times d_\text{in}$ 的矩阵 $BA$：

# %%
class TinyLoRA(nn.Module):
    """h = W x + b + (alpha / r) B A x around a frozen nn.Linear."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)                            # W (out, in), b (out): frozen
        self.A = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))  # (r, in)
        self.B = nn.Parameter(torch.zeros(base.out_features, r))          # (out, r): zero at the start
        self.scaling = alpha / r

    def forward(self, x):                                                 # (..., in) -> (..., out)
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T    # two thin matmuls, never B A


base = nn.Linear(64, 48)
tiny = TinyLoRA(base, r=4, alpha=8)
x = torch.randn(10, 64)
print(t("ch10.starts_equal", d=(tiny(x) - base(x)).abs().max().item()))
with torch.no_grad():
    tiny.B.normal_()                                                      # pretend it has trained
ours = L.LoRALinear.from_linear(base, r=4, lora_alpha=8)
with torch.no_grad():
    ours.lora_A.copy_(tiny.A)
    ours.lora_B.copy_(tiny.B)
explicit = x @ (base.weight + tiny.scaling * tiny.B @ tiny.A).T + base.bias
print(t("ch10.eq_attnkit", ok=torch.allclose(tiny(x), ours(x), atol=1e-5)))
print(t("ch10.eq_explicit", ok=torch.allclose(tiny(x), explicit, atol=1e-5)))

# %% [markdown] tags=["lang-en"]
# Why must $A$ be random, when $B = 0$ already makes the start exact? Predict before you read on.
#
# **Question 1** (predict first). At the very first step of fine-tuning, $B = 0$ and $A$ is
# random. Which of $A$ and $B$ get a non-zero gradient? a) both, b) only $A$, c) only $B$,
# d) neither. Replace `None` with a letter.

# %% [markdown] tags=["lang-zh"]
# 既然 $B = 0$ 已经保证了起点完全不变，为什么 $A$ 还必须是随机的？请先预测，再往下读。
#
# **问题 1（先预测）**：微调的第一步，$B = 0$，$A$ 是随机的。$A$ 和 $B$ 中，哪个的梯度不为零？a) 两个都是，b) 只有 $A$，c) 只有 $B$，d) 都不是。把 `None` 换成一个字母。

# %%
from attnkit.exercises.ch10 import check_q1

my_answer = None  # "a", "b", "c" or "d"
_ = check_q1(my_answer)

# %% [markdown] tags=["lang-en"]
# Write the update as $s\,B(Ax)$ and differentiate: the gradient with respect to $A$ is
# proportional to $B$, and with respect to $B$ proportional to $Ax$. With $B = 0$ and a random
# $A$, only $B$ moves at the first step, and $A$ follows once $B \ne 0$. If both were zero,
# nothing would ever move. Here is a layer with $A = B = 0$, trained with Adam for 20 steps:

# %% [markdown] tags=["lang-zh"]
# 把更新写成 $s\,B(Ax)$ 再求导：对 $A$ 的梯度与 $B$ 成正比，对 $B$ 的梯度与 $Ax$ 成正比。$B = 0$、$A$ 随机时，第一步只有 $B$ 会更新；$B \ne 0$ 之后，$A$ 也开始更新。如果两者都是零，就什么也不会更新。下面这个层的 $A = B = 0$，用 Adam 训练 20 步：

# %%
stuck = L.LoRALinear(64, 48, r=4)
with torch.no_grad():
    stuck.lora_A.zero_()                                                  # A = 0 as well as B = 0
opt = torch.optim.Adam([stuck.lora_A, stuck.lora_B], lr=0.1)
for step in range(20):
    loss = (stuck(torch.randn(16, 64)) - 1.0).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    if step == 0:
        ga, gb = stuck.lora_A.grad.abs().sum().item(), stuck.lora_B.grad.abs().sum().item()
    opt.step()
print(t("ch10.zero_grads", ga=ga, gb=gb, ba=stuck.delta_weight().abs().sum().item()))

# %% [markdown] tags=["lang-en"]
# **The scale $\alpha / r$.** Hu et al. (§4.1) scale the update by $\alpha / r$, set $\alpha$
# to the first $r$ they try and do not tune it: with Adam, tuning $\alpha$ is roughly the same as
# tuning the learning rate, and dividing by $r$ keeps the size of the update comparable when $r$
# changes, so a learning rate found at one rank still works at another. rsLoRA (Kalajdzievski
# 2023) argues that $1/r$ shrinks high-rank updates too much and uses $\alpha / \sqrt r$.
# Both, for $\alpha = 16$:

# %% [markdown] tags=["lang-zh"]
# **缩放系数 $\alpha / r$。** Hu 等（§4.1）把更新乘以 $\alpha / r$，把 $\alpha$ 设成第一次尝试的 $r$，之后不再调它。使用 Adam 时，调 $\alpha$ 大致相当于调学习率；而除以 $r$ 让更新的大小在 $r$ 改变时保持相当，所以在一个秩上找到的学习率换一个秩依然可用。rsLoRA(Kalajdzievski, 2023)认为 $1/r$ 把高秩的更新压得太小，改用 $\alpha / \sqrt r$。取 $\alpha = 16$，两种缩放分别是：

# %%
rows = [[r, f"{L.lora_scaling(r, 16):.3f}", f"{L.lora_scaling(r, 16, use_rslora=True):.3f}"] for r in (1, 4, 16, 64)]
print(viz.format_table([t("ch10.col.r"), t("ch10.col.alpha_r"), t("ch10.col.rslora")], rows))

# %% [markdown] tags=["lang-en"]
# **Merge and unmerge.** Because $\frac{\alpha}{r} BA$ has the shape of $W$, it can be added
# into it: $W' = W + \frac{\alpha}{r} BA$, and then the layer is an ordinary linear layer again —
# inference with a merged adapter costs *exactly* what the base model costs (timed in section 8).
# Subtracting the same matrix unmerges it, for instance to switch to another task's adapter.
# `LoRALinear.merge()` remembers that it has merged, so a second call does nothing; `unmerge()`
# gives $W$ back up to float rounding:

# %% [markdown] tags=["lang-zh"]
# **合并与拆分。** 因为 $\frac{\alpha}{r} BA$ 与 $W$ 形状相同，可以直接加进去：$W' = W + \frac{\alpha}{r} BA$。于是这一层又变回普通的线性层；合并了适配器的模型做推理，开销与原模型*完全*一样（第 8 节实测）。再减去同一个矩阵就能把它拆出来，比如换成另一个任务的适配器。`LoRALinear.merge()` 会记住已经合并过，所以第二次调用什么也不做；`unmerge()` 在浮点舍入误差范围内还原出 $W$：

# %%
W0 = ours.weight.clone()
y = ours(x)
ours.merge()
after_one = ours.weight.clone()
print(t("ch10.merged_eq", d=within(ours(x), y, 1e-5, relative=True)))
ours.merge()
print(t("ch10.merge_twice", ok=torch.equal(ours.weight, after_one)))
ours.unmerge()
print(t("ch10.unmerge_back", d=within(ours.weight, W0, 1e-5, relative=True)))

# %% [markdown] tags=["lang-en"]
# ## 3. An experiment: where should the rank go?
#
# Hu et al. (§7.1) ask: with a fixed budget of trainable parameters, which attention weights
# should LoRA adapt? We can ask the same question of a toy whose answer is *not* built in.
#
# - **Student**: a pretrained attention layer (width 32, 4 heads of 8, softmax attention).
# - **Teacher**: the same layer with all four weights changed, $W_p + D_p$, each $D_p$ of its own
#   rank and size (printed below). No placement of LoRA matches the teacher's structure exactly.
# - **Fine-tuning**: the student learns to reproduce the teacher's outputs on random inputs (mean
#   squared error, Adam, 120 steps, the same data for every run), with LoRA on $W_q$ only, $W_v$
#   only, $W_q$ and $W_v$, or all four, at ranks 1, 2, 4, 8 and $\alpha \in \{1, 16, 256\}$ —
#   and with full fine-tuning for comparison.
# - **Score**: the *recovered fraction* of the gap, $1 - L_\text{after} / L_\text{before}$ on
#   held-out inputs: 0 means no better than the pretrained student, 1 means the teacher exactly.
#
# All 48 LoRA runs train *together*: each has its own $A, B$, stacked along a leading axis, and
# the loss is the sum of the runs' losses, so each run's gradient depends only on its own loss —
# exactly separate runs (a test checks this against `LoRASelfAttention` trained run by run).
# A projection a run does not adapt has $A = B = 0$, which, as we just saw, never moves.

# %% [markdown] tags=["lang-zh"]
# ## 3. 实验：秩应该放在哪里？
#
# Hu 等（§7.1）提出的问题是：可训练参数的预算固定时，LoRA 应该去适配哪些注意力权重？我们可以在一个玩具模型上问同样的问题，而且答案*不是*事先设计好的。
#
# - **学生**：一个预训练好的注意力层（宽度 32，4 个头、每头 8 维，softmax 注意力）。
# - **教师**：同一个层，但四个权重都变了：$W_p + D_p$，每个 $D_p$ 有自己的秩和大小（见下面的输出）。无论把 LoRA 放在哪里，都不能与教师的结构完全吻合。
# - **微调**：学生在随机输入上学习复现教师的输出（均方误差，Adam，120 步，每次运行用相同的数据）。LoRA 分别只加在 $W_q$ 上、只加在 $W_v$ 上、加在 $W_q$ 和 $W_v$ 上、四个都加；秩取 1、2、4、8，$\alpha \in \{1, 16, 256\}$；另外用全量微调作对照。
# - **评分**：在留出集上*缩小差距的比例* $1 - L_\text{after} / L_\text{before}$：0 表示不比预训练的学生更好，1 表示与教师完全一致。
#
# 全部 48 次 LoRA 运行是*一起*训练的：每次运行有自己的 $A, B$，沿最前面一个维度堆叠起来；损失是各次运行损失之和，所以每次运行的梯度只取决于它自己的损失——与分开训练完全等价（有一个测试把它与逐次训练的 `LoRASelfAttention` 相比较）。某次运行不适配的投影，其 $A = B = 0$，我们刚才看到，这样的参数永远不会变。

# %% alt="ch10.alt.budget"
ex = L.run_budget_experiment(alphas=(1, 16, 256), steps=120)   # 48 LoRA runs + full fine-tuning, a few seconds
for p, (rank, size) in L.DEFAULT_DELTAS.items():
    print(t("ch10.teacher", p=p, rank=torch.linalg.matrix_rank(ex["true_delta"][p]).item(),
            size=(ex["true_delta"][p].norm() / ex["base"][p].norm()).item()))
print(t("ch10.gap", loss=ex["full"]["losses"][0]))
placements = [("q",), ("v",), ("q", "v"), L.PROJECTIONS]
rows, best = [], {}
for total in (1, 2, 4, 8):                    # total rank: r on one projection, r/2 on two, r/4 on four
    row = [f"{total * 64:,}"]
    for p in placements:
        r = total // len(p)
        res = ex["runs"].get((p, r, 16)) if r >= 1 and total % len(p) == 0 else None
        row.append(f"{res['recovered']:.3f}" if res else "—")
        if res and res["recovered"] > best.get(total, (None, -1e9))[1]:
            best[total] = (p, res["recovered"])
    rows.append(row)
print(viz.format_table([t("ch10.col.budget")] + [t("ch10.col.place", where=wl.placement_label(p)) for p in placements],
                       rows))
print(t("ch10.full_row", n=ex["full"]["trainable"], rec=ex["full"]["recovered"]))
for total, (p, rec) in best.items():
    print(t("ch10.best_at", n=total * 64, where=wl.placement_label(p), rec=rec))
print(t("ch10.spread_wins", ok=all(ex["runs"][(("q", "v"), r // 2, 16)]["recovered"] > ex["runs"][(("q",), r, 16)]["recovered"]
                                 for r in (2, 4, 8))))
_ = wl.budget_figure(ex, alpha=16)

# %% [markdown] tags=["lang-en"]
# Rows are budgets: 64 trainable parameters is rank 1 on one $32 \times 32$ projection, and
# each row doubles it, spread over one, two or four projections ("—": the budget cannot be split
# that way). At every budget LoRA on $W_q$ alone recovers least. At the two smallest budgets
# $W_v$ alone is best — at 128 parameters it beats $W_q + W_v$ at rank 1 — and from 256 on, spreading
# the budget over all four projections is best: at 512 parameters, rank 2 on all four beats rank 4
# on $W_q$ and $W_v$, which beats rank 8 on $W_v$, far ahead of rank 8 on $W_q$. Full fine-tuning,
# with about eight times the largest budget, recovers almost all of the gap.
#
# How does this compare with the paper? Hu et al. fine-tuned GPT-3 175B at a budget of 18M
# parameters:

# %% [markdown] tags=["lang-zh"]
# 每一行是一种预算：64 个可训练参数相当于在一个 $32 \times 32$ 的投影上用秩 1，每往下一行翻一倍，分给一个、两个或四个投影（“—”表示这个预算没法这样分）。在每种预算下，只在 $W_q$ 上加 LoRA 缩小的差距都最少。在最小的两档预算下，只加在 $W_v$ 上效果最好——128 个参数时，它胜过 $W_q + W_v$ 各用秩 1；从 256 个参数起，把预算分给全部四个投影效果最好。512 个参数时，四个投影各用秩 2，胜过 $W_q$ 和 $W_v$ 各用秩 4；后者又胜过只在 $W_v$ 上用秩 8，而只在 $W_q$ 上用秩 8 远远落在后面。全量微调的参数大约是最大预算的八倍，几乎把差距全部消除。
#
# 这与论文相比如何？Hu 等在 18M 参数的预算下微调了 GPT-3 175B：

# %%
print(t("ch10.paper_title"))
print(viz.format_table([t("ch10.col.weights"), t("ch10.col.r"), t("ch10.col.wikisql"), t("ch10.col.mnli")],
                       [["W_q", 8, 70.4, 91.0], ["W_k", 8, 70.0, 90.8], ["W_v", 8, 73.0, 91.0], ["W_o", 8, 73.2, 91.3],
                        ["W_q, W_k", 4, 71.4, 91.3], ["W_q, W_v", 4, 73.7, 91.3], ["W_q, W_k, W_v, W_o", 2, 73.7, 91.7]]))
print(t("ch10.paper6_title"))
print(viz.format_table([t("ch10.col.weights"), "1", "2", "4", "8", "64"],
                       [["W_q", 68.8, 69.6, 70.5, 70.4, 70.0], ["W_q, W_v", 73.4, 73.3, 73.7, 73.8, 73.5]]))
for p in (("q",), ("q", "v")):
    print(t("ch10.toy_rank", where=wl.placement_label(p),
            vals=t("ch10.sep").join(f"{ex['runs'][(p, r, 16)]['recovered']:.3f}" for r in (1, 2, 4, 8))))

# %% [markdown] tags=["lang-en"]
# Table 5's first column gives the standard deviation across random seeds the paper found for
# each task: $\pm 0.5$ points on WikiSQL, $\pm 0.1$ on MultiNLI. Differences smaller than that are
# seed noise: $W_q, W_v$ and all four tie on WikiSQL (73.7), and $W_v$ (73.0) against $W_o$ (73.2)
# is within one deviation. What stands beyond it is the gap of about three points between $W_q$
# or $W_k$ alone and the placements that include $W_v$ or $W_o$.
#
# **Where the toy agrees.** Spreading the budget beat putting it all on $W_q$: in Table 5,
# $W_q, W_v$ at $r = 4$ and all four at $r = 2$ beat $W_q$ at $r = 8$ on both tasks (by 3.3 points
# on WikiSQL, 0.3 and 0.7 on MultiNLI: each beyond its deviation), and in our table $W_q + W_v$ at
# rank $r/2$ beats $W_q$ at rank $r$ at every budget (the check above).
#
# **Where it differs, and why.** In Table 6 the rank hardly matters: $W_q + W_v$ is as good at
# $r = 1$ as at $r = 64$, which the paper reads as a very low intrinsic rank of the update. In the
# toy, every rank step helps. That is built into *this* teacher: its update of $W_q$ has rank 4,
# so LoRA on $W_q$ gains up to $r = 4$ and little beyond (the line above); and the $W_q + W_v$ runs,
# which do not adapt $W_o$ or $W_k$ at all, keep gaining past the rank 2 of $W_v$'s update because
# their adapter on $W_v$ also makes up, as well as it can, for the updates of $W_k$ (rank 1) and
# $W_o$ (rank 8) that no adapter of theirs represents. A real task's
# update is whatever pretraining left to learn; ours is what we chose. A toy can also differ
# because it is tiny (width 32: rank 8 is a quarter of full rank), trained for 120 steps, on
# random inputs instead of language, and because one layer has no later layers that could
# compensate for an unadapted projection. What transfers is the mechanism — which parts of the
# update each placement can represent — not the numbers.
#
# **Singular values, in one paragraph.** Every matrix $M$ (out $\times$ in) factors as
# $M = U \Sigma V^\top$, its singular value decomposition (SVD): the columns of $U$ and $V$ are
# orthonormal output and input directions, and $\Sigma$ is diagonal with the *singular values*
# $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$, how much $M$ stretches each input direction. The rank
# of $M$ is the number of non-zero $\sigma_i$, and $\|M\|_F^2 = \sum_i \sigma_i^2$. A LoRA update
# $BA$ of rank $r$ has at most $r$ non-zero singular values. Eckart and Young (1936) proved that
# the best approximation of $M$ of rank $k$, in the Frobenius norm, keeps the $k$ largest:
# $M_k = \sum_{i \le k} \sigma_i u_i v_i^\top$, with error $\|M - M_k\|_F = (\sum_{i > k}
# \sigma_i^2)^{1/2}$. So an adapter of rank $k$ can at best reproduce the $k$ largest singular
# values of the update it is after; the stretch exercise of section 10 builds on this.
#
# **Subspace similarity (Hu et al. §7.2, eq. 4).** Do runs of different rank learn the same
# directions? With $U_{A}^{i}$ the top-$i$ right-singular vectors of $A$,
# $\phi(A_1, A_2, i, j) = \| {U_{A_1}^{i}}^\top U_{A_2}^{j} \|_F^2 / \min(i, j) \in [0, 1]$. The
# paper compares $r = 8$ with $r = 64$ (Figure 3) and finds the top direction shared. We compare
# the $W_q + W_v$ runs at $r = 4$ and $r = 8$, which started from independent random $A$:

# %% [markdown] tags=["lang-zh"]
# 表 5 第一列给出了论文在每个任务上测得的不同随机种子之间的标准差：WikiSQL 为 $\pm 0.5$ 分，MultiNLI 为 $\pm 0.1$ 分。比这更小的差别只是种子带来的噪声：在 WikiSQL 上，$W_q, W_v$ 与四个投影都加打成平手（73.7）；$W_v$（73.0）与 $W_o$（73.2）也在一个标准差之内。超出噪声的是只加在 $W_q$ 或 $W_k$ 上与包含 $W_v$ 或 $W_o$ 的放法之间大约三分的差距。
#
# **一致的地方。** 把预算分散开胜过全部放在 $W_q$ 上：在表 5 中，$W_q, W_v$ 用 $r = 4$ 和四个投影都用 $r = 2$，在两个任务上都胜过 $W_q$ 用 $r = 8$。WikiSQL 上高 3.3 分，MultiNLI 上高 0.3 分和 0.7 分，都超出了各自的标准差；在我们的表里，每种预算下 $W_q + W_v$ 用秩 $r/2$ 都胜过 $W_q$ 用秩 $r$（上面那行检查）。
#
# **不同的地方，以及原因。** 表 6 中秩的大小几乎无关紧要：$W_q + W_v$ 在 $r = 1$ 时与 $r = 64$ 时一样好，论文据此认为更新的内在秩非常低。而在玩具模型里，秩每增加一档都有帮助。这是*这个*教师本身决定的：它对 $W_q$ 的更新秩为 4，所以只加在 $W_q$ 上的 LoRA 到 $r = 4$ 为止都有提升，再往上就很少了（上面那行）。$W_q + W_v$ 的运行根本不适配 $W_o$ 和 $W_k$，却在超过 $W_v$ 的更新秩 2 之后仍有提升。这是因为它们在 $W_v$ 上的适配器还在尽力弥补 $W_k$（秩 1）和 $W_o$（秩 8）的更新，而这两处没有任何适配器。真实任务的更新是预训练之后剩下要学的东西，而我们的更新是我们自己选的。玩具模型与论文不同还有别的原因：它很小（宽度 32，秩 8 已经是满秩的四分之一），只训练 120 步，输入是随机数而不是语言，而且只有一层，没有后面的层去弥补某个没被适配的投影。能推广的是机理——每种放法能表示更新的哪一部分——而不是具体数字。
#
# **一段话讲清奇异值。** 每个矩阵 $M$ (out $\times$ in)都可以分解为 $M = U \Sigma V^\top$，即它的奇异值分解（SVD）。$U$ 和 $V$ 的列是两组标准正交的输出方向和输入方向；$\Sigma$ 是对角矩阵，对角线上是*奇异值* $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$；它们表示 $M$ 把每个输入方向拉伸多少。$M$ 的秩就是非零 $\sigma_i$ 的个数，并且 $\|M\|_F^2 = \sum_i \sigma_i^2$。秩为 $r$ 的 LoRA 更新 $BA$ 最多有 $r$ 个非零奇异值。Eckart 和 Young（1936）证明：在 Frobenius 范数下，$M$ 的最佳秩 $k$ 近似保留最大的 $k$ 个奇异值。即 $M_k = \sum_{i \le k} \sigma_i u_i v_i^\top$；误差为 $\|M - M_k\|_F = (\sum_{i > k} \sigma_i^2)^{1/2}$。所以秩为 $k$ 的适配器最多只能复现目标更新中最大的 $k$ 个奇异值；第 10 节的挑战题就建立在这一点上。
#
# **子空间相似度（Hu 等 §7.2，式 4）。** 不同秩的运行学到的是同样的方向吗？记 $U_{A}^{i}$ 为 $A$ 的前 $i$ 个右奇异向量；$\phi(A_1, A_2, i, j) = \| {U_{A_1}^{i}}^\top U_{A_2}^{j} \|_F^2 / \min(i, j) \in [0, 1]$。论文比较的是 $r = 8$ 与 $r = 64$（图 3），发现最主要的方向是共享的。我们比较 $W_q + W_v$ 在 $r = 4$ 和 $r = 8$ 时的两次运行，它们的 $A$ 是各自独立随机初始化的：

# %% alt="ch10.alt.subspace"
tables = {}
for p in ("q", "v"):
    r4, r8 = ex["runs"][(("q", "v"), 4, 16)], ex["runs"][(("q", "v"), 8, 16)]
    tables[p] = L.subspace_similarity(r4["A"][p], r8["A"][p])             # (4, 8): i = 1..4, j = 1..8
    init = L.subspace_similarity(r4["A0"][p], r8["A0"][p], 1, 1).item()
    print(t("ch10.sim", p=p, learned=tables[p][0, 0].item(), init=init, rand=1 / 32))
for p in ("q", "v"):
    sv = torch.linalg.svdvals(ex["runs"][(("q", "v"), 8, 16)]["delta"][p])[:4]
    sv_t = torch.linalg.svdvals(ex["true_delta"][p])[:4]
    print(t("ch10.sv", p=p, learned=t("ch10.sep").join(f"{v:.2f}" for v in sv),
            teacher=t("ch10.sep").join(f"{v:.2f}" for v in sv_t)))
_ = wl.similarity_figure(tables, 4, 8)

# %% [markdown] tags=["lang-en"]
# As in the paper, the top directions of the two runs' $A$ overlap far more than at
# initialisation (and far more than two random subspaces of $\mathbb{R}^{32}$, whose expected
# $\phi$ at $i = j = 1$ is $1/32$): training pulled both towards the directions the teacher's
# update needs. The singular values tell the same story from the other side: with $r = 8$ on
# $W_q$ and $W_v$, the learned $\Delta W_q$ has nearly the teacher's four singular values, while
# $\Delta W_v$ spends extra rank — its teacher update has rank 2, but the adapter on $W_v$ is also
# making up, as well as it can, for the updates of $W_k$ and $W_o$ that no adapter represents.
#
# ## 4. Explore the runs
#
# Pick **where** LoRA goes, its **rank** and **alpha**: the left panel shows the held-out loss
# during training (dashed: full fine-tuning), the middle the recovered fraction, the right the
# singular values of each learned update (solid) next to the teacher's (dotted). Every run was
# computed once in section 3; moving a control only selects one. (On GitHub, the static figure
# below shows the starting selection.)

# %% [markdown] tags=["lang-zh"]
# 与论文一样，两次运行的 $A$ 最主要的方向重叠程度远高于初始化时。它也远高于 $\mathbb{R}^{32}$ 中两个随机子空间的重叠：$i = j = 1$ 时 $\phi$ 的期望只有 $1/32$。训练把两者都拉向了教师的更新所需要的方向。奇异值从另一面说明了同一件事：在 $W_q$ 和 $W_v$ 上用 $r = 8$ 时，学到的 $\Delta W_q$ 的前四个奇异值与教师的几乎一样；而 $\Delta W_v$ 用掉了更多的秩——教师对它的更新秩只有 2，但 $W_v$ 上的适配器还在尽力弥补 $W_k$ 和 $W_o$ 的更新，而那两处没有任何适配器。
#
# ## 4. 动手探索这些运行
#
# 选择 LoRA 加在**哪里**、它的**秩**和 **alpha**：左图是训练过程中的留出集损失（虚线为全量微调）；中间是缩小差距的比例；右图是每个学到的更新的奇异值（实线）与教师的奇异值（点线）。所有运行都已在第 3 节算好；移动控件只是从中选出一个。（在 GitHub 上，下面的静态图展示的是初始选择。）

# %% tags=["nbval-ignore-output"] alt="ch10.alt.explorer"
explorer = wl.lora_explorer(ex, placement=("q", "v"), rank=4, alpha=16)
display(explorer.widget)
_ = explorer.static()

# %% [markdown] tags=["lang-en"]
# The numbers behind two contrasts worth trying in the explorer: $\alpha$ hardly matters
# over a wide range (Adam normalises the gradient's scale, so $\alpha$ acts like a learning-rate
# factor for the update), until it is too large — with all four projections at $r = 2$ and
# $\alpha = 256$ the scale $\alpha / r$ is 128 and the first steps throw the loss far above where
# it started; and $\alpha = 1$ at $r = 8$ gives a scale of $1/8$, a smaller step, and a little
# less recovered in 120 steps:

# %% [markdown] tags=["lang-zh"]
# 探索时值得比较的两组对照，背后的数字如下：$\alpha$ 在很宽的范围内都影响不大（Adam 会把梯度的尺度归一化，所以 $\alpha$ 相当于更新的一个学习率系数）。除非它太大：四个投影都用 $r = 2$、$\alpha = 256$ 时，缩放系数 $\alpha / r$ 是 128；头几步就把损失推到远高于起点的位置；而 $r = 8$ 时 $\alpha = 1$ 的缩放系数是 $1/8$，每一步更小，120 步内缩小的差距也略少：

# %%
for p, r, alpha in ((L.PROJECTIONS, 2, 16), (L.PROJECTIONS, 2, 256), (("q", "v"), 8, 1), (("q", "v"), 8, 16)):
    view = wl.run_view(ex, p, r, alpha)
    print(t("ch10.view", where=wl.placement_label(p), r=r, alpha=alpha, rec=view["recovered"], peak=max(view["losses"])))

# %% [markdown] tags=["lang-en"]
# **Why $W_q$ matters so little here.** With $r = 8$, LoRA on $W_q$ alone learns an update whose
# top singular values are close to those of the teacher's $\Delta W_q$ (choose q and rank 8 in the
# explorer: its right panel shows both), yet it recovers the least. The recovered fraction is measured on
# the output, and $W_q$ reaches the output only through the attention weights: a change of $q$
# moves the scores, and the softmax turns a small move of the scores into a smaller move of the
# weights, which then average values that did not change. $W_v$ and $W_o$ change the output
# linearly. Even the teacher's *exact* update of one weight, the other three left as the
# student's, closes only part of the gap:

# %% [markdown] tags=["lang-zh"]
# **为什么 $W_q$ 在这里几乎不起作用。** 在 $r = 8$ 时，只加在 $W_q$ 上的 LoRA 学到的更新，最大的几个奇异值与教师的 $\Delta W_q$ 很接近（在交互控件里选 q、秩 8，右图同时画出了两者）；可它缩小的差距却最少。
# 缩小差距的比例是在输出上量的，而 $W_q$ 只能通过注意力权重影响输出：$q$ 的变化改变分数；softmax 又把分数的小变化变成权重的更小变化，而这些权重加权平均的值并没有变。$W_v$ 和 $W_o$ 则线性地改变输出。即使把某一个权重换成教师的*精确*更新、其余三个保持学生的权重，也只能缩小一部分差距：

# %%
x_gap = torch.randn(64, 16, 32, generator=torch.Generator().manual_seed(7))   # held-out inputs of our own
y_gap = L.attention_forward(x_gap, ex["teacher"], 4)
gap = F.mse_loss(L.attention_forward(x_gap, ex["base"], 4), y_gap)
shares = {p: 1 - (F.mse_loss(L.attention_forward(x_gap, {**ex["base"], p: ex["teacher"][p]}, 4), y_gap) / gap).item()
          for p in L.PROJECTIONS}
print(t("ch10.exact_one", vals=t("ch10.sep").join(f"W_{p} {v:.2f}" for p, v in shares.items())))

# %% [markdown] tags=["lang-en"]
# Most of the gap is $W_v$'s. The teacher's exact $W_q$ recovers less than LoRA on $W_q$ alone did
# in section 3: trained on the output, that adapter also makes up a little for the three weights
# it does not touch, as the one on $W_v$ did.
#
# ## 5. LoRASelfAttention: local heads, global linear heads, a blind spot
#
# Sections 3 and 4 adapted a bare attention layer. A model's attention layer has more in it —
# several kinds of heads, masks, dropout, an output projection with a bias — and LoRA must wrap
# its projections without changing what the layer computes. `attnkit.lora.LoRASelfAttention` is
# such a layer, and it is the attention of the small language model that section 6 fine-tunes.
# Its arguments are those of `SelfAttention` in Phil Wang's (lucidrains) package
# `linear-attention-transformer` (github.com/lucidrains/linear-attention-transformer), whose
# names and head kinds it follows, plus LoRA's:
#
# `LoRASelfAttention(dim, heads, r=8, lora_alpha=16, enable_lora=('q','k','v','o'), causal=False,
# dim_head=64, blindspot_size=None, n_local_attn_heads=0, local_attn_window_size=128,
# attn_dropout=0.1, dropout=0.1)`, forward `(x, input_mask=None)`: (B, N, dim) → (B, N, dim).
#
# - q, k, v are projections `dim → heads · dim_head` without bias, the output projection has a
#   bias, then dropout. `enable_lora` names the projections that get LoRA (any iterable of the
#   letters q, k, v, o); `enable_lora=()` is the same layer without LoRA.
# - **Local heads** (the first `n_local_attn_heads`): softmax attention, scale
#   $d_\text{head}^{-1/2}$, inside fixed buckets of $W$ = `local_attn_window_size` tokens,
#   $[uW, (u+1)W)$. A query sees its own bucket and the previous one, and the next one when not
#   causal; causal keeps only keys at or before the query. `attn_dropout` drops these weights only.
# - **Global heads** (the rest): linear attention (chapter 09). Not causal:
#   $\mathrm{softmax}_d(q)\, d_\text{head}^{-1/2} \cdot (\mathrm{softmax}_N(k)^\top v)$, the softmax
#   of $k$ taken over the sequence. Causal: the kernel
#   $K_{ij} = \mathrm{softmax}_d(q_i)\, d_\text{head}^{-1/2} \cdot e^{k_j}$, normalised by its row sum
#   floored at $10^{-3}$, over the keys the query sees: $j \le i$, or with a blind spot
#   $b$ = `blindspot_size` > 1 only $j < b \lfloor i / b \rfloor$ — the query's own bucket of $b$
#   positions, itself included, is hidden, and the first bucket's output is zero.
#   Here `blindspot_size=None` or 1 means no blind spot. In `linear-attention-transformer`,
#   `SelfAttention` defaults to 1, but a `None` passed to it reaches its causal linear attention,
#   which replaces it by its default bucket of 64: a query there cannot see the 64 positions of its
#   own bucket, and the length must be a multiple of 64. To compare with that package, pass the
#   same number to both (1 for no blind spot, 64 for its `None`).
# - Any $N$: buckets that $N$ does not fill are padded inside with masked keys, and exactly $N$
#   positions come back. `input_mask` (B, N), True = real token, removes the other positions as
#   keys and values from every head.
#
# This usage example runs as written:

# %% [markdown] tags=["lang-zh"]
# 差距的大部分来自 $W_v$。教师的精确 $W_q$ 缩小的差距，比第 3 节里只加在 $W_q$ 上的 LoRA 还少。那个适配器是对着输出训练的，它还会稍稍弥补自己没碰到的另外三个权重，就像 $W_v$ 上的适配器那样。
#
# ## 5. LoRASelfAttention：局部头、全局线性注意力头和盲区
#
# 第 3、4 节适配的是一个光秃秃的注意力层。模型里的注意力层还有更多东西：几种不同的头、掩码、dropout、带偏置的输出投影。LoRA 要包住其中的投影，又不能改变这个层的计算结果。`attnkit.lora.LoRASelfAttention` 就是这样一个层，也是第 6 节要微调的小语言模型所用的注意力层。它的参数沿用 Phil Wang（lucidrains）的
# `linear-attention-transformer` 包（github.com/lucidrains/linear-attention-transformer）中的 `SelfAttention`；参数名和头的种类都来自那里，再加上 LoRA 自己的参数：
#
# `LoRASelfAttention(dim, heads, r=8, lora_alpha=16, enable_lora=('q','k','v','o'), causal=False,
# dim_head=64, blindspot_size=None, n_local_attn_heads=0, local_attn_window_size=128,
# attn_dropout=0.1, dropout=0.1)`，前向调用为 `(x, input_mask=None)`：(B, N, dim) → (B, N, dim)。
#
# - q、k、v 是不带偏置的投影 `dim → heads · dim_head`，输出投影带偏置，之后接 dropout。`enable_lora` 指定哪些投影加 LoRA（由字母 q、k、v、o 组成的任意可迭代对象）；`enable_lora=()` 就是不加 LoRA 的同一个层。
# - **局部头**（前 `n_local_attn_heads` 个头）：在固定的桶内做 softmax 注意力，缩放系数为 $d_\text{head}^{-1/2}$；每个桶有 $W$ = `local_attn_window_size` 个词元，即 $[uW, (u+1)W)$。查询能看到自己所在的桶和前一个桶，非因果时还能看到后一个桶；因果时只保留位置不晚于查询的键。`attn_dropout` 只作用于这些注意力权重。
# - **全局头**（其余的头）：线性注意力（第 9 章）。非因果时为
#   $\mathrm{softmax}_d(q)\, d_\text{head}^{-1/2} \cdot (\mathrm{softmax}_N(k)^\top v)$；其中 $k$ 的 softmax 沿序列方向计算。因果时用核 $K_{ij} = \mathrm{softmax}_d(q_i)\, d_\text{head}^{-1/2} \cdot e^{k_j}$，除以它的行和（下限为 $10^{-3}$）；只对查询能看到的键求和：$j \le i$；若盲区 $b$ = `blindspot_size` > 1，则只有 $j < b \lfloor i / b \rfloor$。查询自己所在的那个长度为 $b$ 的桶（包括它自己）被隐藏，第一个桶的输出为零。在这里，`blindspot_size=None` 或 1 表示没有盲区。在 `linear-attention-transformer` 中，`SelfAttention` 的默认值是 1，但传给它的 `None` 会一直传到它的因果线性注意力里，在那里被换成默认的桶大小 64。查询看不到自己所在的那 64 个位置，序列长度也必须是 64 的倍数。要与那个包比较，请给两边传入同一个数（没有盲区传 1，对应它的 `None` 传 64）。
# - 任意 $N$：$N$ 填不满的桶在内部用被屏蔽的键补齐，返回的恰好是 $N$ 个位置。`input_mask` 的形状为 (B, N)，True 表示真实词元，其余位置在每个头里都不再作为键和值。
#
# 下面的用法示例可以原样运行：

# %%
torch.manual_seed(0)
attn = L.LoRASelfAttention(dim=512, heads=8, r=8, lora_alpha=16, enable_lora=["q", "k", "v", "o"], causal=True,
                           dim_head=64, blindspot_size=None, n_local_attn_heads=4, local_attn_window_size=128,
                           attn_dropout=0.1, dropout=0.1)
x = torch.randn(1, 128, 512)
out = attn(x)
n_train, n_total = L.count_parameters(L.mark_only_lora_as_trainable(attn))
print(t("ch10.usage_shape", x=tuple(x.shape), out=tuple(out.shape), n=n_train, total=n_total))
print(t("ch10.ragged", n=100, shape=tuple(attn(torch.randn(2, 100, 512)).shape)))

# %% [markdown] tags=["lang-en"]
# **Which parameters train.** `mark_only_lora_as_trainable(model, bias=...)` (loralib's function,
# with its three modes) freezes every parameter whose name does not contain `lora_`, then decides
# about the biases: `"none"` trains no bias, `"all"` trains every bias of the model, adapted layer
# or not, and `"lora_only"` trains only the biases of the layers that carry LoRA. In
# `LoRASelfAttention` only the output projection has a bias, so the mode matters for it alone.
# A model of two layers, the first adapted, the second plain:

# %% [markdown] tags=["lang-zh"]
# **哪些参数参与训练。** `mark_only_lora_as_trainable(model, bias=...)`（loralib 的函数，有三种模式）先冻结名字里不含 `lora_` 的所有参数，再决定偏置怎么办：`"none"` 不训练任何偏置；`"all"` 训练模型里的所有偏置，不管那一层有没有加 LoRA；`"lora_only"` 只训练加了 LoRA 的层的偏置。在 `LoRASelfAttention` 里只有输出投影带偏置，所以模式只影响它。下面是一个两层的模型，第一层加了 LoRA，第二层是普通的线性层：

# %%
two = nn.Sequential(L.LoRALinear(8, 8, r=2), nn.Linear(8, 8))   # layer 0 carries LoRA, layer 1 does not
for bias in ("none", "all", "lora_only"):
    L.mark_only_lora_as_trainable(two, bias=bias)
    print(t("ch10.bias_mode", bias=f'"{bias}"', names=t("ch10.sep").join(n for n, p in two.named_parameters() if p.requires_grad)))

# %% [markdown] tags=["lang-en"]
# **What each output depends on.** The pictures below are `visible_keys`, the definitions
# above as (query, key) masks; the printed checks compute, with autograd, which value positions
# each output row of the real head functions depends on, and find the same sets. The blind spot
# is the staircase on the right: a query sees only the buckets *completed* before its own.

# %% [markdown] tags=["lang-zh"]
# **每个输出依赖哪些位置。** 下面的图是 `visible_keys`，即把上面的定义画成（查询, 键）掩码；打印出的检查用自动求导算出实际的头函数每一行输出依赖哪些位置的值，结果与这些集合完全一致。右边那幅阶梯状的图就是盲区：查询只能看到在它自己的桶之前*已经完整结束*的那些桶。

# %% alt="ch10.alt.dependency"
n = 16
q, k, v = (torch.randn(1, 1, n, 8, dtype=torch.float64) for _ in range(3))
causal = t("lora.fig.causal")
kinds = [  # (label, head function of the values v, the keys each row should see)
    (t("lora.fig.dep_local", w=4, causal=""), lambda v: L.local_bucket_attention(q, k, v, 4),
     L.visible_keys(n, "local", False, window=4)),
    (t("lora.fig.dep_local", w=4, causal=causal), lambda v: L.local_bucket_attention(q, k, v, 4, causal=True),
     L.visible_keys(n, "local", True, window=4)),
    (t("lora.fig.dep_global", causal=causal, b=1), lambda v: L.global_linear_attention(q, k, v, causal=True),
     L.visible_keys(n, "global", True)),
    (t("lora.fig.dep_global", causal=causal, b=4),
     lambda v: L.global_linear_attention(q, k, v, causal=True, blindspot_size=4),
     L.visible_keys(n, "global", True, blindspot_size=4)),
]
for label, f, vis in kinds:
    jac = torch.autograd.functional.jacobian(lambda v: f(v)[0, 0].sum(-1), v)[:, 0, 0].abs().sum(-1)  # (n, n)
    print(t("ch10.depends", kind=label, ok=torch.equal(jac > 0, vis)))
blind = kinds[-1][1](v)                                   # (1, 1, n, 8)
print(t("ch10.blind_zero", ok=torch.equal(blind[..., :4, :], torch.zeros(1, 1, 4, 8))))
_ = wl.dependency_figure(n=16, window=4, blindspot_size=4)

# %% [markdown] tags=["lang-en"]
# Masks work the same way for every head kind: padded positions are never keys or values,
# so what they contain cannot reach a real token:

# %% [markdown] tags=["lang-zh"]
# 掩码对每种头的作用都一样：填充位置永远不会成为键或值，所以无论填的是什么，都影响不到真实词元：

# %%
attn.eval()                                               # no dropout: compare outputs exactly
mask = torch.ones(2, 100, dtype=torch.bool)
mask[1, 70:] = False                                      # the second sequence has 70 real tokens
x = torch.randn(2, 100, 512)
x_other = x.clone()
x_other[1, 70:] = torch.randn(30, 512)                    # different padding content
same = torch.allclose(attn(x, mask)[mask], attn(x_other, mask)[mask], atol=1e-6)
print(t("ch10.mask_ok", ok=same))

# %% [markdown] tags=["lang-en"]
# ## 6. A small pretrained model, fine-tuned
#
# Sections 3 and 4 fine-tuned towards a teacher we built. Here is the real workflow once, end to
# end, at a size that runs in seconds: a language model pretrained on one text, adapted with LoRA
# to another.
#
# - **The model**: `attnkit.experiments.charlm.CharLM`, a character-level language model (its
#   size is printed below): two pre-norm transformer blocks of width 64, each a `LoRASelfAttention`
#   (4 heads of 16, causal: two local softmax heads over buckets of 32 characters, two global
#   linear heads) and an MLP of width 256 (`fc1`, `fc2`); learned positions; a read-out tied to
#   the embedding; 96 symbols (newline and printable ASCII); windows of 64 characters.
# - **Pretraining** (`tools/pretrain_charlm.py`, not run here: a few minutes on one thread): 2,000
#   Adam steps on the English prose of chapters 01-09 of this course. The weights and both texts
#   are in `attnkit/data/charlm/`.
# - **Fine-tuning** (here): LoRA with $r = 8$, $\alpha = 16$ on $W_q$ and $W_v$ of both blocks, as
#   Hu et al. recommend, everything else frozen; 60 Adam steps on the source code of
#   `attnkit.core`, `attnkit.softmax` and `attnkit.mha`: the same characters in another style.
# - **Measured**: the cross-entropy in nats per character, and its exponential, the perplexity
#   (the number of equally likely characters the model hesitates between), on the last 8,192
#   characters of each text, which no step has trained on.

# %% [markdown] tags=["lang-zh"]
# ## 6. 微调一个预训练好的小模型
#
# 第 3、4 节微调的目标是我们自己造的教师。这里把真实的流程端到端走一遍，规模小到几秒钟就能跑完：一个在一种文本上预训练的语言模型，用 LoRA 适配到另一种文本上。
#
# - **模型**：`attnkit.experiments.charlm.CharLM`，一个字符级语言模型（参数个数见下面的输出）。它有两个宽度为 64 的 pre-norm Transformer 块，每块包含一个 `LoRASelfAttention` 和一个宽度为 256 的 MLP（`fc1`、`fc2`）。注意力有 4 个头、每头 16 维，都是因果的：两个在 32 个字符的桶内做 softmax 的局部头，两个全局线性注意力头；位置编码是学出来的，读出层与嵌入共享权重；共 96 个符号（换行符和可打印的 ASCII 字符），窗口长 64 个字符。
# - **预训练**（`tools/pretrain_charlm.py`，这里不运行：单线程几分钟）：在本课程第 1-9 章的英文正文上用 Adam 训练 2,000 步。权重和两份文本都在 `attnkit/data/charlm/` 里。
# - **微调**（在这里运行）：按 Hu 等的建议，在两个块的 $W_q$ 和 $W_v$ 上加 LoRA，$r = 8$，$\alpha = 16$，其余全部冻结；在 `attnkit.core`、`attnkit.softmax` 和 `attnkit.mha` 的源代码上用 Adam 训练 60 步：字符相同，风格完全不同。
# - **测量**：每个字符的交叉熵（单位 nat）及其指数，即困惑度（模型大致在几个等可能的字符之间犹豫），在每份文本最后 8,192 个字符上计算，这些字符从未参与训练。

# %%
from attnkit.experiments import charlm as C

held = {"english": C.split("english")[1], "python": C.split("python")[1]}   # the last 8,192 characters of each
python_train = C.split("python")[0]
lm = C.load_pretrained()
before = {k: C.evaluate(lm, ids) for k, ids in held.items()}
torch.manual_seed(0)                                       # the LoRA A matrices
C.add_lora(lm, where=("q", "v"), r=8, lora_alpha=16)      # B = 0: still the pretrained model; the rest frozen
n_train, n_total = L.count_parameters(lm)
_ = C.train(lm, python_train, steps=60, lr=1e-2, batch=8, seed=0)
after = {k: C.evaluate(lm, ids) for k, ids in held.items()}
print(t("ch10.lm_params", base=n_total - n_train, n=n_train, total=n_total, share=n_train / n_total))
print(viz.format_table([t("ch10.col.text"), t("ch10.col.before"), t("ch10.col.ppl_before"), t("ch10.col.after"),
                        t("ch10.col.ppl_after")],
                       [[t(f"ch10.text.{k}"), f"{before[k]:.2f}", f"{math.exp(before[k]):.1f}", f"{after[k]:.2f}",
                         f"{math.exp(after[k]):.1f}"] for k in held]))

# %% [markdown] tags=["lang-en"]
# Fine-tuning 3.6% of the parameters for 60 steps took the model a long way on the new style:
# the table's Python row. The English row is the price: the same adapter, asked about the old
# text, does worse than the pretrained model (catastrophic forgetting, here in a mild form). With
# LoRA the price is optional, which is the point of section 2: the base weights are untouched,
# and unmerging (or not loading) the adapter gives the pretrained model back exactly.
#
# Merged or not, the fine-tuned model is the same function. Merge every adapter and compare the
# logits on a batch of held-out Python:

# %% [markdown] tags=["lang-zh"]
# 只微调 3.6% 的参数、训练 60 步，模型在新风格上就进步了一大截：见表中 Python 那一行。英文那一行是代价：同一个适配器拿去处理原来的文本，表现比预训练模型差（灾难性遗忘，这里程度较轻）。用 LoRA 时，这个代价可以不付，这正是第 2 节的意义：原权重没有被改动，拆分（或者干脆不加载）适配器，就能原样拿回预训练模型。
#
# 不管合并与否，微调后的模型都是同一个函数。把所有适配器合并进去，在一批留出的 Python 文本上比较 logits：

# %%
probe = held["python"][: 8 * 64].reshape(8, 64)           # 8 windows of held-out Python
with torch.no_grad():
    unmerged_logits = lm(probe)                           # (8, 64, 96)
    for layer in C.lora_layers(lm):
        layer.merge()
    merged_logits = lm(probe)
print(t("ch10.lm_merged", n=len(C.lora_layers(lm)), d=within(merged_logits, unmerged_logits, 1e-5, relative=True)))
for layer in C.lora_layers(lm):
    layer.unmerge()

# %% [markdown] tags=["lang-en"]
# ## 7. Beyond LoRA on attention
#
# Hu et al. adapted attention weights only (§4.2) and left the MLP frozen. Later work went past
# that in four directions.
#
# **All linear layers (QLoRA).** Dettmers et al. (2023, §4) fine-tuned LLaMA models whose frozen
# base was quantised to 4 bits, and found that LoRA on *every* linear layer of the transformer
# block, attention and MLP, was needed to match full 16-bit fine-tuning, while the rank $r$
# mattered little once it was there (peft's `target_modules="all-linear"` does this). The same
# model, text, steps and seed, with LoRA on all six linear layers of each block ($W_q, W_k, W_v,
# W_o$, `fc1`, `fc2`) at $r = 2$, a budget close to that of $W_q, W_v$ at $r = 8$:

# %% [markdown] tags=["lang-zh"]
# ## 7. 只在注意力上加 LoRA 之外
#
# Hu 等只适配了注意力权重（§4.2），MLP 保持冻结。后来的工作从四个方向走得更远。
#
# **所有线性层（QLoRA）。** Dettmers 等（2023，§4）微调了原权重被量化到 4 位并冻结的 LLaMA 模型。他们发现，要达到 16 位全量微调的效果，必须在 Transformer 块的*每一个*线性层（注意力和 MLP）上都加 LoRA；做到这一点之后，秩 $r$ 的大小就不太重要了（peft 的 `target_modules="all-linear"` 就是这样做的）。同样的模型、文本、步数和种子，把 LoRA 加在每个块全部六个线性层（$W_q, W_k, W_v, W_o$、`fc1`、`fc2`）上，$r = 2$；预算与 $W_q, W_v$ 用 $r = 8$ 时相近：

# %%
lm_all = C.load_pretrained()
torch.manual_seed(0)
C.add_lora(lm_all, where=("q", "k", "v", "o", "fc1", "fc2"), r=2, lora_alpha=16)
_ = C.train(lm_all, python_train, steps=60, lr=1e-2, batch=8, seed=0)
after_all = {k: C.evaluate(lm_all, ids) for k, ids in held.items()}
print(viz.format_table([t("ch10.col.lora_on"), t("ch10.col.trainable"), t("ch10.col.python"), t("ch10.col.english")],
                       [["W_q, W_v (r = 8)", f"{n_train:,}", f"{after['python']:.2f}", f"{after['english']:.2f}"],
                        [t("ch10.row.all_linear"), f"{L.count_parameters(lm_all)[0]:,}", f"{after_all['python']:.2f}",
                         f"{after_all['english']:.2f}"]]))

# %% [markdown] tags=["lang-en"]
# On this model too, spreading a similar budget over every linear layer fits the new text better
# than concentrating it on $W_q$ and $W_v$: the MLPs hold much of what a language model knows about
# its text, and attention-only LoRA cannot change them. (It also moves the model further from its
# English, in the last column.)
#
# **DoRA.** Liu et al. (2024) split a weight into a magnitude and a direction,
# $W' = m \cdot \frac{W + \Delta W}{\lVert W + \Delta W \rVert}$, where the norm is taken per output
# feature (one number per row of the (out, in) matrix, as peft implements it), $\Delta W =
# \frac{\alpha}{r} BA$ is a LoRA update of the direction, and the magnitudes $m$ (out numbers) train
# too, starting at the norms of $W$, so DoRA also starts exactly at the pretrained layer. Their
# analysis of fine-tuned weights finds that LoRA changes magnitude and direction in proportion,
# while full fine-tuning often changes one much and the other little; DoRA's updates behave like
# full fine-tuning's, and it comes closer to full fine-tuning than LoRA at the same rank:

# %% [markdown] tags=["lang-zh"]
# 在这个模型上也是一样：把相近的预算分给所有线性层，比集中放在 $W_q$ 和 $W_v$ 上更能拟合新文本。语言模型对文本的了解有很大一部分存在 MLP 里，只加在注意力上的 LoRA 改变不了它们。（它也让模型离原来的英文更远，见最后一列。）
#
# **DoRA。** Liu 等（2024）把权重拆成大小和方向：$W' = m \cdot \frac{W + \Delta W}{\lVert W + \Delta W \rVert}$。其中范数按输出特征计算（(out, in) 矩阵的每一行一个数，peft 就是这样实现的）；$\Delta W = \frac{\alpha}{r} BA$ 是对方向的 LoRA 更新；大小 $m$（out 个数）也参与训练，初始值是 $W$ 各行的范数，所以 DoRA 的起点同样恰好是预训练的层。他们对微调后权重的分析发现：LoRA 让大小和方向按比例一起变，全量微调则常常一个变得多、另一个变得少。DoRA 的更新更像全量微调，在相同的秩下也比 LoRA 更接近全量微调的效果：

# %%
def dora_weight(W, A, B, scaling, m):                     # W (out, in), A (r, in), B (out, r), m (out,)
    V = W + scaling * B @ A                               # the direction, updated by LoRA
    return m[:, None] * V / V.norm(dim=1, keepdim=True)   # each row rescaled to its magnitude


W_d = torch.randn(48, 64)
A_d, B_d = torch.randn(4, 64) / 8, torch.zeros(48, 4)     # B = 0 at the start, as in LoRA
m_d = W_d.norm(dim=1)                                     # magnitudes start at the norms of W's rows
print(t("ch10.dora", d=within(dora_weight(W_d, A_d, B_d, 4.0, m_d), W_d, 1e-5, relative=True),
        n=L.lora_param_count(64, 48, 4), m=m_d.numel()))

# %% [markdown] tags=["lang-en"]
# **AdaLoRA: let the budget find its place.** Section 3 asked where a fixed budget should go and
# answered it, for one toy, with a grid of placements. AdaLoRA (Zhang et al. 2023) answers it for
# each model and task *during* training: every update is written as $P \Lambda Q$, an SVD-like
# triplet ($P$ and $Q$ pushed towards orthogonal columns and rows by a penalty), and the singular
# values $\Lambda$ of all the adapted matrices compete for one global budget. On a schedule, the
# singular values with the lowest importance (a smoothed $|w \cdot \partial L / \partial w|$
# score) are set to zero, so rank leaves the matrices where it does little and stays where it
# helps. On DeBERTaV3 the rank went mostly to the MLP matrices and to the top layers, and less to
# $W_q$ and $W_k$, consistent with section 3, where $W_q$ alone recovered least.
#
# **Many adapters, unmerged (S-LoRA, Punica).** Merging (section 2) makes one task free, but a
# server with hundreds of fine-tuned variants cannot keep a merged copy of the model for each.
# S-LoRA (Sheng et al. 2023) and Punica (Chen et al. 2023) keep one base model and many small
# adapters, unmerged: one batch mixes requests for different adapters, the base product
# $xW^\top$ is computed once for the whole batch, and each request adds its own adapter's
# $\frac{\alpha}{r} BAx$, gathered by adapter index (Punica's SGMV kernel; S-LoRA also pages
# adapters in and out of GPU memory together with the KV cache). The batched form equals serving
# each request with its adapter merged:

# %% [markdown] tags=["lang-zh"]
# **AdaLoRA：让预算自己找位置。** 第 3 节问过固定的预算该放在哪里，并且针对一个玩具实验、用一张放法的网格回答了它。AdaLoRA（Zhang 等，2023）则在*训练过程中*针对每个模型和任务回答这个问题。每个更新都写成类似 SVD 的三元组 $P \Lambda Q$（用一个惩罚项把 $P$ 的列和 $Q$ 的行推向正交）；所有被适配矩阵的奇异值 $\Lambda$ 共同竞争一个全局预算。按照预定的日程，重要性最低的奇异值（一个平滑后的 $|w \cdot \partial L / \partial w|$ 分数）被置为零；于是秩从作用不大的矩阵撤出，留在有用的地方。在 DeBERTaV3 上，秩主要分给了 MLP 的矩阵和靠上的层，分给 $W_q$ 和 $W_k$ 的较少；这与第 3 节一致，那里只加在 $W_q$ 上缩小的差距最少。
#
# **不合并、同时服务多个适配器（S-LoRA、Punica）。** 合并（第 2 节）让一个任务不多花任何开销，但一台要服务几百个微调版本的服务器，不可能为每个版本都保存一份合并后的模型。S-LoRA（Sheng 等，2023）和 Punica（Chen 等，2023）只保存一份原模型和许多小适配器，且不合并。一个批次里混着使用不同适配器的请求，原模型的乘积 $xW^\top$ 对整个批次只算一次；每个请求再按适配器编号取出自己的适配器，加上 $\frac{\alpha}{r} BAx$（Punica 的 SGMV 算子；S-LoRA 还会把适配器与 KV 缓存一起在 GPU 显存中换入换出）。这种批量形式与给每个请求单独合并适配器的结果相同：

# %%
torch.manual_seed(0)
W_s, b_s = torch.randn(64, 64) / 8, torch.randn(64)        # one frozen base layer
As, Bs = torch.randn(3, 4, 64) / 8, torch.randn(3, 64, 4) / 8   # 3 adapters of rank 4: (3, r, in), (3, out, r)
scales = torch.tensor([2.0, 4.0, 0.5])                     # each adapter keeps its own alpha / r
which = torch.tensor([0, 2, 1, 0, 2, 2])                   # the adapter of each of 6 requests
xs = torch.randn(6, 10, 64)                                # 6 requests of 10 tokens
batched = (xs @ W_s.T + b_s                                # the base: once for the whole batch
           + scales[which, None, None] * (xs @ As[which].transpose(1, 2)) @ Bs[which].transpose(1, 2))
one_by_one = torch.stack([xs[i] @ (W_s + scales[a] * Bs[a] @ As[a]).T + b_s for i, a in enumerate(which.tolist())])
print(t("ch10.multi", n=len(which), k=len(scales), d=within(batched, one_by_one, 1e-5, relative=True)))

# %% [markdown] tags=["lang-en"]
# **Question 2** (predict first). A $4096 \times 4096$ projection carries an *unmerged* LoRA
# adapter of rank 16, as in the batched form above. How many multiply-adds per token does it
# cost beyond the base layer? The next section answers it: predict first.

# %% [markdown] tags=["lang-zh"]
# **问题 2（先预测）**：一个 $4096 \times 4096$ 的投影上有一个*未合并*的秩为 16 的 LoRA 适配器，就像上面的批量形式那样。与原层相比，它每个词元*额外*需要多少次乘加运算？下一节会给出答案，请先预测。

# %%
from attnkit.exercises.ch10 import check_q2

my_answer = None  # a number
_ = check_q2(my_answer)

# %% [markdown] tags=["lang-en"]
# ## 8. What it costs, measured
#
# **Parameters**: $r(d_\text{in} + d_\text{out})$ per adapted projection (section 1); the optimizer
# state (two Adam moments) is needed only for these. **FLOPs per token**: the base layer does
# $2 d_\text{in} d_\text{out}$; an unmerged adapter adds $2r(d_\text{in} + d_\text{out})$; a merged
# one adds nothing, because it *is* the base layer with another $W$. Measured on this machine,
# one thread, round-robin medians, a $1024 \times 1024$ layer on 256 tokens, $r = 8$:

# %% [markdown] tags=["lang-zh"]
# ## 8. 开销：实测
#
# **参数**：每个加了适配器的投影有 $r(d_\text{in} + d_\text{out})$ 个参数（第 1 节）；优化器状态（Adam 的两个矩估计）也只需要为这些参数保存。**每个词元的浮点运算次数**：原层是 $2 d_\text{in} d_\text{out}$；未合并的适配器多出 $2r(d_\text{in} + d_\text{out})$；合并后的适配器一次也不多，因为它*就是*换了一个 $W$ 的原层。下面在本机上实测：单线程，轮流计时取中位数，$1024 \times 1024$ 的层、256 个词元、$r = 8$：

# %% tags=["nbval-ignore-output"]
d_model, tokens, r = 1024, 256, 8
torch.manual_seed(0)
lin = nn.Linear(d_model, d_model)
lo = L.LoRALinear.from_linear(nn.Linear(d_model, d_model), r=r)
with torch.no_grad():
    lo.lora_B.normal_()
merged = L.LoRALinear.from_linear(nn.Linear(d_model, d_model), r=r)
merged.merge()
xt = torch.randn(tokens, d_model)
with torch.inference_mode(), one_thread():
    med = round_robin_medians({"base": lambda: lin(xt), "unmerged": lambda: lo(xt), "merged": lambda: merged(xt)},
                              repeats=7)
names = {"base": t("ch10.row.base"), "unmerged": t("ch10.row.unmerged", r=r), "merged": t("ch10.row.merged")}
print(viz.format_table([t("ch10.col.layer"), t("ch10.col.ms"), t("ch10.col.vs_base")],
                       [[names[k], f"{1e3 * s:.3f}", f"{s / med['base']:.2f}"] for k, s in med.items()]))
print(t("ch10.merged_verdict", ok=abs(med["merged"] / med["base"] - 1) <= 0.05))
print(t("ch10.unmerged_verdict", ok=med["unmerged"] > med["merged"], share=2 * r * (2 * d_model) / (2 * d_model * d_model + 4 * r * d_model)))

# %% [markdown] tags=["lang-en"]
# The printed lines draw the conclusions from this run's numbers. The merged layer runs the
# same kernel on a matrix of the same shape as the base layer, so any difference between them is
# timing noise; the unmerged adapter does the share of extra FLOPs printed above, in two extra
# small matrix products, each with its own fixed overhead. `benchmarks/bench_lora.py` measures the same at more
# repeats.
#
# ## 9. Pitfalls
#
# **Forgetting $\alpha$.** An adapter is a pair $(A, B)$ *and* its scale. Code that applies
# $BA$ without $\frac{\alpha}{r}$ — a hand-written merge, a loader that assumes $\alpha = r$ —
# applies the wrong update, silently. Here is the $W_q + W_v$, $r = 4$, $\alpha = 16$ adapter of
# section 3 merged right and merged without its scale of 4:

# %% [markdown] tags=["lang-zh"]
# 打印出的几行结论都由这次运行的数字算出。合并后的层在与原层形状相同的矩阵上运行同一个算子，所以两者的差别只是计时噪声；未合并的适配器多做了上面打印出的那一小部分浮点运算，分在两次额外的小矩阵乘法里，每次都有自己的固定开销。`benchmarks/bench_lora.py` 用更多次重复测量同样的内容。
#
# ## 9. 常见陷阱
#
# **漏掉 $\alpha$。** 一个适配器是一对 $(A, B)$ *加上*它的缩放系数。如果代码只应用 $BA$ 而漏掉 $\frac{\alpha}{r}$——比如手写的合并函数，或者默认 $\alpha = r$ 的加载代码——应用的更新就是错的，而且不会报错。下面把第 3 节中 $W_q + W_v$、$r = 4$、$\alpha = 16$ 的适配器正确地合并一次，再漏掉缩放系数 4 合并一次：

# %%
run = ex["runs"][(("q", "v"), 4, 16)]
x_eval = torch.randn(64, 16, 32, generator=torch.Generator().manual_seed(5))
y_eval = L.attention_forward(x_eval, ex["teacher"], 4)
def loss_with(weights):
    return F.mse_loss(L.attention_forward(x_eval, weights, 4), y_eval).item()
right = {**ex["base"], **{p: ex["base"][p] + dw for p, dw in run["delta"].items()}}
scaling = L.lora_scaling(4, 16)
wrong = {**ex["base"], **{p: ex["base"][p] + dw / scaling for p, dw in run["delta"].items()}}  # B A, no alpha / r
print(t("ch10.forgot_alpha", base=loss_with(ex["base"]), right=loss_with(right), wrong=loss_with(wrong)))

# %% [markdown] tags=["lang-en"]
# The scale-less merge keeps only a quarter of the update, and most of what fine-tuning
# gained is lost.
#
# **Merging twice.** A merge without a "merged" flag adds the update every time it is called —
# after a reload, a second `model.eval()` hook, a retry:

# %% [markdown] tags=["lang-zh"]
# 漏掉缩放系数的合并只保留了四分之一的更新，微调得到的改进大部分都没了。
#
# **重复合并。** 没有“已合并”标记的合并函数，每调用一次就加一次更新——重新加载之后、第二次触发 `model.eval()` 的钩子、重试时都可能发生：

# %%
def merge_adds_every_time(layer):                        # no `merged` flag: the bug
    with torch.no_grad():
        layer.weight += layer.delta_weight()


twice = L.LoRALinear(16, 16, r=2)
with torch.no_grad():
    twice.lora_B.normal_()
w_start = twice.weight.clone()
merge_adds_every_time(twice)
merge_adds_every_time(twice)
print(t("ch10.naive_twice", d=(twice.weight - w_start - twice.delta_weight()).abs().max().item(),
        u=twice.delta_weight().abs().max().item()))

# %% [markdown] tags=["lang-en"]
# The weight is off by a whole extra update. `LoRALinear.merge()` is idempotent (section 2).
#
# **Merging into a half-precision model.** An early or small update is tiny compared with $W$.
# Added into float16 or bfloat16 weights, it is rounded to the spacing of numbers near $W$'s
# entries — much of it is lost or distorted — and unmerging does not give $W$ back. Keep a
# float32 copy, or do not merge while you still train:

# %% [markdown] tags=["lang-zh"]
# 权重多出了整整一份更新。`LoRALinear.merge()` 是幂等的（第 2 节）。
#
# **在半精度模型里合并。** 训练初期或较小的更新，与 $W$ 相比非常小。把它加进 float16 或 bfloat16 的权重里，会按 $W$ 中元素附近的数值间隔舍入——很大一部分丢失或走样——而且再拆分也还原不出 $W$。请保留一份 float32 的副本，或者在还要继续训练时不要合并：

# %%
torch.manual_seed(0)
W = torch.randn(256, 256)
A, B = torch.randn(8, 256) * 0.01, torch.randn(256, 8) * 0.01       # a small, early update
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    Wd = W.to(dtype)
    merged_w = L.merge_weight(Wd, A.to(dtype), B.to(dtype), 2.0)
    kept = (merged_w.float() - Wd.float())
    delta = L.lora_delta(A, B, 2.0)
    back = L.unmerge_weight(merged_w, A.to(dtype), B.to(dtype), 2.0)
    print(t("ch10.half", dtype=str(dtype).replace("torch.", ""), kept=(kept.norm() / delta.norm()).item(),
            err=((kept - delta).norm() / delta.norm()).item(), rt=within(back.float(), Wd.float(), 1e-5)))

# %% [markdown] tags=["lang-en"]
# **Dropout at merge time.** LoRA's dropout acts on the input of the update branch only. A
# merged layer has no branch left, so in training mode the merged and unmerged layers differ;
# merge for inference, in `eval()` mode, where they agree:

# %% [markdown] tags=["lang-zh"]
# **合并时的 dropout。** LoRA 的 dropout 只作用在更新分支的输入上。合并后的层不再有这个分支，所以在训练模式下，合并前后的输出不同；应当在推理时、即 `eval()` 模式下合并，这时两者一致：

# %%
drop = L.LoRALinear(32, 32, r=4, lora_dropout=0.5)
with torch.no_grad():
    drop.lora_B.normal_()
xd = torch.randn(8, 32)
for mode in ("train", "eval"):
    getattr(drop, mode)()
    torch.manual_seed(1)
    before = drop(xd)
    drop.merge()
    print(t("ch10.dropout_merge", mode=t(f"ch10.mode.{mode}"), ok=torch.allclose(drop(xd), before, atol=1e-5)))
    drop.unmerge()

# %% [markdown] tags=["lang-en"]
# **A transposed base weight.** `nn.Linear` stores $W$ as (out, in) and computes $x W^\top$;
# GPT-2's `Conv1D` stores it as (in, out) and computes $x W$ (peft's `fan_in_fan_out=True` is for
# this case). Wrapping such a weight as if it were (out, in) fails loudly when it is not square —
# and silently when it is:

# %% [markdown] tags=["lang-zh"]
# **转置存放的原权重。** `nn.Linear` 把 $W$ 存成 (out, in)，计算 $x W^\top$；GPT-2 的 `Conv1D` 把它存成 (in, out)，计算 $x W$（peft 的 `fan_in_fan_out=True` 就是为这种情况准备的）。把这样的权重当作 (out, in) 来包装时，如果它不是方阵，会直接报错——如果是方阵，则悄无声息地算错：

# %%
torch.manual_seed(0)
w_conv1d = torch.randn(32, 32)                            # GPT-2's Conv1D: y = x @ w, w is (in, out)
xc = torch.randn(4, 32)
as_if_linear = L.LoRALinear.from_weight(w_conv1d, r=2)    # wrong: read as (out, in), and square, so no error
right_way = L.LoRALinear.from_weight(w_conv1d, r=2, fan_in_fan_out=True)
print(t("ch10.transposed", wrong=max_rel_diff(as_if_linear(xc), xc @ w_conv1d),
        right=within(right_way(xc), xc @ w_conv1d, 1e-5, relative=True)))

# %% [markdown] tags=["lang-en"]
# ## 10. Exercises
#
# Each check prints what is wrong and a hint; when it recognises a common mistake, the hint is
# about that mistake. A further failure gives a stronger hint, and `show_hint("ch10.ex1")` (and so
# on) prints every hint, the full formula last. Questions 1 and 2 were asked in sections 2 and 7.
#
# **Exercise 1** (find and fix). A server keeps one weight per projection with the current task's
# adapter merged in (section 2), and switches tasks by taking the old adapter out and putting the
# new one in. A colleague wrote the switch; it runs without an error on the square projections of
# an attention layer:
#
#     def colleague_switch_adapter(W_merged, old, new):  # old, new: (A, B, alpha, r)
#         A0, B0, alpha0, r0 = old
#         A1, B1, alpha1, r1 = new
#         s = alpha1 / r1                                       # the scale of the adapter
#         return W_merged - s * (A0.T @ B0.T) + s * (B1 @ A1)   # take the old one out, put the new one in
#
# It gives wrong weights. Find what is wrong (you can call it:
# `from attnkit.exercises.ch10 import colleague_switch_adapter`) and write `my_switch(W_merged, old,
# new)`, which returns the right (out, in) weight; `old` and `new` are `(A, B, alpha, r)`. The
# library's merge functions and `LoRALinear` are off limits.

# %% [markdown] tags=["lang-zh"]
# ## 10. 练习
#
# 每个检查都会指出哪里不对并给出提示；如果认出了一种常见错误，提示就针对这种错误。再次失败时提示会更具体；运行 `show_hint("ch10.ex1")`（其余练习类推）可以看到全部提示，最后一条是完整公式。问题 1 和问题 2 已经在第 2 节和第 7 节问过。
#
# **练习 1**：找错并修正。一台服务器为每个投影保存一份权重，里面合并了当前任务的适配器（第 2 节）；切换任务时，先拿掉旧适配器，再放进新适配器。一位同事写了切换函数，在注意力层的方阵投影上运行时不会报错：
#
#     def colleague_switch_adapter(W_merged, old, new):  # old, new: (A, B, alpha, r)
#         A0, B0, alpha0, r0 = old
#         A1, B1, alpha1, r1 = new
#         s = alpha1 / r1                                       # the scale of the adapter
#         return W_merged - s * (A0.T @ B0.T) + s * (B1 @ A1)   # take the old one out, put the new one in
#
# 但它给出的权重是错的。找出错在哪里（你可以调用它：`from attnkit.exercises.ch10 import colleague_switch_adapter`），然后写出 `my_switch(W_merged, old, new)`，返回正确的 (out, in) 权重；`old` 和 `new` 都是 `(A, B, alpha, r)`。不要调用库里的合并函数和 `LoRALinear`。

# %%
from attnkit.exercises import show_hint  # noqa: F401  (show_hint("ch10.ex1") prints every hint)
from attnkit.exercises.ch10 import check_compress, check_count, check_rescale, check_switch
from attnkit.exercises.ch10 import colleague_switch_adapter  # noqa: F401  (exercise 1 calls it)


def my_switch(W_merged, old, new):
    # your code here
    raise NotImplementedError


_ = check_switch(my_switch)

# %% [markdown] tags=["lang-en"]
# **Exercise 2** (a changed setting). You trained an adapter in `LoRALinear(in_features,
# out_features, r=r, lora_alpha=alpha)`. The serving code you must load it into builds its layers
# with `lora_alpha=new_alpha`, and with rsLoRA's scale when `use_rslora` is True (section 2); it
# takes your `A` as it is. Given `B` (out, r), `alpha`, `r`, `new_alpha` and `use_rslora`, return
# the `B2` (out, r) to give it, so that the served layer computes exactly what your trained layer
# computes, for every input. (`attnkit.lora.lora_scaling` and `LoRALinear` are off limits.)

# %% [markdown] tags=["lang-zh"]
# **练习 2**：换一种设置。你用 `LoRALinear(in_features, out_features, r=r, lora_alpha=alpha)` 训练了一个适配器。你必须把它加载到一套部署代码里，那里建层时用 `lora_alpha=new_alpha`；当 `use_rslora` 为 True 时还使用 rsLoRA 的缩放（第 2 节），而你的 `A` 原样使用。给定 `B`(out, r)、`alpha`、`r`、`new_alpha` 和 `use_rslora`，返回要交给它的 `B2`(out, r)，使部署的层对任意输入都与你训练好的层算出完全相同的结果。（不要调用 `attnkit.lora.lora_scaling` 和 `LoRALinear`。）

# %%
def my_rescale(B, alpha, r, new_alpha, use_rslora):
    # your code here
    raise NotImplementedError


_ = check_rescale(my_rescale)

# %% [markdown] tags=["lang-en"]
# **Exercise 3.** How many parameters train in `LoRASelfAttention(dim, heads, r=r,
# enable_lora=enable_lora, dim_head=dim_head)` after `mark_only_lora_as_trainable(layer, bias=bias)`,
# with `bias` one of `"none"`, `"all"`, `"lora_only"` (section 5 shows what each mode trains)?
# Return an integer.

# %% [markdown] tags=["lang-zh"]
# **练习 3**：对 `LoRASelfAttention(dim, heads, r=r, enable_lora=enable_lora, dim_head=dim_head)` 调用
# `mark_only_lora_as_trainable(layer, bias=bias)`（`bias` 取 `"none"`、`"all"` 或 `"lora_only"`，第 5 节展示了每种模式训练哪些参数）之后，有多少参数参与训练？返回一个整数。

# %%
def my_count(dim, heads, dim_head, r, enable_lora, bias):
    # your code here
    raise NotImplementedError


_ = check_count(my_count)

# %% [markdown] tags=["lang-en"]
# **Stretch exercise.** A trained adapter of rank $r$ is too big for your deployment; you
# may keep rank $k < r$. Given `A` (r, in), `B` (out, r) and `k`, return `(A2, B2)`, shapes (k, in)
# and (out, k), such that `B2 @ A2` is the best rank-$k$ approximation of `B @ A` in the Frobenius
# norm. (Keeping $k$ rows of $A$ is not it: a trained pair's directions are not sorted. Section 3's
# paragraph on singular values has what you need.)

# %% [markdown] tags=["lang-zh"]
# **挑战题**：一个训练好的秩为 $r$ 的适配器对你的部署来说太大了，只能保留秩 $k < r$。给定 `A`(r, in)、`B`(out, r)和 `k`，返回 `(A2, B2)`，形状分别为 (k, in) 和 (out, k)，使 `B2 @ A2` 是 `B @ A` 在 Frobenius 范数下的最佳秩 $k$ 近似。（只保留 $A$ 的 $k$ 行是不对的：训练出来的一对矩阵，其方向并没有排好序。第 3 节关于奇异值的那段话里有你需要的东西。）

# %%
def my_compress(A, B, k):
    # your code here
    raise NotImplementedError


_ = check_compress(my_compress)

# %% [markdown] tags=["lang-en"]
# ## 11. Summary
#
# - LoRA writes the update of a frozen weight as $\frac{\alpha}{r} BA$ with $r \ll d$: a fraction
#   of a percent of the attention weights of a 7B-sized model at $r = 8$ (section 1).
# - $B = 0$ makes the start exact; a random $A$ lets $B$ learn from the first step; $A = B = 0$
#   never moves. $\alpha / r$ (or $\alpha / \sqrt r$) keeps the update's size comparable across
#   ranks; merging adds it into $W$ once, and merged inference is the base layer (sections 2, 8).
# - In a teacher/student toy where all four projections differ, spreading a fixed budget over more
#   projections recovered more of the gap, as Hu et al. found for $W_q$ vs $W_q + W_v$; unlike
#   their Table 6, rank kept helping, because the toy teacher's updates have ranks up to 8 and the
#   adapted projections make up for the unadapted ones (section 3). $W_q$ reaches the output only
#   through the softmax, which is why it matters least here (section 4).
# - `LoRASelfAttention` combines local softmax heads, global linear heads and a causal blind spot,
#   with LoRA on any projection; each head kind equals its definition (section 5).
# - A small pretrained character-level language model, fine-tuned with LoRA on $W_q, W_v$ for 60
#   steps, learned a new style of text and lost some of the old; merged, it is the same model
#   (section 6). LoRA on every linear layer fitted the new text better at a similar budget, as
#   QLoRA found; DoRA, AdaLoRA and unmerged multi-adapter serving go further (section 7).
# - Pitfalls: the scale is part of the adapter, merge once, merge in float32, merge in eval mode,
#   know your weight's layout (section 9).
#
# **Next:** chapter 11 — choosing an attention: a factory that builds each mechanism of this
# course by name (LoRA included), a selector, a profiler, and a tiny model trained with each.
#
# ## References
# - E. J. Hu, Y. Shen, P. Wallis, Z. Allen-Zhu, Y. Li, S. Wang, L. Wang, W. Chen, *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022 (arXiv:2106.09685) — §4.1 (the update, initialisation, $\alpha / r$), §4.2 (attention weights only), §7.1 (Tables 5 and 6), §7.2 (eq. 4, Figure 3).
# - A. Aghajanyan, L. Zettlemoyer, S. Gupta, *Intrinsic Dimensionality Explains the Effectiveness of Language Model Fine-Tuning*, 2020 — the low intrinsic dimension LoRA builds on.
# - D. Kalajdzievski, *A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA* (rsLoRA), 2023 — the $\alpha / \sqrt r$ scale.
# - A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, *Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention*, ICML 2020 — the linear attention of the global heads (chapter 09).
# - C. Eckart, G. Young, *The approximation of one matrix by another of lower rank*, Psychometrika 1936 — singular values (section 3) and the stretch exercise.
# - P. Wang (lucidrains), `linear-attention-transformer`, github.com/lucidrains/linear-attention-transformer — `SelfAttention`, whose arguments and head kinds `LoRASelfAttention` follows; `blindspot_size` (section 5).
# - E. J. Hu et al., loralib (github.com/microsoft/LoRA) — `mark_only_lora_as_trainable` and its `bias` modes.
# - T. Dettmers, A. Pagnoni, A. Holtzman, L. Zettlemoyer, *QLoRA: Efficient Finetuning of Quantized LLMs*, NeurIPS 2023 (arXiv:2305.14314) — §4, LoRA on all linear layers.
# - S.-Y. Liu, C.-Y. Wang, H. Yin, P. Molchanov, Y.-C. F. Wang, K.-T. Cheng, M.-H. Chen, *DoRA: Weight-Decomposed Low-Rank Adaptation*, ICML 2024 (arXiv:2402.09353).
# - Q. Zhang, M. Chen, A. Bukharin, N. Karampatziakis, P. He, Y. Cheng, W. Chen, T. Zhao, *AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning*, ICLR 2023 (arXiv:2303.10512).
# - Y. Sheng, S. Cao, D. Li, C. Hooper, N. Lee, S. Yang, C. Chou, B. Zhu, L. Zheng, K. Keutzer, J. E. Gonzalez, I. Stoica, *S-LoRA: Serving Thousands of Concurrent LoRA Adapters*, MLSys 2024 (arXiv:2311.03285).
# - L. Chen, Z. Ye, Y. Wu, D. Zhuo, L. Ceze, A. Krishnamurthy, *Punica: Multi-Tenant LoRA Serving*, MLSys 2024 (arXiv:2310.18547) — the SGMV kernel.

# %% [markdown] tags=["lang-zh"]
# ## 11. 小结
#
# - LoRA 把冻结权重的更新写成 $\frac{\alpha}{r} BA$，其中 $r \ll d$。对 7B 规模的模型，$r = 8$ 时只占注意力权重的不到百分之一（第 1 节）。
# - $B = 0$ 保证起点完全不变；随机的 $A$ 让 $B$ 从第一步就能学习；$A = B = 0$ 则永远不动。$\alpha / r$（或 $\alpha / \sqrt r$）让不同秩下更新的大小保持相当；合并把更新一次性加进 $W$，合并后的推理就是原层（第 2、8 节）。
# - 在四个投影都有差别的教师–学生玩具实验中，把固定的预算分给更多投影，缩小的差距更多，这与 Hu 等比较 $W_q$ 和 $W_q + W_v$ 的结论一致；与他们的表 6 不同的是，秩越大效果越好，因为玩具教师的更新秩最高到 8，而且被适配的投影还要弥补没被适配的投影（第 3 节）。$W_q$ 只能经过 softmax 影响输出，所以它在这里作用最小（第 4 节）。
# - `LoRASelfAttention` 把局部 softmax 头、全局线性注意力头和因果盲区组合在一起，可以在任意投影上加 LoRA；每种头都与其定义一致（第 5 节）。
# - 一个预训练好的字符级小语言模型，在 $W_q, W_v$ 上用 LoRA 微调 60 步，学会了新风格的文本，也忘掉了一些旧的；合并之后它还是同一个模型（第 6 节）。在相近的预算下，把 LoRA 加在所有线性层上更能拟合新文本，与 QLoRA 的发现一致；DoRA、AdaLoRA 和不合并的多适配器服务走得更远（第 7 节）。
# - 陷阱：缩放系数是适配器的一部分；只合并一次；在 float32 下合并；在 eval 模式下合并；弄清权重的存放方式（第 9 节）。
#
# **下一章**：第 11 章——如何选择注意力：用一个工厂按名字构建本课程的每一种机制（包括 LoRA），再加上选择器、性能分析器，以及分别用每种机制训练的小模型。
#
# ## 参考文献
# - E. J. Hu、Y. Shen、P. Wallis、Z. Allen-Zhu、Y. Li、S. Wang、L. Wang、W. Chen，*LoRA: Low-Rank Adaptation of Large Language Models*，ICLR 2022（arXiv:2106.09685）——§4.1（更新、初始化、$\alpha / r$）、§4.2（只适配注意力权重）、§7.1（表 5、表 6）、§7.2（式 4、图 3）。
# - A. Aghajanyan、L. Zettlemoyer、S. Gupta，*Intrinsic Dimensionality Explains the Effectiveness of Language Model Fine-Tuning*，2020——LoRA 所依据的低内在维度。
# - D. Kalajdzievski，*A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA*（rsLoRA），2023——缩放系数 $\alpha / \sqrt r$。
# - A. Katharopoulos、A. Vyas、N. Pappas、F. Fleuret，*Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention*，ICML 2020——全局头所用的线性注意力（第 9 章）。
# - C. Eckart、G. Young，*The approximation of one matrix by another of lower rank*，Psychometrika 1936——奇异值（第 3 节）和挑战题。
# - P. Wang（lucidrains），`linear-attention-transformer`，github.com/lucidrains/linear-attention-transformer——`SelfAttention`，`LoRASelfAttention` 沿用了它的参数和头的种类；`blindspot_size`（第 5 节）。
# - E. J. Hu 等，loralib（github.com/microsoft/LoRA）——`mark_only_lora_as_trainable` 及其 `bias` 模式。
# - T. Dettmers、A. Pagnoni、A. Holtzman、L. Zettlemoyer，*QLoRA: Efficient Finetuning of Quantized LLMs*，NeurIPS 2023（arXiv:2305.14314）——§4，在所有线性层上加 LoRA。
# - S.-Y. Liu、C.-Y. Wang、H. Yin、P. Molchanov、Y.-C. F. Wang、K.-T. Cheng、M.-H. Chen，*DoRA: Weight-Decomposed Low-Rank Adaptation*，ICML 2024（arXiv:2402.09353）。
# - Q. Zhang、M. Chen、A. Bukharin、N. Karampatziakis、P. He、Y. Cheng、W. Chen、T. Zhao，*AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning*，ICLR 2023（arXiv:2303.10512）。
# - Y. Sheng、S. Cao、D. Li、C. Hooper、N. Lee、S. Yang、C. Chou、B. Zhu、L. Zheng、K. Keutzer、J. E. Gonzalez、I. Stoica，*S-LoRA: Serving Thousands of Concurrent LoRA Adapters*，MLSys 2024（arXiv:2311.03285）。
# - L. Chen、Z. Ye、Y. Wu、D. Zhuo、L. Ceze、A. Krishnamurthy，*Punica: Multi-Tenant LoRA Serving*，MLSys 2024（arXiv:2310.18547）——SGMV 算子。
