"""Chapter 06's explorers and figures: RoPE as a rotation, its long-range decay, its scaling.

* ``rope_explorer()``: pick a position, a channel pair and a base; see the pair rotate, where its
  frequency sits among all pairs, and the score q.k against distance for several bases.
* ``rope_scaling_explorer()``: pick a method (none, position interpolation, NTK-aware, YaRN) and a
  scale factor; see what it does to each pair's frequency and to the score beyond the trained
  length.
* ``alibi_figure``, ``sinusoidal_figure``: static pictures for the chapter.

All numbers come from pure functions of ``attnkit.rope``; these functions only draw them.
"""

from __future__ import annotations

import functools
import math

import ipywidgets as W
import matplotlib.pyplot as plt
import torch

from attnkit.i18n import register, t
from attnkit.rope import (
    alibi_bias,
    alibi_slopes,
    linear_scaled_inv_freq,
    ntk_scaled_inv_freq,
    rope_inv_freq,
    rope_pair_trajectory,
    rope_score_curve,
    sinusoidal_position_encoding,
    yarn_attention_factor,
    yarn_inv_freq,
)
from attnkit.viz import heads_grid
from attnkit.widgets import Explorer

register({
    "rope.w.position": {"en": "position m", "zh": "位置 m"},
    "rope.w.pair": {"en": "channel pair i", "zh": "通道对 i"},
    "rope.w.base": {"en": "base", "zh": "底数"},
    "rope.w.pair_title": {"en": "pair {i} rotates {theta:.3g} rad per position",
                          "zh": "第 {i} 对通道每过一个位置旋转 {theta:.3g} 弧度"},
    "rope.w.channel_a": {"en": "channel 2i", "zh": "通道 2i"},
    "rope.w.channel_b": {"en": "channel 2i+1", "zh": "通道 2i+1"},
    "rope.w.freq_title": {"en": "frequency of each pair", "zh": "每个通道对的频率"},
    "rope.w.freq_y": {"en": "log10 θ_i (θ_i in rad per position)", "zh": "log10 θ_i（θ_i 单位：弧度/位置）"},
    "rope.w.pair_x": {"en": "pair i", "zh": "通道对 i"},
    "rope.w.decay_title": {"en": "score of q = k = 1 vs distance (d = {d})",
                           "zh": "q = k = 1 时分数随距离的变化（d = {d}）"},
    "rope.w.distance": {"en": "distance m − n", "zh": "距离 m − n"},
    "rope.w.score": {"en": "relative score", "zh": "相对分数"},
    "rope.w.base_label": {"en": "base {b:g}", "zh": "底数 {b:g}"},
    "rope.w.method": {"en": "method", "zh": "方法"},
    "rope.w.scale": {"en": "scale s", "zh": "缩放因子 s"},
    "rope.w.method.none": {"en": "plain RoPE", "zh": "原始 RoPE"},
    "rope.w.method.linear": {"en": "position interpolation", "zh": "位置插值（PI）"},
    "rope.w.method.ntk": {"en": "NTK-aware", "zh": "NTK 感知缩放"},
    "rope.w.method.yarn": {"en": "YaRN", "zh": "YaRN"},
    "rope.w.ratio_title": {"en": "new frequency / old frequency", "zh": "新频率 / 原频率"},
    "rope.w.ratio_y": {"en": "θ'_i / θ_i", "zh": "θ'_i / θ_i"},
    "rope.w.ext_title": {"en": "score vs distance, trained on {L} positions",
                         "zh": "分数随距离的变化（训练长度 {L}）"},
    "rope.w.trained": {"en": "trained length", "zh": "训练长度"},
    "rope.w.alibi_head": {"en": "head {h}: m = 1/{inv:g}", "zh": "第 {h} 个头：m = 1/{inv:g}"},
    "rope.w.alibi_title": {"en": "ALiBi: factor exp(−m·(i − j)) on each weight, causal",
                           "zh": "ALiBi：因果掩码下每个权重乘上的因子 exp(−m·(i − j))"},
    "rope.w.sin_title": {"en": "sinusoidal position encoding", "zh": "正弦位置编码"},
    "rope.w.dim": {"en": "dimension", "zh": "维度"},
    "rope.w.pos_axis": {"en": "position", "zh": "位置"},
})


