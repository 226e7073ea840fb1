"""Build the English and Chinese notebooks of each chapter from its single source.

    python tools/build.py                   # every chapter, both languages, executed
    python tools/build.py 01 --no-execute   # one chapter, cells only
    python tools/build.py --force           # also overwrite notebooks edited by hand

A source ``chapters/src/NN_slug.py`` (jupytext percent format) holds every code cell once and
every prose cell twice: an English cell tagged ``lang-en`` directly followed by its Chinese
partner tagged ``lang-zh``. The build keeps the code cells and one language's prose, writes
``set_language("zh")`` into the Chinese notebook's first code cell, executes the notebook with
nbclient and writes ``chapters/<lang>/NN_slug.ipynb``; it writes nowhere else.

A built notebook records a hash of its cells. If a notebook's cells no longer match that hash,
somebody edited it (a learner doing the exercises, say), and the build refuses to overwrite it
unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SRC = CHAPTERS / "src"
LANGS = ("en", "zh")
LANG_LINE = 'set_language("en")'
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
            new = nbformat.v4.new_markdown_cell(c.source)
        else:
            source = c.source
            if first_code:
                source = source.replace(LANG_LINE, f'set_language("{lang}")', 1)
                first_code = False
            new = nbformat.v4.new_code_cell(source)
        tags = [tag for tag in c.metadata.get("tags", []) if not tag.startswith("lang-")]
        if tags:
            new.metadata["tags"] = tags
        out.cells.append(new)
    for i, c in enumerate(out.cells):
        c.id = f"{lang}-{src.stem[:2]}-{i:03d}"
    out.metadata["kernelspec"] = KERNEL
    out.metadata["language_info"] = {"name": "python"}
    out.metadata["attnkit"] = {"source": f"src/{src.name}", "lang": lang, "cells_hash": cells_hash(out)}
    return out


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
