"""Chapter 05's explorer: what fits in a GPU's memory beside the weights, and how fast it can decode.

Inputs: the model's size in parameters and its dtype (weights and cache alike), the GPU's memory
and bandwidth, the shape of its attention (layers, query heads, kv heads, head size), the
attention type and the context length. The left panel splits the GPU's memory into the weights
and the caches of the largest batch of sequences that fits, for MHA, GQA, MQA and MLA; the right
panel is the tokens/s upper bound of the chosen type as the batch grows (each decode step reads
the weights once and every sequence's cache once). The numbers come from
``attnkit.gqa.memory_budget``; activations are left out, so both are upper bounds.
"""

from __future__ import annotations

from functools import lru_cache

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np

from attnkit.gqa import KINDS, memory_budget
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register({
    "kvcache.kind.mha": {"en": "MHA", "zh": "MHA"},
    "kvcache.kind.gqa": {"en": "GQA", "zh": "GQA"},
    "kvcache.kind.mqa": {"en": "MQA", "zh": "MQA"},
    "kvcache.kind.mla": {"en": "MLA", "zh": "MLA"},
    "kvcache.params": {"en": "parameters", "zh": "参数量"},
    "kvcache.dtype": {"en": "dtype", "zh": "数据类型"},
    "kvcache.memory": {"en": "GPU memory (GiB)", "zh": "显存（GiB）"},
    "kvcache.bandwidth": {"en": "bandwidth (TB/s)", "zh": "带宽（TB/s）"},
    "kvcache.layers": {"en": "layers", "zh": "层数"},
    "kvcache.heads": {"en": "query heads", "zh": "查询头数"},
    "kvcache.kv_heads": {"en": "kv heads (GQA)", "zh": "键值头数（GQA）"},
    "kvcache.head_dim": {"en": "head dim", "zh": "头维度"},
    "kvcache.attention": {"en": "attention", "zh": "注意力类型"},
    "kvcache.context": {"en": "context (tokens)", "zh": "上下文（词元数）"},
    "kvcache.mem_title": {"en": "GPU memory: the weights, then the caches of the largest batch",
                          "zh": "显存：先放权重，再放能容纳的最大批次的缓存"},
    "kvcache.share": {"en": "share of GPU memory (weights | caches of the largest batch)",
                      "zh": "占显存的比例（权重 | 最大批次的缓存）"},
    "kvcache.fits": {"en": "batch ≤ {b} · at batch 1 ≤ {c} tok.", "zh": "批次 ≤ {b} · 批次 1 时 ≤ {c} 词元"},
    "kvcache.no_fit": {"en": "the weights alone do not fit", "zh": "光是权重就放不下"},
    "kvcache.speed_title": {"en": "{kind}: ≤ {a:,.0f} tok/s at batch 1, ≤ {b:,.0f} at {B}",
                            "zh": "{kind}：批次 1 ≤ {a:,.0f} 词元/秒，批次 {B} ≤ {b:,.0f}"},
    "kvcache.speed_none": {"en": "{kind}: not one sequence of {ctx} tokens fits",
                           "zh": "{kind}：连一条 {ctx} 个词元的序列都放不下"},
    "kvcache.batch": {"en": "batch (sequences decoded together)", "zh": "批次大小（同时解码的序列数）"},
    "kvcache.tps": {"en": "tokens/s, upper bound from bandwidth", "zh": "每秒词元数（带宽给出的上限）"},
    "kvcache.total": {"en": "all sequences", "zh": "所有序列合计"},
    "kvcache.each": {"en": "each sequence", "zh": "每条序列"},
})


DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
PARAMS = (("1B", 10**9), ("3B", 3 * 10**9), ("7B", 7 * 10**9), ("8B", 8 * 10**9), ("13B", 13 * 10**9),
          ("34B", 34 * 10**9), ("70B", 70 * 10**9))
MEMORY_GIB = (16, 24, 40, 48, 80, 96, 141, 192)
BANDWIDTH_TB_S = (0.9, 1.6, 2.0, 3.35, 4.8, 8.0)
HEADS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
HEAD_DIMS = (32, 64, 96, 128, 192, 256)
MAX_BATCH_SHOWN = 4096  # the right panel's x range (fixed, so its tick labels stay static)
COLORS = {"mha": "tab:gray", "gqa": "tab:blue", "mqa": "tab:green", "mla": "tab:red"}


