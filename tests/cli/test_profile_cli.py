"""`gradsum profile` and `gradsum report` from the command line."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from gradsum.cli import app

FACTORY = '''
import torch
from torch import nn

def factory(num_classes=None):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
'''


def test_profile_writes_tables_and_report_and_resumes(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(FACTORY)
    out = tmp_path / "run"
    args = ["profile", "--model", f"{model}:factory", "--data", "roads:8:task=pothole,size=32x64",
            "--method", "gradcam,layercam", "--layer", "3", "--baseline", "1", "--shard-size", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("manifest.json", "profile.parquet", "profile_images.parquet", "profile_summary.parquet",
                 "baseline_summary.parquet", "report.html"):
        assert (out / name).is_file(), name
    images = pd.read_parquet(out / "profile_images.parquet")
    assert set(images["method"]) == {"gradcam", "layercam"} and images["image_id"].nunique() == 8
    before = pd.read_parquet(out / "profile.parquet")
    again = CliRunner().invoke(app, args)  # everything is on disk: nothing recomputed, same tables
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(before, pd.read_parquet(out / "profile.parquet"))
    (out / "report.html").unlink()
    rendered = CliRunner().invoke(app, ["report", str(out)])
    assert rendered.exit_code == 0 and (out / "report.html").is_file()
    different = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--seed", "5"])
    assert different.exit_code == 2 and "different profile job" in different.output


def test_profile_user_errors(tmp_path):
    result = CliRunner().invoke(app, ["profile", "--model", "potholenet", "--data", "digits", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "label table" in result.output
    result = CliRunner().invoke(app, ["profile", "--model", "potholenet", "--data", "roads:4", "--method", "nope",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown method" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "report.json" in result.output


def test_profile_refuses_to_resume_with_overwritten_weights(tmp_path):
    import torch

    model = tmp_path / "net.py"
    model.write_text(FACTORY)
    weights = tmp_path / "w.pt"
    namespace: dict = {}
    exec(FACTORY, namespace)
    net = namespace["factory"]()
    torch.save(net.state_dict(), weights)
    out = tmp_path / "run"
    args = ["profile", "--model", f"{model}:factory", "--weights", str(weights), "--data",
            "roads:4:task=pothole,size=32x64", "--layer", "3", "--baseline", "0", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    with torch.no_grad():
        net[-1].weight.add_(1.0)
    torch.save(net.state_dict(), weights)  # same path, new content
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "different profile job" in again.output
