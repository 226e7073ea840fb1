"""`make test`: set up, run the whole suite, and say where the time went.

Runs with the system Python (standard library only), before .venv exists:

1. set-up: `make setup` (the .venv and the pinned packages; nothing to do on a second run);
2. browser set-up: tools/browser_deps.py (Chromium and fonts with apt-get as root, else a message);
3. pytest over tests/ and the built notebooks (nbval, both languages), extra arguments from
   PYTEST_ARGS. The root conftest.py adds up the time of every test by group and writes it to
   the file named by ATTNKIT_PHASES_FILE.

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
    with tempfile.TemporaryDirectory(prefix="attnkit-phases-") as tmp:
        report = Path(tmp) / "phases.json"
        env = dict(os.environ, ATTNKIT_PHASES_FILE=str(report))
        cmd = [str(PY), "-m", "pytest", "--nbval", "--nbval-current-env",
               "--nbval-cell-timeout=300", "tests", "chapters/en", "chapters/zh",
               *shlex.split(os.environ.get("PYTEST_ARGS", ""))]
        rc = step("pytest", cmd, env)
        groups = json.loads(report.read_text()) if report.exists() else {}
    summary(phases, groups, time.monotonic() - t_all)
    return rc


def summary(phases, groups: dict, total: float) -> None:
    rows = []
    for name, secs in phases:
        rows.append((name, secs))
        if name == "pytest":
            for g, secs_g in sorted(groups.items(), key=lambda kv: -kv[1]["seconds"]):
                rows.append((f"  {g} ({secs_g['tests']} tests)", secs_g["seconds"]))
    rows.append(("total", total))
    width = max(len(r[0]) for r in rows)
    print("\n== make test: time per phase", flush=True)
    for name, secs in rows:
        print(f"   {name:<{width}}  {int(secs // 60):3d} min {secs % 60:4.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
