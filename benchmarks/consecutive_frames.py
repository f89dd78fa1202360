"""Calibration of ``uncertainty_xy`` without ground truth: one molecule localized in
consecutive frames (``analysis/nena.py``). For pairs of one molecule, (x1 - x2) /
sqrt(u1^2 + u2^2) has std 1 and 95 % coverage 0.95 when the uncertainties are right.

    python benchmarks/consecutive_frames.py MOVIE [--pixel-size NM] [--offset ADU --gain G |
        --camera-maps MAPS.tif] [--posterior] [--frames A:B] [--crop N]
    python benchmarks/consecutive_frames.py --simulated [--posterior]

MOVIE (TIFF, .raw + .yaml, .dax + .inf) is reconstructed with the given camera; the table
prints the NeNA precision and, per brightness (the pair's mean photons), the pairs' std(z)
and 95 % coverage (the std corrected for the pairs' cut at 4 combined uncertainties).
``--simulated`` runs blinking movies of conditions the models were not trained on (other
seeds, 65 and 160 nm pixels, PSF 1.3 px, a cell background) and prints, beside the same
check, the ground-truth std(z) of the same rows: the check is worth what the two agree.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from smlm_diffusion.analysis.nena import nena, same_molecule_pairs, trimmed_std_factor  # noqa: E402
from smlm_diffusion.io import open_stack  # noqa: E402
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct  # noqa: E402

BINS = (0, 300, 1000, 3000, 10000, np.inf)


def check_table(locs, label: str, truth_z: np.ndarray | None = None) -> None:
    """One row per brightness bin (module doc)."""
    result = nena(locs)
    i, j, z = same_molecule_pairs(locs, result.max_distance_nm)
    photons = 0.5 * (locs.intensity_photons[i] + locs.intensity_photons[j])
    factor = trimmed_std_factor()
    print(
        f"\n{label}: {len(locs)} localizations, NeNA {result.precision_nm:.2f} +- "
        f"{result.precision_std_error_nm:.2f} nm, median uncertainty {np.median(locs.uncertainty_xy_nm):.2f} nm"
    )
    header = "| photons | pairs | std(z) | coverage 95 |" + (" truth std(z) |" if truth_z is not None else "")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for low, high in zip(BINS[:-1], BINS[1:]):
        inside = (photons >= low) & (photons < high)
        if inside.sum() < 20:
            continue
        row = (
            f"| {low:g}-{high:g} | {inside.sum()} | {np.std(z[inside]) / factor:.3f} | "
            f"{np.mean(np.abs(z[inside]) <= 1.96):.3f} |"
        )
        if truth_z is not None:
            rows = np.r_[i[inside], j[inside]]
            tz = truth_z[rows]
            tz = tz[np.isfinite(tz).all(axis=1)]
            row += f" {np.std(tz):.3f} |"
        print(row)
    print(
        f"| all | {len(z)} | {result.z_std:.3f} | {result.z_coverage_95:.3f} |" + (" |" if truth_z is not None else "")
    )


def simulated(posterior: bool) -> None:
    from scipy.spatial import cKDTree

    from smlm_diffusion.simulation import SimulationConfig, simulate_stack

    conditions = [
        dict(
            pixel_size_nm=160.0,
            psf_sigma_px=0.9,
            photons=1500.0,
            photon_spread=0.5,
            background_photons=20.0,
            background_structure="cell",
            density_per_um2=0.3,
        ),
        dict(
            pixel_size_nm=65.0,
            psf_sigma_px=1.6,
            photons=3000.0,
            photon_spread=0.5,
            background_photons=50.0,
            background_structure="gradient",
            density_per_um2=0.5,
        ),
        dict(
            pixel_size_nm=108.0,
            psf_sigma_px=1.3,
            photons=800.0,
            photon_spread=0.5,
            background_photons=5.0,
            background_structure="blobs",
            density_per_um2=0.5,
        ),
    ]
    for k, condition in enumerate(conditions):
        cfg = SimulationConfig(
            n_frames=12 if posterior else 200,
            height_px=48 if posterior else 64,
            width_px=48 if posterior else 64,
            blinking=True,
            on_lifetime_frames=4.0,
            seed=900 + k,
            **condition,
        )
        sim = simulate_stack(cfg)
        settings = ReconstructionSettings(
            pixel_size_nm=cfg.pixel_size_nm,
            offset_adu=cfg.offset_adu,
            gain_adu_per_photon=cfg.gain_adu_per_photon,
            posterior=posterior,
            device="cpu",
            drift="off",
            seed=k,
        )
        t = time.perf_counter()
        locs = reconstruct(sim.adu, settings).localizations
        seconds = time.perf_counter() - t
        truth = sim.truth
        truth_z = np.full((len(locs), 2), np.nan)
        error_nm = np.full((len(locs), 2), np.nan)
        for frame in np.unique(locs.frame):
            rows = np.flatnonzero(locs.frame == frame)
            here = truth.frame == frame
            if not here.any():
                continue
            d, nearest = cKDTree(np.c_[truth.x_nm[here], truth.y_nm[here]]).query(
                np.c_[locs.x_nm[rows], locs.y_nm[rows]]
            )
            ok = d < 3 * locs.uncertainty_xy_nm[rows] + 10
            error_nm[rows[ok], 0] = locs.x_nm[rows[ok]] - truth.x_nm[here][nearest[ok]]
            error_nm[rows[ok], 1] = locs.y_nm[rows[ok]] - truth.y_nm[here][nearest[ok]]
            truth_z[rows[ok]] = error_nm[rows[ok]] / locs.uncertainty_xy_nm[rows[ok], None]
        check_table(
            locs,
            f"simulated {k + 1} ({condition['pixel_size_nm']:g} nm px, PSF {condition['psf_sigma_px']} px, "
            f"{condition['photons']:g} ph, bg {condition['background_photons']:g} "
            f"{condition['background_structure']}; {'posterior' if posterior else 'phi'} path, "
            f"{seconds:.0f} s)",
            truth_z,
        )
        errors = error_nm[np.isfinite(error_nm).all(axis=1)]
        robust = 1.4826 * np.median(np.abs(errors - np.median(errors, axis=0)))
        print(
            f"ground truth: errors' robust std {robust:.2f} nm per axis (NeNA estimates it), "
            f"std(z) over all matched rows {np.std(truth_z[np.isfinite(truth_z).all(axis=1)]):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("movie", nargs="?")
    parser.add_argument("--simulated", action="store_true")
    parser.add_argument("--pixel-size", type=float, default=108.0)
    parser.add_argument("--offset", type=float, default=100.0)
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--camera-maps", default="")
    parser.add_argument("--posterior", action="store_true")
    parser.add_argument("--frames", help="A:B, 1-based inclusive")
    parser.add_argument("--crop", type=int, default=0, help="only the top-left N x N camera pixels (0: all)")
    args = parser.parse_args()
    if args.simulated:
        simulated(args.posterior)
        return
    frames = None
    if args.frames:
        a, b = args.frames.split(":")
        frames = (int(a) - 1, int(b))
    settings = ReconstructionSettings(
        pixel_size_nm=args.pixel_size,
        offset_adu=args.offset,
        gain_adu_per_photon=args.gain,
        camera_maps=args.camera_maps,
        posterior=args.posterior,
        device="cpu",
        drift="off",
        frames=frames,
        region=(0, args.crop, 0, args.crop) if args.crop else None,
    )
    with open_stack(args.movie) as stack:
        t = time.perf_counter()
        locs = reconstruct(stack, settings).localizations
    check_table(
        locs, f"{args.movie} ({'posterior' if args.posterior else 'phi'} path, {time.perf_counter() - t:.0f} s)"
    )


if __name__ == "__main__":
    main()
