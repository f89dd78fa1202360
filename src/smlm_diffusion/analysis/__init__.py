"""Analysis layer: LoG localization, matching and metrics, CRLB, MCMC posterior."""

from .crlb import PARAMETERS, crlb, fisher_information, mortensen_precision_px
from .localize import detect_blobs, localize_frame, localize_kde, log_response, unit_response
from .mcmc import McmcResult, metropolis_hastings
from .metrics import DEFAULT_TOLERANCE_NM, MatchResult, efficiency, evaluate, match_points
from .render import render_localizations

__all__ = [
    "DEFAULT_TOLERANCE_NM",
    "MatchResult",
    "McmcResult",
    "PARAMETERS",
    "crlb",
    "detect_blobs",
    "efficiency",
    "evaluate",
    "fisher_information",
    "localize_frame",
    "localize_kde",
    "log_response",
    "match_points",
    "metropolis_hastings",
    "mortensen_precision_px",
    "render_localizations",
    "unit_response",
]
