"""Real-frame robustness (the real-frames issue): false localizations on background-only
frames and Jaccard at 0.5 emitters/um^2 on flat and structured backgrounds.

    python benchmarks/background.py [--phi phi] [--frames 20] [--min-photons N] [--sweep]

The backgrounds are drawn *here*, by generators that the training domain does not use
(``simulation/background.py`` is not called), with seeds the training never saw: the
issue's own rows (a linear 10 -> 150 gradient, two out-of-focus blobs on 20, a bright
disc-shaped cell with a soft edge) and kinds held out entirely (a Gaussian illumination
beam, interference fringes, a bright 300-photon cell beyond the training range). Frames
are 128x128, 108 nm pixels, PSF sigma 0.92 px, gain 1 ADU/photon, offset 100, read noise
1.5 e-; emitters are uniform, 1000 photons (two dim rows: 300 photons). ``--sweep`` prints false localizations per
frame and Jaccard against the detection knob (min_photons), which chose its default.
Not a test: it prints tables for docs/performance.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from smlm_diffusion.analysis import evaluate
from smlm_diffusion.inference.devices import PRECISION_CHOICES
from smlm_diffusion.localizations import Localizations
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.reconstruction.settings import DEFAULT_MIN_PHOTONS
from smlm_diffusion.simulation import CameraModel, expected_photons

SIDE, PIXEL_NM, PSF_SIGMA, PHOTONS = 128, 108.0, 0.92, 1000.0
CAMERA = CameraModel(gain_adu_per_photon=1.0, offset_adu=100.0, read_noise_e=1.5)


def _grid():
    rows, cols = np.mgrid[0:SIDE, 0:SIDE] + 0.5
    return rows, cols


def flat(level):
    return lambda rng: np.full((SIDE, SIDE), float(level))


def gradient(rng):
    return 10.0 + 140.0 * _grid()[1] / SIDE


def two_blobs(rng):
    rows, cols = _grid()
    out = np.full((SIDE, SIDE), 20.0)
    for _ in range(2):
        r0, c0 = rng.uniform(20, SIDE - 20, 2)
        sigma, amplitude = rng.uniform(15, 20), rng.uniform(60, 90)
        out += amplitude * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * sigma**2))
    return out


def disc_cell(inside=120.0, outside=5.0):
    def make(rng):
        rows, cols = _grid()
        r0, c0 = rng.uniform(50, SIDE - 50, 2)
        radius = rng.uniform(35, 50)
        edge = 0.5 * (1 - np.tanh((np.hypot(rows - r0, cols - c0) - radius) / 3.0))
        return outside + (inside - outside) * edge

    return make


def beam(rng):
    rows, cols = _grid()
    r0, c0 = rng.uniform(40, SIDE - 40, 2)
    return 5.0 + 145.0 * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * 45.0**2))


def fringes(rng):
    rows, cols = _grid()
    angle, period = rng.uniform(0, np.pi), rng.uniform(20, 30)
    return 50.0 + 30.0 * np.sin(2 * np.pi * (np.cos(angle) * cols + np.sin(angle) * rows) / period)


BACKGROUNDS = {
    "flat 20": flat(20),
    "flat 100": flat(100),
    "gradient 10->150": gradient,
    "two blobs on 20": two_blobs,
    "disc cell 120/5": disc_cell(),
    "held out: beam 5->150": beam,
    "held out: fringes 20-80": fringes,
    "held out: cell 300/10": disc_cell(300.0, 10.0),
}
#: rows with other emitters than 1000 photons (the detection knob's cost on dim emitters)
DIM_ROWS = {"dim: 300 photons on flat 10": (flat(10), 300.0), "dim: 300 photons on gradient 10->150": (gradient, 300.0)}


def frames(
    make_background,
    n_frames: int,
    density_per_um2: float,
    seed: int,
    photons: float = PHOTONS,
    camera: CameraModel = CAMERA,
):
    """(ADU stack, truth) with one background map per frame (a new cell or blob each frame)."""
    rng = np.random.default_rng(seed)
    area_um2 = (SIDE * PIXEL_NM / 1000) ** 2
    stack, tables = [], []
    for f in range(n_frames):
        k = rng.poisson(density_per_um2 * area_um2)
        xy = rng.uniform(0, SIDE, (k, 2))
        omega = expected_photons(
            xy[None, :, 0], xy[None, :, 1], np.full((1, k), photons), (SIDE, SIDE), PSF_SIGMA, make_background(rng)
        )[0]
        stack.append(np.clip(np.rint(camera.expose(omega, rng)), 0, 65535))
        tables.append(
            Localizations(
                frame=np.full(k, f + 1),
                x_nm=xy[:, 0] * PIXEL_NM,
                y_nm=xy[:, 1] * PIXEL_NM,
                intensity_photons=np.full(k, photons),
            )
        )
    return np.stack(stack), Localizations.concatenate(tables)


#: the networks' arithmetic for every run (--precision)
PRECISION = {"value": "auto"}


def run(stack, phi: str, min_photons: float, gain: float = CAMERA.gain_adu_per_photon):
    settings = ReconstructionSettings(
        pixel_size_nm=PIXEL_NM,
        offset_adu=CAMERA.offset_adu,
        gain_adu_per_photon=gain,
        posterior=False,
        precision=PRECISION["value"],
        phi_model=phi,
        device="cpu",
        min_photons=min_photons,
    )
    return reconstruct(stack, settings)


def gain_table(args) -> None:
    """The same frames (recorded at gain 3 ADU/photon) reconstructed with the gain stated
    as 1, 3 and 6: the counts must differ (the gain is not divided away) and the true gain
    must do best; the run's own photon-transfer estimate is printed beside."""
    print("\nCamera gain (frames recorded at 3 ADU/photon, gradient 10->150, 0.5/um^2, 1000 photons)\n")
    print("| stated gain | localizations | Jaccard | estimated gain | warning |")
    print("|--:|--:|--:|--:|---|")
    camera = CameraModel(gain_adu_per_photon=3.0, offset_adu=100.0, read_noise_e=1.5)
    stack, truth = frames(gradient, args.frames, 0.5, args.seed + 99, camera=camera)
    for gain in (1.0, 3.0, 6.0):
        rec = run(stack, args.phi, args.min_photons, gain)
        m = evaluate(rec.localizations, truth, 250.0)
        estimate = rec.camera_estimate["gain_adu_per_photon"] if rec.camera_estimate else float("nan")
        print(
            f"| {gain:g} | {len(rec.localizations)} | {100 * m.jaccard:.1f} | {estimate:.2f} | "
            f"{'yes' if rec.warnings else 'no'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--min-photons", type=float, default=DEFAULT_MIN_PHOTONS)
    parser.add_argument("--sweep", action="store_true", help="also sweep the detection knob")
    parser.add_argument("--seed", type=int, default=90210)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="phi's arithmetic (default auto: bfloat16 where the CPU has it natively)",
    )
    args = parser.parse_args()
    PRECISION["value"] = args.precision
    import torch

    print(
        f"phi={args.phi}, min_photons={args.min_photons:g}, {args.frames} frames of {SIDE}x{SIDE} per row, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; tolerance 250 nm\n"
    )
    print(
        "| background | false locs / frame (no emitters) | Jaccard 0.5/um^2 | recall | precision | RMSE nm | frames/s |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    sweep_rows = []
    rows = [(name, make, PHOTONS) for name, make in BACKGROUNDS.items()]
    rows += [(name, make, photons) for name, (make, photons) in DIM_ROWS.items()]
    for i, (name, make, photons) in enumerate(rows):
        empty, _ = frames(make, args.frames, 0.0, args.seed + 2 * i)
        full, truth = frames(make, args.frames, 0.5, args.seed + 2 * i + 1, photons)
        started = time.perf_counter()
        rec_empty = run(empty, args.phi, 0.0 if args.sweep else args.min_photons)
        rec_full = run(full, args.phi, 0.0 if args.sweep else args.min_photons)
        rate = 2 * args.frames / (time.perf_counter() - started)
        cut = lambda locs: locs.select(locs.intensity_photons >= args.min_photons)  # noqa: E731
        false_per_frame = len(cut(rec_empty.localizations)) / args.frames
        m = evaluate(cut(rec_full.localizations), truth, 250.0)
        print(
            f"| {name} | {false_per_frame:.2f} | {100 * m.jaccard:.1f} | {m.recall:.3f} | {m.precision:.3f} | "
            f"{m.rmse_lateral_nm:.1f} | {rate:.1f} |"
        )
        sweep_rows.append((name, rec_empty.localizations, rec_full.localizations, truth))
    gain_table(args)
    if not args.sweep:
        return
    knobs = [0, 50, 100, 150, 200, 300]
    print("\nDetection knob: false locs / frame (background only) ; Jaccard % at 0.5/um^2\n")
    print("| background | " + " | ".join(f"min_photons {k}" for k in knobs) + " |")
    print("|---|" + "--:|" * len(knobs))
    for name, empty, full, truth in sweep_rows:
        cells = []
        for k in knobs:
            fp = (empty.intensity_photons >= k).sum() / args.frames
            m = evaluate(full.select(full.intensity_photons >= k), truth, 250.0)
            cells.append(f"{fp:.2f} ; {100 * m.jaccard:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
