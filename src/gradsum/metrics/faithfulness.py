"""Model-truth (faithfulness) metrics: does the model's output follow the heatmap?

All perturbed inputs go through `gradsum.core.batching.batched_scores` (chunks built on the
fly on the images' device, `torch.inference_mode()`, batch_size="auto", progress callback);
the model runs in eval mode with frozen parameters and is left exactly as found. Every
function takes `target` (None = the class predicted on x; an int, a list, or a Target) and
`score` ("probability" by default except where stated: the softmax of the explained class;
a Target instance brings its own convention), and records both in `settings`.
Perturbations are applied in model-input space (the tensor x the model receives).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.batching import BatchSize, Progress, batched_scores
from gradsum.core.normalize import NormalizeMode, normalize_maps
from gradsum.core.probe import preserved_state
from gradsum.core.targets import BoundTarget, TargetSpec
from gradsum.methods._args import check_number
from gradsum.metrics._common import (
    MetricResult,
    bind_target,
    check_model_inputs,
    pixel_order,
    rank_of_pixels,
    top_count,
    warn_nan,
)
from gradsum.metrics.imputation import noisy_linear_impute

__all__ = [
    "average_drop",
    "increase_in_confidence",
    "confidence_change",
    "deletion",
    "insertion",
    "deletion_insertion",
    "road",
    "faithfulness_correlation",
    "make_substrate",
    "gaussian_blur",
]

Substrate = str | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def gaussian_blur(x: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) images, normalised kernel, replicate padding
    (so any image size works and borders are not darkened)."""
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (half, half, half, half), mode="replicate")
    y = F.conv2d(y, k.reshape(1, 1, 1, -1))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def make_substrate(x: torch.Tensor, substrate: Substrate) -> tuple[torch.Tensor, str]:
    """What removed pixels are replaced with, (B,C,H,W) in model-input space, and its name.

    "zeros": 0 in model-input space; "blur": Gaussian blur (kernel 11, sigma 5, as in RISE);
    "mean": each image's per-channel mean; a tensor broadcastable to x; or a callable
    x -> tensor.
    """
    if isinstance(substrate, str):
        if substrate == "zeros":
            return torch.zeros_like(x), "zeros"
        if substrate == "blur":
            return gaussian_blur(x, 11, 5.0), "blur(kernel=11, sigma=5)"
        if substrate == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous(), "mean"
        raise ValueError(f"unknown substrate {substrate!r}; use 'zeros', 'blur', 'mean', a tensor or a callable")
    if isinstance(substrate, torch.Tensor):
        try:
            return torch.broadcast_to(substrate.to(x), x.shape).contiguous(), "tensor"
        except RuntimeError as exc:
            raise ValueError(
                f"substrate tensor {tuple(substrate.shape)} does not broadcast to the images {tuple(x.shape)}"
            ) from exc
    if callable(substrate):
        out = substrate(x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise ValueError(f"a substrate callable must return a tensor shaped like x {tuple(x.shape)}")
        return out.to(x), getattr(substrate, "__name__", "callable")
    raise TypeError(f"substrate must be a name, a tensor or a callable; got {type(substrate).__name__}")


def _evaluate(
    model: nn.Module,
    n: int,
    make_inputs: Callable[[int, int], torch.Tensor],
    bound: BoundTarget,
    rows: torch.Tensor,
    batch_size: BatchSize,
    progress: Progress | None,
    device: torch.device,
) -> torch.Tensor:
    """Scores (n,) of the perturbed inputs: item i perturbs sample rows[i]."""

    def score(out: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return bound(out, rows[start:stop]).float()

    with preserved_state(model):
        return batched_scores(
            model, n, make_inputs, score, batch_size=batch_size, device=device, progress=progress
        )


def _setup(model, x, maps, target, score, metric):
    """Checked (x in the model's dtype, maps, bound target, clean scores, score convention,
    settings notes such as an input cast)."""
    x, maps, notes = check_model_inputs(model, x, maps, metric)
    bound, clean, used = bind_target(model, x, target, score)
    return x, maps, bound, clean.float(), used, notes


# --------------------------------------------------------------------------- drop / increase


def confidence_change(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    target: TargetSpec = None,
    score: str = "probability",
    keep: float | None = None,
    normalize: NormalizeMode = "minmax",
    substrate: Substrate = "zeros",
    seed: int = 0,
    batch_size: BatchSize = "auto",
    progress: Progress | None = None,
) -> tuple[MetricResult, MetricResult]:
    """Average drop and increase in confidence from one batched evaluation
    (Chattopadhay et al., Grad-CAM++, WACV 2018).

    Y = score on x; O = score on the explanation-masked input:
    keep=None: O on E ⊙ x + (1 - E) ⊙ substrate with E = normalize(map) (per image,
    "minmax" by default, so E ∈ [0,1]; with the zero substrate this is E ⊙ x);
    keep=0.15: O on x with only the top 15% map pixels kept (the rest -> substrate; ties
    in seeded order), as in the SISE / Ada-SISE tables.
    average_drop per sample = 100 · max(0, Y - O) / Y (NaN where Y <= 0);
    increase per sample = 100 · [O > Y]. Aggregates are their means (in %).
    """
    metric = "average_drop"
    x, maps, bound, clean, used, notes = _setup(model, x, maps, target, score, metric)
    sub, sub_name = make_substrate(x, substrate)
    if keep is None:
        weight = normalize_maps(maps, normalize)
        lo, hi = float(weight.min()), float(weight.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{metric}: the explanation weights must lie in [0,1] (got {lo:.3g}..{hi:.3g} with "
                f"normalize={normalize!r}); use normalize='minmax' or 'relu-minmax'"
            )
        weight = weight[:, None].to(x.dtype)
    else:
        k = top_count(keep, maps[0].numel(), "keep", metric)
        ranks = rank_of_pixels(pixel_order(maps, seed))
        weight = (ranks < k).reshape(maps.shape)[:, None].to(x.dtype)

    def make(start: int, stop: int) -> torch.Tensor:
        w = weight[start:stop]
        return x[start:stop] * w + sub[start:stop] * (1 - w)

    rows = torch.arange(x.shape[0], device=x.device)
    masked = _evaluate(model, x.shape[0], make, bound, rows, batch_size, progress, x.device)
    positive = clean > 0
    warn_nan(metric, ~positive, f"the clean score ({used}) is not positive, so a relative drop is undefined")
    drop = 100 * (clean - masked).clamp_min(0) / torch.where(positive, clean, 1.0)
    drop = torch.where(positive, drop, torch.nan)
    increase = 100 * (masked > clean).float()
    settings = {
        "score": used,
        "target": bound.description,
        "keep": keep,
        "normalize": normalize if keep is None else None,
        "substrate": sub_name,
        "seed": seed,
        **notes,
    }
    extras = {"clean_scores": clean, "masked_scores": masked}
    return (
        MetricResult("average_drop", drop, dict(settings), extras),
        MetricResult("increase_in_confidence", increase, dict(settings), extras),
    )


def average_drop(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, **kwargs) -> MetricResult:
    """Average drop % (Grad-CAM++): 100 · mean max(0, Y - O)/Y. Same arguments as
    `confidence_change` (score="probability", keep=None or 0.15, normalize="minmax")."""
    return confidence_change(model, x, maps, **kwargs)[0]


def increase_in_confidence(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, **kwargs) -> MetricResult:
    """Increase in confidence % (Grad-CAM++): 100 · mean [O > Y]. Same arguments as
    `confidence_change`."""
    return confidence_change(model, x, maps, **kwargs)[1]


# --------------------------------------------------------------------------- deletion / insertion


def _step_counts(n_pixels: int, width: int, step: int | None, steps: int | None) -> list[int]:
    if step is not None and steps is not None:
        raise ValueError("give step= (pixels per step) or steps= (number of steps), not both")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int; got {steps!r}")
        step = math.ceil(n_pixels / steps)
    if step is None:
        step = width
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive number of pixels; got {step!r}")
    return [*range(0, n_pixels, step), n_pixels]


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    target: TargetSpec = None,
    score: str = "probability",
    step: int | None = None,
    steps: int | None = None,
    deletion_substrate: Substrate = "zeros",
    insertion_substrate: Substrate = "blur",
    modes: Sequence[str] = ("deletion", "insertion"),
    seed: int = 0,
    batch_size: BatchSize = "auto",
    progress: Progress | None = None,
) -> dict[str, MetricResult]:
    """Deletion and insertion games (Petsiuk et al., RISE, BMVC 2018), in one engine run.

    Pixels are ranked by the map (highest first; all channels of a pixel move together;
    ties in a seeded random order). Deletion replaces the top-k pixels of x by the deletion
    substrate (zeros in model-input space by default); insertion places the top-k pixels of x
    over the insertion substrate (a blurred copy: Gaussian kernel 11, sigma 5). k grows by
    `step` pixels (default: the image width, i.e. H+1 points) or in `steps` steps. Score: the
    probability of the class predicted on x (by default). AUC = trapezoid rule over the
    removed/inserted fraction in [0,1]. Returns {"deletion": ..., "insertion": ...} with the
    curves (B,P) in extras["curves"] and the x positions (P,) in extras["fractions"].
    Lower deletion AUC and higher insertion AUC are better.
    """
    modes = tuple(modes)
    if not modes or any(m not in ("deletion", "insertion") for m in modes) or len(set(modes)) != len(modes):
        raise ValueError(f"modes must be a non-empty subset of ('deletion', 'insertion'); got {modes!r}")
    x, maps, bound, clean, used, notes = _setup(model, x, maps, target, score, "deletion/insertion")
    b, c, h, w = x.shape
    n_pix = h * w
    counts = _step_counts(n_pix, w, step, steps)
    n_points = len(counts)
    ranks = rank_of_pixels(pixel_order(maps, seed))  # (B,HW)
    subs = []
    names = {}
    for mode in modes:
        sub, name = make_substrate(x, deletion_substrate if mode == "deletion" else insertion_substrate)
        subs.append(sub.reshape(b, c, n_pix))
        names[mode] = name
    base = torch.stack(subs)  # (M,B,C,HW)
    flat_x = x.reshape(b, c, n_pix)
    per_mode = n_points - 1  # the clean point of each curve is known: Y
    per_image = len(modes) * per_mode
    counts_t = torch.tensor(counts, device=x.device)
    mode_is_insertion = torch.tensor([m == "insertion" for m in modes], device=x.device)

    def decode(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = idx // per_image
        r = idx % per_image
        mode = r // per_mode
        j = r % per_mode
        ins = mode_is_insertion[mode]
        point = torch.where(ins, j, j + 1)  # deletion: points 1..P-1, insertion: 0..P-2
        return img, mode, point

    n_items = b * per_image
    all_img, all_mode, all_point = decode(torch.arange(n_items, device=x.device))

    def make(start: int, stop: int) -> torch.Tensor:
        img, mode, point = all_img[start:stop], all_mode[start:stop], all_point[start:stop]
        k = counts_t[point][:, None]
        in_top = ranks[img] < k  # (n,HW)
        keep_x = torch.where(mode_is_insertion[mode][:, None], in_top, ~in_top)
        out = torch.where(keep_x[:, None], flat_x[img], base[mode, img])
        return out.reshape(-1, c, h, w)

    values = _evaluate(model, n_items, make, bound, all_img, batch_size, progress, x.device)
    values = values.reshape(b, len(modes), per_mode)
    fractions = counts_t.to(torch.float32) / n_pix
    results: dict[str, MetricResult] = {}
    for mi, mode in enumerate(modes):
        curve = torch.empty((b, n_points), device=x.device, dtype=torch.float32)
        if mode == "deletion":
            curve[:, 0] = clean
            curve[:, 1:] = values[:, mi]
        else:
            curve[:, :-1] = values[:, mi]
            curve[:, -1] = clean
        auc = torch.trapezoid(curve, fractions, dim=1)
        settings = {
            "score": used,
            "target": bound.description,
            "substrate": names[mode],
            "step": counts[1] - counts[0],
            "points": n_points,
            "seed": seed,
            "ties": "seeded random order",
            **notes,
        }
        results[mode] = MetricResult(mode, auc, settings, {"curves": curve, "fractions": fractions})
    return results


def deletion(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, *, substrate: Substrate = "zeros", **kwargs) -> MetricResult:
    """Deletion AUC (RISE): see `deletion_insertion`; substrate = zeros by default."""
    return deletion_insertion(model, x, maps, deletion_substrate=substrate, modes=("deletion",), **kwargs)["deletion"]


def insertion(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, *, substrate: Substrate = "blur", **kwargs) -> MetricResult:
    """Insertion AUC (RISE): see `deletion_insertion`; substrate = blurred copy by default."""
    return deletion_insertion(model, x, maps, insertion_substrate=substrate, modes=("insertion",), **kwargs)["insertion"]


# --------------------------------------------------------------------------- ROAD


def road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    percentages: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    target: TargetSpec = None,
    score: str = "probability",
    noise: float = 0.01,
    seed: int = 0,
    tol: float = 1e-4,
    batch_size: BatchSize = "auto",
    progress: Progress | None = None,
) -> MetricResult:
    """ROAD, remove and debias (Rong et al., ICML 2022).

    For each percentage p: MoRF removes the p% pixels with the highest map values, LeRF the
    p% with the lowest (ties in seeded order); removed pixels are filled by noisy linear
    imputation (`gradsum.metrics.imputation.noisy_linear_impute`: 8-neighbour weighted mean,
    1/6 edge, 1/12 diagonal, plus N(0, noise^2)), solved for the whole chunk at once. The
    imputation runs inside the engine's chunks. Returns per image mean_p (LeRF - MoRF) / 2
    (higher = more faithful) with the curves in extras["morf"], extras["lerf"] (B,P) and the
    percentages in extras["percentages"]. Noise is seeded per perturbed input, so results do
    not depend on the chunk size. tol: relative residual of the imputation solve (1e-4 keeps
    the fill within ~6e-4 of the exact solve, far below the noise; see noisy_linear_impute).
    """
    noise = check_number(noise, "road: noise", low=0.0, meaning="standard deviation of the imputation noise")
    tol = check_number(tol, "road: tol", low=0.0, low_open=True, meaning="relative residual of the imputation solve")
    try:
        pct = [float(p) for p in percentages]
    except (TypeError, ValueError):
        raise TypeError(f"road: percentages must be numbers in (0, 100); got {percentages!r}") from None
    if not pct or any(not 0 < p < 100 for p in pct):
        raise ValueError(f"road: percentages must lie strictly between 0 and 100; got {list(percentages)}")
    x, maps, bound, clean, used, notes = _setup(model, x, maps, target, score, "road")
    b, c, h, w = x.shape
    n_pix = h * w
    ranks = rank_of_pixels(pixel_order(maps, seed))
    counts = torch.tensor([max(1, round(p / 100 * n_pix)) for p in pct], device=x.device)
    n_p = len(pct)
    per_image = 2 * n_p
    n_items = b * per_image
    idx = torch.arange(n_items, device=x.device)
    all_img = idx // per_image
    all_lerf = (idx % per_image) // n_p == 1
    all_p = idx % n_p
    gen = torch.Generator()  # draws on the CPU: the same seed gives the same noise on every device

    def make(start: int, stop: int) -> torch.Tensor:
        img, lerf, p = all_img[start:stop], all_lerf[start:stop], all_p[start:stop]
        k = counts[p][:, None]
        r = ranks[img]
        removed = torch.where(lerf[:, None], r >= n_pix - k, r < k).reshape(-1, h, w)
        filled = noisy_linear_impute(x[img], removed, noise=0.0, tol=tol)
        if noise > 0:
            eps = torch.empty_like(filled)
            for i in range(start, stop):  # one seeded stream per perturbed input
                gen.manual_seed(int(seed) * 1_000_003 + i)
                eps[i - start] = torch.randn(filled.shape[1:], generator=gen, dtype=x.dtype).to(x.device)
            filled = filled + noise * eps * removed[:, None]
        return filled

    values = _evaluate(model, n_items, make, bound, all_img, batch_size, progress, x.device)
    values = values.reshape(b, 2, n_p)
    morf, lerf = values[:, 0], values[:, 1]
    per_sample = ((lerf - morf) / 2).mean(dim=1)
    settings = {
        "score": used,
        "target": bound.description,
        "percentages": pct,
        "imputation": "noisy linear (1/6 edge, 1/12 diagonal)",
        "noise": noise,
        "seed": seed,
        "tol": tol,
        **notes,
    }
    extras = {"morf": morf, "lerf": lerf, "percentages": torch.tensor(pct), "clean_scores": clean}
    return MetricResult("road", per_sample, settings, extras)


# --------------------------------------------------------------------------- faithfulness correlation


def faithfulness_correlation(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    target: TargetSpec = None,
    score: str = "logit",
    n_subsets: int = 100,
    subset: float | int = 0.1,
    substrate: Substrate = "zeros",
    seed: int = 0,
    batch_size: BatchSize = "auto",
    progress: Progress | None = None,
) -> MetricResult:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020): for `n_subsets` random pixel
    subsets S (size `subset`: a fraction of the pixels or a count), the Pearson correlation
    across subsets between sum_{p in S} m_p and the output drop Y - Y(x with S replaced by
    the substrate). score: the *logit* of the explained class by default. Subsets are drawn
    from a generator seeded per perturbed input (seed, sample, subset). A map or drop with no
    variance across subsets -> NaN.
    """
    if isinstance(n_subsets, bool) or not isinstance(n_subsets, int) or n_subsets < 2:
        raise ValueError(f"faithfulness_correlation: n_subsets must be an int >= 2; got {n_subsets!r}")
    x, maps, bound, clean, used, notes = _setup(model, x, maps, target, score, "faithfulness_correlation")
    b, c, h, w = x.shape
    n_pix = h * w
    k = top_count(subset, n_pix, "subset", "faithfulness_correlation")
    sub, sub_name = make_substrate(x, substrate)
    flat_x, flat_sub = x.reshape(b, c, n_pix), sub.reshape(b, c, n_pix)
    flat_m = maps.reshape(b, n_pix).float()
    n_items = b * n_subsets
    all_img = torch.arange(n_items, device=x.device) // n_subsets
    attr_sums = torch.empty(n_items, device=x.device, dtype=torch.float32)
    gen = torch.Generator()  # draws on the CPU: the same seed gives the same subsets on every device

    def make(start: int, stop: int) -> torch.Tensor:
        keys = torch.empty((stop - start, n_pix))
        for i in range(start, stop):
            gen.manual_seed(int(seed) * 1_000_003 + i)
            keys[i - start] = torch.rand(n_pix, generator=gen)
        keys = keys.to(x.device)
        chosen = torch.zeros_like(keys, dtype=torch.bool)
        chosen.scatter_(1, keys.topk(k, dim=1).indices, True)
        img = all_img[start:stop]
        attr_sums[start:stop] = (flat_m[img] * chosen).sum(dim=1)
        return torch.where(chosen[:, None], flat_sub[img], flat_x[img]).reshape(-1, c, h, w)

    perturbed = _evaluate(model, n_items, make, bound, all_img, batch_size, progress, x.device)
    drops = (clean[:, None] - perturbed.reshape(b, n_subsets)).double()
    sums = attr_sums.reshape(b, n_subsets).double()
    dx = sums - sums.mean(dim=1, keepdim=True)
    dy = drops - drops.mean(dim=1, keepdim=True)
    denom = (dx.square().sum(dim=1) * dy.square().sum(dim=1)).sqrt()
    flat = denom <= 1e-12
    warn_nan("faithfulness_correlation", flat, "the attribution sums or the output drops do not vary across subsets")
    corr = (dx * dy).sum(dim=1) / torch.where(flat, 1.0, denom)
    values = torch.where(flat, torch.nan, corr).float()
    settings = {
        "score": used,
        "target": bound.description,
        "n_subsets": n_subsets,
        "subset_pixels": k,
        "substrate": sub_name,
        "seed": seed,
        **notes,
    }
    return MetricResult("faithfulness_correlation", values, settings, {"attribution_sums": sums, "drops": drops})
