"""Drift & resolution dock widget: whole-experiment post-processing of a localization
layer. "Correct drift" adds a drift-corrected copy of the layer, "FRC resolution" measures
the Fourier ring correlation resolution, "Link blinks" adds one point per blink; the drift
trace and the FRC curve are drawn in the dock. A thin Qt shell over ``postprocess_logic``:
the work runs in a napari ``thread_worker`` and bad tables give one notification."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton

from . import persist
from .postprocess_logic import TITLES, draw_drift, draw_frc, is_localization_layer, run_task, table_from_layer

if TYPE_CHECKING:  # pragma: no cover
    import napari

NAME = "postprocess"
DEFAULT_PIXEL_SIZE_NM = 108.0


class PostprocessWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self._layer = ComboBox(label="localizations", choices=self._localization_layers)
        self.values = {
            "pixel_size_nm": FloatSpinBox(
                label="pixel size (nm)",
                min=0.01,
                max=1e5,
                value=DEFAULT_PIXEL_SIZE_NM,
                tooltip="camera pixel size; filled from the layer's metadata",
            ),
            "frc_pixel_nm": FloatSpinBox(
                label="FRC pixel (nm, 0: auto)",
                min=0.0,
                max=1000.0,
                step=0.5,
                value=0.0,
                tooltip="pixel of the two half images the FRC compares; 0: chosen for the "
                "data (finer on the densest part of the field when the curve needs "
                "it)",
            ),
            "keep_linked": CheckBox(
                text="FRC: keep linked blinks in one half",
                value=True,
                tooltip="repeated localizations of one blink otherwise make the FRC optimistic",
            ),
        }
        self._buttons = {
            "drift": PushButton(text="Correct drift"),
            "frc": PushButton(text="FRC resolution"),
            "link": PushButton(text="Link blinks"),
        }
        self._status = Label(label="")
        self._resolution = Label(label="", value="FRC resolution: –")
        self.extend([self._layer, *self.values.values(), *self._buttons.values(), self._status, self._resolution])
        self._add_canvas()
        persist.restore_into(self.values, NAME)
        for task, button in self._buttons.items():
            button.changed.connect(lambda *_, task=task: self.start(task))
        self._layer.changed.connect(self._prefill_from_metadata)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        self._prefill_from_metadata()

    def _add_canvas(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(260)
        self.native.layout().addWidget(self.canvas)

    # -- layer choices and metadata -----------------------------------------------------
    def _localization_layers(self, *_):
        from napari.layers import Points

        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Points) and is_localization_layer(layer.ndim, layer.features.columns)
        ]

    def _refresh_layers(self, *_):
        self._layer.reset_choices()

    def _prefill_from_metadata(self, *_):
        layer = self._layer.value
        if layer is not None and (layer.metadata or {}).get("pixel_size_nm"):
            self.values["pixel_size_nm"].value = float(layer.metadata["pixel_size_nm"])

    # -- running ------------------------------------------------------------------------
    def start(self, task: str) -> None:
        """Run ``task`` ("drift", "frc" or "link") on the chosen layer in a worker thread."""
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error

        if self._worker is not None:
            return
        layer = self._layer.value
        if layer is None:
            show_error("Choose a layer of localizations (a Points layer with a frame axis or uncertainties).")
            return
        values = persist.snapshot(self.values)
        persist.save(NAME, values)
        try:
            table = table_from_layer(
                layer.name,
                layer.data,
                layer.features,
                layer.metadata,
                layer.scale,
                layer.translate,
                values["pixel_size_nm"],
            )
        except ValueError as exc:  # SmlmInputError is a ValueError
            show_error(str(exc))
            return
        size = float(np.median(layer.size)) if np.size(layer.size) else 0.5

        @thread_worker
        def work():
            return run_task(task, table, values["frc_pixel_nm"], values["keep_linked"], size)

        self._status.value = f"{TITLES[task]}: running…"
        self._set_enabled(False)
        self._worker = work()
        self._worker.returned.connect(self._on_returned)
        self._worker.finished.connect(self._on_finished)
        self._worker.start()

    def _on_returned(self, outcome) -> None:
        from napari.utils.notifications import show_error

        if outcome.error is not None:
            self._status.value = f"{TITLES[outcome.task]}: failed"
            show_error(outcome.error)
            return
        for data, kwargs, _ in outcome.layers:
            if kwargs["name"] in self._viewer.layers:  # a re-run replaces its earlier result
                self._viewer.layers.remove(kwargs["name"])
            self._viewer.add_points(data, **kwargs)
        if outcome.task == "drift":
            draw_drift(self.figure, outcome.result)
        elif outcome.task == "frc":
            draw_frc(self.figure, outcome.result)
            self._resolution.value = outcome.summary
        self._status.value = outcome.details

    def _on_finished(self, *_) -> None:
        self._worker = None
        self._set_enabled(True)

    def _set_enabled(self, enabled: bool) -> None:
        for button in self._buttons.values():
            button.enabled = enabled
