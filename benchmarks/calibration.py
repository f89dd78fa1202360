"""Calibration of the per-localization uncertainties (issue 4).

    python benchmarks/calibration.py [--isolated 100] [--dense-frames 3] [--compare-frames 3]

z = (estimate - truth) / uncertainty_xy per axis, on isolated emitters (one per 20x20
frame) and on dense frames: std of z and the 68 % / 95 % coverage. For isolated emitters
also the mean positional std against the MCMC posterior std (appendix A.4) and the CRLB.
Accelerated vs full sampling: mean posterior variance of the same frames. Prints tables.
"""

from __future__ import annotations

import argparse

import numpy as np

from smlm_diffusion.analysis import crlb, evaluate, metropolis_hastings
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

PHOTONS, BACKGROUND, SIGMA = 1000.0, 10.0, 0.92


def z_scores(rec, sim, px):
    m = evaluate(rec.localizations, sim.truth, 250.0)
    p, t = m.predicted_index, m.true_index
    u = rec.localizations.uncertainty_xy_nm[p]
    dx = (rec.localizations.x_nm[p] - sim.truth.x_nm[t]) / u
    dy = (rec.localizations.y_nm[p] - sim.truth.y_nm[t]) / u
    return np.concatenate([dx, dy]), m, p, t


def summary(name, z, m):
    a = np.abs(z)
    print(f"| {name} | {m.true_positives} | {np.std(z):.2f} | {np.mean(a <= 1):.3f} | {np.mean(a <= 1.96):.3f} | "
          f"{m.jaccard:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isolated", type=int, default=100, help="isolated-emitter frames (20x20)")
    parser.add_argument("--dense-frames", type=int, default=3, help="64x64 frames at 1.5 emitters/um^2")
    parser.add_argument("--compare-frames", type=int, default=3, help="frames for accelerated vs full")
    parser.add_argument("--mcmc", type=int, default=20, help="isolated emitters also sampled by MCMC")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--psi", default="psi")
    args = parser.parse_args()
    px = 108.0
    base = dict(offset_adu=100.0, device=args.device, phi_model=args.phi, psi_model=args.psi)

    iso_cfg = SimulationConfig(n_frames=args.isolated, height_px=20, width_px=20, structure="disc",
                               disc_radius_px=4.0, density_per_um2=1e-9, photons=PHOTONS,
                               background_photons=BACKGROUND, psf_sigma_px=SIGMA, offset_adu=100.0, seed=21)
    # exactly one emitter per frame: draw a frame with k=1 from the disc prior
    rng = np.random.default_rng(21)
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.simulation import CameraModel, expected_photons

    xy = 10 + rng.uniform(-3, 3, size=(args.isolated, 2))
    omega = expected_photons(xy[:, :1], xy[:, 1:], np.full((args.isolated, 1), PHOTONS), (20, 20), SIGMA, BACKGROUND)
    adu = CameraModel(1.0, 100.0, 0.0).expose(omega, rng)
    truth = Localizations(frame=np.arange(1, args.isolated + 1), x_nm=xy[:, 0] * px, y_nm=xy[:, 1] * px)
    iso = type("Sim", (), {"adu": adu, "truth": truth, "config": iso_cfg})()

    print("| emitters | matched | std(z) | 68 % coverage | 95 % coverage | Jaccard |")
    print("|---|---|---|---|---|---|")
    rec_iso = reconstruct(iso.adu, ReconstructionSettings(**base))
    z, m, p, t = z_scores(rec_iso, iso, px)
    summary("isolated (20x20, 1000 photons, bg 10)", z, m)
    dense_cfg = SimulationConfig(n_frames=args.dense_frames, height_px=64, width_px=64, density_per_um2=1.5,
                                 photons=PHOTONS, background_photons=BACKGROUND, offset_adu=100.0, seed=22)
    dense = simulate_stack(dense_cfg)
    zd, md, _, _ = z_scores(reconstruct(dense.adu, ReconstructionSettings(**base)), dense, px)
    summary("dense (64x64, 1.5/um^2)", zd, md)

    print("\nisolated emitters: per-axis positional std [nm]")
    bound = crlb(10.0, 10.0, PHOTONS, BACKGROUND, SIGMA, (20, 20))
    ours = rec_iso.localizations.uncertainty_xy_nm[p]
    mcmc_std = []
    for k in range(min(args.mcmc, len(p))):
        frame = int(truth.frame[t[k]]) - 1
        counts = adu[frame] - 100.0
        start = {"x": truth.x_nm[t[k]] / px, "y": truth.y_nm[t[k]] / px, "photons": PHOTONS,
                 "background": BACKGROUND}
        result = metropolis_hastings(counts, start, SIGMA, free=("x", "y", "photons", "background"),
                                     n_iterations=4000, burn_in=1000, n_chains=4, seed=k)
        std = result.std()
        mcmc_std.append(np.sqrt((std["x"] ** 2 + std["y"] ** 2) / 2) * px)
    mcmc_std = np.array(mcmc_std)
    ours_sub = ours[:len(mcmc_std)]
    print("| quantity | value |")
    print("|---|---|")
    print(f"| ours: mean uncertainty_xy | {np.mean(ours):.1f} |")
    print(f"| ours: RMS error per axis (truth known) | {np.sqrt(np.mean((z * np.concatenate([ours, ours])) ** 2)):.1f} |")
    print(f"| MCMC posterior std (mean of {len(mcmc_std)}) | {np.mean(mcmc_std):.1f} |")
    print(f"| ours / MCMC on the same emitters | {np.mean(ours_sub) / np.mean(mcmc_std):.2f} |")
    print(f"| CRLB per axis (4 free parameters) | {np.sqrt((bound['x'] ** 2 + bound['y'] ** 2) / 2) * px:.1f} |")

    print("\naccelerated vs full sampling (same 32x32 crops of the dense frames, 16 chains)")
    frames = dense.adu[:args.compare_frames, :32, :32]  # 32x32 crops: full sampling is 10x dearer
    fast = reconstruct(frames, ReconstructionSettings(**base, keep_frame_kdes=True))
    full_settings = ReconstructionSettings(**base, keep_frame_kdes=True)
    full_settings.sampler.mode = "full"
    full = reconstruct(frames, full_settings)
    v_fast = np.mean([v.mean() for v in fast.variance_kdes.values()])
    v_full = np.mean([v.mean() for v in full.variance_kdes.values()])
    print("| sampler | network evals/frame | mean posterior variance | seconds/frame |")
    print("|---|---|---|---|")
    for name, r, v in (("accelerated", fast, v_fast), ("full", full, v_full)):
        n = len(r.frames)
        print(f"| {name} | {r.network_evaluations / n:.0f} | {v:.3e} | {r.timings_s['total'] / n:.1f} |")
    print(f"\nvariance ratio accelerated / full: {v_fast / v_full:.3f}; "
          f"evaluation ratio full / accelerated: {full.network_evaluations / fast.network_evaluations:.1f}")


if __name__ == "__main__":
    main()
