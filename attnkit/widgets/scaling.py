"""Chapter 02's explorer: move d_k, scale or not, and watch the softmax saturate.

Left: the histogram of dot products q . k (or q . k / sqrt(d_k)) with the normal density of
the closed-form variance. Middle: one softmax row of 16 random keys, its largest weight and
the norm of its Jacobian. Right: the mean Jacobian norm against d_k, scaled and unscaled, with
the current setting marked. All numbers come from ``attnkit.experiments``.

``plot_partial_sums`` is the chapter's first picture: the running sum of q_i k_i over the first
j coordinates of a few random pairs, which wanders away from 0 like ±√j.
"""

from __future__ import annotations

import functools

import ipywidgets as W
import matplotlib.pyplot as plt
import torch

from attnkit import experiments as E
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register(
    {
        "scaling.dk": {"en": "d_k (head dimension)", "zh": "d_k（头维度）"},
        "scaling.mode": {"en": "scores", "zh": "分数"},
        "scaling.unscaled": {"en": "q·k (unscaled)", "zh": "q·k（不缩放）"},
        "scaling.scaled": {"en": "q·k / √d_k (scaled)", "zh": "q·k / √d_k（缩放）"},
        "scaling.hist_title": {
            "en": "scores: variance {var:.2f} measured, {theory:.2f} in theory",
            "zh": "分数：方差实测 {var:.2f}，理论 {theory:.2f}",
        },
        "scaling.score": {"en": "score", "zh": "分数"},
        "scaling.density": {"en": "density", "zh": "概率密度"},
        "scaling.measured": {"en": "measured", "zh": "实测"},
        "scaling.normal": {"en": "N(0, {theory:.2f})", "zh": "N(0, {theory:.2f})"},
        "scaling.row_title": {
            "en": "one softmax row: largest weight {top:.3f}, ‖J‖_F = {jn:.3f}",
            "zh": "一行 softmax：最大权重 {top:.3f}，‖J‖_F = {jn:.3f}",
        },
        "scaling.key": {"en": "key", "zh": "键"},
        "scaling.weight": {"en": "attention weight", "zh": "注意力权重"},
        "scaling.jac_title": {
            "en": "mean ‖J‖_F of the softmax ({n} rows)",
            "zh": "softmax 雅可比矩阵的平均 ‖J‖_F（{n} 行）",
        },
        "scaling.jac_norm": {"en": "Jacobian norm", "zh": "雅可比矩阵范数"},
        "scaling.now": {"en": "current setting", "zh": "当前设置"},
        "scaling.partial.title": {
            "en": "q·k summed one coordinate at a time ({pairs} random pairs, entries N(0, 1))",
            "zh": "逐个坐标累加 q·k（{pairs} 对随机向量，分量服从 N(0, 1)）",
        },
        "scaling.partial.terms": {"en": "coordinates summed so far, j", "zh": "已累加的坐标数 j"},
        "scaling.partial.sum": {"en": "q_1k_1 + … + q_jk_j", "zh": "q_1k_1 + … + q_jk_j"},
        "scaling.partial.band": {"en": "±√j and ±2√j: one and two standard deviations",
                                 "zh": "±√j 与 ±2√j：一倍和两倍标准差"},
    }
)

D_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SEQ_LEN = 16


N_ROWS = 128


@functools.lru_cache(maxsize=4)
def _curves(n_rows: int = N_ROWS, seed: int = 0) -> dict:
    """The mean Jacobian norm against d_k, unscaled and scaled (computed once, then cached)."""
    return {
        scaled: E.saturation_sweep(D_KS, SEQ_LEN, n_rows, scaled=scaled, seed=seed)["jacobian_norm"]
        for scaled in (False, True)
    }


@functools.lru_cache(maxsize=2 * len(D_KS))
def _snapshot(d_k: int, scaled: bool, n_samples: int, seed: int) -> dict:
    """``attnkit.experiments.dk_snapshot`` of one setting (about 25 ms: computed once, cached)."""
    return E.dk_snapshot(
        d_k, scaled, n_samples=n_samples, seq_len=SEQ_LEN, n_rows=N_ROWS, bins=40, seed=seed
    )


def draw_scaling(
    d_k: int, scaled: bool, curves: dict | None = None, n_samples: int = 5_000, seed: int = 0
):
    """The figure and its data (``attnkit.experiments.dk_snapshot``) for one setting."""
    data = dict(_snapshot(d_k, bool(scaled), n_samples, seed))
    fig, (ax_h, ax_r, ax_j) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax_h.stairs(
        data["density"].tolist(),
        data["edges"].tolist(),
        fill=True,
        alpha=0.6,
        label=t("scaling.measured"),
    )
    ax_h.plot(
        data["centers"].tolist(),
        data["pdf"].tolist(),
        "k-",
        lw=1.5,
        label=t("scaling.normal", theory=data["theory"]),
    )
    ax_h.set_title(t("scaling.hist_title", var=data["var"], theory=data["theory"]), fontsize=10)
    ax_h.set_xlabel(t("scaling.score"))
    ax_h.set_ylabel(t("scaling.density"))
    ax_h.legend(fontsize=8, loc="upper right")  # where "best" puts it for every d_k, found once

    row = data["row"]
    colors = ["tab:red" if i == int(row.argmax()) else "tab:blue" for i in range(len(row))]
    ax_r.bar(range(len(row)), row.tolist(), color=colors)
    ax_r.set_ylim(0, 1)
    ax_r.set_title(
        t("scaling.row_title", top=data["max_weight"], jn=data["jacobian_norm"]), fontsize=10
    )
    ax_r.set_xlabel(t("scaling.key"))
    ax_r.set_ylabel(t("scaling.weight"))

    if curves is not None:
        for s, ys in curves.items():
            ax_j.plot(
                D_KS, ys, marker="o", ms=3, label=t("scaling.scaled" if s else "scaling.unscaled")
            )
        data["curves"] = curves
    ax_j.plot([d_k], [data["mean_jacobian_norm"]], "r*", ms=14, label=t("scaling.now"))
    ax_j.set_xscale("log", base=2)
    ax_j.minorticks_off()
    ax_j.set_ylim(0, None)
    ax_j.set_xlabel("d_k")
    ax_j.set_ylabel(t("scaling.jac_norm"))
    ax_j.set_title(t("scaling.jac_title", n=N_ROWS), fontsize=10)
    ax_j.legend(fontsize=8, loc="lower left")  # ditto; the star never goes there
    ax_j.grid(alpha=0.3)
    fig.tight_layout()
    return fig, data


