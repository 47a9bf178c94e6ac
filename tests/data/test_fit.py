"""Fit brings a Sample to one size with a resize policy: the image exactly as fit_image does,
the segmentation (nearest, letterbox padding = pad_label) and the boxes together."""
from __future__ import annotations

import pytest
import torch

from gradsum.data import RESIZE_POLICIES, Fit, Resize, Sample
from gradsum.data.transforms import fit_image

VOID = 255


def _sample() -> Sample:
    """A 30x50 image with two box-shaped objects: label 5 at rows 6..19, cols 20..41 (box
    20,6,42,20) and label 9 at rows 10..24, cols 1..7 (box 1,10,8,25), each painted in its own
    colour channel."""
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(3, 30, 50, generator=gen) * 0.2
    seg = torch.zeros(30, 50, dtype=torch.int64)
    img[0, 6:20, 20:42] = 1.0
    seg[6:20, 20:42] = 5
    img[1, 10:25, 1:8] = 1.0
    seg[10:25, 1:8] = 9
    return Sample(image=img, id="s", segmentation=seg, boxes=torch.tensor([[20.0, 6.0, 42.0, 20.0], [1.0, 10.0, 8.0, 25.0]]),
                  box_labels=torch.tensor([5, 9]), target=1, meta={"source": "test"})


def _extent(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


SIZES = [(40, 40), (24, 24), (60, 120), (64, 48), (15, 25)]


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
@pytest.mark.parametrize("size", SIZES)
def test_fit_moves_image_segmentation_and_boxes_together(policy, size):
    s = _sample()
    out = Fit(size, policy, pad_label=VOID)(s)
    assert tuple(out.image.shape) == (3, *size) and tuple(out.segmentation.shape) == size
    assert torch.equal(out.image, fit_image(s.image, size, policy))  # the same pixels as fit_image
    assert out.segmentation.dtype == torch.int64
    assert set(out.segmentation.unique().tolist()) <= {0, 5, 9, VOID}  # nearest: no new ids
    assert len(out.boxes) == len(out.box_labels)
    for box, label in zip(out.boxes.tolist(), out.box_labels.tolist(), strict=True):
        mask = out.segmentation == label
        assert mask.any(), (label, box)
        assert max(abs(a - b) for a, b in zip(_extent(mask), box, strict=True)) <= 1.0, (label, _extent(mask), box)
    assert out.meta["resized_from"] == (30, 50) and out.meta["resize"] == policy and out.meta["source"] == "test"
    assert out.target == 1 and out.id == "s"
    assert torch.equal(s.image, _sample().image) and s.boxes.shape == (2, 4) and "resize" not in s.meta  # untouched


def test_letterbox_pads_segmentation_with_pad_label_and_shifts_boxes():
    s = _sample()
    out = Fit((40, 40), "letterbox", pad_label=VOID)(s)
    # s = min(40/30, 40/50) = 0.8 -> 24x40, centred: rows 8..31 hold the image
    assert (out.segmentation[:8] == VOID).all() and (out.segmentation[32:] == VOID).all()
    assert not (out.segmentation[8:32] == VOID).any()
    assert torch.allclose(out.image[:, :8], torch.full((3, 8, 40), 0.5))
    assert torch.allclose(out.boxes, torch.tensor([[16.0, 12.8, 33.6, 24.0], [0.8, 16.0, 6.4, 28.0]]))
    tall = Fit((40, 40), "letterbox", fill=0.0, pad_label=7)(s)  # padding values are the caller's
    assert (tall.segmentation[:8] == 7).all() and (tall.image[:, :8] == 0).all()
    side = Fit((60, 30), "letterbox", pad_label=VOID)(s)  # wide image into a tall box: pad top/bottom
    assert side.segmentation.shape == (60, 30) and (side.segmentation[:21] == VOID).all()


def test_center_crop_drops_boxes_outside_with_their_labels():
    s = _sample()
    out = Fit((40, 40), "center-crop", pad_label=VOID)(s)
    # s = max(40/30, 40/50) = 4/3 -> 40x67 (x scaled by the actual 67/50), columns 13..52 kept:
    # label 9 (cols 1..7 -> 1.3..10.7) falls outside
    assert out.box_labels.tolist() == [5] and out.boxes.shape == (1, 4)
    assert not (out.segmentation == 9).any() and not (out.segmentation == VOID).any()
    assert torch.allclose(out.boxes[0], torch.tensor([20 * 67 / 50 - 13, 8.0, 40.0, 20 * 40 / 30]))


def test_stretch_is_resize():
    s = _sample()
    a, b = Fit((45, 33), "stretch")(s), Resize((45, 33))(s)
    assert torch.equal(a.image, b.image) and torch.equal(a.segmentation, b.segmentation)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.box_labels, b.box_labels)


def test_same_size_and_missing_parts():
    s = _sample()
    same = Fit((30, 50), "letterbox")(s)
    assert torch.equal(same.image, s.image) and torch.equal(same.boxes, s.boxes) and same.meta["resize"] == "letterbox"
    bare = Sample(image=torch.rand(3, 20, 10), id="b")  # no segmentation, no boxes
    for policy in RESIZE_POLICIES:
        out = Fit(16, policy)(bare)
        assert out.image.shape == (3, 16, 16) and out.segmentation is None and out.boxes is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (0, 4)}, "size"),
        ({"size": "64x64"}, "size"),
        ({"size": 8, "policy": "squash"}, "letterbox, stretch, center-crop"),
        ({"size": 8, "fill": 2.0}, "fill"),
        ({"size": 8, "pad_label": 1.5}, "pad_label"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fit(**kwargs)


def test_fit_image_policy_error_lists_the_policies():
    with pytest.raises(ValueError, match="letterbox, stretch, center-crop"):
        fit_image(torch.rand(3, 4, 4), (8, 8), "squash")
