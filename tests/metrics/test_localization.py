"""Hand-computed tiny cases for the localisation and complexity metrics."""
from __future__ import annotations

import math

import pytest
import torch

from gradsum.metrics import (
    MetricWarning,
    attribution_auc,
    bbox,
    boxes_to_masks,
    category_hit,
    complexity,
    ebpg,
    pointing_game,
    relevance_mass,
    relevance_rank,
    sparseness,
)


def _map(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None]


# ---------------------------------------------------------------- boxes -> masks


def test_boxes_to_masks_rows_are_y_columns_are_x():
    m = boxes_to_masks([torch.tensor([[1.0, 0.0, 3.0, 1.0]])], 3, 4)  # x 1..2, y 0
    expected = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(m[0], expected)


def test_boxes_at_borders_are_clipped_and_fractional_edges_cover_touched_pixels():
    boxes = [
        torch.tensor([[-5.0, -2.0, 1.5, 1.0]]),  # past the top-left corner: cols 0..1, row 0
        torch.tensor([[2.0, 1.0, 99.0, 99.0]]),  # past the bottom-right corner
        torch.tensor([[10.0, 10.0, 12.0, 12.0]]),  # fully outside -> empty
        None,  # no box -> empty
    ]
    m = boxes_to_masks(boxes, 3, 4)
    assert torch.equal(m[0], torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool))
    assert torch.equal(m[1], torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool))
    assert not m[2].any() and not m[3].any()


def test_boxes_union_of_several_boxes():
    m = boxes_to_masks([torch.tensor([[0.0, 0.0, 1.0, 1.0], [3.0, 2.0, 4.0, 3.0]])], 3, 4)
    assert m[0].sum() == 2 and m[0, 0, 0] and m[0, 2, 3]


# ---------------------------------------------------------------- EBPG


def test_ebpg_hand_computed_with_negative_values_clipped():
    # energy: 4 + 2 + 1 = 7 (the -3 is dropped); box covers the 4 and the 2
    maps = _map([[4.0, 2.0, -3.0], [0.0, 1.0, 0.0]])
    r = ebpg(maps, boxes=[torch.tensor([[0.0, 0.0, 2.0, 1.0]])])
    assert r.values.tolist() == pytest.approx([6 / 7])


def _reference_ebpg_swapped(saliency: torch.Tensor, box: tuple[int, int, int, int]) -> float:
    """The Score-CAM/SISE evaluation code: it indexes the mask [x1:x2, y1:y2] (rows by x)."""
    x1, y1, x2, y2 = box
    empty = torch.zeros_like(saliency)
    empty[x1:x2, y1:y2] = 1
    return float((saliency * empty).sum() / saliency.sum())


def test_ebpg_deliberately_differs_from_reference_axis_swap():
    saliency = torch.zeros(6, 6)
    saliency[0, 3:5] = 1.0  # energy in row 0, columns 3-4
    saliency[4, 0] = 1.0
    box = (3, 0, 5, 1)  # x 3..4, y 0: exactly the first blob
    ours = float(ebpg(saliency[None], boxes=[torch.tensor([box], dtype=torch.float32)]).values[0])
    assert ours == pytest.approx(2 / 3)
    ref = _reference_ebpg_swapped(saliency, box)
    assert ref != pytest.approx(ours)
    # the reference equals ours on the transposed map: the swap is the only difference
    assert float(ebpg(saliency.T[None], boxes=[torch.tensor([box], dtype=torch.float32)]).values[0]) == pytest.approx(ref)


def test_ebpg_empty_mask_and_zero_map_are_nan_with_warning():
    maps = torch.stack([torch.ones(3, 3), torch.zeros(3, 3) - 1])
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[1, 0, 0] = True
    with pytest.warns(MetricWarning) as record:
        r = ebpg(maps, masks)
    messages = " ".join(str(w.message) for w in record)
    assert "mask is empty for sample(s) 0" in messages and "no positive energy for sample(s) 1" in messages
    assert math.isnan(r.values[0]) and math.isnan(r.values[1])
    assert math.isnan(r.aggregate)


