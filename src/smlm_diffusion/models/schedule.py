"""Noise schedules of the conditional DDPM (primary paper sec. 3.2, A.1-A.2).

Notation as the paper: ``alpha_t = 1 - beta_t``, ``gamma_t = prod_{s<=t} alpha_s``
(gamma_0 = 1), ``SNR_t = gamma_t / (1 - gamma_t)``; arrays are indexed by t, index 0 is
t = 0. Two kinds:

- ``"linear"`` (the paper's): ``beta_t`` linear from 1e-4 to 1e-2 for t = 1..T (T = 100).
  Its gamma_T is 0.60, so the forward process never reaches noise: "full" sampling from
  N(0, I) starts where no training input ever was.
- ``"cosine"`` (Nichol & Dhariwal 2021): ``gamma_t = f(t) / f(0)`` with
  ``f(t) = cos^2(pi/2 (t/T + s) / (1 + s))``, s = 0.008, betas capped at 0.999. Its
  gamma_T is ~1e-7 (SNR_T ~ 0), so full sampling from N(0, I) is the model's true
  reverse process, and it spends more steps at the moderate noise levels where the
  posterior's shape is decided.
"""

from __future__ import annotations

import torch


class NoiseSchedule:
    def __init__(
        self, n_steps: int = 100, beta_start: float = 1e-4, beta_end: float = 1e-2, kind: str = "linear"
    ) -> None:
        if kind not in ("linear", "cosine"):
            raise ValueError("the noise schedule must be 'linear' or 'cosine'")
        if n_steps < 2 or not 0 < beta_start <= beta_end < 1:
            raise ValueError("need T >= 2 and 0 < beta_start <= beta_end < 1")
        self.n_steps, self.kind = n_steps, kind
        self.beta_start, self.beta_end = beta_start, beta_end
        if kind == "linear":
            beta = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
        else:
            f = (
                torch.cos(torch.pi / 2 * (torch.arange(n_steps + 1, dtype=torch.float64) / n_steps + 0.008) / 1.008)
                ** 2
            )
            beta = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)
        self.beta = torch.cat([torch.zeros(1, dtype=torch.float64), beta])
        self.alpha = 1.0 - self.beta
        self.gamma = torch.cumprod(self.alpha, dim=0)
        with torch.no_grad():
            self.snr = self.gamma / (1.0 - self.gamma)  # inf at t = 0

    def config(self) -> dict:
        out = {"n_steps": self.n_steps, "beta_start": self.beta_start, "beta_end": self.beta_end}
        if self.kind != "linear":  # older files have no "kind": they are linear
            out["kind"] = self.kind
        return out

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast against ``like`` (batch first)."""
        out = values.to(like.device)[t.to(like.device).long()].to(like.dtype)
        return out.reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process: ``y_t = sqrt(gamma_t) y0 + sqrt(1 - gamma_t) eps``."""
        g = self._at(self.gamma, t, y0)
        return g.sqrt() * y0 + (1.0 - g).sqrt() * noise

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """eq. 8 weight ``SNR_{t-1} / SNR_t - 1`` (>= 0). For t = 1, where SNR_0 is
        infinite and the paper's sum starts at t = 2, the t = 2 weight is used."""
        t = t.long().clamp(min=2)
        return (self.snr[t - 1] / self.snr[t] - 1.0).float()

    def predict_y0(
        self, y_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor, prediction: str = "eps"
    ) -> torch.Tensor:
        """The clean estimate from the network's output. ``"eps"`` (noise prediction,
        eq. 9): ``y0_hat = (y_t - sqrt(1 - gamma_t) eps) / sqrt(gamma_t)``, which divides
        by sqrt(gamma_t) and so amplifies the network's error ~1/sqrt(gamma_t) times near
        t = T of a schedule that reaches noise. ``"v"`` (Salimans & Ho 2022,
        ``v = sqrt(gamma_t) eps - sqrt(1 - gamma_t) y0``): ``y0_hat = sqrt(gamma_t) y_t -
        sqrt(1 - gamma_t) v``, bounded at every t."""
        g = self._at(self.gamma, t, y_t)
        if prediction == "v":
            return g.sqrt() * y_t - (1.0 - g).sqrt() * output
        if prediction != "eps":
            raise ValueError("psi's prediction must be 'eps' or 'v'")
        return (y_t - (1.0 - g).sqrt() * output) / g.sqrt()

    def training_target(
        self, y0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: str = "eps"
    ) -> torch.Tensor:
        """What the network is trained to output: the noise, or v."""
        if prediction == "eps":
            return noise
        g = self._at(self.gamma, t, y0)
        return g.sqrt() * noise - (1.0 - g).sqrt() * y0

    def reverse_step(
        self,
        y_t: torch.Tensor,
        output: torch.Tensor,
        t: torch.Tensor,
        s: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        clip_y0: tuple | None = None,
        prediction: str = "eps",
        variance_mix: float = 0.0,
    ) -> torch.Tensor:
        """One ancestral step y_t -> y_s (s = t - 1 by default; s < t - 1 is a strided
        step), sampling ``q(y_s | y_t, y0_hat)`` with

        mean = sqrt(g_s)(1 - g_t/g_s)/(1 - g_t) y0_hat + sqrt(g_t/g_s)(1 - g_s)/(1 - g_t) y_t,
        var  = (1 - g_s)(1 - g_t/g_s)/(1 - g_t)   (appendix A.1-A.2; s = 0 gives y0_hat).

        That variance treats y0_hat as exact; over a long stride y0 is still uncertain
        and the chain comes out too narrow. ``variance_mix`` = lambda in [0, 1] uses
        var^(1 - lambda) (1 - g_t/g_s)^lambda instead (lambda = 1: Ho et al.'s upper
        bound; the last step to s = 0 stays noise-free for every lambda).
        """
        s = t - 1 if s is None else s
        y0 = self.predict_y0(y_t, output, t, prediction)
        if clip_y0 is not None:  # floats or tensors broadcasting against y_t
            y0 = torch.clamp(y0, *clip_y0)
        g_t, g_s = self._at(self.gamma, t, y_t), self._at(self.gamma, s, y_t)
        a_ts = g_t / g_s
        mean = (g_s.sqrt() * (1 - a_ts) * y0 + a_ts.sqrt() * (1 - g_s) * y_t) / (1 - g_t)
        var = (1 - g_s) * (1 - a_ts) / (1 - g_t)
        if variance_mix:  # toward the upper bound 1 - g_t/g_s (Ho et al. 2020's sigma^2 = beta), geometrically
            mixed = var.clamp(min=0) ** (1 - variance_mix) * (1 - a_ts) ** variance_mix
            var = torch.where(var > 0, mixed, var)  # s = 0: no noise
        if noise is None:
            noise = torch.randn_like(y_t)
        return mean + var.clamp(min=0).sqrt() * noise
