"""The class report: one offline HTML page and a CSV for a gradebook, in the teacher's language.

The class report: one HTML page that opens offline (inline CSS, an inline SVG bar chart, no
script, nothing fetched) and a CSV for a gradebook, both in the teacher's language."""

from __future__ import annotations

import csv
import html
import importlib
import io
from pathlib import Path

from attnkit.classroom.grading import STATUSES, Graded, Result
from attnkit.classroom.safety import csv_cell, refuse_target, write_atomically
from attnkit.i18n import catalog, register, t

register({
    "classroom.inside.memory": {
        "en": "memory peak measured inside the learner's process: not guaranteed",
        "zh": "内存峰值是在学员自己的进程里测的：不作保证"},
    "classroom.inside.prepared": {
        "en": "result computed inside the learner's process (the exercise's own run there): not guaranteed",
        "zh": "结果是在学员自己的进程里算出来的（练习本身在那里运行）：不作保证"},
    "classroom.title": {"en": "Class report: chapter {chapter}", "zh": "班级报告：第 {chapter} 章"},
    "classroom.title_none": {"en": "Class report", "zh": "班级报告"},
    "classroom.summary": {
        "en": "{n} submissions: {graded} graded, {problems} not graded; {passed} of {checks} checks passed.",
        "zh": "共 {n} 份作业：已评分 {graded} 份，未评分 {problems} 份；{checks} 项检查中通过 {passed} 项。"},
    "classroom.progress": {"en": "{k} / {n}  {learner}: {passed} of {total} passed",
                           "zh": "{k} / {n}  {learner}：{total} 项中通过 {passed} 项"},
    "classroom.progress_problem": {"en": "{k} / {n}  {learner}: {problem}", "zh": "{k} / {n}  {learner}：{problem}"},
    "classroom.sep": {"en": "; ", "zh": "；"},
    "classroom.lang.en": {"en": "English", "zh": "英文"},
    "classroom.lang.zh": {"en": "Chinese", "zh": "中文"},
    "classroom.learner": {"en": "Learner", "zh": "学员"},
    "classroom.file": {"en": "File", "zh": "文件"},
    "classroom.chapter": {"en": "Chapter", "zh": "章节"},
    "classroom.language": {"en": "Language", "zh": "语言"},
    "classroom.total": {"en": "Passed", "zh": "通过数"},
    "classroom.out_of": {"en": "Exercises", "zh": "练习数"},
    "classroom.notes": {"en": "Notes", "zh": "备注"},
    "classroom.rate_row": {"en": "Pass rate", "zh": "通过率"},
    "classroom.chart": {"en": "Pass rate per exercise", "zh": "各题通过率"},
    "classroom.table": {"en": "Every learner, every exercise", "zh": "每位学员的每道题"},
    "classroom.legend": {"en": "Statuses", "zh": "状态说明"},
    "classroom.others": {"en": "Files in the folders that are not notebooks (not graded): {files}",
                         "zh": "文件夹里不是笔记本的文件（未评分）：{files}"},
    "classroom.skipped": {"en": "Cells tagged grade-skip (widgets, timings) that a learner left unchanged were not run.",
                          "zh": "学员没有改动过的、标记为 grade-skip 的单元格（交互控件、计时）没有运行。"},
    "classroom.case": {"en": "case {case}: {label}", "zh": "第 {case} 个用例：{label}"},
    "classroom.status.passed": {"en": "passed", "zh": "通过"},
    "classroom.status.failed": {"en": "failed", "zh": "未通过"},
    "classroom.status.forbidden": {"en": "used the built-in", "zh": "调用了现成函数"},
    "classroom.status.solution": {"en": "reference solution", "zh": "用了参考答案"},
    "classroom.status.todo": {"en": "not attempted", "zh": "未作答"},
    "classroom.status.error": {"en": "error", "zh": "出错"},
    "classroom.status.missing": {"en": "missing", "zh": "缺失"},
    "classroom.status.timeout": {"en": "timed out", "zh": "超时"},
    "classroom.status.tampered": {"en": "not credited", "zh": "不计分"},
    "classroom.why.tampered": {"en": "the check passed, but the notebook's code reaches for the grading itself "
                                     "(the note shows the lines), or the grader's own comparison of the learner's "
                                     "values disagrees with the check cell: review it",
                               "zh": "检查通过了，但笔记本里的代码试图干预评分本身（备注里列出了那几行），"
                                     "或评分程序自己比较学员交回的值，结论与检查单元格不同：请人工查看"},
    "classroom.isolation": {"en": "Sandbox", "zh": "沙箱"},
    "classroom.audit": {"en": "Audit: {items}", "zh": "审计记录：{items}"},
    "classroom.err.target": {"en": "{path}: refusing to write the report there ({why}); expected a new file "
                                   "outside the submissions' folders",
                             "zh": "{path}：拒绝把报告写到那里（{why}）；请给一个交回作业文件夹以外的新文件"},
    "classroom.why.passed": {"en": "every case of the check passes, in the check cell and in the grader's own comparison",
                             "zh": "检查的所有用例都通过：检查单元格和评分程序自己的比较都是如此"},
    "classroom.why.failed": {"en": "the check's first failing case, with the feedback the learner saw",
                             "zh": "检查中第一个未通过的用例，附学员看到的反馈"},
    "classroom.why.forbidden": {"en": "the function calls the built-in the exercise asks to write",
                                "zh": "函数调用了这道题要求自己实现的现成函数"},
    "classroom.why.solution": {"en": "attnkit's reference solution ran inside the learner's function",
                               "zh": "学员的函数里运行了 attnkit 的参考答案"},
    "classroom.why.todo": {"en": "the stub still raises NotImplementedError, or the answer is still None",
                           "zh": "占位函数仍然抛出 NotImplementedError，或答案仍是 None"},
    "classroom.why.error": {"en": "the learner's function or the check cell raised, or the kernel died",
                            "zh": "学员的函数或检查单元格抛出了异常，或 Jupyter kernel 崩溃"},
    "classroom.why.missing": {"en": "no cell calls the exercise's check: deleted or renamed",
                              "zh": "没有单元格调用这道题的检查：被删掉或改了名"},
    "classroom.why.timeout": {"en": "the notebook ran out of time before this check",
                              "zh": "还没运行到这项检查，笔记本就超时了"},
})

