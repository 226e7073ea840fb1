"""Shared fixtures of the whole suite: every test starts in English, with the exercise checkers'
staged-hint state cleared, and leaves no matplotlib figure open behind it.

Helpers that tests call as plain functions (running a checker and capturing what it printed, a
stub, lifting the forbidden-call trap) live in tests/helpers.py, importable from every folder
(pyproject's pytest `pythonpath`).
"""

import pytest


@pytest.fixture(autouse=True)
def _course_state():
    """English in, English out; no staged hint carried over from another test; no open figure."""
    from attnkit import exercises, i18n

    i18n.set_language("en")
    exercises._STAGE.clear()
    exercises._WRONG.clear()
    yield
    i18n.set_language("en")
    exercises._STAGE.clear()
    exercises._WRONG.clear()
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
