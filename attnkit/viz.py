"""Pictures for the course: attention heatmaps, grids of heads, masks, and aligned text tables.

Every label can be Chinese: importing this module registers the Noto Sans CJK SC font that
ships inside attnkit (SIL Open Font License 1.1, see attnkit/fonts/), so no system font is needed.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import font_manager

from attnkit.i18n import register, t

FONT_PATH = Path(__file__).parent / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
# Private family names: no font a learner's system has (or installs later) can carry them, so the
# figures never depend on the system's fonts or on the state of matplotlib's font cache.
CJK_FAMILY = "attnkit Noto Sans CJK SC"
LATIN_FAMILY = "attnkit DejaVu Sans"
LATIN_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
               "DejaVuSans-BoldOblique.ttf")  # matplotlib's own copies
MAX_TICK_LABELS = 16  # per axis; more labels are unreadable and make a redraw slow


def _entry(path: Path, family: str) -> font_manager.FontEntry:
    """A font-manager entry for the file at ``path``, under the family name ``family``."""
    prop = font_manager.ttfFontProperty(font_manager.get_font(str(path)))
    return dataclasses.replace(prop, name=family)


def font_files() -> list[str]:
    """The files matplotlib renders our text with, in fallback order (Latin, then Chinese)."""
    props = font_manager.FontProperties(family=matplotlib.rcParams["font.family"])
    return [str(p) for p in font_manager.fontManager._find_fonts_by_props(props)]


def setup_fonts() -> str:
    """Use matplotlib's DejaVu Sans and the bundled Noto Sans CJK SC, under private names.

    The entries go first in the font list and the look-up cache is cleared, so neither a system
    font of the same family (installed before or after) nor a cache file built on another state
    of the machine can change a figure.
    """
    fm = font_manager.fontManager
    if not any(f.name == CJK_FAMILY for f in fm.ttflist):
        latin = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        fm.ttflist[:0] = [_entry(FONT_PATH, CJK_FAMILY)] + [_entry(latin / f, LATIN_FAMILY)
                                                             for f in LATIN_FILES]
        fm._findfont_cached.cache_clear()
    # Concrete families, not the generic "sans-serif": matplotlib falls back glyph by glyph
    # only along a list of named families.
    matplotlib.rcParams["font.family"] = [LATIN_FAMILY, CJK_FAMILY]
    return CJK_FAMILY


setup_fonts()

# One colour-blind-safe palette and one line-style cycle for every plot that compares lines. The
# colours are Okabe and Ito's ("Color Universal Design", 2008), told apart with the common colour-
# vision deficiencies; yellow and black come last (yellow is faint on white, black is the course's
# colour for a theory or reference line). Line i of a plot is (PALETTE[i % 8],
# LINE_STYLES[i // 8 % 4]): eight solid lines, then eight dashed, dotted, dash-dotted, so no two of
# its first 32 lines share both colour and style. Importing this module makes that matplotlib's
# default cycle; a plot that sets its own line styles takes ``line_style(i)`` instead.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
LINE_STYLES = ("-", "--", ":", "-.")


def line_style(i: int) -> dict:
    """``color`` and ``linestyle`` of the ``i``-th line of a plot (``ax.plot(x, y, **line_style(i))``)."""
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ValueError(f"i must be an int >= 0 (the line's place in its plot), got {i!r}")
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINE_STYLES[i // len(PALETTE) % len(LINE_STYLES)]}


def use_palette() -> None:
    """Make PALETTE and LINE_STYLES matplotlib's default cycle (colour first, then style)."""
    from cycler import cycler

    matplotlib.rcParams["axes.prop_cycle"] = cycler(linestyle=list(LINE_STYLES)) * cycler(color=list(PALETTE))


use_palette()

register({
    "viz.query": {"en": "query", "zh": "查询"},
    "viz.key": {"en": "key", "zh": "键"},
    "viz.weight": {"en": "attention weight", "zh": "注意力权重"},
    "viz.head": {"en": "head {h}", "zh": "第 {h} 个头"},
    "viz.mask_title": {"en": "mask (filled = may attend)", "zh": "掩码（着色 = 可以关注）"},
})


