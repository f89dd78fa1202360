"""Linking of blinks: one molecule that stays on for several frames gives several
localizations; they join one group when they come in consecutive frames (allowing
``max_dark_frames`` frames without it) and lie within ``max_distance_sigmas`` combined
uncertainties of the group's current position (ThunderSTORM's merging and Picasso's
linking work the same way). A group's position is the inverse-variance-weighted mean of
its localizations, its uncertainty ``1 / sqrt(sum 1 / u_i^2)``, its photons the sum.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..localizations import Localizations
from .drift import check_table


def link_groups(locs: Localizations, max_dark_frames: int = 1, max_distance_sigmas: float = 3.0,
                min_radius_nm: float = 20.0) -> np.ndarray:
    """Group index (0 ..) of every localization. Matching is one-to-one per frame, closest
    pairs first, within ``max(max_distance_sigmas * sqrt(u_loc^2 + u_group^2), min_radius_nm)``."""
    check_table(locs)
    n = len(locs)
    groups = np.full(n, -1, int)
    if n == 0:
        return groups
    u = np.where(np.isfinite(locs.uncertainty_xy_nm) & (locs.uncertainty_xy_nm > 0), locs.uncertainty_xy_nm,
                 min_radius_nm)
    order = np.argsort(locs.frame, kind="stable")
    frames = locs.frame[order]
    starts = np.r_[0, np.flatnonzero(np.diff(frames)) + 1, n]
    # the state of every group: weighted sums of x, y and the weights, and its last frame
    sum_wx, sum_wy, sum_w, last = [], [], [], []
    for a, b in zip(starts[:-1], starts[1:]):
        index = order[a:b]
        frame = frames[a]
        active = np.flatnonzero(np.asarray(last) >= frame - 1 - max_dark_frames) if last else np.zeros(0, int)
        matched = np.zeros(len(index), bool)
        if len(active):
            w = np.asarray(sum_w)[active]
            centres = np.c_[np.asarray(sum_wx)[active] / w, np.asarray(sum_wy)[active] / w]
            group_u = 1.0 / np.sqrt(w)
            reach = max(max_distance_sigmas * np.sqrt(u[index].max() ** 2 + group_u.max() ** 2), min_radius_nm)
            found = cKDTree(centres).query_ball_point(np.c_[locs.x_nm[index], locs.y_nm[index]], reach)
            candidates = [(np.hypot(centres[g, 0] - locs.x_nm[i], centres[g, 1] - locs.y_nm[i]), k, g)
                          for k, (i, near) in enumerate(zip(index, found)) for g in near]
            taken = set()
            for distance, k, g in sorted(candidates):
                i = index[k]
                limit = max(max_distance_sigmas * np.hypot(u[i], group_u[g]), min_radius_nm)
                if matched[k] or g in taken or distance > limit:
                    continue
                matched[k] = True
                taken.add(g)
                group = int(active[g])
                groups[i] = group
                weight = 1.0 / u[i] ** 2
                sum_wx[group] += weight * locs.x_nm[i]
                sum_wy[group] += weight * locs.y_nm[i]
                sum_w[group] += weight
                last[group] = frame
        for k in np.flatnonzero(~matched):
            i = index[k]
            groups[i] = len(last)
            weight = 1.0 / u[i] ** 2
            sum_wx.append(weight * locs.x_nm[i])
            sum_wy.append(weight * locs.y_nm[i])
            sum_w.append(weight)
            last.append(frame)
    return groups


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
    return Localizations(frame=first[order], x_nm=x[order], y_nm=y[order], intensity_photons=photons[order],
                         uncertainty_xy_nm=uncertainty[order],
                         extra={"n_frames": counts[order], "last_frame": last[order]})
