"""`gradsum attack ... --size/--resize` on a folder of photos of mixed sizes."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from data.test_spec_sizes import mixed_folder
from gradsum.cli import app


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_fgsm_and_fool_on_mixed_sizes(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos')}"  # 20x40 and 36x18, classes 0 and 1
    res = _run("attack", "fgsm", "--model", "digitsnet", "--data", data, "--size", "16", "--resize", "stretch",
               "--eps", "0.03", "--out", str(tmp_path / "fgsm"))
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "fgsm" / "fgsm.csv")
    assert table["id"].tolist() == ["a/0.png", "b/0.png"] and table["label"].tolist() == [0, 1]
    assert json.loads((tmp_path / "fgsm" / "fgsm.json").read_text())["labels"] == "true"
    res = _run("attack", "fool", "--model", "digitsnet", "--data", data, "--target", "3", "--n", "2", "--size", "16",
               "--resize", "center-crop", "--max-steps", "2", "--out", str(tmp_path / "fool"))
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "fool" / "fool.csv")["id"].tolist() == ["a/0.png", "b/0.png"]


def test_mixed_sizes_without_size_and_bad_resize(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos')}"
    res = _run("attack", "pgd", "--model", "digitsnet", "--data", data, "--out", str(tmp_path / "pgd"))
    assert res.exit_code == 2 and "images of several sizes" in res.output and "--size HxW" in res.output
    res = _run("attack", "fgsm", "--model", "digitsnet", "--data", data, "--size", "16", "--resize", "fill",
               "--out", str(tmp_path / "fgsm"))
    assert res.exit_code == 2 and "--resize must be one of" in res.output, res.output
    assert not (tmp_path / "fgsm").exists() and not (tmp_path / "pgd").exists()
