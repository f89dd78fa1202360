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
    cfg = SimulationConfig(n_frames=3, height_px=21, width_px=26, density_per_um2=1.0, seed=5,
                           offset_adu=100.0, gain_adu_per_photon=1.5)
    sim = simulate_stack(cfg, quantize=True)
    return write_stack(tmp_path / "movie.tif", sim.adu, 100.0, extra_info={"offset_adu": 100.0,
                                                                           "gain_adu_per_photon": 1.5})


def test_reconstruct_writes_all_outputs(movie, tmp_path, tiny_models, capsys):
    out = tmp_path / "rec"
    code = main(["reconstruct", str(movie), "--out", str(out), "--phi", tiny_models["phi"], "--psi",
                 tiny_models["psi"], "--samples", "2", "--frames", "2:3", "--device", "cpu", "--seed", "1"])
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["frames_done"] == 2 and record["completed"] and record["device"] == "cpu"
    assert record["settings"]["pixel_size_nm"] == 100.0 and record["settings"]["gain_adu_per_photon"] == 1.5
    assert record["settings"]["frames"] == [1, 3] and "torch" in record and record["timings_s"]["total"] > 0
    with TiffStack(out / "render.tif") as render:
        assert render.shape == (1, 84, 104) and render.metadata.pixel_size_nm == pytest.approx(25.0)
    assert (out / "render_variance.tif").exists()
    read_localizations_csv(out / "localizations.csv")  # parses (may be empty with untrained models)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_reconstruct_without_posterior(movie, tmp_path, tiny_models):
    out = tmp_path / "rec"
    assert main(["reconstruct", str(movie), "--out", str(out), "--phi", tiny_models["phi"], "--no-posterior",
                 "--device", "cpu"]) == 0
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
