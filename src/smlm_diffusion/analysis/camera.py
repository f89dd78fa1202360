"""Camera gain and offset from the movie itself (photon transfer), for users who do not
know them or state them wrongly.

For a background pixel, ``var_ADU = F^2 * gain * (mean_ADU - offset) + gain^2 * read^2``
(``camera.py``; F^2 = 2 on an EMCCD, 1 otherwise). Per pixel we take the temporal mean and
the variance of frame-to-frame differences (half their mean square, after 4-sigma
clipping, so slow background changes and most blinks drop out); pixels are binned by mean
and a straight line through the bin medians gives the gain (slope / F^2) and, neglecting
read noise, the offset (where the line crosses zero variance; read noise of r electrons
makes it ``gain * r^2`` ADU too low). A movie whose background is too flat to fix the
slope uses the stated offset instead (``var / (mean - offset)``).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

#: fewest frames for the estimate (each pixel's noise from the differences of consecutive frames)
MIN_FRAMES = 4


@dataclass
class CameraEstimate:
    gain_adu_per_photon: float
    offset_adu: float
    method: str  # "photon-transfer line" | "one level, stated offset"
    frames_used: int
    background_range_adu: tuple[float, float]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def pixel_statistics(frames_adu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (temporal mean, noise variance) of a (f, rows, cols) stack, robust to
    emitters: where the 3x3 mean above the temporal median exceeds 3 of its own noise std
    (a spot), that 3x3 patch and its neighbourhood out to 5x5 (the PSF's wings) are left
    out (a pixel's own noise moves that mean by only 1/9, so the noise is hardly truncated);
    the variance is half the mean square of the differences between consecutive kept
    samples, 4-sigma clipped."""
    x = np.asarray(frames_adu, np.float64)
    d = np.diff(x, axis=0)
    spread = 1.4826 * np.median(np.abs(d - np.median(d, axis=0)), axis=0) / np.sqrt(2.0)
    spread = np.where(spread > 0, spread, x.std(axis=0) + 1e-12)
    box = ndimage.uniform_filter(x - np.median(x, axis=0), size=(1, 3, 3))
    bright = box > 3.0 * np.sqrt(ndimage.uniform_filter(spread**2, size=3) / 9.0)
    clean = ~ndimage.binary_dilation(bright, structure=np.ones((1, 5, 5), bool))
    pair = clean[1:] & clean[:-1]
    centre = np.median(np.where(pair, d, np.nan), axis=0) if pair.any() else np.zeros(x.shape[1:])
    centre = np.nan_to_num(centre)
    pair &= np.abs(d - centre) < 4 * np.sqrt(2.0) * spread
    variance = 0.5 * (np.where(pair, d - centre, 0.0) ** 2).sum(axis=0) / np.maximum(pair.sum(axis=0), 1)
    mean = np.where(clean, x, 0.0).sum(axis=0) / np.maximum(clean.sum(axis=0), 1)
    usable = (pair.sum(axis=0) >= 3).ravel()
    return mean.ravel()[usable], variance.ravel()[usable]


@functools.lru_cache(maxsize=64)
def median_variance_factor(n_frames: int) -> float:
    """The median of ``pixel_statistics``' variance over pixels of pure unit-variance noise
    with ``n_frames`` frames: with few frames each pixel's variance has few degrees of
    freedom and its median lies below the mean (0.84 at 5 frames); the bins' medians are
    divided by it. Measured once per frame count on seeded Gaussian noise."""
    noise = np.random.default_rng(12345).normal(1000.0, 1.0, (n_frames, 128, 128))
    return float(np.median(pixel_statistics(noise)[1]))


def estimate_camera(
    frames_adu: np.ndarray, stated_offset_adu: float | None = None, emccd: bool = False, n_bins: int = 40
) -> CameraEstimate:
    """Gain (ADU per photon) and offset (ADU) from a (f, rows, cols) stack in ADU.

    Raises ValueError (one sentence) when the stack has fewer than ``MIN_FRAMES`` frames,
    or when its background is flat and no offset is stated."""
    frames = np.asarray(frames_adu, np.float64)
    if frames.ndim != 3 or len(frames) < MIN_FRAMES:
        raise ValueError(f"estimating the camera gain needs at least {MIN_FRAMES} frames")
    excess = 2.0 if emccd else 1.0
    mean, variance = pixel_statistics(frames)
    # the dimmest 80 % of pixels by mean: the brightest are most often on a structure
    order = np.argsort(mean)[: max(int(0.8 * len(mean)), n_bins * 5)]
    bins = np.array_split(order, n_bins)
    bin_mean = np.array([np.median(mean[b]) for b in bins])
    bin_var = np.array([np.median(variance[b]) for b in bins]) / median_variance_factor(len(frames))
    low, high = float(bin_mean[0]), float(bin_mean[-1])
    if not (np.all(np.isfinite(bin_var)) and np.ptp(bin_mean) > 0):
        raise ValueError("too few background pixels without spots to estimate the camera gain")
    slope, intercept = np.polyfit(bin_mean, bin_var, 1)
    residual = bin_var - (slope * bin_mean + intercept)
    slope_error = np.sqrt(np.sum(residual**2) / max(n_bins - 2, 1) / np.sum((bin_mean - bin_mean.mean()) ** 2))
    if slope > 0 and slope_error < 0.1 * slope:
        gain = slope / excess
        return CameraEstimate(float(gain), float(-intercept / slope), "photon-transfer line", len(frames), (low, high))
    if stated_offset_adu is None:
        raise ValueError(
            "the background of this movie is too flat to estimate both the camera gain and the "
            "offset; give the offset (--offset) and the gain can be estimated"
        )
    level = np.median(mean[order]) - stated_offset_adu
    if level <= 0:
        raise ValueError(
            f"the stated camera offset ({stated_offset_adu:g} ADU) is not below the background "
            f"({np.median(mean[order]):.1f} ADU); check the offset"
        )
    gain = float(np.median(variance[order]) / median_variance_factor(len(frames)) / level / excess)
    return CameraEstimate(gain, float(stated_offset_adu), "one level, stated offset", len(frames), (low, high))


def gain_warning(stated_gain: float, estimate: CameraEstimate, factor: float = 2.0) -> str | None:
    """One sentence when the stated gain is off from the estimate by more than ``factor``."""
    ratio = stated_gain / estimate.gain_adu_per_photon
    if 1 / factor <= ratio <= factor:
        return None
    return (
        f"The stated camera gain ({stated_gain:g} ADU/photon) is {max(ratio, 1 / ratio):.1f}x "
        f"{'above' if ratio > 1 else 'below'} the gain estimated from the movie "
        f"({estimate.gain_adu_per_photon:.3g} ADU/photon, offset {estimate.offset_adu:.1f} ADU); check it "
        "or use the estimate (--camera auto)."
    )
