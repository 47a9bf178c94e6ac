"""GradSUM throughput: profiling N road scenes with Grad-CAM against the bare passes it needs
(one forward with the layer captured + one partial backward per batch), measured in one run.
The scenes are generated once beforehand, so data generation is not counted on either side.

    python benchmarks/bench_gradsum.py              # 1,000 scenes, PilotNet, 66x200
    python benchmarks/bench_gradsum.py --n 300 --repeats 1
    python benchmarks/bench_gradsum.py --keep-memory  # with the allocator setting of the gradsum command
    python benchmarks/bench_gradsum.py --device cuda --n 4096 --batch-size 128           # PilotNet 66x200 on a GPU
    python benchmarks/bench_gradsum.py --device cuda --model torchvision:resnet50 --size 256x512 --n 512 --batch-size 32
"""
from __future__ import annotations

import argparse

import torch
from timing import interleaved_medians

import gradsum as gs
from gradsum.core.devices import resolve_device
from gradsum.core.layers import resolve_layers
from gradsum.core.layout import prefers_channels_last
from gradsum.core.precision import precision_scope
from gradsum.core.probe import Probe, preserved_state
from gradsum.data.samples import batches_by_size, collate


class InMemory(torch.utils.data.Dataset):
    def __init__(self, samples, label_table):
        self.samples = samples
        self.label_table = label_table

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def bare_passes(model, dataset, layer, batch_size, device):
    """What Grad-CAM needs and nothing else: forward with the probe, target, autograd.grad."""
    target = gs.core.targets.resolve_target(None)
    with preserved_state(model), precision_scope("float32"):
        for _, batch in batches_by_size(dataset, range(len(dataset)), batch_size, pin_memory=device.type == "cuda"):
            images = batch.images.to(device, non_blocking=True)
            if prefers_channels_last(model, images):  # the same input layout as gs.explain uses
                images = images.contiguous(memory_format=torch.channels_last)
            with Probe(model, resolve_layers(model, layer)) as probe:
                out = model(images)
            scores = target.bind(out)(out)
            probe.gradients(scores, [layer])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", default="pilotnet", help="pilotnet | potholenet | digitsnet | torchvision:NAME")
    parser.add_argument("--size", default="66x200", help="scene size HxW")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--keep-memory", action="store_true",
                        help="keep freed memory as the gradsum command does (gradsum.core.memory; both sides)")
    args = parser.parse_args()
    if args.keep_memory:
        from gradsum.core.memory import keep_freed_memory

        print(f"# keep_freed_memory applied: {keep_freed_memory()}")

    device = resolve_device(args.device)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    ds = gs.data.RoadScenes(args.n, size=size, seed=0, task="steering")
    data = InMemory([ds[i] for i in range(len(ds))], ds.label_table)
    collate([data[0]])
    torch.manual_seed(0)
    model = gs.models.build(args.model).to(device)
    layer = gs.models.default_layer_for(model)

    def finish():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_bare():
        bare_passes(model, data, layer, args.batch_size, device)
        finish()

    def run_full():
        gs.gradsum(model, data, method="gradcam", layer=layer, batch_size=args.batch_size, device=device)
        finish()

    bare, full = interleaved_medians([run_bare, run_full], args.repeats)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# GradSUM over {args.n} road scenes ({args.size}, {args.model}, Grad-CAM on {layer}), batch "
          f"{args.batch_size}, {where}")
    print(f"bare forward + partial backward: {bare:.2f} s ({args.n / bare:.0f} images/s)")
    print(f"gs.gradsum (explain + profile tables): {full:.2f} s ({args.n / full:.0f} images/s)")
    target = 1.15 if device.type == "cuda" else 1.2
    print(f"ratio gradsum / bare passes = {full / bare:.2f}  (target <= {target})")


if __name__ == "__main__":
    main()
