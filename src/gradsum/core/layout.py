"""The memory layout of input batches: channels-last where it makes the passes cheaper.

On CPU, oneDNN's convolutions run forward and backward 15-25% faster on channels-last
(NHWC) float32 tensors than on the default NCHW layout (resnet50 batch 32: 4.5 s vs 5.9 s for
a forward + input-gradient pass on 2 cores; `benchmarks/bench_methods.py` shows the effect per
method), from a batch of MIN_BATCH images up. Every batch that goes into the model decides
for itself (IG's path points and SmoothGrad's noisy copies are large batches even for one
image). Only the input's strides change: every value, shape and index stays the same, and the
layout propagates through the network by itself. A model that calls `.view` on an activation
cannot take such input; it is then run as given, and remembered.

    set_channels_last(False)   # run every model on its input exactly as given
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["in_preferred_layout", "prefers_channels_last", "set_channels_last", "MIN_BATCH"]

T = TypeVar("T")
_settings = {"channels_last": True}
#: smallest batch sent channels-last: at batch 1 NHWC was no faster (resnet50 224x224 on 2 cores:
#: forward + input gradient 1.00x, forward alone 1.13x), from batch 8 it was 0.76-0.9x
MIN_BATCH = 4
_refuses: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models whose forward rejected NHWC input


def set_channels_last(enabled: bool) -> None:
    """Switch the channels-last input layout on (default) or off for every method."""
    _settings["channels_last"] = bool(enabled)


def prefers_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """True when `x` should be fed to `model` as channels-last: a 4-D float32 CPU batch of at
    least MIN_BATCH images with more than one channel, the switch on, and the model not known
    to reject it."""
    return (
        _settings["channels_last"]
        and x.ndim == 4
        and x.shape[0] >= MIN_BATCH
        and x.shape[1] > 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and model not in _refuses
    )


def _is_layout_error(error: RuntimeError) -> bool:
    text = str(error)
    return "view size is not compatible" in text or "Use .reshape" in text


def in_preferred_layout(model: nn.Module, x: torch.Tensor, run: Callable[[torch.Tensor], T]) -> T:
    """`run(x)` with x in the layout that makes `model` fastest here. If the model rejects
    channels-last input (a `.view` on a non-contiguous activation), `run` is repeated on x as
    given and the model remembered, so it never costs a failed pass twice."""
    if not prefers_channels_last(model, x):
        return run(x)
    try:
        return run(x.contiguous(memory_format=torch.channels_last))
    except RuntimeError as error:
        if not _is_layout_error(error):
            raise
        _refuses.add(model)
        return run(x)

