"""Simulator speed: frames per second for typical movies (prints a table).

python benchmarks/simulator_speed.py
"""

import time

from smlm_diffusion.simulation import SimulationConfig, simulate_stack

CASES = [
    ("64x64 uniform, 0.5/um^2", dict(height_px=64, width_px=64, density_per_um2=0.5)),
    ("64x64 uniform, 2/um^2", dict(height_px=64, width_px=64, density_per_um2=2.0)),
    (
        "64x64 filaments blinking, 1/um^2",
        dict(height_px=64, width_px=64, density_per_um2=1.0, structure="filaments", blinking=True),
    ),
    ("20x20 disc (paper), 3/um^2", dict(height_px=20, width_px=20, density_per_um2=3.0, structure="disc")),
    ("256x256 uniform, 1/um^2", dict(height_px=256, width_px=256, density_per_um2=1.0)),
]


def main(n_frames: int = 1000) -> None:
    print(f"{'case':38s} {'frames':>7s} {'seconds':>8s} {'frames/s':>9s} {'+KDE frames/s':>14s}")
    for name, kwargs in CASES:
        frames = n_frames if kwargs["height_px"] <= 64 else n_frames // 10
        cfg = SimulationConfig(n_frames=frames, read_noise_e=1.5, seed=0, **kwargs)
        t0 = time.perf_counter()
        simulate_stack(cfg, quantize=True)
        dt = time.perf_counter() - t0
        kde_frames = max(frames // 10, 10)
        t0 = time.perf_counter()
        simulate_stack(SimulationConfig(**{**cfg.to_dict(), "n_frames": kde_frames}), with_kde=True)
        dt_kde = time.perf_counter() - t0
        print(f"{name:38s} {frames:7d} {dt:8.2f} {frames / dt:9.0f} {kde_frames / dt_kde:14.0f}")


if __name__ == "__main__":
    main()
