"""Helpers of the browser tests: a throw-away JupyterLab server and notebook copies.

`LabServer` starts JupyterLab from this environment (`sys.executable -m jupyter lab`) on a free
loopback port, with its own settings, workspaces, runtime, config, data and IPython directories
under a temporary folder, serving a temporary root that holds copies of the built notebooks.
`stop()` always ends it: SIGTERM (Lab shuts its kernels down), then SIGKILL for the server and
any process it started that is still there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = REPO / "chapters"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROBE_MARK = "ATTNKIT_BROWSER_PROBE"
# what the terminal summary lists (filled by the tests, read by conftest.py)
REPORT: dict[str, list[str]] = {"screenshots": [], "skipped": []}

# Appended to each copy (never to the committed notebook): reads the titles and axis labels of
# every live explorer's figure, as matplotlib will draw them into the PNG, and any glyph that the
# fonts lack. The browser cannot read text inside an image; the kernel that drew it can.
PROBE_SOURCE = f'''\
# added by tests/browser (only in the test's copy): what the explorers' figures say
import gc as _gc, io as _io, json as _json, warnings as _warnings
import matplotlib.pyplot as _plt
from attnkit.widgets import Explorer as _Explorer
_probe = []
for _e in [o for o in _gc.get_objects() if issubclass(type(o), _Explorer)]:
    with _warnings.catch_warnings(record=True) as _w:
        _warnings.simplefilter("always")
        _fig = _e.static()
        _fig.savefig(_io.BytesIO(), format="png")
    _texts = [_fig._suptitle.get_text() if _fig._suptitle else ""]
    for _ax in _fig.axes:
        _texts += [_ax.get_title(loc) for loc in ("left", "center", "right")]
        _texts += [_ax.get_xlabel(), _ax.get_ylabel()]
    _probe.append({{"titles": [s for s in _texts if s.strip()],
                   "controls": len(_e.controls),
                   "glyph_warnings": sorted({{str(w.message) for w in _w if "Glyph" in str(w.message)}})}})
    _plt.close(_fig)
print("{PROBE_MARK}", _json.dumps({{"explorers": _probe}}, ensure_ascii=False))
'''


def record_screenshot(path: Path) -> None:
    REPORT["screenshots"].append(str(path))


def built_notebooks(lang: str) -> list[Path]:
    """Every built chapter notebook of one language (new chapters are picked up by the glob)."""
    return sorted((CHAPTERS / lang).glob("[0-9][0-9]_*.ipynb"))


def widget_cells(nb) -> list[int]:
    """Indices of the cells whose stored outputs display a widget (the build executed them)."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(WIDGET_VIEW in o.get("data", {}) for o in c.get("outputs", []))]


def make_copy(src: Path, dest: Path) -> dict:
    """Write a copy of `src` without outputs and with the probe cell appended; describe it."""
    nb = nbformat.read(src, as_version=4)
    expected_widgets = widget_cells(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    nb.metadata.pop("widgets", None)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE, metadata={"tags": ["browser-probe"]}))
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return {"widget_cells": expected_widgets,
            "code_cells": sum(c.cell_type == "code" for c in nb.cells),
            "n_cells": len(nb.cells), "probe_index": len(nb.cells) - 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir: Path, locale: str) -> None:
    """Pre-seeded user settings: no news toast, no update check, the interface language, and every
    cell of a notebook in the page (JupyterLab's windowing otherwise swaps cells out of a long
    notebook while the check walks its widgets, so the n-th widget output is not the same element
    from one call to the next: chapter 10's 68 cells read as an empty widget)."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/translation-extension/plugin.jupyterlab-settings": {"locale": locale},
        "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for rel, value in files.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value), encoding="utf-8")


def _descendants(pid: int) -> list:
    """psutil.Process objects (they check the pid was not reused before killing)."""
    try:
        import psutil
        return psutil.Process(pid).children(recursive=True)
    except Exception:
        return []


class LabServer:
    """One JupyterLab for one interface language ('en' or 'zh' -> locale zh_CN)."""

    def __init__(self, ui: str, env: dict[str, str] | None = None):
        self.ui = ui
        self.extra_env = dict(env or {})
        self.tmp = Path(tempfile.mkdtemp(prefix=f"attnkit-lab-{ui}-"))
        self.root = self.tmp / "root"
        self.root.mkdir()
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = self.tmp / "lab.log"
        self._kids: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "LabServer":
        d = {name: self.tmp / name for name in ("settings", "workspaces", "runtime", "config",
                                                 "data", "ipython", "mpl")}
        for p in d.values():
            p.mkdir(exist_ok=True)
        _write_settings(d["settings"], "zh_CN" if self.ui == "zh" else "en")
        env = dict(os.environ,
                   JUPYTERLAB_SETTINGS_DIR=str(d["settings"]),
                   JUPYTERLAB_WORKSPACES_DIR=str(d["workspaces"]),
                   JUPYTER_RUNTIME_DIR=str(d["runtime"]),
                   JUPYTER_CONFIG_DIR=str(d["config"]),
                   # user data dir only; the kernelspec, the widget extension and the language
                   # pack come from this environment's prefix and entry points
                   JUPYTER_DATA_DIR=str(d["data"]),
                   IPYTHONDIR=str(d["ipython"]),
                   MPLCONFIGDIR=str(d["mpl"]),
                   JUPYTER_PLATFORM_DIRS="1",
                   PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            cmd = [sys.executable, "-m", "jupyter", "lab",
                   f"--ServerApp.root_dir={self.root}", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   "--no-browser", "--allow-root",
                   "--IdentityProvider.token=", "--ServerApp.password=",
                   "--ServerApp.disable_check_xsrf=True",
                   # window.jupyterapp: the next notebook opens in the same page (no reload)
                   "--LabApp.expose_app_in_browser=True",
                   "--LabApp.check_for_updates_class="
                   "jupyterlab.handlers.announcements.NeverCheckForUpdate"]
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"{self.url}/api/status", timeout=5) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.5)
            last_error = self.log_tail()
            self.stop(keep_tmp=True)
        raise RuntimeError(f"JupyterLab ({self.ui}) did not start; its log ends:\n{last_error}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut every session and kernel down (between notebooks: keeps the CPUs free)."""
        try:
            for s in self.api("GET", "/api/sessions") or []:
                self.api("DELETE", f"/api/sessions/{s['id']}")
            for k in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{k['id']}")
        except (urllib.error.URLError, OSError, ValueError):
            pass

    def stop(self, keep_tmp: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            kids = set(_descendants(proc.pid)) | self._kids
            if proc.poll() is None:
                self.shutdown_kernels()
                kids |= set(_descendants(proc.pid))
                proc.send_signal(signal.SIGTERM)  # Lab stops its kernels on the way out
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
            for p in kids:  # anything Lab started that outlived it (by pid, checked by psutil)
                try:
                    p.kill()
                except Exception:
                    pass
        if not keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def remember_children(self) -> None:
        if self.proc is not None:
            self._kids |= set(_descendants(self.proc.pid))
