"""`gradsum explain` (heatmaps for images or the built-in example) and `gradsum methods`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradsum.cli._common import UserError, layer_option, split_list, user_errors

DEFAULT_METHODS = "gradcam,gradcam++,layercam,saliency,guided-backprop,integrated-gradients"

EXPLAIN_HELP = """Explain images with one or more heatmap methods; write overlays, a grid and raw maps.

Examples:

  gradsum explain --example digits --out runs/digits

  gradsum explain road1.png road2.png --model pilotnet --weights run/checkpoints/epoch_005.pt --method gradcam,layercam --out runs/explain

  gradsum explain cat.jpg --model torchvision:resnet18 --weights resnet18.pt --method gradcam --layer layer4 --target 281 --out runs/cat
"""


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like HxW (e.g. 66x200); got {text!r}") from None
    return h, w


def _load_images(paths: list[Path], size: tuple[int, int] | None) -> tuple[Any, list[str]]:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    tensors = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"image file not found: {path}")
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                tensors.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read image {path}: {exc}") from None
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise UserError(f"images have different sizes {sorted(shapes)}; pass --size HxW to resize them")
    return torch.stack(tensors), [p.stem for p in paths]


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


def explain_command(
    images: list[Path] = typer.Argument(None, help="Image files (PNG/JPEG) to explain."),
    model: str = typer.Option(None, "--model", "-m", help="pilotnet | potholenet | digitsnet | torchvision:NAME | file.py:factory"),
    weights: Path = typer.Option(None, "--weights", "-w", help="Local weights file (state dict or trainer checkpoint)."),
    method: str = typer.Option(DEFAULT_METHODS, "--method", help="Comma-separated method names (see `gradsum methods`)."),
    layer: str = typer.Option("auto", "--layer", help="Layer name(s) for CAM methods, comma-separated; 'auto' = model default."),
    target: int = typer.Option(None, "--target", help="Class index to explain (default: the predicted class; output 0 for regressors)."),
    sign: int = typer.Option(1, "--sign", help="For regressors: +1 explains what pushes the output up, -1 down."),
    size: str = typer.Option(None, "--size", help="Resize images to HxW before explaining (e.g. 66x200)."),
    example: str = typer.Option(None, "--example", help="Use a built-in example instead of images: 'digits'."),
    out: Path = typer.Option(Path("runs/explain"), "--out", "-o", help="Output folder."),
    seed: int = typer.Option(0, "--seed", help="Seed for training the example and for stochastic methods."),
) -> None:
    import torch

    import gradsum as gs
    from gradsum.run.store import save_figure, save_maps, save_png, write_json, write_text

    methods = split_list(method)
    if not methods:
        raise UserError("--method is empty; give at least one method name (see `gradsum methods`)")
    for name in methods:
        gs.method_info(name)  # unknown names fail before any work
    if example is not None:
        if example != "digits":
            raise UserError(f"unknown example {example!r}; the built-in example is 'digits'")
        net, x, titles = _digits_example(seed)
    else:
        if not images:
            raise UserError("give image files to explain, or --example digits")
        if not model:
            raise UserError("--model is required with image files (e.g. --model pilotnet)")
        net = gs.models.build(model, weights=str(weights) if weights else None)
        x, titles = _load_images(list(images), _parse_size(size))
    layers = layer_option(net, layer)
    spec: Any = target
    with torch.no_grad():
        n_outputs = net(x[:1]).flatten(1).shape[1]
    if n_outputs == 1:
        spec = gs.RegressionTarget(0, sign=sign)
    results = gs.explain(net, x, methods=methods, layer=layers, target=spec)
    first = next(iter(results.values()))
    out.mkdir(parents=True, exist_ok=True)
    save_figure(out / "grid.png", gs.viz.grid(x, results, titles=titles))
    for name, attr in results.items():
        for i, title in enumerate(titles):
            save_png(out / "overlays" / f"{i:02d}_{_slug(title)}_{_slug(name)}.png", gs.viz.overlay(x[i], attr.maps[i]))
    save_maps(out / "maps.npz", **{name: attr.maps for name, attr in results.items()})
    rows = ["image,method,target,score,forward_passes,backward_passes,seconds"]
    for name, attr in results.items():
        c = attr.cost
        for i, title in enumerate(titles):
            t = "" if attr.targets is None else int(attr.targets[i])
            rows.append(f"{title},{name},{t},{float(attr.scores[i]):.6g},{c.forward_passes},{c.backward_passes},{c.seconds:.4f}")
    write_text(out / "explanations.csv", "\n".join(rows) + "\n")
    write_json(out / "manifest.json", {
        "command": "explain", "model": model or f"example:{example}", "weights": str(weights) if weights else None,
        "methods": methods, "layers": first.settings.get("layers"), "target": first.settings.get("target"),
        "seed": seed, "images": titles, "gradsum": gs.__version__,
    })
    typer.echo(f"wrote {len(methods)} methods x {len(titles)} images to {out} (grid.png, overlays/, maps.npz)")
    typer.echo(f"total cost: {results.cost.forward_passes} forward + {results.cost.backward_passes} backward "
               f"passes, {results.cost.seconds:.2f} s")


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
