"""Readers on tiny directories built in each real format; malformed inputs give an error that
names the file, or with on_error="skip" are skipped, counted and reported."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradsum.data import (
    CITYSCAPES,
    VOC,
    Cityscapes,
    DataError,
    Digits,
    DrivingLog,
    ImageFolder,
    VOCDetection,
    load_dataset,
)
from gradsum.data.labels import VOC_PALETTE


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --------------------------------------------------------------------- Cityscapes
def _cityscapes(root: Path, n_per_city: int = 2) -> list[str]:
    ids = []
    for city in ("aachen", "bonn"):
        for k in range(n_per_city):
            name = f"{city}_{k:06d}_000019"
            _save(_rgb(16, 32, k), root / "leftImg8bit/train" / city / f"{name}_leftImg8bit.png")
            lbl = np.full((16, 32), 7, dtype=np.uint8)
            lbl[:5] = 23
            lbl[10:, 20:] = 26
            _save(lbl, root / "gtFine/train" / city / f"{name}_gtFine_labelIds.png")
            ids.append(f"{city}/{name}")
    return ids


def test_cityscapes_reads_layout(tmp_path):
    ids = _cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, split="train")
    assert len(ds) == 4 and ds.label_table is CITYSCAPES
    s = ds[0]
    assert s.id == ids[0] and s.image.shape == (3, 16, 32)
    expect = np.asarray(Image.open(tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"))
    assert torch.equal((s.image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expect.copy()))
    assert s.segmentation.dtype == torch.int64 and s.segmentation[0, 0] == 23 and s.segmentation[15, 31] == 26
    assert len(Cityscapes(tmp_path, cities=["bonn"])) == 2
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        Cityscapes(tmp_path, split="val")


def test_cityscapes_missing_label(tmp_path):
    _cityscapes(tmp_path)
    bad = tmp_path / "gtFine/train/bonn/bonn_000001_000019_gtFine_labelIds.png"
    bad.unlink()
    with pytest.raises(FileNotFoundError, match="bonn_000001_000019_gtFine_labelIds.png"):
        Cityscapes(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = Cityscapes(tmp_path, on_error="skip")
    assert len(ds) == 3 and len(ds.skipped) == 1 and "bonn_000001" in ds.skipped[0][0]
    assert "label file missing" in ds.report()
    assert Cityscapes(tmp_path, require_labels=False)[3].segmentation is None


def test_cityscapes_truncated_png_and_bad_ids(tmp_path):
    _cityscapes(tmp_path)
    img = tmp_path / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png"
    _truncate(img)
    lbl = tmp_path / "gtFine/train/bonn/bonn_000000_000019_gtFine_labelIds.png"
    _save(np.full((16, 32), 200, dtype=np.uint8), lbl)
    ds = Cityscapes(tmp_path)  # lazy: content is checked when read
    with pytest.raises(DataError, match="aachen_000001_000019_leftImg8bit.png.*truncated"):
        ds[1]
    with pytest.raises(ValueError, match=r"bonn_000000_000019_gtFine_labelIds\.png.*\[200\]"):
        ds[2]
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = Cityscapes(tmp_path, on_error="skip")
    assert len(ds) == 2
    reasons = dict(ds.skipped)
    assert "truncated" in reasons[str(img)] and "[200]" in reasons[str(lbl)]
    assert [ds[i].id for i in range(2)] == ["aachen/aachen_000000_000019", "bonn/bonn_000001_000019"]


# --------------------------------------------------------------------- VOC
def _xml(objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><size><width>40</width><height>30</height></size>{body}</annotation>"


def _voc(root: Path) -> None:
    ann = {
        "000001": [("dog", (5, 4, 20, 18), 0), ("person", (22, 2, 38, 29), 1)],
        "000002": [("car", (1, 1, 40, 30), 0)],
    }
    for iid, objs in ann.items():
        _save(_rgb(30, 40, int(iid)), root / "JPEGImages" / f"{iid}.jpg", quality=95)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{iid}.xml").write_text(_xml(objs))
    (root / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Main/train.txt").write_text("000001\n000002\n")
    seg = np.zeros((30, 40), dtype=np.uint8)
    seg[3:18, 4:20] = 12  # dog
    seg[2, 4:20] = 255  # border
    im = Image.fromarray(seg, mode="P")
    im.putpalette([c for rgb in VOC_PALETTE for c in rgb])
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    im.save(root / "SegmentationClass/000001.png")


def test_voc_boxes_targets_segmentation(tmp_path):
    _voc(tmp_path / "VOC2007")
    ds = VOCDetection(tmp_path, split="train")  # a VOCdevkit folder works too
    assert len(ds) == 2 and ds.label_table is VOC
    s = ds[0]
    assert s.boxes.tolist() == [[4.0, 3.0, 20.0, 18.0], [21.0, 1.0, 38.0, 29.0]]
    assert s.box_labels.tolist() == [12, 15]
    assert s.meta["difficult"] == [False, True]
    assert s.target.shape == (20,) and s.target.nonzero().flatten().tolist() == [11, 14]
    assert s.segmentation[10, 10] == 12 and s.segmentation[2, 10] == 255 and s.segmentation[25, 30] == 0
    assert ds[1].segmentation is None  # optional
    easy = VOCDetection(tmp_path / "VOC2007", split="train", keep_difficult=False)[0]
    assert easy.box_labels.tolist() == [12] and easy.target.sum() == 1
    with pytest.raises(FileNotFoundError, match="000002.png"):
        VOCDetection(tmp_path, split="train", segmentation=True)


def test_voc_xml_without_objects_and_missing_image(tmp_path):
    _voc(tmp_path)
    xml = tmp_path / "Annotations/000002.xml"
    xml.write_text(_xml([]))
    with pytest.raises(DataError, match="000002.xml.*no <object>"):
        VOCDetection(tmp_path, split="train")
    with pytest.warns(UserWarning):
        ds = VOCDetection(tmp_path, split="train", on_error="skip")
    assert len(ds) == 1 and ds.skipped == [(str(xml), ds.skipped[0][1])]
    (tmp_path / "JPEGImages/000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000001.jpg"):
        VOCDetection(tmp_path, split="train")
    with pytest.raises(FileNotFoundError, match="splits found"):
        VOCDetection(tmp_path, split="val")


# --------------------------------------------------------------------- driving log
def _driving(root: Path, header: bool = True) -> Path:
    rows = []
    for k in range(3):
        for cam in ("center", "left", "right"):
            _save(_rgb(12, 24, k), root / "IMG" / f"{cam}_{k}.jpg")
        rows.append([f"C:\\sim\\IMG\\center_{k}.jpg", f"IMG/left_{k}.jpg", f"IMG/right_{k}.jpg",
                     f"{0.1 * (k - 1):.2f}", "0.5", "0", "20"])
    path = root / "driving_log.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["center", "left", "right", "steering", "throttle", "brake", "speed"])
        w.writerows(rows)
    return path


@pytest.mark.parametrize("header", [True, False])
def test_driving_log(tmp_path, header):
    path = _driving(tmp_path, header)
    ds = DrivingLog(path)
    assert len(ds) == 3
    s = ds[0]
    assert s.image.shape == (3, 12, 24) and s.target == pytest.approx(-0.1)
    assert s.meta["task"] == "steering" and s.id == "IMG/center_0.jpg"
    three = DrivingLog(path, image_columns=["center", "left", "right"], side_correction=0.25)
    assert len(three) == 9
    assert [three[i].target for i in range(3)] == pytest.approx([-0.1, 0.15, -0.35])


def test_driving_log_segmentation_and_missing_file(tmp_path):
    path = _driving(tmp_path)
    segdir = tmp_path / "seg"
    for k in range(3):
        _save(np.full((12, 24), 7, dtype=np.uint8), segdir / f"center_{k}.png")
    ds = DrivingLog(path, segmentation_dir=segdir)
    assert ds[2].segmentation.shape == (12, 24) and int(ds[2].segmentation[0, 0]) == 7
    (tmp_path / "IMG/center_1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"line 3.*center_1\.jpg"):
        DrivingLog(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = DrivingLog(path, on_error="skip")
    assert len(ds) == 2 and "center_1.jpg" in ds.skipped[0][0]
    _save(_rgb(12, 24, 1), tmp_path / "IMG/center_1.jpg")
    (segdir / "center_2.png").unlink()
    with pytest.raises(FileNotFoundError, match="center_2.png"):
        DrivingLog(path, segmentation_dir=segdir, on_error="raise")


def test_driving_log_bad_steering_value(tmp_path):
    path = tmp_path / "log.csv"
    _save(_rgb(8, 8, 0), tmp_path / "a.png")
    path.write_text("image,steering\na.png,abc\na.png,0.5\n")
    with pytest.raises(DataError, match="log.csv.*line 2.*'abc'"):
        DrivingLog(path)
    with pytest.warns(UserWarning):
        assert len(DrivingLog(path, on_error="skip")) == 1


# --------------------------------------------------------------------- image folder
def test_image_folder(tmp_path):
    for cls, n in (("normal", 2), ("potholes", 3)):
        for k in range(n):
            _save(_rgb(10 + k, 14, k), tmp_path / cls / f"{k}.png")
    (tmp_path / "normal" / "notes.txt").write_text("ignored")
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["normal", "potholes"] and len(ds) == 5
    assert [ds[i].target for i in range(5)] == [0, 0, 1, 1, 1]
    assert ds[3].image.shape == (3, 11, 14) and ds[3].id == "potholes/1.png"
    _truncate(tmp_path / "potholes" / "2.png")
    with pytest.raises(DataError, match="2.png"):
        ds[4]
    with pytest.warns(UserWarning):
        ds = ImageFolder(tmp_path, on_error="skip")
    assert len(ds) == 4 and ds.skipped[0][0].endswith("2.png")


# --------------------------------------------------------------------- digits
def test_digits_split_deterministic():
    tr, te = Digits("train", size=16, seed=0), Digits("test", size=16, seed=0)
    assert len(tr) + len(te) == 1797 and 340 <= len(te) <= 380
    assert set(tr.indices).isdisjoint(te.indices)
    assert np.array_equal(Digits("test", seed=0).indices, te.indices)
    assert not np.array_equal(Digits("test", seed=1).indices, te.indices)
    s = tr[0]
    assert s.image.shape == (3, 16, 16) and s.image.min() >= 0 and s.image.max() <= 1
    assert torch.equal(s.image[0], s.image[2]) and isinstance(s.target, int)
    assert sorted(set(te._labels)) == list(range(10)) and te[len(te) - 1].target == te._labels[-1]


# --------------------------------------------------------------------- specs
def test_load_dataset_specs(tmp_path):
    _cityscapes(tmp_path / "cs")
    assert len(load_dataset(f"cityscapes:{tmp_path / 'cs'}")) == 4
    ds = load_dataset("roads:7:seed=3,shortcut=1,size=40x80,task=pothole")
    assert len(ds) == 7 and ds.size == (40, 80) and ds.meta["shortcut"] == 1.0
    assert load_dataset("roads:5", seed=2).seed == 2
    assert len(load_dataset("digits:split=test,size=12")[0].image[0]) == 12
    for bad in ("roads", "roads:abc", "mnist:3", "", "roads:5:oops", "roads:5:colour=red"):
        with pytest.raises(ValueError, match="valid forms"):
            load_dataset(bad)


def test_driving_log_udacity_interpolated_csv(tmp_path):
    """The self-driving-car data's interpolated.csv: filename + angle, one row per camera."""
    rows = ["index,timestamp,width,height,frame_id,filename,angle,torque,speed"]
    for k, cam in enumerate(("center_camera", "left_camera", "center_camera")):
        _save(_rgb(6, 8, k), tmp_path / "center" / f"{k}.jpg")
        rows.append(f"{k},{k},8,6,{cam},center/{k}.jpg,{0.05 * k},0,5")
    (tmp_path / "interpolated.csv").write_text("\n".join(rows) + "\n")
    ds = DrivingLog(tmp_path / "interpolated.csv", where={"frame_id": "center_camera"})
    assert len(ds) == 2 and ds[1].target == pytest.approx(0.1) and ds[1].id == "center/2.jpg"
    assert len(DrivingLog(tmp_path / "interpolated.csv")) == 3
    with pytest.raises(ValueError, match="where= column 'camera'"):
        DrivingLog(tmp_path / "interpolated.csv", where={"camera": "x"})


