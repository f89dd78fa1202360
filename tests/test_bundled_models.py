"""The bundled phi and psi: quality on small fixed simulated sets (fast enough for CI)
and the SPEC 3 geometry of their outputs."""

import json

import numpy as np
import pytest

from smlm_diffusion.analysis import evaluate
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import CameraModel, SimulationConfig, expected_photons, simulate_stack


def test_bundled_phi_reaches_a_modest_jaccard():
    cfg = SimulationConfig(
        n_frames=10,
        height_px=48,
        width_px=48,
        density_per_um2=0.5,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        seed=99,
    )
    sim = simulate_stack(cfg)
    rec = reconstruct(sim.adu, ReconstructionSettings(posterior=False, device="cpu"))
    m = evaluate(rec.localizations, sim.truth, 250.0)
    assert m.jaccard > 0.85 and m.rmse_lateral_nm < 40.0, m.to_dict()


@pytest.mark.parametrize("posterior", [False, True])
def test_an_emitter_comes_back_where_it_was(posterior):
    """One bright emitter at (x, y) = (9.3, 7.6) px -> a localization at x * px, y * px
    (SPEC 3 corner origin) within a few nm, with a small uncertainty and probability ~1."""
    x, y, px = 9.3, 7.6, 100.0
    omega = expected_photons(np.array([[x]]), np.array([[y]]), np.array([[5000.0]]), (16, 20), 1.0, 5.0)
    adu = CameraModel(1.0, 100.0, 1.0).expose(np.repeat(omega, 2, axis=0), np.random.default_rng(0))
    settings = ReconstructionSettings(pixel_size_nm=px, posterior=posterior, device="cpu", seed=1)
    settings.sampler.n_samples = 8
    locs = reconstruct(adu, settings).localizations
    assert len(locs) == 2
    assert np.allclose(locs.x_nm, x * px, atol=12.0) and np.allclose(locs.y_nm, y * px, atol=12.0)
    assert np.allclose(locs.intensity_photons, 5000.0, rtol=0.2)
    if posterior:
        assert np.all(locs.uncertainty_xy_nm < 15.0) and np.all(locs.extra["probability"] > 0.8)


def test_bundled_psi_posterior_mean_matches_phi():
    cfg = SimulationConfig(
        n_frames=2,
        height_px=32,
        width_px=32,
        density_per_um2=1.0,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        seed=5,
    )
    sim = simulate_stack(cfg)
    phi = evaluate(
        reconstruct(sim.adu, ReconstructionSettings(posterior=False, device="cpu")).localizations, sim.truth, 250.0
    )
    settings = ReconstructionSettings(device="cpu")
    settings.sampler.n_samples = 8
    post = evaluate(reconstruct(sim.adu, settings).localizations, sim.truth, 250.0)
    assert post.jaccard >= phi.jaccard - 0.1 and post.jaccard > 0.7


BACKGROUND_ONLY = [
    ("flat", 20.0, 0),
    ("flat", 150.0, 0),
    ("gradient", 80.0, 0),
    ("field", 60.0, 0),
    ("blobs", 60.0, 2),
    ("cell", 80.0, 0),
    ("mixed", 100.0, 3),
]


def _background_only(structure, level, hot, **changes):
    cfg = SimulationConfig(
        n_frames=8,
        height_px=64,
        width_px=64,
        density_per_um2=0.0,
        background_photons=level,
        background_structure=structure,
        hot_pixels=hot,
        read_noise_e=1.5,
        offset_adu=100.0,
        seed=4242,
    )
    sim = simulate_stack(cfg, quantize=True)
    return reconstruct(sim.adu, ReconstructionSettings(posterior=False, device="cpu", psf_sigma_px=0.92, **changes))


