"""The HTML report: self-contained, renders in headless Chromium without console errors,
every image decodes, the expected headings are there."""
from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from matplotlib.figure import Figure

from gradsum.report import ReportSpec, render_report
from gradsum.run.runner import write_table
from gradsum.run.store import save_figure

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_run(tmp_path):
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.bar(["road", "sky"], [70, 30])
    ax.set_ylabel("share of the heatmap (%)")
    save_figure(tmp_path / "figures" / "bars.png", fig)
    write_table(tmp_path / "tables" / "summary.parquet",
                pd.DataFrame({"level": ["category", "label"], "category": ["flat", "road"], "share": [70.0, 70.0]}))
    spec = ReportSpec("Test report", "subtitle")
    spec.section("data", "Data", ["Some text <b>escaped</b>."]).figure("figures/bars.png", "bars")
    spec.section("gradsum", "GradSUM profile").table("tables/summary.parquet", "summary", query="level == 'category'")
    spec.verdict("model over-attends vegetation")
    spec.save(tmp_path)
    return render_report(tmp_path)


def test_report_is_self_contained_and_filters_tables(tmp_path):
    html = make_run(tmp_path).read_text()
    assert "data:image/png;base64," in html and 'src="figures' not in html
    assert "&lt;b&gt;escaped&lt;/b&gt;" in html  # text is escaped
    assert html.count("<td>") == 3  # one row (the category one) of three columns
    assert "over-attends vegetation" in html


def test_missing_figure_or_spec_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no report.json"):
        render_report(tmp_path)
    spec = ReportSpec("t").section("a", "A").figure("figures/none.png", "x")
    spec.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="none.png"):
        render_report(tmp_path)


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="headless Chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    report = make_run(tmp_path)
    assert CHROMIUM is not None, "chromium is required in CI"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        finally:
            browser.close()
    assert errors == []
    assert images and all(done and width > 0 for done, width in images)
    assert headings == ["Data", "GradSUM profile"]
