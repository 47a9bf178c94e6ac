"""A truncated view of a model: the model's own forward, stopped at one layer, returning that
layer's output. `gradsum.core.targets.NeuronTarget` explains a unit of an intermediate layer
on such a view, so that every method sees "the network up to that layer" as its model.

`truncated_model(model, layer)` returns a view that shares the model's modules, parameters
and buffers (the same objects: `named_modules()` gives the same names, a layer resolves to the
same module) but has its own hook dictionaries and a forward that

1. registers a forward hook on `layer` that records the output and raises a private
   exception, so the rest of the network does not run;
2. calls the real model (its forward pre-hooks fire, and every hook that methods or users put
   on modules before the layer fires as in a plain forward), catches that exception, removes
   the hook and returns the recorded output.

Nothing is left on the model: the stop hook lives for one call. A layer called several times
stops the forward at its first call. The view cannot be traced with torch.fx (tracing would
trace through the whole network): it raises, so tail execution falls back to full forwards.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from gradsum.core.layers import resolve_layer

__all__ = ["truncated_model", "truncated", "truncation", "Truncation", "in_truncated_run", "stop_after",
           "StopForward"]

_ATTRIBUTE = "_gradsum_truncation"
# set while an explanation runs on a truncated view: NeuronTarget binds only then (never on
# the output of a whole model, where a (B,K,H,W) segmentation output would pass unnoticed)
_RUNNING: contextvars.ContextVar[int] = contextvars.ContextVar("gradsum_truncated_run", default=0)


class StopForward(BaseException):
    """Raised by a stop hook (`stop_after`) to skip the rest of a forward; a BaseException so
    that a model's own `except Exception` around a sub-network does not swallow it."""


@contextlib.contextmanager
def stop_after(modules: list[nn.Module], enabled: bool = True) -> Iterator[Callable[[], None]]:
    """While inside, a forward raises `StopForward` right after the last of `modules` has run
    (its hooks are registered now, so hooks registered earlier on those modules, e.g. a Probe's,
    have captured their outputs first). Yields `reset()`, to call before each forward. Leaves
    no hooks; `enabled=False` installs none."""
    fired: set[int] = set()

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        fired.add(id(module))
        if len(fired) == len(modules):
            raise StopForward

    handles = [m.register_forward_hook(hook) for m in modules] if enabled else []
    try:
        yield fired.clear
    finally:
        for handle in handles:
            handle.remove()


class Truncation:
    """What a truncated view stops at: the full `model`, the layer's `name` and `module`."""

    __slots__ = ("model", "name", "module")

    def __init__(self, model: nn.Module, name: str, module: nn.Module):
        self.model, self.name, self.module = model, name, module


def _is_fx_tracing() -> bool:
    from torch.fx import _symbolic_trace

    check = getattr(_symbolic_trace, "is_fx_symbolic_tracing", None) or getattr(
        _symbolic_trace, "is_fx_tracing", None)
    return bool(check()) if check is not None else False


def _truncated_forward(self: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    cut: Truncation = self.__dict__[_ATTRIBUTE]
    if _is_fx_tracing():
        raise RuntimeError(
            f"{type(cut.model).__name__} truncated at layer '{cut.name}' (a NeuronTarget) runs by full forwards "
            "stopped at that layer; it is not traced"
        )
    captured: list[Any] = []
    handle = cut.module.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with stop_after([cut.module]), contextlib.suppress(StopForward):
            cut.model(*args, **kwargs)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(
            f"layer '{cut.name}' did not run in the forward pass of {type(cut.model).__name__}; "
            "a NeuronTarget needs a layer that the model's forward uses"
        )
    out = captured[0]
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"layer '{cut.name}' of {type(cut.model).__name__} returns a {type(out).__name__}, not a tensor; "
            "a NeuronTarget needs a layer whose output is a (B,C,H,W) map"
        )
    return out


def truncated_model(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """A view of `model` whose forward returns the output of `layer` (a name or module,
    resolved with `resolve_layer`: a misspelt name lists the closest ones) and stops there.

    The view is an instance of a subclass of the model's class named
    "<Class> (truncated at '<layer>')", sharing the model's submodules, parameters, buffers
    and attributes; hooks registered on the view itself stay on the view. Make it where the
    model is already in the mode to explain in (`preserved_state`): it copies the model's
    `training` flag when made."""
    name, module = resolve_layer(model, layer)
    cls = type(model)
    view_cls = type(f"{cls.__name__} (truncated at '{name}')", (cls,),
                    {"forward": _truncated_forward, "__module__": cls.__module__})
    view = object.__new__(view_cls)
    state = dict(model.__dict__)
    for key, value in state.items():
        if "_hooks" in key and isinstance(value, dict):
            state[key] = OrderedDict()
    if "_is_full_backward_hook" in state:
        state["_is_full_backward_hook"] = None
    state[_ATTRIBUTE] = Truncation(model, name, module)
    view.__dict__.update(state)
    return view


def truncation(model: nn.Module) -> Truncation | None:
    """The `Truncation` of a view made by `truncated_model`, None for any other module."""
    found = model.__dict__.get(_ATTRIBUTE)
    return found if isinstance(found, Truncation) else None


@contextlib.contextmanager
def truncated(model: nn.Module, layer: str | nn.Module) -> Iterator[nn.Module]:
    """`truncated_model(model, layer)` for the duration of a block, inside which NeuronTargets
    may be bound (on the view's outputs)."""
    view = truncated_model(model, layer)
    token = _RUNNING.set(_RUNNING.get() + 1)
    try:
        yield view
    finally:
        _RUNNING.reset(token)


def in_truncated_run() -> bool:
    """Whether the caller runs inside `truncated(...)` (a NeuronTarget may be bound)."""
    return _RUNNING.get() > 0
