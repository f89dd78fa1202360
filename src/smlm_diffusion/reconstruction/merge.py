"""Runs of one movie put together: the tasks of a cluster run (``distributed.py``) and an
interrupted run with its continuation (``resume.py``). Renders are added as parts arrive
(only the frame tables are kept), then the tables are put in frame order and the
movie-level ``probability`` and the precision render are computed once over all of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .settings import Reconstruction, ReconstructionSettings


class MergedRuns:
    """Parts of one run (each a ``Reconstruction`` of some of its frames) added up."""

    def __init__(self, settings: ReconstructionSettings, first: Reconstruction, frames_requested: int) -> None:
        self.result = Reconstruction(
            settings=settings,
            shape_px=first.shape_px,
            origin_px=first.origin_px,
            device=first.device,
            precision=first.precision,
            render_kde=np.zeros_like(first.render_kde),
            render_variance=None if first.render_variance is None else np.zeros_like(first.render_variance),
            frames_requested=frames_requested,
        )
        self.result.psf_sigma_px, self.result.psf_sigma_source = first.psf_sigma_px, first.psf_sigma_source
        self.result.camera_estimate = first.camera_estimate
        self.result.psi_model, self.result.psi_choice = first.psi_model, first.psi_choice
        self.tables: dict[int, tuple] = {}  # frame -> (table, its candidates' p-values)

    def add(self, part: Reconstruction) -> int:
        """Add ``part`` (frames it shares with earlier parts are an error); returns its frames."""
        result = self.result
        shared = set(part.frames) & set(self.tables)
        if shared:
            raise ValueError(f"frames {sorted(shared)[:3]} are in two parts of the run")
        p_values = part.candidate_p_values or [np.zeros(0)] * len(part.frames)
        for frame, table, p in zip(part.frames, part.frame_tables, p_values):
            self.tables[frame] = (table, p)
        result.render_kde += part.render_kde
        if result.render_variance is not None and part.render_variance is not None:
            result.render_variance += part.render_variance
        result.network_evaluations += part.network_evaluations
        result.block_frames = part.block_frames or result.block_frames
        for blocks, theirs in (
            (result.render_blocks, part.render_blocks),
            (result.variance_blocks, part.variance_blocks),
        ):
            for block, image in theirs.items():
                blocks[block] = blocks[block] + image if block in blocks else image
        for key, value in part.timings_s.items():  # summed over parts (worker seconds)
            result.timings_s[key] = result.timings_s.get(key, 0.0) + value
        result.warnings.extend(w for w in part.warnings if w not in result.warnings)
        return len(part.frames)

    def _in_frame_order(self) -> dict:
        """The frames so far, their tables and their candidates' p-values, by frame."""
        frames = sorted(self.tables)
        return {
            "frames": frames,
            "frame_tables": [self.tables[f][0] for f in frames],
            "candidate_p_values": [self.tables[f][1] for f in frames],
        }

    def snapshot(self) -> Reconstruction:
        """The parts so far as one result (for a checkpoint), without touching this merge."""
        result = self.result
        partial = dataclasses.replace(
            result,
            **self._in_frame_order(),
            render_blocks=dict(result.render_blocks),
            variance_blocks=dict(result.variance_blocks),
            completed=False,
        )
        partial._joined = None
        return partial

    def finish(self) -> Reconstruction:
        result = self.result
        for name, value in self._in_frame_order().items():
            setattr(result, name, value)
        result.completed = len(result.frames) == result.frames_requested
        result.finish_probability()
        result.update_render()
        return result
