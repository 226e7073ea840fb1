"""Chapter 01's schematic: from token vectors x to queries, keys and values, to the output.

``qkv_schematic(n, d_model, d_k, d_v)`` draws the data flow of one attention layer with the
shape of every tensor:

    x (n, d_model) -> x W_Q, x W_K, x W_V -> q (n, d_k), k (n, d_k), v (n, d_v)
    -> scores q k^T / sqrt(d_k) (n, n) -> softmax over each row -> weights (n, n)
    -> weighted sum of the rows of v: weights @ v -> output (n, d_v)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from attnkit.i18n import register, t
from attnkit.viz import setup_fonts

__all__ = ["qkv_schematic"]

register({
    "schematics.qkv.title": {"en": "One attention layer: n = {n} tokens, d_model = {dm}, d_k = {dk}, d_v = {dv}",
                             "zh": "一层注意力：n = {n} 个词元，d_model = {dm}，d_k = {dk}，d_v = {dv}"},
    "schematics.qkv.x": {"en": "x: token vectors", "zh": "x：词元向量"},
    "schematics.qkv.q": {"en": "q: queries", "zh": "q：查询"},
    "schematics.qkv.k": {"en": "k: keys", "zh": "k：键"},
    "schematics.qkv.v": {"en": "v: values", "zh": "v：值"},
    "schematics.qkv.scores": {"en": "scores", "zh": "分数"},
    "schematics.qkv.softmax": {"en": "softmax\nover each row", "zh": "对每一行\n做 softmax"},
    "schematics.qkv.weights": {"en": "weights\n(rows sum to 1)", "zh": "注意力权重\n（每行之和为 1）"},
    "schematics.qkv.mix": {"en": "weighted sum\nof the rows of v", "zh": "对 v 的各行\n加权求和"},
    "schematics.qkv.output": {"en": "output", "zh": "输出"},
})

# box colours by role: data, a learned matrix, an operation
_DATA, _WEIGHT, _OP = "#dbe9f6", "#fde2c4", "#e4f2de"


def _box(ax, x, y, text, color, w=1.5, h=0.8, size=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03,rounding_size=0.12",
                                fc=color, ec="#555555", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 1.1, "shrinkA": 0, "shrinkB": 0})


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def qkv_schematic(n: int = 4, d_model: int = 8, d_k: int = 4, d_v: int = 4):
    """The data flow of scaled dot-product self-attention, with shapes; returns the Figure."""
    n, d_model, d_k, d_v = (_positive_int(name, v) for name, v in
                            (("n", n), ("d_model", d_model), ("d_k", d_k), ("d_v", d_v)))
    setup_fonts()  # the bundled CJK font, for the Chinese labels
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 5.4)
    ax.axis("off")
    rows = {"q": 4.3, "k": 2.7, "v": 1.1}
    widths = {"q": d_k, "k": d_k, "v": d_v}

    _box(ax, 1.0, rows["k"], f"{t('schematics.qkv.x')}\n({n}, {d_model})", _DATA, w=1.7, h=1.0)
    for role, y in rows.items():
        _arrow(ax, (1.85, rows["k"]), (3.05, y))
        _box(ax, 3.8, y, f"W_{role.upper()}\n({d_model}, {widths[role]})", _WEIGHT, w=1.4)
        _arrow(ax, (4.5, y), (5.2, y))
        _box(ax, 6.0, y, f"{t('schematics.qkv.' + role)}\n({n}, {widths[role]})", _DATA, w=1.6)

    scores_y = (rows["q"] + rows["k"]) / 2
    _arrow(ax, (6.8, rows["q"]), (7.55, scores_y + 0.2))
    _arrow(ax, (6.8, rows["k"]), (7.55, scores_y - 0.2))
    _box(ax, 8.4, scores_y, f"{t('schematics.qkv.scores')}\nq kᵀ / √d_k\n({n}, {n})", _OP, w=1.7, h=1.2)
    _arrow(ax, (9.25, scores_y), (9.85, scores_y))
    _box(ax, 10.6, scores_y, t("schematics.qkv.softmax"), _OP, w=1.5, h=1.0)
    _arrow(ax, (11.35, scores_y), (11.95, scores_y))
    _box(ax, 12.8, scores_y, f"{t('schematics.qkv.weights')}\n({n}, {n})", _DATA, w=1.7, h=1.2)

    mix_y = rows["v"]
    _arrow(ax, (12.8, scores_y - 0.6), (10.9, mix_y + 0.5))
    _arrow(ax, (6.8, mix_y), (9.75, mix_y))
    _box(ax, 10.6, mix_y, f"{t('schematics.qkv.mix')}\nweights @ v", _OP, w=1.7, h=1.1)
    _arrow(ax, (11.45, mix_y), (11.95, mix_y))
    _box(ax, 12.8, mix_y, f"{t('schematics.qkv.output')}\n({n}, {d_v})", _DATA, w=1.7, h=1.0)

    ax.set_title(t("schematics.qkv.title", n=n, dm=d_model, dk=d_k, dv=d_v))
    fig.tight_layout()
    return fig
