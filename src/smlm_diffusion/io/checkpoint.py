"""A run's finished frames on disk, so that an interrupted ``reconstruct`` can go on
(``reconstruct ... --resume``; ``reconstruction/resume.py``).

``checkpoint.npz`` in the output folder holds, at full precision, everything the rest of
the run and its post-processing need: every column of the finished frames' localizations,
their candidates' p-values (the movie-level ``probability`` is computed over all of them),
the KDE renders and their per-block parts (for drift correction), and a JSON record of the
settings the run resolved (camera, PSF width, psi) and of the input. No pickles: arrays
and one JSON string, read back with ``allow_pickle=False``. Written atomically (temporary
name, then rename), so a kill while writing leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SmlmInputError
from ..localizations import Localizations
from ..reconstruction.settings import Reconstruction, ReconstructionSettings
from .atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_VERSION = 1
_BASE_COLUMNS = ("frame", "x_nm", "y_nm", "intensity_photons", "uncertainty_xy_nm")
_RESULT_FIELDS = (
    "shape_px",
    "origin_px",
    "device",
    "precision",
    "network_evaluations",
    "timings_s",
    "psf_sigma_px",
    "psf_sigma_source",
    "camera_estimate",
    "psi_model",
    "psi_choice",
    "warnings",
    "frames_requested",
    "block_frames",
)


def save_checkpoint(folder: str | Path, result: Reconstruction, run_info: dict) -> Path:
    """Write ``result``'s finished frames to ``folder/checkpoint.npz``; ``run_info`` (the
    input's path and shape, the settings the user asked for) is kept for the resume check."""
    path = Path(folder) / CHECKPOINT_NAME
    frames = np.asarray(result.frames, np.int64)
    tables = result.frame_tables
    joined = Localizations.concatenate(tables) if tables else Localizations.empty()
    p_values = (
        result.candidate_p_values if len(result.candidate_p_values) == len(frames) else [np.zeros(0)] * len(frames)
    )
    record = {
        "version": CHECKPOINT_VERSION,
        "run": run_info,
        "settings": result.settings.to_dict(),
        "frames_done": len(frames),
        "extra_columns": sorted(joined.extra),
        **{name: getattr(result, name) for name in _RESULT_FIELDS},
    }
    arrays = {f"column_{name}": column for name, column in joined._all_columns().items()}
    arrays.update(
        record=np.array(json.dumps(record)),
        frames=frames,
        rows_per_frame=np.asarray([len(t) for t in tables], np.int64),
        p_values=np.concatenate(p_values) if p_values else np.zeros(0),
        p_values_per_frame=np.asarray([len(p) for p in p_values], np.int64),
        render_kde=result.render_kde,
    )
    if result.render_variance is not None:
        arrays["render_variance"] = result.render_variance
    for name, blocks in (("render_block", result.render_blocks), ("variance_block", result.variance_blocks)):
        for block, image in blocks.items():
            arrays[f"{name}_{block}"] = image
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def load_checkpoint(folder: str | Path) -> tuple[Reconstruction, dict]:
    """The interrupted run in ``folder`` (``save_checkpoint``) and its ``run_info``; one
    clear sentence when there is none or it cannot be read."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        raise SmlmInputError(
            f"there is no interrupted run to resume in {folder} (no {CHECKPOINT_NAME}); run without --resume"
        )
    try:
        return _load(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise SmlmInputError(f"{path} cannot be read ({exc}); run without --resume") from None


def _load(path: Path) -> tuple[Reconstruction, dict]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    record = json.loads(str(arrays.pop("record")))
    if record.get("version") != CHECKPOINT_VERSION:
        raise SmlmInputError(f"{path} was written by another version of this program; run without --resume")
    columns = {name: arrays.pop(f"column_{name}") for name in (*_BASE_COLUMNS, *record["extra_columns"])}
    joined = Localizations(
        **{name: columns[name] for name in _BASE_COLUMNS},
        extra={name: columns[name] for name in record["extra_columns"]},
    )
    bounds = np.r_[0, np.cumsum(arrays["rows_per_frame"])]
    p_bounds = np.r_[0, np.cumsum(arrays["p_values_per_frame"])]
    result = Reconstruction(
        settings=ReconstructionSettings.from_dict(record["settings"]),
        shape_px=tuple(record["shape_px"]),
        render_kde=arrays["render_kde"],
        render_variance=arrays.get("render_variance"),
    )
    for name in _RESULT_FIELDS:
        value = record[name]
        setattr(result, name, tuple(value) if name in ("shape_px", "origin_px") else value)
    result.frames = [int(f) for f in arrays["frames"]]
    result.frame_tables = [joined.select(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    result.candidate_p_values = [arrays["p_values"][a:b] for a, b in zip(p_bounds[:-1], p_bounds[1:])]
    for name, target in (("render_block_", result.render_blocks), ("variance_block_", result.variance_blocks)):
        for key in [k for k in arrays if k.startswith(name)]:
            target[int(key[len(name) :])] = arrays[key]
    return result, record["run"]


def remove_checkpoint(folder: str | Path) -> None:
    """Drop the checkpoint once the run's outputs are complete."""
    (Path(folder) / CHECKPOINT_NAME).unlink(missing_ok=True)
