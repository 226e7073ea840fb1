"""The supervisor each graded kernel runs under (standard library only: started as a script).

    python -I sandbox.py --marker TOKEN [--memory BYTES] [--cpu SECONDS] [--nproc N] [--uid N]
                         [--own PATH]... [--hide DIR]... [--writable DIR]... [--log FILE] [--cover DIR]... [--keep DIR]...
                         -- KERNEL COMMAND...

It makes itself a child subreaper (Linux), so processes the kernel detaches (``setsid``, double
fork) are re-parented to it; hides each ``--hide`` folder behind an empty tmpfs (only when the
grader started it in a mount namespace of its own), covers each ``--cover`` (the temporary
folder; ``/root`` when the kernel runs as another user) with an empty one that holds only the
``--writable`` and ``--keep`` folders inside it (Python, the course) and, given
``--writable``, makes every other mount read-only; gives each ``--own`` folder, with everything in
it, to ``--uid`` (or, without ``--uid``, to the user the command's ``setpriv --reuid`` names);
then forks the kernel in a new session with the memory (RLIMIT_AS), CPU-time (RLIMIT_CPU) and
process-count (RLIMIT_NPROC) limits, as ``--uid`` when given (root only). When the kernel exits, or the supervisor is told to
stop (SIGTERM, SIGINT, SIGHUP), it kills every process left: the kernel's process group, every
orphan re-parented to it, and every process whose environment carries ``ATTNKIT_SANDBOX=TOKEN``.

The kernel's parent is this supervisor, not the grader: ``os.kill(os.getppid(), SIGKILL)`` from
a learner's cell ends this notebook's sandbox only. In a PID namespace the supervisor is its
process 1, which signals from inside the namespace cannot kill, and its exit ends every
process in the namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    if "--" not in argv:
        raise SystemExit("sandbox: expected -- KERNEL COMMAND")
    cut = argv.index("--")
    opts, cmd = argv[:cut], argv[cut + 1:]
    got = {"marker": None, "memory": 0, "cpu": 0, "nproc": 0, "uid": None, "own": [], "hide": [], "writable": [],
           "log": None, "cover": [], "keep": []}
    for key, value in zip(opts[::2], opts[1::2], strict=True):
        name = key.lstrip("-")
        if name in ("own", "hide", "writable", "keep", "cover"):
            got[name].append(value)
        elif name in ("memory", "cpu", "nproc", "uid"):
            got[name] = int(value)
        elif name in ("marker", "log"):
            got[name] = value
        else:
            raise SystemExit(f"sandbox: unknown option {key}")
    if not cmd or not got["marker"]:
        raise SystemExit("sandbox: expected --marker TOKEN and a command")
    return got, cmd


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def hide(folders: list[str]) -> None:
    """An empty read-only tmpfs over each folder, /dev/null over each file (this mount namespace only)."""
    libc = _libc()
    for folder in folders:
        if not os.path.lexists(folder):
            continue  # under a covered folder already
        if os.path.isdir(folder):
            done = _mount(libc, b"tmpfs", folder, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=16k,mode=0555")
        else:
            done = _mount(libc, b"/dev/null", folder, None, MS_BIND)
        if done != 0:
            raise SystemExit(f"sandbox: cannot hide {folder}: {os.strerror(ctypes.get_errno())}")


def _mount(libc, src, target, fstype, flags, data=b"") -> int:
    return libc.mount(src, os.fsencode(target), fstype, flags, data)


def cover(folders: list[str], keep: list[str]) -> None:
    """An empty tmpfs over each of ``folders`` (the temporary folder: other notebooks' private
    folders, their kernels' sockets and connection files), with each ``keep`` folder inside one
    of them bound back in."""
    libc = _libc()
    keep = [k for k in keep if any(k.startswith(f.rstrip("/") + "/") for f in folders)]
    fds = [os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keep]
    for folder in folders:
        if _mount(libc, b"tmpfs", folder, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755") != 0:
            raise SystemExit(f"sandbox: cannot cover {folder}: {os.strerror(ctypes.get_errno())}")
    for k, fd in zip(keep, fds, strict=True):
        os.makedirs(k, exist_ok=True)
        if _mount(libc, f"/proc/self/fd/{fd}".encode(), k, None, MS_BIND | MS_REC) != 0:
            raise SystemExit(f"sandbox: cannot bind {k}: {os.strerror(ctypes.get_errno())}")
        os.close(fd)


def read_only(writable: list[str]) -> None:
    """Every mount read-only in this mount namespace, except ``writable`` (bound onto themselves)
    and a fresh /dev/shm. Without CAP_SYS_ADMIN afterwards (see :func:`main`), nothing undoes it."""
    libc = _libc()
    for path in writable:
        if _mount(libc, path.encode(), path, None, MS_BIND | MS_REC) != 0:
            raise SystemExit(f"sandbox: cannot bind {path}: {os.strerror(ctypes.get_errno())}")
    with open("/proc/self/mountinfo", "rb") as f:
        points = [line.split()[4].decode("unicode_escape") for line in f]
    for point in points:
        if point not in writable and not point.startswith("/proc"):
            _mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)  # some refuse: /sys parts
    if os.path.isdir("/dev/shm"):
        _mount(libc, b"tmpfs", "/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=256m")


def marked(marker: str) -> list[int]:
    """Every process whose environment carries ATTNKIT_SANDBOX=marker (readable ones)."""
    want, found = f"ATTNKIT_SANDBOX={marker}".encode(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                pass
    return found


def children() -> list[int]:
    """This process's children (orphans of the kernel come here: we are their subreaper)."""
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                if stat[stat.rindex(b")") + 2:].split()[1].decode() == me:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def kill_all(kernel: int, marker: str) -> None:
    for _ in range(20):  # each round kills what the last one re-parented to us
        try:
            os.killpg(kernel, signal.SIGKILL)
        except OSError:
            pass
        left = set(children()) | set(marked(marker))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:  # reap
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not left:
            return


def main(argv: list[str]) -> int:
    opts, cmd = parse(argv)
    try:
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if opts["cover"]:
        cover(opts["cover"], opts["writable"] + opts["keep"])
    if opts["writable"]:
        read_only(opts["writable"])
    if opts["hide"]:
        hide(opts["hide"])
    owner = opts["uid"]
    if owner is None and "--reuid" in cmd:
        owner = int(cmd[cmd.index("--reuid") + 1])
    if owner is not None:
        for top in opts["own"]:
            os.lchown(top, owner, owner)
            for folder, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.lchown(os.path.join(folder, name), owner, owner)
    kernel = os.fork()
    if kernel == 0:
        try:
            os.setsid()
            if opts["log"]:  # the kernel's own stdout and stderr (its banner, a crash's traceback)
                fd = os.open(opts["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
            if opts["memory"]:
                resource.setrlimit(resource.RLIMIT_AS, (opts["memory"], opts["memory"]))
            if opts["cpu"]:
                resource.setrlimit(resource.RLIMIT_CPU, (opts["cpu"], opts["cpu"] + 5))
            if opts["nproc"]:
                resource.setrlimit(resource.RLIMIT_NPROC, (opts["nproc"], opts["nproc"]))
            if opts["uid"] is not None:
                os.setgroups([])
                os.setgid(opts["uid"])
                os.setuid(opts["uid"])
            # ipykernel would watch this pid (the grader's, not in a PID namespace) and quit at once;
            # the supervisor ends the kernel instead
            os.environ.pop("JPY_PARENT_PID", None)
            os.execvp(cmd[0], cmd)
        except BaseException as err:  # noqa: BLE001  said on stderr, then the child's exit code
            print(f"sandbox: cannot start {cmd[0]}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        finally:
            os._exit(127)

    def stop(signum, frame):
        kill_all(kernel, opts["marker"])
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    code = 1
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == kernel:
            code = os.waitstatus_to_exitcode(status)
            break
    kill_all(kernel, opts["marker"])
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
