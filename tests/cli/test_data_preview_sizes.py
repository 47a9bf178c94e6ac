"""`gradsum data preview --size/--resize` on a VOC folder of mixed sizes; without --size each
tile is letterboxed into the first image's size, and the command says so in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from data.test_spec_sizes import mixed_voc
from gradsum.cli import app
from gradsum.data.preview import preview_shape


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_preview_mixed_sizes_with_size(tmp_path: Path) -> None:
    spec = f"voc:{mixed_voc(tmp_path / 'voc')}:split=train"
    png = tmp_path / "p.png"
    res = _run("data", "preview", spec, "--size", "64x64", "--out", str(png), "--scale", "1")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"wrote {png}"
    # two cells of image + segmentation at 64x64 each (the second photo has no segmentation)
    assert Image.open(png).size[::-1] == preview_shape((64, 64 * 2 + 2), 2, 2, scale=1)
    grid = np.asarray(Image.open(png))
    assert (grid[2:10, 2 + 64 + 2: 2 + 64 + 2 + 64] == (224, 224, 192)).all()  # letterbox rows: VOC void colour
    res = _run("data", "preview", spec, "--size", "40x64", "--resize", "center-crop", "--out", str(png), "--scale", "1")
    assert res.exit_code == 0, res.output
    assert Image.open(png).size[::-1] == preview_shape((40, 64 * 2 + 2), 2, 2, scale=1)


def test_preview_mixed_sizes_without_size_letterboxes_into_the_first(tmp_path: Path) -> None:
    spec = f"voc:{mixed_voc(tmp_path / 'voc')}:split=train"
    png = tmp_path / "p.png"
    res = _run("data", "preview", spec, "--out", str(png), "--scale", "1")
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines == [
        "note: the preview's images have 2 sizes: each was letterboxed into the first image's size 30x40 "
        "(choose one with size=HxW in the data SPEC or --size HxW)",
        f"wrote {png}",
    ]
    assert Image.open(png).size[::-1] == preview_shape((30, 40 * 2 + 2), 2, 2, scale=1)


def test_bad_resize_or_size_exits_2_with_one_line(tmp_path: Path) -> None:
    spec = f"voc:{mixed_voc(tmp_path / 'voc')}:split=train"
    for args, message in ((["--resize", "bogus"], "--resize must be one of letterbox, stretch, center-crop; got 'bogus'"),
                          (["--size", "64x"], "--size must look like HxW"),
                          (["--size", "100000x100000"], "8192")):
        res = _run("data", "preview", spec, "--out", str(tmp_path / "p.png"), *args)
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and message in res.output
        assert not (tmp_path / "p.png").exists()


def test_roads_preview_size_is_the_generation_size(tmp_path: Path) -> None:
    png = tmp_path / "r.png"
    res = _run("data", "preview", "roads:2", "--size", "32x64", "--resize", "stretch", "--out", str(png), "--scale", "1")
    assert res.exit_code == 0, res.output
    assert Image.open(png).size[::-1] == preview_shape((32, 64 * 2 + 2), 2, 2, scale=1)
