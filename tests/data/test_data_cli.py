"""`gradsum data synth` round trip: written files are read back by the Cityscapes reader and
equal the generator's scenes; preview/info commands; user errors exit 2 with one line."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from gradsum.cli import app
from gradsum.data import ROADS, Cityscapes, RoadScenes, load_dataset

runner = CliRunner()


def test_synth_round_trip(tmp_path):
    out = tmp_path / "roads"
    res = runner.invoke(app, ["data", "synth", "--n", "6", "--size", "40x80", "--out", str(out),
                              "--shortcut", "1", "--seed", "3", "--split", "val"])
    assert res.exit_code == 0, res.output
    assert "wrote 6 scenes" in res.output
    assert len(list((out / "leftImg8bit/val/synth").glob("*_leftImg8bit.png"))) == 6
    assert len(list((out / "gtFine/val/synth").glob("*_gtFine_labelIds.png"))) == 6
    with (out / "targets.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["index"] for r in rows] == [str(i) for i in range(6)]
    assert {"id", "steering", "pothole", "boxes", "seed", "shortcut", "vegetation_amount"} <= set(rows[0])
    assert json.loads((out / "synth.json").read_text())["seed"] == 3

    gen = RoadScenes(6, size=(40, 80), seed=3, shortcut=1.0, task="pothole")
    ds = Cityscapes(out, split="val", task="pothole")
    assert ds.label_table == ROADS  # read from labels.csv
    assert len(ds) == 6
    for i in range(6):
        a, b = ds[i], gen[i]
        assert torch.equal(a.image, b.image)  # PNG is lossless and images are 8-bit exact
        assert torch.equal(a.segmentation, b.segmentation)
        assert a.target == b.target
        assert torch.equal(a.boxes, b.boxes)
    steer = load_dataset(f"cityscapes:{out}:split=val,task=steering")
    assert steer[2].target == gen[2].meta["steering"]

    # a second shard appends rows instead of replacing them
    res = runner.invoke(app, ["data", "synth", "--n", "2", "--start", "6", "--size", "40x80",
                              "--out", str(out), "--shortcut", "1", "--seed", "3", "--split", "val"])
    assert res.exit_code == 0, res.output
    assert len(Cityscapes(out, split="val", task="pothole")) == 8


def test_preview_and_info(tmp_path):
    png = tmp_path / "grid.png"
    res = runner.invoke(app, ["data", "preview", "roads:4:size=40x80", "--out", str(png), "--n", "4"])
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000
    res = runner.invoke(app, ["data", "info", "roads:3:task=pothole"])
    assert res.exit_code == 0 and "RoadScenes: 3 samples" in res.output and "roads" in res.output


def test_user_errors_exit_2():
    res = runner.invoke(app, ["data", "info", "nope:1"])
    assert res.exit_code == 2 and "valid forms" in res.output
    res = runner.invoke(app, ["data", "synth", "--n", "0", "--out", "x"])
    assert res.exit_code == 2 and "--n" in res.output
    res = runner.invoke(app, ["data", "synth", "--n", "2", "--out", "x", "--size", "1x2"])
    assert res.exit_code == 2 and "size" in res.output


# ---------------------------------------------------------------- unreadable files, size limits

def _folder_with_a_corrupt_jpeg(root):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((rng.random((12, 12, 3)) * 255).astype("uint8")).save(root / cls / f"{i}.jpg")
    good = (root / "a" / "0.jpg").read_bytes()
    (root / "a" / "0.jpg").write_bytes(good[: len(good) // 3])  # the FIRST sample is the corrupt one
    return root / "a" / "0.jpg"


def test_info_decodes_every_image_and_lists_the_unreadable(tmp_path):
    bad = _folder_with_a_corrupt_jpeg(tmp_path / "photos")
    res = runner.invoke(app, ["data", "info", f"folder:{tmp_path / 'photos'}"])
    assert res.exit_code == 0, res.output
    assert "decoded: 3 of 4 readable, 1 unreadable" in res.output
    assert f"unreadable {bad}: cannot decode image" in res.output
    assert "on_error=skip" in res.output and "folder:DIR:on_error=skip" in res.output  # the CLI form of the fix
    assert "first: id=a/1.jpg" in res.output  # the first READABLE sample
    res = runner.invoke(app, ["data", "info", f"folder:{tmp_path / 'photos'}:on_error=skip"])
    assert res.exit_code == 0, res.output
    assert "ImageFolder: 3 samples" in res.output and "skipped: 1" in res.output and str(bad) in res.output


def test_scan_reports_without_changing_the_dataset(tmp_path):
    from gradsum.data import ImageFolder

    bad = _folder_with_a_corrupt_jpeg(tmp_path / "photos")
    ds = ImageFolder(tmp_path / "photos")
    calls = []
    found = ds.scan(lambda done, total: calls.append((done, total)))
    assert [p for p, _ in found] == [str(bad)] and "cannot decode image" in found[0][1]
    assert calls[-1] == (4, 4) and len(ds) == 4


def _png_header_only(path, width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (10_000, 9_000)])
def test_image_header_over_the_pixel_limit_is_refused_before_decoding(tmp_path, width, height):
    from gradsum.data import DataError
    from gradsum.data._files import MAX_IMAGE_PIXELS, read_rgb

    path = _png_header_only(tmp_path / "huge.png", width, height)
    with pytest.raises(DataError, match=f"{MAX_IMAGE_PIXELS:,} pixels") as info:
        read_rgb(path)
    assert info.value.path == str(path) and "on_error=skip" in str(info.value)
    if width * height < 178_956_970:  # below PIL's own bomb limit: our message names the size
        assert f"{height}x{width}" in str(info.value)


def test_size_option_of_a_spec_is_bounded():
    from gradsum.data import load_dataset

    with pytest.raises(ValueError, match="over the limit of 64,000,000 pixels"):
        load_dataset("digits:size=100000")
    with pytest.raises(ValueError, match="over the limit"):
        load_dataset("digits", size=(9000, 9000))
    assert len(load_dataset("digits:size=12")) > 0


def test_preview_limits_and_layout(tmp_path):
    from gradsum.data import RoadScenes, preview_grid, save_preview

    ds = RoadScenes(3, size=(32, 64))
    wide = preview_grid(ds, 3, cols=10)  # columns beyond the samples are not drawn
    assert wide.shape == preview_grid(ds, 3, cols=3).shape
    for kwargs, phrase in [({"cols": 0}, "cols"), ({"scale": 0}, "scale"), ({"scale": 10_000}, "MAX_IMAGE_PIXELS")]:
        with pytest.raises(ValueError, match=phrase):
            save_preview(ds, tmp_path / "p.png", 3, **kwargs)
    with pytest.raises(ValueError, match="image format"):
        save_preview(ds, tmp_path / "p.unknown", 3)
    assert not list(tmp_path.iterdir())  # nothing half-written
    save_preview(ds, tmp_path / "p.jpg", 2, scale=2)  # the extension picks the format
    from PIL import Image

    with Image.open(tmp_path / "p.jpg") as im:
        assert im.format == "JPEG"


def test_info_progress_bar_path(tmp_path, monkeypatch):
    import gradsum.cli.data as data_cli

    _folder_with_a_corrupt_jpeg(tmp_path / "photos")
    monkeypatch.setattr(data_cli, "SCAN_PROGRESS_FROM", 2)  # many files: decoded under a progress bar
    res = runner.invoke(app, ["data", "info", f"folder:{tmp_path / 'photos'}"])
    assert res.exit_code == 0, res.output
    assert "decoded: 3 of 4 readable, 1 unreadable" in res.stdout
