"""Root conftest: applies to tests/ and to the notebooks nbval collects from chapters/.

nbval 0.11 executes cells with ``store_history=False``. IPython decides whether a trailing ``;``
hides a cell's value by looking at the last *stored* input, so under nbval the semicolon is
ignored and a value the reader never sees in JupyterLab (or in the built notebook) appears,
failing the strict comparison. Execute as JupyterLab and nbclient do: with history.
"""

import nbval.kernel


def _execute_cell_input(self, cell_input, allow_stdin=None):
    return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)


nbval.kernel.RunningKernel.execute_cell_input = _execute_cell_input


# ---- time per group of tests, for the summary `make test` prints (tools/run_tests.py) ----
import json  # noqa: E402
import os  # noqa: E402

_GROUPS: dict[str, dict] = {}


_FOLDERS = {
    "library": "library (mechanisms and composition)",
    "course": "course helpers (widgets, figures, text)",
    "exercises": "exercise checkers",
    "project": "project: build, parity, environment, lint",
    "classroom": "classroom (handout, grading)",
    "browser": "browser (JupyterLab in Chromium)",
}


def _group(nodeid: str) -> str:
    """The phase-table row of a test: its folder under tests/, or the notebook nbval runs."""
    parts = nodeid.split("::")[0].split("/")
    if parts[0] == "chapters" and len(parts) > 2:  # chapters/en/01_x.ipynb: one row per notebook
        return f"notebook {parts[1]}/{parts[2]}"
    if parts[0] == "tests" and len(parts) > 2:
        return _FOLDERS.get(parts[1], parts[1])
    return "other tests"


def pytest_runtest_logreport(report):
    g = _GROUPS.setdefault(_group(report.nodeid), {"seconds": 0.0, "tests": 0})
    g["seconds"] += report.duration
    if report.when == "call":
        g["tests"] += 1


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("ATTNKIT_PHASES_FILE")
    if path:
        with open(path, "w") as f:
            json.dump(_GROUPS, f)
