"""Thread settings for a block of code."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["one_intra_op_thread"]


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[int]:
    """torch.set_num_threads(1) for the block (yields the previous count), restored after,
    also when the block raises. The surveys' tensors are small: one thread per model beats
    two threads per op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)
