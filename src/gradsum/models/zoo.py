"""Build a model from a short spec: built-ins, torchvision, timm, or a factory in a file."""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

from gradsum.models.io import load
from gradsum.models.pilotnet import PilotNet
from gradsum.models.small import DigitsNet, PotholeNet

__all__ = ["build", "BUILTIN_MODELS", "replace_head"]

BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "pilotnet": PilotNet,
    "potholenet": PotholeNet,
    "digitsnet": DigitsNet,
}
_SPEC_HELP = (
    "'pilotnet', 'potholenet', 'digitsnet', 'torchvision:<name>' (e.g. torchvision:resnet18), "
    "'timm:<name>', or 'path/to/file.py:factory'"
)


def build(
    spec: str,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """A model from `spec`; random weights unless `weights` names a local file.

    spec: 'pilotnet' | 'potholenet' | 'digitsnet' | 'torchvision:<name>' (any torchvision
    classification architecture) | 'timm:<name>' (needs the ``gradsum[timm]`` extra) |
    'path/to/file.py:factory' (imports the file and calls ``factory()``, passing
    ``num_classes=`` when given). `num_classes` sets the number of outputs (PilotNet: the
    number of regression outputs); for torchvision/timm it replaces the classification head.
    `weights`: a local file loaded with `gradsum.models.load` (state dict, weights_only);
    nothing is ever downloaded. The model is returned in eval mode.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string, one of {_SPEC_HELP}; got {spec!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(
            f"weights file {weights} not found; weights must be a local file "
            "(gradsum never downloads: pass weights=None for random initialisation)"
        )
    spec = spec.strip()
    key = spec.lower()
    if key in BUILTIN_MODELS:
        model = _builtin(key, num_classes)
        if weights is not None:
            load(weights, model=model)
    elif key.startswith("torchvision:"):
        model = _torchvision(spec.split(":", 1)[1], num_classes, weights)
    elif key.startswith("timm:"):
        model = _timm(spec.split(":", 1)[1], num_classes, weights)
    elif ".py:" in spec or spec.endswith(".py"):
        model = _from_file(spec, num_classes)
        if weights is not None:
            load(weights, model=model)
    else:
        close = difflib.get_close_matches(key, list(BUILTIN_MODELS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model spec {spec!r}{hint}; expected {_SPEC_HELP}")
    return model.eval()


def _builtin(key: str, num_classes: int | None) -> nn.Module:
    if num_classes is None:
        return BUILTIN_MODELS[key]()
    if key == "pilotnet":
        return PilotNet(outputs=num_classes)
    return BUILTIN_MODELS[key](num_classes=num_classes)


def _torchvision(name: str, num_classes: int | None, weights: str | os.PathLike[str] | None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(
            f"unknown torchvision classification model {name!r}{hint} "
            "(see torchvision.models.list_models(module=torchvision.models))"
        )
    extra = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    if weights is None:
        kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        return torchvision.models.get_model(name, weights=None, **kwargs, **extra)
    # weights from a file are for the default head: load them, then replace the head
    model = torchvision.models.get_model(name, weights=None, **extra)
    load(weights, model=model)
    if num_classes is not None:
        replace_head(model, num_classes)
    return model


def _timm(name: str, num_classes: int | None, weights: str | os.PathLike[str] | None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ImportError(
            f"model spec 'timm:{name}' needs the timm package; install the extra: "
            "pip install 'gradsum[timm]'"
        ) from None
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        load(weights, model=model)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the classification head in place with a freshly initialised one with
    `num_classes` outputs: every nn.Linear whose out_features equals the current number of
    classes (the last Linear decides it; auxiliary heads included), or, for conv heads such
    as SqueezeNet, the last 1x1 nn.Conv2d. Returns the model."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        old = linears[-1][1].out_features
        targets = [(n, m) for n, m in linears if m.out_features == old]
    else:
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
        if not convs:
            raise ValueError(
                f"cannot find a classification head (nn.Linear or 1x1 nn.Conv2d) in {type(model).__name__}"
            )
        targets = [convs[-1]]
    for name, old_module in targets:
        if isinstance(old_module, nn.Linear):
            new: nn.Module = nn.Linear(old_module.in_features, num_classes, bias=old_module.bias is not None)
        else:
            new = nn.Conv2d(old_module.in_channels, num_classes, kernel_size=1, bias=old_module.bias is not None)
        new = new.to(device=old_module.weight.device, dtype=old_module.weight.dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def _from_file(spec: str, num_classes: int | None) -> nn.Module:
    if ".py:" in spec:
        file_part, factory_name = spec.rsplit(":", 1)
    else:
        raise ValueError(f"model spec {spec!r} names a file but no factory; write it as '{spec}:make_model'")
    path = Path(file_part)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} (from spec {spec!r}) not found")
    if not factory_name.isidentifier():
        raise ValueError(f"factory name {factory_name!r} in spec {spec!r} is not a Python identifier")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    mod_spec = importlib.util.spec_from_file_location(f"gradsum_user_model_{digest}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ValueError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(factory_name, names, n=3, cutoff=0.4)
        hint = f"; callables there: {', '.join(close or names[:6])}" if names else ""
        raise ValueError(f"{path} has no function {factory_name!r}{hint}")
    if num_classes is None:
        model = factory()
    else:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        accepts = "num_classes" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not accepts:
            raise ValueError(
                f"{path}:{factory_name}() does not take num_classes; add a num_classes parameter "
                "or leave num_classes unset"
            )
        model = factory(num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{path}:{factory_name}() returned {type(model).__name__}, expected an nn.Module")
    return model
