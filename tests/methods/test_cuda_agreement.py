"""On a CUDA machine every method's map equals its CPU map to 1e-4 relative under the default
precision (float32: TF32 off); extremal perturbation is iterative and gets a looser bound.
Skipped without CUDA (the table: python benchmarks/bench_devices.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))


def test_every_method_on_cuda_equals_the_cpu():
    from bench_devices import ITERATIVE, compare

    rows = compare("cuda")
    far = [r for r in rows if r["relative"] > (5e-2 if r["method"] in ITERATIVE else 1e-4)]
    assert not far, far
