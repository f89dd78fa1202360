"""``smlm-diffusion demo``: simulate a blinking-filament movie, reconstruct every frame on
the fast phi path (likelihood-refined localizations with their precision) and the first
frames with posterior sampling (KDE mean and variance, posterior spread and detection
probability), evaluate against the ground truth and save a figure: raw frame, posterior
mean, posterior variance, localizations coloured by their uncertainty, and the render of
the movie."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..analysis import evaluate
from ..io import TiffStack, atomic_path
from ..io.simulated import write_simulation
from ..reconstruction import ReconstructionSettings, reconstruct
from ..simulation import filament_movie_config
from .reconstruct import write_outputs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate, reconstruct with uncertainties and evaluate a small movie",
        description="End-to-end demonstration on a simulated 64x64 filament movie with the bundled "
        "models: the phi path on every frame, posterior sampling on the first ones. On a "
        "2-core CPU the defaults take about 12 s with bfloat16 (AVX512-BF16) and about 20 s "
        "in float32 (docs/performance.md).",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    p.add_argument(
        "--frames",
        type=int,
        default=300,
        help="frames to simulate and reconstruct on the phi path (default 300; tens of frames per second on a CPU)",
    )
    p.add_argument(
        "--posterior-frames",
        type=int,
        default=1,
        help="first frames also sampled by the posterior (default 1; seconds per 64x64 frame on a CPU)",
    )
    p.add_argument("--samples", type=int, default=16, help="posterior samples per tile (default 16)")
    p.add_argument("--no-posterior", action="store_true", help="phi path only")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.frames < 1:
        raise ValueError("the demo needs at least 1 frame")
    n_posterior = 0 if args.no_posterior else max(0, min(args.posterior_frames, args.frames))
    cfg = filament_movie_config(n_frames=args.frames, seed=args.seed)
    print(f"1/4 simulating {cfg.n_frames} frames of blinking filaments -> {out / 'raw.tif'}", file=sys.stderr)
    truth = write_simulation(cfg, out / "raw.tif", out / "ground_truth.csv")
    settings = ReconstructionSettings(
        pixel_size_nm=cfg.pixel_size_nm,
        offset_adu=cfg.offset_adu,
        gain_adu_per_photon=cfg.gain_adu_per_photon,
        posterior=False,
        device=args.device,
        seed=args.seed,
    )
    settings.keep_frame_kdes = n_posterior == 0 and args.frames <= 200  # the figure's frame 1, bounded memory
    started = time.monotonic()

    def progress(step: str, total: int):
        def report(event) -> None:
            frame = event.frame_result.frame if event.frame_result is not None else None
            where = f"frame {frame}/{total}" if frame else f"{event.done}/{event.total} tiles, {event.message}"
            print(f"\r{step}: {where}, {time.monotonic() - started:.0f} s   ", end="", file=sys.stderr, flush=True)

        return report

    with TiffStack(out / "raw.tif") as stack:
        first_frame = (np.asarray(stack[0], float) - cfg.offset_adu) / cfg.gain_adu_per_photon
        result = reconstruct(stack, settings, progress=progress("2/4 phi path, every frame", cfg.n_frames))
        print(file=sys.stderr)
        write_outputs(out, result, str(out / "raw.tif"), tuple(stack.shape))
        posterior = None
        if n_posterior:
            started = time.monotonic()
            sampled = ReconstructionSettings(
                **{
                    **settings.to_dict(),
                    "sampler": settings.sampler,
                    "posterior": True,
                    "frames": (0, n_posterior),
                    "keep_frame_kdes": True,
                }
            )
            sampled.sampler.n_samples = args.samples
            posterior = reconstruct(
                stack, sampled, progress=progress(f"3/4 posterior, {args.samples} samples per tile", n_posterior)
            )
            print(file=sys.stderr)
            write_outputs(out / "posterior", posterior, str(out / "raw.tif"), tuple(stack.shape))
    print("4/4 evaluating against the ground truth", file=sys.stderr)
    metrics = evaluate(result.localizations, truth, 250.0).to_dict()
    metrics["seconds_per_frame"] = result.timings_s["total"] / max(len(result.frames), 1)
    metrics["device"] = result.device
    if posterior is not None:
        first = truth.select(truth.frame <= n_posterior)
        metrics["posterior"] = {
            **evaluate(posterior.localizations, first, 250.0).to_dict(),
            "frames": n_posterior,
            "seconds_per_frame": posterior.timings_s["total"] / max(len(posterior.frames), 1),
        }
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    _figure(out / "demo.png", first_frame, result, posterior, cfg.pixel_size_nm)
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in ("recall", "precision", "jaccard", "rmse_lateral_nm", "efficiency", "seconds_per_frame")
            },
            indent=2,
        )
    )
    extra = (
        "posterior/ (localizations.csv with posterior columns, render_variance.tif, run.json), "
        if posterior is not None
        else ""
    )
    print(
        f"outputs in {out}/: raw.tif, ground_truth.csv, localizations.csv, render.tif, run.json, metrics.json, "
        f"{extra}demo.png"
    )
    return 0


def _figure(path: Path, first_frame: np.ndarray, result, posterior, pixel_size_nm: float) -> None:
    """Frame 1 from the posterior run where there is one (else the phi path), the render
    of the whole movie from the phi path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(22, 4.8), constrained_layout=True)
    extent_raw = (-0.5, first_frame.shape[1] - 0.5, first_frame.shape[0] - 0.5, -0.5)
    extent_kde = (0, first_frame.shape[1], first_frame.shape[0], 0)  # 4x grid spans the camera pixel edges
    shift = 0.5  # positions (corner origin) -> imshow's pixel-centre coordinates
    axes[0].imshow(first_frame, cmap="gray", extent=extent_raw)
    axes[0].set_title("raw frame 1 (photons)")
    one = posterior if posterior is not None else result
    mean = one.mean_kdes.get(1)
    variance = one.variance_kdes.get(1)
    if mean is not None:
        axes[1].imshow(mean, cmap="magma", extent=(-0.5, extent_kde[1] - 0.5, extent_kde[2] - 0.5, -0.5))
    axes[1].set_title("posterior mean KDE, frame 1" if variance is not None else "phi KDE, frame 1")
    if variance is not None:
        axes[2].imshow(variance, cmap="viridis", extent=(-0.5, extent_kde[1] - 0.5, extent_kde[2] - 0.5, -0.5))
    axes[2].set_title("posterior variance, frame 1")
    locs = one.localizations.in_frame(1)
    axes[3].imshow(first_frame, cmap="gray", extent=extent_raw)
    if len(locs):
        colour = np.nan_to_num(locs.uncertainty_xy_nm, nan=0.0)
        dots = axes[3].scatter(
            locs.x_nm / pixel_size_nm - shift,
            locs.y_nm / pixel_size_nm - shift,
            c=colour,
            cmap="plasma",
            s=28,
            edgecolors="white",
            linewidths=0.4,
        )
        fig.colorbar(dots, ax=axes[3], label="uncertainty_xy [nm]", shrink=0.8)
    axes[3].set_title("localizations, frame 1")
    render = result.render
    axes[4].imshow(render, cmap="magma", vmin=0, vmax=float(np.percentile(render, 99.8)) or None)
    axes[4].set_title(f"render of {len(result.frames)} frames ({result.render_pixel_nm:.3g} nm pixels)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
