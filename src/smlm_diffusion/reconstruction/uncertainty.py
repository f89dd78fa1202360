"""Per-localization uncertainty from posterior samples.

Every posterior KDE sample is localized like the mean; each chain's localizations are
matched one-to-one (Hungarian, within ``match_radius_px``) to the mean's. A localization's
``posterior_spread_xy`` is the per-axis standard deviation of its matched sample
positions, ``sqrt((var_x + var_y) / 2)``, and its ``probability`` is the fraction of
samples in which it was found.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..analysis.metrics import match_points


def sample_spread(
    mean_xy: np.ndarray, sample_xys: list[np.ndarray], match_radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(per-axis std, detection probability) for each row of ``mean_xy`` (same units as
    the inputs). Rows found in fewer than 2 samples get ``match_radius / 2`` as std."""
    n = len(mean_xy)
    found = [[] for _ in range(n)]
    for xy in sample_xys:
        mean_index, sample_index, _ = match_points(mean_xy, xy, match_radius)
        for i, j in zip(mean_index, sample_index):
            found[i].append(xy[j])
    std = np.full(n, match_radius / 2.0)
    probability = np.zeros(n)
    for i, points in enumerate(found):
        probability[i] = len(points) / max(len(sample_xys), 1)
        if len(points) >= 2:
            p = np.asarray(points)
            std[i] = float(np.sqrt(p.var(axis=0, ddof=1).mean()))
    return std, probability


def aperture_photons(
    photons: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    half_width_px: int = 2,
    background: np.ndarray | float | None = None,
    frame_index: np.ndarray | None = None,
) -> np.ndarray:
    """Background-subtracted photons in a (2h+1)^2 window around each position (camera
    px, corner origin). ``photons``: one frame, or a stack (F, H, W) with ``frame_index``
    naming each position's frame. ``background``: a per-pixel map (photons, e.g. the
    models' local estimate) or a level; None takes the frame median. A simple intensity
    estimate (captures > 95 % of a PSF with sigma <= 1.2 px; neighbours inside the window add)."""
    frames = np.asarray(photons, np.float64)
    single = frames.ndim == 2
    frames = frames[None] if single else frames
    if background is None:
        background = np.median(frames, axis=(1, 2))[:, None, None]
    background = np.asarray(background, np.float64)
    residual = frames - np.broadcast_to(
        background[None] if single and background.ndim == 2 else background, frames.shape
    )
    # window sums of the residual for every pixel at once (zero outside the frame)
    window = 2 * half_width_px + 1
    sums = ndimage.uniform_filter(residual, (1, window, window), mode="constant") * window**2
    rows = np.clip(np.floor(np.asarray(y_px, np.float64)).astype(int), 0, frames.shape[1] - 1)
    cols = np.clip(np.floor(np.asarray(x_px, np.float64)).astype(int), 0, frames.shape[2] - 1)
    index = np.zeros(len(rows), int) if frame_index is None else np.asarray(frame_index, int)
    return sums[index, rows, cols]
