"""``smlm-diffusion reconstruct IN.tif --out DIR``: localizations with uncertainties, the
posterior-mean render and its variance, and a run record."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import SmlmInputError
from ..inference.devices import PRECISION_CHOICES
from ..io import atomic_path, open_stack, write_localizations_csv, write_stack
from ..io.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_checkpoint, save_checkpoint
from ..io.curves import plot_drift, write_frc
from ..reconstruction import ReconstructionSettings
from ..reconstruction.engine import ReconstructionRun, drive
from ..reconstruction.pictures import KDE_SUPPORT_CHOICES
from ..reconstruction.postprocess import postprocess
from ..reconstruction.resume import ResumedRun
from ..reconstruction.settings import DEFAULT_FALSE_ALARM, DEFAULT_MIN_PHOTONS, Reconstruction
from .interrupt import StopOnSignals

DEFAULT_PIXEL_SIZE_NM, DEFAULT_OFFSET_ADU, DEFAULT_GAIN = 108.0, 100.0, 1.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct a raw SMLM stack (KDE, variance, localizations)",
        description="Tile-by-tile posterior reconstruction with the bundled models. Camera "
        "values default to the TIFF's metadata, then to 108 nm, gain 1, offset 100.",
    )
    p.add_argument(
        "input",
        metavar="IN.tif",
        help="raw stack (frames x rows x cols, ADU): a TIFF (also OME / "
        "Micro-Manager), a Picasso .raw with its .yaml or a .dax with "
        "its .inf",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--pixel-size", type=float, help="camera pixel size in nm")
    p.add_argument("--gain", type=float, help="camera gain, ADU per photon")
    p.add_argument("--offset", type=float, help="camera offset in ADU")
    p.add_argument(
        "--camera",
        choices=("given", "auto"),
        default="given",
        help="given: use --gain/--offset (or the TIFF metadata); auto: estimate them from the movie's "
        "background (photon transfer). The estimate is always written to run.json, and a stated "
        "gain more than 2x off it is reported (default given)",
    )
    p.add_argument(
        "--camera-maps",
        metavar="MAPS.tif",
        help="sCMOS per-pixel offset, read variance and gain (calibrate-camera's output, the movie's "
        "size): used in the likelihood, the detection test and the background instead of --gain, "
        "--offset and --read-noise",
    )
    p.add_argument("--emccd", action="store_true", help="EMCCD camera: excess noise factor 2 in the gain estimate")
    p.add_argument(
        "--false-alarm",
        type=float,
        default=DEFAULT_FALSE_ALARM,
        metavar="P",
        help="detection: keep a candidate when its likelihood-ratio test against 'background only' on "
        "the raw frame has a p-value of at most P, the chance that a background-only candidate "
        f"passes (default {DEFAULT_FALSE_ALARM:g})",
    )
    p.add_argument(
        "--min-photons",
        type=float,
        default=DEFAULT_MIN_PHOTONS,
        help="a second detection knob: also require this many photons above the local background "
        f"(default {DEFAULT_MIN_PHOTONS:g}: the test alone decides)",
    )
    p.add_argument(
        "--keep-flagged",
        action="store_true",
        help="keep fits flagged as failed, imprecise (worse than a camera pixel) or with runaway "
        "photons in the table (fit_flag column; left out by default)",
    )
    p.add_argument(
        "--render-pixel",
        type=float,
        default=0.0,
        metavar="NM",
        help="pixel of render.tif, the localizations drawn each as wide as its precision (default: a "
        "tenth of a camera pixel)",
    )
    p.add_argument(
        "--kde-support",
        choices=KDE_SUPPORT_CHOICES,
        default=KDE_SUPPORT_CHOICES[0],
        help="where the KDE pictures (render_kde.tif, render_variance.tif) keep mass: near accepted "
        "localizations, weighted by their probability (default), or everywhere as the networks "
        "give it",
    )
    p.add_argument(
        "--psf-sigma",
        type=float,
        metavar="PX",
        help="PSF sigma in camera pixels for the likelihood fit (default: measured on the movie's bright "
        "isolated spots)",
    )
    p.add_argument("--read-noise", type=float, default=1.4, help="camera read noise, electrons rms (default 1.4)")
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="keep the KDE positions (no maximum-likelihood refinement on the raw frames)",
    )
    p.add_argument("--frames", metavar="A:B", help="frames A to B, counted from 1, inclusive (default all)")
    p.add_argument("--samples", type=int, default=16, help="posterior samples (chains) per tile (default 16)")
    p.add_argument("--no-posterior", action="store_true", help="phi only: no sampling, no uncertainties")
    p.add_argument(
        "--full-sampling",
        action="store_true",
        help="full ancestral sampling from t=T instead of the accelerated sampler (slow)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="the networks' arithmetic: auto = bfloat16 on a CPU that has it natively (AVX512-BF16 or "
        "AMX: phi 2.4x and psi 1.2-1.4x faster, the same accuracy and coverage), float32 elsewhere "
        "(default auto)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--phi", default="phi", help="phi model: bundled name or file (default phi)")
    p.add_argument(
        "--psi",
        default="auto",
        help="psi model: bundled name (psi, psi-sparse) or file; auto (default): psi-sparse when the "
        "first frames are sparse (a local density of at most 0.35 emitters per um^2 around their "
        "localizations; it was trained on 0.05-0.5 per um^2), else psi (trained on 0.05-4)",
    )
    p.add_argument(
        "--drift",
        choices=("auto", "off"),
        default="auto",
        help="drift correction by redundant cross-correlation after the run (auto: when the movie has "
        "enough localizations, else one sentence says why not; default auto)",
    )
    p.add_argument(
        "--link", action="store_true", help="also link blinks over consecutive frames into localizations_linked.csv"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run in --out (same movie, same options): its finished frames "
        "are kept and the rest is computed; the outputs equal an uninterrupted run's",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        metavar="MIN",
        help="write the finished frames to DIR/checkpoint.npz this often, so that a killed run loses at "
        "most this much (Ctrl-C and SIGTERM write them at once; default 5)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask distributed cluster (e.g. tcp://host:8786); every worker must read INPUT "
        "at the same path and have this package installed",
    )
    p.add_argument(
        "--task-frames",
        type=int,
        default=256,
        help="with --scheduler: frames per task (rounded up to whole engine chunks, 16-128 frames "
        "by frame size; default 256)",
    )


def parse_frames(text: str | None, n_frames: int) -> tuple[int, int] | None:
    """'A:B' (1-based, inclusive; either side may be empty) -> 0-based [start, stop)."""
    if text is None:
        return None
    try:
        a, b = text.split(":")
        start = int(a) if a.strip() else 1
        stop = int(b) if b.strip() else n_frames
    except ValueError:
        raise SmlmInputError(f"--frames expects A:B with frame numbers counted from 1, not '{text}'") from None
    if not 1 <= start <= stop <= n_frames:
        raise SmlmInputError(f"frame range {start}:{stop} is outside the stack's frames 1:{n_frames}")
    return start - 1, stop


def settings_from_args(args, stack) -> ReconstructionSettings:
    """The run's settings from the command line, then the TIFF's metadata, then defaults."""
    meta = stack.metadata
    settings = ReconstructionSettings(
        pixel_size_nm=_pick(args.pixel_size, meta.pixel_size_nm, DEFAULT_PIXEL_SIZE_NM),
        offset_adu=_pick(args.offset, meta.offset_adu, DEFAULT_OFFSET_ADU),
        offset_source="given" if args.offset is not None else "metadata" if meta.offset_adu is not None else "default",
        gain_adu_per_photon=_pick(args.gain, meta.gain_adu_per_photon, DEFAULT_GAIN),
        camera=args.camera,
        camera_maps=str(Path(args.camera_maps).resolve()) if args.camera_maps else "",
        sensor_origin_px=sensor_origin(meta, stack.shape[1:]),
        emccd=args.emccd,
        min_photons=args.min_photons,
        false_alarm=args.false_alarm,
        keep_flagged=args.keep_flagged,
        render_pixel_nm=args.render_pixel,
        kde_support=args.kde_support,
        psf_sigma_px=args.psf_sigma,
        read_noise_e=args.read_noise,
        refine=not args.no_refine,
        frames=parse_frames(args.frames, stack.n_frames),
        posterior=not args.no_posterior,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        phi_model=args.phi,
        psi_model=args.psi,
        drift=args.drift,
        link=args.link,
    )
    settings.sampler.n_samples = args.samples
    if args.full_sampling:
        settings.sampler.mode = "full"
    if settings.posterior:
        settings.sampler.validate(100)
    return settings


def sensor_origin(meta, frame_shape: tuple[int, int]) -> tuple[int, int] | None:
    """(row, col) of the movie's first pixel on the sensor, from Micro-Manager's ROI (x, y,
    width, height; unbinned, and only when its size is the frames'), or None."""
    roi = meta.extra.get("sensor_roi_px")
    if roi is None or meta.extra.get("binning", 1) not in (1, None):
        return None
    if (int(roi[3]), int(roi[2])) != tuple(frame_shape):  # the metadata describes other pixels than stored
        return None
    return int(roi[1]), int(roi[0])


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SmlmInputError(f"--out {out} exists and is not a folder; choose a folder for the outputs")
    with open_stack(args.input) as stack:
        settings = settings_from_args(args, stack)
        run_info = json.loads(
            json.dumps(
                {
                    "input": str(Path(args.input).resolve()),
                    "input_bytes": Path(args.input).stat().st_size,
                    "input_shape": list(stack.shape),
                    "requested": settings.to_dict(),
                }
            )
        )  # as the checkpoint reads it back
        previous = None
        if args.resume:
            previous, earlier = load_checkpoint(out)
            check_same_run(earlier, run_info)
            print(
                f"resuming: {len(previous.frames)} of {previous.frames_requested} frames were finished", file=sys.stderr
            )
        out.mkdir(parents=True, exist_ok=True)
        with StopOnSignals() as stop:
            try:
                result = _run(args, stack, settings, previous, stop, out, run_info)
            except KeyboardInterrupt:
                kept = "; its last checkpoint can be resumed (--resume)" if (out / CHECKPOINT_NAME).is_file() else ""
                print(f"\nstopped at once; the frames since the last checkpoint were lost{kept}", file=sys.stderr)
                return 130
        print(file=sys.stderr)
        if result is None:
            print("stopped before the first frame was finished; nothing was written", file=sys.stderr)
            return stop.exit_code()
        if not result.completed:
            return _write_interrupted(out, result, run_info, args, stop)
        save_checkpoint(out, result, run_info)  # an interruption from here on resumes to the post-processing
        try:
            drift, linked, frc = postprocess(result)
        except KeyboardInterrupt:
            print(
                "\ninterrupted during drift, linking and FRC; every frame is in the checkpoint: the same command "
                "with --resume does them",
                file=sys.stderr,
            )
            return 130
        for message in result.warnings:
            print(f"warning: {message}", file=sys.stderr)
        write_outputs(out, result, stack_path=str(args.input), stack_shape=tuple(stack.shape))
        write_postprocessing(out, drift, linked, frc)
        remove_checkpoint(out)
    print(f"{len(result.localizations)} localizations in {len(result.frames)} frames -> {out}/", file=sys.stderr)
    return 0


def _run(args, stack, settings, previous, stop: StopOnSignals, out: Path, run_info: dict) -> Reconstruction | None:
    """The engine (or the cluster) until the movie ends or a signal asks to stop (after the
    frames already computed: on the phi path, the rest of the chunk); the finished frames
    are checkpointed every ``--checkpoint-minutes``."""
    started = time.monotonic()
    if args.scheduler:
        from ..reconstruction.distributed import reconstruct_on_cluster

        def cluster_progress(event) -> None:
            rate = event.done / max(time.monotonic() - started, 1e-9)
            print(f"\r{event.message} on the cluster, {rate:.2f} frames/s", end="", file=sys.stderr, flush=True)

        # workers resolve paths on their own machines: give them absolute ones
        for key in ("phi_model", "psi_model"):
            if Path(getattr(settings, key)).is_file():
                setattr(settings, key, str(Path(getattr(settings, key)).resolve()))
        return reconstruct_on_cluster(
            str(Path(args.input).resolve()),
            open_stack,
            settings,
            args.scheduler,
            args.task_frames,
            progress=cluster_progress,
            should_stop=stop.requested,
            previous=previous,
            checkpoint=lambda part: save_checkpoint(out, part, run_info),
            checkpoint_s=60 * args.checkpoint_minutes,
        )
    runner = (
        ResumedRun(stack, previous, settings.device) if previous is not None else ReconstructionRun(stack, settings)
    )
    frames_done, last_checkpoint = [0], [time.monotonic()]

    def progress(event) -> None:
        if event.frame_result is None:
            return
        frames_done[0] += 1
        rate = frames_done[0] / max(time.monotonic() - started, 1e-9)
        print(
            f"\r{event.done}/{event.total} ({100 * event.done / max(event.total, 1):.0f} %) "
            f"{event.message}, {rate:.2f} frames/s",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if time.monotonic() - last_checkpoint[0] >= 60 * args.checkpoint_minutes:
            save_checkpoint(out, runner.result, run_info)
            last_checkpoint[0] = time.monotonic()

    return drive(runner, progress, stop.requested, keep_computed=True)  # frames already computed are kept


def check_same_run(earlier: dict, now: dict) -> None:
    """``--resume`` goes on only with the movie and the settings the interrupted run had."""
    same_file = earlier.get("input") == now["input"] and earlier.get("input_bytes") == now["input_bytes"]
    if not same_file:
        raise SmlmInputError(
            f"--resume: the interrupted run read {earlier.get('input')}, not this movie; resume with the same movie "
            "or choose another --out"
        )
    if earlier.get("input_shape") != now["input_shape"]:
        raise SmlmInputError(
            f"--resume: the interrupted run read a movie of shape {earlier.get('input_shape')}, "
            f"this one is {now['input_shape']}; resume with the same movie or choose another --out"
        )
    before, after = earlier.get("requested", {}), now["requested"]
    changed = [k for k in sorted(set(before) | set(after)) if k != "device" and before.get(k) != after.get(k)]
    if changed:
        raise SmlmInputError(
            "--resume: the interrupted run had other settings ("
            + ", ".join(f"{k}: {before.get(k)!r} then, {after.get(k)!r} now" for k in changed[:3])
            + "); resume with the same "
            "options or choose another --out"
        )


def _write_interrupted(out: Path, result: Reconstruction, run_info: dict, args, stop: StopOnSignals) -> int:
    """The finished frames' outputs, run.json with ``completed: false``, and the checkpoint
    that ``--resume`` goes on from; post-processing waits for the whole movie."""
    save_checkpoint(out, result, run_info)
    result.postprocessing["interrupted"] = {
        "signal": stop.signal_name,
        "frames_done": len(result.frames),
        "frames_requested": result.frames_requested,
        "resume": f"smlm-diffusion reconstruct {args.input} --out {out} --resume (with the same options)",
        "postprocessing": "drift, linking and FRC run when the whole movie is done",
    }
    write_outputs(out, result, stack_path=str(args.input), stack_shape=tuple(run_info["input_shape"]))
    print(
        f"{stop.signal_name or 'stopped'}: {len(result.localizations)} localizations of {len(result.frames)} of "
        f"{result.frames_requested} frames written to {out}/; go on with the same command and --resume",
        file=sys.stderr,
    )
    return stop.exit_code()


def _maps_record(path: str) -> dict | None:
    """run.json's account of the sCMOS maps a run used (None without)."""
    if not path:
        return None
    from ..analysis.camera_maps import read_camera_maps

    return {
        "file": path,
        "used_for": "offset, gain and read variance of every pixel (they replace offset_adu, "
        "gain_adu_per_photon and read_noise_e)",
        **read_camera_maps(path).summary(),
    }


def _offset_source(settings, estimate: dict | None) -> str:
    """Where run.json's offset came from, in words."""
    if settings.camera == "auto" and estimate and estimate["method"] == "photon-transfer line":
        return "estimated from the movie (photon-transfer line)"
    return {
        "given": "given (--offset)",
        "metadata": "the TIFF's metadata",
        "default": "the default: not known, this movie cannot tell it",
    }.get(settings.offset_source, settings.offset_source)


def _pick(*values) -> float:
    return float(next(v for v in values if v is not None))


def write_postprocessing(out: Path, drift, linked, frc) -> None:
    """drift.csv and drift.png, localizations_linked.csv, frc.csv, where computed."""
    if drift is not None:
        table = np.c_[drift.frames, drift.x_nm, drift.y_nm]
        with atomic_path(out / "drift.csv") as tmp:
            np.savetxt(
                tmp,
                table,
                delimiter=",",
                fmt=["%d", "%.3f", "%.3f"],
                header="frame,drift x [nm],drift y [nm]",
                comments="",
            )
        plot_drift(out / "drift.png", drift)
    if linked is not None:
        write_localizations_csv(out / "localizations_linked.csv", linked)
    if frc is not None:
        write_frc(out, frc)


def detection_record(result: Reconstruction) -> dict:
    """run.json's detection decision and its evidence: the knobs, the test's null model and
    the kept rows' probability and p-value spread, and the rule for flagged fits."""
    from ..analysis.detection import null_scale_and_dof

    s, locs = result.settings, result.localizations
    probability = np.asarray(locs.extra.get("probability", np.zeros(0)), float)
    p_values = np.asarray(locs.extra.get("p_value", np.zeros(0)), float)
    return {
        "test": "likelihood ratio, emitter vs background only, on the raw frame",
        "false_alarm": s.false_alarm,
        "null": "c chi2_k at the PSF width, c = {:.3f}, k = {:.2f}".format(
            *null_scale_and_dof(result.psf_sigma_px or 1.0)
        ),
        "min_photons": s.min_photons,
        "kde_threshold": s.kde_threshold,
        "keep_flagged": s.keep_flagged,
        "rows": len(locs),
        "mean_probability": round(float(probability.mean()), 4) if len(probability) else None,
        "rows_probability_below_0.5": int((probability < 0.5).sum()),
        "max_p_value": float(p_values.max()) if len(p_values) else None,
        "flagged": "fits with fit_flag 1 (failed or ran away), 3 (precision worse than a camera pixel) or 4 "
        "(runaway photons) are " + ("kept" if s.keep_flagged else "left out (--keep-flagged keeps them)"),
    }


def write_outputs(out: Path, result: Reconstruction, stack_path: str, stack_shape: tuple) -> None:
    """localizations.csv, render.tif (precision render), render_kde.tif and render_variance.tif
    (4x grid) and run.json, each atomically."""
    s = result.settings
    write_localizations_csv(out / "localizations.csv", result.localizations)
    if result.render is None:
        result.update_render()
    info = {
        "content": "the localizations, each a Gaussian as wide as its precision (localizations per pixel)",
        "frames": len(result.frames),
        "render_pixel_nm": result.render_pixel_nm,
    }
    write_stack(out / "render.tif", result.render[None], result.render_pixel_nm, dtype=np.float32, extra_info=info)
    kde_px = s.pixel_size_nm / 4
    info = {
        "content": "sum over frames of the posterior-mean KDE (emitters per 4x pixel)",
        "frames": len(result.frames),
        "kde_support": s.kde_support,
    }
    write_stack(
        out / "render_kde.tif", result.render_kde.astype(np.float32)[None], kde_px, dtype=np.float32, extra_info=info
    )
    if result.render_variance is not None:
        info = {**info, "content": "sum over frames of the per-pixel posterior variance of the KDE"}
        write_stack(
            out / "render_variance.tif",
            result.render_variance.astype(np.float32)[None],
            kde_px,
            dtype=np.float32,
            extra_info=info,
        )
    import torch

    record = {
        "napari_smlm_diffusion": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "input": stack_path,
        "input_shape": list(stack_shape),
        "settings": s.to_dict(),
        "device": result.device,
        "precision": result.precision,
        "completed": result.completed,
        "frames_done": len(result.frames),
        "frames_requested": result.frames_requested,
        "localizations": len(result.localizations),
        "network_evaluations": result.network_evaluations,
        "detection": detection_record(result),
        "pictures": {"render_pixel_nm": result.render_pixel_nm, "kde_support": s.kde_support},
        "camera": {
            "used": {
                "offset_adu": s.offset_adu,
                "gain_adu_per_photon": s.gain_adu_per_photon,
                "source": "estimated from the movie" if s.camera == "auto" else "given",
                "offset_source": _offset_source(s, result.camera_estimate),
            },
            "maps": _maps_record(s.camera_maps),
            "estimate": result.camera_estimate,
        },
        "psf": {"sigma_px": result.psf_sigma_px, "source": result.psf_sigma_source},
        "psi": {"model": result.psi_model, "choice": result.psi_choice} if result.psi_model else None,
        **result.postprocessing,
        "warnings": list(result.warnings),
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }
    with atomic_path(out / "run.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
