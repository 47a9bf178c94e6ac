"""Data specs take size=HxW and resize=POLICY for every file dataset: images of mixed sizes,
their segmentations and boxes come out at one size (gradsum.data.transforms.Fit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.test_data_readers import _cityscapes, _driving, _rgb, _save, _voc, _xml
from gradsum.data import Compose, Fit, HorizontalFlip, collate, load_dataset


def mixed_voc(root: Path) -> Path:
    """The tiny VOC folder of test_data_readers (000001: 30x40 with a segmentation) with
    000002 replaced by a 50x30 photo holding one car at x 2..20, y 4..40 (0-based edges)."""
    _voc(root)
    _save(_rgb(50, 30, 2), root / "JPEGImages" / "000002.jpg", quality=95)
    (root / "Annotations" / "000002.xml").write_text(_xml([("car", (3, 5, 20, 40), 0)]))
    return root


def mixed_cityscapes(root: Path) -> Path:
    """Two Cityscapes images: aachen 16x32 and bonn 24x24 (label maps to match)."""
    _cityscapes(root, n_per_city=1)
    name = "bonn_000000_000019"
    _save(_rgb(24, 24, 5), root / "leftImg8bit/train/bonn" / f"{name}_leftImg8bit.png")
    _save(np.full((24, 24), 7, dtype=np.uint8), root / "gtFine/train/bonn" / f"{name}_gtFine_labelIds.png")
    return root


def mixed_folder(root: Path) -> Path:
    for cls, (h, w) in (("a", (20, 40)), ("b", (36, 18))):
        _save(_rgb(h, w, h), root / cls / "0.png")
    return root


def test_voc_letterbox_to_one_size(tmp_path):
    root = mixed_voc(tmp_path / "voc")
    raw = load_dataset(f"voc:{root}:split=train")
    assert {tuple(raw[i].image.shape) for i in range(2)} == {(3, 30, 40), (3, 50, 30)}
    ds = load_dataset(f"voc:{root}:split=train,size=64x64,resize=letterbox")
    a, b = ds[0], ds[1]
    assert a.image.shape == b.image.shape == (3, 64, 64) and a.segmentation.shape == (64, 64)
    # 30x40 -> 48x64 (scale 1.6), 8 rows of void (255) above and below
    assert (a.segmentation[:8] == 255).all() and (a.segmentation[56:] == 255).all()
    assert torch.allclose(a.boxes, raw[0].boxes * 1.6 + torch.tensor([0.0, 8.0, 0.0, 8.0]))
    assert a.box_labels.tolist() == raw[0].box_labels.tolist()
    # 50x30 -> 64x38 (scale 1.28, round(38.4) = 38), 13 columns of padding on the left
    sx, sy = 38 / 30, 64 / 50
    assert torch.allclose(b.boxes, torch.tensor([[2 * sx + 13, 4 * sy, 20 * sx + 13, 40 * sy]]))
    assert a.meta["resized_from"] == (30, 40) and b.meta["resized_from"] == (50, 30)
    assert collate([a, b]).images.shape == (2, 3, 64, 64)
    # keyword arguments override the spec's options
    st = load_dataset(f"voc:{root}:split=train,size=64x64,resize=letterbox", size=(32, 48), resize="stretch")
    assert st[1].image.shape == (3, 32, 48) and st[1].meta["resize"] == "stretch"
    assert torch.allclose(st[1].boxes, torch.tensor([[2 * 48 / 30, 4 * 32 / 50, 20 * 48 / 30, 40 * 32 / 50]]))
    assert load_dataset(f"voc:{root}:split=train", size=20)[0].image.shape == (3, 20, 20)  # resize defaults to letterbox


def test_cityscapes_and_folder_to_one_size(tmp_path):
    cs = load_dataset(f"cityscapes:{mixed_cityscapes(tmp_path / 'cs')}:size=32x32")
    shapes = {tuple(cs[i].image.shape) for i in range(len(cs))}
    assert shapes == {(3, 32, 32)} and {tuple(cs[i].segmentation.shape) for i in range(2)} == {(32, 32)}
    assert (cs[0].segmentation[:8] == 0).all()  # 16x32 -> 16 rows of image, void id 0 ('unlabeled') around
    assert set(cs[1].segmentation.unique().tolist()) == {7}  # 24x24 -> 32x32: no padding
    folder = mixed_folder(tmp_path / "f")
    fd = load_dataset(f"folder:{folder}:size=16x16,resize=center-crop")
    assert [tuple(fd[i].image.shape) for i in range(2)] == [(3, 16, 16)] * 2 and [fd[i].target for i in range(2)] == [0, 1]
    assert fd[0].meta["resize"] == "center-crop"
    over = load_dataset(f"folder:{folder}:size=16x16", size="24x12", resize="stretch")
    assert over[1].image.shape == (3, 24, 12)


def test_driving_log_takes_a_size(tmp_path):
    path = _driving(tmp_path)
    ds = load_dataset(f"driving:{path}:size=24x24,resize=letterbox")
    s = ds[0]
    assert s.image.shape == (3, 24, 24) and s.target == pytest.approx(-0.1)


def test_size_runs_after_the_user_transform(tmp_path):
    root = mixed_voc(tmp_path / "voc")
    ds = load_dataset(f"voc:{root}:split=train,size=40x40", transform=HorizontalFlip())
    assert isinstance(ds.transform, Compose) and isinstance(ds.transform.transforms[-1], Fit)
    assert ds.transform.transforms[-1].pad_label == 255  # VOC's void id
    s = ds[1]
    assert s.meta["flipped"] and s.image.shape == (3, 40, 40)
    assert isinstance(load_dataset(f"voc:{root}:split=train,size=40x40").transform, Fit)
    # flipped first (x 2..20 of the 30-wide photo -> 10..28), then letterboxed: 50x30 -> 40x24
    # (scale 0.8), 8 columns of padding on the left
    assert torch.allclose(s.boxes, torch.tensor([[10 * 0.8 + 8, 4 * 0.8, 28 * 0.8 + 8, 40 * 0.8]]))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("size=12x", "size '12x' is not a size"),
        ("size=0", "size 0 is not a size"),
        ("size=-3x4", "is not a size"),
        ("size=100000x100000", "over the limit"),
        ("size=8x8,resize=bogus", "resize='bogus' is not a resize policy; give resize=letterbox|stretch|center-crop"),
        ("resize=stretch", "resize=stretch needs a size"),
    ],
)
def test_bad_size_or_policy_is_one_line(tmp_path, option, message):
    root = mixed_voc(tmp_path / "voc")
    with pytest.raises(ValueError, match="valid forms") as err:
        load_dataset(f"voc:{root}:split=train,{option}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_generated_datasets_are_drawn_at_their_size():
    assert load_dataset("roads:2:size=32x64")[0].image.shape == (3, 32, 64)
    assert load_dataset("digits:split=test", size=12)[0].image.shape == (3, 12, 12)
    assert load_dataset("digits:split=test,size=12x16")[0].image.shape == (3, 12, 16)
    # drawn at size: a resize policy changes nothing, so the CLI's --size/--resize pair works for every kind
    roads = load_dataset("roads:2:seed=4", size="32x64", resize="center-crop")
    assert torch.equal(roads[1].image, load_dataset("roads:2:seed=4,size=32x64")[1].image)
    assert "resize" not in roads[1].meta
    with pytest.raises(ValueError, match="roads scenes are generated at size=HxW.*resize=stretch does not apply"):
        load_dataset("roads:2:resize=stretch")
    with pytest.raises(ValueError, match="digits are generated at size=HxW.*does not apply"):
        load_dataset("digits", resize="letterbox")
    with pytest.raises(ValueError, match="resize='bogus' is not a resize policy"):
        load_dataset("roads:2:size=32x64,resize=bogus")
    assert load_dataset("roads:2", resize=None)[0].image.shape == (3, 66, 200)  # None = not given
