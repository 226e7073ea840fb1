"""The registry lists every explorer of the course (benchmarks/bench_widgets.py times what it
lists), and each listed explorer's redraw looks like a fresh draw at the same values."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import attnkit.widgets  # noqa: E402
from attnkit.widgets import Explorer, image_difference, registry  # noqa: E402


def _explorer_functions() -> set[str]:
    names = set()
    for mod in pkgutil.iter_modules(attnkit.widgets.__path__):
        module = importlib.import_module(f"attnkit.widgets.{mod.name}")
        for name, obj in vars(module).items():
            if name.endswith("_explorer") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
                names.add(name)
    return names


def test_every_explorer_function_is_listed():
    listed = {entry.split()[-1] for entry, _ in registry.explorers()}
    missing = _explorer_functions() - listed
    assert not missing, f"add these to attnkit/widgets/registry.py: {sorted(missing)}"
    assert len(listed) == len(registry.explorers())  # no name twice


def test_found_functions_include_the_known_ones():
    assert {"attention_explorer", "flash_explorer", "rope_scaling_explorer"} <= _explorer_functions()


# Chapters 01-07 test this in their own files (tests/course/test_widgets_ch0*.py); every later explorer
# the registry lists is checked here: each control moves, and the image looks like a fresh draw.
LATER = [(e, b) for e, b in registry.explorers() if int(e[:2]) > 7]


def _moves(control):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_widgets import moves

    return moves(control)[:-1]  # the last one goes back to the start


@pytest.mark.parametrize("entry,build", LATER, ids=[e for e, _ in LATER])
def test_each_move_redraws_like_a_fresh_draw(entry, build):
    e = build()
    assert isinstance(e, Explorer)
    moved = set()
    for name, control in e.controls.items():  # from the start state, and back
        start, png = control.value, bytes(e.image.value)
        changed = False
        for value in _moves(control):
            redraws = e.redraws
            control.value = value
            assert e.redraws == redraws + 1, name
            assert image_difference(e.image.value, e.fresh_png()) < 1e-3, (name, value)
            changed = changed or bytes(e.image.value) != png
            if changed:
                break
        if changed:  # (a control may leave the picture alone in some states)
            moved.add(name)
        control.value = start
        assert image_difference(e.image.value, png) < 1e-3, name
    assert len(moved) >= len(e.controls) - 1, f"only {sorted(moved)} changed the picture"
