"""Tiling, posterior sampling and the reconstruction engine (plumbing with tiny untrained
models; quality with the bundled ones lives in test_bundled_models.py)."""

import numpy as np
import pytest
import torch

from smlm_diffusion.errors import SmlmInputError
from smlm_diffusion.inference.phi_path import phi_kde
from smlm_diffusion.inference.posterior import sample_posterior
from smlm_diffusion.inference.sampling_settings import SamplerSettings, network_evaluations_per_tile, step_pairs
from smlm_diffusion.inference.tiling import plan_tiles
from smlm_diffusion.models.store import load_model
from smlm_diffusion.reconstruction import ReconstructionRun, ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack


@pytest.mark.parametrize("shape,core,halo", [((37, 45), 16, 4), ((20, 20), 20, 4), ((5, 130), 32, 8)])
def test_tiles_cover_every_pixel_once(shape, core, halo):
    cover = np.zeros(shape, int)
    for t in plan_tiles(*shape, core, halo):
        cover[t.r0 : t.r1, t.c0 : t.c1] += 1
        assert t.in_r0 <= t.r0 and t.in_r1 >= t.r1 and t.r1 - t.r0 <= core
        assert t.in_r0 >= 0 and t.in_c1 <= shape[1]
    assert (cover == 1).all()


def test_phi_tiling_invariance(tiny_models):
    phi = load_model(tiny_models["phi"]).module
    frames = np.random.default_rng(1).normal(size=(2, 2, 53, 61)).astype(np.float32)
    whole = phi_kde(phi, frames, torch.device("cpu"), core_px=128)
    tiled = phi_kde(phi, frames, torch.device("cpu"), core_px=17)
    assert np.abs(whole - tiled).max() / np.abs(whole).max() < 1e-3
    assert whole.shape == (2, 212, 244)


def test_accelerated_sampling_needs_far_fewer_evaluations():
    full = SamplerSettings(mode="full")
    fast = SamplerSettings()
    assert network_evaluations_per_tile(full, 100) == 100
    assert network_evaluations_per_tile(full, 100) >= 5 * network_evaluations_per_tile(fast, 100)
    assert step_pairs(fast, 100)[0][0] == fast.t0 and step_pairs(fast, 100)[-1][1] == 0


def test_a_scaled_psi_samples_from_noise_on_its_own_plan_unless_told_otherwise():
    """The scaled residual is unit-sized, so its chain starts at t = T: the "auto" plan gives
    such a psi SCALED_PSI_TIMES (12 evaluations, the first five single steps), their own
    posterior variance (mix 0) and its shift width, the other psis t0/stride and mix 0; times
    and a mix that are given are kept (None: t0/stride). Times must fall strictly within [1, T]."""
    from smlm_diffusion.inference.sampling_settings import (
        SCALED_PSI_SHIFT_WIDTH,
        SCALED_PSI_TIMES,
        SCALED_PSI_VARIANCE_MIX,
        plan_for,
        step_mixes,
    )

    plan = plan_for(SamplerSettings(), "scaled")
    assert [t for t, _ in step_pairs(plan, 100)] == list(SCALED_PSI_TIMES)
    assert step_pairs(plan, 100)[-1] == (SCALED_PSI_TIMES[-1], 0)
    assert network_evaluations_per_tile(plan, 100) == 12 and plan.variance_mix == SCALED_PSI_VARIANCE_MIX == 0.0
    assert [t for t, _ in step_pairs(plan, 100)][:6] == [100, 99, 98, 97, 96, 95]  # single steps at the top
    assert plan.shift_width == SCALED_PSI_SHIFT_WIDTH > 1.0  # the strided plan's width correction
    assert step_mixes(plan, 100) == [SCALED_PSI_VARIANCE_MIX] * 12
    assert plan_for(SamplerSettings(times=(100, 50, 10)), "scaled").variance_mix == 1.0  # other times: one mix
    older = plan_for(SamplerSettings(), "residual")
    assert older.times is None and older.variance_mix == 0.0 and step_pairs(older, 100)[0][0] == older.t0
    assert older.shift_width == 1.0
    given = SamplerSettings(times=(100, 50, 10), variance_mix=0.5, shift_width=1.1)
    assert plan_for(given, "scaled") == given and step_pairs(given, 100) == [(100, 50), (50, 10), (10, 0)]
    assert plan_for(SamplerSettings(times=(100, 50, 10)), "scaled").shift_width == 1.0  # not the auto plan
    strided = plan_for(SamplerSettings(times=None, t0=100, stride=25), "scaled")
    assert [t for t, _ in step_pairs(strided, 100)] == [100, 75, 50, 25]
    assert len(step_pairs(plan_for(SamplerSettings(mode="full"), "scaled"), 100)) == 100
    for bad in ((), (101, 50), (50, 50, 10), (50, 0), "fast"):
        with pytest.raises(ValueError, match="times"):
            SamplerSettings(times=bad).validate(100)
    with pytest.raises(ValueError, match="shift width"):
        SamplerSettings(shift_width=0.0).validate(100)


