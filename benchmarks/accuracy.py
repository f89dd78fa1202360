"""Accuracy of the bundled models on fixed, seeded simulated data (issue 3 table).

    python benchmarks/accuracy.py [--phi phi] [--psi psi] [--quick] [--threshold 0.3] [--mix M] [--shift-width W]

Prints SMLM Challenge metrics (250 nm tolerance) for phi in the primary paper's setting and in
64x64 frames at low and high density, the RMSE of isolated emitters against the CRLB,
and for psi the posterior mean (16 samples) against phi alone with the pixel-wise
2-std coverage of the truth KDE. Not a test: it prints a table for docs/models.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from smlm_diffusion.analysis import crlb, evaluate
from smlm_diffusion.inference.devices import PRECISION_CHOICES, inference_dtype
from smlm_diffusion.models.normalisation import kde_scale
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

SETTINGS = {
    "paper": dict(
        height_px=20,
        width_px=20,
        psf_sigma_px=0.92,
        photons=200.0,
        background_photons=2.0,
        structure="disc",
        density_per_um2=1.07,
        read_noise_e=0.0,
    ),
    "low": dict(
        height_px=64,
        width_px=64,
        psf_sigma_px=0.92,
        photons=1000.0,
        background_photons=10.0,
        structure="uniform",
        density_per_um2=0.2,
    ),
    "high": dict(
        height_px=64,
        width_px=64,
        psf_sigma_px=0.92,
        photons=1000.0,
        background_photons=10.0,
        structure="uniform",
        density_per_um2=2.0,
    ),
}


def dataset(name: str, n_frames: int, seed: int = 2024, with_kde: bool = False):
    cfg = SimulationConfig(
        n_frames=n_frames, pixel_size_nm=108.0, offset_adu=100.0, gain_adu_per_photon=1.0, seed=seed, **SETTINGS[name]
    )
    return simulate_stack(cfg, with_kde=with_kde)


def isolated(truth, pixel_size_nm: float, min_distance_nm: float = 1000.0) -> np.ndarray:
    """Mask of true emitters with no other emitter of the same frame within ``min_distance_nm``."""
    keep = np.zeros(len(truth), bool)
    for frame in np.unique(truth.frame):
        idx = np.flatnonzero(truth.frame == frame)
        xy = np.stack([truth.x_nm[idx], truth.y_nm[idx]], 1)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(idx)) * 1e9
        keep[idx] = d.min(axis=1) > min_distance_nm
    return keep


def crlb_lateral_nm(cfg) -> float:
    """sqrt(2) x per-axis CRLB (4 free parameters) of a centred emitter, in nm."""
    half = 8
    sd = crlb(half + 0.5, half + 0.5, cfg.photons, cfg.background_photons, cfg.psf_sigma_px, (2 * half + 1,) * 2)
    return float(np.sqrt(sd["x"] ** 2 + sd["y"] ** 2)) * cfg.pixel_size_nm


def row(name, sim, rec, extra=""):
    m = evaluate(rec.localizations, sim.truth, 250.0)
    iso = isolated(sim.truth, sim.config.pixel_size_nm)
    matched = m.true_index[iso[m.true_index]]
    pred = m.predicted_index[iso[m.true_index]]
    d2 = (rec.localizations.x_nm[pred] - sim.truth.x_nm[matched]) ** 2 + (
        rec.localizations.y_nm[pred] - sim.truth.y_nm[matched]
    ) ** 2
    iso_rmse = float(np.sqrt(d2.mean())) if len(d2) else float("nan")
    bound = crlb_lateral_nm(sim.config)
    print(
        f"| {name:<24} | {len(sim.truth):5d} | {m.precision:6.3f} | {m.recall:6.3f} | {m.jaccard:6.3f} | "
        f"{m.rmse_lateral_nm:6.1f} | {m.efficiency:6.1f} | {iso_rmse:6.1f} | {bound:5.1f} | "
        f"{iso_rmse / bound:5.2f} | {rec.timings_s['total']:6.1f} |{extra}"
    )
    return m


def signal_pixels(truth: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Mask of the KDE pixels where the truth or the mean exceeds 5 % of one emitter's peak."""
    peak = 1.0 / kde_scale()
    return (truth > 0.05 * peak) | (mean > 0.05 * peak)


def coverage(sim, rec, factor: float = 2.0) -> tuple[float, float]:
    """Fraction of KDE pixels with |truth - mean| <= factor * std: (signal pixels, all pixels).
    Signal pixels: truth or mean above 5 % of one emitter's peak."""
    inside_signal, n_signal, inside_all, n_all = 0, 0, 0, 0
    for k, frame in enumerate(rec.frames):
        truth = sim.kde[frame - 1]
        mean, var = rec.mean_kdes[frame], rec.variance_kdes[frame]
        ok = np.abs(truth - mean) <= factor * np.sqrt(var)
        signal = signal_pixels(truth, mean)
        inside_signal += int(ok[signal].sum())
        n_signal += int(signal.sum())
        inside_all += int(ok.sum())
        n_all += ok.size
    return inside_signal / max(n_signal, 1), inside_all / max(n_all, 1)


