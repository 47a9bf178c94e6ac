"""gs.NeuronTarget: a unit of an intermediate layer explained by every gradient, CAM and
perturbation method on the model truncated at that layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.core.truncate import truncated, truncated_model


class Counter(nn.Module):
    """Identity that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.conv3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.after = Counter()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.drop(torch.relu(self.conv2(x)))
        x = self.after(torch.relu(self.conv3(x)))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def _by_hand(net: Net, x: torch.Tensor) -> torch.Tensor:
    """conv2's output computed without gradsum (eval mode)."""
    return net.conv2(torch.relu(net.bn1(net.conv1(x))))


def test_per_sample_channels_and_positions_equal_one_image_at_a_time(net, x):
    target = gs.NeuronTarget("conv2", [1, 5, 1], y=[0, 7, 11], x=[3, 3, 10])
    batch = gs.explain(net, x, ["saliency", "gradcam"], layer="conv1", target=target)
    for i, (c, yy, xx) in enumerate([(1, 0, 3), (5, 7, 3), (1, 11, 10)]):
        one = gs.explain(net, x[i:i + 1], ["saliency", "gradcam"], layer="conv1", target=gs.NeuronTarget("conv2", c, yy, xx))
        for method in ("saliency", "gradcam"):
            torch.testing.assert_close(batch[method].maps[i], one[method].maps[0], rtol=1e-5, atol=1e-7)
    expected = _by_hand(net, x)[torch.arange(3), torch.tensor([1, 5, 1]), torch.tensor([0, 7, 11]), torch.tensor([3, 3, 10])]
    torch.testing.assert_close(batch["saliency"].scores, expected.detach())
    # channel means, one channel per image, given as a tensor
    means = gs.explainer("saliency", net)(x, target=gs.NeuronTarget(net.conv2, torch.tensor([0, 2, 7])))
    torch.testing.assert_close(means.scores, _by_hand(net, x).mean(dim=(2, 3))[torch.arange(3), torch.tensor([0, 2, 7])].detach())
    assert means.settings["target"].startswith("neuron 'conv2'")


def test_the_rest_of_the_network_does_not_run(net, x):
    for method in ("guided-backprop", "smoothgrad", "occlusion"):
        net.after.calls = 0
        gs.explain(net, x, method, target=gs.NeuronTarget("conv2", 0, 2, 2))
        assert net.after.calls == 0, method
    gs.explain(net, x, "saliency")  # a class target runs the whole network
    assert net.after.calls == 1


def _state(model: nn.Module):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()])


@pytest.mark.parametrize("bad", [
    dict(channel=8), dict(channel=[0, 1, 9]), dict(channel=1, y=12, x=0), dict(channel=1, y=0, x=-1),
])
def test_out_of_range_is_one_clear_error_and_the_model_is_untouched(net, x, bad):
    net.train()
    net.conv1.weight.requires_grad_(False)
    before = _state(net)
    with pytest.raises(ValueError, match=r"out of range: layer 'conv2' outputs \(3, 8, 12, 12\)") as info:
        gs.explain(net, x, ["guided-backprop"], target=gs.NeuronTarget("conv2", **bad))
    assert "0..7" in str(info.value) or "0..11" in str(info.value)
    assert _state(net) == before


def test_the_model_is_untouched_after_every_family(net, x):
    net.train()
    before = _state(net)
    target = gs.NeuronTarget("conv2", 3, 4, 4)
    gs.explain(net, x, ["gradcam", "layercam", "guided-backprop", "integrated-gradients", "rise"],
               layer="conv1", target=target, options={"integrated-gradients": {"steps": 4},
                                                       "rise": {"n_masks": 16}})
    assert _state(net) == before
    assert type(net) is Net and net.forward.__func__ is Net.forward


def test_bad_specifications(net, x):
    with pytest.raises(ValueError, match="closest names: conv2"):
        gs.explain(net, x, "saliency", target=gs.NeuronTarget("conv_2", 0))
    with pytest.raises(ValueError, match="both y and x"):
        gs.NeuronTarget("conv2", 0, y=3)
    with pytest.raises(TypeError, match="channel"):
        gs.NeuronTarget("conv2", 1.5)
    with pytest.raises(TypeError, match="layer"):
        gs.NeuronTarget(3, 1)
    with pytest.raises(TypeError, match="float"):  # never truncated to an index
        gs.explain(net, x, "saliency", target=gs.NeuronTarget("conv2", np.array([0.5, 1.0, 2.0])))
    with pytest.raises(ValueError, match="2 values of channel for a batch of 3"):
        gs.explain(net, x, "saliency", target=gs.NeuronTarget("conv2", [0, 1]))
    with pytest.raises(ValueError, match="not a model output"):  # never bound on the whole model's output
        gs.NeuronTarget("conv2", 0).bind(torch.zeros(2, 4, 3, 3))


