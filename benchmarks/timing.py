"""Timing helper shared by the benchmarks: round-robin medians from one run."""

import statistics
import time


def round_robin_medians(impls: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each zero-argument callable, timed in turn so load hits all alike."""
    for _ in range(warmup):
        for f in impls.values():
            f()
    times = {name: [] for name in impls}
    for _ in range(repeats):
        for name, f in impls.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
