"""Every explorer of every chapter: the median time of a redraw after a control moves.

The bar: under 100 ms median on a 2-core machine. Each explorer is built as its chapter
builds it; then each control is moved through a few of its values (slider ends and middle, each
option of a dropdown, both states of a toggle), one move at a time, and every move is timed:
wall clock (the bar) and CPU time of this process (``time.process_time``: what the redraw costs,
less sensitive to other processes on a shared machine), one thread. Prints the load average, one
line per explorer and whether all meet the bar.

    .venv/bin/python benchmarks/bench_widgets.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attnkit.widgets.registry import explorers  # noqa: E402

BAR_MS = 100.0


def moves(control) -> list:
    """A few values of a control, ending where it started."""
    start = control.value
    opts = getattr(control, "options", None)
    if opts is not None and len(opts) and not hasattr(control, "min"):
        values = [o[1] if isinstance(o, tuple) else o for o in opts]
        if isinstance(opts, dict):
            values = list(opts.values())
        if len(values) > 6:  # a long selection slider: ends and middle
            values = [values[0], values[len(values) // 2], values[-1]]
    elif isinstance(start, bool):
        values = [not start]
    elif hasattr(control, "min"):
        lo, hi = control.min, control.max
        if type(control).__name__.endswith("LogSlider"):
            values = [lo, (lo + hi) / 2, hi]
            values = [control.base ** v for v in values]
        else:
            values = [lo, (lo + hi) / 2 if isinstance(start, float) else (lo + hi) // 2, hi]
    else:
        values = []
    return [v for v in values if v != start] + [start]


def time_explorer(explorer, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of every move that redrew."""
    times, cpu = [], []
    for _ in range(repeats):
        for control in explorer.controls.values():
            for v in moves(control):
                if control.value == v:
                    continue
                before = explorer.redraws
                t0, c0 = time.perf_counter(), time.process_time()
                control.value = v
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if explorer.redraws > before:
                    times.append(dt)
                    cpu.append(dc)
    return times, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    worst = 0.0
    load = "load average %.2f %.2f %.2f" % os.getloadavg()
    print(f"explorer redraw after a control moves (median, one thread; bar {BAR_MS:.0f} ms); "
          f"{os.cpu_count()} cores, {load}")
    for name, build in explorers():
        t0 = time.perf_counter()
        e = build()
        built = time.perf_counter() - t0
        ts, cs = time_explorer(e, args.repeats)
        med = statistics.median(ts) * 1e3
        worst = max(worst, med)
        print(f"  {name:<28} median {med:6.1f} ms  max {max(ts) * 1e3:6.1f} ms  "
              f"CPU median {statistics.median(cs) * 1e3:5.1f} ms  ({len(ts)} moves; built in "
              f"{built:.2f} s)  {'ok' if med < BAR_MS else 'OVER'}")
    verdict = "every explorer is under" if worst < BAR_MS else "NOT every explorer is under"
    print(f"worst median {worst:.1f} ms: {verdict} {BAR_MS:.0f} ms "
          f"(at the end: load average %.2f %.2f %.2f)" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
