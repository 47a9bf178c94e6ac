"""Perturbation family speed against pytorch-grad-cam, and the RISE / SISE / Ada-SISE table.

ResNet-50 (random weights), CPU, one image, all ratios measured in the same run:

1. scorecam vs pytorch-grad-cam ScoreCAM on the same layer (target: ratio <= 1.0);
2. ablationcam on layer4 (fx tail execution) vs pytorch-grad-cam AblationCAM (target: the
   peer is >= 10x slower). The peer runs full forwards for every ablated channel; with
   --peer-ablation-ratio r < 1 it ablates 2*int(r*K) channels and its time is extrapolated
   linearly to all K channels (its cost is one full forward per channel);
3. RISE with N masks vs N bare batched forwards of the model (target: ratio <= 1.15);
4. a RISE / SISE / Ada-SISE table: seconds and average masks per block, like the Ada-SISE
   paper's complexity table.

Defaults finish in a few minutes on a shared 2-core machine (112x112 input, small layers);
the paper-scale run is:
    python benchmarks/bench_perturbation.py --size 224 --scorecam-layer layer4 \\
        --peer-ablation-ratio 1 --rise-masks 4000 --table-size 224
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torchvision

import gradsum as gs
from gradsum.core.batching import batched_scores


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=_env_int("BENCH_SIZE", 112), help="input side (default 112)")
    p.add_argument("--scorecam-layer", default=os.environ.get("BENCH_SCORECAM_LAYER", "relu"),
                   help="layer for the Score-CAM comparison (default relu: 64 channels)")
    p.add_argument("--peer-ablation-ratio", type=float, default=float(os.environ.get("BENCH_PEER_ABLATION", 1 / 32)),
                   help="fraction of layer4 channels the peer ablates before extrapolating (1 = all)")
    p.add_argument("--rise-masks", type=int, default=_env_int("BENCH_RISE_MASKS", 128))
    p.add_argument("--table-size", type=int, default=_env_int("BENCH_TABLE_SIZE", 48),
                   help="input side for the RISE/SISE/Ada-SISE table (masks per block do not depend on it)")
    p.add_argument("--batch-size", type=int, default=_env_int("BENCH_BATCH", 32))
    p.add_argument("--repeats", type=int, default=_env_int("BENCH_REPEATS", 3),
                   help="Score-CAM and RISE timings: best of this many runs (the machine may be shared)")
    p.add_argument("--skip-peer", action="store_true", help="only our methods (no pytorch-grad-cam)")
    p.add_argument("--skip-table", action="store_true", help="skip the RISE/SISE/Ada-SISE table")
    return p.parse_args()


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _best(fn, repeats: int):
    """(result, fastest wall time of `repeats` runs): the least disturbed by other load."""
    runs = [_timed(fn) for _ in range(max(1, repeats))]
    return runs[0][0], min(t for _, t in runs)


def main() -> None:
    args = _parse()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        target = int(model(x).argmax())
        model(x.expand(args.batch_size, -1, -1, -1))  # warm-up: allocator and kernels, outside all timings
    print(f"resnet50 random weights, CPU threads={torch.get_num_threads()}, input {args.size}x{args.size}, "
          f"target class {target}, batch_size={args.batch_size}")
    if not args.skip_peer:
        from pytorch_grad_cam import AblationCAM as PeerAblation
        from pytorch_grad_cam import ScoreCAM as PeerScore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer_targets = [ClassifierOutputTarget(target)]

    # 1. Score-CAM
    layer = args.scorecam_layer
    ours = gs.explainer("scorecam", model, layer=layer, batch_size=args.batch_size)
    attr, t_ours = _best(lambda: ours(x, target=target), args.repeats)
    print(f"\n[scorecam] layer {layer}: {attr.cost.masks} masked forwards, ours {t_ours:.2f}s (best of {args.repeats})")
    if not args.skip_peer:
        peer_model = copy.deepcopy(model)
        cam = PeerScore(model=peer_model, target_layers=[dict(peer_model.named_modules())[layer]])
        cam.batch_size = args.batch_size
        _, t_peer = _best(lambda: cam(input_tensor=x, targets=peer_targets), args.repeats)
        print(f"[scorecam] pytorch-grad-cam {t_peer:.2f}s  ratio ours/peer = {t_ours / t_peer:.2f} (target <= 1.0)")

    # 2. Ablation-CAM on layer4
    ours = gs.explainer("ablationcam", model, layer="layer4", batch_size=args.batch_size)
    attr, t_ours = _timed(lambda: ours(x, target=target))
    channels = 2048
    print(f"\n[ablationcam] layer4: {attr.cost.masks} ablated channels, tail={attr.settings['tail']['layer4']}, "
          f"ours {t_ours:.2f}s")
    if not args.skip_peer:
        peer_model = copy.deepcopy(model)
        cam = PeerAblation(model=peer_model, target_layers=[peer_model.layer4], batch_size=args.batch_size,
                           ratio_channels_to_ablate=args.peer_ablation_ratio)
        _, t_peer = _timed(lambda: cam(input_tensor=x, targets=peer_targets))
        ablated = channels if args.peer_ablation_ratio >= 1 else 2 * int(channels * args.peer_ablation_ratio)
        full = t_peer * channels / ablated
        note = "" if ablated == channels else f" (measured {t_peer:.2f}s for {ablated} channels, extrapolated)"
        print(f"[ablationcam] pytorch-grad-cam {full:.2f}s for {channels} channels{note}; "
              f"speed-up = {full / t_ours:.1f}x (target >= 10x)")

    # 3. RISE engine overhead vs bare batched forwards
    n = args.rise_masks
    rise = gs.explainer("rise", model, n_masks=n, batch_size=args.batch_size)
    rise.masks((args.size, args.size))  # draw and cache the masks outside the timing
    _, t_rise = _best(lambda: rise(x, target=target), args.repeats)
    inputs = x.expand(args.batch_size, -1, -1, -1).contiguous()

    def bare() -> torch.Tensor:
        return batched_scores(model, n, lambda s, e: inputs[: e - s], lambda out, s, e: out[:, target],
                              batch_size=args.batch_size)

    _, t_bare = _best(bare, args.repeats)
    print(f"\n[rise] {n} masks: {t_rise:.2f}s; {n} bare batched forwards: {t_bare:.2f}s; "
          f"ratio = {t_rise / t_bare:.3f} (target <= 1.15; best of {args.repeats})")

    # 4. RISE / SISE / Ada-SISE table
    if args.skip_table:
        return
    xt = torch.rand(1, 3, args.table_size, args.table_size, generator=torch.Generator().manual_seed(1))
    rows = []
    for name, options in (("rise", {"n_masks": n}), ("sise", {}), ("adasise", {})):
        exp = gs.explainer(name, model, batch_size=args.batch_size, **options)
        attr, seconds = _timed(lambda exp=exp: exp(xt, target=target))
        rows.append((name, seconds, attr.cost.masks_per_block, attr.cost.masks))
    blocks = list(rows[1][2])
    print(f"\n[table] input {args.table_size}x{args.table_size}, average masks per block (one image)")
    header = f"{'method':<9}{'seconds':>9}" + "".join(f"{b:>9}" for b in blocks) + f"{'total':>9}"
    print(header)
    for name, seconds, per_block, total in rows:
        cells = "".join(f"{per_block.get(b, 'N/A'):>9}" for b in blocks)
        print(f"{name:<9}{seconds:>9.2f}{cells}{total:>9}")
    sise_total, ada_total = rows[1][3], rows[2][3]
    print(f"Ada-SISE evaluates {ada_total / max(sise_total, 1):.0%} of SISE's masks "
          f"(paper, ResNet-50 on VOC: 1290 / 1946 = 66%)")


if __name__ == "__main__":
    main()
