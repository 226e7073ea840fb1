"""The benchmarks time with the helper the chapters use (attnkit.timing)."""

from attnkit.timing import one_thread, round_robin_medians, round_robin_times

__all__ = ["round_robin_medians", "round_robin_times", "one_thread"]
