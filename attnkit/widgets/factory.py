"""Chapter 11's explorer: a sequence length and a memory budget -> which mechanisms fit, and what each costs.

``budget_table(seq_len, budget_mb, mode)`` is the pure function behind it: for every mechanism of
``AttentionFactory.available()`` (one layer of the seed's size, d_model 512, 8 heads, batch 1,
float32) the memory of ``AttentionSelector.memory_mb`` in that mode (forward, training, decode)
and whether it fits the budget. ``factory_explorer()`` draws one horizontal bar per mechanism
on a log axis, coloured by whether it fits, with the budget as a vertical line.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from attnkit.factory import (
    CAUSAL_ONLY,
    NO_CAUSAL,
    AttentionConfig,
    AttentionFactory,
    AttentionSelector,
)
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register({
    "factory.w.seq_len": {"en": "sequence length N", "zh": "序列长度 N"},
    "factory.w.budget": {"en": "budget (MB)", "zh": "内存预算（MB）"},
    "factory.w.mode": {"en": "memory of", "zh": "计算哪种内存"},
    "factory.w.mode.forward": {"en": "a forward pass", "zh": "一次前向计算"},
    "factory.w.mode.training": {"en": "a training step", "zh": "一次训练步"},
    "factory.w.mode.decode": {"en": "decoding one token", "zh": "解码一个词元"},
    "factory.w.title": {"en": "N = {n:,}, {mode}: {k} of {total} fit in {budget:,} MB",
                        "zh": "N = {n:,}，{mode}：{total} 种机制中有 {k} 种能放进 {budget:,} MB"},
    "factory.w.xlabel": {"en": "memory of one layer (MB, log scale; d_model 512, 8 heads, batch 1, float32)",
                         "zh": "单层所需内存（MB，对数坐标；d_model 512，8 个头，批次大小 1，float32）"},
    "factory.w.fits": {"en": "fits", "zh": "放得下"},
    "factory.w.too_big": {"en": "too big", "zh": "放不下"},
    "factory.w.no_causal": {"en": "cannot decode (no causal form)", "zh": "不能逐词元解码（没有因果形式）"},
})

LENGTHS = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
BUDGETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
MODES = ("forward", "training", "decode")
D_MODEL, N_HEADS = 512, 8
COLORS = {"fits": "tab:green", "too_big": "0.7", "no_causal": "white"}


def _config(name: str, seq_len: int, mode: str) -> AttentionConfig:
    opts = {"max_seq_len": seq_len} if name in ("linformer", "cosformer") else {}
    return AttentionConfig(attention_type=name, d_model=D_MODEL, n_heads=N_HEADS,
                           causal=mode == "decode" or name in CAUSAL_ONLY, **opts)  # recurrences: causal only


def budget_table(seq_len: int, budget_mb: float, mode: str = "forward") -> dict:
    """``{name: {"mb": float or None, "fits": bool}}`` for every mechanism, in chapter order, plus
    ``"fit"`` (the names that fit). ``mb`` is ``AttentionSelector.memory_mb`` of one layer; None
    for a mechanism that cannot run in this mode (linformer and nystrom cannot decode)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise ValueError(f"budget_mb must be a number > 0, got {budget_mb!r}")
    rows = {}
    for name in AttentionFactory.available():
        if mode == "decode" and name in NO_CAUSAL:
            rows[name] = {"mb": None, "fits": False}
            continue
        mb = AttentionSelector.memory_mb(_config(name, seq_len, mode), seq_len, mode=mode)
        rows[name] = {"mb": mb, "fits": mb <= budget_mb}
    return {"rows": rows, "fit": [n for n, r in rows.items() if r["fits"]]}


_CACHE: dict[tuple, dict] = {}


def _table(seq_len, mode):
    """The memory of every mechanism at (seq_len, mode), computed on the first visit (the budget
    only colours the bars; counting the pairs of the sparse patterns is the slow part)."""
    key = (seq_len, mode)
    if key not in _CACHE:
        _CACHE[key] = budget_table(seq_len, 1.0, mode)["rows"]
    return _CACHE[key]


def explorer_data(seq_len: int, budget_mb: float, mode: str) -> dict:
    rows = {n: {"mb": r["mb"], "fits": r["mb"] is not None and r["mb"] <= budget_mb}
            for n, r in _table(seq_len, mode).items()}
    return {"rows": rows, "fit": [n for n, r in rows.items() if r["fits"]], "seq_len": seq_len,
            "budget_mb": budget_mb, "mode": mode}


XLIM = (0.5, 5e6)  # MB: every bar and budget over the whole control domain lies inside (a test checks)


def _status(r) -> str:
    return "no_causal" if r["mb"] is None else ("fits" if r["fits"] else "too_big")


def _title(data) -> str:
    return t("factory.w.title", n=data["seq_len"], mode=t(f"factory.w.mode.{data['mode']}"),
             k=len(data["fit"]), total=len(data["rows"]), budget=data["budget_mb"])


def draw(seq_len, budget_mb, mode):
    data = explorer_data(seq_len, budget_mb, mode)
    lo, hi = XLIM
    names = list(data["rows"])
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    fig.subplots_adjust(left=0.16, right=0.98, top=0.92, bottom=0.12)
    for i, name in enumerate(names):
        r = data["rows"][name]
        s = _status(r)
        ax.barh(i, (r["mb"] or lo) - lo, left=lo, color=COLORS[s], edgecolor="0.4", linewidth=0.5)
    ax.axvline(budget_mb, color="tab:red", lw=1.5)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(t("factory.w.xlabel"), fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(_title(data), fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[s], ec="0.4", lw=0.5) for s in COLORS]
    ax.legend(handles, [t(f"factory.w.{s}") for s in COLORS], loc="lower right", fontsize=7, framealpha=0.9)
    return fig, data


def update(fig, seq_len, budget_mb, mode):
    """Move the bars, their colours, the budget line and the title of the figure ``draw`` made."""
    data = explorer_data(seq_len, budget_mb, mode)
    ax = fig.axes[0]
    lo = ax.get_xlim()[0]
    for bar, r in zip(ax.patches, data["rows"].values(), strict=True):
        bar.set_width((r["mb"] or lo) - lo)
        bar.set_facecolor(COLORS[_status(r)])
    ax.lines[0].set_xdata([budget_mb, budget_mb])
    ax.title.set_text(_title(data))
    return data


def animated(fig):
    ax = fig.axes[0]
    return [*ax.patches, ax.lines[0], ax.title, ax.legend_]


def factory_explorer(seq_len: int = 8192, budget_mb: float = 200, mode: str = "forward") -> Explorer:
    _table(LENGTHS[-1], mode)  # the longest length is the slowest to count (sparse pairs): once, up front
    controls = {
        "seq_len": W.SelectionSlider(options=list(LENGTHS), value=seq_len, description=t("factory.w.seq_len"),
                                     continuous_update=False),
        "budget_mb": W.SelectionSlider(options=list(BUDGETS), value=budget_mb, description=t("factory.w.budget"),
                                       continuous_update=False),
        "mode": W.Dropdown(options=[(t(f"factory.w.mode.{m}"), m) for m in MODES], value=mode,
                           description=t("factory.w.mode")),
    }
    return Explorer(controls, draw, dpi=72, update=update, animated=animated)
