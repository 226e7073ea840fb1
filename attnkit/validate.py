"""Argument checks shared by every module: one rule, one message format.

Each check raises attnkit's own error naming the argument, what it got and what it expected:
a value of the wrong type (a float or a bool where a size is needed, a string where a tensor is
needed) raises ``TypeError``; a value of the right type outside its range raises ``ValueError``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "shape_str",
    "int_at_least",
    "optional_int_at_least",
    "optional_real",
    "real_number",
    "probability",
    "flag",
    "choice",
    "tensor",
    "same_dtype_device",
    "module_accepts",
    "attention_mask",
    "key_padding_mask",
]


def shape_str(x) -> str:
    """``(2, 4, 8)`` for a tensor, the type name otherwise: how messages show what they got."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def int_at_least(name: str, value, minimum: int | None = 1) -> int:
    """An int (not a bool) >= ``minimum`` (any int when ``minimum`` is None); returns it.

    The one positive-int rule of attnkit: a float or a bool raises TypeError, an int below the
    minimum ValueError, both naming the argument, what it got and what it expected."""
    want = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def optional_int_at_least(name: str, value, minimum: int = 1) -> int | None:
    """None, or an int >= ``minimum``."""
    return None if value is None else int_at_least(name, value, minimum)


def real_number(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (not a bool) in the given range; returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    want = "a finite number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")
    if not math.isfinite(value) \
            or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high)):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return value


def optional_real(name: str, value, **limits) -> float | None:
    """None, or a finite real number within ``limits`` (those of ``real_number``)."""
    return None if value is None else real_number(name, value, **limits)


def probability(name: str, value) -> float:
    """A dropout-like probability in [0, 1)."""
    return real_number(name, value, 0.0, 1.0, high_open=True)


def flag(name: str, value) -> bool:
    """True or False, nothing else (not 0/1, not None)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def choice(name: str, value, allowed) -> object:
    """One of ``allowed`` (a string is compared as given)."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def tensor(name: str, x, ndim: int | tuple[int, ...] | None = None, what: str = "") -> torch.Tensor:
    """A floating-point tensor with ``ndim`` dimensions (one of them when a tuple)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{' ' + what if what else ''}, got {type(x).__name__}")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in dims:
            want = what or " or ".join(f"{d}-d" for d in dims)
            raise ValueError(f"{name} must be {want}, got shape {shape_str(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def same_dtype_device(**tensors: torch.Tensor) -> None:
    """All given tensors share one dtype and one device."""
    items = [(n, t) for n, t in tensors.items() if t is not None]
    if not items:
        return
    n0, t0 = items[0]
    for n, t in items[1:]:
        if t.dtype != t0.dtype:
            raise TypeError(f"{n} has dtype {t.dtype}, expected {n0}'s dtype {t0.dtype}")
        if t.device != t0.device:
            raise ValueError(f"{n} is on {t.device}, expected {n0}'s device {t0.device}")


def module_accepts(module: torch.nn.Module, name: str, x: torch.Tensor) -> None:
    """A module's weights and its input share dtype and device (one clear error, not a matmul's)."""
    p = next(module.parameters(), None)
    if p is None:
        return
    if x.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {type(module).__name__}'s weights are {p.dtype}; "
                        f"expected {p.dtype} (convert the input, or the module with .to({x.dtype}))")
    if x.device != p.device:
        raise ValueError(f"{name} is on {x.device} but {type(module).__name__}'s weights are on {p.device}; "
                         f"expected {p.device}")


def attention_mask(name: str, mask, shape, device=None, what: str = "(..., L, S)") -> torch.Tensor | None:
    """None, or a bool (True = attend) or float (added to the scores) tensor that broadcasts to
    ``shape`` (the scores' shape, ``what`` names its dims) on ``device``: the one mask check."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (bool, True = attend, or float), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating point (bool: True = attend; float: added), got dtype {mask.dtype}")
    if device is not None and mask.device != torch.device(device):
        raise ValueError(f"{name} is on {mask.device}, expected the inputs' device {device}")
    shape = tuple(shape)
    try:
        ok = torch.broadcast_shapes(mask.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} has shape {shape_str(mask)}, which does not broadcast to the scores' shape "
                         f"{what} = {shape}")
    return mask


def key_padding_mask(name: str, mask, shape, device=None) -> torch.Tensor | None:
    """None, or a bool tensor of exactly ``shape`` (B, N), True = a real token (attnkit's convention
    in every module; ``nn.MultiheadAttention``'s is the opposite)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a bool tensor (True = real token), got {got}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {shape_str(mask)}, expected (B, N) = {tuple(shape)}")
    if device is not None and mask.device != torch.device(device):
        raise ValueError(f"{name} is on {mask.device}, expected the inputs' device {device}")
    return mask
