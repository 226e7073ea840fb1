"""Chapter 05's exercises: the checkers, their cases and their reference solutions.

Chapter 05 exercises: repeat_kv by hand, the size of a KV cache, one decode step with a cache, a
question on what GQA speeds up, and a stretch exercise: how many sequences fit beside the weights."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, check_answer, describe, drawn, run_checks
from attnkit.i18n import register, t

register({
    "ch05.ex1.title": {"en": "Exercise 1 · repeat_kv with the heads on axis 2",
                       "zh": "练习 1 · 头在第 2 维时的 repeat_kv"},
    "ch05.ex1.nudge": {"en": "Which axis holds the heads here, and which the tokens? Then look at the order of the heads in your output: which kv head should query head i use?",
        "zh": "这里哪一维是头，哪一维是词元？再看看你输出中各个头的顺序：第 i 个查询头应当用哪一个键值头？"},
    "ch05.ex1.stronger": {"en": "The heads are axis 2 of (B, S, n_g, d). Query head i uses kv head i // n_rep, so each kv head is repeated n_rep times in a row (0,0,1,1) along that axis, not the whole stack repeated (0,1,0,1).",
        "zh": "在 (B, S, n_g, d) 中，头是第 2 维。第 i 个查询头用第 i // n_rep 个键值头，所以要沿这一维把每个键值头连续重复 n_rep 次 (0, 0, 1, 1)，而不是把整组头重复 (0, 1, 0, 1)。"},
    "ch05.ex1.formula": {"en": "Head i of the result (axis 2) must be kv head i // n_rep: repeat each kv head n_rep times in a row (0,0,1,1). torch.repeat_interleave(x, n_rep, dim=2), or x[:, :, :, None].expand(B, S, n_g, n_rep, d).reshape(B, S, n_g * n_rep, d).",
                      "zh": "结果中（第 2 维）的第 i 个头必须是第 i // n_rep 个键值头：把每个键值头连续重复 n_rep 次 (0, 0, 1, 1)。可以用 torch.repeat_interleave(x, n_rep, dim=2)，或 x[:, :, :, None].expand(B, S, n_g, n_rep, d).reshape(B, S, n_g * n_rep, d)。"},
    "ch05.ex2.title": {"en": "Exercise 2 · the size of a KV cache", "zh": "练习 2 · KV 缓存的大小"},
    "ch05.ex2.nudge": {"en": "What does the cache store for one token in one layer? Count every factor: is something stored twice?",
        "zh": "对一层中的一个词元，缓存里存了什么？把每个因子都数上：有没有哪样东西要存两份？"},
    "ch05.ex2.stronger": {"en": "Per layer, per kv head, per token and per sequence, the cache holds a key and a value vector of head_dim numbers each; multiply by the bytes per number.",
        "zh": "每一层、每个键值头、每个词元、每条序列，缓存都存一个键向量和一个值向量，各有 head_dim 个数；再乘以每个数的字节数。"},
    "ch05.ex2.formula": {"en": "Every layer stores a key AND a value vector of head_dim numbers per kv head, per token, per sequence in the batch: 2 × layers × kv heads × head_dim × tokens × batch × bytes per number.",
                      "zh": "每一层、每个词元、批次中的每条序列，每个键值头都要存一个键向量和一个值向量，各有 head_dim 个数：2 × 层数 × 键值头数 × head_dim × 词元数 × 批次大小 × 每个数的字节数。"},
    "ch05.ex3.title": {"en": "Exercise 3 · one decode step with a cache", "zh": "练习 3 · 带缓存的一步解码"},
    "ch05.ex3.nudge": {"en": "Where do the new queries sit in the sequence: at the start or at the end? Which keys may the first new query see?",
        "zh": "新的查询在序列中的什么位置：开头还是末尾？第一个新查询可以看到哪些键？"},
    "ch05.ex3.stronger": {"en": "Append the new keys and values to the caches first. The L new queries are the last L of S positions, so the causal mask is aligned to the bottom-right corner, not the top-left one that is_causal=True gives.",
        "zh": "先把新的键和值拼接到缓存后面。L 个新查询是 S 个位置中最后的 L 个，所以因果掩码要对齐到右下角，而不是 is_causal=True 给出的左上角。"},
    "ch05.ex3.formula": {"en": "Append k_new and v_new to the caches along dim -2 first, then attend over all S = past + L keys. The L new queries are the LAST L positions: query i may see key j when j <= (S - L) + i. is_causal=True aligns the mask to the top-left corner, which is wrong here.",
                      "zh": "先把 k_new、v_new 沿倒数第 2 维拼接到缓存后面，再对全部 S = past + L 个键做注意力。L 个新查询是序列中最后的 L 个位置：当 j <= (S - L) + i 时查询 i 才能看到键 j。is_causal=True 把掩码对齐到左上角，在这里是错的。"},
    "ch05.case.order": {"en": "2 kv heads, n_rep = 2 (order matters)", "zh": "2 个键值头，n_rep = 2（顺序很重要）"},
    "ch05.case.mha": {"en": "n_rep = 1 (MHA: unchanged)", "zh": "n_rep = 1（MHA：保持不变）"},
    "ch05.case.mqa": {"en": "1 kv head, n_rep = 8 (MQA)", "zh": "1 个键值头，n_rep = 8（MQA）"},
    "ch05.case.batched": {"en": "batch 2, 3 kv heads, n_rep = 3", "zh": "批次大小 2，3 个键值头，n_rep = 3"},
    "ch05.case.llama": {"en": "32 layers, 32 kv heads of 128, 4096 tokens, bf16", "zh": "32 层，32 个 128 维键值头，4096 个词元，bf16"},
    "ch05.case.gqa": {"en": "32 layers, 8 kv heads of 128, 8192 tokens, bf16", "zh": "32 层，8 个 128 维键值头，8192 个词元，bf16"},
    "ch05.case.batch": {"en": "batch of 4, 1 kv head, float32", "zh": "批次大小 4，1 个键值头，float32"},
    "ch05.case.step": {"en": "1 new token after 5 cached", "zh": "已缓存 5 个词元，再来 1 个新词元"},
    "ch05.case.empty": {"en": "1 new token, empty cache", "zh": "缓存为空，来 1 个新词元"},
    "ch05.case.chunk": {"en": "3 new tokens after 4 cached", "zh": "已缓存 4 个词元，再来 3 个新词元"},
    "ch05.case.heads": {"en": "batch 2, 3 heads, 1 new token after 6 cached", "zh": "批次大小 2，3 个头，已缓存 6 个词元，再来 1 个新词元"},
    # the question: what GQA speeds up at batch 1 and a short context
    "ch05.q1.title": {"en": "Question 1 · what GQA buys at batch 1", "zh": "问题 1 · 批次为 1 时 GQA 能带来什么"},
    "ch05.q1.nudge": {"en": "A memory-bound step takes as long as reading its bytes takes. Write down, in bytes, everything one decode step reads with MHA and with GQA-8, and divide.",
                      "zh": "受限于内存带宽的一步解码，耗时就是读完它要读的字节所需的时间。分别写出 MHA 和 GQA-8 一步解码要读的全部字节数，再相除。"},
    "ch05.q1.why": {"en": "A step reads every weight and the whole cache once. 7B parameters in bf16 are 14 GB. At 1,000 tokens the MHA cache is 2 × 32 layers × 32 kv heads × 128 × 1,000 × 2 B = 0.52 GB; GQA-8 cuts it to 0.13 GB. So a step reads 14.52 GB against 14.13 GB: at most 14.52 / 14.13 = 1.03 times as fast, about 3%. GQA pays off where the caches outweigh the weights: long contexts and large batches (the explorer shows how many more sequences fit).",
                    "zh": "每一步都要把全部权重和整个缓存各读一遍。70 亿个参数在 bf16 下是 14 GB。1,000 个词元时，MHA 的缓存是 2 × 32 层 × 32 个键值头 × 128 × 1,000 × 2 B = 0.52 GB；GQA-8 把它降到 0.13 GB。所以每步读取量是 14.52 GB 对 14.13 GB：最多快到 14.52 / 14.13 = 1.03 倍，约 3%。只有当缓存比权重还大时，GQA 才显出好处：长上下文和大批次（交互控件显示能多放下多少条序列）。"},
    # the stretch exercise: sequences beside the weights
    "ch05.ex4.title": {"en": "Exercise 4 (stretch) · how many sequences fit beside the weights",
                       "zh": "练习 4（挑战题）· 权重旁边还能放下多少条序列"},
    "ch05.ex4.nudge": {"en": "What is left of the memory once the weights are loaded, and how big is the cache of one whole sequence?",
                       "zh": "装进权重之后还剩多少内存？一条完整序列的缓存有多大？"},
    "ch05.ex4.stronger": {"en": "Free memory = memory − parameters × bytes. One sequence's cache = 2 (K and V) × layers × kv heads × head_dim × seq_len × bytes. Only whole sequences count, and none when the weights alone do not fit.",
                          "zh": "剩余内存 = 总内存 − 参数量 × 每个数的字节数。一条序列的缓存 = 2（键和值）× 层数 × 键值头数 × head_dim × seq_len × 每个数的字节数。只算完整的序列；光是权重就放不下时，答案是 0。"},
    "ch05.ex4.formula": {"en": "max(memory_bytes − num_params × bytes_per_element, 0) // (2 × num_layers × num_kv_heads × head_dim × seq_len × bytes_per_element), an int.",
                         "zh": "max(memory_bytes − num_params × bytes_per_element, 0) // (2 × num_layers × num_kv_heads × head_dim × seq_len × bytes_per_element)，结果是整数。"},
    "ch05.ex4.why_int": {"en": "the answer is a whole number of sequences (an int), got {got}",
                         "zh": "答案应当是整数条序列（int），得到的是 {got}"},
    "ch05.case.fit_mha": {"en": "80 GiB, 7B fp16; 32 layers, 32 kv heads of 128 (MHA); 32k tokens",
                          "zh": "80 GiB，7B、fp16；32 层，32 个 128 维键值头（MHA）；32k 词元"},
    "ch05.case.fit_gqa": {"en": "80 GiB, 7B fp16; 32 layers, 8 kv heads of 128 (GQA-8); 32k tokens",
                          "zh": "80 GiB，7B、fp16；32 层，8 个 128 维键值头（GQA-8）；32k 词元"},
    "ch05.case.fit_mqa": {"en": "80 GiB, 7B fp16; 32 layers, 1 kv head of 128 (MQA); 32k tokens",
                          "zh": "80 GiB，7B、fp16；32 层，1 个 128 维键值头（MQA）；32k 词元"},
    "ch05.case.fit_none": {"en": "80 GiB, 70B fp16 (140 GB of weights); 80 layers, 8 kv heads; 4k tokens",
                           "zh": "80 GiB，70B、fp16（权重 140 GB）；80 层，8 个键值头；4k 词元"},
    "ch05.case.fit_fp8": {"en": "24 GiB, 7B fp8; 32 layers, 8 kv heads of 128; 4k tokens",
                          "zh": "24 GiB，7B、fp8；32 层，8 个 128 维键值头；4k 词元"},
})


def _randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- reference solutions (kept out of the notebooks) ----

def solution_repeat_kv(x, n_rep):
    """The heads on axis 2: (B, S, n_g, d) -> (B, S, n_g * n_rep, d), head i = kv head i // n_rep."""
    B, S, Hkv, D = x.shape
    return x.unsqueeze(3).expand(B, S, Hkv, n_rep, D).flatten(2, 3)  # (B, S, H, D)


