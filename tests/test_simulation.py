"""The forward model against analytic truths (SPEC 2, primary paper eq. 2-3)."""

import numpy as np
import pytest

from smlm_diffusion.simulation import (
    BlinkingChain,
    CameraModel,
    SimulationConfig,
    expected_photons,
    pixel_integrals,
    render_kde,
    simulate_stack,
)


def _one(value):
    return np.array([[float(value)]])


@pytest.mark.parametrize("sigma", [0.7, 0.92, 1.6])
def test_psf_of_centred_emitter_integrates_to_i0_with_exact_moments(sigma):
    i0, n = 1234.0, 41
    omega = expected_photons(_one(20.5), _one(20.5), _one(i0), (n, n), sigma)[0]
    assert omega.sum() == pytest.approx(i0, rel=1e-9)
    centres = np.arange(n) + 0.5
    profile = omega.sum(axis=0) / i0
    mean = (profile * centres).sum()
    assert mean == pytest.approx(20.5, abs=1e-9)
    # pixel integration adds a uniform(1 px) variance: sigma^2 + 1/12, up to the sampling error
    var = (profile * (centres - mean) ** 2).sum()
    assert var == pytest.approx(sigma**2 + 1 / 12, rel=2e-3)


def test_psf_off_centre_keeps_its_centroid_and_background_adds_per_pixel():
    omega = expected_photons(_one(10.27), _one(13.81), _one(500.0), (30, 25), 1.1, background_photons=7.0)[0]
    signal = omega - 7.0
    rows, cols = np.mgrid[0:30, 0:25] + 0.5
    assert (signal * cols).sum() / signal.sum() == pytest.approx(10.27, abs=1e-6)
    assert (signal * rows).sum() / signal.sum() == pytest.approx(13.81, abs=1e-6)
    assert omega.min() >= 7.0


def test_pixel_integrals_rows_sum_to_one_inside_grid():
    d = pixel_integrals(np.array([7.3, 10.0, 12.9]), 20, 1.2)
    np.testing.assert_allclose(d.sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "camera",
    [
        CameraModel(gain_adu_per_photon=2.5, offset_adu=100.0, read_noise_e=1.6),
        CameraModel(gain_adu_per_photon=0.5, offset_adu=400.0, read_noise_e=0.0),
        CameraModel(gain_adu_per_photon=3.0, offset_adu=100.0, read_noise_e=1.0, emccd=True),
    ],
)
def test_pixel_mean_and_variance_match_the_camera_model(camera, rng):
    """mean = gain*(omega) + offset; var = gain^2*(F*omega + read^2), omega incl. background."""
    omega = expected_photons(_one(6.3), _one(6.6), _one(800.0), (13, 13), 0.92, background_photons=20.0)[0]
    frames = camera.expose(np.broadcast_to(omega, (40_000, 13, 13)), rng)
    mean, var = frames.mean(axis=0), frames.var(axis=0)
    expected_var = camera.variance_adu(omega)
    stderr = np.sqrt(expected_var / len(frames))
    assert np.all(np.abs(mean - camera.mean_adu(omega)) < 5 * stderr)
    np.testing.assert_allclose(var, expected_var, rtol=0.06)
    assert np.mean(var / expected_var) == pytest.approx(1.0, abs=0.01)


def test_whole_simulated_stack_has_unit_z_scores():
    cfg = SimulationConfig(
        n_frames=300,
        height_px=32,
        width_px=32,
        density_per_um2=2.0,
        photons=800,
        background_photons=12,
        gain_adu_per_photon=1.7,
        read_noise_e=2.0,
        seed=3,
    )
    stack = simulate_stack(cfg, keep_omega=True)
    camera = cfg.camera
    z = (stack.adu - camera.mean_adu(stack.omega_photons)) / np.sqrt(camera.variance_adu(stack.omega_photons))
    assert abs(z.mean()) < 0.01
    assert z.std() == pytest.approx(1.0, abs=0.01)


