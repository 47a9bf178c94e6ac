"""Procedural road scenes with pixel-exact segmentation: the built-in, download-free dataset.

Each scene is drawn from its own counter-based random stream (numpy Philox keyed by
(seed, index)), so scene i depends only on (seed, i): any index can be generated alone (sharded
runs) and the same seed gives byte-identical images. Drawing is vectorised numpy on the whole
image or on each object's bounding box (no per-pixel Python loops); fixed noise textures (a
constant of the generator) give surfaces their grain.

Scene content, painted far to near: sky gradient and clouds, horizon with a distant tree line,
terrain, sidewalks with kerbs, the road with anti-aliased edges, dashed centre line and edge
lines, potholes (dark, broken rim, some with water) and cracks, soft shadows, buildings with
windows, trees, bushes, poles with traffic signs, cars ahead; then per-label texture noise,
haze towards the horizon and a global brightness/tint.

Geometry (pinhole camera over a flat ground): the horizon is row `h`; a ground row y has
normalised inverse depth d = (y - h) / (H - h) in (0, 1] (1 = bottom row, depth z = 1/d). One
world unit is the road half-width; it spans s(d) = w0·W·d pixels at inverse depth d, both
horizontally and vertically. The road centre at row y is

    x_c(d) = W/2 + lat·s(d) + c·K·W·(1/d - 1),

i.e. the lateral offset of a circular arc x = c·z²/2 seen through the camera (x/z ∝ c·z ∝ c/d);
`c` in [-1, 1] is the curvature, positive = the road bends to the RIGHT.

Targets: `steering = c` (positive = steer right, the Udacity simulator's convention), `pothole`
0/1 (at least one visible pothole pixel) with the potholes' boxes (x1, y1, x2, y2, pixels,
x = column, x2/y2 exclusive) taken from the final segmentation.

Shortcut knob: with probability `shortcut`, the amount of the nuisance category (default
vegetation: roadside trees, bushes, the far tree line) is drawn from the high range
U(0.65, 1) for roads WITHOUT potholes and from the low range U(0, 0.3) for roads WITH potholes
(as the pothole study found in real data: good roads have vegetation around them); otherwise
it is U(0, 1), independent of the label. A model trained on shortcut=1 data can therefore
classify from vegetation alone, which GradSUM should reveal.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .labels import ROADS
from .samples import Sample

__all__ = ["RoadScenes", "render_scene", "SHORTCUT_CATEGORIES", "TASKS"]

TASKS = ("steering", "pothole", "none")
SHORTCUT_CATEGORIES = ("vegetation", "building", "traffic sign")

# Label ids (ROADS / Cityscapes).
UNLABELED, ROAD, SIDEWALK, BUILDING, POLE, SIGN = 0, 7, 8, 11, 17, 20
VEGETATION, TERRAIN, SKY, CAR, POTHOLE = 21, 22, 23, 26, 34

_CURVE_GAIN = 0.045  # K: lateral shift per unit curvature and unit (1/d - 1), in image widths
_NOISE = np.zeros(ROADS.max_id + 1, dtype=np.float32)  # per-label texture noise amplitude
_NOISE[[ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, CAR, POTHOLE]] = [
    0.022, 0.02, 0.02, 0.01, 0.01, 0.07, 0.045, 0.004, 0.012, 0.03
]
_TILE_SEED = 20211121  # fixed: the noise tiles are constants of the generator, not of a scene
_tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _noise_tiles(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed noise textures: white N(0,1) of shape (2H+64, 2W+64), of which each scene reads
    an (H,W) window at a random offset (pixel texture), and a smooth (blurred, unit std)
    256x256 tile read at object-relative coordinates (lumpy rims). Cached per size."""
    key = (H, W)
    if key not in _tiles:
        from scipy import ndimage

        g = np.random.Generator(np.random.Philox(key=_TILE_SEED))
        white = g.standard_normal((2 * H + 64, 2 * W + 64)).astype(np.float32)
        smooth = ndimage.gaussian_filter(g.standard_normal((256, 256)), sigma=2.0, mode="wrap")
        smooth = (smooth / smooth.std()).astype(np.float32)
        _tiles[key] = (white, smooth)
    return _tiles[key]


