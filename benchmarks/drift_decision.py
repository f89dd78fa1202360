"""Drift as a tested decision (analysis/drift.py, ``decide_drift``) on tables with and
without drift, with and without repeated structure.

    python benchmarks/drift_decision.py [--seed K]

Prints, per table: the RCC estimate's size (RMS between segment drifts), the null sizes
(the same estimate on the drift-corrected table with blocks of frames shuffled), the pair
residual and the segments' standard error, the decision, and the residual drift RMS of
the default output against the truth (what the user's positions carry) beside that of
``--drift off``. Tables: filaments (8 lines, blinks of ~3 frames, 10 nm precision) with a
250 nm linear + sinusoidal drift, still, and with a 15 nm linear drift at 5 nm precision;
independent emitters at 2 per um^2 in 40 frames (no structure repeats between segments);
a still grid of isolated emitters localized in each of 500 frames. Not a test: a table for
docs/performance.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from smlm_diffusion.analysis.drift import apply_drift, decide_drift, estimate_drift
from smlm_diffusion.localizations import Localizations


def filaments(rng, n_sites=6000, n_frames=1500, sigma_nm=10.0, drift=None):
    t = rng.uniform(-0.5, 0.5, n_sites)
    angle = rng.integers(0, 8, n_sites) * np.pi / 8
    sites = np.c_[5000 + 8000 * t * np.cos(angle), 5000 + 8000 * t * np.sin(angle)]
    start = rng.integers(1, n_frames - 10, n_sites)
    length = rng.geometric(1.0 / 3.0, n_sites)
    frame = np.repeat(start, length) + np.concatenate([np.arange(k) for k in length])
    site = np.repeat(np.arange(n_sites), length)
    keep = frame <= n_frames
    frame, site = frame[keep], site[keep]
    dx, dy = drift(frame) if drift is not None else (np.zeros(len(frame)), np.zeros(len(frame)))
    locs = Localizations(
        frame=frame,
        x_nm=sites[site, 0] + dx + rng.normal(0, sigma_nm, len(site)),
        y_nm=sites[site, 1] + dy + rng.normal(0, sigma_nm, len(site)),
        uncertainty_xy_nm=np.full(len(site), sigma_nm),
    )
    return locs, dx, dy, n_frames


def wandering(frame):
    f = np.asarray(frame, float)
    return 250 * f / 1500 + 30 * np.sin(2 * np.pi * f / 500), -150 * f / 1500 + 30 * np.cos(2 * np.pi * f / 700)


def residual_rms(locs, dx, dy) -> float:
    """RMS of (position error due to drift) about its mean: what a rigid shift cannot remove."""
    ex = dx - locs.extra.get("drift_x_nm", np.zeros(len(locs)))
    ey = dy - locs.extra.get("drift_y_nm", np.zeros(len(locs)))
    return float(np.sqrt(np.mean((ex - ex.mean()) ** 2 + (ey - ey.mean()) ** 2) / 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    tables = {
        "filaments, 250 nm drift": filaments(rng, drift=wandering),
        "filaments, still": filaments(rng),
        "filaments, 15 nm drift, 5 nm precision": filaments(
            rng, sigma_nm=5.0, drift=lambda f: (np.asarray(f, float) * 15 / 1500, np.zeros(len(f)))
        ),
    }
    k = int(2 * 13.8**2)
    frame = np.repeat(np.arange(1, 41), k)
    xy = rng.uniform(0, 13800, (40 * k, 2))
    tables["independent emitters, 2/um^2, 40 frames"] = (
        Localizations(frame=frame, x_nm=xy[:, 0], y_nm=xy[:, 1], uncertainty_xy_nm=np.full(len(frame), 20.0)),
        np.zeros(len(frame)),
        np.zeros(len(frame)),
        40,
    )
    grid = np.stack(np.meshgrid(np.arange(20) * 600 + 300, np.arange(20) * 600 + 300), -1).reshape(-1, 2)
    frame = np.repeat(np.arange(1, 501), len(grid))
    xy = np.tile(grid, (500, 1)) + rng.normal(0, 8, (500 * len(grid), 2))
    tables["grid of isolated emitters, still, 500 frames"] = (
        Localizations(frame=frame, x_nm=xy[:, 0], y_nm=xy[:, 1], uncertainty_xy_nm=np.full(len(frame), 8.0)),
        np.zeros(len(frame)),
        np.zeros(len(frame)),
        500,
    )
    print(
        "| table | localizations | size nm | null sizes nm | pair residual nm | std nm | applied | "
        "residual drift nm, default | with --drift off | seconds |"
    )
    print("|---|--:|--:|---|--:|--:|---|--:|--:|--:|")
    for name, (locs, dx, dy, n_frames) in tables.items():
        started = time.perf_counter()
        drift = estimate_drift(locs, n_frames)
        decision = decide_drift(locs, drift, n_frames)
        seconds = time.perf_counter() - started
        out = apply_drift(locs, drift) if decision.apply else locs
        nulls = ", ".join(f"{v:.1f}" for v in decision.null_sizes_nm)
        print(
            f"| {name} | {len(locs)} | {decision.size_nm:.1f} | {nulls} | {decision.residual_nm:.1f} | "
            f"{decision.std_nm:.1f} | {'yes' if decision.apply else 'no'} | {residual_rms(out, dx, dy):.1f} | "
            f"{residual_rms(locs, dx, dy):.1f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
