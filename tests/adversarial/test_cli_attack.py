"""`gradsum attack ...` commands write their PNG, CSV and JSON into the run folder."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from gradsum.cli import app

runner = CliRunner()
DATA = ["--model", "digitsnet", "--data", "digits:size=16,split=test"]


def test_fgsm_and_pgd(tmp_path):
    r = runner.invoke(app, ["attack", "fgsm", *DATA, "--limit", "8", "--eps", "0.05", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(tmp_path / "fgsm.csv")
    assert len(t) == 8 and (t["linf"] <= 0.05 + 1e-6).all()
    r = runner.invoke(app, ["attack", "pgd", *DATA, "--limit", "8", "--eps", "0.5", "--norm", "2", "--alpha", "0.2",
                            "--steps", "3", "--target", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(tmp_path / "pgd.csv")
    assert (t["l2"] <= 0.5 + 1e-5).all()
    summary = json.loads((tmp_path / "pgd.json").read_text())
    assert summary["labels"] == "true" and summary["norm"] == "2" and summary["images"] == 8
    assert (tmp_path / "pgd.png").exists()


def test_deepfool_universal_transfer_and_fool(tmp_path):
    r = runner.invoke(app, ["attack", "deepfool", *DATA, "--limit", "4", "--max-iter", "5", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "iterations" in pd.read_csv(tmp_path / "deepfool.csv").columns
    r = runner.invoke(app, ["attack", "universal", *DATA, "--limit", "10", "--xi", "0.1", "--delta", "0.5",
                            "--max-passes", "1", "--transfer", "other=digitsnet", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "universal.json").read_text())
    assert info["norm"] <= 0.1 + 1e-6 and info["reached"] == (info["fooling_rate"] >= 0.5)
    t = pd.read_csv(tmp_path / "transfer.csv")
    assert list(t.columns) == ["source", "model", "other"] and len(t) == 2
    assert (tmp_path / "transfer.png").exists()
    r = runner.invoke(app, ["attack", "fool", "--model", "digitsnet", "--target", "2", "--size", "16", "--n", "2",
                            "--max-steps", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(tmp_path / "fool.csv")
    assert len(t) == 2 and (t["steps"] <= 3).all()


@pytest.mark.parametrize("args,message", [
    (["attack", "pgd", *DATA, "--eps", "8"], "eps must be in [0,1] pixel units"),
    (["attack", "universal", *DATA, "--limit", "3"], "needs at least 5 images"),
    (["attack", "universal", *DATA, "--transfer", "broken"], "NAME=SPEC"),
    (["attack", "fgsm", "--model", "digitsnet", "--data", "nosuch:1"], "bad data spec"),
])
def test_user_errors(tmp_path, args, message):
    r = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_help_has_examples():
    for sub in ("fgsm", "pgd", "deepfool", "universal", "fool"):
        r = runner.invoke(app, ["attack", sub, "--help"])
        assert r.exit_code == 0 and "Example: gradsum attack" in r.output
