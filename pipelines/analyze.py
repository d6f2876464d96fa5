"""``calcitrack analyze INPUT... --out DIR``: find and measure deposits, write the contract.

Outputs in DIR (the contract in ``DESIGN.md``; columns in `imaging.export`):

- ``images.csv`` — one row per input file, ``status`` ok / error / skipped;
- ``deposits.csv`` — one row per deposit, ``deposit_id`` = its label in the mask;
- ``masks/<image_id>.png`` — 16-bit deposit labels, same rows × columns as the source film;
- ``qc/<image_id>.png`` — the QC overlay a reader checks at a glance (unless ``--no-qc``);
- ``calcitrack.sqlite`` (or ``--db``) — the results store (`pipelines.store`), which keeps the
  same rows across runs.

Each film is handled in two steps: `analyze_film` is pure (it reads the film and returns
everything to write as a `FilmResult`, or an error row: one bad file never stops the run), and
`write_film` writes its mask and overlay. A parallel batch can run the first in workers and
keep the second in one process.

Nothing computed is lost if the run dies midway: both CSVs are rewritten atomically after
every input, so at any moment they hold the complete rows of every file handled so far. The
total cost grows with files × rows, which stays negligible next to the seconds a film's
detection takes for runs of thousands of films. Each film is recorded in the results store
last, in one transaction, so the database never names a mask or CSV row that is not written.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from imaging import CalcitrackError, read_radiograph
from imaging.config import AnalysisConfig, load_config
from imaging.deposits import find_deposits
from imaging.export import (
    DEPOSIT_COLUMNS,
    IMAGE_COLUMNS,
    Provenance,
    Status,
    deposit_rows,
    image_row,
    label_image,
    qc_overlay,
    write_csv,
    write_label_png,
    write_png,
)
from imaging.io import sniff

from .arguments import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, spacing_argument
from .discover import iter_input_files
from .store import DATABASE_NAME, ResultsStore, StoreError, file_content_hash

#: Extensions dropped from file names to make image ids (other suffixes, e.g. of UID-named
#: DICOM files, are kept).
_FILM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima", ".png", ".tif", ".tiff", ".jpg",
                            ".jpeg"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
#: A file without the DICM prefix is a DICOM candidate when its dataset holds one of these.
_DICOM_IMAGE_KEYWORDS = ("SOPClassUID", "Rows", "Columns", "Modality")
_MAX_ID_LENGTH = 100


@dataclass(frozen=True)
class InputFile:
    """One input file of a run.

    Attributes
    ----------
    path : Path
        The file as found.
    image_id : str
        Its stable identifier in the outputs.
    skip_reason : str or None
        Why it is not a film to analyse (None for a candidate film).
    """

    path: Path
    image_id: str
    skip_reason: str | None = None


@dataclass(frozen=True, eq=False)
class FilmResult:
    """Everything to write for one input.

    Attributes
    ----------
    image : dict
        Its ``images.csv`` row; ``mask_path`` and ``qc_path`` say where `write_film` puts
        `labels` and `overlay`, relative to the output folder.
    deposits : tuple of dict
        Its ``deposits.csv`` rows.
    labels : ndarray of uint16 or None
        Deposit labels in the source pixel grid (None unless the film was analysed).
    overlay : ndarray of uint8 or None
        The QC overlay (BGR), when asked for.
    study_instance_uid : str or None
        The film's study, for the results store.
    """

    image: dict
    deposits: tuple[dict, ...] = ()
    labels: np.ndarray | None = None
    overlay: np.ndarray | None = None
    study_instance_uid: str | None = None

    @property
    def status(self) -> Status:
        return self.image["status"]


@dataclass(frozen=True)
class RunSummary:
    """Counts of one run."""

    out_dir: Path
    n_inputs: int
    n_ok: int
    n_failed: int
    n_skipped: int
    n_deposits: int

    @property
    def n_films(self) -> int:
        """Inputs that were analysed (ok or failed)."""
        return self.n_ok + self.n_failed


def plan_inputs(paths) -> list[InputFile]:
    """List the input files below `paths` in a stable order, with ids and skip reasons.

    A file named twice is listed once. Files are ordered by path, whatever the order of
    `paths`, so the outputs do not depend on how the command was typed.
    """
    unique = {os.path.abspath(path): path for path in iter_input_files(paths)}
    files = [unique[key] for key in sorted(unique, key=lambda key: Path(key).parts)]
    return [InputFile(path, image_id, skip_reason(path))
            for path, image_id in zip(files, image_ids(files))]


def image_ids(paths) -> list[str]:
    """Stable, unique ids from the paths relative to their common folder.

    Folder names and the file name (without a film extension) are joined by ``__`` and
    characters outside ``[A-Za-z0-9._-]`` become ``_``. Ids that would collide (ignoring case,
    as some file systems do) get a short hash of their relative path. Never built from DICOM
    tags.

    Examples
    --------
    >>> image_ids(["/data/visit1/hand.dcm", "/data/visit2/hand.dcm"])
    ['visit1__hand', 'visit2__hand']
    >>> image_ids(["/data/a b.dcm", "/data/a_b.png"])
    ['a_b-9d471a26', 'a_b-d3cddaad']
    """
    absolute = [Path(os.path.abspath(path)) for path in paths]
    if not absolute:
        return []
    root = os.path.commonpath([path.parent for path in absolute])
    relative = [path.relative_to(root) for path in absolute]
    ids = [_sanitised(path) for path in relative]
    counts = Counter(image_id.lower() for image_id in ids)
    return [f"{image_id}-{_short_hash(path)}" if counts[image_id.lower()] > 1 else image_id
            for image_id, path in zip(ids, relative)]


def _sanitised(relative: Path) -> str:
    name = relative.stem if relative.suffix.lower() in _FILM_SUFFIXES else relative.name
    text = "__".join((*relative.parent.parts, name))
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".-") or "image"
    if len(text) > _MAX_ID_LENGTH:
        text = f"{text[:_MAX_ID_LENGTH - 9]}-{_short_hash(relative)}"
    return text


def _short_hash(relative: Path) -> str:
    return hashlib.sha1(relative.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def skip_reason(path: str | os.PathLike) -> str | None:
    """Return why a file is not a film to analyse, or None for a candidate film.

    Candidates, by content: DICOM (DICM prefix, or a dataset without preamble that holds image
    attributes) and PNG/TIFF/JPEG. Files named ``.dcm``/``.dicom`` are candidates whatever they
    hold, so a broken one is reported as an error. Phantom ground-truth images
    (``<name>.truth.png``) are skipped. A file that cannot be opened is a candidate: the
    reader reports why.
    """
    path = Path(path)
    if path.name.lower().endswith(".truth.png"):
        return "phantom ground-truth label image, not a film"
    try:
        kind = sniff(path)
    except OSError:
        return None
    if kind in ("dicom", "image") or path.suffix.lower() in _DICOM_SUFFIXES:
        return None
    if kind == "empty":
        return "empty file"
    if _is_raw_dicom_image(path):
        return None
    return "neither DICOM nor a PNG/TIFF/JPEG image"


def _is_raw_dicom_image(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True, defer_size=1024)
            return any(keyword in dataset for keyword in _DICOM_IMAGE_KEYWORDS)
    except Exception:  # anything unparsable is simply not DICOM
        return False


def analyze_film(path: str | os.PathLike, image_id: str, config: AnalysisConfig, *,
                 user_spacing=None, pseudonym_key: str | None = None,
                 qc: bool = True) -> FilmResult:
    """Read one film, find its deposits and build everything to write (writes nothing).

    Any failure becomes an error row: a `CalcitrackError` gives its one-line message with the
    remedy, any other exception its type and message.

    Parameters
    ----------
    path : str or os.PathLike
    image_id : str
    config : AnalysisConfig
    user_spacing : (float, float), optional
        Spacing in mm that overrides the file's calibration.
    pseudonym_key : str, optional
        Secret for patient keys (default: ``$CALCITRACK_PSEUDONYM_KEY``).
    qc : bool
        Draw the QC overlay.
    """
    source = os.fspath(path)
    provenance = Provenance.of(config)
    radiograph = None
    try:
        radiograph = read_radiograph(path, user_spacing=user_spacing, pseudonym_key=pseudonym_key,
                                     max_megapixels=config.max_megapixels)
        findings = find_deposits(radiograph, config)
        labels = label_image(findings.labels)
        overlay = qc_overlay(radiograph, findings, image_id) if qc else None
    except CalcitrackError as exc:
        error = str(exc)
    except Exception as exc:  # one film's unexpected failure must not stop the run
        error = (f"{source}: unexpected {type(exc).__name__} ({str(exc)[:200]}) — please "
                 "report it with this file to the calcitrack developers")
    else:
        row = image_row(image_id, source, provenance, radiograph=radiograph, findings=findings,
                        mask_path=f"masks/{image_id}.png",
                        qc_path=f"qc/{image_id}.png" if qc else None)
        return FilmResult(row, tuple(deposit_rows(image_id, radiograph, findings, provenance)),
                          labels, overlay, radiograph.metadata.study_instance_uid)
    return FilmResult(image_row(image_id, source, provenance, status=Status.ERROR,
                                radiograph=radiograph, error=error),
                      study_instance_uid=None if radiograph is None
                      else radiograph.metadata.study_instance_uid)


def write_film(result: FilmResult, out_dir: str | os.PathLike) -> None:
    """Write a film's mask and QC overlay where its row says (atomically)."""
    out_dir = Path(out_dir)
    if result.labels is not None:
        write_label_png(out_dir / result.image["mask_path"], result.labels)
    if result.overlay is not None:
        write_png(out_dir / result.image["qc_path"], result.overlay)


