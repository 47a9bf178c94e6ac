"""Atomic result files: every write goes to a temporary file in the same folder and is
renamed into place, so an interrupted run never leaves a half-written file."""
from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["file_sha256", "remove_partial_files", "atomic_write", "write_bytes", "write_text", "write_json", "save_png", "save_figure",
           "save_maps", "load_maps"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call write(file) on a temporary file beside `path`, fsync, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's content (hex), read in 1 MiB chunks: the identity of a weights
    file in a job, so that a file overwritten under the same name is a different job."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove_partial_files(folder: str | os.PathLike[str]) -> int:
    """Delete the temporary files an interrupted `atomic_write` left in `folder` (".*.tmp");
    returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    leftovers = list(folder.glob(".*.tmp"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Save an (H,W,3) float [0,1] or uint8 image as PNG."""
    from PIL import Image

    from gradsum.viz import to_uint8

    arr = image if image.dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return write_bytes(path, buf.getvalue())


def save_figure(path: str | os.PathLike[str], fig: Any, dpi: int = 110) -> Path:
    """Save a matplotlib Figure as PNG (atomically) and release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes(path, buf.getvalue())


def save_maps(path: str | os.PathLike[str], ids: Any = None, **maps: Any) -> Path:
    """Save named heatmap arrays as float32 in a compressed .npz (float16 flushed small raw
    maps, such as gradients of 1e-6, to zero), with the images' `ids` under the key "ids"
    when given."""
    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float32) for k, v in maps.items()}
    if ids is not None:
        arrays["ids"] = np.asarray([str(i) for i in ids])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def load_maps(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of `save_maps` (maps as float32; "ids", when saved, as strings)."""
    with np.load(path) as data:
        return {k: data[k] if k == "ids" else data[k].astype(np.float32) for k in data.files}
