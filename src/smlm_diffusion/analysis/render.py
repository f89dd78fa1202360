"""Rendering localizations to a super-resolved image (Gaussian-splat histogram)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..localizations import Localizations


def render_localizations(
    locs: Localizations,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    upsampling: int = 4,
    blur_upsampled_px: float = 1.0,
) -> np.ndarray:
    """Histogram of all localizations on a grid ``upsampling`` times finer than the
    camera (``shape_px`` = camera rows, cols), blurred by ``blur_upsampled_px``."""
    rows, cols = shape_px[0] * upsampling, shape_px[1] * upsampling
    scale = upsampling / pixel_size_nm
    image, _, _ = np.histogram2d(locs.y_nm * scale, locs.x_nm * scale, bins=(rows, cols), range=((0, rows), (0, cols)))
    if blur_upsampled_px > 0:
        image = ndimage.gaussian_filter(image, blur_upsampled_px)
    return image.astype(np.float32)


#: a localization is drawn over +-TRUNCATE_SIGMAS of its kernel
TRUNCATE_SIGMAS = 3.0


def precision_bandwidth_nm(x_nm: np.ndarray, y_nm: np.ndarray, sigma_nm: np.ndarray) -> np.ndarray:
    """Each localization's kernel width: its precision times ``n^(-1/5)``, ``n`` the number
    of localizations (itself included) within two of its precisions. One localization alone
    is drawn as wide as its precision (Picasso's "individual localization precision"); n
    repeated localizations of one site form a kernel density estimate of their scatter with
    Silverman's bandwidth scaling, so the site is drawn as wide as its localizations
    scatter, not sqrt(2) wider."""
    from scipy.spatial import cKDTree

    sigma = np.asarray(sigma_nm, np.float64)
    if len(sigma) == 0:
        return sigma
    counts = cKDTree(np.c_[x_nm, y_nm]).query_ball_point(np.c_[x_nm, y_nm], r=2.0 * sigma, return_length=True)
    return sigma * np.maximum(np.asarray(counts, np.float64), 1.0) ** -0.2


def render_precision(
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    sigma_nm: np.ndarray,
    shape: tuple[int, int],
    render_pixel_nm: float,
    origin_nm: tuple[float, float] = (0.0, 0.0),
    adaptive: bool = True,
    max_sigma_nm: float = np.inf,
) -> np.ndarray:
    """Super-resolution image (rows, cols) = ``shape`` of pixels of ``render_pixel_nm``, its
    top-left corner at ``origin_nm`` = (y, x): each localization a unit-mass Gaussian
    integrated over the pixels (erf), as wide as ``sigma_nm`` (its precision), or with
    ``adaptive`` as wide as ``precision_bandwidth_nm``. Rows with a missing precision, or
    one above ``max_sigma_nm``, are left out. The image sums to the number of localizations
    drawn inside it."""
    from scipy.special import erf

    x, y, sigma = (np.asarray(v, np.float64) for v in (x_nm, y_nm, sigma_nm))
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(sigma) & (sigma > 0) & (sigma <= max_sigma_nm)
    x, y, sigma = x[good], y[good], sigma[good]
    if adaptive:
        sigma = precision_bandwidth_nm(x, y, sigma)
    rows, cols = shape
    image = np.zeros(rows * cols)
    # positions and widths in render pixels; kernels grouped by their window size
    u, v, s = (x - origin_nm[1]) / render_pixel_nm, (y - origin_nm[0]) / render_pixel_nm, sigma / render_pixel_nm
    s = np.maximum(s, 1e-3)
    half = np.ceil(TRUNCATE_SIGMAS * s).astype(int)
    for h in np.unique(half):
        sel = np.flatnonzero(half == h)
        block = max(1, (1 << 22) // (2 * h + 1) ** 2)  # kernels per pass: bounded memory
        for start in range(0, len(sel), block):
            k = sel[start : start + block]
            c0 = np.floor(u[k]).astype(int) - h
            r0 = np.floor(v[k]).astype(int) - h
            offsets = np.arange(2 * h + 2)
            ex = np.diff(0.5 * erf((c0[:, None] + offsets - u[k, None]) / (np.sqrt(2) * s[k, None])), axis=1)
            ey = np.diff(0.5 * erf((r0[:, None] + offsets - v[k, None]) / (np.sqrt(2) * s[k, None])), axis=1)
            rr = r0[:, None] + offsets[None, :-1]
            cc = c0[:, None] + offsets[None, :-1]
            inside = ((rr >= 0) & (rr < rows))[:, :, None] & ((cc >= 0) & (cc < cols))[:, None, :]
            weights = ey[:, :, None] * ex[:, None, :]
            index = rr[:, :, None] * cols + cc[:, None, :]
            image += np.bincount(index[inside], weights[inside], minlength=rows * cols)
    return image.reshape(rows, cols).astype(np.float32)
