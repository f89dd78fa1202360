"""Detection as a statistical test (analysis/detection.py), the fit flags and the decision
(reconstruction/refine.py), and the honest pictures (reconstruction/pictures.py,
analysis/render.py)."""

import numpy as np
import pytest

from smlm_diffusion.analysis.detection import (
    background_only_nll,
    detection_probability,
    likelihood_ratio,
    null_scale_and_dof,
    p_value,
    surround_dispersion,
)
from smlm_diffusion.analysis.render import render_precision
from smlm_diffusion.localizations import Localizations
from smlm_diffusion.reconstruction import ReconstructionSettings
from smlm_diffusion.reconstruction.pictures import precision_render, support_weights
from smlm_diffusion.reconstruction.refine import (
    FIT_CROWD,
    FIT_FAILED,
    FIT_IMPRECISE,
    FIT_OK,
    FIT_RUNAWAY_PHOTONS,
    fit_flags,
    refine_frame,
)
from smlm_diffusion.simulation import expected_photons

SIGMA = 1.0


def test_background_only_fit_finds_the_level_that_a_flat_window_has():
    """On a flat fixed background b, the best delta is mean(data) - b (the Poisson score
    sum(1 - d / mu) vanishes there), so the NLL equals the one at that level."""
    rng = np.random.default_rng(0)
    data = rng.poisson(30.0, (5, 9, 9)).astype(float)
    fixed = np.full(data.shape, 20.0)
    inside = np.ones(data.shape, bool)
    got = background_only_nll(data, inside, fixed, 2.0)
    mu = data.mean(axis=(1, 2))[:, None, None] + 2.0
    expected = (mu - (data + 2.0) * np.log(mu)).sum(axis=(1, 2))
    assert np.allclose(got, expected, rtol=1e-9)


def test_the_likelihood_ratio_is_chi2_like_at_fixed_positions_and_large_at_an_emitter():
    """At positions chosen without looking at the data, T on pure Poisson noise is about
    chi^2 with 3 degrees of freedom (x, y, N; the position may wander to the window's
    highest noise peak, N >= 1 makes it one-sided): mean 1.5-4.5, far below the null at
    phi's candidates (~9.7), which are chosen where the noise looks most like a spot.
    A 300-photon emitter on 20 photons/px gives T in the hundreds."""
    rng = np.random.default_rng(1)
    frames = rng.poisson(20.0, (40, 32, 32)).astype(float)
    x, y = rng.uniform(8, 24, (2, 40))
    t, dispersion = likelihood_ratio(frames, 20.0, x, y, np.zeros(40), SIGMA, 1.0, frame_index=np.arange(40))
    assert 1.5 <= t.mean() <= 4.5 and np.abs(dispersion - 1).mean() < 0.2
    omega = expected_photons(np.array([[15.3]]), np.array([[16.6]]), np.array([[300.0]]), (32, 32), SIGMA, 20.0)
    frame = rng.poisson(omega[0]).astype(float)
    t, _ = likelihood_ratio(frame, 20.0, np.array([15.3]), np.array([16.6]), np.array([300.0]), SIGMA, 1.0)
    assert t[0] > 100 and p_value(t, SIGMA)[0] < 1e-10


def test_the_surroundings_dispersion_finds_structure_the_background_map_misses():
    rng = np.random.default_rng(2)
    level = np.full((1, 48, 48), 50.0)
    x = np.array([10.2, 24.1, 37.8])
    y = np.array([24.0, 24.3, 23.7])
    noise = rng.poisson(level).astype(float)
    assert np.all(np.abs(surround_dispersion(noise, level, x, y, np.zeros(3), SIGMA, 1.0, np.zeros(3, int)) - 1) < 0.5)
    edge = level.copy()
    edge[:, :, 24:] += 40.0  # a cell edge the map does not have
    data = rng.poisson(edge).astype(float)
    dispersion = surround_dispersion(data, level, x, y, np.zeros(3), SIGMA, 1.0, np.zeros(3, int))
    assert dispersion[1] > 3.0 and dispersion[0] < 1.6


