"""Build the English and Chinese notebooks of each chapter from its single source.

    python tools/build.py                   # every chapter, both languages, executed
    python tools/build.py 01 --no-execute   # one chapter, cells only
    python tools/build.py --force           # also overwrite notebooks edited by hand

A source ``chapters/src/NN_slug.py`` (jupytext percent format) holds every code cell once and
every prose cell twice: an English cell tagged ``lang-en`` directly followed by its Chinese
partner tagged ``lang-zh``. The build keeps the code cells and one language's prose, writes
``set_language("zh")`` into the Chinese notebook's first code cell, executes the notebook with
nbclient and writes ``chapters/<lang>/NN_slug.ipynb``; it writes nowhere else.

A built notebook carries its chapter id and language in its metadata (``metadata.attnkit``:
``chapter`` "08", ``lang``, ``source``), which the classroom grader reads. A code cell tagged
``nbval-ignore-output`` (a widget or timing cell) also gets the tag ``grade-skip`` when no later
cell needs a name it defines: grading may skip such a cell while the learner left it unchanged
(``python -m attnkit.classroom grade``). A source may tag a figure-only cell ``grade-skip``
itself; the build refuses one that defines a name a later cell needs.

A code cell that draws a figure names its alt text in its header, as a key of the chapter's
catalog: ``# %% alt="ch06.alt.rotation"``. The build looks the key up in the notebook's language
and stores the text with every PNG the cell shows, as ``metadata["image/png"]["alt"]`` of the
output (nbconvert writes it as the image's ``alt``; tools/site.py builds the website from it), and
as the cell's ``alt``; it refuses an executed cell that shows a PNG without one.

A built notebook records a hash of its cells. If a notebook's cells no longer match that hash,
somebody edited it (a learner doing the exercises, say), and the build refuses to overwrite it
unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SRC = CHAPTERS / "src"
LANGS = ("en", "zh")
LANG_LINE = 'set_language("en")'
SKIP_TAG = "grade-skip"
IGNORE_TAG = "nbval-ignore-output"
ALT = "alt"  # a code cell's alt text: a catalog key in the source, the text in the notebook
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class SourceError(ValueError):
    """A chapter source breaks the one-source-two-languages rules."""


def sources(selected: list[str] | None = None) -> list[Path]:
    paths = sorted(SRC.glob("[0-9][0-9]_*.py"))
    if selected:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selected)]
    return paths


def cell_lang(cell) -> str | None:
    langs = [tag[5:] for tag in cell.metadata.get("tags", []) if tag.startswith("lang-")]
    if len(langs) > 1:
        raise SourceError(f"a cell has several language tags {langs}: {cell.source[:60]!r}")
    return langs[0] if langs else None


def check_source(nb, name: str) -> None:
    """Every prose cell is tagged and paired (en then zh); code cells have no language."""
    cells = nb.cells
    i = 0
    while i < len(cells):
        c = cells[i]
        lang = cell_lang(c)
        if c.cell_type == "code":
            if lang:
                raise SourceError(f"{name}: code cell {i} has a language tag; code is shared")
            i += 1
            continue
        if lang != "en":
            raise SourceError(f"{name}: prose cell {i} must be an English cell tagged lang-en "
                              f"followed by its lang-zh partner, got {lang!r}: {c.source[:60]!r}")
        if i + 1 >= len(cells) or cells[i + 1].cell_type != "markdown" or cell_lang(cells[i + 1]) != "zh":
            raise SourceError(f"{name}: English prose cell {i} has no Chinese partner right after it: "
                              f"{c.source[:60]!r}")
        i += 2
    code = [c for c in cells if c.cell_type == "code"]
    if not code or LANG_LINE not in code[0].source:
        raise SourceError(f"{name}: the first code cell must contain {LANG_LINE}")


def cells_hash(nb) -> str:
    h = hashlib.sha256()
    for c in nb.cells:
        h.update(json.dumps([c.cell_type, c.source, sorted(c.metadata.get("tags", []))]).encode())
    return h.hexdigest()[:16]


def _local_names(node) -> set[str]:
    """The names local to a function, lambda or comprehension scope (its arguments, its stores)."""
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    args = node.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
    body = node.body if isinstance(node.body, list) else [node.body]
    declared = {n for stmt in body for sub in ast.walk(stmt)
                if isinstance(sub, (ast.Global, ast.Nonlocal)) for n in sub.names}
    for stmt in body:
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
                names.add(sub.id)
    return names - declared


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def _names(source: str) -> tuple[dict[str, int], dict[str, int]] | None:
    """(global name -> first line the cell binds it on, global name -> first line it reads it
    on), or None if the cell is not plain Python (a magic, say)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    bound: dict[str, int] = {}
    loaded: dict[str, int] = {}

    def note(where, name, line):
        where[name] = min(where.get(name, line), line)

    def visit(node, local: frozenset, top: bool):
        if isinstance(node, ast.Name):
            if node.id not in local:
                if isinstance(node.ctx, ast.Load):
                    note(loaded, node.id, node.lineno)
                elif top:
                    note(bound, node.id, node.lineno)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and top:
            note(bound, node.name, node.lineno)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and top:
            for a in node.names:
                note(bound, (a.asname or a.name).split(".")[0], node.lineno)
        if isinstance(node, _SCOPES):
            inner = local | _local_names(node)
            for child in ast.iter_child_nodes(node):
                visit(child, inner, False)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, local, top)

    visit(tree, frozenset(), True)
    return bound, loaded