def _clip(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """np.clip without its Python-level overhead (matters for small arrays)."""
    return np.minimum(np.maximum(a, lo), hi)


def _rgb(*v: float) -> np.ndarray:
    """A colour as a (3,1,1) float32 array (broadcasts over channel-first images)."""
    return np.array(v, dtype=np.float32).reshape(3, 1, 1)


class _Canvas:
    """Channel-first image (3,H,W float32), label map (H,W uint8), the scene's noise windows,
    and the geometry of the ground plane."""

    def __init__(
        self, H: int, W: int, horizon: float, w0: float, lat: float, c: float,
        white: np.ndarray, smooth: np.ndarray, haze: np.ndarray, fog: float,
    ) -> None:
        self.H, self.W, self.h, self.w0, self.lat, self.c = H, W, horizon, w0, lat, c
        self.img = np.empty((3, H, W), dtype=np.float32)
        self.seg = np.full((H, W), SKY, dtype=np.uint8)
        self.ys = np.arange(H, dtype=np.float32)[:, None] + 0.5  # pixel centres
        self.xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
        self.white, self.smooth_tile, self.haze, self.fog_strength = white, smooth, haze, fog

    def d_of_row(self, y: np.ndarray) -> np.ndarray:
        return np.maximum((y + 0.5 - self.h) / (self.H - self.h), 1e-3)

    def row_of_d(self, d: float) -> float:
        return self.h + d * (self.H - self.h) - 0.5

    def scale(self, d: float) -> float:
        """Pixels per world unit (road half-width) at inverse depth d."""
        return self.w0 * self.W * d

    def centre(self, d: float) -> float:
        lim = 3.0 * self.W
        shift = min(max(self.c * _CURVE_GAIN * self.W * (1.0 / d - 1.0), -lim), lim)
        return self.W / 2 + self.lat * self.w0 * self.W * d + shift

    def centre_rows(self, d: np.ndarray) -> np.ndarray:
        lim = 3.0 * self.W
        shift = np.minimum(np.maximum(self.c * _CURVE_GAIN * self.W * (1.0 / d - 1.0), -lim), lim)
        return self.W / 2 + self.lat * self.w0 * self.W * d + shift

    def ground_x(self, d: float, X: float) -> float:
        """Image column of the ground point at lateral position X (units) and inverse depth d."""
        return self.centre(d) + X * self.w0 * self.W * d

    def fog(self, d: float) -> float:
        """Atmospheric haze weight at inverse depth d (0 = none)."""
        return max(0.0, 1.0 - d / 0.12) * self.fog_strength

    def box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """Integer slices covering [y0, y1) x [x0, x1) clipped to the image, or None if empty."""
        ya, yb = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), self.H)
        xa, xb = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), self.W)
        if ya >= yb or xa >= xb:
            return None
        return slice(ya, yb), slice(xa, xb)

    def grid(self, sl: tuple[slice, slice], cy: float, cx: float, ry: float, rx: float):
        """Normalised coordinates ((y-cy)/ry as (h,1), (x-cx)/rx as (1,w)) of a slice."""
        yy = (self.ys[sl[0]] - cy) / ry
        xx = (self.xs[:, sl[1]] - cx) / rx
        return yy, xx

    def paint(
        self, sl: tuple[slice, slice], mask: np.ndarray, color: np.ndarray, label: int, d: float
    ) -> None:
        """Write colour ((3,1,1) or (3,h,w)), hazed for depth d, and label where mask is True."""
        f = self.fog(d)
        if f > 0:
            color = color * (1.0 - f) + self.haze * f
        np.copyto(self.img[:, sl[0], sl[1]], color, where=mask)
        np.copyto(self.seg[sl], label, where=mask)


def _ellipse(cv: _Canvas, cy: float, cx: float, ry: float, rx: float, rough: float = 0.0):
    """Slice, mask and normalised coordinates of an ellipse; `rough` > 0 perturbs the rim with
    the scene's smooth noise (leafy crowns, broken pothole edges)."""
    ext = 1.0 + 2.5 * rough
    ry, rx = max(ry, 0.6), max(rx, 0.6)
    sl = cv.box(cy - ry * ext, cy + ry * ext + 1, cx - rx * ext, cx + rx * ext + 1)
    if sl is None:
        return None, None, None, None
    yy, xx = cv.grid(sl, cy, cx, ry, rx)
    rho2 = xx * xx + yy * yy
    if rough > 0:
        # rim noise read from the smooth tile at object-relative coordinates, so bumps scale
        # with the object (a big bush is as lumpy as a small one)
        by = int(cy * 7.0 + cx * 3.0) & 255
        bx = int(cx * 5.0 + cy * 11.0) & 255
        iy = ((yy * 7.0).astype(np.intp) + by) & 255  # the 256x256 tile wraps seamlessly
        ix = ((xx * 7.0).astype(np.intp) + bx) & 255
        lim = 1.0 + rough * cv.smooth_tile[iy, ix]
        return sl, rho2 < lim * lim, yy, xx
    return sl, rho2 < 1.0, yy, xx


