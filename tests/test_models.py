"""Model building blocks: schedule algebra (eq. 8, 9, A.1), shapes and 4x geometry, overfitting."""

import math

import pytest
import torch

from smlm_diffusion.models import CameraPsi, ConditionalUNet, DeepStormPhi, NoiseSchedule, build_psi
from smlm_diffusion.simulation import render_kde


def test_schedule_snr_is_monotone_and_eq8_weights_are_non_negative():
    s = NoiseSchedule()
    assert s.beta[1].item() == pytest.approx(1e-4) and s.beta[100].item() == pytest.approx(1e-2)
    snr = s.snr[1:]
    assert torch.all(snr[1:] < snr[:-1])
    w = s.loss_weight(torch.arange(1, 101))
    assert torch.all(w >= 0)
    # SNR_{t-1}/SNR_t - 1 written out for t = 50
    g49, g50 = s.gamma[49].item(), s.gamma[50].item()
    assert w[49].item() == pytest.approx((g49 / (1 - g49)) / (g50 / (1 - g50)) - 1, rel=1e-5)


def test_q_sample_and_eq9_invert_each_other():
    s = NoiseSchedule()
    y0, eps, t = torch.rand(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([1, 40, 100])
    yt = s.q_sample(y0, t, eps)
    torch.testing.assert_close(s.predict_y0(yt, eps, t), y0, atol=1e-5, rtol=1e-5)


def test_one_reverse_step_matches_the_closed_form_on_a_hand_case():
    s = NoiseSchedule(n_steps=3, beta_start=0.1, beta_end=0.3)  # betas 0.1, 0.2, 0.3
    g1, g2 = 0.9, 0.9 * 0.8
    y_t, eps, z = torch.tensor([[0.5]]), torch.tensor([[0.2]]), torch.tensor([[-1.0]])
    y0_hat = (0.5 - math.sqrt(1 - g2) * 0.2) / math.sqrt(g2)
    mean = math.sqrt(g1) * 0.2 / (1 - g2) * y0_hat + math.sqrt(0.8) * (1 - g1) / (1 - g2) * 0.5
    std = math.sqrt((1 - g1) * 0.2 / (1 - g2))
    out = s.reverse_step(y_t, eps, torch.tensor([2]), noise=z)
    assert out.item() == pytest.approx(mean - std, rel=1e-5)
    # the final step (s = 0) returns y0_hat with no noise
    last = s.reverse_step(y_t, eps, torch.tensor([1]), noise=z)
    assert last.item() == pytest.approx((0.5 - math.sqrt(1 - g1) * 0.2) / math.sqrt(g1), rel=1e-5)


def test_strided_step_from_t_to_zero_is_y0_hat():
    s = NoiseSchedule()
    y_t, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([30, 30])
    out = s.reverse_step(y_t, eps, t, s=torch.tensor([0, 0]), noise=torch.randn(2, 1, 4, 4))
    torch.testing.assert_close(out, s.predict_y0(y_t, eps, t))


def test_phi_is_4x_and_bounded_and_psi_keeps_the_shape():
    phi = DeepStormPhi(channels=8)
    out = phi(torch.randn(2, 1, 20, 24) * 50)
    assert out.shape == (2, 1, 80, 96) and out.min() >= 0 and out.max() <= 8.0
    psi = ConditionalUNet(channels=8, multipliers=(1, 2))
    y = torch.randn(3, 1, 16, 24)
    assert psi(y, y, torch.tensor([1, 50, 100])).shape == y.shape
    with pytest.raises(ValueError, match="multiples"):
        psi(torch.randn(1, 1, 15, 16), torch.randn(1, 1, 15, 16), torch.tensor([1]))


def test_phi_overfits_a_tiny_batch_and_puts_the_peak_on_the_right_4x_pixel():
    torch.manual_seed(0)
    x_px, y_px = 5.4, 3.7
    kde = torch.tensor(render_kde([[x_px]], [[y_px]], [[1.0]], (10, 10)), dtype=torch.float32)[:, None] * 50
    frame = torch.zeros(1, 1, 10, 10)
    frame[0, 0, int(y_px), int(x_px)] = 1.0
    phi = DeepStormPhi(channels=16, dilations=(1, 2, 1))
    opt = torch.optim.Adam(phi.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(phi(frame), kde)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    with torch.no_grad():  # still in training mode: batch-norm statistics as during the fit
        out = phi(frame)[0, 0]
    r, c = divmod(int(out.argmax()), out.shape[1])
    assert abs(r - int(y_px * 4)) <= 1 and abs(c - int(x_px * 4)) <= 1


def test_psi_overfits_noise_prediction_on_a_tiny_batch():
    torch.manual_seed(1)
    s = NoiseSchedule()
    psi = ConditionalUNet(channels=8, multipliers=(1, 2))
    y0 = torch.rand(2, 1, 16, 16)
    eps = torch.randn(2, 1, 16, 16)
    t = torch.tensor([20, 70])
    yt = s.q_sample(y0, t, eps)
    opt = torch.optim.Adam(psi.parameters(), lr=2e-3)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = ((psi(yt, y0, t) - eps) ** 2).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.2 * first


def test_cosine_schedule_reaches_noise_and_the_paper_schedule_does_not():
    cosine, paper = NoiseSchedule(kind="cosine"), NoiseSchedule()
    assert cosine.gamma[-1].item() < 1e-5 and paper.gamma[-1].item() == pytest.approx(0.6025, abs=1e-3)
    assert torch.all(cosine.gamma[1:] < cosine.gamma[:-1])
    # a file that says nothing about the kind is the paper's linear schedule
    assert NoiseSchedule(**paper.config()).kind == "linear"
    assert NoiseSchedule(**cosine.config()).kind == "cosine"


def test_camera_psi_takes_any_frame_size_and_returns_noise_on_the_4x_grid():
    psi = CameraPsi(channels=8, heads=2, blocks=2)
    frame = torch.randn(3, 2, 13, 18)
    y = torch.randn(3, 1, 52, 72)
    out = psi(y, y.abs(), torch.tensor([1, 50, 100]), frame)
    assert out.shape == y.shape
    with pytest.raises(ValueError, match="4x"):
        psi(y, y, torch.tensor([1, 2, 3]), torch.randn(3, 2, 12, 18))
    # the stored config rebuilds the same module
    again = build_psi(psi.config)
    again.load_state_dict(psi.state_dict())
    torch.testing.assert_close(again(y, y.abs(), torch.tensor([1, 50, 100]), frame), out)


def test_camera_psi_reads_the_raw_frame():
    """Same y_t, same phi condition, different frames, different targets: a network blind
    to the frame can do no better than the targets' mean; psi v2 fits both."""
    torch.manual_seed(2)
    psi = CameraPsi(channels=16, heads=2, blocks=1, multipliers=(1, 2))
    y_t = torch.randn(1, 1, 32, 32).repeat(2, 1, 1, 1)
    condition = torch.zeros(2, 1, 32, 32)
    frame = torch.zeros(2, 2, 8, 8)
    frame[0, :, 3, 3] = 3.0
    frame[1, :, 5, 2] = 3.0
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 12:16, 12:16] = 1.0
    target[1, 0, 20:24, 8:12] = 1.0
    blind = ((target - target.mean(dim=0, keepdim=True)) ** 2).mean().item()
    opt = torch.optim.Adam(psi.parameters(), lr=3e-3)
    for _ in range(200):
        opt.zero_grad()
        loss = ((psi(y_t, condition, torch.tensor([10, 10]), frame) - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * blind


def test_v_prediction_recovers_y0_exactly_and_stays_bounded_where_noise_is_reached():
    """v = sqrt(g) eps - sqrt(1-g) y0 gives y0 back; an error in the output moves y0_hat by at
    most that error (times sqrt(1-g) <= 1), while noise prediction divides it by sqrt(g_T) ~ 3e-4."""
    s = NoiseSchedule(kind="cosine")
    y0, eps, t = torch.rand(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([1, 60, 100])
    yt = s.q_sample(y0.double(), t, eps.double())
    v = s.training_target(y0.double(), eps.double(), t, "v")
    torch.testing.assert_close(s.predict_y0(yt, v, t, "v"), y0.double(), atol=1e-9, rtol=1e-9)
    assert s.training_target(y0, eps, t, "eps") is eps
    error = 0.01 * torch.ones_like(yt)
    at_t = torch.tensor([100, 100, 100])
    v_shift = (s.predict_y0(yt, v + error, at_t, "v") - s.predict_y0(yt, v, at_t, "v")).abs().max()
    eps_shift = (s.predict_y0(yt, eps.double() + error, at_t) - s.predict_y0(yt, eps.double(), at_t)).abs().max()
    assert v_shift <= 0.01 + 1e-12 and eps_shift > 10.0
    with pytest.raises(ValueError, match="eps' or 'v'"):
        s.predict_y0(yt, v, t, "x0")


def test_camera_psi_records_v_prediction_and_older_files_predict_noise():
    psi = CameraPsi(channels=8, heads=2, blocks=1, prediction="v")
    assert psi.config["prediction"] == "v" and build_psi(psi.config).prediction == "v"
    plain = CameraPsi(channels=8, heads=2, blocks=1)
    assert "prediction" not in plain.config and build_psi(plain.config).prediction == "eps"


def test_variance_mix_moves_a_strided_step_to_the_upper_bound_and_keeps_the_last_step_clean():
    s = NoiseSchedule(kind="cosine")
    y_t, out = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    t, target = torch.tensor([60]), torch.tensor([50])
    a_ts = (s.gamma[60] / s.gamma[50]).item()
    posterior_var = (1 - s.gamma[50].item()) * (1 - a_ts) / (1 - s.gamma[60].item())
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    base = s.reverse_step(y_t, out, t, target, noise=torch.zeros_like(noise))  # the mean
    for mix, var in ((0.0, posterior_var), (1.0, 1 - a_ts), (0.5, math.sqrt(posterior_var * (1 - a_ts)))):
        step = s.reverse_step(y_t, out, t, target, noise=noise, variance_mix=mix) - base
        torch.testing.assert_close(step, math.sqrt(var) * noise, rtol=1e-4, atol=1e-6)
    last = s.reverse_step(y_t, out, t, torch.tensor([0]), noise=noise, variance_mix=1.0)
    torch.testing.assert_close(last, s.predict_y0(y_t, out, t))
