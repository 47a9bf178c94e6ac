"""Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, CVPR
2017), the fooling rate, and the cross-model transfer matrix.

v = 0; loop over the shuffled images: where k(x + v) == k(x), add the DeepFool step that
moves x + v across the boundary and project v onto the ball ||v||_p <= xi (L-inf: clip,
L2: rescale). Stop once the fooling rate >= 1 - delta or after max_passes passes.
Fooling rate = fraction of images whose predicted label changes: mean(k(x + v) != k(x)),
with x + v clipped to [0,1].
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.adversarial._common import (
    check_budget,
    check_images,
    check_model,
    check_positive_int,
    classifier_logits,
    predict,
    prepare_images,
)
from gradsum.adversarial.deepfool import check_candidates, deepfool
from gradsum.adversarial.fgsm_pgd import project
from gradsum.core.probe import preserved_state
from gradsum.methods._args import check_number, check_seed

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["UniversalResult", "universal_perturbation", "fooling_rate", "TransferMatrix", "transfer_matrix",
           "check_perturbation"]


def fooling_rate(model: nn.Module, images: torch.Tensor, v: torch.Tensor, *, batch_size: int = 256) -> float:
    """Fraction of images whose predicted label changes when v is added (clipped to [0,1]).
    v: one perturbation (1,C,H,W) or (C,H,W) of the images' size, or one per image (N,C,H,W)."""
    check_model(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    with preserved_state(model):
        images, _ = prepare_images(model, images)
        v = check_perturbation(v, images, "v")
        clean = predict(model, images, batch_size)
        pert = predict(model, (images + v).clamp(0, 1), batch_size)
    return float((clean != pert).float().mean())


def check_perturbation(v: object, images: torch.Tensor, what: str = "v") -> torch.Tensor:
    """v as a finite tensor in the images' dtype that adds to them: (1,C,H,W), (C,H,W) or (N,C,H,W)."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor perturbation (1,C,H,W); got {type(v).__name__}")
    shape = tuple(images.shape[1:])
    if not (tuple(v.shape) in (shape, (1, *shape)) or tuple(v.shape) == tuple(images.shape)):
        raise ValueError(
            f"{what} has shape {tuple(v.shape)} but the images are {tuple(images.shape)}; give one perturbation "
            f"(1, {', '.join(map(str, shape))}) of the images' size"
        )
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{what} contains NaN or infinite values")
    return v.to(device=images.device, dtype=images.dtype)


@dataclass
class UniversalResult:
    """v (1,C,H,W) with ||v||_p <= xi; fooling_rate on the images it was computed on;
    reached: whether fooling_rate >= target_rate; history: fooling rate after each pass."""

    v: torch.Tensor
    fooling_rate: float
    target_rate: float
    reached: bool
    passes: int
    xi: float
    p: str
    norm: float
    history: list[float] = field(default_factory=list)
    seed: int = 0

    def summary(self) -> str:
        status = "reached" if self.reached else "NOT reached"
        return (f"universal perturbation (L{self.p}, xi={self.xi:g}, ||v||={self.norm:.4g}): fooling rate "
                f"{self.fooling_rate:.3f} after {self.passes} passes; target {self.target_rate:.3f} {status}")


def _norm(v: torch.Tensor, p: str) -> float:
    return float(v.abs().max()) if p == "inf" else float(v.flatten().norm())


def universal_perturbation(
    model: nn.Module,
    images: torch.Tensor,
    *,
    xi: float = 10 / 255,
    p: str | float = "inf",
    delta: float = 0.2,
    max_passes: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int = 10,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> UniversalResult:
    """Compute one perturbation v that changes the label of most `images` (N,C,H,W).

    Stops when the fooling rate reaches 1 - delta or after `max_passes` passes over the
    images (shuffled with `seed` each pass); `reached` says which. xi is in pixel units
    for p="inf" (so it must be in [0,1]) and an L2 length for p=2. The set must hold at
    least ceil(1/delta) images, so that the rate 1 - delta tolerates one unfooled image.
    """
    check_model(model)
    key = str(p).lower().replace("l", "")
    if key not in ("inf", "2", "2.0"):
        raise ValueError(f"p must be 'inf' or 2, got {p!r}")
    key = "inf" if key == "inf" else "2"
    xi = check_budget(xi, key, "xi")
    delta = check_number(delta, "delta", low=0.0, high=1.0, low_open=True, high_open=True,
                         meaning="target fooling rate 1 - delta")
    check_positive_int(max_passes, "max_passes")
    check_positive_int(max_iter, "max_iter")
    check_candidates(candidates)
    overshoot = check_number(overshoot, "overshoot", low=0.0)
    seed = check_seed(seed)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(pass, rate) or None; got {type(progress).__name__}")
    images, dtype = prepare_images(model, images)
    n = images.shape[0]
    need = math.ceil(1 / delta - 1e-9)
    if n < need:
        raise ValueError(
            f"universal_perturbation needs at least {need} images for delta={delta:g} (a fooling rate of "
            f"{1 - delta:.2f} measured on fewer images cannot tolerate a single unfooled image); got {n}. "
            "Pass more images or a larger delta"
        )
    target = 1 - delta
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.zeros_like(images[:1])
    history: list[float] = []
    passes = 0
    with preserved_state(model):
        classifier_logits(model, images[:1])
        clean = predict(model, images)
        rate = 0.0
        while passes < max_passes:
            passes += 1
            for i in torch.randperm(n, generator=gen).tolist():
                xi_img = images[i:i + 1]
                xv = (xi_img + v).clamp(0, 1)
                with torch.no_grad():
                    same = bool(model(xv).argmax(1)[0] == clean[i])
                if same:
                    df = deepfool(model, xv, candidates=candidates, overshoot=overshoot, max_iter=max_iter)
                    if bool(df.fooled[0]):
                        v = project(v + df.perturbation, xi, key)
            rate = fooling_rate(model, images, v)
            history.append(rate)
            if progress is not None:
                progress(passes, rate)
            if rate >= target:
                break
    return UniversalResult(v.detach().to(dtype), rate, target, rate >= target, passes, float(xi), key,
                           _norm(v, key), history, seed)


@dataclass
class TransferMatrix:
    """rates[source][target]: fooling rate on `target` of the perturbation computed on
    `source`; every cell uses the same evaluation images."""

    table: pd.DataFrame
    perturbations: dict[str, torch.Tensor]
    results: dict[str, UniversalResult]
    n_images: int

    def figure(self) -> Figure:
        from matplotlib.figure import Figure

        t = self.table
        fig = Figure(figsize=(1.2 * len(t.columns) + 2.5, 1.0 * len(t.index) + 1.8))
        ax = fig.subplots()
        im = ax.imshow(t.to_numpy(dtype=float), vmin=0, vmax=1, cmap="magma")
        ax.set_xticks(range(len(t.columns)), [str(c) for c in t.columns], rotation=30, ha="right")
        ax.set_yticks(range(len(t.index)), [str(r) for r in t.index])
        ax.set_xlabel("fooling rate on (target model)")
        ax.set_ylabel("perturbation computed on")
        for i in range(len(t.index)):
            for j in range(len(t.columns)):
                val = float(t.iat[i, j])
                ax.text(j, i, f"{100 * val:.1f}%", ha="center", va="center",
                        color="black" if val > 0.6 else "white", fontweight="bold" if i == j else "normal", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(f"universal perturbation transfer ({self.n_images} images)", fontsize=9)
        fig.tight_layout()
        return fig


def transfer_matrix(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    *,
    eval_images: torch.Tensor | None = None,
    perturbations: Mapping[str, torch.Tensor] | None = None,
    **universal_kwargs: Any,
) -> TransferMatrix:
    """Fooling rate of each source model's universal perturbation on each target model.

    Perturbations are computed on `images` with universal_perturbation(**universal_kwargs)
    unless given; all cells, the diagonal included, are evaluated on the same
    `eval_images` (default: `images`). Returns rows = source, columns = target.
    """
    import pandas as pd

    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a mapping {{name: model}}; got {type(models).__name__}")
    if not models:
        raise ValueError("models is empty: transfer_matrix needs at least one {name: model}")
    for name, model in models.items():
        check_model(model, f"models[{name!r}]")
    check_images(images, "images")
    evals = images if eval_images is None else eval_images
    check_images(evals, "eval_images")
    vs: dict[str, torch.Tensor] = dict(perturbations or {})
    unknown = sorted(set(vs) - set(models))
    if unknown:
        raise ValueError(f"perturbations given for unknown models {unknown}; models are {sorted(models)}")
    for name, v in vs.items():
        check_perturbation(v, evals[:1], f"perturbations[{name!r}]")
    results: dict[str, UniversalResult] = {}
    for name, model in models.items():
        if name not in vs:
            results[name] = universal_perturbation(model, images, **universal_kwargs)
            vs[name] = results[name].v
    names = list(models)
    table = pd.DataFrame(
        [[fooling_rate(models[t], evals, vs[s]) for t in names] for s in names],
        index=pd.Index(names, name="source"), columns=pd.Index(names, name="target"),
    )
    return TransferMatrix(table, vs, results, evals.shape[0])
