"""``smlm-diffusion calibrate-camera DARK.tif --out MAPS.tif``: per-pixel sCMOS maps
(offset ADU, read variance ADU^2, gain ADU per electron; ``analysis/camera_maps.py``) as a
3-plane float32 TIFF that ``reconstruct --camera-maps`` reads."""

from __future__ import annotations

import json
import sys

import numpy as np

from ..analysis.camera_maps import MIN_DARK_FRAMES, PLANES, calibrate_maps
from ..errors import SmlmInputError
from ..io import TiffStack, write_stack


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate-camera",
        help="sCMOS per-pixel offset, read variance and gain maps",
        description="Per-pixel camera maps from dark frames (the shutter closed, the same exposure "
        "and region as the movies), for reconstruct --camera-maps.",
    )
    p.add_argument(
        "dark", metavar="DARK.tif", help=f"dark frames (at least {MIN_DARK_FRAMES}; 300 or more recommended)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="MAPS.tif",
        help="3-plane float32 TIFF: offset (ADU), read variance (ADU^2), gain (ADU per electron)",
    )
    p.add_argument(
        "--gain",
        type=float,
        metavar="G",
        help="the camera's gain in ADU per electron (its conversion factor's inverse), for every pixel",
    )
    p.add_argument(
        "--flat",
        nargs="+",
        metavar="FLAT.tif",
        help="instead of --gain: stacks of evenly lit frames at two or more light levels; each pixel's "
        "gain is its photon-transfer slope",
    )


def run(args) -> int:
    if (args.gain is None) == (args.flat is None):
        raise SmlmInputError("give the gain (--gain G) or flat frames to measure it (--flat FLAT.tif ...), one of them")
    with TiffStack(args.dark) as stack:
        dark = stack.read(0, stack.n_frames)
        pixel_size_nm = stack.metadata.pixel_size_nm or 0.0
    flats = None
    if args.flat:
        flats = []
        for path in args.flat:
            with TiffStack(path) as stack:
                flats.append(stack.read(0, stack.n_frames))
    maps = calibrate_maps(dark, args.gain, flats)
    summary = maps.summary()
    info = {
        "content": "camera maps: " + ", ".join(PLANES),
        "planes": list(PLANES),
        "dark_frames": int(len(dark)),
        "gain_source": "given" if args.gain is not None else f"{len(flats)} flat stacks",
        **summary,
    }
    write_stack(
        args.out, np.stack(maps.planes()).astype(np.float32), pixel_size_nm or 1.0, dtype=np.float32, extra_info=info
    )
    if summary["noisy_pixels"]:
        print(f"{summary['noisy_pixels']} pixels have more than 4x the median read variance", file=sys.stderr)
    print(json.dumps(info, indent=2))
    return 0
