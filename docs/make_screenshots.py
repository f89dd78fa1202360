"""Regenerate the user-guide screenshots (docs/images/*.png) on the sample data.

    xvfb-run -a .venv/bin/python docs/make_screenshots.py

Opens a real napari viewer (a virtual screen is enough), loads File > Open Sample >
"Simulated SMLM stack (filaments)", docks each widget, runs it, and saves a window
screenshot per widget, so the guide always shows the current widgets.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = "napari-smlm-diffusion"
OUT = Path(__file__).parent / "images"


def _wait(app, condition, timeout_s=600.0):
    end = time.monotonic() + timeout_s
    while not condition():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish in time")


def _shot(viewer, app, name):
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)
    viewer.window.screenshot(str(OUT / name), canvas_only=False)
    print(f"wrote {OUT / name}")


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    os.environ.setdefault("SMLM_DIFFUSION_CONFIG_DIR", tempfile.mkdtemp())  # leave the user's settings alone
    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    app = QApplication.instance()
    viewer.open_sample(PLUGIN, "filaments")
    viewer.layers["ground truth"].visible = False

    # Reconstruct: the current frame with posterior sampling
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    widget.values["scope"].value = "current frame"
    widget.values["posterior"].value = True
    widget.start()
    _wait(app, lambda: widget._worker is None)
    viewer.layers["SMLM filaments (simulated)"].opacity = 0.6
    viewer.reset_view()
    _shot(viewer, app, "reconstruct.png")
    viewer.window.remove_dock_widget(dock)

    # Evaluate: those localizations against the sample's ground truth (frame 1 only)
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Evaluate")
    truth = viewer.layers["ground truth"]
    current = viewer.dims.current_step[0]  # the frame the Reconstruct run used
    shown = truth.data[truth.data[:, 0] == current]
    viewer.add_points(
        shown, name="ground truth, this frame", size=0.6, face_color="transparent", border_color="cyan", visible=False
    )
    widget.reset_choices()
    widget._predicted.value = "localizations [SMLM filaments (simulated)]"
    widget._truth.value = "ground truth, this frame"
    widget.run()
    _shot(viewer, app, "evaluate.png")
    viewer.window.remove_dock_widget(dock)

    # Simulate: preview of a disc-prior dataset
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Simulate")
    widget.values["structure"].value = "filaments"
    widget.preview()
    viewer.reset_view()
    _shot(viewer, app, "simulate.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
