"""Chapter 05 explorer, headless: moving a control changes the data as computed by attnkit.gqa's
budget formulas (checked here against closed forms), and changes the picture like a fresh draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attnkit.gqa import memory_budget  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets import kvcache as wk  # noqa: E402

GiB = 2**30


def test_explorer_starts_at_the_chapter_model():
    e = wk.kv_cache_explorer()
    b = e.data["budget"]
    W = 7 * 10**9 * 2  # 7B parameters in bf16
    assert all(r["weights_bytes"] == W for r in b.values())
    # 32 layers, 32 heads of 128, 32k tokens, bf16: MHA 16 GiB per sequence, GQA-8 4 GiB, MQA 0.5 GiB
    per_seq = {"mha": 16 * GiB, "gqa": 4 * GiB, "mqa": GiB // 2, "mla": (512 + 64) * 32 * 32768 * 2}
    for kind, c in per_seq.items():
        assert b[kind]["cache_bytes_per_sequence"] == c
        assert b[kind]["max_batch"] == (80 * GiB - W) // c
    assert b["mha"]["max_batch"] == 4 and b["gqa"]["max_batch"] == 16
    # the tokens/s bound of GQA: each step reads the weights once and every sequence's cache once
    B = b["gqa"]["max_batch"]
    assert b["gqa"]["tokens_per_s_batch1"] == pytest.approx(3.35e12 / (W + 4 * GiB))
    assert b["gqa"]["tokens_per_s_max_batch"] == pytest.approx(B * 3.35e12 / (W + B * 4 * GiB))
    assert e.data["batches"][0] == 1 and e.data["batches"][-1] == B
    assert e.data["total"][-1] == pytest.approx(b["gqa"]["tokens_per_s_max_batch"])
    assert np.allclose(e.data["each"], e.data["total"] / e.data["batches"])


def test_moving_controls_changes_data_and_picture():
    e = wk.kv_cache_explorer()
    png = e.image.value
    e.controls["num_kv_heads"].value = 2
    assert e.data["budget"]["gqa"]["cache_bytes_per_sequence"] == 2 * 2 * 128 * 32 * 32768 * 2
    assert e.image.value != png
    png = e.image.value
    e.controls["memory_gib"].value = 24  # 13 GiB of weights in 24 GiB: no MHA sequence of 16 GiB
    assert e.data["budget"]["mha"]["max_batch"] == 0
    assert e.data["budget"]["mha"]["max_context"] == (24 * GiB - 14 * 10**9) // (2 * 32 * 128 * 32 * 2)
    assert e.image.value != png
    e.controls["attention"].value = "mha"
    assert e.data["attention"] == "mha" and len(e.data["batches"]) == 0
    e.controls["num_params"].value = 70 * 10**9  # 140 GB of weights: nothing fits
    assert all(r["max_batch"] == 0 and r["max_context"] == 0 for r in e.data["budget"].values())
    png = e.image.value
    e.controls["bandwidth_tb_s"].value = 8.0
    e.controls["num_params"].value = 10**9
    e.controls["dtype"].value = "float8"
    r = e.data["budget"]["mha"]
    assert r["weights_bytes"] == 10**9
    assert r["tokens_per_s_batch1"] == pytest.approx(8e12 / (10**9 + 2 * 32 * 128 * 32 * 32768))
    assert e.image.value != png
    # more kv heads than query heads: clamped, GQA becomes MHA
    e.controls["num_heads"].value = 4
    e.controls["num_kv_heads"].value = 16
    assert e.data["num_kv_heads"] == 4
    assert e.data["budget"]["gqa"]["cache_bytes_per_sequence"] == e.data["budget"]["mha"]["cache_bytes_per_sequence"]
    assert e.redraws >= 10


def test_more_than_the_panel_shows_is_cut_at_its_edge():
    d = wk.kv_cache_explorer_data(10**9, "float8", 192, 8.0, 1, 32, 1, 32, "mqa", 1024)
    assert d["budget"]["mqa"]["max_batch"] > wk.MAX_BATCH_SHOWN
    assert d["batches"][-1] == wk.MAX_BATCH_SHOWN


def test_explorer_data_errors():
    with pytest.raises(ValueError, match="dtype"):
        wk.kv_cache_explorer_data(10**9, "int3", 80, 3.35, 2, 8, 2, 64, "gqa", 1024)
    with pytest.raises(ValueError, match="attention"):
        wk.kv_cache_explorer_data(10**9, "bfloat16", 80, 3.35, 2, 8, 2, 64, "gla", 1024)


def test_explorer_labels_follow_language():
    set_language("zh")
    try:
        e = wk.kv_cache_explorer()
        assert e.controls["num_heads"].description == "查询头数"
        assert e.controls["memory_gib"].description == "显存（GiB）"
    finally:
        set_language("en")
    assert wk.kv_cache_explorer().controls["num_heads"].description == "query heads"


def test_redraws_blit_the_picture_of_a_fresh_draw():
    e = wk.kv_cache_explorer()
    for name, value in [("num_heads", 128), ("num_kv_heads", 16), ("head_dim", 32), ("num_layers", 80),
                        ("context", 1024), ("dtype", "float8"), ("attention", "mla"), ("memory_gib", 16),
                        ("num_params", 13 * 10**9), ("bandwidth_tb_s", 0.9), ("num_kv_heads", 1),
                        ("attention", "mqa"), ("num_heads", 2)]:
        png = bytes(e.image.value)
        e.controls[name].value = value
        v = e.values()
        kv = min(v["num_kv_heads"], v["num_heads"])
        expected = memory_budget(v["attention"], v["num_params"], v["memory_gib"] * GiB, v["context"],
                                 v["num_layers"], v["num_heads"], kv, v["head_dim"],
                                 dtype=wk.DTYPES[v["dtype"]], bandwidth_bytes_per_s=v["bandwidth_tb_s"] * 1e12)
        assert e.data["budget"][v["attention"]] == expected
        assert bytes(e.image.value) != png, name
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3, name


def test_the_speed_panel_spans_the_decades_of_its_data():
    """The y range is fitted to the data (it spanned 1e-1 to 1e8 for rates of 1e2 to 1e3)."""
    import numpy as np

    from attnkit.widgets.kvcache import kv_cache_explorer, speed_decades

    e = kv_cache_explorer()
    for context in (1024, 32768):
        e.controls["context"].value = context
        lo, hi = np.log10(e._fig.axes[1].get_ylim())
        values = np.concatenate([e.data["total"], e.data["each"]])
        assert 10**lo <= values.min() and values.max() * 10 <= 10**hi * 1.0001  # a free top decade
        assert hi - lo <= np.ceil(np.log10(values.max() / values.min())) + 2
        assert (round(lo), round(hi)) == speed_decades(e.data)
