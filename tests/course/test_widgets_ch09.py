"""Chapter 09 explorer and experiments, headless: the data behind each picture against an
independent computation (softmax weights from attnkit.core, the features from their definition,
Lemma 2, SVD, SDPA), and moving a control changes both the data and the picture."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import attnkit.linear as L  # noqa: E402
from attnkit.core import scaled_dot_product_attention  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.widgets import linear as wl  # noqa: E402


def _features_by_definition(x, w, kind):
    wx = x @ w.T
    if kind == "positive":
        return torch.exp(wx - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])
    return torch.exp((x * x).sum(-1, keepdim=True) / 2) * torch.cat([torch.cos(wx), torch.sin(wx)], -1) / math.sqrt(w.shape[0])


@pytest.mark.parametrize("kind", ["positive", "trig"])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_rf_attention_against_its_definition(kind, orthogonal):
    data = wl.rf_attention(32, kind, 0.75, orthogonal)
    q, k = wl.example_qk()
    _, weights = scaled_dot_product_attention(0.75 * q, 0.75 * k, torch.zeros(64, 1, dtype=q.dtype), return_weights=True)
    torch.testing.assert_close(data["exact"], weights)
    draw = L.orthogonal_random_features if orthogonal else L.iid_random_features
    w = draw(32, 16, seed=1, dtype=torch.float64)
    s = 0.75 * 16 ** -0.25
    a = _features_by_definition(q * s, w, kind) @ _features_by_definition(k * s, w, kind).T
    torch.testing.assert_close(data["approx"], a / a.sum(-1, keepdim=True))
    torch.testing.assert_close(data["error"], (data["approx"] - data["exact"]).abs())
    rel = (torch.linalg.norm(data["approx"] - data["exact"]) / torch.linalg.norm(data["exact"])).item()
    assert data["rel"] == pytest.approx(rel)


def test_more_features_approach_the_softmax_at_small_scale():
    for kind in ("positive", "trig"):
        assert wl.rf_attention(4096, kind, 0.5)["rel"] < 0.5 * wl.rf_attention(16, kind, 0.5)["rel"]


def test_features_are_drawn_once_per_setting():
    assert wl._projection(64, True, 1) is wl._projection(64, True, 1)
    assert not torch.equal(wl._projection(64, True, 1), wl._projection(64, False, 1))


def test_explorer_redraws_when_controls_move():
    e = wl.rf_explorer(m=16, kind="positive", scale=0.5)
    png, data = e.image.value, e.data
    e.controls["m"].value = 256
    assert e.data["m"] == 256 and e.image.value != png
    torch.testing.assert_close(e.data["approx"], wl.rf_attention(256, "positive", 0.5)["approx"])
    assert torch.equal(e.data["exact"], data["exact"])  # the exact matrix does not depend on m
    png = e.image.value
    e.controls["kind"].value = "trig"
    assert e.data["kind"] == "trig" and e.image.value != png
    png = e.image.value
    e.controls["scale"].value = 1.5
    torch.testing.assert_close(e.data["exact"], wl.rf_attention(256, "trig", 1.5)["exact"])
    assert e.image.value != png
    png = e.image.value
    e.controls["orthogonal"].value = False
    torch.testing.assert_close(e.data["approx"], wl.rf_attention(256, "trig", 1.5, orthogonal=False)["approx"])
    assert e.image.value != png


def test_updated_figure_equals_a_fresh_draw():
    e = wl.rf_explorer()
    e.controls["m"].value = 64
    e.controls["scale"].value = 1.0
    fresh, _ = wl._rf_draw(64, "positive", 1.0, True)
    assert len(e._fig.axes) == len(fresh.axes) == 6  # three heatmaps, each with its colorbar
    for a, b in zip(e._fig.axes[:3], fresh.axes[:3], strict=True):
        assert a.get_title() == b.get_title()
        assert (a.images[0].get_array() == b.images[0].get_array()).all()
        assert b.images[0].colorbar is not None and b.images[0].colorbar.vmax == pytest.approx(float(e.data["exact"].max()))


def test_every_move_redraws_once():
    """Each control move redraws exactly once (its time is measured by benchmarks/bench_widgets.py,
    never asserted here)."""
    e = wl.rf_explorer()
    moves = [("m", 32), ("kind", "trig"), ("scale", 1.0), ("orthogonal", False), ("m", 256), ("kind", "positive"),
             ("scale", 0.5), ("orthogonal", True), ("m", 4096), ("m", 16)]
    for i, (name, value) in enumerate(moves):
        e.controls[name].value = value
        assert e.redraws == i + 2


def test_labels_follow_the_language():
    set_language("zh")
    try:
        e = wl.rf_explorer()
        assert e.controls["m"].description == t("linear.w.m") == "特征数 m"
        assert e.controls["kind"].options[0][0] == "正随机特征（exp）"
    finally:
        set_language("en")


def test_lemma2_closed_form_and_monte_carlo_agree_where_tails_are_light():
    x, y = wl.pair_at_angle(16, 0.5, 0.0, seed=2)
    assert float(x.norm()) == pytest.approx(0.5) and float(x @ y) == pytest.approx(0.0, abs=1e-12)
    for kind in ("positive", "trig"):
        mc = wl.lemma2_monte_carlo(x, y, 16, kind, draws=400, seed=1)
        assert mc == pytest.approx(wl.lemma2_mse(x, y, 16, kind), rel=0.2)
    # exactly opposite vectors: the positive estimator is exact (x + y = 0)
    x, y = wl.pair_at_angle(8, 1.0, -1.0)
    assert wl.lemma2_mse(x, y, 8, "positive") == pytest.approx(0.0, abs=1e-12)
    assert wl.lemma2_monte_carlo(x, y, 8, "positive", draws=20) == pytest.approx(0.0, abs=1e-20)
    with pytest.raises(ValueError, match="kind"):
        wl.lemma2_mse(x, y, 8, "cos")


def test_spectrum_is_the_cumulative_share_of_singular_values():
    c = wl.attention_spectrum(64, 16, 1.0, seed=3)
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(64, 16, generator=g, dtype=torch.float64) for _ in range(2))
    sv = torch.linalg.svd(torch.softmax(q @ k.T / 4, -1)).S
    torch.testing.assert_close(c, torch.cumsum(sv, 0) / sv.sum())
    assert c[-1].item() == pytest.approx(1.0)
    assert wl.attention_spectrum(128, 16, 0.5)[31] > wl.attention_spectrum(128, 16, 3.0)[31]


def test_nystrom_errors_against_sdpa():
    q, k, v = wl.smooth_qkv(64, 8)
    errs = wl.nystrom_errors(q, k, v, (4, 64), iterations=None)
    ref = F.scaled_dot_product_attention(q, k, v)
    out = L.nystrom_attention(q, k, v, 4, exact_pinv=True)
    assert errs[0] == pytest.approx(((out - ref).norm() / ref.norm()).item())
    assert errs[1] < 1e-4  # m = N: exact up to the conditioning of smooth inputs' A
    qn, kn, vn = wl.noise_qkv(64, 8)
    assert wl.nystrom_errors(qn, kn, vn, (64,), iterations=None)[0] < 1e-10
    assert wl.nystrom_errors(qn, kn, vn, (64,), iterations=25)[0] < 1e-8


def test_recall_probe_against_its_definition():
    p = wl.recall_probe(8, d=4, seed=5)
    g = torch.Generator().manual_seed(5)
    k = torch.randn(8, 4, generator=g, dtype=torch.float64)
    k = k / k.norm(dim=1, keepdim=True)
    v = torch.randn(8, 4, generator=g, dtype=torch.float64)
    read = torch.stack([sum(v[j] * float(k[j] @ k[i]) for j in range(8)) for i in range(8)])  # S^T k_i by hand
    assert p["linear"] == pytest.approx(F.cosine_similarity(read, v, dim=1).mean().item())
    assert p["state_numbers"] == 16 and p["cache_numbers"] == 64
    # one pair, or orthogonal keys: perfect recall; many pairs: it must forget
    assert wl.recall_probe(1, d=4)["linear"] == pytest.approx(1.0)
    assert wl.recall_probe(64, d=8)["linear"] < 0.6 < wl.recall_probe(64, d=8)["softmax"]


def test_static_figures_plot_their_numbers():
    fig = wl.time_figure([256, 1024], {"a": [1.0, 4.0]}, d=64)
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [1.0, 4.0]
    fig = wl.recall_figure([4, 8], [0.9, 0.8], [1.0, 1.0], d=16)
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == [0.9, 0.8]
    fig = wl.nystrom_figure([4, 8], {"x": [0.5, 0.1]}, 64)
    assert fig.axes[0].get_title() == t("linear.fig.nystrom_title", n=64)


def test_matched_projections_are_orthogonal_twins_of_the_iid_draws():
    iid, ort = wl.matched_projections(20, 8, draws=5, seed=3)  # blocks of 8, 8 and 4 rows
    assert iid.shape == ort.shape == (5, 20, 8)
    torch.testing.assert_close(ort.norm(dim=-1), iid.norm(dim=-1))  # the same lengths, row by row
    for a in (0, 8, 16):
        block = ort[:, a:a + 8] / ort[:, a:a + 8].norm(dim=-1, keepdim=True)
        gram = block @ block.transpose(1, 2)
        torch.testing.assert_close(gram, torch.eye(gram.shape[-1], dtype=gram.dtype).expand_as(gram))
    torch.testing.assert_close(iid, torch.randn(5, 20, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64))


@pytest.mark.parametrize("kind", ["positive", "trig"])
def test_kernel_squared_errors_one_draw_at_a_time(kind):
    x, y = wl.pair_at_angle(6, 0.8, 0.3)
    iid, _ = wl.matched_projections(7, 6, draws=4)
    got = wl.kernel_squared_errors(x, y, iid, kind)
    for i in range(4):  # the definition, one projection at a time
        f = _features_by_definition(torch.stack([x, y]), iid[i], kind)
        assert got[i].item() == pytest.approx((float(f[0] @ f[1]) - math.exp(float(x @ y))) ** 2, rel=1e-9)
    mean, se = wl.mean_and_se(got)
    assert mean == pytest.approx(got.mean().item()) and se == pytest.approx(got.std().item() / 2)


def test_rf_attention_feature_seed_redraws_only_the_features():
    a, b = wl.rf_attention(32, "positive", 0.5, feature_seed=1), wl.rf_attention(32, "positive", 0.5, feature_seed=7)
    assert torch.equal(a["approx"], wl.rf_attention(32, "positive", 0.5)["approx"])  # default: seed + 1
    assert torch.equal(a["exact"], b["exact"]) and not torch.equal(a["approx"], b["approx"])
