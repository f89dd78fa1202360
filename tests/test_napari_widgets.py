"""Reader, writer and the three dock widgets in a real viewer (virtual X screen)."""

import numpy as np
import pytest

from smlm_diffusion.io import read_localizations_csv, write_stack
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

PLUGIN = "napari-smlm-diffusion"


@pytest.fixture
def bundled_or_tiny(monkeypatch, tiny_models, request):
    """Point the widgets' default model names at the tiny models (plumbing tests)."""
    from pathlib import Path

    from smlm_diffusion.models import store

    folder = Path(tiny_models["phi"]).parent
    monkeypatch.setattr(store, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(store, "MANIFEST", folder / "manifest.json")


def _movie(tmp_path, n_frames=3, seed=3, density=0.6):
    cfg = SimulationConfig(
        n_frames=n_frames,
        height_px=24,
        width_px=28,
        density_per_um2=density,
        photons=3000,
        background_photons=5,
        offset_adu=100.0,
        gain_adu_per_photon=2.0,
        seed=seed,
    )
    sim = simulate_stack(cfg, quantize=True)
    path = write_stack(
        tmp_path / "movie.tif", sim.adu, 108.0, extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 2.0}
    )
    return path, sim


def test_reader_opens_stacks_and_declines_others(make_napari_viewer, tmp_path):
    from smlm_diffusion._napari.reader import get_reader

    path, sim = _movie(tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and layers[0].data.shape == (3, 24, 28)
    assert layers[0].metadata["pixel_size_nm"] == pytest.approx(108.0)
    assert layers[0].metadata["gain_adu_per_photon"] == pytest.approx(2.0)
    assert np.array_equal(np.asarray(layers[0].data), sim.adu)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    assert get_reader(str(tmp_path / "broken.tif")) is None
    assert get_reader(str(tmp_path / "image.png")) is None


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _wait_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def test_reconstruct_widget_runs_and_aligns(make_napari_viewer, qtbot, tmp_path, bundled_or_tiny):
    path, sim = _movie(tmp_path, n_frames=2)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = _dock(viewer, "Reconstruct")
    assert widget.values["gain"].value == pytest.approx(2.0)
    assert "cpu" in widget.values["device"].choices and "CPU" in widget._device_kind.value
    widget.values["scope"].value = "whole stack"
    widget.values["chains"].value = 2
    widget.start()
    _wait_idle(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    for prefix in ("posterior mean", "posterior variance", "localizations", "render", "render variance"):
        assert f"{prefix} [movie.tif]" in names
    mean = viewer.layers["posterior mean [movie.tif]"]
    assert mean.data.shape == (96, 112)
    assert np.allclose(mean.scale, [0.25, 0.25]) and np.allclose(mean.translate, [-0.375, -0.375])
    points = viewer.layers["localizations [movie.tif]"]
    assert {
        "uncertainty_xy_nm",
        "probability",
        "intensity",
        "crlb_xy_nm",
        "posterior_spread_xy_nm",
        "background",
        "fit_deviance",
        "fit_ok",
    } <= set(points.features.columns)
    assert "finished" in widget._status.value


def test_reconstruct_widget_cancel_keeps_finished_frames(
    make_napari_viewer, qtbot, tmp_path, bundled_or_tiny, monkeypatch
):
    import time

    from smlm_diffusion.reconstruction import engine

    localize = engine.refine_frame

    def slow_localize(*args, **kwargs):  # tiny models are too quick to cancel mid-stack
        time.sleep(0.3)
        return localize(*args, **kwargs)

    monkeypatch.setattr(engine, "refine_frame", slow_localize)
    path, _ = _movie(tmp_path, n_frames=6)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = _dock(viewer, "Reconstruct")
    widget.values["scope"].value = "whole stack"
    widget.values["chains"].value = 2
    seen = []

    def cancel_after_first(update):
        event = getattr(update, "event", None)
        if getattr(event, "frame_result", None) is not None and not seen:
            seen.append(event.frame_result.frame)
            widget.cancel()

    widget.start()
    widget._worker.yielded.connect(cancel_after_first)
    _wait_idle(qtbot, widget)
    result = widget._run_handle.result
    assert not result.completed and 1 <= len(result.frames) < 6
    assert "cancelled" in widget._status.value
    assert "posterior mean [movie.tif]" in viewer.layers
    # every finished frame is shown, also those after the last live refresh
    assert len(viewer.layers["localizations [movie.tif]"].data) == len(result.localizations)
    assert viewer.layers["posterior mean [movie.tif]"].metadata["frame"] == result.frames[-1]
    # which psi sampled it: auto, and the tiny models' folder has no psi-sparse
    assert viewer.layers["posterior mean [movie.tif]"].metadata["psi_model"] == result.psi_model == "psi"
    assert viewer.layers["posterior mean [movie.tif]"].metadata["psi_choice"] == "psi-sparse is not installed"


def test_reconstruct_widget_bad_input_is_one_line(make_napari_viewer, monkeypatch, bundled_or_tiny):
    from smlm_diffusion._napari import reconstruct_widget

    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 16, 16), np.uint16), name="raw")
    widget = _dock(viewer, "Reconstruct")
    widget.values["scope"].value = "frame range"
    widget.values["first_frame"].value, widget.values["last_frame"].value = 2, 9
    widget.start()
    assert errors and "outside the stack" in errors[0] and "\n" not in errors[0]
    assert widget._worker is None and reconstruct_widget is not None


