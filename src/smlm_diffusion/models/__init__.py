"""Models layer (pure torch, no I/O): the DeepSTORM-style CNN phi, the conditional
U-Net psi and the DDPM noise schedule; their training (``training.py``), the bundled
weights and their loading (``store.py``)."""

from .phi import DeepStormPhi, ShufflePhi, build_phi
from .psi import CameraPsi, ConditionalUNet, build_psi, timestep_embedding
from .schedule import NoiseSchedule

__all__ = [
    "CameraPsi",
    "ConditionalUNet",
    "DeepStormPhi",
    "NoiseSchedule",
    "ShufflePhi",
    "build_phi",
    "build_psi",
    "timestep_embedding",
]
