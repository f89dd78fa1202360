"""The "Drift & resolution" widget: its Qt-free logic on a synthetic drifting experiment,
and the widget in a real viewer (virtual X screen)."""

import subprocess
import sys

import numpy as np
import pytest

from smlm_diffusion._napari import postprocess_logic as logic
from smlm_diffusion._napari.layers import localizations_from_points, points_features, points_world
from smlm_diffusion.localizations import Localizations

PLUGIN = "napari-smlm-diffusion"
PIXEL_NM = 100.0
N_FRAMES = 600


def _structure(rng, n_sites):
    """Sites on 8 lines through a 10 um field (nm), as in test_postprocess.py."""
    t = rng.uniform(-0.5, 0.5, n_sites)
    angle = rng.integers(0, 8, n_sites) * np.pi / 8
    return np.c_[5000 + 8000 * t * np.cos(angle), 5000 + 8000 * t * np.sin(angle)]


def _blinking(rng, sites, n_frames, sigma_nm, drift=None):
    """Each site is on once, for a geometric number of frames (mean 3); positions jittered
    by ``sigma_nm`` and moved by ``drift(frame) -> (dx, dy)``."""
    start = rng.integers(1, n_frames - 10, len(sites))
    length = rng.geometric(1.0 / 3.0, len(sites))
    frame = np.repeat(start, length) + np.concatenate([np.arange(k) for k in length])
    site = np.repeat(np.arange(len(sites)), length)
    frame, site = frame[frame <= n_frames], site[frame <= n_frames]
    dx, dy = drift(frame) if drift is not None else (0.0, 0.0)
    return Localizations(
        frame=frame,
        x_nm=sites[site, 0] + dx + rng.normal(0, sigma_nm, len(site)),
        y_nm=sites[site, 1] + dy + rng.normal(0, sigma_nm, len(site)),
        intensity_photons=np.full(len(site), 1000.0),
        uncertainty_xy_nm=np.full(len(site), float(sigma_nm)),
    )


def _linear_drift(frame):
    f = np.asarray(frame, float) - 1
    return 120 * f / N_FRAMES, -80 * f / N_FRAMES


@pytest.fixture(scope="module")
def drifting():
    """~20k localizations of blinking sites on lines, 600 frames, a linear drift."""
    rng = np.random.default_rng(0)
    return _blinking(rng, _structure(rng, 6700), N_FRAMES, 10.0, drift=_linear_drift)


def _table(locs, name="locs", with_frame=True):
    data = points_world(locs, PIXEL_NM, with_frame=with_frame)
    ones = (1.0,) * data.shape[1]
    return logic.table_from_layer(
        name, data, points_features(locs), {"pixel_size_nm": PIXEL_NM}, ones, (0.0,) * data.shape[1], PIXEL_NM
    )


def _one_sentence(text):
    assert text and "\n" not in text and "Traceback" not in text
    assert text.rstrip(".").count(". ") == 0


def test_localization_layers_are_those_with_frames_or_uncertainties():
    assert logic.is_localization_layer(3, [])
    assert logic.is_localization_layer(2, ["uncertainty_xy_nm", "intensity"])
    assert not logic.is_localization_layer(2, ["intensity"])


def test_drift_corrected_layer_removes_the_drift_and_keeps_the_features(drifting):
    table = _table(drifting)
    outcome = logic.run_task("drift", table)
    assert outcome.error is None and "residual" in outcome.summary
    ((data, kwargs, kind),) = outcome.layers
    assert kind == "points" and kwargs["name"] == "locs drift-corrected" and data.shape == table.data.shape
    assert np.array_equal(data[:, 0], table.data[:, 0])  # same frames, same order
    features = kwargs["features"]
    assert {"uncertainty_xy_nm", "intensity", "drift_x_nm", "drift_y_nm"} <= set(features.columns)
    assert kwargs["metadata"]["pixel_size_nm"] == PIXEL_NM and kwargs["metadata"]["drift"]["method"].startswith("RCC")
    corrected = localizations_from_points(data, features, PIXEL_NM, kwargs["scale"], kwargs["translate"])
    true_x, true_y = _linear_drift(drifting.frame)
    for after, before, truth, subtracted in (
        (corrected.x_nm, drifting.x_nm, true_x, features["drift_x_nm"]),
        (corrected.y_nm, drifting.y_nm, true_y, features["drift_y_nm"]),
    ):
        assert np.allclose(before - after, subtracted)
        left = after - before + truth  # drift left in the corrected positions
        assert np.sqrt(np.mean((left - left.mean()) ** 2)) < 5.0
        assert abs(left.mean()) < 15.0  # frame 1 is the reference
    # the original table drifts by 144 nm over the movie
    assert np.hypot(*_linear_drift(N_FRAMES)) > 140


def test_frc_orders_precisions_and_drift_correction_sharpens_it(drifting):
    rng = np.random.default_rng(1)
    sites = _structure(rng, 6700)
    fine, coarse = (
        logic.run_task("frc", _table(_blinking(rng, sites, N_FRAMES, sigma))).result.resolution_nm
        for sigma in (5.0, 20.0)
    )
    assert fine < coarse
    table = _table(drifting)
    drifted = logic.run_task("frc", table)
    corrected_layer = logic.run_task("drift", table).layers[0]
    corrected = logic.run_task(
        "frc",
        logic.table_from_layer(
            "c", corrected_layer[0], corrected_layer[1]["features"], {}, table.scale, table.translate, PIXEL_NM
        ),
    )
    assert corrected.result.resolution_nm < 0.7 * drifted.result.resolution_nm
    assert corrected.summary == f"FRC resolution: {corrected.result.resolution_nm:.1f} nm"
    assert "NeNA precision" in corrected.details and "z std" in corrected.details  # NeNA beside the FRC
    auto = logic.run_task("frc", table, render_nm=0.0)  # the dock's default: a pixel chosen for the data
    assert np.isfinite(auto.result.resolution_nm) and auto.result.render_nm >= 5.0
    # linked blinks kept in one half are never more optimistic than a split by localization
    plain = logic.frc_of_table(table, keep_linked=False).resolution_nm
    assert drifted.result.resolution_nm >= 0.98 * plain


