"""``reconstruct --scheduler``: a local Dask cluster of 2 worker processes writes what a
single-process run writes (issue 12)."""

import json

import distributed
import numpy as np
import pytest

from smlm_diffusion.cli import main
from smlm_diffusion.io import TiffStack, write_stack
from smlm_diffusion.reconstruction.distributed import task_ranges
from smlm_diffusion.simulation import SimulationConfig, simulate_stack


def test_tasks_are_whole_chunks_covering_the_range():
    assert task_ranges(16, 70, 20, 16) == [(16, 48), (48, 70)]
    assert task_ranges(0, 10, 256, 16) == [(0, 10)]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as local:
        yield local.scheduler_address


def _movie(tmp_path, n_frames):
    cfg = SimulationConfig(
        n_frames=n_frames,
        height_px=32,
        width_px=32,
        density_per_um2=1.0,
        photons=1500.0,
        background_photons=15.0,
        offset_adu=100.0,
        gain_adu_per_photon=2.0,
        seed=11,
    )
    return write_stack(tmp_path / "movie.tif", simulate_stack(cfg, quantize=True).adu, 108.0)


def test_cluster_run_writes_the_single_process_outputs(tmp_path, cluster):
    movie = _movie(tmp_path, 56)
    common = ["--no-posterior", "--camera", "auto", "--device", "cpu", "--seed", "3"]
    assert main(["reconstruct", str(movie), "--out", str(tmp_path / "one"), *common]) == 0
    assert (
        main(
            [
                "reconstruct",
                str(movie),
                "--out",
                str(tmp_path / "many"),
                *common,
                "--scheduler",
                cluster,
                "--task-frames",
                "16",
            ]
        )
        == 0
    )
    one, many = (tmp_path / name for name in ("one", "many"))
    csv = (one / "localizations.csv").read_text()
    assert csv.count("\n") > 100 and csv == (many / "localizations.csv").read_text()
    with TiffStack(one / "render.tif") as a, TiffStack(many / "render.tif") as b:
        assert np.allclose(a.read(0, 1), b.read(0, 1), rtol=1e-6, atol=1e-9)
    single, spread = (json.loads((d / "run.json").read_text()) for d in (one, many))
    assert spread["psf"] == single["psf"] and spread["camera"] == single["camera"]
    assert spread["frames_done"] == 56 and spread["completed"]


def test_cluster_posterior_samples_match_the_single_process_run(tmp_path, cluster, tiny_models):
    movie = _movie(tmp_path, 6)
    common = [
        "--phi",
        tiny_models["phi"],
        "--psi",
        tiny_models["psi_v2"],
        "--samples",
        "2",
        "--device",
        "cpu",
        "--psf-sigma",
        "1.0",
    ]
    assert main(["reconstruct", str(movie), "--out", str(tmp_path / "one"), *common]) == 0
    assert main(["reconstruct", str(movie), "--out", str(tmp_path / "many"), *common, "--scheduler", cluster]) == 0
    with (
        TiffStack(tmp_path / "one" / "render_variance.tif") as a,
        TiffStack(tmp_path / "many" / "render_variance.tif") as b,
    ):
        assert np.allclose(a.read(0, 1), b.read(0, 1), rtol=1e-5) and a.read(0, 1).max() > 0


def test_an_interrupted_run_resumes_on_the_cluster(tmp_path, cluster):
    """The cluster runs only the tasks with frames the interrupted run lacks (the chunk it
    stopped in whole, its finished frames skipped); the table equals an uninterrupted run's."""
    from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
    from smlm_diffusion.reconstruction.distributed import reconstruct_on_cluster

    movie = _movie(tmp_path, 40)
    settings = dict(posterior=False, device="cpu", chunk_frames=8, seed=3, offset_adu=100.0, gain_adu_per_photon=2.0)
    with TiffStack(movie) as stack:
        whole = reconstruct(stack, ReconstructionSettings(**settings))
        events = []
        part = reconstruct(
            stack, ReconstructionSettings(**settings), progress=events.append, should_stop=lambda: len(events) >= 13
        )
    assert part.frames == list(range(1, 14))
    snapshots = []  # the finished tasks, put together after each one (checkpoint_s=0)
    result = reconstruct_on_cluster(
        str(movie),
        TiffStack,
        ReconstructionSettings(**settings),
        cluster,
        8,
        previous=part,
        checkpoint=snapshots.append,
        checkpoint_s=0.0,
    )
    assert result.completed and result.frames == whole.frames
    assert snapshots and not snapshots[-1].completed and set(part.frames) <= set(snapshots[0].frames)
    assert len(snapshots[-1].localizations) == sum(len(t) for t in snapshots[-1].frame_tables)
    a, b = result.localizations, whole.localizations
    assert len(a) == len(b) > 100
    for name, column in b._all_columns().items():
        np.testing.assert_array_equal(a._all_columns()[name], column, err_msg=name)


def test_an_unreachable_scheduler_is_one_sentence(tmp_path, capsys, monkeypatch):
    from smlm_diffusion.reconstruction import distributed as module

    defaults = list(module.reconstruct_on_cluster.__defaults__)
    defaults[1] = 2.0  # connect_timeout_s: give up after 2 s, not 20
    monkeypatch.setattr(module.reconstruct_on_cluster, "__defaults__", tuple(defaults))
    movie = _movie(tmp_path, 2)
    code = main(
        ["reconstruct", str(movie), "--out", str(tmp_path / "x"), "--no-posterior", "--scheduler", "tcp://127.0.0.1:1"]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "Dask scheduler at tcp://127.0.0.1:1" in err and "Traceback" not in err


def test_cluster_tasks_sample_with_the_psi_the_first_task_chose(tmp_path, cluster):
    """--psi auto on a cluster: the first task chooses (here psi-sparse: the movie starts
    sparse) and every later task samples with that choice, as the single-process run does,
    although the later frames alone are dense enough for psi v9."""
    from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
    from smlm_diffusion.reconstruction.distributed import reconstruct_on_cluster

    parts = [
        simulate_stack(
            SimulationConfig(
                n_frames=2,
                height_px=32,
                width_px=32,
                density_per_um2=density,
                photons=1500.0,
                background_photons=15.0,
                offset_adu=100.0,
                seed=12,
            ),
            quantize=True,
        ).adu
        for density in (0.2, 3.0)
    ]
    movie = write_stack(tmp_path / "sparse_then_dense.tif", np.concatenate(parts), 108.0)
    settings = ReconstructionSettings(offset_adu=100.0, device="cpu", psf_sigma_px=1.0, chunk_frames=2, seed=2)
    settings.sampler.n_samples = 2
    with TiffStack(movie) as stack:
        single = reconstruct(stack, settings)
    spread = reconstruct_on_cluster(str(movie), TiffStack, settings, cluster, task_frames=2)
    assert single.psi_model == spread.psi_model == "psi-sparse" and spread.psi_choice == single.psi_choice
    assert spread.frames == [1, 2, 3, 4] and spread.render_variance.max() > 0
    assert np.allclose(spread.render_variance, single.render_variance, rtol=1e-5)
