"""One source, two languages: the built notebooks, their partner cells, and the build's promises."""

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build  # noqa: E402

CJK = re.compile(r"[\u4e00-\u9fff]")
SOURCES = build.sources()
# Translations the glossary (chapters/GLOSSARY.md) rules out, with the term to use instead.
NOT_OUR_TERMS = {"遮罩": "掩码", "蒙版": "掩码", "面具": "掩码", "令牌": "词元", "关键字": "键",
                 "询问": "查询", "注意机制": "注意力机制", "软最大": "softmax"}
# Terms that drifted between chapters: a pattern the Chinese text (prose cells and the
# Chinese side of every i18n key) must not contain, and the glossary's term for it.
DRIFTING_TERMS = {
    r"受限于内存(?!带宽)": "memory-bound: 受限于内存带宽 (bandwidth, not capacity)",
    r"闭式解": "closed form: 闭式表达式",
    r"局部结果": "partial result: 部分结果",
    r"内核": "kernel: 算子 (fused kernel: 融合算子)",
    r"访问量|内存读写|数据搬运|内存流量|读写量": "memory traffic: 访存量",
    r"折叠": "fold into: 并入; absorb (MLA): 吸收",
    r"第 0\d 章": "a chapter number without a leading zero: 第 2 章",
    r"练习 ?\d+\s*[.．]": "one exercise label form: **练习 1**：",
    r"填充 ?-?1e9|填充 ?(?:-?inf|-65504|-1e4)": "fill with: 填入 (填充 is padding)",
    r"填充\s*[=＝]\s*可以关注": "drawn = may attend: 着色 = 可以关注 (填充 is padding)",
    r"用 ?-?1e9 ?填充|填充被屏蔽": "fill with: 填入 (填充 is padding)",
    r"拓展练习|思考题": "stretch exercise: 挑战题; question: 问题 N",
    r"增量规则": "delta rule: delta 规则",
    r"完整注意力": "full attention: 全注意力",
    r"等人": "et al.: 等",
    r"检查程序": "checker: 检查器",
    r"动量": "Adam's moments: 矩估计 (AdamW 的两个矩估计)",
    r"(?<!读)输出层": "read-out (layer): 读出层",
    r"循环状态": "recurrent state: 状态",
    r"二次方(?!程)": "quadratic (cost): 平方级",
    r"小实验": "toy experiment: 玩具实验",
    r"三角函数(?!特征)": "trigonometric features: 三角函数特征",
    r"临时空间": "scratch memory: 临时内存",
    r"不许调用|禁止调用|禁止使用": "do not call: 不要调用",
    r"覆盖范围": "reach: 视野",
    r"\*\*问题 ?\d+\*\*|\*\*问题 ?\d+（先预测）\*\*(?!：)|\*\*先预测（问题": "question label: **问题 N（先预测）**：",
    r"\*\*练习 ?\d+\*\*(?!：)": "exercise label: **练习 N**：",
}
HEADING = re.compile(r"^(#{1,6})\s+(\d+(?:\.\d+)*)?")


def test_there_are_chapters():
    assert any(p.name.startswith("01_") for p in SOURCES)


def _cells(nb):
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
@pytest.mark.parametrize("lang", build.LANGS)
def test_built_notebook_equals_a_fresh_build(src, lang):
    path = build.target(src, lang)
    assert path.exists(), f"{path} is missing: run make chapters CHAPTER={src.stem[:2]}"
    built = nbformat.read(path, as_version=4)
    assert _cells(built) == _cells(build.split(src, lang)), f"{path} is stale: run make chapters"
    assert not build.edited_by_hand(path)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_both_languages_have_the_same_code(src):
    en, zh = (nbformat.read(build.target(src, lang), as_version=4) for lang in build.LANGS)
    code_en = [c.source for c in en.cells if c.cell_type == "code"]
    code_zh = [c.source.replace('set_language("zh")', 'set_language("en")', 1) if i == 0 else c.source
               for i, c in enumerate(c for c in zh.cells if c.cell_type == "code")]
    assert code_en == code_zh
    assert 'set_language("zh")' in next(c.source for c in zh.cells if c.cell_type == "code")
    # the partner cells: as many prose cells in each language, in the same places
    assert [c.cell_type for c in en.cells] == [c.cell_type for c in zh.cells]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_prose_is_in_its_language_and_uses_the_glossary(src):
    en, zh = (nbformat.read(build.target(src, lang), as_version=4) for lang in build.LANGS)
    for c in en.cells:
        if c.cell_type == "markdown":
            assert not CJK.search(c.source), f"Chinese in an English cell: {c.source[:80]!r}"
    for c in zh.cells:
        if c.cell_type == "markdown":
            assert CJK.search(c.source), f"a Chinese cell without Chinese: {c.source[:80]!r}"
            for wrong, right in NOT_OUR_TERMS.items():
                assert wrong not in c.source, f"use {right!r}, not {wrong!r} (GLOSSARY.md): {c.source[:80]!r}"