def test_the_null_model_follows_its_measured_moments():
    for sigma, mean, variance in ((0.92, 9.71, 13.4), (1.6, 6.08, 10.7)):
        c, k = null_scale_and_dof(sigma)
        assert c * k == pytest.approx(mean) and 2 * c * c * k == pytest.approx(variance)
    c, k = null_scale_and_dof(1.0)
    draws = c * np.random.default_rng(3).chisquare(k, 200_000)
    assert np.mean(p_value(draws, 1.0) <= 1e-2) == pytest.approx(1e-2, rel=0.1)  # uniform p-values under the null


def test_the_probability_column_is_calibrated_on_a_two_group_mixture():
    """Null p-values uniform, real ones concentrated near 0 (Beta(0.05, 1)): among
    candidates with probability ~p, a share ~p are real, and pi0 is found."""
    rng = np.random.default_rng(4)
    null, real = rng.uniform(size=6000), rng.beta(0.05, 1.0, size=4000)
    p = np.r_[null, real]
    is_real = np.r_[np.zeros(6000, bool), np.ones(4000, bool)]
    probability, pi0 = detection_probability(p)
    # Storey: (6000 / 2 + 4000 (1 - 0.5^0.05)) / 5000 = 0.627
    assert pi0 == pytest.approx(0.627, abs=0.03)
    for lo, hi in ((0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01)):
        inside = (probability >= lo) & (probability < hi)
        if inside.sum() >= 100:
            assert is_real[inside].mean() == pytest.approx(probability[inside].mean(), abs=0.1), (lo, hi)
    assert probability.min() < 0.2 and probability.max() > 0.99  # not a constant column


def test_fit_flags_name_failed_crowded_imprecise_and_runaway_fits():
    ok = np.array([True, False, False, True, True])
    crowded = np.array([False, False, True, False, False])
    photons = np.array([500.0, np.nan, 300.0, 600.0, 1e6])
    aperture = np.array([480.0, 50.0, 290.0, 590.0, 400.0])
    level = np.full(5, 10.0)
    precision = np.array([0.1, 0.3, 0.2, 3.0, 0.1])
    flags = fit_flags(ok, crowded, photons, aperture, level, precision, 2.0)
    assert flags.tolist() == [FIT_OK, FIT_FAILED, FIT_CROWD, FIT_IMPRECISE, FIT_RUNAWAY_PHOTONS]


def _frame_with(xy, photons, shape=(24, 24), background=10.0, seed=5):
    omega = expected_photons(xy[None, :, 0], xy[None, :, 1], np.full((1, len(xy)), photons), shape, SIGMA, background)[
        0
    ]
    return np.random.default_rng(seed).poisson(omega).astype(float)


def test_the_decision_keeps_emitters_drops_noise_and_says_why_in_columns():
    """Two candidates on an emitter and on empty background: the test keeps the first and
    drops the second at the default false-alarm rate; ``false_alarm`` 1 keeps both, with
    the p-values and flags that explain them."""
    px = 100.0
    frame = _frame_with(np.array([[6.3, 7.6]]), 400.0)
    candidates = Localizations(frame=[1, 1], x_nm=np.array([6.3, 17.5]) * px, y_nm=np.array([7.6, 16.2]) * px)
    background = np.full(frame.shape, 10.0)
    settings = ReconstructionSettings(pixel_size_nm=px, read_noise_e=0.0)
    kept = refine_frame(candidates, frame, background, SIGMA, settings)
    assert len(kept) == 1 and kept.x_nm[0] == pytest.approx(630.0, abs=30.0)
    assert kept.extra["p_value"][0] < 1e-6 and kept.extra["fit_flag"][0] == FIT_OK
    every = refine_frame(
        candidates,
        frame,
        background,
        SIGMA,
        ReconstructionSettings(pixel_size_nm=px, read_noise_e=0.0, false_alarm=1.0, keep_flagged=True),
    )
    assert len(every) == 2 and every.extra["p_value"][1] > 1e-3
    assert every.extra["probability"][0] > every.extra["probability"][1]


