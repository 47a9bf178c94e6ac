"""Speed of the perturbation metrics, measured in one run (prints ratios).

1. deletion + insertion for 256 images (3x32x32, a 3-conv CNN with 16/32/16 filters and a
   64-unit dense head, step = W = 32 -> 33 points per curve): time of
   `gradsum.metrics.deletion_insertion` divided by the time of the bare batched forward
   passes it needs (the same number of inputs through the same engine, with inputs that
   cost nothing to build). Target: <= 1.2.
2. ROAD imputation for a batch: `gradsum.metrics.noisy_linear_impute` on 16 images
   (3x32x32) x 9 MoRF percentages (10..90%) at once (--road-lerf adds the 9 LeRF masks,
   --road-size / --road-images change the batch), versus pytorch-grad-cam's
   `NoisyLinearImputer` (per-image scipy sparse solve, exact) on the same (image, mask)
   pairs, both without noise; ours at its default tolerance (relative residual 1e-4; the
   printed max |difference| to the exact solve stays far below ROAD's 0.01 noise).
   The two sides are timed alternately (peer, ours, peer, ours, ...) and the ratio is that
   of the median CPU times; the range of the per-run ratios is printed. Target: ours >= 5x.

Both run single-threaded (torch.set_num_threads(1)): the scipy solve is single-threaded and
the shared machine this runs on has 2 busy cores. Ratios use this process's CPU time
(time.process_time, the two sides interleaved; deletion/insertion: best of the repeats,
ROAD: medians); wall times are printed too.
Run: `.venv/bin/python benchmarks/bench_metrics.py` (`--only road --road-size 112 --road-lerf`).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.batching import batched_scores
from gradsum.metrics import deletion_insertion, noisy_linear_impute


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),
    ).eval()


def bench_deletion_insertion(n_images: int = 256, size: int = 32, repeats: int = 2) -> float:
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_images, 3, size, size, generator=g)
    maps = torch.rand(n_images, size, size, generator=g)
    points = size * size // size + 1  # step = W
    n_inputs = n_images * 2 * (points - 1) + n_images  # perturbed inputs + the clean pass
    buffer = x[:64].clone()

    def bare() -> None:
        batched_scores(model, n_inputs, lambda s, e: buffer[: e - s], lambda out, s, e: out[:, 0])

    def ours() -> None:
        deletion_insertion(model, x, maps)

    t_bare, t_ours = [], []
    for _ in range(repeats):  # interleaved, best of `repeats` each (the machine is shared)
        t_bare.append(_timed(bare))
        t_ours.append(_timed(ours))
    (cpu_b, wall_b), (cpu_o, wall_o) = min(t_bare), min(t_ours)
    ratio = cpu_o / cpu_b
    print(
        f"deletion+insertion: {n_images} images 3x{size}x{size}, {points} points/curve, "
        f"{n_inputs} forward passes: gradsum {cpu_o:.2f}s CPU ({wall_o:.2f}s wall) vs bare forwards "
        f"{cpu_b:.2f}s CPU ({wall_b:.2f}s wall) -> ratio {ratio:.3f} (target <= 1.2; wall ratio {wall_o / wall_b:.3f})"
    )
    return ratio


def _road_masks(n_images: int, size: int, percentages: list[int], lerf: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [0,1] images and ROAD removal masks ordered by a smooth random map (blobs, like
    a CAM): MoRF removes the top p%, LeRF the bottom p%. Returns (n*P,3,H,W) images and
    (n*P,H,W) masks, P = len(percentages) x (2 if lerf else 1)."""
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(n_images, 3, size, size, generator=g)
    smooth = F.interpolate(torch.rand(n_images, 1, 4, 4, generator=g), size=(size, size), mode="bilinear")
    order = smooth.reshape(n_images, -1).argsort(dim=1, descending=True)
    masks = []
    for ranking in [order, order.flip(1)] if lerf else [order]:
        for p in percentages:
            k = round(p / 100 * size * size)
            m = torch.zeros(n_images, size * size, dtype=torch.bool)
            m.scatter_(1, ranking[:, :k], True)
            masks.append(m.reshape(n_images, size, size))
    removed = torch.stack(masks, dim=1).reshape(-1, size, size)  # (n*P,H,W)
    return imgs.repeat_interleave(len(masks), dim=0), removed


def _median(values: list[float]) -> float:
    s = sorted(values)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def bench_road(n_images: int = 16, size: int = 32, repeats: int = 7, lerf: bool = False, tol: float | None = None) -> float:
    """Ours (default tolerance unless `tol`) vs pytorch-grad-cam, timings interleaved (peer,
    ours, peer, ours, ...), medians of `repeats`; returns the ratio of the median CPU times."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    percentages = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    imgs, removed = _road_masks(n_images, size, percentages, lerf)
    imputer = NoisyLinearImputer(noise=0.0)
    kwargs = {} if tol is None else {"tol": tol}
    out: dict[str, torch.Tensor] = {}

    def reference() -> None:
        out["ref"] = torch.stack([imputer(imgs[i], (~removed[i]).float()) for i in range(imgs.shape[0])])

    def ours() -> None:
        out["ours"] = noisy_linear_impute(imgs, removed, noise=0.0, **kwargs)

    ours()  # warm-up (first-call allocations), not timed
    t_ref, t_ours = [], []
    for _ in range(repeats):  # interleaved: both sides see the same machine load
        t_ref.append(_timed(reference))
        t_ours.append(_timed(ours))
    err = float((out["ours"] - out["ref"]).abs().max())
    cpu_r, wall_r = _median([t[0] for t in t_ref]), _median([t[1] for t in t_ref])
    cpu_o, wall_o = _median([t[0] for t in t_ours]), _median([t[1] for t in t_ours])
    paired = sorted(r[0] / o[0] for r, o in zip(t_ref, t_ours, strict=True))
    ratio = cpu_r / cpu_o
    orders = "MoRF+LeRF" if lerf else "MoRF"
    print(
        f"ROAD imputation: {imgs.shape[0]} (image, mask) pairs 3x{size}x{size} ({orders} 10..90%), "
        f"medians of {repeats} interleaved runs: pytorch-grad-cam per-image spsolve {cpu_r:.3f}s CPU "
        f"({wall_r:.3f}s wall) vs gradsum batched multigrid-CG (tol {tol if tol is not None else 'default'}) "
        f"{cpu_o:.3f}s CPU ({wall_o:.3f}s wall) -> {ratio:.1f}x faster (target >= 5x; wall {wall_r / wall_o:.1f}x; "
        f"per-run ratios {paired[0]:.1f}x..{paired[-1]:.1f}x); max |difference| to the exact solve {err:.1e}"
    )
    return ratio


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["deletion", "road"], help="run one benchmark")
    parser.add_argument("--road-images", type=int, default=16)
    parser.add_argument("--road-size", type=int, default=32)
    parser.add_argument("--road-repeats", type=int, default=7)
    parser.add_argument("--road-lerf", action="store_true", help="MoRF and LeRF masks (18 per image)")
    parser.add_argument("--road-tol", type=float, default=None, help="our solver tolerance (default: its default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only != "road":
        bench_deletion_insertion()
    if args.only != "deletion":
        bench_road(args.road_images, args.road_size, args.road_repeats, args.road_lerf, args.road_tol)


if __name__ == "__main__":
    main()
