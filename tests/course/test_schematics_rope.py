"""attnkit.schematics.rope: the pictures show what RoPE computes, with labels in both languages."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import rope  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.schematics import rope as sch  # noqa: E402


@pytest.fixture(params=["en", "zh"])
def lang(request):
    set_language(request.param)
    yield request.param
    set_language("en")
    plt.close("all")


def _tips(ax):
    return [ann.xy for ann in ax.texts if isinstance(ann, matplotlib.text.Annotation)]


def _texts(fig):
    return {x.get_text() for ax in fig.axes for x in [*ax.texts, ax.title, ax.xaxis.label]}


def test_rotation_figure_turns_each_position_by_m_theta(lang):
    theta = 0.4
    fig = sch.rotation_figure(theta=theta, positions=(0, 1, 2, 5), pairs=((3, 1), (7, 5)))
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3
    for (x, y), m in zip(_tips(fig.axes[0]), (0, 1, 2, 5), strict=True):
        ex, ey = rope.rotate_pair(1.0, 0.0, m * theta)   # the oracle: attnkit's 2-D rotation
        assert (x, y) == pytest.approx((ex, ey))
    assert t("schematics.rope.turn_title") in _texts(fig)


def test_rotation_figure_keeps_the_angle_between_q_and_k(lang):
    theta = math.pi / 6
    fig = sch.rotation_figure(theta=theta, pairs=((3, 1), (6, 4)))
    scores = []
    for ax in fig.axes[1:]:
        (qx, qy), (kx, ky) = _tips(ax)
        scores.append(qx * kx + qy * ky)
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(math.cos(2 * theta))
    texts = _texts(fig)
    assert t("schematics.rope.qk_title", m=3, n=1) in texts
    assert any(t("schematics.rope.score", k=2, s=math.cos(2 * theta)) in s for s in texts)


def test_labels_follow_the_language():
    set_language("en")
    en = _texts(sch.pairing_figure(8))
    set_language("zh")
    zh = _texts(sch.pairing_figure(8))
    set_language("en")
    plt.close("all")
    assert en != zh and any("配对" in s for s in zh)


def test_pairing_figure_places_channels_as_interleaved_to_half_split(lang):
    d = 12
    fig = sch.pairing_figure(d)
    ax = fig.axes[0]
    numbers = [int(x.get_text()) for x in ax.texts if x.get_text().isdigit()]
    top, bottom = numbers[:d], numbers[d:]
    assert top == list(range(d))
    assert bottom == rope.interleaved_to_half_split(torch.arange(d)).tolist()  # the oracle
    assert sch.half_split_order(d) == bottom
    assert t("schematics.rope.half_split") in _texts(fig)


@pytest.mark.parametrize("bad", [0, 7, -2, 4.0])
def test_bad_head_dim_is_refused(bad):
    with pytest.raises(ValueError, match="head_dim"):
        sch.pairing_figure(bad)


def test_bad_theta_is_refused():
    with pytest.raises(ValueError, match="theta"):
        sch.rotation_figure(theta=0.0)
