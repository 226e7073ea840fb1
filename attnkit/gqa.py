"""The KV cache, grouped-query attention (MHA / GQA / MQA) and multi-head latent attention (chapter 05).

Decoding one token at a time, a transformer re-reads every cached key and value of every layer
at every step, so the size of that cache sets how fast (and how long) it can generate. The
mechanisms here differ only in what they cache per token and per layer:

    MHA  (Vaswani et al. 2017)        2 * n_h * d_h       elements
    GQA  (Ainslie et al. 2023)        2 * n_g * d_h       elements   (n_g kv heads, 1 <= n_g <= n_h)
    MQA  (Shazeer 2019)               2 * d_h             elements   (GQA with n_g = 1)
    MLA  (DeepSeek-AI 2024, V2 s2.1)  d_c + d_h^R         elements   (a latent and one rotary key)

Shapes: ``(B, H, L, D)`` inside (batch, heads, sequence, head dim) and ``(B, L, E)`` at module
boundaries. The production paths call ``torch.nn.functional.scaled_dot_product_attention``;
``repeat_kv`` + ``attnkit.core`` are the teaching versions shown beside them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.core import causal_mask
from attnkit.core import scaled_dot_product_attention as _plain_sdpa

__all__ = [
    "KVCache",
    "repeat_kv",
    "kv_head_index",
    "grouped_query_attention",
    "mean_pool_kv_heads",
    "GroupedQueryAttention",
    "MultiHeadLatentAttention",
    "kv_cache_elements_per_token",
    "kv_cache_bytes_per_token",
    "kv_cache_bytes",
    "compare_cache_sizes",
    "make_decode_model",
    "measure_decode_step",
    "measure_decode_steps",
    "decode_step",
    "KINDS",
    "weights_bytes",
    "max_batch_size",
    "max_context_length",
    "decode_tokens_per_s_bound",
    "memory_budget",
    "TinyDecoder",
    "greedy_generate",
]

KINDS = ("mha", "gqa", "mqa", "mla")


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


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


class KVCache:
    """Per-layer cache of past keys and values, appended along the sequence dim (-2).

    ``update(k_new, v_new)`` appends and returns the whole cache ``(k_all, v_all)``. It holds any
    number of tensors; MLA stores one, its latent and rotary key side by side ``(B, S, d_c + d_h^R)``.

    Two layouts, the same results:

    - ``KVCache()``: each update allocates tensors of exactly the cached length (as Hugging Face's
      ``DynamicCache`` does), so ``nbytes`` is the memory the cached positions need: the formula.
    - ``KVCache(max_len=N)``: the storage for N positions is allocated at the first update and
      each new position is written in place (as ``StaticCache`` and serving engines do), so a
      decoding step copies one token, not the whole cache; ``tensors`` are views of the filled
      part and ``nbytes`` is the storage reserved for all N. ``crop(n)`` keeps the first n
      positions (to decode again from there).
    """

    def __init__(self, max_len: int | None = None) -> None:
        if max_len is not None:
            _check_positive_int("max_len", max_len)
        self.max_len = max_len
        self.tensors: tuple[torch.Tensor, ...] = ()
        self._store: tuple[torch.Tensor, ...] = ()  # max_len layout: (..., max_len, D) each

    def __len__(self) -> int:
        return self.seq_len

    @property
    def seq_len(self) -> int:
        """Number of cached positions (0 when empty)."""
        return self.tensors[0].shape[-2] if self.tensors else 0

    @property
    def k(self) -> torch.Tensor | None:
        return self.tensors[0] if self.tensors else None

    @property
    def v(self) -> torch.Tensor | None:
        return self.tensors[1] if len(self.tensors) > 1 else None

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors' storage (with max_len: all that is reserved)."""
        return sum(t.untyped_storage().nbytes() for t in (self._store or self.tensors))

    def reset(self) -> None:
        self.tensors = ()

    def crop(self, n: int) -> None:
        """Keep the first ``n`` cached positions."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self.seq_len:
            raise ValueError(f"crop needs 0 <= n <= seq_len = {self.seq_len}, got {n!r}")
        self.tensors = tuple(t[..., :n, :] for t in self.tensors) if n else ()

    def _write(self, new: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """max_len layout: copy ``new`` into the reserved storage after the filled part."""
        start, n = self.seq_len, new[0].shape[-2]
        if start + n > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions: {start} cached + "
                             f"{n} new do not fit")
        if not self._store or start == 0 and any(
                s.shape[:-2] != x.shape[:-2] or s.shape[-1] != x.shape[-1] or s.dtype != x.dtype
                or s.device != x.device for s, x in zip(self._store, new, strict=False)):
            self._store = tuple(x.new_empty(*x.shape[:-2], self.max_len, x.shape[-1]) for x in new)
        for s, x in zip(self._store, new, strict=True):
            s[..., start:start + n, :].copy_(x)
        self.tensors = tuple(s[..., :start + n, :] for s in self._store)
        return self.tensors

    def update(self, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append ``new`` (each ``(..., S_new, D)``) and return every cached tensor ``(..., S, D)``."""
        old = self.tensors
        store = self._store
        if old and store and len(new) == len(store):  # the max_len decoding path: write in place
            start, n = old[0].shape[-2], new[0].shape[-2]
            if start + n <= self.max_len and all(
                    type(x) is torch.Tensor and x.shape[:-2] == s.shape[:-2] and x.shape[-2] == n
                    and x.shape[-1] == s.shape[-1] and x.dtype == s.dtype and x.device == s.device
                    for s, x in zip(store, new, strict=True)):
                end = start + n
                for s, x in zip(store, new, strict=True):
                    s[..., start:end, :] = x
                self.tensors = tuple(s[..., :end, :] for s in store)
                return self.tensors
        if old and len(new) == len(old) and all(  # the decoding path: one cheap test, then append
                isinstance(x, torch.Tensor) and x.dim() == o.dim() and x.shape[:-2] == o.shape[:-2]
                and x.shape[-1] == o.shape[-1] and x.shape[-2] == new[0].shape[-2]
                and x.dtype == o.dtype and x.device == o.device for o, x in zip(old, new, strict=True)):
            if self.max_len is not None:
                return self._write(new)
            self.tensors = tuple(torch.cat([o, x], dim=-2) for o, x in zip(old, new, strict=True))
            return self.tensors
        if not new:
            raise ValueError("update needs at least one tensor, got none")
        for i, x in enumerate(new):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"update argument {i} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() < 2:
                raise ValueError(f"update argument {i} must have shape (..., seq, dim), got {_shape(x)}")
            if x.shape[-2] != new[0].shape[-2]:
                raise ValueError(
                    f"update argument {i} has {x.shape[-2]} new positions (shape {_shape(x)}), "
                    f"expected {new[0].shape[-2]} like argument 0 {_shape(new[0])}"
                )
        if not self.tensors:
            if self.max_len is not None:
                return self._write(new)
            self.tensors = tuple(x.contiguous() for x in new)
            return self.tensors
        if len(new) != len(self.tensors):
            raise ValueError(f"update got {len(new)} tensors, the cache holds {len(self.tensors)}")
        for i, (old, x) in enumerate(zip(self.tensors, new, strict=True)):
            if old.shape[:-2] != x.shape[:-2] or old.shape[-1] != x.shape[-1]:
                raise ValueError(
                    f"update argument {i} has shape {_shape(x)}, expected (..., S_new, D) matching "
                    f"the cached {_shape(old)} in every dim but -2"
                )
            if old.dtype != x.dtype or old.device != x.device:
                raise TypeError(
                    f"update argument {i} is {x.dtype} on {x.device}, the cache holds "
                    f"{old.dtype} on {old.device}"
                )
        if self.max_len is not None:
            return self._write(new)
        self.tensors = tuple(torch.cat([old, x], dim=-2) for old, x in zip(self.tensors, new, strict=True))
        return self.tensors


