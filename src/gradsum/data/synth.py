"""Write RoadScenes to disk in the Cityscapes-like layout read by `Cityscapes`::

    <out>/leftImg8bit/<split>/synth/synth_<seed>_<index>_leftImg8bit.png
    <out>/gtFine/<split>/synth/synth_<seed>_<index>_gtFine_labelIds.png   (ROADS ids, mode L)
    <out>/targets.csv   id, split, index, steering, pothole, boxes (JSON), generation parameters
    <out>/labels.csv    the ROADS label table (LabelTable.to_csv)
    <out>/synth.json    the generator settings

Every file is written atomically (temporary file + rename). Rows already in targets.csv for
other ids are kept, so shards (`start`) and splits can be written into one folder.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .labels import ROADS
from .roads import RoadScenes

__all__ = ["write_synth"]

_FIRST = ["id", "split", "index", "steering", "pothole", "boxes"]


def _save_png(arr: Any, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    tmp.replace(path)


def write_synth(
    out: str | Path,
    n: int,
    size: tuple[int, int] | str = (66, 200),
    seed: int = 0,
    shortcut: float = 0.0,
    split: str = "train",
    start: int = 0,
    **kw: Any,
) -> dict[str, Any]:
    """Write scenes start..start+n-1 of RoadScenes(seed=seed, ...) under `out`.

    Returns {"n", "potholes", "size", "targets", "labels"} (paths as strings).
    """
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"split must be a plain folder name like 'train', got {split!r}")
    ds = RoadScenes(start + n, size=size, seed=seed, shortcut=shortcut, task="none", **kw)
    out = Path(out)
    img_dir = out / "leftImg8bit" / split / "synth"
    lbl_dir = out / "gtFine" / split / "synth"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        img, seg, boxes, params = ds.scene(i)
        name = f"synth_{seed:06d}_{i:06d}"
        _save_png(img.transpose(1, 2, 0), img_dir / f"{name}_leftImg8bit.png")
        _save_png(seg, lbl_dir / f"{name}_gtFine_labelIds.png")
        row = {"id": f"synth/{name}", "split": split, "index": i, "steering": params["steering"],
               "pothole": params["pothole"], "boxes": json.dumps(boxes.tolist())}  # fmt: skip
        row.update({k: v for k, v in params.items() if k not in row})
        rows.append(row)
    targets = out / "targets.csv"
    old: list[dict[str, Any]] = []
    if targets.is_file():
        with targets.open(newline="") as fh:
            new_ids = {r["id"] for r in rows}
            old = [r for r in csv.DictReader(fh) if r.get("id") not in new_ids]
    fields = _FIRST + [k for k in rows[0] if k not in _FIRST]
    tmp = targets.with_name("targets.csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(sorted(old + rows, key=lambda r: (r["split"], int(r["index"]), r["id"])))
    tmp.replace(targets)
    labels = ROADS.to_csv(out / "labels.csv")
    meta = out / "synth.json"
    tmp = meta.with_name("synth.json.tmp")
    tmp.write_text(json.dumps({**ds.meta, "n": n, "start": start, "split": split}, indent=2))
    tmp.replace(meta)
    return {"n": n, "potholes": sum(r["pothole"] for r in rows), "size": list(ds.size),
            "targets": str(targets), "labels": str(labels)}  # fmt: skip
