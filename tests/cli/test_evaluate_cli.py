"""`gradsum evaluate` from the command line."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from gradsum.cli import app


def test_evaluate_writes_the_table_and_report(tmp_path):
    out = tmp_path / "ev"
    result = CliRunner().invoke(app, ["evaluate", "--model", "potholenet", "--data", "roads:12:task=pothole,size=32x64",
                                      "--target", "1", "--only-with-boxes", "--max-images", "3",
                                      "--methods", "gradcam,saliency", "--metrics", "ebpg,bbox,deletion",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "tables" / "benchmark.parquet")
    assert table["method"].tolist() == ["gradcam", "saliency"]
    assert {"ebpg", "bbox", "deletion", "seconds_per_image", "forward_per_image"} <= set(table.columns)
    assert ((table["ebpg"] >= 0) & (table["ebpg"] <= 100)).all()
    assert (out / "report.html").is_file() and (out / "figures" / "deletion_insertion.png").is_file()


def test_evaluate_user_errors(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--model", "potholenet", "--data", "roads:4:task=pothole",
                                      "--metrics", "accuracy", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown metric" in result.output