def analyze_files(paths, out_dir: str | os.PathLike, config: AnalysisConfig, *,
                  user_spacing=None, pseudonym_key: str | None = None, qc: bool = True,
                  db_path: str | os.PathLike | None = None, report=None) -> RunSummary:
    """Analyse every film below `paths`, one at a time, and write the outputs in `out_dir`.

    Nothing is written when no input is a film. Both CSVs are rewritten after every input,
    then the input is recorded in the results store.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files or folders (walked recursively).
    out_dir : str or os.PathLike
    config : AnalysisConfig
    user_spacing, pseudonym_key, qc
        As for `analyze_film`.
    db_path : str or os.PathLike, optional
        The results store (default: `DATABASE_NAME` in `out_dir`).
    report : callable, optional
        Called with one progress line per input.

    Returns
    -------
    RunSummary
    """
    out_dir = Path(out_dir)
    inputs = plan_inputs(paths)
    n_skipped = sum(item.skip_reason is not None for item in inputs)
    if n_skipped == len(inputs):
        return RunSummary(out_dir, len(inputs), 0, 0, n_skipped, 0)
    provenance = Provenance.of(config)
    images, deposits = [], []
    statuses = Counter()
    with ResultsStore.open(out_dir / DATABASE_NAME if db_path is None else db_path) as store:
        run_id = store.start_run(provenance.calcitrack_version, provenance.config_hash,
                                 config.to_dict())
        for number, item in enumerate(inputs, start=1):
            result = _analyze_input(item, config, provenance, out_dir, user_spacing=user_spacing,
                                    pseudonym_key=pseudonym_key, qc=qc)
            images.append(result.image)
            deposits.extend(result.deposits)
            statuses[result.status] += 1
            write_csv(out_dir / "images.csv", images, IMAGE_COLUMNS)
            write_csv(out_dir / "deposits.csv", deposits, DEPOSIT_COLUMNS)
            store.record_film(run_id, file_content_hash(item.path), result.image,
                              result.deposits, study_instance_uid=result.study_instance_uid)
            if report is not None:
                report(f"[{number}/{len(inputs)}] {result.status:<7} {item.image_id}  "
                       f"{_outcome(result, item)}")
        store.finish_run(run_id)
    return RunSummary(out_dir, len(inputs), statuses[Status.OK], statuses[Status.ERROR],
                      statuses[Status.SKIPPED], len(deposits))


