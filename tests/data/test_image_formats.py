"""One decoder for the CLI and every reader: 16-bit PNGs scaled by 65535 (not clipped to
white), EXIF orientation applied, the usual 8-bit modes as before."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gradsum.cli import app
from gradsum.data import ImageFolder
from gradsum.data._files import read_rgb
from png16 import write_png16

RAMP = np.linspace(0, 65535, 64 * 256).reshape(64, 256).astype(np.uint16)


@pytest.fixture()
def sixteen_bit(tmp_path):
    grey = tmp_path / "cls" / "grey16.png"
    grey.parent.mkdir()
    Image.fromarray(RAMP).save(grey)  # Pillow writes 16-bit grey itself ("I;16")
    rgb = tmp_path / "cls" / "rgb16.png"
    write_png16(rgb, np.stack([RAMP, RAMP, RAMP], axis=-1))
    return grey, rgb


def test_sixteen_bit_ramps_read_with_mean_one_half(sixteen_bit):
    for path in sixteen_bit:
        image = read_rgb(path)
        assert image.shape == (3, 64, 256)
        assert abs(float(image.mean()) - 0.5) < 0.01, path.name
        assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_sixteen_bit_through_the_folder_reader(sixteen_bit):
    ds = ImageFolder(sixteen_bit[0].parent.parent)
    assert len(ds) == 2
    for i in range(2):
        assert abs(float(ds[i].image.mean()) - 0.5) < 0.01


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    image = read_rgb(path)
    assert image.shape == (3, 40, 20)  # upright: height and width swapped
    assert float(image[:, :20].mean()) > 0.9 and float(image[:, 20:].mean()) < 0.1  # the white half is on top


def test_explain_reads_a_sixteen_bit_png_and_an_exif_photo(tmp_path, sixteen_bit):
    stored = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8
    photo = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(photo, exif=exif)
    result = CliRunner().invoke(app, ["explain", str(sixteen_bit[0]), str(photo), "--model", "potholenet",
                                      "--method", "gradcam", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    maps = np.load(tmp_path / "out" / "maps.npz")
    shapes = sorted(maps[k].shape[-2:] for k in maps.files)
    assert (40, 20) in shapes and (64, 256) in shapes


def test_pixel_limit_names_the_variable_that_raises_it(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8)).save(path)
    code = ("import sys; from gradsum.data._files import read_rgb, DataError\n"
            "try:\n    print(tuple(read_rgb(sys.argv[1]).shape))\nexcept DataError as e:\n    print(e)")
    env = {**__import__("os").environ, "GRADSUM_MAX_IMAGE_PIXELS": "100000"}
    low = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert "over the limit of 100,000 pixels" in low.stdout and "GRADSUM_MAX_IMAGE_PIXELS=<pixels>" in low.stdout
    env["GRADSUM_MAX_IMAGE_PIXELS"] = "200_000"
    high = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert high.stdout.strip() == "(3, 300, 400)"
