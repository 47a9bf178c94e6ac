"""The explainer base class: one call signature for every method, input checks at the
boundary, model state restored, cost measured."""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.attribution import Attribution
from gradsum.core.batching import is_out_of_memory
from gradsum.core.forward import forward_checked
from gradsum.core.layers import resolve_layer
from gradsum.core.layout import in_preferred_layout
from gradsum.core.outputs import OutputSpec, check_output_spec
from gradsum.core.precision import precision_scope, precision_settings
from gradsum.core.probe import gradients_enabled, preserved_state
from gradsum.core.targets import NeuronTarget, Target, TargetSpec, resolve_target
from gradsum.core.truncate import truncated

T = TypeVar("T")

__all__ = ["Explainer", "check_input", "prepare_input", "run_on_model", "model_dtype", "warn_zero_maps",
           "ZeroMapWarning", "ZeroMapLog", "zero_gradient_images",
           "contiguous_result", "upsample", "option_names", "model_for_target",
           "neuron_layer_named"]


def check_input(x: Any, name: str = "x") -> torch.Tensor:
    """Validate an image batch: a floating (B,C,H,W) tensor of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B,C,H,W); got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ValueError(f"{name} must be a 4-D tensor (B,C,H,W); got {x.ndim}-D shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor; got {x.dtype}. Convert images with x.float() / 255"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B=0)")
    # one reduction: a NaN or inf anywhere makes the sum non-finite (then confirm element-wise,
    # since a sum of huge finite values could overflow)
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; clean the input before explaining it")
    return x


def model_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device] | None:
    """(dtype, device) of the model's first floating-point parameter or buffer; None if it has none."""
    for tensors in (model.parameters(), model.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t.dtype, t.device
    return None


def prepare_input(model: nn.Module, x: Any, name: str = "x") -> tuple[torch.Tensor, dict[str, Any]]:
    """Check `x` (see `check_input`) and make it usable by `model` and by autograd: cast to
    the model's floating dtype (float64 or float16 images for a float32 model) and copy a
    tensor made under `torch.inference_mode()`. Returns (x, notes for the result's
    settings). Call it inside `gradients_enabled()`."""
    x = check_input(x, name)
    notes: dict[str, Any] = {}
    found = model_dtype(model)
    if found is not None:
        dtype, device = found
        if x.device != device and not (x.device.type == device.type == "cpu"):
            raise ValueError(
                f"{name} is on {x.device} but the model's parameters are on {device}; "
                f"move one of them, e.g. {name} = {name}.to('{device}')"
            )
        if x.dtype != dtype:
            notes["input_cast"] = f"{str(x.dtype).replace('torch.', '')} -> {str(dtype).replace('torch.', '')}"
            x = x.to(dtype)
    if x.is_inference():
        x = x.clone()
    return x, notes


def run_on_model(model: nn.Module, x: Any, run: Callable[[torch.Tensor], T], *, freeze: bool = True,
                 output: OutputSpec = None, precision: str = "float32",
                 autocast: str | None = None) -> tuple[T, dict[str, Any]]:
    """`run(x)` as every explanation runs: autograd on whatever the caller's mode, x checked
    and cast (`prepare_input`), the model in eval mode with frozen parameters and its output
    selected (`preserved_state`), x in the model's preferred layout, in `precision` (float32:
    TF32 off on GPUs) and optionally under autocast (`gradsum.core.precision`). A model that
    cannot run on x (the wrong number of channels, an image too small for its layers) is a
    ValueError naming the failing layer. Returns (run's result, notes for the result's
    settings, the precision included)."""
    with gradients_enabled():
        x, notes = prepare_input(model, x)
        notes.update(precision_settings(precision, autocast))
        with preserved_state(model, freeze=freeze, output=output), precision_scope(precision, autocast, x.device):
            try:
                return in_preferred_layout(model, x, run), notes
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    with torch.no_grad():
                        try:
                            forward_checked(model, x[:1], in_layer_only=True)
                        except ValueError as refused:
                            raise refused from error
                        except RuntimeError:
                            pass
                raise


_ZERO_CAUSES = {
    "cam": "the target's gradient at the explained layer is zero (a zero-initialised or untrained head, "
           "a 1x1 layer) or every weighted channel is negative there; try another layer or check the head",
    "gradient": "the target's gradient with respect to the input is zero (a zero-initialised or untrained "
                "head, or a saturated output)",
    "attention": "the target's gradient with respect to every block's attention is zero or negative (a "
                 "zero-initialised or untrained head), or start_block / discard_ratio left no attention",
}


class ZeroMapWarning(UserWarning):
    """The map of some images is zero everywhere (`method`, the batch positions `images`, the
    likely `cause`). Filter it with
    ``warnings.filterwarnings("ignore", category=ZeroMapWarning)`` where that is expected."""

    def __init__(self, message: str, method: str = "", images: list[int] | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.method, self.images, self.cause = method, images or [], cause


def zero_gradient_images(grads: Sequence[torch.Tensor | None]) -> list[int]:
    """Images whose gradient is exactly zero in every tensor of `grads` (one per layer or block;
    None entries ignored): a zero-initialised head, as torchvision gives a new ViT, or an output
    that ignores them. Stored as settings["zero_gradients"], which `warn_zero_maps` names."""
    present = [g for g in grads if g is not None]
    if not present:
        return []
    zero = torch.stack([g.flatten(1).abs().amax(dim=1) == 0 for g in present]).all(dim=0)
    return zero.nonzero().flatten().tolist() if bool(zero.any()) else []


def warn_zero_maps(attribution: Attribution, family: str = "", target: Any = None) -> None:
    """Warn (ZeroMapWarning, one line) when the map of any image is zero everywhere: it would
    be drawn as a blank map with no word; the message names the images and the likely cause
    (for a `NeuronTarget`: the unit is off on those images)."""
    maps = attribution.maps
    if maps.numel() == 0:
        return
    zero = maps.flatten(1).abs().amax(dim=1) == 0
    if not bool(zero.any()):
        return
    images = zero.nonzero().flatten().tolist()
    shown = ", ".join(map(str, images[:8])) + (", ..." if len(images) > 8 else "")
    cause = _ZERO_CAUSES.get(family, "the explained score does not change with the input here")
    if set(images) <= set(attribution.settings.get("zero_gradients") or []):
        layers = ", ".join(f"'{n}'" for n in attribution.settings.get("layers") or []) or "the layer"
        cause = (f"the target's gradients at {layers} are all exactly zero (a zero-initialised classification "
                 "head, as torchvision gives a new ViT, or an untrained one: load trained weights or train it first)")
    if isinstance(target, NeuronTarget):
        cause = (f"the unit (layer '{target.layer_name}', channel {target.channel}) is off on those images (0 after "
                 "a ReLU, so no pixel moves it); pick a channel or position where it is active "
                 "(gs.features.top_patches finds them)")
    message = f"{attribution.method}: the map of image(s) {shown} is zero everywhere; likely cause: {cause}"
    warnings.warn(ZeroMapWarning(message, attribution.method, images, cause), stacklevel=3)


class ZeroMapLog:
    """Collects the ZeroMapWarnings of many batches under the images' ids, so that a dataset
    job says once per method which images got a blank map (not once per batch, by position):

        log = ZeroMapLog()
        with log.batch(batch.ids):
            results = explain(...)
        log.warn()   # one ZeroMapWarning per method, naming the images

    Other warnings raised inside `batch` pass through unchanged."""

    def __init__(self) -> None:
        self.found: dict[str, tuple[str, list[str]]] = {}  # method -> (cause, image ids)

    @contextlib.contextmanager
    def batch(self, ids: Sequence[str]) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ZeroMapWarning)
            yield
        for w in caught:
            if isinstance(w.message, ZeroMapWarning):
                cause, names = self.found.setdefault(w.message.method, (w.message.cause, []))
                names.extend(str(ids[i]) for i in w.message.images if i < len(ids))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def messages(self) -> list[str]:
        """One line per method: which images have a map that is zero everywhere, and why."""
        lines = []
        for method, (cause, names) in self.found.items():
            unique = list(dict.fromkeys(names))
            shown = ", ".join(unique[:8]) + (f" and {len(unique) - 8} more" if len(unique) > 8 else "")
            lines.append(f"{method}: the map of {shown} is zero everywhere; likely cause: {cause}")
        return lines

    def warn(self) -> None:
        for (method, (cause, _)), message in zip(self.found.items(), self.messages(), strict=True):
            warnings.warn(ZeroMapWarning(message, method, [], cause), stacklevel=2)


def contiguous_result(attribution: Attribution) -> Attribution:
    """The attribution with its tensors in the default layout (see `gradsum.core.layout`),
    maps in float32 (under autocast they may come out in half precision)."""
    if attribution.maps.is_floating_point() and attribution.maps.dtype in (torch.float16, torch.bfloat16):
        attribution.maps = attribution.maps.float()
    attribution.maps = attribution.maps.contiguous()
    if attribution.input_maps is not None:
        attribution.input_maps = attribution.input_maps.contiguous()
    attribution.layer_maps = {name: m.contiguous() for name, m in attribution.layer_maps.items()}
    return attribution


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(out_size: int, in_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(out, in) matrix of 1-D linear interpolation with align_corners=False, as
    F.interpolate(mode="bilinear") computes it: source coordinate (i + 0.5) * in/out - 0.5,
    clamped at 0, split between its two neighbours (the last one repeated at the border)."""
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5).clamp_min(0)
    left = src.floor().long().clamp_max(in_size - 1)
    right = (left + 1).clamp_max(in_size - 1)
    weight = src - left
    rows = torch.arange(out_size)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.index_put_((rows, left), 1 - weight, accumulate=True)
    matrix.index_put_((rows, right), weight, accumulate=True)
    return matrix.to(device=device, dtype=dtype)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,h,w) -> (B,H,W) bilinear, align_corners=False (a no-op when sizes match).

    Bilinear interpolation is separable: out = R_H @ m @ R_W^T with the two 1-D interpolation
    matrices. As two matrix products it gives F.interpolate's values (to float rounding,
    ~1e-6) 3-4x faster on CPU than the interpolation kernel."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if not maps.is_floating_point() or maps.dtype in (torch.float16, torch.bfloat16):
        return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    rows = _interpolation_matrix(int(size[0]), maps.shape[-2], maps.dtype, maps.device)
    cols = _interpolation_matrix(int(size[1]), maps.shape[-1], maps.dtype, maps.device)
    return rows @ (maps @ cols.T)


@contextlib.contextmanager
def model_for_target(model: nn.Module, target: Target) -> Iterator[nn.Module]:
    """The model an explanation of `target` runs on, for a block: `model` itself, or for a
    `NeuronTarget` the model truncated at the neuron's layer (`gradsum.core.truncate`), whose
    output is that layer's (B,C,H,W) map. Enter it where the model is already in the state to
    explain in (inside `run_on_model`)."""
    if not isinstance(target, NeuronTarget):
        yield model
        return
    with truncated(model, target.layer) as view:
        yield view


def neuron_layer_named(model: nn.Module, target: Target) -> Target:
    """A `NeuronTarget` with its layer resolved to its name in `model` (a misspelt name fails
    here, listing the closest ones, before any forward); other targets unchanged."""
    if isinstance(target, NeuronTarget):
        return NeuronTarget(resolve_layer(model, target.layer)[0], target.channel, target.y, target.x)
    return target


def _on_model(explainer: Explainer, model: nn.Module) -> Explainer:
    """A shallow copy of `explainer` (and of the explainers it holds, e.g. SmoothGrad's base)
    that runs on `model`; its private caches (dict attributes starting with "_", such as traced
    splits or detected blocks of the full model) start empty."""
    made = copy.copy(explainer)
    made.model = model
    for key, value in list(vars(made).items()):
        if isinstance(value, Explainer):
            setattr(made, key, _on_model(value, model))
        elif key.startswith("_") and isinstance(value, dict):
            setattr(made, key, type(value)())
    return made


class Explainer:
    """Base class: `exp = Method(model, layer=..., **options)`, then `exp(x, target=None)`.

    Subclasses implement `_explain(x, target) -> Attribution`. The call validates x,
    resolves the target, runs with the model in eval mode and frozen parameters
    (restored afterwards, also on error) and records the wall time in `cost.seconds`.
    """

    name: ClassVar[str] = "explainer"
    family: ClassVar[str] = ""
    freeze_parameters: ClassVar[bool] = True
    #: which tensor of a dict/tuple model output to explain (see `gradsum.core.outputs`)
    output: OutputSpec = None
    #: "float32" (TF32 off on GPUs, the default) or "tf32"; autocast None, "bf16" or "fp16"
    #: (see `gradsum.core.precision`; set by `explainer(..., precision=, autocast=)`)
    precision: str = "float32"
    autocast: str | None = None

    def __init__(self, model: nn.Module, layer: Any = "auto", **options: Any):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.layer = layer
        self.options = options

    def __call__(self, x: torch.Tensor, target: TargetSpec = None, output: OutputSpec = None) -> Attribution:
        """Explain the batch `x` (B,C,H,W) for `target` (see `gradsum.core.targets`);
        `output` selects the tensor of a dict/tuple model output (default: the explainer's
        `output`, else "out" or the only tensor). Works under `torch.no_grad()` and
        `torch.inference_mode()`; float64/float16 input is cast to the model's dtype
        (recorded as settings["input_cast"])."""
        output = check_output_spec(self.output if output is None else output)
        spec = resolve_target(target)
        start = time.perf_counter()
        if isinstance(spec, NeuronTarget) and self.family == "attention":
            raise ValueError(
                f"{self.name} explains a transformer's output through its attention; it cannot explain a "
                f"NeuronTarget (a unit of layer {spec.layer_name!r}); use a gradient or CAM method"
            )
        spec = neuron_layer_named(self.model, spec)

        def run(xin: torch.Tensor) -> Attribution:
            with model_for_target(self.model, spec) as model:
                return (self if model is self.model else _on_model(self, model))._explain(xin, spec)

        attribution, notes = run_on_model(self.model, x, run,
                                          freeze=self.freeze_parameters, output=output, precision=self.precision,
                                          autocast=self.autocast)
        attribution.cost.seconds = time.perf_counter() - start
        attribution.settings.update(notes)
        warn_zero_maps(attribution, self.family, spec)
        return contiguous_result(attribution)

    def _explain(self, x: torch.Tensor, target: Any) -> Attribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer!r}, options={self.options})"


def option_names(cls: type) -> list[str]:
    """The keyword options an explainer class takes: the parameters of its constructors and
    those of its bases up to Explainer (model excluded), and the names it lists in
    `known_options` (classes taking **options)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is Explainer:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "model") \
                    and p.name not in names:
                names.append(p.name)
    names += [n for n in getattr(cls, "known_options", ()) if n not in names]
    if "internal_batch_size" in names and "batch_size" not in names:
        names.append("batch_size")  # IntegratedGradients accepts it as an alias
    return names
