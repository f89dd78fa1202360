"""How psi's denoiser weighs the noisy KDE against the data (the posterior issue's width
target): isolated emitters at 200, 1000 and 5000 photons (20x20 frames, background 10,
sigma 0.92 px, as in ``posterior.py --mcmc``). For each noise level t, the true residual
(truth KDE - psi's condition; for a scaled psi divided by its scale map) is noised by the
forward process 16 times and psi's one-shot
estimate y0_hat is read as an emitter shift: the least-squares shift of phi + y0_hat
against the truth KDE's gradient, on the truth's footprint, in 4x pixels.

    OMP_NUM_THREADS=1 python benchmarks/psi_denoising.py [--psi psi] [--emitters 8] [--no-frame]

Columns: "spread over noise" is the std of that shift over the 16 noise draws, "bias" the
RMS over emitters of its mean. For the exact posterior-mean denoiser, the spread over
noise is at most the posterior's own position std (law of total variance), about the
Cramer-Rao bound printed with each photon level: a denoiser above it takes noise in y_t for
position information, and a chain built from it comes out too wide. ``--no-frame`` gives
psi zeros for the raw frame: how much its estimates depend on the data beyond phi's KDE.
``--from-frame`` adds a table of how well each input places the emitter: the RMS error
of the centroid (4x px, within 12 4x px of the truth) of phi's KDE, of psi's condition
(phi's KDE, or the refined fits' KDE for a psi conditioned on them) and of psi's estimate
from the frame alone (condition zeroed, at t = T where y_t is pure noise).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from smlm_diffusion.analysis.crlb import crlb
from smlm_diffusion.inference.phi_path import phi_kde
from smlm_diffusion.models.normalisation import estimate_background, normalise_frames
from smlm_diffusion.models.store import load_model
from smlm_diffusion.reconstruction import ReconstructionSettings
from smlm_diffusion.reconstruction.refine import kde_candidates, refined_psi_input
from smlm_diffusion.simulation import CameraModel, expected_photons, render_kde

NOISE_LEVELS = (1, 4, 8, 20, 36, 60)
DRAWS = 16
SIGMA_PX, BACKGROUND = 0.92, 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psi", default="psi")
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--emitters", type=int, default=8, help="isolated emitters per photon level")
    parser.add_argument("--no-frame", action="store_true", help="psi reads zeros instead of the frame")
    parser.add_argument("--from-frame", action="store_true", help="also: how well each input places the emitter")
    args = parser.parse_args()
    device = torch.device("cpu")
    phi, psi = load_model(args.phi, device), load_model(args.psi, device)
    net, schedule = psi.module.eval(), psi.schedule
    prediction = getattr(net, "prediction", "eps")
    phi_channels = int(phi.module.config.get("in_channels", 1))
    norm = dict(phi.normalisation["input"])
    refined = getattr(net, "condition", "phi") == "refined"
    psi_channels = int(net.config.get("frame_channels", phi_channels))
    norm["channels"] = phi_channels if refined else max(phi_channels, psi_channels)
    fit_settings = ReconstructionSettings(offset_adu=0.0, read_noise_e=0.0, psf_sigma_px=SIGMA_PX)
    kde_scale = float(phi.normalisation["kde_scale"])
    print(
        f"psi {args.psi} ({prediction}-prediction, {'refined-fit condition' if refined else 'phi condition'}, "
        f"{psi_channels if refined else norm['channels']} frame channels), phi {args.phi}; "
        f"{args.emitters} emitters x {DRAWS} noise draws per photon level"
        f"{'; psi reads zeros instead of the frame' if args.no_frame else ''}\n"
    )
    tables: list[str] = []
    print("| photons | CRLB (4x px) | t | noise std | RMS error | spread over noise | bias |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for photons in (200.0, 1000.0, 5000.0):
        rng = np.random.default_rng(31 + int(photons))
        n = args.emitters
        xy = 10 + rng.uniform(-2, 2, size=(n, 2))
        omega = expected_photons(xy[:, :1], xy[:, 1:], np.full((n, 1), photons), (20, 20), SIGMA_PX, BACKGROUND)
        frames = CameraModel(1.0, 0.0, 0.0).expose(omega, rng).astype(np.float64)
        background = estimate_background(
            frames, norm["background_sigma_px"], read_variance_photons2=norm["read_variance_photons2"]
        )
        normalised = normalise_frames(frames, norm, background)
        estimates = phi_kde(phi.module, normalised[:, :phi_channels], device)
        bound = 4 * crlb(10.0, 10.0, photons, BACKGROUND, SIGMA_PX)["x"]
        shifts: dict[int, list] = {t: [] for t in NOISE_LEVELS}
        placed: dict[str, list] = {"phi's KDE": [], "psi's condition": [], "psi from the frame alone": []}
        for k in range(n):
            truth = render_kde(xy[k : k + 1, :1], xy[k : k + 1, 1:], np.ones((1, 1)), (20, 20))[0] * kde_scale
            footprint = truth > 0.05 * truth.max()
            gy, gx = np.gradient(truth)
            basis = np.stack([gx[footprint], gy[footprint], truth[footprint]], axis=1)
            start, frame_input, unit = estimates[k], normalised[k], 1.0
            if refined:  # the condition and precision channel from the maximum-likelihood fit, as in the engine
                candidates = kde_candidates(estimates[k] / kde_scale, frames[k], background[k], 1, fit_settings)
                start, frame_input, scale = refined_psi_input(
                    candidates,
                    frames[k],
                    background[k],
                    normalised[k],
                    SIGMA_PX,
                    fit_settings,
                    fit_residual=psi_channels == 4,
                )
                unit = scale if getattr(net, "target", "residual") == "scaled" else 1.0
            r0 = torch.from_numpy(((truth - start) / unit)[None, None].astype(np.float32)).repeat(DRAWS, 1, 1, 1)
            condition = torch.from_numpy(start[None, None].astype(np.float32)).repeat(DRAWS, 1, 1, 1)
            frame = torch.from_numpy(frame_input[None]).repeat(DRAWS, 1, 1, 1) * (0.0 if args.no_frame else 1.0)
            if args.from_frame:
                tt = torch.full((DRAWS,), schedule.n_steps, dtype=torch.long)
                y_t = torch.randn(r0.shape, generator=torch.Generator().manual_seed(k))
                with torch.no_grad():
                    alone = schedule.predict_y0(y_t, net(y_t, 0 * condition, tt, frame), tt, prediction).mean(0)[0]
                for key, image in zip(placed, (estimates[k], start, unit * alone.numpy())):
                    placed[key].append(_centroid(image, truth))
            for t in NOISE_LEVELS:
                tt = torch.full((DRAWS,), t, dtype=torch.long)
                noise = torch.randn(r0.shape, generator=torch.Generator().manual_seed(1000 * t + k))
                y_t = schedule.q_sample(r0, tt, noise)
                with torch.no_grad():
                    y0 = schedule.predict_y0(y_t, net(y_t, condition, tt, frame), tt, prediction).numpy()[:, 0]
                error = (start + unit * y0 - truth)[:, footprint]  # (draws, footprint pixels)
                coef = np.linalg.lstsq(basis, error.T, rcond=None)[0]
                shifts[t].append(-coef[:2].T)  # (draws, 2): x, y shift in 4x px
        for t in NOISE_LEVELS:
            e = np.array(shifts[t])  # (emitters, draws, 2)
            spread = np.sqrt(np.mean(e.var(axis=1)))
            bias = np.sqrt(np.mean(e.mean(axis=1) ** 2))
            noise_std = float((1 - schedule.gamma[t]).sqrt())
            print(
                f"| {photons:.0f} | {bound:.3f} | {t} | {noise_std:.3f} | {np.sqrt(np.mean(e**2)):.3f} | "
                f"{spread:.3f} | {bias:.3f} |",
                flush=True,
            )
        if args.from_frame:
            tables.append(
                f"| {photons:.0f} | {bound:.3f} | "
                + " | ".join(f"{np.sqrt(np.mean(np.square(v))):.3f}" for v in placed.values())
                + " |"
            )
    if tables:
        print("\nRMS centroid error (4x px) of what each input says:\n")
        print("| photons | CRLB (4x px) | phi's KDE | psi's condition | psi from the frame alone |")
        print("|--:|--:|--:|--:|--:|")
        print("\n".join(tables))


def _centroid(image: np.ndarray, truth: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Centroid of the positive part of ``image`` within ``radius`` 4x px of the truth's, minus the truth's."""
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    centre = np.array([(truth * cols).sum(), (truth * rows).sum()]) / truth.sum()
    weight = np.where(np.hypot(cols - centre[0], rows - centre[1]) < radius, np.clip(image, 0.0, None), 0.0)
    return np.array([(weight * cols).sum(), (weight * rows).sum()]) / max(weight.sum(), 1e-12) - centre


if __name__ == "__main__":
    main()
