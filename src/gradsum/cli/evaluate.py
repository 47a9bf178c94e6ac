"""`gradsum evaluate`: the methods x metrics benchmark table, with a report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradsum.cli._common import UserError, check_out_dir, layer_option, split_list, user_errors
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

EVALUATE_HELP = """Evaluate heatmap methods: localisation against ground-truth boxes (EBPG, Bbox),
faithfulness (Drop, Increase, deletion / insertion AUC), cost per image; one table and report.

Examples:

  gradsum evaluate --model potholenet --weights runs/demo/models/pothole_clean/checkpoints/epoch_005.pt --data roads:200:task=pothole --target 1 --only-with-boxes --methods gradcam,gradcam++,scorecam,integrated-gradients,rise,sise,adasise --out runs/eval

  gradsum evaluate --model torchvision:resnet50 --weights r50.pt --data voc:VOC2007:split=test --methods gradcam,rise --out runs/voc
"""

DEFAULT_METHODS = "gradcam,gradcam++,integrated-gradients"
DEFAULT_METRICS = "ebpg,bbox,drop,increase,deletion,insertion"


class Subset:
    """The items of a dataset at `indices` (keeps its label_table)."""

    def __init__(self, dataset: Any, indices: list[int]):
        self.dataset, self.indices = dataset, indices
        self.label_table = getattr(dataset, "label_table", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def with_boxes(dataset: Any, limit: int | None = None) -> Subset:
    """The samples that have at least one ground-truth box (up to `limit`)."""
    keep = []
    for i in range(len(dataset)):
        boxes = dataset[i].boxes
        if boxes is not None and len(boxes) > 0:
            keep.append(i)
            if limit is not None and len(keep) >= limit:
                break
    if not keep:
        raise UserError("no image of the data has ground-truth boxes; drop --only-with-boxes or use data with boxes")
    return Subset(dataset, keep)


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
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help="Comma-separated method names."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help="Comma-separated metric names."),
    layer: str = typer.Option("auto", "--layer"),
    target: int = typer.Option(None, "--target", help="Class to explain (default: the predicted class)."),
    only_with_boxes: bool = typer.Option(False, "--only-with-boxes", help="Evaluate only images that have boxes."),
    max_images: int = typer.Option(None, "--max-images"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", "-o"),
) -> None:
    import gradsum as gs
    from gradsum.report import ReportSpec, render_report
    from gradsum.report.sections_eval import evaluation_section

    names = split_list(methods)
    for name in names:
        gs.method_info(name)
    from gradsum.metrics.benchmark import METRICS

    wanted = split_list(metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; known: {', '.join(sorted(METRICS))}")
    check_out_dir(out)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {max_images}")
    dataset = gs.data.load_dataset(data)
    if len(dataset) == 0:
        raise UserError(f"--data {data} has no samples")
    if only_with_boxes:
        dataset = with_boxes(dataset, max_images)
    net = load_model(model, weights, num_classes, normalize=normalize, mean=mean, std=std, output=output,
                     trust=trust_pickle)
    model = model or gs.models.card_of(net).spec or "model"
    target = explained_target(model_output(net, dataset[0].image[None]), target, None)
    layer_spec = layer_option(net, layer)
    result = gs.metrics.benchmark(net, dataset, names, wanted, layer=layer_spec, target=target, batch_size=batch_size,
                                  max_images=max_images, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    spec = ReportSpec(f"Evaluation of {model} on {data}", "heatmap methods x metrics")
    evaluation_section(out, spec, result)
    spec.save(out)
    report = render_report(out)
    typer.echo(result.table().round(3).to_string())
    typer.echo(f"tables in {out}/tables; report: {report}")


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=EVALUATE_HELP)(user_errors(evaluate_command))
