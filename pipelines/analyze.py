"""``calcitrack analyze INPUT... --out DIR``: find and measure deposits, write the contract.

Outputs in DIR (the contract in ``DESIGN.md``; columns in `imaging.export`):

- ``images.csv`` — one row per input file, ``status`` ok / error / skipped;
- ``deposits.csv`` — one row per deposit, ``deposit_id`` = its label in the mask;
- ``masks/<image_id>.png`` — 16-bit deposit labels, same rows × columns as the source film;
- ``qc/<image_id>.png`` — the QC overlay a reader checks at a glance (unless ``--no-qc``);
- ``report.html`` — the run on one page: films, errors, overlays, burden (`pipelines.report`);
- ``calcitrack.sqlite`` (or ``--db``) — the results store (`pipelines.store`), which keeps the
  same rows across runs and lets a rerun skip films already analysed.

The work is done by `pipelines.batch.analyze_files`: parallel over ``--jobs`` local worker
processes (default: every core) or a Dask cluster, resumable, with a per-file time limit and
memory guard.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
from pathlib import Path

from imaging.config import load_config
from imaging.regions import read_user_regions

from .arguments import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, spacing_argument
from .batch import DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIMEOUT_S, Workers, analyze_files
from .store import DATABASE_NAME, StoreError


def register(subparsers) -> None:
    """Add the ``analyze`` subcommand to the `calcitrack` parser."""
    parser = subparsers.add_parser(
        "analyze",
        help="find and measure calcified deposits; write CSVs, masks, QC images and a report",
        description="Find calcified deposits outside bone on each film and write images.csv, "
                    "deposits.csv, masks/<image_id>.png (16-bit labels), qc/<image_id>.png and "
                    "report.html into DIR. Folders are walked recursively; films are recognised "
                    "by content. A rerun skips films already analysed with the same "
                    "configuration. Exit code 0 when every film was analysed, 1 when some "
                    "failed, 2 for usage or configuration errors, 130 when interrupted.")
    parser.add_argument("paths", nargs="+", metavar="INPUT",
                        help="films or folders (walked recursively; non-film files are skipped)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if missing)")
    add_batch_arguments(parser)
    parser.set_defaults(handler=run)


def add_batch_arguments(parser) -> None:
    """Options shared by the commands that analyse films in a batch."""
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file of parameter overrides (see `calcitrack config --show`)")
    parser.add_argument("--spacing-mm", type=spacing_argument, default=None,
                        help="pixel spacing in mm (one value or ROW,COL); overrides the files")
    parser.add_argument("--no-qc", dest="qc", action="store_false",
                        help="do not draw the QC overlay images")
    parser.add_argument("--regions", metavar="GEOJSON", default=None,
                        help="the study's own scoring zones (GeoJSON polygons, pixel or mm "
                             "coordinates) instead of the automatic anatomical regions")
    parser.add_argument("--dicom-results", action="store_true",
                        help="also write a DICOM SEG of the deposits and a DICOM SR (TID 1500) "
                             "of the burden per region, dicom/<image_id>.seg.dcm / .sr.dcm, "
                             "for DICOM films; they carry the source film's patient module")
    parser.add_argument("--db", type=Path, default=None, metavar="PATH",
                        help=f"results database (SQLite; default: DIR/{DATABASE_NAME}); "
                             "films recorded before are reused or replaced, not duplicated")
    parser.add_argument("--pseudonym-key", default=None, metavar="SECRET",
                        help="secret for pseudonymous patient keys (default: the "
                             "CALCITRACK_PSEUDONYM_KEY variable, which is safer: command lines "
                             "are visible to other users)")
    workers = parser.add_argument_group("workers")
    workers.add_argument("--jobs", "-j", type=_positive_int, default=os.cpu_count() or 1,
                         metavar="N", help="local worker processes (default: every core, "
                                           "%(default)s here)")
    workers.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S,
                         metavar="SECONDS", dest="timeout_s",
                         help="stop a film that runs longer and record it as failed "
                              "(default: %(default)g; local workers only)")
    workers.add_argument("--memory-limit-mb", type=_positive_float,
                         default=DEFAULT_MEMORY_LIMIT_MB, metavar="MB",
                         help="memory a worker may use for one film before that film fails "
                              "(default: %(default)g)")
    cluster = workers.add_mutually_exclusive_group()
    cluster.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                         help="run the films on this Dask distributed scheduler "
                              "(e.g. tcp://10.0.0.5:8786); inputs and DIR must be reachable "
                              "at the same paths from every worker")
    cluster.add_argument("--dask-local", type=_positive_int, metavar="N", default=None,
                         help="start a local Dask cluster of N worker processes")


def batch_options(args) -> dict:
    """The keyword arguments of `analyze_files` that the batch options give (and the config)."""
    return dict(user_spacing=args.spacing_mm, pseudonym_key=args.pseudonym_key, qc=args.qc,
                user_regions=None if args.regions is None else read_user_regions(args.regions),
                dicom_results=args.dicom_results, db_path=args.db, workers=workers_from(args))


def workers_from(args) -> Workers:
    """The `Workers` that the batch options ask for."""
    return Workers(jobs=args.jobs, timeout_s=args.timeout_s,
                   memory_limit_mb=args.memory_limit_mb, dask_scheduler=args.dask_scheduler,
                   dask_local=args.dask_local)


def run(args) -> int:
    """Run ``calcitrack analyze`` from parsed arguments; return the exit code."""
    config = load_config(args.config)
    options = batch_options(args)

    def work() -> int:
        summary = analyze_files(args.paths, args.out, config, progress_stream=sys.stderr,
                                **options)
        if summary.n_inputs == 0:
            print("no input files found", file=sys.stderr)
            return EXIT_USAGE
        if summary.n_films == 0:
            print(f"no films among the {summary.n_inputs} input files (all skipped)",
                  file=sys.stderr)
            return EXIT_USAGE
        reused = f" ({summary.n_reused} from an earlier run)" if summary.n_reused else ""
        print(f"{summary.n_ok} films analysed{reused}, {summary.n_failed} failed, "
              f"{summary.n_skipped} skipped; {summary.n_deposits} deposits; results in "
              f"{summary.out_dir}", file=sys.stderr)
        return EXIT_SOME_FAILED if summary.n_failed else EXIT_OK

    return run_guarded("analyze", args.out, work)


def run_guarded(command: str, out_dir: Path, work) -> int:
    """Run a batch command's `work` (which returns the exit code) with what they all share.

    ``--out`` must be a folder; SIGTERM stops the run as Ctrl-C does, so the CSVs are
    finished; an unusable results database, an unreachable cluster or an unwritable output
    folder is a one-line usage error.
    """
    def say(line: str) -> None:
        print(f"calcitrack {command}: {line}", file=sys.stderr)

    if out_dir.exists() and not out_dir.is_dir():
        say(f"--out {out_dir} is a file, not a folder")
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return work()
    except KeyboardInterrupt:
        say(f"interrupted; what was finished is in {out_dir} and a rerun continues from there")
        return EXIT_INTERRUPTED
    except (StoreError, ConnectionError) as exc:
        say(str(exc))
        return EXIT_USAGE
    except (OSError, sqlite3.Error) as exc:
        say(f"cannot write the results in {out_dir} "
            f"({getattr(exc, 'strerror', None) or exc})")
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
