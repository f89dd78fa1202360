"""Detection as a statistical test: is there an emitter at a fitted position, or only
background?

For each fitted emitter, on its own (2w+1)^2 window of the raw frame (photons), with the
other emitters' fitted PSFs and the background map held fixed, two models are fitted by
maximum likelihood (Poisson with the read variance added to both sides, as the fit):

- H1: one emitter, ``mu = N PSF(x, y) + fixed + delta`` (x, y, N, delta free),
- H0: background only, ``mu = fixed + delta`` (delta free),

and the generalized likelihood-ratio statistic is ``T = 2 (nll_0 - nll_1)``. Where the
background map misses structure around the emitter (a cell edge, fringes), the
likelihood overstates every difference: T is divided by the dispersion of the residual on
a ring around the window where it exceeds 1 (quasi-likelihood; ``surround_dispersion``).

At a fixed position, T under H0 would be chi^2 with 1-3 degrees of freedom; but the
candidates are where phi saw a spot, so background-only candidates are the noise peaks
that look most like one. Their statistic, measured on background-only frames (flat 2-500
photons/px, PSF sigma 0.7-1.6 px; ``benchmarks/detection.py --null``), follows a scaled
chi^2, ``T ~ c chi^2_k``, whose mean falls from about 9.5 to 6 as the PSF widens past 1.1 px
and whose variance stays 10-14, whatever the background level (``NULL_MOMENTS``).
``p_value`` is its survival function: the false-alarm probability of a background-only
candidate, at any background level, brightness and camera (the likelihood carries them).

``detection_probability`` turns the p-values of a batch of candidates into the
probability that each is a real emitter: one minus the local false discovery rate
(Efron 2004), ``lfdr(p) = pi0 / f(p)``, where ``f`` is the density of the batch's
p-values (Grenander estimate: the slope of the least concave majorant of their empirical
distribution) and ``pi0`` the share of background-only candidates (Storey 2002). The
batch's own candidates, also those the test rejects, tell how many of them are noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from .multi_emitter import neighbour_psfs_in_windows
from .scoring import fit_windows, psf_only

#: (PSF sigma px, mean, variance) of the statistic at background-only candidates, measured
#: on 40 frames of 128x128 at each of 2, 50 and 500 photons/px (``benchmarks/detection.py
#: --null``); other widths are interpolated, and held at the ends
NULL_MOMENTS = ((0.7, 9.36, 14.1), (0.92, 9.71, 13.4), (1.15, 8.90, 11.1), (1.4, 6.93, 10.1), (1.6, 6.08, 10.7))
#: Storey's lambda: p-values above it are taken as background-only candidates
STOREY_LAMBDA = 0.5


def background_only_nll(
    data: np.ndarray, inside: np.ndarray, fixed: np.ndarray, read_variance: float, iterations: int = 30
) -> np.ndarray:
    """Negative log-likelihood (the fit's convention: ``sum mu - (d + r^2) log mu``) of the
    background-only model ``mu = fixed + delta + r^2`` with the best ``delta`` per window
    (Newton steps on delta; ``data``, ``inside``, ``fixed``: (m, S, S))."""
    data_r = np.where(inside, data + read_variance, 0.0)
    fixed_r = fixed + read_variance
    count = np.maximum(inside.sum(axis=(1, 2)), 1)
    delta = np.where(inside, data - fixed, 0.0).sum(axis=(1, 2)) / count
    floor = -np.where(inside, fixed_r, np.inf).min(axis=(1, 2)) + 1e-6
    for _ in range(iterations):
        delta = np.maximum(delta, floor)
        mu = fixed_r + delta[:, None, None]
        grad = np.where(inside, 1.0 - data_r / mu, 0.0).sum(axis=(1, 2))
        hess = np.where(inside, data_r / mu**2, 0.0).sum(axis=(1, 2))
        step = -grad / np.maximum(hess, 1e-12)
        delta = delta + step
        if np.abs(step).max(initial=0.0) < 1e-6:
            break
    mu = np.maximum(fixed_r + np.maximum(delta, floor)[:, None, None], 1e-6)
    return np.where(inside, mu - data_r * np.log(mu), 0.0).sum(axis=(1, 2))


def likelihood_ratio(
    photons: np.ndarray,
    background: np.ndarray | float,
    x_px: np.ndarray,
    y_px: np.ndarray,
    n_photons: np.ndarray,
    sigma_px: float,
    read_variance_photons2: float,
    frame_index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(T = 2 (nll_0 - nll_1), the surroundings' dispersion) of each fitted emitter (module
    doc, ``surround_dispersion``). ``photons``: one frame or a
    stack (F, H, W) with ``frame_index`` naming each emitter's frame; ``n_photons``: the
    fitted photons (the other emitters' PSFs in a window are held at them; NaN counts 0).
    Emitters whose window does not fit in the frame use the window clipped to it."""
    frame = np.asarray(photons, np.float64)
    frame = frame[None] if frame.ndim == 2 else frame
    bg_map = np.broadcast_to(np.asarray(background, np.float64), frame.shape)
    x, y = np.asarray(x_px, np.float64), np.asarray(y_px, np.float64)
    m = len(x)
    if m == 0:
        return np.zeros(0), np.zeros(0)
    f = np.zeros(m, int) if frame_index is None else np.asarray(frame_index, int)
    h, wd = frame.shape[1:]
    w = int(np.ceil(3 * sigma_px))
    size = min(2 * w + 1, h, wd)
    r0 = np.clip(np.floor(y).astype(int) - w, 0, h - size)
    c0 = np.clip(np.floor(x).astype(int) - w, 0, wd - size)
    n = np.nan_to_num(np.asarray(n_photons, np.float64), nan=0.0).clip(0, None)
    others = neighbour_psfs_in_windows(x, y, n, r0, c0, size, sigma_px, f)
    rows = r0[:, None] + np.arange(size)
    cols = c0[:, None] + np.arange(size)
    data = frame[f[:, None, None], rows[:, :, None], cols[:, None, :]]
    fixed = bg_map[f[:, None, None], rows[:, :, None], cols[:, None, :]] + others
    everywhere = np.ones(data.shape, bool)
    one = fit_windows(
        data,
        everywhere,
        fixed,
        (x - c0)[:, None],
        (y - r0)[:, None],
        np.zeros(m, int),
        np.zeros(m, int),
        sigma_px,
        read_variance_photons2,
    )
    null = background_only_nll(data, everywhere, fixed, read_variance_photons2)
    return np.maximum(2.0 * (null - one.nll), 0.0), surround_dispersion(
        frame, bg_map, x, y, n, sigma_px, read_variance_photons2, f
    )


def surround_dispersion(frame, bg_map, x, y, n, sigma_px, read_variance, f, ring_px: int = 3) -> np.ndarray:
    """Variance of the residual (data - background map - every fitted PSF - its local mean)
    over its Poisson + read variance, on a ring of ``ring_px`` pixels around each
    emitter's test window (``frame``, ``bg_map``: (F, H, W); box sums of residual maps, so
    the cost is per pixel, not per emitter): about 1 where the background map explains the
    surroundings, more where it misses structure (an edge, a ridge) that also reaches into
    the window."""
    w = int(np.ceil(3 * sigma_px))
    model = bg_map + render_psfs(frame.shape, x, y, n, sigma_px, f, w)
    inverse = 1.0 / (np.maximum(model, 0.0) + read_variance)
    residual = frame - model
    rows = np.clip(np.floor(y).astype(int), 0, frame.shape[1] - 1)
    cols = np.clip(np.floor(x).astype(int), 0, frame.shape[2] - 1)

    def ring_sums(image):
        outer = ndimage.uniform_filter(image, (1, 2 * (w + ring_px) + 1, 2 * (w + ring_px) + 1), mode="constant")
        inner = ndimage.uniform_filter(image, (1, 2 * w + 1, 2 * w + 1), mode="constant")
        sums = outer * (2 * (w + ring_px) + 1) ** 2 - inner * (2 * w + 1) ** 2
        return sums[f, rows, cols]

    count = ring_sums(np.ones(frame.shape))
    weighted2, weighted, weights, total = (
        ring_sums(v) for v in (residual**2 * inverse, residual * inverse, inverse, residual)
    )
    count = np.maximum(np.rint(count), 2.0)
    mean = total / count
    # sum over the ring of (r - mean)^2 / var
    return np.maximum(weighted2 - 2.0 * mean * weighted + mean**2 * weights, 0.0) / (count - 1.0)


def render_psfs(shape, x, y, n, sigma_px, f, half_width_px: int) -> np.ndarray:
    """(F, H, W): the sum of ``n`` photons' erf-integrated PSFs at each (x, y) of frame ``f``,
    each over its (2 half_width_px + 1)^2 window. (``simulation.render_emitters`` draws each
    emitter over the whole frame, H x W x k per frame: 20 ms a 256x256 frame of 750
    emitters against a few here, on the fits' hot path.)"""
    frames, h, wd = shape
    size = 2 * half_width_px + 1
    out = np.zeros(frames * h * wd)
    if len(x) == 0:
        return out.reshape(shape)
    r0 = np.floor(y).astype(int) - half_width_px
    c0 = np.floor(x).astype(int) - half_width_px
    psf = n[:, None, None] * psf_only(x, y, r0, c0, size, sigma_px)
    rr = r0[:, None, None] + np.arange(size)[None, :, None]
    cc = c0[:, None, None] + np.arange(size)[None, None, :]
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < wd)
    index = (f[:, None, None] * h + rr) * wd + cc
    out += np.bincount(index[inside], psf[inside], minlength=len(out))
    return out.reshape(shape)