def needed_later(sources: list[str], i: int) -> set[str]:
    """The names cell ``i`` binds that a later cell reads before binding them itself."""
    mine = _names(sources[i])
    if mine is None:
        return {"<not plain Python>"}
    live = set(mine[0]) - {"_"}
    needed = set()
    for later in sources[i + 1:]:
        names = _names(later)
        if names is None:  # cannot tell what it reads: assume everything
            return needed | live
        bound, loaded = names
        needed |= {n for n in live & set(loaded) if not bound.get(n, 1 << 30) < loaded[n]}
        live -= set(bound)
    return needed


def mark_grade_skip(cells, name: str) -> None:
    """Tag ``grade-skip`` the widget and timing cells no later cell depends on (see the doc)."""
    code = [c for c in cells if c.cell_type == "code"]
    sources = [c.source for c in code]
    for i, c in enumerate(code):
        tags = c.metadata.get("tags", [])
        if SKIP_TAG in tags:
            needed = needed_later(sources, i)
            if needed:
                raise SourceError(f"{name}: code cell {c.source[:60]!r} is tagged {SKIP_TAG} but later "
                                  f"cells need what it defines: {sorted(needed)}")
        elif IGNORE_TAG in tags and not needed_later(sources, i):
            c.metadata["tags"] = [*tags, SKIP_TAG]


# Chinese characters and full-width punctuation: a line break between two of them renders as a
# space in the browser (Markdown joins lines with a space), so the Chinese build joins such lines.
_CJK = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uff00-\uffef\u201c\u201d\u2014\u2026]")


def join_cjk_lines(text: str) -> str:
    """Join the lines of Markdown ``text`` where one ends and the next starts with a CJK character.

    Code fences, headings, table rows and hard breaks (two trailing spaces) are left alone; a
    break next to code, a formula or a Latin word stays (it renders as the space one writes there).
    """
    out: list[str] = []
    fence = False
    for line in text.split("\n"):
        stripped = line.lstrip()
        prev = out[-1] if out else ""
        if (not fence and out and prev and not prev.endswith("  ") and _CJK.match(stripped[:1] or " ")
                and _CJK.match(prev[-1]) and not prev.lstrip().startswith(("#", "|"))
                and not stripped.startswith("|")):
            out[-1] = prev + stripped
            continue
        if stripped.startswith("```"):
            fence = not fence
        out.append(line)
    return "\n".join(out)


