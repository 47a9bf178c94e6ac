"""Guided backprop of an intermediate neuron: gradsum's NeuronTarget against captum's
GuidedBackprop on the network truncated at that layer by hand, same batch, same targets.

ResNet-18 (random weights), CPU, neuron = layer3 output, one (channel, y, x) per image.
gradsum runs the whole model object and stops its forward after layer3 (a forward hook
that raises); captum gets an nn.Sequential of the modules up to layer3. Both are timed in
turns (medians, `timing.interleaved_medians`); the line printed is the ratio gradsum / captum
and the largest relative difference of the attributions.

    python benchmarks/bench_neuron_target.py                 # batch 4, 112x112, 3 repeats
    python benchmarks/bench_neuron_target.py --size 224 --batch 16
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn

import gradsum as gs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, what in (("--size", 112, "input side"), ("--batch", 4, "images per batch"),
                                ("--repeats", 3, "timed runs per side, medians reported")):
        parser.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    args = parser.parse_args()
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    for m in model.modules():  # captum hooks nn.ReLU modules; in-place ReLUs break its hooks
        if isinstance(m, nn.ReLU):
            m.inplace = False
    truncated = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                              model.layer1, model.layer2, model.layer3).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    with torch.no_grad():  # each image's most active unit of layer3 (a random one is often off: a zero map)
        act = truncated(x)
    flat = act.flatten(1).argmax(dim=1)
    side = act.shape[-1]
    chans, ys, xs = flat // (side * side), (flat // side) % side, flat % side
    target = gs.NeuronTarget("layer3", chans, ys, xs)
    ours = gs.explainer("guided-backprop", model)
    captum_targets = list(zip(chans.tolist(), ys.tolist(), xs.tolist(), strict=True))
    theirs = GuidedBackprop(truncated)

    def run_ours() -> torch.Tensor:
        return ours(x, target=target).input_maps

    def run_theirs() -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return theirs.attribute(x.clone().requires_grad_(), target=captum_targets).detach()

    a, b = run_ours(), run_theirs()
    diff = float((a - b).abs().max() / b.abs().max())
    t_ours, t_theirs = interleaved_medians([run_ours, run_theirs], args.repeats)
    print(f"resnet18 random weights, CPU threads={torch.get_num_threads()}, batch {args.batch} of "
          f"{args.size}x{args.size}, neuron = layer3[c, y, x] (each image's most active unit)")
    print(f"guided backprop of a neuron: gradsum {t_ours * 1000:.1f} ms, captum (truncated Sequential) "
          f"{t_theirs * 1000:.1f} ms, ratio gradsum/captum {t_ours / t_theirs:.2f}x, max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
