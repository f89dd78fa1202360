"""Splitting merged KDE blobs: emitters closer than about two KDE widths merge into one
LoG blob whose mass (eq. 3 units) counts them. For a blob of mass ~k >= 2 we fit k
unit-width Gaussians (sigma_y known, free amplitudes) to the KDE around it by least
squares and report k positions instead of one."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares


def _gaussians(params: np.ndarray, rr: np.ndarray, cc: np.ndarray, sigma: float) -> np.ndarray:
    out = np.zeros_like(rr, dtype=np.float64)
    for r, c, a in params.reshape(-1, 3):
        out += a * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * sigma ** 2))
    return out


def split_blob(kde: np.ndarray, row: float, col: float, k: int, sigma: float) -> np.ndarray | None:
    """Fit k Gaussians of width ``sigma`` (grid px) near (row, col); (k, 2) positions or None."""
    radius = int(np.ceil(3.5 * sigma))
    r0, r1 = max(0, int(row) - radius), min(kde.shape[0], int(row) + radius + 1)
    c0, c1 = max(0, int(col) - radius), min(kde.shape[1], int(col) + radius + 1)
    window = np.asarray(kde[r0:r1, c0:c1], np.float64)
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    weights = np.clip(window, 0, None)
    total = weights.sum()
    if total <= 0:
        return None
    cov = np.cov(np.stack([rr.ravel(), cc.ravel()]), aweights=weights.ravel() + 1e-12)
    values, vectors = np.linalg.eigh(cov)
    axis = vectors[:, -1]
    spread = np.sqrt(max(values[-1] - sigma ** 2, 0.25))
    offsets = np.linspace(-1, 1, k) * spread
    peak = window.max()
    start = np.concatenate([[row + o * axis[0], col + o * axis[1], peak / k * 1.2] for o in offsets])
    lower = np.tile([r0, c0, 0.0], k)
    upper = np.tile([r1 - 1, c1 - 1, 4 * peak + 1e-12], k)
    start = np.clip(start, lower + 1e-9, upper - 1e-9)
    fit = least_squares(lambda p: (_gaussians(p, rr, cc, sigma) - window).ravel(), start,
                        bounds=(lower, upper), max_nfev=200)
    params = fit.x.reshape(-1, 3)
    single_lower, single_upper = np.array([r0, c0, 0.0]), np.array([r1 - 1, c1 - 1, 4 * peak + 1e-12])
    single = least_squares(lambda p: (_gaussians(p, rr, cc, sigma) - window).ravel(),
                           np.clip([row, col, peak], single_lower + 1e-9, single_upper - 1e-9),
                           bounds=(single_lower, single_upper), max_nfev=100)
    if fit.cost > 0.7 * single.cost or np.any(params[:, 2] < 0.25 * params[:, 2].max()):
        return None  # the extra emitters do not explain the blob better
    return params[:, :2]
