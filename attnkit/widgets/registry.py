"""Every explorer of the course, built as its chapter builds it.

Every explorer of the course, built as its chapter builds it (for benchmarks/bench_widgets.py
and the widget tests). A chapter that adds an explorer adds a line here; a test checks that every
``*_explorer`` function of attnkit.widgets is listed."""

from __future__ import annotations

import importlib
from typing import Callable


def _heads():
    from attnkit.widgets.heads import heads_explorer, train_recall_model

    model, _ = train_recall_model(steps=100, seed=0)
    return heads_explorer(model)


def _lora():
    from attnkit import lora as L
    from attnkit.widgets.lora import lora_explorer

    ex = L.run_budget_experiment(alphas=(1, 16, 256), steps=120)  # as chapter 10 runs it
    return lora_explorer(ex, placement=("q", "v"), rank=4, alpha=16)


def _simple(module: str, name: str) -> Callable:
    return lambda: getattr(importlib.import_module(f"attnkit.widgets.{module}"), name)()


def explorers() -> list[tuple[str, Callable]]:
    """(chapter and name, a zero-argument builder) for every explorer."""
    return [
        ("01 attention_explorer", _simple("attention", "attention_explorer")),
        ("02 scaling_explorer", _simple("scaling", "scaling_explorer")),
        ("03 temperature_explorer", _simple("softmax", "temperature_explorer")),
        ("04 heads_explorer", _heads),
        ("05 kv_cache_explorer", _simple("kvcache", "kv_cache_explorer")),
        ("06 rope_explorer", _simple("rope", "rope_explorer")),
        ("06 rope_scaling_explorer", _simple("rope", "rope_scaling_explorer")),
        ("07 flash_explorer", _simple("flash", "flash_explorer")),
        ("08 sparse_explorer", _simple("sparse", "sparse_explorer")),
        ("09 rf_explorer", _simple("linear", "rf_explorer")),
        ("10 lora_explorer", _lora),
        ("11 factory_explorer", _simple("factory", "factory_explorer")),
    ]
