"""Drift, FRC and linking against the truth and against Picasso (issue 14).

    python benchmarks/postprocess.py [--frames 1500] [--end-to-end] [--picasso-python PY]

A simulated movie of a fixed filament structure with blinking sites (128x128, 108 nm
pixels, mean on-time 3 frames) drifts by 250 nm (x) and 150 nm (y) linearly plus a 30 nm
sinusoid (period 500 frames). Tables: the truth jittered by a known precision (5, 10, 20
nm; the algorithms alone) and, with ``--end-to-end``, our phi-path localizations of the
movie. Printed: residual drift RMS per axis (after removing the constant offset, which
only moves the whole image) for no correction, ours and Picasso's RCC (same segment
count); FRC resolutions (ours with random halves as Picasso, and with linked groups
kept together) against Picasso's FRC on the same corrected table; the number of linked
groups against the true on-events. Picasso runs in its own environment through
``benchmarks/_picasso_postprocess.py`` (rows say so when it is missing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from smlm_diffusion.analysis.drift import apply_drift, estimate_drift
from smlm_diffusion.analysis.frc import frc_resolution
from smlm_diffusion.analysis.linking import link_groups
from smlm_diffusion.localizations import Localizations
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

PX = 108.0
HELPER = Path(__file__).with_name("_picasso_postprocess.py")


def movie_config(n_frames: int) -> SimulationConfig:
    return SimulationConfig(
        n_frames=n_frames,
        height_px=128,
        width_px=128,
        density_per_um2=0.6,
        photons=2000.0,
        background_photons=10.0,
        read_noise_e=1.5,
        offset_adu=100.0,
        structure="filaments",
        blinking=True,
        on_lifetime_frames=3.0,
        drift_x_nm=250.0,
        drift_y_nm=150.0,
        drift_wobble_nm=30.0,
        seed=1400,
    )


def jittered(truth: Localizations, sigma_nm: float, seed: int) -> Localizations:
    rng = np.random.default_rng(seed)
    return Localizations(
        frame=truth.frame,
        x_nm=truth.x_nm + rng.normal(0, sigma_nm, len(truth)),
        y_nm=truth.y_nm + rng.normal(0, sigma_nm, len(truth)),
        intensity_photons=np.full(len(truth), 2000.0),
        uncertainty_xy_nm=np.full(len(truth), sigma_nm),
    )


def true_events(truth: Localizations) -> int:
    """On-events: runs of consecutive frames of one site."""
    order = np.lexsort((truth.frame, truth.extra["site_id"]))
    site, frame = truth.extra["site_id"][order], truth.frame[order]
    new = np.r_[True, (site[1:] != site[:-1]) | (frame[1:] != frame[:-1] + 1)]
    return int(new.sum())


def residual_rms(estimate_x, estimate_y, cfg, frames) -> tuple[float, float]:
    true_x, true_y = cfg.drift_nm(frames)
    out = []
    for e, t in ((estimate_x, true_x), (estimate_y, true_y)):
        error = e - t
        out.append(float(np.sqrt(np.mean((error - error.mean()) ** 2))))
    return out[0], out[1]


def picasso(python: str, locs: Localizations, cfg: SimulationConfig, *args) -> dict | None:
    if not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "locs.npz"
        np.savez(
            table,
            frame=locs.frame - 1,
            x=locs.x_nm / PX - 0.5,
            y=locs.y_nm / PX - 0.5,
            photons=locs.intensity_photons,
            lpx=locs.uncertainty_xy_nm / PX,
            lpy=locs.uncertainty_xy_nm / PX,
            frames=cfg.n_frames,
            width=cfg.width_px,
            height=cfg.height_px,
            pixel_size_nm=PX,
        )
        drift_out = Path(folder) / "drift.npy"
        run = subprocess.run(
            [python, str(HELPER), str(table), "--drift-out", str(drift_out), *map(str, args)],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(run.stdout.strip().splitlines()[-1])
        if drift_out.exists():
            report["drift_px"] = np.load(drift_out)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--end-to-end", action="store_true", help="also on our phi-path localizations of the movie")
    parser.add_argument("--picasso-python", default=str(Path.home() / ".cache/picasso-venv/bin/python"))
    args = parser.parse_args()
    cfg = movie_config(args.frames)
    sim = simulate_stack(cfg, quantize=args.end_to_end)
    truth = sim.truth
    frames = np.arange(1, cfg.n_frames + 1)
    tables = {f"truth + {s:g} nm jitter": jittered(truth, s, int(s)) for s in (5.0, 10.0, 20.0)}
    if args.end_to_end:
        from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct

        started = time.perf_counter()
        rec = reconstruct(
            sim.adu,
            ReconstructionSettings(offset_adu=100.0, posterior=False, device="cpu", read_noise_e=1.5, drift="off"),
        )
        tables["ours (phi path), end to end"] = rec.localizations
        print(
            f"phi path on {cfg.n_frames} frames: {time.perf_counter() - started:.0f} s, {len(rec.localizations)} "
            "localizations"
        )
    print(
        f"{cfg.n_frames} frames 128x128, drift 250 / 150 nm linear + 30 nm sinusoid; {len(truth)} true "
        f"localizations in {true_events(truth)} on-events\n"
    )
    print("| table | segments | residual drift RMS x / y nm: none | ours | Picasso RCC | ours s | Picasso s |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    corrected = {}
    for name, locs in tables.items():
        none = residual_rms(np.zeros(len(frames)), np.zeros(len(frames)), cfg, frames)
        started = time.perf_counter()
        drift = estimate_drift(locs, cfg.n_frames)
        seconds = time.perf_counter() - started
        ours = residual_rms(drift.x_nm, drift.y_nm, cfg, frames)
        corrected[name] = apply_drift(locs, drift)
        segments = len(drift.segment_frames)
        theirs = picasso(args.picasso_python, locs, cfg, "--undrift-frames", int(round(cfg.n_frames / segments)))
        if theirs is None:
            p_text, p_seconds = "not installed", ""
        else:
            drift_px = theirs["drift_px"]
            # Picasso's drift is per frame from frame 0 (px); compare as ours
            p = residual_rms(drift_px[:, 0] * PX, drift_px[:, 1] * PX, cfg, frames)
            p_text, p_seconds = f"{p[0]:.1f} / {p[1]:.1f}", f"{theirs['undrift_seconds']:.1f}"
        print(
            f"| {name} | {segments} | {none[0]:.1f} / {none[1]:.1f} | {ours[0]:.1f} / {ours[1]:.1f} | {p_text} | "
            f"{seconds:.1f} | {p_seconds} |",
            flush=True,
        )

    print(
        "\n| table | FRC nm: uncorrected | corrected, random halves | Picasso FRC (same table) | ratio | "
        "corrected, linked groups kept together |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for name, locs in tables.items():
        fixed = corrected[name]
        before = frc_resolution(locs).resolution_nm
        after = frc_resolution(fixed).resolution_nm
        grouped = frc_resolution(fixed, groups=link_groups(fixed)).resolution_nm
        theirs = picasso(args.picasso_python, fixed, cfg, "--frc")
        p = theirs["frc_resolution_nm"] if theirs else float("nan")
        print(f"| {name} | {before:.1f} | {after:.1f} | {p:.1f} | {after / p:.2f} | {grouped:.1f} |", flush=True)

    print(
        "\n| table | true on-events | our groups (1 dark frame) | our groups (0 dark) | Picasso link (0 dark, "
        "r 3 sigma) |"
    )
    print("|---|--:|--:|--:|--:|")
    events = true_events(truth)
    for name, locs in tables.items():
        fixed = corrected[name]
        ours1 = int(link_groups(fixed, max_dark_frames=1).max()) + 1
        ours0 = int(link_groups(fixed, max_dark_frames=0).max()) + 1
        sigma_px = float(np.median(fixed.uncertainty_xy_nm)) / PX
        theirs = picasso(args.picasso_python, fixed, cfg, "--link-r-max", 3 * sigma_px, "--link-dark", 0)
        print(f"| {name} | {events} | {ours1} | {ours0} | {theirs['linked_groups'] if theirs else 'n/a'} |", flush=True)


if __name__ == "__main__":
    main()
