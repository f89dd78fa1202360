"""The posterior's quality and cost (issue 11): sampler choice, MCMC check, speed.

    python benchmarks/posterior.py --choose [--psi psi]      # sampler grid on validation data
    python benchmarks/posterior.py --mcmc 10 [--psi psi]     # psi's KDE std vs MCMC's (eq. 3)
    python benchmarks/posterior.py --calibrate 20 --psi FILE [--write OUT]  # a psi's scale calibration
    python benchmarks/posterior.py --densities               # the local density --psi auto judges by
    python benchmarks/posterior.py --speed [--psi psi]       # seconds per frame, 16 chains
    python benchmarks/posterior.py --tiles [--psi psi]       # tile core and halo

``--choose`` runs on validation frames (seeds 777-779, never the benchmark seeds of
accuracy.py / calibration.py): for each sampler (start t0 and number of network
evaluations, and the full sampler from N(0, I)) the 2-std coverage of the truth KDE on
signal pixels, the mean posterior variance relative to full sampling (over all pixels, and
split into signal pixels and empty ones), the posterior-mean
Jaccard against phi's, and seconds per frame. ``--mcmc``: isolated emitters at 200 and
1000 photons (20x20 frames, background 10): the per-pixel std of psi's KDE samples against
the std of KDEs rendered through eq. 3 from Metropolis-Hastings samples of theta
(appendix A.4), averaged over the emitter's footprint (the paper's MCMC-vs-DDPM check).
``--speed``: whole ``reconstruct`` calls with the posterior, 16 chains, at 1 emitter/um^2
on 64x64 and 256x256 frames. Set OMP_NUM_THREADS; nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from accuracy import _mix, coverage, signal_pixels

from smlm_diffusion.analysis import evaluate, metropolis_hastings
from smlm_diffusion.inference.devices import PRECISION_CHOICES
from smlm_diffusion.inference.sampling_settings import SamplerSettings, network_evaluations_per_tile
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import CameraModel, SimulationConfig, expected_photons, render_kde, simulate_stack
from smlm_diffusion.simulation.psf import single_emitter_kde_peak

PX = 108.0


def _settings(args, sampler: SamplerSettings | None = None, **kw) -> ReconstructionSettings:
    kw.setdefault("keep_frame_kdes", True)
    s = ReconstructionSettings(
        offset_adu=100.0, device="cpu", phi_model=args.phi, psi_model=args.psi, precision=args.precision, **kw
    )
    if sampler is not None:
        s.sampler = sampler
    return s


TILES: dict = {}  # core_px / halo_px from the command line (--core, --halo)
SHIFT: dict = {}  # shift_width from the command line (--shift-width), for the accelerated samplers


def _sampler(t0: int | str | None, evals: int | None, mix: float | None = None, **kw) -> SamplerSettings:
    """None: full sampling; "auto": the settings' own plan for the psi (plan_for); a number:
    t0 with a stride giving about ``evals`` evaluations; a tuple: those times."""
    kw = {**TILES, **kw}
    if t0 is None:
        return SamplerSettings(mode="full", **kw)
    kw = {**SHIFT, **kw}
    if t0 == "auto":
        return SamplerSettings(variance_mix=mix, **kw)
    if isinstance(t0, tuple):
        return SamplerSettings(times=t0, variance_mix=mix, **kw)
    return SamplerSettings(t0=t0, stride=max(1, round(t0 / evals)), times=None, variance_mix=mix, **kw)


VALIDATION = {
    "val 64x64 1/um^2 1000 ph": dict(
        height_px=64,
        width_px=64,
        density_per_um2=1.0,
        photons=1000.0,
        background_photons=10.0,
        psf_sigma_px=0.92,
        seed=777,
    ),
    "val 32x32 3/um^2 500 ph bg 40": dict(
        height_px=32,
        width_px=32,
        density_per_um2=3.0,
        photons=500.0,
        background_photons=40.0,
        psf_sigma_px=1.2,
        background_structure="gradient",
        seed=778,
    ),
    "val 20x20 disc 200 ph": dict(
        height_px=20,
        width_px=20,
        structure="disc",
        density_per_um2=1.07,
        photons=200.0,
        background_photons=2.0,
        psf_sigma_px=0.92,
        read_noise_e=0.0,
        seed=779,
    ),
    # sparse: the auto psi takes psi-sparse here (local density at most 0.35 per um^2)
    "val 64x64 0.2/um^2 1000 ph": dict(
        height_px=64,
        width_px=64,
        density_per_um2=0.2,
        photons=1000.0,
        background_photons=10.0,
        psf_sigma_px=0.92,
        seed=780,
    ),
    "val 32x32 0.2/um^2 300 ph bg 20": dict(
        height_px=32,
        width_px=32,
        density_per_um2=0.2,
        photons=300.0,
        background_photons=20.0,
        psf_sigma_px=1.2,
        background_structure="gradient",
        seed=781,
    ),
}


def _grid_item(item: str) -> tuple:
    """'t0:evals', 't0:evals:variance_mix', 'auto' (the psi's own plan), 'auto:mix', or
    't1/t2/...' (explicit times) with an optional ':mix'; a mix is one number or one per
    step, 'm1/m2/...'."""
    head, *rest = item.split(":")
    if head == "auto" or "/" in head:  # no evaluation count: what follows is the mix
        start = "auto" if head == "auto" else tuple(int(t) for t in head.split("/"))
        return start, None, _mix(rest[0]) if rest else None
    return int(head), int(rest[0]), _mix(rest[1]) if len(rest) > 1 else None


def _mix_label(mix) -> str:
    return "/".join(f"{m:g}" for m in mix) if isinstance(mix, tuple) else f"{mix:g}"


def choose(args) -> None:
    grid = [(None, 100, None)] + [_grid_item(item) for item in args.grid.split(",")]
    print(
        f"(full sampling on the first {args.full_frames or args.frames} frames; variance / full compares the same frames, "  # noqa: E501 (a table row)
        "coverage and Jaccard of the other rows use all frames)\n"
    )
    print(
        "| validation set | sampler | evals per chain | coverage 2-std (signal) | variance / full | "
        "on signal px | on empty px | Jaccard post / phi | s/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, kw in VALIDATION.items():
        if args.sets and not any(part in name for part in args.sets.split(",")):
            continue
        cfg = SimulationConfig(n_frames=args.frames, offset_adu=100.0, gain_adu_per_photon=1.0, **kw)
        sim = simulate_stack(cfg, with_kde=True)
        phi = reconstruct(sim.adu, _settings(args, posterior=False))
        j_phi = evaluate(phi.localizations, sim.truth, 250.0).jaccard
        full_var = None
        for t0, evals, mix in grid:
            if t0 is None and 0 < args.full_frames < args.frames:
                sub = slice(0, args.full_frames)  # full sampling: 100 evaluations per tile
            else:
                sub = slice(None)
            rec = reconstruct(sim.adu[sub], _settings(args, _sampler(t0, evals, mix)))
            if t0 is None:  # the fast samplers are compared with it on the same frames
                full_frames = list(rec.frames)
            if t0 is None:  # signal pixels: the truth or full sampling's mean above 5 % of a peak
                signal = {f: signal_pixels(sim.kde[f - 1], rec.mean_kdes[f]) for f in full_frames}
            var = np.array([_variance_split(rec.variance_kdes[f], signal[f]) for f in full_frames]).mean(axis=0)
            if t0 is None:
                full_var = var
            sub_sim = type(sim)(
                config=sim.config,
                adu=sim.adu[sub],
                truth=sim.truth.select(np.isin(sim.truth.frame, rec.frames)),
                kde=sim.kde[sub],
            )
            cov, _ = coverage(sub_sim, rec)
            j_post = evaluate(rec.localizations, sub_sim.truth, 250.0).jaccard
            j_phi_sub = (
                evaluate(
                    phi.localizations.select(np.isin(phi.localizations.frame, rec.frames)), sub_sim.truth, 250.0
                ).jaccard
                if t0 is None
                else j_phi
            )
            sampler = rec.settings.sampler  # as the engine resolved it for this psi
            label = (
                "full"
                if t0 is None
                else (
                    f"times {'/'.join(map(str, sampler.times))}"
                    if sampler.times
                    else f"t0 {sampler.t0}, stride {sampler.stride}"
                )
                + f", mix {_mix_label(sampler.variance_mix)}"
            )
            n_evals = network_evaluations_per_tile(sampler, 100)
            ratio = var / full_var
            print(
                f"| {name} [{rec.psi_model}] | {label} | {n_evals:.0f} | {cov:.3f} | {ratio[0]:.3f} | {ratio[1]:.2f} | {ratio[2]:.2f} | "  # noqa: E501 (a table row)
                f"{j_post:.3f} / {j_phi_sub:.3f} | {rec.timings_s['total'] / len(rec.frames):.1f} |",
                flush=True,
            )


def _variance_split(variance: np.ndarray, signal: np.ndarray) -> tuple[float, float, float]:
    """Mean posterior variance of a frame: all pixels, signal pixels, the others (empty)."""
    return float(variance.mean()), float(variance[signal].mean()), float(variance[~signal].mean())


def tiles(args) -> None:
    """Tile core and halo at the chosen sampler: the stitched posterior should not depend on
    them once the halo covers psi's reach; compared with one whole-frame tile."""
    name = "val 64x64 1/um^2 1000 ph"
    cfg = SimulationConfig(n_frames=min(args.frames, 4), offset_adu=100.0, gain_adu_per_photon=1.0, **VALIDATION[name])
    sim = simulate_stack(cfg, with_kde=True)
    print(f"\n{name}: tile core / halo, sampler {args.t0} ({args.evals} evaluations for a numeric t0)\n")
    print(
        "| core px | halo px | coverage 2-std (signal) | variance / one tile | mean |posterior mean - one tile| | s/frame |"  # noqa: E501 (a table row)
    )
    print("|---|---|---|---|---|---|")
    reference = None
    for core, halo in ((64, 0), (64, 8), (32, 8), (32, 4), (24, 4), (20, 4)):
        rec = reconstruct(sim.adu, _settings(args, _sampler(args.t0, args.evals, args.mix, core_px=core, halo_px=halo)))
        var = float(np.mean([rec.variance_kdes[f].mean() for f in rec.frames]))
        means = np.stack([rec.mean_kdes[f] for f in rec.frames])
        if reference is None:
            reference = (var, means)
        cov, _ = coverage(sim, rec)
        diff = float(np.abs(means - reference[1]).mean() / max(reference[1].mean(), 1e-12))
        print(
            f"| {core} | {halo} | {cov:.3f} | {var / reference[0]:.2f} | {diff:.3f} | "
            f"{rec.timings_s['total'] / len(rec.frames):.1f} |",
            flush=True,
        )


def isolated_emitters(args, sampler: SamplerSettings, n: int, seed_offset: int = 0) -> dict[float, tuple]:
    """Per photon level (200, 1000): psi's per-pixel KDE std over MCMC's on each emitter's
    footprint, and psi's positional spread over MCMC's (isolated emitters in 20x20 frames,
    background 10; ``seed_offset`` 0: the benchmark's emitters, others: validation ones)."""
    peak = single_emitter_kde_peak()
    out = {}
    for photons in (200.0, 1000.0):
        rng = np.random.default_rng(31 + int(photons) + seed_offset)
        xy = 10 + rng.uniform(-2, 2, size=(n, 2))
        sigma, background = 0.92, 10.0
        omega = expected_photons(xy[:, :1], xy[:, 1:], np.full((n, 1), photons), (20, 20), sigma, background)
        adu = CameraModel(1.0, 100.0, 0.0).expose(omega, rng)
        rec = reconstruct(adu, _settings(args, sampler, psf_sigma_px=sigma, read_noise_e=0.0))
        ratios, pos = [], []
        for k in range(n):
            result = metropolis_hastings(
                adu[k] - 100.0,
                {"x": xy[k, 0], "y": xy[k, 1], "photons": photons, "background": background},
                sigma,
                free=("x", "y", "photons", "background"),
                n_iterations=3000,
                burn_in=1000,
                n_chains=4,
                seed=k + seed_offset,
            )
            theta = result.samples[::20]
            x = theta[:, result.parameters.index("x")][:, None]
            y = theta[:, result.parameters.index("y")][:, None]
            kdes = render_kde(x, y, np.ones_like(x), (20, 20))
            mcmc_std = kdes.std(axis=0, ddof=1)
            footprint = kdes.mean(axis=0) > 0.05 * peak
            psi_std = np.sqrt(rec.variance_kdes[k + 1])
            ratios.append(psi_std[footprint].mean() / mcmc_std[footprint].mean())
            locs = rec.localizations.select(rec.localizations.frame == k + 1)
            spread = locs.extra.get("posterior_spread_xy_nm") if locs.extra else None
            if spread is not None and len(spread):
                pos.append(float(spread[0]) / (np.sqrt((x.var() + y.var()) / 2) * PX))
        out[photons] = (np.array(ratios), np.array(pos), rec.psi_model)
    return out


def mcmc_check(args) -> None:
    print("| photons | emitters | psi KDE std / MCMC KDE std (median) | (mean) | psi / MCMC position std | psi |")
    print("|---|---|---|---|---|---|")
    for photons, (ratios, pos, model) in isolated_emitters(
        args, _sampler(args.t0, args.evals, args.mix), args.mcmc
    ).items():
        print(
            f"| {photons:.0f} | {args.mcmc} | {np.median(ratios):.2f} | {np.mean(ratios):.2f} | "
            f"{np.median(pos) if len(pos) else float('nan'):.2f} | {model} |",
            flush=True,
        )


def calibrate(args) -> None:
    """A scaled psi's scale calibration: full sampling's per-pixel KDE std against MCMC's (the
    --mcmc measure) on validation emitters (not the --mcmc ones), the factor that brings the
    mean of the two photon levels' medians to 1; ``--write FILE``: a copy of the psi file
    carrying it. (Positions alone would ask for more: psi's samples also vary in amplitude.)"""
    from smlm_diffusion.models.store import calibrate_scale, load_model, scale_calibration

    current = scale_calibration(load_model(args.psi))
    levels = isolated_emitters(args, _sampler(None, None), args.calibrate, seed_offset=1000)
    print("| photons | emitters | full sampling: psi / MCMC position std (median) | KDE std / MCMC (median) |")
    print("|---|---|---|---|")
    for photons, (ratios, pos, _) in levels.items():
        print(f"| {photons:.0f} | {args.calibrate} | {np.median(pos):.3f} | {np.median(ratios):.2f} |")
    factor = current / float(np.mean([np.median(ratios) for ratios, _, _ in levels.values()]))
    print(f"scale calibration: {factor:.3f} (the file's now: {current:.3f})")
    if args.write:
        how = f"benchmarks/posterior.py --calibrate {args.calibrate} --psi {args.psi}"
        print(f"wrote {calibrate_scale(args.psi, args.write, round(factor, 3), how)}")


def densities(args) -> None:
    """What ``--psi auto`` sees: true emitters, localizations and the local density
    (``models_used.local_density``) per um^2 in the first frames of the MCMC check's,
    the accuracy benchmark's and the validation sets (phi path)."""
    from accuracy import dataset

    from smlm_diffusion.reconstruction.models_used import SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2, local_density

    def row(name: str, adu: np.ndarray, truth, **kw) -> None:
        rec = reconstruct(adu, _settings(args, posterior=False, keep_frame_kdes=False, **kw))
        area = adu.shape[1] * adu.shape[2] * (PX / 1000.0) ** 2 * len(adu)
        tables = [rec.localizations.select(rec.localizations.frame == f) for f in rec.frames]
        density = local_density(tables, adu.shape[1:], PX)
        psi = "psi-sparse" if density <= SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2 else "psi"
        print(
            f"| {name} ({len(adu)}) | {len(truth) / area:.2f} | {len(rec.localizations) / area:.2f} | "
            f"{density:.2f} | {psi} |",
            flush=True,
        )

    print("| data (frames) | true emitters /um^2 | localizations /um^2 | local density /um^2 | psi |")
    print("|---|--:|--:|--:|---|")
    for photons in (200.0, 1000.0):
        rng = np.random.default_rng(31 + int(photons))
        xy = 10 + rng.uniform(-2, 2, size=(16, 2))
        omega = expected_photons(xy[:, :1], xy[:, 1:], np.full((16, 1), photons), (20, 20), 0.92, 10.0)
        row(
            f"MCMC check, {photons:.0f} photons",
            CameraModel(1.0, 100.0, 0.0).expose(omega, rng),
            xy,
            psf_sigma_px=0.92,
            read_noise_e=0.0,
        )
    for name, n in (("low", 16), ("paper", 16), ("high", 4)):
        sim = dataset(name, n)
        row(f"accuracy {name}", sim.adu, sim.truth)
    for name, kw in VALIDATION.items():
        for n in (4, 16):
            sim = simulate_stack(SimulationConfig(n_frames=n, offset_adu=100.0, gain_adu_per_photon=1.0, **kw))
            row(name, sim.adu, sim.truth)


def speed(args) -> None:
    print("| frame | emitters/um^2 | frames | seconds/frame | network evaluations |")
    print("|---|---|---|---|---|")
    for side, frames in ((64, 3), (256, 1)):
        cfg = SimulationConfig(
            n_frames=frames + 1,
            height_px=side,
            width_px=side,
            density_per_um2=1.0,
            photons=1000.0,
            background_photons=10.0,
            offset_adu=100.0,
            seed=5,
        )
        sim = simulate_stack(cfg)
        settings = _settings(args, _sampler(args.t0, args.evals, args.mix), keep_frame_kdes=False)
        reconstruct(sim.adu[:1], settings)  # warm-up
        t = time.perf_counter()
        rec = reconstruct(sim.adu[1:], settings)
        per = (time.perf_counter() - t) / frames
        evals = network_evaluations_per_tile(rec.settings.sampler, 100)
        print(f"| {side}x{side} | 1.0 | {frames} | {per:.1f} | {evals} per chain and tile |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phi", default="phi")
    parser.add_argument("--psi", default="auto", help="psi model: auto (as reconstruct), a bundled name or a file")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="the networks' arithmetic (default auto: bfloat16 where the CPU has it natively)",
    )
    parser.add_argument("--choose", action="store_true", help="sampler grid on validation data")
    parser.add_argument("--frames", type=int, default=6, help="validation frames per set (--choose)")
    parser.add_argument(
        "--sets",
        default="",
        help="--choose: only the validation sets whose names contain one of these comma-separated parts (default: all)",
    )
    parser.add_argument(
        "--full-frames",
        type=int,
        default=0,
        help="of those, sampled in full (--choose; default 0: all). Fewer frames are a different "
        "stack, whose fits (PSF sigma from its frames) can differ from the accelerated runs'",
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=None,
        help="sampler variance mix for --mcmc / --speed / --tiles (one number or m1/m2/... per step)",
    )
    parser.add_argument(
        "--grid",
        default="auto,auto:0,100:10,100:5,60:10,60:5",
        help="accelerated samplers to compare (--choose): t0:evaluations[:mix], auto[:mix] (the "
        "settings' plan for this psi), t1/t2/...[:mix] (explicit times)",
    )
    parser.add_argument("--mcmc", type=int, default=0, help="isolated emitters per photon level for the MCMC check")
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        help="validation emitters per photon level for the scale calibration of a scaled psi file",
    )
    parser.add_argument("--write", metavar="FILE", help="with --calibrate: write the psi file with it here")
    parser.add_argument("--densities", action="store_true", help="what --psi auto sees on the benchmark sets")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--tiles", action="store_true", help="tile core and halo at the chosen sampler")
    parser.add_argument("--core", type=int, help="tile core (camera px) for --choose/--mcmc/--speed")
    parser.add_argument("--halo", type=int, help="tile halo (camera px) for --choose/--mcmc/--speed")
    parser.add_argument(
        "--t0",
        default="auto",
        help="sampler for --mcmc / --speed / --tiles: 'auto' (default: the settings' plan for this "
        "psi), a first step t0 (with --evals), or times 't1/t2/...'",
    )
    parser.add_argument("--evals", type=int, default=None, help="network evaluations with a numeric --t0")
    parser.add_argument(
        "--shift-width",
        type=float,
        default=None,
        help="a scaled psi's shift width for the accelerated samplers (default: the plan's own)",
    )
    args = parser.parse_args()
    TILES.update({k: v for k, v in (("core_px", args.core), ("halo_px", args.halo)) if v is not None})
    if args.shift_width is not None:
        SHIFT["shift_width"] = args.shift_width
    if args.t0 != "auto":
        args.t0 = tuple(int(t) for t in args.t0.split("/")) if "/" in args.t0 else int(args.t0)
    if args.evals is None:
        args.evals = max(1, round(SamplerSettings().t0 / SamplerSettings().stride))
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; psi {args.psi}, phi {args.phi}")
    for wanted, task in (
        (args.choose, choose),
        (args.tiles, tiles),
        (args.mcmc, mcmc_check),
        (args.calibrate, calibrate),
        (args.densities, densities),
        (args.speed, speed),
    ):
        if wanted:
            task(args)


if __name__ == "__main__":
    main()