# --------------------------------------------------------------------------------------------
# Grouped-query attention as functions
# --------------------------------------------------------------------------------------------


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
    if return_weights:
        return _plain_sdpa(
            q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=dropout_p, scale=scale, return_weights=True,
        )
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask must be a torch.Tensor, got {type(attn_mask).__name__}")
        scores_shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        try:
            ok = torch.broadcast_shapes(attn_mask.shape, scores_shape) == torch.Size(scores_shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"attn_mask has shape {_shape(attn_mask)}, which does not broadcast to the scores' "
                f"shape (B, H, L, S) = {scores_shape}"
            )
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


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section 2.1)
# --------------------------------------------------------------------------------------------


class MultiHeadLatentAttention(nn.Module):
    """DeepSeek-V2's multi-head latent attention, with a naive and a weight-absorbed path.

    Per token t with hidden state h_t (DeepSeek-V2 section 2.1, eqs 9-19):

        c_t^KV = W^DKV h_t                           (9)   latent, d_c = kv_lora_rank   [cached]
        k_t^C  = W^UK c_t^KV                         (10)  per-head keys,  n_h x d_h (qk_nope_head_dim)
        v_t^C  = W^UV c_t^KV                         (11)  per-head values, n_h x v_head_dim
        c_t^Q  = W^DQ h_t                            (12)  optional query latent, d_c' = q_lora_rank
        q_t^C  = W^UQ c_t^Q                          (13)
        q_t^R  = RoPE(W^QR c_t^Q)                    (14)  per-head rotary query, n_h x d_h^R
        k_t^R  = RoPE(W^KR h_t)                      (15)  ONE rotary key shared by all heads  [cached]
        q_t,i  = [q_t,i^C ; q_t,i^R]                 (16)
        k_t,i  = [k_t,i^C ; k_t^R]                   (17)
        o_t,i  = sum_j softmax_j(q_t,i . k_j,i / sqrt(d_h + d_h^R)) v_j,i^C     (18)
        u_t    = W^O [o_t,1 ; ... ; o_t,n_h]         (19)

    As in DeepSeek's released models, the latents c^KV and c^Q pass through an RMSNorm before being
    up-projected, and RoPE uses the interleaved (RoFormer) pairing. Only the normalised c^KV and
    k^R are cached, side by side in one ``(B, S, kv_lora_rank + qk_rope_head_dim)`` tensor (the
    layout of DeepSeek's FlashMLA kernel): ``kv_lora_rank + qk_rope_head_dim`` elements per token
    per layer. The first ``kv_lora_rank`` columns double as the absorbed path's values.

    ``forward(x, attn_mask=None, is_causal=False, kv_cache=None, absorb=False)`` returns ``out``
    (B, L, E). ``absorb=False`` expands keys and values from the cached latent (eqs 10-11);
    ``absorb=True`` folds W^UK into the query and W^UV after the attention, so the heads attend
    directly over the cached latent (an MQA with head dim d_c + d_h^R). The two agree.
    """

    def __init__(self, embed_dim: int, num_heads: int, kv_lora_rank: int, qk_nope_head_dim: int,
                 qk_rope_head_dim: int, v_head_dim: int, q_lora_rank: int | None = None,
                 rope_base: float = 10000.0, norm_eps: float = 1e-6, bias: bool = False,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads),
                            ("kv_lora_rank", kv_lora_rank), ("qk_nope_head_dim", qk_nope_head_dim),
                            ("qk_rope_head_dim", qk_rope_head_dim), ("v_head_dim", v_head_dim)):
            _check_positive_int(name, value)
        if q_lora_rank is not None:
            _check_positive_int("q_lora_rank", q_lora_rank)
        if qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even for RoPE, got {qk_rope_head_dim}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kv_lora_rank, self.q_lora_rank = kv_lora_rank, q_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = qk_nope_head_dim, qk_rope_head_dim
        self.v_head_dim, self.rope_base = v_head_dim, rope_base
        self.scale = 1.0 / math.sqrt(qk_nope_head_dim + qk_rope_head_dim)  # eq (18)
        H = num_heads
        kw = dict(bias=bias, device=device, dtype=dtype)
        nkw = dict(eps=norm_eps, device=device, dtype=dtype)
        q_in = embed_dim
        if q_lora_rank is not None:
            self.w_dq = nn.Linear(embed_dim, q_lora_rank, **kw)  # W^DQ, eq (12)
            self.q_norm = nn.RMSNorm(q_lora_rank, **nkw)
            q_in = q_lora_rank
        self.w_uq = nn.Linear(q_in, H * qk_nope_head_dim, **kw)  # W^UQ, eq (13)
        self.w_qr = nn.Linear(q_in, H * qk_rope_head_dim, **kw)  # W^QR, eq (14)
        self.w_dkv = nn.Linear(embed_dim, kv_lora_rank, **kw)  # W^DKV, eq (9)
        self.kv_norm = nn.RMSNorm(kv_lora_rank, **nkw)
        self.w_kr = nn.Linear(embed_dim, qk_rope_head_dim, **kw)  # W^KR, eq (15)
        # Up-projections have no bias, so they can be absorbed into the query / output.
        self.w_uk = nn.Linear(kv_lora_rank, H * qk_nope_head_dim, bias=False, device=device, dtype=dtype)  # (10)
        self.w_uv = nn.Linear(kv_lora_rank, H * v_head_dim, bias=False, device=device, dtype=dtype)  # (11)
        self.w_o = nn.Linear(H * v_head_dim, embed_dim, **kw)  # W^O, eq (19)
        self._rope_tables = None  # (cos, sin), built on first use

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"kv_lora_rank={self.kv_lora_rank}, q_lora_rank={self.q_lora_rank}, "
                f"qk_nope_head_dim={self.qk_nope_head_dim}, qk_rope_head_dim={self.qk_rope_head_dim}, "
                f"v_head_dim={self.v_head_dim}")

    def _rope(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """Rotate x (..., L, d_h^R) as positions offset .. offset + L - 1 (interleaved pairs)."""
        from attnkit.rope import apply_rope, generate_rope_embeddings

        need = offset + x.shape[-2]
        tables = self._rope_tables
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if (tables is None or tables[0].shape[0] < need or tables[0].device != x.device
                or tables[0].dtype != dtype):
            # grow the (positions, d_h^R / 2) tables by doubling, so decoding does not rebuild them
            n = max(need, 2 * (0 if tables is None else tables[0].shape[0]), 64)
            tables = generate_rope_embeddings(n, self.qk_rope_head_dim, base=self.rope_base,
                                              device=x.device, dtype=dtype)
            self._rope_tables = tables
        cos, sin = tables
        return apply_rope(x, cos, sin, interleaved=True, offset=offset)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                kv_cache: KVCache | None = None, absorb: bool = False) -> torch.Tensor:
        _check_input(x, self.embed_dim, self.w_o.weight)
        B, L, _ = x.shape
        H, dn, dr, dv, dc = (self.num_heads, self.qk_nope_head_dim, self.qk_rope_head_dim,
                             self.v_head_dim, self.kv_lora_rank)
        past = 0 if kv_cache is None else kv_cache.seq_len

        # Queries, eqs (12)-(14), (16)
        cq = self.q_norm(self.w_dq(x)) if self.q_lora_rank is not None else x  # (B, L, d_c')
        q_c = self.w_uq(cq).view(B, L, H, dn).transpose(1, 2)  # (B, H, L, dn)
        q_r = self._rope(self.w_qr(cq).view(B, L, H, dr).transpose(1, 2), past)  # (B, H, L, dr)

        # What is cached: the normalised latent, eq (9), and the shared rotary key, eq (15)
        c_kv = self.kv_norm(self.w_dkv(x))  # (B, L, dc)
        k_r = self._rope(self.w_kr(x), past)  # (B, L, dr)
        kv = torch.cat([c_kv, k_r], dim=-1)  # (B, L, dc + dr): one row per token, as FlashMLA stores it
        if kv_cache is not None:
            (kv,) = kv_cache.update(kv)  # (B, S, dc + dr)
        c_kv, k_r = kv[..., :dc], kv[..., dc:]  # views: (B, S, dc), (B, S, dr)
        S = kv.shape[1]
        mask, causal = _decode_mask(attn_mask, is_causal, L, S, x.device)

        if not absorb:
            # Naive: expand per-head keys and values from the latent, eqs (10), (11), (17)
            k_c = self.w_uk(c_kv).view(B, S, H, dn).transpose(1, 2)  # (B, H, S, dn)
            v = self.w_uv(c_kv).view(B, S, H, dv).transpose(1, 2)  # (B, H, S, dv)
            q = torch.cat([q_c, q_r], dim=-1)  # (B, H, L, dn + dr)
            k = torch.cat([k_c, k_r[:, None].expand(B, H, S, dr)], dim=-1)  # (B, H, S, dn + dr)
            o = grouped_query_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                        scale=self.scale)  # (B, H, L, dv), eq (18)
        else:
            # Absorbed: q_c . (W^UK_i c) = (W^UK_i^T q_c) . c, so score over the latent itself.
            w_uk = self.w_uk.weight.view(H, dn, dc)  # (H, dn, dc)
            w_uv = self.w_uv.weight.view(H, dv, dc)  # (H, dv, dc)
            q_lat = torch.einsum("bhld,hdc->bhlc", q_c, w_uk)  # (B, H, L, dc)
            q = torch.cat([q_lat, q_r], dim=-1)  # (B, H, L, dc + dr)
            # One kv head shared by all query heads (an MQA): keys [c; k^R], values c. Passing the
            # whole row [c; k^R] as the value and dropping the last dr output columns is exact, and
            # lets q, k and v share one head size (torch's fused CPU kernel needs that).
            o_lat = grouped_query_attention(q, kv[:, None], kv[:, None], attn_mask=mask,
                                            is_causal=causal, scale=self.scale)[..., :dc]  # (B, H, L, dc)
            o = torch.einsum("bhlc,hvc->bhlv", o_lat, w_uv)  # (B, H, L, dv): W^UV after attention
        o = o.transpose(1, 2).reshape(B, L, H * dv)  # (B, L, H*dv)
        return self.w_o(o)  # eq (19)


