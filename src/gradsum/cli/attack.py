"""`gradsum attack ...`: FGSM, PGD, DeepFool, universal perturbations (with a transfer
matrix) and fooling images, written as PNG + CSV into a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import UserError, user_errors
from .features import (
    MODEL_HELP,
    load_images,
    load_model,
    parse_size,
    save_tensor,
    write_csv,
)

__all__ = ["register", "fgsm", "pgd", "deepfool", "universal", "fool"]

attack_app = typer.Typer(
    help="How models break: FGSM, PGD, DeepFool, universal perturbations, fooling images (pixels in [0,1]).",
    no_args_is_help=True,
)

_MEAN_HELP = "Input normalisation mean the model expects (comma list); it is put inside the model so eps stay in pixel units."
_STD_HELP = "Input normalisation std (comma list), with --mean."
# options shared by every attack command (one definition, one help text)
MODEL_OPTION = typer.Option(..., "--model", help=MODEL_HELP)
WEIGHTS_OPTION = typer.Option(None, "--weights", help="Weights file (state dict).")
LIMIT_OPTION = typer.Option(64, "--limit", help="Number of images.")
SIZE_OPTION = typer.Option(None, "--size", help="Resize images to HxW.")
MEAN_OPTION = typer.Option(None, "--mean", help=_MEAN_HELP)
STD_OPTION = typer.Option(None, "--std", help=_STD_HELP)
NUM_CLASSES_OPTION = typer.Option(None, "--num-classes", help="Outputs of the model(s), if not their default.")
TARGET_OPTION = typer.Option(None, "--target", help="Targeted attack towards this class.")


def _labels(model: Any, images: Any, targets: list[Any]) -> tuple[Any, str]:
    """True class labels when every sample has an int target, else the model's predictions."""
    import torch

    from gradsum.adversarial._common import predict

    if targets and all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        return torch.tensor(targets, dtype=torch.int64), "true"
    return predict(model, images), "predicted"


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

    clean_pred = predict(model, images)
    adv_pred = predict(model, adv)
    d = (adv - images).flatten(1)
    table = pd.DataFrame({
        "id": ids, "label": labels.tolist(), "clean_pred": clean_pred.tolist(), "adv_pred": adv_pred.tolist(),
        "changed": (clean_pred != adv_pred).tolist(), "linf": d.abs().max(1).values.tolist(), "l2": d.norm(dim=1).tolist(),
        **(extra or {}),
    })
    write_csv(out / f"{name}.csv", table)
    png = save_figure(out / f"{name}.png", _examples_figure(images, adv, clean_pred, adv_pred))
    clean_acc = float((clean_pred == labels).float().mean())
    adv_acc = float((adv_pred == labels).float().mean())
    summary = {"attack": name, **settings, "images": len(ids), "labels": label_kind,
               "clean_accuracy": clean_acc, "adversarial_accuracy": adv_acc,
               "changed_rate": float((clean_pred != adv_pred).float().mean())}
    write_json(out / f"{name}.json", summary)
    typer.echo(f"{name}: accuracy ({label_kind} labels) {clean_acc:.3f} -> {adv_acc:.3f} on {len(ids)} images; "
               f"prediction changed for {summary['changed_rate']:.3f}; wrote {png}")



@attack_app.command("fgsm")
@user_errors
def fgsm(
    model: str = MODEL_OPTION,
    data: str = typer.Option(..., "--data", help="Data SPEC, e.g. digits:split=test or roads:200:task=pothole."),
    out: Path = typer.Option(..., "--out", help="Run folder for fgsm.png/.csv/.json."),
    weights: Path | None = WEIGHTS_OPTION,
    eps: float = typer.Option(8 / 255, "--eps", help="L-inf budget in pixel units [0,1]."),
    target: int | None = TARGET_OPTION,
    limit: int = LIMIT_OPTION,
    size: str | None = SIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
) -> None:
    """Fast gradient sign method: x' = clip(x + eps * sign(grad loss)).

    Example: gradsum attack fgsm --model digitsnet --weights runs/digits/best.pt --data digits:split=test --eps 0.03 --out runs/attack
    """
    import gradsum.adversarial as ga

    net = load_model(model, weights, num_classes, mean, std)
    images, ids, targets = load_images(data, parse_size(size), limit)
    labels, kind = _labels(net, images, targets)
    adv = ga.fgsm(net, images, labels if target is None else target, eps=eps, targeted=target is not None)
    _report("fgsm", out, net, images, adv, labels, ids, kind, {"eps": eps, "target": target, "model": model})


