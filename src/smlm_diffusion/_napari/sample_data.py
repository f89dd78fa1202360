"""File > Open Sample: a simulated filament SMLM movie with its ground truth."""

from __future__ import annotations

import numpy as np

from ..simulation import filament_movie_config, simulate_stack


def simulated_filaments():
    """[(frames in ADU, image kwargs, 'image'), (ground truth points, kwargs, 'points')]."""
    cfg = filament_movie_config(n_frames=100, seed=7)
    stack = simulate_stack(cfg, quantize=True)
    px = cfg.pixel_size_nm
    meta = {"pixel_size_nm": px, "offset_adu": cfg.offset_adu, "gain_adu_per_photon": cfg.gain_adu_per_photon}
    truth = stack.truth
    # napari world coordinates are camera pixels; a pixel's centre sits at its integer index,
    # so the position (c + 0.5) * px maps to x / px - 0.5.
    points = np.stack([truth.frame - 1, truth.y_nm / px - 0.5, truth.x_nm / px - 0.5], axis=1)
    return [
        (
            stack.adu,
            {
                "name": "SMLM filaments (simulated)",
                "metadata": meta,
                "contrast_limits": [float(cfg.offset_adu), float(np.percentile(stack.adu, 99.9))],
            },
            "image",
        ),
        (
            points,
            {
                "name": "ground truth",
                "size": 0.6,
                "face_color": "transparent",
                "border_color": "cyan",
                "features": {"intensity_photons": truth.intensity_photons},
                "visible": False,
            },
            "points",
        ),
    ]
