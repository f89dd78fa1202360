"""Training loops for phi (MSE to the KDE, appendix A.6) and psi (noise prediction,
simple loss or the eq. 8 weighting), with seeded on-the-fly data, periodic checkpoints
and exact resume: the batch, the timesteps and the noise of step k depend only on
(seed, k), and a checkpoint holds the model, the optimiser and the step."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .normalisation import INPUT_NORMALISATION, kde_scale
from .phi import ShufflePhi
from .psi import CameraPsi, ConditionalUNet, set_z_clip
from .schedule import NoiseSchedule
from .store import load_model, model_payload, save_file, sha256_of
from .training_data import FolderData, TrainingDomain, mixed_batch


@dataclass
class TrainSettings:
    kind: str  # "phi" | "psi"
    steps: int = 6000
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    seed: int = 0
    loss: str = "simple"  # psi: "simple" | "eq8" | "eps-weighted" (v) | "footprint" (see _loss)
    channels: int | None = None  # default 48 (phi) / 32 (psi camera) / 16 (psi unet4x)
    psi_architecture: str = "camera"  # psi: "camera" (v2, camera resolution) | "unet4x" (v1, the paper's)
    psi_target: str = "residual"  # psi v2: "residual" (y - phi(x)) | "kde" (y) | "scaled" (refined only)
    psi_blocks: int = 2  # psi v2: residual blocks per U-Net level
    psi_prediction: str = "eps"  # psi (camera): network output "eps" (noise) | "v" (v-prediction)
    psi_frame_channels: int = 0  # psi (camera): frame channels read; 0 = phi's, 3 = phi's two + the SNR
    condition_dropout: float = 0.0  # psi: share of examples whose phi KDE is replaced by zeros (see _loss)
    psi_condition: str = "phi"  # psi (camera): "phi" (phi's KDE) | "refined" (models.conditioning)
    condition_fits: str = "surrogate"  # refined: "surrogate" (drawn from the truth) | "pipeline" (the engine's)
    psi_z_clip: float | None = None  # scaled psi: bound |z| <= this in training and sampling (None: unbounded;
    # fine-tuning keeps the --init model's)
    schedule: str = "cosine"  # psi: "cosine" (gamma_T ~ 0) | "linear" (the paper's 1e-4..1e-2)
    high_noise_share: float = 0.0  # psi: share of examples with t from the top tenth (_high_noise_levels)
    density_per_um2: tuple[float, float] | None = None  # the prior's emitter density range, log-uniform
    # (None: the domain's, 0.05-4 /um^2 at 108 nm pixels)
    frame_px: int | None = None  # training frame side; default 32 (phi) / 24 (psi)
    phi_model: str = "phi"  # psi's conditioning model (name or path)
    checkpoint_minutes: float = 5.0
    data_folder: str | None = None  # optional folder of simulate --kde outputs
    data_fraction: float = 0.5  # share of each batch drawn from data_folder
    structure_files: list = field(default_factory=list)  # structure priors from the user's data (their files)
    structure_fraction: float = 0.3  # share of the simulated frames placed on them
    init_model: str = ""  # fine-tune from this model file or bundled name ("" = from scratch)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in ("phi", "psi"):
            raise ValueError("the model to train must be phi or psi")
        if self.loss not in ("simple", "eq8", "eps-weighted", "footprint"):
            raise ValueError("the loss must be 'simple', 'eq8', 'eps-weighted' or 'footprint'")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError("the condition dropout is a share between 0 and 1")
        if not 0.0 <= self.high_noise_share <= 1.0:
            raise ValueError("the high-noise share is a share between 0 and 1")
        if self.psi_frame_channels not in (0, 2, 3, 4) or (
            self.psi_frame_channels and self.psi_architecture != "camera"
        ):
            raise ValueError(
                "psi reads 2, 3 or 4 frame channels (3: with the SNR or, refined, the precision channel; "
                "4: refined, with the fits' residual; camera architecture only)"
            )
        if self.psi_frame_channels == 4 and self.psi_condition != "refined":
            raise ValueError("the fourth frame channel is the refined fits' residual: use it with --condition refined")
        if self.condition_fits not in ("surrogate", "pipeline"):
            raise ValueError("the refined condition's fits are 'surrogate' or 'pipeline'")
        if self.psi_condition not in ("phi", "refined"):
            raise ValueError("psi's condition must be 'phi' or 'refined'")
        if self.psi_condition == "refined" and (
            self.psi_architecture != "camera"
            or self.psi_frame_channels not in (3, 4)
            or self.psi_target not in ("residual", "scaled")
            or self.data_folder
        ):
            raise ValueError(
                "a psi conditioned on refined localizations (--condition refined) needs the camera "
                "architecture, the residual or scaled target and --frame-channels 3 (4 with the fits' "
                "residual), and trains on simulations only (a data folder holds no true positions to "
                "fit)"
            )
        if self.psi_z_clip is not None and (self.psi_target != "scaled" or not self.psi_z_clip > 0):
            raise ValueError(
                "the bound on the residual (--z-clip, a number > 0) is for the scaled residual (--target scaled)"
            )
        if self.psi_target == "scaled" and self.psi_condition != "refined":
            raise ValueError(
                "the scaled residual (--target scaled) is in units of the refined fits' precision: "
                "use it with --condition refined"
            )
        if self.loss == "eps-weighted" and self.psi_prediction != "v":
            raise ValueError("the eps-weighted loss is for v-prediction (--prediction v)")
        if self.psi_architecture not in ("camera", "unet4x") or self.psi_target not in ("residual", "kde", "scaled"):
            raise ValueError(
                "psi's architecture must be 'camera' or 'unet4x' and its target 'residual', 'kde' or 'scaled'"
            )
        if self.psi_architecture == "unet4x" and self.psi_target != "kde":
            raise ValueError("the version-1 psi (unet4x) models the KDE itself: use --target kde")
        if self.psi_prediction not in ("eps", "v") or (
            self.psi_prediction == "v" and self.psi_architecture != "camera"
        ):
            raise ValueError("psi's prediction must be 'eps' or 'v' (v only for the camera architecture)")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError("the noise schedule must be 'cosine' or 'linear'")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch size must be at least 1")
        if self.density_per_um2 is not None:
            low, high = self.density_per_um2
            if not 0.0 < low <= high <= 50.0:
                raise ValueError("the training density is a range of emitters per um^2, 0 < low <= high <= 50")

    @property
    def resolved_channels(self) -> int:
        if self.channels:
            return self.channels
        return 48 if self.kind == "phi" else (32 if self.psi_architecture == "camera" else 16)

    @property
    def domain(self) -> TrainingDomain:
        domain = TrainingDomain(frame_px=self.frame_px or (32 if self.kind == "phi" else 24))
        if self.density_per_um2 is not None:
            domain = replace(domain, density_per_um2=tuple(float(d) for d in self.density_per_um2))
        return domain


#: ``--loss footprint``: extra weight of the pixels where phi's KDE exceeds the threshold (model units)
FOOTPRINT_WEIGHT = 9.0
FOOTPRINT_THRESHOLD = 0.05


def with_frame_channels(psi: torch.nn.Module, frame_channels: int) -> torch.nn.Module:
    """A camera psi reading ``frame_channels`` frame channels, from one reading fewer: the
    stem's weights for the new channels start at zero, so it starts as the old model."""
    old = int(psi.config.get("frame_channels", 2))
    if frame_channels == old:
        return psi
    if psi.config.get("architecture") != "camera" or frame_channels < old:
        raise ValueError(f"cannot turn this psi's {old} frame channels into {frame_channels}")
    config = {k: v for k, v in psi.config.items() if k != "architecture"}
    config["frame_channels"] = frame_channels
    config["multipliers"] = tuple(config["multipliers"])
    if psi.prediction != "eps":
        config["prediction"] = psi.prediction
    wider = CameraPsi(**config)
    state = psi.state_dict()
    stem = state["stem.weight"]
    grown = torch.zeros(stem.shape[0], stem.shape[1] + frame_channels - old, *stem.shape[2:], dtype=stem.dtype)
    grown[:, : stem.shape[1]] = stem
    state["stem.weight"] = grown
    wider.load_state_dict(state)
    return wider.to(stem.device).train()


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then cosine decay to 2 % of the peak at the last step."""
    warm = min(1.0, (step + 1) / max(settings.warmup_steps, 1))
    cosine = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
    return settings.learning_rate * warm * cosine


class Trainer:
    """One training run; ``step()`` advances one optimiser step and returns the loss."""

    def __init__(
        self, settings: TrainSettings, device: str | torch.device = "cpu", priors: list | None = None, fitter=None
    ) -> None:
        settings.validate()
        if settings.psi_condition == "refined" and settings.condition_fits == "pipeline" and fitter is None:
            raise ValueError("training on the pipeline's fits needs its fitter (reconstruction.refine.PipelineFits)")
        self.settings = settings
        self.fitter = fitter if settings.condition_fits == "pipeline" else None
        self.priors = list(priors or [])  # StructurePriors read from settings.structure_files by the caller
        self.device = torch.device(device)
        torch.manual_seed(settings.seed)
        self.schedule = NoiseSchedule(kind=settings.schedule) if settings.kind == "psi" else None
        if settings.kind == "phi":
            self.model = ShufflePhi(channels=settings.resolved_channels)
            self.phi = None
            self.input_normalisation = dict(INPUT_NORMALISATION)
        else:
            phi = load_model(settings.phi_model, self.device)
            self.phi = phi.module
            self.phi_sha256 = sha256_of(phi.path) if phi.path is not None else None
            self.input_normalisation = dict(phi.normalisation["input"])
            self.phi_channels = int(phi.module.config.get("in_channels", 1))
            frame_channels = settings.psi_frame_channels or self.phi_channels
            if settings.psi_condition == "refined":  # the third channel is the batch's precision channel
                if self.phi_channels != 2:
                    raise ValueError("the refined condition needs a phi with version-2 inputs")
            elif frame_channels > self.phi_channels:
                if self.phi_channels != 2:
                    raise ValueError("the SNR frame channel needs a phi with version-2 inputs")
                self.input_normalisation["channels"] = frame_channels
            if settings.psi_architecture == "camera":
                self.model = CameraPsi(
                    channels=settings.resolved_channels,
                    blocks=settings.psi_blocks,
                    frame_channels=frame_channels,
                    target=settings.psi_target,
                    prediction=settings.psi_prediction,
                    condition=settings.psi_condition,
                    z_clip=settings.psi_z_clip,
                )
            else:
                self.model = ConditionalUNet(channels=settings.resolved_channels)
        if settings.init_model:  # fine-tuning: start from a model file's weights (and its architecture)
            start = load_model(settings.init_model, self.device)
            if start.kind != settings.kind:
                raise ValueError(f"--init {settings.init_model} holds a {start.kind} model, not {settings.kind}")
            self.model = start.module.train()
            if settings.kind == "psi" and settings.psi_frame_channels:
                self.model = with_frame_channels(self.model, settings.psi_frame_channels)
            if settings.kind == "psi" and settings.psi_condition != getattr(self.model, "condition", "phi"):
                # a psi trained on phi's KDE learns the refined condition: the same layout, and the
                # third frame channel (the SNR) now carries the refined emitters' precision
                if int(self.model.config.get("frame_channels", 2)) != 3:
                    raise ValueError("--init for the refined condition needs a psi reading 3 frame channels")
                self.model.condition = settings.psi_condition
                self.model.config["condition"] = settings.psi_condition
            if settings.kind == "psi" and settings.psi_z_clip is not None:
                if getattr(self.model, "target", "kde") != "scaled":
                    raise ValueError("--z-clip needs an --init psi with the scaled residual")
                set_z_clip(self.model, settings.psi_z_clip)
            if settings.kind == "phi":
                self.input_normalisation = dict(start.normalisation["input"])
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.learning_rate)
        self.folder = (
            FolderData(settings.data_folder, settings.domain.frame_px, self.input_normalisation)
            if settings.data_folder
            else None
        )
        self.step_index = 0
        self.losses: list[float] = []
        self.elapsed_s = 0.0

    # -- one step -------------------------------------------------------------
    def _high_noise_levels(self, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``high_noise_share`` of the noise levels t redrawn from the top tenth of the schedule.
        Near t = T the noise frame y_t says nothing about y0, so psi's estimate of y0 should not
        depend on it; psi v9 still passed ~0.2 of y_t through at t = T (uniform t gives those
        steps 6 % of the examples), and the 100-step chain amplifies that step by step
        (docs/models.md)."""
        top = self.schedule.n_steps - self.schedule.n_steps // 10
        high = torch.rand(len(t), generator=generator) < self.settings.high_noise_share
        return torch.where(high, torch.randint(top + 1, self.schedule.n_steps + 1, (len(t),), generator=generator), t)

    def _loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        step: int,
        conditions: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.settings.kind == "phi":
            return torch.mean((self.model(inputs) - targets) ** 2)
        generator = torch.Generator().manual_seed(int(self.settings.seed) * 1_000_003 + step)
        n = len(inputs)
        t = torch.randint(1, self.schedule.n_steps + 1, (n,), generator=generator)
        noise = torch.randn(targets.shape, generator=generator).to(self.device)
        if self.settings.high_noise_share:
            t = self._high_noise_levels(t, generator)
        if conditions is not None:  # --condition refined: the batch's surrogate fit
            condition = conditions
        else:
            with torch.no_grad():
                condition = self.phi(inputs[:, : self.phi_channels])
        if self.settings.condition_dropout:
            # these examples see no phi estimate (zeros; their residual is then the whole KDE), so
            # psi must learn to localize from the frame itself: the bundled psi barely reads the
            # frame (zeroing it changes its estimates by < 5 %), and so cannot tell a bright
            # emitter's precise position from a dim one's (docs/models.md)
            keep = torch.rand(len(inputs), generator=generator) >= self.settings.condition_dropout
            condition = condition * keep.to(condition.device, condition.dtype)[:, None, None, None]
        target = getattr(self.model, "target", "kde")
        y0 = targets - condition if target in ("residual", "scaled") else targets
        if target == "scaled":  # in units of the fits' precision (conditioning.residual_scale)
            y0 = y0 / scales
            if getattr(self.model, "z_clip", None):
                # an emitter the fits missed inside a precise fit's footprint has z of 100 or more
                # (S ~ 0.01): unbounded, a few such pixels dominate the loss and psi learns to
                # hedge everywhere (psi v7, docs/models.md); the sampler keeps the same bound
                y0 = y0.clamp(-self.model.z_clip, self.model.z_clip)
        t = t.to(self.device)
        y_t = self.schedule.q_sample(y0, t, noise)
        if getattr(self.model, "uses_frame", False):
            predicted = self.model(y_t, condition, t, inputs)
        else:
            predicted = self.model(y_t, condition, t)
        wanted = self.schedule.training_target(y0, noise, t, getattr(self.model, "prediction", "eps"))
        squared = (predicted - wanted) ** 2
        if self.settings.loss == "footprint":
            # emitters' pixels (where phi sees one) weigh FOOTPRINT_WEIGHT + 1 times the empty
            # ones: on a 24x24 frame most pixels are background, whose noise is easy to predict,
            # and the fine errors that set an isolated emitter's posterior width were about
            # 1 % of the loss. The weights depend on the condition only, so the best
            # prediction is still the posterior mean.
            weights = 1.0 + FOOTPRINT_WEIGHT * (condition > FOOTPRINT_THRESHOLD).float()
            squared = squared * weights / weights.mean()
        per_example = squared.mean(dim=(1, 2, 3))
        if self.settings.loss == "eq8":
            all_t = torch.arange(1, self.schedule.n_steps + 1)
            weights = self.schedule.loss_weight(t.cpu()) / self.schedule.loss_weight(all_t).mean()
            per_example = per_example * weights.to(self.device)
        elif self.settings.loss == "eps-weighted":
            # a v error of e moves y0_hat by sqrt(1 - g) e, an eps error by sqrt((1 - g) / g) e:
            # weighting the v loss by gamma_t weights every noise level's y0 error as the noise
            # loss does (SNR), where the plain v loss weights it by SNR + 1 and so moves capacity
            # to the noisiest steps; normalised to mean 1 over t
            gamma = self.schedule.gamma[1:].float()
            weights = self.schedule.gamma[t.cpu()].float() / gamma.mean()
            per_example = per_example * weights.to(self.device)
        return per_example.mean()

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        """The training batch of a step: a pure function of (seed, step)."""
        return _StepBatches(self, 0)[step]

    def step(self, batch: tuple | None = None) -> float:
        """One optimiser step on ``batch`` (default: simulate this step's batch here)."""
        s = self.settings
        started = time.perf_counter()
        arrays = [
            torch.as_tensor(a).to(self.device, non_blocking=True)
            for a in (self.batch(self.step_index) if batch is None else batch)
        ]
        inputs, targets = arrays[:2]
        conditions = arrays[2] if len(arrays) > 2 else None
        scales = arrays[3] if len(arrays) > 3 else None
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(s, self.step_index)
        self.model.train()
        loss = self._loss(inputs, targets, self.step_index, conditions, scales)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_index += 1
        self.losses.append(float(loss.detach()))
        self.elapsed_s += time.perf_counter() - started
        return self.losses[-1]

    # -- checkpoints ------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {
            "kind": self.settings.kind,
            "settings": _plain(asdict(self.settings)),
            "step": self.step_index,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "losses": list(self.losses),
            "elapsed_s": self.elapsed_s,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        return save_file(self.checkpoint(), path)

    def restore(self, path: str | Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        ours = _plain(asdict(self.settings))
        theirs = state["settings"]
        for key in (
            "kind",
            "steps",
            "batch_size",
            "learning_rate",
            "warmup_steps",
            "seed",
            "loss",
            "channels",
            "frame_px",
            "data_folder",
            "data_fraction",
            "psi_architecture",
            "psi_target",
            "psi_blocks",
            "psi_prediction",
            "psi_frame_channels",
            "condition_dropout",
            "psi_condition",
            "condition_fits",
            "schedule",
            "structure_files",
            "structure_fraction",
            "init_model",
            "high_noise_share",
            "density_per_um2",
        ):
            if key in theirs and ours[key] != theirs[key]:
                raise ValueError(
                    f"checkpoint {path} was made with {key}={theirs[key]!r}, not {ours[key]!r}; "
                    "use the same settings to resume or start a new checkpoint file"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index = int(state["step"])
        self.losses = list(state["losses"])
        self.elapsed_s = float(state["elapsed_s"])

    # -- export -----------------------------------------------------------------
    def export(self, path: str | Path, command: str = "") -> Path:
        s = self.settings
        normalisation = {
            "input": dict(self.input_normalisation),
            "kde_scale": kde_scale(),
            "kde_sigma_upsampled_px": 3.0,
            "upsampling": 4,
        }
        training = {
            "command": command,
            "steps": self.step_index,
            "batch_size": s.batch_size,
            "seed": s.seed,
            "loss": s.loss if s.kind == "psi" else "mse",
            "learning_rate": s.learning_rate,
            "wall_time_s": round(self.elapsed_s, 1),
            "final_loss_mean_last_100": float(np.mean(self.losses[-100:])) if self.losses else None,
            "domain": s.domain.to_dict(),
            "data_folder": s.data_folder,
            "data_fraction": s.data_fraction if s.data_folder else 0.0,
            "hardware": hardware_description(self.device),
            "phi_model": s.phi_model if s.kind == "psi" else None,
            "condition": s.psi_condition if s.kind == "psi" else None,
            "condition_fits": s.condition_fits if s.psi_condition == "refined" else None,
            "phi_sha256": getattr(self, "phi_sha256", None),
            "structure_files": list(s.structure_files),
            "init_model": s.init_model,
            "structure_fraction": s.structure_fraction if s.structure_files else 0.0,
            "torch": str(torch.__version__),
        }
        return save_file(model_payload(s.kind, self.model, normalisation, training, self.schedule), path)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _StepBatches(torch.utils.data.Dataset):
    """Batches by step index, for worker processes; the same batches as in-process."""

    def __init__(self, trainer: Trainer, first_step: int) -> None:
        # only what the simulation needs (no model, no CUDA state in the workers)
        self.settings, self.folder = trainer.settings, trainer.folder
        self.input_normalisation, self.priors = trainer.input_normalisation, trainer.priors
        self.fitter = trainer.fitter
        self.first_step = first_step

    def __len__(self) -> int:
        return self.settings.steps - self.first_step

    def __getitem__(self, index: int):
        s, step = self.settings, self.first_step + index
        return mixed_batch(
            s.seed,
            step,
            s.batch_size,
            s.domain,
            self.folder,
            s.data_fraction,
            self.input_normalisation,
            self.priors,
            s.structure_fraction if self.priors else 0.0,
            refined=s.kind == "psi" and s.psi_condition == "refined",
            fitter=self.fitter,
            fit_residual=s.kind == "psi" and s.psi_frame_channels == 4,
        )


def _batches(trainer: Trainer, workers: int):
    """This run's batches in step order, simulated by ``workers`` processes (0: here)."""
    if workers <= 0:
        while True:
            yield None
    loader = torch.utils.data.DataLoader(
        _StepBatches(trainer, trainer.step_index),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=4,
        pin_memory=trainer.device.type == "cuda",
        persistent_workers=False,
    )
    yield from loader


def run_training(
    settings: TrainSettings,
    out_path: str | Path,
    checkpoint_path: str | Path | None = None,
    device: str = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    command: str = "",
    priors: list | None = None,
    workers: int = 0,
    fitter=None,
) -> Trainer:
    """Train to ``settings.steps`` (resuming from ``checkpoint_path`` when it exists),
    checkpointing every ``checkpoint_minutes`` and on stop; export the model file at the end.
    ``workers`` processes simulate the batches ahead (the same batches: they depend only on
    the seed and the step), which keeps a GPU busy."""
    trainer = Trainer(settings, device, priors, fitter)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        trainer.restore(checkpoint_path)
    if trainer.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    last_save = time.monotonic()
    batches = _batches(trainer, workers)
    while trainer.step_index < settings.steps:
        waited = time.perf_counter()
        batch = next(batches)
        trainer.elapsed_s += time.perf_counter() - waited  # wall time: waiting for the workers counts
        loss = trainer.step(batch)
        if progress is not None:
            progress(trainer.step_index, settings.steps, loss)
        due = time.monotonic() - last_save > 60 * settings.checkpoint_minutes
        stopping = should_stop is not None and should_stop()
        if checkpoint_path is not None and (due or stopping):
            trainer.save_checkpoint(checkpoint_path)
            last_save = time.monotonic()
        if stopping:
            return trainer
    if checkpoint_path is not None:
        trainer.save_checkpoint(checkpoint_path)
    trainer.export(out_path, command)
    return trainer
