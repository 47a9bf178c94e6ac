"""Transforms on `Sample`: they move the image, its segmentation (nearest neighbour, never
interpolated) and its boxes together, and return a new Sample (the input is not modified).

Box convention: x1,y1,x2,y2 are pixel edges (a box covering columns 3..5 has x1=3, x2=6).
Random transforms draw from their own `torch.Generator(seed)`: the same seed and the same
sequence of calls give the same results.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .samples import Sample

__all__ = [
    "fit_image", "Fit", "RESIZE_POLICIES",
    "Compose", "Resize", "CenterCrop", "RandomCrop", "HorizontalFlip", "RandomHorizontalFlip",
    "Brightness",
]  # fmt: skip

#: how `Fit` / `fit_image` reach a size whose aspect ratio differs from the image's
RESIZE_POLICIES = ("letterbox", "stretch", "center-crop")


def _size(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"{name} size must be a positive int or (H, W) ints, got {size!r}")
    return int(size[0]), int(size[1])


def _image_hw(s: Sample, name: str) -> tuple[int, int]:
    """(H, W) of a sample's (C,H,W) image; a clear error for anything else."""
    if not isinstance(s, Sample):
        raise TypeError(f"{name} transforms a gradsum.data.Sample; got {type(s).__name__}")
    if not isinstance(s.image, torch.Tensor) or s.image.ndim != 3:
        got = tuple(s.image.shape) if isinstance(s.image, torch.Tensor) else type(s.image).__name__
        raise ValueError(f"{name}: the image of sample {s.id!r} must be a (C,H,W) tensor; got {got}")
    return int(s.image.shape[-2]), int(s.image.shape[-1])


def _replace(s: Sample, **kw: Any) -> Sample:
    return dataclasses.replace(s, meta=dict(s.meta), **kw)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        if callable(transforms) or not isinstance(transforms, Sequence) or isinstance(transforms, str):
            raise TypeError(f"Compose takes a list of transforms; got {type(transforms).__name__} "
                            "(wrap a single transform as [transform])")
        bad = [(i, t) for i, t in enumerate(transforms) if not callable(t)]
        if bad:
            i, t = bad[0]
            raise TypeError(f"Compose: transform {i} is a {type(t).__name__} ({t!r:.40}), not a callable Sample -> Sample")
        self.transforms = list(transforms)

    def __call__(self, s: Sample) -> Sample:
        for t in self.transforms:
            s = t(s)
        return s

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Resize:
    """Resize to (H, W): image bilinear with antialiasing, segmentation nearest (pixel centres,
    'nearest-exact'), boxes scaled by (W'/W, H'/H)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size, "Resize")

    def __repr__(self) -> str:
        return f"Resize({self.size})"

    def __call__(self, s: Sample) -> Sample:
        H, W = _image_hw(s, "Resize")
        h, w = self.size
        if (h, w) == (H, W):
            return s
        return _replace(s, image=_resize_image(s.image, h, w), segmentation=_nearest(s.segmentation, h, w),
                        boxes=_scale_boxes(s.boxes, w / W, h / H))


def _crop(s: Sample, top: int, left: int, h: int, w: int) -> Sample:
    img = s.image[..., top : top + h, left : left + w]
    seg = s.segmentation[top : top + h, left : left + w] if s.segmentation is not None else None
    boxes, labels = s.boxes, s.box_labels
    if boxes is not None:
        shift = torch.tensor([left, top, left, top], dtype=boxes.dtype, device=boxes.device)
        b = boxes - shift
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # boxes cropped away entirely go
        boxes = b[keep]
        labels = labels[keep] if labels is not None else None
    return _replace(s, image=img, segmentation=seg, boxes=boxes, box_labels=labels)


def _check_fits(s: Sample, h: int, w: int, name: str) -> tuple[int, int]:
    H, W = _image_hw(s, name)
    if h > H or w > W:
        raise ValueError(f"{name} size {(h, w)} is larger than image {s.id!r} of size {(H, W)}; "
                         "resize first")  # fmt: skip
    return H, W


class CenterCrop:
    """Crop the central (H, W) window (boxes shifted and clipped; boxes left empty dropped)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size, "CenterCrop")

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"

    def __call__(self, s: Sample) -> Sample:
        h, w = self.size
        H, W = _check_fits(s, h, w, "CenterCrop")
        return _crop(s, (H - h) // 2, (W - w) // 2, h, w)


class RandomCrop:
    """Crop an (H, W) window at a position drawn from torch.Generator(seed)."""

    def __init__(self, size: int | Sequence[int], seed: int = 0) -> None:
        self.size = _size(size, "RandomCrop")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, seed={self.seed})"

    def __call__(self, s: Sample) -> Sample:
        h, w = self.size
        H, W = _check_fits(s, h, w, "RandomCrop")
        top = int(torch.randint(0, H - h + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, W - w + 1, (1,), generator=self.generator))
        return _crop(s, top, left, h, w)


