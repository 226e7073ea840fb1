"""The KV cache: past keys and values per layer, grown, in a fixed buffer, or rolling (a causal window).

``KVCache`` grows token by token or writes into a fixed buffer; ``RollingKVCache`` is the
rolling buffer of a causal sliding window, with optional attention sinks (chapter 08)."""

from __future__ import annotations

import math

import torch

from attnkit import validate
from attnkit.gqa._checks import _check_positive_int, _shape


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


def sink_window_mask(n: int, window: int, sink: int = 0, device=None) -> torch.Tensor:
    """Boolean (n, n) mask of a causal window with attention sinks, True = attend:
    S(i) = {j <= i : i - j < window} ∪ {j <= i : j < sink}.

    ``sink=0`` is the causal sliding window (``attnkit.sparse.sliding_window_mask(n, window,
    causal=True)``, whose rule this reuses); ``sink=s`` also keeps the first s tokens, as
    StreamingLLM does (Xiao et al. 2024, section 3.2: 4 sink tokens and a recent window)."""
    from attnkit.sparse import sliding_window_mask  # the one window rule

    validate.int_at_least("n", n, 0)
    validate.int_at_least("sink", sink, 0)
    band = sliding_window_mask(n, window, causal=True, device=device)  # (n, n) {i - window < j <= i}
    i = torch.arange(n, device=device)[:, None]  # (n, 1)
    j = torch.arange(n, device=device)[None, :]  # (1, n)
    return band | ((j < sink) & (j <= i))


class RollingKVCache:
    """A KV cache of ``sink + window`` slots: the decode-time memory of a causal sliding window.

    The rolling buffer of Mistral 7B (Jiang et al. 2023, section 2, "Rolling Buffer Cache"):
    position p is written to slot p mod window, over the position window steps before it, which no
    later query can see. With ``sink=s`` (StreamingLLM, Xiao et al. 2024) the first s positions keep
    slots 0 .. s-1 for good and position p >= s goes to slot s + (p - s) mod window.

    After positions 0 .. t have been written the cache holds exactly the keys query t sees under
    ``sink_window_mask``: {j <= t : t - j < window} ∪ {j < sink}. Decoding token by token through it
    therefore equals attention with that mask over the whole sequence (``rolling_decode``), in
    O(sink + window) memory instead of a growing cache's O(t).

    Once the buffer wraps, slots are not in position order; attention over a set of keys does not
    care, as long as positions are already in the keys (RoPE applied before caching).
    ``positions`` gives the position each filled slot holds.
    """

    def __init__(self, window: int, sink: int = 0) -> None:
        self.window = validate.int_at_least("window", window, 1)
        self.sink = validate.int_at_least("sink", sink, 0)
        self.seen = 0  # positions written so far
        self._store: tuple[torch.Tensor, ...] = ()  # (..., sink + window, D) each
        self._pos = torch.full((self.sink + self.window,), -1, dtype=torch.long)  # position in each slot

    @property
    def slots(self) -> int:
        return self.sink + self.window

    def slot(self, p: int) -> int:
        """The slot position ``p`` is written to."""
        return p if p < self.sink else self.sink + (p - self.sink) % self.window

    @property
    def filled(self) -> int:
        return min(self.seen, self.slots)

    @property
    def positions(self) -> torch.Tensor:
        """(filled,) the position held by each filled slot, in slot order."""
        return self._pos[:self.filled].clone()

    @property
    def nbytes(self) -> int:
        """Bytes reserved for the keys and values: all ``sink + window`` slots, whatever N is."""
        return sum(s.untyped_storage().nbytes() for s in self._store)

    def _check(self, k_new, v_new) -> None:
        for name, x in (("k_new", k_new), ("v_new", v_new)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() < 2:
                raise ValueError(f"{name} must have shape (..., S_new, D), got {_shape(x)}")
        if v_new.shape[:-1] != k_new.shape[:-1]:
            raise ValueError(f"v_new has shape {_shape(v_new)}, expected the same (..., S_new) as "
                             f"k_new {_shape(k_new)}")
        validate.same_dtype_device(k_new=k_new, v_new=v_new)
        for name, s, x in zip(("k_new", "v_new"), self._store, (k_new, v_new), strict=False):
            if s.shape[:-2] != x.shape[:-2] or s.shape[-1] != x.shape[-1]:
                raise ValueError(f"{name} has shape {_shape(x)}, expected (..., S_new, D) matching the "
                                 f"cached {_shape(s)} in every dim but -2")
            if s.dtype != x.dtype or s.device != x.device:
                raise TypeError(f"{name} is {x.dtype} on {x.device}, the cache holds {s.dtype} on {s.device}")

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write positions ``seen .. seen + S_new - 1`` (k_new, v_new: (..., S_new, D)) into their
        slots; return the filled slots' keys and values, (..., filled, D) each (views)."""
        self._check(k_new, v_new)
        if not self._store:  # (..., sink + window, D), allocated once
            self._store = tuple(x.new_zeros(*x.shape[:-2], self.slots, x.shape[-1]) for x in (k_new, v_new))
        if k_new.shape[-2] == 1:  # the decoding step: one position, one slot
            s = self.slot(self.seen)
            self._store[0][..., s, :] = k_new[..., 0, :]
            self._store[1][..., s, :] = v_new[..., 0, :]
            self._pos[s] = self.seen
            self.seen += 1
            return self._store[0][..., :self.filled, :], self._store[1][..., :self.filled, :]
        end = self.seen + k_new.shape[-2]
        p = torch.arange(self.seen, end)  # (S_new,) the new positions
        keep = (p < self.sink) | (p >= end - self.window)  # the rest are overwritten within this call
        slots = torch.where(p < self.sink, p, self.sink + (p - self.sink) % self.window)[keep]  # distinct
        self._store[0][..., slots.to(k_new.device), :] = k_new[..., keep.to(k_new.device), :]
        self._store[1][..., slots.to(v_new.device), :] = v_new[..., keep.to(v_new.device), :]
        self._pos[slots] = p[keep]
        self.seen = end
        return self._store[0][..., :self.filled, :], self._store[1][..., :self.filled, :]


def rolling_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, sink: int = 0,
                   scale: float | None = None) -> tuple[torch.Tensor, RollingKVCache]:
    """Decode q, k (..., N, d), v (..., N, dv) one position at a time through a ``RollingKVCache``:
    at step t, write k_t, v_t, then attend q_t to what the cache holds. Returns the outputs
    (..., N, dv) and the cache. Equals
    ``scaled_dot_product_attention(q, k, v, attn_mask=sink_window_mask(N, window, sink))``."""
    from attnkit.core import _check_inputs

    _check_inputs(q, k, v, None)
    if k.shape[-2] != q.shape[-2]:
        raise ValueError(f"k has shape {_shape(k)}: decoding needs one key per query, N = {q.shape[-2]} "
                         f"(q has shape {_shape(q)})")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else validate.real_number("scale", scale)
    cache = RollingKVCache(window, sink)
    n = q.shape[-2]
    out = q.new_zeros(*torch.broadcast_shapes(q.shape[:-2], v.shape[:-2]), n, v.shape[-1])  # (..., N, dv)
    for step in range(n):
        kc, vc = cache.update(k[..., step:step + 1, :], v[..., step:step + 1, :])  # (..., filled, d|dv)
        w = torch.softmax((q[..., step:step + 1, :] @ kc.mT) * scale, dim=-1)  # (..., 1, filled)
        out[..., step:step + 1, :] = w @ vc
    return out, cache
