"""`gradsum explain` (heatmaps for images or the built-in example) and `gradsum methods`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradsum.cli._common import (
    AUTOCAST_OPTION,
    DEVICE_OPTION,
    METHOD_OPTION_OPTION,
    PRECISION_OPTION,
    RESIZE_POLICIES,
    UserError,
    check_methods_build,
    check_out_dir,
    device_option,
    layer_option,
    method_options,
    parse_size,
    precision_options,
    progress_bar,
    split_list,
    user_errors,
)
from gradsum.cli._model import (
    MEAN_OPTION,
    MODEL_OPTION,
    NORMALIZE_OPTION,
    NUM_CLASSES_OPTION,
    OUTPUT_OPTION,
    STD_OPTION,
    TRUST_OPTION,
    WEIGHTS_OPTION,
    explained_target,
    load_model,
    model_output,
)

#: images larger than this (longest side) are scaled down when no --size is given
MAX_DEFAULT_SIDE = 1024
#: images shown in grid.png (every image gets its overlays)
GRID_IMAGES = 8

DEFAULT_METHODS = "gradcam,gradcam++,layercam,saliency,guided-backprop,integrated-gradients"

EXPLAIN_HELP = """Explain images with one or more heatmap methods; write overlays, a grid and raw maps.

Examples:

  gradsum explain --example digits --out runs/digits

  gradsum explain road1.png road2.png --model pilotnet --weights run/checkpoints/epoch_005.pt --method gradcam,layercam --out runs/explain

  gradsum explain cat.jpg --model torchvision:resnet18 --weights resnet18.pt --method gradcam --layer layer4 --target 281 --out runs/cat

  gradsum explain cat.jpg --model torchvision:resnet18 --weights resnet18.pt --method guided-backprop --neuron layer3:17:4:6 --out runs/unit