_MIRRORED_META = ("steering", "curvature", "lateral")


class HorizontalFlip:
    """Mirror left-right with probability p (p=1: always): image, segmentation, boxes
    (x1' = W - x2, x2' = W - x1) and, for steering samples, the target's sign.

    negate_target: None = negate when sample.meta["task"] == "steering" (RoadScenes,
    DrivingLog, Cityscapes with task="steering"); True/False to force. The signed scene
    parameters in meta ("steering", "curvature", "lateral") are always negated, since they
    describe the image, and meta["flipped"] is toggled.
    """

    def __init__(self, p: float = 1.0, seed: int = 0, negate_target: bool | None = None) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"HorizontalFlip p must be a probability in [0, 1], got {p!r}")
        self.p, self.seed, self.negate_target = p, seed, negate_target
        self.generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p}, seed={self.seed})"

    def __call__(self, s: Sample) -> Sample:
        if self.p < 1.0 and float(torch.rand((), generator=self.generator)) >= self.p:
            return s
        W = s.image.shape[-1]
        img = s.image.flip(-1)
        seg = s.segmentation.flip(-1) if s.segmentation is not None else None
        boxes = s.boxes
        if boxes is not None:
            boxes = torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], dim=1)
        out = _replace(s, image=img, segmentation=seg, boxes=boxes)
        negate = self.negate_target
        if negate is None:
            negate = s.meta.get("task") == "steering"
        if negate and s.target is not None:
            out.target = -s.target
        for key in _MIRRORED_META:  # left-right signed scene parameters follow the image
            if isinstance(out.meta.get(key), int | float) and not isinstance(out.meta[key], bool):
                out.meta[key] = -out.meta[key]
        out.meta["flipped"] = not s.meta.get("flipped", False)
        return out


def RandomHorizontalFlip(p: float = 0.5, seed: int = 0) -> HorizontalFlip:  # noqa: N802
    """HorizontalFlip with probability p (default 0.5)."""
    return HorizontalFlip(p=p, seed=seed)


class Brightness:
    """Multiply the image by a factor drawn uniformly from [1 - delta, 1 + delta], clamp to
    [0, 1] (labels unchanged)."""

    def __init__(self, delta: float = 0.2, seed: int = 0) -> None:
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0.0 <= delta < 1.0:
            raise ValueError(f"Brightness delta must be in [0, 1), got {delta!r}")
        self.delta, self.seed = delta, seed
        self.generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return f"Brightness(delta={self.delta}, seed={self.seed})"

    def __call__(self, s: Sample) -> Sample:
        f = 1.0 + (float(torch.rand((), generator=self.generator)) * 2.0 - 1.0) * self.delta
        return _replace(s, image=(s.image * f).clamp_(0.0, 1.0))


def _check_policy(policy: Any) -> str:
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {', '.join(RESIZE_POLICIES)}; got {policy!r}")
    return policy


def _fit_plan(H: int, W: int, h: int, w: int, policy: str) -> tuple[int, int, int, int]:
    """(nh, nw, top, left) of bringing an (H, W) image to (h, w) with `policy`: it is first
    resized to (nh, nw) (stretch: (h, w); letterbox: uniform scale s = min(h/H, w/W);
    center-crop: s = max(h/H, w/W); nh = round(H*s), nw = round(W*s)), then for letterbox
    placed at (top, left) of an (h, w) canvas, for center-crop cropped from (top, left)."""
    if policy == "stretch":
        return h, w, 0, 0
    s = (min if policy == "letterbox" else max)(h / H, w / W)
    nh, nw = max(1, round(H * s)), max(1, round(W * s))
    if policy == "letterbox":
        nh, nw = min(nh, h), min(nw, w)
        return nh, nw, (h - nh) // 2, (w - nw) // 2
    nh, nw = max(nh, h), max(nw, w)
    return nh, nw, (nh - h) // 2, (nw - w) // 2


def _resize_image(image: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
    """(C,H,W) -> (C,nh,nw): bilinear with antialiasing, clamped to [0, 1] (floats keep their dtype)."""
    x = image[None] if image.is_floating_point() else image[None].float()
    return F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0.0, 1.0)


def _letterbox(x: torch.Tensor, h: int, w: int, top: int, left: int, fill: float | int) -> torch.Tensor:
    """x (..., nh, nw) placed at (top, left) of a (..., h, w) canvas filled with `fill`."""
    canvas = torch.full((*x.shape[:-2], h, w), fill, dtype=x.dtype, device=x.device)
    canvas[..., top: top + x.shape[-2], left: left + x.shape[-1]] = x
    return canvas


