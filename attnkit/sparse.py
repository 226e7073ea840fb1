"""Sparse attention (chapter 08): each query attends to a *set* of keys, not to all of them.

Every pattern is a set S(i) of keys per query i, written once as a predicate ``pred(i, j)`` on
index tensors (it broadcasts, so the same function builds a boolean (L, S) mask, True = may
attend, and serves as a FlexAttention ``mask_mod``). The computations never hold an (L, S) score
matrix: ``sliding_window_attention`` slides a chunk of queries along the band (memory O(N·w)),
``block_sparse_attention`` computes only the key blocks a layout keeps; Longformer and BigBird
are built from those two. Each equals ``attnkit.core.scaled_dot_product_attention`` under the
same mask (a fully masked row gives zeros).

- Beltagy, Peters, Cohan 2020, "Longformer: The Long-Document Transformer", section 3.1
  (sliding window, dilated window, global attention).
- Child, Gray, Radford, Sutskever 2019, "Generating Long Sequences with Sparse Transformers",
  section 4.3 (strided and fixed factorised patterns).
- Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences", section 2 (window + global +
  random), appendix D (the blocked ITC implementation).
- PyTorch FlexAttention (``torch.nn.attention.flex_attention``): ``mask_mod`` and ``BlockMask``.

Chapter 08's furthest-vector experiment (BigBird section 3.4) lives in ``attnkit.experiments.sparse``;
its old path ``attnkit.sparse.furthest_vector_accuracy`` still works, forwarded on first use (PEP 562).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit import validate
from attnkit.core import _check_inputs

__all__ = [
    "sliding_window_mask", "strided_mask", "fixed_mask", "block_sparse_mask", "longformer_mask",
    "bigbird_layout", "bigbird_mask", "bigbird_full_attention_length", "pattern_mask",
    "pattern_predicate", "layout_from_predicate", "sliding_window_attention",
    "block_sparse_attention", "longformer_attention", "bigbird_attention", "sparse_attention",
    "SparseAttention", "PATTERNS", "pattern_pairs", "attention_cost", "receptive_field",
    "layers_to_connect", "flex_mask_mod", "flex_block_mask", "check_window", "check_pattern",
]

PATTERNS = ("sliding_window", "strided", "fixed", "block_sparse", "longformer", "bigbird")


_int = validate.int_at_least  # the one size rule (TypeError for 2.5 or True, ValueError below the minimum)


def _scale(q: torch.Tensor, scale) -> float:
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else validate.real_number("scale", scale)


def _callable(name: str, fn):
    if not callable(fn):
        raise TypeError(f"{name} must be a callable pred(i, j) -> bool tensor, got {type(fn).__name__}")
    return fn


def _grid(L: int, S: int, device=None):
    return torch.arange(L, device=device)[:, None], torch.arange(S, device=device)[None, :]


# ----------------------------------------------------------------------------------------------
# Predicates: pred(i, j) -> bool tensor, broadcasting over index tensors (FlexAttention-safe ops)
# ----------------------------------------------------------------------------------------------


def _window_pred(window: int, causal: bool, dilation: int):
    if causal:
        def pred(i, j):  # {j : 0 <= i - j < d * window, d | i - j}
            diff = i - j
            return (diff >= 0) & (diff < dilation * window) & (diff % dilation == 0)
    else:
        half = window // 2

        def pred(i, j):  # {j : |i - j| <= d * (window // 2), d | i - j}
            diff = i - j
            return (diff.abs() <= dilation * half) & (diff % dilation == 0)
    return pred


def check_window(window, causal: bool = False, dilation: int = 1, name: str = "window") -> int:
    """The sliding-window rule, in one place for the patterns, the factory's config and the explorer:
    ``window`` and ``dilation`` are ints >= 1, and a non-causal window is even (it keeps
    ``window // 2`` keys on each side). Returns ``window``; ValueError otherwise (``name``: the
    argument's name in the message, e.g. the config's ``window_size``)."""
    _int(name, window)
    _int("dilation", dilation)
    if not causal and window % 2:
        raise ValueError(f"{name} must be even when causal=False (window // 2 keys each side), got {window}")
    return window


def _strided_preds(stride: int, causal: bool):
    def a1(i, j):  # causal {j : max(0, i - l) <= j <= i}; not causal {j : |i - j| <= l}
        diff = i - j
        return ((diff >= 0) & (diff <= stride)) if causal else (diff.abs() <= stride)

    def a2(i, j):  # {j (<= i) : (i - j) mod l = 0}
        hit = (i - j) % stride == 0
        return (hit & (j <= i)) if causal else hit
    return a1, a2


def _fixed_preds(block: int, summary: int, causal: bool):
    def a1(i, j):  # {j (<= i) : floor(j / l) = floor(i / l)}
        hit = (j // block) == (i // block)
        return (hit & (j <= i)) if causal else hit

    def a2(i, j):  # {j (<= i) : j mod l >= l - c}
        hit = (j % block) >= (block - summary)
        return (hit & (j <= i)) if causal else hit
    return a1, a2


def _layout_pred(layout: torch.Tensor, block: int):
    def pred(i, j):  # {j : layout[floor(i / b), floor(j / b)]}
        return layout[i // block, j // block]
    return pred


def _longformer_pred(window: int, is_global: torch.Tensor, causal: bool, dilation: int):
    win = _window_pred(window, causal, dilation)

    def pred(i, j):  # window(i) ∪ {all j if i is global} ∪ {j : j is global}  (∩ {j <= i} if causal)
        hit = win(i, j) | is_global[i] | is_global[j]
        return (hit & (j <= i)) if causal else hit
    return pred


def _mask(pred, L: int, S: int | None = None, device=None) -> torch.Tensor:
    i, j = _grid(L, L if S is None else S, device)
    return torch.as_tensor(pred(i, j)).expand(i.shape[0], j.shape[1]).clone()  # (L, S)


# ----------------------------------------------------------------------------------------------
# Mask builders: boolean (n, n), True = may attend
# ----------------------------------------------------------------------------------------------


def sliding_window_mask(n: int, window: int, causal: bool = False, dilation: int = 1, device=None) -> torch.Tensor:
    """Longformer's sliding window (Beltagy et al. 2020, section 3.1), a boolean (n, n) mask.

    Not causal: S(i) = {j : |i - j| <= window // 2}, window + 1 keys with the query itself, as
    Hugging Face Longformer's ``attention_window`` (2 * (w / 2) + 1); ``window`` must be even.
    Causal: S(i) = {j : i - window < j <= i}, the ``window`` most recent keys, the query included,
    as ``transformers``' sliding-window masks do today (Mistral's original reference kept
    window + 1 keys, {j : i - window <= j <= i}).
    Dilation d spreads the same number of keys d apart:
    not causal {j : |i - j| <= d * (window // 2), d | i - j}; causal {j : 0 <= i - j < d * window, d | i - j}.
    """
    _int("n", n, 0)
    check_window(window, causal, dilation)
    return _mask(_window_pred(window, causal, dilation), n, device=device)


def strided_mask(n: int, stride: int, causal: bool = True, head: int | None = None, device=None) -> torch.Tensor:
    """The Sparse Transformer's strided pattern (Child et al. 2019, section 4.3), (n, n).

    Head 1: A1 = {j : max(0, i - l) <= j <= i} (the previous l keys and the query);
    head 2: A2 = {j <= i : (i - j) mod l = 0} (every l-th key back); ``head=None``: A1 ∪ A2.
    ``causal=False`` drops the j <= i condition: A1 becomes the symmetric band {j : |i - j| <= l}
    and A2 = {j : (i - j) mod l = 0}.
    """
    _int("n", n, 0)
    _int("stride", stride)
    a1, a2 = _strided_preds(stride, causal)
    return _mask(_pick(a1, a2, head), n, device=device)


def fixed_mask(n: int, block: int, summary: int, causal: bool = True, head: int | None = None, device=None) -> torch.Tensor:
    """The Sparse Transformer's fixed pattern (Child et al. 2019, section 4.3), (n, n).

    Head 1: A1 = {j <= i : floor(j / l) = floor(i / l)} (the query's own block);
    head 2: A2 = {j <= i : j mod l >= l - c} (the last c "summary" keys of every block; the paper
    writes the range up to l, but j mod l <= l - 1); ``head=None``: A1 ∪ A2.
    ``causal=False`` drops the j <= i condition.
    """
    _int("n", n, 0)
    _int("block", block)
    _int("summary", summary)
    if summary > block:
        raise ValueError(f"summary must be <= block (c <= l), got summary={summary}, block={block}")
    a1, a2 = _fixed_preds(block, summary, causal)
    return _mask(_pick(a1, a2, head), n, device=device)


def _pick(a1, a2, head):
    if head is None:
        return lambda i, j: a1(i, j) | a2(i, j)
    if head not in (1, 2):
        raise ValueError(f"head must be None, 1 or 2, got {head!r}")
    return a1 if head == 1 else a2


def _check_layout(layout) -> torch.Tensor:
    if not isinstance(layout, torch.Tensor):
        raise TypeError(f"layout must be a torch.Tensor, got {type(layout).__name__}")
    if layout.dim() != 2:
        raise ValueError(f"layout must be 2-D (q_blocks, k_blocks), got shape {tuple(layout.shape)}")
    return layout.bool()


def block_sparse_mask(layout: torch.Tensor, block: int, n: int | None = None, k_len: int | None = None) -> torch.Tensor:
    """A (nq, nk) block layout expanded to tokens: S(i) = {j : layout[floor(i / b), floor(j / b)]}.

    The result is (nq * b, nk * b), or (n, k_len) when given (ragged ends: the last block is short).
    """
    layout = _check_layout(layout)
    _int("block", block)
    validate.optional_int_at_least("n", n, 0)
    validate.optional_int_at_least("k_len", k_len, 0)
    n = layout.shape[0] * block if n is None else n
    k_len = (layout.shape[1] * block if n is None else n) if k_len is None else k_len
    _check_blocks(layout, block, n, k_len)
    return _mask(_layout_pred(layout, block), n, k_len, layout.device)


def _check_blocks(layout, block, L, S):
    want = (math.ceil(L / block), math.ceil(S / block))
    if tuple(layout.shape) != want:
        raise ValueError(f"layout has shape {tuple(layout.shape)}, expected {want} = "
                         f"(ceil({L} / {block}), ceil({S} / {block}))")


def _global_flags(n: int, global_idx, device=None) -> torch.Tensor:
    idx = torch.as_tensor(global_idx if global_idx is not None else [], dtype=torch.long, device=device).flatten()
    if idx.numel() and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"global_idx must lie in [0, {n}), got {idx.tolist()}")
    flags = torch.zeros(n, dtype=torch.bool, device=device)
    flags[idx] = True
    return flags  # (n,)


def longformer_mask(n: int, window: int, global_idx=(), causal: bool = False, dilation: int = 1, device=None) -> torch.Tensor:
    """Longformer (Beltagy et al. 2020, section 3.1): sliding window plus symmetric global tokens.

    S(i) = W(i) ∪ {j : j ∈ G} ∪ {every j, if i ∈ G}, with W the sliding window of
    ``sliding_window_mask`` and G = ``global_idx``: a global token attends to every token and
    every token attends to it. ``causal=True`` intersects with {j <= i}.
    """
    _int("n", n, 0)
    check_window(window, causal, dilation)
    return _mask(_longformer_pred(window, _global_flags(n, global_idx, device), causal, dilation), n, device=device)


def bigbird_layout(num_blocks: int, num_window_blocks: int = 3, num_global_blocks: int = 2,
                   num_random_blocks: int = 3, seed: int = 0) -> torch.Tensor:
    """BigBird ITC at block level (Zaheer et al. 2020, section 2, appendix D), (nb, nb) bool.

    Global: the first and the last ``num_global_blocks // 2`` blocks, rows and columns (they
    attend to and are attended by every block). Window: block r sees r - w//2 .. r + w//2
    (w = ``num_window_blocks``, odd). Random: each other block row draws ``num_random_blocks``
    blocks among those neither global nor in its window (all of them if fewer remain), with a
    ``torch.Generator`` seeded by ``seed``, so the layout is reproducible.
    """
    nb = _int("num_blocks", num_blocks, 0)
    w = _int("num_window_blocks", num_window_blocks)
    g = _int("num_global_blocks", num_global_blocks, 0)
    r = _int("num_random_blocks", num_random_blocks, 0)
    _int("seed", seed, 0)
    if w % 2 == 0:
        raise ValueError(f"num_window_blocks must be odd (the block itself and w // 2 each side), got {w}")
    if g % 2:
        raise ValueError(f"num_global_blocks must be even (g // 2 at each end), got {g}")
    rows, cols = _grid(nb, nb)
    layout = (rows - cols).abs() <= w // 2  # window blocks
    is_global = (torch.arange(nb) < g // 2) | (torch.arange(nb) >= nb - g // 2)
    layout = layout | is_global[:, None] | is_global[None, :]
    gen = torch.Generator().manual_seed(seed)
    for row in range(nb):
        if is_global[row]:
            continue
        free = (~layout[row]).nonzero().flatten()  # neither global nor in the window
        pick = free[torch.randperm(free.numel(), generator=gen)[:r]]
        layout[row, pick] = True
    return layout


def bigbird_mask(n: int, block: int, num_window_blocks: int = 3, num_global_blocks: int = 2,
                 num_random_blocks: int = 3, seed: int = 0) -> torch.Tensor:
    """BigBird's blocked pattern at token level: ``block_sparse_mask(bigbird_layout(...), block)``.

    S(i) = {j : layout[floor(i / b), floor(j / b)]} with the layout of ``bigbird_layout`` over
    ceil(n / b) blocks (the last block may be short).
    """
    _int("n", n, 0)
    _int("block", block)
    layout = bigbird_layout(math.ceil(n / block), num_window_blocks, num_global_blocks, num_random_blocks, seed)
    return block_sparse_mask(layout, block, n, n)


def bigbird_full_attention_length(block: int, num_random_blocks: int = 3) -> int:
    """Hugging Face BigBird switches to full attention when n <= (5 + 2r) * b tokens."""
    return (5 + 2 * _int("num_random_blocks", num_random_blocks, 0)) * _int("block", block)


# ----------------------------------------------------------------------------------------------
# By name: predicates and masks for every pattern (chapter 11's factory, the explorer, FlexAttention)
# ----------------------------------------------------------------------------------------------


def pattern_predicate(pattern: str, n: int, causal: bool = False, **args):
    """``pred(i, j)`` of a pattern by name (``PATTERNS``), with its arguments.

    sliding_window(window, dilation=1) · strided(stride) · fixed(block, summary) ·
    block_sparse(layout, block) · longformer(window, global_idx=(), dilation=1) ·
    bigbird(block, num_window_blocks=3, num_global_blocks=2, num_random_blocks=3, seed=0).
    ``causal=True`` intersects any pattern with {j <= i}; for strided and fixed it is the paper's
    causal form (their builders' default), ``causal=False`` their symmetric form.
    """
    pred = _base_predicate(pattern, n, causal, **args)
    if causal and pattern in ("block_sparse", "bigbird"):
        return lambda i, j: pred(i, j) & (j <= i)
    return pred


# Each pattern's arguments and their defaults (None: required). ``check_pattern`` is the one place
# that reads a pattern's name and arguments; the predicate, the computation and the pair count
# all start from what it returns.
_ARGS = {
    "sliding_window": {"window": None, "dilation": 1},
    "strided": {"stride": None, "head": None},
    "fixed": {"block": None, "summary": None, "head": None},
    "block_sparse": {"layout": None, "block": None},
    "longformer": {"window": None, "global_idx": (), "dilation": 1},
    "bigbird": {"block": None, "num_window_blocks": 3, "num_global_blocks": 2, "num_random_blocks": 3, "seed": 0},
}


def check_pattern(pattern: str, n: int, causal: bool = False, **args) -> dict:
    """A pattern's arguments for length n, checked, with the defaults filled in (see
    ``pattern_predicate``). Unknown or missing arguments raise TypeError, bad values ValueError."""
    validate.choice("pattern", pattern, PATTERNS)
    _int("n", n, 0)
    unknown = sorted(set(args) - set(_ARGS[pattern]))
    if unknown:
        raise TypeError(f"pattern {pattern!r} got unexpected arguments {unknown}; expected {list(_ARGS[pattern])}")
    a = {**_ARGS[pattern], **args}
    missing = [k for k, v in a.items() if v is None and k != "head"]
    if missing:
        raise TypeError(f"pattern {pattern!r} needs {missing}, got None; expected {list(_ARGS[pattern])}")
    if pattern in ("sliding_window", "longformer"):
        check_window(a["window"], causal, a["dilation"])
    if pattern == "longformer":
        _global_flags(n, a["global_idx"])
    if pattern == "strided":
        _int("stride", a["stride"])
    if pattern == "fixed":
        _int("block", a["block"])
        _int("summary", a["summary"])
        if a["summary"] > a["block"]:
            raise ValueError(f"summary must be <= block (c <= l), got summary={a['summary']}, block={a['block']}")
    if pattern in ("strided", "fixed") and a["head"] not in (None, 1, 2):
        raise ValueError(f"head must be None, 1 or 2, got {a['head']!r}")
    if pattern == "block_sparse":
        a["layout"] = _check_layout(a["layout"])
        _int("block", a["block"])
        _check_blocks(a["layout"], a["block"], n, n)
    if pattern == "bigbird":
        _int("block", a["block"])
        rest = {k: v for k, v in a.items() if k != "block"}
        a["layout"] = bigbird_layout(math.ceil(n / a["block"]), **rest)  # checks the rest
    return a


def _base_predicate(pattern, n, causal, **args):
    a = check_pattern(pattern, n, causal, **args)
    if pattern == "sliding_window":
        return _window_pred(a["window"], causal, a["dilation"])
    if pattern == "strided":
        return _pick(*_strided_preds(a["stride"], causal), a["head"])
    if pattern == "fixed":
        return _pick(*_fixed_preds(a["block"], a["summary"], causal), a["head"])
    if pattern == "longformer":
        return _longformer_pred(a["window"], _global_flags(n, a["global_idx"]), causal, a["dilation"])
    return _layout_pred(a["layout"], a["block"])  # block_sparse, bigbird


def pattern_mask(pattern: str, n: int, causal: bool = False, **args) -> torch.Tensor:
    """The boolean (n, n) mask of a pattern by name (see ``pattern_predicate``)."""
    _int("n", n, 0)
    return _mask(pattern_predicate(pattern, n, causal, **dict(args)), n)


def layout_from_predicate(pred, n: int, block: int) -> torch.Tensor:
    """(nb, nb) bool: which b x b blocks hold at least one True pair of ``pred``; one block row at
    a time, so memory is O(n * b), never (n, n)."""
    _callable("pred", pred)
    _int("n", n, 0)
    _int("block", block)
    nb = math.ceil(n / block)
    j = torch.arange(n)[None, :]
    layout = torch.zeros(nb, nb, dtype=torch.bool)
    for r in range(nb):
        i = torch.arange(r * block, min(n, (r + 1) * block))[:, None]
        hit = torch.as_tensor(pred(i, j)).expand(i.shape[0], n).any(dim=0)  # (n,)
        layout[r] = torch.nn.functional.pad(hit, (0, nb * block - n)).view(nb, block).any(dim=1)
    return layout


# ----------------------------------------------------------------------------------------------
# Computations that never hold an (L, S) score matrix
# ----------------------------------------------------------------------------------------------


def _attend(q, k, v, allowed, scale):
    """Attention of a chunk of queries over a chunk of keys, with its log-sum-exp.

    q (..., Cq, E), k (..., Ck, E), v (..., Ck, Ev), allowed bool broadcastable to (..., Cq, Ck).
    Returns out (..., Cq, Ev) and lse (..., Cq); a row with no allowed key gives 0 and -inf.
    """
    s = (q @ k.transpose(-2, -1)) * scale  # (..., Cq, Ck)
    s = s.masked_fill(~allowed, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()  # (..., Cq, 1), a shift only: no gradient needed
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m)  # masked entries: exp(-inf) = 0
    l = p.sum(dim=-1, keepdim=True)  # (..., Cq, 1)
    alive = l > 0
    l_safe = torch.where(alive, l, torch.ones_like(l))
    out = (p @ v) / l_safe  # (..., Cq, Ev)
    lse = torch.where(alive, m + torch.log(l_safe), torch.full_like(l, float("-inf")))
    return out, lse.squeeze(-1)


def _merge(o1, lse1, o2, lse2):
    """Softmax over the union of two disjoint key sets from each part's (out, lse)."""
    m = torch.maximum(lse1, lse2).detach()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w1, w2 = torch.exp(lse1 - m), torch.exp(lse2 - m)  # (..., L)
    tot = w1 + w2
    alive = tot > 0
    tot_safe = torch.where(alive, tot, torch.ones_like(tot))
    out = (w1[..., None] * o1 + w2[..., None] * o2) / tot_safe[..., None]
    lse = torch.where(alive, m + torch.log(tot_safe), torch.full_like(tot, float("-inf")))
    return out, lse


def _check_qkv(q, k, v, key_mask, self_attention=True):
    _check_inputs(q, k, v, None)
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} must share their "
                         "batch dims (..., seq, dim), k and v their seq length")
    if self_attention and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"q has {q.shape[-2]} positions and k {k.shape[-2]}: a sparse pattern "
                         "here is self-attention, (..., N, E) for both")
    if key_mask is not None:
        if not isinstance(key_mask, torch.Tensor) or key_mask.dtype != torch.bool:
            raise TypeError(f"key_mask must be a bool tensor (True = may attend), got {type(key_mask).__name__}"
                            f"{'' if not isinstance(key_mask, torch.Tensor) else ' ' + str(key_mask.dtype)}")
        try:
            torch.broadcast_shapes(key_mask.shape, (*k.shape[:-2], k.shape[-2]))
        except RuntimeError:
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}, expected (..., S) broadcastable "
                             f"to {(*k.shape[:-2], k.shape[-2])}") from None


