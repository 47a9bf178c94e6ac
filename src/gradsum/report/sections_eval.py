"""Report sections for evaluation: the methods x metrics benchmark table with deletion /
insertion curves, and the sanity checks (model randomisation) with their verdicts."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradsum.report.html import ReportSpec
from gradsum.run.runner import write_table
from gradsum.run.store import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["evaluation_section", "sanity_section", "curves_figure", "adebayo_sentence"]


def curves_figure(curves: dict[str, dict[str, Any]]) -> Figure:
    """Mean deletion and insertion curves per method (score against fraction of pixels)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, mode in zip(axes, ("deletion", "insertion"), strict=True):
        for method, modes in curves.items():
            if mode in modes:
                fractions, curve = modes[mode]
                ax.plot(fractions.cpu().numpy(), curve.cpu().numpy(), label=method)
        ax.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'inserted'}, most relevant first")
        ax.set_ylabel("class probability")
        ax.set_title(f"{mode} (lower AUC is better)" if mode == "deletion" else f"{mode} (higher AUC is better)",
                     fontsize=10)
    axes[1].legend(fontsize=7)
    return fig


def sizes_sentence(sizes: dict[str, int], resized: dict[str, Any] | None = None) -> str:
    """How the images met the model: 'all 200 images are 66x200', or 'images of 3 sizes (375x500:
    12, ...), each explained at its own size (batched by size; nothing resized)', or the size
    and policy they were brought to."""
    n = sum(sizes.values())
    if resized:
        return (f"All {n} images were brought to {resized['size']} ({resized.get('resize', 'letterbox')}; "
                "segmentations nearest, boxes scaled) before explaining.")
    if len(sizes) <= 1:
        return f"All {n} images are {next(iter(sizes), '?')} (not resized)."
    shown = ", ".join(f"{size}: {count}" for size, count in list(sizes.items())[:6])
    more = f" and {len(sizes) - 6} more sizes" if len(sizes) > 6 else ""
    return (f"{n} images of {len(sizes)} sizes ({shown}{more}), each explained at its own size: images of one size "
            "are batched together and nothing is resized (pass --size HxW to bring them to one size).")


def evaluation_section(out: Path, spec: ReportSpec, result: Any, *, title: str = "Evaluation",
                       intro: str = "", prefix: str = "", resized: dict[str, Any] | None = None) -> None:
    """Add the benchmark table (Parquet in tables/) and the curves to `spec`; `resized`: the
    --size / --resize the data was read with (None: the images' own sizes)."""
    table = result.table(percent=True).reset_index()
    write_table(out / f"tables/{prefix}benchmark.parquet", table)
    write_table(out / f"tables/{prefix}benchmark_per_image.parquet", result.per_image)
    settings = result.settings
    spec.section(f"{prefix}evaluation", title, [intro or (
        "Localisation (EBPG: share of the heatmap energy inside the ground-truth boxes; Bbox: fraction of the "
        "top-n pixels inside the boxes, n = box area), faithfulness (Drop/Increase: confidence when only the top "
        "15% pixels are kept; deletion/insertion AUC of the class probability), cost per image. Mean over images "
        "and ± the 95% confidence half-width."),
        f"{result.per_image['sample'].nunique()} images; layer {settings.get('layer')}; seed {settings.get('seed')}; "
        f"method options {settings.get('method_options') or 'defaults'}; metric options "
        f"{settings.get('metric_options') or 'defaults'}.",
        *([sizes_sentence(settings["image_sizes"], resized)] if settings.get("image_sizes") else []),
    ])
    spec.table(f"tables/{prefix}benchmark.parquet", "Methods x metrics", digits=3)
    if result.curves:
        save_figure(out / f"figures/{prefix}deletion_insertion.png", curves_figure(result.curves))
        spec.figure(f"figures/{prefix}deletion_insertion.png", "Mean deletion and insertion curves per method")


