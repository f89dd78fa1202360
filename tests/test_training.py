"""Model files and training: save/load, exact resume, clear errors for bad files."""

import json

import numpy as np
import pytest
import torch

from smlm_diffusion.cli import main
from smlm_diffusion.errors import SmlmInputError
from smlm_diffusion.models import store
from smlm_diffusion.models.normalisation import (
    INPUT_NORMALISATION_V1,
    estimate_background,
    frame_scaling,
    kde_scale,
    normalise_frames,
)
from smlm_diffusion.models.training import Trainer, TrainSettings, learning_rate, run_training
from smlm_diffusion.models.training_data import TrainingDomain, training_batch
from smlm_diffusion.simulation import single_emitter_kde_peak


def tiny(kind, **kw):
    return TrainSettings(kind=kind, steps=4, batch_size=2, channels=8, frame_px=12, warmup_steps=1, **kw)


def test_training_batches_are_a_function_of_seed_and_step():
    domain = TrainingDomain(frame_px=16)
    a = training_batch(3, 7, 4, domain)
    b = training_batch(3, 7, 4, domain)
    c = training_batch(3, 8, 4, domain)
    assert a[0].shape == (4, 2, 16, 16) and a[1].shape == (4, 1, 64, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_version_1_normalisation_is_per_frame_and_brightness_free():
    rng = np.random.default_rng(0)
    frames = rng.poisson(10.0, size=(2, 32, 32)).astype(float)
    frames[0, 10:12, 10:12] += 300.0
    frames[1] = frames[0] * 10  # same scene, 10x brighter camera
    out = normalise_frames(frames, INPUT_NORMALISATION_V1)
    assert out.shape == (2, 1, 32, 32)
    assert np.allclose(out[0], out[1], atol=1e-5)
    background, scale = frame_scaling(frames)
    assert background[0] == pytest.approx(np.median(frames[0]))
    assert kde_scale() * single_emitter_kde_peak() == pytest.approx(1.0)


def test_normalisation_removes_structured_background_and_keeps_the_noise_level():
    rng = np.random.default_rng(0)
    cols = np.arange(64)[None, :] * np.ones((64, 1))
    gradient = 10.0 + 140.0 * cols / 63  # 10 -> 150 photons across the frame
    frame = rng.poisson(gradient).astype(float)
    spot = 60.0 * np.exp(-((np.arange(64)[:, None] - 32) ** 2 + (cols - 40) ** 2) / (2 * 0.92**2))
    out = normalise_frames(np.stack([frame, frame + spot]))
    background = estimate_background(frame)
    # the gradient is gone: the residual is noise around zero everywhere, not a ramp
    assert abs(np.mean((frame - background)[:, :8])) < 1.0 and abs(np.mean((frame - background)[:, -8:])) < 2.5
    profile = np.median(out[0, 0], axis=0)  # a ramp would run from about -1.7 to +1.7 here
    assert np.abs(profile).max() < 0.15 and abs(profile[-16:].mean() - profile[:16].mean()) < 0.05
    # the spot is the brightest thing in channel 0 and significant in channel 1
    assert np.unravel_index(out[1, 0].argmax(), (64, 64)) == (32, 40)
    assert out[1, 1, 32, 40] > 0.4 and np.abs(out[0, 1]).max() < 0.5
    # the same photons with a 5x lower gain stated are 5x more photons: shot noise looks
    # smaller relative to the signal, so the significance channel changes (gain matters)
    bright = normalise_frames(frame * 5)
    assert not np.allclose(bright[1], out[0, 1], atol=0.05)


def test_learning_rate_warms_up_and_decays():
    s = TrainSettings(kind="phi", steps=100, warmup_steps=10, learning_rate=1e-3)
    assert learning_rate(s, 0) < learning_rate(s, 9) <= 1e-3
    assert learning_rate(s, 99) < 0.05e-3


def test_save_load_round_trip(tmp_path):
    trainer = Trainer(tiny("phi"))
    trainer.step()
    path = trainer.export(tmp_path / "phi.pt", "test")
    loaded = store.load_model(path)
    x = torch.randn(1, 2, 12, 12)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.module(x), trainer.model(x))
    assert loaded.kind == "phi" and loaded.training["steps"] == 1
    assert loaded.normalisation["kde_scale"] == pytest.approx(kde_scale())


