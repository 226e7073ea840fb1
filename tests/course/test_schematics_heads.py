"""Chapter 04's multi-head schematic: one box per head, the feature slices each head owns, the
shapes of the data flow, labels in both languages, and bad arguments named."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.schematics.heads import STEPS, multi_head_schematic  # noqa: E402


def texts(fig: Figure) -> list[str]:
    return [x.get_text() for ax in fig.axes for x in ax.texts] + [ax.get_title() for ax in fig.axes]


@pytest.mark.parametrize("h, e", [(1, 8), (2, 8), (4, 16), (8, 64)])
def test_one_box_and_one_feature_slice_per_head(h, e):
    fig = multi_head_schematic(h, e)
    words = texts(fig)
    assert [w for w in words if w.startswith("head ")] == [f"head {i}" for i in range(h)]
    dk = e // h
    slices = [w for w in words if w.startswith("features ")]
    assert slices == [f"features {i * dk}..{(i + 1) * dk - 1}" for i in range(h)]
    assert slices[-1].endswith(f"..{e - 1}")            # the slices cover every feature, in order
    assert f"d_k = E / h = {dk}" in fig.axes[0].get_title()


def test_the_shapes_of_the_data_flow_are_labelled():
    words = texts(multi_head_schematic(4, 16))
    assert words.count("(B, L, E)") == 3                # x, the concatenation, the output
    assert "(B, h, L, d_k)" in words
    assert "(B, L, E) → (B, h, L, d_k)" in words
    for name in "QKV":
        assert f"{name}=xW_{name}" in words


def test_every_step_is_labelled_in_order_in_both_languages():
    for lang in ("en", "zh"):
        set_language(lang)
        words = texts(multi_head_schematic(3, 12))
        steps = [t("schematics.heads.step." + s) for s in STEPS]
        assert [w for w in words if w in steps] == steps
        assert t("schematics.heads.title", h=3, e=12, dk=4) in words
        plt.close("all")
    set_language("zh")
    zh = texts(multi_head_schematic(2, 8))
    assert "头 0" in zh and "输入 x" in zh and not any(w.startswith("head ") for w in zh)


def test_it_draws_and_the_languages_differ():
    import io
    pngs = []
    for lang in ("en", "zh"):
        set_language(lang)
        buf = io.BytesIO()
        multi_head_schematic(4, 16).savefig(buf, format="png", dpi=50)
        pngs.append(buf.getvalue())
    assert pngs[0][:8] == b"\x89PNG\r\n\x1a\n" and pngs[0] != pngs[1]


@pytest.mark.parametrize("kwargs, name", [
    ({"num_heads": 0}, "num_heads"), ({"num_heads": 9}, "num_heads"), ({"num_heads": 2.0}, "num_heads"),
    ({"num_heads": 3, "embed_dim": 16}, "embed_dim"), ({"num_heads": 2, "embed_dim": 0}, "embed_dim"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        multi_head_schematic(**kwargs)
