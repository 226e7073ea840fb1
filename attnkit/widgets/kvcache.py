"""Chapter 05's explorer: which query heads share which kv head, and what the KV cache weighs.

Sliders for query heads, kv heads, head size, layers and context length, and a dtype dropdown.
The left panel links each query head to the kv head it reads (query head i reads kv head
i // (n_h / n_g)); the right panel is the cache size of MHA, GQA, MQA and MLA for that model,
computed by ``attnkit.gqa.compare_cache_sizes``.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection

from attnkit.gqa import KINDS, compare_cache_sizes, kv_head_index
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register({
    "kvcache.kind.mha": {"en": "MHA", "zh": "MHA"},
    "kvcache.kind.gqa": {"en": "GQA-{g}", "zh": "GQA-{g}"},
    "kvcache.kind.mqa": {"en": "MQA", "zh": "MQA"},
    "kvcache.kind.mla": {"en": "MLA", "zh": "MLA"},
    "kvcache.heads": {"en": "query heads", "zh": "查询头数"},
    "kvcache.kv_heads": {"en": "kv heads (GQA)", "zh": "键值头数（GQA）"},
    "kvcache.head_dim": {"en": "head dim", "zh": "头维度"},
    "kvcache.layers": {"en": "layers", "zh": "层数"},
    "kvcache.context": {"en": "context (tokens)", "zh": "上下文（词元数）"},
    "kvcache.dtype": {"en": "dtype", "zh": "数据类型"},
    "kvcache.map_title": {"en": "{h} query heads share {g} kv heads ({G} per group)",
                          "zh": "{h} 个查询头共享 {g} 个键值头（每组 {G} 个）"},
    "kvcache.query_row": {"en": "query heads", "zh": "查询头"},
    "kvcache.kv_row": {"en": "kv heads", "zh": "键值头"},
    "kvcache.bar_title": {"en": "KV cache: {layers} layers × {ctx} tokens, {dtype}",
                          "zh": "KV 缓存：{layers} 层 × {ctx} 个词元，{dtype}"},
    "kvcache.gib": {"en": "GiB (batch 1)", "zh": "GiB（批次大小 1）"},
    "kvcache.mla_note": {"en": "MLA: d_c = 4·d_h = {dc}, d_h^R = d_h/2 = {dr}",
                         "zh": "MLA：d_c = 4·d_h = {dc}，d_h^R = d_h/2 = {dr}"},
})


DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
HEADS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
HEAD_DIMS = (32, 64, 96, 128, 192, 256)


def kv_cache_explorer_data(num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int,
                           context: int, dtype: str) -> dict:
    """The numbers behind the picture.

    ``num_kv_heads`` larger than ``num_heads`` is clamped to ``num_heads`` (the sliders move
    independently). Returns the effective kv heads, the kv head each query head reads, and the
    cache bytes per kind (batch 1).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    kv = min(num_kv_heads, num_heads)
    sizes = compare_cache_sizes(num_heads, kv, head_dim, num_layers, context, dtype=DTYPES[dtype])
    return {"num_kv_heads": kv, "kv_of_query": kv_head_index(num_heads, kv), "bytes": sizes,
            "kv_lora_rank": 4 * head_dim, "qk_rope_head_dim": max(head_dim // 2, 1)}


def _label(kind: str, g: int) -> str:
    return t("kvcache.kind." + kind, g=g)


def draw_kv_cache(num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int, context: int,
                  dtype: str):
    """(Figure, data): the head-sharing map and the cache-size bars."""
    data = kv_cache_explorer_data(num_heads, num_kv_heads, head_dim, num_layers, context, dtype)
    kv, owner = data["num_kv_heads"], data["kv_of_query"]
    # fixed margins instead of tight_layout: one layout pass less per redraw
    fig, (ax_m, ax_b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={
        "width_ratios": [1.4, 1], "left": 0.08, "right": 0.99, "bottom": 0.14, "top": 0.9, "wspace": 0.2})
    colors = _colors(kv)
    # query heads on top (x in [0, 1]), kv heads below, a line from each query head to its kv head
    qx = [(i + 0.5) / num_heads for i in range(num_heads)]
    kx = [(g + 0.5) / kv for g in range(kv)]
    ax_m.add_collection(LineCollection([[(qx[i], 1.0), (kx[owner[i]], 0.0)] for i in range(num_heads)],
                                       colors=[colors[g] for g in owner], linewidths=1.0, alpha=0.7))
    ax_m.scatter(qx, [1.0] * num_heads, c=[colors[g] for g in owner], marker="s",
                 s=max(8, 2400 / num_heads), zorder=3)
    ax_m.scatter(kx, [0.0] * kv, c=colors, marker="s", s=max(20, 3000 / kv), zorder=3,
                 edgecolors="black")
    ax_m.set_xlim(0, 1)
    ax_m.set_ylim(-0.3, 1.3)
    ax_m.set_xticks([])
    ax_m.set_yticks([0, 1], [t("kvcache.kv_row"), t("kvcache.query_row")])
    ax_m.set_title(t("kvcache.map_title", h=num_heads, g=kv, G=num_heads // kv))
    for side in ("top", "right", "bottom"):
        ax_m.spines[side].set_visible(False)

    gib = [data["bytes"][k] / 2**30 for k in KINDS]
    bars = ax_b.bar([_label(k, kv) for k in KINDS], gib,
                    color=["tab:gray", "tab:blue", "tab:green", "tab:red"])
    for bar, v in zip(bars, gib, strict=True):
        ax_b.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.3g}", ha="center", va="bottom", fontsize=9)
    ax_b.set_ylabel(t("kvcache.gib"))
    ax_b.set_ylim(0, max(gib) * 1.18)
    ax_b.set_title(t("kvcache.bar_title", layers=num_layers, ctx=context, dtype=dtype), fontsize=10)
    ax_b.set_xlabel(t("kvcache.mla_note", dc=data["kv_lora_rank"], dr=data["qk_rope_head_dim"]),
                    fontsize=8)
    return fig, data


def _colors(kv: int) -> list:
    cmap = plt.get_cmap("tab10" if kv <= 10 else "viridis")
    return [cmap(g % 10 if kv <= 10 else g / max(kv - 1, 1)) for g in range(kv)]


def update_kv_cache(fig, num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int,
                    context: int, dtype: str) -> dict:
    """Move the artists of a figure made by ``draw_kv_cache`` to another model."""
    data = kv_cache_explorer_data(num_heads, num_kv_heads, head_dim, num_layers, context, dtype)
    kv, owner = data["num_kv_heads"], data["kv_of_query"]
    ax_m, ax_b = fig.axes[0], fig.axes[1]
    colors = _colors(kv)
    qx = [(i + 0.5) / num_heads for i in range(num_heads)]
    kx = [(g + 0.5) / kv for g in range(kv)]
    lines, = ax_m.collections[:1]
    lines.set_segments([[(qx[i], 1.0), (kx[owner[i]], 0.0)] for i in range(num_heads)])
    lines.set_color([colors[g] for g in owner])
    queries, keys = ax_m.collections[1:3]
    queries.set_offsets([(x, 1.0) for x in qx])
    queries.set_facecolor([colors[g] for g in owner])
    queries.set_sizes([max(8, 2400 / num_heads)])
    keys.set_offsets([(x, 0.0) for x in kx])
    keys.set_facecolor(colors)
    keys.set_sizes([max(20, 3000 / kv)])
    ax_m.title.set_text(t("kvcache.map_title", h=num_heads, g=kv, G=num_heads // kv))

    gib = [data["bytes"][k] / 2**30 for k in KINDS]
    for bar, text, v in zip(ax_b.patches, ax_b.texts, gib, strict=True):
        bar.set_height(v)
        text.set_y(v)
        text.set_text(f"{v:.3g}")
    ax_b.set_xticks(range(len(KINDS)), [_label(k, kv) for k in KINDS])
    ax_b.set_ylim(0, max(gib) * 1.18)
    ax_b.title.set_text(t("kvcache.bar_title", layers=num_layers, ctx=context, dtype=dtype))
    ax_b.xaxis.label.set_text(t("kvcache.mla_note", dc=data["kv_lora_rank"], dr=data["qk_rope_head_dim"]))
    return data


def _animated(fig):
    """What update_kv_cache changes, redrawn over a kept background (the Explorer blits)."""
    ax_m, ax_b = fig.axes[0], fig.axes[1]
    return [*ax_m.collections, ax_m.title, *ax_b.patches, *ax_b.texts, ax_b.title, ax_b.xaxis, ax_b.yaxis]


def kv_cache_explorer(num_heads: int = 32, num_kv_heads: int = 8, head_dim: int = 128,
                      num_layers: int = 32, context: int = 32768, dtype: str = "bfloat16") -> Explorer:
    """The chapter 05 explorer (starts at a LLaMA-2-7B-sized model with 8 kv heads)."""
    style = {"description_width": "initial"}
    controls = {
        "num_heads": W.SelectionSlider(options=HEADS, value=num_heads, description=t("kvcache.heads"),
                                       style=style),
        "num_kv_heads": W.SelectionSlider(options=HEADS, value=num_kv_heads,
                                          description=t("kvcache.kv_heads"), style=style),
        "head_dim": W.SelectionSlider(options=HEAD_DIMS, value=head_dim,
                                      description=t("kvcache.head_dim"), style=style),
        "num_layers": W.IntSlider(value=num_layers, min=1, max=128, description=t("kvcache.layers"),
                                  style=style),
        "context": W.SelectionSlider(options=CONTEXTS, value=context, description=t("kvcache.context"),
                                     style=style),
        "dtype": W.Dropdown(options=list(DTYPES), value=dtype, description=t("kvcache.dtype"),
                            style=style),
    }
    return Explorer(controls, draw_kv_cache, update=update_kv_cache, animated=_animated)
