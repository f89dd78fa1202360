"""sCMOS camera maps: calibration from dark frames, and reconstructions with the maps
against the same movies with one offset, gain and read noise (the medians), on a
simulated sensor with noisy pixels.

    python benchmarks/camera_maps.py [--frames 10] [--noisy 0.015]

Prints (1) calibrate_maps on 300 dark frames: offset RMS error (ADU) and the median
relative error of the read variance; (2) background-only 128x128 frames: false
localizations per frame; (3) 0.5 emitters/um^2 at 500 photons on 10 photons/px:
recall, precision, Jaccard, and std(z) / 95 % coverage of the matched rows' errors over
uncertainty_xy. Phi path, bundled phi, this machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from smlm_diffusion.analysis.camera_maps import CameraMaps, calibrate_maps  # noqa: E402
from smlm_diffusion.analysis.metrics import evaluate  # noqa: E402
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct  # noqa: E402
from smlm_diffusion.simulation import SimulationConfig, simulate_stack  # noqa: E402
from smlm_diffusion.simulation.camera import expose_scmos, scmos_maps  # noqa: E402

PIXEL_NM = 108.0


def sensor(shape, noisy, seed):
    return scmos_maps(shape, np.random.default_rng(seed), noisy_fraction=noisy)


def movie(cfg: SimulationConfig, maps, seed):
    """The simulator's expected photons exposed on the sensor ``maps``."""
    sim = simulate_stack(cfg, keep_omega=True)
    return expose_scmos(sim.omega_photons, *maps, np.random.default_rng(seed)), sim.truth


def run(adu, maps, with_maps: bool, tmp_maps_path: str):
    offset, variance, gain = maps
    if with_maps:
        settings = ReconstructionSettings(
            pixel_size_nm=PIXEL_NM, posterior=False, device="cpu", drift="off", camera_maps=tmp_maps_path
        )
    else:  # one value per camera: the medians
        settings = ReconstructionSettings(
            pixel_size_nm=PIXEL_NM,
            posterior=False,
            device="cpu",
            drift="off",
            offset_adu=float(np.median(offset)),
            gain_adu_per_photon=float(np.median(gain)),
            read_noise_e=float(np.median(np.sqrt(variance) / gain)),
        )
    return reconstruct(adu, settings).localizations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--noisy", type=float, default=0.015, help="share of noisy pixels")
    args = parser.parse_args()
    import tempfile

    import tifffile

    shape = (128, 128)
    maps = sensor(shape, args.noisy, 1)
    dark = expose_scmos(np.zeros((300, *shape)), *maps, np.random.default_rng(2))
    t = time.perf_counter()
    fitted = calibrate_maps(dark, gain_adu_per_electron=2.0)
    rms = np.sqrt(np.mean((fitted.offset_adu - maps[0]) ** 2))
    rel = np.median(np.abs(fitted.read_variance_adu2 / maps[1] - 1))
    print(
        f"calibrate_maps, 300 dark frames 128x128: offset RMS error {rms:.3f} ADU, read variance median relative "
        f"error {100 * rel:.1f} % ({time.perf_counter() - t:.1f} s)"
    )
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "maps.tif")
    tifffile.imwrite(path, np.stack(CameraMaps(*maps).planes()).astype(np.float32))
    print(
        f"\nsensor: {100 * args.noisy:.1f} % noisy pixels (6-30 e- rms), others 1.5 e- rms; gain 2 +- 5 %, "
        "offset 100 +- 3 ADU"
    )
    print("| movie | camera | false locs / frame | recall | precision | Jaccard | std(z) | coverage 95 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, density in (("background only, 10 ph/px", 0.0), ("0.5/um^2, 500 ph, 10 ph/px", 0.5)):
        cfg = SimulationConfig(
            n_frames=args.frames,
            height_px=128,
            width_px=128,
            pixel_size_nm=PIXEL_NM,
            density_per_um2=density,
            photons=500.0,
            background_photons=10.0,
            background_structure="gradient",
            gain_adu_per_photon=1.0,
            offset_adu=0.0,
            seed=7,
        )
        adu, truth = movie(cfg, maps, 8)
        for with_maps in (False, True):
            locs = run(adu, maps, with_maps, path)
            label = "maps" if with_maps else "one value (medians)"
            if density == 0:
                print(f"| {name} | {label} | {len(locs) / args.frames:.2f} | | | | | |")
                continue
            score = evaluate(locs, truth, tolerance_nm=150.0)
            p, t = score.predicted_index, score.true_index
            z = (
                np.r_[(locs.x_nm[p] - truth.x_nm[t]), (locs.y_nm[p] - truth.y_nm[t])]
                / np.r_[locs.uncertainty_xy_nm[p], locs.uncertainty_xy_nm[p]]
            )
            print(
                f"| {name} | {label} | | {score.recall:.3f} | {score.precision:.3f} | "
                f"{100 * score.jaccard:.1f} | {np.std(z):.2f} | {np.mean(np.abs(z) <= 1.96):.3f} |"
            )


if __name__ == "__main__":
    main()
