"""Rendering localizations to a super-resolved image (Gaussian-splat histogram)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..localizations import Localizations


def render_localizations(locs: Localizations, shape_px: tuple[int, int], pixel_size_nm: float,
                         upsampling: int = 4, blur_upsampled_px: float = 1.0) -> np.ndarray:
    """Histogram of all localizations on a grid ``upsampling`` times finer than the
    camera (``shape_px`` = camera rows, cols), blurred by ``blur_upsampled_px``."""
    rows, cols = shape_px[0] * upsampling, shape_px[1] * upsampling
    scale = upsampling / pixel_size_nm
    image, _, _ = np.histogram2d(locs.y_nm * scale, locs.x_nm * scale, bins=(rows, cols),
                                 range=((0, rows), (0, cols)))
    if blur_upsampled_px > 0:
        image = ndimage.gaussian_filter(image, blur_upsampled_px)
    return image.astype(np.float32)