def test_a_variance_mix_is_one_number_or_one_per_step():
    """step_mixes: one number for every step, or one per step (kept in order); full sampling
    is the DDPM posterior (0) throughout; a list of the wrong length or a value outside
    [0, 1] is refused with a sentence that says so."""
    from smlm_diffusion.inference.sampling_settings import step_mixes

    assert step_mixes(SamplerSettings(times=(100, 50, 10), variance_mix=0.5), 100) == [0.5, 0.5, 0.5]
    assert step_mixes(SamplerSettings(times=(100, 50, 10), variance_mix=(1.0, 0.0, 0.0)), 100) == [1.0, 0.0, 0.0]
    assert step_mixes(SamplerSettings(mode="full", variance_mix=1.0), 100) == [0.0] * 100
    with pytest.raises(ValueError, match="3 steps but 2 variance mixes"):
        step_mixes(SamplerSettings(times=(100, 50, 10), variance_mix=(1.0, 0.0)), 100)
    with pytest.raises(ValueError, match="variance mix"):
        SamplerSettings(variance_mix=(1.0, 1.5)).validate(100)


@pytest.mark.parametrize("name,mode", [("psi", "accelerated"), ("psi_v2", "accelerated"), ("psi_v2", "full")])
def test_posterior_samples_are_seeded_and_batch_independent(tiny_models, name, mode):
    psi = load_model(tiny_models[name])
    estimate = np.zeros((4 * 22, 4 * 18), np.float32)
    estimate[40:50, 40:50] = 1.0
    frame = np.random.default_rng(0).normal(size=(2, 22, 18)).astype(np.float32)
    settings = SamplerSettings(n_samples=3, t0=4, stride=2, skip_empty_below=None, core_px=10, halo_px=3, mode=mode)

    def run(seed):
        return sample_posterior(
            psi.module, psi.schedule, estimate, settings, torch.device("cpu"), seed=seed, frame=2, frame_input=frame
        )

    a = run(4)
    if mode == "accelerated":
        settings.max_batch_maps = 3  # one tile per call instead of several
    # (full sampling of an untrained psi over 100 steps amplifies float rounding, which differs
    # between batch sizes, past any tolerance: it is checked for exact repeatability instead)
    b, c = run(4), run(5)
    assert a.shape == (3, 88, 72)
    assert np.allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c)
    assert (a >= 0).all() and (a <= settings.clip_max).all()


def test_a_psi_that_reads_the_frame_needs_it(tiny_models):
    psi = load_model(tiny_models["psi_v2"])
    with pytest.raises(ValueError, match="frame_input"):
        sample_posterior(
            psi.module, psi.schedule, np.zeros((40, 40), np.float32), SamplerSettings(n_samples=2), torch.device("cpu")
        )


def _stack(n_frames=2, h=23, w=31, seed=0):
    return simulate_stack(
        SimulationConfig(n_frames=n_frames, height_px=h, width_px=w, density_per_um2=1.0, seed=seed, offset_adu=100.0)
    )


def _settings(tiny_models, **kw):
    kw = {"phi_model": tiny_models["phi"], "psi_model": tiny_models["psi"], "device": "cpu", **kw}
    s = ReconstructionSettings(**kw)
    s.sampler = SamplerSettings(n_samples=2, t0=4, stride=2, skip_empty_below=None)
    return s


