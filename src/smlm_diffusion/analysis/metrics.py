"""Per-frame one-to-one matching and the SMLM Challenge 2016 metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..localizations import Localizations

DEFAULT_TOLERANCE_NM = 250.0


def match_points(predicted_xy: np.ndarray, true_xy: np.ndarray, tolerance: float):
    """Hungarian one-to-one matching of two point sets (same units), keeping pairs
    within ``tolerance``; among assignments with the most pairs, the one with the
    smallest total distance. Returns (pred_index, true_index, distance)."""
    predicted_xy = np.asarray(predicted_xy, np.float64).reshape(-1, 2)
    true_xy = np.asarray(true_xy, np.float64).reshape(-1, 2)
    if len(predicted_xy) == 0 or len(true_xy) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    dist = np.linalg.norm(predicted_xy[:, None, :] - true_xy[None, :, :], axis=2)
    too_far = dist > tolerance
    # a penalty larger than any sum of admissible distances: maximise the pair count first
    cost = np.where(too_far, tolerance * (dist.shape[0] + dist.shape[1] + 1) + 1.0, dist)
    rows, cols = linear_sum_assignment(cost)
    keep = ~too_far[rows, cols]
    return rows[keep], cols[keep], dist[rows[keep], cols[keep]]


@dataclass
class MatchResult:
    """Counts, SMLM Challenge metrics and the matched index pairs (into the input tables)."""

    true_positives: int
    false_positives: int
    false_negatives: int
    recall: float
    precision: float
    jaccard: float
    rmse_lateral_nm: float
    rmse_x_nm: float
    rmse_y_nm: float
    efficiency: float
    tolerance_nm: float
    predicted_index: np.ndarray = field(repr=False, default=None)
    true_index: np.ndarray = field(repr=False, default=None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("predicted_index")
        out.pop("true_index")
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in out.items()}


def efficiency(jaccard: float, rmse_lateral_nm: float, alpha_per_nm: float = 1.0) -> float:
    """SMLM Challenge 2016: E = 100 - sqrt((100 - 100 J)^2 + (alpha * RMSE)^2)."""
    if np.isnan(rmse_lateral_nm):
        rmse_lateral_nm = 0.0 if jaccard == 0 else rmse_lateral_nm
    return float(100.0 - np.sqrt((100.0 - 100.0 * jaccard) ** 2 + (alpha_per_nm * rmse_lateral_nm) ** 2))


def evaluate(predicted: Localizations, truth: Localizations, tolerance_nm: float = DEFAULT_TOLERANCE_NM) -> MatchResult:
    """Match frame by frame within ``tolerance_nm`` and compute recall, precision,
    Jaccard = TP/(TP+FP+FN), lateral RMSE of the matched pairs and efficiency."""
    if not tolerance_nm > 0:
        raise ValueError("the matching tolerance must be positive (nm)")
    pred_idx, true_idx = [], []
    for frame in np.union1d(np.unique(predicted.frame), np.unique(truth.frame)):
        p = np.flatnonzero(predicted.frame == frame)
        t = np.flatnonzero(truth.frame == frame)
        pi, ti, _ = match_points(
            np.stack([predicted.x_nm[p], predicted.y_nm[p]], 1),
            np.stack([truth.x_nm[t], truth.y_nm[t]], 1),
            tolerance_nm,
        )
        pred_idx.append(p[pi])
        true_idx.append(t[ti])
    pred_idx = np.concatenate(pred_idx) if pred_idx else np.zeros(0, np.int64)
    true_idx = np.concatenate(true_idx) if true_idx else np.zeros(0, np.int64)
    tp = len(pred_idx)
    fp = len(predicted) - tp
    fn = len(truth) - tp
    dx = predicted.x_nm[pred_idx] - truth.x_nm[true_idx]
    dy = predicted.y_nm[pred_idx] - truth.y_nm[true_idx]
    nan = float("nan")
    rmse_x = float(np.sqrt(np.mean(dx**2))) if tp else nan
    rmse_y = float(np.sqrt(np.mean(dy**2))) if tp else nan
    rmse = float(np.sqrt(np.mean(dx**2 + dy**2))) if tp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    precision = tp / (tp + fp) if tp + fp else nan
    union = tp + fp + fn
    jaccard = tp / union if union else 1.0
    return MatchResult(
        tp,
        fp,
        fn,
        recall,
        precision,
        jaccard,
        rmse,
        rmse_x,
        rmse_y,
        efficiency(jaccard, rmse),
        float(tolerance_nm),
        pred_idx,
        true_idx,
    )
