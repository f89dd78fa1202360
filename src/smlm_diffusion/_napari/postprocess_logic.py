"""Qt-free core of the "Drift & resolution" widget: a Points layer's localization table,
the three whole-experiment steps (drift correction, FRC resolution, linking of blinks) as
one call each, their results as napari layer-data tuples, and their curves drawn on a
matplotlib ``Figure`` (no pyplot, no backend). Tests call these directly; the widget only
moves layers in and out and runs :func:`run_task` in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..analysis.drift import DriftDecision, DriftResult, check_table, decide_drift, estimate_drift
from ..analysis.frc import THRESHOLD, FrcResult, frc_resolution, measured_frc
from ..analysis.linking import link_groups, linked_table
from ..analysis.nena import nena
from ..errors import SmlmInputError
from ..localizations import Localizations
from .layers import localizations_from_points, points_world

#: the feature that marks a 2D Points layer as a localization table
UNCERTAINTY_FEATURE = "uncertainty_xy_nm"
#: the tasks behind the widget's buttons
TASKS = ("drift", "frc", "link")
#: largest FRC image side (pixels); the library refuses larger ones
FRC_MAX_PIXELS = 4096


def is_localization_layer(ndim: int, feature_names) -> bool:
    """A Points layer with a frame axis (frame, y, x) or with per-point uncertainties."""
    return ndim == 3 or (ndim == 2 and UNCERTAINTY_FEATURE in set(feature_names))


@dataclass
class LayerTable:
    """A Points layer's localizations plus what is needed to put results back beside it."""

    name: str
    data: np.ndarray  # the layer's coordinates, (n, 2) or (n, 3) with the frame first
    features: object  # pandas DataFrame, one row per point
    metadata: dict
    scale: tuple
    translate: tuple
    pixel_size_nm: float
    locs: Localizations

    @property
    def has_frames(self) -> bool:
        return self.data.shape[1] >= 3


def table_from_layer(name: str, data, features, metadata, scale, translate, pixel_size_nm: float) -> LayerTable:
    """Copy a Points layer's data into a :class:`LayerTable` (nm positions, corner origin)."""
    import pandas as pd  # napari's own dependency

    data = np.array(data, float, ndmin=2)
    if data.size == 0:
        raise SmlmInputError(f"the layer {name!r} has no points; choose a layer of localizations")
    frame = pd.DataFrame(features if features is not None else {}).reset_index(drop=True).copy()
    locs = localizations_from_points(data, frame, float(pixel_size_nm), scale, translate)
    return LayerTable(
        name, data, frame, dict(metadata or {}), tuple(scale), tuple(translate), float(pixel_size_nm), locs
    )


def require_frames(table: LayerTable, task: str) -> None:
    """One sentence when ``task`` needs frames the layer does not have."""
    if not table.has_frames:
        raise SmlmInputError(
            f"the layer {table.name!r} has no frame axis; {task} needs the frame of every "
            "localization (a Points layer with frame, y and x coordinates)"
        )
    if len(table.locs) and table.locs.frame.min() < 1:
        raise SmlmInputError(
            f"the layer {table.name!r} has points before the first frame (frame coordinate "
            "below 0); its frame axis must start at 0"
        )


def points_style(features, size: float) -> dict:
    """Layer kwargs of a new localization layer: coloured by uncertainty when it is known."""
    values = np.asarray(features[UNCERTAINTY_FEATURE], float) if UNCERTAINTY_FEATURE in features else np.zeros(0)
    colour = (
        {"face_color": UNCERTAINTY_FEATURE, "face_colormap": "viridis"}
        if np.isfinite(values).any()
        else {"face_color": "yellow"}
    )
    return {"size": float(size), "border_width": 0, **colour}


