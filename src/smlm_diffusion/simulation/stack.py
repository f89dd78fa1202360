"""Seeded, vectorised simulation of SMLM movies with ground truth and KDE targets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from ..localizations import Localizations
from .background import BACKGROUND_STRUCTURES, background_map, hot_pixel_map
from .camera import CameraModel, quantize_uint16
from .emitters import (
    STRUCTURES,
    BlinkingChain,
    cluster_sites,
    disc_sites,
    filament_sites,
    uniform_sites,
)
from .psf import DEFAULT_KDE_SIGMA_UPSAMPLED_PX, UPSAMPLING, expected_photons, render_kde
from .structure_prior import StructurePrior


@dataclass
class SimulationConfig:
    """Everything that defines a simulated movie. Units in the names."""

    n_frames: int = 100
    height_px: int = 64
    width_px: int = 64
    pixel_size_nm: float = 108.0
    density_per_um2: float = 0.5  # expected *active* emitters per frame per um^2 of field
    photons: float = 1000.0  # mean photons per emitter per frame (i0)
    photon_spread: float = 0.0  # relative std of i0 between emitters/frames (gamma)
    background_photons: float = 10.0  # per camera pixel per frame (the mean over the field)
    background_structure: str = "flat"  # flat | gradient | field | blobs | cell | mixed (background.py)
    hot_pixels: int = 0  # stationary hot pixels in the field
    psf_sigma_px: float = 0.92
    gain_adu_per_photon: float = 1.0
    offset_adu: float = 100.0
    read_noise_e: float = 0.0
    emccd: bool = False
    structure: str = "uniform"  # uniform | disc | filaments | clusters
    disc_radius_px: float = 7.0
    n_filaments: int | None = None  # default: about one per 16 px of field side
    n_clusters: int | None = None  # default: one per 100 px^2
    blinking: bool = False  # False: every frame is independent
    on_lifetime_frames: float = 3.0
    kde_sigma_upsampled_px: float = DEFAULT_KDE_SIGMA_UPSAMPLED_PX
    drift_x_nm: float = 0.0  # stage drift: linear, reaching this at the last frame
    drift_y_nm: float = 0.0
    drift_wobble_nm: float = 0.0  # plus a sinusoid of this amplitude (x: sin, y: cos - 1)
    drift_wobble_frames: float = 500.0  # period of the sinusoid
    structure_source: str = ""  # a structure prior from the user's data (its file), else ""
    augment_structure: bool = False  # random crop / flip / 90-degree rotation of that structure
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.n_frames >= 1, "the number of frames must be at least 1"),
            (self.height_px >= 4 and self.width_px >= 4, "frames must be at least 4x4 pixels"),
            (self.pixel_size_nm > 0, "the pixel size must be positive (nm)"),
            (self.density_per_um2 >= 0, "the emitter density must be zero or positive (per um^2)"),
            (self.photons > 0, "the photon count per emitter must be positive"),
            (self.photon_spread >= 0, "the photon spread must be zero or positive"),
            (self.background_photons >= 0, "the background must be zero or positive (photons per pixel)"),
            (
                self.background_structure in BACKGROUND_STRUCTURES,
                f"the background structure must be one of {', '.join(BACKGROUND_STRUCTURES)}",
            ),
            (self.hot_pixels >= 0, "the number of hot pixels must be zero or positive"),
            (self.psf_sigma_px > 0, "the PSF sigma must be positive (camera pixels)"),
            (self.gain_adu_per_photon > 0, "the camera gain must be positive (ADU per photon)"),
            (self.read_noise_e >= 0, "the read noise must be zero or positive (electrons)"),
            (self.structure in STRUCTURES, f"the structure must be one of {', '.join(STRUCTURES)}"),
            (self.on_lifetime_frames >= 1, "the on-state lifetime must be at least 1 frame"),
            (self.disc_radius_px > 0, "the disc radius must be positive (pixels)"),
            (self.drift_wobble_frames > 0, "the drift's sinusoid period must be positive (frames)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def camera(self) -> CameraModel:
        return CameraModel(self.gain_adu_per_photon, self.offset_adu, self.read_noise_e, self.emccd)

    @property
    def field_area_um2(self) -> float:
        return self.height_px * self.width_px * (self.pixel_size_nm / 1000.0) ** 2

    @property
    def mean_active_emitters(self) -> float:
        return self.density_per_um2 * self.field_area_um2

    def to_dict(self) -> dict:
        return asdict(self)

    def drift_nm(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Stage drift (x, y) in nm at 1-based frames; zero at frame 1."""
        t = np.asarray(frames, np.float64) - 1.0
        ramp = t / max(self.n_frames - 1, 1)
        phase = 2 * np.pi * t / self.drift_wobble_frames
        return (
            self.drift_x_nm * ramp + self.drift_wobble_nm * np.sin(phase),
            self.drift_y_nm * ramp + self.drift_wobble_nm * (np.cos(phase) - 1.0),
        )


