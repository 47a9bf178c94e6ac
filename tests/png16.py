"""A 16-bit PNG writer for tests (Pillow cannot write 16-bit RGB)."""
import struct
import zlib
from pathlib import Path

import numpy as np


def write_png16(path, arr):
    """arr uint16 (H,W) grey or (H,W,3) RGB -> 16-bit PNG (written by hand: Pillow cannot write RGB 16-bit)."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    color = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)