HEAD_DIM = 64
BASES = (100.0, 1000.0, 10000.0, 500000.0)
MAX_POSITION = 40
DISTANCES = torch.arange(0, 257)  # 0 .. 256
METHODS = ("none", "linear", "ntk", "yarn")
TRAINED = 256


def _np(x: torch.Tensor):
    return x.detach().cpu().numpy()


# ------------------------------------------------------------------ RoPE as a rotation


def rope_explorer_data(position: int, pair: int, base: float, head_dim: int = HEAD_DIM) -> dict:
    """The numbers behind ``rope_explorer``: the pair's path, all frequencies, decay curves."""
    theta = rope_inv_freq(head_dim, base)  # (d/2,)
    path = rope_pair_trajectory(1.0, 0.0, theta[pair].item(), range(position + 1))  # (m+1, 2)
    curves = {b: rope_score_curve(DISTANCES, head_dim, b) for b in sorted({*BASES, base})}
    return {"theta": theta, "path": path, "angle": position * theta[pair].item(), "curves": curves}


def _draw_rope(position: int, pair: int, base: float):
    data = rope_explorer_data(position, pair, base)
    fig, (ax_c, ax_f, ax_d) = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1.2, 1.5]})
    circle = torch.linspace(0, 2 * math.pi, 100)
    ax_c.plot(_np(torch.cos(circle)), _np(torch.sin(circle)), color="0.85", lw=1)
    path = data["path"]
    ax_c.plot(_np(path[:, 0]), _np(path[:, 1]), "o", color="tab:blue", ms=3, alpha=0.5)
    ax_c.annotate("", xy=(path[-1, 0].item(), path[-1, 1].item()), xytext=(0, 0),
                  arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 2})
    ax_c.annotate("", xy=(1, 0), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "0.5"})
    ax_c.set_aspect("equal")
    ax_c.set_xlim(-1.2, 1.2)
    ax_c.set_ylim(-1.2, 1.2)
    ax_c.set_xlabel(t("rope.w.channel_a"))
    ax_c.set_ylabel(t("rope.w.channel_b"))
    ax_c.set_title(t("rope.w.pair_title", i=pair, theta=data["theta"][pair].item()), fontsize=9)

    theta = data["theta"]
    # log10 on a linear axis: log-scale tick labels go through mathtext, which is slow to redraw
    ax_f.plot(range(len(theta)), _np(theta.log10()), ".-", color="tab:blue")
    ax_f.plot([pair], [theta[pair].log10().item()], "o", color="tab:red", ms=8)
    # one y-range for every base of the dropdown: the ticks stay put when the base changes
    logs = torch.cat([rope_inv_freq(HEAD_DIM, b).log10() for b in sorted({*BASES, base})])
    lo, hi = logs.min().item(), logs.max().item()
    ax_f.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax_f.set_xlabel(t("rope.w.pair_x"))
    ax_f.set_ylabel(t("rope.w.freq_y"))
    ax_f.set_title(t("rope.w.freq_title"), fontsize=9)
    ax_f.grid(alpha=0.3)

    for b, curve in data["curves"].items():
        ax_d.plot(_np(DISTANCES), _np(curve), lw=2.2 if b == base else 1, alpha=1 if b == base else 0.5,
                  label=t("rope.w.base_label", b=b))
    ax_d.set_xlabel(t("rope.w.distance"))
    ax_d.set_ylabel(t("rope.w.score"))
    ax_d.set_title(t("rope.w.decay_title", d=HEAD_DIM), fontsize=9)
    ax_d.grid(alpha=0.3)
    ax_d.legend(fontsize=7)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.9, wspace=0.35)
    return fig, data