def test_the_precision_render_draws_each_localization_as_wide_as_its_precision():
    """One localization: a unit-mass Gaussian of its precision (moments). A site localized
    100 times with 3 nm precision: the adaptive render's spread is within 20 % of the
    localizations' scatter (drawing each as wide as its precision would make it sqrt(2)
    wider)."""
    image = render_precision(np.array([500.3]), np.array([402.7]), np.array([8.0]), (100, 120), 10.0, adaptive=False)
    rows, cols = np.mgrid[0:100, 0:120] + 0.5
    assert image.sum() == pytest.approx(1.0, abs=0.01)
    mx, my = (image * cols).sum() * 10, (image * rows).sum() * 10
    assert mx == pytest.approx(500.3, abs=0.5) and my == pytest.approx(402.7, abs=0.5)
    assert np.sqrt((image * (cols * 10 - mx) ** 2).sum()) == pytest.approx(np.sqrt(8.0**2 + 100 / 12), rel=0.05)

    rng = np.random.default_rng(6)
    x, y = 300 + rng.normal(0, 3, 100), 200 + rng.normal(0, 3, 100)
    image = render_precision(x, y, np.full(100, 3.0), (400, 600), 1.0)
    rows, cols = np.mgrid[0:400, 0:600] + 0.5
    total = image.sum()
    spread = np.sqrt(
        (image * ((cols - (image * cols).sum() / total) ** 2 + (rows - (image * rows).sum() / total) ** 2)).sum()
        / total
        / 2
    )
    scatter = np.sqrt((x.var() + y.var()) / 2)
    assert spread == pytest.approx(scatter, rel=0.2)
    plain = render_precision(x, y, np.full(100, 3.0), (400, 600), 1.0, adaptive=False)
    assert np.sqrt((plain * (cols - (plain * cols).sum() / 100) ** 2).sum() / 100) > 1.3 * scatter


def test_the_precision_render_of_a_region_lines_up_with_its_localizations():
    locs = Localizations(frame=[1, 1], x_nm=[1053.0, 1800.0], y_nm=[625.0, 900.0], uncertainty_xy_nm=[5.0, 5.0])
    image, pixel = precision_render(locs, (10, 12), (5, 9), 100.0)  # the region starts at row 5, column 9
    assert pixel == 10.0 and image.shape == (100, 120)
    peak = np.unravel_index(np.argmax(image), image.shape)
    assert peak == (12, 15)  # (625 - 500) / 10, (1053 - 900) / 10
    assert image.sum() == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match="render pixel"):
        precision_render(locs, (4096, 4096), (0, 0), 100.0, render_pixel_nm=1.0)
    # a run refuses a render pixel too fine for its field before it starts, not after its last frame
    from smlm_diffusion.errors import SmlmInputError
    from smlm_diffusion.reconstruction.engine import ReconstructionRun

    with pytest.raises(SmlmInputError, match="render pixel"):
        ReconstructionRun(np.zeros((2, 1024, 1024)), ReconstructionSettings(render_pixel_nm=1.0))


def test_kde_support_holds_the_largest_probability_within_two_camera_pixels():
    weights = support_weights(np.array([5.0, 6.0]), np.array([5.0, 5.0]), np.array([0.3, 0.9]), (48, 48), 4)
    assert weights[20, 20] == pytest.approx(0.9)  # (5.1, 5.1) camera px: within 2 px of both
    assert weights[20, 13] == pytest.approx(0.3)  # (3.4, 5.1): within 2 px of the first only
    assert weights[20, 40] == 0.0 and weights[2, 2] == 0.0
