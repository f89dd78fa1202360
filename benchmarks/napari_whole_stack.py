"""napari whole-stack run against the command line (the whole-movies issue): the
Reconstruct widget, phi only, on a simulated stack in a real viewer, timed beside the
engine on the same stack in the same process; a 20 ms QTimer records the longest gap
of the event loop.

    OMP_NUM_THREADS=2 xvfb-run -a python benchmarks/napari_whole_stack.py [--frames 300] [--side 64] [--repeats 3]
    OMP_NUM_THREADS=2 xvfb-run -a python benchmarks/napari_whole_stack.py --frames 1 --side 256 --posterior --repeats 1

Engine and widget runs alternate (``--repeats`` of each; each widget run creates its layers
afresh), one table row per pair, because this machine's speed drifts within minutes.
``--posterior`` samples the posterior too. Each row says when the widget showed its first
result (its first layer refresh; the posterior issue's target: within a minute for a
256x256 frame).

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
    parser.add_argument(
        "--hidden",
        action="store_true",
        help="viewer window not shown (no canvas drawing: under Xvfb the drawing is Mesa's "
        "software renderer on the same CPU cores)",
    )
    parser.add_argument("--posterior", action="store_true", help="with posterior sampling (16 chains)")
    parser.add_argument("--repeats", type=int, default=3, help="engine and widget runs, alternated")
    args = parser.parse_args()
    import napari
    import torch
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    cfg = SimulationConfig(
        n_frames=args.frames,
        height_px=args.side,
        width_px=args.side,
        density_per_um2=1.0,
        photons=1000.0,
        background_photons=10.0,
        offset_adu=100.0,
        gain_adu_per_photon=1.0,
        seed=11,
    )
    adu = simulate_stack(cfg, quantize=True).adu
    folder = Path(tempfile.mkdtemp())
    path = write_stack(
        folder / "movie.tif", adu, cfg.pixel_size_nm, extra_info={"offset_adu": 100.0, "gain_adu_per_photon": 1.0}
    )
    settings = ReconstructionSettings(offset_adu=100.0, gain_adu_per_photon=1.0, posterior=args.posterior)
    reconstruct(adu[:1], ReconstructionSettings(offset_adu=100.0, gain_adu_per_photon=1.0, posterior=False))
    # (models loaded once, as in the widget's process)
    viewer = napari.Viewer(show=not args.hidden)
    raw = viewer.open(str(path), plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    widget.values["scope"].value = "whole stack"
    widget.values["posterior"].value = args.posterior
    app = QApplication.instance()
    refreshes: list[float] = []
    apply = widget._apply
    widget._apply = lambda refresh, **kw: (
        refreshes.append(time.perf_counter()) if refresh is not None else None,
        apply(refresh, **kw),
    )

    def engine_run() -> tuple[float, int]:
        started = time.perf_counter()
        engine = reconstruct(adu, settings)
        return time.perf_counter() - started, len(engine.localizations)

    repeats_done = [0]

    def widget_run() -> tuple[float, np.ndarray, float, int]:
        for layer in viewer.layers:  # each run creates its layers: the last run's are renamed and hidden
            if layer is not raw and not layer.name.startswith("earlier "):  # (removing image layers and adding
                layer.name, layer.visible = f"earlier {repeats_done[0]} {layer.name}", False  # new ones crashes
        app.processEvents()  # napari 0.9.2 under Mesa's software OpenGL: a segfault in glDrawArrays)
        repeats_done[0] += 1
        refreshes.clear()
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(20)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        # a real event loop, as in a napari session (processEvents alone never runs deferred
        # deletes, so napari's "Opening Files" activity spinner would animate through the run)
        loop = QEventLoop()
        started = time.perf_counter()
        widget.start()
        widget._worker.finished.connect(lambda: QTimer.singleShot(0, loop.quit))
        loop.exec()
        while widget._worker is not None:  # the widget's own finished handler has run
            app.processEvents()
        gui_s = time.perf_counter() - started
        timer.stop()
        ticks.append(time.perf_counter())
        first = refreshes[0] - started if refreshes else float("nan")
        return gui_s, np.diff(ticks), first, len(widget._run_handle.result.localizations)

    n = args.frames
    path_name = "phi and posterior (16 chains)" if args.posterior else "phi only"
    shown = "window hidden" if args.hidden else "window shown"
    print(
        f"{n} frames of {args.side}x{args.side}, {path_name}, {torch.get_num_threads()} threads, {shown}; "
        f"engine and widget runs alternate ({args.repeats} each; this machine's speed drifts within minutes)\n"
    )
    print(
        "| repeat | engine (the CLI's `reconstruct`) s | napari widget s | widget frames/s | ratio to the engine "
        "| longest event-loop gap | p99 gap | first result shown | localizations engine / widget |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ratios, longest = [], []
    for repeat in range(1, args.repeats + 1):
        engine_s, engine_locs = engine_run()
        gui_s, gaps, first, gui_locs = widget_run()
        ratios.append(engine_s / gui_s)
        longest.append(gaps.max())
        print(
            f"| {repeat} | {engine_s:.1f} | {gui_s:.1f} | {n / gui_s:.3g} | {engine_s / gui_s:.2f} | "
            f"{gaps.max():.3f} s | {np.percentile(gaps, 99):.3f} s | {first:.1f} s | {engine_locs} / {gui_locs} |",
            flush=True,
        )
    print(
        f"\nratio to the engine: median {np.median(ratios):.2f}, lowest {min(ratios):.2f}; "
        f"longest event-loop gap {max(longest):.3f} s"
    )
    viewer.close()


if __name__ == "__main__":
    main()