@pytest.mark.parametrize("psi_name", ["psi", "psi_v2"])
def test_reconstruct_odd_sizes_2d_and_stacks(tiny_models, psi_name):
    sim = _stack()
    rec = reconstruct(sim.adu, _settings(tiny_models, keep_frame_kdes=True, psi_model=tiny_models[psi_name]))
    assert rec.completed and rec.frames == [1, 2]
    assert rec.render_kde.shape == (92, 124) and rec.render_variance.shape == (92, 124)
    assert rec.render.shape == (230, 310) and rec.render_pixel_nm == pytest.approx(10.8)  # a tenth of a camera px
    assert set(rec.mean_kdes) == {1, 2} and rec.variance_kdes[1].min() >= 0
    single = reconstruct(sim.adu[0], _settings(tiny_models, posterior=False))
    assert single.completed and single.frames == [1] and single.render_variance is None


def test_same_seed_same_result(tiny_models):
    sim = _stack(1)
    a = reconstruct(sim.adu, _settings(tiny_models, seed=3, keep_frame_kdes=True))
    b = reconstruct(sim.adu, _settings(tiny_models, seed=3, keep_frame_kdes=True))
    assert np.array_equal(a.mean_kdes[1], b.mean_kdes[1])
    assert np.array_equal(a.variance_kdes[1], b.variance_kdes[1])


def test_stop_keeps_finished_frames(tiny_models):
    sim = _stack(4)
    events = []
    rec = reconstruct(
        sim.adu,
        _settings(tiny_models),
        progress=events.append,
        should_stop=lambda: sum(e.frame_result is not None for e in events) >= 2,
    )
    assert not rec.completed and rec.frames == [1, 2]
    assert events[-1].done < events[-1].total
    run = ReconstructionRun(sim.adu, _settings(tiny_models, posterior=False, chunk_frames=1))
    for event in run.events():
        break
    assert run.result.frames == [1]


def test_frame_range_and_region(tiny_models):
    sim = _stack(5)
    rec = reconstruct(sim.adu, _settings(tiny_models, posterior=False, frames=(2, 4), region=(3, 15, 4, 20)))
    assert rec.frames == [3, 4] and rec.render_kde.shape == (48, 64) and rec.origin_px == (3, 4)
    assert rec.render.shape == (120, 160)  # the region at a tenth of a camera pixel
    with pytest.raises(SmlmInputError, match="outside the stack"):
        reconstruct(sim.adu, _settings(tiny_models, frames=(3, 9)))
    with pytest.raises(SmlmInputError, match="region"):
        reconstruct(sim.adu, _settings(tiny_models, region=(0, 99, 0, 5)))
    with pytest.raises(SmlmInputError, match="empty"):
        reconstruct(np.zeros((0, 8, 8)), _settings(tiny_models))
    with pytest.raises(SmlmInputError, match="not available"):
        reconstruct(sim.adu, _settings(tiny_models, device="cuda"))


@pytest.mark.parametrize("name,warned", [("psi_v2", True), ("psi_v3", False)])
def test_full_sampling_warns_for_noise_prediction_on_the_cosine_schedule(tiny_models, name, warned):
    from smlm_diffusion.reconstruction.models_used import full_sampling_warning as _full_sampling_warning

    psi = load_model(tiny_models[name])
    sentences = _full_sampling_warning(psi, SamplerSettings(mode="full"))
    assert any("Full sampling" in w for w in sentences) == warned
    assert _full_sampling_warning(psi, SamplerSettings()) == []  # accelerated sampling is fine


def test_phi_inference_copy_folds_batch_norm_and_gives_the_same_kde(tiny_models):
    """phi_kde runs a copy with each BatchNorm folded into its convolution, channels-last:
    the KDE is that of the trained module in eval mode, with any running statistics."""
    from smlm_diffusion.models.phi import inference_copy

    phi = load_model(tiny_models["phi"]).module.eval()
    generator = torch.Generator().manual_seed(0)
    for norm in (m for m in phi.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.3)
        norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
        norm.weight.data.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    fast = inference_copy(phi)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    frames = np.random.default_rng(2).normal(size=(3, 2, 40, 36)).astype(np.float32)
    with torch.no_grad():
        expected = phi(torch.from_numpy(frames)).numpy()[:, 0]
    got = phi_kde(phi, frames, torch.device("cpu"))
    assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-6)


