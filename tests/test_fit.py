"""Maximum-likelihood refinement against the Cramer-Rao bound (analysis/fit.py)."""

import numpy as np
import pytest

from smlm_diffusion.analysis import crlb
from smlm_diffusion.analysis.fit import estimate_psf_sigma, fit_emitters
from smlm_diffusion.simulation import expected_photons

SIGMA = 0.92


def _isolated_frames(photons, background, n_frames=25, seed=0, sigma=SIGMA, read_noise=1.4):
    """Frames of 64x64 with 9 emitters on a jittered grid (>= 15 px apart), and the truth."""
    rng = np.random.default_rng(seed)
    base = np.stack(np.meshgrid(np.arange(3) * 20 + 12.0, np.arange(3) * 20 + 12.0), -1).reshape(-1, 2)
    for _ in range(n_frames):
        xy = base + rng.uniform(-1, 1, base.shape)
        omega = expected_photons(
            xy[None, :, 0], xy[None, :, 1], np.full((1, 9), float(photons)), (64, 64), sigma, background
        )[0]
        frame = rng.poisson(omega) + rng.normal(0, read_noise, omega.shape)
        yield frame, xy, xy + rng.normal(0, 0.3, xy.shape)


@pytest.mark.parametrize("photons,background", [(200, 10), (1000, 10), (5000, 50)])
def test_isolated_emitters_reach_the_crlb_and_their_z_scores_are_unit(photons, background):
    errors, bounds = [], []
    for frame, truth, start in _isolated_frames(photons, background, seed=photons):
        fit = fit_emitters(frame, background, start[:, 0], start[:, 1], SIGMA, read_variance_photons2=1.4**2)
        assert fit.ok.all()
        errors.append(np.c_[fit.x_px - truth[:, 0], fit.y_px - truth[:, 1]])
        bounds.append(np.c_[fit.crlb_x_px, fit.crlb_y_px])
    errors, bounds = np.concatenate(errors), np.concatenate(bounds)
    analytic = crlb(8.5, 8.5, photons, background + 1.4**2, SIGMA, (17, 17))["x"]
    rmse = np.sqrt((errors**2).mean(axis=0))
    assert np.all(np.abs(rmse / analytic - 1) < 0.10)  # 225 emitters: RMSE within 10 % of the CRLB
    assert bounds.mean() == pytest.approx(analytic, rel=0.05)  # the reported bound is the bound
    z = errors / bounds
    assert np.all((z.std(axis=0) > 0.85) & (z.std(axis=0) < 1.2))


def test_close_pairs_are_fitted_jointly_and_get_larger_uncertainties():
    rng = np.random.default_rng(3)
    pair = np.array([[20.3, 20.4], [21.5, 20.9]])  # 1.3 px apart, about 1.4 PSF widths
    alone, together, errors = [], [], []
    for _ in range(60):
        omega = expected_photons(pair[None, :, 0], pair[None, :, 1], np.full((1, 2), 1500.0), (40, 40), SIGMA, 10.0)[0]
        start = pair + rng.normal(0, 0.2, pair.shape)
        fit = fit_emitters(rng.poisson(omega).astype(float), 10.0, start[:, 0], start[:, 1], SIGMA)
        together.append(fit.crlb_x_px)
        errors.append(fit.x_px - pair[:, 0])
        single = expected_photons(pair[None, :1, 0], pair[None, :1, 1], np.full((1, 1), 1500.0), (40, 40), SIGMA, 10.0)[
            0
        ]
        alone.append(fit_emitters(rng.poisson(single).astype(float), 10.0, start[:1, 0], start[:1, 1], SIGMA).crlb_x_px)
    assert np.mean(together) > 1.3 * np.mean(alone)
    # the joint fit resolves the pair: errors stay within a few of their (larger) bounds
    assert np.abs(np.mean(errors, axis=0)).max() < 0.1 and np.std(errors) < 2.0 * np.mean(together)


def test_a_fit_that_runs_away_is_flagged_and_keeps_the_start():
    rng = np.random.default_rng(4)
    frame = rng.poisson(np.full((32, 32), 20.0)).astype(float)
    frame[10, 10] += 400.0  # a hot pixel; start the fit 3 px away from it
    fit = fit_emitters(frame, 20.0, np.array([13.5]), np.array([10.5]), SIGMA, max_shift_px=1.5)
    assert not fit.ok[0] and fit.x_px[0] == 13.5 and fit.y_px[0] == 10.5