def detection_statistic(
    photons: np.ndarray,
    background: np.ndarray | float,
    x_px: np.ndarray,
    y_px: np.ndarray,
    n_photons: np.ndarray,
    sigma_px: float,
    read_variance_photons2: float,
    frame_index: np.ndarray | None = None,
) -> np.ndarray:
    """The test's statistic: T over the surroundings' dispersion where it exceeds 1 (a
    quasi-likelihood ratio: where the background map misses structure around an emitter,
    the likelihood overstates every difference by that factor). Arguments as
    ``likelihood_ratio``."""
    statistic, dispersion = likelihood_ratio(
        photons, background, x_px, y_px, n_photons, sigma_px, read_variance_photons2, frame_index
    )
    return statistic / np.maximum(dispersion, 1.0)


def null_scale_and_dof(sigma_px: float) -> tuple[float, float]:
    """(c, k) of the statistic's null distribution ``c chi^2_k`` at PSF width ``sigma_px``
    (moments matched: c = variance / (2 mean), k = mean / c)."""
    widths, means, variances = (np.array(v) for v in zip(*NULL_MOMENTS))
    mean, variance = np.interp(sigma_px, widths, means), np.interp(sigma_px, widths, variances)
    scale = variance / (2.0 * mean)
    return float(scale), float(mean / scale)


