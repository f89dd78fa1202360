"""Continue an interrupted run (``reconstruct ... --resume``).

An interrupted run keeps its finished frames (``io/checkpoint.py`` writes them). Its
continuation runs the engine on the frames it lacks with the values the first part
resolved held fixed (the camera, the measured PSF width, the chosen psi, the chunking and
the drift blocks), so every frame gets the numbers an uninterrupted run gives it: the
engine cuts the movie into the same chunks and computes a chunk that holds finished frames
whole, skipping only those frames. The parts are then merged (``merge.MergedRuns``): the
same table as an uninterrupted run, the renders equal up to the order of summation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ..errors import SmlmInputError
from .engine import ReconstructionRun, frame_source_shape, resolve_frames
from .merge import MergedRuns
from .settings import ProgressEvent, Reconstruction


class ResumedRun:
    """The rest of ``previous`` (an interrupted run of ``stack``, same frames): iterate
    ``events()`` as for a ``ReconstructionRun``; ``result`` is the whole run so far (both
    parts, merged on each access)."""

    def __init__(self, stack, previous: Reconstruction, device: str | None = None) -> None:
        settings = previous.settings
        n_frames, rows, cols = frame_source_shape(stack)
        start, stop = resolve_frames(n_frames, settings.frames)
        if stop - start != previous.frames_requested:
            raise SmlmInputError(
                f"the movie has {n_frames} frames; the interrupted run was of "
                f"{previous.frames_requested} frames from frame {start + 1}"
            )
        if previous.frames and previous.psf_sigma_px is None:
            raise SmlmInputError("the interrupted run's record lacks its PSF width; run it again without --resume")
        fixed = continuation_settings(previous, rows, cols)
        if device is not None:  # the machine may differ from the interrupted run's
            fixed = dataclasses.replace(fixed, device=device)
        self.previous = previous
        self.frames_requested = stop - start
        self.run = ReconstructionRun(stack, fixed, camera_checked=True, skip_frames=frozenset(previous.frames))

    def events(self) -> Iterator[ProgressEvent]:
        """The continuation's events (``done``/``total`` count the work left)."""
        return self.run.events()

    @property
    def result(self) -> Reconstruction:
        merged = MergedRuns(self.previous.settings, self.previous, self.frames_requested)
        merged.add(self.previous)
        if self.run.result is not None:
            merged.add(self.run.result)
        return merged.finish()


def continuation_settings(previous: Reconstruction, rows: int, cols: int):
    """The settings the rest of ``previous`` runs with (frames of ``rows`` x ``cols``): its
    own, with the values its first part resolved held fixed (module doc)."""
    settings = previous.settings
    r0, r1, c0, c1 = settings.region or (0, rows, 0, cols)
    # the arithmetic the first part used ("auto" could resolve differently on another CPU)
    precision = previous.precision if previous.precision in ("float32", "bfloat16") else settings.precision
    return dataclasses.replace(
        settings,
        precision=precision,
        camera="given",
        psf_sigma_px=previous.psf_sigma_px,
        psi_model=previous.psi_model or settings.psi_model,
        chunk_frames=settings.frames_per_chunk(r1 - r0, c1 - c0),
        drift_block_frames=previous.block_frames or settings.drift_block_frames,
    )
