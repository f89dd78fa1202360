"""Drag-and-drop reader for SMLM TIFF stacks (npe2 ``readers`` contribution).

Returns ``None`` for anything it cannot open (napari then tries other readers). Stacks
stay lazy: a contiguous file is memory-mapped; other large files are read frame by frame
through dask. Pixel size and camera metadata go into the layer's ``metadata``."""

from __future__ import annotations

import numpy as np

from ..io import RAW_SUFFIXES, RawStack, TiffStack, open_stack
from .layers import robust_contrast

SUFFIXES = (".tif", ".tiff", *RAW_SUFFIXES)
IN_MEMORY_LIMIT_BYTES = 512 * 1024**2


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith(SUFFIXES):
        return None
    try:
        with open_stack(path):
            pass
    except Exception:  # noqa: BLE001 - any problem means "not ours": napari tries other readers
        return None
    return read_smlm_stack


def _lazy_frames(stack: TiffStack | RawStack):
    view = stack.memory_map() if stack.is_memory_mapped else None
    if view is not None and view.dtype.isnative:  # napari reads the frames it shows from the file
        return view
    n, rows, cols = stack.shape
    if n * rows * cols * np.dtype(stack.dtype).itemsize <= IN_MEMORY_LIMIT_BYTES:
        return stack.read(0, n)
    import dask
    import dask.array as da

    frames = [da.from_delayed(dask.delayed(stack.read)(i, i + 1), (1, rows, cols), dtype=stack.dtype) for i in range(n)]
    return da.concatenate(frames, axis=0)


def read_smlm_stack(path):
    path = path[0] if isinstance(path, list) else path
    stack = open_stack(path)
    data = _lazy_frames(stack)
    meta = stack.metadata
    metadata = {
        "source_path": str(path),
        "pixel_size_nm": meta.pixel_size_nm,
        "offset_adu": meta.offset_adu,
        "gain_adu_per_photon": meta.gain_adu_per_photon,
        **{k: meta.extra[k] for k in ("sensor_roi_px", "binning") if k in meta.extra},
    }
    first = np.asarray(stack.read(0, 1))[0]
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    return [(data, {"name": name, "metadata": metadata, "contrast_limits": robust_contrast(first)}, "image")]
