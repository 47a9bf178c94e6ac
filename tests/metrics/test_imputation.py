"""Noisy linear imputation (ROAD) against an exact sparse direct solve of the same system,
assembled here independently from the definition (Rong et al. 2022: each removed pixel =
weighted mean of its in-image 8 neighbours, 1/6 edge, 1/12 diagonal). The comparison with
pytorch-grad-cam's solver is in tests/reference/test_metrics_reference.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradsum.metrics.imputation as imputation
from gradsum.metrics import noisy_linear_impute

OFFSETS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
           (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]


def exact_fill(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Direct solve of sum_j w_ij (u_i - v_j) = 0 over the in-image neighbours j of every
    removed pixel i (v_j = u_j if j is removed, else the image value): (C,H,W) float64."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = img.shape
    x = img.double().numpy().reshape(c, -1)
    rem = removed.numpy().reshape(-1)
    if rem.all():
        return torch.zeros(c, h, w, dtype=torch.float64)  # no kept pixel: undefined, 0 by convention
    idx = np.flatnonzero(rem)
    var = -np.ones(h * w, dtype=np.int64)
    var[idx] = np.arange(len(idx))
    rows, cols, vals = [], [], []
    rhs = np.zeros((len(idx), c))
    for v, p in enumerate(idx):
        r0, c0 = divmod(int(p), w)
        total = 0.0
        for dr, dc, wt in OFFSETS:
            r1, c1 = r0 + dr, c0 + dc
            if 0 <= r1 < h and 0 <= c1 < w:
                total += wt
                q = r1 * w + c1
                if rem[q]:
                    rows.append(v)
                    cols.append(var[q])
                    vals.append(-wt)
                else:
                    rhs[v] += wt * x[:, q]
        rows.append(v)
        cols.append(v)
        vals.append(total)
    a = csc_matrix((vals, (rows, cols)), shape=(len(idx), len(idx)))
    out = x.copy()
    out[:, idx] = spsolve(a, rhs).reshape(len(idx), c).T
    return torch.from_numpy(out.reshape(c, h, w))


def _masks(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks of every kind ROAD produces: MoRF/LeRF blobs from a smooth map at
    10..90%, scattered pixels, image borders."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    smooth = F.interpolate(torch.rand(n, 1, 3, 3, generator=g), size=(h, w), mode="bilinear")[:, 0]
    q = torch.tensor([0.1, 0.5, 0.9])
    levels = smooth.flatten(1).quantile(q, dim=1).T[:, :, None, None]  # (n,3,1,1)
    blobs = torch.cat([smooth[:, None] > levels, smooth[:, None] < levels], dim=1)  # LeRF / MoRF
    scattered = torch.rand(n, 1, h, w, generator=g) < 0.3
    border = torch.zeros(n, 1, h, w, dtype=torch.bool)
    border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = True
    removed = torch.cat([blobs, scattered, border], dim=1)  # (n,8,h,w)
    k = removed.shape[1]
    return imgs.repeat_interleave(k, 0), removed.reshape(n * k, h, w)


@pytest.mark.parametrize("h,w", [(24, 24), (13, 10), (1, 9)])
def test_matches_exact_direct_solve(h, w):
    imgs, removed = _masks(2, h, w, seed=h * w)
    ours = noisy_linear_impute(imgs, removed, noise=0.0, tol=1e-12)
    for i in range(len(imgs)):
        torch.testing.assert_close(ours[i], exact_fill(imgs[i], removed[i]), rtol=0, atol=1e-9)


def test_default_tolerance_is_within_1e_3_of_the_exact_solve():
    # float32 at the default tol (relative residual 1e-4): measured max 5.5e-4 here (the
    # 30%-scattered mask; blobs 1e-4), 6.2e-4 with the earlier solver's default (1e-3)
    imgs, removed = _masks(2, 40, 40, seed=7)
    ours = noisy_linear_impute(imgs.float(), removed, noise=0.0)
    exact = torch.stack([exact_fill(imgs[i], removed[i]) for i in range(len(imgs))])
    assert float((ours.double() - exact).abs().max()) < 1e-3


def test_chunks_and_early_exit_do_not_change_the_solution(monkeypatch):
    imgs, removed = _masks(3, 20, 17, seed=3)
    whole = noisy_linear_impute(imgs, removed, noise=0.0, tol=1e-12)
    monkeypatch.setattr(imputation, "_CHUNK_ELEMENTS", 5 * 3 * 21 * 18)  # chunks of 5 images
    chunked = noisy_linear_impute(imgs, removed, noise=0.0, tol=1e-12)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-10)
    exact = exact_fill(imgs[-1], removed[-1])  # in the last, shorter chunk
    torch.testing.assert_close(chunked[-1], exact, rtol=0, atol=1e-9)


def test_fully_removed_image_is_zero_and_others_unaffected():
    imgs, removed = _masks(1, 12, 12, seed=1)
    removed[2] = True  # everything removed: no defined value, filled with 0
    ours = noisy_linear_impute(imgs, removed, noise=0.0, tol=1e-12)
    assert torch.equal(ours[2], torch.zeros_like(ours[2]))
    torch.testing.assert_close(ours[5], exact_fill(imgs[5], removed[5]), rtol=0, atol=1e-9)


def test_bad_arguments_are_readable_errors():
    with pytest.raises(ValueError, match="check_every"):
        noisy_linear_impute(torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool), check_every=0)