@pytest.mark.parametrize("kind,loss", [("phi", "simple"), ("psi", "eq8")])
def test_resume_gives_identical_next_losses(tmp_path, tiny_models, kind, loss):
    settings = tiny(kind, loss=loss, phi_model=tiny_models["phi"])
    straight = Trainer(settings)
    losses = [straight.step() for _ in range(4)]
    first = Trainer(settings)
    first.step(), first.step()
    first.save_checkpoint(tmp_path / "ckpt")
    resumed = Trainer(settings)
    resumed.restore(tmp_path / "ckpt")
    assert resumed.step_index == 2
    assert [resumed.step(), resumed.step()] == pytest.approx(losses[2:], rel=1e-6, abs=1e-9)


def test_resume_refuses_other_settings(tmp_path):
    trainer = Trainer(tiny("phi"))
    trainer.step()
    trainer.save_checkpoint(tmp_path / "ckpt")
    other = Trainer(tiny("phi", seed=5))
    with pytest.raises(ValueError, match="seed"):
        other.restore(tmp_path / "ckpt")


def test_run_training_stops_with_checkpoint_and_resumes(tmp_path):
    settings = tiny("phi")
    calls = []
    stopped = run_training(
        settings,
        tmp_path / "m.pt",
        tmp_path / "m.ckpt",
        should_stop=lambda: len(calls) >= 2,
        progress=lambda *a: calls.append(a),
    )
    assert stopped.step_index == 2 and (tmp_path / "m.ckpt").exists() and not (tmp_path / "m.pt").exists()
    finished = run_training(settings, tmp_path / "m.pt", tmp_path / "m.ckpt")
    assert finished.step_index == 4 and (tmp_path / "m.pt").exists()
    assert len(finished.losses) == 4


def test_corrupt_and_missing_weights_give_clear_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(SmlmInputError, match="could not be read"):
        store.load_model(bad)
    with pytest.raises(SmlmInputError, match="is missing"):
        store.load_model(tmp_path / "absent.pt")
    # a bundled file whose bytes no longer match the manifest
    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(store, "MANIFEST", tmp_path / "manifest.json")
    trainer = Trainer(tiny("phi"))
    path = trainer.export(tmp_path / "phi.pt")
    store.record_bundled(path)
    assert store.load_model("phi").kind == "phi"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SmlmInputError, match="SHA-256"):
        store.load_model("phi")


def test_bundled_weights_match_manifest():
    manifest = json.loads(store.MANIFEST.read_text())
    assert set(store.BUNDLED) == {"phi", "psi", "psi-sparse"}
    for name in store.BUNDLED:
        path = store.bundled_path(name)
        assert manifest[path.name]["sha256"] == store.sha256_of(path)
        assert path.stat().st_size < 8_000_000  # "a few MB" (psi v2: 5.1 MB)
        loaded = store.load_model(name)
        assert loaded.training["steps"] > 0 and loaded.training["command"].startswith("smlm-diffusion train")


def test_train_cli_writes_a_model(tmp_path, capsys):
    out = tmp_path / "phi.pt"
    code = main(
        [
            "train",
            "phi",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--channels",
            "8",
            "--frame-size",
            "12",
            "--device",
            "cpu",
        ]
    )
    assert code == 0 and store.load_model(out).training["steps"] == 2
    assert (
        main(["train", "psi", "--out", str(out), "--phi", str(tmp_path / "nope.pt"), "--steps", "1", "--device", "cpu"])
        == 2
    )
    assert "is missing" in capsys.readouterr().err


