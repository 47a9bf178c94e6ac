"""`explain`: several methods on one batch, CAM-family methods sharing ONE pass."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.layers import AUTO
from gradsum.core.outputs import OutputSpec, check_output_spec
from gradsum.core.precision import check_precision
from gradsum.core.targets import TargetSpec, resolve_target
from gradsum.methods.base import (
    contiguous_result,
    model_for_target,
    neuron_layer_named,
    run_on_model,
    warn_zero_maps,
)
from gradsum.methods.cam import CAM_FUNCTIONS, check_fusion, compute_cams
from gradsum.methods.registry import explainer, method_info

__all__ = ["explain", "Explanations"]


class Explanations(dict):
    """method name -> Attribution, plus `cost`: what the whole call cost (the shared CAM
    pass counted once)."""

    cost: Cost


def explain(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] = ("gradcam",),
    *,
    layer: Any = AUTO,
    target: TargetSpec = None,
    output: OutputSpec = None,
    fusion: str = "mean",
    options: dict[str, dict[str, Any]] | None = None,
    precision: str = "float32",
    autocast: str | None = None,
) -> Explanations:
    """Explain `x` with every method in `methods`.

    All CAM-family methods (gradcam, gradcam++, layercam, ...) are computed from ONE forward
    and ONE partial backward; other methods run their own passes. `options` maps a method
    name to its keyword options. `output` selects the tensor of a dict/tuple model output.
    precision / autocast: see `gradsum.core.precision` (default float32, TF32 off on GPUs).
    A `gs.NeuronTarget` explains a unit of an intermediate layer: every method runs on the
    model truncated at that layer (see `gradsum.core.targets.NeuronTarget`).
    Returns {name: Attribution} with a `.cost` total.
    """
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, Sequence) or len(methods) == 0:
        raise ValueError("methods is empty; give at least one method name (see gs.available_methods())")
    names = [method_info(m).name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice in {list(methods)}")
    options = options or {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict {{method name: {{option: value}}}}; got {type(options).__name__}")
    unlisted = [k for k in options if k not in names and method_info(k).name not in names]
    if unlisted:
        raise ValueError(
            f"options are given for {unlisted}, which are not in methods={names}; add them to methods or drop the options"
        )
    options = {method_info(k).name: v for k, v in options.items()}
    check_fusion(fusion)
    check_precision(precision, autocast)
    output = check_output_spec(output)
    spec = neuron_layer_named(model, resolve_target(target))
    results = Explanations()
    total = Cost()
    cam_names = [n for n in names if n in CAM_FUNCTIONS and not options.get(n)]
    if cam_names:
        start = time.perf_counter()

        def cams(xin: torch.Tensor) -> dict[str, Attribution]:
            with model_for_target(model, spec) as runs_on:
                return compute_cams(runs_on, xin, spec, cam_names, layer, fusion=fusion)  # type: ignore[arg-type]

        shared, notes = run_on_model(model, x, cams, output=output, precision=precision, autocast=autocast)
        shared = {name: contiguous_result(a) for name, a in shared.items()}
        seconds = time.perf_counter() - start
        shared[cam_names[0]].cost.seconds = seconds  # one Cost object, shared by all of them
        for attribution in shared.values():
            attribution.settings.update(notes)
            warn_zero_maps(attribution, "cam", spec)
        results.update(shared)
        total = total + shared[cam_names[0]].cost
    for name in names:
        if name in results:
            continue
        attribution: Attribution = explainer(name, model, layer=layer, output=output, precision=precision,
                                             autocast=autocast, **options.get(name, {}))(x, spec)
        results[name] = attribution
        total = total + attribution.cost
    ordered = Explanations({n: results[n] for n in names})
    ordered.cost = total
    return ordered
