"""Linking of blinks: one molecule that stays on for several frames gives several
localizations; they join one group when they come in consecutive frames (allowing
``max_dark_frames`` frames without it) and each lies within ``max_distance_sigmas``
combined uncertainties of the one before it (ThunderSTORM's merging and Picasso's linking
work the same way). A group's position is the inverse-variance-weighted mean of its
localizations, its uncertainty ``1 / sqrt(sum 1 / u_i^2)``, its photons the sum.

Whole-table array code, no loop over localizations: each localization's nearest
neighbour 1, 2, ... frames later comes from one KD-tree query over (x, y, frame) (the frame
scaled so far apart that no neighbour spans two frames; its LINK_CANDIDATES nearest);
links are one-to-one, the closest pair first, a dark frame tried only for localizations
without a link to the next frame; the chains are the connected components of the links.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..localizations import Localizations
from .drift import check_table

#: next-frame neighbours each localization may link to (the closest that is free and near enough)
LINK_CANDIDATES = 4


class LaterFrameNeighbours:
    """Neighbours of localizations a few frames later, for the whole table at once: one
    KD-tree over (x, y, frame), the frame scaled so far apart (4x ``reach_nm``) that no
    neighbour within reach lies in another frame than the one asked for."""

    def __init__(self, locs: Localizations, reach_nm: float) -> None:
        self.reach_nm = float(reach_nm)
        self.gap = 4.0 * self.reach_nm
        self.points = np.c_[locs.x_nm, locs.y_nm, locs.frame * self.gap]
        self.tree = cKDTree(self.points)

    def query(self, sources: np.ndarray, step: int = 1, k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source, target, distance nm): up to ``k`` neighbours of each of ``sources`` in the
        frame ``step`` later, within reach, nearest first per source."""
        k = min(k, len(self.points))
        if k == 0 or len(sources) == 0:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        distance, target = self.tree.query(
            self.points[sources] + [0.0, 0.0, step * self.gap], k=k, distance_upper_bound=self.reach_nm
        )
        distance, target = distance.reshape(len(sources), -1).ravel(), target.reshape(len(sources), -1).ravel()
        source = np.repeat(sources, k)
        found = np.isfinite(distance)
        return source[found], target[found], distance[found]


def _closest_first(source: np.ndarray, target: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one links from candidate pairs, the closest pair first (greedy matching), in
    vectorised rounds: a pair that is the closest of both its source and its target is what
    the greedy pass takes; taking those and dropping the pairs they exclude, until none is
    left, gives the greedy result."""
    order = np.argsort(distance, kind="stable")
    source, target = source[order], target[order]
    taken_source, taken_target = [], []
    while len(source):
        _, best_of_source = np.unique(source, return_index=True)  # sorted by distance: the first is the closest
        _, best_of_target = np.unique(target, return_index=True)
        mutual = np.intersect1d(best_of_source, best_of_target)
        taken_source.append(source[mutual])
        taken_target.append(target[mutual])
        left = ~np.isin(source, source[mutual]) & ~np.isin(target, target[mutual])
        source, target = source[left], target[left]
    if not taken_source:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(taken_source), np.concatenate(taken_target)


def link_groups(
    locs: Localizations, max_dark_frames: int = 1, max_distance_sigmas: float = 3.0, min_radius_nm: float = 20.0
) -> np.ndarray:
    """Group index (0 .., numbered by first frame) of every localization (module doc). A
    link joins localizations within ``max(max_distance_sigmas * sqrt(u1^2 + u2^2),
    min_radius_nm)``."""
    check_table(locs)
    n = len(locs)
    if n == 0:
        return np.zeros(0, int)
    u = np.where(
        np.isfinite(locs.uncertainty_xy_nm) & (locs.uncertainty_xy_nm > 0), locs.uncertainty_xy_nm, min_radius_nm
    )
    reach = max(max_distance_sigmas * np.sqrt(2.0) * float(u.max()), min_radius_nm)
    later = LaterFrameNeighbours(locs, reach)
    successor = np.full(n, -1)
    has_predecessor = np.zeros(n, bool)
    for step in range(1, max_dark_frames + 2):
        unlinked = np.flatnonzero(successor < 0)
        if len(unlinked) == 0:
            break
        source, target, distance = later.query(unlinked, step, LINK_CANDIDATES)
        limit = np.maximum(max_distance_sigmas * np.hypot(u[source], u[target]), min_radius_nm)
        good = (distance <= limit) & ~has_predecessor[target]
        chosen_source, chosen_target = _closest_first(source[good], target[good], distance[good])
        successor[chosen_source] = chosen_target
        has_predecessor[chosen_target] = True
    linked = np.flatnonzero(successor >= 0)
    graph = coo_matrix((np.ones(len(linked)), (linked, successor[linked])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # number the groups by their first localization in frame order, as they start
    rank = np.empty(n, int)
    rank[np.argsort(locs.frame, kind="stable")] = np.arange(n)
    first = np.full(labels.max() + 1, n)
    np.minimum.at(first, labels, rank)
    renumber = np.empty(len(first), int)
    renumber[np.argsort(first)] = np.arange(len(first))
    return renumber[labels]


def linked_table(locs: Localizations, groups: np.ndarray) -> Localizations:
    """One row per group: first frame, weighted position, combined uncertainty, summed
    photons, ``n_frames`` and ``last_frame``."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    u = locs.uncertainty_xy_nm
    w = np.where(np.isfinite(u) & (u > 0), 1.0 / np.where(u > 0, u, 1.0) ** 2, 0.0)
    sum_w = np.bincount(groups, w, n_groups)
    counts = np.bincount(groups, minlength=n_groups)
    plain_x = np.bincount(groups, locs.x_nm, n_groups) / np.maximum(counts, 1)
    plain_y = np.bincount(groups, locs.y_nm, n_groups) / np.maximum(counts, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(sum_w > 0, np.bincount(groups, w * locs.x_nm, n_groups) / sum_w, plain_x)
        y = np.where(sum_w > 0, np.bincount(groups, w * locs.y_nm, n_groups) / sum_w, plain_y)
        uncertainty = np.where(sum_w > 0, 1.0 / np.sqrt(sum_w), np.nan)
    first = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(first, groups, locs.frame)
    last = np.zeros(n_groups, np.int64)
    np.maximum.at(last, groups, locs.frame)
    photons = np.bincount(groups, np.nan_to_num(locs.intensity_photons), n_groups)
    order = np.lexsort((x, first))
    return Localizations(
        frame=first[order],
        x_nm=x[order],
        y_nm=y[order],
        intensity_photons=photons[order],
        uncertainty_xy_nm=uncertainty[order],
        extra={"n_frames": counts[order], "last_frame": last[order]},
    )
