"""Qt-free helpers of the napari face: world-coordinate alignment and layer data.

napari puts the centre of pixel index i at world ``translate + scale * i``. With the raw
layer's (scale s, translate t) on the last two axes, positions (nm, origin at the
top-left corner) map to world ``t + s * (pos_nm / px - 0.5)`` and 4x KDE pixels j (centre
at (j + 0.5) / 4 camera px) need scale s / 4 and translate ``t + s * (origin - 0.375)``.
"""

from __future__ import annotations

import numpy as np

from ..localizations import Localizations

UPSAMPLING = 4


def kde_transform(raw_scale, raw_translate, origin_px=(0, 0)) -> tuple[list[float], list[float]]:
    """(scale, translate) of a 2D 4x layer aligned with a raw layer (last two axes)."""
    return fine_grid_transform(raw_scale, raw_translate, origin_px, UPSAMPLING)


def fine_grid_transform(
    raw_scale, raw_translate, origin_px=(0, 0), factor: float = UPSAMPLING
) -> tuple[list[float], list[float]]:
    """(scale, translate) of a 2D layer on a grid ``factor`` times finer than the camera,
    its top-left corner at the camera pixel ``origin_px``, aligned with a raw layer."""
    s = np.asarray(raw_scale, float)[-2:]
    t = np.asarray(raw_translate, float)[-2:]
    origin = np.asarray(origin_px, float)
    translate = t + s * (origin + (0.5 / factor - 0.5))
    return list(s / factor), list(translate)


def points_world(
    locs: Localizations, pixel_size_nm: float, raw_scale=(1.0, 1.0), raw_translate=(0.0, 0.0), with_frame: bool = False
) -> np.ndarray:
    """(n, 2) or (n, 3) napari coordinates (frame - 1, y, x) of localizations."""
    s = np.asarray(raw_scale, float)[-2:]
    t = np.asarray(raw_translate, float)[-2:]
    y = t[0] + s[0] * (locs.y_nm / pixel_size_nm - 0.5)
    x = t[1] + s[1] * (locs.x_nm / pixel_size_nm - 0.5)
    columns = ([locs.frame - 1.0] if with_frame else []) + [y, x]
    return np.stack(columns, axis=1) if len(locs) else np.zeros((0, 3 if with_frame else 2))


def localizations_from_points(
    data: np.ndarray, features, pixel_size_nm: float, raw_scale=(1.0, 1.0), raw_translate=(0.0, 0.0)
) -> Localizations:
    """Inverse of :func:`points_world` (a frame column is used when the data has 3 columns)."""
    data = np.asarray(data, float)
    s = np.asarray(raw_scale, float)[-2:]
    t = np.asarray(raw_translate, float)[-2:]
    n = len(data)
    frame = (data[:, 0] + 1).round().astype(int) if data.shape[1] >= 3 else np.ones(n, int)
    y_nm = ((data[:, -2] - t[0]) / s[0] + 0.5) * pixel_size_nm
    x_nm = ((data[:, -1] - t[1]) / s[1] + 0.5) * pixel_size_nm

    def feature(*names):
        for name in names:
            if features is not None and name in features:
                return np.asarray(features[name], float)
        return None

    extra = {}
    for key in ("probability", *FEATURE_COLUMNS):
        values = feature(_feature_name(key))
        if values is not None:
            extra[key] = values
    return Localizations(
        frame=frame,
        x_nm=x_nm,
        y_nm=y_nm,
        intensity_photons=feature("intensity", "intensity_photons"),
        uncertainty_xy_nm=feature("uncertainty_xy_nm"),
        extra=extra,
    )


#: per-localization columns shown as Points features beside uncertainty, probability and intensity
FEATURE_COLUMNS = (
    "crlb_xy_nm",
    "robust_xy_nm",
    "likelihood_xy_nm",
    "posterior_spread_xy_nm",
    "background_photons",
    "sigma_nm",
    "fit_deviance",
    "fit_ok",
    "drift_x_nm",
    "drift_y_nm",
    "n_frames",
    "last_frame",
)


def _feature_name(column: str) -> str:
    """Points feature name of a localization column (``background_photons`` -> ``background``)."""
    return column.replace("_photons", "")


def points_features(locs: Localizations) -> dict[str, np.ndarray]:
    features = {
        "uncertainty_xy_nm": np.asarray(locs.uncertainty_xy_nm, float),
        "probability": np.asarray(locs.extra.get("probability", np.ones(len(locs))), float),
        "intensity": np.asarray(locs.intensity_photons, float),
    }
    for name in FEATURE_COLUMNS:
        if name in locs.extra:
            features[_feature_name(name)] = np.asarray(locs.extra[name], float)
    return features


def robust_contrast(image: np.ndarray) -> list[float]:
    """Contrast limits from the 0.5 / 99.8 percentiles (a fallback when flat)."""
    lo, hi = np.percentile(np.asarray(image, float), [0.5, 99.8])
    return [float(lo), float(hi if hi > lo else lo + 1.0)]
