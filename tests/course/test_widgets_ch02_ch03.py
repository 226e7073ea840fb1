"""Chapters 02 and 03 explorers, headless: moving a control changes the data, as computed by
attnkit.experiments' pure functions, and changes the picture."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import experiments as E  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets import scaling as ws  # noqa: E402
from attnkit.widgets import softmax as wsm  # noqa: E402


def _snapshot(d_k, scaled):
    return E.dk_snapshot(
        d_k, scaled, n_samples=5_000, seq_len=ws.SEQ_LEN, n_rows=ws.N_ROWS, bins=40, seed=0
    )


def test_scaling_explorer_redraws_from_the_pure_function():
    e = ws.scaling_explorer(d_k=64, scaled=False)
    png = e.image.value
    want = _snapshot(64, False)
    torch.testing.assert_close(e.data["density"], want["density"])
    torch.testing.assert_close(e.data["row"], want["row"])
    assert e.data["theory"] == 64.0

    e.controls["d_k"].value = 512
    want = _snapshot(512, False)
    assert e.data["theory"] == 512.0 and e.data["d_k"] == 512
    torch.testing.assert_close(e.data["row"], want["row"])
    assert e.data["mean_max_weight"] == want["mean_max_weight"]
    assert e.image.value != png
    png = e.image.value

    e.controls["scaled"].value = True  # the toggle: variance back to 1, gradients back
    assert e.data["theory"] == 1.0
    assert abs(e.data["var"] - 1.0) < 5 * E.dot_product_variance_se(512, 5_000, scaled=True)
    assert e.data["mean_jacobian_norm"] > 2 * want["mean_jacobian_norm"]
    assert e.image.value != png
    assert e.redraws == 3


def test_scaling_curves_are_the_saturation_sweeps():
    curves = ws._curves()
    for scaled in (False, True):
        sweep = E.saturation_sweep(ws.D_KS, ws.SEQ_LEN, ws.N_ROWS, scaled=scaled, seed=0)
        assert curves[scaled] == sweep["jacobian_norm"]
    # unscaled, the mean Jacobian norm falls as d_k grows
    assert curves[False][-1] < 0.5 * curves[False][0]


def test_scaling_explorer_rejects_unknown_dk():
    with pytest.raises(ValueError, match="d_k must be one of"):
        ws.scaling_explorer(d_k=100)


def test_temperature_explorer_redraws_from_the_pure_function():
    e = wsm.temperature_explorer(temperature=1.0)
    scores = torch.tensor(wsm.DEFAULT_SCORES, dtype=torch.float64)
    png = e.image.value
    torch.testing.assert_close(e.data["probs"], torch.softmax(scores, -1))
    h1 = e.data["entropy"]

    e.controls["temperature"].value = 10.0
    torch.testing.assert_close(e.data["probs"], torch.softmax(scores / 10.0, -1))
    assert e.data["entropy"] > h1  # hotter is flatter
    assert e.data["entropy"] < e.data["max_entropy"] == pytest.approx(math.log(len(scores)))
    assert e.image.value != png
    png = e.image.value

    e.controls["temperature"].value = 0.01
    assert e.data["probs"].argmax() == e.data["argmax"] == 1
    torch.testing.assert_close(
        e.data["probs"], e.data["hard"], atol=1e-12, rtol=0
    )  # the argmax limit
    assert e.data["entropy"] < 1e-6
    assert e.image.value != png


def test_labels_follow_the_language():
    set_language("zh")
    e = wsm.temperature_explorer()
    assert e.controls["temperature"].description == "温度 T"
    s = ws.scaling_explorer(d_k=16)
    assert s.controls["d_k"].description == "d_k（头维度）"
    assert [label for label, _ in s.controls["scaled"].options] == [
        "q·k（不缩放）",
        "q·k / √d_k（缩放）",
    ]


def test_scaling_redraw_blits_the_picture_of_a_fresh_draw():
    e = ws.scaling_explorer(d_k=64, scaled=False)
    for d_k, scaled in [(1, False), (1024, False), (1024, True), (4, True)]:
        png = bytes(e.image.value)
        e.controls["d_k"].value = d_k
        e.controls["scaled"].value = scaled
        want = _snapshot(d_k, scaled)
        torch.testing.assert_close(e.data["density"], want["density"])
        torch.testing.assert_close(e.data["row"], want["row"])
        assert e.data["var"] == want["var"] and e.data["mean_jacobian_norm"] == want["mean_jacobian_norm"]
        assert bytes(e.image.value) != png
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3


def test_temperature_redraw_blits_the_picture_of_a_fresh_draw():
    e = wsm.temperature_explorer(temperature=1.0)
    scores = torch.tensor(wsm.DEFAULT_SCORES, dtype=torch.float64)
    for temperature in (0.01, 0.3, 100.0):
        png = bytes(e.image.value)
        e.controls["temperature"].value = temperature
        torch.testing.assert_close(e.data["probs"], torch.softmax(scores / temperature, -1))
        assert bytes(e.image.value) != png
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3


# --- chapter 02's first picture: running sums of q_i k_i ---------------------------------------


def test_partial_sums_are_the_running_dot_products():
    from attnkit.widgets.scaling import partial_sums
    sums = partial_sums(64, 3, seed=4)
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    torch.testing.assert_close(sums[:, -1], (q * k).sum(-1))          # the last one is q·k itself
    torch.testing.assert_close(sums[:, 9], (q[:, :10] * k[:, :10]).sum(-1))
    torch.testing.assert_close(partial_sums(64, 3, seed=4), sums)     # seeded


def test_partial_sums_spread_like_sqrt_j():
    from attnkit.widgets.scaling import partial_sums
    # over many seeds, the variance of the sum after j terms is j (a random walk), not j²
    ends = torch.cat([partial_sums(256, 10, seed=s)[:, [15, 255]] for s in range(200)])  # (2000, 2)
    var = ends.var(dim=0)
    assert abs(var[0].item() - 16) < 3 and abs(var[1].item() - 256) < 45


def test_plot_partial_sums_draws_every_pair_in_both_languages():
    from attnkit.widgets.scaling import plot_partial_sums
    for lang, word in (("en", "coordinates summed so far"), ("zh", "已累加的坐标数")):
        set_language(lang)
        fig = plot_partial_sums(d_k=128, pairs=4, seed=0)
        ax = fig.axes[0]
        assert len(ax.lines) == 4 + 1                                 # four walks and the zero line
        assert word in ax.get_xlabel()
        plt.close(fig)
    set_language("en")
    for bad in ({"d_k": 0}, {"pairs": 0}, {"pairs": 11}, {"d_k": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            plot_partial_sums(**bad)
