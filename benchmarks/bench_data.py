"""Speed of the synthetic road-scene generator (spec: >= 500 images/s at 66x200 on one core).

Prints images/s for raw scenes (uint8 arrays) and for full Samples (torch tensors), measured
both in wall-clock time and in this process's CPU time (the fair number on a shared machine).
Usage: python benchmarks/bench_data.py [--n 1000]
"""
from __future__ import annotations

import argparse
import time

import torch

from gradsum.data import RoadScenes


def _rate(fn, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - w0), n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'size':>9} {'what':>8} {'wall img/s':>11} {'cpu img/s':>10}")
    for size, n in (((66, 200), args.n), ((128, 256), args.n // 4), ((224, 224), args.n // 4)):
        ds = RoadScenes(n, size=size, seed=0)
        ds.scene(0)  # warm-up: noise tiles, lazy imports
        for what, fn in (("scene", ds.scene), ("sample", ds.__getitem__)):
            wall, cpu = _rate(fn, n)
            print(f"{size[0]:>4}x{size[1]:<4} {what:>8} {wall:>11.0f} {cpu:>10.0f}")
    ds = RoadScenes(args.n, seed=0)
    wall, cpu = _rate(ds.__getitem__, args.n)
    status = "OK" if cpu >= 500 else "BELOW TARGET"
    print(f"66x200 samples: {cpu:.0f} images/s per CPU core (target >= 500): {status}")


if __name__ == "__main__":
    main()
