"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images, values 0..16; from the
UCI "Optical Recognition of Handwritten Digits" set): the MNIST-like default, no download.

Images are scaled to [0, 1], upsampled bilinearly to `size` and repeated to 3 channels (white
digit on black, like MNIST). The train/test split is a seeded permutation stratified by class:
the same seed gives the same split; `test_fraction` of each class goes to "test".
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .samples import Sample

__all__ = ["Digits"]

_SPLITS = ("train", "test", "all")


class Digits(torch.utils.data.Dataset):
    """Args: split ("train", "test", "all"), size ((H, W) or int; default 28), test_fraction
    (0..1), seed (split permutation), transform. Target: int 0..9."""

    label_table = None
    classes = [str(i) for i in range(10)]

    def __init__(
        self,
        split: str = "train",
        size: int | tuple[int, int] = 28,
        test_fraction: float = 0.2,
        seed: int = 0,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        from sklearn.datasets import load_digits

        if split not in _SPLITS:
            raise ValueError(f"Digits split must be one of {_SPLITS}, got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        if isinstance(size, int):
            size = (size, size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"Digits size must be (H, W) >= 8, got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.split, self.seed, self.transform = split, seed, transform
        data = load_digits()
        images = np.asarray(data.images, dtype=np.float32) / 16.0
        labels = np.asarray(data.target, dtype=np.int64)
        rng = np.random.Generator(np.random.PCG64(seed))
        test = np.zeros(len(labels), dtype=bool)
        for c in range(10):
            idx = np.flatnonzero(labels == c)
            idx = idx[rng.permutation(len(idx))]
            test[idx[: int(round(len(idx) * test_fraction))]] = True
        keep = np.arange(len(labels)) if split == "all" else np.flatnonzero(test == (split == "test"))
        self.indices = keep  # indices into sklearn's order (stable ids)
        self._images = torch.from_numpy(images[keep])
        self._labels = labels[keep].tolist()

    @property
    def meta(self) -> dict[str, Any]:
        return {"dataset": "digits", "split": self.split, "size": list(self.size), "seed": self.seed}

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> Sample:
        n = len(self._labels)
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not -n <= index < n:
            raise IndexError(f"Digits index {index} out of range for {n} images")
        x = self._images[index][None, None]
        if self.size != (8, 8):
            x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        image = x[0].clamp_(0.0, 1.0).expand(3, -1, -1).contiguous()
        sample = Sample(image=image, id=f"digits-{int(self.indices[index]):04d}",
                        target=self._labels[index], meta={"split": self.split})  # fmt: skip
        return self.transform(sample) if self.transform is not None else sample