def test_whole_stack_layers_exist_from_the_start_and_go_if_no_frame_finishes(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, bundled_or_tiny
):
    """A multi-frame run adds its (empty) layers while it starts, with the names and
    transforms of the finished run's layers; a run that fails before any frame removes them."""
    from smlm_diffusion._napari.reconstruct_logic import placeholder_layers
    from smlm_diffusion.reconstruction import engine

    path, _ = _movie(tmp_path, n_frames=4)
    viewer = make_napari_viewer()
    raw = viewer.open(str(path), plugin=PLUGIN)[0]
    widget = _dock(viewer, "Reconstruct")
    widget.values["scope"].value = "whole stack"
    widget.values["posterior"].value = False
    widget.start()
    assert "localizations [movie.tif]" in viewer.layers  # added by Run itself, before the worker's first event
    _wait_idle(qtbot, widget)
    result = widget._run_handle.result
    empty = {
        kwargs["name"]: (data, kwargs)
        for data, kwargs, _ in placeholder_layers(widget._run_handle, raw.scale, raw.translate, True, "movie.tif")
    }
    # phi only: no per-frame KDE layer; the precision render is empty until the table is finished
    assert set(empty) == {"localizations [movie.tif]", "render KDE [movie.tif]", "render [movie.tif]"}
    assert not np.any(empty["render [movie.tif]"][0]) and empty["render [movie.tif]"][0].shape == result.render.shape
    assert np.allclose(viewer.layers["render KDE [movie.tif]"].data, result.render_kde)  # filled by the run
    assert np.allclose(
        viewer.layers["render KDE [movie.tif]"].translate, empty["render KDE [movie.tif]"][1]["translate"]
    )
    assert not np.any(empty["render KDE [movie.tif]"][0]) and len(empty["localizations [movie.tif]"][0]) == 0
    render = viewer.layers["render [movie.tif]"]
    assert np.allclose(render.data, result.render) and render.metadata["render_pixel_nm"] == result.render_pixel_nm
    # the points above every image, so that each layer stays visible
    assert viewer.layers.index("localizations [movie.tif]") > viewer.layers.index("render [movie.tif]")

    for layer in [layer for layer in viewer.layers if layer is not raw]:
        layer.name = "earlier " + layer.name  # (kept: napari 0.9 under software OpenGL can crash on removal)
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(engine, "check_camera", broken)
    widget.start()
    _wait_idle(qtbot, widget)
    qtbot.wait(200)  # placeholders still queued would have been added by now
    assert errors and "disk gone" in errors[0]
    assert "render [movie.tif]" not in viewer.layers and "localizations [movie.tif]" not in viewer.layers


