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


def test_help_has_examples_and_the_model_options():
    for sub in ("fgsm", "pgd", "deepfool", "universal", "fool"):
        r = runner.invoke(app, ["attack", sub, "--help"])
        assert r.exit_code == 0 and "Example: gradsum attack" in r.output
        for option in ("--model", "--weights", "--num-classes", "--normalize", "--mean", "--std", "--output",
                       "--trust-pickle"):
            assert option in r.output, (sub, option)


@pytest.fixture(scope="module")
def checkpoint_20(tmp_path_factory):
    """A digitsnet checkpoint whose card says it was trained on 20x20 images."""
    import torch

    import gradsum as gs

    torch.manual_seed(0)
    net = gs.models.build("digitsnet")
    card = gs.models.card_of(net).updated(input_size=(20, 20))
    return gs.models.save(net, tmp_path_factory.mktemp("ckpt") / "digits20.pt", card=card)


def test_checkpoint_alone_sets_model_and_image_size(tmp_path, checkpoint_20):
    import torch

    r = runner.invoke(app, ["attack", "universal", "--weights", str(checkpoint_20), "--data", "digits:split=test",
                            "--limit", "10", "--xi", "0.1", "--delta", "0.5", "--max-passes", "1",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("model: digitsnet; 10 outputs; input 20x20")
    assert torch.load(tmp_path / "universal_v.pt").shape == (1, 3, 20, 20)  # the card's size, not digits' 28
    assert json.loads((tmp_path / "universal.json").read_text())["model"] == "digitsnet"
    r = runner.invoke(app, ["attack", "fool", "--weights", str(checkpoint_20), "--target", "3", "--n", "1",
                            "--max-steps", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["attack", "fgsm", "--weights", str(checkpoint_20), "--data", "digits:split=test",
                            "--size", "12", "--limit", "4", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output  # --size overrides the card


def test_deepfool_candidates_default_fits_a_two_class_model(tmp_path):
    r = runner.invoke(app, ["attack", "deepfool", "--model", "potholenet", "--data", "roads:4:task=pothole",
                            "--max-iter", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "deepfool.json").read_text())["candidates"] == 2
