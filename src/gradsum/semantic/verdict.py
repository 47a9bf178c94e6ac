"""The shortcut verdict: categories a model attends far more than random models do."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradsum.semantic.profile import Profile

__all__ = ["Finding", "shortcut_findings", "shortcut_verdict"]


@dataclass(frozen=True)
class Finding:
    """One over-attended category of one (model, method, epoch)."""

    model: str
    method: str
    category: str
    enrichment: float
    baseline_enrichment: float
    share: float
    pixel_share: float

    @property
    def ratio(self) -> float:
        return self.enrichment / self.baseline_enrichment


def shortcut_findings(profile: Profile, *, level: str = "category", margin: float = 1.5,
                      min_pixel_share: float = 1.0, expected: tuple[str, ...] = ()) -> list[Finding]:
    """Categories whose pooled enrichment is > 1 and >= `margin` x the random baseline's
    mean pooled enrichment (same method), ignoring categories covering < `min_pixel_share`
    percent of the pixels and those listed in `expected`. Latest epoch only."""
    summary = profile.summary(n_boot=1)
    base = profile.baseline_summary()
    if base is None:
        raise ValueError("the shortcut verdict needs a random-model baseline: compute the profile with baseline=K")
    summary = summary[summary["level"] == level]
    if "epoch" in summary.columns and summary["epoch"].notna().any():
        summary = summary[summary["epoch"] == summary["epoch"].max()]
    base = base[base["level"] == level].set_index(["method", "category"])
    findings = []
    for row in summary.itertuples(index=False):
        key = (row.method, row.category)
        if key not in base.index or row.category in expected or row.pixel_share < min_pixel_share:
            continue
        b = float(base.loc[key, "pooled_enrichment_mean"])
        if row.pooled_enrichment > 1 and b > 0 and row.pooled_enrichment >= margin * b:
            findings.append(Finding(str(row.model), str(row.method), str(row.category), float(row.pooled_enrichment),
                                    b, float(row.pooled_share), float(row.pixel_share)))
    return sorted(findings, key=lambda f: -f.ratio)


def shortcut_verdict(profile: Profile, **kwargs: object) -> str:
    """The findings in words, one sentence per (model, method)."""
    findings = shortcut_findings(profile, **kwargs)  # type: ignore[arg-type]
    if not findings:
        return "No category is attended markedly more than by random models (no shortcut found)."
    lines = []
    for f in findings:
        lines.append(
            f"{f.model} ({f.method}) over-attends {f.category}: {f.share:.1f}% of the heatmap on "
            f"{f.pixel_share:.1f}% of the pixels (enrichment {f.enrichment:.2f}x, {f.ratio:.1f}x the random "
            f"models' {f.baseline_enrichment:.2f}x)."
        )
    return " ".join(lines)
