"""Bad inputs against gradsum's public Python API: does every mistake get a clear error?

Each case calls one public function on a tiny model and tiny tensors with one wrong (or
valid but unusual) argument and classifies what happens:

- clear:    a ValueError / TypeError / FileNotFoundError raised by gradsum itself (the
            innermost frame is a `raise` in gradsum's source) whose message names the
            argument or the offending value;
- obscure:  any other exception (RuntimeError / IndexError / AttributeError from inside
            torch, numpy, scikit-learn, ...; a ValueError / TypeError raised by a library;
            a gradsum message that does not name the argument), or a time-out;
- silent:   no exception although the input is invalid (or, for a valid input, a result
            that fails its check);
- works:    a valid input that worked (e.g. target=np.int64(3), float64 images);
- rejected: a valid input that raised.

    python benchmarks/api_bad_inputs.py              # the table
    python benchmarks/api_bad_inputs.py --details    # + every case that is not clear/works
    python benchmarks/api_bad_inputs.py --area metrics --details

Run it against another checkout with PYTHONPATH=<checkout>/src (the first line printed is
the gradsum module that was imported). Peers are not imported.
"""
from __future__ import annotations

import argparse
import contextlib
import linecache
import os
import signal
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import gradsum as gs

GS_DIR = os.path.dirname(os.path.abspath(gs.__file__))
CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError)
TIME_LIMIT = 20.0  # seconds per case


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    area: str
    name: str
    fn: Callable[[], Any]
    names: tuple[str, ...] = ()  # one of these words must appear in a clear message
    valid: bool = False  # a valid input: it must work
    either: bool = False  # works or a clear error are both acceptable
    check: Callable[[Any], str | None] | None = None  # valid cases: a problem with the result, or None


CASES: list[Case] = []
AREA = "?"


def bad(name: str, fn: Callable[[], Any], *names: str) -> None:
    CASES.append(Case(AREA, name, fn, tuple(n.lower() for n in names)))


def ok(name: str, fn: Callable[[], Any], check: Callable[[Any], str | None] | None = None) -> None:
    CASES.append(Case(AREA, name, fn, valid=True, check=check))


def either(name: str, fn: Callable[[], Any], *names: str) -> None:
    CASES.append(Case(AREA, name, fn, tuple(n.lower() for n in names), either=True))


