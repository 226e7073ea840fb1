"""attnkit.memory, the one peak-memory meter, against closed forms: bytes of tensors whose sizes we know."""

import pytest
import torch

from attnkit import flash
from attnkit.factory import profiler
from attnkit.memory import measure_peak_bytes, peak_bytes


def test_peak_is_the_largest_running_sum_of_allocations():
    def step():
        a = torch.empty(1 << 20)  # 4 MiB
        b = torch.empty(1 << 19)  # 2 MiB, both alive: 6 MiB
        del a, b
        c = torch.empty(1 << 20)  # 4 MiB after both were freed
        return c.sum()

    assert peak_bytes(step) == 6 * 2**20
    assert peak_bytes(step, "cpu") == peak_bytes(step, torch.device("cpu")) == 6 * 2**20


def test_measure_peak_bytes_closed_form():
    def chain():
        a = torch.ones(1000)  # 4000 B live
        b = a + a  # 8000 B live
        del a  # 4000 B
        c = b * b  # 8000 B
        return c[:10]  # a view: no new memory

    result, peak = measure_peak_bytes(chain)
    assert peak == 8000 and result.shape == (10,)
    assert measure_peak_bytes(lambda: torch.zeros(3, 5, dtype=torch.float64))[1] == 120
    x = torch.randn(100, 100)  # made before the call: not counted
    out, peak = measure_peak_bytes(torch.matmul, x, x)
    assert peak == 100 * 100 * 4 and torch.equal(out, x @ x)


def test_memory_freed_inside_one_op_is_counted():
    """What the allocator holds at once, even when no tensor outlives the op: a temporary of
    4 MiB made and freed inside the step shows, while the result is one float."""
    def step():
        return (torch.ones(1 << 20) * 2).sum()  # ones (4 MiB) and the product (4 MiB) live together

    assert peak_bytes(step) >= 8 * 2**20


def test_every_caller_uses_this_meter():
    assert flash.measure_peak_bytes is measure_peak_bytes
    assert profiler.peak_bytes is peak_bytes


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="step must be a callable"):
        peak_bytes(5)
    with pytest.raises(ValueError, match="device must be"):
        peak_bytes(lambda: None, "tpu")
    with pytest.raises(ValueError, match="device must be"):
        peak_bytes(lambda: None, "meta")
