"""The GradSUM section of a report: profile bars per model x method with the random-model
baseline, the summary table, the shortcut verdict, and how the images met the model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_profile_report", "image_sizes"]


def write_profile_report(out: Path, profile: Any, table: Any, *, title: str, spec: Any = None,
                         section_prefix: str = "", resized: dict[str, Any] | None = None) -> Any:
    """Figures (profile bars per model x method, with the baseline) and report sections for
    a Profile; returns the ReportSpec (new or the one given)."""
    from gradsum.report import ReportSpec
    from gradsum.report.plots import profile_bars
    from gradsum.report.sections_eval import sizes_sentence
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure
    from gradsum.semantic import shortcut_findings, shortcut_verdict

    spec = spec or ReportSpec(title, "GradSUM semantic profile")
    summary = profile.summary()
    base = profile.baseline_summary()
    write_table(out / f"{section_prefix}profile_summary.parquet", summary)
    spec.section(f"{section_prefix}gradsum", "GradSUM profile", [
        "Share of each heatmap (min-max normalised ReLU map) on each semantic category, pooled over the images, "
        "with 95% bootstrap intervals of the per-image mean; black diamonds: the same method on randomly "
        "initialised copies of the architecture (mean ± std). Enrichment = share of the heatmap / share of the "
        "pixels: above 1 the model attends a category more often than it occurs.",
        *([sizes_sentence(image_sizes(profile.images), resized)] if {"height", "width"} <= set(profile.images) else []),
    ])
    latest = summary
    if "epoch" in summary.columns and summary["epoch"].notna().any():
        latest = summary[summary["epoch"] == summary["epoch"].max()]
    for (model, method), sub in latest.groupby(["model", "method"], sort=False):
        base_m = None if base is None else base[base["method"] == method]
        for column in ("pooled_share", "pooled_enrichment"):
            name = f"figures/{section_prefix}profile_{_slug(model)}_{_slug(method)}_{column}.png"
            save_figure(out / name, profile_bars(sub, table, baseline=base_m, column=column,
                                                 title=f"{model} — {method}", min_pixel_share=0.5))
            spec.figure(name, f"{model}, {method}: {column.replace('_', ' ')} per category")
    spec.table(f"{section_prefix}profile_summary.parquet", "Summary per category (category level)",
               columns=["model", "method", "epoch", "category", "images", "pixel_share", "pooled_share",
                        "pooled_enrichment", "value_mean", "value_mean_lo", "value_mean_hi", "pooled"],
               max_rows=200, query="level == 'category' and images > 0", collapsed=True)
    if base is not None:
        findings = shortcut_findings(profile)
        spec.verdict(shortcut_verdict(profile), ok=not findings)
    return spec


def image_sizes(images: Any) -> dict[str, int]:
    """{"HxW": number of images} of a GradSUM images table (its height / width columns)."""
    first = images.drop_duplicates("image_id")
    counts = first.groupby(["height", "width"], sort=False).size().sort_values(ascending=False)
    return {f"{h}x{w}": int(n) for (h, w), n in counts.items()}


def _slug(text: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-+" else "_" for ch in str(text))
