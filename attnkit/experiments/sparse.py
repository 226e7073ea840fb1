"""Chapter 08's experiment: BigBird's furthest-vector task, one layer of full or of sparse attention."""

from __future__ import annotations

import torch

from attnkit.core import scaled_dot_product_attention
from attnkit.sparse import _check_mask2d


def furthest_vector_accuracy(mask: torch.Tensor | None, n: int = 256, d: int = 16, scale: float = 50.0,
                             seed: int = 0) -> float:
    """BigBird's "furthest vector" task (Zaheer et al. 2020, section 3.4, Proposition 1), one layer.

    Proposition 1: one full-attention layer solves it; a sparse graph with O~(n) edges, global
    tokens included, needs Omega~(n^(1-o(1))) layers (under the Orthogonal Vectors Conjecture).
    This function runs one layer only: a sparse mask answers right where it keeps the pair.

    n unit vectors u_i; for each i find argmax_j |u_i - u_j| = argmin_j u_i·u_j. One attention
    layer with Q = -u, K = V = u and a large scale puts almost all weight on the key most opposed
    to u_i, so the output is (nearly) the furthest vector, if that key is allowed by ``mask``
    (None = full attention). The prediction is the u_j closest to the output. Returns the
    fraction of queries answered right.
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)  # (n, d)
    if mask is not None:
        _check_mask2d(mask)
        if mask.shape[0] != n:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({n}, {n})")
    out = scaled_dot_product_attention(-u, u, u, attn_mask=mask, scale=scale)  # (n, d)
    truth = (u @ u.T).argmin(dim=-1)  # (n,)
    pred = (out @ u.T).argmax(dim=-1)
    return float((pred == truth).double().mean())
