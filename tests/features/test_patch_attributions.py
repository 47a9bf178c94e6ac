"""patch_attributions: guided backprop (or any method) of each maximally activating patch's
own unit, cropped to the patch's receptive field."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.data.samples import Sample
from gradsum.features.patches import patch_attributions, top_patches


@pytest.fixture
def chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 5, 3), act2=nn.ReLU(), head=nn.Flatten(), fc=nn.LazyLinear(3),
    )).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 3, 20, 20, generator=torch.Generator().manual_seed(4))


def test_crops_equal_direct_neuron_targets_and_nothing_leaves_the_field(chain, images):
    chain(images[:1])  # materialise the lazy head
    top = top_patches(chain, "conv2", images, k=3, channels=[0, 2, 4], per_image=False)
    assert top.field_.method == "analytic" and top.field_.size == (8, 8)
    crops = patch_attributions(chain, top, images)
    assert crops.shape == (3, 3, 3, 8, 8)
    assert crops.abs().amax() > 0
    for i, channel in enumerate(top.channels):
        for j in range(3):
            image = images[int(top.index[i, j])][None]
            y, x = int(top.y[i, j]), int(top.x[i, j])
            full = gs.explain(chain, image, "guided-backprop",
                              target=gs.NeuronTarget("conv2", channel, y, x))["guided-backprop"].input_maps[0]
            y0, x0, y1, x1 = (int(v) for v in top.boxes[i, j])
            inside = torch.zeros(20, 20, dtype=torch.bool)
            inside[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
            assert float(full[:, ~inside].abs().max()) == 0.0  # gradients cannot leave the field
            by_hand = torch.zeros(3, 8, 8)  # zero outside the image, like top.crops
            ys, xs = slice(max(y0, 0), min(y1, 20)), slice(max(x0, 0), min(x1, 20))
            by_hand[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = full[:, ys, xs]
            torch.testing.assert_close(crops[i, j], by_hand, rtol=1e-5, atol=1e-7)


def test_datasets_of_samples_and_other_methods(chain, images):
    chain(images[:1])
    samples = [Sample(image=img, id=str(i)) for i, img in enumerate(images)]
    top = top_patches(chain, "conv2", samples, k=2, channels=[1])
    from_samples = patch_attributions(chain, top, samples, "saliency")
    from_tensor = patch_attributions(chain, top, images, "saliency")
    torch.testing.assert_close(from_samples, from_tensor)
    cams = patch_attributions(chain, top, images, "gradcam")  # maps only: one channel
    assert cams.shape == (1, 2, 1, 8, 8)
    with pytest.raises(ValueError, match="images has 2"):
        patch_attributions(chain, top, images[:2])


def test_a_subset_of_channels_gives_the_same_rows_in_its_order(chain, images):
    chain(images[:1])
    top = top_patches(chain, "conv2", images, k=2, channels=[0, 2, 4])
    every = patch_attributions(chain, top, images)
    picked = patch_attributions(chain, top, images, channels=[4, 0])
    torch.testing.assert_close(picked, every[[2, 0]], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"channels \[1\] are not among the channels of top"):
        patch_attributions(chain, top, images, channels=[1])
