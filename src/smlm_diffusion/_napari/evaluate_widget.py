"""Evaluate dock widget: localizations (Points layer or CSV) against a ground truth
(Points layer or CSV) -> SMLM Challenge metrics, and matched / missed / false points as layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton

from ..analysis.metrics import evaluate
from ..io import read_localizations_csv
from ..localizations import Localizations
from . import persist
from .layers import localizations_from_points, points_world

if TYPE_CHECKING:  # pragma: no cover
    import napari

NAME = "evaluate"
CSV_CHOICE = "(CSV file below)"


def evaluate_tables(predicted: Localizations, truth: Localizations, tolerance_nm: float):
    """(metrics dict, matched predictions, missed truths, false predictions)."""
    result = evaluate(predicted, truth, tolerance_nm)
    false = np.ones(len(predicted), bool)
    false[result.predicted_index] = False
    missed = np.ones(len(truth), bool)
    missed[result.true_index] = False
    return (result.to_dict(), predicted.select(result.predicted_index), truth.select(missed), predicted.select(false))


def format_metrics(metrics: dict) -> str:
    def f(key, digits):
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (
        f"recall {f('recall', 3)}   precision {f('precision', 3)}   Jaccard {f('jaccard', 3)}\n"
        f"RMSE {f('rmse_lateral_nm', 1)} nm   efficiency {f('efficiency', 1)}   "
        f"(TP {metrics['true_positives']}, FP {metrics['false_positives']}, FN {metrics['false_negatives']})"
    )


class EvaluateWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._predicted = ComboBox(label="localizations", choices=self._choices)
        self._predicted_csv = FileEdit(label="localizations CSV", mode="r", filter="*.csv")
        self._truth = ComboBox(label="ground truth", choices=self._choices)
        self._truth_csv = FileEdit(label="ground truth CSV", mode="r", filter="*.csv")
        self.values = {
            "pixel_size_nm": FloatSpinBox(label="pixel size (nm)", min=1.0, max=1e5, value=108.0),
            "tolerance_nm": FloatSpinBox(label="tolerance (nm)", min=1.0, max=1e5, value=250.0),
        }
        self._run = PushButton(text="Evaluate")
        self._result = Label(label="")
        self.extend(
            [
                self._predicted,
                self._predicted_csv,
                self._truth,
                self._truth_csv,
                *self.values.values(),
                self._run,
                self._result,
            ]
        )
        persist.restore_into(self.values, NAME)
        self._run.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)

    def _choices(self, *_):
        from napari.layers import Points

        return [layer.name for layer in self._viewer.layers if isinstance(layer, Points)] + [CSV_CHOICE]

    def _table(self, choice: str, csv_path, px: float) -> Localizations:
        if choice == CSV_CHOICE:
            return read_localizations_csv(csv_path)
        layer = self._viewer.layers[choice]
        pixel_size = float(layer.metadata.get("pixel_size_nm") or px)
        return localizations_from_points(layer.data, layer.features, pixel_size, layer.scale, layer.translate)

    def run(self, *_):
        from napari.utils.notifications import show_error

        values = persist.snapshot(self.values)
        persist.save(NAME, values)
        px = values["pixel_size_nm"]
        try:
            predicted = self._table(self._predicted.value, self._predicted_csv.value, px)
            truth = self._table(self._truth.value, self._truth_csv.value, px)
            metrics, matched, missed, false = evaluate_tables(predicted, truth, values["tolerance_nm"])
        except (OSError, ValueError) as exc:
            show_error(f"Evaluation failed: {exc}")
            return
        self._result.value = format_metrics(metrics)
        stack = any(layer.ndim == 3 for layer in self._viewer.layers)
        for name, table, colour in (
            ("matched (TP)", matched, "lime"),
            ("missed (FN)", missed, "red"),
            ("false (FP)", false, "magenta"),
        ):
            coords = points_world(table, px, with_frame=stack)
            if name in self._viewer.layers:
                self._viewer.layers.remove(name)
            self._viewer.add_points(
                coords,
                name=name,
                size=0.7,
                face_color="transparent",
                border_color=colour,
                metadata={"pixel_size_nm": px},
            )
        self.metrics = metrics
