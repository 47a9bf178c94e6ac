"""`gradsum features ...`: filter grids, feature maps, activation maximisation and
maximally activating dataset patches, written as PNG + CSV/Parquet into a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import (
    DEVICE_OPTION,
    RESIZE_OPTION,
    UserError,
    check_out_dir,
    device_option,
    parse_size,
    user_errors,
)
from ._inputs import (
    CARD_SIZE_OPTION,
    MAX_MAXIMIZE_IMAGES,
    MAX_PATCHES_K,
    _OneSize,
    card_size,
    check_indices,
    check_pixels_at_once,
    layer_output,
    load_images,
    load_model,
    open_dataset,
    parse_indices,
    positive,
    size_options,
)
from ._model import (
    MEAN_OPTION,
    MODEL_OPTION,
    NORMALIZE_OPTION,
    NUM_CLASSES_OPTION,
    OUTPUT_OPTION,
    STD_OPTION,
    TRUST_OPTION,
    WEIGHTS_OPTION,
    model_output,
)
from ._outputs import save_tensor, staged_output, write_csv

__all__ = ["register", "filters", "maps", "maximize", "patches"]

features_app = typer.Typer(
    help="What layers respond to: filters, feature maps, activation maximisation, dataset patches.",
    no_args_is_help=True,
)



def _safe(name: str) -> str:
    return name.replace(".", "_").replace("/", "_") or "model"


# ---------------------------------------------------------------- commands

@features_app.command("filters")
@user_errors
def filters(
    out: Path = typer.Option(..., "--out", help="Run folder for filters_<layer>.png and .csv."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    layer: str | None = typer.Option(None, "--layer", help="Conv layer name (default: the first conv)."),
    max_tiles: int = typer.Option(64, "--max-tiles", help="Cap on tiles shown."),
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
) -> None:
    """Draw a conv layer's weights: RGB tiles for a first layer, grayscale per input channel deeper.

    Example: gradsum features filters --weights runs/pothole/best.pt --out runs/feat
    """
    import pandas as pd

    import gradsum.features as gf
    from gradsum.run.store import save_figure

    check_out_dir(out)
    positive(max_tiles, "--max-tiles")
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle)
    grid = gf.filter_grid(net, layer, max_tiles=max_tiles)
    name = _safe(grid.layer)
    w = dict(net.named_modules())[grid.layer].weight.detach().float()
    rows = [{"layer": grid.layer, "filter": f, "in_channel": c, "l2_norm": float(w[f, c].norm()),
             "min": float(w[f, c].min()), "max": float(w[f, c].max())}
            for f in range(w.shape[0]) for c in range(w.shape[1])]
    with staged_output(out) as stage:
        save_figure(stage / f"filters_{name}.png", grid.figure())
        write_csv(stage / f"filters_{name}.csv", pd.DataFrame(rows))
    typer.echo(f"{grid.title}: wrote {out / f'filters_{name}.png'} and filters_{name}.csv")


@features_app.command("maps")
@user_errors
def maps(
    data: str = typer.Option(..., "--data", help="Data SPEC, e.g. roads:10:task=pothole or digits."),
    layer: str = typer.Option(..., "--layer", help="Layer whose feature maps to draw."),
    out: Path = typer.Option(..., "--out", help="Run folder for maps_<layer>_<index>.png."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    index: int = typer.Option(0, "--index", help="Which sample of --data (0 = the first)."),
    size: str | None = CARD_SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Draw one image's feature maps at a layer and their sum.

    Example: gradsum features maps --model digitsnet --data digits --layer features.act1 --out runs/feat

    Photos of any size: gradsum features maps --weights best.pt --data voc:VOC2007 --size 224x224 --resize letterbox --layer layer3 --out runs/feat
    """
    import gradsum.features as gf
    from gradsum.run.store import save_figure

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    hw, resize = size_options(size, resize)
    if index < 0:
        raise UserError(f"--index must be >= 0 (0 = the first sample), got {index}")
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle,
                     device=device)
    images, ids, _ = load_images(data, hw, 1, start=index, resize=resize, default_size=card_size(net))
    images = images.to(device)
    layer_output(net, layer, tuple(images.shape[-2:]), images[:1])  # one line if the model refuses the image
    fm = gf.feature_maps(net, images[0], layer)
    png = out / f"maps_{_safe(fm.layer)}_{index}.png"
    with staged_output(out) as stage:
        save_figure(stage / png.name, fm.figure())
    typer.echo(f"{fm.layer}: {fm.maps.shape[0]} maps of {fm.maps.shape[1]}x{fm.maps.shape[2]} for sample {ids[0]}; wrote {png}")


