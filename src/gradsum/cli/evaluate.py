"""`gradsum evaluate`: the methods x metrics benchmark table over a dataset, resumable, with a report."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from gradsum.cli._common import (
    AUTOCAST_OPTION,
    DATA_SIZE_OPTION,
    DATA_WORKERS_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    GPUS_PER_WORKER_OPTION,
    PRECISION_OPTION,
    RAY_ADDRESS_OPTION,
    RESIZE_OPTION,
    WORKERS_OPTION,
    UserError,
    check_methods_build,
    check_out_dir,
    data_size,
    data_workers,
    device_option,
    engine_option,
    layer_option,
    method_options,
    precision_options,
    progress_bars,
    split_list,
    user_errors,
)
from gradsum.cli._model import (
    DATA_TARGET_HELP,
    MEAN_OPTION,
    MODEL_OPTION,
    NORMALIZE_OPTION,
    NUM_CLASSES_OPTION,
    OUTPUT_OPTION,
    STD_OPTION,
    TRUST_OPTION,
    WEIGHTS_OPTION,
    data_target,
    load_model,
)

EVALUATE_HELP = """Evaluate heatmap methods: localisation against ground-truth boxes (EBPG, Bbox),
faithfulness (Drop, Increase, deletion / insertion AUC), cost per image; one table and report.
Resumable: each method is written as it finishes, in shards; re-run the same command after an
interruption. Images of different sizes are evaluated at their own size (batched by size)
unless --size is given.

Examples:

  gradsum evaluate --model potholenet --weights runs/demo/models/pothole_clean/checkpoints/epoch_005.pt --data roads:200:task=pothole --target 1 --only-with-boxes --methods gradcam,gradcam++,scorecam,integrated-gradients,rise,sise,adasise --option rise.n_masks=1000 --out runs/eval

  gradsum evaluate --model torchvision:resnet50 --weights r50.pt --data voc:VOC2007:split=test --target label --methods gradcam,rise --out runs/voc
