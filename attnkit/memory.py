"""The one peak-memory meter: the most bytes torch's allocator holds during a call, beyond what it held before.

``peak_bytes(step, device)`` runs ``step()`` once and returns that number; ``measure_peak_bytes(fn,
*args, **kwargs)`` runs ``fn(*args, **kwargs)`` on the device of its tensor arguments and returns
``(result, peak_bytes)``. Every chapter, benchmark and the factory's profiler measure with it.

The same quantity on every device, read where torch keeps it:

- CPU: ``torch.profiler.profile(profile_memory=True)``. The allocator reports every allocation
  and free as a "[memory]" event with its size (scratch space inside a fused kernel included);
  the running sum of those events in time order, at its largest, is the peak.
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
  allocated before.

Tensors that existed before the call are not counted; a tensor the call frees lowers the running
sum. Memory the call leaves alive (its result) counts until the end.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch
from torch.utils._pytree import tree_leaves

__all__ = ["peak_bytes", "measure_peak_bytes"]


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment: the CPU profiler's start and stop print a
    ``USDT: ... profiler_start`` line there, which a notebook would keep as output."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedded interpreter): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak(step) -> int:
    from torch._C._autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        prof.start()
    try:
        step()
    finally:
        with _quiet_stderr():
            prof.stop()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == DeviceType.CPU),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def _cuda_peak(step, device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def peak_bytes(step, device="cpu") -> int:
    """Peak bytes the allocator of ``device`` holds during ``step()`` beyond what it held before.

    ``step`` takes no arguments; ``device`` is "cpu", "cuda", "cuda:1" or a ``torch.device``.
    """
    if not callable(step):
        raise TypeError(f"step must be a callable taking no arguments, got {type(step).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda' or a torch.device, got {device!r}") from err
    if device.type == "cuda":
        return _cuda_peak(step, device)
    if device.type != "cpu":
        raise ValueError(f"device must be a cpu or cuda device, got {device}")
    return _cpu_peak(step)


def measure_peak_bytes(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` once; return ``(result, peak_bytes)``, measured on the device of
    the first tensor among the arguments (CPU when there is none) by ``peak_bytes``."""
    if not callable(fn):
        raise TypeError(f"fn must be a callable, got {type(fn).__name__}")
    device = next((t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)),
                  torch.device("cpu"))
    out = []
    peak = peak_bytes(lambda: out.append(fn(*args, **kwargs)), device)
    return out[0], peak
