"""The Python API's edges: every mistake in the metrics, attacks, feature visualisations,
GradSUM, data transforms, training and plotting is a ValueError / TypeError that names the
argument, raised by gradsum before torch sees the input; unusual but valid inputs (float64
images, numpy targets, L2 budgets above 1) work. benchmarks/api_bad_inputs.py runs the full
table (700 cases) and prints the counts."""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gradsum as gs
from gradsum.data.samples import Sample, collate
from gradsum.semantic.labels import LabelIndex

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _model(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return gs.models.build("digitsnet", num_classes=num_classes).eval()


def _regressor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, padding=1), act=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(), fc=nn.Linear(16, 1),
    )).eval()


NET, NET2, REG = _model(), _model(2), _regressor()
X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
X4 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
XNAN = X.clone()
XNAN[0, 0, 3, 3] = math.nan
MAPS = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(2))
MAPS_NAN = MAPS.clone()
MAPS_NAN[1, 4, 4] = math.nan
MASKS = torch.zeros(2, 16, 16, dtype=torch.bool)
MASKS[:, 4:10, 4:10] = True
SEG = torch.zeros(2, 16, 16, dtype=torch.long)
ROADS = gs.data.RoadScenes(4, size=(16, 32), task="pothole")
STEER = gs.data.RoadScenes(4, size=(16, 32), task="steering")
M, A, F, T = gs.metrics, gs.adversarial, gs.features, gs.data
CONV = "features.conv2"


def _gradsum(dataset: Any = ROADS, **kw: Any) -> Any:
    return gs.gradsum(kw.pop("model", NET2), dataset, batch_size=4, **kw)


def _max(objective: Any = None, **kw: Any) -> Any:
    kw = {"image_size": 16, "steps": 2, "preset": None, **kw}
    return F.maximize(NET, F.channel(CONV, 0) if objective is None else objective, **kw)


def _seg_samples(segmentation: torch.Tensor) -> list[Sample]:
    return [Sample(torch.rand(3, 16, 32), f"s{i}", segmentation.clone(), target=1) for i in range(2)]


