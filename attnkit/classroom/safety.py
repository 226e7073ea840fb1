"""What keeps a learner's files and code from misleading the grader or harming the teacher's files.

- :func:`shown`: a file name as a teacher can read it, whatever its bytes (GBK names from a
  Chinese Windows zip are not UTF-8).
- :func:`tampering`: the lines of a learner's cell that reach for the grading itself
  (checkers, comparisons, outcome records, other processes, generated code), as evidence.
- :func:`write_atomically`: the report and CSV replace their target in one rename, never through
  a symlink, never inside a submissions folder.
- :func:`csv_cell`: a CSV cell a spreadsheet reads as text, never as a formula.
- :func:`digest`, :func:`course_digest`: sha256 of a submission and of the installed course.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import tempfile
from pathlib import Path

import attnkit

FEEDBACK_CAP = 64 * 1024  # characters of feedback kept per exercise

# names whose rebinding or patching changes what a check decides
GUARDED = {"allclose", "isclose", "equal", "assert_close", "testing", "run_checks", "check_answer", "OUTCOMES",
           "OUTCOME_MIME", "compare_tensors", "display", "publish_display_data", "Measured", "Case", "registry",
           "Exercise", "VALUES_MIME", "measure_peak_bytes"}
# attribute names whose patching changes what the grader's own comparison is sent (an object's
# .cases = ... is not an answer to any exercise; a local variable named cases is)
ATTR_GUARDED = {"prepare", "compare", "expected", "cases", "answer", "encode", "decode", "Result", "solution",
                "visible", "draw", "forbid"}
BARE = {"exec", "eval", "compile", "globals", "vars", "setattr", "delattr"}  # flagged as plain names only
GUARDED_ROOTS = {"torch", "attnkit", "sys", "builtins", "IPython", "np", "numpy", "F"}
CALLS = {"exec", "eval", "compile", "__import__", "setattr", "delattr", "globals", "vars", "getsource",
         "import_module", "reload", "settrace", "setprofile", "register", "system", "popen", "Popen", "run",
         "kill", "killpg", "fork", "setsid", "execv", "execve", "spawn", "CDLL", "connect", "create_connection"}
STRINGS = re.compile(r"vnd\.attnkit|/proc|\.ipynb|connection_file|kernel-.*\.json|input_transformers|"
                     r"startup|site-packages|attnkit/exercises|attnkit\.classroom|\.ipython|\.jupyter|ATTNKIT_|"
                     r"^__\w+__$|\brun_checks\b|\bcheck_answer\b|\bregistry\b|_call_forbidding|_Guard\b")
MODULES = {"ctypes", "subprocess", "socket", "_socket", "multiprocessing", "signal", "importlib", "inspect",
           "nbformat", "nbclient", "jupyter_client", "pty", "shutil", "gc", "builtins", "pickle", "_pickle",
           "cPickle", "marshal", "dill", "cloudpickle", "shelve", "copyreg", "joblib", "types", "dis", "code",
           "codeop", "runpy", "zipimport", "pkgutil", "threading", "_thread", "atexit", "sys"}
# attributes that reach into objects' machinery (code, globals, frames, attribute setting)
REACH = {"__setattr__", "__delattr__", "__dict__", "__globals__", "__code__", "__builtins__", "__subclasses__",
         "__getattribute__", "__import__", "__closure__", "__defaults__", "__kwdefaults__", "__loader__",
         "__spec__", "__class__", "__bases__", "__mro__", "__init_subclass__", "__wrapped__", "__reduce__",
         "__reduce_ex__", "f_globals", "f_locals", "f_back", "f_builtins", "gi_frame", "tb_frame", "modules",
         "_getframe", "load", "loads", "torch_function_mode", "_C"}


def shown(name: str) -> str:
    """``name`` readable and printable: non-UTF-8 bytes (surrogate escapes) as \\xNN, followed by
    the name's GBK reading where the bytes decode as GBK. b'\\xd5\\xc5\\xc8\\xfd' -> '\\xd5\\xc5\\xc8\\xfd (GBK: 张三)'."""
    raw = os.fsencode(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    escaped = raw.decode("utf-8", "backslashreplace")
    try:
        return f"{escaped} (GBK: {raw.decode('gbk')})"
    except UnicodeDecodeError:
        return escaped


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    return ".".join(reversed(parts))


def _guarded_target(node) -> bool:
    if isinstance(node, ast.Name):
        return node.id.startswith(("check_", "solution_")) or node.id in GUARDED
    if isinstance(node, ast.Attribute):
        name = _dotted(node)
        return node.attr.startswith(("check_", "solution_")) or node.attr in GUARDED | ATTR_GUARDED or \
            name.split(".")[0] in GUARDED_ROOTS or node.attr.startswith("__")
    if isinstance(node, ast.Subscript):
        return _guarded_target(node.value) or _dotted(node.value).split(".")[0] in GUARDED_ROOTS
    if isinstance(node, (ast.Tuple, ast.List)):
        return any(map(_guarded_target, node.elts))
    return False


def _attnkit_names(tree) -> set[str]:
    """Names a cell binds to attnkit's modules or to what it imports from them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("attnkit")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnkit"):
            names |= {a.asname or a.name for a in node.names}
    return names


def tampering(source: str) -> list[str]:
    """The lines of ``source`` that reach for the grading itself, as "line N: text" (empty: none).

    A learner's answer to an exercise needs none of this: it rebinds or patches a checker, a
    comparison or the display of records; imports a module that reaches other processes, code or
    files; calls exec/eval/setattr/getsource/os.kill/...; or names /proc, a notebook, a kernel's
    connection file, IPython's startup or the outcome records' MIME type. The scan is static: a
    learner can hide such code from it (inside a string that is executed, say), and then it is the
    exec that is flagged. Also flagged: loading code or objects from bytes (pickle, marshal,
    torch.load), reaching into objects' machinery (``type(m).__setattr__``, ``object.__setattr__``,
    ``__dict__``, ``__globals__``, ``__code__``, frames, ``sys.modules``), patching builtins, import
    tricks (importlib, ``__import__``, runpy), and assigning to any attribute of what the cell
    imported from attnkit.
    """
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [f"line {i}: {text.strip()[:160]}" for i, text in enumerate(lines, 1) if STRINGS.search(text)]
    hits = set()
    ours = _attnkit_names(tree)

    def patches(target) -> bool:
        if isinstance(target, (ast.Tuple, ast.List)):
            return any(map(patches, target.elts))
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            return _guarded_target(target) or _dotted(target).split(".")[0] in ours
        return _guarded_target(target)

    for node in ast.walk(tree):
        hit = False
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            hit = any(map(patches, targets))
        elif isinstance(node, ast.Attribute):
            hit = node.attr in REACH and not (node.attr in ("load", "loads") and
                                              _dotted(node.value).split(".")[0] in ("json", "np", "numpy"))
        elif isinstance(node, ast.Name):
            hit = node.id in ("__builtins__", "__import__", "__loader__", "__spec__")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            hit = node.name.startswith("check_") or node.name in GUARDED
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            hit = any(m.split(".")[0] in MODULES or m.startswith("attnkit.exercises") and isinstance(node, ast.Import)
                      for m in mods) or any((a.asname or "").startswith("check_") for a in node.names)
        elif isinstance(node, ast.Call):
            name = _dotted(node.func).split(".")[-1]
            hit = name in CALLS and not (name == "run" and not _dotted(node.func).startswith(("subprocess", "os")))
            if name in BARE and isinstance(node.func, ast.Attribute):  # model.eval(), re.compile(): not builtins
                hit = _dotted(node.func).split(".")[0] in ("builtins", "__builtins__")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            hit = bool(STRINGS.search(node.value))
        elif isinstance(node, ast.Global):
            hit = any(n.startswith("check_") or n in GUARDED for n in node.names)
        if hit and hasattr(node, "lineno"):
            hits.add(node.lineno)
    return [f"line {i}: {lines[i - 1].strip()[:160]}" for i in sorted(hits) if i <= len(lines)]


def csv_cell(text: str) -> str:
    """``text`` as a spreadsheet shows it: a leading ', where it would start a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def refuse_target(path: Path, folders: list[Path]) -> str | None:
    """Why ``path`` must not be written (a symlink, a notebook, inside a submissions folder), or None."""
    if path.is_symlink():
        return "a symbolic link"
    if path.suffix == ".ipynb":
        return "a notebook"
    real = path.resolve()
    for folder in folders:
        if real == folder or folder in real.parents:
            return f"inside the submissions folder {folder}"
    return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path`` (an existing
    file stays whole until the rename; a symlink at ``path`` is replaced, never followed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def course_digest() -> dict[str, str]:
    """sha256 of every file of the installed attnkit package (its checkers included)."""
    root = Path(attnkit.__file__).resolve().parent
    return {p.relative_to(root).as_posix(): digest(p.read_bytes()) for p in sorted(root.rglob("*.py"))}
