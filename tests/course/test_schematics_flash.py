"""attnkit.schematics.flash: the picture of one tiled step highlights the blocks the loop is at."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnkit.flash import tile_schedule  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.schematics import flash as sch  # noqa: E402


@pytest.fixture(params=["en", "zh"])
def lang(request):
    set_language(request.param)
    yield request.param
    set_language("en")
    plt.close("all")


def _patches(fig):
    return {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid()}


def _texts(fig):
    ax = fig.axes[0]
    return {x.get_text() for x in ax.texts} | {ax.title.get_text()}


@pytest.mark.parametrize(("n", "i", "j"), [(4, 1, 2), (3, 0, 0), (6, 5, 1)])
def test_the_current_blocks_are_highlighted(n, i, j, lang):
    fig = sch.tiles_figure(n_blocks=n, q_block=i, k_block=j)
    patches = _patches(fig)
    white = matplotlib.colors.to_rgba("white")
    for name, current in (("Q", i), ("K", j), ("V", j)):
        filled = [b for b in range(n) if patches[f"hbm.{name}.{b}"].get_facecolor() != white]
        if name == "Q":
            assert filled == [current]
        else:  # K and V: the blocks already streamed past are shaded, the current one filled
            assert patches[f"hbm.{name}.{current}"].get_facecolor() != white and filled == list(range(current + 1))
    # O: the blocks of queries finished before Q_i are written; O_i and later are not yet
    assert [b for b in range(n) if patches[f"hbm.O.{b}"].get_facecolor() != white] == list(range(i))
    assert {"sram.Q", "sram.K", "sram.V", "sram.S", "sram.stats", "sram.acc"} <= set(patches)
    texts = _texts(fig)
    assert t("schematics.flash.title", i=i, j=j, n=n) in texts
    assert t("schematics.flash.stream_kv", j=j, last=n - 1) in texts


def test_the_step_is_one_of_the_loop_steps():
    """The picture's default step (query block 1, key block 2 of 4) is a step FlashAttention-2 takes."""
    steps, _ = tile_schedule(16, 16, 4, 4)
    assert (1, 2) in [(s["qi"], s["kj"]) for s in steps]


def test_labels_follow_the_language():
    set_language("en")
    en = _texts(sch.tiles_figure())
    set_language("zh")
    zh = _texts(sch.tiles_figure())
    set_language("en")
    plt.close("all")
    assert en != zh and any("片上" in s for s in zh) and any("on chip" in s for s in en)


@pytest.mark.parametrize(("kwargs", "err", "name"), [
    ({"n_blocks": 0}, ValueError, "n_blocks"),
    ({"q_block": 4}, ValueError, "q_block"),
    ({"k_block": -1}, ValueError, "k_block"),
    ({"n_blocks": 2.0}, TypeError, "n_blocks"),
])
def test_bad_arguments_are_refused(kwargs, err, name):
    with pytest.raises(err, match=name):
        sch.tiles_figure(**kwargs)