"""


def _digits_example(seed: int) -> tuple[Any, Any, list[str]]:
    """Train the MNIST-style net on scikit-learn's digits (a few seconds) and return
    (model, 8 held-out images, their titles)."""
    import torch

    import gradsum as gs

    train = gs.data.Digits("train", size=28, seed=seed)
    test = gs.data.Digits("test", size=28, seed=seed)
    model = gs.models.build("digitsnet")
    history = gs.train.fit(model, train, test, task="classification", epochs=4, batch_size=64, lr=3e-3,
                           seed=seed, progress=True)
    accuracy = history.final.get("val_accuracy")
    if accuracy is not None:
        typer.echo(f"digits model: held-out accuracy {100 * accuracy:.1f}%")
    picks = [next(i for i in range(len(test)) if test[i].target == d) for d in range(8)]
    images = torch.stack([test[i].image for i in picks])
    with torch.no_grad():
        predicted = model(images).argmax(dim=1).tolist()
    return model, images, [f"digit {test[i].target} (pred {p})" for i, p in zip(picks, predicted, strict=True)]


def _neuron_target(net: Any, firsts: list[Any], text: str, target: int | None, sign: int | None) -> Any:
    """--neuron LAYER:CHANNEL[:Y:X] -> gs.NeuronTarget, checked on the first image of each
    size (layer name, channel, and a position inside every size's map) before anything is
    explained."""
    import torch

    import gradsum as gs
    from gradsum.core.probe import preserved_state
    from gradsum.core.truncate import truncated

    if target is not None or sign is not None:
        raise UserError("--neuron explains a unit inside the network; drop --target / --sign (they choose an output)")
    layer, *numbers = text.split(":")
    if len(numbers) not in (1, 3) or not layer:
        raise UserError(f"--neuron {text!r}: give LAYER:CHANNEL or LAYER:CHANNEL:Y:X, e.g. layer3:17 or layer3:17:4:6")
    try:
        values = [int(v) for v in numbers]
    except ValueError:
        raise UserError(f"--neuron {text!r}: CHANNEL, Y and X must be integers, e.g. layer3:17:4:6") from None
    neuron = gs.NeuronTarget(layer, values[0], *(values[1:] or (None, None)))
    with truncated(net, layer) as view, torch.no_grad(), preserved_state(net):
        for x in firsts:  # a misspelt layer, a channel or position out of range: one line, nothing run yet
            try:
                neuron.bind(view(x))
            except ValueError as exc:
                raise UserError(f"{exc}{' (images of ' + _size(x) + ')' if len(firsts) > 1 else ''}") from None
    return neuron


def _size(x: Any) -> str:
    return f"{x.shape[-2]}x{x.shape[-1]}"


def explain_command(
    images: list[Path] = typer.Argument(None, help="Image files (PNG/JPEG) to explain."),
    model: str = MODEL_OPTION,
    weights: Path = WEIGHTS_OPTION,
    num_classes: int = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str = MEAN_OPTION,
    std: str = STD_OPTION,
    output: str = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    method: str = typer.Option(DEFAULT_METHODS, "--method", help="Comma-separated method names (see `gradsum methods`)."),
    layer: str = typer.Option("auto", "--layer", help="Layer name(s) for CAM methods, comma-separated; 'auto' = model default."),
    target: int = typer.Option(None, "--target", help="Class index (segmentation models: category) to explain "
                                                       "(default: the predicted class; output 0 for regressors)."),
    sign: int = typer.Option(None, "--sign", help="Regressors only: +1 explains what pushes the output up, -1 down."),
    neuron: str = typer.Option(None, "--neuron", help="Explain one unit of an intermediate layer instead of an "
                                                      "output: LAYER:CHANNEL (the channel's mean) or LAYER:CHANNEL:Y:X "
                                                      "(one position of its map), e.g. layer3:17:4:6."),
    size: str = typer.Option(None, "--size", help="Explain images at HxW (default: the checkpoint's input size, else "
                                                  f"each image's own, scaled down to at most {MAX_DEFAULT_SIDE} px)."),
    resize: str = typer.Option("letterbox", "--resize", help="How --size is reached when the aspect ratio differs: "
                                                             "letterbox (fit, pad grey) | stretch | center-crop."),
    option: list[str] = METHOD_OPTION_OPTION,
    batch_size: int = typer.Option(None, "--batch-size", help="Images per batch (default: sized to free memory)."),
    example: str = typer.Option(None, "--example", help="Use a built-in example instead of images: 'digits'."),
    out: Path = typer.Option(Path("runs/explain"), "--out", "-o", help="Output folder."),
    device_: str = DEVICE_OPTION,
    precision: str = PRECISION_OPTION,
    autocast: str = AUTOCAST_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed for training the example and for stochastic methods."),
) -> None:
    import torch

    import gradsum as gs
    from gradsum.core.devices import device_info
    from gradsum.data.transforms import fit_image
    from gradsum.methods.base import ZeroMapLog
    from gradsum.run.store import save_figure, save_maps, save_png, write_json, write_text

    methods = split_list(method)
    if not methods:
        raise UserError("--method is empty; give at least one method name (see `gradsum methods`)")
    for name in methods:
        gs.method_info(name)  # unknown names fail before any work
    options = method_options(option, methods)
    check_out_dir(out)
    device = device_option(device_)
    exactness = precision_options(precision, autocast)
    hw = parse_size(size)
    if resize not in RESIZE_POLICIES:
        raise UserError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if example is not None:
        if example != "digits":
            raise UserError(f"unknown example {example!r}; the built-in example is 'digits'")
        given = [opt for opt, value in (("IMAGES", images), ("--model", model), ("--weights", weights),
                                        ("--size", size)) if value]
        if given:
            raise UserError(f"--example digits brings its own model and images; drop {', '.join(given)}")
        net, x, titles = _digits_example(seed)
        net = net.to(device)
        plan: list[tuple[list[str], tuple[int, int], Any]] = [
            (titles, tuple(x.shape[-2:]), lambda start, stop: x[start:stop])]
        notes: list[str] = []
    else:
        if not images:
            raise UserError("give image files to explain, or --example digits")
        headers = [_image_header(Path(p)) for p in images]
        net = load_model(model, weights, num_classes, normalize=normalize, mean=mean, std=std, output=output,
                         trust=trust_pickle, device=device)
        hw = hw or gs.models.card_of(net).input_size
        plan, notes = _plan(list(images), headers, hw, resize)
    first = plan[0][2](0, 1).to(device)
    spec = (_neuron_target(net, [first, *(read(0, 1).to(device) for _, _, read in plan[1:])], neuron, target, sign)
            if neuron is not None
            else explained_target(model_output(net, first), target, sign))
    for note in notes:
        typer.echo(note)
    layers = layer_option(net, layer)
    check_methods_build(net, methods, layers, options)
    maps: dict[str, list[Any]] = {name: [] for name in methods}
    rows = ["image,method,target,score,forward_passes,backward_passes,seconds"]
    all_titles: list[str] = []
    grid_images: list[Any] = []
    grid_maps: dict[str, list[Any]] = {name: [] for name in methods}
    total = None
    zero_maps = ZeroMapLog()
    n_images = sum(len(titles) for titles, _, _ in plan)
    bar, update = progress_bar("explaining")
    done = 0
    with bar:
        update(0, n_images)
        for titles, (height, width), read in plan:
            step = batch_size or _auto_batch(height, width, len(methods))
            for start in range(0, len(titles), step):
                x = read(start, start + step).to(device)
                names = titles[start:start + step]
                with zero_maps.batch(names):  # name the images, not their positions in this batch
                    results = gs.explain(net, x, methods=methods, layer=layers, target=spec, options=options,
                                         **exactness)
                x = x.cpu()
                for attr in results.values():
                    attr.maps = attr.maps.cpu()
                total = results.cost if total is None else total + results.cost
                for name, attr in results.items():
                    maps[name].append(attr.maps)
                    c = attr.cost
                    for i, title in enumerate(names):
                        t = "" if attr.targets is None else int(attr.targets[i])  # (after the batch: one sync)
                        rows.append(f"{title},{name},{t},{float(attr.scores[i]):.6g},{c.forward_passes},"
                                    f"{c.backward_passes},{c.seconds:.4f}")
                        save_png(out / "overlays" / f"{len(all_titles) + i:02d}_{_slug(title)}_{_slug(name)}.png",
                                 gs.viz.overlay(x[i], attr.maps[i]))
                if len(grid_images) < GRID_IMAGES:  # the grid shows every image at the first one's size
                    take = GRID_IMAGES - len(grid_images)
                    cell = tuple(grid_images[0].shape[-2:]) if grid_images else tuple(x.shape[-2:])
                    grid_images.extend(fit_image(img, cell) for img in x[:take])
                    for name, attr in results.items():
                        low = attr.maps[:take].amin(dim=(1, 2))
                        grid_maps[name].extend(fit_image(m[None], cell, fill=float(lo))[0]
                                               for m, lo in zip(attr.maps[:take], low, strict=True))
                all_titles.extend(names)
                done += len(names)
                update(done, n_images)
    for line in zero_maps.messages():
        typer.echo(f"gradsum: warning: {line}", err=True)
    grid_x = torch.stack(grid_images)
    save_figure(out / "grid.png", gs.viz.grid(grid_x, {k: torch.stack(v) for k, v in grid_maps.items()},
                                              titles=all_titles[: len(grid_images)], max_images=GRID_IMAGES,
                                              title=gs.viz.shown_note(len(grid_images), len(all_titles))))
    if len({tuple(m.shape[-2:]) for chunks in maps.values() for m in chunks}) == 1:
        save_maps(out / "maps.npz", ids=all_titles, **{name: torch.cat(chunks) for name, chunks in maps.items()})
    else:  # images of several sizes: one (H,W) array per method and image, keys "method/index"
        save_maps(out / "maps.npz", ids=all_titles, **{f"{name}/{i}": m for name, chunks in maps.items()
                                       for i, m in enumerate(m for chunk in chunks for m in chunk)})
    write_text(out / "explanations.csv", "\n".join(rows) + "\n")
    card = gs.models.card_of(net)
    write_json(out / "manifest.json", {
        "command": "explain", "model": model or (card.spec if card else None) or f"example:{example}",
        "weights": str(weights) if weights else None, "card": card.to_dict() if card else None,
        "methods": methods, "layers": layers if isinstance(layers, str | list) else None, "target": target,
        "sign": sign, "size": list(hw) if hw else None, "resize": resize if hw else None,
        "seed": seed, "images": all_titles, "gradsum": gs.__version__, **exactness,
        "runtime": device_info(device),
    })
    typer.echo(f"wrote {len(methods)} methods x {len(all_titles)} images to {out} (grid.png, overlays/, maps.npz)")
    typer.echo(f"total cost: {total.forward_passes} forward + {total.backward_passes} backward "
               f"passes, {total.seconds:.2f} s")


def _image_header(path: Path) -> tuple[int, int]:
    """(H, W) from the file's header, checked against the pixel limit, before decoding."""
    from PIL import Image, UnidentifiedImageError

    from gradsum.data._files import (
        MAX_IMAGE_PIXELS,
        RAISE_LIMIT_HINT,
        match_pillow_limit,
        oriented_size,
    )

    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    limit = f"the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels (MAX_IMAGE_PIXELS)"
    try:
        match_pillow_limit()
        with Image.open(path) as img:
            w, h = img.size
            shown = oriented_size(img)  # a photo stored sideways is explained upright
    except Image.DecompressionBombError:
        raise UserError(f"image {path} is far above {limit} (its header claims more pixels than PIL "
                        f"will decode); downscale it first, {RAISE_LIMIT_HINT}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise UserError(f"image {path} is {w}x{h} pixels, above {limit}; downscale it first, {RAISE_LIMIT_HINT}")
    return shown


def _plan(paths: list[Path], headers: list[tuple[int, int]], size: tuple[int, int] | None,
          resize: str) -> tuple[list[tuple[list[str], tuple[int, int], Any]], list[str]]:
    """Group the images by the size they are explained at: (titles, (H, W), read(start, stop)
    -> the decoded, resized batch) per group, in the order given, plus lines that say how
    images are resized."""
    notes: list[str] = []
    targets = []
    for path, (h, w) in zip(paths, headers, strict=True):
        if size is not None:
            targets.append(tuple(size))
        elif max(h, w) > MAX_DEFAULT_SIDE:
            scale = MAX_DEFAULT_SIDE / max(h, w)
            targets.append((max(1, round(h * scale)), max(1, round(w * scale))))
            notes.append(f"{path.name} ({h}x{w}) is explained at {targets[-1][0]}x{targets[-1][1]} (images above "
                         f"{MAX_DEFAULT_SIDE} px are scaled down; pass --size HxW to choose)")
        else:
            targets.append((h, w))
    if size is not None:
        differ = [p.name for p, (h, w) in zip(paths, headers, strict=True) if abs(h / w - size[0] / size[1]) > 0.01]
        if differ:
            how = {"letterbox": "scaled to fit and padded with grey", "stretch": "stretched (aspect ratio not kept)",
                   "center-crop": "scaled to cover and cropped at the centre"}[resize]
            notes.append(f"{len(differ)} image(s) have another aspect ratio than {size[0]}x{size[1]} (e.g. {differ[0]}): "
                         f"{how} (--resize {resize}; letterbox | stretch | center-crop)")
    groups: dict[tuple[int, int], tuple[list[Path], list[str]]] = {}
    for path, target in zip(paths, targets, strict=True):
        group = groups.setdefault(target, ([], []))
        group[0].append(path)
        group[1].append(path.stem)
    return [(titles, shape, _reader(group, shape, resize)) for shape, (group, titles) in groups.items()], notes


def _reader(paths: list[Path], size: tuple[int, int], resize: str) -> Any:
    """read(start, stop): the images paths[start:stop] decoded and brought to `size`."""
    return lambda start, stop: _read_batch(paths[start:stop], size, resize)


def _read_batch(paths: list[Path], size: Any, resize: str) -> Any:
    """Decode and resize a batch of image files to `size` (H, W)."""
    import torch

    from gradsum.data._files import read_rgb
    from gradsum.data.transforms import fit_image

    return torch.stack([fit_image(read_rgb(p), (int(size[0]), int(size[1])), resize) for p in paths])


def _auto_batch(h: int, w: int, n_methods: int) -> int:
    """Images per batch that fit a quarter of the free memory, assuming the passes need about
    400 bytes per input value per method (activations kept for the backward pass), 1..32."""
    import os

    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    per_image = h * w * 3 * 400 * max(1, min(n_methods, 4))
    return int(min(32, max(1, free // 4 // per_image)))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-+" else "_" for ch in text)


def methods_command() -> None:
    """List every heatmap method: name, family, passes needed per image, and the paper."""
    from rich.console import Console
    from rich.table import Table

    from gradsum.methods.registry import method_table

    table = Table(title="gradsum methods")
    table.add_column("name", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("passes per image")
    table.add_column("signed", no_wrap=True)
    table.add_column("paper")
    for row in method_table():
        table.add_row(row["name"], row["family"], row["passes"], "yes" if row["signed"] else "", row["paper"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("explain", help=EXPLAIN_HELP)(user_errors(explain_command))
    app.command("methods", help="List the heatmap methods with their family, cost and paper.\n\nExample: gradsum methods")(
        user_errors(methods_command)
    )
