"""Simulate dock widget: the simulator's parameters (SPEC 4), a live preview of a few
frames with the ground truth as Points, and "Write dataset" (stack + ground-truth CSV,
optional KDE targets) in a background worker with progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ..simulation import BACKGROUND_STRUCTURES, STRUCTURES, SimulationConfig, simulate_stack
from . import persist
from .layers import points_world, robust_contrast

if TYPE_CHECKING:  # pragma: no cover
    import napari

NAME = "simulate"
PREVIEW_FRAMES = 10


def config_from_values(values: dict, n_frames: int | None = None) -> SimulationConfig:
    cfg = SimulationConfig(
        n_frames=int(n_frames or values["frames"]), height_px=int(values["height_px"]),
        width_px=int(values["width_px"]), pixel_size_nm=float(values["pixel_size_nm"]),
        density_per_um2=float(values["density_per_um2"]), photons=float(values["photons"]),
        background_photons=float(values["background_photons"]), psf_sigma_px=float(values["psf_sigma_px"]),
        background_structure=str(values.get("background_structure", "flat")),
        hot_pixels=int(values.get("hot_pixels", 0)),
        gain_adu_per_photon=float(values["gain"]), offset_adu=float(values["offset_adu"]),
        read_noise_e=float(values["read_noise_e"]), structure=str(values["structure"]),
        blinking=bool(values["blinking"]), seed=int(values["seed"]))
    cfg.validate()
    return cfg


def preview_layers(cfg: SimulationConfig) -> list[tuple]:
    """The first frames as an Image and their ground truth as Points (napari layer tuples)."""
    small = SimulationConfig(**{**cfg.to_dict(), "n_frames": min(cfg.n_frames, PREVIEW_FRAMES)})
    stack = simulate_stack(small, quantize=True)
    meta = {"pixel_size_nm": cfg.pixel_size_nm, "offset_adu": cfg.offset_adu,
            "gain_adu_per_photon": cfg.gain_adu_per_photon}
    coords = points_world(stack.truth, cfg.pixel_size_nm, with_frame=True)
    return [(stack.adu, {"name": "simulation preview", "metadata": meta,
                         "contrast_limits": robust_contrast(stack.adu[0])}, "image"),
            (coords, {"name": "simulation ground truth", "size": 0.6, "face_color": "transparent",
                      "border_color": "cyan", "metadata": {"pixel_size_nm": cfg.pixel_size_nm},
                      "features": {"intensity": stack.truth.intensity_photons}}, "points")]


class SimulateWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self.values = {
            "frames": SpinBox(label="frames", min=1, max=10 ** 7, value=1000),
            "height_px": SpinBox(label="height (px)", min=4, max=4096, value=64),
            "width_px": SpinBox(label="width (px)", min=4, max=4096, value=64),
            "pixel_size_nm": FloatSpinBox(label="pixel size (nm)", min=1.0, max=10000.0, value=108.0),
            "density_per_um2": FloatSpinBox(label="density (/um²)", min=0.0, max=100.0, step=0.05, value=0.5),
            "photons": FloatSpinBox(label="photons / emitter", min=1.0, max=1e7, value=1000.0),
            "background_photons": FloatSpinBox(label="background (photons/px)", min=0.0, max=1e5, value=10.0),
            "background_structure": ComboBox(label="background shape", choices=list(BACKGROUND_STRUCTURES),
                                             value="flat"),
            "hot_pixels": SpinBox(label="hot pixels", min=0, max=10 ** 6, value=0),
            "psf_sigma_px": FloatSpinBox(label="PSF sigma (px)", min=0.1, max=10.0, step=0.01, value=0.92),
            "gain": FloatSpinBox(label="gain (ADU/photon)", min=0.001, max=1e4, step=0.01, value=1.0),
            "offset_adu": FloatSpinBox(label="offset (ADU)", min=0.0, max=60000.0, value=100.0),
            "read_noise_e": FloatSpinBox(label="read noise (e-)", min=0.0, max=1000.0, step=0.1, value=1.0),
            "structure": ComboBox(label="structure", choices=list(STRUCTURES), value="filaments"),
            "blinking": CheckBox(text="blinking (fixed sites)", value=True),
            "seed": SpinBox(label="seed", min=0, max=2 ** 31 - 1, value=0),
            "folder": FileEdit(label="output folder", mode="d", value=str(Path.home())),
            "name": LineEdit(label="dataset name", value="simulated"),
            "write_kde": CheckBox(text="also write 4x KDE targets", value=False),
        }
        self._preview = PushButton(text="Preview")
        self._write = PushButton(text="Write dataset")
        self._progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="")
        self.extend([*self.values.values(), self._preview, self._write, self._progress, self._status])
        persist.restore_into(self.values, NAME)
        self._preview.changed.connect(self.preview)
        self._write.changed.connect(self.write)

    def _config(self, n_frames=None):
        from napari.utils.notifications import show_error

        values = persist.snapshot(self.values)
        persist.save(NAME, values)
        try:
            return config_from_values(values, n_frames)
        except ValueError as exc:
            show_error(str(exc))
            return None

    def preview(self, *_):
        cfg = self._config()
        if cfg is None:
            return
        for data, kwargs, kind in preview_layers(cfg):
            if kwargs["name"] in self._viewer.layers:
                self._viewer.layers.remove(kwargs["name"])
            getattr(self._viewer, f"add_{kind}")(data, **kwargs)
        self._status.value = f"preview: {min(cfg.n_frames, PREVIEW_FRAMES)} frames"

    def write(self, *_):
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error, show_info

        from ..io.simulated import write_simulation

        cfg = self._config()
        if cfg is None:
            return
        name = (self.values["name"].value or "simulated").strip()
        folder = Path(self.values["folder"].value)
        if not folder.is_dir():
            show_error(f"The output folder {folder} does not exist; choose an existing folder.")
            return
        tif = folder / f"{name}.tif"
        kde = folder / f"{name}_kde.tif" if self.values["write_kde"].value else None

        from qtpy.QtCore import QTimer

        frames_done = [0]
        timer = QTimer()
        timer.timeout.connect(lambda: setattr(self._progress, "value", frames_done[0]))
        timer.start(200)
        self._timer = timer

        @thread_worker
        def work():
            try:
                truth = write_simulation(cfg, tif, tif.with_suffix(".csv"), kde,
                                         progress=lambda k, n: frames_done.__setitem__(0, k))
            except (OSError, ValueError) as exc:
                yield exc
                return
            yield (cfg.n_frames, cfg.n_frames, len(truth))

        self._write.enabled = False
        self._progress.max, self._progress.value = cfg.n_frames, 0

        def on_yield(item):
            if isinstance(item, Exception):
                show_error(f"Writing the dataset failed: {item}")
                return
            self._progress.value = item[0]
            show_info(f"wrote {tif} and {tif.with_suffix('.csv').name} ({item[2]} emitters)")
            self._status.value = f"wrote {tif.name} ({cfg.n_frames} frames)"

        self._worker = work()
        self._worker.yielded.connect(on_yield)
        self._worker.finished.connect(self._write_finished)
        self._worker.start()


    def _write_finished(self, *_):
        self._timer.stop()
        self._write.enabled = True
        self._worker = None
