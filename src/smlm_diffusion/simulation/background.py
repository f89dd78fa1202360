"""Spatially varying background: real frames are rarely flat.

``background_map`` draws one expected-background image in photons per camera pixel
whose mean over the frame is ``level_photons``: a flat field, a linear gradient, a
smooth random field at several length scales, out-of-focus blobs on a dim floor, or a
cell-shaped patch (bright inside, near-dark outside, soft edge), or a random mixture of
these. ``hot_pixel_map`` adds a few stationary hot pixels. Both are fixed over a movie
(a map is drawn once per seed), as an out-of-focus cell or an illumination profile is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND_STRUCTURES = ("flat", "gradient", "field", "blobs", "cell", "mixed")


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return rows + 0.5, cols + 0.5


def _gradient(shape, rng) -> np.ndarray:
    rows, cols = _grid(shape)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * cols + np.sin(angle) * rows
    t = (t - t.min()) / max(np.ptp(t), 1e-9)  # 0 .. 1 across the frame
    low = rng.uniform(0.05, 0.6)  # dim side relative to the bright side
    return low + (1 - low) * t


def _field(shape, rng) -> np.ndarray:
    """Log-normal smooth random field: filtered white noise at 2-3 length scales (3-40 px,
    at most half the frame side), unit std per scale before weighting."""
    out = np.zeros(shape)
    longest = max(3.0, min(40.0, 0.5 * min(shape)))
    for scale_px in rng.uniform(3.0, longest, size=rng.integers(2, 4)):
        noise = ndimage.gaussian_filter(rng.normal(size=shape), scale_px, mode="wrap")
        noise -= noise.mean()
        if noise.std() > 1e-9:
            out += noise / noise.std() * rng.uniform(0.2, 0.6)
    return np.exp(out)


def _blobs(shape, rng) -> np.ndarray:
    """Out-of-focus blobs (Gaussian, sigma 6-25 px) on a dim floor."""
    rows, cols = _grid(shape)
    out = np.full(shape, rng.uniform(0.05, 0.5))
    for _ in range(rng.integers(1, 5)):
        sigma = rng.uniform(6.0, 25.0)
        r0 = rng.uniform(-0.2, 1.2) * shape[0]
        c0 = rng.uniform(-0.2, 1.2) * shape[1]
        out += rng.uniform(0.3, 2.0) * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * sigma**2))
    return out


def _cell(shape, rng) -> np.ndarray:
    """A cell-shaped patch: a star-shaped region (radius with low angular harmonics),
    a soft edge of 0.5-4 px, mildly textured inside, 2-20 % of the inside level outside."""
    rows, cols = _grid(shape)
    size = min(shape)
    r0 = rng.uniform(0.2, 0.8) * shape[0]
    c0 = rng.uniform(0.2, 0.8) * shape[1]
    radius = rng.uniform(0.25, 0.8) * size
    angle = np.arctan2(rows - r0, cols - c0)
    boundary = np.full(shape, radius)
    for harmonic in range(2, 6):
        boundary += radius * rng.uniform(0, 0.12) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    distance = np.hypot(rows - r0, cols - c0) - boundary
    inside = 1.0 / (1.0 + np.exp(distance / rng.uniform(0.5, 4.0)))
    texture = _field(shape, rng) ** 0.5
    outside = rng.uniform(0.02, 0.2)
    return outside + (1 - outside) * inside * texture


_MAKERS = {"gradient": _gradient, "field": _field, "blobs": _blobs, "cell": _cell}


def background_map(kind: str, shape: tuple[int, int], level_photons: float, rng: np.random.Generator) -> np.ndarray:
    """(rows, cols) expected background in photons per pixel, mean ``level_photons``.

    ``kind``: one of ``BACKGROUND_STRUCTURES``; "mixed" multiplies a random field into a
    random other structure (an out-of-focus cell under uneven illumination)."""
    if kind not in BACKGROUND_STRUCTURES:
        raise ValueError(f"the background structure must be one of {', '.join(BACKGROUND_STRUCTURES)}")
    if kind == "flat" or level_photons <= 0:
        return np.full(shape, float(max(level_photons, 0.0)))
    if kind == "mixed":
        base = _MAKERS[("gradient", "blobs", "cell")[rng.integers(3)]](shape, rng)
        pattern = base * _field(shape, rng) ** 0.5
    else:
        pattern = _MAKERS[kind](shape, rng)
    return pattern * (level_photons / pattern.mean())


def hot_pixel_map(
    shape: tuple[int, int], count: int, rng: np.random.Generator, photons: tuple[float, float] = (50.0, 3000.0)
) -> np.ndarray:
    """``count`` hot pixels (log-uniform excess photons per frame), zero elsewhere."""
    out = np.zeros(shape)
    if count > 0:
        flat = rng.choice(shape[0] * shape[1], size=min(count, shape[0] * shape[1]), replace=False)
        out.flat[flat] = np.exp(rng.uniform(np.log(photons[0]), np.log(photons[1]), size=len(flat)))
    return out
