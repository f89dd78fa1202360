"""Whole-experiment post-processing of a finished run: drift correction (RCC), linking of
blinks and the FRC resolution (``analysis/drift.py``, ``linking.py``, ``frc.py``).

With drift on, the RCC estimate is tested (``analysis.drift.decide_drift``: against the
drift the same estimate finds with the frames shuffled, and for the agreement of its
segment pairs); only a significant, consistent drift is applied, otherwise the run's
warnings say why in one sentence. When applied, the localizations are corrected
(``drift_x_nm``/``drift_y_nm`` hold what was subtracted, ``drift_std_nm`` its standard
error, added to ``uncertainty_xy`` in quadrature), the precision render is drawn again from them, and the KDE render is
rebuilt from the run's partial renders, each block of frames shifted back by its mean
drift (sub-pixel, bilinear); the render variance likewise.
A drift that cannot be estimated (too few localizations, too few frames) is skipped with
one sentence in the run's warnings. The FRC uses the linked groups when linking is on
and a pixel fine enough for the data (``analysis.frc.measured_frc``: a resolution, or a
bound with its sentence); NeNA (``analysis/nena.py``) gives the table's precision from
consecutive frames and checks ``uncertainty_xy`` on the same pairs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..analysis.drift import DriftResult, apply_drift, decide_drift, estimate_drift
from ..analysis.frc import FrcResult, measured_frc
from ..analysis.linking import link_groups, linked_table
from ..analysis.nena import nena
from ..errors import SmlmInputError
from ..localizations import Localizations
from .settings import Reconstruction


def postprocess(result: Reconstruction) -> tuple[DriftResult | None, Localizations | None, FrcResult | None]:
    """Drift, linking and FRC on ``result`` as its settings ask (in place: the table,
    the renders, ``postprocessing`` and ``warnings``); returns what was computed."""
    settings = result.settings
    locs = result.localizations
    drift = linked = frc = None
    if settings.drift == "auto":
        try:
            n_frames = max(result.frames) if result.frames else 0
            drift = estimate_drift(locs, n_frames)
        except SmlmInputError as exc:
            result.warnings.append(f"Drift correction was skipped: {exc}.")
            result.postprocessing["drift"] = {"skipped": str(exc)}
        else:
            decision = decide_drift(locs, drift, n_frames, seed=settings.seed)
            result.postprocessing["drift"] = {**drift.record(), **decision.record()}
            if decision.apply:
                locs = apply_drift(locs, drift)
                result.frame_tables = [locs]
                _shift_renders(result, drift)
                result.update_render()
            else:
                result.warnings.append(f"Drift correction was not applied: {decision.reason}.")
                drift = None
    groups = None
    if settings.link and len(locs):
        groups = link_groups(locs)
        linked = linked_table(locs, groups)
        result.postprocessing["linking"] = {
            "groups": len(linked),
            "localizations": len(locs),
            "mean_frames_per_group": round(len(locs) / max(len(linked), 1), 2),
            "max_dark_frames": 1,
            "max_distance_sigmas": 3.0,
        }
    try:
        frc = measured_frc(locs, groups=groups, seed=settings.seed)
        result.postprocessing["frc"] = frc.record()
    except SmlmInputError as exc:
        result.postprocessing["frc"] = {"skipped": str(exc)}
    try:
        result.postprocessing["nena"] = nena(locs).record()
    except SmlmInputError as exc:
        result.postprocessing["nena"] = {"skipped": str(exc)}
    return drift, linked, frc


def _shift_renders(result: Reconstruction, drift: DriftResult) -> None:
    """Rebuild the render (and variance) from the block renders, each shifted back by the
    mean drift of its frames (4x grid pixels)."""
    if not result.render_blocks:
        return
    kde_px = result.settings.pixel_size_nm / 4
    frames = np.asarray(result.frames)
    render = np.zeros_like(result.render_kde)
    variance = None if result.render_variance is None else np.zeros_like(result.render_variance)
    for block, image in result.render_blocks.items():
        inside = frames[(frames - 1) // result.block_frames == block]
        dx, dy = drift.at(inside)
        shift = (-float(np.mean(dy)) / kde_px, -float(np.mean(dx)) / kde_px)
        render += ndimage.shift(image.astype(np.float64), shift, order=1, mode="constant")
        if variance is not None and block in result.variance_blocks:
            variance += ndimage.shift(result.variance_blocks[block].astype(np.float64), shift, order=1, mode="constant")
    result.render_kde = render
    if variance is not None:
        result.render_variance = variance
