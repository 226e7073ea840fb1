"""Chapter 07's explorer: step through the tiled flash-attention loop, tile by tile.

``flash_step_state(...)`` is the pure function behind it: after ``step`` tiles of the loop
(FlashAttention-1 or -2 order, causal or not), which tiles are done, which one is current, which
the causal mask skips, and the running max / sum / output of one query row. ``flash_explorer()``
draws it: the score grid, the row's running (m, l), and its output so far against the exact one.
"""

from __future__ import annotations

import functools
import math

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from attnkit.core import scaled_dot_product_attention
from attnkit.flash import tile_schedule, trace_row
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register({
    "flash.w.step": {"en": "step", "zh": "步骤"},
    "flash.w.order": {"en": "loop order", "zh": "循环顺序"},
    "flash.w.v1": {"en": "v1: outer loop over K/V", "zh": "v1：外层循环遍历 K/V"},
    "flash.w.v2": {"en": "v2: outer loop over Q", "zh": "v2：外层循环遍历 Q"},
    "flash.w.causal": {"en": "causal", "zh": "因果掩码"},
    "flash.w.row": {"en": "query row", "zh": "查询行"},
    "flash.w.grid_title": {"en": "step {step} of {n}: tile (Q block {qi}, K block {kj})",
                           "zh": "第 {step} 步（共 {n} 步）：分块（Q 块 {qi}，K 块 {kj}）"},
    "flash.w.done": {"en": "done", "zh": "已完成"},
    "flash.w.current": {"en": "current tile", "zh": "当前分块"},
    "flash.w.pending": {"en": "not yet", "zh": "尚未计算"},
    "flash.w.skipped": {"en": "skipped (causal)", "zh": "跳过（因果掩码）"},
    "flash.w.key": {"en": "key j", "zh": "键 j"},
    "flash.w.query": {"en": "query i", "zh": "查询 i"},
    "flash.w.state_title": {"en": "row {row}: running max m and sum l", "zh": "第 {row} 行：当前最大值 m 与累加和 l"},
    "flash.w.tiles_seen": {"en": "K/V tiles seen by this row", "zh": "这一行已处理的 K/V 分块数"},
    "flash.w.out_title": {"en": "row {row}: output so far vs exact", "zh": "第 {row} 行：当前输出与精确输出"},
    "flash.w.so_far": {"en": "so far", "zh": "当前输出"},
    "flash.w.exact": {"en": "exact", "zh": "精确值"},
    "flash.w.channel": {"en": "value channel", "zh": "值的通道"},
    # static figures
    "flash.fig.mem_title": {"en": "peak extra memory of the forward (d = {d})", "zh": "前向计算的额外内存峰值（d = {d}）"},
    "flash.fig.seq_len": {"en": "sequence length N", "zh": "序列长度 N"},
    "flash.fig.mib": {"en": "MiB", "zh": "MiB"},
    "flash.fig.plain": {"en": "plain attention (N × N matrix)", "zh": "普通注意力（N × N 矩阵）"},
    "flash.fig.tiled": {"en": "tiled (flash) attention", "zh": "分块（flash）注意力"},
    "flash.fig.io_title": {"en": "slow-memory traffic (d = {d})", "zh": "慢速内存访存量（d = {d}）"},
    "flash.fig.io_y": {"en": "elements read + written", "zh": "读写元素个数"},
    "flash.fig.io_std": {"en": "standard: 4Nd + 4N²", "zh": "标准注意力：4Nd + 4N²"},
    "flash.fig.io_flash": {"en": "tiled, M = {M}", "zh": "分块，M = {M}"},
})


# The example: 16 queries and keys in tiles of 4 x 4, head dim 8, 4 value channels.
N, BLOCK, HEAD_DIM, VALUE_DIM = 16, 4, 8, 4
DONE, CURRENT, PENDING, SKIPPED = 0, 1, 2, 3


