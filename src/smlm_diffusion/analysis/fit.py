"""Maximum-likelihood refinement of localizations on the raw frame (photons).

Model (primary paper eq. 1-2): the expected photons in pixel k are
``mu_k = sum_i N_i dEx_i(k) dEy_i(k) + b_k + delta_i``, with the erf-integrated Gaussian
PSF of width ``sigma_px``, ``b`` the frame's estimated (structured) background map and
``delta_i`` a free local correction of its level. The likelihood is Poisson with the read
noise variance added to both sides (``x + r^2 ~ Poisson(mu + r^2)``; Huang et al. 2013,
the approximation of eq. 1). Each emitter is fitted on a window of ``2w+1`` pixels by
damped Fisher scoring (Levenberg-Marquardt on the negative log-likelihood), all emitters
at once; emitters closer than 4 PSF sigmas (overlapping PSFs) are fitted *jointly* on
the union of their windows ((x, y, N) of each and one delta); a crowd of more than 12 is
flagged instead (``ok`` False).

The inverse Fisher information of that joint model gives ``crlb_x``, ``crlb_y``: the
Cramer-Rao bound of each emitter, including what its neighbours cost it (appendix A.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.special import erf

SQRT2 = np.sqrt(2.0)
#: emitters closer than this many PSF sigmas are fitted jointly (their PSFs overlap)
JOINT_DISTANCE_SIGMAS = 4.0
#: larger groups are not fitted jointly (flagged instead): 3k+1 parameters stay small
MAX_GROUP = 20


@dataclass
class FitResult:
    x_px: np.ndarray            # refined positions (camera px, SPEC 3 origin); the start where the fit failed
    y_px: np.ndarray
    photons: np.ndarray         # N_i
    background_photons: np.ndarray  # b + delta at the emitter's centre pixel
    crlb_x_px: np.ndarray
    crlb_y_px: np.ndarray
    robust_x_px: np.ndarray     # sandwich (Huber-White) std: I^-1 J' diag(r^2 / mu^2) J I^-1, residuals r
    robust_y_px: np.ndarray
    deviance: np.ndarray        # Poisson deviance per pixel of the window (about 1 for a good fit)
    ok: np.ndarray              # bool: converged, stayed near the start, photons > 0
    crowded: np.ndarray | None = None  # bool: in a crowd too large for a joint fit (not ok, but not a runaway)


def _axis(centre: np.ndarray, edges0: np.ndarray, n: int, sigma: float):
    """Pixel integrals (m, n) and their derivative w.r.t. the centre along one axis."""
    edges = edges0[:, None] + np.arange(n + 1)[None, :]
    z = (edges - centre[:, None]) / (SQRT2 * sigma)
    cdf = 0.5 * erf(z)
    pdf = np.exp(-z ** 2) / (np.sqrt(2 * np.pi) * sigma)
    return np.diff(cdf, axis=1), -np.diff(pdf, axis=1)


def _psf(x, y, r0, c0, size, sigma):
    """PSF (m, size, size) on windows whose top-left pixels are (r0, c0), and d/dx, d/dy."""
    ex, dex = _axis(x, c0.astype(float), size, sigma)
    ey, dey = _axis(y, r0.astype(float), size, sigma)
    return ey[:, :, None] * ex[:, None, :], ey[:, :, None] * dex[:, None, :], dey[:, :, None] * ex[:, None, :]


def _neighbours(x, y, reach):
    """Index pairs (i, j), i != j, of emitters closer than ``reach`` px (both orders)."""
    pairs = cKDTree(np.c_[x, y]).query_pairs(reach, output_type="ndarray")
    return np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]


def _windows(frame, r0, c0, size):
    """(m, size, size) crops (zero outside the frame) and the inside-frame mask."""
    h, w = frame.shape
    rows = r0[:, None] + np.arange(size)[None, :]
    cols = c0[:, None] + np.arange(size)[None, :]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    values = frame[np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    return np.where(inside, values, 0.0), inside


def fit_emitters(photons: np.ndarray, background: np.ndarray | float, x_px, y_px, sigma_px: float,
                 read_variance_photons2: float = 2.0, half_width_px: int | None = None,
                 iterations: int = 12, max_shift_px: float = 1.5) -> FitResult:
    """Refine emitters starting at (x_px, y_px) on one frame in photons (see module doc)."""
    frame = np.asarray(photons, np.float64)
    bg_map = np.broadcast_to(np.asarray(background, np.float64), frame.shape)
    x0, y0 = np.asarray(x_px, np.float64).copy(), np.asarray(y_px, np.float64).copy()
    m = len(x0)
    w = half_width_px if half_width_px is not None else int(np.ceil(3 * sigma_px))
    out = FitResult(*(np.full(m, np.nan) for _ in range(9)), np.zeros(m, bool))
    out.crowded = np.zeros(m, bool)
    if m == 0:
        return out
    labels = _groups(x0, y0, JOINT_DISTANCE_SIGMAS * sigma_px)
    sizes = np.bincount(labels)
    single = sizes[labels] == 1
    crowded = sizes[labels] > MAX_GROUP
    if single.any() or crowded.any():
        _fit_singles(frame, bg_map, x0, y0, np.flatnonzero(single | crowded), w, sigma_px, read_variance_photons2,
                     iterations, out)
        out.ok[crowded] = False  # a crowd too large to fit jointly: flagged, KDE positions kept
    out.crowded = crowded
    for label in np.flatnonzero((sizes > 1) & (sizes <= MAX_GROUP)):
        _fit_group(frame, bg_map, x0, y0, np.flatnonzero(labels == label), w, sigma_px, read_variance_photons2,
                   2 * iterations, out)
    out.ok &= (np.isfinite(out.x_px) & np.isfinite(out.y_px) & (out.photons > 0)
               & (np.hypot(out.x_px - x0, out.y_px - y0) <= max_shift_px)
               & np.isfinite(out.crlb_x_px) & np.isfinite(out.crlb_y_px))
    out.x_px, out.y_px = np.where(out.ok, out.x_px, x0), np.where(out.ok, out.y_px, y0)
    return out


def _groups(x, y, reach):
    """Connected components of emitters closer than ``reach`` px."""
    i, j = _neighbours(x, y, reach)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(x), len(x)))
    return connected_components(graph, directed=False)[1]


def _deviance(data_r, mu, inside):
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(data_r > 0, data_r * np.log(data_r / mu), 0.0) - (data_r - mu)
    axes = tuple(range(1, data_r.ndim))
    return 2 * np.where(inside, term, 0.0).sum(axis=axes) / np.maximum(inside.sum(axis=axes), 1)


def _fit_singles(frame, bg_map, x0, y0, index, w, sigma, read_variance, iterations, out):
    """Isolated emitters: (x, y, N, delta) on a (2w+1)^2 window each, all at once."""
    size = 2 * w + 1
    x, y = x0[index], y0[index]
    r0, c0 = np.floor(y).astype(int) - w, np.floor(x).astype(int) - w
    data, inside = _windows(frame, r0, c0, size)
    bg, _ = _windows(bg_map, r0, c0, size)
    data_r = data + read_variance
    fixed = bg + read_variance
    n = np.maximum(np.where(inside, data - bg, 0.0).sum(axis=(1, 2)), 10.0)
    x, y, n, delta = _scoring(data_r, inside, fixed, x, y, n, np.zeros(len(x)), r0, c0, size, sigma, iterations)
    psf, dx, dy = _psf(x, y, r0, c0, size, sigma)
    mu = np.maximum(n[:, None, None] * psf + fixed + delta[:, None, None], 1e-6)
    jac = np.stack([n[:, None, None] * dx, n[:, None, None] * dy, psf, np.ones_like(psf)], axis=1)
    jac = np.where(inside[:, None], jac, 0.0).reshape(len(x), 4, -1)
    fisher = np.einsum("mpk,mqk,mk->mpq", jac, jac, (1.0 / mu).reshape(len(x), -1))
    cov = np.linalg.pinv(fisher)
    meat = np.einsum("mpk,mqk,mk->mpq", jac, jac, (np.where(inside, data_r - mu, 0.0) ** 2 / mu ** 2).reshape(len(x), -1))
    sandwich = cov @ meat @ cov
    out.x_px[index], out.y_px[index], out.photons[index] = x, y, n
    out.background_photons[index] = bg[:, w, w] + delta
    out.crlb_x_px[index] = np.sqrt(np.clip(cov[:, 0, 0], 0, None))
    out.crlb_y_px[index] = np.sqrt(np.clip(cov[:, 1, 1], 0, None))
    out.robust_x_px[index] = np.sqrt(np.clip(sandwich[:, 0, 0], 0, None))
    out.robust_y_px[index] = np.sqrt(np.clip(sandwich[:, 1, 1], 0, None))
    out.deviance[index] = _deviance(data_r, mu, inside)
    out.ok[index] = True


def _fit_group(frame, bg_map, x0, y0, index, w, sigma, read_variance, iterations, out):
    """Emitters whose windows overlap: (x_i, y_i, N_i) of each and one delta, jointly, on
    the union of their windows; the inverse Fisher information gives each emitter's CRLB
    with its neighbours as nuisance parameters."""
    k = len(index)
    r0 = int(np.floor(y0[index].min())) - w
    c0 = int(np.floor(x0[index].min())) - w
    size = max(int(np.floor(y0[index].max())) + w + 1 - r0, int(np.floor(x0[index].max())) + w + 1 - c0)
    data, inside = (a[0] for a in _windows(frame, np.array([r0]), np.array([c0]), size))
    bg = _windows(bg_map, np.array([r0]), np.array([c0]), size)[0][0]
    data_r = data + read_variance
    x, y = x0[index].copy(), y0[index].copy()
    n = np.full(k, max(np.where(inside, data - bg, 0.0).sum() / k, 10.0))
    delta, lam = 0.0, 1e-3
    rows, cols = np.full(k, r0), np.full(k, c0)

    def model(x, y, n, delta):
        psf, dx, dy = _psf(x, y, rows, cols, size, sigma)
        mu = np.maximum((n[:, None, None] * psf).sum(axis=0) + bg + delta + read_variance, 1e-6)
        return mu, psf, dx, dy

    def nll(x, y, n, delta):
        mu = model(x, y, n, delta)[0]
        return float(np.where(inside, mu - data_r * np.log(mu), 0.0).sum())

    def jacobian(n, psf, dx, dy):  # rows: x_1..k, y_1..k, N_1..k, delta
        columns = np.concatenate([n[:, None, None] * dx, n[:, None, None] * dy, psf, np.ones((1, size, size))])
        return np.where(inside, columns, 0.0).reshape(3 * k + 1, -1)

    current = nll(x, y, n, delta)
    for _ in range(iterations):
        mu, psf, dx, dy = model(x, y, n, delta)
        jac = jacobian(n, psf, dx, dy)
        grad = jac @ (1.0 - data_r / mu).ravel()
        fisher = (jac * (1.0 / mu).ravel()) @ jac.T
        damped = fisher + lam * np.diag(np.diag(fisher)) + 1e-9 * np.eye(3 * k + 1)
        step = -np.linalg.solve(damped, grad)
        step[:2 * k] = np.clip(step[:2 * k], -1.0, 1.0)
        trial = (x + step[:k], y + step[k:2 * k], np.maximum(n + step[2 * k:3 * k], 1.0), delta + step[-1])
        value = nll(*trial)
        if value <= current:
            (x, y, n, delta), current, lam = trial, value, lam * 0.3
            if np.abs(step[:2 * k]).max() < 1e-3:   # converged to 0.001 px
                break
        else:
            lam *= 10.0
    mu, psf, dx, dy = model(x, y, n, delta)
    jac = jacobian(n, psf, dx, dy)
    cov = np.linalg.pinv((jac * (1.0 / mu).ravel()) @ jac.T)
    variances = np.diag(cov)
    meat = (jac * (np.where(inside, data_r - mu, 0.0) ** 2 / mu ** 2).ravel()) @ jac.T
    robust = np.diag(cov @ meat @ cov)
    out.x_px[index], out.y_px[index], out.photons[index] = x, y, n
    rr = np.clip(np.floor(y).astype(int) - r0, 0, size - 1)
    cc = np.clip(np.floor(x).astype(int) - c0, 0, size - 1)
    out.background_photons[index] = bg[rr, cc] + delta
    out.crlb_x_px[index] = np.sqrt(np.clip(variances[:k], 0, None))
    out.crlb_y_px[index] = np.sqrt(np.clip(variances[k:2 * k], 0, None))
    out.robust_x_px[index] = np.sqrt(np.clip(robust[:k], 0, None))
    out.robust_y_px[index] = np.sqrt(np.clip(robust[k:2 * k], 0, None))
    out.deviance[index] = _deviance(data_r[None], mu[None], inside[None])[0]
    out.ok[index] = True


def _scoring(data_r, inside, fixed, x, y, n, delta, r0, c0, size, sigma, iterations):
    """Damped Fisher scoring on (x, y, N, delta) of every window at once; ``fixed`` holds
    the background, the neighbours and the read variance."""

    def nll(x, y, n, delta):
        mu = np.maximum(n[:, None, None] * _psf(x, y, r0, c0, size, sigma)[0] + fixed + delta[:, None, None], 1e-6)
        return np.where(inside, mu - data_r * np.log(mu), 0.0).sum(axis=(1, 2))

    lam = np.full(len(x), 1e-3)
    current = nll(x, y, n, delta)
    for _ in range(iterations):
        psf, dx, dy = _psf(x, y, r0, c0, size, sigma)
        mu = np.maximum(n[:, None, None] * psf + fixed + delta[:, None, None], 1e-6)
        jac = np.stack([n[:, None, None] * dx, n[:, None, None] * dy, psf, np.ones_like(psf)], axis=1)
        jac = np.where(inside[:, None], jac, 0.0).reshape(len(x), 4, -1)
        weight = (1.0 / mu).reshape(len(x), -1)
        residual = (1.0 - data_r / mu).reshape(len(x), -1)
        grad = np.einsum("mpk,mk->mp", jac, residual)
        fisher = np.einsum("mpk,mqk,mk->mpq", jac, jac, weight)
        damped = fisher + lam[:, None, None] * (np.eye(4) * np.diagonal(fisher, axis1=1, axis2=2)[:, :, None]
                                                + 1e-9 * np.eye(4))
        step = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        step[:, :2] = np.clip(step[:, :2], -1.0, 1.0)
        trial = (x + step[:, 0], y + step[:, 1], np.maximum(n + step[:, 2], 1.0), delta + step[:, 3])
        value = nll(*trial)
        better = value <= current
        x, y, n, delta = (np.where(better, t, v) for t, v in zip(trial, (x, y, n, delta)))
        current = np.where(better, value, current)
        lam = np.where(better, lam * 0.3, lam * 10.0)
        if np.all(better & (np.abs(step[:, :2]).max(axis=1) < 1e-3)):  # all converged to 0.001 px
            break
    return x, y, n, delta


def estimate_psf_sigma(frames: list[np.ndarray], backgrounds: list[np.ndarray], positions: list[np.ndarray],
                       read_variance_photons2: float = 2.0, bounds: tuple[float, float] = (0.55, 2.25),
                       max_spots: int = 200) -> tuple[float, int]:
    """PSF sigma (camera px) of a movie by profile likelihood over bright, isolated spots.

    ``positions``: per frame, (k, 3) candidate (x, y, photons) in camera px. Spots with at
    least 60 background noise std of photons and no other candidate within 7 px are cut
    out (11x11 windows, laid out apart on one mosaic), fitted at each trial sigma, and the
    summed log-likelihood is maximised by golden-section search within ``bounds``.
    Returns (sigma, number of spots); (nan, n) with fewer than 5 spots."""
    cells, cell_bg, spots = [], [], 0
    for frame, bg, cand in zip(frames, backgrounds, positions):
        if len(cand) == 0 or spots >= max_spots:
            continue
        h, w = frame.shape
        nearest = cKDTree(cand[:, :2]).query(cand[:, :2], k=2)[0][:, 1] if len(cand) > 1 else np.full(1, np.inf)
        isolated = nearest > 7.0
        inner = (cand[:, 0] > 5) & (cand[:, 0] < w - 5) & (cand[:, 1] > 5) & (cand[:, 1] < h - 5)
        level = bg[np.clip(cand[:, 1].astype(int), 0, h - 1), np.clip(cand[:, 0].astype(int), 0, w - 1)]
        bright = cand[:, 2] > 60 * np.sqrt(np.maximum(level, 0) + read_variance_photons2)
        for x, y, _ in cand[isolated & inner & bright][: max_spots - spots]:
            r0, c0 = int(np.floor(y)) - 5, int(np.floor(x)) - 5
            cells.append((frame[r0:r0 + 11, c0:c0 + 11], x - c0, y - r0))
            cell_bg.append(np.broadcast_to(bg, frame.shape)[r0:r0 + 11, c0:c0 + 11])
            spots += 1
    if spots < 5:
        return float("nan"), spots
    # one mosaic, 22 px per cell: spots are > 4 sigma apart and are fitted separately
    side = int(np.ceil(np.sqrt(spots)))
    mosaic = np.zeros((22 * side, 22 * side))
    mosaic_bg = np.zeros_like(mosaic)
    xy = np.zeros((spots, 2))
    for k, ((window, x, y), bg) in enumerate(zip(cells, cell_bg)):
        r, c = divmod(k, side)
        mosaic[22 * r + 5:22 * r + 16, 22 * c + 5:22 * c + 16] = window
        mosaic_bg[22 * r + 5:22 * r + 16, 22 * c + 5:22 * c + 16] = bg
        xy[k] = (22 * c + 5 + x, 22 * r + 5 + y)

    def loglik(sigma: float) -> float:
        return _mosaic_loglik(mosaic, mosaic_bg, xy, sigma, read_variance_photons2)

    lo, hi = bounds
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loglik(a), loglik(b)
    while hi - lo > 0.005:
        if fa > fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loglik(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loglik(b)
    return float(0.5 * (lo + hi)), spots


def _mosaic_loglik(mosaic, background, xy, sigma, read_variance):
    """Summed Poisson log-likelihood (up to a constant) of the mosaic's spots fitted at
    ``sigma``, each on its fixed 11x11 cell so that every sigma sees the same pixels."""
    fit = fit_emitters(mosaic, background, xy[:, 0], xy[:, 1], sigma, read_variance, half_width_px=5)
    r0 = np.floor(xy[:, 1]).astype(int) - 5   # the spot's own 11x11 cell (the fit's window)
    c0 = np.floor(xy[:, 0]).astype(int) - 5
    data, _ = _windows(mosaic, r0, c0, 11)
    bg, _ = _windows(background, r0, c0, 11)
    psf = _psf(fit.x_px, fit.y_px, r0, c0, 11, sigma)[0]
    delta = fit.background_photons - bg[:, 5, 5]
    mu = np.maximum(fit.photons[:, None, None] * psf + bg + delta[:, None, None] + read_variance, 1e-6)
    return float(((data + read_variance) * np.log(mu) - mu).sum())