def test_phi_path_prepares_the_next_chunk_ahead_and_writes_the_same_localizations():
    """Chunks of 2 frames (the next chunk goes through phi in a thread while this one is
    localized) give the frames and localizations of one chunk of all 6 frames; a run
    stopped after its first frame keeps it and stops cleanly."""
    sim = simulate_stack(
        SimulationConfig(
            n_frames=6, height_px=32, width_px=32, density_per_um2=1.5, photons=2000, seed=4, offset_adu=100.0
        )
    )
    common = dict(posterior=False, psf_sigma_px=1.0, offset_adu=100.0, device="cpu", drift="off")
    ahead = reconstruct(sim.adu, ReconstructionSettings(chunk_frames=2, **common))
    whole = reconstruct(sim.adu, ReconstructionSettings(chunk_frames=6, **common))
    a, b = ahead.localizations, whole.localizations
    assert ahead.completed and ahead.frames == whole.frames == [1, 2, 3, 4, 5, 6] and len(a) == len(b) > 20
    for name, column in b._all_columns().items():
        assert np.allclose(a._all_columns()[name], column, rtol=1e-9, atol=1e-9, equal_nan=True), name
    run = ReconstructionRun(sim.adu, ReconstructionSettings(chunk_frames=2, **common))
    events = run.events()
    next(event for event in events if event.frame_result is not None)
    events.close()
    assert run.result.frames == [1] and not run.result.completed


def test_the_posterior_conditions_on_the_bundled_phi_its_psi_was_trained_on(tmp_path, monkeypatch):
    """With the default phi, a run with the posterior uses the bundled phi whose SHA-256 the
    psi records (phi_v2) and says nothing; the phi path keeps the default phi; a phi named
    explicitly is used as given, with the pairing warning."""
    from smlm_diffusion.models import CameraPsi, NoiseSchedule, ShufflePhi, store
    from smlm_diffusion.models.normalisation import INPUT_NORMALISATION, kde_scale
    from smlm_diffusion.reconstruction import engine

    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(store, "MANIFEST", tmp_path / "manifest.json")
    monkeypatch.setattr(store, "BUNDLED", {**store.BUNDLED, "phi_v2": "phi"})  # a release with two phis
    torch.manual_seed(1)
    norm = {
        "input": dict(INPUT_NORMALISATION),
        "kde_scale": kde_scale(),
        "kde_sigma_upsampled_px": 3.0,
        "upsampling": 4,
    }
    for name in ("phi", "phi_v2"):
        store.save_file(store.model_payload("phi", ShufflePhi(channels=8).eval(), norm, {}), tmp_path / f"{name}.pt")
        store.record_bundled(tmp_path / f"{name}.pt")
    training = {"phi_sha256": store.sha256_of(tmp_path / "phi_v2.pt")}
    store.save_file(
        store.model_payload(
            "psi", CameraPsi(channels=8, heads=2, blocks=1), norm, training, NoiseSchedule(kind="cosine")
        ),
        tmp_path / "psi.pt",
    )
    store.record_bundled(tmp_path / "psi.pt")
    loaded = []
    original = engine.cached_model
    monkeypatch.setattr(engine, "cached_model", lambda name, device: loaded.append(str(name)) or original(name, device))
    stack = np.random.default_rng(0).poisson(5.0, (1, 16, 16)).astype(float) + 100.0
    settings = ReconstructionSettings(offset_adu=100.0, device="cpu")
    settings.sampler.n_samples = 2
    result = reconstruct(stack, settings)
    assert loaded == ["psi", "phi_v2"] and not any("trained on another phi" in w for w in result.warnings)
    loaded.clear()
    reconstruct(stack, ReconstructionSettings(offset_adu=100.0, device="cpu", posterior=False))
    assert loaded == ["phi"]
    loaded.clear()
    settings.phi_model = str(tmp_path / "phi.pt")
    result = reconstruct(stack, settings)
    assert loaded[-1] == str(tmp_path / "phi.pt") and any("trained on another phi" in w for w in result.warnings)
    # a bundled name holds the kind it names
    store.save_file(
        store.model_payload("psi", CameraPsi(channels=8, heads=2, blocks=1), norm, {}, NoiseSchedule(kind="cosine")),
        tmp_path / "phi_v2.pt",
    )
    store.record_bundled(tmp_path / "phi_v2.pt")
    with pytest.raises(SmlmInputError, match="holds a psi model, not a phi model"):
        store.load_model("phi_v2")


