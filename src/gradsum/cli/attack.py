"""`gradsum attack ...`: FGSM, PGD, DeepFool, universal perturbations (with a transfer
matrix) and fooling images, written as PNG + CSV into a run folder.

Every command validates its options, the model (a classifier: one score per class) and the
labels/targets before any attack runs and before --out is written."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from ._common import (
    DEVICE_OPTION,
    RESIZE_OPTION,
    UserError,
    check_out_dir,
    device_option,
    user_errors,
)
from ._inputs import (
    CARD_SIZE_OPTION,
    card_size,
    check_pixels_at_once,
    load_images,
    load_model,
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

__all__ = ["register", "fgsm", "pgd", "deepfool", "universal", "fool"]

attack_app = typer.Typer(
    help="How models break: FGSM, PGD, DeepFool, universal perturbations, fooling images (pixels in [0,1]; "
         "the model's normalisation is put inside it, so budgets are in pixel units).",
    no_args_is_help=True,
)

# options shared by every attack command (one definition, one help text)
LIMIT_OPTION = typer.Option(64, "--limit", help="Number of images.")
SIZE_OPTION = CARD_SIZE_OPTION
TARGET_OPTION = typer.Option(None, "--target", help="Targeted attack towards this class.")
NORMS = {"inf": "inf", "linf": "inf", "2": "2", "l2": "2"}


# ---------------------------------------------------------------- checks (before anything runs)

def _norm(text: str, option: str) -> str:
    key = str(text).strip().lower()
    if key not in NORMS:
        raise UserError(f"{option} must be inf or 2, got {text!r}")
    return NORMS[key]


def _budget(value: float, option: str, norm: str = "inf") -> float:
    """A perturbation size: pixel units in [0,1] for L-inf, a non-negative L2 length for 2."""
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{option} must be a finite number >= 0, got {value}")
    if norm == "inf" and value > 1:
        raise UserError(f"{option} must be in [0,1] pixel units for the L-inf norm (e.g. 8/255 = {8 / 255:.4f}), "
                        f"got {value}")
    return value


def _open_fraction(value: float, option: str, what: str) -> float:
    if not (math.isfinite(value) and 0 < value < 1):
        raise UserError(f"{option} must be in (0,1) ({what}), got {value}")
    return value


def _class_count(model: Any, x: Any, who: str = "the model") -> int:
    """Number of classes of a classifier (from its output on one image); refuses regressors
    and dense (segmentation) outputs, for which attack losses are meaningless."""
    out = model_output(model, x[:1])
    if out.ndim != 2:
        raise UserError(f"attacks need a classifier (one score per class); {who} outputs {tuple(out.shape[1:])} "
                        "per image (a segmentation or dense model): choose a classifier")
    n = int(out.shape[1])
    if n < 2:
        raise UserError(f"attacks need a classifier (one score per class); {who} has one output (a regressor): "
                        "its cross-entropy gradient is zero, so every attack would report 100% robustness")
    return n


def _check_class(value: int | None, n: int, option: str = "--target") -> None:
    if value is not None and not 0 <= value < n:
        raise UserError(f"{option} {value} is out of range: the model has {n} classes (0..{n - 1})")


def _labels(model: Any, images: Any, targets: list[Any], n_classes: int, data: str) -> tuple[Any, str]:
    """True class labels when every sample has an int target (checked against the model's
    classes), else the model's predictions."""
    import torch

    from gradsum.adversarial._common import predict

    if targets and all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        bad = [t for t in targets if not 0 <= t < n_classes]
        if bad:
            raise UserError(f"--data {data} has label {bad[0]}, but the model has {n_classes} classes "
                            f"(0..{n_classes - 1}); use data whose labels are the model's classes")
        return torch.tensor(targets, dtype=torch.int64, device=images.device), "true"
    return predict(model, images), "predicted"


def _model_info(net: Any, weights: Path | None) -> dict[str, Any]:
    """What the summary JSON says about the model and where it ran (`device_info`)."""
    from gradsum.core.devices import device_info, model_device
    from gradsum.models import card_of

    card = card_of(net)
    device = model_device(net)
    return {"model": card.spec if card is not None else None, "weights": str(weights) if weights else None,
            "preprocessing": card.describe() if card is not None else None, "runtime": device_info(device)}