def p_value(statistic: np.ndarray, sigma_px: float) -> np.ndarray:
    """False-alarm probability of a background-only candidate with statistic T at PSF width
    ``sigma_px`` (module doc)."""
    scale, dof = null_scale_and_dof(sigma_px)
    return stats.chi2.sf(np.asarray(statistic, np.float64) / scale, dof)


def detection_probability(p_values: np.ndarray, min_candidates: int = 20) -> tuple[np.ndarray, float]:
    """(probability that each candidate is a real emitter, pi0) from a batch's p-values
    (module doc)."""
    return probability_for(p_values, p_values, min_candidates), share_of_noise(p_values, min_candidates)


def share_of_noise(p_values: np.ndarray, min_candidates: int = 20) -> float:
    """Storey's pi0: the share of background-only candidates, from the p-values above
    STOREY_LAMBDA (uniform under the null). With fewer than ``min_candidates`` the batch
    cannot tell: 0.5 (equal prior odds)."""
    p = np.asarray(p_values, np.float64)
    if len(p) < min_candidates:
        return 0.5
    return float(np.clip((p > STOREY_LAMBDA).sum() / ((1 - STOREY_LAMBDA) * len(p)), 1.0 / len(p), 1.0))


def probability_for(p_values: np.ndarray, pooled: np.ndarray, min_candidates: int = 20) -> np.ndarray:
    """1 - lfdr at each of ``p_values``, the density and pi0 taken from ``pooled`` (every
    candidate of the batch or movie, kept and rejected)."""
    p = np.clip(np.asarray(p_values, np.float64), 0.0, 1.0)
    pooled = np.clip(np.asarray(pooled, np.float64), 0.0, 1.0)
    if len(p) == 0 or len(pooled) == 0:
        return np.zeros(len(p))
    density = _grenander_density(pooled, p)
    lfdr = np.clip(share_of_noise(pooled, min_candidates) / np.maximum(density, 1e-300), 0.0, 1.0)
    return 1.0 - lfdr


def _grenander_density(p: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The decreasing density of the sample ``p`` on [0, 1] (slope of the least concave
    majorant of its empirical distribution function), evaluated at ``at``; 0 takes the
    steepest slope."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    xs = np.r_[0.0, p[order], 1.0]
    ys = np.r_[0.0, np.arange(1, m + 1) / m, 1.0]
    # upper convex hull (least concave majorant) of the points, left to right
    hull = [0]
    for i in range(1, len(xs)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or below the segment a -> i
            if (ys[b] - ys[a]) * (xs[i] - xs[a]) <= (ys[i] - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    hull = np.asarray(hull)
    hx, hy = xs[hull], ys[hull]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slopes = np.diff(hy) / np.diff(hx)
    slopes = np.where(np.isfinite(slopes), slopes, np.inf)
    # each p lies in the hull segment [hx[j], hx[j+1]); p equal to a knot takes the left segment's slope
    segment = np.clip(np.searchsorted(hx, at, side="left") - 1, 0, len(slopes) - 1)
    return slopes[segment]
