"""The user's model on the command line: one set of options (--model, --weights,
--num-classes, --normalize, --mean/--std, --output, --trust-pickle) and one loader that every
command uses, plus the target a command explains on it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradsum.cli._common import UserError

__all__ = [
    "MODEL_HELP", "MODEL_OPTION", "WEIGHTS_OPTION", "NUM_CLASSES_OPTION", "NORMALIZE_OPTION", "MEAN_OPTION",
    "STD_OPTION", "OUTPUT_OPTION", "TRUST_OPTION", "load_model", "parse_output", "explained_target",
    "model_output", "DATA_TARGET_HELP", "data_target",
]

MODEL_HELP = ("Model SPEC: pilotnet | potholenet | digitsnet | torchvision:NAME (classification or segmentation, "
              "e.g. torchvision:resnet18, torchvision:fcn_resnet50) | timm:NAME | FILE.py:FACTORY. "
              "Default: the model recorded in --weights (checkpoints written by gradsum train).")
# one definition of each model option, shared by every command that loads a model
MODEL_OPTION = typer.Option(None, "--model", "-m", help=MODEL_HELP)
WEIGHTS_OPTION = typer.Option(None, "--weights", "-w",
                              help="Local weights file: a gradsum checkpoint (describes its model), a state dict, "
                                   "TorchScript, or a pickled model with --trust-pickle.")
NUM_CLASSES_OPTION = typer.Option(None, "--num-classes", help="Number of outputs (default: the checkpoint's, "
                                                               "else the architecture's).")
NORMALIZE_OPTION = typer.Option("auto", "--normalize",
                                help="Input normalisation put inside the model: auto (the checkpoint's, else the "
                                     "architecture's standard: ImageNet for torchvision) | imagenet | none.")
MEAN_OPTION = typer.Option(None, "--mean", help="Normalisation mean the model expects, one value or one per channel "
                                                "(comma list); with --std. Images stay in [0,1].")
STD_OPTION = typer.Option(None, "--std", help="Normalisation std, with --mean (comma list).")
OUTPUT_OPTION = typer.Option(None, "--output",
                             help="Which tensor of a dict/tuple model output to explain: a key or an index "
                                  "(default: 'out' for segmentation models, else the only tensor).")
TRUST_OPTION = typer.Option(False, "--trust-pickle",
                            help="Allow a weights file that is a whole pickled model (unpickling runs code "
                                 "from the file: only for files you trust).")


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{name} must be one number or one per channel, comma-separated; got {text!r}") from None
    if not values:
        raise UserError(f"{name} is empty; give one number or one per channel")
    return values


def parse_output(text: str | None) -> str | int | None:
    """--output: an integer text is an index, anything else a key."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def load_model(model: str | None, weights: Path | None, num_classes: int | None = None, *,
               normalize: str = "auto", mean: str | None = None, std: str | None = None,
               output: str | None = None, trust: bool = False, new_head: bool = False,
               announce: bool = True, device: Any = None) -> Any:
    """Build the model of a command (eval mode, card attached, on `device` when given) and,
    with `announce`, print what it is and how its input is normalised as the command's first
    line."""
    import gradsum.models as gm

    if model is None and weights is None:
        raise UserError("give --model SPEC (e.g. --model torchvision:resnet18) or --weights FILE of a gradsum checkpoint")
    if normalize not in ("auto", "imagenet", "none"):
        raise UserError(f"--normalize must be auto, imagenet or none; got {normalize!r}")
    if (mean is None) != (std is None):
        raise UserError("give both --mean and --std, or neither")
    if num_classes is not None and num_classes < 1:
        raise UserError(f"--num-classes must be >= 1, got {num_classes}")
    if weights is not None and not Path(weights).is_file():
        what = "is a folder, not a weights file" if Path(weights).is_dir() else "not found"
        raise UserError(f"--weights {weights}: {what}")
    net = gm.build(model, num_classes=num_classes, weights=weights, trust=trust, normalize=normalize,
                   mean=_floats(mean, "--mean"), std=_floats(std, "--std"), output=parse_output(output),
                   new_head=new_head)
    if device is not None:
        net = net.to(device)
    if announce:
        where = f"; on {device}" if device is not None and str(device) != "cpu" else ""
        typer.echo(f"model: {gm.card_of(net).describe()}{where}")
    return net