def _examples_figure(clean: Any, adv: Any, clean_pred: Any, adv_pred: Any, n: int = 6, amplify: float = 10.0) -> Any:
    import torch

    from gradsum.features._plot import tile_figure

    n = min(n, clean.shape[0])
    diff = adv[:n] - clean[:n]
    tiles, titles = [], []
    for i in range(n):
        tiles += [clean[i], adv[i], (amplify * diff[i] + 0.5).clamp(0, 1)]
        titles += [f"clean: {int(clean_pred[i])}", f"adversarial: {int(adv_pred[i])}", f"{amplify:g}x difference"]
    return tile_figure(torch.stack(tiles), titles=titles, ncols=3, tile_inches=1.6)


def _report(name: str, out: Path, model: Any, images: Any, adv: Any, labels: Any, ids: list[str],
            label_kind: str, settings: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    import pandas as pd

    from gradsum.adversarial._common import predict
    from gradsum.run.store import save_figure, write_json

    # one copy each from the device, then everything on the CPU
    clean_pred, adv_pred = predict(model, images).cpu(), predict(model, adv).cpu()
    images, adv, labels = images.detach().cpu(), adv.detach().cpu(), labels.cpu()
    d = (adv - images).flatten(1)
    table = pd.DataFrame({
        "id": ids, "label": labels.tolist(), "clean_pred": clean_pred.tolist(), "adv_pred": adv_pred.tolist(),
        "changed": (clean_pred != adv_pred).tolist(), "linf": d.abs().max(1).values.tolist(), "l2": d.norm(dim=1).tolist(),
        **(extra or {}),
    })
    figure = _examples_figure(images, adv, clean_pred, adv_pred)
    clean_acc = float((clean_pred == labels).float().mean())
    adv_acc = float((adv_pred == labels).float().mean())
    summary = {"attack": name, **settings, "images": len(ids), "labels": label_kind,
               "clean_accuracy": clean_acc, "adversarial_accuracy": adv_acc,
               "changed_rate": float((clean_pred != adv_pred).float().mean())}
    png = out / f"{name}.png"
    with staged_output(out) as stage:
        write_csv(stage / f"{name}.csv", table)
        save_figure(stage / png.name, figure)
        write_json(stage / f"{name}.json", summary)
    typer.echo(f"{name}: accuracy ({label_kind} labels) {clean_acc:.3f} -> {adv_acc:.3f} on {len(ids)} images; "
               f"prediction changed for {summary['changed_rate']:.3f}; wrote {png}")


def _setup(model: str | None, weights: Path | None, num_classes: int | None, normalize: str, mean: str | None,
           std: str | None, output: str | None, trust: bool, data: str, size: str | None,
           limit: int, resize: str | None = None, device: Any = None) -> tuple[Any, Any, list[str], list[Any], int]:
    """Model and images on `device`, images the first `limit` of --data at --size or the
    checkpoint's input size, reached with --resize; ids, targets and the model's number of
    classes; every check done, nothing written."""
    hw, resize = size_options(size, resize)
    positive(limit, "--limit")
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust,
                     device=device)
    images, ids, targets = load_images(data, hw, limit, resize=resize, default_size=card_size(net))
    images = images.to(device) if device is not None else images
    return net, images, ids, targets, _class_count(net, images)


