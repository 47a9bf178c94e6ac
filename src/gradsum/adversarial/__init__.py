"""How models break: FGSM, PGD, DeepFool, fooling images, universal perturbations and
their transfer between models. Everything works on pixels in [0,1]: wrap a model that
expects normalised input with `pixel_space(model, mean, std)`."""
from gradsum.adversarial._common import pixel_space
from gradsum.adversarial.deepfool import DeepFoolResult, deepfool
from gradsum.adversarial.fgsm_pgd import fgsm, pgd, project
from gradsum.adversarial.fooling import FoolingResult, fooling_image
from gradsum.adversarial.survey import AttackBudget, AttackSurvey, ModelAttacks, attack_survey
from gradsum.adversarial.universal import (
    TransferMatrix,
    UniversalResult,
    fooling_rate,
    transfer_matrix,
    universal_perturbation,
)

__all__ = [
    "AttackBudget",
    "AttackSurvey",
    "DeepFoolResult",
    "FoolingResult",
    "ModelAttacks",
    "TransferMatrix",
    "UniversalResult",
    "attack_survey",
    "deepfool",
    "fgsm",
    "fooling_image",
    "fooling_rate",
    "pgd",
    "pixel_space",
    "project",
    "transfer_matrix",
    "universal_perturbation",
]