def _animated(fig):
    """What update_scaling changes, redrawn over a kept background (the Explorer blits): the
    histogram's axes follow the scores' spread, its legend the variance."""
    ax_h, ax_r, ax_j = fig.axes[:3]
    return [*ax_h.patches, *ax_h.lines, ax_h.title, ax_h.legend_, ax_h.xaxis, ax_h.yaxis,
            *ax_r.patches, ax_r.title, ax_j.lines[-1]]


def update_scaling(
    fig, d_k: int, scaled: bool, curves: dict | None = None, n_samples: int = 5_000, seed: int = 0
):
    """Move the artists of a figure made by ``draw_scaling`` to another setting."""
    data = dict(_snapshot(d_k, bool(scaled), n_samples, seed))
    ax_h, ax_r, ax_j = fig.axes[:3]
    ax_h.patches[0].set_data(data["density"].tolist(), data["edges"].tolist())
    ax_h.lines[0].set_data(data["centers"].tolist(), data["pdf"].tolist())
    ax_h.legend_.get_texts()[1].set_text(t("scaling.normal", theory=data["theory"]))
    ax_h.title.set_text(t("scaling.hist_title", var=data["var"], theory=data["theory"]))
    ax_h.relim()
    ax_h.autoscale_view()
    row = data["row"]
    top = int(row.argmax())
    for i, (bar, height) in enumerate(zip(ax_r.patches, row.tolist(), strict=True)):
        bar.set_height(height)
        bar.set_facecolor("tab:red" if i == top else "tab:blue")
    ax_r.title.set_text(t("scaling.row_title", top=data["max_weight"], jn=data["jacobian_norm"]))
    if curves is not None:
        data["curves"] = curves
    ax_j.lines[-1].set_data([d_k], [data["mean_jacobian_norm"]])
    return data


def scaling_explorer(d_k: int = 64, scaled: bool = False) -> Explorer:
    """A d_k slider and a scaled/unscaled toggle over ``draw_scaling``."""
    if d_k not in D_KS:
        raise ValueError(f"d_k must be one of {D_KS}, got {d_k}")
    curves = _curves()
    for dk in D_KS:  # every setting's numbers now (about 0.5 s), so that a redraw only draws
        for s in (False, True):
            _snapshot(dk, s, 5_000, 0)
    style = {"description_width": "initial"}
    controls = {
        "d_k": W.SelectionSlider(
            options=list(D_KS),
            value=d_k,
            continuous_update=False,  # redraw when the slider is released
            description=t("scaling.dk"),
            style=style,
        ),
        "scaled": W.ToggleButtons(
            options=[(t("scaling.unscaled"), False), (t("scaling.scaled"), True)],
            value=bool(scaled),
            description=t("scaling.mode"),
            style=style,
        ),
    }
    return Explorer(controls, lambda **v: draw_scaling(curves=curves, **v),
                    update=lambda fig, **v: update_scaling(fig, curves=curves, **v),
                    animated=_animated)


def partial_sums(d_k: int = 1024, pairs: int = 5, seed: int = 0) -> torch.Tensor:
    """(pairs, d_k): entry [p, j - 1] is q_1 k_1 + ... + q_j k_j for random pair p (entries N(0, 1))."""
    if not isinstance(d_k, int) or d_k < 1:
        raise ValueError(f"d_k must be a positive int, got {d_k!r}")
    if not isinstance(pairs, int) or not 1 <= pairs <= 10:
        raise ValueError(f"pairs must be an int in 1..10 (one colour each), got {pairs!r}")
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(pairs, d_k, generator=g), torch.randn(pairs, d_k, generator=g)
    return (q * k).cumsum(dim=-1)                                     # running sums over coordinates


def plot_partial_sums(d_k: int = 1024, pairs: int = 5, seed: int = 0):
    """Figure: the running sums of ``partial_sums`` against j, inside the bands ±√j and ±2√j."""
    sums = partial_sums(d_k, pairs, seed)
    j = torch.arange(1, d_k + 1, dtype=torch.float32)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.fill_between(j, -2 * j.sqrt(), 2 * j.sqrt(), color="0.92", label=t("scaling.partial.band"))
    ax.fill_between(j, -j.sqrt(), j.sqrt(), color="0.82")
    for row in sums:
        ax.plot(j, row, lw=1)
    ax.axhline(0, color="0.4", lw=0.6)
    ax.set_xlim(1, d_k)
    ax.set_xlabel(t("scaling.partial.terms"))
    ax.set_ylabel(t("scaling.partial.sum"))
    ax.set_title(t("scaling.partial.title", pairs=pairs), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