@attack_app.command("fgsm")
@user_errors
def fgsm(
    data: str = typer.Option(..., "--data", help="Data SPEC, e.g. digits:split=test or roads:200:task=pothole."),
    out: Path = typer.Option(..., "--out", help="Run folder for fgsm.png/.csv/.json."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    eps: float = typer.Option(8 / 255, "--eps", help="L-inf budget in pixel units [0,1]."),
    target: int | None = TARGET_OPTION,
    limit: int = LIMIT_OPTION,
    size: str | None = SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Fast gradient sign method: x' = clip(x + eps * sign(grad loss)).

    Example: gradsum attack fgsm --weights runs/digits/best.pt --data digits:split=test --eps 0.03 --out runs/attack
    """
    import gradsum.adversarial as ga

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    _budget(eps, "--eps")
    net, images, ids, targets, n = _setup(model, weights, num_classes, normalize, mean, std, output, trust_pickle,
                                          data, size, limit, resize, device)
    _check_class(target, n)
    labels, kind = _labels(net, images, targets, n, data)
    adv = ga.fgsm(net, images, labels if target is None else target, eps=eps, targeted=target is not None)
    _report("fgsm", out, net, images, adv, labels, ids, kind, {"eps": eps, "target": target, **_model_info(net, weights)})


@attack_app.command("pgd")
@user_errors
def pgd(
    data: str = typer.Option(..., "--data", help="Data SPEC."),
    out: Path = typer.Option(..., "--out", help="Run folder for pgd.png/.csv/.json."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    eps: float = typer.Option(8 / 255, "--eps", help="Budget: pixel units for inf, L2 length for 2."),
    alpha: float = typer.Option(2 / 255, "--alpha", help="Step size."),
    steps: int = typer.Option(10, "--steps", help="Number of steps."),
    norm: str = typer.Option("inf", "--norm", help="inf | 2."),
    target: int | None = TARGET_OPTION,
    random_start: bool = typer.Option(True, "--random-start/--no-random-start", help="Start from a random point of the ball."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random start."),
    limit: int = LIMIT_OPTION,
    size: str | None = SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Projected gradient descent (L-inf or L2, targeted or not, random start).

    Example: gradsum attack pgd --model potholenet --weights best.pt --data roads:100:task=pothole --eps 0.03 --steps 20 --out runs/attack --device cuda
    """
    import gradsum.adversarial as ga

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    p = _norm(norm, "--norm")
    _budget(eps, "--eps", p)
    _budget(alpha, "--alpha", p)
    positive(steps, "--steps")
    net, images, ids, targets, n = _setup(model, weights, num_classes, normalize, mean, std, output, trust_pickle,
                                          data, size, limit, resize, device)
    _check_class(target, n)
    labels, kind = _labels(net, images, targets, n, data)
    adv = ga.pgd(net, images, labels if target is None else target, eps=eps, alpha=alpha, steps=steps, norm=p,
                 targeted=target is not None, random_start=random_start, seed=seed)
    _report("pgd", out, net, images, adv, labels, ids, kind,
            {"eps": eps, "alpha": alpha, "steps": steps, "norm": p, "target": target,
             "random_start": random_start, "seed": seed, **_model_info(net, weights)})


@attack_app.command("deepfool")
@user_errors
def deepfool(
    data: str = typer.Option(..., "--data", help="Data SPEC."),
    out: Path = typer.Option(..., "--out", help="Run folder for deepfool.png/.csv/.json."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    overshoot: float = typer.Option(0.02, "--overshoot", help="Overshoot factor (>= 0)."),
    max_iter: int = typer.Option(50, "--max-iter", help="Maximum iterations per image."),
    candidates: int | None = typer.Option(None, "--candidates", help="Top classes considered, 2..number of classes "
                                                                     "(default: 10, or all when fewer)."),
    limit: int = LIMIT_OPTION,
    size: str | None = SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """DeepFool: the smallest L2 step across the nearest linearised decision boundary.

    Example: gradsum attack deepfool --model digitsnet --weights best.pt --data digits:split=test --out runs/attack
    """
    import gradsum.adversarial as ga

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    if not (math.isfinite(overshoot) and overshoot >= 0):
        raise UserError(f"--overshoot must be a finite number >= 0, got {overshoot}")
    positive(max_iter, "--max-iter")
    if candidates is not None and candidates < 2:
        raise UserError(f"--candidates must be >= 2 (the predicted class and at least one other), got {candidates}")
    net, images, ids, targets, n = _setup(model, weights, num_classes, normalize, mean, std, output, trust_pickle,
                                          data, size, limit, resize, device)
    if candidates is not None and candidates > n:
        raise UserError(f"--candidates {candidates} is more than the model's {n} classes; give 2..{n}")
    cand = candidates if candidates is not None else min(10, n)
    labels, kind = _labels(net, images, targets, n, data)
    res = ga.deepfool(net, images, candidates=cand, overshoot=overshoot, max_iter=max_iter)
    _report("deepfool", out, net, images, res.adversarial, labels, ids, kind,
            {"overshoot": overshoot, "max_iter": max_iter, "candidates": cand, **_model_info(net, weights),
             "median_l2": float(res.norms.median())},
            {"iterations": res.iterations.tolist(), "fooled": res.fooled.tolist(), "perturbation_l2": res.norms.tolist()})


def _parse_transfer(items: list[str]) -> list[tuple[str, str | None, Path | None]]:
    """NAME=SPEC[@WEIGHTS] or NAME=@WEIGHTS (a gradsum checkpoint says its model)."""
    out: list[tuple[str, str | None, Path | None]] = []
    for item in items:
        name, _, rest = item.partition("=")
        spec, _, w = rest.partition("@")
        name, spec, w = name.strip(), spec.strip(), w.strip()
        if not name or not (spec or w):
            raise UserError(f"--transfer must look like NAME=SPEC[@WEIGHTS] or NAME=@CHECKPOINT, got {item!r}")
        if name == "model" or name in {n for n, _, _ in out}:
            raise UserError(f"--transfer name {name!r} is used twice ('model' is the attacked model); "
                            "give each model its own name")
        out.append((name, spec or None, Path(w) if w else None))
    return out


@attack_app.command("universal")
@user_errors
def universal(
    data: str = typer.Option(..., "--data", help="Data SPEC of the images v is computed on."),
    out: Path = typer.Option(..., "--out", help="Run folder for universal.png/.csv/.json (and transfer.*)."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    xi: float = typer.Option(10 / 255, "--xi", help="Radius of v: pixel units for inf, L2 length for 2."),
    p: str = typer.Option("inf", "--p", help="inf | 2."),
    delta: float = typer.Option(0.2, "--delta", help="Target fooling rate is 1 - delta."),
    max_passes: int = typer.Option(5, "--max-passes", help="Passes over the images at most."),
    limit: int = typer.Option(100, "--limit", help="Number of images."),
    eval_data: str | None = typer.Option(None, "--eval-data", help="Data SPEC for every fooling rate (default --data)."),
    transfer: list[str] = typer.Option([], "--transfer", help="Another model NAME=SPEC[@WEIGHTS] (or NAME=@CHECKPOINT) "
                                                              "for the transfer matrix (repeat)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image order."),
    size: str | None = SIZE_OPTION,
    resize: str | None = RESIZE_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017) and, with --transfer, the cross-model matrix.

    Example: gradsum attack universal --model potholenet --weights a.pt --data roads:200:task=pothole --xi 0.04 --transfer other=potholenet@b.pt --out runs/attack
    """
    import pandas as pd
    import torch

    import gradsum.adversarial as ga
    from gradsum.features._plot import tile_figure
    from gradsum.models import card_of
    from gradsum.run.store import save_figure, write_json

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    norm = _norm(p, "--p")
    _budget(xi, "--xi", norm)
    _open_fraction(delta, "--delta", "the target fooling rate is 1 - delta")
    positive(max_passes, "--max-passes")
    others = _parse_transfer(transfer)
    net, images, _, _, _ = _setup(model, weights, num_classes, normalize, mean, std, output, trust_pickle,
                                  data, size, limit, resize, device)
    need = math.ceil(1 / delta - 1e-9)
    if images.shape[0] < need:
        raise UserError(f"--delta {delta:g} needs at least {need} images (got {images.shape[0]}); "
                        "give a larger --limit or --data, or a larger --delta")
    evals = images
    if eval_data is not None:
        evals = load_images(eval_data, tuple(images.shape[-2:]), limit, resize=resize)[0].to(device)  # type: ignore[arg-type]
        _class_count(net, evals)
    models = {"model": net}
    for name, spec, w in others:  # every model is loaded and checked before the attack runs
        other = load_model(spec, w, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle,
                           announce=False, device=device)
        card = card_of(other)
        typer.echo(f"transfer model {name}: {card.describe() if card is not None else spec}")
        _class_count(other, images, f"transfer model {name!r}")
        models[name] = other
    kw = {"xi": xi, "p": norm, "delta": delta, "max_passes": max_passes, "seed": seed}
    res = ga.universal_perturbation(net, images, **kw)
    tm = ga.transfer_matrix(models, images, eval_images=evals, perturbations={"model": res.v}, **kw) if others else None
    v, first = res.v[0].cpu(), images[0].cpu()
    shown = torch.stack([(v / (2 * v.abs().max().clamp_min(1e-12)) + 0.5), (first + v).clamp(0, 1), first])
    figure = tile_figure(shown, titles=["v (scaled)", "image + v", "image"], ncols=3, tile_inches=2.0,
                         title=res.summary())
    with staged_output(out) as stage:
        save_figure(stage / "universal.png", figure)
        write_csv(stage / "universal.csv", pd.DataFrame({"pass": range(1, len(res.history) + 1),
                                                         "fooling_rate": res.history}))
        save_tensor(stage / "universal_v.pt", res.v)
        write_json(stage / "universal.json", {**_model_info(net, weights), **kw, "fooling_rate": res.fooling_rate,
                                              "target_rate": res.target_rate, "reached": res.reached,
                                              "passes": res.passes, "norm": res.norm, "images": images.shape[0]})
        if tm is not None:
            write_csv(stage / "transfer.csv", tm.table.reset_index())
            save_figure(stage / "transfer.png", tm.figure())
    typer.echo(f"{res.summary()}; wrote {out / 'universal.png'}")
    if tm is not None:
        typer.echo(f"transfer matrix (rows: computed on, columns: fooling rate on):\n{tm.table.round(3).to_string()}\n"
                   f"wrote {out / 'transfer.png'}")


@attack_app.command("fool")
@user_errors
def fool(
    target: int = typer.Option(..., "--target", help="Class the images should be assigned to."),
    out: Path = typer.Option(..., "--out", help="Run folder for fool.png/.csv."),
    model: str | None = MODEL_OPTION,
    weights: Path | None = WEIGHTS_OPTION,
    data: str | None = typer.Option(None, "--data", help="Start from these images (default: noise)."),
    n: int = typer.Option(4, "--n", help="Number of images."),
    size: str | None = typer.Option(None, "--size", help="Image size HxW (default: the checkpoint's input size; "
                                                         "noise start without one: 64x64); --data images are "
                                                         "brought to it with --resize."),
    resize: str | None = RESIZE_OPTION,
    level: float = typer.Option(0.99, "--level", help="Stop once p(target) exceeds this (0 < level < 1)."),
    alpha: float = typer.Option(1 / 255, "--alpha", help="Step size in pixel units."),
    max_steps: int = typer.Option(500, "--max-steps", help="Steps at most."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise start."),
    num_classes: int | None = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    output: str | None = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    device_: str = DEVICE_OPTION,
) -> None:
    """Fooling images: modify noise or real images until the model says --target with p > --level.

    Example: gradsum attack fool --model potholenet --weights best.pt --target 1 --data roads:4:task=pothole --out runs/attack
    """
    import pandas as pd
    import torch

    import gradsum.adversarial as ga
    from gradsum.run.store import save_figure

    check_out_dir(out)
    device = device_option(device_)  # before the model or any image is loaded
    positive(n, "--n")
    _open_fraction(level, "--level", "a probability")
    _budget(alpha, "--alpha")
    positive(max_steps, "--max-steps")
    hw, resize = size_options(size, resize)
    net = load_model(model, weights, num_classes, mean, std, normalize=normalize, output=output, trust=trust_pickle,
                     device=device)
    if data is not None:
        start, ids, _ = load_images(data, hw, n, resize=resize, default_size=card_size(net))
        start = start.to(device)
    else:
        hw = hw or card_size(net) or (64, 64)
        check_pixels_at_once(n, hw, "--n", "give a smaller --n or --size")
        start, ids = None, [f"noise{i}" for i in range(n)]
    probe = start[:1] if start is not None else torch.zeros(1, 3, *hw, device=device)  # type: ignore[misc]
    _check_class(target, _class_count(net, probe))
    if start is not None:
        res = ga.fooling_image(net, target, start=start, level=level, alpha=alpha, max_steps=max_steps)
    else:
        res = ga.fooling_image(net, torch.full((n,), target), image_size=hw, level=level,
                               alpha=alpha, max_steps=max_steps, seed=seed)
    table = pd.DataFrame({
        "id": ids, "target": res.target.tolist(), "probability": res.probability.tolist(),
        "steps": res.steps.tolist(), "reached": res.reached.tolist(),
        "linf": (res.images - res.start).flatten(1).abs().max(1).values.tolist()})
    png = out / "fool.png"
    with staged_output(out) as stage:
        write_csv(stage / "fool.csv", table)
        save_figure(stage / png.name, res.figure())
    typer.echo(f"{int(res.reached.sum())}/{len(ids)} images reached p(class {target}) >= {level}; "
               f"steps {res.steps.tolist()}; wrote {png}")


def register(app: typer.Typer) -> None:
    """Add `gradsum attack ...` to the CLI."""
    app.add_typer(attack_app, name="attack")
