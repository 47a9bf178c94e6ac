"""The method registry: names -> explainer classes, with family, cost and source paper."""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from gradsum.core.outputs import OutputSpec, check_output_spec
from gradsum.core.precision import check_precision

if TYPE_CHECKING:
    from gradsum.methods.base import Explainer

__all__ = ["MethodInfo", "register", "available_methods", "method_info", "explainer", "method_table",
           "check_method_options"]


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method: its family ("cam", "gradient",
    "perturbation"), the passes it needs per image (human-readable), the paper, whether its
    maps are signed, and the class implementing it."""

    name: str
    family: str
    passes: str
    paper: str
    signed: bool
    cls: type[Explainer]


_REGISTRY: dict[str, MethodInfo] = {}
# modules that register methods when imported; imported lazily on first registry use
_METHOD_MODULES = ("gradsum.methods.cam", "gradsum.methods.gradient")
_EXTRA_MODULES = (
    "gradsum.methods.score",
    "gradsum.methods.rise",
    "gradsum.methods.sise",
    "gradsum.methods.occlusion",
    "gradsum.methods.lime_shap",
    "gradsum.methods.fullgrad",
    "gradsum.methods.extremal",
    "gradsum.methods.attention",
    "gradsum.methods.control",
)
_loaded = False


def register(name: str, *, family: str, passes: str, paper: str, signed: bool = False) -> Callable[[type], type]:
    """Class decorator adding an explainer class to the registry under `name`."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"method name {name!r} is registered twice")
        _REGISTRY[name] = MethodInfo(name, family, passes, paper, signed, cls)
        cls.name = name
        cls.family = family
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in _METHOD_MODULES:
        importlib.import_module(module)
    for module in _EXTRA_MODULES:  # families that may not be installed in this version yet
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    _loaded = True


def available_methods(family: str | None = None) -> list[str]:
    """Registered method names (optionally of one family), in registration order."""
    _load()
    return [n for n, info in _REGISTRY.items() if family is None or info.family == family]


def method_info(name: str) -> MethodInfo:
    """The registry entry for `name`; a misspelt name lists the closest real ones."""
    _load()
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown method {name!r}{hint} (gradsum methods lists them all)")


def explainer(name: str, model: nn.Module, layer: Any = "auto", *, output: OutputSpec = None,
              precision: str = "float32", autocast: str | None = None, **options: Any) -> Explainer:
    """Build the explainer registered as `name` for `model`: `exp(x, target=None)`.
    `output` selects the tensor of a dict/tuple model output (see `gradsum.core.outputs`);
    `precision` ("float32": TF32 off on GPUs, or "tf32") and `autocast` (None, "bf16",
    "fp16") as in `gradsum.core.precision`, recorded in every result's settings."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    precision, autocast = check_precision(precision, autocast)
    made = method_info(name).cls(model, layer=layer, **options)
    made.output = check_output_spec(output)
    made.precision, made.autocast = precision, autocast
    return made


def check_method_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options that method `name` does not take (TypeError naming them, the closest
    real one and the options it takes), before any explainer is built."""
    from gradsum.methods._args import unknown_names
    from gradsum.methods.base import option_names

    info = method_info(name)
    known = [n for n in option_names(info.cls) if n != "layer"]
    unknown = [key for key in options if key not in known and key != "layer"]
    if unknown:
        raise TypeError(f"{info.name} has no option {unknown_names(unknown, known)}; it takes "
                        f"{', '.join(known) or 'none'}")


def method_table() -> list[dict[str, Any]]:
    """One row per method: name, family, passes, paper, signed."""
    _load()
    return [
        {"name": i.name, "family": i.family, "passes": i.passes, "paper": i.paper, "signed": i.signed}
        for i in _REGISTRY.values()
    ]
