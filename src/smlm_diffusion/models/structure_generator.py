"""An unconditional DDPM of super-resolution structure images (the microtubule-DDPM
paper's idea, ``../shared/papers/microtubule-ddpm.txt``): trained on patches rendered from
the user's localization tables, it samples new structure images, used as emitter
densities (``simulation.StructurePrior``) when training phi.

Patches are 128 x 128 renders at 27 nm/px (3.46 um, one 32-px training frame of 108 nm),
Gaussian-blurred by one render pixel, scaled by the 99.9th percentile of the whole render,
clipped to [0, 1] and mapped to [-1, 1]. The network is our SR3-style U-Net
(``psi.ConditionalUNet`` with one input channel), the schedule our cosine one, and the
network predicts v (``schedule.predict_y0``). A batch is a pure function of (seed, step),
so training resumes exactly from its checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .psi import ConditionalUNet
from .schedule import NoiseSchedule
from .store import model_payload, save_file
from .training import hardware_description

PATCH_PX = 128
RENDER_PIXEL_NM = 27.0


class StructurePatches:
    """Random 128 x 128 patches (flipped, rotated) of the renders of some point sets."""

    def __init__(
        self, point_sets: list[np.ndarray], render_pixel_nm: float = RENDER_PIXEL_NM, patch_px: int = PATCH_PX
    ) -> None:
        self.patch_px, self.render_pixel_nm = patch_px, render_pixel_nm
        if not point_sets or any(len(points) == 0 for points in point_sets):
            raise ValueError("the structures hold no points to learn from")
        self.renders = []
        for points in point_sets:
            p = np.asarray(points, np.float64)
            p = p - p.min(axis=0)
            size = np.maximum(np.ceil(p.max(axis=0) / render_pixel_nm).astype(int) + 1, patch_px)
            image, _, _ = np.histogram2d(
                p[:, 1] / render_pixel_nm,
                p[:, 0] / render_pixel_nm,
                bins=(size[1], size[0]),
                range=((0, size[1]), (0, size[0])),
            )
            self.renders.append(ndimage.gaussian_filter(image, 1.0))
        self.scale = float(np.percentile(np.concatenate([r[r > 0] for r in self.renders]), 99.9))

    def batch(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 1, P, P) in [-1, 1]; nearly empty crops are redrawn (a few times)."""
        out = np.empty((n, 1, self.patch_px, self.patch_px), np.float32)
        for i in range(n):
            for _ in range(10):
                render = self.renders[int(rng.integers(len(self.renders)))]
                r = int(rng.integers(render.shape[0] - self.patch_px + 1))
                c = int(rng.integers(render.shape[1] - self.patch_px + 1))
                patch = render[r : r + self.patch_px, c : c + self.patch_px]
                if patch.sum() > 0.02 * self.scale * self.patch_px:
                    break
            patch = np.rot90(patch, int(rng.integers(4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i, 0] = 2.0 * np.clip(patch / self.scale, 0.0, 1.0) - 1.0
        return out


def new_generator(channels: int = 32) -> ConditionalUNet:
    return ConditionalUNet(channels=channels, multipliers=(1, 2, 2, 4), in_channels=1)


def train_structure_generator(
    point_sets: list[np.ndarray],
    out_path: str | Path,
    steps: int = 4000,
    batch_size: int = 32,
    learning_rate: float = 2e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    checkpoint_minutes: float = 2.0,
    sources: list[str] | None = None,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
    channels: int = 32,
    patch_px: int = PATCH_PX,
) -> dict:
    """Train (resuming from ``checkpoint_path``) and write the model file; returns its training record."""
    device = torch.device(device)
    torch.manual_seed(seed)
    data = StructurePatches(point_sets, patch_px=patch_px)
    model = new_generator(channels).to(device)
    schedule = NoiseSchedule(kind="cosine")
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    step, losses, elapsed = 0, [], 0.0
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, losses, elapsed = int(state["step"]), list(state["losses"]), float(state["elapsed_s"])
    last_save = time.monotonic()
    while step < steps:
        started = time.perf_counter()
        rng = np.random.default_rng([seed, step])
        y0 = torch.from_numpy(data.batch(rng, batch_size)).to(device)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        t = torch.randint(1, schedule.n_steps + 1, (batch_size,), generator=generator).to(device)
        noise = torch.randn(y0.shape, generator=generator).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * min(1.0, (step + 1) / 200)
        predicted = model(schedule.q_sample(y0, t, noise), None, t)
        loss = torch.mean((predicted - schedule.training_target(y0, noise, t, "v")) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        elapsed += time.perf_counter() - started
        if progress is not None:
            progress(step, steps, losses[-1])
        if checkpoint_path is not None and (time.monotonic() - last_save > 60 * checkpoint_minutes or step == steps):
            save_file(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "losses": losses,
                    "elapsed_s": elapsed,
                },
                checkpoint_path,
            )
            last_save = time.monotonic()
    training = {
        "command": command,
        "steps": step,
        "batch_size": batch_size,
        "seed": seed,
        "learning_rate": learning_rate,
        "wall_time_s": round(elapsed, 1),
        "final_loss_mean_last_100": float(np.mean(losses[-100:])),
        "structure_files": list(sources or []),
        "hardware": hardware_description(device),
        "torch": str(torch.__version__),
    }
    normalisation = {"render_pixel_nm": data.render_pixel_nm, "patch_px": data.patch_px, "scale": data.scale}
    save_file(model_payload("structures", model, normalisation, training, schedule), out_path)
    return training


@torch.no_grad()
def generate_structures(
    model: ConditionalUNet,
    schedule: NoiseSchedule,
    n: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    patch_px: int = PATCH_PX,
    batch_size: int = 64,
) -> np.ndarray:
    """(n, P, P) new structure densities in [0, 1] by full ancestral sampling from N(0, I)."""
    device = torch.device(device)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        generator = torch.Generator().manual_seed(seed * 7919 + start)
        y = torch.randn((m, 1, patch_px, patch_px), generator=generator).to(device)
        for t in range(schedule.n_steps, 0, -1):
            tt = torch.full((m,), t, device=device, dtype=torch.long)
            z = torch.randn(y.shape, generator=generator).to(device)
            y = schedule.reverse_step(y, model(y, None, tt), tt, noise=z, clip_y0=(-1.0, 1.0), prediction="v")
        out.append(((y.clamp(-1, 1) + 1) / 2).cpu().numpy()[:, 0])
    return np.concatenate(out)


def max_normalised_cross_correlation(generated: np.ndarray, references: np.ndarray) -> np.ndarray:
    """For each generated image, the largest normalised cross-correlation with any
    reference image over all (circular) shifts: 1 means a shifted copy (memorised)."""

    def unit(images):
        z = images - images.mean(axis=(1, 2), keepdims=True)
        return z / np.maximum(np.sqrt((z**2).sum(axis=(1, 2), keepdims=True)), 1e-12)

    g, r = np.fft.rfft2(unit(generated)), np.conj(np.fft.rfft2(unit(references)))
    best = np.zeros(len(generated))
    for i in range(len(generated)):
        correlation = np.fft.irfft2(g[i][None] * r, s=generated.shape[1:])
        best[i] = correlation.max()
    return best