# --------------------------------------------------------------------------------------------
# Cache size formulas
# --------------------------------------------------------------------------------------------


def _itemsize(dtype) -> int:
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    if isinstance(dtype, bool) or not isinstance(dtype, int) or dtype <= 0:
        raise TypeError(f"dtype must be a torch.dtype or a positive int of bytes, got {dtype!r}")
    return dtype


def kv_cache_elements_per_token(kind: str, num_heads: int | None = None, head_dim: int | None = None,
                                num_kv_heads: int | None = None, kv_lora_rank: int | None = None,
                                qk_rope_head_dim: int | None = None) -> int:
    """Cached elements per token per layer (DeepSeek-V2, Table 1):

    mha 2 n_h d_h · gqa 2 n_g d_h · mqa 2 d_h · mla d_c + d_h^R.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def need(**kw):
        for name, value in kw.items():
            if value is None:
                raise ValueError(f"kind={kind!r} needs {name}, got None")
            _check_positive_int(name, value)

    if kind == "mha":
        need(num_heads=num_heads, head_dim=head_dim)
        return 2 * num_heads * head_dim
    if kind == "gqa":
        need(num_kv_heads=num_kv_heads, head_dim=head_dim)
        if num_heads is not None:
            kv_head_index(num_heads, num_kv_heads)
        return 2 * num_kv_heads * head_dim
    if kind == "mqa":
        need(head_dim=head_dim)
        return 2 * head_dim
    need(kv_lora_rank=kv_lora_rank, qk_rope_head_dim=qk_rope_head_dim)
    return kv_lora_rank + qk_rope_head_dim


def kv_cache_bytes_per_token(kind: str, num_heads: int | None = None, head_dim: int | None = None,
                             num_kv_heads: int | None = None, kv_lora_rank: int | None = None,
                             qk_rope_head_dim: int | None = None, num_layers: int = 1,
                             dtype: torch.dtype | int = torch.float32) -> int:
    """Bytes of KV cache per token: elements per token per layer x num_layers x bytes per element.

    ``dtype`` is a torch dtype (``torch.bfloat16`` -> 2 bytes) or a number of bytes.
    Multiply by context length and batch size for a whole cache.
    """
    _check_positive_int("num_layers", num_layers)
    elems = kv_cache_elements_per_token(kind, num_heads=num_heads, head_dim=head_dim,
                                        num_kv_heads=num_kv_heads, kv_lora_rank=kv_lora_rank,
                                        qk_rope_head_dim=qk_rope_head_dim)
    return elems * num_layers * _itemsize(dtype)


def kv_cache_bytes(kind: str, seq_len: int, batch_size: int = 1, **kw) -> int:
    """Bytes of a whole KV cache: ``kv_cache_bytes_per_token(kind, **kw) * seq_len * batch_size``."""
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("batch_size", batch_size)
    return kv_cache_bytes_per_token(kind, **kw) * seq_len * batch_size


def compare_cache_sizes(num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int,
                        seq_len: int, dtype: torch.dtype | int = torch.bfloat16,
                        kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None,
                        batch_size: int = 1) -> dict[str, int]:
    """Cache bytes of MHA, GQA (``num_kv_heads`` groups), MQA and MLA for one model shape.

    MLA defaults to DeepSeek-V2's proportions: d_c = 4 d_h and d_h^R = d_h / 2 (section 2.1.4).
    """
    kv_lora_rank = 4 * head_dim if kv_lora_rank is None else kv_lora_rank
    qk_rope_head_dim = max(head_dim // 2, 1) if qk_rope_head_dim is None else qk_rope_head_dim
    common = dict(num_layers=num_layers, dtype=dtype)
    return {
        "mha": kv_cache_bytes("mha", seq_len, batch_size, num_heads=num_heads, head_dim=head_dim, **common),
        "gqa": kv_cache_bytes("gqa", seq_len, batch_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                              head_dim=head_dim, **common),
        "mqa": kv_cache_bytes("mqa", seq_len, batch_size, head_dim=head_dim, **common),
        "mla": kv_cache_bytes("mla", seq_len, batch_size, kv_lora_rank=kv_lora_rank,
                              qk_rope_head_dim=qk_rope_head_dim, **common),
    }


# --------------------------------------------------------------------------------------------
# Measuring a decode step
# --------------------------------------------------------------------------------------------


def make_decode_model(kind: str, embed_dim: int = 512, num_heads: int = 8, num_kv_heads: int = 2,
                      kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None,
                      seed: int = 0, dtype=None) -> nn.Module:
    """One attention layer of the given kind, all with ``num_heads`` heads of ``embed_dim/num_heads``.

    MLA uses qk_nope_head_dim = v_head_dim = d_h, d_c = 4 d_h and d_h^R = d_h / 2 by default.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    d_h = embed_dim // num_heads
    if kind == "mla":
        return MultiHeadLatentAttention(
            embed_dim, num_heads, kv_lora_rank=4 * d_h if kv_lora_rank is None else kv_lora_rank,
            qk_nope_head_dim=d_h, qk_rope_head_dim=d_h // 2 if qk_rope_head_dim is None else qk_rope_head_dim,
            v_head_dim=d_h, dtype=dtype).eval()
    kv = {"mha": num_heads, "gqa": num_kv_heads, "mqa": 1}[kind]
    return GroupedQueryAttention(embed_dim, num_heads, kv, dtype=dtype).eval()


