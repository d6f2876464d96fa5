"""The `calcitrack` command line."""

from __future__ import annotations

import argparse
import sys

import imaging
from imaging import CalcitrackError, read_radiograph

from .discover import iter_input_files

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _spacing_argument(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a spacing in mm: {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(0.01 <= v <= 5.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"spacing must be one or two numbers between 0.01 and 5 mm, got {text!r}")
    return values[0], values[1]


def _inspect(args) -> int:
    failed = 0
    files = iter_input_files(args.paths)
    if not files:
        print("no input files found", file=sys.stderr)
        return EXIT_USAGE
    for path in files:
        try:
            film = read_radiograph(path, user_spacing=args.spacing_mm)
        except CalcitrackError as exc:
            failed += 1
            print(f"error  {path}  {type(exc).__name__}: {exc.problem} — {exc.remedy}")
            continue
        meta = film.metadata
        spacing = ("-" if film.spacing_mm is None
                   else "x".join(f"{s:.4g}" for s in film.spacing_mm) + " mm")
        print(f"ok     {path}  {film.shape[0]}x{film.shape[1]}  spacing {spacing} "
              f"({film.spacing_source})  {film.photometric}  "
              f"body part {meta.body_part or '-'}  laterality {meta.laterality or '-'}")
    print(f"{len(files) - failed} read, {failed} failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `calcitrack` command."""
    parser = argparse.ArgumentParser(
        prog="calcitrack",
        description="Find, measure and track soft-tissue calcification on plain radiographs.")
    parser.add_argument("--version", action="version", version=f"calcitrack {imaging.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="read films and print what was found in them")
    inspect.add_argument("paths", nargs="+", help="files or folders (walked recursively)")
    inspect.add_argument("--spacing-mm", type=_spacing_argument, default=None,
                         help="pixel spacing in mm (one value or ROW,COL); overrides the file")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit code (0 ok, 1 some files failed, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
