"""``smlm-diffusion reconstruct``: outputs per SPEC 4 and one sentence per SPEC 5 error."""

import json

import numpy as np
import pytest
import tifffile

from smlm_diffusion.cli import main
from smlm_diffusion.io import TiffStack, read_localizations_csv, write_stack
from smlm_diffusion.simulation import SimulationConfig, simulate_stack


@pytest.fixture
def movie(tmp_path):
    cfg = SimulationConfig(
        n_frames=3, height_px=21, width_px=26, density_per_um2=1.0, seed=5, offset_adu=100.0, gain_adu_per_photon=1.5
    )
    sim = simulate_stack(cfg, quantize=True)
    return write_stack(
        tmp_path / "movie.tif", sim.adu, 100.0, extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.5}
    )


def test_reconstruct_writes_all_outputs(movie, tmp_path, tiny_models, capsys):
    out = tmp_path / "rec"
    code = main(
        [
            "reconstruct",
            str(movie),
            "--out",
            str(out),
            "--phi",
            tiny_models["phi"],
            "--psi",
            tiny_models["psi"],
            "--samples",
            "2",
            "--frames",
            "2:3",
            "--device",
            "cpu",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["frames_done"] == 2 and record["completed"] and record["device"] == "cpu"
    assert record["settings"]["pixel_size_nm"] == 100.0 and record["settings"]["gain_adu_per_photon"] == 1.5
    assert record["settings"]["frames"] == [1, 3] and "torch" in record and record["timings_s"]["total"] > 0
    assert record["psi"] == {"model": tiny_models["psi"], "choice": ""}  # named: used as given
    with TiffStack(out / "render_kde.tif") as render:  # the KDE sum on the 4x grid
        assert render.shape == (1, 84, 104) and render.metadata.pixel_size_nm == pytest.approx(25.0)
    with TiffStack(out / "render.tif") as render:  # the precision render: a tenth of a camera pixel
        assert render.shape == (1, 210, 260) and render.metadata.pixel_size_nm == pytest.approx(10.0)
        image = render.read(0, 1)[0]
    locs = read_localizations_csv(out / "localizations.csv")  # parses (may be empty with untrained models)
    assert image.sum() == pytest.approx(len(locs), abs=0.01 * len(locs) + 1e-6)  # one unit of mass per row
    assert (out / "render_variance.tif").exists()
    assert record["pictures"] == {"render_pixel_nm": 10.0, "kde_support": "localizations"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_reconstruct_without_posterior(movie, tmp_path, tiny_models):
    out = tmp_path / "rec"
    assert (
        main(
            [
                "reconstruct",
                str(movie),
                "--out",
                str(out),
                "--phi",
                tiny_models["phi"],
                "--no-posterior",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (out / "render.tif").exists() and not (out / "render_variance.tif").exists()


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("smlm-diffusion reconstruct: error:") and "\n" not in err
    return err


def test_reconstruct_bad_input_gets_one_sentence(movie, tmp_path, capsys):
    out = str(tmp_path / "rec")
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    assert "TIFF" in _error(capsys, ["reconstruct", str(text), "--out", out])
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    assert "RGB" in _error(capsys, ["reconstruct", str(rgb), "--out", out])
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros((0, 8, 8), np.uint16))
    assert "empty" in _error(capsys, ["reconstruct", str(empty), "--out", out]).lower()
    assert "outside" in _error(capsys, ["reconstruct", str(movie), "--out", out, "--frames", "2:7"])
    assert "A:B" in _error(capsys, ["reconstruct", str(movie), "--out", out, "--frames", "two"])
    assert "not available" in _error(capsys, ["reconstruct", str(movie), "--out", out, "--device", "cuda"])
    assert "missing" in _error(capsys, ["reconstruct", str(movie), "--out", out, "--phi", str(tmp_path / "x.pt")])


@pytest.fixture
def gradient_movie(tmp_path):
    """40 frames on a gradient background, written with a wrong gain in the metadata (1 instead of 3)."""
    cfg = SimulationConfig(
        n_frames=40,
        height_px=48,
        width_px=48,
        density_per_um2=0.5,
        photons=2000.0,
        background_photons=40.0,
        background_structure="gradient",
        gain_adu_per_photon=3.0,
        offset_adu=100.0,
        read_noise_e=1.0,
        structure="uniform",
        blinking=False,
        seed=9,
    )
    sim = simulate_stack(cfg, quantize=True)
    return write_stack(
        tmp_path / "gradient.tif", sim.adu, 108.0, extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.0}
    )


def test_wrong_gain_is_reported_and_camera_auto_uses_the_estimate(gradient_movie, tmp_path, tiny_models, capsys):
    out = tmp_path / "given"
    assert (
        main(
            [
                "reconstruct",
                str(gradient_movie),
                "--out",
                str(out),
                "--phi",
                tiny_models["phi"],
                "--no-posterior",
                "--device",
                "cpu",
                "--frames",
                "1:2",
                "--psf-sigma",
                "0.92",
                "--drift",
                "off",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "below the gain estimated from the movie" in warnings[0]
    record = json.loads((out / "run.json").read_text())
    assert record["camera"]["estimate"]["gain_adu_per_photon"] == pytest.approx(3.0, rel=0.15)
    assert record["camera"]["used"]["gain_adu_per_photon"] == 1.0 and record["warnings"] == [warnings[0][9:]]
    detection = record["detection"]
    assert detection["false_alarm"] == 1e-3 and detection["min_photons"] == 0.0 and "chi2" in detection["null"]
    assert detection["rows"] == record["localizations"]
    assert record["psf"] == {"sigma_px": 0.92, "source": "given"}

    auto = tmp_path / "auto"
    assert (
        main(
            [
                "reconstruct",
                str(gradient_movie),
                "--out",
                str(auto),
                "--phi",
                tiny_models["phi"],
                "--no-posterior",
                "--device",
                "cpu",
                "--frames",
                "1:2",
                "--camera",
                "auto",
                "--psf-sigma",
                "0.92",
                "--drift",
                "off",
            ]
        )
        == 0
    )
    assert "warning" not in capsys.readouterr().err
    used = json.loads((auto / "run.json").read_text())["camera"]["used"]
    assert used["source"] == "estimated from the movie"
    assert used["gain_adu_per_photon"] == pytest.approx(3.0, rel=0.15)


def test_camera_auto_on_a_too_short_movie_is_one_sentence(movie, tmp_path, capsys):
    err = _error(capsys, ["reconstruct", str(movie), "--out", str(tmp_path / "r"), "--camera", "auto"])
    assert "at least 4 frames" in err


def test_the_detection_knob_is_honoured(gradient_movie, tmp_path):
    counts = []
    for knob in ("0", "500", "3000"):
        out = tmp_path / f"knob{knob}"
        assert (
            main(
                [
                    "reconstruct",
                    str(gradient_movie),
                    "--out",
                    str(out),
                    "--no-posterior",
                    "--device",
                    "cpu",
                    "--frames",
                    "1:4",
                    "--camera",
                    "auto",
                    "--min-photons",
                    knob,
                ]
            )
            == 0
        )
        locs = read_localizations_csv(out / "localizations.csv")
        assert (locs.intensity_photons >= float(knob)).all()
        counts.append(len(locs))
    # 2000-photon emitters: a 500-photon knob keeps most, a 3000-photon knob almost none
    assert counts[0] >= counts[1] > 0.6 * counts[0] and counts[2] < 0.2 * counts[0]
