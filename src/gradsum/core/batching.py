"""The batched engine: evaluate a model on many inputs built on the fly, in chunks.

Every perturbation method (thousands of masked copies per image) and every
perturbation-based metric goes through `batched_scores`. It runs under
`torch.inference_mode()`, never synchronises with the host per sample, adapts the chunk
size to memory (`batch_size="auto"`: start large, halve on out-of-memory) and reports
progress through a callback.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from gradsum.core.layout import in_preferred_layout

__all__ = ["batched_scores", "BatchSize", "Progress", "auto_batch_size", "is_out_of_memory"]

BatchSize = int | Literal["auto"]
Progress = Callable[[int, int], None]

_AUTO_START = {"cpu": 64, "cuda": 512, "mps": 256}


#: pixels per chunk the "auto" start is sized for (64 images of 224x224 on the CPU): larger
#: inputs get proportionally fewer per chunk, so a 1024x768 photo never runs 64 copies at once
_AUTO_PIXELS = 224 * 224


def auto_batch_size(device: torch.device, n: int, pixels: int | None = None) -> int:
    """The first chunk size tried by batch_size="auto" on `device` for `n` items of `pixels`
    pixels each (H*W; None: not known): 64 on CPU, 512 on CUDA, for 224x224 inputs, scaled
    down for larger inputs."""
    start = _AUTO_START.get(device.type, 64)
    if pixels is not None and pixels > _AUTO_PIXELS:
        start = max(1, start * _AUTO_PIXELS // pixels)
    return max(1, min(n, start))


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _check_batch_size(batch_size: BatchSize) -> None:
    if batch_size == "auto":
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or 'auto'; got {batch_size!r}")


def batched_scores(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    n: int,
    make_inputs: Callable[[int, int], torch.Tensor],
    score: Callable[[torch.Tensor, int, int], torch.Tensor],
    *,
    batch_size: BatchSize = "auto",
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Evaluate `score(model(make_inputs(start, stop)), start, stop)` for items [0, n).

    make_inputs(start, stop) builds the perturbed inputs of items start..stop-1 (on the
    device); score(output, start, stop) turns the model output of those items into a tensor
    whose first dimension is stop - start. Results are concatenated along dim 0 into one
    preallocated tensor. batch_size: an int, or "auto" (64 on CPU, 512 on CUDA for 224x224
    inputs, fewer for larger ones, halved while the device runs out of memory).
    progress(done, n) is called after each chunk.
    A module gets each chunk in its preferred memory layout (`gradsum.core.layout`).
    """
    _check_batch_size(batch_size)
    if n <= 0:
        raise ValueError(f"batched_scores needs at least one item; got n={n}")
    if device is None:
        first_param = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        device = first_param.device if first_param is not None else torch.device("cpu")
    device = torch.device(device)
    size = auto_batch_size(device, n) if batch_size == "auto" else min(batch_size, n)
    out: torch.Tensor | None = None
    start = 0
    with torch.inference_mode():
        while start < n:
            stop = min(n, start + size)
            try:
                inputs = make_inputs(start, stop)
                if batch_size == "auto" and start == 0 and inputs.ndim == 4:
                    fits = auto_batch_size(device, n, inputs.shape[-2] * inputs.shape[-1])
                    if fits < size:  # large images: fewer per chunk from the first one on
                        size, stop = fits, fits
                        inputs = inputs[:fits]
                output = in_preferred_layout(model, inputs, model) if isinstance(model, nn.Module) else model(inputs)
                values = score(output, start, stop)
            except Exception as exc:  # halve on out-of-memory, re-raise anything else
                if batch_size == "auto" and is_out_of_memory(exc) and size > 1:
                    size = max(1, size // 2)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                raise
            if values.shape[0] != stop - start:
                raise ValueError(
                    f"score() returned {values.shape[0]} rows for {stop - start} inputs; it must return one per input"
                )
            if out is None:
                out = torch.empty((n, *values.shape[1:]), dtype=values.dtype, device=values.device)
            out[start:stop] = values
            start = stop
            if progress is not None:
                progress(start, n)
    assert out is not None
    return out
