"""Every user mistake on `gradsum attack|features|data ...` ends in ONE line on stderr that
starts with "gradsum: error:", exit code 2, no traceback, within seconds, and nothing written:
the --out path does not exist afterwards (or is unchanged when it existed before).

Each row: (case id, arguments, what --out is, a phrase the line must contain). In the
arguments, {OUT} is replaced by the --out path, {BOMB} by an image folder holding a PNG whose
header claims 100000x100000 pixels, {EMPTY}/{TRUNCATED}/{PICKLED}/{CKPT} by weights files and
{REGRESSOR} by a FILE.py:FACTORY spec of a tiny one-output model."""
from __future__ import annotations

import importlib.util
import os
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gradsum as gs
from gradsum.cli import app

DIGITS = "digits:size=16,split=test"
D = ["--model", "digitsnet", "--data", DIGITS]  # a 10-class classifier on tiny images
R = ["--model", "pilotnet", "--data", "roads:2"]  # a one-output regressor
FILE, NEW, DIR = "file", "new", "dir"  # --out: an existing file, a path not yet there, an existing folder

CASES = [
    # --out pointing at an existing file, on every command
    ("fgsm-out-file", ["attack", "fgsm", *D], FILE, "is a file"),
    ("pgd-out-file", ["attack", "pgd", *D], FILE, "is a file"),
    ("deepfool-out-file", ["attack", "deepfool", *D], FILE, "is a file"),
    ("universal-out-file", ["attack", "universal", *D], FILE, "is a file"),
    ("fool-out-file", ["attack", "fool", "--model", "digitsnet", "--target", "1"], FILE, "is a file"),
    ("filters-out-file", ["features", "filters", "--model", "digitsnet"], FILE, "is a file"),
    ("maps-out-file", ["features", "maps", *D, "--layer", "features.act1"], FILE, "is a file"),
    ("maximize-out-file", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2"], FILE,
     "is a file"),
    ("patches-out-file", ["features", "patches", *D, "--layer", "features.act2"], FILE, "is a file"),
    ("synth-out-file", ["data", "synth", "--n", "2"], FILE, "is a file"),
    ("preview-out-dir", ["data", "preview", "roads:2"], DIR, "is a folder"),
    # targets and classes
    ("fgsm-target-99", ["attack", "fgsm", *D, "--target", "99"], NEW, "--target 99 is out of range"),
    ("pgd-target-99", ["attack", "pgd", *D, "--target", "99"], NEW, "--target 99 is out of range"),
    ("fool-target-99", ["attack", "fool", "--model", "digitsnet", "--target", "99", "--size", "16"], NEW,
     "--target 99 is out of range"),
    ("fgsm-target-negative", ["attack", "fgsm", *D, "--target", "-1"], NEW, "out of range"),
    ("checkpoint-target-99", ["attack", "fgsm", "--weights", "{CKPT}", "--data", DIGITS, "--target", "99"], NEW,
     "the model has 10 classes"),
    ("deepfool-candidates-1", ["attack", "deepfool", *D, "--candidates", "1"], NEW, "--candidates must be >= 2"),
    ("deepfool-candidates-11", ["attack", "deepfool", *D, "--candidates", "11"], NEW, "more than the model's 10"),
    ("fool-n-0", ["attack", "fool", "--model", "digitsnet", "--target", "1", "--n", "0"], NEW, "--n must be"),
    ("labels-beyond-classes", ["attack", "fgsm", "--model", "potholenet", "--data", DIGITS], NEW, "has label"),
    # attacks refuse a regressor (one output)
    ("fgsm-regressor", ["attack", "fgsm", *R], NEW, "need a classifier"),
    ("pgd-regressor", ["attack", "pgd", *R], NEW, "need a classifier"),
    ("deepfool-regressor", ["attack", "deepfool", *R], NEW, "need a classifier"),
    ("universal-regressor", ["attack", "universal", *R, "--delta", "0.5"], NEW, "need a classifier"),
    ("fool-regressor", ["attack", "fool", "--model", "pilotnet", "--target", "0", "--size", "66x200"], NEW,
     "need a classifier"),
    ("file-regressor", ["attack", "fgsm", "--model", "{REGRESSOR}", "--data", DIGITS], NEW, "need a classifier"),
    ("transfer-regressor", ["attack", "universal", *D, "--transfer", "reg={REGRESSOR}"], NEW, "need a classifier"),
    # sizes: --size, a data SPEC size, a PNG header, the preview, maximize/attack batches
    ("fgsm-size-huge", ["attack", "fgsm", *D, "--size", "100000x100000"], NEW, "8192"),
    ("fool-size-huge", ["attack", "fool", "--model", "digitsnet", "--target", "1", "--size", "100000x100000"], NEW,
     "8192"),
    ("maps-size-huge", ["features", "maps", *D, "--layer", "features.act1", "--size", "100000x100000"], NEW, "8192"),
    ("maximize-size-huge", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                            "--size", "100000x100000"], NEW, "8192"),
    ("patches-size-huge", ["features", "patches", *D, "--layer", "features.act2", "--size", "100000x100000"], NEW,
     "8192"),
    ("synth-size-huge", ["data", "synth", "--n", "2", "--size", "100000x100000"], NEW, "8192"),
    ("spec-size-huge", ["attack", "fgsm", "--model", "digitsnet", "--data", "digits:size=100000"], NEW,
     "64,000,000 pixels"),
    ("png-header-bomb", ["attack", "fgsm", "--model", "digitsnet", "--data", "folder:{BOMB}"], NEW,
     "64,000,000 pixels"),
    ("preview-png-bomb", ["data", "preview", "folder:{BOMB}"], NEW, "64,000,000 pixels"),
    ("preview-cols-0", ["data", "preview", "roads:2", "--cols", "0"], NEW, "--cols must be"),
    ("preview-n-0", ["data", "preview", "roads:2", "--n", "0"], NEW, "--n must be"),
    ("preview-scale-huge", ["data", "preview", "roads:2", "--scale", "100000"], NEW, "64,000,000 pixels"),
    ("preview-format", ["data", "preview", "roads:2", "--out", "{OUT}.xyz"], NEW, "image format"),
    ("maximize-channels-huge", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                                "--channels", "0-99999"], NEW, "MAX_MAXIMIZE_IMAGES"),
    ("maximize-channels-range", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                                 "--channels", "0-40", "--size", "16"], NEW, "valid channels are 0..15"),
    ("maximize-batch-pixels", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                               "--channels", "0-15", "--size", "2048"], NEW, "MAX_BATCH_PIXELS"),
    ("maximize-class-range", ["features", "maximize", "--model", "digitsnet", "--objective", "class",
                              "--channels", "10", "--size", "16"], NEW, "valid classes are 0..9"),
    ("maximize-dense-on-conv", ["features", "maximize", "--model", "digitsnet", "--objective", "dense",
                                "--layer", "features.act2", "--channels", "0", "--size", "16"], NEW, "(B,N)"),
    ("attack-batch-pixels", ["attack", "fgsm", *D, "--size", "2048", "--limit", "8"], NEW, "MAX_BATCH_PIXELS"),
    ("patches-channels-range", ["features", "patches", *D, "--layer", "features.act2", "--channels", "0-99"], NEW,
     "valid channels are 0..15"),
    ("patches-batch-pixels", ["features", "patches", *D, "--layer", "features.act2", "--size", "4096",
                              "--batch-size", "64"], NEW, "MAX_BATCH_PIXELS"),
    # weights files and model specs
    ("weights-empty", ["attack", "fgsm", "--weights", "{EMPTY}", "--data", DIGITS], NEW, "empty"),
    ("weights-truncated", ["attack", "pgd", "--model", "digitsnet", "--weights", "{TRUNCATED}", "--data", DIGITS],
     NEW, "truncated"),
    ("weights-pickled", ["attack", "deepfool", "--model", "digitsnet", "--weights", "{PICKLED}", "--data", DIGITS],
     NEW, "--trust-pickle"),
    ("features-weights-pickled", ["features", "filters", "--model", "digitsnet", "--weights", "{PICKLED}"], NEW,
     "--trust-pickle"),
    ("no-model", ["attack", "fgsm", "--data", DIGITS], NEW, "--model"),
    ("unknown-model", ["features", "filters", "--model", "nosuchnet"], NEW, "unknown model spec"),
    ("num-classes-0", ["attack", "fgsm", *D, "--num-classes", "0"], NEW, "--num-classes"),
    ("normalize-unknown", ["features", "maps", *D, "--layer", "features.act1", "--normalize", "zscore"], NEW,
     "--normalize"),
    ("mean-without-std", ["attack", "fool", "--model", "digitsnet", "--target", "1", "--mean", "0.5"], NEW, "--std"),
    # numbers out of range, unknown names
    ("limit-negative", ["attack", "fgsm", *D, "--limit", "-1"], NEW, "--limit must be"),
    ("eps-over-1", ["attack", "fgsm", *D, "--eps", "2"], NEW, "--eps must be in [0,1]"),
    ("eps-nan", ["attack", "pgd", *D, "--eps", "nan"], NEW, "--eps must be a finite"),
    ("pgd-steps-0", ["attack", "pgd", *D, "--steps", "0"], NEW, "--steps must be"),
    ("pgd-norm-unknown", ["attack", "pgd", *D, "--norm", "3"], NEW, "--norm must be inf or 2"),
    ("deepfool-max-iter-0", ["attack", "deepfool", *D, "--max-iter", "0"], NEW, "--max-iter must be"),
    ("deepfool-overshoot-negative", ["attack", "deepfool", *D, "--overshoot", "-1"], NEW, "--overshoot"),
    ("universal-delta", ["attack", "universal", *D, "--delta", "1.5"], NEW, "--delta must be in (0,1)"),
    ("universal-few-images", ["attack", "universal", *D, "--limit", "3"], NEW, "needs at least 5 images"),
    ("universal-p-unknown", ["attack", "universal", *D, "--p", "1"], NEW, "--p must be inf or 2"),
    ("transfer-syntax", ["attack", "universal", *D, "--transfer", "broken"], NEW, "NAME=SPEC"),
    ("transfer-unknown-model", ["attack", "universal", *D, "--transfer", "x=nosuchnet"], NEW, "unknown model spec"),
    ("fool-level", ["attack", "fool", "--model", "digitsnet", "--target", "1", "--level", "1"], NEW, "--level"),
    ("fool-max-steps-0", ["attack", "fool", "--model", "digitsnet", "--target", "1", "--max-steps", "0"], NEW,
     "--max-steps"),
    ("bad-data-spec", ["attack", "fgsm", "--model", "digitsnet", "--data", "nosuch:1"], NEW, "bad data spec"),
    ("maximize-objective-unknown", ["features", "maximize", "--model", "digitsnet", "--objective", "bogus"], NEW,
     "--objective must be"),
    ("maximize-preset-unknown", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                                 "--preset", "bogus"], NEW, "--preset must be"),
    ("maximize-steps-0", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                          "--steps", "0"], NEW, "--steps must be"),
    ("maximize-channels-negative", ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2",
                                    "--channels", "-3"], NEW, ">= 0"),
    ("maximize-layer-typo", ["features", "maximize", "--model", "digitsnet", "--layer", "features.actt2",
                             "--size", "16"], NEW, "closest names"),
    ("patches-k-0", ["features", "patches", *D, "--layer", "features.act2", "--k", "0"], NEW, "--k must be"),
    ("patches-k-huge", ["features", "patches", *D, "--layer", "features.act2", "--k", "100000"], NEW,
     "MAX_PATCHES_K"),
    ("patches-batch-size-0", ["features", "patches", *D, "--layer", "features.act2", "--batch-size", "0"], NEW,
     "--batch-size must be"),
    ("patches-limit-0", ["features", "patches", *D, "--layer", "features.act2", "--limit", "0"], NEW,
     "--limit must be"),
    ("patches-show-0", ["features", "patches", *D, "--layer", "features.act2", "--show", "0"], NEW, "--show must be"),
    ("maps-index-negative", ["features", "maps", *D, "--layer", "features.act1", "--index", "-1"], NEW, "--index"),
    ("maps-index-beyond", ["features", "maps", *D, "--layer", "features.act1", "--index", "100000"], NEW,
     "no sample 100000"),
    ("filters-max-tiles-0", ["features", "filters", "--model", "digitsnet", "--max-tiles", "0"], NEW,
     "--max-tiles must be"),
    ("synth-n-0", ["data", "synth", "--n", "0"], NEW, "--n must be"),
]
if importlib.util.find_spec("timm") is None:
    CASES.append(("timm-missing", ["attack", "fgsm", "--model", "timm:resnet18", "--data", DIGITS], NEW,
                  "pip install"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "bomb" / "a").mkdir(parents=True)
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 100000x100000 RGB, 8 bit
    (root / "bomb" / "a" / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b""))
    torch.manual_seed(0)
    ckpt = gs.models.save(gs.models.build("digitsnet"), root / "digits.pt")
    data = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    (root / "empty.pt").write_bytes(b"")
    torch.save(gs.models.build("digitsnet"), root / "pickled.pt")  # a whole pickled module
    (root / "regressor.py").write_text(
        "from torch import nn\n\n\ndef make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))\n")
    return {"REGRESSOR": f"{root / 'regressor.py'}:make","BOMB": root / "bomb", "CKPT": ckpt, "TRUNCATED": root / "truncated.pt", "EMPTY": root / "empty.pt",
            "PICKLED": root / "pickled.pt"}


