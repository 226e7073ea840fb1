"""Scaled dot-product attention, written out plainly (chapter 01).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V          (Vaswani et al. 2017, eq. 1)

Same semantics as ``torch.nn.functional.scaled_dot_product_attention``:
a boolean mask is True where a query may attend, a float mask is added to the scores,
``is_causal`` keeps key j for query i when j <= i (top-left aligned, as torch does, also
when q_len != k_len), and a row with every key masked gives zeros instead of NaN.
"""

from __future__ import annotations

import math

import torch

from attnkit import validate

__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask"]


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_inputs(q, k, v, attn_mask):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{name} must have shape (..., seq, dim), got {_shape(x)}")
    validate.same_dtype_device(q=q, k=k, v=v)
    if not q.is_floating_point():
        raise TypeError(f"q must be a floating-point tensor, got dtype {q.dtype}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"k has shape {_shape(k)}: its last dim must equal q's head dim {q.shape[-1]} "
            f"(q has shape {_shape(q)})"
        )
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"v has shape {_shape(v)}: its seq dim must equal k's seq dim {k.shape[-2]} "
            f"(k has shape {_shape(k)})"
        )
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"batch dims of q {_shape(q)}, k {_shape(k)} and v {_shape(v)} do not broadcast"
        ) from None
    validate.attention_mask("attn_mask", attn_mask, (*batch, q.shape[-2], k.shape[-2]), q.device)


def causal_mask(q_len: int, k_len: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """Boolean (q_len, k_len) mask, True where query i may see key j, i.e. j <= i + offset.

    ``offset=0`` is torch's ``is_causal`` (top-left aligned). For decoding with a cache, where
    the queries are the *last* q_len positions of k_len keys, use ``offset=k_len - q_len``.
    """
    validate.int_at_least("q_len", q_len, 0)
    k_len = q_len if k_len is None else validate.int_at_least("k_len", k_len, 0)
    validate.int_at_least("offset", offset, None)
    i = torch.arange(q_len, device=device)[:, None]  # (q_len, 1)
    j = torch.arange(k_len, device=device)[None, :]  # (1, k_len)
    return j <= i + offset  # (q_len, k_len)


def padding_mask(lengths, max_len: int) -> torch.Tensor:
    """Boolean (batch, max_len) mask, True for real tokens (position < length), False for padding.

    To mask keys in attention, broadcast it as ``mask[:, None, None, :]`` -> (B, 1, 1, S).
    ``nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite convention: pass ``~mask``.
    """
    validate.int_at_least("max_len", max_len, 0)
    lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold ints, got dtype {lengths.dtype}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (batch,), got shape {_shape(lengths)}")
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > max_len):
        raise ValueError(f"lengths must lie in [0, max_len={max_len}], got {lengths.tolist()}")
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, max_len)


def scaled_dot_product_attention(
    q: torch.Tensor,  # (..., L, E)
    k: torch.Tensor,  # (..., S, E)
    v: torch.Tensor,  # (..., S, Ev)
    attn_mask: torch.Tensor | None = None,  # bool or float, broadcastable to (..., L, S)
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
):
    """softmax(q k^T * scale + mask) v, returning ``out`` (..., L, Ev) or ``(out, weights)``."""
    _check_inputs(q, k, v, attn_mask)
    validate.probability("dropout_p", dropout_p)
    validate.flag("is_causal", is_causal)
    validate.flag("return_weights", return_weights)
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else validate.real_number("scale", scale)
    # Half precision is computed in float32, as torch does on CPU, then cast back.
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    qc, kc, vc = q.to(compute), k.to(compute), v.to(compute)

    scores = (qc @ kc.transpose(-2, -1)) * scale  # (..., L, S)
    allowed = None  # bool mask, True = attend
    if is_causal:
        allowed = causal_mask(L, S, device=q.device)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = attn_mask if allowed is None else allowed & attn_mask
        else:
            scores = scores + attn_mask.to(compute)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))

    # A row whose every score is -inf has no defined softmax: it attends to nothing (zeros).
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        weights = torch.dropout(weights, dropout_p, train=True)
    out = (weights @ vc).to(q.dtype)  # (..., L, Ev)
    return (out, weights.to(q.dtype)) if return_weights else out
