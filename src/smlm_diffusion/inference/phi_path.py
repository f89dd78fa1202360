"""The phi path: normalised frames -> KDE estimates (model units), tile by tile."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..models.phi import inference_copy
from .fast_modules import autocast, channels_last, inference_module
from .tiling import Tile, plan_tiles

#: phi's receptive-field radius is at most 26 camera px (dilations 1..8 plus the head's
#: convolutions); a 26-px halo makes the stitched output independent of the tile size to
#: float precision.
PHI_HALO_PX = 26
UPSAMPLING = 4
#: camera pixels per phi batch on a CPU: one 256x256 tile, or 16 frames of 64x64. Larger
#: batches run slower per frame on the CPU (the activations leave the cache: 0.18 s per 256x256
#: frame at batch 1 against 0.49 s at batch 10 on 2 cores, docs/performance.md)
MAX_BATCH_PIXELS = 1 << 16


@torch.no_grad()
def phi_kde(
    model: torch.nn.Module,
    frames: np.ndarray,
    device: torch.device,
    core_px: int = 256,
    halo_px: int = PHI_HALO_PX,
    max_batch_pixels: int | None = None,
    dtype=None,
) -> np.ndarray:
    """Run phi on normalised frames (f, C, H, W) (or (f, H, W) for one channel) ->
    (f, 4H, 4W) float32, batching tiles of equal shape across frames (so many small frames
    go through in one batch), through the inference copy of ``model`` (``inference_copy``).
    ``max_batch_pixels``: default MAX_BATCH_PIXELS on a CPU, 16 times that on a GPU.
    ``dtype``: torch.bfloat16 runs the convolutions in bfloat16 (``devices.inference_dtype``;
    2.4x faster on a CPU with native bfloat16, KDE within about 1 % of its peak)."""
    if max_batch_pixels is None:
        max_batch_pixels = MAX_BATCH_PIXELS * (1 if torch.device(device).type == "cpu" else 16)
    model = inference_module(model, inference_copy, dtype)
    input_dtype = next(model.parameters()).dtype
    frames = np.asarray(frames, np.float32)
    if frames.ndim == 3:
        frames = frames[:, None]
    f, _, h, w = frames.shape
    out = np.zeros((f, h * UPSAMPLING, w * UPSAMPLING), np.float32)
    groups: dict[tuple[int, int], list[tuple[int, Tile]]] = defaultdict(list)
    for tile in plan_tiles(h, w, core_px, halo_px):
        for i in range(f):
            groups[tile.input_shape].append((i, tile))
    for shape, items in groups.items():
        per_batch = max(1, max_batch_pixels // (shape[0] * shape[1]))
        for start in range(0, len(items), per_batch):
            chunk = items[start : start + per_batch]
            batch = np.stack([frames[i, :, t.in_r0 : t.in_r1, t.in_c0 : t.in_c1] for i, t in chunk])
            inputs = channels_last(torch.from_numpy(batch).to(device, input_dtype))
            with autocast(device, dtype):
                result = model(inputs).float().cpu().numpy()[:, 0]
            for (i, tile), kde in zip(chunk, result):
                out[(i, *tile.core_in_frame(UPSAMPLING))] = kde[tile.core_in_input(UPSAMPLING)]
    return out