def fit_image(image: torch.Tensor, size: Sequence[int], policy: str = "letterbox", fill: float = 0.5) -> torch.Tensor:
    """A (C,H,W) image brought to `size` (h, w), bilinear with antialiasing:
    "stretch" resizes to (h, w) whatever the aspect ratio; "letterbox" scales it to fit
    inside (h, w) keeping the aspect ratio and pads the rest with `fill` (grey), centred;
    "center-crop" scales it to cover (h, w) and crops the centre. `Fit` does the same to a
    whole Sample (segmentation and boxes too)."""
    h, w = int(size[0]), int(size[1])
    _check_policy(policy)
    H, W = image.shape[-2:]
    if (h, w) == (H, W):
        return image
    nh, nw, top, left = _fit_plan(H, W, h, w, policy)
    resized = _resize_image(image, nh, nw)
    if (nh, nw) == (h, w):
        return resized
    if policy == "center-crop":
        return resized[:, top: top + h, left: left + w]
    return _letterbox(resized, h, w, top, left, float(fill))


class Fit:
    """Bring a Sample to (H, W) with a resize policy, image, segmentation and boxes together:

    - "stretch": exactly `Resize` (boxes scaled by (W'/W, H'/H));
    - "letterbox": uniform scale s = min(H'/H, W'/W) to (nh, nw) = (round(H*s), round(W*s)),
      centred on an (H', W') canvas: image padding `fill` (grey), segmentation padding
      `pad_label` (use the label table's void id), boxes scaled by (nw/W, nh/H) and shifted
      by the padding (left, top);
    - "center-crop": uniform scale s = max(H'/H, W'/W), then the central (H', W') window:
      boxes scaled, shifted and clipped; boxes left empty are dropped with their labels.

    The image is resized bilinearly with antialiasing (the same arithmetic as `fit_image`, so
    both give the same pixels), the segmentation by nearest neighbour ('nearest-exact', never
    a new id). meta["resized_from"] = (H, W) and meta["resize"] = policy record what was done.
    """

    def __init__(self, size: int | Sequence[int], policy: str = "letterbox", fill: float = 0.5,
                 pad_label: int = 0) -> None:
        self.size = _size(size, "Fit")
        self.policy = _check_policy(policy)
        if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not 0.0 <= fill <= 1.0:
            raise ValueError(f"Fit fill must be a grey level in [0, 1], got {fill!r}")
        if isinstance(pad_label, bool) or not isinstance(pad_label, numbers.Integral):
            raise ValueError(f"Fit pad_label must be an int label id (the label table's void id), got {pad_label!r}")
        self.fill, self.pad_label = float(fill), int(pad_label)

    def __repr__(self) -> str:
        return f"Fit({self.size}, policy={self.policy!r}, fill={self.fill}, pad_label={self.pad_label})"

    def __call__(self, s: Sample) -> Sample:
        H, W = _image_hw(s, "Fit")
        h, w = self.size
        nh, nw, top, left = _fit_plan(H, W, h, w, self.policy)
        if (h, w) == (H, W):
            out = _replace(s)
        elif self.policy == "stretch":
            out = Resize((h, w))(s)
        else:
            out = _replace(s, image=_resize_image(s.image, nh, nw), segmentation=_nearest(s.segmentation, nh, nw),
                           boxes=_scale_boxes(s.boxes, nw / W, nh / H))
            if self.policy == "center-crop":
                out = _crop(out, top, left, h, w) if (nh, nw) != (h, w) else out
            elif (nh, nw) != (h, w):
                out.image = _letterbox(out.image, h, w, top, left, self.fill)
                if out.segmentation is not None:
                    out.segmentation = _letterbox(out.segmentation, h, w, top, left, self.pad_label)
                if out.boxes is not None:
                    out.boxes = out.boxes + torch.tensor([left, top, left, top], dtype=out.boxes.dtype,
                                                         device=out.boxes.device)
        out.meta["resized_from"] = (H, W)
        out.meta["resize"] = self.policy
        return out


def _nearest(seg: torch.Tensor | None, h: int, w: int) -> torch.Tensor | None:
    """An (H,W) label map resized by nearest neighbour at pixel centres ('nearest-exact')."""
    if seg is None or tuple(seg.shape) == (h, w):
        return seg
    return F.interpolate(seg[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].to(seg.dtype)


def _scale_boxes(boxes: torch.Tensor | None, sx: float, sy: float) -> torch.Tensor | None:
    if boxes is None:
        return None
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)
