"""Qt-free core of the Reconstruct widget: settings from widget values, layer data from
results, and the pacing of live updates during a run (tests call these directly)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..inference.sampling_settings import SamplerSettings
from ..reconstruction.pictures import default_render_pixel_nm, render_shape
from ..reconstruction.settings import (
    DEFAULT_FALSE_ALARM,
    DEFAULT_MIN_PHOTONS,
    FrameResult,
    ProgressEvent,
    Reconstruction,
    ReconstructionSettings,
)
from .layers import UPSAMPLING, fine_grid_transform, kde_transform, points_features, points_world, robust_contrast

SCOPES = ("current frame", "visible region", "frame range", "whole stack")
#: widget labels of ReconstructionSettings.camera
CAMERA_CHOICES = ("as given", "estimate from movie")


#: the widget's false-alarm choices (p-value thresholds of the detection test)
FALSE_ALARM_CHOICES = ("1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1")


def build_settings(
    values: dict, n_frames: int, current_frame: int = 0, visible_region: tuple[int, int, int, int] | None = None
) -> ReconstructionSettings:
    """``values``: pixel_size_nm, offset_adu, gain, camera (a CAMERA_CHOICES label), emccd, camera_maps,
    false_alarm, min_photons, render_pixel_nm (0: a tenth of a camera pixel), psf_sigma_px (0 or missing:
    measured on the movie), scope, first_frame,
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
    sampler = SamplerSettings(
        n_samples=int(values.get("chains", 16)), mode="accelerated" if values.get("accelerated", True) else "full"
    )
    return ReconstructionSettings(
        pixel_size_nm=float(values["pixel_size_nm"]),
        offset_adu=float(values["offset_adu"]),
        gain_adu_per_photon=float(values["gain"]),
        frames=frames,
        region=region,
        camera="auto" if values.get("camera") == CAMERA_CHOICES[1] else "given",
        emccd=bool(values.get("emccd", False)),
        camera_maps=maps_path(values.get("camera_maps")),
        min_photons=float(values.get("min_photons", DEFAULT_MIN_PHOTONS)),
        false_alarm=float(values.get("false_alarm", DEFAULT_FALSE_ALARM)),
        render_pixel_nm=float(values.get("render_pixel_nm", 0.0)),
        psf_sigma_px=float(values["psf_sigma_px"]) if values.get("psf_sigma_px") else None,
        posterior=bool(values.get("posterior", True)),
        sampler=sampler,
        seed=int(values.get("seed", 0)),
        device=str(values.get("device", "cpu")),
    )


def maps_path(value) -> str:
    """The widget's sCMOS maps field as a settings path ("" when empty)."""
    text = str(value or "").strip()
    if text in ("", "."):
        return ""
    if not Path(text).is_file():
        raise ValueError(f"the camera maps file {text} does not exist")
    return str(Path(text).resolve())


