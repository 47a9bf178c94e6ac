"""Every user mistake around the model and its images ends in one line and exit code 2, within
seconds, with nothing written (explain, profile, evaluate, train)."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app

DICT_MODEL = '''
import torch
from torch import nn

class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        f = self.conv(x).mean(dim=(2, 3))
        return {"logits": self.head(f), "embedding": f}

def make(num_classes=None):
    return Two()
'''


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG file whose header claims width x height (no pixel data worth the name)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("errors")
    rng = np.random.default_rng(0)
    img = root / "img.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(img)
    ckpt = root / "digits.pt"
    gs.models.save(gs.models.build("potholenet"), ckpt)
    raw = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (root / "empty.pt").write_bytes(b"")
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()), root / "pickled.pt")
    (root / "dict_model.py").write_text(DICT_MODEL)
    (root / "a_file").write_text("not a folder")
    return {"img": str(img), "ckpt": str(ckpt), "truncated": str(root / "truncated.pt"),
            "empty": str(root / "empty.pt"), "pickled": str(root / "pickled.pt"),
            "dict": f"{root / 'dict_model.py'}:make", "file": str(root / "a_file"),
            "huge": str(_png_claiming(root / "huge.png", 100_000, 100_000))}


# (arguments with {placeholders}, a piece of the expected message)
CASES = [
    (["explain", "{img}", "--weights", "{truncated}"], "is not a readable PyTorch file"),
    (["explain", "{img}", "--weights", "{empty}"], "is empty"),
    (["explain", "{img}", "--weights", "{pickled}"], "--trust-pickle"),
    (["explain", "{img}", "--model", "timm:resnet_eighteen"], "unknown timm model"),
    (["explain", "{img}", "--model", "torchvision:vit_b_16", "--method", "saliency", "--size", "64x64"],
     "the model cannot run on 3-channel images of 64x64"),
    (["explain", "{img}", "--model", "{dict}", "--method", "saliency"], "output=KEY (CLI: --output KEY)"),
    (["explain", "{img}", "--model", "{dict}", "--output", "nope"], "output='nope' is not a key"),
    (["explain", "{img}", "--weights", "{ckpt}", "--out", "{file}"], "is a file; give a folder"),
    (["explain", "{img}", "--weights", "{ckpt}", "--size", "100000x100000"], "between 4 and 8192"),
    (["explain", "{huge}", "--weights", "{ckpt}"], "above the limit of 64 megapixels"),
    (["explain", "{img}", "--weights", "{ckpt}", "--target", "99"], "--target 99 is out of range"),
    (["explain", "{img}", "--weights", "{ckpt}", "--sign", "-1"], "--sign is for regression models"),
    (["explain", "{img}", "--weights", "{ckpt}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["explain", "{img}", "--weights", "{ckpt}", "--resize", "squash"], "--resize must be one of"),
    (["explain", "--example", "digits", "--size", "64x64"], "drop --size"),
    (["explain", "{img}", "--weights", "{ckpt}", "--model", "torchvision:resnet18"], "do not fit ResNet"),
    (["explain", "{img}", "--model", "torchvision:resnet18", "--normalize", "sometimes"], "--normalize must be"),
    (["explain", "{img}", "--model", "torchvision:resnet18", "--mean", "0.5"], "both --mean and --std"),
    (["profile", "--weights", "{ckpt}", "--data", "roads:4", "--out", "{file}"], "is a file; give a folder"),
    (["profile", "--weights", "{ckpt}", "--data", "roads:4", "--baseline", "100000000"], "--baseline must be between"),
    (["profile", "--weights", "{ckpt}", "--data", "roads:4", "--method", ""], "--method is empty"),
    (["evaluate", "--weights", "{ckpt}", "--data", "roads:4:task=pothole", "--target", "99"], "--target 99 is out of range"),
    (["evaluate", "--weights", "{ckpt}", "--data", "roads:4:task=pothole", "--out", "{file}"], "is a file"),
    (["train", "--model", "potholenet", "--data", "roads:8", "--task", "classification", "--epochs", "1",
      "--out", "{file}"], "is a file; give a folder"),
    (["train", "--model", "potholenet", "--weights", "{truncated}", "--data", "roads:8", "--task", "classification",
      "--epochs", "1"], "is not a readable PyTorch file"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_user_mistake_is_one_line_and_exit_2(args: list[str], message: str, files: dict[str, str],
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [a.format(**files) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    start = time.perf_counter()
    result = CliRunner().invoke(app, argv)
    seconds = time.perf_counter() - start
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("model: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("gradsum: error: "), result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert seconds < 20
    assert not out.exists()  # nothing half-written
    assert Path(files["file"]).read_text() == "not a folder"