def test_ebpg_constant_map_gives_area_fraction():
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2, :] = True
    assert float(ebpg(torch.full((1, 4, 4), 0.3), masks).values[0]) == pytest.approx(0.5)


# ---------------------------------------------------------------- bbox / relevance rank


def test_bbox_hand_computed():
    maps = _map([[9.0, 1.0, 8.0], [2.0, 7.0, 0.0]])
    masks = torch.tensor([[[1, 1, 0], [0, 1, 0]]], dtype=torch.bool)  # n = 3
    # top-3 pixels: 9 (in), 8 (out), 7 (in) -> 2/3
    assert float(bbox(maps, masks).values[0]) == pytest.approx(2 / 3)
    assert float(relevance_rank(maps, masks).values[0]) == pytest.approx(2 / 3)


def test_bbox_ties_are_broken_by_seed_and_constant_map_is_a_fair_draw():
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, :5] = True  # 50 pixels
    vals = [float(bbox(torch.ones(1, 10, 10), masks, seed=s).values[0]) for s in range(20)]
    assert vals[0] == float(bbox(torch.ones(1, 10, 10), masks, seed=0).values[0])  # same seed, same number
    assert len(set(vals)) > 1  # the seed matters for ties
    assert 0.3 < sum(vals) / len(vals) < 0.7


def test_bbox_empty_mask_nan():
    with pytest.warns(MetricWarning):
        r = bbox(torch.rand(2, 3, 3), torch.zeros(2, 3, 3, dtype=torch.bool))
    assert torch.isnan(r.values).all()


# ---------------------------------------------------------------- pointing game


def test_pointing_game_hit_miss_and_ties():
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 1  # max inside
    maps[1, 3, 3] = 1  # max outside
    maps[2, 1, 1] = maps[2, 3, 3] = 1  # tie: one inside, one outside -> hit
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    assert pointing_game(maps, masks).values.tolist() == [1.0, 0.0, 1.0]


def test_pointing_game_tolerance_radius():
    maps = torch.zeros(1, 10, 10)
    maps[0, 0, 6] = 1.0
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 0, 2] = True  # 4 px to the left of the max
    assert float(pointing_game(maps, masks, tolerance=3).values[0]) == 0.0
    assert float(pointing_game(maps, masks, tolerance=4).values[0]) == 1.0
    maps2 = torch.zeros(1, 10, 10)
    maps2[0, 3, 5] = 1.0  # diagonal distance sqrt(9+9) = 4.24
    assert float(pointing_game(maps2, masks, tolerance=4).values[0]) == 0.0
    assert float(pointing_game(maps2, masks, tolerance=4.5).values[0]) == 1.0


def test_pointing_game_constant_map_hits_and_empty_is_nan():
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[0, 2, 2] = True
    with pytest.warns(MetricWarning):
        r = pointing_game(torch.ones(2, 3, 3), masks)
    assert r.values[0] == 1.0 and math.isnan(r.values[1])


# ---------------------------------------------------------------- relevance mass


def test_relevance_mass_signed_and_clipped():
    maps = _map([[3.0, -1.0], [1.0, 1.0]])
    masks = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.bool)
    assert float(relevance_mass(maps, masks).values[0]) == pytest.approx(3 / 4)
    assert float(relevance_mass(maps, masks, clip=True).values[0]) == pytest.approx(3 / 5)


def test_relevance_mass_zero_sum_map_nan():
    with pytest.warns(MetricWarning, match="sums to zero"):
        r = relevance_mass(_map([[1.0, -1.0]]), torch.tensor([[[1, 0]]], dtype=torch.bool))
    assert math.isnan(r.values[0])


# ---------------------------------------------------------------- attribution AUC


def test_attribution_auc_hand_computed_with_ties():
    maps = _map([[0.9, 0.5, 0.5, 0.1]])
    masks = torch.tensor([[[1, 1, 0, 0]]], dtype=torch.bool)
    # pairs (pos, neg): (0.9,0.5)=1 (0.9,0.1)=1 (0.5,0.5)=0.5 (0.5,0.1)=1 -> 3.5/4
    assert float(attribution_auc(maps, masks).values[0]) == pytest.approx(3.5 / 4)


