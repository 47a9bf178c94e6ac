"""Fooling images (CS231n, seeds/004 "Fooling Images"): start from an image or noise,
pick a class, and take targeted signed-gradient steps on -log p(target | x) (PGD
without a bound unless eps is given) until p(target) exceeds `level`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.adversarial._common import check_eps, check_images, check_positive_int, device_of
from gradsum.core.probe import preserved_state

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

        diff = self.images - self.start
        tiles, titles = [], []
        for i in range(self.images.shape[0]):
            tiles += [self.start[i], self.images[i], (diff[i] + 0.5).clamp(0, 1), (amplify * diff[i] + 0.5).clamp(0, 1)]
            titles += ["start", f"class {int(self.target[i])}\np={float(self.probability[i]):.3f}, {int(self.steps[i])} steps",
                       "difference", f"{amplify:g}x difference"]
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

    start: images (B,C,H,W) in [0,1]; None -> uniform noise of `image_size` drawn with
    `seed`. Each step x <- clip(x - alpha * sign(grad CE(x, target))) (projected onto the
    eps-ball around the start when eps is given); an image stops as soon as its target
    probability reaches `level`.
    """
    if not (isinstance(level, int | float) and 0 < level < 1):
        raise ValueError(f"level must be a probability in (0,1), got {level!r}")
    check_eps(alpha, "alpha")
    if eps is not None:
        check_eps(eps)
    check_positive_int(max_steps, "max_steps")
    dev = device_of(model)
    if start is None:
        if image_size is None:
            raise ValueError("give start images or image_size for a noise start")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        n = 1 if not isinstance(target, torch.Tensor) or target.ndim == 0 else len(target)
        gen = torch.Generator(device=dev).manual_seed(seed)
        start = torch.rand((n, channels, h, w), generator=gen, device=dev)
    check_images(start, "start")
    x0 = start.detach()
    tgt = torch.as_tensor(target, dtype=torch.long, device=x0.device)
    tgt = tgt.expand(x0.shape[0]).clone() if tgt.ndim == 0 else tgt
    if tgt.shape != (x0.shape[0],):
        raise ValueError(f"target must be one class or one per start image ({x0.shape[0]}); got shape {tuple(tgt.shape)}")
    with preserved_state(model):
        with torch.no_grad():
            out = model(x0)
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
    return FoolingResult(x, x0, tgt, prob, steps, prob >= level, float(level))
