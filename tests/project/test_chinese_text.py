"""The Chinese text as a Chinese reader sees it: code that still runs, sentences a reader can hold,
and line breaks that do not turn into stray spaces.

Read from the chapter sources (``build.split``) and from the catalogs, so a fix shows here before
the notebooks are rebuilt. The rules are in chapters/AUTHORING.md, "Chinese text".
"""

import importlib
import pkgutil
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build  # noqa: E402

SOURCES = build.sources()
CJK = re.compile(r"[\u4e00-\u9fff]")
CODE_SPAN = re.compile(r"`([^`]+)`")
# Python statements chained with "; " (or a "for ...: x = ..." header) outside backticks: code a
# learner would copy, which must therefore be a code span (and so identical in Chinese).
STATEMENTS = re.compile(r"[\w)\]]; (?:[a-z_][\w.]*(?:\[[^\]]*\])?\s*[-+*/]?=\s|return\b|for\b|if\b)"
                        r"|\b(?:for|if|while)\b[^;:]*: [a-z_]\w*(?:\[[^\]]*\])?\s*[-+*/]?=\s")
FULL_WIDTH = "，。：；！？、（）—“”《》"
LONG = 90           # characters: a sentence longer than this is hard to hold in one breath
MOST_LONG = 11      # long sentences a chapter may keep (01-07 had 1 to 11 when this was written)


def _catalog() -> dict:
    import attnkit
    from attnkit import i18n

    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)
    return i18n.catalog()


def _prose(src, lang) -> list[str]:
    return [c.source for c in build.split(src, lang).cells if c.cell_type == "markdown"]


# ---- code is identical in both languages ------------------------------------------------------

def spans(text: str) -> Counter:
    """The code spans of a text, a line break inside one read as the space it renders as."""
    return Counter(re.sub(r"\s*\n\s*", " ", s) for s in CODE_SPAN.findall(text))


def code_problems(en: str, zh: str) -> list[str]:
    """What breaks 'code is identical in both languages' between an English text and its twin."""
    problems = [f"code outside backticks: {m.group(0)!r}"
                for m in STATEMENTS.finditer(CODE_SPAN.sub("C", en))]
    missing = spans(en) - spans(zh)
    problems += [f"`{span}` is not in the Chinese text unchanged" for span in missing]
    return problems


def test_code_in_the_catalogs_is_marked_and_unchanged_in_chinese():
    bad = [f"{key}: {p}" for key, texts in _catalog().items() for p in code_problems(texts["en"], texts["zh"])]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_code_spans_of_prose_are_unchanged_in_chinese(src):
    bad = [f"cell pair {i}: `{span}`"
           for i, (en, zh) in enumerate(zip(_prose(src, "en"), _prose(src, "zh"), strict=True))
           for span in spans(en) - spans(zh)]
    assert not bad, "code spans changed or missing in Chinese:\n" + "\n".join(bad)


def test_code_problems_are_caught():
    en = "r = zeros(n, bool); r[-1] = True; repeat L times: r = r | (r @ m > 0)"
    assert code_problems(en, en)                                 # statements must be a code span
    en = "`r = zeros(n, bool); r[-1] = True`; repeat L times"
    assert code_problems(en, "`r = zeros(n, bool)；r[-1] = True`；重复 L 次")
    assert code_problems(en, "`r = zeros(n, bool); r[-1] = True`；重复 L 次") == []
    assert code_problems("for s in range(0, N, C): e = min(N, s + C)", "") != []
    assert code_problems("Var(q·k) = d_k; so the spread grows like sqrt(d_k).", "") == []


# ---- sentences a reader can hold ----------------------------------------------------------------

