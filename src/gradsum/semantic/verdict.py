"""The shortcut verdict: categories a model attends far more than random models do."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

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
    label: str | None = None  # the category's label with the largest excess share (heatmap % - pixel %)
    label_share: float = float("nan")
    label_pixel_share: float = float("nan")

    @property
    def ratio(self) -> float:
        return self.enrichment / self.baseline_enrichment


def shortcut_findings(profile: Profile, *, level: str = "category", margin: float = 1.5,
                      min_pixel_share: float = 1.0, expected: tuple[str, ...] = ()) -> list[Finding]:
    """Categories whose pooled enrichment is > 1 and >= `margin` x the random baseline's
    mean pooled enrichment (same method), ignoring categories covering < `min_pixel_share`
    percent of the pixels and those listed in `expected`. Latest epoch only. A category
    finding names the label that contributes most to its over-attention (e.g. nature:
    vegetation) when the profile's settings hold the label -> category map (`label_groups`)."""
    summary = profile.summary(n_boot=1)
    base = profile.baseline_summary()
    if base is None:
        raise ValueError("the shortcut verdict needs a random-model baseline: compute the profile with baseline=K")
    if "epoch" in summary.columns and summary["epoch"].notna().any():
        summary = summary[summary["epoch"] == summary["epoch"].max()]
    labels = summary[summary["level"] == "label"]
    summary = summary[summary["level"] == level]
    base = base[base["level"] == level].set_index(["method", "category"])
    findings = []
    for row in summary.itertuples(index=False):
        key = (row.method, row.category)
        if key not in base.index or row.category in expected or row.pixel_share < min_pixel_share:
            continue
        b = float(base.loc[key, "pooled_enrichment_mean"])
        if row.pooled_enrichment > 1 and b > 0 and row.pooled_enrichment >= margin * b:
            finding = Finding(str(row.model), str(row.method), str(row.category), float(row.pooled_enrichment),
                              b, float(row.pooled_share), float(row.pixel_share))
            label = _driving_label(labels, profile.settings.get("label_groups") or {}, row) \
                if level == "category" else None
            if label is not None:  # label rows name the label in their `category` column
                finding = replace(finding, label=str(label.category), label_share=float(label.pooled_share),
                                  label_pixel_share=float(label.pixel_share))
            findings.append(finding)
    return sorted(findings, key=lambda f: -f.ratio)


def _driving_label(labels: pd.DataFrame, groups: dict[str, str], row: Any) -> Any:
    """The label of `row`'s category (same model, method, epoch) that contributes most to its
    over-attention: the largest excess share (pooled share of the heatmap - share of the
    pixels; the category's excess is the sum of its labels'). None when the profile does not
    say which labels form the category."""
    members = [name for name, group in groups.items() if group == row.category]
    mine = labels[(labels["method"] == row.method) & labels["category"].isin(members)]
    if "model" in mine.columns:
        mine = mine[mine["model"] == row.model]
    excess = mine["pooled_share"] - mine["pixel_share"]
    if excess.isna().all():
        return None
    return mine.loc[excess.idxmax()]


def shortcut_verdict(profile: Profile, **kwargs: object) -> str:
    """The findings in words, one sentence per (model, method)."""
    findings = shortcut_findings(profile, **kwargs)  # type: ignore[arg-type]
    if not findings:
        return "No category is attended markedly more than by random models (no shortcut found)."
    lines = []
    for f in findings:
        above_all = ""
        if f.label is not None and f.label != f.category:
            above_all = (f", above all {f.label} ({f.label_share:.1f}% of the heatmap on {f.label_pixel_share:.1f}% "
                         "of the pixels)")
        lines.append(
            f"{f.model} ({f.method}) over-attends {f.category}{above_all}: {f.share:.1f}% of the heatmap on "
            f"{f.pixel_share:.1f}% of the pixels (enrichment {f.enrichment:.2f}x, {f.ratio:.1f}x the random "
            f"models' {f.baseline_enrichment:.2f}x)."
        )
    return " ".join(lines)
