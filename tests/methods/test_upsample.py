"""The matrix form of bilinear upsampling equals F.interpolate(mode="bilinear", align_corners=False)."""
import pytest
import torch
import torch.nn.functional as F

from gradsum.methods.base import upsample


@pytest.mark.parametrize("shape,size", [
    ((3, 1, 18), (66, 200)),   # PilotNet's last conv map -> road scene
    ((2, 7, 7), (224, 224)),
    ((2, 14, 14), (7, 7)),     # downsampling
    ((1, 5, 9), (13, 40)),     # non-integer scales
    ((2, 1, 1), (8, 8)),       # a single value
    ((2, 30, 20), (45, 31)),   # up in one axis, barely in the other
])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_interpolate(shape, size, dtype, tol):
    maps = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(dtype)
    expected = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    out = upsample(maps, size)
    assert out.shape == expected.shape and out.dtype == dtype
    assert (out - expected).abs().max().item() <= tol


def test_same_size_is_the_input_and_half_precision_falls_back():
    maps = torch.rand(2, 5, 5)
    assert upsample(maps, (5, 5)) is maps
    half = torch.rand(2, 3, 3).to(torch.bfloat16)
    expected = F.interpolate(half[:, None], size=(6, 6), mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(upsample(half, (6, 6)), expected)