@pytest.mark.parametrize("sigma", [0.8, 1.3])
def test_psf_sigma_is_measured_from_bright_isolated_spots(sigma):
    frames, backgrounds, positions = [], [], []
    for frame, truth, start in _isolated_frames(3000, 30, n_frames=6, seed=9, sigma=sigma):
        frames.append(frame)
        backgrounds.append(np.full(frame.shape, 30.0))
        positions.append(np.c_[start, np.full(len(start), 3000.0)])
    measured, spots = estimate_psf_sigma(frames, backgrounds, positions, 1.4**2)
    assert spots == 54 and measured == pytest.approx(sigma, rel=0.04)


def _pair_frames(separation_px, photons=1000.0, background=10.0, n_frames=20, seed=3):
    """Frames of 24x24 each with a pair of emitters ``separation_px`` apart at a random angle
    (or one emitter when the separation is 0), and the truth (k, 2)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_frames):
        angle = rng.uniform(0, np.pi)
        centre = 12.0 + rng.uniform(-0.5, 0.5, 2)
        offset = 0.5 * separation_px * np.array([np.cos(angle), np.sin(angle)])
        xy = np.array([centre - offset, centre + offset]) if separation_px else centre[None]
        omega = expected_photons(
            xy[None, :, 0], xy[None, :, 1], np.full((1, len(xy)), photons), (24, 24), SIGMA, background
        )[0]
        yield rng.poisson(omega) + rng.normal(0, 1.4, omega.shape), xy


def test_a_merged_pair_is_split_and_a_single_emitter_is_not():
    """One start between two emitters 2 sigma apart (the KDE's merged blob): the likelihood
    ratio test splits it, and the pair's fitted positions are near the truth; a single
    emitter is left single over many noise draws."""
    from smlm_diffusion.analysis.multi_emitter import split_merged

    split_pairs, errors = 0, []
    for frame, truth in _pair_frames(2 * SIGMA):
        start = truth.mean(axis=0)
        fit = fit_emitters(frame, 10.0, [start[0]], [start[1]], SIGMA, 1.4**2)
        result = split_merged(frame, 10.0, fit, SIGMA, 1.4**2, min_photons=200.0)
        if result.from_split.sum() == 2:
            split_pairs += 1
            found = np.c_[result.x_px, result.y_px]
            errors.append(np.linalg.norm(found[:, None] - truth[None], axis=2).min(axis=0).max())
    assert split_pairs >= 18 and np.median(errors) < 0.25
    false_splits, ambiguity = 0, []
    for frame, truth in _pair_frames(0.0, n_frames=60, seed=4):
        fit = fit_emitters(frame, 10.0, truth[:, 0], truth[:, 1], SIGMA, 1.4**2)
        result = split_merged(frame, 10.0, fit, SIGMA, 1.4**2, min_photons=200.0)
        false_splits += int(result.from_split.any())
        ambiguity.append(result.ambiguity_px[0])
    # the per-test false-split rate of the threshold is ~2e-4; the ambiguity term stays
    # well below the CRLB (~0.07 px here)
    assert false_splits <= 1 and np.median(ambiguity) < 0.02


def test_refine_frame_splits_a_merged_pair_and_keeps_every_column():
    """One candidate between two emitters: refine_frame reports two localizations near the
    truth, each with half the blob's KDE mass, and the same columns as an unsplit frame."""
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction import ReconstructionSettings
    from smlm_diffusion.reconstruction.refine import refine_frame

    frame, truth = next(_pair_frames(2.2 * SIGMA, seed=8))
    start = truth.mean(axis=0)
    px = 108.0
    candidates = Localizations(
        frame=np.array([1]),
        x_nm=np.array([start[0] * px]),
        y_nm=np.array([start[1] * px]),
        intensity_photons=np.array([2000.0]),
        extra={"kde_mass": np.array([1.9])},
    )
    settings = ReconstructionSettings(read_noise_e=1.4)
    locs = refine_frame(candidates, frame, np.full(frame.shape, 10.0), SIGMA, settings)
    assert len(locs) == 2
    found = locs.xy_px(px)
    assert np.linalg.norm(found[:, None] - truth[None], axis=2).min(axis=0).max() < 0.3
    assert np.allclose(locs.extra["kde_mass"], 0.95)
    single = refine_frame(
        Localizations(
            frame=np.array([1]), x_nm=truth[:1, 0] * px, y_nm=truth[:1, 1] * px, extra={"kde_mass": np.array([1.0])}
        ),
        frame,
        np.full(frame.shape, 10.0),
        SIGMA,
        settings,
    )
    assert set(single.extra) == set(locs.extra)


def test_a_batch_of_frames_is_refined_as_each_frame_alone():
    """refine_frames fits all frames' emitters in one batch (the phi path's chunks): every
    column of every frame equals what refine_frame gives that frame on its own, and no
    emitter is grouped with, or split against, one of another frame at the same place."""
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction import ReconstructionSettings
    from smlm_diffusion.reconstruction.refine import refine_frame, refine_frames

    px = 108.0
    rng = np.random.default_rng(5)
    frames, candidates = [], []
    for f, (frame, truth) in enumerate(_pair_frames(1.5 * SIGMA, n_frames=3, seed=11)):
        # emitters at the right and left edges: those of consecutive frames must not interact
        extra = np.array([[20.0, 20.0], [2.2, 19.0], [20.5, 2.5], [23.4, 11.0], [0.6, 11.0]]) + rng.uniform(
            -0.3, 0.3, (5, 2)
        )
        omega = expected_photons(extra[None, :, 0], extra[None, :, 1], np.full((1, 5), 800.0), frame.shape, SIGMA, 0.0)[
            0
        ]
        frame = frame + rng.poisson(omega)
        starts = np.r_[truth.mean(axis=0, keepdims=True) if f != 1 else truth, extra + rng.normal(0, 0.2, (5, 2))]
        frames.append(frame)
        candidates.append(
            Localizations(
                frame=np.full(len(starts), f + 1),
                x_nm=starts[:, 0] * px,
                y_nm=starts[:, 1] * px,
                extra={"kde_mass": np.full(len(starts), 1.9)},
            )
        )
    frames = np.stack(frames)
    settings = ReconstructionSettings(read_noise_e=1.4, pixel_size_nm=px, min_photons=100.0)
    background = np.full(frames.shape, 10.0)
    together = refine_frames(candidates, frames, background, SIGMA, settings)
    for f in range(len(frames)):
        alone = refine_frame(candidates[f], frames[f], background[f], SIGMA, settings)
        assert len(together[f]) == len(alone) >= 5 and (together[f].frame == f + 1).all()
        for name, column in alone._all_columns().items():
            if name == "probability":  # from the batch's candidates (the engine's is the movie's)
                continue
            assert np.allclose(together[f]._all_columns()[name], column, rtol=1e-9, atol=1e-9, equal_nan=True), name


def test_windows_fitted_in_cache_sized_blocks_equal_one_batch(monkeypatch):
    """fit_windows and its statistics split large batches into blocks; every window's
    result is its own, so blocking changes nothing, bit for bit."""
    from smlm_diffusion.analysis import scoring

    rng = np.random.default_rng(3)
    m, size = 150, 9
    x, y = rng.uniform(3.0, 6.0, (m, 2)), rng.uniform(3.0, 6.0, (m, 2))
    corner = np.zeros(m, int)
    psf = scoring.psf_only(
        np.r_[x[:, 0], x[:, 1]], np.r_[y[:, 0], y[:, 1]], np.r_[corner, corner], np.r_[corner, corner], size, SIGMA
    )
    data = rng.poisson(500.0 * (psf[:m] + psf[m:]) + 10.0).astype(float)
    inside = np.ones(data.shape, bool)
    inside[:20, 0, :] = False  # some windows cut by the frame edge
    fixed = np.full(data.shape, 10.0)
    starts = (x + rng.normal(0, 0.3, x.shape), y + rng.normal(0, 0.3, y.shape))

    def run():
        fit = scoring.fit_windows(data, inside, fixed, *starts, corner, corner, SIGMA, 2.0, nll_tolerance=0.005)
        return fit, fit.statistics(data, inside, 2.0)

    whole, whole_stats = run()
    monkeypatch.setattr(scoring, "FIT_BLOCK_ELEMENTS", 16 * 7 * size * size)  # blocks of 16 windows
    assert scoring._block(2, size) == 16
    blocked, blocked_stats = run()
    for a, b in zip(
        (whole.x, whole.y, whole.n, whole.nll, whole.mu) + whole_stats,
        (blocked.x, blocked.y, blocked.n, blocked.nll, blocked.mu) + blocked_stats,
    ):
        np.testing.assert_array_equal(a, b)
    # and the fits found the emitters (either order within a window)
    error = np.minimum(
        np.hypot(whole.x - x, whole.y - y).max(axis=1), np.hypot(whole.x - x[:, ::-1], whole.y - y[:, ::-1]).max(axis=1)
    )
    assert np.median(error) < 0.5


def test_neighbours_held_fixed_match_the_sum_over_all_emitters():
    """neighbour_psfs_in_windows keeps only neighbours within 5 sigma of a window; the sum equals
    the brute-force sum over every other emitter of the same frame to < 1e-3 photons."""
    from smlm_diffusion.analysis.multi_emitter import neighbour_psfs_in_windows
    from smlm_diffusion.analysis.scoring import psf_only

    rng = np.random.default_rng(5)
    m, size, w = 300, 11, 5
    x, y = rng.uniform(0, 40, m), rng.uniform(0, 40, m)
    f, n = rng.integers(0, 3, m), rng.uniform(500, 5000, m)
    r0 = np.clip(np.floor(y).astype(int) - w, 0, 40 - size)
    c0 = np.clip(np.floor(x).astype(int) - w, 0, 40 - size)
    got = neighbour_psfs_in_windows(x, y, n, r0, c0, size, SIGMA, f)
    for i in range(m):
        others = np.flatnonzero((f == f[i]) & (np.arange(m) != i))
        brute = (
            n[others, None, None]
            * psf_only(x[others], y[others], np.full(len(others), r0[i]), np.full(len(others), c0[i]), size, SIGMA)
        ).sum(axis=0)
        assert np.abs(got[i] - brute).max() < 1e-3


def test_the_posterior_keeps_phis_candidates_and_adds_only_the_means_new_ones():
    """posterior_candidates: every candidate of phi stays (the detection knob and the
    probability column judge it, not a threshold on the posterior mean); a candidate of the
    mean within the radius of one of phi's is the same emitter, one farther away is added."""
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction.refine import posterior_candidates

    px = 100.0

    def table(xy):
        xy = np.asarray(xy, float).reshape(-1, 2)
        return Localizations(
            frame=np.ones(len(xy), int),
            x_nm=xy[:, 0] * px,
            y_nm=xy[:, 1] * px,
            intensity_photons=np.full(len(xy), 500.0),
        )

    phi = table([[5.0, 5.0], [12.0, 3.0]])
    mean = table([[5.4, 5.3], [20.0, 20.0]])  # phi's first, shifted 0.5 px; a new one
    out = posterior_candidates(phi, mean, 1.0, px).xy_px(px)
    assert out.tolist() == [[5.0, 5.0], [12.0, 3.0], [20.0, 20.0]]
    assert len(posterior_candidates(phi, table([]), 1.0, px)) == 2
    assert posterior_candidates(table([]), mean, 1.0, px).xy_px(px).tolist() == mean.xy_px(px).tolist()


def test_a_posterior_localization_reports_the_larger_of_its_likelihood_precision_and_psis_spread():
    """With posterior samples, uncertainty_xy = max(likelihood precision, spread over the
    samples): samples scattered 0.3 px give about 0.3 px, samples that agree to 0.001 px
    leave the likelihood's precision (calibration.py decided the rule)."""
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction import ReconstructionSettings
    from smlm_diffusion.reconstruction.refine import refine_frame
    from smlm_diffusion.simulation import CameraModel, expected_photons, render_kde

    px, x, y = 108.0, 10.3, 9.6
    omega = expected_photons(np.array([[x]]), np.array([[y]]), np.array([[1000.0]]), (20, 20), SIGMA, 10.0)
    frame = CameraModel(1.0, 0.0, 0.0).expose(omega, np.random.default_rng(4))[0].astype(float)
    candidates = Localizations(frame=np.array([1]), x_nm=np.array([x * px]), y_nm=np.array([y * px]))
    settings = ReconstructionSettings(pixel_size_nm=px, read_noise_e=0.0)
    rng = np.random.default_rng(5)
    for scatter_px in (0.3, 0.001):
        sx, sy = x + scatter_px * rng.standard_normal(64), y + scatter_px * rng.standard_normal(64)
        samples = render_kde(sx[:, None], sy[:, None], np.ones((64, 1)), (20, 20))
        locs = refine_frame(candidates, frame, np.full(frame.shape, 10.0), SIGMA, settings, samples, 1.0)
        likelihood, spread = locs.extra["likelihood_xy_nm"][0], locs.extra["posterior_spread_xy_nm"][0]
        assert locs.uncertainty_xy_nm[0] == pytest.approx(max(likelihood, spread))
        # every sample holds the emitter; the probability is the detection test's, not psi's share
        assert locs.extra["sample_fraction"][0] == 1.0 and locs.extra["p_value"][0] < 1e-10
        if scatter_px > 0.1:
            assert spread == pytest.approx(scatter_px * px, rel=0.3) and spread > 2 * likelihood
        else:
            assert spread < likelihood and locs.uncertainty_xy_nm[0] == pytest.approx(likelihood)
