"""Softmax, written out plainly (chapters 02 and 03), and the online softmax that flash builds on.

    softmax(x / T)_i = exp(x_i / T - m) / sum_j exp(x_j / T - m),   m = max_j x_j / T

Subtracting the row maximum m changes nothing mathematically (it cancels between numerator
and denominator) but keeps every exponent <= 0, so nothing overflows. Conventions, as in
PyTorch's attention: a ``-inf`` entry gets weight exactly 0, and a row whose entries are all
``-inf`` (a fully masked row) gives zeros instead of NaN.

Online softmax (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", alg. 3)
reads a row chunk by chunk and keeps only two numbers per row, an ``OnlineSoftmaxState``:

    m = running max,   l = sum_j exp(x_j - m)  over the entries seen so far.

Two states (of two disjoint parts of a row) merge into the state of their union::

    m = max(m_a, m_b),   l = l_a exp(m_a - m) + l_b exp(m_b - m)

``merge`` is associative and commutative and has ``OnlineSoftmaxState.identity`` (m=-inf, l=0)
as its neutral element, so any chunking, in any order, gives the same (m, l). Flash attention
(chapter 07) does the same with an output accumulator: see ``merge_partials``.

Half precision (float16/bfloat16) is computed in float32 and cast back, as torch does on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from attnkit import validate

__all__ = [
    "softmax",
    "logsumexp",
    "naive_softmax",
    "OnlineSoftmaxState",
    "softmax_state",
    "merge",
    "update",
    "normalize",
    "online_softmax",
    "merge_partials",
    "softmax_jacobian",
    "softmax_jacobian_norm",
]


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _check_tensor(x, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_dim(x: torch.Tensor, dim: int, name: str = "x") -> int:
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-d tensor")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(
            f"dim must be in [{-x.dim()}, {x.dim() - 1}] for {name} of shape {_shape(x)}, got {dim}"
        )
    return dim % x.dim()


def _check_values(x: torch.Tensor, m: torch.Tensor | None = None, name: str = "x") -> None:
    """Refuse NaN and +inf (-inf is a mask and is fine), looking only at maxima ``m`` of ``x``:
    a max is NaN or +inf exactly when its row holds one (cheaper than a full isfinite pass)."""
    m = x.amax() if m is None else m
    if bool((torch.isnan(m) | torch.isposinf(m)).any()):
        bad = ~(torch.isfinite(x) | torch.isneginf(x))
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or +inf entries (only finite values and -inf "
            "for masked entries are allowed); did the scores overflow before the softmax?"
        )


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    temperature = float(temperature)
    if not (temperature >= 0.0 and temperature != float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    return temperature


def _safe_max(m: torch.Tensor) -> torch.Tensor:
    """A row max with -inf replaced by 0, so that exp(x - m) is 0 (not NaN) on a fully -inf row."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def softmax(x: torch.Tensor, dim: int = -1, temperature: float = 1.0) -> torch.Tensor:
    """Numerically stable softmax of ``x / temperature`` along ``dim``.

    ``-inf`` entries get weight 0; a row of all ``-inf`` gives zeros. ``temperature=0`` gives the
    limit T -> 0: the weight is split evenly among the row's largest entries (a one-hot argmax
    when there is one maximum). Same shape and dtype as ``x``; differentiable.
    """
    _check_tensor(x)
    dim = _check_dim(x, dim)
    temperature = _check_temperature(temperature)
    if x.shape[dim] == 0:
        return x.clone()
    xc = x.to(_compute_dtype(x.dtype))
    m = xc.amax(dim=dim, keepdim=True)  # (..., 1, ...) the row maxima
    _check_values(x, m)
    if temperature == 0.0:
        hard = ((xc == m) & ~torch.isneginf(xc)).to(xc.dtype)  # the argmax set, one row at a time
        count = hard.sum(dim=dim, keepdim=True)
        return (hard / count.clamp_min(1)).to(x.dtype)
    z = xc / temperature if temperature != 1.0 else xc  # (..., n, ...)
    m = _safe_max(m / temperature).detach()  # max of z; the shift cancels, so no gradient needed
    e = torch.exp(z - m)  # every exponent <= 0: no overflow
    s = e.sum(dim=dim, keepdim=True)  # >= 1 unless the row is all -inf, where it is 0
    return (e / torch.where(s > 0, s, torch.ones_like(s))).to(x.dtype)


