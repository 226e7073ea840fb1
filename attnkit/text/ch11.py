"""What chapter 11 prints: the sentences, table headers and labels only this chapter's cells use.

What chapter 11 (choosing an attention) prints: its tables, the selector's and profiler's lines,
the race and the conclusions drawn from the benchmark file. Imported by the chapter's first code
cell."""

from attnkit.i18n import register

register({
    "ch11.versions": {"en": "torch {torch} · threads: {n}", "zh": "torch {torch} · 线程数：{n}"},
    # section 1: the factory
    "ch11.col.name": {"en": "mechanism", "zh": "机制"},
    "ch11.col.module": {"en": "chapter module", "zh": "章节模块"},
    "ch11.col.params": {"en": "parameters (counted)", "zh": "参数（数出）"},
    "ch11.col.formula": {"en": "parameters (formula)", "zh": "参数（公式）"},
    "ch11.col.shape": {"en": "output shape", "zh": "输出形状"},
    "ch11.all_same": {"en": "all {n}: output (B, N, d) and counted parameters == formula: {ok}",
                      "zh": "全部 {n} 种：输出形状为 (B, N, d)，且数出的参数 == 公式：{ok}"},
    "ch11.aliases": {"en": "aliases: {names}", "zh": "别名：{names}"},
    "ch11.eq_chapter": {"en": "factory '{name}' == {module} with the same weights: {ok}",
                        "zh": "工厂的 '{name}' == 权重相同的 {module}：{ok}"},
    "ch11.no_causal": {"en": "ValueError: {name} has no causal form (its landmarks average future tokens)",
                       "zh": "ValueError：{name} 没有因果形式（它的地标点是对未来词元取平均得到的）"},
    "ch11.block_reach": {"en": "four block_sparse layers (blocks of 16): the output at token {last} depends on the {n} "
                               "tokens {lo}-{hi} only (autograd), its own block",
                         "zh": "四层 block_sparse（块长 16）：第 {last} 个词元的输出只依赖 {lo}-{hi} 这 {n} 个词元（由自动求导得出），"
                               "也就是它自己所在的块"},
    "ch11.mixed": {"en": "mixed stack {kinds}: output {shape}", "zh": "混合结构 {kinds}：输出 {shape}"},
    # section 2: the selector
    "ch11.mem_title": {"en": "forward memory of one layer by the formula (MB; d_model 512, 8 heads, batch 1, float32):",
                       "zh": "按公式计算的单层前向内存（MB；d_model 512，8 个头，批次大小 1，float32）："},
    "ch11.growth": {"en": "from N = 16,384 to 65,536 (4x): math x {math:.1f}, full x {full:.1f}, linear x {linear:.1f}",
                    "zh": "N 从 16,384 到 65,536（4 倍）：math 变为 {math:.1f} 倍，full 变为 {full:.1f} 倍，"
                          "linear 变为 {linear:.1f} 倍"},
    "ch11.math_need": {"en": "training at N = {n:,}, the materialising path (math) would need {math:,.0f} MB",
                       "zh": "N = {n:,} 时训练，显式构造权重的路径（math）需要 {math:,.0f} MB"},
    "ch11.mla_vs_gqa": {"en": "cache per token and layer: gqa {gqa} numbers ({kv} kv heads x 2 x d_h {dh}); mla {mla} "
                              "(latent d_c {dc} + shared RoPE key {dr})",
                        "zh": "每个词元每层的缓存：gqa {gqa} 个数（{kv} 个键值头 x 2 x d_h {dh}）；mla {mla} 个"
                              "（潜在向量 d_c {dc} + 共享的 RoPE 键 {dr}）"},
    "ch11.mla_deepseek": {"en": "DeepSeek-V2 (d_c 512, RoPE key 64, 128 heads of 128): mla keeps {mla} numbers per token and "
                               "layer, its heads' full cache would keep {mha:,}",
                         "zh": "DeepSeek-V2（d_c 512，RoPE 键 64，128 个长为 128 的头）：mla 每个词元每层保存 {mla} 个数，"
                               "它这些头的完整缓存要保存 {mha:,} 个"},
    "ch11.no_fit": {"en": "ValueError: nothing fits {budget} MB at N = {n:,}; the smallest need is {need:.1f} MB ({name})",
                    "zh": "ValueError：N = {n:,} 时没有候选放得进 {budget} MB；需要最少的是 {name}，{need:.1f} MB"},
    "ch11.choice": {"en": "{scenario:<14} N = {n:>7,}, budget {budget:>5,} MB -> {choice} ({mb:,.1f} MB)",
                    "zh": "{scenario:<14} N = {n:>7,}，预算 {budget:>5,} MB -> {choice}（{mb:,.1f} MB）"},
    "ch11.skipped": {"en": "                 skipped, over the budget: {what}", "zh": "                 超出预算而跳过：{what}"},
    # section 3: the profiler
    "ch11.profile_settings": {"en": "N = {n}, batch 1, d_model {d}, {h} heads, forward, one thread, {it} rounds after 3 "
                                    "warm-up rounds:",
                              "zh": "N = {n}，批次大小 1，d_model {d}，{h} 个头，前向计算，单线程，3 轮预热后计时 {it} 轮："},
    "ch11.col.median": {"en": "ms (median)", "zh": "毫秒（中位数）"},
    "ch11.col.quartiles": {"en": "ms (quartiles)", "zh": "毫秒（四分位数）"},
    "ch11.col.peak": {"en": "peak MB (measured)", "zh": "峰值 MB（实测）"},
    "ch11.col.formula_mb": {"en": "MB (formula)", "zh": "MB（公式）"},
    "ch11.col.tps": {"en": "tokens / s", "zh": "词元 / 秒"},
    "ch11.col.ratio": {"en": "measured / formula", "zh": "实测 / 公式"},
    "ch11.live_verdict": {"en": "this run: {slow}'s median is {x:.2f}x {fast}'s; the middle halves of their rounds "
                                "are apart: {apart}",
                          "zh": "这一次运行：{slow} 的中位数是 {fast} 的 {x:.2f} 倍；两者各轮计时的中间一半互不重叠：{apart}"},
    "ch11.made_by_rows": {"en": "{names}: from figures/bench_factory.json, made by `{command}` on {cpu} ({cores} cores), "
                                "torch {torch}, {date}, load average at the start {load}",
                          "zh": "{names}：来自 figures/bench_factory.json，由 `{command}` 生成；机器：{cpu}（{cores} 核），"
                                "torch {torch}，{date}，开始时的平均负载 {load}"},
    "ch11.profile_file_settings": {"en": "batch {batch_size}, d_model {d_model}, {n_heads} heads, forward, not causal "
                                         "(causal where a mechanism has only a causal form), one thread, {iterations} "
                                         "rounds after one warm-up round",
                                   "zh": "批次大小 {batch_size}，d_model {d_model}，{n_heads} 个头，前向计算，非因果"
                                         "（只有因果形式的机制按因果计算），单线程，预热 1 轮后计时 {iterations} 轮"},
    "ch11.skipped_cell": {"en": "skipped", "zh": "跳过"},
    "ch11.tab_latency": {"en": "latency (ms, median over the rounds ± spread) at N =",
                         "zh": "延迟（毫秒，各轮的中位数 ± 波动），N ="},
    "ch11.tab_memory": {"en": "peak memory measured (MB) at N =", "zh": "实测内存峰值（MB），N ="},
    "ch11.tab_tps": {"en": "tokens per second at N =", "zh": "每秒词元数，N ="},
    "ch11.plot_latency": {"en": "latency (ms)", "zh": "延迟（毫秒）"},
    "ch11.plot_memory": {"en": "peak memory (MB)", "zh": "内存峰值（MB）"},
    "ch11.plot_n": {"en": "sequence length N", "zh": "序列长度 N"},
    "ch11.plot_profile_title": {"en": "latency of one forward call", "zh": "一次前向调用的延迟"},
    "ch11.plot_memory_title": {"en": "peak memory of one forward call (torch.profiler)",
                               "zh": "一次前向调用的内存峰值（torch.profiler）"},
    "ch11.formula_vs_measured": {"en": "N = {n:,}: the selector's formula against the measured peak",
                                 "zh": "N = {n:,}：选择器的公式与实测峰值对比"},
    "ch11.off_high": {"en": "  {name}: measured {x:.1f}x the formula (the code holds tensors the formula does not count)",
                      "zh": "  {name}：实测是公式的 {x:.1f} 倍（代码保存了公式没有计入的张量）"},
    "ch11.off_low": {"en": "  {name}: the formula is {x:.1f}x the measured peak (it counts memory the code never holds)",
                     "zh": "  {name}：公式是实测峰值的 {x:.1f} 倍（它计入了代码从未占用的内存）"},
    "ch11.full_vs_flash": {"en": "at N = {n:,} full (the fused kernel) measured {full_mb:,.1f} MB against {full_f:,.1f} MB "
                                 "by the formula; flash (chapter 07's tiling in Python) measured {flash_mb:,.1f} MB and "
                                 "took {x:.1f}x the time of full (medians; spreads ±{s_full:.0f}% and ±{s_flash:.0f}%)",
                           "zh": "N = {n:,} 时，full（融合算子）实测 {full_mb:,.1f} MB，公式为 {full_f:,.1f} MB；"
                                 "flash（第 7 章的分块，用 Python 写成）实测 {flash_mb:,.1f} MB，耗时是 full 的 {x:.1f} 倍"
                                 "（中位数；波动分别为 ±{s_full:.0f}% 和 ±{s_flash:.0f}%）"},
    # section 4: the race
    "ch11.batch_settings": {"en": "vocabulary {v}, length {l}, {k} pairs, seed 0:", "zh": "词表 {v}，长度 {l}，{k} 个键值对，种子 0："},
    "ch11.row_inputs": {"en": "inputs   ", "zh": "输入     "},
    "ch11.row_targets": {"en": "targets  ", "zh": "目标     "},
    "ch11.chance": {"en": "chance (guessing one of the {v} // 2 values): {p:.4f}",
                    "zh": "随机猜测（从 {v} // 2 个值中猜一个）的准确率：{p:.4f}"},
    "ch11.race_settings": {"en": "vocabulary {vocab_size}, length {seq_len}, {num_pairs} pairs, width {width}, {layers} "
                                 "layers of conv (kernel {conv_kernel}) + mixer, {n_heads} head, window {window_size}, "
                                 "AdamW lr {lr}, {steps} steps of batch {batch}, seed 0",
                           "zh": "词表 {vocab_size}，长度 {seq_len}，{num_pairs} 个键值对，宽度 {width}，{layers} 层"
                                 "（卷积核 {conv_kernel} 的卷积 + 混合层），{n_heads} 个头，窗口 {window_size}，"
                                 "AdamW 学习率 {lr}，{steps} 步、每步批次 {batch}，种子 0"},
    "ch11.live_states": {"en": "one layer at length {l}, width {d}: softmax's KV cache 2Ld = {kv:,} numbers, linear "
                                "attention's state d(d + 1) = {lin:,} numbers; ratio {x:.2f}",
                         "zh": "长度 {l}、宽度 {d} 时的一层：softmax 的 KV 缓存 2Ld = {kv:,} 个数，线性注意力的状态 "
                               "d(d + 1) = {lin:,} 个数；两者之比 {x:.2f}"},
    "ch11.race_row": {"en": "{name:<8} solves it (recall >= 0.9): {ok} (state {state:,} bytes); the file's run, same setting "
                            "and seed: recall {file:.2f}, solves it: {file_ok}",
                      "zh": "{name:<8} 解决了（召回率 >= 0.9）：{ok}（状态 {state:,} 字节）；文件中同一设置、同一种子的运行："
                            "召回率 {file:.2f}，解决了：{file_ok}"},
    "ch11.plot_step": {"en": "training step", "zh": "训练步数"},
    "ch11.plot_loss": {"en": "loss at the queries", "zh": "查询位置上的损失"},
    "ch11.plot_race_title": {"en": "the live race (length {l}, width {w}, {k} pairs)",
                             "zh": "现场比赛（长度 {l}，宽度 {w}，{k} 个键值对）"},
    "ch11.made_by_race": {"en": "from figures/bench_factory.json, made by `{command}` on {cpu} ({cores} cores), torch {torch}, "
                                "{date}, {workers} worker processes of one thread, budget {limit_min} min (estimate on a "
                                "quiet machine {quiet_estimate_min} min); this run took {minutes:.0f} min, load average "
                                "{load} at the start, {end} at the end; runs kept from earlier runs: {kept}; the models' "
                                "training times add up to {trained:.0f} min",
                          "zh": "来自 figures/bench_factory.json，由 `{command}` 生成；机器：{cpu}（{cores} 核），torch {torch}，"
                                "{date}，{workers} 个单线程工作进程，预算 {limit_min} 分钟（空闲机器上估计 {quiet_estimate_min} "
                                "分钟）；这一次运行用了 {minutes:.0f} 分钟，平均负载开始时 {load}，结束时 {end}；"
                                "沿用的早先运行：{kept}；各模型的训练时间合计 {trained:.0f} 分钟"},
    "ch11.sweep_settings": {"en": "seeds {seeds}; vocabulary {vocab_size}, {layers} layers of conv "
                                  "(kernel {conv_kernel}) + mixer, one head (the hybrid's Taylor layer: heads of 16), "
                                  "window {window_size}, AdamW lr {lr}, batch {batch}",
                            "zh": "种子 {seeds}；词表 {vocab_size}，{layers} 层（卷积核 {conv_kernel} 的卷积 "
                                  "+ 混合层），单个头（混合结构的泰勒层：每头 16 维），窗口 {window_size}，AdamW 学习率 {lr}，"
                                  "每步批次 {batch}"},
    "ch11.sweep_states": {"en": "length {l}, width {d}, {k} pairs, {steps} steps: softmax's KV cache 2Ld = {kv:,} numbers "
                                "per layer, {x:.1f}x the linear state d(d + 1) = {lin:,}",
                          "zh": "长度 {l}，宽度 {d}，{k} 个键值对，{steps} 步：softmax 每层的 KV 缓存 2Ld = {kv:,} 个数，"
                                "是线性状态 d(d + 1) = {lin:,} 的 {x:.1f} 倍"},
    "ch11.col.point": {"en": "L {l}, d {w}, K {k}: recall", "zh": "L {l}，d {w}，K {k}：召回率"},
    "ch11.col.bytes": {"en": "state (bytes)", "zh": "状态（字节）"},
    "ch11.plot_state": {"en": "state a model keeps to predict the next token (bytes; equal states drawn side by side)",
                        "zh": "模型为预测下一个词元而保存的状态（字节；状态相同的点并排画开）"},
    "ch11.plot_acc": {"en": "recall (median over seeds; bars: lowest, highest)", "zh": "召回率（各种子的中位数；误差棒：最低、最高）"},
    "ch11.plot_state_title": {"en": "length {l}, width {w}, {k} pairs", "zh": "长度 {l}，宽度 {w}，{k} 个键值对"},
    "ch11.best": {"en": "length {l}, width {w}, {k} pairs: the best median recall is {name}'s ({med:.2f})",
                  "zh": "长度 {l}，宽度 {w}，{k} 个键值对：召回率中位数最高的是 {name}（{med:.2f}）"},
    "ch11.no_tradeoff": {"en": "  softmax's median is {med:.2f} (seeds from {lo:.2f} to {hi:.2f}), below 0.9: the budget did "
                               "not train softmax here, so no trade-off is drawn at this setting",
                         "zh": "  softmax 的中位数为 {med:.2f}（各种子从 {lo:.2f} 到 {hi:.2f}），低于 0.9：这个训练预算连 softmax "
                               "都没训练出来，所以这组设置不画权衡"},
    "ch11.solvers": {"en": "  solve it (median >= 0.9; state as a multiple of softmax's): {names}",
                     "zh": "  解决了（中位数 >= 0.9；状态是 softmax 的多少倍）：{names}"},
    "ch11.fail": {"en": "  below 0.9 (median; state as a multiple of softmax's): {names}",
                  "zh": "  低于 0.9（中位数；状态是 softmax 的多少倍）：{names}"},
    "ch11.hybrid": {"en": "  the Based-style hybrid: median {med:.2f} [{lo:.2f}, {hi:.2f}] with {x:.2f}x softmax's state, "
                          "{vs} linear attention ({lin:.2f} with {xl:.2f}x); softmax {soft:.2f}",
                    "zh": "  Based 式的混合结构：中位数 {med:.2f} [{lo:.2f}, {hi:.2f}]，状态是 softmax 的 {x:.2f} 倍，"
                          "{vs}线性注意力（{lin:.2f}，状态 {xl:.2f} 倍）；softmax 为 {soft:.2f}"},
    "ch11.word.above": {"en": "above", "zh": "高于"},
    "ch11.word.below": {"en": "below", "zh": "低于"},
    "ch11.word.level": {"en": "level with", "zh": "等于"},
    "ch11.forgetting": {"en": "  with forgetting, each keeping {x:.2f}x softmax's state: {names}",
                        "zh": "  带遗忘的几种，状态都是 softmax 的 {x:.2f} 倍：{names}"},
    "ch11.solves_where": {"en": "{name:<15} solves: {where}", "zh": "{name:<15} 解决了：{where}"},
    "ch11.nowhere": {"en": "no setting", "zh": "没有一组设置"},
    # section 5: why
    "ch11.memory_title": {"en": "recall of K random pairs with no training (64 draws):",
                          "zh": "不经训练时 K 个随机键值对的召回率（64 次抽取）："},
    "ch11.col.dim": {"en": "d", "zh": "d"},
    "ch11.col.memory": {"en": "memory", "zh": "记忆方式"},
    "ch11.mem_identity": {"en": "linear state, identity", "zh": "线性状态，恒等特征"},
    "ch11.mem_elu": {"en": "linear state, elu+1", "zh": "线性状态，elu+1"},
    "ch11.mem_softmax": {"en": "KV cache, softmax", "zh": "KV 缓存，softmax"},
    "ch11.orthogonal": {"en": "{d} orthogonal keys in d = {d}, identity features: {acc:.2f}",
                        "zh": "d = {d} 时 {d} 个正交的键，恒等特征：{acc:.2f}"},
    "ch11.reach": {"en": "length {l}, {k} pairs: value within one window (<= {w} - 1 back) for {one:.1%} of the queries, "
                         "within the two-layer reach of {reach} (conv kernel {c}) for {two:.1%}; answering the first and "
                         "guessing the rest gives {ceiling:.2f}",
                   "zh": "长度 {l}，{k} 个键值对：值在一个窗口之内（往回 <= {w} - 1）的查询占 {one:.1%}，在两层范围 {reach}"
                         "（卷积核 {c}）之内的占 {two:.1%}；前者全答对、其余靠猜可得 {ceiling:.2f}"},
    "ch11.reach_model": {"en": "  window model at width {d}: median recall {acc:.2f}, {vs} that {ceiling:.2f}",
                         "zh": "  宽度 {d} 的窗口模型：召回率中位数 {acc:.2f}，{vs}这个 {ceiling:.2f}"},
    # section 6
    "ch11.fit_line": {"en": "N = {n:,}, {budget:,} MB, {mode}: {k} fit: {names}",
                      "zh": "N = {n:,}，{budget:,} MB，{mode}：放得下 {k} 种：{names}"},
    # section 7
    "ch11.spread": {"en": "{name:<15} length {l}, width {w}, {k} pairs: from {lo:.2f} to {hi:.2f} over {n} seeds",
                    "zh": "{name:<15} 长度 {l}，宽度 {w}，{k} 个键值对：{n} 个种子之间从 {lo:.2f} 到 {hi:.2f}"},
    "ch11.fastest": {"en": "N = {n:,}: fastest of {m} (ms, median ± spread): {names}; full ({full}) ranks {r}; "
                           "neighbours closer than their spread: {close}",
                     "zh": "N = {n:,}：{m} 种机制中最快的是（毫秒，中位数 ± 波动）{names}；full（{full}）排第 {r}；"
                           "差距小于波动的相邻两种：{close}"},
    "ch11.none_close": {"en": "none", "zh": "没有"},
    "ch11.sep": {"en": ", ", "zh": "、"},  # between the items of a list the chapter prints
    "ch11.off_none": {"en": "  no mechanism's peak is off its formula by more than a factor of two",
                      "zh": "  没有哪种机制的峰值与公式相差超过两倍"},
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch11.alt.profile": {"en": "From the benchmark file, one line per mechanism against N from 512 to 8192, log-log: the latency of one forward call in milliseconds (left) and its peak memory in MB (right), both growing with N for every mechanism.",
                        "zh": "来自基准测试文件，每种机制一条线，横轴为 N（512 到 8192），双对数坐标：左图是一次前向计算的延迟（毫秒），右图是它的峰值内存（MB），每种机制的两者都随 N 增长。"},
    "ch11.alt.race": {"en": "Training loss against step for the live race: softmax and linear attention trained on the same recall task at length 32 with the same budget and seed.",
                     "zh": "现场比赛的训练损失随步数的变化：softmax 注意力和线性注意力在长度 32 的同一个召回任务上、用相同的训练预算和随机种子训练。"},
    "ch11.alt.sweep": {"en": "The benchmark's recall sweep, one panel per setting (length 128; widths 32 and 64 with 8 pairs, width 32 with 16 pairs): each mechanism a point at the bytes of state it keeps (log scale; mechanisms with the same state are drawn a little apart) and its median recall over the seeds, with bars from the lowest to the highest seed; a dashed line marks chance and a dotted line recall 0.9.",
                      "zh": "基准测试的召回扫描，每组设置一幅（长度 128；宽度 32 和 64 各用 8 个键值对，宽度 32 再用 16 个键值对）：每种机制一个点，横坐标是它保存的状态字节数（对数坐标；状态相同的机制稍稍错开画），纵坐标是各种子召回率的中位数，误差棒从最低的种子到最高的种子；虚线是随机猜测，点线是召回率 0.9。"},
    "ch11.alt.explorer": {"en": "The budget explorer at its starting values: one bar per mechanism, its memory by the selector's formula for the chosen sequence length and kind of memory; green bars fit the budget, grey ones do not, and a red line marks the budget.",
                         "zh": "预算交互控件的初始设置：每种机制一根柱子，表示在所选序列长度和内存类型下按选择器公式算出的内存；绿色的柱子在预算之内，灰色的超出预算，红线标出预算。"},
})
