"""Multi-head attention (chapter 04).

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)               (Vaswani et al. 2017, sec. 3.2.2)

The h per-head projections W_i^Q (d_model x d_k) are stored side by side as one
``nn.Linear(embed_dim, embed_dim)``; splitting heads is then a reshape, not a loop.

``MultiHeadAttention`` attributes (stable names, other modules copy weights through them):

- ``q_proj``: ``nn.Linear(embed_dim, embed_dim)``; rows ``i*head_dim:(i+1)*head_dim`` are head i's W_i^Q
- ``k_proj``: ``nn.Linear(kdim, embed_dim)``, same layout, for keys
- ``v_proj``: ``nn.Linear(vdim, embed_dim)``, same layout, for values
- ``out_proj``: ``nn.Linear(embed_dim, embed_dim)``, W^O
- ``embed_dim``, ``num_heads``, ``head_dim = embed_dim // num_heads``, ``kdim``, ``vdim``, ``dropout``

All four linears have a bias when ``bias=True`` and none when ``bias=False`` (as in
``torch.nn.MultiheadAttention``). Inputs and outputs are batch-first: ``(B, L, E)``.

Boolean masks follow attnkit and ``F.scaled_dot_product_attention``: **True = may attend**.
``torch.nn.MultiheadAttention`` uses the opposite convention for both of its boolean masks
(True = masked out / padding). To port a call, invert boolean masks; float masks are added to
the scores in both and carry over unchanged:

============================  ==========================  ==========================
mask                          nn.MultiheadAttention       attnkit.mha (this module)
============================  ==========================  ==========================
``attn_mask`` (bool)          True = do NOT attend        True = attend  (pass ``~m``)
``key_padding_mask`` (bool)   True = padding, ignore      True = real token (pass ``~m``;
                                                          ``attnkit.core.padding_mask``
                                                          gives this convention directly)
either, float                 added to the scores         added to the scores (same)
============================  ==========================  ==========================

A query row whose every key is masked gives zeros (not NaN), as ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit import validate
from attnkit.core import causal_mask
from attnkit.core import scaled_dot_product_attention as plain_sdpa

__all__ = [
    "split_heads",
    "merge_heads",
    "build_attention_mask",
    "multi_head_attention",
    "MultiHeadAttention",
    "mha_param_count",
    "mha_flops",
    "mha_activation_bytes",
    "mha_counts",
]


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t) + ")"


def _check_heads(embed_dim, num_heads) -> None:
    """embed_dim and num_heads are ints >= 1 and num_heads divides embed_dim."""
    validate.int_at_least("embed_dim", embed_dim)
    validate.int_at_least("num_heads", num_heads)
    if embed_dim % num_heads:
        raise ValueError(
            f"embed_dim={embed_dim} must be divisible by num_heads={num_heads} "
            f"(head_dim = embed_dim / num_heads would be {embed_dim / num_heads:g})"
        )


def _check_sizes(**sizes) -> None:
    """Counting arguments: kdim, vdim, batch >= 1 (None allowed), seq_len, kv_len >= 0."""
    for name, value in sizes.items():
        validate.optional_int_at_least(name, value, 0 if name in ("seq_len", "kv_len") else 1)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H*Dh) -> (B, H, L, Dh): head i gets features i*Dh:(i+1)*Dh. A reshape, no copy."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    validate.int_at_least("num_heads", num_heads)
    if x.dim() != 3:
        raise ValueError(f"x must have shape (batch, seq, embed_dim), got {_shape(x.shape)}")
    B, L, E = x.shape
    if E % num_heads:
        raise ValueError(
            f"x has embed_dim {E} (shape {_shape(x.shape)}), which num_heads={num_heads} does not divide"
        )
    return x.view(B, L, num_heads, E // num_heads).transpose(1, 2)  # (B, H, L, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, H*Dh): the inverse of ``split_heads`` (the "Concat" of eq. MultiHead)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (batch, heads, seq, head_dim), got {_shape(x.shape)}")
    B, H, L, Dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * Dh)  # (B, L, E)


def _as_float_mask(m: torch.Tensor, dtype) -> torch.Tensor:
    if m.dtype == torch.bool:
        return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, float("-inf"))
    return m.to(dtype)


def build_attention_mask(
    batch: int,
    num_heads: int,
    q_len: int,
    k_len: int,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor | None:
    """Merge ``attn_mask``, ``key_padding_mask`` and ``is_causal`` into one mask for SDPA.

    ``attn_mask``: bool (True = attend) or float (added), shaped (L, S) (or broadcastable to it),
    (B*H, L, S) as in
    ``nn.MultiheadAttention``, or 4-D broadcastable to (B, H, L, S). ``key_padding_mask``: (B, S),
    bool (True = real token) or float (added). Returns None when there is nothing to mask, a bool
    mask when every input is bool, else a float mask; broadcastable to (B, H, L, S).
    """
    validate.int_at_least("batch", batch)
    validate.int_at_least("num_heads", num_heads)
    validate.int_at_least("q_len", q_len, 0)
    validate.int_at_least("k_len", k_len, 0)
    validate.flag("is_causal", is_causal)
    target = (batch, num_heads, q_len, k_len)
    masks = []
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask must be a torch.Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise TypeError(f"attn_mask must be bool or floating point, got dtype {attn_mask.dtype}")
        m = attn_mask
        expected = (
            f"(L, S) = ({q_len}, {k_len}), (B*H, L, S) = ({batch * num_heads}, {q_len}, {k_len}) "
            f"or 4-D broadcastable to (B, H, L, S) = {_shape(target)}"
        )
        if m.dim() == 2 and all(a in (1, b) for a, b in zip(m.shape, (q_len, k_len), strict=True)):
            m = m[None, None]  # (1, 1, L, S) or broadcastable to it
        elif m.dim() == 3 and tuple(m.shape) == (batch * num_heads, q_len, k_len):
            m = m.view(batch, num_heads, q_len, k_len)  # (B, H, L, S)
        elif m.dim() == 4:
            validate.attention_mask("attn_mask", m, target, what="(B, H, L, S)")
        else:
            raise ValueError(f"attn_mask has shape {_shape(m.shape)}, expected {expected}")
        masks.append(m)
    if key_padding_mask is not None:
        kpm = key_padding_mask
        if not isinstance(kpm, torch.Tensor):
            raise TypeError(f"key_padding_mask must be a torch.Tensor, got {type(kpm).__name__}")
        if kpm.dtype != torch.bool and not kpm.is_floating_point():
            raise TypeError(f"key_padding_mask must be bool or floating point, got dtype {kpm.dtype}")
        if tuple(kpm.shape) != (batch, k_len):
            raise ValueError(
                f"key_padding_mask has shape {_shape(kpm.shape)}, expected (B, S) = ({batch}, {k_len})"
            )
        masks.append(kpm[:, None, None, :])  # (B, 1, 1, S)
    if is_causal:
        masks.append(causal_mask(q_len, k_len, device=device)[None, None])  # (1, 1, L, S)
    if not masks:
        return None
    for m in masks:
        if device is not None and m.device != torch.device(device):
            raise ValueError(f"a mask is on {m.device}, expected the inputs' device {device}")
    if all(m.dtype == torch.bool for m in masks):
        out = masks[0]
        for m in masks[1:]:
            out = out & m  # attend only where every mask allows
        return out
    out = _as_float_mask(masks[0], dtype)
    for m in masks[1:]:
        out = out + _as_float_mask(m, dtype)  # -inf from any mask wins
    return out


def _check_embed(name: str, x, expected_last: int, batch: int | None = None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"{name} must have shape (batch, seq, {expected_last}) (batch_first), got {_shape(x.shape)}"
        )
    if x.shape[-1] != expected_last:
        raise ValueError(
            f"{name} has shape {_shape(x.shape)}, expected last dim {expected_last}: "
            f"(batch, seq, {expected_last})"
        )
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name} has batch size {x.shape[0]} (shape {_shape(x.shape)}), expected {batch}")


def multi_head_attention(
    query: torch.Tensor,  # (B, L, E)
    key: torch.Tensor,  # (B, S, kdim)
    value: torch.Tensor,  # (B, S, vdim)
    num_heads: int,
    q_weight: torch.Tensor,  # (E, E)
    k_weight: torch.Tensor,  # (E, kdim)
    v_weight: torch.Tensor,  # (E, vdim)
    out_weight: torch.Tensor,  # (E, E)
    q_bias: torch.Tensor | None = None,
    k_bias: torch.Tensor | None = None,
    v_bias: torch.Tensor | None = None,
    out_bias: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O (Vaswani et al. 2017, sec. 3.2.2).

    Returns ``(out (B, L, E), weights (B, H, L, S) or None)``. Without weights the attention
    runs in ``torch.nn.functional.scaled_dot_product_attention`` (fused); with weights in
    ``attnkit.core.scaled_dot_product_attention`` (plain, the weights kept).
    """
    validate.int_at_least("num_heads", num_heads)
    validate.flag("is_causal", is_causal)
    validate.flag("need_weights", need_weights)
    validate.probability("dropout_p", dropout_p)
    for name, w in (("q_weight", q_weight), ("k_weight", k_weight), ("v_weight", v_weight),
                    ("out_weight", out_weight)):
        validate.tensor(name, w, 2, "(out_features, in_features)")
    E = q_weight.shape[0]
    _check_embed("query", query, q_weight.shape[1])
    _check_embed("key", key, k_weight.shape[1], batch=query.shape[0])
    _check_embed("value", value, v_weight.shape[1], batch=query.shape[0])
    if key.shape[1] != value.shape[1]:
        raise ValueError(
            f"key has shape {_shape(key.shape)} and value {_shape(value.shape)}: "
            f"their seq lengths must be equal"
        )
    validate.same_dtype_device(query=query, key=key, value=value, q_weight=q_weight, k_weight=k_weight,
                               v_weight=v_weight, out_weight=out_weight, q_bias=q_bias, k_bias=k_bias,
                               v_bias=v_bias, out_bias=out_bias)
    if E % num_heads:
        raise ValueError(f"embed_dim {E} is not divisible by num_heads={num_heads}")
    B, L, S = query.shape[0], query.shape[1], key.shape[1]

    # Three projections, not one packed (3E, E) matmul: concatenating the weights on every call
    # costs more than the packed matmul saves (measured: ~10% of the layer at B=1, L=256, E=768).
    q = F.linear(query, q_weight, q_bias)  # (B, L, E)
    k = F.linear(key, k_weight, k_bias)  # (B, S, E)
    v = F.linear(value, v_weight, v_bias)  # (B, S, E)
    q, k, v = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)

    only_causal = is_causal and attn_mask is None and key_padding_mask is None
    mask = build_attention_mask(
        B, num_heads, L, S, attn_mask, key_padding_mask,
        is_causal=is_causal and not only_causal, dtype=query.dtype, device=query.device,
    )
    if need_weights:
        ctx, weights = plain_sdpa(
            q, k, v, attn_mask=mask, is_causal=only_causal, dropout_p=dropout_p, return_weights=True
        )  # (B, H, L, Dh), (B, H, L, S)
    else:
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=only_causal, dropout_p=dropout_p
        )  # (B, H, L, Dh)
        weights = None
    out = F.linear(merge_heads(ctx), out_weight, out_bias)  # (B, L, E)
    return out, weights


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention; a thin wrapper around ``multi_head_attention``.

    ``forward(query, key=None, value=None, attn_mask=None, key_padding_mask=None,
    is_causal=False, need_weights=False) -> (out (B, L, E), weights (B, H, L, S) or None)``.
    ``key``/``value`` default to ``query`` (self-attention). Boolean masks: True = attend
    (see the module docstring for the mapping from ``nn.MultiheadAttention``).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_heads(embed_dim, num_heads)
        validate.probability("dropout", dropout)
        validate.flag("bias", bias)
        kdim = embed_dim if kdim is None else validate.int_at_least("kdim", kdim)
        vdim = embed_dim if vdim is None else validate.int_at_least("vdim", vdim)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim, self.vdim, self.dropout, self.bias = kdim, vdim, dropout, bias
        kw = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias, **kw)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias, **kw)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As nn.MultiheadAttention: Xavier-uniform input projections, zero biases.
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"kdim={self.kdim}, vdim={self.vdim}, dropout={self.dropout}, bias={self.bias}"
        )

    def forward(
        self,
        query: torch.Tensor,  # (B, L, E)
        key: torch.Tensor | None = None,  # (B, S, kdim)
        value: torch.Tensor | None = None,  # (B, S, vdim)
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ):
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            if isinstance(x, torch.Tensor):
                validate.module_accepts(self, name, x)
        return multi_head_attention(
            query, key, value, self.num_heads,
            self.q_proj.weight, self.k_proj.weight, self.v_proj.weight, self.out_proj.weight,
            self.q_proj.bias, self.k_proj.bias, self.v_proj.bias, self.out_proj.bias,
            attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, need_weights=need_weights,
        )

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> MultiHeadAttention:
        """A ``MultiHeadAttention`` with the weights of ``m`` (copied, not shared).

        Works for ``m`` batch_first or not, with or without bias, with kdim/vdim. The result is
        always batch-first; ``add_bias_kv`` and ``add_zero_attn`` are not supported.
        Invert ``m``'s boolean masks when calling the result (see the module docstring).
        """
        if not isinstance(m, nn.MultiheadAttention):
            raise TypeError(f"m must be a torch.nn.MultiheadAttention, got {type(m).__name__}")
        if m.bias_k is not None or m.bias_v is not None or m.add_zero_attn:
            raise ValueError("from_torch: m uses add_bias_kv or add_zero_attn, which are not supported")
        E = m.embed_dim
        ref = m.out_proj.weight
        new = cls(
            E, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
            kdim=m.kdim, vdim=m.vdim, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            if m._qkv_same_embed_dim:
                wq, wk, wv = m.in_proj_weight.chunk(3)  # 3 x (E, E)
            else:
                wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
            new.q_proj.weight.copy_(wq)
            new.k_proj.weight.copy_(wk)
            new.v_proj.weight.copy_(wv)
            new.out_proj.weight.copy_(m.out_proj.weight)
            if m.in_proj_bias is not None:
                bq, bk, bv = m.in_proj_bias.chunk(3)  # 3 x (E,)
                new.q_proj.bias.copy_(bq)
                new.k_proj.bias.copy_(bk)
                new.v_proj.bias.copy_(bv)
                new.out_proj.bias.copy_(m.out_proj.bias)
        new.train(m.training)
        return new

    def to_torch(self) -> nn.MultiheadAttention:
        """A batch-first ``torch.nn.MultiheadAttention`` with copies of these weights (the inverse
        of ``from_torch``). Remember to invert boolean masks when you call it."""
        ref = self.out_proj.weight
        m = nn.MultiheadAttention(
            self.embed_dim, self.num_heads, dropout=self.dropout, bias=self.bias,
            kdim=self.kdim, vdim=self.vdim, batch_first=True, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            if m._qkv_same_embed_dim:
                m.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            else:
                m.q_proj_weight.copy_(self.q_proj.weight)
                m.k_proj_weight.copy_(self.k_proj.weight)
                m.v_proj_weight.copy_(self.v_proj.weight)
            m.out_proj.weight.copy_(self.out_proj.weight)
            if self.bias:
                m.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                m.out_proj.bias.copy_(self.out_proj.bias)
        m.train(self.training)
        return m


# ---- counting: parameters, FLOPs, activation memory of one layer ---------------------------------


def mha_param_count(embed_dim: int, num_heads: int, bias: bool = True, kdim=None, vdim=None) -> int:
    """W^Q, W^O: E*E each; W^K: E*kdim; W^V: E*vdim; plus 4E biases. (num_heads does not matter.)"""
    _check_heads(embed_dim, num_heads)
    _check_sizes(kdim=kdim, vdim=vdim)
    validate.flag("bias", bias)
    kdim = embed_dim if kdim is None else kdim
    vdim = embed_dim if vdim is None else vdim
    E = embed_dim
    return E * E + E * kdim + E * vdim + E * E + (4 * E if bias else 0)


def mha_flops(
    embed_dim: int, num_heads: int, seq_len: int, batch: int = 1, kv_len=None, kdim=None, vdim=None
) -> dict:
    """Forward FLOPs of the matmuls (a multiply-add counts 2), as formulas; softmax not counted.

    projections: 2·B·(L·E·E + S·kdim·E + S·vdim·E + L·E·E); scores Q K^T: 2·B·H·L·S·Dh = 2·B·L·S·E;
    weights·V: 2·B·L·S·E. The causal mask does not change this count (dense compute).
    """
    _check_heads(embed_dim, num_heads)
    _check_sizes(seq_len=seq_len, batch=batch, kv_len=kv_len, kdim=kdim, vdim=vdim)
    E, L, B = embed_dim, seq_len, batch
    S = L if kv_len is None else kv_len
    kdim = E if kdim is None else kdim
    vdim = E if vdim is None else vdim
    proj = 2 * B * (L * E * E + S * kdim * E + S * vdim * E + L * E * E)
    scores = 2 * B * L * S * E
    mix = 2 * B * L * S * E
    return {"projections": proj, "scores": scores, "weighted_sum": mix, "total": proj + scores + mix}


def mha_activation_bytes(
    embed_dim: int, num_heads: int, seq_len: int, batch: int = 1, kv_len=None, bytes_per_element: int = 4
) -> dict:
    """Bytes of the intermediate tensors of one forward, as formulas.

    Q: B·L·E, K and V: B·S·E each, the attention weights: B·H·L·S (the only term quadratic in
    length; fused SDPA kernels never store it), the merged heads: B·L·E, the output: B·L·E.
    """
    _check_heads(embed_dim, num_heads)
    _check_sizes(seq_len=seq_len, batch=batch, kv_len=kv_len, bytes_per_element=bytes_per_element)
    E, L, B, H = embed_dim, seq_len, batch, num_heads
    S = L if kv_len is None else kv_len
    n = bytes_per_element
    parts = {
        "qkv": n * B * (L * E + 2 * S * E),
        "weights": n * B * H * L * S,
        "context": n * B * L * E,
        "output": n * B * L * E,
    }
    parts["total"] = sum(parts.values())
    return parts


def mha_counts(embed_dim: int, num_heads: int, seq_len: int, batch: int = 1, bias: bool = True,
               bytes_per_element: int = 4) -> dict:
    """Parameters, forward FLOPs and activation bytes of one self-attention MHA layer."""
    return {
        "params": mha_param_count(embed_dim, num_heads, bias=bias),
        "flops": mha_flops(embed_dim, num_heads, seq_len, batch)["total"],
        "activation_bytes": mha_activation_bytes(
            embed_dim, num_heads, seq_len, batch, bytes_per_element=bytes_per_element
        )["total"],
        "head_dim": embed_dim // num_heads,
    }