def test_linked_layer_has_one_point_per_blink(drifting):
    table = _table(drifting.select(drifting.frame <= 200))
    outcome = logic.run_task("link", table)
    ((data, kwargs, _),) = outcome.layers
    features = kwargs["features"]
    assert kwargs["name"] == "locs linked" and data.shape[1] == 3 and len(data) < 0.5 * len(table.locs)
    assert features["n_frames"].sum() == len(table.locs) and (features["last_frame"] >= data[:, 0] + 1).all()
    assert f"into {len(data)} blinks" in outcome.summary


def test_curves_draw_on_a_plain_figure(drifting):
    from matplotlib.figure import Figure

    table = _table(drifting)
    figure = Figure()
    drift = logic.run_task("drift", table).result
    logic.draw_drift(figure, drift)
    (ax,) = figure.axes
    assert len(ax.lines) >= 2 and f"{drift.residual_nm:.1f} nm" in ax.get_title()
    frc = logic.frc_of_table(table, render_nm=10.0)
    logic.draw_frc(figure, frc)
    (ax,) = figure.axes
    assert len(ax.lines) == 3 and any(np.allclose(line.get_ydata(), 1 / 7) for line in ax.lines)


def test_bad_tables_give_one_sentence():
    few = Localizations(frame=np.arange(1, 101), x_nm=np.linspace(0, 1000, 100), y_nm=np.zeros(100))
    nan = Localizations(frame=np.arange(1, 301), x_nm=np.r_[np.nan, np.linspace(0, 1000, 299)], y_nm=np.zeros(300))
    flat = Localizations(
        frame=np.ones(300, int),
        x_nm=np.linspace(0, 1000, 300),
        y_nm=np.zeros(300),
        uncertainty_xy_nm=np.full(300, 10.0),
    )
    huge = Localizations(frame=np.arange(1, 301), x_nm=np.linspace(0, 1e6, 300), y_nm=np.zeros(300))
    cases = [
        ("drift", _table(few), "at least 3 segments"),
        ("frc", _table(few.select(slice(0, 50))), "at least 100"),
        ("drift", _table(nan), "NaN"),
        ("frc", _table(nan), "NaN"),
        ("link", _table(nan), "NaN"),
        ("drift", _table(flat, with_frame=False), "no frame axis"),
        ("link", _table(flat, with_frame=False), "no frame axis"),
        ("frc", _table(huge), "raise the FRC pixel"),
    ]
    for task, table, words in cases:
        outcome = logic.run_task(task, table)
        assert outcome.layers == [] and outcome.result is None and words in outcome.error
        _one_sentence(outcome.error)
    with pytest.raises(ValueError, match="no points"):
        logic.table_from_layer("empty", np.zeros((0, 3)), None, {}, (1, 1, 1), (0, 0, 0), PIXEL_NM)


def test_importing_the_widget_does_not_import_torch():
    code = (
        "import sys, smlm_diffusion._napari.postprocess_widget, smlm_diffusion._napari.postprocess_logic; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_widget_corrects_drift_and_shows_the_frc(make_napari_viewer, qtbot, drifting, monkeypatch):
    import napari.utils.notifications

    errors = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_points(
        points_world(drifting, PIXEL_NM, with_frame=True),
        name="locs",
        features=points_features(drifting),
        metadata={"pixel_size_nm": PIXEL_NM},
    )
    viewer.add_points(np.zeros((3, 2)), name="not localizations")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Drift & resolution")
    assert [layer.name for layer in widget._layer.choices] == ["locs"]
    assert widget.values["pixel_size_nm"].value == pytest.approx(PIXEL_NM)

    widget.start("drift")
    assert widget._worker is not None  # the GUI is free while it runs
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert errors == []
    corrected = viewer.layers["locs drift-corrected"]
    assert "locs" in viewer.layers and len(corrected.data) == len(drifting)
    assert {"drift_x_nm", "drift_y_nm", "uncertainty_xy_nm"} <= set(corrected.features.columns)
    moved = viewer.layers["locs"].data[:, 2] - corrected.data[:, 2]
    late = drifting.frame > 500
    assert np.mean(moved[late]) * PIXEL_NM == pytest.approx(np.mean(_linear_drift(drifting.frame[late])[0]), abs=15)
    (ax,) = widget.figure.axes
    assert len(ax.lines) >= 2 and "residual" in ax.get_title()

    widget._layer.value = corrected
    widget.start("frc")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert errors == []
    (ax,) = widget.figure.axes
    assert len(ax.lines) == 3 and "FRC resolution" in widget._resolution.value
    assert float(widget._resolution.value.split()[-2]) > 0

    viewer.add_points(np.zeros((3, 2)), name="flat", features={"uncertainty_xy_nm": np.ones(3)})
    widget._layer.value = viewer.layers["flat"]
    widget.start("link")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert len(errors) == 1 and "no frame axis" in errors[0] and "flat linked" not in viewer.layers
