"""Open a report in a real headless browser (Debian's chromium): a screenshot, the DOM after the
page's script ran, and every console message the page produced.

chromium is a system package, which the Makefile's test targets install when it is missing; where
it is missing still, the test fails and says how to install it, rather than skipping: a skipped
browser test would pass CI without a browser.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0")
# chromium logs each console message of the page (log, error, CSP violation, uncaught exception)
# on stderr as `...:INFO:CONSOLE:LINE] "message", source: URL (LINE)`, whatever its level.
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


@dataclasses.dataclass
class Rendered:
    screenshot: Path
    dom: str
    console: list  # the page's console messages
    root_tag: str  # the <html ...> start tag after the script ran, with its data-report-* marks


def chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed; install it with `make chromium` (`make test` does)")


def render(page: Path, workdir: Path, size=(1280, 4000), timeout: float = 120) -> Rendered:
    screenshot = workdir / "screenshot.png"
    command = [chromium(), *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--screenshot={screenshot}",
               f"--window-size={size[0]},{size[1]}", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [m.group(1) for m in map(CONSOLE_LINE.search, done.stderr.splitlines()) if m]
    root = re.search(r"<html[^>]*>", done.stdout)
    return Rendered(screenshot, done.stdout, console, root.group(0) if root else "")
