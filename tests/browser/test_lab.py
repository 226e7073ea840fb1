"""The course in a real browser: JupyterLab in headless Chromium, both languages.

For every built chapter notebook (found by glob, so new chapters are covered as they land):
English notebooks in the English interface, Chinese notebooks in the Chinese interface
(zh-CN language pack, selected by pre-seeded settings). Each test opens a copy of the notebook
(outputs stripped, so everything on screen comes from this run), waits for the kernel to be
idle, runs all cells from the Run menu, and asserts (see notebook_check.check_notebook):

- the interface is in the expected language (menu labels);
- every code cell ran, and no cell has an error output (in the page and in the saved copy);
- every widget cell of the notebook shows a rendered widget with visible controls and an image;
- moving each slider (keyboard on its handle) changes the image of its widget (PNG bytes);
- the Chinese notebook's headings, widget labels and figure titles are Chinese, drawn without
  missing glyphs (the English ones contain no Chinese).

A screenshot of each notebook after Run All goes to tests/browser/screenshots/ (named in the
test output and in the terminal summary).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_check import UI, cases

PER_NOTEBOOK_S = 900  # generous: the machines these run on are shared


@pytest.mark.timeout(PER_NOTEBOOK_S * 2)
@pytest.mark.parametrize("ui,source", [pytest.param(ui, nb, id=f"{ui}-ui-{UI[ui][0]}-{nb.stem}")
                                       for ui, nb in cases()])
def test_chapter_in_jupyterlab(ui: str, source: Path, browser_runner):
    try:
        lines = browser_runner.result(ui, source, timeout=PER_NOTEBOOK_S)
    except BaseException as e:
        for line in getattr(e, "browser_log", []):
            print(line)
        raise
    for line in lines:
        print(line)


def test_every_chapter_is_covered():
    """Each built notebook is a case, in its own language's interface (the glob is not empty)."""
    found = cases()
    assert any(ui == "en" for ui, _ in found) and any(ui == "zh" for ui, _ in found), found
    for ui, nb in found:
        assert nb.parent.name == UI[ui][0]
