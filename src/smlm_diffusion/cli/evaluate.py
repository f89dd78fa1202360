"""``smlm-diffusion evaluate LOCS.csv TRUTH.csv``: SMLM Challenge 2016 metrics as JSON."""

from __future__ import annotations

import json

from ..analysis import DEFAULT_TOLERANCE_NM, evaluate
from ..errors import SmlmInputError
from ..io import read_localizations_csv


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare localizations with a ground truth",
        description="Per-frame one-to-one matching within a tolerance; prints recall, "
        "precision, Jaccard, RMSE and efficiency as JSON.",
    )
    p.add_argument("locs", metavar="LOCS.csv", help="localizations (ThunderSTORM CSV)")
    p.add_argument("truth", metavar="TRUTH.csv", help="ground truth (same format)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE_NM,
        help=f"matching tolerance in nm (default {DEFAULT_TOLERANCE_NM:g})",
    )


def run(args) -> int:
    if not args.tolerance > 0:
        raise SmlmInputError(f"The tolerance must be a positive distance in nm, not {args.tolerance:g}.")
    result = evaluate(read_localizations_csv(args.locs), read_localizations_csv(args.truth), args.tolerance)
    print(json.dumps(result.to_dict(), indent=2))
    return 0
