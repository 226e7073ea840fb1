"""Chapter 01's explorer: attention over the tokens of a short sentence.

Move the temperature, drop the 1/sqrt(d_k) scale, pick a mask (none / causal / padding) and a
query token: the heatmap of attention weights, the chosen query's value vectors each scaled by
its weight, and their sum (the query's output) redraw. The embeddings and projections are
seeded random matrices, not trained ones.
"""

from __future__ import annotations

import math
from functools import lru_cache

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from attnkit.core import causal_mask, padding_mask, scaled_dot_product_attention
from attnkit.i18n import register, t
from attnkit.viz import attention_heatmap
from attnkit.widgets import Explorer

register({
    "explorer.sentence": {"en": "the cat sat on the mat because it was tired",
                          "zh": "这 只 猫 坐 在 这 张 垫子 上 因为 它 累 了"},
    "explorer.focus": {"en": "cat", "zh": "猫"},
    "explorer.temperature": {"en": "temperature T", "zh": "温度 T"},
    "explorer.no_sqrt": {"en": "no √d_k (divide by T only)", "zh": "不除以 √d_k（只除以 T）"},
    "explorer.mask": {"en": "mask", "zh": "掩码"},
    "explorer.query": {"en": "query token", "zh": "查询词元"},
    "explorer.mask.none": {"en": "none", "zh": "无"},
    "explorer.mask.causal": {"en": "causal", "zh": "因果"},
    "explorer.mask.padding": {"en": "padding (last {p} are padding)", "zh": "填充（最后 {p} 个词元是填充）"},
    "explorer.title": {"en": "weights: softmax(q kᵀ / (√d_k · T)), T = {temp:g}",
                       "zh": "注意力权重：softmax(q kᵀ / (√d_k · T))，T = {temp:g}"},
    "explorer.title_no_sqrt": {"en": "weights: softmax(q kᵀ / T), no √d_k, T = {temp:g}",
                               "zh": "注意力权重：softmax(q kᵀ / T)，不除以 √d_k，T = {temp:g}"},
    "explorer.stack": {"en": "the red row's query: each value vector v_j × its weight w_j",
                       "zh": "红线所在行的查询：每个值向量 v_j 乘以它的权重 w_j"},
    "explorer.output": {"en": "their sum: that query's output", "zh": "它们的和：这个查询的输出"},
    "explorer.weight_col": {"en": "its weight", "zh": "权重"},
    "explorer.channel": {"en": "channel", "zh": "通道"},
    "explorer.attend": {"en": "attend", "zh": "可以关注"},
    "explorer.masked": {"en": "masked", "zh": "被屏蔽"},
    "explorer.masked_weight": {"en": "masked (weight 0)", "zh": "被屏蔽（权重为 0）"},
})

MASKS = ("none", "causal", "padding")
N_PAD = 3
TEMPERATURES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # the slider's stops
MASKED_RGBA = (0.82, 0.82, 0.82, 1.0)  # a masked cell of the heatmap: grey, not a small weight
WEIGHT_CMAP = plt.get_cmap("viridis").with_extremes(bad=MASKED_RGBA)
MAX_TICK_LABELS = 32  # a longer sentence's weighted-value rows are not labelled


def sentence_tokens() -> list[str]:
    return t("explorer.sentence").split()


@lru_cache(maxsize=8)
def _toy_qkv(tokens: tuple[str, ...], d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    vocab = sorted(set(tokens))
    emb = torch.randn(len(vocab), d, generator=g)  # (V, d)
    x = emb[[vocab.index(tok) for tok in tokens]]  # (n, d): equal tokens, equal rows
    wq, wk, wv = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(3))
    return x @ wq, x @ wk, x @ wv


def toy_qkv(tokens: list[str], d: int = 16, seed: int = 0):
    """Seeded embeddings (one per distinct token) and projections -> q, k, v of shape (n, d)."""
    return tuple(m.clone() for m in _toy_qkv(tuple(tokens), d, seed))


def explorer_mask(n: int, mask: str) -> torch.Tensor | None:
    """The boolean mask (True = attend) of a mask name for n tokens: None, (n, n) or (1, n)."""
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if mask == "causal":
        return causal_mask(n)
    if mask == "padding":
        return padding_mask([n - N_PAD], n)[0][None, :]  # (1, n): the keys that are real
    return None


