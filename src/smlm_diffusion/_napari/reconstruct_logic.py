"""Qt-free core of the Reconstruct widget: settings from widget values and layer data
from results (tests call these directly)."""

from __future__ import annotations

import numpy as np

from ..inference.sampling_settings import SamplerSettings
from ..reconstruction.settings import DEFAULT_MIN_PHOTONS, FrameResult, Reconstruction, ReconstructionSettings
from .layers import kde_transform, points_features, points_world, robust_contrast

SCOPES = ("current frame", "visible region", "frame range", "whole stack")
#: widget labels of ReconstructionSettings.camera
CAMERA_CHOICES = ("as given", "estimate from movie")


def build_settings(values: dict, n_frames: int, current_frame: int = 0,
                   visible_region: tuple[int, int, int, int] | None = None) -> ReconstructionSettings:
    """``values``: pixel_size_nm, offset_adu, gain, camera (a CAMERA_CHOICES label), emccd,
    min_photons, psf_sigma_px (0 or missing: measured on the movie), scope, first_frame,
    last_frame (1-based, inclusive), posterior, chains, accelerated, seed, device.
    ``current_frame`` is 0-based."""
    scope = values.get("scope", "current frame")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    frames, region = None, None
    if scope in ("current frame", "visible region"):
        frames = (current_frame, current_frame + 1)
        region = visible_region if scope == "visible region" else None
    elif scope == "frame range":
        first, last = int(values["first_frame"]), int(values["last_frame"])
        if not 1 <= first <= last <= n_frames:
            raise ValueError(f"frame range {first}-{last} is outside the stack's frames 1-{n_frames}")
        frames = (first - 1, last)
    sampler = SamplerSettings(n_samples=int(values.get("chains", 16)),
                              mode="accelerated" if values.get("accelerated", True) else "full")
    return ReconstructionSettings(
        pixel_size_nm=float(values["pixel_size_nm"]), offset_adu=float(values["offset_adu"]),
        gain_adu_per_photon=float(values["gain"]), frames=frames, region=region,
        camera="auto" if values.get("camera") == CAMERA_CHOICES[1] else "given", emccd=bool(values.get("emccd", False)),
        min_photons=float(values.get("min_photons", DEFAULT_MIN_PHOTONS)),
        psf_sigma_px=float(values["psf_sigma_px"]) if values.get("psf_sigma_px") else None,
        posterior=bool(values.get("posterior", True)), sampler=sampler, seed=int(values.get("seed", 0)),
        device=str(values.get("device", "cpu")))


def visible_region_from_corners(corner_pixels, frame_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """napari ``layer.corner_pixels`` (2 x ndim, data px) -> (row0, row1, col0, col1), at least 8 px."""
    corners = np.asarray(corner_pixels, float)[:, -2:]
    rows, cols = frame_shape
    r0, c0 = np.floor(corners[0]).astype(int)
    r1, c1 = np.ceil(corners[1]).astype(int) + 1
    r0, c0 = max(0, min(r0, rows - 8)), max(0, min(c0, cols - 8))
    return int(r0), int(min(rows, max(r1, r0 + 8))), int(c0), int(min(cols, max(c1, c0 + 8)))


def frame_layers(event_result: FrameResult, run_result: Reconstruction, raw_scale, raw_translate,
                 raw_is_stack: bool, source_name: str) -> list[tuple]:
    """Layer data tuples (data, kwargs, type) showing one finished frame and the totals so far."""
    s = run_result.settings
    scale, translate = kde_transform(raw_scale, raw_translate, run_result.origin_px)
    meta = {"pixel_size_nm": s.pixel_size_nm, "source": source_name}
    posterior = event_result.variance_kde is not None
    label = "posterior mean" if posterior else "phi estimate"
    layers = [(event_result.mean_kde, {"name": f"{label} [{source_name}]", "scale": scale, "translate": translate,
                                       "colormap": "magma", "metadata": {**meta, "frame": event_result.frame},
                                       "contrast_limits": robust_contrast(event_result.mean_kde)}, "image")]
    if posterior:
        layers.append((event_result.variance_kde, {"name": f"posterior variance [{source_name}]", "scale": scale,
                                                   "translate": translate, "colormap": "viridis",
                                                   "metadata": {**meta, "frame": event_result.frame},
                                                   "contrast_limits": robust_contrast(event_result.variance_kde),
                                                   "visible": False}, "image"))
    locs = run_result.localizations
    # points are placed in world coordinates directly (the Points layer keeps an identity transform)
    coords = points_world(locs, s.pixel_size_nm, raw_scale, raw_translate, with_frame=raw_is_stack)
    if raw_is_stack:  # frame index -> world along the raw layer's frame axis
        coords[:, 0] = float(raw_translate[-3]) + float(raw_scale[-3]) * coords[:, 0]
    features = points_features(locs)
    colour = {"face_color": "uncertainty_xy_nm", "face_colormap": "viridis"} if posterior and len(locs) \
        else {"face_color": "yellow"}
    layers.append((coords, {"name": f"localizations [{source_name}]", "features": features, "size": 0.5,
                            "border_width": 0, "metadata": meta, **colour}, "points"))
    if len(run_result.frames) > 1 or run_result.frames_requested > 1:
        layers.append((run_result.render.astype(np.float32),
                       {"name": f"render [{source_name}]", "scale": scale, "translate": translate,
                        "colormap": "magma", "metadata": meta,
                        "contrast_limits": robust_contrast(run_result.render)}, "image"))
        if run_result.render_variance is not None:
            layers.append((run_result.render_variance.astype(np.float32),
                           {"name": f"render variance [{source_name}]", "scale": scale, "translate": translate,
                            "colormap": "viridis", "metadata": meta, "visible": False,
                            "contrast_limits": robust_contrast(run_result.render_variance)}, "image"))
    return layers
