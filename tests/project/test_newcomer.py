"""The commands a newcomer types: `make lab` serves the course (also as root); CI runs the suite
with fresh cache and config folders, as on a new machine."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import matplotlib

ROOT = Path(__file__).resolve().parents[2]
FRESH_VARS = ("MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
              "JUPYTER_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


def test_ci_runs_with_fresh_cache_and_config_folders():
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci_run and all(v in ci_run for v in FRESH_VARS)
    fresh = os.environ.get("ATTNKIT_FRESH_DIRS")
    if os.environ.get("CI") == "true":
        assert fresh, "CI must run through .ci/run, which sets up fresh folders"
    if fresh:
        for var in FRESH_VARS:
            assert os.environ[var].startswith(fresh), (var, os.environ[var])
        assert matplotlib.get_cachedir().startswith(fresh)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_course(tmp_path):
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token="
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        listing = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/en", timeout=5) as r:
                    listing = json.load(r)
                break
            except OSError:
                time.sleep(0.5)
        if listing is None:
            proc.kill() if proc.poll() is None else None
            raise AssertionError(f"make lab did not serve (exit {proc.poll()}): {proc.communicate()[0][-3000:]}")
        names = {c["name"] for c in listing["content"]}
        assert "01_scaled_dot_product.ipynb" in names, names
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # noqa: B018
            out = proc.communicate()[0]
    if os.geteuid() == 0:
        assert "running as root" in out and "--allow-root" in out, out[-2000:]
    else:
        assert "--allow-root" not in out, out[-2000:]
