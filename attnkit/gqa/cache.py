"""The KV cache: past keys and values per layer, grown token by token or written into a fixed buffer."""

from __future__ import annotations

import torch

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
