"""Input and target scaling shared by training and inference (stored in each model file).

Inputs, version 2 (``kind: "local-background"``): a background map is estimated per
frame (``estimate_background``: robust smoothing that ignores spots, so gradients,
out-of-focus blobs and cell-shaped patches are removed rather than detected); phi then
gets two channels, both computed *per whole frame* (never per tile):

- ``(photons - background) / scale`` with ``scale = max(p99.9 of that residual,
  6 * median noise, 1 photon)``: an isolated emitter peaks near 1 whatever its brightness;
- the significance ``(photons - background) / noise / 10``, clipped to [-1, 5], with
  ``noise = sqrt(background + 2)`` photons (Poisson plus about 1.4 e- read noise): the
  network can tell shot noise at 13 photons from shot noise at 66, so a wrong camera
  gain changes what it sees;
- for a psi trained with three frame channels, ``asinh((photons - background) / noise) / 5``
  (unclipped: how far above the noise a spot stands sets its localization precision).

Version 1 (``kind: "frame-median-p99.9"``, one channel, the frame median as background)
is kept so that older model files load and run as they were trained.

Targets: the eq. 3 KDE (unit mass per emitter) is divided by the peak of one centred
emitter, so an isolated emitter's KDE peaks at about 1 in model units.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..simulation.psf import DEFAULT_KDE_SIGMA_UPSAMPLED_PX, single_emitter_kde_peak

#: the third channel, ``asinh((photons - background) / noise) / 5``, for a psi that reads it
#: (``train psi --frame-channels 3``): unlike the significance it is not clipped, so a pixel
#: 50 and one 500 noise std above the background differ (1.0 against 1.4), which is what an
#: emitter's localization precision, and so the posterior's width, depends on
SNR_CHANNEL_UNIT = 5.0
INPUT_NORMALISATION_V1 = {"kind": "frame-median-p99.9", "percentile": 99.9, "noise_floor": 6.0}
INPUT_NORMALISATION = {
    "kind": "local-background",
    "percentile": 99.9,
    "noise_floor": 6.0,
    "background_sigma_px": 3.0,
    "read_variance_photons2": 2.0,
    "significance_unit": 10.0,
    "channels": 2,
}


def estimate_background(
    photons: np.ndarray, sigma_px: float = 3.0, iterations: int = 3, read_variance_photons2: float = 2.0
) -> np.ndarray:
    """Expected background (photons per pixel) of each frame (f, rows, cols) or (rows, cols).

    A grey opening (7x7) of the lightly smoothed frame gives a start below the spots; then
    ``iterations`` rounds of normalised Gaussian smoothing (width ``sigma_px``) over the
    pixels within 2 noise std of the current estimate (spots and hot pixels are left out,
    the clipping bias is -0.05 std)."""
    frames = np.asarray(photons, np.float64)
    squeeze = frames.ndim == 2
    frames = frames.reshape(-1, *frames.shape[-2:])
    smooth = (0.0, sigma_px, sigma_px)
    start = ndimage.grey_opening(ndimage.gaussian_filter(frames, (0.0, 1.0, 1.0)), size=(1, 7, 7))
    background = ndimage.gaussian_filter(start, smooth)
    for _ in range(iterations):
        noise = np.sqrt(np.clip(background, 0.0, None) + read_variance_photons2)
        keep = (frames < background + 2.0 * noise).astype(np.float64)
        weight = ndimage.gaussian_filter(keep, smooth)
        total = ndimage.gaussian_filter(frames * keep, smooth)
        background = np.where(weight > 0.05, total / np.maximum(weight, 1e-12), background)
    return background[0] if squeeze else background


def frame_scaling(
    photons: np.ndarray, percentile: float = 99.9, noise_floor: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Version 1: per-frame (median background, scale) in photons for frames (f, rows, cols)."""
    frames = np.asarray(photons, np.float64).reshape(-1, *np.shape(photons)[-2:])
    flat = frames.reshape(len(frames), -1)
    background = np.median(flat, axis=1)
    noise = 1.4826 * np.median(np.abs(flat - background[:, None]), axis=1)
    high = np.percentile(flat, percentile, axis=1)
    scale = np.maximum.reduce([high - background, noise_floor * noise, np.ones_like(background)])
    return background, scale


def normalise_frames(
    photons: np.ndarray, settings: dict | None = None, background: np.ndarray | None = None
) -> np.ndarray:
    """Frames in photons (f, rows, cols) or (rows, cols) -> model input (f, C, rows, cols)
    float32 (C = 2 for version 2, 3 with ``settings["channels"] = 3``, 1 for version 1); a
    2-D frame gives (C, rows, cols).
    ``background``: a precomputed ``estimate_background`` of the same frames (version 2)."""
    settings = settings or INPUT_NORMALISATION
    frames = np.asarray(photons, np.float64)
    squeeze = frames.ndim == 2
    frames = frames.reshape(-1, *frames.shape[-2:])
    if settings["kind"] == INPUT_NORMALISATION_V1["kind"]:
        level, scale = frame_scaling(frames, settings["percentile"], settings["noise_floor"])
        out = ((frames - level[:, None, None]) / scale[:, None, None])[:, None]
    else:
        if background is None:
            background = estimate_background(
                frames, settings["background_sigma_px"], read_variance_photons2=settings["read_variance_photons2"]
            )
        background = np.asarray(background, np.float64).reshape(frames.shape)
        residual = frames - background
        noise = np.sqrt(np.clip(background, 0.0, None) + settings["read_variance_photons2"])
        flat = residual.reshape(len(frames), -1)
        scale = np.maximum.reduce(
            [
                np.percentile(flat, settings["percentile"], axis=1),
                settings["noise_floor"] * np.median(noise.reshape(len(frames), -1), axis=1),
                np.ones(len(frames)),
            ]
        )
        significance = np.clip(residual / noise / settings["significance_unit"], -1.0, 5.0)
        channels = [residual / scale[:, None, None], significance]
        if settings.get("channels", 2) >= 3:  # psi's precision cue: the unclipped SNR, log-like
            channels.append(np.arcsinh(residual / noise) / SNR_CHANNEL_UNIT)
        out = np.stack(channels, axis=1)
    out = out.astype(np.float32)
    return out[0] if squeeze else out


def kde_scale(kde_sigma_upsampled_px: float = DEFAULT_KDE_SIGMA_UPSAMPLED_PX) -> float:
    """Factor from eq. 3 KDE units (unit mass per emitter) to model units (peak ~ 1)."""
    return 1.0 / single_emitter_kde_peak(kde_sigma_upsampled_px)