def explorer_attention(tokens: list[str], temperature: float = 1.0, mask: str = "none",
                       d: int = 16, seed: int = 0, no_sqrt: bool = False):
    """Weights (n, n) and outputs (n, d) of softmax(q k^T / (sqrt(d) * T)) v, or of
    softmax(q k^T / T) v with ``no_sqrt=True``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    attn_mask = explorer_mask(len(tokens), mask)
    q, k, v = _toy_qkv(tuple(tokens), d, seed)
    scale = 1.0 / (temperature if no_sqrt else math.sqrt(d) * temperature)
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale, return_weights=True)
    return w, out


def weighted_values(weights: torch.Tensor, v: torch.Tensor, query: int) -> torch.Tensor:
    """Row j is w[query, j] * v_j, shape (S, d_v); the rows sum to the query's output."""
    if not 0 <= query < weights.shape[0]:
        raise ValueError(f"query must be in [0, {weights.shape[0]}), got {query}")
    return weights[query][:, None] * v  # (S, 1) * (S, d_v)


def explorer_state(tokens: list[str], temperature: float = 1.0, mask: str = "none", query: int = 0,
                   no_sqrt: bool = False, d: int = 16, seed: int = 0) -> dict:
    """Everything the explorer draws: weights (n, n), outputs (n, d), the query's weighted
    value vectors (n, d) and the mask (True = attend, (n, n))."""
    w, out = explorer_attention(tokens, temperature, mask, d, seed, no_sqrt)
    v = _toy_qkv(tuple(tokens), d, seed)[2]
    allowed = explorer_mask(len(tokens), mask)
    n = len(tokens)
    allowed = torch.ones(n, n, dtype=torch.bool) if allowed is None else allowed.expand(n, n)
    return {"weights": w, "output": out, "weighted_values": weighted_values(w, v, query), "allowed": allowed}


def output_limit(tokens: list[str], temperatures=TEMPERATURES, masks=MASKS, d: int = 16, seed: int = 0) -> float:
    """The y-limit of the output panel that holds every temperature, mask and scale:
    max(1, 1.05 max |out|). All scales of a mask in one call: the query scaled, scale=1."""
    q, k, v = _toy_qkv(tuple(tokens), d, seed)
    scales = torch.tensor([1.0 / (math.sqrt(d) * temp) for temp in temperatures]
                          + [1.0 / temp for temp in temperatures])  # (2T,): with and without sqrt(d)
    qs = q * scales[:, None, None]  # (2T, n, d)
    ks, vs = k.expand(len(scales), -1, -1), v.expand(len(scales), -1, -1)
    peak = max(float(scaled_dot_product_attention(qs, ks, vs, attn_mask=explorer_mask(len(tokens), m),
                                                  scale=1.0).abs().max()) for m in masks)
    return max(1.0, peak * 1.05)


def value_limit(tokens: list[str]) -> float:
    """The colour limit of the weighted values: half the largest |v| (a weight near 1 saturates)."""
    return float(_toy_qkv(tuple(tokens), 16, 0)[2].abs().max()) / 2


def mask_legend(ax, masked_color=None, loc="upper left", anchor=(1.02, 1.0)):
    """A legend of two squares, attend and masked, to the right of a mask picture (in
    attnkit.viz.mask_picture's colours) or, with ``masked_color``, of a heatmap's masked cells;
    ``loc`` of the legend goes at ``anchor`` (axes fraction)."""
    cmap = plt.get_cmap("Blues")
    if masked_color is None:
        handles = [Patch(fc=cmap(1 / 1.2), ec="grey", label=t("explorer.attend")),
                   Patch(fc=cmap(0.0), ec="grey", label=t("explorer.masked"))]
    else:
        handles = [Patch(fc=masked_color, ec="grey", label=t("explorer.masked_weight"))]
    return ax.legend(handles=handles, loc=loc, bbox_to_anchor=anchor, fontsize=8, frameon=False,
                     borderaxespad=0.0)


def _masked_weights(weights: torch.Tensor, allowed: torch.Tensor) -> np.ma.MaskedArray:
    """The weights with the masked pairs hidden (drawn in WEIGHT_CMAP's "bad" grey)."""
    return np.ma.masked_array(weights.numpy(), mask=~allowed.numpy())


