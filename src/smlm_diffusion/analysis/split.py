"""Splitting merged KDE blobs: emitters closer than about two KDE widths merge into one
LoG blob whose mass (eq. 3 units) counts them. For a blob of mass ~k >= 2 we fit k
unit-width Gaussians (sigma_y known, free amplitudes) to the KDE around it by least
squares and report k positions instead of one, when they explain the blob clearly better
than one Gaussian. All blobs of a given k are fitted at once (bounded Levenberg-Marquardt
with the analytic Jacobian)."""

from __future__ import annotations

import numpy as np


def split_blobs(kde: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int, sigma: float) -> list[np.ndarray | None]:
    """Fit k Gaussians of width ``sigma`` (grid px) near each (row, col) of one KDE image;
    per blob, (k, 2) positions (row, col) or None where they do not explain it better."""
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    if len(rows) == 0:
        return []
    radius = int(np.ceil(3.5 * sigma))
    size = 2 * radius + 1
    h, w = kde.shape
    r0, c0 = rows.astype(int) - radius, cols.astype(int) - radius
    rr = r0[:, None] + np.arange(size)  # (m, size) grid rows of each window
    cc = c0[:, None] + np.arange(size)
    inside = ((rr >= 0) & (rr < h))[:, :, None] & ((cc >= 0) & (cc < w))[:, None, :]
    window = np.where(
        inside, np.asarray(kde, np.float64)[np.clip(rr, 0, h - 1)[:, :, None], np.clip(cc, 0, w - 1)[:, None, :]], 0.0
    )
    grid_r = np.broadcast_to(rr[:, :, None].astype(np.float64), window.shape)
    grid_c = np.broadcast_to(cc[:, None, :].astype(np.float64), window.shape)
    low_r, high_r = np.maximum(r0, 0), np.minimum(r0 + size, h) - 1  # the window's pixels inside the image
    low_c, high_c = np.maximum(c0, 0), np.minimum(c0 + size, w) - 1
    peak = window.max(axis=(1, 2))
    # the k starts lie on the principal axis of the blob's second moments
    weights = np.clip(window, 0, None) + 1e-12 * inside
    total = weights.sum(axis=(1, 2))
    mr = (weights * grid_r).sum(axis=(1, 2)) / total
    mc = (weights * grid_c).sum(axis=(1, 2)) / total
    dr, dc = grid_r - mr[:, None, None], grid_c - mc[:, None, None]
    cov = np.stack(
        [
            np.stack([(weights * dr * dr).sum(axis=(1, 2)), (weights * dr * dc).sum(axis=(1, 2))], -1),
            np.stack([(weights * dr * dc).sum(axis=(1, 2)), (weights * dc * dc).sum(axis=(1, 2))], -1),
        ],
        -2,
    )
    cov /= (total - (weights**2).sum(axis=(1, 2)) / total)[:, None, None]  # unbiased, as np.cov with aweights
    values, vectors = np.linalg.eigh(cov)
    axis = vectors[:, :, -1]
    spread = np.sqrt(np.maximum(values[:, -1] - sigma**2, 0.25))
    offsets = np.linspace(-1, 1, k)[None, :] * spread[:, None]
    start = np.stack(
        [
            rows[:, None] + offsets * axis[:, :1],
            cols[:, None] + offsets * axis[:, 1:2],
            np.repeat(peak[:, None] / k * 1.2, k, axis=1),
        ],
        -1,
    )
    lower = np.stack([low_r, low_c, np.zeros_like(peak)], -1).astype(np.float64)
    upper = np.stack([high_r, high_c, 4 * peak + 1e-12], -1)
    several, cost_k = _fit_gaussians(window, inside, grid_r, grid_c, start, lower, upper, sigma, 200)
    single, cost_1 = _fit_gaussians(
        window, inside, grid_r, grid_c, np.stack([rows, cols, peak], -1)[:, None], lower, upper, sigma, 100
    )
    amplitude = several[:, :, 2]
    better = (
        (total > 1e-9 * size * size)
        & (cost_k <= 0.7 * cost_1)
        & (amplitude.min(axis=1) >= 0.25 * amplitude.max(axis=1))
    )
    return [several[i, :, :2] if better[i] else None for i in range(len(rows))]


def _fit_gaussians(window, inside, grid_r, grid_c, start, lower, upper, sigma, iterations):
    """Least-squares fit of (m, k, 3) Gaussians (row, col, amplitude) to the windows,
    parameters kept within [lower, upper] (m, 3); returns (params, cost = half the sum of
    squares). Each window stops once a step moves it by less than 0.001 grid px or lowers
    its cost by less than a millionth."""
    m, k, _ = start.shape
    lo = np.repeat(lower[:, None], k, axis=1) + 1e-9
    hi = np.repeat(upper[:, None], k, axis=1) - 1e-9
    params = np.clip(start, lo, np.maximum(hi, lo))
    flat_inside = inside.reshape(m, -1)
    target = window.reshape(m, -1)
    gr, gc = grid_r.reshape(m, 1, -1), grid_c.reshape(m, 1, -1)

    def residual_and_jacobian(p, sel):
        du, dv = gr[sel] - p[:, :, 0:1], gc[sel] - p[:, :, 1:2]
        g = np.exp(-(du**2 + dv**2) / (2 * sigma**2))  # (m, k, n)
        a = p[:, :, 2:3]
        residual = np.where(flat_inside[sel], (a * g).sum(axis=1) - target[sel], 0.0)
        jac = np.concatenate([a * g * du / sigma**2, a * g * dv / sigma**2, g], axis=1)  # (m, 3k, n) by kind
        return residual, np.where(flat_inside[sel][:, None], jac, 0.0)

    residual, jac = residual_and_jacobian(params, np.arange(m))
    cost = 0.5 * (residual**2).sum(axis=1)
    lam = np.full(m, 1e-3)
    eye = np.eye(3 * k)
    active = np.arange(m)
    for _ in range(iterations):
        a = active
        jtj = jac[a] @ jac[a].transpose(0, 2, 1)
        grad = (jac[a] @ residual[a][:, :, None])[:, :, 0]
        damped = jtj + lam[a, None, None] * (eye * np.diagonal(jtj, axis1=1, axis2=2)[:, :, None]) + 1e-12 * eye
        step = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        trial = np.clip(params[a] + step.reshape(len(a), 3, k).transpose(0, 2, 1), lo[a], np.maximum(hi[a], lo[a]))
        trial_residual, trial_jac = residual_and_jacobian(trial, a)
        trial_cost = 0.5 * (trial_residual**2).sum(axis=1)
        better = trial_cost <= cost[a]
        taken = a[better]
        moved = np.abs(trial - params[a]).max(axis=(1, 2))
        improvement = cost[a] - trial_cost
        params[taken], residual[taken], jac[taken], cost[taken] = (
            trial[better],
            trial_residual[better],
            trial_jac[better],
            trial_cost[better],
        )
        lam[a] = np.where(better, lam[a] * 0.3, lam[a] * 10.0)
        done = (better & ((moved < 1e-3) | (improvement <= 1e-6 * np.maximum(cost[a], 1e-30)))) | (lam[a] > 1e10)
        active = a[~done]
        if len(active) == 0:
            break
    return params, cost
