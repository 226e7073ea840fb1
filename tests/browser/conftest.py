"""Fixtures of the browser tests: Chromium (Debian's, through Playwright) and one JupyterLab per
interface language, reused by every notebook of that language and always shut down.

Chromium is installed by `tools/browser_deps.py` (run by `make test`). When it is missing the
tests skip with a loud message naming what to install, repeated in the terminal summary; set
ATTNKIT_BROWSER_REQUIRED=1 to make that a failure instead.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labserver import REPORT, SCREENSHOTS, LabServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from browser_deps import find_chromium, missing_message  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--mute-audio"]

_report = REPORT


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


@pytest.fixture(scope="session")
def browser():
    reason = unavailable_reason()
    if reason:
        _report["skipped"].append(reason)
        if os.environ.get("ATTNKIT_BROWSER_REQUIRED") == "1":
            pytest.fail(f"BROWSER TESTS CANNOT RUN: {reason}")
        print(f"\n{'!' * 78}\n!! BROWSER TESTS SKIPPED: {reason}\n{'!' * 78}", file=sys.stderr)
        pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class Labs:
    """At most one JupyterLab at a time: asking for the other language stops the first."""

    def __init__(self):
        self.running: dict[str, LabServer] = {}

    def get(self, ui: str) -> LabServer:
        for other in [u for u in self.running if u != ui]:
            self.running.pop(other).stop()
        if ui not in self.running:
            self.running[ui] = LabServer(ui).start()
        return self.running[ui]

    def stop_all(self) -> None:
        while self.running:
            self.running.popitem()[1].stop()


@pytest.fixture(scope="session")
def labs(browser):
    pool = Labs()
    atexit.register(pool.stop_all)  # a backstop; the finally below is the normal path
    try:
        yield pool
    finally:
        pool.stop_all()


def pytest_terminal_summary(terminalreporter):
    if _report["skipped"]:
        terminalreporter.section("browser tests SKIPPED", sep="!", red=True, bold=True)
        for line in missing_message():
            terminalreporter.write_line(line)
        for reason in sorted(set(_report["skipped"])):
            terminalreporter.write_line(f"reason: {reason}", red=True)
    if _report["screenshots"]:
        terminalreporter.section("browser screenshots (after Run All)")
        for p in _report["screenshots"]:
            terminalreporter.write_line(p)