def _draw(temperature: float, no_sqrt: bool, mask: str, query: int, tokens: list[str],
          lim: float | None = None, vlim: float | None = None):
    s = explorer_state(tokens, temperature, mask, query, no_sqrt)
    w, out, wv = s["weights"], s["output"], s["weighted_values"]
    n, d = wv.shape
    fig = plt.figure(figsize=(12, 5.2))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.25, 1], height_ratios=[1.5, 1])
    top, bottom = (grid[i, 1].subgridspec(1, 2, width_ratios=[6, 1], wspace=0.05) for i in (0, 1))
    ax_w, ax_s, ax_o = fig.add_subplot(grid[:, 0]), fig.add_subplot(top[0]), fig.add_subplot(bottom[0])
    ax_b = fig.add_subplot(top[1], sharey=ax_s)  # the weights, beside the rows they scale
    title = t("explorer.title_no_sqrt" if no_sqrt else "explorer.title", temp=temperature)
    attention_heatmap(w, tokens, tokens, ax=ax_w, title=title, annotate=False, vmax=1.0, cmap=WEIGHT_CMAP)
    ax_w.images[0].set_data(_masked_weights(w, s["allowed"]))
    ax_w.axhline(query, color="red", lw=1.5, alpha=0.8)
    if mask != "none":  # a legend of masked cells only where some are (a layout of its own)
        mask_legend(ax_w, masked_color=MASKED_RGBA, loc="lower left", anchor=(0.0, 1.07))  # above the title

    vlim = vlim or value_limit(tokens)
    ax_s.imshow(wv.numpy(), cmap="RdBu_r", vmin=-vlim, vmax=vlim, aspect="auto", interpolation="nearest")
    ax_s.set_yticks(range(n), tokens if n <= MAX_TICK_LABELS else [""] * n, fontsize=7)
    ax_s.set_xticks([])
    ax_s.set_title(t("explorer.stack"), fontsize=10, loc="left")
    ax_b.barh(range(n), w[query].tolist(), color="tab:blue", height=0.7)
    ax_b.set_xlim(0, 1)
    ax_b.set_xticks([0, 1])
    ax_b.tick_params(axis="y", left=False, labelleft=False)
    ax_b.set_xlabel(t("explorer.weight_col"), fontsize=9)  # below its bars: the title above is the panel's

    ax_o.bar(range(d), out[query].tolist(), color="tab:orange", width=0.8)
    ax_o.set_xlim(-0.5, d - 0.5)
    ax_o.set_title(t("explorer.output"), fontsize=10)
    ax_o.set_xlabel(t("explorer.channel"))
    ax_o.axhline(0, color="grey", lw=0.6)
    lim = lim or max(1.0, float(out.abs().max()) * 1.05)
    ax_o.set_ylim(-lim, lim)
    fig.tight_layout()
    return fig, s


def _animated(fig):
    """What _update changes: redrawn over a kept background (the Explorer blits)."""
    ax_w, ax_s, ax_o, ax_b = fig.axes[:4]  # heatmap, weighted values, output, weights (then the colorbar)
    return [ax_w.images[0], ax_w.title, ax_w.lines[0], ax_s.images[0], *ax_b.patches, *ax_o.patches]


def _update(fig, temperature: float, no_sqrt: bool, mask: str, query: int, tokens: list[str],
            lim: float | None = None, vlim: float | None = None):
    """Move the artists of a figure made by _draw to a new state (much faster than redrawing)."""
    s = explorer_state(tokens, temperature, mask, query, no_sqrt)
    w, out, wv = s["weights"], s["output"], s["weighted_values"]
    ax_w, ax_s, ax_o, ax_b = fig.axes[:4]
    ax_w.images[0].set_data(_masked_weights(w, s["allowed"]))
    ax_w.title.set_text(t("explorer.title_no_sqrt" if no_sqrt else "explorer.title", temp=temperature))
    ax_w.lines[0].set_ydata([query, query])
    ax_s.images[0].set_data(wv.numpy())
    for bar, wj in zip(ax_b.patches, w[query].tolist(), strict=True):
        bar.set_width(wj)
    for bar, height in zip(ax_o.patches, out[query].tolist(), strict=True):
        bar.set_height(height)
    return s


def attention_explorer(tokens: list[str] | None = None) -> Explorer:
    """Temperature slider, "no sqrt(d_k)" toggle, mask dropdown and query selector over a
    sentence's (untrained) attention."""
    tokens = tokens or sentence_tokens()
    style = {"description_width": "initial"}
    controls = {
        "temperature": W.SelectionSlider(options=[(f"{x:g}", x) for x in TEMPERATURES], value=1.0,
                                         description=t("explorer.temperature"), style=style),
        "no_sqrt": W.Checkbox(value=False, description=t("explorer.no_sqrt"), indent=False),
        "mask": W.Dropdown(options=[(t("explorer.mask." + m, p=N_PAD) if m == "padding"
                                     else t("explorer.mask." + m), m) for m in MASKS],
                           value="none", description=t("explorer.mask"), style=style),
        "query": W.Dropdown(options=[(f"{i}: {tok}", i) for i, tok in enumerate(tokens)],
                            value=tokens.index(t("explorer.focus")) if t("explorer.focus") in tokens else 0,
                            description=t("explorer.query"), style=style),
    }
    # limits for every control value: the panels' ticks never move (a quick redraw)
    lim = output_limit(tokens)
    vlim = value_limit(tokens)
    return Explorer(controls, lambda **v: _draw(tokens=tokens, lim=lim, vlim=vlim, **v),
                    update=lambda fig, **v: _update(fig, tokens=tokens, lim=lim, vlim=vlim, **v),
                    animated=_animated, layout=lambda mask, **_: mask != "none")
