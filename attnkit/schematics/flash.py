"""Chapter 07's schematic: the tiles of Q, K, V moving through on-chip memory (FlashAttention-2 order).

* ``tiles_figure(n_blocks, q_block, k_block)``: slow memory (HBM) on the left holds Q, K, V and O,
  each cut into ``n_blocks`` blocks of rows; fast on-chip memory (SRAM) on the right holds the one
  block of queries Q_i being worked on, the key/value blocks K_j, V_j streaming past it, the tile
  of scores S_ij, and the running max m, sum l and accumulator of Q_i's rows. Arrows say what moves
  and how often; the N x N matrices never appear.

A pure function: numbers in, a matplotlib Figure out, every label from ``attnkit.i18n``. Each block
patch carries a gid (``hbm.Q.0`` ...; ``sram.S`` ...) so that tests can find what is highlighted.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

import attnkit.viz  # noqa: F401  (the CJK font for Chinese labels)
from attnkit.i18n import register, t

register({
    "schematics.flash.hbm": {"en": "HBM: large, slow (~1.5–2 TB/s)", "zh": "HBM：容量大、速度慢（约 1.5–2 TB/s）"},
    "schematics.flash.sram": {"en": "SRAM, on chip: tiny, fast (~19 TB/s)", "zh": "片上 SRAM：容量小、速度快（约 19 TB/s）"},
    "schematics.flash.load_q": {"en": "Q_{i}: loaded once", "zh": "Q_{i}：只装入一次"},
    "schematics.flash.stream_kv": {"en": "K_{j}, V_{j}: streamed, j = 0 .. {last}", "zh": "K_{j}、V_{j}：依次流过，j = 0 .. {last}"},
    "schematics.flash.write_o": {"en": "O_{i} = acc / l: written once, after the last j",
                                 "zh": "O_{i} = acc / l：最后一个 j 之后只写回一次"},
    "schematics.flash.tile": {"en": "S = Q_{i} K_{j}ᵀ / √d\n(B_q × B_k, never in HBM)", "zh": "S = Q_{i} K_{j}ᵀ / √d\n（B_q × B_k，从不写入 HBM）"},
    "schematics.flash.stats": {"en": "m, l: running max and sum\n(one each per row of Q_{i})",
                               "zh": "m、l：当前最大值与累加和\n（Q_{i} 的每一行各一个）"},
    "schematics.flash.acc": {"en": "acc = Σ exp(S − m) V\n(rescaled by exp(m − m′))",
                             "zh": "acc = Σ exp(S − m) V\n（乘以 exp(m − m′) 重新缩放）"},
    "schematics.flash.title": {"en": "one step of the tiled loop: query block {i}, key/value block {j} of {n}",
                               "zh": "分块循环的一步：第 {i} 个查询块，第 {j} 个键/值块（共 {n} 块）"},
})

_HIGHLIGHT = {"Q": "#d62728", "K": "#1f77b4", "V": "#2ca02c", "O": "#9467bd"}


def _strip(ax, x, name, n_blocks, current, colour, done=()):
    """A matrix in HBM: ``n_blocks`` blocks of rows stacked top to bottom, block ``current`` filled."""
    for b in range(n_blocks):
        y = 8.0 - (b + 1) * (6.0 / n_blocks)
        face = colour if b == current else ("#e8dff5" if b in done else "white")
        patch = Rectangle((x, y), 0.8, 6.0 / n_blocks, facecolor=face, edgecolor="0.3", lw=1)
        patch.set_gid(f"hbm.{name}.{b}")
        ax.add_patch(patch)
    ax.text(x + 0.4, 8.25, name, ha="center", va="bottom", fontsize=11)
    row = current if current is not None else 0
    return x + 0.8, 8.0 - (row + 0.5) * (6.0 / n_blocks)


def _box(ax, xy, w, h, colour, gid, label, fontsize=8):
    patch = Rectangle(xy, w, h, facecolor=colour, edgecolor="0.25", lw=1, alpha=0.9)
    patch.set_gid(gid)
    ax.add_patch(patch)
    ax.text(xy[0] + w + 0.15, xy[1] + h / 2, label, ha="left", va="center", fontsize=fontsize)


def _arrow(ax, start, end, text, colour, text_xy, style="-|>"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=colour, lw=1.4))
    ax.text(*text_xy, text, fontsize=8, color=colour, ha="center", va="bottom")


def tiles_figure(n_blocks: int = 4, q_block: int = 1, k_block: int = 2):
    """HBM (Q, K, V, O in ``n_blocks`` blocks) and SRAM (Q_i, K_j, V_j, S_ij, m, l, acc), arrows between."""
    for name, value in (("n_blocks", n_blocks), ("q_block", q_block), ("k_block", k_block)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    for name, value in (("q_block", q_block), ("k_block", k_block)):
        if not 0 <= value < n_blocks:
            raise ValueError(f"{name} must be in 0 .. {n_blocks - 1} (n_blocks = {n_blocks}), got {value}")
    fig, ax = plt.subplots(figsize=(11, 4.6))
    # slow memory
    ax.add_patch(Rectangle((0.2, 1.2), 5.0, 7.8, facecolor="#f4f4f4", edgecolor="0.5", lw=1.2))
    ax.text(2.7, 9.15, t("schematics.flash.hbm"), ha="center", va="bottom", fontsize=10)
    q_end = _strip(ax, 0.6, "Q", n_blocks, q_block, _HIGHLIGHT["Q"])
    k_end = _strip(ax, 1.8, "K", n_blocks, k_block, _HIGHLIGHT["K"], done=range(k_block))
    v_end = _strip(ax, 3.0, "V", n_blocks, k_block, _HIGHLIGHT["V"], done=range(k_block))
    _strip(ax, 4.2, "O", n_blocks, None, _HIGHLIGHT["O"], done=range(q_block))  # O_i: not written yet
    # fast memory
    ax.add_patch(Rectangle((8.2, 1.2), 6.8, 7.8, facecolor="#fff7e6", edgecolor="#e69500", lw=1.6))
    ax.text(11.6, 9.15, t("schematics.flash.sram"), ha="center", va="bottom", fontsize=10)
    _box(ax, (8.6, 7.3), 0.8, 1.2, _HIGHLIGHT["Q"], "sram.Q", f"Q_{q_block}", fontsize=9)
    _box(ax, (8.6, 5.6), 0.8, 1.2, _HIGHLIGHT["K"], "sram.K", f"K_{k_block}", fontsize=9)
    _box(ax, (8.6, 3.9), 0.8, 1.2, _HIGHLIGHT["V"], "sram.V", f"V_{k_block}", fontsize=9)
    _box(ax, (10.8, 6.1), 1.2, 1.2, "#ffd28a", "sram.S", t("schematics.flash.tile", i=q_block, j=k_block))
    _box(ax, (10.8, 4.3), 0.25, 1.2, "#c7e9c0", "sram.stats", t("schematics.flash.stats", i=q_block))
    _box(ax, (10.8, 2.1), 0.8, 1.2, _HIGHLIGHT["O"], "sram.acc", t("schematics.flash.acc"))
    # what moves
    _arrow(ax, q_end, (8.6, 7.9), t("schematics.flash.load_q", i=q_block), _HIGHLIGHT["Q"], (6.9, 7.95))
    _arrow(ax, k_end, (8.6, 6.2), t("schematics.flash.stream_kv", j=k_block, last=n_blocks - 1), _HIGHLIGHT["K"],
           (6.9, 6.35))
    _arrow(ax, v_end, (8.6, 4.5), "", _HIGHLIGHT["V"], (6.9, 4.6))
    o_row = 8.0 - (q_block + 0.5) * (6.0 / n_blocks)  # where O_i will be written
    _arrow(ax, (10.8, 2.4), (5.0, o_row), t("schematics.flash.write_o", i=q_block), _HIGHLIGHT["O"], (7.8, 1.45))
    ax.set_xlim(0, 15.2)
    ax.set_ylim(0.9, 9.8)
    ax.axis("off")
    ax.set_title(t("schematics.flash.title", i=q_block, j=k_block, n=n_blocks), fontsize=10)
    fig.tight_layout()
    return fig
