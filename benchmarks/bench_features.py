"""Activation maximisation: 16 channels optimised as ONE batch vs one by one.

Trains a small CNN on sklearn's 8x8 digits (upsampled to 16x16 RGB) for a few seconds,
then times gs.features.maximize on 16 channels of its second conv block both ways, with
the same preset and steps, and prints the speed ratio (one-by-one time / batched time).

    .venv/bin/python benchmarks/bench_features.py [--steps N] [--threads T]
"""
from __future__ import annotations

import argparse
import time
from collections import OrderedDict

import torch
from torch import nn

import gradsum.features as gf


def train_digits(seed: int = 0) -> nn.Module:
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
    y = torch.tensor(d.target)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 16, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc=nn.Linear(32 * 4 * 4, 10),
    ))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = train_digits()
    channels = list(range(args.channels))
    print(f"activation maximisation of {len(channels)} channels of 'act2', 16x16 images, {args.steps} steps, "
          f"{args.threads} thread(s)")
    print(f"{'preset':8} {'batched s':>10} {'one-by-one s':>13} {'ratio':>7}  median objective batched / one-by-one")
    for preset in ("keras", "lucent"):
        kw = {"image_size": 16, "preset": preset, "steps": args.steps, "seed": 0}
        gf.maximize(model, gf.channel("act2", [0, 1]), **{**kw, "steps": 2})  # warm-up
        t0 = time.perf_counter()
        batched = gf.maximize(model, gf.channel("act2", channels), **kw)
        t1 = time.perf_counter()
        single = [gf.maximize(model, gf.channel("act2", [c]), **kw) for c in channels]
        t2 = time.perf_counter()
        single_values = torch.cat([r.values for r in single])
        print(f"{preset:8} {t1 - t0:10.3f} {t2 - t1:13.3f} {(t2 - t1) / (t1 - t0):7.1f}x  "
              f"{float(batched.values.median()):.3g} / {float(single_values.median()):.3g}")


if __name__ == "__main__":
    main()
