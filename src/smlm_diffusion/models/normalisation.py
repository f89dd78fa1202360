"""Input and target scaling shared by training and inference (stored in each model file).

Inputs: each raw frame, in photons, is scaled *per whole frame* (never per tile, so that
tiling cannot change the result): ``(photons - background) / scale`` with the background
the frame median and ``scale = max(p99.9 - background, 6 * noise_std, 1 photon)``
(noise std from the median absolute deviation). An isolated emitter then peaks near 1
whatever its brightness, and a frame of pure noise stays well below 1.

Targets: the eq. 3 KDE (unit mass per emitter) is divided by the peak of one centred
emitter, so an isolated emitter's KDE peaks at about 1 in model units.
"""

from __future__ import annotations

import numpy as np

from ..simulation.psf import DEFAULT_KDE_SIGMA_UPSAMPLED_PX, single_emitter_kde_peak

INPUT_NORMALISATION = {"kind": "frame-median-p99.9", "percentile": 99.9, "noise_floor": 6.0}


def frame_scaling(photons: np.ndarray, percentile: float = 99.9, noise_floor: float = 6.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (background, scale) in photons for frames (f, rows, cols)."""
    frames = np.asarray(photons, np.float64).reshape(-1, *np.shape(photons)[-2:])
    flat = frames.reshape(len(frames), -1)
    background = np.median(flat, axis=1)
    noise = 1.4826 * np.median(np.abs(flat - background[:, None]), axis=1)
    high = np.percentile(flat, percentile, axis=1)
    scale = np.maximum.reduce([high - background, noise_floor * noise, np.ones_like(background)])
    return background, scale


def normalise_frames(photons: np.ndarray, settings: dict | None = None) -> np.ndarray:
    """Frames in photons (f, rows, cols) or (rows, cols) -> model input, float32."""
    settings = settings or INPUT_NORMALISATION
    frames = np.asarray(photons, np.float64)
    squeeze = frames.ndim == 2
    frames = frames.reshape(-1, *frames.shape[-2:])
    background, scale = frame_scaling(frames, settings["percentile"], settings["noise_floor"])
    out = ((frames - background[:, None, None]) / scale[:, None, None]).astype(np.float32)
    return out[0] if squeeze else out


def kde_scale(kde_sigma_upsampled_px: float = DEFAULT_KDE_SIGMA_UPSAMPLED_PX) -> float:
    """Factor from eq. 3 KDE units (unit mass per emitter) to model units (peak ~ 1)."""
    return 1.0 / single_emitter_kde_peak(kde_sigma_upsampled_px)
