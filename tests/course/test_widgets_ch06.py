"""Chapter 06 explorers, headless: moving a control changes the data as computed by
attnkit.rope's pure functions, and changes the picture."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import attnkit.rope as rope  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets import rope as wr  # noqa: E402


def test_rope_explorer_redraws_from_pure_functions():
    e = wr.rope_explorer(position=5, pair=2, base=10000.0)
    png, theta = e.image.value, e.data["theta"]
    torch.testing.assert_close(theta, rope.rope_inv_freq(64, 10000.0))
    # the red arrow is the point (1, 0) rotated by 5 * theta_2
    x, y = e.data["path"][-1].tolist()
    assert (x, y) == pytest.approx((math.cos(5 * theta[2].item()), math.sin(5 * theta[2].item())))
    e.controls["position"].value = 17
    assert e.data["path"].shape == (18, 2) and e.data["angle"] == pytest.approx(17 * theta[2].item())
    assert e.image.value != png
    png = e.image.value
    e.controls["base"].value = 100.0
    torch.testing.assert_close(e.data["theta"], rope.rope_inv_freq(64, 100.0))
    torch.testing.assert_close(e.data["curves"][100.0], rope.rope_score_curve(wr.DISTANCES, 64, 100.0))
    assert e.image.value != png


def test_score_curve_is_the_rope_score_of_ones():
    q = torch.ones(16, dtype=torch.float64)
    r = torch.arange(0, 50)
    torch.testing.assert_close(rope.rope_score_curve(r, 16), rope.rope_relative_scores(q, q, r) / 16)
    # and it is an actual rotated dot product
    cos, sin = rope.generate_rope_embeddings(40, 16, dtype=torch.float64)
    qm = rope.apply_rope(q[None], cos, sin, offset=37)[0]
    kn = rope.apply_rope(q[None], cos, sin, offset=12)[0]
    assert (qm @ kn).item() / 16 == pytest.approx(rope.rope_score_curve([25], 16)[0].item())


def test_scaling_explorer_follows_the_formulas():
    e = wr.rope_scaling_explorer(method="none", scale=4)
    assert torch.all(e.data["ratio"] == 1)
    png = e.image.value
    e.controls["method"].value = "linear"
    torch.testing.assert_close(e.data["ratio"], torch.full((32,), 0.25, dtype=torch.float64))
    assert e.image.value != png
    e.controls["method"].value = "ntk"
    torch.testing.assert_close(e.data["ratio"], rope.ntk_scaled_inv_freq(64, 10000.0, 4) / rope.rope_inv_freq(64))
    e.controls["method"].value = "yarn"
    e.controls["scale"].value = 8
    want = rope.yarn_inv_freq(64, 10000.0, 8, wr.TRAINED) / rope.rope_inv_freq(64)
    torch.testing.assert_close(e.data["ratio"], want)
    assert e.data["factor"] == pytest.approx(0.1 * math.log(8) + 1)
    assert len(e.data["distances"]) == 8 * wr.TRAINED + 1
    assert e.data["curve"][0].item() == pytest.approx(e.data["factor"] ** 2)
    with pytest.raises(ValueError, match="method"):
        wr.scaled_frequencies("dynamic", 2)


def test_static_figures_and_chinese_labels():
    set_language("zh")
    try:
        e = wr.rope_explorer()
        fig = e.static()
        titles = [ax.get_title() for ax in fig.axes]
        assert any("通道对" in s for s in titles)
        f = wr.alibi_figure(8, 6)
        assert "第 0 个头：m = 1/2" in [ax.get_title() for ax in f.axes]
        assert wr.sinusoidal_figure(16, 8).axes[0].get_title() == "正弦位置编码"
    finally:
        set_language("en")
    e = wr.rope_explorer()
    assert "pair 2 rotates" in e.static().axes[0].get_title()


def test_redraws_blit_the_picture_of_a_fresh_draw():
    e = wr.rope_explorer()
    for name, value in [("position", 40), ("pair", 0), ("base", 100.0), ("pair", 31), ("base", 500000.0)]:
        png = bytes(e.image.value)
        e.controls[name].value = value
        torch.testing.assert_close(e.data["theta"], rope.rope_inv_freq(64, e.controls["base"].value))
        assert bytes(e.image.value) != png, name
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3, name
    s = wr.rope_scaling_explorer()
    for name, value in [("scale", 16), ("method", "linear"), ("scale", 2), ("method", "none")]:
        png = bytes(s.image.value)
        s.controls[name].value = value
        assert len(s.data["distances"]) == s.controls["scale"].value * wr.TRAINED + 1
        assert bytes(s.image.value) != png, name
        assert image_difference(s.image.value, s.fresh_png()) < 1e-3, name
        lo, hi = s._fig.axes[1].get_ylim()
        assert lo <= s.data["curve"].min() and s.data["curve"].max() <= hi  # fixed limits hold it
