"""Chapter 05's schematic: what a decode step computes and what it reuses from the KV cache.

``decode_step_figure(step)`` draws step t: the tokens x_0 .. x_t, the cached keys and values of
x_0 .. x_{t-1} (reused, not recomputed), the new token's q_t, k_t, v_t (computed now), k_t and
v_t appended to the cache, and q_t attending over every cached key, then averaging the values.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from attnkit.i18n import register, t

register({
    "schematics.kvcache.title": {"en": "Decode step t = {t}: only the new token is projected",
                                 "zh": "第 t = {t} 步解码：只有新词元要做投影"},
    "schematics.kvcache.tokens": {"en": "tokens", "zh": "词元"},
    "schematics.kvcache.keys": {"en": "K cache", "zh": "K 缓存"},
    "schematics.kvcache.values": {"en": "V cache", "zh": "V 缓存"},
    "schematics.kvcache.reused": {"en": "read from the cache (k, v) or handled at earlier steps (x)",
                                  "zh": "从缓存读取（k、v），或在之前的步骤已经处理过（x）"},
    "schematics.kvcache.new": {"en": "computed at this step (the new k and v are appended to the cache)",
                               "zh": "本步新算出（新的 k、v 追加到缓存末尾）"},
    "schematics.kvcache.attend": {"en": "the new query scores every cached key", "zh": "新的查询与缓存中的每个键计算分数"},
    "schematics.kvcache.output": {"en": "$o_t = \\sum_j w_j v_j$", "zh": "$o_t = \\sum_j w_j v_j$"},
})

REUSED, NEW, EDGE = "#d9d9d9", "#fdb863", "#444444"


def _box(ax, x, y, text, color, w=0.8, h=0.6):
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=color, edgecolor=EDGE, lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, a, b, color=EDGE, lw=1.0, style="-|>", rad=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=9, color=color, lw=lw,
                                 shrinkA=2, shrinkB=2, connectionstyle=f"arc3,rad={rad}"))


def decode_step_figure(step: int = 4):
    """Figure of decode step ``step`` (t >= 1): t cached tokens, one new token. Pure: no state."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {type(step).__name__} ({step!r})")
    if not 1 <= step <= 12:
        raise ValueError(f"step must be between 1 and 12 (one box per token), got {step}")
    n = step + 1  # tokens 0 .. t
    fig, ax = plt.subplots(figsize=(1.1 * n + 4.2, 3.9))
    ax.set_xlim(-1.9, n + 2.6)
    ax.set_ylim(-0.75, 3.7)
    ax.axis("off")
    y_tok, y_k, y_v = 3.2, 1.8, 0.6
    for name, y in (("tokens", y_tok), ("keys", y_k), ("values", y_v)):
        ax.text(-0.7, y, t("schematics.kvcache." + name), ha="right", va="center", fontsize=9)
    for j in range(n):
        color = NEW if j == step else REUSED
        _box(ax, j, y_tok, f"$x_{{{j}}}$", color)
        _box(ax, j, y_k, f"$k_{{{j}}}$", color)
        _box(ax, j, y_v, f"$v_{{{j}}}$", color)
    # the new token is projected: x_t -> k_t, v_t (appended at the end) and q_t (beside the cache)
    qx, qy = n + 1.0, y_k
    _box(ax, qx, qy, "$q_t$", NEW)
    _arrow(ax, (step, y_tok - 0.3), (step, y_k + 0.3), color="#b35806", lw=1.4)
    _arrow(ax, (step + 0.4, y_tok - 0.2), (step + 0.4, y_v + 0.1), color="#b35806", lw=1.4, rad=-0.45)
    _arrow(ax, (step + 0.4, y_tok - 0.1), (qx - 0.4, qy + 0.2), color="#b35806", lw=1.4)
    # q_t scores every cached key (thin lines), the output averages every value
    for j in range(n):
        _arrow(ax, (qx - 0.4, qy + 0.1), (j, y_k + 0.3), color="#2166ac", lw=0.7, style="-",
               rad=0.12 * (n + 1 - j) / (n + 1))
    ax.text(qx, (qy + y_v) / 2, t("schematics.kvcache.attend"), ha="center", va="center", fontsize=8,
            color="#2166ac")
    _box(ax, qx, y_v, "$o_t$", NEW)
    ax.text(qx, y_v - 0.55, t("schematics.kvcache.output"), ha="center", va="top", fontsize=8,
            color="#2166ac")
    _arrow(ax, (n - 0.6, y_v), (qx - 0.4, y_v), color="#2166ac")
    # the cache bracket and the legend
    ax.add_patch(Rectangle((-0.5, y_v - 0.42), n, y_k - y_v + 0.84, fill=False, ls="--", lw=1,
                           edgecolor="#2166ac"))
    ax.legend(handles=[Rectangle((0, 0), 1, 1, facecolor=REUSED, edgecolor=EDGE),
                       Rectangle((0, 0), 1, 1, facecolor=NEW, edgecolor=EDGE)],
              labels=[t("schematics.kvcache.reused"), t("schematics.kvcache.new")],
              loc="lower center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    ax.set_title(t("schematics.kvcache.title", t=step), fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.08)
    return fig


# ---- GQA's head map, the two alignments of a causal mask, MLA's data flow ----

register({
    "schematics.kvcache.gqa_title": {"en": "GQA: {n_h} query heads read {n_g} kv heads (query head i reads kv head i // {g})",
                                     "zh": "GQA：{n_h} 个查询头读取 {n_g} 个键值头（第 i 个查询头读第 i // {g} 个键值头）"},
    "schematics.kvcache.query_heads": {"en": "query heads", "zh": "查询头"},
    "schematics.kvcache.kv_heads": {"en": "kv heads (cached)", "zh": "键值头（缓存）"},
    "schematics.kvcache.top_left": {"en": "top-left (is_causal=True): query i sees keys j <= i",
                                    "zh": "左上角对齐（is_causal=True）：查询 i 看到 j <= i 的键"},
    "schematics.kvcache.bottom_right": {"en": "bottom-right (decoding): query i sees keys j <= {past} + i",
                                        "zh": "右下角对齐（解码）：查询 i 看到 j <= {past} + i 的键"},
    "schematics.kvcache.align_title": {"en": "{L} new queries after {past} cached tokens ({S} keys): two ways to align the causal mask",
                                       "zh": "已缓存 {past} 个词元后来了 {L} 个新查询（共 {S} 个键）：因果掩码的两种对齐方式"},
    "schematics.kvcache.mla_title": {"en": "MLA: what is cached is the latent c (d_c numbers) and one shared RoPE key (d_h^R numbers)",
                                     "zh": "MLA：缓存的是潜在向量 c（d_c 个数）和一个所有头共享的 RoPE 键（d_h^R 个数）"},
    "schematics.kvcache.mla_cached": {"en": "cached per token", "zh": "每个词元缓存的内容"},
    "schematics.kvcache.mla_rebuilt": {"en": "rebuilt from the cache, per head", "zh": "由缓存还原，每个头一份"},
})


def gqa_heads_figure(num_heads: int = 8, num_kv_heads: int = 2):
    """Query heads (top) joined to the kv head each reads (bottom): head i -> i // (n_h / n_g)."""
    for name, v in (("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32:
            raise ValueError(f"{name} must be an int in [1, 32], got {v!r}")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads must divide num_heads, got {num_kv_heads} and {num_heads}")
    g = num_heads // num_kv_heads
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * num_heads + 2.5), 2.6))
    ax.set_xlim(-2.2, num_heads)
    ax.set_ylim(-0.6, 2.2)
    ax.axis("off")
    ax.text(-0.6, 1.6, t("schematics.kvcache.query_heads"), ha="right", va="center", fontsize=9)
    ax.text(-0.6, 0.0, t("schematics.kvcache.kv_heads"), ha="right", va="center", fontsize=9)
    for i in range(num_heads):
        _box(ax, i, 1.6, f"$q_{{{i}}}$", colors(i // g % 10), w=0.7, h=0.5)
        kx = (i // g) * g + (g - 1) / 2  # the kv head sits under the middle of its group
        _arrow(ax, (i, 1.35), (kx, 0.25), color=EDGE, lw=0.8)
    for j in range(num_kv_heads):
        _box(ax, j * g + (g - 1) / 2, 0.0, f"$k_{{{j}}}, v_{{{j}}}$", colors(j % 10), w=min(0.9 * g, 1.6), h=0.5)
    ax.set_title(t("schematics.kvcache.gqa_title", n_h=num_heads, n_g=num_kv_heads, g=g), fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.85, bottom=0.02)
    return fig


def causal_alignment_masks(L: int, S: int):
    """(top-left, bottom-right) boolean (L, S) masks, True = attend: j <= i and j <= (S - L) + i."""
    i, j = torch.arange(L)[:, None], torch.arange(S)[None, :]
    return j <= i, j <= (S - L) + i


def causal_alignment_figure(L: int = 3, S: int = 7):
    """The two causal masks for L new queries over S keys, side by side (viz.mask_picture)."""
    from attnkit import viz

    if isinstance(L, bool) or isinstance(S, bool) or not isinstance(L, int) or not isinstance(S, int) or not 1 <= L <= S <= 32:
        raise ValueError(f"L and S must be ints with 1 <= L <= S <= 32, got L={L!r}, S={S!r}")
    top_left, bottom_right = causal_alignment_masks(L, S)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 2.9))
    viz.mask_picture(top_left, ax=axes[0], title=t("schematics.kvcache.top_left"))  # rows: new query i
    viz.mask_picture(bottom_right, ax=axes[1],
                     title=t("schematics.kvcache.bottom_right", past=S - L))
    for ax in axes:
        ax.title.set_fontsize(9)
    fig.suptitle(t("schematics.kvcache.align_title", L=L, S=S, past=S - L), fontsize=10)
    fig.tight_layout()
    return fig


def mla_flow_figure():
    """MLA's data flow for one token: h -> W^DKV -> c (cached) -> W^UK, W^UV -> k^C, v per head;
    h -> W^KR -> RoPE -> k^R (cached, shared by the heads); each head's key is [k^C; k^R]."""
    fig, ax = plt.subplots(figsize=(10.5, 3.6))
    ax.set_xlim(-0.4, 10.8)
    ax.set_ylim(-0.3, 3.6)
    ax.axis("off")
    cached, rebuilt = "#fdb863", "#b2abd2"
    _box(ax, 0.6, 1.7, "$h_t$", REUSED, w=0.9)
    _box(ax, 2.7, 2.6, "$W^{DKV}$", "white", w=1.1)
    _box(ax, 2.7, 0.8, "$W^{KR}$, RoPE", "white", w=1.5)
    _box(ax, 4.9, 2.6, "$c_t$  ($d_c$)", cached, w=1.5)
    _box(ax, 4.9, 0.8, "$k^R_t$  ($d_h^R$)", cached, w=1.5)
    _box(ax, 7.1, 3.1, "$W^{UK}$", "white", w=1.1)
    _box(ax, 7.1, 2.1, "$W^{UV}$", "white", w=1.1)
    _box(ax, 9.2, 3.1, "$k^C_{t,i}$", rebuilt, w=1.2)
    _box(ax, 9.2, 2.1, "$v_{t,i}$", rebuilt, w=1.2)
    _box(ax, 9.2, 0.8, "$k_{t,i} = [k^C_{t,i}; k^R_t]$", rebuilt, w=2.2)
    for a, b in (((1.05, 1.9), (2.15, 2.6)), ((1.05, 1.5), (1.95, 0.8)), ((3.25, 2.6), (4.15, 2.6)),
                 ((3.45, 0.8), (4.15, 0.8)), ((5.65, 2.7), (6.55, 3.1)), ((5.65, 2.5), (6.55, 2.1)),
                 ((7.65, 3.1), (8.6, 3.1)), ((7.65, 2.1), (8.6, 2.1)),
                 ((5.65, 0.8), (8.1, 0.8))):
        _arrow(ax, a, b)
    _arrow(ax, (9.8, 3.1), (10.0, 1.1), rad=-0.35)  # k^C joins k^R, around v
    ax.add_patch(Rectangle((4.05, 0.35), 1.7, 2.7, fill=False, ls="--", lw=1, edgecolor="#b35806"))
    ax.text(4.9, 3.25, t("schematics.kvcache.mla_cached"), ha="center", fontsize=8, color="#b35806")
    ax.text(9.2, 3.5, t("schematics.kvcache.mla_rebuilt"), ha="center", fontsize=8, color="#542788")
    ax.set_title(t("schematics.kvcache.mla_title"), fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.02)
    return fig