def solution_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element):
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_element


def solution_max_sequences(memory_bytes, num_params, bytes_per_element, num_layers, num_kv_heads, head_dim,
                           seq_len):
    free = max(memory_bytes - num_params * bytes_per_element, 0)  # what the weights leave
    per_sequence = 2 * num_layers * num_kv_heads * head_dim * seq_len * bytes_per_element  # K and V
    return free // per_sequence  # whole sequences only


def solution_decode_step(q_new, k_new, v_new, k_cache, v_cache):
    k = torch.cat([k_cache, k_new], dim=-2)  # (B, H, S, D), S = past + L
    v = torch.cat([v_cache, v_new], dim=-2)
    L, S = q_new.shape[-2], k.shape[-2]
    scores = q_new @ k.transpose(-2, -1) / math.sqrt(q_new.shape[-1])  # (B, H, L, S)
    allowed = torch.arange(S)[None, :] <= (S - L) + torch.arange(L)[:, None]  # end-aligned causal
    w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return w @ v, k, v



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch05.mistake.ex1.tiled': {"en": 'you repeated the whole group of KV heads (kv0, kv1, kv0, kv1): each KV head must serve n_rep neighbouring query heads (kv0, kv0, kv1, kv1).', "zh": '你把整组 KV 头重复了 (kv0, kv1, kv0, kv1)：每个 KV 头要服务 n_rep 个相邻的查询头 (kv0, kv0, kv1, kv1)。'},
    'ch05.mistake.ex1.tokens': {"en": 'you repeated along axis 1, the tokens: in (B, S, n_g, d) the heads are axis 2 (section 3 had them on axis 1).', "zh": '你沿第 1 维（词元）做了重复：在 (B, S, n_g, d) 中，头是第 2 维（第 3 节里头在第 1 维）。'},
    'ch05.mistake.ex2.no_two': {"en": 'you counted one cache; K and V are cached both: a factor of 2.', "zh": '你只算了一份缓存；K 和 V 都要缓存：乘以 2。'},
    'ch05.mistake.ex2.no_layers': {"en": 'every layer keeps its own K and V: multiply by num_layers.', "zh": '每一层都有自己的 K 和 V：要乘以 num_layers。'},
    'ch05.mistake.ex3.not_causal': {"en": 'your new queries see every key, also the new tokens after them: mask key j for query i when j > past + i.', "zh": '你的新查询看到了所有键，包括它们之后的新 token：当 j > past + i 时要屏蔽查询 i 对键 j 的关注。'},
    'ch05.mistake.ex3.top_left': {"en": 'your causal mask is aligned to the top-left: query i of the new chunk is position past + i, so it sees keys j <= past + i.', "zh": '你的因果掩码对齐到了左上角：新块中的查询 i 位于位置 past + i，所以它能看到 j <= past + i 的键。'},
    'ch05.mistake.ex4.no_weights': {"en": 'the weights take their share of memory first: subtract num_params × bytes_per_element.', "zh": '权重要先占用一部分内存：先减去 num_params × bytes_per_element。'},
    'ch05.mistake.ex4.no_two': {"en": 'each sequence keeps K and V: a factor of 2 per token.', "zh": '每个序列都要缓存 K 和 V：每个 token 要乘以 2。'},
})

