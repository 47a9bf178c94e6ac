"""gradsum: explain, in numbers, what image models look at.

    import gradsum as gs
    exp = gs.explainer("gradcam", model, layer="layer4")
    attr = exp(x)                      # attr.maps (B,H,W), attr.scores, attr.cost
    res = gs.explain(model, x, methods=["gradcam", "gradcam++", "layercam"])

Subpackages (gs.metrics, gs.sanity, gs.features, gs.adversarial, gs.data, gs.models,
gs.train, gs.viz, gs.semantic, gs.run) are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.targets import (
    ClassTarget,
    LogProbabilityTarget,
    NeuronTarget,
    ProbabilityTarget,
    RegressionTarget,
    SegmentationTarget,
    Target,
)
from gradsum.methods import available_methods, explain, explainer, method_info

__version__ = "0.1.0"

_SUBPACKAGES = {
    "metrics": "gradsum.metrics",
    "sanity": "gradsum.metrics.sanity",
    "features": "gradsum.features",
    "adversarial": "gradsum.adversarial",
    "data": "gradsum.data",
    "models": "gradsum.models",
    "train": "gradsum.train",
    "viz": "gradsum.viz",
    "semantic": "gradsum.semantic",
    "run": "gradsum.run",
    "methods": "gradsum.methods",
    "core": "gradsum.core",
}

# explainer classes, resolved lazily from the registry modules
_CLASSES = {
    "CAM": "gradsum.methods.cam",
    "GradCAM": "gradsum.methods.cam",
    "GradCAMPlusPlus": "gradsum.methods.cam",
    "XGradCAM": "gradsum.methods.cam",
    "HiResCAM": "gradsum.methods.cam",
    "GradCAMElementWise": "gradsum.methods.cam",
    "LayerCAM": "gradsum.methods.cam",
    "EigenCAM": "gradsum.methods.cam",
    "EigenGradCAM": "gradsum.methods.cam",
    "LayerVisualization": "gradsum.methods.cam",
    "Saliency": "gradsum.methods.gradient",
    "InputXGradient": "gradsum.methods.gradient",
    "GuidedBackprop": "gradsum.methods.gradient",
    "GuidedGradCAM": "gradsum.methods.gradient",
    "IntegratedGradients": "gradsum.methods.gradient",
    "SmoothGrad": "gradsum.methods.gradient",
    "ScoreCAM": "gradsum.methods.score",
    "AblationCAM": "gradsum.methods.score",
    "RISE": "gradsum.methods.rise",
    "SISE": "gradsum.methods.sise",
    "AdaSISE": "gradsum.methods.sise",
    "Occlusion": "gradsum.methods.occlusion",
    "LIME": "gradsum.methods.lime_shap",
    "KernelSHAP": "gradsum.methods.lime_shap",
    "FullGrad": "gradsum.methods.fullgrad",
    "ExtremalPerturbation": "gradsum.methods.extremal",
}

__all__ = [
    "Attribution",
    "ClassTarget",
    "Cost",
    "LogProbabilityTarget",
    "NeuronTarget",
    "ProbabilityTarget",
    "RegressionTarget",
    "SegmentationTarget",
    "Target",
    "available_methods",
    "explain",
    "explainer",
    "gradsum",
    "method_info",
    *_CLASSES,
    *_SUBPACKAGES,
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(_SUBPACKAGES[name])
        globals()[name] = module
        return module
    if name in _CLASSES:
        value = getattr(importlib.import_module(_CLASSES[name]), name)
        globals()[name] = value
        return value
    if name == "gradsum":
        value = importlib.import_module("gradsum.semantic").gradsum
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradsum' has no attribute {name!r}")
