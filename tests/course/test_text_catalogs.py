"""Library modules hold no chapter prose: where each i18n key may be registered.

The rule (chapters/AUTHORING.md, "Where texts live"):

1. A key ``chNN.*`` is registered only in ``attnkit/text/chNN.py`` (what chapter NN's cells print)
   or ``attnkit/exercises/chNN.py`` (its exercises' feedback).
2. ``attnkit/text/chNN.py`` registers only ``chNN.*`` keys.
3. ``attnkit/text/site.py`` (the website's interface text, which tools/site.py prints) registers
   only ``site.*`` keys, and no other module registers a ``site.*`` key.
4. Any other module registers only labels its own code prints: each key it registers appears in
   that module outside the ``register({...})`` call, as a string or as the constant head of an
   f-string or a ``"prefix." + name`` concatenation.
5. A chapter's first code cell imports ``attnkit.text.chNN``; the chapter uses no other chapter's
   ``chMM.*`` keys, and every key it names literally is registered.
6. Every key a module passes to ``t(...)`` (a literal, or the constant head of ``"prefix." + name``
   or of an f-string) is registered by some module.

Every ``register`` call passes a dict literal, so the check sees every key without running code.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import attnkit
from attnkit import i18n

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "attnkit"
CHAPTER_KEY = re.compile(r"^ch(\d\d)\.")
SITE_CATALOG = "attnkit/text/site.py"  # the website's interface text (tools/site.py prints it)


def registrations(source: str) -> tuple[list[str], set[str], set[str]]:
    """(keys registered, other string constants, constant heads of f-strings / concatenations)."""
    tree = ast.parse(source)
    keys: list[str] = []
    inside: set[int] = set()
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and getattr(func, "id", getattr(func, "attr", None)) == "register":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Dict):
                raise ValueError(f"register(...) at line {node.lineno} must be given one dict literal")
            for k in node.args[0].keys:
                if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                    raise ValueError(f"register(...) at line {node.lineno}: keys must be string literals")
                keys.append(k.value)
            inside.update(id(sub) for sub in ast.walk(node))
    constants: set[str] = set()
    heads: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            constants.add(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            heads.add(node.values[0].value)
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
              and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
            heads.add(node.left.value)
    return keys, constants, heads


def violations(relpath: str, source: str) -> list[str]:
    """What breaks rules 1-4 in the module at ``relpath`` (relative to the package's parent)."""
    keys, constants, heads = registrations(source)
    home = re.fullmatch(r"attnkit/(text|exercises)/ch(\d\d)\.py", relpath)
    site = relpath == SITE_CATALOG
    bad = []
    for key in keys:
        m = CHAPTER_KEY.match(key)
        if site or key.startswith("site."):
            if not (site and key.startswith("site.")):
                bad.append(f"{relpath} registers {key!r}: {SITE_CATALOG} holds the site.* keys, and only them")
        elif home and home.group(1) == "text" and not (m and m.group(1) == home.group(2)):
            bad.append(f"{relpath} registers {key!r}: a chapter catalog holds only ch{home.group(2)}.* keys")
        elif m and not (home and home.group(2) == m.group(1)):
            bad.append(f"{relpath} registers {key!r}: ch{m.group(1)}.* keys belong in "
                       f"attnkit/text/ch{m.group(1)}.py or attnkit/exercises/ch{m.group(1)}.py")
        elif not home and key not in constants and not any(h and key.startswith(h) for h in heads):
            bad.append(f"{relpath} registers {key!r} but never prints it: a sentence only a chapter "
                       "prints goes in that chapter's attnkit/text/chNN.py")
    return bad


def _modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def used_keys(source: str) -> tuple[set[str], set[str]]:
    """(literal keys, constant key heads) that ``source`` passes to ``t(...)``."""
    literal, heads = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literal.add(arg.value)
            elif isinstance(arg, ast.BinOp) and isinstance(arg.left, ast.Constant):
                heads.add(arg.left.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                heads.add(arg.values[0].value)
    return literal, heads


def test_every_key_a_module_prints_is_registered():
    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)
    registered = i18n.catalog()
    bad = []
    for p in _modules():
        literal, heads = used_keys(p.read_text())
        bad += [f"{p.relative_to(ROOT)} prints {k!r}, which no module registers" for k in literal - set(registered)]
        bad += [f"{p.relative_to(ROOT)} prints {h!r} + ..., but no key starts so" for h in heads
                if not any(k.startswith(h) for k in registered)]
    assert not bad, "\n".join(bad)
    assert used_keys('t("a.b"); t("kind." + k); t(f"col.{c}"); other("x.y")') == ({"a.b"}, {"kind.", "col."})


def test_every_module_registers_only_what_the_rule_allows():
    bad = [v for p in _modules() for v in violations(p.relative_to(ROOT).as_posix(), p.read_text())]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_chapter_prose_in_a_library_module():
    library = ('from attnkit.i18n import register, t\n'
               'register({"gqa.col.kind": {"en": "kind", "zh": "类型"},\n'
               '          "gqa.title": {"en": "cache", "zh": "缓存"},\n'
               '          "gqa.role.a": {"en": "a", "zh": "甲"},\n'
               '          "ch05.h100": {"en": "H100", "zh": "H100"}})\n'
               'def plot(role):\n    return t("gqa.title"), t("gqa.role." + role)\n')
    found = violations("attnkit/gqa.py", library)
    assert len(found) == 2
    assert "'gqa.col.kind' but never prints it" in found[0]
    assert "'ch05.h100': ch05.* keys belong in attnkit/text/ch05.py" in found[1]
    catalog = 'from attnkit.i18n import register\nregister({"ch04.x": {"en": "x", "zh": "x"}})\n'
    assert violations("attnkit/text/ch04.py", catalog) == []
    assert "holds only ch05.* keys" in violations("attnkit/text/ch05.py", catalog)[0]
    assert "ch04.* keys belong" in violations("attnkit/exercises/ch05.py", catalog)[0]
    site = 'from attnkit.i18n import register\nregister({"site.home": {"en": "Home", "zh": "首页"}})\n'
    assert violations("attnkit/text/site.py", site) == []
    assert "holds the site.* keys" in violations("attnkit/text/ch04.py", site)[0]
    assert "holds the site.* keys" in violations("attnkit/text/site.py", catalog)[0]
    with pytest.raises(ValueError, match="one dict literal"):
        registrations("from attnkit.i18n import register\nregister(STRINGS)\n")


def _chapter_sources() -> list[Path]:
    return sorted((ROOT / "chapters" / "src").glob("[0-9][0-9]_*.py"))


def _code_cells(text: str) -> list[str]:
    cells = re.split(r"^# %%.*$", text, flags=re.M)[1:]
    heads = re.findall(r"^# %%.*$", text, flags=re.M)
    return [body for head, body in zip(heads, cells, strict=True) if "[markdown]" not in head]


@pytest.mark.parametrize("src", _chapter_sources(), ids=lambda p: p.stem)
def test_a_chapter_imports_its_catalog_and_uses_only_its_own_chapter_keys(src):
    nn = src.name[:2]
    text = src.read_text()
    first = _code_cells(text)[0]
    assert re.search(rf"^import attnkit\.text\.ch{nn}\b", first, flags=re.M), (
        f"{src.name}: the first code cell must `import attnkit.text.ch{nn}` (its catalog)")
    assert (PKG / "text" / f"ch{nn}.py").exists()
    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)
    registered = i18n.catalog()
    for code in _code_cells(text):
        for key in re.findall(r"\bt\(\s*f?[\"']([a-z][a-z0-9_]*\.[a-z0-9_.]*[a-z0-9_])[\"']", code):
            m = CHAPTER_KEY.match(key)
            assert not m or m.group(1) == nn, f"{src.name} uses chapter {m.group(1)}'s key {key!r}"
            assert key in registered, f"{src.name} uses {key!r}, which no module registers"
