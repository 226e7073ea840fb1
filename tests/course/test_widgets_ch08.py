"""Chapter 08 explorer, headless: moving a control changes the data as computed from attnkit.sparse
(checked against the set-tested builders and boolean matrix powers) and changes the picture; a
redraw stays under 100 ms (median)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")


import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import sparse as sp  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.widgets import sparse as ws  # noqa: E402


def _reach_oracle(mask, layers):
    n = mask.shape[0]
    step = (mask | torch.eye(n, dtype=torch.bool)).long()
    return [int((torch.linalg.matrix_power(step, k) > 0)[n - 1].sum()) / n for k in range(1, layers + 1)]


@pytest.mark.parametrize("pattern", ws.PATTERN_CHOICES)
@pytest.mark.parametrize("causal", [False, True])
def test_state_is_the_pattern_and_its_reachability(pattern, causal):
    st = ws.explore_state(pattern, n=48, window=6, dilation=2, globals_=1, random_blocks=1, causal=causal, layers=5)
    want = {"sliding_window": lambda: sp.sliding_window_mask(48, 6, causal, 2),
            "strided": lambda: sp.strided_mask(48, 6, causal),
            "fixed": lambda: sp.fixed_mask(48, 6, 1, causal),
            "longformer": lambda: sp.longformer_mask(48, 6, [0], causal, 2),
            "bigbird": lambda: sp.bigbird_mask(48, 6, num_global_blocks=2, num_random_blocks=1)
            & (torch.ones(48, 48, dtype=torch.bool).tril() if causal else True)}[pattern]()
    assert torch.equal(st["mask"], want)
    assert st["density"] == pytest.approx(want.double().mean().item())
    assert st["reach"].tolist() == pytest.approx(_reach_oracle(want, 5))


def test_connect_matches_the_window_closed_form():
    st = ws.explore_state("sliding_window", n=64, window=8, causal=True)
    assert st["connect"] == 9  # ceil(63 / 7)
    assert st["reach"][-1] == 1.0  # 12 layers: everything reached
    odd = ws.explore_state("sliding_window", n=64, window=7, causal=False)
    assert odd["window"] == 8  # a symmetric window is even


def test_explorer_redraws_when_controls_move():
    e = ws.sparse_explorer()
    png, data = e.image.value, e.data
    e.controls["window"].value = 16
    assert e.data["density"] > data["density"] and e.image.value != png
    assert e.data["connect"] < data["connect"]
    png = e.image.value
    e.controls["pattern"].value = "bigbird"
    assert torch.equal(e.data["mask"], sp.bigbird_mask(64, 16, num_global_blocks=2, num_random_blocks=2))
    assert e.image.value != png
    png = e.image.value
    e.controls["n"].value = 128
    assert e.data["mask"].shape == (128, 128) and e.image.value != png
    png = e.image.value
    e.controls["random_blocks"].value = 0
    assert e.data["pairs"] < int(sp.bigbird_mask(128, 16, num_global_blocks=2, num_random_blocks=2).sum())
    assert e.image.value != png
    e.controls["pattern"].value = "longformer"
    png = e.image.value
    e.controls["globals_"].value = 3
    assert e.data["args"]["global_idx"] == [0, 1, 2] and e.image.value != png
    png = e.image.value
    e.controls["dilation"].value = 2
    assert e.data["args"]["dilation"] == 2 and e.image.value != png
    e.controls["causal"].value = True
    assert not e.data["mask"].triu(1).any()


@pytest.mark.parametrize("pattern", ws.PATTERN_CHOICES)
def test_every_slider_changes_the_picture_and_unused_ones_say_so(pattern):
    """As the browser test does: each slider to its end changes the PNG; a slider the pattern
    ignores changes only the settings line, which names it as not used."""
    e = ws.sparse_explorer(pattern=pattern)
    for name in ("n", "window", "dilation", "globals_", "random_blocks"):
        png, mask = e.image.value, e.data["mask"]
        e.controls[name].value = e.controls[name].max
        assert e.image.value != png
        line = e._fig.texts[0].get_text()
        label = f"{t(ws._LABELS[name])} = {e.controls[name].max}"
        unused = line.split("·")[-1] if "·" in line else ""
        if name in ws.USES[pattern]:
            assert label not in unused
        else:
            assert label in unused and torch.equal(e.data["mask"], mask)


def test_update_equals_a_fresh_draw():
    e = ws.sparse_explorer()
    for name, value in (("pattern", "strided"), ("n", 96), ("window", 12), ("causal", True)):
        e.controls[name].value = value
    fig, fresh = ws.draw(**e.values())
    assert torch.equal(fresh["mask"], e.data["mask"]) and torch.equal(fresh["reach"], e.data["reach"])
    kept = e._fig
    assert kept.axes[0].get_title() == fig.axes[0].get_title()
    assert kept.texts[0].get_text() == fig.texts[0].get_text()
    assert list(kept.axes[1].lines[0].get_ydata()) == list(fig.axes[1].lines[0].get_ydata())
    assert (kept.axes[0].images[0].get_array() == fig.axes[0].images[0].get_array()).all()


def test_every_move_redraws_once():
    """Each control move redraws exactly once (its time is measured by benchmarks/bench_widgets.py,
    never asserted here)."""
    e = ws.sparse_explorer()
    for k, (name, value) in enumerate([("window", 10), ("n", 128), ("pattern", "bigbird"), ("random_blocks", 3),
                                       ("window", 12), ("pattern", "longformer"), ("globals_", 2), ("n", 256),
                                       ("dilation", 2), ("causal", True), ("window", 16)]):
        e.controls[name].value = value
        assert e.redraws == k + 2


def test_labels_follow_the_language():
    set_language("zh")
    try:
        e = ws.sparse_explorer()
        assert e.controls["pattern"].description == t("sparse.w.pattern") == "模式"
        assert e.controls["pattern"].options[0][0] == "滑动窗口"
    finally:
        set_language("en")


def test_gallery_draws_every_mask():
    masks = {"a": sp.sliding_window_mask(16, 4), "b": sp.strided_mask(16, 4)}
    fig = ws.pattern_gallery(masks, ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["a", "b"]
    assert (shown[1].images[0].get_array() == masks["b"].numpy()).all()


def test_bad_pattern_is_refused():
    with pytest.raises(ValueError, match="pattern must be one of"):
        ws.pattern_args("dense", 8, 4)


def test_gallery_labels_axes_and_has_an_attend_masked_legend():
    masks = {"a": sp.sliding_window_mask(16, 4), "b": sp.strided_mask(16, 4)}
    fig = ws.pattern_gallery(masks, ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert all(ax.get_xlabel() == t("sparse.w.key_j") and ax.get_ylabel() == t("sparse.w.query_i") for ax in shown)
    assert [x.get_text() for x in fig.legends[0].get_texts()] == [t("sparse.w.attend"), t("sparse.w.masked")]


def test_chunk_picture_outlines_the_only_keys_the_chunk_can_see():
    n, w, c, s = 64, 12, 16, 32
    fig = ws.chunk_picture(n=n, window=w, chunk=c, start=s)
    (box,) = fig.axes[0].patches
    mask = sp.sliding_window_mask(n, w, causal=True)
    rows = mask[s:s + c]  # the chunk's queries: every key they see lies in the box, and the box is no wider
    seen = rows.any(0).nonzero().flatten()
    assert (box.get_x() + 0.5, box.get_y() + 0.5) == (int(seen[0]), s)
    assert (box.get_width(), box.get_height()) == (int(seen[-1]) - int(seen[0]) + 1, c)


def test_the_settings_line_says_causal_and_the_mask_is_one_layer():
    e = ws.sparse_explorer(causal=True)
    assert f"{t('sparse.w.causal')} = True" in e._fig.texts[0].get_text().split("·")[0]
    assert e._fig.axes[0].get_title().startswith(t("sparse.w.one_layer", what="")[:5])
