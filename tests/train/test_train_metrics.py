"""Confusion matrix and evaluate() on hand-computed cases."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum.train as T
from gradsum.data.samples import Sample


def test_confusion_matrix_hand_case() -> None:
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    true = torch.tensor([0, 0, 1, 2, 2, 1])
    expected = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 2]])
    assert torch.equal(T.confusion_matrix(pred, true, 3), expected)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        T.confusion_matrix(pred, torch.tensor([0, 0, 1, 2, 2, 5]), 3)


class ChannelArgmax(nn.Module):
    """Logits = the per-channel mean: predicts the brightest channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_evaluate_confusion_and_accuracy_by_hand() -> None:
    # (true class, brightest channel) pairs
    cases = [(0, 0), (0, 1), (1, 1), (2, 2), (2, 2), (1, 2)]
    data = []
    for i, (true, bright) in enumerate(cases):
        img = torch.zeros(3, 4, 4)
        img[bright] = 1.0
        data.append(Sample(image=img, id=str(i), target=true))
    model = ChannelArgmax().train()
    metrics, cm = T.evaluate(model, data, task="classification", batch_size=4)
    assert torch.equal(cm, torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 2]]))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert model.training  # evaluate restores the mode


def test_evaluate_regression_by_hand() -> None:
    data = [Sample(image=torch.full((3, 2, 2), v), id=str(i), target=t) for i, (v, t) in enumerate([(0.5, 0.0), (1.0, 0.0)])]
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    with torch.no_grad():
        model[1].weight.fill_(1 / 12)
        model[1].bias.zero_()
    metrics, cm = T.evaluate(model, data, task="regression")
    assert cm is None
    assert metrics["mae"] == pytest.approx(0.75)
    assert metrics["rmse"] == pytest.approx(((0.25 + 1.0) / 2) ** 0.5)
    assert metrics["loss"] == pytest.approx((0.25 + 1.0) / 2)
