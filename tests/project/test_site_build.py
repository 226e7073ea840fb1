"""The website's build (tools/site.py) and the alt texts the notebooks' build stores
(tools/build.py), on small notebooks made here: no browser, no executed chapter.

The built site itself, in Chromium, is tested by tests/browser/test_site.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build  # noqa: E402

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def site():
    spec = importlib.util.spec_from_file_location("attnkit_site_builder", ROOT / "tools" / "site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figure_cell(source: str, alt: str | None = None, widget: bool = False):
    cell = nbformat.v4.new_code_cell(source)
    outputs = [nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "x"}, "text/plain": "VBox()"})] if widget else []
    png = nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    if alt:
        png.metadata = {"image/png": {"alt": alt}}
    cell.outputs = [*outputs, png]
    return cell


def chapters(tmp_path: Path, cells: dict[str, list]) -> Path:
    for lang, body in cells.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = body
        (tmp_path / "ch" / lang).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, tmp_path / "ch" / lang / "01_demo.ipynb")
    return tmp_path / "ch"


def two_languages(en_md: str = "", zh_md: str = "", alt: tuple[str | None, str | None] = ("a plot", "一张图")):
    return {"en": [nbformat.v4.new_markdown_cell(f"# 01 · Demo\n\n## 1. Softmax\n\n{en_md}"),
                   figure_cell("explorer", alt[0], widget=True)],
            "zh": [nbformat.v4.new_markdown_cell(f"# 01 · 示例\n\n## 1. 旋转位置编码\n\n{zh_md}"),
                   figure_cell("explorer", alt[1], widget=True)]}


def test_tokens_are_latin_words_and_chinese_bigrams(site):
    assert site.tokens("Softmax, RoPE 2x") == ["softmax", "rope", "2x"]
    assert site.tokens("旋转位置编码") == ["旋转", "转位", "位置", "置编", "编码"]
    assert site.tokens("猫 和 attention（注意力）") == ["attention", "猫", "和", "注意", "意力"]


def test_a_page_has_mathml_its_toc_the_static_figure_and_the_live_explorer_line(site, tmp_path):
    src = chapters(tmp_path, two_languages(en_md="Scores $q \\cdot k / \\sqrt{d_k}$ and\n\n$$\\sum_j w_j = 1$$",
                                           zh_md="分数 $q \\cdot k$。"))
    report = site.build(tmp_path / "out", src, log=lambda line: None)
    assert report["missing_alt"] == [] and report["pages"] == {"en": ["01_demo"], "zh": ["01_demo"]}
    en = (tmp_path / "out" / "en" / "01_demo.html").read_text()
    assert en.count("<math") == 2 and 'display="block"' in en and "<msqrt>" in en and "$" not in en
    assert '<a href="#1-softmax">1. Softmax</a>' in en                       # contents
    assert '<img src="data:image/png;base64,' in en and 'alt="a plot"' in en   # the static figure
    assert WIDGET not in en and en.count('class="live-note"') == 1
    assert '<a class="lang-link" href="../zh/01_demo.html" lang="zh-CN" hreflang="zh-CN">简体中文</a>' in en
    zh = (tmp_path / "out" / "zh" / "01_demo.html").read_text()
    assert zh.startswith('<!DOCTYPE html>\n<html lang="zh-CN">') and "笔记本里是可交互的版本" in zh
    index = (tmp_path / "out" / "assets" / "search-zh.js").read_text()
    assert index.startswith("window.ATTNKIT_INDEX = ") and '"旋转"' in index and "zh/01_demo.html#1-旋转位置编码" in index
    assert (tmp_path / "out" / "notebooks" / "zh" / "01_demo.ipynb").read_bytes() == (src / "zh" / "01_demo.ipynb").read_bytes()


def test_a_figure_without_alt_text_is_reported(site, tmp_path):
    src = chapters(tmp_path, two_languages(alt=("a plot", None)))
    lines = []
    report = site.build(tmp_path / "out", src, log=lines.append)
    assert len(report["missing_alt"]) == 1 and re.fullmatch(r"zh/01_demo cell cell-id=.+", report["missing_alt"][0])
    assert any("WARNING: a figure without alt text: zh/01_demo" in line for line in lines)


def test_bad_notebooks_are_refused_with_a_clear_error(site, tmp_path):
    with pytest.raises(site.SiteError, match="a cell shows a widget but stored no static figure"):
        bad = two_languages()
        bad["en"][1].outputs = bad["en"][1].outputs[:1]
        site.build(tmp_path / "out", chapters(tmp_path / "a", bad), log=lambda line: None)
    with pytest.raises(site.SiteError, match=r"01_demo: cannot turn \$x\^\$ into MathML"):
        site.build(tmp_path / "out", chapters(tmp_path / "b", two_languages(en_md="$x^$")), log=lambda line: None)
    (tmp_path / "c" / "ch" / "en").mkdir(parents=True)
    with pytest.raises(site.SiteError, match="must hold the same notebooks"):
        site.build(tmp_path / "out", tmp_path / "c" / "ch", log=lambda line: None)


# ---------------------------------------------------------------- tools/build.py: alt texts

def built(cells, chapter: str = "01"):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["attnkit"] = {"chapter": chapter}
    return nb


def test_the_build_stores_the_catalog_alt_text_with_every_png_of_the_cell():
    from attnkit.i18n import t

    for lang in ("en", "zh"):
        cell = figure_cell("explorer", widget=True)
        cell.metadata["alt"] = "ch01.alt.explorer"
        nb = built([cell, nbformat.v4.new_code_cell("x = 1")])
        build.write_alt(nb, lang, "01_demo.py")
        text = t("ch01.alt.explorer", lang=lang)
        png = [o for o in cell.outputs if "image/png" in o.data]
        assert png and all(o.metadata["image/png"]["alt"] == text for o in png)
        assert cell.metadata["alt"] == text


def test_the_build_refuses_a_figure_without_alt_text_or_an_unknown_key():
    with pytest.raises(build.SourceError, match=r'shows a figure but names no alt text: add alt="chNN.alt.NAME"'):
        build.write_alt(built([figure_cell("plot()")]), "en", "01_demo.py")
    cell = figure_cell("plot()")
    cell.metadata["alt"] = "ch01.alt.no_such_figure"
    with pytest.raises(build.SourceError, match="not in the chapter's catalog"):
        build.write_alt(built([cell]), "en", "01_demo.py")


@pytest.mark.parametrize("src", build.sources(), ids=lambda p: p.stem)
def test_every_alt_key_of_a_source_is_in_its_catalog_in_both_languages(src):
    """The keys a source names in its cell headers resolve (the build would stop on one that
    does not), and the Chinese text is Chinese."""
    import importlib

    from attnkit.i18n import t

    importlib.import_module(f"attnkit.text.ch{src.name[:2]}")
    keys = re.findall(r'^# %%.* alt="([^"]+)"', src.read_text(), flags=re.M)
    assert keys, f"{src.name}: no figure names its alt text"
    for key in keys:
        assert key.startswith(f"ch{src.name[:2]}.alt."), key
        assert re.search(r"[\u4e00-\u9fff]", t(key, lang="zh")) and len(t(key, lang="en")) > 40


def test_make_site_builds_and_make_test_does_not_depend_on_it():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^site: setup\n\t\$\(BIN\)/python tools/site\.py$", text, flags=re.M)
    assert "site" not in text.split("\ntest:")[1].splitlines()[0]
