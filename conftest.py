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


def _group(nodeid: str) -> str:
    if nodeid.startswith("chapters/en"):
        return "notebooks, English (nbval)"
    if nodeid.startswith("chapters/zh"):
        return "notebooks, Chinese (nbval)"
    if nodeid.startswith("tests/browser"):
        return "browser (JupyterLab in Chromium)"
    return "unit, property, parity, widget, exercise tests"


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
