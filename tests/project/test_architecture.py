"""ARCHITECTURE.md is true of the code: the layers' import rule on every ``import`` in attnkit/,
the only upward paths are the listed PEP 562 forwards, every module's docstring opens with one
line that names its job, ARCHITECTURE.md lists every module, and no file of the repository
refers to a file or an issue that a clone does not contain."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "attnkit"
ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")



def read_layers() -> dict[int, tuple[str, ...]]:
    """The layers table of ARCHITECTURE.md: ``| N. name | `attnkit.x`, ... | job |`` -> {N: modules}."""
    layers = {}
    for line in ARCHITECTURE.splitlines():
        row = re.match(r"\| (\d)\. [^|]+\| ([^|]+)\|", line)
        if row:
            layers[int(row.group(1))] = tuple(re.findall(r"`(attnkit(?:\.\w+)*)`", row.group(2)))
    return layers


# A module may import from its own layer and the layers below (ARCHITECTURE.md is the source).
LAYERS = read_layers()

# The only paths from a layer to a layer above: old import paths of the chapter experiments that
# left the mechanism modules, forwarded on first use by a module __getattr__ (PEP 562).
FORWARDS = {
    "attnkit.gqa": {name: "attnkit.experiments.decode" for name in (
        "TinyDecoder", "greedy_generate", "make_decode_model", "decode_step", "measure_decode_step",
        "measure_decode_steps")},
    "attnkit.sparse": {"furthest_vector_accuracy": "attnkit.experiments.sparse"},
    "attnkit.lora": {name: "attnkit.experiments.lora" for name in (
        "make_teacher_student", "attention_forward", "lora_attention_forward", "init_lora_pairs",
        "train_lora_runs", "train_full", "run_budget_experiment", "DEFAULT_DELTAS")},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of the longest listed prefix of ``module``."""
    best = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md")
    return best[0]


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, attnkit module) for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "attnkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "attnkit":
                continue
            for a in node.names:  # `from attnkit.x import y`: y is a module or a name of attnkit.x
                sub = f"{source}.{a.name}"
                out.append((node.lineno, sub if sub in MODULES else source))
    return out


def test_every_module_is_in_a_layer():
    assert sorted(LAYERS) == [0, 1, 2, 3, 4] and "attnkit.core" in LAYERS[1] and "attnkit.memory" in LAYERS[0]
    for module in MODULES:
        layer_of(module)


def test_the_chapter_map_names_files_that_exist():
    rows = [line for line in ARCHITECTURE.split("## Chapter map")[1].split("## ")[0].splitlines()
            if re.match(r"\| \d\d \|", line)]
    assert [r.split("|")[1].strip() for r in rows] == [f"{n:02d}" for n in range(1, 12)]
    for row in rows:
        _, chapter, library, widgets, schematics, text, exercises, tests, _ = row.split("|")
        for name in re.split(r",\s*", library.strip()):
            path = PACKAGE / name if name.endswith(".py") else None
            assert (path and path.is_file()) or f"attnkit.{name}" in MODULES, (chapter, name)
        for cell in (widgets, schematics, text, exercises):
            for name in filter(None, re.split(r",\s*", cell.strip())):
                assert (PACKAGE / name).is_file(), (chapter, name)
        for name in re.split(r",\s*", tests.strip()):
            assert (ROOT / "tests" / name).is_file(), (chapter, name)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    mine = layer_of(module)
    wrong = [f"line {line}: {module} (layer {mine}) imports {target} (layer {layer_of(target)})"
             for line, target in imported_modules(MODULES[module], module) if layer_of(target) > mine]
    assert not wrong, "\n".join(wrong)


def test_layer_0_imports_only_torch_and_the_standard_library():
    import sys

    allowed = set(sys.stdlib_module_names) | {"torch", "attnkit"}
    for module in LAYERS[0]:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{module} imports {name}"