def test_inference_precision_choices():
    from smlm_diffusion.inference.devices import inference_dtype

    assert inference_dtype("cpu", "float32") is None
    assert inference_dtype("cpu", "bfloat16") is torch.bfloat16
    assert inference_dtype(torch.device("cuda"), "auto") is None  # not measured on GPUs: float32
    with pytest.raises(SmlmInputError, match="precision"):
        inference_dtype("cpu", "half")
    with pytest.raises(ValueError, match="precision"):
        ReconstructionSettings(precision="fp16").validate()


def test_bfloat16_phi_and_psi_stay_close_to_float32(tiny_models):
    """bfloat16 convolutions (8 mantissa bits): phi's KDE within 2 % of its peak; psi's
    samples from the same noise within 5 % of their range; GroupNorm, psi's input stem, time
    embedding and head compute in float32; the float32 and bfloat16 inference copies are
    cached side by side."""
    from smlm_diffusion.inference.fast_modules import FLOAT32_PARTS, Float32GroupNorm, Float32Island, inference_module

    phi = load_model(tiny_models["phi"]).module
    frames = np.random.default_rng(3).normal(size=(2, 2, 40, 36)).astype(np.float32)
    exact = phi_kde(phi, frames, torch.device("cpu"))
    reduced = phi_kde(phi, frames, torch.device("cpu"), dtype=torch.bfloat16)
    assert reduced.dtype == np.float32 and 0 < np.abs(reduced - exact).max() <= 0.02 * np.abs(exact).max()

    psi = load_model(tiny_models["psi_v2"])
    estimate = np.zeros((4 * 22, 4 * 18), np.float32)
    estimate[40:50, 40:50] = 1.0
    frame = np.random.default_rng(0).normal(size=(2, 22, 18)).astype(np.float32)
    settings = SamplerSettings(n_samples=3, t0=4, stride=2, skip_empty_below=None, core_px=10, halo_px=3)
    a, b = (
        sample_posterior(
            psi.module,
            psi.schedule,
            estimate,
            settings,
            torch.device("cpu"),
            seed=1,
            frame=2,
            frame_input=frame,
            dtype=dtype,
        )
        for dtype in (None, torch.bfloat16)
    )
    assert 0 < np.abs(a - b).max() <= 0.05 * (a.max() - a.min())
    fast32, fast16 = inference_module(psi.module), inference_module(psi.module, dtype=torch.bfloat16)
    assert fast32 is not fast16 and fast16 is inference_module(psi.module, dtype=torch.bfloat16)
    norms = [m for m in fast16.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, Float32GroupNorm) for m in norms)
    assert not any(isinstance(m, Float32GroupNorm) for m in fast32.modules())
    assert all(isinstance(getattr(fast16, name), Float32Island) for name in FLOAT32_PARTS)


def test_the_run_records_its_precision(tiny_models):
    settings = ReconstructionSettings(
        posterior=False, phi_model=tiny_models["phi"], psf_sigma_px=1.0, device="cpu", drift="off", precision="bfloat16"
    )
    assert reconstruct(_stack(1).adu, settings).precision == "bfloat16"
    settings.precision = "float32"
    assert reconstruct(_stack(1).adu, settings).precision == "float32"


