"""LoRA on attention: low-rank updates of frozen projections, and ``LoRASelfAttention``.

Hu et al. 2021 (*LoRA: Low-Rank Adaptation of Large Language Models*), section 4.1: a frozen
pretrained weight W (out, in) is adapted by a trainable low-rank product,

    h = W x + b + (alpha / r) B A x,        A (r, in), B (out, r), r << min(in, out),

with A random and B zero at the start, so the adapted layer starts out *equal* to the base layer
and the update grows from zero. rsLoRA (Kalajdzievski 2023) scales by alpha / sqrt(r) instead.
Because the update is a matrix of the same shape as W, it can be merged into W for inference
(W' = W + (alpha / r) B A): the merged layer costs exactly what the base layer costs.

Pure functions first (one per formula), then the modules, which are thin wrappers:

- ``lora_scaling``, ``lora_delta``, ``lora_linear``, ``merge_weight``, ``unmerge_weight``,
  ``lora_param_count``, ``subspace_similarity`` (Hu et al. eq. 4);
- ``LoRALinear`` (``from_linear``, ``from_weight``, ``merge`` / ``unmerge``),
  ``mark_only_lora_as_trainable``, ``lora_state_dict``, ``count_parameters``;
- the two head kinds of ``LoRASelfAttention``: ``local_bucket_attention`` (softmax inside fixed
  buckets) and ``global_linear_attention`` (linear attention, with the causal blind spot), and
  ``visible_keys``, the (N, N) picture of which keys each query's head output depends on;
- ``LoRASelfAttention`` itself.

Chapter 10's teacher/student experiment (``make_teacher_student``, ``train_lora_runs``,
``run_budget_experiment``, ...) lives in ``attnkit.experiments.lora``; its old paths here
(``attnkit.lora.run_budget_experiment``, ...) still work, forwarded on first use (PEP 562).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from attnkit import validate
from attnkit.linear import _log_kernel_causal

__all__ = [
    "lora_scaling", "lora_delta", "lora_linear", "merge_weight", "unmerge_weight", "lora_param_count",
    "subspace_similarity", "LoRALinear", "mark_only_lora_as_trainable", "lora_state_dict",
    "count_parameters", "local_bucket_attention", "global_linear_attention", "visible_keys",
    "LoRASelfAttention", "PROJECTIONS",
]

PROJECTIONS = ("q", "k", "v", "o")  # the four projections of an attention layer LoRA may adapt


def _shape(x) -> str:
    return str(tuple(x.shape))


def _check_rank(r) -> None:
    validate.int_at_least("r", r)


def _check_alpha(lora_alpha) -> None:
    validate.real_number("lora_alpha", lora_alpha, 0.0, low_open=True)


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


# ---------------------------------------------------------------- the formulas


def lora_scaling(r: int, lora_alpha: float, use_rslora: bool = False) -> float:
    """The factor in front of B A: alpha / r (Hu et al. 4.1), or alpha / sqrt(r) with rsLoRA."""
    _check_rank(r)
    _check_alpha(lora_alpha)
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def _check_pair(A: torch.Tensor, B: torch.Tensor, in_features: int | None = None,
                out_features: int | None = None) -> None:
    validate.tensor("A", A)
    validate.tensor("B", B)
    validate.same_dtype_device(A=A, B=B)
    if A.dim() != 2 or B.dim() != 2:
        raise ValueError(f"A must be (r, in) and B (out, r), got A {_shape(A)} and B {_shape(B)}")
    if B.shape[1] != A.shape[0]:
        raise ValueError(f"B (out, r) and A (r, in) must share r, got B {_shape(B)} and A {_shape(A)}")
    if in_features is not None and A.shape[1] != in_features:
        raise ValueError(f"A must be (r, {in_features}) to match the weight's in_features, got {_shape(A)}")
    if out_features is not None and B.shape[0] != out_features:
        raise ValueError(f"B must be ({out_features}, r) to match the weight's out_features, got {_shape(B)}")


def lora_delta(A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """The update of the weight: scaling * B A, shape (out, in)."""
    _check_pair(A, B)
    validate.real_number("scaling", scaling)
    return scaling * (B @ A)  # (out, r) @ (r, in) -> (out, in)


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: torch.Tensor,
                B: torch.Tensor, scaling: float) -> torch.Tensor:
    """h = W x + b + scaling * B A x for x (..., in): the update is applied as two thin matmuls,
    never as the (out, in) matrix B A."""
    validate.tensor("x", x)
    _check_weight(weight)
    validate.same_dtype_device(x=x, weight=weight, A=A, B=B, bias=bias)
    validate.real_number("scaling", scaling)
    _check_pair(A, B, weight.shape[1], weight.shape[0])
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x must be (..., {weight.shape[1]}) to match weight (out, in) {_shape(weight)}, "
                         f"got {_shape(x)}")
    return F.linear(x, weight, bias) + scaling * ((x @ A.T) @ B.T)  # (..., r) -> (..., out)


def _check_weight(weight, A=None, B=None) -> None:
    validate.tensor("weight", weight, 2, "(out, in)")
    if A is not None:
        validate.same_dtype_device(weight=weight, A=A, B=B)


def merge_weight(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """W' = W + scaling * B A (a new tensor; the merged layer is an ordinary linear layer)."""
    _check_weight(weight, A, B)
    _check_pair(A, B, weight.shape[1], weight.shape[0])
    return weight + lora_delta(A, B, scaling).to(weight.dtype)


