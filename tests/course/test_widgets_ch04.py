"""Chapter 04's explorer and the pure functions behind it, headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit.core import causal_mask  # noqa: E402
from attnkit.i18n import set_language  # noqa: E402
from attnkit.widgets import image_difference  # noqa: E402
from attnkit.widgets.heads import (  # noqa: E402
    TinyAttentionModel,
    example_sentences,
    head_roles,
    head_weights,
    heads_explorer,
    plot_split_heads,
    recall_batch,
    train_recall_model,
    vocabulary,
)


@pytest.fixture(scope="module")
def trained():
    return train_recall_model(seed=0)


def test_recall_batch_targets_closed_form():
    tokens, targets = recall_batch(torch.Generator().manual_seed(0), 4, seq_len=6, vocab=16)
    assert tokens.shape == (4, 6) and targets.shape == (3, 4, 6)
    assert torch.equal(targets[0, :, 1:], tokens[:, :-1]) and torch.all(targets[0, :, 0] == -100)
    assert torch.equal(targets[1, :, 2:], tokens[:, :-2]) and torch.all(targets[1, :, :2] == -100)
    assert torch.equal(targets[2], tokens[:, :1].expand(4, 6))


def test_head_roles_on_exact_patterns():
    L = 7
    eye = torch.eye(L)
    prev = torch.diag(torch.ones(L - 1), -1)
    prev[0, 0] = 1
    first = torch.zeros(L, L)
    first[:, 0] = 1
    uniform = causal_mask(L).float() / causal_mask(L).float().sum(-1, keepdim=True)
    roles = head_roles(torch.stack([eye, prev, first, uniform]))[0]
    assert [r["role"] for r in roles] == ["self", "prev", "first", "mixed"]
    assert roles[1]["prev"] == 1.0 and roles[1]["first"] == 0.0
    with pytest.raises(ValueError, match=r"weights must have shape \(layers, H, L, L\)"):
        head_roles(torch.ones(2, 3, 4))


def test_trained_model_solves_task_and_heads_specialise(trained):
    model, info = trained
    assert min(info["accuracy"].values()) > 0.95  # measured: 1.0 for each read-out
    assert info["loss"][-1] < 0.1 * info["loss"][0]
    w = head_weights(model, example_sentences()[0])  # (layers, H, L, L)
    assert w.shape == (2, 4, 10, 10)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))
    assert torch.all(w.masked_select(~causal_mask(10)) == 0)  # causal
    best = {}
    for layer in head_roles(w):
        for r in layer:
            for role in ("prev", "prev2", "first"):
                best[role] = max(best.get(role, 0.0), r[role])
    # some head puts almost all its weight on each of the three positions the task needs
    assert min(best.values()) > 0.85


def test_training_is_seeded(trained):
    model, info = trained
    _, again = train_recall_model(seed=0, steps=5)
    _, other = train_recall_model(seed=1, steps=5)
    assert again["loss"] == info["loss"][:5]
    assert other["loss"] != info["loss"][:5]


def test_head_weights_equal_module_weights(trained):
    model, _ = trained
    tokens = torch.tensor(example_sentences()[1])
    x = model.tok(tokens[None]) + model.pos(torch.arange(10))
    _, w0 = model.attn[0](model.norms[0](x), is_causal=True, need_weights=True)
    torch.testing.assert_close(head_weights(model, tokens)[0], w0[0].detach())
    with pytest.raises(ValueError, match="one sentence"):
        head_weights(model, tokens[None])


def test_explorer_redraws_on_every_control(trained):
    model, _ = trained
    ex = heads_explorer(model)
    sentences = example_sentences()
    assert ex.data["weights"].shape == (4, 10, 10)  # all heads of layer 1
    torch.testing.assert_close(ex.data["weights"], head_weights(model, sentences[0])[0])
    img = ex.image.value
    ex.controls["layer"].value = 1
    torch.testing.assert_close(ex.data["weights"], head_weights(model, sentences[0])[1])
    assert ex.image.value != img
    img = ex.image.value
    ex.controls["head"].value = 2
    torch.testing.assert_close(ex.data["weights"], head_weights(model, sentences[0])[1, 2])
    assert ex.image.value != img
    img = ex.image.value
    ex.controls["sentence"].value = 2
    torch.testing.assert_close(ex.data["weights"], head_weights(model, sentences[2])[1, 2])
    assert ex.image.value != img
    assert ex.data["roles"] == head_roles(head_weights(model, sentences[2]))[1]
    assert ex.redraws == 4
    fig = ex.static()
    assert fig.axes


def test_explorer_labels_follow_language(trained):
    model, _ = trained
    try:
        set_language("zh")
        ex = heads_explorer(model)
        assert ex.controls["layer"].description == "层"
        assert ex.controls["head"].options[0][0] == "所有头"
        assert vocabulary()[2] == "猫"
    finally:
        set_language("en")
    assert vocabulary()[2] == "cat"
    assert len(vocabulary()) == TinyAttentionModel().vocab


def test_split_heads_picture():
    fig = plot_split_heads(seq_len=3, embed_dim=6, num_heads=3)
    assert len(fig.axes) == 3 and len(fig.axes[1].patches) == 18
    with pytest.raises(ValueError, match="divisible"):
        plot_split_heads(embed_dim=7, num_heads=2)


def test_redraws_blit_the_picture_of_a_fresh_draw(trained):
    """One kept figure per (all heads or one, sentence); each redraw looks like a fresh draw."""
    model, _ = trained
    ex = heads_explorer(model)
    sentences = example_sentences()
    for layer, head, sentence in [(1, -1, 0), (1, 2, 0), (0, 3, 0), (0, -1, 1), (1, -1, 1), (1, 1, 1)]:
        png = bytes(ex.image.value)
        ex.controls["layer"].value = layer
        ex.controls["head"].value = head
        ex.controls["sentence"].value = sentence
        w = head_weights(model, sentences[sentence])[layer]
        torch.testing.assert_close(ex.data["weights"], w if head < 0 else w[head])
        assert bytes(ex.image.value) != png
        assert image_difference(ex.image.value, ex.fresh_png()) < 1e-3
    assert len(ex._kept) == 6  # (all or one head) x 3 sentences, all drawn at build time