def test_training_from_a_simulated_folder(tmp_path):
    assert (
        main(
            [
                "simulate",
                str(tmp_path / "set.tif"),
                "--frames",
                "4",
                "--height",
                "16",
                "--width",
                "16",
                "--density",
                "2",
                "--gain",
                "2",
                "--kde",
            ]
        )
        == 0
    )
    settings = tiny("phi", data_folder=str(tmp_path), data_fraction=1.0)
    trainer = Trainer(settings)
    x, y = trainer.folder.sample(np.random.default_rng(0))
    assert x.shape == (2, 12, 12) and y.shape == (48, 48) and y.max() > 0.1
    assert np.isfinite(trainer.step())
    with pytest.raises(ValueError, match="no training data"):
        Trainer(tiny("phi", data_folder=str(tmp_path / "empty")))


def test_fine_tuning_on_a_structure_file_starts_from_the_given_weights(tmp_path, tiny_models):
    """--init keeps the starting model's architecture and weights; --structures puts a
    share of the training frames on the user's structure (recorded in the model file)."""
    import torch

    from smlm_diffusion.io import write_localizations_csv
    from smlm_diffusion.io.structure import read_structure
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.models.store import load_model
    from smlm_diffusion.models.training import Trainer, TrainSettings
    from smlm_diffusion.models.training_data import TrainingDomain, training_batch

    t = np.linspace(0, 1, 500)
    table = write_localizations_csv(
        tmp_path / "ring.csv",
        Localizations(
            frame=np.ones(500, int), x_nm=1700 + 1200 * np.cos(2 * np.pi * t), y_nm=1700 + 1200 * np.sin(2 * np.pi * t)
        ),
    )
    prior = read_structure(table)
    settings = TrainSettings(
        kind="phi",
        steps=2,
        batch_size=2,
        frame_px=16,
        init_model=tiny_models["phi"],
        structure_files=[str(table)],
        structure_fraction=1.0,
    )
    trainer = Trainer(settings, priors=[prior])
    start = load_model(tiny_models["phi"]).module.state_dict()
    assert all(torch.equal(start[k], v) for k, v in trainer.model.state_dict().items())
    trainer.step()
    out = trainer.export(tmp_path / "tuned.pt")
    record = load_model(out).training
    assert record["structure_files"] == [str(table)] and record["init_model"] == tiny_models["phi"]
    # every frame of a batch with fraction 1 has its emitters on the (augmented) ring:
    # the same batch without the prior differs
    with_prior = training_batch(0, 1, 2, TrainingDomain(frame_px=32), None, [prior], 1.0)
    without = training_batch(0, 1, 2, TrainingDomain(frame_px=32))
    assert not np.allclose(with_prior[1], without[1])


def test_worker_processes_give_the_same_batches_and_losses(tmp_path, tiny_models):
    settings = tiny("psi", phi_model=tiny_models["phi"], psi_prediction="v")
    here = run_training(settings, tmp_path / "a.pt")
    settings = tiny("psi", phi_model=tiny_models["phi"], psi_prediction="v")
    workers = run_training(settings, tmp_path / "b.pt", workers=2)
    assert workers.losses == pytest.approx(here.losses, rel=1e-6)
    loaded = store.load_model(tmp_path / "b.pt")
    assert loaded.module.prediction == "v" and loaded.training["wall_time_s"] > 0


