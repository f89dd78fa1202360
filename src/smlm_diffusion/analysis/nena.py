"""NeNA: the localization precision of a whole table from the distances between
localizations of one molecule in consecutive frames (Endesfelder et al. 2014, Histochem.
Cell Biol. 141, 629), and the same pairs as a check of the reported uncertainties.

A molecule that stays on for two frames is localized twice; each position scatters with
precision sigma per axis, so the distance d between the two is Rayleigh distributed with
scale sqrt(2) sigma:

    p(d) = d / (2 sigma^2) exp(-d^2 / (4 sigma^2))                      (Endesfelder eq. 2)

Every localization's nearest neighbour in the next frame gives one distance; neighbours
that are another molecule add a part that grows linearly with d (uniformly placed
molecules; Endesfelder's linear term). The two are fitted by maximum likelihood on
distances up to ``max_distance_nm``. Endesfelder's third term (a Gaussian of further
molecules at a structure's typical spacing) is left out.

The same pairs check the ``uncertainty_xy`` column without ground truth: for a pair of one
molecule, (x1 - x2) / sqrt(u1^2 + u2^2) (and likewise y) has unit variance when the
uncertainties are right. Pairs closer than ``CHECK_SIGMAS`` combined uncertainties and
mutual nearest neighbours are taken as one molecule; the std is corrected for that cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from ..errors import SmlmInputError
from ..localizations import Localizations
from .drift import check_table
from .linking import LaterFrameNeighbours

#: pairs within this many combined uncertainties count as one molecule in the check
CHECK_SIGMAS = 4.0
#: fewest pairs for a NeNA fit
MIN_PAIRS = 50


@dataclass
class NenaResult:
    precision_nm: float  # sigma per axis, the fitted Rayleigh part
    precision_std_error_nm: float
    same_molecule_fraction: float
    pairs: int  # next-frame neighbour distances used
    max_distance_nm: float
    z_std: float  # std of the pairs' normalised differences (1 when uncertainties are right)
    z_coverage_95: float  # share of |z| <= 1.96 (0.95 when right)
    z_pairs: int

    def record(self) -> dict:
        r = lambda v, n=2: None if not np.isfinite(v) else round(float(v), n)  # noqa: E731
        return {
            "precision_nm": r(self.precision_nm),
            "precision_std_error_nm": r(self.precision_std_error_nm),
            "same_molecule_fraction": r(self.same_molecule_fraction, 3),
            "pairs": self.pairs,
            "max_distance_nm": r(self.max_distance_nm, 1),
            "consecutive_frames_check": {
                "z_std": r(self.z_std, 3),
                "coverage_95": r(self.z_coverage_95, 3),
                "pairs": self.z_pairs,
                "meaning": "differences of one molecule's localizations in "
                "consecutive frames over their combined uncertainty: "
                "std 1 and coverage 0.95 when uncertainty_xy is right",
            },
        }


def next_frame_pairs(locs: Localizations, max_distance_nm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, d): each localization i's nearest neighbour j in the next frame, when closer
    than ``max_distance_nm``, and their distance (``linking.LaterFrameNeighbours``)."""
    return LaterFrameNeighbours(locs, max_distance_nm).query(np.arange(len(locs)))


def nena(locs: Localizations, max_distance_nm: float | None = None) -> NenaResult:
    """NeNA precision and the consecutive-frame check of the uncertainties (module doc)."""
    check_table(locs)
    u = locs.uncertainty_xy_nm
    typical = float(np.nanmedian(u)) if np.isfinite(u).any() else 20.0
    if max_distance_nm is None:  # well beyond a pair's scatter, short of most other molecules
        max_distance_nm = float(np.clip(10.0 * typical, 20.0, 300.0))
    i, j, d = next_frame_pairs(locs, max_distance_nm)
    if len(d) < MIN_PAIRS:
        raise SmlmInputError(
            f"NeNA needs at least {MIN_PAIRS} localizations with a neighbour within "
            f"{max_distance_nm:.0f} nm in the next frame; this table has {len(d)}"
        )
    sigma, sigma_se, fraction = _fit(d, max_distance_nm, typical)
    z_std, coverage, z_pairs = _check(locs, max_distance_nm)
    return NenaResult(sigma, sigma_se, fraction, len(d), max_distance_nm, z_std, coverage, z_pairs)


def _fit(d: np.ndarray, r: float, start_nm: float) -> tuple[float, float, float]:
    """Maximum likelihood of a Rayleigh (scale sqrt(2) sigma) and a linear part, both
    truncated to [0, r]: (sigma, its standard error, the Rayleigh part's weight)."""

    def negative_log_likelihood(params):
        log_sigma, logit = params
        s2 = 2.0 * np.exp(2 * log_sigma)  # Rayleigh scale^2
        w = special.expit(logit)
        rayleigh = d / s2 * np.exp(-(d**2) / (2 * s2)) / -np.expm1(-(r**2) / (2 * s2))
        linear = 2.0 * d / r**2
        return -np.sum(np.log(w * rayleigh + (1 - w) * linear + 1e-300))

    start = [np.log(max(start_nm, 1e-3)), 2.0]
    fit = optimize.minimize(
        negative_log_likelihood, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-6, "maxiter": 2000}
    )
    log_sigma, logit = fit.x
    # standard error from the curvature in log sigma (numerical second derivative)
    h = 1e-3
    f0 = negative_log_likelihood(fit.x)
    curvature = (
        negative_log_likelihood([log_sigma + h, logit]) - 2 * f0 + negative_log_likelihood([log_sigma - h, logit])
    ) / h**2
    sigma = float(np.exp(log_sigma))
    se = sigma / np.sqrt(curvature) if curvature > 0 else float("nan")
    return sigma, float(se), float(special.expit(logit))


def same_molecule_pairs(locs: Localizations, max_distance_nm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, z): next-frame pairs taken as one molecule (mutual nearest neighbours closer
    than CHECK_SIGMAS combined uncertainties) and their normalised differences, shape
    (pairs, 2) for x and y (module doc)."""
    i, j, d = next_frame_pairs(locs, max_distance_nm)
    u = locs.uncertainty_xy_nm
    combined = np.hypot(u[i], u[j])
    back = np.full(len(locs), -1, np.int64)  # j's nearest in the previous frame is i?
    order = np.argsort(d)[::-1]  # the closest pair last: it wins
    back[j[order]] = i[order]
    keep = np.isfinite(combined) & (combined > 0) & (d < CHECK_SIGMAS * combined) & (back[j] == i)
    i, j, combined = i[keep], j[keep], combined[keep]
    z = np.c_[(locs.x_nm[i] - locs.x_nm[j]) / combined, (locs.y_nm[i] - locs.y_nm[j]) / combined]
    return i, j, z


def trimmed_std_factor(c: float = CHECK_SIGMAS) -> float:
    """The std of a 2D unit Gaussian's components within radius ``c``: the pairs' cut at
    ``c`` combined uncertainties trims the tails by this much."""
    return float(np.sqrt(1.0 - c**2 * np.exp(-(c**2) / 2) / (2 * -np.expm1(-(c**2) / 2))))


def _check(locs: Localizations, max_distance_nm: float) -> tuple[float, float, int]:
    """std and 95 % coverage of the pairs' normalised differences (module doc)."""
    _, _, z = same_molecule_pairs(locs, max_distance_nm)
    if len(z) < 10:
        return float("nan"), float("nan"), len(z)
    return float(np.std(z) / trimmed_std_factor()), float(np.mean(np.abs(z) <= 1.96)), len(z)