OBJECTIVES = ("channel", "neuron", "dense", "class")


@features_app.command("maximize")
@user_errors
def maximize(
    out: Path = typer.Option(..., "--out", help="Run folder for maximize_<layer>.png and .csv."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    layer: str | None = typer.Option(None, "--layer", help="Layer to visualise (not needed for --objective class)."),
    channels: str = typer.Option("0-15", "--channels", help="Channels / units / classes, e.g. 0-15 or 0,3,7 "
                                                            f"(one image each, at most {MAX_MAXIMIZE_IMAGES})."),
    objective: str = typer.Option("channel", "--objective", help="channel | neuron | dense | class."),
    preset: str = typer.Option("pixel", "--preset", help="pixel (projected ascent in [0,1], 512 steps: the highest "
                                                         "activations) | lucent (FFT, Adam, 512 steps: smoother "
                                                         "images) | keras (unbounded pixels, 30 steps)."),
    steps: int | None = typer.Option(None, "--steps", help="Override the preset's number of steps."),
    size: str | None = typer.Option(None, "--size", help="Image size HxW (default: from --data, else the "
                                                         "checkpoint's input size, else 64x64)."),
    data: str | None = typer.Option(None, "--data", help="Data SPEC to take the image size from."),
    seed: int = typer.Option(0, "--seed", help="Seed of the start images and transforms."),
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Optimise one image per channel (all in one batch) that maximally activates it.

    Example: gradsum features maximize --model potholenet --weights best.pt --layer features.act3 --channels 0-15 --size 66x200 --out runs/feat --device cuda
    """
    import pandas as pd
    import torch

    import gradsum.features as gf
    from gradsum.run.store import save_figure

    check_out_dir(out)
    device = device_option(device_)  # before the model is loaded
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if preset not in gf.PRESETS:
        raise UserError(f"--preset must be one of {', '.join(sorted(gf.PRESETS))}; got {preset!r}")
    if objective != "class" and not layer:
        raise UserError(f"--objective {objective} needs --layer NAME")
    positive(steps, "--steps")
    idx = parse_indices(channels) or [0]
    if len(idx) > MAX_MAXIMIZE_IMAGES:
        raise UserError(f"--channels {channels} asks for {len(idx)} images, over the limit of {MAX_MAXIMIZE_IMAGES} "
                        "per run (MAX_MAXIMIZE_IMAGES); split the channels over several runs")
    hw = parse_size(size)
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle,
                     device=device)
    if hw is None and data is not None:
        hw = tuple(load_images(data, None, 1)[0].shape[-2:])  # type: ignore[assignment]
    hw = hw or card_size(net) or (64, 64)
    check_pixels_at_once(len(idx), hw, "--channels", "give fewer --channels or a smaller --size")  # type: ignore[arg-type]
    # the layer's (or output's) shape on ONE image, before the batch is allocated
    if objective == "class":
        out_1 = model_output(net, torch.zeros(1, 3, *hw, device=device))
        if out_1.ndim != 2:
            raise UserError(f"--objective class needs a model with one score per class; this one outputs "
                            f"{tuple(out_1.shape[1:])} per image")
        check_indices(idx, out_1.shape[1], "class", f"the model's output ({out_1.shape[1]} classes)")
        obj = gf.class_logit(idx)
    else:
        name, act = layer_output(net, layer, hw)  # type: ignore[arg-type]
        want = 2 if objective == "dense" else 4
        if act.ndim != want:
            fix = "use --objective dense for a 2-D (B,N) layer" if act.ndim == 2 else \
                "use --objective channel or neuron for a conv layer" if act.ndim == 4 else "pick a conv or linear layer"
            raise UserError(f"--objective {objective} needs a {'(B,N)' if want == 2 else '(B,C,h,w)'} output; "
                            f"layer '{name}' gives {tuple(act.shape)}; {fix}")
        what = "unit" if objective == "dense" else "channel"
        check_indices(idx, act.shape[1], what, f"layer '{name}' ({act.shape[1]} {what}s)")
        obj = {"channel": gf.channel, "neuron": gf.neuron, "dense": gf.dense_unit}[objective](layer, idx)
    res = gf.maximize(net, obj, image_size=hw, preset=preset, steps=steps, seed=seed)
    name = _safe("output" if objective == "class" or not layer else layer)
    table = pd.DataFrame({"layer": layer or "output", "objective": objective, "index": idx, "label": res.labels,
                          "start_value": res.history[0].tolist(), "final_value": res.values.tolist(),
                          "preset": preset, "steps": res.settings["steps"], "seed": seed})
    png = out / f"maximize_{name}.png"
    with staged_output(out) as stage:
        save_figure(stage / png.name, res.figure())
        write_csv(stage / f"maximize_{name}.csv", table)
        save_tensor(stage / f"maximize_{name}.pt", res.images)
    typer.echo(f"{obj.description}: objective {float(res.history[0].mean()):.3g} -> {float(res.values.mean()):.3g} "
               f"(mean of {len(idx)}); wrote {png}")


@features_app.command("patches")
@user_errors
def patches(
    data: str = typer.Option(..., "--data", help="Data SPEC streamed once, e.g. roads:500:task=pothole."),
    layer: str = typer.Option(..., "--layer", help="Conv layer whose channels to rank."),
    out: Path = typer.Option(..., "--out", help="Run folder for patches_<layer>.png and .parquet."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    k: int = typer.Option(9, "--k", help=f"Patches kept per channel (at most {MAX_PATCHES_K})."),
    channels: str | None = typer.Option(None, "--channels", help="Channels to keep (default all), e.g. 0-7."),
    show: int = typer.Option(16, "--show", help="Channels drawn in the PNG."),
    attribution: str | None = typer.Option(None, "--attribution", help="Also draw, for the shown channels, METHOD "
                                           "(e.g. guided-backprop) of each patch's own unit, cropped like the patch: "
                                           "which pixels of the patch drive the channel."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples."),
    size: str | None = CARD_SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Stream a dataset once and crop the top-k receptive-field patches of every channel.

    Example: gradsum features patches --model potholenet --weights best.pt --data roads:300:task=pothole --layer features.act3 --out runs/feat --device cuda

    Example: gradsum features patches --model potholenet --weights best.pt --data roads:300:task=pothole --layer features.act3 --attribution guided-backprop --out runs/feat
    """
    import pandas as pd

    from gradsum.features.patches import top_patches
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    positive(k, "--k")
    if k > MAX_PATCHES_K:
        raise UserError(f"--k {k} is over the limit of {MAX_PATCHES_K} patches per channel (MAX_PATCHES_K)")
    positive(show, "--show")
    positive(limit, "--limit")
    positive(batch_size, "--batch-size")
    chosen = parse_indices(channels)
    if attribution is not None:
        import gradsum as gs

        method = gs.method_info(attribution).name  # an unknown method: one line, before the model is loaded
        if gs.method_info(method).family == "attention":
            raise UserError(f"--attribution {method} explains a transformer's output; give a gradient or CAM method "
                            "such as guided-backprop")
    hw, resize = size_options(size, resize)
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle,
                     device=device)
    dataset = open_dataset(data, hw, resize, default_size=card_size(net))
    if limit is not None and limit < len(dataset):
        import torch

        dataset = torch.utils.data.Subset(dataset, range(limit))
    if len(dataset) == 0:
        raise UserError(f"--data {data} has no samples")
    first = dataset[0].image[None].float().to(device)
    dataset = _OneSize(dataset, data, tuple(first.shape[-2:]))  # type: ignore[arg-type]
    check_pixels_at_once(min(batch_size, len(dataset)), tuple(first.shape[-2:]), "--batch-size",  # type: ignore[arg-type]
                         "use a smaller --batch-size or --size")
    name, act = layer_output(net, layer, tuple(first.shape[-2:]), first)  # type: ignore[arg-type]
    if act.ndim != 4:
        raise UserError(f"--layer {name} gives {tuple(act.shape)}; patches need a conv layer with (B,C,h,w) maps")
    if chosen is not None:
        check_indices(chosen, act.shape[1], "channel", f"layer '{name}' ({act.shape[1]} channels)")
    res = top_patches(net, layer, dataset, k=k, channels=chosen, batch_size=batch_size, device=device)
    name = _safe(res.layer)
    ids = [getattr(dataset[i], "id", str(i)) for i in sorted(set(res.index.flatten().tolist()))]
    id_of = dict(zip(sorted(set(res.index.flatten().tolist())), ids, strict=True))
    rows = [{"layer": res.layer, "channel": ch, "rank": r, "value": float(res.values[i, r]),
             "index": int(res.index[i, r]), "id": id_of[int(res.index[i, r])], "y": int(res.y[i, r]),
             "x": int(res.x[i, r]), "box_y0": int(res.boxes[i, r, 0]), "box_x0": int(res.boxes[i, r, 1]),
             "box_y1": int(res.boxes[i, r, 2]), "box_x1": int(res.boxes[i, r, 3])}
            for i, ch in enumerate(res.channels) for r in range(res.values.shape[1])]
    png = out / f"patches_{name}.png"
    with staged_output(out) as stage:
        save_figure(stage / png.name, res.figure(channels=res.channels[:show]))
        write_table(stage / f"patches_{name}.parquet", pd.DataFrame(rows))
        if attribution is not None:
            save_figure(stage / f"{attribution}_{name}.png", _attribution_figure(net, res, dataset, method, show))
    f = res.field_
    typer.echo(f"{res.layer}: top-{res.values.shape[1]} of {res.images_seen} images for {len(res.channels)} channels; "
               f"receptive field {f.size[0]}x{f.size[1]} ({f.method}), jump {f.jump[0]}; wrote {png}"
               + (f" and {out / f'{attribution}_{name}.png'}" if attribution is not None else ""))


def _attribution_figure(net: Any, top: Any, dataset: Any, method: str, show: int) -> Any:
    """`method` of each shown channel's unit on its top patches (gs.features.patch_attributions),
    each tile on its own symmetric scale (grey = 0), laid out like TopPatches.figure."""
    import gradsum as gs
    from gradsum.features._plot import tile_figure

    channels = top.channels[:show]
    tiles = gs.viz.signed_per_tile(gs.features.patch_attributions(net, top, dataset, method, channels=channels))
    k = tiles.shape[1]
    titles = [f"ch {c}" if j == 0 else "" for c in channels for j in range(k)]
    return tile_figure(tiles.flatten(0, 1), titles=titles, ncols=k, tile_inches=0.9,
                       title=f"{top.layer}: {method} of each channel's unit on its top-{k} patches (grey = 0)")


def register(app: typer.Typer) -> None:
    """Add `gradsum features ...` to the CLI."""
    app.add_typer(features_app, name="features")
