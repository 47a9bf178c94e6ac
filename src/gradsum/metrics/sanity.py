"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018).

A heatmap that barely changes when the model's weights are randomised (or when the model
was trained on permuted labels) does not explain the model. We re-create each explainer
for the randomised model, compare its maps with the original ones and report per-layer
curves, a plot and a verdict per method ("passes" = the similarity falls below a
threshold, default Spearman 0.3, by full randomisation).

- Model parameter randomisation, cascading (from the output layer towards the input,
  cumulative) or independent (one layer at a time, the others original). Each layer is
  re-initialised by its own ``reset_parameters()`` under a seed fixed per layer (seed +
  position of the layer), so a layer gets the same random weights in both modes. The
  original weights and buffers are ALWAYS restored, also when an explainer raises.
- Data randomisation: compare the maps of the model with those of the same architecture
  trained on permuted labels (`train_on_permuted_labels` uses `gradsum.train.fit`).
- Similarity (per image): Spearman rank correlation of |m|/max|m| ("spearman_abs") and of
  m/max|m| ("spearman"), SSIM of min-max maps with Gaussian weights (sigma 1.5, "ssim") and
  Spearman between HOG features of the min-max maps ("hog"). A constant map (e.g. an
  all-zero Grad-CAM) has no ranking: its Spearman with a non-constant map is 0.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.layers import resolve_layer
from gradsum.core.normalize import normalize_maps
from gradsum.core.probe import preserved_state
from gradsum.core.targets import ClassTarget, DefaultTarget, TargetSpec, resolve_target
from gradsum.methods._args import check_number
from gradsum.metrics._common import check_finite, forward_checked, spearman

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "MEASURES",
    "SanityResult",
    "randomizable_layers",
    "randomized_layers",
    "similarity",
    "model_randomization",
    "data_randomization",
    "PermutedLabels",
    "train_on_permuted_labels",
]

MEASURES = ("spearman_abs", "spearman", "ssim", "hog")
Explain = Callable[[torch.Tensor, Any], Any]
ExplainerFactory = Callable[[nn.Module], Explain]
MethodsSpec = Sequence[str] | Mapping[str, ExplainerFactory | str]


# --------------------------------------------------------------------------- layers


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly and have `reset_parameters`, in
    definition order (input towards output for sequential models)."""
    names = []
    for name, module in model.named_modules():
        if name and hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False)):
            names.append(name)
    return names


@contextlib.contextmanager
def randomized_layers(model: nn.Module, names: Sequence[str], seed: int = 0, order: Sequence[str] | None = None) -> Iterator[nn.Module]:
    """Re-initialise the named layers in place with their own `reset_parameters()`, each
    under seed + (its position in `order`, default `names`), yield the model, and restore
    every original parameter and buffer on exit (also on error). The global RNG state is
    left untouched."""
    reference = list(order) if order is not None else list(names)
    modules = []
    for name in names:
        _, module = resolve_layer(model, name)
        if not hasattr(module, "reset_parameters"):
            raise ValueError(f"layer '{name}' ({type(module).__name__}) has no reset_parameters(); it cannot be randomised")
        modules.append((name, module))
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"]
    try:
        with torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices})):
            for name, module in modules:
                position = reference.index(name) if name in reference else len(reference)
                torch.manual_seed(int(seed) + position)
                if torch.cuda.is_available() and devices:
                    torch.cuda.manual_seed_all(int(seed) + position)
                with torch.no_grad():
                    module.reset_parameters()
        yield model
    finally:
        with torch.no_grad():
            model.load_state_dict(saved)


# --------------------------------------------------------------------------- similarity


def _hog_cell(h: int, w: int) -> int:
    return 8 if min(h, w) >= 32 else max(2, min(h, w) // 4)


def similarity(
    original: torch.Tensor,
    other: torch.Tensor,
    measures: Sequence[str] = MEASURES,
    *,
    ssim_sigma: float = 1.5,
    hog_pixels_per_cell: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image similarity (B,) of two batches of maps (B,H,W) for each measure in
    `measures` (see the module docstring). SSIM and HOG run in scikit-image on the CPU."""
    _check_measures(measures)
    for maps, name in ((original, "original"), (other, "other")):
        if not isinstance(maps, torch.Tensor):
            raise TypeError(f"similarity: {name} must be a torch.Tensor (B,H,W) of maps; got {type(maps).__name__}")
    if original.shape != other.shape or original.ndim != 3:
        raise ValueError(f"similarity needs two (B,H,W) batches of the same shape; got {tuple(original.shape)} and {tuple(other.shape)}")
    check_finite(original, "the original maps", "similarity")
    check_finite(other, "the other maps", "similarity")
    a, b = original.detach().double(), other.detach().double()
    out: dict[str, torch.Tensor] = {}
    if "spearman_abs" in measures:
        out["spearman_abs"] = spearman(normalize_maps(a.abs(), "maxabs"), normalize_maps(b.abs(), "maxabs"))
    if "spearman" in measures:
        out["spearman"] = spearman(normalize_maps(a, "maxabs"), normalize_maps(b, "maxabs"))
    if "ssim" in measures or "hog" in measures:
        import numpy as np

        na = normalize_maps(a, "minmax").cpu().numpy()
        nb = normalize_maps(b, "minmax").cpu().numpy()
        if "ssim" in measures:
            from skimage.metrics import structural_similarity

            vals = [
                structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=ssim_sigma, use_sample_covariance=False)
                for x, y in zip(na, nb, strict=True)
            ]
            out["ssim"] = torch.tensor(vals, dtype=torch.float64, device=original.device)
        if "hog" in measures:
            from skimage.feature import hog

            cell = hog_pixels_per_cell or _hog_cell(*na.shape[1:])
            feats_a = np.stack([hog(x, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)) for x in na])
            feats_b = np.stack([hog(y, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)) for y in nb])
            out["hog"] = spearman(torch.from_numpy(feats_a), torch.from_numpy(feats_b)).to(original.device)
    return out


