"""Fooling images (CS231n, seeds/004 "Fooling Images"): start from an image or noise,
pick a class, and take targeted signed-gradient steps on -log p(target | x) (PGD
without a bound unless eps is given) until p(target) exceeds `level`."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.adversarial._common import (
    check_eps,
    check_model,
    check_positive_int,
    classifier_logits,
    device_of,
    prepare_images,
)
from gradsum.core.probe import gradients_enabled, preserved_state
from gradsum.methods._args import check_int, check_number, check_seed

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["FoolingResult", "fooling_image"]


@dataclass
class FoolingResult:
    """images (B,C,H,W) in [0,1]; start the starting images; probability (B,) final
    p(target); steps (B,) steps taken per image; reached (B,) p >= level."""

    images: torch.Tensor
    start: torch.Tensor
    target: torch.Tensor
    probability: torch.Tensor
    steps: torch.Tensor
    reached: torch.Tensor
    level: float

    def figure(self, amplify: float = 10.0) -> Figure:
        """Per image: start, fooling image, difference and amplified difference."""
        from gradsum.features._plot import tile_figure

        images, start = self.images.detach().cpu(), self.start.detach().cpu()  # one copy from the device
        diff = images - start
        tiles, titles = [], []
        for i, (t, p, s) in enumerate(zip(self.target.tolist(), self.probability.tolist(), self.steps.tolist(),
                                          strict=True)):
            tiles += [start[i], images[i], (diff[i] + 0.5).clamp(0, 1), (amplify * diff[i] + 0.5).clamp(0, 1)]
            titles += ["start", f"class {int(t)}\np={float(p):.3f}, {int(s)} steps", "difference",
                       f"{amplify:g}x difference"]
        return tile_figure(torch.stack(tiles), titles=titles, ncols=4, tile_inches=1.5, title="fooling images")


def fooling_image(
    model: nn.Module,
    target: int | torch.Tensor,
    *,
    start: torch.Tensor | None = None,
    image_size: tuple[int, int] | int | None = None,
    channels: int = 3,
    level: float = 0.99,
    alpha: float = 1 / 255,
    max_steps: int = 500,
    eps: float | None = None,
    seed: int = 0,
) -> FoolingResult:
    """Make images that the model assigns to class `target` with probability > `level`.

    start: images (B,C,H,W) in [0,1] on the model's device; None -> uniform noise of
    `image_size` drawn with `seed` (on the CPU, then moved to the model's device, so that a
    seed gives the same start everywhere). Each step x <- clip(x - alpha * sign(grad CE(x, target))) (projected onto the
    eps-ball around the start when eps is given); an image stops as soon as its target
    probability reaches `level`.
    """
    check_model(model)
    level = check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True,
                         meaning="the target probability to reach")
    check_eps(alpha, "alpha")
    if eps is not None:
        check_eps(eps)
    check_positive_int(max_steps, "max_steps")
    seed = check_seed(seed)
    tgt = _target_classes(target)
    dev = device_of(model)
    if start is None:
        if image_size is None:
            raise ValueError("give start images or image_size for a noise start")
        h, w = _image_size(image_size)
        channels = check_int(channels, "channels")
        n = 1 if tgt.ndim == 0 else len(tgt)
        gen = torch.Generator().manual_seed(seed)  # a CPU generator: the same noise on every device
        start = torch.rand((n, channels, h, w), generator=gen).to(dev)
    with gradients_enabled(), preserved_state(model):
        x0, dtype = prepare_images(model, start, "start")
        tgt = tgt.to(x0.device)
        tgt = tgt.expand(x0.shape[0]).clone() if tgt.ndim == 0 else tgt
        if tgt.shape != (x0.shape[0],):
            raise ValueError(f"target must be one class or one per start image ({x0.shape[0]}); got shape {tuple(tgt.shape)}")
        out = classifier_logits(model, x0, "start")
        k = out.shape[1]
        bad = tgt[(tgt < 0) | (tgt >= k)]
        if bad.numel():
            raise ValueError(f"target class {int(bad[0])} does not exist: the model has {k} classes (0..{k - 1})")
        x = x0.clone()
        prob = F.softmax(out, 1).gather(1, tgt[:, None])[:, 0]
        steps = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        active = prob < level
        for _ in range(max_steps):
            if not bool(active.any()):
                break
            xa = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xa), tgt, reduction="sum")
            (g,) = torch.autograd.grad(loss, xa)
            new = x - alpha * g.sign()
            if eps is not None:
                new = x0 + (new - x0).clamp(-eps, eps)
            new = new.clamp(0, 1)
            x = torch.where(active.view(-1, 1, 1, 1), new, x).detach()
            steps += active.long()
            with torch.no_grad():
                prob = F.softmax(model(x), 1).gather(1, tgt[:, None])[:, 0]
            active = prob < level
    return FoolingResult(x.to(dtype), x0.to(dtype), tgt, prob, steps, prob >= level, float(level))


def _target_classes(target: object) -> torch.Tensor:
    """target as an int64 tensor (0-D or 1-D) of class indices; floats and bools refused."""
    if isinstance(target, bool):
        raise TypeError(f"target must be a class index (int) or one per image; got {target!r}")
    if isinstance(target, numbers.Integral):
        return torch.tensor(int(target))
    try:
        t = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be a class index (int) or one per image; got {type(target).__name__}") from None
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex() or t.ndim > 1:
        raise TypeError(f"target must be integer class indices (an int or a 1-D list); got {target!r}")
    return t.to(torch.int64)


def _image_size(image_size: object) -> tuple[int, int]:
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise TypeError(f"image_size must be an int or (H, W); got {image_size!r}")
    return check_int(image_size[0], "image_size height"), check_int(image_size[1], "image_size width")
