"""How a chapter prints a number so that any correct run, on any CPU, prints the same text.

Three kinds of number, three forms (chapters/AUTHORING.md, "Printed numbers"):

- rounding noise (two computations of the same quantity that differ in the last bits) is printed
  as a bound against a stated tolerance, never as its digits: ``bound(err, 1e-5)`` gives
  ``< 1e-5: True``; ``max_abs_diff`` and ``max_rel_diff`` measure it;
- a result of training or sampling is printed at a precision that arithmetic perturbation cannot
  change: ``rounded(x, 2)``, and ``rounding_margin`` tells a test whether that precision holds
  for a set of perturbed reruns;
- a claim of exact equality or independence is printed as a boolean computed by a check that is
  exact on every machine (the output does not change when later tokens change; a gradient is
  exactly zero), never as ``torch.equal`` of two differently shaped computations.
"""

from __future__ import annotations

import math

import torch

__all__ = ["fmt_tol", "bound", "max_abs_diff", "max_rel_diff", "within", "rounded", "rounding_margin"]


def fmt_tol(tol: float) -> str:
    """A tolerance as people write it: 1e-5, 0.001, 0.5 (never 1e-05)."""
    if tol <= 0 or not math.isfinite(tol):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    mantissa, exponent = f"{tol:.0e}".split("e")
    if float(f"{tol:.0e}") == tol and abs(int(exponent)) >= 4:
        return f"{mantissa}e{int(exponent)}"
    return f"{tol:g}"


def bound(value: float, tol: float) -> str:
    """``< 1e-5: True``: whether a noise-level ``value`` is below ``tol``, without its digits."""
    value = float(value)
    return f"< {fmt_tol(tol)}: {bool(value < tol)}"


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over every element, in float64 (0.0 for empty tensors)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.numel() == 0 and b.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the reference ``b``'s scale."""
    scale = torch.as_tensor(b).double().abs().max().item() if torch.as_tensor(b).numel() else 0.0
    return max_abs_diff(a, b) / scale if scale > 0 else max_abs_diff(a, b)


def within(a: torch.Tensor, b: torch.Tensor, tol: float, relative: bool = False) -> str:
    """``< 1e-5: True`` for the largest (absolute or relative) difference of two tensors."""
    return bound(max_rel_diff(a, b) if relative else max_abs_diff(a, b), tol)


def rounded(value: float, decimals: int) -> str:
    """A training or sampling result at the precision its run-to-run spread allows."""
    return f"{float(value):.{decimals}f}"


def rounding_margin(samples, decimals: int) -> tuple[bool, float, float]:
    """Does printing at ``decimals`` give the same text for every one of ``samples`` (reruns of
    one result under perturbed arithmetic), with room to spare?

    Returns ``(stable, spread, margin)``: ``spread`` is max - min of the samples, ``margin`` the
    distance from their mean to the nearest rounding boundary at ``decimals``; ``stable`` is True
    when every sample prints the same and the margin is larger than the spread.
    """
    xs = [float(s) for s in samples]
    if not xs:
        raise ValueError("samples must hold at least one value, got none")
    spread = max(xs) - min(xs)
    mean = sum(xs) / len(xs)
    step = 10.0 ** -decimals
    boundary = (math.floor(mean / step) + 0.5) * step  # the nearest .5 boundary is one of two
    margin = min(abs(mean - boundary), abs(mean - (boundary - step)))
    same = len({rounded(x, decimals) for x in xs}) == 1
    return same and margin > spread, spread, margin
