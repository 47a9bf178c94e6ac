"""Our metrics against peer libraries on the same inputs, where the definitions coincide.

- Quantus 0.6: RelevanceMassAccuracy, RelevanceRankAccuracy, PointingGame (weighted=False,
  i.e. no tolerance), Sparseness, Complexity — all with normalise=False so both sides see the
  same raw maps (abs=True for the complexity metrics, which is their definition: |map|).
  Quantus' Sparseness adds 1e-7 to every value before the Gini index; that shifts the
  number by ~1e-7 / mean|m|, far below the tolerance used.
- torchcam 0.5 `ClassificationMetric` (average drop, increase in confidence): it multiplies
  the input by the extractor's (min-max normalised) CAM and compares softmax scores of the
  top class; it reports fractions (we report %) and divides by Y + 1e-7.
- torchcam 0.5 `DeletionInsertionMetric`: same RISE game (pixels ranked by the map, all
  channels together, k grows by ceil(N/steps), trapezoid over the fraction), but ONE baseline
  for both curves; we compare with both of our substrates set to that baseline (zeros, then
  our blurred copy passed to torchcam as a callable). Maps without ties, so tie-breaking
  (ours seeded, theirs stable) cannot matter.
- pytorch-grad-cam `NoisyLinearImputer` (ROAD): with noise=0 its per-image sparse solve and
  our batched conjugate gradient must give the same imputed image.
"""
from __future__ import annotations

import contextlib
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from gradsum.core.normalize import normalize_maps
from gradsum.metrics import (
    complexity,
    confidence_change,
    deletion_insertion,
    gaussian_blur,
    noisy_linear_impute,
    pointing_game,
    relevance_mass,
    relevance_rank,
    sparseness,
)

quantus = pytest.importorskip("quantus")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 1, 12, 12)).astype(np.float32) + 0.5  # signed, no ties
    a[5] = np.abs(a[5])
    s = (rng.random((6, 1, 12, 12)) > 0.7).astype(np.float32)
    s[0, 0, :4, :4] = 1  # a block, plus scattered pixels
    x = rng.random((6, 3, 12, 12)).astype(np.float32)
    return a, s, x


def _quantus(metric, a, s, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=None, x_batch=x, y_batch=np.zeros(len(a), dtype=int), a_batch=a.copy(), s_batch=s, device="cpu")
    return np.asarray(out, dtype=np.float64)


def test_relevance_mass_matches_quantus(batch):
    a, s, x = batch
    ref = _quantus(quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True), a, s, x)
    ours = relevance_mass(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0)).values.double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_relevance_rank_matches_quantus(batch):
    a, s, x = batch
    ref = _quantus(quantus.RelevanceRankAccuracy(normalise=False, abs=False, disable_warnings=True), a, s, x)
    ours = relevance_rank(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0)).values.double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_pointing_game_matches_quantus(batch):
    a, s, x = batch
    a = a.copy()
    a[2, 0, 0, 0] = a[2].max() + 1  # make sure both hits and misses occur
    s = s.copy()
    s[2, 0, 0, 0] = 1
    s[3, 0] = 0
    s[3, 0, 11, 11] = 1
    ref = _quantus(quantus.PointingGame(normalise=False, abs=False, disable_warnings=True), a, s, x)
    ours = pointing_game(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0)).values.double().numpy()
    assert 0 < ref.sum() < len(ref)
    np.testing.assert_array_equal(ours, ref)


def test_sparseness_matches_quantus(batch):
    a, s, x = batch
    ref = _quantus(quantus.Sparseness(normalise=False, abs=True, disable_warnings=True), a, s, x)
    ours = sparseness(torch.from_numpy(a[:, 0])).values.double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_complexity_matches_quantus(batch):
    a, s, x = batch
    ref = _quantus(quantus.Complexity(normalise=False, abs=True, disable_warnings=True), a, s, x)
    ours = complexity(torch.from_numpy(a[:, 0])).values.double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


class _FixedMaps:
    """A torchcam CAM extractor stand-in that returns given (min-max normalised) maps, so
    both libraries score exactly the same explanation."""

    def __init__(self, model: nn.Module, maps: torch.Tensor):
        self.model = model
        self.maps = maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [normalize_maps(self.maps, "minmax")]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def test_average_drop_and_increase_match_torchcam():
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5)
    ).eval()
    with torch.no_grad():
        model[-1].weight.mul_(8)
        model[0].bias.fill_(-0.3)
    x = torch.rand(16, 3, 10, 10) * 2
    maps = torch.randn(16, 10, 10)
    metric = torchcam_metrics.ClassificationMetric(_FixedMaps(model, maps), partial(torch.softmax, dim=-1))
    metric.update(x)
    ref = metric.summary()
    drop, inc = confidence_change(model, x, maps, score="probability", normalize="minmax")
    assert 0 < inc.aggregate < 100  # both outcomes occur, so the comparison means something
    assert drop.aggregate == pytest.approx(100 * ref["avg_drop"], rel=1e-5)
    assert inc.aggregate == pytest.approx(100 * ref["conf_increase"], rel=1e-6)


def test_noisy_linear_imputation_matches_pytorch_grad_cam():
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(4, 3, 16, 16, generator=g)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 1, 4, 4, generator=g), size=(16, 16), mode="bilinear")[:, 0]
    removed = torch.stack(
        [
            torch.rand(16, 16, generator=g) < 0.3,  # scattered
            smooth[1] > smooth[1].median(),  # a blob (MoRF 50%)
            smooth[2] < smooth[2].quantile(0.9),  # 90% removed
            torch.zeros(16, 16, dtype=torch.bool).index_fill_(0, torch.tensor([0, 15]), True),  # borders
        ]
    )
    ours = noisy_linear_impute(imgs.double(), removed, noise=0.0, tol=1e-12)
    imputer = road.NoisyLinearImputer(noise=0.0)
    for i in range(4):
        ref = imputer(imgs[i], (~removed[i]).float())  # grad-cam's mask: 1 = keep
        torch.testing.assert_close(ours[i].float(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("substrate", ["zeros", "blur"])
def test_deletion_insertion_match_torchcam(substrate):
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5)
    ).eval()
    with torch.no_grad():
        model[-1].weight.mul_(8)
    x = torch.rand(6, 3, 12, 12)
    maps = torch.rand(6, 12, 12)  # continuous: no ties
    baseline = None if substrate == "zeros" else gaussian_blur
    metric = torchcam_metrics.DeletionInsertionMetric(
        _FixedMaps(model, maps), partial(torch.softmax, dim=-1), steps=10, baseline=baseline, batch_size=16
    )
    metric.update(x)
    ref = metric.summary()
    ours = deletion_insertion(
        model, x, maps, steps=10, score="probability", deletion_substrate=substrate, insertion_substrate=substrate
    )
    assert ours["deletion"].aggregate == pytest.approx(ref["deletion_auc"], rel=1e-5)
    assert ours["insertion"].aggregate == pytest.approx(ref["insertion_auc"], rel=1e-5)
