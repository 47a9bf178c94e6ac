"""Report sections "What the layers see" (filters, activation maximisation, maximally
activating dataset patches) and "How models break" (fooling images, FGSM/PGD accuracy,
universal perturbations and their transfer between models), as called by `gradsum demo`.

Each function renders a result computed by the library (`gradsum.features.layer_survey`,
`gradsum.adversarial.attack_survey`): it writes figures (PNG) under ``<out>/figures/`` and
tables (Parquet) under ``<out>/tables/``, and adds one section to a `ReportSpec`. Nothing
here runs a model.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradsum.adversarial.survey import AttackSurvey
    from gradsum.features.patches import TopPatches
    from gradsum.features.survey import LayerSurvey
    from gradsum.report.html import ReportSpec

__all__ = ["features_section", "adversarial_section"]


# ------------------------------------------------------------------------------------ figures

def _grid_figure(rows: list[tuple[str, torch.Tensor, list[str]]], title: str, tile_width: float = 1.25) -> Figure:
    """Rows of image tiles: each row (label, tiles (n,C,h,w) in [0,1], per-tile titles),
    the row label written on the left; tiles keep their aspect ratio."""
    from matplotlib.figure import Figure

    ncols = max(t.shape[0] for _, t, _ in rows)
    h, w = rows[0][1].shape[-2:]
    tile_h = tile_width * h / w
    fig = Figure(figsize=(ncols * tile_width + 1.0, len(rows) * (tile_h + 0.35) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, tiles, titles) in enumerate(rows):
        tiles = tiles.detach().float().cpu().clamp(0, 1)
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= tiles.shape[0]:
                ax.set_axis_off()
                continue
            img = tiles[c]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _mosaic(tiles: torch.Tensor, ncols: int, scale: int = 1, pad: int = 1) -> torch.Tensor:
    """Tiles (N,C,h,w) in [0,1] as one (H,W,3) image, `ncols` per row, each tile enlarged
    `scale` times (nearest) and separated by `pad` white pixels."""
    tiles = tiles.detach().float().cpu().clamp(0, 1)
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    tiles = tiles[:, :3].repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, _, h, w = tiles.shape
    nrows = -(-n // ncols)
    canvas = torch.ones(3, nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        canvas[:, y0:y0 + h, x0:x0 + w] = tiles[i]
    return canvas.permute(1, 2, 0)


def _mosaic_figure(image: torch.Tensor, title: str, *, rows: list[str], cols: list[str], tile: tuple[int, int],
                   inches: float, ylabel: str, xlabel: str, pad: int = 1) -> Figure:
    """One axes showing a mosaic, with a tick label per row and column of tiles."""
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    fig = Figure(figsize=(inches + 1.4, inches * height / width + 1.0), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image.numpy(), interpolation="nearest")
    th, tw = tile
    ax.set_yticks([pad + r * (th + pad) + th / 2 for r in range(len(rows))], rows, fontsize=7)
    ax.set_xticks([pad + c * (tw + pad) + tw / 2 for c in range(len(cols))], cols, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def _accuracy_figure(frame: Any) -> Figure:
    """Accuracy (%) against eps (in 1/255) per model (colour) and attack (line style)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    styles = {"FGSM": ("--", "s"), "PGD": ("-", "o")}
    for i, model in enumerate(dict.fromkeys(frame["model"])):
        for attack, (style, marker) in styles.items():
            sub = frame[(frame["model"] == model) & (frame["attack"].isin(["clean", attack]))].sort_values("eps_255")
            ax.plot(sub["eps_255"], 100 * sub["accuracy"], linestyle=style, marker=marker, color=colors[i % len(colors)],
                    markersize=7 if attack == "FGSM" else 4, fillstyle="none" if attack == "FGSM" else "full",
                    label=f"{model}, {attack}")
    ax.set_xlabel("attack budget eps (L-inf, in 1/255 of the pixel range)")
    ax.set_ylabel("accuracy on held-out scenes (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(sorted(set(frame["eps_255"].tolist())))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Accuracy under attack (eps 0 = clean images)", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------ features

def _check(survey: Any, kind: str, maker: str, section: str) -> None:
    if type(survey).__name__ != kind:
        raise TypeError(f"{section} renders a {kind}; got {type(survey).__name__}. Compute one with {maker} "
                        "and pass it as `survey`")


def features_section(out: str | Path, spec: ReportSpec, survey: LayerSurvey, *, name: str = "pothole classifier") -> None:
    """Add the section "What the layers see" (id "features") for a `LayerSurvey` of the
    model called `name`.

    Figures: the first conv layer's filters; activation maximisation (keras preset:
    normalised gradient ascent on pixels, 30 steps, one batch per layer) of the channels
    that respond most on the data, for each conv stage's activation; the dataset patches
    (receptive-field crops) that activate the last stage's channels most, and their
    guided-backprop images when the survey has them. Table
    ``tables/features_channels.parquet``: per layer and channel, the objective (channel
    mean) on the data (mean and best image) and on the optimised image.
    """
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    _check(survey, "LayerSurvey", "gradsum.features.layer_survey(model, dataset, budget=..., seed=...)",
           "features_section")
    out = Path(out)
    bud, last = survey.budget, survey.last

    spec.section("features", "What the layers see", [
        f"What the {name}'s layers respond to, shown three ways: the first layer's weights as images; images "
        "optimised by gradient ascent to excite one channel each (activation maximisation, Erhan et al. 2009); "
        f"and the patches of {survey.n_images} held-out scenes that excite a channel most (Zeiler & Fergus 2014). "
        "Early layers respond to colours and edges, later ones to larger structures."
    ])

    # 1. first-layer filters
    grid = survey.filters
    fh, fw = grid.tiles.shape[-2:]
    ncols = min(8, grid.tiles.shape[0])
    scale = max(1, round(24 / max(fh, fw)))
    nrows = -(-grid.tiles.shape[0] // ncols)
    fig = _mosaic_figure(_mosaic(grid.tiles, ncols, scale), f"{name}: {grid.title}", tile=(fh * scale, fw * scale),
                         rows=[str(r * ncols) for r in range(nrows)], cols=[f"+{c}" for c in range(ncols)],
                         inches=min(7.0, 0.6 * ncols), ylabel="filter number (row start)", xlabel="+ column")
    save_figure(out / "figures/features_filters.png", fig)
    kind = "an RGB colour image" if grid.rgb else "grayscale tiles, one per input channel"
    spec.figure("figures/features_filters.png",
                f"First-layer filters: each tile is one {fh}x{fw}-pixel filter of {grid.layer} "
                f"(weights {'x'.join(str(v) for v in grid.shape)}), drawn as {kind} and scaled to its own min-max; "
                "it shows the colour and edge pattern that excites the filter most.")

    # 2. activation maximisation of the most responsive channels of each stage
    rows = []
    for lc in survey.layers:
        chosen = lc.chosen
        per_row = -(-len(chosen) // 2) if len(chosen) > 4 else len(chosen)
        shown, labels = lc.maxima.display(), [f"channel {c}" for c in chosen]
        for start in range(0, len(chosen), per_row):
            rows.append((f"{lc.layer}\n({lc.n_channels} channels)" if start == 0 else "", shown[start:start + per_row],
                         labels[start:start + per_row]))
    write_table(out / "tables/features_channels.parquet", survey.table())
    side = survey.side
    fig = _grid_figure(rows, f"Activation maximisation, {name}:\none optimised {side}x{side} image per channel "
                             f"({survey.preset} preset, {survey.steps} steps, seed {survey.seed})", tile_width=1.4)
    save_figure(out / "figures/features_actmax.png", fig)
    spec.figure("figures/features_actmax.png",
                "Activation maximisation: one block of rows per layer (the activation after a conv stage, from first "
                "to last), each tile an image optimised from noise so that the named channel's mean activation is as "
                f"large as possible. The channels (up to {bud.channels} per layer) are those most active on the "
                "held-out scenes. Images are standardised for display; the first layer shows colours and edges, "
                "the last larger shapes.")
    spec.table("tables/features_channels.parquet",
               "Channel activation (mean of the channel's map): on the held-out scenes (average and best scene) "
               "and on its optimised image (keras preset: pixels are not clipped to [0,1] during the ascent, which "
               "is why the ratio optimised / best scene can be large).",
               columns=["layer", "channel", "data_mean", "data_best", "optimised", "ratio_to_best_scene"],
               max_rows=40)

    # 3. maximally activating dataset patches of the last stage (and, when computed, their attributions)
    tp = survey.patches
    rf = tp.field_
    save_figure(out / "figures/features_patches.png", _patch_figure(
        tp, tp.crops, f"{name}, {last}: the {tp.values.shape[1]} scene patches that activate each channel most\n"
                      f"(receptive field {rf.size[0]}x{rf.size[1]} px, {tp.images_seen} held-out scenes)"))
    spec.figure("figures/features_patches.png",
                f"Maximally activating dataset patches of {last}: each row is one channel (the same channels as the "
                "last row of the activation maximisation), each tile the input region (receptive field "
                f"{rf.size[0]}x{rf.size[1]} pixels) of a held-out scene where that channel responds most, strongest "
                "first; at most one patch per scene. Black parts lie outside the image.")
    if survey.patch_attributions is not None:
        method = (survey.patch_method or "attribution").replace("-", " ")
        from gradsum.viz import signed_per_tile

        save_figure(out / "figures/features_patch_attributions.png", _patch_figure(
            tp, signed_per_tile(survey.patch_attributions),
            f"{name}, {last}: {method} of each channel's unit on its top patches"))
        spec.figure("figures/features_patch_attributions.png",
                    f"{method[:1].upper()}{method[1:]} of the patches above (same rows and columns): for each patch, "
                    f"the attribution of the {last} unit it excites (that channel at that position) to the patch's "
                    "pixels, each tile scaled to its own largest magnitude (grey = 0, brighter or darker = more "
                    "influence); it shows which pixels of the patch drive the channel (Springenberg et al. 2015 "
                    "for guided backprop).")


def _patch_figure(tp: TopPatches, tiles: torch.Tensor, title: str) -> Figure:
    """Tiles (C,k,3,r,r) laid out like `tp` (TopPatches): a row per channel, its k patches
    strongest first."""
    rf, kk = tp.field_, tp.values.shape[1]
    scale = max(1, round(40 / max(rf.size)))
    return _mosaic_figure(
        _mosaic(tiles.flatten(0, 1), kk, scale, pad=2), title,
        rows=[f"channel {c}\n(max {float(v):.2g})" for c, v in zip(tp.channels, tp.values[:, 0].tolist(), strict=True)],
        cols=[str(j + 1) for j in range(kk)], tile=(rf.size[0] * scale, rf.size[1] * scale), pad=2,
        inches=min(7.0, 0.9 * kk), ylabel="channel (its highest activation)", xlabel="rank (1 = strongest)")


# ------------------------------------------------------------------------------------ adversarial

def adversarial_section(out: str | Path, spec: ReportSpec, survey: AttackSurvey) -> None:
    """Add the section "How models break" (id "adversarial") for an `AttackSurvey`.

    Figures: fooling images, accuracy under FGSM/PGD against eps, universal perturbations
    and their transfer matrix. Tables (Parquet, tables/): adv_fooling, adv_accuracy (tidy)
    and adv_accuracy_wide, adv_universal, adv_transfer.
    """
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    _check(survey, "AttackSurvey", "gradsum.adversarial.attack_survey(models, dataset, budget=..., seed=...)",
           "adversarial_section")
    out = Path(out)
    bud, names, start = survey.budget, survey.class_names, survey.start

    spec.section("adversarial", "How models break", [
        "Adversarial probing in pixel space ([0,1]; eps 8/255 means 8 grey levels of 255): how small a change "
        f"to a held-out scene flips each classifier ({', '.join(survey.models)}), how accuracy falls under FGSM "
        "(one signed-gradient step, Goodfellow et al. 2015) and PGD (iterated, projected steps, Madry et al. 2018), "
        "and whether one image-agnostic (universal) perturbation fools a model on most scenes and transfers to "
        "the other model (Moosavi-Dezfooli et al. 2017)."
    ])

    # 1. fooling images
    cols: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]] = []
    for m, r in survey.models.items():
        fool, p0, source, target = r.fool, r.p_start, r.source, r.target
        diff = fool.images - start
        linf = float(diff.abs().max())
        amp = 0.5 / max(linf, 1e-12)
        cols.append((start, fool.images, (amp * diff + 0.5).clamp(0, 1), [
            f"{m}: p({names[source]}) = {float(p0[source]):.2f}",
            f"{m}: p({names[target]}) = {float(fool.probability[0]):.3f}\nafter {int(fool.steps[0])} steps",
            f"{m}: x{amp:.0f} (max {255 * linf:.0f}/255)"]))
    rows = [(label, torch.cat([c[i] for c in cols]), [c[3][i] for c in cols])
            for i, label in enumerate(["held-out scene", "fooling image", "change (amplified)"])]
    write_table(out / "tables/adv_fooling.parquet", survey.fooling_table())
    save_figure(out / "figures/adv_fooling.png", _grid_figure(
        rows, f"Fooling images: scene {survey.scene} changed until\nthe model says another class with p >= 0.99",
        tile_width=2.6))
    spec.figure("figures/adv_fooling.png",
                "Fooling images: per model (column), a held-out scene that every model classifies correctly, the same "
                "scene after signed-gradient steps of 1/255 towards the other class (stopping once its probability "
                f"reaches 0.99, at most {bud.fool_steps} steps), and the change amplified so that it is visible "
                "(grey = unchanged).")
    spec.table("tables/adv_fooling.parquet", "Fooling image per model: the new class's probability before (p_start) "
               "and after (p_final), the steps taken and the largest pixel change in grey levels (linf_255).",
               columns=["model", "scene", "from_class", "to_class", "p_start", "p_final", "steps", "reached_0.99",
                        "linf_255"], digits=3)

    # 2. accuracy under FGSM / PGD
    n_att = survey.attacked
    acc = survey.accuracy_table()
    write_table(out / "tables/adv_accuracy.parquet", acc)
    write_table(out / "tables/adv_accuracy_wide.parquet", survey.accuracy_wide())
    save_figure(out / "figures/adv_accuracy.png", _accuracy_figure(acc))
    spec.figure("figures/adv_accuracy.png",
                f"Accuracy (%) on {n_att} held-out scenes under FGSM (dashed) and PGD (solid, {bud.pgd_steps} "
                "steps, random start) for L-inf budgets eps of 1, 2, 4 and 8 grey levels; eps 0 is the clean accuracy.")
    spec.table("tables/adv_accuracy_wide.parquet",
               f"Accuracy (%) under attack on {n_att} held-out scenes (PGD: {bud.pgd_steps} steps of "
               "2.5 eps / steps from a random start).", digits=1)

    # 3. universal perturbations and their transfer
    example, cols = survey.example, []
    for m, r in survey.models.items():
        uni, pc, pa = r.universal, r.example_clean, r.example_perturbed
        assert pc is not None and pa is not None, "attack_survey fills the example probabilities"
        v = uni.v
        k0, k1 = int(pc.argmax()), int(pa.argmax())
        cols.append(((v / (2 * max(uni.xi, 1e-12)) + 0.5).clamp(0, 1), example, (example + v).clamp(0, 1), [
            f"{m}: v (max {255 * uni.norm:.0f}/255)", f"{m} says {names[k0]} ({float(pc[k0]):.2f})",
            f"{m} says {names[k1]} ({float(pa[k1]):.2f})"]))
    rows = [(label, torch.cat([c[i] for c in cols]), [c[3][i] for c in cols])
            for i, label in enumerate(["perturbation v\n(scaled, grey = 0)", "held-out scene", "scene + v"])]
    universal = survey.universal_table()
    write_table(out / "tables/adv_universal.parquet", universal)
    save_figure(out / "figures/adv_universal.png", _grid_figure(
        rows, f"Universal perturbations (L-inf, xi = {255 * bud.xi:.0f}/255), one per model", tile_width=2.6))
    tm = survey.transfer
    write_table(out / "tables/adv_transfer.parquet", survey.transfer_table())
    fig = tm.figure()
    fig.axes[0].set_title(f"Fooling rate of universal perturbations on {tm.n_images} held-out scenes", fontsize=9)
    save_figure(out / "figures/adv_transfer.png", fig)
    status = "; ".join(f"{r['model']}: {100 * r['fooling_rate_fit']:.0f}% "
                       f"({'reached' if r['reached'] else 'not reached'} after {r['passes']} "
                       f"pass{'es' if r['passes'] != 1 else ''})" for r in universal.to_dict("records"))
    spec.text(f"Universal perturbations: one perturbation per model that changes no pixel by more than "
              f"{255 * bud.xi:.0f}/255, computed on {survey.fit_images} scenes for a target fooling rate of 80%: "
              f"{status}. With two classes one perturbation mostly pushes towards one class, so it can flip little "
              "more than the scenes of the other class. The transfer matrix applies every perturbation to "
              f"{survey.heldout_images} other scenes, its own model included.")
    spec.figure("figures/adv_universal.png",
                "Universal perturbations: per model (column), the perturbation v (scaled: grey = 0), a held-out scene, and the "
                "scene with v added, with the model's predicted class and probability.")
    spec.table("tables/adv_universal.parquet",
               "Universal perturbation per model: radius xi and largest change in grey levels, fooling rate on the "
               "scenes it was computed on (and whether it reached the target) and on held-out scenes.",
               columns=["model", "xi_255", "linf_255", "fooling_rate_fit", "target_rate", "reached", "passes",
                        "fooling_rate_heldout"], digits=2)
    spec.figure("figures/adv_transfer.png",
                "Transfer matrix: row = the model the universal perturbation was computed on, column = the model it "
                "is applied to; cell = fooling rate (share of held-out scenes whose predicted class changes). The "
                "diagonal uses the same scenes as the other cells.")
    spec.table("tables/adv_transfer.parquet", "Transfer matrix (fooling rates; rows = source model, columns = "
               "target model).", digits=2)
