"""Side by side with Picasso on the same simulated frames (issue 10).

    python benchmarks/picasso_compare.py [--picasso-python ~/.cache/picasso-venv/bin/python]

Picasso (``picassosr``) is never a dependency: it runs in its own environment
(``python -m venv ~/.cache/picasso-venv && ~/.cache/picasso-venv/bin/pip install picassosr``)
through ``benchmarks/_picasso_localize.py``, on the same ADU frames saved as .npy.

Prints, for our phi path (likelihood refinement) and Picasso's least-squares and
maximum-likelihood fits: matched, Jaccard, RMSE (250 nm tolerance), RMSE / CRLB per axis on
isolated emitters, seconds per frame (ours at the default detection knob and at 100
photons); and the coordinate convention check: our Picasso
export (``io/picasso.py``: x = x_nm / pixel - 0.5) against Picasso's own x, y for the
same spots (mean difference in nm; 0 when the conventions agree). Picasso's net-gradient
threshold is swept on the dense set and the best Jaccard is reported (its time excludes
the numba compilation of the first run). Set OMP_NUM_THREADS; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from calibration import isolated_frames

from smlm_diffusion.analysis import crlb, evaluate
from smlm_diffusion.localizations import Localizations
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.reconstruction.settings import DEFAULT_MIN_PHOTONS
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

PX, SIGMA, READ_NOISE = 108.0, 0.92, 1.4
HELPER = Path(__file__).with_name("_picasso_localize.py")


def picasso(
    python: str, adu: np.ndarray, method: str, thresholds: list[float], box: int = 7
) -> list[tuple[float, Localizations, float]]:
    """Per net-gradient threshold: (threshold, Picasso's localizations in nm with our corner origin, i.e.
    x_nm = (x + 0.5) * pixel, and its seconds without numba compilation)."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        movie = Path(folder) / "movie.npy"
        np.save(movie, adu)
        run = subprocess.run(
            [
                python,
                str(HELPER),
                str(movie),
                str(Path(folder) / "locs_{ng}.csv"),
                "--baseline",
                "100",
                "--sensitivity",
                "1",
                "--gain",
                "1",
                "--box",
                str(box),
                "--min-ng",
                ",".join(f"{t:g}" for t in thresholds),
                "--method",
                method,
                "--warmup",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        reports = json.loads(run.stdout.strip().splitlines()[-1])
        for info in reports if isinstance(reports, list) else [reports]:
            table = np.genfromtxt(info["out"], delimiter=",", names=True, ndmin=1)
            seconds = info["seconds_identify"] + info["seconds_fit"]
            if table.size == 0:
                results.append((info["min_ng"], Localizations.empty(), seconds))
                continue
            results.append(
                (
                    info["min_ng"],
                    Localizations(
                        frame=table["frame"].astype(int) + 1,
                        x_nm=(table["x"] + 0.5) * PX,
                        y_nm=(table["y"] + 0.5) * PX,
                        intensity_photons=table["photons"],
                        uncertainty_xy_nm=table["lpx"] * PX,
                    ),
                    seconds,
                )
            )
    return results


def _uint16(adu: np.ndarray) -> np.ndarray:
    """What a camera writes: the same integer frames for every method."""
    return np.clip(np.round(adu), 0, 65535).astype(np.uint16)


def ours(adu: np.ndarray, min_photons: float = DEFAULT_MIN_PHOTONS) -> tuple[Localizations, float]:
    settings = ReconstructionSettings(
        offset_adu=100.0, posterior=False, device="cpu", read_noise_e=READ_NOISE, min_photons=min_photons
    )
    reconstruct(adu[:2], settings)  # warm-up (imports, model load)
    started = time.perf_counter()
    rec = reconstruct(adu, settings)
    return rec.localizations, time.perf_counter() - started


def row(name: str, locs: Localizations, truth: Localizations, seconds: float, n_frames: int, bound_nm: float | None):
    m = evaluate(locs, truth, 250.0)
    ratio = ""
    if bound_nm is not None and m.true_positives:
        p, t = m.predicted_index, m.true_index
        err = np.r_[locs.x_nm[p] - truth.x_nm[t], locs.y_nm[p] - truth.y_nm[t]]
        ratio = f"{np.sqrt(np.mean(err**2)) / bound_nm:.2f}"
    print(
        f"| {name} | {m.true_positives} / {len(truth)} | {m.jaccard:.3f} | {m.rmse_lateral_nm:.1f} | {ratio} | "
        f"{seconds / n_frames * 1000:.1f} |",
        flush=True,
    )
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picasso-python", default=str(Path.home() / ".cache/picasso-venv/bin/python"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--thresholds", default="150,300,600,1200", help="Picasso min net gradients to sweep")
    args = parser.parse_args()
    if not Path(args.picasso_python).exists():
        sys.exit(f"no Picasso environment at {args.picasso_python}; see this script's docstring")
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; 250 nm tolerance; "
        f"sigma {SIGMA} px, {PX:g} nm pixels, read noise {READ_NOISE} e-"
    )
    thresholds = [float(v) for v in args.thresholds.split(",")]
    sets = []
    for photons, background in ((200.0, 10.0), (1000.0, 10.0), (5000.0, 50.0)):
        sim = isolated_frames(args.frames, photons, background, SIGMA, 500 + int(photons), READ_NOISE)
        bound = crlb(10.5, 10.5, photons, background + READ_NOISE**2, SIGMA, (21, 21))
        sets.append(
            (
                f"isolated {photons:g} ph, bg {background:g}",
                _uint16(sim.adu),
                sim.truth,
                float(np.sqrt((bound["x"] ** 2 + bound["y"] ** 2) / 2) * PX),
            )
        )
    dense = simulate_stack(
        SimulationConfig(
            n_frames=max(args.frames // 4, 5),
            height_px=64,
            width_px=64,
            density_per_um2=2.0,
            photons=1000.0,
            background_photons=10.0,
            psf_sigma_px=SIGMA,
            read_noise_e=READ_NOISE,
            offset_adu=100.0,
            seed=511,
        )
    )
    sets.append(("uniform 2/um^2, 1000 ph, bg 10", _uint16(dense.adu), dense.truth, None))

    print("\n| data | method | matched / truth | Jaccard | RMSE nm | RMSE / CRLB per axis | ms / frame |")
    print("|---|---|--:|--:|--:|--:|--:|")
    convention = []
    for name, adu, truth, bound in sets:
        n = len(adu)
        locs, seconds = ours(adu)
        row(f"{name} | ours (phi + ML fit, min photons {DEFAULT_MIN_PHOTONS:g})", locs, truth, seconds, n, bound)
        low, seconds_low = ours(adu, 100.0)
        row(f"{name} | ours (phi + ML fit, min photons 100)", low, truth, seconds_low, n, bound)
        for method in ("lq", "mle"):
            runs = picasso(args.picasso_python, adu, method, thresholds)
            threshold, theirs, seconds = max(runs, key=lambda r: evaluate(r[1], truth, 250.0).jaccard)
            row(f"{name} | Picasso {method} (min net gradient {threshold:g})", theirs, truth, seconds, n, bound)
            if bound is not None and method == "mle":
                match = evaluate(locs, theirs, 250.0)
                p, t = match.predicted_index, match.true_index
                # our Picasso export's x, y against Picasso's own, for the same spots
                ours_x = locs.x_nm[p] / PX - 0.5
                ours_y = locs.y_nm[p] / PX - 0.5
                convention.append(
                    (
                        name,
                        np.mean(ours_x - (theirs.x_nm[t] / PX - 0.5)) * PX,
                        np.mean(ours_y - (theirs.y_nm[t] / PX - 0.5)) * PX,
                        len(p),
                    )
                )
    print("\nconvention check: our Picasso export minus Picasso's own coordinates, same spots\n")
    print("| data | spots | mean dx nm | mean dy nm |")
    print("|---|--:|--:|--:|")
    for name, dx, dy, count in convention:
        print(f"| {name} | {count} | {dx:+.2f} | {dy:+.2f} |")


if __name__ == "__main__":
    main()
