"""``smlm-diffusion simulate OUT.tif``: a uint16 stack and its ground-truth CSV."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import SmlmInputError
from ..io.simulated import write_simulation
from ..io.structure import read_structure
from ..simulation import BACKGROUND_STRUCTURES, STRUCTURES, SimulationConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate an SMLM movie with ground truth",
        description="Simulate an SMLM movie: OUT.tif (uint16 frames x rows x cols, ADU) "
        "and OUT.csv (ground truth, ThunderSTORM columns).",
    )
    p.add_argument("out", metavar="OUT.tif", help="output TIFF stack; the ground truth goes to OUT.csv")
    p.add_argument("--frames", type=int, default=1000, help="number of frames (default 1000)")
    p.add_argument("--height", type=int, default=64, help="frame rows in camera pixels (default 64)")
    p.add_argument("--width", type=int, default=64, help="frame columns in camera pixels (default 64)")
    p.add_argument("--density", type=float, default=0.5, help="active emitters per um^2 per frame (default 0.5)")
    p.add_argument("--photons", type=float, default=1000.0, help="photons per emitter per frame (default 1000)")
    p.add_argument("--background", type=float, default=10.0, help="background photons per pixel (default 10)")
    p.add_argument(
        "--background-structure",
        choices=BACKGROUND_STRUCTURES,
        default="flat",
        help="spatial shape of the background, whose mean is --background: flat, gradient, field (smooth "
        "random), blobs (out of focus), cell (bright patch, dark outside) or mixed (default flat)",
    )
    p.add_argument("--hot-pixels", type=int, default=0, help="stationary hot pixels in the field (default 0)")
    p.add_argument("--psf-sigma", type=float, default=0.92, help="PSF sigma in camera pixels (default 0.92)")
    p.add_argument("--pixel-size", type=float, default=108.0, help="camera pixel size in nm (default 108)")
    p.add_argument("--gain", type=float, default=1.0, help="camera gain, ADU per photon (default 1)")
    p.add_argument("--offset", type=float, default=100.0, help="camera offset in ADU (default 100)")
    p.add_argument("--read-noise", type=float, default=1.0, help="read noise, electrons rms (default 1)")
    p.add_argument("--emccd", action="store_true", help="add EMCCD excess noise (factor 2 in variance)")
    p.add_argument("--structure", choices=STRUCTURES, default="filaments", help="emitter prior (default filaments)")
    p.add_argument(
        "--independent-frames",
        action="store_true",
        help="draw every frame independently instead of blinking fixed sites",
    )
    p.add_argument("--on-lifetime", type=float, default=3.0, help="mean on-state lifetime in frames (default 3)")
    p.add_argument("--kde", action="store_true", help="also write the 4x KDE targets to OUT_kde.tif")
    p.add_argument(
        "--structure-from",
        metavar="FILE",
        help="emitter sites from your own data: a localization table (.csv, Picasso .hdf5) or a "
        "super-resolution image (.tif with its pixel size); replaces --structure",
    )
    p.add_argument(
        "--structure-pixel-size",
        type=float,
        metavar="NM",
        help="pixel size of that image or Picasso table when its file does not say it",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="random crop, flip and 90-degree rotation of the --structure-from structure",
    )
    p.add_argument(
        "--drift",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("DX_NM", "DY_NM"),
        help="linear stage drift reached at the last frame, nm (default 0 0)",
    )
    p.add_argument(
        "--drift-wobble",
        type=float,
        default=0.0,
        metavar="NM",
        help="plus a sinusoidal drift of this amplitude, period 500 frames (default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def config_from_args(args) -> SimulationConfig:
    cfg = SimulationConfig(
        n_frames=args.frames,
        height_px=args.height,
        width_px=args.width,
        pixel_size_nm=args.pixel_size,
        density_per_um2=args.density,
        photons=args.photons,
        background_photons=args.background,
        background_structure=args.background_structure,
        hot_pixels=args.hot_pixels,
        psf_sigma_px=args.psf_sigma,
        gain_adu_per_photon=args.gain,
        offset_adu=args.offset,
        read_noise_e=args.read_noise,
        emccd=args.emccd,
        structure=args.structure,
        blinking=not args.independent_frames,
        on_lifetime_frames=args.on_lifetime,
        seed=args.seed,
        drift_x_nm=args.drift[0],
        drift_y_nm=args.drift[1],
        drift_wobble_nm=args.drift_wobble,
        structure_source=str(args.structure_from or ""),
        augment_structure=args.augment,
    )
    cfg.validate()
    return cfg


def output_paths(out: str) -> tuple[Path, Path, Path]:
    path = Path(out)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise SmlmInputError(f"The output name '{out}' must end in .tif or .tiff.")
    if path.is_dir():
        raise SmlmInputError(f"The output '{out}' is a folder; give a file name such as {out}/movie.tif.")
    return path, path.with_suffix(".csv"), path.with_name(path.stem + "_kde.tif")


def run(args) -> int:
    cfg = config_from_args(args)
    tif_path, csv_path, kde_path = output_paths(args.out)

    def progress(done, total):
        print(f"\rsimulated {done}/{total} frames", end="", file=sys.stderr, flush=True)

    prior = read_structure(args.structure_from, args.structure_pixel_size) if args.structure_from else None
    truth = write_simulation(cfg, tif_path, csv_path, kde_path if args.kde else None, progress, prior=prior)
    print(file=sys.stderr)
    print(
        f"wrote {tif_path} ({cfg.n_frames} frames, {cfg.height_px}x{cfg.width_px}) and {csv_path} "
        f"({len(truth)} emitters)"
    )
    return 0
