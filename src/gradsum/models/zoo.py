"""Build a model from a short spec: built-ins, torchvision, timm, or a factory in a file."""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from torch import nn

from gradsum.core.outputs import OutputSpec, check_output_spec
from gradsum.models.card import ModelCard, attach_card
from gradsum.models.io import load_into, read_model_file
from gradsum.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize, Prepared, unwrap
from gradsum.models.pilotnet import PilotNet
from gradsum.models.small import DigitsNet, PotholeNet
from gradsum.models.vit import IMG_SIZE as VIT_IMG_SIZE
from gradsum.models.vit import PATCH_SIZE as VIT_PATCH_SIZE
from gradsum.models.vit import ViTTiny

__all__ = ["build", "BUILTIN_MODELS", "replace_head", "standard_normalization"]

BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "pilotnet": PilotNet,
    "potholenet": PotholeNet,
    "digitsnet": DigitsNet,
    "vit-tiny": ViTTiny,
}
_SPEC_HELP = (
    "'pilotnet', 'potholenet', 'digitsnet', 'vit-tiny', 'torchvision:<name>' (e.g. torchvision:resnet18), "
    "'timm:<name>', or 'path/to/file.py:factory'"
)


Normalization = Literal["auto", "imagenet", "none"]


def build(
    spec: str | None = None,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    *,
    trust: bool = False,
    normalize: Normalization = "auto",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    output: OutputSpec = None,
    new_head: bool = False,
) -> nn.Module:
    """A model from `spec` and/or a local `weights` file, ready to take [0,1] pixels.

    spec: 'pilotnet' | 'potholenet' | 'digitsnet' | 'vit-tiny' | 'torchvision:<name>' (any
    torchvision classification or segmentation architecture: fcn_*, deeplabv3_*, lraspp_*,
    vision transformers such as vit_b_16 and swin_t) |
    'timm:<name>' (needs the ``gradsum[timm]`` extra) | 'path/to/file.py:factory' (imports
    the file and calls ``factory()``, passing ``num_classes=`` when given). May be None when
    `weights` is a checkpoint written by gradsum (it carries a `ModelCard`) or a whole model
    (TorchScript, or a pickled module with ``trust=True``).

    num_classes: number of outputs; the head is built with it FIRST, then the weights are
    loaded (a mismatch names the first keys with both shapes). ``new_head=True`` instead
    loads the weights into the architecture's own head and then replaces the head with a
    fresh one of `num_classes` outputs (the start of fine-tuning).

    Preprocessing: images stay in [0,1]; the model's normalisation is put inside it (a
    `Prepared` wrapper). normalize="auto" uses the checkpoint card's, else the
    architecture's standard (torchvision: ImageNet mean/std; timm: the model's pretrained
    config; gradsum's own models normalise inside and get none); "imagenet" or "none" force
    it; `mean`/`std` give it explicitly. `output` selects the tensor of a dict/tuple output
    (torchvision segmentation models: "out" by default).

    The model is returned in eval mode with its `ModelCard` attached (`card_of(model)`,
    `card_of(model).describe()`; saved by the trainer and `gs.models.save`).
    """
    if spec is not None and (not isinstance(spec, str) or not spec.strip()):
        raise ValueError(f"model spec must be a non-empty string, one of {_SPEC_HELP}; got {spec!r}")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        num_classes = int(num_classes)
    if normalize not in ("auto", "imagenet", "none"):
        raise ValueError(f"normalize must be 'auto', 'imagenet' or 'none'; got {normalize!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std of the model's input normalisation, or neither")
    if mean is not None and normalize == "none":
        raise ValueError("normalize='none' contradicts the mean/std given; drop one of them")
    check_output_spec(output)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(
            f"weights file {weights} not found; weights must be a local file "
            "(gradsum never downloads: pass weights=None for random initialisation)"
        )
    content = read_model_file(weights, trust=trust) if weights is not None else None
    card = ModelCard.from_dict(content.get("card")) if isinstance(content, dict) else None
    if card is not None:  # what the checkpoint says, unless given
        spec = spec if spec is not None else card.spec
        output = output if output is not None else card.output
    n_out = num_classes if num_classes is not None else (card.num_classes if card is not None else None)
    if spec is None:
        if not isinstance(content, nn.Module):
            where = f"the weights file {weights} does not say which model it holds (it was not written by " \
                    "gradsum train or gs.models.save); " if weights is not None else ""
            raise ValueError(f"{where}give the architecture as a model spec (CLI: --model), one of {_SPEC_HELP}")
        model = content
        if num_classes is not None:
            replace_head(model, num_classes)
    else:
        spec = spec.strip()
        if content is not None and new_head:
            base_n = card.num_classes if card is not None else None
            model = _architecture(spec, base_n, content, card)
            load_into(model, content, weights)  # type: ignore[arg-type]
            if num_classes is not None and num_classes != base_n:
                replace_head(model, num_classes)
            content = None
        else:
            model = _architecture(spec, n_out, content, card)
    stats = _normalization(model, card, normalize, mean, std)
    if stats is not None or output is not None:
        model = Prepared(model, *(stats[:2] if stats else (None, None)), output=output)
    if content is not None and spec is not None:
        load_into(model, content, weights)  # type: ignore[arg-type]
        if stats is not None:  # the chosen statistics win over those stored with the weights
            _set_stats(model, stats[0], stats[1])
    base = card or ModelCard()
    made = replace(
        base, spec=spec, num_classes=n_out if n_out is not None else _count_outputs(model),
        output=output,
        task="segmentation" if _is_segmentation(model) else base.task,
        input_size=base.input_size or _fixed_input_size(model),
        mean=tuple(stats[0]) if stats else None, std=tuple(stats[1]) if stats else None,
        normalization_source=stats[2] if stats else None,
    )
    return attach_card(model.eval(), made)


