"""Real datasets of mixed image sizes (a VOC folder and a Cityscapes folder of photos), with
and without a size: GradSUM and the evaluation read every image, segmentation and box in
step. The oracle map (the magenta pixels painted on each object) must land entirely in the
boxes (EBPG = 1) and on the object's segment (share = 100%) whatever the resize policy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app
from gradsum.data.samples import batches_by_size
from gradsum.run import evaluate_job, read_table
from mixed_data import CITYSCAPES_IMAGES, VOC_IMAGES, magenta_map, make_cityscapes, make_voc
from testmodels import voc_net

SIZES = [None, ("40x40", "letterbox"), ("40x40", "stretch"), ("36x48", "center-crop")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return make_voc(root / "voc"), make_cityscapes(root / "cs")


def _net(outputs: int) -> nn.Module:
    return voc_net(outputs)


def _load(spec: str, size):
    return gs.data.load_dataset(spec) if size is None else gs.data.load_dataset(spec, size=size[0], resize=size[1])


def _oracle(model: nn.Module):
    return lambda x, target=None: magenta_map(x)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "own-sizes" if s is None else f"{s[0]}-{s[1]}")
def test_the_object_map_lies_in_the_boxes_and_on_the_segment(folders, size, tmp_path):
    voc, cs = folders
    for spec, n, outputs in ((f"voc:{voc}:split=test", len(VOC_IMAGES), 20),
                             (f"cityscapes:{cs}:split=val,task=pothole", len(CITYSCAPES_IMAGES), 2)):
        dataset = _load(spec, size)
        shapes = {tuple(dataset[i].image.shape[-2:]) for i in range(len(dataset))}
        assert len(shapes) == (1 if size else len(shapes)) and (size or len(shapes) > 1)
        result = evaluate_job(_net(outputs), dataset, tmp_path / spec.split(":")[0], methods={"oracle": _oracle},
                              metrics=["ebpg", "bbox", "drop"], batch_size=2, shard_size=3)
        ebpg = result.per_image[result.per_image["metric"] == "ebpg"]
        assert len(ebpg) == n
        np.testing.assert_allclose(ebpg["value"].to_numpy(), 1.0, atol=1e-6)
        # GradSUM of the same maps: the whole map on the objects' segment (car / the VOC classes)
        rows = []
        for _, batch in batches_by_size(dataset, range(len(dataset)), 2):
            rows.append(gs.semantic.profile_maps(magenta_map(batch.images), batch.segmentations,
                                                 dataset.label_table, batch.ids))
        frame = pd.concat(rows)
        cat = frame[frame["level"] == "category"]
        np.testing.assert_allclose(cat.groupby("image_id")["share"].sum().to_numpy(), 100.0, atol=1e-6)
        objects = cat[~cat["category"].isin(["background", "void", "flat", "sky"])]
        np.testing.assert_allclose(objects.groupby("image_id")["share"].sum().to_numpy(), 100.0, atol=1e-3)


def test_multi_label_targets_explain_every_class_present(folders, tmp_path):
    voc, _ = folders
    dataset = gs.data.load_dataset(f"voc:{voc}:split=test")
    net = _net(20)
    profile = gs.gradsum(net, dataset, "gradcam", layer="2", target="label", batch_size=2)
    pairs = profile.images[["image_id", "target"]].drop_duplicates()
    expected = {(iid, gs.data.VOC_CLASSES.index(cls)) for iid, _, _, objects in VOC_IMAGES for cls, _ in objects}
    assert set(map(tuple, pairs.to_numpy().tolist())) == expected
    cat = profile.images[profile.images["level"] == "category"]
    shares = cat.groupby(["image_id", "target"])["share"].sum()
    assert ((shares - 100).abs() < 1e-6).all() | (shares == 0).all()
    # the evaluation localises each class against its own boxes: the oracle covers both objects
    # of image 000002, so EBPG per class is each box's share of the magenta energy (< 1, sums to 1)
    result = evaluate_job(net, dataset, tmp_path / "eval", methods={"oracle": _oracle}, metrics=["ebpg"],
                          target="label", batch_size=2)
    two = result.per_image[result.per_image["sample"] == "000002"]
    assert len(two) == 2 and two["value"].sum() == pytest.approx(1.0, abs=1e-6) and (two["value"] < 1).all()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("size", [None, "40x40"])
def test_profile_and_evaluate_from_the_cli_on_mixed_sizes(folders, tmp_path, size):
    voc, _ = folders
    weights = tmp_path / "net.pt"
    torch.save(_net(20).state_dict(), weights)
    model = ["--model", f"{Path(__file__).parents[1] / 'testmodels.py'}:voc_net", "--weights", str(weights)]
    sized = ["--size", size] if size else []
    data = f"voc:{voc}:split=test"
    out = tmp_path / "profile"
    _cli("profile", *model, "--data", data, "--method", "gradcam", "--target", "label", "--baseline", "1",
         "--batch-size", "2", "--shard-size", "2", *sized, "--out", str(out))
    images = read_table(out / "profile_images.parquet")
    cat = images[images["level"] == "category"]
    shares = cat.groupby(["image_id", "target"])["share"].sum()
    assert len(shares) == sum(len(objects) for *_, objects in VOC_IMAGES)
    assert ((shares - 100).abs() < 1e-6).sum() >= len(shares) - 1  # (a blank map has no share)
    report = (out / "report.html").read_text()
    assert ("brought to 40x40" in report) if size else ("each explained at its own size" in report)
    out = tmp_path / "evaluate"
    printed = _cli("evaluate", *model, "--data", data, "--methods", "gradcam,saliency", "--metrics", "ebpg,drop,deletion",
                   "--target", "label", "--batch-size", "2", "--shard-size", "2", *sized, "--out", str(out))
    assert "gradcam" in printed and "saliency" in printed
    for method in ("gradcam", "saliency"):
        rows = read_table(out / f"evaluate-{method}.parquet")
        assert len(rows) == len(shares)
        assert rows["ebpg"].between(0, 1).all()
        assert rows["deletion"].between(0, 1).all() and len(rows["deletion_curve"].iloc[0]) == 101
        if size:
            assert set(zip(rows["height"], rows["width"], strict=True)) == {(40, 40)}
        else:
            assert len(set(zip(rows["height"], rows["width"], strict=True))) == 4
