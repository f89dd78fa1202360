"""Raw binary movies with a text header beside them, as labs record them:

- Picasso ``movie.raw`` + ``movie.yaml`` (Picasso's own acquisition and its ``toraw``
  export): keys ``Width``, ``Height``, ``Frames``, ``Data Type`` (e.g. ``uint16``) and
  ``Byte Order`` (``<`` or ``>``); a pixel size, offset or gain among its keys (Picasso
  ``Pixelsize`` in nm, ``Camera`` settings, or our own keys) is read where present;
- ``movie.dax`` + ``movie.inf`` (the Zhuang lab's STORM-control / storm-analysis):
  ``frame dimensions = W x H``, ``number of frames = N`` and ``data type = 16 bit
  integers (binary, big endian|little endian)``.

Both are read lazily through a memory map, with the interface of ``TiffStack``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import SmlmInputError
from .tiff import FrameIndexing, StackMetadata

RAW_SUFFIXES = (".raw", ".dax")


class RawStack(FrameIndexing):
    """A memory-mapped raw movie (module doc); ``read``, indexing and ``metadata`` as
    ``TiffStack``'s."""

    is_memory_mapped = True

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise SmlmInputError(f"File not found: {self.path}; check the path.")
        if self.path.suffix.lower() == ".dax":
            rows, cols, frames, dtype, self.metadata = _read_inf(self.path.with_suffix(".inf"))
        else:
            rows, cols, frames, dtype, self.metadata = _read_yaml(self.path.with_suffix(".yaml"))
        size = self.path.stat().st_size
        expected = rows * cols * frames * dtype.itemsize
        if size < expected:
            raise SmlmInputError(
                f"{self.name} holds {size} bytes, fewer than its header's {frames} frames of "
                f"{rows}x{cols} {dtype.name} ({expected} bytes): it is truncated"
            )
        self.dtype = dtype
        self.shape = (frames, rows, cols)
        self._memmap = np.memmap(self.path, dtype=dtype, mode="r", shape=self.shape)

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        data = np.array(self._memmap[start:stop]).astype(self.dtype.newbyteorder("="), copy=False)
        return self._checked_finite(data, start)

    def close(self) -> None:
        self._memmap = None


def _header_missing(path: Path, kind: str) -> SmlmInputError:
    return SmlmInputError(f"{path.name} is missing: a raw movie needs its {kind} header beside it (same name)")


def _read_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise _header_missing(path, "Picasso .yaml")
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise SmlmInputError(f"{path.name} is not readable YAML ({exc})") from None
    info = {k: v for d in documents for k, v in d.items()}
    try:
        rows, cols, frames = int(info["Height"]), int(info["Width"]), int(info["Frames"])
        dtype = np.dtype(str(info.get("Data Type", "uint16"))).newbyteorder(str(info.get("Byte Order", "<")))
    except (KeyError, TypeError, ValueError) as exc:
        raise SmlmInputError(f"{path.name} lacks the movie's Width, Height, Frames or Data Type ({exc})") from None
    meta = StackMetadata(extra={"header": path.name})
    for key in ("Pixelsize", "Camera.Pixelsize", "pixel_size_nm"):
        if _positive(info.get(key)):
            meta.pixel_size_nm = float(info[key])
    camera = info.get("Camera") if isinstance(info.get("Camera"), dict) else {}
    for source in (info, camera):
        if _positive(source.get("Baseline")):
            meta.offset_adu = float(source["Baseline"])
        if _positive(source.get("offset_adu")):
            meta.offset_adu = float(source["offset_adu"])
        if _positive(source.get("Sensitivity")):  # Picasso: electrons per ADU
            meta.gain_adu_per_photon = 1.0 / float(source["Sensitivity"])
        if _positive(source.get("Sensitivity")) and _positive(source.get("Gain")):  # an EMCCD's EM gain
            meta.gain_adu_per_photon = float(source["Gain"]) / float(source["Sensitivity"])
        if _positive(source.get("gain_adu_per_photon")):
            meta.gain_adu_per_photon = float(source["gain_adu_per_photon"])
    return rows, cols, frames, dtype, meta


def _read_inf(path: Path):
    if not path.is_file():
        raise _header_missing(path, ".inf")
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            info[key.strip().lower()] = value.strip()
    match = re.match(r"(\d+)\s*x\s*(\d+)", info.get("frame dimensions", ""))
    if not match or not info.get("number of frames", "").isdigit():
        raise SmlmInputError(f"{path.name} lacks 'frame dimensions = W x H' or 'number of frames = N'")
    cols, rows = int(match.group(1)), int(match.group(2))
    order = "<" if "little" in info.get("data type", "big endian").lower() else ">"
    return (
        rows,
        cols,
        int(info["number of frames"]),
        np.dtype(np.uint16).newbyteorder(order),
        StackMetadata(extra={"header": path.name}),
    )


def _positive(value) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def open_stack(path: str | os.PathLike):
    """A movie by its suffix: ``RawStack`` for .raw/.dax, else ``TiffStack``."""
    from .tiff import TiffStack

    return RawStack(path) if str(path).lower().endswith(RAW_SUFFIXES) else TiffStack(path)
