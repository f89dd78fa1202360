"""Simulation layer (numpy/scipy only): forward model, emitter priors, KDE targets."""

from .background import BACKGROUND_STRUCTURES, background_map, hot_pixel_map
from .camera import CameraModel, quantize_uint16
from .emitters import STRUCTURES, BlinkingChain
from .psf import (
    DEFAULT_KDE_SIGMA_UPSAMPLED_PX,
    UPSAMPLING,
    expected_photons,
    pixel_integrals,
    render_emitters,
    render_kde,
    single_emitter_kde_peak,
)
from .stack import (
    SimulatedChunk,
    SimulatedStack,
    SimulationConfig,
    filament_movie_config,
    iter_simulation,
    simulate_stack,
)
from .structure_prior import StructurePrior

__all__ = [
    "BACKGROUND_STRUCTURES",
    "background_map",
    "hot_pixel_map",
    "BlinkingChain",
    "CameraModel",
    "DEFAULT_KDE_SIGMA_UPSAMPLED_PX",
    "STRUCTURES",
    "UPSAMPLING",
    "SimulatedChunk",
    "SimulatedStack",
    "SimulationConfig",
    "StructurePrior",
    "expected_photons",
    "filament_movie_config",
    "iter_simulation",
    "pixel_integrals",
    "quantize_uint16",
    "render_emitters",
    "render_kde",
    "simulate_stack",
    "single_emitter_kde_peak",
]
