"""``smlm-diffusion train phi|psi``: train a model on domain-randomised simulated data.

Seeded and resumable: rerunning the same command with the same ``--checkpoint`` continues
exactly where an interrupted run stopped (Ctrl-C saves a checkpoint first)."""

from __future__ import annotations

import shlex
import sys
import time

from ..errors import SmlmInputError
from .interrupt import StopOnSignals


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train phi (CNN) or psi (conditional DDPM) on simulated data",
        description="Train on frames simulated on the fly over a wide range of PSF widths, "
        "photon counts, backgrounds, read noise and densities.",
    )
    p.add_argument("model", choices=("phi", "psi"), help="which network to train")
    p.add_argument("--out", required=True, metavar="FILE.pt", help="model file to write at the end")
    p.add_argument(
        "--checkpoint", metavar="FILE", help="checkpoint file (resumed from when it exists; default: OUT with .ckpt)"
    )
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps (default 6000)")
    p.add_argument("--batch-size", type=int, default=16, help="frames per step (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--channels", type=int, help="network width (default 48 for phi, 32 for psi)")
    p.add_argument(
        "--architecture",
        choices=("camera", "unet4x"),
        default="camera",
        help="psi: 'camera' (version 2, U-Net at camera resolution with the raw frame as input) or "
        "'unet4x' (version 1, the paper's U-Net on the 4x grid) (default camera)",
    )
    p.add_argument(
        "--target",
        choices=("residual", "kde", "scaled"),
        default="residual",
        help="psi version 2: model the residual y - phi(x) or the KDE y itself (default residual); "
        "'scaled' (with --condition refined): the residual in units of the fits' precision",
    )
    p.add_argument(
        "--prediction",
        choices=("eps", "v"),
        default="eps",
        help="psi version 2: the network predicts the noise (eps, the paper's) or v = sqrt(g) eps - "
        "sqrt(1-g) y0, which stays accurate where the cosine schedule reaches noise (default eps)",
    )
    p.add_argument(
        "--frame-channels",
        type=int,
        choices=(2, 3, 4),
        help="psi: frame channels it reads (default: phi's two; 3 adds the unclipped SNR, "
        "from which psi can tell how precisely an emitter is localized, or with --condition "
        "refined the fits' precision; 4, refined only, also the fits' Poisson residual)",
    )
    p.add_argument(
        "--condition-dropout",
        type=float,
        default=0.0,
        metavar="P",
        help="psi: share of training examples that see no phi estimate, so that psi learns to "
        "read the frame (default 0)",
    )
    p.add_argument(
        "--condition",
        choices=("phi", "refined"),
        default="phi",
        help="psi: what it is conditioned on: phi's KDE (default), or the likelihood-refined "
        "localizations' KDE with their precision as a third frame channel (needs "
        "--frame-channels 3)",
    )
    p.add_argument(
        "--condition-fits",
        choices=("surrogate", "pipeline"),
        default="surrogate",
        help="psi --condition refined: train on a surrogate of the fits drawn from the simulated "
        "truth (default, fast), or on the engine's own fits of each training frame (phi, "
        "detection and maximum-likelihood fit: what psi sees at inference, about 2x slower)",
    )
    p.add_argument(
        "--z-clip",
        type=float,
        metavar="Z",
        help="psi --target scaled: bound the residual in units of the fits' precision, |z| <= Z, in "
        "training and (recorded in the model file) in sampling; where the fits missed an emitter "
        "beside a precise one, z reaches 100 and more (default: unbounded, or the --init model's)",
    )
    p.add_argument(
        "--high-noise-share",
        type=float,
        default=0.0,
        metavar="P",
        help="psi: share of training examples whose noise level is drawn from the top tenth of the "
        "schedule, where psi must learn to ignore the noise frame (default 0: uniform)",
    )
    p.add_argument(
        "--density",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="emitters per um^2 of the simulated frames, drawn log-uniform in [LOW, HIGH] (default "
        "0.05 4): a psi trained on your data's density hedges only as much for unresolved "
        "neighbours as your data warrant",
    )
    p.add_argument("--blocks", type=int, default=2, help="psi version 2: residual blocks per U-Net level (default 2)")
    p.add_argument(
        "--schedule",
        choices=("cosine", "linear"),
        default="cosine",
        help="psi noise schedule: 'cosine' reaches noise (gamma_T ~ 0); 'linear' is the paper's "
        "1e-4..1e-2, whose gamma_T is 0.6 (default cosine)",
    )
    p.add_argument("--frame-size", type=int, help="training frame side in pixels (default 32 phi, 24 psi)")
    p.add_argument(
        "--loss",
        choices=("simple", "eq8", "eps-weighted", "footprint"),
        default="simple",
        help="psi loss: simple MSE of the output, the eq. 8 variational weighting, or (v-prediction) "
        "eps-weighted: the v loss weighted by gamma_t, so each noise level counts as in the "
        "noise loss, or footprint: pixels where phi sees an emitter weigh 10 times the empty "
        "ones (default simple)",
    )
    p.add_argument("--phi", default="phi", help="psi: conditioning phi model, bundled name or file (default phi)")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="also train on NAME.tif + NAME_kde.tif pairs from this folder "
        "(written by `smlm-diffusion simulate --kde`)",
    )
    p.add_argument(
        "--data-fraction", type=float, default=0.5, help="share of each batch taken from --data (default 0.5)"
    )
    p.add_argument(
        "--structures",
        nargs="+",
        metavar="FILE",
        default=[],
        help="also place emitters on structures from your own data: localization tables (.csv, Picasso "
        ".hdf5) or super-resolution images (.tif), randomly cropped, flipped and rotated",
    )
    p.add_argument(
        "--structure-fraction",
        type=float,
        default=0.3,
        help="share of the simulated frames on those structures (default 0.3)",
    )
    p.add_argument(
        "--structure-pixel-size",
        type=float,
        metavar="NM",
        help="pixel size of structure images or Picasso tables whose files do not say it",
    )
    p.add_argument(
        "--init",
        metavar="MODEL",
        default="",
        help="fine-tune: start from this model (bundled name such as phi, or a file) instead of scratch",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (default 5)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--export-checkpoint",
        action="store_true",
        help="write --out from the checkpoint as it stands (the same command otherwise), without "
        "training: an interim model to measure while the run goes on",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes simulating batches ahead of the optimiser (default 0: in the training "
        "process); the batches, and so the result, do not depend on it",
    )


def run(args) -> int:
    import torch

    from ..inference.devices import resolve_device
    from ..models.training import TrainSettings, run_training

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = TrainSettings(
        kind=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        loss=args.loss,
        channels=args.channels,
        frame_px=args.frame_size,
        phi_model=args.phi,
        psi_architecture=args.architecture,
        psi_target="kde" if args.architecture == "unet4x" else args.target,
        psi_blocks=args.blocks,
        psi_prediction=args.prediction,
        schedule=args.schedule,
        psi_frame_channels=args.frame_channels or 0,
        condition_dropout=args.condition_dropout,
        psi_condition=args.condition,
        condition_fits=args.condition_fits,
        psi_z_clip=args.z_clip,
        high_noise_share=args.high_noise_share,
        density_per_um2=tuple(args.density) if args.density else None,
        checkpoint_minutes=args.checkpoint_minutes,
        data_folder=args.data,
        data_fraction=args.data_fraction,
        structure_files=[str(f) for f in args.structures],
        structure_fraction=args.structure_fraction,
        init_model=args.init,
    )
    settings.validate()
    if not 0.0 <= args.structure_fraction <= 1.0:
        raise SmlmInputError("--structure-fraction is a share between 0 and 1")
    from ..io.structure import read_structure

    priors = [read_structure(f, args.structure_pixel_size) for f in args.structures]
    checkpoint = args.checkpoint or f"{args.out}.ckpt"
    started = time.monotonic()
    first: dict = {}

    def progress(step: int, total: int, loss: float) -> None:
        if step % 10 and step != total:
            return
        done = step / total
        bar = "#" * int(30 * done)
        first.setdefault("step", step - 1)  # a resumed run counts its rate from where it resumed
        rate = (step - first["step"]) / max(time.monotonic() - started, 1e-9)
        print(
            f"\r[{bar:<30}] {step}/{total} loss {loss:.4g} ({rate:.2f} steps/s this run)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    command = (
        "smlm-diffusion train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2 and sys.argv[1] == "train"
        else ""
    )
    if args.export_checkpoint:
        from pathlib import Path

        from ..models.training import Trainer

        if not Path(checkpoint).exists():
            raise SmlmInputError(f"there is no checkpoint {checkpoint} to export: train first, or give --checkpoint")
        trainer = Trainer(settings, device, priors, fitter=lambda *a: None)  # exporting fits nothing
        trainer.restore(checkpoint)
        trainer.export(args.out, command.replace(" --export-checkpoint", ""))
        print(f"wrote {args.out} from {checkpoint} (step {trainer.step_index} of {settings.steps})", file=sys.stderr)
        return 0
    fitter = None
    if settings.psi_condition == "refined" and settings.condition_fits == "pipeline":
        from ..reconstruction.refine import PipelineFits

        fitter = PipelineFits(settings.phi_model, settings.domain.pixel_size_nm)
    # a signal asks the loop to checkpoint and stop instead of dying mid-write
    with StopOnSignals(announcement=None, second_stops_at_once=False) as stopper:
        trainer = run_training(
            settings,
            args.out,
            checkpoint,
            device,
            progress,
            stopper.requested,
            command,
            priors=priors,
            workers=max(0, args.workers),
            fitter=fitter,
        )
    print(file=sys.stderr)
    if trainer.step_index < settings.steps:
        print(
            f"stopped at step {trainer.step_index}; checkpoint saved to {checkpoint} - rerun the same command "
            "to resume",
            file=sys.stderr,
        )
        return 130
    print(f"wrote {args.out} ({trainer.step_index} steps, {trainer.elapsed_s:.0f} s of training)", file=sys.stderr)
    return 0
