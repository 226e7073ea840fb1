"""Grouped-query attention (MHA / GQA / MQA): query heads sharing key/value heads, as functions and a module.

``num_kv_heads == num_heads`` is multi-head attention, ``num_kv_heads == 1`` multi-query attention
(Shazeer 2019), anything between grouped-query attention (Ainslie et al. 2023). Shapes:
``(B, H, L, D)`` inside and ``(B, L, E)`` at module boundaries. The production path calls
``torch.nn.functional.scaled_dot_product_attention``; ``repeat_kv`` + ``attnkit.core`` is the
teaching version shown beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit import validate
from attnkit.core import causal_mask
from attnkit.core import scaled_dot_product_attention as _plain_sdpa
from attnkit.gqa._checks import _check_input, _check_positive_int, _check_tensor, _shape
from attnkit.gqa.cache import KVCache


def kv_head_index(num_heads: int, num_kv_heads: int) -> list[int]:
    """Which kv head each query head reads: query head i uses kv head i // (n_h / n_g)."""
    _check_positive_int("num_heads", num_heads)
    _check_positive_int("num_kv_heads", num_kv_heads)
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} "
            f"(each kv head serves a whole group of query heads)"
        )
    group = num_heads // num_kv_heads
    return [i // group for i in range(num_heads)]


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, S, D) -> (B, H_kv * n_rep, S, D): each kv head repeated n_rep times in a row,
    so that head i of the result is kv head i // n_rep (as in Hugging Face's LLaMA)."""
    _check_tensor("x", x, 4, "(B, H_kv, S, D)")
    _check_positive_int("n_rep", n_rep)
    if n_rep == 1:
        return x
    B, Hkv, S, D = x.shape
    return x[:, :, None, :, :].expand(B, Hkv, n_rep, S, D).reshape(B, Hkv * n_rep, S, D)


def _check_gqa(q, k, v) -> int:
    _check_tensor("q", q, 4, "(B, H, L, D)")
    _check_tensor("k", k, 4, "(B, H_kv, S, D)")
    _check_tensor("v", v, 4, "(B, H_kv, S, Dv)")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k has {k.shape[1]} heads {_shape(k)} but v has {v.shape[1]} {_shape(v)}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(
            f"k's head count {k.shape[1]} (k {_shape(k)}) must divide q's head count "
            f"{q.shape[1]} (q {_shape(q)})"
        )
    for name, x in (("k", k), ("v", v)):
        if x.shape[0] != q.shape[0]:
            raise ValueError(f"{name} has batch {x.shape[0]} {_shape(x)}, expected q's {q.shape[0]}")
        if x.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {x.dtype}, expected q's dtype {q.dtype}")
        if x.device != q.device:
            raise ValueError(f"{name} is on {x.device}, expected q's device {q.device}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k has head dim {k.shape[-1]} {_shape(k)}, expected q's {q.shape[-1]}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v has {v.shape[-2]} positions {_shape(v)}, expected k's {k.shape[-2]}")
    return q.shape[1] // k.shape[1]


def grouped_query_attention(
    q: torch.Tensor,  # (B, H, L, D)
    k: torch.Tensor,  # (B, H_kv, S, D)
    v: torch.Tensor,  # (B, H_kv, S, Dv)
    attn_mask: torch.Tensor | None = None,  # bool (True = attend) or float, broadcast to (B, H, L, S)
    is_causal: bool = False,  # top-left aligned, as torch; for decoding pass a causal_mask(offset=S-L)
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
):
    """Attention where query head i reads kv head i // (H / H_kv) (Ainslie et al. 2023, s2.2).

    The fast path is ``F.scaled_dot_product_attention(..., enable_gqa=True)``, which never
    materialises the repeated keys. ``return_weights=True`` takes the teaching path instead:
    ``repeat_kv`` then ``attnkit.core.scaled_dot_product_attention``; it returns ``(out, weights)``
    with weights ``(B, H, L, S)``.
    """
    n_rep = _check_gqa(q, k, v)
    validate.probability("dropout_p", dropout_p)
    validate.optional_real("scale", scale)
    if return_weights:
        return _plain_sdpa(
            q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=dropout_p, scale=scale, return_weights=True,
        )
    validate.attention_mask("attn_mask", attn_mask, (q.shape[0], q.shape[1], q.shape[2], k.shape[2]), q.device,
                            "(B, H, L, S)")
    return _gqa_sdpa(q, k, v, attn_mask, is_causal, dropout_p, scale, n_rep)


