"""Chapter 08's explorer: a sparse pattern, its density, and how far information travels in L layers.

``explore_state(...)`` is the pure function behind it: the pattern's (n, n) mask (from
``attnkit.sparse.pattern_mask``), its density, the fraction of tokens whose information reaches
the last token after 1 .. ``layers`` layers (``attnkit.sparse.receptive_field``) and the number of
layers until token 0 reaches the last token (``layers_to_connect``). ``sparse_explorer()`` draws
the mask and the receptive-field curve; ``pattern_gallery`` draws several masks side by side;
``chunk_picture`` one chunk of queries against its key slice over a causal window's band.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch, Rectangle

from attnkit import sparse as sp
from attnkit.i18n import register, t
from attnkit.viz import PALETTE
from attnkit.widgets import Explorer

register({
    "sparse.w.pattern": {"en": "pattern", "zh": "模式"},
    "sparse.w.n": {"en": "N", "zh": "N"},
    "sparse.w.window": {"en": "window / block", "zh": "窗口 / 块大小"},
    "sparse.w.dilation": {"en": "dilation", "zh": "空洞间隔"},
    "sparse.w.globals": {"en": "globals", "zh": "全局数"},
    "sparse.w.random": {"en": "random blocks", "zh": "随机块数"},
    "sparse.w.causal": {"en": "causal", "zh": "因果"},
    "sparse.p.sliding_window": {"en": "sliding window", "zh": "滑动窗口"},
    "sparse.p.strided": {"en": "strided (Sparse Transformer)", "zh": "strided（Sparse Transformer）"},
    "sparse.p.fixed": {"en": "fixed (Sparse Transformer)", "zh": "fixed（Sparse Transformer）"},
    "sparse.p.longformer": {"en": "Longformer (window + global)", "zh": "Longformer（窗口 + 全局）"},
    "sparse.p.bigbird": {"en": "BigBird (blocks: window + global + random)", "zh": "BigBird（分块：窗口 + 全局 + 随机）"},
    "sparse.w.mask_title": {"en": "{name}: density {density:.3f}", "zh": "{name}：密度 {density:.3f}"},
    "sparse.w.one_layer": {"en": "one layer: {what}", "zh": "一层：{what}"},
    "sparse.w.attend": {"en": "attend", "zh": "可关注"},
    "sparse.w.masked": {"en": "masked", "zh": "被屏蔽"},
    "sparse.w.key_j": {"en": "key j", "zh": "键 j"},
    "sparse.w.query_i": {"en": "query i", "zh": "查询 i"},
    "sparse.w.chunk_title": {"en": "queries {s}..{e} (one chunk) score keys {a}..{e} only",
                             "zh": "查询 {s}..{e}（一段）只给键 {a}..{e} 打分"},
    "sparse.w.chunk_band": {"en": "causal window, w = {w}", "zh": "因果窗口，w = {w}"},
    "sparse.w.chunk_slice": {"en": "the chunk's scores: {r} x {c}", "zh": "这一段的分数：{r} × {c}"},
    "sparse.w.key": {"en": "key j = 0 … {n}", "zh": "键 j = 0 … {n}"},
    "sparse.w.query": {"en": "query i = 0 … {n}", "zh": "查询 i = 0 … {n}"},
    "sparse.w.reach_title": {"en": "tokens that reach the last token", "zh": "能影响最后一个词元的词元"},
    "sparse.w.reach_y": {"en": "fraction of the N tokens", "zh": "占 N 个词元的比例"},
    "sparse.w.layers": {"en": "layers", "zh": "层数"},
    "sparse.w.connect": {"en": "token 0 reached after {k} layers", "zh": "经过 {k} 层到达词元 0"},
    "sparse.w.never": {"en": "token 0 not reached within {k} layers", "zh": "{k} 层内到达不了词元 0"},
    "sparse.w.unused": {"en": "{used}   ·   not used by this pattern: {unused}", "zh": "{used}   ·   此模式不使用：{unused}"},
})

# which controls each pattern reads (the others are shown as unused, so a learner sees why
# moving them changes nothing in the mask)
USES = {"sliding_window": ("n", "window", "dilation", "causal"), "strided": ("n", "window", "causal"),
        "fixed": ("n", "window", "causal"), "longformer": ("n", "window", "dilation", "globals_", "causal"),
        "bigbird": ("n", "window", "globals_", "random_blocks", "causal")}
_LABELS = {"n": "sparse.w.n", "window": "sparse.w.window", "dilation": "sparse.w.dilation",
           "globals_": "sparse.w.globals", "random_blocks": "sparse.w.random", "causal": "sparse.w.causal"}

PATTERN_CHOICES = ("sliding_window", "strided", "fixed", "longformer", "bigbird")
LAYERS = 12


def pattern_args(pattern: str, n: int, window: int, dilation: int = 1, globals_: int = 1,
                 random_blocks: int = 2) -> dict:
    """The explorer's controls as a pattern's arguments (``attnkit.sparse.pattern_predicate``).

    window: the sliding window (sliding_window, longformer), the stride l (strided), the block l
    (fixed, with c = max(1, l // 4) summary keys) and the block b (bigbird). globals: the first
    ``globals`` tokens (longformer) or ``globals`` blocks at each end (bigbird)."""
    if pattern == "sliding_window":
        return {"window": window, "dilation": dilation}
    if pattern == "strided":
        return {"stride": window}
    if pattern == "fixed":
        return {"block": window, "summary": max(1, window // 4)}
    if pattern == "longformer":
        return {"window": window, "dilation": dilation, "global_idx": list(range(min(globals_, n)))}
    if pattern == "bigbird":
        return {"block": window, "num_global_blocks": 2 * globals_, "num_random_blocks": random_blocks}
    raise ValueError(f"pattern must be one of {PATTERN_CHOICES}, got {pattern!r}")


def explore_state(pattern: str = "sliding_window", n: int = 64, window: int = 8, dilation: int = 1,
                  globals_: int = 1, random_blocks: int = 2, causal: bool = False, layers: int = LAYERS) -> dict:
    """The numbers behind the explorer: mask (n, n), density, pairs, reach (layers,) fractions,
    connect (layers until token 0 reaches token n - 1, or None within n layers)."""
    if pattern in ("sliding_window", "longformer"):
        try:
            sp.check_window(window, causal)  # the one window rule (attnkit.sparse)
        except ValueError:
            window += 1  # the slider's odd symmetric window: the next one the rule accepts
    args = pattern_args(pattern, n, window, dilation, globals_, random_blocks)
    mask = sp.pattern_mask(pattern, n, causal, **args)
    reach = sp.receptive_field(mask, layers, query=n - 1).double() / n
    return {"mask": mask, "density": mask.double().mean().item(), "pairs": int(mask.sum()), "reach": reach,
            "connect": sp.layers_to_connect(mask, 0, n - 1), "args": args, "window": window}


def _name(pattern):
    return t(f"sparse.p.{pattern}")


def draw(pattern, n, window, dilation, globals_, random_blocks, causal):
    data = explore_state(pattern, n, window, dilation, globals_, random_blocks, causal)
    fig, (ax_m, ax_r) = plt.subplots(1, 2, figsize=(8.0, 3.5), gridspec_kw={"width_ratios": [1, 1.1]})
    ax_m.imshow(data["mask"].numpy(), cmap="Blues", vmin=0.0, vmax=1.2, interpolation="nearest")
    ax_m.set_title(_mask_title(pattern, data), fontsize=9)
    _mask_ticks(ax_m, n)
    xs = list(range(1, LAYERS + 1))
    ax_r.plot(xs, data["reach"].tolist(), "o-", color="tab:blue")
    ax_r.axvline(data["connect"] or 0, color="tab:orange", ls="--", visible=data["connect"] is not None
                 and data["connect"] <= LAYERS)
    ax_r.set_ylim(0, 1.05)
    ax_r.set_xlim(0.5, LAYERS + 0.5)
    ax_r.set_xticks([1, 4, 8, 12])
    ax_r.set_yticks([0.0, 0.5, 1.0])  # few labels: text layout is most of a redraw
    ax_r.set_xlabel(t("sparse.w.layers"))
    ax_r.set_ylabel(t("sparse.w.reach_y"))
    ax_r.set_title(_reach_title(data), fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.5, 0.015, settings_line(pattern, n=n, window=window, dilation=dilation, globals_=globals_,
                                       random_blocks=random_blocks, causal=causal), ha="center", fontsize=8, color="0.3")
    return fig, data


def _mask_title(pattern, data):
    """The left panel is what one layer sees: the mask (the right panel stacks layers)."""
    return t("sparse.w.one_layer", what=t("sparse.w.mask_title", name=_name(pattern), density=data["density"]))


def settings_line(pattern: str, **values) -> str:
    """The slider values, those the pattern uses first, then the ones it ignores."""
    def part(names):
        return ", ".join(f"{t(_LABELS[k])} = {values[k]}" for k in _LABELS if k in names)
    used = USES[pattern]
    unused = [k for k in _LABELS if k not in used]
    return t("sparse.w.unused", used=part(used), unused=part(unused)) if unused else part(used)


def _mask_ticks(ax, n):
    ax.set_xticks([])  # no tick machinery on the mask: the axis labels say the range
    ax.set_yticks([])
    ax.set_xlabel(t("sparse.w.key", n=n - 1))
    ax.set_ylabel(t("sparse.w.query", n=n - 1))


def _reach_title(data):
    c = data["connect"]
    tail = t("sparse.w.connect", k=c) if c is not None else t("sparse.w.never", k=data["mask"].shape[0])
    return f"{t('sparse.w.reach_title')}\n{tail}"


def update(fig, pattern, n, window, dilation, globals_, random_blocks, causal):
    """Move the artists of the figure ``draw`` made: new mask pixels, curve, line and titles."""
    data = explore_state(pattern, n, window, dilation, globals_, random_blocks, causal)
    ax_m, ax_r = fig.axes
    im = ax_m.images[0]
    im.set_data(data["mask"].numpy())
    im.set_extent((-0.5, n - 0.5, n - 0.5, -0.5))
    ax_m.set_xlim(-0.5, n - 0.5)
    ax_m.set_ylim(n - 0.5, -0.5)
    _mask_ticks(ax_m, n)
    ax_m.set_title(_mask_title(pattern, data), fontsize=9)
    ax_r.lines[0].set_ydata(data["reach"].tolist())
    vline = ax_r.lines[1]
    c = data["connect"]
    vline.set_visible(c is not None and c <= LAYERS)
    vline.set_xdata([c or 0, c or 0])
    ax_r.set_title(_reach_title(data), fontsize=9)
    fig.texts[0].set_text(settings_line(pattern, n=n, window=window, dilation=dilation, globals_=globals_,
                                        random_blocks=random_blocks, causal=causal))
    return data


def sparse_explorer(pattern: str = "sliding_window", n: int = 64, window: int = 8, dilation: int = 1,
                    globals_: int = 1, random_blocks: int = 2, causal: bool = False) -> Explorer:
    controls = {
        "pattern": W.Dropdown(options=[(_name(p), p) for p in PATTERN_CHOICES], value=pattern,
                              description=t("sparse.w.pattern")),
        "n": W.IntSlider(value=n, min=16, max=256, step=16, description=t("sparse.w.n"), continuous_update=False),
        "window": W.IntSlider(value=window, min=2, max=32, step=2, description=t("sparse.w.window"),
                              continuous_update=False),
        "dilation": W.IntSlider(value=dilation, min=1, max=4, description=t("sparse.w.dilation"),
                                continuous_update=False),
        "globals_": W.IntSlider(value=globals_, min=0, max=4, description=t("sparse.w.globals"),
                                continuous_update=False),
        "random_blocks": W.IntSlider(value=random_blocks, min=0, max=4, description=t("sparse.w.random"),
                                     continuous_update=False),
        "causal": W.Checkbox(value=causal, description=t("sparse.w.causal")),
    }
    return Explorer(controls, draw, dpi=72, update=update)


def _legend(fig, extra=()):
    """One legend for the figure: the mask's two colours (attend, masked), then ``extra`` handles."""
    cmap = plt.get_cmap("Blues")
    handles = [Patch(facecolor=cmap(1 / 1.2), edgecolor="0.5", label=t("sparse.w.attend")),
               Patch(facecolor=cmap(0.0), edgecolor="0.5", label=t("sparse.w.masked")), *extra]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)


def pattern_gallery(masks: dict[str, torch.Tensor], ncols: int = 3, size: float = 2.6):
    """Draw boolean masks side by side, each titled by its (already translated) name: rows are
    queries i, columns keys j, one legend for attend / masked."""
    items = list(masks.items())
    nrows = -(-len(items) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.25) * nrows + 0.3), squeeze=False)
    for ax, (name, mask) in zip(axes.flat, items, strict=False):
        ax.imshow(mask.numpy(), cmap="Blues", vmin=0.0, vmax=1.2, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([0, mask.shape[1] - 1])
        ax.set_yticks([0, mask.shape[0] - 1])
        ax.tick_params(labelsize=7, length=2)
        ax.set_xlabel(t("sparse.w.key_j"), fontsize=8, labelpad=-4)
        ax.set_ylabel(t("sparse.w.query_i"), fontsize=8, labelpad=-8)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _legend(fig)
    return fig


def chunk_picture(n: int = 64, window: int = 12, chunk: int = 16, start: int = 32):
    """One chunk of the chunked causal window (``attnkit.sparse.sliding_window_attention``): the band
    of a causal window on n tokens, and the rectangle of queries start .. start + chunk - 1 against
    the only keys they can see, max(0, start - window + 1) .. start + chunk - 1. Inside the
    rectangle, the pairs outside the band are the ones the computation masks."""
    e = min(n, start + chunk)
    a = max(0, start - window + 1)
    mask = sp.sliding_window_mask(n, window, causal=True)  # (n, n)
    fig, ax = plt.subplots(figsize=(4.2, 4.6))
    ax.imshow(mask.numpy(), cmap="Blues", vmin=0.0, vmax=1.2, interpolation="nearest")
    box = Rectangle((a - 0.5, start - 0.5), e - a, e - start, fill=False, edgecolor=PALETTE[1], linewidth=2.0,
                    label=t("sparse.w.chunk_slice", r=e - start, c=e - a))
    ax.add_patch(box)
    ax.set_title(t("sparse.w.chunk_title", s=start, e=e - 1, a=a) + "\n" + t("sparse.w.chunk_band", w=window),
                 fontsize=9)
    ax.set_xticks([0, a, e - 1, n - 1])
    ax.set_yticks([0, start, e - 1, n - 1])
    ax.tick_params(labelsize=7)
    ax.set_xlabel(t("sparse.w.key_j"), fontsize=8)
    ax.set_ylabel(t("sparse.w.query_i"), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _legend(fig, extra=(box,))
    return fig
