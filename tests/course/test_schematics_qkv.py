"""Chapter 01's schematic: every tensor of the data flow with its shape, in both languages."""

import re
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnkit import i18n  # noqa: E402
from attnkit.schematics.qkv import qkv_schematic  # noqa: E402

CJK = re.compile(r"[\u4e00-\u9fff]")


def texts(fig) -> str:
    ax = fig.axes[0]
    return "\n".join([ax.get_title()] + [tx.get_text() for tx in ax.texts])


@pytest.fixture(params=["en", "zh"])
def lang(request):
    i18n.set_language(request.param)
    yield request.param
    i18n.set_language("en")


def test_every_tensor_is_drawn_with_its_shape(lang):
    n, dm, dk, dv = 5, 12, 3, 7
    fig = qkv_schematic(n=n, d_model=dm, d_k=dk, d_v=dv)
    try:
        assert isinstance(fig, Figure)
        s = texts(fig)
        for role, width in (("q", dk), ("k", dk), ("v", dv)):
            assert f"{i18n.t('schematics.qkv.' + role)}\n({n}, {width})" in s  # q, k, v
            assert f"W_{role.upper()}\n({dm}, {width})" in s                   # their projections
        assert f"{i18n.t('schematics.qkv.x')}\n({n}, {dm})" in s
        assert s.count(f"({n}, {n})") == 2                                     # scores, weights
        assert f"{i18n.t('schematics.qkv.output')}\n({n}, {dv})" in s
        assert "q kᵀ / √d_k" in s and "weights @ v" in s
        assert bool(CJK.search(s)) == (lang == "zh")
    finally:
        plt.close(fig)


def test_twelve_boxes_joined_by_thirteen_arrows():
    from matplotlib.patches import FancyBboxPatch
    from matplotlib.text import Annotation

    fig = qkv_schematic()
    try:
        ax = fig.axes[0]
        # boxes: x; W_Q, W_K, W_V; q, k, v; scores, softmax, weights; weighted sum, output
        assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == 12
        # arrows: x -> 3 W; W -> q, k, v; q, k -> scores -> softmax -> weights; weights, v -> sum -> output
        assert sum(isinstance(a, Annotation) for a in ax.texts) == 3 + 3 + 2 + 2 + 2 + 1
    finally:
        plt.close(fig)


def test_chinese_is_drawn_without_missing_glyphs():
    i18n.set_language("zh")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a 'Glyph ... missing' warning fails the test
            fig = qkv_schematic()
            fig.canvas.draw()
            plt.close(fig)
    finally:
        i18n.set_language("en")


@pytest.mark.parametrize("arg,bad", [("n", 0), ("d_model", -1), ("d_k", 2.5), ("d_v", True)])
def test_bad_shapes_are_refused_naming_the_argument(arg, bad):
    with pytest.raises(ValueError, match=rf"{arg} must be a positive int, got {bad!r}"):
        qkv_schematic(**{arg: bad})
