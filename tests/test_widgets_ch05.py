"""Chapter 05 explorer, headless: moving a control changes the data as computed by attnkit.gqa's
formulas (checked here against closed forms), and changes the picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from attnkit.gqa import compare_cache_sizes  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets import kvcache as wk  # noqa: E402


def test_explorer_starts_at_the_chapter_model():
    e = wk.kv_cache_explorer()
    b = e.data["bytes"]
    # 32 layers, 32 heads of 128, 32k tokens, bf16: 2 * 32 * 128 * 32 * 32768 * 2 B = 16 GiB
    assert b["mha"] == 16 * 2**30
    assert b["gqa"] == 4 * 2**30  # 8 kv heads
    assert b["mqa"] == 2**29  # 1 kv head: 512 MiB
    assert b["mla"] == (512 + 64) * 32 * 32768 * 2  # d_c = 4 * 128, d_h^R = 64
    assert e.data["kv_of_query"] == [i // 4 for i in range(32)]


def test_moving_controls_changes_data_and_picture():
    e = wk.kv_cache_explorer()
    png = e.image.value
    e.controls["num_kv_heads"].value = 2
    assert e.data["bytes"]["gqa"] == 2 * 2 * 128 * 32 * 32768 * 2
    assert e.data["kv_of_query"] == [i // 16 for i in range(32)]
    assert e.image.value != png
    png = e.image.value
    e.controls["dtype"].value = "float32"
    assert e.data["bytes"]["mha"] == 32 * 2**30
    assert e.image.value != png
    e.controls["context"].value = 1024
    assert e.data["bytes"]["mha"] == 32 * 2**30 // 32
    e.controls["num_layers"].value = 1
    e.controls["head_dim"].value = 64
    assert e.data["bytes"]["mla"] == (256 + 32) * 1024 * 4
    # more kv heads than query heads: clamped, GQA becomes MHA
    e.controls["num_heads"].value = 4
    e.controls["num_kv_heads"].value = 16
    assert e.data["num_kv_heads"] == 4 and e.data["bytes"]["gqa"] == e.data["bytes"]["mha"]
    assert e.redraws >= 8


def test_explorer_data_errors():
    with pytest.raises(ValueError, match="dtype"):
        wk.kv_cache_explorer_data(8, 2, 64, 2, 1024, "int3")


def test_explorer_labels_follow_language():
    set_language("zh")
    try:
        e = wk.kv_cache_explorer()
        assert e.controls["num_heads"].description == "查询头数"
    finally:
        set_language("en")
    assert wk.kv_cache_explorer().controls["num_heads"].description == "query heads"


def test_redraws_blit_the_picture_of_a_fresh_draw():
    e = wk.kv_cache_explorer()
    for name, value in [("num_heads", 128), ("num_kv_heads", 16), ("head_dim", 32), ("num_layers", 80),
                        ("context", 1024), ("dtype", "float8"), ("num_kv_heads", 1), ("num_heads", 2)]:
        png = bytes(e.image.value)
        e.controls[name].value = value
        v = e.values()
        kv = min(v["num_kv_heads"], v["num_heads"])
        assert e.data["bytes"] == compare_cache_sizes(v["num_heads"], kv, v["head_dim"], v["num_layers"],
                                                      v["context"], dtype=wk.DTYPES[v["dtype"]])
        assert bytes(e.image.value) != png, name
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3, name
