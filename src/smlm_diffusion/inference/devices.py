"""Compute devices: ``auto`` = CUDA, then MPS, then CPU. torch is imported lazily so
that importing the package (or the napari plugin) stays fast."""

from __future__ import annotations

from ..errors import SmlmInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices present on this machine, best first (always ends with ``cpu``)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto"):
    """A ``torch.device`` for ``name``; a clear error when it is not present."""
    import torch

    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise SmlmInputError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    present = available_devices()
    if name == "auto":
        return torch.device(present[0])
    base = name.split(":")[0]
    if base not in present:
        raise SmlmInputError(f"Device '{name}' is not available on this machine (found: "
                             f"{', '.join(present)}); use --device auto or cpu.")
    return torch.device(name)
