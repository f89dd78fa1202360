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

from .scoring import fit_windows
from .scoring import psf_windows as _psf

#: emitters closer than this many PSF sigmas are fitted jointly (their PSFs overlap)
JOINT_DISTANCE_SIGMAS = 4.0
#: larger groups are not fitted jointly (flagged instead): 3k+1 parameters stay small
MAX_GROUP = 20


@dataclass
class FitResult:
    x_px: np.ndarray  # refined positions (camera px, corner origin); the start where the fit failed
    y_px: np.ndarray
    photons: np.ndarray  # N_i
    background_photons: np.ndarray  # b + delta at the emitter's centre pixel
    crlb_x_px: np.ndarray
    crlb_y_px: np.ndarray
    robust_x_px: np.ndarray  # sandwich (Huber-White) std: I^-1 J' diag(r^2 / mu^2) J I^-1, residuals r
    robust_y_px: np.ndarray
    deviance: np.ndarray  # Poisson deviance per pixel of the window (about 1 for a good fit)
    ok: np.ndarray  # bool: converged, stayed near the start, photons > 0
    crowded: np.ndarray | None = None  # bool: in a crowd too large for a joint fit (not ok, but not a runaway)


def _neighbours(points, reach):
    """Index pairs (i, j), i != j, of points closer than ``reach`` px (both orders)."""
    pairs = cKDTree(points).query_pairs(reach, output_type="ndarray")
    return np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]


def _windows(frames, r0, c0, size, frame_index=None):
    """(m, size, size) crops (zero outside the frame) and the inside-frame mask; ``frames``
    is one frame (H, W) or a stack (F, H, W) with ``frame_index`` (m,) naming each crop's."""
    frames = np.asarray(frames)
    stack = frames[None] if frames.ndim == 2 else frames
    f = np.zeros(len(r0), int) if frame_index is None else np.asarray(frame_index, int)
    h, w = stack.shape[1:]
    rows = r0[:, None] + np.arange(size)[None, :]
    cols = c0[:, None] + np.arange(size)[None, :]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    values = stack[f[:, None, None], np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    return np.where(inside, values, 0.0), inside


def frame_points(x_px, y_px, frame_index, reach_px: float) -> np.ndarray:
    """(m, 3) points for neighbour searches over a batch of frames: (x, y) and a third
    coordinate that puts frames ``2 reach_px + 1`` apart, so emitters of different frames
    are never within ``reach_px`` and distances within a frame are unchanged."""
    x, y = np.asarray(x_px, np.float64), np.asarray(y_px, np.float64)
    f = np.zeros(len(x)) if frame_index is None else np.asarray(frame_index, np.float64)
    return np.c_[x, y, f * (2 * reach_px + 1.0)]


def fit_emitters(
    photons: np.ndarray,
    background: np.ndarray | float,
    x_px,
    y_px,
    sigma_px: float,
    read_variance_photons2: float = 2.0,
    half_width_px: int | None = None,
    iterations: int = 12,
    max_shift_px: float = 1.5,
    frame_index=None,
) -> FitResult:
    """Refine emitters starting at (x_px, y_px) on one frame in photons (see module doc),
    or on a stack of frames (F, H, W) with ``frame_index`` (m,) naming each emitter's frame:
    all frames' emitters are fitted in one batch, each frame's as if alone."""
    frame = np.asarray(photons, np.float64)
    bg_map = np.broadcast_to(np.asarray(background, np.float64), frame.shape)
    x0, y0 = np.asarray(x_px, np.float64).copy(), np.asarray(y_px, np.float64).copy()
    m = len(x0)
    f = np.zeros(m, int) if frame_index is None else np.asarray(frame_index, int)
    w = half_width_px if half_width_px is not None else int(np.ceil(3 * sigma_px))
    out = FitResult(*(np.full(m, np.nan) for _ in range(9)), np.zeros(m, bool))
    out.crowded = np.zeros(m, bool)
    if m == 0:
        return out
    labels = joint_groups(x0, y0, sigma_px, f)
    sizes = np.bincount(labels)
    single = sizes[labels] == 1
    crowded = sizes[labels] > MAX_GROUP
    if single.any() or crowded.any():
        _fit_singles(
            frame,
            bg_map,
            f,
            x0,
            y0,
            np.flatnonzero(single | crowded),
            w,
            sigma_px,
            read_variance_photons2,
            iterations,
            out,
        )
        out.ok[crowded] = False  # a crowd too large to fit jointly: flagged, KDE positions kept
    out.crowded = crowded
    joint = np.flatnonzero((sizes > 1) & (sizes <= MAX_GROUP))
    for k in np.unique(sizes[joint]):  # groups of k emitters are fitted together
        members = [np.flatnonzero(labels == label) for label in joint[sizes[joint] == k]]
        _fit_groups(
            frame, bg_map, f, x0, y0, np.array(members), w, sigma_px, read_variance_photons2, 2 * iterations, out
        )
    out.ok &= (
        np.isfinite(out.x_px)
        & np.isfinite(out.y_px)
        & (out.photons > 0)
        & (np.hypot(out.x_px - x0, out.y_px - y0) <= max_shift_px)
        & np.isfinite(out.crlb_x_px)
        & np.isfinite(out.crlb_y_px)
    )
    out.x_px, out.y_px = np.where(out.ok, out.x_px, x0), np.where(out.ok, out.y_px, y0)
    return out


def joint_groups(x_px, y_px, sigma_px: float, frame_index=None) -> np.ndarray:
    """Group label of each start: the emitters ``fit_emitters`` fits together (connected
    within JOINT_DISTANCE_SIGMAS sigmas, in the same frame)."""
    reach = JOINT_DISTANCE_SIGMAS * sigma_px
    return _groups(frame_points(x_px, y_px, frame_index, reach), reach)


def _groups(points, reach):
    """Connected components of points (``frame_points``) closer than ``reach`` px."""
    i, j = _neighbours(points, reach)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(points), len(points)))
    return connected_components(graph, directed=False)[1]


