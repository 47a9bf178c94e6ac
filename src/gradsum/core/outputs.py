"""Which tensor of a model's output gradsum explains, when the output is a dict, tuple or list.

torchvision segmentation models return ``{"out": (B,K,H,W), "aux": ...}``, detectors and
multi-head nets return tuples or dicts. Every method, metric and attack works on ONE tensor;
`select_output` picks it:

- ``output=None`` (default): the tensor itself; for a dict the entry ``"out"`` (torchvision's
  segmentation convention) or its only tensor; for a tuple/list its only tensor. Anything
  ambiguous is an error that lists the keys (or positions) and their shapes.
- a key (str) of a dict, an index (int) of a tuple/list, or a callable ``output -> tensor``.

`selected_output(model, output)` applies the selection to every call of `model` during a
block (a forward hook on the model itself, removed afterwards), so that the code inside sees
a plain tensor; gradsum's explainers, metrics and attacks open it for the caller.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["OutputSpec", "select_output", "selected_output", "check_output_spec", "describe_output"]

OutputSpec = None | str | int | Callable[[Any], torch.Tensor]
_active: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models inside a selected_output block


def describe_output(output: Any) -> str:
    """'dict with out (2, 21, 64, 64), aux (2, 21, 64, 64)' and the like, for messages."""
    if isinstance(output, torch.Tensor):
        return f"tensor {tuple(output.shape)}"
    if isinstance(output, Mapping):
        parts = [f"{k!r} {_shape(v)}" for k, v in output.items()]
        return f"{type(output).__name__} with keys " + ", ".join(parts)
    if isinstance(output, tuple | list):
        parts = [f"[{i}] {_shape(v)}" for i, v in enumerate(output)]
        return f"{type(output).__name__} of {len(output)}: " + ", ".join(parts)
    return type(output).__name__


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_output_spec(output: OutputSpec) -> OutputSpec:
    """Validate `output=` at the boundary (a key, an index, a callable or None)."""
    if output is None or callable(output):
        return output
    if isinstance(output, bool) or not isinstance(output, str | int):
        raise TypeError(
            f"output must be None, a dict key (str), a tuple index (int) or a callable output -> tensor; "
            f"got {type(output).__name__}"
        )
    return output


def _tensors(values: list[tuple[Any, Any]]) -> list[tuple[Any, torch.Tensor]]:
    return [(k, v) for k, v in values if isinstance(v, torch.Tensor)]


def select_output(output: Any, spec: OutputSpec = None) -> torch.Tensor:
    """The tensor of `output` that `spec` names (see the module docstring)."""
    if callable(spec) and not isinstance(spec, str | int):
        chosen = spec(output)
        if not isinstance(chosen, torch.Tensor):
            raise TypeError(f"the output= callable must return a tensor; it returned {type(chosen).__name__}")
        return chosen
    if isinstance(output, torch.Tensor):
        if spec is not None and not (isinstance(spec, int) and spec == 0):
            raise ValueError(f"output={spec!r} was given but the model returns a single {describe_output(output)}")
        return output
    if isinstance(output, Mapping):
        items = list(output.items())
        if spec is None:
            if "out" in output and isinstance(output["out"], torch.Tensor):
                return output["out"]
            tensors = _tensors(items)
            if len(tensors) == 1:
                return tensors[0][1]
            raise ValueError(
                f"the model returns a {describe_output(output)}; say which one to explain with "
                f"output=KEY (CLI: --output KEY), e.g. output={items[0][0]!r}"
            )
        if spec not in output:
            raise ValueError(f"output={spec!r} is not a key of the model's output ({describe_output(output)})")
        chosen = output[spec]
    elif isinstance(output, tuple | list):
        if spec is None:
            tensors = _tensors(list(enumerate(output)))
            if len(tensors) == 1:
                return tensors[0][1]
            raise ValueError(
                f"the model returns a {describe_output(output)}; say which one to explain with "
                "output=INDEX (CLI: --output INDEX), e.g. output=0"
            )
        if not isinstance(spec, int) or not -len(output) <= spec < len(output):
            raise ValueError(f"output={spec!r} is not a position of the model's output ({describe_output(output)})")
        chosen = output[spec]
    else:
        raise TypeError(f"the model returned a {type(output).__name__}; gradsum explains tensors (or dicts/tuples of them)")
    if not isinstance(chosen, torch.Tensor):
        raise ValueError(f"output={spec!r} selects a {type(chosen).__name__}, not a tensor ({describe_output(output)})")
    return chosen


@contextlib.contextmanager
def selected_output(model: nn.Module, output: OutputSpec = None) -> Iterator[nn.Module]:
    """Within the block, `model(x)` returns `select_output(model's output, output)`.

    In nested blocks on the same model the outermost selection holds (an explainer called by
    gs.gradsum selects nothing twice)."""
    check_output_spec(output)
    if model in _active:
        yield model
        return

    def hook(module: nn.Module, inputs: tuple, result: Any) -> torch.Tensor | None:
        if isinstance(result, torch.Tensor) and output is None:
            return None
        return select_output(result, output)

    handle = model.register_forward_hook(hook)
    _active.add(model)
    try:
        yield model
    finally:
        _active.discard(model)
        handle.remove()
