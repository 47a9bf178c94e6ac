"""Transforms keep image, segmentation (nearest neighbour) and boxes aligned."""
from __future__ import annotations

import pytest
import torch

from gradsum.data import (
    Brightness,
    CenterCrop,
    Compose,
    HorizontalFlip,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    RoadScenes,
    Sample,
)
from gradsum.data.roads import POTHOLE


def _block_sample() -> Sample:
    """A 64x96 image whose red channel is 1 exactly on an object labelled 26 at rows 10..29,
    cols 20..49 (box edges x1=20, y1=10, x2=50, y2=30)."""
    img = torch.zeros(3, 64, 96)
    seg = torch.full((64, 96), 7, dtype=torch.int64)
    img[0, 10:30, 20:50] = 1.0
    seg[10:30, 20:50] = 26
    return Sample(image=img, id="block", segmentation=seg,
                  boxes=torch.tensor([[20.0, 10.0, 50.0, 30.0]]), box_labels=torch.tensor([26]),
                  target=0.5, meta={"task": "steering", "steering": 0.5})


def _check_aligned(s: Sample, tol_px: int = 0) -> None:
    obj = s.segmentation == 26
    red = s.image[0] > 0.5
    mismatch = (obj != red).sum().item()
    assert mismatch <= tol_px * (obj.shape[0] + obj.shape[1]), mismatch
    ys, xs = torch.nonzero(obj, as_tuple=True)
    x1, y1, x2, y2 = s.boxes[0].tolist()
    assert abs(xs.min().item() - x1) <= tol_px and abs(xs.max().item() + 1 - x2) <= tol_px
    assert abs(ys.min().item() - y1) <= tol_px and abs(ys.max().item() + 1 - y2) <= tol_px


@pytest.mark.parametrize(
    "t",
    [
        Resize((32, 48)),
        Resize((128, 192)),
        CenterCrop((40, 60)),
        RandomCrop((50, 70), seed=3),
        HorizontalFlip(),
        Compose([Resize((128, 192)), RandomCrop((100, 150), seed=1), HorizontalFlip()]),
    ],
)
def test_block_alignment(t):
    s = _block_sample()
    out = t(s)
    assert out.segmentation.dtype == torch.int64
    assert set(torch.unique(out.segmentation).tolist()) <= {7, 26}  # nearest: no new ids
    _check_aligned(out, tol_px=0 if not isinstance(t, Resize) or t.size[0] > 64 else 1)
    assert torch.equal(s.image, _block_sample().image)  # input untouched


def test_resize_non_integer_factor_stays_close():
    out = Resize((50, 75))(_block_sample())
    _check_aligned(out, tol_px=1)


def test_flip_negates_steering_and_mirrors_boxes():
    s = _block_sample()
    f = HorizontalFlip()(s)
    assert f.target == -0.5 and f.meta["steering"] == -0.5 and f.meta["flipped"]
    assert f.boxes.tolist() == [[46.0, 10.0, 76.0, 30.0]]
    assert torch.equal(HorizontalFlip()(f).image, s.image)
    cls = Sample(image=s.image, id="c", target=3, meta={})
    assert HorizontalFlip()(cls).target == 3  # classification targets keep their value
    rf = RandomHorizontalFlip(p=0.5, seed=7)
    seq = [rf(s).meta.get("flipped", False) for _ in range(40)]
    assert 5 < sum(seq) < 35
    rf2 = RandomHorizontalFlip(p=0.5, seed=7)
    assert seq == [rf2(s).meta.get("flipped", False) for _ in range(40)]


def test_crop_drops_boxes_outside_and_errors_when_too_big():
    s = _block_sample()
    out = CenterCrop((10, 20))(Sample(image=s.image, id="x", segmentation=s.segmentation,
                                      boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0], [40.0, 30.0, 60.0, 40.0]]),
                                      box_labels=torch.tensor([1, 2])))
    assert out.boxes.tolist() == [[2.0, 3.0, 20.0, 10.0]] and out.box_labels.tolist() == [2]
    with pytest.raises(ValueError, match="larger than image"):
        CenterCrop((100, 100))(s)
    with pytest.raises(ValueError, match="size"):
        Resize((0, 3))


def test_potholes_stay_in_boxes_after_transforms():
    ds = RoadScenes(12, seed=8, pothole_rate=1.0,
                    transform=Compose([Resize((132, 400)), RandomCrop((110, 330), seed=2),
                                       HorizontalFlip()]))
    for i in range(len(ds)):
        s = ds[i]
        pot = s.segmentation == POTHOLE
        covered = torch.zeros_like(pot)
        for x1, y1, x2, y2 in s.boxes.round().long().tolist():
            assert pot[y1:y2, x1:x2].any()
            covered[y1:y2, x1:x2] = True
        assert not (pot & ~covered).any()


def test_brightness_seeded():
    s = _block_sample()
    a, b = Brightness(0.3, seed=1)(s), Brightness(0.3, seed=1)(s)
    assert torch.equal(a.image, b.image) and a.image.max() <= 1.0
    assert torch.equal(a.segmentation, s.segmentation)


def _random_block(h: int, w: int, y0: int, x0: int, bh: int, bw: int) -> Sample:
    img = torch.zeros(3, h, w)
    seg = torch.zeros(h, w, dtype=torch.int64)
    img[0, y0 : y0 + bh, x0 : x0 + bw] = 1.0
    seg[y0 : y0 + bh, x0 : x0 + bw] = 26
    box = torch.tensor([[x0, y0, x0 + bw, y0 + bh]], dtype=torch.float32)
    return Sample(image=img, id="r", segmentation=seg, boxes=box, box_labels=torch.tensor([26]))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass
else:

    @settings(max_examples=40, deadline=None)
    @given(
        h=st.integers(8, 40), w=st.integers(8, 40), data=st.data(), seed=st.integers(0, 1000),
        flip=st.booleans(), factor=st.sampled_from([1, 2, 3]),
    )
    def test_property_crop_flip_resize_keep_alignment(h, w, data, seed, flip, factor):
        y0, x0 = data.draw(st.integers(0, h - 2)), data.draw(st.integers(0, w - 2))
        bh, bw = data.draw(st.integers(1, h - y0)), data.draw(st.integers(1, w - x0))
        s = _random_block(h, w, y0, x0, bh, bw)
        ch, cw = data.draw(st.integers(1, h * factor)), data.draw(st.integers(1, w * factor))
        ts = [Resize((h * factor, w * factor)), RandomCrop((ch, cw), seed=seed)]
        out = Compose(ts + ([HorizontalFlip()] if flip else []))(s)
        obj = out.segmentation == 26
        # bilinear x1..3 upscaling: inside pixels keep >= 0.444 (corner), outside <= 0.333
        assert torch.equal(obj, out.image[0] > 0.4)
        if obj.any():
            ys, xs = torch.nonzero(obj, as_tuple=True)
            assert out.boxes.tolist() == [[xs.min().item(), ys.min().item(),
                                           xs.max().item() + 1, ys.max().item() + 1]]
        else:
            assert len(out.boxes) == 0 and len(out.box_labels) == 0