def test_eps_weighted_v_loss_weights_each_noise_level_as_the_noise_loss(tiny_models):
    """--loss eps-weighted (v-prediction): each example's v error is weighted by gamma_t
    (normalised to mean 1 over t), which turns the v loss's SNR + 1 weighting of the y0
    error into the noise loss's SNR; the plain v loss is the unweighted mean."""
    with pytest.raises(ValueError, match="v-prediction"):
        tiny("psi", loss="eps-weighted", phi_model=tiny_models["phi"]).validate()
    plain = Trainer(tiny("psi", phi_model=tiny_models["phi"], psi_prediction="v"))
    weighted = Trainer(tiny("psi", loss="eps-weighted", phi_model=tiny_models["phi"], psi_prediction="v"))
    weighted.model.load_state_dict(plain.model.state_dict())
    inputs, targets = (torch.from_numpy(a) for a in plain.batch(0))
    per_example = []
    original = torch.Tensor.mean

    def spy(tensor, *args, **kwargs):  # the per-example losses, before any weighting
        out = original(tensor, *args, **kwargs)
        if kwargs.get("dim") == (1, 2, 3):
            per_example.append(out.detach())
        return out

    torch.Tensor.mean = spy
    try:
        with torch.no_grad():
            loss_plain = plain._loss(inputs, targets, 0)
            loss_weighted = weighted._loss(inputs, targets, 0)
    finally:
        torch.Tensor.mean = original
    generator = torch.Generator().manual_seed(int(plain.settings.seed) * 1_000_003)
    t = torch.randint(1, plain.schedule.n_steps + 1, (len(inputs),), generator=generator)
    gamma = plain.schedule.gamma.float()
    weights = gamma[t] / gamma[1:].mean()
    assert torch.allclose(per_example[0], per_example[1])
    assert float(loss_plain) == pytest.approx(float(per_example[0].mean()), rel=1e-5)
    assert float(loss_weighted) == pytest.approx(float((per_example[1] * weights).mean()), rel=1e-5)


def test_snr_channel_is_unclipped_and_leaves_phis_channels_alone():
    """``channels: 3`` adds asinh((photons - background) / noise) / 5: a spot 50 and one 500
    noise std above the background both clip the significance at 5 but differ here."""
    from smlm_diffusion.models.normalisation import INPUT_NORMALISATION, SNR_CHANNEL_UNIT

    background = np.full((2, 16, 16), 100.0)
    photons = background.copy()
    noise = np.sqrt(100.0 + INPUT_NORMALISATION["read_variance_photons2"])
    photons[0, 8, 8] += 50 * noise
    photons[1, 8, 8] += 500 * noise
    two = normalise_frames(photons, INPUT_NORMALISATION, background)
    three = normalise_frames(photons, {**INPUT_NORMALISATION, "channels": 3}, background)
    assert two.shape == (2, 2, 16, 16) and three.shape == (2, 3, 16, 16)
    assert np.array_equal(three[:, :2], two)
    assert two[0, 1, 8, 8] == two[1, 1, 8, 8] == 5.0  # the significance clips both
    assert three[:, 2, 8, 8] == pytest.approx(np.arcsinh([50.0, 500.0]) / SNR_CHANNEL_UNIT, rel=1e-5)
    assert np.all(three[:, 2, 0, 0] == 0.0)


def test_psi_with_an_snr_channel_starts_as_the_two_channel_model_and_trains(tmp_path, tiny_models):
    """--init from a two-channel psi with --frame-channels 3: the new stem weights start at
    zero (same output, whatever the third channel holds); training feeds psi three channels
    and phi its two, and the engine does the same with the model file."""
    from smlm_diffusion.models.training import with_frame_channels
    from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct

    old = store.load_model(tiny_models["psi_v2"]).module
    wider = with_frame_channels(old, 3).eval()
    y, cond = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    t, frame = torch.tensor([5, 50]), torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(wider(y, cond, t, frame), old(y, cond, t, frame[:, :2]), atol=1e-6)
    settings = tiny(
        "psi", phi_model=tiny_models["phi"], init_model=tiny_models["psi_v2"], psi_frame_channels=3, loss="footprint"
    )
    trainer = Trainer(settings)
    inputs, _ = trainer.batch(0)
    assert inputs.shape[1] == 3 and trainer.model.config["frame_channels"] == 3
    assert np.isfinite(trainer.step())
    out = trainer.export(tmp_path / "psi3.pt")
    assert store.load_model(out).normalisation["input"]["channels"] == 3
    sim = np.random.default_rng(0).poisson(20.0, (1, 16, 16)).astype(np.float32) + 100
    result = reconstruct(
        sim,
        ReconstructionSettings(
            offset_adu=100.0, phi_model=tiny_models["phi"], psi_model=str(out), psf_sigma_px=1.0, keep_frame_kdes=True
        ),
    )
    assert result.variance_kdes[1].shape == (64, 64)
    with pytest.raises(ValueError, match="fourth frame channel"):
        tiny("psi", psi_frame_channels=4).validate()
    with pytest.raises(ValueError, match="frame channels"):
        tiny("psi", psi_frame_channels=5).validate()


