"""Chapter 04's exercises: the checkers, their cases and their reference solutions.

Chapter 04 exercises: split heads, merge heads, an MHA forward from given weights, counting an
MHA layer's parameters, a question (what the number of heads changes), and a stretch exercise:
``nn.MultiheadAttention``'s forward from its packed weights, with its mask conventions."""

from __future__ import annotations

import math

import torch

from attnkit.exercises import Case, check_answer, drawn, run_checks
from attnkit.i18n import register, t

register({
    "ch04.ex1.title": {"en": "Exercise 1 · split heads", "zh": "练习 1 · 拆分头"},
    "ch04.ex1.nudge": {"en": "Which features belong to head 0: the first E // H features of each position, or something else? Check that each position's features stay together.",
        "zh": "头 0 应当分到哪些特征：每个位置的前 E // H 个特征，还是别的？检查每个位置的特征有没有被打乱。"},
    "ch04.ex1.stronger": {"en": "First cut the last dim into (H, E // H) for every position, then swap the head and position dims. A single view to (B, H, L, E // H) has the right shape but the wrong content.",
        "zh": "先把每个位置的最后一维切成 (H, E // H)，再交换头和位置这两维。直接 view 成 (B, H, L, E // H) 形状虽然对，内容却是错的。"},
    "ch04.ex1.formula": {
        "en": "x.view(B, L, H, E // H) gives every head its own block of E // H consecutive features; "
              "then .transpose(1, 2) puts the head dim before the positions. "
              "x.view(B, H, L, E // H) directly has the right shape but mixes positions and features.",
        "zh": "x.view(B, L, H, E // H) 让每个头分到连续的 E // H 个特征；再用 .transpose(1, 2) 把头的维度"
              "放到位置之前。直接 x.view(B, H, L, E // H) 形状虽然对，却把位置和特征混在了一起。"},
    "ch04.ex2.title": {"en": "Exercise 2 · merge heads", "zh": "练习 2 · 合并头"},
    "ch04.ex2.nudge": {"en": "Merging heads is the inverse of splitting them: do the steps of exercise 1 in reverse order. Does your view raise an error?",
        "zh": "合并头就是拆分头的逆操作：把练习 1 的步骤倒过来做。你的 view 报错了吗？"},
    "ch04.ex2.stronger": {"en": "Put the positions back before the heads (transpose), then flatten (H, Dh) into H * Dh; the transposed tensor is not contiguous, so view is not enough.",
        "zh": "先把位置这一维换回到头之前（转置），再把 (H, Dh) 展平成 H * Dh；转置后的张量在内存中不连续，所以 view 不行。"},
    "ch04.ex2.formula": {
        "en": "Undo the split: x.transpose(1, 2) gives (B, L, H, Dh), then .reshape(B, L, H * Dh) "
              "(reshape, not view: the transposed tensor is not contiguous).",
        "zh": "把拆分反过来：x.transpose(1, 2) 得到 (B, L, H, Dh)，再 .reshape(B, L, H * Dh)"
              "（用 reshape 而不是 view：转置后的张量在内存中不连续）。"},
    "ch04.ex3.title": {"en": "Exercise 3 · multi-head attention from given weights",
                       "zh": "练习 3 · 用给定权重实现多头注意力"},
    "ch04.ex3.nudge": {"en": "Which dimension do you divide by under the square root: the full width E or one head's width? And did you apply the output projection at the end?",
        "zh": "根号下应当除以哪个维度：完整宽度 E，还是一个头的宽度？最后有没有乘上输出投影？"},
    "ch04.ex3.stronger": {"en": "Project x to q, k, v (x @ W.T), split each into heads, run scaled dot-product attention per head with the head dimension E // H, merge the heads and project with w_o.",
        "zh": "把 x 投影成 q、k、v（x @ W.T），各自拆分成多个头，每个头用头维度 E // H 做缩放点积注意力，合并各个头，再用 w_o 投影。"},
    "ch04.ex3.formula": {
        "en": "q = x @ w_q.T (likewise k, v); split each into (B, H, L, Dh); "
              "softmax(q @ k.transpose(-2, -1) / sqrt(Dh)) @ v — Dh = E // H, not E; merge the heads; "
              "finally the output projection @ w_o.T.",
        "zh": "q = x @ w_q.T（k、v 同理）；各自拆分成 (B, H, L, Dh)；softmax(q @ k.transpose(-2, -1) / sqrt(Dh)) @ v"
              "——这里是 Dh = E // H，不是 E；合并各个头；最后乘上输出投影 @ w_o.T。"},
    "ch04.ex4.title": {"en": "Exercise 4 · count the parameters", "zh": "练习 4 · 数一数参数量"},
    "ch04.ex4.nudge": {"en": "Does the number of heads change the size of the weight matrices? Count the projections, and what bias adds.",
        "zh": "头数会改变权重矩阵的大小吗？数一数有几个投影，以及偏置会多出多少参数。"},
    "ch04.ex4.stronger": {"en": "There are four projections (Q, K, V and the output), each an E × E matrix whatever the number of heads; with bias, each also has a vector of length E.",
        "zh": "一共有四个投影（Q、K、V 和输出），不论头数多少，每个都是 E × E 的矩阵；有偏置时，每个投影还有一个长度为 E 的向量。"},
    "ch04.ex4.formula": {
        "en": "Four E × E weight matrices (W_Q, W_K, W_V, W_O) whatever the number of heads — the heads "
              "share them out — plus, with bias, four bias vectors of length E.",
        "zh": "不论有多少个头，都是四个 E × E 的权重矩阵（W_Q、W_K、W_V、W_O）——各个头只是把它们分着用；"
              "有偏置时再加上四个长度为 E 的偏置向量。"},
    # question
    "ch04.q1.title": {"en": "Question 1 · twice as many heads, the same width",
                      "zh": "问题 1 · 头数翻倍，宽度不变"},
    "ch04.q1.a": {"en": "the parameters double", "zh": "参数量翻倍"},
    "ch04.q1.b": {"en": "the FLOPs of the scores QKᵀ double", "zh": "分数 QKᵀ 的 FLOPs 翻倍"},
    "ch04.q1.c": {"en": "neither parameters nor FLOPs; the attention weights held in memory double",
                  "zh": "参数量和 FLOPs 都不变；要存的注意力权重翻倍"},
    "ch04.q1.d": {"en": "nothing at all: the heads are only a reshape", "zh": "什么都不变：头只是一次变形"},
    "ch04.q1.why": {"en": "The four projections are E × E whatever h is, so the parameters stay 4E². Each head's "
                          "scores cost 2·L·S·d_k FLOPs with d_k = E / h, so h heads cost 2·L·S·E together, again "
                          "whatever h is. But every head has its own L × S matrix of weights: h of them, so "
                          "twice the heads hold twice the weights (section 6 prints the numbers).",
                    "zh": "不论 h 是多少，四个投影都是 E × E，所以参数量始终是 4E²。每个头的分数要 2·L·S·d_k 次浮点运算，"
                          "而 d_k = E / h，所以 h 个头合起来是 2·L·S·E，同样与 h 无关。"
                          "但每个头都有自己的一个 L × S 权重矩阵，一共 h 个，头数翻倍，要存的权重也就翻倍（第 6 节打印了这些数字）。"},
    "ch04.q1.nudge": {"en": "When h doubles, what happens to d_k = E / h? Count one head's work, then multiply by h.",
                      "zh": "h 翻倍时，d_k = E / h 怎样变化？先数一个头的工作量，再乘以 h。"},
    # stretch
    "ch04.ex5.title": {"en": "Stretch · nn.MultiheadAttention from its packed weights, masks included",
                       "zh": "挑战题 · 用打包的权重复现 nn.MultiheadAttention，连同掩码"},
    "ch04.ex5.nudge": {"en": "Compare your output with the masks one at a time: is a boolean True a pair to keep or a "
                             "pair to remove in nn.MultiheadAttention? And what does it return as weights?",
                       "zh": "逐个掩码对比你的输出：在 nn.MultiheadAttention 里，布尔值 True 表示保留这个配对，还是去掉它？"
                             "它返回的权重又是什么？"},
    "ch04.ex5.stronger": {"en": "in_proj_weight stacks W_Q, W_K, W_V as rows (3E, E): x @ in_proj_weight.T + in_proj_bias "
                                "gives (B, L, 3E), cut into three (B, L, E). Boolean masks: True = forbidden (-inf); "
                                "a float attn_mask is added; key_padding_mask (B, S) applies to every head and query. "
                                "The weights returned are averaged over the heads.",
                          "zh": "in_proj_weight 按行堆叠了 W_Q、W_K、W_V，形状 (3E, E)：x @ in_proj_weight.T + in_proj_bias "
                                "得到 (B, L, 3E)，再切成三个 (B, L, E)。布尔掩码中 True = 禁止（填入 -inf）；浮点 attn_mask 直接加到分数上；"
                                "key_padding_mask 的形状是 (B, S)，作用于每个头和每个查询。返回的权重是各个头的平均。"},
    "ch04.ex5.formula": {"en": "`q, k, v = (x @ W_in.T + b_in).split(E, -1)`, each split to (B, H, L, Dh); "
                               "`s = q @ k.transpose(-2, -1) / sqrt(Dh)`; a boolean mask: `s = s.masked_fill(attn_mask, -inf)`, "
                               "a float one: `s = s + attn_mask`; then `s = s.masked_fill(key_padding_mask[:, None, None, :], -inf); "
                               "w = softmax(s, -1); out = merge(w @ v) @ W_out.T + b_out; return out, w.mean(dim=1)`",
                         "zh": "`q, k, v = (x @ W_in.T + b_in).split(E, -1)`，各自拆成 (B, H, L, Dh)；"
                               "`s = q @ k.transpose(-2, -1) / sqrt(Dh)`；布尔掩码时 `s = s.masked_fill(attn_mask, -inf)`，"
                               "浮点掩码时 `s = s + attn_mask`；然后 `s = s.masked_fill(key_padding_mask[:, None, None, :], -inf); "
                               "w = softmax(s, -1); out = merge(w @ v) @ W_out.T + b_out; return out, w.mean(dim=1)`"},
    "ch04.case.torch_plain": {"en": "B={b}, L={l}, E={e}, H={h}, no mask", "zh": "B={b}，L={l}，E={e}，H={h}，无掩码"},
    "ch04.case.torch_causal": {"en": "B={b}, L={l}, E={e}, H={h}, boolean causal attn_mask (True = forbidden)",
                               "zh": "B={b}，L={l}，E={e}，H={h}，布尔因果 attn_mask（True = 禁止）"},
    "ch04.case.torch_padding": {"en": "B={b}, L={l}, E={e}, H={h}, causal + key_padding_mask, lengths {n}",
                                "zh": "B={b}，L={l}，E={e}，H={h}，因果掩码 + key_padding_mask，长度 {n}"},
    "ch04.case.torch_float": {"en": "B={b}, L={l}, E={e}, H={h}, float attn_mask (a bias added to the scores)",
                              "zh": "B={b}，L={l}，E={e}，H={h}，浮点 attn_mask（加到分数上的偏置）"},
    "ch04.case.split": {"en": "B={b}, L={l}, E={e}, H={h}", "zh": "B={b}，L={l}，E={e}，H={h}"},
    "ch04.case.mha": {"en": "B={b}, L={l}, E={e}, H={h}", "zh": "B={b}，L={l}，E={e}，H={h}"},
    "ch04.case.count": {"en": "E={e}, H={h}, bias={bias}", "zh": "E={e}，H={h}，bias={bias}"},
})