# --------------------------------------------------------------------- files stay inside the root
def test_driving_log_refuses_rows_outside_the_root(tmp_path):
    root = tmp_path / "log"
    path = _driving(root)
    outside = _save(_rgb(12, 24, 9), tmp_path / "elsewhere" / "photo.png")
    with path.open("a", newline="") as fh:
        csv.writer(fh).writerow(["../elsewhere/photo.png", "IMG/left_0.jpg", "IMG/right_0.jpg", "0.1", "0", "0", "0"])
    with pytest.raises(DataError, match=r"line 5: image '../elsewhere/photo.png'.*outside the dataset root.*"
                                        r"allow_outside_root=true"):
        DrivingLog(path)
    with path.open("a", newline="") as fh:
        csv.writer(fh).writerow([str(outside), "IMG/left_0.jpg", "IMG/right_0.jpg", "0.1", "0", "0", "0"])
    with pytest.warns(UserWarning):
        skipped = DrivingLog(path, on_error="skip")
    assert len(skipped) == 3 and len(skipped.skipped) == 2  # both the relative and the absolute row
    allowed = DrivingLog(path, allow_outside_root=True)
    assert len(allowed) == 5 and allowed[3].meta["path"] == str(root / "../elsewhere/photo.png")
    assert len(load_dataset(f"driving:{path}:allow_outside_root=true")) == 5


def test_voc_refuses_ids_outside_the_root(tmp_path):
    root = tmp_path / "voc"
    _voc(root)
    _save(_rgb(30, 40, 3), tmp_path / "x.jpg")
    (root / "ImageSets/Main/train.txt").write_text("000001\n../../x\n")
    with pytest.raises(DataError, match=r"image id '../../x'.*outside the dataset root"):
        VOCDetection(root, split="train")
    with pytest.warns(UserWarning):
        ds = VOCDetection(root, split="train", on_error="skip")
    assert len(ds) == 1
