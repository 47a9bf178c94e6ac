"""Batch augmentations keep segmentation, boxes and steering sign consistent with the image."""
from __future__ import annotations

import pytest
import torch

import gradsum.train as T
from gradsum.data.samples import Sample, collate


def _batch(target: float | int = 0.4) -> object:
    img = torch.zeros(3, 10, 20)
    img[:, 2:5, 1:4] = 1.0  # a block at x in [1, 4), y in [2, 5)
    seg = torch.zeros(10, 20, dtype=torch.int64)
    seg[2:5, 1:4] = 7
    box = torch.tensor([[1.0, 2.0, 4.0, 5.0]])
    s = Sample(image=img, id="a", segmentation=seg, boxes=box, box_labels=torch.tensor([34]), target=target)
    return collate([s, s])


def _box_of(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_flip_always_mirrors_everything_and_negates_steering() -> None:
    b = _batch(0.4)
    out = T.BatchFlip(p=1.0)(b, torch.Generator().manual_seed(0))
    assert torch.equal(out.images, b.images.flip(-1))
    assert torch.equal(out.segmentations, b.segmentations.flip(-1))
    assert out.boxes[0].tolist() == [[16.0, 2.0, 19.0, 5.0]]
    assert out.boxes[0].tolist()[0] == _box_of(out.segmentations[0] == 7)
    torch.testing.assert_close(out.targets, torch.tensor([-0.4, -0.4]))
    assert b.boxes[0].tolist() == [[1.0, 2.0, 4.0, 5.0]]  # input untouched


def test_flip_keeps_class_labels_and_p0_is_identity() -> None:
    b = _batch(1)
    out = T.BatchFlip(p=1.0)(b, torch.Generator())
    assert torch.equal(out.targets, b.targets)
    same = T.BatchFlip(p=0.0)(_batch(0.4), torch.Generator())
    assert torch.equal(same.images, _batch(0.4).images)
    torch.testing.assert_close(same.targets, torch.tensor([0.4, 0.4]))
    with pytest.raises(ValueError, match="probability"):
        T.BatchFlip(p=1.5)


def test_flip_is_per_sample_and_seeded() -> None:
    imgs = torch.rand(64, 3, 4, 6)
    batch = collate([Sample(image=imgs[i], id=str(i), target=1.0) for i in range(64)])
    a = T.BatchFlip()(batch, torch.Generator().manual_seed(5))
    b = T.BatchFlip()(batch, torch.Generator().manual_seed(5))
    assert torch.equal(a.images, b.images)
    flipped = a.targets < 0
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(a.images[flipped], imgs[flipped].flip(-1))
    assert torch.equal(a.images[~flipped], imgs[~flipped])


def test_brightness_scales_and_clamps() -> None:
    b = _batch()
    out = T.BatchBrightness(0.5)(b, torch.Generator().manual_seed(1))
    assert out.images.min() >= 0 and out.images.max() <= 1
    ratio = out.images[:, :, 3, 2] / b.images[:, :, 3, 2]
    assert ((ratio >= 0.5) & (ratio <= 1.0)).all()
    assert torch.equal(out.segmentations, b.segmentations)


def test_rotation_keeps_segmentation_and_boxes_aligned() -> None:
    img = torch.zeros(3, 40, 40)
    img[:, 8:14, 24:32] = 1.0
    seg = torch.zeros(40, 40, dtype=torch.int64)
    seg[8:14, 24:32] = 26
    box = torch.tensor([[24.0, 8.0, 32.0, 14.0]])
    batch = collate([Sample(image=img, id="r", segmentation=seg, boxes=box, target=0)])
    out = T.BatchRotation(degrees=30)(batch, torch.Generator().manual_seed(3))
    assert set(out.segmentations.unique().tolist()) <= {0, 26}
    moved = out.segmentations[0] == 26
    assert moved.any() and not torch.equal(moved, seg == 26)
    bright = out.images[0, 0] > 0.5
    assert (bright & moved).sum() >= 0.8 * moved.sum()
    x1, y1, x2, y2 = out.boxes[0][0].tolist()
    bx1, by1, bx2, by2 = _box_of(moved)
    assert x1 <= bx1 + 1 and y1 <= by1 + 1 and x2 >= bx2 - 1 and y2 >= by2 - 1


def test_parse_augment() -> None:
    assert T.parse_augment(None) is None and T.parse_augment("") is None
    assert isinstance(T.parse_augment("flip"), T.BatchFlip)
    assert T.parse_augment("flip", task="classification").negate_target is False
    assert isinstance(T.parse_augment("flip,brightness,rotate"), T.BatchCompose)
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        T.parse_augment("flip,blur")
