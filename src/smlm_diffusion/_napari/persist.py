"""Widget parameters that persist between napari sessions (layer choices excluded).

Stored as JSON in ``$SMLM_DIFFUSION_CONFIG_DIR`` or the user's config folder
(``$XDG_CONFIG_HOME/napari-smlm-diffusion``, default ``~/.config/...``); written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path


def settings_file() -> Path:
    folder = os.environ.get("SMLM_DIFFUSION_CONFIG_DIR")
    if folder is None:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        folder = os.path.join(base, "napari-smlm-diffusion")
    return Path(folder) / "widgets.json"


def load(widget_name: str) -> dict:
    try:
        return dict(json.loads(settings_file().read_text()).get(widget_name, {}))
    except (OSError, ValueError, AttributeError):
        return {}


def save(widget_name: str, values: dict) -> None:
    path = settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            everything = json.loads(path.read_text())
        except (OSError, ValueError):
            everything = {}
        everything[widget_name] = values
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(everything, indent=2, default=str))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home must not break the widget


def restore_into(widgets: dict, widget_name: str) -> None:
    """Set each magicgui value widget from the stored values (ignoring bad ones)."""
    for key, value in load(widget_name).items():
        widget = widgets.get(key)
        if widget is None:
            continue
        try:
            widget.value = value
        except (ValueError, TypeError):
            pass


def snapshot(widgets: dict) -> dict:
    return {key: widget.value for key, widget in widgets.items()}