def test_the_only_upward_paths_are_the_listed_forwards():
    """Every module's _FORWARDS table is the one listed here and in ARCHITECTURE.md, each name
    resolves through the module to the object of its new home, and no other module has one."""
    found = {}
    for module in MODULES:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        has_getattr = any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)
        if has_getattr:
            found[module] = dict(importlib.import_module(module)._FORWARDS)
    assert found == FORWARDS
    for module, names in FORWARDS.items():
        mod = importlib.import_module(module)
        for name, target in names.items():
            assert layer_of(target) > layer_of(module)
            assert getattr(mod, name) is getattr(importlib.import_module(target), name)
            assert f"`{module}.{name}`" in ARCHITECTURE or f"{name}`" in ARCHITECTURE, (module, name)
            assert name not in getattr(mod, "__all__", ()), f"{module}.__all__ lists the forward {name}"
        with pytest.raises(AttributeError, match="has no attribute"):
            _ = mod.no_such_name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_docstring_opens_with_one_line_that_names_the_job(module):
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text(encoding="utf-8")))
    assert doc, f"{module} has no docstring"
    lines = doc.splitlines()
    first = lines[0]
    assert first.strip() == first and first, f"{module}: the first line is empty"
    assert len(first) <= 120, f"{module}: the first line has {len(first)} characters (at most 120)"
    assert first.endswith((".", ")", "`", "?")), f"{module}: the first line is not a whole sentence: {first!r}"
    assert len(lines) == 1 or not lines[1].strip(), f"{module}: the summary runs on to a second line"


def test_architecture_lists_every_module():
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module != "attnkit":
            continue  # a package: listed by name with its modules
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if len(rel.parts) == 1:
            assert f"`attnkit.{top}`" in ARCHITECTURE or module == "attnkit", f"ARCHITECTURE.md lacks {module}"
        else:
            listed = re.search(rf"`attnkit/{rel.parts[0]}/`[^\n]*(\n  [^\n]*)*", ARCHITECTURE)
            text = listed.group(0) if listed else ""
            stem = rel.stem
            pattern = rf"`{re.escape(stem)}\.py`" if not re.fullmatch(r"ch\d\d", stem) else r"`chNN\.py`"
            assert re.search(pattern, text) or (f"`attnkit/{rel.parts[0]}/{stem}.py`" in ARCHITECTURE), \
                f"ARCHITECTURE.md lacks {rel}"


# ---- references to what a clone does not contain

def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


TEXT = (".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ini", ".sh", ".js", ".css", ".html", "Makefile")
STALE = [
    (re.compile(r"DESIGN\.md"), "DESIGN.md, which the repository does not contain"),
    (re.compile(r"\b[Ii]ssues? #?\d+\b|\(#\d+\)|问题 ?#?\d+ ?号"), "an issue number"),
    (re.compile(r"\bthe seed(?:'s)? (?:repo|repository|project|library|examples?|README|code|version|'s)", re.I),
     "'the seed', which a clone does not contain"),
]
TEST_PATH = re.compile(r"\btests/[\w/.-]*\w")


def exists(ref: str) -> bool:
    """A path the repository has (a file, a folder, a test module named without .py) or one that
    .gitignore names (an output folder the tests write, like tests/browser/screenshots)."""
    if any((ROOT / r).exists() for r in (ref, ref + ".py")):
        return True
    return any(subprocess.run(["git", "check-ignore", "-q", r], cwd=ROOT).returncode == 0 for r in (ref, ref + "/"))


def test_no_file_refers_to_a_file_or_an_issue_the_clone_does_not_contain():
    files = tracked_files()
    wrong = []
    for f in files:
        if not f.endswith(TEXT) or f.startswith(("chapters/en/", "chapters/zh/")) or f == "tests/project/test_architecture.py":
            continue
        text = (ROOT / f).read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for pattern, why in STALE:
                if pattern.search(line):
                    wrong.append(f"{f}:{n}: {why}: {line.strip()[:100]}")
            for m in TEST_PATH.finditer(line):
                if line[m.end():m.end() + 1] in ("*", "{") or exists(m.group(0)):
                    continue  # a pattern (test_widgets_ch0*.py, an f-string) or a path we have
                wrong.append(f"{f}:{n}: {m.group(0)} is not in the repository")
    assert not wrong, "\n".join(wrong)