def _analyze_input(item: InputFile, config: AnalysisConfig, provenance: Provenance,
                   out_dir: Path, **options) -> FilmResult:
    """Analyse one input and write its mask and overlay; a skipped input gets its row only."""
    if item.skip_reason is None:
        result = analyze_film(item.path, item.image_id, config, **options)
        write_film(result, out_dir)
        return result
    return FilmResult(image_row(item.image_id, os.fspath(item.path), provenance,
                                status=Status.SKIPPED, notes=(f"skipped: {item.skip_reason}",)))


def _outcome(result: FilmResult, item: InputFile) -> str:
    row = result.image
    if result.status is Status.SKIPPED:
        return f"{item.path}: {item.skip_reason}"
    if result.status is Status.ERROR:
        return row["error"]
    if row["total_area_mm2"] is None:
        return f"{row['n_deposits']} deposits, {row['total_area_px']} px (uncalibrated)"
    return f"{row['n_deposits']} deposits, {row['total_area_mm2']:.1f} mm²"


def register(subparsers) -> None:
    """Add the ``analyze`` subcommand to the `calcitrack` parser."""
    parser = subparsers.add_parser(
        "analyze", help="find and measure calcified deposits; write CSVs, masks and QC images",
        description="Find calcified deposits outside bone on each film and write images.csv, "
                    "deposits.csv, masks/<image_id>.png (16-bit labels) and qc/<image_id>.png "
                    "into DIR. Exit code 0 when every film was analysed, 1 when some failed, "
                    "2 for usage or configuration errors.")
    parser.add_argument("paths", nargs="+", metavar="INPUT",
                        help="films or folders (walked recursively; non-film files are skipped)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if missing)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file of parameter overrides (see `calcitrack config --show`)")
    parser.add_argument("--spacing-mm", type=spacing_argument, default=None,
                        help="pixel spacing in mm (one value or ROW,COL); overrides the files")
    parser.add_argument("--no-qc", dest="qc", action="store_false",
                        help="do not draw the QC overlay images")
    parser.add_argument("--db", type=Path, default=None, metavar="PATH",
                        help=f"results database (SQLite; default: DIR/{DATABASE_NAME}); "
                             "films recorded before are replaced, not duplicated")
    parser.add_argument("--pseudonym-key", default=None, metavar="SECRET",
                        help="secret for pseudonymous patient keys (default: the "
                             "CALCITRACK_PSEUDONYM_KEY variable, which is safer: command lines "
                             "are visible to other users)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    """Run ``calcitrack analyze`` from parsed arguments; return the exit code."""
    config = load_config(args.config)
    if args.out.exists() and not args.out.is_dir():
        print(f"calcitrack analyze: --out {args.out} is a file, not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = analyze_files(args.paths, args.out, config, user_spacing=args.spacing_mm,
                                pseudonym_key=args.pseudonym_key, qc=args.qc, db_path=args.db,
                                report=lambda line: print(line, file=sys.stderr))
    except StoreError as exc:
        print(f"calcitrack analyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, sqlite3.Error) as exc:
        print(f"calcitrack analyze: cannot write the results in {args.out} "
              f"({getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
        return EXIT_USAGE
    if summary.n_inputs == 0:
        print("no input files found", file=sys.stderr)
        return EXIT_USAGE
    if summary.n_films == 0:
        print(f"no films among the {summary.n_inputs} input files (all skipped)",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"{summary.n_ok} films analysed, {summary.n_failed} failed, {summary.n_skipped} "
          f"skipped; {summary.n_deposits} deposits; results in {summary.out_dir}",
          file=sys.stderr)
    return EXIT_SOME_FAILED if summary.n_failed else EXIT_OK