@attack_app.command("pgd")
@user_errors
def pgd(
    model: str = MODEL_OPTION,
    data: str = typer.Option(..., "--data", help="Data SPEC."),
    out: Path = typer.Option(..., "--out", help="Run folder for pgd.png/.csv/.json."),
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
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
) -> None:
    """Projected gradient descent (L-inf or L2, targeted or not, random start).

    Example: gradsum attack pgd --model potholenet --weights best.pt --data roads:100:task=pothole --eps 0.03 --steps 20 --out runs/attack
    """
    import gradsum.adversarial as ga

    net = load_model(model, weights, num_classes, mean, std)
    images, ids, targets = load_images(data, parse_size(size), limit)
    labels, kind = _labels(net, images, targets)
    adv = ga.pgd(net, images, labels if target is None else target, eps=eps, alpha=alpha, steps=steps, norm=norm,
                 targeted=target is not None, random_start=random_start, seed=seed)
    _report("pgd", out, net, images, adv, labels, ids, kind,
            {"eps": eps, "alpha": alpha, "steps": steps, "norm": norm, "target": target,
             "random_start": random_start, "seed": seed, "model": model})


@attack_app.command("deepfool")
@user_errors
def deepfool(
    model: str = MODEL_OPTION,
    data: str = typer.Option(..., "--data", help="Data SPEC."),
    out: Path = typer.Option(..., "--out", help="Run folder for deepfool.png/.csv/.json."),
    weights: Path | None = WEIGHTS_OPTION,
    overshoot: float = typer.Option(0.02, "--overshoot", help="Overshoot factor."),
    max_iter: int = typer.Option(50, "--max-iter", help="Maximum iterations per image."),
    candidates: int = typer.Option(10, "--candidates", help="Top classes considered."),
    limit: int = LIMIT_OPTION,
    size: str | None = SIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
) -> None:
    """DeepFool: the smallest L2 step across the nearest linearised decision boundary.

    Example: gradsum attack deepfool --model digitsnet --weights best.pt --data digits:split=test --out runs/attack
    """
    import gradsum.adversarial as ga

    net = load_model(model, weights, num_classes, mean, std)
    images, ids, targets = load_images(data, parse_size(size), limit)
    labels, kind = _labels(net, images, targets)
    res = ga.deepfool(net, images, candidates=candidates, overshoot=overshoot, max_iter=max_iter)
    _report("deepfool", out, net, images, res.adversarial, labels, ids, kind,
            {"overshoot": overshoot, "max_iter": max_iter, "candidates": candidates, "model": model,
             "median_l2": float(res.norms.median())},
            {"iterations": res.iterations.tolist(), "fooled": res.fooled.tolist(), "perturbation_l2": res.norms.tolist()})


def _parse_transfer(items: list[str]) -> list[tuple[str, str, Path | None]]:
    out = []
    for item in items:
        name, _, rest = item.partition("=")
        if not rest:
            raise UserError(f"--transfer must look like NAME=SPEC[@WEIGHTS], got {item!r}")
        spec, _, w = rest.partition("@")
        out.append((name.strip(), spec.strip(), Path(w) if w else None))
    return out


