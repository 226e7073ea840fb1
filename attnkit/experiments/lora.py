"""Chapter 10's experiment: LoRA runs on a teacher/student attention layer, many runs trained at once.

Teacher/student: a pretrained attention layer (the student's frozen weights) and a teacher whose
q, k, v and o weights differ from them by low-rank updates of different ranks and sizes. Many
LoRA runs (placements x ranks x alphas) train *at once*: run r has its own A_r, B_r and
scaling_r, stacked on a leading axis, and the loss is the sum of the runs' losses, so each run's
gradient (and Adam's per-element step) depends on its own loss only: exactly separate runs. A
projection a run does not adapt has A = B = 0, and that pair never moves (both gradients are 0);
neither do the rows of A and columns of B beyond a run's rank. Tests compare a run with the same
run trained through LoRASelfAttention and LoRALinear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.lora import PROJECTIONS, lora_param_count, lora_scaling


def attention_forward(x: torch.Tensor, weights: dict, heads: int) -> torch.Tensor:
    """Plain multi-head softmax attention from a weight dict {"q", "k", "v": (inner, D),
    "o": (D, inner), "o_bias": (D,)}: x (..., N, D) -> (..., N, D)."""
    return _attend(x @ weights["q"].T, x @ weights["k"].T, x @ weights["v"].T, weights, heads)


def _attend(q, k, v, weights, heads, o_update=None):
    *lead, N, inner = q.shape
    split = lambda t: t.reshape(-1, N, heads, inner // heads).transpose(1, 2)  # (M, H, N, Dh)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    h = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v  # (M, H, N, Dh)
    h = h.transpose(1, 2).reshape(*lead, N, inner)  # (..., N, inner)
    out = h @ weights["o"].T + weights["o_bias"]
    return out if o_update is None else out + o_update(h)


def lora_attention_forward(x: torch.Tensor, weights: dict, A: dict, B: dict, scaling: torch.Tensor,
                           heads: int) -> torch.Tensor:
    """R LoRA runs at once. x (Bt, N, D) shared; A[p] (R, r, in), B[p] (R, out, r) for p in q, k, v, o;
    scaling (R,). Each projection is W x + scaling_r B_r A_r x. Returns (R, Bt, N, D)."""
    R, Bt, N, D = scaling.shape[0], *x.shape
    s = scaling[:, None, None]  # (R, 1, 1)
    x2 = x.reshape(Bt * N, D)  # (M, D): the same inputs for every run

    def shared_update(p):  # (R, M, out): scaling_r B_r A_r x, with one matmul for A over all runs
        r = A[p].shape[1]
        ax = (x2 @ A[p].reshape(R * r, D).T).reshape(Bt * N, R, r).transpose(0, 1)  # (R, M, r)
        return s * (ax @ B[p].transpose(1, 2))  # (R, M, out)

    q, k, v = ((x2 @ weights[p].T + shared_update(p)).reshape(R, Bt, N, -1) for p in ("q", "k", "v"))

    def o_update(h):  # h (R, Bt, N, inner) -> (R, Bt, N, D)
        h2 = h.reshape(R, Bt * N, -1)
        return (s * ((h2 @ A["o"].transpose(1, 2)) @ B["o"].transpose(1, 2))).reshape(R, Bt, N, -1)

    return _attend(q, k, v, weights, heads, o_update=o_update)


def make_teacher_student(dim: int = 32, heads: int = 4, dim_head: int = 8, deltas: dict | None = None,
                         seed: int = 0):
    """(base, teacher, true_delta): the student's pretrained weights, the teacher's (base + D_p for
    each projection p), and the D_p. ``deltas`` maps p to (rank, size): D_p has that rank and
    ||D_p||_F = size * ||W_p||_F. Weights as nn.Linear initialises them, from ``seed``."""
    deltas = DEFAULT_DELTAS if deltas is None else deltas
    torch.manual_seed(seed)
    inner = heads * dim_head
    q, k, v, o = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(inner, dim)
    base = {"q": q.weight, "k": k.weight, "v": v.weight, "o": o.weight, "o_bias": o.bias}
    base = {name: w.detach().clone() for name, w in base.items()}
    g = torch.Generator().manual_seed(seed + 1)
    teacher, true_delta = dict(base), {}
    for p, (rank, size) in deltas.items():
        w = base[p]
        d = torch.randn(w.shape[0], rank, generator=g) @ torch.randn(rank, w.shape[1], generator=g)
        true_delta[p] = d * (size * w.norm() / d.norm())  # rank `rank`, relative size `size`
        teacher[p] = w + true_delta[p]
    return base, teacher, true_delta


DEFAULT_DELTAS = {"q": (4, 0.6), "k": (1, 0.4), "v": (2, 0.5), "o": (8, 0.3)}


def init_lora_pairs(configs, weights: dict, seed: int = 0):
    """Stacked (A, B) for runs ``configs`` = [(placement, r, alpha), ...], padded to the largest r:
    A Kaiming-uniform (bounds +-1/sqrt(in), as LoRALinear) in a run's first r rows of its adapted
    projections, zero elsewhere; B zero. Run i draws from generator seed + 100 + i."""
    rmax = max(r for _, r, _ in configs)
    A = {p: torch.zeros(len(configs), rmax, weights[p].shape[1]) for p in PROJECTIONS}
    B = {p: torch.zeros(len(configs), weights[p].shape[0], rmax) for p in PROJECTIONS}
    for i, (placement, r, _) in enumerate(configs):
        g = torch.Generator().manual_seed(seed + 100 + i)
        for p in placement:
            bound = 1 / math.sqrt(weights[p].shape[1])
            A[p][i, :r] = (torch.rand(r, weights[p].shape[1], generator=g) * 2 - 1) * bound
    return A, B


def _batches(seed, steps, batch, seq, dim):
    g = torch.Generator().manual_seed(seed + 1)
    x_eval = torch.randn(32, seq, dim, generator=g)
    return x_eval, [torch.randn(batch, seq, dim, generator=g) for _ in range(steps)]


def train_lora_runs(base: dict, teacher: dict, configs, heads: int = 4, steps: int = 150, lr: float = 1e-2,
                    seed: int = 0, batch: int = 32, seq: int = 16, eval_every: int = 5,
                    A0: dict | None = None) -> list[dict]:
    """Train every run of ``configs`` = [(placement, r, alpha), ...] towards the teacher, at once.

    Adam on A and B only, mean squared error to the teacher's output on fresh Gaussian inputs
    (the same for every run). Returns one dict per run: ``losses`` (held-out loss every
    ``eval_every`` steps, the first before training), ``recovered`` (1 - final / initial held-out
    loss: the fraction of the gap closed), ``trainable`` (r (in + out) per adapted projection),
    ``delta`` {p: learned update (out, in)}, ``A`` {p: learned A (r, in)}, ``A0`` {p: initial A}.
    """
    configs = [(tuple(p), r, a) for p, r, a in configs]
    x_eval, xs = _batches(seed, steps, batch, seq, base["q"].shape[1])
    A, B = init_lora_pairs(configs, base, seed) if A0 is None else (A0, {p: torch.zeros(
        len(configs), base[p].shape[0], A0[p].shape[1]) for p in PROJECTIONS})
    init = {p: a.clone() for p, a in A.items()}
    scaling = torch.tensor([lora_scaling(r, a) for _, r, a in configs])
    params = [t.requires_grad_() for t in (*A.values(), *B.values())]
    opt = torch.optim.Adam(params, lr=lr)
    with torch.no_grad():
        y_eval = attention_forward(x_eval, teacher, heads)
        ys = [attention_forward(x, teacher, heads) for x in xs]

    def held_out():  # (R,)
        with torch.no_grad():
            return ((lora_attention_forward(x_eval, base, A, B, scaling, heads) - y_eval) ** 2).mean(dim=(1, 2, 3))

    losses = [held_out()]
    for step, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        loss = ((lora_attention_forward(x, base, A, B, scaling, heads) - y) ** 2).mean(dim=(1, 2, 3)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            losses.append(held_out())
    curves = torch.stack(losses, dim=1)  # (R, n_evals)
    results = []
    for i, (placement, r, alpha) in enumerate(configs):
        results.append({
            "config": (placement, r, alpha), "losses": curves[i].tolist(),
            "recovered": 1.0 - (curves[i, -1] / curves[i, 0]).item(),
            "trainable": sum(lora_param_count(base[p].shape[1], base[p].shape[0], r) for p in placement),
            "delta": {p: (scaling[i] * B[p][i, :, :r] @ A[p][i, :r]).detach() for p in placement},
            "A": {p: A[p][i, :r].detach().clone() for p in placement},
            "A0": {p: init[p][i, :r].clone() for p in placement},
        })
    return results


def train_full(base: dict, teacher: dict, heads: int = 4, steps: int = 150, lr: float = 3e-3, seed: int = 0,
               batch: int = 32, seq: int = 16, eval_every: int = 5) -> dict:
    """Full fine-tuning (every weight and the bias train) on the same data; same dict as a run."""
    x_eval, xs = _batches(seed, steps, batch, seq, base["q"].shape[1])
    w = {name: t.clone().requires_grad_() for name, t in base.items()}
    opt = torch.optim.Adam(list(w.values()), lr=lr)
    with torch.no_grad():
        y_eval = attention_forward(x_eval, teacher, heads)

    def held_out():
        with torch.no_grad():
            return F.mse_loss(attention_forward(x_eval, w, heads), y_eval).item()

    losses = [held_out()]
    for step, x in enumerate(xs, start=1):
        with torch.no_grad():
            y = attention_forward(x, teacher, heads)
        loss = F.mse_loss(attention_forward(x, w, heads), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            losses.append(held_out())
    return {"config": (PROJECTIONS, None, None), "losses": losses, "recovered": 1.0 - losses[-1] / losses[0],
            "trainable": sum(t.numel() for t in base.values()),
            "delta": {p: (w[p] - base[p]).detach() for p in PROJECTIONS}, "A": {}, "A0": {}}


def run_budget_experiment(placements=(("q",), ("v",), ("q", "v"), PROJECTIONS), ranks=(1, 2, 4, 8),
                          alphas=(1, 16, 256), steps: int = 120, lr: float = 1e-2, full_lr: float = 3e-3,
                          seed: int = 0, deltas: dict | None = None, heads: int = 4, batch: int = 16,
                          eval_every: int = 10) -> dict:
    """Every (placement, rank, alpha) LoRA run and full fine-tuning, computed once.

    Returns {"runs": {(placement, r, alpha): result}, "full": result, "true_delta": {p: D_p},
    "base": weights, "teacher": weights}; see ``train_lora_runs`` for a result.
    """
    base, teacher, true_delta = make_teacher_student(heads=heads, deltas=deltas, seed=seed)
    configs = [(tuple(p), r, a) for p in placements for r in ranks for a in alphas]
    results = train_lora_runs(base, teacher, configs, heads=heads, steps=steps, lr=lr, seed=seed, batch=batch,
                              eval_every=eval_every)
    full = train_full(base, teacher, heads=heads, steps=steps, lr=full_lr, seed=seed, batch=batch,
                      eval_every=eval_every)
    return {"runs": {res["config"]: res for res in results}, "full": full, "true_delta": true_delta,
            "base": base, "teacher": teacher, "eval_every": eval_every}
