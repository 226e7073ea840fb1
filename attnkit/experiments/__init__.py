"""The chapters' experiments as seeded functions, one module per chapter topic (course helpers, not the library).

``scaling`` (chapters 02-03: dot-product variance, saturation, temperature), ``decode`` (chapter
05: a tiny decoder, greedy generation, decode-step timing), ``sparse`` (chapter 08: the
furthest-vector task), ``lora`` (chapter 10: teacher and student runs). The package re-exports
``scaling``'s names, so ``attnkit.experiments.dot_products`` keeps working.
"""

from __future__ import annotations

from attnkit.experiments import scaling as _scaling

__all__ = list(_scaling.__all__)  # scaling's names, listed once, in scaling.py
globals().update({name: getattr(_scaling, name) for name in __all__})
