"""Our build on a real movie that is not in this repository (no ground truth needed).

    python benchmarks/real_frames.py MOVIE [--pixel-size 160] [--offset 100] [--gain 2.11]
        [--phi phi] [--reference "34,38,33,46,37,37,44,40,38,48"]

MOVIE is a TIFF stack or a storm-analysis ``.dax`` (big-endian uint16 with a ``.inf``
beside it giving ``frame dimensions``). Prints the photon-transfer estimate of the camera,
the PSF width measured on the movie, and localizations per frame at several settings of
the detection knob (min_photons), beside a reference count per frame when one is given
(e.g. the one the data's own README reports for its fitter). docs/performance.md lists
the public movie we measured and where it comes from; the data is not committed.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from smlm_diffusion.analysis.camera import estimate_camera
from smlm_diffusion.inference.devices import PRECISION_CHOICES
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct


def read_movie(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".dax":
        info = path.with_suffix(".inf").read_text()
        rows, cols = (int(v) for v in re.search(r"frame dimensions\s*=\s*(\d+)\s*x\s*(\d+)", info).groups())
        return np.fromfile(path, ">u2").reshape(-1, rows, cols).astype(np.float64)
    import tifffile

    return tifffile.imread(path).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("movie", type=Path)
    parser.add_argument("--pixel-size", type=float, default=160.0)
    parser.add_argument("--offset", type=float, default=100.0)
    parser.add_argument("--gain", type=float, default=2.11, help="ADU per photon")
    parser.add_argument("--phi", default="phi")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="phi's arithmetic (default auto: bfloat16 where the CPU has it natively)",
    )
    parser.add_argument("--reference", help="comma-separated reference counts per frame")
    args = parser.parse_args()
    movie = read_movie(args.movie)
    print(
        f"{args.movie.name}: {movie.shape[0]} frames of {movie.shape[1]}x{movie.shape[2]}, "
        f"median {np.median(movie):.1f} ADU, p99.9 {np.percentile(movie, 99.9):.1f} ADU"
    )
    try:
        estimate = estimate_camera(movie, stated_offset_adu=args.offset)
        print(
            f"photon-transfer estimate: gain {estimate.gain_adu_per_photon:.2f} ADU/photon, offset "
            f"{estimate.offset_adu:.1f} ADU ({estimate.method}, {estimate.frames_used} frames, background "
            f"{estimate.background_range_adu[0]:.1f}-{estimate.background_range_adu[1]:.1f} ADU)"
        )
    except ValueError as exc:
        print(f"photon-transfer estimate: not possible ({exc})")
    settings = ReconstructionSettings(
        pixel_size_nm=args.pixel_size,
        offset_adu=args.offset,
        gain_adu_per_photon=args.gain,
        posterior=False,
        phi_model=args.phi,
        device="cpu",
        min_photons=0.0,
        precision=args.precision,
    )
    started = time.perf_counter()
    rec = reconstruct(movie, settings)
    seconds = time.perf_counter() - started
    locs = rec.localizations
    print(
        f"phi path: {seconds:.1f} s ({len(rec.frames) / seconds:.2f} frames/s), PSF sigma "
        f"{rec.psf_sigma_px:.2f} px ({rec.psf_sigma_source}), fit_ok {np.mean(locs.extra['fit_ok']):.2f}, "
        f"median uncertainty_xy {np.nanmedian(locs.uncertainty_xy_nm):.1f} nm"
    )
    for message in rec.warnings:
        print(f"warning: {message}")
    n = len(rec.frames)
    print("\n| min_photons | total | per frame |")
    print("|--:|--:|---|")
    for knob in (0, 100, 200, 300, 500):
        keep = locs.intensity_photons >= knob
        per = [int(((locs.frame == f) & keep).sum()) for f in range(1, n + 1)]
        print(f"| {knob} | {sum(per)} | {', '.join(map(str, per))} |")
    if args.reference:
        per = [int(v) for v in args.reference.split(",")]
        print(f"| reference | {sum(per)} | {', '.join(map(str, per))} |")


if __name__ == "__main__":
    main()