def _keys(key_mask, idx):
    """The key mask of key positions ``idx`` as (..., 1, Ck), or True."""
    return True if key_mask is None else key_mask[..., idx][..., None, :]


def sliding_window_attention(q, k, v, window: int, causal: bool = False, dilation: int = 1,
                             scale: float | None = None, key_mask=None, chunk: int | None = None,
                             return_lse: bool = False):
    """Attention restricted to ``sliding_window_mask(N, window, causal, dilation)``, O(N·w) memory.

    q, k, v (..., N, E/Ev). Queries are taken ``chunk`` at a time (default 16);
    each chunk scores only the contiguous band of keys its window can reach, so no more than
    chunk x (chunk + reach) scores exist at once, for any N (no divisibility requirement).
    Dilation d: the positions i ≡ r (mod d) form a subsequence on which the dilated window is an
    ordinary window, so each residue class is an undilated problem. ``key_mask`` (..., N) bool,
    True = may attend. Gradients flow through autograd. Returns out (..., N, Ev) [, lse (..., N)].
    """
    _check_qkv(q, k, v, key_mask)
    check_window(window, causal, dilation)
    scale = _scale(q, scale)
    if dilation == 1:
        out, lse = _window_chunks(q, k, v, window, causal, scale, key_mask, chunk)
    else:
        n = q.shape[-2]
        outs, lses, order = [], [], []
        for r in range(min(dilation, n)):  # residue classes that hold a position
            idx = torch.arange(r, n, dilation, device=q.device)
            km = None if key_mask is None else key_mask[..., idx]
            o, lz = _window_chunks(q[..., idx, :], k[..., idx, :], v[..., idx, :], window, causal, scale, km, chunk)
            outs.append(o)
            lses.append(lz)
            order.append(idx)
        inverse = torch.argsort(torch.cat(order))
        out = torch.cat(outs, dim=-2)[..., inverse, :]
        lse = torch.cat(lses, dim=-1)[..., inverse]
    return (out, lse) if return_lse else out