def test_kept_frame_kdes_follow_the_frame_slider(make_napari_viewer, qtbot, tmp_path, monkeypatch, bundled_or_tiny):
    """'keep each frame's KDE' on a frame range: one layer holds every frame of the run, each
    plane on its raw frame's world position, equal to the engine's KDE of that frame; too
    much memory is refused in one sentence."""
    from smlm_diffusion._napari import reconstruct_widget
    from smlm_diffusion.reconstruction import reconstruct

    path, sim = _movie(tmp_path, n_frames=5)
    viewer = make_napari_viewer()
    raw = viewer.open(str(path), plugin=PLUGIN)[0]
    widget = _dock(viewer, "Reconstruct")
    widget.values["scope"].value = "frame range"
    widget.values["first_frame"].value, widget.values["last_frame"].value = 2, 4
    widget.values["posterior"].value = False
    widget.values["frame_kdes"].value = True
    widget.start()
    _wait_idle(qtbot, widget)
    layer = viewer.layers["phi estimate [movie.tif]"]
    assert layer.data.shape == (3, 96, 112) and layer.metadata["frames"] == (2, 4)
    for plane in range(3):  # plane j sits on raw frame 2 + j (index 1 + j)
        assert layer.data_to_world([plane, 0, 0])[0] == pytest.approx(raw.data_to_world([1 + plane, 0, 0])[0])
    settings = widget._run_handle.result.settings
    settings.keep_frame_kdes = True
    engine = reconstruct(sim.adu, settings)
    for plane, frame in enumerate((2, 3, 4)):
        assert np.allclose(layer.data[plane], engine.mean_kdes[frame], atol=1e-6)

    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    monkeypatch.setattr(reconstruct_widget, "FRAME_KDES_MAX_BYTES", 1000)
    widget.start()
    assert errors and "keeping each frame's KDE for 3 frames needs" in errors[0] and "\n" not in errors[0]
    assert widget._worker is None


