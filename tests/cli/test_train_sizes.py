"""`gradsum train --size/--resize` on a folder of photos of mixed sizes, and the checkpoint's
input size as the default size of the commands that read data with it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app


def mixed_folder(root: Path, n: int = 4) -> Path:
    """Two classes of n random photos each, of four different sizes (30x50 .. 41x23)."""
    rng = np.random.default_rng(0)
    sizes = [(30, 50), (41, 23), (32, 32), (20, 36)]
    for c, cls in enumerate(("normal", "potholes")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            arr[..., c] = 255  # the class shows in one colour channel
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_train_on_mixed_sizes_with_size_and_its_checkpoint_size_as_default(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos')}"
    out = tmp_path / "run"
    res = _run("train", "--model", "potholenet", "--data", data, "--task", "classification", "--epochs", "1",
               "--size", "24x32", "--resize", "letterbox", "--batch-size", "4", "--val-fraction", "0.25",
               "--out", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["size"] == [24, 32] and run["resize"] == "letterbox" and run["n_train"] == 6 and run["n_val"] == 2
    ckpt = out / "checkpoints" / "epoch_001.pt"
    assert gs.models.read_card(ckpt).input_size == (24, 32)

    # no --size: the checkpoint's input size, reached with --resize (here center-crop), for every image
    atk = tmp_path / "attack"
    res = _run("attack", "fgsm", "--weights", str(ckpt), "--data", data, "--limit", "8", "--eps", "0.02",
               "--resize", "center-crop", "--out", str(atk))
    assert res.exit_code == 0, res.output
    table = pd.read_csv(atk / "fgsm.csv")
    assert len(table) == 8 and sorted(table["label"].unique()) == [0, 1] and (table["linf"] <= 0.02 + 1e-6).all()
    feat = tmp_path / "feat"
    res = _run("features", "maps", "--weights", str(ckpt), "--data", data, "--index", "1", "--layer", "features.act1",
               "--out", str(feat))
    assert res.exit_code == 0, res.output
    assert "for sample normal/1.png" in res.output and any(feat.glob("maps_*_1.png"))


def test_train_without_size_on_mixed_sizes_says_to_give_one(tmp_path: Path) -> None:
    data = f"folder:{mixed_folder(tmp_path / 'photos', n=2)}"
    res = _run("train", "--model", "potholenet", "--data", data, "--task", "classification", "--epochs", "1",
               "--batch-size", "4", "--val-fraction", "0", "--out", str(tmp_path / "run"), "--no-progress")
    assert res.exit_code == 2, res.output
    assert "has images of several sizes" in res.output and "give --size HxW" in res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("gradsum: error")] == [res.output.splitlines()[-1]]
    assert "Traceback" not in res.output and not list((tmp_path / "run").rglob("*.pt"))


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "24x32", "--resize", "squash"], "--resize must be one of letterbox, stretch, center-crop"),
    (["--size", "24x"], "--size must look like HxW"),
])
def test_bad_size_or_resize_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = _run("train", "--model", "potholenet", "--data", f"folder:{tmp_path}", "--task", "classification",
               "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress", *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "run").exists()


def test_roads_size_is_the_generation_size(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _run("train", "--model", "potholenet", "--data", "roads:6:seed=1", "--task", "classification", "--epochs",
               "1", "--size", "32x48", "--resize", "center-crop", "--batch-size", "6", "--out", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["size"] == [32, 48] and run["resize"] is None  # generated at 32x48: nothing resized
    assert tuple(torch.load(out / "checkpoints" / "epoch_001.pt", weights_only=True)["card"]["input_size"]) == (32, 48)
