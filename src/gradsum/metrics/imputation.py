"""Noisy linear imputation (Rong et al., ROAD, ICML 2022), batched on the images' device.

Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 edge
neighbours, 1/12 for the 4 diagonal ones, renormalised over the neighbours inside the
image), where neighbours may themselves be removed: a sparse linear system per image. We
solve all images and channels at once by conjugate gradient (the system, diag(D) - W
restricted to the removed pixels, is symmetric positive definite), preconditioned by a
geometric multigrid V-cycle, with the neighbour sums computed by shifted adds on the
images' device. Then N(0, noise^2) is added to the imputed pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["noisy_linear_impute", "NEIGHBOUR_KERNEL"]

#: weights of the 8 neighbours: 1/6 edge, 1/12 diagonal (they sum to 1)
NEIGHBOUR_KERNEL = torch.tensor(
    [[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64
)


def _neighbour_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the 8 neighbours (zero outside the image) with NEIGHBOUR_KERNEL weights.
    The kernel is (outer([1,2,1],[1,2,1]) - 4 delta) / 12: two separable [1,2,1] passes,
    done with in-place shifted adds (no padding copies)."""
    v = t * 2
    v[..., 1:, :] += t[..., :-1, :]
    v[..., :-1, :] += t[..., 1:, :]
    s = v * 2
    s[..., 1:] += v[..., :-1]
    s[..., :-1] += v[..., 1:]
    return s.sub_(t, alpha=4).div_(12)


def _neighbour_sum12(t: torch.Tensor) -> torch.Tensor:
    """12 x `_neighbour_sum` (the 1/12 is folded into the callers' coefficients)."""
    v = t * 2
    v[..., 1:, :] += t[..., :-1, :]
    v[..., :-1, :] += t[..., 1:, :]
    s = v * 2
    s[..., 1:] += v[..., :-1]
    s[..., :-1] += v[..., 1:]
    return s.sub_(t, alpha=4)


def _block_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over 2x2 blocks (odd sizes padded with zeros): (.., h, w) -> (.., ceil(h/2), ceil(w/2))."""
    h, w = t.shape[-2:]
    if h % 2 or w % 2:
        t = F.pad(t, (0, w % 2, 0, h % 2))
    return t[..., 0::2, 0::2] + t[..., 1::2, 0::2] + t[..., 0::2, 1::2] + t[..., 1::2, 1::2]


def _block_copy(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Each coarse pixel copied to its 2x2 block, cropped to (h, w)."""
    n, c, hc, wc = t.shape
    return t[:, :, :, None, :, None].expand(n, c, hc, 2, wc, 2).reshape(n, c, 2 * hc, 2 * wc)[..., :h, :w]


