"""Chapter 09's explorer and experiments: random features, low rank, landmarks, a recall probe.

Pure, seeded functions first (each tested on its own), then the figures drawn from them:

- ``rf_attention(m, kind, scale, orthogonal)``: exact softmax attention weights of a fixed
  example next to the random-feature estimate, and the error; ``rf_explorer()`` draws them.
- ``lemma2_monte_carlo(...)``: the mean squared error of the softmax-kernel estimators, measured,
  next to Lemma 2's closed form.
- ``attention_spectrum(...)``: singular values of a softmax attention matrix (the Linformer view).
- ``nystrom_errors(...)``: relative error of Nystrom attention against the number of landmarks.
- ``recall_probe(...)``: how much a fixed-size linear-attention state recalls of stored pairs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch

import attnkit.linear as L
from attnkit import viz
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register({
    "linear.w.m": {"en": "features m", "zh": "特征数 m"},
    "linear.w.kind": {"en": "feature map", "zh": "特征映射"},
    "linear.w.positive": {"en": "positive (exp)", "zh": "正随机特征（exp）"},
    "linear.w.trig": {"en": "trigonometric (cos, sin)", "zh": "三角函数特征（cos、sin）"},
    "linear.w.scale": {"en": "input scale", "zh": "输入尺度"},
    "linear.w.orthogonal": {"en": "orthogonal features", "zh": "正交随机特征"},
    "linear.w.exact": {"en": "exact softmax weights (colours 0 to {vmax:.2f})",
                       "zh": "精确的 softmax 权重（颜色范围 0 到 {vmax:.2f}）"},
    "linear.w.approx": {"en": "random-feature estimate, m = {m}", "zh": "随机特征估计，m = {m}"},
    "linear.w.error": {"en": "|error|, relative {err:.3g}", "zh": "|误差|，相对误差 {err:.3g}"},
    "linear.w.key": {"en": "key j", "zh": "键 j"},
    "linear.w.query": {"en": "query i", "zh": "查询 i"},
    "linear.fig.features": {"en": "number of random features m", "zh": "随机特征数 m"},
    "linear.fig.mse": {"en": "mean squared error of exp(x·y)", "zh": "exp(x·y) 估计的均方误差"},
    "linear.fig.measured": {"en": "{kind}, measured", "zh": "{kind}，实测"},
    "linear.fig.theory": {"en": "{kind}, Lemma 2", "zh": "{kind}，引理 2"},
    "linear.fig.mse_title": {"en": "Lemma 2 by Monte Carlo, |x| = |y| = {r}", "zh": "用蒙特卡洛方法验证引理 2，|x| = |y| = {r}"},
    "linear.fig.rank": {"en": "number of singular values kept", "zh": "保留的奇异值个数"},
    "linear.fig.cum": {"en": "share of the singular values' sum", "zh": "占奇异值之和的比例"},
    "linear.fig.spectrum_title": {"en": "spectrum of a {n} × {n} softmax attention matrix",
                                  "zh": "{n} × {n} softmax 注意力矩阵的奇异值谱"},
    "linear.fig.scale": {"en": "input scale {s}", "zh": "输入尺度 {s}"},
    "linear.fig.landmarks": {"en": "number of landmarks m", "zh": "地标点个数 m"},
    "linear.fig.rel_error": {"en": "relative error of the output", "zh": "输出的相对误差"},
    "linear.fig.nystrom_title": {"en": "Nyström attention, N = {n}", "zh": "Nyström 注意力，N = {n}"},
    "linear.fig.seq_len": {"en": "sequence length N", "zh": "序列长度 N"},
    "linear.fig.ms": {"en": "time (ms, one thread)", "zh": "时间（ms，单线程）"},
    "linear.fig.time_title": {"en": "forward time, one head of {d}", "zh": "前向计算时间，单个头，维度 {d}"},
    "linear.fig.pairs": {"en": "key-value pairs stored", "zh": "存入的键值对个数"},
    "linear.fig.recall": {"en": "recall (cosine of the read value)", "zh": "召回（读出值的余弦相似度）"},
    "linear.fig.recall_title": {"en": "what a {m} × {m} state can recall", "zh": "{m} × {m} 的状态能记住多少"},
    "linear.fig.softmax": {"en": "softmax attention (keeps every pair)", "zh": "softmax 注意力（保留所有键值对）"},
    "linear.fig.linear": {"en": "linear attention state", "zh": "线性注意力的状态"},
})

N_TOKENS, HEAD_DIM = 64, 16
M_OPTIONS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


# ---------------------------------------------------------------- random features


@lru_cache(maxsize=None)
def example_qk(seed: int = 0):
    """The fixed q, k (64, 16) with unit-variance entries that the explorer scales."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N_TOKENS, HEAD_DIM, generator=g, dtype=torch.float64),
            torch.randn(N_TOKENS, HEAD_DIM, generator=g, dtype=torch.float64))