def _normalization(model: nn.Module, card: ModelCard | None, normalize: str,
                   mean: Any, std: Any) -> tuple[list[float], list[float], str] | None:
    """(mean, std, where they come from) for the model's input, or None (no normalisation)."""
    if mean is not None:
        return _floats(mean, "mean"), _floats(std, "std"), "given"
    if normalize == "none":
        return None
    if normalize == "imagenet":
        return list(IMAGENET_MEAN), list(IMAGENET_STD), "ImageNet, as requested"
    if card is not None and card.spec is not None:
        if card.mean is None:
            return None
        return list(card.mean), list(card.std or ()), "from the checkpoint"
    return standard_normalization(model)


def _floats(values: Any, name: str) -> list[float]:
    try:
        out = [float(v) for v in (values if isinstance(values, Sequence) else [values])]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be one number or one per channel; got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite numbers, one or one per channel; got {values!r}")
    return out


def standard_normalization(model: nn.Module) -> tuple[list[float], list[float], str] | None:
    """The input normalisation an architecture is trained with: torchvision models ImageNet's
    mean/std; timm models their pretrained config's; None for anything else."""
    inner, _ = unwrap(model)
    module = type(inner).__module__
    if module.startswith("torchvision.models"):
        return list(IMAGENET_MEAN), list(IMAGENET_STD), "torchvision's ImageNet mean/std"
    if module.startswith("timm."):
        cfg = getattr(inner, "pretrained_cfg", None) or getattr(inner, "default_cfg", None) or {}
        if cfg.get("mean") is not None and cfg.get("std") is not None:
            return [float(v) for v in cfg["mean"]], [float(v) for v in cfg["std"]], "timm's pretrained config"
    return None


def _set_stats(model: nn.Module, mean: list[float], std: list[float]) -> None:
    normalize = model.normalize if isinstance(model, Prepared) else None
    if normalize is not None and hasattr(normalize, "mean"):
        fresh = Normalize(mean, std)
        normalize.mean.copy_(fresh.mean.to(normalize.mean))
        normalize.std.copy_(fresh.std.to(normalize.std))


def _is_segmentation(model: nn.Module) -> bool:
    inner, _ = unwrap(model)
    return type(inner).__module__.startswith("torchvision.models.segmentation")


