"""Reconstruct dock widget: a thin Qt shell over ``reconstruction.ReconstructionRun``.

The run goes through a napari ``thread_worker`` that yields one event per psi batch of
tiles and per finished frame. The GUI thread updates the progress bar, speed and time left
per event. The layers' data is built in the worker (``LiveLayers``) at a bounded rate
(about once a second, less often when the table grows) and once at the end, and the
worker pauses while the GUI shows it, so a long movie never floods the GUI. Cancel quits
the worker at its next yield; finished frames stay shown."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ..reconstruction.settings import DEFAULT_FALSE_ALARM, DEFAULT_MIN_PHOTONS
from . import persist
from .reconstruct_logic import (
    CAMERA_CHOICES,
    FALSE_ALARM_CHOICES,
    FRAME_KDES_MAX_BYTES,
    SCOPES,
    LiveLayers,
    LiveUpdate,
    RunClock,
    build_settings,
    frame_kdes_bytes,
    placeholder_layers,
    visible_region_from_corners,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

NAME = "reconstruct"
#: seconds between updates of the progress bar and the status text during a run: each
#: update redraws the window, canvas included (under Xvfb's software OpenGL, 5 updates a
#: second cost a 256x256 posterior frame 10 s of its 60; docs/performance.md)
STATUS_INTERVAL_S = 1.0
#: seconds between progress-only events sent from the worker to the GUI thread
PROGRESS_INTERVAL_S = 0.1


class ReconstructWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        from ..inference.devices import available_devices

        self._viewer = viewer
        self._worker = None
        self._placeholders: list[str] = []
        self._layer = ComboBox(label="raw layer", choices=self._image_layers)
        self.values = {
            "pixel_size_nm": FloatSpinBox(label="pixel size (nm)", min=1.0, max=100000.0, value=108.0),
            "offset_adu": FloatSpinBox(label="camera offset (ADU)", min=-1e6, max=1e6, value=100.0),
            "gain": FloatSpinBox(label="gain (ADU/photon)", min=0.001, max=1e4, step=0.01, value=1.0),
            "camera": ComboBox(label="camera values", choices=list(CAMERA_CHOICES), value=CAMERA_CHOICES[0]),
            "emccd": CheckBox(text="EMCCD (excess noise)", value=False),
            "camera_maps": FileEdit(
                label="sCMOS maps",
                mode="r",
                filter="*.tif *.tiff",
                value="",
                tooltip="per-pixel offset, read variance and gain (smlm-diffusion "
                "calibrate-camera); empty: the offset and gain above",
            ),
            # a p-value threshold lives on a log scale: a spin box would round 1e-5 to 0
            "false_alarm": ComboBox(
                label="false alarm",
                choices=list(FALSE_ALARM_CHOICES),
                value=f"{DEFAULT_FALSE_ALARM:g}",
                tooltip="detection: the chance that a background-only candidate passes the "
                "likelihood-ratio test (its p-value threshold)",
            ),
            "min_photons": FloatSpinBox(
                label="min photons",
                min=0.0,
                max=1e6,
                step=10.0,
                value=DEFAULT_MIN_PHOTONS,
                tooltip="a second detection knob: photons above the local background (0: the test alone decides)",
            ),
            "render_pixel_nm": FloatSpinBox(
                label="render pixel (nm)",
                min=0.0,
                max=1000.0,
                step=1.0,
                value=0.0,
                tooltip="pixel of the render (localizations drawn as wide as their "
                "precision); 0 = a tenth of a camera pixel",
            ),
            "psf_sigma_px": FloatSpinBox(
                label="PSF sigma (px)",
                min=0.0,
                max=5.0,
                step=0.01,
                value=0.0,
                tooltip="for the likelihood fit; 0 = measure it on the movie",
            ),
            "scope": ComboBox(label="scope", choices=list(SCOPES), value="current frame"),
            "first_frame": SpinBox(label="first frame", min=1, max=10**9, value=1),
            "last_frame": SpinBox(label="last frame", min=1, max=10**9, value=1),
            "frame_kdes": CheckBox(
                text="keep each frame's KDE (follows the frame slider)",
                value=False,
                tooltip="frame range / whole stack: KDE layers with every frame of the run, "
                "not only the render (memory: 64 bytes per raw pixel and frame, "
                "twice that with the posterior)",
            ),
            "posterior": CheckBox(text="posterior sampling (uncertainties)", value=True),
            "chains": SpinBox(label="chains", min=2, max=512, value=16),
            "accelerated": CheckBox(text="accelerated sampling", value=True),
            "seed": SpinBox(label="seed", min=0, max=2**31 - 1, value=0),
            "device": ComboBox(label="device", choices=available_devices()),
        }
        self._device_kind = Label(label="")
        self._run = PushButton(text="Run")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="")
        self.extend(
            [
                self._layer,
                *self.values.values(),
                self._device_kind,
                self._run,
                self._cancel,
                self._progress,
                self._status,
            ]
        )
        persist.restore_into(self.values, NAME)
        self._update_device_kind()
        self.values["device"].changed.connect(self._update_device_kind)
        self._layer.changed.connect(self._prefill_from_metadata)
        self._run.changed.connect(self.start)
        self._cancel.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        self._prefill_from_metadata()

    # -- layer choices and metadata -----------------------------------------------------
    def _image_layers(self, *_):
        from napari.layers import Image

        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.ndim in (2, 3) and not layer.rgb and "source" not in layer.metadata
        ]

    def _refresh_layers(self, *_):
        self._layer.reset_choices()

    def _prefill_from_metadata(self, *_):
        layer = self._layer.value
        if layer is None:
            return
        md = layer.metadata or {}
        for key, name in (
            ("pixel_size_nm", "pixel_size_nm"),
            ("offset_adu", "offset_adu"),
            ("gain_adu_per_photon", "gain"),
        ):
            if md.get(key) is not None:
                self.values[name].value = float(md[key])
        n = layer.data.shape[0] if layer.ndim == 3 else 1
        self.values["last_frame"].value = max(1, min(self.values["last_frame"].value, n)) if n > 1 else 1

    def _update_device_kind(self, *_):
        device = self.values["device"].value or "cpu"
        self._device_kind.value = "runs on: " + (
            "GPU (CUDA)" if device.startswith("cuda") else "GPU (Apple MPS)" if device == "mps" else "CPU"
        )

    # -- running ------------------------------------------------------------------------
    def start(self, *_):
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error

        from ..reconstruction import ReconstructionRun

        layer = self._layer.value
        if layer is None:
            show_error("Choose a raw image layer to reconstruct (open a TIFF stack or File > Open Sample).")
            return
        values = persist.snapshot(self.values)
        persist.save(NAME, values)
        is_stack = layer.ndim == 3
        n_frames = layer.data.shape[0] if is_stack else 1
        current = int(self._viewer.dims.current_step[0]) if is_stack else 0
        frame_shape = tuple(layer.data.shape[-2:])
        try:
            region = (
                visible_region_from_corners(layer.corner_pixels, frame_shape)
                if values["scope"] == "visible region"
                else None
            )
            settings = build_settings(values, n_frames, current, region)
            settings.keep_frame_kdes = False  # the engine does not keep them; the widget's layers do
            run = ReconstructionRun(layer.data, settings)
            keep_frames = bool(values.get("frame_kdes")) and run.stop - run.start > 1
            needed = frame_kdes_bytes(
                run.stop - run.start, (run.region[1] - run.region[0], run.region[3] - run.region[2]), settings.posterior
            )
            if keep_frames and needed > FRAME_KDES_MAX_BYTES:
                raise ValueError(
                    f"keeping each frame's KDE for {run.stop - run.start} frames needs "
                    f"{needed / 1024**3:.1f} GB (at most {FRAME_KDES_MAX_BYTES / 1024**3:.0f} GB): "
                    'choose a shorter frame range or leave "keep each frame\'s KDE" off'
                )
        except ValueError as exc:  # SmlmInputError is a ValueError
            show_error(str(exc))
            return
        live = LiveLayers(
            run, tuple(layer.scale), tuple(layer.translate), is_stack, layer.name, keep_frames=keep_frames
        )
        self._progress.max, self._progress.value = 1, 0
        self._status.value = "starting…"

        @thread_worker
        def work():
            events = run.events()
            sent = -float("inf")
            try:
                for event in events:
                    refresh = live.observe(event)
                    # events without a refresh (one per network evaluation on the posterior path,
                    # thousands per 256x256 frame; one per frame, 60 a second, on the phi path) go
                    # to the GUI at most every PROGRESS_INTERVAL_S: each wakes the GUI thread, which
                    # took a quarter of the run from psi; the worker still checks for Cancel at
                    # every event it yields, so within that time
                    now = time.monotonic()
                    if refresh is None and now - sent < PROGRESS_INTERVAL_S and event.done < event.total:
                        continue
                    sent = now
                    yield LiveUpdate(event, refresh)
                    if refresh is not None:
                        live.wait_for_gui()
            except Exception as exc:  # noqa: BLE001 - reported as one line in the GUI
                yield exc
            finally:
                events.close()  # the engine's own clean-up, also after a cancel
            yield LiveUpdate(None, live.catch_up(after=live.built))  # the complete layers

        self._run_handle, self._live, self._clock, self._started = run, live, RunClock(), time.monotonic()
        self._shown_at = -float("inf")
        self._points_sent = -1  # points in this run's Points layer
        self._partial = None  # the last refresh, when some of its new layers wait
        self._warned = False
        self._worker = work()
        self._worker.yielded.connect(self._on_event)
        self._worker.finished.connect(self._on_finished)
        self._run.enabled, self._cancel.enabled = False, True
        self._worker.start()
        self._placeholders = []  # names of the empty layers this run added
        if run.stop - run.start > 1:  # created while the run starts up, not in its middle
            self._add_placeholders(
                placeholder_layers(run, tuple(layer.scale), tuple(layer.translate), is_stack, layer.name, live.stacks)
            )

    def _add_placeholders(self, layers):
        """Add the run's empty layers one per event-loop turn (each addition stalls the GUI
        for about a quarter of a second under software OpenGL, so several at once would
        freeze it): after them, the run's refreshes only update data."""
        from qtpy.QtCore import QTimer

        if not layers or self._worker is None:
            return
        (data, kwargs, kind), rest = layers[0], layers[1:]
        if kwargs["name"] not in self._viewer.layers:
            self._show(data, kwargs, kind)
            self._placeholders.append(kwargs["name"])
            if kind == "points":
                self._points_sent = -1  # the first refresh sets the run's points and features, even none
        QTimer.singleShot(50, lambda: self._add_placeholders(rest))

    def cancel(self, *_):
        if self._worker is not None:
            self._status.value = "cancelling… (finished frames are kept)"
            self._worker.quit()
            self._live.release()

    def _on_event(self, update):
        from napari.utils.notifications import show_error

        if isinstance(update, Exception):
            show_error(f"Reconstruction failed: {update}")
            return
        event = update.event
        if event is not None:
            self._show_warnings()
            now = time.monotonic()
            speed = self._clock.update(event.done, event.total, len(self._run_handle.result.frames), now)
            # the bar and the text at most once a second: each change relays out the dock and
            # redraws the canvas beside it, which at tens of frames per second costs the run a third
            if now - self._shown_at >= STATUS_INTERVAL_S or event.done >= event.total:
                self._shown_at = now
                self._progress.max = max(event.total, 1)
                self._progress.value = event.done
                self._status.value = f"{event.done}/{event.total} {event.message} · {speed}"
        self._apply(update.refresh)

    def _apply(self, refresh, all_layers: bool = False):
        """Show a refresh built by ``LiveLayers``. Adding a layer can stall the GUI for a
        moment (creation and first draw), so one is added per refresh unless ``all_layers``
        and the worker waits until it is drawn. A refresh that only updates layers paces the
        next one by its whole GUI cost, the redraw included (measured when the event loop
        comes back after drawing): where drawing is slow (software OpenGL), refreshes come
        less often, and never take more than about a tenth of the run."""
        if refresh is None:
            return
        from qtpy.QtCore import QTimer

        applying = time.perf_counter()
        cost, added, skipped = 0.0, False, False
        try:
            for data, kwargs, kind in refresh.layers:
                new = kwargs["name"] not in self._viewer.layers
                if new and added and not all_layers:
                    skipped = True
                    continue
                started = time.perf_counter()
                self._show(data, kwargs, kind)
                cost += 0.0 if new else time.perf_counter() - started
                added |= new
        finally:
            self._partial = refresh if skipped else None
            live = self._live
            if added:  # the worker goes on after the next event-loop turn, when the new layer is drawn
                live.applied(refresh, cost)
                QTimer.singleShot(0, lambda: QTimer.singleShot(0, live.release))
            else:
                live.release()
                QTimer.singleShot(0, lambda: live.applied(refresh, time.perf_counter() - applying))

    def _show_warnings(self):
        from napari.utils.notifications import show_warning

        result = self._run_handle.result
        if not self._warned and result is not None:
            self._warned = True
            for message in result.warnings:
                show_warning(message)

    def _show(self, data, kwargs, kind):
        name = kwargs["name"]
        if name in self._viewer.layers:
            layer = self._viewer.layers[name]
            if kind == "points":
                if len(data) == self._points_sent:  # no new localizations since the last refresh
                    return
                layer.data = data
                self._points_sent = len(data)
                layer.features = kwargs["features"]
                if kwargs.get("face_color") == "uncertainty_xy_nm":
                    layer.face_color = "uncertainty_xy_nm"
                    layer.face_colormap = "viridis"
                    layer.refresh_colors()
            else:
                layer.data = data
                layer.contrast_limits = kwargs["contrast_limits"]
            layer.metadata.update(kwargs.get("metadata", {}))
            return
        add = {"image": self._viewer.add_image, "points": self._viewer.add_points}[kind]
        add(data, **kwargs)
        if kind == "points":
            self._points_sent = len(data)
        else:  # points stay above every image, so that each layer stays visible
            layers = self._viewer.layers
            for index in [i for i, other in enumerate(layers) if other._type_string == "points"]:
                layers.move(index, len(layers))

    def _on_finished(self, *_):
        result = getattr(self, "_run_handle", None)
        done = result.result if result is not None else None
        if done is not None:
            live = self._live  # after a cancel or an error the last frames may not be shown yet
            self._apply(live.catch_up(after=live.shown) or self._partial, all_layers=True)
            self._show_warnings()
            state = "finished" if done.completed else "cancelled"
            seconds = done.timings_s.get("total") or time.monotonic() - self._started  # no total yet after a cancel
            self._status.value = (
                f"{state}: {len(done.frames)} frame(s), {len(done.localizations)} localizations, "
                f"{seconds:.1f} s on {done.device}"
            )
        if done is None or not done.frames:  # no frame finished: the empty layers go again
            for name in self._placeholders:
                if name in self._viewer.layers:
                    self._viewer.layers.remove(name)
        self._placeholders = []
        self._run.enabled, self._cancel.enabled = True, False
        self._worker = None
