"""CAM and gradient methods: gradsum against pytorch-grad-cam and captum, same model, input,
targets and machine, measured in one run. Prints each method's median seconds and the ratio
ours / peer (< 1 means we are faster), plus Grad-CAM against one plain forward pass and
gs.explain with six CAM methods against one Grad-CAM.

    python benchmarks/bench_methods.py                # resnet50, 224x224, batch 1 and 8
    python benchmarks/bench_methods.py --batch 1 --repeats 3 --model resnet18
"""
from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
import torchvision
from timing import interleaved_medians

import gradsum as gs

CAM_PEERS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
}
SIX_CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "gradcam-elementwise"]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return interleaved_medians([fn], repeats)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--sg-samples", type=int, default=8)
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--methods", default="all", help="comma list of methods to time (default all)")
    args = parser.parse_args()

    torch.manual_seed(0)
    ours_model = getattr(torchvision.models, args.model)(weights=None).eval()
    peer_model = copy.deepcopy(ours_model)  # peers leave hooks on their model; keep ours clean
    layer = dict(peer_model.named_modules())[args.layer]
    print(f"# {args.model} {args.size}x{args.size}, CPU threads={torch.get_num_threads()}, repeats={args.repeats}")

    for batch in args.batch:
        bench_batch(args, batch, ours_model, peer_model, layer)


def bench_batch(args: argparse.Namespace, batch: int, ours_model: torch.nn.Module, peer_model: torch.nn.Module,
                layer: torch.nn.Module) -> None:
    import captum.attr as ca
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(batch))
    targets = [i * 7 % 1000 for i in range(batch)]
    peer_targets = [ClassifierOutputTarget(t) for t in targets]
    rows: list[tuple[str, float, float | None, str]] = []

    with torch.no_grad():
        forward = median_seconds(lambda: ours_model(x), args.repeats)
        forward_nhwc = median_seconds(lambda: ours_model(x.contiguous(memory_format=torch.channels_last)), args.repeats)

    wanted = None if args.methods == "all" else set(args.methods.split(","))
    for name, peer_cls in CAM_PEERS.items():
        if wanted is not None and name not in wanted:
            continue
        ours = gs.explainer(name, ours_model, layer=args.layer)
        peer = getattr(pgc, peer_cls)(model=peer_model, target_layers=[layer])
        t_ours, t_peer = interleaved_medians([lambda ours=ours: ours(x, target=targets),
                                              lambda peer=peer: peer(input_tensor=x, targets=peer_targets)],
                                             args.repeats)
        peer.activations_and_grads.release()
        rows.append((name, t_ours, t_peer, "pytorch-grad-cam"))

    gradient_cases = {
        "saliency": (gs.explainer("saliency", ours_model),
                     lambda: ca.Saliency(peer_model).attribute(x, target=targets, abs=True)),
        "inputxgradient": (gs.explainer("inputxgradient", ours_model),
                           lambda: ca.InputXGradient(peer_model).attribute(x, target=targets)),
        "guided-backprop": (gs.explainer("guided-backprop", ours_model),
                            lambda: ca.GuidedBackprop(peer_model).attribute(x, target=targets)),
        "integrated-gradients": (
            gs.explainer("integrated-gradients", ours_model, steps=args.ig_steps),
            lambda: ca.IntegratedGradients(peer_model).attribute(x, target=targets, n_steps=args.ig_steps,
                                                                 internal_batch_size=64)),
        "smoothgrad": (
            gs.explainer("smoothgrad", ours_model, n_samples=args.sg_samples),
            lambda: ca.NoiseTunnel(ca.Saliency(peer_model)).attribute(
                x, nt_type="smoothgrad", nt_samples=args.sg_samples, stdevs=0.15, target=targets,
                nt_samples_batch_size=64)),
    }
    for name, (ours, peer_call) in gradient_cases.items():
        if wanted is not None and name not in wanted:
            continue
        t_ours, t_peer = interleaved_medians([lambda ours=ours: ours(x, target=targets), peer_call], args.repeats)
        rows.append((name, t_ours, t_peer, "captum"))

    gradcam = next((r[1] for r in rows if r[0] == "gradcam"), None)

    print(f"\n## batch {batch}: one plain forward pass = {forward:.3f} s "
          f"({forward_nhwc:.3f} s with channels-last input, the layout gradsum uses on CPU)")
    print("| method | gradsum s | peer s | ratio | peer |")
    print("|---|---:|---:|---:|---|")
    for name, t_ours, t_peer, peer_name in rows:
        ratio = f"{t_ours / t_peer:.2f}" if t_peer else "-"
        print(f"| {name} | {t_ours:.3f} | {t_peer:.3f} | {ratio} | {peer_name} |")
    if gradcam is not None:
        six = median_seconds(lambda: gs.explain(ours_model, x, methods=SIX_CAMS, layer=args.layer, target=targets),
                             args.repeats)
        print(f"\nGrad-CAM ({args.layer}) / plain forward = {gradcam / forward:.2f}  (target <= 1.5); "
              f"/ channels-last forward = {gradcam / forward_nhwc:.2f}")
        print(f"gs.explain(6 CAM methods) / one Grad-CAM = {six / gradcam:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