def test_footprint_loss_weighs_the_pixels_where_phi_sees_an_emitter(tiny_models):
    """--loss footprint: per-pixel squared errors weighted 1 + 9 where phi's KDE exceeds 0.05
    (model units), normalised by the mean weight; the plain loss is the unweighted mean."""
    from smlm_diffusion.models.training import FOOTPRINT_THRESHOLD, FOOTPRINT_WEIGHT

    plain = Trainer(tiny("psi", phi_model=tiny_models["phi"]))
    weighted = Trainer(tiny("psi", phi_model=tiny_models["phi"], loss="footprint"))
    weighted.model.load_state_dict(plain.model.state_dict())
    inputs, targets = (torch.from_numpy(a) for a in plain.batch(0))
    generator = torch.Generator().manual_seed(int(plain.settings.seed) * 1_000_003)
    t = torch.randint(1, plain.schedule.n_steps + 1, (len(inputs),), generator=generator)
    noise = torch.randn(targets.shape, generator=generator)
    with torch.no_grad():
        condition = plain.phi(inputs) + 0.0
        condition[:, :, :4, :4] = 1.0  # an "emitter" seen by phi, so that some pixels weigh more
        plain.phi = weighted.phi = lambda _: condition
        y_t = plain.schedule.q_sample(targets - condition, t, noise)
        squared = (plain.model(y_t, condition, t, inputs) - noise) ** 2
        w = 1.0 + FOOTPRINT_WEIGHT * (condition > FOOTPRINT_THRESHOLD).float()
        assert float(plain._loss(inputs, targets, 0)) == pytest.approx(float(squared.mean()), rel=1e-5)
        assert float(weighted._loss(inputs, targets, 0)) == pytest.approx(
            float((squared * w / w.mean()).mean()), rel=1e-5
        )


def test_condition_dropout_hides_phis_estimate_from_a_share_of_examples(tiny_models):
    """--condition-dropout P: that share of a batch's examples get zeros instead of phi's
    KDE (and so the whole KDE as their residual target); the draw is part of the step's
    seeded randomness, so a resumed run repeats it."""
    seen = []

    def run(dropout, step=0):
        settings = tiny("psi", phi_model=tiny_models["phi"], condition_dropout=dropout)
        settings.batch_size = 16
        trainer = Trainer(settings)
        forward = trainer.model.forward
        trainer.model.forward = lambda y, cond, t, frame: (seen.append(cond.clone()), forward(y, cond, t, frame))[1]
        inputs, targets = (torch.from_numpy(a) for a in trainer.batch(step))
        with torch.no_grad():
            trainer._loss(inputs, targets, step)
            return trainer.phi(inputs), seen.pop()

    phi_kde, kept = run(0.0)
    assert torch.equal(kept, phi_kde)
    phi_kde, half = run(0.5)
    dropped = [bool(torch.all(c == 0)) for c in half]
    assert 2 <= sum(dropped) <= 14  # about half of 16
    assert all(torch.equal(c, p) for c, p, d in zip(half, phi_kde, dropped) if not d)
    assert torch.equal(run(0.5)[1], half)  # the same step draws the same examples
    with pytest.raises(ValueError, match="condition dropout"):
        tiny("psi", condition_dropout=1.0).validate()