def _window_chunks(q, k, v, window, causal, scale, key_mask, chunk):
    n = q.shape[-2]
    left, right = (window - 1, 0) if causal else (window // 2, window // 2)
    chunk = 16 if chunk is None else _int("chunk", chunk)
    pred = _window_pred(window, causal, 1)
    out = q.new_zeros((*q.shape[:-1], v.shape[-1]), dtype=torch.result_type(q, v))  # (..., N, Ev)
    lse = q.new_full(q.shape[:-1], float("-inf"))  # (..., N)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        ks, ke = max(0, s - left), min(n, e - 1 + right + 1)  # the keys any query of the chunk can see
        i = torch.arange(s, e, device=q.device)[:, None]
        j = torch.arange(ks, ke, device=q.device)
        allowed = pred(i, j[None, :]) & _keys(key_mask, j)  # (..., Cq, Ck)
        out[..., s:e, :], lse[..., s:e] = _attend(q[..., s:e, :], k[..., ks:ke, :], v[..., ks:ke, :], allowed, scale)
    return out, lse


def block_sparse_attention(q, k, v, layout: torch.Tensor, block: int, mask_mod=None,
                           scale: float | None = None, key_mask=None, return_lse: bool = False):
    """Attention over the key blocks that ``layout`` keeps, computing only those blocks.

    q (..., L, E), k (..., S, E), v (..., S, Ev); layout (ceil(L / b), ceil(S / b)) bool. Query
    block r gathers the key blocks with layout[r, c] and attends to them; ``mask_mod(i, j)``
    (index tensors -> bool) further restricts pairs inside kept blocks, as FlexAttention's
    ``mask_mod`` does inside a ``BlockMask``. Equal to dense attention under
    ``block_sparse_mask(layout, block, L, S) & mask_mod``. Memory: one block row of kept keys.
    """
    _check_qkv(q, k, v, key_mask, self_attention=False)
    if mask_mod is not None:
        _callable("mask_mod", mask_mod)
    layout = _check_layout(layout).to(q.device)
    _int("block", block)
    L, S = q.shape[-2], k.shape[-2]
    _check_blocks(layout, block, L, S)
    scale = _scale(q, scale)
    out = q.new_zeros((*q.shape[:-1], v.shape[-1]), dtype=torch.result_type(q, v))  # (..., L, Ev)
    lse = q.new_full(q.shape[:-1], float("-inf"))  # (..., L)
    starts = torch.arange(0, S, block, device=q.device)  # first key of each block
    offsets = torch.arange(block, device=q.device)
    for r in range(layout.shape[0]):
        cols = layout[r].nonzero().flatten()
        if cols.numel() == 0:
            continue  # nothing to attend: zeros
        j = (starts[cols][:, None] + offsets[None, :]).flatten()
        j = j[j < S]  # (Ck,) the kept keys, the short last block cut
        s, e = r * block, min(L, (r + 1) * block)
        i = torch.arange(s, e, device=q.device)[:, None]
        allowed = (True if mask_mod is None else torch.as_tensor(mask_mod(i, j[None, :]))) & _keys(key_mask, j)
        allowed = torch.as_tensor(allowed, device=q.device)
        out[..., s:e, :], lse[..., s:e] = _attend(q[..., s:e, :], k[..., j, :], v[..., j, :], allowed, scale)
    return (out, lse) if return_lse else out


def longformer_attention(q, k, v, window: int, global_idx=(), causal: bool = False, dilation: int = 1,
                         scale: float | None = None, key_mask=None):
    """Attention under ``longformer_mask(N, window, global_idx, causal, dilation)``, never (N, N).

    Three parts, O(N·(w + g)) memory: (1) every query over its window minus the global keys
    (``sliding_window_attention``); (2) every query over the global keys, an (N, g) block;
    (1) and (2) are disjoint key sets, merged exactly through their log-sum-exps;
    (3) the g global queries over every key, a (g, N) block, which replaces their rows.
    """
    _check_qkv(q, k, v, key_mask)
    check_window(window, causal, dilation)
    n = q.shape[-2]
    flags = _global_flags(n, global_idx, q.device)
    g = flags.nonzero().flatten()  # (G,)
    scale = _scale(q, scale)
    non_global = ~flags if key_mask is None else key_mask & ~flags
    out, lse = sliding_window_attention(q, k, v, window, causal, dilation, scale, non_global, return_lse=True)
    if g.numel() == 0:
        return out
    i = torch.arange(n, device=q.device)[:, None]
    allowed = torch.ones(n, g.numel(), dtype=torch.bool, device=q.device) & _keys(key_mask, g)  # (..., N, G)
    if causal:
        allowed = allowed & (g[None, :] <= i)
    o2, lse2 = _attend(q, k[..., g, :], v[..., g, :], allowed, scale)
    out, _ = _merge(out, lse, o2, lse2)
    j = torch.arange(n, device=q.device)[None, :]
    rows = (j <= g[:, None]) if causal else torch.ones(g.numel(), n, dtype=torch.bool, device=q.device)
    o3, _ = _attend(q[..., g, :], k, v, rows & _keys(key_mask, torch.arange(n, device=q.device)), scale)
    return out.index_copy(-2, g, o3)  # (..., N, Ev)


def bigbird_attention(q, k, v, block: int, num_window_blocks: int = 3, num_global_blocks: int = 2,
                      num_random_blocks: int = 3, seed: int = 0, causal: bool = False,
                      scale: float | None = None, key_mask=None):
    """Attention under ``bigbird_mask(...)`` (∩ {j <= i} if causal): ``block_sparse_attention``
    over ``bigbird_layout``."""
    _check_qkv(q, k, v, key_mask)
    n = q.shape[-2]
    layout = bigbird_layout(math.ceil(n / _int("block", block)), num_window_blocks, num_global_blocks,
                            num_random_blocks, seed)
    mod = (lambda i, j: j <= i) if causal else None
    return block_sparse_attention(q, k, v, layout, block, mod, scale, key_mask)


def sparse_attention(q, k, v, pattern: str, causal: bool = False, scale: float | None = None,
                     key_mask=None, **args):
    """Self-attention of q, k, v (..., N, E) under a pattern by name, by its own computation."""
    _check_qkv(q, k, v, key_mask)
    n = q.shape[-2]
    a = check_pattern(pattern, n, causal, **args)
    if pattern == "sliding_window":
        return sliding_window_attention(q, k, v, a["window"], causal, a["dilation"], scale, key_mask)
    if pattern == "longformer":
        return longformer_attention(q, k, v, a["window"], a["global_idx"], causal, a["dilation"], scale, key_mask)
    pred = pattern_predicate(pattern, n, causal, **args)
    if pattern in ("block_sparse", "bigbird"):
        return block_sparse_attention(q, k, v, a["layout"], a["block"], pred if causal else None, scale, key_mask)
    block = a["stride"] if pattern == "strided" else a["block"]  # strided, fixed: the blocks the predicate touches
    return block_sparse_attention(q, k, v, layout_from_predicate(pred, n, block), block, pred, scale, key_mask)


def _check_length(pattern: str, args: dict) -> int:
    """A sequence length the pattern's arguments are valid for (to validate them once, up front)."""
    if pattern == "block_sparse" and isinstance(args.get("layout"), torch.Tensor) and isinstance(args.get("block"), int):
        return args["layout"].shape[0] * args["block"]
    if pattern == "longformer":
        idx = torch.as_tensor(args.get("global_idx", ()), dtype=torch.long).flatten()
        return max(64, int(idx.max()) + 1 if idx.numel() else 0)
    return 64


def _validate_either_mode(pattern: str, n: int, args: dict) -> None:
    """The pattern's arguments are valid for a causal or a non-causal forward (forward decides:
    an odd window, say, is a valid causal window and is refused only by a non-causal forward)."""
    try:
        pattern_predicate(pattern, n, False, **dict(args))
    except ValueError as not_causal:
        try:
            pattern_predicate(pattern, n, True, **dict(args))
        except ValueError:
            raise not_causal from None


class SparseAttention(nn.Module):
    """Multi-head self-attention under a sparse pattern, batch-first: (B, N, E) -> (B, N, E).

    ``SparseAttention(embed_dim, num_heads, pattern="sliding_window", window=8)``; the pattern's
    arguments as in ``pattern_predicate``. forward(x, attn_mask=None, key_padding_mask=None,
    is_causal=False): ``key_padding_mask`` (B, N) bool, **True = a real token** (False = padding,
    never attended), as in every attnkit module; the pattern is computed without an (N, N) matrix.
    (Until this round this module alone took True = padding, as ``nn.MultiheadAttention`` does, and
    the factory inverted the mask for it; pass ``~mask`` where you relied on that.) ``attn_mask``
    (bool, True = may attend, broadcastable to (B, H, N, N)) is an extra restriction and needs
    the dense path (the pattern's mask and attn_mask together through ``attnkit.core``).
    """

    def __init__(self, embed_dim: int, num_heads: int, pattern: str = "sliding_window", bias: bool = True,
                 **pattern_args):
        super().__init__()
        _int("embed_dim", embed_dim)
        _int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embed_dim={embed_dim}")
        validate.choice("pattern", pattern, PATTERNS)
        _validate_either_mode(pattern, _check_length(pattern, pattern_args), pattern_args)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.pattern, self.pattern_args = pattern, dict(pattern_args)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x, attn_mask=None, key_padding_mask=None, is_causal: bool = False):
        validate.tensor("x", x)
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must have shape (batch, seq, {self.embed_dim}), got {tuple(x.shape)}")
        validate.module_accepts(self, "x", x)
        B, N, E = x.shape
        keep = validate.key_padding_mask("key_padding_mask", key_padding_mask, (B, N), x.device)
        keep = None if keep is None else keep[:, None, :]  # (B, 1, N), True = real token
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, N, D)
        if attn_mask is None:
            out = sparse_attention(q, k, v, self.pattern, is_causal, None, keep, **self.pattern_args)
        else:
            from attnkit.core import scaled_dot_product_attention

            mask = pattern_mask(self.pattern, N, is_causal, **self.pattern_args)
            if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
                raise TypeError(f"attn_mask must be a bool tensor (True = may attend), got "
                                f"{getattr(attn_mask, 'dtype', type(attn_mask).__name__)}")
            validate.attention_mask("attn_mask", attn_mask, (B, self.num_heads, N, N), x.device, "(B, H, N, N)")
            mask = mask & attn_mask
            if keep is not None:
                mask = mask & keep[:, :, None, :]
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(B, N, E))


