"""A survey of how classifiers break, as one result: per model a fooling image, accuracy
under FGSM and PGD for several budgets, a universal perturbation, and the transfer matrix of
every model's universal perturbation on every model.

`attack_survey` computes (models in parallel threads, one intra-op thread each);
`AttackSurvey` holds everything a report draws and tabulates, with its tables as methods
(`gradsum.report.sections_features.adversarial_section` renders it). Everything is in pixel
space [0,1]: eps 8/255 means 8 grey levels.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.adversarial._common import predict
from gradsum.adversarial.fgsm_pgd import fgsm, pgd
from gradsum.adversarial.fooling import FoolingResult, fooling_image
from gradsum.adversarial.universal import (
    TransferMatrix,
    UniversalResult,
    transfer_matrix,
    universal_perturbation,
)
from gradsum.core.probe import preserved_state
from gradsum.core.threads import one_intra_op_thread
from gradsum.data.subsets import class_names as dataset_class_names
from gradsum.data.subsets import dataset_images

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["AttackBudget", "AttackSurvey", "ModelAttacks", "attack_survey"]


@dataclass(frozen=True)
class AttackBudget:
    """Sizes of an attack survey: images attacked with FGSM/PGD, PGD steps, images a
    universal perturbation is computed on (as many others evaluate it), its passes,
    DeepFool iterations per image and radius xi (L-inf, pixel units), the fooling image's
    step limit and the FGSM/PGD budgets eps (pixel units)."""

    attack_images: int = 40
    pgd_steps: int = 4
    universal_images: int = 24
    universal_passes: int = 2
    deepfool_iter: int = 20
    xi: float = 10 / 255
    fool_steps: int = 100
    eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)

    @classmethod
    def quick(cls) -> AttackBudget:
        return cls(attack_images=20, pgd_steps=2, universal_images=12, universal_passes=1, deepfool_iter=10,
                   fool_steps=30)


@dataclass
class ModelAttacks:
    """One model's attacks. p_start (K,): class probabilities on the survey's start scene;
    source, target: its most and second most likely class there; fool: the start scene
    pushed towards `target` (signed-gradient steps of 1/255 until p >= 0.99 or the step
    limit); accuracy: {(attack, eps): accuracy in [0,1]} with ("clean", 0.0), then ("FGSM",
    eps) and ("PGD", eps) for each eps; universal: its universal perturbation; example_clean,
    example_perturbed (K,): class probabilities on the example held-out scene without and
    with the universal perturbation added (clipped to [0,1])."""

    p_start: torch.Tensor
    source: int
    target: int
    fool: FoolingResult
    accuracy: dict[tuple[str, float], float]
    universal: UniversalResult
    example_clean: torch.Tensor | None = None
    example_perturbed: torch.Tensor | None = None


@dataclass
class AttackSurvey:
    """How classifiers break on held-out scenes.

    models: {name: ModelAttacks} in the given order; class_names: one per class; start
    (1,C,H,W): the scene every fooling image starts from (the first attacked scene every
    model classifies correctly, else the first), scene its id; attacked: images attacked
    with FGSM/PGD; fit_images / heldout_images: scenes the universal perturbations are
    computed on / evaluated on; example (1,C,H,W): the held-out scene the perturbations are
    shown on; transfer: fooling rate of each model's perturbation (rows) on each model
    (columns), on the held-out scenes; budget, seed: as given."""

    models: dict[str, ModelAttacks]
    class_names: list[str]
    start: torch.Tensor
    scene: str
    attacked: int
    fit_images: int
    heldout_images: int
    example: torch.Tensor
    transfer: TransferMatrix
    budget: AttackBudget
    seed: int

    def fooling_table(self) -> pd.DataFrame:
        """Per model: scene, from_class, to_class, p_start / p_final (probability of the new
        class before / after), steps, reached_0.99, linf_255 (largest pixel change, grey
        levels) and max_steps."""
        import pandas as pd

        names = self.class_names
        records = []
        for m, r in self.models.items():
            linf = float((r.fool.images - self.start).abs().max())
            records.append({"model": m, "scene": self.scene, "from_class": names[r.source], "to_class": names[r.target],
                            "p_start": float(r.p_start[r.target]), "p_final": float(r.fool.probability[0]),
                            "steps": int(r.fool.steps[0]), "reached_0.99": bool(r.fool.reached[0]),
                            "linf_255": round(255 * linf, 2), "max_steps": self.budget.fool_steps})
        return pd.DataFrame(records)

    def accuracy_table(self) -> pd.DataFrame:
        """Tidy: one row per model, attack ("clean", "FGSM", "PGD") and eps, with eps_255,
        accuracy in [0,1], images attacked and pgd_steps (0 unless PGD)."""
        import pandas as pd

        return pd.DataFrame([{"model": m, "attack": attack, "eps": eps, "eps_255": round(255 * eps, 3), "accuracy": a,
                              "images": self.attacked, "pgd_steps": self.budget.pgd_steps if attack == "PGD" else 0}
                             for m, r in self.models.items() for (attack, eps), a in r.accuracy.items()])

    def accuracy_wide(self) -> pd.DataFrame:
        """One row per model and attack: model, attack, "clean (%)", then "eps {e}/255 (%)"
        per budget; accuracies in percent."""
        acc = self.accuracy_table()
        wide = acc[acc["attack"] != "clean"].pivot_table(index=["model", "attack"], columns="eps_255",
                                                         values="accuracy", sort=False)
        wide.columns = [f"eps {c:g}/255 (%)" for c in wide.columns]
        clean = acc[acc["attack"] == "clean"].set_index("model")["accuracy"]
        wide.insert(0, "clean (%)", [float(clean[m]) for m, _ in wide.index])
        return (100 * wide).reset_index()

    def universal_table(self) -> pd.DataFrame:
        """Per model: xi_255 and linf_255 (radius and largest change, grey levels),
        fooling_rate_fit on the scenes it was computed on, target_rate, reached, passes,
        fooling_rate_heldout (the transfer matrix's diagonal), fit_images, heldout_images."""
        import pandas as pd

        return pd.DataFrame([{"model": m, "xi_255": 255 * r.universal.xi, "linf_255": 255 * r.universal.norm,
                              "fooling_rate_fit": r.universal.fooling_rate, "target_rate": r.universal.target_rate,
                              "reached": r.universal.reached, "passes": r.universal.passes,
                              "fooling_rate_heldout": float(self.transfer.table.loc[m, m]),
                              "fit_images": self.fit_images, "heldout_images": self.heldout_images}
                             for m, r in self.models.items()])

    def transfer_table(self) -> pd.DataFrame:
        """The transfer matrix as columns: source, then one column per target model."""
        table = self.transfer.table.reset_index()
        table.columns.name = None
        return table


# ------------------------------------------------------------------------------------ helpers

def _per_model(models: dict[str, nn.Module], fn: Callable[[str, nn.Module], Any], workers: int) -> dict[str, Any]:
    """fn(name, model) for every model; models run in parallel threads (torch releases the GIL),
    each model in one thread only, so that no model's state is touched by two threads (the same
    model object under two names runs sequentially)."""
    if workers <= 1 or len({id(model) for model in models.values()}) < max(2, len(models)):
        return {m: fn(m, model) for m, model in models.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(models))) as pool:
        futures = {m: pool.submit(fn, m, model) for m, model in models.items()}
        return {m: f.result() for m, f in futures.items()}


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             size: int = 4) -> torch.Tensor:
    """fn on chunks of `size` images (per-image attacks; small chunks stay in the CPU cache)."""
    return torch.cat([fn(xc, yc) for xc, yc in zip(x.split(size), y.split(size), strict=True)])


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with preserved_state(model):
        return predict(model, x)


