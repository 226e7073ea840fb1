"""What chapter 03 prints: the sentences, table headers and labels only this chapter's cells use.

The chapter's first code cell imports this module (``import attnkit.text.ch03``). The labels
a library function prints itself stay in that library module (see ``attnkit/text/__init__.py``).
"""

from attnkit.i18n import register

register({
    "ch03.col.impl": {"en": "implementation", "zh": "实现"},
    "ch03.col.ms": {"en": "ms", "zh": "毫秒"},
    "ch03.col.naive": {"en": "naive", "zh": "朴素实现"},
    "ch03.col.stable": {"en": "stable", "zh": "稳定实现"},
    "ch03.col.entropy": {"en": "entropy", "zh": "熵"},
    "ch03.col.max": {"en": "largest weight", "zh": "最大权重"},
    "ch03.matches_attnkit": {"en": "matches attnkit: {ok}", "zh": "与 attnkit 一致：{ok}"},
    "ch03.matches_torch": {"en": "matches PyTorch: {ok}", "zh": "与 PyTorch 一致：{ok}"},
    "ch03.soft_out": {
        "en": "softmax: output {out:.4f}, gradient {g}",
        "zh": "softmax：输出 {out:.4f}，梯度 {g}",
    },
    "ch03.hard_out": {
        "en": "argmax : output {out:.4f}, requires_grad = {rg} (no gradient at all)",
        "zh": "argmax：输出 {out:.4f}，requires_grad = {rg}（完全没有梯度）",
    },
    "ch03.bounded": {
        "en": "bounded: min(v) = {lo:g} <= {out:.4f} <= max(v) = {hi:g}",
        "zh": "有界：min(v) = {lo:g} <= {out:.4f} <= max(v) = {hi:g}",
    },
    "ch03.overflow": {
        "en": "{dtype:>8}: largest finite number {fmax:.5g}, so exp(x) overflows for x > {x:.2f}",
        "zh": "{dtype:>8}：最大有限值 {fmax:.5g}，因此 x > {x:.2f} 时 exp(x) 溢出",
    },
    "ch03.lse_naive": {"en": "log-sum-exp, naive : {v}", "zh": "log-sum-exp，朴素算法：{v}"},
    "ch03.lse_stable": {
        "en": "log-sum-exp, stable: {v:.4f}  torch: {w:.4f}",
        "zh": "log-sum-exp，稳定算法：{v:.4f}  torch：{w:.4f}",
    },
    "ch03.fill_1e9": {"en": "fill -1e9      : {v}", "zh": "填入 -1e9：{v}"},
    "ch03.half": {"en": "-1e9 as float16: {v}", "zh": "-1e9 转成 float16：{v}"},
    "ch03.both_masks": {"en": "scores + both masks: {v}", "zh": "分数 + 两个掩码：{v}"},
    "ch03.fp16_softmax": {
        "en": "softmax, float16  : {v} (should be all zeros)",
        "zh": "softmax（float16）：{v}（本应全为零）",
    },
    "ch03.bool_mask": {"en": "with a bool mask  : {v}", "zh": "改用布尔掩码：{v}"},
    "ch03.trace": {
        "en": "after x[{j}] = {xj:>4}: m = {m:>4}, l = {l:.6f}",
        "zh": "读入 x[{j}] = {xj:>4} 后：m = {m:>4}，l = {l:.6f}",
    },
    "ch03.equals_softmax": {"en": "equals softmax: {ok}", "zh": "与 softmax 一致：{ok}"},
    "ch03.chunks": {
        "en": "chunk_size = {c:<16} equals torch.softmax: {ok}",
        "zh": "chunk_size = {c:<16} 与 torch.softmax 一致：{ok}",
    },
    "ch03.merge_whole": {
        "en": "merge(a, b) == state of the whole row: {l} {m}",
        "zh": "merge(a, b) == 整行的状态：{l} {m}",
    },
    "ch03.lse_from_state": {
        "en": "logsumexp from (m, l): {ok}",
        "zh": "由 (m, l) 算出的 logsumexp：{ok}",
    },
    "ch03.two_blocks": {
        "en": "two blocks merged == PyTorch SDPA: {ok}",
        "zh": "两块合并的结果 == PyTorch SDPA：{ok}",
    },
    "ch03.eq_autograd": {"en": "equals autograd: {ok}", "zh": "与自动求导一致：{ok}"},
    "ch03.sym_rows": {
        "en": "symmetric: {sym}  rows sum to 0: {rows}",
        "zh": "对称：{sym}  每行之和为 0：{rows}",
    },
    "ch03.jnorm": {
        "en": "‖J‖_F = {a:.5f} (from the closed form), {b:.5f} (autograd)",
        "zh": "‖J‖_F = {a:.5f}（闭式表达式），{b:.5f}（自动求导）",
    },
    "ch03.temp_jnorm": {
        "en": "T = {T}: largest weight {w:.6f}, ‖J‖_F = {j:.6f}",
        "zh": "T = {T}：最大权重 {w:.6f}，‖J‖_F = {j:.6f}",
    },
    "ch03.impl.online": {"en": "online_softmax, chunk {n}", "zh": "online_softmax，分块大小 {n}"},
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch03.alt.explorer": {"en": "The temperature explorer at T = 1: bars of the softmax weights of eight scores, the largest one outlined in red as the argmax limit, and the entropy of the weights against the temperature on a log scale from 0.01 to 100, with a point at T = 1.",
                         "zh": "温度交互控件在 T = 1 时的样子：八个分数经 softmax 后的权重柱状图，最大的一个用红框标出（argmax 极限）；右侧是权重的熵随温度变化的曲线（温度取对数刻度，0.01 到 100），T = 1 处标出一点。"},
    "ch03.alt.online": {"en": "A row of 8 scores split into chunks of 3, 3 and 2. Each chunk gets its own running max m and sum ℓ; below, the running state after each merge, ending with the max and the sum of the whole row, the same as a softmax computed in one go.",
                       "zh": "一行 8 个分数，按 3、3、2 分块。每块算出自己的最大值 m 和指数和 ℓ；下方是每次合并后的累计状态，最后得到整行的最大值和指数和，与一次性计算 softmax 的结果相同。"},
})
