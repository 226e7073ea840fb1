"""Chapter 10's small pretrained language model (attnkit.experiments.charlm): the committed weights
load offline, the texts split as stated, the loss is PyTorch's cross-entropy of the next character,
LoRA starts at the pretrained model and trains only its pairs, and merging keeps the function."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomllib
import torch
import torch.nn.functional as F

from attnkit.experiments import charlm as C
from attnkit.lora import LoRALinear, count_parameters

ROOT = Path(__file__).resolve().parents[2]


def test_the_weights_and_texts_are_package_data_and_load():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["attnkit"]
    for name in ("charlm.pt", "english.txt", "python.txt"):
        path = C.DATA / name
        assert path.is_file() and any(path.match(pattern) for pattern in data), name
    model = C.load_pretrained()
    assert not model.training and sum(p.numel() for p in model.parameters()) <= 1_000_000
    assert (C.DATA / "charlm.pt").stat().st_size < 1_000_000


def test_encode_decode_and_the_split():
    assert C.decode(C.encode("def f(x):\n    return x")) == "def f(x):\n    return x"
    assert C.decode(C.encode("φ — x")) == "? ? x"  # outside the 96 symbols
    text = C.read_text("python")
    train, held = C.split("python")
    assert len(held) == C.HELD_OUT and len(train) + len(held) == len(text)
    assert C.decode(held) == "".join(c if c in C.VOCAB else "?" for c in text[-C.HELD_OUT:])
    with pytest.raises(ValueError, match="name"):
        C.read_text("klingon")


def test_evaluate_is_the_mean_cross_entropy_of_the_next_character():
    torch.manual_seed(0)
    model = C.CharLM(dim=16, layers=1, heads=2, local_heads=1, window=8, context=16).eval()
    ids = torch.randint(0, len(C.VOCAB), (50,))
    losses = []
    for s in range(0, 48, 16):  # three whole windows; the last 2 characters are not enough for a window
        logits = model(ids[s:s + 16][None])[0]
        losses.append(-logits.log_softmax(-1)[torch.arange(16), ids[s + 1:s + 17]])
    assert C.evaluate(model, ids) == pytest.approx(torch.cat(losses).mean().item(), rel=1e-6)
    # an untrained model is about uniform: log(96) nats per character
    assert abs(C.evaluate(model, ids) - math.log(len(C.VOCAB))) < 0.5


def test_the_model_is_causal():
    model = C.load_pretrained()
    a = torch.randint(0, 96, (1, 64))
    b = a.clone()
    b[0, 40:] = (b[0, 40:] + 7) % 96  # change the future
    with torch.no_grad():
        ya, yb = model(a)[0], model(b)[0]
    # the past is unchanged up to rounding (the global heads' stabiliser is shared by all keys); the future moves
    torch.testing.assert_close(ya[:40], yb[:40], rtol=1e-5, atol=1e-5 * ya.abs().max().item())
    assert (ya[40:] - yb[40:]).abs().max() > 1.0


def test_add_lora_starts_at_the_pretrained_model_and_trains_only_its_pairs():
    base = C.load_pretrained()
    x = C.split("python")[1][:128].reshape(2, 64)
    with torch.no_grad():
        before = base(x)
    model = C.add_lora(C.load_pretrained(), where=("q", "v", "fc1"), r=4, lora_alpha=8)
    layers = C.lora_layers(model)
    assert len(layers) == 2 * 3 and all(isinstance(m, LoRALinear) for m in layers)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # B = 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    dims = {"q": (64, 64), "v": (64, 64), "fc1": (64, 256)}
    assert count_parameters(model)[0] == 2 * sum(4 * (i + o) for i, o in dims.values())
    with pytest.raises(ValueError, match="where"):
        C.add_lora(C.load_pretrained(), where=("mlp",))


def test_a_short_fine_tune_lowers_the_target_loss_and_merging_keeps_the_function():
    torch.manual_seed(0)
    train, held = C.split("python")
    model = C.add_lora(C.load_pretrained(), where=("q", "v"), r=4, lora_alpha=8)
    before = C.evaluate(model, held[:1024])
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = C.train(model, train, steps=20, lr=1e-2, batch=4, seed=0)
    assert len(losses) == 20 and C.evaluate(model, held[:1024]) < before - 0.1
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    x = held[:256].reshape(4, 64)
    with torch.no_grad():
        unmerged = model(x)
        for m in C.lora_layers(model):
            m.merge()
        assert (model(x) - unmerged).abs().max() <= 1e-5 * unmerged.abs().max()  # the chapter's bound


def test_training_depends_only_on_its_arguments():
    train = C.split("python")[0]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = C.add_lora(C.load_pretrained(), where=("v",), r=2)
        runs.append(C.train(model, train, steps=3, lr=1e-2, batch=2, seed=5))
    assert runs[0] == runs[1]
    x, y = C.windows(train, 64, 3, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (3, 64) and torch.equal(x[:, 1:], y[:, :-1])
    assert F.cross_entropy(torch.zeros(3 * 64, 96), y.reshape(-1)).item() == pytest.approx(math.log(96))
