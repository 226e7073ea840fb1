"""What chapter 10 prints: the sentences, table headers and labels only this chapter's cells use.

What chapter 10 (LoRA on attention) prints: its tables, checks and the conclusions of its
timing cell. Imported by the chapter's first code cell."""

from attnkit.i18n import register

register({
    "ch10.versions": {"en": "torch {torch} · threads: {n}", "zh": "torch {torch} · 线程数：{n}"},
    # section 1
    "ch10.col.r": {"en": "r", "zh": "r"},
    "ch10.col.per_proj": {"en": "one projection", "zh": "单个投影"},
    "ch10.col.qv_layer": {"en": "q, v of a layer", "zh": "一层的 q、v"},
    "ch10.col.all_model": {"en": "q, k, v, o of 32 layers", "zh": "32 层的 q、k、v、o"},
    "ch10.col.fraction": {"en": "share of the attention weights", "zh": "占注意力权重的比例"},
    "ch10.full_counts": {"en": "full: one projection {p:,}, one layer's attention {l:,}, 32 layers {m:,}",
                         "zh": "全量：单个投影 {p:,}，一层注意力 {l:,}，32 层共 {m:,}"},
    "ch10.gpt3_budget": {"en": "GPT-3 (96 layers, d = 12288), r = 8 on one projection per layer: {n:,} parameters",
                         "zh": "GPT-3（96 层，d = 12288），每层一个投影、r = 8：{n:,} 个参数"},
    # section 2
    "ch10.starts_equal": {"en": "at the start (B = 0): largest |LoRA(x) - base(x)| = {d:.1f}",
                          "zh": "初始时（B = 0）：|LoRA(x) - base(x)| 的最大值 = {d:.1f}"},
    "ch10.eq_attnkit": {"en": "from scratch == attnkit.lora.LoRALinear: {ok}",
                        "zh": "从零实现 == attnkit.lora.LoRALinear：{ok}"},
    "ch10.eq_explicit": {"en": "from scratch == x (W + (alpha/r) B A)^T + b: {ok}",
                         "zh": "从零实现 == x (W + (alpha/r) B A)^T + b：{ok}"},
    "ch10.zero_grads": {"en": "A = B = 0: |grad A| = {ga:.1f}, |grad B| = {gb:.1f}; after 20 Adam steps |B A| = {ba:.1f}",
                        "zh": "A = B = 0：|A 的梯度| = {ga:.1f}，|B 的梯度| = {gb:.1f}；Adam 走 20 步后 |B A| = {ba:.1f}"},
    "ch10.col.alpha_r": {"en": "alpha / r", "zh": "alpha / r"},
    "ch10.col.rslora": {"en": "alpha / sqrt(r) (rsLoRA)", "zh": "alpha / sqrt(r)（rsLoRA）"},
    "ch10.merged_eq": {"en": "merged == unmerged up to rounding: largest difference / largest output {d}",
                       "zh": "在舍入误差范围内，合并后 == 合并前：最大差 / 输出的最大值 {d}"},
    "ch10.merge_twice": {"en": "merge() twice leaves the weight as after one merge: {ok}",
                         "zh": "调用两次 merge() 后，权重与只合并一次时相同：{ok}"},
    "ch10.unmerge_back": {"en": "unmerge() gives W back up to rounding: largest error / largest entry of W {d}",
                          "zh": "在舍入误差范围内，unmerge() 还原出 W：最大误差 / W 的最大元素 {d}"},
    # section 3
    "ch10.col.budget": {"en": "trainable parameters", "zh": "可训练参数"},
    "ch10.col.place": {"en": "LoRA on {where}", "zh": "LoRA 加在 {where}"},
    "ch10.teacher": {"en": "teacher's update of W_{p}: rank {rank}, ||D|| / ||W|| = {size:.2f}",
                     "zh": "教师对 W_{p} 的更新：秩 {rank}，||D|| / ||W|| = {size:.2f}"},
    "ch10.gap": {"en": "held-out loss of the student before fine-tuning (the gap): {loss:.5f}",
                 "zh": "微调前学生模型的留出集损失（即差距）：{loss:.5f}"},
    "ch10.full_row": {"en": "full fine-tuning ({n:,} parameters): {rec:.3f}", "zh": "全量微调（{n:,} 个参数）：{rec:.3f}"},
    "ch10.best_at": {"en": "at {n:>4} parameters the best placement is {where} ({rec:.3f})",
                     "zh": "{n} 个参数时，效果最好的是 {where}（{rec:.3f}）"},
    "ch10.spread_wins": {"en": "q and v at rank r/2 beat q alone at rank r, at every budget: {ok}",
                         "zh": "在每种预算下，q 和 v 各用秩 r/2 都胜过只在 q 上用秩 r：{ok}"},
    "ch10.paper_title": {"en": "Hu et al. 2021, Table 5 (GPT-3 175B, 18M trainable parameters):",
                         "zh": "Hu 等（2021）表 5（GPT-3 175B，1800 万个可训练参数）："},
    "ch10.col.weights": {"en": "weights", "zh": "权重"},
    "ch10.col.wikisql": {"en": "WikiSQL", "zh": "WikiSQL"},
    "ch10.col.mnli": {"en": "MultiNLI", "zh": "MultiNLI"},
    "ch10.paper6_title": {"en": "Hu et al. 2021, Table 6 (WikiSQL, rank r = 1, 2, 4, 8, 64):",
                          "zh": "Hu 等（2021）表 6（WikiSQL，秩 r = 1、2、4、8、64）："},
    "ch10.toy_rank": {"en": "this toy, LoRA on {where}, r = 1, 2, 4, 8: {vals}",
                      "zh": "本章的小实验，LoRA 加在 {where}，r = 1、2、4、8：{vals}"},
    "ch10.sim": {"en": "W_{p}: φ(i=1, j=1) learned {learned:.2f}, at initialisation {init:.2f}; random subspaces: {rand:.3f}",
                 "zh": "W_{p}：φ(i=1, j=1) 训练后 {learned:.2f}，初始化时 {init:.2f}；随机子空间：{rand:.3f}"},
    "ch10.sv": {"en": "W_{p}, r = 8: top singular values learned {learned}, teacher's {teacher}",
                "zh": "W_{p}，r = 8：学到的前几个奇异值 {learned}，教师的 {teacher}"},
    # section 4
    "ch10.view": {"en": "{where:<10} r = {r}, alpha = {alpha:>3}: recovered {rec:6.3f}, largest held-out loss {peak:.4f}",
                  "zh": "{where}，r = {r}，alpha = {alpha}：缩小差距 {rec:.3f}，留出集损失的最大值 {peak:.4f}"},
    # section 5
    "ch10.seed_shape": {"en": "the usage example: x {x} -> out {out}; trainable after mark_only_lora_as_trainable: {n:,} of {total:,}",
                        "zh": "用法示例：x {x} -> out {out}；mark_only_lora_as_trainable 之后可训练：{n:,} / {total:,}"},
    "ch10.ragged": {"en": "N = {n} (not a multiple of 128): output {shape}", "zh": "N = {n}（不是 128 的倍数）：输出 {shape}"},
    "ch10.depends": {"en": "{kind:<28} output row i depends on value j exactly where visible_keys says: {ok}",
                     "zh": "{kind}：输出第 i 行依赖第 j 个值，恰好与 visible_keys 一致：{ok}"},
    "ch10.blind_zero": {"en": "blind spot b = 4: the first bucket's global-head output is zero: {ok}",
                        "zh": "盲区 b = 4：第一个桶里全局头的输出为零：{ok}"},
    "ch10.mask_ok": {"en": "changing the padded tokens changes no real position's output: {ok}",
                     "zh": "改变填充位置的内容，不会改变任何真实位置的输出：{ok}"},
    # section 6
    "ch10.col.layer": {"en": "layer", "zh": "层"},
    "ch10.col.ms": {"en": "median (ms)", "zh": "中位数（ms）"},
    "ch10.col.vs_base": {"en": "/ base", "zh": "/ 原层"},
    "ch10.row.base": {"en": "base nn.Linear", "zh": "原层 nn.Linear"},
    "ch10.row.unmerged": {"en": "LoRA unmerged, r = {r}", "zh": "LoRA 未合并，r = {r}"},
    "ch10.row.merged": {"en": "LoRA merged", "zh": "LoRA 已合并"},
    "ch10.merged_verdict": {"en": "merged is within 5% of the base layer on this run: {ok}",
                            "zh": "这次运行中，合并后的层与原层相差不到 5%：{ok}"},
    "ch10.unmerged_verdict": {"en": "unmerged is slower than merged on this run: {ok} (the update's share of FLOPs: {share:.1%})",
                              "zh": "这次运行中，未合并比合并后慢：{ok}（更新部分占浮点运算的 {share:.1%}）"},
    # section 7
    "ch10.forgot_alpha": {"en": "held-out loss: base {base:.5f}, adapter merged right {right:.5f}, merged without alpha/r {wrong:.5f}",
                          "zh": "留出集损失：原模型 {base:.5f}，正确合并适配器 {right:.5f}，合并时漏掉 alpha/r {wrong:.5f}"},
    "ch10.naive_twice": {"en": "a merge that adds every time, called twice: weight off by {d:.3f} (the update itself: {u:.3f})",
                         "zh": "每次调用都累加的合并函数，调用两次：权重偏差 {d:.3f}（更新本身为 {u:.3f}）"},
    "ch10.half": {"en": "{dtype:<8}: merged update kept {kept:.0%} of its size (relative error {err:.1f}); "
                        "W back after unmerge, largest error {rt}",
                  "zh": "{dtype}：合并后更新保留了 {kept:.0%}（相对误差 {err:.1f}）；合并再还原后 W 的最大误差 {rt}"},
    "ch10.dropout_merge": {"en": "lora_dropout = 0.5, {mode:<7}: merged == unmerged: {ok}",
                           "zh": "lora_dropout = 0.5，{mode}：合并后 == 合并前：{ok}"},
    "ch10.mode.train": {"en": "train()", "zh": "train()"},
    "ch10.mode.eval": {"en": "eval()", "zh": "eval()"},
    "ch10.transposed": {"en": "Conv1D weight (in, out), largest error / largest output: read as (out, in) {wrong:.1f}; "
                              "with fan_in_fan_out=True {right}",
                        "zh": "Conv1D 的权重 (in, out)，最大误差 / 输出的最大值：当作 (out, in) 时 {wrong:.1f}；"
                              "使用 fan_in_fan_out=True 时 {right}"},
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch10.alt.budget": {"en": "Recovered fraction of the gap against the number of trainable parameters, 64 to 2048 on a log scale: LoRA on W_q, on W_v, on W_q and W_v, and on all four projections, with full fine-tuning (4,128 parameters) as a dashed line near 1. W_q alone recovers least at every budget; all four projections come closest to full fine-tuning.",
                       "zh": "恢复比例随可训练参数数量（64 到 2048，对数刻度）的变化：LoRA 分别加在 W_q、W_v、W_q 和 W_v、全部四个投影上；虚线是全量微调（4,128 个参数），接近 1。每个预算下只加在 W_q 上恢复得最少；加在全部四个投影上最接近全量微调。"},
    "ch10.alt.subspace": {"en": "Two heatmaps of the subspace similarity φ between the A matrices of the rank-4 and rank-8 runs on W_q and W_v, i from 1 to 4 against j from 1 to 8: the top directions overlap strongly, far more than at initialisation.",
                         "zh": "两张热力图：W_q 和 W_v 上秩 4 与秩 8 两次运行的 A 矩阵之间的子空间相似度 φ，i 从 1 到 4，j 从 1 到 8。最靠前的方向高度重合，远高于初始化时。"},
    "ch10.alt.explorer": {"en": "The LoRA explorer at W_q and W_v, rank 4, alpha 16: the held-out loss during training (dashed: full fine-tuning), the recovered fraction, and the singular values of each learned update (solid) beside the teacher's (dotted).",
                         "zh": "LoRA 交互控件在 W_q 和 W_v、秩 4、alpha 16 时的样子：训练过程中的留出集损失（虚线为全量微调）、恢复比例，以及每个学到的更新的奇异值（实线）与教师模型的奇异值（点线）。"},
    "ch10.alt.dependency": {"en": "Four masks, query rows against key columns on 16 tokens, of the keys each output row depends on: local heads with buckets of W = 4, without and with a causal mask, and global causal heads with buckets of b = 1 and b = 4. The last is a staircase: a query sees only the buckets completed before its own.",
                           "zh": "四张掩码图（16 个词元，行是查询、列是键），画出每一行输出依赖哪些键：桶大小 W = 4 的局部头（不带和带因果掩码），以及桶大小 b = 1 和 b = 4 的因果全局头。最后一张呈阶梯状：一个查询只能看到在它自己的桶之前已经完成的桶。"},
})