def _update_rope(fig, position: int, pair: int, base: float) -> dict:
    """Move the artists of a figure made by ``_draw_rope`` to another state."""
    data = rope_explorer_data(position, pair, base)
    ax_c, ax_f, ax_d = fig.axes[:3]
    path, theta = data["path"], data["theta"]
    ax_c.lines[1].set_data(_np(path[:, 0]), _np(path[:, 1]))
    ax_c.texts[0].xy = (path[-1, 0].item(), path[-1, 1].item())
    ax_c.title.set_text(t("rope.w.pair_title", i=pair, theta=theta[pair].item()))
    ax_f.lines[0].set_ydata(_np(theta.log10()))
    ax_f.lines[1].set_data([pair], [theta[pair].log10().item()])
    for line, handle, b in zip(ax_d.lines, ax_d.legend_.legend_handles, data["curves"], strict=True):
        for artist in (line, handle):
            artist.set_linewidth(2.2 if b == base else 1)
            artist.set_alpha(1 if b == base else 0.5)
    return data


def _animated_rope(fig):
    """What _update_rope changes, redrawn over a kept background (the Explorer blits)."""
    ax_c, ax_f, ax_d = fig.axes[:3]
    return [*ax_c.lines[1:], *ax_c.texts, ax_c.title, *ax_f.lines, *ax_d.lines, ax_d.legend_]


def rope_explorer(position: int = 5, pair: int = 2, base: float = 10000.0) -> Explorer:
    """Sliders for the position and the pair, a dropdown for the base."""
    style = {"description_width": "initial"}
    controls = {
        "position": W.IntSlider(value=position, min=0, max=MAX_POSITION, description=t("rope.w.position"),
                                style=style),
        "pair": W.IntSlider(value=pair, min=0, max=HEAD_DIM // 2 - 1, description=t("rope.w.pair"),
                            style=style),
        "base": W.Dropdown(options=[(f"{b:g}", b) for b in BASES], value=base, description=t("rope.w.base"),
                           style=style),
    }
    return Explorer(controls, _draw_rope, update=_update_rope, animated=_animated_rope)


# ------------------------------------------------------------------ longer contexts


def scaled_frequencies(method: str, scale: float, head_dim: int = HEAD_DIM, base: float = 10000.0,
                       trained: int = TRAINED):
    """(theta' (d/2,), attention factor) of a scaling method, from attnkit.rope's formulas."""
    theta = rope_inv_freq(head_dim, base)
    if method == "none":
        return theta, 1.0
    if method == "linear":
        return linear_scaled_inv_freq(theta, scale), 1.0
    if method == "ntk":
        return ntk_scaled_inv_freq(head_dim, base, scale), 1.0
    if method == "yarn":
        return yarn_inv_freq(head_dim, base, scale, trained), yarn_attention_factor(scale)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def scaling_explorer_data(method: str, scale: int, head_dim: int = HEAD_DIM, trained: int = TRAINED) -> dict:
    """Frequency ratios per pair and the q = k = 1 score curve out to scale x the trained length."""
    theta = rope_inv_freq(head_dim)
    new, factor = scaled_frequencies(method, scale, head_dim, trained=trained)
    dist = torch.arange(0, scale * trained + 1)
    return {"ratio": new / theta, "distances": dist, "factor": factor,
            "curve": factor ** 2 * rope_score_curve(dist, head_dim, inv_freq=new),
            "original": rope_score_curve(dist, head_dim)}


SCALES = (2, 4, 8, 16)


@functools.lru_cache(maxsize=8)
def score_limits(scales: tuple = SCALES) -> tuple[float, float]:
    """The y-limits of the score panel that hold every method and scale (5 % margins): fixed, so
    that the ticks stay put when a control moves."""
    lo, hi = math.inf, -math.inf
    for method in METHODS:
        for scale in scales:
            data = scaling_explorer_data(method, scale)
            for curve in (data["curve"], data["original"]):
                lo, hi = min(lo, curve.min().item()), max(hi, curve.max().item())
    return lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)