# (call, exception type, a pattern the message must contain: the argument or the value)
CASES: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    # metrics
    "ebpg NaN maps": (lambda: M.ebpg(MAPS_NAN, MASKS), ValueError, "maps of image.*NaN"),
    "bbox empty batch": (lambda: M.bbox(MAPS[:0], MASKS[:0]), ValueError, "maps is empty"),
    "pointing_game tolerance=nan": (lambda: M.pointing_game(MAPS, MASKS, tolerance=math.nan), ValueError, "tolerance"),
    "pointing_game tolerance='5'": (lambda: M.pointing_game(MAPS, MASKS, tolerance="5"), TypeError, "tolerance"),
    "ebpg NaN box": (lambda: M.ebpg(MAPS, boxes=torch.tensor([[0, 0, math.nan, 4.0], [0, 0, 4, 4]])), ValueError,
                     "boxes.*NaN"),
    "boxes_to_masks height=0": (lambda: M.boxes_to_masks(torch.zeros(1, 4), 0, 4), ValueError, "height"),
    "category_hit num_categories=0": (lambda: M.category_hit(MAPS, SEG, num_categories=0), ValueError,
                                      "num_categories"),
    "category_hit negative ids": (lambda: M.category_hit(MAPS, SEG - 1), ValueError, "label ids must be >= 0"),
    "sparseness NaN maps": (lambda: M.sparseness(MAPS_NAN), ValueError, "maps of image.*NaN"),
    "deletion NaN maps": (lambda: M.deletion(NET, X, MAPS_NAN, steps=4), ValueError, "maps of image.*NaN"),
    "deletion inf maps": (lambda: M.deletion(NET, X, MAPS.clamp_min(1) * math.inf, steps=4), ValueError,
                          "NaN or infinite"),
    "deletion uint8 images": (lambda: M.deletion(NET, (X * 255).byte(), MAPS), TypeError, "x must be a floating"),
    "deletion empty batch": (lambda: M.deletion(NET, X[:0], MAPS[:0]), ValueError, "x is an empty batch"),
    "insertion NaN pixel": (lambda: M.insertion(NET, XNAN, MAPS), ValueError, "x contains NaN"),
    "road noise=-1": (lambda: M.road(NET, X, MAPS, noise=-1.0), ValueError, "noise"),
    "road noise=nan": (lambda: M.road(NET, X, MAPS, noise=math.nan), ValueError, "noise"),
    "road tol=0": (lambda: M.road(NET, X, MAPS, tol=0.0), ValueError, "tol"),
    "average_drop 1-channel images": (lambda: M.average_drop(NET, X[:, :1], MAPS), ValueError,
                                      r"x \(shape \(2, 1, 16, 16\).*features\.conv1.*3 input channels"),
    "faithfulness_correlation target=99": (lambda: M.faithfulness_correlation(NET, X, MAPS, n_subsets=4, target=99),
                                           ValueError, "target index 99"),
    "model_randomization layers=[]": (lambda: gs.sanity.model_randomization(NET, X, ["gradcam"], layers=[]),
                                      ValueError, "layers"),
    "model_randomization threshold=nan": (
        lambda: gs.sanity.model_randomization(NET, X, ["gradcam"], layers=["classifier.fc2"], threshold=math.nan),
        ValueError, "threshold"),
    "data_randomization randomized_model": (lambda: gs.sanity.data_randomization(NET, "net", X, ["gradcam"]),
                                            TypeError, "randomized_model"),
    "similarity NaN maps": (lambda: gs.sanity.similarity(MAPS_NAN, MAPS, ("spearman",)), ValueError, "NaN"),
    "benchmark methods=[]": (lambda: M.benchmark(NET, X, [], ["sparseness"]), ValueError, "methods is empty"),
    "benchmark batch_size=0": (lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], batch_size=0), ValueError,
                               "batch_size"),
    "benchmark metric_options unlisted": (
        lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], metric_options={"deletion": {"steps": 4}}),
        ValueError, "deletion"),
    "benchmark method_options unlisted": (
        lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], method_options={"smoothgrad": {}}),
        ValueError, "smoothgrad"),
    # attacks
    "fgsm NaN pixel": (lambda: A.fgsm(NET, XNAN), ValueError, "images contains NaN"),
    "fgsm empty batch": (lambda: A.fgsm(NET, X[:0]), ValueError, "images is an empty batch"),
    "fgsm y=99": (lambda: A.fgsm(NET, X, 99), ValueError, "label 99 is out of range"),
    "fgsm y=-1": (lambda: A.fgsm(NET, X, -1), ValueError, "label -1 is out of range"),
    "fgsm float labels": (lambda: A.fgsm(NET, X, torch.tensor([1.7, 2.2])), TypeError, r"labels \(y\).*float"),
    "fgsm regressor": (lambda: A.fgsm(REG, X), ValueError, "one-output regressor"),
    "pgd regressor": (lambda: A.pgd(REG, X, steps=1), ValueError, "one-output regressor"),
    "pgd norm=inf eps=5": (lambda: A.pgd(NET, X, eps=5.0), ValueError, r"eps must be in \[0,1\]"),
    "pgd norm=2 eps=nan": (lambda: A.pgd(NET, X, norm=2, eps=math.nan), ValueError, "eps"),
    "pgd norm=2 eps=-1": (lambda: A.pgd(NET, X, norm=2, eps=-1.0), ValueError, "eps"),
    "pgd steps=2.5": (lambda: A.pgd(NET, X, steps=2.5), TypeError, "steps"),
    "deepfool candidates=1": (lambda: A.deepfool(NET, X, candidates=1), ValueError, "candidates must be >= 2"),
    "deepfool overshoot=nan": (lambda: A.deepfool(NET, X, overshoot=math.nan), ValueError, "overshoot"),
    "deepfool regressor": (lambda: A.deepfool(REG, X), ValueError, "one-output regressor"),
    "universal candidates=1": (lambda: A.universal_perturbation(NET, X4, delta=0.5, candidates=1), ValueError,
                               "candidates"),
    "universal empty images": (lambda: A.universal_perturbation(NET, X[:0]), ValueError, "images is an empty batch"),
    "fooling_image image_size=0": (lambda: A.fooling_image(NET, 1, image_size=0), ValueError, "image_size"),
    "fooling_image channels=0": (lambda: A.fooling_image(NET, 1, image_size=16, channels=0), ValueError, "channels"),
    "fooling_image target=1.5": (lambda: A.fooling_image(NET, 1.5, image_size=16), TypeError, "target"),
    "fooling_image regressor": (lambda: A.fooling_image(REG, 0, image_size=16), ValueError, "regressor"),
    "fooling_rate v shape": (lambda: A.fooling_rate(NET, X4, torch.zeros(1, 3, 8, 8)), ValueError, "v has shape"),
    "transfer_matrix models={}": (lambda: A.transfer_matrix({}, X4), ValueError, "models is empty"),
    "transfer_matrix perturbation shape": (
        lambda: A.transfer_matrix({"a": NET}, X4, perturbations={"a": torch.zeros(1, 3, 8, 8)}), ValueError,
        r"perturbations\['a'\]"),
    # features
    "maximize lr=-1": (lambda: _max(lr=-1.0), ValueError, "lr"),
    "maximize lr=nan": (lambda: _max(lr=math.nan), ValueError, "lr"),
    "maximize batch=0": (lambda: _max(batch=0), ValueError, "batch"),
    "maximize tv=nan": (lambda: _max(tv=math.nan), ValueError, "tv"),
    "maximize blur_sigma=0": (lambda: _max(blur_every=1, blur_sigma=0.0), ValueError, "blur_sigma"),
    "maximize channels=1": (lambda: _max(channels=1), ValueError, "channels=1"),
    "maximize 20000 channels": (lambda: _max(F.channel(CONV, list(range(20000)))), ValueError,
                                "channel 16 does not exist"),
    "maximize init shape": (lambda: _max(param="pixel", init=torch.rand(3, 5, 5)), ValueError, "init"),
    "channel index 1.5": (lambda: F.channel(CONV, 1.5), TypeError, "channel"),
    "direction NaN vector": (lambda: F.direction(CONV, [math.nan] * 16), ValueError, "vector"),
    "receptive_field image_size=0": (lambda: F.receptive_field(NET, CONV, 0), ValueError, "image_size"),
    "receptive_field image_size=1.5": (lambda: F.receptive_field(NET, CONV, 1.5), ValueError, "image_size"),
    "receptive_field too small": (lambda: F.receptive_field(NET, "classifier.fc1", 1, method="empirical"),
                                  ValueError, "image_size=.1, 1."),
    "receptive_field channels=0": (lambda: F.receptive_field(NET, CONV, 16, channels=0), ValueError, "channels"),
    "top_patches channels=[]": (lambda: F.top_patches(NET, CONV, X4, channels=[]), ValueError, "channels"),
    "top_patches duplicate channels": (lambda: F.top_patches(NET, CONV, X4, channels=[1, 1]), ValueError, "twice"),
    "top_patches batch_size=0": (lambda: F.top_patches(NET, CONV, X4, batch_size=0), ValueError, "batch_size"),
    "top_patches empty data": (lambda: F.top_patches(NET, CONV, X4[:0]), ValueError, "data is empty"),
    "top_patches NaN images": (lambda: F.top_patches(NET, CONV, XNAN), ValueError, "NaN"),
    "feature_maps numpy image": (lambda: F.feature_maps(NET, X[0].numpy(), CONV), TypeError, "image"),
    "feature_maps 1-channel image": (lambda: F.feature_maps(NET, X[0, :1], CONV), ValueError, "image.*channels"),
    # GradSUM
    "gradsum indices=[99]": (lambda: _gradsum(indices=[99]), ValueError, r"indices \[99\]"),
    "gradsum indices=[-1]": (lambda: _gradsum(indices=[-1]), ValueError, r"indices \[-1\]"),
    "gradsum duplicate indices": (lambda: _gradsum(indices=[0, 0]), ValueError, "listed twice in indices"),
    "gradsum indices=[0.5]": (lambda: _gradsum(indices=[0.5]), TypeError, "indices"),
    "gradsum label_table='nosuch'": (lambda: _gradsum(label_table="nosuch"), ValueError, "label_table 'nosuch'"),
    "gradsum label_table=5": (lambda: _gradsum(label_table=5), TypeError, "label_table"),
    "gradsum method=[]": (lambda: _gradsum(method=[]), ValueError, "method"),
    "gradsum baseline=1.5": (lambda: _gradsum(baseline=1.5), TypeError, "baseline"),
    "gradsum dataset tensor": (lambda: _gradsum(X), TypeError, "dataset"),
    "gradsum target='label' on regression data": (lambda: _gradsum(STEER, target="label"), ValueError,
                                                  "target='label'.*float"),
    "gradsum float segmentation 1.5": (lambda: _gradsum(_seg_samples(torch.full((16, 32), 1.5)), label_table="roads"),
                                       ValueError, "segmentation.*non-integer"),
    "label_sums NaN maps": (lambda: gs.semantic.label_sums(MAPS_NAN, SEG, LabelIndex.of(gs.semantic.ROADS),
                                                           normalize="minmax"), ValueError, "NaN"),
    "profile_maps 3 ids for 2 maps": (lambda: gs.semantic.profile_maps(MAPS, SEG, "roads", ["a", "b", "c"]),
                                      ValueError, "image_ids"),
    # data
    "collate one Sample": (lambda: collate(ROADS[0]), TypeError, "list of Samples"),
    "collate tensors": (lambda: collate([X[0]]), TypeError, r"samples\[0\]"),
    "collate float segmentation": (lambda: collate([Sample(torch.rand(3, 4, 4), "a", torch.full((4, 4), 0.5))]),
                                   ValueError, "segmentation.*non-integer"),
    "collate segmentation size": (lambda: collate([Sample(torch.rand(3, 4, 4), "a", torch.zeros(5, 5).long())]),
                                  ValueError, "segmentation"),
    "collate boxes (N,3)": (lambda: collate([Sample(torch.rand(3, 4, 4), "a", boxes=torch.zeros(2, 3))]),
                            ValueError, "boxes"),
    "collate uint8 image": (lambda: collate([Sample(torch.zeros(3, 4, 4, dtype=torch.uint8), "a")]), TypeError,
                            "image"),
    "Compose([1])": (lambda: T.Compose([1]), TypeError, "transform 0"),
    "Compose(Resize)": (lambda: T.Compose(T.Resize(8)), TypeError, "list of transforms"),
    "Resize 2-D image": (lambda: T.Resize(8)(Sample(torch.rand(16, 16), "a")), ValueError, "image"),
    # training
    "fit lr=nan": (lambda: gs.train.fit(_model(2), ROADS, task="classification", lr=math.nan, progress=False),
                   ValueError, "lr"),
    "fit weight_decay=-1": (lambda: gs.train.fit(_model(2), ROADS, task="classification", weight_decay=-1.0,
                                                 progress=False), ValueError, "weight_decay"),
    "fit class_weights length": (lambda: gs.train.fit(_model(2), ROADS, task="classification", epochs=1,
                                                      class_weights=[1.0, 1.0, 1.0], progress=False),
                                 ValueError, "class_weights"),
    "fit negative class_weights": (lambda: gs.train.fit(_model(2), ROADS, task="classification",
                                                        class_weights=[1.0, -1.0], progress=False),
                                   ValueError, "class_weights"),
    "fit device='bogus'": (lambda: gs.train.fit(_model(2), ROADS, task="classification", device="bogus",
                                                progress=False), ValueError, "device"),
    "fit model str": (lambda: gs.train.fit("digitsnet", ROADS), TypeError, "model"),
    "fit train tensor": (lambda: gs.train.fit(_model(2), X4, task="classification", progress=False), TypeError,
                         "train"),
    "subset indices=[99]": (lambda: gs.train.subset(ROADS, [99]), ValueError, r"indices \[99\]"),
    # viz
    "colorize cmap='nosuch'": (lambda: gs.viz.colorize(MAPS[0], cmap="nosuch"), ValueError, "cmap"),
    "colorize NaN heatmap": (lambda: gs.viz.colorize(MAPS_NAN[1]), ValueError, "heatmap.*NaN"),
    "colorize empty heatmap": (lambda: gs.viz.colorize(torch.zeros(0, 0)), ValueError, "heatmap is empty"),
    "grid max_images=0": (lambda: gs.viz.grid(X, {"m": MAPS}, max_images=0), ValueError, "max_images"),
    "grid titles": (lambda: gs.viz.grid(X, {"m": MAPS}, titles=["a"]), ValueError, "titles"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_error(name: str) -> None:
    call, exc_type, pattern = CASES[name]
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert re.search(pattern, message, flags=re.IGNORECASE | re.DOTALL), message
    # raised by gradsum itself, not from inside torch / numpy
    tb = info.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert "/gradsum/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"), tb.tb_frame.f_code.co_filename