def _decode(q, k_new, v_new, k_cache, v_cache, causal=True, end_aligned=True):
    k, v = torch.cat([k_cache, k_new], dim=-2), torch.cat([v_cache, v_new], dim=-2)
    L, S = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        allowed = torch.arange(S)[None, :] <= (S - L if end_aligned else 0) + torch.arange(L)[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v, k, v


MISTAKES = {
    "ch05.ex1": (
        (lambda x, n_rep: x.repeat(1, 1, n_rep, 1), lambda: t('ch05.mistake.ex1.tiled')),
        (lambda x, n_rep: torch.repeat_interleave(x, n_rep, dim=1), lambda: t('ch05.mistake.ex1.tokens')),
    ),
    "ch05.ex2": (
        (lambda L, H, D, S, B, b: L * H * D * S * B * b, lambda: t('ch05.mistake.ex2.no_two')),
        (lambda L, H, D, S, B, b: 2 * H * D * S * B * b, lambda: t('ch05.mistake.ex2.no_layers')),
    ),
    "ch05.ex3": (
        (lambda q, k, v, kc, vc: _decode(q, k, v, kc, vc, causal=False), lambda: t('ch05.mistake.ex3.not_causal')),
        (lambda q, k, v, kc, vc: _decode(q, k, v, kc, vc, causal=True, end_aligned=False), lambda: t('ch05.mistake.ex3.top_left')),
    ),
    "ch05.ex4": (
        (lambda M, P, b, L, H, D, S: M // (2 * L * H * D * S * b), lambda: t('ch05.mistake.ex4.no_weights')),
        (lambda M, P, b, L, H, D, S: max(M - P * b, 0) // (L * H * D * S * b), lambda: t('ch05.mistake.ex4.no_two')),
    ),
}


# ---- checkers ----

def check_repeat_kv(fn) -> bool:
    cases = [Case((_randn(1, 1, 3, 2, 2), 2), label=t("ch05.case.order")),  # (B, S, n_g, d): heads on axis 2
             Case((_randn(2, 2, 5, 4, 8), 1), label=t("ch05.case.mha")),
             Case((_randn(3, 1, 4, 1, 4), 8), label=t("ch05.case.mqa")),
             Case((_randn(4, 2, 3, 3, 4), 3), label=t("ch05.case.batched"))]
    return run_checks(fn, solution_repeat_kv, cases, t("ch05.ex1.title"),
                      hints=[t("ch05.ex1.nudge"), t("ch05.ex1.stronger"), t("ch05.ex1.formula")],
                      exercise="ch05.ex1", mistakes=MISTAKES["ch05.ex1"],
                      forbid=("attnkit.gqa.grouped.repeat_kv", "attnkit.gqa.grouped.grouped_query_attention"))


def check_kv_cache_bytes(fn) -> bool:
    cases = [Case((32, 32, 128, 4096, 1, 2), label=t("ch05.case.llama")),
             Case((32, 8, 128, 8192, 1, 2), label=t("ch05.case.gqa")),
             Case((24, 1, 64, 2048, 4, 4), label=t("ch05.case.batch"))]
    return run_checks(fn, solution_kv_cache_bytes, cases, t("ch05.ex2.title"),
                      hints=[t("ch05.ex2.nudge"), t("ch05.ex2.stronger"), t("ch05.ex2.formula")],
                      exercise="ch05.ex2",
                      draw=lambda seed: drawn(seed, lambda r: Case(
                          (r.choice((12, 24, 32, 40, 80)), r.choice((1, 2, 4, 8, 16)), r.choice((64, 96, 128)),
                           r.choice((512, 1000, 4096, 6000)), r.randint(1, 8), r.choice((1, 2, 4))),
                          label=t("ch05.case.batch"))), mistakes=MISTAKES["ch05.ex2"],
                      forbid=("attnkit.gqa.budget.kv_cache_bytes", "attnkit.gqa.budget.kv_cache_bytes_per_token",
                              "attnkit.gqa.budget.kv_cache_elements_per_token", "attnkit.gqa.budget.compare_cache_sizes"))


def _step_case(seed, B, H, L, past, D=4):
    return (_randn(seed, B, H, L, D), _randn(seed + 1, B, H, L, D), _randn(seed + 2, B, H, L, D),
            _randn(seed + 3, B, H, past, D), _randn(seed + 4, B, H, past, D))


def check_decode_step(fn) -> bool:
    cases = [Case(_step_case(10, 1, 1, 1, 5), label=t("ch05.case.step")),
             Case(_step_case(20, 1, 1, 1, 0), label=t("ch05.case.empty")),
             Case(_step_case(30, 1, 2, 3, 4), label=t("ch05.case.chunk")),
             Case(_step_case(40, 2, 3, 1, 6), label=t("ch05.case.heads"))]
    return run_checks(fn, solution_decode_step, cases, t("ch05.ex3.title"),
                      hints=[t("ch05.ex3.nudge"), t("ch05.ex3.stronger"), t("ch05.ex3.formula")],
                      exercise="ch05.ex3", mistakes=MISTAKES["ch05.ex3"],
                      forbid=("torch.nn.functional.scaled_dot_product_attention", "attnkit.gqa.grouped.grouped_query_attention",
                              "attnkit.gqa.cache.KVCache", "attnkit.gqa.grouped.GroupedQueryAttention"))


Q1_SPEEDUP = (14e9 + 2 * 32 * 32 * 128 * 1000 * 2) / (14e9 + 2 * 32 * 8 * 128 * 1000 * 2)  # bytes MHA / GQA-8: 1.028


def check_q1(answer) -> bool:
    """7B in bf16 (14 GB of weights), one sequence of 1,000 tokens: how many times faster with GQA-8, at most?"""
    return check_answer(answer, Q1_SPEEDUP, exercise="ch05.q1", title=t("ch05.q1.title"), explanation=t("ch05.q1.why"),
                        nudge=t("ch05.q1.nudge"), tol=0.005)


GiB = 2**30


def check_max_sequences(fn) -> bool:
    cases = [Case((80 * GiB, 7 * 10**9, 2, 32, 32, 128, 32768), label=t("ch05.case.fit_mha")),
             Case((80 * GiB, 7 * 10**9, 2, 32, 8, 128, 32768), label=t("ch05.case.fit_gqa")),
             Case((80 * GiB, 7 * 10**9, 2, 32, 1, 128, 32768), label=t("ch05.case.fit_mqa")),
             Case((80 * GiB, 70 * 10**9, 2, 80, 8, 128, 4096), label=t("ch05.case.fit_none")),
             Case((24 * GiB, 7 * 10**9, 1, 32, 8, 128, 4096), label=t("ch05.case.fit_fp8"))]
    return run_checks(fn, solution_max_sequences, cases, t("ch05.ex4.title"),
                      hints=[t("ch05.ex4.nudge"), t("ch05.ex4.stronger"), t("ch05.ex4.formula")],
                      exercise="ch05.ex4",
                      draw=lambda seed: drawn(seed, lambda r: Case(
                          (r.choice((16, 24, 40, 80)) * GiB, r.randint(1, 13) * 10**9, r.choice((1, 2)), r.choice((24, 32, 40)),
                           r.choice((1, 4, 8)), 128, r.choice((2048, 4096, 8192))), label=t("ch05.case.fit_gqa"))), mistakes=MISTAKES["ch05.ex4"], compare=_same_int,
                      forbid=("attnkit.gqa.budget.max_batch_size", "attnkit.gqa.budget.memory_budget", "attnkit.gqa.budget.kv_cache_bytes",
                              "attnkit.gqa.budget.kv_cache_bytes_per_token", "attnkit.gqa.budget.weights_bytes"))


def _same_int(got, expected) -> str | None:
    """None for a whole number of sequences equal to the expected one (an int, or an integral
    float or one-element tensor), else why not."""
    value = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        return t("ch05.ex4.why_int", got=describe(got))
    return None if int(value) == expected else t("ex.why_value", got=describe(got), exp=describe(expected))
