"""What chapter 08 prints: the sentences, table headers and labels only this chapter's cells use.

The chapter's first code cell imports this module (``import attnkit.text.ch08``). The labels
a library function prints itself stay in that library module (see ``attnkit/text/__init__.py``).
"""

from attnkit.i18n import register

register({
    "ch08.versions": {"en": "torch {torch} · threads: {n}", "zh": "torch {torch} · 线程数：{n}"},
    # section 1
    "ch08.col.n": {"en": "N", "zh": "N"},
    "ch08.col.dense_mib": {"en": "dense scores (MiB)", "zh": "稠密分数矩阵（MiB）"},
    "ch08.col.window_mib": {"en": "window 256 (MiB)", "zh": "窗口 256（MiB）"},
    "ch08.col.ratio": {"en": "dense / window", "zh": "稠密 / 窗口"},
    "ch08.mass": {"en": "{what:<28}: share of each row's weight within |i - j| <= {h}: {share:.3f} "
                        "(the band holds {band:.3f} of the keys)",
                  "zh": "{what}：每行权重落在 |i - j| <= {h} 之内的比例：{share:.3f}（这条带只占全部键的 {band:.3f}）"},
    "ch08.mass.iid": {"en": "independent random tokens", "zh": "相互独立的随机词元"},
    "ch08.mass.smooth": {"en": "a slowly drifting sequence", "zh": "缓慢漂移的序列"},
    # section 2
    "ch08.same_mask": {"en": "window_mask(causal={causal!s:<5}) == sp.sliding_window_mask: {ok}",
                       "zh": "window_mask(causal={causal}) == sp.sliding_window_mask：{ok}"},
    "ch08.col.pattern": {"en": "pattern", "zh": "模式"},
    "ch08.col.row_keys": {"en": "keys of query {i}", "zh": "查询 {i} 的键"},
    "ch08.col.density": {"en": "density", "zh": "密度"},
    "ch08.p.window": {"en": "sliding window, w = {w}", "zh": "滑动窗口，w = {w}"},
    "ch08.p.causal_window": {"en": "causal window, w = {w}", "zh": "因果窗口，w = {w}"},
    "ch08.p.dilated": {"en": "dilated window, w = {w}, δ = {d}", "zh": "空洞窗口，w = {w}，δ = {d}"},
    "ch08.p.strided": {"en": "strided, l = {l}", "zh": "strided，l = {l}"},
    "ch08.p.fixed": {"en": "fixed, l = {l}, c = {c}", "zh": "fixed，l = {l}，c = {c}"},
    "ch08.p.longformer": {"en": "Longformer, w = {w}, global {g}", "zh": "Longformer，w = {w}，全局 {g}"},
    "ch08.p.bigbird": {"en": "BigBird, b = {b}, r = {r}", "zh": "BigBird，b = {b}，r = {r}"},
    "ch08.p.dense": {"en": "dense (full attention)", "zh": "稠密（全注意力）"},
    "ch08.keys_ref": {"en": "{who:<40}: query {i} sees {k} keys",
                      "zh": "{who}：查询 {i} 看到 {k} 个键"},
    "ch08.ref.longformer": {"en": "Longformer, attention_window = {w}", "zh": "Longformer，attention_window = {w}"},
    "ch08.ref.transformers": {"en": "transformers causal, sliding_window = {w}",
                              "zh": "transformers 因果掩码，sliding_window = {w}"},
    "ch08.ref.mistral": {"en": "Mistral reference code, sliding_window = {w}",
                         "zh": "Mistral 参考代码，sliding_window = {w}"},
    # section 3
    "ch08.col.layers": {"en": "layers until the last token sees token 0", "zh": "最后一个词元看到词元 0 所需层数"},
    "ch08.never": {"en": "never", "zh": "永远不能"},
    # section 4
    "ch08.exact": {"en": "{what:<34}: equals attnkit.core: {a}, equals torch SDPA: {b}",
                   "zh": "{what}：与 attnkit.core 一致：{a}，与 torch SDPA 一致：{b}"},
    "ch08.grads": {"en": "gradients of the chunked window equal those of the dense path: {ok}",
                   "zh": "分块滑动窗口的梯度与稠密路径的梯度一致：{ok}"},
    "ch08.module": {"en": "SparseAttention({p}) output shape {shape}, equals the dense path: {ok}",
                    "zh": "SparseAttention({p}) 的输出形状 {shape}，与稠密路径一致：{ok}"},
    "ch08.flex_blocks": {"en": "BlockMask: {kept} of {total} blocks of {b} x {b} computed, {full} of them full "
                               "(every pair kept: mask_mod is not called there)",
                         "zh": "BlockMask：{total} 个 {b} × {b} 分块中要计算 {kept} 个，其中 {full} 个是满块"
                               "（所有配对都保留：在那里不调用 mask_mod）"},
    "ch08.flex_equal": {"en": "flex_attention (eager) equals attnkit's window: {ok}",
                        "zh": "flex_attention（eager 模式）与 attnkit 的滑动窗口一致：{ok}"},
    # section 5
    "ch08.col.pairs": {"en": "pairs", "zh": "配对数"},
    "ch08.col.causal": {"en": "causal", "zh": "因果"},
    "ch08.col.share": {"en": "share of dense (same kind)", "zh": "占同类稠密注意力的比例"},
    "ch08.yes": {"en": "yes", "zh": "是"},
    "ch08.no": {"en": "no", "zh": "否"},
    "ch08.p.dense_causal": {"en": "dense, causal", "zh": "稠密，因果"},
    "ch08.col.gflops": {"en": "GFLOPs", "zh": "GFLOPs"},
    "ch08.col.score_mib": {"en": "scores (MiB)", "zh": "分数（MiB）"},
    "ch08.col.dense_peak": {"en": "dense math path (MiB)", "zh": "稠密数学路径（MiB）"},
    "ch08.col.window_peak": {"en": "sliding window (MiB)", "zh": "滑动窗口（MiB）"},
    "ch08.col.growth": {"en": "window growth", "zh": "窗口增长倍数"},
    "ch08.col.dense_growth": {"en": "dense growth", "zh": "稠密增长倍数"},
    "ch08.col.dense_ms": {"en": "dense math path (ms)", "zh": "稠密数学路径（ms）"},
    "ch08.col.sdpa_ms": {"en": "SDPA + mask (ms)", "zh": "SDPA + 掩码（ms）"},
    "ch08.col.window_ms": {"en": "sliding window (ms)", "zh": "滑动窗口（ms）"},
    "ch08.mem_ratio": {"en": "at N = {n}: the dense math path held {r:.0f}x the sliding window's peak",
                       "zh": "N = {n} 时：稠密数学路径的内存峰值是滑动窗口的 {r:.0f} 倍"},
    "ch08.faster": {"en": "this run, N = {n}: sliding window {w:.1f} ms, masked SDPA {s:.1f} ms: {verdict}",
                    "zh": "本次运行，N = {n}：滑动窗口用时 {w:.1f} ms，带掩码的 SDPA 用时 {s:.1f} ms：{verdict}"},
    "ch08.verdict.window": {"en": "the window is faster ({r:.1f}x)",
                            "zh": "滑动窗口更快（SDPA 的用时是它的 {r:.1f} 倍）"},
    "ch08.verdict.sdpa": {"en": "masked SDPA is faster ({r:.1f}x)",
                          "zh": "带掩码的 SDPA 更快（滑动窗口的用时是它的 {r:.1f} 倍）"},
    # section 6
    "ch08.col.kept": {"en": "pairs kept", "zh": "保留的配对比例"},
    "ch08.col.accuracy": {"en": "accuracy", "zh": "准确率"},
    "ch08.col.all_pairs": {"en": "layers until every pair connects", "zh": "连通所有词元对所需层数"},
    # section 7
    "ch08.roll_equal": {"en": "{n} tokens decoded one by one through a rolling buffer of {slots} slots: equals SDPA "
                              "with the causal window mask {a}; equals sp.sliding_window_attention {b}",
                        "zh": "通过 {slots} 个槽位的滚动缓冲区逐个解码 {n} 个词元：与带因果窗口掩码的 SDPA 一致 {a}；"
                              "与 sp.sliding_window_attention 一致 {b}"},
    "ch08.roll_slots": {"en": "after the last token, slots 0..{last} hold positions {pos}",
                        "zh": "最后一个词元之后，槽位 0..{last} 存的位置依次是 {pos}"},
    "ch08.col.kv_grown": {"en": "KVCache, grown (MiB)", "zh": "不断增长的 KVCache（MiB）"},
    "ch08.col.kv_rolling": {"en": "RollingKVCache(256, sink=4) (MiB)", "zh": "RollingKVCache(256, sink=4)（MiB）"},
    "ch08.sink_weight": {"en": "full causal attention: mean weight on token 0 of the queries past the first {w}: {share}",
                         "zh": "全因果注意力：前 {w} 个之后的查询放在词元 0 上的平均权重：{share}"},
    "ch08.sink_row": {"en": "window {w} + {s} sink tokens ({slots} slots): equals its mask {exact}; "
                            "mean |difference| from full attention: {diff}",
                      "zh": "窗口 {w} + {s} 个汇聚点词元（{slots} 个槽位）：与它的掩码一致 {exact}；"
                            "与全注意力的平均绝对差：{diff}"},
    "ch08.col.design": {"en": "model", "zh": "模型"},
    "ch08.col.local_global": {"en": "local : global layers", "zh": "局部层 : 全局层"},
    "ch08.col.window": {"en": "window", "zh": "窗口"},
    "ch08.col.context": {"en": "context N", "zh": "上下文 N"},
    "ch08.col.kv_share": {"en": "KV cache / all-global cache", "zh": "KV 缓存 / 全部为全局层时的缓存"},
    "ch08.mistral_span": {"en": "Mistral 7B: {layers} layers x window {w} = {span:,} positions of reach",
                          "zh": "Mistral 7B：{layers} 层 × 窗口 {w} = {span:,} 个位置的视野"},
    # section 8
    "ch08.local_attention": {"en": "local-attention, window_size = {w}, causal", "zh": "local-attention，window_size = {w}，因果"},
    "ch08.keys_range": {"en": "{who:<40}: queries {a}..{b} see {ks} keys", "zh": "{who}：查询 {a}..{b} 分别看到 {ks} 个键"},
    "ch08.off_by_one": {"en": "band i - j <= w keeps {a} keys, i - j < w keeps {b}; largest output difference {d:.3f}",
                        "zh": "条件 i - j <= w 保留 {a} 个键，i - j < w 保留 {b} 个；输出的最大差异 {d:.3f}"},
    "ch08.pad_global": {"en": "global token's output changes with the padding's contents: without key_mask {a}, with key_mask {b}",
                        "zh": "全局词元的输出是否随填充位置的内容而变：不传 key_mask 时 {a}，传入 key_mask 时 {b}"},
    "ch08.bigbird_short": {"en": "BigBird b = {b}, r = {r}: N = {n:>4} ({nb:>2} blocks): density {dens:.3f}, full attention in HF: {full}",
                           "zh": "BigBird b = {b}，r = {r}：N = {n}（{nb} 个块）：密度 {dens:.3f}，HF 是否改用全注意力：{full}"},
    "ch08.bigbird_limit": {"en": "HF BigBird uses full attention up to (5 + 2r) b = {m} tokens",
                           "zh": "HF BigBird 在 (5 + 2r) b = {m} 个词元以内使用全注意力"},
})

