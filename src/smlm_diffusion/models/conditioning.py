"""psi's condition from likelihood-refined localizations (``train psi --condition refined``).

A psi conditioned on phi's KDE cannot be narrower than what it can localize: from the
frame alone it places an isolated emitter to about 0.1 camera px whatever its brightness,
so its posterior cannot follow the Cramer-Rao bound (docs/models.md). This
psi is conditioned instead on what the maximum-likelihood fit knows:

- the condition: the eq. 3 KDE of the refined positions (model units), in place of phi's;
- a precision channel beside the frame: around each refined emitter (Gaussian footprint,
  ``FOOTPRINT_PX``), its positional std on a log scale, ``precision_value``.

psi then only has to learn how far to trust each emitter's position (and what the fit
missed), not to localize. A psi reading a fourth frame channel also gets the fits' Poisson
residual (``fit_residual_channel``): where the fits explain the photons it is noise, where
they missed or merged an emitter it is not, which psi cannot tell from the frame and the
fits' KDE alone. At inference the positions and stds are the engine's refined
localizations and their ``uncertainty_xy``; in training a surrogate of that fit is drawn
from the truth (``surrogate_refinement``): each emitter displaced by its Mortensen
precision, faint ones missed, pairs closer than the PSF merged.
"""

from __future__ import annotations

import numpy as np

from ..simulation.psf import expected_photons, render_kde
from .normalisation import kde_scale

#: width (camera px) of the footprint on which an emitter's precision is written
FOOTPRINT_PX = 1.0
#: precision channel: log(std / LOW) / log(HIGH / LOW) for a std in 4x px, so 0.05 -> 0 and 2 -> 1
PRECISION_LOW_4X_PX, PRECISION_HIGH_4X_PX = 0.05, 2.0
#: largest change of the unit-mass eq. 3 KDE (model units, sigma_y = 3) per 4x px of shift
SHIFT_RESIDUAL_PER_4X_PX = 0.2
#: scale map away from every fitted emitter (model units: a missed emitter peaks near 1 / SCALE_FAR in z)
SCALE_FAR = 0.5
#: scale map: an emitter's own scale out to FLAT_4X_PX (its KDE's residual support), then a
#: Gaussian roll-off of width ROLLOFF_4X_PX to SCALE_FAR (4x px)
FLAT_4X_PX, ROLLOFF_4X_PX = 8.0, 4.0
#: residual channel: the fits' per-pixel Poisson residual, clipped to +-RESIDUAL_CLIP, / RESIDUAL_CLIP
RESIDUAL_CLIP = 5.0
#: surrogate detection: found with probability clip((snr - DETECT_SNR) / DETECT_RAMP, 0, 1)
DETECT_SNR, DETECT_RAMP = 3.0, 4.0


def precision_value(std_4x_px: np.ndarray) -> np.ndarray:
    std = np.clip(np.nan_to_num(np.asarray(std_4x_px, np.float64), nan=PRECISION_HIGH_4X_PX), 1e-3, 20.0)
    return np.clip(np.log(std / PRECISION_LOW_4X_PX) / np.log(PRECISION_HIGH_4X_PX / PRECISION_LOW_4X_PX), -0.5, 1.5)