@lru_cache(maxsize=None)
def _projection(m: int, orthogonal: bool, seed: int):
    """Random features are drawn once per (m, orthogonal, seed) and reused on every redraw."""
    draw = L.orthogonal_random_features if orthogonal else L.iid_random_features
    return draw(m, HEAD_DIM, seed=seed, dtype=torch.float64)


@lru_cache(maxsize=None)
def _exact(scale: float, seed: int):
    q, k = example_qk(seed)
    return torch.softmax(scale * q @ (scale * k).T / math.sqrt(HEAD_DIM), dim=-1)  # (N, N)


def rf_attention(m: int, kind: str = "positive", scale: float = 0.5, orthogonal: bool = True,
                 seed: int = 0, feature_seed: int | None = None) -> dict:
    """Exact softmax weights of ``scale * q``, ``scale * k`` and their random-feature estimate.

    The estimate is the Performer's: A_ij = phi(q_i).phi(k_j) with phi = ``favor_features`` of
    inputs scaled by d^-1/4, each row divided by its sum. Returns ``exact``, ``approx`` (N, N),
    ``error`` = |approx - exact| and ``rel`` = ||approx - exact||_F / ||exact||_F.
    ``feature_seed`` draws other features for the same q, k (default: ``seed + 1``).
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    q, k = example_qk(seed)
    w = _projection(int(m), bool(orthogonal), seed + 1 if feature_seed is None else int(feature_seed))
    s = scale * HEAD_DIM ** -0.25
    fq = L.favor_features(q * s, w, kind, stabilise=True)  # per-query factor: cancels in the rows
    fk = L.favor_features(k * s, w, kind)
    a = fq @ fk.T  # (N, N)
    approx = a / a.sum(-1, keepdim=True)
    exact = _exact(float(scale), seed)
    err = (approx - exact).abs()
    rel = (torch.linalg.norm(approx - exact) / torch.linalg.norm(exact)).item()
    return {"exact": exact, "approx": approx, "error": err, "rel": rel, "m": int(m), "kind": kind}


def _rf_draw(m, kind, scale, orthogonal):
    data = rf_attention(m, kind, scale, orthogonal)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    vmax = float(data["exact"].max())
    ims = []
    for ax, key in zip(axes, ("exact", "approx", "error"), strict=True):
        ims.append(ax.imshow(data[key].numpy(), cmap="viridis" if key != "error" else "magma",
                             vmin=0, vmax=vmax, interpolation="nearest"))
        ax.set_xlabel(t("linear.w.key"), fontsize=8)
        ax.set_xticks([])  # no tick labels: text is most of a redraw's time; one shared colour scale
        ax.set_yticks([])
    axes[0].set_ylabel(t("linear.w.query"), fontsize=8)
    fig.subplots_adjust(left=0.03, right=0.96, bottom=0.08, top=0.9, wspace=0.2)
    for ax, im in zip(axes, ims, strict=True):  # one scale, 0 to the largest exact weight, for all three
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    _titles(axes, data)
    fig._attnkit_ims = ims
    return fig, data


def _titles(axes, data):
    axes[0].set_title(t("linear.w.exact", vmax=float(data["exact"].max())), fontsize=9)
    axes[1].set_title(t("linear.w.approx", m=data["m"]), fontsize=9)
    axes[2].set_title(t("linear.w.error", err=data["rel"]), fontsize=9)


def _rf_update(fig, m, kind, scale, orthogonal):
    data = rf_attention(m, kind, scale, orthogonal)
    vmax = float(data["exact"].max())
    for im, key in zip(fig._attnkit_ims, ("exact", "approx", "error"), strict=True):
        im.set_data(data[key].numpy())
        im.set_clim(0, vmax)
    _titles(fig.axes[:3], data)
    return data


def rf_explorer(m: int = 16, kind: str = "positive", scale: float = 0.5, orthogonal: bool = True) -> Explorer:
    """Sliders: number of features, feature map, input scale; a toggle for orthogonal features."""
    controls = {
        "m": W.SelectionSlider(options=list(M_OPTIONS), value=m, description=t("linear.w.m")),
        "kind": W.Dropdown(options=[(t("linear.w.positive"), "positive"), (t("linear.w.trig"), "trig")],
                           value=kind, description=t("linear.w.kind")),
        "scale": W.FloatSlider(value=scale, min=0.25, max=2.0, step=0.25, description=t("linear.w.scale")),
        "orthogonal": W.Checkbox(value=orthogonal, description=t("linear.w.orthogonal")),
    }
    return Explorer(controls, _rf_draw, update=_rf_update,
                    layout=lambda m, kind, scale, orthogonal: float(scale),  # the colorbars' scale: one figure each
                    animated=lambda fig: [*fig._attnkit_ims, *(ax.title for ax in fig.axes[:3])])


def lemma2_mse(x: torch.Tensor, y: torch.Tensor, m: int, kind: str) -> float:
    """Lemma 2 (Choromanski et al. 2021), iid features: MSE of the positive / trig estimator of SM(x, y)."""
    sm = math.exp(float(x @ y))
    s, dxy = float((x + y) @ (x + y)), float((x - y) @ (x - y))
    if kind == "positive":
        return math.exp(s) * sm ** 2 * (1 - math.exp(-s)) / m
    if kind == "trig":
        return math.exp(s) / sm ** 2 * (1 - math.exp(-dxy)) ** 2 / (2 * m)
    raise ValueError(f"kind must be 'positive' or 'trig', got {kind!r}")


def lemma2_monte_carlo(x: torch.Tensor, y: torch.Tensor, m: int, kind: str, orthogonal: bool = False,
                       draws: int = 400, seed: int = 0) -> float:
    """The measured MSE of phi(x).phi(y) against exp(x.y) over ``draws`` independent feature draws."""
    exact = math.exp(float(x @ y))
    draw = L.orthogonal_random_features if orthogonal else L.iid_random_features
    xy = torch.stack([x, y])
    errs = []
    for i in range(draws):
        f = L.favor_features(xy, draw(m, x.shape[0], seed=seed * 100_003 + i, dtype=x.dtype), kind)
        errs.append((float(f[0] @ f[1]) - exact) ** 2)
    return float(np.mean(errs))


def matched_projections(m: int, d: int, draws: int, seed: int = 0):
    """``draws`` iid projections (draws, m, d), rows w ~ N(0, I_d), and their orthogonal twins:
    each block of d rows orthogonalised (the Q of a sign-fixed QR: Haar directions) and given
    back the lengths of the iid rows (chi(d), independent of Q), so each twin is an orthogonal
    random-feature draw made from the very same Gaussian numbers: matched pairs."""
    if min(m, d, draws) < 1:
        raise ValueError(f"m, d and draws must be >= 1, got m={m}, d={d}, draws={draws}")
    g = torch.randn(draws, m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    twins = []
    for a in range(0, m, d):
        block = g[:, a:a + d]  # (draws, b, d), b <= d
        qm, r = torch.linalg.qr(block.transpose(1, 2))  # (draws, d, b)
        qm = qm * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
        twins.append(qm.transpose(1, 2) * block.norm(dim=-1, keepdim=True))
    return g, torch.cat(twins, dim=1)


def kernel_squared_errors(x: torch.Tensor, y: torch.Tensor, projections: torch.Tensor, kind: str) -> torch.Tensor:
    """(phi(x).phi(y) - exp(x.y))^2 for each projection of ``projections`` (draws, m, d) -> (draws,),
    phi = ``favor_features`` with that projection (all draws in one call)."""
    draws, m, d = projections.shape
    f = L.favor_features(torch.stack([x, y]), projections.reshape(draws * m, d).to(x.dtype), kind)  # (2, F)
    est = (f[0] * f[1]).reshape(-1, draws, m).sum(dim=(0, 2)) * draws  # undo 1/(draws m): 1/m per draw
    return (est - math.exp(float(x @ y))) ** 2


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """The sample mean and its Monte Carlo standard error, std / sqrt(n)."""
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def pair_at_angle(d: int, r: float, cos: float, seed: int = 0):
    """Two vectors of length r in R^d with the given cosine between them."""
    g = torch.Generator().manual_seed(seed)
    u, w = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    u = u / u.norm()
    w = w - (w @ u) * u
    w = w / w.norm()
    return r * u, r * (cos * u + math.sqrt(max(0.0, 1 - cos * cos)) * w)


def lemma2_figure(ms, measured: dict, theory: dict, r: float):
    """Measured and closed-form MSE against m for each estimator (dicts: label -> list)."""
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    for label, ys in measured.items():
        line, = ax.loglog(ms, ys, "o", base=2, label=t("linear.fig.measured", kind=label))
        if label in theory:
            ax.loglog(ms, theory[label], "-", base=2, color=line.get_color(), label=t("linear.fig.theory", kind=label))
    ax.set_xlabel(t("linear.fig.features"))
    ax.set_ylabel(t("linear.fig.mse"))
    ax.set_title(t("linear.fig.mse_title", r=r))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- low rank


def attention_spectrum(n: int = 256, d: int = 64, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Normalised cumulative singular values of softmax(s q k^T / sqrt(d)), q, k ~ N(0, 1): (n,)."""
    g = torch.Generator().manual_seed(seed)
    q, k = (scale * torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
    sv = torch.linalg.svdvals(torch.softmax(q @ k.T / math.sqrt(d), -1))
    return torch.cumsum(sv, 0) / sv.sum()


def spectrum_figure(curves: dict, n: int):
    """curves: input scale -> cumulative spectrum."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for s, c in curves.items():
        ax.plot(range(1, len(c) + 1), c.numpy(), label=t("linear.fig.scale", s=s))
    ax.set_xlabel(t("linear.fig.rank"))
    ax.set_ylabel(t("linear.fig.cum"))
    ax.set_title(t("linear.fig.spectrum_title", n=n))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- landmarks


def smooth_qkv(n: int = 256, d: int = 32, noise: float = 0.0, seed: int = 0):
    """Inputs with structure: q, k, v that vary slowly along the sequence (random Fourier curves),
    plus i.i.d. noise of standard deviation ``noise`` per token; (n, d) each."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]  # (n, 1)
    out = []
    for _ in range(3):
        freq = torch.randint(1, 4, (1, d), generator=g).double()
        phase = torch.rand(1, d, generator=g, dtype=torch.float64) * 2 * math.pi
        amp = torch.randn(1, d, generator=g, dtype=torch.float64)
        out.append(amp * torch.sin(2 * math.pi * freq * pos + phase)
                   + noise * torch.randn(n, d, generator=g, dtype=torch.float64))
    return tuple(out)


def noise_qkv(n: int = 256, d: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))


