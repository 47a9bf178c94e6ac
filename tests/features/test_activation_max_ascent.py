"""The default activation-maximisation preset reaches plain projected gradient ascent (issue 16).

Reference, computed here independently of the library: x <- clip(x + lr * g / ||g||_2, 0, 1)
per image, from the same grey-noise start (passed to both as `init`), same step budget and batch; both scored by the channel mean of
the final [0,1] image without transforms.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import gradsum as gs
import gradsum.features as gf


def channel_means(model: nn.Module, layer: str, images: torch.Tensor, chans: list[int]) -> torch.Tensor:
    out: list[torch.Tensor] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, o: out.append(o))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return out[0].mean(dim=(2, 3))[torch.arange(len(chans)), torch.tensor(chans)]


class _Stop(Exception):
    pass


def projected_ascent(model: nn.Module, layer: str, chans: list[int], start: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain projected gradient ascent in pixel space from `start`; step 0.04 RMS per pixel."""
    n = len(chans)
    lr = 0.04 * start[0].numel() ** 0.5
    x = start.clone()
    out: list[torch.Tensor] = []

    def stop(m: nn.Module, a: tuple, o: torch.Tensor) -> None:
        out.append(o)
        raise _Stop

    handle = dict(model.named_modules())[layer].register_forward_hook(stop)
    idx, c = torch.arange(n), torch.tensor(chans)
    try:
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            out.clear()
            with contextlib.suppress(_Stop):
                model(x)
            (g,) = torch.autograd.grad(out[0].mean(dim=(2, 3))[idx, c].sum(), x)
            x = (x + lr * g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)).clamp(0, 1)
    finally:
        handle.remove()
    return x.detach()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()


def potholenet() -> nn.Module:
    torch.manual_seed(1)
    model = gs.models.build("potholenet")
    for m in model.modules():  # random, but not the identity statistics of a fresh batch norm
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


CASES = [  # (net, layer, channels, image size, steps: None = the default preset's 512)
    ("cnn", "3", list(range(8)), (32, 32), None),
    ("potholenet", "features.act1", list(range(64)), (16, 32), 128),  # potholenet: fewer steps and images
    # smaller than the demo's 48x96, to keep this file under 40 s on 2 shared cores
    ("potholenet", "features.act3", list(range(16)), (24, 48), 128),
]


@pytest.mark.parametrize(("net", "layer", "chans", "size", "steps"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_default_preset_reaches_projected_ascent(net, layer, chans, size, steps):
    model = small_cnn() if net == "cnn" else potholenet()
    start = 0.5 + (torch.rand(len(chans), 3, *size, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.125
    res = gf.maximize(model, gf.channel(layer, chans), image_size=size, transforms=False, steps=steps, init=start)
    n_steps = res.settings["steps"]
    assert n_steps == (steps or 512)
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    ours = channel_means(model, layer, res.images, chans)
    torch.testing.assert_close(ours, res.values, rtol=1e-4, atol=1e-5)  # `values` measure the final image
    plain = channel_means(model, layer, projected_ascent(model, layer, chans, start, n_steps), chans)
    ratio = ours / plain.clamp_min(1e-12)
    assert bool((ours >= 0.9 * plain).all()), {"ratio": ratio.tolist(), "ours": ours.tolist(), "plain": plain.tolist()}
    assert bool((res.values >= res.history[0]).all()), (res.history[0].tolist(), res.values.tolist())


def test_relu_redirect_only_for_images_without_gradient():
    """Lucid's rule: an image whose ordinary ReLU gradient is alive keeps it exactly; a dead
    image gets the gradient wherever it would raise the pre-activation."""
    from gradsum.features._relu import redirected_relus

    relu = nn.ReLU()
    x = torch.tensor([[[[1.0, -1.0, -2.0]]], [[[-1.0, -3.0, -2.0]]]], requires_grad=True)  # image 1: all dead
    weights = torch.tensor([[[[1.0, 1.0, -1.0]]]]).expand(2, 1, 1, 3)
    with redirected_relus(relu, [True]):
        (g,) = torch.autograd.grad((relu(x) * weights).sum(), x)
    assert g[0].flatten().tolist() == [1.0, 0.0, 0.0]  # alive: the ordinary ReLU gradient
    assert g[1].flatten().tolist() == [1.0, 1.0, 0.0]  # dead: redirected where it would raise x
    assert not relu._forward_hooks and not relu._forward_pre_hooks


def test_forward_stops_after_the_layers_read_and_leaves_no_hooks():
    model = nn.Sequential(small_cnn(), nn.Flatten(), nn.Linear(8 * 8 * 8, 2)).eval()
    calls = []
    handle = model[2].register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        res = gf.maximize(model, gf.channel("0.3", [0, 1]), image_size=8, steps=3, transforms=False)
        assert len(calls) == 1  # the grey check image only, not the 3 steps nor the final scoring
        gf.maximize(model, gf.channel("0.3", 0) + gf.class_logit(1), image_size=8, steps=3)
        assert len(calls) == 1 + 1 + 3 + 1  # the output is read: every forward runs to the end
    finally:
        handle.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert res.values.shape == (2,)
