"""One self-contained HTML report (images embedded, opens offline) rendered from a run
folder's `report.json`: sections with paragraphs, a verdict, tables (Parquet or CSV files
of the run) and figures (PNG files of the run). `gradsum report RUN_DIR` re-renders it."""
from __future__ import annotations

import base64
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from gradsum.run.store import write_json, write_text

__all__ = ["ReportSpec", "render_report", "table_html"]


class ReportSpec:
    """Builder for report.json: `section(id, title, text=[...])` then `figure`, `table`,
    `verdict` on the last section; paths are relative to the run folder."""

    def __init__(self, title: str, subtitle: str = "", footer: str = ""):
        self.data: dict[str, Any] = {"title": title, "subtitle": subtitle, "footer": footer, "sections": []}

    def section(self, id: str, title: str, text: list[str] | None = None) -> ReportSpec:
        self.data["sections"].append({"id": id, "title": title, "text": list(text or []), "figures": [],
                                      "tables": [], "verdict": None, "verdict_ok": False})
        return self

    def _last(self) -> dict[str, Any]:
        if not self.data["sections"]:
            raise ValueError("add a section before its figures, tables or verdict")
        return self.data["sections"][-1]

    def text(self, paragraph: str) -> ReportSpec:
        self._last()["text"].append(paragraph)
        return self

    def figure(self, path: str, caption: str, wide: bool = False) -> ReportSpec:
        """A PNG of the run; wide figures take a whole row (galleries, grids)."""
        self._last()["figures"].append({"path": path, "caption": caption, "wide": wide})
        return self

    def table(self, path: str, caption: str = "", columns: list[str] | None = None, max_rows: int = 60,
              digits: int = 2, query: str | None = None, collapsed: bool = False) -> ReportSpec:
        """A table file of the run; `query` (pandas syntax, e.g. "level == 'category'") picks rows.
        `collapsed=True`: the table is folded into `<details><summary>caption (N rows)</summary>`
        and placed after the section's figures (the figure is the main picture, the numbers
        are there for whoever opens them)."""
        self._last()["tables"].append({"path": path, "caption": caption, "columns": columns, "max_rows": max_rows,
                                       "digits": digits, "query": query, "collapsed": bool(collapsed)})
        return self

    def verdict(self, text: str, ok: bool = False) -> ReportSpec:
        self._last()["verdict"], self._last()["verdict_ok"] = text, ok
        return self

    def save(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / "report.json", self.data)


def table_html(frame: Any, columns: list[str] | None = None, max_rows: int = 60, digits: int = 2) -> str:
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    shown = frame.head(max_rows)
    html = shown.to_html(index=False, border=0, float_format=lambda v: f"{v:.{digits}f}", na_rep="–")
    if len(frame) > max_rows:
        html += f'<p class="note">{len(frame) - max_rows} more rows in the table file.</p>'
    return html


def _read(path: Path) -> Any:
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"report tables must be .parquet or .csv files; got {path}")


def render_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render `<run_dir>/report.json` into `<run_dir>/report.html` (or `out`)."""
    import jinja2

    import gradsum

    run_dir = Path(run_dir)
    spec_path = run_dir / "report.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no report.json: it is not a gradsum run folder (or the run has not finished)")
    spec = json.loads(spec_path.read_text())
    sections = []
    for s in spec["sections"]:
        figures = []
        for f in s["figures"]:
            path = run_dir / f["path"]
            if not path.is_file():
                raise FileNotFoundError(f"report figure {path} is missing; re-run the job that writes it")
            figures.append({"caption": f["caption"], "wide": f.get("wide", False),
                            "data": base64.b64encode(path.read_bytes()).decode("ascii")})
        tables = []
        for t in s["tables"]:
            frame = _read(run_dir / t["path"])
            if t.get("query"):
                frame = frame.query(t["query"])
            tables.append({"caption": t.get("caption", ""), "collapsed": bool(t.get("collapsed", False)),
                           "rows": len(frame),
                           "html": table_html(frame, t.get("columns"), t.get("max_rows", 60), t.get("digits", 2))})
        sections.append({**s, "figures": figures, "tables": tables})
    env = jinja2.Environment(loader=jinja2.PackageLoader("gradsum.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        title=spec["title"], subtitle=spec.get("subtitle", ""), footer=spec.get("footer", ""), sections=sections,
        version=gradsum.__version__, created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    return write_text(Path(out) if out else run_dir / "report.html", html)
