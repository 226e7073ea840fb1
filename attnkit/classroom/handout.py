"""Learner copies of chosen chapters in one language, outputs cleared, with a short README.

A file already in the output folder is never overwritten: a learner may have started on it. If
it holds exactly what the handout would write, it is left as it is; otherwise it is kept and
reported, and nothing is written in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attnkit.classroom.originals import (
    ClassroomError,
    built_path,
    chapter_id,
    chapters_dir,
    known_chapters,
)
from attnkit.i18n import LANGUAGES, register, t

register({
    "classroom.handout.wrote": {"en": "wrote {path}", "zh": "已写入 {path}"},
    "classroom.handout.same": {"en": "{path} is already there, unchanged", "zh": "{path} 已存在，内容相同，未改动"},
    "classroom.handout.kept": {
        "en": "kept {path}: it differs from the handout (a learner may have edited it), so it was not overwritten; "
              "hand out into an empty folder, or move it away first",
        "zh": "保留了 {path}：它和要发的版本不一样（可能学员已经改过），所以没有覆盖；"
              "请发到一个空文件夹，或先把它移走"},
    "classroom.handout.bad_lang": {"en": "--lang: expected one of {known}, got {got}",
                                   "zh": "--lang：应为 {known} 之一，实际是 {got}"},
    "classroom.handout.bad_chapter": {"en": "CHAPTER: expected a chapter number such as 08 (known: {known}), got {got}",
                                      "zh": "CHAPTER：应为章节号，例如 08（可选：{known}），实际是 {got}"},
    "classroom.readme.title": {"en": "# Attention mechanisms: your exercises", "zh": "# 注意力机制：你的练习"},
    "classroom.readme.body": {
        "en": "These notebooks are yours to work in:\n\n{files}\n\n"
              "1. Open them in JupyterLab (`make lab` in the course folder, or `jupyter lab` here) and run "
              "every cell from the top (Run > Run All Cells).\n"
              "2. In each exercise, replace `raise NotImplementedError` (or `None` in a question) with your "
              "code or answer, and run the check cell below it: it tells you which case fails, what was "
              "expected and what you got, with a hint. `show_hint(\"{example}\")` shows every hint.\n"
              "3. Write your own code: do not import the solutions from `attnkit.exercises`, and keep "
              "the check cells (`_ = check_...(...)`) as they are; your teacher's grader looks for them.\n"
              "4. Save the notebook and hand in the `.ipynb` file itself.\n",
        "zh": "这些笔记本就是你做练习的地方：\n\n{files}\n\n"
              "1. 在 JupyterLab 里打开（在课程文件夹里运行 `make lab`，或在这里运行 `jupyter lab`），"
              "从头运行所有单元格（运行 > 运行所有单元格）。\n"
              "2. 每道练习里，把 `raise NotImplementedError`（问题里是 `None`）换成你的代码或答案，"
              "再运行下面的检查单元格：它会告诉你哪个用例没通过、期望结果和你的结果，并给出提示。"
              "运行 `show_hint(\"{example}\")` 可以看到全部提示。\n"
              "3. 请自己写代码：不要从 `attnkit.exercises` 导入参考答案；检查单元格（`_ = check_...(...)`）"
              "保持原样，老师的评分程序要靠它们评分。\n"
              "4. 保存笔记本，交上 `.ipynb` 文件本身。\n"},
})


@dataclass
class Handed:
    written: list[Path] = field(default_factory=list)
    same: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)   # existing files that differ: never overwritten


def learner_copy(path: Path) -> str:
    """The built notebook at ``path`` with outputs and execution counts cleared, as JSON text."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return nbformat.writes(nb) + "\n"


def _put(path: Path, text: str, done: Handed, say) -> None:
    data = text.encode("utf-8")
    if path.exists():
        if path.read_bytes() == data:
            done.same.append(path)
            say(t("classroom.handout.same", path=path))
        else:
            done.kept.append(path)
            say(t("classroom.handout.kept", path=path))
        return
    path.write_bytes(data)
    done.written.append(path)
    say(t("classroom.handout.wrote", path=path))


def handout(chapters: list[str], lang: str, out: str | Path, chapters_from: str | Path | None = None,
            say=print) -> Handed:
    """Write learner copies of ``chapters`` in ``lang`` and a README into ``out``."""
    if lang not in LANGUAGES:
        raise ClassroomError(t("classroom.handout.bad_lang", known=", ".join(LANGUAGES), got=repr(lang)))
    root = chapters_dir(chapters_from)
    known = known_chapters(root)
    ids = []
    for ch in chapters:
        cid = chapter_id(ch)
        if cid is None or cid not in known:
            raise ClassroomError(t("classroom.handout.bad_chapter", known=", ".join(known), got=repr(ch)))
        ids.append(cid)
    sources = [built_path(cid, lang, root) for cid in dict.fromkeys(ids)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = Handed()
    for src in sources:
        _put(out / src.name, learner_copy(src), done, say)
    files = "\n".join(f"- `{src.name}`" for src in sources)
    _put(out / "README.md", f"{t('classroom.readme.title', lang=lang)}\n\n{t('classroom.readme.body', lang=lang, files=files, example=f'ch{ids[0]}.ex1')}",
         done, say)
    return done
