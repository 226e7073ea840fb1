"""Every text key has both languages, with the same placeholders; switching language works."""

import importlib
import pkgutil
import re
import string

import pytest

import attnkit
from attnkit import i18n

CJK = re.compile(r"[\u4e00-\u9fff]")
CJK_OR_PUNCT = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")  # ideographs or Chinese punctuation


def _import_all_modules():
    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)


def _fields(text):
    return sorted({f for _, f, _, _ in string.Formatter().parse(text) if f})


def test_every_key_has_both_languages_and_the_same_placeholders():
    _import_all_modules()
    cat = i18n.catalog()
    assert len(cat) > 20  # the modules really registered their strings
    for key, texts in cat.items():
        assert set(texts) >= set(i18n.LANGUAGES), key
        assert all(texts[lang].strip() for lang in i18n.LANGUAGES), key
        assert _fields(texts["en"]) == _fields(texts["zh"]), key


def test_chinese_texts_are_chinese():
    _import_all_modules()
    cat = i18n.catalog()
    # a key whose Chinese text has no Chinese character must be language-neutral (a symbol, a formula)
    untranslated = [k for k, v in cat.items() if not CJK_OR_PUNCT.search(v["zh"]) and v["zh"] != v["en"]]
    assert not untranslated, untranslated
    assert all(not CJK.search(v["en"]) for v in cat.values())


def test_set_language_and_t():
    i18n.register({"test.greet": {"en": "hello {name}", "zh": "你好，{name}"}})
    try:
        i18n.set_language("zh")
        assert i18n.t("test.greet", name="A") == "你好，A"
        assert i18n.t("test.greet", lang="en", name="A") == "hello A"
        i18n.set_language("en")
        assert i18n.t("test.greet", name="A") == "hello A"
        assert i18n.both("test.greet", name="B") == {"en": "hello B", "zh": "你好，B"}
    finally:
        i18n.set_language("en")


def test_errors():
    with pytest.raises(ValueError, match=r"lang must be one of \('en', 'zh'\), got 'fr'"):
        i18n.set_language("fr")
    with pytest.raises(KeyError, match="unknown i18n key 'no.such.key'"):
        i18n.t("no.such.key")
    with pytest.raises(ValueError, match=r"lacks \['zh'\]"):
        i18n.register({"test.half": {"en": "only English"}})
    with pytest.raises(ValueError, match="already registered"):
        i18n.register({"viz.query": {"en": "something else", "zh": "别的"}})
