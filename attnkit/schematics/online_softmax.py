"""Chapter 03's schematic: the online softmax, one chunk of a row at a time.

``online_softmax_schematic(scores, chunk_size)`` draws a row of scores cut into chunks, each
chunk's own state (its max ``m_b`` and its sum ``l_b = Σ exp(x - m_b)``), and the running state
``(m, l)`` after each merge (Milakov & Gimelshein 2018): the old sum is rescaled by
``exp(m - m')`` to the new max before the chunk's sum, rescaled by ``exp(m_b - m')``, is added.
The numbers are computed (``online_states``), so the picture is the computation.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from attnkit import viz  # the bundled CJK font, the palette
from attnkit.i18n import register, t

__all__ = ["online_softmax_schematic", "online_states"]

register({
    "schematics.online.title": {"en": "Online softmax over {n} scores in chunks of {c}: one pass, two running numbers",
                                "zh": "{n} 个分数、每块 {c} 个的在线 softmax：遍历一次，只记两个数"},
    "schematics.online.scores": {"en": "scores x", "zh": "分数 x"},
    "schematics.online.chunk": {"en": "chunk {i}", "zh": "第 {i} 块"},
    "schematics.online.running": {"en": "running (m, ℓ)", "zh": "当前 (m, ℓ)"},
    "schematics.online.rescale": {"en": "ℓ·e^(m−m′)", "zh": "ℓ·e^(m−m′)"},
    "schematics.online.add": {"en": "+ ℓ_b·e^(m_b−m′)", "zh": "+ ℓ_b·e^(m_b−m′)"},
    "schematics.online.final": {"en": "at the end: p_i = e^(x_i − m) / ℓ", "zh": "最后：p_i = e^(x_i − m) / ℓ"},
})

_COLOURS = viz.PALETTE  # the course's colour-blind-safe palette


def _check(scores, chunk_size):
    if not isinstance(scores, (list, tuple)) or not scores or not all(
            isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
        raise ValueError(f"scores must be a non-empty list of finite numbers, got {scores!r}")
    if len(scores) > 16:
        raise ValueError(f"scores must have at most 16 entries (one cell each), got {len(scores)}")
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= len(scores):
        raise ValueError(f"chunk_size must be an int in 1..{len(scores)} (len(scores)), got {chunk_size!r}")


def online_states(scores, chunk_size):
    """Per chunk: (chunk's m_b, chunk's l_b, running m, running l after merging it)."""
    _check(scores, chunk_size)
    out, m, l = [], float("-inf"), 0.0
    for a in range(0, len(scores), chunk_size):
        chunk = scores[a:a + chunk_size]
        m_b = max(chunk)
        l_b = sum(math.exp(x - m_b) for x in chunk)
        m_new = max(m, m_b)
        l = l * math.exp(m - m_new) + l_b * math.exp(m_b - m_new)  # merge (m, l) with (m_b, l_b)
        m = m_new
        out.append((m_b, l_b, m, l))
    return out


def online_softmax_schematic(scores=(2.3, 9.1, 0.5, 4.0, 7.5, 1.0, 9.6, 3.2), chunk_size: int = 3) -> Figure:
    """Figure: the row in coloured chunks, each chunk's (m_b, l_b), the running (m, l) after each."""
    scores = list(scores)
    states = online_states(scores, chunk_size)
    n = len(scores)
    fig, ax = plt.subplots(figsize=(10, 3.9))
    ax.set_xlim(-1.6, n + 0.2)
    ax.set_ylim(-0.6, 3.9)
    ax.axis("off")
    ax.text(-0.2, 3.2, t("schematics.online.scores"), ha="right", va="center", fontsize=9)
    ax.text(-0.2, 0.6, t("schematics.online.running"), ha="right", va="center", fontsize=9)
    prev = None
    for c, (m_b, l_b, m, l) in enumerate(states):
        a, b = c * chunk_size, min(n, (c + 1) * chunk_size)
        colour = _COLOURS[c % len(_COLOURS)]
        for i in range(a, b):                                   # the chunk's cells
            ax.add_patch(plt.Rectangle((i + 0.05, 2.85), 0.9, 0.7, facecolor=colour, alpha=0.35,
                                       edgecolor=colour))
            ax.text(i + 0.5, 3.2, f"{scores[i]:g}", ha="center", va="center", fontsize=9)
        mid = (a + b) / 2
        ax.text(mid, 3.75, t("schematics.online.chunk", i=c), ha="center", va="center", fontsize=8, color=colour)
        ax.text(mid, 2.0, f"m_b = {m_b:g}\nℓ_b = {l_b:.3f}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": colour})
        ax.add_patch(FancyArrowPatch((mid, 2.8), (mid, 2.35), arrowstyle="-|>", mutation_scale=9, color="0.35"))
        ax.text(mid, 0.6, f"m = {m:g}\nℓ = {l:.3f}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "0.93", "edgecolor": "0.3"})
        ax.add_patch(FancyArrowPatch((mid, 1.65), (mid, 1.0), arrowstyle="-|>", mutation_scale=9, color="0.35"))
        ax.text(mid + 0.08, 1.32, t("schematics.online.add"), ha="left", va="center", fontsize=7)
        if prev is not None:                                    # the old state, rescaled to the new max
            ax.add_patch(FancyArrowPatch((prev + 0.75, 0.6), (mid - 0.75, 0.6), arrowstyle="-|>",
                                         mutation_scale=9, color="0.35"))
            ax.text((prev + mid) / 2, 0.82, t("schematics.online.rescale"), ha="center", va="bottom", fontsize=8)
        prev = mid
    ax.text(n / 2, -0.35, t("schematics.online.final"), ha="center", va="center", fontsize=9)
    ax.set_title(t("schematics.online.title", n=n, c=chunk_size), fontsize=10)
    fig.tight_layout()
    return fig
