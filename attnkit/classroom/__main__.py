"""``python -m attnkit.classroom handout ...`` and ``python -m attnkit.classroom grade ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnkit.i18n import LANGUAGES, get_language, register, set_language, t

register({
    "classroom.cli.about": {"en": "Hand chapters out to a class, and grade the notebooks they return.",
                            "zh": "把章节发给全班，并给交回的笔记本评分。"},
    "classroom.cli.handout": {"en": "write learner copies of chapters (outputs cleared) and a README",
                              "zh": "生成学员用的章节副本（清空输出）和一份说明"},
    "classroom.cli.grade": {"en": "execute returned notebooks and write a class report",
                            "zh": "运行交回的笔记本并生成班级报告"},
    "classroom.cli.chapters": {"en": "chapter numbers, such as 08 09", "zh": "章节号，例如 08 09"},
    "classroom.cli.lang_handout": {"en": "the learners' language", "zh": "学员使用的语言"},
    "classroom.cli.lang_grade": {"en": "the report's language (default: the current one)",
                                 "zh": "报告的语言（默认：当前语言）"},
    "classroom.cli.out_handout": {"en": "the folder to write into", "zh": "写入的文件夹"},
    "classroom.cli.paths": {"en": "returned notebooks, or folders holding them", "zh": "交回的笔记本，或装着它们的文件夹"},
    "classroom.cli.out_grade": {"en": "the HTML report to write", "zh": "要生成的 HTML 报告"},
    "classroom.cli.csv": {"en": "also write a CSV for a gradebook", "zh": "另外生成一份 CSV，方便导入成绩表"},
    "classroom.cli.chapter": {"en": "the chapter the class was given (default: the most common one)",
                              "zh": "布置给全班的章节（默认：交回最多的那一章）"},
    "classroom.cli.timeout": {"en": "time limit per notebook, in seconds (default 120)",
                              "zh": "每个笔记本的时间限制，单位秒（默认 120）"},
    "classroom.cli.jobs": {"en": "notebooks run at a time (default 2)", "zh": "同时运行的笔记本数（默认 2）"},
    "classroom.cli.no_skip": {"en": "run every cell, also those tagged grade-skip",
                              "zh": "运行所有单元格，包括标记为 grade-skip 的"},
    "classroom.cli.from": {"en": "the course's chapters/ folder (default: the checkout attnkit runs from)",
                           "zh": "课程的 chapters/ 文件夹（默认：attnkit 所在的课程仓库）"},
    "classroom.cli.keep": {"en": "also keep each executed notebook in DIR (the audit trail)",
                           "zh": "另外把每个运行后的笔记本保存到 DIR（审计记录）"},
    "classroom.cli.memory": {"en": "address space a kernel may map, in GiB (default 8; CUDA needs far more)",
                             "zh": "每个 kernel 可映射的地址空间，单位 GiB（默认 8；用 CUDA 时需要大得多）"},
    "classroom.cli.bad_memory": {"en": "--memory: expected at least 1 GiB, got {got}",
                                 "zh": "--memory：至少应为 1 GiB，实际是 {got}"},
    "classroom.cli.seed": {"en": "seed of the cases the grader draws (default: a fresh one; the report's audit line "
                                 "records it, and grading again with it draws the same cases)",
                           "zh": "评分程序抽取用例的种子（默认每次新取；报告的审计记录里写着它，用同一个种子重新评分会抽到相同的用例）"},
    "classroom.cli.wrote": {"en": "report: {html}", "zh": "报告：{html}"},
    "classroom.cli.kept": {"en": "{n} file(s) kept, not overwritten (see above)", "zh": "有 {n} 个文件保留未覆盖（见上文）"},
    "classroom.cli.bad_timeout": {"en": "--timeout: expected a positive number of seconds, got {got}",
                                  "zh": "--timeout：应为正的秒数，实际是 {got}"},
    "classroom.cli.bad_jobs": {"en": "--jobs: expected 1 or more, got {got}", "zh": "--jobs：应为 1 或更大，实际是 {got}"},
    "classroom.cli.out_is_submission": {
        "en": "{flag}: {got} is a submission or a notebook; expected a new file for the report (submissions are never written to)",
        "zh": "{flag}：{got} 是交回的作业或笔记本；请给报告另起一个文件名（交回的作业永远不会被改写）"},
    "classroom.cli.error": {"en": "error: {err}", "zh": "错误：{err}"},
})


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m attnkit.classroom", description=t("classroom.cli.about"))
    sub = ap.add_subparsers(dest="command", required=True)
    h = sub.add_parser("handout", help=t("classroom.cli.handout"))
    h.add_argument("chapters", nargs="+", metavar="CHAPTER", help=t("classroom.cli.chapters"))
    h.add_argument("--lang", required=True, choices=LANGUAGES, help=t("classroom.cli.lang_handout"))
    h.add_argument("--out", required=True, metavar="DIR", help=t("classroom.cli.out_handout"))
    h.add_argument("--chapters", dest="chapters_from", metavar="DIR", help=t("classroom.cli.from"))
    g = sub.add_parser("grade", help=t("classroom.cli.grade"))
    g.add_argument("paths", nargs="+", metavar="PATH", help=t("classroom.cli.paths"))
    g.add_argument("--out", required=True, metavar="report.html", help=t("classroom.cli.out_grade"))
    g.add_argument("--csv", metavar="report.csv", help=t("classroom.cli.csv"))
    g.add_argument("--lang", choices=LANGUAGES, default=None, help=t("classroom.cli.lang_grade"))
    g.add_argument("--chapter", metavar="NN", help=t("classroom.cli.chapter"))
    g.add_argument("--timeout", type=float, default=120.0, metavar="S", help=t("classroom.cli.timeout"))
    g.add_argument("--jobs", type=int, default=None, metavar="N", help=t("classroom.cli.jobs"))
    g.add_argument("--no-skip", action="store_true", help=t("classroom.cli.no_skip"))
    g.add_argument("--chapters", dest="chapters_from", metavar="DIR", help=t("classroom.cli.from"))
    g.add_argument("--keep", metavar="DIR", help=t("classroom.cli.keep"))
    g.add_argument("--memory", type=float, default=8.0, metavar="GIB", help=t("classroom.cli.memory"))
    g.add_argument("--seed", type=int, default=None, metavar="N", help=t("classroom.cli.seed"))
    return ap


def main(argv=None) -> int:
    from attnkit.classroom import ClassroomError, grade, handout, write_csv, write_html
    from attnkit.classroom.report import progress_line, summary_line

    args = parser().parse_args(argv)
    before = get_language()
    try:
        if args.command == "handout":
            done = handout(args.chapters, args.lang, args.out, args.chapters_from)
            if done.kept:
                print(t("classroom.cli.kept", n=len(done.kept)), file=sys.stderr)
                return 1
            return 0
        lang = args.lang or get_language()
        set_language(lang)
        if args.timeout <= 0:
            raise ClassroomError(t("classroom.cli.bad_timeout", got=args.timeout))
        if not args.memory >= 1:
            raise ClassroomError(t("classroom.cli.bad_memory", got=args.memory))
        if args.jobs is not None and args.jobs < 1:
            raise ClassroomError(t("classroom.cli.bad_jobs", got=args.jobs))
        from attnkit.classroom.grading import collect
        from attnkit.classroom.safety import refuse_target

        found = collect(args.paths)[0]
        submitted = {path.resolve() for _, path in found}
        folders = {p.resolve() for p in map(Path, args.paths) if p.is_dir()} | {p.parent for p in submitted}
        for flag, out in (("--out", args.out), ("--csv", args.csv)):
            if out and Path(out).resolve() in submitted:
                raise ClassroomError(t("classroom.cli.out_is_submission", flag=flag, got=out))
            why = refuse_target(Path(out), sorted(folders)) if out else None
            if why:  # a symlink, a notebook, a file in a submissions folder: refused before grading
                raise ClassroomError(f"{flag}: " + t("classroom.err.target", path=out, why=why))
        graded = grade(args.paths, chapter=args.chapter, timeout=args.timeout, skip=not args.no_skip,
                       jobs=args.jobs, chapters=args.chapters_from, keep=args.keep,
                       memory=int(args.memory * (1 << 30)), seed=args.seed,
                       progress=lambda k, n, res: print(progress_line(k, n, res, lang), flush=True))
        write_html(graded, args.out, lang)
        if args.csv:
            write_csv(graded, args.csv, lang)
        print(summary_line(graded, lang))
        print(t("classroom.cli.wrote", html=args.out))
        return 0
    except ClassroomError as err:
        print(t("classroom.cli.error", err=err), file=sys.stderr)
        return 2
    finally:
        set_language(before)


if __name__ == "__main__":
    sys.exit(main())
