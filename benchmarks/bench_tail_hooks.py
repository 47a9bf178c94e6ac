"""Ablation-CAM with foreign forward hooks on the model: is the fast tail execution kept?

ResNet-18 (random weights), CPU, one image, layer4 ablated channel by channel. Three timings,
interleaved (medians, `timing.interleaved_medians`):

1. no foreign hook (the fx split: only the layers after layer4 run per channel);
2. the hooks pytorch-grad-cam leaves on its target layer (`ActivationsAndGradients` on
   layer4[-1], never released) plus a user's forward hook on layer3; torch.fx alone cannot
   trace this model ("symbolically traced variables cannot be used as inputs to control
   flow"). Target: ratio hooked / clean <= 2 (the issue measured 2.1 s vs 0.022 s before);
3. for reference, tail="hook": a full forward per ablated channel.

    python benchmarks/bench_tail_hooks.py            # 112x112, 5 repeats
    python benchmarks/bench_tail_hooks.py --size 224 --repeats 9
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision

import gradsum as gs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians  # noqa: E402


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=112, help="input side (default 112)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (medians reported)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-full", action="store_true", help="skip the tail='hook' reference timing")
    return p.parse_args()


def _foreign_hooks(model: torch.nn.Module) -> list:
    """pytorch-grad-cam's hooks on layer4[-1] when it is installed (else an equivalent one with
    the same control flow on the output), and a user's hook on layer3. Returns the handles."""
    seen: list[tuple[int, ...]] = []
    handles = [model.layer3.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))]
    try:
        from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

        handles += ActivationsAndGradients(model, [model.layer4[-1]], None).handles
    except ImportError:
        def save_gradient(module, inputs, output):
            if not hasattr(output, "requires_grad") or not output.requires_grad:
                return None
            output.register_hook(lambda g: None)
            return None

        handles.append(model.layer4[-1].register_forward_hook(save_gradient))
    return handles


def main() -> None:
    args = _parse()
    torch.manual_seed(0)
    model, hooked_model = (torchvision.models.resnet18(weights=None).eval() for _ in range(2))
    hooked_model.load_state_dict(model.state_dict())  # the same network, one copy with foreign hooks
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"resnet18 random weights, CPU threads={torch.get_num_threads()}, input {args.size}x{args.size}, "
          f"layer4 (512 channels), batch_size={args.batch_size}")
    clean = gs.explainer("ablationcam", model, layer="layer4", batch_size=args.batch_size)
    handles = _foreign_hooks(hooked_model)
    try:
        torch.fx.symbolic_trace(hooked_model)
        print("note: torch.fx traced the hooked model by itself")
    except Exception as exc:  # the weakness being measured
        print(f"plain torch.fx on the hooked model: {type(exc).__name__}: {exc}")
    hooked = gs.explainer("ablationcam", hooked_model, layer="layer4", batch_size=args.batch_size)
    full = gs.explainer("ablationcam", model, layer="layer4", batch_size=args.batch_size, tail="hook")
    a, b = clean(x), hooked(x)
    paths = (a.settings["tail"]["layer4"], b.settings["tail"]["layer4"])
    diff = float((a.maps - b.maps).abs().max() / a.maps.abs().max().clamp_min(1e-12))
    fns = [lambda: clean(x), lambda: hooked(x)]
    if not args.skip_full:
        fns.append(lambda: full(x))
    times = interleaved_medians(fns, args.repeats)
    print(f"\n[ablationcam] {a.cost.masks} ablated channels; tail: clean={paths[0]}, hooked={paths[1]}; "
          f"max relative map difference {diff:.1e}")
    print(f"[ablationcam] no foreign hook {times[0]:.3f}s, with foreign hooks {times[1]:.3f}s "
          f"(median of {args.repeats}): ratio = {times[1] / times[0]:.2f} (target <= 2)")
    if not args.skip_full:
        print(f"[ablationcam] full forward per channel (tail='hook') {times[2]:.3f}s = {times[2] / times[0]:.1f}x")
    for h in handles:
        h.remove()


if __name__ == "__main__":
    main()
