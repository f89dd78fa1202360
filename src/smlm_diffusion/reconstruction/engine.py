"""The reconstruction engine: stream frames, phi estimate, posterior samples per tile,
LoG localization with per-localization uncertainty, accumulated render.

``ReconstructionRun.events()`` is a generator of ProgressEvents (one per psi batch of
tiles and one per finished frame) while ``run.result`` fills up: the napari worker yields
the events to the GUI; ``reconstruct`` drives it with a progress callback and a stop
check and always returns what was finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import SmlmInputError
from ..localizations import Localizations
from .camera_check import check_camera
from .models_used import choose_psi, full_sampling_warning, pairing_warning, phi_name
from .pictures import render_pixel_for, restrict_kdes
from .refine import (
    FALLBACK_PSF_SIGMA_PX,
    chunk_candidates,
    decide,
    kde_candidates,
    movie_psf_sigma,
    posterior_candidates,
    refine_frame,
    refine_frames,
    refined_psi_input,
    worker_threads,
)
from .settings import FrameResult, ProgressEvent, Reconstruction, ReconstructionSettings

UPSAMPLING = 4
#: the PSF width is measured on the spots of the first frames (at most 200 spots)
PSF_MEASUREMENT_FRAMES = 16
#: the phi path prepares the next chunk ahead only while a chunk's 4x KDEs take at most this
PREFETCH_MAX_BYTES = 512 << 20


def frame_source_shape(stack) -> tuple[int, int, int]:
    """(frames, rows, cols) of an array (2D = one frame) or a lazy stack with ``shape``."""
    shape = tuple(np.shape(stack)) if not hasattr(stack, "shape") else tuple(stack.shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) != 3:
        raise SmlmInputError(f"expected a stack of frames (frames x rows x cols), got an array of shape {shape}")
    if 0 in shape:
        raise SmlmInputError("the stack is empty (it has no frames or no pixels)")
    return shape  # type: ignore[return-value]


def _read(stack, start: int, stop: int) -> np.ndarray:
    if hasattr(stack, "read"):
        return np.asarray(stack.read(start, stop))
    if len(np.shape(stack)) == 2:
        frames = np.asarray(stack, np.float64)[None][start:stop]
    else:  # numpy, memmap or dask: only the requested frames are read
        frames = np.asarray(stack[start:stop], np.float64)
    if not np.isfinite(frames).all():
        raise SmlmInputError(f"frames {start + 1}-{stop} contain NaN or infinite values")
    return frames


def resolve_frames(n_frames: int, frames: tuple[int, int] | None) -> tuple[int, int]:
    start, stop = (0, n_frames) if frames is None else frames
    if not (0 <= start < stop <= n_frames):
        raise SmlmInputError(f"frame range {start + 1}:{stop} is outside the stack's 1:{n_frames} frames")
    return start, stop


class ReconstructionRun:
    """One reconstruction of ``stack``; iterate ``events()``, read ``result`` any time
    (it holds every finished frame, also after a stop or an error)."""

    def __init__(
        self,
        stack,
        settings: ReconstructionSettings | None = None,
        camera_checked: bool = False,
        skip_frames: frozenset[int] = frozenset(),
    ) -> None:
        self.stack = stack
        self.camera_checked = camera_checked  # the settings' camera values were already checked on this movie
        # frames (1-based) a resumed run finished before (reconstruction/resume.py): not redone;
        # a chunk holding some of them is still computed whole, so that its other frames get the
        # same numbers as in an uninterrupted run
        self.skip_frames = frozenset(skip_frames)
        self.settings = settings or ReconstructionSettings()
        self.settings.validate()
        n_frames, self.rows, self.cols = frame_source_shape(stack)
        self.start, self.stop = resolve_frames(n_frames, self.settings.frames)
        r0, r1, c0, c1 = self.settings.region or (0, self.rows, 0, self.cols)
        if not (0 <= r0 < r1 <= self.rows and 0 <= c0 < c1 <= self.cols):
            raise SmlmInputError(f"the region {self.settings.region} is outside the {self.rows}x{self.cols} frame")
        self.region = (r0, r1, c0, c1)
        render_pixel_for((r1 - r0, c1 - c0), self.settings.pixel_size_nm, self.settings.render_pixel_nm)
        self.result: Reconstruction | None = None

    def events(self) -> Iterator[ProgressEvent]:
        return _events(self)


def _events(run: ReconstructionRun) -> Iterator[ProgressEvent]:

    from ..inference.devices import inference_dtype, resolve_device
    from ..inference.phi_path import phi_kde
    from ..inference.posterior import count_tiles, iter_sample_posterior
    from ..inference.sampling_settings import network_evaluations_per_tile, plan_for
    from ..models.normalisation import INPUT_NORMALISATION_V1, estimate_background, normalise_frames
    from ..models.store import scale_calibration

    stack = run.stack
    start, stop = run.start, run.stop
    r0, r1, c0, c1 = run.region
    device = resolve_device(run.settings.device)
    dtype = inference_dtype(device, run.settings.precision)
    started = time.perf_counter()
    if run.camera_checked:
        settings, camera, warnings = run.settings, None, []
    else:
        settings, camera, warnings = check_camera(
            frame_source_shape(stack)[0], run.settings, lambda a, b: _read(stack, a, b)
        )
    maps = _camera_maps(settings, frame_source_shape(stack)[1:], run.region)
    if maps is not None:  # the fits' one read variance; each pixel's excess joins its data and background
        extra_variance, lowest_variance = maps.extra_variance()
        settings = replace(settings, read_noise_e=float(np.sqrt(lowest_variance)))
    camera_s = time.perf_counter() - started
    # "auto": the bundled psi until the first chunk's localizations show a sparse movie (choose_psi)
    auto_psi = settings.posterior and settings.psi_model == "auto"
    psi = cached_model("psi" if auto_psi else settings.psi_model, device) if settings.posterior else None
    phi = cached_model(phi_name(settings.phi_model, psi), device)
    if psi is not None:
        warnings = warnings + pairing_warning(phi, psi) + full_sampling_warning(psi, settings.sampler)
        # the plan this psi samples with (a scaled psi starts from noise), recorded in run.json
        settings = replace(settings, sampler=plan_for(settings.sampler, getattr(psi.module, "target", "kde")))
    kde_scale = float(phi.normalisation["kde_scale"])
    phi_channels = int(phi.module.config.get("in_channels", 1))
    norm = dict(phi.normalisation["input"])  # a psi may read more channels of the frame (the SNR)
    refined = psi is not None and getattr(psi.module, "condition", "phi") == "refined"
    psi_channels = int(getattr(psi.module, "config", {}).get("frame_channels", 0)) if psi is not None else 0
    if psi_channels > phi_channels and not refined:  # a refined psi's third channel comes from the fits
        norm["channels"] = psi_channels
    fit_residual = refined and psi_channels == 4  # its fourth: the fits' Poisson residual
    h, w = r1 - r0, c1 - c0
    result = Reconstruction(
        settings=settings,
        shape_px=(h, w),
        origin_px=(r0, c0),
        device=str(device),
        precision="float32" if dtype is None else "bfloat16",
        render_kde=np.zeros((h * UPSAMPLING, w * UPSAMPLING)),
        render_variance=np.zeros((h * UPSAMPLING, w * UPSAMPLING)) if psi else None,
        frames_requested=stop - start,
    )
    result.camera_estimate = camera.to_dict() if camera is not None else None
    result.psi_model = ("psi" if auto_psi else settings.psi_model) if psi is not None else ""
    result.warnings = warnings
    run.result = result
    result.timings_s["camera_check"] = camera_s
    result.timings_s["load_models"] = time.perf_counter() - started - camera_s
    chunk_frames = settings.frames_per_chunk(h, w)
    if settings.drift != "off":
        result.block_frames = settings.drift_block_frames or block_frames(stop - start, chunk_frames)
    tiles_per_frame = count_tiles(h, w, settings.sampler) if psi else 1
    skipped = sum(1 for f in run.skip_frames if start < f <= stop)
    total = (stop - start - skipped) * tiles_per_frame
    evals_per_tile = network_evaluations_per_tile(settings.sampler, psi.schedule.n_steps) if psi else 0
    done = 0
    timing = {"read": 0.0, "background": 0.0, "phi": 0.0, "psi": 0.0, "localize": 0.0}

    def prepare(chunk_start: int, chunk_stop: int):
        """Read a chunk, its photons, background and phi estimates."""
        t = time.perf_counter()
        adu = _read(stack, chunk_start, chunk_stop)[:, r0:r1, c0:c1]
        if maps is None:
            photons = (adu - settings.offset_adu) / settings.gain_adu_per_photon
        else:
            photons = maps.photons(adu)
        timing["read"] += time.perf_counter() - t
        t = time.perf_counter()
        if norm["kind"] == INPUT_NORMALISATION_V1["kind"]:  # older model files: the frame median
            background = np.median(photons, axis=(1, 2))[:, None, None] * np.ones_like(photons)
        else:
            background = estimate_background(
                photons, norm["background_sigma_px"], read_variance_photons2=norm["read_variance_photons2"]
            )
        timing["background"] += time.perf_counter() - t
        t = time.perf_counter()
        normalised = normalise_frames(photons, norm, background)  # phi reads its own channels
        estimates = phi_kde(phi.module, normalised[:, :phi_channels], device, dtype=dtype)
        timing["phi"] += time.perf_counter() - t
        if maps is not None:  # Huang et al. 2013 through the fits' one read variance (analysis/camera_maps.py)
            photons, background = photons + extra_variance, background + extra_variance
        return photons, background, normalised, estimates

    chunks = [
        (a, min(stop, a + chunk_frames))
        for a in range(start, stop, chunk_frames)
        if not all(f in run.skip_frames for f in range(a + 1, min(stop, a + chunk_frames) + 1))
    ]
    # phi path: the next chunk goes through phi in a thread while this one is localized
    # (torch and most of numpy/scipy release the GIL, so the two cores stay busy)
    # (not for chunks whose 4x KDEs are large: two chunks would be held at once)
    kde_bytes = chunk_frames * h * w * UPSAMPLING**2 * 4
    ahead = ThreadPoolExecutor(1) if psi is None and len(chunks) > 1 and kde_bytes <= PREFETCH_MAX_BYTES else None
    if psi is None and worker_threads() > 1:  # the fits' helper process imports while phi runs
        from .fit_worker import start as start_fit_helper

        start_fit_helper()
    upcoming = None
    try:
        for index, (chunk_start, chunk_stop) in enumerate(chunks):
            prepared = upcoming.result() if upcoming is not None else prepare(chunk_start, chunk_stop)
            upcoming = ahead.submit(prepare, *chunks[index + 1]) if ahead and index + 1 < len(chunks) else None
            photons, background, normalised, estimates = prepared
            measured: dict[int, Localizations] = {}
            if result.psf_sigma_px is None:
                t = time.perf_counter()
                n = PSF_MEASUREMENT_FRAMES
                measured = _measure_psf(result, estimates[:n] / kde_scale, photons[:n], background[:n], chunk_start)
                timing["psf_sigma"] = time.perf_counter() - t
                if auto_psi:
                    psi = choose_psi(
                        result,
                        psi,
                        lambda name: cached_model(name, device),
                        estimates[:n] / kde_scale,
                        photons[:n],
                        background[:n],
                        chunk_start,
                        measured,
                    )
            result.network_evaluations += len(estimates)
            tables = None
            p_values: list[np.ndarray] = []  # every candidate's p-value, one array per frame
            if psi is None:  # phi path: the chunk's candidates and fits in batches, one per thread
                t = time.perf_counter()
                tables = _localize_chunk(
                    estimates / kde_scale,
                    photons,
                    background,
                    chunk_start,
                    measured,
                    result.psf_sigma_px,
                    settings,
                    p_values,
                )
                timing["localize"] += time.perf_counter() - t
            for offset, estimate in enumerate(estimates):
                frame = chunk_start + offset + 1
                if frame in run.skip_frames:
                    continue
                variance = None
                samples = None
                if psi is not None:
                    t = time.perf_counter()
                    condition, frame_input, scale = estimate, normalised[offset], None
                    phi_found = kde_candidates(
                        estimate / kde_scale, photons[offset], background[offset], frame, settings
                    )
                    if refined:  # psi conditioned on the likelihood-refined localizations (models.conditioning)
                        condition, frame_input, scale = refined_psi_input(
                            phi_found,
                            photons[offset],
                            background[offset],
                            frame_input,
                            result.psf_sigma_px,
                            settings,
                            settings.sampler.shift_width * scale_calibration(psi),
                            fit_residual=fit_residual,
                        )
                    steps = iter_sample_posterior(
                        psi.module,
                        psi.schedule,
                        condition,
                        settings.sampler,
                        device,
                        settings.seed,
                        frame,
                        frame_input,
                        dtype,
                        scale,
                    )
                    frame_done = 0
                    while True:
                        try:
                            finished = next(steps)
                        except StopIteration as stopped:
                            samples = stopped.value
                            break
                        frame_done += finished
                        result.network_evaluations += finished * evals_per_tile * settings.sampler.n_samples
                        timing["psi"] += time.perf_counter() - t
                        yield ProgressEvent(done + frame_done, total, None, f"frame {frame}")
                        t = time.perf_counter()
                    timing["psi"] += time.perf_counter() - t
                    mean = samples.mean(axis=0) / kde_scale
                    variance = samples.var(axis=0, ddof=1) / kde_scale**2
                else:
                    mean = estimate / kde_scale
                t = time.perf_counter()
                if tables is not None:
                    locs = tables[offset]
                else:
                    # the posterior path (the phi path has its tables): phi's candidates and the mean's new ones
                    candidates = posterior_candidates(
                        phi_found,
                        kde_candidates(mean, photons[offset], background[offset], frame, settings),
                        settings.match_radius_px,
                        settings.pixel_size_nm,
                    )
                    locs = refine_frame(
                        candidates,
                        photons[offset],
                        background[offset],
                        result.psf_sigma_px,
                        settings,
                        samples,
                        kde_scale,
                        p_values,
                    )
                if settings.kde_support == "localizations":  # the pictures hold what the table holds
                    mean, variance = restrict_kdes(mean, variance, locs, settings.pixel_size_nm, UPSAMPLING)
                locs.x_nm += c0 * settings.pixel_size_nm
                locs.y_nm += r0 * settings.pixel_size_nm
                timing["localize"] += time.perf_counter() - t
                result.frame_tables.append(locs)
                result.frames.append(frame)
                result.candidate_p_values.append(p_values[offset] if tables is not None else p_values.pop())
                result.render_kde += mean
                if variance is not None:
                    result.render_variance += variance
                if result.block_frames:
                    _add_block(result, frame, mean, variance)
                if settings.keep_frame_kdes:
                    result.mean_kdes[frame] = mean.astype(np.float32)
                    if variance is not None:
                        result.variance_kdes[frame] = variance.astype(np.float32)
                done += tiles_per_frame
                yield ProgressEvent(
                    done,
                    total,
                    FrameResult(
                        frame, mean.astype(np.float32), None if variance is None else variance.astype(np.float32), locs
                    ),
                    f"frame {frame}",
                    next_frame_ready=tables is not None and offset + 1 < len(estimates),
                )
        result.completed = True
    finally:
        if ahead is not None:  # a stop or an error: the chunk being prepared is dropped, without
            ahead.shutdown(wait=False, cancel_futures=True)  # waiting (this may run on the GUI thread)
        result.finish_probability()
        t = time.perf_counter()
        result.update_render()
        timing["render"] = time.perf_counter() - t
        result.timings_s.update(timing)
        result.timings_s["total"] = time.perf_counter() - started


def _camera_maps(settings, frame_shape: tuple[int, int], region: tuple[int, int, int, int]):
    """The run's sCMOS maps (``settings.camera_maps``), checked against the frames and cut
    to the region; None without."""
    if not settings.camera_maps:
        return None
    from ..analysis.camera_maps import read_camera_maps

    try:
        maps = read_camera_maps(settings.camera_maps)
    except ValueError as exc:
        raise SmlmInputError(str(exc)) from None
    rows, cols = frame_shape
    if maps.shape != (rows, cols):
        top, left = settings.sensor_origin_px or (None, None)
        if top is None or top + rows > maps.shape[0] or left + cols > maps.shape[1]:
            where = "" if top is None else f" at sensor pixel ({top}, {left}), the region the movie's metadata gives,"
            raise SmlmInputError(
                f"the camera maps are {maps.shape[0]}x{maps.shape[1]} pixels and the movie's frames "
                f"{rows}x{cols}{where} do not fit in them; give maps of the movie's region of the "
                "sensor"
            )
        maps = maps.crop((top, top + rows, left, left + cols))  # full-sensor maps cut to the movie's ROI
    return maps.crop(region)


def _localize_chunk(
    kdes: np.ndarray,
    photons: np.ndarray,
    background: np.ndarray,
    chunk_start: int,
    measured: dict[int, Localizations],
    psf_sigma_px: float,
    settings,
    p_values_out: list | None = None,
) -> list[Localizations]:
    """The phi path's localizations of one chunk: LoG candidates (reusing those found for
    the PSF measurement) and one batched fit per part of consecutive frames, the parts run
    in parallel: the detection in threads (scipy's filters release the GIL), the fits of the
    parts after the first in the helper process (``fit_worker``: the fits hold the GIL);
    then the detection decision over the chunk (``refine.decide``; its candidates' p-values
    go to ``p_values_out``)."""
    from .fit_worker import refine_frames_in_helper

    parallel = worker_threads() > 1

    def part(indices: range) -> list[Localizations]:
        candidates = chunk_candidates(kdes, photons, background, chunk_start, measured, settings, indices)
        job = (
            candidates,
            photons[indices.start : indices.stop],
            background[indices.start : indices.stop],
            psf_sigma_px,
            settings,
            False,
        )  # decided below, over the whole chunk
        tables = refine_frames_in_helper(*job) if parallel and indices.start > 0 else None
        return tables if tables is not None else refine_frames(*job)

    return decide([table for tables in _in_parallel(part, len(kdes)) for table in tables], settings, p_values_out)


#: a chunk's frames are localized in this many parts; fixed, not the thread count, so that
#: every machine batches the same frames together and writes the same numbers
LOCALIZATION_PARTS = 2


def _in_parallel(function, n: int) -> list:
    """``function`` of the LOCALIZATION_PARTS consecutive ranges splitting range(n), run on
    ``worker_threads()`` threads; results in order."""
    bounds = np.linspace(0, n, min(LOCALIZATION_PARTS, n) + 1).round().astype(int)
    parts = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    workers = max(1, min(worker_threads(), len(parts)))
    if workers == 1:
        return [function(part) for part in parts]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, parts))


def block_frames(n_frames: int, chunk_frames: int, max_blocks: int = 32) -> int:
    """Frames per partial render: whole chunks, at most ``max_blocks`` blocks per run."""
    chunks = -(-n_frames // chunk_frames)
    return chunk_frames * max(1, -(-chunks // max_blocks))


def _add_block(result: Reconstruction, frame: int, mean: np.ndarray, variance: np.ndarray | None) -> None:
    block = (frame - 1) // result.block_frames
    if block not in result.render_blocks:
        result.render_blocks[block] = np.zeros(mean.shape, np.float32)
        if variance is not None:
            result.variance_blocks[block] = np.zeros(mean.shape, np.float32)
    result.render_blocks[block] += mean
    if variance is not None:
        result.variance_blocks[block] += variance


_MODELS: dict[tuple, object] = {}


def cached_model(name_or_path: str, device):
    """``load_model``, once per process for the same file and device (a batch worker loads
    each model once; the widget's repeated runs do not reload). Inference never changes a
    model, so sharing it is safe."""
    from ..models.store import BUNDLED, bundled_path, load_model

    path = bundled_path(name_or_path) if str(name_or_path) in BUNDLED else Path(name_or_path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), str(device), stat.st_mtime_ns, stat.st_size)
    except OSError:  # missing: load_model says so in one sentence
        return load_model(name_or_path, device)
    if key not in _MODELS:
        if len(_MODELS) >= 8:
            _MODELS.clear()
        _MODELS[key] = load_model(name_or_path, device)
    return _MODELS[key]


def _measure_psf(
    result: Reconstruction, kdes: np.ndarray, photons: np.ndarray, background: np.ndarray, first_index: int
) -> dict[int, Localizations]:
    """The PSF width for the likelihood fit: given, or measured on the first chunk's spots.
    Returns the candidates it found on phi's KDEs, by frame, for the phi path to reuse."""
    settings = result.settings
    if settings.psf_sigma_px is not None:
        result.psf_sigma_px, result.psf_sigma_source = float(settings.psf_sigma_px), "given"
        return {}
    candidates = [
        c
        for part in _in_parallel(
            lambda frames: [
                kde_candidates(kdes[i], photons[i], background[i], first_index + i + 1, settings) for i in frames
            ],
            len(kdes),
        )
        for c in part
    ]
    sigma, spots = movie_psf_sigma(photons, background, candidates, settings)
    if np.isfinite(sigma):
        result.psf_sigma_px, result.psf_sigma_source = sigma, f"measured on {spots} bright isolated spots"
    else:
        result.psf_sigma_px, result.psf_sigma_source = FALLBACK_PSF_SIGMA_PX, "fallback"
        result.warnings.append(
            f"Too few bright isolated spots ({spots}) in the first frames to measure the PSF "
            f"width; the fit uses {FALLBACK_PSF_SIGMA_PX:g} px (give the PSF sigma to fix it)."
        )
    return {first_index + i + 1: c for i, c in enumerate(candidates)}


def reconstruct(
    stack,
    settings: ReconstructionSettings | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    camera_checked: bool = False,
    skip_frames: frozenset[int] = frozenset(),
) -> Reconstruction:
    """Reconstruct ``stack`` (ADU array, 2D or 3D, or a lazy TiffStack). ``progress`` gets
    every event; when ``should_stop()`` turns true the run stops at the next tile batch and
    the frames finished so far are returned (``completed`` is False). ``camera_checked``:
    the settings' camera values were checked on this movie already (skip the check);
    ``skip_frames``: frames finished by an earlier part of the run (``ReconstructionRun``)."""
    return drive(ReconstructionRun(stack, settings, camera_checked, skip_frames), progress, should_stop)


def drive(
    run,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_computed: bool = False,
) -> Reconstruction | None:
    """Run ``run`` (a ``ReconstructionRun`` or ``resume.ResumedRun``) through its events:
    ``progress`` gets each, and when ``should_stop()`` turns true the run stops, at once or,
    with ``keep_computed``, after the frames already computed (the rest of a phi-path
    chunk). Returns its result (None when stopped before it started)."""
    events = run.events()
    try:
        for event in events:
            if progress is not None:
                progress(event)
            if should_stop is not None and should_stop() and not (keep_computed and event.next_frame_ready):
                break
    finally:
        events.close()
    return run.result