# alt text of the chapter's figures (tools/build.py stores it with each image; the website shows it)
register({
    "ch08.alt.patterns": {"en": "Six sparse attention masks on 32 tokens: sliding window, dilated window, strided, fixed, Longformer with global tokens 0 and 16, and BigBird with a random block. Rows are queries i, columns keys j; a legend tells attend from masked.",
                         "zh": "32 个词元上的六种稀疏注意力掩码：滑动窗口、空洞窗口、跨步、固定模式、以 0 和 16 为全局词元的 Longformer，以及带一个随机块的 BigBird。行是查询 i，列是键 j；图例区分可关注与被屏蔽。"},
    "ch08.alt.chunk": {"en": "The band of a causal sliding window of 12 keys on 64 tokens, with an outlined rectangle: queries 32 to 47 (one chunk) against keys 21 to 47, the only keys they can see. Inside the rectangle, the pairs outside the band are masked.",
                       "zh": "64 个词元上、12 个键的因果滑动窗口的带状掩码，上面框出一个矩形：查询 32 到 47（一段）对键 21 到 47，即它们唯一能看到的那些键。矩形里落在带外的配对被屏蔽。"},
    "ch08.alt.explorer": {"en": "The sparse attention explorer at its starting values: left, the chosen mask and its density; right, the fraction of the tokens that reach the last token after 1 to 12 layers, with a dashed line where token 0 is reached.",
                         "zh": "稀疏注意力交互控件的初始设置：左图是所选的掩码及其密度；右图是经过 1 到 12 层后能传到最后一个词元的词元比例，虚线标出词元 0 被传到的层数。"},
})
