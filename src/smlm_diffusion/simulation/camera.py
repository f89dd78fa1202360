"""Camera model: photons -> ADU and back.

ADU = gain * (S + R) + offset, where S is the photo-electron count (Poisson, or the
EMCCD gamma-amplified count with excess-noise factor F^2 = 2) and R ~ N(0, read_noise_e^2)
is read noise in input-referred electrons. Hence, without EMCCD,
``mean = gain*(omega) + offset`` and ``var = gain^2 * (omega + read_noise_e^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    gain_adu_per_photon: float = 1.0
    offset_adu: float = 100.0
    read_noise_e: float = 0.0
    emccd: bool = False

    def __post_init__(self) -> None:
        if not self.gain_adu_per_photon > 0:
            raise ValueError("camera gain must be positive (ADU per photon)")
        if self.read_noise_e < 0:
            raise ValueError("read noise must be zero or positive (electrons rms)")

    def expose(self, omega_photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy ADU image (float64) from expected photons per pixel."""
        counts = rng.poisson(omega_photons).astype(np.float64)
        if self.emccd:
            # EM register: n electrons -> Gamma(n, 1) (mean n, var n): total variance 2*omega.
            positive = counts > 0
            counts[positive] = rng.gamma(counts[positive], 1.0)
        if self.read_noise_e > 0:
            counts += rng.normal(0.0, self.read_noise_e, size=counts.shape)
        return self.gain_adu_per_photon * counts + self.offset_adu

    def mean_adu(self, omega_photons):
        return self.gain_adu_per_photon * np.asarray(omega_photons) + self.offset_adu

    def variance_adu(self, omega_photons):
        excess = 2.0 if self.emccd else 1.0
        return self.gain_adu_per_photon**2 * (excess * np.asarray(omega_photons) + self.read_noise_e**2)

    def to_photons(self, adu: np.ndarray) -> np.ndarray:
        """ADU -> photons (offset removed, divided by gain), float32."""
        return ((np.asarray(adu, dtype=np.float32) - self.offset_adu) / self.gain_adu_per_photon).astype(np.float32)


def quantize_uint16(adu: np.ndarray) -> np.ndarray:
    """Round to the camera's integer ADU, clipped to the uint16 range."""
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def scmos_maps(
    shape: tuple[int, int],
    rng: np.random.Generator,
    offset_adu: float = 100.0,
    offset_spread_adu: float = 3.0,
    read_noise_e: float = 1.5,
    noisy_fraction: float = 0.015,
    noisy_read_noise_e: tuple[float, float] = (6.0, 30.0),
    gain_adu_per_electron: float = 2.0,
    gain_spread: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulated sCMOS sensor's per-pixel (offset ADU, read variance ADU^2, gain ADU per
    electron): offsets scattered by ``offset_spread_adu``, read noise around ``read_noise_e``
    (log-normal, 20 %) with a ``noisy_fraction`` of pixels log-uniform in
    ``noisy_read_noise_e`` (the noisy tail real sensors have), gains scattered by
    ``gain_spread`` (relative)."""
    offset = offset_adu + rng.normal(0.0, offset_spread_adu, shape)
    noise_e = read_noise_e * np.exp(rng.normal(0.0, 0.2, shape))
    noisy = rng.random(shape) < noisy_fraction
    low, high = np.log(noisy_read_noise_e[0]), np.log(noisy_read_noise_e[1])
    noise_e[noisy] = np.exp(rng.uniform(low, high, int(noisy.sum())))
    gain = gain_adu_per_electron * (1.0 + gain_spread * rng.standard_normal(shape)).clip(0.5, 1.5)
    return offset, (gain * noise_e) ** 2, gain


def expose_scmos(
    omega_photons: np.ndarray,
    offset_adu: np.ndarray,
    read_variance_adu2: np.ndarray,
    gain_adu_per_electron: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Noisy ADU frames from expected photons on a sensor with per-pixel maps (``scmos_maps``):
    gain * Poisson(omega) + offset + N(0, read variance)."""
    counts = rng.poisson(omega_photons).astype(np.float64)
    return (
        gain_adu_per_electron * counts + offset_adu + rng.normal(0.0, 1.0, counts.shape) * np.sqrt(read_variance_adu2)
    )
