"""The user's own model from the command line: checkpoints that describe themselves,
preprocessing inside the model, segmentation models and outputs that are dicts."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app
from gradsum.models.normalize import IMAGENET_MEAN, IMAGENET_STD


def _photos() -> list[np.ndarray]:
    """Real photos that scikit-image ships (no download)."""
    import skimage.data as data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-class image folder of real photo crops of mixed sizes: cat faces vs. everything else."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    photos = _photos()
    for k, (cls, sources) in enumerate((("cat", [photos[1]]), ("other", [photos[0], photos[2], photos[3]]))):
        (root / cls).mkdir()
        for i in range(6):
            src = sources[i % len(sources)]
            h, w = src.shape[:2]
            ch, cw = int(rng.integers(h // 3, h // 2)), int(rng.integers(w // 3, w // 2))
            top, left = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
            Image.fromarray(src[top:top + ch, left:left + cw]).save(root / cls / f"{cls}{i}.{'png' if k else 'jpg'}")
    return root


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _scores(out: Path) -> dict[tuple[str, str], tuple[str, float]]:
    with open(out / "explanations.csv") as fh:
        return {(r["image"], r["method"]): (r["target"], float(r["score"])) for r in csv.DictReader(fh)}


def _image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    from gradsum.data._files import read_rgb
    from gradsum.data.transforms import fit_image

    return fit_image(read_rgb(path), size)[None]


def test_trained_torchvision_checkpoint_needs_only_weights(photo_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _invoke(["train", "--model", "torchvision:resnet18", "--data", f"folder:{photo_folder}", "--task",
             "classification", "--epochs", "1", "--size", "32x32", "--batch-size", "6", "--val-fraction", "0",
             "--no-progress", "--out", str(run)])
    ckpt = run / "checkpoints" / "epoch_001.pt"
    card = gs.models.read_card(ckpt)
    assert card.spec == "torchvision:resnet18" and card.num_classes == 2 and card.input_size == (32, 32)
    assert card.class_names == ("cat", "other") and card.task == "classification"
    assert card.mean == pytest.approx(IMAGENET_MEAN) and card.std == pytest.approx(IMAGENET_STD)

    model = gs.models.build(weights=ckpt)  # Python: the checkpoint alone
    photo = sorted((photo_folder / "other").iterdir())[0]
    out = tmp_path / "explain"
    text = _invoke(["explain", str(photo), "--weights", str(ckpt), "--method", "gradcam", "--out", str(out)])
    assert text.splitlines()[0].startswith("model: torchvision:resnet18; 2 outputs; input 32x32")
    with torch.no_grad():
        logits = model(_image(photo, (32, 32)))[0]
    target, score = _scores(out)[(photo.stem, "gradcam")]
    assert int(target) == int(logits.argmax())
    assert score == pytest.approx(float(logits.max()), rel=1e-4, abs=1e-5)

    # evaluate and profile with only --weights (and the data)
    ev = tmp_path / "eval"
    _invoke(["evaluate", "--weights", str(ckpt), "--data", f"folder:{photo_folder}", "--methods", "gradcam",
             "--metrics", "drop,increase", "--max-images", "2", "--batch-size", "1", "--out", str(ev)])
    assert (ev / "report.html").is_file()
    prof = tmp_path / "profile"
    _invoke(["profile", "--weights", str(ckpt), "--data", "roads:4:task=pothole,size=32x32", "--method", "gradcam",
             "--baseline", "0", "--out", str(prof)])
    manifest = json.loads((prof / "manifest.json").read_text())
    assert "torchvision:resnet18" in json.dumps(manifest)


def test_imagenet_normalisation_is_inside_the_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    weights = tmp_path / "r18.pt"
    torch.save(net.state_dict(), weights)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(_photos()[0]).resize((64, 64)).save(photo)
    x = _image(photo, (64, 64))
    with torch.no_grad():
        normalised = net((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[0]
        raw = net(x)[0]
    for extra, expected in (([], normalised), (["--normalize", "none"], raw)):
        out = tmp_path / f"out{len(extra)}"
        text = _invoke(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", str(weights),
                        "--method", "saliency", "--target", "281", "--out", str(out), *extra])
        assert ("ImageNet" in text.splitlines()[0]) == (not extra)
        assert _scores(out)[("astronaut", "saliency")][1] == pytest.approx(float(expected[281]), rel=1e-4, abs=1e-5)
    assert not torch.allclose(normalised[281], raw[281])


def _fcn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=4).eval()


def test_segmentation_model_from_python_and_cli(tmp_path: Path) -> None:
    fcn = _fcn()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        out = fcn(x)["out"]
    category = int(out.argmax(1).flatten().mode().values)
    layer = gs.models.default_layer_for(fcn)
    assert layer == "backbone.layer4"  # the backbone's last stage, not the head
    res = gs.explain(fcn, x, methods=["gradcam", "saliency"], layer=layer, target=gs.SegmentationTarget(category))
    predicted = (out.argmax(1) == category).float()
    expected = (out[:, category] * predicted).sum(dim=(1, 2))
    torch.testing.assert_close(res["saliency"].scores, expected, rtol=1e-4, atol=1e-4)
    assert res["gradcam"].maps.shape == (2, 48, 48)
    # auto layer on the raw model: the last spatial layer before the per-pixel logits (classifier.4)
    auto = gs.explainer("gradcam", fcn)(x, target=gs.SegmentationTarget(category))
    assert auto.settings["layers"] == ["classifier.3"]

    weights = tmp_path / "fcn.pt"
    torch.save(fcn.state_dict(), weights)
    photo = tmp_path / "coffee.png"
    Image.fromarray(_photos()[2]).resize((48, 48)).save(photo)
    run = tmp_path / "seg"
    text = _invoke(["explain", str(photo), "--model", "torchvision:fcn_resnet50", "--weights", str(weights),
                    "--num-classes", "4", "--target", str(category), "--method", "gradcam", "--out", str(run)])
    assert "4 outputs" in text.splitlines()[0]
    assert (run / "grid.png").is_file()
    result = CliRunner().invoke(app, ["explain", str(photo), "--model", "torchvision:fcn_resnet50", "--weights",
                                      str(weights), "--num-classes", "4", "--out", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "segmentation model (4 categories): give --target" in result.output


def test_pickled_model_needs_trust(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    photo = tmp_path / "p.png"
    Image.fromarray(_photos()[1]).resize((24, 24)).save(photo)
    args = ["explain", str(photo), "--weights", str(path), "--method", "gradcam", "--out", str(tmp_path / "o")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output
    assert not (tmp_path / "o").exists()
    _invoke([*args, "--trust-pickle"])
    loaded = gs.models.build(weights=path, trust=True)
    assert isinstance(loaded, torch.nn.Sequential)


def test_fixed_size_model_gets_its_size_without_asking(tmp_path: Path) -> None:
    photo = tmp_path / "chelsea.png"
    Image.fromarray(_photos()[1]).save(photo)  # 300x451
    out = tmp_path / "vit"
    text = _invoke(["explain", str(photo), "--model", "torchvision:vit_b_16", "--method", "saliency",
                    "--out", str(out)])
    assert "input 224x224" in text.splitlines()[0]
    assert "scaled to fit and padded with grey (--resize letterbox" in text
    assert gs.run.store.load_maps(out / "maps.npz")["saliency"].shape == (1, 224, 224)


ZERO_HEAD = '''
import torch
from torch import nn

def make(num_classes=None):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    nn.init.zeros_(net[4].weight)  # like torchvision's zero-initialised heads
    return net
'''


def test_all_zero_map_is_one_warning_line_per_method(tmp_path: Path) -> None:
    factory = tmp_path / "zero_head.py"
    factory.write_text(ZERO_HEAD)
    photos = []
    for i, array in enumerate(_photos()[:3]):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(array).resize((24, 24)).save(photos[-1])
    result = CliRunner().invoke(app, ["explain", *map(str, photos), "--model", f"{factory}:make", "--layer", "0",
                                      "--method", "gradcam,saliency", "--batch-size", "1",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("gradsum: warning:")]
    assert len(warned) == 2  # three batches, one line per method naming the images
    assert warned[0].startswith("gradsum: warning: gradcam: the map of p0, p1, p2 is zero everywhere")
