"""Shared perturbation machinery: scoring convention, tail execution (fx split vs hook
fallback), model-state safety, batches with per-sample targets, regressors, bad input."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradsum as gs
from gradsum.core.targets import ClassTarget, RegressionTarget
from gradsum.methods.perturbation import LayerTail, mask_target
from testmodels import GapLinear, InplaceReuseCNN

FAST = {
    "scorecam": {},
    "ablationcam": {},
    "rise": {"n_masks": 64},
    "sise": {},
    "adasise": {},
    "occlusion": {"window": 8, "stride": 8},
    "lime": {"n_samples": 40, "segments": torch.arange(16).reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1)},
    "kernelshap": {"n_samples": 40, "segments": torch.arange(16).reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1)},
    "fullgrad": {},
    "extremal": {"iterations": 3},
}


class Residual(nn.Module):
    """A conv net with a skip connection that jumps over the explained layer `body.conv`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Sequential()
        self.body.add_module("conv", nn.Conv2d(6, 6, 3, padding=1))
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        h = F.relu(self.stem(x))
        y = self.act(self.body(h) + h)
        return self.fc(y.mean(dim=(2, 3)))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        return self.fc(h.mean(dim=(2, 3)))


def test_mask_target_uses_probabilities_for_classifiers_and_raw_output_for_regressors():
    out = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    bound = ClassTarget([0, 2]).bind(out)
    probs = mask_target(bound, out)(out)
    assert torch.allclose(probs, out.softmax(1)[[0, 1], [0, 2]])
    assert torch.equal(mask_target(bound, out, "target")(out), out[[0, 1], [0, 2]])
    reg = torch.tensor([[0.3], [-0.7]])
    rbound = RegressionTarget(0, sign=-1).bind(reg)
    assert torch.equal(mask_target(rbound, reg)(reg), -reg[:, 0])
    with pytest.raises(ValueError, match="score must be"):
        mask_target(bound, out, "logit")


@pytest.mark.parametrize("model_cls,layer", [(GapLinear, "features.1"), (Residual, "body.conv"), (Residual, "body")])
def test_fx_tail_equals_hook_fallback(model_cls, layer):
    torch.manual_seed(0)
    model = model_cls().eval()
    x = torch.rand(3, 3, 16, 16)
    fx = gs.explainer("ablationcam", model, layer=layer, tail="fx")(x, target=[0, 1, 2])
    hook = gs.explainer("ablationcam", model, layer=layer, tail="hook")(x, target=[0, 1, 2])
    assert fx.settings["tail"] == {layer: "fx"} and hook.settings["tail"] == {layer: "hook"}
    assert torch.allclose(fx.maps, hook.maps, atol=1e-6, rtol=1e-5)
    assert fx.maps.abs().sum() > 0


def test_layer_tail_runs_only_after_the_layer():
    torch.manual_seed(0)
    model = Residual().eval()
    x = torch.rand(2, 3, 8, 8)
    tail = LayerTail(model, "body.conv", model.body.conv, x)
    calls = []
    handle = model.stem.register_forward_hook(lambda *a: calls.append(1))
    try:
        acts = tail.activation[[0, 1, 1]]
        out = tail.run(acts, torch.tensor([0, 1, 1]))
    finally:
        handle.remove()
    assert tail.path == "fx" and calls == []  # the stem did not run again
    with torch.no_grad():
        assert torch.allclose(out, model(x)[[0, 1, 1]], atol=1e-6)


def test_untraceable_model_falls_back_once_at_warning_level(caplog):
    torch.manual_seed(0)
    model = Untraceable().eval()
    x = torch.rand(2, 3, 8, 8)
    with caplog.at_level(logging.DEBUG, logger="gradsum.methods.perturbation"):
        a = gs.explainer("ablationcam", model, layer="conv")(x)
        b = gs.explainer("ablationcam", model, layer="conv")(x)
    messages = [r for r in caplog.records if "tail execution" in r.getMessage()]
    assert len(messages) == 1 and messages[0].levelno == logging.WARNING
    assert "conv" in messages[0].getMessage()
    assert a.settings["tail"] == {"conv": "hook"}
    assert torch.allclose(a.maps, b.maps)
    with pytest.raises(ValueError, match="cannot be split"):
        gs.explainer("ablationcam", model, layer="conv", tail="fx")(x)


def test_layer_called_twice_is_refused_clearly():
    model = InplaceReuseCNN().eval()
    with pytest.raises(ValueError, match="called 2 times|called more than once"):
        gs.explainer("ablationcam", model, layer="relu", tail="hook")(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("name", list(FAST))
def test_model_state_is_restored(name):
    torch.manual_seed(0)
    model = GapLinear()
    model.train()
    model.fc.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    gs.explainer(name, model, **FAST[name])(torch.rand(2, 3, 32, 32), target=[1, 2])
    assert model.training and all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", [n for n in FAST if n not in ("lime", "kernelshap")])
def test_batch_with_per_sample_targets_equals_one_image_at_a_time(name):
    torch.manual_seed(0)
    model = GapLinear().eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [4, 0, 2]
    batch = gs.explainer(name, model, **FAST[name])(x, target=targets)
    assert batch.targets.tolist() == targets
    for i in range(3):
        single = gs.explainer(name, model, **FAST[name])(x[i:i + 1], target=targets[i])
        assert torch.allclose(batch.maps[i], single.maps[0], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("name", list(FAST))
def test_single_output_regressor(name, steering_model):
    x = torch.rand(2, 3, 33, 100, generator=torch.Generator().manual_seed(0))
    options = dict(FAST[name])
    if "segments" in options:
        options["segments"] = torch.arange(8).reshape(2, 4).repeat_interleave(17, 0)[:33].repeat_interleave(25, 1)
    attr = gs.explainer(name, steering_model, **options)(x)
    assert attr.maps.shape == (2, 33, 100) and torch.isfinite(attr.maps).all()
    assert attr.targets.tolist() == [0, 0]
    if "score" in attr.settings:
        assert attr.settings["score"] == "raw output"
    assert attr.settings["seed"] == 0
    assert attr.cost.seconds > 0


def test_costs_count_masks():
    torch.manual_seed(0)
    model = GapLinear().eval()
    x = torch.rand(2, 3, 32, 32)
    rise = gs.explainer("rise", model, n_masks=50)(x)
    assert rise.cost.masks == 100 and rise.cost.forward_passes == 102
    occ = gs.explainer("occlusion", model, window=8, stride=4)(x)
    assert occ.cost.masks == 2 * 7 * 7 and occ.settings["positions"] == 49


def test_bad_arguments_say_what_to_do():
    model = GapLinear().eval()
    with pytest.raises(ValueError, match="closest names"):
        gs.explainer("scorecam", model, layer="featurez")
    with pytest.raises(ValueError, match="channels"):
        gs.explainer("ablationcam", model, channels=0)
    with pytest.raises(ValueError, match="p1"):
        gs.explainer("rise", model, p1=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        gs.explainer("rise", model, batch_size=0)
    with pytest.raises(ValueError, match="larger than the image"):
        gs.explainer("occlusion", model, window=64)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="skipped"):
        gs.explainer("occlusion", model, window=4, stride=8)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="broadcast"):
        gs.explainer("occlusion", model, baseline=torch.zeros(2, 5, 5))(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="gate"):
        gs.explainer("sise", model, gate="medium")