def _count_outputs(model: nn.Module) -> int | None:
    """The number of outputs of a classification head (the last Linear), when there is one."""
    inner, _ = unwrap(model)
    if _is_segmentation(inner):
        convs = [m for m in inner.classifier.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels if convs else None
    linears = [m for m in inner.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The input size an architecture requires (a declared ``input_size`` such as PilotNet's;
    torchvision ViT: image_size; timm: the patch embedding's img_size), else None (any size)."""
    inner, _ = unwrap(model)
    declared = getattr(inner, "input_size", None)  # gradsum's PilotNet: fixed by its flatten layer
    if isinstance(declared, tuple) and len(declared) == 2 and all(isinstance(v, int) for v in declared):
        return declared
    size = getattr(inner, "image_size", None)
    if isinstance(size, int) and type(inner).__module__.startswith("torchvision"):
        return size, size
    if type(inner).__module__.startswith("timm."):
        patch = getattr(inner, "patch_embed", None)
        img = getattr(patch, "img_size", None)
        if isinstance(img, tuple | list) and len(img) == 2 and not getattr(patch, "dynamic_img_size", False):
            return int(img[0]), int(img[1])
    return None


def _architecture(spec: str, num_classes: int | None, content: Any = None,
                  card: ModelCard | None = None) -> nn.Module:
    key = spec.lower()
    if key in BUILTIN_MODELS:
        return _builtin(key, num_classes, _vit_size(content, card) if key == "vit-tiny" else {})
    if key.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], num_classes)
    if key.startswith("timm:"):
        return _timm(spec.split(":", 1)[1], num_classes)
    if ".py:" in spec or spec.endswith(".py"):
        return _from_file(spec, num_classes)
    close = difflib.get_close_matches(key, list(BUILTIN_MODELS), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"unknown model spec {spec!r}{hint}; expected {_SPEC_HELP}")


def _builtin(key: str, num_classes: int | None, kwargs: dict[str, Any]) -> nn.Module:
    if num_classes is None:
        return BUILTIN_MODELS[key](**kwargs)
    if key == "pilotnet":
        return PilotNet(outputs=num_classes, **kwargs)
    return BUILTIN_MODELS[key](num_classes=num_classes, **kwargs)


def _vit_size(content: Any, card: ModelCard | None) -> dict[str, Any]:
    """``{"img_size": (H, W)}`` for a ViTTiny whose weights in `content` were learned at
    another size than the default (its position embedding has one token per patch of that
    size): the checkpoint card's input size when it fits, else nothing (the default size)."""
    state = content.state_dict() if isinstance(content, nn.Module) else content
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        return {}
    pos = next((v for k, v in state.items() if k.rpartition(".")[2] == "pos_embed"), None)
    size = card.input_size if card is not None else None
    if pos is None or getattr(pos, "ndim", 0) != 3 or size is None or tuple(size) == VIT_IMG_SIZE:
        return {}
    patch = VIT_PATCH_SIZE
    fits = size[0] % patch == 0 and size[1] % patch == 0 and (size[0] // patch) * (size[1] // patch) == pos.shape[1] - 1
    return {"img_size": tuple(size)} if fits else {}


def _torchvision(name: str, num_classes: int | None) -> nn.Module:
    import torchvision

    classifiers = torchvision.models.list_models(module=torchvision.models)
    segmenters = torchvision.models.list_models(module=torchvision.models.segmentation)
    if name not in classifiers and name not in segmenters:
        close = difflib.get_close_matches(name, classifiers + segmenters, n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(
            f"unknown torchvision model {name!r}{hint} (classification or segmentation; see "
            "torchvision.models.list_models(module=torchvision.models))"
        )
    kwargs: dict[str, Any] = {"num_classes": num_classes} if num_classes is not None else {}
    if name in segmenters:
        kwargs["weights_backbone"] = None  # never download the backbone's ImageNet weights
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _timm(name: str, num_classes: int | None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ImportError(
            f"model spec 'timm:{name}' needs the timm package, which is not installed; install the extra: "
            "pip install 'gradsum[timm]'"
        ) from None
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    return timm.create_model(name, pretrained=False, **kwargs)


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
