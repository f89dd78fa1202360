"""One frame's localizations: LoG candidates on the KDE (phi's estimate; on the posterior
path also the posterior mean's new ones, ``posterior_candidates``), refined by maximum
likelihood on the raw frame (``analysis/fit.py``), the detection decision (``decide``:
the likelihood-ratio test of ``analysis/detection.py``, the knobs and the fit flags), and
the per-localization uncertainty columns.

Before the final fit, fits that two emitters explain better are split
(``analysis/multi_emitter.py``), and fits that converged on one emitter are merged.
``uncertainty_xy [nm]`` is the larger of the per-axis CRLB and the sandwich (Huber-White)
std of the fit, whose residuals widen it where the model does not explain the window,
with the multi-emitter ambiguity of a fit left single added in quadrature
(``benchmarks/calibration.py``: std(z) 0.85-0.97 on isolated emitters; on dense frames
the misses are emitters within ~0.8 PSF sigma of another, which no single-frame test can
separate).

Columns beyond the core table: ``crlb_xy [nm]`` (per-axis Cramer-Rao bound of the joint
fit, neighbours included), ``robust_xy [nm]`` (the sandwich std), ``likelihood_xy [nm]``
(the precision from the likelihood alone, as above; ``uncertainty_xy`` on the phi path),
``posterior_spread_xy [nm]`` (spread of matched positions over the posterior samples;
posterior runs only; there ``uncertainty_xy`` is the larger of it and the likelihood's
precision), ``sample_fraction`` (posterior runs: the share of samples holding the
emitter), ``probability`` (that the row is a real emitter: one minus its local false
discovery rate among the movie's candidates), ``detection_statistic`` and ``p_value`` (the
test's), ``background [photon]`` (fitted local background per pixel), ``sigma [nm]`` (the
PSF sigma of the fit, as ThunderSTORM writes it), ``fit_deviance`` (Poisson deviance per
pixel of the fit window, about 1 for a good fit), ``fit_flag`` (``FIT_OK`` ... below;
docs/detection.md) and ``fit_ok`` (1 exactly for ``FIT_OK``). A fit that failed or ran
away keeps its start and has no photons (NaN); a crowd member keeps its KDE position, its
aperture photons and Mortensen's approximate precision.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from ..analysis.crlb import mortensen_precision_px
from ..analysis.detection import detection_probability, detection_statistic, p_value, probability_for
from ..analysis.fit import FitResult, estimate_psf_sigma, fit_emitters, joint_groups
from ..analysis.localize import localize_kde
from ..analysis.multi_emitter import distinct, split_merged
from ..localizations import Localizations
from .uncertainty import aperture_photons, sample_spread

#: rounds of dropping converged duplicates and refitting their groups after the split test
DISTINCT_ROUNDS = 3
#: PSF width used when a movie has too few bright isolated spots to measure it (camera px)
FALLBACK_PSF_SIGMA_PX = 1.0


def kde_candidates(
    mean: np.ndarray, photons: np.ndarray, background: np.ndarray, frame: int, settings
) -> Localizations:
    """LoG detections on a KDE (eq. 3 units) with background-subtracted aperture photons."""
    px = settings.pixel_size_nm
    locs = localize_kde(mean, px, frame, threshold=settings.kde_threshold)
    xy = locs.xy_px(px)
    locs.intensity_photons = aperture_photons(photons, xy[:, 0], xy[:, 1], background=background)
    return locs


def chunk_candidates(
    kdes: np.ndarray,
    photons: np.ndarray,
    background: np.ndarray,
    first_index: int,
    measured: dict[int, Localizations],
    settings,
    indices=None,
) -> list[Localizations]:
    """``kde_candidates`` of a chunk's frames (``indices`` into it; default all), reusing those
    already found for a frame (``measured``, by 1-based frame number: the PSF measurement's)."""
    indices = range(len(kdes)) if indices is None else indices
    found = [measured.get(first_index + i + 1) for i in indices]
    return [
        c if c is not None else kde_candidates(kdes[i], photons[i], background[i], first_index + i + 1, settings)
        for i, c in zip(indices, found)
    ]


def posterior_candidates(
    phi_candidates: Localizations, mean_candidates: Localizations, radius_px: float, pixel_size_nm: float
) -> Localizations:
    """The posterior path's candidates: phi's, and those of the posterior mean with none of
    phi's within ``radius_px`` (emitters psi restored). A fitted emitter whose mass psi's
    chains spread or doubt is not dropped by a threshold on the mean: its fit goes through
    the detection knob as on the phi path, and its ``probability`` column says how many
    chains hold it."""
    if not len(phi_candidates):
        return mean_candidates
    if not len(mean_candidates):
        return phi_candidates
    phi_xy, mean_xy = phi_candidates.xy_px(pixel_size_nm), mean_candidates.xy_px(pixel_size_nm)
    nearest = np.linalg.norm(mean_xy[:, None] - phi_xy[None], axis=2).min(axis=1)
    return Localizations.concatenate([phi_candidates, mean_candidates.select(nearest > radius_px)])


def refined_psi_input(
    candidates: Localizations,
    photons: np.ndarray,
    background: np.ndarray,
    frame_input: np.ndarray,
    psf_sigma_px: float,
    settings,
    shift_width: float = 1.0,
    fit_residual: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(condition (4H, 4W) model units, frame channels (3 or 4, H, W), residual scale map (4H,
    4W)) for a psi conditioned on refined localizations (``models.conditioning``): phi's
    candidates (``kde_candidates`` of its estimate) fitted by maximum likelihood, without the
    detection knob, rendered as a KDE, their ``uncertainty_xy`` as the precision channel
    beside the frame's two channels, and the scale map of a scaled psi's residual (its
    emitters' part times ``shift_width``, the sampler's width correction). ``fit_residual``
    (a psi reading 4 frame channels): the fits' Poisson residual follows as a fourth channel."""
    from ..models.conditioning import fit_residual_channel, refined_condition, residual_scale  # imports torch

    locs = refine_frame(
        candidates,
        photons,
        background,
        psf_sigma_px,
        replace(settings, min_photons=0.0, false_alarm=1.0, keep_flagged=True),
    )
    xy = locs.xy_px(settings.pixel_size_nm)
    std_px = locs.uncertainty_xy_nm / settings.pixel_size_nm
    condition, precision = refined_condition(xy[:, 0], xy[:, 1], std_px, np.shape(photons))
    scale = residual_scale(xy[:, 0], xy[:, 1], std_px, np.shape(photons), shift_width=shift_width)
    channels = [np.asarray(frame_input)[:2], precision[None]]
    if fit_residual:
        channels.append(
            fit_residual_channel(
                photons, background, xy[:, 0], xy[:, 1], locs.intensity_photons, psf_sigma_px, settings.read_noise_e**2
            )[None]
        )
    return condition, np.concatenate(channels).astype(np.float32), scale


class PipelineFits:
    """The engine's own fits of training frames, for ``train psi --condition refined
    --condition-fits pipeline``: phi's KDE (float32), LoG candidates and the maximum-likelihood
    refinement without the detection knob, each frame with its own PSF sigma and read noise
    (``training_data.training_batch``'s ``fitter``: per frame x, y, std in px and photons).
    psi then learns from exactly what the engine gives it, crowds, misses and false
    detections included."""

    def __init__(self, phi_model: str = "phi", pixel_size_nm: float = 108.0) -> None:
        self.phi_model, self.pixel_size_nm = phi_model, pixel_size_nm
        self._phi = None

    def __getstate__(self) -> dict:  # worker processes load phi themselves
        return {**self.__dict__, "_phi": None}

    def __call__(self, photons, background, normalised, psf_sigma_px, read_noise_e) -> list[tuple]:
        import torch

        from ..inference.phi_path import phi_kde
        from ..models.store import load_model
        from .settings import ReconstructionSettings

        if self._phi is None:
            self._phi = load_model(self.phi_model, torch.device("cpu"))
        phi, px = self._phi, self.pixel_size_nm
        channels = int(phi.module.config.get("in_channels", 1))
        estimates = phi_kde(phi.module, np.asarray(normalised)[:, :channels], torch.device("cpu"))
        estimates = estimates / float(phi.normalisation["kde_scale"])
        fits = []
        for i in range(len(photons)):
            settings = ReconstructionSettings(
                pixel_size_nm=px,
                offset_adu=0.0,
                psf_sigma_px=float(psf_sigma_px[i]),
                read_noise_e=float(read_noise_e[i]),
                min_photons=0.0,
                false_alarm=1.0,
                keep_flagged=True,
            )
            candidates = kde_candidates(estimates[i], photons[i], background[i], 1, settings)
            locs = refine_frames(
                [candidates], photons[i : i + 1], background[i : i + 1], settings.psf_sigma_px, settings
            )[0]
            xy = locs.xy_px(px)
            fits.append((xy[:, 0], xy[:, 1], locs.uncertainty_xy_nm / px, locs.intensity_photons))
        return fits


def movie_psf_sigma(
    photons: np.ndarray, backgrounds: np.ndarray, candidates: list[Localizations], settings
) -> tuple[float, int]:
    """PSF sigma (camera px) from the bright isolated candidates of some frames that pass
    the detection test at the fallback width: a bright ridge of background (a cell's edge)
    is no spot to measure a PSF on, and at a wrongly wide PSF it would pass as an emitter."""
    px, read_variance = settings.pixel_size_nm, settings.read_noise_e**2

    def passes(frame, background, spots):
        statistic = detection_statistic(
            frame, background, spots[:, 0], spots[:, 1], spots[:, 2], FALLBACK_PSF_SIGMA_PX, read_variance
        )
        return p_value(statistic, FALLBACK_PSF_SIGMA_PX) <= settings.false_alarm

    positions = [np.c_[c.xy_px(px), c.intensity_photons] for c in candidates]
    return estimate_psf_sigma(list(photons), list(backgrounds), positions, read_variance, spot_test=passes)


def refine_frame(
    candidates: Localizations,
    photons: np.ndarray,
    background: np.ndarray,
    psf_sigma_px: float,
    settings,
    samples: np.ndarray | None = None,
    kde_scale: float = 1.0,
    p_values_out: list | None = None,
) -> Localizations:
    """Maximum-likelihood positions and photons, the detection decision (``decide``), and the
    uncertainty columns (module doc) for one frame's candidates; with posterior ``samples``,
    also their spread and the fraction of samples holding each (``sample_fraction``: psi's
    doubt, reported beside the test's ``probability``, not multiplied into it; the product
    was measured to be far too low, docs/detection.md)."""
    locs = refine_frames(
        [candidates], np.asarray(photons)[None], np.asarray(background)[None], psf_sigma_px, settings, decide_rows=False
    )
    locs = decide(locs, settings, p_values_out)[0]
    if samples is not None:  # the columns exist on every posterior frame, also an empty one
        px = settings.pixel_size_nm
        spread_px, fraction = np.zeros(0), np.zeros(0)
        if len(locs):
            # samples are localized without the KDE blob split (a least-squares fit per merged
            # blob, the dominant cost on 16 samples): a sample that merges two emitters then
            # shows it as a displaced position, which is part of the spread it should show
            # (in threads: scipy's filters release the GIL, and psi is not running meanwhile)
            with ThreadPoolExecutor(worker_threads()) as threads:
                sample_xys = list(
                    threads.map(
                        lambda s: localize_kde(
                            s / kde_scale, px, 1, threshold=settings.kde_threshold, split_mass=None
                        ).xy_px(px),
                        samples,
                    )
                )
            spread_px, fraction = sample_spread(locs.xy_px(px), sample_xys, settings.match_radius_px)
        locs.extra["posterior_spread_xy_nm"] = spread_px * px
        locs.extra["sample_fraction"] = fraction
        if len(locs):  # the larger of the likelihood's precision and psi's spread (module doc)
            locs.uncertainty_xy_nm = np.fmax(locs.uncertainty_xy_nm, spread_px * px)
    return locs


def decide(tables: list[Localizations], settings, p_values_out: list | None = None) -> list[Localizations]:
    """The detection decision over a batch of frames' fitted candidates (``refine_frames``
    with ``decide_rows=False``): each row's ``probability`` from the batch's p-values
    (``analysis.detection.detection_probability``; the engine recomputes it over the whole
    movie at the end, ``final_probability``), then the knobs (``false_alarm``,
    ``min_photons``) and the flags (``keep_flagged``). ``p_values_out``: a list that
    receives every candidate's p-values, kept or not, one array per frame."""
    if not tables:
        return tables
    joined = Localizations.concatenate(tables)
    p_values = joined.extra["p_value"]
    if p_values_out is not None:  # one array per frame
        p_values_out.extend(np.asarray(t.extra["p_value"], np.float64) for t in tables)
    probability = detection_probability(p_values)[0]
    kept = p_values <= settings.false_alarm
    if settings.min_photons > 0:
        kept &= joined.intensity_photons >= settings.min_photons
    if not settings.keep_flagged:
        kept &= np.isin(joined.extra["fit_flag"], KEPT_FLAGS)
    out, start = [], 0
    for table in tables:
        stop = start + len(table)
        table.extra["probability"] = probability[start:stop]
        out.append(table.select(kept[start:stop]))
        start = stop
    return out


def final_probability(tables: list[Localizations], p_values: list[np.ndarray]) -> None:
    """Each row's ``probability`` (in place) from the p-values of every candidate of the
    movie (``p_values``: arrays, kept and rejected candidates alike): a movie's candidates
    tell its share of noise far better than one chunk's."""
    if not tables or not p_values:
        return
    pooled = np.concatenate(p_values)
    kept = np.concatenate([t.extra["p_value"] for t in tables]) if tables else np.zeros(0)
    probability = probability_for(kept, pooled)
    start = 0
    for table in tables:
        stop = start + len(table)
        table.extra["probability"] = probability[start:stop]
        start = stop


def refine_frames(
    candidates: list[Localizations],
    photons: np.ndarray,
    background: np.ndarray,
    psf_sigma_px: float,
    settings,
    decide_rows: bool = True,
) -> list[Localizations]:
    """``refine_frame`` (without samples) for a batch of frames (F, H, W) at once: one
    batched fit over all their emitters, each frame's fitted as if alone (far fewer, larger
    array operations than frame by frame)."""
    px = settings.pixel_size_nm
    photons = np.asarray(photons, np.float64)
    background = np.broadcast_to(np.asarray(background, np.float64), photons.shape)
    f = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
    locs = Localizations.concatenate(candidates)
    xy = locs.xy_px(px)
    read_variance = settings.read_noise_e**2
    if settings.refine and len(locs):
        fit = fit_emitters(photons, background, xy[:, 0], xy[:, 1], psf_sigma_px, read_variance, frame_index=f)
        ambiguity_px = np.zeros(len(locs))
        xs, ys, parent, from_split, fs = xy[:, 0], xy[:, 1], np.arange(len(locs)), np.zeros(len(locs), bool), f
        if settings.multi_emitter:
            split = split_merged(
                photons, background, fit, psf_sigma_px, read_variance, settings.min_photons, frame_index=f
            )
            ambiguity_px = split.ambiguity_px
            if split.from_split.any():  # refit the frames with a split jointly from the new starts
                # by frame, each frame's own starts first and its added ones after, as when alone
                order = np.argsort(f[split.parent], kind="stable")
                xs, ys, parent, from_split, ambiguity_px = (
                    a[order] for a in (split.x_px, split.y_px, split.parent, split.from_split, split.ambiguity_px)
                )
                fs = f[parent]
                # frames without a split keep their fit: each frame ends as it would alone
                fit = _take(fit, parent)
                _refit(fit, np.isin(fs, fs[from_split]), photons, background, xs, ys, fs, psf_sigma_px, read_variance)
        # two starts that converged on one emitter (a split's, or two of phi's candidates on one
        # bright spot): drop the dimmer and refit its group (the other groups' fits depend on
        # their own starts only: they stand); a refitted group can converge again, so until
        # none do (at most DISTINCT_ROUNDS times)
        check = np.ones(len(xs), bool)
        for _ in range(DISTINCT_ROUNDS):
            keep = np.ones(len(xs), bool)
            keep[check] = distinct(fit.x_px[check], fit.y_px[check], fit.photons[check], 0.5 * psf_sigma_px, fs[check])
            if keep.all():
                break
            labels = np.full(len(xs), -1)
            labels[check] = joint_groups(xs[check], ys[check], psf_sigma_px, fs[check])
            again = check & np.isin(labels, labels[~keep])
            xs, ys, parent, from_split, ambiguity_px, fs, again = (
                a[keep] for a in (xs, ys, parent, from_split, ambiguity_px, fs, again)
            )
            fit = _take(fit, keep)
            _refit(fit, again, photons, background, xs, ys, fs, psf_sigma_px, read_variance)
            check = again
        if len(parent) != len(locs) or from_split.any():
            # a split pair shares its parent's KDE mass
            mass = locs.extra.get("kde_mass", np.full(len(locs), np.nan))[parent] / np.where(from_split, 2.0, 1.0)
            locs = Localizations(
                frame=locs.frame[parent],
                x_nm=xs * px,
                y_nm=ys * px,
                intensity_photons=aperture_photons(photons, xs, ys, background=background, frame_index=fs),
                extra={"kde_mass": mass},
            )
            f = fs
            xy = locs.xy_px(px)
        ok, crowded = fit.ok, fit.crowded
        # a fit that failed or ran away has no photon count worth the name (the aperture sum
        # of a background ridge can be large): NaN, so the detection knob keeps it only at 0
        intensity = np.where(ok, fit.photons, np.where(fit.crowded, locs.intensity_photons, np.nan))
        level = np.where(ok, fit.background_photons, _level_at(background, xy, f))
        crlb_px = np.sqrt(0.5 * (fit.crlb_x_px**2 + fit.crlb_y_px**2))
        robust_px = np.sqrt(0.5 * (fit.robust_x_px**2 + fit.robust_y_px**2))
        locs.x_nm, locs.y_nm = fit.x_px * px, fit.y_px * px
        deviance = np.where(ok, fit.deviance, np.nan)
    else:
        ok, crowded = np.zeros(len(locs), bool), np.ones(len(locs), bool)  # not fitted: KDE positions
        intensity, level = locs.intensity_photons, _level_at(background, xy, f)
        crlb_px = robust_px = deviance = np.full(len(locs), np.nan)
        ambiguity_px = np.zeros(len(locs))
    # Mortensen's approximation where there is no fit (computed only there: it integrates numerically)
    approximate = np.full(len(locs), np.nan)
    if (~ok).any():
        known = np.where(np.isnan(intensity), locs.intensity_photons, intensity)[~ok]  # aperture photons where NaN
        approximate[~ok] = mortensen_precision_px(
            np.maximum(known, 1.0), np.maximum(level[~ok], 0.0) + read_variance, psf_sigma_px
        )
    # the larger of the CRLB and the sandwich std (the bound where the model fits, more where the
    # residuals say it does not), with the multi-emitter ambiguity in quadrature (module doc)
    precision_px = np.where(ok, np.hypot(np.fmax(crlb_px, robust_px), ambiguity_px), approximate)
    # the detection test (analysis/detection.py) at every position, fitted or not
    xy = np.c_[fit.x_px, fit.y_px] if settings.refine and len(locs) else locs.xy_px(px)
    statistic = detection_statistic(
        photons,
        background,
        xy[:, 0],
        xy[:, 1],
        np.where(ok, intensity, 0.0),
        psf_sigma_px,
        read_variance,
        frame_index=f,
    )
    p_values = p_value(statistic, psf_sigma_px)
    flag = fit_flags(
        ok,
        crowded,
        intensity,
        aperture_photons(photons, xy[:, 0], xy[:, 1], background=background, frame_index=f),
        level,
        precision_px,
        read_variance,
    )
    locs.intensity_photons = intensity
    locs.uncertainty_xy_nm = precision_px * px
    locs.extra.update(
        {
            "crlb_xy_nm": np.where(ok, crlb_px * px, np.nan),
            "likelihood_xy_nm": precision_px * px,
            "background_photons": level,
            "sigma_nm": np.full(len(locs), psf_sigma_px * px),
            "fit_deviance": deviance,
            "fit_ok": (flag == FIT_OK).astype(np.int64),
            "fit_flag": flag,
            "robust_xy_nm": robust_px * px,
            "probability": np.full(len(locs), np.nan),
            "detection_statistic": statistic,
            "p_value": p_values,
        }
    )
    tables = [locs.select(f == i) for i in range(len(candidates))]
    return decide(tables, settings) if decide_rows else tables


#: ``fit_flag`` codes: a good fit; a fit that failed or ran away (its start is kept); a member
#: of a crowd too large for a joint fit (KDE position, Mortensen's precision); a fit whose
#: precision is worse than a camera pixel; a fit whose photons ran away
FIT_OK, FIT_FAILED, FIT_CROWD, FIT_IMPRECISE, FIT_RUNAWAY_PHOTONS = 0, 1, 2, 3, 4
#: the flags whose rows the default table keeps (``keep_flagged`` keeps every row)
KEPT_FLAGS = (FIT_OK, FIT_CROWD)


def fit_flags(
    ok: np.ndarray,
    crowded: np.ndarray,
    photons: np.ndarray,
    aperture: np.ndarray,
    level: np.ndarray,
    precision_px: np.ndarray,
    read_variance: float,
) -> np.ndarray:
    """``fit_flag`` of each row (codes above). Runaway photons: more than twice the photons a
    5x5 aperture holds above the background, plus 6 standard deviations of that sum's noise
    and 100 (a degenerate joint fit piles the group's light, or more, on one emitter)."""
    noise = np.sqrt(25.0 * (np.maximum(np.nan_to_num(level), 0.0) + read_variance))
    runaway = ok & (photons > 2.0 * np.maximum(np.nan_to_num(aperture), 0.0) + 6.0 * noise + 100.0)
    flag = np.where(ok, FIT_OK, np.where(crowded, FIT_CROWD, FIT_FAILED))
    flag = np.where(runaway, FIT_RUNAWAY_PHOTONS, flag)
    flag = np.where((flag != FIT_FAILED) & ~(precision_px <= 1.0), FIT_IMPRECISE, flag)
    return flag.astype(np.int64)


def _take(fit: FitResult, index) -> FitResult:
    """The rows ``index`` (mask or indices) of a fit, copied."""
    return FitResult(**{name: None if column is None else column[index] for name, column in vars(fit).items()})


def _refit(
    fit: FitResult,
    rows: np.ndarray,
    photons,
    background,
    x_px,
    y_px,
    frame_index,
    sigma_px: float,
    read_variance: float,
) -> None:
    """Refit the emitters of ``rows`` (a mask) together, in place."""
    new = fit_emitters(
        photons, background, x_px[rows], y_px[rows], sigma_px, read_variance, frame_index=frame_index[rows]
    )
    for name, column in vars(new).items():
        getattr(fit, name)[rows] = column


def worker_threads() -> int:
    """Threads for the localization: torch's thread count where torch is loaded (the
    engine; OMP_NUM_THREADS pins it), else 1."""
    import sys

    torch = sys.modules.get("torch")
    return max(1, torch.get_num_threads()) if torch is not None else 1


def _level_at(background: np.ndarray, xy_px: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """The background (F, H, W) at each position's pixel of its frame."""
    rows = np.clip(np.floor(xy_px[:, 1]).astype(int), 0, background.shape[1] - 1)
    cols = np.clip(np.floor(xy_px[:, 0]).astype(int), 0, background.shape[2] - 1)
    return np.asarray(background, np.float64)[frame_index, rows, cols]
