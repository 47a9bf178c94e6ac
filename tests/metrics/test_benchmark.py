"""The methods x metrics benchmark table on a tiny model with boxes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradsum.data.samples import Sample
from gradsum.metrics import benchmark, ebpg


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3),
    ).eval()


def _samples(n: int = 6) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        boxes = torch.tensor([[2.0, 3.0, 9.0, 12.0]]) if i != n - 1 else None  # last image: no box
        out.append(Sample(image=torch.rand(3, 16, 16, generator=g), id=f"s{i}", boxes=boxes))
    return out


def test_benchmark_table_shape_values_and_costs():
    model = _model()
    data = _samples()
    res = benchmark(
        model, data, ["gradcam", "saliency"], ["ebpg", "bbox", "drop", "increase", "deletion", "insertion", "sparseness"],
        layer="4", batch_size=4, metric_options={"deletion": {"step": 16}},
    )
    table = res.table()
    assert list(table.index) == ["gradcam", "saliency"]
    for col in ("ebpg", "ebpg ±", "bbox", "drop", "increase", "deletion", "insertion", "seconds_per_image", "forward_per_image", "backward_per_image"):
        assert col in table.columns, col
    assert (table["forward_per_image"] >= 1).all() and (table["backward_per_image"] >= 1).all()
    assert (table["seconds_per_image"] > 0).all()
    # per-image rows: 6 images x 2 methods x 7 metrics; the box-less image has NaN localisation
    frame = res.per_image
    assert len(frame) == 6 * 2 * 7
    no_box = frame[(frame["sample"] == "s5") & (frame["metric"] == "ebpg")]["value"]
    assert no_box.isna().all()
    summ = res.summary().set_index(["method", "metric"])
    assert summ.loc[("gradcam", "ebpg"), "n"] == 5 and summ.loc[("gradcam", "drop"), "n"] == 6
    # the EBPG cell equals the metric computed directly on the same maps (x100 for %)
    from gradsum.methods.registry import explainer

    x = torch.stack([s.image for s in data[:5]])
    maps = explainer("gradcam", model, layer="4")(x).maps
    direct = ebpg(maps, boxes=[s.boxes for s in data[:5]]).aggregate
    assert table.loc["gradcam", "ebpg"] == pytest.approx(100 * direct, rel=1e-5)
    # curves for the report
    frac, curve = res.curves["gradcam"]["deletion"]
    assert frac.shape == curve.shape and frac[0] == 0 and frac[-1] == 1
    assert res.settings["units"]["drop"] == "%"
    assert not math.isnan(table.loc["saliency", "insertion"])


def test_benchmark_accepts_tensors_and_rejects_unknown_metrics():
    model = _model()
    x = torch.rand(3, 3, 16, 16)
    res = benchmark(model, x, ["gradcam"], ["sparseness", "complexity"], layer="4")
    assert res.table().shape[0] == 1
    with pytest.raises(ValueError, match="unknown metric"):
        benchmark(model, x, ["gradcam"], ["accuracy"], layer="4")
