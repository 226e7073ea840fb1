"""Chapter 06's schematics: RoPE as a rotation of channel pairs, and the two ways to pair channels.

* ``rotation_figure(theta, positions, pairs)``: one pair of channels turned by m·θ at positions
  m = 0, 1, 2, ...; then a query at position m and a key at position n, for two (m, n) the same
  distance apart: the angle between them, and so their dot product, is the same.
* ``pairing_figure(head_dim)``: the channels of one head paired interleaved (2i, 2i+1) and
  half-split (i, i + d/2), and the reordering of channels that turns one pairing into the other.

Pure functions: numbers in, a matplotlib Figure out, every label from ``attnkit.i18n``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.patches import Arc, Rectangle

import attnkit.viz  # the CJK font for Chinese labels, the palette
from attnkit.i18n import register, t

register({
    "schematics.rope.turn_title": {"en": "one pair of channels, turned by m·θ", "zh": "一对通道，转过 m·θ"},
    "schematics.rope.position": {"en": "m = {m}", "zh": "m = {m}"},
    "schematics.rope.qk_title": {"en": "query at m = {m}, key at n = {n}", "zh": "查询在 m = {m}，键在 n = {n}"},
    "schematics.rope.gap": {"en": "angle (m − n)·θ = {k}θ", "zh": "夹角 (m − n)·θ = {k}θ"},
    "schematics.rope.score": {"en": "q·k = cos {k}θ = {s:.3f}", "zh": "q·k = cos {k}θ = {s:.3f}"},
    "schematics.rope.query": {"en": "q", "zh": "q"},
    "schematics.rope.key": {"en": "k", "zh": "k"},
    "schematics.rope.interleaved": {"en": "interleaved: pair i = channels (2i, 2i+1)",
                                    "zh": "相邻交错配对：第 i 对 = 通道 (2i, 2i+1)"},
    "schematics.rope.half_split": {"en": "half-split: pair i = channels (i, i + d/2)",
                                   "zh": "前后两半配对：第 i 对 = 通道 (i, i + d/2)"},
    "schematics.rope.pairing_title": {"en": "the same pairs, channels reordered (d = {d}; colour = pair)",
                                      "zh": "同样的通道对，只是通道换了顺序（d = {d}；颜色 = 通道对）"},
})

_COLOURS = attnkit.viz.PALETTE  # the course's colour-blind-safe palette


def _circle_axes(ax) -> None:
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.8", lw=1))
    ax.axhline(0, color="0.9", lw=0.8, zorder=0)
    ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _arrow(ax, angle: float, colour: str, label: str, width: float = 1.6):
    tip = (math.cos(angle), math.sin(angle))
    ax.annotate("", xy=tip, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": colour, "lw": width})
    ax.text(1.22 * tip[0], 1.22 * tip[1], label, color=colour, ha="center", va="center", fontsize=9)


def rotation_figure(theta: float = math.pi / 6, positions=(0, 1, 2, 3), pairs=((3, 1), (6, 4))):
    """One pair (1, 0) at each of ``positions`` turned by m·θ; then q at m, k at n for each (m, n).

    With q = k = (1, 0) before the rotation, the score after it is cos((m − n)θ): the same for
    every (m, n) the same distance apart. The arrows are annotations whose ``xy`` is their tip.
    """
    if not theta > 0:
        raise ValueError(f"theta must be a positive angle in radians, got {theta!r}")
    fig, axes = plt.subplots(1, 1 + len(pairs), figsize=(3.3 * (1 + len(pairs)), 3.4))
    ax = axes[0]
    _circle_axes(ax)
    for idx, m in enumerate(positions):
        _arrow(ax, m * theta, _COLOURS[idx % len(_COLOURS)], t("schematics.rope.position", m=m))
    ax.set_title(t("schematics.rope.turn_title"), fontsize=10)
    for ax, (m, n) in zip(axes[1:], pairs, strict=True):
        _circle_axes(ax)
        _arrow(ax, m * theta, "#d62728", t("schematics.rope.query"), width=2.2)
        _arrow(ax, n * theta, "#1f77b4", t("schematics.rope.key"), width=2.2)
        lo, hi = sorted((m * theta, n * theta))
        ax.add_patch(Arc((0, 0), 0.7, 0.7, theta1=math.degrees(lo), theta2=math.degrees(hi), color="0.3", lw=1.2))
        ax.set_title(t("schematics.rope.qk_title", m=m, n=n), fontsize=10)
        ax.set_xlabel(t("schematics.rope.gap", k=m - n) + "\n"
                      + t("schematics.rope.score", k=m - n, s=math.cos((m - n) * theta)), fontsize=9)
    fig.tight_layout()
    return fig


def half_split_order(head_dim: int) -> list[int]:
    """The interleaved channel that goes to each place of the half-split layout: 0, 2, 4, ..., 1, 3, 5, ..."""
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
    return list(range(0, head_dim, 2)) + list(range(1, head_dim, 2))


def pairing_figure(head_dim: int = 8):
    """Two rows of channel boxes coloured by pair: interleaved above, half-split below, lines between.

    Box j of the lower row holds interleaved channel ``half_split_order(head_dim)[j]``; the line
    from each upper box goes to where its channel lands.
    """
    order = half_split_order(head_dim)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * head_dim + 2.5), 2.9))
    top, bottom = 1.6, 0.0
    for j in range(head_dim):
        pair = j // 2  # interleaved: channel j belongs to pair j // 2
        ax.add_patch(Rectangle((j, top), 0.9, 0.6, color=_COLOURS[pair % len(_COLOURS)], alpha=0.85))
        ax.text(j + 0.45, top + 0.3, str(j), ha="center", va="center", color="white", fontsize=10)
    for j, channel in enumerate(order):
        pair = channel // 2
        ax.add_patch(Rectangle((j, bottom), 0.9, 0.6, color=_COLOURS[pair % len(_COLOURS)], alpha=0.85))
        ax.text(j + 0.45, bottom + 0.3, str(channel), ha="center", va="center", color="white", fontsize=10)
        ax.plot([channel + 0.45, j + 0.45], [top, bottom + 0.6], color="0.55", lw=1)
    ax.text(-0.2, top + 0.3, t("schematics.rope.interleaved"), ha="right", va="center", fontsize=9)
    ax.text(-0.2, bottom + 0.3, t("schematics.rope.half_split"), ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.3, head_dim + 0.1)
    ax.set_ylim(-0.3, top + 0.9)
    ax.axis("off")
    ax.set_title(t("schematics.rope.pairing_title", d=head_dim), fontsize=10)
    fig.tight_layout()
    return fig
