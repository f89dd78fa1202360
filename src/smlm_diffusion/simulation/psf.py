"""Pixel-integrated isotropic Gaussian PSF (primary paper eq. 2) and the noiseless
KDE targets on the upsampled grid (eq. 3).

Positions are in camera pixels with the corner origin: pixel ``k`` spans ``[k, k+1]``,
so its centre is ``k + 0.5``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

#: Upsampling factor between the camera grid and the KDE grid.
UPSAMPLING = 4
#: Default KDE kernel width in *upsampled* pixels (primary paper: sigma_y = 3).
DEFAULT_KDE_SIGMA_UPSAMPLED_PX = 3.0


def pixel_integrals(
    centres_px: np.ndarray, n_pixels: int, sigma_px: float | np.ndarray, upsampling: int = 1
) -> np.ndarray:
    """Fraction of a 1-D Gaussian falling in each pixel (eq. 2, Delta E_u).

    ``centres_px``: (..., k) emitter coordinates along one axis, in camera pixels.
    ``sigma_px``: Gaussian width in camera pixels (scalar or broadcastable to centres).
    ``upsampling``: the grid has ``n_pixels`` pixels of width ``1 / upsampling`` camera px.
    Returns (..., k, n_pixels); each row sums to 1 for an emitter well inside the grid.
    """
    centres = np.asarray(centres_px, dtype=np.float64)[..., None]
    sigma = np.asarray(sigma_px, dtype=np.float64)
    if sigma.ndim:
        sigma = sigma[..., None]
    edges = np.arange(n_pixels + 1, dtype=np.float64) / upsampling
    cdf = 0.5 * erf((edges - centres) / (np.sqrt(2.0) * sigma))
    return np.diff(cdf, axis=-1)


def render_emitters(
    x_px: np.ndarray,
    y_px: np.ndarray,
    weights: np.ndarray,
    shape: tuple[int, int],
    sigma_px: float | np.ndarray,
    upsampling: int = 1,
) -> np.ndarray:
    """Sum of pixel-integrated Gaussians, batched over frames.

    ``x_px``, ``y_px``, ``weights``: (frames, k) arrays (pad unused slots with weight 0).
    ``shape``: (rows, cols) of the output grid. Returns (frames, rows, cols): pixel
    ``(r, c)`` holds ``sum_k weight_k * dE_v(r) * dE_u(c)``.
    """
    x = np.atleast_2d(x_px)
    y = np.atleast_2d(y_px)
    w = np.atleast_2d(weights).astype(np.float64)
    ex = pixel_integrals(x, shape[1], sigma_px, upsampling)  # (f, k, cols)
    ey = pixel_integrals(y, shape[0], sigma_px, upsampling)  # (f, k, rows)
    return np.matmul(np.swapaxes(ey * w[..., None], 1, 2), ex)


def expected_photons(x_px, y_px, photons, shape, psf_sigma_px, background_photons=0.0) -> np.ndarray:
    """omega_k = i0 * dEx * dEy + background (photons per camera pixel)."""
    return render_emitters(x_px, y_px, photons, shape, psf_sigma_px) + background_photons


def render_kde(
    x_px, y_px, present, shape, kde_sigma_upsampled_px=DEFAULT_KDE_SIGMA_UPSAMPLED_PX, upsampling: int = UPSAMPLING
) -> np.ndarray:
    """Noiseless KDE target on the ``upsampling``-times finer grid (eq. 3).

    Fixed physical scale: every emitter contributes a total mass of 1 (so a KDE is
    an emitter density per upsampled pixel and KDEs of tiles and frames add up).
    ``present``: (frames, k) weights, 1 for a real emitter, 0 for padding.
    ``shape``: camera (rows, cols); the output is (frames, rows*U, cols*U).
    """
    sigma_camera_px = kde_sigma_upsampled_px / upsampling
    out_shape = (shape[0] * upsampling, shape[1] * upsampling)
    return render_emitters(x_px, y_px, present, out_shape, sigma_camera_px, upsampling)


def single_emitter_kde_peak(kde_sigma_upsampled_px=DEFAULT_KDE_SIGMA_UPSAMPLED_PX) -> float:
    """Peak KDE value of one emitter centred on an upsampled pixel (for thresholds)."""
    d = pixel_integrals(np.array([0.5]), 1, kde_sigma_upsampled_px)[0, 0]
    return float(d * d)