def _randn(seed: int, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- reference solutions (kept out of the notebooks) ----

def solution_split_heads(x, num_heads):
    B, L, E = x.shape
    return x.view(B, L, num_heads, E // num_heads).transpose(1, 2)  # (B, H, L, Dh)


def solution_merge_heads(x):
    B, H, L, Dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * Dh)  # (B, L, E)


def solution_mha(x, w_q, w_k, w_v, w_o, num_heads):
    q = solution_split_heads(x @ w_q.T, num_heads)  # (B, H, L, Dh)
    k = solution_split_heads(x @ w_k.T, num_heads)
    v = solution_split_heads(x @ w_v.T, num_heads)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, H, L, L)
    return solution_merge_heads(w @ v) @ w_o.T  # (B, L, E)


def solution_count_params(embed_dim, num_heads, bias=True):
    return 4 * embed_dim * embed_dim + (4 * embed_dim if bias else 0)


def solution_torch_mha(x, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads,
                       attn_mask=None, key_padding_mask=None):
    """nn.MultiheadAttention(x, x, x, attn_mask, key_padding_mask, need_weights=True), from the formula."""
    B, L, E = x.shape
    Dh = E // num_heads
    packed = x @ in_proj_weight.T + in_proj_bias                     # (B, L, 3E): W_Q, W_K, W_V at once
    q, k, v = (solution_split_heads(part, num_heads) for part in packed.split(E, dim=-1))  # 3 x (B, H, L, Dh)
    scores = q @ k.transpose(-2, -1) * Dh**-0.5                      # (B, H, L, S)
    if attn_mask is not None:                                        # (L, S), broadcast over B and H
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask, float("-inf"))    # nn.MultiheadAttention: True = forbidden
        else:
            scores = scores + attn_mask                              # a float mask is added
    if key_padding_mask is not None:                                 # (B, S): True = padding
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)                          # (B, H, L, S)
    out = solution_merge_heads(weights @ v) @ out_weight.T + out_bias  # (B, L, E)
    return out, weights.mean(dim=1)                                  # weights averaged over the heads



