"""Open a local HTML file in headless Chromium (Debian's package, driven by playwright) and
report what a person would see: console errors, whether each image decoded, the h2 headings."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

needs_chromium = pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                    reason="headless Chromium not installed (.ci/run installs it)")


def open_page(path: Path) -> tuple[list[str], list[tuple[bool, int]], list[str]]:
    """(console errors, [(complete, natural width)] per image, h2 texts)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM is not None, "chromium is required in CI (.ci/run installs it)"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        finally:
            browser.close()
    return errors, [tuple(i) for i in images], headings
