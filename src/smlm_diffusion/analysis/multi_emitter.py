"""Splitting merged emitters by a likelihood-ratio test (multi-emitter fitting).

Two emitters closer than about 2.5 PSF sigmas give one KDE blob and one candidate; the
single fit then lands between them, with a small CRLB and a large error. As in
ThunderSTORM's multi-emitter analysis and SMAP's, a one-emitter and a two-emitter model
are both fitted to the data around every fit (its neighbours' fitted PSFs held as
background; all windows at once) and the pair replaces the single emitter when twice the
log-likelihood gain exceeds ``threshold`` (the pair has 3 more parameters: chi^2 with 3
degrees of freedom under the one-emitter model, so 20 is p ~ 2e-4 per test) and both of
its emitters reach the detection knob. The pair starts on the principal axis of the
spot's second moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .fit import FitResult, frame_points
from .scoring import fit_windows, psf_only

#: twice the log-likelihood gain a pair needs to replace a single fit (chi^2_3: p ~ 2e-4)
SPLIT_THRESHOLD = 20.0
#: neighbours farther than this many PSF sigmas from a window are left out of its background
TAIL_SIGMAS = 5.0


@dataclass
class SplitResult:
    x_px: np.ndarray  # start positions after the splits: the fits' own first, then the added ones
    y_px: np.ndarray
    from_split: np.ndarray  # bool: this start is one of an accepted pair
    ambiguity_px: np.ndarray  # sqrt(P(pair)) x offset to the pair's nearer member, for a fit left single
    gain: np.ndarray | None = None  # 2 dlogL of the pair over the single (nan where not tested)
    parent: np.ndarray | None = None  # index of the fit each start came from


def split_merged(
    photons: np.ndarray,
    background: np.ndarray | float,
    fit: FitResult,
    sigma_px: float,
    read_variance_photons2: float = 2.0,
    min_photons: float = 0.0,
    threshold: float = SPLIT_THRESHOLD,
    frame_index=None,
) -> SplitResult:
    """Split the fits that two emitters explain better (module doc). ``photons``: one
    frame, or a stack (F, H, W) with ``frame_index`` (m,) naming each fit's frame.

    For a fit left single, ``ambiguity_px`` is the position error it would have if the pair
    were real (its distance to the pair's nearer member), weighted by the pair's probability from
    BIC-penalised likelihoods, ``P = 1 / (1 + exp(-(2 dlogL - 3 ln n_pixels) / 2))``
    (Bayesian model averaging; refine.py adds it in quadrature to the precision)."""
    frame = np.asarray(photons, np.float64)
    frame = frame[None] if frame.ndim == 2 else frame
    bg_map = np.broadcast_to(np.asarray(background, np.float64), frame.shape)
    m = len(fit.x_px)
    f = np.zeros(m, int) if frame_index is None else np.asarray(frame_index, int)
    w = int(np.ceil(3 * sigma_px)) + 1
    size = 2 * w + 1
    h, wd = frame.shape[1:]
    ok = fit.ok & np.isfinite(fit.photons)
    index = np.flatnonzero(ok)
    out = SplitResult(
        fit.x_px.copy(), fit.y_px.copy(), np.zeros(m, bool), np.zeros(m), np.full(m, np.nan), np.arange(m)
    )
    if len(index) == 0 or h < size or wd < size:
        return out
    r0 = np.clip(np.floor(fit.y_px).astype(int) - w, 0, h - size)
    c0 = np.clip(np.floor(fit.x_px).astype(int) - w, 0, wd - size)
    # the neighbours' fitted PSFs are held as background in each window
    others = neighbour_psfs_in_windows(fit.x_px, fit.y_px, np.where(ok, fit.photons, 0.0), r0, c0, size, sigma_px, f)
    rows = r0[:, None] + np.arange(size)
    cols = c0[:, None] + np.arange(size)
    data = frame[f[index, None, None], rows[index, :, None], cols[index, None, :]]
    bg = bg_map[f[index, None, None], rows[index, :, None], cols[index, None, :]] + others[index]
    # fits in window coordinates (every window lies inside the frame)
    sx, sy = fit.x_px[index] - c0[index], fit.y_px[index] - r0[index]
    corner = np.zeros(len(index), int)
    everywhere = np.ones(data.shape, bool)
    one = fit_windows(data, everywhere, bg, sx[:, None], sy[:, None], corner, corner, sigma_px, read_variance_photons2)
    # the pair starts on the principal axis of the spot's second moments
    var_x, var_y, cov_xy = _moments(data - bg, one.x[:, 0], one.y[:, 0], 2.5 * sigma_px)
    values, vectors = np.linalg.eigh(np.stack([np.stack([var_x, cov_xy], -1), np.stack([cov_xy, var_y], -1)], -2))
    axis = vectors[:, :, 1]
    half = np.sqrt(np.maximum(values[:, 1] - sigma_px**2 - 1 / 12, (0.4 * sigma_px) ** 2))
    offsets = np.array([-1.0, 1.0])[None, :] * half[:, None]
    # the pair's likelihood is needed to ~0.01 (the test compares 2 dlogL with 20); an accepted
    # pair is refitted jointly afterwards, so its positions need not be final here
    two = fit_windows(
        data,
        everywhere,
        bg,
        one.x + offsets * axis[:, :1],
        one.y + offsets * axis[:, 1:],
        corner,
        corner,
        sigma_px,
        read_variance_photons2,
        nll_tolerance=0.005,
    )
    xs, ys, ns = two.x, two.y, two.n
    gain = 2.0 * (one.nll - two.nll)
    separation = np.hypot(xs[:, 0] - xs[:, 1], ys[:, 0] - ys[:, 1])
    inside = ((xs > 0) & (xs < size) & (ys > 0) & (ys < size)).all(axis=1)
    # a real pair shares the single fit's photons; a pair that needs many more is fitting
    # background structure (a ridge the background estimate missed)
    plausible = (
        inside & (separation >= 0.3 * sigma_px) & (ns.min(axis=1) >= 1.0) & (ns.sum(axis=1) <= 1.5 * one.n[:, 0])
    )
    good = plausible & (gain > threshold) & (ns.min(axis=1) >= min_photons)
    # two neighbours may both explain one missed emitter between them by a split: the
    # larger gain wins, and a split whose emitters land within 1 sigma of those of an
    # accepted one is dropped
    accept = np.zeros(len(index), bool)
    taken = np.zeros((0, 3))
    for j in np.flatnonzero(good)[np.argsort(-gain[good], kind="stable")]:
        new = frame_points(xs[j] + c0[index[j]], ys[j] + r0[index[j]], np.full(2, f[index[j]]), sigma_px)
        if len(taken) and np.linalg.norm(new[:, None] - taken[None], axis=2).min() < sigma_px:
            continue
        accept[j] = True
        taken = np.r_[taken, new]
    with np.errstate(over="ignore"):
        p_pair = 1.0 / (1.0 + np.exp(-(gain - 3.0 * np.log(size * size)) / 2.0))
    # the single fit's offset from the nearer member of the pair: what it misses if the pair is real
    offset = np.hypot(xs - one.x, ys - one.y).min(axis=1)
    ambiguity = np.where(plausible & ~accept, np.sqrt(p_pair) * offset, 0.0)
    out.ambiguity_px[index] = ambiguity
    out.gain[index] = gain
    first, second = index[accept], np.flatnonzero(accept)
    out.x_px[first], out.y_px[first] = xs[second, 0] + c0[first], ys[second, 0] + r0[first]
    out.from_split[first] = True
    out.x_px = np.r_[out.x_px, xs[second, 1] + c0[first]]
    out.y_px = np.r_[out.y_px, ys[second, 1] + r0[first]]
    out.from_split = np.r_[out.from_split, np.ones(len(first), bool)]
    out.ambiguity_px = np.r_[out.ambiguity_px, np.zeros(len(first))]
    out.gain = np.r_[out.gain, np.full(len(first), np.nan)]
    out.parent = np.r_[out.parent, first]
    return out


def distinct(
    x_px: np.ndarray, y_px: np.ndarray, photons: np.ndarray, min_distance_px: float, frame_index=None
) -> np.ndarray:
    """Mask keeping, of emitters closer than ``min_distance_px`` (in the same frame of
    ``frame_index``), the brightest (a joint fit whose starts converged on one emitter)."""
    keep = np.ones(len(x_px), bool)
    pairs = cKDTree(frame_points(x_px, y_px, frame_index, min_distance_px)).query_pairs(
        min_distance_px, output_type="ndarray"
    )
    for i, j in pairs[
        np.argsort(-np.minimum(np.nan_to_num(photons[pairs[:, 0]]), np.nan_to_num(photons[pairs[:, 1]])), kind="stable")
    ]:
        if keep[i] and keep[j]:
            keep[j if np.nan_to_num(photons[j]) < np.nan_to_num(photons[i]) else i] = False
    return keep


def neighbour_psfs_in_windows(x, y, n, r0, c0, size, sigma, frame_index=None):
    """(windows, size, size): the sum of N_j PSF_j over every other emitter j of the same
    frame within ``TAIL_SIGMAS`` sigma of window i (neighbour pairs only: memory grows with
    the pairs, not m^2; beyond that a PSF puts < 4e-6 N per pixel in the window)."""
    m = len(x)
    out = np.zeros((m, size, size))
    reach = (
        size * np.sqrt(2.0) + TAIL_SIGMAS * sigma
    )  # emitter to the far corner of its (edge-clipped) window, plus the tail
    pairs = cKDTree(frame_points(x, y, frame_index, reach)).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return out
    windows = np.r_[pairs[:, 0], pairs[:, 1]]
    emitters = np.r_[pairs[:, 1], pairs[:, 0]]
    # keep the emitters whose distance to window i's rectangle is within the tail
    gap_x = np.maximum(np.maximum(c0[windows] - x[emitters], x[emitters] - (c0[windows] + size)), 0.0)
    gap_y = np.maximum(np.maximum(r0[windows] - y[emitters], y[emitters] - (r0[windows] + size)), 0.0)
    near = np.hypot(gap_x, gap_y) < TAIL_SIGMAS * sigma
    order = np.argsort(windows[near], kind="stable")
    windows, emitters = windows[near][order], emitters[near][order]
    if len(windows) == 0:
        return out
    psf = psf_only(x[emitters], y[emitters], r0[windows], c0[windows], size, sigma)
    starts = np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]])
    out[windows[starts]] = np.add.reduceat(n[emitters, None, None] * psf, starts, axis=0)
    return out


def _moments(spot, x, y, radius):
    """Second central moments (px^2) of the positive part of ``spot`` within ``radius`` of
    (x, y) in window coordinates (pixel centres at k + 0.5)."""
    rr = np.arange(spot.shape[1])[None, :, None] + 0.5
    cc = np.arange(spot.shape[2])[None, None, :] + 0.5
    inside = (rr - y[:, None, None]) ** 2 + (cc - x[:, None, None]) ** 2 <= radius**2
    weight = np.where(inside, np.clip(spot, 0, None), 0.0)
    total = np.maximum(weight.sum(axis=(1, 2)), 1e-9)
    mx = (weight * cc).sum(axis=(1, 2)) / total
    my = (weight * rr).sum(axis=(1, 2)) / total
    var_x = (weight * (cc - mx[:, None, None]) ** 2).sum(axis=(1, 2)) / total
    var_y = (weight * (rr - my[:, None, None]) ** 2).sum(axis=(1, 2)) / total
    cov = (weight * (cc - mx[:, None, None]) * (rr - my[:, None, None])).sum(axis=(1, 2)) / total
    return var_x, var_y, cov