def drifting_terms(text: str) -> list[str]:
    """The glossary rules the Chinese ``text`` breaks, one line each."""
    return [f"{rule}: {m.group(0)!r} in ...{text[max(0, m.start() - 20):m.end() + 20]!r}..."
            for pattern, rule in DRIFTING_TERMS.items() for m in re.finditer(pattern, text)]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_chinese_prose_keeps_to_the_terms_that_drifted(src):
    zh = nbformat.read(build.target(src, "zh"), as_version=4)
    bad = [hit for c in zh.cells if c.cell_type == "markdown" for hit in drifting_terms(c.source)]
    assert not bad, "\n".join(bad)


def test_chinese_catalog_keeps_to_the_terms_that_drifted():
    import importlib
    import pkgutil

    import attnkit
    from attnkit import i18n

    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)
    bad = [f"{key}: {hit}" for key, texts in i18n.catalog().items() for hit in drifting_terms(texts["zh"])]
    assert not bad, "\n".join(bad)


def test_the_drifting_terms_are_caught():
    old = ("解码受限于内存；把 $W^{UK}$ 折叠进查询；与闭式解对照；合并两个局部结果；FlashAttention 内核；"
           "二者的差别在于内存读写；见第 02 章。**练习 1.** 拆分头；填充 -1e9；填充 = 可以关注")
    assert len(drifting_terms(old)) == 10
    old = ("完整注意力；Vaswani 等人；检查程序；AdamW 的两个动量；线性输出层；循环状态；二次方的开销；一个小实验；"
           "三角函数估计量；临时空间；不许调用 `f`；窗口的覆盖范围；**问题 2**：；**问题 1（先预测）**。；**练习 3**。")
    assert len(drifting_terms(old)) == 15
    assert drifting_terms("全注意力；Vaswani 等；检查器；AdamW 的两个矩估计；读出层；状态；平方级的开销；二次方程；"
                          "一个玩具实验；三角函数特征；临时内存；不要调用 `f`；窗口的视野；**问题 2（先预测）**："
                          "；**练习 3**：") == []
    assert drifting_terms("解码受限于内存带宽；把 $W^{UK}$ 吸收进查询；与闭式表达式对照；合并两个部分结果；"
                          "融合算子；二者的差别在于访存量；见第 2 章。**练习 1**：拆分头；填入 -1e9；"
                          "填充位置不可以关注；True 表示可以关注") == []


def headings(markdown: str) -> list[tuple[int, str | None]]:
    """(level, section number or None) of each Markdown heading, outside fenced code."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.append((len(m.group(1)), m.group(2)))
    return found


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_both_languages_have_the_same_headings(src):
    """Each prose cell and its partner have the same headings: same levels, same section numbers."""
    en, zh = (nbformat.read(build.target(src, lang), as_version=4) for lang in build.LANGS)
    prose = [[c.source for c in nb.cells if c.cell_type == "markdown"] for nb in (en, zh)]
    for i, (a, b) in enumerate(zip(*prose, strict=True)):
        assert headings(a) == headings(b), (f"prose cell {i}: English headings {headings(a)}, "
                                            f"Chinese {headings(b)}: {a[:60]!r} / {b[:60]!r}")


def test_headings_are_compared_by_level_and_number():
    assert headings("# 01 · Title\n## 6. What it costs\n```\n# not a heading\n```\n### Notes") == [
        (1, "01"), (2, "6"), (3, None)]
    assert headings("## 6. 开销\n正文") != headings("正文")
    assert headings("## 4.2 Tiles") != headings("### 4.2 分块")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
@pytest.mark.parametrize("lang", build.LANGS)
def test_built_notebooks_are_executed_cleanly(src, lang):
    nb = nbformat.read(build.target(src, lang), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "not executed: run make chapters"
    for c in code:
        for out in c.outputs:
            assert out.output_type != "error", f"error output in {c.source[:60]!r}"
            if out.output_type == "stream" and out.name == "stderr":
                assert "Glyph" not in out.text, f"missing glyphs: {out.text[:200]}"
    ignored = [c for c in code if "nbval-ignore-output" in c.metadata.get("tags", [])]
    assert len(ignored) <= len(code) // 3, "only widget and timing cells may skip output comparison"


def test_every_prose_cell_needs_its_partner(tmp_path):
    bad = tmp_path / "99_bad.py"
    bad.write_text('# %% [markdown] tags=["lang-en"]\n# Hello\n\n# %%\nset_language("en")\n')
    with pytest.raises(build.SourceError, match="no Chinese partner"):
        build.split(bad, "en")
    bad.write_text('# %% [markdown]\n# untagged\n\n# %%\nset_language("en")\n')
    with pytest.raises(build.SourceError, match="must be an English cell tagged lang-en"):
        build.split(bad, "en")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of chapters/src in a temporary tree, with the build pointed at it."""
    chapters = tmp_path / "chapters"
    shutil.copytree(ROOT / "chapters" / "src", chapters / "src")
    (tmp_path / "elsewhere.ipynb").write_text("{}")
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "CHAPTERS", chapters)
    monkeypatch.setattr(build, "SRC", chapters / "src")
    return tmp_path


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_build_writes_only_chapters_en_and_zh(sandbox):
    before = _tree(sandbox)
    assert build.main(["01", "--no-execute"]) == 0
    after = _tree(sandbox)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == {"chapters/en/01_scaled_dot_product.ipynb", "chapters/zh/01_scaled_dot_product.ipynb"}