def _prefilled_cache(model: nn.Module, batch_size: int, context_len: int, generator) -> tuple:
    """Random cached tensors of the shapes ``model`` caches for ``context_len`` past tokens."""
    p = next(model.parameters())
    kw = dict(generator=generator, dtype=p.dtype, device=p.device)
    if isinstance(model, MultiHeadLatentAttention):
        width = model.kv_lora_rank + model.qk_rope_head_dim
        return (torch.randn(batch_size, context_len, width, **kw),)  # (B, S, d_c + d_h^R)
    shape = (batch_size, model.num_kv_heads, context_len, model.head_dim)  # (B, Hkv, S, D)
    return torch.randn(*shape, **kw), torch.randn(*shape, **kw)


def decode_step(model: nn.Module, context_len: int, batch_size: int = 1, absorb: bool = True,
                seed: int = 0):
    """A zero-argument callable that runs one decode step (one new token attending over
    ``context_len`` cached ones) and returns the cache it filled.

    The cache is pre-filled with random tensors of the right shapes (the values do not change the
    cost); every call starts again from the same ``context_len`` tokens."""
    _check_positive_int("context_len", context_len)
    g = torch.Generator().manual_seed(seed)
    past = _prefilled_cache(model, batch_size, context_len, g)
    p = next(model.parameters())
    x = torch.randn(batch_size, 1, model.embed_dim, generator=g, dtype=p.dtype)  # (B, 1, E)
    kw = {"absorb": absorb} if isinstance(model, MultiHeadLatentAttention) else {}

    @torch.no_grad()
    def step() -> KVCache:
        cache = KVCache()
        cache.tensors = past
        model(x, is_causal=True, kv_cache=cache, **kw)
        return cache

    return step