@pytest.mark.parametrize("structure,level,hot", BACKGROUND_ONLY)
def test_background_only_frames_meet_the_false_localization_target(structure, level, hot):
    """The targets are <= 0.5 false localizations and <= 0.5 emitter of KDE mass per 128x128
    frame: here 8 frames of 64x64 (two 128x128 frames' worth of area) may hold at most 1 of
    each. Without the KDE support (``everywhere``) the networks' raw output holds far more
    (the phantom mass the support removes)."""
    rec = _background_only(structure, level, hot)
    assert len(rec.localizations) <= 1, rec.localizations.intensity_photons
    assert rec.render_kde.sum() <= 1.0
    assert rec.render.sum() <= 1.0  # the precision render draws the table
    if structure in ("cell", "mixed"):
        raw = _background_only(structure, level, hot, kde_support="everywhere")
        assert raw.render_kde.sum() > 3.0


@pytest.mark.parametrize("structure,level,hot", BACKGROUND_ONLY)
def test_background_only_frames_give_almost_no_localizations(structure, level, hot):
    """At most 4 per 128x128-frame area on every structure (phi v1: hundreds)."""
    rec = _background_only(structure, level, hot)
    assert len(rec.localizations) <= 8, rec.localizations.intensity_photons


@pytest.mark.parametrize("structure", ["gradient", "cell", "blobs"])
def test_emitters_on_structured_backgrounds_are_found(structure):
    cfg = SimulationConfig(
        n_frames=6,
        height_px=64,
        width_px=64,
        density_per_um2=0.5,
        photons=1000.0,
        background_photons=60.0,
        background_structure=structure,
        read_noise_e=1.5,
        offset_adu=100.0,
        structure="uniform",
        blinking=False,
        seed=777,
    )
    sim = simulate_stack(cfg, quantize=True)
    rec = reconstruct(sim.adu, ReconstructionSettings(posterior=False, device="cpu"))
    m = evaluate(rec.localizations, sim.truth, 250.0)
    assert m.jaccard > 0.85 and m.rmse_lateral_nm < 25.0, m.to_dict()


def test_bundled_psi_is_v9_paired_with_the_bundled_phi_and_covers_the_truth():
    """psi v9: camera-resolution U-Net conditioned on the refined fits, reading their
    precision and Poisson residual beside the frame, sampling their residual in units of
    their precision bounded at |z| <= 8 (v-prediction, cosine schedule), trained on the
    engine's own fits beside the bundled phi; its 2-std band covers the truth KDE on signal
    pixels."""
    from smlm_diffusion.models.normalisation import kde_scale
    from smlm_diffusion.models.psi import CameraPsi
    from smlm_diffusion.models.store import MANIFEST, load_model

    psi = load_model("psi")
    assert isinstance(psi.module, CameraPsi) and psi.module.target == "scaled" and psi.schedule.kind == "cosine"
    assert psi.module.condition == "refined" and psi.module.prediction == "v"
    assert psi.module.config["frame_channels"] == 4 and psi.module.z_clip == 8.0
    assert psi.training["condition_fits"] == "pipeline"
    assert psi.training["phi_sha256"] == json.loads(MANIFEST.read_text())["phi.pt"]["sha256"]
    cfg = SimulationConfig(
        n_frames=2,
        height_px=32,
        width_px=32,
        density_per_um2=1.0,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        seed=31,
    )
    sim = simulate_stack(cfg, with_kde=True)
    rec = reconstruct(sim.adu, ReconstructionSettings(device="cpu", keep_frame_kdes=True, psf_sigma_px=0.92))
    inside = signal = 0
    for frame in rec.frames:
        truth, mean, var = sim.kde[frame - 1], rec.mean_kdes[frame], rec.variance_kdes[frame]
        peak = 1.0 / kde_scale()
        on = (truth > 0.05 * peak) | (mean > 0.05 * peak)
        inside += int((np.abs(truth - mean) <= 2 * np.sqrt(var))[on].sum())
        signal += int(on.sum())
    assert 0.85 <= inside / signal <= 0.99


