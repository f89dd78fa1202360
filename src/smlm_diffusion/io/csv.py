"""ThunderSTORM-style localization tables.

Header ``name [unit]``; columns at least ``id, frame, x [nm], y [nm],
intensity [photon], uncertainty_xy [nm]``; frames count from 1; x = column axis,
y = row axis; origin at the top-left corner of the top-left pixel.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from ..errors import SmlmInputError
from ..localizations import Localizations
from .atomic import atomic_path

CORE_COLUMNS = ("id", "frame", "x [nm]", "y [nm]", "intensity [photon]", "uncertainty_xy [nm]")
_ALIASES = {
    "id": "id",
    "frame": "frame",
    "x [nm]": "x_nm",
    "y [nm]": "y_nm",
    "intensity [photon]": "intensity_photons",
    "intensity [photons]": "intensity_photons",
    "uncertainty_xy [nm]": "uncertainty_xy_nm",
    "uncertainty [nm]": "uncertainty_xy_nm",
}


#: headers spelled with spaces (the drift columns)
_SPACED = {"drift_x_nm": "drift x [nm]", "drift_y_nm": "drift y [nm]", "drift_std_nm": "drift std [nm]"}


def _header_name(extra_key: str) -> str:
    """``uncertainty_x_nm`` -> ``uncertainty_x [nm]``; plain names stay plain."""
    if extra_key in _SPACED:
        return _SPACED[extra_key]
    m = re.fullmatch(r"(.+)_(nm|px|photons?)", extra_key)
    return f"{m.group(1)} [{m.group(2)}]" if m else extra_key


def _extra_key(header: str) -> str:
    spaced = {v: k for k, v in _SPACED.items()}
    if header in spaced:
        return spaced[header]
    m = re.fullmatch(r"(.+?)\s*\[(.+)\]", header)
    return f"{m.group(1)}_{m.group(2)}" if m else header


def write_localizations_csv(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write ``locs`` as a ThunderSTORM CSV, atomically. ``id`` is 1..n unless the
    table carries its own ``id`` column."""
    n = len(locs)
    ids = locs.extra.get("id", np.arange(1, n + 1))
    extras = {k: v for k, v in locs.extra.items() if k != "id"}
    header = list(CORE_COLUMNS) + [_header_name(k) for k in extras]
    columns = [
        np.asarray(ids, np.int64),
        locs.frame,
        locs.x_nm,
        locs.y_nm,
        locs.intensity_photons,
        locs.uncertainty_xy_nm,
        *extras.values(),
    ]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in zip(*columns):
                writer.writerow([_format(v) for v in row])
    return Path(path)


def _format(value) -> str:
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    value = float(value)
    if np.isnan(value):
        return "nan"
    return f"{value:.6g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")


def read_localizations_csv(path: str | os.PathLike) -> Localizations:
    """Read a ThunderSTORM-style CSV (ours, ThunderSTORM's, or a ground truth file)."""
    path = Path(path)
    if not path.exists():
        raise SmlmInputError(f"File not found: {path}; check the path.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise SmlmInputError(f"{path.name} is not a readable CSV text file ({exc}).") from None
    if not rows:
        raise SmlmInputError(f"{path.name} is empty; expected a header line with 'frame, x [nm], y [nm]'.")
    header = [h.strip().strip('"').strip() for h in rows[0]]
    lookup = {h.lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("frame", "x [nm]", "y [nm]") if c not in lookup]
    if missing:
        raise SmlmInputError(
            f"{path.name} lacks the column(s) {', '.join(missing)}; expected a "
            "ThunderSTORM-style header such as 'id,frame,x [nm],y [nm]'."
        )
    body = [r for r in rows[1:] if r and any(cell.strip() for cell in r)]
    try:
        table = np.array([[float(cell) for cell in r] for r in body], dtype=np.float64).reshape(-1, len(header))
    except ValueError:
        raise SmlmInputError(
            f"{path.name} has a row that is not all numbers or has the wrong number of fields; check the file."
        ) from None
    core, extra = {}, {}
    for i, name in enumerate(header):
        key = _ALIASES.get(name.lower())
        if key is not None and key not in core:
            core[key] = table[:, i]
        elif key is None:
            extra[_extra_key(name)] = table[:, i]
    if "id" in core:
        extra["id"] = core.pop("id").astype(np.int64)
    if len(core["frame"]) and (core["frame"] < 1).any():
        raise SmlmInputError(f"{path.name} has frame numbers below 1; frames count from 1.")
    return Localizations(
        frame=core["frame"].astype(np.int64),
        x_nm=core["x_nm"],
        y_nm=core["y_nm"],
        intensity_photons=core.get("intensity_photons"),
        uncertainty_xy_nm=core.get("uncertainty_xy_nm"),
        extra=extra,
    )