def test_build_never_overwrites_a_notebook_the_learner_edited(sandbox):
    build.main(["01", "--no-execute", "--lang", "en"])
    path = sandbox / "chapters" / "en" / "01_scaled_dot_product.ipynb"
    nb = nbformat.read(path, as_version=4)
    # running cells (outputs, execution counts) is not an edit: rebuilding is allowed
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(nb, path)
    build.main(["01", "--no-execute", "--lang", "en"])
    # editing a cell (say, an exercise answer) is: the build refuses and leaves the file alone
    nb = nbformat.read(path, as_version=4)
    stub = next(c for c in nb.cells if "def my_attention" in c.source)
    stub.source = stub.source.replace("raise NotImplementedError", "return q")
    nbformat.write(nb, path)
    edited = path.read_bytes()
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        build.main(["01", "--no-execute", "--lang", "en"])
    assert path.read_bytes() == edited
    build.main(["01", "--no-execute", "--lang", "en", "--force"])
    assert path.read_bytes() != edited


def test_make_lab_and_make_test_never_build_notebooks():
    text = (ROOT / "Makefile").read_text()
    recipes = {}
    for block in re.split(r"\n(?=[a-z-]+:)", text):
        name = block.split(":", 1)[0]
        recipes[name] = [line for line in block.splitlines()[1:] if line.startswith("\t")]
    for target in ("lab", "test", "setup"):
        assert target in recipes, f"Makefile has no {target} target"
        assert not any("build.py" in line or "nbconvert" in line for line in recipes[target]), target
    assert "chapters" not in text.split("\ntest:")[1].splitlines()[0], "make test must not depend on make chapters"


def test_static_figures_are_up_to_date(tmp_path, monkeypatch):
    import figures

    monkeypatch.setattr(figures, "OUT", tmp_path)
    try:
        figures.main()
    finally:
        from attnkit import i18n

        i18n.set_language("en")
    for fresh in tmp_path.iterdir():
        committed = ROOT / "figures" / fresh.name
        assert committed.exists(), f"figures/{fresh.name} missing: run make figures"
        assert committed.read_bytes() == fresh.read_bytes(), f"figures/{fresh.name} is stale: run make figures"


def test_readmes_link_each_other_and_every_built_chapter():
    en, zh = (ROOT / "README.md").read_text(), (ROOT / "README_zh.md").read_text()
    assert "README_zh.md" in en and "README.md" in zh
    for src in SOURCES:
        for readme in (en, zh):
            for lang in build.LANGS:
                assert f"(chapters/{lang}/{src.stem}.ipynb)" in readme, f"{src.stem} ({lang}) not linked"
    for link in re.findall(r"\((chapters/(?:en|zh)/[^)]+\.ipynb)\)", en + zh):
        assert (ROOT / link).exists(), f"README links a missing notebook: {link}"


HAND_TIMING = re.compile(r"\bperf_counter\b|\btime\.time\(|\btimeit\b|\bmonotonic\(")


def hand_timing(text: str) -> list[str]:
    """Lines that time code by hand instead of through attnkit.timing."""
    return [line.strip() for line in text.splitlines() if HAND_TIMING.search(line)]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_timing_cells_use_the_shared_round_robin_helper_on_one_thread(src):
    """No hand-written timing loop in a chapter; every round-robin timing runs under one_thread()."""
    nb = build.split(src, "en")
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        assert not hand_timing(c.source), f"{src.name}: time with attnkit.timing, not {hand_timing(c.source)}"
        if re.search(r"\bround_robin_(medians|times)\(", c.source):
            assert "one_thread()" in c.source, f"{src.name}: time on one thread: {c.source[:80]!r}"


def test_library_modules_time_only_through_attnkit_timing():
    pkg = ROOT / "attnkit"
    bad = {p.relative_to(ROOT).as_posix(): hand_timing(p.read_text()) for p in pkg.rglob("*.py")
           if p.name != "timing.py" or p.parent != pkg}
    assert not {k: v for k, v in bad.items() if v}
    assert hand_timing("t0 = time.perf_counter()\nx = 1\n") == ["t0 = time.perf_counter()"]