def sanity_section(out: Path, spec: ReportSpec, result: Any, *, prefix: str = "") -> None:
    """Add the model-randomisation curves, the per-layer table and the verdict per method."""
    verdict = result.verdict()
    write_table(out / f"tables/{prefix}sanity.parquet", result.to_frame())
    write_table(out / f"tables/{prefix}sanity_verdict.parquet", verdict)
    fig = result.plot()
    save_figure(out / f"figures/{prefix}sanity.png", fig)
    passes = [r.method for r in verdict.itertuples() if r.passes]
    fails = [r.method for r in verdict.itertuples() if not r.passes]
    spec.section(f"{prefix}sanity", "Sanity checks (model parameter randomisation)", [
        "Adebayo et al. 2018: the layers are re-initialised one after the other from the output towards the "
        "input; a heatmap that still looks the same once the weights are random does not explain what the model "
        "learned. Similarity between the original and the randomised maps (Spearman rank correlation, SSIM, HOG).",
    ]).figure(f"figures/{prefix}sanity.png", "Similarity to the original heatmaps as more layers are randomised")
    spec.table(f"tables/{prefix}sanity_verdict.parquet", "Verdict per method", digits=3)
    if adebayo := adebayo_sentence(result):
        spec.text(adebayo)
    spec.verdict(
        (f"Pass (the maps change when the model is randomised): {', '.join(passes) or 'none'}. " if passes else "")
        + (f"Fail (the maps survive randomisation, so they do not reflect the learned weights): {', '.join(fails)}."
           if fails else "All methods pass."),
        ok=not fails,
    )


_MEASURE_NAMES = {"spearman_abs": "Spearman rank correlation of |map|", "spearman": "Spearman rank correlation",
                  "ssim": "SSIM", "hog": "HOG similarity"}


def adebayo_sentence(result: Any, method: str = "guided-backprop") -> str:
    """Whether a model-randomisation result reproduces Adebayo et al. 2018's finding that
    guided backprop is insensitive to model randomisation, in words, from `result.verdict()`
    and the per-layer similarities of `method` (cascading: step 1 = the output layer).
    '' when `method` was not checked."""
    verdict = result.verdict()
    row = verdict[verdict["method"] == method]
    if row.empty:
        return ""
    row = row.iloc[0]
    measure, threshold, final = str(row["measure"]), float(row["threshold"]), float(row["similarity"])
    curve = result.curves(measure)
    if method not in curve.columns:
        return ""
    steps = [(str(layer), float(v)) for (_, layer), v in curve[method].items()]
    what = _MEASURE_NAMES.get(measure, measure)
    path = ", ".join(f"{layer} {v:.2f}" for layer, v in steps)
    independent = result.settings.get("mode") == "independent"
    per_layer = (f"Similarity ({what}) with one layer randomised at a time: {path}." if independent else
                 f"Similarity ({what}) to the original maps as the layers are randomised from the output towards "
                 f"the input (cumulative): {path}.")
    if not bool(row["passes"]):
        return (f"This reproduces the finding of Adebayo et al. 2018: {method}'s maps stay similar to the original "
                f"ones ({final:.2f}, threshold {threshold:.2f}) even once the weights are random, so they show "
                f"input structure (edges) more than what the model learned. {per_layer}")
    text = (f"This does NOT reproduce the finding of Adebayo et al. 2018 that guided backprop is insensitive to "
            f"model randomisation: here {method}'s maps fall to {final:.2f} (below the threshold {threshold:.2f}) "
            f"once the model is randomised. {per_layer}")
    if independent or len(steps) < 2:
        return text
    below = next(i for i, (_, v) in enumerate(steps) if v < threshold)
    drops = [steps[i - 1][1] - steps[i][1] for i in range(1, len(steps))]
    k = int(np.argmax(drops)) + 1 if drops else 0
    biggest = (f" The largest drop comes when {steps[k][0]} is randomised ({steps[k - 1][1]:.2f} -> "
               f"{steps[k][1]:.2f})." if k else "")
    n = len(steps)
    if below >= n - 2:
        reason = (f"The maps stay above the threshold while the layers above it are randomised ({steps[0][1]:.2f} "
                  f"after {steps[0][0]} ... {steps[below - 1][1]:.2f} after {steps[below - 1][0]}), as in the paper, "
                  f"and fall below it only when {steps[below][0]}, one of the two layers next to the input, is "
                  f"randomised. The likely reason: this is a shallow network ({n} layers randomised); the "
                  "input-level edge structure that guided backprop recovers passes through only its first layers, "
                  "and re-initialising them (their weights, and a batch norm's running statistics) changes which "
                  "pixels the ReLUs let through, whereas the paper's deep networks keep many layers between the "
                  "randomised top and the input.") if below else (
                  f"The maps change as soon as {steps[0][0]} is randomised.")
    else:
        reason = (f"The maps change already when {steps[below][0]} is randomised (step {below + 1} of {n}, counted "
                  "from the output), before the convolutions next to the input are touched. The likely reason: in "
                  f"this shallow network ({n} layers randomised) the ReLU pattern that guided backprop passes "
                  "through depends on the few layers above the input, so random weights there change which pixels "
                  "it keeps; the paper's deep networks have many more layers between the output and the input.")
    return text + biggest + " " + reason
