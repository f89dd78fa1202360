"""A table of localizations (or ground-truth emitters): columns of equal length.

Coordinates: ``x_nm`` is the column axis, ``y_nm`` the row axis, the
origin is the top-left *corner* of the top-left pixel, frames count from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _column(values, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))


@dataclass
class Localizations:
    """Columns of a localization table; all arrays have the same length.

    ``extra`` holds further per-localization columns (e.g. ``probability``,
    ``site_id``), keyed by their plain name.
    """

    frame: np.ndarray
    x_nm: np.ndarray
    y_nm: np.ndarray
    intensity_photons: np.ndarray | None = None
    uncertainty_xy_nm: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame = _column(self.frame, np.int64)
        self.x_nm = _column(self.x_nm, np.float64)
        self.y_nm = _column(self.y_nm, np.float64)
        n = len(self.frame)
        if self.intensity_photons is None:
            self.intensity_photons = np.full(n, np.nan)
        if self.uncertainty_xy_nm is None:
            self.uncertainty_xy_nm = np.full(n, np.nan)
        self.intensity_photons = _column(self.intensity_photons, np.float64)
        self.uncertainty_xy_nm = _column(self.uncertainty_xy_nm, np.float64)
        self.extra = {k: np.asarray(v).reshape(-1) for k, v in self.extra.items()}
        for name, col in self._all_columns().items():
            if len(col) != n:
                raise ValueError(f"column {name!r} has {len(col)} rows, expected {n}")

    def _all_columns(self) -> dict[str, np.ndarray]:
        return {
            "frame": self.frame,
            "x_nm": self.x_nm,
            "y_nm": self.y_nm,
            "intensity_photons": self.intensity_photons,
            "uncertainty_xy_nm": self.uncertainty_xy_nm,
            **self.extra,
        }

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def empty(cls) -> Localizations:
        return cls(frame=np.zeros(0, np.int64), x_nm=np.zeros(0), y_nm=np.zeros(0))

    def select(self, mask_or_index) -> Localizations:
        """Rows picked by a boolean mask or an index array."""
        return Localizations(
            frame=self.frame[mask_or_index],
            x_nm=self.x_nm[mask_or_index],
            y_nm=self.y_nm[mask_or_index],
            intensity_photons=self.intensity_photons[mask_or_index],
            uncertainty_xy_nm=self.uncertainty_xy_nm[mask_or_index],
            extra={k: v[mask_or_index] for k, v in self.extra.items()},
        )

    def in_frame(self, frame: int) -> Localizations:
        return self.select(self.frame == frame)

    @classmethod
    def concatenate(cls, tables: list[Localizations]) -> Localizations:
        tables = [t for t in tables if t is not None]
        if not tables:
            return cls.empty()
        extra_keys = set.intersection(*(set(t.extra) for t in tables))
        return cls(
            frame=np.concatenate([t.frame for t in tables]),
            x_nm=np.concatenate([t.x_nm for t in tables]),
            y_nm=np.concatenate([t.y_nm for t in tables]),
            intensity_photons=np.concatenate([t.intensity_photons for t in tables]),
            uncertainty_xy_nm=np.concatenate([t.uncertainty_xy_nm for t in tables]),
            extra={k: np.concatenate([t.extra[k] for t in tables]) for k in sorted(extra_keys)},
        )

    def xy_px(self, pixel_size_nm: float) -> np.ndarray:
        """(n, 2) positions in camera pixels, columns (x, y), corner origin."""
        return np.stack([self.x_nm, self.y_nm], axis=1) / float(pixel_size_nm)
