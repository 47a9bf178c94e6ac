"""Per-image costs of a GradSUM dataset job outside the model passes, on this machine's CPU:
decoding a Cityscapes-size frame, resizing it, the GradSUM bookkeeping (label sums), and
writing its rows to a shard. With the passes' rate on a GPU they say where the bottleneck of
N GPUs is and how many data workers keep one busy (README, "Scaling").

    python benchmarks/bench_pipeline.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gradsum as gs
from gradsum.data._files import read_rgb
from gradsum.data.transforms import fit_image
from gradsum.run import write_table
from gradsum.semantic import CITYSCAPES, LabelIndex, label_sums, profile_rows


def per_item(run, n: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - start) / n


def main() -> None:
    torch.set_num_threads(1)  # one data worker = one core
    import skimage.data

    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((2048, 1024), Image.BILINEAR))
    folder = Path(tempfile.mkdtemp())
    png, jpg = folder / "frame.png", folder / "frame.jpg"
    Image.fromarray(photo).save(png)
    Image.fromarray(photo).save(jpg, quality=90)
    frame = read_rgb(png)
    seg = torch.from_numpy(np.random.default_rng(0).integers(0, 34, (256, 512))).long()
    maps = torch.rand(32, 256, 512)
    segs = seg.expand(32, -1, -1).contiguous()
    index = LabelIndex.of(CITYSCAPES)
    sums = label_sums(maps, segs, index, normalize="relu-minmax")
    rows = profile_rows(sums, index, [f"img{i}" for i in range(32)])

    def write() -> None:
        write_table(folder / "shard.parquet", rows)

    costs = {
        "decode 2048x1024 PNG": per_item(lambda: read_rgb(png), 5),
        "decode 2048x1024 JPEG": per_item(lambda: read_rgb(jpg), 5),
        "resize to 256x512 (letterbox)": per_item(lambda: fit_image(frame, (256, 512)), 5),
        "GradSUM bookkeeping at 256x512 (per image, batch 32)": per_item(
            lambda: label_sums(maps, segs, index, normalize="relu-minmax"), 5) / 32,
        "write the rows to a shard (per image, 32 images)": per_item(write, 5) / 32,
    }
    print(f"# per image, one CPU core ({torch.get_num_threads()} thread), gradsum {gs.__version__}")
    for what, seconds in costs.items():
        print(f"{what:<55} {1000 * seconds:8.2f} ms   {1 / seconds:8.1f} images/s per core")


if __name__ == "__main__":
    main()
