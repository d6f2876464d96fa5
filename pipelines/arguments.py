"""What the `calcitrack` subcommands share: argument types and exit codes."""

from __future__ import annotations

import argparse

#: Exit codes: all files fine, some files failed, usage or configuration error.
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
#: Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def spacing_argument(text: str) -> tuple[float, float]:
    """Parse ``--spacing-mm``: one value or ``ROW,COL`` (or ``ROWxCOL``), in mm.

    Examples
    --------
    >>> spacing_argument("0.1")
    (0.1, 0.1)
    >>> spacing_argument("0.1x0.2")
    (0.1, 0.2)
    """
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
