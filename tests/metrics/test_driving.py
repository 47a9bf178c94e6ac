"""NVIDIA's autonomy metric, checked by hand."""
from __future__ import annotations

import pytest
import torch

from gradsum.metrics import autonomy


def test_the_worked_example_gives_forty_percent():
    actual = torch.zeros(100)
    predicted = torch.zeros(100)
    predicted[[10, 11, 12, 50]] = 1.0  # off by more than the threshold at frames 10-12 and 50
    result = autonomy(predicted, actual, fps=10, threshold=0.5)
    assert result.interventions == 1 and result.starts == [10] and result.elapsed_seconds == 10
    assert result.percent == pytest.approx(40.0)


def test_interventions_after_the_first_one_ends_count_again():
    actual = [0.0] * 200
    predicted = [0.0] * 200
    for frame in (0, 59, 60, 150):  # 59 is inside the first take-over (frames 0-59), 60 is not
        predicted[frame] = -2.0
    result = autonomy(predicted, actual, fps=10, threshold=1.0, intervention_seconds=6)
    assert result.starts == [0, 60, 150] and result.percent == pytest.approx((1 - 3 * 6 / 20) * 100)
    assert autonomy(actual, actual, fps=10, threshold=0.0).percent == 100.0  # never off: 100%


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one value per frame each; got 3 and 2"):
        autonomy([0, 0, 0], [0, 0], fps=10, threshold=1)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        autonomy([0.0], [0.0], fps=0, threshold=1)
    with pytest.raises(ValueError, match="NaN"):
        autonomy([float("nan")], [0.0], fps=1, threshold=1)
