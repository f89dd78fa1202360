"""psi conditioned on likelihood-refined localizations (``models/conditioning.py``,
``train psi --condition refined``): the condition maps, the training surrogate of the fit,
training, and the engine feeding such a psi its refined fits."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from smlm_diffusion.models import store
from smlm_diffusion.models.conditioning import (
    FOOTPRINT_PX,
    SCALE_FAR,
    SHIFT_RESIDUAL_PER_4X_PX,
    approximate_precision_px,
    precision_value,
    refined_condition,
    residual_scale,
    surrogate_refinement,
)
from smlm_diffusion.models.normalisation import kde_scale
from smlm_diffusion.models.training import Trainer, TrainSettings


def tiny(**kw):
    kw.setdefault("psi_frame_channels", 3)
    return TrainSettings(
        kind="psi", steps=4, batch_size=2, channels=8, frame_px=12, warmup_steps=1, psi_condition="refined", **kw
    )


def test_refined_condition_is_the_eq3_kde_and_a_log_precision_footprint():
    """The condition holds unit mass per emitter (model units: times kde_scale) centred on
    the given positions; the precision channel reads each emitter's log std on its pixel,
    0 for 0.05 4x px, 1 for 2 4x px, and fades with distance."""
    x, y, std = np.array([5.5, 14.25]), np.array([6.5, 12.75]), np.array([0.0125, 0.5])  # camera px
    condition, precision = refined_condition(x, y, std, (20, 20))
    assert condition.shape == (80, 80) and precision.shape == (20, 20)
    assert condition.sum() / kde_scale() == pytest.approx(2.0, rel=1e-3)
    rows, cols = np.mgrid[:80, :80] + 0.5
    left = cols < 40
    assert (condition * cols)[left].sum() / condition[left].sum() == pytest.approx(4 * 5.5, abs=0.02)
    assert (condition * rows)[left].sum() / condition[left].sum() == pytest.approx(4 * 6.5, abs=0.02)
    assert precision_value(np.array([0.05, 2.0])) == pytest.approx([0.0, 1.0])
    assert precision[6, 5] == pytest.approx(0.0, abs=1e-3)  # 4 x 0.0125 = 0.05 4x px, on its own pixel
    assert precision[12, 14] == pytest.approx(np.exp(-0.5 * 0.125 / FOOTPRINT_PX**2), rel=1e-3)  # 2 4x px
    assert precision[0, 19] == pytest.approx(0.0, abs=1e-6)
    empty_condition, empty_precision = refined_condition([], [], [], (8, 8))
    assert not empty_condition.any() and not empty_precision.any()


def test_surrogate_fit_scatters_by_the_precision_misses_faint_and_merges_close_pairs():
    """Isolated bright emitters come back displaced by Mortensen's precision (the std of the
    displacement over many draws matches it); a spot far below the noise is not found; two
    emitters closer than the PSF sigma come back as one at their photon-weighted centre."""
    rng = np.random.default_rng(0)
    expected = approximate_precision_px(np.array([1000.0]), np.array([10.0]), 1.0)[0]
    assert expected == pytest.approx(np.sqrt(13 / 12 / 1000 * (16 / 9 + 8 * np.pi * 13 / 12 * 10 / 1000)))
    shifts = []
    for _ in range(2000):
        x, y, std, _ = surrogate_refinement(
            np.array([10.0]), np.array([10.0]), np.array([1000.0]), np.array([10.0]), 1.0, rng
        )
        assert std == pytest.approx([expected])
        shifts.append((x[0] - 10.0, y[0] - 10.0))
    assert np.std(shifts) == pytest.approx(expected, rel=0.05)
    x, _, _, _ = surrogate_refinement(np.array([10.0]), np.array([10.0]), np.array([20.0]), np.array([200.0]), 1.0, rng)
    assert len(x) == 0
    x, y, std, photons = surrogate_refinement(
        np.array([10.0, 10.6]), np.array([10.0, 10.0]), np.array([3000.0, 1000.0]), np.array([10.0, 10.0]), 1.0, rng
    )
    assert len(x) == 1 and std[0] > 0.3 / 2 * 0.99  # widened by half the pair's distance
    assert photons[0] == 4000.0
    assert abs(x[0] - 10.15) < 5 * std[0]


def test_training_on_the_refined_condition_feeds_psi_the_surrogate_fit(tiny_models, tmp_path):
    """A refined batch adds the surrogate fit's KDE and its precision channel; psi gets that
    KDE as its condition (not phi's) and three frame channels; the model file records the
    condition. --init turns a three-channel psi conditioned on phi into one on the fits."""
    trainer = Trainer(tiny(phi_model=tiny_models["phi"]))
    inputs, targets, conditions, scales = trainer.batch(0)
    assert inputs.shape == (2, 3, 12, 12) and conditions.shape == targets.shape == scales.shape == (2, 1, 48, 48)
    seen = []
    forward = trainer.model.forward
    trainer.model.forward = lambda y, cond, t, frame: (
        seen.append((cond.clone(), frame.clone())),
        forward(y, cond, t, frame),
    )[1]
    assert np.isfinite(trainer.step())
    condition, frame = seen.pop()
    assert torch.equal(condition, torch.from_numpy(conditions)) and torch.equal(frame, torch.from_numpy(inputs))
    out = trainer.export(tmp_path / "psi_refined.pt")
    loaded = store.load_model(out)
    assert loaded.module.condition == "refined" and loaded.normalisation["input"]["channels"] == 2
    phi_conditioned = Trainer(
        TrainSettings(
            kind="psi",
            steps=2,
            batch_size=2,
            channels=8,
            frame_px=12,
            psi_frame_channels=3,
            phi_model=tiny_models["phi"],
        )
    )
    start = phi_conditioned.export(tmp_path / "psi3.pt")
    assert store.load_model(start).module.condition == "phi"
    fine_tune = Trainer(tiny(phi_model=tiny_models["phi"], init_model=str(start)))
    assert fine_tune.model.condition == "refined" and fine_tune.model.config["condition"] == "refined"
    with pytest.raises(ValueError, match="refined"):
        tiny(data_folder=str(tmp_path)).validate()
    with pytest.raises(ValueError, match="refined"):
        TrainSettings(kind="psi", psi_condition="refined").validate()  # needs --frame-channels 3


def test_engine_conditions_a_refined_psi_on_its_fits(tiny_models, tmp_path, monkeypatch):
    """The engine fits phi's candidates first and gives such a psi their KDE as condition,
    their precision as the third frame channel (the frame's own two before it) and, for a
    scaled psi, their scale map; it samples on the scaled psi's plan."""
    import smlm_diffusion.reconstruction.engine as engine
    from smlm_diffusion.inference.sampling_settings import SCALED_PSI_TIMES
    from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
    from smlm_diffusion.simulation import CameraModel, expected_photons

    out = Trainer(tiny(phi_model=tiny_models["phi"], psi_target="scaled", psi_prediction="v")).export(
        tmp_path / "psi_refined.pt"
    )
    calls = []
    original = engine.refined_psi_input

    def spy(*args, **kw):
        calls.append(original(*args, **kw))
        return calls[-1]

    monkeypatch.setattr(engine, "refined_psi_input", spy)
    rng = np.random.default_rng(3)
    omega = expected_photons(np.array([[8.3]]), np.array([[7.6]]), np.array([[3000.0]]), (16, 16), 1.0, 10.0)
    frame = CameraModel(1.0, 100.0, 0.0).expose(omega, rng)
    settings = ReconstructionSettings(
        offset_adu=100.0, phi_model=tiny_models["phi"], psi_model=str(out), psf_sigma_px=1.0
    )
    # the untrained tiny phi sees nothing: give the engine a phi estimate with the spot in it
    monkeypatch.setattr(engine, "kde_candidates", lambda *a: _one_candidate(settings))
    from smlm_diffusion.reconstruction import refine

    monkeypatch.setattr(refine, "kde_candidates", lambda *a: _one_candidate(settings))
    result = reconstruct(frame, settings)
    assert len(calls) == 1 and result.render_variance is not None
    assert result.settings.sampler.times == SCALED_PSI_TIMES  # a scaled psi's plan, recorded for run.json
    condition, psi_frame, scale = calls[0]
    assert psi_frame.shape == (3, 16, 16) and condition.shape == (64, 64)
    rows, cols = np.mgrid[:64, :64] + 0.5
    assert (condition * cols).sum() / condition.sum() / 4 == pytest.approx(8.3, abs=0.1)  # the fitted position
    assert (condition * rows).sum() / condition.sum() / 4 == pytest.approx(7.6, abs=0.1)
    assert psi_frame[2, 7, 8] == psi_frame[2].max() > 0.0  # a 3000-photon spot's precision, on its pixel
    assert scale.shape == (64, 64) and scale[30, 33] == scale.min() < 0.05 and scale[0, 0] == SCALE_FAR

    # a psi reading a fourth frame channel (fine-tuned from this one) gets the fits' residual
    wider = Trainer(
        tiny(
            phi_model=tiny_models["phi"],
            psi_target="scaled",
            psi_prediction="v",
            psi_frame_channels=4,
            init_model=str(out),
        )
    )
    assert wider.batch(0)[0].shape == (2, 4, 12, 12)
    out4 = wider.export(tmp_path / "psi_residual.pt")
    calls.clear()
    reconstruct(frame, replace(settings, psi_model=str(out4)))
    _, psi_frame, _ = calls[0]
    assert psi_frame.shape == (4, 16, 16) and np.array_equal(psi_frame[:3], calls[0][1][:3])
    assert np.abs(psi_frame[3]).max() < 1.0  # the fit explains the 3000-photon spot: noise, nowhere clipped

    # a calibrated copy samples on a scale map whose emitters' part is widened by its factor
    from smlm_diffusion.models import store

    calibrated = store.calibrate_scale(out4, tmp_path / "psi_calibrated.pt", 1.5, "test")
    loaded = store.load_model(calibrated)
    assert store.scale_calibration(loaded) == 1.5 and loaded.training["scale_calibration"]["how"] == "test"
    assert store.scale_calibration(store.load_model(out4)) == 1.0
    calls.clear()
    reconstruct(frame, replace(settings, psi_model=str(calibrated)))
    _, _, wider_scale = calls[0]
    assert wider_scale[30, 33] == pytest.approx(1.5 * scale[30, 33], rel=1e-5)
    assert wider_scale[0, 0] == SCALE_FAR  # away from the fits: unchanged
    with pytest.raises(ValueError, match="implausible"):
        store.calibrate_scale(out4, tmp_path / "x.pt", 9.0, "test")
    with pytest.raises(ValueError, match="scaled residual"):
        store.calibrate_scale(tiny_models["psi"], tmp_path / "x.pt", 1.2, "test")


def _one_candidate(settings):
    from smlm_diffusion.localizations import Localizations

    px = settings.pixel_size_nm
    return Localizations(
        frame=np.array([1]), x_nm=np.array([8.0 * px]), y_nm=np.array([8.0 * px]), intensity_photons=np.array([3000.0])
    )


def test_training_on_the_pipelines_fits_uses_the_fitter_on_the_batchs_frames(tiny_models):
    """--condition-fits pipeline: the batch's frames go through the given fitter, whose
    positions and stds make the condition and precision channel; ``PipelineFits`` (the
    engine's phi, detection and fit) places a bright isolated emitter within its precision."""
    from smlm_diffusion.reconstruction.refine import PipelineFits
    from smlm_diffusion.simulation import CameraModel, expected_photons

    calls = []

    def fitter(photons, background, normalised, sigma, read_noise):
        calls.append((photons.shape, background.shape, normalised.shape, sigma.shape, read_noise.shape))
        return [(np.array([6.0]), np.array([5.0]), np.array([0.05]))] * len(photons)

    settings = tiny(phi_model=tiny_models["phi"], condition_fits="pipeline")
    with pytest.raises(ValueError, match="fitter"):
        Trainer(settings)
    trainer = Trainer(settings, fitter=fitter)
    inputs, _, conditions, scales = trainer.batch(0)
    assert calls == [((2, 12, 12), (2, 12, 12), (2, 2, 12, 12), (2,), (2,))]
    expected, precision = refined_condition([6.0], [5.0], [0.05], (12, 12))
    assert np.allclose(conditions[1, 0], expected) and np.allclose(inputs[1, 2], precision)
    assert np.allclose(scales[1, 0], residual_scale([6.0], [5.0], [0.05], (12, 12)))
    with pytest.raises(ValueError, match="photons"):  # the residual channel needs the fits' photons
        Trainer(
            tiny(phi_model=tiny_models["phi"], condition_fits="pipeline", psi_frame_channels=4), fitter=fitter
        ).batch(0)

    rng = np.random.default_rng(1)
    omega = expected_photons(np.array([[10.3]]), np.array([[9.6]]), np.array([[5000.0]]), (20, 20), 1.0, 10.0)
    photons = CameraModel(1.0, 0.0, 0.0).expose(omega, rng).astype(np.float64)
    from smlm_diffusion.models.normalisation import estimate_background, normalise_frames

    background = estimate_background(photons)
    ((x, y, std, fitted),) = PipelineFits()(
        photons, background, normalise_frames(photons, None, background), np.array([1.0]), np.array([0.0])
    )
    assert len(x) == 1 and 0.005 < std[0] < 0.05 and fitted[0] == pytest.approx(5000.0, rel=0.1)
    assert abs(x[0] - 10.3) < 5 * std[0] and abs(y[0] - 9.6) < 5 * std[0]


def test_residual_scale_is_each_fits_shift_residual_and_far_from_all_of_them_the_far_scale():
    """Around a fitted emitter the scale is the largest change of its unit-mass KDE that a
    one-std shift makes (so that shift is a unit-sized z at every brightness), out to its
    KDE's support; far away SCALE_FAR; two overlapping footprints give their mean; frames of
    any size cost only the emitters' windows (an emitter outside the frame changes nothing)."""
    std_px = np.array([0.02, 0.1])  # 0.08 and 0.4 4x px
    scale = residual_scale([5.5, 14.5], [5.5, 14.5], std_px, (20, 20))
    assert scale.shape == (80, 80) and scale.dtype == np.float32
    assert scale[22, 22] == pytest.approx(SHIFT_RESIDUAL_PER_4X_PX * 0.08, rel=1e-5)
    assert scale[58, 58] == pytest.approx(SHIFT_RESIDUAL_PER_4X_PX * 0.4, rel=1e-5)
    assert scale[22, 28] == pytest.approx(scale[22, 22])  # 6 4x px away: still its own scale
    assert scale[0, 79] == pytest.approx(SCALE_FAR) and scale[79, 0] == pytest.approx(SCALE_FAR)
    for std, photons in ((0.1, 200.0), (0.02, 5000.0)):  # a shift by one std: z of about 1 at both
        before = refined_condition([10.0], [10.0], [std], (20, 20))[0]
        after = refined_condition([10.0 + std], [10.0], [std], (20, 20))[0]
        z = (after - before) / residual_scale([10.0], [10.0], [std], (20, 20))
        assert np.abs(z).max() == pytest.approx(1.0, abs=0.05), photons
    pair = residual_scale([10.0, 10.5], [10.0, 10.0], [0.02, 0.1], (20, 20))
    assert pair[40, 41] == pytest.approx(SHIFT_RESIDUAL_PER_4X_PX * (0.08 + 0.4) / 2, rel=1e-4)
    alone = residual_scale([10.0], [10.0], [0.02], (20, 20))
    assert np.array_equal(residual_scale([10.0, -40.0], [10.0, 90.0], [0.02, 0.1], (20, 20)), alone)
    assert np.all(residual_scale([], [], [], (8, 8)) == np.float32(SCALE_FAR))
    wider = residual_scale([5.5, 14.5], [5.5, 14.5], std_px, (20, 20), shift_width=1.5)
    assert wider[22, 22] == pytest.approx(1.5 * scale[22, 22]) and wider[0, 79] == pytest.approx(SCALE_FAR)


def test_a_scaled_psi_learns_the_residual_in_units_of_the_scale_and_samples_it_back(tiny_models, tmp_path):
    """--target scaled: the training target is (KDE - condition) / scale; the sampler needs
    the scale map and returns condition + scale x z, so psi's z maps to KDE samples whose
    spread follows the scale: the same network with a 10x smaller scale gives a 10x smaller
    spread around the same condition."""
    from smlm_diffusion.inference.posterior import sample_posterior
    from smlm_diffusion.inference.sampling_settings import SamplerSettings

    trainer = Trainer(tiny(phi_model=tiny_models["phi"], psi_target="scaled", psi_prediction="v"))
    inputs, targets, conditions, scales = (torch.from_numpy(a) for a in trainer.batch(0))
    seen = []
    forward = trainer.model.forward
    trainer.model.forward = lambda y, cond, t, frame: (seen.append(y.clone()), forward(y, cond, t, frame))[1]
    generator = torch.Generator().manual_seed(int(trainer.settings.seed) * 1_000_003 + 0)
    t = torch.randint(1, trainer.schedule.n_steps + 1, (2,), generator=generator)
    noise = torch.randn(targets.shape, generator=generator)
    trainer._loss(inputs, targets, 0, conditions, scales)
    expected = trainer.schedule.q_sample((targets - conditions) / scales, t, noise)
    assert torch.allclose(seen.pop(), expected, atol=1e-5)
    trainer.model.forward = forward
    with pytest.raises(ValueError, match="scaled"):
        TrainSettings(kind="psi", psi_target="scaled", psi_frame_channels=3).validate()  # needs --condition refined

    psi = trainer.model.eval()
    condition, precision = refined_condition([6.0], [6.0], [0.05], (12, 12))
    frame_input = np.concatenate([inputs[0, :2].numpy(), precision[None]])
    sampler = SamplerSettings(n_samples=8, t0=30, stride=10, core_px=12, halo_px=0, skip_empty_below=None)
    unit = np.full((48, 48), 0.02, np.float32)
    with pytest.raises(ValueError, match="residual_scale"):
        sample_posterior(psi, trainer.schedule, condition, sampler, torch.device("cpu"), frame_input=frame_input)
    wide = sample_posterior(
        psi, trainer.schedule, condition, sampler, torch.device("cpu"), frame_input=frame_input, residual_scale=unit
    )
    narrow = sample_posterior(
        psi,
        trainer.schedule,
        condition,
        sampler,
        torch.device("cpu"),
        frame_input=frame_input,
        residual_scale=unit / 10,
    )
    inside = condition > 0.5
    assert wide[:, inside].std(axis=0).mean() > 0.0
    # the same chains in z (the clip to KDE >= 0 differs only at the condition's faint edge)
    assert narrow[:, inside].std(axis=0).mean() == pytest.approx(wide[:, inside].std(axis=0).mean() / 10, rel=0.03)
    shift_wide = (wide[:, inside] - condition[inside]).ravel()
    assert np.corrcoef(shift_wide, (narrow[:, inside] - condition[inside]).ravel())[0, 1] > 0.99


def test_a_bounded_scaled_psi_clips_its_residual_alike_in_training_and_sampling(tiny_models, tmp_path):
    """--z-clip Z: the training target z = (KDE - condition) / scale is clipped to [-Z, Z]
    (a missed emitter beside a precise fit has z of 100 or more), the bound travels in the
    model file, and the sampler keeps every sample within condition +- Z x scale."""
    from smlm_diffusion.inference.posterior import sample_posterior
    from smlm_diffusion.inference.sampling_settings import SamplerSettings
    from smlm_diffusion.models.psi import CameraPsi, build_psi

    trainer = Trainer(tiny(phi_model=tiny_models["phi"], psi_target="scaled", psi_prediction="v", psi_z_clip=0.5))
    inputs, _, conditions, scales = (torch.from_numpy(a) for a in trainer.batch(0))
    targets = conditions + scales * torch.linspace(-3.0, 3.0, conditions[0].numel()).reshape(conditions[0].shape)
    seen = []
    q_sample = trainer.schedule.q_sample
    trainer.schedule.q_sample = lambda y0, t, noise: (seen.append(y0.clone()), q_sample(y0, t, noise))[1]
    trainer._loss(inputs, targets, 0, conditions, scales)
    trainer.schedule.q_sample = q_sample
    assert torch.allclose(seen.pop(), ((targets - conditions) / scales).clamp(-0.5, 0.5))

    out = trainer.export(tmp_path / "bounded.pt")
    loaded = store.load_model(str(out), torch.device("cpu"))
    assert loaded.module.z_clip == 0.5 and loaded.module.config["z_clip"] == 0.5
    assert build_psi({**loaded.module.config}).z_clip == 0.5
    assert "z_clip" not in CameraPsi(frame_channels=3, condition="refined", target="scaled").config  # old files
    with pytest.raises(ValueError, match="scaled"):
        CameraPsi(frame_channels=3, condition="refined", target="residual", z_clip=4.0)
    with pytest.raises(ValueError, match="z-clip"):
        TrainSettings(
            kind="psi", psi_condition="refined", psi_frame_channels=3, psi_target="residual", psi_z_clip=4.0
        ).validate()

    psi = loaded.module.eval()
    with torch.no_grad():  # a head that asks for a huge clean residual: y0 = -v at t = T
        psi.head[-2].bias.fill_(-1e3)
    condition, precision = refined_condition([6.0], [6.0], [0.05], (12, 12))
    frame_input = np.concatenate([inputs[0, :2].numpy(), precision[None]])
    sampler = SamplerSettings(n_samples=4, times=(100, 50), core_px=12, halo_px=0, skip_empty_below=None)
    unit = np.full((48, 48), 0.1, np.float32)
    samples = sample_posterior(
        psi, trainer.schedule, condition, sampler, torch.device("cpu"), frame_input=frame_input, residual_scale=unit
    )
    assert np.max(samples - condition) <= 0.5 * 0.1 + 1e-5
    assert np.max(samples - condition) > 0.5 * 0.1 - 1e-3  # pushed to the bound, not beyond


def test_a_scaled_psi_meets_the_kdes_bounds_only_at_the_chains_last_step(monkeypatch):
    """Every step of a scaled psi's chain bounds its y0 estimate by the model's |z| <= Z only;
    the KDE's own bounds (0 <= y <= clip_max) come at the last step. Clipping each step's
    estimate at 0, where most of a KDE lies, would ratchet empty pixels upward."""
    from smlm_diffusion.inference.posterior import sample_posterior
    from smlm_diffusion.inference.sampling_settings import SamplerSettings
    from smlm_diffusion.models.psi import CameraPsi
    from smlm_diffusion.models.schedule import NoiseSchedule

    psi = CameraPsi(
        channels=8, frame_channels=3, condition="refined", target="scaled", prediction="v", z_clip=4.0
    ).eval()
    with torch.no_grad():  # a head that asks for a large negative clean residual: y0 = -v
        psi.head[-2].bias.fill_(1e3)
    schedule = NoiseSchedule(kind="cosine")
    bounds = []
    step = schedule.reverse_step
    monkeypatch.setattr(
        schedule,
        "reverse_step",
        lambda *a, clip_y0=None, **k: (bounds.append(clip_y0), step(*a, clip_y0=clip_y0, **k))[1],
    )
    condition, precision = refined_condition([6.0], [6.0], [0.05], (12, 12))
    frame_input = np.concatenate([np.zeros((2, 12, 12), np.float32), precision[None]])
    unit = np.full((48, 48), 0.1, np.float32)
    sampler = SamplerSettings(n_samples=2, times=(100, 50, 10), core_px=12, halo_px=0, skip_empty_below=None)
    samples = sample_posterior(
        psi, schedule, condition, sampler, torch.device("cpu"), frame_input=frame_input, residual_scale=unit
    )
    assert bounds[:2] == [(-4.0, 4.0), (-4.0, 4.0)]  # the model's bound alone
    lower, upper = bounds[2]
    assert torch.allclose(lower, (-torch.from_numpy(condition) / 0.1).clamp(min=-4.0).expand_as(lower))
    assert samples.min() > -1e-6 and np.allclose(samples, np.maximum(condition - 0.4, 0.0), atol=1e-5)


def test_the_fits_residual_channel_is_noise_where_they_explain_the_frame_and_shows_a_missed_emitter():
    """fit_residual_channel: (photons - background - fitted PSFs) / sqrt(model), clipped at
    +-RESIDUAL_CLIP and scaled to +-1: zero on a noiseless frame the fits explain, a positive
    spot where an emitter was not fitted, and fits without a finite position or photon count
    left out."""
    from smlm_diffusion.models.conditioning import RESIDUAL_CLIP, fit_residual_channel
    from smlm_diffusion.simulation import expected_photons

    background = np.full((16, 16), 10.0)
    omega = expected_photons(
        np.array([[5.3, 11.2]]), np.array([[6.1, 9.7]]), np.array([[2000.0, 40.0]]), (16, 16), 1.0, background
    )[0]
    both = fit_residual_channel(omega, background, [5.3, 11.2], [6.1, 9.7], [2000.0, 40.0], 1.0)
    assert both.shape == (16, 16) and np.abs(both).max() < 1e-5
    one = fit_residual_channel(omega, background, [5.3, 11.2, np.nan], [6.1, 9.7, 3.0], [2000.0, np.nan, 50.0], 1.0)
    assert np.unravel_index(np.argmax(one), one.shape) == (9, 11)  # the unfitted 40-photon emitter
    model = background[9, 11]
    expected = (omega[9, 11] - model) / np.sqrt(model) / RESIDUAL_CLIP
    assert (
        0 < expected < 1 and one[9, 11] == pytest.approx(expected, rel=1e-5) and np.abs(one[:, :6]).max() < 1e-5
    )  # around the fitted one
