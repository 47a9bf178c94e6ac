"""The HTML report: self-contained, renders in headless Chromium without console errors,
every image decodes, the expected headings are there."""
from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from browser import needs_chromium, open_page
from gradsum.report import ReportSpec, render_report
from gradsum.run.runner import write_table
from gradsum.run.store import save_figure


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


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    errors, images, headings = open_page(make_run(tmp_path))
    assert errors == []
    assert images and all(done and width > 0 for done, width in images)
    assert headings == ["Data", "GradSUM profile"]
