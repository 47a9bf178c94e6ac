"""Extremal perturbations (Fong, Patrick & Vedaldi 2019), preserve variant.

Find the smooth mask m of area a that keeps the explained score highest:
    m* = argmax_m  y(phi(x, m)) - lambda_t || sort(m) - r_a ||^2 / (H W)
phi blends a blur pyramid (8 levels, sigma 0..20 px): pixel u shows level (1 - m(u)) * 7,
linearly interpolated (m = 1: the image, m = 0: the strongest blur). m is a smooth-max
pooling (Gaussian weights, sigma 21 px, temperature 0.1) of a parameter grid with a step of
7 px, upsampled bilinearly. r_a: the sorted reference with a fraction a of ones. Optimised
by SGD (lr 0.01, momentum 0.9) for 800 iterations with lambda growing from 300 by x1.0035
per step. This method optimises through gradients, so it does not use the masked-forward
engine; every image of the batch is optimised at once (independently).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.targets import Target
from gradsum.methods._args import check_int, check_number, check_seed
from gradsum.methods.base import Explainer
from gradsum.methods.registry import register

__all__ = ["ExtremalPerturbation", "blur_pyramid", "SmoothMask"]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad_w, pad_h = min(radius, x.shape[-1] - 1), min(radius, x.shape[-2] - 1)
    out = x
    if pad_w > 0:
        out = F.pad(out, (pad_w, pad_w, 0, 0), mode="reflect")
        kw = k[radius - pad_w: radius + pad_w + 1]
        out = F.conv2d(out, (kw / kw.sum()).view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    if pad_h > 0:
        out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect")
        kh = k[radius - pad_h: radius + pad_h + 1]
        out = F.conv2d(out, (kh / kh.sum()).view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out


def blur_pyramid(x: torch.Tensor, levels: int = 8, max_blur: float = 20.0) -> torch.Tensor:
    """(L,B,C,H,W): level l is x blurred with sigma = max_blur * l / (L-1) (level 0 = x)."""
    return torch.stack([_gaussian_blur(x, max_blur * level / max(levels - 1, 1)) for level in range(levels)])


class SmoothMask:
    """m = upsample(smax_v k(u - v) p(v)) for a parameter grid p (B,1,gh,gw) with step
    `step` px; k Gaussian with `sigma` px; smax_T(y) = sum y softmax(y / T)."""

    def __init__(self, size: tuple[int, int], step: int = 7, sigma: float = 21.0, temperature: float = 0.1,
                 device: torch.device | str = "cpu"):
        self.size, self.step, self.temperature = size, step, temperature
        self.grid = (math.ceil(size[0] / step) + 1, math.ceil(size[1] / step) + 1)
        self.radius = max(1, math.ceil(sigma / step))
        t = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32, device=device) * step
        d2 = t[:, None] ** 2 + t[None, :] ** 2
        self.kernel = torch.exp(-d2 / (2 * sigma**2)).flatten()  # (K,)

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        gh, gw = self.grid
        cols = F.unfold(F.pad(params, [self.radius] * 4), kernel_size=2 * self.radius + 1)  # (B,K,gh*gw)
        y = cols * self.kernel[None, :, None]
        pooled = (y * torch.softmax(y / self.temperature, dim=1)).sum(dim=1).reshape(b, 1, gh, gw)
        up = F.interpolate(pooled, size=((gh - 1) * self.step + 1, (gw - 1) * self.step + 1), mode="bilinear",
                           align_corners=True)
        return up[:, 0, : self.size[0], : self.size[1]]


@register("extremal", family="perturbation", passes="iterations x (forward + backward), default 800",
          paper="Fong, Patrick & Vedaldi 2019, Understanding Deep Networks via Extremal Perturbations and Smooth Masks")
class ExtremalPerturbation(Explainer):
    """Extremal perturbation, preserve variant (Fong et al. 2019); see the module docstring.
    area a (0.1), iterations (800; lower it for quick looks), step (7), sigma (21),
    levels (8), max_blur (20), lr (0.01), momentum (0.9), penalty lambda (300) x growth
    (1.0035) per step. step, sigma and max_blur are in pixels, sized for 224-pixel inputs
    (scale them down for small images). The mask parameters start at 1 (everything kept).
    Scores with the user's target (logit by default). maps = the final mask in [0,1];
    `settings["area_error"]` the final area-penalty term."""

    def __init__(self, model: nn.Module, layer: Any = None, *, area: float = 0.1, iterations: int = 800,
                 step: int = 7, sigma: float = 21.0, levels: int = 8, max_blur: float = 20.0, lr: float = 0.01,
                 momentum: float = 0.9, penalty: float = 300.0, growth: float = 1.0035, temperature: float = 0.1,
                 seed: int = 0):
        super().__init__(model, layer=layer)
        self.area = check_number(area, "area", low=0, high=1, low_open=True, high_open=True,
                                 meaning="fraction of the image the mask keeps")
        self.iterations = check_int(iterations, "iterations")
        self.step = check_int(step, "step")
        self.levels = check_int(levels, "levels", 2)
        self.sigma = check_number(sigma, "sigma", low=0, low_open=True, meaning="mask smoothing in pixels")
        self.max_blur = check_number(max_blur, "max_blur", low=0, low_open=True, meaning="strongest blur in pixels")
        self.lr = check_number(lr, "lr", low=0, low_open=True, meaning="learning rate")
        self.momentum = check_number(momentum, "momentum", low=0, high=1, high_open=True)
        self.penalty = check_number(penalty, "penalty", low=0, meaning="area penalty lambda")
        self.growth = check_number(growth, "growth", low=0, low_open=True, meaning="penalty growth per step")
        self.temperature = check_number(temperature, "temperature", low=0, low_open=True,
                                        meaning="smooth-max temperature")
        self.seed = check_seed(seed)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        batch, size = x.shape[0], (x.shape[-2], x.shape[-1])
        with torch.no_grad():
            output = self.model(x)
        bound = target.bind(output)
        rows = torch.arange(batch, device=x.device)
        pyramid = blur_pyramid(x.detach(), self.levels, self.max_blur)  # (L,B,C,H,W)
        level_ids = torch.arange(self.levels, device=x.device, dtype=x.dtype)[:, None, None, None, None]
        smooth = SmoothMask(size, self.step, self.sigma, self.temperature, device=x.device)
        params = torch.ones((batch, 1, *smooth.grid), device=x.device, dtype=torch.float32)  # start: all kept
        pixels = size[0] * size[1]
        reference = torch.zeros(pixels, device=x.device)
        reference[pixels - int(round(self.area * pixels)):] = 1.0
        velocity = torch.zeros_like(params)
        lam = self.penalty
        area_error = torch.zeros(batch, device=x.device)
        for _ in range(self.iterations):
            with torch.enable_grad():
                p = params.detach().requires_grad_(True)
                mask = smooth(p)  # (B,H,W)
                level = (1 - mask)[None, :, None] * (self.levels - 1)
                weights = (1 - (level - level_ids).abs()).clamp_min(0)  # hat interpolation over levels
                perturbed = (weights * pyramid).sum(dim=0).to(x.dtype)
                reward = bound(self.model(perturbed), rows)
                area_error = ((mask.flatten(1).sort(dim=1).values - reference) ** 2).mean(dim=1)
                energy = (-reward + lam * area_error).sum()
                (grad,) = torch.autograd.grad(energy, p)
            velocity = self.momentum * velocity + grad
            params = (params - self.lr * velocity).clamp(0, 1)
            lam *= self.growth
        with torch.no_grad():
            maps = smooth(params)
        return Attribution(
            method=self.name, maps=maps.float(), scores=bound(output).detach(), targets=bound.indices,
            cost=Cost(forward_passes=batch * (self.iterations + 1), backward_passes=batch * self.iterations),
            settings={"area": self.area, "iterations": self.iterations, "step": self.step, "sigma": self.sigma,
                      "levels": self.levels, "max_blur": self.max_blur, "lr": self.lr, "momentum": self.momentum,
                      "penalty": self.penalty, "growth": self.growth, "variant": "preserve",
                      "area_error": area_error.detach(), "target": bound.description, "seed": self.seed},
        )
