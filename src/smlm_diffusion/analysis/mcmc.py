"""Metropolis-Hastings posterior of an isolated emitter (primary paper appendix A.4).

Negative log-likelihood (eq. 10, Poisson approximation, constants dropped):
``l(theta) = sum_k omega'_k - n'_k log omega'_k`` with ``omega' = omega + w^2`` and
``n' = n + w^2`` (photons after offset/gain, read noise ``w`` in electrons).
Several chains run vectorised. ``beta`` tempers the likelihood: the paper used 0.2 to
reach a 50% acceptance rate, which widens the posterior by 1/sqrt(beta); the true
posterior is ``beta = 1`` (our default), with the proposal scaled from the CRLB instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..simulation.psf import pixel_integrals
from .crlb import PARAMETERS, crlb


@dataclass
class McmcResult:
    samples: np.ndarray  # (n_samples, n_free) after burn-in, chains pooled
    parameters: tuple[str, ...]
    acceptance_rate: float

    def std(self) -> dict[str, float]:
        return {p: float(s) for p, s in zip(self.parameters, self.samples.std(axis=0))}

    def mean(self) -> dict[str, float]:
        return {p: float(s) for p, s in zip(self.parameters, self.samples.mean(axis=0))}


def _neg_log_likelihood(theta: np.ndarray, counts: np.ndarray, psf_sigma_px: float, read2: float) -> np.ndarray:
    """eq. 10 for a batch of parameter vectors (chains, 4) -> (chains,)."""
    rows, cols = counts.shape
    ex = pixel_integrals(theta[:, 0], cols, psf_sigma_px)  # (chains, cols)
    ey = pixel_integrals(theta[:, 1], rows, psf_sigma_px)  # (chains, rows)
    omega = theta[:, 2, None, None] * ey[:, :, None] * ex[:, None, :] + theta[:, 3, None, None] + read2
    n = counts[None] + read2
    return (omega - n * np.log(omega)).sum(axis=(1, 2))


def metropolis_hastings(
    counts_photons: np.ndarray,
    start: dict[str, float],
    psf_sigma_px: float,
    read_noise_e: float = 0.0,
    free: tuple[str, ...] = ("x", "y"),
    n_iterations: int = 10_000,
    burn_in: int = 1_000,
    n_chains: int = 8,
    proposal_std: dict[str, float] | None = None,
    beta: float = 1.0,
    seed: int = 0,
) -> McmcResult:
    """Sample p(theta | image) with a uniform prior (positive photons/background,
    position inside the window). ``start`` gives x, y (px), photons, background; the
    parameters not in ``free`` stay fixed there. Default proposal: 1.5 x the CRLB per
    free parameter (Gaussian random walk)."""
    counts = np.asarray(counts_photons, np.float64)
    rng = np.random.default_rng(seed)
    theta0 = np.array([start[p] for p in PARAMETERS], np.float64)
    free_idx = np.array([PARAMETERS.index(p) for p in free])
    if proposal_std is None:
        bound = crlb(*theta0, psf_sigma_px, counts.shape, read_noise_e, free=free)
        proposal_std = {p: 1.5 * bound[p] for p in free}
    step = np.zeros(4)
    step[free_idx] = [proposal_std[p] for p in free]
    read2 = read_noise_e**2
    rows, cols = counts.shape

    theta = np.repeat(theta0[None], n_chains, axis=0)
    nll = _neg_log_likelihood(theta, counts, psf_sigma_px, read2)
    kept, accepted = [], 0
    for it in range(n_iterations):
        proposal = theta + rng.normal(size=theta.shape) * step
        inside = (
            (proposal[:, 0] > 0)
            & (proposal[:, 0] < cols)
            & (proposal[:, 1] > 0)
            & (proposal[:, 1] < rows)
            & (proposal[:, 2] > 0)
            & (proposal[:, 3] >= 0)
        )
        nll_new = np.where(
            inside, _neg_log_likelihood(np.where(inside[:, None], proposal, theta), counts, psf_sigma_px, read2), np.inf
        )
        accept = np.log(rng.random(n_chains)) < beta * (nll - nll_new)
        theta = np.where(accept[:, None], proposal, theta)
        nll = np.where(accept, nll_new, nll)
        if it >= burn_in:
            kept.append(theta[:, free_idx].copy())
            accepted += int(accept.sum())
    samples = np.concatenate(kept) if kept else np.zeros((0, len(free)))
    rate = accepted / max(1, (n_iterations - burn_in) * n_chains)
    return McmcResult(samples, tuple(free), rate)
