"""GradSUM: hand-computed values for every mode and for groups; the dataset entry point."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import gradsum as gs
from gradsum.data.labels import Label, LabelTable
from gradsum.data.samples import Sample
from gradsum.semantic import LabelIndex, label_sums, profile_maps, summarize

TABLE = LabelTable("tiny", [
    Label(0, "a", "X", 0, (255, 0, 0)),
    Label(1, "b", "X", 1, (0, 255, 0)),
    Label(2, "c", "Y", 2, (0, 0, 255)),
    Label(-1, "d", "Y", 255, (9, 9, 9)),
    Label(3, "e", "Y", 3, (1, 1, 1)),
])
SEG = torch.tensor([[[0, 0, 1], [2, 2, -1]]])
MAP = torch.tensor([[[1.0, 0.5, 0.0], [0.25, 0.75, 1.0]]])


def _rows(maps=MAP, seg=SEG, ids=("img0",)):
    rows = profile_maps(maps, seg, TABLE, list(ids), normalize="none", threshold=0.5)
    return pd.DataFrame(rows).set_index(["image_id", "level", "category"])


def test_every_mode_by_hand():
    r = _rows().loc["img0"]
    a, b, c, d, e = (r.loc[("label", k)] for k in "abcde")
    assert (a.pixels, a.activation_sum, a.above_threshold) == (2, 1.5, 1)  # 0.5 is not > 0.5
    assert a.value_mean == 75 and b.value_mean == 0 and c.value_mean == 50 and d.value_mean == 100
    assert a.value_threshold == 50 and c.value_threshold == 50 and d.value_threshold == 100
    assert a.share == pytest.approx(100 * 1.5 / 3.5) and c.share == pytest.approx(100 / 3.5)
    assert a.pixel_share == pytest.approx(100 / 3) and d.pixel_share == pytest.approx(100 / 6)
    assert a.enrichment == pytest.approx((1.5 / 3.5) / (2 / 6))
    assert d.enrichment == pytest.approx((1 / 3.5) / (1 / 6))
    assert math.isnan(e.value_mean) and math.isnan(e.value_threshold) and math.isnan(e.enrichment)
    assert e.share == 0 and e.pixels == 0  # absent: 0% of the mass, but no mean


def test_groups_sum_numerators_and_denominators():
    r = _rows().loc["img0"]
    x, y = r.loc[("category", "X")], r.loc[("category", "Y")]
    assert (x.pixels, x.activation_sum, x.above_threshold) == (3, 1.5, 1)
    assert x.value_mean == pytest.approx(50) and x.value_threshold == pytest.approx(100 / 3)
    assert y.value_mean == pytest.approx(200 / 3)  # not the mean of c (50) and d (100)
    assert y.value_threshold == pytest.approx(200 / 3)
    assert x.share + y.share == pytest.approx(100)
    assert y.enrichment == pytest.approx((2 / 3.5) / 0.5)


def test_pooled_and_dataset_mean_and_ci():
    maps = torch.cat([MAP, torch.full((1, 2, 3), 0.5)])
    seg = torch.cat([SEG, torch.zeros(1, 2, 3, dtype=torch.long)])
    rows = pd.DataFrame(profile_maps(maps, seg, TABLE, ["i0", "i1"], normalize="none",
                                     context={"model": "m", "method": "gradcam", "epoch": None}))
    s = summarize(rows, n_boot=200).set_index(["level", "category"])
    a = s.loc[("label", "a")]
    assert a.pooled == pytest.approx(100 * 4.5 / 8)
    assert a.value_mean == pytest.approx((75 + 50) / 2)
    assert a.value_mean_lo <= a.value_mean <= a.value_mean_hi
    assert a.images == 2
    c = s.loc[("label", "c")]
    assert c.images == 1 and c.value_mean == 50  # the image without c is skipped, not a 0
    assert a.pooled_share == pytest.approx(100 * 4.5 / (3.5 + 3.0))
    assert a.pooled_enrichment == pytest.approx((4.5 / 6.5) / (8 / 12))


def test_normalisation_is_relu_minmax_by_default():
    raw = torch.tensor([[[-2.0, 0.0, 1.0], [2.0, 4.0, 0.5]]])
    rows = pd.DataFrame(profile_maps(raw, SEG, TABLE, ["i"])).set_index(["level", "category"])
    # relu-minmax: [0, 0, .25], [.5, 1, .125]
    assert rows.loc[("label", "a"), "activation_sum"] == pytest.approx(0.0)
    assert rows.loc[("label", "c"), "activation_sum"] == pytest.approx(1.5)


def test_unknown_label_id_is_named():
    with pytest.raises(ValueError, match=r"label ids \[7\].*label table 'tiny'"):
        label_sums(MAP, torch.tensor([[[0, 0, 7], [2, 2, 2]]]), LabelIndex.of(TABLE))
    with pytest.raises(ValueError, match=r"label ids \[-3\]"):  # below the range: a negative bin
        label_sums(MAP, torch.tensor([[[0, 0, 1], [2, -3, 2]]]), LabelIndex.of(TABLE))
    with pytest.raises(ValueError, match="same shape"):
        label_sums(MAP, SEG[:, :1], LabelIndex.of(TABLE))


def test_constant_map_gives_zero_mass_and_nan_share():
    rows = pd.DataFrame(profile_maps(torch.full((1, 2, 3), 0.3), SEG, TABLE, ["c"]))
    # a constant raw map normalises to zeros: no mass anywhere, shares undefined (NaN, not 0)
    assert rows["activation_sum"].sum() == 0
    assert rows["share"].isna().all()
    assert (rows.loc[rows["pixels"] > 0, "value_mean"] == 0).all()


class TwoRegionDataset(torch.utils.data.Dataset):
    """Images whose left half is label 0 ('a') and right half label 2 ('c')."""

    label_table = TABLE

    def __init__(self, n=6):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 16, 16, generator=gen)
        self.seg = torch.zeros(16, 16, dtype=torch.long)
        self.seg[:, 8:] = 2

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return Sample(image=self.images[i], id=f"s{i}", segmentation=self.seg, target=i % 2)


def test_gradsum_over_a_dataset_with_baseline(gap_model):
    ds = TwoRegionDataset()
    profile = gs.gradsum(gap_model, ds, method=["gradcam", "layercam"], layer="features.3", batch_size=4,
                         baseline=2, model_name="gap")
    img = profile.images
    assert set(img["method"]) == {"gradcam", "layercam"}
    assert len(img) == 6 * 2 * (5 + 2)  # images x methods x (labels + categories)
    cat = img[img["level"] == "category"]
    sums = cat.groupby(["image_id", "method"])["share"].sum()
    assert ((sums - 100).abs() < 1e-6).all() or sums.isna().any()
    assert profile.baseline is not None and set(profile.baseline["copy"]) == {0, 1}
    base = profile.baseline_summary()
    assert {"pooled_enrichment_mean", "pooled_enrichment_std"} <= set(base.columns)
    summary = profile.summary(n_boot=100)
    assert set(summary["category"]) >= {"X", "Y", "a", "c"}
    text = gs.semantic.shortcut_verdict(profile, min_pixel_share=0.0)
    assert isinstance(text, str) and len(text) > 20


def test_gradsum_explains_labels_and_needs_segmentations(gap_model):
    ds = TwoRegionDataset()
    profile = gs.gradsum(gap_model, ds, method="gradcam", layer="features.3", target="label")
    assert profile.images.groupby("image_id")["target"].first().tolist() == [0, 1, 0, 1, 0, 1]

    class NoSeg(TwoRegionDataset):
        def __getitem__(self, i):
            return Sample(image=self.images[i], id=f"s{i}")

    with pytest.raises(ValueError, match="needs a segmentation"):
        gs.gradsum(gap_model, NoSeg(), method="gradcam")


def test_random_copy_leaves_original_untouched(gap_model):
    before = {k: v.clone() for k, v in gap_model.state_dict().items()}
    state = torch.random.get_rng_state()
    copy = gs.semantic.randomized_copy(gap_model, seed=3)
    again = gs.semantic.randomized_copy(gap_model, seed=3)
    assert all(torch.equal(before[k], v) for k, v in gap_model.state_dict().items())
    assert torch.equal(state, torch.random.get_rng_state())
    assert not torch.equal(copy.fc.weight, gap_model.fc.weight)
    assert torch.equal(copy.fc.weight, again.fc.weight)


@pytest.mark.parametrize("mode", ["relu-minmax", "minmax", "maxabs", "sum"])
def test_normalisation_folded_into_the_sums_equals_normalising_first(mode):
    """label_sums folds min-max into the sums (scale * (sum m - lo * N), m > lo + t / scale);
    it must equal normalising the maps first, including constant and all-negative maps."""
    gen = torch.Generator().manual_seed(3)
    maps = torch.randn(5, 7, 9, generator=gen, dtype=torch.float64)
    maps[1] = 0.3  # constant
    maps[2] = -maps[2].abs() - 0.1  # all negative: zeros after ReLU
    maps[3] = maps[3].abs() + 2.0  # all positive: lo > 0
    seg = torch.randint(-1, 4, (5, 7, 9), generator=gen)
    index = LabelIndex.of(TABLE)
    folded = label_sums(maps, seg, index, threshold=0.4, normalize=mode)
    explicit = label_sums(gs.core.normalize.normalize_maps(maps, mode), seg, index, threshold=0.4)
    for field in ("pixels", "above", "mass", "total_mass"):
        torch.testing.assert_close(getattr(folded, field), getattr(explicit, field), rtol=1e-9, atol=1e-9)
    assert folded.above.sum() > 0 and folded.pixels.sum() == 5 * 7 * 9


def test_verdict_names_the_label_that_carries_the_category():
    seg = torch.tensor([[[0, 0, 1, 2], [0, 0, 1, 3]]]).repeat(4, 1, 1)  # a: 4 px, b: 2, c: 1, e: 1
    ids = [f"i{k}" for k in range(4)]
    context = {"model": "m", "method": "gradcam", "epoch": None}
    focused = (seg == 2).float() + 0.01  # the heatmap sits on label c (category Y)
    own = pd.DataFrame(profile_maps(focused, seg, TABLE, ids, normalize="none", context=context))
    base = pd.DataFrame(profile_maps(torch.ones(4, 2, 4), seg, TABLE, ids, normalize="none",
                                     context={**context, "copy": 0}))
    groups = {label.name: label.category for label in TABLE.labels}
    profile = gs.semantic.Profile(own, {"label_groups": groups}, base)
    (finding,) = gs.semantic.shortcut_findings(profile)
    assert (finding.category, finding.label) == ("Y", "c")
    assert finding.share == pytest.approx(100 * 1.02 / 1.08)  # c and e, of 1.08 per image
    assert finding.label_share == pytest.approx(100 * 1.01 / 1.08) and finding.label_pixel_share == 12.5
    assert "over-attends Y, above all c (93.5% of the heatmap on 12.5% of the pixels)" in \
        gs.semantic.shortcut_verdict(profile)
    # without the label -> category map the category is named alone
    assert "above all" not in gs.semantic.shortcut_verdict(gs.semantic.Profile(own, {}, base))


def test_deferred_checks_raise_the_eager_errors_once_per_call():
    import pytest
    import torch

    from gradsum.semantic import VOC, LabelIndex, label_sums
    from gradsum.semantic.labels import DeferredChecks

    index = LabelIndex.of(VOC)
    maps = torch.rand(2, 4, 4)
    seg = torch.full((2, 4, 4), 7)
    checks = DeferredChecks()
    label_sums(maps, seg, index, checks=checks)
    checks.verify()  # nothing wrong
    unknown = seg.clone()
    unknown[1, 0, 0] = 100  # inside the id range (0..255), not a label of the table
    bad_maps = maps.clone()
    bad_maps[0, 1, 1] = float("nan")
    for m, s, message in ((maps, unknown, "label ids \\[100\\]"), (bad_maps, seg, "NaN or infinite")):
        checks = DeferredChecks()
        label_sums(m, s, index, normalize="none", checks=checks)  # no error yet: kept on the device
        with pytest.raises(ValueError, match=message):
            checks.verify()
        with pytest.raises(ValueError, match=message):
            label_sums(m, s, index, normalize="none")  # the eager check says the same
