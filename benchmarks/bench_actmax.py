"""Activation maximisation: the default preset vs plain projected gradient ascent (issue 16).

For every channel of a random 3->8->8 CNN (32x32) and of PotholeNet's first and last conv
stages (random seeded weights), runs gs.features.maximize with the default preset and
transforms off, and an independent plain projected ascent x <- clip(x + lr g/||g||, 0, 1)
(RMS step 0.04 per pixel) from the same start with the same steps; prints per net the ratio
default/plain of the final channel means (min, mean over channels), the same ratio for the
"lucent" preset, and the seconds of each. One run.

    .venv/bin/python benchmarks/bench_actmax.py [--steps N] [--size H W] [--threads T] [--nets cnn act1 act3]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch import nn

import gradsum as gs
import gradsum.features as gf


class _Stop(Exception):
    pass


def _acts(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    out: list[torch.Tensor] = []

    def stop(m: nn.Module, a: tuple, o: torch.Tensor) -> None:
        out.append(o)
        raise _Stop

    handle = dict(model.named_modules())[layer].register_forward_hook(stop)
    try:
        with contextlib.suppress(_Stop):
            model(x)
    finally:
        handle.remove()
    return out[0].mean(dim=(2, 3))


def plain(model: nn.Module, layer: str, chans: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    lr = 0.04 * start[0].numel() ** 0.5
    x, idx = start.clone(), torch.arange(len(chans))
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_acts(model, layer, x)[idx, chans].sum(), x)
        x = (x + lr * g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)).clamp(0, 1)
    return x.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, nargs=2, default=(48, 96), help="PotholeNet image size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", nargs="+", default=["cnn", "act1", "act3"], choices=["cnn", "act1", "act3"],
                    help="which cases to run (potholenet act1 / act3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()
    torch.manual_seed(1)
    pothole = gs.models.build("potholenet").eval()
    size = tuple(args.size)
    cases = {"cnn": ("cnn 3->8->8", cnn, "3", 8, (32, 32)),
             "act1": ("potholenet", pothole, "features.act1", 64, size),
             "act3": ("potholenet", pothole, "features.act3", 16, size)}
    for name, model, layer, n, hw in (cases[key] for key in args.nets):
        chans = torch.arange(n)
        start = 0.5 + (torch.rand(n, 3, *hw, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.125
        t = time.perf_counter()
        x = plain(model, layer, chans, start, args.steps)
        with torch.no_grad():
            ref = _acts(model, layer, x)[chans, chans]
        t_plain = time.perf_counter() - t
        line = f"{name:12s} {layer:14s} {hw[0]}x{hw[1]} {n:2d} ch, {args.steps} steps: plain {t_plain:6.1f}s"
        for preset in ("pixel", "lucent"):
            t = time.perf_counter()
            res = gf.maximize(model, gf.channel(layer, chans.tolist()), image_size=hw, preset=preset, transforms=False,
                              steps=args.steps, init=start if preset == "pixel" else None)
            secs = time.perf_counter() - t
            alive = ref > 0
            ratio = res.values[alive] / ref[alive]
            line += (f" | {preset}: ratio min {float(ratio.min()):.2f} mean {float(ratio.mean()):.2f}"
                     f" ({int((~alive).sum())} dead for plain, {int((res.values[~alive] > 0).sum())} revived) {secs:6.1f}s")
        print(line, flush=True)


if __name__ == "__main__":
    main()
