"""Grading a class: 20 returned notebooks of one chapter, graded with ``python -m attnkit.classroom``'s
own function, two kernels at a time; prints the wall time (the bar: under 3 minutes on 2 cores).

The class is made from the chapter's built notebook as the classroom tests make theirs
(tests/classroom/test_classroom.py): a quarter solved with the reference solutions' source, a quarter half
solved, a quarter untouched, a quarter with a wrong answer. ``--full`` grades the same class a
second time running every cell (no grade-skip) and prints both times and whether every outcome
is the same.

    .venv/bin/python benchmarks/bench_classroom.py [--chapter 08] [--n 20] [--jobs 2] [--full]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "classroom"))

import test_classroom as tc  # noqa: E402  (the class-making helpers)

from attnkit.classroom import grade  # noqa: E402
from attnkit.classroom.originals import chapters_dir, load_original  # noqa: E402

BAR_S = 180.0


def make(folder: Path, chapter: str, n: int) -> None:
    exercises = load_original(chapter, "en", chapters_dir()).exercises
    code = [ex for ex in exercises if ".ex" in ex]
    kinds = {0: exercises, 1: exercises[: len(exercises) // 2], 2: [], 3: code[:1]}
    for i in range(n):
        nb = tc.built(chapter)
        for ex in kinds[i % 4]:
            tc.answer(nb, ex, "solve", chapter)
        if i % 4 == 3:
            tc.answer(nb, code[1], "wrong", chapter)
        tc.write(nb, folder / f"learner_{i:02d}.ipynb")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its reaped children: the kernels run under a
    supervisor in namespaces of their own and are not always reaped up to here, so this undercounts."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def timed(folder: Path, jobs: int, skip: bool, seed: int):
    cpu, start = cpu_seconds(), time.perf_counter()
    g = grade([folder], timeout=300, skip=skip, jobs=jobs, seed=seed,
              progress=lambda k, n, r: print(f"  {k:2d} / {n}  {r.learner}: {r.passed} of {len(r.outcomes)} passed",
                                             flush=True))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    # on a shared machine the wall time includes waiting for other processes; the CPU time does not
    print(f"  CPU time of the kernels and the grader: {cpu:.1f} s ({cpu / (os.cpu_count() or 1):.1f} s spread "
          f"over {os.cpu_count()} cores: the wall time on an otherwise idle machine is about this or more)")
    outs = [o for r in g.results for o in r.outcomes.values()]
    print(f"  the grader's own comparison: {sum(o.get('grader') == 'passed' for o in outs)} of {len(outs)} outcomes "
          f"passed it, {sum(o['status'] == 'tampered' for o in outs)} not credited; sandbox: "
          f"{sorted({r.isolation for r in g.results})}")
    return wall, g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chapter", default="08")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also grade running every cell, and compare")
    ap.add_argument("--seed", type=int, default=1, help="the drawn cases' seed (the same for both runs)")
    args = ap.parse_args()
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make(folder, args.chapter, args.n)
        seconds, g = timed(folder, args.jobs, skip=True, seed=args.seed)
        print(f"chapter {args.chapter}: {args.n} notebooks graded in {seconds:.1f} s with grade-skip "
              f"({seconds / args.n:.1f} s a notebook, {args.jobs} at a time); "
              + (f"bar {BAR_S:.0f} s: {'met' if seconds < BAR_S else 'NOT met'}" if args.n == 20
                 else f"(the bar, {BAR_S:.0f} s, is for 20 notebooks)"))
        if args.full:
            full_s, full = timed(folder, args.jobs, skip=False, seed=args.seed)
            same = [r.outcomes for r in g.results] == [r.outcomes for r in full.results]
            print(f"every cell run: {full_s:.1f} s; grade-skip saves {full_s - seconds:.1f} s; "
                  f"outcomes {'identical' if same else 'DIFFER'}")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