def measure_decode_steps(variants: dict, contexts, batch_size: int = 1, repeats: int = 5,
                         seed: int = 0) -> dict:
    """Time one decode step of every variant at every context length, round-robin on one thread.

    ``variants`` maps a name to ``(model, absorb)``. All (variant, S) steps are timed in turn
    (``attnkit.timing.round_robin_medians``), so a burst of load hits them alike. Returns
    ``{name: [{"ms": median milliseconds, "cache_bytes": bytes the cache holds after the step
    (measured), "tokens": S + 1} for S in contexts]}``."""
    from attnkit.timing import one_thread, round_robin_medians

    _check_positive_int("repeats", repeats)
    contexts = list(contexts)
    steps = {(name, S): decode_step(model, S, batch_size, absorb, seed)
             for name, (model, absorb) in variants.items() for S in contexts}
    with one_thread():
        medians = round_robin_medians(steps, repeats=repeats)
    out = {}
    for (name, S), step in steps.items():
        cache = step()
        out.setdefault(name, []).append({"ms": 1e3 * medians[(name, S)], "cache_bytes": cache.nbytes,
                                         "tokens": cache.seq_len})
    return out


def measure_decode_step(model: nn.Module, context_len: int, batch_size: int = 1, repeats: int = 5,
                        absorb: bool = True, seed: int = 0) -> dict:
    """``measure_decode_steps`` for one model and one context length: ``{"ms", "cache_bytes",
    "tokens"}`` (median of ``repeats`` steps after a warm-up, on one thread)."""
    return measure_decode_steps({"step": (model, absorb)}, [context_len], batch_size, repeats, seed)["step"][0]