# --------------------------------------------------------------------------- valid inputs work


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_metrics_cast_images_to_the_model_dtype_and_say_so(dtype: torch.dtype) -> None:
    ref = M.deletion(NET, X, MAPS, steps=4)
    res = M.deletion(NET, X.to(dtype), MAPS, steps=4)
    assert str(dtype).replace("torch.", "") in str(res.settings.get("input_cast"))
    if dtype == torch.float64:  # exactly the float32 computation: X is representable in float32
        torch.testing.assert_close(res.values, ref.values)


def test_numpy_targets_work_in_metrics_and_attacks() -> None:
    a = M.average_drop(NET, X, MAPS, target=np.int64(3))
    b = M.average_drop(NET, X, MAPS, target=3)
    torch.testing.assert_close(a.values, b.values, equal_nan=True)
    c = M.deletion(NET, X, MAPS, steps=4, target=np.array([1, 2]))
    d = M.deletion(NET, X, MAPS, steps=4, target=[1, 2])
    torch.testing.assert_close(c.values, d.values)
    torch.testing.assert_close(A.fgsm(NET, X, np.int64(3)), A.fgsm(NET, X, 3))
    torch.testing.assert_close(A.fgsm(NET, X, np.array([1, 2])), A.fgsm(NET, X, torch.tensor([1, 2])))


