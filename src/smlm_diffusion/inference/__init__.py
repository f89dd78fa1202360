"""Inference layer: devices, tiling and posterior sampling over whole stacks."""

from .devices import available_devices, resolve_device

__all__ = ["available_devices", "resolve_device"]
