"""Per-pixel camera maps of an sCMOS sensor (Huang et al. 2013, Nat. Methods 10, 653):
each pixel has its own offset o_i (ADU), read variance v_i (ADU^2) and gain g_i (ADU per
photoelectron).

Calibration (``calibrate_maps``): from dark frames, o_i is the mean and v_i the variance
(ddof 1) of each pixel; g_i is given, or fitted per pixel from flat-field stacks at several
light levels as the slope of (variance - v_i) against (mean - o_i) through the origin
(photon transfer, pixel by pixel).

Use (``CameraMaps.photons``, ``CameraMaps.extra_variance``): the frame in photons is
(ADU - o_i) / g_i and pixel i's read variance in photons^2 is v_i / g_i^2. Huang's
likelihood treats (ADU - o_i) / g_i + v_i / g_i^2 as Poisson with mean mu_i + v_i / g_i^2.
The fits and the detection test use that model with one read variance r0 for every pixel;
adding v_i / g_i^2 - r0 to a pixel's data *and* to its background makes it exactly Huang's
per-pixel model, so the maps enter the likelihood, the detection test and its neighbours'
model without a per-pixel argument anywhere (r0 is the smallest read variance of the frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the planes of a maps file, in order
PLANES = ("offset_adu", "read_variance_adu2", "gain_adu_per_electron")
#: fewest dark frames for the maps
MIN_DARK_FRAMES = 20


@dataclass
class CameraMaps:
    offset_adu: np.ndarray  # (rows, cols)
    read_variance_adu2: np.ndarray  # (rows, cols)
    gain_adu_per_electron: np.ndarray  # (rows, cols)

    def __post_init__(self) -> None:
        shapes = {a.shape for a in (self.offset_adu, self.read_variance_adu2, self.gain_adu_per_electron)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError("the three camera maps must be images of one shape")
        if not np.all(np.isfinite(self.offset_adu)) or not np.all(np.isfinite(self.read_variance_adu2)):
            raise ValueError("the camera maps hold NaN or infinite values")
        if np.any(self.read_variance_adu2 < 0):
            raise ValueError("the camera maps' read variance (second plane) must be zero or positive")
        if not np.all(self.gain_adu_per_electron > 0):
            raise ValueError("the camera maps' gain (third plane) must be positive everywhere")

    @property
    def shape(self) -> tuple[int, int]:
        return self.offset_adu.shape

    def crop(self, region: tuple[int, int, int, int]) -> CameraMaps:
        r0, r1, c0, c1 = region
        return CameraMaps(*(plane[r0:r1, c0:c1] for plane in self.planes()))

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.offset_adu, self.read_variance_adu2, self.gain_adu_per_electron

    def photons(self, adu: np.ndarray) -> np.ndarray:
        """Frames (f, rows, cols) in ADU -> photons."""
        return (np.asarray(adu, np.float64) - self.offset_adu) / self.gain_adu_per_electron

    def read_variance_photons2(self) -> np.ndarray:
        return self.read_variance_adu2 / self.gain_adu_per_electron**2

    def extra_variance(self) -> tuple[np.ndarray, float]:
        """(v_i / g_i^2 - r0, r0): what each pixel adds to its data and background, and the
        one read variance (photons^2) the fits then use (module doc)."""
        variance = self.read_variance_photons2()
        r0 = float(variance.min())
        return variance - r0, r0

    def summary(self) -> dict:
        """Medians and the share of noisy pixels, for run.json."""
        variance = self.read_variance_photons2()
        median = float(np.median(variance))
        return {
            "shape": list(self.shape),
            "offset_adu_median": round(float(np.median(self.offset_adu)), 2),
            "read_noise_e_median": round(float(np.sqrt(median)), 3),
            "gain_adu_per_electron_median": round(float(np.median(self.gain_adu_per_electron)), 4),
            "noisy_pixels": int((variance > 4 * median + 1).sum()),
        }


def calibrate_maps(
    dark_adu: np.ndarray, gain_adu_per_electron: float | None = None, flats_adu: list[np.ndarray] | None = None
) -> CameraMaps:
    """Maps from dark frames (f, rows, cols), with one gain or flat stacks (module doc)."""
    dark = np.asarray(dark_adu, np.float64)
    if dark.ndim != 3 or len(dark) < MIN_DARK_FRAMES:
        raise ValueError(
            f"camera maps need at least {MIN_DARK_FRAMES} dark frames (frames x rows x cols); "
            f"got an array of shape {dark.shape}"
        )
    offset = dark.mean(axis=0)
    variance = dark.var(axis=0, ddof=1)
    if flats_adu:
        dm, dv = [], []
        for flat in flats_adu:
            flat = np.asarray(flat, np.float64)
            if flat.ndim != 3 or flat.shape[1:] != dark.shape[1:] or len(flat) < 2:
                raise ValueError("each flat stack must have at least 2 frames of the dark frames' size")
            dm.append(flat.mean(axis=0) - offset)
            dv.append(flat.var(axis=0, ddof=1) - variance)
        dm, dv = np.stack(dm), np.stack(dv)
        if not np.all(dm.max(axis=0) > 0):
            raise ValueError("the flat frames must be brighter than the dark frames in every pixel")
        gain = (dm * dv).sum(axis=0) / (dm**2).sum(axis=0)
        if not np.all(gain > 0):
            raise ValueError(
                f"{int((gain <= 0).sum())} pixels have no positive photon-transfer slope in the "
                "flat frames; use brighter flats or give --gain"
            )
    else:
        if gain_adu_per_electron is None or not gain_adu_per_electron > 0:
            raise ValueError("give the camera's gain (ADU per electron) or flat frames to measure it")
        gain = np.full(offset.shape, float(gain_adu_per_electron))
    return CameraMaps(offset, variance, gain)


def read_camera_maps(path: str | Path) -> CameraMaps:
    """A 3-plane maps TIFF (``calibrate-camera``'s output; PLANES order)."""
    import tifffile

    try:
        planes = np.asarray(tifffile.imread(str(path)), np.float64)
    except (OSError, ValueError) as exc:
        raise ValueError(f"the camera maps {path} cannot be read ({exc})") from None
    if planes.ndim != 3 or len(planes) != 3:
        raise ValueError(
            f"the camera maps {path} must hold 3 planes (offset ADU, read variance ADU^2, gain ADU per "
            f"electron); it has shape {planes.shape}"
        )
    return CameraMaps(*planes)