def coverage_by_place(sim, rec, factor: float = 2.0, near_4x_px: float = 10.0) -> dict[str, tuple[int, float]]:
    """2-std coverage of the signal pixels (as ``coverage``) by where they are: within
    ``near_4x_px`` of a true emitter with no localization within 250 nm ("near a missed
    emitter"), else near a localization ("near a fit"), else "elsewhere"; (pixels, coverage)."""
    px4 = sim.config.pixel_size_nm / 4.0
    counts: dict[str, list[int]] = {}
    for frame in rec.frames:
        truth, mean, var = sim.kde[frame - 1], rec.mean_kdes[frame], rec.variance_kdes[frame]
        rows, cols = np.nonzero(signal_pixels(truth, mean))
        ok = np.abs(truth - mean)[rows, cols] <= factor * np.sqrt(var[rows, cols])
        true, found = sim.truth.in_frame(frame), rec.localizations.in_frame(frame)
        missed = np.setdiff1d(np.arange(len(true)), evaluate(found, true, 250.0).true_index)

        def distance(table) -> np.ndarray:
            if not len(table):
                return np.full(len(rows), np.inf)
            return np.hypot(
                rows[:, None] + 0.5 - table.y_nm[None] / px4, cols[:, None] + 0.5 - table.x_nm[None] / px4
            ).min(axis=1)

        place = np.where(
            distance(true.select(missed)) < near_4x_px,
            "near a missed emitter",
            np.where(distance(found) < near_4x_px, "near a fit", "elsewhere"),
        )
        for name in np.unique(place):
            n, k = counts.setdefault(str(name), [0, 0])
            counts[str(name)] = [n + int((place == name).sum()), k + int(ok[place == name].sum())]
    return {name: (n, k / max(n, 1)) for name, (n, k) in counts.items()}


def _mix(text: str) -> float | tuple[float, ...]:
    return tuple(float(m) for m in text.split("/")) if "/" in text else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--psi", default="auto", help="psi model: auto (as reconstruct), a bundled name or a file")
    parser.add_argument("--threshold", type=float, default=None, help="LoG threshold (default: the settings')")
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    parser.add_argument("--skip-psi", action="store_true")
    parser.add_argument(
        "--mix",
        type=_mix,
        default=None,
        help="sampler variance mix, one number or m1/m2/... per step (default: the settings')",
    )
    parser.add_argument(
        "--shift-width",
        type=float,
        default=None,
        help="scaled psi: the sampler's shift width (default: the plan's own)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="the networks' arithmetic (default auto: bfloat16 where the CPU has it natively)",
    )
    parser.add_argument(
        "--coverage-by-place",
        action="store_true",
        help="also the psi rows' coverage near missed emitters, near fits and elsewhere",
    )
    args = parser.parse_args()
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; tolerance 250 nm; "
        "RMSE lateral = sqrt(mean(dx^2 + dy^2)); CRLB lateral = sqrt(2) x per-axis bound; networks in "
        + ("bfloat16" if inference_dtype("cpu", args.precision) is not None else "float32")
    )
    base = ReconstructionSettings(
        offset_adu=100.0,
        gain_adu_per_photon=1.0,
        phi_model=args.phi,
        psi_model=args.psi,
        device="cpu",
        precision=args.precision,
    )
    if args.threshold is not None:
        base.kde_threshold = args.threshold
    if args.mix is not None:
        base.sampler.variance_mix = args.mix
    if args.shift_width is not None:
        base.sampler.shift_width = args.shift_width
    n = {"paper": 60 if args.quick else 200, "low": 20 if args.quick else 100, "high": 10 if args.quick else 30}
    print("\nphi (no posterior)\n")
    print(
        "| setting                  | truth |  prec. | recall | Jaccard | RMSE nm | eff. | iso RMSE | CRLB | ratio | time s |"  # noqa: E501 (a table row)
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    sims = {}
    for name in ("paper", "low", "high"):
        sims[name] = sim = dataset(name, n[name], with_kde=True)
        settings = ReconstructionSettings(**{**base.to_dict(), "sampler": base.sampler, "posterior": False})
        rec = reconstruct(sim.adu, settings)
        row(f"{name} ({n[name]} frames)", sim, rec)
    if args.skip_psi:
        return
    print("\npsi posterior mean (16 samples, accelerated) vs the same frames through phi\n")
    print(
        "| setting                  | truth |  prec. | recall | Jaccard | RMSE nm | eff. | iso RMSE | CRLB | ratio | time s | coverage signal / all [psi]"  # noqa: E501 (a table row)
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    m_frames = {"paper": 20 if args.quick else 60, "low": 3 if args.quick else 8, "high": 2 if args.quick else 4}
    for name in ("paper", "low", "high"):
        full = sims[name]
        k = m_frames[name]
        sub = type(full)(
            config=full.config, adu=full.adu[:k], truth=full.truth.select(full.truth.frame <= k), kde=full.kde[:k]
        )
        settings = ReconstructionSettings(**{**base.to_dict(), "sampler": base.sampler, "posterior": False})
        row(f"{name} phi ({k} frames)", sub, reconstruct(sub.adu, settings))
        settings = ReconstructionSettings(**{**base.to_dict(), "sampler": base.sampler, "keep_frame_kdes": True})
        rec = reconstruct(sub.adu, settings)
        cov_signal, cov_all = coverage(sub, rec)
        row(f"{name} psi ({k} frames)", sub, rec, f" {cov_signal:.3f} / {cov_all:.3f} [{rec.psi_model}]")
        if args.coverage_by_place:
            print(
                "|   | "
                + "; ".join(
                    f"{place}: {n} px, coverage {c:.3f}"
                    for place, (n, c) in sorted(coverage_by_place(sub, rec).items())
                )
            )
    print("\n20x20 tile, 16 chains, accelerated: seconds per tile (CPU)")
    tile = dataset("paper", 1, seed=7)
    settings = ReconstructionSettings(**{**base.to_dict(), "sampler": base.sampler})
    settings.sampler.skip_empty_below = None
    reconstruct(tile.adu, settings)  # warm-up
    t = time.perf_counter()
    reconstruct(tile.adu, settings)
    print(f"{time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
