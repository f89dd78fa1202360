"""Cramer-Rao lower bound for an isolated emitter (primary paper appendix A.5) and the
closed-form approximation of Mortensen et al. (Nat. Methods 2010).

Poisson approximation of eq. 1: after offset and gain, a pixel with read noise ``w``
(electrons) is Poisson with mean ``omega' = omega + w^2``. Fisher information
``I_ij = sum_k (d omega'_k / d theta_i)(d omega'_k / d theta_j) / omega'_k``;
an EMCCD's excess noise (F^2 = 2) halves it.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate
from scipy.special import erf

PARAMETERS = ("x", "y", "photons", "background")


def _axis_terms(centre_px: float, n_pixels: int, sigma_px: float):
    """Per-pixel Delta E (eq. 2) and its derivative with respect to the centre."""
    edges = np.arange(n_pixels + 1, dtype=np.float64)
    z = (edges - centre_px) / (np.sqrt(2.0) * sigma_px)
    delta = np.diff(0.5 * erf(z))
    pdf = np.exp(-(z**2)) / (np.sqrt(2.0 * np.pi) * sigma_px)
    d_delta = -np.diff(pdf)
    return delta, d_delta


def fisher_information(
    x_px: float,
    y_px: float,
    photons: float,
    background_photons: float,
    psf_sigma_px: float,
    shape: tuple[int, int] = (21, 21),
    read_noise_e: float = 0.0,
    emccd: bool = False,
) -> np.ndarray:
    """4x4 Fisher information for (x, y, photons, background) of one emitter on a
    ``shape`` (rows, cols) window; positions in pixels with the corner origin."""
    ex, dex = _axis_terms(x_px, shape[1], psf_sigma_px)
    ey, dey = _axis_terms(y_px, shape[0], psf_sigma_px)
    omega = photons * np.outer(ey, ex) + background_photons + read_noise_e**2
    grads = np.stack(
        [
            photons * np.outer(ey, dex),
            photons * np.outer(dey, ex),
            np.outer(ey, ex),
            np.ones_like(omega),
        ]
    ).reshape(4, -1)
    omega = np.maximum(omega, 1e-12)  # zero-background pixels far out carry no information
    info = (grads / omega.reshape(1, -1)) @ grads.T
    return info / 2.0 if emccd else info


def crlb(
    x_px: float,
    y_px: float,
    photons: float,
    background_photons: float,
    psf_sigma_px: float,
    shape: tuple[int, int] = (21, 21),
    read_noise_e: float = 0.0,
    emccd: bool = False,
    free: tuple[str, ...] = PARAMETERS,
) -> dict[str, float]:
    """Lower bound on the standard deviation of each free parameter (sqrt of the
    diagonal of I^-1); parameters not in ``free`` are treated as known."""
    info = fisher_information(x_px, y_px, photons, background_photons, psf_sigma_px, shape, read_noise_e, emccd)
    idx = [PARAMETERS.index(p) for p in free]
    cov = np.linalg.inv(info[np.ix_(idx, idx)])
    return {p: float(np.sqrt(cov[i, i])) for i, p in enumerate(free)}


def mortensen_precision_px(
    photons, background_photons, psf_sigma_px: float, pixel_size_px: float = 1.0, emccd: bool = False
):
    """Mortensen et al. 2010 eq. 6 (MLE, Gaussian PSF): per-axis std in pixels.

    ``var = F * sigma_a^2 / N * [1 + int_0^1 ln t / (1 + t / tau) dt]^-1`` with
    ``sigma_a^2 = sigma^2 + a^2/12`` and ``tau = 2 pi sigma_a^2 b / (N a^2)``;
    ``b`` is the background (photons per pixel, read noise^2 included).
    """
    photons = np.asarray(photons, np.float64)
    background = np.broadcast_to(np.asarray(background_photons, np.float64), photons.shape)
    a = pixel_size_px
    sigma_a2 = psf_sigma_px**2 + a**2 / 12.0
    out = np.empty(photons.shape)
    for index, (n, b) in enumerate(zip(photons.reshape(-1), background.reshape(-1))):
        tau = 2 * np.pi * sigma_a2 * b / (n * a**2)
        if tau <= 0:
            correction = 1.0
        else:
            value, _ = integrate.quad(lambda t: np.log(t) / (1 + t / tau), 0.0, 1.0, limit=200)
            correction = 1.0 / (1.0 + value)
        out.reshape(-1)[index] = np.sqrt((2.0 if emccd else 1.0) * sigma_a2 / n * correction)
    return out if out.ndim else float(out)