def _state(path: Path) -> object:
    if path.is_file():
        return ("file", path.read_bytes())
    if path.is_dir():
        return ("dir", sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*")))
    return None


@pytest.mark.parametrize("args,out_kind,phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_mistake_is_one_line_exit_2(tmp_path: Path, files: dict[str, object], args: list[str], out_kind: str,
                                         phrase: str) -> None:
    out = tmp_path / "run"
    if out_kind == FILE:
        out.write_text("results of an earlier run\n")
    elif out_kind == DIR:
        out.mkdir()
        (out / "earlier.txt").write_text("kept\n")
    argv = [a.replace("{OUT}", str(out)).format(**{k: str(v) for k, v in files.items()}) if "{" in a else a
            for a in args]
    if not any(a.startswith("--out") for a in argv):
        if args[:2] == ["data", "preview"]:
            argv += ["--out", str(out) if out_kind == DIR else str(out) + ".png"]
        else:
            argv += ["--out", str(out)]
    written = [Path(argv[argv.index("--out") + 1]), out]
    before = {p: _state(p) for p in written}

    start = time.perf_counter()
    result = CliRunner().invoke(app, argv)
    seconds = time.perf_counter() - start

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradsum: error: "), lines[0]
    assert phrase in lines[0], lines[0]
    assert seconds < 20, f"{seconds:.1f} s"
    for path in written:  # nothing created, nothing changed
        assert _state(path) == before[path], path


def test_table_covers_every_command() -> None:
    covered = {tuple(c[1][:2]) for c in CASES}
    for group, names in {"attack": ("fgsm", "pgd", "deepfool", "universal", "fool"),
                         "features": ("filters", "maps", "maximize", "patches"),
                         "data": ("synth", "preview")}.items():
        for name in names:
            assert (group, name) in covered, f"{group} {name} has no case"


@pytest.mark.parametrize("args", [
    ["attack", "fgsm", *D, "--limit", "4"],
    ["attack", "fool", "--model", "digitsnet", "--target", "1", "--size", "16", "--n", "1", "--max-steps", "1"],
    ["features", "maximize", "--model", "digitsnet", "--layer", "features.act2", "--channels", "0", "--size", "16",
     "--preset", "keras", "--steps", "1"],
], ids=["fgsm", "fool", "maximize"])
@pytest.mark.parametrize("existed", [False, True], ids=["new-out", "existing-out"])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str], existed: bool) -> None:
    """The disk fills up while the results are written (the table is written, the figure
    fails): one line naming the problem, and --out as it was before."""
    import errno

    import gradsum.run.store as store

    def full(path, *_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store, "save_figure", full)
    out = tmp_path / "run"
    if existed:
        out.mkdir()
        (out / "earlier.csv").write_text("kept\n")
    before = _state(out)
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gradsum: error: no space left on the device"), result.stderr
    assert f"writing {out}{os.sep}" in lines[0] and ".partial" not in lines[0]  # the file the user asked for
    assert _state(out) == before