def test_kde_mass_per_emitter_is_constant_and_peak_lands_on_the_4x_pixel():
    x = np.array([[5.13, 9.6, 14.1, 0.0]])
    y = np.array([[7.77, 4.2, 12.4, 0.0]])
    present = np.array([[1.0, 1.0, 1.0, 0.0]])  # last slot is padding
    kde = render_kde(x, y, present, (20, 20))[0]
    assert kde.shape == (80, 80)
    assert kde.sum() == pytest.approx(3.0, rel=1e-6)
    for xi, yi in zip(x[0, :3], y[0, :3]):
        alone = render_kde(np.array([[xi]]), np.array([[yi]]), np.ones((1, 1)), (20, 20))[0]
        assert alone.sum() == pytest.approx(1.0, rel=1e-6)
        r, c = np.unravel_index(np.argmax(alone), alone.shape)
        assert (r, c) == (int(yi * 4), int(xi * 4))


def test_kde_targets_of_a_disc_stack_carry_one_unit_per_emitter():
    cfg = SimulationConfig(
        n_frames=50, height_px=20, width_px=20, structure="disc", density_per_um2=3.0, photons=200, seed=5
    )
    stack = simulate_stack(cfg, with_kde=True)
    counts = np.bincount(stack.truth.frame, minlength=cfg.n_frames + 1)[1:]
    np.testing.assert_allclose(stack.kde.sum(axis=(1, 2)), counts, rtol=1e-4, atol=1e-4)
    assert counts.sum() > 50


@pytest.mark.parametrize("structure", ["uniform", "disc", "filaments", "clusters"])
@pytest.mark.parametrize("blinking", [False, True])
def test_priors_stay_in_their_support_and_hit_the_density(structure, blinking):
    cfg = SimulationConfig(
        n_frames=400, height_px=40, width_px=48, density_per_um2=1.5, structure=structure, blinking=blinking, seed=11
    )
    truth = simulate_stack(cfg).truth
    x_px, y_px = truth.x_nm / cfg.pixel_size_nm, truth.y_nm / cfg.pixel_size_nm
    per_frame = len(truth) / cfg.n_frames
    assert per_frame == pytest.approx(cfg.mean_active_emitters, rel=0.1)
    if structure == "disc":
        r = np.hypot(x_px - 24, y_px - 20)
        assert r.max() <= cfg.disc_radius_px + 1e-9
    elif structure == "uniform":
        assert x_px.min() >= 0 and x_px.max() <= 48 and y_px.min() >= 0 and y_px.max() <= 40
    else:
        assert x_px.min() > -3 and x_px.max() < 51 and y_px.min() > -3 and y_px.max() < 43


def test_blinking_on_state_lifetime_and_active_fraction(rng):
    chain = BlinkingChain(n_sites=5000, mean_active=100, on_lifetime_frames=4.0, rng=rng)
    states = chain.step(600)
    assert states.sum(axis=1).mean() == pytest.approx(100, rel=0.05)
    # lengths of on-runs: geometric with mean 4 frames
    padded = np.pad(states.astype(np.int8), ((1, 1), (0, 0)))
    starts = np.flatnonzero((np.diff(padded, axis=0) == 1).T.ravel())
    ends = np.flatnonzero((np.diff(padded, axis=0) == -1).T.ravel())
    assert np.mean(ends - starts) == pytest.approx(4.0, rel=0.05)


def test_filament_blinking_reuses_sites_across_frames():
    cfg = SimulationConfig(n_frames=200, structure="filaments", blinking=True, on_lifetime_frames=5, seed=2)
    truth = simulate_stack(cfg).truth
    sites, counts = np.unique(truth.extra["site_id"], return_counts=True)
    assert counts.mean() > 1.5  # a site stays on for several frames


def test_seeded_simulation_is_reproducible():
    cfg = SimulationConfig(n_frames=20, height_px=16, width_px=16, seed=42, read_noise_e=1.0)
    a, b = simulate_stack(cfg), simulate_stack(cfg)
    np.testing.assert_array_equal(a.adu, b.adu)
    np.testing.assert_array_equal(a.truth.x_nm, b.truth.x_nm)
    c = simulate_stack(SimulationConfig(n_frames=20, height_px=16, width_px=16, seed=43, read_noise_e=1.0))
    assert not np.array_equal(a.adu, c.adu)