def test_no_two_localizations_of_a_frame_sit_on_one_emitter():
    """After the split test's refits, starts that converged on one emitter are merged until
    none do: no two localizations of a frame closer than half a PSF sigma (16 dense 256x256
    frames, where the refit of a dropped duplicate's group used to converge again, leaving
    pairs 0 nm apart with CRLBs of tens of micrometres)."""
    from scipy.spatial import cKDTree

    sim = simulate_stack(
        SimulationConfig(
            n_frames=16,
            height_px=256,
            width_px=256,
            density_per_um2=1.0,
            photons=1000.0,
            background_photons=10.0,
            offset_adu=100.0,
            seed=11,
        ),
        quantize=True,
    )
    result = reconstruct(sim.adu, ReconstructionSettings(offset_adu=100.0, posterior=False, drift="off"))
    locs = result.localizations
    reach_nm = 0.5 * result.psf_sigma_px * result.settings.pixel_size_nm
    points = np.c_[locs.x_nm, locs.y_nm, locs.frame * 1e6]
    assert len(locs) > 10000
    assert len(cKDTree(points).query_pairs(reach_nm)) == 0


@pytest.mark.parametrize("density,expected", [(0.2, "psi-sparse"), (3.0, "psi")])
def test_auto_psi_follows_the_movies_detection_density(density, expected):
    """psi_model="auto": a movie whose first frames' local density is at most 0.35 emitters
    per um^2 gets psi-sparse (trained on 0.05-0.5 emitters per um^2), a denser one the
    bundled psi; the choice and its reason are recorded, and a named psi is used as given."""
    from smlm_diffusion.models.store import load_model

    assert load_model("psi-sparse").training["domain"]["density_per_um2"] == [0.05, 0.5]
    cfg = SimulationConfig(
        n_frames=2,
        height_px=32,
        width_px=32,
        density_per_um2=density,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        seed=7,
    )
    sim = simulate_stack(cfg)
    settings = ReconstructionSettings(device="cpu", psf_sigma_px=1.0)
    settings.sampler.n_samples = 2
    result = reconstruct(sim.adu, settings)
    assert result.psi_model == expected and "emitters per um^2 in the first 2 frames" in result.psi_choice
    assert ("is used" in result.psi_choice) == (expected == "psi-sparse"), result.psi_choice
    settings.psi_model = "psi"
    named = reconstruct(sim.adu, settings)
    assert named.psi_model == "psi" and named.psi_choice == ""


@pytest.mark.parametrize(
    "photons,background,density,min_recall,min_precision",
    [
        (200.0, 2.0, 0.5, 0.80, 0.95),  # the primary paper's setting: dim emitters on a dark background
        (1000.0, 250.0, 0.3, 0.90, 0.98),  # DNA-PAINT-like: bright spots on a bright background
    ],
)
def test_the_detection_test_keeps_dim_emitters_and_drops_noise(photons, background, density, min_recall, min_precision):
    """The default detection (a likelihood-ratio test at a false-alarm rate of 1e-3) meets the
    recall and precision targets where a fixed photon floor could not (200 photons: half of
    the fits fall below a 200-photon floor; 250 photons/px: noise reaches 240 photons)."""
    cfg = SimulationConfig(
        n_frames=8,
        height_px=64,
        width_px=64,
        density_per_um2=density,
        photons=photons,
        background_photons=background,
        read_noise_e=1.5,
        offset_adu=100.0,
        structure="uniform",
        blinking=False,
        seed=31,
    )
    sim = simulate_stack(cfg, quantize=True)
    rec = reconstruct(sim.adu, ReconstructionSettings(posterior=False, device="cpu", drift="off"))
    m = evaluate(rec.localizations, sim.truth, 250.0)
    assert m.recall >= min_recall and m.precision >= min_precision, m.to_dict()
    probability = rec.localizations.extra["probability"]
    assert np.all((probability >= 0) & (probability <= 1)) and probability.mean() > 0.9
