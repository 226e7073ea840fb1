"""Chapter 05's schematic of a decode step: a pure function returning a Figure whose boxes follow
the step (t cached tokens reused, one new token computed) and whose labels follow the language."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from attnkit.i18n import set_language  # noqa: E402
from attnkit.schematics.kvcache import NEW, REUSED, decode_step_figure  # noqa: E402


def _boxes(fig, color):
    ax = fig.axes[0]
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_fill()
            and matplotlib.colors.same_color(p.get_facecolor(), color)]


def _texts(fig):
    ax = fig.axes[0]
    return [x.get_text() for x in ax.texts] + [ax.get_title()] + [x.get_text() for x in ax.get_legend().texts]


@pytest.mark.parametrize("step", [1, 4, 9])
def test_step_t_reuses_t_cached_positions_and_computes_one(step):
    fig = decode_step_figure(step)
    assert isinstance(fig, Figure)
    # tokens, keys, values: t reused boxes each; the new token's x, k, v plus q_t and o_t
    assert len(_boxes(fig, REUSED)) == 3 * step
    assert len(_boxes(fig, NEW)) == 3 + 2
    texts = _texts(fig)
    assert f"$k_{{{step}}}$" in texts and f"$v_{{{step - 1}}}$" in texts and f"$k_{{{step + 1}}}$" not in texts
    assert f"t = {step}" in fig.axes[0].get_title()
    plt.close(fig)


def test_labels_follow_the_language():
    en = _texts(decode_step_figure(3))
    set_language("zh")
    try:
        zh = _texts(decode_step_figure(3))
    finally:
        set_language("en")
    assert "K cache" in en and "K 缓存" in zh
    assert any("缓存" in s for s in zh if s.startswith("从缓存"))
    assert not any("\u4e00" <= ch <= "\u9fff" for s in en for ch in s)
    plt.close("all")


def test_pure_two_calls_draw_the_same_picture():
    import io

    def png(fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=50)
        plt.close(fig)
        return buf.getvalue()

    assert png(decode_step_figure(5)) == png(decode_step_figure(5))
    assert png(decode_step_figure(5)) != png(decode_step_figure(6))


def test_bad_step_is_refused():
    with pytest.raises(ValueError, match="step"):
        decode_step_figure(0)
    with pytest.raises(ValueError, match="step"):
        decode_step_figure(13)
    with pytest.raises(TypeError, match="step"):
        decode_step_figure(2.0)


def test_the_two_causal_alignments_are_the_library_masks():
    from attnkit.core import causal_mask
    from attnkit.schematics.kvcache import causal_alignment_figure, causal_alignment_masks

    top_left, bottom_right = causal_alignment_masks(3, 7)
    assert torch.equal(top_left, torch.ones(3, 7, dtype=torch.bool).tril())  # is_causal=True in SDPA
    assert torch.equal(bottom_right, causal_mask(3, 7, offset=4))  # decoding after 4 cached tokens
    fig = causal_alignment_figure(3, 7)
    assert [ax.images[0].get_array().sum() for ax in fig.axes[:2]] == [6, 3 * 4 + 6]
    plt.close(fig)


def test_gqa_heads_figure_joins_query_head_i_to_kv_head_i_over_g():
    from attnkit.schematics.kvcache import gqa_heads_figure

    fig = gqa_heads_figure(8, 2)
    texts = [x.get_text() for x in fig.axes[0].texts]
    assert "$q_{7}$" in texts and "$k_{1}, v_{1}$" in texts and "$k_{2}, v_{2}$" not in texts
    assert "i // 4" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="num_kv_heads"):
        gqa_heads_figure(8, 3)
