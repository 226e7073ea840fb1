"""Chapter 10 explorer and figures, headless: a redraw selects a run computed once (never trains),
its data is what the pure function computes from the run, and the picture changes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import lora as L  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets import lora as wl  # noqa: E402


@pytest.fixture(scope="module")
def ex():
    torch.manual_seed(0)
    return L.run_budget_experiment(placements=(("q",), ("q", "v"), L.PROJECTIONS), ranks=(1, 2), alphas=(16, 256),
                                   steps=10, eval_every=5, batch=4)


def test_run_view_selects_the_run_and_computes_from_it(ex):
    run = ex["runs"][(("q", "v"), 2, 16)]
    view = wl.run_view(ex, ("q", "v"), 2, 16)
    assert view["losses"] == run["losses"] and view["steps"] == [0, 5, 10]
    assert view["full_losses"] == ex["full"]["losses"] and view["recovered"] == run["recovered"]
    assert view["trainable"] == 2 * L.lora_param_count(32, 32, 2)
    assert set(view["singular"]) == {"q", "v"}
    learned, teacher = view["singular"]["q"]
    torch.testing.assert_close(learned, torch.linalg.svdvals(run["delta"]["q"].double())[:8])
    torch.testing.assert_close(teacher, torch.linalg.svdvals(ex["true_delta"]["q"].double())[:8])
    assert torch.linalg.matrix_rank(run["delta"]["q"]).item() <= 2  # a rank-2 adapter learns a rank-2 update
    with pytest.raises(ValueError, match=r"no run for placement=\('k',\), rank=1, alpha=16"):
        wl.run_view(ex, ("k",), 1, 16)


def test_explorer_redraws_without_training(ex, monkeypatch):
    e = wl.lora_explorer(ex, placement=("q", "v"), rank=1, alpha=16)
    png = e.image.value

    def refuse(*a, **k):
        raise AssertionError("a redraw must not train")

    monkeypatch.setattr(L, "train_lora_runs", refuse)
    monkeypatch.setattr(torch.optim, "Adam", refuse)
    e.controls["rank"].value = 2
    assert e.data["losses"] == ex["runs"][(("q", "v"), 2, 16)]["losses"] and e.image.value != png
    png = e.image.value
    e.controls["placement"].value = L.PROJECTIONS
    assert set(e.data["singular"]) == set(L.PROJECTIONS) and e.image.value != png
    png = e.image.value
    e.controls["alpha"].value = 256
    assert e.data["recovered"] == ex["runs"][(L.PROJECTIONS, 2, 256)]["recovered"] and e.image.value != png
    assert e.redraws == 4


def test_a_blitted_redraw_looks_like_a_fresh_draw(ex):
    e = wl.lora_explorer(ex, placement=("q",), rank=1, alpha=16)
    for name, value in (("rank", 2), ("placement", ("q", "v")), ("alpha", 256), ("placement", L.PROJECTIONS)):
        e.controls[name].value = value
        fresh, data = wl._draw(ex, **e.values())
        assert e.data["losses"] == data["losses"]
        for a, b in zip(e._fig.axes[2].get_lines(), fresh.axes[2].get_lines(), strict=True):
            assert list(a.get_ydata()) == pytest.approx(list(b.get_ydata()))
        assert e._fig.axes[1].patches[0].get_height() == pytest.approx(fresh.axes[1].patches[0].get_height())
        assert e._fig.axes[0].get_title() == fresh.axes[0].get_title()
        assert [x.get_text() for x in e._fig.axes[1].texts] == [x.get_text() for x in fresh.axes[1].texts]
        assert [x.get_text() for x in e._fig.axes[0].legend_.get_texts()] == \
            [x.get_text() for x in fresh.axes[0].legend_.get_texts()]
        assert image_difference(e.image.value, e.fresh_png()) < 0.005, name  # the pixels, too
        plt.close(fresh)


def test_labels_follow_the_language(ex):
    set_language("zh")
    try:
        e = wl.lora_explorer(ex)
        assert e.controls["rank"].description == t("lora.w.rank") == "秩 r"
        assert e.controls["placement"].options[-1][0] == "q、k、v、o"
    finally:
        set_language("en")


def test_budget_figure_plots_the_recovered_fractions(ex):
    fig = wl.budget_figure(ex, alpha=16)
    lines = fig.axes[0].get_lines()
    q_line = lines[0]
    assert list(q_line.get_xdata()) == [64, 128]
    assert list(q_line.get_ydata()) == [ex["runs"][(("q",), r, 16)]["recovered"] for r in (1, 2)]
    assert lines[-1].get_ydata()[0] == ex["full"]["recovered"]


def test_dependency_and_similarity_figures_show_their_data():
    fig = wl.dependency_figure(n=12, window=3, blindspot_size=4)
    shown = [torch.tensor(ax.get_images()[0].get_array().data) > 0 for ax in fig.axes]
    expected = [L.visible_keys(12, "local", False, 3), L.visible_keys(12, "local", True, 3),
                L.visible_keys(12, "global", True), L.visible_keys(12, "global", True, blindspot_size=4)]
    for a, b in zip(shown, expected, strict=True):
        assert torch.equal(a, b)
    table = L.subspace_similarity(torch.randn(2, 10), torch.randn(3, 10))
    fig = wl.similarity_figure({"q": table}, 2, 3)
    assert torch.allclose(torch.tensor(fig.axes[0].get_images()[0].get_array().data), table)


def test_redraw_is_fast(ex):
    """Median redraw under 100 ms of this process's CPU time, the bar scaled by how slow the core is
    right now (as chapters 08 and 09 do): timed round-robin against a PNG of an empty figure of the
    same size, the bound is max(100 ms, 8 x that). Every move really redraws."""
    import statistics
    import time

    import matplotlib.pyplot as plt

    from attnkit.viz import figure_png

    empty = plt.figure(figsize=(11, 3.3))
    empty.add_subplot(1, 1, 1)
    e = wl.lora_explorer(ex, placement=("q",), rank=2, alpha=256)
    moves = [("rank", 1), ("placement", ("q", "v")), ("alpha", 16), ("rank", 2), ("placement", L.PROJECTIONS),
             ("alpha", 256), ("rank", 1), ("placement", ("q",))]
    cpu, base = [], []
    for i, (name, value) in enumerate(moves):
        c0 = time.process_time()
        e.controls[name].value = value
        cpu.append(time.process_time() - c0)
        assert e.redraws == i + 2
        c0 = time.process_time()
        figure_png(empty, dpi=e.dpi, tight=False)
        base.append(time.process_time() - c0)
    plt.close(empty)
    assert statistics.median(cpu) < max(0.1, 8 * statistics.median(base)), (cpu, base)