def _fit_singles(frame, bg_map, f, x0, y0, index, w, sigma, read_variance, iterations, out):
    """Isolated emitters: (x, y, N, delta) on a (2w+1)^2 window each, all at once."""
    size = 2 * w + 1
    x, y = x0[index], y0[index]
    r0, c0 = np.floor(y).astype(int) - w, np.floor(x).astype(int) - w
    data, inside = _windows(frame, r0, c0, size, f[index])
    bg, _ = _windows(bg_map, r0, c0, size, f[index])
    fit = fit_windows(data, inside, bg, x[:, None], y[:, None], r0, c0, sigma, read_variance, iterations)
    cov, sandwich, deviance = fit.statistics(data, inside, read_variance)
    out.x_px[index], out.y_px[index], out.photons[index] = fit.x[:, 0], fit.y[:, 0], fit.n[:, 0]
    out.background_photons[index] = bg[:, w, w] + fit.delta
    _store_errors(out, index, cov, sandwich, 1)
    out.deviance[index] = deviance
    out.ok[index] = True


def _fit_groups(frame, bg_map, f, x0, y0, members, w, sigma, read_variance, iterations, out):
    """Groups of k emitters whose windows overlap (``members``: (groups, k) indices):
    (x_i, y_i, N_i) of each and one delta per group, jointly, on the union of their
    windows, all groups at once; the inverse Fisher information gives each emitter's CRLB
    with its neighbours as nuisance parameters."""
    g, k = members.shape
    x, y = x0[members], y0[members]
    r0 = np.floor(y.min(axis=1)).astype(int) - w
    c0 = np.floor(x.min(axis=1)).astype(int) - w
    sizes = np.maximum(
        np.floor(y.max(axis=1)).astype(int) + w + 1 - r0, np.floor(x.max(axis=1)).astype(int) + w + 1 - c0
    )
    size = int(sizes.max())
    data, inside = _windows(frame, r0, c0, size, f[members[:, 0]])
    own = np.arange(size) < sizes[:, None]  # a group's own union window within the batch's size
    inside &= own[:, :, None] & own[:, None, :]
    bg, _ = _windows(bg_map, r0, c0, size, f[members[:, 0]])
    fit = fit_windows(data, inside, bg, x, y, r0, c0, sigma, read_variance, iterations)
    cov, sandwich, deviance = fit.statistics(data, inside, read_variance)
    out.x_px[members], out.y_px[members], out.photons[members] = fit.x, fit.y, fit.n
    rr = np.clip(np.floor(fit.y).astype(int) - r0[:, None], 0, size - 1)
    cc = np.clip(np.floor(fit.x).astype(int) - c0[:, None], 0, size - 1)
    out.background_photons[members] = bg[np.arange(g)[:, None], rr, cc] + fit.delta[:, None]
    _store_errors(out, members, cov, sandwich, k)
    out.deviance[members] = deviance[:, None]
    out.ok[members] = True


