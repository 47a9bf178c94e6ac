"""`gs.train.fit(device=...)` and `evaluate(device=...)`: None is the model's device, the model
returns to the device it came from, an absent device is a one-line ValueError before
anything changes, the class-range check reads the CPU copy of the targets; on CUDA the
seeded initialisation equals the CPU's."""
from __future__ import annotations

import pytest
import torch

import gradsum.models as M
import gradsum.train as T
from gradsum.train.metrics import Meter, confusion_matrix

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _fit(model, data, **kw):
    return T.fit(model, data, task="classification", epochs=1, batch_size=8, progress=False, seed=1, **kw)


def test_device_none_is_the_models_device_and_equals_cpu(make_bars) -> None:
    data = make_bars(16, 0)
    runs = []
    for device in (None, "cpu", torch.device("cpu"), "auto" if not torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = M.PotholeNet()
        history = _fit(model, data, device=device)
        runs.append((history.epochs[0]["train_loss"], [p.detach().clone() for p in model.parameters()]))
        assert all(p.device.type == "cpu" for p in model.parameters())
    for loss, params in runs[1:]:
        assert loss == runs[0][0]
        assert all(torch.equal(a, b) for a, b in zip(params, runs[0][1], strict=True))


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_absent_device_is_one_line_before_anything_changes(make_bars, device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and mps is not None and mps.is_available():
        pytest.skip("MPS is present")
    model = M.PotholeNet().train()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="available here") as info:
        _fit(model, make_bars(8, 0), device=device, reinit=True)
    assert "\n" not in str(info.value)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="available here"):
        T.evaluate(model, make_bars(8, 0), task="classification", device=device)


def test_device_of_the_wrong_type_is_refused(make_bars) -> None:
    with pytest.raises(TypeError, match="device must be a device name"):
        _fit(M.PotholeNet(), make_bars(8, 0), device=1.5)
    with pytest.raises(ValueError, match="not a device name"):
        _fit(M.PotholeNet(), make_bars(8, 0), device="gpu0")


def test_evaluate_defaults_to_the_models_device(make_bars) -> None:
    torch.manual_seed(0)
    model, data = M.PotholeNet(), make_bars(12, 2)
    a, ca = T.evaluate(model, data, task="classification", batch_size=5)
    b, cb = T.evaluate(model, data, task="classification", batch_size=5, device="cpu")
    assert a == b and torch.equal(ca, cb) and int(ca.sum()) == 12


def test_meter_checks_classes_on_the_host_copy_and_counts_the_same() -> None:
    torch.manual_seed(0)
    out, target = torch.randn(9, 4), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 1])
    checked, unchecked = Meter("classification"), Meter("classification")
    checked.update(out, target, checked.loss(out, target, host_target=target.clone()), checked=True)
    unchecked.update(out, target, unchecked.loss(out, target))
    assert torch.equal(checked.confusion, unchecked.confusion)
    assert torch.equal(checked.confusion, confusion_matrix(out.argmax(1), target, 4))
    assert checked.compute() == unchecked.compute()
    with pytest.raises(ValueError, match=r"class targets must lie in \[0, 3\].*from 0 to 7"):
        Meter("classification").loss(out, target, host_target=torch.tensor([0, 1, 2, 3, 7, 2, 1, 0, 1]))


@needs_cuda
def test_cuda_training_starts_from_the_cpu_initialisation_and_returns_the_model(make_bars) -> None:
    data = make_bars(16, 0)
    trained = {}
    for device in ("cpu", "cuda"):
        model = M.PotholeNet()
        # lr 1e-12: one AdamW step moves each weight by ~1e-12, so the weights after training are the
        # (seeded, CPU-drawn) initial weights
        T.fit(model, data, task="classification", epochs=1, batch_size=16, lr=1e-12, weight_decay=0.0,
              progress=False, seed=4, reinit=True, device=device)
        assert all(p.device.type == "cpu" for p in model.parameters())  # back where it came from
        trained[device] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(trained["cpu"], trained["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    on_gpu = M.PotholeNet().cuda()
    history = T.fit(on_gpu, data, data[:8], task="classification", epochs=1, batch_size=8, progress=False)
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())  # device=None: trained and left on the GPU
    assert history.confusions[0].device.type == "cpu" and int(history.confusions[0].sum()) == 8
