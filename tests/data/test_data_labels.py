"""Label tables: official Cityscapes values, ROADS extension, VOC palette, CSV round trip,
validation naming the source and the bad ids."""
from __future__ import annotations

import pytest
import torch

from gradsum.data.labels import CITYSCAPES, ROADS, VOC, Label, LabelTable


def test_cityscapes_official_values():
    assert len(CITYSCAPES) == 35
    assert CITYSCAPES.ids == list(range(34)) + [-1]
    assert CITYSCAPES.categories == [
        "flat", "human", "vehicle", "construction", "object", "nature", "sky", "void"
    ]
    expect = {  # id: (name, train_id, category, colour) from cityscapesScripts
        0: ("unlabeled", 255, "void", (0, 0, 0)),
        7: ("road", 0, "flat", (128, 64, 128)),
        8: ("sidewalk", 1, "flat", (244, 35, 232)),
        11: ("building", 2, "construction", (70, 70, 70)),
        17: ("pole", 5, "object", (153, 153, 153)),
        20: ("traffic sign", 7, "object", (220, 220, 0)),
        21: ("vegetation", 8, "nature", (107, 142, 35)),
        22: ("terrain", 9, "nature", (152, 251, 152)),
        23: ("sky", 10, "sky", (70, 130, 180)),
        24: ("person", 11, "human", (220, 20, 60)),
        26: ("car", 13, "vehicle", (0, 0, 142)),
        33: ("bicycle", 18, "vehicle", (119, 11, 32)),
        -1: ("license plate", -1, "vehicle", (0, 0, 142)),
    }
    for i, (name, tid, cat, col) in expect.items():
        lab = CITYSCAPES.by_id(i)
        assert (lab.name, lab.train_id, lab.category, lab.color) == (name, tid, cat, col)
    train_ids = sorted(lab.train_id for lab in CITYSCAPES if 0 <= lab.train_id < 255)
    assert train_ids == list(range(19))


def test_roads_adds_pothole_only():
    assert len(ROADS) == len(CITYSCAPES) + 1
    pot = ROADS.by_name("pothole")
    assert (pot.id, pot.category) == (34, "flat")
    assert pot.color not in [lab.color for lab in CITYSCAPES]
    assert ROADS.categories == CITYSCAPES.categories
    assert ROADS.labels[:-1] == CITYSCAPES.labels


def test_voc_table_and_palette():
    assert VOC.ids == list(range(21)) + [255]
    assert VOC.by_id(1).name == "aeroplane" and VOC.by_id(20).name == "tvmonitor"
    assert VOC.by_id(1).color == (128, 0, 0)
    assert VOC.by_id(15).color == (192, 128, 128)  # person
    assert VOC.by_id(255).name == "void"


def test_lookups_and_luts():
    assert CITYSCAPES.by_name("road").id == 7
    assert CITYSCAPES.category_of(26) == "vehicle"
    with pytest.raises(KeyError, match="did you mean"):
        CITYSCAPES.by_name("raod")
    with pytest.raises(KeyError, match="not in label table"):
        CITYSCAPES.by_id(99)
    seg = torch.tensor([[7, 26], [23, 34]])
    cats = ROADS.to_categories(seg)
    assert [ROADS.categories[c] for c in cats.flatten().tolist()] == ["flat", "vehicle", "sky", "flat"]
    assert ROADS.to_train_ids(seg).tolist() == [[0, 13], [10, 19]]
    rgb = ROADS.colorize(seg)
    assert rgb.shape == (3, 2, 2) and rgb.dtype == torch.uint8
    assert tuple(rgb[:, 0, 0].tolist()) == (128, 64, 128)
    assert ROADS.ids_in_category("flat") == [7, 8, 9, 10, 34]


def test_validate_names_source_and_ids():
    seg = torch.tensor([[7, 40], [41, 7]])
    with pytest.raises(ValueError, match=r"frame_01\.png.*\[40, 41\]"):
        CITYSCAPES.validate(seg, source="frame_01.png")
    CITYSCAPES.validate(torch.tensor([[0, 33]]))  # fine
    with pytest.raises(ValueError, match="34"):
        CITYSCAPES.validate(torch.tensor([[34]]))
    ROADS.validate(torch.tensor([[34]]))
    with pytest.raises(ValueError, match="integer"):
        ROADS.validate(torch.zeros(2, 2))


def test_csv_round_trip(tmp_path):
    path = ROADS.to_csv(tmp_path / "labels.csv")
    back = LabelTable.from_csv(path)
    assert back == ROADS
    df = ROADS.to_dataframe()
    assert list(df.columns[:4]) == ["id", "name", "category", "category_index"]
    assert len(df) == 36
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv"):
        LabelTable.from_csv(tmp_path / "bad.csv")


def test_table_rejects_duplicates():
    with pytest.raises(ValueError, match="appears twice"):
        LabelTable("x", [Label(1, "a", "c", 0, (0, 0, 0)), Label(1, "b", "c", 1, (0, 0, 0))])


def test_negative_ids_map_to_their_own_label_not_the_last_one():
    import torch

    from gradsum.data.labels import ROADS

    seg = torch.tensor([[-1, 34], [7, 26]])
    cats = ROADS.to_categories(seg)
    names = [ROADS.categories[int(c)] for c in cats.flatten()]
    assert names == ["vehicle", "flat", "flat", "vehicle"]  # license plate is a vehicle part
    assert ROADS.to_train_ids(seg)[0, 0] == ROADS.by_id(-1).train_id
    assert tuple(ROADS.colorize(seg)[:, 0, 0].tolist()) == ROADS.by_id(-1).color
