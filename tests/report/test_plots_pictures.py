"""Pictures where people would rather look (issue 16, item 5): the enrichment heatmap of the
model and method comparison, colour bars and symmetric scales in heatmap grids, "first N of
M" instead of silently dropped images, row labels that do not overlap on wide images, the
collapsed report table, and the Adebayo sentence of the sanity section."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps

import gradsum as gs
from gradsum.metrics.sanity import SanityResult
from gradsum.report import ReportSpec, render_report
from gradsum.report.plots import enrichment_heatmap, scene_grid
from gradsum.report.sections_eval import adebayo_sentence
from gradsum.run.runner import write_table

ROADS = gs.semantic.ROADS
CATS = ["flat", "construction", "nature", "sky"]


def _summary(models=("no shortcut", "shortcut"), methods=("gradcam", "saliency", "guided-backprop")):
    rng = np.random.default_rng(0)
    rows = [{"model": m, "method": me, "epoch": np.nan, "level": "category", "category": c, "images": 5,
             "pooled_enrichment": float(rng.uniform(0.3, 3.0))}
            for m in models for me in methods for c in CATS]
    rows.append({"model": models[0], "method": methods[0], "epoch": np.nan, "level": "label", "category": "road",
                 "images": 5, "pooled_enrichment": 9.0})
    return pd.DataFrame(rows)


def _baseline(methods=("gradcam",)):
    return pd.DataFrame([{"method": me, "epoch": np.nan, "level": "category", "category": c,
                          "pooled_enrichment_mean": 1.0 + 0.1 * i, "pooled_enrichment_std": 0.1}
                         for me in methods for i, c in enumerate(CATS)])


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_enrichment_heatmap_one_panel_per_model_colour_bar_and_random_rows():
    summary = _summary()
    fig = enrichment_heatmap(summary, ROADS, baseline=_baseline())
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["no shortcut", "shortcut"]
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    labels = [t.get_text() for t in panels[0].get_yticklabels()]  # the panels share the rows
    assert labels == ["gradcam", "saliency", "guided-backprop", "random (gradcam)"]
    for ax in panels:
        assert len(ax.images[0].get_array()) == 4  # 3 methods + 1 random row
        assert [t.get_text() for t in ax.get_xticklabels()] == CATS  # the table's order, present categories only
        shown = {t.get_text() for t in ax.texts}
        assert "1.30" in shown  # the random row's value for sky (1.0 + 0.1 * 3)
    value = summary[(summary["model"] == "shortcut") & (summary["method"] == "saliency")
                    & (summary["category"] == "nature")]["pooled_enrichment"].iloc[0]
    assert f"{value:.2f}" in {t.get_text() for t in panels[1].texts}
    # diverging and centred on 1: enrichment 1 is the middle of the colour scale (log2 = 0)
    image = panels[0].images[0]
    assert image.norm.vmin == -image.norm.vmax and image.norm(0.0) == pytest.approx(0.5)


def test_enrichment_heatmap_names_a_missing_column():
    with pytest.raises(ValueError, match="no column 'pooled_share'"):
        enrichment_heatmap(_summary().drop(columns=["pooled_enrichment"]), ROADS, column="pooled_share")


def _signed_map(h=20, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, w, generator=g)


def test_signed_map_symmetric_scale_centred_on_zero():
    m = _signed_map() * torch.linspace(0.2, 3.0, 30)  # positive and negative values of different extent
    scale = gs.viz.signed_scale(m)
    assert 0 < scale <= float(m.abs().max())
    rgb = gs.viz.colorize(m)  # auto: signed -> diverging, vmin = -scale, vmax = +scale
    expected = colormaps[gs.viz.DIVERGING](((m / scale).clamp(-1, 1).numpy() + 1) / 2)[..., :3]
    np.testing.assert_allclose(rgb, expected, atol=1e-6)
    zero = gs.viz.colorize(torch.tensor([[-2.0, 0.0, 2.0]]))
    np.testing.assert_allclose(zero[0, 1], colormaps[gs.viz.DIVERGING](0.5)[:3], atol=1e-6)  # 0 is the centre
    # -v and +v sit at mirrored positions of the colour map
    lo, hi = gs.viz.colorize(torch.tensor([[-1.0, 1.0, 0.3]]))[0, :2]
    np.testing.assert_allclose(lo, colormaps[gs.viz.DIVERGING](0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(hi, colormaps[gs.viz.DIVERGING](1.0)[:3], atol=1e-6)


def test_one_hot_pixel_does_not_wash_the_signed_map_out():
    m = _signed_map(40, 40)
    m[5, 5] = 1e4
    robust = gs.viz.colorize(m)
    exact = gs.viz.colorize(m, percentile=100)
    rest = np.ones((40, 40), bool)
    rest[5, 5] = False
    centre = np.asarray(colormaps[gs.viz.DIVERGING](0.5)[:3])
    assert np.abs(robust[rest] - centre).max(axis=-1).mean() > 0.2  # the rest shows
    assert np.abs(exact[rest] - centre).max(axis=-1).mean() < 0.01  # what max |map| would have shown
    with pytest.raises(ValueError, match="percentile"):
        gs.viz.colorize(m, percentile=0)


def test_grid_colour_bars_per_method_and_first_n_of_m():
    images = torch.rand(10, 3, 16, 24)
    maps = {"gradcam": torch.rand(10, 16, 24), "integrated-gradients": torch.randn(10, 16, 24)}
    fig = gs.viz.grid(images, maps, titles=[f"img {i}" for i in range(10)], max_images=8)
    assert "first 8 of 10 images" in fig._suptitle.get_text()
    shown = [ax for ax in fig.axes if ax.images and ax.get_title().startswith("img")]
    assert len(shown) == 8
    bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert len(bars) == 2  # one per method row, none for the image row
    ticks = [[t.get_text() for t in ax.get_yticklabels()] for ax in bars]
    assert ticks == [["0", "1"], ["−m", "0", "+m"]]  # min-max scaled / signed, symmetric
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["image", "gradcam\n(min-max 0..1)", "integrated-gradients\n(signed ±m)"]
    everything = gs.viz.grid(images[:3], {k: v[:3] for k, v in maps.items()})
    assert "first" not in everything._suptitle.get_text()


def test_grid_row_labels_do_not_overlap_on_wide_images():
    images = torch.rand(4, 3, 66, 200)
    methods = ["gradcam", "gradcam++", "layercam", "hirescam", "eigencam", "saliency", "guided-backprop",
               "integrated-gradients"]
    fig = gs.viz.grid(images, {m: torch.randn(4, 66, 200) for m in methods}, titles=["pred pothole\n(true no pothole)"] * 4)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [ax.yaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_ylabel()]
    assert len(boxes) == 1 + len(methods)
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert not a.overlaps(b), (a, b)
    width, height = fig.get_size_inches() * fig.dpi
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height for b in boxes)  # inside the figure


def test_scene_grid_says_first_n_of_m():
    images = torch.rand(6, 3, 12, 16)
    fig = scene_grid(images, None, None, max_images=4)
    assert "first 4 of 6 images" in fig._suptitle.get_text()
    assert sum(bool(ax.images) for ax in fig.axes) == 4
    assert scene_grid(images, None, None)._suptitle is None


def test_collapsed_table_renders_details_after_the_figures(tmp_path):
    frame = pd.DataFrame({"category": [f"c{i}" for i in range(7)], "value": np.arange(7.0)})
    write_table(tmp_path / "tables" / "t.parquet", frame)
    from gradsum.run.store import save_figure

    save_figure(tmp_path / "figures" / "f.png", enrichment_heatmap(_summary(), ROADS))
    spec = ReportSpec("t").section("s", "S").figure("figures/f.png", "heatmap")
    spec.table("tables/t.parquet", "All rows", collapsed=True).table("tables/t.parquet", "Open table")
    spec.save(tmp_path)
    html = render_report(tmp_path).read_text()
    assert html.count("<details") == 1 and "<summary>All rows (7 rows)</summary>" in html
    details = html.index("<details")
    assert html.index("<h3>Open table</h3>") < html.index("<figure") < details  # collapsed after the figure
    assert html.count("<td>c6</td>") == 2


def _sanity(similarities: list[float], layers=("fc2", "fc1", "conv3", "conv2", "conv1"), method="guided-backprop"):
    frame = pd.DataFrame([{"method": method, "mode": "cascading", "step": i + 1, "layer": layer,
                           "measure": "spearman_abs", "mean": v, "std": 0.0, "n": 4}
                          for i, (layer, v) in enumerate(zip(layers, similarities, strict=True))])
    return SanityResult(frame, {}, {"mode": "cascading"}, threshold=0.3)


def test_adebayo_sentence_when_guided_backprop_passes_and_fails():
    passes = adebayo_sentence(_sanity([0.9, 0.85, 0.8, 0.7, 0.1]))
    assert "does NOT reproduce the finding of Adebayo et al. 2018" in passes
    assert "fc2 0.90, fc1 0.85, conv3 0.80, conv2 0.70, conv1 0.10" in passes
    assert "largest drop comes when conv1 is randomised (0.70 -> 0.10)" in passes
    assert "shallow network (5 layers randomised)" in passes and "only when conv1, one of the two layers next to the input" in passes
    assert "(0.90 after fc2 ... 0.70 after conv2)" in passes
    early = adebayo_sentence(_sanity([0.9, 0.2, 0.2, 0.15, 0.1]))
    assert "does NOT reproduce" in early and "already when fc1 is randomised (step 2 of 5" in early
    fails = adebayo_sentence(_sanity([0.9, 0.85, 0.8, 0.7, 0.6]))
    assert fails.startswith("This reproduces the finding of Adebayo et al. 2018") and "(0.60, threshold 0.30)" in fails
    assert adebayo_sentence(_sanity([0.9, 0.8, 0.7, 0.2, 0.1], method="saliency")) == ""  # not checked: nothing
