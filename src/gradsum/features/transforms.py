"""Random transforms applied to the image at every step of activation maximisation
(transformation robustness, Olah et al., Distill 2017): pad, jitter, scale, rotate,
jitter. All of them are composed into ONE affine warp per image (each image of the batch
draws its own), sampled with `grid_sample`; areas outside the image read the pad value.

The defaults are those for 224-pixel images (pad 12, jitter 8, scale 0.9-1.1, rotate
+-10 degrees, jitter 4). `scaled_for(size)` shrinks the pixel amounts in proportion to
the image size (at least 1 pixel of pad and jitter), so a 32x32 image gets pad 2, jitter
2 and 1: the same relative motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

__all__ = ["Transforms", "STANDARD"]


@dataclass(frozen=True)
class Transforms:
    """pad, jitter1 and jitter2 in pixels; scale (lo, hi); rotate in degrees (+-)."""

    pad: int = 12
    jitter1: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: float = 10.0
    jitter2: int = 4
    fill: float = 0.5
    reference_size: int = 224

    def scaled_for(self, size: int) -> Transforms:
        """The same transforms with pixel amounts scaled by size / reference_size (<= 1)."""
        f = min(1.0, size / self.reference_size)
        return replace(
            self,
            pad=max(1, round(self.pad * f)) if self.pad else 0,
            jitter1=max(1, round(self.jitter1 * f)) if self.jitter1 else 0,
            jitter2=max(1, round(self.jitter2 * f)) if self.jitter2 else 0,
            reference_size=size,
        )

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Warp (B,C,H,W) -> (B,C,H,W): the pipeline's final canvas resampled to H x W.

        The random draws and the (B,2,3) warp matrices are computed on the generator's
        device (the CPU for a CPU generator: the same warps for a seed on every device) and
        the matrices moved to the image's device, one small copy per call."""
        b, _, h, w = img.shape
        dev = generator.device
        kw = {"generator": generator, "device": dev}

        def shift(d: int) -> torch.Tensor:  # integer offsets in [-(d//2), d - d//2], per image and axis
            if d <= 0:
                return torch.zeros(b, 2, device=dev)
            return (torch.randint(0, d + 1, (b, 2), **kw) - d // 2).float()

        s1, s2 = shift(self.jitter1), shift(self.jitter2)
        lo, hi = self.scale
        sc = lo + (hi - lo) * torch.rand(b, **kw)
        ang = (2 * torch.rand(b, **kw) - 1) * math.radians(self.rotate)
        # canvas after pad, crop (jitter1), scale, crop (jitter2): its size per axis
        cw = (w + 2 * self.pad - self.jitter1) * sc - self.jitter2
        ch = (h + 2 * self.pad - self.jitter1) * sc - self.jitter2
        cos, sin = torch.cos(ang), torch.sin(ang)
        # output pixel p (relative to centre) -> source: R(-a)(p + s2)/scale + s1
        a11, a12 = cos / sc, sin / sc
        a21, a22 = -sin / sc, cos / sc
        bx = (a11 * s2[:, 0] + a12 * s2[:, 1]) + s1[:, 0]
        by = (a21 * s2[:, 0] + a22 * s2[:, 1]) + s1[:, 1]
        theta = torch.stack([
            torch.stack([a11 * cw / w, a12 * ch / w, 2 * bx / w], 1),
            torch.stack([a21 * cw / h, a22 * ch / h, 2 * by / h], 1),
        ], 1)
        theta = theta.to(img.device, non_blocking=img.device.type == "cuda")
        grid = F.affine_grid(theta, [b, img.shape[1], h, w], align_corners=False)
        out = F.grid_sample(img - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out + self.fill


STANDARD = Transforms()
