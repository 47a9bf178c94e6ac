"""Every method on a GPU against the CPU, under the default precision (float32: TF32 off).

    python benchmarks/bench_devices.py                 # cuda vs cpu: one line per method
    python benchmarks/bench_devices.py --device cpu    # the script itself, on a machine without a GPU

Prints, per method, the largest |map_device - map_cpu| relative to max |map_cpu| on a random
ResNet-18 (64x64, 2 images) and on a small CNN (the smallest maps), and whether it is within
1e-4 (the precision policy's promise; extremal perturbation, an iterative optimisation,
amplifies rounding and is reported, not promised). tests/methods/test_cuda_agreement.py runs
the same comparison as a test on machines with CUDA.
"""
from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

import gradsum as gs
from gradsum.core.devices import resolve_device

#: options that keep every method quick (they change nothing about device agreement)
FAST = {
    "rise": {"n_masks": 256, "batch_size": 64},
    "occlusion": {"window": 16, "stride": 16},
    "lime": {"n_samples": 64},
    "kernelshap": {"n_samples": 64},
    "smoothgrad": {"n_samples": 8},
    "integrated-gradients": {"steps": 16},
    "extremal": {"iterations": 40},
    "ablationcam": {"batch_size": 64},
    "scorecam": {"batch_size": 64},
}
#: methods whose agreement is measured but not promised to 1e-4
ITERATIVE = {"extremal"}
#: transformer-only methods (no attention in a CNN)
SKIP = {"attention", "attention-rollout", "gae", "legrad"}


def models() -> dict[str, tuple[nn.Module, str, torch.Tensor]]:
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10).eval()
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return {"resnet18": (resnet, "layer4", x), "small-cnn": (small, "4", x[:, :, :32, :32].contiguous())}


def compare(device: str, methods: list[str] | None = None) -> list[dict]:
    """One row per model x method: relative max difference of the device's map to the CPU's."""
    rows = []
    for model_name, (model, layer, x) in models().items():
        moved = copy.deepcopy(model).to(device)
        for name in methods or [m for m in gs.available_methods() if m not in SKIP]:
            options = FAST.get(name, {})
            cpu = gs.explainer(name, model, layer=layer, **options)(x, 0).maps
            other = gs.explainer(name, moved, layer=layer, **options)(x.to(device), 0).maps
            scale = float(cpu.abs().max()) or 1.0
            rows.append({"model": model_name, "method": name, "device": str(other.device),
                         "relative": float((other.cpu() - cpu).abs().max()) / scale})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every CNN method)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}: maps against the CPU, default precision (float32, TF32 off)")
    print(f"{'model':<10} {'method':<22} {'max |diff| / max |cpu|':>24}  within 1e-4")
    for row in compare(str(device), args.methods.split(",") if args.methods else None):
        ok = "yes" if row["relative"] <= 1e-4 else ("(iterative)" if row["method"] in ITERATIVE else "NO")
        print(f"{row['model']:<10} {row['method']:<22} {row['relative']:>24.2e}  {ok}")


if __name__ == "__main__":
    main()
