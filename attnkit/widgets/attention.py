"""Chapter 01's explorer: attention over the tokens of a short sentence.

Move the temperature, pick a mask (none / causal / padding) and a query token: the heatmap of
attention weights and the chosen query's output vector redraw.
"""

from __future__ import annotations

import math

import ipywidgets as W
import matplotlib.pyplot as plt
import torch

from attnkit.core import causal_mask, padding_mask, scaled_dot_product_attention
from attnkit.i18n import register, t
from attnkit.viz import attention_heatmap
from attnkit.widgets import Explorer

register({
    "explorer.sentence": {"en": "the cat sat on the mat because it was tired",
                          "zh": "这 只 猫 坐 在 这 张 垫子 上 因为 它 累 了"},
    "explorer.focus": {"en": "cat", "zh": "猫"},
    "explorer.temperature": {"en": "temperature", "zh": "温度"},
    "explorer.mask": {"en": "mask", "zh": "掩码"},
    "explorer.query": {"en": "query token", "zh": "查询词元"},
    "explorer.mask.none": {"en": "none", "zh": "无"},
    "explorer.mask.causal": {"en": "causal", "zh": "因果"},
    "explorer.mask.padding": {"en": "padding (last {p} are padding)", "zh": "填充（最后 {p} 个词元是填充）"},
    "explorer.title": {"en": "attention weights, temperature {temp:.2f}",
                       "zh": "注意力权重（温度 {temp:.2f}）"},
    "explorer.output": {"en": "output vector of “{tok}”", "zh": "“{tok}”的输出向量"},
    "explorer.channel": {"en": "channel", "zh": "通道"},
})

MASKS = ("none", "causal", "padding")
N_PAD = 3


def sentence_tokens() -> list[str]:
    return t("explorer.sentence").split()


def toy_qkv(tokens: list[str], d: int = 16, seed: int = 0):
    """Seeded embeddings (one per distinct token) and projections -> q, k, v of shape (n, d)."""
    g = torch.Generator().manual_seed(seed)
    vocab = sorted(set(tokens))
    emb = torch.randn(len(vocab), d, generator=g)  # (V, d)
    x = emb[[vocab.index(tok) for tok in tokens]]  # (n, d): equal tokens, equal rows
    wq, wk, wv = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(3))
    return x @ wq, x @ wk, x @ wv


def explorer_attention(tokens: list[str], temperature: float = 1.0, mask: str = "none",
                       d: int = 16, seed: int = 0):
    """Weights (n, n) and outputs (n, d) of softmax(q k^T / (sqrt(d) * temperature)) v."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    q, k, v = toy_qkv(tokens, d, seed)
    n = len(tokens)
    attn_mask = None
    if mask == "causal":
        attn_mask = causal_mask(n)
    elif mask == "padding":
        attn_mask = padding_mask([n - N_PAD], n)[0][None, :]  # (1, n): keys that are real
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                          scale=1.0 / (math.sqrt(d) * temperature), return_weights=True)
    return w, out


def output_limit(tokens: list[str], temperatures, masks=MASKS) -> float:
    """The y-limit of the output panel that holds every temperature and mask: max(2, 1.05 max |out|)."""
    return max(2.0, *(float(explorer_attention(tokens, temp, m)[1].abs().max()) * 1.05
                      for temp in temperatures for m in masks))


def _draw(temperature: float, mask: str, query: int, tokens: list[str], lim: float | None = None):
    w, out = explorer_attention(tokens, temperature, mask)
    fig, (ax_w, ax_o) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    attention_heatmap(w, tokens, tokens, ax=ax_w, title=t("explorer.title", temp=temperature),
                      annotate=False, vmax=1.0)
    ax_w.axhline(query, color="red", lw=1.5, alpha=0.8)
    ax_o.bar(range(out.shape[1]), out[query].tolist(), color="tab:orange")
    ax_o.set_title(t("explorer.output", tok=tokens[query]))
    ax_o.set_xlabel(t("explorer.channel"))
    lim = lim or max(2.0, float(out.abs().max()) * 1.05)
    ax_o.set_ylim(-lim, lim)
    fig.tight_layout()
    return fig, {"weights": w, "output": out}


def _animated(fig):
    """What _update changes: redrawn over a kept background (the Explorer blits)."""
    ax_w, ax_o = fig.axes[0], fig.axes[1]
    return [ax_w.images[0], ax_w.title, ax_w.lines[0], *ax_o.patches, ax_o.title]


def _update(fig, temperature: float, mask: str, query: int, tokens: list[str], lim: float | None = None):
    """Move the artists of a figure made by _draw to a new state (much faster than redrawing)."""
    w, out = explorer_attention(tokens, temperature, mask)
    ax_w, ax_o = fig.axes[0], fig.axes[1]
    ax_w.images[0].set_data(w.numpy())
    ax_w.set_title(t("explorer.title", temp=temperature))
    ax_w.lines[0].set_ydata([query, query])
    for bar, height in zip(ax_o.patches, out[query].tolist(), strict=True):
        bar.set_height(height)
    ax_o.set_title(t("explorer.output", tok=tokens[query]))
    lim = lim or max(2.0, float(out.abs().max()) * 1.05)
    ax_o.set_ylim(-lim, lim)
    return {"weights": w, "output": out}


def attention_explorer(tokens: list[str] | None = None) -> Explorer:
    """Temperature slider, mask dropdown and query selector over a sentence's attention."""
    tokens = tokens or sentence_tokens()
    style = {"description_width": "initial"}
    controls = {
        "temperature": W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05,
                                        description=t("explorer.temperature"), style=style),
        "mask": W.Dropdown(options=[(t("explorer.mask." + m, p=N_PAD) if m == "padding"
                                     else t("explorer.mask." + m), m) for m in MASKS],
                           value="none", description=t("explorer.mask"), style=style),
        "query": W.Dropdown(options=[(f"{i}: {tok}", i) for i, tok in enumerate(tokens)],
                            value=tokens.index(t("explorer.focus")) if t("explorer.focus") in tokens else 0,
                            description=t("explorer.query"), style=style),
    }
    # one y-limit for every slider value: the output panel's ticks never move (a quick redraw)
    slider = controls["temperature"]
    steps = round((slider.max - slider.min) / slider.step)
    lim = output_limit(tokens, [slider.base ** (slider.min + i * slider.step) for i in range(steps + 1)])
    return Explorer(controls, lambda **v: _draw(tokens=tokens, lim=lim, **v),
                    update=lambda fig, **v: _update(fig, tokens=tokens, lim=lim, **v), animated=_animated)
