"""Drift of a localization table by redundant cross-correlation (RCC; Wang et al. 2014,
Opt. Express 22, 15982).

The movie is cut into ``n`` segments of consecutive frames; each segment's localizations
are rendered as a blurred histogram (``render_nm`` pixels), and every pair of segments
(i < j) is cross-correlated by FFT. The correlation peak, refined to sub-pixel by a
Gaussian (log-parabola) fit, estimates ``d_j - d_i``. The n(n-1)/2 estimates give the n-1
unknown segment drifts by least squares (``d_0 = 0``); pairs whose residual exceeds
``max_residual_nm`` are dropped and the system solved again (Wang's outlier step). The
per-segment uncertainty is the least-squares standard error from the residuals. Drift
per frame is a cubic interpolation of the segment drifts at their mean frames (linear
beyond the first and last). Frame 1 is the reference (its drift is 0), so
corrected positions stay where the movie started.

Whether to apply it is a tested decision (``decide_drift``): RCC always returns a drift,
also for a still movie (the estimator's noise and bias) and for a table without repeated
structure (a random correlation peak per pair). The same estimate is made on copies of
the table, corrected by the drift found, whose blocks of consecutive frames are shuffled
(blocks long enough to keep a blink in one segment, so each segment holds as many
distinct emitters as in the movie): they keep the structure and the number of
localizations per segment but have no drift, and show what RCC finds in a still movie:
the drift is applied only when it exceeds ``NULL_FACTOR`` times the largest of those
(significant against the null), it is at least 1 / ``MAX_STD_SHARE`` times its segments'
least-squares standard error (significant against its own uncertainty), and the pair
estimates agree with the segment drifts to within its size (RMS pair residual at most
``MAX_RESIDUAL_SHARE`` of it: consistent; a few segments whose correlation peaked on the
wrong place make the pairs disagree by more). The last two are checked first: the null's
three estimates are made only when they pass. Otherwise the positions stay as they are,
and the decision says why in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, ndimage
from scipy.fft import next_fast_len

from ..errors import SmlmInputError
from ..localizations import Localizations

#: fewest localizations per segment for a usable cross-correlation
MIN_LOCALIZATIONS_PER_SEGMENT = 200
#: frame-shuffled copies whose apparent drift is the null (decide_drift)
NULL_PERMUTATIONS = 3
#: a drift is significant when its size exceeds this many times the largest null size
NULL_FACTOR = 2.0
#: a drift is consistent when the RMS pair residual is at most this share of its size
MAX_RESIDUAL_SHARE = 1.0
#: and significant when its segments' mean standard error is at most this share of its size
MAX_STD_SHARE = 1.0 / 3.0
#: a segment's frames are shuffled in about this many blocks, of at least MIN_BLOCK_FRAMES
#: frames (a blink, or a binding event, stays within its block)
BLOCKS_PER_SEGMENT = 8
MIN_BLOCK_FRAMES = 5


@dataclass
class DriftResult:
    frames: np.ndarray  # 1 .. n_frames
    x_nm: np.ndarray  # drift per frame (what was / is to be subtracted)
    y_nm: np.ndarray
    segment_frames: np.ndarray  # mean frame of each segment
    segment_x_nm: np.ndarray
    segment_y_nm: np.ndarray
    segment_std_nm: np.ndarray  # least-squares standard error per segment (per axis)
    residual_nm: float  # RMS residual of the pair estimates after outlier removal
    pairs_used: int
    pairs_total: int
    method: str = "RCC (Wang et al. 2014)"
    settings: dict = field(default_factory=dict)

    @property
    def size_nm(self) -> float:
        """RMS distance of the segment drifts from their mean (nm): how far the segments
        move against each other."""
        dx = self.segment_x_nm - self.segment_x_nm.mean()
        dy = self.segment_y_nm - self.segment_y_nm.mean()
        return float(np.sqrt(np.mean(dx**2 + dy**2)))

    def std_at(self, frames: np.ndarray) -> np.ndarray:
        """Per-axis standard error (nm) of the drift at 1-based frames: the segments' least-
        squares standard errors, interpolated linearly between segment centres."""
        order = np.argsort(self.segment_frames)
        return np.interp(np.asarray(frames, float), self.segment_frames[order], self.segment_std_nm[order])

    def at(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drift (x, y) in nm for 1-based frame numbers."""
        index = np.clip(np.asarray(frames, int) - 1, 0, len(self.frames) - 1)
        return self.x_nm[index], self.y_nm[index]

    def record(self) -> dict:
        """What run.json keeps."""
        return {
            "method": self.method,
            "segments": len(self.segment_frames),
            "pairs_used": self.pairs_used,
            "pairs_total": self.pairs_total,
            "residual_nm": round(float(self.residual_nm), 2),
            "segment_std_nm": round(float(np.mean(self.segment_std_nm)), 2),
            "range_x_nm": round(float(np.ptp(self.x_nm)), 1),
            "range_y_nm": round(float(np.ptp(self.y_nm)), 1),
            **self.settings,
        }


