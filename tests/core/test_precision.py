"""The precision policy: float32 (TF32 off) by default, restored afterwards; opt-ins recorded."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app
from gradsum.core.precision import _tf32_switches, precision_scope


def _state() -> list:
    return [getattr(obj, name) for obj, name, _ in _tf32_switches()]


def test_scope_turns_tf32_off_then_restores_even_on_error():
    before = _state()
    with precision_scope("float32"):
        assert all(v in ("ieee", False) for v in _state())
    with precision_scope("tf32"):
        assert all(v in ("tf32", True) for v in _state())
    with pytest.raises(RuntimeError, match="boom"), precision_scope("float32"):
        raise RuntimeError("boom")
    assert _state() == before
    with pytest.raises(ValueError, match="precision must be one of float32, tf32"), precision_scope("fp64"):
        pass
    with pytest.raises(ValueError, match="autocast must be None, 'bf16' or 'fp16'"):
        gs.explain(nn.Linear(3, 2), torch.rand(1, 3), ["saliency"], autocast="int8")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def test_results_record_the_policy_and_autocast_is_close():
    model, x = _model(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = gs.explain(model, x, ["gradcam", "saliency"], layer="2")
    assert {a.settings["precision"] for a in exact.values()} == {"float32"}
    assert {a.settings["autocast"] for a in exact.values()} == {None}
    fast = gs.explain(model, x, ["gradcam", "saliency"], layer="2", autocast="bf16")
    for name, attr in fast.items():
        assert attr.settings["autocast"] == "bf16" and attr.maps.dtype == torch.float32
        reference = exact[name].maps
        cosine = torch.nn.functional.cosine_similarity(attr.maps.flatten(), reference.flatten(), dim=0)
        assert cosine > 0.95, (name, float(cosine))  # bf16 keeps 8 mantissa bits: close, not equal
    tf32 = gs.explainer("saliency", model, precision="tf32")(x)
    assert tf32.settings["precision"] == "tf32"
    torch.testing.assert_close(tf32.maps, exact["saliency"].maps)  # the CPU has no TF32


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
@pytest.mark.parametrize("command", ["explain", "profile", "evaluate"])
def test_an_absent_device_is_one_line(tmp_path, command):
    args = {"explain": ["explain", "--example", "digits"],
            "profile": ["profile", "--model", "potholenet", "--data", "roads:2:task=pothole"],
            "evaluate": ["evaluate", "--model", "potholenet", "--data", "roads:2:task=pothole"]}[command]
    for device, says in (("cuda", "no CUDA device is available here"), ("cuda:3", "no CUDA device"),
                         ("mps", "MPS is not available"), ("tpu9", "not a device name")):
        result = CliRunner().invoke(app, [*args, "--device", device, "--out", str(tmp_path / device)])
        assert result.exit_code == 2 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / device).exists()
    result = CliRunner().invoke(app, [*args, "--precision", "fp64", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "--precision must be one of float32, tf32" in result.output