def test_cam_layers_must_run_before_the_neuron(net, x):
    target = gs.NeuronTarget("conv2", 0)
    with pytest.raises(ValueError, match="'conv3' does not run before the neuron's layer 'conv2'"):
        gs.explain(net, x, "gradcam", layer="conv3", target=target)
    with pytest.raises(ValueError, match="'conv2' is the neuron's own layer"):
        gs.explainer("layercam", net, layer="conv2")(x, target=target)
    with pytest.raises(ValueError, match="layer='auto' chose the neuron's own layer 'conv1'"):
        gs.explain(net, x, "gradcam", target=gs.NeuronTarget("conv1", 0))
    auto = gs.explain(net, x, "gradcam", target=target)["gradcam"]  # the last spatial layer before conv2
    assert auto.settings["layers"] in (["conv1"], ["bn1"])
    with pytest.raises(ValueError, match="use gradcam"):
        gs.explain(net, x, "cam", layer="conv1", target=target)
    with pytest.raises(ValueError, match="gradcam: layer 'conv3' does not run before"):
        gs.explain(net, x, "guided-gradcam", layer="conv3", target=target)
    ok = gs.explain(net, x, "gradcam", layer=["conv1", "bn1"], target=target)["gradcam"]
    assert set(ok.layer_maps) == {"conv1", "bn1"}


def test_token_layers_are_refused(x):
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            return self.norm(self.embed(x).flatten(2).transpose(1, 2)).mean(dim=1)

    with pytest.raises(ValueError, match=r"layer 'norm' outputs shape \(3, 9, 8\) \(tokens\)"):
        gs.explain(Tokens().eval(), x, "saliency", target=gs.NeuronTarget("norm", 0))
    with pytest.raises(ValueError, match="attention explains a transformer"):
        gs.explainer("attention", nn.Identity())(x, target=gs.NeuronTarget("norm", 0))


def test_user_hooks_before_the_layer_fire_and_none_are_left(net, x):
    seen = []
    pre = net.register_forward_pre_hook(lambda m, args: (args[0] * 2,))  # the user's input scaling
    hook = net.conv1.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    try:
        res = gs.explainer("inputxgradient", net)(x, target=gs.NeuronTarget("conv2", 2, 5, 6))
    finally:
        pre.remove()
        hook.remove()
    assert seen
    xin = x.clone().requires_grad_(True)
    neuron = _by_hand(net, 2 * xin)[:, 2, 5, 6]
    (grad,) = torch.autograd.grad(neuron.sum(), xin)
    torch.testing.assert_close(res.input_maps, x * grad, rtol=1e-4, atol=1e-6)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


@pytest.mark.filterwarnings("ignore::gradsum.methods.base.ZeroMapWarning")
@pytest.mark.parametrize("method, options", [
    ("occlusion", {"window": 4, "stride": 4}),
    ("ablationcam", {}),
    ("scorecam", {}),
    ("smoothgrad", {"n_samples": 3}),
])
def test_methods_equal_the_same_method_on_the_network_cut_by_hand(net, x, method, options):
    class Cut(nn.Module):
        def __init__(self, full: Net) -> None:
            super().__init__()
            self.conv1, self.bn1, self.conv2 = full.conv1, full.bn1, full.conv2

        def forward(self, x):
            return self.conv2(torch.relu(self.bn1(self.conv1(x))))

    layer = None if method in ("occlusion", "smoothgrad") else "conv1"
    kwargs = {"layer": layer} if layer else {}
    ours = gs.explainer(method, net, **kwargs, **options)(x, target=gs.NeuronTarget("conv2", [1, 4, 6], 5, 6))
    chans = torch.tensor([1, 4, 6])

    def neuron(out: torch.Tensor) -> torch.Tensor:  # rows of perturbed copies: sample-major
        return out[torch.arange(out.shape[0]), chans.repeat_interleave(out.shape[0] // 3), 5, 6]

    if method == "smoothgrad":  # one noisy copy per row: compare with autograd instead
        cut = Cut(net).eval()
        exp = gs.explainer(method, cut, **options)
        noisy = (x[:, None] + exp._scale(x)[:, None] * exp.draws(x)[None]).reshape(-1, *x.shape[1:]).requires_grad_()
        (g,) = torch.autograd.grad(neuron(cut(noisy)).sum(), noisy)
        torch.testing.assert_close(ours.input_maps, g.abs().reshape(3, 3, *x.shape[1:]).mean(1), rtol=1e-4, atol=1e-6)
        return
    theirs = gs.explainer(method, Cut(net).eval(), **kwargs, **options)(x, target=neuron)
    torch.testing.assert_close(ours.maps, theirs.maps, rtol=1e-4, atol=1e-6)
    assert ours.maps.abs().amax() > 0


def test_truncated_view_shares_modules_and_stops(net, x):
    with truncated(net, "conv2") as view:
        out = view(x)
        assert dict(view.named_modules()).keys() == dict(net.named_modules()).keys()
        assert view.conv2 is net.conv2 and isinstance(view, Net)
        bound = gs.NeuronTarget("conv2", 1).bind(out)
    torch.testing.assert_close(out, _by_hand(net, x))
    assert bound(out).shape == (3,)
    with pytest.raises(ValueError, match="closest names"):
        truncated_model(net, "conv9")
