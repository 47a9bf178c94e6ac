"""Tail execution (Ablation-CAM's torch.fx split) on models that already carry hooks: the
user's forward hooks, pytorch-grad-cam-style hooks left on a layer, global module hooks.
The split is kept, the hooks still fire where they fired before, the maps do not change."""
from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from torch import nn

import gradsum as gs
from gradsum.methods import perturbation
from gradsum.methods.perturbation import LayerTail


class Block(nn.Module):
    """A non-leaf module (torch.fx traces through it unless told to keep it whole)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Block(3, 6)
        self.body = Block(6, 8)
        self.head = Block(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.head(self.body(self.stem(x))).mean(dim=(2, 3)))


class GradCamStyleHook:
    """What pytorch-grad-cam leaves on its target layer: a forward hook with control flow on
    the output (`if not output.requires_grad: return`), which torch.fx cannot trace."""

    def __init__(self):
        self.outputs: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def __call__(self, module, inputs, output):
        self.inputs.append(inputs[0].detach().clone())
        self.outputs.append(output.detach().clone())
        if not hasattr(output, "requires_grad") or not output.requires_grad:
            return None
        return None


def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():
        model.fc.weight.mul_(10)  # maps well above zero for both images of torch.rand(2, 3, 12, 12)
    return model


def assert_same_maps(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-6 of the map's scale, and not trivially (every map has non-zero values)."""
    assert (expected.flatten(1).abs().amax(dim=1) > 1e-3).all()
    assert torch.allclose(got, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))


def ablation(model, layer, x, **options):
    return gs.explainer("ablationcam", model, layer=layer, batch_size=4, **options)(x, target=[0, 1])


def test_plain_fx_trace_fails_on_a_hooked_block_but_the_tail_is_split():
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    clean = ablation(model, "body", x)
    hook = GradCamStyleHook()
    handle = model.body.register_forward_hook(hook)
    try:
        with pytest.raises(Exception, match="control flow"):
            torch.fx.symbolic_trace(model)  # the weakness this module fixes
        hook.outputs.clear()  # the failed trace gave the hook a Proxy
        hook.inputs.clear()
        hooked = ablation(model, "body", x)
    finally:
        handle.remove()
    assert clean.settings["tail"] == {"body": "fx"} and hooked.settings["tail"] == {"body": "fx"}
    assert_same_maps(hooked.maps, clean.maps)
    assert len(hook.outputs) == 2  # the clean pass and the head: the layer runs once per image batch
    assert torch.allclose(hook.outputs[1], hook.outputs[0])
    assert not model.body._forward_hooks  # the handle removed the hook: the dictionaries are the model's own


def test_hooks_in_the_tail_fire_with_the_inputs_of_full_forwards():
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    on_layer, in_tail, leaf = GradCamStyleHook(), GradCamStyleHook(), GradCamStyleHook()
    handles = [model.body.register_forward_hook(on_layer), model.head.register_forward_hook(in_tail),
               model.fc.register_forward_hook(leaf)]
    try:
        fx = ablation(model, "body", x, tail="fx")
        fx_seen = (list(in_tail.inputs), list(leaf.inputs))
        in_tail.inputs.clear()
        leaf.inputs.clear()
        full = ablation(model, "body", x, tail="hook")
        full_seen = (in_tail.inputs, leaf.inputs)
    finally:
        for h in handles:
            h.remove()
    assert fx.settings["tail"] == {"body": "fx"} and full.settings["tail"] == {"body": "hook"}
    assert_same_maps(fx.maps, full.maps)
    for got, expected in zip(fx_seen, full_seen, strict=True):
        # the clean pass, one clean check of the tail (a capture forward on the hook path), then
        # one call per chunk of 4 ablated channels: the same tensors in the same order
        assert len(got) == len(expected) > 2
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():
        plain = model.body(model.stem(x))
    assert torch.allclose(fx_seen[0][1], plain, atol=1e-6)  # the tail's first call: the plain forward's input
    assert not (model.body._forward_hooks or model.head._forward_hooks or model.fc._forward_hooks)


@pytest.mark.parametrize("kind", ["kwargs_always", "pre", "backward"])
def test_other_hook_kinds_on_the_layer_and_in_the_tail(kind):
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    clean = ablation(model, "body", x)
    calls: list[str] = []
    if kind == "kwargs_always":
        handles = [m.register_forward_hook(lambda mod, args, kwargs, out, n=n: calls.append(n), with_kwargs=True,
                                           always_call=True) for n, m in (("body", model.body), ("head", model.head))]
    elif kind == "pre":
        handles = [m.register_forward_pre_hook(lambda mod, args, n=n: calls.append(n))
                   for n, m in (("body", model.body), ("head", model.head))]
    else:
        handles = [m.register_full_backward_hook(lambda *a, n=n: calls.append(n))
                   for n, m in (("body", model.body), ("head", model.head))]
    try:
        hooked = ablation(model, "body", x)
        registered = [len(model.body._forward_hooks) + len(model.body._forward_pre_hooks)
                      + len(model.body._backward_hooks)]
    finally:
        for h in handles:
            h.remove()
    assert hooked.settings["tail"] == {"body": "fx"}
    assert_same_maps(hooked.maps, clean.maps)
    assert registered == [1]
    if kind != "backward":  # no backward pass runs in Ablation-CAM
        assert calls.count("body") == 2 and calls.count("head") > 2
    assert not (model.body._forward_hooks or model.body._forward_pre_hooks or model.body._backward_hooks)