# ---- typical mistakes: the hint shown when the learner's result equals the mistake's ----

register({
    'ch04.mistake.ex5.mask_sense': {"en": "in nn.MultiheadAttention a True in a boolean attn_mask means masked out (the opposite of SDPA): fill those scores with -inf.",
                                    "zh": "在 nn.MultiheadAttention 中，布尔 attn_mask 里的 True 表示屏蔽（与 SDPA 相反）：要把这些位置的分数填入 -inf。"},
    'ch04.mistake.ex1.no_transpose': {"en": 'you reshaped to (B, H, L, Dh) directly: that mixes positions into heads. View as (B, L, H, Dh) first, then swap L and H.', "zh": '你直接 reshape 成 (B, H, L, Dh)：这样会把不同位置混进同一个头。先 view 成 (B, L, H, Dh)，再交换 L 和 H。'},
    'ch04.mistake.ex1.strided': {"en": "each of your heads holds every H-th feature (features h, h + H, h + 2H, ...); head h owns a block of E // H consecutive features of each position.",
                                 "zh": "你的每个头拿到的是每隔 H 个取一个的特征（特征 h、h + H、h + 2H……）；第 h 个头应当拥有每个位置上连续的 E // H 个特征。"},
    'ch04.mistake.ex2.no_transpose': {"en": 'you reshaped (B, H, L, Dh) to (B, L, E) without moving H next to Dh: transpose(1, 2) first.', "zh": '你没有先把 H 移到 Dh 旁边就 reshape 成了 (B, L, E)：先做 transpose(1, 2)。'},
    'ch04.mistake.ex2.interleaved': {"en": "your positions are right, but the heads' features are interleaved (feature 0 of every head, then feature 1, ...): a merged row is head 0's Dh features, then head 1's, and so on.",
                                     "zh": "你的位置是对的，但各个头的特征交错在了一起（先是每个头的第 0 个特征，再是第 1 个……）。合并后的一行应当先是头 0 的 Dh 个特征，再是头 1 的，依此类推。"},
    'ch04.mistake.ex3.no_scale': {"en": 'you left out the 1/sqrt(head_dim) scale of the scores.', "zh": '你漏掉了分数的 1/sqrt(head_dim) 缩放。'},
    'ch04.mistake.ex3.scale_e': {"en": "you scaled by 1/sqrt(E); each head's scores use its own dimension, head_dim = E / H.", "zh": '你除以了 sqrt(E)；每个头的分数要用它自己的维度 head_dim = E / H。'},
    'ch04.mistake.ex4.no_bias': {"en": 'you counted the four weight matrices but not their biases (E each).', "zh": '你算了四个权重矩阵，但没算它们的偏置（每个 E 个）。'},
    'ch04.mistake.ex4.bias_always': {"en": 'with bias=False there are no biases to count.', "zh": 'bias=False 时没有偏置需要计数。'},
})

