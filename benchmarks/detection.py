"""Detection as a calibrated test, on frames the models never saw (phi path, defaults).

    python benchmarks/detection.py [--frames 20] [--false-alarm P] [--seed K] [--null] [--posterior-frames N]

Prints, each row on newly drawn 128x128 frames (108 nm pixels, gain 1, offset 100, read
noise 1.5 e-, backgrounds from ``benchmarks/background.py``'s held-out generators):

1. background-only frames (flat 2/50/250/500 photons/px and structured): false
   localizations per frame and the emitter mass per frame of the KDE render;
2. recall / precision / Jaccard against brightness, background and PSF width, the two
   target rows first (200 photons on 2/px at 0.5/um^2; 1000 photons on 250/px at 0.3/um^2),
   a sparse 256x256 row (49 emitters on a bright cell), and the share of the KDE mass
   within 2 camera pixels of a true emitter, with and without the KDE support;
3. the reliability of the ``probability`` column: rows of every condition with
   ``false_alarm`` 1 (no cut), binned by probability, the share that are real;
4. the precision render of one site localized in 100 frames against its scatter;
5. degenerate fits: a movie run with the gain stated 4x too low and too high; rows with
   ``fit_ok`` = 1 and ``uncertainty_xy`` above a camera pixel (none allowed);
6. the knob against false localizations and dim recall;
7. ``--null``: the test statistic at background-only candidates against the null model
   ``p_value`` uses (``c chi^2_k`` by PSF width: moments, 99 % quantile, share of p-values
   below 1e-3 and 1e-4), per background and PSF width;
8. ``--posterior-frames N``: the probability column on the posterior path.

``--only 7 8`` prints only those tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
import background as bg  # noqa: E402  (the held-out background generators)

from smlm_diffusion.analysis import evaluate  # noqa: E402
from smlm_diffusion.analysis.detection import null_scale_and_dof  # noqa: E402
from smlm_diffusion.analysis.metrics import match_points  # noqa: E402
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct  # noqa: E402
from smlm_diffusion.reconstruction.settings import DEFAULT_FALSE_ALARM  # noqa: E402
from smlm_diffusion.simulation import CameraModel  # noqa: E402

EMPTY_ROWS = {
    "flat 2": bg.flat(2),
    "flat 50": bg.flat(50),
    "flat 250": bg.flat(250),
    "flat 500": bg.flat(500),
    "gradient 10->150": bg.gradient,
    "two blobs on 20": bg.two_blobs,
    "disc cell 120/5": bg.disc_cell(),
    "beam 5->150": bg.beam,
    "fringes 20-80": bg.fringes,
    "cell 300/10": bg.disc_cell(300.0, 10.0),
}
#: (name, background, photons, density /um^2, PSF sigma px)
EMITTER_ROWS = [
    ("target: 200 ph on 2/px, 0.5/um^2", bg.flat(2), 200.0, 0.5, 0.92),
    ("target: 1000 ph on 250/px, 0.3/um^2", bg.flat(250), 1000.0, 0.3, 0.92),
    ("100 ph on 0/px", bg.flat(0.0), 100.0, 0.5, 0.92),
    ("200 ph on 50/px", bg.flat(50), 200.0, 0.5, 0.92),
    ("500 ph on 500/px", bg.flat(500), 500.0, 0.5, 0.92),
    ("5000 ph on cell 300/10", bg.disc_cell(300.0, 10.0), 5000.0, 0.5, 0.92),
    ("50000 ph on gradient", bg.gradient, 50000.0, 0.3, 0.92),
    ("1000 ph on fringes, sigma 0.7", bg.fringes, 1000.0, 0.5, 0.7),
    ("1000 ph on blobs, sigma 1.3", bg.two_blobs, 1000.0, 0.5, 1.3),
    ("2000 ph on 100/px, sigma 1.6", bg.flat(100), 2000.0, 0.5, 1.6),
]


def settings(sigma: float, false_alarm: float, **changes) -> ReconstructionSettings:
    base = dict(
        pixel_size_nm=bg.PIXEL_NM,
        offset_adu=100.0,
        gain_adu_per_photon=1.0,
        posterior=False,
        device="cpu",
        psf_sigma_px=sigma,
        read_noise_e=1.5,
        drift="off",
        false_alarm=false_alarm,
    )
    return ReconstructionSettings(**{**base, **changes})


def draw(make, n_frames, density, seed, photons=1000.0, sigma=0.92, camera=bg.CAMERA):
    bg.PSF_SIGMA = sigma  # the generator reads the module's PSF width
    return bg.frames(make, n_frames, density, seed, photons, camera)


def real_mask(locs, truth, tolerance_nm=250.0) -> np.ndarray:
    """True for the rows matched one-to-one to a true emitter of their frame."""
    real = np.zeros(len(locs), bool)
    for frame in np.unique(locs.frame):
        a, b = np.flatnonzero(locs.frame == frame), np.flatnonzero(truth.frame == frame)
        if len(b):
            i, _, _ = match_points(np.c_[locs.x_nm[a], locs.y_nm[a]], np.c_[truth.x_nm[b], truth.y_nm[b]], tolerance_nm)
            real[a[i]] = True
    return real


def empty_table(args) -> None:
    print("\n### Background-only frames (no emitters)\n")
    print("| background | false locs / frame | KDE render mass / frame (emitters) | frames/s |")
    print("|---|--:|--:|--:|")
    for i, (name, make) in enumerate(EMPTY_ROWS.items()):
        stack, _ = draw(make, args.frames, 0.0, args.seed + i)
        started = time.perf_counter()
        rec = reconstruct(stack, settings(0.92, args.false_alarm))
        rate = args.frames / (time.perf_counter() - started)
        kde = rec.render_kde if getattr(rec, "render_kde", None) is not None else rec.render
        print(f"| {name} | {len(rec.localizations) / args.frames:.2f} | {kde.sum() / args.frames:.2f} | {rate:.1f} |")


def mass_near_emitters(rec, truth, radius_px: float = 2.0) -> float:
    """Share of the frames' KDE mass (``keep_frame_kdes``) within ``radius_px`` camera pixels
    of a true emitter of the same frame."""
    from smlm_diffusion.reconstruction.pictures import support_weights

    near = total = 0.0
    for frame, kde in rec.mean_kdes.items():
        t = truth.select(truth.frame == frame)
        xy = t.xy_px(bg.PIXEL_NM)
        mask = support_weights(xy[:, 0], xy[:, 1], np.ones(len(t)), kde.shape, 4, radius_px) > 0
        near += float(kde[mask].sum())
        total += float(kde.sum())
    return near / total if total > 0 else float("nan")


def emitter_table(args) -> list:
    print("\n### Emitters on backgrounds and PSF widths outside the training set's typical ones\n")
    print(
        "| frames | recall | precision | Jaccard | RMSE nm | false locs / frame | KDE mass near emitters % | "
        "same, kde_support everywhere % |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    pooled = []
    rows = [(name, make, photons, density, sigma, bg.SIDE) for name, make, photons, density, sigma in EMITTER_ROWS]
    rows.append(
        (
            "sparse 256x256: 49 emitters on cell 300/10",
            bg.disc_cell(300.0, 10.0),
            1000.0,
            49 / (256 * bg.PIXEL_NM / 1000) ** 2,
            0.92,
            256,
        )
    )
    for i, (name, make, photons, density, sigma, side) in enumerate(rows):
        bg.SIDE = side
        stack, truth = draw(
            make, args.frames if side <= 128 else max(2, args.frames // 4), density, args.seed + 100 + i, photons, sigma
        )
        rec = reconstruct(stack, settings(sigma, args.false_alarm, keep_frame_kdes=True))
        raw = reconstruct(stack, settings(sigma, args.false_alarm, keep_frame_kdes=True, kde_support="everywhere"))
        every = reconstruct(stack, settings(sigma, 1.0)).localizations  # every candidate, for the reliability
        bg.SIDE = 128
        pooled.append((every.extra["probability"], real_mask(every, truth)))
        locs = rec.localizations
        m = evaluate(locs, truth, 250.0)
        false = (~real_mask(locs, truth)).sum() / len(rec.frames)
        print(
            f"| {name} | {m.recall:.3f} | {m.precision:.3f} | {100 * m.jaccard:.1f} | {m.rmse_lateral_nm:.1f} | "
            f"{false:.2f} | {100 * mass_near_emitters(rec, truth):.1f} | {100 * mass_near_emitters(raw, truth):.1f} |"
        )
    return pooled


def render_table(args) -> None:
    """A bright isolated site localized in every frame: the precision render's spread
    against the scatter of its localizations (``--render-pixel 1``)."""
    print("\n### The precision render of one site localized in every frame (render pixel 1 nm)\n")
    print(
        "| photons | frames | localizations | scatter nm | median uncertainty nm | render spread nm | "
        "ratio | KDE render spread nm |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    side = bg.SIDE
    for photons in (2000.0, 10000.0):
        bg.SIDE = 16
        rng = np.random.default_rng(args.seed + 700)
        x0, y0 = rng.uniform(7, 9, 2)
        stack = []
        for _ in range(100):
            from smlm_diffusion.simulation import expected_photons

            omega = expected_photons(np.array([[x0]]), np.array([[y0]]), np.array([[photons]]), (16, 16), 0.92, 2.0)[0]
            stack.append(np.clip(np.rint(bg.CAMERA.expose(omega, rng)), 0, 65535))
        bg.SIDE = side
        rec = reconstruct(np.stack(stack), settings(0.92, args.false_alarm, render_pixel_nm=1.0))
        locs = rec.localizations
        scatter = np.sqrt((locs.x_nm.var() + locs.y_nm.var()) / 2)
        image = rec.render
        rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
        total = image.sum()
        mx, my = (image * cols).sum() / total, (image * rows).sum() / total
        spread = np.sqrt((image * ((cols - mx) ** 2 + (rows - my) ** 2)).sum() / total / 2) * rec.render_pixel_nm
        kde = rec.render_kde
        kr, kc = np.mgrid[0 : kde.shape[0], 0 : kde.shape[1]] + 0.5
        kt = kde.sum()
        kx, ky = (kde * kc).sum() / kt, (kde * kr).sum() / kt
        kde_spread = np.sqrt((kde * ((kc - kx) ** 2 + (kr - ky) ** 2)).sum() / kt / 2) * bg.PIXEL_NM / 4
        print(
            f"| {photons:g} | 100 | {len(locs)} | {scatter:.2f} | {np.median(locs.uncertainty_xy_nm):.2f} | "
            f"{spread:.2f} | {spread / scatter:.2f} | {kde_spread:.1f} |"
        )


def knob_table(args) -> None:
    """The false-alarm knob against false localizations on background-only frames and the
    recall of dim emitters: the default's choice."""
    knobs = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    print("\n### The knob: false locs / frame on background-only frames ; recall of dim emitters\n")
    print("| frames | " + " | ".join(f"false_alarm {k:g}" for k in knobs) + " |")
    print("|---|" + "--:|" * len(knobs))
    cases = [
        ("flat 250, empty", bg.flat(250), 0.0, 1000.0),
        ("cell 300/10, empty", bg.disc_cell(300.0, 10.0), 0.0, 1000.0),
        ("fringes, empty", bg.fringes, 0.0, 1000.0),
        ("200 ph on 50/px", bg.flat(50), 0.5, 200.0),
        ("500 ph on 500/px", bg.flat(500), 0.5, 500.0),
    ]
    for i, (name, make, density, photons) in enumerate(cases):
        stack, truth = draw(make, args.frames, density, args.seed + 900 + i, photons)
        locs = reconstruct(stack, settings(0.92, 1.0)).localizations
        cells = []
        for k in knobs:
            kept = locs.select(locs.extra["p_value"] <= k)
            if density == 0:
                cells.append(f"{len(kept) / args.frames:.2f}")
            else:
                cells.append(f"{evaluate(kept, truth, 250.0).recall:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def reliability_table(pooled) -> None:
    probability = np.concatenate([p for p, _ in pooled])
    real = np.concatenate([r for _, r in pooled])
    print("\n### Reliability of `probability` (all candidates of the emitter rows, no cut)\n")
    print("| probability bin | rows | mean probability | share real | difference |")
    print("|---|--:|--:|--:|--:|")
    edges = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001]
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (probability >= lo) & (probability < hi)
        if inside.sum() == 0:
            continue
        mean, share = probability[inside].mean(), real[inside].mean()
        print(f"| {lo:.2f}-{min(hi, 1):.2f} | {inside.sum()} | {mean:.3f} | {share:.3f} | {share - mean:+.3f} |")


