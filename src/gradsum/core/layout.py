"""The memory layout of input batches: channels-last where it makes the passes cheaper.

On CPU, oneDNN's convolutions run forward and backward 15-25% faster on channels-last
(NHWC) float32 tensors than on the default NCHW layout (resnet50 batch 32: 4.5 s vs 5.9 s for
a forward + input-gradient pass on 2 cores; `benchmarks/bench_methods.py` shows the effect per
method). Only the input's strides change: every value, shape and index stays the same, and the
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

__all__ = ["in_preferred_layout", "like_layout", "prefers_channels_last", "set_channels_last"]

T = TypeVar("T")
_settings = {"channels_last": True}
_refuses: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models whose forward rejected NHWC input


def set_channels_last(enabled: bool) -> None:
    """Switch the channels-last input layout on (default) or off for every method."""
    _settings["channels_last"] = bool(enabled)


def prefers_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """True when `x` should be fed to `model` as channels-last: a 4-D float32 CPU batch with
    more than one channel, the switch on, and the model not known to reject it."""
    return (
        _settings["channels_last"]
        and x.ndim == 4
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


def like_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` in `like`'s layout (channels-last or default): batches built from an input (IG's
    path points, SmoothGrad's noisy copies) keep the layout chosen for that input."""
    if like.ndim == 4 and t.ndim == 4 and not like.is_contiguous() and like.is_contiguous(
            memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    return t