# --------------------------------------------------------------------------------------------
# Memory budget and the bandwidth bound of decoding
# --------------------------------------------------------------------------------------------


def _check_positive_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def weights_bytes(num_params: int, dtype: torch.dtype | int = torch.bfloat16) -> int:
    """Bytes of a model's weights: parameters x bytes per parameter."""
    _check_positive_int("num_params", num_params)
    return num_params * _itemsize(dtype)


def max_batch_size(memory_bytes: int, weights_bytes: int, cache_bytes_per_sequence: int) -> int:
    """The most sequences whose caches fit beside the weights: floor((M - W) / C), 0 if none.

    ``cache_bytes_per_sequence`` is one sequence's cache at its full context, all layers
    (``kv_cache_bytes(kind, seq_len, **shape)``). Activations and fragmentation are ignored, so
    this is an upper bound.
    """
    _check_positive_int("memory_bytes", memory_bytes)
    _check_positive_int("cache_bytes_per_sequence", cache_bytes_per_sequence)
    if isinstance(weights_bytes, bool) or not isinstance(weights_bytes, int) or weights_bytes < 0:
        raise ValueError(f"weights_bytes must be an int >= 0, got {weights_bytes!r}")
    return max(memory_bytes - weights_bytes, 0) // cache_bytes_per_sequence


