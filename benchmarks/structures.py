"""Training on structures like the user's (issue 15): a held-out structure family.

    python benchmarks/structures.py --write-tables DIR          # rings_train.csv, rings_heldout.csv
    python benchmarks/structures.py --tables DIR --phi phi --phi FINE.pt [--phi GEN.pt] [--frames 20]
    python benchmarks/structures.py --tables DIR --train-generator GEN.pt [--steps 4000] [--device cuda]
    python benchmarks/structures.py --tables DIR --generate GEN.pt --count 64 --out DIR2 [--device cuda]

The family is *rings*: hollow circles of radius 80-200 nm with sites on the rim (like
clathrin-coated pits or vesicles seen from above), unlike every built-in prior (uniform,
the paper's solid disc, filaments, clusters). Two tables are written from different seeds:
``rings_train.csv`` for fine-tuning (``train phi --structures``) and ``rings_heldout.csv``,
whose instances the models never see, for the frames measured here. For each phi the table
gives Jaccard / RMSE (250 nm tolerance) on held-out ring frames at 4 emitters/um^2 and on the
accuracy benchmark's uniform rows (benchmarks/accuracy.py, same seeds), which must not drop.

The generated-structure variant: an unconditional DDPM (``models/structure_generator.py``)
trained on patches of ``rings_train.csv`` samples new ring images (``--generate`` writes them
as TIFF densities with their pixel size, for ``train phi --structures DIR2/*.tif``) and prints
the memorisation check: each generated patch's maximum normalised cross-correlation with 512
training patches, beside the same figure for held-out patches (real rings never seen).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

RING_FIELD_UM = 40.0
RING_ROWS = {  # held-out ring frames: 64x64 px of 108 nm, 4 emitters/um^2 on the rims
    "rings, sigma 1.0, 1000 ph, bg 20": dict(psf_sigma_px=1.0, photons=1000.0, background_photons=20.0),
    "rings, sigma 1.3, 3000 ph, bg 80": dict(psf_sigma_px=1.3, photons=3000.0, background_photons=80.0),
}


def ring_points(
    seed: int,
    field_um: float = RING_FIELD_UM,
    rings_per_um2: float = 0.8,
    radius_nm: tuple[float, float] = (80.0, 200.0),
    site_spacing_nm: float = 8.0,
    jitter_nm: float = 6.0,
) -> np.ndarray:
    """(n, 2) x, y (nm) of sites on non-overlapping rings in a square field."""
    rng = np.random.default_rng(seed)
    field = field_um * 1000.0
    centres, radii = [], []
    wanted = int(rings_per_um2 * field_um**2)
    for _ in range(wanted * 20):
        if len(centres) >= wanted:
            break
        r = rng.uniform(*radius_nm)
        c = rng.uniform(r + 50, field - r - 50, 2)
        if centres and np.min(np.linalg.norm(np.array(centres) - c, axis=1) - np.array(radii)) < r + 60:
            continue
        centres.append(c)
        radii.append(r)
    points = []
    for c, r in zip(centres, radii):
        n = int(2 * np.pi * r / site_spacing_nm)
        angle = rng.uniform(0, 2 * np.pi, n)
        rho = r + rng.normal(0, jitter_nm, n)
        points.append(c + np.c_[rho * np.cos(angle), rho * np.sin(angle)])
    return np.concatenate(points)


def write_tables(folder: Path) -> None:
    from smlm_diffusion.io.csv import write_localizations_csv
    from smlm_diffusion.localizations import Localizations

    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in (("rings_train.csv", 1), ("rings_heldout.csv", 2)):
        p = ring_points(seed)
        write_localizations_csv(folder / name, Localizations(np.ones(len(p), int), p[:, 0], p[:, 1]))
        print(f"wrote {folder / name}: {len(p)} sites on rings in {RING_FIELD_UM:.0f} x {RING_FIELD_UM:.0f} um")


def ring_frames(heldout: Path, row: dict, n_frames: int, seed: int = 2026):
    from smlm_diffusion.io.structure import read_structure
    from smlm_diffusion.simulation import SimulationConfig, simulate_stack

    prior = read_structure(heldout)
    cfg = SimulationConfig(
        n_frames=n_frames,
        height_px=64,
        width_px=64,
        pixel_size_nm=108.0,
        density_per_um2=4.0,
        offset_adu=100.0,
        gain_adu_per_photon=1.0,
        read_noise_e=1.0,
        seed=seed,
        structure_source=prior.source,
        augment_structure=True,
        **row,
    )
    return simulate_stack(cfg, prior=prior)


def measure(phi: str, sim) -> tuple[float, float, float]:
    from smlm_diffusion.analysis import evaluate
    from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct

    settings = ReconstructionSettings(
        offset_adu=100.0, gain_adu_per_photon=1.0, phi_model=phi, posterior=False, device="cpu", drift="off"
    )
    started = time.perf_counter()
    rec = reconstruct(sim.adu, settings)
    m = evaluate(rec.localizations, sim.truth, 250.0)
    return m.jaccard, m.rmse_lateral_nm, time.perf_counter() - started


def train_generator(tables: Path, out: Path, steps: int, device: str) -> None:
    from smlm_diffusion.io.structure import read_structure
    from smlm_diffusion.models.structure_generator import train_structure_generator

    points = read_structure(tables / "rings_train.csv").points_nm
    started = [time.monotonic()]

    def progress(step, total, loss):
        if step % 250 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.4f} ({time.monotonic() - started[0]:.0f} s)", flush=True)

    record = train_structure_generator(
        [points],
        out,
        steps=steps,
        device=device,
        checkpoint_path=f"{out}.ckpt",
        sources=["rings_train.csv"],
        progress=progress,
        command=f"python benchmarks/structures.py --tables DIR --train-generator "
        f"{out.name} --steps {steps} --device {device}",
    )
    print(f"wrote {out}: {record['steps']} steps, {record['wall_time_s']} s on {record['hardware']}")


def generate(tables: Path, model_path: Path, count: int, out: Path, device: str) -> None:
    from smlm_diffusion.io.structure import read_structure
    from smlm_diffusion.io.tiff import write_stack
    from smlm_diffusion.models.store import load_model
    from smlm_diffusion.models.structure_generator import (
        StructurePatches,
        generate_structures,
        max_normalised_cross_correlation,
    )

    model = load_model(model_path, device)
    started = time.monotonic()
    images = generate_structures(model.module, model.schedule, count, device=device)
    print(f"{count} structures generated in {time.monotonic() - started:.1f} s on {device}")
    pixel = model.normalisation["render_pixel_nm"]
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        write_stack(out / f"generated_{i:03d}.tif", (image * 1000).astype(np.uint16), pixel)
    rng = np.random.default_rng(5)
    train = StructurePatches([read_structure(tables / "rings_train.csv").points_nm]).batch(rng, 512)[:, 0]
    heldout = StructurePatches([read_structure(tables / "rings_heldout.csv").points_nm]).batch(rng, count)[:, 0]
    ours = max_normalised_cross_correlation(images, (train + 1) / 2)
    real = max_normalised_cross_correlation((heldout + 1) / 2, (train + 1) / 2)
    print(
        "memorisation check (max normalised cross-correlation with 512 training patches): "
        f"generated median {np.median(ours):.3f}, max {ours.max():.3f}; "
        f"held-out real patches median {np.median(real):.3f}, max {real.max():.3f}"
    )
    print(f"mean pixel value: generated {images.mean():.4f}, real {((heldout + 1) / 2).mean():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-tables", type=Path, metavar="DIR")
    parser.add_argument("--tables", type=Path, metavar="DIR", help="folder holding rings_heldout.csv")
    parser.add_argument("--phi", action="append", default=[], help="phi model (bundled name or file); repeat")
    parser.add_argument("--frames", type=int, default=20, help="held-out ring frames per row (default 20)")
    parser.add_argument("--skip-uniform", action="store_true", help="only the ring rows")
    parser.add_argument("--train-generator", type=Path, metavar="GEN.pt")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--generate", type=Path, metavar="GEN.pt")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--out", type=Path, metavar="DIR")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.write_tables:
        write_tables(args.write_tables)
        return
    if args.train_generator:
        train_generator(args.tables, args.train_generator, args.steps, args.device)
        return
    if args.generate:
        generate(args.tables, args.generate, args.count, args.out, args.device)
        return
    if not args.tables or not args.phi:
        parser.error("give --write-tables DIR, or --tables DIR with one or more --phi")
    import torch
    from accuracy import dataset

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Jaccard (RMSE nm), tolerance 250 nm")
    rows = {name: ring_frames(args.tables / "rings_heldout.csv", row, args.frames) for name, row in RING_ROWS.items()}
    if not args.skip_uniform:
        rows["uniform low (accuracy.py, 100 fr)"] = dataset("low", 100)
        rows["uniform high (accuracy.py, 30 fr)"] = dataset("high", 30)
    print("\n| frames | " + " | ".join(args.phi) + " |")
    print("|---|" + "---|" * len(args.phi))
    for name, sim in rows.items():
        cells = []
        for phi in args.phi:
            jaccard, rmse, _ = measure(phi, sim)
            cells.append(f"{jaccard:.3f} ({rmse:.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
