"""The Chinese build joins lines broken between two Chinese characters (the browser would show a
space there) and leaves every other line break alone."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import build  # noqa: E402


def test_a_break_between_chinese_characters_is_joined():
    assert build.join_cjk_lines("注意力把查询\n和键比较。") == "注意力把查询和键比较。"
    assert build.join_cjk_lines("这就是全部思想\n（Vaswani 等，2017）。") == "这就是全部思想（Vaswani 等，2017）。"
    assert build.join_cjk_lines("- 第一项很长\n  接着写完。") == "- 第一项很长接着写完。"


def test_other_breaks_stay():
    for text in ("用 `softmax`\n计算", "查询\n`q` 的形状", "the query\nand the key", "## 标题\n正文",
                 "| 列 |\n| 值 |", "段落一。\n\n段落二。", "硬换行  \n下一行", "```\n代码\n注释\n```",
                 "公式 $x$\n之后", "列表：\n- 一项"):
        assert build.join_cjk_lines(text) == text, text


def test_built_chinese_notebooks_have_no_break_between_chinese_characters():
    for src in build.sources():
        nb = build.split(src, "zh")
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                assert cell.source == build.join_cjk_lines(cell.source), (src.name, cell.source[:80])
