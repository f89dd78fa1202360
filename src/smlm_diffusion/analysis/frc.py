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


@dataclass
class FrcResult:
    q_per_nm: np.ndarray        # ring frequencies
    frc: np.ndarray             # smoothed curve, averaged over the splits
    resolution_nm: float        # 1 / q at the 1/7 crossing (nan if it never crosses)
    repeats: int
    split: str
    render_nm: float

    def record(self) -> dict:
        return {"resolution_nm": None if not np.isfinite(self.resolution_nm) else round(float(self.resolution_nm), 1),
                "threshold": "1/7", "split": self.split, "repeats": self.repeats, "render_nm": self.render_nm}


def split_halves(locs: Localizations, split: str, rng: np.random.Generator, groups: np.ndarray | None = None,
                 block_frames: int = 500) -> np.ndarray:
    """Bool mask of the first half: by linked group (or localization) at random, or by
    alternating blocks of ``block_frames`` frames."""
    if split == "frames":
        return ((locs.frame - 1) // block_frames) % 2 == 0
    if split != "random":
        raise SmlmInputError(f"the FRC split must be 'random' or 'frames', not {split!r}")
    keys = groups if groups is not None else np.arange(len(locs))
    _, inverse = np.unique(keys, return_inverse=True)
    return rng.random(inverse.max() + 1 if len(inverse) else 0)[inverse] < 0.5


def frc_resolution(locs: Localizations, render_nm: float = 5.0, split: str = "random", repeats: int = 5,
                   groups: np.ndarray | None = None, block_frames: int = 500, seed: int = 0,
                   smoothing_rings: int = 5, max_pixels: int = 4096) -> FrcResult:
    """FRC curve and resolution (module doc)."""
    check_table(locs)
    if len(locs) < 100:
        raise SmlmInputError(f"an FRC needs at least 100 localizations; this table has {len(locs)}")
    x0, y0 = locs.x_nm.min(), locs.y_nm.min()
    side = int(np.ceil(max(locs.x_nm.max() - x0, locs.y_nm.max() - y0) / render_nm)) + 1
    if side > max_pixels:
        raise SmlmInputError(f"an FRC image of {side} x {side} pixels of {render_nm:g} nm is too large; "
                             "give a larger render pixel (--render-nm)")
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
    return FrcResult(q, frc, _crossing(q, frc), repeats if split == "random" else 1, split, render_nm)


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
