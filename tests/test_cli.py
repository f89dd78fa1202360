"""The command line: simulate/evaluate/demo, and one clear sentence for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from smlm_diffusion.cli import main
from smlm_diffusion.io import TiffStack, read_localizations_csv


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_writes_uint16_stack_and_ground_truth(tmp_path, capsys):
    out = tmp_path / "movie.tif"
    code, stdout, _ = _run(
        capsys,
        "simulate",
        str(out),
        "--frames",
        "30",
        "--height",
        "24",
        "--width",
        "32",
        "--density",
        "1.0",
        "--pixel-size",
        "100",
        "--gain",
        "2",
        "--offset",
        "50",
        "--structure",
        "clusters",
        "--seed",
        "4",
    )
    assert code == 0 and "movie.csv" in stdout
    with TiffStack(out) as stack:
        assert stack.shape == (30, 24, 32) and stack.dtype == np.uint16
        assert stack.metadata.pixel_size_nm == pytest.approx(100.0)
        assert stack.metadata.offset_adu == 50.0 and stack.metadata.gain_adu_per_photon == 2.0
        assert stack[:].min() >= 40  # offset 50 ADU minus read noise
    truth = read_localizations_csv(tmp_path / "movie.csv")
    assert len(truth) > 0 and truth.frame.min() >= 1 and truth.frame.max() <= 30
    assert truth.x_nm.max() < 32 * 100 + 300 and np.isfinite(truth.intensity_photons).all()


def test_simulate_kde_targets_and_evaluate_truth_against_itself(tmp_path, capsys):
    out = tmp_path / "m.tif"
    assert _run(capsys, "simulate", str(out), "--frames", "5", "--height", "16", "--width", "16", "--kde")[0] == 0
    with TiffStack(tmp_path / "m_kde.tif") as kde:
        assert kde.shape == (5, 64, 64)
    code, stdout, _ = _run(capsys, "evaluate", str(tmp_path / "m.csv"), str(tmp_path / "m.csv"))
    metrics = json.loads(stdout)
    assert code == 0 and metrics["jaccard"] == 1.0 and metrics["rmse_lateral_nm"] == 0.0
    assert metrics["efficiency"] == 100.0


def test_evaluate_tolerance_changes_the_matching(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,frame,x [nm],y [nm]\n1,1,0,0\n")
    (tmp_path / "p.csv").write_text("id,frame,x [nm],y [nm]\n1,1,100,0\n")
    wide = json.loads(_run(capsys, "evaluate", str(tmp_path / "p.csv"), str(tmp_path / "t.csv"))[1])
    narrow = json.loads(
        _run(capsys, "evaluate", str(tmp_path / "p.csv"), str(tmp_path / "t.csv"), "--tolerance", "50")[1]
    )
    assert wide["true_positives"] == 1 and wide["rmse_lateral_nm"] == pytest.approx(100.0)
    assert narrow["true_positives"] == 0 and narrow["false_positives"] == 1


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["simulate", "{tmp}/a.tif", "--density", "-1"], "density"),
        (["simulate", "{tmp}/a.png"], ".tif"),
        (["simulate", "{tmp}/a.tif", "--frames", "0"], "frames"),
        (["simulate", "{tmp}/a.tif", "--gain", "0"], "gain"),
        (["evaluate", "{tmp}/missing.csv", "{tmp}/t.csv"], "not found"),
        (["evaluate", "{tmp}/image.tif", "{tmp}/t.csv"], "not a readable CSV|lacks the column"),
        (["evaluate", "{tmp}/t.csv", "{tmp}/t.csv", "--tolerance", "-5"], "tolerance"),
    ],
)
def test_bad_input_exits_non_zero_with_one_sentence(tmp_path, capsys, argv, fragment):
    (tmp_path / "t.csv").write_text("id,frame,x [nm],y [nm]\n1,1,0,0\n")
    (tmp_path / "image.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    code, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"smlm-diffusion {argv[0]}: error: ")
    assert any(f in lines[0] for f in fragment.split("|")), lines[0]
    assert not (tmp_path / "a.tif").exists()


def test_console_script_runs_as_a_module_with_a_clear_error():
    result = subprocess.run(
        [sys.executable, "-m", "smlm_diffusion", "evaluate", "nope.csv", "nope.csv"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "smlm-diffusion evaluate: error: File not found: nope.csv; check the path."


def test_demo_simulates_localizes_evaluates_and_draws(tmp_path, capsys):
    code, stdout, _ = _run(
        capsys, "demo", "--out", str(tmp_path / "d"), "--frames", "20", "--samples", "4", "--device", "cpu"
    )
    assert code == 0
    for name in (
        "raw.tif",
        "ground_truth.csv",
        "localizations.csv",
        "render.tif",
        "run.json",
        "metrics.json",
        "demo.png",
        "posterior/localizations.csv",
        "posterior/render_variance.tif",
    ):
        assert (tmp_path / "d" / name).stat().st_size > 0
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["precision"] > 0.9 and metrics["recall"] > 0.7
    assert metrics["posterior"]["frames"] == 1 and metrics["posterior"]["jaccard"] > 0.6
    locs = read_localizations_csv(tmp_path / "d" / "localizations.csv")
    assert set(np.unique(locs.frame)) == set(range(1, 21))
    assert np.all(np.isfinite(locs.uncertainty_xy_nm)) and np.all(locs.uncertainty_xy_nm > 0)
    sampled = read_localizations_csv(tmp_path / "d" / "posterior" / "localizations.csv")
    assert set(np.unique(sampled.frame)) == {1} and "probability" in sampled.extra
    assert (tmp_path / "d" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