def _helper_runs(monkeypatch):
    """Localizations of a small phi-path run on two threads with the fits' helper process
    (``fit_worker``) taking even small parts, and the same run without it."""
    from smlm_diffusion.reconstruction import fit_worker

    sim = simulate_stack(
        SimulationConfig(
            n_frames=4, height_px=32, width_px=32, density_per_um2=1.5, photons=2000, seed=6, offset_adu=100.0
        )
    )
    settings = ReconstructionSettings(posterior=False, psf_sigma_px=1.0, offset_adu=100.0, device="cpu", drift="off")
    monkeypatch.setattr(fit_worker, "MIN_CANDIDATES", 1)
    answered = []
    helper = fit_worker.refine_frames_in_helper
    monkeypatch.setattr(
        fit_worker, "refine_frames_in_helper", lambda *job: answered.append(helper(*job)) or answered[-1]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        helped = reconstruct(sim.adu, settings)
        monkeypatch.setenv("SMLM_DIFFUSION_FIT_PROCESS", "0")
        alone = reconstruct(sim.adu, settings)
    finally:
        torch.set_num_threads(threads)
    return answered, helped.localizations, alone.localizations


def _same(a, b):
    assert len(a) == len(b) > 10
    for name, column in b._all_columns().items():
        assert np.array_equal(a._all_columns()[name], column, equal_nan=True), name


def test_fits_in_the_helper_process_give_the_same_localizations(monkeypatch):
    """With two threads, the fits of a chunk's second part run in the helper process: the
    same localizations, column by column, as fitting in this process."""
    answered, helped, alone = _helper_runs(monkeypatch)
    assert answered and answered[0] is not None  # the helper answered the first run's part
    _same(helped, alone)


def test_a_helper_that_dies_leaves_the_fits_to_this_process(monkeypatch):
    import subprocess
    import sys

    from smlm_diffusion.reconstruction import fit_worker

    monkeypatch.setattr(fit_worker, "_FAILED", False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dead.wait()
    monkeypatch.setattr(fit_worker, "_running", lambda: dead)
    answered, helped, alone = _helper_runs(monkeypatch)
    assert answered and answered[0] is None and fit_worker._FAILED  # no answer: fitted here
    _same(helped, alone)


def test_local_density_counts_neighbours_and_merged_mass_over_the_disc_inside_the_frame():
    """models_used.local_density: emitters per um^2 within 1 um of each localization (its
    neighbours, and its own phi mass beyond one emitter), over the part of that disc inside
    the frame, averaged over localizations."""
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction.models_used import local_density

    px = 100.0  # nm: the 1 um disc is 10 px in radius; its area 3.14 um^2 inside a 200x200 frame

    def table(xs, ys, mass=None, frame=1):
        n = len(xs)
        return Localizations(
            frame=np.full(n, frame),
            x_nm=np.array(xs) * px,
            y_nm=np.array(ys) * px,
            intensity_photons=np.full(n, 500.0),
            extra={"kde_mass": np.ones(n) if mass is None else np.array(mass)},
        )

    shape = (200, 200)
    assert local_density([table([100.0], [100.0])], shape, px) == 0.0  # alone
    pair = local_density([table([100.0, 105.0], [100.0, 100.0])], shape, px)
    assert pair == pytest.approx(1 / np.pi, rel=0.02)  # one neighbour each in pi um^2
    assert local_density([table([100.0, 150.0], [100.0, 100.0])], shape, px) == 0.0  # 5 um apart
    # neighbours in other frames do not count; a blob phi weighs as 2 emitters holds one more
    assert local_density([table([100.0], [100.0]), table([105.0], [100.0], frame=2)], shape, px) == 0.0
    assert local_density([table([100.0], [100.0], mass=[2.0])], shape, px) == pytest.approx(1 / np.pi, rel=0.02)
    # in a corner only a quarter of the disc lies inside the frame
    corner = local_density([table([0.01, 0.01], [0.01, 5.0])], shape, px)
    assert 2.0 / np.pi < corner < 4.0 / np.pi


def test_auto_psi_refuses_a_sparse_model_that_reads_other_inputs_in_one_sentence():
    """The run is set up for the bundled psi's inputs and plan: an installed psi-sparse that
    reads or samples differently is refused in one sentence, not sampled wrongly."""
    from types import SimpleNamespace

    from smlm_diffusion.errors import SmlmInputError
    from smlm_diffusion.reconstruction import Reconstruction, ReconstructionSettings
    from smlm_diffusion.reconstruction.models_used import choose_psi

    def model(frame_channels):
        return SimpleNamespace(
            module=SimpleNamespace(
                config={"target": "scaled", "condition": "refined", "frame_channels": frame_channels, "prediction": "v"}
            )
        )

    result = Reconstruction(settings=ReconstructionSettings(), shape_px=(16, 16))
    result.psf_sigma_px = 1.0
    empty = (np.zeros((1, 64, 64)), np.full((1, 16, 16), 5.0), np.full((1, 16, 16), 5.0), 0, {})
    psi = model(4)
    assert choose_psi(result, psi, lambda name: model(4), *empty) is not psi  # sparse: the sparse one
    assert result.psi_model == "psi-sparse"
    with pytest.raises(SmlmInputError, match="does not read the same inputs"):
        choose_psi(result, psi, lambda name: model(3), *empty)
