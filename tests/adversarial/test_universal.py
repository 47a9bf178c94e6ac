"""Universal perturbations, fooling rate and the transfer matrix."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

import gradsum.adversarial as ga


@pytest.mark.parametrize("p,xi", [("inf", 0.25), (2, 4.0)])
def test_universal_reaches_rate_within_xi(digits_model, p, xi):
    model, x, _, _ = digits_model
    images = x[:40]
    res = ga.universal_perturbation(model, images, xi=xi, p=p, delta=0.5, max_passes=4, seed=0)
    size = float(res.v.abs().max()) if p == "inf" else float(res.v.flatten().norm())
    assert size <= xi + 1e-5 and res.norm == pytest.approx(size)
    assert res.fooling_rate == pytest.approx(ga.fooling_rate(model, images, res.v))
    assert res.reached == (res.fooling_rate >= 0.5)
    assert res.reached, res.summary()
    assert res.passes == len(res.history) <= 4


def test_universal_reports_when_rate_not_reached(digits_model):
    model, x, _, _ = digits_model
    res = ga.universal_perturbation(model, x[:20], xi=1 / 255, delta=0.05, max_passes=1)
    assert not res.reached and res.fooling_rate < 0.95
    assert float(res.v.abs().max()) <= 1 / 255 + 1e-7
    assert "NOT reached" in res.summary()


def test_universal_bad_inputs(digits_model):
    model, x, _, _ = digits_model
    with pytest.raises(ValueError, match="needs at least 10 images for delta=0.1"):
        ga.universal_perturbation(model, x[:6], delta=0.1)
    with pytest.raises(ValueError, match=r"xi must be in \[0,1\]"):
        ga.universal_perturbation(model, x[:10], xi=2.0)
    with pytest.raises(ValueError, match="delta"):
        ga.universal_perturbation(model, x[:10], delta=0)
    with pytest.raises(ValueError, match="p must be"):
        ga.universal_perturbation(model, x[:10], p=1)


def test_fooling_rate_counts_label_changes(digits_model):
    model, x, _, _ = digits_model
    assert ga.fooling_rate(model, x[:10], torch.zeros(1, 3, 16, 16)) == 0.0
    with torch.no_grad():
        clean = model(x[:10]).argmax(1)
        changed = model(torch.ones_like(x[:10])).argmax(1) != clean
    assert ga.fooling_rate(model, x[:10], torch.ones(1, 3, 16, 16)) == pytest.approx(float(changed.float().mean()))


def test_transfer_matrix_uses_same_images_for_every_cell(digits_model, second_digits_model):
    model, x, _, _ = digits_model
    models = {"a": model, "b": second_digits_model}
    images, evals = x[:10], x[20:50]
    tm = ga.transfer_matrix(models, images, eval_images=evals, xi=0.2, delta=0.5, max_passes=1, seed=0)
    assert list(tm.table.index) == ["a", "b"] and list(tm.table.columns) == ["a", "b"]
    for s in models:
        for t in models:
            assert tm.table.loc[s, t] == pytest.approx(ga.fooling_rate(models[t], evals, tm.perturbations[s]))
    assert tm.n_images == 30
    assert isinstance(tm.figure(), Figure)
    given = ga.transfer_matrix(models, images, perturbations=tm.perturbations)
    assert given.results == {}
    with pytest.raises(ValueError, match="unknown models"):
        ga.transfer_matrix(models, images, perturbations={"c": tm.perturbations["a"]})