def test_attribution_auc_matches_sklearn_on_random_maps():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    maps = torch.randint(0, 5, (4, 6, 6), generator=g).float()  # many ties
    masks = torch.rand(4, 6, 6, generator=g) > 0.6
    ours = attribution_auc(maps, masks).values
    for i in range(4):
        ref = roc_auc_score(masks[i].reshape(-1).numpy(), maps[i].reshape(-1).numpy())
        assert float(ours[i]) == pytest.approx(ref, abs=1e-6)


def test_attribution_auc_constant_map_is_half_and_full_mask_nan():
    assert float(attribution_auc(torch.ones(1, 3, 3), torch.eye(3, dtype=torch.bool)[None]).values[0]) == 0.5
    with pytest.warns(MetricWarning, match="whole image"):
        r = attribution_auc(torch.rand(1, 3, 3), torch.ones(1, 3, 3, dtype=torch.bool))
    assert math.isnan(r.values[0])


# ---------------------------------------------------------------- category hit


def test_category_hit_hand_computed():
    maps = _map([[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]])
    seg = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    r = category_hit(maps, seg, top=3, num_categories=3, names=["road", "car", "sky"])
    assert r.values[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    frame = r.to_frame()
    assert list(frame.columns) == ["metric", "sample", "road", "car", "sky"]
    ignored = category_hit(maps, seg, top=2, num_categories=3, ignore_index=1)
    assert ignored.values[0].tolist() == pytest.approx([0.5, 0.0, 0.5])  # 5 (road) then 2 (sky)


# ---------------------------------------------------------------- complexity


def test_sparseness_hand_computed():
    # |m| sorted = [0, 1, 1, 2], n=4, sum=4: sum (2i-5) a_i = -3*0 -1*1 +1*1 +3*2 = 6 -> 6/16
    r = sparseness(_map([[1.0, -2.0], [0.0, 1.0]]))
    assert float(r.values[0]) == pytest.approx(6 / 16)
    assert float(sparseness(torch.full((1, 3, 3), 2.0)).values[0]) == pytest.approx(0.0, abs=1e-7)
    one_hot = torch.zeros(1, 4, 4)
    one_hot[0, 2, 1] = 5
    assert float(sparseness(one_hot).values[0]) == pytest.approx(15 / 16)


def test_complexity_hand_computed():
    r = complexity(_map([[1.0, -1.0], [2.0, 0.0]]))  # p = 1/4, 1/4, 1/2, 0
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert float(r.values[0]) == pytest.approx(expected)
    assert float(complexity(torch.ones(1, 4, 4)).values[0]) == pytest.approx(math.log(16))


def test_complexity_and_sparseness_zero_map_nan():
    with pytest.warns(MetricWarning, match="all zeros"):
        assert math.isnan(complexity(torch.zeros(1, 2, 2)).values[0])
    with pytest.warns(MetricWarning, match="all zeros"):
        assert math.isnan(sparseness(torch.zeros(1, 2, 2)).values[0])


# ---------------------------------------------------------------- arguments and results


def test_bad_arguments_raise_readable_errors():
    maps = torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match="exactly one of masks"):
        ebpg(maps)
    with pytest.raises(ValueError, match="does not match|shape"):
        ebpg(maps, torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B,H,W\)"):
        sparseness(torch.rand(2, 3, 3, 3))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, torch.ones(2, 3, 3, dtype=torch.bool), tolerance=-1)


def test_result_frame_ci_and_batch_invariance():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 8, 8, generator=g)
    masks = torch.rand(5, 8, 8, generator=g) > 0.5
    r = relevance_mass(maps, masks)
    singles = torch.cat([relevance_mass(maps[i : i + 1], masks[i : i + 1]).values for i in range(5)])
    assert torch.allclose(r.values, singles)
    frame = r.to_frame(ids=[f"img{i}" for i in range(5)])
    assert frame.shape == (5, 3) and frame["sample"].tolist()[0] == "img0"
    lo, hi = r.ci95()
    assert lo < r.aggregate < hi