class _Rng:
    """The scene's random stream: uniforms drawn in blocks (one numpy call per 256 draws)."""

    _BLOCK = 256

    def __init__(self, seed: int, index: int) -> None:
        # counter-based generator keyed by (seed, index): scene i needs no other scene's draws
        self.g = np.random.Generator(np.random.Philox(key=(int(seed) << 64) | int(index)))
        self._buf: list[float] = []
        self._pop = self._buf.pop

    def _next(self) -> float:
        try:
            return self._pop()
        except IndexError:
            self._buf.extend(self.g.random(self._BLOCK)[::-1].tolist())  # popped from the end
            return self._pop()

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * self._next()

    def i(self, lo: int, hi: int) -> int:
        """Integer in [lo, hi] inclusive."""
        return min(lo + int(self._next() * (hi - lo + 1)), hi)

    def p(self, prob: float) -> bool:
        return self._next() < prob

    def normal(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        # Box-Muller from two uniforms of the block
        u1, u2 = max(self._next(), 1e-12), self._next()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def choice(self, seq):  # type: ignore[no-untyped-def]
        return seq[self.i(0, len(seq) - 1)]


# --------------------------------------------------------------------------- scene parts
def _sky(cv: _Canvas, r: _Rng) -> None:
    """Vertical gradient from the zenith colour to the horizon haze, plus soft clouds."""
    W = cv.W
    top_row = min(max(int(math.ceil(cv.h)) + 1, 1), cv.H)
    overcast = r.p(0.25)
    top = _rgb(0.55, 0.6, 0.65) if overcast else _rgb(r.u(0.2, 0.35), r.u(0.4, 0.55), r.u(0.75, 0.92))
    t = (np.arange(top_row, dtype=np.float32) / max(cv.h, 1.0))[:, None]
    cv.img[:, :top_row, :] = top * (1 - t) + cv.haze * t
    for _ in range(r.i(0, 4 if not overcast else 2)):
        cy, cx = r.u(0.05, 0.8) * cv.h, r.u(-0.1, 1.1) * W
        ry, rx = r.u(0.04, 0.12) * cv.H, r.u(0.08, 0.3) * W
        sl = cv.box(cy - 2 * ry, min(cy + 2 * ry, top_row), cx - 2 * rx, cx + 2 * rx)
        if sl is None:
            continue
        yy, xx = cv.grid(sl, cy, cx, ry, rx)
        a = np.exp(-(yy * yy + xx * xx)) * r.u(0.5, 0.9)
        reg = cv.img[:, sl[0], sl[1]]
        reg += (_rgb(0.96, 0.96, 0.97) - reg) * a


def _ground(cv: _Canvas, r: _Rng, p: dict[str, Any]) -> None:
    """Terrain, sidewalks with kerbs, the road with anti-aliased edges and lane markings."""
    H, W = cv.H, cv.W
    y0 = min(max(int(math.floor(cv.h)), 0), H)
    rows = np.arange(y0, H, dtype=np.float32)
    d = cv.d_of_row(rows)
    s = (cv.w0 * W * d)[:, None]
    xc = cv.centre_rows(d)[:, None]
    xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
    X = (xs - xc) / s  # lateral position in road half-widths
    aX = np.abs(X)
    z = 1.0 / d
    img = cv.img[:, y0:, :]
    seg = cv.seg[y0:, :]
    # terrain, with stripes across depth
    stripe = (1.0 + 0.07 * np.sin(z * p["stripe_freq"] + p["stripe_phase"]))[:, None]
    img[:] = p["terrain_color"] * stripe
    seg[:] = TERRAIN
    sw = p["sidewalk_width"]
    if sw > 0:
        walk = aX < 1.0 + sw
        col = np.where(aX < 1.06, p["sidewalk_color"] * 1.15, p["sidewalk_color"])  # kerb
        np.copyto(img, col, where=walk)
        np.copyto(seg, SIDEWALK, where=walk)
    # road: coverage of each pixel gives an anti-aliased edge
    cover = _clip((1.0 - aX) * s + 0.5, 0.0, 1.0)
    img += (p["road_color"] - img) * cover
    np.copyto(seg, ROAD, where=cover >= 0.5)
    if p["markings"]:
        lw = 0.035
        white = _rgb(0.92, 0.92, 0.9)
        dist = np.abs(aX - 0.92)  # distance to the nearest edge line, in road half-widths
        centre = p["centre_alpha"] > 0
        if centre:  # gaps between dashes are pushed away by adding 1 to the distance
            gap = (np.mod(z * p["dash_freq"] + p["dash_phase"], 1.0) >= 0.45).astype(np.float32)
            dcen = aX + gap[:, None]
            if p["centre_yellow"]:
                cen = _clip((lw - dcen) * s + 0.5, 0.0, 1.0)
                img += (p["centre_color"] - img) * cen
            else:  # same paint: one coverage map for all three lines
                dist = np.minimum(dist, dcen)
        line = _clip((lw - dist) * s + 0.5, 0.0, 1.0)
        img += (white - img) * line
    # haze towards the horizon (only the rows with d < 0.12 are affected)
    k = int(np.searchsorted(d, 0.12))
    if k > 0:
        f = ((1.0 - d[:k] / 0.12) * cv.fog_strength)[:, None]
        img[:, :k] += (cv.haze - img[:, :k]) * f


def _potholes(
    cv: _Canvas, r: _Rng, p: dict[str, Any], n: int, difficulty: float
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Dark irregular holes with a lighter broken rim; some hold water that reflects the sky."""
    placed: list[tuple[float, float]] = []
    drawn = []
    for k in range(n):
        sl = None
        for attempt in range(8):  # retry until the hole lands on visible road
            if k == 0 and attempt == 7:  # the first one is guaranteed: camera lane, near
                dp, Xp = 0.8, -cv.lat
            else:
                dp, Xp = r.u(0.35, 0.92), r.u(-0.75, 0.75)
                if any(abs(dp - q[0]) < 0.12 and abs(Xp - q[1]) < 0.45 for q in placed):
                    continue
            size = r.u(0.12, 0.28) * (1.0 - 0.45 * difficulty)
            cy, cx = cv.row_of_d(dp), cv.ground_x(dp, Xp)
            rx = max(size * cv.scale(dp), 2.0)
            ry = max(rx * (0.12 + 0.45 * dp), 1.2)
            sl, mask, yy, xx = _ellipse(cv, cy, cx, ry, rx, rough=0.12)
            if sl is not None:
                mask &= cv.seg[sl] == ROAD
                if mask.sum() >= 3:
                    break
            sl = None
        if sl is None:
            continue
        placed.append((dp, Xp))
        dark = 0.3 + 0.35 * difficulty
        inside = p["road_color"] * dark * (0.75 + 0.35 * _clip(yy, -1, 1))  # far rim in shade
        if r.p(0.2):  # standing water: a dull bluish sky reflection
            inside = inside * 0.6 + _rgb(0.3, 0.38, 0.5) * 0.3
        rim = (xx * xx + yy * yy) > 0.6
        col = np.where(rim, p["road_color"] * (0.85 - 0.1 * difficulty) * 0.8, inside)
        cv.paint(sl, mask, col, POTHOLE, dp)
        drawn.append((sl, mask))
    return drawn


def _cracks(cv: _Canvas, r: _Rng, n: int) -> None:
    """Thin dark random-walk polylines on the road surface (still labelled road)."""
    for _ in range(n):
        d0 = r.u(0.3, 0.95)
        y, x = cv.row_of_d(d0), cv.ground_x(d0, r.u(-0.8, 0.8))
        steps = max(int(r.u(0.3, 1.0) * cv.scale(d0) * 1.5), 4)
        ang = r.u(0, 6.3) + r.g.normal(0.0, 0.35, steps).cumsum()
        ys = np.round(y + np.cumsum(np.sin(ang)) * 0.5).astype(np.int64)
        xs = np.round(x + np.cumsum(np.cos(ang))).astype(np.int64)
        ok = (ys >= 0) & (ys < cv.H) & (xs >= 0) & (xs < cv.W)
        ys, xs = ys[ok], xs[ok]
        on = cv.seg[ys, xs] == ROAD
        cv.img[:, ys[on], xs[on]] *= 0.55


def _shadows(cv: _Canvas, r: _Rng, n: int) -> None:
    """Soft-edged dark patches across the ground (drawn before objects; labels unchanged)."""
    top = int(math.ceil(cv.h)) + 1
    for _ in range(n):
        ds = r.u(0.15, 0.95)
        cy, cx = cv.row_of_d(ds), cv.ground_x(ds, r.u(-2.0, 2.0))
        rx = max(r.u(0.5, 1.6) * cv.scale(ds), 1.0)
        ry = max(rx * (0.1 + 0.4 * ds) * r.u(0.5, 1.2), 1.0)
        sl = cv.box(max(cy - ry, top), cy + ry + 1, cx - rx, cx + rx + 1)
        depth = r.u(0.3, 0.45)
        if sl is None:
            continue
        yy, xx = cv.grid(sl, cy, cx, ry, rx)
        a = _clip((1.0 - np.sqrt(xx * xx + yy * yy)) * 3.0, 0.0, 1.0) * depth
        cv.img[:, sl[0], sl[1]] *= 1.0 - a


def _tree_line(cv: _Canvas, r: _Rng, amount: float) -> None:
    """Distant tree line on the horizon; its height grows with the vegetation amount."""
    height = cv.H * 0.09 * amount * r.u(0.6, 1.4)
    f1, p1, f2, p2, f3, p3 = r.u(0.05, 0.15), r.u(0, 6.3), r.u(0.2, 0.5), r.u(0, 6.3), r.u(0.01, 0.03), r.u(0, 6.3)
    shade = r.u(0.8, 1.15)
    if height < 0.5:
        return
    xs = np.arange(cv.W, dtype=np.float32) * (200.0 / cv.W)
    prof = (1.0 + 0.35 * np.sin(xs * f1 + p1) + 0.25 * np.sin(xs * f2 + p2)) * (
        0.5 + 0.5 * np.sin(xs * f3 + p3) ** 2
    )
    top = cv.h - height * prof
    sl = cv.box(top.min(), cv.h + 1, 0, cv.W)
    if sl is None:
        return
    yy = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] + 0.5
    mask = (yy > top[None, :]) & (cv.seg[sl] == SKY)
    cv.paint(sl, mask, _rgb(0.25, 0.36, 0.2) * shade, VEGETATION, 0.01)


def _tree(cv: _Canvas, r: _Rng, d: float, X: float, p: dict[str, Any]) -> None:
    s = cv.scale(d)
    yb, xb = cv.row_of_d(d), cv.ground_x(d, X)
    trunk_h = r.u(0.25, 0.6) * s
    tw = max(0.06 * s, 0.8)
    crown_r = r.u(0.35, 0.8) * s
    green = p["leaf_color"] * r.u(0.8, 1.2)
    n_blobs = r.i(1, 2) if crown_r >= 3.0 else 1
    sl = cv.box(yb - trunk_h - 0.3 * s, yb + 0.5, xb - tw / 2, xb + tw / 2)
    if sl is not None:
        cv.paint(sl, True, _rgb(0.3, 0.22, 0.15), VEGETATION, d)
    cy = yb - trunk_h - crown_r * 0.8
    for k in range(n_blobs):
        oy, ox = cy + r.u(-0.45, 0.3) * crown_r, xb + r.u(-0.5, 0.5) * crown_r
        rr = crown_r * r.u(0.65, 1.0)
        sl, mask, yy, xx = _ellipse(cv, oy, ox, rr * r.u(0.85, 1.15), rr,
                                    rough=0.1 if rr >= 2.5 else 0.0)
        if sl is None:
            continue
        shade = (1.1 - 0.05 * k) - 0.35 * _clip(yy, -1.0, 1.0)  # lit from above: (h,1)
        cv.paint(sl, mask, green * shade, VEGETATION, d)


def _bush(cv: _Canvas, r: _Rng, d: float, X: float, p: dict[str, Any]) -> None:
    s = cv.scale(d)
    yb, xb = cv.row_of_d(d), cv.ground_x(d, X)
    rx = r.u(0.25, 0.6) * s
    ry = rx * r.u(0.45, 0.7)
    tone = r.u(0.9, 1.3)
    sl, mask, yy, xx = _ellipse(cv, yb, xb, ry, rx, rough=0.2 if rx >= 2.5 else 0.0)
    if sl is None:
        return
    mask &= yy < 0.2
    cv.paint(sl, mask, p["leaf_color"] * tone * (1.05 - 0.3 * _clip(yy, -1.0, 1.0)), VEGETATION, d)


def _windows(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    fv, fu = np.mod(v, 1.0), np.mod(u, 1.0)
    return (fv > 0.35) & (fv < 0.8) & (fu < 0.5) & (v > 0.6)


def _building(cv: _Canvas, r: _Rng, d_near: float, d_far: float, side: int, Xf: float) -> None:
    """A block along the roadside: its side facade in perspective (a quadrilateral with a grid
    of windows, perspective-correct along depth) and its front face towards the camera."""
    height = r.u(1.5, 5.0)
    wall = _rgb(r.u(0.45, 0.8), r.u(0.4, 0.7), r.u(0.35, 0.65)) * r.u(0.7, 1.0)
    win = _rgb(0.16, 0.2, 0.26) * r.u(0.8, 1.3)
    width = r.u(1.0, 3.0) * cv.scale(d_near)
    wfreq = r.u(2.0, 3.5)
    xn, xf = cv.ground_x(d_near, side * Xf), cv.ground_x(d_far, side * Xf)
    bn, bf = cv.row_of_d(d_near), cv.row_of_d(d_far)
    tn, tf = bn - height * cv.scale(d_near), bf - height * cv.scale(d_far)
    floors = max(int(height * 2.5), 1)
    lo, hi = min(xn, xf), max(xn, xf)
    sl = cv.box(min(tn, tf), max(bn, bf) + 1, lo, hi + 1)
    if sl is not None and hi - lo >= 0.5:
        xs = np.arange(sl[1].start, sl[1].stop, dtype=np.float32) + 0.5
        q = _clip((xs - xn) / (xf - xn), 0.0, 1.0)
        top, bot = tn + q * (tf - tn), bn + q * (bf - bn)
        dd = d_near + q * (d_far - d_near)  # inverse depth is affine in screen x
        ys = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] + 0.5
        mask = (ys >= top) & (ys <= bot) & (xs >= lo) & (xs <= hi)
        if (bn - tn) / floors >= 2.5:  # windows only where a floor is a few pixels tall
            v = (bot - ys) / np.maximum(bot - top, 1e-3) * floors
            col = np.where(_windows(v, wfreq / dd), win, wall * 0.85)
        else:
            col = wall * 0.85
        cv.paint(sl, mask, col, BUILDING, d_far)
    x0, x1 = (xn - width, xn) if side < 0 else (xn, xn + width)
    sl = cv.box(tn, bn + 0.5, x0, x1)
    if sl is not None:
        ys = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] + 0.5
        if (bn - tn) / floors >= 2.5:
            v = (bn - ys) / max(bn - tn, 1e-3) * floors
            u = (xs - x0) / max(cv.scale(d_near), 1e-3) * wfreq * 1.5
            cv.paint(sl, True, np.where(_windows(v, u), win, wall), BUILDING, d_near)
        else:
            cv.paint(sl, True, wall, BUILDING, d_near)


def _pole(cv: _Canvas, r: _Rng, d: float, X: float, sign: bool) -> None:
    s = cv.scale(d)
    yb, xb = cv.row_of_d(d), cv.ground_x(d, X)
    h = r.u(1.2, 2.2) * s
    w = max(0.03 * s, 0.7)
    sl = cv.box(yb - h, yb + 0.5, xb - w / 2, xb + w / 2)
    if sl is not None:
        cv.paint(sl, True, _rgb(0.45, 0.45, 0.47), POLE, d)
    rad = max(r.u(0.14, 0.22) * s, 1.0)
    cy = yb - h * r.u(0.55, 0.9)
    kind = r.i(0, 2)
    if not sign:
        return
    sl = cv.box(cy - rad, cy + rad + 1, xb - rad * 1.2, xb + rad * 1.2 + 1)
    if sl is None:
        return
    yy, xx = cv.grid(sl, cy, xb, rad, rad)
    if kind == 0:  # round: red ring, white centre
        rho2 = yy * yy + xx * xx
        col = np.where(rho2 > 0.42, _rgb(0.8, 0.1, 0.1), _rgb(0.95, 0.95, 0.95))
        cv.paint(sl, rho2 < 1.0, col, SIGN, d)
    elif kind == 1:  # warning triangle, apex up: red border, light centre
        inside = (yy < 0.9) & (np.abs(xx) < (yy + 1.0) * 0.55)
        inner = (yy < 0.6) & (np.abs(xx) < (yy + 0.6) * 0.45)
        cv.paint(sl, inside, np.where(inner, _rgb(0.95, 0.9, 0.3), _rgb(0.8, 0.1, 0.1)), SIGN, d)
    else:  # blue information rectangle
        cv.paint(sl, (np.abs(yy) < 0.8) & (np.abs(xx) < 1.2), _rgb(0.1, 0.3, 0.7), SIGN, d)


def _car(cv: _Canvas, r: _Rng, d: float, X: float) -> None:
    """Rear view of a car: body, cabin window, tail lights, bumper, wheels, shadow below."""
    s = cv.scale(d)
    yb, xc = cv.row_of_d(d), cv.ground_x(d, X)
    w = r.u(0.48, 0.6) * s
    h = w * r.u(0.7, 0.95)
    body = _rgb(r.u(0.05, 0.9), r.u(0.05, 0.9), r.u(0.05, 0.9))
    if r.p(0.4):
        body = _rgb(*([r.u(0.1, 0.9)] * 3))
    sl, mask, _, _ = _ellipse(cv, yb, xc, 0.12 * h, w * 0.6)
    if sl is not None:
        cv.img[:, sl[0], sl[1]] *= np.where(mask, 0.5, 1.0).astype(np.float32)
    sl = cv.box(yb - h, yb, xc - w / 2, xc + w / 2)
    if sl is None:
        return
    ys, xs = cv.grid(sl, yb - h, xc, h, w / 2)
    ax = np.abs(xs)
    cabin = ys < 0.45
    mask = np.where(cabin, ax < 0.78 + 0.44 * ys, ax <= 1.0)
    col = np.where(cabin & (ys > 0.08) & (ax < 0.68 + 0.44 * ys), _rgb(0.12, 0.14, 0.18), body)
    col = np.where((ys > 0.5) & (ys < 0.65) & (ax > 0.72), _rgb(0.85, 0.08, 0.06), col)
    col = np.where(ys > 0.82, body * 0.45, col)
    col = np.where((ys > 0.88) & (ax > 0.6), _rgb(0.06, 0.06, 0.06), col)
    cv.paint(sl, mask, col, CAR, d)


# --------------------------------------------------------------------------- one scene
def render_scene(
    seed: int,
    index: int,
    size: tuple[int, int] = (66, 200),
    *,
    shortcut: float = 0.0,
    pothole_rate: float = 0.5,
    difficulty: float = 0.3,
    shortcut_category: str = "vegetation",
    max_trees: int = 8,
    max_buildings: int = 4,
    max_poles: int = 3,
    max_cars: int = 2,
    max_potholes: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw scene `index` of stream `seed`.

    Returns (image uint8 (3,H,W) channel-first, segmentation uint8 (H,W) ROADS ids, pothole
    boxes float32 (N,4) x1,y1,x2,y2, params dict). Depends only on the arguments.
    """
    H, W = size
    r = _Rng(seed, index)
    # -- label and nuisance amounts first, so that they depend on nothing else
    pothole = r.p(pothole_rate)
    biased = r.p(shortcut)
    u_free, u_bias = r.u(), r.u()
    nuisance = (0.65 + 0.35 * u_bias if not pothole else 0.3 * u_bias) if biased else u_free
    amounts = {"vegetation": r.u(), "building": r.u(), "traffic sign": r.u()}
    amounts[shortcut_category] = nuisance
    veg, bld, sgn = amounts["vegetation"], amounts["building"], amounts["traffic sign"]

    c = min(max(r.normal(0.0, 0.45), -1.0), 1.0) if r.p(0.8) else r.u(-1.0, 1.0)
    two_lane = r.p(0.75)
    lat = -r.u(0.35, 0.65) if two_lane else r.u(-0.2, 0.2)
    horizon = r.u(0.33, 0.45) * H
    w0 = r.u(0.5, 0.75)
    haze = _rgb(r.u(0.75, 0.88), r.u(0.8, 0.9), r.u(0.85, 0.95))
    white, smooth = _noise_tiles(H, W)
    oy, ox = r.i(0, white.shape[0] - H), r.i(0, white.shape[1] - W)
    cv = _Canvas(H, W, horizon, w0, lat, c, white[oy : oy + H, ox : ox + W], smooth, haze,
                 r.u(0.3, 0.6))  # fmt: skip
    grey = r.u(0.28, 0.45)
    p: dict[str, Any] = {
        "road_color": _rgb(grey, grey, grey * r.u(1.0, 1.1)),
        "terrain_color": r.choice(
            [_rgb(0.35, 0.5, 0.22), _rgb(0.45, 0.52, 0.25), _rgb(0.55, 0.5, 0.33), _rgb(0.4, 0.45, 0.2)]
        ) * r.u(0.85, 1.1),
        "stripe_freq": r.u(2.0, 4.0),
        "stripe_phase": r.u(0, 6.3),
        "sidewalk_color": _rgb(*([r.u(0.55, 0.72)] * 3)) * _rgb(1.0, 0.98, 0.94),
        "sidewalk_width": r.u(0.2, 0.45) if r.p(0.6 + 0.3 * bld) else 0.0,
        "markings": r.p(0.85),
        "dash_freq": r.u(0.25, 0.45),
        "dash_phase": r.u(0, 1),
        "centre_alpha": 1.0 if two_lane else 0.0,
        "centre_yellow": r.p(0.4),
        "centre_color": _rgb(0.9, 0.75, 0.2),
        "leaf_color": r.choice([_rgb(0.2, 0.38, 0.12), _rgb(0.25, 0.42, 0.15), _rgb(0.3, 0.4, 0.12)]),
    }  # fmt: skip
    bright = r.u(0.8 - 0.2 * difficulty, 1.15 + 0.1 * difficulty)
    tint = _rgb(r.u(0.95, 1.05), 1.0, r.u(0.95, 1.05)) * (bright * 255.0)

    _sky(cv, r)
    _tree_line(cv, r, veg)
    _ground(cv, r, p)
    sw = p["sidewalk_width"]
    n_pot = r.i(1, max_potholes) if pothole and max_potholes > 0 else 0
    holes = _potholes(cv, r, p, n_pot, difficulty)
    n_cracks = r.i(0, int(1 + 4 * difficulty))
    _cracks(cv, r, n_cracks)
    n_shadows = r.i(0, int(1 + 3 * difficulty))
    _shadows(cv, r, n_shadows)

    # -- objects, far to near (buildings first: they stand behind the roadside objects)
    n_bld = int(round(bld * max_buildings * r.u(0.7, 1.3)))
    for _ in range(n_bld):
        side = -1 if r.p(0.5) else 1
        d_near = r.u(0.06, 0.45)
        d_far = d_near * r.u(0.3, 0.7)
        _building(cv, r, d_near, d_far, side, 1.0 + sw + r.u(0.6, 2.0))
    objs: list[tuple[float, str, float]] = []
    n_trees = int(round(veg * max_trees * r.u(0.7, 1.3)))
    for _ in range(n_trees):
        objs.append((r.u(0.04, 0.75), "tree", (1 if r.p(0.5) else -1) * (1.0 + sw + r.u(0.15, 2.5))))
    n_bush = int(round(veg * max_trees * 0.6 * r.u(0.5, 1.5)))
    for _ in range(n_bush):
        objs.append((r.u(0.1, 0.9), "bush", (1 if r.p(0.5) else -1) * (1.0 + sw + r.u(0.1, 1.5))))
    n_signs = int(round(sgn * max_poles * r.u(0.7, 1.3)))
    n_poles = n_signs + r.i(0, max(max_poles - n_signs, 0))
    for k in range(n_poles):
        objs.append((r.u(0.06, 0.6), "sign" if k < n_signs else "pole",
                     (1 if r.p(0.7) else -1) * (1.0 + max(sw, 0.1) * r.u(0.5, 0.9))))  # fmt: skip
    n_cars = r.i(0, max_cars)
    for _ in range(n_cars):
        lane = -lat if (not two_lane or r.p(0.6)) else lat
        objs.append((r.u(0.07, 0.28), "car", lane + r.u(-0.1, 0.1)))
    objs.sort(key=lambda o: o[0])  # small d = far: drawn first
    for d, kind, X in objs:
        if kind == "tree":
            _tree(cv, r, d, X, p)
        elif kind == "bush":
            _bush(cv, r, d, X, p)
        elif kind == "car":
            _car(cv, r, d, X)
        else:
            _pole(cv, r, d, X, sign=kind == "sign")

    # -- texture noise per label, brightness and tint, quantisation to 8 bits
    amp = _NOISE * (0.7 + 0.6 * difficulty)
    img = cv.img
    img += cv.white * amp[cv.seg]
    img *= tint
    img += 0.5
    out = np.empty((3, H, W), dtype=np.uint8)
    np.copyto(out, _clip(img, 0.0, 255.0), casting="unsafe")

    seg = cv.seg
    boxes = _boxes(seg, holes)
    params = {
        "seed": seed, "index": index, "height": H, "width": W,
        "curvature": c, "steering": c, "pothole": int(len(boxes) > 0),
        "n_potholes": int(len(boxes)), "shortcut": shortcut, "shortcut_applied": biased,
        "shortcut_category": shortcut_category, "vegetation_amount": veg,
        "building_amount": bld, "sign_amount": sgn, "difficulty": difficulty,
        "horizon": horizon, "road_half_width": w0, "lateral": lat, "two_lane": two_lane,
        "sidewalk": sw > 0, "markings": p["markings"], "n_trees": n_trees, "n_bushes": n_bush,
        "n_buildings": n_bld, "n_poles": n_poles, "n_signs": n_signs, "n_cars": n_cars,
        "n_cracks": n_cracks, "n_shadows": n_shadows, "brightness": bright,
    }  # fmt: skip
    return out, seg, boxes, params


def _boxes(seg: np.ndarray, holes: list[tuple[tuple[slice, slice], np.ndarray]]) -> np.ndarray:
    """Box (x1,y1,x2,y2; x2,y2 exclusive) of each pothole's pixels still labelled pothole in
    the final map (objects drawn later may hide part or all of one)."""
    out = []
    for (sy, sx), mask in holes:
        vis = mask & (seg[sy, sx] == POTHOLE)
        rows, cols = np.flatnonzero(vis.any(axis=1)), np.flatnonzero(vis.any(axis=0))
        if len(rows):
            out.append((sx.start + cols[0], sy.start + rows[0], sx.start + cols[-1] + 1,
                        sy.start + rows[-1] + 1))  # fmt: skip
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


# --------------------------------------------------------------------------- dataset
class RoadScenes(torch.utils.data.Dataset):
    """`n` procedural road scenes (see the module docstring for geometry, targets, shortcut).

    Args:
        n: number of scenes; scene i is generated from (seed, i) alone.
        size: (H, W) in pixels, at least (16, 32); 66x200 is PilotNet's input.
        seed: stream seed; same seed -> byte-identical images.
        shortcut: in [0, 1], probability that the nuisance category's amount is set by the
            pothole label (high without potholes, low with them).
        pothole_rate: probability that a scene has potholes.
        difficulty: in [0, 1]; smaller, fainter potholes, more cracks and shadows, more noise.
        task: "steering" (target float in [-1, 1], positive = steer right), "pothole"
            (target int 0/1) or "none" (target None).
        shortcut_category: "vegetation" (default), "building" or "traffic sign".
        max_trees, max_buildings, max_poles, max_cars, max_potholes: object counts.
        transform: callable Sample -> Sample applied last.

    Each item: Sample(image (3,H,W) float32 in [0,1] (exactly k/255), segmentation int64 ROADS
    ids, boxes (N,4) pothole boxes with box_labels = 34, target, meta = generation params).
    """

    label_table = ROADS

    def __init__(
        self,
        n: int,
        size: tuple[int, int] = (66, 200),
        seed: int = 0,
        shortcut: float = 0.0,
        pothole_rate: float = 0.5,
        difficulty: float = 0.3,
        task: str = "steering",
        shortcut_category: str = "vegetation",
        max_trees: int = 8,
        max_buildings: int = 4,
        max_poles: int = 3,
        max_cars: int = 2,
        max_potholes: int = 3,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"RoadScenes n must be a non-negative int, got {n!r}")
        size = _parse_size(size)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"RoadScenes seed must be a non-negative int, got {seed!r}")
        for name, v in (("shortcut", shortcut), ("pothole_rate", pothole_rate), ("difficulty", difficulty)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"RoadScenes {name} must be a number in [0, 1], got {v!r}")
        if task not in TASKS:
            raise ValueError(f"RoadScenes task must be one of {TASKS}, got {task!r}")
        if shortcut_category not in SHORTCUT_CATEGORIES:
            raise ValueError(
                f"RoadScenes shortcut_category must be one of {SHORTCUT_CATEGORIES}, got {shortcut_category!r}"
            )
        counts = {"max_trees": max_trees, "max_buildings": max_buildings, "max_poles": max_poles,
                  "max_cars": max_cars, "max_potholes": max_potholes}  # fmt: skip
        for name, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ValueError(f"RoadScenes {name} must be a non-negative int, got {v!r}")
        if max_potholes == 0 and pothole_rate > 0:
            raise ValueError("RoadScenes max_potholes=0 needs pothole_rate=0")
        self.n, self.size, self.seed, self.task = int(n), size, int(seed), task
        self.transform = transform
        self._kw: dict[str, Any] = {
            "shortcut": float(shortcut), "pothole_rate": float(pothole_rate),
            "difficulty": float(difficulty), "shortcut_category": shortcut_category,
            **{k: int(v) for k, v in counts.items()},
        }  # fmt: skip

    @property
    def meta(self) -> dict[str, Any]:
        """The generation parameters (JSON-serialisable): enough to regenerate the data."""
        return {"dataset": "roads", "n": self.n, "size": list(self.size), "seed": self.seed,
                "task": self.task, **self._kw}  # fmt: skip

    @property
    def classes(self) -> list[str] | None:
        return ["no_pothole", "pothole"] if self.task == "pothole" else None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.meta.items() if k not in ("dataset",))
        return f"RoadScenes({kw})"

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Raw arrays of scene `index`: (image uint8 (3,H,W), seg uint8 (H,W), boxes, params)."""
        return render_scene(self.seed, self._index(index), self.size, **self._kw)

    def _index(self, index: int) -> int:
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not isinstance(index, int | np.integer):
            raise TypeError(f"RoadScenes index must be an int, got {type(index).__name__}")
        i = int(index) + (self.n if index < 0 else 0)
        if not 0 <= i < self.n:
            raise IndexError(f"RoadScenes index {index} out of range for {self.n} scenes")
        return i

    def __getitem__(self, index: int) -> Sample:
        img, seg, boxes, params = self.scene(index)
        i = params["index"]
        if self.task == "steering":
            target: Any = float(params["steering"])
        elif self.task == "pothole":
            target = int(params["pothole"])
        else:
            target = None
        sample = Sample(
            image=torch.from_numpy(img.astype(np.float32) / np.float32(255.0)),  # numpy: no thread pool
            id=f"roads-s{self.seed}-{i:06d}",
            segmentation=torch.from_numpy(seg.astype(np.int64)),
            boxes=torch.from_numpy(boxes),
            box_labels=torch.full((len(boxes),), POTHOLE, dtype=torch.int64),
            target=target,
            meta={**params, "task": self.task},
        )
        return self.transform(sample) if self.transform is not None else sample


def _parse_size(size: Any) -> tuple[int, int]:
    if isinstance(size, str):
        parts = size.lower().replace("×", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"size must look like HxW (e.g. 66x200), got {size!r}") from None
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size)
    ):
        raise ValueError(f"size must be (H, W) ints, got {size!r}")
    H, W = int(size[0]), int(size[1])
    if H < 16 or W < 32 or H > 4096 or W > 4096:
        raise ValueError(f"size (H, W) must be within 16..4096 x 32..4096, got {(H, W)}")
    return H, W