def filament_movie_config(n_frames: int = 100, seed: int = 0) -> SimulationConfig:
    """The blinking-filament movie shown by ``demo`` and napari's sample data: 64x64
    frames, 0.6 active emitters/um^2, 1500 photons +-30%, background 15, gain 2,
    offset 100 ADU, read noise 1.5 e-."""
    return SimulationConfig(
        n_frames=n_frames,
        height_px=64,
        width_px=64,
        density_per_um2=0.6,
        photons=1500.0,
        photon_spread=0.3,
        background_photons=15.0,
        read_noise_e=1.5,
        gain_adu_per_photon=2.0,
        offset_adu=100.0,
        structure="filaments",
        blinking=True,
        seed=seed,
    )


@dataclass
class SimulatedChunk:
    """Frames ``first_frame .. first_frame + len(adu) - 1`` (1-based) of a movie."""

    first_frame: int
    adu: np.ndarray  # (f, rows, cols) float64 ADU, or uint16 if quantized
    omega_photons: np.ndarray  # (f, rows, cols) expected photons incl. background
    truth: Localizations
    kde: np.ndarray | None = None  # (f, 4*rows, 4*cols) float32


@dataclass
class SimulatedStack:
    config: SimulationConfig
    adu: np.ndarray
    truth: Localizations
    kde: np.ndarray | None = None
    omega_photons: np.ndarray | None = field(default=None, repr=False)


