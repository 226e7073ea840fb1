"""One colour-blind-safe palette and line-style cycle (attnkit.viz.PALETTE, LINE_STYLES): no two
lines of one plot share both colour and style, in every explorer's static figure and every
figure helper the chapters call (drawn headless, their Line2D artists read Axes by Axes).

Reference lines across an Axes (axhline / axvline: a budget, a training length, a tile border)
are not lines a reader compares, and may repeat; nor are the connectors of a drawing (an Axes
without axes, as the schematics draw), whose boxes take their colours from PALETTE."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from attnkit import viz
from attnkit.widgets.registry import explorers

NO_LINE = ("None", "none", "", " ", None)


def clashes(fig) -> list[str]:
    """The lines of an Axes of ``fig`` that share colour, line style and marker with an earlier one."""
    out = []
    for n, ax in enumerate(fig.axes):
        if not ax.axison:
            continue  # a drawing, not a plot
        seen: dict = {}
        for line in ax.get_lines():
            if not line.get_visible() or line.get_transform() != ax.transData:
                continue  # hidden, or a reference line across the Axes
            if line.get_linestyle() in NO_LINE and line.get_marker() in NO_LINE:
                continue
            key = (to_hex(line.get_color()), line.get_linestyle(), line.get_marker())
            if key in seen:
                out.append(f"axes {n} ({ax.get_title()!r}): {line.get_label()!r} looks like {seen[key]!r}: {key}")
            seen.setdefault(key, line.get_label())
    return out


def test_the_palette_and_the_cycle():
    assert len(set(viz.PALETTE)) == 8 and len(set(viz.LINE_STYLES)) == 4
    styles = [tuple(viz.line_style(i).values()) for i in range(32)]
    assert len(set(styles)) == 32 and styles[0] == ("#0072B2", "-") and styles[8] == ("#0072B2", "--")
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()
    assert list(zip(cycle["color"], cycle["linestyle"], strict=True)) == styles
    fig, ax = plt.subplots()
    for i in range(20):  # the default cycle: 20 lines, none alike
        ax.plot([0, 1], [i, i + 1])
    assert clashes(fig) == []
    ax.plot([0, 1], [0, 2], color=viz.PALETTE[0], linestyle="-")   # the checker sees a clash
    assert len(clashes(fig)) == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="i must be an int >= 0"):
            viz.line_style(bad)


def _small_lora():
    """Chapter 10's explorer over a smaller experiment (the registry's trains 48 runs: a minute
    here): the same figure, every placement drawn, fewer and shorter runs."""
    from attnkit import lora as L
    from attnkit.widgets.lora import lora_explorer

    ex = L.run_budget_experiment(placements=(("q",), ("v",), ("q", "v"), L.PROJECTIONS), ranks=(1, 4),
                                 alphas=(16,), steps=10)
    return lora_explorer(ex, placement=("q", "v"), rank=4, alpha=16)


EXPLORERS = [(n, _small_lora if n == "10 lora_explorer" else make) for n, make in explorers()]


@pytest.mark.parametrize("name, make", EXPLORERS, ids=[n for n, _ in EXPLORERS])
def test_explorer_static_figures(name, make):
    fig = make().static()
    assert fig.axes and clashes(fig) == []


def _figures():
    """(name, zero-argument function returning a Figure) for every figure helper of the chapters."""
    from attnkit import lora as L
    from attnkit import toy
    from attnkit.schematics import flash as sf
    from attnkit.schematics import heads as sh
    from attnkit.schematics import kvcache as sk
    from attnkit.schematics import online_softmax as so
    from attnkit.schematics import qkv as sq
    from attnkit.schematics import rope as sr
    from attnkit.widgets import flash as wf
    from attnkit.widgets import heads as wh
    from attnkit.widgets import linear as wl
    from attnkit.widgets import lora as wlo
    from attnkit.widgets import rope as wr
    from attnkit.widgets import scaling as ws

    ms, ns = (4, 8, 16, 32, 64), (256, 1024, 4096)
    kinds = {f"kind {i}": [1.0 / m * (1 + i / 10) for m in ms] for i in range(3)}
    methods = {f"method {i}": [0.1 * (i + 1) * n / 256 for n in ns] for i in range(9)}  # chapter 09: nine
    return [
        ("toy.plot_fixed_vs_qkv", lambda: toy.plot_fixed_vs_qkv(toy.train_fixed_vs_qkv(n=8, d=16, steps=5, seed=0))),
        ("scaling.plot_partial_sums", lambda: ws.plot_partial_sums(d_k=64, pairs=5, seed=0)),
        ("heads.plot_split_heads", lambda: wh.plot_split_heads()),
        ("flash.memory_figure", lambda: wf.memory_figure([256, 512], [1e6, 4e6], [1e5, 2e5], 64)),
        ("flash.io_figure", lambda: wf.io_figure([2**k for k in range(9, 13)], 64, (2**14, 2**16, 2**18))),
        ("linear.lemma2_figure", lambda: wl.lemma2_figure(ms, kinds, kinds, 0.5)),
        ("linear.spectrum_figure", lambda: wl.spectrum_figure({s: wl.attention_spectrum(64, 16, s) for s in (0.5, 1.0, 3.0)}, 64)),
        ("linear.nystrom_figure", lambda: wl.nystrom_figure(ms, {f"curve {i}": [1 / m for m in ms] for i in range(4)}, 256)),
        ("linear.recall_figure", lambda: wl.recall_figure([4, 8, 16], [0.9, 0.7, 0.5], [1.0, 1.0, 1.0], 16)),
        ("linear.time_figure", lambda: wl.time_figure(ns, methods, 64)),
        ("lora.dependency_figure", lambda: wlo.dependency_figure()),
        ("lora.budget_figure", lambda: wlo.budget_figure(L.run_budget_experiment(alphas=(16,), steps=2), 16)),
        ("rope.alibi_figure", lambda: wr.alibi_figure(8, 16)),
        ("rope.sinusoidal_figure", lambda: wr.sinusoidal_figure(64, 64)),
        ("schematics.qkv", lambda: sq.qkv_schematic(n=4, d_model=8, d_k=4, d_v=4)),
        ("schematics.online_softmax", lambda: so.online_softmax_schematic([2.3, 9.1, 0.5, 4.0, 7.5, 1.0], chunk_size=3)),
        ("schematics.heads", lambda: sh.multi_head_schematic(num_heads=4, embed_dim=16)),
        ("schematics.kvcache", lambda: sk.decode_step_figure(4)),
        ("schematics.rope.rotation", lambda: sr.rotation_figure(theta=math.pi / 6)),
        ("schematics.rope.pairing", lambda: sr.pairing_figure(8)),
        ("schematics.flash", lambda: sf.tiles_figure(n_blocks=4, q_block=1, k_block=2)),
    ]


@pytest.mark.parametrize("name, make", _figures(), ids=[n for n, _ in _figures()])
def test_figure_helpers(name, make):
    fig = make()
    fig = fig if isinstance(fig, matplotlib.figure.Figure) else plt.gcf()
    assert fig.axes and clashes(fig) == [], clashes(fig)
