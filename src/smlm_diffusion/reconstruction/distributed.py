"""Batch reconstruction on a Dask distributed cluster (``reconstruct --scheduler ADDRESS``).

The movie is cut into tasks of whole engine chunks (``task_frames``, a multiple of
``settings.chunk_frames``, so every chunk sees the same frames as in a single-machine
run). A first small task on the first chunk checks the camera, measures the PSF width and
(``psi_model="auto"``) chooses psi exactly as a single run does; every task then runs the
ordinary engine with those values fixed, and each worker process loads the models once
(``engine.cached_model``). Results are added up as they arrive and written in frame order:
the localizations equal a single-machine run's with the same seed (posterior noise depends
only on seed, frame and tile), the renders up to the order of summation (float rounding),
and the run record's timings are worker seconds summed over tasks plus the wall time.
Every worker must be able to read the movie at the same path and have this package
installed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from ..errors import SmlmInputError
from .engine import block_frames, frame_source_shape, reconstruct, resolve_frames
from .merge import MergedRuns
from .resume import continuation_settings
from .settings import ProgressEvent, Reconstruction, ReconstructionSettings

#: frames per task by default (whole engine chunks: 16 of 16 frames, 4 of 64)
TASK_FRAMES = 256


def _run_task(
    open_stack,
    stack_path: str,
    settings: ReconstructionSettings,
    camera_checked: bool,
    skip_frames: frozenset[int] = frozenset(),
) -> Reconstruction:
    """One task on a worker: the engine on the task's frames of the movie at ``stack_path``."""
    with open_stack(stack_path) as stack:
        result = reconstruct(stack, settings, camera_checked=camera_checked, skip_frames=skip_frames)
    result.mean_kdes, result.variance_kdes = {}, {}
    result.render = None  # drawn once from the whole table (MergedRuns.finish)
    return result


def task_ranges(start: int, stop: int, task_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """[start, stop) cut into tasks of ``task_frames`` rounded up to whole chunks."""
    size = max(chunk_frames, -(-task_frames // chunk_frames) * chunk_frames)
    return [(a, min(stop, a + size)) for a in range(start, stop, size)]


def reconstruct_on_cluster(
    stack_path: str,
    open_stack,
    settings: ReconstructionSettings,
    scheduler: str,
    task_frames: int = TASK_FRAMES,
    connect_timeout_s: float = 20.0,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    previous: Reconstruction | None = None,
    checkpoint: Callable[[Reconstruction], None] | None = None,
    checkpoint_s: float = 300.0,
) -> Reconstruction:
    """Reconstruct the movie at ``stack_path`` on the Dask cluster at ``scheduler``
    (``tcp://host:8786``; see the module doc). ``open_stack(path)`` opens the movie as a
    context manager (the io layer's ``open_stack``; it travels to the workers by reference). ``progress`` gets
    one event per finished
    task (``done``/``total`` in frames); ``should_stop`` cancels the tasks not yet finished
    and returns the finished ones. ``previous``: an interrupted run of this movie to go on
    with (``resume.py``): only tasks with frames it lacks run, with its resolved values.
    ``checkpoint(result)`` gets the finished tasks put together at most every
    ``checkpoint_s`` seconds (the CLI writes them to disk)."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SmlmInputError(
            "--scheduler needs Dask distributed: pip install 'napari-smlm-diffusion[cluster]'"
        ) from None
    if previous is not None:
        settings = previous.settings
    settings.validate()
    with open_stack(stack_path) as stack:
        n_frames, rows, cols = frame_source_shape(stack)
    start, stop = resolve_frames(n_frames, settings.frames)
    r0, r1, c0, c1 = settings.region or (0, rows, 0, cols)
    # every task chunks the movie as a single run would
    settings = dataclasses.replace(settings, chunk_frames=settings.frames_per_chunk(r1 - r0, c1 - c0))
    try:
        client = Client(scheduler, timeout=f"{connect_timeout_s}s")
    except (OSError, TimeoutError) as exc:
        raise SmlmInputError(f"could not reach the Dask scheduler at {scheduler} ({exc})") from None
    started = time.perf_counter()
    try:
        # the first chunk checks the camera and measures the PSF as a single run does; it is
        # also the first chunk of the result
        if previous is None:
            first_stop = min(stop, start + settings.chunk_frames)
            blocks = block_frames(stop - start, settings.chunk_frames)
            first = dataclasses.replace(settings, frames=(start, first_stop), drift_block_frames=blocks)
            probe = client.submit(_run_task, open_stack, stack_path, first, False, pure=False).result()
            fixed = dataclasses.replace(
                probe.settings,
                camera="given",
                precision=probe.precision,  # every task computes as the first did
                psf_sigma_px=probe.psf_sigma_px,
                psi_model=probe.psi_model or settings.psi_model,
                drift_block_frames=blocks,
            )
            # the run record shows the user's settings with the camera values the check resolved
            used = dataclasses.replace(
                probe.settings,
                psf_sigma_px=settings.psf_sigma_px,
                frames=settings.frames,
                drift_block_frames=settings.drift_block_frames,
            )
        else:
            first_stop, probe, used = start, previous, previous.settings
            fixed = continuation_settings(previous, rows, cols)
        finished = frozenset(previous.frames) if previous is not None else frozenset()
        ranges = [
            r
            for r in task_ranges(first_stop, stop, task_frames, settings.chunk_frames)
            if any(f not in finished for f in range(r[0] + 1, r[1] + 1))
        ]
        futures = [
            client.submit(
                _run_task,
                open_stack,
                stack_path,
                dataclasses.replace(fixed, frames=r),
                True,
                frozenset(f for f in finished if r[0] < f <= r[1]),
                pure=False,
            )
            for r in ranges
        ]
        merged = MergedRuns(used, probe, stop - start)
        done = merged.add(probe)
        if progress is not None:
            progress(ProgressEvent(done, stop - start, None, f"{done} of {stop - start} frames"))
        last_checkpoint = time.perf_counter()
        for future in as_completed(futures):
            done += merged.add(future.result())
            future.release()  # the worker may drop it now
            if checkpoint is not None and time.perf_counter() - last_checkpoint >= checkpoint_s:
                checkpoint(merged.snapshot())
                last_checkpoint = time.perf_counter()
            if progress is not None:
                progress(ProgressEvent(done, stop - start, None, f"{done} of {stop - start} frames"))
            if should_stop is not None and should_stop():
                for other in futures:
                    other.cancel()
                break
    finally:
        client.close()
    result = merged.finish()
    result.timings_s["wall"] = time.perf_counter() - started
    return result