def test_simulate_widget_preview_and_write(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Simulate")
    widget.values["frames"].value = 30
    widget.values["height_px"].value = widget.values["width_px"].value = 20
    widget.values["folder"].value = str(tmp_path)
    widget.values["name"].value = "sim"
    widget.preview()
    assert viewer.layers["simulation preview"].data.shape == (10, 20, 20)
    assert len(viewer.layers["simulation ground truth"].data) > 0
    widget.write()
    _wait_idle(qtbot, widget)
    assert (tmp_path / "sim.tif").exists()
    assert len(read_localizations_csv(tmp_path / "sim.csv")) > 0
    # parameters persist into the next session's widget
    again = _dock(make_napari_viewer(), "Simulate")
    assert again.values["frames"].value == 30 and again.values["name"].value == "sim"


def test_structure_from_layer_keeps_coordinates_and_says_what_is_wrong():
    from smlm_diffusion._napari.simulate_widget import structure_from_layer
    from smlm_diffusion.errors import SmlmInputError

    # points at world (row, col) (4, 6) of a 100 nm camera: x = 650 nm, y = 450 nm (pixel centres at k + 0.5)
    prior = structure_from_layer(
        "locs", "points", [[0, 4.0, 6.0], [1, 5.0, 5.0]], {"pixel_size_nm": 100.0}, (1, 1, 1), (0, 0, 0), 108.0
    )
    np.testing.assert_allclose(prior.points_nm, [[650.0, 450.0], [550.0, 550.0]])
    # a 4x render (scale 0.25 camera px) of a 100 nm camera has 25 nm pixels
    image = structure_from_layer(
        "render", "image", np.ones((8, 8)), {"pixel_size_nm": 100.0}, (0.25, 0.25), (0, 0), 108.0
    )
    assert image.image_pixel_nm == pytest.approx(25.0)
    # a layer without metadata counts pixels of the simulated camera
    assert structure_from_layer("x", "image", np.ones((4, 4)), {}, (1, 1), (0, 0), 108.0).image_pixel_nm == 108.0
    with pytest.raises(SmlmInputError, match="no points"):
        structure_from_layer("empty", "points", np.zeros((0, 2)), {}, (1, 1), (0, 0), 108.0)
    with pytest.raises(SmlmInputError, match="empty"):
        structure_from_layer("dark", "image", np.zeros((4, 4)), {}, (1, 1), (0, 0), 108.0)


def test_simulate_widget_places_emitters_on_a_points_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    angle = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    ring = np.c_[10 + 4 * np.sin(angle), 10 + 4 * np.cos(angle)]  # radius 4 camera px around (10, 10)
    viewer.add_points(ring, name="my ring")
    widget = _dock(viewer, "Simulate")
    widget.values["height_px"].value = widget.values["width_px"].value = 20
    widget.values["pixel_size_nm"].value = 100.0
    widget.values["density_per_um2"].value = 2.0
    assert "my ring" in widget.values["structure_layer"].choices
    widget.values["structure_layer"].value = "my ring"
    widget.preview()
    truth = viewer.layers["simulation ground truth"].data
    radius = np.hypot(truth[:, 1] - 10, truth[:, 2] - 10)
    assert len(truth) > 10 and np.allclose(radius, 4.0, atol=0.05)


def test_evaluate_widget_and_writer_round_trip(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "filaments")
    widget = _dock(viewer, "Evaluate")
    widget._predicted.value = "ground truth"
    widget._truth.value = "ground truth"
    widget.run()
    assert widget.metrics["jaccard"] == 1.0 and widget.metrics["false_negatives"] == 0
    assert len(viewer.layers["matched (TP)"].data) == len(viewer.layers["ground truth"].data)
    # Points -> CSV through the manifest writer -> same positions back
    out = tmp_path / "truth.csv"
    napari.save_layers(str(out), [viewer.layers["ground truth"]], plugin=PLUGIN)
    back = read_localizations_csv(out)
    points = viewer.layers["ground truth"].data
    assert len(back) == len(points)
    assert np.allclose(back.x_nm / 108.0 - 0.5, points[:, 2], atol=1e-6)
    assert np.array_equal(back.frame, points[:, 0].astype(int) + 1)
    hdf = tmp_path / "truth.hdf5"
    napari.save_layers(str(hdf), [viewer.layers["ground truth"]], plugin=PLUGIN)
    import h5py

    with h5py.File(hdf) as handle:
        locs = handle["locs"][...]
    # Picasso's convention is napari's: the centre of pixel c is at c
    assert len(locs) == len(points) and np.allclose(locs["x"], points[:, 2], atol=1e-4)
    assert (tmp_path / "truth.yaml").exists()


def test_reconstruct_widget_layers_line_up_with_the_truth(make_napari_viewer, qtbot, tmp_path):
    """Bundled models: raw spot, KDE peak and point coincide in world coordinates
    (within 0.25 raw px of the simulated emitters)."""
    from smlm_diffusion._napari.layers import points_world
    from smlm_diffusion.analysis.metrics import match_points

    path, sim = _movie(tmp_path, n_frames=2, seed=8, density=0.4)
    viewer = make_napari_viewer()
    raw = viewer.open(str(path), plugin=PLUGIN)[0]
    raw.scale, raw.translate = (1.0, 2.0, 2.0), (0.0, 10.0, -4.0)  # a user-set transform must be honoured
    widget = _dock(viewer, "Reconstruct")
    widget.values["chains"].value = 4
    widget.values["scope"].value = "whole stack"
    widget.start()
    _wait_idle(qtbot, widget)
    points = viewer.layers["localizations [movie.tif]"]
    assert points.data.shape[1] == 3 and set(np.unique(points.data[:, 0])) <= {0.0, 1.0}
    truth_world = points_world(sim.truth, 108.0, raw.scale, raw.translate, with_frame=True)
    in_frame_1 = truth_world[:, 0] == 0
    truth_world = truth_world[in_frame_1]
    found, true, distance = match_points(points.data[points.data[:, 0] == 0, 1:], truth_world[:, 1:], tolerance=2.0)
    assert len(found) >= 0.8 * in_frame_1.sum() and len(found) >= 2
    assert np.all(distance / 2.0 < 0.25)  # raw px (world units are 2 per raw px here)
    mean = viewer.layers["posterior mean [movie.tif]"]  # shows the last finished frame (frame 2)
    assert mean.metadata["frame"] == 2
    last = points_world(sim.truth, 108.0, raw.scale, raw.translate, with_frame=True)
    peak_here = []
    for world in last[last[:, 0] == 1]:
        r, c = np.round((world[1:] - np.asarray(mean.translate)) / np.asarray(mean.scale)).astype(int)
        r, c = np.clip([r, c], 4, np.array(mean.data.shape) - 5)
        near = mean.data[r - 1 : r + 2, c - 1 : c + 2].max()
        around = mean.data[r - 4 : r + 5, c - 4 : c + 5].max()
        peak_here.append(near == around and near > 0.005)  # KDE peak within 1 KDE px = 0.25 raw px
    assert np.mean(peak_here) >= 0.8


def test_reconstruct_settings_carry_the_camera_choice_and_the_detection_knob():
    from smlm_diffusion._napari.reconstruct_logic import CAMERA_CHOICES, build_settings

    values = {
        "pixel_size_nm": 100.0,
        "offset_adu": 90.0,
        "gain": 2.0,
        "scope": "whole stack",
        "posterior": False,
        "camera": CAMERA_CHOICES[1],
        "emccd": True,
        "min_photons": 250.0,
        "psf_sigma_px": 0.0,
    }
    settings = build_settings(values, n_frames=10)
    assert settings.camera == "auto" and settings.emccd and settings.min_photons == 250.0
    assert settings.psf_sigma_px is None  # 0 in the widget: measure it on the movie
    settings = build_settings({**values, "camera": CAMERA_CHOICES[0], "psf_sigma_px": 1.2}, n_frames=10)
    assert settings.camera == "given" and settings.psf_sigma_px == 1.2
    assert settings.false_alarm == 1e-3 and settings.render_pixel_nm == 0.0  # the defaults
    settings = build_settings({**values, "false_alarm": "1e-05", "render_pixel_nm": 2.0}, n_frames=10)
    assert settings.false_alarm == 1e-5 and settings.render_pixel_nm == 2.0


def test_reconstruct_widget_warns_once_about_a_wrong_gain(
    make_napari_viewer, qtbot, tmp_path, bundled_or_tiny, monkeypatch
):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    cfg = SimulationConfig(
        n_frames=30,
        height_px=40,
        width_px=40,
        density_per_um2=0.5,
        photons=2000,
        background_photons=40.0,
        background_structure="gradient",
        offset_adu=100.0,
        gain_adu_per_photon=3.0,
        seed=2,
    )
    path = write_stack(
        tmp_path / "wrong_gain.tif",
        simulate_stack(cfg, quantize=True).adu,
        108.0,
        extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.0},
    )
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = _dock(viewer, "Reconstruct")
    widget.values["posterior"].value = False
    widget.start()
    _wait_idle(qtbot, widget)
    about_gain = [message for message in shown if "camera gain" in message]
    assert len(about_gain) == 1 and "below the gain estimated from the movie" in about_gain[0]
    assert all("\n" not in message for message in shown)


