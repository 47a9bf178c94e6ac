"""`gradsum features ...` commands write their PNG and tables into the run folder."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gradsum.cli import app

runner = CliRunner()


def invoke(args: list[str]):
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import gradsum.models as gm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "digits.pt"
    torch.save(gm.build("digitsnet").state_dict(), path)
    return path


def test_filters_and_maps(tmp_path, weights):
    r = invoke(["features", "filters", "--model", "digitsnet", "--weights", str(weights), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "filters_features_conv1.png").stat().st_size > 0
    table = pd.read_csv(tmp_path / "filters_features_conv1.csv")
    assert len(table) == 32 * 3 and set(table["layer"]) == {"features.conv1"}
    r = invoke(["features", "maps", "--model", "digitsnet", "--data", "digits:size=16", "--layer", "features.act1",
                "--index", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "maps_features_act1_2.png").exists()


def test_maximize_writes_grid_and_table(tmp_path):
    r = invoke(["features", "maximize", "--model", "digitsnet", "--layer", "features.act2", "--channels", "0-3,7",
                "--preset", "keras", "--steps", "5", "--size", "16", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "maximize_features_act2.csv")
    assert table["index"].tolist() == [0, 1, 2, 3, 7]
    assert (table["final_value"] >= table["start_value"]).all()
    assert torch.load(tmp_path / "maximize_features_act2.pt").shape == (5, 3, 16, 16)
    assert (tmp_path / "maximize_features_act2.png").exists()


def test_patches_writes_parquet(tmp_path):
    r = invoke(["features", "patches", "--model", "digitsnet", "--data", "digits:size=16", "--limit", "40",
                "--layer", "features.act2", "--k", "3", "--channels", "0-4", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    table = pd.read_parquet(tmp_path / "patches_features_act2.parquet")
    assert len(table) == 5 * 3 and table["id"].str.startswith("digits-").all()
    assert ((table["box_y1"] - table["box_y0"]) == 8).all()
    assert "receptive field 8x8 (analytic)" in r.output


@pytest.mark.parametrize("args,message", [
    (["features", "maximize", "--model", "digitsnet", "--layer", "features.act2", "--channels", "40", "--size", "16"],
     "valid channels are 0..15"),
    (["features", "maximize", "--model", "digitsnet", "--layer", "features.actt2", "--size", "16"], "closest names"),
    (["features", "maximize", "--model", "digitsnet", "--layer", "features.act2", "--channels", "a-b"], "--channels"),
    (["features", "filters", "--model", "nosuchnet"], "unknown model spec"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, message):
    r = invoke([*args, "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_help_has_examples_and_the_model_options():
    for sub in ("filters", "maps", "maximize", "patches"):
        r = invoke(["features", sub, "--help"])
        assert r.exit_code == 0 and "Example: gradsum features" in r.output
        for option in ("--model", "--weights", "--num-classes", "--normalize", "--mean", "--std", "--output",
                       "--trust-pickle"):
            assert option in r.output, (sub, option)


def test_checkpoint_alone_and_its_input_size(tmp_path):
    import gradsum as gs

    torch.manual_seed(0)
    net = gs.models.build("digitsnet")
    ckpt = gs.models.save(net, tmp_path / "d.pt", card=gs.models.card_of(net).updated(input_size=(20, 20)))
    r = invoke(["features", "maximize", "--weights", str(ckpt), "--layer", "features.act2", "--channels", "0,1",
                "--preset", "keras", "--steps", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("model: digitsnet")
    assert torch.load(tmp_path / "maximize_features_act2.pt").shape == (2, 3, 20, 20)  # the card's size
    r = invoke(["features", "patches", "--weights", str(ckpt), "--data", "digits", "--limit", "6",
                "--layer", "features.act2", "--k", "2", "--channels", "0", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = invoke(["features", "filters", "--weights", str(ckpt), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output


def test_parse_indices():
    from gradsum.cli._common import UserError
    from gradsum.cli._inputs import MAX_INDICES, parse_indices

    assert parse_indices("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_indices(None) is None
    for bad, phrase in [("3-1", "backwards"), ("-2", ">= 0"), ("1,1", "more than once"), ("a", "integers"),
                        (",", "empty"), (f"0-{MAX_INDICES}", "MAX_INDICES")]:
        with pytest.raises(UserError, match=phrase):
            parse_indices(bad)


def test_patches_with_attribution_draws_each_units_guided_backprop(tmp_path):
    r = invoke(["features", "patches", "--model", "digitsnet", "--data", "digits:size=16", "--limit", "20",
                "--layer", "features.act2", "--k", "2", "--channels", "0-2", "--attribution", "guided-backprop",
                "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "guided-backprop_features_act2.png").stat().st_size > 0
    bad = invoke(["features", "patches", "--model", "digitsnet", "--data", "digits:size=16", "--limit", "4",
                  "--layer", "features.act2", "--attribution", "gradcma", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "unknown method 'gradcma'" in bad.output and not (tmp_path / "b").exists()
