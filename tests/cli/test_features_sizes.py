"""`gradsum features maps/patches --size/--resize` on a folder of photos of mixed sizes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from data.test_spec_sizes import mixed_folder
from gradsum.cli import app


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_maps_and_patches_on_mixed_sizes(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos')}"  # 20x40 and 36x18
    base = ["--model", "digitsnet", "--data", data]
    res = _run("features", "maps", *base, "--layer", "features.act1", "--index", "1", "--size", "16x16",
               "--resize", "center-crop", "--out", str(tmp_path / "maps"))
    assert res.exit_code == 0, res.output
    assert "maps of 16x16 for sample b/0.png" in res.output
    res = _run("features", "patches", *base, "--layer", "features.act1", "--channels", "0-1", "--k", "2",
               "--size", "16x20", "--out", str(tmp_path / "patches"))
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(next((tmp_path / "patches").glob("patches_*.parquet")))
    assert set(table["id"]) <= {"a/0.png", "b/0.png"} and len(table) == 4
    assert "top-2 of 2 images for 2 channels" in res.output


def test_without_size_mixed_sizes_name_the_options(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos')}"
    base = ["features", "patches", "--model", "digitsnet", "--data", data, "--layer", "features.act1", "--out",
            str(tmp_path / "p")]
    res = _run(*base)
    assert res.exit_code == 2 and "several sizes" in res.output and "--size HxW" in res.output, res.output
    res = _run(*base, "--size", "16", "--resize", "wide")
    assert res.exit_code == 2 and "--resize must be one of letterbox, stretch, center-crop" in res.output
    assert not (tmp_path / "p").exists()
