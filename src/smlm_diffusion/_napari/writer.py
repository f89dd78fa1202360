"""Writers for Points layers: ThunderSTORM CSV and Picasso HDF5 + YAML."""

from __future__ import annotations

from ..io import write_localizations_csv, write_picasso_hdf5
from .layers import localizations_from_points

DEFAULT_PIXEL_SIZE_NM = 108.0


def _localizations(data, meta: dict):
    md = meta.get("metadata") or {}
    px = float(md.get("pixel_size_nm") or DEFAULT_PIXEL_SIZE_NM)
    scale = meta.get("scale") or (1.0, 1.0)
    translate = meta.get("translate") or (0.0, 0.0)
    return localizations_from_points(data, meta.get("features"), px, scale, translate), px


def write_points_csv(path: str, data, meta: dict) -> list[str]:
    locs, _ = _localizations(data, meta)
    return [str(write_localizations_csv(path, locs))]


def write_points_picasso(path: str, data, meta: dict) -> list[str]:
    """Picasso needs the frame size and count; a Points layer only knows its points, so
    they are the smallest that hold every localization."""
    locs, px = _localizations(data, meta)
    if len(locs):
        n_frames, height, width = int(locs.frame.max()), int(locs.y_nm.max() / px) + 1, int(locs.x_nm.max() / px) + 1
    else:
        n_frames, height, width = 1, 1, 1
    return [str(write_picasso_hdf5(path, locs, px, height, width, n_frames))]
