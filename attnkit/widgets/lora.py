"""Chapter 10's explorer and figures: the teacher/student LoRA runs and the head kinds' dependencies.

Chapter 10's explorer and figures: the teacher/student LoRA runs, computed once, and the
dependency pictures of LoRASelfAttention's head kinds.

``run_view(experiment, placement, rank, alpha)`` is the pure function behind the explorer: it
selects a run of ``attnkit.lora.run_budget_experiment`` (never trains) and returns its loss
curve, recovered fraction, and the singular values of its learned update next to the teacher's.
``lora_explorer(experiment)`` draws it; a redraw only moves artists of a kept figure.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch

from attnkit import viz
from attnkit.i18n import register, t
from attnkit.lora import PROJECTIONS, visible_keys
from attnkit.widgets import Explorer

register({
    "lora.w.rank": {"en": "rank r", "zh": "秩 r"},
    "lora.w.alpha": {"en": "alpha", "zh": "alpha"},
    "lora.w.where": {"en": "LoRA on", "zh": "LoRA 加在"},
    "lora.w.all": {"en": "q, k, v, o", "zh": "q、k、v、o"},
    "lora.w.loss_title": {"en": "held-out loss ({n} trainable)", "zh": "留出集损失（{n} 个可训练参数）"},
    "lora.w.step": {"en": "training step", "zh": "训练步数"},
    "lora.w.this_run": {"en": "LoRA on {where}, r = {r}, alpha = {alpha}", "zh": "LoRA 加在 {where}，r = {r}，alpha = {alpha}"},
    "lora.w.full": {"en": "full fine-tuning", "zh": "全量微调"},
    "lora.w.recovered_title": {"en": "recovered fraction of the gap", "zh": "缩小差距的比例"},
    "lora.w.sv_title": {"en": "singular values of the update", "zh": "更新矩阵的奇异值"},
    "lora.w.sv_index": {"en": "index", "zh": "序号"},
    "lora.w.sv_legend": {"en": "solid: learned · dotted: teacher", "zh": "实线：学到的 · 点线：教师的"},
    "lora.fig.budget_title": {"en": "equal budgets: recovered fraction of the gap",
                              "zh": "相同参数预算下：缩小差距的比例"},
    "lora.fig.params": {"en": "trainable parameters", "zh": "可训练参数个数"},
    "lora.fig.recovered": {"en": "recovered fraction", "zh": "缩小差距的比例"},
    "lora.fig.sim_title": {"en": "subspace similarity φ(A_r={r1}, A_r={r2}, i, j), W_{p}",
                           "zh": "子空间相似度 φ(A_r={r1}, A_r={r2}, i, j)，W_{p}"},
    "lora.fig.dep_local": {"en": "local heads, W = {w}{causal}", "zh": "局部头，W = {w}{causal}"},
    "lora.fig.dep_global": {"en": "global heads{causal}, b = {b}", "zh": "全局头{causal}，b = {b}"},
    "lora.fig.causal": {"en": ", causal", "zh": "，因果"},
})


def placement_label(placement) -> str:
    placement = tuple(placement)
    return t("lora.w.all") if placement == PROJECTIONS else "+".join(placement)


def run_view(experiment: dict, placement, rank: int, alpha: float) -> dict:
    """The numbers the explorer shows for one run (selected, never trained).

    Returns ``steps`` and ``losses`` (the held-out loss curve), ``full_losses`` (full
    fine-tuning's, same steps), ``recovered``, ``full_recovered``, ``trainable``, and
    ``singular`` {p: (learned update's top singular values, teacher's D_p's)} for each adapted p.
    """
    key = (tuple(placement), int(rank), alpha)
    if key not in experiment["runs"]:
        raise ValueError(f"no run for placement={key[0]}, rank={key[1]}, alpha={key[2]}; "
                         f"the experiment has {sorted({k[1] for k in experiment['runs']})} ranks and "
                         f"{sorted({k[2] for k in experiment['runs']})} alphas")
    run, full = experiment["runs"][key], experiment["full"]
    every = experiment.get("eval_every", 5)
    singular = {}
    for p, delta in run["delta"].items():
        learned = torch.linalg.svdvals(delta.double())[:8]
        teacher = torch.linalg.svdvals(experiment["true_delta"][p].double())[:8]
        singular[p] = (learned, teacher)
    return {"steps": [every * i for i in range(len(run["losses"]))], "losses": run["losses"],
            "full_losses": full["losses"], "recovered": run["recovered"], "full_recovered": full["recovered"],
            "trainable": run["trainable"], "singular": singular}


def _limits(experiment) -> dict:
    """Axis limits that hold every run of the experiment, so that a redraw never moves an axis."""
    losses = [v for r in (*experiment["runs"].values(), experiment["full"]) for v in r["losses"]]
    recovered = [r["recovered"] for r in experiment["runs"].values()]
    top_sv = max(max(torch.linalg.svdvals(d.double())[0].item() for d in r["delta"].values())
                 for r in experiment["runs"].values())
    top_sv = max(top_sv, *(torch.linalg.svdvals(d.double())[0].item() for d in experiment["true_delta"].values()))
    return {"loss": (min(losses) * 0.8, max(losses) * 1.2), "recovered": (min(0.0, *recovered) - 0.05, 1.1),
            "sv": (-0.05 * top_sv, 1.1 * top_sv)}


def _learned(data, p):
    learned = data["singular"][p][0] if p in data["singular"] else torch.zeros(8)
    return np.pad(learned.numpy(), (0, 8 - len(learned)))


def _draw(experiment, placement, rank, alpha):
    data = run_view(experiment, placement, rank, alpha)
    lim = experiment.setdefault("_limits", _limits(experiment))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), gridspec_kw={"width_ratios": [1.3, 0.7, 1.2]})
    ax = axes[0]
    ax.semilogy(data["steps"], data["full_losses"], color="grey", ls="--", label=t("lora.w.full"))
    ax.semilogy(data["steps"], data["losses"], color="C0",
                label=t("lora.w.this_run", where=placement_label(placement), r=rank, alpha=alpha))
    ax.set_ylim(*lim["loss"])
    ax.set_xlabel(t("lora.w.step"))
    ax.set_title(t("lora.w.loss_title", n=data["trainable"]), fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1]
    ax.bar([0, 1], [data["recovered"], data["full_recovered"]], color=["C0", "grey"])
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["LoRA", t("lora.w.full")], fontsize=8)
    ax.set_ylim(*lim["recovered"])
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(t("lora.w.recovered_title"), fontsize=10)
    for i, v in enumerate((data["recovered"], data["full_recovered"])):
        ax.text(i, max(v, 0) + 0.02, f"{v:.2f}", ha="center", fontsize=9)
    ax = axes[2]
    idx = np.arange(1, 9)
    for n, p in enumerate(PROJECTIONS):
        teacher = torch.linalg.svdvals(experiment["true_delta"][p].double())[:8]
        ax.plot(idx, np.pad(teacher.numpy(), (0, 8 - len(teacher))), color=f"C{n}", ls=":")
        ax.plot(idx, _learned(data, p), color=f"C{n}", marker="o", ms=3, label=f"W_{p}")
    ax.set_ylim(*lim["sv"])
    ax.set_xlabel(t("lora.w.sv_index"))
    ax.set_title(t("lora.w.sv_title"), fontsize=10)
    ax.legend(fontsize=7, loc="upper right", title=t("lora.w.sv_legend"), title_fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    return fig, data


def _update(fig, experiment, placement, rank, alpha):
    """Move the artists of the kept figure (those ``_animated`` names): no new figure, no axis moves."""
    data = run_view(experiment, placement, rank, alpha)
    ax_loss, ax_bar, ax_sv = fig.axes[:3]
    line = ax_loss.get_lines()[1]
    line.set_data(data["steps"], data["losses"])
    label = t("lora.w.this_run", where=placement_label(placement), r=rank, alpha=alpha)
    line.set_label(label)
    ax_loss.legend_.get_texts()[1].set_text(label)
    ax_loss.set_title(t("lora.w.loss_title", n=data["trainable"]), fontsize=10)
    ax_bar.patches[0].set_height(data["recovered"])
    text = ax_bar.texts[0]
    text.set_position((0, max(data["recovered"], 0) + 0.02))
    text.set_text(f"{data['recovered']:.2f}")
    lines = ax_sv.get_lines()
    for n, p in enumerate(PROJECTIONS):
        lines[2 * n + 1].set_ydata(_learned(data, p))
    return data


def _animated(fig):
    """The artists ``_update`` changes (and the static ones drawn over them in a full draw)."""
    ax_loss, ax_bar, ax_sv = fig.axes[:3]
    return [ax_loss.get_lines()[1], ax_loss.legend_, ax_loss.title, ax_bar.patches[0], *ax_bar.lines,
            ax_bar.texts[0], *ax_sv.get_lines()[1::2], ax_sv.legend_]


def lora_explorer(experiment: dict, placement=None, rank: int | None = None, alpha: float | None = None):
    """Dropdowns over the runs computed once: where LoRA goes, its rank, its alpha (by default
    the first placement and the middle rank and alpha of the experiment)."""
    ranks = sorted({k[1] for k in experiment["runs"]})
    alphas = sorted({k[2] for k in experiment["runs"]})
    placements = list(dict.fromkeys(k[0] for k in experiment["runs"]))
    placement = placements[0] if placement is None else placement
    rank = ranks[len(ranks) // 2] if rank is None else rank
    alpha = alphas[len(alphas) // 2] if alpha is None else alpha
    controls = {
        "placement": W.Dropdown(options=[(placement_label(p), p) for p in placements], value=tuple(placement),
                                description=t("lora.w.where")),
        "rank": W.Dropdown(options=ranks, value=rank, description=t("lora.w.rank")),
        "alpha": W.Dropdown(options=alphas, value=alpha, description=t("lora.w.alpha")),
    }
    return Explorer(controls, lambda **v: _draw(experiment, **v),
                    update=lambda fig, **v: _update(fig, experiment, **v), animated=_animated)


def budget_figure(experiment: dict, alpha: float):
    """Recovered fraction against trainable parameters, one line per placement, full fine-tuning dashed."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    placements = list(dict.fromkeys(k[0] for k in experiment["runs"]))
    for n, p in enumerate(placements):
        runs = sorted((v for k, v in experiment["runs"].items() if k[0] == p and k[2] == alpha),
                      key=lambda v: v["trainable"])
        ax.semilogx([v["trainable"] for v in runs], [v["recovered"] for v in runs], "o-", base=2, color=f"C{n}",
                    label=placement_label(p))
    full = experiment["full"]
    ax.axhline(full["recovered"], color="grey", ls="--", label=f"{t('lora.w.full')} ({full['trainable']:,})")
    ax.set_xlabel(t("lora.fig.params"))
    ax.set_ylabel(t("lora.fig.recovered"))
    ax.set_title(t("lora.fig.budget_title"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def similarity_figure(tables: dict, r1: int, r2: int):
    """Hu et al. Figure 3's picture: phi(A_r1, A_r2, i, j) for each projection p in ``tables``."""
    fig, axes = plt.subplots(1, len(tables), figsize=(3.4 * len(tables), 2.8), squeeze=False)
    for ax, (p, table) in zip(axes[0], tables.items(), strict=True):
        im = ax.imshow(table.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(table.shape[1]), [str(j + 1) for j in range(table.shape[1])], fontsize=7)
        ax.set_yticks(range(table.shape[0]), [str(i + 1) for i in range(table.shape[0])], fontsize=7)
        ax.set_xlabel("j")
        ax.set_ylabel("i")
        ax.set_title(t("lora.fig.sim_title", r1=r1, r2=r2, p=p), fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def dependency_figure(n: int = 16, window: int = 4, blindspot_size: int = 4):
    """Which keys each head kind's output row depends on (``visible_keys``), four pictures."""
    panels = [("local", False, 1), ("local", True, 1), ("global", True, 1), ("global", True, blindspot_size)]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for ax, (kind, causal, b) in zip(axes, panels, strict=True):
        mask = visible_keys(n, kind, causal, window=window, blindspot_size=b)
        c = t("lora.fig.causal") if causal else ""
        title = t("lora.fig.dep_local", w=window, causal=c) if kind == "local" else \
            t("lora.fig.dep_global", causal=c, b=b)
        viz.mask_picture(mask, ax=ax, title=title)
        ax.set_xticks(range(0, n, window))
        ax.set_yticks(range(0, n, window))
    fig.tight_layout()
    return fig
