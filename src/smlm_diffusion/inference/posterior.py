"""Posterior sampling of KDEs with the conditional DDPM psi, tile by tile.

Full sampling is the paper's ancestral sampling (appendix A.1): start from N(0, I) at
t = T and take T reverse steps. Accelerated sampling follows the equilibrium-diffusion
paper: start at t0 < T from phi's estimate noised by the forward process, q(y_t0 | phi),
and step down to 0 with a stride. A psi that models the residual y - phi(x) (version 2)
samples the residual, whose phi-based start is 0, and adds phi's estimate at the end; a
psi that reads the raw frame gets the normalised frame's tile beside phi's. Chains of many tiles go
through psi together. The
noise of each tile depends only on (seed, frame, tile), so results do not depend on the
batching, and the same seed gives the same samples on CPU. A psi with the scaled residual
(``target="scaled"``, conditioned on refined fits) samples z = (y - condition) / S with the
fits' scale map S (``models.conditioning.residual_scale``), passed as ``residual_scale``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..models.schedule import NoiseSchedule
from .fast_modules import autocast, channels_last, inference_module
from .sampling_settings import SamplerSettings, plan_for, step_mixes, step_pairs
from .tiling import Tile, plan_tiles

UPSAMPLING = 4


def _tile_seed(seed: int, frame: int, tile_index: int) -> int:
    return int(np.random.SeedSequence([seed, frame, tile_index]).generate_state(1, np.uint64)[0] % (2**63))


def sample_posterior(
    psi: torch.nn.Module,
    schedule: NoiseSchedule,
    phi_kde: np.ndarray,
    settings: SamplerSettings,
    device: torch.device,
    seed: int = 0,
    frame: int = 0,
    frame_input: np.ndarray | None = None,
    dtype=None,
    residual_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior KDE samples (N, 4H, 4W), model units, for one frame's phi estimate (4H, 4W)
    and, for a psi that reads the data, its normalised frame (C, H, W); for a psi with the
    scaled residual, the scale map (4H, 4W) of its condition's fits. ``dtype``:
    torch.bfloat16 runs psi's convolutions in bfloat16 (``devices.inference_dtype``); the
    chain's state and arithmetic stay float32."""
    steps = iter_sample_posterior(
        psi, schedule, phi_kde, settings, device, seed, frame, frame_input, dtype, residual_scale
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def count_tiles(height_px: int, width_px: int, settings: SamplerSettings) -> int:
    return len(plan_tiles(height_px, width_px, settings.core_px, settings.halo_px))


def iter_sample_posterior(
    psi: torch.nn.Module,
    schedule: NoiseSchedule,
    phi_kde: np.ndarray,
    settings: SamplerSettings,
    device: torch.device,
    seed: int = 0,
    frame: int = 0,
    frame_input: np.ndarray | None = None,
    dtype=None,
    residual_scale: np.ndarray | None = None,
):
    """Generator form of :func:`sample_posterior`: yields the number of tiles finished
    after each psi batch, and 0 after every network evaluation within a batch (so callers
    can report progress and stop within a second or so), and returns the samples."""
    settings.validate(schedule.n_steps)
    target = getattr(psi, "target", "kde")
    settings = plan_for(settings, target)
    uses_frame = getattr(psi, "uses_frame", False)
    if uses_frame and frame_input is None:
        raise ValueError("this psi reads the normalised frame: pass frame_input")
    scaled = target == "scaled"
    if scaled and (residual_scale is None or np.shape(residual_scale) != np.shape(phi_kde)):
        raise ValueError(
            "this psi samples the residual in units of its fits' precision: pass residual_scale "
            "(models.conditioning.residual_scale) of the condition's shape"
        )
    u = UPSAMPLING
    h4, w4 = phi_kde.shape
    n = settings.n_samples
    samples = np.repeat(phi_kde[None].astype(np.float32), n, axis=0)
    pairs = step_pairs(settings, schedule.n_steps)
    groups: dict[tuple[int, int], list[tuple[int, Tile, np.ndarray]]] = defaultdict(list)
    tiles = plan_tiles(h4 // u, w4 // u, settings.core_px, settings.halo_px)
    for index, tile in enumerate(tiles):
        window = phi_kde[tile.in_r0 * u : tile.in_r1 * u, tile.in_c0 * u : tile.in_c1 * u]
        if settings.skip_empty_below is not None and window.max() < settings.skip_empty_below:
            continue
        groups[tile.input_shape].append((index, tile, window))
    for shape, items in groups.items():
        maps = settings.max_batch_maps or (64 if torch.device(device).type == "cpu" else 1024)
        per_call = max(1, maps // n)
        for start in range(0, len(items), per_call):
            chunk = items[start : start + per_call]
            cond, noise, data, scale = [], [], [], []
            for index, tile, window in chunk:
                cond.append(np.repeat(window[None, None], n, axis=0))
                if scaled:
                    block = residual_scale[tile.in_r0 * u : tile.in_r1 * u, tile.in_c0 * u : tile.in_c1 * u]
                    scale.append(np.repeat(block[None, None], n, axis=0))
                if uses_frame:
                    data.append(
                        np.repeat(frame_input[None, :, tile.in_r0 : tile.in_r1, tile.in_c0 : tile.in_c1], n, axis=0)
                    )
                gen = torch.Generator().manual_seed(_tile_seed(seed, frame, index))
                noise.append(torch.randn((len(pairs) + 1, n, 1, *window.shape), generator=gen))
            condition = torch.from_numpy(np.concatenate(cond)).to(device)
            frames = torch.from_numpy(np.concatenate(data).astype(np.float32)).to(device) if uses_frame else None
            noise_all = torch.cat(noise, dim=1).to(device)  # (steps + 1, maps, 1, h, w)
            scales = torch.from_numpy(np.concatenate(scale).astype(np.float32)).to(device) if scaled else None
            chain = _run_chain(psi, schedule, condition, noise_all, pairs, settings, frames, dtype, scales)
            while True:
                try:
                    with torch.no_grad():
                        next(chain)
                except StopIteration as finished:
                    y = finished.value
                    break
                yield 0
            y = y.float().cpu().numpy()[:, 0].reshape(len(chunk), n, *condition.shape[-2:])
            for (_, tile, _), tile_samples in zip(chunk, y):
                rows, cols = tile.core_in_input(u)
                samples[(slice(None), *tile.core_in_frame(u))] = tile_samples[:, rows, cols]
            yield len(chunk)
    return samples


def _run_chain(
    psi,
    schedule: NoiseSchedule,
    condition: torch.Tensor,
    noise: torch.Tensor,
    pairs: list[tuple[int, int]],
    settings: SamplerSettings,
    frames: torch.Tensor | None = None,
    dtype=None,
    scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reverse chain for a batch of maps: a generator that yields after every network
    evaluation and returns the KDE samples in model units."""
    maps = len(condition)
    start = pairs[0][0]
    target = getattr(psi, "target", "kde")
    residual = target in ("residual", "scaled")
    unit = scales if target == "scaled" else 1.0
    prediction = getattr(psi, "prediction", "eps")
    # y lives in the model's target space: the residual y - phi(x) (divided by the fits'
    # scale map for a scaled psi), or the KDE itself
    if settings.mode == "full":
        y = noise[0]
    else:
        y = schedule.q_sample(
            torch.zeros_like(condition) if residual else condition,
            torch.full((maps,), start, device=condition.device),
            noise[0],
        )
    clip = (-condition / unit, (settings.clip_max - condition) / unit) if residual else (0.0, settings.clip_max)
    z_clip = getattr(psi, "z_clip", None) if target == "scaled" else None
    if z_clip:  # the model's bound on z, as in its training (models.psi.set_z_clip)
        clip = (clip[0].clamp(min=-z_clip), clip[1].clamp(max=z_clip))
    # a scaled psi with v-prediction (its y0 estimate is bounded at every t) meets the KDE's
    # bounds (0 <= y <= clip_max) only at the chain's last step: most pixels of a KDE sit at its
    # lower bound, and clipping every step's estimate there ratchets empty pixels upward (psi v9,
    # full sampling: a pedestal of ~2 % of a peak, 2 std above 0; docs/models.md)
    bounded_estimate = target == "scaled" and prediction == "v"
    step_clip = ((-z_clip, z_clip) if z_clip else None) if bounded_estimate else clip
    mixes = step_mixes(settings, schedule.n_steps)
    net = inference_module(psi, dtype=dtype)  # the channels-last copy (fast_modules)
    condition_cl, frames_cl = channels_last(condition), channels_last(frames)
    for k, (t, s) in enumerate(pairs):
        tt = torch.full((maps,), t, device=condition.device, dtype=torch.long)
        ss = torch.full((maps,), s, device=condition.device, dtype=torch.long)
        y_cl = channels_last(y)
        with autocast(condition.device, dtype):
            output = net(y_cl, condition_cl, tt, frames_cl) if frames is not None else net(y_cl, condition_cl, tt)
        output = output.float()
        last = k + 1 == len(pairs)
        y = schedule.reverse_step(
            y,
            output,
            tt,
            ss,
            noise=noise[k + 1],
            clip_y0=clip if last else step_clip,
            prediction=prediction,
            variance_mix=mixes[k],
        )
        if not last:
            yield
    return y * unit + condition if residual else y
