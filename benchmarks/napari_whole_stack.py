"""napari whole-stack run against the command line (the whole-movies issue): the
Reconstruct widget, phi only, on a simulated stack in a real viewer, timed beside the
engine on the same stack in the same process; a 20 ms QTimer records the longest gap
of the event loop.

    OMP_NUM_THREADS=2 xvfb-run -a python benchmarks/napari_whole_stack.py [--frames 300] [--side 64]
    OMP_NUM_THREADS=2 xvfb-run -a python benchmarks/napari_whole_stack.py --frames 1 --side 256 --posterior

``--posterior`` samples the posterior too, and the table adds when the widget's first
result layer appeared (the posterior issue's target: within a minute for a 256x256 frame).

Not a test: it prints a table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from smlm_diffusion.io import write_stack
from smlm_diffusion.reconstruction import ReconstructionSettings, reconstruct
from smlm_diffusion.simulation import SimulationConfig, simulate_stack

PLUGIN = "napari-smlm-diffusion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--hidden", action="store_true",
                        help="viewer window not shown (no canvas drawing: under Xvfb the drawing is Mesa's "
                             "software renderer on the same CPU cores)")
    parser.add_argument("--posterior", action="store_true", help="with posterior sampling (16 chains)")
    args = parser.parse_args()
    import napari
    import torch
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    cfg = SimulationConfig(n_frames=args.frames, height_px=args.side, width_px=args.side, density_per_um2=1.0,
                           photons=1000.0, background_photons=10.0, offset_adu=100.0, gain_adu_per_photon=1.0,
                           seed=11)
    adu = simulate_stack(cfg, quantize=True).adu
    folder = Path(tempfile.mkdtemp())
    path = write_stack(folder / "movie.tif", adu, cfg.pixel_size_nm,
                       extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.0})
    settings = ReconstructionSettings(offset_adu=100.0, gain_adu_per_photon=1.0, posterior=args.posterior)
    reconstruct(adu[:1], ReconstructionSettings(offset_adu=100.0, gain_adu_per_photon=1.0, posterior=False))
    # (models loaded once, as in the widget's process)
    started = time.perf_counter()
    engine = reconstruct(adu, settings)
    engine_s = time.perf_counter() - started

    viewer = napari.Viewer(show=not args.hidden)
    viewer.open(str(path), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    widget.values["scope"].value = "whole stack"
    widget.values["posterior"].value = args.posterior
    first_layer: list[float] = []
    existing = len(viewer.layers)
    viewer.layers.events.inserted.connect(
        lambda _: first_layer.append(time.perf_counter()) if len(viewer.layers) > existing else None)
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    # a real event loop, as in a napari session (processEvents alone never runs deferred
    # deletes, so napari's "Opening Files" activity spinner would animate through the run)
    loop = QEventLoop()
    refreshes: list[float] = []
    apply = widget._apply
    widget._apply = lambda refresh, **kw: (refreshes.append(time.perf_counter()) if refresh is not None else None,
                                           apply(refresh, **kw))
    started = time.perf_counter()
    widget.start()
    widget._worker.finished.connect(lambda: QTimer.singleShot(0, loop.quit))
    loop.exec()
    while widget._worker is not None:  # the widget's own finished handler has run
        app.processEvents()
    gui_s = time.perf_counter() - started
    timer.stop()
    ticks.append(time.perf_counter())
    result = widget._run_handle.result
    gaps = np.diff(ticks)
    n = args.frames
    path_name = "phi and posterior (16 chains)" if args.posterior else "phi only"
    print(f"{n} frames of {args.side}x{args.side}, {path_name}, {torch.get_num_threads()} threads; "
          f"{len(engine.localizations)} / {len(result.localizations)} localizations (engine / widget)\n")
    print("| run | seconds | frames/s | ratio to the engine | longest event-loop gap | p99 gap |")
    print("|---|--:|--:|--:|--:|--:|")
    print(f"| engine (the CLI's `reconstruct`) | {engine_s:.1f} | {n / engine_s:.1f} | 1.00 | | |")
    shown = "window hidden" if args.hidden else "window shown"
    print(f"| napari Reconstruct widget, whole stack, {shown} | {gui_s:.1f} | {n / gui_s:.1f} | "
          f"{engine_s / gui_s:.2f} | {gaps.max():.3f} s | {np.percentile(gaps, 99):.3f} s |")
    print(f"\n{len(refreshes)} layer refreshes shown (at {', '.join(f'{t - started:.1f}' for t in refreshes)} s)")
    if first_layer:
        print(f"first result layer shown {first_layer[0] - started:.1f} s after Run")
    viewer.close()


if __name__ == "__main__":
    main()
