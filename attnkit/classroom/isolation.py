"""Where each graded kernel runs: the strongest sandbox the system allows, in a fixed order.

1. ``namespaces``: ``unshare`` gives the kernel network, PID and mount namespaces of its own
   (as root directly; as a normal user inside a user namespace, ``unshare -r``). No network at
   all (not even loopback); it sees only its own processes in /proc; every mount is read-only
   except its private folder; the temporary folder (other notebooks' private folders, sockets and
   connection files), the submissions' folders and the teacher's HOME (all but what Python and
   attnkit need) are hidden behind empty mounts; ``setpriv`` drops every capability
   and sets no-new-privileges, so the kernel cannot undo any of it. The kernel's client talks to
   it through IPC (Unix) sockets in its private folder, which cross the network namespace.
   As root, each kernel also runs as an unprivileged user of its own, from a reserved range of
   user ids (:data:`UID_BASE`; two notebooks graded at once never share one), with at most
   :data:`NPROC` processes: a fork bomb stops there and does not starve its neighbour. Folders on
   the way to Python that such a user cannot enter (``/root`` holding pyenv) are covered with an
   empty one that holds only what the kernel needs. Where that user cannot start Python, the
   kernel runs as capability-less root (the label says so).
2. ``not isolated``: where ``unshare`` is missing or refused (macOS, hardened desktops,
   containers without user namespaces). The kernel runs as the teacher, with the network and the
   teacher's files reachable; what still holds is listed below.

In both: a temporary HOME, IPython and Jupyter folders (a startup file dies with the run), an
environment with none of the teacher's variables (:func:`environment`), memory (RLIMIT_AS) and
CPU-time limits, and a supervisor (:mod:`attnkit.classroom.sandbox`) as the kernel's parent that
kills everything the kernel started when it ends.
"""

from __future__ import annotations

import functools
import os
import pwd
import queue
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import attnkit
from attnkit.i18n import register, t

SANDBOX = Path(__file__).with_name("sandbox.py")
NAMESPACES = ["--net", "--pid", "--mount", "--kill-child", "--mount-proc"]
DROP = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--nnp", "--"]
UID_BASE = 0x7FF00000  # reserved user ids for graded kernels (2146435072 on): no account uses them
NPROC = 256  # processes (threads count) a kernel's user may have when it is a user of its own
NPROC_SHARED = 512  # added to the teacher's own count where the kernel runs under the teacher's user id
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "ATTNKIT_CASE_SEED")


