"""Drive `pitstop demo` and a real kiosk page in headless Chromium.

Used by the browser test (tests/e2e) and by the cold-start benchmark (benchmarks/cold_start.py):
starts the demo as a child process, reads the kiosk URL it prints, opens it in Debian's Chromium
through Playwright, and records when the first award is on screen and when ranks change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("PITSTOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoRun:
    process: subprocess.Popen[str]
    started: float  # time.monotonic() when the command was launched
    kiosk_url: str = ""
    output: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.output += self.process.stdout.read().splitlines()
            self.process.stdout.close()
        return self.process.returncode


@contextmanager
def running_demo(*args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> Iterator[DemoRun]:
    """Start `pitstop demo ARGS`, wait for its KIOSK_URL line, and stop it (SIGINT) on exit."""
    child_env = {k: v for k, v in (env or os.environ).items() if not k.startswith("PITSTOP_")}
    child_env["PITSTOP_DEMO_LOGS"] = str(ROOT / "test-artifacts" / "demo-logs")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pitstop", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
        cwd=ROOT,
    )
    run = DemoRun(process, started)
    try:
        assert process.stdout is not None
        deadline = started + timeout
        for line in process.stdout:
            run.output.append(line.rstrip())
            if line.startswith("KIOSK_URL="):
                run.kiosk_url = line.strip().split("=", 1)[1]
                break
            if time.monotonic() > deadline:
                break
        if not run.kiosk_url:
            raise RuntimeError("the demo printed no kiosk URL:\n" + "\n".join(run.output))
        yield run
    finally:
        run.stop()


def kiosk_rows(page: Any) -> list[tuple[str, int, int]]:
    """(name, rank, points) of every row on the kiosk board, top first."""
    rows: list[tuple[str, int, int]] = page.eval_on_selector_all(
        "#rows tr",
        "rows => rows.map(r => [r.children[1].textContent, Number(r.children[0].textContent),"
        " Number(r.children[3].textContent.replace(/[^0-9]/g, ''))])",
    )
    return [(str(n), int(r), int(p)) for n, r, p in rows]


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1920, 1080)) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


@dataclass
class KioskObservation:
    first_award_s: float  # command start -> first row on the kiosk
    rank_change_s: float | None  # command start -> first change of the ranking after that
    first_rows: list[tuple[str, int, int]]
    later_rows: list[tuple[str, int, int]]


def observe_kiosk(
    run: DemoRun, page: Any, *, timeout: float = 90.0, screenshot: Path | None = None
) -> KioskObservation:
    """Open the kiosk, wait for the first award, then for the ranking to change."""
    page.goto(run.kiosk_url)
    page.wait_for_selector("#rows tr", timeout=timeout * 1000)
    first_award = time.monotonic() - run.started
    first = kiosk_rows(page)
    deadline = time.monotonic() + timeout
    later, change = first, None
    while time.monotonic() < deadline:
        later = kiosk_rows(page)
        if [(n, r) for n, r, _ in later] != [(n, r) for n, r, _ in first] and len(later) >= 2:
            change = time.monotonic() - run.started
            break
        time.sleep(0.1)
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(800)  # let the rank animation settle
        page.screenshot(path=str(screenshot))
    return KioskObservation(first_award, change, first, later)
