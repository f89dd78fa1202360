"""``smlm-diffusion frc LOCS.csv``: Fourier ring correlation resolution (1/7 threshold)
of a localization table and its NeNA precision (with the consecutive-frame check of the
uncertainties), as JSON; with ``--out`` also the curve (frc.csv, frc.png)."""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.frc import frc_resolution, measured_frc
from ..analysis.linking import link_groups
from ..analysis.nena import nena
from ..errors import SmlmInputError
from ..io import read_localizations_csv
from ..io.curves import write_frc


def add_parser(sub) -> None:
    p = sub.add_parser(
        "frc",
        help="FRC resolution of a localization table",
        description="Fourier ring correlation of two halves of the localizations (1/7 threshold; "
        "Nieuwenhuizen et al. 2013). Linked blinks stay in one half.",
    )
    p.add_argument("locs", metavar="LOCS.csv", help="localizations (ThunderSTORM CSV, e.g. reconstruct's output)")
    p.add_argument(
        "--pixel-size-nm",
        type=float,
        default=0.0,
        help="pixel of the two FRC images in nm (default: chosen for the data, finer on the densest "
        "part of the field where the curve has not fallen below 1/7; else about a quarter of the "
        "resolution)",
    )
    p.add_argument(
        "--split",
        choices=("random", "frames"),
        default="random",
        help="halves: random linked groups (default) or alternating blocks of frames",
    )
    p.add_argument("--block-frames", type=int, default=500, help="--split frames: frames per block (default 500)")
    p.add_argument("--repeats", type=int, default=5, help="random splits averaged (default 5)")
    p.add_argument(
        "--no-link",
        action="store_true",
        help="split single localizations, not linked blinks (repeats then correlate: finer, optimistic)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the splits (default 0)")
    p.add_argument("--out", metavar="DIR", help="also write frc.csv and frc.png here")


def run(args) -> int:
    if not args.pixel_size_nm >= 0 or args.repeats < 1 or args.block_frames < 1:
        raise SmlmInputError("the FRC pixel size (0: chosen), the repeats and the block length must be positive")
    locs = read_localizations_csv(args.locs)
    groups = None if args.no_link or args.split == "frames" else link_groups(locs)
    if args.pixel_size_nm:
        frc = frc_resolution(
            locs,
            render_nm=args.pixel_size_nm,
            split=args.split,
            repeats=args.repeats,
            groups=groups,
            block_frames=args.block_frames,
            seed=args.seed,
        )
    else:
        frc = measured_frc(locs, groups=groups, split=args.split, repeats=args.repeats, seed=args.seed)
    try:
        precision = nena(locs).record()
    except SmlmInputError as exc:
        precision = {"skipped": str(exc)}
    record = {
        **frc.record(),
        "localizations": len(locs),
        "groups": int(groups.max()) + 1 if groups is not None and len(groups) else None,
        "nena": precision,
    }
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_frc(Path(args.out), frc)
    print(json.dumps(record, indent=2))
    return 0