def _gqa_sdpa(q, k, v, attn_mask, is_causal: bool, dropout_p: float, scale, n_rep: int):
    """The production path on checked inputs (the modules call it directly)."""
    if n_rep > 1 and attn_mask is None and not is_causal:
        # No mask: every query row is independent, so the n_rep query heads that share a kv head
        # can be stacked as extra query rows of that one head (as decoding kernels do). Exact, and
        # on CPU much faster than enable_gqa for a single decode token.
        B, H, L, D = q.shape
        qf = q.reshape(B, k.shape[1], n_rep * L, D)  # (B, Hkv, G*L, D): rows ordered (member, l)
        out = F.scaled_dot_product_attention(qf, k, v, dropout_p=dropout_p, scale=scale)
        return out.reshape(B, H, L, v.shape[-1])  # (B, H, L, Dv)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
        enable_gqa=n_rep > 1,
    )


def _decode_mask(attn_mask, is_causal: bool, L: int, S: int, device):
    """Combine the user's mask with a causal mask aligned to the END of the keys.

    With ``past = S - L`` cached positions, new query i sits at absolute position past + i and may
    see key j when j <= past + i. Returns ``(mask, is_causal_flag)`` for F.sdpa.
    """
    if not is_causal:
        return attn_mask, False
    if attn_mask is None and S == L:
        return None, True  # plain causal self-attention: let torch pick its fast path
    if L == 1 and attn_mask is None:
        return None, False  # a single newest query sees every cached key
    allowed = causal_mask(L, S, offset=S - L, device=device)  # (L, S)
    if attn_mask is None:
        return allowed, False
    if attn_mask.dtype == torch.bool:
        return attn_mask & allowed, False
    return attn_mask.masked_fill(~allowed, float("-inf")), False


