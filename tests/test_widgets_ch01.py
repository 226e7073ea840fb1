"""Chapter 01's explorer, headless: moving a control recomputes the data and redraws the image."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit.widgets import image_difference
from attnkit.widgets.attention import (
    attention_explorer,
    explorer_attention,
    sentence_tokens,
    toy_qkv,
)

TOKENS = sentence_tokens()


@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
@pytest.mark.parametrize("temperature", [0.1, 1.0, 7.5])
def test_explorer_attention_matches_torch(mask, temperature):
    q, k, v = toy_qkv(TOKENS)
    n, d = len(TOKENS), q.shape[-1]
    allowed = {"none": torch.ones(n, n, dtype=torch.bool),
               "causal": torch.ones(n, n, dtype=torch.bool).tril(),
               "padding": (torch.arange(n) < n - 3).expand(n, n)}[mask]
    w, out = explorer_attention(TOKENS, temperature, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1 / (math.sqrt(d) * temperature))
    torch.testing.assert_close(out, ref)
    assert (w[~allowed] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(n))


def test_equal_tokens_get_equal_keys():
    tokens = ["a", "b", "a"]
    q, k, v = toy_qkv(tokens)
    torch.testing.assert_close(k[0], k[2])
    assert not torch.allclose(k[0], k[1])


def test_moving_each_control_redraws():
    e = attention_explorer(TOKENS)
    png, w = e.image.value, e.data["weights"].clone()
    assert bytes(png).startswith(b"\x89PNG")

    e.controls["temperature"].value = 0.2
    torch.testing.assert_close(e.data["weights"], explorer_attention(TOKENS, 0.2, "none")[0])
    assert e.image.value != png and not torch.allclose(e.data["weights"], w)

    png = e.image.value
    e.controls["mask"].value = "causal"
    assert (e.data["weights"].triu(1) == 0).all()
    assert e.image.value != png

    png, w = e.image.value, e.data["weights"].clone()
    e.controls["query"].value = 4
    assert e.image.value != png  # the output panel shows another query
    torch.testing.assert_close(e.data["weights"], w)  # the weights do not depend on the chosen query
    assert e.redraws == 4


def test_static_figure_matches_the_current_state():
    e = attention_explorer(TOKENS)
    e.controls["mask"].value = "padding"
    fig = e.static()
    assert len(fig.axes) == 3  # heatmap, its colorbar, the output bars


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        explorer_attention(TOKENS, 0)
    with pytest.raises(ValueError, match="mask must be one of"):
        explorer_attention(TOKENS, 1.0, "diagonal")


def test_fast_update_path_equals_a_fresh_draw():
    from attnkit.widgets.attention import _draw

    e = attention_explorer(TOKENS)
    for temperature, mask, query in [(0.3, "causal", 2), (4.0, "padding", 5), (1.0, "none", 0)]:
        e.controls["temperature"].value = temperature
        e.controls["mask"].value = mask
        e.controls["query"].value = query
        fig, data = _draw(temperature, mask, query, TOKENS)
        torch.testing.assert_close(e.data["weights"], data["weights"])
        kept = e._fig.axes
        assert kept[0].get_title() == fig.axes[0].get_title()
        assert kept[1].get_title() == fig.axes[1].get_title()
        assert [p.get_height() for p in kept[1].patches] == [p.get_height() for p in fig.axes[1].patches]
        assert (kept[0].images[0].get_array() == fig.axes[0].images[0].get_array()).all()
        assert list(kept[0].lines[0].get_ydata()) == [query, query]
        assert image_difference(e.image.value, e.fresh_png()) < 1e-3  # the blitted picture


def test_output_panel_limit_holds_every_slider_value():
    e = attention_explorer(TOKENS)
    lim = e._fig.axes[1].get_ylim()[1]
    for temperature in (0.1, 0.5, 10.0):
        for mask in ("none", "causal", "padding"):
            e.controls["temperature"].value = temperature
            e.controls["mask"].value = mask
            assert float(e.data["output"].abs().max()) <= lim
            assert e._fig.axes[1].get_ylim()[1] == lim  # fixed: the ticks never move