def unmerge_weight(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """W = W' - scaling * B A: the inverse of ``merge_weight`` (up to float rounding)."""
    _check_weight(weight, A, B)
    _check_pair(A, B, weight.shape[1], weight.shape[0])
    return weight - lora_delta(A, B, scaling).to(weight.dtype)


def lora_param_count(in_features: int, out_features: int, r: int) -> int:
    """Trainable parameters of one LoRA pair: r * in (A) + out * r (B)."""
    _check_rank(r)
    validate.int_at_least("in_features", in_features)
    validate.int_at_least("out_features", out_features)
    return r * (in_features + out_features)


def subspace_similarity(A1: torch.Tensor, A2: torch.Tensor, i: int | None = None,
                        j: int | None = None) -> torch.Tensor:
    """Hu et al. eq. 4: phi(A1, A2, i, j) = ||U1_i^T U2_j||_F^2 / min(i, j), in [0, 1].

    U1_i holds the top-i right-singular vectors of A1 (r1, in) as columns (in, i), U2_j the top-j
    of A2 (r2, in). With ``i`` and ``j`` None, returns the whole (r1, r2) table for i = 1..r1 and
    j = 1..r2 (Figure 3's picture). 1 means the subspaces overlap completely, 0 that they are
    orthogonal; two random subspaces of R^in give max(i, j) / in on average.
    """
    validate.tensor("A1", A1)
    validate.tensor("A2", A2)
    validate.same_dtype_device(A1=A1, A2=A2)
    validate.optional_int_at_least("i", i)
    validate.optional_int_at_least("j", j)
    if A1.dim() != 2 or A2.dim() != 2 or A1.shape[1] != A2.shape[1]:
        raise ValueError(f"A1 and A2 must be (r1, in) and (r2, in) with the same in, got {_shape(A1)} and {_shape(A2)}")
    V1 = torch.linalg.svd(A1.detach().double(), full_matrices=False).Vh  # (r1, in) rows: right-singular vectors
    V2 = torch.linalg.svd(A2.detach().double(), full_matrices=False).Vh  # (r2, in)
    overlap = (V1 @ V2.T) ** 2  # (r1, r2): squared cosines between singular directions
    table = overlap.cumsum(0).cumsum(1)  # (r1, r2): ||U1_i^T U2_j||_F^2 for every i, j
    ii = torch.arange(1, V1.shape[0] + 1, dtype=table.dtype)[:, None]
    jj = torch.arange(1, V2.shape[0] + 1, dtype=table.dtype)[None, :]
    table = table / torch.minimum(ii, jj)
    if i is None and j is None:
        return table
    if i is None or j is None or not (1 <= i <= V1.shape[0] and 1 <= j <= V2.shape[0]):
        raise ValueError(f"i and j must lie in 1..{V1.shape[0]} and 1..{V2.shape[0]}, got i={i}, j={j}")
    return table[i - 1, j - 1]


# ---------------------------------------------------------------- LoRALinear


class LoRALinear(nn.Module):
    """A linear layer with a frozen weight and a trainable low-rank update.

    ``y = x W^T + b + scaling * (dropout(x) A^T) B^T``, scaling = lora_alpha / r
    (lora_alpha / sqrt(r) with ``use_rslora``). ``weight`` (out, in) and ``bias`` (out) are frozen
    (``requires_grad=False``); ``lora_A`` (r, in) and ``lora_B`` (out, r) train.

    Initialisation, as loralib and peft do it: ``lora_B`` is zero, so the layer starts equal to
    the base layer; ``lora_A`` is Kaiming-uniform (a = sqrt(5), the init nn.Linear gives its own
    weight: entries in +-1/sqrt(in)), so A x has a scale that does not grow with ``in`` and B gets
    a useful gradient from the first step. (Hu et al. use a Gaussian for A; any random A works.
    Both must not be zero: with A = B = 0 both gradients are zero and nothing ever moves.)

    ``merge()`` adds scaling * B A into ``weight`` once (a second call does nothing) and then the
    forward is the plain linear layer; ``unmerge()`` subtracts it again (exact up to float
    rounding; a second call does nothing). Dropout acts on the LoRA branch only, so merge in
    eval mode: a merged layer has no dropout left to apply.
    """

    def __init__(self, in_features: int, out_features: int, r: int = 8, lora_alpha: float = 16,
                 lora_dropout: float = 0.0, bias: bool = True, use_rslora: bool = False,
                 device=None, dtype=None):
        super().__init__()
        validate.int_at_least("in_features", in_features)
        validate.int_at_least("out_features", out_features)
        validate.probability("lora_dropout", lora_dropout)
        self.in_features, self.out_features = in_features, out_features
        self.r, self.lora_alpha, self.use_rslora = r, lora_alpha, use_rslora
        self.scaling = lora_scaling(r, lora_alpha, use_rslora)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, **kw), requires_grad=False) if bias else None
        self.lora_A = nn.Parameter(torch.empty(r, in_features, **kw))
        self.lora_B = nn.Parameter(torch.empty(out_features, r, **kw))
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Base weight and bias as nn.Linear; A Kaiming-uniform; B zero (the update starts at 0)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    @classmethod
    def from_linear(cls, linear: nn.Linear, r: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.0,
                    use_rslora: bool = False) -> LoRALinear:
        """Wrap a pretrained ``nn.Linear``: its weight and bias become this layer's frozen ones.

        The tensors are shared, not copied (the wrapper costs no memory), so ``merge()`` changes
        ``linear.weight`` too. The update starts at zero: the wrapper's output equals ``linear``'s.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        return cls.from_weight(linear.weight, linear.bias, r=r, lora_alpha=lora_alpha,
                               lora_dropout=lora_dropout, use_rslora=use_rslora)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, *, r: int = 8,
                    lora_alpha: float = 16, lora_dropout: float = 0.0, use_rslora: bool = False,
                    fan_in_fan_out: bool = False) -> LoRALinear:
        """Wrap a bare weight. ``fan_in_fan_out=True`` says it is stored (in, out), as GPT-2's Conv1D
        stores it (y = x W); it is then transposed (a copy) into the (out, in) layout used here."""
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D, got {_shape(weight)}")
        w = weight.detach().T.contiguous() if fan_in_fan_out else weight.detach()
        out_features, in_features = w.shape
        if bias is not None and bias.shape != (out_features,):
            raise ValueError(f"bias must be ({out_features},) for a weight (out, in) {_shape(w)}, got {_shape(bias)}")
        layer = cls(in_features, out_features, r, lora_alpha, lora_dropout, bias=bias is not None,
                    use_rslora=use_rslora, device=w.device, dtype=w.dtype)
        layer.weight = nn.Parameter(w, requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return layer

    def delta_weight(self) -> torch.Tensor:
        """scaling * B A, shape (out, in)."""
        return lora_delta(self.lora_A, self.lora_B, self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + scaling * B A, once: merging a merged layer does nothing."""
        if not self.merged:
            self.weight.copy_(merge_weight(self.weight, self.lora_A, self.lora_B, self.scaling))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - scaling * B A, once: unmerging an unmerged layer does nothing."""
        if self.merged:
            self.weight.copy_(unmerge_weight(self.weight, self.lora_A, self.lora_B, self.scaling))
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        validate.tensor("x", x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must be (..., {self.in_features}), got {_shape(x)}")
        validate.module_accepts(self, "x", x)
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        update = (self.lora_dropout(x) @ self.lora_A.T) @ self.lora_B.T  # (..., r) -> (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, bias={self.bias is not None}, "
                f"merged={self.merged}")


def _lora_modules(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none") -> nn.Module:
    """Freeze every parameter except the LoRA ones (names containing ``lora_``), as loralib does.

    ``bias="none"``: no bias trains; ``"all"``: every bias of the model trains; ``"lora_only"``:
    the biases of the LoRA layers train. Returns the model.
    """
    _check_model(model)
    if bias not in ("none", "all", "lora_only"):
        raise ValueError(f"bias must be 'none', 'all' or 'lora_only', got {bias!r}")
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    if bias == "all":
        for name, p in model.named_parameters():
            if name.split(".")[-1] == "bias":
                p.requires_grad_(True)
    elif bias == "lora_only":
        for m in _lora_modules(model):
            if m.bias is not None:
                m.bias.requires_grad_(True)
    return model


def lora_state_dict(model: nn.Module, bias: str = "none") -> dict[str, torch.Tensor]:
    """The parameters a LoRA checkpoint needs: every ``lora_`` tensor (and the biases, as in
    ``mark_only_lora_as_trainable``). Load it with ``model.load_state_dict(sd, strict=False)``."""
    _check_model(model)
    if bias not in ("none", "all", "lora_only"):
        raise ValueError(f"bias must be 'none', 'all' or 'lora_only', got {bias!r}")
    sd = model.state_dict()
    keep = {k for k in sd if "lora_" in k}
    if bias == "all":
        keep |= {k for k in sd if k.split(".")[-1] == "bias"}
    elif bias == "lora_only":
        for name, m in model.named_modules():
            if isinstance(m, LoRALinear) and m.bias is not None:
                keep.add(f"{name}.bias" if name else "bias")
    return {k: sd[k] for k in sd if k in keep}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters."""
    _check_model(model)
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ---------------------------------------------------------------- the two head kinds


