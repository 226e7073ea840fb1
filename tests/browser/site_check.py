"""Helpers of tests/browser/test_site.py: build the website once, serve it on 127.0.0.1, and
count every request a page makes that does not stay on this machine.

The site is built by tools/site.py (imported from its file: ``site`` is also a standard-library
module) from ``chapters/`` (or from ATTNKIT_SITE_CHAPTERS, a folder with en/ and zh/ holding
other built notebooks) into a temporary folder.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
CJK = __import__("re").compile(r"[\u3400-\u9fff]")


def site_module():
    spec = importlib.util.spec_from_file_location("attnkit_site_builder", REPO / "tools" / "site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_site(out: Path) -> dict:
    """Build the site into ``out``; what tools/site.py's build returns, plus its log lines."""
    module = site_module()
    chapters = Path(os.environ.get("ATTNKIT_SITE_CHAPTERS", module.CHAPTERS))
    lines: list[str] = []
    report = module.build(out, chapters, log=lines.append)
    report["log"] = lines
    report["module"] = module
    return report


class SiteServer:
    """The built site over http on a free port of 127.0.0.1 (a thread; ``stop()`` ends it)."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test output
        pass


def is_local(url: str) -> bool:
    """file:, data: and blob: URLs, and http(s) to 127.0.0.1 / localhost, stay on this machine."""
    parts = urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost")


class RequestGuard:
    """Route every request of a browser context: local ones go through, any other is aborted and
    recorded (the tests require none)."""

    def __init__(self, context):
        self.blocked: list[str] = []
        self.seen: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route) -> None:
        url = route.request.url
        self.seen.append(url)
        if is_local(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()
