"""FRC at a pixel chosen for the data, and NeNA, on localization tables with a known
precision (no movie: tables drawn directly, so the figures isolate the two measures).

    python benchmarks/resolution.py

Table 1: FRC of filaments (60 lines, sites every 5 nm) and of origami-like clusters (3x4
sites 10 nm apart) over a 13.8 um field, localized at sigma nm, 1-5 localizations per
blink (the blinks kept in one half): the resolution at the pixel that fits the field (as
before) and with ``measured_frc`` (a finer pixel on the densest square where needed).
Table 2: NeNA against the simulated precision, blinks of 3 frames on average over sites on
lines (the consecutive-frame check's std(z) and coverage with the true uncertainties).
"""

from __future__ import annotations

import time

import numpy as np

from smlm_diffusion.analysis.frc import frc_resolution, measured_frc
from smlm_diffusion.analysis.nena import nena
from smlm_diffusion.localizations import Localizations

FIELD_NM = 13800.0


def filaments(rng):
    xs, ys = [], []
    for _ in range(60):
        start, angle, length = rng.uniform(0, FIELD_NM, 2), rng.uniform(0, np.pi), rng.uniform(2000, 8000)
        t = np.arange(0, length, 5.0)
        xs.append(start[0] + t * np.cos(angle))
        ys.append(start[1] + t * np.sin(angle))
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = (x > 0) & (x < FIELD_NM) & (y > 0) & (y < FIELD_NM)
    return np.c_[x[keep], y[keep]]


def origami(rng):
    centres = rng.uniform(500, FIELD_NM - 500, (400, 2))
    grid = np.stack(np.meshgrid(np.arange(4) * 10.0, np.arange(3) * 10.0), -1).reshape(-1, 2)
    return (centres[:, None] + grid).reshape(-1, 2)


def table(rng, sites, sigma, blinks):
    site = rng.integers(0, len(sites), blinks)
    blink = np.repeat(np.arange(blinks), rng.integers(1, 6, blinks))
    xy = sites[site[blink]] + rng.normal(0, sigma, (len(blink), 2))
    return Localizations(frame=np.ones(len(blink), int), x_nm=xy[:, 0], y_nm=xy[:, 1]), blink


def blinking(rng, sites, sigma, n_frames=1000, mean_on=3.0):
    start = rng.integers(1, n_frames - 10, len(sites))
    length = rng.geometric(1.0 / mean_on, len(sites))
    frame = np.repeat(start, length) + np.concatenate([np.arange(k) for k in length])
    site = np.repeat(np.arange(len(sites)), length)
    xy = sites[site] + rng.normal(0, sigma, (len(site), 2))
    return Localizations(frame=frame, x_nm=xy[:, 0], y_nm=xy[:, 1], uncertainty_xy_nm=np.full(len(site), sigma))


def main() -> None:
    rng = np.random.default_rng(0)
    print("| structure | sigma nm | localizations | FRC at the field's pixel | measured_frc | pixel nm | region | s |")
    print("|---|--:|--:|--:|--:|--:|---|--:|")
    for name, make in (("filaments", filaments), ("origami", origami)):
        sites = make(rng)
        for sigma in (1.5, 3.0, 10.0):
            locs, groups = table(rng, sites, sigma, 40000)
            old_pixel = max(5.0, max(np.ptp(locs.x_nm), np.ptp(locs.y_nm)) / 2046)
            old = frc_resolution(locs, render_nm=old_pixel, groups=groups).resolution_nm
            t = time.perf_counter()
            new = measured_frc(locs, groups=groups)
            seconds = time.perf_counter() - t
            shown = f"{new.resolution_nm:.1f}" if np.isfinite(new.resolution_nm) else f"< {new.finer_than_nm:.2g}"
            region = "whole field" if new.region_nm is None else f"{new.region_nm[1] - new.region_nm[0]:.0f} nm square"
            print(
                f"| {name} | {sigma:g} | {len(locs)} | {'none' if not np.isfinite(old) else f'{old:.1f}'} | "
                f"{shown} | {new.render_nm:.2g} | {region} | {seconds:.1f} |"
            )
    print("\n| sigma nm | NeNA nm | NeNA / sigma | pairs | z std | coverage 95 |")
    print("|--:|--:|--:|--:|--:|--:|")
    for sigma in (2.0, 5.0, 12.0, 25.0):
        t = np.random.default_rng(4).uniform(-0.5, 0.5, 3000)
        angle = np.random.default_rng(5).integers(0, 8, 3000) * np.pi / 8
        sites = np.c_[5000 + 8000 * t * np.cos(angle), 5000 + 8000 * t * np.sin(angle)]
        result = nena(blinking(rng, sites, sigma))
        print(
            f"| {sigma:g} | {result.precision_nm:.2f} | {result.precision_nm / sigma:.3f} | {result.pairs} | "
            f"{result.z_std:.3f} | {result.z_coverage_95:.3f} |"
        )


if __name__ == "__main__":
    main()
