"""gradsum.adversarial.attack_survey: fooling images, FGSM/PGD accuracy, universal
perturbations and their transfer, as one result with its tables."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.adversarial import AttackBudget, AttackSurvey, attack_survey, fgsm, pgd

SIZE = (16, 32)
BUDGET = AttackBudget(attack_images=6, pgd_steps=1, universal_images=5, universal_passes=1, deepfool_iter=3,
                      fool_steps=5)


def classifier(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(24, 2)).eval()


def _state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()])


@pytest.fixture(scope="module")
def scenes() -> gs.data.RoadScenes:
    return gs.data.RoadScenes(16, size=SIZE, seed=5, task="pothole")


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {"no shortcut": classifier(1), "shortcut": classifier(2)}


@pytest.fixture(scope="module")
def survey(models, scenes) -> AttackSurvey:
    return attack_survey(models, scenes, budget=BUDGET, seed=0)


def _xy(scenes, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = gs.data.samples.collate([scenes[i] for i in range(n)])
    return batch.images, torch.as_tensor(batch.targets)


def test_attack_survey_numbers_match_direct_attacks(survey, models, scenes):
    assert list(survey.models) == list(models) and survey.class_names == ["no pothole", "pothole"]
    assert (survey.attacked, survey.fit_images, survey.heldout_images) == (6, 5, 5)
    x, y = _xy(scenes, 6)
    for m, model in models.items():
        r = survey.models[m]
        with torch.no_grad():
            p = torch.softmax(model(survey.start), 1)[0]
            pred = model(x).argmax(1)
        torch.testing.assert_close(r.p_start, p)
        assert (r.source, r.target) == (int(p.argmax()), int(p.argmin()))
        assert r.accuracy["clean", 0.0] == pytest.approx(float((pred == y).float().mean()))
        eps = 4 / 255
        with torch.no_grad():
            fooled = model(fgsm(model, x, y, eps=eps)).argmax(1)
            pgd_fooled = model(torch.cat([pgd(model, a, b, eps=eps, alpha=2.5 * eps, steps=1, seed=0)
                                          for a, b in zip(x.split(4), y.split(4), strict=True)])).argmax(1)
        assert r.accuracy["FGSM", eps] == pytest.approx(float((fooled == y).float().mean()))
        assert r.accuracy["PGD", eps] == pytest.approx(float((pgd_fooled == y).float().mean()))
        assert r.example_clean is not None and r.example_perturbed is not None
        with torch.no_grad():
            torch.testing.assert_close(r.example_perturbed, torch.softmax(
                model((survey.example + r.universal.v).clamp(0, 1)), 1)[0])
    # the start scene is one that every model classifies correctly, when there is one
    with torch.no_grad():
        right = torch.stack([mod(x).argmax(1) == y for mod in models.values()]).all(0)
    assert survey.scene == scenes[int(right.nonzero()[0, 0]) if right.any() else 0].id


def test_attack_survey_tables(survey, models):
    acc = survey.accuracy_table()
    assert set(acc["attack"]) == {"clean", "FGSM", "PGD"}
    assert sorted(set(acc.loc[acc["attack"] == "PGD", "eps_255"])) == [1, 2, 4, 8]
    assert len(acc) == 2 * (1 + 2 * 4) and acc["accuracy"].between(0, 1).all()
    assert (acc.loc[acc["attack"] == "PGD", "pgd_steps"] == 1).all() and (acc["images"] == 6).all()
    wide = survey.accuracy_wide()
    assert list(wide.columns) == ["model", "attack", "clean (%)", "eps 1/255 (%)", "eps 2/255 (%)", "eps 4/255 (%)",
                                  "eps 8/255 (%)"] and len(wide) == 4
    row = wide[(wide["model"] == "shortcut") & (wide["attack"] == "PGD")].iloc[0]
    assert row["eps 2/255 (%)"] == pytest.approx(100 * survey.models["shortcut"].accuracy["PGD", 2 / 255])

    fool = survey.fooling_table()
    assert list(fool["model"]) == list(models) and (fool["max_steps"] == BUDGET.fool_steps).all()
    assert ((fool["p_final"] >= 0.99) == fool["reached_0.99"]).all()
    assert (fool["steps"] <= BUDGET.fool_steps).all() and (fool["linf_255"] <= fool["steps"] + 1e-3).all()

    uni = survey.universal_table()
    assert (uni["linf_255"] <= uni["xi_255"] + 1e-4).all()
    assert (uni["reached"] == (uni["fooling_rate_fit"] >= uni["target_rate"])).all()
    transfer = survey.transfer_table()
    assert list(transfer["source"]) == list(models) and list(transfer.columns[1:]) == list(models)
    for _, r in uni.iterrows():  # the diagonal is the held-out fooling rate of the model's own perturbation
        assert transfer.set_index("source").loc[r["model"], r["model"]] == pytest.approx(r["fooling_rate_heldout"])


def test_attack_survey_keeps_state_threads_and_is_deterministic(survey, scenes):
    models = {"no shortcut": classifier(1), "shortcut": classifier(2)}
    models["shortcut"].train()
    before = {m: _state(model) for m, model in models.items()}
    torch.set_num_threads(2)  # two models run in two threads, one intra-op thread each
    again = attack_survey(models, scenes, budget=BUDGET, seed=0)
    assert torch.get_num_threads() == 2
    assert {m: _state(model) for m, model in models.items()} == before
    for table in ("fooling_table", "accuracy_table", "universal_table", "transfer_table"):
        pd.testing.assert_frame_equal(getattr(again, table)(), getattr(survey, table)())


def test_same_model_twice_runs_sequentially_and_keeps_its_state(scenes):
    model = classifier(1)
    model.train()
    before = _state(model)
    torch.set_num_threads(2)
    s = attack_survey({"a": model, "b": model}, scenes, budget=BUDGET)
    assert _state(model) == before and torch.get_num_threads() == 2
    transfer = s.transfer_table().set_index("source")
    assert transfer.loc["a", "a"] == transfer.loc["a", "b"]  # one model: its own perturbation, same rate


def test_attack_survey_bad_input(scenes):
    with pytest.raises(ValueError, match="non-empty dict"):
        attack_survey({}, scenes, budget=BUDGET)
    with pytest.raises(TypeError, match="AttackBudget"):
        attack_survey({"a": classifier(1)}, scenes, budget=(4,))  # type: ignore[arg-type]
    steering = gs.data.RoadScenes(12, size=SIZE, task="steering")
    with pytest.raises(ValueError, match="int targets"):
        attack_survey({"a": classifier(1)}, steering, budget=BUDGET)
    with pytest.raises(ValueError, match="at least 10"):
        attack_survey({"a": classifier(1)}, gs.data.RoadScenes(6, size=SIZE, task="pothole"), budget=BUDGET)
