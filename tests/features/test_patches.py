"""Maximally activating dataset patches and receptive fields."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from gradsum.features.patches import receptive_field, top_patches


def hand_stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 4, 5), pool2=nn.AvgPool2d(3, stride=2, padding=1),
        conv3=nn.Conv2d(4, 2, 3, dilation=2, padding=2),
    ))


def test_receptive_field_of_hand_built_stack():
    # by hand: conv3 p1 -> r3 j1 s0; pool2 -> r4 j2 s0.5; conv5 -> r12 j2 s4.5;
    # avgpool3/2 p1 -> r16 j4 s4.5; conv3 dil2 p2 -> r32 j4 s4.5
    model = hand_stack()
    expected = {"conv1": (3, 1, 0.0), "pool1": (4, 2, 0.5), "conv2": (12, 2, 4.5),
                "pool2": (16, 4, 4.5), "conv3": (32, 4, 4.5)}
    for layer, (r, j, s) in expected.items():
        rf = receptive_field(model, layer, 64)
        assert rf.method == "analytic"
        assert rf.size == (r, r) and rf.jump == (j, j) and rf.start == (s, s), layer
    rf = receptive_field(model, "conv3", 64)
    assert rf.box(3, 5) == (-11 + 12, -11 + 20, 21 + 12, 21 + 20)


def test_analytic_field_matches_gradient_footprint_on_linear_stack():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 4, 5), pool2=nn.AvgPool2d(3, stride=2, padding=1)))
    analytic = receptive_field(model, "pool2", 48, method="analytic")
    empirical = receptive_field(model, "pool2", 48, method="empirical")
    assert empirical.size == analytic.size and empirical.jump == analytic.jump
    assert empirical.start == analytic.start


def test_non_chain_model_falls_back_to_empirical():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.conv3 = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv1(x)
            return self.conv3(self.conv2(h) + h)

    model = Residual()
    assert receptive_field(model, "conv2", 20).method == "analytic"  # still a chain up to conv2
    rf = receptive_field(model, "conv3", 20)  # the skip path joins before conv3: widest path 3+2+2
    assert rf.method == "empirical" and rf.size == (7, 7) and rf.jump == (1, 1) and rf.start == (0.0, 0.0)
    with pytest.raises(ValueError, match="not a plain chain"):
        receptive_field(model, "conv3", 20, method="analytic")


def _brute_force(model, layer, images, k, per_image):
    module = dict(model.named_modules())[layer]
    store = {}
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        h.remove()
    a = store["a"]
    n, c, hh, ww = a.shape
    flat = a.permute(1, 0, 2, 3).reshape(c, n, hh * ww)
    # ties (dead channels) rank the earlier image / position first, as top_patches documents
    if per_image:
        v, pos = flat.max(2)
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
        return v.gather(1, order), order, pos.gather(1, order)
    v = flat.reshape(c, n * hh * ww)
    order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
    return v.gather(1, order), order // (hh * ww), order % (hh * ww)


@pytest.mark.parametrize("per_image", [True, False])
def test_streaming_topk_equals_brute_force(digits_model, per_image):
    model, x, _, _ = digits_model
    images = x[:150]
    res = top_patches(model, "act2", images, k=5, per_image=per_image, batch_size=16)
    values, index, pos = _brute_force(model, "act2", images, 5, per_image)
    torch.testing.assert_close(res.values, values)
    assert torch.equal(res.index, index)
    assert torch.equal(res.y * 8 + res.x, pos)
    assert res.images_seen == 150
    assert isinstance(res.figure(channels=[0, 3], k=4), Figure)


def test_patch_crops_match_receptive_field():
    model = hand_stack()
    images = torch.rand(23, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    res = top_patches(model, "conv3", images, k=4, batch_size=5, per_image=False)
    rf = receptive_field(model, "conv3", 40)
    assert res.field_ == rf and res.crops.shape == (2, 4, 3, 32, 32)
    padded = torch.nn.functional.pad(images, (40, 40, 40, 40))
    for c in range(2):
        for j in range(4):
            y0, x0, y1, x1 = rf.box(int(res.y[c, j]), int(res.x[c, j]))
            assert res.boxes[c, j].tolist() == [y0, x0, y1, x1]
            expected = padded[int(res.index[c, j]), :, y0 + 40:y1 + 40, x0 + 40:x1 + 40]
            torch.testing.assert_close(res.crops[c, j], expected)


def test_sample_datasets_and_errors(digits_model):
    from gradsum.data.samples import Sample

    model, x, _, _ = digits_model
    samples = [Sample(image=x[i], id=str(i)) for i in range(30)]
    res = top_patches(model, "act1", samples, k=3, channels=[2, 5], batch_size=8)
    ref = top_patches(model, "act1", x[:30], k=3, channels=[2, 5])
    torch.testing.assert_close(res.values, ref.values)
    assert res.channels == [2, 5]
    with pytest.raises(ValueError, match=r"channel 16 does not exist in layer 'act1'.*0\.\.15"):
        top_patches(model, "act1", x[:4], channels=[16])
    with pytest.raises(ValueError, match="closest names"):
        top_patches(model, "actt1", x[:4])
    small = top_patches(model, "act1", x[:2], k=5)
    assert small.values.shape == (16, 2)


def test_reused_module_uses_empirical_field():
    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv1(self.act(self.conv1(x))))

    torch.manual_seed(0)
    rf = receptive_field(Reuse(), "act", 16)
    assert rf.method == "empirical" and rf.size == (5, 5)  # the last call: two 3x3 convs
