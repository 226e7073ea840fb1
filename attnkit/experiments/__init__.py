"""The chapters' experiments as seeded functions, one module per chapter topic (course helpers, not the library).

``scaling`` (chapters 02-03: dot-product variance, saturation, temperature), ``decode`` (chapter
05: a tiny decoder, greedy generation, decode-step timing), ``sparse`` (chapter 08: the
furthest-vector task), ``lora`` (chapter 10: teacher and student runs). The package re-exports
``scaling``'s names, so ``attnkit.experiments.dot_products`` keeps working.
"""

from __future__ import annotations

from attnkit.experiments.scaling import (
    attention_rows,
    dk_snapshot,
    dot_product_histogram,
    dot_product_variance,
    dot_product_variance_se,
    dot_product_variance_theory,
    dot_products,
    entropy,
    normal_pdf,
    row_stats,
    sample_qk,
    saturation,
    saturation_sweep,
    temperature_snapshot,
    temperature_sweep,
    variance_sweep,
)

__all__ = [
    "sample_qk",
    "dot_products",
    "dot_product_variance",
    "dot_product_variance_theory",
    "dot_product_variance_se",
    "variance_sweep",
    "dot_product_histogram",
    "normal_pdf",
    "attention_rows",
    "entropy",
    "row_stats",
    "saturation",
    "saturation_sweep",
    "dk_snapshot",
    "temperature_sweep",
    "temperature_snapshot",
]
