"""Metrics tests run single-threaded: on the shared 2-core machine, torch's intra-op
threads fight the other test processes and make these small tensors 10x slower."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