def nystrom_errors(q, k, v, ms, iterations: int | None = 6) -> list[float]:
    """Relative error ||nystrom - softmax|| / ||softmax|| for each number of landmarks in ``ms``
    (``iterations=None``: the exact pseudo-inverse)."""
    ref = L.softmax_attention(q, k, v)
    errs = []
    for m in ms:
        out = L.nystrom_attention(q, k, v, m, pinv_iterations=iterations or 0, exact_pinv=iterations is None)
        errs.append((torch.linalg.norm(out - ref) / torch.linalg.norm(ref)).item())
    return errs


def _loglog_curves(xs, curves: dict, xlabel: str, ylabel: str, title: str):
    """One log-log axes, a curve per ``label -> ys`` of ``curves``."""
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    for i, (label, ys) in enumerate(curves.items()):  # nine methods in chapter 09's timing plot
        ax.loglog(xs, ys, marker="o", base=2, label=label, **viz.line_style(i))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def nystrom_figure(ms, curves: dict, n: int):
    """curves: label -> errors."""
    return _loglog_curves(ms, curves, t("linear.fig.landmarks"), t("linear.fig.rel_error"),
                          t("linear.fig.nystrom_title", n=n))


# ---------------------------------------------------------------- recall


def recall_probe(n_pairs: int, d: int = 16, seed: int = 0, temperature: float = 0.05) -> dict:
    """Store ``n_pairs`` random (key, value) pairs, then query each key; how well is its value read?

    Linear attention (identity features, the cleanest case) stores them in the d x d state
    ``S = sum_j k_j v_j^T`` and reads ``S^T q``; softmax attention keeps every pair (a KV cache of
    2 d n numbers) and reads with a sharp softmax (``temperature``). Returns the mean cosine
    between the read and the stored value for each, and the state's size in numbers.
    """
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(n_pairs, d, generator=g, dtype=torch.float64)
    k = k / k.norm(dim=1, keepdim=True)
    v = torch.randn(n_pairs, d, generator=g, dtype=torch.float64)
    state = k.T @ v  # (d, d): the whole memory of linear attention
    read_linear = k @ state  # query with the stored keys
    read_softmax = torch.softmax(k @ k.T / temperature, -1) @ v

    def cos(a, b):
        return torch.nn.functional.cosine_similarity(a, b, dim=1).mean().item()

    return {"linear": cos(read_linear, v), "softmax": cos(read_softmax, v), "state_numbers": d * d,
            "cache_numbers": 2 * d * n_pairs}


def recall_figure(pairs, linear, softmax, d: int):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogx(pairs, softmax, "s-", base=2, label=t("linear.fig.softmax"))
    ax.semilogx(pairs, linear, "o-", base=2, label=t("linear.fig.linear"))
    ax.axvline(d, color="grey", ls=":", lw=1)
    ax.set_xlabel(t("linear.fig.pairs"))
    ax.set_ylabel(t("linear.fig.recall"))
    ax.set_title(t("linear.fig.recall_title", m=d))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def time_figure(ns, times_ms: dict, d: int):
    """times_ms: label -> list of milliseconds (one per N)."""
    return _loglog_curves(ns, times_ms, t("linear.fig.seq_len"), t("linear.fig.ms"),
                          t("linear.fig.time_title", d=d))
