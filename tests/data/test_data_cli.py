"""`gradsum data synth` round trip: written files are read back by the Cityscapes reader and
equal the generator's scenes; preview/info commands; user errors exit 2 with one line."""
from __future__ import annotations

import csv
import json

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