@functools.lru_cache(maxsize=1)
def probe() -> tuple[str, list[str]]:
    """(mode, command prefix): "root" or "user" (namespaces) or "none", tried in that order."""
    want = os.environ.get("ATTNKIT_ISOLATION", "")  # "user" or "none": a weaker one on purpose (tests)
    if want == "none" or sys.platform != "linux" or not shutil.which("unshare") or not shutil.which("setpriv"):
        return "none", []
    tries = [("root", ["unshare", *NAMESPACES])] if os.geteuid() == 0 and want != "user" else []
    tries.append(("user", ["unshare", "-r", *NAMESPACES]))
    for mode, prefix in tries:
        try:
            done = subprocess.run([*prefix, *DROP, "true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return mode, prefix
    return "none", []


register({
    "classroom.isolation.root": {
        "en": "namespaces (network, PID, mount; read-only files; no capabilities), as root: no process limit",
        "zh": "命名空间（网络、PID、挂载；文件只读；无 capability），以 root 运行：没有进程数限制"},
    "classroom.isolation.uid": {
        "en": "namespaces (network, PID, mount; read-only files; no capabilities), as user {uid}: at most {nproc} processes",
        "zh": "命名空间（网络、PID、挂载；文件只读；无 capability），以用户 {uid} 运行：最多 {nproc} 个进程"},
    "classroom.isolation.user": {
        "en": "namespaces in a user namespace (network, PID, mount; read-only files; no capabilities); "
              "process limit shared with the teacher's user",
        "zh": "user namespace 里的命名空间（网络、PID、挂载；文件只读；无 capability）；进程数限制与老师的用户共用"},
    "classroom.isolation.none": {
        "en": "not isolated (network and the teacher's files reachable; temporary HOME, limits, supervisor only)",
        "zh": "not isolated 未隔离（能联网，也能碰到老师的文件；只有临时 HOME、资源限制和监管进程）"},
})


def label(mode: str, lang: str | None = None, uid: int | None = None) -> str:
    """What the report says about a notebook's isolation (in ``lang``, default the current one)."""
    if mode == "root" and uid is not None:
        return t("classroom.isolation.uid", lang=lang, uid=uid, nproc=NPROC)
    return t(f"classroom.isolation.{mode if mode in ('root', 'user') else 'none'}", lang=lang)


def closed_ancestors() -> dict[str, list[str]]:
    """{a folder on the way to what a kernel needs that other users cannot enter (``/root``):
    the needed folders inside it}."""
    out: dict[str, list[str]] = {}
    for k in needed():
        for a in reversed(k.parents):
            if a != Path("/") and not os.stat(a).st_mode & 0o001:
                out.setdefault(str(a), []).append(str(k))
                break
    return out


def _tasks(uid: int) -> int:
    """Processes and threads of ``uid`` now (what RLIMIT_NPROC counts)."""
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    n += int(fields["Threads"])
            except (OSError, KeyError, ValueError):
                pass
    return n


@functools.lru_cache(maxsize=1)
def uids_work() -> bool:
    """Whether a kernel can run as a user of its own here: root, namespaces, and Python starts as
    such a user inside the sandbox (``ATTNKIT_ISOLATION=root`` turns it off: tests)."""
    mode, prefix = probe()
    if mode != "root" or os.environ.get("ATTNKIT_ISOLATION") == "root":
        return False
    with tempfile.TemporaryDirectory(prefix="attnkit-probe-") as tmp:
        private = Path(tmp).resolve()
        os.chmod(private, 0o711)
        env = environment(private / "home", "probe", 1)
        (private / "work").mkdir()
        (private / "rt").mkdir()
        import importlib.util

        # reading the course's, the standard library's, torch's and ipykernel's first files as that user
        # (importing torch would take seconds; Python's frozen start-up modules need no file)
        files = [attnkit.__file__] + [getattr(importlib.util.find_spec(m), "origin", None) or attnkit.__file__
                                      for m in ("json", "torch", "ipykernel")]
        check = f"import os\nfor f in {files!r}:\n    open(f).close()\nprint(os.getuid())"
        cmd = command([sys.executable, "-c", check], mode, prefix,
                      "probe" + os.urandom(8).hex(), private, [], 4 << 30, 60, UID_BASE - 1)
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=120, env=env, cwd=private / "work")
        except (OSError, subprocess.TimeoutExpired):
            return False
        log = private / "kernel.log"  # the command's output goes there
        return done.returncode == 0 and log.exists() and log.read_text().split()[-1:] == [str(UID_BASE - 1)]


def uid_pool(jobs: int) -> queue.Queue | None:
    """``jobs`` user ids no account uses, one per notebook graded at once (None: not root, or
    :func:`uids_work` says no)."""
    if not uids_work():
        return None
    pool: queue.Queue = queue.Queue()
    uid, found = UID_BASE + (os.getpid() % 4096) * 64, 0
    while found < jobs:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            pool.put(uid)
            found += 1
        uid += 1
    return pool


def needed() -> list[Path]:
    """What a kernel must still reach: Python, the virtual environment, attnkit's checkout."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent,
             Path(attnkit.__file__).resolve().parents[1]}
    paths |= {Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    return sorted(paths)


def hidden(submissions: list[Path], stage: Path) -> list[str]:
    """The folders and files to hide from every kernel: the submissions' folders, and each entry
    of the teacher's HOME that holds nothing a kernel needs."""
    keep = needed() + [stage]

    def holds(p: Path) -> bool:  # p is, or contains, or lies inside something kept
        return any(p == k or p in k.parents or k in p.parents for k in keep)

    out = {folder for folder in {s.resolve().parent for s in submissions} if not holds(folder)}
    home = Path(os.path.expanduser("~")).resolve()
    if home != Path("/") and home.is_dir() and home not in stage.parents:
        for entry in home.iterdir():
            entry = entry.resolve() if not entry.is_symlink() else entry
            if not entry.is_symlink() and (entry.is_dir() or entry.is_file()) and not holds(entry):
                out.add(entry)
    # a folder inside another hidden one is hidden with it (and could not be mounted over)
    return sorted(str(p) for p in out if not any(q in p.parents for q in out))


def environment(home: Path, marker: str, threads: int) -> dict[str, str]:
    """The kernel's whole environment: none of the teacher's variables besides :data:`KEEP_ENV`."""
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    for name, sub in (("HOME", ""), ("IPYTHONDIR", ".ipython"), ("JUPYTER_CONFIG_DIR", ".jupyter"),
                      ("JUPYTER_DATA_DIR", ".local/share/jupyter"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                      ("MPLCONFIGDIR", ".config/matplotlib"), ("XDG_CACHE_HOME", ".cache"),
                      ("XDG_CONFIG_HOME", ".config"), ("TMPDIR", "tmp")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(home / sub)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONNOUSERSITE="1",
               PYDEVD_DISABLE_FILE_VALIDATION="1", JUPYTER_PLATFORM_DIRS="1", ATTNKIT_SANDBOX=marker)
    return env


def command(kernel_cmd: list[str], mode: str, prefix: list[str], marker: str, private: Path,
            hide: list[str], memory: int, cpu: int, uid: int | None = None) -> list[str]:
    """The kernel's command wrapped in the namespaces (if any), the supervisor and setpriv (as
    ``uid``, root only: ``private``'s work, home and rt folders become that user's)."""
    nproc = NPROC if uid is not None else (0 if mode == "root" else _tasks(os.getuid()) + NPROC_SHARED)
    sup = [sys.executable, "-I", str(SANDBOX), "--marker", marker, "--memory", str(memory), "--cpu", str(cpu),
           "--nproc", str(nproc), "--log", str(private / "kernel.log")]
    if mode == "none":
        return [*sup, "--", *kernel_cmd]
    for path in hide:
        sup += ["--hide", path]
    tmp = Path(tempfile.gettempdir()).resolve()
    if tmp in private.parents and not any(k == tmp or k in tmp.parents for k in needed()):
        sup += ["--cover", str(tmp)]  # other notebooks' folders, sockets and connection files: out of sight
        inside = [k for k in needed() if tmp in k.parents]  # Python or the course cloned under /tmp
        for k in inside:
            if not any(o in k.parents for o in inside):  # the outermost ones: a bind brings the rest
                sup += ["--keep", str(k)]
    drop = DROP
    if uid is not None:
        for folder, inside in closed_ancestors().items():
            sup += ["--cover", folder] + [x for k in inside for x in ("--keep", k)]
        sup += [x for sub in ("work", "home", "rt") for x in ("--own", str(private / sub))]
        drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *DROP[1:]]
    return [*prefix, *sup, "--writable", str(private), "--", *drop, *kernel_cmd]


def sweep(marker: str) -> int:
    """Kill every process still carrying ``marker`` (the fallback's safety net); how many."""
    import signal

    from attnkit.classroom.sandbox import marked
    n = 0
    for pid in marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except OSError:
            pass
    return n