def check_table(locs: Localizations) -> None:
    """One sentence for a table drift, FRC or linking cannot use."""
    if locs.frame is None or len(locs.frame) != len(locs):
        raise SmlmInputError(
            "the localization table has no frame column; drift correction needs the frame of every localization"
        )
    finite = np.isfinite(locs.x_nm) & np.isfinite(locs.y_nm)
    if not finite.all():
        raise SmlmInputError(
            f"{int((~finite).sum())} localizations have NaN or infinite positions; remove them "
            "first (for example with a filter on x and y)"
        )


def plan_segments(locs: Localizations, n_frames: int, segments: int | None = None) -> int:
    """The number of segments: as many as the localizations allow (>= 200 each), 5-20;
    raises SmlmInputError when not even 3 are possible."""
    check_table(locs)
    possible = len(locs) // MIN_LOCALIZATIONS_PER_SEGMENT
    if n_frames < 3 or possible < 3:
        raise SmlmInputError(
            f"drift correction needs at least 3 segments of {MIN_LOCALIZATIONS_PER_SEGMENT} "
            f"localizations; this table has {len(locs)} localizations in {n_frames} frames"
        )
    return int(segments) if segments else int(np.clip(possible, 5, 20) if possible >= 5 else possible)


def estimate_drift(
    locs: Localizations,
    n_frames: int | None = None,
    segments: int | None = None,
    render_nm: float = 20.0,
    blur_px: float = 1.0,
    max_residual_nm: float = 50.0,
    max_drift_nm: float = 2000.0,
) -> DriftResult:
    """Per-frame drift of ``locs`` (frames from 1) by RCC; see the module doc."""
    n_frames = int(n_frames or locs.frame.max())
    n = plan_segments(locs, n_frames, segments)
    edges = np.linspace(0, n_frames, n + 1).round().astype(int)  # frames (edges[k], edges[k+1]]
    segment = np.clip(np.searchsorted(edges, locs.frame, side="left") - 1, 0, n - 1)
    x0, y0 = np.nanmin(locs.x_nm) - max_drift_nm, np.nanmin(locs.y_nm) - max_drift_nm
    # (sizes FFTs are fast for: more zero padding beyond the reach changes no correlation within it)
    shape = (
        next_fast_len(int(np.ceil((np.nanmax(locs.y_nm) - y0 + max_drift_nm) / render_nm)), real=True),
        next_fast_len(int(np.ceil((np.nanmax(locs.x_nm) - x0 + max_drift_nm) / render_nm)), real=True),
    )
    spectra = []
    for k in range(n):
        sel = segment == k
        image, _, _ = np.histogram2d(
            (locs.y_nm[sel] - y0) / render_nm,
            (locs.x_nm[sel] - x0) / render_nm,
            bins=shape,
            range=((0, shape[0]), (0, shape[1])),
        )
        spectra.append(np.fft.rfft2(ndimage.gaussian_filter(image, blur_px)))
    reach = int(np.ceil(max_drift_nm / render_nm))
    rows, shifts = [], []
    for i in range(n):
        for j in range(i + 1, n):
            corr = np.fft.irfft2(spectra[i].conj() * spectra[j], s=shape)
            dy, dx = _peak(np.fft.fftshift(corr), reach)
            rows.append((i, j))
            shifts.append((dx * render_nm, dy * render_nm))
    pairs = np.array(rows)
    shifts = np.array(shifts)
    keep = np.ones(len(pairs), bool)
    for _ in range(3):
        drift, residual, std = _solve(pairs[keep], shifts[keep], n)
        errors = np.hypot(*(_predict(pairs, drift) - shifts).T)
        new_keep = errors <= max_residual_nm
        if not _connected(pairs[new_keep], n):
            break
        if (new_keep == keep).all():
            break
        keep = new_keep
    drift, residual, std = _solve(pairs[keep], shifts[keep], n)
    centres = np.array(
        [locs.frame[segment == k].mean() if (segment == k).any() else 0.5 * (edges[k] + edges[k + 1]) for k in range(n)]
    )
    frames = np.arange(1, n_frames + 1)
    per_frame = [_interpolate(centres, drift[:, a], frames) for a in (0, 1)]
    # frame 1 is the reference: corrected positions stay where the movie started
    x_nm, y_nm = per_frame[0] - per_frame[0][0], per_frame[1] - per_frame[1][0]
    return DriftResult(
        frames,
        x_nm,
        y_nm,
        centres,
        drift[:, 0] - per_frame[0][0],
        drift[:, 1] - per_frame[1][0],
        std,
        residual,
        int(keep.sum()),
        len(pairs),
        settings={"render_nm": render_nm, "max_residual_nm": max_residual_nm},
    )


