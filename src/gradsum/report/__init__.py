"""The HTML report and its figures."""
from gradsum.report.html import ReportSpec, render_report, table_html

__all__ = ["ReportSpec", "render_report", "table_html"]