# --------------------------------------------------------------------------- fixtures


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def classifier(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return gs.models.build("digitsnet", num_classes=num_classes).eval()


def regressor() -> nn.Module:
    """A one-output model (steering-like)."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, padding=1), act=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(), fc=nn.Linear(16, 1),
    )).eval()


NET = classifier()
NET2 = classifier(2)
REG = regressor()
X = torch.rand(2, 3, 16, 16, generator=_gen(1))
X64, X16, X8 = X.double(), X.half(), (X * 255).to(torch.uint8)
EMPTY = X[:0]
XNAN = X.clone()
XNAN[0, 0, 3, 3] = float("nan")
MAPS = torch.rand(2, 16, 16, generator=_gen(2))
MAPS_NAN = MAPS.clone()
MAPS_NAN[1, 4, 4] = float("nan")
MAPS_INF = MAPS.clone()
MAPS_INF[0, 2, 2] = float("inf")
MASKS = torch.zeros(2, 16, 16, dtype=torch.bool)
MASKS[:, 4:10, 4:10] = True
BOXES = torch.tensor([[2.0, 2.0, 8.0, 8.0], [4.0, 4.0, 12.0, 12.0]])
TMP = Path(tempfile.mkdtemp(prefix="gradsum_bad_inputs_"))


def roads(n: int = 4, task: str = "pothole") -> Any:
    return gs.data.RoadScenes(n, size=(16, 32), task=task)


def samples_with(segmentation: torch.Tensor, n: int = 2) -> list[Any]:
    """A list of Samples (16x32 images) with the given segmentation."""
    from gradsum.data.samples import Sample

    return [Sample(torch.rand(3, 16, 32, generator=_gen(i)), f"s{i}", segmentation.clone(), target=1)
            for i in range(n)]


def mentions(*words: str) -> Callable[[Any], str | None]:
    """A check: the result's settings mention one of `words` (e.g. the input's dtype)."""

    def check(result: Any) -> str | None:
        results = result.values() if isinstance(result, dict) else result if isinstance(result, tuple) else [result]
        for r in results:
            text = repr(getattr(r, "settings", "")).lower()
            if not any(w in text for w in words):
                return f"settings do not mention any of {words}: {text[:160]}"
        return None

    return check


def finite_maps(result: Any) -> str | None:
    results = result.values() if isinstance(result, dict) else [result]
    for r in results:
        maps = getattr(r, "maps", r)
        if not isinstance(maps, torch.Tensor) or not bool(torch.isfinite(maps).all()):
            return "maps are not a finite tensor"
        if maps.dtype != torch.float32:
            return f"maps are {maps.dtype}, not float32"
    return None


def all_of(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(result: Any) -> str | None:
        for c in checks:
            problem = c(result)
            if problem:
                return problem
        return None

    return check


def targets_are(*values: int) -> Callable[[Any], str | None]:
    def check(result: Any) -> str | None:
        t = getattr(result, "targets", None)
        if t is None or t.tolist() != list(values):
            return f"explained targets {None if t is None else t.tolist()}, expected {list(values)}"
        return None

    return check


def within_l2(x: torch.Tensor, eps: float) -> Callable[[Any], str | None]:
    def check(adv: Any) -> str | None:
        d = (adv.double() - x.double()).flatten(1).norm(dim=1)
        if bool((d > eps + 1e-4).any()):
            return f"L2 distances {d.tolist()} exceed eps={eps}"
        if bool((d < 1e-6).all()):
            return "the attack did not move the images"
        return None

    return check


def same_dtype_finite(like: torch.Tensor) -> Callable[[Any], str | None]:
    def check(out: Any) -> str | None:
        t = out.adversarial if hasattr(out, "adversarial") else out
        if not isinstance(t, torch.Tensor) or t.shape != like.shape or not bool(torch.isfinite(t).all()):
            return "result is not a finite tensor shaped like the input"
        return None

    return check


# --------------------------------------------------------------------------- explain

AREA = "explain"
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "gradcam": {},
    "gradcam++": {},
    "layercam": {},
    "eigencam": {},
    "scorecam": {},
    "saliency": {},
    "integrated-gradients": {"steps": 4},
    "smoothgrad": {"n_samples": 3},
    "guided-backprop": {},
    "occlusion": {"window": 8, "stride": 8},
    "rise": {"n_masks": 16},
    "lime": {"n_samples": 16, "n_segments": 6},
    "kernelshap": {"n_samples": 16, "n_segments": 6},
    "extremal": {"iterations": 3},
    "fullgrad": {},
}


def _exp(name: str, x: Any, target: Any = None, model: nn.Module = NET, **extra: Any) -> Any:
    return gs.explainer(name, model, **{**METHOD_OPTIONS[name], **extra})(x, target)


for _m in METHOD_OPTIONS:
    ok(f"{_m}: float64 images", lambda m=_m: _exp(m, X64), all_of(finite_maps, mentions("float64", "cast")))
    ok(f"{_m}: float16 images", lambda m=_m: _exp(m, X16), all_of(finite_maps, mentions("float16", "cast")))
    bad(f"{_m}: uint8 images", lambda m=_m: _exp(m, X8), "x", "uint8", "float")
    bad(f"{_m}: 3-D image", lambda m=_m: _exp(m, X[0]), "x", "4-d", "batch")
    bad(f"{_m}: empty batch", lambda m=_m: _exp(m, EMPTY), "x", "empty")
    bad(f"{_m}: NaN pixel", lambda m=_m: _exp(m, XNAN), "x", "nan")
    ok(f"{_m}: target=np.int64(3)", lambda m=_m: _exp(m, X, np.int64(3)), targets_are(3, 3))
    bad(f"{_m}: target=99 (10 classes)", lambda m=_m: _exp(m, X, 99), "target", "99")
    bad(f"{_m}: 1-channel images, 3-channel model", lambda m=_m: _exp(m, X[:, :1]), "x", "channel")

ok("explainer: numpy target array", lambda: _exp("gradcam", X, np.array([1, 2])), targets_are(1, 2))
bad("explainer: target=1.5", lambda: _exp("gradcam", X, 1.5), "target")
bad("explainer: target='cat'", lambda: _exp("gradcam", X, "cat"), "target")
bad("explainer: target=-1", lambda: _exp("gradcam", X, -1), "target", "-1")
bad("explainer: 3 targets for 2 images", lambda: _exp("gradcam", X, [1, 2, 3]), "target", "3")
bad("explainer: float target tensor", lambda: _exp("saliency", X, torch.tensor([1.5, 2.0])), "target", "float")
bad("explainer: numpy images", lambda: _exp("gradcam", X.numpy()), "x", "tensor")
bad("explainer: unknown method", lambda: gs.explainer("gradcamm", NET), "gradcamm")
bad("explainer: model is not a module", lambda: gs.explainer("gradcam", "digitsnet"), "model")
bad("gradcam: layer='nosuch'", lambda: _exp("gradcam", X, layer="nosuch"), "nosuch", "layer")
bad("gradcam: layer=123", lambda: _exp("gradcam", X, layer=123), "layer")
bad("gradcam: unknown option bogus=1", lambda: _exp("gradcam", X, bogus=1), "bogus")
bad("saliency: unknown option n_samples=5", lambda: _exp("saliency", X, n_samples=5), "n_samples")
bad("smoothgrad: sigma=nan", lambda: _exp("smoothgrad", X, sigma=float("nan")), "sigma")
bad("smoothgrad: sigma=-1", lambda: _exp("smoothgrad", X, sigma=-1.0), "sigma")
bad("smoothgrad: n_samples=0", lambda: _exp("smoothgrad", X, n_samples=0), "n_samples")
bad("smoothgrad: n_samples=2.5", lambda: _exp("smoothgrad", X, n_samples=2.5), "n_samples")
bad("smoothgrad: base='gradcam'", lambda: _exp("smoothgrad", X, base="gradcam"), "gradcam", "base")
bad("integrated-gradients: steps=0", lambda: _exp("integrated-gradients", X, steps=0), "steps")
bad("integrated-gradients: baseline='nope'", lambda: _exp("integrated-gradients", X, baseline="nope"), "baseline")
bad("integrated-gradients: baseline of the wrong shape",
    lambda: _exp("integrated-gradients", X, baseline=torch.zeros(3, 5, 5)), "baseline")
bad("integrated-gradients: method='bogus'", lambda: _exp("integrated-gradients", X, method="bogus"), "bogus", "method")
bad("rise: n_masks=0", lambda: _exp("rise", X, n_masks=0), "n_masks")
bad("rise: p1=1.5", lambda: _exp("rise", X, p1=1.5), "p1")
bad("rise: p1=nan", lambda: _exp("rise", X, p1=float("nan")), "p1")
bad("occlusion: window=0", lambda: _exp("occlusion", X, window=0), "window")
bad("occlusion: window larger than the image", lambda: _exp("occlusion", X, window=99), "window")
bad("occlusion: stride=0", lambda: _exp("occlusion", X, stride=0), "stride")
bad("lime: n_samples=0", lambda: _exp("lime", X, n_samples=0), "n_samples")
bad("lime: segments of the wrong shape", lambda: _exp("lime", X, segments=torch.zeros(5, 5, dtype=torch.long)), "segments")
bad("extremal: area=1.5", lambda: _exp("extremal", X, area=1.5), "area")
bad("scorecam: batch_size=0", lambda: _exp("scorecam", X, batch_size=0), "batch_size")

bad("explain: methods=[]", lambda: gs.explain(NET, X, methods=[]), "methods")
bad("explain: a method twice", lambda: gs.explain(NET, X, methods=["gradcam", "gradcam"]), "twice", "gradcam")
bad("explain: unknown method", lambda: gs.explain(NET, X, methods=["nosuch"]), "nosuch")
bad("explain: options for a method not listed",
    lambda: gs.explain(NET, X, methods=["gradcam"], options={"smoothgrad": {"sigma": 0.5}}), "smoothgrad")
bad("explain: options is a list", lambda: gs.explain(NET, X, methods=["gradcam"], options=[("gradcam", {})]), "options")
bad("explain: fusion='bogus'", lambda: gs.explain(NET, X, methods=["gradcam"], fusion="bogus"), "fusion", "bogus")
bad("explain: methods=5", lambda: gs.explain(NET, X, methods=5), "methods")
ok("explain: float64 images", lambda: gs.explain(NET, X64, methods=["gradcam", "saliency"]),
   all_of(finite_maps, mentions("float64", "cast")))
ok("explain: numpy target array", lambda: gs.explain(NET, X, methods=["gradcam"], target=np.array([3, 4]))["gradcam"],
   targets_are(3, 4))


def _under_no_grad() -> Any:
    with torch.no_grad():
        return gs.explain(NET, X, methods=["gradcam", "saliency"])


ok("explain: under torch.no_grad()", _under_no_grad, finite_maps)

# --------------------------------------------------------------------------- semantic

AREA = "semantic"
ROADS = roads(4)
STEER = roads(4, task="steering")


def _gradsum(dataset: Any = ROADS, model: nn.Module = NET2, **kw: Any) -> Any:
    kw.setdefault("batch_size", 4)
    return gs.gradsum(model, dataset, **kw)


ok("gradsum: valid call", lambda: _gradsum(),
   lambda p: None if len(p.images) else "empty profile")
for _t in (1.5, -0.5, float("nan"), float("inf")):
    bad(f"gradsum: threshold={_t}", lambda t=_t: _gradsum(threshold=t), "threshold")
bad("gradsum: threshold='0.5'", lambda: _gradsum(threshold="0.5"), "threshold")
bad("gradsum: indices=[99] (4 images)", lambda: _gradsum(indices=[99]), "indices", "99")
bad("gradsum: indices=[-1]", lambda: _gradsum(indices=[-1]), "indices", "-1")
bad("gradsum: duplicate indices", lambda: _gradsum(indices=[0, 0]), "indices", "duplicate", "twice")
bad("gradsum: indices=[0.5]", lambda: _gradsum(indices=[0.5]), "indices", "0.5")
bad("gradsum: indices=[]", lambda: _gradsum(indices=[]), "indices", "empty")
bad("gradsum: indices='01'", lambda: _gradsum(indices="01"), "indices")
either("gradsum: label_table='roads' (a name)", lambda: _gradsum(label_table="roads"), "label_table")
either("gradsum: label_table='cityscapes' (a name)", lambda: _gradsum(label_table="cityscapes"), "label_table")
bad("gradsum: label_table='nosuch'", lambda: _gradsum(label_table="nosuch"), "label_table", "nosuch")
bad("gradsum: label_table=5", lambda: _gradsum(label_table=5), "label_table")
bad("gradsum: method=[]", lambda: _gradsum(method=[]), "method")
bad("gradsum: method='nosuch'", lambda: _gradsum(method="nosuch"), "nosuch")
bad("gradsum: method=5", lambda: _gradsum(method=5), "method")
bad("gradsum: batch_size=0", lambda: _gradsum(batch_size=0), "batch_size")
bad("gradsum: batch_size=2.5", lambda: _gradsum(batch_size=2.5), "batch_size")
bad("gradsum: baseline=-1", lambda: _gradsum(baseline=-1), "baseline")
bad("gradsum: baseline=1.5", lambda: _gradsum(baseline=1.5), "baseline")
bad("gradsum: normalize='bogus'", lambda: _gradsum(normalize="bogus"), "normalize", "bogus")
bad("gradsum: target='bogus'", lambda: _gradsum(target="bogus"), "target")
bad("gradsum: target='label' with float (steering) labels", lambda: _gradsum(STEER, target="label"),
    "label", "float")
ok("gradsum: target='label' with class labels", lambda: _gradsum(target="label"))
ok("gradsum: target=np.int64(1)", lambda: _gradsum(target=np.int64(1)))
bad("gradsum: target=5 for a 2-class model", lambda: _gradsum(target=5), "target", "5")
bad("gradsum: dataset without segmentations", lambda: _gradsum(gs.data.Digits(size=16), model=NET,
                                                                label_table=gs.semantic.ROADS),
    "segmentation")
bad("gradsum: dataset is a tensor", lambda: _gradsum(X, label_table=gs.semantic.ROADS), "dataset")
bad("gradsum: float segmentation ids 1.5",
    lambda: _gradsum(samples_with(torch.full((16, 32), 1.5)), label_table=gs.semantic.ROADS), "segmentation", "float")
either("gradsum: float segmentation ids 1.0 (integral)",
       lambda: _gradsum(samples_with(torch.full((16, 32), 1.0)), label_table=gs.semantic.ROADS),
       "segmentation", "float")
bad("gradsum: segmentation of the wrong size",
    lambda: _gradsum(samples_with(torch.zeros(8, 8, dtype=torch.long)), label_table=gs.semantic.ROADS),
    "segmentation", "shape", "size")
bad("gradsum: segmentation ids outside the table",
    lambda: _gradsum(samples_with(torch.full((16, 32), 999, dtype=torch.long)), label_table=gs.semantic.ROADS),
    "999", "label")
bad("gradsum: options for a method not listed", lambda: _gradsum(options={"smoothgrad": {"n_samples": 2}}), "smoothgrad")
bad("gradsum: model is not a module", lambda: _gradsum(model="digitsnet"), "model")
bad("gradsum: layer='nosuch'", lambda: _gradsum(layer="nosuch"), "nosuch")
ok("gradsum: float64 model with float32 data", lambda: _gradsum(model=classifier(2).double()))


def _index() -> Any:
    return gs.semantic.LabelIndex.of(gs.semantic.ROADS)


SEG = torch.zeros(2, 16, 16, dtype=torch.long)
bad("label_sums: maps/segmentation shapes differ", lambda: gs.semantic.label_sums(MAPS, SEG[:, :8], _index()),
    "shape", "segmentation")
bad("label_sums: threshold=nan", lambda: gs.semantic.label_sums(MAPS, SEG, _index(), threshold=float("nan")),
    "threshold")
bad("label_sums: NaN maps", lambda: gs.semantic.label_sums(MAPS_NAN, SEG, _index(), normalize="minmax"), "maps", "nan")
bad("label_sums: float segmentation 0.5", lambda: gs.semantic.label_sums(MAPS, SEG.float() + 0.5, _index()),
    "segmentation", "float")
bad("profile_maps: threshold=2", lambda: gs.semantic.profile_maps(MAPS, SEG, gs.semantic.ROADS, ["a", "b"],
                                                                  threshold=2.0), "threshold")
bad("profile_maps: 3 ids for 2 maps", lambda: gs.semantic.profile_maps(MAPS, SEG, gs.semantic.ROADS, ["a", "b", "c"]),
    "ids", "image_ids")
either("profile_maps: table='roads' (a name)", lambda: gs.semantic.profile_maps(MAPS, SEG, "roads", ["a", "b"]),
       "table")
bad("profile_maps: table='nosuch'", lambda: gs.semantic.profile_maps(MAPS, SEG, "nosuch", ["a", "b"]), "table", "nosuch")
bad("profile_maps: table=5", lambda: gs.semantic.profile_maps(MAPS, SEG, 5, ["a", "b"]), "table")

# --------------------------------------------------------------------------- metrics

AREA = "metrics"
M = gs.metrics
LOCAL = {"ebpg": M.ebpg, "bbox": M.bbox, "pointing_game": M.pointing_game, "relevance_mass": M.relevance_mass,
         "relevance_rank": M.relevance_rank, "attribution_auc": M.attribution_auc}
for _n, _f in LOCAL.items():
    ok(f"{_n}: valid", lambda f=_f: f(MAPS, MASKS))
    bad(f"{_n}: NaN maps", lambda f=_f: f(MAPS_NAN, MASKS), "maps", "nan")
    bad(f"{_n}: empty batch", lambda f=_f: f(MAPS[:0], MASKS[:0]), "maps", "empty")
    bad(f"{_n}: numpy maps", lambda f=_f: f(MAPS.numpy(), MASKS), "maps")
    bad(f"{_n}: masks of another size", lambda f=_f: f(MAPS, MASKS[:, :8]), "mask")
    bad(f"{_n}: masks and boxes", lambda f=_f: f(MAPS, MASKS, boxes=BOXES), "masks", "boxes")
    bad(f"{_n}: neither masks nor boxes", lambda f=_f: f(MAPS), "masks", "boxes")
    bad(f"{_n}: boxes (B,3)", lambda f=_f: f(MAPS, boxes=BOXES[:, :3]), "boxes")
ok("ebpg: integer maps", lambda: M.ebpg((MAPS * 10).long(), MASKS))
bad("ebpg: 3 boxes for 2 maps", lambda: M.ebpg(MAPS, boxes=torch.cat([BOXES, BOXES[:1]])), "boxes", "3")
bad("ebpg: NaN box", lambda: M.ebpg(MAPS, boxes=torch.tensor([[0, 0, float("nan"), 4.0], [0, 0, 4, 4]])), "boxes", "nan")
bad("pointing_game: tolerance=-1", lambda: M.pointing_game(MAPS, MASKS, tolerance=-1), "tolerance")
bad("pointing_game: tolerance=nan", lambda: M.pointing_game(MAPS, MASKS, tolerance=float("nan")), "tolerance")
bad("pointing_game: tolerance='5'", lambda: M.pointing_game(MAPS, MASKS, tolerance="5"), "tolerance")
SEGM = torch.randint(0, 4, (2, 16, 16), generator=_gen(3))
ok("category_hit: valid", lambda: M.category_hit(MAPS, SEGM, num_categories=4))
bad("category_hit: float segmentation", lambda: M.category_hit(MAPS, SEGM.float() + 0.5), "segmentation")
bad("category_hit: top=0", lambda: M.category_hit(MAPS, SEGM, top=0), "top")
bad("category_hit: top=1.5", lambda: M.category_hit(MAPS, SEGM, top=1.5), "top")
bad("category_hit: top=nan", lambda: M.category_hit(MAPS, SEGM, top=float("nan")), "top")
bad("category_hit: 2 names for 4 categories", lambda: M.category_hit(MAPS, SEGM, names=["a", "b"]), "names")
bad("category_hit: num_categories=0", lambda: M.category_hit(MAPS, SEGM, num_categories=0), "num_categories")
bad("category_hit: negative label ids", lambda: M.category_hit(MAPS, SEGM - 2), "label", "-")
bad("category_hit: segmentation of another size", lambda: M.category_hit(MAPS, SEGM[:, :8]), "segmentation")
bad("category_hit: NaN maps", lambda: M.category_hit(MAPS_NAN, SEGM), "maps", "nan")
bad("boxes_to_masks: height=0", lambda: M.boxes_to_masks(BOXES, 0, 16), "height")
bad("boxes_to_masks: width=-3", lambda: M.boxes_to_masks(BOXES, 16, -3), "width")

FAITH: dict[str, Callable[..., Any]] = {
    "deletion": lambda *a, **k: M.deletion(*a, **{"steps": 4, **k}),
    "insertion": lambda *a, **k: M.insertion(*a, **{"steps": 4, **k}),
    "road": lambda *a, **k: M.road(*a, **{"percentages": (50,), **k}),
    "average_drop": lambda *a, **k: M.average_drop(*a, **k),
    "faithfulness_correlation": lambda *a, **k: M.faithfulness_correlation(*a, **{"n_subsets": 4, **k}),
}
for _n, _f in FAITH.items():
    ok(f"{_n}: valid", lambda f=_f: f(NET, X, MAPS))
    ok(f"{_n}: float64 images, float32 model", lambda f=_f: f(NET, X64, MAPS), mentions("float64", "cast"))
    ok(f"{_n}: float16 images, float32 model", lambda f=_f: f(NET, X16, MAPS), mentions("float16", "cast"))
    bad(f"{_n}: uint8 images", lambda f=_f: f(NET, X8, MAPS), "x", "uint8", "float")
    bad(f"{_n}: empty batch", lambda f=_f: f(NET, EMPTY, MAPS[:0]), "x", "empty")
    bad(f"{_n}: NaN pixel", lambda f=_f: f(NET, XNAN, MAPS), "x", "nan")
    bad(f"{_n}: NaN maps", lambda f=_f: f(NET, X, MAPS_NAN), "maps", "nan")
    bad(f"{_n}: inf maps", lambda f=_f: f(NET, X, MAPS_INF), "maps", "inf")
    ok(f"{_n}: target=np.int64(3)", lambda f=_f: f(NET, X, MAPS, target=np.int64(3)))
    ok(f"{_n}: target=np.array([1, 2])", lambda f=_f: f(NET, X, MAPS, target=np.array([1, 2])))
    bad(f"{_n}: target=99", lambda f=_f: f(NET, X, MAPS, target=99), "target", "99")
    bad(f"{_n}: score='bogus'", lambda f=_f: f(NET, X, MAPS, score="bogus"), "score")
    bad(f"{_n}: 3-D image", lambda f=_f: f(NET, X[0], MAPS[0]), "x")
    bad(f"{_n}: 1-channel images", lambda f=_f: f(NET, X[:, :1], MAPS), "x", "channel")
bad("deletion: step=0", lambda: M.deletion(NET, X, MAPS, step=0), "step")
bad("deletion: steps=0", lambda: M.deletion(NET, X, MAPS, steps=0), "steps")
bad("deletion: step=1.5", lambda: M.deletion(NET, X, MAPS, step=1.5), "step")
bad("deletion: substrate='bogus'", lambda: M.deletion(NET, X, MAPS, substrate="bogus"), "substrate")
bad("deletion: substrate tensor of the wrong shape", lambda: M.deletion(NET, X, MAPS, substrate=torch.zeros(5)),
    "substrate")
bad("deletion: batch_size=0", lambda: M.deletion(NET, X, MAPS, steps=4, batch_size=0), "batch_size")
bad("deletion: batch_size='big'", lambda: M.deletion(NET, X, MAPS, steps=4, batch_size="big"), "batch_size")
bad("deletion_insertion: modes=[]", lambda: M.deletion_insertion(NET, X, MAPS, modes=[]), "modes")
bad("deletion: 3 maps for 2 images", lambda: M.deletion(NET, X, torch.cat([MAPS, MAPS[:1]])), "maps")
bad("deletion: model is not a module", lambda: M.deletion("net", X, MAPS), "model")
bad("road: percentages=[0]", lambda: M.road(NET, X, MAPS, percentages=[0]), "percentages")
bad("road: percentages=[150]", lambda: M.road(NET, X, MAPS, percentages=[150]), "percentages")
bad("road: percentages=[]", lambda: M.road(NET, X, MAPS, percentages=[]), "percentages")
bad("road: noise=-1", lambda: M.road(NET, X, MAPS, percentages=(50,), noise=-1.0), "noise")
bad("road: noise=nan", lambda: M.road(NET, X, MAPS, percentages=(50,), noise=float("nan")), "noise")
bad("road: tol=0", lambda: M.road(NET, X, MAPS, percentages=(50,), tol=0.0), "tol")
bad("faithfulness_correlation: n_subsets=1", lambda: M.faithfulness_correlation(NET, X, MAPS, n_subsets=1),
    "n_subsets")
bad("faithfulness_correlation: subset=0", lambda: M.faithfulness_correlation(NET, X, MAPS, n_subsets=4, subset=0),
    "subset")
bad("faithfulness_correlation: subset=2.0", lambda: M.faithfulness_correlation(NET, X, MAPS, n_subsets=4, subset=2.0),
    "subset")
bad("average_drop: keep=0", lambda: M.average_drop(NET, X, MAPS, keep=0), "keep")
bad("average_drop: keep=1.5", lambda: M.average_drop(NET, X, MAPS, keep=1.5), "keep")
bad("average_drop: normalize='bogus'", lambda: M.average_drop(NET, X, MAPS, normalize="bogus"), "normalize", "bogus")
ok("deletion: one-output regressor", lambda: M.deletion(REG, X, MAPS, steps=4))

for _n, _f in {"sparseness": M.sparseness, "complexity": M.complexity}.items():
    ok(f"{_n}: integer maps", lambda f=_f: f((MAPS * 10).long()))
    bad(f"{_n}: NaN maps", lambda f=_f: f(MAPS_NAN), "maps", "nan")
    bad(f"{_n}: empty batch", lambda f=_f: f(MAPS[:0]), "maps", "empty")
    bad(f"{_n}: numpy maps", lambda f=_f: f(MAPS.numpy()), "maps")

S = gs.sanity
LAST = ["classifier.fc2"]
ok("model_randomization: float64 images",
   lambda: S.model_randomization(NET, X64, ["gradcam"], layers=LAST, measures=("spearman_abs",)),
   mentions("float64", "cast"))
bad("model_randomization: methods=[]", lambda: S.model_randomization(NET, X, [], layers=LAST), "method")
bad("model_randomization: mode='bogus'", lambda: S.model_randomization(NET, X, ["gradcam"], mode="bogus"), "mode")
bad("model_randomization: layers=['nosuch']", lambda: S.model_randomization(NET, X, ["gradcam"], layers=["nosuch"]),
    "nosuch")
bad("model_randomization: layers=[]", lambda: S.model_randomization(NET, X, ["gradcam"], layers=[]), "layers")
bad("model_randomization: empty batch", lambda: S.model_randomization(NET, EMPTY, ["gradcam"], layers=LAST), "x", "empty")
bad("model_randomization: NaN pixel", lambda: S.model_randomization(NET, XNAN, ["gradcam"], layers=LAST), "x", "nan")
bad("model_randomization: measures=['bogus']",
    lambda: S.model_randomization(NET, X, ["gradcam"], layers=LAST, measures=["bogus"]), "bogus", "measure")
bad("model_randomization: threshold=nan",
    lambda: S.model_randomization(NET, X, ["gradcam"], layers=LAST, threshold=float("nan")), "threshold")
bad("model_randomization: verdict_measure='bogus'",
    lambda: S.model_randomization(NET, X, ["gradcam"], layers=LAST, verdict_measure="bogus"), "verdict_measure")
bad("data_randomization: randomized_model is not a module",
    lambda: S.data_randomization(NET, "other", X, ["gradcam"]), "randomized_model")
bad("similarity: shapes differ", lambda: S.similarity(MAPS, MAPS[:, :8]), "shape")
bad("similarity: NaN maps", lambda: S.similarity(MAPS_NAN, MAPS, ("spearman",)), "nan")
bad("similarity: measures=['bogus']", lambda: S.similarity(MAPS, MAPS, ["bogus"]), "bogus")

ok("benchmark: valid", lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness", "deletion"],
                                           metric_options={"deletion": {"steps": 4}}))
bad("benchmark: metrics=['bogus']", lambda: M.benchmark(NET, X, ["gradcam"], ["bogus"]), "bogus")
bad("benchmark: methods=[]", lambda: M.benchmark(NET, X, [], ["sparseness"]), "methods")
bad("benchmark: metrics=[]", lambda: M.benchmark(NET, X, ["gradcam"], []), "metrics")
bad("benchmark: data=[]", lambda: M.benchmark(NET, [], ["gradcam"], ["sparseness"]), "data", "no images")
bad("benchmark: batch_size=0", lambda: M.benchmark(NET, roads(2), ["gradcam"], ["sparseness"], batch_size=0),
    "batch_size")
bad("benchmark: max_images=-1", lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], max_images=-1), "max_images")
bad("benchmark: metric_options for a metric not listed",
    lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], metric_options={"deletion": {"steps": 4}}), "deletion")
bad("benchmark: method_options for a method not listed",
    lambda: M.benchmark(NET, X, ["gradcam"], ["sparseness"], method_options={"smoothgrad": {"n_samples": 2}}),
    "smoothgrad")
bad("benchmark: 3-D image tensor", lambda: M.benchmark(NET, X[0], ["gradcam"], ["sparseness"]), "(b,c,h,w)", "image")
bad("benchmark: unknown method", lambda: M.benchmark(NET, X, ["nosuch"], ["sparseness"]), "nosuch")

# --------------------------------------------------------------------------- adversarial

AREA = "adversarial"
A = gs.adversarial
ATTACKS: dict[str, Callable[..., Any]] = {
    "fgsm": lambda m, x, y=None, **k: A.fgsm(m, x, y, **k),
    "pgd": lambda m, x, y=None, **k: A.pgd(m, x, y, **{"steps": 2, **k}),
}
for _n, _f in ATTACKS.items():
    ok(f"{_n}: valid", lambda f=_f: f(NET, X), same_dtype_finite(X))
    ok(f"{_n}: float64 images", lambda f=_f: f(NET, X64), same_dtype_finite(X64))
    ok(f"{_n}: float16 images", lambda f=_f: f(NET, X16), same_dtype_finite(X16))
    bad(f"{_n}: uint8 images", lambda f=_f: f(NET, X8), "images", "uint8", "float")
    bad(f"{_n}: empty batch", lambda f=_f: f(NET, EMPTY), "images", "empty")
    bad(f"{_n}: NaN pixel", lambda f=_f: f(NET, XNAN), "images", "nan")
    bad(f"{_n}: pixels in [0,2]", lambda f=_f: f(NET, X * 2), "images", "[0,1]")
    bad(f"{_n}: 3-D image", lambda f=_f: f(NET, X[0]), "images")
    ok(f"{_n}: y=np.int64(3)", lambda f=_f: f(NET, X, np.int64(3)))
    ok(f"{_n}: y=np.array([1, 2])", lambda f=_f: f(NET, X, np.array([1, 2])))
    bad(f"{_n}: y=99 (10 classes)", lambda f=_f: f(NET, X, 99), "label", "99")
    bad(f"{_n}: y=-1", lambda f=_f: f(NET, X, -1), "label", "-1")
    bad(f"{_n}: float labels [1.7, 2.2]", lambda f=_f: f(NET, X, torch.tensor([1.7, 2.2])), "label", "float")
    bad(f"{_n}: 3 labels for 2 images", lambda f=_f: f(NET, X, torch.tensor([1, 2, 3])), "label", "3")
    bad(f"{_n}: one-output regressor", lambda f=_f: f(REG, X), "output", "classifier")
    bad(f"{_n}: eps=-0.1", lambda f=_f: f(NET, X, eps=-0.1), "eps")
    bad(f"{_n}: eps=nan", lambda f=_f: f(NET, X, eps=float("nan")), "eps")
    bad(f"{_n}: model is not a module", lambda f=_f: f("net", X), "model")
bad("fgsm: eps=1.5", lambda: A.fgsm(NET, X, eps=1.5), "eps")
ok("pgd: norm=2, eps=5 (an L2 budget)", lambda: A.pgd(NET, X, norm=2, eps=5.0, alpha=1.0, steps=2),
   within_l2(X, 5.0))
bad("pgd: norm=inf, eps=5", lambda: A.pgd(NET, X, norm="inf", eps=5.0), "eps")
bad("pgd: norm=2, eps=-1", lambda: A.pgd(NET, X, norm=2, eps=-1.0), "eps")
bad("pgd: norm=2, eps=nan", lambda: A.pgd(NET, X, norm=2, eps=float("nan")), "eps")
bad("pgd: norm=3", lambda: A.pgd(NET, X, norm=3), "norm")
bad("pgd: alpha=-1", lambda: A.pgd(NET, X, alpha=-1.0), "alpha")
bad("pgd: norm=2, alpha=nan", lambda: A.pgd(NET, X, norm=2, eps=1.0, alpha=float("nan")), "alpha")
bad("pgd: steps=0", lambda: A.pgd(NET, X, steps=0), "steps")
bad("pgd: steps=2.5", lambda: A.pgd(NET, X, steps=2.5), "steps")

ok("deepfool: valid", lambda: A.deepfool(NET, X, max_iter=3), same_dtype_finite(X))
ok("deepfool: float64 images", lambda: A.deepfool(NET, X64, max_iter=3), same_dtype_finite(X64))
bad("deepfool: candidates=1", lambda: A.deepfool(NET, X, candidates=1), "candidates")
bad("deepfool: candidates=0", lambda: A.deepfool(NET, X, candidates=0), "candidates")
bad("deepfool: overshoot=-1", lambda: A.deepfool(NET, X, overshoot=-1.0), "overshoot")
bad("deepfool: overshoot=nan", lambda: A.deepfool(NET, X, overshoot=float("nan")), "overshoot")
bad("deepfool: max_iter=0", lambda: A.deepfool(NET, X, max_iter=0), "max_iter")
bad("deepfool: max_iter=2.5", lambda: A.deepfool(NET, X, max_iter=2.5), "max_iter")
bad("deepfool: empty batch", lambda: A.deepfool(NET, EMPTY), "images", "empty")
bad("deepfool: NaN pixel", lambda: A.deepfool(NET, XNAN), "images", "nan")
bad("deepfool: uint8 images", lambda: A.deepfool(NET, X8), "images", "uint8", "float")
bad("deepfool: one-output regressor", lambda: A.deepfool(REG, X), "output", "classifier")

X4 = torch.rand(4, 3, 16, 16, generator=_gen(4))


def _uap(model: nn.Module = NET, images: Any = X4, **kw: Any) -> Any:
    kw = {"max_passes": 1, "delta": 0.5, "max_iter": 2, **kw}
    return A.universal_perturbation(model, images, **kw)


ok("universal: valid", lambda: _uap())
ok("universal: p=2, xi=5 (an L2 budget)", lambda: _uap(p=2, xi=5.0),
   lambda r: None if r.norm <= 5.0 + 1e-4 else f"||v||={r.norm} > 5")
bad("universal: xi=-1", lambda: _uap(xi=-1.0), "xi")
bad("universal: xi=nan", lambda: _uap(xi=float("nan")), "xi")
bad("universal: p=2, xi=-1", lambda: _uap(p=2, xi=-1.0), "xi")
bad("universal: p=3", lambda: _uap(p=3), "p")
bad("universal: delta=0", lambda: _uap(delta=0.0), "delta")
bad("universal: delta=nan", lambda: _uap(delta=float("nan")), "delta")
bad("universal: max_passes=0", lambda: _uap(max_passes=0), "max_passes")
bad("universal: empty image set", lambda: _uap(images=EMPTY), "images", "empty")
bad("universal: 3-D images", lambda: _uap(images=X4[0]), "images")
bad("universal: NaN pixel", lambda: _uap(images=torch.cat([XNAN, X])), "images", "nan")
bad("universal: one-output regressor", lambda: _uap(REG), "output", "classifier")
bad("universal: candidates=1", lambda: _uap(candidates=1), "candidates")
ok("universal: float64 images", lambda: _uap(images=X4.double()))


def _fool(model: nn.Module = NET, target: Any = 1, **kw: Any) -> Any:
    kw.setdefault("max_steps", 2)
    if "start" not in kw:
        kw.setdefault("image_size", 16)
    return A.fooling_image(model, target, **kw)


ok("fooling_image: valid", lambda: _fool())
ok("fooling_image: target=np.int64(1)", lambda: _fool(target=np.int64(1)))
ok("fooling_image: float64 start", lambda: _fool(start=X64))
bad("fooling_image: target=99", lambda: _fool(target=99), "target", "99")
bad("fooling_image: target=-1", lambda: _fool(target=-1), "target", "-1")
bad("fooling_image: target=1.5", lambda: _fool(target=1.5), "target", "1.5")
bad("fooling_image: level=1.5", lambda: _fool(level=1.5), "level")
bad("fooling_image: level=nan", lambda: _fool(level=float("nan")), "level")
bad("fooling_image: alpha=-1", lambda: _fool(alpha=-1.0), "alpha")
bad("fooling_image: max_steps=0", lambda: _fool(max_steps=0), "max_steps")
bad("fooling_image: no start and no image_size", lambda: A.fooling_image(NET, 1), "image_size")
bad("fooling_image: image_size=0", lambda: _fool(image_size=0), "image_size")
bad("fooling_image: image_size=-3", lambda: _fool(image_size=-3), "image_size")
bad("fooling_image: channels=0", lambda: _fool(channels=0), "channels")
bad("fooling_image: NaN start", lambda: _fool(start=XNAN), "start", "nan")
bad("fooling_image: empty start", lambda: _fool(start=EMPTY), "start", "empty")
bad("fooling_image: one-output regressor", lambda: _fool(REG, 0), "output", "classifier")
bad("fooling_image: eps=-1", lambda: _fool(eps=-1.0), "eps")

ok("transfer_matrix: valid (perturbations given)",
   lambda: A.transfer_matrix({"a": NET, "b": classifier()}, X4, perturbations={"a": torch.zeros(1, 3, 16, 16),
                                                                             "b": torch.zeros(1, 3, 16, 16)}))
bad("transfer_matrix: models={}", lambda: A.transfer_matrix({}, X4), "models")
bad("transfer_matrix: a model that is not a module",
    lambda: A.transfer_matrix({"a": "net"}, X4, delta=0.5, max_passes=1), "model", "'a'")
bad("transfer_matrix: perturbation for an unknown model",
    lambda: A.transfer_matrix({"a": NET}, X4, perturbations={"a": torch.zeros(1, 3, 16, 16),
                                                            "z": torch.zeros(1, 3, 16, 16)}), "z")
bad("transfer_matrix: perturbation of the wrong size",
    lambda: A.transfer_matrix({"a": NET}, X4, perturbations={"a": torch.zeros(1, 3, 8, 8)}), "perturbation", "shape")
bad("transfer_matrix: eval_images empty",
    lambda: A.transfer_matrix({"a": NET}, X4, eval_images=EMPTY, perturbations={"a": torch.zeros(1, 3, 16, 16)}),
    "eval_images", "empty")
bad("fooling_rate: v of the wrong shape", lambda: A.fooling_rate(NET, X4, torch.zeros(1, 3, 8, 8)), "v", "shape")
bad("fooling_rate: empty image set", lambda: A.fooling_rate(NET, EMPTY, torch.zeros(1, 3, 16, 16)), "images", "empty")
bad("pixel_space: mean without std", lambda: A.pixel_space(NET, mean=(0.5, 0.5, 0.5)), "std")
bad("pixel_space: 2 means for 3 channels", lambda: A.fgsm(A.pixel_space(NET, (0.5, 0.5), (0.2, 0.2)), X),
    "mean", "channel")
bad("pixel_space: std=0", lambda: A.pixel_space(NET, 0.5, 0.0), "std")

# --------------------------------------------------------------------------- features

AREA = "features"
Fe = gs.features
CONV = "features.conv2"


def _max(objective: Any = None, **kw: Any) -> Any:
    kw = {"image_size": 16, "steps": 2, "preset": None, **kw}
    return Fe.maximize(NET, Fe.channel(CONV, 0) if objective is None else objective, **kw)


ok("filter_grid: valid", lambda: Fe.filter_grid(NET))
bad("filter_grid: layer='nosuch'", lambda: Fe.filter_grid(NET, "nosuch"), "nosuch")
bad("filter_grid: a Linear layer", lambda: Fe.filter_grid(NET, "classifier.fc2"), "classifier.fc2", "conv")
bad("filter_grid: max_tiles=0", lambda: Fe.filter_grid(NET, max_tiles=0), "max_tiles")
bad("filter_grid: model without conv", lambda: Fe.filter_grid(nn.Sequential(nn.Linear(3, 2))), "conv")
ok("feature_maps: valid", lambda: Fe.feature_maps(NET, X[0], CONV))
ok("feature_maps: float64 image", lambda: Fe.feature_maps(NET, X64[0], CONV))
bad("feature_maps: batch of 2", lambda: Fe.feature_maps(NET, X, CONV), "image", "one")
bad("feature_maps: layer='nosuch'", lambda: Fe.feature_maps(NET, X[0], "nosuch"), "nosuch")
bad("feature_maps: uint8 image", lambda: Fe.feature_maps(NET, X8[0], CONV), "image", "uint8", "float")
bad("feature_maps: NaN image", lambda: Fe.feature_maps(NET, XNAN[0], CONV), "image", "nan")
bad("feature_maps: 1-channel image", lambda: Fe.feature_maps(NET, X[0, :1], CONV), "image", "channel")
bad("feature_maps: numpy image", lambda: Fe.feature_maps(NET, X[0].numpy(), CONV), "image", "tensor")
bad("feature_maps: 2-D image", lambda: Fe.feature_maps(NET, X[0, 0], CONV), "image")

ok("maximize: valid", lambda: _max())
for _k, _v in {"lr": -1.0, "steps": 0, "image_size": 0, "batch": 0, "l2": -1.0, "tv": float("nan"),
               "blur_every": -1, "channels": 0, "border": -1, "redirect_relu": -1}.items():
    bad(f"maximize: {_k}={_v}", lambda k=_k, v=_v: _max(**{k: v}), _k)
bad("maximize: lr=0", lambda: _max(lr=0.0), "lr")
bad("maximize: lr=nan", lambda: _max(lr=float("nan")), "lr")
bad("maximize: lr='fast'", lambda: _max(lr="fast"), "lr")
bad("maximize: steps=2.5", lambda: _max(steps=2.5), "steps")
bad("maximize: image_size=-4", lambda: _max(image_size=-4), "image_size")
bad("maximize: image_size=(0, 16)", lambda: _max(image_size=(0, 16)), "image_size")
bad("maximize: image_size=2", lambda: _max(image_size=2), "image_size")
bad("maximize: batch=-1", lambda: _max(batch=-1), "batch")
bad("maximize: batch=2.5", lambda: _max(batch=2.5), "batch")
bad("maximize: l2=nan", lambda: _max(l2=float("nan")), "l2")
bad("maximize: blur_sigma=0 with blur_every=1", lambda: _max(blur_every=1, blur_sigma=0.0, steps=3), "blur_sigma")
bad("maximize: blur_sigma=-1 with blur_every=1", lambda: _max(blur_every=1, blur_sigma=-1.0, steps=3), "blur_sigma")
bad("maximize: preset='bogus'", lambda: _max(preset="bogus"), "preset")
bad("maximize: param='bogus'", lambda: _max(param="bogus"), "bogus", "param")
bad("maximize: optimizer='sgd'", lambda: _max(optimizer="sgd"), "optimizer")
bad("maximize: channels=1 for a 3-channel model", lambda: _max(channels=1), "channels")
bad("maximize: objective is a string", lambda: _max("features.conv2:0"), "objective")
bad("maximize: channel 99 of a 16-channel layer", lambda: _max(Fe.channel(CONV, 99)), "channel", "99")
bad("maximize: channels 0..19999 of a 16-channel layer", lambda: _max(Fe.channel(CONV, list(range(20000)))),
    "channel")
bad("maximize: objective layer 'nosuch'", lambda: _max(Fe.channel("nosuch", 0)), "nosuch")
bad("maximize: class_logit(-1)", lambda: _max(Fe.class_logit(-1)), "-1")
bad("maximize: neuron position outside the map", lambda: _max(Fe.neuron(CONV, 0, y=99, x=0)), "99", "position")
bad("maximize: init of the wrong shape", lambda: _max(param="pixel", init=torch.rand(3, 5, 5)), "init")
bad("maximize: NaN init", lambda: _max(param="pixel", init=XNAN[:1]), "init", "nan")
bad("maximize: transforms='yes'", lambda: _max(transforms="yes"), "transforms")
bad("channel: index list []", lambda: Fe.channel(CONV, []), "channel")
bad("channel: index 1.5", lambda: Fe.channel(CONV, 1.5), "channel")
bad("direction: empty vector", lambda: Fe.direction(CONV, []), "vector")
bad("direction: NaN vector", lambda: Fe.direction(CONV, [float("nan")] * 16), "vector", "nan")

ok("receptive_field: valid", lambda: Fe.receptive_field(NET, CONV, 16))
bad("receptive_field: image_size=0", lambda: Fe.receptive_field(NET, CONV, 0), "image_size")
bad("receptive_field: image_size=-5", lambda: Fe.receptive_field(NET, CONV, -5), "image_size")
bad("receptive_field: image_size=(0, 0)", lambda: Fe.receptive_field(NET, CONV, (0, 0)), "image_size")
bad("receptive_field: image_size=1.5", lambda: Fe.receptive_field(NET, CONV, 1.5), "image_size")
bad("receptive_field: image_size=(16,)", lambda: Fe.receptive_field(NET, CONV, (16,)), "image_size")
bad("receptive_field: method='bogus'", lambda: Fe.receptive_field(NET, CONV, 16, method="bogus"), "method")
bad("receptive_field: layer='nosuch'", lambda: Fe.receptive_field(NET, "nosuch", 16), "nosuch")
bad("receptive_field: channels=0", lambda: Fe.receptive_field(NET, CONV, 16, channels=0), "channels")
bad("receptive_field: image too small for the layer", lambda: Fe.receptive_field(NET, "classifier.fc1", 1,
                                                                                  method="empirical"),
    "image_size")

ok("top_patches: valid", lambda: Fe.top_patches(NET, CONV, X4, k=2))
ok("top_patches: float64 images", lambda: Fe.top_patches(NET, CONV, X4.double(), k=2))
bad("top_patches: k=0", lambda: Fe.top_patches(NET, CONV, X4, k=0), "k")
bad("top_patches: channels=[99]", lambda: Fe.top_patches(NET, CONV, X4, channels=[99]), "channel", "99")
bad("top_patches: channels=[-1]", lambda: Fe.top_patches(NET, CONV, X4, channels=[-1]), "channel", "-1")
bad("top_patches: channels=[1.5]", lambda: Fe.top_patches(NET, CONV, X4, channels=[1.5]), "channel", "1.5")
bad("top_patches: channels=[]", lambda: Fe.top_patches(NET, CONV, X4, channels=[]), "channels")
bad("top_patches: duplicate channels", lambda: Fe.top_patches(NET, CONV, X4, channels=[1, 1]), "channel", "twice",
    "duplicate")
bad("top_patches: batch_size=0", lambda: Fe.top_patches(NET, CONV, X4, batch_size=0), "batch_size")
bad("top_patches: empty image tensor", lambda: Fe.top_patches(NET, CONV, EMPTY), "empty", "data")
bad("top_patches: 3-D image tensor", lambda: Fe.top_patches(NET, CONV, X4[0]), "(n,c,h,w)", "data")
bad("top_patches: list of strings", lambda: Fe.top_patches(NET, CONV, ["a.png", "b.png"]), "str", "data")
bad("top_patches: field_method='bogus'", lambda: Fe.top_patches(NET, CONV, X4, field_method="bogus"), "method")
bad("top_patches: layer='nosuch'", lambda: Fe.top_patches(NET, "nosuch", X4), "nosuch")
bad("top_patches: NaN images", lambda: Fe.top_patches(NET, CONV, torch.cat([XNAN, X])), "nan")
bad("top_patches: uint8 images", lambda: Fe.top_patches(NET, CONV, X8), "uint8", "float")

# --------------------------------------------------------------------------- models

AREA = "models"
Mo = gs.models
CKPT = TMP / "digits2.pt"
Mo.save(classifier(2), CKPT)
(TMP / "empty.pt").write_bytes(b"")
(TMP / "text.pt").write_text("not a checkpoint\n")
(TMP / "truncated.pt").write_bytes(CKPT.read_bytes()[:200])
(TMP / "a_dir").mkdir(exist_ok=True)
ok("build: digitsnet with 2 classes from a 2-class checkpoint", lambda: Mo.build("digitsnet", num_classes=2,
                                                                                 weights=CKPT))
ok("build: num_classes=np.int64(3)", lambda: Mo.build("digitsnet", num_classes=np.int64(3)))
bad("build: unknown spec", lambda: Mo.build("digitsnett"), "digitsnett")
bad("build: spec=123", lambda: Mo.build(123), "spec")
bad("build: num_classes=0", lambda: Mo.build("digitsnet", num_classes=0), "num_classes")
bad("build: num_classes=1.5", lambda: Mo.build("digitsnet", num_classes=1.5), "num_classes")
bad("build: missing weights file", lambda: Mo.build("digitsnet", weights=TMP / "missing.pt"), "missing.pt")
bad("build: 10-class model, 2-class weights", lambda: Mo.build("digitsnet", num_classes=10, weights=CKPT),
    "fc2", "shape")
bad("build: torchvision:nosuch", lambda: Mo.build("torchvision:nosuchnet"), "nosuchnet")
bad("load: missing file", lambda: Mo.load(TMP / "missing.pt", model=classifier(2)), "missing.pt")
bad("load: empty file", lambda: Mo.load(TMP / "empty.pt", model=classifier(2)), "empty.pt")
bad("load: text file", lambda: Mo.load(TMP / "text.pt", model=classifier(2)), "text.pt")
bad("load: truncated checkpoint", lambda: Mo.load(TMP / "truncated.pt", model=classifier(2)), "truncated.pt")
bad("load: a directory", lambda: Mo.load(TMP / "a_dir", model=classifier(2)), "a_dir")
bad("load: model='nosuch'", lambda: Mo.load(CKPT, model="nosuch"), "nosuch")
bad("save: not a module", lambda: Mo.save("net", TMP / "x.pt"), "module")
bad("save: path is a directory", lambda: Mo.save(NET, TMP / "a_dir"), "a_dir")
bad("with_normalization: 2 means for 3 channels", lambda: Mo.with_normalization(NET, (0.5, 0.5), (0.2, 0.2))(X),
    "mean", "channel")
bad("with_normalization: std=0", lambda: Mo.with_normalization(NET, 0.5, 0.0), "std")

# --------------------------------------------------------------------------- data

AREA = "data"
D = gs.data
T = gs.data
SAMPLE = roads(1)[0]
bad("RoadScenes: n=-1", lambda: D.RoadScenes(-1), "n")
bad("RoadScenes: size=(0, 0)", lambda: D.RoadScenes(2, size=(0, 0)), "size")
bad("RoadScenes: task='bogus'", lambda: D.RoadScenes(2, task="bogus"), "task")
bad("RoadScenes: shortcut=1.5", lambda: D.RoadScenes(2, shortcut=1.5), "shortcut")
bad("RoadScenes: pothole_rate=nan", lambda: D.RoadScenes(2, pothole_rate=float("nan")), "pothole_rate")
bad("Digits: split='bogus'", lambda: D.Digits("bogus"), "split")
bad("Digits: size=0", lambda: D.Digits(size=0), "size")
bad("ImageFolder: missing folder", lambda: D.ImageFolder(TMP / "nofolder"), "nofolder")
bad("Cityscapes: missing root", lambda: D.Cityscapes(TMP / "nocity"), "nocity")
bad("VOCDetection: missing root", lambda: D.VOCDetection(TMP / "novoc"), "novoc")
bad("DrivingLog: missing csv", lambda: D.DrivingLog(TMP / "nolog.csv"), "nolog.csv")
bad("load_dataset: unknown kind", lambda: D.load_dataset("bogus:1"), "bogus")
bad("load_dataset: empty spec", lambda: D.load_dataset(""), "spec", "empty")
bad("Resize(0)", lambda: T.Resize(0), "size")
bad("Resize(-1)", lambda: T.Resize(-1), "size")
bad("Resize((1, 2, 3))", lambda: T.Resize((1, 2, 3)), "size")
bad("Resize(1.5)", lambda: T.Resize(1.5), "size")
ok("Resize(np.int64(8))", lambda: T.Resize(np.int64(8))(SAMPLE))
bad("CenterCrop larger than the image", lambda: T.CenterCrop(99)(SAMPLE), "size", "99")
bad("RandomCrop(0)", lambda: T.RandomCrop(0), "size")
bad("HorizontalFlip(p=1.5)", lambda: T.HorizontalFlip(p=1.5), "p")
bad("HorizontalFlip(p=nan)", lambda: T.HorizontalFlip(p=float("nan")), "p")
bad("Brightness(delta=-1)", lambda: T.Brightness(delta=-1.0), "delta")
bad("Brightness(delta=nan)", lambda: T.Brightness(delta=float("nan")), "delta")
bad("Compose([1])", lambda: T.Compose([1]), "transform", "callable")
bad("Compose(Resize(8)) (not a list)", lambda: T.Compose(T.Resize(8)), "transforms", "list")
bad("Resize on a Sample with a 2-D image",
    lambda: T.Resize(8)(D.Sample(torch.rand(16, 16), "a")), "image")
bad("Sample: numpy image in collate", lambda: D.collate([D.Sample(np.zeros((3, 4, 4), np.float32), "a")]), "image")
bad("Sample: 4-D image", lambda: D.collate([D.Sample(torch.rand(1, 3, 4, 4), "a")]), "image")
bad("Sample: non-integer float segmentation",
    lambda: D.collate([D.Sample(torch.rand(3, 4, 4), "a", torch.full((4, 4), 1.5))]), "segmentation")
bad("Sample: segmentation of another size",
    lambda: D.collate([D.Sample(torch.rand(3, 4, 4), "a", torch.zeros(5, 5, dtype=torch.long))]), "segmentation")
bad("Sample: boxes (N,3)",
    lambda: D.collate([D.Sample(torch.rand(3, 4, 4), "a", boxes=torch.zeros(2, 3))]), "boxes")
bad("collate([])", lambda: D.collate([]), "empty", "samples")
bad("collate: images of two sizes",
    lambda: D.collate([D.Sample(torch.rand(3, 4, 4), "a"), D.Sample(torch.rand(3, 5, 5), "b")]), "size")
bad("collate: one Sample, not a list", lambda: D.collate(SAMPLE), "samples", "list")
bad("collate: a list of tensors", lambda: D.collate([X[0], X[1]]), "sample")
bad("preview_grid: cols=0", lambda: D.preview_grid(roads(2), indices=2, cols=0), "cols")
bad("preview_grid: indices=[99]", lambda: D.preview_grid(roads(2), indices=[99]), "99", "indices")
bad("save_preview: scale=0", lambda: D.save_preview(roads(2), TMP / "p.png", indices=2, scale=0), "scale")

# --------------------------------------------------------------------------- train

AREA = "train"
Tr = gs.train
TRAIN = roads(4)


def _fit(model: nn.Module | None = None, data: Any = TRAIN, **kw: Any) -> Any:
    kw = {"task": "classification", "epochs": 1, "batch_size": 4, "progress": False, **kw}
    return Tr.fit(classifier(2) if model is None else model, data, **kw)


ok("fit: valid", lambda: _fit())
bad("fit: epochs=0", lambda: _fit(epochs=0), "epochs")
bad("fit: epochs=1.5", lambda: _fit(epochs=1.5), "epochs")
bad("fit: batch_size=0", lambda: _fit(batch_size=0), "batch_size")
bad("fit: lr=-1", lambda: _fit(lr=-1.0), "lr")
bad("fit: lr=nan", lambda: _fit(lr=float("nan")), "lr")
bad("fit: lr='big'", lambda: _fit(lr="big"), "lr")
bad("fit: weight_decay=-1", lambda: _fit(weight_decay=-1.0), "weight_decay")
bad("fit: weight_decay=nan", lambda: _fit(weight_decay=float("nan")), "weight_decay")
bad("fit: task='bogus'", lambda: _fit(task="bogus"), "task")
bad("fit: train=[]", lambda: _fit(data=[]), "train", "empty")
bad("fit: train is an image tensor", lambda: _fit(data=X4), "train", "sample")
bad("fit: augment='flip'", lambda: _fit(augment="flip"), "augment")
bad("fit: class_weights of the wrong length", lambda: _fit(class_weights=[1.0, 1.0, 1.0]), "class_weights")
bad("fit: negative class_weights", lambda: _fit(class_weights=[1.0, -1.0]), "class_weights")
bad("fit: device='bogus'", lambda: _fit(device="bogus"), "device", "bogus")
bad("fit: model is not a module", lambda: _fit(model="digitsnet"), "model")
bad("fit: classification with float (steering) labels", lambda: _fit(data=roads(4, "steering")), "float", "target",
    "label")
bad("fit: monitor='bogus'", lambda: _fit(monitor="bogus"), "monitor", "bogus")
bad("fit: out is an existing file", lambda: _fit(out=CKPT), "out", str(CKPT.name))
bad("fit: val=[]", lambda: _fit(val=[]), "val", "empty")
bad("fit: labels out of range for a 2-class model", lambda: _fit(
    data=[D.Sample(X[0], "a", target=5), D.Sample(X[1], "b", target=0)]), "5", "class", "target")
bad("evaluate: task='bogus'", lambda: Tr.evaluate(classifier(2), TRAIN, task="bogus"), "task")
bad("evaluate: empty dataset", lambda: Tr.evaluate(classifier(2), [], task="classification"), "empty")
bad("train_val_split: val_fraction=1.5", lambda: Tr.train_val_split(10, val_fraction=1.5), "val_fraction")
bad("train_val_split: val_fraction=nan", lambda: Tr.train_val_split(10, val_fraction=float("nan")), "val_fraction")
bad("kfold: k=1", lambda: Tr.kfold(10, k=1), "k")
bad("kfold: k=99 for 10 items", lambda: Tr.kfold(10, k=99), "k")
bad("subset: indices=[99]", lambda: Tr.subset(TRAIN, [99]), "indices", "99")
bad("subset: indices=[-1]", lambda: Tr.subset(TRAIN, [-1]), "indices", "-1")

# --------------------------------------------------------------------------- viz

AREA = "viz"
V = gs.viz
ok("overlay: valid", lambda: V.overlay(X[0], MAPS[0]))
ok("overlay: float64 image and map", lambda: V.overlay(X64[0], MAPS[0].double()))
bad("overlay: alpha=1.5", lambda: V.overlay(X[0], MAPS[0], alpha=1.5), "alpha")
bad("overlay: alpha=nan", lambda: V.overlay(X[0], MAPS[0], alpha=float("nan")), "alpha")
bad("overlay: heatmap (B,H,W)", lambda: V.overlay(X[0], MAPS), "heatmap")
bad("overlay: image (B,C,H,W)", lambda: V.overlay(X, MAPS[0]), "image")
bad("overlay: NaN heatmap", lambda: V.overlay(X[0], MAPS_NAN[1]), "heatmap", "nan")
bad("colorize: cmap='nosuch'", lambda: V.colorize(MAPS[0], cmap="nosuch"), "nosuch", "cmap")
bad("colorize: normalize='bogus'", lambda: V.colorize(MAPS[0], normalize="bogus"), "bogus", "normalize")
bad("colorize: NaN heatmap", lambda: V.colorize(MAPS_NAN[1]), "heatmap", "nan")
bad("colorize: empty heatmap", lambda: V.colorize(torch.zeros(0, 0)), "heatmap", "empty")
ok("colorize: numpy heatmap", lambda: V.colorize(MAPS[0].numpy()))
bad("grid: 3-D images", lambda: V.grid(X[0], {"m": MAPS}), "images")
bad("grid: fewer maps than images", lambda: V.grid(X, {"m": MAPS[:1]}), "maps", "m")
bad("grid: max_images=0", lambda: V.grid(X, {"m": MAPS}, max_images=0), "max_images")
ok("grid: maps of another size (resized to the images)", lambda: V.grid(X, {"m": MAPS[:, :8, :8]}))
bad("grid: 3 titles for 2 images", lambda: V.grid(X, {"m": MAPS}, titles=["a"]), "titles")
bad("to_hwc: 4-D image", lambda: V.to_hwc(X), "image")


# --------------------------------------------------------------------------- running


class _TimeOut(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _TimeOut(f"no answer within {TIME_LIMIT:.0f} s")


def _raised_by_gradsum(exc: BaseException) -> bool:
    """The innermost frame is a `raise` statement in gradsum's source."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = os.path.abspath(tb.tb_frame.f_code.co_filename)
    if not path.startswith(GS_DIR + os.sep):
        return False
    line = linecache.getline(path, tb.tb_lineno).strip()
    return line.startswith("raise") or " raise " in f" {line}"


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def classify(case: Case) -> tuple[str, str, float]:
    """(outcome, note, seconds)."""
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            result = case.fn()
    except _TimeOut as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return "obscure", f"time-out: {exc}", time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - classifying every exception is the point
        signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - start
        note = _message(exc)
        if case.valid:
            return "rejected", note, seconds
        text = str(exc).lower()
        is_clear = (isinstance(exc, CLEAR_TYPES) and _raised_by_gradsum(exc)
                    and (not case.names or any(n in text for n in case.names)))
        if is_clear:
            return "clear", note, seconds
        why = "" if _raised_by_gradsum(exc) or not isinstance(exc, CLEAR_TYPES) else " [raised inside a library]"
        if isinstance(exc, CLEAR_TYPES) and _raised_by_gradsum(exc):
            why = f" [does not name {'/'.join(case.names)}]"
        return "obscure", note + why, seconds
    signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - start
    if case.valid or case.either:
        problem = case.check(result) if case.check is not None else None
        return ("silent", f"wrong result: {problem}", seconds) if problem else ("works", "", seconds)
    return "silent", "no error", seconds