def degenerate_table(args) -> None:
    print("\n### Degenerate fits: the gain stated wrongly (true 3 ADU/photon, 1000 ph on gradient, 1/um^2)\n")
    print(
        "| stated gain | rows | fit_ok = 1 with uncertainty_xy > 1 camera px | flagged rows left out | max uncertainty nm |"  # noqa: E501 (a table row)
    )
    print("|--:|--:|--:|--:|--:|")
    camera = CameraModel(gain_adu_per_photon=3.0, offset_adu=100.0, read_noise_e=1.5)
    stack, _ = draw(bg.gradient, args.frames, 1.0, args.seed + 300, camera=camera)
    for gain in (0.75, 3.0, 12.0):
        rec = reconstruct(stack, settings(0.92, args.false_alarm, gain_adu_per_photon=gain, keep_flagged=True))
        locs = rec.localizations
        bad = (locs.extra["fit_ok"] == 1) & ~(locs.uncertainty_xy_nm <= bg.PIXEL_NM)
        left_out = ~np.isin(locs.extra["fit_flag"], (0, 2))
        print(
            f"| {gain:g} | {(~left_out).sum()} | {bad.sum()} | {left_out.sum()} | "
            f"{np.nanmax(locs.uncertainty_xy_nm[~left_out], initial=0):.0f} |"
        )