def _mha(x, wq, wk, wv, wo, h, scale):
    q, k, v = (solution_split_heads(x @ w.T, h) for w in (wq, wk, wv))
    return solution_merge_heads(torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v) @ wo.T


def _mask_sense(x, w, b, ow, ob, h, attn_mask=None, key_padding_mask=None):
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = ~attn_mask
    return solution_torch_mha(x, w, b, ow, ob, h, attn_mask, key_padding_mask)


def _scale_e(x, w, b, ow, ob, h, attn_mask=None, key_padding_mask=None):
    """Scores scaled by 1/sqrt(E), not 1/sqrt(E/H): the query part of the projection times H^-1/2."""
    e = x.shape[-1]
    q_part = torch.cat((torch.full((e,), h ** -0.5), torch.ones(2 * e))).to(w.dtype)  # (3E,)
    return solution_torch_mha(x, w * q_part[:, None], b * q_part, ow, ob, h, attn_mask, key_padding_mask)


MISTAKES = {
    "ch04.ex5": (
        (_mask_sense, lambda: t("ch04.mistake.ex5.mask_sense")),
        (_scale_e, lambda: t("ch04.mistake.ex3.scale_e")),
    ),
    "ch04.ex1": (
        (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h), lambda: t('ch04.mistake.ex1.no_transpose')),
        (lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2), lambda: t('ch04.mistake.ex1.strided')),
    ),
    "ch04.ex2": (
        (lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]), lambda: t('ch04.mistake.ex2.no_transpose')),
        (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]), lambda: t('ch04.mistake.ex2.interleaved')),
    ),
    "ch04.ex3": (
        (lambda x, wq, wk, wv, wo, h: _mha(x, wq, wk, wv, wo, h, 1.0), lambda: t('ch04.mistake.ex3.no_scale')),
        (lambda x, wq, wk, wv, wo, h: _mha(x, wq, wk, wv, wo, h, x.shape[-1] ** -0.5), lambda: t('ch04.mistake.ex3.scale_e')),
    ),
    "ch04.ex4": (
        (lambda e, h, bias=True: 4 * e * e, lambda: t('ch04.mistake.ex4.no_bias')),
        (lambda e, h, bias=True: 4 * e * e + 4 * e, lambda: t('ch04.mistake.ex4.bias_always')),
    ),
}