COLUMNS = ("clear", "obscure", "silent", "works", "rejected")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="print every case that is not clear or works")
    parser.add_argument("--all", action="store_true", help="print every case")
    parser.add_argument("--area", default=None, help="only this area (explain, semantic, metrics, ...)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    print(f"gradsum {gs.__version__} from {gs.__file__}")
    cases = [c for c in CASES if args.area is None or c.area == args.area]
    counts: dict[str, dict[str, int]] = {}
    lines: list[str] = []
    t0 = time.perf_counter()
    for case in cases:
        outcome, note, seconds = classify(case)
        row = counts.setdefault(case.area, dict.fromkeys(COLUMNS, 0))
        row[outcome] += 1
        if args.all or (args.details and outcome not in ("clear", "works")):
            lines.append(f"  {outcome:8s} {case.area:11s} {case.name} ({seconds:.1f}s)\n           {note[:220]}")
    if lines:
        print("\n".join(lines))
    header = f"{'area':12s} {'tried':>6s} " + " ".join(f"{c:>8s}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    total = dict.fromkeys(COLUMNS, 0)
    for area, row in counts.items():
        n = sum(row.values())
        print(f"{area:12s} {n:6d} " + " ".join(f"{row[c]:8d}" for c in COLUMNS))
        for c in COLUMNS:
            total[c] += row[c]
    print("-" * len(header))
    print(f"{'total':12s} {sum(total.values()):6d} " + " ".join(f"{total[c]:8d}" for c in COLUMNS))
    print(f"({time.perf_counter() - t0:.0f} s; clear/obscure/silent count invalid inputs, works/rejected valid ones; "
          "'either' cases count as works or clear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