def test_attacks_keep_the_input_dtype() -> None:
    adv = A.fgsm(NET, X.double())
    assert adv.dtype == torch.float64
    torch.testing.assert_close(adv.float(), A.fgsm(NET, X))
    res = A.deepfool(NET, X.double(), max_iter=2)
    assert res.adversarial.dtype == torch.float64 and res.perturbation.dtype == torch.float64


def test_pgd_l2_budget_is_judged_by_the_l2_rule() -> None:
    adv = A.pgd(NET, X, norm=2, eps=5.0, alpha=1.0, steps=3)
    dist = (adv - X).flatten(1).norm(dim=1)
    assert bool((dist <= 5.0 + 1e-4).all()) and bool((dist > 0.5).all())
    r = A.universal_perturbation(NET, X4, p=2, xi=5.0, delta=0.5, max_passes=1, max_iter=3)
    assert r.norm <= 5.0 + 1e-4


def test_gradsum_takes_a_table_name_and_integral_float_segmentation() -> None:
    by_name = _gradsum(label_table="roads")
    by_table = _gradsum(label_table=gs.semantic.ROADS)
    assert by_name.images.equals(by_table.images)
    ints = _seg_samples(torch.randint(0, 3, (16, 32), generator=torch.Generator().manual_seed(0)))
    floats = [Sample(s.image, s.id, s.segmentation.float(), target=s.target) for s in ints]
    a = _gradsum(ints, label_table="roads")
    b = _gradsum(floats, label_table="roads")
    assert a.images.equals(b.images)