def visible_region_from_corners(corner_pixels, frame_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """napari ``layer.corner_pixels`` (2 x ndim, data px) -> (row0, row1, col0, col1), at least 8 px."""
    corners = np.asarray(corner_pixels, float)[:, -2:]
    rows, cols = frame_shape
    r0, c0 = np.floor(corners[0]).astype(int)
    r1, c1 = np.ceil(corners[1]).astype(int) + 1
    r0, c0 = max(0, min(r0, rows - 8)), max(0, min(c0, cols - 8))
    return int(r0), int(min(rows, max(r1, r0 + 8))), int(c0), int(min(cols, max(c1, c0 + 8)))


#: the most memory the kept per-frame KDEs of one widget run may take (the layers hold them)
FRAME_KDES_MAX_BYTES = 2 * 1024**3


@dataclass
class FrameStacks:
    """Each frame's KDEs of a run that keeps them: (frames, 4H, 4W) arrays filled from the
    run's frame events as frames finish (zeros until then); ``first_index`` is the run's
    first frame (0-based)."""

    mean: np.ndarray
    variance: np.ndarray | None
    first_index: int

    @classmethod
    def for_run(cls, run) -> FrameStacks:
        r0, r1, c0, c1 = run.region
        shape = (run.stop - run.start, (r1 - r0) * UPSAMPLING, (c1 - c0) * UPSAMPLING)
        variance = np.zeros(shape, np.float32) if run.settings.posterior else None
        return cls(np.zeros(shape, np.float32), variance, run.start)

    def add(self, frame: FrameResult) -> None:
        index = frame.frame - 1 - self.first_index
        self.mean[index] = frame.mean_kde
        if self.variance is not None and frame.variance_kde is not None:
            self.variance[index] = frame.variance_kde


def frame_kdes_bytes(n_frames: int, frame_shape: tuple[int, int], posterior: bool) -> int:
    """Memory of a run's kept per-frame KDEs (4x grid, float32; mean, and variance with the posterior)."""
    rows, cols = frame_shape
    return n_frames * rows * cols * UPSAMPLING**2 * 4 * (2 if posterior else 1)


def frame_layers(
    event_result: FrameResult,
    run_result: Reconstruction,
    raw_scale,
    raw_translate,
    raw_is_stack: bool,
    source_name: str,
    frame_stacks: FrameStacks | None = None,
) -> list[tuple]:
    """Layer data tuples (data, kwargs, type) showing one finished frame and the totals so far.

    With ``frame_stacks`` (the run keeps each frame's KDEs), the per-frame layers hold every
    frame of the run instead, placed on the raw layer's frame axis so that they follow the
    frame slider.

    The latest frame's KDE is shown for one-frame runs and with the posterior (seconds to a
    minute per frame: its mean and variance are worth looking at as they come), not on the
    phi path over many frames: there frames pass at tens a second, a layer showing the
    latest of them does not follow the frame slider, and its creation and texture uploads
    cost a tenth of a 300-frame run under software OpenGL (docs/performance.md); the render
    and the localizations hold the run."""
    import pandas as pd  # napari's own dependency; the table is built here, off the GUI thread

    s = run_result.settings
    scale, translate = kde_transform(raw_scale, raw_translate, run_result.origin_px)
    meta = {"pixel_size_nm": s.pixel_size_nm, "source": source_name}
    posterior = event_result.variance_kde is not None
    if posterior and run_result.psi_model:  # which psi sampled it (psi_model="auto" chooses by density)
        meta["psi_model"] = run_result.psi_model
        if run_result.psi_choice:
            meta["psi_choice"] = run_result.psi_choice
    label = "posterior mean" if posterior else "phi estimate"
    layers = []
    mean, variance, frame_meta = event_result.mean_kde, event_result.variance_kde, {"frame": event_result.frame}
    kde_scale, kde_translate = scale, translate
    if frame_stacks is not None:  # frame index -> world along the raw layer's frame axis, as the points
        mean, variance = frame_stacks.mean, frame_stacks.variance
        kde_scale = [float(raw_scale[-3]), *scale]
        kde_translate = [float(raw_translate[-3]) + float(raw_scale[-3]) * frame_stacks.first_index, *translate]
        frame_meta = {"frames": (frame_stacks.first_index + 1, frame_stacks.first_index + len(mean))}
    if posterior or run_result.frames_requested <= 1 or frame_stacks is not None:
        layers.append(
            (
                mean,
                {
                    "name": f"{label} [{source_name}]",
                    "scale": kde_scale,
                    "translate": kde_translate,
                    "colormap": "magma",
                    "metadata": {**meta, **frame_meta},
                    "contrast_limits": robust_contrast(event_result.mean_kde),
                },
                "image",
            )
        )
    if posterior:
        layers.append(
            (
                variance,
                {
                    "name": f"posterior variance [{source_name}]",
                    "scale": kde_scale,
                    "translate": kde_translate,
                    "colormap": "viridis",
                    "metadata": {**meta, **frame_meta},
                    "contrast_limits": robust_contrast(event_result.variance_kde),
                    "visible": False,
                },
                "image",
            )
        )
    locs = run_result.localizations
    # points are placed in world coordinates directly (the Points layer keeps an identity transform)
    coords = points_world(locs, s.pixel_size_nm, raw_scale, raw_translate, with_frame=raw_is_stack)
    if raw_is_stack:  # frame index -> world along the raw layer's frame axis
        coords[:, 0] = float(raw_translate[-3]) + float(raw_scale[-3]) * coords[:, 0]
    features = pd.DataFrame(points_features(locs))
    colour = (
        {"face_color": "uncertainty_xy_nm", "face_colormap": "viridis"}
        if posterior and len(locs)
        else {"face_color": "yellow"}
    )
    layers.append(
        (
            coords,
            {
                "name": f"localizations [{source_name}]",
                "features": features,
                "size": 0.5,
                "border_width": 0,
                "metadata": meta,
                **colour,
            },
            "points",
        )
    )
    if len(run_result.frames) > 1 or run_result.frames_requested > 1:
        # the KDE render below the precision render, the points above both (added last by the widget)
        layers.append(
            (
                run_result.render_kde.astype(np.float32),
                {
                    "name": f"render KDE [{source_name}]",
                    "scale": scale,
                    "translate": translate,
                    "colormap": "magma",
                    "metadata": meta,
                    "visible": run_result.render is None,
                    "contrast_limits": robust_contrast(run_result.render_kde),
                },
                "image",
            )
        )
        if run_result.render is not None:  # drawn from the whole table at the end of the run
            factor = s.pixel_size_nm / run_result.render_pixel_nm
            fine_scale, fine_translate = fine_grid_transform(raw_scale, raw_translate, run_result.origin_px, factor)
            layers.append(
                (
                    run_result.render,
                    {
                        "name": f"render [{source_name}]",
                        "scale": fine_scale,
                        "translate": fine_translate,
                        "colormap": "magma",
                        "contrast_limits": robust_contrast(run_result.render),
                        "metadata": {**meta, "render_pixel_nm": run_result.render_pixel_nm},
                    },
                    "image",
                )
            )
        if run_result.render_variance is not None:
            layers.append(
                (
                    run_result.render_variance.astype(np.float32),
                    {
                        "name": f"render variance [{source_name}]",
                        "scale": scale,
                        "translate": translate,
                        "colormap": "viridis",
                        "metadata": meta,
                        "visible": False,
                        "contrast_limits": robust_contrast(run_result.render_variance),
                    },
                    "image",
                )
            )
    return layers


def placeholder_layers(
    run, raw_scale, raw_translate, raw_is_stack: bool, source_name: str, frame_stacks: FrameStacks | None = None
) -> list[tuple]:
    """The layers a multi-frame run will show, empty (zero KDEs and render, no points), with
    the names, transforms and styles of :func:`frame_layers`. Shown while the run starts up
    (camera check, models, the first chunk through phi), so that layer creation (about a
    quarter of a second each under software OpenGL, docs/performance.md) does not pause the
    run later. ``run`` is a ``ReconstructionRun`` not yet started."""
    r0, r1, c0, c1 = run.region
    h, w = r1 - r0, c1 - c0
    shape = (h * UPSAMPLING, w * UPSAMPLING)
    posterior = run.settings.posterior
    empty = Reconstruction(
        settings=run.settings,
        shape_px=(h, w),
        origin_px=(r0, c0),
        render_kde=np.zeros(shape),
        render_variance=np.zeros(shape) if posterior else None,
        frames_requested=run.stop - run.start,
    )
    # the precision render, drawn at the end, gets its (empty) layer now too
    s = run.settings
    empty.render_pixel_nm = s.render_pixel_nm or default_render_pixel_nm(s.pixel_size_nm, (h, w))
    empty.render = np.zeros(render_shape((h, w), s.pixel_size_nm, empty.render_pixel_nm), np.float32)
    zeros = np.zeros(shape, np.float32)
    frame = FrameResult(0, zeros, zeros if posterior else None, empty.localizations)
    return frame_layers(frame, empty, raw_scale, raw_translate, raw_is_stack, source_name, frame_stacks)


# -- live updates during a run ---------------------------------------------------------
class RefreshPacer:
    """Bounded-rate layer refreshes: at most one per ``min_interval_s`` (1 s: the worker
    pauses while the GUI shows one, which at 0.5 s cost the run 20 % at 70 frames/s,
    docs/performance.md), spaced at least
    ``cost_factor`` times the last refresh's GUI-thread cost (so refreshing a big table
    takes at most ~1/cost_factor of the GUI thread), and none while one is still queued."""

    def __init__(self, min_interval_s: float = 1.0, cost_factor: float = 10.0) -> None:
        self.min_interval_s, self.cost_factor = min_interval_s, cost_factor
        self.last_cost_s = 0.0
        self.pending = False  # a refresh was built and the GUI has not applied it yet
        self._last: float | None = None

    def due(self, now: float) -> bool:
        if self.pending:
            return False
        return self._last is None or now - self._last >= max(self.min_interval_s, self.cost_factor * self.last_cost_s)

    def started(self, now: float) -> None:
        self._last, self.pending = now, True

    def applied(self, cost_s: float) -> None:
        self.last_cost_s, self.pending = float(cost_s), False


@dataclass
class Refresh:
    """Layer data tuples showing the first ``frames`` finished frames of a run."""

    frames: int
    layers: list[tuple] = field(default_factory=list)


@dataclass
class LiveUpdate:
    """What the worker yields per engine event: the event and, now and then, a refresh."""

    event: ProgressEvent | None
    refresh: Refresh | None = None


class LiveLayers:
    """The layers of a running reconstruction. The worker calls :meth:`observe` per event
    and gets a :class:`Refresh` when one is due (built off the GUI thread: all points,
    features and render so far, the latest frame's KDEs); :meth:`catch_up` builds the last
    one at the end. ``run`` is a ``ReconstructionRun`` (its ``result`` fills up)."""

    def __init__(
        self,
        run,
        raw_scale,
        raw_translate,
        raw_is_stack: bool,
        source_name: str,
        pacer: RefreshPacer | None = None,
        clock=time.monotonic,
        keep_frames: bool = False,
    ) -> None:
        self.run, self.source = run, (raw_scale, raw_translate, raw_is_stack, source_name)
        # each frame's KDEs in layers that follow the frame slider (multi-frame runs that ask)
        self.stacks = FrameStacks.for_run(run) if keep_frames and raw_is_stack and run.stop - run.start > 1 else None
        self.pacer, self.clock = pacer or RefreshPacer(), clock
        self.latest: FrameResult | None = None
        self.built = 0  # frames covered by the last refresh built
        self.render_built = False  # a refresh with the run's precision render was built
        self.shown = 0  # frames covered by the last refresh applied in the GUI
        self._gui_free = threading.Event()
        self._gui_free.set()

    def observe(self, event: ProgressEvent) -> Refresh | None:
        if event.frame_result is not None:
            self.latest = event.frame_result
            if self.stacks is not None:
                self.stacks.add(event.frame_result)
        now = self.clock()
        if self.latest is None or len(self.run.result.frames) <= self.built or not self.pacer.due(now):
            return None
        self.pacer.started(now)
        self._gui_free.clear()
        return self.build()

    def wait_for_gui(self, timeout_s: float = 1.0) -> None:
        """Worker side: hold off (no CPU, no GIL) while the GUI shows the last refresh."""
        self._gui_free.wait(timeout_s)

    def release(self) -> None:
        """GUI side: the last refresh is shown (also on cancel, so the worker can quit)."""
        self._gui_free.set()

    def catch_up(self, after: int) -> Refresh | None:
        """A refresh with every finished frame, unless the first ``after`` frames are all
        and the run's end (the precision render, drawn after the last frame) is shown too."""
        result = self.run.result
        if result is None or self.latest is None:
            return None
        render_due = result.render is not None and not self.render_built
        return self.build() if len(result.frames) > after or render_due else None

    def build(self) -> Refresh:
        result = self.run.result
        frames = len(result.frames)
        refresh = Refresh(frames, frame_layers(self.latest, result, *self.source, self.stacks))
        self.built = max(self.built, frames)
        self.render_built |= result.render is not None
        return refresh

    def applied(self, refresh: Refresh, cost_s: float) -> None:
        """The GUI applied ``refresh`` in ``cost_s`` seconds."""
        self.shown = max(self.shown, refresh.frames)
        self.pacer.applied(cost_s)


class RunClock:
    """Speed and time left from the progress events (measured from the first event, so
    model loading and the camera check do not count)."""

    def __init__(self) -> None:
        self._first: tuple[float, int, int] | None = None

    def update(self, done: int, total: int, frames_done: int, now: float) -> str:
        """``done`` / ``total``: progress units (tiles or frames); ``frames_done``: frames
        finished so far."""
        if self._first is None:
            self._first = (now, done, frames_done)
        t0, done0, frames0 = self._first
        if now <= t0 or done <= done0:
            return "estimating speed…"
        rate = (frames_done - frames0) / (now - t0)
        left = (total - done) * (now - t0) / (done - done0)
        return (f"{rate:.3g} frames/s, " if rate > 0 else "") + f"about {format_duration(left)} left"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
