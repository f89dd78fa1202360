"""Simulate dock widget: the simulator's parameters, a live preview of a few
frames with the ground truth as Points, and "Write dataset" (stack + ground-truth CSV,
optional KDE targets) in a background worker with progress. The emitters can be placed on
a structure taken from a Points layer (localizations) or an Image layer (a density, such
as a super-resolution render) of the viewer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
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

from ..errors import SmlmInputError
from ..simulation import BACKGROUND_STRUCTURES, STRUCTURES, SimulationConfig, StructurePrior, simulate_stack
from . import persist
from .layers import localizations_from_points, points_world, robust_contrast

if TYPE_CHECKING:  # pragma: no cover
    import napari

NAME = "simulate"
PREVIEW_FRAMES = 10
BUILT_IN = "(built-in structure)"


def structure_from_layer(
    name: str, kind: str, data, metadata: dict | None, scale, translate, pixel_size_nm: float
) -> StructurePrior:
    """A structure prior from a layer's data. World coordinates count camera pixels of
    ``metadata['pixel_size_nm']`` (our layers), else of ``pixel_size_nm`` (the simulated
    camera's); a Points layer gives points (nm, pixel centres at k + 0.5 as in localizations.py), an Image
    layer a density whose pixel is its scale times that camera pixel."""
    pixel = float((metadata or {}).get("pixel_size_nm") or pixel_size_nm)
    scale, translate = np.asarray(scale, float)[-2:], np.asarray(translate, float)[-2:]
    if kind == "points":
        points = np.array(data, float, ndmin=2)
        if points.size == 0 or points.shape[1] < 2:
            raise SmlmInputError(f"the layer {name!r} has no points to use as a structure")
        locs = localizations_from_points(points[:, -2:] * scale + translate, None, pixel)  # world -> nm
        xy = np.c_[locs.x_nm, locs.y_nm]
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 0:
            raise SmlmInputError(f"the layer {name!r} has no points with finite positions")
        return StructurePrior(points_nm=xy, source=f"layer {name}")
    image = np.asarray(data, float)
    image = image.reshape(-1, *image.shape[-2:]).sum(axis=0) if image.ndim > 2 else image
    image = np.clip(np.nan_to_num(image), 0, None)
    if image.ndim != 2 or image.sum() <= 0:
        raise SmlmInputError(f"the image layer {name!r} is empty (no positive pixels) and cannot be a structure")
    if not np.isclose(scale[0], scale[1]):
        raise SmlmInputError(f"the image layer {name!r} has non-square pixels; a structure image needs square ones")
    return StructurePrior(image=image, image_pixel_nm=pixel * float(scale[1]), source=f"layer {name}")


def config_from_values(values: dict, n_frames: int | None = None) -> SimulationConfig:
    cfg = SimulationConfig(
        n_frames=int(n_frames or values["frames"]),
        height_px=int(values["height_px"]),
        width_px=int(values["width_px"]),
        pixel_size_nm=float(values["pixel_size_nm"]),
        density_per_um2=float(values["density_per_um2"]),
        photons=float(values["photons"]),
        background_photons=float(values["background_photons"]),
        psf_sigma_px=float(values["psf_sigma_px"]),
        background_structure=str(values.get("background_structure", "flat")),
        hot_pixels=int(values.get("hot_pixels", 0)),
        gain_adu_per_photon=float(values["gain"]),
        offset_adu=float(values["offset_adu"]),
        read_noise_e=float(values["read_noise_e"]),
        structure=str(values["structure"]),
        blinking=bool(values["blinking"]),
        seed=int(values["seed"]),
    )
    cfg.validate()
    return cfg


def preview_layers(cfg: SimulationConfig, prior: StructurePrior | None = None) -> list[tuple]:
    """The first frames as an Image and their ground truth as Points (napari layer tuples)."""
    small = SimulationConfig(**{**cfg.to_dict(), "n_frames": min(cfg.n_frames, PREVIEW_FRAMES)})
    stack = simulate_stack(small, quantize=True, prior=prior)
    meta = {
        "pixel_size_nm": cfg.pixel_size_nm,
        "offset_adu": cfg.offset_adu,
        "gain_adu_per_photon": cfg.gain_adu_per_photon,
    }
    coords = points_world(stack.truth, cfg.pixel_size_nm, with_frame=True)
    return [
        (
            stack.adu,
            {"name": "simulation preview", "metadata": meta, "contrast_limits": robust_contrast(stack.adu[0])},
            "image",
        ),
        (
            coords,
            {
                "name": "simulation ground truth",
                "size": 0.6,
                "face_color": "transparent",
                "border_color": "cyan",
                "metadata": {"pixel_size_nm": cfg.pixel_size_nm},
                "features": {"intensity": stack.truth.intensity_photons},
            },
            "points",
        ),
    ]


class SimulateWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self.values = {
            "frames": SpinBox(label="frames", min=1, max=10**7, value=1000),
            "height_px": SpinBox(label="height (px)", min=4, max=4096, value=64),
            "width_px": SpinBox(label="width (px)", min=4, max=4096, value=64),
            "pixel_size_nm": FloatSpinBox(label="pixel size (nm)", min=1.0, max=10000.0, value=108.0),
            "density_per_um2": FloatSpinBox(label="density (/um²)", min=0.0, max=100.0, step=0.05, value=0.5),
            "photons": FloatSpinBox(label="photons / emitter", min=1.0, max=1e7, value=1000.0),
            "background_photons": FloatSpinBox(label="background (photons/px)", min=0.0, max=1e5, value=10.0),
            "background_structure": ComboBox(
                label="background shape", choices=list(BACKGROUND_STRUCTURES), value="flat"
            ),
            "hot_pixels": SpinBox(label="hot pixels", min=0, max=10**6, value=0),
            "psf_sigma_px": FloatSpinBox(label="PSF sigma (px)", min=0.1, max=10.0, step=0.01, value=0.92),
            "gain": FloatSpinBox(label="gain (ADU/photon)", min=0.001, max=1e4, step=0.01, value=1.0),
            "offset_adu": FloatSpinBox(label="offset (ADU)", min=0.0, max=60000.0, value=100.0),
            "read_noise_e": FloatSpinBox(label="read noise (e-)", min=0.0, max=1000.0, step=0.1, value=1.0),
            "structure": ComboBox(label="structure", choices=list(STRUCTURES), value="filaments"),
            "structure_layer": ComboBox(label="structure from layer", choices=self._layer_choices),
            "blinking": CheckBox(text="blinking (fixed sites)", value=True),
            "seed": SpinBox(label="seed", min=0, max=2**31 - 1, value=0),
            "folder": FileEdit(label="output folder", mode="d", value=str(Path.home())),
            "name": LineEdit(label="dataset name", value="simulated"),
            "write_kde": CheckBox(text="also write 4x KDE targets", value=False),
        }
        self._preview = PushButton(text="Preview")
        self._write = PushButton(text="Write dataset")
        self._progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="")
        self.extend([*self.values.values(), self._preview, self._write, self._progress, self._status])
        persist.restore_into({k: v for k, v in self.values.items() if k != "structure_layer"}, NAME)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.values["structure_layer"].reset_choices())
        self._preview.changed.connect(self.preview)
        self._write.changed.connect(self.write)

    def _layer_choices(self, *_):
        from napari.layers import Image, Points

        return [BUILT_IN] + [
            layer.name
            for layer in self._viewer.layers
            if isinstance(layer, (Image, Points)) and not layer.name.startswith("simulation ")
        ]

    def _config(self, n_frames=None):
        """(config, structure prior or None), or (None, None) after telling the user why."""
        from napari.utils.notifications import show_error

        values = persist.snapshot({k: v for k, v in self.values.items() if k != "structure_layer"})
        persist.save(NAME, values)
        try:
            cfg = config_from_values(values, n_frames)
            chosen = self.values["structure_layer"].value
            if not chosen or chosen == BUILT_IN or chosen not in self._viewer.layers:
                return cfg, None
            layer = self._viewer.layers[chosen]
            kind = "points" if layer.__class__.__name__ == "Points" else "image"
            prior = structure_from_layer(
                layer.name, kind, layer.data, layer.metadata, layer.scale, layer.translate, cfg.pixel_size_nm
            )
            return replace(cfg, structure_source=prior.source), prior
        except ValueError as exc:  # SmlmInputError is a ValueError
            show_error(str(exc))
            return None, None

    def preview(self, *_):
        cfg, prior = self._config()
        if cfg is None:
            return
        try:
            layers = preview_layers(cfg, prior)
        except ValueError as exc:  # e.g. no structure sites inside the field
            from napari.utils.notifications import show_error

            show_error(str(exc))
            return
        for data, kwargs, kind in layers:
            if kwargs["name"] in self._viewer.layers:
                self._viewer.layers.remove(kwargs["name"])
            getattr(self._viewer, f"add_{kind}")(data, **kwargs)
        self._status.value = f"preview: {min(cfg.n_frames, PREVIEW_FRAMES)} frames"

    def write(self, *_):
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error, show_info

        from ..io.simulated import write_simulation

        cfg, prior = self._config()
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
                truth = write_simulation(
                    cfg,
                    tif,
                    tif.with_suffix(".csv"),
                    kde,
                    progress=lambda k, n: frames_done.__setitem__(0, k),
                    prior=prior,
                )
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