MARK = {"passed": "✓", "failed": "✗", "forbidden": "✗", "solution": "⚑", "todo": "–", "error": "!",
        "missing": "?", "timeout": "⏱", "tampered": "⚠"}
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.passed { background: #e6f4e6; } td.failed, td.forbidden, td.error { background: #fbe9e9; }
td.solution, td.tampered { background: #fff1cc; } td.todo, td.missing, td.timeout { background: #f3f3f3; }
tr.problem td { background: #fff7e0; }
details pre { white-space: pre-wrap; max-width: 40em; font-size: 0.85em; }
summary { cursor: pointer; }
td.total, tr.rates td { white-space: nowrap; }
"""


def status_label(status: str, lang: str | None = None) -> str:
    return t(f"classroom.status.{status}", lang=lang)


def exercise_title(ex: str, lang: str | None = None) -> str:
    """The exercise's own title (``chNN.ex1.title``), in ``lang``, or its id."""
    try:
        importlib.import_module(f"attnkit.exercises.{ex.split('.')[0]}")
    except ImportError:
        pass
    key = f"{ex}.title"
    return t(key, lang=lang) if key in catalog() else ex


def _problem(res: Result, lang: str | None) -> str:
    return t(res.problem[0], lang=lang, **res.problem[1]) if res.problem else ""


def _note(key: str, fmt: dict, lang: str | None) -> str:
    if key == "classroom.note.other_lang":  # language names, not codes
        fmt = {k: t(f"classroom.lang.{v}", lang=lang) for k, v in fmt.items()}
    return t(key, lang=lang, **fmt)


def notes(res: Result, lang: str | None = None) -> str:
    parts = [_problem(res, lang)] if res.problem else []
    return t("classroom.sep", lang=lang).join(parts + [_note(key, fmt, lang) for key, fmt in res.notes])


def progress_line(k: int, n: int, res: Result, lang: str | None = None) -> str:
    if res.problem:
        return t("classroom.progress_problem", lang=lang, k=k, n=n, learner=res.learner, problem=_problem(res, lang))
    line = t("classroom.progress", lang=lang, k=k, n=n, learner=res.learner, passed=res.passed,
             total=len(res.outcomes))
    return t("classroom.sep", lang=lang).join([line] + [_note(key, fmt, lang) for key, fmt in res.notes])


def summary_line(g: Graded, lang: str | None = None) -> str:
    graded = [r for r in g.results if not r.problem]
    return t("classroom.summary", lang=lang, n=len(g.results), graded=len(graded),
             problems=len(g.results) - len(graded), passed=sum(r.passed for r in graded),
             checks=sum(len(r.outcomes) for r in graded))


def pass_rates(g: Graded) -> dict[str, tuple[int, int]]:
    """exercise -> (learners who passed it, learners graded)."""
    graded = [r for r in g.results if not r.problem]
    return {ex: (sum(r.outcomes.get(ex, {}).get("status") == "passed" for r in graded), len(graded))
            for ex in g.exercises}


def chart_svg(g: Graded, lang: str | None = None) -> str:
    """A horizontal bar per exercise: its pass rate, drawn as inline SVG (text in the page's font)."""
    rates = pass_rates(g)
    row, left, width = 26, 90, 320
    height = row * len(rates) + 30
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
             f'role="img" aria-label="{e(t("classroom.chart", lang=lang))}" font-family="system-ui, sans-serif" '
             f'font-size="12">']
    for i, (ex, (ok, n)) in enumerate(rates.items()):
        y = 10 + i * row
        share = ok / n if n else 0.0
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{e(ex)}</text>'
                     f'<rect x="{left}" y="{y}" width="{width}" height="20" fill="#eee"/>'
                     f'<rect class="bar" data-exercise="{e(ex)}" x="{left}" y="{y}" width="{share * width:.1f}" '
                     f'height="20" fill="#4c9a4c"><title>{e(exercise_title(ex, lang))}</title></rect>'
                     f'<text x="{left + width + 6}" y="{y + 15}">{ok} / {n} ({100 * share:.0f}%)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cell(out: dict, lang: str | None) -> str:
    e = html.escape
    status = out["status"]
    head = f"{MARK[status]} {status_label(status, lang)}"
    if out.get("case"):
        head += " · " + t("classroom.case", lang=lang, case=out["case"], label=out.get("label") or "")
    body = f'<td class="{status}" data-status="{status}">'
    inside = f'<br><small class="inside">{e(t("classroom.inside." + out["inside"], lang=lang))}</small>' \
        if out.get("inside") else ""  # a figure only the learner's own process measured
    if status in ("failed", "forbidden", "error", "solution", "tampered") and out.get("feedback"):
        return body + f"<details><summary>{e(head)}</summary><pre>{e(out['feedback'])}</pre></details>{inside}</td>"
    return body + f"{e(head)}{inside}</td>"


def html_report(g: Graded, lang: str | None = None) -> str:
    e = html.escape
    title = t("classroom.title", lang=lang, chapter=int(g.chapter)) if g.chapter else t("classroom.title_none", lang=lang)
    head = "".join(f'<th title="{e(exercise_title(ex, lang))}">{e(ex)}</th>' for ex in g.exercises)
    rows = []
    for r in g.results:
        name = f'<td title="{e(r.path)} sha256 {e(r.sha256)}">{e(r.learner)}</td>'
        if r.problem:
            rows.append(f'<tr class="problem">{name}<td colspan="{len(g.exercises) + 1}">{e(notes(r, lang))}</td>'
                        f"<td></td><td></td></tr>")
            continue
        cells = "".join(_cell(r.outcomes[ex], lang) if ex in r.outcomes else "<td></td>" for ex in g.exercises)
        rows.append(f'<tr>{name}{cells}<td class="total">{r.passed} / {len(r.outcomes)}</td>'
                    f"<td>{e(notes(r, lang))}</td><td>{e(r.isolation)}</td></tr>")
    rates = pass_rates(g)
    rate_cells = "".join(f"<td>{ok} / {n}</td>" for ok, n in rates.values())
    rows.append(f'<tr class="rates"><th>{e(t("classroom.rate_row", lang=lang))}</th>{rate_cells}<td></td><td></td>'
                f"<td></td></tr>")
    legend = "".join(f"<li><b>{MARK[s]} {e(status_label(s, lang))}</b>: {e(t(f'classroom.why.{s}', lang=lang))}</li>"
                     for s in STATUSES)
    extra = [f"<p>{e(t('classroom.others', lang=lang, files=', '.join(g.others)))}</p>"] if g.others else []
    if g.skip:
        extra.append(f"<p>{e(t('classroom.skipped', lang=lang))}</p>")
    return "\n".join([
        "<!DOCTYPE html>", f'<html lang="{"zh-CN" if lang == "zh" else "en"}">', "<head>",
        '<meta charset="utf-8">', f"<title>{e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{e(title)}</h1>", f'<p class="summary">{e(summary_line(g, lang))}</p>',
        f"<h2>{e(t('classroom.chart', lang=lang))}</h2>", chart_svg(g, lang),
        f"<h2>{e(t('classroom.table', lang=lang))}</h2>",
        f'<table><tr><th>{e(t("classroom.learner", lang=lang))}</th>{head}'
        f'<th>{e(t("classroom.total", lang=lang))}</th><th>{e(t("classroom.notes", lang=lang))}</th>'
        f'<th>{e(t("classroom.isolation", lang=lang))}</th></tr>',
        *rows, "</table>", *extra, f'<p class="audit">{e(audit_line(g, lang))}</p>',
        f"<h2>{e(t('classroom.legend', lang=lang))}</h2>", f"<ul>{legend}</ul>", "</body>", "</html>", ""])


def audit_line(g: Graded, lang: str | None = None) -> str:
    return t("classroom.audit", lang=lang, items=", ".join(f"{k} {v}" for k, v in g.audit.items()))


def _target(g: Graded, path: str | Path) -> Path:
    """``path``, once it is known not to be a symlink, a notebook or inside a submissions folder."""
    from attnkit.classroom.originals import ClassroomError

    path = Path(path)
    why = refuse_target(path, g.folders)
    if why:
        raise ClassroomError(t("classroom.err.target", path=path, why=why))
    return path


def write_html(g: Graded, path: str | Path, lang: str | None = None) -> Path:
    """Write the report (atomically: an existing report is replaced whole, or not at all)."""
    path = _target(g, path)
    write_atomically(path, html_report(g, lang).encode("utf-8"))
    return path


def csv_rows(g: Graded, lang: str | None = None) -> list[list[str]]:
    header = [t("classroom.learner", lang=lang), t("classroom.file", lang=lang), t("classroom.chapter", lang=lang),
              t("classroom.language", lang=lang), *g.exercises, t("classroom.total", lang=lang),
              t("classroom.out_of", lang=lang), t("classroom.notes", lang=lang), t("classroom.isolation", lang=lang)]
    rows = [header]
    for r in g.results:
        statuses = [status_label(r.outcomes[ex]["status"], lang) if ex in r.outcomes else "" for ex in g.exercises]
        counts = ["", ""] if r.problem else [str(r.passed), str(len(r.outcomes))]
        rows.append([csv_cell(x) for x in (r.learner, r.path, r.chapter or "", r.lang or "", *statuses, *counts,
                                           notes(r, lang), r.isolation)])
    return rows


def write_csv(g: Graded, path: str | Path, lang: str | None = None) -> Path:
    """Write the CSV (atomically, as :func:`write_html`)."""
    path = _target(g, path)
    text = io.StringIO(newline="")
    csv.writer(text).writerows(csv_rows(g, lang))
    write_atomically(path, text.getvalue().encode("utf-8-sig"))  # the BOM lets spreadsheets read the Chinese
    return path