def _store_errors(out, index, cov, sandwich, k):
    """Per-axis CRLB and sandwich std of each emitter from (m, 3k+1, 3k+1) covariances."""
    variances, robust = np.diagonal(cov, axis1=1, axis2=2), np.diagonal(sandwich, axis1=1, axis2=2)
    shape = np.shape(index)
    out.crlb_x_px[index] = np.sqrt(np.clip(variances[:, :k], 0, None)).reshape(shape)
    out.crlb_y_px[index] = np.sqrt(np.clip(variances[:, k : 2 * k], 0, None)).reshape(shape)
    out.robust_x_px[index] = np.sqrt(np.clip(robust[:, :k], 0, None)).reshape(shape)
    out.robust_y_px[index] = np.sqrt(np.clip(robust[:, k : 2 * k], 0, None)).reshape(shape)


def estimate_psf_sigma(
    frames: list[np.ndarray],
    backgrounds: list[np.ndarray],
    positions: list[np.ndarray],
    read_variance_photons2: float = 2.0,
    bounds: tuple[float, float] = (0.55, 2.25),
    max_spots: int = 200,
    spot_test=None,
) -> tuple[float, int]:
    """PSF sigma (camera px) of a movie by profile likelihood over bright, isolated spots.

    ``positions``: per frame, (k, 3) candidate (x, y, photons) in camera px. Spots with at
    least 60 background noise std of photons and no other candidate within 7 px are cut
    out (11x11 windows, laid out apart on one mosaic), fitted at each trial sigma, and the
    summed log-likelihood is maximised by golden-section search within ``bounds``.
    ``spot_test(frame, background, spots (k, 3))`` -> mask, when given, must also accept a
    spot (it sees only the bright isolated ones). Returns (sigma, number of spots); (nan, n)
    with fewer than 5 spots."""
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
        chosen = cand[isolated & inner & bright]
        if spot_test is not None and len(chosen):
            chosen = chosen[spot_test(frame, bg, chosen)]
        for x, y, _ in chosen[: max_spots - spots]:
            r0, c0 = int(np.floor(y)) - 5, int(np.floor(x)) - 5
            cells.append((frame[r0 : r0 + 11, c0 : c0 + 11], x - c0, y - r0))
            cell_bg.append(np.broadcast_to(bg, frame.shape)[r0 : r0 + 11, c0 : c0 + 11])
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
        mosaic[22 * r + 5 : 22 * r + 16, 22 * c + 5 : 22 * c + 16] = window
        mosaic_bg[22 * r + 5 : 22 * r + 16, 22 * c + 5 : 22 * c + 16] = bg
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
    r0 = np.floor(xy[:, 1]).astype(int) - 5  # the spot's own 11x11 cell (the fit's window)
    c0 = np.floor(xy[:, 0]).astype(int) - 5
    data, _ = _windows(mosaic, r0, c0, 11)
    bg, _ = _windows(background, r0, c0, 11)
    psf = _psf(fit.x_px, fit.y_px, r0, c0, 11, sigma)[0]
    delta = fit.background_photons - bg[:, 5, 5]
    mu = np.maximum(fit.photons[:, None, None] * psf + bg + delta[:, None, None] + read_variance, 1e-6)
    return float(((data + read_variance) * np.log(mu) - mu).sum())