def null_table(args) -> None:
    print("\n### The statistic at background-only candidates against its null model c chi^2_k\n")
    print(
        "| background | PSF sigma px | candidates | mean | variance | model mean | model variance | q99 | "
        "model q99 | share p <= 1e-3 | share p <= 1e-4 |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = [(f"flat {level}", bg.flat(level), sigma) for sigma in (0.7, 0.92, 1.15, 1.4, 1.6) for level in (2, 50, 500)]
    rows += [
        ("disc cell 120/5", bg.disc_cell(), 0.92),
        ("cell 300/10", bg.disc_cell(300.0, 10.0), 0.92),
        ("fringes 20-80", bg.fringes, 0.92),
        ("gradient 10->150", bg.gradient, 1.3),
    ]
    for i, (name, make, sigma) in enumerate(rows):
        stack, _ = draw(make, 2 * args.frames, 0.0, args.seed + 500 + i, sigma=sigma)
        locs = reconstruct(stack, settings(sigma, 1.0, keep_flagged=True)).localizations
        t, p = locs.extra["detection_statistic"], locs.extra["p_value"]
        c, k = null_scale_and_dof(sigma)
        q99 = np.quantile(t, 0.99) if len(t) else np.nan
        print(
            f"| {name} | {sigma:g} | {len(t)} | {t.mean():.2f} | {t.var():.2f} | {c * k:.2f} | {2 * c * c * k:.2f} | "
            f"{q99:.1f} | {c * stats.chi2.ppf(0.99, k):.1f} | {np.mean(p <= 1e-3):.4f} | {np.mean(p <= 1e-4):.4f} |"
        )


def posterior_table(args) -> None:
    """The probability column on the posterior path: the test's, the test's times the
    share of posterior samples holding the row, and that share alone, against the share
    of real emitters (every candidate: ``false_alarm`` 1)."""
    from smlm_diffusion.simulation import SimulationConfig, simulate_stack

    print("\n### The posterior path: candidate probabilities against the share of real emitters\n")
    test, fraction, real = [], [], []
    for density, photons, background, seed in ((2.0, 1000.0, 10.0, 4), (2.0, 300.0, 50.0, 5), (0.5, 200.0, 50.0, 6)):
        sim = simulate_stack(
            SimulationConfig(
                n_frames=args.posterior_frames,
                height_px=64,
                width_px=64,
                density_per_um2=density,
                photons=photons,
                background_photons=background,
                structure="uniform",
                blinking=False,
                offset_adu=100.0,
                seed=seed,
                read_noise_e=1.5,
            ),
            quantize=True,
        )
        rec = reconstruct(
            sim.adu,
            ReconstructionSettings(device="cpu", psf_sigma_px=1.0, drift="off", false_alarm=1.0, read_noise_e=1.5),
        )
        locs = rec.localizations
        test.append(locs.extra["probability"])
        fraction.append(locs.extra["sample_fraction"])
        real.append(real_mask(locs, sim.truth))
    test, fraction, real = (np.concatenate(v) for v in (test, fraction, real))
    edges = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001]
    print("| probability | " + " | ".join(f"{lo:g}-{min(hi, 1):g}" for lo, hi in zip(edges[:-1], edges[1:])) + " |")
    print("|---|" + "--:|" * (len(edges) - 1))
    for name, values in (
        ("the test's (rows : mean : share real)", test),
        ("the test's x sample_fraction", test * fraction),
        ("sample_fraction alone", fraction),
    ):
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = (values >= lo) & (values < hi)
            cells.append(
                f"{inside.sum()} : {values[inside].mean():.2f} : {real[inside].mean():.2f}" if inside.any() else "0"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--false-alarm", type=float, default=DEFAULT_FALSE_ALARM)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--null", action="store_true", help="also the statistic's null distribution")
    parser.add_argument("--only", type=int, nargs="+", metavar="TABLE", help="print only these tables (1-8)")
    parser.add_argument(
        "--posterior-frames",
        type=int,
        default=0,
        help="also the probability column on the posterior path, on this many 64x64 frames per row",
    )
    args = parser.parse_args()
    import torch

    print(
        f"false_alarm={args.false_alarm:g}, {args.frames} frames of 128x128 per row, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; tolerance 250 nm"
    )
    wanted = set(args.only or range(1, 7)) | ({7} if args.null else set()) | ({8} if args.posterior_frames else set())
    if 1 in wanted:
        empty_table(args)
    if wanted & {2, 3}:
        reliability_table(emitter_table(args))
    if 4 in wanted:
        render_table(args)
    if 5 in wanted:
        degenerate_table(args)
    if 6 in wanted:
        knob_table(args)
    if 7 in wanted:
        null_table(args)
    if 8 in wanted:
        args.posterior_frames = args.posterior_frames or 6
        posterior_table(args)


if __name__ == "__main__":
    main()
