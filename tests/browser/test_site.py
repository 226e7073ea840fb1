"""The course's website (tools/site.py, `make site`) in Debian's Chromium, offline.

One build of the site from the stored notebooks (into a temporary folder), then the pages are
opened from file:// and from a local http server on 127.0.0.1, with every request that would
leave this machine blocked and counted (there must be none). The checks: the language link leads
to the same chapter in the other language; the searches "softmax", "RoPE", "注意力" and
"旋转位置编码" find their chapters; every figure has alt text in the page's language; `lang` is
set; the keyboard reaches skip link, language link, contents, search and previous / next in
that order, each with a visible focus ring; axe-core (bundled by axe-playwright-python, injected
into the page: nothing is fetched) finds no violation of impact serious or critical. A
screenshot per language goes to tests/browser/screenshots/.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labserver import SCREENSHOTS, record_screenshot  # noqa: E402
from site_check import CJK, RequestGuard, SiteServer, build_site, is_local  # noqa: E402

CHAPTER = {"en": "06_rope_and_positions", "zh": "06_rope_and_positions"}
SEARCHES = {  # query -> the chapter its first result must be in (None: results in most chapters)
    "en": {"softmax": "03_softmax", "RoPE": "06_rope_and_positions"},
    "zh": {"注意力": None, "旋转位置编码": "06_rope_and_positions"},
}
HTML_LANG = {"en": "en", "zh": "zh-CN"}


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    report = build_site(out)
    report["root"] = out
    print("\n".join(report["log"]))
    return report


def _browser_conftest(request):
    """tests/browser/conftest.py as loaded by pytest (its Chromium flags and skip rule)."""
    here = Path(__file__).resolve().parent / "conftest.py"
    for plugin in request.config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", "") or "/").resolve() == here:
            return plugin
    raise RuntimeError("tests/browser/conftest.py is not loaded")


@pytest.fixture(scope="module")
def browser(request):
    conf = _browser_conftest(request)
    conf.require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=conf.find_chromium(), headless=True, args=conf.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(site):
    s = SiteServer(site["root"])
    yield s
    s.stop()


@pytest.fixture(params=["file", "http"])
def base(request, site, server):
    """The site's root URL, from file:// and from the server on 127.0.0.1."""
    return site["root"].as_uri() if request.param == "file" else server.url


@pytest.fixture
def page_and_guard(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, service_workers="block")
    guard = RequestGuard(context)
    page = context.new_page()
    yield page, guard
    context.close()
    assert guard.blocked == [], f"requests that would leave this machine: {guard.blocked}"


# ---------------------------------------------------------------- the build, without a browser

def test_the_build_writes_every_page_quickly(site):
    root = site["root"]
    chapters = Path(os.environ.get("ATTNKIT_SITE_CHAPTERS", site["module"].CHAPTERS))
    for lang in ("en", "zh"):
        names = sorted(p.stem for p in (chapters / lang).glob("[0-9][0-9]_*.ipynb"))
        assert names and site["pages"][lang] == names
        for name in names:
            assert (root / lang / f"{name}.html").is_file()
            assert (root / "notebooks" / lang / f"{name}.ipynb").read_bytes() == (chapters / lang / f"{name}.ipynb").read_bytes()
    assert (root / "index.html").is_file()
    # every bundled file is named in the licence file that ships with it
    licences = (root / "assets" / "LICENSES.txt").read_text()
    for f in (root / "assets").iterdir():
        assert f.name == "LICENSES.txt" or f.name in licences, f"{f.name} is not in assets/LICENSES.txt"
    # the build stays under a minute; its CPU time is what it costs, whatever else runs on the machine
    assert site["cpu_seconds"] < 60, site["log"]


def test_pages_load_nothing_from_outside_the_site(site):
    """What a page loads (scripts, style sheets, images) is in the site; its relative links lead
    to files of the site. (A link in the prose to a paper may point outside: it is not loaded.)"""
    root = site["root"]
    for page in root.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        loaded = re.findall(r'\bsrc="([^"]+)"', text) + re.findall(r'<link\b[^>]*\bhref="([^"]+)"', text)
        assert loaded
        for url in loaded:
            assert url.startswith("data:") or not re.match(r"[a-z][a-z0-9+.-]*:|//", url), (page, url)
        for url in re.findall(r'<a\b[^>]*\bhref="([^"]+)"', text) + loaded:
            if not re.match(r"[a-z][a-z0-9+.-]*:|//|#", url):
                target = (page.parent / url.split("#")[0]).resolve()
                assert target.is_relative_to(root.resolve()) and target.exists(), (page, url)