def _masked_softmax(scores: torch.Tensor, allowed: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` of the allowed entries; rows with no allowed entry give zeros, not NaN."""
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    e = torch.exp(scores - scores.amax(dim=dim, keepdim=True)).masked_fill(~allowed, 0.0)
    return e / e.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def _check_heads(q, k, v, key_mask):
    for name, x in (("q", q), ("k", k), ("v", v)):
        validate.tensor(name, x)
    validate.same_dtype_device(q=q, k=k, v=v)
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k must be (B, H, N, d) alike and v (B, H, N, e), got q {_shape(q)}, "
                         f"k {_shape(k)}, v {_shape(v)}")
    if key_mask is not None and (key_mask.dtype != torch.bool or key_mask.shape != (q.shape[0], q.shape[2])):
        raise ValueError(f"key_mask must be a bool (B, N) = {(q.shape[0], q.shape[2])} tensor, "
                         f"got {key_mask.dtype} {_shape(key_mask)}")


def local_bucket_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                           causal: bool = False, key_mask: torch.Tensor | None = None,
                           dropout_p: float = 0.0) -> torch.Tensor:
    """Softmax attention inside fixed buckets (the local heads of ``LoRASelfAttention``).

    q, k (B, H, N, d), v (B, H, N, e) -> (B, H, N, e). Positions fall in buckets
    [u W, (u + 1) W) aligned at 0; query i (bucket u) sees the keys of buckets u - 1 and u, and
    u + 1 when not causal; causal keeps only keys j <= i; ``key_mask`` (B, N), True = real token,
    removes keys. Scale d^-1/2. A query that sees no key gets zeros. Any N: the last bucket is
    padded inside with masked keys. ``dropout_p`` drops attention weights (pass 0 in eval).
    Memory O(N W), never (N, N).
    """
    _check_heads(q, k, v, key_mask)
    validate.int_at_least("window", window)
    validate.probability("dropout_p", dropout_p)
    Bsz, H, N, d = q.shape
    if N == 0:
        return v.new_zeros(*v.shape)  # (B, H, 0, e): no query
    U = -(-N // window)  # number of buckets
    pad = U * window - N
    pos = torch.arange(U * window, device=q.device)  # (Np,) positions, padded ones >= N
    valid = torch.ones(Bsz, U * window, dtype=torch.bool, device=q.device)  # (B, Np)
    valid[:, N:] = False
    if key_mask is not None:
        valid[:, :N] = key_mask
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    bq, bk, bv = (t.reshape(Bsz, H, U, window, t.shape[-1]) for t in (q, k, v))  # (B, H, U, W, .)
    bpos, bvalid = pos.reshape(U, window), valid.reshape(Bsz, U, window)
    offsets = [-1, 0] if causal else [-1, 0, 1]
    if U == 1:
        offsets = [0]  # no neighbouring bucket exists

    def around(x, fill, dim):  # x with buckets on ``dim``: concat buckets u + o for each offset
        parts = []
        for o in offsets:
            shifted = torch.roll(x, shifts=-o, dims=dim)
            if o != 0:  # the bucket that wrapped around does not exist: fill it
                idx = torch.arange(U, device=x.device)
                gone = (idx + o < 0) | (idx + o >= U)
                shape = [1] * x.dim()
                shape[dim] = U
                shifted = shifted.masked_fill(gone.view(shape), fill)
            parts.append(shifted)
        return torch.cat(parts, dim=dim + 1)

    kk = around(bk, 0.0, 2)  # (B, H, U, nW, d)
    vv = around(bv, 0.0, 2)  # (B, H, U, nW, e)
    kpos = around(bpos, -1, 0)  # (U, nW)
    kvalid = around(bvalid, False, 1) & (kpos >= 0)  # (B, U, nW)
    allowed = kvalid[:, None, :, None, :]  # (B, 1, U, 1, nW)
    if causal:
        allowed = allowed & (kpos[None, None, :, None, :] <= bpos[None, None, :, :, None])  # (B, 1, U, W, nW)
    scores = bq @ kk.transpose(-1, -2) / math.sqrt(d)  # (B, H, U, W, nW)
    w = _masked_softmax(scores, allowed.expand_as(scores), dim=-1)
    if dropout_p > 0:
        w = F.dropout(w, p=dropout_p)
    out = w @ vv  # (B, H, U, W, e)
    return out.reshape(Bsz, H, U * window, -1)[:, :, :N]


def global_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                            blindspot_size: int = 1, key_mask: torch.Tensor | None = None,
                            eps: float = 1e-3) -> torch.Tensor:
    """Linear attention (the global heads of ``LoRASelfAttention``), q, k (B, H, N, d), v (B, H, N, e).

    Not causal: out = (softmax_d(q) d^-1/2) (softmax_N(k)^T v), the softmax of k taken over the
    sequence (masked keys removed; all keys masked gives zeros).
    Causal: with phi(q_i) = softmax_d(q_i) d^-1/2 and psi(k_j) = exp(k_j),
    out_i = sum_j K_ij v_j / max(sum_j K_ij, eps), K_ij = phi(q_i) . psi(k_j), over the keys j
    that query i sees: j <= i when ``blindspot_size`` b = 1; j < b floor(i / b) when b > 1 (only
    completed earlier buckets: the query's own bucket is its blind spot, and the first bucket's
    output is zero). Computed chunk by chunk in log space, exact at every scale of k (the
    chunks are the buckets when b > 1): memory O(chunk (d e + chunk)), never (N, N).
    """
    _check_heads(q, k, v, key_mask)
    validate.int_at_least("blindspot_size", blindspot_size)
    validate.real_number("eps", eps, 0.0, low_open=True)
    d = q.shape[-1]
    keep = None if key_mask is None else key_mask[:, None, :, None]  # (B, 1, N, 1)
    if not causal:
        if q.shape[2] == 0:
            return v.new_zeros(*v.shape)  # (B, H, 0, e): no query
        phi_q = q.softmax(dim=-1) * d ** -0.5  # (B, H, N, d)
        allowed = torch.ones_like(k, dtype=torch.bool) if keep is None else keep.expand_as(k)
        k_soft = _masked_softmax(k, allowed, dim=-2)  # (B, H, N, d): softmax over the sequence
        context = k_soft.transpose(-1, -2) @ v  # (B, H, d, e)
        return phi_q @ context  # (B, H, N, e)
    # causal: K_ij = sum_f exp(log phi(q_i)_f + k_jf), summed in log space (attnkit.linear's exact
    # causal routine): no exp(k) overflows, and each row's sums come at its own scale exp(t)
    out_dtype = v.dtype
    if q.dtype in (torch.float16, torch.bfloat16):  # exp(k) needs float32's range
        q, k, v = q.float(), k.float(), v.float()
    lq = torch.log_softmax(q, dim=-1) - 0.5 * math.log(d)  # (B, H, N, d): log phi(q)
    lk = k if keep is None else k.masked_fill(~keep, -math.inf)  # (B, H, N, d): a masked key adds nothing
    b = blindspot_size
    num, den, t = _log_kernel_causal(lq, lk, v, chunk_size=b if b > 1 else 64, blind_spot=b > 1)
    floor = (eps * torch.exp(-t)).clamp_min(torch.finfo(den.dtype).tiny)  # (B, H, N): eps at the scale exp(-t)
    return (num / torch.maximum(den, floor)[..., None]).to(out_dtype)  # (B, H, N, e)


def visible_keys(n: int, kind: str, causal: bool = False, window: int = 128, blindspot_size: int = 1,
                 key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Which keys each query's head output depends on, from the definitions: bool (n, n)
    (or (B, n, n) with ``key_mask`` (B, n)), row = query i, column = key j.

    ``kind="local"``: bucket(j) - bucket(i) in {-1, 0} (and +1 when not causal), j <= i if causal.
    ``kind="global"``: every key when not causal; causal: j <= i for b = 1, j < b floor(i / b) for b > 1.
    """
    validate.choice("kind", kind, ("local", "global"))
    validate.int_at_least("n", n, 0)
    validate.int_at_least("window", window)
    validate.int_at_least("blindspot_size", blindspot_size)
    validate.key_padding_mask("key_mask", key_mask, (key_mask.shape[0] if isinstance(key_mask, torch.Tensor)
                                                     and key_mask.dim() else 0, n))
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    if kind == "local":
        du = j // window - i // window
        vis = (du == 0) | (du == -1) | ((du == 1) & (not causal))
        if causal:
            vis = vis & (j <= i)
    elif not causal:
        vis = torch.ones(n, n, dtype=torch.bool)
    elif blindspot_size <= 1:
        vis = j <= i
    else:
        vis = j < blindspot_size * (i // blindspot_size)
    if key_mask is not None:
        vis = vis[None] & key_mask[:, None, :]
    return vis


# ---------------------------------------------------------------- LoRASelfAttention


class LoRASelfAttention(nn.Module):
    """Self-attention with local softmax heads, global linear heads, and LoRA on its projections.

    The arguments are those of the local + linear ``SelfAttention`` of the linear-attention
    family these names come from (linear-attention-transformer), plus LoRA's ``r``,
    ``lora_alpha`` and ``enable_lora``:

    - ``dim``: the width of x; ``heads`` heads of ``dim_head`` each. q, k, v are projections
      dim -> heads * dim_head without bias (``to_q``, ``to_k``, ``to_v``), the output projection
      heads * dim_head -> dim has a bias (``to_out``), then ``dropout``.
    - ``enable_lora``: any iterable of the letters q, k, v, o; those projections are
      ``LoRALinear(r, lora_alpha)``, the others plain ``nn.Linear``. ``enable_lora=()`` is the
      same layer without LoRA (same parameter names for the base weights).
    - Local heads, the first ``n_local_attn_heads``: softmax attention (scale dim_head^-1/2) inside
      fixed buckets of ``local_attn_window_size`` tokens, [uW, (u+1)W); a query sees its own bucket
      and the previous one, and the next one when not causal; causal keeps keys j <= i.
      ``attn_dropout`` drops these attention weights only.
    - Global heads, the rest: linear attention (``global_linear_attention``). Not causal:
      softmax_d(q) dim_head^-1/2 (softmax_N(k)^T v). Causal: the kernel softmax_d(q) dim_head^-1/2
      . exp(k), normalised by its row sum floored at 1e-3; with ``blindspot_size`` b > 1 query i sees
      only keys j < b floor(i / b): its own bucket is its blind spot (the first bucket outputs 0).
      ``blindspot_size`` None or 1: no blind spot (the package these names come from turns None
      into 64 inside its causal linear attention; compare with it by passing 1). Ignored when not
      causal.
    - Any N: buckets that N does not fill are padded inside with masked keys; exactly N positions
      come back (the reference code asserts divisibility instead).

    forward(x, input_mask=None): x (B, N, dim) -> (B, N, dim). ``input_mask`` (B, N) bool,
    True = real token: the other positions are removed as keys and values from every head; a query
    that sees no key gets a zero head output before the output projection; outputs at masked
    positions are unspecified.
    """

    def __init__(self, dim: int, heads: int, r: int = 8, lora_alpha: float = 16,
                 enable_lora: Iterable[str] = ("q", "k", "v", "o"), causal: bool = False, dim_head: int = 64,
                 blindspot_size: int | None = None, n_local_attn_heads: int = 0,
                 local_attn_window_size: int = 128, attn_dropout: float = 0.1, dropout: float = 0.1):
        super().__init__()
        for name, value in (("dim", dim), ("heads", heads), ("dim_head", dim_head),
                            ("local_attn_window_size", local_attn_window_size)):
            validate.int_at_least(name, value)
        if isinstance(enable_lora, str):
            enable_lora = tuple(enable_lora)
        try:
            enabled = tuple(dict.fromkeys(enable_lora))
        except TypeError:
            raise TypeError(f"enable_lora must be an iterable of the letters {PROJECTIONS}, "
                            f"got {type(enable_lora).__name__}") from None
        unknown = [p for p in enabled if p not in PROJECTIONS]
        if unknown:
            raise ValueError(f"enable_lora must contain only {PROJECTIONS}, got {unknown} in {list(enabled)}")
        if not validate.int_at_least("n_local_attn_heads", n_local_attn_heads, 0) <= heads:
            raise ValueError(f"n_local_attn_heads must be an int in [0, heads={heads}], got {n_local_attn_heads!r}")
        validate.optional_int_at_least("blindspot_size", blindspot_size)
        for name, p in (("attn_dropout", attn_dropout), ("dropout", dropout)):
            validate.probability(name, p)
        if enabled:
            _check_rank(r)
            _check_alpha(lora_alpha)
        self.dim, self.heads, self.dim_head = dim, heads, dim_head
        self.r, self.lora_alpha, self.enable_lora = r, lora_alpha, enabled
        self.causal = causal
        self.blindspot_size = 1 if blindspot_size is None else blindspot_size
        self.n_local_attn_heads, self.local_attn_window_size = n_local_attn_heads, local_attn_window_size
        self.attn_dropout = attn_dropout
        inner = heads * dim_head

        def proj(letter, n_in, n_out, bias):
            if letter in enabled:
                return LoRALinear(n_in, n_out, r=r, lora_alpha=lora_alpha, bias=bias)
            return nn.Linear(n_in, n_out, bias=bias)

        self.to_q = proj("q", dim, inner, False)
        self.to_k = proj("k", dim, inner, False)
        self.to_v = proj("v", dim, inner, False)
        self.to_out = proj("o", inner, dim, True)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x):  # (B, N, heads * dim_head) -> (B, heads, N, dim_head)
        return x.reshape(*x.shape[:2], self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, input_mask: torch.Tensor | None = None) -> torch.Tensor:
        validate.tensor("x", x)
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, N, dim={self.dim}), got {_shape(x)}")
        validate.module_accepts(self, "x", x)
        validate.key_padding_mask("input_mask", input_mask, x.shape[:2], x.device)
        Bsz, N, _ = x.shape
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(x)), self._split(self.to_v(x))  # (B, H, N, Dh)
        L = self.n_local_attn_heads
        out = []
        if L > 0:
            out.append(local_bucket_attention(q[:, :L], k[:, :L], v[:, :L], self.local_attn_window_size,
                                              self.causal, input_mask,
                                              self.attn_dropout if self.training else 0.0))
        if L < self.heads:
            out.append(global_linear_attention(q[:, L:], k[:, L:], v[:, L:], self.causal,
                                               self.blindspot_size if self.causal else 1, input_mask))
        attn = torch.cat(out, dim=1).transpose(1, 2).reshape(Bsz, N, self.heads * self.dim_head)  # (B, N, heads * Dh)
        return self.dropout(self.to_out(attn))  # (B, N, dim)

    def lora_layers(self) -> dict[str, LoRALinear]:
        """The LoRA-adapted projections by letter."""
        names = {"q": self.to_q, "k": self.to_k, "v": self.to_v, "o": self.to_out}
        return {p: m for p, m in names.items() if isinstance(m, LoRALinear)}

    def merge(self) -> None:
        for m in self.lora_layers().values():
            m.merge()

    def unmerge(self) -> None:
        for m in self.lora_layers().values():
            m.unmerge()


# Old paths of chapter 10's experiment, now in attnkit.experiments.lora (a layer above).
_FORWARDS = {name: "attnkit.experiments.lora" for name in (
    "make_teacher_student", "attention_forward", "lora_attention_forward", "init_lora_pairs",
    "train_lora_runs", "train_full", "run_budget_experiment", "DEFAULT_DELTAS")}


def __getattr__(name: str):
    """Forward the old ``attnkit.lora.<experiment>`` paths to ``attnkit.experiments.lora``."""
    if name in _FORWARDS:
        import importlib

        return getattr(importlib.import_module(_FORWARDS[name]), name)
    raise AttributeError(f"module 'attnkit.lora' has no attribute {name!r}")
