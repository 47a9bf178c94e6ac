"""Resolve layer specifications (names, modules, lists, "auto") to named modules."""
from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn

__all__ = ["LayerSpec", "resolve_layers", "resolve_layer", "layer_name", "AUTO"]

AUTO = "auto"
LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None


def _close_names(model: nn.Module, name: str, n: int = 5) -> list[str]:
    names = [k for k, _ in model.named_modules() if k]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
    if not close:  # fall back to names sharing a dotted prefix, then to the top-level ones
        prefix = name.split(".")[0]
        close = [k for k in names if k.startswith(prefix)][:n] or [k for k in names if "." not in k][:n]
    return close


def layer_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of `module` inside `model`; ValueError if it is not part of it."""
    for name, m in model.named_modules():
        if m is module:
            return name or "<model>"
    raise ValueError(
        f"the layer {type(module).__name__} is not a module of the model "
        f"({type(model).__name__}); pass a module taken from this model or its name"
    )


def _through_wrappers(model: nn.Module, name: str, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The module `name` names inside a wrapper that declares a ``layer_prefix`` (such as
    `gradsum.models.Prepared`: "layer4" -> "model.layer4"), else None."""
    prefix, current = "", model
    while isinstance(getattr(current, "layer_prefix", None), str):
        prefix += current.layer_prefix
        if prefix + name in modules:
            return modules[prefix + name]
        current = modules.get(prefix.rstrip("."))
        if current is None:
            return None
    return None


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """One layer by dotted name (as in `model.named_modules()`) or module object."""
    if isinstance(layer, nn.Module):
        return layer_name(model, layer), layer
    if not isinstance(layer, str):
        raise TypeError(
            f"layer must be a name, an nn.Module, a list of them or 'auto'; got {type(layer).__name__}"
        )
    modules = dict(model.named_modules())
    if layer in modules and layer:
        return layer, modules[layer]
    inner = _through_wrappers(model, layer, modules)
    if inner is not None:
        return layer, inner
    shown = _innermost(model, modules)  # name the user's model and its own layer names, not a wrapper's
    close = _close_names(shown, layer)
    hint = f"; closest names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown layer '{layer}' in {type(shown).__name__}{hint}")


def _innermost(model: nn.Module, modules: dict[str, nn.Module]) -> nn.Module:
    """The model inside wrappers that declare a ``layer_prefix`` (the model itself if none)."""
    prefix, current = "", model
    while isinstance(getattr(current, "layer_prefix", None), str):
        prefix += current.layer_prefix
        inner = modules.get(prefix.rstrip("."))
        if inner is None:
            break
        current = inner
    return current


def resolve_layers(model: nn.Module, layer: LayerSpec) -> list[tuple[str, nn.Module]] | str:
    """Resolve `layer` to a list of (name, module), or return AUTO when detection is deferred
    to the real forward pass (see `gradsum.core.probe.Probe`)."""
    if layer is None or (isinstance(layer, str) and layer == AUTO):
        return AUTO
    if isinstance(layer, str | nn.Module):
        return [resolve_layer(model, layer)]
    if isinstance(layer, Sequence):
        if len(layer) == 0:
            raise ValueError("layer list is empty; give at least one layer name or 'auto'")
        resolved = [resolve_layer(model, each) for each in layer]
        names = [n for n, _ in resolved]
        if len(set(names)) != len(names):
            raise ValueError(f"layer list names a layer twice: {names}")
        return resolved
    raise TypeError(
        f"layer must be a name, an nn.Module, a list of them or 'auto'; got {type(layer).__name__}"
    )
