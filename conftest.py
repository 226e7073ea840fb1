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


# ---- the perturbed arithmetic path: the Chinese notebooks run under other float arithmetic ----
# A stored output must be one that any correct run reproduces, on any CPU (chapters/AUTHORING.md,
# "Printed numbers"). The two languages run the same code cells, so nbval runs the English
# notebooks on this machine's default path and the Chinese ones under a perturbed path, and both
# compare strictly against outputs the build wrote on the default path: a printed digit that
# depends on the arithmetic fails here, at no extra cost. The kernel is a child process, so the
# settings are put in the environment while nbval starts it. The setting is the one under which
# the most stored outputs differed on the machines measured (AUTHORING.md records the counts);
# ATTNKIT_PERTURB="" turns it off, ATTNKIT_PERTURB="VAR=value ..." chooses another.
import nbval.plugin  # noqa: E402

PERTURBED_PATH = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
PERTURBED_LANG = "zh"


def perturbed_settings() -> dict[str, str]:
    spec = os.environ.get("ATTNKIT_PERTURB")
    if spec is None:
        return dict(PERTURBED_PATH)
    return dict(item.split("=", 1) for item in spec.split())


_nbval_setup = nbval.plugin.IPyNbFile.setup


def _setup_maybe_perturbed(self):
    if os.path.basename(os.path.dirname(str(self.fspath))) != PERTURBED_LANG:
        return _nbval_setup(self)
    settings = perturbed_settings()
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        return _nbval_setup(self)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


nbval.plugin.IPyNbFile.setup = _setup_maybe_perturbed
