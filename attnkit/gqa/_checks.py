"""Argument checks the gqa modules share: tensor ranks, the layer's dtype and device, positive sizes."""

from __future__ import annotations

import torch

from attnkit import validate


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_tensor(name: str, x, dim: int, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != dim:
        raise ValueError(f"{name} must have shape {what}, got {_shape(x)}")


def _check_input(x, embed_dim: int, weight: torch.Tensor) -> None:
    """x must be (B, L, embed_dim) with the layer's dtype and device."""
    if (isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[-1] == embed_dim
            and x.dtype == weight.dtype and x.device == weight.device):
        return  # one test on the decoding path; the messages below only when something is off
    _check_tensor("x", x, 3, f"(B, L, embed_dim={embed_dim})")
    if x.shape[-1] != embed_dim:
        raise ValueError(f"x has shape {_shape(x)}, expected (B, L, embed_dim={embed_dim})")
    if x.dtype != weight.dtype:
        raise TypeError(f"x has dtype {x.dtype}, expected the layer's dtype {weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device}, expected the layer's device {weight.device}")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    validate.int_at_least(name, value, minimum)  # the one size rule


def _itemsize(dtype) -> int:
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    if isinstance(dtype, bool) or not isinstance(dtype, int) or dtype <= 0:
        raise TypeError(f"dtype must be a torch.dtype or a positive int of bytes, got {dtype!r}")
    return dtype


def _check_positive_number(name: str, value) -> None:
    validate.real_number(name, value, 0.0, low_open=True)
