"""Domain-randomised training batches, simulated on the fly by our own simulator.

Each example is one frame drawn from its own random setting, so the bundled models serve
many microscopes rather than one: PSF sigma 0.7-1.6 px, 100-20000 photons per emitter
(log-uniform, +-0-40 % spread), mean background 0-200 photons/px (40 % of the examples
below 30) that is flat or structured (gradients, smooth random fields, out-of-focus
blobs, cell-shaped patches, mixtures; ``simulation/background.py``), hot pixels in 30 %
of the frames, read noise 0-3 e-, densities from empty frames (10 %) and isolated
emitters (0.05/um^2) to 4/um^2 (log-uniform), and the priors uniform / the paper's disc
/ filaments / clusters. A batch is a pure function of (seed, step): training resumes
exactly and any batch can be regenerated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..simulation import SimulationConfig, simulate_stack
from .conditioning import fit_residual_channel, refined_condition, residual_scale, surrogate_refinement
from .normalisation import INPUT_NORMALISATION, estimate_background, kde_scale, normalise_frames


@dataclass(frozen=True)
class TrainingDomain:
    frame_px: int = 32
    pixel_size_nm: float = 108.0
    psf_sigma_px: tuple[float, float] = (0.7, 1.6)
    photons: tuple[float, float] = (100.0, 20_000.0)
    photon_spread: tuple[float, float] = (0.0, 0.4)
    background_photons: tuple[float, float] = (0.0, 200.0)
    low_background_fraction: float = 0.4  # these draw from (0, 30) instead
    background_structures: tuple[tuple[str, float], ...] = (
        ("flat", 0.25),
        ("gradient", 0.15),
        ("field", 0.2),
        ("blobs", 0.15),
        ("cell", 0.15),
        ("mixed", 0.1),
    )
    hot_pixel_fraction: float = 0.3  # frames with 1-3 hot pixels
    read_noise_e: tuple[float, float] = (0.0, 3.0)
    density_per_um2: tuple[float, float] = (0.05, 4.0)
    empty_fraction: float = 0.1
    structures: tuple[tuple[str, float], ...] = (
        ("uniform", 0.55),
        ("disc", 0.2),
        ("filaments", 0.1),
        ("clusters", 0.15),
    )

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _choose(rng: np.random.Generator, weighted: tuple[tuple[str, float], ...]) -> str:
    weights = np.array([w for _, w in weighted])
    return weighted[rng.choice(len(weighted), p=weights / weights.sum())][0]


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def random_config(rng: np.random.Generator, domain: TrainingDomain) -> SimulationConfig:
    """One random single-frame setting of the domain."""
    structure = _choose(rng, domain.structures)
    background_high = 30.0 if rng.random() < domain.low_background_fraction else domain.background_photons[1]
    density = 0.0 if rng.random() < domain.empty_fraction else _log_uniform(rng, domain.density_per_um2)
    if structure == "disc":  # the paper's prior: a disc of radius 7 px holding the emitters
        density *= domain.frame_px**2 / (np.pi * 49.0) * 0.5
    return SimulationConfig(
        n_frames=1,
        height_px=domain.frame_px,
        width_px=domain.frame_px,
        pixel_size_nm=domain.pixel_size_nm,
        density_per_um2=density,
        photons=_log_uniform(rng, domain.photons),
        photon_spread=rng.uniform(*domain.photon_spread),
        background_photons=rng.uniform(domain.background_photons[0], background_high),
        psf_sigma_px=rng.uniform(*domain.psf_sigma_px),
        gain_adu_per_photon=1.0,
        offset_adu=0.0,
        read_noise_e=rng.uniform(*domain.read_noise_e),
        structure=structure,
        background_structure=_choose(rng, domain.background_structures),
        hot_pixels=int(rng.integers(1, 4)) if rng.random() < domain.hot_pixel_fraction else 0,
        seed=int(rng.integers(2**31)),
    )


def training_batch(
    seed: int,
    step: int,
    batch_size: int,
    domain: TrainingDomain,
    input_normalisation: dict | None = None,
    priors: list | None = None,
    prior_fraction: float = 0.0,
    refined: bool = False,
    fitter=None,
    fit_residual: bool = False,
) -> tuple[np.ndarray, ...]:
    """(inputs (B, C, H, W) normalised frames, targets (B, 1, 4H, 4W) KDE in model units).
    With ``priors`` (StructurePriors from the user's data), a ``prior_fraction`` of the
    frames put their emitters on one of them, randomly cropped, flipped and rotated.
    ``refined``: also psi's condition from a likelihood fit (``conditioning``), (B, 1, 4H,
    4W), the scale map of its residual (``conditioning.residual_scale``, same shape), and
    the inputs get its precision channel after the frame's channels. The fit is
    ``fitter(photons, background, normalised, psf_sigma_px, read_noise_e)`` on the batch's
    frames ((B, H, W), (B, H, W), (B, C, H, W), (B,), (B,) -> B tuples (x_px, y_px, std_px[, photons]):
    the engine's own fits, ``reconstruction.refine.PipelineFits``, which also give their
    photons), or without one the surrogate drawn from the truth
    (``conditioning.surrogate_refinement``). ``fit_residual``: the fits' Poisson residual
    (``conditioning.fit_residual_channel``) follows as one more input channel."""
    rng = np.random.default_rng([seed, step])
    inputs, targets, conditions, scales = [], [], [], []
    pending = []
    scale = kde_scale()
    norm = input_normalisation or INPUT_NORMALISATION
    for _ in range(batch_size):
        cfg = random_config(rng, domain)
        prior = None
        if priors and rng.random() < prior_fraction:
            prior = priors[int(rng.integers(len(priors)))]
            cfg = replace(cfg, structure_source=prior.source, augment_structure=True)
        sim = simulate_stack(cfg, with_kde=True, prior=prior)
        photons = cfg.camera.to_photons(sim.adu)
        if not refined:
            inputs.append(normalise_frames(photons, input_normalisation)[0])
            targets.append(sim.kde[0] * scale)
            continue
        background = estimate_background(
            photons, norm["background_sigma_px"], read_variance_photons2=norm["read_variance_photons2"]
        )
        frame = normalise_frames(photons, {**norm, "channels": 2}, background)[0]
        fit = None
        if fitter is None:
            xy = sim.truth.xy_px(cfg.pixel_size_nm)
            rows = np.clip(xy[:, 1].astype(int), 0, cfg.height_px - 1)
            cols = np.clip(xy[:, 0].astype(int), 0, cfg.width_px - 1)
            level = background[0, rows, cols] + cfg.read_noise_e**2
            fit = surrogate_refinement(xy[:, 0], xy[:, 1], sim.truth.intensity_photons, level, cfg.psf_sigma_px, rng)
        pending.append((photons[0], background[0], frame, cfg, fit))
        targets.append(sim.kde[0] * scale)
    if refined:
        fits = [p[-1] for p in pending]
        if fitter is not None:
            configs = [p[3] for p in pending]
            fits = fitter(
                *(np.stack([p[i] for p in pending]) for i in range(3)),
                np.array([c.psf_sigma_px for c in configs]),
                np.array([c.read_noise_e for c in configs]),
            )
        for (photons, background, frame, cfg, _), (x, y, std, *fitted) in zip(pending, fits):
            condition, precision = refined_condition(x, y, std, (cfg.height_px, cfg.width_px))
            channels = [frame, precision[None]]
            if fit_residual:
                if not fitted:
                    raise ValueError("the fits' residual channel needs the fitter to give the fits' photons")
                channels.append(
                    fit_residual_channel(photons, background, x, y, fitted[0], cfg.psf_sigma_px, cfg.read_noise_e**2)[
                        None
                    ]
                )
            inputs.append(np.concatenate(channels))
            conditions.append(condition)
            scales.append(residual_scale(x, y, std, (cfg.height_px, cfg.width_px)))
    batch = (np.stack(inputs).astype(np.float32), np.stack(targets)[:, None].astype(np.float32))
    return batch + (np.stack(conditions)[:, None], np.stack(scales)[:, None]) if refined else batch


class FolderData:
    """Training frames from a folder written by ``smlm-diffusion simulate --kde``: every
    ``NAME.tif`` with a ``NAME_kde.tif`` beside it. Frames are normalised whole, then
    cropped to the training size, so the statistics match inference."""

    def __init__(self, folder, frame_px: int, input_normalisation: dict | None = None) -> None:
        from pathlib import Path

        import tifffile

        from ..simulation import CameraModel

        self.frame_px = frame_px
        self.input_normalisation = input_normalisation
        self.items = []
        for kde_path in sorted(Path(folder).glob("*_kde.tif")):
            raw_path = kde_path.with_name(kde_path.name[: -len("_kde.tif")] + ".tif")
            if not raw_path.exists():
                continue
            with tifffile.TiffFile(raw_path) as tif:
                info = _imagej_info(tif)
                raw = tif.asarray()
            kde = tifffile.imread(kde_path)
            raw = raw[None] if raw.ndim == 2 else raw
            kde = kde[None] if kde.ndim == 2 else kde
            if raw.shape[-2] < frame_px or raw.shape[-1] < frame_px or kde.shape[0] != raw.shape[0]:
                continue
            camera = CameraModel(info.get("gain_adu_per_photon", 1.0), info.get("offset_adu", 0.0))
            self.items.append((camera.to_photons(raw), kde))
        if not self.items:
            raise ValueError(
                f"no training data in {folder}: expected NAME.tif with NAME_kde.tif "
                f"(smlm-diffusion simulate --kde) of at least {frame_px}x{frame_px} px"
            )

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        photons, kde = self.items[rng.integers(len(self.items))]
        f = rng.integers(len(photons))
        r = rng.integers(photons.shape[1] - self.frame_px + 1)
        c = rng.integers(photons.shape[2] - self.frame_px + 1)
        frame = normalise_frames(photons[f], self.input_normalisation)
        s = slice(None), slice(r, r + self.frame_px), slice(c, c + self.frame_px)
        k = slice(4 * r, 4 * (r + self.frame_px)), slice(4 * c, 4 * (c + self.frame_px))
        return frame[s], kde[f][k] * kde_scale()


def _imagej_info(tif) -> dict:
    import json

    text = (tif.imagej_metadata or {}).get("Info", "") if tif.is_imagej else ""
    try:
        return dict(json.loads(text)) if text else {}
    except ValueError:
        return {}


def mixed_batch(
    seed: int,
    step: int,
    batch_size: int,
    domain: TrainingDomain,
    folder: FolderData | None,
    folder_fraction: float,
    input_normalisation: dict | None = None,
    priors: list | None = None,
    prior_fraction: float = 0.0,
    refined: bool = False,
    fitter=None,
    fit_residual: bool = False,
) -> tuple[np.ndarray, ...]:
    """Simulated batch where a ``folder_fraction`` of the examples come from ``folder``
    (not with ``refined``: a folder holds no true positions to fit)."""
    batch = training_batch(
        seed, step, batch_size, domain, input_normalisation, priors, prior_fraction, refined, fitter, fit_residual
    )
    if refined or folder is None or folder_fraction <= 0:
        return batch
    inputs, targets = batch
    rng = np.random.default_rng([seed, step, 1])
    for i in np.flatnonzero(rng.random(batch_size) < folder_fraction):
        inputs[i], targets[i, 0] = folder.sample(rng)
    return inputs, targets