def model_output(net: Any, x: Any) -> Any:
    """The model's (selected) output on `x`, without gradients; a model that refuses the
    input (e.g. a ViT given the wrong size) is a one-line error naming the size."""
    import torch

    from gradsum.core.probe import preserved_state

    try:
        with torch.no_grad(), preserved_state(net):
            return net(x)
    except (RuntimeError, AssertionError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        size = f"{x.shape[-2]}x{x.shape[-1]}"
        raise UserError(f"the model cannot run on {x.shape[1]}-channel images of {size} ({detail}); "
                        "pass --size HxW with the size it was trained on") from None


def explained_target(output: Any, target: int | None, sign: int | None) -> Any:
    """What a command explains on a model whose output on one image is `output`:
    a segmentation output (B,K,H,W) needs --target CATEGORY (the pixels predicted as it);
    a one-output model is a regressor (--sign +1/-1); otherwise --target is a class index
    (default: the predicted class)."""
    import gradsum as gs

    if output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
        k = output.shape[1]
        if target is None:
            raise UserError(f"this is a segmentation model ({k} categories): give --target CATEGORY (0..{k - 1}); "
                            "the heatmap explains that category's score over the pixels predicted as it")
        if not 0 <= target < k:
            raise UserError(f"--target {target} is out of range: the model has {k} categories (0..{k - 1})")
        if sign is not None:
            raise UserError("--sign is for regression models (one output); a segmentation target has no sign")
        return gs.SegmentationTarget(target)
    n = output.flatten(1).shape[1]
    if n == 1:
        if target not in (None, 0):
            raise UserError(f"--target {target} is out of range: the model has one output (a regressor); "
                            "use --sign +1/-1 to choose the direction")
        if sign not in (None, 1, -1):
            raise UserError(f"--sign must be 1 or -1, got {sign}")
        return gs.RegressionTarget(0, sign=sign or 1)
    if sign is not None:
        raise UserError(f"--sign is for regression models (one output); this model has {n} outputs: "
                        "use --target CLASS to choose what to explain")
    if target is not None and not 0 <= target < n:
        raise UserError(f"--target {target} is out of range: the model has {n} outputs (0..{n - 1})")
    return target


DATA_TARGET_HELP = ("What to explain: a class index, a class NAME (e.g. person on VOC), 'label' (each image's own "
                    "label; multi-label data such as VOC: every class present in the image), or nothing for the "
                    "predicted class (output 0 for regressors).")


def data_target(text: str | None, dataset: Any, net: Any, data: str) -> Any:
    """--target of a dataset command -> the target spec: None, "label", a class index (a
    class NAME is looked up in the dataset's classes, then the model's class names), or a
    Target for segmentation / regression models (as `explained_target`). 'label' on data
    without labels, an unknown name or an index out of range is a one-line error."""
    sample = dataset[0]
    from gradsum.core.devices import model_device

    output = model_output(net, sample.image[None].to(model_device(net)))
    if text is None or text == "":
        return explained_target(output, None, None)
    if text == "label":
        if sample.target is None:
            raise UserError(f"--target label: the data {data} has no labels (no image target); explain the "
                            "prediction (drop --target) or give a class index or name")
        n = output.flatten(1).shape[1]
        import torch

        label = torch.as_tensor(sample.target)
        if label.ndim == 1 and label.numel() != n:
            raise UserError(f"--target label: the images of {data} have {label.numel()}-class multi-hot labels "
                            f"but the model has {n} outputs")
        return "label"
    try:
        index = int(text)
    except ValueError:
        import gradsum as gs

        names = list(getattr(dataset, "classes", None) or gs.models.card_of(net).class_names or [])
        if text not in names:
            import difflib

            close = difflib.get_close_matches(text, names, n=3)
            known = f"; did you mean {', '.join(close)}?" if close else (
                f"; the classes are {', '.join(names[:25])}" if names else
                "; neither the data nor the model names its classes: give a class index")
            raise UserError(f"--target {text!r} is not a class index, 'label' or a class name{known}") from None
        index = names.index(text)
    return explained_target(output, index, None)