def _attack_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, x_fit: torch.Tensor,
                  bud: AttackBudget, seed: int) -> ModelAttacks:
    """Every per-model attack: fooling image, FGSM/PGD accuracies, universal perturbation."""
    with preserved_state(model):
        with torch.no_grad():
            p0 = torch.softmax(model(start), 1)[0]
        source, target = (int(k) for k in p0.argsort(descending=True)[:2])
        fool = fooling_image(model, target, start=start, level=0.99, alpha=1 / 255, max_steps=bud.fool_steps)
        # FGSM at eps is clip(x + eps * sign(g)); one call with eps = 1 moves every pixel to 0 or 1 in the
        # direction of its gradient sign (and leaves it where the sign is 0): that gives sign(g) exactly.
        sign = (_chunked(lambda a, b: fgsm(model, a, b, eps=1.0), x, y) - x).sign()

        def accuracy(images: torch.Tensor) -> float:
            return float((_chunked(lambda a, b: predict(model, a), images, y) == y).float().mean())

        acc: dict[tuple[str, float], float] = {("clean", 0.0): accuracy(x)}
        for eps in bud.eps:
            acc["FGSM", eps] = accuracy((x + eps * sign).clamp(0, 1))
            adv = _chunked(lambda a, b, e=eps: pgd(model, a, b, eps=e, alpha=2.5 * e / bud.pgd_steps,
                                                   steps=bud.pgd_steps, seed=seed), x, y)
            acc["PGD", eps] = accuracy(adv)
        uni = universal_perturbation(model, x_fit, xi=bud.xi, p="inf", delta=0.2, max_passes=bud.universal_passes,
                                     max_iter=bud.deepfool_iter, seed=seed)
    return ModelAttacks(p0, source, target, fool, acc, uni)