def attention_heatmap(weights, x_labels=None, y_labels=None, ax=None, title=None,
                      annotate=None, cmap="viridis", vmin=0.0, vmax=None, colorbar=True):
    """Draw one (q_len, k_len) matrix of weights; rows are queries, columns are keys."""
    w = _as_2d(weights, "weights")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * w.shape[1] + 2.2, 0.4 * w.shape[0] + 1.6))
    im = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    _tick_labels(ax, w.shape, x_labels, y_labels)
    ax.set_xlabel(t("viz.key"))
    ax.set_ylabel(t("viz.query"))
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = w.shape[0] * w.shape[1] <= 100
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                val = float(w[i, j])
                ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if val < 0.6 * (vmax or w.max() or 1) else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=t("viz.weight"))
    return ax


def heads_grid(weights, x_labels=None, y_labels=None, titles=None, ncols=4, size=2.4, suptitle=None):
    """Draw (num_heads, q_len, k_len) weights as a grid, one heatmap per head."""
    import torch

    w = torch.as_tensor(weights).detach().float().cpu()
    if w.dim() != 3:
        raise ValueError(f"weights must have shape (heads, q_len, k_len), got {tuple(w.shape)}")
    h = w.shape[0]
    ncols = min(ncols, h)
    nrows = (h + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        ax.imshow(w[i].numpy(), cmap="viridis", vmin=0.0, vmax=float(w.max()), aspect="auto")
        _tick_labels(ax, w[i].shape, x_labels, y_labels, fontsize=6)
        ax.set_title(titles[i] if titles else t("viz.head", h=i), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def mask_picture(mask, x_labels=None, y_labels=None, ax=None, title=None):
    """Draw a boolean mask (True = may attend) as filled and empty squares."""
    m = _as_2d(mask, "mask")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.35 * m.shape[1] + 1.5, 0.35 * m.shape[0] + 1.2))
    ax.imshow(m.astype(float), cmap="Blues", vmin=0.0, vmax=1.2, aspect="auto")
    _tick_labels(ax, m.shape, x_labels, y_labels)
    ax.set_xlabel(t("viz.key"))
    ax.set_ylabel(t("viz.query"))
    ax.set_title(title or t("viz.mask_title"))
    return ax


def figure_png(fig, dpi=80, tight=True) -> bytes:
    """The figure as PNG bytes (for ipywidgets.Image and for tests).

    ``tight=False`` skips the extra layout pass of ``bbox_inches="tight"``: for a figure whose
    layout is already fixed (an explorer redrawing the same figure), it halves the time. zlib
    level 1: a fifth faster than the default, for a few per cent more bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None,
                pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _as_2d(x, name):
    import torch

    x = torch.as_tensor(x).detach().cpu()
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (q_len, k_len), got shape {tuple(x.shape)}")
    return (x if x.dtype == torch.bool else x.float()).numpy()


def _tick_labels(ax, shape, x_labels, y_labels, fontsize=8):
    for labels, n, setter, ticks, kw in ((x_labels, shape[1], ax.set_xticklabels, ax.set_xticks, {"rotation": 60}),
                                         (y_labels, shape[0], ax.set_yticklabels, ax.set_yticks, {})):
        if labels is None:
            continue
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for an axis of length {n}")
        step = -(-n // MAX_TICK_LABELS)  # long axes: label every step-th position, readable and fast
        ticks(range(0, n, step))
        setter(list(labels)[::step], fontsize=fontsize, **kw)


def format_table(headers: list[str], rows: list[list], left: tuple[int, ...] = ()) -> str:
    """A plain-text table whose columns line up also with Chinese (double-width) characters;
    columns are right-aligned, those whose index is in ``left`` left-aligned (labels)."""
    import unicodedata

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)

    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(width(r[i]) for r in cells) for i in range(len(headers))]
    def pad(i, c, w):
        return c + " " * (w - width(c)) if i in left else " " * (w - width(c)) + c

    lines = ["  ".join(pad(i, c, w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
