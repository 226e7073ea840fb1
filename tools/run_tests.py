"""`make test`: set up, run the whole suite, and say where the time went.

Runs with the system Python (standard library only), before .venv exists:

1. set-up: `make setup` (the .venv and the pinned packages; nothing to do on a second run);
2. browser set-up: tools/browser_deps.py (Chromium and fonts with apt-get as root, else a message);
3. pytest over tests/ and the built notebooks (nbval, both languages). Without PYTEST_ARGS it
   runs in two steps: the unit tests and the notebooks side by side (two pytest processes: the
   unit tests use one core most of the time and nbval one kernel, so together they fill the two
   cores; the exercise checkers' tests run after the notebooks in nbval's process, which balances
   the two; that process's output is printed when it ends), then the browser tests alone (they run two
   pages at once and print latencies that other work would inflate). With PYTEST_ARGS (say
   `-k rope`) it is one pytest over everything with those arguments. The root conftest.py adds
   up the time of every test by group and writes it to the file named by ATTNKIT_PHASES_FILE.

Then it prints the time of each phase and the total, and exits with pytest's status (a set-up
failure exits at once with that step's status).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = ROOT / ".venv" / "bin" / "python"
# The test folder that runs after the notebooks, in nbval's process, so that the two processes take
# about as long (measured: the notebooks 3 min 30 s, the exercise checkers 1 min 18 s, the other
# unit tests 4 min 52 s summed).
SECOND = "tests/exercises"


def main() -> int:
    phases: list[tuple[str, float]] = []
    t_all = time.monotonic()

    def step(name: str, cmd: list[str], env: dict | None = None) -> int:
        t0 = time.monotonic()
        print(f"\n== {name}: {shlex.join(cmd)}", flush=True)
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        phases.append((name, time.monotonic() - t0))
        return rc

    make = os.environ.get("MAKE", "make")
    rc = step("set-up (.venv, pinned packages)", [make, "--no-print-directory", "setup"])
    if rc == 0:
        rc = step("browser set-up (Chromium, fonts)", [str(PY), "tools/browser_deps.py"])
    if rc != 0:
        summary(phases, {}, time.monotonic() - t_all)
        return rc
    pytest = [str(PY), "-m", "pytest"]
    nbval = ["--nbval", "--nbval-current-env", "--nbval-cell-timeout=300"]
    extra = shlex.split(os.environ.get("PYTEST_ARGS", ""))
    groups: dict = {}
    with tempfile.TemporaryDirectory(prefix="attnkit-phases-") as tmp:
        def env_for(name: str) -> dict:
            return dict(os.environ, ATTNKIT_PHASES_FILE=str(Path(tmp) / f"{name}.json"))

        if extra:
            rc = step("pytest", [*pytest, *nbval, "tests", "chapters/en", "chapters/zh", *extra], env_for("all"))
        else:
            rc = side_by_side(step, phases,
                              [*pytest, "tests", "--ignore=tests/browser", f"--ignore={SECOND}"], env_for("unit"),
                              [*pytest, *nbval, "chapters/en", "chapters/zh", SECOND], env_for("nbval"), Path(tmp))
            rc_browser = step("pytest: browser", [*pytest, "tests/browser"], env_for("browser"))
            rc = rc or rc_browser
        for report in Path(tmp).glob("*.json"):
            groups.update(json.loads(report.read_text()))
    summary(phases, groups, time.monotonic() - t_all)
    return rc


def side_by_side(step, phases, unit: list[str], unit_env: dict, nb: list[str], nb_env: dict,
                 tmp: Path) -> int:
    """Run the unit tests (output shown as it comes) and nbval (output kept in a log, printed
    when it ends) at once; the status is the first non-zero of the two (5, no tests, included)."""
    t0 = time.monotonic()
    log_path = tmp / "nbval.log"
    print(f"\n== pytest: notebooks (nbval) and {SECOND}, side by side with the unit tests: {shlex.join(nb)}",
          flush=True)
    with open(log_path, "w") as log:
        notebooks = subprocess.Popen(nb, cwd=ROOT, env=nb_env, stdout=log, stderr=subprocess.STDOUT)
        rc_unit = step("pytest: unit tests", unit, unit_env)
        rc_nb = notebooks.wait()
    print(f"\n== pytest: notebooks (nbval) and {SECOND}, its output:", flush=True)
    print(log_path.read_text(), flush=True)
    phases.pop()  # the unit step alone; the side-by-side wall time replaces it
    phases.append(("pytest: unit tests and notebooks, side by side", time.monotonic() - t0))
    return rc_unit or rc_nb


def summary(phases, groups: dict, total: float) -> None:
    rows = []
    for name, secs in phases:
        rows.append((name, secs))
        if name.startswith("pytest"):
            for g, secs_g in sorted(groups.items(), key=lambda kv: -kv[1]["seconds"]):
                if ("browser" in g) == ("browser" in name) or name == "pytest":
                    rows.append((f"  {g} ({secs_g['tests']} tests, summed)", secs_g["seconds"]))
    rows.append(("total", total))
    width = max(len(r[0]) for r in rows)
    print("\n== make test: time per phase", flush=True)
    for name, secs in rows:
        print(f"   {name:<{width}}  {int(secs // 60):3d} min {secs % 60:4.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