def split(src: Path, lang: str):
    """The notebook of one language, not executed."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    nb = jupytext.read(src)
    check_source(nb, src.name)
    out = nbformat.v4.new_notebook()
    first_code = True
    for c in nb.cells:
        if c.cell_type == "markdown":
            if cell_lang(c) != lang:
                continue
            new = nbformat.v4.new_markdown_cell(join_cjk_lines(c.source) if lang == "zh" else c.source)
        else:
            source = c.source
            if first_code:
                source = source.replace(LANG_LINE, f'set_language("{lang}")', 1)
                first_code = False
            new = nbformat.v4.new_code_cell(source)
        tags = [tag for tag in c.metadata.get("tags", []) if not tag.startswith("lang-")]
        if tags:
            new.metadata["tags"] = tags
        if c.cell_type == "code" and c.metadata.get(ALT):
            new.metadata[ALT] = c.metadata[ALT]  # a catalog key until write_alt looks it up
        out.cells.append(new)
    mark_grade_skip(out.cells, src.name)
    for i, c in enumerate(out.cells):
        c.id = f"{lang}-{src.stem[:2]}-{i:03d}"
    out.metadata["kernelspec"] = KERNEL
    out.metadata["language_info"] = {"name": "python"}
    out.metadata["attnkit"] = {"chapter": src.stem[:2], "lang": lang, "source": f"src/{src.name}",
                               "cells_hash": cells_hash(out)}
    return out


def write_alt(nb, lang: str, name: str) -> None:
    """Turn each code cell's ``alt`` key into its text in ``lang`` (from the chapter's catalog)
    and store it with every PNG the cell shows; refuse an executed PNG that has none."""
    import importlib

    from attnkit.i18n import t

    importlib.import_module(f"attnkit.text.ch{nb.metadata['attnkit']['chapter']}")
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        key = c.metadata.get(ALT)
        if key is not None:
            try:
                c.metadata[ALT] = t(key, lang=lang)
            except KeyError as e:
                raise SourceError(f"{name}: the alt key of code cell {c.source[:60]!r} is not in the "
                                  f"chapter's catalog: {e}") from e
        for o in c.get("outputs", []):
            if "image/png" not in o.get("data", {}):
                continue
            if key is None:
                raise SourceError(f"{name}: code cell {c.source[:60]!r} shows a figure but names no alt "
                                  f'text: add alt="chNN.alt.NAME" to its # %% line and the text to the catalog')
            o.setdefault("metadata", {}).setdefault("image/png", {})[ALT] = c.metadata[ALT]


def target(src: Path, lang: str) -> Path:
    return CHAPTERS / lang / (src.stem + ".ipynb")


def edited_by_hand(path: Path) -> bool:
    """True when a built notebook's cells differ from what its build recorded."""
    if not path.exists():
        return False
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("attnkit", {}).get("cells_hash")
    return recorded is None or recorded != cells_hash(nb)


def execute(nb, cwd: Path, timeout: int = 300):
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no "TCP without encryption" noise
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def build(src: Path, lang: str, run: bool = True, force: bool = False) -> Path:
    path = target(src, lang)
    if not force and edited_by_hand(path):
        raise SystemExit(
            f"refusing to overwrite {path.relative_to(ROOT)}: its cells were edited since it was "
            f"built (your work is kept). Move it aside, or rebuild with --force (make chapters FORCE=1).")
    nb = split(src, lang)
    if run:
        execute(nb, path.parent)
    write_alt(nb, lang, src.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers or stems (default: all)")
    ap.add_argument("--lang", nargs="+", default=list(LANGS), choices=LANGS)
    ap.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    ap.add_argument("--force", action="store_true", help="overwrite notebooks edited by hand")
    args = ap.parse_args(argv)
    srcs = sources(args.chapters)
    if not srcs:
        print(f"no chapter source matches {args.chapters} in {SRC}", file=sys.stderr)
        return 2
    for src in srcs:
        for lang in args.lang:
            path = build(src, lang, run=not args.no_execute, force=args.force)
            print(f"built {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