# ---- checkers ----

def check_split_heads(fn) -> bool:
    cases = [Case((_randn(b * 10 + h, b, l, e), h), label=t("ch04.case.split", b=b, l=l, e=e, h=h))
             for b, l, e, h in ((1, 3, 4, 2), (2, 5, 12, 3), (2, 4, 8, 1))]
    return run_checks(fn, solution_split_heads, cases, t("ch04.ex1.title"),
                      hints=[t("ch04.ex1.nudge"), t("ch04.ex1.stronger"), t("ch04.ex1.formula")],
                      exercise="ch04.ex1", mistakes=MISTAKES["ch04.ex1"],
                      forbid=("attnkit.mha.split_heads",))


def check_merge_heads(fn) -> bool:
    cases = [Case((_randn(b * 10 + h, b, h, l, d),), label=t("ch04.case.split", b=b, l=l, e=h * d, h=h))
             for b, h, l, d in ((1, 2, 3, 2), (2, 3, 5, 4), (2, 1, 4, 8))]
    return run_checks(fn, solution_merge_heads, cases, t("ch04.ex2.title"),
                      hints=[t("ch04.ex2.nudge"), t("ch04.ex2.stronger"), t("ch04.ex2.formula")],
                      exercise="ch04.ex2", mistakes=MISTAKES["ch04.ex2"],
                      forbid=("attnkit.mha.split_heads", "attnkit.mha.merge_heads"))


