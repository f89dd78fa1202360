"""Interrupted runs keep their finished frames and resume to an uninterrupted run's outputs."""

import json
import os
import signal

import numpy as np
import pytest

from smlm_diffusion.cli import main
from smlm_diffusion.io import TiffStack, read_localizations_csv, write_stack
from smlm_diffusion.io.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from smlm_diffusion.reconstruction import ReconstructionSettings, engine, reconstruct
from smlm_diffusion.reconstruction.resume import ResumedRun
from smlm_diffusion.simulation import SimulationConfig, simulate_stack


def _movie(n_frames, size, seed):
    cfg = SimulationConfig(
        n_frames=n_frames,
        height_px=size,
        width_px=size,
        density_per_um2=1.0,
        seed=seed,
        offset_adu=100.0,
        gain_adu_per_photon=1.0,
    )
    return simulate_stack(cfg, quantize=True).adu


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "movie.tif"
    # 128x128 frames: the engine takes them 16 at a time (three chunks)
    return write_stack(path, _movie(34, 128, 3), 100.0, extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.0})


COMMON = ["--no-posterior", "--device", "cpu"]


@pytest.fixture(scope="module")
def uninterrupted(movie_file):
    out = movie_file.parent / "whole"
    assert main(["reconstruct", str(movie_file), "--out", str(out), *COMMON]) == 0
    return out


def _signal_at_frame(monkeypatch, signum, frame_count):
    """Send ``signum`` to this process while the engine finishes its ``frame_count``-th frame."""
    calls = [0]
    original = engine.restrict_kdes

    def counting(*args, **kwargs):
        calls[0] += 1
        if calls[0] == frame_count:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "restrict_kdes", counting)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_the_finished_frames_and_resume_ends_as_an_uninterrupted_run(
    movie_file, uninterrupted, tmp_path, monkeypatch, capsys, signum
):
    common = COMMON
    out = tmp_path / "run"
    _signal_at_frame(monkeypatch, signum, 5)
    assert main(["reconstruct", str(movie_file), "--out", str(out), *common]) == 128 + signum
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    record = json.loads((out / "run.json").read_text())
    # the phi path's chunk is localized at once: its frames computed already are kept
    assert not record["completed"] and record["frames_done"] == 16
    assert record["interrupted"]["signal"] == signal.Signals(signum).name and "--resume" in capsys.readouterr().err
    whole = read_localizations_csv(uninterrupted / "localizations.csv")
    part = read_localizations_csv(out / "localizations.csv")
    assert len(part) == (whole.frame <= 16).sum() > 0 and part.frame.max() <= 16  # exactly the finished frames
    assert (out / CHECKPOINT_NAME).is_file() and "drift" not in record  # post-processing waits for the whole movie

    monkeypatch.undo()
    assert (
        main(["reconstruct", str(movie_file), "--out", str(out), *common, "--false-alarm", "0.01", "--resume"]) == 2
    )  # other options: refused in one sentence
    assert "other settings" in capsys.readouterr().err
    other = tmp_path / "other.tif"  # the same frames under another name: not the run's movie
    other.write_bytes(movie_file.read_bytes())
    assert main(["reconstruct", str(other), "--out", str(out), *common, "--resume"]) == 2
    assert "not this movie" in capsys.readouterr().err
    assert main(["reconstruct", str(movie_file), "--out", str(out), *common, "--resume"]) == 0
    assert (out / "localizations.csv").read_text() == (uninterrupted / "localizations.csv").read_text()
    for name in ("render.tif", "render_kde.tif"):
        with TiffStack(out / name) as a, TiffStack(uninterrupted / name) as b:
            np.testing.assert_allclose(a.read(0, 1), b.read(0, 1), rtol=1e-5, atol=1e-6)
    record = json.loads((out / "run.json").read_text())
    assert record["completed"] and record["frames_done"] == 34 and "interrupted" not in record
    assert not (out / CHECKPOINT_NAME).exists() and (out / "frc.csv").exists()


def test_resume_without_a_checkpoint_is_one_sentence(movie_file, tmp_path, capsys):
    assert main(["reconstruct", str(movie_file), "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no interrupted run to resume" in capsys.readouterr().err


def test_posterior_run_stopped_mid_chunk_resumes_through_a_checkpoint(tiny_models, tmp_path):
    """Whole chunks that are done are skipped, a chunk with finished frames is computed
    whole and only its other frames are kept: every row equals an uninterrupted run's."""
    adu = _movie(6, 20, 7)
    settings = dict(
        pixel_size_nm=100.0,
        offset_adu=100.0,
        phi_model=tiny_models["phi"],
        psi_model=tiny_models["psi"],
        device="cpu",
        chunk_frames=2,
        drift="off",
        seed=2,
    )

    def fresh():
        s = ReconstructionSettings(**settings)
        s.sampler.n_samples = 2
        return s

    whole = reconstruct(adu, fresh())
    finished = []
    part = reconstruct(
        adu,
        fresh(),
        progress=lambda e: finished.append(e.frame_result is not None),
        should_stop=lambda: sum(finished) >= 3,
    )
    assert part.frames == [1, 2, 3] and not part.completed
    save_checkpoint(tmp_path, part, {"input_shape": list(adu.shape)})
    previous, info = load_checkpoint(tmp_path)
    assert info == {"input_shape": [6, 20, 20]} and previous.frames == [1, 2, 3]
    assert ResumedRun(adu, previous, device="auto").run.settings.device == "auto"  # resumed on another machine
    resumed = ResumedRun(adu, previous)
    done = [e.frame_result.frame for e in resumed.events() if e.frame_result is not None]
    assert done == [4, 5, 6]  # frame 4 shares a chunk with frame 3: computed, frame 3 not kept twice
    result = resumed.result
    assert result.completed and result.frames == whole.frames
    a, b = result.localizations, whole.localizations
    assert len(a) == len(b) > 0
    for name, column in b._all_columns().items():
        np.testing.assert_array_equal(a._all_columns()[name], column, err_msg=name)
    np.testing.assert_allclose(result.render_kde, whole.render_kde, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.render_variance, whole.render_variance, rtol=1e-9, atol=1e-12)


def test_an_interruption_during_post_processing_resumes_to_it(movie_file, uninterrupted, tmp_path, monkeypatch):
    from smlm_diffusion.cli import reconstruct as command

    def interrupted(result):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(command, "postprocess", interrupted)
    assert main(["reconstruct", str(movie_file), "--out", str(out), *COMMON]) == 130
    assert len(load_checkpoint(out)[0].frames) == 34  # every frame kept
    monkeypatch.undo()
    assert main(["reconstruct", str(movie_file), "--out", str(out), *COMMON, "--resume"]) == 0
    assert (out / "localizations.csv").read_text() == (uninterrupted / "localizations.csv").read_text()
    assert (out / "frc.csv").exists() and not (out / CHECKPOINT_NAME).exists()