def _structure_sites(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    h, w = cfg.height_px, cfg.width_px
    pool = max(int(200 * cfg.mean_active_emitters), 2000)
    if cfg.structure == "uniform":
        return uniform_sites(pool, h, w, rng)
    if cfg.structure == "disc":
        return disc_sites(pool, h, w, rng, cfg.disc_radius_px)
    if cfg.structure == "filaments":
        n = cfg.n_filaments if cfg.n_filaments is not None else max(1, round((h + w) / 32))
        return filament_sites(n, h, w, rng)
    n = cfg.n_clusters if cfg.n_clusters is not None else max(1, round(h * w / 100))
    return cluster_sites(n, h, w, rng)


class _EmitterSource:
    """Which emitters are on in each frame, and where."""

    def __init__(self, cfg: SimulationConfig, rng: np.random.Generator, prior: StructurePrior | None = None) -> None:
        self.cfg = cfg
        self.rng = rng
        if prior is not None:
            pool = max(int(200 * cfg.mean_active_emitters), 2000)
            self.sites = prior.sites_px(
                pool, cfg.height_px, cfg.width_px, cfg.pixel_size_nm, rng, cfg.augment_structure
            )
            if len(self.sites) == 0:
                raise ValueError(f"the structure {prior.source} has no sites inside the simulated field")
        else:
            fresh_each_frame = not cfg.blinking and cfg.structure in ("uniform", "disc")
            self.sites = None if fresh_each_frame else _structure_sites(cfg, rng)
        self.chain = None
        if cfg.blinking:
            self.chain = BlinkingChain(len(self.sites), cfg.mean_active_emitters, cfg.on_lifetime_frames, rng)

    def _fresh_positions(self, k: int) -> np.ndarray:
        cfg = self.cfg
        if cfg.structure == "uniform":
            return uniform_sites(k, cfg.height_px, cfg.width_px, self.rng)
        return disc_sites(k, cfg.height_px, cfg.width_px, self.rng, cfg.disc_radius_px)

    def next_frames(self, n_frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: (positions (k, 2) in px, site ids (k,), -1 where fresh)."""
        cfg, rng = self.cfg, self.rng
        out = []
        if self.chain is not None:
            for on in self.chain.step(n_frames):
                ids = np.flatnonzero(on)
                out.append((self.sites[ids], ids))
            return out
        counts = rng.poisson(cfg.mean_active_emitters, size=n_frames)
        for k in counts:
            if self.sites is None:
                out.append((self._fresh_positions(k), np.full(k, -1)))
            else:
                ids = rng.choice(len(self.sites), size=min(k, len(self.sites)), replace=False)
                out.append((self.sites[ids], ids))
        return out


def _padded(per_frame: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(per_frame), max(width, 1)))
    for i, values in enumerate(per_frame):
        out[i, : len(values)] = values
    return out


def iter_simulation(
    cfg: SimulationConfig,
    chunk_frames: int = 256,
    with_kde: bool = False,
    quantize: bool = False,
    prior: StructurePrior | None = None,
) -> Iterator[SimulatedChunk]:
    """Generate a movie chunk by chunk (bounded memory for long movies). ``prior``: the
    structure from the user's data (``cfg.structure`` is then not used)."""
    cfg.validate()
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    emitter_rng, photon_rng, noise_rng = (np.random.default_rng(s) for s in seeds[:3])
    source = _EmitterSource(cfg, emitter_rng, prior)
    camera = cfg.camera
    shape = (cfg.height_px, cfg.width_px)
    background = background_photons_map(cfg, np.random.default_rng(seeds[3]))
    done = 0
    while done < cfg.n_frames:
        n = min(chunk_frames, cfg.n_frames - done)
        frames = source.next_frames(n)
        if cfg.drift_x_nm or cfg.drift_y_nm or cfg.drift_wobble_nm:  # the stage moves the whole sample
            dx, dy = cfg.drift_nm(np.arange(done + 1, done + n + 1))
            frames = [
                (xy + np.array([ddx, ddy]) / cfg.pixel_size_nm, ids) for (xy, ids), ddx, ddy in zip(frames, dx, dy)
            ]
        counts = [len(ids) for _, ids in frames]
        width = max(counts) if counts else 0
        photons = [_photons(c, cfg, photon_rng) for c in counts]
        x = _padded([xy[:, 0] for xy, _ in frames], width)
        y = _padded([xy[:, 1] for xy, _ in frames], width)
        w = _padded(photons, width)
        omega = expected_photons(x, y, w, shape, cfg.psf_sigma_px, background)
        adu = camera.expose(omega, noise_rng)
        if quantize:
            adu = quantize_uint16(adu)
        kde = None
        if with_kde:
            present = _padded([np.ones(c) for c in counts], width)
            kde = render_kde(x, y, present, shape, cfg.kde_sigma_upsampled_px, UPSAMPLING).astype(np.float32)
        frame_numbers = np.repeat(np.arange(done + 1, done + n + 1), counts)
        xy_all = np.concatenate([xy for xy, _ in frames]) if sum(counts) else np.zeros((0, 2))
        truth = Localizations(
            frame=frame_numbers,
            x_nm=xy_all[:, 0] * cfg.pixel_size_nm,
            y_nm=xy_all[:, 1] * cfg.pixel_size_nm,
            intensity_photons=np.concatenate(photons) if sum(counts) else np.zeros(0),
            extra={
                "site_id": np.concatenate([ids for _, ids in frames]).astype(np.int64)
                if sum(counts)
                else np.zeros(0, np.int64)
            },
        )
        yield SimulatedChunk(done + 1, adu, omega, truth, kde)
        done += n


def background_photons_map(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray | float:
    """The movie's expected background (photons per pixel): a scalar when flat without hot
    pixels (the original forward model), else a (rows, cols) map fixed over the movie."""
    if cfg.background_structure == "flat" and cfg.hot_pixels == 0:
        return float(cfg.background_photons)
    shape = (cfg.height_px, cfg.width_px)
    return background_map(cfg.background_structure, shape, cfg.background_photons, rng) + hot_pixel_map(
        shape, cfg.hot_pixels, rng
    )


def _photons(count: int, cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    if cfg.photon_spread <= 0:
        return np.full(count, float(cfg.photons))
    shape = 1.0 / cfg.photon_spread**2
    return rng.gamma(shape, cfg.photons / shape, size=count)


def simulate_stack(
    cfg: SimulationConfig,
    with_kde: bool = False,
    quantize: bool = False,
    keep_omega: bool = False,
    prior: StructurePrior | None = None,
) -> SimulatedStack:
    """A whole movie in memory: ADU frames, ground truth, optional KDE targets."""
    chunks = list(iter_simulation(cfg, with_kde=with_kde, quantize=quantize, prior=prior))
    truth = Localizations.concatenate([c.truth for c in chunks])
    truth.extra["id"] = np.arange(1, len(truth) + 1)
    return SimulatedStack(
        config=cfg,
        adu=np.concatenate([c.adu for c in chunks]),
        truth=truth,
        kde=np.concatenate([c.kde for c in chunks]) if with_kde else None,
        omega_photons=np.concatenate([c.omega_photons for c in chunks]) if keep_omega else None,
    )
