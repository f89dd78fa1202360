"""Whole-stack reconstruction: streams frames through phi and the
posterior sampler (inference layer) and localizes with uncertainties (analysis layer).
Importing this package does not import torch; running a reconstruction does."""

from .engine import ReconstructionRun, reconstruct
from .settings import FrameResult, ProgressEvent, Reconstruction, ReconstructionSettings

__all__ = [
    "FrameResult",
    "ProgressEvent",
    "Reconstruction",
    "ReconstructionRun",
    "ReconstructionSettings",
    "reconstruct",
]