def naive_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum exp(x), in x's own dtype, with no max subtraction: overflows for large x.

    Only here to show the failure (chapter 03); use ``softmax``.
    """
    _check_tensor(x)
    dim = _check_dim(x, dim)
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def logsumexp(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """log sum_j exp(x_j) = m + log sum_j exp(x_j - m), stable; an all -inf row gives -inf."""
    _check_tensor(x)
    dim = _check_dim(x, dim)
    if x.shape[dim] == 0:  # the sum of nothing is 0, its log -inf
        return torch.full_like(x.sum(dim=dim, keepdim=keepdim), float("-inf"))
    xc = x.to(_compute_dtype(x.dtype))
    m = xc.amax(dim=dim, keepdim=True)
    _check_values(x, m)
    m = _safe_max(m).detach()
    out = m + torch.log(torch.exp(xc - m).sum(dim=dim, keepdim=True))  # log 0 = -inf for a dead row
    if not keepdim:
        out = out.squeeze(dim)
    return out.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Online softmax


class OnlineSoftmaxState(NamedTuple):
    """The running statistics of a softmax row: ``m`` (max seen) and ``l`` (sum of exp(x - m)).

    Both have the row's shape with the softmax dim kept as size 1, e.g. (..., 1).
    """

    m: torch.Tensor
    l: torch.Tensor

    @classmethod
    def identity(cls, shape, dtype=torch.float32, device=None) -> OnlineSoftmaxState:
        """The state of an empty row (m = -inf, l = 0): ``merge(identity, s) == s``."""
        if isinstance(shape, (str, bytes)) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                       for s in _iterable("shape", shape)):
            raise TypeError(f"shape must be a sequence of ints, got {shape!r}")
        if any(s < 0 for s in shape):
            raise ValueError(f"shape must hold sizes >= 0, got {tuple(shape)}")
        m = torch.full(tuple(shape), float("-inf"), dtype=dtype, device=device)
        return cls(m, torch.zeros(tuple(shape), dtype=dtype, device=device))

    def logsumexp(self) -> torch.Tensor:
        """log sum_j exp(x_j) of everything seen: m + log l (-inf for an empty or all -inf row)."""
        return _safe_max(self.m) + torch.log(self.l)


def _iterable(name: str, value):
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {type(value).__name__}") from None


def _check_state(name: str, state) -> None:
    if not isinstance(state, OnlineSoftmaxState):
        raise TypeError(f"{name} must be an OnlineSoftmaxState (m, l), got {type(state).__name__}")


def _rescale(m_old: torch.Tensor, m_new: torch.Tensor) -> torch.Tensor:
    """exp(m_old - m_new), the factor that re-bases a sum from max m_old to max m_new >= m_old.

    0 when m_old = -inf (nothing seen), also when m_new = -inf too (instead of exp(nan)).
    """
    return torch.exp(m_old - _safe_max(m_new))


def softmax_state(x: torch.Tensor, dim: int = -1) -> OnlineSoftmaxState:
    """The state (m, l) of one chunk: m = max_j x_j, l = sum_j exp(x_j - m), along ``dim``."""
    _check_tensor(x)
    dim = _check_dim(x, dim)
    xc = x.to(_compute_dtype(x.dtype))
    if x.shape[dim] == 0:  # an empty chunk has the identity state
        shape = list(x.shape)
        shape[dim] = 1
        return OnlineSoftmaxState.identity(shape, dtype=xc.dtype, device=x.device)
    m = xc.amax(dim=dim, keepdim=True)
    _check_values(x, m)
    l = torch.exp(xc - _safe_max(m)).sum(dim=dim, keepdim=True)  # 0 for an all -inf chunk
    return OnlineSoftmaxState(m, l)


def merge(a: OnlineSoftmaxState, b: OnlineSoftmaxState) -> OnlineSoftmaxState:
    """The state of the union of two disjoint parts of a row (Milakov & Gimelshein 2018, the ⊕ of the parallel online normalizer).

    m = max(m_a, m_b),   l = l_a exp(m_a - m) + l_b exp(m_b - m)
    """
    _check_state("a", a)
    _check_state("b", b)
    if a.m.shape != b.m.shape or a.l.shape != b.l.shape:
        raise ValueError(
            f"a and b must have the same shape, got m of shapes {_shape(a.m)} (a) and {_shape(b.m)} (b)"
        )
    m = torch.maximum(a.m, b.m)
    l = a.l * _rescale(a.m, m) + b.l * _rescale(b.m, m)
    return OnlineSoftmaxState(m, l)


def update(state: OnlineSoftmaxState, chunk: torch.Tensor, dim: int = -1) -> OnlineSoftmaxState:
    """One streaming step: fold a new chunk of the row into the running state."""
    _check_state("state", state)
    new = softmax_state(chunk, dim=dim)
    if new.m.shape != state.m.shape:
        raise ValueError(f"chunk has shape {_shape(chunk)}, whose state {_shape(new.m)} does not match "
                         f"state.m {_shape(state.m)}: expected the same rows")
    return merge(state, new)


def normalize(x: torch.Tensor, state: OnlineSoftmaxState) -> torch.Tensor:
    """exp(x - m) / l for a chunk ``x`` of a row whose full state is ``state`` (0 for a dead row)."""
    _check_tensor(x)
    _check_state("state", state)
    try:
        torch.broadcast_shapes(x.shape, state.m.shape)
    except RuntimeError:
        raise ValueError(f"x has shape {_shape(x)}, which does not match the state's rows {_shape(state.m)}") from None
    xc = x.to(_compute_dtype(x.dtype))
    l = torch.where(state.l > 0, state.l, torch.ones_like(state.l))
    return (torch.exp(xc - _safe_max(state.m)) / l).to(x.dtype)


def online_softmax(
    x: torch.Tensor,
    dim: int = -1,
    chunk_size: int | Sequence[int] = 1,
    return_state: bool = False,
):
    """Softmax along ``dim`` computed by streaming over chunks of the row.

    Pass 1 reads the chunks once, keeping only the running (m, l); pass 2 writes
    exp(x - m) / l chunk by chunk. ``chunk_size`` is an int (the last chunk may be shorter;
    1 = element by element, as in the paper) or a list of sizes that sum to ``x.shape[dim]``,
    like ``torch.split``. Returns the same as ``softmax(x, dim)``, and with
    ``return_state=True`` also the final ``OnlineSoftmaxState`` (its ``logsumexp()`` equals
    ``logsumexp(x, dim, keepdim=True)``).
    """
    _check_tensor(x)
    dim = _check_dim(x, dim)
    if x.numel():
        _check_values(x)
    n = x.shape[dim]
    validate.flag("return_state", return_state)
    if isinstance(chunk_size, (int, float, bool)):
        validate.int_at_least("chunk_size", chunk_size)
    else:
        sizes = _iterable("chunk_size", chunk_size)
        if (
            any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes)
            or sum(sizes) != n
        ):
            raise ValueError(
                f"chunk_size as a list must hold positive ints summing to x.shape[{dim}] = {n}, got {sizes}"
            )
        chunk_size = sizes
    chunks = torch.split(x, chunk_size, dim=dim)
    shape = list(x.shape)
    shape[dim] = 1
    state = OnlineSoftmaxState.identity(shape, dtype=_compute_dtype(x.dtype), device=x.device)
    for c in chunks:  # pass 1: one read of x, O(1) memory per row
        state = update(state, c, dim=dim)
    out = (
        torch.cat([normalize(c, state) for c in chunks], dim=dim) if chunks else x.clone()
    )  # pass 2
    return (out, state) if return_state else out


def merge_partials(
    o_a: torch.Tensor,  # (..., Dv) softmax(x_a) @ v_a: the output of attention over part a
    a: OnlineSoftmaxState,  # (..., 1)
    o_b: torch.Tensor,  # (..., Dv)
    b: OnlineSoftmaxState,  # (..., 1)
):
    """Combine attention outputs over two disjoint sets of keys into the output over both.

    Each partial output is normalised within its own part; the merged output weights them by
    their share of the total mass (FlashAttention-2, Dao 2023, sec. 3.1; flash-decoding):

        o = (l_a exp(m_a - m) o_a + l_b exp(m_b - m) o_b) / l,   (m, l) = merge(a, b)

    Returns ``(o, state)``. A part with no keys (l = 0) contributes nothing; if both are empty,
    o is zeros.
    """
    _check_tensor(o_a, "o_a")
    _check_tensor(o_b, "o_b")
    validate.same_dtype_device(o_a=o_a, o_b=o_b)
    _check_state("a", a)
    _check_state("b", b)
    if o_a.shape != o_b.shape:
        raise ValueError(
            f"o_a and o_b must have the same shape, got {_shape(o_a)} and {_shape(o_b)}"
        )
    if a.m.shape != o_a.shape[:-1] + (1,):
        raise ValueError(
            f"the states' m must have shape {_shape(o_a[..., :1])} = o's shape with the last dim 1, "
            f"got {_shape(a.m)}"
        )
    s = merge(a, b)
    wa = a.l * _rescale(a.m, s.m)  # (..., 1) mass of part a, on the merged scale
    wb = b.l * _rescale(b.m, s.m)
    l = torch.where(s.l > 0, s.l, torch.ones_like(s.l))
    o = (wa * o_a.to(wa.dtype) + wb * o_b.to(wb.dtype)) / l
    return o.to(o_a.dtype), s


# ---------------------------------------------------------------------------------------------
# The Jacobian


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d softmax(x)_i / d x_j = p_i (delta_ij - p_j), i.e. J = diag(p) - p p^T, for p = softmax(x).

    ``p`` (..., n) are softmax outputs along the last dim; returns (..., n, n). J is symmetric,
    its rows sum to 0, and it vanishes when p is one-hot (saturation: no gradient flows).
    """
    _check_tensor(p, "p")
    if p.dim() < 1:
        raise ValueError("p must have shape (..., n), got a 0-d tensor")
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., n, n)


