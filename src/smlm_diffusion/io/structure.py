"""Structure priors from files: a localization table (our/ThunderSTORM CSV, Picasso
HDF5 with its YAML) or a super-resolution image (TIFF with its pixel size), as a
``simulation.StructurePrior`` for ``simulate --structure-from`` and training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SmlmInputError
from ..simulation import StructurePrior
from .csv import read_localizations_csv
from .tiff import TiffStack


def read_structure(path: str | os.PathLike, pixel_size_nm: float | None = None) -> StructurePrior:
    """The structure in ``path``; ``pixel_size_nm`` for an image or a Picasso table whose
    file does not say it. One sentence for an unreadable, empty or position-less file."""
    path = Path(path)
    if not path.is_file():
        raise SmlmInputError(f"the structure file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        locs = read_localizations_csv(path)
        points = np.c_[locs.x_nm, locs.y_nm]
    elif suffix in (".hdf5", ".h5"):
        points = _picasso_points(path, pixel_size_nm)
    elif suffix in (".tif", ".tiff"):
        return _image(path, pixel_size_nm)
    else:
        raise SmlmInputError(
            f"{path.name}: a structure is a localization table (.csv, Picasso .hdf5) or an image (.tif)"
        )
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise SmlmInputError(f"the structure table {path.name} has no localizations with finite x, y positions")
    return StructurePrior(points_nm=points, source=path.name)


def _picasso_points(path: Path, pixel_size_nm: float | None) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            locs = handle["locs"][...]
    except (OSError, KeyError):
        raise SmlmInputError(f"{path.name} is not a Picasso localization file (no 'locs' table)") from None
    if "x" not in (locs.dtype.names or ()) or "y" not in locs.dtype.names:
        raise SmlmInputError(f"the Picasso table {path.name} has no x, y columns")
    pixel = pixel_size_nm or _yaml_pixel_size(path.with_suffix(".yaml"))
    if not pixel:
        raise SmlmInputError(
            f"the Picasso table {path.name} has no pixel size (no Pixelsize in its .yaml); give it "
            "with --structure-pixel-size"
        )
    # Picasso puts pixel centres at integers, we at k + 0.5
    return np.c_[locs["x"] + 0.5, locs["y"] + 0.5].astype(np.float64) * pixel


def _yaml_pixel_size(path: Path) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if line.strip().lower().startswith("pixelsize:"):
            try:
                return float(line.split(":", 1)[1])
            except ValueError:
                return None
    return None


def _image(path: Path, pixel_size_nm: float | None) -> StructurePrior:
    with TiffStack(path) as stack:
        image = np.asarray(stack.read(0, stack.n_frames), np.float64).sum(axis=0)
        pixel = pixel_size_nm or stack.metadata.pixel_size_nm
    if not pixel:
        raise SmlmInputError(
            f"the structure image {path.name} has no pixel size in its metadata; give it with --structure-pixel-size"
        )
    image = np.clip(np.nan_to_num(image), 0, None)
    if image.sum() <= 0:
        raise SmlmInputError(f"the structure image {path.name} is empty (no positive pixels)")
    return StructurePrior(image=image, image_pixel_nm=float(pixel), source=path.name)
