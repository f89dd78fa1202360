"""Emitter priors (where fluorophores sit) and blinking (which are on in a frame).

All positions are in camera pixels, corner origin (top-left corner of the top-left
pixel at (0, 0); x = column axis, y = row axis).
"""

from __future__ import annotations

import numpy as np

STRUCTURES = ("uniform", "disc", "filaments", "clusters")


def uniform_sites(n: int, height_px: float, width_px: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) positions (x, y) uniform over the field."""
    return rng.random((n, 2)) * np.array([width_px, height_px])


def disc_sites(
    n: int, height_px: float, width_px: float, rng: np.random.Generator, radius_px: float = 7.0
) -> np.ndarray:
    """(n, 2) positions uniform in a disc centred on the field (the primary paper's prior)."""
    r = radius_px * np.sqrt(rng.random(n))
    a = 2 * np.pi * rng.random(n)
    return np.stack([width_px / 2 + r * np.cos(a), height_px / 2 + r * np.sin(a)], axis=1)


def filament_curves(
    n_filaments: int,
    height_px: float,
    width_px: float,
    rng: np.random.Generator,
    persistence_px: float = 60.0,
    step_px: float = 0.25,
) -> list[np.ndarray]:
    """Microtubule-like curves: worm-like chains entering the field at a random point
    and heading inwards, bending with persistence length ``persistence_px``.
    Returns a list of (m, 2) polylines (x, y) clipped to a 2-px margin around the field."""
    curves = []
    margin = 2.0
    max_steps = int(4 * (height_px + width_px) / step_px)
    for _ in range(n_filaments):
        start = rng.random(2) * np.array([width_px, height_px])
        to_centre = np.array([width_px / 2, height_px / 2]) - start
        angle = np.arctan2(to_centre[1], to_centre[0]) + rng.normal(0, 0.6)
        points = [start]
        # grow both ways from the start point so the curve crosses the field
        for direction in (1.0, -1.0):
            pos, theta, grown = start.copy(), angle + (0 if direction > 0 else np.pi), []
            turns = rng.normal(0.0, np.sqrt(step_px / persistence_px), size=max_steps)
            for turn in turns:
                theta += turn
                pos = pos + step_px * np.array([np.cos(theta), np.sin(theta)])
                if not (-margin <= pos[0] <= width_px + margin and -margin <= pos[1] <= height_px + margin):
                    break
                grown.append(pos)
            points = (points + grown) if direction > 0 else (grown[::-1] + points)
        curves.append(np.asarray(points))
    return curves


def filament_sites(
    n_filaments: int,
    height_px: float,
    width_px: float,
    rng: np.random.Generator,
    label_spacing_px: float = 0.1,
    label_jitter_px: float = 0.1,
) -> np.ndarray:
    """(n, 2) label sites along filament curves, spaced ``label_spacing_px`` with a
    Gaussian jitter ``label_jitter_px`` (antibody/label size)."""
    sites = []
    for curve in filament_curves(n_filaments, height_px, width_px, rng):
        seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.arange(0.0, arc[-1], label_spacing_px)
        xy = np.stack([np.interp(s, arc, curve[:, 0]), np.interp(s, arc, curve[:, 1])], axis=1)
        sites.append(xy + rng.normal(0.0, label_jitter_px, size=xy.shape))
    return np.concatenate(sites) if sites else np.zeros((0, 2))


def cluster_sites(
    n_clusters: int,
    height_px: float,
    width_px: float,
    rng: np.random.Generator,
    sites_per_cluster: float = 30.0,
    cluster_sigma_px: float = 0.5,
) -> np.ndarray:
    """(n, 2) sites of a Thomas process: uniform centres, Poisson counts, Gaussian spread."""
    centres = uniform_sites(n_clusters, height_px, width_px, rng)
    counts = rng.poisson(sites_per_cluster, size=n_clusters)
    offsets = rng.normal(0.0, cluster_sigma_px, size=(int(counts.sum()), 2))
    return np.repeat(centres, counts, axis=0) + offsets


class BlinkingChain:
    """Two-state Markov blinking per site (DECODE-style on-state lifetimes).

    Each frame an on site turns off with probability ``1 / on_lifetime_frames`` (mean
    on-time = ``on_lifetime_frames``); off sites turn on at the rate that keeps the
    stationary fraction of on sites at ``mean_active / n_sites``.
    """

    def __init__(self, n_sites: int, mean_active: float, on_lifetime_frames: float, rng: np.random.Generator) -> None:
        if on_lifetime_frames < 1:
            raise ValueError("the on-state lifetime must be at least 1 frame")
        self.p_on = min(mean_active / max(n_sites, 1), 0.999)
        self.p_off = 1.0 / on_lifetime_frames
        self.p_activate = min(self.p_on * self.p_off / max(1.0 - self.p_on, 1e-9), 1.0)
        self.rng = rng
        self.state = rng.random(n_sites) < self.p_on

    def step(self, n_frames: int) -> np.ndarray:
        """(n_frames, n_sites) boolean on-states for the next frames."""
        out = np.empty((n_frames, self.state.size), dtype=bool)
        for f in range(n_frames):
            u = self.rng.random(self.state.size)
            self.state = np.where(self.state, u >= self.p_off, u < self.p_activate)
            out[f] = self.state
        return out
