"""Where each graded kernel runs: the strongest sandbox the system allows, in a fixed order.

1. ``namespaces``: ``unshare`` gives the kernel network, PID and mount namespaces of its own
   (as root directly; as a normal user inside a user namespace, ``unshare -r``). No network at
   all (not even loopback); it sees only its own processes in /proc; every mount is read-only
   except its private folder; the temporary folder (other notebooks' private folders, sockets and
   connection files), the submissions' folders and the teacher's HOME (all but what Python and
   attnkit need) are hidden behind empty mounts; ``setpriv`` drops every capability
   and sets no-new-privileges, so the kernel cannot undo any of it. The kernel's client talks to
   it through IPC (Unix) sockets in its private folder, which cross the network namespace.
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
    "classroom.isolation.root": {"en": "namespaces (network, PID, mount; read-only files; no capabilities)",
                                 "zh": "命名空间（网络、PID、挂载；文件只读；无 capability）"},
    "classroom.isolation.user": {
        "en": "namespaces in a user namespace (network, PID, mount; read-only files; no capabilities)",
        "zh": "user namespace 里的命名空间（网络、PID、挂载；文件只读；无 capability）"},
    "classroom.isolation.none": {
        "en": "not isolated (network and the teacher's files reachable; temporary HOME, limits, supervisor only)",
        "zh": "not isolated 未隔离（能联网，也能碰到老师的文件；只有临时 HOME、资源限制和监管进程）"},
})


def label(mode: str, lang: str | None = None) -> str:
    """What the report says about a notebook's isolation (in ``lang``, default the current one)."""
    return t(f"classroom.isolation.{mode if mode in ('root', 'user') else 'none'}", lang=lang)


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
            hide: list[str], memory: int, cpu: int) -> list[str]:
    """The kernel's command wrapped in the namespaces (if any), the supervisor and setpriv."""
    sup = [sys.executable, "-I", str(SANDBOX), "--marker", marker, "--memory", str(memory), "--cpu", str(cpu),
           "--log", str(private / "kernel.log")]
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
    return [*prefix, *sup, "--writable", str(private), "--", *DROP, *kernel_cmd]


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