def mean_pool_kv_heads(weight: torch.Tensor, num_heads: int, num_kv_heads: int) -> torch.Tensor:
    """Mean-pool the per-head rows of a key or value projection into groups (GQA paper, s2.1).

    ``weight`` is ``(num_heads * d_h, ...)`` (a Linear's weight, or its bias); the result is
    ``(num_kv_heads * d_h, ...)`` where kv head g is the mean of query heads g*G .. g*G + G - 1.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    kv_head_index(num_heads, num_kv_heads)  # validates
    if weight.dim() == 0 or weight.shape[0] % num_heads:
        raise ValueError(
            f"weight has shape {_shape(weight)}: its first dim must be num_heads * d_h with "
            f"num_heads={num_heads}"
        )
    d_h = weight.shape[0] // num_heads
    group = num_heads // num_kv_heads
    w = weight.reshape(num_kv_heads, group, d_h, *weight.shape[1:])  # (n_g, G, d_h, ...)
    return w.mean(dim=1).reshape(num_kv_heads * d_h, *weight.shape[1:])




class GroupedQueryAttention(nn.Module):
    """Causal/self attention with ``num_kv_heads`` key/value heads shared by groups of query heads.

    ``num_kv_heads == num_heads`` is multi-head attention, ``num_kv_heads == 1`` multi-query
    attention. Projections are named as in LLaMA: ``q_proj`` (E -> n_h d_h), ``k_proj`` and
    ``v_proj`` (E -> n_g d_h), ``o_proj`` (n_h d_h -> E).

    ``forward(x, attn_mask=None, is_causal=False, kv_cache=None, need_weights=False)`` returns
    ``(out, weights or None)``. With a ``KVCache`` the new keys/values are appended and the
    queries attend over everything cached; ``is_causal`` then aligns the mask to the end of the
    keys, so decoding token by token equals the full causal forward.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, dropout: float = 0.0,
                 bias: bool = False, device=None, dtype=None):
        super().__init__()
        _check_positive_int("embed_dim", embed_dim)
        kv_head_index(num_heads, num_kv_heads)  # validates num_heads, num_kv_heads
        if embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embed_dim={embed_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.num_groups = num_heads // num_kv_heads  # query heads per kv head
        self.dropout = dropout
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.q_proj = nn.Linear(embed_dim, num_heads * self.head_dim, **kw)
        self.k_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, **kw)
        self.v_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, **kw)
        self.o_proj = nn.Linear(num_heads * self.head_dim, embed_dim, **kw)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}")

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                kv_cache: KVCache | None = None, need_weights: bool = False):
        _check_input(x, self.embed_dim, self.o_proj.weight)
        B, L, _ = x.shape
        D = self.head_dim
        q = self.q_proj(x).view(B, L, self.num_heads, D).transpose(1, 2)  # (B, H, L, D)
        k = self.k_proj(x).view(B, L, self.num_kv_heads, D).transpose(1, 2)  # (B, Hkv, L, D)
        v = self.v_proj(x).view(B, L, self.num_kv_heads, D).transpose(1, 2)  # (B, Hkv, L, D)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, S, D), S = past + L
        S = k.shape[2]
        mask, causal = _decode_mask(attn_mask, is_causal, L, S, x.device)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights or mask is not None:  # checked path (the mask may come from the caller)
            out = grouped_query_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=p,
                                          return_weights=need_weights)
            if need_weights:
                out, weights = out  # weights (B, H, L, S)
        else:  # q, k, v are built here with consistent shapes: skip the checks
            out = _gqa_sdpa(q, k, v, None, causal, p, None, self.num_groups)
        out = out.transpose(1, 2).reshape(B, L, self.num_heads * D)  # (B, L, H*D)
        return self.o_proj(out), weights

    @classmethod
    def from_mha(cls, mha: nn.Module, num_kv_heads: int | None = None) -> "GroupedQueryAttention":
        """Build a GQA layer from a multi-head checkpoint, mean-pooling its kv heads (GQA paper s2.1).

        ``mha`` is a ``torch.nn.MultiheadAttention`` (packed ``in_proj_weight``) or any module with
        ``q_proj/k_proj/v_proj/out_proj`` (or ``o_proj``) Linear layers and ``num_heads``, such as
        attnkit's chapter-04 ``MultiHeadAttention``. ``num_kv_heads=None`` keeps every head
        (an exact copy: MHA as GQA).
        """
        q_w, k_w, v_w, q_b, k_b, v_b, o_w, o_b, embed_dim, num_heads = _mha_weights(mha)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        bias = q_b is not None
        ref = q_w
        gqa = cls(embed_dim, num_heads, num_kv_heads, bias=bias, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            gqa.q_proj.weight.copy_(q_w)
            gqa.k_proj.weight.copy_(mean_pool_kv_heads(k_w, num_heads, num_kv_heads))
            gqa.v_proj.weight.copy_(mean_pool_kv_heads(v_w, num_heads, num_kv_heads))
            gqa.o_proj.weight.copy_(o_w)
            if bias:
                gqa.q_proj.bias.copy_(q_b)
                gqa.k_proj.bias.copy_(mean_pool_kv_heads(k_b, num_heads, num_kv_heads))
                gqa.v_proj.bias.copy_(mean_pool_kv_heads(v_b, num_heads, num_kv_heads))
                gqa.o_proj.bias.copy_(o_b if o_b is not None else torch.zeros_like(gqa.o_proj.bias))
        return gqa


def _mha_weights(mha: nn.Module):
    """Return (q_w, k_w, v_w, q_b, k_b, v_b, o_w, o_b, embed_dim, num_heads) of an MHA module."""
    if isinstance(mha, nn.MultiheadAttention):
        if not mha._qkv_same_embed_dim:
            raise ValueError("from_mha needs self-attention weights (kdim == vdim == embed_dim)")
        if mha.bias_k is not None:
            raise ValueError("from_mha does not support add_bias_kv=True")
        E = mha.embed_dim
        q_w, k_w, v_w = mha.in_proj_weight.detach().split(E)
        if mha.in_proj_bias is not None:
            q_b, k_b, v_b = mha.in_proj_bias.detach().split(E)
        else:
            q_b = k_b = v_b = None
        o = mha.out_proj
        return (q_w, k_w, v_w, q_b, k_b, v_b, o.weight.detach(),
                None if o.bias is None else o.bias.detach(), E, mha.num_heads)
    names = [n for n in ("q_proj", "k_proj", "v_proj") if not isinstance(getattr(mha, n, None), nn.Linear)]
    out = getattr(mha, "out_proj", None) or getattr(mha, "o_proj", None)
    if names or not isinstance(out, nn.Linear) or not hasattr(mha, "num_heads"):
        raise TypeError(
            f"mha must be nn.MultiheadAttention or have q_proj/k_proj/v_proj/out_proj Linear layers "
            f"and num_heads, got {type(mha).__name__}"
        )
    lin = [mha.q_proj, mha.k_proj, mha.v_proj]
    if any(li.in_features != lin[0].in_features for li in lin):
        raise ValueError("from_mha needs self-attention weights (kdim == vdim == embed_dim)")
    ws = [li.weight.detach() for li in lin]
    bs = [None if li.bias is None else li.bias.detach() for li in lin]
    if any(b is None for b in bs) and not all(b is None for b in bs):
        raise ValueError("from_mha needs biases on all of q/k/v or on none")
    return (*ws, *bs, out.weight.detach(), None if out.bias is None else out.bias.detach(),
            lin[0].in_features, mha.num_heads)