# -- drift ------------------------------------------------------------------------------
def drift_corrected_layer(
    table: LayerTable, drift: DriftResult, size: float = 0.5, decision: DriftDecision | None = None
) -> tuple:
    """(data, kwargs, "points"): the same points moved by minus the drift, the same
    features plus ``drift_x_nm`` / ``drift_y_nm`` (what was subtracted) and
    ``drift_std_nm`` (its standard error, joined to ``uncertainty_xy_nm`` in quadrature)."""
    dx, dy = drift.at(table.locs.frame)
    std = drift.std_at(table.locs.frame)
    s = np.asarray(table.scale, float)[-2:]
    data = table.data.copy()  # the frame column and any other axis stay as they were
    data[:, -2] -= s[0] * dy / table.pixel_size_nm  # the inverse of localizations_from_points
    data[:, -1] -= s[1] * dx / table.pixel_size_nm
    features = table.features.copy()
    features["drift_x_nm"], features["drift_y_nm"], features["drift_std_nm"] = dx, dy, std
    if "uncertainty_xy_nm" in features:
        features["uncertainty_xy_nm"] = np.hypot(np.asarray(features["uncertainty_xy_nm"], float), std)
    record = {**drift.record(), **(decision.record() if decision is not None else {})}
    metadata = {**table.metadata, "pixel_size_nm": table.pixel_size_nm, "drift": record}
    kwargs = {
        "name": f"{table.name} drift-corrected",
        "features": features,
        "metadata": metadata,
        "scale": table.scale,
        "translate": table.translate,
        **points_style(features, size),
    }
    return data, kwargs, "points"


def correct_drift(table: LayerTable) -> DriftResult:
    """RCC drift of the layer's table (frames 1 .. the last frame with a localization)."""
    require_frames(table, "drift correction")
    return estimate_drift(table.locs, int(table.locs.frame.max()))


def drift_summary(drift: DriftResult) -> str:
    return (
        f"drift over {len(drift.frames)} frames: {np.ptp(drift.x_nm):.0f} nm in x, {np.ptp(drift.y_nm):.0f} nm "
        f"in y ({len(drift.segment_frames)} segments, residual {drift.residual_nm:.1f} nm)"
    )


def draw_drift(figure, drift: DriftResult) -> None:
    """Drift x and y against frame, the segment estimates with their standard errors."""
    figure.clear()
    ax = figure.add_subplot()
    for values, segments, colour, axis in (
        (drift.x_nm, drift.segment_x_nm, "tab:blue", "x"),
        (drift.y_nm, drift.segment_y_nm, "tab:orange", "y"),
    ):
        ax.plot(drift.frames, values, color=colour, label=f"drift {axis}")
        ax.errorbar(drift.segment_frames, segments, yerr=drift.segment_std_nm, fmt="o", ms=3, color=colour)
    ax.set_xlabel("frame")
    ax.set_ylabel("drift [nm]")
    ax.set_title(f"RCC drift, residual {drift.residual_nm:.1f} nm", fontsize="medium")
    ax.legend(fontsize="small")
    figure.canvas.draw_idle()


# -- FRC --------------------------------------------------------------------------------
def frc_of_table(table: LayerTable, render_nm: float = 5.0, keep_linked: bool = True, repeats: int = 5) -> FrcResult:
    """FRC of the layer's table at ``render_nm`` (0: a pixel chosen for the data,
    ``measured_frc``); with ``keep_linked`` (and a frame axis) the localizations of one
    blink stay in one half, so repeated localizations do not fake resolution."""
    locs = table.locs
    check_table(locs)
    groups = link_groups(locs) if keep_linked and table.has_frames else None
    if render_nm <= 0:  # chosen for the data
        return measured_frc(locs, groups=groups, repeats=repeats)
    return frc_resolution(locs, render_nm=render_nm, repeats=repeats, groups=groups, max_pixels=FRC_MAX_PIXELS)


def frc_summary(frc: FrcResult) -> str:
    if not np.isfinite(frc.resolution_nm):
        return f"FRC resolution: finer than {frc.finer_than_nm:.3g} nm"
    return f"FRC resolution: {frc.resolution_nm:.1f} nm"


def nena_summary(locs) -> str:
    """NeNA precision and the consecutive-frame check, or why there is none (one line)."""
    try:
        result = nena(locs)
    except SmlmInputError as exc:
        return f"NeNA: {exc}"
    check = (
        f"; consecutive frames: z std {result.z_std:.2f}, 95 % coverage {result.z_coverage_95:.2f}"
        if np.isfinite(result.z_std)
        else ""
    )
    return f"NeNA precision {result.precision_nm:.1f} nm ({result.pairs} pairs){check}"


