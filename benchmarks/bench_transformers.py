"""Attention methods on a vision transformer: gradsum against one plain forward pass and against
the peer libraries, same model, input, targets and machine, measured in one run (interleaved
medians). Prints each comparison's median seconds and the ratio ours / reference.

    python benchmarks/bench_transformers.py                 # torchvision vit_b_16, 224x224, batch 4
    python benchmarks/bench_transformers.py --batch 2 --repeats 3 --threads 1

Rows (targets from issue 14):
- attention rollout / one plain forward (torch.no_grad, the model's own fused path): <= 1.1
- GAE / pytorch-grad-cam GradCAM on encoder.layers[-1].ln_1 with its documented ViT
  reshape_transform (drop the class token, reshape the 14x14 grid): <= 1.2
- LeGrad (all blocks) / torchcam LeGrad on the same blocks: <= 1.0
- Grad-CAM on the token layer (gradsum's layout adapter) / the same pytorch-grad-cam GradCAM
"""
from __future__ import annotations

import argparse
import copy

import torch
import torchvision
from timing import interleaved_medians

import gradsum as gs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import LeGrad as PeerLeGrad

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None, image_size=args.size).eval()
    with torch.no_grad():  # torchvision zero-initialises the head; give the gradients something to carry
        model.heads.head.weight.normal_(0, 0.02)
    peer_model = copy.deepcopy(model)  # peers leave hooks on their model while they live
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    targets = [i * 7 % 1000 for i in range(args.batch)]
    grid = args.size // model.patch_size
    print(f"# {args.model} {args.size}x{args.size}, batch {args.batch}, CPU threads={torch.get_num_threads()}, "
          f"repeats={args.repeats}, random weights")

    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:  # pytorch-grad-cam's ViT recipe
        result = tensor[:, 1:, :].reshape(tensor.size(0), grid, grid, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    def plain_forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    ours_gradcam = gs.explainer("gradcam", model)  # auto: encoder.layers[-1].ln_1, tokens laid out by core/tokens
    rollout = gs.explainer("attention-rollout", model)
    gae = gs.explainer("gae", model)
    legrad = gs.explainer("legrad", model)
    gradcam = pgc.GradCAM(model=peer_model, target_layers=[peer_model.encoder.layers[-1].ln_1],
                          reshape_transform=reshape_transform)
    peer_targets = [ClassifierOutputTarget(t) for t in targets]

    def torchcam_legrad() -> torch.Tensor:  # hooks on only while it runs (gradsum's do the same)
        with PeerLeGrad(peer_model, list(peer_model.encoder.layers)) as extractor:
            peer_model(x)
            return extractor(targets)[0]

    fns = {
        "forward": plain_forward,
        "rollout": lambda: rollout(x, target=targets),
        "gae": lambda: gae(x, target=targets),
        "gradcam": lambda: gradcam(input_tensor=x, targets=peer_targets),
        "ours-gradcam": lambda: ours_gradcam(x, target=targets),
        "legrad": lambda: legrad(x, target=targets),
        "torchcam-legrad": torchcam_legrad,
    }
    times = dict(zip(fns, interleaved_medians(list(fns.values()), args.repeats), strict=True))
    gradcam.activations_and_grads.release()

    rows = [
        ("attention rollout / one plain forward", times["rollout"], times["forward"], 1.1),
        ("GAE / pytorch-grad-cam GradCAM (ln_1 + reshape_transform)", times["gae"], times["gradcam"], 1.2),
        ("LeGrad / torchcam LeGrad (all blocks)", times["legrad"], times["torchcam-legrad"], 1.0),
        ("Grad-CAM on the token layer / pytorch-grad-cam GradCAM (same layer, reshape)", times["ours-gradcam"],
         times["gradcam"], 1.0),
    ]
    print("| comparison | gradsum s | reference s | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for name, ours, reference, target in rows:
        print(f"| {name} | {ours:.3f} | {reference:.3f} | {ours / reference:.2f} | <= {target} |")


if __name__ == "__main__":
    main()