def test_prose_has_no_raw_math_and_figures_have_alt_text_in_their_language(site):
    root = site["root"]
    assert site["missing_alt"] == [], "figures without alt text (rebuild the notebooks: make chapters)"
    for lang in ("en", "zh"):
        for page in (root / lang).glob("*.html"):
            text = page.read_text(encoding="utf-8")
            assert f'<html lang="{HTML_LANG[lang]}">' in text
            prose = re.sub(r"<(pre|code|math)\b.*?</\1>", "", text, flags=re.S)
            prose = re.sub(r'<div class="output_wrapper">.*?</div>\s*</div>', "", prose, flags=re.S)
            assert not re.search(r"\$[^$\s<][^$<]*\$", prose), f"{page.name}: raw $...$ in the prose"
            for alt in re.findall(r'<img\b[^>]*\balt="([^"]*)"', text):
                assert alt.strip()
                assert bool(CJK.search(alt)) == (lang == "zh"), f"{page.name}: alt {alt[:60]!r} not in {lang}"
    # a widget's stored view is gone; its static figure and the line about the live explorer stay
    chapters = Path(os.environ.get("ATTNKIT_SITE_CHAPTERS", site["module"].CHAPTERS))
    nb = nbformat.read(chapters / "en" / "01_scaled_dot_product.ipynb", as_version=4)
    widgets = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                  for c in nb.cells for o in c.get("outputs", []))
    html = (root / "en" / "01_scaled_dot_product.html").read_text(encoding="utf-8")
    assert widgets >= 1 and html.count('class="live-note"') == widgets
    assert "widget-view" not in html and "jupyter-widgets" not in html


def test_the_index_tokens_match_the_search_script(site, browser):
    """tools/site.py and search.js cut text into the same tokens (Chinese: character bigrams)."""
    page = browser.new_page()
    try:
        page.goto((site["root"] / "en" / f"{CHAPTER['en']}.html").as_uri())
        for text in ("Softmax, RoPE and KV-cache 2x", "旋转位置编码", "注意力（attention）机制", "猫"):
            js = page.evaluate("t => window.attnkitSearch.tokens(t).map(x => x.tok)", text)
            assert js == site["module"].tokens(text), text
    finally:
        page.close()


# ---------------------------------------------------------------- in the browser

def test_landing_page_shows_both_languages(site, base, page_and_guard):
    page, guard = page_and_guard
    page.goto(f"{base}/index.html")
    assert page.evaluate("document.documentElement.lang") == "en"
    for lang in ("en", "zh"):
        links = page.locator(f'section[lang="{HTML_LANG[lang]}"] a')
        assert links.count() == len(site["pages"][lang])
        links.first.click()
        assert re.search(rf"/{lang}/01_[a-z_]+\.html$", page.url)
        assert page.evaluate("document.documentElement.lang") == HTML_LANG[lang]
        page.go_back()
    assert guard.seen and all(is_local(u) for u in guard.seen)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_language_link_math_and_figures(lang, base, page_and_guard):
    page, _ = page_and_guard
    name = CHAPTER[lang]
    page.goto(f"{base}/{lang}/{name}.html")
    assert page.evaluate("document.documentElement.lang") == HTML_LANG[lang]
    # math is MathML the browser lays out: a formula has a width, and no $ is left in the text
    widths = page.eval_on_selector_all("main math", "els => els.map(e => e.getBoundingClientRect().width)")
    assert len(widths) > 20 and min(widths) > 0
    assert not re.search(r"\$[^$\s][^$]*\$", page.inner_text(".text_cell_render >> nth=0"))
    # every figure is drawn and has alt text in the page's language
    images = page.eval_on_selector_all("main img", "els => els.map(e => [e.alt, e.naturalWidth])")
    assert images and all(w > 0 and alt.strip() for alt, w in images)
    assert all(bool(CJK.search(alt)) == (lang == "zh") for alt, _ in images)
    # the language link leads to the same chapter in the other language
    other = "zh" if lang == "en" else "en"
    page.click("a.lang-link")
    page.wait_for_load_state()
    assert page.url.endswith(f"/{other}/{name}.html")
    assert page.evaluate("document.documentElement.lang") == HTML_LANG[other]
    # the notebook link is relative and its file is in the site
    href = page.get_attribute("a.notebook-link", "href")
    assert href == f"../notebooks/{other}/{name}.ipynb"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_search_finds_the_chapters(lang, base, page_and_guard):
    page, _ = page_and_guard
    page.goto(f"{base}/{lang}/01_scaled_dot_product.html")
    for query, chapter in SEARCHES[lang].items():
        page.fill("#search-input", query)
        hrefs = page.eval_on_selector_all("#search-results a", "els => els.map(e => e.getAttribute('href'))")
        assert hrefs, f"{query!r} found nothing"
        found = [re.search(r"/(\d\d_[a-z_]+)\.html", h).group(1) for h in hrefs]
        assert all(h.startswith(f"../{lang}/") for h in hrefs)
        if chapter:
            assert found[0] == chapter, (query, found[:5])
        else:  # attention is every chapter's subject
            assert {"01_scaled_dot_product", "04_multi_head_attention"} <= set(found) and len(set(found)) >= 8, found
        assert page.locator("#search-status").inner_text().strip()
    # a result is a link to the section; following it opens that chapter at that section
    page.fill("#search-input", next(iter(SEARCHES[lang])))
    first = page.locator("#search-results a").first
    target = first.get_attribute("href")
    first.click()
    page.wait_for_load_state()
    assert unquote(page.url).endswith(target.removeprefix(".."))
    assert page.evaluate("document.getElementById(decodeURIComponent(location.hash.slice(1))) !== null")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_keyboard_order_and_visible_focus(lang, site, page_and_guard):
    page, _ = page_and_guard
    page.goto((site["root"] / lang / f"{CHAPTER[lang]}.html").as_uri())
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("""() => {
            const e = document.activeElement, s = getComputedStyle(e), r = e.getBoundingClientRect();
            return {what: e.matches('a.skip') ? 'skip' : e.matches('a.lang-link') ? 'language'
                          : e.matches('details.toc > summary') ? 'contents' : e.id === 'search-input' ? 'search'
                          : e.getAttribute('rel') || e.tagName,
                    outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                    visible: r.width > 0 && r.height > 0 && r.top >= 0 && r.bottom <= innerHeight};
        }"""))
    assert [o["what"] for o in order] == ["skip", "language", "contents", "search", "prev", "next"], order
    for o in order:
        assert o["outline"] != "none" and o["width"] >= 2 and o["visible"], o
    # the skip link moves the focus to the chapter; Enter on the contents opens them
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.matches('details.toc > summary')")
    page.keyboard.press("Enter")
    assert page.evaluate("document.querySelector('details.toc').open")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('details.toc nav') !== null")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.matches('a.skip')")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


