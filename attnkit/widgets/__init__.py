"""Explorers: a few ipywidgets controls that redraw one matplotlib figure.

An :class:`Explorer` owns its controls and an ``ipywidgets.Image`` holding the current figure
as PNG. Moving a control calls ``draw(**values)``, a function that returns a matplotlib Figure
and the data behind it, and replaces the image. Headless tests set
``explorer.controls["name"].value`` and compare ``explorer.image.value`` (PNG bytes) and
``explorer.data`` (the numbers behind the picture).

A quick redraw (under 100 ms median on 2 cores; ``benchmarks/bench_widgets.py``
measures every explorer listed in ``attnkit.widgets.registry``) keeps the figure and blits:

* ``update(fig, **values) -> data`` moves the artists of the figure ``draw`` made (image data,
  bar heights, line data, titles, ``set_ylim``) instead of building a new one. It must leave the
  figure as ``draw`` would have drawn it at those values (the tests compare the pixels).
* ``animated(fig) -> [artists]`` names the artists of that figure which ``update`` changes:
  images, bars (``*ax.patches``), lines, ``ax.title``, ``ax.legend_``, ``fig._suptitle``, an axis
  whose limits move (``ax.yaxis``), each a direct child of an Axes or of the Figure. The Explorer
  marks them animated in its kept figure only, draws everything else once into a background, and
  each redraw restores that background and draws only these (sorted by zorder, then the spines
  of their Axes). They are drawn above every static artist, so name also a static one they may
  cover (a legend) or that is drawn over them in a full draw (grid lines over bars). Text is the
  slow part of a draw: keep tick labels static (fixed limits, or ``layout`` below) where you can.
  ``draw`` itself marks nothing, so the static figure (``static()``) is the same as without.
* ``layout(**values) -> key``: where a control changes the structure of the figure (another
  number of panels, other tick labels), one figure is kept per key, drawn by ``draw`` the first
  time its key comes up, or at build time by ``explorer.prepare({"head": 0}, ...)``.

Each chapter's explorers live in their own file (``attnkit.widgets.attention`` for chapter 01,
...); this file holds only the base.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Callable, Hashable

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.layout_engine import PlaceHolderLayoutEngine

from attnkit.viz import figure_png

__all__ = ["Explorer", "animated_artists", "canvas_png", "image_difference"]


def animated_artists(fig, artists) -> list:
    """``artists`` (of ``fig``) in the order a blitting redraw draws them: Axes by Axes, each
    Axes' sorted by zorder and followed by its visible spines (as in a full draw, where an image
    would not cover the frame), then those of the Figure itself."""
    artists = list(artists)
    ids = {id(a) for a in artists}
    out = []
    for ax in fig.axes:
        mine = [a for a in ax.get_children() if id(a) in ids]
        if mine:
            mine.sort(key=lambda a: a.get_zorder())
            out += mine + [s for s in ax.spines.values() if s.get_visible() and id(s) not in ids]
    out += sorted((a for a in fig.get_children() if id(a) in ids), key=lambda a: a.get_zorder())
    if len({id(a) for a in out} & ids) != len(ids):
        raise ValueError("animated artists must be direct children of an Axes or of the Figure")
    return out


def canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """PNG bytes of what an Agg canvas holds now: RGBA rows, no PNG filter, zlib level 1 (a
    widget image to show at once, not a file to keep: about four times faster than PIL's
    encoder, which filters every row, for a tenth more bytes)."""
    w, h = canvas.get_width_height(physical=True)
    rows = np.empty((h, 1 + 4 * w), dtype=np.uint8)
    rows[:, 0] = 0  # filter type of each row: none
    rows[:, 1:] = np.asarray(canvas.buffer_rgba()).reshape(h, 4 * w)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def image_difference(png_a: bytes, png_b: bytes, threshold: int = 48) -> float:
    """The fraction of pixels whose colour differs by more than ``threshold`` (of 255, any
    channel) between two PNGs; ``ValueError`` if their sizes differ."""
    from PIL import Image

    a, b = (np.asarray(Image.open(io.BytesIO(bytes(p))).convert("RGB"), dtype=np.int16)
            for p in (png_a, png_b))
    if a.shape != b.shape:
        raise ValueError(f"the images differ in size: {a.shape[1::-1]} and {b.shape[1::-1]}")
    return float((np.abs(a - b).max(-1) > threshold).mean())


class _Kept:
    """A figure kept for ``update``: its own Agg canvas and, if it has animated artists, the
    background (everything else) drawn once."""

    def __init__(self, fig, dpi: int, animated: Callable | None):
        plt.close(fig)  # kept by us, not by pyplot (no duplicate inline output)
        fig.set_dpi(dpi)
        self.fig = fig
        self.canvas = FigureCanvasAgg(fig)
        engine = fig.get_layout_engine()
        if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine):
            engine.execute(fig)  # a constrained or tight layout, once, as a full draw would
        fig.set_layout_engine("none")  # then fixed: no layout pass per redraw
        self.animated = animated_artists(fig, animated(fig)) if animated is not None else []
        for a in self.animated:
            a.set_animated(True)
        self.canvas.draw()  # skips the animated artists
        self.background = self.canvas.copy_from_bbox(fig.bbox) if self.animated else None

    def png(self) -> bytes:
        if self.background is None:
            self.canvas.draw()
        else:
            self.canvas.restore_region(self.background)
            for ax in self.fig.axes:
                ax.get_xlim()  # applies a pending autoscale (relim / autoscale_view) to the view
            renderer = self.canvas.get_renderer()
            for a in self.animated:
                a.draw(renderer)
        return canvas_png(self.canvas)


class Explorer:
    """Controls + ``draw(**values) -> (Figure, data)`` (+ optional ``update``, ``animated``,
    ``layout``) -> a redrawing widget."""

    def __init__(self, controls: dict[str, W.ValueWidget], draw: Callable, dpi: int = 80,
                 update: Callable | None = None, layout: Callable[..., Hashable] | None = None,
                 animated: Callable | None = None):
        self.controls = controls
        self._animated = animated
        self._draw = draw
        self._update = update
        self._layout = layout
        self._kept: dict[Hashable, _Kept] = {}  # figures kept for update(), one per layout key
        self._fig = None  # the figure now shown, if kept
        self.dpi = dpi
        self.image = W.Image(format="png")
        self.data = None
        self.redraws = 0
        for c in controls.values():
            c.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox(list(controls.values()),
                                     layout=W.Layout(flex_flow="row wrap")), self.image])
        self.redraw()

    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def _on_change(self, _change) -> None:
        self.redraw()

    def redraw(self) -> None:
        values = self.values()
        if self._update is None:
            fig, self.data = self._draw(**values)
            self.image.value = figure_png(fig, dpi=self.dpi)
            plt.close(fig)
        else:
            key = self._layout(**values) if self._layout is not None else None
            kept = self._kept.get(key)
            if kept is None:
                fig, self.data = self._draw(**values)
                kept = self._kept[key] = _Kept(fig, self.dpi, self._animated)
            else:
                self.data = self._update(kept.fig, **values)
            self._fig = kept.fig
            self.image.value = kept.png()
        self.redraws += 1

    def prepare(self, *changes: dict) -> None:
        """Draw and keep now the figure of each ``layout`` key that these changes of the current
        values lead to (the image shown stays): the first visit of a key is then quick too."""
        for change in changes:
            values = {**self.values(), **change}
            key = self._layout(**values) if self._layout is not None else None
            if key not in self._kept:
                self._kept[key] = _Kept(self._draw(**values)[0], self.dpi, self._animated)

    def fresh_png(self) -> bytes:
        """A PNG of a new figure drawn by ``draw`` at the current values, the same size as
        ``image`` (for tests: a blitted redraw must look like it, see ``image_difference``).

        A kept figure keeps the layout of its first draw, while ``tight_layout`` in a new one
        may move an Axes by a pixel or two for other tick labels: the new figure's Axes are put
        where the kept figure has them, so that only what they show is compared."""
        fig, _ = self._draw(**self.values())
        try:
            if self._fig is not None and len(fig.axes) == len(self._fig.axes):
                for new, kept in zip(fig.axes, self._fig.axes, strict=True):
                    new.set_position(kept.get_position())
            return figure_png(fig, dpi=self.dpi, tight=self._update is None)
        finally:
            plt.close(fig)

    def static(self):
        """Draw the current state as an ordinary figure, for readers where widgets do not run."""
        fig, _ = self._draw(**self.values())
        return fig

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
