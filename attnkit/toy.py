"""Small, seeded experiments for chapter 01: why queries, keys and values?

Task ("look up by content"): a sequence holds N random vectors x_1..x_N. The answer at
position i is the vector x_j that best matches a fixed transform of x_i:
    y_i = x_{j*},   j* = argmax_j (R x_i) . x_j          (R: a fixed random orthogonal matrix)
Which position holds the answer changes from one sequence to the next, so a model whose mixing
weights depend only on positions (a learned N x N matrix A, y = softmax(A) x) cannot solve it,
while attention, whose weights softmax(x W_q (x W_k)^T) are computed from the content, can.
"""

from __future__ import annotations

import torch

from attnkit.timing import one_thread

__all__ = ["lookup_batch", "self_match_fraction", "train_fixed_vs_qkv"]


def lookup_batch(g: torch.Generator, batch: int, n: int, d: int, rot: torch.Tensor):
    """x: (batch, n, d) standard normal; y: (batch, n, d) the looked-up vectors."""
    x = torch.randn(batch, n, d, generator=g)
    match = (x @ rot.T) @ x.transpose(1, 2)  # (batch, n, n): (R x_i) . x_j
    j = match.argmax(dim=-1)  # (batch, n)
    y = torch.gather(x, 1, j[..., None].expand(-1, -1, d))
    return x, y


def train_fixed_vs_qkv(n: int = 8, d: int = 16, steps: int = 150, batch: int = 64, seed: int = 0,
                       lr: float = 0.03) -> dict:
    """Train the models with Adam on the same batches; return their test mean squared errors.

    Four models: "fixed" (softmax(A) x), "qkv" (three separate matrices), and two with one
    matrix shared by two roles, started from the same values as "qkv"'s: "tied_qk" (W_Q = W_K:
    queries are keys) and "tied_kv" (W_K = W_V: keys are values). Returns {name: test mse,
    "zero": mse of predicting 0, name + "_curve": training losses every step}.
    """
    g = torch.Generator().manual_seed(seed)
    rot = torch.linalg.qr(torch.randn(d, d, generator=g))[0]  # (d, d) orthogonal
    logits = torch.zeros(n, n, requires_grad=True)  # the fixed model: one weight per position pair
    wq, wk, wv = (torch.randn(d, d, generator=g).div(d ** 0.5).requires_grad_() for _ in range(3))
    # the tied models start from copies of the same initial matrices (no further draws from g)
    qk, qk_v, kv_q, kv = (w.detach().clone().requires_grad_() for w in (wq, wv, wq, wk))

    def attend(x, w_q, w_k, w_v):
        q, k, v = x @ w_q, x @ w_k, x @ w_v  # (B, n, d) each
        return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v

    models = {
        "fixed": (lambda x: torch.softmax(logits, dim=-1) @ x, [logits]),  # (n, n) @ (B, n, d)
        "qkv": (lambda x: attend(x, wq, wk, wv), [wq, wk, wv]),
        "tied_qk": (lambda x: attend(x, qk, qk, qk_v), [qk, qk_v]),
        "tied_kv": (lambda x: attend(x, kv_q, kv, kv), [kv_q, kv]),
    }
    opts = {name: torch.optim.Adam(params, lr=lr) for name, (_, params) in models.items()}
    curves = {name: [] for name in models}
    with one_thread():  # tensors this small: a second thread only adds waiting on a busy machine
        for _ in range(steps):
            x, y = lookup_batch(g, batch, n, d, rot)
            for name, (model, _) in models.items():
                loss = (model(x) - y).pow(2).mean()
                opts[name].zero_grad()
                loss.backward()
                opts[name].step()
                curves[name].append(loss.item())
        x, y = lookup_batch(torch.Generator().manual_seed(seed + 1), 1000, n, d, rot)
        with torch.no_grad():
            out = {name: (model(x) - y).pow(2).mean().item() for name, (model, _) in models.items()}
    return out | {"zero": y.pow(2).mean().item()} | {name + "_curve": c for name, c in curves.items()}


def self_match_fraction(n: int = 8, d: int = 16, batch: int = 1000, seed: int = 0) -> float:
    """Without R (R = I), how often the best match of x_i is x_i itself: the fraction of
    positions where argmax_j x_i . x_j = i."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, d, generator=g)
    best = (x @ x.transpose(1, 2)).argmax(dim=-1)  # (batch, n)
    return (best == torch.arange(n)).float().mean().item()


# ---- pictures and tables for the chapter ----

from attnkit.i18n import register, t  # noqa: E402

register({
    "toy.curve_title": {"en": "look up by content: training loss", "zh": "按内容查找：训练损失"},
    "toy.step": {"en": "training step", "zh": "训练步数"},
    "toy.mse": {"en": "mean squared error", "zh": "均方误差"},
    "toy.fixed": {"en": "fixed matrix softmax(A)·x", "zh": "固定矩阵 softmax(A)·x"},
    "toy.qkv": {"en": "attention softmax(QKᵀ)·V", "zh": "注意力 softmax(QKᵀ)·V"},
    "toy.zero": {"en": "always predict 0", "zh": "始终预测 0"},
    "toy.tied_qk": {"en": "queries = keys (W_Q = W_K)", "zh": "查询 = 键（W_Q = W_K）"},
    "toy.tied_kv": {"en": "keys = values (W_K = W_V)", "zh": "键 = 值（W_K = W_V）"},
})
MODELS = ("fixed", "qkv", "tied_qk", "tied_kv")


def plot_fixed_vs_qkv(result: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name in MODELS:
        if name + "_curve" in result:
            ax.plot(result[name + "_curve"], label=t("toy." + name), lw=1.2)
    ax.axhline(result["zero"], color="gray", ls="--", label=t("toy.zero"))
    ax.set_xlabel(t("toy.step"))
    ax.set_ylabel(t("toy.mse"))
    ax.set_title(t("toy.curve_title"))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def attention_flops(n: int, s: int, d: int, dv: int | None = None) -> int:
    """Multiply-adds counted as 2 FLOPs: Q K^T is 2 n s d, weights @ V is 2 n s dv."""
    dv = d if dv is None else dv
    return 2 * n * s * d + 2 * n * s * dv


def measure_attention_cost(ns=(256, 512, 1024, 2048), d: int = 64, repeats: int = 3, seed: int = 0):
    """For each N: FLOPs by formula, bytes of the (N, N) weight matrix as really allocated, and
    the median time of attnkit's plain attention (float32, one head), the sizes timed
    round-robin on one thread (``attnkit.timing``)."""
    from attnkit.core import scaled_dot_product_attention
    from attnkit.timing import one_thread, round_robin_medians

    g = torch.Generator().manual_seed(seed)
    inputs = {n: tuple(torch.randn(n, d, generator=g) for _ in range(3)) for n in ns}
    calls = {n: (lambda qkv=qkv: scaled_dot_product_attention(*qkv, return_weights=True))
             for n, qkv in inputs.items()}
    with one_thread():
        medians = round_robin_medians(calls, repeats=repeats)
    rows = []
    for n in ns:
        _, w = calls[n]()
        rows.append({"n": n, "flops": attention_flops(n, n, d), "score_bytes": w.numel() * w.element_size(),
                     "ms": medians[n] * 1e3})
    return rows