# axe's colour-contrast rule reads the colours of every text node (13 s for one chapter with its
# highlighted code and MathML); the page's classes are the same in every cell, so that rule runs
# on the header, the footer, the live-explorer lines and the first cells of the chapter, and
# every other rule on the whole page
CONTRAST_SAMPLE = {"include": [["header"], ["footer"], [".live-note"], ["main > .cell:nth-of-type(-n+12)"]]}


def axe_violations(page, axe, path: str) -> list[tuple]:
    everything_else = axe.run(page, options={"resultTypes": ["violations"],
                                             "rules": {"color-contrast": {"enabled": False}}}).response
    contrast = axe.run(page, context=CONTRAST_SAMPLE,
                       options={"resultTypes": ["violations"], "runOnly": ["color-contrast"]}).response
    assert everything_else["testEngine"]["name"] == "axe-core"
    assert contrast["toolOptions"]["runOnly"]["values"] == ["color-contrast"]
    return [(path, v["id"], v["impact"], len(v["nodes"]), v["nodes"][0]["html"][:120])
            for r in (everything_else, contrast) for v in r["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_axe_finds_no_serious_violation_and_screenshot(lang, site, page_and_guard):
    from axe_playwright_python.sync_playwright import Axe

    page, _ = page_and_guard
    axe = Axe()
    for path in (["index.html"] if lang == "en" else []) + [f"{lang}/{CHAPTER[lang]}.html"]:
        page.goto((site["root"] / path).as_uri())
        assert axe_violations(page, axe, path) == []
    page.locator("main img").nth(1).scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"site-{lang}.png"
    page.screenshot(path=str(shot))
    record_screenshot(shot)
    assert shot.stat().st_size > 10_000


def test_axe_check_sees_a_serious_violation(site, page_and_guard):
    """The check can fail: low-contrast text and an image without alt text are reported."""
    from axe_playwright_python.sync_playwright import Axe

    page, _ = page_and_guard
    page.goto((site["root"] / "index.html").as_uri())  # the small page: a second of axe, not five
    page.evaluate("""() => {
        document.querySelector('footer p').style.color = '#d8d8d8';
        const img = document.createElement('img');
        img.src = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
        document.querySelector('main').append(img);
    }""")
    found = {v[1] for v in axe_violations(page, Axe(), "broken")}
    assert {"color-contrast", "image-alt"} <= found, found
