"""Run the reference localization software Picasso on a movie (.npy).

Identifies spots and fits them with Picasso's own library functions, the
route ``picasso localize`` takes, and writes Picasso's localizations as CSV.
It runs only inside the Picasso benchmark environment, as a subprocess:
``python -m venv ~/.cache/picasso-venv &&
~/.cache/picasso-venv/bin/pip install picassosr``
"""

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
import picasso
from picasso import localize

COLUMNS = ["frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy"]
FIT_METHODS = {"lq": "gausslq", "mle": "gaussmle"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("movie", help="(frames, rows, cols) .npy, in ADU")
    parser.add_argument("out", help="output CSV")
    parser.add_argument("--baseline", type=float, default=100.0)
    parser.add_argument("--sensitivity", type=float, default=1.0, help="electrons per A/D count")
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--qe", type=float, default=1.0, help="recorded only; Picasso ignores it")
    parser.add_argument("--box", type=int, default=7)
    parser.add_argument(
        "--min-ng",
        default="500",
        help="minimum net gradient; several, comma-separated, write one CSV each (OUT then holds {ng})",
    )
    parser.add_argument(
        "--warmup", action="store_true", help="compile Picasso's numba code on 2 frames first (untimed)"
    )
    parser.add_argument("--method", choices=sorted(FIT_METHODS), default="lq")
    return parser.parse_args()


def localize_once(movie, camera_info: dict, min_ng: float, box: int, method: str):
    """Picasso's identify + fit: (locs DataFrame, seconds identify, seconds fit)."""
    start = time.perf_counter()
    ids, _ = localize.identify(movie, min_ng, box, threaded=False)
    seconds_identify = time.perf_counter() - start
    start = time.perf_counter()
    if len(ids):
        # eps / max_it None: the method's own schedule, as the CLI's default
        locs, _ = localize.fit(
            movie,
            camera_info=camera_info,
            identifications=ids,
            box=box,
            fitting_method=FIT_METHODS[method],
            eps=None,
            max_it=None,
            multiprocess=False,
        )
    else:
        locs = pd.DataFrame(columns=COLUMNS)
    return locs, seconds_identify, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    # localize.fit accepts a Picasso movie or an np.memmap, which this is
    movie = np.load(args.movie, mmap_mode="r")
    if movie.ndim != 3:
        raise SystemExit(f"expected (frames, rows, cols), got {movie.shape}")
    camera_info = {
        "Baseline": args.baseline,
        "Sensitivity": args.sensitivity,
        "Gain": args.gain,
        "Qe": args.qe,
        "Pixelsize": 130,  # nm; only metadata, set to avoid Picasso's warning
    }
    thresholds = [float(v) for v in str(args.min_ng).split(",")]
    if args.warmup:  # numba compiles on the first call: not timed, not written
        localize_once(movie[:2], camera_info, thresholds[0], args.box, args.method)
    report = []
    for min_ng in thresholds:
        locs, seconds_identify, seconds_fit = localize_once(movie, camera_info, min_ng, args.box, args.method)
        out = args.out.format(ng=f"{min_ng:g}")
        tmp = f"{out}.tmp{os.getpid()}"
        locs[COLUMNS].to_csv(tmp, index=False)
        os.replace(tmp, out)
        report.append(
            {
                "min_ng": min_ng,
                "out": out,
                "n_locs": len(locs),
                "seconds_identify": round(seconds_identify, 4),
                "seconds_fit": round(seconds_fit, 4),
                "picasso_version": picasso.__version__,
            }
        )
    print(json.dumps(report if len(report) > 1 else report[0]))


if __name__ == "__main__":
    main()
