"""`gradsum demo`: the embedded main job, end to end, on generated road scenes.

1. data: synthetic road scenes (segmentation, steering, pothole labels);
2. training: a PilotNet steering model (a checkpoint per epoch), a pothole classifier, and
   the same classifier on data with a KNOWN shortcut (vegetation tells the label);
3. heatmaps: held-out scenes explained with several methods;
4. GradSUM: profiles per model, per method and per training epoch against random models;
5. the shortcut verdict, in words;
6. CNN versus ViT: a small vision transformer trained on the same shortcut data, profiled and
   rated with Grad-CAM and the attention methods (`gradsum.run.demo_vit`);
7. one HTML report.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["DemoConfig", "run_demo"]

CAM_METHODS = ["gradcam", "gradcam++", "layercam", "hirescam", "eigencam"]
GRADIENT_METHODS = ["saliency", "guided-backprop", "integrated-gradients"]
# the Ada-SISE comparison table's methods (those registered in this version)
EVAL_METHODS = ["gradcam", "gradcam++", "scorecam", "integrated-gradients", "fullgrad", "extremal", "rise", "sise",
                "adasise"]


@dataclass
class DemoConfig:
    """Sizes of the demo; `quick()` is the 2-minute version."""

    size: tuple[int, int] = (66, 200)  # PilotNet's input
    pothole_size: tuple[int, int] = (64, 128)
    steer_train: int = 1600
    steer_epochs: int = 6
    pothole_train: int = 800
    pothole_epochs: int = 5
    # the ViT learns potholes from ~3000 scenes x 12 epochs at 64x128 (vit-tiny's docstring); from fewer
    # scenes or at 48x96 only the vegetation shortcut (the quick demo says so in its report)
    vit_train: int = 3000
    vit_epochs: int = 12
    vit_lr: float = 1e-3
    test: int = 120
    baseline: int = 10
    gallery: int = 6
    seed: int = 0
    eval_images: int = 8
    sanity_images: int = 16
    method_options: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"integrated-gradients": {"steps": 16}})
    eval_options: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "integrated-gradients": {"steps": 16, "baseline": "blur"}, "rise": {"n_masks": 500, "baseline": "mean"},
        "extremal": {"iterations": 60}})
    curve_steps: int = 25  # deletion / insertion points per curve
    #: where the demo trains, explains, profiles and evaluates: auto (CUDA, else MPS, else the CPU) | cpu |
    #: cuda | cuda:N | mps
    device: str = "auto"

    @classmethod
    def quick(cls) -> DemoConfig:
        # 600 scenes x 5 epochs: the pothole classifier reaches ~0.94 validation accuracy (300 x 3: ~0.6,
        # which made the evaluation table meaningless)
        return cls(pothole_size=(48, 96), steer_train=400, steer_epochs=3, pothole_train=600, pothole_epochs=5,
                   vit_train=1200, vit_epochs=6, test=40, baseline=3,
                   gallery=4, eval_images=4, sanity_images=6, curve_steps=16,
                   method_options={"integrated-gradients": {"steps": 8}},
                   eval_options={"integrated-gradients": {"steps": 8, "baseline": "blur"},
                                 "rise": {"n_masks": 200, "baseline": "mean"}, "extremal": {"iterations": 40}})


class _Log:
    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.start = time.perf_counter()

    def __call__(self, text: str) -> None:
        self.echo(f"[{time.perf_counter() - self.start:6.1f}s] {text}")


#: the held-out steering scenes are read as a drive at this rate for the autonomy metric
AUTONOMY_FPS = 10
#: steering error (of the -1..1 range) beyond which a human would take over
AUTONOMY_THRESHOLD = 0.2


def _steering_per_epoch(run: Path, test: Any, device: torch.device) -> Any:
    """MSE and autonomy (gs.metrics.autonomy) of every epoch checkpoint of a steering run on
    the held-out scenes, in their order."""
    import pandas as pd

    import gradsum as gs

    batch = gs.data.collate([test[i] for i in range(len(test))])
    actual = torch.as_tensor(batch.targets, dtype=torch.float32)
    rows = []
    for checkpoint in sorted((run / "checkpoints").glob("epoch_*.pt")):
        model = gs.models.build("pilotnet", weights=checkpoint).to(device).eval()
        with torch.no_grad():
            predicted = torch.cat([model(batch.images[i:i + 256].to(device)).flatten().cpu()
                                   for i in range(0, len(actual), 256)])
        drive = gs.metrics.autonomy(predicted, actual, fps=AUTONOMY_FPS, threshold=AUTONOMY_THRESHOLD)
        rows.append({"epoch": int(checkpoint.stem.split("_")[-1]), "mse": float(((predicted - actual) ** 2).mean()),
                     "autonomy_percent": drive.percent, "interventions": drive.interventions,
                     "seconds": drive.elapsed_seconds})
    return pd.DataFrame(rows)


def _train(name: str, model: torch.nn.Module, train: Any, val: Any, task: str, epochs: int, out: Path, seed: int,
           lr: float) -> Any:
    """Train `model` where it is (the demo's device) with a seeded initialisation."""
    import gradsum as gs

    return gs.train.fit(model, train, val, task=task, epochs=epochs, batch_size=32, lr=lr, seed=seed,
                        out=out / "models" / name, progress=True, reinit=True)


def run_demo(out: str | Path, config: DemoConfig | None = None, echo: Callable[[str], None] = print) -> Path:
    """Run the demo into `out` on `config.device` and return the path of report.html. An
    absent device is a one-line ValueError before anything is written. Maps that are zero
    everywhere are expected here (randomly initialised copies, steering explained in one
    direction) and the report shows them, so their warning is not repeated."""
    from gradsum.core.devices import resolve_device
    from gradsum.methods import ZeroMapWarning

    resolve_device((config or DemoConfig()).device)  # an absent device: one line, nothing written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroMapWarning)
        return _run_demo(out, config, echo)


def _run_demo(out: str | Path, config: DemoConfig | None, echo: Callable[[str], None]) -> Path:
    import gradsum as gs
    from gradsum.core.devices import device_info, resolve_device
    from gradsum.data.subsets import class_names
    from gradsum.report import ReportSpec, render_report
    from gradsum.report.plots import enrichment_heatmap, epoch_lines, image_panel, scene_grid
    from gradsum.report.sections_profile import write_profile_report
    from gradsum.run.demo_vit import vit_comparison
    from gradsum.run.runner import write_table
    from gradsum.run.store import save_figure, write_json

    cfg = config or DemoConfig()
    dev = resolve_device(cfg.device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(echo)
    write_json(out / "demo_config.json", {**asdict(cfg), "runtime": device_info(dev)})
    log(f"running on {dev}")
    spec = ReportSpec("gradsum demo: what do road models look at?",
                      f"synthetic road scenes ({cfg.size[0]}x{cfg.size[1]} for steering, {cfg.pothole_size[0]}x"
                      f"{cfg.pothole_size[1]} for potholes), seed {cfg.seed}, "
                      f"{'quick' if cfg.steer_train < 1000 else 'full'} run")
    table = gs.data.ROADS if hasattr(gs.data, "ROADS") else gs.semantic.ROADS
    size = cfg.size

    # 1. data ---------------------------------------------------------------------------------
    log("generating road scenes")
    cached = gs.train.CachedDataset  # each scene is generated once, then reused by every epoch and pass
    steer_train = cached(gs.data.RoadScenes(cfg.steer_train, size=size, seed=cfg.seed, task="steering"))
    steer_test = cached(gs.data.RoadScenes(cfg.test, size=size, seed=cfg.seed + 1000, task="steering"))
    psize = cfg.pothole_size
    clean_train = cached(gs.data.RoadScenes(cfg.pothole_train, size=psize, seed=cfg.seed + 1, task="pothole"))
    shortcut_train = cached(gs.data.RoadScenes(cfg.pothole_train, size=psize, seed=cfg.seed + 2, task="pothole",
                                               shortcut=1.0))
    pothole_test = cached(gs.data.RoadScenes(cfg.test, size=psize, seed=cfg.seed + 2000, task="pothole"))
    examples = gs.data.samples.collate([shortcut_train[i] for i in range(8)])
    save_figure(out / "figures/data_scenes.png", scene_grid(
        examples.images, examples.segmentations, table,
        titles=[f"pothole={int(t)}  veg={100 * float((s == table.by_name('vegetation').id).float().mean()):.0f}%"
                for t, s in zip(examples.targets, examples.segmentations, strict=True)]))
    spec.section("data", "Data", [
        f"Procedural road scenes with Cityscapes labels plus 'pothole': {len(steer_train)} training scenes for "
        f"steering (target: steering angle in [-1, 1], positive = steer right), {len(clean_train)} for pothole "
        f"detection without shortcut, {len(shortcut_train)} with a KNOWN shortcut (shortcut=1.0: good roads come "
        f"with much vegetation, roads with potholes with little), and {cfg.test} held-out scenes of each task "
        "(no shortcut) for explanations and profiles.",
    ]).figure("figures/data_scenes.png", "Training scenes with a shortcut and their segmentations (pothole label "
                                         "and vegetation pixel share above each)", wide=True)

    # 2. training -----------------------------------------------------------------------------
    log("training PilotNet (steering)")
    pilot = gs.models.build("pilotnet").to(dev)
    h_steer = _train("pilotnet", pilot, steer_train, steer_test, "regression", cfg.steer_epochs, out, cfg.seed, 1e-3)
    log(f"  steering MAE {h_steer.final.get('val_mae', float('nan')):.3f}")
    log("training the pothole classifier (no shortcut)")
    clean = gs.models.build("potholenet").to(dev)
    h_clean = _train("pothole_clean", clean, clean_train, pothole_test, "classification", cfg.pothole_epochs, out,
                     cfg.seed, 2e-3)
    log("training the pothole classifier (with the vegetation shortcut)")
    short = gs.models.build("potholenet").to(dev)
    h_short = _train("pothole_shortcut", short, shortcut_train, pothole_test, "classification", cfg.pothole_epochs,
                     out, cfg.seed, 2e-3)
    rows = []
    for name, h in (("pilotnet (steering)", h_steer), ("potholenet, no shortcut", h_clean),
                    ("potholenet, shortcut", h_short)):
        final = h.final
        rows.append({"model": name, "epochs": len(h.epochs), "seconds": round(h.seconds, 1),
                     **{k: final[k] for k in ("val_mae", "val_rmse", "val_accuracy") if k in final}})
    import pandas as pd

    write_table(out / "tables/training.parquet", pd.DataFrame(rows))
    write_table(out / "tables/steering_per_epoch.parquet", _steering_per_epoch(out / "models" / "pilotnet", steer_test,
                                                                               dev))
    section = spec.section("models", "Models and training", [
        "PilotNet (Bojarski et al. 2016) regresses the steering angle; the pothole classifier has three conv "
        "layers (64, 32, 16 filters) and a dense head. Validation is on held-out scenes without shortcut, so the "
        "shortcut model's accuracy shows how much it relies on vegetation.",
        f"Steering per epoch: MSE and NVIDIA's autonomy (Bojarski et al. 2016: 1 - interventions x 6 s / elapsed "
        f"time), computed offline on the held-out scenes taken as a drive at {AUTONOMY_FPS} frames/s, a human "
        f"taking over for 6 s whenever the predicted steering is off by more than {AUTONOMY_THRESHOLD} (steering "
        "runs from -1 to 1). The scenes are independent frames, not a drive, so autonomy here compares epochs "
        "and models rather than predicting time on a road.",
    ]).table("tables/training.parquet", "Final validation metrics", digits=3)
    section.table("tables/steering_per_epoch.parquet", "PilotNet per epoch: MSE and autonomy", digits=3)
    for name, h in (("pilotnet", h_steer), ("pothole_clean", h_clean), ("pothole_shortcut", h_short)):
        if h.loss_plot is not None:
            section.figure(str(Path(h.loss_plot).relative_to(out)), f"{name}: training and validation loss per epoch")

    # 3. heatmaps -----------------------------------------------------------------------------
    log("explaining held-out scenes")
    methods = CAM_METHODS + GRADIENT_METHODS
    spec.section("heatmaps", "Heatmaps", [
        "Held-out scenes explained with every method (rows). For the classifiers the explained class is the "
        "predicted one; for the steering model the default target is the output itself (what pushes the "
        "prediction to the right). Each row has its colour bar: sequential colours (jet) for maps min-max scaled "
        "to 0..1 per image; red/blue for signed maps (integrated gradients), on a symmetric scale per image from "
        "-m to +m, m = the 99.5th percentile of |map| (red pushes the score up, blue down, white/transparent: "
        "no effect).",
    ])
    for name, model, ds in (("pothole_shortcut", short, pothole_test), ("pothole_clean", clean, pothole_test),
                            ("pilotnet", pilot, steer_test)):
        batch = gs.data.samples.collate([ds[i] for i in range(cfg.gallery)])
        images = batch.images.to(dev)
        res = gs.explain(model, images, methods=methods, layer=gs.models.default_layer_for(model) or "auto",
                         options=cfg.method_options)
        with torch.no_grad():
            output = model(images).cpu()
        names = class_names(ds, output.shape[1])
        titles = ([f"steer {float(o):+.2f} (true {float(t):+.2f})" for o, t in zip(output[:, 0], batch.targets, strict=True)]
                  if output.shape[1] == 1 else
                  [f"pred {names[int(o)]}\n(true {names[int(t)]})" for o, t in zip(output.argmax(1), batch.targets,
                                                                                    strict=True)])
        save_figure(out / f"figures/gallery_{name}.png", gs.viz.grid(batch.images, res, titles=titles))
        spec.figure(f"figures/gallery_{name}.png", f"{name}: methods (rows) x held-out scenes (columns)", wide=True)

    # 4. GradSUM ------------------------------------------------------------------------------
    log("GradSUM: pothole classifiers with and without the shortcut")
    layer = gs.models.default_layer_for(short) or "auto"
    # explain the "good road" decision (class 0): what makes each classifier say there is no pothole
    common = {"layer": layer, "seed": cfg.seed, "options": cfg.method_options, "target": 0, "device": dev}
    prof_clean = gs.gradsum(clean, pothole_test, method=methods, model_name="no shortcut", **common)
    prof_short = gs.gradsum(short, pothole_test, method=methods, model_name="shortcut", **common)
    # random copies: the CAM methods share one pass, so their baseline costs one Grad-CAM
    random_models = gs.gradsum(clean, pothole_test, method=CAM_METHODS, baseline=cfg.baseline, indices=None,
                               model_name="random", **{**common, "options": None})
    pothole_profile = prof_clean.concat(prof_short)
    pothole_profile.baseline = random_models.baseline
    write_table(out / "tables/pothole_profile_images.parquet", pothole_profile.images)
    spec_prof = write_profile_report(out, _only(pothole_profile, method="gradcam"), table,
                                     title="", spec=spec, section_prefix="pothole_")
    spec_prof.text("Both pothole classifiers are explained for the 'no pothole' class (what makes the model "
                   "decide that the road is fine), on the same held-out scenes without shortcut. The verdict "
                   "compares each model's enrichment with that of randomly initialised copies of the same "
                   "architecture (same method, same images, same class).")
    summary = pothole_profile.summary(n_boot=200)
    write_table(out / "tables/pothole_summary.parquet", summary)
    save_figure(out / "figures/compare_enrichment.png", enrichment_heatmap(
        summary, table, baseline=pothole_profile.baseline_summary(n_boot=1),
        title="Enrichment per category (share of the heatmap / share of the pixels), class 'no pothole'"))
    gradcam = summary[summary["method"] == "gradcam"]

    def enrichment(level: str, category: str) -> str:
        rows = gradcam[(gradcam["level"] == level) & (gradcam["category"] == category)].set_index("model")
        short, clean = (float(rows["pooled_enrichment"].get(m, float("nan"))) for m in ("shortcut", "no shortcut"))
        return f"{short:.2f} for the shortcut model, {clean:.2f} without shortcut (ratio {short / clean:.2f})"

    spec.section("comparison", "Model and method comparison", [
        f"Grad-CAM enrichment of the label vegetation: {enrichment('label', 'vegetation')}; of its category "
        f"nature (vegetation and terrain): {enrichment('category', 'nature')}.",
        "Each panel is one pothole classifier, each row a method, each column a semantic category; the number is "
        "the enrichment (share of the heatmap / share of the pixels): above 1 (red) the heatmap falls on the "
        "category more often than the category occurs, below 1 (blue) less. The rows 'random (method)' are the "
        "same method on randomly initialised copies of the architecture (mean over the copies): a learned model "
        "that looks like its random row has not learned to look anywhere in particular.",
    ]).figure("figures/compare_enrichment.png", "Enrichment per model (panels), method (rows) and category "
                                                "(columns), with the random-model baseline (last rows)", wide=True)
    spec.table("tables/pothole_summary.parquet", "All models and methods (category level)",
               columns=["model", "method", "category", "pixel_share", "pooled_share", "pooled_enrichment",
                        "value_mean"], max_rows=200, query="level == 'category' and images > 0", collapsed=True)

    log("GradSUM: steering model per training epoch")
    steer_target = gs.RegressionTarget(0, sign="prediction")  # what it steers by, whichever the direction
    epoch_profiles = []
    for k, ckpt in enumerate(h_steer.checkpoints, start=1):
        net = gs.models.load(ckpt, model=gs.models.build("pilotnet")).to(dev)
        epoch_profiles.append(gs.gradsum(net, steer_test, method="gradcam", layer=gs.models.default_layer_for(net),
                                         target=steer_target, model_name="pilotnet", epoch=k, device=dev))
    steer_profile = epoch_profiles[0]
    for p in epoch_profiles[1:]:
        steer_profile = steer_profile.concat(p)
    steer_summary = steer_profile.summary(n_boot=200)
    write_table(out / "tables/steering_epochs.parquet", steer_summary)
    save_figure(out / "figures/steering_epochs.png", epoch_lines(
        steer_summary, table, column="pooled_share", title="PilotNet, Grad-CAM: share of the heatmap per epoch"))
    spec.section("epochs", "How the steering model's attention changes during training", [
        "GradSUM of the PilotNet checkpoint saved after each epoch, on the same held-out scenes. Each image is "
        "explained in the direction of its own prediction (what makes the model steer the way it steers).",
    ]).figure("figures/steering_epochs.png", "Share of the Grad-CAM heatmap per category after each training epoch")

    log("per-image panels")
    names = class_names(pothole_test, 2)
    spec.section("images", "Per-image profiles", [
        f"Image, segmentation, Grad-CAM overlay and the share of the heatmap per category, for the shortcut model, "
        f"explained for the class '{names[0]}' as in the profiles above (the title gives the predicted class)."])
    res = gs.explainer("gradcam", short, layer=layer)
    images = pothole_profile.images
    for i in range(3):
        s = pothole_test[i]
        x = s.image[None].to(dev)
        attr = res(x, 0)  # the class of the profile rows drawn beside it
        with torch.no_grad():
            predicted = int(short(x).argmax(1)[0])
        rows_i = images[(images["image_id"] == s.id) & (images["model"] == "shortcut") & (images["method"] == "gradcam")]
        save_figure(out / f"figures/panel_{i}.png", image_panel(
            s.image, s.segmentation, attr.maps[0].cpu(), rows_i, table, heatmap_title=f"Grad-CAM, class '{names[0]}'",
            title=f"{s.id}: pred {names[predicted]} (true {names[int(s.target)]})"))
        spec.figure(f"figures/panel_{i}.png", f"{s.id}")

    _evaluation(out, spec, cfg, clean, pothole_test, layer, log)
    vit_train = cached(gs.data.RoadScenes(cfg.vit_train, size=psize, seed=cfg.seed + 3, task="pothole",
                                          shortcut=1.0))
    vit_comparison(out, spec, cfg, short, vit_train, pothole_test, log, _train)
    _extras(out, spec, cfg, clean, short, pothole_test, log)
    spec.save(out)
    report = render_report(out)
    log(f"report written: {report}")
    return report


def _evaluation(out: Path, spec: Any, cfg: DemoConfig, model: torch.nn.Module, test: Any, layer: Any,
                log: Callable[[str], None]) -> None:
    """Methods x metrics on the pothole boxes, and the model-randomisation sanity check."""
    import gradsum as gs
    from gradsum.data.subsets import with_boxes
    from gradsum.report.sections_eval import evaluation_section, sanity_section

    log("evaluation: heatmap methods x metrics on the pothole boxes")
    methods = [m for m in EVAL_METHODS if m in gs.available_methods()]
    boxed = with_boxes(test, cfg.eval_images)
    dev = next(model.parameters()).device
    result = gs.metrics.benchmark(model, boxed, methods, layer=layer, target=1, batch_size=8, seed=cfg.seed, device=dev,
                                  method_options=cfg.eval_options,
                                  metric_options={"deletion": {"deletion_substrate": "blur", "steps": cfg.curve_steps},
                                                  "drop": {"substrate": "blur"}, "increase": {"substrate": "blur"}})
    evaluation_section(out, spec, result, title="Evaluation: which heatmap is right?", intro=(
        "The pothole classifier (no shortcut) explained for the 'pothole' class on held-out scenes with "
        "potholes; the ground truth is the pothole boxes. EBPG: share of the heatmap energy inside the boxes; "
        "Bbox: fraction of the top-n pixels inside them (n = box area); Drop / Increase: confidence when only "
        "the top 15% pixels are kept; deletion (towards a blurred copy) and insertion (from a blurred copy) AUC "
        "of the class probability; cost in seconds and forward / backward passes per image. Integrated "
        "gradients starts from the same blurred copy and RISE masks to the mean colour: this model reads a black "
        "patch on the road as a pothole, so a black baseline would explain 'less pothole than a black image'."))
    log("sanity checks: cascading model randomisation")
    batch = gs.data.samples.collate([test[i] for i in range(cfg.sanity_images)])
    sanity = gs.metrics.sanity.model_randomization(model, batch.images.to(dev), ["gradcam", "saliency", "guided-backprop"],
                                                   layer=layer, mode="cascading", seed=cfg.seed)
    sanity_section(out, spec, sanity)


def _extras(out: Path, spec: Any, cfg: DemoConfig, clean: torch.nn.Module, short: torch.nn.Module, test: Any,
            log: Callable[[str], None]) -> None:
    """What the layers see and how the models break: the library computes the surveys, the
    report renders them."""
    from gradsum.adversarial import AttackBudget, attack_survey
    from gradsum.features import FeatureBudget, layer_survey
    from gradsum.report.sections_features import adversarial_section, features_section

    quick = cfg.steer_train < 1000
    log("what the layers see")
    layers = layer_survey(clean, test, budget=FeatureBudget.quick() if quick else FeatureBudget(), seed=cfg.seed)
    features_section(out, spec, layers)
    log("adversarial robustness")
    attacks = attack_survey({"no shortcut": clean, "shortcut": short}, test,
                            budget=AttackBudget.quick() if quick else AttackBudget(), seed=cfg.seed)
    adversarial_section(out, spec, attacks)


def _only(profile: Any, **equal: Any) -> Any:
    from gradsum.semantic import Profile

    images = profile.images
    base = profile.baseline
    for key, value in equal.items():
        images = images[images[key] == value]
        if base is not None:
            base = base[base[key] == value]
    return Profile(images.reset_index(drop=True), profile.settings, None if base is None else base.reset_index(drop=True))
