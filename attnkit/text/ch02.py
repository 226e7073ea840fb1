"""What chapter 02 prints: the sentences, table headers and labels only this chapter's cells use.

The chapter's first code cell imports this module (``import attnkit.text.ch02``). The labels
a library function prints itself stay in that library module (see ``attnkit/text/__init__.py``).
"""

from attnkit.i18n import register

register({
    "ch02.var_axis": {"en": "variance of the scores", "zh": "分数的方差"},
    "ch02.measured_unscaled": {"en": "measured, q·k", "zh": "实测，q·k"},
    "ch02.measured_scaled": {"en": "measured, q·k / √d_k", "zh": "实测，q·k / √d_k"},
    "ch02.theory_dk": {"en": "theory: d_k", "zh": "理论值：d_k"},
    "ch02.theory_one": {"en": "theory: 1", "zh": "理论值：1"},
    "ch02.sweep_title": {
        "en": "Var(q·k) grows like d_k; dividing by √d_k keeps it at 1",
        "zh": "Var(q·k) 随 d_k 线性增长；除以 √d_k 后保持为 1",
    },
    "ch02.col.max_w": {"en": "mean largest weight", "zh": "平均最大权重"},
    "ch02.col.jac": {"en": "mean ‖J‖_F", "zh": "平均 ‖J‖_F"},
    "ch02.col.entropy": {"en": "mean entropy", "zh": "平均熵"},
    "ch02.col.mode": {"en": "scores", "zh": "分数"},
    "ch02.col.std": {"en": "entry std", "zh": "分量标准差"},
    "ch02.col.plain": {"en": "Var, q·k/√d_k", "zh": "方差，q·k/√d_k"},
    "ch02.col.qknorm": {"en": "Var, with QK-norm", "zh": "方差，QK 归一化后"},
    "ch02.col.temp": {"en": "Var, temperature τ = std²", "zh": "方差，温度 τ = std²"},
    "ch02.col.theory": {"en": "theory", "zh": "理论值"},
    "ch02.col.where": {"en": "where the scale is applied", "zh": "在哪里缩放"},
    "ch02.col.ms": {"en": "ms", "zh": "毫秒"},
    "ch02.where.scores": {"en": "on the (L, S) scores", "zh": "乘在 (L, S) 的分数上"},
    "ch02.where.query": {"en": "folded into q (L, d_k)", "zh": "并入 q (L, d_k)"},
    "ch02.where.none": {"en": "no scaling", "zh": "不缩放"},
    "ch02.nb.overhead": {"en": "{where}: time {p:+.0f} % against the product alone",
                         "zh": "{where}：与单做矩阵乘法相比，用时变化 {p:+.0f} %"},
    "ch02.nb.faster": {
        "en": "this run: {fast} was faster; {slow} took {r:.2f}x its time",
        "zh": "本次运行：“{fast}”更快；“{slow}”的用时是它的 {r:.2f} 倍",
    },
    "ch02.nb.theory": {"en": "(theory: {v})", "zh": "（理论值：{v}）"},
    "ch02.nb.se_row": {
        "en": "scaled={scaled:<5}  measured {v:7.3f}   theory {th:4.0f}   SE {se:.4f}   |diff| / SE = {z:.1f}",
        "zh": "scaled={scaled:<5}  实测 {v:7.3f}   理论值 {th:4.0f}   标准误差 {se:.4f}   |差值| / 标准误差 = {z:.1f}",
    },
    "ch02.nb.match_sdpa": {
        "en": "matches PyTorch SDPA ({arg}): {ok}",
        "zh": "与 PyTorch SDPA（{arg}）一致：{ok}",
    },
    "ch02.nb.match_attnkit": {"en": "matches attnkit: {ok}", "zh": "与 attnkit 一致：{ok}"},
    "ch02.nb.qknorm_theory": {
        "en": "QK-norm theory: d_k / (d_k - 1) = {v:.3f}",
        "zh": "QK 归一化的理论值：d_k / (d_k - 1) = {v:.3f}",
    },
    "ch02.nb.same_scores": {"en": "same scores: {ok}", "zh": "分数相同：{ok}"},
    "ch02.nb.div_stats": {
        "en": "{div}: mean largest weight {w:.3f}, mean entropy {h:.3f}",
        "zh": "{div}：平均最大权重 {w:.3f}，平均熵 {h:.3f}",
    },
    "ch02.nb.uniform": {
        "en": "  (uniform: 1/16 = {p:.3f}, log 16 = {h:.3f})",
        "zh": "（均匀分布：1/16 = {p:.3f}，log 16 = {h:.3f}）",
    },
    "ch02.nb.twice_default": {
        "en": "scaled q + default scale == attention: {ok}",
        "zh": "先缩放 q，再用默认的 scale，结果正确：{ok}",
    },
    "ch02.nb.twice_one": {
        "en": "scaled q + scale=1.0     == attention: {ok}",
        "zh": "先缩放 q，再传入 scale=1.0，结果正确：{ok}",
    },
    "ch02.nb.nudge": {
        "en": "d_k = {d:>4}: largest weight {w:.3f}; the second-largest score +0.5 moves the weights by {dp:.2f} in total "
              "(total change {bound})",
        "zh": "d_k = {d:>4}：最大权重 {w:.3f}；第二大的分数加 0.5，权重总共变化 {dp:.2f}（总变化 {bound}）",
    },
    "ch02.nb.fourth_moment": {
        "en": "E[(q·k)^4] over the {n:,} pairs of section 2: measured {m:.0f} (to the nearest 10), theory 3·d_k² + 6·d_k = {th}",
        "zh": "第 2 节的 {n:,} 对向量上的 E[(q·k)^4]：实测 {m:.0f}（取整到十位），理论值 3·d_k² + 6·d_k = {th}",
    },
    "ch02.nb.walk_end": {
        "en": "after 1024 coordinates the five sums are {v}; √1024 = {r:g}",
        "zh": "累加完 1024 个坐标后，五个和分别是 {v}；√1024 = {r:g}",
    },
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch02.alt.partial_sums": {"en": "Five random walks: the running sum q_1k_1 + ... + q_jk_j for j from 1 to 1024, over grey bands at plus or minus the square root of j and twice that. The walks drift apart and stay mostly inside the bands, ending between about -54 and 49.",
                             "zh": "五条随机游走：j 从 1 到 1024 时的部分和 q_1k_1 + … + q_jk_j，背景灰带为 ±√j 和 ±2√j。各条游走逐渐分开，但大多留在灰带之内，最终落在约 -54 到 49 之间。"},
    "ch02.alt.variance": {"en": "Log-log plot of the variance of the scores against d_k from 1 to 512: the unscaled q·k follows the line of slope 1 (variance equals d_k), the scaled q·k/√d_k stays flat at 1. The measured points with error bars of three standard errors lie on both lines.",
                         "zh": "分数方差随 d_k（1 到 512）变化的双对数图：未缩放的 q·k 落在斜率为 1 的直线上（方差等于 d_k），缩放后的 q·k/√d_k 始终保持在 1。实测点及其 ±3 倍标准误差的误差棒都落在这两条线上。"},
    "ch02.alt.explorer": {"en": "The scaling explorer at d_k = 256, unscaled: a histogram of the scores with the normal density of the closed-form variance, one softmax row over 16 keys that is almost one-hot with a small Jacobian norm, and the mean Jacobian norm against d_k, scaled and unscaled.",
                         "zh": "缩放交互控件在 d_k = 256、未缩放时的样子：分数的直方图和按闭式方差画出的正态密度；一行 16 个键上的 softmax，几乎是独热向量，雅可比矩阵的范数很小；以及缩放与未缩放时雅可比矩阵范数的平均值随 d_k 的变化。"},
})
