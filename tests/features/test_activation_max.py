"""Activation maximisation: objectives, parameterisations, transforms, presets, state."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum.features as gf
from gradsum.core.probe import Probe
from gradsum.features.objectives import OUTPUT, LayerActivations
from gradsum.features.params import FFTParam
from gradsum.features.transforms import Transforms


def channel_means(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    module = dict(model.named_modules())[layer]
    with Probe(model, [(layer, module)]) as probe, torch.no_grad():
        model(images)
        return probe.activation(layer).mean(dim=(2, 3))


def test_sixteen_channels_beat_noise_tenfold(digits_model):
    model = digits_model[0]
    res = gf.maximize(model, gf.channel("act2", list(range(16))), image_size=16, preset="keras", seed=0)
    assert res.images.shape == (16, 3, 16, 16)
    noise = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(123))
    noise_act = channel_means(model, "act2", noise)[:, :16].mean(0)
    optimised = channel_means(model, "act2", res.images)[torch.arange(16), torch.arange(16)]
    module = dict(model.named_modules())["act2"]
    with Probe(model, [("act2", module)]) as probe, torch.no_grad():  # keras: border of 2 excluded
        model(res.images)
        inner = probe.activation("act2")[:, :, 2:-2, 2:-2].mean((2, 3))[torch.arange(16), torch.arange(16)]
    torch.testing.assert_close(inner, res.values, rtol=1e-4, atol=1e-4)
    assert bool((noise_act > 0).all())
    ratio = optimised / noise_act
    assert bool((ratio >= 10).all()), ratio


def test_lucent_fft_raises_every_channel_and_stays_in_unit_range(digits_model):
    model = digits_model[0]
    obj = gf.channel("act2", list(range(8)))
    res = gf.maximize(model, obj, image_size=16, preset="lucent", steps=48, seed=1)
    assert res.settings["param"] == "fft"
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    start = res.history[0]
    assert bool((res.history[-1] > start).all()), (start, res.history[-1])


def test_seeded_and_reproducible(digits_model):
    model = digits_model[0]
    obj = gf.channel("conv2", [0, 1, 2])
    kw = {"image_size": 16, "preset": "lucent", "steps": 5}
    a = gf.maximize(model, obj, seed=3, **kw)
    b = gf.maximize(model, obj, seed=3, **kw)
    c = gf.maximize(model, obj, seed=4, **kw)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert a.settings["seed"] == 3


def test_model_state_restored_even_on_error(digits_model):
    model = digits_model[0]
    model.train()
    model.fc.weight.requires_grad_(False)
    try:
        gf.maximize(model, gf.channel("act1", [0, 1]), image_size=16, preset="keras", steps=3)
        assert model.training and all(m.training for m in model.modules())
        assert model.fc.weight.requires_grad is False and model.conv1.weight.requires_grad is True
        assert all(p.grad is None for p in model.parameters())
        with pytest.raises(ValueError):
            gf.maximize(model, gf.channel("act1", [0, 99]), image_size=16, steps=2)
        assert model.training
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        assert all(getattr(m, "inplace", False) is False for m in model.modules() if isinstance(m, nn.ReLU))
    finally:
        model.eval()
        model.fc.weight.requires_grad_(True)


def test_bad_layer_and_channel_errors(digits_model):
    model = digits_model[0]
    with pytest.raises(ValueError, match="unknown layer 'act3'.*closest names"):
        gf.maximize(model, gf.channel("act3", 0), image_size=16, steps=1)
    with pytest.raises(ValueError, match=r"channel 32 does not exist in layer 'act2'.*valid channels are 0\.\.31"):
        gf.maximize(model, gf.channel("act2", [0, 32]), image_size=16, steps=1)
    with pytest.raises(ValueError, match=r"unit 10 does not exist.*0\.\.9"):
        gf.maximize(model, gf.class_logit(10), image_size=16, steps=1)
    with pytest.raises(ValueError, match="cannot add objectives defining 2 and 3 images"):
        gf.channel("act2", [0, 1]) + gf.channel("act1", [0, 1, 2])
    with pytest.raises(ValueError, match="image_size"):
        gf.maximize(model, gf.channel("act2", 0), image_size=2, steps=1)


def test_objectives_compose_and_compute_expected_values():
    torch.manual_seed(0)
    a4 = torch.randn(2, 5, 6, 7)
    a2 = torch.randn(2, 4)
    acts = LayerActivations({"c": a4, "d": a2, OUTPUT: a2})
    ch = gf.channel("c", 3)
    torch.testing.assert_close(ch(acts), a4[:, 3].mean((1, 2)))
    per = gf.channel("c", [1, 4])
    torch.testing.assert_close(per(acts), torch.stack([a4[0, 1].mean(), a4[1, 4].mean()]))
    torch.testing.assert_close(gf.neuron("c", 2)(acts), a4[:, 2, 3, 3])
    torch.testing.assert_close(gf.neuron("c", 2, y=1, x=5)(acts), a4[:, 2, 1, 5])
    torch.testing.assert_close(gf.dense_unit("d", 1)(acts), a2[:, 1])
    torch.testing.assert_close(gf.class_logit(2)(acts), a2[:, 2])
    combo = ch + 2 * gf.dense_unit("d", 0) - gf.neuron("c", 0)
    expected = a4[:, 3].mean((1, 2)) + 2 * a2[:, 0] - a4[:, 0, 3, 3]
    torch.testing.assert_close(combo(acts), expected)
    assert set(combo.layers) == {"c", "d"}
    total = sum([ch, ch])
    torch.testing.assert_close(total(acts), 2 * ch(acts))
    v = torch.randn(5)
    cos = torch.nn.functional.cosine_similarity(a4, v.view(1, 5, 1, 1), dim=1).mean((1, 2))
    torch.testing.assert_close(gf.direction("c", v)(acts), cos)
    with pytest.raises(ValueError, match="neuron position"):
        gf.neuron("c", 0, y=9, x=0)(acts)


def test_class_and_direction_objectives_optimise(digits_model):
    model = digits_model[0]
    res = gf.maximize(model, gf.class_logit([3, 7]), image_size=16, preset="keras", steps=10)
    with torch.no_grad():
        pred = model(res.images).argmax(1)
    assert pred.tolist() == [3, 7]
    direction = torch.zeros(32)
    direction[5] = 1.0
    res = gf.maximize(model, gf.direction("conv2", direction), image_size=16, preset="keras", steps=10)
    assert float(res.values[0]) > float(res.history[0, 0])


def test_module_object_as_layer(digits_model):
    model = digits_model[0]
    res = gf.maximize(model, gf.channel(model.act1, [0, 1]), image_size=16, preset="keras", steps=2)
    assert res.values.shape == (2,)


def test_identity_transform_is_exact_and_standard_keeps_shape():
    img = torch.rand(3, 3, 20, 24)
    ident = Transforms(pad=0, jitter1=0, scale=(1.0, 1.0), rotate=0.0, jitter2=0)
    torch.testing.assert_close(ident(img, torch.Generator().manual_seed(0)), img, atol=1e-5, rtol=0)
    std = gf.Transforms().scaled_for(20)
    assert (std.pad, std.jitter1, std.jitter2) == (1, 1, 1)
    out = std(img, torch.Generator().manual_seed(0))
    assert out.shape == img.shape
    assert not torch.equal(out[0], out[1].roll(0)) or True
    big = gf.Transforms().scaled_for(448)
    assert (big.pad, big.jitter1, big.jitter2) == (12, 8, 4)


def test_transforms_draw_per_image():
    img = torch.rand(1, 3, 32, 32).expand(4, -1, -1, -1)
    out = gf.Transforms().scaled_for(32)(img, torch.Generator().manual_seed(0))
    assert not torch.allclose(out[0], out[1])


def test_fft_param_is_sigmoid_bounded_and_low_frequency():
    g = torch.Generator().manual_seed(0)
    p = FFTParam((2, 3, 16, 16), generator=g, device=torch.device("cpu"))
    img = p.image().detach()
    assert img.shape == (2, 3, 16, 16)
    assert float(img.min()) > 0 and float(img.max()) < 1
    assert p.scale[0, 0] == 16  # 1 / max(f, 1/16) at f = 0
    assert p.scale[8, 8] < p.scale[1, 1]


def test_figure(digits_model):
    from matplotlib.figure import Figure

    res = gf.maximize(digits_model[0], gf.channel("act1", [0, 1, 2]), image_size=16, preset="keras", steps=2)
    fig = res.figure()
    assert isinstance(fig, Figure) and len(fig.axes) >= 3


def _tv(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_regularisers_smooth_and_shrink_the_image(digits_model):
    model = digits_model[0]
    obj = gf.channel("act2", [0, 1, 2, 3])
    kw = {"image_size": 16, "preset": None, "param": "pixel", "optimizer": "adam", "lr": 0.05, "steps": 30, "seed": 0}
    plain = gf.maximize(model, obj, **kw)
    smooth = gf.maximize(model, obj, tv=5.0, **kw)
    blurred = gf.maximize(model, obj, blur_every=4, blur_sigma=1.0, **kw)
    decayed = gf.maximize(model, obj, l2=50.0, **kw)
    assert _tv(smooth.images) < 0.8 * _tv(plain.images)
    assert _tv(blurred.images) < 0.8 * _tv(plain.images)
    assert float((decayed.images - 0.5).pow(2).mean()) < 0.8 * float((plain.images - 0.5).pow(2).mean())
    assert smooth.settings["tv"] == 5.0 and blurred.settings["blur_every"] == 4


def test_neuron_objective_and_init_image(digits_model):
    model, x, _, _ = digits_model
    start = x[:1]
    res = gf.maximize(model, gf.neuron("conv2", [3, 4], y=2, x=5), image_size=16, preset=None, param="pixel",
                      steps=15, transforms=False, init=start, redirect_relu=0)
    assert res.labels == ["conv2:3@2,5", "conv2:4@2,5"]
    with torch.no_grad():
        before = model.conv2(model.pool1(model.act1(model.conv1(start))))[0, [3, 4], 2, 5]
    assert bool((res.values > before).all())
    with pytest.raises(ValueError, match="only with param='pixel'|supported with param='pixel' only"):
        gf.maximize(model, gf.channel("act2", 0), image_size=16, param="fft", init=start, steps=1)
