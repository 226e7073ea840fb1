"""Explorers: a few ipywidgets controls that redraw one matplotlib figure.

An :class:`Explorer` owns its controls and an ``ipywidgets.Image`` holding the current figure
as PNG. Moving a control calls ``draw(**values)``, a function that returns a matplotlib Figure
and the data behind it, and replaces the image. An explorer that must be quick may also give
``update(fig, **values) -> data``, which changes the artists of the figure ``draw`` made the
first time (image data, bar heights, titles) instead of building a new one. Headless tests set ``explorer.controls["name"].value`` and compare
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
    """Controls + ``draw(**values) -> (Figure, data)`` (+ optional ``update``) -> a redrawing widget."""

    def __init__(self, controls: dict[str, W.ValueWidget], draw: Callable, dpi: int = 80,
                 update: Callable | None = None):
        self.controls = controls
        self._draw = draw
        self._update = update
        self._fig = None  # the figure kept for update(), if any
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
        if self._update is None:
            fig, self.data = self._draw(**self.values())
            self.image.value = figure_png(fig, dpi=self.dpi)
            plt.close(fig)
        else:
            if self._fig is None:
                self._fig, self.data = self._draw(**self.values())
                plt.close(self._fig)  # kept by us, not by pyplot (no duplicate inline output)
                self._fig.set_layout_engine("none")  # layout is fixed now: no re-layout per redraw
            else:
                self.data = self._update(self._fig, **self.values())
            self.image.value = figure_png(self._fig, dpi=self.dpi, tight=False)
        self.redraws += 1

    def static(self):
        """Draw the current state as an ordinary figure, for readers where widgets do not run."""
        fig, _ = self._draw(**self.values())
        return fig

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
