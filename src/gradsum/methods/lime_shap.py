"""LIME and KernelSHAP over superpixels.

Both switch superpixels on (x) and off (baseline) according to binary vectors z, score the
perturbed images through the batched engine, and fit a linear surrogate g(z) = phi_0 +
sum_i phi_i z_i whose weights are painted on the superpixels:

- LIME (Ribeiro et al. 2016): z ~ Bernoulli(0.5) (first sample: all on), exponential kernel
  sqrt(exp(-d^2 / width^2)) on the cosine distance d to the all-on vector (width 0.25),
  weighted ridge regression (scikit-learn, alpha 1).
- KernelSHAP (Lundberg & Lee 2017): coalition sizes drawn proportional to the Shapley kernel
  (M-1) / (s (M-s)), uniform subsets of that size, unregularised weighted least squares
  with the efficiency constraint sum_i phi_i = f(x) - f(baseline); when 2^M - 2 <= n_samples
  every coalition is enumerated with its exact kernel weight. Exact for linear models.

Superpixels: scikit-image SLIC (~50 segments) per image, or a user `segments` mask.

Randomness: each image's coalitions come from its own CPU torch.Generator seeded with `seed`,
so they depend on the seed and that image's number of superpixels alone (not on its position
in the batch or on the other images); two images with the same number of superpixels share
their coalitions.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, Progress
from gradsum.core.targets import BoundTarget, Target
from gradsum.methods._args import check_choice, check_int, check_number, check_seed
from gradsum.methods.base import Explainer
from gradsum.methods.occlusion import broadcast_baseline
from gradsum.methods.perturbation import (
    ScoreMode,
    check_batch_size,
    mask_target,
    score_items,
    score_label,
)
from gradsum.methods.registry import register

__all__ = ["LIME", "KernelSHAP", "superpixels"]


def _relabel(seg: torch.Tensor) -> tuple[torch.Tensor, int]:
    values, inverse = torch.unique(seg, return_inverse=True)
    return inverse.reshape(seg.shape).long(), int(values.numel())


def superpixels(x: torch.Tensor, segments: torch.Tensor | None = None, *, n_segments: int = 50,
                compactness: float = 10.0) -> tuple[torch.Tensor, list[int]]:
    """Superpixel labels (B,H,W) int64, consecutive from 0 per image, and their counts.

    segments: a user mask (H,W) (shared) or (B,H,W) of integer labels; None: scikit-image
    SLIC with `n_segments` and `compactness` on each image (min-max scaled to [0,1]; Lab
    colour space for RGB, raw values when that collapses to one segment)."""
    batch, (h, w) = x.shape[0], x.shape[-2:]
    if segments is not None:
        if not isinstance(segments, torch.Tensor):
            raise TypeError(f"segments must be an integer tensor (H,W) or (B,H,W); got {type(segments).__name__}")
        if segments.is_floating_point() or segments.dtype == torch.bool:
            raise TypeError(f"segments must hold integer labels; got {segments.dtype}")
        if segments.ndim == 2 and tuple(segments.shape) == (h, w):
            segments = segments.expand(batch, h, w)
        if segments.ndim != 3 or tuple(segments.shape) != (batch, h, w):
            raise ValueError(
                f"segments has shape {tuple(segments.shape)}; expected (H,W) = {(h, w)} or (B,H,W) = {(batch, h, w)}"
            )
        pairs = [_relabel(s) for s in segments.to(x.device)]
        return torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]
    from skimage.segmentation import slic

    labels, counts = [], []
    images = x.detach().float()
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    span = (images.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    images = ((images - lo) / span).cpu().numpy()
    for img in images:
        image, axis = (img[0], None) if img.shape[0] == 1 else (img.transpose(1, 2, 0), -1)
        seg = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=axis)
        relabelled, count = _relabel(torch.from_numpy(seg))
        if count < 2:  # noise-like images collapse in Lab space: segment the raw [0,1] values instead
            seg = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=axis,
                       convert2lab=False)
            relabelled, count = _relabel(torch.from_numpy(seg))
        labels.append(relabelled)
        counts.append(count)
    return torch.stack(labels).to(x.device), counts


class _SuperpixelExplainer(Explainer):
    """Shared sampling, scoring and painting of LIME / KernelSHAP."""

    default_samples = 500

    def __init__(self, model: nn.Module, layer: Any = None, *, segments: torch.Tensor | None = None,
                 n_segments: int = 50, compactness: float = 10.0, n_samples: int | None = None,
                 baseline: float | torch.Tensor = 0.0, score: ScoreMode = "probability", seed: int = 0,
                 batch_size: BatchSize = "auto", progress: Progress | None = None):
        super().__init__(model, layer=layer)
        if segments is not None and not isinstance(segments, torch.Tensor):
            raise TypeError(f"segments must be an integer tensor (H,W) or (B,H,W); got {type(segments).__name__}")
        self.segments = segments
        self.n_segments = check_int(n_segments, "n_segments", 2)
        self.compactness = check_number(compactness, "compactness", low=0, low_open=True,
                                        meaning="SLIC's colour/space trade-off")
        self.n_samples = check_int(self.default_samples if n_samples is None else n_samples, "n_samples")
        if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor):
            raise TypeError(f"baseline must be a number or a tensor; got {type(baseline).__name__}")
        if isinstance(baseline, torch.Tensor):
            if not baseline.is_floating_point() or not bool(torch.isfinite(baseline).all()):
                raise ValueError("baseline tensor must be floating point with finite values")
        else:
            check_number(baseline, "baseline", meaning="the value of switched-off superpixels")
        self.score = check_choice(score, "score", ("probability", "target"))
        self.baseline, self.seed = baseline, check_seed(seed)
        self.batch_size, self.progress = check_batch_size(batch_size), progress

    def sample_image(self, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary coalitions z (n, m) and regression weights (n,) for an image of m superpixels."""
        raise NotImplementedError  # pragma: no cover

    def sample(self, counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary coalitions z (B, n, max M) (zero-padded) and regression weights (B, n) (padded
        rows weigh 0). Image b's rows come from `sample_image(counts[b], gen)` with a fresh
        generator seeded with `seed`: they depend on the seed and counts[b] alone."""
        per_image = [self.sample_image(m, torch.Generator().manual_seed(self.seed)) for m in counts]
        n = max(z.shape[0] for z, _ in per_image)
        out = torch.zeros(len(counts), n, max(counts), dtype=torch.bool)
        weights = torch.zeros(len(counts), n, dtype=torch.float64)
        for b, (z, w) in enumerate(per_image):
            out[b, : z.shape[0], : z.shape[1]] = z
            weights[b, : z.shape[0]] = w
        return out, weights

    def fit(self, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, full: float, empty: float) -> torch.Tensor:
        """Surrogate weights phi (M,) from coalitions z (n,M) float64, scores y (n,)."""
        raise NotImplementedError  # pragma: no cover

    def _evaluate(self, x: torch.Tensor, seg: torch.Tensor, z: torch.Tensor, scorer: BoundTarget) -> torch.Tensor:
        batch, n = z.shape[0], z.shape[1]
        base = broadcast_baseline(self.baseline, x)
        seg_flat = seg.flatten(1)
        zd = z.to(x.device)

        def make(start: int, stop: int) -> torch.Tensor:
            t = torch.arange(start, stop, device=x.device)
            b, j = t // n, t % n
            on = torch.gather(zd[b, j], 1, seg_flat[b]).reshape(-1, 1, *x.shape[-2:])
            return torch.where(on, x[b], base[b])

        rows = torch.arange(batch, device=x.device).repeat_interleave(n)
        return score_items(self.model, batch * n, make, scorer, rows, batch_size=self.batch_size, device=x.device,
                           progress=self.progress).reshape(batch, n)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        seg, counts = superpixels(x, self.segments, n_segments=self.n_segments, compactness=self.compactness)
        self._check_counts(counts)
        with torch.no_grad():
            output = self.model(x)
        bound = target.bind(output)
        scorer = mask_target(bound, output, self.score)
        z, weights = self.sample(counts)
        batch, n, m_max = z.shape
        # two extra rows per image: everything on (x) and everything off (the baseline)
        ends = torch.zeros(batch, 2, m_max, dtype=torch.bool)
        ends[:, 0] = True
        y = self._evaluate(x, seg, torch.cat([z, ends], dim=1), scorer).double().cpu()
        phis = []
        for b, m in enumerate(counts):
            phis.append(self.fit(z[b, :, :m].double(), y[b, :n], weights[b], float(y[b, n]), float(y[b, n + 1])))
        maps = torch.stack([phi.to(x.device).float()[s] for phi, s in zip(phis, seg, strict=True)])
        return Attribution(
            method=self.name, maps=maps, scores=bound(output).detach(), targets=bound.indices,
            cost=Cost(forward_passes=batch * (n + 3), masks=batch * (n + 2)),
            settings={"n_samples": n, "superpixels": counts, "segments": seg, "superpixel_weights": phis,
                      "baseline": self.baseline if not isinstance(self.baseline, torch.Tensor) else "tensor",
                      "score": score_label(scorer), "target": bound.description, "seed": self.seed,
                      **self._extra_settings()},
        )

    def _check_counts(self, counts: list[int]) -> None:
        if min(counts) < 2:
            raise ValueError(f"{self.name} needs at least 2 superpixels per image; got counts {counts}")

    def _extra_settings(self) -> dict[str, Any]:
        return {}


@register("lime", family="perturbation", passes="n_samples masked forwards (default 500)",
          paper="Ribeiro et al. 2016, \"Why Should I Trust You?\" (LIME)", signed=True)
class LIME(_SuperpixelExplainer):
    """LIME over superpixels: z ~ Bernoulli(0.5) (sample 0 all on), kernel
    sqrt(exp(-d^2 / kernel_width^2)) of the cosine distance d to the all-on vector, weighted
    ridge (scikit-learn Ridge, `alpha`, with intercept); each superpixel's weight painted on
    it. score="probability" (default): class probability for classifiers, raw output for
    regressors. Signed."""

    def __init__(self, model: nn.Module, layer: Any = None, *, kernel_width: float = 0.25, alpha: float = 1.0,
                 **options: Any):
        super().__init__(model, layer, **options)
        self.kernel_width = check_number(kernel_width, "kernel_width", low=0, low_open=True,
                                         meaning="width of LIME's exponential kernel on the cosine distance")
        self.alpha = check_number(alpha, "alpha", low=0, meaning="ridge regularisation")

    def sample_image(self, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.rand((self.n_samples, m), generator=gen) < 0.5
        z[0] = True
        on = z.double().sum(dim=1)
        cosine = on / (on.sqrt().clamp_min(1e-12) * math.sqrt(m))
        d = torch.where(on > 0, 1 - cosine, torch.ones_like(on))
        return z, torch.exp(-(d**2) / self.kernel_width**2).sqrt()

    def fit(self, z, y, weights, full, empty):
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=self.alpha, fit_intercept=True)
        model.fit(z.numpy(), y.numpy(), sample_weight=weights.numpy())
        return torch.from_numpy(model.coef_.copy())

    def _extra_settings(self) -> dict[str, Any]:
        return {"kernel_width": self.kernel_width, "alpha": self.alpha}


@register("kernelshap", family="perturbation", passes="n_samples + 2 masked forwards (default 500)",
          paper="Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (KernelSHAP)",
          signed=True)
class KernelSHAP(_SuperpixelExplainer):
    """KernelSHAP over superpixels: coalition sizes s ~ (M-1)/(s(M-s)), uniform subsets,
    weighted least squares with sum_i phi_i = f(x) - f(baseline) (exact Shapley values for a
    model linear in the superpixels). Every coalition is enumerated, with exact kernel
    weights, when 2^M - 2 <= n_samples. Needs n_samples >= M (superpixels) otherwise.
    score="probability" (default) as in LIME. Signed."""

    def _check_counts(self, counts: list[int]) -> None:
        super()._check_counts(counts)
        m = max(counts)
        if 2**m - 2 > self.n_samples and self.n_samples < m:
            raise ValueError(
                f"kernelshap got n_samples={self.n_samples} but an image has {m} superpixels; it needs at least "
                f"n_samples >= {m} (the number of superpixels). Pass n_samples={max(m, 2 * m)} or more, or fewer segments"
            )

    def sample_image(self, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if 2**m - 2 <= self.n_samples:
            codes = torch.arange(1, 2**m - 1)
            z = ((codes[:, None] >> torch.arange(m)) & 1).bool()
            s = z.sum(dim=1).double()
            w = (m - 1) / (torch.exp(torch.lgamma(torch.tensor(m + 1.0)) - torch.lgamma(s + 1)
                                     - torch.lgamma(m - s + 1)) * s * (m - s))
            return z, w
        sizes = torch.arange(1, m, dtype=torch.float64)
        probs = (m - 1) / (sizes * (m - sizes))
        s = torch.multinomial(probs / probs.sum(), self.n_samples, replacement=True, generator=gen) + 1
        keys = torch.rand((self.n_samples, m), generator=gen)
        ranks = keys.argsort(dim=1).argsort(dim=1)
        return ranks < s[:, None], torch.ones(self.n_samples, dtype=torch.float64)

    def fit(self, z, y, weights, full, empty):
        delta = full - empty
        keep = weights > 0
        z, y, weights = z[keep], y[keep], weights[keep]
        last = z[:, -1:]
        design = z[:, :-1] - last
        rhs = y - empty - last[:, 0] * delta
        root = weights.sqrt()[:, None]
        solution = torch.linalg.lstsq(design * root, rhs[:, None] * root, driver="gelsd").solution[:, 0]
        return torch.cat([solution, (delta - solution.sum())[None]])
