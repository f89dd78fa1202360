"""Posterior-sampler settings and step plans (no torch import, so GUIs can use them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SamplerSettings:
    n_samples: int = 16             # posterior chains per tile
    mode: str = "accelerated"       # "accelerated" | "full"
    t0: int = 60                    # accelerated: first step (forward-noised phi estimate); psi v2 validation
    stride: int = 8                 # accelerated: steps skipped per network evaluation (8 evaluations)
    variance_mix: float = 0.0       # 0: each step's posterior variance; 1: the upper bound (matches full sampling)
    core_px: int = 20               # tile core (camera px); cores are balanced to <= this
    halo_px: int = 4                # context around each core (camera px)
    max_batch_maps: int = 0         # tiles x chains per psi call; 0 = auto (64 on CPU, 1024 on a GPU)
    skip_empty_below: float | None = 0.05  # tiles whose phi peak is below this (model units) are not sampled
    clip_max: float = 8.0

    def validate(self, n_steps: int) -> None:
        if self.mode not in ("accelerated", "full"):
            raise ValueError("the sampling mode must be 'accelerated' or 'full'")
        if not 0.0 <= self.variance_mix <= 1.0:
            raise ValueError("the sampler's variance mix is a number between 0 and 1")
        if self.n_samples < 2:
            raise ValueError("posterior sampling needs at least 2 samples")
        if self.mode == "accelerated" and not (1 <= self.t0 <= n_steps and self.stride >= 1):
            raise ValueError(f"accelerated sampling needs 1 <= t0 <= {n_steps} and a stride >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def step_pairs(settings: SamplerSettings, n_steps: int) -> list[tuple[int, int]]:
    """The (t, s) reverse steps taken, from the start down to s = 0."""
    start, stride = (settings.t0, settings.stride) if settings.mode == "accelerated" else (n_steps, 1)
    times = list(range(start, 0, -stride)) + [0]
    return list(zip(times[:-1], times[1:]))


def network_evaluations_per_tile(settings: SamplerSettings, n_steps: int) -> int:
    return len(step_pairs(settings, n_steps))