def _check_measures(measures: Sequence[str]) -> None:
    if isinstance(measures, str):
        raise TypeError(f"measures must be a list of measure names (some of {list(MEASURES)}); got the string {measures!r}")
    bad = [m for m in measures if m not in MEASURES]
    if bad or not measures:
        raise ValueError(f"unknown similarity measure(s) {bad or measures!r}; use some of {list(MEASURES)}")


def _check_run(model: nn.Module, x: torch.Tensor, measures: Sequence[str], threshold: float,
               verdict_measure: str, what: str = "model") -> tuple[torch.Tensor, dict[str, Any]]:
    """Arguments shared by the randomisation tests; returns x in the model's dtype and the
    settings notes (an input cast)."""
    from gradsum.methods.base import prepare_input

    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module; got {type(model).__name__}")
    _check_measures(measures)
    if verdict_measure not in measures:
        raise ValueError(f"verdict_measure {verdict_measure!r} must be one of the measures {list(measures)}")
    check_number(threshold, "threshold", meaning="similarity below which a method passes")
    return prepare_input(model, x, "x")


# --------------------------------------------------------------------------- results


@dataclass
class SanityResult:
    """Similarity of randomised maps to the original ones.

    frame: one row per (method, step, measure): mode, step (1..L), layer (what was
    randomised at that step: the layer name, or "permuted labels"), mean, std and n over the
    images. per_image: (method, step, measure) -> (B,) similarities. threshold and
    verdict_measure define `verdict()`.
    """

    frame: pd.DataFrame
    per_image: dict[tuple[str, int, str], torch.Tensor]
    settings: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.3
    verdict_measure: str = "spearman_abs"

    def curves(self, measure: str | None = None) -> pd.DataFrame:
        """Mean similarity per step (rows: step, layer) and method (columns) for `measure`."""
        measure = measure or self.verdict_measure
        sub = self.frame[self.frame["measure"] == measure]
        return sub.pivot_table(index=["step", "layer"], columns="method", values="mean", sort=True)

    def verdict(self, threshold: float | None = None, measure: str | None = None) -> pd.DataFrame:
        """Per method: the similarity after full randomisation (the last cascading step, or
        the permuted-label model) and whether it is below `threshold` ("passes"). In
        independent mode, the largest similarity over the single-layer randomisations."""
        import pandas as pd

        threshold = self.threshold if threshold is None else threshold
        measure = measure or self.verdict_measure
        rows = []
        for method, sub in self.frame[self.frame["measure"] == measure].groupby("method", sort=False):
            if self.settings.get("mode") == "independent":
                final = float(sub["mean"].max())
            else:
                final = float(sub.sort_values("step")["mean"].iloc[-1])
            rows.append(
                {
                    "method": method,
                    "measure": measure,
                    "similarity": final,
                    "threshold": threshold,
                    "passes": bool(final < threshold) if not math.isnan(final) else False,
                }
            )
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def plot(self, measures: Sequence[str] | None = None, axes: Any = None) -> Figure:
        """One panel per measure: mean similarity (± std) against the randomisation step,
        one line per method, the threshold dashed."""
        import matplotlib.pyplot as plt

        measures = list(measures or sorted(set(self.frame["measure"]), key=list(MEASURES).index))
        if axes is None:
            fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.6), squeeze=False)
            axes = axes[0]
        else:
            fig = axes[0].figure
        for ax, measure in zip(axes, measures, strict=False):
            sub = self.frame[self.frame["measure"] == measure]
            labels: list[str] = []
            for method, rows in sub.groupby("method", sort=False):
                rows = rows.sort_values("step")
                ax.errorbar(rows["step"], rows["mean"], yerr=rows["std"], marker="o", capsize=2, label=method)
                labels = list(rows["layer"])
            steps = sorted(set(sub["step"]))
            ax.set_xticks(steps)
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
            ax.axhline(self.threshold, ls="--", c="grey", lw=1)
            ax.set_title(measure)
            ax.set_ylim(-1.05 if measure.startswith("spearman") or measure == "hog" else -0.05, 1.05)
        axes[0].set_ylabel("similarity to original map")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"sanity check: {self.settings.get('mode', '')}")
        fig.tight_layout()
        return fig


