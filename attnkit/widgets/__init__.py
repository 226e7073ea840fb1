"""Explorers: a few ipywidgets controls that redraw one matplotlib figure.

An :class:`Explorer` owns its controls and an ``ipywidgets.Image`` holding the current figure
as PNG. Moving a control calls ``draw(**values)``, a function that returns a matplotlib Figure,
and replaces the image. Headless tests set ``explorer.controls["name"].value`` and compare
``explorer.image.value`` (PNG bytes) and ``explorer.data`` (the numbers behind the picture).

Each chapter's explorers live in their own file (``attnkit.widgets.attention`` for chapter 01,
...); this file holds only the base.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W
import matplotlib.pyplot as plt

from attnkit.viz import figure_png

__all__ = ["Explorer"]


class Explorer:
    """Controls + a function ``draw(**values) -> (Figure, data)`` -> a redrawing widget."""

    def __init__(self, controls: dict[str, W.ValueWidget], draw: Callable, dpi: int = 80):
        self.controls = controls
        self._draw = draw
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
        fig, self.data = self._draw(**self.values())
        self.image.value = figure_png(fig, dpi=self.dpi)
        plt.close(fig)
        self.redraws += 1

    def static(self):
        """Draw the current state as an ordinary figure, for readers where widgets do not run."""
        fig, _ = self._draw(**self.values())
        return fig

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
