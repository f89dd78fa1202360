"""Fourier ring correlation (FRC) resolution of a localization table (Nieuwenhuizen et
al. 2013, Nat. Methods 10, 557; Banterle et al. 2013).

The localizations are split into two halves, each rendered as a histogram with
``render_nm`` pixels and apodised by a Tukey window, and

    FRC(q) = Re sum_ring F1 F2* / sqrt(sum_ring |F1|^2 sum_ring |F2|^2)

over rings of spatial frequency q (one ring per Fourier pixel). The curve is averaged over
``repeats`` random splits (the repeat average of Nieuwenhuizen et al.) and smoothed over
a few rings; the resolution is 1 / q at the first crossing of the 1/7 threshold.
Repeated localizations of one molecule (blinks over several frames) correlate between
halves and make the resolution look finer than it is: groups of linked localizations
(``groups``, ``analysis/linking.py``) are therefore kept in one half ("random" split),
which removes that spurious correlation at its source; the split can also be by blocks
of frames ("frames"). Nieuwenhuizen's analytic correction of the spurious term (fitting
the number of localizations per molecule Q) is not applied.

The render pixel limits what can be measured: the curve ends at the Nyquist frequency
1 / (2 pixel). ``measured_frc`` starts at a pixel that fits the whole field into one image
and, where the curve has not fallen below 1/7 by then (or crosses within 4 pixels), takes
a 4x finer pixel on the densest square of the field that fits the image, down to
``MIN_PIXEL_NM``; where even that does not resolve it, the result is a bound ("finer than
2 pixels") with the sentence that says how to measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.signal.windows import tukey

from ..errors import SmlmInputError
from ..localizations import Localizations
from .drift import check_table

THRESHOLD = 1.0 / 7.0
#: largest FRC image side (pixels) that ``measured_frc`` uses
FRC_MAX_SIDE = 2048
#: finest render pixel ``measured_frc`` tries (nm)
MIN_PIXEL_NM = 0.5


@dataclass
class FrcResult:
    q_per_nm: np.ndarray  # ring frequencies
    frc: np.ndarray  # smoothed curve, averaged over the splits
    resolution_nm: float  # 1 / q at the 1/7 crossing (nan if it never crosses)
    repeats: int
    split: str
    render_nm: float
    region_nm: tuple[float, float, float, float] | None = None  # (x0, x1, y0, y1) measured, None: the whole table
    localizations: int = 0

    @property
    def finer_than_nm(self) -> float:
        """Without a crossing: the Nyquist limit of the pixel, a bound on the resolution."""
        return 2.0 * self.render_nm if not np.isfinite(self.resolution_nm) else float("nan")

    def sentence(self) -> str:
        """One line for the user."""
        where = (
            ""
            if self.region_nm is None
            else (f" on the densest {self.region_nm[1] - self.region_nm[0]:.0f} nm square of the field")
        )
        if np.isfinite(self.resolution_nm):
            return f"FRC resolution {self.resolution_nm:.1f} nm ({self.render_nm:.3g} nm pixel{where})"
        return (
            f"FRC resolution finer than {self.finer_than_nm:.3g} nm: the curve stays above 1/7 up to the "
            f"{self.render_nm:.3g} nm pixel's Nyquist limit{where}; measure it on a smaller region with a finer "
            f"pixel (smlm-diffusion frc LOCS.csv --pixel-size-nm {self.render_nm / 4:.2g} on a crop)"
        )

    def record(self) -> dict:
        return {
            "resolution_nm": None if not np.isfinite(self.resolution_nm) else round(float(self.resolution_nm), 1),
            "finer_than_nm": None if np.isfinite(self.resolution_nm) else round(self.finer_than_nm, 2),
            "threshold": "1/7",
            "split": self.split,
            "repeats": self.repeats,
            "render_nm": self.render_nm,
            "region_nm": None if self.region_nm is None else [round(float(v), 1) for v in self.region_nm],
            "localizations": self.localizations,
            "sentence": self.sentence(),
        }


def split_halves(
    locs: Localizations, split: str, rng: np.random.Generator, groups: np.ndarray | None = None, block_frames: int = 500
) -> np.ndarray:
    """Bool mask of the first half: by linked group (or localization) at random, or by
    alternating blocks of ``block_frames`` frames."""
    if split == "frames":
        return ((locs.frame - 1) // block_frames) % 2 == 0
    if split != "random":
        raise SmlmInputError(f"the FRC split must be 'random' or 'frames', not {split!r}")
    keys = groups if groups is not None else np.arange(len(locs))
    _, inverse = np.unique(keys, return_inverse=True)
    return rng.random(inverse.max() + 1 if len(inverse) else 0)[inverse] < 0.5


def frc_resolution(
    locs: Localizations,
    render_nm: float = 5.0,
    split: str = "random",
    repeats: int = 5,
    groups: np.ndarray | None = None,
    block_frames: int = 500,
    seed: int = 0,
    smoothing_rings: int = 5,
    max_pixels: int = 4096,
) -> FrcResult:
    """FRC curve and resolution (module doc)."""
    check_table(locs)
    if len(locs) < 100:
        raise SmlmInputError(f"an FRC needs at least 100 localizations; this table has {len(locs)}")
    x0, y0 = locs.x_nm.min(), locs.y_nm.min()
    extent = max(locs.x_nm.max() - x0, locs.y_nm.max() - y0)
    side = int(np.ceil(extent / render_nm)) + 1
    if side > max_pixels:
        raise SmlmInputError(
            f"an FRC image of {side} x {side} pixels of {render_nm:g} nm is too large; raise the FRC pixel to at "
            f"least {np.ceil(extent / (max_pixels - 1)):g} nm"
        )
    window = np.outer(tukey(side, 0.25), tukey(side, 0.25))
    rows = ((locs.y_nm - y0) / render_nm).astype(int)
    cols = ((locs.x_nm - x0) / render_nm).astype(int)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(side) * side, np.fft.rfftfreq(side) * side, indexing="ij"))
    ring = np.round(radius).astype(int)
    n_rings = side // 2
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(repeats if split == "random" else 1):
        first = split_halves(locs, split, rng, groups, block_frames)
        spectra = []
        for half in (first, ~first):
            image = np.zeros((side, side))
            np.add.at(image, (rows[half], cols[half]), 1.0)
            spectra.append(np.fft.rfft2(image * window))
        cross = np.bincount(ring.ravel(), (spectra[0] * spectra[1].conj()).real.ravel(), n_rings + 1)
        power = [np.bincount(ring.ravel(), (np.abs(s) ** 2).ravel(), n_rings + 1) for s in spectra]
        with np.errstate(invalid="ignore", divide="ignore"):
            curves.append(cross / np.sqrt(power[0] * power[1]))
    frc = np.nanmean(curves, axis=0)[:n_rings]
    frc = ndimage.uniform_filter1d(np.nan_to_num(frc), smoothing_rings, mode="nearest")
    q = np.arange(n_rings) / (side * render_nm)
    return FrcResult(
        q, frc, _crossing(q, frc), repeats if split == "random" else 1, split, render_nm, localizations=len(locs)
    )


def measured_frc(
    locs: Localizations,
    groups: np.ndarray | None = None,
    split: str = "random",
    repeats: int = 5,
    seed: int = 0,
    max_side: int = FRC_MAX_SIDE,
    start_pixel_nm: float = 5.0,
) -> FrcResult:
    """The FRC at a pixel fine enough for the data, or a bound (module doc)."""
    check_table(locs)
    extent = max(np.ptp(locs.x_nm), np.ptp(locs.y_nm)) if len(locs) else 0.0
    pixel = max(start_pixel_nm, extent / (max_side - 2))  # ceil(extent / pixel) + 1 <= max_side
    result = frc_resolution(
        locs, render_nm=pixel, split=split, repeats=repeats, groups=groups, seed=seed, max_pixels=max_side
    )
    while (not np.isfinite(result.resolution_nm) or result.resolution_nm < 4 * pixel) and pixel > MIN_PIXEL_NM:
        pixel = max(MIN_PIXEL_NM, pixel / 4)
        inside, region = _densest_square(locs, (max_side - 2) * pixel)
        if inside.sum() < 100:
            break
        result = frc_resolution(
            locs.select(inside),
            render_nm=pixel,
            split=split,
            repeats=repeats,
            groups=None if groups is None else groups[inside],
            seed=seed,
            max_pixels=max_side,
        )
        result.region_nm = None if inside.all() else region
    return result


def _densest_square(locs: Localizations, side_nm: float) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The rows inside the square of ``side_nm`` that holds the most localizations (on a
    grid of quarter squares) and the square (x0, x1, y0, y1)."""
    step = side_nm / 4
    x0, y0 = locs.x_nm.min(), locs.y_nm.min()
    cols = ((locs.x_nm - x0) // step).astype(int)
    rows = ((locs.y_nm - y0) // step).astype(int)
    counts = np.zeros((rows.max() + 4, cols.max() + 4))
    np.add.at(counts, (rows, cols), 1.0)
    windows = ndimage.uniform_filter(counts, 4, mode="constant", origin=(-2, -2))  # [r, c]: squares r..r+3, c..c+3
    r, c = np.unravel_index(np.argmax(windows), windows.shape)
    region = (x0 + c * step, x0 + c * step + side_nm, y0 + r * step, y0 + r * step + side_nm)
    inside = (locs.x_nm >= region[0]) & (locs.x_nm < region[1]) & (locs.y_nm >= region[2]) & (locs.y_nm < region[3])
    return inside, region


def _crossing(q: np.ndarray, frc: np.ndarray) -> float:
    """1 / q where the curve first falls below 1/7 (after its first rings), interpolated."""
    start = 2
    below = np.flatnonzero(frc[start:] < THRESHOLD)
    if len(below) == 0:
        return float("nan")
    k = start + below[0]
    if k == 0:
        return float("nan")
    q1, q2, f1, f2 = q[k - 1], q[k], frc[k - 1], frc[k]
    crossing = q1 + (f1 - THRESHOLD) * (q2 - q1) / (f1 - f2) if f1 != f2 else q2
    return float(1.0 / crossing) if crossing > 0 else float("nan")