def test_reconstruct_widget_whole_stack_keeps_the_gui_live(make_napari_viewer, qtbot, tmp_path):
    """Bundled phi, 100 frames: a 20 ms QTimer never waits 0.5 s, layers refresh at a
    bounded rate, the status shows speed and time left, and the final layers hold the run."""
    import time

    from qtpy.QtCore import QTimer

    from smlm_diffusion._napari.reconstruct_logic import frame_layers

    cfg = SimulationConfig(
        n_frames=100,
        height_px=32,
        width_px=32,
        density_per_um2=0.8,
        photons=3000,
        background_photons=5,
        offset_adu=100.0,
        gain_adu_per_photon=2.0,
        seed=5,
    )
    path = write_stack(
        tmp_path / "long.tif",
        simulate_stack(cfg, quantize=True).adu,
        108.0,
        extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 2.0},
    )
    viewer = make_napari_viewer()
    raw = viewer.open(str(path), plugin=PLUGIN)[0]
    widget = _dock(viewer, "Reconstruct")
    widget.values["scope"].value = "whole stack"
    widget.values["posterior"].value = False
    ticks, statuses, refreshes = [], [], []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def stop_timer():
        timer.stop()
        ticks.append(time.perf_counter())

    def watch(update):
        statuses.append(widget._status.value)
        refreshes.append(getattr(update, "refresh", None) is not None)

    timer.start()
    started = time.perf_counter()
    widget.start()
    widget._worker.yielded.connect(watch)
    widget._worker.finished.connect(stop_timer)
    _wait_idle(qtbot, widget)
    result = widget._run_handle.result
    assert result.completed and len(result.frames) == 100
    longest_gap = float(np.max(np.diff(ticks)))
    speeds = [s for s in statuses if "frames/s" in s]
    print(
        f"longest event-loop gap {longest_gap:.3f} s; {sum(refreshes)} refreshes in "
        f"{ticks[-1] - started:.1f} s; last status: {speeds[-1] if speeds else statuses[-1]}"
    )
    assert longest_gap < 0.5
    assert sum(refreshes) <= 2 + (ticks[-1] - started) / 0.5 and sum(refreshes) < 50  # bounded, not per frame
    assert speeds and "left" in speeds[-1]
    # the final layers are those of the whole run (as frame_layers builds them from scratch)
    points = viewer.layers["localizations [long.tif]"]
    locs = result.localizations
    assert len(locs) > 0 and len(points.data) == len(locs)
    expected = {
        kwargs["name"]: (data, kwargs)
        for data, kwargs, _ in frame_layers(widget._live.latest, result, raw.scale, raw.translate, True, "long.tif")
    }
    assert np.allclose(points.data, expected["localizations [long.tif]"][0])
    assert np.allclose(points.features["uncertainty_xy_nm"], locs.uncertainty_xy_nm, equal_nan=True)
    assert np.allclose(viewer.layers["render KDE [long.tif]"].data, result.render_kde.astype(np.float32))
    assert np.allclose(viewer.layers["render [long.tif]"].data, result.render)
    # phi only over many frames: no layer of the latest frame's KDE (it would not follow the slider)
    assert not any(layer.name.startswith("phi estimate") for layer in viewer.layers)


