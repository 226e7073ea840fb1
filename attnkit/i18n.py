"""Two languages, one catalog: ``set_language('en' | 'zh')`` and ``t(key, **fmt)``.

Each module registers its own strings with ``register({key: {"en": ..., "zh": ...}})``;
a test checks that every key has both languages and the same ``{placeholders}`` in each.
"""

from __future__ import annotations

import os

LANGUAGES = ("en", "zh")
_CATALOG: dict[str, dict[str, str]] = {}
_state = {"lang": os.environ.get("ATTNKIT_LANG", "en") if os.environ.get("ATTNKIT_LANG") in LANGUAGES else "en"}


def set_language(lang: str) -> None:
    """Choose the language of titles, labels, tables and exercise feedback."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    _state["lang"] = lang


def get_language() -> str:
    return _state["lang"]


def register(strings: dict[str, dict[str, str]]) -> None:
    """Add ``{key: {"en": text, "zh": text}}`` to the catalog; a key may be registered once."""
    for key, texts in strings.items():
        missing = [lang for lang in LANGUAGES if not texts.get(lang)]
        if missing:
            raise ValueError(f"i18n key {key!r} lacks {missing}, got languages {sorted(texts)}")
        if key in _CATALOG and _CATALOG[key] != texts:
            raise ValueError(f"i18n key {key!r} is already registered with other texts")
        _CATALOG[key] = dict(texts)


def catalog() -> dict[str, dict[str, str]]:
    """A copy of every registered key with its texts."""
    return {k: dict(v) for k, v in _CATALOG.items()}


def t(key: str, lang: str | None = None, **fmt) -> str:
    """The text of ``key`` in the current (or given) language, formatted with ``fmt``."""
    if key not in _CATALOG:
        raise KeyError(f"unknown i18n key {key!r}")
    text = _CATALOG[key][lang or _state["lang"]]
    return text.format(**fmt) if fmt else text


def both(key: str, **fmt) -> dict[str, str]:
    """``{"en": ..., "zh": ...}`` for ``key``: handy for labels that must follow a language switch."""
    return {lang: t(key, lang=lang, **fmt) for lang in LANGUAGES}