def _draw_scaling(method: str, scale: int):
    data = scaling_explorer_data(method, scale)
    fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    ax_r.plot(range(len(data["ratio"])), _np(data["ratio"]), ".-", color="tab:purple")
    ax_r.set_ylim(0, 1.08)
    ax_r.axhline(1 / scale, color="0.6", ls=":", lw=1)
    ax_r.set_xlabel(t("rope.w.pair_x"))
    ax_r.set_ylabel(t("rope.w.ratio_y"))
    ax_r.set_title(t("rope.w.ratio_title"), fontsize=9)
    ax_r.grid(alpha=0.3)
    ax_s.plot(_np(data["distances"]), _np(data["original"]), color="0.7", lw=1, label=t("rope.w.method.none"))
    ax_s.plot(_np(data["distances"]), _np(data["curve"]), color="tab:purple", lw=1.5, label=t("rope.w.method." + method))
    ax_s.axvline(TRAINED, color="tab:red", ls="--", lw=1, label=t("rope.w.trained"))
    ax_s.set_xlabel(t("rope.w.distance"))
    ax_s.set_ylabel(t("rope.w.score"))
    ax_s.set_title(t("rope.w.ext_title", L=TRAINED), fontsize=9)
    ax_s.set_ylim(*score_limits(tuple(sorted({*SCALES, scale}))))
    ax_s.grid(alpha=0.3)
    ax_s.legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    return fig, data


def _update_scaling(fig, method: str, scale: int) -> dict:
    """Move the artists of a figure made by ``_draw_scaling`` to another method and scale."""
    data = scaling_explorer_data(method, scale)
    ax_r, ax_s = fig.axes[:2]
    ax_r.lines[0].set_ydata(_np(data["ratio"]))
    ax_r.lines[1].set_ydata([1 / scale, 1 / scale])
    ax_s.lines[0].set_data(_np(data["distances"]), _np(data["original"]))
    ax_s.lines[1].set_data(_np(data["distances"]), _np(data["curve"]))
    ax_s.legend_.get_texts()[1].set_text(t("rope.w.method." + method))
    ax_s.relim()
    ax_s.autoscale_view()
    return data


def _animated_scaling(fig):
    """What _update_scaling changes (in the right panel, the distances too), redrawn over a kept
    background (the Explorer blits)."""
    ax_r, ax_s = fig.axes[:2]
    return [*ax_r.lines, *ax_s.lines, ax_s.legend_, ax_s.xaxis]


def rope_scaling_explorer(method: str = "yarn", scale: int = 4) -> Explorer:
    """A dropdown for the method, one for the scale factor s."""
    style = {"description_width": "initial"}
    controls = {
        "method": W.Dropdown(options=[(t("rope.w.method." + m), m) for m in METHODS], value=method,
                             description=t("rope.w.method"), style=style),
        "scale": W.Dropdown(options=list(SCALES), value=scale, description=t("rope.w.scale"), style=style),
    }
    return Explorer(controls, _draw_scaling, update=_update_scaling, animated=_animated_scaling)


# ------------------------------------------------------------------ static figures


def alibi_figure(num_heads: int = 8, seq_len: int = 16):
    """One heatmap per head of exp(ALiBi bias) = exp(-m (i - j)) under a causal mask: the factor
    by which ALiBi multiplies each unnormalised attention weight. Titled with each head's slope."""
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    factor = alibi_bias(num_heads, seq_len).exp().masked_fill(~causal, 0.0)  # (H, L, L)
    slopes = alibi_slopes(num_heads)
    titles = [t("rope.w.alibi_head", h=h, inv=round(1 / m.item(), 2)) for h, m in enumerate(slopes)]
    return heads_grid(factor, titles=titles, suptitle=t("rope.w.alibi_title"))


def sinusoidal_figure(seq_len: int = 64, d_model: int = 64):
    """The sinusoidal encoding as a (position, dimension) heatmap."""
    pe = sinusoidal_position_encoding(seq_len, d_model)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    im = ax.imshow(_np(pe), cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set_xlabel(t("rope.w.dim"))
    ax.set_ylabel(t("rope.w.pos_axis"))
    ax.set_title(t("rope.w.sin_title"))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
