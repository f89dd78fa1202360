"""How often psi's training prior hides a second emitter under an isolated-looking fit.

    python benchmarks/training_prior.py [--photons 150 300] [--density 0.05 4] [--frames 30000]

psi learns the posterior of the truth given the fits under its training prior. Where that
prior puts an unresolved second emitter beneath some isolated-looking fits, an honest psi
hedges: some of its samples hold more than one emitter's mass there. A single-emitter MCMC
(``posterior.py --mcmc``, the paper's check) never does, so the hedge alone makes psi's
per-pixel KDE std larger than MCMC's. This script measures both sides on the training
domain (``models.training_data``; 24x24 frames, PSF sigma 0.8-1.05 px, background < 20
photons/px, as the MCMC check's 0.92 px and 10 photons/px):

1. of the engine's own fits (``reconstruction.refine.PipelineFits``, what psi v9 trained on;
   ``--fits surrogate``: the fast surrogate) with fitted photons in ``--photons`` and no
   other fit within 3 px, the share with 0, 1 and >= 2 true emitters within 1 and 2.5 px;
2. the ratio of per-pixel KDE stds (eq. 3, over the footprint as ``posterior.py --mcmc``)
   of "the position's Laplace spread plus, with probability p, a second emitter within
   1 px" to the position's spread alone, at ``--mcmc-photons`` (200: the MCMC check's faint
   emitter) and p = the measured share within 1 px.
"""

from __future__ import annotations

import argparse

import numpy as np

from smlm_diffusion.models.conditioning import approximate_precision_px, surrogate_refinement
from smlm_diffusion.models.normalisation import INPUT_NORMALISATION, estimate_background, normalise_frames
from smlm_diffusion.models.training_data import TrainingDomain, random_config
from smlm_diffusion.simulation import simulate_stack
from smlm_diffusion.simulation.psf import render_kde, single_emitter_kde_peak

RADII_PX = (1.0, 2.5)


def neighbour_counts(args) -> dict[float, np.ndarray]:
    """True emitters within each radius of every isolated-looking fit in the photon band."""
    domain = TrainingDomain(frame_px=24, density_per_um2=tuple(args.density))
    rng = np.random.default_rng(args.seed)
    fitter = None
    if args.fits == "pipeline":
        from smlm_diffusion.reconstruction.refine import PipelineFits

        fitter = PipelineFits(args.phi)
    norm = INPUT_NORMALISATION
    counts: dict[float, list[int]] = {r: [] for r in RADII_PX}
    for _ in range(args.frames):
        cfg = random_config(rng, domain)
        if not (0.8 <= cfg.psf_sigma_px <= 1.05 and cfg.background_photons < 20 and cfg.density_per_um2 > 0):
            continue
        sim = simulate_stack(cfg)
        truth = sim.truth.xy_px(cfg.pixel_size_nm)
        if fitter is None:
            x, y, _, fitted = surrogate_refinement(
                truth[:, 0],
                truth[:, 1],
                sim.truth.intensity_photons,
                np.full(len(truth), cfg.background_photons),
                cfg.psf_sigma_px,
                rng,
            )
        else:
            photons = cfg.camera.to_photons(sim.adu)
            background = estimate_background(
                photons, norm["background_sigma_px"], read_variance_photons2=norm["read_variance_photons2"]
            )
            frame = normalise_frames(photons, {**norm, "channels": 2}, background)
            ((x, y, _, fitted),) = fitter(
                photons, background, frame, np.array([cfg.psf_sigma_px]), np.array([cfg.read_noise_e])
            )
        for k in range(len(x)):
            others = np.hypot(x - x[k], y - y[k])
            others[k] = np.inf
            inside = 3.0 < x[k] < cfg.width_px - 3.0 and 3.0 < y[k] < cfg.height_px - 3.0
            if not (args.photons[0] <= fitted[k] <= args.photons[1]) or others.min() < 3.0 or not inside:
                continue
            distance = np.hypot(truth[:, 0] - x[k], truth[:, 1] - y[k])
            for r in RADII_PX:
                counts[r].append(int((distance < r).sum()))
    return {r: np.array(c) for r, c in counts.items()}


def hedge_ratio(
    photons: float, share: float, background: float = 10.0, sigma_px: float = 0.92, draws: int = 4000, seed: int = 0
) -> float:
    """Footprint-mean per-pixel KDE std with a second emitter (uniform within 1 px) in a
    ``share`` of the draws, over the std of the position's spread alone (Mortensen precision)."""
    rng = np.random.default_rng(seed)
    std = float(approximate_precision_px(np.array([photons]), np.array([background]), sigma_px)[0])
    x = 10.0 + std * rng.standard_normal((draws, 1))
    y = 10.0 + std * rng.standard_normal((draws, 1))
    alone = render_kde(x, y, np.ones_like(x), (20, 20))
    footprint = alone.mean(axis=0) > 0.05 * single_emitter_kde_peak()
    second = rng.random(draws) < share
    radius, angle = np.sqrt(rng.random(draws)), rng.uniform(0.0, 2.0 * np.pi, draws)
    x2 = np.where(second, 10.0 + radius * np.cos(angle), -100.0)[:, None]  # -100: off the frame
    y2 = np.where(second, 10.0 + radius * np.sin(angle), -100.0)[:, None]
    hedged = alone + render_kde(x2, y2, np.ones_like(x2), (20, 20))
    return float(hedged.std(axis=0)[footprint].mean() / alone.std(axis=0)[footprint].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photons",
        type=float,
        nargs=2,
        default=(150.0, 300.0),
        metavar=("LOW", "HIGH"),
        help="fitted photons of the fits counted (default 150 300)",
    )
    parser.add_argument(
        "--density",
        type=float,
        nargs=2,
        default=(0.05, 4.0),
        metavar=("LOW", "HIGH"),
        help="the prior's density range, emitters/um^2 (default: the bundled models' 0.05 4)",
    )
    parser.add_argument("--frames", type=int, default=30000, help="random training settings drawn (default 30000)")
    parser.add_argument("--fits", choices=("pipeline", "surrogate"), default="pipeline")
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--mcmc-photons", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    counts = neighbour_counts(args)
    print(
        f"fits: {args.fits}; fitted photons {args.photons[0]:g}-{args.photons[1]:g}; density "
        f"{args.density[0]:g}-{args.density[1]:g} /um^2; {len(counts[RADII_PX[0]])} isolated-looking fits"
    )
    print("| true emitters within | 0 | 1 | >= 2 | mean |")
    print("|---|--:|--:|--:|--:|")
    for r, c in counts.items():
        if len(c):
            print(
                f"| {r:g} px | {np.mean(c == 0):.3f} | {np.mean(c == 1):.3f} | {np.mean(c >= 2):.3f} | {c.mean():.3f} |"
            )
    c = counts[RADII_PX[0]]
    share = float(np.mean(c >= 2)) if len(c) else 0.0
    print(
        f"a hedge on that share ({share:.3f}) alone: KDE std / position-only std = "
        f"{hedge_ratio(args.mcmc_photons, share):.2f} at {args.mcmc_photons:g} photons, background 10 "
        f"(0.01: {hedge_ratio(args.mcmc_photons, 0.01):.2f})"
    )


if __name__ == "__main__":
    main()