def test_train_cli_exports_a_checkpoint_without_training(tmp_path, capsys):
    """--export-checkpoint writes the model of the checkpoint as it stands (its step in the
    file, the training command without the flag) and trains nothing; without a checkpoint
    it says so in one sentence."""
    out, checkpoint = tmp_path / "phi.pt", tmp_path / "phi.ckpt"
    args = [
        "train",
        "phi",
        "--out",
        str(out),
        "--checkpoint",
        str(checkpoint),
        "--steps",
        "6",
        "--batch-size",
        "2",
        "--channels",
        "8",
        "--frame-size",
        "12",
        "--device",
        "cpu",
    ]
    assert main(args + ["--export-checkpoint"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    run_training(
        TrainSettings(kind="phi", steps=6, batch_size=2, channels=8, frame_px=12),
        tmp_path / "unused.pt",
        checkpoint,
        should_stop=lambda: True,
    )
    saved = torch.load(checkpoint, weights_only=True)
    assert main(args + ["--export-checkpoint"]) == 0
    exported = store.load_model(out)
    assert exported.training["steps"] == saved["step"] == 1
    assert "--export-checkpoint" not in exported.training["command"]
    assert torch.load(checkpoint, weights_only=True)["step"] == 1  # nothing trained


def test_high_noise_share_draws_that_share_of_noise_levels_from_the_top_tenth(tiny_models):
    """--high-noise-share P: psi sees that share of its examples at t > 0.9 T (where it must
    learn to ignore the noise frame), the others uniform over 1..T; seeded per step."""

    def levels(share, step=0):
        settings = tiny("psi", phi_model=tiny_models["phi"], high_noise_share=share)
        settings.batch_size = 400
        trainer = Trainer(settings)
        generator = torch.Generator().manual_seed(step)
        t = torch.randint(1, trainer.schedule.n_steps + 1, (settings.batch_size,), generator=generator)
        return t, trainer._high_noise_levels(t, torch.Generator().manual_seed(step))

    t, same = levels(0.0)
    assert torch.equal(t, same)
    t, top = levels(1.0)
    assert int(top.min()) == 91 and int(top.max()) == 100
    t, mixed = levels(0.3)
    changed = mixed != t
    assert bool(torch.all(mixed[changed] > 90))
    assert 0.3 <= float((mixed > 90).float().mean()) <= 0.45  # 0.3 + 0.7 x 0.1 expected
    assert torch.equal(levels(0.3)[1], mixed)
    with pytest.raises(ValueError, match="high-noise share"):
        tiny("psi", high_noise_share=1.5).validate()


def test_training_density_sets_the_priors_emitter_density_and_is_recorded(tmp_path, monkeypatch):
    """--density LOW HIGH: every simulated frame's density is drawn from that range (or 0 for
    an empty frame), the exported model records it, and a checkpoint made with another range
    is not resumed."""
    from smlm_diffusion.models import training_data

    drawn = []
    original = training_data.random_config

    def spy(rng, domain):
        cfg = original(rng, domain)
        drawn.append((cfg.density_per_um2, cfg.structure))
        return cfg

    monkeypatch.setattr(training_data, "random_config", spy)
    out = tmp_path / "phi.pt"
    code = main(
        [
            "train",
            "phi",
            "--out",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--channels",
            "8",
            "--frame-size",
            "12",
            "--device",
            "cpu",
            "--density",
            "0.1",
            "0.3",
        ]
    )
    assert code == 0 and len(drawn) == 24
    spread = [d for d, structure in drawn if structure != "disc" and d > 0]  # the disc rescales its own
    assert len(spread) > 10 and all(0.1 <= d <= 0.3 for d in spread)
    assert store.load_model(out).training["domain"]["density_per_um2"] == [0.1, 0.3]
    trainer = Trainer(tiny("phi", density_per_um2=(0.1, 0.3)))
    trainer.step()
    trainer.save_checkpoint(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="density_per_um2"):
        Trainer(tiny("phi")).restore(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="training density"):
        tiny("psi", density_per_um2=(0.5, 0.1)).validate()