def sentences(markdown: str) -> list[str]:
    """The sentences of Chinese prose: split at 。！？； and at paragraphs, list items and headings;
    a code span counts as one character, display math and the reference list are left out."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.split(r"^#+ *参考文献", text, flags=re.M)[0]
    text = CODE_SPAN.sub("C", text)
    text = re.sub(r"\$\$.*?\$\$", "M", text, flags=re.S)
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*] |\d+\. |#|\|))", text):
        joined = re.sub(r"\s*\n\s*", " ", block.strip())
        out += [s for s in re.split(r"(?<=[。！？；])", joined) if s.strip()]
    return out


def long_sentences(src) -> list[str]:
    return [s for md in _prose(src, "zh") for s in sentences(md) if len(s) > LONG and CJK.search(s)]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_few_long_chinese_sentences(src):
    found = long_sentences(src)
    assert len(found) <= MOST_LONG, (f"{len(found)} Chinese sentences over {LONG} characters (at most "
                                     f"{MOST_LONG}); split some at a natural pause:\n" + "\n".join(found))


def test_sentences_are_counted_as_a_reader_sees_them():
    assert sentences("一句。`a_very_long_name_of_code()` 算一个字符！第三句；\n\n## 参考文献\n- 不算。") == [
        "一句。", "C 算一个字符！", "第三句；"]
    assert sentences("甲\n乙。\n- 列表项\n$$x$$") == ["甲 乙。", "- 列表项 M"]


# ---- line breaks and spacing ----------------------------------------------------------------------

def soft_breaks(markdown: str) -> list[tuple[str, str]]:
    """(end of line, start of next line) at each line break inside a paragraph of prose."""
    out, fenced = [], False
    lines = markdown.split("\n")
    for a, b in zip(lines, lines[1:], strict=False):
        if a.strip().startswith("```"):
            fenced = not fenced
        if fenced or not a.strip() or not b.strip() or a.lstrip().startswith(("#", "|", "$$")):
            continue
        if re.match(r"\s*(?:#|\||[-*] |\d+\. |\$\$|```)", b) or a.rstrip().endswith("$$"):
            continue
        out.append((a.rstrip(), b.lstrip()))
    return out


def break_problems(markdown: str) -> list[str]:
    """Line breaks a renderer turns into a stray space: next to full-width punctuation, or between
    two Chinese characters (between Chinese and Latin text the space is wanted, and stays)."""
    bad = []
    for a, b in soft_breaks(markdown):
        if a[-1] in FULL_WIDTH or b[0] in FULL_WIDTH or (CJK.match(a[-1]) and CJK.match(b[0])):
            bad.append(f"...{a[-20:]!r} | {b[:20]!r}...")
    return bad


def spacing_problems(text: str) -> list[str]:
    """One space between Chinese and Latin text, code or a formula; none after a full-width colon;
    shapes in ASCII parentheses; a formula ends with ASCII punctuation."""
    rules = {r"[\u4e00-\u9fff][A-Za-z`]|[A-Za-z`][\u4e00-\u9fff]": "a space between Chinese and Latin text or code",
             r"：[ \t](?![ \t])": "no space after a full-width colon (two or more align a column)",
             r"（\s*[A-Za-z0-9_]+(?:\s*[,，]\s*[A-Za-z0-9_]+)+\s*）": "a shape in ASCII parentheses: (B, L, E)"}
    text = CODE_SPAN.sub(lambda m: "`" + "x" * len(m.group(1)) + "`", text)
    found = [f"{rule}: ...{text[max(0, m.start() - 12):m.end() + 12]!r}..."
             for pattern, rule in rules.items() for m in re.finditer(pattern, text)]
    return found + [f"a formula ends with ASCII punctuation: ...{m.group(0)[-30:]!r}"
                    for m in re.finditer(r"\$\$.*?\$\$|\$[^$\n]+\$", text, flags=re.S)
                    if re.search(r"[，。；：、]\s*\$+$", m.group(0))]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_chinese_line_breaks_do_not_render_as_stray_spaces(src):
    bad = [p for md in _prose(src, "zh") for p in break_problems(md)]
    assert not bad, "join these lines (a break here renders as a space):\n" + "\n".join(bad)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_chinese_spacing_and_punctuation(src):
    bad = [p for md in _prose(src, "zh") for p in spacing_problems(md)]
    assert not bad, "\n".join(bad)


def test_chinese_spacing_and_punctuation_in_the_catalogs():
    bad = [f"{key}: {p}" for key, texts in _catalog().items() for p in spacing_problems(texts["zh"])]
    assert not bad, "\n".join(bad)


def test_break_and_spacing_problems_are_caught():
    assert len(break_problems("展示计算过程，\n`nn.Linear` 按行\n——\n甲\n乙")) == 4
    assert break_problems("见下面的\n`code` 与\n$x$ 的结果") == []          # Chinese | Latin: the space is wanted
    assert break_problems("- 一项，\n- 另一项") == []                       # list items are not soft breaks
    assert len(spacing_problems("形状（B, L, E）： 甲`x`，$$y = x，$$")) == 4
    assert spacing_problems("形状 (B, L, E)：甲 `x` 乙：\n\n$$y = x,$$") == []


def test_checker_lines_read_as_chinese(capsys):
    """A title that ends in ？ takes no ：, and the choices a checker lists are joined with ；."""
    from attnkit import exercises
    from attnkit.exercises.ch08 import check_q2
    from attnkit.i18n import set_language

    set_language("zh")
    try:
        exercises.show_answer  # noqa: B018 -- the question machinery is loaded
        check_q2("x")
    finally:
        set_language("en")
    out = capsys.readouterr().out
    assert "？" in out and "？：" not in out and "?:" not in out, out
    assert "a) 64 个键的滑动窗口；b)" in out, out
