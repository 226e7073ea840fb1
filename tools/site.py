"""Build the course as a static website from the stored notebooks (no execution): ``make site``.

    python tools/site.py                  # -> build/site/
    python tools/site.py --out /tmp/site

Reads ``chapters/en/NN_*.ipynb`` and ``chapters/zh/NN_*.ipynb`` as they are stored and writes:

- ``index.html``: the landing page, both languages;
- ``en/NAME.html`` and ``zh/NAME.html`` per chapter (NAME: the notebook's file name without
  ``.ipynb``): prose, code and stored outputs (nbconvert's ``basic`` template), a table of
  contents, previous / next chapter, the same chapter in the other language, a link to a copy of
  the notebook (``notebooks/LANG/NAME.ipynb``); the interface text comes from the i18n catalog
  ``attnkit/text/site.py``;
- ``assets/``: the style sheet, the search script, one search index per language as a script
  (``search-en.js``: a page opened from ``file://`` cannot fetch a JSON file, it can load a
  script), and ``LICENSES.txt`` for everything there.

Math is turned into MathML here, with latex2mathml (Python): the browser draws it, no MathJax, no
CDN; a ``$`` left in a page's prose is an error. A widget's stored view is replaced by the static
figure the same cell drew, with a line saying the notebook has the live explorer. A figure's alt
text is the one the build stored with the image (``metadata["image/png"]["alt"]``, from the
chapter's catalog: see tools/build.py); figures without one are listed as a warning. Nothing is
fetched, at build time or when a page is read.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import jinja2
import nbformat
from bs4 import BeautifulSoup
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attnkit.text.site  # noqa: E402,F401  (registers the site.* keys)
from attnkit.i18n import LANGUAGES, t  # noqa: E402

CHAPTERS = ROOT / "chapters"
ASSETS = Path(__file__).resolve().parent / "site_assets"
HTML_LANG = {"en": "en", "zh": "zh-CN"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
LATIN = re.compile(r"[a-z0-9]+")
RAW_MATH = re.compile(r"\$[^$\s][^$]*\$|\$\$")
TITLE_WEIGHT, CHAPTER_WEIGHT = 10, 3  # a word in a section's heading counts ten times


class SiteError(RuntimeError):
    """The notebooks cannot be turned into the site as the rules say."""


# ---------------------------------------------------------------- tokens (same as search.js)

def tokens(text: str) -> list[str]:
    """Latin words and digits in lower case, then Chinese character bigrams (a lone character is
    one token): the tokens of search.js, which must stay the same."""
    text = text.lower()
    out = LATIN.findall(text)
    for run in CJK_RUN.findall(text):
        out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
    return out


# ---------------------------------------------------------------- markdown with MathML

class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with math turned into MathML and headings given ids."""

    def __init__(self, page: Page):
        super().__init__(escape=False, exclude_anchor_links=True)
        self.page = page

    def _math(self, latex: str, display: str) -> str:
        try:
            mathml = latex_to_mathml(latex.strip(), display=display)
        except Exception as e:  # noqa: BLE001 - named with the page and the formula
            raise SiteError(f"{self.page.name}: cannot turn ${latex}$ into MathML: {e}") from e
        return mathml.replace("<math ", f'<math alttext="{html.escape(latex.strip())}" ', 1)

    def block_math(self, body: str) -> str:
        return self._math(body, "block")

    def inline_math(self, body: str) -> str:
        return self._math(body, "inline")

    def latex_environment(self, name: str, body: str) -> str:
        return self._math(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")

    def heading(self, text: str, level: int, **attrs) -> str:
        ident = self.page.new_id(BeautifulSoup(text, "html.parser").get_text())
        return f'<h{level} id="{ident}">{text}</h{level}>\n'


class Page:
    """One chapter in one language: its notebook, ids and rendered body."""

    def __init__(self, lang: str, path: Path):
        self.lang, self.path, self.name = lang, path, path.stem
        self.ids: Counter = Counter()
        self.nb = nbformat.read(path, as_version=4)
        first = next((c.source for c in self.nb.cells if c.cell_type == "markdown"), "")
        m = re.search(r"^#\s+(.+)$", first, flags=re.M)
        if not m:
            raise SiteError(f"{path}: the first Markdown cell has no '# title'")
        self.title_md = m.group(1).strip()
        self.body = self.title_html = ""
        self.toc: list[tuple[str, str]] = []          # (id, heading HTML) of the ## headings
        self.sections: list[dict] = []                # search documents
        self.missing_alt: list[str] = []

    def new_id(self, text: str) -> str:
        slug = "-".join(re.findall(r"[\w\u3400-\u9fff]+", text.lower()))[:60] or "section"
        self.ids[slug] += 1
        return slug if self.ids[slug] == 1 else f"{slug}-{self.ids[slug]}"

    def markdown(self, source: str, body: bool = True) -> str:
        """One Markdown cell as HTML (nbconvert's markdown2html filter); a cell of the body also
        adds its headings to the contents and its text to the search sections."""
        out = MarkdownWithMath(renderer=MathMLRenderer(self)).render(source)
        if not body:
            return out
        soup = BeautifulSoup(out, "html.parser")
        for el in soup.find_all(True, recursive=False):
            if el.name in ("h1", "h2"):
                if el.name == "h2":
                    self.toc.append((el["id"], el.decode_contents()))
                self.sections.append({"id": el["id"], "title": plain(el), "text": []})
            elif self.sections:
                self.sections[-1]["text"].append(plain(el))
        for text in soup.find_all(string=RAW_MATH):
            if not text.find_parent(["code", "pre", "math"]):
                raise SiteError(f"{self.lang}/{self.name}: raw math left in the prose: {text.strip()[:80]!r}")
        return out


def replace_widgets(nb, lang: str, name: str) -> int:
    """Drop every stored widget view; the cell keeps the static figure it drew, and a line says
    that the notebook has the live explorer. Returns how many were replaced."""
    note = (f'<p class="live-note">{html.escape(t("site.live_explorer", lang=lang))}</p>')
    n = 0
    for c in nb.cells:
        outs = c.get("outputs", [])
        if c.cell_type != "code" or not any(WIDGET_VIEW in o.get("data", {}) for o in outs):
            continue
        kept = [o for o in outs if WIDGET_VIEW not in o.get("data", {})]
        if not any("image/png" in o.get("data", {}) for o in kept):
            raise SiteError(f"{lang}/{name}: a cell shows a widget but stored no static figure: {c.source[:60]!r}")
        c.outputs = kept + [nbformat.v4.new_output("display_data", data={"text/html": note})]
        n += 1
    nb.metadata.pop("widgets", None)
    return n


def set_aside_images(nb) -> dict[str, str]:
    """Replace each stored PNG by a short placeholder (put back in the finished page): the HTML
    parsers below then read kilobytes, not megabytes of base64. Returns placeholder -> base64."""
    images = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            if "image/png" in o.get("data", {}):
                key = f"attnkit-png-{len(images):04d}"
                images[key] = o.data["image/png"]
                o.data["image/png"] = key
    return images


def render(page: Page, exporter: HTMLExporter) -> None:
    """Fill the page's body, table of contents, search sections and missing alt texts."""
    replace_widgets(page.nb, page.lang, page.name)
    images = set_aside_images(page.nb)
    page.title_html = page.markdown(page.title_md, body=False).strip().removeprefix("<p>").removesuffix("</p>")
    exporter.register_filter("markdown2html", page.markdown)
    # TemplateExporter's conversion, without HTMLExporter's own pass of an HTML parser over the
    # whole page (it puts a placeholder where an alt text is missing, which is an error here, and
    # tabindex on the cells of the lab template): that pass alone doubled the build time
    body, _ = TemplateExporter.from_notebook_node(exporter, page.nb)
    cell = "?"
    for m in re.finditer(r'<div[^>]*\bid="(cell-id=[^"]+)"|<img\b[^>]*>', body):
        if m.group(1):
            cell = m.group(1)
        elif not re.search(r'\balt="[^"]*\S[^"]*"', m.group(0)):
            page.missing_alt.append(cell)
    for key, data in images.items():
        body = body.replace(key, data, 1)
    page.body = body


def plain(el) -> str:
    """The text of an element as a reader sees it (a formula's symbols spaced apart, not its LaTeX)."""
    parts = []
    for node in el.descendants:
        if isinstance(node, str) and not node.find_parent("math"):
            parts.append(str(node))
        elif getattr(node, "name", None) == "math":
            parts.append(latex_text(node.get("alttext", "")))
    return re.sub(r"\s+", " ", "".join(parts)).strip()


LATEX_SYMBOLS = {"cdot": "·", "top": "ᵀ", "times": "×", "le": "≤", "ge": "≥", "ne": "≠", "approx": "≈",
                 "to": "→", "infty": "∞", "sum": "Σ", "ell": "ℓ", "theta": "θ", "alpha": "α", "phi": "φ",
                 "lceil": "⌈", "rceil": "⌉", "in": "∈", "dots": "…", "ldots": "…", "log": "log", "exp": "exp"}


def latex_text(latex: str) -> str:
    """A formula as plain text for the search index and page titles: √d_k, q_m · k_n, QKᵀ."""
    text = re.sub(r"\\sqrt\{([^{}]*)\}", r"√\1", latex)
    text = re.sub(r"\\(?:mathrm|text|operatorname|mathbf|mathbb)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: LATEX_SYMBOLS.get(m.group(1), m.group(1)), text)
    return re.sub(r"\\[,!;: ]|[{}]", "", text)


# ---------------------------------------------------------------- search index

def search_index(pages: list[Page], lang: str) -> str:
    """The search index of one language as a script: docs [url, chapter, section, snippet] and
    terms {token: [[doc, weight], ...]}."""
    docs, terms = [], {}
    for page in pages:
        chapter_title = plain(BeautifulSoup(page.title_html, "html.parser"))
        for s in page.sections:
            d = len(docs)
            body = " ".join(s["text"])
            docs.append([f"{lang}/{page.name}.html#{s['id']}", chapter_title, s["title"], body[:160]])
            weight = Counter(tokens(body))
            for tok, n in Counter(tokens(s["title"])).items():
                weight[tok] += TITLE_WEIGHT * n
            for tok in set(tokens(chapter_title)):
                weight[tok] += CHAPTER_WEIGHT
            for tok, w in weight.items():
                terms.setdefault(tok, []).append([d, w])
    index = {"docs": docs, "terms": terms,
             "ui": {"results": t("site.results", lang=lang, n="{n}"), "none": t("site.no_results", lang=lang)}}
    return "window.ATTNKIT_INDEX = " + json.dumps(index, ensure_ascii=False, separators=(",", ":")) + ";\n"


# ---------------------------------------------------------------- pages

PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="{{ html_lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title_text }} · attnkit</title>
<link rel="stylesheet" href="../assets/site.css">
<link rel="stylesheet" href="../assets/pygments.css">
<link rel="alternate" hreflang="{{ other_html_lang }}" href="../{{ other }}/{{ name }}.html">
<script src="../assets/search-{{ lang }}.js" defer></script>
<script src="../assets/search.js" defer></script>
</head>
<body data-root="../">
<a class="skip" href="#main">{{ t("site.skip") }}</a>
<header class="bar">
  <a class="lang-link" href="../{{ other }}/{{ name }}.html" lang="{{ other_html_lang }}" hreflang="{{ other_html_lang }}">{{ other_name }}</a>
  <details class="toc">
    <summary>{{ t("site.contents") }}</summary>
    <nav aria-label="{{ t('site.contents') }}">
      <h2>{{ t("site.on_this_page") }}</h2>
      <ol>{% for id, heading in toc %}<li><a href="#{{ id }}">{{ heading }}</a></li>{% endfor %}</ol>
      <h2>{{ t("site.chapters") }}</h2>
      <ol>{% for p in pages %}<li><a href="{{ p.name }}.html"{% if p.name == name %} aria-current="page"{% endif %}>{{ p.title_html }}</a></li>{% endfor %}</ol>
      <p><a href="../index.html">{{ t("site.home") }}</a></p>
    </nav>
  </details>
  <form class="search" id="search" role="search" action="#">
    <label class="visually-hidden" for="search-input">{{ t("site.search") }}</label>
    <input id="search-input" type="search" placeholder="{{ t('site.search_hint') }}" autocomplete="off">
    <div class="search-panel"><p id="search-status" class="visually-hidden" role="status" aria-live="polite"></p><ol id="search-results"></ol></div>
  </form>
  {{ chapter_nav }}
</header>
<main id="main" tabindex="-1">
{{ body }}
<p><a class="notebook-link" href="../notebooks/{{ lang }}/{{ name }}.ipynb" download>{{ t("site.notebook") }}</a></p>
{{ chapter_end }}
</main>
<footer><p>{{ t("site.offline") }} {{ t("site.licence") }}</p></footer>
</body>
</html>
""", autoescape=False)

LANDING = jinja2.Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ en_title }} · {{ zh_title }}</title>
<link rel="stylesheet" href="assets/site.css">
</head>
<body>
<a class="skip" href="#main">{{ skip }}</a>
<main id="main" tabindex="-1">
<h1>attnkit</h1>
<div class="landing">
{% for lang, title, tagline, pages in langs %}
<section lang="{{ html_lang[lang] }}" aria-labelledby="h-{{ lang }}">
  <h2 id="h-{{ lang }}">{{ title }}</h2>
  <p>{{ tagline }}</p>
  <ol>{% for p in pages %}<li><a href="{{ lang }}/{{ p.name }}.html">{{ p.title_html }}</a></li>{% endfor %}</ol>
</section>
{% endfor %}
</div>
</main>
<footer><p>{{ offline }}</p></footer>
</body>
</html>
""", autoescape=False)


def chapter_nav(pages: list[Page], i: int, lang: str, top: bool) -> str:
    """Previous / next chapter: in the header by number (a landmark), at the end by title."""
    links = []
    for j, key, rel in ((i - 1, "site.prev", "prev"), (i + 1, "site.next", "next")):
        if 0 <= j < len(pages):
            title = pages[j].name[:2] if top else pages[j].title_html
            links.append(f'<a rel="{rel}" href="{pages[j].name}.html">{t(key, lang=lang, title=title)}</a>')
    if top:
        return (f'<nav class="chapter-nav" aria-label="{html.escape(t("site.chapter_nav", lang=lang))}">'
                + "".join(links) + "</nav>")
    return '<div class="chapter-nav">' + "".join(links) + "</div>"


def notebooks(chapters: Path, lang: str) -> list[Path]:
    return sorted((chapters / lang).glob("[0-9][0-9]_*.ipynb"))


def build(out: Path, chapters: Path = CHAPTERS, log=print) -> dict:
    """Write the site into ``out`` (emptied first) from the notebooks of ``chapters/en`` and
    ``chapters/zh``; returns what it wrote, what it warned about and its wall and CPU seconds."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    names = {lang: [p.stem for p in notebooks(chapters, lang)] for lang in LANGUAGES}
    if not names["en"] or names["en"] != names["zh"]:
        raise SiteError(f"{chapters}/en and {chapters}/zh must hold the same notebooks, got {names}")
    exporter = HTMLExporter(template_name="basic", exclude_input_prompt=True, exclude_output_prompt=True)
    # bleach's sanitizer on every highlighted code cell is a third of the build; the notebooks
    # are the course's own, built by tools/build.py, not pages from strangers
    exporter.register_filter("clean_html", lambda text: text)
    exporter.register_filter("highlight_code", Highlight2HTML(pygments_lexer="ipython3", parent=exporter))
    pages = {lang: [Page(lang, p) for p in notebooks(chapters, lang)] for lang in LANGUAGES}
    if out.exists():
        shutil.rmtree(out)
    (out / "assets").mkdir(parents=True)
    for name in ("site.css", "search.js", "LICENSES.txt"):
        shutil.copy(ASSETS / name, out / "assets" / name)
    (out / "assets" / "pygments.css").write_text(
        "/* generated by Pygments (BSD-2-Clause, see LICENSES.txt), style 'default' */\n"
        + HtmlFormatter(style="default").get_style_defs(".highlight") + "\n")
    missing = []
    for lang in LANGUAGES:
        other = LANGUAGES[1 - LANGUAGES.index(lang)]
        for page in pages[lang]:
            render(page, exporter)
            missing += [f"{lang}/{page.name} cell {c}" for c in page.missing_alt]
        (out / lang).mkdir()
        (out / "notebooks" / lang).mkdir(parents=True)
        for i, page in enumerate(pages[lang]):
            text = PAGE.render(
                t=lambda key, _lang=lang, **kw: t(key, lang=_lang, **kw), lang=lang, other=other,
                other_name=t("site.lang_name", lang=other), html_lang=HTML_LANG[lang], other_html_lang=HTML_LANG[other], name=page.name,
                title_html=page.title_html, title_text=plain(BeautifulSoup(page.title_html, "html.parser")),
                toc=page.toc, pages=pages[lang], body=page.body,
                chapter_nav=chapter_nav(pages[lang], i, lang, top=True),
                chapter_end=chapter_nav(pages[lang], i, lang, top=False))
            (out / lang / f"{page.name}.html").write_text(text, encoding="utf-8")
            shutil.copy(page.path, out / "notebooks" / lang / page.path.name)
        (out / "assets" / f"search-{lang}.js").write_text(search_index(pages[lang], lang), encoding="utf-8")
    (out / "index.html").write_text(LANDING.render(
        en_title=t("site.title", lang="en"), zh_title=t("site.title", lang="zh"), html_lang=HTML_LANG,
        skip=t("site.skip", lang="en"), offline=t("site.offline", lang="en"),
        langs=[(lang, t("site.title", lang=lang), t("site.tagline", lang=lang), pages[lang])
               for lang in LANGUAGES]), encoding="utf-8")
    for m in missing:
        log(f"site: WARNING: a figure without alt text: {m} (rebuild the notebook: tools/build.py)")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    log(f"site: {sum(len(p) for p in pages.values())} pages in {out} ({seconds:.1f} s, {cpu:.1f} s of CPU)")
    return {"pages": {lang: [p.name for p in pages[lang]] for lang in LANGUAGES},
            "missing_alt": missing, "seconds": seconds, "cpu_seconds": cpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where to write (emptied first)")
    ap.add_argument("--chapters", type=Path, default=CHAPTERS,
                    help="the folder holding en/ and zh/ with the built notebooks (default: chapters)")
    args = ap.parse_args(argv)
    try:
        build(args.out, args.chapters)
    except SiteError as e:
        print(f"site: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
