"""Chapter 05 exercises: repeat_kv by hand, the size of a KV cache, one decode step with a cache."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, run_checks
from attnkit.i18n import register, t

register({
    "ch05.ex1.title": {"en": "Exercise 1 · repeat_kv", "zh": "练习 1 · repeat_kv"},
    "ch05.ex1.nudge": {"en": "Look at the order of the heads in your output: which kv head should query head i use?",
        "zh": "看看你输出中各个头的顺序：第 i 个查询头应当用哪一个键值头？"},
    "ch05.ex1.stronger": {"en": "Query head i uses kv head i // n_rep, so each kv head is repeated n_rep times in a row (0,0,1,1), not the whole stack repeated (0,1,0,1).",
        "zh": "第 i 个查询头用第 i // n_rep 个键值头，所以每个键值头要连续重复 n_rep 次（0,0,1,1），而不是把整组头重复（0,1,0,1）。"},
    "ch05.ex1.formula": {"en": "Head i of the result must be kv head i // n_rep: repeat each kv head n_rep times in a row (0,0,1,1), not the whole stack (0,1,0,1). torch.repeat_interleave(x, n_rep, dim=1), or x[:, :, None].expand(...).reshape(...).",
                      "zh": "结果中的第 i 个头必须是第 i // n_rep 个键值头：把每个键值头连续重复 n_rep 次（0,0,1,1），而不是把整组头重复（0,1,0,1）。可以用 torch.repeat_interleave(x, n_rep, dim=1)，或 x[:, :, None].expand(...).reshape(...)。"},
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
})


def _randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- reference solutions (kept out of the notebooks) ----

def solution_repeat_kv(x, n_rep):
    B, Hkv, S, D = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, S, D).reshape(B, Hkv * n_rep, S, D)  # (B, H, S, D)


def solution_kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element):
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_element


def solution_decode_step(q_new, k_new, v_new, k_cache, v_cache):
    k = torch.cat([k_cache, k_new], dim=-2)  # (B, H, S, D), S = past + L
    v = torch.cat([v_cache, v_new], dim=-2)
    L, S = q_new.shape[-2], k.shape[-2]
    scores = q_new @ k.transpose(-2, -1) / math.sqrt(q_new.shape[-1])  # (B, H, L, S)
    allowed = torch.arange(S)[None, :] <= (S - L) + torch.arange(L)[:, None]  # end-aligned causal
    w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return w @ v, k, v


# ---- checkers ----

def check_repeat_kv(fn) -> bool:
    cases = [Case((_randn(1, 1, 2, 3, 2), 2), label=t("ch05.case.order")),
             Case((_randn(2, 2, 4, 5, 8), 1), label=t("ch05.case.mha")),
             Case((_randn(3, 1, 1, 4, 4), 8), label=t("ch05.case.mqa")),
             Case((_randn(4, 2, 3, 3, 4), 3), label=t("ch05.case.batched"))]
    return run_checks(fn, solution_repeat_kv, cases, t("ch05.ex1.title"),
                      hints=[t("ch05.ex1.nudge"), t("ch05.ex1.stronger"), t("ch05.ex1.formula")],
                      exercise="ch05.ex1",
                      forbid=("attnkit.gqa.repeat_kv",))


def check_kv_cache_bytes(fn) -> bool:
    cases = [Case((32, 32, 128, 4096, 1, 2), label=t("ch05.case.llama")),
             Case((32, 8, 128, 8192, 1, 2), label=t("ch05.case.gqa")),
             Case((24, 1, 64, 2048, 4, 4), label=t("ch05.case.batch"))]
    return run_checks(fn, solution_kv_cache_bytes, cases, t("ch05.ex2.title"),
                      hints=[t("ch05.ex2.nudge"), t("ch05.ex2.stronger"), t("ch05.ex2.formula")],
                      exercise="ch05.ex2",
                      forbid=("attnkit.gqa.kv_cache_bytes", "attnkit.gqa.kv_cache_bytes_per_token"))


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
                      exercise="ch05.ex3")
