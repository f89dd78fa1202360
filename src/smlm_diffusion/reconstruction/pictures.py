"""The pictures of a run, as honest as its table.

KDE support: phi's estimate and psi's samples put some mass on background texture below
the detection test (a cell edge, an out-of-focus blob): summed over a movie, that mass
outweighs the emitters of a sparse movie. With ``kde_support = "localizations"`` (the
default) each frame's KDE, posterior mean and posterior variance are kept only within
``KDE_SUPPORT_RADIUS_PX`` camera pixels of the frame's accepted localizations, weighted by
their detection probability: the method's estimate where the test says emitters are, zero
elsewhere. ``"everywhere"`` keeps the networks' raw output.

Precision render: the localizations, each a Gaussian as wide as its ``uncertainty_xy``
(which includes the posterior spread where psi sampled), scaled for repeated
localizations of one site (``analysis.render.precision_bandwidth_nm``), on a pixel the user
chooses (``render_pixel_nm``; 0: a tenth of a camera pixel, coarser where the image would
exceed ``MAX_RENDER_SIDE`` pixels a side).
"""

from __future__ import annotations

import numpy as np

from ..analysis.render import render_precision
from ..errors import SmlmInputError
from ..localizations import Localizations

#: KDE mass within this many camera pixels of an accepted localization is kept (the KDE
#: kernel is 0.75 camera px wide: 2 px hold 99 % of an emitter's mass)
KDE_SUPPORT_RADIUS_PX = 2.0
#: the precision render's largest side (pixels); finer render pixels are coarsened to it
MAX_RENDER_SIDE = 8192
KDE_SUPPORT_CHOICES = ("localizations", "everywhere")


def support_weights(
    x_px: np.ndarray,
    y_px: np.ndarray,
    probability: np.ndarray,
    shape: tuple[int, int],
    upsampling: int,
    radius_px: float = KDE_SUPPORT_RADIUS_PX,
) -> np.ndarray:
    """(shape) weights on a grid ``upsampling`` times finer than the camera: the largest
    ``probability`` of the localizations (camera px, corner origin) within ``radius_px``
    camera pixels of each grid pixel's centre, 0 where there is none."""
    weights = np.zeros(shape)
    x, y, p = (np.asarray(v, np.float64) for v in (x_px, y_px, probability))
    good = np.isfinite(x) & np.isfinite(y)
    if not good.any():
        return weights
    order = np.argsort(p[good], kind="stable")  # ascending: where discs overlap, the largest is written last
    x, y, p = x[good][order] * upsampling, y[good][order] * upsampling, p[good][order]
    reach = int(np.ceil(radius_px * upsampling))
    offsets = np.arange(-reach, reach + 1)
    rows = np.floor(y).astype(int)[:, None, None] + offsets[None, :, None]
    cols = np.floor(x).astype(int)[:, None, None] + offsets[None, None, :]
    near = (
        ((rows + 0.5 - y[:, None, None]) ** 2 + (cols + 0.5 - x[:, None, None]) ** 2 <= (radius_px * upsampling) ** 2)
        & (rows >= 0)
        & (rows < shape[0])
        & (cols >= 0)
        & (cols < shape[1])
    )
    index = np.broadcast_to(rows * shape[1] + cols, near.shape)[near]
    weights.flat[index] = np.broadcast_to(p[:, None, None], near.shape)[near]
    return weights


def restrict_kdes(
    mean: np.ndarray, variance: np.ndarray | None, locs: Localizations, pixel_size_nm: float, upsampling: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """One frame's KDE (and posterior variance) kept where its accepted localizations
    (region coordinates) are, weighted by their probability (module doc)."""
    xy = locs.xy_px(pixel_size_nm)
    probability = np.asarray(locs.extra.get("probability", np.ones(len(locs))), np.float64)
    weights = support_weights(xy[:, 0], xy[:, 1], np.nan_to_num(probability, nan=1.0), mean.shape, upsampling)
    return mean * weights, None if variance is None else variance * weights


def default_render_pixel_nm(pixel_size_nm: float, shape_px: tuple[int, int]) -> float:
    """A tenth of a camera pixel, coarser where the image would exceed MAX_RENDER_SIDE."""
    return max(pixel_size_nm / 10.0, pixel_size_nm * max(shape_px) / MAX_RENDER_SIDE)


def render_shape(shape_px: tuple[int, int], pixel_size_nm: float, render_pixel_nm: float) -> tuple[int, int]:
    """(rows, cols) of a precision render of a region of ``shape_px`` camera pixels."""
    return tuple(int(np.ceil(n * pixel_size_nm / render_pixel_nm)) for n in shape_px)  # type: ignore[return-value]


def render_pixel_for(shape_px: tuple[int, int], pixel_size_nm: float, render_pixel_nm: float = 0.0) -> float:
    """The precision render's pixel (nm) for a region of ``shape_px`` camera pixels:
    ``render_pixel_nm``, or 0 for the default; one sentence where it is too fine for the
    field (checked when a run starts, not after it)."""
    pixel = render_pixel_nm or default_render_pixel_nm(pixel_size_nm, shape_px)
    rows, cols = render_shape(shape_px, pixel_size_nm, pixel)
    if max(rows, cols) > MAX_RENDER_SIDE:
        raise SmlmInputError(
            f"a render pixel of {pixel:g} nm gives a {rows} x {cols} image; choose at least "
            f"{default_render_pixel_nm(pixel_size_nm, shape_px):.3g} nm for this field"
        )
    return pixel


def precision_render(
    locs: Localizations,
    shape_px: tuple[int, int],
    origin_px: tuple[int, int],
    pixel_size_nm: float,
    render_pixel_nm: float = 0.0,
) -> tuple[np.ndarray, float]:
    """(image, its pixel in nm): the localizations of a region (``shape_px`` camera pixels
    whose top-left is ``origin_px`` = (row, col) of the frame) drawn each as wide as its
    precision (module doc); those less precise than a camera pixel are left out."""
    pixel = render_pixel_for(shape_px, pixel_size_nm, render_pixel_nm)
    rows, cols = render_shape(shape_px, pixel_size_nm, pixel)
    origin = (origin_px[0] * pixel_size_nm, origin_px[1] * pixel_size_nm)
    # a localization less precise than a camera pixel (kept only with keep_flagged) is not drawn
    image = render_precision(
        locs.x_nm, locs.y_nm, locs.uncertainty_xy_nm, (rows, cols), pixel, origin, max_sigma_nm=pixel_size_nm
    )
    return image, pixel