def _sum_of_others(v: torch.Tensor) -> torch.Tensor:
    """sum_{j != i} v_j along the last dim, without the cancellation of ``v.sum() - v``."""
    zero = torch.zeros_like(v[..., :1])
    before = torch.cat([zero, v.cumsum(-1)[..., :-1]], dim=-1)  # sum_{j < i}
    after = torch.cat([v.flip(-1).cumsum(-1)[..., :-1].flip(-1), zero], dim=-1)  # sum_{j > i}
    return before + after


def softmax_jacobian_norm(p: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of diag(p) - p p^T without building it, for p (..., n) -> (...).

        ||J||_F^2 = sum_i p_i^2 (1 - p_i)^2 + sum_i p_i^2 sum_{j != i} p_j^2

    with 1 - p_i computed as sum_{j != i} p_j, so a nearly one-hot row (where 1 - p_i and
    sum p^2 - 2 sum p^3 + (sum p^2)^2 lose every digit to cancellation) keeps full precision.
    """
    _check_tensor(p, "p")
    if p.dim() < 1:
        raise ValueError("p must have shape (..., n), got a 0-d tensor")
    p2 = p * p
    rest = _sum_of_others(p)  # 1 - p_i
    return (p2 * (rest * rest + _sum_of_others(p2))).sum(-1).sqrt()
