"""attnkit.lora against peft's LoRA (a pinned, test-only reference: peft 0.21.2, which imports
transformers): with the same weights, the same outputs, updates, merges and scalings.

peft is imported here only; the rest of attnkit never needs it."""

from __future__ import annotations

import peft  # a pinned test dependency (constraints.txt): a missing peft fails, never skips
import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import Linear as PeftLoraLinear
from torch import nn

from attnkit import lora as L


def test_peft_is_the_pinned_version():
    assert peft.__version__ == "0.21.2"


def _pair(in_f, out_f, r, alpha, use_rslora, seed):
    torch.manual_seed(seed)
    base = nn.Linear(in_f, out_f)
    ours = L.LoRALinear.from_linear(base, r=r, lora_alpha=alpha, use_rslora=use_rslora)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=use_rslora, target_modules=["x"])
    theirs = PeftLoraLinear(nn.Linear(in_f, out_f), "default", cfg, r=r, lora_alpha=alpha, use_rslora=use_rslora)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        theirs.base_layer.weight.copy_(base.weight)
        theirs.base_layer.bias.copy_(base.bias)
        ours.lora_B.copy_(torch.randn(out_f, r, generator=g))
        theirs.lora_A["default"].weight.copy_(ours.lora_A)
        theirs.lora_B["default"].weight.copy_(ours.lora_B)
    return ours, theirs


@pytest.mark.parametrize("in_f, out_f, r, alpha, use_rslora", [(16, 8, 4, 8, False), (7, 13, 1, 16, False),
                                                                 (12, 12, 8, 16, True), (5, 9, 3, 2, True)])
def test_same_outputs_updates_and_merges_as_peft(in_f, out_f, r, alpha, use_rslora):
    ours, theirs = _pair(in_f, out_f, r, alpha, use_rslora, seed=r + in_f)
    assert ours.scaling == pytest.approx(theirs.scaling["default"])
    x = torch.randn(3, 5, in_f)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.delta_weight(), theirs.get_delta_weight("default"), rtol=1e-6, atol=1e-7)
    ours.merge()
    theirs.merge()
    torch.testing.assert_close(ours.weight, theirs.base_layer.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    ours.unmerge()
    theirs.unmerge()
    torch.testing.assert_close(ours.weight, theirs.base_layer.weight, rtol=1e-6, atol=1e-7)


def test_peft_initialises_like_us():
    ours, theirs = _pair(32, 8, 4, 8, False, seed=0)
    theirs.reset_lora_parameters("default", True)  # peft's default init: B zero, A Kaiming-uniform
    assert torch.equal(theirs.lora_B["default"].weight, torch.zeros(8, 4))
    bound = 1 / 32 ** 0.5
    assert theirs.lora_A["default"].weight.abs().max() <= bound
    assert ours.lora_A.abs().max() <= bound


@pytest.mark.parametrize("enable", [("q", "v"), ("q", "k", "v", "o")])
def test_lora_self_attention_equals_peft_injected_into_the_plain_layer(enable):
    torch.manual_seed(1)
    kw = dict(dim=16, heads=4, dim_head=4, causal=True, blindspot_size=2, n_local_attn_heads=2,
              local_attn_window_size=4, attn_dropout=0.0, dropout=0.0)
    ours = L.LoRASelfAttention(r=2, lora_alpha=8, enable_lora=enable, **kw)
    plain = L.LoRASelfAttention(enable_lora=(), **kw)
    plain.load_state_dict(ours.state_dict(), strict=False)
    names = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out"}
    cfg = LoraConfig(r=2, lora_alpha=8, lora_dropout=0.0, target_modules=[names[p] for p in enable])
    theirs = inject_adapter_in_model(cfg, plain)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in enable:
            mine, peft_layer = getattr(ours, names[p]), getattr(theirs, names[p])
            mine.lora_B.copy_(torch.randn(mine.lora_B.shape, generator=g))
            peft_layer.lora_A["default"].weight.copy_(mine.lora_A)
            peft_layer.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randn(2, 9, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    # the same parameters train: peft marks its lora_ tensors, we mark ours
    L.mark_only_lora_as_trainable(ours)
    ours_trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    theirs_trainable = {n.replace(".default", "").replace(".weight", "") for n, p in theirs.named_parameters()
                        if p.requires_grad}
    assert ours_trainable == theirs_trainable
    assert L.count_parameters(ours)[0] == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
