"""One round-robin timing helper, shared by every chapter's timing cell and by ``benchmarks/``.

Variants are timed in turn (a, b, c, a, b, c, ...), so a burst of load on the machine hits all of
them alike, and the median of each is returned. Time on one thread (``one_thread()``): on a
2-core machine two threads give erratic steps. A chapter prints any comparison it draws from the
returned numbers; prose never states a ratio a rerun could contradict.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Callable

import torch

__all__ = ["round_robin_medians", "round_robin_times", "one_thread"]


def round_robin_times(impls: dict[str, Callable[[], object]], repeats: int,
                      warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` calls of every zero-argument callable, timed in turn."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not impls:
        raise ValueError("impls must name at least one callable, got an empty dict")
    for _ in range(warmup):
        for f in impls.values():
            f()
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, f in impls.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return times


def round_robin_medians(impls: dict[str, Callable[[], object]], repeats: int,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds of each zero-argument callable, timed round-robin (see the module doc)."""
    return {name: statistics.median(ts)
            for name, ts in round_robin_times(impls, repeats, warmup).items()}


@contextmanager
def one_thread():
    """``with one_thread(): ...`` times on a single intra-op thread, then restores the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
