"""Whole-table post-processing at scale: drift (RCC and its decision), linking, FRC (at a
pixel chosen for the data) and NeNA on tables of 10^5 and 10^6 localizations.

    python benchmarks/postprocess_scale.py [--sites 30000 330000]

A table of blinks (3 frames on average) over sites on 8 lines through a 14 um field, 3000
frames, 8 nm precision, no drift. Prints the seconds of each step and per 10^5
localizations (the target: <= 10 s per 10^5 for all of them together) and the peak
memory of the process so far.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from smlm_diffusion.analysis.drift import decide_drift, estimate_drift
from smlm_diffusion.analysis.frc import measured_frc
from smlm_diffusion.analysis.linking import link_groups
from smlm_diffusion.analysis.nena import nena
from smlm_diffusion.localizations import Localizations

N_FRAMES = 3000


def table(n_sites: int, rng) -> Localizations:
    t = rng.uniform(-0.5, 0.5, n_sites)
    angle = rng.integers(0, 8, n_sites) * np.pi / 8
    sites = np.c_[7000 + 12000 * t * np.cos(angle), 7000 + 12000 * t * np.sin(angle)]
    start = rng.integers(1, N_FRAMES - 10, n_sites)
    length = rng.geometric(1 / 3, n_sites)
    frame = np.repeat(start, length) + np.concatenate([np.arange(k) for k in length])
    site = np.repeat(np.arange(n_sites), length)
    keep = frame <= N_FRAMES
    frame, site = frame[keep], site[keep]
    return Localizations(
        frame=frame,
        x_nm=sites[site, 0] + rng.normal(0, 8.0, len(site)),
        y_nm=sites[site, 1] + rng.normal(0, 8.0, len(site)),
        intensity_photons=np.full(len(site), 1000.0),
        uncertainty_xy_nm=np.full(len(site), 8.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[30000, 330000])
    args = parser.parse_args()
    print("| localizations | drift s | linking s | FRC s | NeNA s | total s | s per 10^5 | peak memory MB |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n_sites in args.sites:
        locs = table(n_sites, np.random.default_rng(0))
        seconds = []
        for step in (
            lambda: decide_drift(locs, estimate_drift(locs, N_FRAMES), N_FRAMES),
            lambda: link_groups(locs),
            lambda: measured_frc(locs),
            lambda: nena(locs),
        ):
            t = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - t)
        total = sum(seconds)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {len(locs)} | "
            + " | ".join(f"{s:.2f}" for s in seconds)
            + f" | {total:.1f} | {total / len(locs) * 1e5:.2f} | {peak:.0f} |"
        )


if __name__ == "__main__":
    main()
