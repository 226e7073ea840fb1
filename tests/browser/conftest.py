"""Fixtures of the browser tests: Chromium (Debian's, through Playwright) and one JupyterLab per
interface language, reused by every notebook of that language and always shut down.

The two interface languages run side by side, each in a worker thread of its own (its own
Playwright, Chromium and JupyterLab), working through the selected notebooks in order; each test
waits for the result of its notebook and re-raises its failure. ATTNKIT_BROWSER_SERIAL=1 runs the
languages one after the other instead.

Chromium is installed by `tools/browser_deps.py` (run by `make test`). When it is missing the
tests skip with a loud message naming what to install, repeated in the terminal summary; set
ATTNKIT_BROWSER_REQUIRED=1 to make that a failure instead.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labserver import REPORT, SCREENSHOTS, LabServer  # noqa: E402
from notebook_check import UI, check_notebook, new_context  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from browser_deps import find_chromium, missing_message  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--mute-audio"]


def unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the Playwright Python package is missing: "
                "pip install -c constraints.txt -e '.[test]' (never `playwright install`)")
    if find_chromium() is None:
        return " ".join(line.strip() for line in missing_message() if line.strip())
    return None


class Runner:
    """One worker thread per interface language: Playwright + Chromium + JupyterLab, checking
    its notebooks in order; a Future per notebook holds its log, or its failure."""

    def __init__(self, selected: list[tuple[str, Path]], serial: bool):
        self.selected = selected
        self.serial = serial
        self.futures: dict[tuple[str, str], Future] = {(ui, str(src)): Future()
                                                        for ui, src in selected}
        self.stop_event = threading.Event()
        self.labs: list[LabServer] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        previous = None
        for ui in UI:
            sources = [src for u, src in self.selected if u == ui]
            if not sources:
                continue
            t = threading.Thread(target=self._work, args=(ui, sources, previous if self.serial
                                                          else None),
                                 name=f"browser-{ui}", daemon=True)
            t.start()
            self.threads.append(t)
            previous = t

    def _work(self, ui: str, sources: list[Path], after: threading.Thread | None) -> None:
        if after is not None:
            after.join()
        pw = browser = lab = None
        try:
            from playwright.sync_api import sync_playwright

            # side by side, two kernels share the cores: one math thread each, no oversubscription
            lab = LabServer(ui, env=None if self.serial else {"OMP_NUM_THREADS": "1"})
            self.labs.append(lab)
            lab.start()
            pw = sync_playwright().start()
            browser = pw.chromium.launch(executable_path=find_chromium(), headless=True,
                                         args=CHROMIUM_ARGS)
            context, reuse = new_context(browser, ui), {}
            for src in sources:
                fut = self.futures[(ui, str(src))]
                if self.stop_event.is_set():
                    fut.set_exception(RuntimeError("browser tests stopped before this notebook"))
                    continue
                lines: list[str] = []
                try:
                    lat = check_notebook(context, lab, ui, src, log=lines.append, reuse=reuse)
                    LATENCIES.extend((f"{ui}-ui {src.stem} {what}", ms) for what, ms in lat.items())
                    fut.set_result(lines)
                except BaseException as e:  # noqa: B036 - handed to the test that reports it
                    e.browser_log = lines
                    fut.set_exception(e)
        except BaseException as e:  # noqa: B036 - Lab or Chromium did not start
            for src in sources:
                fut = self.futures[(ui, str(src))]
                if not fut.done():
                    fut.set_exception(e)
        finally:
            for close in (lambda: browser and browser.close(), lambda: pw and pw.stop(),
                          lambda: lab and lab.stop()):
                try:
                    close()
                except Exception as e:
                    print(f"[browser] while shutting down ({ui}): {e}", file=sys.stderr)

    def result(self, ui: str, source: Path, timeout: float) -> list[str]:
        return self.futures[(ui, str(source))].result(timeout=timeout)

    def shutdown(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + 120
        for t in self.threads:  # let a notebook in progress end (its own timeouts bound it)
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for lab in self.labs:  # whatever happened above, no Lab outlives the session
            lab.stop()


def require_browser() -> None:
    """Chromium and Playwright present, or: a failure where they are required (CI sets
    ATTNKIT_BROWSER_REQUIRED=1), else a skip with a banner naming what to install (a non-root
    newcomer without Debian's chromium). The one place the browser tests may skip."""
    reason = unavailable_reason()
    if not reason:
        return
    REPORT["skipped"].append(reason)
    if os.environ.get("ATTNKIT_BROWSER_REQUIRED") == "1":
        pytest.fail(f"BROWSER TESTS CANNOT RUN: {reason}")
    print(f"\n{'!' * 78}\n!! BROWSER TESTS SKIPPED: {reason}\n{'!' * 78}", file=sys.stderr)
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


@pytest.fixture(scope="session")
def browser_runner(request):
    require_browser()
    # only the notebooks of the tests that were selected (-k, node ids) are run
    selected = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if Path(item.path).resolve().parent == Path(__file__).resolve().parent and "source" in params:
            selected.append((params["ui"], params["source"]))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    runner = Runner(selected, serial=os.environ.get("ATTNKIT_BROWSER_SERIAL") == "1")
    atexit.register(runner.shutdown)  # a backstop; the finally below is the normal path
    # a CI runner cancels with SIGTERM: end like Ctrl-C, so that the finally below runs
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        runner.start()
        yield runner
    finally:
        runner.shutdown()
        if signal.getsignal(signal.SIGTERM) is _sigterm_to_interrupt:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


LATENCIES: list[tuple[str, float]] = []  # (notebook and control, ms from the move to the image)


def pytest_terminal_summary(terminalreporter):
    if LATENCIES:
        import statistics

        terminalreporter.section("browser: latency from a control move to its new image")
        for what, ms in LATENCIES:
            terminalreporter.write_line(f"{ms:7.0f} ms  {what}")
        terminalreporter.write_line(
            f"median {statistics.median(ms for _, ms in LATENCIES):.0f} ms, max "
            f"{max(ms for _, ms in LATENCIES):.0f} ms over {len(LATENCIES)} moves (includes the "
            f"kernel's redraw, the comm round trip and decoding; the slider key press starts the clock)")
    if REPORT["skipped"]:
        terminalreporter.section("browser tests SKIPPED", sep="!", red=True, bold=True)
        for line in missing_message():
            terminalreporter.write_line(line)
        for reason in sorted(set(REPORT["skipped"])):
            terminalreporter.write_line(f"reason: {reason}", red=True)
    if REPORT["screenshots"]:
        terminalreporter.section("browser screenshots (after Run All)")
        for p in sorted(REPORT["screenshots"]):
            terminalreporter.write_line(p)
