"""Tiny in-memory datasets (lists of Samples) that small models learn in seconds."""
from __future__ import annotations

import pytest
import torch

from gradsum.data.samples import Sample


def bars(n: int, seed: int, size: int = 24) -> list[Sample]:
    """Class 1: a bright vertical bar in the left half; class 0: in the right half."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = torch.rand(3, size, size, generator=g) * 0.3
        label = i % 2
        col = int(torch.randint(0, size // 2 - 3, (1,), generator=g)) + (0 if label else size // 2)
        img[:, :, col : col + 3] += 0.7
        out.append(Sample(image=img.clamp(0, 1), id=f"bars-{seed}-{i}", target=label))
    return out


def brightness(n: int, seed: int, size: int = 24) -> list[Sample]:
    """Regression: target = 2 * mean brightness - 1 (in [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        level = float(torch.rand(1, generator=g))
        img = (level + 0.1 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
        out.append(Sample(image=img, id=f"bright-{seed}-{i}", target=2 * level - 1))
    return out


@pytest.fixture
def bar_data() -> tuple[list[Sample], list[Sample]]:
    return bars(64, 0), bars(32, 1)


@pytest.fixture
def bright_data() -> tuple[list[Sample], list[Sample]]:
    return brightness(64, 0), brightness(32, 1)


@pytest.fixture
def make_bars():
    """The `bars(n, seed, size)` factory."""
    return bars