def test_global_module_hooks_keep_the_split_and_see_every_module():
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    clean = ablation(model, "body", x)
    seen: list[type] = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda mod, i, o: seen.append(type(mod)))
    try:
        hooked = ablation(model, "body", x)
    finally:
        handle.remove()
    assert hooked.settings["tail"] == {"body": "fx"}
    assert_same_maps(hooked.maps, clean.maps)
    assert seen.count(Block) > 3 and nn.Linear in seen  # the tail's blocks were called as modules
    assert not any(issubclass(t, torch.fx.GraphModule) for t in seen)  # never the split parts themselves


def test_root_forward_hooks_are_replayed_on_the_tail_output():
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    outputs: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda mod, inputs, out: outputs.append(out.detach().clone()))
    try:
        fx = ablation(model, "body", x)
        fx_outputs = list(outputs)
        outputs.clear()
        full = ablation(model, "body", x, tail="hook")
    finally:
        handle.remove()
    assert fx.settings["tail"] == {"body": "fx"}
    assert_same_maps(fx.maps, full.maps)
    # fx: clean pass, check, chunks; hook: clean pass, capture, chunks
    assert len(fx_outputs) == len(outputs) > 2
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fx_outputs, outputs, strict=True))


def test_root_pre_hooks_and_hooks_around_the_layer_fall_back_with_a_warning(caplog):
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    clean = ablation(model, "body.conv", x)
    perturbation._logged.clear()
    for owner, label in ((model, "the model itself"), (model.body, "'body'")):
        calls = []
        if owner is model:
            handle = owner.register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
        else:
            handle = owner.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        try:
            with caplog.at_level(logging.WARNING, logger="gradsum.methods.perturbation"):
                caplog.clear()
                hooked = ablation(model, "body.conv", x)
            with pytest.raises(ValueError, match="cannot be split"):
                ablation(model, "body.conv", x, tail="fx")
        finally:
            handle.remove()
        assert hooked.settings["tail"] == {"body.conv": "hook"}
        assert_same_maps(hooked.maps, clean.maps)
        assert len(calls) > 2  # one call per full forward
        records = [r for r in caplog.records if "tail execution" in r.getMessage()]
        assert len(records) == 1 and records[0].levelno == logging.WARNING
        assert label in records[0].getMessage() and "body.conv" in records[0].getMessage()


def test_hooks_added_after_the_split_was_cached_still_fire():
    model = small_cnn()
    x = torch.rand(2, 3, 12, 12)
    explainer = gs.explainer("ablationcam", model, layer="body", batch_size=4)
    clean = explainer(x, target=[0, 1])  # traced with `head` inlined
    hook = GradCamStyleHook()
    handle = model.head.register_forward_hook(hook)
    try:
        hooked = explainer(x, target=[0, 1])
    finally:
        handle.remove()
    assert hooked.settings["tail"] == {"body": "fx"}
    assert_same_maps(hooked.maps, clean.maps)
    assert len(hook.inputs) > 2


def test_layer_tail_leaves_the_hook_dictionaries_untouched_even_when_splitting_fails():
    class Broken(SmallCNN):
        def forward(self, x):
            h = self.body(self.stem(x))
            if h.sum() > 0:  # untraceable
                h = h * 2
            return self.fc(self.head(h).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = Broken().eval()
    hook = GradCamStyleHook()
    handle = model.head.register_forward_hook(hook)
    before = {n: (m._forward_hooks, dict(m._forward_hooks)) for n, m in model.named_modules()}
    tail = LayerTail(model, "body", model.body, torch.rand(1, 3, 8, 8))
    assert tail.path == "hook" and "cannot trace" in (tail.reason or "")
    for n, m in model.named_modules():
        assert m._forward_hooks is before[n][0] and dict(m._forward_hooks) == before[n][1]
    handle.remove()
    assert not model.head._forward_hooks


def test_resnet18_with_foreign_hooks_keeps_the_fx_path():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    explain = gs.explainer("ablationcam", model, layer="layer4", channels=0.125, batch_size=16)
    clean = explain(x)
    on_layer, other = GradCamStyleHook(), GradCamStyleHook()
    handles = [model.layer4[-1].register_forward_hook(on_layer), model.layer3.register_forward_hook(other)]
    try:
        with pytest.raises(Exception, match="control flow"):
            torch.fx.symbolic_trace(model)
        for hook in (on_layer, other):  # the failed trace gave them Proxies
            hook.outputs.clear()
            hook.inputs.clear()
        hooked = explain(x)
    finally:
        for h in handles:
            h.remove()
    assert clean.settings["tail"] == {"layer4": "fx"} and hooked.settings["tail"] == {"layer4": "fx"}
    assert_same_maps(hooked.maps, clean.maps)
    assert len(on_layer.outputs) == 2 and len(other.outputs) == 2  # clean pass + head; no full forward per channel
    assert not (model.layer4[-1]._forward_hooks or model.layer3._forward_hooks)