# ------------------------------------------------------------------------------------ survey

def attack_survey(
    models: dict[str, nn.Module],
    dataset: Any,
    *,
    budget: AttackBudget | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> AttackSurvey:
    """Attack classifiers `models` (name -> model taking [0,1] pixels) on held-out `dataset`
    (Samples with int targets); the first attack_images + 2 * universal_images scenes are used.

    Per model: a fooling image (the first scene every model classifies correctly pushed to
    its second most likely class by signed-gradient steps of 1/255 until p >= 0.99 or
    budget.fool_steps); accuracy under FGSM and PGD (L-inf, random start, step 2.5 eps /
    steps, Madry et al. 2018) for each eps on the first budget.attack_images scenes; a
    universal perturbation (Moosavi-Dezfooli et al. 2017, L-inf radius xi, target fooling
    rate 80%, DeepFool inner steps) computed on the next-to-last universal_images scenes.
    Then the transfer matrix of every model's perturbation on every model, evaluated on
    the last universal_images scenes. Models run in parallel threads with one intra-op
    thread each (the thread count is restored); each model's state is kept. Same seed,
    same numbers. class_names: default the dataset's `classes`, else "class k".
    """
    if not isinstance(models, dict) or not models:
        raise ValueError("attack_survey needs a non-empty dict name -> classifier, e.g. "
                         "{'no shortcut': model_a, 'shortcut': model_b}")
    bud = budget or AttackBudget()
    if not isinstance(bud, AttackBudget):
        raise TypeError(f"budget must be an AttackBudget (e.g. AttackBudget.quick()); got {type(bud).__name__}")
    x_all, y_all, ids = dataset_images(dataset, bud.attack_images + 2 * bud.universal_images)
    if y_all is None:
        raise ValueError("attack_survey needs classification samples with int targets (e.g. RoadScenes "
                         "task='pothole'); the dataset's samples have none")
    from gradsum.core.devices import model_device

    dev = model_device(next(iter(models.values())))
    x_all, y_all = x_all.to(dev), y_all.to(dev)
    n = x_all.shape[0]
    if n < 10:
        raise ValueError(f"attack_survey needs at least 10 held-out images (5 to compute a universal "
                         f"perturbation on and 5 to evaluate it); the dataset has {n}")
    x, y = x_all[: bud.attack_images], y_all[: bud.attack_images]
    nu = min(bud.universal_images, n // 2)
    x_fit, x_eval = x_all[n - 2 * nu: n - nu], x_all[n - nu:]

    with one_intra_op_thread() as threads:
        preds = _per_model(models, lambda m, model: _predict(model, x), threads)
        right = torch.stack([p == y for p in preds.values()]).all(0)
        pick = int(right.nonzero()[0, 0]) if bool(right.any()) else 0
        start = x[pick:pick + 1]
        results: dict[str, ModelAttacks] = _per_model(
            models, lambda m, model: _attack_model(model, x, y, start, x_fit, bud, seed), threads)
        tm = transfer_matrix(models, x_fit, eval_images=x_eval,
                             perturbations={m: r.universal.v for m, r in results.items()})
        example = x_eval[:1]
        for m, model in models.items():
            with torch.no_grad(), preserved_state(model):
                r = results[m]
                r.example_clean = torch.softmax(model(example), 1)[0]
                r.example_perturbed = torch.softmax(model((example + r.universal.v).clamp(0, 1)), 1)[0]
    n_classes = next(iter(results.values())).p_start.shape[0]
    return AttackSurvey(results, dataset_class_names(dataset, n_classes, class_names), start, ids[pick], x.shape[0],
                        x_fit.shape[0], x_eval.shape[0], example, tm, bud, seed)