def refined_condition(
    x_px: np.ndarray, y_px: np.ndarray, std_px: np.ndarray, shape: tuple[int, int], upsampling: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(condition KDE (4H, 4W) in model units, precision channel (H, W)) for refined
    positions and per-axis stds, all in camera px (corner origin: pixel k spans [k, k+1))."""
    x = np.asarray(x_px, np.float64).reshape(-1)
    y = np.asarray(y_px, np.float64).reshape(-1)
    rows, cols = shape
    if len(x) == 0:
        return (np.zeros((rows * upsampling, cols * upsampling), np.float32), np.zeros(shape, np.float32))
    kde = render_kde(x[None], y[None], np.ones((1, len(x))), shape)[0]
    value = precision_value(upsampling * np.asarray(std_px, np.float64).reshape(-1))
    weights, window = _footprints(x, y, 4.0 * FOOTPRINT_PX, lambda d: np.exp(-0.5 * (d / FOOTPRINT_PX) ** 2))
    channel = _stamp(weights * value[:, None, None], window, shape)
    return (kde * kde_scale()).astype(np.float32), channel.astype(np.float32)


def fit_residual_channel(
    photons: np.ndarray,
    background: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    fitted_photons: np.ndarray,
    psf_sigma_px: float,
    read_variance_photons2: float = 0.0,
) -> np.ndarray:
    """(H, W) residual of the fits: (photons - model) / sqrt(model + read variance), the model
    being the background map plus every fit's integrated Gaussian PSF, clipped to
    +-RESIDUAL_CLIP and divided by it. Fits with a non-finite position or photon count are
    left out (they explain nothing)."""
    x = np.asarray(x_px, np.float64).reshape(-1)
    y = np.asarray(y_px, np.float64).reshape(-1)
    n = np.asarray(fitted_photons, np.float64).reshape(-1)
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(n) & (n > 0)
    model = np.asarray(background, np.float64).copy()
    if keep.any():
        model += expected_photons(x[keep][None], y[keep][None], n[keep][None], np.shape(photons), psf_sigma_px)[0]
    z = (np.asarray(photons, np.float64) - model) / np.sqrt(np.maximum(model + read_variance_photons2, 1.0))
    return (np.clip(z, -RESIDUAL_CLIP, RESIDUAL_CLIP) / RESIDUAL_CLIP).astype(np.float32)


def residual_scale(
    x_px: np.ndarray,
    y_px: np.ndarray,
    std_px: np.ndarray,
    shape: tuple[int, int],
    upsampling: int = 4,
    shift_width: float = 1.0,
) -> np.ndarray:
    """Scale map S (4H, 4W), model units, of a ``target="scaled"`` psi's residual: each
    fitted emitter's ``SHIFT_RESIDUAL_PER_4X_PX`` x std (4x px) over its KDE's support,
    ``SCALE_FAR`` away from all of them; where footprints overlap, their weighted mean.
    ``shift_width`` multiplies the emitters' part (a sampler's width correction; training: 1)."""
    x = np.asarray(x_px, np.float64).reshape(-1)
    y = np.asarray(y_px, np.float64).reshape(-1)
    big = (shape[0] * upsampling, shape[1] * upsampling)
    if len(x) == 0:
        return np.full(big, SCALE_FAR, np.float32)
    std = np.nan_to_num(np.asarray(std_px, np.float64).reshape(-1), nan=PRECISION_HIGH_4X_PX / upsampling)
    own = shift_width * SHIFT_RESIDUAL_PER_4X_PX * np.clip(upsampling * std, 1e-3, 20.0)
    weights, window = _footprints(
        upsampling * x,
        upsampling * y,
        FLAT_4X_PX + 3.0 * ROLLOFF_4X_PX,
        lambda d: np.exp(-0.5 * (np.maximum(d - FLAT_4X_PX, 0.0) / ROLLOFF_4X_PX) ** 2),
    )
    total = _stamp(weights, window, big)
    weighted = _stamp(weights * own[:, None, None], window, big)
    norm = np.maximum(total, 1.0)
    return (weighted / norm + (1.0 - total / norm) * SCALE_FAR).astype(np.float32)


def _footprints(x: np.ndarray, y: np.ndarray, radius: float, profile) -> tuple[np.ndarray, tuple]:
    """profile(distance) on each emitter's (2r+1)^2 window of pixel centres (positions and
    distances in the grid's pixels), and the windows' top-left corners, for ``_stamp``."""
    r = int(np.ceil(radius))
    r0 = np.floor(y).astype(int) - r
    c0 = np.floor(x).astype(int) - r
    offsets = np.arange(2 * r + 1)
    rows = r0[:, None] + offsets[None] + 0.5
    cols = c0[:, None] + offsets[None] + 0.5
    d = np.hypot(rows[:, :, None] - y[:, None, None], cols[:, None, :] - x[:, None, None])
    return profile(d), (r0, c0, r)


def _stamp(values: np.ndarray, window: tuple, shape: tuple[int, int]) -> np.ndarray:
    """Sum of per-emitter windows (n, 2r+1, 2r+1) into a map of ``shape`` (clipped at its edges)."""
    r0, c0, r = window
    out = np.zeros((shape[0] + 4 * r + 2, shape[1] + 4 * r + 2))
    size = 2 * r + 1
    rr = np.clip(r0, -2 * r - 1, shape[0]) + 2 * r + 1  # padded index of each window's first row
    cc = np.clip(c0, -2 * r - 1, shape[1]) + 2 * r + 1
    for value, i, j in zip(values, rr, cc):
        out[i : i + size, j : j + size] += value
    return out[2 * r + 1 : 2 * r + 1 + shape[0], 2 * r + 1 : 2 * r + 1 + shape[1]]


def approximate_precision_px(photons: np.ndarray, background_photons: np.ndarray, psf_sigma_px: float) -> np.ndarray:
    """Mortensen et al. 2010's closed form (per-axis std, px, pixel size 1): the training
    surrogate's fit precision (``analysis.crlb`` has the exact integral)."""
    n = np.maximum(np.asarray(photons, np.float64), 1.0)
    sigma_a2 = psf_sigma_px**2 + 1.0 / 12.0
    return np.sqrt(sigma_a2 / n * (16.0 / 9.0 + 8.0 * np.pi * sigma_a2 * np.maximum(background_photons, 0.0) / n))


def surrogate_refinement(
    x_px: np.ndarray,
    y_px: np.ndarray,
    photons: np.ndarray,
    background_photons: np.ndarray,
    psf_sigma_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, std, photons), positions and std in px, of what a likelihood fit of these true
    emitters reports: faint ones missed, pairs closer than the PSF sigma merged
    (photon-weighted centre, summed photons, std widened by half their distance), each found
    one displaced by a draw of its precision."""
    x, y = np.asarray(x_px, np.float64), np.asarray(y_px, np.float64)
    n, b = np.asarray(photons, np.float64), np.asarray(background_photons, np.float64)
    snr = n / np.sqrt(n + 4 * np.pi * psf_sigma_px**2 * np.maximum(b, 0.0))
    found = rng.random(len(x)) < np.clip((snr - DETECT_SNR) / DETECT_RAMP, 0.0, 1.0)
    x, y, n, b = x[found], y[found], n[found], b[found]
    extra = np.zeros(len(x))
    alive = np.ones(len(x), bool)
    for i in np.argsort(-n):  # brightest first: each absorbs its unresolved neighbours
        if not alive[i]:
            continue
        near = alive & (np.hypot(x - x[i], y - y[i]) < psf_sigma_px)
        near[i] = False
        for j in np.flatnonzero(near):
            total = n[i] + n[j]
            extra[i] = np.hypot(extra[i], 0.5 * np.hypot(x[j] - x[i], y[j] - y[i]))
            x[i], y[i] = (n[i] * x[i] + n[j] * x[j]) / total, (n[i] * y[i] + n[j] * y[j]) / total
            n[i] = total
            alive[j] = False
    x, y, n, b, extra = x[alive], y[alive], n[alive], b[alive], extra[alive]
    std = np.hypot(approximate_precision_px(n, b, psf_sigma_px), extra)
    return x + std * rng.standard_normal(len(x)), y + std * rng.standard_normal(len(x)), std, n
