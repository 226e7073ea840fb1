"""Stored outputs print no rounding noise (chapters/AUTHORING.md, "Printed numbers").

nbval compares every cell's text output strictly, so a digit that only the authoring CPU
reproduces fails on a reader's machine. This scan finds such digits in the stored outputs of every
compared cell (widget and timing cells, tagged ``nbval-ignore-output``, are exempt), so the rule
holds for chapters written later: a number is flagged when it is noise-level,

- written in e-notation and 1000x below the line's scale, or
- written with three or more significant digits and 10,000x below the line's scale,

where the line's scale is its largest decimal number, and at least 1 (the scale of the
unit-variance tensors the chapters compare; integer counts such as 16,777,216 set no scale),

and it is not a literal of the cell's own source (a tolerance the cell states, such as the
``1e-5`` of ``bound(err, 1e-5)``).
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "chapters").glob("[ez][nh]/*.ipynb"))

# a number not glued to a word (float16, ch01, W_q2, 0x1f are not numbers here)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def _significant_digits(token: str) -> int:
    mantissa = re.split(r"[eE]", token.replace(",", "").lstrip("+-"))[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0") or digits
    return len(digits)


def source_literals(source: str) -> set[float]:
    """The numeric literals of a cell's code, as values."""
    values = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NUMBER:
                try:
                    values.add(float(tok.string.replace("_", "")))
                except ValueError:
                    pass
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return values


def noise_numbers(line: str, literals: set[float] = frozenset()) -> list[str]:
    """The noise-level numbers of one output line (see the module docstring)."""
    tokens = NUMBER.findall(line)
    if not tokens:
        return []
    # the line's scale: its largest decimal number (counts such as 16,777,216 or 2.06e+08 FLOPs
    # set no scale), and at least 1, the scale of the unit-variance tensors the chapters compare
    scales = [abs(_value(t)) for t in tokens if "." in t and not re.search(r"[eE]\+?0*[1-9]", t)]
    top = max([1.0, *scales])
    found = []
    for tok in tokens:
        v = abs(_value(tok))
        if v == 0.0 or v in literals:
            continue
        e_noise = bool(re.search(r"[eE]-", tok)) and v < 1e-3 * top
        fixed_noise = _significant_digits(tok) >= 3 and v < 1e-4 * top
        if e_noise or fixed_noise:
            found.append(tok)
    return found


def _texts(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append("".join(o.get("text", "")))
        elif o.get("output_type") in ("execute_result", "display_data"):
            text = o.get("data", {}).get("text/plain")
            if text:
                out.append("".join(text))
        elif o.get("output_type") == "error":
            out.append("\n".join(o.get("traceback", [])))
    return out


def scan(notebook: Path) -> list[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    findings, index = [], 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        index += 1
        if "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []):
            continue
        source = "".join(cell["source"])
        literals = source_literals(source)
        for text in _texts(cell):
            for line in text.splitlines():
                bad = noise_numbers(line, literals)
                if bad:
                    findings.append(f"{notebook.parent.name}/{notebook.name} code cell {index}: "
                                    f"{', '.join(bad)} in {line.strip()[:120]!r}")
    return findings


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_stored_outputs_print_no_rounding_noise(notebook):
    findings = scan(notebook)
    assert not findings, ("noise-level numbers in stored outputs: print them as a bound "
                          "(attnkit.numbers.bound / within), see chapters/AUTHORING.md:\n  "
                          + "\n  ".join(findings))


def test_there_are_notebooks_to_scan():
    assert len(NOTEBOOKS) == 22


@pytest.mark.parametrize("line, flagged", [
    ("relative difference 3.9e-07", ["3.9e-07"]),
    ("max difference 4.3e-06 between merged and unmerged", ["4.3e-06"]),
    ("Nystrom m = N: relative error 7.0e-15", ["7.0e-15"]),
    ("N = 4096: error 0.0000123", ["0.0000123"]),
    ("16,777,216 pairs, density 0.152, 2.06e+08 FLOPs", []),  # counts set no scale
    ("max |diff| < 1e-5: True", ["1e-5"]),  # unless the cell's source states 1e-5 (next test)
    ("peak loss 0.5390", []),  # a training result: the precision test's business, not noise
    ("loss 0.54, recall 0.99, state 34,304 bytes", []),
    ("float16 error 0.00098 vs float32", []),  # two digits: a coarse, stable result
    ("weights move by 1.4e-10 at weight 1.000", ["1.4e-10"]),
    ("1.2e+09 FLOPs", []),
    ("ch01 layer 2 head 3", []),
])
def test_the_scan_flags_noise_and_only_noise(line, flagged):
    assert noise_numbers(line) == flagged


def test_a_tolerance_written_in_the_cell_is_not_noise():
    literals = source_literals("print(t('ch09.assoc', bound=bound(err, 1e-5)))")
    assert noise_numbers("max |diff| < 1e-5: True", literals) == []
