"""`gradsum explain` and `gradsum methods` from the command line."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gradsum.cli import app
from gradsum.run.store import load_maps

FACTORY = '''
import torch
from torch import nn

def factory(num_classes=None):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes or 4),
    )
'''


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    model_file = tmp_path / "tiny.py"
    model_file.write_text(FACTORY)
    return paths, f"{model_file}:factory"


def test_explain_images_writes_overlays_grid_and_maps(files, tmp_path):
    paths, model = files
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", *paths, "--model", model, "--method", "gradcam,layercam,saliency",
                                      "--layer", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "grid.png").is_file() and (out / "manifest.json").is_file()
    assert len(list((out / "overlays").glob("*.png"))) == 6
    maps = load_maps(out / "maps.npz")
    assert set(maps) == {"gradcam", "layercam", "saliency", "ids"} and maps["gradcam"].shape == (2, 24, 24)
    assert maps["gradcam"].dtype.name == "float32" and len(maps["ids"]) == 2  # float32: small maps are not flushed
    lines = (out / "explanations.csv").read_text().splitlines()
    assert len(lines) == 1 + 6


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png", "--model", "pilotnet"], "image file not found"),
        (["--example", "digits", "--method", "gradcma"], "unknown method 'gradcma'"),
        (["--example", "cats"], "unknown example"),
        ([], "give image files"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(app, ["explain", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_layer_is_a_user_error(files, tmp_path):
    paths, model = files
    result = CliRunner().invoke(app, ["explain", *paths, "--model", model, "--method", "gradcam", "--layer", "conv9",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown layer 'conv9'" in result.output


def test_methods_lists_the_registry():
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    for name in ("gradcam", "integrated-gradients", "smoothgrad"):
        assert name in result.output
