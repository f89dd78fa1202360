"""Settings and results of a reconstruction (the contract between the core, the CLI and
the napari widgets)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..inference.devices import PRECISION_CHOICES
from ..inference.sampling_settings import SamplerSettings
from ..localizations import Localizations
from .pictures import KDE_SUPPORT_CHOICES

#: Default of the detection knob: the false-alarm probability of a background-only candidate
#: (analysis/detection.py), chosen on background-only and dim-emitter frames in
#: benchmarks/detection.py (docs/performance.md).
DEFAULT_FALSE_ALARM = 1e-3
#: Default of the second detection knob, a photon floor (0: the test alone decides).
DEFAULT_MIN_PHOTONS = 0.0


@dataclass
class ReconstructionSettings:
    pixel_size_nm: float = 108.0
    offset_adu: float = 100.0
    gain_adu_per_photon: float = 1.0
    camera: str = "given"  # "given": use offset and gain; "auto": estimate them from the movie
    offset_source: str = "given"  # where offset_adu came from: "given", "metadata" or "default" (a guess)
    camera_maps: str = ""  # sCMOS per-pixel maps file (offset, read variance, gain;
    # analysis/camera_maps.py); replaces offset, gain and read noise
    sensor_origin_px: tuple[int, int] | None = None  # (row, col) of the movie's first pixel on the sensor (its
    # ROI, from the file's metadata): full-sensor maps are cut there
    emccd: bool = False  # EMCCD excess noise (F^2 = 2) for the gain estimate
    frames: tuple[int, int] | None = None  # 0-based [start, stop) of the stack; None = all
    region: tuple[int, int, int, int] | None = None  # camera px (row0, row1, col0, col1); None = whole frame
    posterior: bool = True
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # networks' arithmetic: "auto" (bfloat16 where the CPU has it natively),
    # "float32" or "bfloat16" (inference/devices.py)
    phi_model: str = "phi"
    psi_model: str = "auto"  # "auto": the bundled psi, or psi-sparse for a sparse movie (engine
    # ._choose_psi); or a bundled name or model file
    false_alarm: float = DEFAULT_FALSE_ALARM  # the detection knob: keep candidates whose test against "background
    # only" has a p-value of at most this (analysis/detection.py)
    min_photons: float = DEFAULT_MIN_PHOTONS  # a second knob: also require this many background-subtracted photons
    keep_flagged: bool = False  # keep fits flagged as failed, imprecise or runaway (fit_flag) in the table
    psf_sigma_px: float | None = None  # PSF sigma for the likelihood fit; None: measured on the movie
    read_noise_e: float = 1.4  # read noise (e- rms) in the likelihood (Poisson + read variance)
    refine: bool = True  # maximum-likelihood refinement on the raw frame (analysis/fit.py)
    multi_emitter: bool = True  # split a fit that two emitters explain better (analysis/multi_emitter.py)
    kde_threshold: float = 0.3  # LoG candidates on the KDE: fraction of one emitter's response
    match_radius_px: float = 1.0  # chain-to-mean matching radius (camera px)
    chunk_frames: int = 0  # frames read, sent through phi and fitted together; 0: by frame size

    kde_support: str = "localizations"  # KDEs, posterior mean and variance kept near accepted localizations
    # ("localizations") or as the networks give them ("everywhere")
    render_pixel_nm: float = 0.0  # pixel of the precision render (render.tif); 0: a tenth of a camera px
    keep_frame_kdes: bool = False  # keep each frame's mean/variance KDE (memory!)
    drift: str = "auto"  # drift correction after the run: "auto" (when the table allows) | "off"
    drift_block_frames: int = 0  # frames per partial render shifted by its drift; 0: <= 32 blocks
    link: bool = False  # also link blinks into groups (localizations_linked.csv)

    def validate(self) -> None:
        if not self.pixel_size_nm > 0:
            raise ValueError(f"the pixel size must be positive (nm), not {self.pixel_size_nm:g}")
        if not self.gain_adu_per_photon > 0:
            raise ValueError(f"the camera gain must be positive (ADU per photon), not {self.gain_adu_per_photon:g}")
        if self.camera not in ("given", "auto"):
            raise ValueError(f"camera must be 'given' or 'auto', not {self.camera!r}")
        if self.camera_maps and self.camera == "auto":
            raise ValueError("camera maps give every pixel's offset and gain; use them or --camera auto, not both")
        if self.offset_source not in ("given", "metadata", "default"):
            raise ValueError(f"offset_source must be 'given', 'metadata' or 'default', not {self.offset_source!r}")
        if not self.kde_threshold > 0:
            raise ValueError("the KDE detection threshold must be positive")
        if self.psf_sigma_px is not None and not 0.3 <= self.psf_sigma_px <= 5.0:
            raise ValueError(
                f"a PSF sigma of {self.psf_sigma_px:g} camera pixels is implausible; SMLM PSFs have "
                "sigma 0.7-2 px (give it in camera pixels, not nm)"
            )
        if not self.read_noise_e >= 0:
            raise ValueError("the read noise must be zero or positive (electrons rms)")
        if not self.min_photons >= 0:
            raise ValueError(f"the minimum photons per localization must be zero or positive, not {self.min_photons:g}")
        if not 0 < self.false_alarm <= 1:
            raise ValueError(f"the false-alarm probability must be in (0, 1], not {self.false_alarm:g}")
        if self.chunk_frames < 0:
            raise ValueError("chunk_frames must be at least 1 (or 0: by frame size)")
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {self.precision!r}")
        if self.kde_support not in KDE_SUPPORT_CHOICES:
            raise ValueError(f"kde_support must be one of {', '.join(KDE_SUPPORT_CHOICES)}, not {self.kde_support!r}")
        if not self.render_pixel_nm >= 0:
            raise ValueError(
                f"the render pixel must be positive (nm; 0: a tenth of a camera pixel), not {self.render_pixel_nm:g}"
            )
        if self.drift not in ("auto", "off"):
            raise ValueError(f"drift must be 'auto' or 'off', not {self.drift!r}")

    def frames_per_chunk(self, rows: int, cols: int) -> int:
        """``chunk_frames``, or when 0, by frame size: 2^18 pixels, 16 to 128 frames (64x64:
        64 frames, 256x256: 16). The fits of a chunk run as one batch, and small frames need
        many per batch to outweigh the per-call cost (docs/performance.md, phi path speed)."""
        if self.chunk_frames:
            return self.chunk_frames
        return int(np.clip((1 << 18) // max(rows * cols, 1), 16, 128))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ReconstructionSettings:
        """``to_dict()`` back (tuples that JSON made lists again); unknown keys are an error."""
        values = dict(values)
        sampler = {k: tuple(v) if isinstance(v, list) else v for k, v in values.pop("sampler", {}).items()}
        for key in ("frames", "region", "sensor_origin_px"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown reconstruction settings: {', '.join(unknown)}")
        return cls(**values, sampler=SamplerSettings(**sampler))


@dataclass
class FrameResult:
    frame: int  # 1-based frame number in the stack
    mean_kde: np.ndarray  # (4H, 4W) eq. 3 units (unit mass per emitter)
    variance_kde: np.ndarray | None  # (4H, 4W) posterior variance, eq. 3 units squared
    localizations: Localizations


@dataclass
class ProgressEvent:
    done: int  # work units finished (psi tiles, or frames on the phi path)
    total: int
    frame_result: FrameResult | None = None
    message: str = ""
    next_frame_ready: bool = False  # the next frame is computed already (phi path, within a chunk): a stop
    # request may take it at no cost


@dataclass
class Reconstruction:
    settings: ReconstructionSettings
    shape_px: tuple[int, int]  # (rows, cols) of the reconstructed region
    origin_px: tuple[int, int] = (0, 0)  # (row0, col0) of the region in the frame
    frames: list[int] = field(default_factory=list)
    render_kde: np.ndarray | None = None  # sum of the frames' KDEs (posterior means), (4H, 4W)
    render_variance: np.ndarray | None = None  # sum of per-frame posterior variances of the KDE, (4H, 4W)
    render: np.ndarray | None = None  # precision render of the localizations (reconstruction/pictures.py)
    render_pixel_nm: float = 0.0  # its pixel
    mean_kdes: dict[int, np.ndarray] = field(default_factory=dict)
    variance_kdes: dict[int, np.ndarray] = field(default_factory=dict)
    completed: bool = False
    device: str = "cpu"
    precision: str = "float32"  # the networks' arithmetic this run used
    network_evaluations: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    psf_sigma_px: float | None = None  # the PSF sigma the fit used (given or measured)
    psf_sigma_source: str = ""  # "given", "measured on N spots" or "fallback"
    camera_estimate: dict | None = None  # photon-transfer estimate of gain and offset (analysis/camera.py)
    psi_model: str = ""  # the psi the posterior used (bundled name or file; "" without one)
    psi_choice: str = ""  # with psi_model="auto": the first frames' density and the choice
    warnings: list[str] = field(default_factory=list)
    frames_requested: int = 0
    frame_tables: list[Localizations] = field(default_factory=list, repr=False)  # one per finished frame
    # partial renders of blocks of frames (block index -> 4x map), kept for drift correction
    block_frames: int = 0
    render_blocks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    variance_blocks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    postprocessing: dict = field(default_factory=dict)  # drift, linking and FRC records (run.json)
    # every detection candidate's p-value (kept or not), for the movie-level probability column
    candidate_p_values: list[np.ndarray] = field(default_factory=list, repr=False)
    _joined: tuple[int, Localizations] | None = field(default=None, repr=False)

    def finish_probability(self) -> None:
        """Each row's ``probability`` from every candidate of the run (``refine.final_probability``)."""
        from .refine import final_probability

        final_probability(self.frame_tables, self.candidate_p_values)
        self._joined = None

    def update_render(self) -> None:
        """(Re)draw ``render`` from the current localizations (after a run, after drift)."""
        from .pictures import precision_render

        self.render, self.render_pixel_nm = precision_render(
            self.localizations,
            self.shape_px,
            self.origin_px,
            self.settings.pixel_size_nm,
            self.settings.render_pixel_nm,
        )

    @property
    def localizations(self) -> Localizations:
        """All finished frames' localizations (joined once per change, not per frame)."""
        if self._joined is None or self._joined[0] != len(self.frame_tables):
            joined = Localizations.concatenate(self.frame_tables) if self.frame_tables else Localizations.empty()
            self._joined = (len(self.frame_tables), joined)
        return self._joined[1]
