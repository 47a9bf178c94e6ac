"""save/load: state dicts with weights_only, TorchScript, pickles only with trust."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

import gradsum.models as M


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_save_load_roundtrip_weights_only(tmp_path: Path) -> None:
    src = M.DigitsNet()
    path = M.save(src, tmp_path / "d.pt", meta={"epoch": 3, "metrics": {"acc": 0.9}, "shape": (1, 2)})
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == {"epoch": 3, "metrics": {"acc": 0.9}, "shape": [1, 2]}
    dst = M.load(path, model=M.DigitsNet())
    _same(src, dst)
    _same(src, M.load(path, model="digitsnet"))
    assert not dst.training
    assert M.load_checkpoint(path)["model"] == "DigitsNet"
    with pytest.raises(TypeError, match="meta.obj holds a object"):
        M.save(src, tmp_path / "bad.pt", meta={"obj": object()})


def test_load_plain_state_dict_and_prefixes(tmp_path: Path) -> None:
    src = M.PotholeNet()
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    _same(src, M.load(tmp_path / "plain.pt", model=M.PotholeNet()))
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "dp.pt")
    _same(src, M.load(tmp_path / "dp.pt", model=M.PotholeNet()))
    wrapped = M.with_normalization(M.PotholeNet(), 0.5, 0.5)
    M.load(tmp_path / "plain.pt", model=wrapped)
    _same(src, wrapped.model)


def test_load_mismatch_lists_keys(tmp_path: Path) -> None:
    torch.save(M.DigitsNet().state_dict(), tmp_path / "d.pt")
    with pytest.raises(ValueError, match="do not fit PotholeNet") as err:
        M.load(tmp_path / "d.pt", model=M.PotholeNet())
    message = str(err.value)
    assert len(message.splitlines()) == 1  # one line: the CLI shows it whole
    assert re.search(r"shape mismatch \(\d+\): \S+ \([\d, ]+\) in the file vs \([\d, ]+\) in the model", message)
    torch.save({"extra.weight": torch.zeros(1), **M.DigitsNet().state_dict()}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="unexpected keys \\(1\\): extra.weight"):
        M.load(tmp_path / "x.pt", model=M.DigitsNet())
    partial = {k: v for k, v in M.DigitsNet().state_dict().items() if not k.startswith("classifier")}
    torch.save(partial, tmp_path / "p.pt")
    with pytest.raises(ValueError, match=r"missing keys \(4\): classifier.fc1.bias"):
        M.load(tmp_path / "p.pt", model=M.DigitsNet())
    M.load(tmp_path / "p.pt", model=M.DigitsNet(), strict=False)


def test_state_dict_needs_a_model(tmp_path: Path) -> None:
    torch.save(M.DigitsNet().state_dict(), tmp_path / "d.pt")
    with pytest.raises(ValueError, match="only weights"):
        M.load(tmp_path / "d.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        M.load(tmp_path / "nope.pt", model=M.DigitsNet())


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_load_torchscript(tmp_path: Path) -> None:
    src = M.DigitsNet().eval()
    x = torch.rand(2, 3, 28, 28)
    torch.jit.trace(src, x).save(str(tmp_path / "d.ts"))
    scripted = M.load(tmp_path / "d.ts")
    assert isinstance(scripted, torch.jit.ScriptModule)
    torch.testing.assert_close(scripted(x), src(x))
    into = M.load(tmp_path / "d.ts", model=M.DigitsNet())
    torch.testing.assert_close(into(x), src(x))


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    src = M.DigitsNet().eval()
    torch.save(src, tmp_path / "whole.pt")
    with pytest.raises(M.UntrustedFileError, match="arbitrary code.*trust=True") as err:
        M.load(tmp_path / "whole.pt")
    assert isinstance(err.value, ValueError)
    loaded = M.load(tmp_path / "whole.pt", trust=True)
    assert isinstance(loaded, M.DigitsNet)
    _same(src, loaded)
    _same(src, M.load(tmp_path / "whole.pt", model=M.DigitsNet(), trust=True))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"w": [1, 2, 3], "f": print}, f)
    with pytest.raises(M.UntrustedFileError, match="arbitrary code"):
        M.load(path, model=M.DigitsNet())


def test_a_head_for_other_classes_says_which_num_classes(tmp_path: Path) -> None:
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=20).state_dict(), tmp_path / "r.pt")
    with pytest.raises(ValueError, match=r"head has 20 outputs: add --num-classes 20"):
        M.load(tmp_path / "r.pt", model=torchvision.models.resnet18())
    torch.save(M.DigitsNet().state_dict(), tmp_path / "d.pt")  # other layers differ too: no such hint
    with pytest.raises(ValueError) as err:
        M.load(tmp_path / "d.pt", model=M.PotholeNet())
    assert "--num-classes" in str(err.value) and "head has" not in str(err.value)