def test_gradsum_numpy_target_and_label_target() -> None:
    a = _gradsum(target=np.int64(1))
    b = _gradsum(target=1)
    assert a.images.equals(b.images)
    labels = _gradsum(target="label")
    assert set(labels.images["target"]) <= {0, 1}


def test_maximize_refuses_a_wrong_channel_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsum.features import activation_max

    def no_param(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the images were allocated before the objective was checked")

    monkeypatch.setattr(activation_max, "make_param", no_param)
    with pytest.raises(ValueError, match="channel 16 does not exist"):
        _max(F.channel(CONV, list(range(20000))))


# --------------------------------------------------------------------------- properties

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda t: not 0.0 <= t <= 1.0),
                 st.just(math.nan)))
def test_gradsum_rejects_any_threshold_outside_0_1(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        _gradsum(threshold=threshold)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda e: not 0.0 <= e <= 1.0))
def test_linf_budgets_outside_0_1_are_refused(eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        A.fgsm(NET, X, eps=eps)


@FAST
@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_any_finite_l2_budget_is_accepted(eps: float) -> None:
    from gradsum.adversarial._common import check_budget

    assert check_budget(eps, "2") == eps


@FAST
@given(st.lists(st.integers(-10, 10), min_size=1, max_size=6))
def test_gradsum_indices_must_be_distinct_positions(indices: list[int]) -> None:
    from gradsum.semantic.engine import _check_indices

    n = 4
    valid = all(0 <= i < n for i in indices) and len(set(indices)) == len(indices)
    if valid:
        assert _check_indices(indices, n) == indices
    else:
        with pytest.raises(ValueError, match="indices"):
            _check_indices(indices, n)


@FAST
@given(st.floats(min_value=-3, max_value=40, allow_nan=False, width=32).filter(lambda v: v != round(v)))
def test_float_segmentation_ids_are_never_truncated(value: float) -> None:
    seg = torch.zeros(2, 16, 16)
    seg[0, 0, 0] = value
    with pytest.raises(ValueError, match="non-integer label ids"):
        gs.semantic.label_sums(MAPS, seg, LabelIndex.of(gs.semantic.ROADS))


@FAST
@given(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True))
def test_integral_float_segmentation_equals_the_integer_one(ids: list[int]) -> None:
    index = LabelIndex.of(gs.semantic.ROADS)
    valid = [i for i in ids if i in gs.semantic.ROADS.ids] or [0]
    seg = torch.tensor(valid)[torch.arange(2 * 16 * 16) % len(valid)].reshape(2, 16, 16)
    a = gs.semantic.label_sums(MAPS, seg, index, normalize="minmax")
    b = gs.semantic.label_sums(MAPS, seg.double(), index, normalize="minmax")
    torch.testing.assert_close(a.mass, b.mass)
    torch.testing.assert_close(a.pixels, b.pixels)