def apply_drift(locs: Localizations, drift: DriftResult) -> Localizations:
    """A copy of ``locs`` with the drift subtracted, the columns ``drift_x_nm``,
    ``drift_y_nm`` holding what was subtracted and ``drift_std_nm`` its per-axis standard
    error, which joins ``uncertainty_xy`` in quadrature (the corrected position is as
    uncertain as the drift subtracted from it)."""
    dx, dy = drift.at(locs.frame)
    std = drift.std_at(locs.frame)
    extra = {**locs.extra, "drift_x_nm": dx, "drift_y_nm": dy, "drift_std_nm": std}
    return Localizations(
        frame=locs.frame,
        x_nm=locs.x_nm - dx,
        y_nm=locs.y_nm - dy,
        intensity_photons=locs.intensity_photons,
        uncertainty_xy_nm=np.hypot(locs.uncertainty_xy_nm, std),
        extra=extra,
    )


@dataclass
class DriftDecision:
    apply: bool
    reason: str  # one sentence for the CLI, the widget and run.json
    size_nm: float  # the estimate's size (DriftResult.size_nm)
    null_sizes_nm: list[float]  # the sizes found in frame-shuffled copies (none when the estimate's
    # own uncertainty or consistency already refused it)
    residual_nm: float  # RMS residual of the pair estimates
    std_nm: float  # the segments' mean standard error

    def record(self) -> dict:
        return {
            "applied": self.apply,
            "reason": self.reason,
            "size_nm": round(self.size_nm, 2),
            "null_sizes_nm": [round(v, 2) for v in self.null_sizes_nm],
            "null_factor": NULL_FACTOR,
            "residual_nm": round(self.residual_nm, 2),
            "max_residual_share": MAX_RESIDUAL_SHARE,
            "std_nm": round(self.std_nm, 2),
            "max_std_share": round(MAX_STD_SHARE, 3),
        }