def max_context_length(memory_bytes: int, weights_bytes: int, cache_bytes_per_token: int,
                       batch_size: int = 1) -> int:
    """The longest context of ``batch_size`` sequences that fits: floor((M - W) / (B x c)).

    ``cache_bytes_per_token`` covers all layers (``kv_cache_bytes_per_token(..., num_layers=...)``).
    """
    _check_positive_int("cache_bytes_per_token", cache_bytes_per_token)
    _check_positive_int("batch_size", batch_size)
    return max_batch_size(memory_bytes, weights_bytes, cache_bytes_per_token * batch_size)


def decode_tokens_per_s_bound(bandwidth_bytes_per_s: float, weights_bytes: int,
                              cache_bytes_per_sequence: int, batch_size: int = 1) -> float:
    """Upper bound on the tokens per second of memory-bound decoding, all sequences together.

    A decode step reads every weight once (shared by the batch) and every sequence's cache once,
    and produces one token per sequence:

        tokens/s <= B x bandwidth / (W + B x C).

    Divide by ``batch_size`` for the tokens per second each sequence sees.
    """
    _check_positive_number("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    _check_positive_int("batch_size", batch_size)
    if isinstance(weights_bytes, bool) or not isinstance(weights_bytes, int) or weights_bytes < 0:
        raise ValueError(f"weights_bytes must be an int >= 0, got {weights_bytes!r}")
    if (isinstance(cache_bytes_per_sequence, bool) or not isinstance(cache_bytes_per_sequence, int)
            or cache_bytes_per_sequence < 0):
        raise ValueError(f"cache_bytes_per_sequence must be an int >= 0, got {cache_bytes_per_sequence!r}")
    read = weights_bytes + batch_size * cache_bytes_per_sequence
    if read == 0:
        raise ValueError("weights_bytes and cache_bytes_per_sequence are both 0: nothing is read")
    return batch_size * bandwidth_bytes_per_s / read


def memory_budget(kind: str, num_params: int, memory_bytes: int, context: int,
                  num_layers: int, num_heads: int, num_kv_heads: int, head_dim: int,
                  dtype: torch.dtype | int = torch.bfloat16, bandwidth_bytes_per_s: float = 3.35e12,
                  kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None) -> dict:
    """What fits beside a model's weights, and how fast it can decode at best.

    One dtype for weights and cache. ``kind`` is mha/gqa/mqa/mla (MLA defaults to d_c = 4 d_h,
    d_h^R = d_h / 2). Returns ``weights_bytes``, ``cache_bytes_per_token`` (all layers),
    ``cache_bytes_per_sequence`` (at ``context``), ``max_batch`` (at ``context``),
    ``max_context`` (batch 1), and the tokens/s bounds ``tokens_per_s_batch1`` and, at
    ``max_batch`` (when it is >= 1), ``tokens_per_s_max_batch`` (all sequences) and
    ``tokens_per_s_per_sequence`` (each one); both are 0.0 when nothing fits.
    """
    kv_lora_rank = 4 * head_dim if kv_lora_rank is None else kv_lora_rank
    qk_rope_head_dim = max(head_dim // 2, 1) if qk_rope_head_dim is None else qk_rope_head_dim
    _check_positive_int("context", context)
    w = weights_bytes(num_params, dtype)
    per_token = kv_cache_bytes_per_token(kind, num_heads=num_heads, head_dim=head_dim,
                                         num_kv_heads=num_kv_heads, kv_lora_rank=kv_lora_rank,
                                         qk_rope_head_dim=qk_rope_head_dim, num_layers=num_layers,
                                         dtype=dtype)
    per_seq = per_token * context
    b = max_batch_size(memory_bytes, w, per_seq)
    both = decode_tokens_per_s_bound(bandwidth_bytes_per_s, w, per_seq, b) if b else 0.0
    return {"weights_bytes": w, "cache_bytes_per_token": per_token, "cache_bytes_per_sequence": per_seq,
            "max_batch": b, "max_context": max_context_length(memory_bytes, w, per_token),
            "tokens_per_s_batch1": decode_tokens_per_s_bound(bandwidth_bytes_per_s, w, per_seq, 1),
            "tokens_per_s_max_batch": both, "tokens_per_s_per_sequence": both / b if b else 0.0}


# --------------------------------------------------------------------------------------------
# A tiny decoder, end to end: greedy generation with and without the cache
# --------------------------------------------------------------------------------------------


class TinyDecoder(nn.Module):
    """A small decoder-only language model built from ``GroupedQueryAttention`` layers.

    Token embedding + learned absolute position embedding, ``num_layers`` pre-norm blocks
    (causal GQA self-attention, then a 4x GELU MLP, each with a residual), a final LayerNorm and
    an output head over the vocabulary. Untrained unless you train it: it exists to show that
    cached decoding gives the same tokens as recomputing everything.

    ``forward(tokens, caches=None, positions=None)``: ``tokens`` (B, L) int64 -> logits
    (B, L, vocab). With ``caches`` (one ``KVCache`` per layer, from ``new_cache()``) the new
    tokens continue the cached ones, so their positions start at the cache's length:
    ``positions`` defaults to ``past, ..., past + L - 1`` (``position_ids``).
    """

    def __init__(self, vocab_size: int = 64, embed_dim: int = 64, num_heads: int = 4,
                 num_kv_heads: int = 2, num_layers: int = 2, max_len: int = 256):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("num_layers", num_layers), ("max_len", max_len)):
            _check_positive_int(name, value)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(max_len, embed_dim)
        self.blocks = nn.ModuleList()
        for _ in range(num_layers):
            block = nn.Module()
            block.norm1 = nn.LayerNorm(embed_dim)
            block.attn = GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)
            block.norm2 = nn.LayerNorm(embed_dim)
            block.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                      nn.Linear(4 * embed_dim, embed_dim))
            self.blocks.append(block)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size, bias=False)

    def new_cache(self, max_len: int | None = None) -> list[KVCache]:
        """One empty ``KVCache`` per layer."""
        return [KVCache(max_len) for _ in self.blocks]

    def positions(self, length: int, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Positions of ``length`` new tokens after what ``caches`` hold: past .. past + length - 1."""
        past = caches[0].seq_len if caches else 0
        return torch.arange(past, past + length, device=self.pos_emb.weight.device)  # (L,)

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        _check_tensor("tokens", tokens, 2, "(B, L)")
        if tokens.dtype != torch.long:
            raise TypeError(f"tokens must be int64 token ids, got dtype {tokens.dtype}")
        if caches is not None and (not isinstance(caches, (list, tuple)) or len(caches) != len(self.blocks)
                                   or not all(isinstance(c, KVCache) for c in caches)):
            raise ValueError(f"caches must be a list of {len(self.blocks)} KVCache (one per layer, "
                             f"from new_cache()), got {caches!r}")
        B, L = tokens.shape
        pos = self.positions(L, caches) if positions is None else positions  # (L,)
        if pos.shape != (L,):
            raise ValueError(f"positions must have shape ({L},), got {_shape(pos)}")
        if L and int(pos.max()) >= self.max_len:
            raise ValueError(f"positions up to {int(pos.max())} exceed max_len={self.max_len} - 1")
        h = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L, E)
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else caches[i]
            h = h + block.attn(block.norm1(h), is_causal=True, kv_cache=cache)[0]
            h = h + block.mlp(block.norm2(h))
        return self.head(self.norm(h))  # (B, L, vocab)


@torch.no_grad()
def greedy_generate(model: TinyDecoder, prompt: torch.Tensor, max_new_tokens: int,
                    use_cache: bool = True, caches: list[KVCache] | None = None) -> torch.Tensor:
    """Append ``max_new_tokens`` argmax tokens to ``prompt`` (B, P); returns (B, P + max_new_tokens).

    ``use_cache=False`` runs the whole sequence through the model at every step. ``use_cache=True``
    runs the prompt once (prefill), then one token per step over the cache (``caches``, or fresh
    ones). Tokens already in ``caches`` count as context before the prompt: reset them
    (``crop(0)``) or pass new ones to start a new sequence.
    """
    _check_tensor("prompt", prompt, 2, "(B, P)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if prompt.shape[1] == 0:
        raise ValueError(f"prompt needs at least one token, got shape {_shape(prompt)}")
    if caches is not None and not use_cache:
        raise ValueError("caches were given with use_cache=False: pass use_cache=True or no caches")
    out = prompt
    if not use_cache:
        for _ in range(max_new_tokens):
            nxt = model(out)[:, -1].argmax(-1, keepdim=True)  # (B, 1): recompute every position
            out = torch.cat([out, nxt], dim=1)
        return out
    caches = model.new_cache() if caches is None else caches
    logits = model(prompt, caches)  # prefill: (B, P, vocab)
    for i in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out = torch.cat([out, nxt], dim=1)
        if i + 1 < max_new_tokens:
            logits = model(nxt, caches)  # one new token over the cache: (B, 1, vocab)
    return out