def test_live_layers_refresh_at_a_bounded_rate_and_catch_up():
    from types import SimpleNamespace

    from smlm_diffusion._napari.reconstruct_logic import LiveLayers, RefreshPacer, RunClock, format_duration
    from smlm_diffusion.localizations import Localizations
    from smlm_diffusion.reconstruction import FrameResult, ProgressEvent, Reconstruction, ReconstructionSettings

    pacer = RefreshPacer(min_interval_s=0.5, cost_factor=10.0)
    assert pacer.due(0.0)
    pacer.started(0.0)
    assert not pacer.due(5.0)  # the previous refresh is still queued
    pacer.applied(0.2)
    assert not pacer.due(1.9) and pacer.due(2.0)  # a 0.2 s refresh: 2 s apart, not 0.5 s

    now = [0.0]
    result = Reconstruction(
        ReconstructionSettings(), shape_px=(8, 8), render_kde=np.zeros((32, 32)), frames_requested=6
    )
    run = SimpleNamespace(result=result)
    live = LiveLayers(
        run, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), True, "raw", clock=lambda: now[0], pacer=RefreshPacer(min_interval_s=0.5)
    )
    built = []
    for frame in range(1, 7):
        locs = Localizations(
            frame=[frame] * frame,
            x_nm=np.full(frame, 300.0),
            y_nm=np.full(frame, 200.0),
            uncertainty_xy_nm=np.full(frame, 10.0),
        )
        result.frame_tables.append(locs)
        result.frames.append(frame)
        result.render_kde += 1.0
        kde = np.full((32, 32), float(frame), np.float32)
        refresh = live.observe(ProgressEvent(frame, 6, FrameResult(frame, kde, None, locs), f"frame {frame}"))
        if refresh is not None:
            built.append(refresh)
            live.applied(refresh, 0.001)
        now[0] += 0.2
    assert [r.frames for r in built] == [1, 4]  # at t = 0 and t = 0.6 s
    final = live.catch_up(after=live.shown)
    assert final.frames == 6 and live.catch_up(after=6) is None
    layers = {kwargs["name"]: data for data, kwargs, _ in final.layers}
    assert len(layers["localizations [raw]"]) == 21 and "phi estimate [raw]" not in layers  # phi path, 6 frames
    assert np.all(layers["render KDE [raw]"] == 6) and "render [raw]" not in layers  # drawn when the run ends

    clock = RunClock()
    assert clock.update(1, 100, 1, now=10.0) == "estimating speed…"
    assert clock.update(11, 100, 11, now=12.0) == "5 frames/s, about 18 s left"
    assert format_duration(3725) == "1 h 02 min" and format_duration(75) == "1 min 15 s"
