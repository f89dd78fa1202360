"""The camera settings of a run, checked against the movie (photon transfer): the
estimate goes into the run record, a stated gain more than 2x
off gets one sentence, and ``camera="auto"`` uses the estimate instead."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..analysis.camera import MIN_FRAMES, CameraEstimate, estimate_camera, gain_warning
from ..errors import SmlmInputError

#: frames read for the estimate (the first ones of the stack: the densest, but the
#: estimate leaves spots out)
CAMERA_FRAMES = 200


def plausibility_warnings(settings) -> list[str]:
    """One sentence per setting outside what SMLM cameras and objectives give."""
    warnings = []
    if not 40.0 <= settings.pixel_size_nm <= 400.0:
        warnings.append(
            f"A pixel size of {settings.pixel_size_nm:g} nm is unusual for SMLM (typically 65-160 nm "
            "in the sample plane); check that it is in nm and refers to the sample, not the camera chip."
        )
    if settings.psf_sigma_px is not None and settings.psf_sigma_px * settings.pixel_size_nm > 400.0:
        warnings.append(
            f"A PSF sigma of {settings.psf_sigma_px:g} px ({settings.psf_sigma_px * settings.pixel_size_nm:.0f} "
            "nm) is wider than an in-focus SMLM spot; check that it is in camera pixels."
        )
    return warnings


def offset_unknown_sentence(estimate: CameraEstimate) -> str:
    """What a movie with one background level cannot tell, in one sentence."""
    return (
        f"This movie's background has one level ({estimate.background_range_adu[0]:.0f}-"
        f"{estimate.background_range_adu[1]:.0f} ADU), so the camera offset cannot be told from it: the gain "
        f"estimate ({estimate.gain_adu_per_photon:.3g} ADU/photon) assumes the default offset of "
        f"{estimate.offset_adu:g} ADU; give the camera's offset (--offset, its dark level) to make the gain "
        "right."
    )


def check_camera(n_frames: int, settings, read) -> tuple[object, CameraEstimate | None, list[str]]:
    """(settings to use, the estimate or None, warnings). ``read(start, stop)`` returns
    frames in ADU. Raises SmlmInputError when ``camera="auto"`` cannot estimate."""
    warnings = plausibility_warnings(settings)
    if settings.camera_maps:  # every pixel's offset and gain are given
        return settings, None, warnings
    if n_frames < MIN_FRAMES:
        if settings.camera == "auto":
            raise SmlmInputError(
                f"--camera auto needs a movie of at least {MIN_FRAMES} frames to estimate the "
                "gain and offset; give them instead (--gain, --offset)"
            )
        return settings, None, warnings
    frames = np.asarray(read(0, min(n_frames, CAMERA_FRAMES)), np.float32)
    try:
        estimate = estimate_camera(frames, stated_offset_adu=settings.offset_adu, emccd=settings.emccd)
    except ValueError as exc:
        if settings.camera == "auto":
            raise SmlmInputError(f"--camera auto could not estimate the camera: {exc}") from None
        return settings, None, [*warnings, f"The camera gain could not be checked: {exc}."]
    if estimate.method.startswith("one level") and settings.offset_source == "default":
        warnings.append(offset_unknown_sentence(estimate))
    if settings.camera == "auto":
        settings = dataclasses.replace(
            settings, gain_adu_per_photon=estimate.gain_adu_per_photon, offset_adu=estimate.offset_adu
        )
    else:
        message = gain_warning(settings.gain_adu_per_photon, estimate)
        if message:
            warnings.append(message)
    return settings, estimate, warnings