def draw_frc(figure, frc: FrcResult) -> None:
    """The FRC curve, the 1/7 threshold and the resolution."""
    figure.clear()
    ax = figure.add_subplot()
    ax.plot(frc.q_per_nm, frc.frc, color="tab:blue", label="FRC")
    ax.axhline(THRESHOLD, color="grey", linestyle="--", label="1/7")
    if np.isfinite(frc.resolution_nm):
        ax.axvline(1.0 / frc.resolution_nm, color="tab:red", label=f"{frc.resolution_nm:.1f} nm")
    ax.set_xlabel("spatial frequency [1/nm]")
    ax.set_ylabel("FRC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(frc_summary(frc), fontsize="medium")
    ax.legend(fontsize="small")
    figure.canvas.draw_idle()


# -- linking ----------------------------------------------------------------------------
def linked_layer(table: LayerTable, size: float = 0.5) -> tuple:
    """(data, kwargs, "points"): one point per linked blink (weighted position, first
    frame) with ``n_frames`` and ``last_frame`` features."""
    import pandas as pd

    require_frames(table, "linking of blinks")
    linked = linked_table(table.locs, link_groups(table.locs))
    data = points_world(linked, table.pixel_size_nm, table.scale, table.translate, with_frame=True)
    features = pd.DataFrame(
        {
            UNCERTAINTY_FEATURE: linked.uncertainty_xy_nm,
            "intensity": linked.intensity_photons,
            "n_frames": linked.extra["n_frames"],
            "last_frame": linked.extra["last_frame"],
        }
    )
    metadata = {
        **table.metadata,
        "pixel_size_nm": table.pixel_size_nm,
        "linking": {"localizations": len(table.locs), "groups": len(linked)},
    }
    kwargs = {
        "name": f"{table.name} linked",
        "features": features,
        "metadata": metadata,
        "scale": table.scale,
        "translate": table.translate,
        **points_style(features, size),
    }
    return data, kwargs, "points"


def link_summary(n_localizations: int, n_groups: int) -> str:
    return (
        f"linked {n_localizations} localizations into {n_groups} blinks "
        f"({n_localizations / max(n_groups, 1):.2f} frames each)"
    )


# -- one button's work, as the worker runs it -------------------------------------------
#: how the GUI names each task
TITLES = {"drift": "Drift correction", "frc": "FRC", "link": "Linking"}


@dataclass
class Outcome:
    """What a task hands back to the GUI: new layers, a result to plot and a summary, or
    one sentence of error."""

    task: str
    summary: str = ""
    layers: list[tuple] = field(default_factory=list)
    result: DriftResult | FrcResult | None = None
    error: str | None = None
    details: str = ""  # the status line, when it says more than the summary

    def __post_init__(self) -> None:
        self.details = self.details or self.summary


def run_task(
    task: str, table: LayerTable, render_nm: float = 5.0, keep_linked: bool = True, size: float = 0.5
) -> Outcome:
    """Do one of TASKS on ``table``; bad input becomes ``Outcome.error`` (one sentence)."""
    try:
        if task == "drift":
            drift = correct_drift(table)
            decision = decide_drift(table.locs, drift, int(table.locs.frame.max()))
            if not decision.apply:  # the figure shows the estimate; no corrected layer
                return Outcome(task, drift_summary(drift), [], drift, details=f"Drift not applied: {decision.reason}.")
            return Outcome(
                task,
                drift_summary(drift),
                [drift_corrected_layer(table, drift, size, decision)],
                drift,
                details=f"Drift applied: {decision.reason}.",
            )
        if task == "frc":
            frc = frc_of_table(table, render_nm, keep_linked)
            how = "linked blinks kept in one half" if keep_linked and table.has_frames else "split by localization"
            precision = nena_summary(table.locs) if table.has_frames else "NeNA needs frames"
            return Outcome(
                task,
                frc_summary(frc),
                [],
                frc,
                details=f"{frc.sentence()}. {precision}. FRC of {table.name!r}: {len(table.locs)} "
                f"localizations, {how}, {frc.repeats} random splits",
            )
        if task == "link":
            layer = linked_layer(table, size)
            return Outcome(task, link_summary(len(table.locs), len(layer[0])), [layer])
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    except SmlmInputError as exc:
        return Outcome(task, error=_sentence(exc))
    except Exception as exc:  # noqa: BLE001 - shown as one line in the GUI, never a traceback
        return Outcome(task, error=f"{TITLES.get(task, task)} failed: {_sentence(exc)}")


def _sentence(exc: Exception) -> str:
    """The exception's message on one line, starting with a capital."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[0].upper() + text[1:]
