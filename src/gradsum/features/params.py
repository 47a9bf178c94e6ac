"""Image parameterisations for activation maximisation.

The start is drawn on the generator's device and moved to `device`: with a CPU generator
(as `maximize` uses) a seed gives the same start on every device.

pixel: the image is the parameter itself, kept in [0,1] by projection after each step.
fft: the image is the inverse real FFT of a spectrum scaled by 1/f^decay_power, mapped
through a fixed colour decorrelation and a sigmoid (Olah et al., "Feature
Visualization", Distill 2017; Mordvintsev et al., "Differentiable Image
Parameterizations", Distill 2018). High frequencies then start small, which removes most
of the high-frequency noise pixel-space ascent produces.
"""
from __future__ import annotations

import torch

__all__ = ["PixelParam", "FFTParam", "COLOR_CORRELATION_SVD_SQRT", "make_param"]

# Square root of the colour covariance of ImageNet pixels (its SVD), as published with the
# Lucid feature-visualisation library; columns are scaled so the largest has norm 1.
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)


class PixelParam:
    """The image (B,C,H,W) is the parameter; with clamp=True `project()` clips it to [0,1]
    after every step, with clamp=False (the Keras example) pixels are unbounded."""

    name = "pixel"

    def __init__(self, shape: tuple[int, int, int, int], *, generator: torch.Generator,
                 device: torch.device, init: torch.Tensor | None = None, spread: float = 0.125,
                 clamp: bool = True) -> None:
        self.clamp = clamp
        if init is not None:
            start = init.detach().to(device=device, dtype=torch.float32).expand(shape).clone()
        else:  # grey noise: 0.5 +- spread/2, drawn on the generator's device
            u = torch.rand(shape, generator=generator, device=generator.device).to(device)
            start = 0.5 + (u - 0.5) * spread
        self.tensor = start.requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.tensor]

    def image(self) -> torch.Tensor:
        return self.tensor

    @torch.no_grad()
    def project(self) -> None:
        if self.clamp:
            self.tensor.clamp_(0.0, 1.0)

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        self.tensor.copy_(gaussian_blur(self.tensor, sigma))


class FFTParam:
    """image = sigmoid(decorrelate(irfft2(spectrum * scale) / 4)), scale = 1/max(f, 1/max(H,W))^decay.

    The spectrum starts as Gaussian noise with standard deviation `sd` (0.01)."""

    name = "fft"

    def __init__(self, shape: tuple[int, int, int, int], *, generator: torch.Generator,
                 device: torch.device, decay_power: float = 1.0, sd: float = 0.01,
                 decorrelate: bool = True) -> None:
        b, c, h, w = shape
        fy = torch.fft.fftfreq(h, device=device)[:, None]
        fx = torch.fft.rfftfreq(w, device=device)[None, :]
        freqs = torch.sqrt(fy * fy + fx * fx)
        self.scale = 1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power
        self.size = (h, w)
        spec = torch.randn((b, c, h, w // 2 + 1, 2), generator=generator, device=generator.device).to(device) * sd
        self.spectrum = spec.requires_grad_(True)
        self.decorrelate = decorrelate and c == 3
        corr = COLOR_CORRELATION_SVD_SQRT.to(device)
        self.color = corr / corr.norm(dim=0).max()

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def image(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spec, s=self.size, norm="ortho") / 4.0
        if self.decorrelate:
            img = torch.einsum("ij,bjhw->bihw", self.color, img)
        return torch.sigmoid(img)

    def project(self) -> None:  # the sigmoid keeps the image in (0,1)
        return None

    def blur(self, sigma: float) -> None:  # the 1/f scaling already favours low frequencies
        return None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) with reflect padding."""
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    pad = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = torch.nn.functional.conv2d(pad, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_param(kind: str, shape: tuple[int, int, int, int], *, generator: torch.Generator,
               device: torch.device, init: torch.Tensor | None = None, decay_power: float = 1.0,
               decorrelate: bool = True, clamp: bool = True) -> PixelParam | FFTParam:
    """Build a parameterisation by name: "pixel" or "fft"."""
    if kind == "pixel":
        return PixelParam(shape, generator=generator, device=device, init=init, clamp=clamp)
    if kind == "fft":
        if init is not None:
            raise ValueError("init images are supported with param='pixel' only; the fft parameterisation starts from noise")
        return FFTParam(shape, generator=generator, device=device, decay_power=decay_power, decorrelate=decorrelate)
    raise ValueError(f"unknown parameterisation {kind!r}; expected 'pixel' or 'fft'")