def decide_drift(
    locs: Localizations,
    drift: DriftResult,
    n_frames: int | None = None,
    permutations: int = NULL_PERMUTATIONS,
    seed: int = 0,
) -> DriftDecision:
    """Apply ``drift`` (estimated on ``locs``) or not (module doc): the same RCC on
    ``permutations`` copies of the table with shuffled blocks of frames gives the null."""
    n_frames = int(n_frames or locs.frame.max())
    segments = len(drift.segment_frames)
    size, residual = drift.size_nm, drift.residual_nm
    std = float(np.mean(drift.segment_std_nm[1:])) if segments > 1 else float("inf")
    # the estimate's own uncertainty and consistency first: when they refuse it, the null
    # (three more estimates, the costly part) cannot change the decision
    if std > MAX_STD_SHARE * size:
        reason = (
            f"the drift estimate ({size:.1f} nm RMS between segments) is less than three of its standard "
            f"errors ({std:.1f} nm); positions left as they are"
        )
        return DriftDecision(False, reason, size, [], residual, std)
    if residual > MAX_RESIDUAL_SHARE * size:
        reason = (
            f"the segment pairs disagree with the drift estimate by {residual:.1f} nm RMS, more than its size "
            f"({size:.1f} nm); positions left as they are"
        )
        return DriftDecision(False, reason, size, [], residual, std)
    rng = np.random.default_rng(seed)
    settings = {key: drift.settings[key] for key in ("render_nm", "max_residual_nm") if key in drift.settings}
    block = max(MIN_BLOCK_FRAMES, n_frames // (segments * BLOCKS_PER_SEGMENT))
    n_blocks = -(-n_frames // block)
    corrected = apply_drift(locs, drift)  # without the drift found, shuffled: what RCC finds in a still movie
    null = []
    for _ in range(permutations):
        order = rng.permutation(n_blocks)  # block b of the movie becomes block order[b]
        frames = order[(locs.frame - 1) // block] * block + (locs.frame - 1) % block + 1
        shuffled = Localizations(frame=np.minimum(frames, n_frames), x_nm=corrected.x_nm, y_nm=corrected.y_nm)
        null.append(estimate_drift(shuffled, n_frames, segments, **settings).size_nm)
    floor = NULL_FACTOR * max(null)
    if size <= floor:
        reason = (
            f"the drift estimate ({size:.1f} nm RMS between segments) is not above what the same estimate "
            f"finds with blocks of {block} frames shuffled ({max(null):.1f} nm, x{NULL_FACTOR:g} = "
            f"{floor:.1f} nm); positions left as they are"
        )
        return DriftDecision(False, reason, size, null, residual, std)
    reason = (
        f"drift of {size:.1f} nm RMS between segments applied (pair residual {residual:.1f} nm, standard "
        f"error {std:.1f} nm; {max(null):.1f} nm with blocks of {block} frames shuffled)"
    )
    return DriftDecision(True, reason, size, null, residual, std)


def _peak(corr: np.ndarray, reach: int) -> tuple[float, float]:
    """Sub-pixel (dy, dx) of the correlation maximum within ``reach`` px of zero shift
    (fftshift-ed input: zero shift at the centre), by a log-parabola through 3 samples."""
    cy, cx = corr.shape[0] // 2, corr.shape[1] // 2
    r0, c0 = max(cy - reach, 1), max(cx - reach, 1)
    window = corr[r0 : min(cy + reach + 1, corr.shape[0] - 1), c0 : min(cx + reach + 1, corr.shape[1] - 1)]
    r, c = np.unravel_index(int(np.argmax(window)), window.shape)
    r, c = r + r0, c + c0

    def offset(minus, centre, plus):
        values = np.maximum(np.array([minus, centre, plus]), centre * 1e-6 + 1e-12)
        lm, lc, lp = np.log(values)
        denominator = lm - 2 * lc + lp
        return float(np.clip(0.5 * (lm - lp) / denominator, -0.5, 0.5)) if denominator < 0 else 0.0

    dy = offset(corr[r - 1, c], corr[r, c], corr[r + 1, c])
    dx = offset(corr[r, c - 1], corr[r, c], corr[r, c + 1])
    return r + dy - cy, c + dx - cx


def _predict(pairs: np.ndarray, drift: np.ndarray) -> np.ndarray:
    return drift[pairs[:, 1]] - drift[pairs[:, 0]]


def _solve(pairs: np.ndarray, shifts: np.ndarray, n: int):
    """Least-squares segment drifts (n, 2) with d_0 = 0, the RMS residual and the per-axis
    standard error of each segment."""
    design = np.zeros((len(pairs), n - 1))
    for row, (i, j) in enumerate(pairs):
        if j > 0:
            design[row, j - 1] += 1.0
        if i > 0:
            design[row, i - 1] -= 1.0
    solution, *_ = np.linalg.lstsq(design, shifts, rcond=None)
    residuals = design @ solution - shifts
    dof = max(len(pairs) - (n - 1), 1)
    sigma2 = float((residuals**2).sum() / (2 * dof))  # per axis
    covariance = np.linalg.pinv(design.T @ design) * sigma2
    std = np.r_[0.0, np.sqrt(np.clip(np.diag(covariance), 0, None))]
    drift = np.vstack([np.zeros(2), solution])
    return drift, float(np.sqrt(np.mean(residuals**2))), std


def _connected(pairs: np.ndarray, n: int) -> bool:
    """Do the kept pairs still link every segment to segment 0?"""
    reached = {0}
    changed = True
    while changed:
        changed = False
        for i, j in pairs:
            if (i in reached) != (j in reached):
                reached |= {int(i), int(j)}
                changed = True
    return len(reached) == n


def _interpolate(centres: np.ndarray, values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Cubic interpolation through the segment drifts; beyond the first and last segment
    centres, the straight line through the two outermost ones."""
    order = np.argsort(centres)
    x, y = centres[order], values[order]
    inside = np.clip(frames, x[0], x[-1])
    out = interpolate.CubicSpline(x, y, bc_type="natural")(inside) if len(x) >= 4 else np.interp(inside, x, y)
    before, after = frames < x[0], frames > x[-1]
    out[before] = y[0] + (frames[before] - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
    out[after] = y[-1] + (frames[after] - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
    return out
