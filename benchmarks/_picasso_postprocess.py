"""Run Picasso's post-processing (RCC undrift, FRC, linking) on a localization table.

Reference for benchmarks/postprocess.py; runs only inside the Picasso benchmark
environment (``python -m venv ~/.cache/picasso-venv &&
~/.cache/picasso-venv/bin/pip install picassosr``), as a subprocess. Input: an .npz with
frame (0-based), x, y (camera px, Picasso's convention), photons, lpx, lpy and the
movie's frames, width, height, pixel size. Prints one JSON line.
"""

import argparse
import json
import time

import numpy as np
import pandas as pd
from picasso import postprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help=".npz with the localizations and the movie's shape")
    parser.add_argument("--undrift-frames", type=int, default=0, help="frames per RCC segment (0: no undrift)")
    parser.add_argument("--drift-out", help="write Picasso's drift per frame (px) here (.npy, frames x 2)")
    parser.add_argument("--frc", action="store_true")
    parser.add_argument("--link-r-max", type=float, default=0.0, help="linking radius in px (0: no linking)")
    parser.add_argument("--link-dark", type=int, default=1)
    args = parser.parse_args()
    data = np.load(args.table)
    n = len(data["frame"])
    locs = pd.DataFrame(
        {
            "frame": data["frame"].astype(np.uint32),
            "x": data["x"].astype(np.float32),
            "y": data["y"].astype(np.float32),
            "photons": data["photons"].astype(np.float32),
            "sx": np.ones(n, np.float32),
            "sy": np.ones(n, np.float32),
            "bg": np.zeros(n, np.float32),
            "lpx": data["lpx"].astype(np.float32),
            "lpy": data["lpy"].astype(np.float32),
        }
    )
    info = [
        {
            "Frames": int(data["frames"]),
            "Width": int(data["width"]),
            "Height": int(data["height"]),
            "Pixelsize": float(data["pixel_size_nm"]),
        }
    ]
    report = {}
    if args.undrift_frames:
        started = time.perf_counter()
        drift, _ = postprocess.undrift(locs, info, args.undrift_frames, display=False)
        report["undrift_seconds"] = round(time.perf_counter() - started, 2)
        np.save(args.drift_out, np.c_[drift["x"].to_numpy(), drift["y"].to_numpy()])
    if args.frc:
        viewport = ((float(locs["y"].min()), float(locs["x"].min())), (float(locs["y"].max()), float(locs["x"].max())))
        result = postprocess.frc(locs, info, viewport)
        report["frc_resolution_nm"] = float(result["resolution"])
    if args.link_r_max:
        linked = postprocess.link(
            locs, info, r_max=args.link_r_max, max_dark_time=args.link_dark, remove_ambiguous_lengths=False
        )
        report["linked_groups"] = int(len(linked))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
