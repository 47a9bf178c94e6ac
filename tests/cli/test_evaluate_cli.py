"""`gradsum evaluate` from the command line."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from gradsum.cli import app


def test_evaluate_writes_the_table_and_report(tmp_path):
    import torch

    torch.manual_seed(0)  # the untrained potholenet is drawn from torch's global generator
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


def test_evaluate_resumes_and_refuses_overwritten_weights_and_bad_options(tmp_path):
    import torch

    import testmodels

    weights = tmp_path / "w.pt"
    net = testmodels.voc_net(2)
    torch.save(net.state_dict(), weights)
    out = tmp_path / "run"
    args = ["evaluate", "--model", f"{testmodels.__file__}:voc_net", "--num-classes", "2", "--weights", str(weights),
            "--data", "roads:4:task=pothole,size=32x64", "--methods", "gradcam,rise", "--option", "rise.n_masks=32",
            "--metrics", "ebpg,drop", "--layer", "2", "--shard-size", "2", "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "evaluate-gradcam_00000.parquet", "evaluate-gradcam_00001.parquet",
        "evaluate-rise_00000.parquet", "evaluate-rise_00001.parquet"]
    assert CliRunner().invoke(app, args).exit_code == 0  # finished: read back
    with torch.no_grad():
        net[-1].weight.add_(1.0)
    torch.save(net.state_dict(), weights)  # same path, new content
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "different evaluate-gradcam job" in again.output
    for option, message in (("rise.n_mask=3", "did you mean 'n_masks'"), ("rise.n_masks=-3", "n_masks must be"),
                            ("gradcam.fusion", "METHOD.KEY=VALUE"), ("scorecam.batch_size=2", "not among")):
        bad = CliRunner().invoke(app, [*args[:-2], "--option", option, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and message in bad.output, (option, bad.output)
    assert not (tmp_path / "bad").exists()


def test_evaluate_prints_mse_and_autonomy_for_a_steering_model(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--model", "pilotnet", "--data", "roads:6:task=steering",
                                      "--methods", "saliency", "--metrics", "sparseness", "--fps", "2",
                                      "--autonomy-threshold", "0.5", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "steering: MSE" in result.output and "autonomy" in result.output and "at 2 frames/s" in result.output
    bad = CliRunner().invoke(app, ["evaluate", "--model", "pilotnet", "--data", "roads:6:task=steering",
                                   "--fps", "0", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--fps must be > 0" in bad.output


def test_metric_options_from_the_command_line(tmp_path):
    import json

    import torch

    torch.manual_seed(0)
    args = ["evaluate", "--model", "potholenet", "--data", "roads:4:task=pothole,size=32x64", "--methods", "saliency",
            "--metrics", "deletion,insertion"]
    ok = CliRunner().invoke(app, [*args, "--option", "deletion.step=512", "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    assert manifest["jobs"]["evaluate-saliency"]["config"]["metric_options"] == {"deletion": {"step": 512}}
    for option, says in (("deletion.stpe=3", "did you mean 'step'"), ("road.noise=0.1", "not among --metrics")):
        bad = CliRunner().invoke(app, [*args, "--option", option, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and says in bad.output, bad.output
        assert not (tmp_path / "bad").exists()