"""

DEFAULT_METHODS = "gradcam,gradcam++,integrated-gradients"
DEFAULT_METRICS = "ebpg,bbox,drop,increase,deletion,insertion"


def evaluate_command(
    data: str = typer.Option(..., "--data", "-d", help="roads:N:task=pothole | voc:DIR | ... (boxes for localisation)"),
    model: str = MODEL_OPTION,
    weights: Path = WEIGHTS_OPTION,
    num_classes: int = NUM_CLASSES_OPTION,
    normalize: str = NORMALIZE_OPTION,
    mean: str = MEAN_OPTION,
    std: str = STD_OPTION,
    output: str = OUTPUT_OPTION,
    trust_pickle: bool = TRUST_OPTION,
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", "--method", help="Comma-separated method names."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help="Comma-separated metric names."),
    option: list[str] = typer.Option(
        None, "--option", help="A method or metric option, NAME.KEY=VALUE, repeatable: e.g. --option "
                               "rise.n_masks=2000 --option integrated-gradients.steps=32 --option deletion.step=8."),
    layer: str = typer.Option("auto", "--layer"),
    target: str = typer.Option(None, "--target", help=DATA_TARGET_HELP),
    only_with_boxes: bool = typer.Option(False, "--only-with-boxes", help="Evaluate only images that have boxes."),
    max_images: int = typer.Option(None, "--max-images", help="Evaluate the first N images (with boxes, with "
                                                              "--only-with-boxes)."),
    size: str = DATA_SIZE_OPTION,
    data_workers_: int = DATA_WORKERS_OPTION,
    resize: str | None = RESIZE_OPTION,
    batch_size: int = typer.Option(8, "--batch-size"),
    shard_size: int = typer.Option(64, "--shard-size", help="Images per resumable shard."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", "-o"),
    device_: str = DEVICE_OPTION,
    engine: str = ENGINE_OPTION,
    ray_address: str = RAY_ADDRESS_OPTION,
    workers_: int = WORKERS_OPTION,
    gpus_per_worker: float = GPUS_PER_WORKER_OPTION,
    precision: str = PRECISION_OPTION,
    autocast: str = AUTOCAST_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different job already in --out."),
    fps: float = typer.Option(10.0, "--fps", help="Steering models: frames per second of the drive, for autonomy."),
    autonomy_threshold: float = typer.Option(0.1, "--autonomy-threshold",
                                             help="Steering models: error beyond which a human takes over (target "
                                                  "units), for autonomy."),
) -> None:
    import gradsum as gs
    from gradsum.data.subsets import Subset, with_boxes
    from gradsum.metrics.benchmark import METRICS
    from gradsum.report import ReportSpec, render_report
    from gradsum.report.sections_eval import evaluation_section
    from gradsum.run import evaluate_job
    from gradsum.run.store import file_sha256

    names = split_list(methods)
    if not names:
        raise UserError("--methods is empty; give at least one method name (see `gradsum methods`)")
    for name in names:
        gs.method_info(name)
    wanted = split_list(metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; known: {', '.join(sorted(METRICS))}")
    if not wanted:
        raise UserError(f"--metrics is empty; known: {', '.join(sorted(METRICS))}")
    metric_opts = metric_options(option, wanted)
    options = method_options([o for o in option or [] if o.partition(".")[0].strip() not in METRICS], names)
    if fps <= 0 or autonomy_threshold < 0:
        raise UserError(f"--fps must be > 0 and --autonomy-threshold >= 0; got {fps:g} and {autonomy_threshold:g}")
    check_out_dir(out)
    device = device_option(device_)
    runner = engine_option(engine, ray_address, workers_, gpus_per_worker, device)
    exactness = precision_options(precision, autocast)
    if batch_size < 1 or shard_size < 1:
        raise UserError(f"--batch-size and --shard-size must be >= 1, got {batch_size} and {shard_size}")
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {max_images}")
    sizing = data_size(size, resize)
    workers = data_workers(data_workers_ if data_workers_ is not None or engine == "local" else 0)
    dataset = gs.data.load_dataset(data, **sizing)
    if len(dataset) == 0:
        raise UserError(f"--data {data} has no samples")
    if only_with_boxes:
        dataset = with_boxes(dataset, max_images)
    elif max_images is not None and max_images < len(dataset):
        dataset = Subset(dataset, range(max_images))
    net = load_model(model, weights, num_classes, normalize=normalize, mean=mean, std=std, output=output,
                     trust=trust_pickle, device=device)
    model = model or gs.models.card_of(net).spec or "model"
    spec_target = data_target(target, dataset, net, data)
    layer_spec = layer_option(net, layer)
    check_methods_build(net, names, layer_spec, options)
    card = gs.models.card_of(net)
    # the weights' content and every data choice identify the job (a changed file is never resumed into)
    config = {"model": model, "weights": str(weights) if weights else None,
              "weights_sha256": file_sha256(weights) if weights else None, "data": data, "size": sizing,
              "only_with_boxes": only_with_boxes, "max_images": max_images, "images": len(dataset),
              "card": card.to_dict() if card else None}
    bar, update = progress_bars(names)
    with bar, contextlib.closing(runner) if hasattr(runner, "close") else contextlib.nullcontext():
        result = evaluate_job(net, dataset, out, methods=names, metrics=wanted, layer=layer_spec,
                              target=spec_target, batch_size=batch_size, shard_size=shard_size,
                              method_options=options, metric_options=metric_opts, num_workers=workers, device=device, **exactness, engine=runner,
                              seed=seed, config=config,
                              overwrite=overwrite, progress=update)
    spec = ReportSpec(f"Evaluation of {model} on {data}", "heatmap methods x metrics")
    evaluation_section(out, spec, result, resized=sizing or None)
    steering = _steering(net, dataset, fps, autonomy_threshold, batch_size, device)
    if steering is not None:
        typer.echo(f"steering: MSE {steering['mse']:.4g}; autonomy {steering['autonomy_percent']:.1f}% "
                   f"({steering['interventions']} interventions of 6 s in {steering['seconds']:.0f} s at {fps:g} "
                   f"frames/s, threshold {autonomy_threshold:g})")
        spec.text(f"Steering over the {len(dataset)} frames in their order: MSE {steering['mse']:.4g}; NVIDIA's "
                  f"autonomy {steering['autonomy_percent']:.1f}% ({steering['interventions']} interventions of 6 s, "
                  f"{fps:g} frames/s, a take-over when the error exceeds {autonomy_threshold:g}).")
    spec.save(out)
    report = render_report(out)
    typer.echo(result.table().round(3).to_string())
    typer.echo(f"tables in {out}/tables; report: {report}")


def metric_options(values: list[str] | None, metrics: list[str]) -> dict[str, dict[str, Any]]:
    """The --option METRIC.KEY=VALUE entries (e.g. deletion.step=8) -> {metric: {key: value}},
    each checked against the metric's options; the metric must be among --metrics (deletion and
    insertion, drop and increase share their options)."""
    from gradsum.cli._common import option_value
    from gradsum.metrics.benchmark import _PARTNER, METRICS, check_metric_options

    computed = set(metrics) | {_PARTNER[m] for m in metrics if m in _PARTNER}
    chosen: dict[str, dict[str, Any]] = {}
    for text in values or []:
        head, eq, value = text.partition("=")
        name, dot, key = head.strip().partition(".")
        if name not in METRICS:
            continue
        if not eq or not dot or not key.strip():
            raise UserError(f"--option must look like METRIC.KEY=VALUE (e.g. deletion.step=8); got {text!r}")
        if name not in computed:
            raise UserError(f"--option {text!r} is for the metric {name}, which is not among --metrics "
                            f"({', '.join(metrics)})")
        check_metric_options(name, {key.strip(): None})
        chosen.setdefault(name, {})[key.strip()] = option_value(value)
    return chosen


def _steering(net: Any, dataset: Any, fps: float, threshold: float, batch_size: int, device: Any) -> Any:
    """MSE and autonomy when the model is a regressor (one output) and the data has float
    targets (a driving log, steering scenes); None otherwise."""
    import gradsum as gs
    from gradsum.cli._model import model_output

    first = dataset[0]
    if not isinstance(first.target, float) or model_output(net, first.image[None].to(device)).flatten(1).shape[1] != 1:
        return None
    return gs.metrics.steering_metrics(net, dataset, fps=fps, threshold=threshold, batch_size=batch_size,
                                       device=device)


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=EVALUATE_HELP)(user_errors(evaluate_command))
