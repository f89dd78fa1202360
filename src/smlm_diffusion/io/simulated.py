"""Write a simulated dataset: the raw stack, its ground-truth CSV and optional KDE targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..localizations import Localizations
from ..simulation import UPSAMPLING, SimulationConfig, iter_simulation
from .csv import write_localizations_csv
from .tiff import write_stack


def write_simulation(
    cfg: SimulationConfig, tif_path: Path, csv_path: Path, kde_path: Path | None = None, progress=None, prior=None
) -> Localizations:
    """Simulate chunk by chunk, streaming frames into the TIFF; returns the ground truth.
    ``prior``: a StructurePrior from the user's data (``io.structure.read_structure``)."""
    truths, kdes = [], []

    def frames():
        for chunk in iter_simulation(cfg, with_kde=kde_path is not None, quantize=True, prior=prior):
            truths.append(chunk.truth)
            if kde_path is not None:
                kdes.append(chunk.kde)
            if progress:
                progress(chunk.first_frame - 1 + len(chunk.adu), cfg.n_frames)
            yield chunk.adu

    camera_info = {
        "offset_adu": cfg.offset_adu,
        "gain_adu_per_photon": cfg.gain_adu_per_photon,
        "read_noise_e": cfg.read_noise_e,
        "simulation": cfg.to_dict(),
    }
    write_stack(
        tif_path,
        frames(),
        cfg.pixel_size_nm,
        shape=(cfg.n_frames, cfg.height_px, cfg.width_px),
        dtype=np.uint16,
        extra_info=camera_info,
    )
    truth = Localizations.concatenate(truths)  # the CSV writer numbers ids 1..n
    write_localizations_csv(csv_path, truth)
    if kde_path is not None:
        write_stack(kde_path, np.concatenate(kdes), cfg.pixel_size_nm / UPSAMPLING, dtype=np.float32)
    return truth
