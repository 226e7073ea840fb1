"""Set-up step of the browser tests (tests/browser/): make sure Chromium is there.

`make test` runs this before pytest. The browser tests drive Debian's Chromium through the
Playwright Python package (`executable_path="/usr/bin/chromium"`); they never use
`playwright install`. This script:

- does nothing when Chromium is already installed (so a second run costs nothing);
- installs it with apt-get (`chromium`, plus `fonts-noto-cjk` so that screenshots of the Chinese
  notebooks are readable and `fonts-noto-color-emoji` for the exercise feedback's ✅ ❌ ⏳, both
  SIL OFL) when it runs as root on a machine with apt-get; missing fonts are installed even when
  Chromium is already there;
- otherwise prints a loud message saying exactly what to install. It still exits 0, so that the
  rest of the suite runs; the browser tests then skip, each with the same message (they never
  skip silently).

Chromium elsewhere: set ATTNKIT_CHROMIUM=/path/to/chromium (the tests use it too).
Exit status: 0, except 2 when ATTNKIT_BROWSER_REQUIRED=1 and Chromium is still missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGES = ["chromium"]            # required
# readable Chinese and emoji in the browser's pages and screenshots (matplotlib never uses them)
OPTIONAL_PACKAGES = ["fonts-noto-cjk", "fonts-noto-color-emoji"]
CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]


def find_chromium() -> str | None:
    """The Chromium the browser tests will launch, or None."""
    env = os.environ.get("ATTNKIT_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def has_cjk_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    try:
        out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out.strip())


def has_emoji_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    try:  # U+2705, the check mark of a passed exercise
        out = subprocess.run(["fc-list", ":charset=2705"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out.strip())


def missing_fonts() -> list[str]:
    return [pkg for pkg, have in (("fonts-noto-cjk", has_cjk_font), ("fonts-noto-color-emoji", has_emoji_font))
            if not have()]


def banner(lines: list[str]) -> None:
    bar = "!" * 78
    print(f"\n{bar}", file=sys.stderr)
    for line in lines:
        print(f"!!  {line}", file=sys.stderr)
    print(f"{bar}\n", file=sys.stderr, flush=True)


def apt_install(packages: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"browser_deps: apt-get install {' '.join(packages)}", flush=True)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                       env=env, check=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"browser_deps: apt-get failed: {e}", file=sys.stderr, flush=True)
        return False
    return True


def missing_message() -> list[str]:
    return [
        "The browser tests (tests/browser/) need Chromium, and it is not installed.",
        "They will be SKIPPED. To run them, install Debian's Chromium as root:",
        "",
        "    sudo apt-get update && sudo apt-get install -y chromium fonts-noto-cjk fonts-noto-color-emoji",
        "",
        "(the fonts are optional: they make Chinese and emoji in the screenshots readable.)",
        "Elsewhere, point ATTNKIT_CHROMIUM at a Chromium/Chrome binary.",
        "Never `playwright install`: the tests use the system Chromium.",
    ]


def main() -> int:
    can_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    chromium = find_chromium()
    need = ([] if chromium or os.environ.get("ATTNKIT_CHROMIUM") else PACKAGES)
    extra = missing_fonts()
    if (need or extra) and can_apt:
        if not apt_install(need + extra) and extra and need:
            apt_install(need)  # the fonts are optional: try again without them
        chromium = find_chromium()
    if chromium is None:
        banner(missing_message())
        return 2 if os.environ.get("ATTNKIT_BROWSER_REQUIRED") == "1" else 0
    fonts = missing_fonts()
    print(f"browser_deps: Chromium at {chromium}"
          f"{f' (missing {fonts}: boxes in screenshots)' if fonts else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
