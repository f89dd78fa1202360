"""TIFF stacks: lazy, memory-mapped reading with metadata; atomic writing.

A stack is ``frames x rows x cols``; a single 2-D image is read as one frame.
Reading never loads the whole file: frames come from a memory map where the file is
uncompressed and contiguous, otherwise page by page.
"""

from __future__ import annotations

import json
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import SmlmInputError
from .atomic import atomic_path

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.float32, np.float64)
_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "m": 1e9,
}


@dataclass
class StackMetadata:
    """What the file says about acquisition (None where it says nothing)."""

    pixel_size_nm: float | None = None
    offset_adu: float | None = None
    gain_adu_per_photon: float | None = None
    extra: dict = field(default_factory=dict)


class FrameIndexing:
    """Array-like access to a stack's frames through its ``read(start, stop)`` and
    ``shape`` (frames, rows, cols): ``len``, ``stack[i]``, ``stack[a:b]``, a context manager."""

    shape: tuple[int, int, int]

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _check_range(self, start: int, stop: int) -> None:
        n = self.shape[0]
        if not (0 <= start < stop <= n):
            raise SmlmInputError(
                f"Frame range {start + 1}:{stop} is outside {self.name}, which has "
                f"{n} frame(s); choose frames between 1 and {n}."
            )

    def _checked_finite(self, data: np.ndarray, start: int) -> np.ndarray:
        """``data`` (frames from ``start``), or one sentence naming the first frame with NaN/inf."""
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = start + 1 + int(np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(axis=1))[0])
            raise SmlmInputError(
                f"Frame {bad} of {self.name} contains NaN or infinite values; "
                "replace them (e.g. with the camera offset) before reconstructing."
            )
        return data

    def memory_map(self) -> np.ndarray | None:
        """The whole stack as a read-only memory map (frames, rows, cols), where the file
        allows one; nothing is read until it is indexed."""
        return getattr(self, "_memmap", None)

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.shape[0] if key < 0 else 0)
            return self.read(k, k + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return np.stack([self[i] for i in range(start, stop, step)])
            return self.read(start, stop)
        raise TypeError("index a stack with an int or a slice")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TiffStack(FrameIndexing):
    """A lazily read TIFF stack. Index it like an array of frames: ``stack[i]``,
    ``stack[a:b]``; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.exists():
            raise SmlmInputError(f"File not found: {self.path}; check the path.")
        if self.path.is_dir():
            raise SmlmInputError(f"{self.path} is a folder, not a TIFF file; give the path of a .tif stack.")
        try:
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0] if self._tif.series else None
            shape, axes = (tuple(series.shape), series.axes) if series is not None else ((), "")
            dtype = np.dtype(series.dtype) if series is not None else None
        except (tifffile.TiffFileError, ValueError, struct.error, IndexError, EOFError) as exc:
            raise SmlmInputError(
                f"{self.name} is not a readable TIFF file ({exc}); export the movie as a TIFF stack."
            ) from None
        self._series = series
        self.dtype = dtype
        self.shape = self._frames_shape(shape, axes)
        self._memmap = self._try_memmap()
        self.metadata = read_metadata(self._tif)

    def _frames_shape(self, shape: tuple, axes: str) -> tuple[int, int, int]:
        if self._series is None or not shape or 0 in shape:
            self.close()
            raise SmlmInputError(f"{self.name} holds no image data (empty stack); choose a file with frames.")
        if "S" in axes or self._series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB:
            self.close()
            raise SmlmInputError(
                f"{self.name} is an RGB/colour image; SMLM needs a single-channel "
                "grayscale stack (frames x rows x cols) in camera ADU."
            )
        if self.dtype.type not in SUPPORTED_DTYPES:
            self.close()
            raise SmlmInputError(
                f"{self.name} has unsupported pixel type {self.dtype}; save the stack as 8/16/32-bit integer or float."
            )
        declared = (self._tif.imagej_metadata or {}).get("images")
        if isinstance(declared, int) and declared > int(np.prod(shape[:-2])):
            self.close()
            raise SmlmInputError(
                f"{self.name} is truncated: its header declares {declared} frames but "
                f"only {int(np.prod(shape[:-2]))} can be read; copy or export it again."
            )
        if len(shape) == 2:
            return (1, *shape)
        leading = [n for n in shape[:-2] if n != 1]
        if len(leading) > 1:
            self.close()
            raise SmlmInputError(
                f"{self.name} has shape {shape} (axes {axes}); expected one stack of "
                "frames x rows x cols, so split channels or positions first."
            )
        return (int(np.prod(shape[:-2])), int(shape[-2]), int(shape[-1]))

    def _try_memmap(self):
        offset = self._series.dataoffset
        if offset is not None and self.path.stat().st_size < offset + self._series.nbytes:
            self.close()
            raise SmlmInputError(
                f"{self.name} is truncated (the file ends before its last frame); copy or export it again."
            )
        try:
            if offset is None:
                return None
            return np.memmap(
                self.path,
                dtype=self._series.dtype.newbyteorder(self._tif.byteorder),
                mode="r",
                offset=self._series.dataoffset,
                shape=self.shape,
            )
        except (ValueError, OSError, AttributeError):
            return None

    @property
    def is_memory_mapped(self) -> bool:
        return self._memmap is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop-1`` (0-based) as a new array (checks for NaN/inf)."""
        self._check_range(start, stop)
        try:
            if self._memmap is not None:
                data = np.array(self._memmap[start:stop])
            else:
                data = self._tif.asarray(key=range(start, stop), series=0)
                data = np.asarray(data).reshape((stop - start, *self.shape[1:]))
        except (tifffile.TiffFileError, ValueError, OSError, struct.error) as exc:
            raise SmlmInputError(f"{self.name} is truncated or corrupt ({exc}); re-export the file.") from None
        return self._checked_finite(data, start)

    def iter_chunks(self, start: int = 0, stop: int | None = None, chunk_frames: int = 64):
        """Yield (first_index, frames) chunks of at most ``chunk_frames`` frames."""
        stop = self.shape[0] if stop is None else stop
        for a in range(start, stop, chunk_frames):
            yield a, self.read(a, min(a + chunk_frames, stop))

    def close(self) -> None:
        self._memmap = None
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()


def read_metadata(tif: tifffile.TiffFile) -> StackMetadata:
    """Pixel size (and our own camera keys) from OME-XML, ImageJ or TIFF resolution tags."""
    meta = StackMetadata()
    if tif.is_ome and tif.ome_metadata:
        meta.pixel_size_nm = _ome_pixel_size_nm(tif.ome_metadata)
    ij = tif.imagej_metadata or {}
    info = ij.get("Info")
    if isinstance(info, str):
        try:
            ours = json.loads(info)
        except ValueError:
            ours = None
        if isinstance(ours, dict):
            meta.extra = ours
            meta.offset_adu = _float_or_none(ours.get("offset_adu"))
            meta.gain_adu_per_photon = _float_or_none(ours.get("gain_adu_per_photon"))
            meta.pixel_size_nm = meta.pixel_size_nm or _float_or_none(ours.get("pixel_size_nm"))
    mm = _micromanager(tif)
    if mm:
        meta.extra.update(mm)
        meta.pixel_size_nm = meta.pixel_size_nm or mm.get("pixel_size_nm")
        meta.gain_adu_per_photon = meta.gain_adu_per_photon or mm.get("gain_adu_per_photon")
        meta.offset_adu = meta.offset_adu or mm.get("offset_adu")
    if meta.pixel_size_nm is None:
        meta.pixel_size_nm = _resolution_pixel_size_nm(tif, ij.get("unit"))
    return meta


def _micromanager(tif: tifffile.TiffFile) -> dict:
    """Micro-Manager's pixel size (nm), binning, region of the sensor (``sensor_roi_px``: x,
    y, width, height in sensor pixels) and, where the camera adapter records it, its
    conversion factor (electrons per ADU: the gain is its inverse) and offset, from the
    summary or the first image's metadata."""
    sources = []
    if getattr(tif, "is_micromanager", False):
        try:
            summary = (tif.micromanager_metadata or {}).get("Summary")
            if isinstance(summary, dict):
                sources.append(summary)
        except Exception:  # noqa: BLE001 - a damaged header is no reason to refuse the movie
            pass
    tag = tif.pages.first.tags.get(51123)  # MicroManagerMetadata: one JSON per image
    if tag is not None:
        try:
            image = json.loads(tag.value) if isinstance(tag.value, (str, bytes)) else tag.value
            if isinstance(image, dict):
                sources.append(image)
        except ValueError:
            pass
    found = {}
    for source in sources:
        size = _float_or_none(source.get("PixelSizeUm", source.get("PixelSize_um")))
        if size:
            found["pixel_size_nm"] = size * 1e3
        binning = source.get("Binning")
        if binning is not None:
            try:
                found["binning"] = int(str(binning).split("x")[0])
            except ValueError:
                pass
        for key, value in source.items():  # e.g. "HamamatsuHam_DCAM-CONVERSION FACTOR COEFF" (electrons per ADU)
            name = str(key).lower()
            if name.endswith("conversion factor coeff") and _float_or_none(value):
                found["gain_adu_per_photon"] = 1.0 / float(value)
            elif name.endswith("conversion factor offset") and _float_or_none(value):
                found["offset_adu"] = float(value)
        roi = source.get("ROI")
        if isinstance(roi, str):
            roi = re.split(r"[-,\s]+", roi.strip())
        try:
            if roi is not None and len(roi) == 4:
                found["sensor_roi_px"] = [int(float(v)) for v in roi]
        except (TypeError, ValueError):
            pass
    return found


def _float_or_none(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _ome_pixel_size_nm(xml: str) -> float | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
            size = _float_or_none(element.attrib["PhysicalSizeX"])
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            scale = _UNIT_TO_NM.get(unit.strip().lower())
            return size * scale if size and scale else None
    return None


def _resolution_pixel_size_nm(tif: tifffile.TiffFile, imagej_unit: str | None) -> float | None:
    page = tif.pages.first
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 1
    if imagej_unit:
        scale = _UNIT_TO_NM.get(re.sub(r"\s", "", str(imagej_unit)).lower())
    elif unit == 3:  # centimetre
        scale = 1e7
    else:  # inch (dpi) or none: a screen resolution, not a physical pixel size
        scale = None
    if scale is None:
        return None
    size = scale / pixels_per_unit
    return size if 1.0 <= size <= 1e5 else None


def write_stack(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    pixel_size_nm: float,
    shape: tuple[int, int, int] | None = None,
    dtype=np.uint16,
    extra_info: dict | None = None,
) -> Path:
    """Write an ImageJ-compatible ``frames x rows x cols`` TIFF atomically.

    ``frames`` is an array, or an iterable of frame chunks (then give ``shape``), so a
    long movie never has to be in memory at once. Pixel size goes into the resolution
    tags (ImageJ unit um) and, with ``extra_info`` (camera offset/gain...), into the
    ImageJ ``Info`` field as JSON.
    """
    info = {"pixel_size_nm": float(pixel_size_nm), **(extra_info or {})}
    if isinstance(frames, np.ndarray):
        data = frames if frames.ndim == 3 else frames[None]
        shape, dtype = data.shape, data.dtype
    else:
        if shape is None:
            raise ValueError("give the stack shape when writing from an iterable of chunks")
        data = (np.asarray(f, dtype=dtype)[i] for f in frames for i in range(len(f)))
    pixels_per_um = 1000.0 / float(pixel_size_nm)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            shape=shape,
            dtype=dtype,
            imagej=True,
            resolution=(pixels_per_um, pixels_per_um),
            metadata={"axes": "TYX", "unit": "um", "Info": json.dumps(info)},
        )
    return Path(path)
