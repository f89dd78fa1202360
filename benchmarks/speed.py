"""Reconstruction speed (issue 4): phi-path frames/s, posterior seconds per 64x64 frame
(16 chains; accelerated and full sampling), network evaluations per frame.

    python benchmarks/speed.py [--device auto] [--full-frames 1] [--skip-full]

With ``--picasso-python`` (default: ``~/.cache/picasso-venv/bin/python`` when it exists;
see ``picasso_compare.py``), also runs Picasso's identify + fit on the same phi-path
stacks and prints frames/s and our ratio to it; without it, that row says so. Not a test: it prints a table for docs/.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from smlm_diffusion.inference.devices import PRECISION_CHOICES, inference_dtype
from smlm_diffusion.inference.sampling_settings import SamplerSettings
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack


def movie(n_frames: int, side: int, density: float = 1.0, seed: int = 11) -> np.ndarray:
    cfg = SimulationConfig(
        n_frames=n_frames,
        height_px=side,
        width_px=side,
        density_per_um2=density,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        seed=seed,
    )
    return simulate_stack(cfg, quantize=True).adu


def timed(stack, **kw):
    settings = ReconstructionSettings(offset_adu=100.0, **{k: v for k, v in kw.items() if k != "sampler"})
    for key, value in kw.get("sampler", {}).items():
        setattr(settings.sampler, key, value)
    reconstruct(stack[:1], settings)  # warm-up (model load, allocator)
    start = time.perf_counter()
    result = reconstruct(stack, settings)
    return time.perf_counter() - start, result


#: Picasso's minimum net gradient for these frames (1000 photons on background 10: well above noise)
PICASSO_MIN_NG = 500
DEFAULT_PICASSO_PYTHON = Path.home() / ".cache" / "picasso-venv" / "bin" / "python"


def picasso_time(python: str, adu: np.ndarray, method: str) -> float:
    """Picasso's identify + fit seconds on the same frames (uint16, as a camera writes them),
    through benchmarks/_picasso_localize.py in its own environment."""
    from picasso_compare import picasso

    frames = np.clip(np.round(adu), 0, 65535).astype(np.uint16)
    return picasso(python, frames, method, [PICASSO_MIN_NG])[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--phi-frames", type=int, default=200)
    parser.add_argument(
        "--frames-256",
        type=int,
        default=None,
        help="frames of the 256x256 phi-path stack (default: a tenth of --phi-frames, at least 5)",
    )
    parser.add_argument("--posterior-frames", type=int, default=3)
    parser.add_argument("--full-frames", type=int, default=1)
    parser.add_argument("--posterior-256", type=int, default=0, help="also time this many 256x256 posterior frames")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--phi-only", action="store_true", help="only the phi-path rows")
    parser.add_argument("--phi", default="phi")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="the networks' arithmetic (default auto: bfloat16 where the CPU has it natively)",
    )
    parser.add_argument("--psi", default="auto", help="psi model: auto (as reconstruct), a bundled name or a file")
    parser.add_argument(
        "--picasso-python",
        default=str(DEFAULT_PICASSO_PYTHON) if DEFAULT_PICASSO_PYTHON.exists() else None,
        help="python of an environment with picassosr, for the side-by-side rows "
        "(default ~/.cache/picasso-venv/bin/python when it exists)",
    )
    args = parser.parse_args()
    models = {"phi_model": args.phi, "psi_model": args.psi, "precision": args.precision}
    import torch

    from smlm_diffusion.inference.devices import resolve_device

    device = resolve_device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    precision = "bfloat16" if inference_dtype(device, args.precision) is not None else "float32"
    print(
        f"device: {device} ({name}); torch {torch.__version__}; networks in {precision}; "
        "1000 photons, bg 10, 1 emitter/um^2\n"
    )
    print("| path | frame | frames | seconds | frames/s | s/frame | network evals/frame |")
    print("|---|---|---|---|---|---|---|")
    picasso_rows = []
    for side, n in ((64, args.phi_frames), (256, args.frames_256 or max(args.phi_frames // 10, 5))):
        stack = movie(n, side)
        seconds, result = timed(stack, posterior=False, device=args.device, **models)
        print(
            f"| phi | {side}x{side} | {n} | {seconds:.2f} | {n / seconds:.1f} | {seconds / n:.4f} | "
            f"{result.network_evaluations / n:.0f} |",
            flush=True,
        )
        if args.picasso_python:
            for method in ("lq", "mle"):
                picasso_seconds = picasso_time(args.picasso_python, stack, method)
                picasso_rows.append(
                    f"| Picasso {method.upper()} (net gradient {PICASSO_MIN_NG}) | {side}x{side} | "
                    f"{n} | {picasso_seconds:.2f} | {n / picasso_seconds:.1f} | "
                    f"{picasso_seconds / seconds:.3f} |"
                )
    if picasso_rows:
        print("\nPicasso (`identify` + `fit`, its own environment, numba compiled first) on the same frames\n")
        print("| method | frame | frames | seconds | frames/s | ours / Picasso (frames/s) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(picasso_rows))
    else:
        print("\nPicasso: no environment given (--picasso-python; see benchmarks/picasso_compare.py) - no ratio")
    if args.phi_only:
        return
    stack = movie(args.posterior_frames, 64)
    seconds, result = timed(stack, device=args.device, **models)
    n = args.posterior_frames
    accelerated = seconds / n
    sampler = SamplerSettings()
    label = f"posterior accelerated (16 chains, t0={sampler.t0}, stride {sampler.stride})"
    print(
        f"| {label} | 64x64 | {n} | {seconds:.2f} | {n / seconds:.3f} | "
        f"{seconds / n:.2f} | {result.network_evaluations / n:.0f} |"
    )
    if args.posterior_256:
        n256 = args.posterior_256
        seconds256, result256 = timed(movie(n256, 256), device=args.device, **models)
        print(
            f"| {label} | 256x256 | {n256} | {seconds256:.2f} | {n256 / seconds256:.3f} | "
            f"{seconds256 / n256:.2f} | {result256.network_evaluations / n256:.0f} |"
        )
    if not args.skip_full:
        stack = movie(args.full_frames, 64)
        seconds, result = timed(stack, device=args.device, sampler={"mode": "full"}, **models)
        n = args.full_frames
        print(
            f"| posterior full (16 chains, T=100) | 64x64 | {n} | {seconds:.2f} | {n / seconds:.3f} | "
            f"{seconds / n:.2f} | {result.network_evaluations / n:.0f} |"
        )
        print(f"\nfull / accelerated time ratio: {seconds / n / accelerated:.1f}")


if __name__ == "__main__":
    main()
