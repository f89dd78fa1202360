"""Emitter sites from the user's own data: a localization table (points, nm) or a
super-resolution image (a density, with its pixel size) as the structure prior.

When the structure fits in the field it keeps its coordinates (the simulated truth lies on
the given structure); a larger one is cropped to a field-sized window (the centre, or a
random one with ``augment``). ``augment`` also applies a random flip and 90-degree
rotation about the structure's centre, so training sees the structure in new poses.
Images give sites drawn with probability proportional to their pixel values, uniformly
within each pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StructurePrior:
    points_nm: np.ndarray | None = None  # (n, 2) x, y in nm
    image: np.ndarray | None = None  # (rows, cols) density >= 0
    image_pixel_nm: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if (self.points_nm is None) == (self.image is None):
            raise ValueError("a structure prior is either points or an image")
        if self.points_nm is not None:
            points = np.asarray(self.points_nm, np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 or not np.isfinite(points).all():
                raise ValueError("the structure has no finite x, y positions")
        else:
            image = np.asarray(self.image, np.float64)
            if image.ndim != 2 or not np.isfinite(image).all() or image.min() < 0 or image.sum() <= 0:
                raise ValueError("the structure image must be a 2D density with non-negative values and some signal")
            if not self.image_pixel_nm or self.image_pixel_nm <= 0:
                raise ValueError("the structure image has no pixel size; give it (nm)")

    @property
    def extent_nm(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the structure."""
        if self.points_nm is not None:
            p = np.asarray(self.points_nm)
            return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())
        rows, cols = np.shape(self.image)
        return 0.0, 0.0, cols * self.image_pixel_nm, rows * self.image_pixel_nm

    def sites_px(
        self,
        n_sites: int,
        height_px: int,
        width_px: int,
        pixel_size_nm: float,
        rng: np.random.Generator,
        augment: bool = False,
    ) -> np.ndarray:
        """(k, 2) site positions (x, y) in camera px inside the field: all the table's
        points in the field's window, or ``n_sites`` draws from the image."""
        points = self._points(n_sites, rng)
        field = np.array([width_px, height_px]) * pixel_size_nm
        if augment:
            centre = points.mean(axis=0)
            points = (points - centre) @ _pose(rng) + centre
        low, high = points.min(axis=0), points.max(axis=0)
        if np.all(low >= 0) and np.all(high < field):
            window0 = np.zeros(2)  # it fits where it is
        else:
            span = np.maximum(high - low - field, 0.0)
            window0 = low + (rng.random(2) * span if augment else 0.5 * span)
            if np.all(high - low < field):  # fits, but not at its coordinates: move it in
                window0 = low - (rng.random(2) if augment else 0.5) * (field - (high - low))
        inside = np.all((points >= window0) & (points < window0 + field), axis=1)
        return (points[inside] - window0) / pixel_size_nm

    def _points(self, n_sites: int, rng: np.random.Generator) -> np.ndarray:
        if self.points_nm is not None:
            return np.asarray(self.points_nm, np.float64)
        image = np.asarray(self.image, np.float64)
        flat = image.ravel() / image.sum()
        index = rng.choice(flat.size, size=n_sites, p=flat)
        rows, cols = np.divmod(index, image.shape[1])
        return (np.c_[cols, rows] + rng.random((n_sites, 2))) * self.image_pixel_nm


def _pose(rng: np.random.Generator) -> np.ndarray:
    """A random flip and 90-degree rotation (2x2, applied to row vectors)."""
    rotation = np.linalg.matrix_power(np.array([[0.0, 1.0], [-1.0, 0.0]]), int(rng.integers(4)))
    flip = np.diag([1.0, -1.0]) if rng.random() < 0.5 else np.eye(2)
    return flip @ rotation
