"""Chapter 07 explorer, headless: moving a control changes the data as computed by the pure
function (itself checked against attnkit.flash and plain attention) and changes the picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attnkit.flash import flash_attention  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.widgets import flash as wf  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402


@pytest.mark.parametrize("loop_order", ["v1", "v2"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_last_step_gives_the_exact_output(loop_order, is_causal):
    n = 16 if not is_causal else 10  # 4 x 4 tiles; 6 above the diagonal
    for row in (0, 6, 15):
        state = wf.flash_step_state(10**6, loop_order, is_causal, row)  # clamped to the last
        assert state["step"] == state["n_steps"] == n
        q, k, v = wf.example_qkv()
        exact = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)[row]
        torch.testing.assert_close(state["out"], exact, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(state["exact"], exact, atol=1e-6, rtol=1e-5)
        assert (state["status"] == wf.DONE).sum() == n - 1
        assert (state["status"] == wf.SKIPPED).sum() == (6 if is_causal else 0)


def test_running_state_is_the_partial_softmax_over_keys_seen():
    q, k, v = wf.example_qkv()
    row = 15
    for step in range(1, 17):
        state = wf.flash_step_state(step, "v2", False, row)
        seen = len(state["m"])
        # v2 order: the last Q block's tiles are steps 13..16
        assert seen == max(0, step - 12)
        if seen:
            keys = slice(0, 4 * seen)
            scores = q[row] @ k[keys].T / 8 ** 0.5
            assert state["m"][-1] == pytest.approx(scores.max().item(), rel=1e-6)
            partial = flash_attention(q[row : row + 1], k[keys], v[keys], block_q=1, block_k=4)[0]
            torch.testing.assert_close(state["out"], partial, atol=1e-6, rtol=1e-5)
        else:
            assert torch.equal(state["out"], torch.zeros(wf.VALUE_DIM))


def test_loop_orders_visit_tiles_differently():
    v1 = wf.flash_step_state(2, "v1", False)["tile"]
    v2 = wf.flash_step_state(2, "v2", False)["tile"]
    assert (v1["qi"], v1["kj"]) == (1, 0)  # v1 walks down a column of Q blocks
    assert (v2["qi"], v2["kj"]) == (0, 1)  # v2 walks along a row of K blocks


def test_explorer_redraws_when_controls_move():
    e = wf.flash_explorer(step=3, loop_order="v2", is_causal=True, row=15)
    png, data = e.image.value, e.data
    assert data["step"] == 3 and e.controls["step"].max == 10
    e.controls["step"].value = 9
    assert e.data["step"] == 9 and e.image.value != png
    assert (e.data["status"] == wf.DONE).sum() == 8
    e.controls["step"].value = 5
    png, tile = e.image.value, e.data["tile"]
    assert (tile["qi"], tile["kj"]) == (2, 1)  # v2, causal: (0,0) (1,0) (1,1) (2,0) (2,1)
    e.controls["loop_order"].value = "v1"
    tile = e.data["tile"]
    assert (tile["qi"], tile["kj"]) == (1, 1) and e.image.value != png  # v1: a column, then (1,1)
    e.controls["is_causal"].value = False
    assert e.controls["step"].max == 16 and (e.data["status"] == wf.SKIPPED).sum() == 0
    png = e.image.value
    e.controls["row"].value = 2
    assert len(e.data["m"]) == 2 and e.image.value != png  # v1, step 5: Q block 0 has seen 2 K blocks


def test_labels_follow_the_language():
    set_language("zh")
    try:
        e = wf.flash_explorer()
        assert e.controls["step"].description == t("flash.w.step") == "步骤"
        assert e.controls["loop_order"].options[0][0].startswith("v1：")
    finally:
        set_language("en")


def test_bad_row_is_refused():
    with pytest.raises(ValueError, match="row"):
        wf.flash_step_state(1, row=16)


def test_static_figures_plot_the_measured_and_modelled_numbers():
    from attnkit.flash import io_flash, io_standard

    fig = wf.memory_figure([256, 512], [2**20, 4 * 2**20], [2**19, 2**20], d=64)
    plain, tiled = fig.axes[0].get_lines()
    assert list(plain.get_ydata()) == [1.0, 4.0] and list(tiled.get_ydata()) == [0.5, 1.0]
    assert fig.axes[0].get_title() == t("flash.fig.mem_title", d=64)
    fig = wf.io_figure([512, 1024], 64, (2**14,))
    std, tiled = fig.axes[0].get_lines()
    assert list(std.get_ydata()) == [io_standard(n, 64)["total"] for n in (512, 1024)]
    assert list(tiled.get_ydata()) == [io_flash(n, 64, M=2**14)["total"] for n in (512, 1024)]


def test_redraws_blit_the_picture_of_a_fresh_draw():
    e = wf.flash_explorer(step=3, loop_order="v2", is_causal=True, row=15)
    (m_lo, m_hi), (o_lo, o_hi) = wf.panel_limits()
    for name, value in [("step", 1), ("row", 0), ("step", 10), ("step", 5), ("loop_order", "v1"), ("step", 4),
                        ("is_causal", False), ("row", 9)]:
        png = bytes(e.image.value)
        e.controls[name].value = value
        v = e.values()
        want = wf.flash_step_state(v["step"], v["loop_order"], v["is_causal"], v["row"])
        assert torch.equal(e.data["status"], want["status"]) and e.data["m"] == want["m"]
        assert bytes(e.image.value) != png, name
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3, name
        assert all(m_lo <= x <= m_hi for x in e.data["m"] + e.data["l"])  # the fixed limits hold it
        assert o_lo <= min(e.data["out"].min(), e.data["exact"].min())
        assert max(e.data["out"].max(), e.data["exact"].max()) <= o_hi
