"""Posterior-sampler settings and step plans (no torch import, so GUIs can use them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

#: reverse-chain times (then 0) for a psi that samples the scaled residual (``target="scaled"``):
#: its residual is unit-sized, so the chain starts from noise at t = T. Where psi's posterior
#: takes its width is the top of the cosine schedule: the 100-step chain with its first 20
#: steps taken one by one and the rest strided is as wide as the full chain, and the same
#: steps strided by 5 give 0.3-0.5x its variance; so the first 5 steps are single, the rest
#: strided, and the chain ends at t = 10, whose last estimate leaves empty pixels as quiet as
#: full sampling's (12 evaluations; psi v9, validation sets; docs/models.md)
SCALED_PSI_TIMES = (100, 99, 98, 97, 96, 95, 90, 85, 75, 55, 30, 10)
#: and its variance mix (each strided step's variance toward the upper bound 1 - g_t/g_s): 0,
#: the steps' own posterior variance (the upper bound, 1, left 6-8x full sampling's variance in
#: empty pixels, in plans ending at t = 30; docs/models.md)
SCALED_PSI_VARIANCE_MIX = 0.0
#: and its shift width, the factor on the emitters' part of the scale map that makes up for the
#: strided steps: with it the plan's mean variance is 0.99 / 1.15 / 1.12x full sampling's on the
#: three validation sets, 1.00x on average over them and two more seeds of each (1.15: 0.93x;
#: 1.25: up to 1.24x on the first seeds; psi v9, docs/models.md)
SCALED_PSI_SHIFT_WIDTH = 1.2


@dataclass
class SamplerSettings:
    n_samples: int = 16  # posterior chains per tile
    mode: str = "accelerated"  # "accelerated" | "full"
    t0: int = 60  # accelerated: first step (forward-noised phi estimate); psi v2 validation
    stride: int = 8  # accelerated: steps skipped per network evaluation (8 evaluations)
    # accelerated, each strided step's variance: 0 its posterior variance, 1 the upper bound
    # 1 - g_t/g_s; one number for every step or one per step; None: the plan's own (plan_for)
    variance_mix: float | tuple[float, ...] | None = None
    # accelerated: the chain's times (then 0); None: t0/stride; "auto": SCALED_PSI_TIMES for a
    # scaled psi, t0/stride for the others (plan_for)
    times: tuple[int, ...] | str | None = "auto"
    # scaled psi: factor on the fits' part of the scale map (the plan's width correction);
    # None: the plan's own (SCALED_PSI_SHIFT_WIDTH for the auto plan, 1 otherwise)
    shift_width: float | None = None
    core_px: int = 20  # tile core (camera px); cores are balanced to <= this
    halo_px: int = 4  # context around each core (camera px)
    max_batch_maps: int = 0  # tiles x chains per psi call; 0 = auto (64 on CPU, 1024 on a GPU)
    skip_empty_below: float | None = 0.05  # tiles whose phi peak is below this (model units) are not sampled
    clip_max: float = 8.0

    def validate(self, n_steps: int) -> None:
        if self.mode not in ("accelerated", "full"):
            raise ValueError("the sampling mode must be 'accelerated' or 'full'")
        if self.shift_width is not None and not 0.0 < self.shift_width <= 10.0:
            raise ValueError("the sampler's shift width is a factor between 0 and 10")
        if self.variance_mix is not None and not all(0.0 <= m <= 1.0 for m in np.atleast_1d(self.variance_mix)):
            raise ValueError("the sampler's variance mix is a number between 0 and 1 (or one per step)")
        if self.n_samples < 2:
            raise ValueError("posterior sampling needs at least 2 samples")
        if self.mode == "accelerated" and not (1 <= self.t0 <= n_steps and self.stride >= 1):
            raise ValueError(f"accelerated sampling needs 1 <= t0 <= {n_steps} and a stride >= 1")
        if isinstance(self.times, str) and self.times != "auto":
            raise ValueError("the sampler's times are 'auto', None (t0 and stride) or a list of steps")
        if self.times is not None and not isinstance(self.times, str):
            times = list(self.times)
            if not times or times[0] > n_steps or times[-1] < 1 or any(a <= b for a, b in zip(times, times[1:])):
                raise ValueError(f"the sampler's times must fall from at most {n_steps} to at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


def plan_for(settings: SamplerSettings, target: str) -> SamplerSettings:
    """The settings a psi of this ``target`` samples with, "auto" and None resolved: a scaled
    psi (unit-sized residual, no phi-based start) takes SCALED_PSI_TIMES with
    SCALED_PSI_VARIANCE_MIX and SCALED_PSI_SHIFT_WIDTH (other times: mix 1, width 1), the
    other psis t0/stride, variance mix 0 and shift width 1."""
    scaled = target == "scaled"
    times = settings.times
    auto_plan = scaled and times == "auto" and settings.mode == "accelerated"
    if times == "auto":
        times = SCALED_PSI_TIMES if scaled else None
    mix = settings.variance_mix
    if mix is None:
        mix = (SCALED_PSI_VARIANCE_MIX if auto_plan else 1.0) if scaled else 0.0
    width = settings.shift_width
    if width is None:
        width = SCALED_PSI_SHIFT_WIDTH if auto_plan else 1.0
    return replace(settings, times=times, variance_mix=mix, shift_width=width)


def step_pairs(settings: SamplerSettings, n_steps: int) -> list[tuple[int, int]]:
    """The (t, s) reverse steps taken, from the start down to s = 0 ("auto" times: t0/stride;
    resolve them with ``plan_for`` first)."""
    if settings.mode == "accelerated" and settings.times not in (None, "auto"):
        times = [int(t) for t in settings.times] + [0]
    else:
        start, stride = (settings.t0, settings.stride) if settings.mode == "accelerated" else (n_steps, 1)
        times = list(range(start, 0, -stride)) + [0]
    return list(zip(times[:-1], times[1:]))


def step_mixes(settings: SamplerSettings, n_steps: int) -> list[float]:
    """The variance mix of each reverse step (``step_pairs``): full sampling 0 throughout, an
    accelerated plan its one number or its per-step list (resolve "auto"/None with ``plan_for``)."""
    n = len(step_pairs(settings, n_steps))
    if settings.mode == "full" or settings.variance_mix is None:
        return [0.0] * n
    mixes = [float(m) for m in np.atleast_1d(settings.variance_mix)]
    if len(mixes) == 1:
        return mixes * n
    if len(mixes) != n:
        raise ValueError(f"the sampler has {n} steps but {len(mixes)} variance mixes; give one, or one per step")
    return mixes


def network_evaluations_per_tile(settings: SamplerSettings, n_steps: int) -> int:
    return len(step_pairs(settings, n_steps))
