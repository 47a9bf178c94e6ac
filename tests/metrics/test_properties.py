"""Property tests: per-image metrics do not depend on the batch they are computed in, stay
in range, and are invariant to positive scaling of the maps."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradsum.metrics import attribution_auc, bbox, ebpg, pointing_game, relevance_mass, sparseness


@st.composite
def maps_and_masks(draw):
    b = draw(st.integers(1, 4))
    h = draw(st.integers(2, 9))
    w = draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(b, h, w, generator=g)
    masks = torch.rand(b, h, w, generator=g) > 0.5
    masks[:, 0, 0] = True  # never empty
    masks[:, -1, -1] = False  # never full
    return maps, masks


@pytest.mark.filterwarnings("ignore::gradsum.metrics.MetricWarning")  # NaN cases are compared with equal_nan
@settings(max_examples=40, deadline=None)
@given(maps_and_masks(), st.floats(0.1, 10.0))
def test_localisation_batch_invariance_range_and_scaling(data, scale):
    maps, masks = data
    for fn in (ebpg, bbox, pointing_game, attribution_auc):
        full = fn(maps, masks).values
        singles = torch.cat([fn(maps[i : i + 1], masks[i : i + 1]).values for i in range(maps.shape[0])])
        assert torch.allclose(full, singles, equal_nan=True)
        finite = full[torch.isfinite(full)]
        assert ((finite >= 0) & (finite <= 1 + 1e-6)).all()
        assert torch.allclose(fn(maps * scale, masks).values, full, atol=1e-5, equal_nan=True)
    rm = relevance_mass(maps, masks).values
    # sum_in M / sum M: where a signed map's total nearly cancels, float32 rounding of the
    # scaled map is amplified without bound, so compare where the denominator is well conditioned
    conditioned = maps.flatten(1).sum(1).abs() > 0.1 * maps.flatten(1).abs().sum(1)
    assert torch.allclose(relevance_mass(maps * scale, masks).values[conditioned], rm[conditioned], rtol=1e-4,
                          atol=1e-5, equal_nan=True)
    s = sparseness(maps).values
    assert ((s >= 0) & (s <= 1)).all()
