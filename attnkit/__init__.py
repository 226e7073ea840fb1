"""attnkit: attention mechanisms, written plainly and tested against PyTorch.

The package behind the bilingual attnkit course. Submodules are imported on demand
(``import attnkit.core``), so ``import attnkit`` stays fast and never loads matplotlib.
"""

from attnkit.core import causal_mask, padding_mask, scaled_dot_product_attention
from attnkit.i18n import set_language, t

__version__ = "0.1.0"
__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask", "set_language", "t"]