@attack_app.command("universal")
@user_errors
def universal(
    model: str = MODEL_OPTION,
    data: str = typer.Option(..., "--data", help="Data SPEC of the images v is computed on."),
    out: Path = typer.Option(..., "--out", help="Run folder for universal.png/.csv/.json (and transfer.*)."),
    weights: Path | None = WEIGHTS_OPTION,
    xi: float = typer.Option(10 / 255, "--xi", help="Radius of v: pixel units for inf, L2 length for 2."),
    p: str = typer.Option("inf", "--p", help="inf | 2."),
    delta: float = typer.Option(0.2, "--delta", help="Target fooling rate is 1 - delta."),
    max_passes: int = typer.Option(5, "--max-passes", help="Passes over the images at most."),
    limit: int = typer.Option(100, "--limit", help="Number of images."),
    eval_data: str | None = typer.Option(None, "--eval-data", help="Data SPEC for every fooling rate (default --data)."),
    transfer: list[str] = typer.Option([], "--transfer", help="Another model NAME=SPEC[@WEIGHTS] for the transfer matrix (repeat)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image order."),
    size: str | None = SIZE_OPTION,
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
) -> None:
    """Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017) and, with --transfer, the cross-model matrix.

    Example: gradsum attack universal --model potholenet --weights a.pt --data roads:200:task=pothole --xi 0.04 --transfer other=potholenet@b.pt --out runs/attack
    """
    import pandas as pd
    import torch

    import gradsum.adversarial as ga
    from gradsum.features._plot import tile_figure
    from gradsum.run.store import save_figure, write_json

    hw = parse_size(size)
    others = _parse_transfer(transfer)
    net = load_model(model, weights, num_classes, mean, std)
    images, _, _ = load_images(data, hw, limit)
    evals = images if eval_data is None else load_images(eval_data, hw, limit)[0]
    kw = {"xi": xi, "p": p, "delta": delta, "max_passes": max_passes, "seed": seed}
    res = ga.universal_perturbation(net, images, **kw)
    v = res.v[0]
    shown = torch.stack([(v / (2 * v.abs().max().clamp_min(1e-12)) + 0.5), (images[0] + v).clamp(0, 1), images[0]])
    png = save_figure(out / "universal.png", tile_figure(shown, titles=["v (scaled)", "image + v", "image"], ncols=3,
                                                         tile_inches=2.0, title=res.summary()))
    write_csv(out / "universal.csv", pd.DataFrame({"pass": range(1, len(res.history) + 1), "fooling_rate": res.history}))
    save_tensor(out / "universal_v.pt", res.v)
    write_json(out / "universal.json", {"model": model, **kw, "fooling_rate": res.fooling_rate,
                                        "target_rate": res.target_rate, "reached": res.reached, "passes": res.passes,
                                        "norm": res.norm, "images": images.shape[0]})
    typer.echo(f"{res.summary()}; wrote {png}")
    if transfer:
        models = {"model": net}
        for name, spec, w in others:
            models[name] = load_model(spec, w, num_classes, mean, std)
        tm = ga.transfer_matrix(models, images, eval_images=evals, perturbations={"model": res.v}, **kw)
        table = tm.table.reset_index()
        write_csv(out / "transfer.csv", table)
        png = save_figure(out / "transfer.png", tm.figure())
        typer.echo(f"transfer matrix (rows: computed on, columns: fooling rate on):\n{tm.table.round(3).to_string()}\nwrote {png}")


@attack_app.command("fool")
@user_errors
def fool(
    model: str = MODEL_OPTION,
    target: int = typer.Option(..., "--target", help="Class the images should be assigned to."),
    out: Path = typer.Option(..., "--out", help="Run folder for fool.png/.csv."),
    weights: Path | None = WEIGHTS_OPTION,
    data: str | None = typer.Option(None, "--data", help="Start from these images (default: noise)."),
    n: int = typer.Option(4, "--n", help="Number of images."),
    size: str | None = typer.Option(None, "--size", help="Image size HxW (noise start: default 64x64)."),
    level: float = typer.Option(0.99, "--level", help="Stop once p(target) exceeds this."),
    alpha: float = typer.Option(1 / 255, "--alpha", help="Step size in pixel units."),
    max_steps: int = typer.Option(500, "--max-steps", help="Steps at most."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise start."),
    mean: str | None = MEAN_OPTION,
    std: str | None = STD_OPTION,
    num_classes: int | None = NUM_CLASSES_OPTION,
) -> None:
    """Fooling images: modify noise or real images until the model says --target with p > --level.

    Example: gradsum attack fool --model potholenet --weights best.pt --target 1 --data roads:4:task=pothole --out runs/attack
    """
    import pandas as pd

    import gradsum.adversarial as ga
    from gradsum.run.store import save_figure

    net = load_model(model, weights, num_classes, mean, std)
    hw = parse_size(size)
    if data is not None:
        start, ids, _ = load_images(data, hw, n)
        res = ga.fooling_image(net, target, start=start, level=level, alpha=alpha, max_steps=max_steps)
    else:
        ids = [f"noise{i}" for i in range(n)]
        import torch

        res = ga.fooling_image(net, torch.full((n,), target), image_size=hw or (64, 64), level=level,
                               alpha=alpha, max_steps=max_steps, seed=seed)
    write_csv(out / "fool.csv", pd.DataFrame({
        "id": ids, "target": res.target.tolist(), "probability": res.probability.tolist(),
        "steps": res.steps.tolist(), "reached": res.reached.tolist(),
        "linf": (res.images - res.start).flatten(1).abs().max(1).values.tolist()}))
    png = save_figure(out / "fool.png", res.figure())
    typer.echo(f"{int(res.reached.sum())}/{len(ids)} images reached p(class {target}) >= {level}; "
               f"steps {res.steps.tolist()}; wrote {png}")


def register(app: typer.Typer) -> None:
    """Add `gradsum attack ...` to the CLI."""
    app.add_typer(attack_app, name="attack")
