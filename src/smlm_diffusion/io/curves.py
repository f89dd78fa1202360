"""Files of the post-processing curves: the drift trace and the FRC curve, as CSV and as
PNG plots (matplotlib, Agg backend), each written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_drift(path: Path, drift) -> Path:
    """Drift x and y (nm) against frame, with the segment estimates and their errors."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    ax.plot(drift.frames, drift.x_nm, label="drift x", color="tab:blue")
    ax.plot(drift.frames, drift.y_nm, label="drift y", color="tab:orange")
    for values, colour in ((drift.segment_x_nm, "tab:blue"), (drift.segment_y_nm, "tab:orange")):
        ax.errorbar(drift.segment_frames, values, yerr=drift.segment_std_nm, fmt="o", ms=3, color=colour)
    ax.set_xlabel("frame")
    ax.set_ylabel("drift [nm]")
    ax.set_title(f"{drift.method}: {len(drift.segment_frames)} segments, residual {drift.residual_nm:.1f} nm")
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def write_frc(folder: Path, frc) -> None:
    """``frc.csv`` (q [1/nm], FRC) and ``frc.png`` with the 1/7 threshold."""
    with atomic_path(folder / "frc.csv") as tmp:
        np.savetxt(tmp, np.c_[frc.q_per_nm, frc.frc], delimiter=",", fmt="%.6g", header="q [1/nm],frc", comments="")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    ax.plot(frc.q_per_nm, frc.frc, color="tab:blue")
    ax.axhline(1 / 7, color="grey", linestyle="--", label="1/7")
    if np.isfinite(frc.resolution_nm):
        ax.axvline(1 / frc.resolution_nm, color="tab:red", label=f"{frc.resolution_nm:.1f} nm")
    ax.set_xlabel("spatial frequency [1/nm]")
    ax.set_ylabel("FRC")
    ax.set_ylim(-0.1, 1.05)
    ax.legend()
    with atomic_path(folder / "frc.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
