"""Chapter 05's schematic: what a decode step computes and what it reuses from the KV cache.

``decode_step_figure(step)`` draws step t: the tokens x_0 .. x_t, the cached keys and values of
x_0 .. x_{t-1} (reused, not recomputed), the new token's q_t, k_t, v_t (computed now), k_t and
v_t appended to the cache, and q_t attending over every cached key, then averaging the values.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
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