def check_mha(fn) -> bool:
    cases = []
    for seed, (b, l, e, h) in enumerate(((1, 4, 8, 2), (2, 6, 12, 3), (2, 5, 16, 4))):
        x = _randn(seed, b, l, e)
        ws = [_randn(100 + 4 * seed + i, e, e) / math.sqrt(e) for i in range(4)]
        cases.append(Case((x, *ws, h), label=t("ch04.case.mha", b=b, l=l, e=e, h=h)))
    return run_checks(fn, solution_mha, cases, t("ch04.ex3.title"),
                      hints=[t("ch04.ex3.nudge"), t("ch04.ex3.stronger"), t("ch04.ex3.formula")],
                      exercise="ch04.ex3", mistakes=MISTAKES["ch04.ex3"],
                      forbid=("torch.nn.functional.scaled_dot_product_attention",
                              "torch.nn.functional.multi_head_attention_forward",
                              "attnkit.core.scaled_dot_product_attention", "attnkit.mha.multi_head_attention",
                              # section 3's versions split and merge with attnkit's helpers: your own
                              # (exercises 1 and 2) are welcome, a copy of section 3 is not
                              "attnkit.mha.split_heads", "attnkit.mha.merge_heads"))


def check_count_params(fn) -> bool:
    cases = [Case((e, h), {"bias": bias}, label=t("ch04.case.count", e=e, h=h, bias=bias))
             for e, h, bias in ((8, 2, True), (512, 8, False), (4096, 32, True))]
    return run_checks(fn, solution_count_params, cases, t("ch04.ex4.title"),
                      hints=[t("ch04.ex4.nudge"), t("ch04.ex4.stronger"), t("ch04.ex4.formula")],
                      exercise="ch04.ex4",
                      draw=lambda seed: drawn(seed, lambda r: (lambda h, e, b: Case((h * e, h), {"bias": b}, label=t(
                          "ch04.case.count", e=h * e, h=h, bias=b)))(2 ** r.randint(0, 5), r.randint(2, 64), r.random() < 0.5)), mistakes=MISTAKES["ch04.ex4"],
                      forbid=("attnkit.mha.mha_param_count", "attnkit.mha.mha_counts"))


def check_q1(answer) -> bool:
    return check_answer(answer, "c", exercise="ch04.q1", title=t("ch04.q1.title"), explanation=t("ch04.q1.why"),
                        nudge=t("ch04.q1.nudge"), choices={c: t(f"ch04.q1.{c}") for c in "abcd"})


def torch_mha_cases() -> list[Case]:
    """The stretch exercise's cases: (x, in_proj_weight, in_proj_bias, out_weight, out_bias, H) and masks."""
    cases = []
    for seed, (kind, b, l, e, h) in enumerate((("plain", 1, 4, 8, 2), ("causal", 2, 5, 12, 3),
                                               ("padding", 2, 6, 16, 4), ("float", 1, 5, 8, 4))):
        args = (_randn(seed, b, l, e), _randn(200 + seed, 3 * e, e) / math.sqrt(e), _randn(300 + seed, 3 * e) / 10,
                _randn(400 + seed, e, e) / math.sqrt(e), _randn(500 + seed, e) / 10, h)
        forbidden = ~torch.ones(l, l, dtype=torch.bool).tril()          # True above the diagonal: the future
        kwargs, lengths = {}, [l, l - 2]
        if kind == "causal":
            kwargs = {"attn_mask": forbidden}
        elif kind == "padding":
            kwargs = {"attn_mask": forbidden,
                      "key_padding_mask": torch.arange(l)[None, :] >= torch.tensor(lengths)[:, None]}
        elif kind == "float":
            pos = torch.arange(l, dtype=torch.float32)
            kwargs = {"attn_mask": -0.5 * (pos[:, None] - pos[None, :]).abs()}
        cases.append(Case(args, kwargs, label=t(f"ch04.case.torch_{kind}", b=b, l=l, e=e, h=h, n=lengths)))
    return cases


def check_torch_mha(fn) -> bool:
    return run_checks(fn, solution_torch_mha, torch_mha_cases(), t("ch04.ex5.title"),
                      hints=[t("ch04.ex5.nudge"), t("ch04.ex5.stronger"), t("ch04.ex5.formula")],
                      exercise="ch04.ex5", mistakes=MISTAKES["ch04.ex5"],
                      forbid=("torch.nn.functional.multi_head_attention_forward", "torch._native_multi_head_attention",
                              "torch.nn.functional.scaled_dot_product_attention",
                              "attnkit.core.scaled_dot_product_attention", "attnkit.mha.multi_head_attention",
                              "attnkit.mha.build_attention_mask"))