def kv_cache_explorer_data(num_params: int, dtype: str, memory_gib: int, bandwidth_tb_s: float,
                           num_layers: int, num_heads: int, num_kv_heads: int, head_dim: int,
                           attention: str, context: int) -> dict:
    """The numbers behind the picture.

    ``num_kv_heads`` larger than ``num_heads`` is clamped to ``num_heads`` (the sliders move
    independently). Returns the effective kv heads, ``budget[kind]`` (``attnkit.gqa.memory_budget``
    for every kind), and for ``attention`` the batches of the right panel with their tokens/s
    bounds, all sequences together (``total``) and each one (``each``).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if attention not in KINDS:
        raise ValueError(f"attention must be one of {KINDS}, got {attention!r}")
    kv = min(num_kv_heads, num_heads)
    bw = bandwidth_tb_s * 1e12
    budget = {k: memory_budget(k, num_params, memory_gib * 2**30, context, num_layers, num_heads, kv,
                               head_dim, dtype=DTYPES[dtype], bandwidth_bytes_per_s=bw) for k in KINDS}
    chosen = budget[attention]
    top = min(chosen["max_batch"], MAX_BATCH_SHOWN)
    batches = np.unique(np.geomspace(1, top, 48).round().astype(int)) if top >= 1 else np.zeros(0, int)
    read = chosen["weights_bytes"] + batches * chosen["cache_bytes_per_sequence"]  # bytes per step
    total = batches * bw / read if top >= 1 else np.zeros(0)
    return {"num_kv_heads": kv, "budget": budget, "attention": attention, "batches": batches,
            "total": total, "each": total / np.maximum(batches, 1)}


def _label(kind: str) -> str:
    return t("kvcache.kind." + kind)


def _bars(data, memory_gib):
    """Per kind: (weights width, cache start, cache width, text) as shares of the GPU memory."""
    M = memory_gib * 2**30
    out = []
    for k in KINDS:
        r = data["budget"][k]
        w = r["weights_bytes"] / M
        cache = r["max_batch"] * r["cache_bytes_per_sequence"] / M
        text = (t("kvcache.no_fit") if w >= 1 else
                t("kvcache.fits", b=f"{r['max_batch']:,}", c=f"{r['max_context']:,}"))
        out.append((min(w, 1.0), min(w, 1.0), cache, text))
    return out


def _speed_title(data, context):
    r = data["budget"][data["attention"]]
    kind = _label(data["attention"])
    if r["max_batch"] == 0:
        return t("kvcache.speed_none", kind=kind, ctx=context)
    return t("kvcache.speed_title", kind=kind, a=r["tokens_per_s_batch1"], b=r["tokens_per_s_max_batch"],
             B=f"{r['max_batch']:,}")


def speed_decades(data) -> tuple[int, int]:
    """The right panel's y range as powers of ten: from the decade holding the slowest
    per-sequence rate to one decade above the fastest total (the top decade is left free for the
    legend). Nothing fits: one decade around 1."""
    values = np.concatenate([np.asarray(data["total"], float), np.asarray(data["each"], float)])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return 0, 2
    return int(np.floor(np.log10(values.min()))), int(np.ceil(np.log10(values.max()))) + 1


@lru_cache(maxsize=32)
def _data(*args):
    """kv_cache_explorer_data, computed once per state for the layout key, the draw and the update."""
    return kv_cache_explorer_data(*args)


def _layout(num_params, dtype, memory_gib, bandwidth_tb_s, num_layers, num_heads, num_kv_heads, head_dim,
            attention, context):
    """One kept figure per y range (its tick labels are static within it)."""
    return speed_decades(_data(num_params, dtype, memory_gib, bandwidth_tb_s, num_layers, num_heads, num_kv_heads,
                               head_dim, attention, context))


def draw_kv_cache(num_params: int, dtype: str, memory_gib: int, bandwidth_tb_s: float, num_layers: int,
                  num_heads: int, num_kv_heads: int, head_dim: int, attention: str, context: int):
    """(Figure, data): the memory split per attention type and the tokens/s bound of one type."""
    data = _data(num_params, dtype, memory_gib, bandwidth_tb_s, num_layers, num_heads, num_kv_heads, head_dim,
                 attention, context)
    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(12, 3.9), gridspec_kw={
        "width_ratios": [1.25, 1], "left": 0.06, "right": 0.99, "bottom": 0.15, "top": 0.9, "wspace": 0.22})
    ys = np.arange(len(KINDS))[::-1]
    bars = _bars(data, memory_gib)
    ax_m.barh(ys, [b[0] for b in bars], height=0.6, color="#bdbdbd", edgecolor="black", linewidth=0.5)
    ax_m.barh(ys, [b[2] for b in bars], left=[b[1] for b in bars], height=0.6,
              color=[COLORS[k] for k in KINDS], edgecolor="black",
              linewidth=[2.0 if k == attention else 0.5 for k in KINDS])
    for y, b in zip(ys, bars, strict=True):
        ax_m.text(1.02, y, b[3], va="center", ha="left", fontsize=8.5)
    ax_m.axvline(1.0, color="black", lw=1, ls="--")
    ax_m.set_xlim(0, 1.62)
    ax_m.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"])
    ax_m.set_yticks(ys, [_label(k) for k in KINDS])
    ax_m.set_xlabel(t("kvcache.share"), fontsize=9)
    ax_m.set_title(t("kvcache.mem_title"), fontsize=10)
    for side in ("top", "right"):
        ax_m.spines[side].set_visible(False)

    color = COLORS[attention]
    ax_s.plot(data["batches"], data["total"], color=color, lw=2)
    ax_s.plot(data["batches"], data["each"], color=color, lw=1.2, ls="--")
    ax_s.plot(data["batches"][-1:], data["total"][-1:], "o", color=color, ms=6)
    # a legend of neutral proxies, static: the curves never reach its corner (the top decade of
    # the y range is above every value, see speed_decades)
    proxies = [plt.Line2D([], [], color="black", lw=2), plt.Line2D([], [], color="black", lw=1.2, ls="--")]
    ax_s.legend(proxies, [t("kvcache.total"), t("kvcache.each")], loc="upper left", fontsize=8)
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_xlim(1, MAX_BATCH_SHOWN)
    lo, hi = speed_decades(data)
    ax_s.set_ylim(10.0**lo, 10.0**hi)
    ax_s.grid(True, which="major", alpha=0.3)
    ax_s.set_xlabel(t("kvcache.batch"), fontsize=9)
    ax_s.set_ylabel(t("kvcache.tps"), fontsize=9)
    ax_s.set_title(_speed_title(data, f"{context:,}"), fontsize=10)
    return fig, data


def update_kv_cache(fig, num_params: int, dtype: str, memory_gib: int, bandwidth_tb_s: float,
                    num_layers: int, num_heads: int, num_kv_heads: int, head_dim: int, attention: str,
                    context: int) -> dict:
    """Move the artists of a figure made by ``draw_kv_cache`` to other inputs."""
    data = _data(num_params, dtype, memory_gib, bandwidth_tb_s, num_layers, num_heads, num_kv_heads, head_dim,
                 attention, context)
    ax_m, ax_s = fig.axes
    n = len(KINDS)
    weights, caches = ax_m.patches[:n], ax_m.patches[n:2 * n]
    for k, wbar, cbar, text, b in zip(KINDS, weights, caches, ax_m.texts, _bars(data, memory_gib), strict=True):
        wbar.set_width(b[0])
        cbar.set_x(b[1])
        cbar.set_width(b[2])
        cbar.set_linewidth(2.0 if k == attention else 0.5)
        text.set_text(b[3])
    total, each, end = ax_s.lines[:3]
    color = COLORS[attention]
    total.set_data(data["batches"], data["total"])
    each.set_data(data["batches"], data["each"])
    end.set_data(data["batches"][-1:], data["total"][-1:])
    for line in (total, each, end):
        line.set_color(color)
    ax_s.title.set_text(_speed_title(data, f"{context:,}"))
    return data


def _animated(fig):
    """What update_kv_cache changes, redrawn over a kept background (the Explorer blits)."""
    ax_m, ax_s = fig.axes
    return [*ax_m.patches, *ax_m.texts, *ax_s.lines[:3], ax_s.title]


def kv_cache_explorer(num_params: int = 7 * 10**9, dtype: str = "bfloat16", memory_gib: int = 80,
                      bandwidth_tb_s: float = 3.35, num_layers: int = 32, num_heads: int = 32,
                      num_kv_heads: int = 8, head_dim: int = 128, attention: str = "gqa",
                      context: int = 32768) -> Explorer:
    """The chapter 05 explorer (starts at a 7B model with LLaMA-2-7B's attention shape, GQA with
    8 kv heads, on an 80 GiB GPU with the H100 SXM's 3.35 TB/s)."""
    style = {"description_width": "initial"}
    controls = {
        "num_params": W.SelectionSlider(options=PARAMS, value=num_params, description=t("kvcache.params"),
                                        style=style),
        "dtype": W.Dropdown(options=list(DTYPES), value=dtype, description=t("kvcache.dtype"), style=style),
        "memory_gib": W.SelectionSlider(options=MEMORY_GIB, value=memory_gib, description=t("kvcache.memory"),
                                        style=style),
        "bandwidth_tb_s": W.SelectionSlider(options=BANDWIDTH_TB_S, value=bandwidth_tb_s,
                                            description=t("kvcache.bandwidth"), style=style),
        "num_layers": W.IntSlider(value=num_layers, min=1, max=128, description=t("kvcache.layers"),
                                  style=style),
        "num_heads": W.SelectionSlider(options=HEADS, value=num_heads, description=t("kvcache.heads"),
                                       style=style),
        "num_kv_heads": W.SelectionSlider(options=HEADS, value=num_kv_heads,
                                          description=t("kvcache.kv_heads"), style=style),
        "head_dim": W.SelectionSlider(options=HEAD_DIMS, value=head_dim,
                                      description=t("kvcache.head_dim"), style=style),
        "attention": W.Dropdown(options=[(_label(k), k) for k in KINDS], value=attention,
                                description=t("kvcache.attention"), style=style),
        "context": W.SelectionSlider(options=CONTEXTS, value=context, description=t("kvcache.context"),
                                     style=style),
    }
    return Explorer(controls, draw_kv_cache, update=update_kv_cache, animated=_animated, layout=_layout)
