"""RoadScenes: determinism, random access, labels/targets/boxes consistency, steering sign
convention, the shortcut knob, sizes and argument validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gradsum.data import ROADS, HorizontalFlip, RoadScenes, collate
from gradsum.data.roads import POTHOLE, ROAD, VEGETATION


def test_same_seed_byte_identical_and_seed_matters():
    a, b = RoadScenes(6, seed=5), RoadScenes(6, seed=5)
    for i in range(6):
        ia, sa, ba, pa = a.scene(i)
        ib, sb, bb, pb = b.scene(i)
        assert ia.tobytes() == ib.tobytes() and sa.tobytes() == sb.tobytes()
        assert np.array_equal(ba, bb) and pa == pb
    c = RoadScenes(6, seed=6)
    assert any(a.scene(i)[0].tobytes() != c.scene(i)[0].tobytes() for i in range(6))


def test_scene_alone_equals_scene_in_sequence():
    seq = [s.image for s in RoadScenes(12, seed=2)]
    alone = RoadScenes(12, seed=2)[9].image
    assert torch.equal(seq[9], alone)
    # a different n does not change scene i either (scene i depends only on seed and i)
    assert torch.equal(RoadScenes(1000, seed=2)[9].image, alone)
    assert torch.equal(RoadScenes(12, seed=2)[-3].image, alone)


def test_sample_contents():
    ds = RoadScenes(24, seed=0, task="pothole")
    assert ds.label_table is ROADS and len(ds) == 24
    n_pot = 0
    for i in range(24):
        s = ds[i]
        assert s.image.shape == (3, 66, 200) and s.image.dtype == torch.float32
        assert torch.equal(s.image, (s.image * 255).round() / 255)  # exact 8-bit levels
        assert s.segmentation.dtype == torch.int64 and s.segmentation.shape == (66, 200)
        ROADS.validate(s.segmentation)
        pot = s.segmentation == POTHOLE
        assert s.target == int(pot.any()) == s.meta["pothole"]
        n_pot += s.target
        # every pothole pixel lies in a box, every box holds pothole pixels
        covered = torch.zeros_like(pot)
        for x1, y1, x2, y2 in s.boxes.long().tolist():
            assert pot[y1:y2, x1:x2].any()
            covered[y1:y2, x1:x2] = True
        assert not (pot & ~covered).any()
        assert (s.box_labels == POTHOLE).all() and len(s.box_labels) == len(s.boxes)
        assert (s.segmentation == ROAD).float().mean() > 0.1
    assert 5 <= n_pot <= 19  # pothole_rate 0.5
    b = collate([ds[0], ds[1]])
    assert b.images.shape == (2, 3, 66, 200) and b.targets.dtype == torch.int64


@pytest.mark.parametrize("size", [(128, 256), (224, 224), (33, 100)])
def test_other_sizes(size):
    s = RoadScenes(2, size=size, seed=1)[1]
    assert s.image.shape == (3, *size) and s.segmentation.shape == size
    labels = set(torch.unique(s.segmentation).tolist())
    assert {ROAD, 23}.issubset(labels)  # road and sky are always there


def test_steering_sign_positive_is_right_curve():
    """The road's far end (near the horizon) lies right of the image centre when steering > 0."""
    ds = RoadScenes(120, seed=4)
    checked = 0
    for i in range(len(ds)):
        img, seg, _, p = ds.scene(i)
        if abs(p["steering"]) < 0.4:
            continue
        H, W = seg.shape
        h = p["horizon"]
        rows = [y for y in range(H) if 0.06 <= (y + 0.5 - h) / (H - h) <= 0.15]
        cols = np.nonzero(np.isin(seg[rows], (ROAD, POTHOLE)))[1]
        if len(cols) == 0:
            continue  # the road left the picture
        offset = cols.mean() + 0.5 - W / 2
        assert np.sign(offset) == np.sign(p["steering"]), (i, p["steering"], offset)
        checked += 1
    assert checked >= 20
    s = RoadScenes(3, seed=4)[0]
    assert HorizontalFlip()(s).target == -s.target
    c = RoadScenes(3, seed=4, task="pothole")[0]
    f = HorizontalFlip()(c)
    assert f.target == c.target and f.meta["steering"] == -c.meta["steering"]


def _vegetation_share_by_class(shortcut: float, n: int = 300):
    ds = RoadScenes(n, seed=11, shortcut=shortcut, task="pothole")
    share: dict[int, list[float]] = {0: [], 1: []}
    for i in range(n):
        _, seg, _, p = ds.scene(i)
        share[p["pothole"]].append(float((seg == VEGETATION).mean()))
    return np.mean(share[0]), np.mean(share[1])


def test_shortcut_knob_vegetation_share():
    # shortcut=1: roads without potholes carry far more vegetation (measured ~17% vs ~3%)
    good, bad = _vegetation_share_by_class(1.0)
    assert good - bad > 0.10, (good, bad)
    assert good > 3 * bad
    # shortcut=0: vegetation is independent of the label (measured difference ~1 point)
    good0, bad0 = _vegetation_share_by_class(0.0)
    assert abs(good0 - bad0) < 0.03, (good0, bad0)


def test_shortcut_on_other_category():
    ds = RoadScenes(200, seed=3, shortcut=1.0, shortcut_category="building")
    amt = {0: [], 1: []}
    for i in range(200):
        p = ds.scene(i)[3]
        amt[p["pothole"]].append(p["building_amount"])
    assert min(amt[0]) >= 0.65 and max(amt[1]) <= 0.3


def test_meta_and_tasks():
    ds = RoadScenes(3, seed=1, shortcut=0.5, task="steering")
    assert ds.meta["shortcut"] == 0.5 and ds.meta["seed"] == 1 and ds.meta["size"] == [66, 200]
    s = ds[0]
    assert isinstance(s.target, float) and -1.0 <= s.target <= 1.0
    assert s.meta["steering"] == s.target and s.id == "roads-s1-000000"
    assert RoadScenes(2, task="none")[0].target is None
    assert RoadScenes(2, size="40x80")[0].image.shape == (3, 40, 80)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"shortcut": 1.5}, "shortcut"),
        ({"difficulty": -0.1}, "difficulty"),
        ({"task": "speed"}, "task"),
        ({"size": (8, 8)}, "size"),
        ({"size": "66by200"}, "HxW"),
        ({"shortcut_category": "sky"}, "shortcut_category"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        RoadScenes(3, **kw)


def test_index_errors():
    ds = RoadScenes(3)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(TypeError):
        ds["a"]
