"""SISE / Ada-SISE: block detection, the exact adaptive split, Otsu, fusion, determinism,
the channel-subset property, and Ada-SISE's saving on a model trained in the test."""
from __future__ import annotations

import itertools
from collections import OrderedDict

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradsum as gs
from gradsum.methods.sise import adaptive_selection, detect_blocks, fuse_blocks, otsu_threshold


def _digits(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.tensor(d.target)


def _cnn() -> nn.Module:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    cin = 3
    for i, cout in enumerate((16, 32, 32), start=1):
        layers[f"conv{i}"] = nn.Conv2d(cin, cout, 3, padding=1)
        layers[f"act{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        cin = cout
    return nn.Sequential(OrderedDict(features=nn.Sequential(layers), gap=nn.AdaptiveAvgPool2d(2),
                                     flatten=nn.Flatten(), fc=nn.Linear(32 * 4, 10)))


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    x, y = _digits()
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.7
    return model, x[-8:]


def test_detected_blocks_follow_the_sise_rule():
    x = torch.rand(1, 3, 64, 64)
    assert detect_blocks(torchvision.models.resnet18(), x) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert detect_blocks(torchvision.models.vgg11(), x) == [
        "features.2", "features.5", "features.10", "features.15", "features.20"]
    # a VGG-style `features` Sequential: its MaxPool outputs
    assert detect_blocks(_cnn(), torch.rand(1, 3, 32, 32)) == ["features.pool1", "features.pool2", "features.pool3"]
    # any other CNN: the shape rule (inputs of the downsampling layers + the last conv output)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    assert detect_blocks(plain, torch.rand(1, 3, 16, 16)) == ["1", "4"]
    assert detect_blocks(gs.models.DigitsNet(), torch.rand(1, 3, 28, 28)) == ["features.act1", "features.act2"]


def _brute_force_splits(values: list[float]) -> list[set[int]]:
    """Every keep-set whose split reaches the maximal between-class variance (ties within
    round-off are all acceptable)."""
    pos = sorted((v, i) for i, v in enumerate(values) if v > 0)
    if len(pos) < 2 or pos[0][0] == pos[-1][0]:
        return [{i for _, i in pos}]
    splits = []
    for j in range(1, len(pos)):
        if pos[j - 1][0] == pos[j][0]:
            continue
        lo, hi = [v for v, _ in pos[:j]], [v for v, _ in pos[j:]]
        w0, w1 = len(lo) / len(pos), len(hi) / len(pos)
        tau = w0 * w1 * (sum(lo) / len(lo) - sum(hi) / len(hi)) ** 2
        splits.append((tau, {i for v, i in pos if v > pos[j - 1][0]}))
    best = max(t for t, _ in splits)
    return [keep for t, keep in splits if t >= best * (1 - 1e-9)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=1, max_size=12))
def test_adaptive_selection_is_the_exact_between_class_variance_split(values):
    keep = adaptive_selection(torch.tensor([values], dtype=torch.float64))[0]
    assert set(torch.nonzero(keep).flatten().tolist()) in _brute_force_splits(values)


def test_otsu_matches_scikit_image():
    from skimage.filters import threshold_otsu

    v = torch.rand(3, 2000, generator=torch.Generator().manual_seed(0)) ** 3
    v = (v - v.amin(1, keepdim=True)) / (v.amax(1, keepdim=True) - v.amin(1, keepdim=True))
    ours = otsu_threshold(v)
    for row, theta in zip(v, ours, strict=True):
        assert abs(float(theta) - float(threshold_otsu(row.numpy(), nbins=256))) < 1e-6


def test_fusion_gates_deep_blocks():
    shallow = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    deep = torch.zeros(1, 16, 16)
    deep[:, 4:8, 4:8] = 1.0
    hard = fuse_blocks([shallow, deep], gate="hard")
    assert hard[0, 10:, 10:].max() == 0 and hard[0, 4:8, 4:8].min() > 0.3 and hard.max() == 1.0
    soft = fuse_blocks([shallow, deep], gate="soft")
    # theta = Otsu (first bin centre 1/512) raised x1.5 (only 6% of pixels exceed it):
    # outside the box the gate is sigmoid(100 * (0 - 1.5/512)) ~ 0.43, inside ~ 1
    gate_out = torch.sigmoid(torch.tensor(-100 * 1.5 / 512))
    raw = shallow + deep
    expected = torch.where(deep > 0, raw * torch.sigmoid(100 * (1 - torch.tensor(1.5 / 512))), shallow * gate_out)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert torch.allclose(soft, expected, atol=1e-5)
    # a block without masks for an image is skipped
    skipped = fuse_blocks([shallow, deep], [torch.tensor([True]), torch.tensor([False])])
    assert torch.allclose(skipped, shallow.sub(shallow.min()).div(shallow.max() - shallow.min()))
    with pytest.raises(ValueError, match="gate"):
        fuse_blocks([shallow, deep], gate="x")


def test_determinism_subset_and_masks_per_block(digits_model):
    model, x = digits_model
    x = x[:3]
    sise = gs.explainer("sise", model, seed=5)(x)
    again = gs.explainer("sise", model, seed=5)(x)
    ada = gs.explainer("adasise", model, seed=5)(x)
    ada_again = gs.explainer("adasise", model, seed=5)(x)
    assert torch.equal(sise.maps, again.maps) and torch.equal(ada.maps, ada_again.maps)
    assert sise.settings["seed"] == 5 and ada.settings["seed"] == 5
    assert sise.settings["blocks"] == ["features.pool1", "features.pool2", "features.pool3"]
    for block in sise.settings["blocks"]:
        s_keep, a_keep = sise.settings["selected"][block], ada.settings["selected"][block]
        assert not (a_keep & ~s_keep).any()  # Ada-SISE keeps a subset of SISE's channels
        assert sise.cost.masks_per_block[block] == int(s_keep.sum())
        assert ada.cost.masks_per_block[block] == int(a_keep.sum())
    assert sise.cost.masks == sum(sise.cost.masks_per_block.values())
    assert sise.maps.shape == (3, 32, 32) and float(sise.maps.max()) == 1.0
    hard = gs.explainer("sise", model, gate="hard")(x)
    assert hard.settings["gate"] == "hard" and not torch.equal(hard.maps, sise.maps)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


def test_adasise_saves_masks_and_agrees_with_sise_on_a_trained_model(digits_model):
    model, x = digits_model
    sise = gs.explainer("sise", model)(x)
    ada = gs.explainer("adasise", model)(x)
    assert ada.cost.masks <= 0.75 * sise.cost.masks
    rho = [_spearman(s, a) for s, a in zip(sise.maps, ada.maps, strict=True)]
    assert sum(rho) / len(rho) >= 0.8, rho


def test_explicit_blocks_and_mu():
    torch.manual_seed(0)
    model = _cnn().eval()
    x = torch.rand(2, 3, 32, 32)
    attr = gs.explainer("sise", model, layer=["features.act2", "features.act3"], mu=0.5)(x)
    assert list(attr.layer_maps) == ["features.act2", "features.act3"]
    full = gs.explainer("sise", model, layer=["features.act2", "features.act3"])(x)
    assert attr.cost.masks <= full.cost.masks
    with pytest.raises(ValueError, match="mu"):
        gs.explainer("sise", model, mu=1.5)


def test_selection_handles_degenerate_sets():
    alpha = torch.tensor([[-1.0, -2.0, 0.0], [0.5, -1.0, 0.0], [0.3, 0.3, 0.3]])
    keep = adaptive_selection(alpha)
    assert keep.tolist() == [[False, False, False], [True, False, False], [True, True, True]]
    for values in itertools.product([0.1, 0.2, 0.9], repeat=3):
        k = adaptive_selection(torch.tensor([values]))[0]
        assert set(torch.nonzero(k).flatten().tolist()) in _brute_force_splits(list(values))
