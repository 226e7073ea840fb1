"""Chapter 04's schematic: multi-head attention as a data flow, with the shape of every tensor.

``multi_head_schematic(num_heads)`` draws the five steps of Vaswani et al. (2017, §3.2.2):
project ``x`` to Q, K, V; cut each one's last dimension into ``num_heads`` slices of
``d_k = E / h`` features; run one attention per slice, side by side; concatenate the outputs
back to width ``E``; mix them with ``W_O``. Each head keeps its colour from its slice of Q, K, V
to its slice of the concatenation, so the picture shows which features each head owns.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from attnkit import viz  # the bundled CJK font, the palette
from attnkit.i18n import register, t

__all__ = ["multi_head_schematic", "STEPS"]

register({
    "schematics.heads.title": {"en": "Multi-head attention with h = {h} heads: E = {e}, d_k = E / h = {dk}",
                               "zh": "h = {h} 个头的多头注意力：E = {e}，d_k = E / h = {dk}"},
    "schematics.heads.step.project": {"en": "1. project", "zh": "1. 投影"},
    "schematics.heads.step.split": {"en": "2. split into h heads", "zh": "2. 拆成 h 个头"},
    "schematics.heads.step.attend": {"en": "3. attend, every head\nin parallel", "zh": "3. 各头并行\n计算注意力"},
    "schematics.heads.step.concat": {"en": "4. concatenate", "zh": "4. 拼接"},
    "schematics.heads.step.mix": {"en": "5. mix with W_O", "zh": "5. 用 W_O 混合"},
    "schematics.heads.input": {"en": "input x", "zh": "输入 x"},
    "schematics.heads.output": {"en": "output", "zh": "输出"},
    "schematics.heads.head": {"en": "head {i}", "zh": "头 {i}"},
    "schematics.heads.slice": {"en": "features {a}..{b}", "zh": "特征 {a}..{b}"},
    "schematics.heads.same_width": {"en": "h heads × d_k = E: as wide as x",
                                    "zh": "h 个头 × d_k = E：与 x 一样宽"},
})

STEPS = ("project", "split", "attend", "concat", "mix")  # the order of the five steps drawn

_COLOURS = viz.PALETTE  # the course's colour-blind-safe palette


def _arrow(ax, a, b, **kw):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=1.0, color="0.3",
                                 shrinkA=0, shrinkB=0, **kw))


def _striped(ax, x, y, w, h, n, label=None):
    """A tensor drawn as a column of ``n`` coloured slices of its last dim (slice 0 on top)."""
    for i in range(n):
        ax.add_patch(Rectangle((x, y + h - (i + 1) * h / n), w, h / n, facecolor=_COLOURS[i % len(_COLOURS)],
                               alpha=0.55, edgecolor="white", lw=1.0))
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="0.2", lw=1.0))
    if label:
        ax.text(x + w / 2, y + h + 0.12, label, ha="center", va="bottom", fontsize=9)


def multi_head_schematic(num_heads: int = 4, embed_dim: int = 16) -> Figure:
    """Figure: x -> Q, K, V -> h heads -> concat -> W_O, each tensor labelled with its shape."""
    if not isinstance(num_heads, int) or not 1 <= num_heads <= 8:
        raise ValueError(f"num_heads must be an int in 1..8 (one colour each), got {num_heads!r}")
    if not isinstance(embed_dim, int) or embed_dim < 1 or embed_dim % num_heads:
        raise ValueError(f"embed_dim must be a positive int divisible by num_heads={num_heads}, "
                         f"got {embed_dim!r}")
    h, dk = num_heads, embed_dim // num_heads
    fig, ax = plt.subplots(figsize=(10, 4.6))
    ax.set_xlim(0, 10.4)
    ax.set_ylim(-0.9, 6.0)
    ax.axis("off")
    top, bottom = 4.6, 0.4                                   # the tensors span y in [bottom, top]
    height = top - bottom

    # input x (B, L, E): one plain column
    ax.add_patch(Rectangle((0.2, bottom), 0.5, height, facecolor="0.85", edgecolor="0.2"))
    ax.text(0.45, top + 0.12, t("schematics.heads.input"), ha="center", va="bottom", fontsize=9)
    ax.text(0.45, bottom - 0.2, "(B, L, E)", ha="center", va="top", fontsize=8, family="monospace")

    # 1-2. Q, K, V (B, L, E), each cut into h slices of d_k features
    xs = (1.7, 2.35, 3.0)
    for j, (name, x) in enumerate(zip(("Q", "K", "V"), xs, strict=True)):
        _striped(ax, x, bottom, 0.5, height, h)
        ax.text(x + 0.25, bottom - 0.2, f"{name}=xW_{name}", ha="center", va="top", fontsize=7,
                family="monospace")
        _arrow(ax, (0.7, top - 0.1), (x + 0.25, top), connectionstyle=f"arc3,rad={-0.25 - 0.1 * j}")
    ax.text(2.6, bottom - 0.55, "(B, L, E) → (B, h, L, d_k)", ha="center", va="top", fontsize=8,
            family="monospace")
    for i in range(h):                                       # which features each slice holds
        y = top - (i + 0.5) * height / h
        ax.text(1.65, y, t("schematics.heads.slice", a=i * dk, b=(i + 1) * dk - 1), ha="right",
                va="center", fontsize=7, color=_COLOURS[i % len(_COLOURS)])

    # 3. one attention per head, side by side
    box_h = height / h * 0.7
    for i in range(h):
        y = top - (i + 0.5) * height / h
        ax.add_patch(Rectangle((4.5, y - box_h / 2), 2.0, box_h, facecolor=_COLOURS[i % len(_COLOURS)], alpha=0.25,
                               edgecolor=_COLOURS[i % len(_COLOURS)], lw=1.2))
        ax.text(5.5, y + box_h * 0.18, t("schematics.heads.head", i=i), ha="center", va="center", fontsize=8)
        ax.text(5.5, y - box_h * 0.22, "softmax(QᵢKᵢᵀ/√d_k)Vᵢ", ha="center", va="center", fontsize=7)
        _arrow(ax, (3.5, y), (4.5, y))
        _arrow(ax, (6.5, y), (7.2, y))
    ax.text(5.5, bottom - 0.2, "(B, h, L, d_k)", ha="center", va="top", fontsize=8, family="monospace")

    # 4. concatenation (B, L, E): the heads' outputs side by side again
    _striped(ax, 7.2, bottom, 0.5, height, h, label="Concat")
    ax.text(7.45, bottom - 0.2, "(B, L, E)", ha="center", va="top", fontsize=8, family="monospace")
    ax.text(7.45, bottom - 0.55, t("schematics.heads.same_width"), ha="center", va="top", fontsize=7)

    # 5. W_O mixes the heads: the output has no per-head slices any more
    _arrow(ax, (7.7, bottom + height / 2), (8.4, bottom + height / 2))
    ax.text(8.05, bottom + height / 2 + 0.12, "W_O", ha="center", va="bottom", fontsize=9)
    ax.add_patch(Rectangle((8.4, bottom), 0.5, height, facecolor="0.7", edgecolor="0.2"))
    ax.text(8.65, top + 0.12, t("schematics.heads.output"), ha="center", va="bottom", fontsize=9)
    ax.text(8.65, bottom - 0.2, "(B, L, E)", ha="center", va="top", fontsize=8, family="monospace")

    for key, x in zip(STEPS, (1.2, 2.6, 5.5, 7.45, 8.6), strict=True):
        ax.text(x, 5.55, t("schematics.heads.step." + key), ha="center", va="center", fontsize=8.5,
                color="0.25")
    ax.set_title(t("schematics.heads.title", h=h, e=embed_dim, dk=dk), fontsize=10)
    fig.tight_layout()
    return fig