# --------------------------------------------------------------------------- running


def _factories(methods: MethodsSpec, layer: Any) -> dict[str, ExplainerFactory]:
    from gradsum.methods.registry import explainer

    def by_name(name: str) -> ExplainerFactory:
        return lambda model: explainer(name, model, layer=layer)

    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise ValueError("methods is empty; give at least one method (a registry name or {name: factory(model)})")
    if isinstance(methods, Mapping):
        return {k: (by_name(v) if isinstance(v, str) else v) for k, v in methods.items()}
    return {m: by_name(m) for m in methods}


def _maps(factory: ExplainerFactory, model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    result = factory(model)(x, target)
    maps = result.maps if hasattr(result, "maps") else result
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError("an explainer factory must return exp(x, target) -> Attribution or (B,H,W) maps")
    return maps.detach()


def _fixed_target(model: nn.Module, x: torch.Tensor, target: TargetSpec) -> Any:
    """The target with class indices fixed on the original model (None = its predicted
    class), so randomised models explain the same output. Regression, segmentation and
    callable targets do not depend on the model and are passed on unchanged."""
    spec = resolve_target(target)
    if not isinstance(spec, ClassTarget | DefaultTarget):
        return target
    with preserved_state(model), torch.inference_mode():
        bound = spec.bind(forward_checked(model, x))
    if bound.score == "output":  # DefaultTarget on a one-output model: regression output 0
        return target
    return ClassTarget(bound.indices.clone(), score=bound.score)  # type: ignore[arg-type]


def _compare(
    factories: dict[str, ExplainerFactory],
    originals: dict[str, torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    step: int,
    label: str,
    mode: str,
    measures: Sequence[str],
    rows: list[dict[str, Any]],
    per_image: dict[tuple[str, int, str], torch.Tensor],
    hog_pixels_per_cell: int | None,
) -> None:
    for method, factory in factories.items():
        sims = similarity(originals[method], _maps(factory, model, x, target), measures, hog_pixels_per_cell=hog_pixels_per_cell)
        for measure, values in sims.items():
            finite = values[torch.isfinite(values)]
            rows.append(
                {
                    "method": method,
                    "mode": mode,
                    "step": step,
                    "layer": label,
                    "measure": measure,
                    "mean": float(finite.mean()) if finite.numel() else math.nan,
                    "std": float(finite.std()) if finite.numel() > 1 else 0.0,
                    "n": int(finite.numel()),
                }
            )
            per_image[(method, step, measure)] = values.cpu()


def model_randomization(
    model: nn.Module,
    x: torch.Tensor,
    methods: MethodsSpec,
    *,
    layer: Any = "auto",
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    target: TargetSpec = None,
    seed: int = 0,
    measures: Sequence[str] = MEASURES,
    threshold: float = 0.3,
    verdict_measure: str = "spearman_abs",
    hog_pixels_per_cell: int | None = None,
) -> SanityResult:
    """Model parameter randomisation test (Adebayo et al. 2018).

    methods: registry names (built with `layer`) or {name: factory(model) -> exp(x, target)}.
    mode: "cascading" (randomise the output layer, then also the next one towards the input,
    ... cumulative) or "independent" (one layer at a time). layers: which layers to
    randomise (default `randomizable_layers(model)`, listed input -> output). target: fixed
    on the original model (None = its predicted class) and reused for every randomised copy.
    The model's weights are restored after each step and on error.
    """
    import pandas as pd

    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent'; got {mode!r}")
    x, notes = _check_run(model, x, measures, threshold, verdict_measure)
    if isinstance(layers, str):
        raise TypeError(f"layers must be a list of layer names; got the string {layers!r} (use layers=[{layers!r}])")
    if layers is not None and len(layers) == 0:
        raise ValueError("layers=[] names no layer to randomise; give layer names, or layers=None for every "
                         "layer with reset_parameters()")
    names = list(layers) if layers is not None else randomizable_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no layer with parameters and reset_parameters() to randomise")
    for name in names:
        resolve_layer(model, name)
    factories = _factories(methods, layer)
    fixed = _fixed_target(model, x, target)
    originals = {m: _maps(f, model, x, fixed) for m, f in factories.items()}
    rows: list[dict[str, Any]] = []
    per_image: dict[tuple[str, int, str], torch.Tensor] = {}
    top_down = names[::-1]
    for step, name in enumerate(top_down, start=1):
        chosen = top_down[:step] if mode == "cascading" else [name]
        with randomized_layers(model, chosen, seed, order=names):
            _compare(factories, originals, model, x, fixed, step, name, mode, measures, rows, per_image, hog_pixels_per_cell)
    settings = {"mode": mode, "layers": top_down, "seed": seed, "measures": list(measures), "layer": str(layer),
                **notes}
    return SanityResult(pd.DataFrame(rows), per_image, settings, threshold, verdict_measure)


def data_randomization(
    model: nn.Module,
    randomized_model: nn.Module,
    x: torch.Tensor,
    methods: MethodsSpec,
    *,
    layer: Any = "auto",
    target: TargetSpec = None,
    measures: Sequence[str] = MEASURES,
    threshold: float = 0.3,
    verdict_measure: str = "spearman_abs",
    hog_pixels_per_cell: int | None = None,
) -> SanityResult:
    """Data randomisation test: maps of `model` against maps of `randomized_model` (the same
    architecture trained on permuted labels, see `train_on_permuted_labels`) for the same
    target (fixed on `model`: None = its predicted class)."""
    import pandas as pd

    x, notes = _check_run(model, x, measures, threshold, verdict_measure)
    if not isinstance(randomized_model, nn.Module):
        raise TypeError(f"randomized_model must be a torch.nn.Module; got {type(randomized_model).__name__}")
    factories = _factories(methods, layer)
    fixed = _fixed_target(model, x, target)
    originals = {m: _maps(f, model, x, fixed) for m, f in factories.items()}
    rows: list[dict[str, Any]] = []
    per_image: dict[tuple[str, int, str], torch.Tensor] = {}
    _compare(factories, originals, randomized_model, x, fixed, 1, "permuted labels", "data", measures, rows, per_image, hog_pixels_per_cell)
    settings = {"mode": "data", "measures": list(measures), "layer": str(layer), **notes}
    return SanityResult(pd.DataFrame(rows), per_image, settings, threshold, verdict_measure)


class PermutedLabels:
    """A dataset view whose sample targets are a seeded permutation of the original ones
    (images unchanged): the training set of the data randomisation test."""

    def __init__(self, dataset: Any, seed: int = 0):
        self.dataset = dataset
        n = len(dataset)
        gen = torch.Generator().manual_seed(int(seed))
        self.perm = torch.randperm(n, generator=gen).tolist()
        self._targets = [dataset[i].target for i in range(n)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        sample = self.dataset[i]
        return dataclasses.replace(sample, target=self._targets[self.perm[i]])


def train_on_permuted_labels(
    make_model: Callable[[], nn.Module],
    train: Any,
    *,
    seed: int = 0,
    epochs: int = 10,
    **fit_options: Any,
) -> nn.Module:
    """Train a fresh `make_model()` on `PermutedLabels(train, seed)` with
    `gradsum.train.fit(task="classification", epochs=..., seed=...)`; returns the model.
    Give it the training budget of the original model (Adebayo et al. train to the same
    training accuracy)."""
    from gradsum.train import fit

    model = make_model()
    fit(model, PermutedLabels(train, seed), task="classification", epochs=epochs, seed=seed, progress=False, **fit_options)
    return model.eval()
