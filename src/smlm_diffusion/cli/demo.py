"""``smlm-diffusion demo``: simulate a filament movie, localize, evaluate, draw a figure.

At this stage the localizer is the classical baseline (LoG detection on the raw frame,
sub-pixel refinement, Mortensen precision); the diffusion reconstruction joins it once
the bundled models exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..analysis import evaluate, localize_frame, render_localizations
from ..io import TiffStack, atomic_path, write_localizations_csv
from ..localizations import Localizations
from ..simulation import SimulationConfig, filament_movie_config
from .simulate import write_simulation


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="simulate, localize and evaluate a small movie, with a figure",
                       description="End-to-end demonstration on a simulated filament movie.")
    p.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    p.add_argument("--frames", type=int, default=300, help="frames to simulate (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = filament_movie_config(n_frames=args.frames, seed=args.seed)
    print(f"1/3 simulating {cfg.n_frames} frames of filaments -> {out / 'raw.tif'}", file=sys.stderr)
    truth = write_simulation(cfg, out / "raw.tif", out / "ground_truth.csv")

    print("2/3 localizing (classical LoG baseline)", file=sys.stderr)
    tables = []
    with TiffStack(out / "raw.tif") as stack:
        px = stack.metadata.pixel_size_nm or cfg.pixel_size_nm
        for first, chunk in stack.iter_chunks():
            photons = cfg.camera.to_photons(chunk)
            for i, frame in enumerate(photons):
                tables.append(localize_frame(frame, cfg.psf_sigma_px, px, frame=first + i + 1,
                                             read_noise_e=cfg.read_noise_e))
        first_frame = cfg.camera.to_photons(stack[0])
    locs = Localizations.concatenate(tables)
    write_localizations_csv(out / "localizations.csv", locs)

    print("3/3 evaluating against the ground truth", file=sys.stderr)
    metrics = evaluate(locs, truth, 250.0).to_dict()
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    _figure(out / "demo.png", first_frame, locs, truth, cfg)
    print(json.dumps({k: metrics[k] for k in ("recall", "precision", "jaccard", "rmse_lateral_nm",
                                              "efficiency")}, indent=2))
    print(f"outputs in {out}/: raw.tif, ground_truth.csv, localizations.csv, metrics.json, demo.png")
    return 0


def _figure(path: Path, first_frame: np.ndarray, locs: Localizations, truth: Localizations,
            cfg: SimulationConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = (cfg.height_px, cfg.width_px)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), constrained_layout=True)
    axes[0].imshow(first_frame, cmap="gray")
    f1 = locs.in_frame(1)
    axes[0].scatter(f1.x_nm / cfg.pixel_size_nm - 0.5, f1.y_nm / cfg.pixel_size_nm - 0.5, s=30,
                    facecolors="none", edgecolors="tab:orange", label="localizations")
    axes[0].set_title("raw frame 1 (photons)")
    axes[0].legend(loc="lower right", fontsize=8)
    truth_render = render_localizations(truth, shape, cfg.pixel_size_nm)
    vmax = float(np.percentile(truth_render, 99.9)) or None
    axes[1].imshow(render_localizations(locs, shape, cfg.pixel_size_nm), cmap="magma", vmin=0, vmax=vmax)
    axes[1].set_title(f"render of {len(locs)} localizations (4x)")
    axes[2].imshow(truth_render, cmap="magma", vmin=0, vmax=vmax)
    axes[2].set_title("ground truth (4x)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
