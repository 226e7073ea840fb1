"""Chapter 03's explorer: a temperature slider over one row of scores.

Left: softmax(scores / T) as bars, with the T -> 0 limit (the argmax) outlined. Right: the
entropy of the distribution against T, from 0 (one-hot) up to log n (uniform), with the
current T marked. All numbers come from ``attnkit.experiments``.
"""

from __future__ import annotations

import math

import ipywidgets as W
import matplotlib.pyplot as plt
import torch

from attnkit import experiments as E
from attnkit.i18n import register, t
from attnkit.widgets import Explorer

register(
    {
        "softmaxw.temperature": {"en": "temperature T", "zh": "温度 T"},
        "softmaxw.probs_title": {
            "en": "softmax(scores / T), T = {temp:.2f}: largest weight {top:.3f}",
            "zh": "softmax(分数 / T)，T = {temp:.2f}：最大权重 {top:.3f}",
        },
        "softmaxw.position": {"en": "position (score)", "zh": "位置（分数）"},
        "softmaxw.weight": {"en": "weight", "zh": "权重"},
        "softmaxw.argmax": {"en": "T → 0 limit (argmax)", "zh": "T → 0 的极限（argmax）"},
        "softmaxw.entropy_title": {
            "en": "entropy {h:.3f} nats (maximum log n = {hmax:.3f})",
            "zh": "熵 {h:.3f} 奈特（最大值 log n = {hmax:.3f}）",
        },
        "softmaxw.entropy": {"en": "entropy (nats)", "zh": "熵（奈特）"},
        "softmaxw.uniform": {"en": "uniform: log n", "zh": "均匀分布：log n"},
        "softmaxw.now": {"en": "current T", "zh": "当前 T"},
    }
)

DEFAULT_SCORES = (2.3, 9.1, 0.5, 4.0, 6.2, -1.0, 3.3, 8.5)
TEMPERATURES = tuple(10 ** (i / 10) for i in range(-20, 21))  # 0.01 .. 100, for the entropy curve


def draw_temperature(temperature: float, scores=DEFAULT_SCORES, curve: dict | None = None):
    """The figure and its data (``attnkit.experiments.temperature_snapshot`` plus the entropy
    curve ``temperature_sweep(scores, TEMPERATURES)``, which may be passed in precomputed)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    data = E.temperature_snapshot(s, temperature)
    curve = curve or E.temperature_sweep(s, TEMPERATURES)
    data["curve_t"], data["curve_entropy"] = curve["temperature"], curve["entropy"]

    fig, (ax_p, ax_e) = plt.subplots(1, 2, figsize=(11, 3.8))
    n = len(s)
    ax_p.bar(range(n), data["probs"].tolist(), color="tab:blue")
    ax_p.bar(
        range(n),
        data["hard"].tolist(),
        fill=False,
        edgecolor="tab:red",
        lw=1.5,
        label=t("softmaxw.argmax"),
    )
    ax_p.set_xticks(range(n))
    ax_p.set_xticklabels([f"{i}\n({v:g})" for i, v in enumerate(s.tolist())], fontsize=8)
    ax_p.set_ylim(0, 1.05)
    ax_p.set_xlabel(t("softmaxw.position"))
    ax_p.set_ylabel(t("softmaxw.weight"))
    ax_p.set_title(t("softmaxw.probs_title", temp=temperature, top=data["max_weight"]), fontsize=10)
    ax_p.legend(fontsize=8, loc="upper left")

    ax_e.plot(curve["temperature"], curve["entropy"], "-", color="tab:green")
    ax_e.axhline(data["max_entropy"], color="gray", ls="--", label=t("softmaxw.uniform"))
    ax_e.plot([temperature], [data["entropy"]], "r*", ms=14, label=t("softmaxw.now"))
    ax_e.set_xscale("log")
    ax_e.minorticks_off()  # fewer tick texts to lay out: a faster redraw
    ax_e.set_ylim(0, math.log(n) * 1.1 if n > 1 else 1)
    ax_e.set_xlabel("T")
    ax_e.set_ylabel(t("softmaxw.entropy"))
    ax_e.set_title(
        t("softmaxw.entropy_title", h=data["entropy"], hmax=data["max_entropy"]), fontsize=10
    )
    ax_e.legend(fontsize=8, loc="lower left")  # where "best" puts it for every T, found once
    ax_e.grid(alpha=0.3)
    fig.tight_layout()
    return fig, data


def _animated(fig):
    """What update_temperature changes, redrawn over a kept background (the Explorer blits);
    the legends too: they go over the bars and the star."""
    ax_p, ax_e = fig.axes[0], fig.axes[1]
    return [*ax_p.patches, ax_p.title, ax_p.legend_, ax_e.lines[-1], ax_e.title, ax_e.legend_]


def update_temperature(fig, temperature: float, scores=DEFAULT_SCORES, curve: dict | None = None):
    """Move the artists of a figure made by ``draw_temperature`` to another temperature."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    data = E.temperature_snapshot(s, temperature)
    curve = curve or E.temperature_sweep(s, TEMPERATURES)
    data["curve_t"], data["curve_entropy"] = curve["temperature"], curve["entropy"]
    ax_p, ax_e = fig.axes[0], fig.axes[1]
    for bar, height in zip(ax_p.patches[: len(s)], data["probs"].tolist(), strict=True):
        bar.set_height(height)
    ax_p.title.set_text(t("softmaxw.probs_title", temp=temperature, top=data["max_weight"]))
    ax_e.lines[-1].set_data([temperature], [data["entropy"]])
    ax_e.title.set_text(t("softmaxw.entropy_title", h=data["entropy"], hmax=data["max_entropy"]))
    return data


def temperature_explorer(temperature: float = 1.0, scores=DEFAULT_SCORES) -> Explorer:
    """A logarithmic temperature slider (0.01 to 100) over ``draw_temperature``."""
    controls = {
        "temperature": W.FloatLogSlider(
            value=temperature,
            base=10,
            min=-2,
            max=2,
            step=0.05,
            continuous_update=False,  # redraw when the slider is released, not at every pixel
            description=t("softmaxw.temperature"),
            style={"description_width": "initial"},
        )
    }
    curve = E.temperature_sweep(torch.as_tensor(scores, dtype=torch.float64), TEMPERATURES)
    return Explorer(controls, lambda **v: draw_temperature(scores=scores, curve=curve, **v),
                    update=lambda fig, **v: update_temperature(fig, scores=scores, curve=curve, **v),
                    animated=_animated)
