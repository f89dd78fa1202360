"""sCMOS per-pixel camera maps: calibration from dark (and flat) frames, and their use in
the likelihood, the detection test and the background (``analysis/camera_maps.py``)."""

import json

import numpy as np
import pytest

from smlm_diffusion.analysis.camera_maps import CameraMaps, calibrate_maps, read_camera_maps
from smlm_diffusion.cli import main
from smlm_diffusion.io import write_stack
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack
from smlm_diffusion.simulation.camera import expose_scmos, scmos_maps

SHAPE = (64, 64)


@pytest.fixture(scope="module")
def sensor():
    return scmos_maps(SHAPE, np.random.default_rng(1), noisy_fraction=0.015)


def test_calibration_recovers_simulated_maps(sensor):
    dark = expose_scmos(np.zeros((300, *SHAPE)), *sensor, np.random.default_rng(2))
    maps = calibrate_maps(dark, gain_adu_per_electron=2.0)
    assert np.sqrt(np.mean((maps.offset_adu - sensor[0]) ** 2)) <= 1.0
    assert np.median(np.abs(maps.read_variance_adu2 / sensor[1] - 1)) <= 0.10
    # the gain per pixel from flats at three light levels (photon transfer, pixel by pixel)
    rng = np.random.default_rng(3)
    flats = [expose_scmos(np.full((200, *SHAPE), level), *sensor, rng) for level in (200.0, 800.0, 2000.0)]
    measured = calibrate_maps(dark, flats_adu=flats)
    # 200 frames per level: each variance is known to sqrt(2/199) = 10 %, the slope to about 6 %
    assert np.median(np.abs(measured.gain_adu_per_electron / sensor[2] - 1)) < 0.08
    with pytest.raises(ValueError, match="at least 20 dark frames"):
        calibrate_maps(dark[:5], 2.0)
    with pytest.raises(ValueError, match="gain"):
        calibrate_maps(dark)


def test_calibrate_camera_command_writes_maps_reconstruct_reads(sensor, tmp_path, capsys):
    dark = expose_scmos(np.zeros((40, *SHAPE)), *sensor, np.random.default_rng(4))
    write_stack(tmp_path / "dark.tif", np.clip(np.rint(dark), 0, 65535).astype(np.uint16), 108.0)
    assert (
        main(["calibrate-camera", str(tmp_path / "dark.tif"), "--out", str(tmp_path / "maps.tif"), "--gain", "2"]) == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["planes"] == ["offset_adu", "read_variance_adu2", "gain_adu_per_electron"]
    assert record["noisy_pixels"] > 0 and record["dark_frames"] == 40
    maps = read_camera_maps(tmp_path / "maps.tif")
    assert maps.shape == SHAPE and np.allclose(maps.gain_adu_per_electron, 2.0)
    assert main(["calibrate-camera", str(tmp_path / "dark.tif"), "--out", str(tmp_path / "m2.tif")]) == 2
    assert "give the gain" in capsys.readouterr().err
    adu, _ = _background_movie(sensor, 0.5, frames=3)
    write_stack(tmp_path / "movie.tif", np.clip(np.rint(adu), 0, 65535).astype(np.uint16), 108.0)
    out = tmp_path / "rec"
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "movie.tif"),
                "--out",
                str(out),
                "--camera-maps",
                str(tmp_path / "maps.tif"),
                "--no-posterior",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    record = json.loads((out / "run.json").read_text())
    assert record["camera"]["maps"]["noisy_pixels"] == maps.summary()["noisy_pixels"] and record["localizations"] > 5


def _background_movie(sensor, density, seed=7, frames=6):
    cfg = SimulationConfig(
        n_frames=frames,
        height_px=SHAPE[0],
        width_px=SHAPE[1],
        density_per_um2=density,
        photons=500.0,
        background_photons=10.0,
        background_structure="gradient",
        gain_adu_per_photon=1.0,
        offset_adu=0.0,
        seed=seed,
    )
    sim = simulate_stack(cfg, keep_omega=True)
    return expose_scmos(sim.omega_photons, *sensor, np.random.default_rng(seed + 1)), sim.truth


def test_maps_keep_noisy_pixels_out_of_the_table(sensor, tmp_path):
    """Background-only frames on a sensor with 1.5 % noisy pixels: with one offset, gain and
    read noise (the medians) noisy pixels pass as emitters; with the maps, where every
    pixel's variance is in the likelihood and the test, they do not."""
    path = tmp_path / "maps.tif"
    write_stack(path, np.stack(CameraMaps(*sensor).planes()).astype(np.float32), 108.0, dtype=np.float32)
    adu, _ = _background_movie(sensor, 0.0, frames=12)
    common = dict(posterior=False, device="cpu", drift="off", psf_sigma_px=0.92)
    medians = ReconstructionSettings(
        offset_adu=float(np.median(sensor[0])), gain_adu_per_photon=2.0, read_noise_e=1.5, **common
    )
    with_maps = ReconstructionSettings(camera_maps=str(path), **common)
    assert len(reconstruct(adu, medians).localizations) >= 3
    assert len(reconstruct(adu, with_maps).localizations) <= 1  # <= 0.1 per frame
    with pytest.raises(ValueError, match="not both"):
        ReconstructionSettings(camera_maps=str(path), camera="auto").validate()
    from smlm_diffusion.errors import SmlmInputError

    with pytest.raises(SmlmInputError, match="64x64 pixels and the movie's frames 32x32"):
        reconstruct(adu[:, :32, :32], with_maps)


def test_the_widget_field_gives_the_maps_path(tmp_path):
    from smlm_diffusion._napari.reconstruct_logic import build_settings

    values = {"pixel_size_nm": 108.0, "offset_adu": 100.0, "gain": 1.0, "camera_maps": "."}  # FileEdit's empty value
    assert build_settings(values, 5).camera_maps == ""
    path = write_stack(tmp_path / "maps.tif", np.ones((3, 8, 8), np.float32), 108.0, dtype=np.float32)
    assert build_settings({**values, "camera_maps": path}, 5).camera_maps == str(path.resolve())
    with pytest.raises(ValueError, match="does not exist"):
        build_settings({**values, "camera_maps": tmp_path / "missing.tif"}, 5)


def test_full_sensor_maps_are_cut_at_the_movie_region(sensor, tmp_path):
    """Maps of a 96x96 sensor, a 64x64 movie taken at sensor pixel (10, 20) (its metadata's
    ROI): the run equals one with maps of the movie's region."""
    full = [np.pad(plane, ((10, 22), (20, 12)), mode="edge") for plane in sensor]
    full[0][:10] += 50.0  # outside the movie's region: must not matter
    for name, planes in (("full.tif", full), ("cut.tif", sensor)):
        write_stack(tmp_path / name, np.stack(planes).astype(np.float32), 108.0, dtype=np.float32)
    adu, _ = _background_movie(sensor, 0.5, frames=2)
    common = dict(posterior=False, device="cpu", drift="off", psf_sigma_px=0.92)
    cut = reconstruct(adu, ReconstructionSettings(camera_maps=str(tmp_path / "cut.tif"), **common)).localizations
    full_run = reconstruct(
        adu, ReconstructionSettings(camera_maps=str(tmp_path / "full.tif"), sensor_origin_px=(10, 20), **common)
    ).localizations
    assert len(cut) > 5 and np.array_equal(cut.x_nm, full_run.x_nm)
