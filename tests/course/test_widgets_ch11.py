"""Chapter 11 explorer, headless: the memory of each mechanism is AttentionSelector.memory_mb (and,
for full attention and linear attention, the closed forms of chapters 04 and 09), the colours say
what fits the budget, and moving a control changes the data and the picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from attnkit.factory import AttentionConfig, AttentionFactory, AttentionSelector  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import factory as wf  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402

MB = 2**20


def full_forward_mb(N: int, E: int = 512, H: int = 8, n_by_n: int = 0) -> float:
    """Chapter 04's layer: 4E^2 + 4E parameters; q, k, v, the merged heads and the output (N x E
    each); per head, the fused kernel's log-sum-exp of each query row (N), or ``n_by_n`` (N x N)
    arrays for the materialising path; float32."""
    return ((4 * E * E + 4 * E) + 5 * N * E + H * (n_by_n * N * N if n_by_n else N)) * 4 / MB


def test_table_is_the_selectors_formula():
    data = wf.budget_table(2048, 100.0, "forward")
    assert list(data["rows"]) == AttentionFactory.available()
    for name, row in data["rows"].items():
        opts = {"max_seq_len": 2048} if name in ("linformer", "cosformer") else {}
        cfg = AttentionConfig(attention_type=name, d_model=512, n_heads=8, **opts)
        assert row["mb"] == AttentionSelector.memory_mb(cfg, 2048), name
        assert row["fits"] == (row["mb"] <= 100.0)
    assert data["fit"] == [n for n, r in data["rows"].items() if r["mb"] <= 100.0]
    assert data["rows"]["full"]["mb"] == pytest.approx(full_forward_mb(2048))
    assert data["rows"]["math"]["mb"] == pytest.approx(full_forward_mb(2048, n_by_n=3))


def test_decode_mode_and_the_linear_state():
    rows = wf.budget_table(65536, 10.0, "decode")["rows"]
    assert rows["linformer"] == {"mb": None, "fits": False} and rows["nystrom"]["mb"] is None
    E, H = 512, 8
    dh = E // H
    # causal linear attention keeps S (d_h x d_h) and z (d_h) per head whatever N is (chapter 09)
    params = (4 * E * E + 4 * E) * 4
    assert rows["linear"]["mb"] * MB >= params + H * dh * (dh + 1) * 4
    assert wf.budget_table(512, 10.0, "decode")["rows"]["linear"]["mb"] == rows["linear"]["mb"]
    # the KV cache of full attention grows with N: 2 N E floats
    grow = rows["full"]["mb"] - wf.budget_table(32768, 10.0, "decode")["rows"]["full"]["mb"]
    assert grow * MB >= 2 * 32768 * E * 4


def test_limits_hold_every_bar_and_budget():
    lo, hi = wf.XLIM
    assert lo < wf.BUDGETS[0] and wf.BUDGETS[-1] < hi
    small = [r["mb"] for m in wf.MODES for r in wf.budget_table(wf.LENGTHS[0], 1.0, m)["rows"].values() if r["mb"]]
    big = [r["mb"] for r in wf.budget_table(wf.LENGTHS[-1], 1.0, "training")["rows"].values()]
    assert lo < min(small) and max(big) < hi
    # memory never shrinks with N, and a training step needs at least a forward pass (so the
    # extremes above bound the whole control domain)
    for name in ("full", "linear", "local"):
        f = [wf.budget_table(n, 1.0, "forward")["rows"][name]["mb"] for n in wf.LENGTHS[:4]]
        tr = [wf.budget_table(n, 1.0, "training")["rows"][name]["mb"] for n in wf.LENGTHS[:4]]
        assert f == sorted(f) and all(a >= b for a, b in zip(tr, f, strict=True))


def test_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        wf.budget_table(512, 10.0, "inference")
    with pytest.raises(ValueError, match="budget_mb must be a number > 0, got 0"):
        wf.budget_table(512, 0, "forward")


def test_moving_controls_changes_data_and_picture():
    e = wf.factory_explorer()
    assert e.data["seq_len"] == 8192 and e.data["budget_mb"] == 200
    png = bytes(e.image.value)
    fit_before = e.data["fit"]
    e.controls["budget_mb"].value = 5
    assert len(e.data["fit"]) < len(fit_before)
    assert all(e.data["rows"][n]["mb"] <= 5 for n in e.data["fit"])
    assert bytes(e.image.value) != png
    png = bytes(e.image.value)
    e.controls["mode"].value = "decode"
    assert e.data["rows"]["nystrom"]["mb"] is None
    assert bytes(e.image.value) != png
    for name, value in [("seq_len", 512), ("budget_mb", 50000), ("mode", "training"), ("seq_len", 32768)]:
        png = bytes(e.image.value)
        e.controls[name].value = value
        assert e.data == wf.explorer_data(**e.values())
        assert bytes(e.image.value) != png, name
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3, name
    assert e.redraws >= 7


def test_labels_follow_language():
    set_language("zh")
    try:
        e = wf.factory_explorer()
        assert e.controls["seq_len"].description == "序列长度 N"
        assert "种机制中有" in e.static().axes[0].get_title()
    finally:
        set_language("en")
    assert wf.factory_explorer().controls["seq_len"].description == "sequence length N"
