"""Screenshot a report for the README.

    python docs/screenshot.py runs/main/report.html docs/images/report.png

Uses Debian's Chromium through Playwright, headless, with the flags this project's tests use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from digitlab.report import CHROMIUM, CHROMIUM_FLAGS


def main(report: str, out: str, height: int = 1600) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": height}, device_scale_factor=1)
        page.goto(Path(report).resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
