"""What chapter 01 prints: the sentences, table headers and labels only this chapter's cells use.

The chapter's first code cell imports this module (``import attnkit.text.ch01``). The labels
a library function prints itself stay in that library module (see ``attnkit/text/__init__.py``).
"""

from attnkit.i18n import register

register({
    "ch01.col.n": {"en": "N", "zh": "N"},
    "ch01.col.flops": {"en": "FLOPs (formula)", "zh": "FLOPs（按公式计算）"},
    "ch01.col.bytes": {"en": "weight matrix (measured)", "zh": "注意力权重矩阵（实测）"},
    "ch01.test_mse": {"en": "{name}: test MSE = {v:.2f}", "zh": "{name}：测试均方误差 = {v:.2f}"},
    "ch01.self_match": {"en": "without R: the best match of x_i is x_i itself at {v:.1%} of positions",
                        "zh": "没有 R 时：在 {v:.1%} 的位置上，x_i 的最佳匹配就是 x_i 自己"},
    # section 2: from x to q, k, v
    "ch01.qkv_sentence": {"en": "my cat chased mice", "zh": "我的 猫 追 老鼠"},
    "ch01.shape_line": {"en": "{name:>11}: shape {shape}", "zh": "{name:>11}：形状 {shape}"},
    "ch01.hand_query": {"en": "query of token 1 (“{tok}”): q_1 = {v}", "zh": "词元 1（“{tok}”）的查询：q_1 = {v}"},
    "ch01.col.key": {"en": "key j", "zh": "键 j"},
    "ch01.col.score": {"en": "score s_j = q_1·k_j/√4", "zh": "分数 s_j = q_1·k_j/√4"},
    "ch01.col.weight": {"en": "weight w_j", "zh": "权重 w_j"},
    "ch01.col.term": {"en": "w_j · v_j", "zh": "w_j · v_j"},
    "ch01.hand_sum": {"en": "output = sum of the w_j · v_j = {v} (the weights sum to {total:.3f})",
                      "zh": "输出 = 各行 w_j · v_j 之和 = {v}（权重之和为 {total:.3f}）"},
    "ch01.hand_matches": {"en": "equals row {i} of softmax(q kᵀ / √d_k) v: {ok}",
                          "zh": "与 softmax(q kᵀ / √d_k) v 的第 {i} 行一致：{ok}"},
    "ch01.col.ms": {"en": "time (ms)", "zh": "耗时（毫秒）"},
    "ch01.row_sums": {"en": "row sums = {v}", "zh": "每行之和 = {v}"},
    "ch01.matches_attnkit": {"en": "matches attnkit: {ok}", "zh": "与 attnkit 一致：{ok}"},
    "ch01.matches_torch": {"en": "matches PyTorch: {ok}", "zh": "与 PyTorch 一致：{ok}"},
    "ch01.causal_matches_torch": {"en": "causal, matches PyTorch: {ok}", "zh": "加因果掩码，与 PyTorch 一致：{ok}"},
    "ch01.bool_eq_additive": {"en": "bool == additive: {ok}", "zh": "布尔掩码 == 加性掩码：{ok}"},
    "ch01.row2_scratch": {"en": "from scratch, row 2: {v}", "zh": "从零实现，第 2 行：{v}"},
    "ch01.row2_attnkit": {"en": "attnkit,      row 2: {v}", "zh": "attnkit，第 2 行：{v}"},
    "ch01.row2_sdpa": {"en": "PyTorch SDPA, row 2: {v}", "zh": "PyTorch SDPA，第 2 行：{v}"},
    "ch01.peak_per_row": {"en": "T = {temp:<4}: largest weight per row = {v}", "zh": "T = {temp}：每行的最大权重 = {v}"},
    "ch01.scaled": {"en": "scaled", "zh": "缩放后"},
    "ch01.unscaled": {"en": "unscaled", "zh": "未缩放"},
    "ch01.scale_stats": {"en": "{label:>8}: score std = {std:.1f}, mean largest weight = {peak:.3f}",
                         "zh": "{label}：分数的标准差 = {std:.1f}，最大权重的平均值 = {peak:.3f}"},
    "ch01.row_sums_dim": {"en": "row sums, dim={dim}: {v}", "zh": "每行之和，dim={dim}：{v}"},
    "ch01.fill_row2": {"en": "fill -1e9, row 2: {v}", "zh": "填入 -1e9，第 2 行：{v}"},
    "ch01.mean_values": {"en": "mean of values  : {v}", "zh": "所有值的平均：{v}"},
    "ch01.half": {"en": "-1e9 in float16 : {v}", "zh": "-1e9 转成 float16：{v}"},
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch01.alt.fixed_vs_qkv": {"en": "Test error while training on the toy task: predicting zero, a fixed learned matrix, attention with queries, keys and values, and attention with tied queries and keys or tied keys and values. Attention ends far below the fixed matrix, which stays near the zero predictor.",
                             "zh": "玩具任务上训练时的测试误差：预测全零、固定的可学习矩阵、带查询/键/值的注意力，以及查询与键共用、键与值共用的注意力。注意力的误差远低于固定矩阵，而固定矩阵几乎停在全零预测的水平。"},
    "ch01.alt.qkv": {"en": "Data flow of one attention layer for a four-token sentence: x is multiplied by W_Q, W_K and W_V into Q, K and V; Q times K transposed, divided by the square root of d_k, gives the scores; a softmax over each row gives the weights; the weights times V give the output. Every tensor is labelled with its shape.",
                    "zh": "四个词元的句子经过一层注意力的数据流向：x 分别乘以 W_Q、W_K、W_V 得到 Q、K、V；Q 乘以 K 的转置再除以 d_k 的平方根得到分数；每行做 softmax 得到权重；权重乘以 V 得到输出。每个张量都标出了形状。"},
    "ch01.alt.masks": {"en": "Two 6 by 6 grids of query rows and key columns for the first six tokens. Left, causal_mask(6): filled squares on and below the diagonal, each query attends to itself and earlier keys. Right, padding_mask([4], 6): the last two key columns are empty for every query. A legend reads filled: attend, empty: masked.",
                      "zh": "前六个词元的两个 6×6 网格，行是查询、列是键。左图 causal_mask(6)：对角线及其下方为实心，每个查询只关注自己和之前的键。右图 padding_mask([4], 6)：最后两列键对所有查询都是空心。图例：实心表示可以关注，空心表示被掩码屏蔽。"},
    "ch01.alt.explorer": {"en": "The attention explorer at its starting values, temperature 1: the score and weight heatmaps of the sentence, one query token's row highlighted in red, each value vector drawn scaled by that row's weight, and below them the query's output, their weighted sum.",
                         "zh": "注意力交互控件在初始设置（温度 T = 1）下的样子：这句话的分数热力图和权重热力图，其中一个查询词元的那一行标为红色；每个值向量按该行的权重缩放后画出，下方是它们的加权和，即这个查询的输出。"},
})