def example_qkv(seed: int = 0):
    """The fixed random q (N, d), k (N, d), v (N, dv) the explorer runs on."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, HEAD_DIM, generator=g), torch.randn(N, HEAD_DIM, generator=g),
            torch.randn(N, VALUE_DIM, generator=g))


def flash_step_state(step: int, loop_order: str = "v2", is_causal: bool = False, row: int = 15,
                     seed: int = 0) -> dict:
    """The state of the tiled loop after ``step`` tiles (1 = the first tile; clamped to the last).

    Returns a dict: ``status`` (nq, nk) with DONE / CURRENT / PENDING / SKIPPED per tile,
    ``step`` (after clamping), ``n_steps``, ``tile`` (the current step of ``tile_schedule``),
    ``m``, ``l`` (the row's running max and sum after each of its tiles processed so far),
    ``out`` (its normalised output so far, zeros before its first tile), ``exact`` (the row of
    the attention output) and ``scores`` (the (N, N) scores, for drawing only).
    """
    if not 0 <= row < N:
        raise ValueError(f"row must lie in [0, {N}), got {row}")
    q, k, v = example_qkv(seed)
    steps, skipped = tile_schedule(N, N, BLOCK, BLOCK, is_causal, loop_order)
    step = max(1, min(int(step), len(steps)))
    nb = math.ceil(N / BLOCK)
    status = torch.full((nb, nb), PENDING)
    for s in steps[: step - 1]:
        status[s["qi"], s["kj"]] = DONE
    cur = steps[step - 1]
    status[cur["qi"], cur["kj"]] = CURRENT
    for qi, kj in skipped:
        status[qi, kj] = SKIPPED
    # the row's block has seen the K/V tiles of its row of tiles processed so far (in kj order)
    seen = sum(1 for s in steps[:step] if s["qi"] == row // BLOCK)
    trace = trace_row(q, k, v, row, BLOCK, is_causal)[:seen]
    exact = scaled_dot_product_attention(q, k, v, is_causal=is_causal)[row]
    scores = q @ k.T / math.sqrt(HEAD_DIM)
    if is_causal:
        scores = scores.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("nan"))  # masked
    return {
        "status": status, "step": step, "n_steps": len(steps), "tile": cur,
        "m": [s["m"] for s in trace], "l": [s["l"] for s in trace],
        "out": trace[-1]["out"] if trace else torch.zeros(VALUE_DIM), "exact": exact,
        "scores": scores,
    }


_COLORS = {DONE: "#3b528b", CURRENT: "#dd8452", PENDING: "#dddddd", SKIPPED: "#ffffff"}


@functools.lru_cache(maxsize=4)
def panel_limits(seed: int = 0) -> tuple[tuple[float, float], tuple[float, float]]:
    """The y-limits of the running-state panel (m, l) and of the output panel that hold every
    step, loop order, mask and row of the example (5 % margins): fixed, so that moving a control
    moves the data, not the axes (and a redraw need not lay out tick labels)."""
    q, k, v = example_qkv(seed)
    ml, outs = [], [0.0]
    for causal in (False, True):
        outs += scaled_dot_product_attention(q, k, v, is_causal=causal).flatten().tolist()
        for row in range(N):
            for s in trace_row(q, k, v, row, BLOCK, causal):
                ml += [s["m"], s["l"]]
                outs += s["out"].tolist()

    def pad(lo, hi):
        return lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)

    return pad(min(ml), max(ml)), pad(min(outs), max(outs))


def draw_flash_step(step: int, loop_order: str, is_causal: bool, row: int):
    """Pure: the picture and the data of ``flash_step_state``."""
    data = flash_step_state(step, loop_order, is_causal, row)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    ax = axes[0]
    status = data["status"].numpy()
    cmap = ListedColormap([_COLORS[i] for i in (DONE, CURRENT, PENDING, SKIPPED)])
    cells = np.kron(status, np.ones((BLOCK, BLOCK), dtype=status.dtype))  # (N, N): tile of each score
    extent = (-0.5, N - 0.5, N - 0.5, -0.5)
    ax.imshow(cells, cmap=cmap, vmin=-0.5, vmax=3.5, extent=extent)
    # the scores computed so far (done and current tiles), drawn over the tile colours
    computed = np.isin(cells, (DONE, CURRENT)) & ~np.isnan(data["scores"].numpy())
    shown = np.ma.masked_where(~computed, data["scores"].numpy())
    ax.imshow(shown, cmap="viridis", extent=extent, vmin=-3, vmax=3)
    for b in range(1, N // BLOCK):
        ax.axhline(b * BLOCK - 0.5, color="black", lw=0.8)
        ax.axvline(b * BLOCK - 0.5, color="black", lw=0.8)
    tile = data["tile"]
    ax.add_patch(Rectangle((tile["k"][0] - 0.5, tile["q"][0] - 0.5), tile["k"][1] - tile["k"][0],
                           tile["q"][1] - tile["q"][0], fill=False, ec="#dd8452", lw=3))
    ax.add_patch(Rectangle((-0.5, row - 0.5), N, 1, fill=False, ec="black", lw=1.2, ls="--"))
    ax.set_xlabel(t("flash.w.key"))
    ax.set_ylabel(t("flash.w.query"))
    ax.set_title(t("flash.w.grid_title", step=data["step"], n=data["n_steps"], qi=tile["qi"], kj=tile["kj"]),
                 fontsize=9)
    ax.legend(handles=[Patch(fc=_COLORS[s], ec="grey", label=t(f"flash.w.{name}"))
                       for s, name in ((DONE, "done"), (CURRENT, "current"), (PENDING, "pending"),
                                       (SKIPPED, "skipped"))],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)

    ax = axes[1]
    xs = list(range(1, len(data["m"]) + 1))
    ax.plot(xs, data["m"], "o-", label="m")
    ax.plot(xs, data["l"], "s-", label="l")
    ax.set_xlim(0.5, N // BLOCK + 0.5)
    ax.set_ylim(*panel_limits()[0])
    ax.set_xticks(range(1, N // BLOCK + 1))
    ax.set_xlabel(t("flash.w.tiles_seen"))
    ax.set_title(t("flash.w.state_title", row=row), fontsize=9)
    ax.legend(fontsize=8, loc="upper right")  # where "best" puts it in every state, found once

    ax = axes[2]
    ch = np.arange(VALUE_DIM)
    ax.bar(ch - 0.2, data["out"].numpy(), width=0.4, label=t("flash.w.so_far"))
    ax.bar(ch + 0.2, data["exact"].numpy(), width=0.4, label=t("flash.w.exact"))
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylim(*panel_limits()[1])
    ax.set_xticks(ch)
    ax.set_xlabel(t("flash.w.channel"))
    ax.set_title(t("flash.w.out_title", row=row), fontsize=9)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.2, top=0.9, wspace=0.3)
    return fig, data


def update_flash_step(fig, step: int, loop_order: str, is_causal: bool, row: int) -> dict:
    """Move the artists of a figure made by ``draw_flash_step`` to another state."""
    data = flash_step_state(step, loop_order, is_causal, row)
    ax, ax_s, ax_o = fig.axes[:3]
    status = data["status"].numpy()
    cells = np.kron(status, np.ones((BLOCK, BLOCK), dtype=status.dtype))
    computed = np.isin(cells, (DONE, CURRENT)) & ~np.isnan(data["scores"].numpy())
    ax.images[0].set_data(cells)
    ax.images[1].set_data(np.ma.masked_where(~computed, data["scores"].numpy()))
    tile = data["tile"]
    ax.patches[0].set_bounds(tile["k"][0] - 0.5, tile["q"][0] - 0.5, tile["k"][1] - tile["k"][0],
                             tile["q"][1] - tile["q"][0])
    ax.patches[1].set_y(row - 0.5)
    ax.title.set_text(t("flash.w.grid_title", step=data["step"], n=data["n_steps"], qi=tile["qi"], kj=tile["kj"]))

    xs = list(range(1, len(data["m"]) + 1))
    ax_s.lines[0].set_data(xs, data["m"])
    ax_s.lines[1].set_data(xs, data["l"])
    ax_s.title.set_text(t("flash.w.state_title", row=row))

    for bar, v in zip(ax_o.patches, [*data["out"].tolist(), *data["exact"].tolist()], strict=True):
        bar.set_height(v)
    ax_o.title.set_text(t("flash.w.out_title", row=row))
    return data


def _animated(fig):
    """What update_flash_step changes, redrawn over a kept background (the Explorer blits): the
    tile grid's lines go over its images, the legends ("best" place) over the lines and bars."""
    ax, ax_s, ax_o = fig.axes[:3]
    return [*ax.images, *ax.lines, *ax.patches, ax.title,
            *ax_s.lines, ax_s.title, ax_s.legend_, *ax_o.patches, *ax_o.lines, ax_o.title, ax_o.legend_]


def flash_explorer(step: int = 9, loop_order: str = "v2", is_causal: bool = True, row: int = 15):
    """Sliders over the step and the traced row; the loop order and causal mask as toggles."""
    n_steps = len(tile_schedule(N, N, BLOCK, BLOCK, is_causal, loop_order)[0])
    controls = {
        "step": W.IntSlider(value=min(step, n_steps), min=1, max=n_steps, description=t("flash.w.step")),
        "loop_order": W.Dropdown(options=[(t("flash.w.v1"), "v1"), (t("flash.w.v2"), "v2")],
                                 value=loop_order, description=t("flash.w.order")),
        "is_causal": W.Checkbox(value=is_causal, description=t("flash.w.causal")),
        "row": W.IntSlider(value=row, min=0, max=N - 1, description=t("flash.w.row")),
    }

    def resize(change):  # the causal mask changes how many steps there are
        controls["step"].max = len(tile_schedule(N, N, BLOCK, BLOCK, change["new"], "v2")[0])

    controls["is_causal"].observe(resize, names="value")
    return Explorer(controls, draw_flash_step, update=update_flash_step, animated=_animated)


def memory_figure(ns, plain_bytes, tiled_bytes, d: int):
    """Peak memory against N on log-log axes: slope 2 for plain, slope 1 for tiled."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.loglog(ns, [b / 2**20 for b in plain_bytes], "o-", base=2, label=t("flash.fig.plain"))
    ax.loglog(ns, [b / 2**20 for b in tiled_bytes], "s-", base=2, label=t("flash.fig.tiled"))
    ax.set_xlabel(t("flash.fig.seq_len"))
    ax.set_ylabel(t("flash.fig.mib"))
    ax.set_title(t("flash.fig.mem_title", d=d))
    ax.legend()
    fig.tight_layout()
    return fig


def io_figure(ns, d: int, ms):
    """Slow-memory traffic of standard attention and the tiled forward against N, for several M."""
    from attnkit.flash import io_flash, io_standard

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.loglog(ns, [io_standard(n, d)["total"] for n in ns], "k-", base=2, label=t("flash.fig.io_std"))
    for M in ms:
        ax.loglog(ns, [io_flash(n, d, M=M)["total"] for n in ns], "--", base=2,
                  label=t("flash.fig.io_flash", M=f"{M:,}"))
    ax.set_xlabel(t("flash.fig.seq_len"))
    ax.set_ylabel(t("flash.fig.io_y"))
    ax.set_title(t("flash.fig.io_title", d=d))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
