"""The ``smlm-diffusion`` command line: a thin face over the library."""

from __future__ import annotations

import argparse
import sys

from ..errors import SmlmInputError
from . import calibrate_camera, demo, evaluate, frc, reconstruct, simulate, train

COMMANDS = {
    "simulate": simulate,
    "reconstruct": reconstruct,
    "evaluate": evaluate,
    "frc": frc,
    "train": train,
    "demo": demo,
    "calibrate-camera": calibrate_camera,
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="smlm-diffusion",
        description="Uncertainty-aware SMLM: simulate, reconstruct and evaluate localization data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except (SmlmInputError, ValueError) as exc:
        print(f"smlm-diffusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"smlm-diffusion {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"smlm-diffusion {args.command}: interrupted; finished outputs were kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
