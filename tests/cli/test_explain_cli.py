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


def _saliency_of_unit(model_spec: str, path: str, layer: int, channel: int, y: int, x: int) -> np.ndarray:
    """max_c |d unit / d pixel| computed by hand: the factory's net cut at `layer`, one autograd call."""
    import importlib.util

    import torch

    file, name = model_spec.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("tiny_factory", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, name)().eval()
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].requires_grad_(True)
    unit = net[: layer + 1](image)[0, channel, y, x]
    (grad,) = torch.autograd.grad(unit, image)
    return grad[0].abs().amax(dim=0).numpy()


def test_neuron_explains_one_unit_of_an_intermediate_layer(files, tmp_path):
    paths, model = files
    out = tmp_path / "unit"
    result = CliRunner().invoke(app, ["explain", *paths, "--model", model, "--method", "saliency,gradcam",
                                      "--layer", "0", "--neuron", "3:5:6:7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    maps = load_maps(out / "maps.npz")
    for i, path in enumerate(paths):
        expected = _saliency_of_unit(model, path, 3, 5, 6, 7)
        assert np.abs(maps["saliency"][i] - expected).max() <= 1e-5 * max(float(np.abs(expected).max()), 1e-12)
    # the unit at (6, 7) of a stride-2 map sees a 7x7 input window: nothing outside it
    assert np.abs(maps["saliency"][:, :9, :]).max() == 0 and np.abs(maps["saliency"][:, 18:, :]).max() == 0


@pytest.mark.parametrize("neuron,extra,message", [
    ("3:99", [], "channel must be in 0..7"),
    ("3:1:40:1", [], "y must be in 0..11"),
    ("9:1", [], "unknown layer '9'"),
    ("3:one", [], "must be integers"),
    ("3", [], "give LAYER:CHANNEL"),
    ("3:1", ["--target", "2"], "drop --target"),
    ("1:1", ["--method", "gradcam", "--layer", "2"], "does not run before the neuron's layer"),
])
def test_neuron_user_errors_are_one_line(files, tmp_path, neuron, extra, message):
    paths, model = files
    args = ["explain", paths[0], "--model", model, "--neuron", neuron, "--out", str(tmp_path / "o"), *extra]
    if "--method" not in extra:
        args += ["--method", "saliency"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_neuron_position_is_checked_on_every_image_size_before_anything_runs(files, tmp_path):
    paths, model = files
    small = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(small)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["explain", paths[0], str(small), "--model", model, "--method", "saliency",
                                      "--neuron", "3:1:8:2", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "y must be in 0..5 (images of 12x16)" in result.output and not out.exists()
