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
        # chapter 03's printed tables
        "ch03.col.impl": {"en": "implementation", "zh": "实现"},
        "ch03.col.ms": {"en": "ms", "zh": "毫秒"},
        "ch03.col.naive": {"en": "naive", "zh": "朴素实现"},
        "ch03.col.stable": {"en": "stable", "zh": "稳定实现"},
        "ch03.col.entropy": {"en": "entropy", "zh": "熵"},
        "ch03.col.max": {"en": "largest weight", "zh": "最大权重"},
        # chapter 03's printed lines
        "ch03.matches_attnkit": {"en": "matches attnkit: {ok}", "zh": "与 attnkit 一致：{ok}"},
        "ch03.matches_torch": {"en": "matches PyTorch: {ok}", "zh": "与 PyTorch 一致：{ok}"},
        "ch03.soft_out": {
            "en": "softmax: output {out:.4f}, gradient {g}",
            "zh": "softmax：输出 {out:.4f}，梯度 {g}",
        },
        "ch03.hard_out": {
            "en": "argmax : output {out:.4f}, requires_grad = {rg} (no gradient at all)",
            "zh": "argmax：输出 {out:.4f}，requires_grad = {rg}（完全没有梯度）",
        },
        "ch03.bounded": {
            "en": "bounded: min(v) = {lo:g} <= {out:.4f} <= max(v) = {hi:g}",
            "zh": "有界：min(v) = {lo:g} <= {out:.4f} <= max(v) = {hi:g}",
        },
        "ch03.overflow": {
            "en": "{dtype:>8}: largest finite number {fmax:.5g}, so exp(x) overflows for x > {x:.2f}",
            "zh": "{dtype:>8}：最大有限值 {fmax:.5g}，因此 x > {x:.2f} 时 exp(x) 溢出",
        },
        "ch03.lse_naive": {"en": "log-sum-exp, naive : {v}", "zh": "log-sum-exp，朴素算法：{v}"},
        "ch03.lse_stable": {
            "en": "log-sum-exp, stable: {v:.4f}  torch: {w:.4f}",
            "zh": "log-sum-exp，稳定算法：{v:.4f}  torch：{w:.4f}",
        },
        "ch03.fill_1e9": {"en": "fill -1e9      : {v}", "zh": "填充 -1e9：{v}"},
        "ch03.half": {"en": "-1e9 as float16: {v}", "zh": "-1e9 转成 float16：{v}"},
        "ch03.both_masks": {"en": "scores + both masks: {v}", "zh": "分数 + 两个掩码：{v}"},
        "ch03.fp16_softmax": {
            "en": "softmax, float16  : {v} (should be all zeros)",
            "zh": "softmax（float16）：{v}（本应全为零）",
        },
        "ch03.bool_mask": {"en": "with a bool mask  : {v}", "zh": "改用布尔掩码：{v}"},
        "ch03.trace": {
            "en": "after x[{j}] = {xj:>4}: m = {m:>4}, l = {l:.6f}",
            "zh": "读入 x[{j}] = {xj:>4} 后：m = {m:>4}，l = {l:.6f}",
        },
        "ch03.equals_softmax": {"en": "equals softmax: {ok}", "zh": "与 softmax 一致：{ok}"},
        "ch03.chunks": {
            "en": "chunk_size = {c:<16} equals torch.softmax: {ok}",
            "zh": "chunk_size = {c:<16} 与 torch.softmax 一致：{ok}",
        },
        "ch03.merge_whole": {
            "en": "merge(a, b) == state of the whole row: {l} {m}",
            "zh": "merge(a, b) == 整行的状态：{l} {m}",
        },
        "ch03.lse_from_state": {
            "en": "logsumexp from (m, l): {ok}",
            "zh": "由 (m, l) 算出的 logsumexp：{ok}",
        },
        "ch03.two_blocks": {
            "en": "two blocks merged == PyTorch SDPA: {ok}",
            "zh": "两块合并的结果 == PyTorch SDPA：{ok}",
        },
        "ch03.eq_autograd": {"en": "equals autograd: {ok}", "zh": "与自动求导一致：{ok}"},
        "ch03.sym_rows": {
            "en": "symmetric: {sym}  rows sum to 0: {rows}",
            "zh": "对称：{sym}  每行之和为 0：{rows}",
        },
        "ch03.jnorm": {
            "en": "‖J‖_F = {a:.5f} (from the closed form), {b:.5f} (autograd)",
            "zh": "‖J‖_F = {a:.5f}（闭式表达式），{b:.5f}（自动求导）",
        },
        "ch03.temp_jnorm": {
            "en": "T = {T}: largest weight {w:.6f}, ‖J‖_F = {j:.2e}",
            "zh": "T = {T}：最大权重 {w:.6f}，‖J‖_F = {j:.2e}",
        },
        "ch03.impl.online": {"en": "online_softmax, chunk {n}", "zh": "online_softmax，分块大小 {n}"},
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
    ax_e.legend(fontsize=8)
    ax_e.grid(alpha=0.3)
    fig.tight_layout()
    return fig, data


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
    return Explorer(controls, lambda **v: draw_temperature(scores=scores, curve=curve, **v))
