"""Chapter 01's explorer, headless: moving a control recomputes the data and redraws the image."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnkit import i18n, viz
from attnkit.core import causal_mask
from attnkit.widgets import image_difference
from attnkit.widgets.attention import (
    TEMPERATURES,
    _draw,
    attention_explorer,
    explorer_attention,
    explorer_state,
    mask_legend,
    sentence_tokens,
    toy_qkv,
    weighted_values,
)

TOKENS = sentence_tokens()
N = len(TOKENS)
ALLOWED = {"none": torch.ones(N, N, dtype=torch.bool),
           "causal": torch.ones(N, N, dtype=torch.bool).tril(),
           "padding": (torch.arange(N) < N - 3).expand(N, N)}


@pytest.mark.parametrize("no_sqrt", [False, True])
@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 7.5])
def test_explorer_attention_matches_torch(mask, temperature, no_sqrt):
    q, k, v = toy_qkv(TOKENS)
    d = q.shape[-1]
    allowed = ALLOWED[mask]
    w, out = explorer_attention(TOKENS, temperature, mask, no_sqrt=no_sqrt)
    scale = 1 / temperature if no_sqrt else 1 / (math.sqrt(d) * temperature)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    torch.testing.assert_close(out, ref)
    ref_w = torch.softmax((q @ k.T * scale).masked_fill(~allowed, float("-inf")), dim=-1)
    torch.testing.assert_close(w, ref_w)
    assert (w[~allowed] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(N))


def test_without_sqrt_dk_the_rows_are_sharper():
    scaled, _ = explorer_attention(TOKENS, 1.0)
    unscaled, _ = explorer_attention(TOKENS, 1.0, no_sqrt=True)
    # dividing by T alone is dividing by sqrt(d_k) * (T / sqrt(d_k)): the same as T = 1/4 here
    torch.testing.assert_close(unscaled, explorer_attention(TOKENS, 1.0 / math.sqrt(16))[0])
    assert (unscaled.max(-1).values >= scaled.max(-1).values - 1e-6).all()
    assert unscaled.max(-1).values.mean() > scaled.max(-1).values.mean() + 0.1


def test_the_weighted_value_vectors_sum_to_the_output():
    _, _, v = toy_qkv(TOKENS)
    for mask in ("none", "causal", "padding"):
        w, out = explorer_attention(TOKENS, 0.5, mask)
        for query in (0, 3, N - 1):
            rows = weighted_values(w, v, query)
            assert rows.shape == v.shape
            torch.testing.assert_close(rows[2], w[query, 2] * v[2])
            torch.testing.assert_close(rows.sum(0), out[query])
    with pytest.raises(ValueError, match=rf"query must be in \[0, {N}\), got {N}"):
        weighted_values(w, v, N)


def test_equal_tokens_get_equal_keys():
    tokens = ["a", "b", "a"]
    q, k, v = toy_qkv(tokens)
    torch.testing.assert_close(k[0], k[2])
    assert not torch.allclose(k[0], k[1])
    k[0] += 1  # a copy: the cache behind it is not changed
    torch.testing.assert_close(toy_qkv(tokens)[1][0], toy_qkv(tokens)[1][2])


def test_the_temperature_reaches_the_chapters_values():
    e = attention_explorer(TOKENS)
    values = [v for _, v in e.controls["temperature"].options]
    assert values == list(TEMPERATURES) and values == sorted(values)
    assert {5.0, 1.0, 0.2, 0.05} <= set(values)  # the temperatures the chapter prints
    assert e.controls["temperature"].value == 1.0 and e.controls["no_sqrt"].value is False


def test_moving_each_control_redraws():
    e = attention_explorer(TOKENS)
    png, w = e.image.value, e.data["weights"].clone()
    assert bytes(png).startswith(b"\x89PNG")

    e.controls["temperature"].value = 0.05
    torch.testing.assert_close(e.data["weights"], explorer_attention(TOKENS, 0.05, "none")[0])
    assert e.image.value != png and not torch.allclose(e.data["weights"], w)

    png, w = e.image.value, e.data["weights"].clone()
    e.controls["temperature"].value = 1.0
    e.controls["no_sqrt"].value = True
    torch.testing.assert_close(e.data["weights"], explorer_attention(TOKENS, 1.0, "none", no_sqrt=True)[0])
    assert e.image.value != png and e._fig.axes[0].get_title() == i18n.t("explorer.title_no_sqrt", temp=1.0)

    png = e.image.value
    e.controls["mask"].value = "causal"
    assert (e.data["weights"].triu(1) == 0).all()
    assert torch.equal(e.data["allowed"], causal_mask(N))
    assert e.image.value != png

    png, w = e.image.value, e.data["weights"].clone()
    stack = e.data["weighted_values"].clone()
    e.controls["query"].value = 4
    assert e.image.value != png  # the stack and the output panel show another query
    torch.testing.assert_close(e.data["weights"], w)  # the weights do not depend on the chosen query
    torch.testing.assert_close(e.data["weighted_values"].sum(0), e.data["output"][4])
    assert not torch.allclose(e.data["weighted_values"], stack)
    assert e.redraws == 6


def test_the_figure_shows_the_data():
    e = attention_explorer(TOKENS)
    e.controls["mask"].value = "padding"
    e.controls["query"].value = 2
    ax_w, ax_s, ax_o, ax_b = e._fig.axes[:4]
    shown = ax_w.images[0].get_array()
    assert np.array_equal(np.ma.getmaskarray(shown), ~ALLOWED["padding"].numpy())  # grey: masked
    np.testing.assert_allclose(shown.filled(0), e.data["weights"].numpy())
    np.testing.assert_allclose(ax_s.images[0].get_array(), e.data["weighted_values"].numpy())
    np.testing.assert_allclose([p.get_width() for p in ax_b.patches], e.data["weights"][2].numpy())
    np.testing.assert_allclose([p.get_height() for p in ax_o.patches], e.data["output"][2].numpy())
    assert [tx.get_text() for tx in ax_w.legend_.get_texts()] == [i18n.t("explorer.masked_weight")]


def test_the_masked_legend_appears_only_with_a_mask():
    e = attention_explorer(TOKENS)
    assert e._fig.axes[0].legend_ is None  # no mask on: nothing is masked
    e.controls["mask"].value = "causal"
    assert e._fig.axes[0].legend_ is not None
    e.controls["mask"].value = "none"
    assert e._fig.axes[0].legend_ is None


def test_static_figure_matches_the_current_state():
    e = attention_explorer(TOKENS)
    e.controls["mask"].value = "padding"
    fig = e.static()
    assert len(fig.axes) == 5  # heatmap, weighted values, output bars, weights, the heatmap's colorbar


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_mask_pictures_get_a_legend(lang):
    i18n.set_language(lang)
    try:
        ax = viz.mask_picture(causal_mask(4))
        leg = mask_legend(ax)
        assert [tx.get_text() for tx in leg.get_texts()] == [i18n.t("explorer.attend"), i18n.t("explorer.masked")]
        image = ax.images[0]  # the legend's squares have the picture's two colours
        cmap, norm = image.get_cmap(), image.norm
        assert np.allclose(leg.legend_handles[0].get_facecolor(), cmap(norm(1.0)))
        assert np.allclose(leg.legend_handles[1].get_facecolor(), cmap(norm(0.0)))
    finally:
        i18n.set_language("en")


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        explorer_attention(TOKENS, 0)
    with pytest.raises(ValueError, match="mask must be one of"):
        explorer_attention(TOKENS, 1.0, "diagonal")


def test_fast_update_path_equals_a_fresh_draw():
    e = attention_explorer(TOKENS)
    for temperature, no_sqrt, mask, query in [(0.3, False, "causal", 2), (5.0, True, "padding", 5),
                                              (0.05, True, "none", 0), (1.0, False, "none", 1)]:
        e.controls["temperature"].value = temperature
        e.controls["no_sqrt"].value = no_sqrt
        e.controls["mask"].value = mask
        e.controls["query"].value = query
        fig, data = _draw(temperature, no_sqrt, mask, query, TOKENS)
        state = explorer_state(TOKENS, temperature, mask, query, no_sqrt)
        for key in ("weights", "output", "weighted_values"):
            torch.testing.assert_close(e.data[key], data[key])
            torch.testing.assert_close(e.data[key], state[key])
        kept = e._fig.axes
        assert kept[0].get_title() == fig.axes[0].get_title()
        assert [p.get_height() for p in kept[2].patches] == [p.get_height() for p in fig.axes[2].patches]
        assert [p.get_width() for p in kept[3].patches] == [p.get_width() for p in fig.axes[3].patches]
        assert list(kept[0].lines[0].get_ydata()) == [query, query]
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3  # the blitted picture


def test_panel_limits_hold_every_control_value():
    e = attention_explorer(TOKENS)
    lim = e._fig.axes[2].get_ylim()[1]
    clim = e._fig.axes[1].images[0].get_clim()
    for temperature in (0.05, 0.5, 10.0):
        for no_sqrt in (False, True):
            for mask in ("none", "causal", "padding"):
                e.controls["temperature"].value = temperature
                e.controls["no_sqrt"].value = no_sqrt
                e.controls["mask"].value = mask
                assert float(e.data["output"].abs().max()) <= lim
                assert e._fig.axes[2].get_ylim()[1] == lim  # fixed: the ticks never move
                assert e._fig.axes[1].images[0].get_clim() == clim
