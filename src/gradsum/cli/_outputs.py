"""Outputs of the commands that write files beside tables (features, attack): a staged
folder moved into place at the end, CSV and tensor files written atomically."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import check_out_dir

__all__ = ["staged_output", "write_csv", "save_tensor"]


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Write a command's results into a hidden folder inside `out`, then move them into
    `out` together: a failure while writing (a full disk, an error drawing a figure) leaves
    no partial result (and no `out` folder when the command created it)."""
    import shutil
    import tempfile

    check_out_dir(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        yield stage
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(stage)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        name = getattr(exc, "filename", None)
        if isinstance(exc, OSError) and isinstance(name, str) and name.startswith(str(stage)):
            # name the file the user asked for, not the hidden staging copy
            raise type(exc)(exc.errno, exc.strerror, str(out / Path(name).relative_to(stage))) from None
        raise
    shutil.rmtree(stage, ignore_errors=True)


def write_csv(path: Path, frame: Any) -> Path:
    """A DataFrame as CSV, written atomically (Parquet tables: gradsum.run.runner.write_table)."""
    from gradsum.run.store import write_text

    return write_text(path, frame.to_csv(index=False))


def save_tensor(path: Path, tensor: Any) -> Path:
    """torch.save of a (CPU) tensor, written atomically."""
    import io

    import torch

    from gradsum.run.store import write_bytes

    buf = io.BytesIO()
    torch.save(tensor.detach().cpu(), buf)
    return write_bytes(path, buf.getvalue())
