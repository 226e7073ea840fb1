"""Regenerate the static figures in figures/ (make figures), in both languages.

Each figure is drawn by the same attnkit code the chapters run, so the pictures in the READMEs
never drift from the notebooks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnkit import i18n, viz  # noqa: E402
from attnkit.core import causal_mask, padding_mask  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "figures"


def explorer_01():
    from attnkit.widgets.attention import attention_explorer

    e = attention_explorer()
    e.controls["temperature"].value = 0.5
    return e.static()


def masks_01():
    from attnkit.widgets.attention import mask_legend, sentence_tokens

    tokens = sentence_tokens()[:6]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    viz.mask_picture(causal_mask(6), tokens, tokens, ax=axes[0], title="causal_mask(6)")
    viz.mask_picture(padding_mask([4], 6).expand(6, 6), tokens, tokens, ax=axes[1],
                     title="padding_mask([4], 6)")
    mask_legend(axes[1])  # attend / masked, as in the chapter's mask pictures
    fig.tight_layout()
    return fig


FIGURES = {"01_attention_explorer": explorer_01, "01_masks": masks_01}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for lang in i18n.LANGUAGES:
        i18n.set_language(lang)
        for name, draw in FIGURES.items():
            fig = draw()
            path = OUT / f"{name}_{lang}.png"
            fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
            plt.close(fig)
            print(f"wrote {path.relative_to(OUT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