# ----------------------------------------------------------------------------------------------
# Cost formulas and the receptive field of a pattern
# ----------------------------------------------------------------------------------------------


def _window_row_counts(n: int, window: int, causal: bool) -> torch.Tensor:
    i = torch.arange(n)
    if causal:
        return torch.clamp(i + 1, max=window)  # min(i + 1, w)
    h = window // 2
    return torch.clamp(i + h, max=n - 1) - torch.clamp(i - h, min=0) + 1  # (n,)


def pattern_pairs(pattern: str, n: int, causal: bool = False, **args) -> int:
    """Attended (query, key) pairs, from each pattern's per-row or per-block count (O(n), no mask
    built). The one count of pairs: ``attnkit.factory.sparse_pairs`` calls it for every config.

    sliding window: min(i + 1, w) causal, min(i + w/2, n - 1) - max(i - w/2, 0) + 1 not causal,
    dilation d: the same on each residue class of length ceil((n - r) / d);
    strided: causal |A1 ∪ A2| = (min(i, l) + 1) + (floor(i / l) + 1) - (1 + [i >= l]); not causal
    |A1| + |A2| - |A1 ∩ A2| with A1 = {|i - j| <= l}, A2 = {j ≡ i mod l}, A1 ∩ A2 = {i - l, i, i + l}
    within [0, n);
    fixed (causal): (i mod l) + 1 + c * floor(i / l);
    block patterns (block_sparse, bigbird), block sizes s (the last may be short): not causal
    s^T layout s; causal, the kept blocks below the diagonal whole and the diagonal ones
    s_r (s_r + 1) / 2;
    longformer (dilation 1), G the global tokens: a global query sees all n keys (causal i + 1),
    another its window W(i) plus the globals outside it (causal: the globals before W(i)).
    Other cases (a strided or fixed pattern's single head, not causal fixed, a dilated
    longformer) are counted from the predicate, one row block at a time.
    """
    _int("n", n, 0)
    a = check_pattern(pattern, n, causal, **args)  # checked, defaults filled in
    if pattern == "sliding_window":
        w, d = a.get("window"), a.get("dilation", 1)
        check_window(w, causal, d)
        return sum(int(_window_row_counts(len(range(r, n, d)), w, causal).sum()) for r in range(d))
    i = torch.arange(n)
    if pattern == "strided" and a.get("head") is None:
        l = _int("stride", a.get("stride"))
        if causal:
            return int((torch.clamp(i, max=l) + 1 + i // l + 1 - 1 - (i >= l).long()).sum())
        a1 = torch.clamp(i + l, max=n - 1) - torch.clamp(i - l, min=0) + 1
        a2 = (n - 1 - i % l) // l + 1
        both = 1 + (i - l >= 0).long() + (i + l < n).long()
        return int((a1 + a2 - both).sum())
    if pattern == "fixed" and causal and a.get("head") is None:
        l, c = _int("block", a.get("block")), _int("summary", a.get("summary"))
        return int((i % l + 1 + c * (i // l)).sum())
    if pattern in ("block_sparse", "bigbird"):
        b = _int("block", a.get("block"))
        layout = a["layout"]
        sizes = torch.clamp(n - torch.arange(layout.shape[0]) * b, max=b)  # (nb,) short last block
        if not causal:
            return int(sizes @ layout.long() @ sizes)
        below = int(sizes @ torch.tril(layout, -1).long() @ sizes)
        return below + int((layout.diagonal().long() * sizes * (sizes + 1) // 2).sum())
    if pattern == "longformer" and a.get("dilation", 1) == 1:
        w = a.get("window")
        check_window(w, causal, 1)
        g = _global_flags(n, a.get("global_idx", ())).long()  # (n,)
        before = torch.cat([torch.zeros(1, dtype=torch.long), g.cumsum(0)])  # (n + 1,): globals in [0, k)
        if causal:
            lo = torch.clamp(i - w + 1, min=0)
            window, outside, whole = i - lo + 1, before[lo], i + 1  # globals before the window
        else:
            lo, hi = torch.clamp(i - w // 2, min=0), torch.clamp(i + w // 2, max=n - 1)
            window, whole = hi - lo + 1, torch.full_like(i, n)
            outside = before[n] - (before[hi + 1] - before[lo])  # globals not in the window
        return int(torch.where(g.bool(), whole, window + outside).sum())
    pred = pattern_predicate(pattern, n, causal, **args)
    j = torch.arange(n)[None, :]
    return sum(int(torch.as_tensor(pred(i[s:s + 256, None], j)).expand(len(i[s:s + 256]), n).sum())
               for s in range(0, n, 256))


def attention_cost(pairs: int, n: int, head_dim: int, heads: int = 1, batch: int = 1,
                   dtype_bytes: int = 4) -> dict:
    """FLOPs and bytes of attention over ``pairs`` (query, key) pairs per head, as formulas.

    flops = 4 * pairs * d * H * B (a multiply-add for q·k and one for p·v, per pair and channel);
    score_bytes = pairs * H * B * bytes (the scores / weights of the kept pairs, what a training
    forward keeps for backward); io_bytes = 4 * n * d * H * B * bytes (q, k, v and the output).
    Dense attention is pairs = n * n.
    """
    for name, val in (("pairs", pairs), ("n", n)):
        _int(name, val, 0)
    for name, val in (("head_dim", head_dim), ("heads", heads), ("batch", batch), ("dtype_bytes", dtype_bytes)):
        _int(name, val)
    return {"pairs": pairs, "flops": 4 * pairs * head_dim * heads * batch,
            "score_bytes": pairs * heads * batch * dtype_bytes,
            "io_bytes": 4 * n * head_dim * heads * batch * dtype_bytes}


def _position(name: str, value, n: int) -> int:
    """A token index in [-n, n) (negative counts from the end), as a non-negative index."""
    _int(name, value, None)
    if not -n <= value < n:
        raise ValueError(f"{name} must be a token index in [-{n}, {n}), got {value}")
    return value % n


def _check_mask2d(mask):
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a square bool (n, n) tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask must be a square bool (n, n) tensor, got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}"
                         f"{' ' + str(mask.dtype) if isinstance(mask, torch.Tensor) else ''}")


def receptive_field(mask: torch.Tensor, layers: int, query: int = -1) -> torch.Tensor:
    """How many tokens can reach ``query``'s output after 1 .. ``layers`` layers of this pattern.

    Graph reachability with a residual stream: R_0 = {query},
    R_{l+1} = R_l ∪ {k : mask[j, k] for some j in R_l} (a token keeps what it had, and gains
    what the tokens it attends to had). Returns the sizes |R_1| .. |R_layers| as a (layers,) long
    tensor. One (n,) vector times the mask per layer: O(n^2) time, O(n) extra memory.
    """
    _check_mask2d(mask)
    _int("layers", layers, 0)
    n = mask.shape[0]
    reach = torch.zeros(n, dtype=torch.bool)
    reach[_position("query", query, n)] = True
    m = mask.float()
    sizes = []
    for _ in range(layers):
        reach = reach | ((reach.float() @ m) > 0)
        sizes.append(int(reach.sum()))
    return torch.tensor(sizes, dtype=torch.long)


def layers_to_connect(mask: torch.Tensor, source: int = 0, target: int = -1, max_layers: int | None = None):
    """The fewest layers after which ``target``'s output depends on token ``source`` (None if
    never within ``max_layers``, default n)."""
    _check_mask2d(mask)
    n = mask.shape[0]
    source, target = _position("source", source, n), _position("target", target, n)
    max_layers = n if max_layers is None else _int("max_layers", max_layers, 0)
    reach = torch.zeros(n, dtype=torch.bool)
    reach[target] = True
    m = mask.float()
    for layer in range(1, max_layers + 1):
        new = reach | ((reach.float() @ m) > 0)
        if new[source]:
            return layer
        if torch.equal(new, reach):
            return None  # nothing new: never
        reach = new
    return None


# ----------------------------------------------------------------------------------------------
# FlexAttention: the same patterns as mask_mod and BlockMask
# ----------------------------------------------------------------------------------------------


def flex_mask_mod(pattern: str, n: int, causal: bool = False, **args):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx) -> bool`` for a pattern by name."""
    pred = pattern_predicate(pattern, n, causal, **dict(args))

    def mask_mod(b, h, q_idx, kv_idx):
        return pred(q_idx, kv_idx)
    return mask_mod


def flex_block_mask(pattern: str, n: int, causal: bool = False, block_size: int = 128, **args):
    """``create_block_mask`` of the pattern's ``mask_mod`` for length n (CPU, any head / batch)."""
    _int("n", n)
    _int("block_size", block_size)
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(flex_mask_mod(pattern, n, causal, **args), None, None, n, n,
                             device="cpu", BLOCK_SIZE=block_size)


# The old path of chapter 08's experiment, now in attnkit.experiments.sparse (a layer above).
_FORWARDS = {"furthest_vector_accuracy": "attnkit.experiments.sparse"}


def __getattr__(name: str):
    """Forward the old ``attnkit.sparse.furthest_vector_accuracy`` path to ``attnkit.experiments.sparse``."""
    if name in _FORWARDS:
        import importlib

        return getattr(importlib.import_module(_FORWARDS[name]), name)
    raise AttributeError(f"module 'attnkit.sparse' has no attribute {name!r}")