class _Level:
    """One grid of the hierarchy: removed mask m, in-image neighbour weight diag, the
    products the iterations need (m*diag, m/12, omega*m/diag) and work buffers (the loop
    writes into them instead of allocating: fresh large CPU tensors cost page faults)."""

    def __init__(self, m: torch.Tensor, omega: float = 0.8):
        h, w = m.shape[-2:]
        self.m = m
        diag = _neighbour_sum(torch.ones((1, 1, h, w), device=m.device, dtype=m.dtype)).expand_as(m)
        self.diag = diag.contiguous()
        self.md = m * self.diag
        self.m12 = m / 12
        self.smooth = omega * m / self.diag
        self._a, self._b, self._out = torch.empty_like(m), torch.empty_like(m), torch.empty_like(m)
        self.e, self.t = torch.empty_like(m), torch.empty_like(m)

    def apply(self, v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(D - W) v restricted to the removed pixels (v is zero elsewhere), into `out`
        (default: this level's own output buffer)."""
        a, s = self._a, self._b
        torch.mul(v, 2, out=a)  # [1,2,1] down the rows ...
        a[..., 1:, :] += v[..., :-1, :]
        a[..., :-1, :] += v[..., 1:, :]
        torch.mul(a, 2, out=s)  # ... then along the columns: 12 x neighbour sum + 4 v
        s[..., 1:] += a[..., :-1]
        s[..., :-1] += a[..., 1:]
        s.sub_(v, alpha=4)
        out = self._out if out is None else out
        torch.mul(self.md, v, out=out)
        return out.addcmul_(self.m12, s, value=-1)


def _levels(m: torch.Tensor, min_size: int = 4) -> list[_Level]:
    """Multigrid hierarchy, halving the grid; a coarse pixel is unknown when all four of its
    fine pixels are."""
    levels = []
    while True:
        h, w = m.shape[-2:]
        levels.append(_Level(m))
        if min(h, w) < 2 * min_size or not bool(m.any()):
            return levels
        m = (_block_sum(m) > 3.5).to(m.dtype)


def _vcycle(r: torch.Tensor, levels: list[_Level], k: int = 0) -> torch.Tensor:
    """One symmetric V-cycle (damped Jacobi smoothing, omega 0.8; piecewise-constant
    transfer with restriction = its transpose; re-discretised coarse operators): a
    symmetric positive preconditioner for conjugate gradient. Returns level k's buffer `e`
    (valid until the next V-cycle)."""
    lv = levels[k]
    e, t = lv.e, lv.t
    torch.mul(lv.smooth, r, out=e)
    if k == len(levels) - 1:
        for _ in range(3):
            torch.sub(r, lv.apply(e), out=t)
            e.addcmul_(lv.smooth, t)
        return e
    h, w = r.shape[-2:]
    torch.sub(r, lv.apply(e), out=t)
    rc = _block_sum(t).mul_(levels[k + 1].m)
    e.addcmul_(lv.m, _block_copy(_vcycle(rc, levels, k + 1), h, w))
    torch.sub(r, lv.apply(e), out=t)
    return e.addcmul_(lv.smooth, t)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per (image, channel) inner product, (N,C,1,1), without a full-size temporary."""
    n, c = a.shape[:2]
    return torch.linalg.vecdot(a.reshape(n, c, -1), b.reshape(n, c, -1))[..., None, None]


def _solve(x: torch.Tensor, m: torch.Tensor, tol: float, max_iter: int, check_every: int, multigrid: bool = True) -> torch.Tensor:
    """Preconditioned CG for the removed pixels (m = 1) of every (image, channel) at once."""
    levels = _levels(m) if multigrid else _levels(m, min_size=10**9)
    fine = levels[0]
    inv_diag = fine.m / fine.diag

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return _vcycle(v, levels) if multigrid else torch.mul(v, inv_diag, out=fine.e)

    b = m * _neighbour_sum(x * (1 - m))
    u = torch.zeros_like(x)
    r = b.clone()
    p = precondition(r).clone()
    rz = _dot(r, p)
    threshold = tol**2 * _dot(b, b)
    ap = torch.empty_like(x)
    for it in range(max_iter):
        if it % check_every == 0 and bool((_dot(r, r) <= threshold).all()):
            break
        fine.apply(p, out=ap)
        pap = _dot(p, ap)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, 1.0), 0.0)
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        z = precondition(r)
        rz_new = _dot(r, z)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
        p.mul_(beta).add_(z)
        rz = rz_new
    return u


def noisy_linear_impute(
    images: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    tol: float = 1e-3,
    max_iter: int = 2000,
    check_every: int = 1,
    multigrid: bool = True,
) -> torch.Tensor:
    """Fill the pixels where `removed` is True by noisy linear imputation.

    images: (N,C,H,W); removed: (N,H,W) or (H,W) bool (all channels of a pixel together).
    noise: standard deviation of the Gaussian noise added to imputed pixels (0 = none);
    drawn from `generator` if given, else from a generator seeded with `seed`.
    tol: stop when every system's residual norm is below tol x its right-hand side norm
    (checked every `check_every` iterations: one host sync each). The default 1e-3 leaves
    the imputed values within ~1e-3 of the exact solve (measured max 6e-4 at 32x32 and 1.3e-3
    at 96x96 on [0,1] images),
    well below the 0.01 noise ROAD adds; pass 1e-6 or less for an exact fill.
    multigrid: precondition CG with a geometric multigrid V-cycle (default; about 10-20
    iterations whatever the image size) instead of the diagonal (Jacobi). A region of removed
    pixels that touches no kept pixel (everything removed) has no defined value: it is
    filled with 0 before the noise.
    """
    if images.ndim != 4:
        raise ValueError(f"noisy_linear_impute: images must be (N,C,H,W); got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if removed.ndim == 2:
        removed = removed.expand(n, h, w)
    if removed.shape != (n, h, w):
        raise ValueError(f"noisy_linear_impute: removed mask {tuple(removed.shape)} must be (N,H,W) = {(n, h, w)}")
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    x = images.to(dtype)
    # (N,C,H,W) contiguous: same-shape elementwise ops are several times faster than broadcasts
    m = removed.to(device=x.device, dtype=dtype)[:, None].expand(n, c, h, w).contiguous()
    u = _solve(x, m, tol, max_iter, check_every, multigrid)
    filled = x * (1 - m) + u * m
    if noise > 0:
        gen = generator
        if gen is None:
            gen = torch.Generator(device=x.device).manual_seed(0 if seed is None else int(seed))
        filled = filled + m * noise * torch.randn(x.shape, generator=gen, device=x.device, dtype=dtype)
    return filled.to(images.dtype)