def test_quantized_stack_is_uint16_and_offset_shifted():
    cfg = SimulationConfig(n_frames=5, density_per_um2=0.0, background_photons=30, offset_adu=100, seed=1)
    stack = simulate_stack(cfg, quantize=True)
    assert stack.adu.dtype == np.uint16
    assert stack.adu.mean() == pytest.approx(130, abs=1.0)
    assert len(stack.truth) == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("density_per_um2", -1.0),
        ("photons", 0.0),
        ("psf_sigma_px", -1.0),
        ("structure", "spirals"),
        ("n_frames", 0),
        ("gain_adu_per_photon", 0),
    ],
)
def test_invalid_configuration_is_refused(field, value):
    with pytest.raises(ValueError):
        SimulationConfig(**{field: value}).validate()


def test_stage_drift_moves_every_emitter_by_the_same_amount():
    base = SimulationConfig(
        n_frames=50, height_px=32, width_px=32, density_per_um2=2.0, structure="filaments", blinking=True, seed=9
    )
    moved = SimulationConfig(**{**base.to_dict(), "drift_x_nm": 200.0, "drift_y_nm": -100.0, "drift_wobble_nm": 20.0})
    a, b = simulate_stack(base).truth, simulate_stack(moved).truth
    assert np.array_equal(a.frame, b.frame)
    dx, dy = moved.drift_nm(a.frame)
    assert np.allclose(b.x_nm - a.x_nm, dx) and np.allclose(b.y_nm - a.y_nm, dy)
    assert moved.drift_nm([1])[0][0] == 0 and moved.drift_nm([50])[0][0] == pytest.approx(
        200.0 + 20 * np.sin(2 * np.pi * 49 / 500)
    )


def test_a_structure_prior_keeps_its_coordinates_when_it_fits():
    from smlm_diffusion.simulation import StructurePrior

    rng = np.random.default_rng(3)
    ring = 2000 + 800 * np.c_[np.cos(np.linspace(0, 2 * np.pi, 400)), np.sin(np.linspace(0, 2 * np.pi, 400))]
    prior = StructurePrior(points_nm=ring, source="ring")
    cfg = SimulationConfig(n_frames=30, height_px=40, width_px=40, density_per_um2=1.0, blinking=True, seed=2)
    truth = simulate_stack(cfg, prior=prior).truth
    radius = np.hypot(truth.x_nm - 2000, truth.y_nm - 2000)
    assert len(truth) > 30 and np.allclose(radius, 800, atol=1e-6)  # on the given ring, where it was
    moved = simulate_stack(SimulationConfig(**{**cfg.to_dict(), "augment_structure": True}), prior=prior).truth
    assert np.allclose(
        np.hypot(moved.x_nm - 2000, moved.y_nm - 2000), 800, atol=1e-6
    )  # flips/rotations about the centre
    image = np.zeros((50, 50))
    image[10, 5:45] = 1.0  # a line 40 image pixels long
    sites = StructurePrior(image=image, image_pixel_nm=50.0).sites_px(500, 40, 40, 108.0, rng)
    assert np.all((sites[:, 1] * 108 >= 500) & (sites[:, 1] * 108 < 550))
    with pytest.raises(ValueError, match="pixel size"):
        StructurePrior(image=image)


def test_simulate_structure_from_a_table_and_bad_structure_files(tmp_path, capsys):
    from smlm_diffusion.cli import main
    from smlm_diffusion.io import read_localizations_csv, write_localizations_csv
    from smlm_diffusion.localizations import Localizations

    t = np.linspace(0, 1, 300)
    table = write_localizations_csv(
        tmp_path / "line.csv", Localizations(frame=np.ones(300, int), x_nm=500 + 3000 * t, y_nm=1000 + 0 * t)
    )
    assert (
        main(
            [
                "simulate",
                str(tmp_path / "m.tif"),
                "--frames",
                "10",
                "--height",
                "40",
                "--width",
                "40",
                "--structure-from",
                str(table),
            ]
        )
        == 0
    )
    truth = read_localizations_csv(tmp_path / "m.csv")
    assert len(truth) > 5 and np.allclose(truth.y_nm, 1000.0)
    empty = write_localizations_csv(tmp_path / "empty.csv", Localizations.empty())
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "e.tif"), "--structure-from", str(empty)]) == 2
    assert "no localizations" in capsys.readouterr().err
    import tifffile

    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.ones((20, 20), np.float32))  # no pixel size anywhere
    assert main(["simulate", str(tmp_path / "i.tif"), "--structure-from", str(image)]) == 2
    assert "no pixel size" in capsys.readouterr().err
